//! `suggest`: the rules learned from a session's approvals are exact, narrow, load, pass their
//! examples, have no lint findings, and never let hostile text out of its string literals.

use execgate_execpolicy::lint::{lint, NoHostLookup};
use execgate_execpolicy::suggest::{
    suggest, DecidedBy, Observations, ObservedCommand, ObservedConnection, Outcome,
};
use execgate_execpolicy::{CheckOptions, Decision, Policy, PolicyLoader};

fn command(program: &str, args: &[&str], outcome: Outcome) -> ObservedCommand {
    ObservedCommand {
        program: program.to_owned(),
        args: args.iter().map(|a| a.to_string()).collect(),
        exact: true,
        outcome,
        asked_by: None,
    }
}

const PERSON_OK: Outcome = Outcome::Approved(DecidedBy::Person);
const HOOK_OK: Outcome = Outcome::Approved(DecidedBy::Hook);
const HOOK_NO: Outcome = Outcome::Denied(DecidedBy::Hook);

fn observations(commands: Vec<ObservedCommand>) -> Observations {
    Observations {
        source: "audit.jsonl".into(),
        sessions: 1,
        commands,
        connections: Vec::new(),
    }
}

/// Loads `text`, runs its examples and lints it: every example passes, no finding.
fn assert_clean(text: &str) -> Policy {
    let mut loader = PolicyLoader::new().collect_examples();
    loader
        .add_source("suggested.rules", text)
        .unwrap_or_else(|e| panic!("suggested rules load: {e}\n{text}"));
    let (policy, examples) = loader.finish_with_examples();
    assert!(examples.iter().all(|e| e.passed()), "{examples:?}");
    let findings = lint(&policy, &examples, &NoHostLookup);
    assert!(findings.is_empty(), "{}\n{text}", findings[0]);
    policy
}

#[test]
fn approved_and_denied_commands_become_narrow_allow_and_prompt_rules() {
    let text = suggest(
        &observations(vec![
            command("/usr/bin/printenv", &["HOME"], HOOK_OK),
            command("/usr/bin/printenv", &["HOME"], PERSON_OK),
            command("/usr/bin/sleep", &["0"], HOOK_OK),
            command("/usr/bin/sleep", &["0.1"], HOOK_OK),
            command("/usr/bin/rm", &["-f", "x"], HOOK_NO),
            command("/usr/bin/python3.11", &["-c", "print(1)"], HOOK_OK),
            command("/home/u/work/tool", &["build"], PERSON_OK),
        ]),
        None,
    );
    assert_eq!(
        text,
        r#"# Suggested by `execgate policy suggest` from "audit.jsonl":
# 1 session, 7 commands and 0 connections decided by a person or a hook.
# Review every rule before you use it: an "allow" rule runs its commands outside the
# sandbox without asking, whatever arguments follow the pattern.

host_executable(name = "printenv", paths = ["/usr/bin/printenv"])
# ["printenv", "HOME"]: approved 2 times (1 by a person, 1 by a hook)
prefix_rule(
    pattern = ["printenv", "HOME"],
    decision = "allow",
    match = [
        ["printenv", "HOME"],
    ],
)

# ["rm"]: denied once by a hook
prefix_rule(
    pattern = ["rm"],
    decision = "prompt",
    justification = "denied when this session was recorded; ask again",
    match = [
        ["rm", "-f", "x"],
    ],
)

host_executable(name = "sleep", paths = ["/usr/bin/sleep"])
# ["sleep"]: approved 2 times by a hook
prefix_rule(
    pattern = ["sleep"],
    decision = "allow",
    match = [
        ["sleep", "0"],
        ["sleep", "0.1"],
    ],
)

# Not suggested (leave these unmatched so they run inside the sandbox, or write a
# prompt rule yourself):
#   ["python3.11"]: approved once by a hook; allowing it would let the sandbox out: outside the sandbox `python3.11` runs the code it is given (`-c`/`-e`, or a script file the sandbox can write) (see `execgate policy lint`)
#   ["tool", "build"]: approved once by a person; "/home/u/work/tool" is not in a system folder, so the sandbox may be able to write it
"#
    );
    let policy = assert_clean(&text);
    let resolve = CheckOptions {
        resolve_host_executables: true,
    };
    let decide = |argv: &[&str]| policy.check(argv, &resolve).decision;
    assert_eq!(
        decide(&["/usr/bin/printenv", "HOME"]),
        Some(Decision::Allow)
    );
    assert_eq!(decide(&["/usr/bin/printenv", "PATH"]), None);
    assert_eq!(decide(&["/opt/other/printenv", "HOME"]), None);
    assert_eq!(decide(&["/usr/bin/rm", "-rf", "/"]), Some(Decision::Prompt));
    assert_eq!(decide(&["/usr/bin/python3.11", "-c", "x"]), None);
}

