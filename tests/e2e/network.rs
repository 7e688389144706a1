//! End-to-end tests of `--network gated`: real programs in the real sandbox reaching
//! upstream servers on the host's loopback through the network gate, named with
//! `--network-resolve` (there is no internet here).

use crate::support::dirs::Workspace;
use crate::support::pty::{without_terminal, PtyRun};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// An HTTP/1.1 server on the host's loopback answering every request with
/// `upstream: <request line>` (and closing), on its own thread for the test's life.
pub(crate) fn http_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer_http(stream));
        }
    });
    port
}

fn answer_http(stream: TcpStream) {
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let body = format!("upstream: {}\n", first.trim_end());
    let mut stream = reader.into_inner();
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A TCP server on the host's loopback that echoes what it reads, upper-cased.
fn echo_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n].to_ascii_uppercase()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// `execgate run --network gated --json` with the test names resolved to the host's
/// loopback, `rules`, and `extra` before the script; no terminal (no person to ask).
fn gated_command(env: &Workspace, backend: &str, rules: &Path, extra: &[&str]) -> Command {
    let mut args = vec!["run", "--json", "--network", "gated"];
    // No file: the rules are discovered (the user's approvals file among them).
    if !rules.as_os_str().is_empty() {
        args.extend(["--rules", rules.to_str().unwrap()]);
    }
    for name in NAMES {
        args.extend(["--network-resolve", name]);
    }
    args.extend_from_slice(extra);
    let mut cmd = env.execgate_session(&args);
    cmd.env("EXECGATE_SANDBOX_BACKEND", backend);
    cmd
}

const NAMES: [&str; 8] = [
    "pypi.test:127.0.0.1",
    "good.test:127.0.0.1",
    "bad.test:127.0.0.1",
    "ask.test:127.0.0.1",
    "hook-allow.test:127.0.0.1",
    "hook-deny.test:127.0.0.1",
    "hook-stop.test:127.0.0.1",
    "raw.test:127.0.0.1",
];

fn report_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): stdout={} stderr={}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn run_gated(env: &Workspace, backend: &str, rules: &Path, extra: &[&str]) -> Value {
    let out = without_terminal(&mut gated_command(env, backend, rules, extra))
        .output()
        .unwrap();
    report_of(&out)
}

/// The network records, each reduced to host, port, protocol, decision, verdict, source
/// and command.
fn connections(report: &Value) -> Vec<Value> {
    report["network"]
        .as_array()
        .unwrap_or_else(|| panic!("no network records: {report}"))
        .iter()
        .map(|r| {
            json!([
                r["host"],
                r["port"],
                r["protocol"],
                r["decision"],
                r["verdict"],
                r["source"],
                r["command"]
            ])
        })
        .collect()
}

/// A rules file outside every writable root (the Landlock backend refuses a rules file it
/// cannot keep read-only).
/// What `/usr/bin/python3` really is (records name the program that ran).
fn python() -> String {
    std::fs::canonicalize("/usr/bin/python3")
        .unwrap()
        .display()
        .to_string()
}

fn rules(env: &Workspace, text: &str) -> PathBuf {
    env.home_file("net.rules", text, 0o644)
}

/// A workspace outside `/tmp` (a writable root of every sandbox), so its home is not
/// writable from inside.
fn workspace() -> Workspace {
    Workspace::outside_temp()
}

const BACKENDS: [&str; 2] = ["bubblewrap", "landlock"];

