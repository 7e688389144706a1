//! End-to-end tests of `execgate run`: real shells, the real sandbox, real hook scripts and
//! a real pty for the approver.

use crate::support::dirs::Workspace;
use crate::support::pty::{without_terminal, PtyRun};
use crate::support::report::{v, verdicts};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `execgate run ARGS` in `env`, with the freshly built shells and shim.
fn command(env: &Workspace, args: &[&str]) -> Command {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    env.execgate_session(&all)
}

/// [`command`] run to completion with no controlling terminal: the approver is unavailable.
fn run(env: &Workspace, args: &[&str]) -> Output {
    without_terminal(&mut command(env, args)).output().unwrap()
}

/// [`run`] with `--json`; the report and the output.
fn run_json(env: &Workspace, args: &[&str]) -> (Value, Output) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = run(env, &all);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): stdout={} stderr={}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (json, out)
}

const RULES: &str = r#"
prefix_rule(pattern = ["date"], decision = "allow")
prefix_rule(pattern = ["touch"], decision = "prompt", justification = "touch needs a look")
prefix_rule(pattern = ["rm", ["-rf", "-fr"]], decision = "forbidden", justification = "no recursive deletes")
"#;

#[test]
fn mixed_script_gets_exact_verdicts_in_json_and_audit_log() {
    let env = Workspace::new();
    let rules = env.write(".execgate/rules/test.rules", RULES);
    let audit = env.work.join("audit.jsonl");
    let script = "date +%Y | tr 0-9 x; (rm -rf gone); touch t1 || echo touch-denied; \
                  echo abc | cat | wc -c; echo end";
    let (report, out) = run_json(
        &env,
        &[
            "--rules",
            rules.to_str().unwrap(),
            "--audit-log",
            audit.to_str().unwrap(),
            script,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["exit_code"], 0);
    assert_eq!(report["timed_out"], false);
    assert_eq!(report["interrupted"], false);
    assert_eq!(report["stdout"], "xxxx\ntouch-denied\n4\nend\n");
    let stderr = report["stderr"].as_str().unwrap();
    assert!(
        stderr.contains("execgate: denied: /usr/bin/rm -rf gone: no recursive deletes\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "execgate: denied: /usr/bin/touch t1: approval required; no approver available\n"
        ),
        "{stderr}"
    );
    assert_eq!(
        verdicts(&report),
        vec![
            v("cat", "unmatched", "run", "policy"),
            v("date", "allow", "escalate", "policy"),
            v("rm", "forbidden", "deny", "policy"),
            v("touch", "prompt", "deny", "user"),
            v("tr", "unmatched", "run", "policy"),
            v("wc", "unmatched", "run", "policy"),
        ]
    );
    assert!(!env.work.join("t1").exists());
    let date = report["execs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["program"] == "/usr/bin/date")
        .unwrap();
    assert_eq!(date["exit_code"], 0);
    assert_eq!(date["argv"], serde_json::json!(["date", "+%Y"]));
    assert_eq!(date["cwd"], env.work.to_str().unwrap());
    let forbidden = report["execs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["decision"] == "forbidden")
        .unwrap();
    assert_eq!(forbidden["rule"], format!("{}:4", rules.display()));
    assert_eq!(forbidden["justification"], "no recursive deletes");
    assert_eq!(forbidden["exit_code"], 126);

    // The audit log: one complete line per decision, plus one per escalated exit.
    let text = std::fs::read_to_string(&audit).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 7, "{text}");
    assert_eq!(lines.iter().filter(|l| l["event"] == "decided").count(), 6);
    let exited: Vec<&Value> = lines.iter().filter(|l| l["event"] == "exited").collect();
    assert_eq!(exited.len(), 1);
    assert_eq!(exited[0]["program"], "/usr/bin/date");
    assert_eq!(exited[0]["exit_code"], 0);
    let session = lines[0]["session"].as_str().unwrap();
    assert!(lines.iter().all(|l| l["session"] == session));
}

#[test]
fn audit_log_appends_across_sessions() {
    let env = Workspace::new();
    let rules = env.write("r.rules", RULES);
    let audit = env.work.join("audit.jsonl");
    for _ in 0..2 {
        let out = run(
            &env,
            &[
                "--rules",
                rules.to_str().unwrap(),
                "--audit-log",
                audit.to_str().unwrap(),
                "/bin/true",
            ],
        );
        assert_eq!(out.status.code(), Some(0));
    }
    let text = std::fs::read_to_string(&audit).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_ne!(lines[0]["session"], lines[1]["session"]);
}

#[test]
fn default_output_streams_through_and_exit_status_is_the_shells() {
    let env = Workspace::new();
    let rules = env.write("r.rules", RULES);
    let out = run(
        &env,
        &[
            "--rules",
            rules.to_str().unwrap(),
            "echo out; echo err >&2; rm -rf x; exit 3",
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "err\nexecgate: denied: /usr/bin/rm -rf x: no recursive deletes\n"
    );
}

const HOOK: &str = r#"#!/bin/sh
input=$(cat)
case "$input" in
  *hook-allow*) echo '{"hookSpecificOutput":{"hookEventName":"PermissionRequest","decision":{"behavior":"allow"}}}' ;;
  *hook-deny*) echo '{"hookSpecificOutput":{"hookEventName":"PermissionRequest","decision":{"behavior":"deny","message":"hook says no"}}}' ;;
  *hook-stop*) echo '{"hookSpecificOutput":{"hookEventName":"PermissionRequest","decision":{"behavior":"deny","message":"hook stops it","interrupt":true}}}' ;;
  *hook-broken*) echo broken >&2; exit 3 ;;
  *) ;;