#[test]
fn a_program_both_approved_and_denied_keeps_asking() {
    let text = suggest(
        &observations(vec![
            command("/usr/bin/kubectl2", &["get", "pods"], PERSON_OK),
            command(
                "/usr/bin/kubectl2",
                &["get", "secrets"],
                Outcome::Denied(DecidedBy::Person),
            ),
        ]),
        None,
    );
    assert!(
        text.contains("# [\"kubectl2\", \"get\"]: approved once by a person, denied once by a person\nprefix_rule(\n    pattern = [\"kubectl2\", \"get\"],\n    decision = \"prompt\",\n"),
        "{text}"
    );
    assert!(!text.contains("host_executable"), "{text}");
    assert_clean(&text);
}

#[test]
fn a_bare_program_rule_takes_in_its_subcommands() {
    let text = suggest(
        &observations(vec![
            command("/usr/bin/tool", &["--flag"], HOOK_OK),
            command("/usr/bin/tool", &["sub"], HOOK_OK),
        ]),
        None,
    );
    assert!(
        text.contains("# [\"tool\"]: approved 2 times by a hook\n"),
        "{text}"
    );
    assert!(
        text.contains("        [\"tool\", \"--flag\"],\n        [\"tool\", \"sub\"],\n"),
        "{text}"
    );
    assert_clean(&text);
}

#[test]
fn hostile_text_stays_inside_escaped_string_literals() {
    let text = suggest(
        &observations(vec![
            command(
                "/usr/bin/printenv",
                &["A\u{202e}B", "x\ny\u{2028}# z"],
                HOOK_OK,
            ),
            command("/usr/bin/we\nird", &["x"], HOOK_OK),
            command("/usr/bin/sleep\u{202e}", &["0"], HOOK_OK),
        ]),
        None,
    );
    assert!(text.is_ascii(), "{text}");
    // Every line is a comment or rule syntax we wrote: no line starts with hostile text.
    for line in text.lines() {
        let ours = line.is_empty()
            || line.starts_with('#')
            || line.starts_with("prefix_rule(")
            || line.starts_with("host_executable(")
            || line.starts_with("    ")
            || line == ")";
        assert!(ours, "{line:?}\n{text}");
    }
    let policy = assert_clean(&text);
    let resolve = CheckOptions {
        resolve_host_executables: true,
    };
    // `A\u{202e}B` is not a subcommand word, so the rule is for printenv alone, and its
    // example keeps the exact bytes.
    assert!(
        text.contains("        [\"printenv\", \"A\\u202eB\", \"x\\ny\\u2028# z\"],\n"),
        "{text}"
    );
    assert_eq!(
        policy
            .check(&["/usr/bin/printenv", "A\u{202e}B"], &resolve)
            .decision,
        Some(Decision::Allow)
    );
    assert_eq!(
        policy.check(&["/usr/bin/we\nird", "x"], &resolve).decision,
        Some(Decision::Allow)
    );
}

#[test]
fn long_and_lossy_commands_give_short_exact_examples() {
    let long = "x".repeat(200);
    let many: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let mut lossy = command("/usr/bin/printf", &["\u{fffd}"], HOOK_OK);
    lossy.exact = false;
    let text = suggest(
        &observations(vec![
            command("/usr/bin/seq", &many, HOOK_OK),
            command("/usr/bin/seq", &["1", &long, "2"], HOOK_OK),
            lossy,
        ]),
        None,
    );
    assert!(
        text.contains("        [\"seq\", \"0\", \"1\", \"2\", \"3\", \"4\", \"5\", \"6\"],\n        [\"seq\", \"1\"],\n"),
        "{text}"
    );
    assert!(
        text.contains("    pattern = [\"printf\"],\n    decision = \"allow\",\n    match = [\n        [\"printf\"],\n    ],\n"),
        "{text}"
    );
    assert_clean(&text);
}