#[test]
fn curl_reaches_an_allowed_host_and_a_denied_one_fails_fast_with_the_rules_reason() {
    let port = http_upstream();
    for backend in BACKENDS {
        // Landlock cannot keep a rules file inside the writable workspace read-only.
        let env = workspace();
        let file = rules(
            &env,
            r#"network_rule(host="good.test", protocol="http", decision="allow")
network_rule(host="bad.test", protocol="http", decision="deny", justification="not this one")
"#,
        );
        let audit = env.home.join("audit.jsonl");
        let script = format!(
            "curl -sS http://good.test:{port}/hello; curl -sf http://bad.test:{port}/x || echo failed=$?"
        );
        let report = run_gated(
            &env,
            backend,
            &file,
            &["--audit-log", audit.to_str().unwrap(), &script],
        );
        assert_eq!(
            report["stdout"], "upstream: GET /hello HTTP/1.1\nfailed=22\n",
            "{backend}: {report}"
        );
        let rule = |line: u32| format!("{}:{line}", file.display());
        assert_eq!(
            report["stderr"],
            format!(
                "execgate: network denied: /usr/bin/curl -sf http://bad.test:{port}/x: http://bad.test:{port}: not this one (rule {})\n",
                rule(2)
            ),
            "{backend}"
        );
        let curl_good = format!("/usr/bin/curl -sS http://good.test:{port}/hello");
        let mut got = connections(&report);
        got.sort_by_key(|c| c[0].as_str().unwrap().to_owned());
        assert_eq!(
            got,
            vec![
                json!([
                    "bad.test",
                    port,
                    "http",
                    "forbidden",
                    "deny",
                    "policy",
                    format!("/usr/bin/curl -sf http://bad.test:{port}/x")
                ]),
                json!([
                    "good.test",
                    port,
                    "http",
                    "allow",
                    "connect",
                    "policy",
                    curl_good
                ]),
            ],
            "{backend}"
        );
        let good = report["network"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["host"] == "good.test")
            .unwrap();
        assert_eq!(good["via"], "http-proxy");
        assert_eq!(good["rule"], rule(1));
        assert_eq!(good["address"], format!("127.0.0.1:{port}"));
        assert_eq!(good["exec_id"], 0);
        assert!(good["bytes_down"].as_u64().unwrap() > 0);
        // The audit log has both connections, as policy suggest reads them.
        let log = std::fs::read_to_string(&audit).unwrap();
        let lines: Vec<Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|l: &Value| l["event"] == "network")
            .collect();
        let mut seen: Vec<(String, String, String)> = lines
            .iter()
            .map(|l| {
                assert!(l["session"].is_string() && l.get("argv").is_none(), "{l}");
                (
                    l["host"].as_str().unwrap().to_owned(),
                    l["verdict"].as_str().unwrap().to_owned(),
                    l["source"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                ("bad.test".into(), "deny".into(), "policy".into()),
                ("good.test".into(), "connect".into(), "policy".into())
            ],
            "{backend}: {log}"
        );
    }
}

#[test]
fn proxy_variables_resolv_conf_and_python_urllib_in_the_sandbox() {
    let port = http_upstream();
    let env = workspace();
    let file = rules(
        &env,
        r#"network_rule(host="good.test", protocol="http", decision="allow")"#,
    );
    let script = format!(
        "printenv HTTP_PROXY https_proxy ALL_PROXY NO_PROXY PIP_PROXY npm_config_proxy CARGO_HTTP_PROXY; \
         grep nameserver /etc/resolv.conf; \
         /usr/bin/python3 -c 'import urllib.request; print(urllib.request.urlopen(\"http://good.test:{port}/py\").read().decode(), end=\"\")'"
    );
    let report = run_gated(&env, "bubblewrap", &file, &[&script]);
    assert_eq!(
        report["stdout"],
        "http://127.0.0.1:3128\nhttp://127.0.0.1:3128\nsocks5h://127.0.0.1:1080\n\
         localhost,127.0.0.1,::1\nhttp://127.0.0.1:3128\nhttp://127.0.0.1:3128\n\
         http://127.0.0.1:3128\nnameserver 127.0.0.1\nupstream: GET /py HTTP/1.1\n",
        "{report}"
    );
    assert_eq!(
        connections(&report),
        vec![json!(["good.test", port, "http", "allow", "connect", "policy",
                    format!("{} -c 'import urllib.request; print(urllib.request.urlopen(\"http://good.test:{port}/py\").read().decode(), end=\"\")'", python())])]
    );
}

#[test]
fn a_program_that_ignores_the_proxy_reaches_an_allowed_name_through_dns_and_capture_only() {
    let echo = echo_upstream();
    for backend in BACKENDS {
        let env = workspace();
        // The rule names the port, so the gate captures it; raw TCP passes as socks5_tcp.
        let file = rules(
            &env,
            &format!(
                r#"network_rule(host="raw.test:{echo}", protocol="socks5_tcp", decision="allow")"#
            ),
        );
        let py = format!(
            "import socket\n\
             for name in ('raw.test', 'ask.test'):\n\
             \x20   try:\n\
             \x20       s = socket.create_connection((name, {echo}), timeout=20)\n\
             \x20       s.sendall(b'ping ' + name.encode())\n\
             \x20       print(name, s.recv(100).decode() or 'closed')\n\
             \x20   except OSError as e:\n\
             \x20       print(name, 'error', type(e).__name__)\n"
        );
        env.write("raw.py", &py);
        let report = run_gated(&env, backend, &file, &["/usr/bin/python3 raw.py"]);
        // ask.test has no rule and nobody can be asked: its connection is reset.
        let out = report["stdout"].as_str().unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "raw.test PING RAW.TEST", "{backend}: {report}");
        assert!(
            [
                "ask.test closed",
                "ask.test error ConnectionResetError",
                "ask.test error BrokenPipeError"
            ]
            .contains(&lines[1]),
            "{backend}: {report}"
        );
        let mut got = connections(&report);
        got.sort_by_key(|c| c[0].as_str().unwrap().to_owned());
        assert_eq!(
            got,
            vec![
                json!([
                    "ask.test",
                    echo,
                    "socks5_tcp",
                    "unmatched",
                    "deny",
                    "user",
                    format!("{} raw.py", python())
                ]),
                json!([
                    "raw.test",
                    echo,
                    "socks5_tcp",
                    "allow",
                    "connect",
                    "policy",
                    format!("{} raw.py", python())
                ]),
            ],
            "{backend}: {report}"
        );
    }
}