esac
"#;

fn hook_env() -> (Workspace, PathBuf, PathBuf) {
    let env = Workspace::new();
    let rules = env.write("r.rules", RULES);
    // Outside the writable roots: a hook whose script the sandbox can write is not run.
    let script = env.home_file("hook.sh", HOOK, 0o644);
    let hooks = env.write(
        "hooks.json",
        &format!(
            r#"{{"hooks":{{"PermissionRequest":[{{"matcher":"Bash","hooks":[{{"type":"command","command":"sh {}"}}]}}]}}}}"#,
            script.display()
        ),
    );
    (env, rules, hooks)
}

fn run_with_hook(env: &Workspace, rules: &Path, hooks: &Path, script: &str) -> (Value, Output) {
    run_json(
        env,
        &[
            "--rules",
            rules.to_str().unwrap(),
            "--hooks",
            hooks.to_str().unwrap(),
            script,
        ],
    )
}

#[test]
fn hook_allow_escalates() {
    let (env, rules, hooks) = hook_env();
    let (report, _) = run_with_hook(&env, &rules, &hooks, "touch hook-allow");
    assert_eq!(
        verdicts(&report),
        vec![v("touch", "prompt", "escalate", "hook")]
    );
    assert_eq!(report["exit_code"], 0);
    assert!(env.work.join("hook-allow").exists());
}

#[test]
fn hook_deny_denies_with_its_message() {
    let (env, rules, hooks) = hook_env();
    let (report, _) = run_with_hook(&env, &rules, &hooks, "touch hook-deny; echo after");
    assert_eq!(
        verdicts(&report),
        vec![v("touch", "prompt", "deny", "hook")]
    );
    assert_eq!(report["execs"][0]["justification"], "hook says no");
    assert_eq!(report["stdout"], "after\n");
    assert!(report["stderr"]
        .as_str()
        .unwrap()
        .contains("execgate: denied: /usr/bin/touch hook-deny: hook says no\n"));
    assert!(!env.work.join("hook-deny").exists());
}

#[test]
fn hook_deny_with_interrupt_ends_the_session() {
    let (env, rules, hooks) = hook_env();
    let (report, out) = run_with_hook(
        &env,
        &rules,
        &hooks,
        "touch hook-stop; echo not-reached; touch never",
    );
    assert_eq!(out.status.code(), Some(130));
    assert_eq!(report["exit_code"], 130);
    assert_eq!(report["interrupted"], true);
    assert_eq!(
        verdicts(&report),
        vec![v("touch", "prompt", "deny", "hook")]
    );
    assert!(!report["stdout"].as_str().unwrap().contains("not-reached"));
}