#[test]
fn a_command_the_sessions_rule_asked_for_is_listed_not_allowed() {
    let mut asked = command("/usr/bin/git", &["status"], PERSON_OK);
    asked.asked_by = Some("/home/u/.execgate/rules/r.rules:3".into());
    let text = suggest(&observations(vec![asked]), None);
    assert!(
        text.ends_with("#   [\"git\", \"status\"]: approved once by a person; the session's rule at \"/home/u/.execgate/rules/r.rules:3\" asked, and the strictest rule wins, so an allow here would not take effect: change that rule, or answer \"always\" at the prompt\n"),
        "{text}"
    );
    assert!(!text.contains("prefix_rule("), "{text}");
}

#[test]
fn with_the_rules_in_force_nothing_they_overrule_or_already_ask_is_suggested() {
    let existing = Policy::from_source(
        "mine.rules",
        r#"
prefix_rule(pattern = ["git", "status"], decision = "prompt", match = ["git status"])
prefix_rule(pattern = ["rm"], decision = "prompt", match = ["rm x"])
host_executable(name = "date", paths = ["/usr/bin/date"])
prefix_rule(pattern = ["date", "-u"], decision = "forbidden", match = ["date -u"])
"#,
    )
    .unwrap();
    let text = suggest(
        &observations(vec![
            command("/usr/bin/git", &["status"], PERSON_OK),
            command("/usr/bin/rm", &["x"], HOOK_NO),
            command("/usr/bin/date", &["+%s"], HOOK_OK),
        ]),
        Some(&existing),
    );
    assert!(
        text.contains("#   [\"git\", \"status\"]: approved once by a person; your rule at mine.rules:2:1 says prompt, and the strictest rule wins: change that rule, or answer \"always\" at the prompt\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "#   [\"rm\", \"x\"]: denied once by a hook; your rules already ask for it\n"
        ),
        "{text}"
    );
    // date has rules of its own in force: no host_executable that would narrow them.
    assert!(
        text.contains(
            "# [\"date\"]: approved once by a hook\nprefix_rule(\n    pattern = [\"date\"],"
        ),
        "{text}"
    );
    assert!(!text.contains("host_executable("), "{text}");
}

#[test]
fn approved_hosts_become_network_rules_and_denied_ones_prompt() {
    let mut obs = observations(vec![]);
    obs.connections = vec![
        ObservedConnection {
            host: "Example.COM".into(),
            port: Some(443),
            protocol: "https".into(),
            outcome: HOOK_OK,
        },
        ObservedConnection {
            host: "example.com".into(),
            port: Some(8443),
            protocol: "https".into(),
            outcome: PERSON_OK,
        },
        ObservedConnection {
            host: "evil.test".into(),
            port: Some(80),
            protocol: "http".into(),
            outcome: Outcome::Denied(DecidedBy::Person),
        },
        ObservedConnection {
            host: "bad host/\n".into(),
            port: None,
            protocol: "https".into(),
            outcome: PERSON_OK,
        },
    ];
    let text = suggest(&obs, None);
    assert_eq!(
        text,
        r#"# Suggested by `execgate policy suggest` from "audit.jsonl":
# 1 session, 0 commands and 4 connections decided by a person or a hook.
# Review every rule before you use it: an "allow" rule runs its commands outside the
# sandbox without asking, whatever arguments follow the pattern.

# Network
# "http://evil.test" (port 80): denied once by a person
network_rule(host = "evil.test", protocol = "http", decision = "prompt")
# "https://example.com" (port 443, 8443): approved 2 times (1 by a person, 1 by a hook)
network_rule(host = "example.com", protocol = "https", decision = "allow")

# Not suggested (leave these unmatched so they run inside the sandbox, or write a
# prompt rule yourself):
#   "https://bad host/\n": not a host a network rule can name
"#
    );
    assert_clean(&text);
}