#[test]
fn local_and_private_destinations_are_refused_by_the_gate_without_asking() {
    let port = http_upstream();
    let env = workspace();
    let file = rules(&env, "");
    let script = format!(
        "for h in 127.0.0.1 2130706433 0x7f.1 169.254.169.254 10.1.2.3 '[::ffff:127.0.0.1]'; do \
         NO_PROXY= no_proxy= curl -sS -o /dev/null -w '%{{http_code}} ' http://$h:{port}/; done; echo"
    );
    let report = run_gated(&env, "bubblewrap", &file, &[&script]);
    assert_eq!(report["stdout"], "403 403 403 403 403 403 \n", "{report}");
    let sources: Vec<(String, String)> = report["network"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["host"].as_str().unwrap().to_owned(),
                format!(
                    "{} {}",
                    r["verdict"].as_str().unwrap(),
                    r["source"].as_str().unwrap()
                ),
            )
        })
        .collect();
    let deny = |h: &str| (h.to_owned(), "deny gate".to_owned());
    assert_eq!(
        sources,
        vec![
            deny("127.0.0.1"),
            deny("127.0.0.1"),
            deny("127.0.0.1"),
            deny("169.254.169.254"),
            deny("10.1.2.3"),
            deny("127.0.0.1"),
        ],
        "{report}"
    );
}

// ---- hooks and the person ----------------------------------------------------------------

/// A PermissionRequest hook that logs its input (one line each) and decides by the
/// destination in `description`: a hook that approves commands tells connections apart.
const HOOK: &str = r#"#!/bin/sh
input=$(cat)
printf '%s\n' "$input" >> HOOK_LOG
case "$input" in
  *network-access*hook-allow.test*) echo '{"hookSpecificOutput":{"hookEventName":"PermissionRequest","decision":{"behavior":"allow"}}}' ;;
  *network-access*hook-deny.test*) echo '{"hookSpecificOutput":{"hookEventName":"PermissionRequest","decision":{"behavior":"deny","message":"hook says no"}}}' ;;
  *network-access*hook-stop.test*) echo '{"hookSpecificOutput":{"hookEventName":"PermissionRequest","decision":{"behavior":"deny","message":"hook stops it","interrupt":true}}}' ;;
  *) ;;
esac
"#;

fn hooks(env: &Workspace) -> (PathBuf, PathBuf) {
    let log = env.home.join("hook.log");
    let script = env.home_file(
        "hook.sh",
        &HOOK.replace("HOOK_LOG", &format!("'{}'", log.display())),
        0o755,
    );
    let hooks = env.home_file(
        "hooks.json",
        &format!(
            r#"{{"hooks":{{"PermissionRequest":[{{"matcher":"Bash","hooks":[{{"type":"command","command":"sh {}"}}]}}]}}}}"#,
            script.display()
        ),
        0o644,
    );
    (hooks, log)
}