#[test]
fn silent_and_broken_hooks_fall_through_to_the_approver() {
    let (env, rules, hooks) = hook_env();
    for arg in ["hook-silent", "hook-broken"] {
        let (report, _) = run_with_hook(&env, &rules, &hooks, &format!("touch {arg}"));
        assert_eq!(
            verdicts(&report),
            vec![v("touch", "prompt", "deny", "user")],
            "{arg}"
        );
        assert_eq!(
            report["execs"][0]["justification"],
            "approval required; no approver available"
        );
    }
}

#[test]
fn approval_mode_never_denies_prompts_naming_the_rule() {
    let env = Workspace::new();
    let rules = env.write("r.rules", RULES);
    let (report, _) = run_json(
        &env,
        &[
            "--approval",
            "never",
            "--rules",
            rules.to_str().unwrap(),
            "touch x; touch y2",
        ],
    );
    let execs = report["execs"].as_array().unwrap();
    assert_eq!(execs.len(), 2);
    for e in execs {
        assert_eq!(e["verdict"], "deny");
        assert_eq!(e["source"], "approval-mode");
        assert_eq!(
            e["justification"],
            format!(
                "approval required by rule {}:3; approval mode is never",
                rules.display()
            )
        );
    }
}

#[test]
fn approval_mode_untrusted_asks_for_unmatched_commands_unless_known_safe() {
    let env = Workspace::new();
    let rules = env.write("r.rules", RULES);
    let (report, _) = run_json(
        &env,
        &[
            "--approval",
            "untrusted",
            "--rules",
            rules.to_str().unwrap(),
            "ls >/dev/null; mkdir d",
        ],
    );
    assert_eq!(
        verdicts(&report),
        vec![
            v("ls", "unmatched", "run", "policy"),
            v("mkdir", "unmatched", "deny", "user"),
        ]
    );
    assert!(!env.work.join("d").exists());
}

#[test]
fn approval_mode_on_request_runs_unmatched_commands_in_the_sandbox() {
    let env = Workspace::new();
    let rules = env.write("r.rules", RULES);
    let (report, _) = run_json(&env, &["--rules", rules.to_str().unwrap(), "mkdir d"]);
    assert_eq!(
        verdicts(&report),
        vec![v("mkdir", "unmatched", "run", "policy")]
    );
    assert!(env.work.join("d").is_dir());
}

#[test]
fn bad_rules_file_stops_run_before_the_shell_starts() {
    let env = Workspace::new();
    let rules = env.write("bad.rules", "prefix_rule(pattern = [])\n");
    let out = run(&env, &["--rules", rules.to_str().unwrap(), "touch started"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!("execgate: {}:1:", rules.display())),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!env.work.join("started").exists());
}

#[test]
fn bad_hooks_file_stops_run_before_the_shell_starts() {
    let env = Workspace::new();
    let hooks = env.write("hooks.json", "{\"hooks\": {\n  \"PermissionRequest\": [}\n");
    let out = run(&env, &["--hooks", hooks.to_str().unwrap(), "touch started"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!("execgate: {}:2:", hooks.display())),
        "{stderr}"
    );
    assert!(!env.work.join("started").exists());
}

#[test]
fn timeout_kills_the_whole_session_including_escalated_processes() {
    let env = Workspace::new();
    let rules = env.write(
        "r.rules",
        "prefix_rule(pattern = [\"sleep\", \"31.25\"], decision = \"allow\")\n",
    );
    let started = Instant::now();
    let (report, out) = run_json(
        &env,
        &[
            "--rules",
            rules.to_str().unwrap(),
            "--timeout",
            "1",
            "sleep 31.25 & sleep 32.5; echo not-reached",
        ],
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(124));
    assert_eq!(report["timed_out"], true);
    assert_eq!(report["exit_code"], 124);
    assert_eq!(report["stdout"], "");
    // Neither the escalated nor the sandboxed sleep survives.
    std::thread::sleep(Duration::from_millis(300));
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(!ps.contains("sleep 31.25"), "{ps}");
    assert!(!ps.contains("sleep 32.5"), "{ps}");
}

