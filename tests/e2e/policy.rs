//! End-to-end tests of `execgate policy check` and `execgate policy test`: the real binary,
//! real rule files, exact output.

use crate::support::cli::{example_rules, execgate, run};
use crate::support::dirs::Scratch;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

#[test]
fn check_prints_codex_json_for_a_prompted_command() {
    let (code, stdout, stderr) = run(execgate()
        .args(["policy", "check", "--rules"])
        .arg(example_rules())
        .args(["--", "git", "push", "origin", "main"]));
    assert_eq!((code, stderr.as_str()), (0, ""));
    assert_eq!(
        stdout,
        "{\"matchedRules\":[{\"prefixRuleMatch\":{\"matchedPrefix\":[\"git\",\"push\"],\"decision\":\"prompt\",\"justification\":\"pushing publishes commits; confirm the remote and branch\"}}],\"decision\":\"prompt\"}\n"
    );
}

#[test]
fn check_takes_hyphenated_arguments_without_a_double_dash() {
    let (code, stdout, _) = run(execgate()
        .args(["policy", "check", "--rules"])
        .arg(example_rules())
        .args(["rm", "-rf", "/"]));
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        "{\"matchedRules\":[{\"prefixRuleMatch\":{\"matchedPrefix\":[\"rm\",\"-rf\"],\"decision\":\"forbidden\",\"justification\":\"recursive forced deletion is not allowed; delete specific files instead\"}}],\"decision\":\"forbidden\"}\n"
    );
}

#[test]
fn check_without_a_match_prints_empty_matches_and_no_decision() {
    let (code, stdout, stderr) = run(execgate()
        .args(["policy", "check", "--rules"])
        .arg(example_rules())
        .args(["--", "ls", "-la"]));
    assert_eq!(
        (code, stdout.as_str(), stderr.as_str()),
        (0, "{\"matchedRules\":[]}\n", "")
    );
}

#[test]
fn check_pretty_with_host_resolution_reports_the_resolved_program() {
    let (code, stdout, _) = run(execgate()
        .args([
            "policy",
            "check",
            "--pretty",
            "--resolve-host-executables",
            "--rules",
        ])
        .arg(example_rules())
        .args(["--", "/usr/bin/git", "push"]));
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        r#"{
  "matchedRules": [
    {
      "prefixRuleMatch": {
        "matchedPrefix": [
          "git",
          "push"
        ],
        "decision": "prompt",
        "resolvedProgram": "/usr/bin/git",
        "justification": "pushing publishes commits; confirm the remote and branch"
      }
    }
  ],
  "decision": "prompt"
}
"#
    );
}

#[test]
fn check_does_not_resolve_unlisted_host_executables() {
    let (code, stdout, _) = run(execgate()
        .args(["policy", "check", "--resolve-host-executables", "--rules"])
        .arg(example_rules())
        .args(["--", "/tmp/git", "push"]));
    assert_eq!((code, stdout.as_str()), (0, "{\"matchedRules\":[]}\n"));
}

#[test]
fn check_resolves_home_relative_host_executables_from_home() {
    let dir = Scratch::new();
    let rules = dir.write("home.rules",
        "host_executable(name = \"tool\", paths = [\"~/bin/tool\"])\nprefix_rule(pattern = [\"tool\"], decision = \"prompt\")\n",
    );
    let listed = dir.path().join("bin/tool");
    let (code, stdout, _) = run(execgate()
        .env("HOME", dir.path())
        .args(["policy", "check", "--resolve-host-executables", "--rules"])
        .arg(&rules)
        .arg("--")
        .arg(&listed));
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        format!(
            "{{\"matchedRules\":[{{\"prefixRuleMatch\":{{\"matchedPrefix\":[\"tool\"],\"decision\":\"prompt\",\"resolvedProgram\":\"{}\"}}}}],\"decision\":\"prompt\"}}\n",
            listed.display()
        )
    );
    let (_, stdout, _) = run(execgate()
        .env("HOME", dir.path())
        .args(["policy", "check", "--resolve-host-executables", "--rules"])
        .arg(&rules)
        .args(["--", "/usr/bin/tool"]));
    assert_eq!(stdout, "{\"matchedRules\":[]}\n");
}

#[test]
fn check_merges_several_rules_files_in_order() {
    let dir = Scratch::new();
    let a = dir.write("a.rules", "prefix_rule(pattern = [\"make\"])\n");
    let b = dir.write(
        "b.rules",
        "prefix_rule(pattern = [\"make\", \"install\"], decision = \"forbidden\")\n",
    );
    let (code, stdout, _) = run(execgate()
        .args(["policy", "check", "--rules"])
        .arg(&a)
        .arg("--rules")
        .arg(&b)
        .args(["make", "install"]));
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        "{\"matchedRules\":[{\"prefixRuleMatch\":{\"matchedPrefix\":[\"make\"],\"decision\":\"allow\"}},{\"prefixRuleMatch\":{\"matchedPrefix\":[\"make\",\"install\"],\"decision\":\"forbidden\"}}],\"decision\":\"forbidden\"}\n"
    );
}