#[test]
fn hooks_decide_connections_by_their_description_and_concurrent_ones_share_one_question() {
    let port = http_upstream();
    let env = workspace();
    let file = rules(&env, "");
    let (hooks, log) = hooks(&env);
    let script = format!(
        "curl -sS http://hook-allow.test:{port}/a & curl -sS http://hook-allow.test:{port}/b & wait; \
         curl -sf http://hook-deny.test:{port}/ || echo failed=$?"
    );
    let report = run_gated(
        &env,
        "bubblewrap",
        &file,
        &["--hooks", hooks.to_str().unwrap(), &script],
    );
    let out = report["stdout"].as_str().unwrap();
    assert!(out.contains("upstream: GET /a HTTP/1.1\n"), "{report}");
    assert!(out.contains("upstream: GET /b HTTP/1.1\n"), "{report}");
    assert!(out.ends_with("failed=22\n"), "{report}");
    let asked: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let descriptions: Vec<&str> = asked
        .iter()
        .map(|a| a["tool_input"]["description"].as_str().unwrap())
        .collect();
    assert_eq!(
        descriptions,
        [
            format!("network-access http://hook-allow.test:{port}"),
            format!("network-access http://hook-deny.test:{port}"),
        ],
        "{asked:?}"
    );
    assert_eq!(asked[0]["tool_name"], "Bash");
    assert!(
        asked[0]["tool_input"]["command"]
            .as_str()
            .unwrap()
            .starts_with(&format!("/usr/bin/curl -sS http://hook-allow.test:{port}/")),
        "{asked:?}"
    );
    assert_eq!(
        asked[1]["tool_input"]["command"],
        format!("/usr/bin/curl -sf http://hook-deny.test:{port}/")
    );
    let mut sources: Vec<(String, String, String)> = report["network"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["host"].as_str().unwrap().to_owned(),
                r["verdict"].as_str().unwrap().to_owned(),
                r["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    sources.sort();
    assert_eq!(
        sources,
        [
            ("hook-allow.test".into(), "connect".into(), "hook".into()),
            ("hook-allow.test".into(), "connect".into(), "hook".into()),
            ("hook-deny.test".into(), "deny".into(), "hook".into()),
        ]
    );
    assert!(report["stderr"]
        .as_str()
        .unwrap()
        .contains(&format!("http://hook-deny.test:{port}: hook says no\n")));
}

#[test]
fn a_hook_deny_with_interrupt_ends_the_session() {
    let port = http_upstream();
    let env = workspace();
    let file = rules(&env, "");
    let (hooks, _log) = hooks(&env);
    let script =
        format!("curl -sS -o /dev/null http://hook-stop.test:{port}/; sleep 30; echo not-reached");
    let out = without_terminal(&mut gated_command(
        &env,
        "bubblewrap",
        &file,
        &["--hooks", hooks.to_str().unwrap(), &script],
    ))
    .output()
    .unwrap();
    let report = report_of(&out);
    assert_eq!(out.status.code(), Some(130), "{report}");
    assert_eq!(report["interrupted"], true);
    assert!(!report["stdout"].as_str().unwrap().contains("not-reached"));
    assert_eq!(report["network"][0]["source"], "hook");
    assert_eq!(report["network"][0]["verdict"], "deny");
}

const PROMPT_END: &str = "deny and end the session: ";

#[test]
fn the_person_allows_once_or_always_and_always_is_a_network_rule_the_next_session_honours() {
    let port = http_upstream();
    let env = workspace();
    // Discovered rules, so the next session loads the approvals file.
    let file = PathBuf::new();
    let script = format!("curl -sS http://ask.test:{port}/one");
    // Once.
    let mut run = PtyRun::start(gated_command(&env, "bubblewrap", &file, &[&script]));
    let shown = run.expect(PROMPT_END);
    assert!(shown.contains("execgate: network access needed"), "{shown}");
    assert!(
        shown.contains(&format!("network: http://ask.test:{port}")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!(
            "command: /usr/bin/curl -sS http://ask.test:{port}/one"
        )),
        "{shown}"
    );
    run.answer("y\n");
    let (report, _) = run.finish();
    assert_eq!(
        report["stdout"], "upstream: GET /one HTTP/1.1\n",
        "{report}"
    );
    assert_eq!(report["network"][0]["source"], "user");
    let approved = env.home.join(".config/execgate/rules/approved.rules");
    assert!(!approved.exists());
    // Always: a network_rule in the approvals file...
    let mut run = PtyRun::start(gated_command(&env, "bubblewrap", &file, &[&script]));
    run.expect(PROMPT_END);
    run.answer("a\n");
    let (report, _) = run.finish();
    assert_eq!(
        report["stdout"], "upstream: GET /one HTTP/1.1\n",
        "{report}"
    );
    let text = std::fs::read_to_string(&approved).unwrap();
    assert!(
        text.contains("network_rule(host=\"ask.test\", protocol=\"http\", decision=\"allow\")\n"),
        "{text}"
    );
    // ...which the next session (no terminal: nobody could be asked) honours.
    let report = run_gated(&env, "bubblewrap", &file, &[&script]);
    assert_eq!(
        report["stdout"], "upstream: GET /one HTTP/1.1\n",
        "{report}"
    );
    assert_eq!(report["network"][0]["decision"], "allow");
    assert_eq!(report["network"][0]["source"], "policy");
}

#[test]
fn deny_and_end_the_session_at_a_network_prompt() {
    let port = http_upstream();
    let env = workspace();
    let file = rules(&env, "");
    let script =
        format!("curl -sS -o /dev/null http://ask.test:{port}/; sleep 30; echo not-reached");
    let mut run = PtyRun::start(gated_command(&env, "bubblewrap", &file, &[&script]));
    run.expect(PROMPT_END);
    run.answer("x\n");
    let (report, out) = run.finish();
    assert_eq!(out.status.code(), Some(130), "{report}");
    assert_eq!(report["interrupted"], true);
    assert!(!report["stdout"].as_str().unwrap().contains("not-reached"));
}

#[test]
fn attribution_names_each_command_of_a_pipeline() {
    let port = http_upstream();
    let env = workspace();
    let file = rules(&env, "");
    let (hooks, log) = hooks(&env);
    // Two networked commands at once, each to its own host, both asked about.
    let script = format!(
        "curl -sS http://hook-allow.test:{port}/first | curl -sS --data-binary @- http://hook-deny.test:{port}/second; true"
    );
    run_gated(
        &env,
        "bubblewrap",
        &file,
        &["--hooks", hooks.to_str().unwrap(), &script],
    );
    let mut asked: Vec<(String, String)> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["tool_input"]["description"].as_str().unwrap().to_owned(),
                v["tool_input"]["command"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    asked.sort();
    assert_eq!(
        asked,
        [
            (
                format!("network-access http://hook-allow.test:{port}"),
                format!("/usr/bin/curl -sS http://hook-allow.test:{port}/first")
            ),
            (
                format!("network-access http://hook-deny.test:{port}"),
                format!("/usr/bin/curl -sS --data-binary @- http://hook-deny.test:{port}/second")
            ),
        ]
    );
}

#[test]
fn malformed_proxy_requests_get_errors_and_the_gate_keeps_serving() {
    let port = http_upstream();
    let env = workspace();
    let file = rules(
        &env,
        r#"network_rule(host="good.test", protocol="http", decision="allow")"#,
    );
    let py = format!(
        "import socket\n\
         def ask(port, data):\n\
         \x20   s = socket.create_connection(('127.0.0.1', port), timeout=20)\n\
         \x20   s.sendall(data)\n\
         \x20   try:\n\
         \x20       return s.recv(12).decode(errors='replace') or 'closed'\n\
         \x20   except OSError as e:\n\
         \x20       return type(e).__name__\n\
         print(ask(3128, b'CONNECT\\r\\n\\r\\n'))\n\
         print(ask(3128, b'GET http://good.test:{port}/ HTTP/1.1\\r\\nHost: bad.test\\r\\n\\r\\n'))\n\
         print(ask(1080, b'\\x04\\x01\\x00'))\n"
    );
    env.write("bad.py", &py);
    let script = format!("/usr/bin/python3 bad.py; curl -sS http://good.test:{port}/after");
    let report = run_gated(&env, "bubblewrap", &file, &[&script]);
    let out = report["stdout"].as_str().unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "HTTP/1.1 400",
            "HTTP/1.1 400",
            lines[2],
            "upstream: GET /after HTTP/1.1"
        ],
        "{report}"
    );
    // SOCKS4 is not spoken: the connection is closed (or reset).
    assert!(
        ["closed", "ConnectionResetError"].contains(&lines[2]),
        "{report}"
    );
    // Nothing was decided for bad.test: a mismatched Host never opens a connection.
    assert!(report["network"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["host"] != "bad.test"));
}

#[test]
fn the_readme_rules_and_hook_let_the_mirror_through_and_refuse_telemetry() {
    use crate::support::readme;
    let port = http_upstream();
    let env = workspace();
    let file = rules(
        &env,
        &readme::block("**Network rules for a build that fetches from a mirror.**"),
    );
    let hook = env.home_file(
        "mirror-hook.sh",
        &readme::block("**A hook that tells connections from commands.**"),
        0o755,
    );
    let hooks = env.home_file(
        "hooks.json",
        &format!(
            r#"{{"hooks":{{"PermissionRequest":[{{"matcher":"Bash","hooks":[{{"type":"command","command":"{}"}}]}}]}}}}"#,
            hook.display()
        ),
        0o644,
    );
    let audit = env.home.join("audit.jsonl");
    let mut args = vec![
        "run".to_owned(),
        "--json".to_owned(),
        "--rules".to_owned(),
        file.display().to_string(),
        "--hooks".to_owned(),
        hooks.display().to_string(),
        "--audit-log".to_owned(),
        audit.display().to_string(),
    ];
    for name in ["mirror.test", "telemetry.test"] {
        args.extend(["--network-resolve".to_owned(), format!("{name}:127.0.0.1")]);
    }
    args.push(format!(
        "curl -sS http://mirror.test:{port}/pkg; curl -sf http://telemetry.test:{port}/ping || echo refused"
    ));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = without_terminal(&mut env.execgate_session(&args))
        .output()
        .unwrap();
    let report = report_of(&out);
    assert_eq!(
        report["stdout"], "upstream: GET /pkg HTTP/1.1\nrefused\n",
        "{report}"
    );
    assert_eq!(
        report["stderr"],
        format!(
            "execgate: network denied: /usr/bin/curl -sf http://telemetry.test:{port}/ping: http://telemetry.test:{port}: no telemetry from builds (rule {}:2)\n",
            file.display()
        )
    );
    let mut got = connections(&report);
    got.sort_by_key(|c| c[0].as_str().unwrap().to_owned());
    assert_eq!(
        got,
        vec![
            json!([
                "mirror.test",
                port,
                "http",
                "prompt",
                "connect",
                "hook",
                format!("/usr/bin/curl -sS http://mirror.test:{port}/pkg")
            ]),
            json!([
                "telemetry.test",
                port,
                "http",
                "forbidden",
                "deny",
                "policy",
                format!("/usr/bin/curl -sf http://telemetry.test:{port}/ping")
            ]),
        ]
    );
    // policy suggest learns the hook's approval from the audit log (the refusal by a rule
    // is nobody's approval).
    let out = env
        .execgate(&["policy", "suggest", "--from-audit", audit.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!(
            "# \"http://mirror.test\" (port {port}): approved once by a hook\n\
             network_rule(host = \"mirror.test\", protocol = \"http\", decision = \"allow\")"
        )),
        "{text}"
    );
    assert!(!text.contains("telemetry.test"), "{text}");
}

/// An HTTP/1.1 server on the host's loopback serving `files` (path to body) and 404 for
/// anything else.
fn static_upstream(files: Vec<(String, Vec<u8>)>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let files = std::sync::Arc::new(files);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let files = std::sync::Arc::clone(&files);
            std::thread::spawn(move || serve_files(stream, &files));
        }
    });
    port
}