// ---- the approver, through a real pty -------------------------------------------------

const PROMPT_END: &str = "deny and end the session: ";

/// `execgate run --json --rules RULES SCRIPT` with a pty for the approver to ask on.
fn approving(env: &Workspace, rules: &Path, script: &str) -> PtyRun {
    PtyRun::start(command(
        env,
        &["--json", "--rules", rules.to_str().unwrap(), script],
    ))
}

#[test]
fn approver_y_runs_once_outside_the_sandbox() {
    let env = Workspace::new();
    let rules = env.write("r.rules", RULES);
    let mut run = approving(&env, &rules, "touch yes-file");
    let shown = run.expect(PROMPT_END);
    assert!(
        shown.contains("command: /usr/bin/touch yes-file"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("cwd:     {}", env.work.display())),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("rule:    {}:3", rules.display())),
        "{shown}"
    );
    assert!(shown.contains("reason:  touch needs a look"), "{shown}");
    run.answer("y\n");
    let (report, out) = run.finish();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        verdicts(&report),
        vec![v("touch", "prompt", "escalate", "user")]
    );
    assert!(env.work.join("yes-file").exists());
}

#[test]
fn approver_s_allows_the_prefix_for_the_rest_of_the_session() {
    let env = Workspace::new();
    let rules = env.write("r.rules", RULES);
    let mut run = approving(&env, &rules, "touch s1; touch s2");
    run.expect(PROMPT_END);
    run.answer("s\n");
    let (report, _) = run.finish();
    assert_eq!(
        verdicts(&report),
        vec![
            v("touch", "prompt", "escalate", "user"),
            v("touch", "prompt", "escalate", "user"),
        ]
    );
    assert!(env.work.join("s1").exists() && env.work.join("s2").exists());
}

#[test]
fn approver_a_writes_a_rule_the_next_session_honours() {
    let env = Workspace::new();
    env.write(".execgate/rules/project.rules", RULES);
    env.trust();
    let mut run = PtyRun::start(command(&env, &["--json", "touch a1"]));
    run.expect(PROMPT_END);
    run.answer("a\n");
    let (report, _) = run.finish();
    assert_eq!(
        verdicts(&report),
        vec![v("touch", "prompt", "escalate", "user")]
    );
    let approved = env.home.join(".config/execgate/rules/approved.rules");
    let text = std::fs::read_to_string(&approved).unwrap();
    assert!(text.contains("# Added by execgate on "), "{text}");
    assert!(
        text.contains("prefix_rule(pattern=[\"touch\"], decision=\"allow\")\n"),
        "{text}"
    );

    // Next session: discovery loads the approvals file; no prompt (no terminal at all).
    let (report, _) = run_json(&env, &["touch a2"]);
    assert_eq!(
        verdicts(&report),
        vec![v("touch", "prompt", "escalate", "policy")]
    );
    assert_eq!(
        report["execs"][0]["rule"],
        format!("{}:3", approved.display())
    );
    assert!(env.work.join("a2").exists());
    // A forbidden rule still wins over a saved approval.
    let (report, _) = run_json(&env, &["rm -rf a2"]);
    assert_eq!(
        verdicts(&report),
        vec![v("rm", "forbidden", "deny", "policy")]
    );
}

#[test]
fn approver_n_denies() {
    let env = Workspace::new();
    let rules = env.write("r.rules", RULES);
    let mut run = approving(&env, &rules, "touch no-file; echo after");
    run.expect(PROMPT_END);
    run.answer("n\n");
    let (report, _) = run.finish();
    assert_eq!(
        verdicts(&report),
        vec![v("touch", "prompt", "deny", "user")]
    );
    assert_eq!(report["execs"][0]["justification"], "denied by the user");
    assert_eq!(report["stdout"], "after\n");
    assert!(!env.work.join("no-file").exists());
}