#[test]
fn check_with_non_utf8_argument_matches_nothing_and_succeeds() {
    let (code, stdout, _) = run(execgate()
        .args(["policy", "check", "--rules"])
        .arg(example_rules())
        .arg("--")
        .arg("rm")
        .arg(OsStr::from_bytes(b"-\xffrf")));
    assert_eq!((code, stdout.as_str()), (0, "{\"matchedRules\":[]}\n"));
}

#[test]
fn check_with_broken_rules_fails_with_one_located_line() {
    let dir = Scratch::new();
    let rules = dir.write("bad.rules",
        "prefix_rule(pattern = [\"ls\"])\n\nprefix_rule(pattern = [\"git\"], decision = \"deny\")\n",
    );
    let (code, stdout, stderr) = run(execgate()
        .args(["policy", "check", "--rules"])
        .arg(&rules)
        .args(["--", "git"]));
    assert_ne!(code, 0);
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        format!(
            "execgate: {}:3:1: prefix_rule: decision must be \"allow\", \"prompt\" or \"forbidden\" (got \"deny\")\n",
            rules.display()
        )
    );
}

#[test]
fn check_with_missing_rules_file_fails_naming_it() {
    let (code, stdout, stderr) =
        run(execgate().args(["policy", "check", "--rules", "/nonexistent/x.rules", "ls"]));
    assert_ne!(code, 0);
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        "execgate: cannot read rules file /nonexistent/x.rules: No such file or directory (os error 2)\n"
    );
}

#[test]
fn test_passes_the_shipped_example() {
    let (code, stdout, stderr) = run(execgate()
        .args(["policy", "test", "--rules"])
        .arg(example_rules()));
    assert_eq!((code, stderr.as_str()), (0, ""));
    assert!(stdout.ends_with("\n10 passed, 0 failed\n"), "{stdout}");
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok ")).count(), 10);
}

#[test]
fn test_reports_every_failure_in_one_run() {
    let dir = Scratch::new();
    let rules = dir.write(
        "t.rules",
        r#"prefix_rule(pattern = ["git", "status"], match = ["git status", "git stat"])
prefix_rule(pattern = ["ls"], not_match = ["ls -l"])
prefix_rule(pattern = ["cat"], match = ["cat x"])
"#,
    );
    let (code, stdout, stderr) = run(execgate().args(["policy", "test", "--rules"]).arg(&rules));
    assert_eq!((code, stderr.as_str()), (1, ""));
    let file = rules.display();
    assert_eq!(
        stdout,
        format!(
            "ok {file}:1:1: match `git status`\n\
             FAIL {file}:1:1: prefix_rule: `match` example `git stat` does not match pattern [\"git\", \"status\"]; fix the example or the pattern\n\
             FAIL {file}:2:1: prefix_rule: `not_match` example `ls -l` matches pattern [\"ls\"]; fix the example or make the pattern more specific\n\
             ok {file}:3:1: match `cat x`\n\
             2 passed, 2 failed\n"
        )
    );
}

#[test]
fn test_json_lists_each_example_with_its_outcome() {
    let dir = Scratch::new();
    let rules = dir.write(
        "t.rules",
        "prefix_rule(pattern = [\"ls\"], match = [\"ls\"], not_match = [[\"ls\", \"-l\"]])\n",
    );
    let (code, stdout, _) = run(execgate()
        .args(["policy", "test", "--json", "--rules"])
        .arg(&rules));
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let file = rules.display().to_string();
    assert_eq!(
        report,
        serde_json::json!({
            "passed": 1,
            "failed": 1,
            "examples": [
                {"file": file, "line": 1, "column": 1, "pattern": "[\"ls\"]", "kind": "match",
                 "example": ["ls"], "passed": true},
                {"file": file, "line": 1, "column": 1, "pattern": "[\"ls\"]", "kind": "not_match",
                 "example": ["ls", "-l"], "passed": false,
                 "failure": "prefix_rule: `not_match` example `ls -l` matches pattern [\"ls\"]; fix the example or make the pattern more specific"}
            ]
        })
    );
}