fn serve_files(stream: TcpStream, files: &[(String, Vec<u8>)]) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut first = String::new();
        match reader.read_line(&mut first) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => {}
            }
        }
        // "GET /path HTTP/1.1" or, through a proxy that forwards it, "GET http://h/path".
        let target = first.split(' ').nth(1).unwrap_or("");
        let path = match target.strip_prefix("http://") {
            Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
            None => target,
        };
        let path = path.split('?').next().unwrap_or(path);
        let stream = reader.get_mut();
        let written = match files.iter().find(|(p, _)| p == path) {
            Some((p, body)) => write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
                if p.ends_with('/') {
                    "text/html"
                } else {
                    "application/octet-stream"
                },
                body.len()
            )
            .and_then(|()| stream.write_all(body)),
            None => write!(
                stream,
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
            ),
        };
        if written.is_err() {
            return;
        }
    }
}

/// A minimal wheel (`demo-0.1-py3-none-any.whl`), made with python's zipfile.
fn demo_wheel(dir: &Path) -> Vec<u8> {
    let path = dir.join("demo-0.1-py3-none-any.whl");
    let script = format!(
        "import zipfile\n\
         with zipfile.ZipFile({:?}, 'w') as z:\n\
         \x20   z.writestr('demo/__init__.py', '')\n\
         \x20   z.writestr('demo-0.1.dist-info/METADATA', 'Metadata-Version: 2.1\\nName: demo\\nVersion: 0.1\\n')\n\
         \x20   z.writestr('demo-0.1.dist-info/WHEEL', 'Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n')\n\
         \x20   z.writestr('demo-0.1.dist-info/RECORD', '')\n",
        path.display().to_string()
    );
    let status = Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(path).unwrap()
}

