//! Every lint finding: a rules file that triggers it and one that does not.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{lint, Finding, HostLookup, LintCode, NoHostLookup, Severity};
use crate::PolicyLoader;

/// A machine where `sh` is `/usr/bin/sh` → `/usr/bin/dash`, `/bin` is a link to `/usr/bin`,
/// `python3` → `python3.11`, and `git` and `dash` are plain files.
struct FakeHost {
    path: HashMap<&'static str, &'static str>,
    links: HashMap<&'static str, &'static str>,
}

impl FakeHost {
    fn new() -> Self {
        Self {
            path: HashMap::from([
                ("sh", "/usr/bin/sh"),
                ("dash", "/usr/bin/dash"),
                ("git", "/usr/bin/git"),
                ("python3", "/usr/bin/python3"),
            ]),
            links: HashMap::from([
                ("/usr/bin/sh", "/usr/bin/dash"),
                ("/bin/sh", "/usr/bin/dash"),
                ("/bin/git", "/usr/bin/git"),
                ("/usr/bin/python3", "/usr/bin/python3.11"),
                ("/usr/bin/dash", "/usr/bin/dash"),
                ("/usr/bin/git", "/usr/bin/git"),
                ("/usr/bin/python3.11", "/usr/bin/python3.11"),
            ]),
        }
    }
}

impl HostLookup for FakeHost {
    fn find_program(&self, name: &str) -> Option<PathBuf> {
        self.path.get(name).map(PathBuf::from)
    }
    fn canonicalize(&self, path: &Path) -> Option<PathBuf> {
        self.links.get(path.to_str()?).map(PathBuf::from)
    }
}

fn findings_with(text: &str, host: &dyn HostLookup) -> Vec<Finding> {
    let mut loader = PolicyLoader::new()
        .with_home_dir(Some("/home/u".into()))
        .collect_examples();
    loader.add_source("t.rules", text).expect("loads");
    let (policy, examples) = loader.finish_with_examples();
    lint(&policy, &examples, host)
}

fn findings(text: &str) -> Vec<Finding> {
    findings_with(text, &NoHostLookup)
}

/// The findings of one check, as printed.
fn printed(text: &str, code: LintCode) -> Vec<String> {
    printed_with(text, code, &NoHostLookup)
}

fn printed_with(text: &str, code: LintCode, host: &dyn HostLookup) -> Vec<String> {
    findings_with(text, host)
        .iter()
        .filter(|f| f.code == code)
        .map(ToString::to_string)
        .collect()
}

fn codes(text: &str) -> Vec<(u32, LintCode)> {
    findings(text)
        .iter()
        .map(|f| (f.location.line, f.code))
        .collect()
}

#[test]
fn a_clean_file_has_no_findings() {
    let text = r#"
host_executable(name = "git", paths = ["/usr/bin/git"])
prefix_rule(pattern = ["git", "status"], decision = "allow", match = ["git status"])
prefix_rule(pattern = ["git", "push"], decision = "prompt", match = ["git push origin"])
prefix_rule(pattern = ["rm", "-rf"], decision = "forbidden", match = ["rm -rf /"])
network_rule(host = "crates.io", protocol = "https", decision = "allow")
"#;
    assert_eq!(findings_with(text, &FakeHost::new()), vec![]);
}

#[test]
fn allowing_an_interpreter_is_an_escape_hatch_error() {
    let text =
        r#"prefix_rule(pattern = ["python3"], decision = "allow", match = ["python3 x.py"])"#;
    assert_eq!(
        printed(text, LintCode::EscapeHatch),
        vec![
            "t.rules:1:1: error: allow escalates `python3`: outside the sandbox it runs the code it is given (`-c`/`-e`, or a script file the sandbox can write)\n  fix: write decision = \"prompt\" (a person sees each command), or remove the rule so `python3` runs inside the sandbox"
        ]
    );
    assert_eq!(findings(text)[0].severity(), Severity::Error);
}