#[test]
fn test_with_a_syntax_error_fails_with_one_located_line() {
    let dir = Scratch::new();
    let rules = dir.write("t.rules", "prefix_rule(pattern = [\"ls\"]\n");
    let (code, stdout, stderr) = run(execgate().args(["policy", "test", "--rules"]).arg(&rules));
    assert_eq!((code, stdout.as_str()), (2, ""));
    assert!(
        stderr.starts_with(&format!("execgate: {}:", rules.display())),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn check_network_prints_the_rules_naming_the_destination_and_the_strictest_decision() {
    let dir = Scratch::new();
    let rules = dir.write(
        "net.rules",
        "network_rule(host = \"pypi.org\", protocol = \"https\", decision = \"allow\")\n\
         network_rule(host = \"PyPI.org.:443\", protocol = \"https\", decision = \"prompt\", justification = \"ask first\")\n\
         network_rule(host = \"pypi.org\", protocol = \"http\", decision = \"deny\")\n",
    );
    let file = rules.display();
    let (code, stdout, stderr) = run(execgate()
        .args(["policy", "check", "--rules"])
        .arg(&rules)
        .args(["--network", "PYPI.ORG:8443"]));
    assert_eq!((code, stderr.as_str()), (0, ""));
    assert_eq!(
        stdout,
        format!("{{\"host\":\"pypi.org\",\"port\":8443,\"protocol\":\"https\",\"matchedRules\":[{{\"networkRuleMatch\":{{\"host\":\"pypi.org\",\"protocol\":\"https\",\"decision\":\"allow\",\"rule\":\"{file}:1\"}}}},{{\"networkRuleMatch\":{{\"host\":\"pypi.org\",\"protocol\":\"https\",\"decision\":\"prompt\",\"justification\":\"ask first\",\"rule\":\"{file}:2\"}}}}],\"decision\":\"prompt\"}}\n")
    );
    // The protocol is part of the match; a bare host takes the protocol's port.
    let (code, stdout, _) = run(execgate()
        .args(["policy", "check", "--rules"])
        .arg(&rules)
        .args(["--network", "pypi.org", "--protocol", "http"]));
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        format!("{{\"host\":\"pypi.org\",\"port\":80,\"protocol\":\"http\",\"matchedRules\":[{{\"networkRuleMatch\":{{\"host\":\"pypi.org\",\"protocol\":\"http\",\"decision\":\"forbidden\",\"rule\":\"{file}:3\"}}}}],\"decision\":\"forbidden\"}}\n")
    );
    let (code, stdout, _) = run(execgate()
        .args(["policy", "check", "--rules"])
        .arg(&rules)
        .args(["--network", "pypi.org", "--protocol", "socks5_tcp"]));
    assert_eq!(
        (code, stdout.as_str()),
        (
            0,
            "{\"host\":\"pypi.org\",\"port\":443,\"protocol\":\"socks5_tcp\",\"matchedRules\":[]}\n"
        )
    );
}

#[test]
fn check_network_reads_addresses_as_the_gate_does_and_says_which_are_not_public() {
    // The README's transcript.
    let (code, stdout, _) = run(execgate()
        .args(["policy", "check", "--rules"])
        .arg(example_rules())
        .args(["--network", "0x7f.1:8080", "--protocol", "http"]));
    assert_eq!(
        (code, stdout.as_str()),
        (
            0,
            "{\"host\":\"127.0.0.1\",\"port\":8080,\"protocol\":\"http\",\"notPublic\":\"loopback (127.0.0.0/8)\",\"matchedRules\":[]}\n"
        )
    );
    let (code, stdout, _) = run(execgate()
        .args(["policy", "check", "--rules"])
        .arg(example_rules())
        .args(["--network", "2852039166:80", "--protocol", "http"]));
    assert_eq!(
        (code, stdout.as_str()),
        (
            0,
            "{\"host\":\"169.254.169.254\",\"port\":80,\"protocol\":\"http\",\"notPublic\":\"the cloud metadata address\",\"matchedRules\":[]}\n"
        )
    );
    let (code, stdout, _) = run(execgate()
        .args(["policy", "check", "--rules"])
        .arg(example_rules())
        .args(["--network", "[::ffff:10.1.2.3]:443"]));
    assert_eq!(
        (code, stdout.as_str()),
        (
            0,
            "{\"host\":\"10.1.2.3\",\"port\":443,\"protocol\":\"https\",\"notPublic\":\"private (10.0.0.0/8)\",\"matchedRules\":[]}\n"
        )
    );
}

#[test]
fn check_network_refuses_what_is_not_a_destination() {
    for target in ["user@host:443", "host:99999", "::1:443", ""] {
        let (code, stdout, stderr) = run(execgate()
            .args(["policy", "check", "--rules"])
            .arg(example_rules())
            .args(["--network", target]));
        assert_eq!((code, stdout.as_str()), (2, ""), "{target:?}");
        assert_eq!(
            stderr,
            format!("execgate: --network {target:?} is not a host the gate would connect to; write HOST, HOST:PORT or [IPV6]:PORT (e.g. pypi.org:443)\n")
        );
    }
    let (code, _, stderr) = run(execgate()
        .args(["policy", "check", "--rules"])
        .arg(example_rules())
        .args(["--network", "a.test", "--", "ls"]));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("'--network <HOST[:PORT]>' cannot be used with '[CMD]...'"),
        "{stderr}"
    );
}