#[test]
fn pip_download_from_a_local_index_through_the_gate() {
    let env = workspace();
    let wheel = demo_wheel(&env.home);
    let index = b"<html><body><a href=\"/files/demo-0.1-py3-none-any.whl\">demo-0.1-py3-none-any.whl</a></body></html>\n".to_vec();
    let port = static_upstream(vec![
        ("/simple/demo/".to_owned(), index),
        ("/files/demo-0.1-py3-none-any.whl".to_owned(), wheel.clone()),
    ]);
    let file = rules(
        &env,
        r#"network_rule(host="pypi.test", protocol="http", decision="allow")"#,
    );
    let script = format!(
        "/usr/bin/python3 -m pip download --no-deps --disable-pip-version-check --no-cache-dir \
         --index-url http://pypi.test:{port}/simple/ --trusted-host pypi.test -d dl demo -q && ls dl"
    );
    let report = run_gated(&env, "bubblewrap", &file, &[&script]);
    assert_eq!(report["stdout"], "demo-0.1-py3-none-any.whl\n", "{report}");
    assert_eq!(
        std::fs::read(env.work.join("dl/demo-0.1-py3-none-any.whl")).unwrap(),
        wheel
    );
    let hosts: Vec<Value> = connections(&report)
        .into_iter()
        .map(|c| json!([c[0], c[2], c[4], c[5]]))
        .collect();
    assert!(!hosts.is_empty(), "{report}");
    assert!(
        hosts
            .iter()
            .all(|h| *h == json!(["pypi.test", "http", "connect", "policy"])),
        "{report}"
    );
}

/// A child process killed (and reaped) when dropped.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `openssl ARGS` in `dir`, which must succeed.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// A test CA (`ca.pem`) and a certificate it signed for `name` (`srv.pem`, `srv.key`) in
/// `dir`.
fn test_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=execgate test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=keyCertSign",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    std::fs::write(dir.join("ext"), format!("subjectAltName=DNS:{name}\n")).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "2",
            "-extfile",
            "ext",
        ],
    );
}