#[test]
fn approver_x_denies_and_ends_the_session() {
    let env = Workspace::new();
    let rules = env.write("r.rules", RULES);
    let mut run = approving(&env, &rules, "touch x-file; echo after");
    run.expect(PROMPT_END);
    run.answer("x\n");
    let (report, out) = run.finish();
    assert_eq!(out.status.code(), Some(130));
    assert_eq!(report["interrupted"], true);
    assert_eq!(report["stdout"], "");
    assert!(!env.work.join("x-file").exists());
}

#[test]
fn concurrent_prompts_are_asked_one_at_a_time() {
    let env = Workspace::new();
    let rules = env.write("r.rules", RULES);
    let mut run = approving(&env, &rules, "touch p1 | touch p2");
    let first = run.expect(PROMPT_END);
    assert_eq!(first.matches("approval needed").count(), 1, "{first}");
    run.answer("y\n");
    run.expect(PROMPT_END);
    run.answer("n\n");
    let (report, _) = run.finish();
    assert_eq!(
        verdicts(&report),
        vec![
            v("touch", "prompt", "deny", "user"),
            v("touch", "prompt", "escalate", "user"),
        ]
    );
}

#[test]
fn timeout_does_not_count_time_waiting_for_a_person() {
    let env = Workspace::new();
    let rules = env.write("r.rules", RULES);
    let mut run = PtyRun::start(command(
        &env,
        &[
            "--json",
            "--timeout",
            "2",
            "--rules",
            rules.to_str().unwrap(),
            "touch slow; echo finished",
        ],
    ));
    run.expect(PROMPT_END);
    std::thread::sleep(Duration::from_secs(3));
    run.answer("y\n");
    let (report, out) = run.finish();
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["timed_out"], false);
    assert_eq!(report["stdout"], "finished\n");
}

// ---- the sandbox and escalation together (issue 5) -------------------------------------

/// A folder outside every writable root (not under /tmp, which workspace-write opens).
fn outside_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("execgate-outside-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

#[test]
fn escalated_command_writes_outside_the_workspace_but_run_cannot() {
    let env = Workspace::new();
    let outside_tmp = outside_dir();
    let outside = outside_tmp.path().canonicalize().unwrap();
    let rules = env.home.join("r.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"touch\", \"escalated\"], decision = \"allow\")\n",
    )
    .unwrap();
    let script = format!(
        "cd {0} 2>/dev/null; touch {0}/sandboxed || echo sandboxed-write-failed; \
         cd {0} && touch escalated",
        outside.display()
    );
    // `touch escalated` runs in cwd `outside`, outside the sandbox.
    let (report, out) = run_json(&env, &["--rules", rules.to_str().unwrap(), &script]);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["stdout"], "sandboxed-write-failed\n");
    assert!(!outside.join("sandboxed").exists());
    assert!(outside.join("escalated").exists());
    assert_eq!(
        verdicts(&report),
        vec![
            v("touch", "allow", "escalate", "policy"),
            v("touch", "unmatched", "run", "policy"),
        ]
    );
}

#[test]
fn interception_works_inside_the_sandbox_in_every_mode_and_backend() {
    let rules_text = "prefix_rule(pattern = [\"date\"], decision = \"allow\")\n\
                      prefix_rule(pattern = [\"rm\", \"-rf\"], decision = \"forbidden\")\n";
    for backend in ["bubblewrap", "landlock"] {
        for mode in ["read-only", "workspace-write", "danger-full-access"] {
            let env = Workspace::new();
            let rules = env.home.join("r.rules");
            std::fs::write(&rules, rules_text).unwrap();
            let out = {
                let mut cmd = command(
                    &env,
                    &[
                        "--json",
                        "--sandbox",
                        mode,
                        "--rules",
                        rules.to_str().unwrap(),
                        "date +%Y >/dev/null; rm -rf x; touch made; /bin/true",
                    ],
                );
                if backend == "landlock" {
                    // The rules file lies under /tmp, a writable root Landlock cannot carve
                    // it out of; its refusal without this flag is tested in the sandbox crate.
                    cmd.arg("--allow-unprotected-landlock");
                }
                cmd.env("EXECGATE_SANDBOX_BACKEND", backend);
                without_terminal(&mut cmd).output().unwrap()
            };
            let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
                panic!("{backend}/{mode}: {}", String::from_utf8_lossy(&out.stderr))
            });
            assert_eq!(
                verdicts(&report),
                vec![
                    v("date", "allow", "escalate", "policy"),
                    v("rm", "forbidden", "deny", "policy"),
                    v("touch", "unmatched", "run", "policy"),
                    v("true", "unmatched", "run", "policy"),
                ],
                "{backend}/{mode}"
            );
            // The sandboxed touch may write the workspace except in read-only mode.
            assert_eq!(
                env.work.join("made").exists(),
                mode != "read-only",
                "{backend}/{mode}"
            );
        }
    }
}