#[test]
fn alternatives_with_one_reason_make_one_finding() {
    let text =
        r#"prefix_rule(pattern = ["git", ["status", "log", "diff"]], match = ["git status"])"#;
    assert_eq!(
        printed(text, LintCode::EscapeHatch),
        vec![
            "t.rules:1:1: error: allow escalates `git log` and `git diff`: outside the sandbox each writes any file named by `--output=FILE` (`format-patch -o DIR`), with contents the sandbox chooses\n  fix: write decision = \"prompt\" (a person sees each command), or remove the rule so `git log` and `git diff` run inside the sandbox"
        ]
    );
}

#[test]
fn each_escape_hatch_of_the_issue_is_flagged() {
    for (pattern, example) in [
        (r#"["sh", "-c"]"#, "sh -c x"),
        (r#"["bash"]"#, "bash x.sh"),
        (r#"["node"]"#, "node -e x"),
        (r#"["perl", "-e"]"#, "perl -e x"),
        (r#"["ruby"]"#, "ruby x.rb"),
        (r#"["python3.12"]"#, "python3.12 -c x"),
        (r#"["env"]"#, "env sh"),
        (r#"["xargs"]"#, "xargs rm"),
        (r#"["find", "."]"#, "find . -exec sh ;"),
        (r#"["make"]"#, "make"),
        (r#"["cargo", ["build", "test", "run"]]"#, "cargo build"),
        (r#"["npm", ["run", "install", "test"]]"#, "npm run x"),
        (r#"["pip", "install"]"#, "pip install ."),
        (r#"["git", "-c"]"#, "git -c x=y status"),
        (r#"["git", "--exec-path"]"#, "git --exec-path /tmp status"),
        (
            r#"["git", "fetch", "--upload-pack"]"#,
            "git fetch --upload-pack x",
        ),
        (r#"["git", "log", "--output"]"#, "git log --output x"),
        (r#"["git"]"#, "git status"),
    ] {
        let text = format!(
            "prefix_rule(pattern = {pattern}, decision = \"allow\", match = [{example:?}])"
        );
        assert_eq!(codes(&text), vec![(1, LintCode::EscapeHatch)], "{pattern}");
    }
}

#[test]
fn prompt_and_forbidden_rules_for_escape_hatches_are_fine() {
    let text = r#"
prefix_rule(pattern = ["python3", "-c"], decision = "prompt", match = ["python3 -c pass"])
prefix_rule(pattern = ["sh", "-c"], decision = "forbidden", match = ["sh -c ls"])
prefix_rule(pattern = ["python3", "--version"], decision = "allow", match = ["python3 --version"])
"#;
    assert_eq!(codes(text), vec![]);
}

#[test]
fn failing_examples_are_errors() {
    let text = r#"prefix_rule(pattern = ["ls"], decision = "prompt", match = ["cat"], not_match = ["ls -l"])"#;
    assert_eq!(
        printed(text, LintCode::ExampleFails),
        vec![
            "t.rules:1:1: error: `match` example `cat` does not match pattern [\"ls\"]\n  fix: fix the example or the pattern (`execgate policy test` lists every example)",
            "t.rules:1:1: error: `not_match` example `ls -l` matches pattern [\"ls\"]\n  fix: fix the example or make the pattern more specific (`execgate policy test` lists every example)",
        ]
    );
}

#[test]
fn a_rule_covered_by_a_stricter_one_never_takes_effect() {
    let text = r#"
prefix_rule(pattern = ["git", "push", "--force"], decision = "prompt", match = ["git push --force"])
prefix_rule(pattern = ["git", "push"], decision = "forbidden", match = ["git push"])
"#;
    assert_eq!(
        printed(text, LintCode::Shadowed),
        vec![
            "t.rules:2:1: warning: this `prompt` rule never takes effect: the rule at t.rules:3:1 also matches every command it matches, with the stricter decision `forbidden`\n  fix: remove it, or narrow the rule at t.rules:3:1 if `prompt` is what those commands should get"
        ]
    );
}

#[test]
fn alternatives_covered_by_several_rules_are_shadowed_too() {
    let text = r#"
prefix_rule(pattern = ["git", ["push", "pull"]], decision = "prompt", match = ["git push"])
prefix_rule(pattern = ["git", "push"], decision = "forbidden", match = ["git push x"])
prefix_rule(pattern = ["git", "pull"], decision = "prompt", match = ["git pull"])
"#;
    assert_eq!(
        printed(text, LintCode::Shadowed),
        vec![
            "t.rules:2:1: warning: this `prompt` rule never takes effect: the rules at t.rules:3:1 and t.rules:4:1 also match every command it matches, with the stricter decision `forbidden`\n  fix: remove it, or narrow the rules at t.rules:3:1 and t.rules:4:1 if `prompt` is what those commands should get"
        ]
    );
}

#[test]
fn a_narrower_rule_with_the_same_decision_changes_nothing() {
    let text = r#"
prefix_rule(pattern = ["ls"], decision = "prompt", match = ["ls"])
prefix_rule(pattern = ["ls", "-l"], decision = "prompt", match = ["ls -l"])
"#;
    assert_eq!(
        printed(text, LintCode::Shadowed),
        vec![
            "t.rules:3:1: warning: this `prompt` rule never changes a decision: the rule at t.rules:2:1 also matches every command it matches and decides `prompt` too\n  fix: remove it; the rule at t.rules:2:1 already decides the same"
        ]
    );
}

#[test]
fn a_stricter_narrower_rule_and_partly_covered_rules_are_not_shadowed() {
    let text = r#"
prefix_rule(pattern = ["ls"], decision = "prompt", match = ["ls"])
prefix_rule(pattern = ["ls", "-l"], decision = "forbidden", match = ["ls -l"])
prefix_rule(pattern = ["git", ["push", "pull"]], decision = "prompt", match = ["git push"])
prefix_rule(pattern = ["git", "push"], decision = "forbidden", match = ["git push x"])
"#;
    assert_eq!(codes(text), vec![(4, LintCode::ExampleDecidedElsewhere)]);
}

#[test]
fn repeated_rules_are_duplicates_reported_once() {
    let text = r#"
prefix_rule(pattern = ["git", ["push", "pull"]], decision = "prompt", match = ["git push"])
prefix_rule(pattern = ["git", ["pull", "push"]], decision = "prompt", match = ["git pull"])
"#;
    assert_eq!(
        printed(text, LintCode::Duplicate),
        vec!["t.rules:3:1: warning: this rule repeats the rule at t.rules:2:1 (same pattern, same decision)\n  fix: remove one of them"]
    );
    assert_eq!(codes(text), vec![(3, LintCode::Duplicate)]);
}

#[test]
fn an_example_decided_by_a_stricter_rule_is_flagged() {
    let text = r#"
prefix_rule(pattern = ["git"], decision = "allow", match = ["git status", "git push --force"])
prefix_rule(pattern = ["git", "push"], decision = "forbidden", match = ["git push"])
"#;
    let found = printed(text, LintCode::ExampleDecidedElsewhere);
    assert_eq!(
        found,
        vec![
            "t.rules:2:1: warning: `match` example `git push --force` passes, but t.rules:3:1 decides it (forbidden), not this rule (allow)\n  fix: move the example to the rule at t.rules:3:1, or narrow that rule if this one should decide `git push --force`"
        ]
    );
}

#[test]
fn examples_decided_by_their_own_rule_are_fine() {
    let text = r#"
prefix_rule(pattern = ["git", "push"], decision = "prompt", match = ["git push"])
prefix_rule(pattern = ["git", "push", "--force"], decision = "forbidden", match = ["git push --force"])
"#;
    assert_eq!(codes(text), vec![]);
}

#[test]
fn a_name_that_runs_another_file_is_explained() {
    let text =
        r#"prefix_rule(pattern = ["sh", "-c"], decision = "forbidden", match = ["sh -c ls"])"#;
    assert_eq!(
        printed_with(text, LintCode::ResolvesElsewhere, &FakeHost::new()),
        vec![
            "t.rules:1:1: warning: \"sh\" runs \"/usr/bin/dash\" on this machine (\"/usr/bin/sh\" is a link): execgate checks a command against the name it was invoked by and the file that runs, strictest decision wins, so rules for \"dash\" also decide \"sh\" commands, and \"dash\" run by its own name is not decided by this rule\n  fix: list both names in the first position (pattern = [[\"sh\", \"dash\"], ...]) so running \"dash\" directly is decided the same way"
        ]
    );
}

#[test]
fn a_name_whose_target_has_rules_asks_for_consistency() {
    let text = r#"
prefix_rule(pattern = ["python3", "--version"], decision = "allow", match = ["python3 --version"])
prefix_rule(pattern = ["python3.11", "--version"], decision = "allow", match = ["python3.11 --version"])
"#;
    let found = printed_with(text, LintCode::ResolvesElsewhere, &FakeHost::new());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].ends_with("fix: keep the rules for \"python3\" and \"python3.11\" consistent, or write them once with both names first: [\"python3\", \"python3.11\"]"),
        "{found:?}"
    );
}

#[test]
fn a_link_path_in_a_rule_or_host_executable_is_explained() {
    let text = r#"
host_executable(name = "git", paths = ["/bin/git"])
prefix_rule(pattern = ["/bin/sh", "-c"], decision = "forbidden", match = ["/bin/sh -c x"])
prefix_rule(pattern = ["git", "status"], decision = "allow", match = ["git status"])
"#;
    assert_eq!(
        printed_with(text, LintCode::ResolvesElsewhere, &FakeHost::new()),
        vec![
            "t.rules:2:1: warning: host_executable path \"/bin/git\" is \"/usr/bin/git\" on this machine: a command that runs \"/usr/bin/git\" by that path gets the rules for \"git\" only if \"/usr/bin/git\" is listed too\n  fix: add \"/usr/bin/git\" to paths if it is the program you mean",
            "t.rules:3:1: warning: \"/bin/sh\" is \"/usr/bin/dash\" on this machine: this rule matches commands that run \"/bin/sh\" by that path; one that runs \"/usr/bin/dash\" is judged by the rules for \"/usr/bin/dash\" and \"dash\"\n  fix: add \"/usr/bin/dash\" to the first position if it should be decided the same way",
        ]
    );
}

#[test]
fn names_that_are_the_file_they_run_are_fine() {
    let text = r#"
host_executable(name = "git", paths = ["/usr/bin/git", "/bin/git", "/opt/missing/git"])
prefix_rule(pattern = ["git", "status"], decision = "allow", match = ["git status"])
prefix_rule(pattern = ["dash", "-c"], decision = "forbidden", match = ["dash -c x"])
prefix_rule(pattern = ["notinstalled"], decision = "forbidden", match = ["notinstalled"])
"#;
    assert_eq!(
        printed_with(text, LintCode::ResolvesElsewhere, &FakeHost::new()),
        Vec::<String>::new()
    );
}

#[test]
fn rules_without_match_examples_are_reported_with_one_to_add() {
    let text = r#"
prefix_rule(pattern = ["git", ["push", "pull"], "origin"], decision = "prompt", not_match = ["git fetch"])
prefix_rule(pattern = ["ls"], decision = "prompt", match = ["ls"])
"#;
    assert_eq!(
        printed(text, LintCode::NoExamples),
        vec![
            "t.rules:2:1: warning: rule [\"git\", [\"push\", \"pull\"], \"origin\"] has no `match` example\n  fix: add match = [\"git push origin\"] (and not_match for what must stay out), so `execgate policy test` shows the rule matches what you meant"
        ]
    );
}

#[test]
fn rules_made_in_a_loop_without_examples_are_reported_once() {
    let text = "for sub in [\"a\", \"b\"]:\n    prefix_rule(pattern = [\"tool\", sub], decision = \"prompt\")\n";
    let found = printed(text, LintCode::NoExamples);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].contains("rule [\"tool\", \"a\"]") && found[1].contains("rule [\"tool\", \"b\"]")
    );
}

#[test]
fn an_unused_host_executable_is_reported() {
    let text = r#"
host_executable(name = "hub", paths = ["/usr/bin/hub"])
host_executable(name = "git", paths = ["/usr/bin/git"])
prefix_rule(pattern = [["git", "tig"], "status"], decision = "allow", match = ["git status"])
"#;
    assert_eq!(
        printed(text, LintCode::UnusedHostExecutable),
        vec![
            "t.rules:2:1: warning: host_executable(name = \"hub\") names a program no rule is written for\n  fix: remove it, or write the rules for \"hub\" it was meant for"
        ]
    );
}

#[test]
fn addresses_written_another_way_are_named_as_the_address_they_are() {
    let text = r#"
network_rule(host = "2852039166", protocol = "http", decision = "allow")
network_rule(host = "::ffff:8.8.8.8", protocol = "https", decision = "allow")
network_rule(host = "127.0.0.1", protocol = "http", decision = "allow")
network_rule(host = "10.1.2.3", protocol = "http", decision = "allow")
"#;
    assert_eq!(
        printed(text, LintCode::NetworkAddressForm),
        vec![
            "t.rules:2:1: warning: host \"2852039166\" is the address 169.254.169.254 (the cloud metadata address: reachable through the gate only because a rule names it), written another way: the gate compares addresses, not spellings, so this rule is about 169.254.169.254\n  fix: write host = \"169.254.169.254\" so a reader sees which address the rule opens",
            "t.rules:3:1: warning: host \"::ffff:8.8.8.8\" is the address 8.8.8.8, written another way: the gate compares addresses, not spellings, so this rule is about 8.8.8.8\n  fix: write host = \"8.8.8.8\" so a reader sees which address the rule opens",
        ]
    );
}

#[test]
fn a_host_no_connection_can_name_is_unreachable() {
    let text = "network_rule(host = \"b\u{fc}cher.example\", protocol = \"https\", decision = \"allow\")\n\
                network_rule(host = \"a..b\", protocol = \"https\", decision = \"allow\")\n\
                network_rule(host = \"xn--bcher-kva.example\", protocol = \"https\", decision = \"allow\")\n\
                network_rule(host = \"_svc.example\", protocol = \"https\", decision = \"allow\")\n\
                network_rule(host = \"::1\", protocol = \"https\", decision = \"allow\")\n";
    assert_eq!(
        printed(text, LintCode::NetworkUnreachableHost),
        vec![
            "t.rules:1:1: warning: host \"b\\u00fccher.example\" is neither an address nor a DNS name the gate accepts, so no connection can ever match this rule\n  fix: write the name in its ASCII form (punycode, `xn--...`), which is what programs ask for",
            "t.rules:2:1: warning: host \"a..b\" is neither an address nor a DNS name the gate accepts, so no connection can ever match this rule\n  fix: write the host name the program connects to (labels of 1 to 63 letters, digits, `-` or `_`)",
        ]
    );
}

#[test]
fn a_port_in_a_network_rule_is_not_part_of_the_match() {
    let text = r#"
network_rule(host = "example.com:8443", protocol = "https", decision = "allow")
network_rule(host = "example.org", protocol = "https", decision = "allow")
"#;
    assert_eq!(
        printed(text, LintCode::NetworkPort),
        vec![
            "t.rules:2:1: warning: the port in \"example.com:8443\" is not part of the match: like Codex, execgate drops it, so this rule covers \"example.com\" on every port (the port only makes the network gate capture connections to it from programs that ignore proxy settings)\n  fix: write host = \"example.com\" to say what the rule does, unless programs connect to that port without a proxy"
        ]
    );
}

#[test]
fn repeated_and_overruled_network_rules_are_reported() {
    let text = r#"
network_rule(host = "example.com", protocol = "https", decision = "allow")
network_rule(host = "EXAMPLE.com.", protocol = "https", decision = "allow")
network_rule(host = "example.com", protocol = "https", decision = "deny")
network_rule(host = "example.com", protocol = "http", decision = "allow")
"#;
    assert_eq!(
        codes(text),
        vec![(2, LintCode::Shadowed), (3, LintCode::Duplicate),]
    );
}

#[test]
fn two_spellings_of_one_address_are_one_host_for_overrules() {
    let text = r#"
network_rule(host = "127.0.0.1", protocol = "http", decision = "allow")
network_rule(host = "0x7f.1", protocol = "http", decision = "deny")
network_rule(host = "2130706433", protocol = "http", decision = "deny")
"#;
    let found: Vec<_> = codes(text)
        .into_iter()
        .filter(|(_, code)| *code != LintCode::NetworkAddressForm)
        .collect();
    assert_eq!(
        found,
        vec![(2, LintCode::Shadowed), (4, LintCode::Duplicate)]
    );
}

#[test]
fn hostile_tokens_in_findings_are_escaped() {
    let text = "prefix_rule(pattern = [\"sh\\u202e\", \"x\\ny\"], decision = \"prompt\")";
    let found = printed(text, LintCode::NoExamples);
    assert_eq!(found.len(), 1);
    assert!(found[0].contains("[\"sh\\u202e\", \"x\\ny\"]"), "{found:?}");
    assert!(!found[0].contains('\u{202e}'));
    assert_eq!(found[0].lines().count(), 2, "{found:?}");
}

#[test]
fn findings_come_in_file_order() {
    let mut loader = PolicyLoader::new().collect_examples();
    loader
        .add_source(
            "b.rules",
            r#"prefix_rule(pattern = ["x"], decision = "prompt")"#,
        )
        .unwrap();
    loader
        .add_source(
            "a.rules",
            "\n\nprefix_rule(pattern = [\"y\"], decision = \"prompt\")\nprefix_rule(pattern = [\"sh\"])",
        )
        .unwrap();
    let (policy, examples) = loader.finish_with_examples();
    let order: Vec<String> = lint(&policy, &examples, &NoHostLookup)
        .iter()
        .map(|f| format!("{} {}", f.location, f.code.as_str()))
        .collect();
    assert_eq!(
        order,
        vec![
            "b.rules:1:1 no-examples",
            "a.rules:3:1 no-examples",
            "a.rules:4:1 escape-hatch",
            "a.rules:4:1 no-examples",
        ]
    );
}

#[test]
fn hostile_examples_and_subcommands_in_findings_stay_on_their_line() {
    // A rules file can come with a cloned repository: its text must not forge lint output.
    let text = "prefix_rule(pattern = [\"ls\"], decision = \"prompt\", match = [[\"cat\", \"x\\n/etc/ok.rules:1:1: warning: fine\\u202e\"]])\n\
                prefix_rule(pattern = [\"git\", \"log\\u202e\"], match = [\"git log\\u202e\"])\n\
                prefix_rule(pattern = [\"npm\", \"ru\\u202en\"], match = [\"npm ru\\u202en\"])\n";
    for finding in findings(text) {
        let printed = finding.to_string();
        assert!(printed.is_ascii(), "{printed}");
        assert_eq!(printed.lines().count(), 2, "{printed}");
    }
    assert_eq!(
        codes(text),
        vec![(1, LintCode::ExampleFails), (3, LintCode::EscapeHatch),]
    );
}