/// An HTTPS file server for `root` on the host's loopback (python's, with `dir`'s
/// certificate); its port.
fn https_files(dir: &Path, root: &Path) -> (Reaped, u16) {
    let script = "import http.server, ssl, functools, sys\n\
        h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])\n\
        s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), h)\n\
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n\
        c.load_cert_chain(sys.argv[2], sys.argv[3])\n\
        s.socket = c.wrap_socket(s.socket, server_side=True)\n\
        print(s.server_address[1], flush=True)\n\
        s.serve_forever()\n";
    let mut child = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .arg(root)
        .arg(dir.join("srv.pem"))
        .arg(dir.join("srv.key"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().unwrap();
    (Reaped(child), port)
}

#[test]
fn git_clones_over_https_with_a_test_ca_through_the_gate() {
    let env = workspace();
    let tls = env.home.join("tls");
    std::fs::create_dir(&tls).unwrap();
    test_ca(&tls, "git.test");
    // A bare repository served as static files (git's dumb HTTP protocol).
    let git = |dir: &Path, args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", &env.home)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    let served = env.home.join("served");
    std::fs::create_dir(&served).unwrap();
    git(&env.home, &["init", "-q", "src"]);
    git(
        &env.home.join("src"),
        &[
            "-c",
            "user.email=t@t",
            "-c",
            "user.name=t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "over the gate",
        ],
    );
    git(
        &env.home,
        &["clone", "-q", "--bare", "src", "served/repo.git"],
    );
    git(&served.join("repo.git"), &["update-server-info"]);
    let (_server, port) = https_files(&tls, &served);
    let file = rules(
        &env,
        r#"network_rule(host="git.test", protocol="https", decision="allow")"#,
    );
    let script = format!(
        "GIT_SSL_CAINFO={} git clone -q https://git.test:{port}/repo.git c && git -C c log --format=%s",
        tls.join("ca.pem").display()
    );
    let mut cmd = gated_command(
        &env,
        "bubblewrap",
        &file,
        &["--network-resolve", "git.test:127.0.0.1", &script],
    );
    let report = report_of(&without_terminal(&mut cmd).output().unwrap());
    assert_eq!(report["stdout"], "over the gate\n", "{report}");
    let records = report["network"].as_array().unwrap();
    assert!(!records.is_empty());
    for record in records {
        assert_eq!(
            json!([
                record["host"],
                record["port"],
                record["protocol"],
                record["verdict"],
                record["via"]
            ]),
            json!(["git.test", port, "https", "connect", "http-proxy"]),
            "{report}"
        );
    }
}

#[test]
fn escalated_commands_get_no_proxy_variables_and_pass_env_refuses_them() {
    let env = workspace();
    let file = rules(
        &env,
        r#"prefix_rule(pattern = ["printenv"], decision = "allow")"#,
    );
    let report = run_gated(
        &env,
        "bubblewrap",
        &file,
        &["printenv HTTP_PROXY ALL_PROXY || echo none; /usr/bin/env | grep -c -i proxy="],
    );
    // printenv ran outside the sandbox without them; env inside has all 15.
    assert_eq!(report["stdout"], "none\n15\n", "{report}");
    assert_eq!(report["execs"][0]["verdict"], "escalate");
    // The gate's own variables are not listed as dropped (they always are).
    let dropped = report["execs"][0]["env_dropped"].to_string().to_lowercase();
    assert!(!dropped.contains("proxy"), "{report}");
    let out = without_terminal(&mut gated_command(
        &env,
        "bubblewrap",
        &file,
        &["--pass-env", "HTTPS_PROXY", "true"],
    ))
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "execgate: --pass-env HTTPS_PROXY: with --network gated this names the sandbox's proxy, which escalated commands (outside the sandbox) cannot use; leave it out\n"
    );
}

#[test]
fn a_keep_alive_connection_whose_second_request_names_another_host_gets_that_hosts_decision() {
    let port = static_upstream(vec![("/one".to_owned(), b"one\n".to_vec())]);
    let env = workspace();
    let file = rules(
        &env,
        r#"network_rule(host="good.test", protocol="http", decision="allow")
network_rule(host="bad.test", protocol="http", decision="deny", justification="not this one")
"#,
    );
    let py = format!(
        "import socket\n\
         s = socket.create_connection(('127.0.0.1', 3128), timeout=20)\n\
         f = s.makefile('rb')\n\
         def get(host, path):\n\
         \x20   s.sendall(f'GET http://{{host}}:{port}{{path}} HTTP/1.1\\r\\nHost: {{host}}:{port}\\r\\n\\r\\n'.encode())\n\
         \x20   status = f.readline().decode().strip()\n\
         \x20   length = 0\n\
         \x20   while True:\n\
         \x20       line = f.readline().decode().strip()\n\
         \x20       if not line:\n\
         \x20           break\n\
         \x20       if line.lower().startswith('content-length:'):\n\
         \x20           length = int(line.split(':')[1])\n\
         \x20   print(status, f.read(length).decode().strip())\n\
         get('good.test', '/one')\n\
         get('bad.test', '/two')\n"
    );
    env.write("keepalive.py", &py);
    let report = run_gated(
        &env,
        "bubblewrap",
        &file,
        &["/usr/bin/python3 keepalive.py"],
    );
    let rule = format!("{}:2", file.display());
    assert_eq!(
        report["stdout"],
        format!(
            "HTTP/1.1 200 OK one\nHTTP/1.1 403 Forbidden execgate: network denied: http://bad.test:{port}: not this one (rule {rule})\n"
        ),
        "{report}"
    );
    let mut got: Vec<(String, String)> = report["network"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["host"].as_str().unwrap().to_owned(),
                r["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("bad.test".into(), "deny".into()),
            ("good.test".into(), "connect".into())
        ]
    );
}

#[test]
fn landlock_without_root_refuses_a_gated_network_and_never_falls_back_to_the_hosts() {
    // As an unprivileged user (nobody), the Landlock backend cannot make a network
    // namespace: gated refuses to start, in one line; off still works.
    let check = |network: &str| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(crate::support::bins::execgate())
            .args(["sandbox", "check", "--network", network])
            .current_dir("/tmp")
            .env("EXECGATE_SANDBOX_BACKEND", "landlock")
            .output()
            .unwrap()
    };
    let gated = check("gated");
    assert_eq!(gated.status.code(), Some(2), "{gated:?}");
    assert_eq!(
        String::from_utf8_lossy(&gated.stderr),
        "execgate: --network gated needs a network namespace of the sandbox's own, which the Landlock backend can make only as root: install bubblewrap (with user namespaces), run as root, or pass --network on or --network off\n"
    );
    let off = check("off");
    assert_eq!(off.status.code(), Some(0), "{off:?}");
}