#[test]
fn basename_allow_never_escalates_a_program_the_sandbox_could_write() {
    let env = Workspace::new();
    let rules = env.home.join("r.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"date\"], decision = \"allow\")\n\
         prefix_rule(pattern = [\"rm\"], decision = \"forbidden\")\n",
    )
    .unwrap();
    std::fs::create_dir_all(env.work.join("bin")).unwrap();
    std::fs::copy("/usr/bin/date", env.work.join("bin/date")).unwrap();
    std::fs::copy("/usr/bin/rm", env.work.join("bin/rm")).unwrap();
    let (report, _) = run_json(
        &env,
        &[
            "--rules",
            rules.to_str().unwrap(),
            "./bin/date +%Y >/dev/null; ./bin/rm -f nothing; date +%Y >/dev/null",
        ],
    );
    // The workspace copy of `date` runs in the sandbox; the system one is escalated; the
    // workspace copy of `rm` is still forbidden (stricter is always safe).
    assert_eq!(
        verdicts(&report),
        vec![
            v("date", "allow", "escalate", "policy"),
            v("date", "unmatched", "run", "policy"),
            v("rm", "forbidden", "deny", "policy"),
        ]
    );
    let workspace_date = report["execs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["decision"] == "unmatched")
        .unwrap();
    assert_eq!(
        workspace_date["program"],
        env.work.join("bin/date").to_str().unwrap()
    );
}

#[test]
fn escalated_execs_list_the_request_variables_they_did_not_get() {
    let env = Workspace::new();
    let rules = env.home.join("r.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"git\", \"status\"], decision = \"allow\")\n\
         prefix_rule(pattern = [\"printenv\"], decision = \"allow\")\n",
    )
    .unwrap();
    let status = Command::new("git")
        .args(["init", "-q"])
        .current_dir(&env.work)
        .status()
        .unwrap();
    assert!(status.success());
    // The user's own repository: trusted, so commands may escalate in it.
    env.trust();
    // zsh exports LOGNAME when it is missing: give execgate the same, so the shell's
    // environment differs from the session's only by what the script sets.
    let user = Command::new("id").arg("-un").output().unwrap().stdout;
    let user = String::from_utf8(user).unwrap().trim().to_owned();
    let run_json = |args: &[&str]| {
        let mut all = vec!["run", "--json"];
        all.extend_from_slice(args);
        let out = without_terminal(env.execgate_session(&all).env("LOGNAME", &user))
            .output()
            .unwrap();
        let json: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
        (json, out)
    };
    let audit = env.home.join("audit.jsonl");
    let script = "FOO=1 git status --short; git status --short; \
                  TERM=dumb FOO=2 BAR=3 printenv TERM FOO BAR";
    let (report, out) = run_json(&[
        "--rules",
        rules.to_str().unwrap(),
        "--audit-log",
        audit.to_str().unwrap(),
        script,
    ]);
    // printenv got TERM (a checked display variable) but neither FOO nor BAR, and says so
    // by its status.
    assert_eq!(report["stdout"], "dumb\n", "{report}");
    assert_eq!(out.status.code(), Some(1), "{report}");
    let dropped: Vec<&Value> = report["execs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["env_dropped"])
        .collect();
    // In request order: absent when nothing was dropped.
    assert_eq!(
        dropped,
        [
            &serde_json::json!(["FOO"]),
            &Value::Null,
            &serde_json::json!(["FOO", "BAR"])
        ],
        "{report}"
    );
    assert!(report["execs"][1].get("env_dropped").is_none());
    // The audit log's exit lines carry the same list.
    let text = std::fs::read_to_string(&audit).unwrap();
    let exited: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["event"] == "exited")
        .collect();
    assert_eq!(exited.len(), 3, "{text}");
    assert_eq!(
        exited[0]["env_dropped"],
        serde_json::json!(["FOO"]),
        "{text}"
    );

    // --pass-env lets a name through, byte for byte.
    let (report, out) = run_json(&[
        "--rules",
        rules.to_str().unwrap(),
        "--pass-env",
        "FOO",
        "--pass-env",
        "BAR",
        "FOO=2 BAR='a b' printenv FOO BAR",
    ]);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["stdout"], "2\na b\n", "{report}");
    assert!(report["execs"][0].get("env_dropped").is_none(), "{report}");
}