#[test]
fn the_person_allows_a_host_for_the_session_and_is_not_asked_again() {
    let port = http_upstream();
    let env = workspace();
    let file = rules(&env, "");
    let script =
        format!("curl -sS http://ask.test:{port}/one; curl -sS http://ask.test:{port}/two");
    // A second question would never be answered: `timeout` ends the run, and the test
    // fails on its output instead of hanging.
    let mut cmd = Command::new("timeout");
    let inner = gated_command(&env, "bubblewrap", &file, &[&script]);
    cmd.args(["--foreground", "60"])
        .arg(inner.get_program())
        .args(inner.get_args())
        .current_dir(&env.work)
        .envs(inner.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))));
    let mut run = PtyRun::start(cmd);
    run.expect(PROMPT_END);
    run.answer("s\n");
    let (report, _) = run.finish();
    assert_eq!(
        report["stdout"], "upstream: GET /one HTTP/1.1\nupstream: GET /two HTTP/1.1\n",
        "{report}"
    );
    let sources: Vec<&Value> = report["network"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["source"])
        .collect();
    assert_eq!(sources, [&json!("user"), &json!("user")], "{report}");
    // Only the first connection asked, so only it names its command.
    assert_eq!(
        report["network"][0]["command"],
        format!("/usr/bin/curl -sS http://ask.test:{port}/one")
    );
    assert_eq!(report["network"][1]["command"], Value::Null);
}

#[test]
fn curl_through_the_socks5_proxy_is_decided_as_socks5_tcp() {
    let port = http_upstream();
    let env = workspace();
    let file = rules(
        &env,
        r#"network_rule(host="good.test", protocol="socks5_tcp", decision="allow")
network_rule(host="bad.test", protocol="http", decision="allow")
"#,
    );
    // ALL_PROXY is socks5h://: curl hands the name to the gate. An http rule does not open
    // SOCKS (reply 2: connection not allowed by ruleset; curl exit 97).
    let script = format!(
        "curl -sS --proxy \"$ALL_PROXY\" http://good.test:{port}/s; \
         curl -s --proxy \"$ALL_PROXY\" http://bad.test:{port}/s || echo failed=$?"
    );
    let report = run_gated(&env, "bubblewrap", &file, &[&script]);
    assert_eq!(
        report["stdout"], "upstream: GET /s HTTP/1.1\nfailed=97\n",
        "{report}"
    );
    let got: Vec<Value> = connections(&report)
        .into_iter()
        .map(|c| json!([c[0], c[2], c[3], c[4], c[5]]))
        .collect();
    assert_eq!(
        got,
        vec![
            json!(["good.test", "socks5_tcp", "allow", "connect", "policy"]),
            json!(["bad.test", "socks5_tcp", "unmatched", "deny", "user"]),
        ],
        "{report}"
    );
}

#[test]
fn a_raw_address_outside_the_pool_is_refused_at_once() {
    let env = workspace();
    let file = rules(&env, "");
    let py = "import socket, errno\n\
              for addr in (('203.0.113.5', 443), ('198.18.200.1', 443)):\n\
              \x20   try:\n\
              \x20       socket.create_connection(addr, timeout=20)\n\
              \x20       print('connected')\n\
              \x20   except OSError as e:\n\
              \x20       print(errno.errorcode.get(e.errno, e.errno))\n";
    env.write("rawip.py", py);
    for backend in BACKENDS {
        let report = run_gated(&env, backend, &file, &["/usr/bin/python3 rawip.py"]);
        // No route out of the sandbox's namespace; an unused pool address is reset.
        assert_eq!(
            report["stdout"], "ENETUNREACH\nECONNREFUSED\n",
            "{backend}: {report}"
        );
        assert_eq!(report["network"], json!([]), "{backend}: {report}");
    }
}