#[test]
fn pass_env_is_in_the_help_and_refuses_names_the_session_sets() {
    let env = Workspace::new();
    let help = env.execgate(&["run", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("--pass-env <NAME>"), "{help}");
    for mcp in [false, true] {
        let sub = if mcp { "mcp" } else { "run" };
        let mut args = vec![sub, "--pass-env", "LD_PRELOAD"];
        if !mcp {
            args.push("true");
        }
        let out = env.execgate(&args).stdin(Stdio::null()).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{sub}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            stderr.starts_with(
                "error: invalid value 'LD_PRELOAD' for '--pass-env <NAME>': LD_PRELOAD cannot \
                 be passed to escalated commands: the session sets it to load the preload \
                 shim in the sandbox\n"
            ),
            "{sub}: {stderr}"
        );
    }
}

// ---- a flood of prompt-worthy execs (issue 13) ------------------------------------------

#[test]
fn a_flood_of_prompted_execs_runs_a_few_hooks_at_a_time_and_leaves_none_behind() {
    let env = Workspace::new();
    let rules = env.write(
        "r.rules",
        "prefix_rule(pattern = [\"git\", \"push\"], decision = \"prompt\")\n",
    );
    let log = env.root().join("hooks.log");
    let hook = env.root().join("hook.sh");
    std::fs::write(
        &hook,
        format!(
            "echo start >> {0}\nsleep 0.2\necho end >> {0}\n",
            log.display()
        ),
    )
    .unwrap();
    let hooks = env.write(
        "hooks.json",
        &serde_json::json!({"hooks": {"PermissionRequest": [{"hooks": [
            {"type": "command", "command": format!("sh {}", hook.display())}
        ]}]}})
        .to_string(),
    );
    // 300 execs, 30 distinct commands, all pending at once.
    let script = "for i in $(seq 300); do git push origin b$((i % 30)) 2>/dev/null & done; wait";
    let (report, out) = run_json(
        &env,
        &[
            "--rules",
            rules.to_str().unwrap(),
            "--hooks",
            hooks.to_str().unwrap(),
            script,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{report}");
    let execs: Vec<&Value> = report["execs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["argv"][0] == "git")
        .collect();
    assert_eq!(execs.len(), 300);
    // Those past the server's cap of undecided execs are refused before any hook runs.
    let asked = execs
        .iter()
        .filter(|e| e["justification"] == "approval required; no approver available")
        .count();
    for exec in &execs {
        assert_eq!(exec["verdict"], "deny", "{exec}");
    }
    assert!(asked >= 30, "only {asked} execs reached the hooks");
    let text = std::fs::read_to_string(&log).unwrap();
    let (mut now, mut most, mut runs) = (0i32, 0i32, 0);
    for line in text.lines() {
        if line == "start" {
            now += 1;
            runs += 1;
        } else {
            now -= 1;
        }
        most = most.max(now);
    }
    assert!(most <= 4, "{most} hooks ran at once");
    assert!(
        (1..=asked).contains(&runs),
        "{runs} hook runs for {asked} execs"
    );
    assert_eq!(now, 0, "a hook was still running when the session ended");
    let left = crate::support::procs::find_process(hook.to_str().unwrap());
    assert_eq!(left, None, "a hook process outlived the session");
}
