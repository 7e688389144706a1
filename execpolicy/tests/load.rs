//! Loading rule files: every builtin, the Starlark features rule files may use, and every kind
//! of load error with its `file:line:col` location.

use std::path::PathBuf;

use execgate_execpolicy::{
    CheckOptions, Decision, ExampleKind, NetworkProtocol, Policy, PolicyError, PolicyLoader,
};

fn load(text: &str) -> Policy {
    match Policy::from_source("test.rules", text) {
        Ok(policy) => policy,
        Err(err) => panic!("rules should load: {err}"),
    }
}

fn load_error(text: &str) -> String {
    match Policy::from_source("test.rules", text) {
        Ok(_) => panic!("rules should not load:\n{text}"),
        Err(err) => err.to_string(),
    }
}

fn decision(policy: &Policy, argv: &[&str]) -> Option<Decision> {
    policy.check(argv, &CheckOptions::default()).decision
}

#[test]
fn prefix_rule_defaults_to_allow_without_justification() {
    let policy = load(r#"prefix_rule(pattern = ["git", "status"])"#);
    let rule = &policy.rules()[0];
    assert_eq!(rule.decision, Decision::Allow);
    assert_eq!(rule.justification, None);
    assert_eq!(rule.source.to_string(), "test.rules:1:1");
}

#[test]
fn prefix_rule_keeps_decision_and_justification() {
    let policy = load(
        r#"prefix_rule(pattern = ["rm", "-rf"], decision = "forbidden", justification = "use trash")"#,
    );
    let rule = &policy.rules()[0];
    assert_eq!(rule.decision, Decision::Forbidden);
    assert_eq!(rule.justification.as_deref(), Some("use trash"));
}

#[test]
fn prefix_rule_accepts_positional_arguments_in_codex_order() {
    let policy =
        load(r#"prefix_rule(["git", "push"], "prompt", ["git push"], ["git pull"], "why")"#);
    let rule = &policy.rules()[0];
    assert_eq!(rule.decision, Decision::Prompt);
    assert_eq!(rule.justification.as_deref(), Some("why"));
}

#[test]
fn optional_arguments_may_be_none() {
    let policy = load(
        r#"
prefix_rule(pattern = ["a"], decision = None, justification = None, match = None, not_match = None)
network_rule(host = "example.com", protocol = "https", decision = "allow", justification = None)
"#,
    );
    assert_eq!(policy.rules()[0].decision, Decision::Allow);
    assert_eq!(policy.rules()[0].justification, None);
    assert_eq!(policy.network_rules()[0].justification, None);
}

#[test]
fn rule_location_is_the_prefix_rule_call() {
    let policy = load("\n\nx = 1; prefix_rule(pattern = [\"ls\"])\n");
    assert_eq!(policy.rules()[0].source.to_string(), "test.rules:3:8");
}

#[test]
fn starlark_variables_def_for_and_fstrings_work() {
    let policy = load(
        r#"
READ_ONLY = ["status", "log", "diff"]
def allow_git(sub):
    prefix_rule(pattern = ["git", sub], match = [f"git {sub}"])
for sub in READ_ONLY:
    allow_git(sub)
prefix_rule(pattern = ["git", "push"], decision = "prompt", justification = f"{len(READ_ONLY)} are safe, push is not")
"#,
    );
    assert_eq!(policy.rules().len(), 4);
    assert_eq!(
        decision(&policy, &["git", "log", "-1"]),
        Some(Decision::Allow)
    );
    assert_eq!(
        policy.rules()[3].justification.as_deref(),
        Some("3 are safe, push is not")
    );
    // Rules made inside a helper point at the call inside the helper.
    assert_eq!(policy.rules()[0].source.to_string(), "test.rules:4:5");
}

#[test]
fn match_examples_accept_strings_split_with_shell_quoting_and_lists() {
    let policy = load(
        r#"prefix_rule(
    pattern = ["echo", "hello world"],
    match = ["echo 'hello world' again", ["echo", "hello world"]],
    not_match = ["echo hello world"],
)"#,
    );
    assert_eq!(policy.rules().len(), 1);
}

#[test]
fn host_executable_records_absolute_paths_deduplicated() {
    let policy = load(
        r#"host_executable(name = "git", paths = ["/usr/bin/git", "/usr/bin/../bin/git", "/opt/git/bin/git"])"#,
    );
    assert_eq!(
        policy.host_executables()["git"],
        vec![
            PathBuf::from("/usr/bin/git"),
            PathBuf::from("/opt/git/bin/git")
        ]
    );
}

#[test]
fn host_executable_expands_home_relative_paths() {
    let mut loader = PolicyLoader::new().with_home_dir(Some(PathBuf::from("/home/ada")));
    loader
        .add_source(
            "t.rules",
            r#"host_executable(name = "az", paths = ["~/bin/az"])"#,
        )
        .expect("loads");
    let policy = loader.finish();
    assert_eq!(
        policy.host_executables()["az"],
        vec![PathBuf::from("/home/ada/bin/az")]
    );
}

#[test]
fn later_host_executable_for_the_same_name_replaces_the_earlier_one() {
    let policy = load(
        r#"
host_executable(name = "git", paths = ["/usr/bin/git"])
host_executable(name = "git", paths = ["/opt/bin/git"])
"#,
    );
    assert_eq!(
        policy.host_executables()["git"],
        vec![PathBuf::from("/opt/bin/git")]
    );
    assert_eq!(
        policy
            .host_executable_source("git")
            .map(ToString::to_string),
        Some("test.rules:3:1".to_owned())
    );
    assert_eq!(policy.host_executable_source("hub"), None);
}

#[test]
fn network_rule_normalizes_host_and_reads_aliases() {
    let policy = load(
        r#"
network_rule(host = "  API.Example.COM.:443 ", protocol = "https_connect", decision = "deny")
network_rule(host = "[::1]:8080", protocol = "http-connect", decision = "allow", justification = "local")
network_rule(host = "10.0.0.1", protocol = "socks5_udp", decision = "prompt")
network_rule(host = "proxy", protocol = "socks5_tcp", decision = "forbidden")
network_rule(host = "plain", protocol = "http", decision = "allow")
"#,
    );
    let rules = policy.network_rules();
    assert_eq!(rules.len(), 5);
    assert_eq!(rules[0].host, "api.example.com");
    assert_eq!(rules[0].protocol, NetworkProtocol::Https);
    assert_eq!(rules[0].decision, Decision::Forbidden);
    assert_eq!(rules[1].host, "::1");
    assert_eq!(rules[1].protocol, NetworkProtocol::Https);
    assert_eq!(rules[1].justification.as_deref(), Some("local"));
    assert_eq!(rules[2].protocol, NetworkProtocol::Socks5Udp);
    assert_eq!(rules[2].decision, Decision::Prompt);
    assert_eq!(rules[3].protocol, NetworkProtocol::Socks5Tcp);
    assert_eq!(rules[4].protocol, NetworkProtocol::Http);
    assert_eq!(rules[4].source.to_string(), "test.rules:6:1");
    let ports: Vec<Option<u16>> = rules.iter().map(|r| r.port).collect();
    assert_eq!(ports, vec![Some(443), Some(8080), None, None, None]);
}

#[test]
fn network_rules_are_never_reported_by_check() {
    let policy =
        load(r#"network_rule(host = "example.com", protocol = "https", decision = "deny")"#);
    let evaluation = policy.check(&["example.com"], &CheckOptions::default());
    assert_eq!(evaluation.decision, None);
    assert!(evaluation.matched.is_empty());
}

#[test]
fn files_merge_in_the_order_given() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = dir.path().join("a.rules");
    let second = dir.path().join("b.rules");
    std::fs::write(
        &first,
        "prefix_rule(pattern = [\"git\"], decision = \"allow\")\n",
    )
    .unwrap();
    std::fs::write(
        &second,
        "prefix_rule(pattern = [\"git\", \"push\"], decision = \"prompt\")\n",
    )
    .unwrap();
    let policy = Policy::from_files(&[&first, &second]).expect("loads");
    let evaluation = policy.check(&["git", "push"], &CheckOptions::default());
    let files: Vec<String> = evaluation
        .matched
        .iter()
        .map(|m| m.source.to_string())
        .collect();
    assert_eq!(
        files,
        vec![
            format!("{}:1:1", first.display()),
            format!("{}:1:1", second.display())
        ]
    );
    assert_eq!(evaluation.decision, Some(Decision::Prompt));
}

// ---- load errors -------------------------------------------------------------------------

#[test]
fn syntax_error_names_line_and_column() {
    assert_eq!(
        load_error("prefix_rule(pattern = [\"a\"])\nx = )\n"),
        "test.rules:2:5: Parse error: unexpected symbol ')', expected expression"
    );
}

#[test]
fn unknown_function_is_an_error_that_suggests_the_builtins() {
    assert_eq!(
        load_error("\nprefx_rule(pattern = [\"a\"])"),
        "test.rules:2:1: Variable `prefx_rule` not found, did you mean `prefix_rule`?; \
         rules files may call prefix_rule, host_executable and network_rule"
    );
}

#[test]
fn load_statement_is_rejected() {
    assert_eq!(
        load_error("load(\"other.rules\", \"x\")"),
        "test.rules:1:1: load() is not supported in rules files; pass each file with its own --rules instead"
    );
}

#[test]
fn wrong_argument_type_names_the_call_and_its_shape() {
    let err = load_error("prefix_rule(pattern = \"git status\")");
    assert!(
        err.starts_with("test.rules:1:1: prefix_rule: Type of parameter `pattern` doesn't match"),
        "{err}"
    );
    assert!(err.ends_with("write prefix_rule(pattern = [\"git\", \"status\"], decision = \"allow\" | \"prompt\" | \"forbidden\", justification = \"...\", match = [...], not_match = [...])"), "{err}");
}

#[test]
fn unknown_argument_is_an_error() {
    let err = load_error("prefix_rule(pattern = [\"a\"], reason = \"x\")");
    assert!(
        err.starts_with("test.rules:1:1: prefix_rule: Found `reason` extra named parameter(s)"),
        "{err}"
    );
}

#[test]
fn empty_pattern_is_an_error() {
    assert_eq!(
        load_error("prefix_rule(pattern = [])"),
        "test.rules:1:1: prefix_rule: pattern cannot be empty; write e.g. pattern = [\"git\", \"status\"]"
    );
}

#[test]
fn empty_alternatives_are_an_error() {
    assert_eq!(
        load_error("prefix_rule(pattern = [\"git\", []])"),
        "test.rules:1:1: prefix_rule: pattern alternatives at position 1 cannot be empty; list at least one token"
    );
}

#[test]
fn non_string_pattern_element_is_an_error() {
    assert_eq!(
        load_error("prefix_rule(pattern = [\"git\", 1])"),
        "test.rules:1:1: prefix_rule: pattern elements must be strings or lists of strings (got int at position 1)"
    );
}

#[test]
fn bad_decision_is_an_error() {
    assert_eq!(
        load_error("prefix_rule(pattern = [\"a\"], decision = \"deny\")"),
        "test.rules:1:1: prefix_rule: decision must be \"allow\", \"prompt\" or \"forbidden\" (got \"deny\")"
    );
}

#[test]
fn blank_justification_is_an_error() {
    assert_eq!(
        load_error("prefix_rule(pattern = [\"a\"], justification = \"  \")"),
        "test.rules:1:1: prefix_rule: justification cannot be empty; omit it or say why the rule exists"
    );
}

#[test]
fn failing_match_example_names_the_example_and_the_rule() {
    assert_eq!(
        load_error("\nprefix_rule(pattern = [\"git\", \"status\"], match = [\"git stat\"])"),
        "test.rules:2:1: prefix_rule: `match` example `git stat` does not match pattern [\"git\", \"status\"]; fix the example or the pattern"
    );
}

#[test]
fn failing_not_match_example_names_the_example_and_the_rule() {
    assert_eq!(
        load_error("prefix_rule(pattern = [\"git\"], not_match = [[\"git\", \"push\"]])"),
        "test.rules:1:1: prefix_rule: `not_match` example `git push` matches pattern [\"git\"]; fix the example or make the pattern more specific"
    );
}

#[test]
fn several_failing_examples_are_counted_in_the_load_error() {
    let err = load_error("prefix_rule(pattern = [\"a\", \"b\"], match = [\"a\", \"a c\", \"b\"])");
    assert!(
        err.ends_with("(2 more failing examples; `execgate policy test` lists them all)"),
        "{err}"
    );
}

#[test]
fn unbalanced_quote_in_example_is_an_error() {
    assert_eq!(
        load_error("prefix_rule(pattern = [\"a\"], match = [\"a 'b\"])"),
        "test.rules:1:1: prefix_rule: `match` example \"a 'b\" has unbalanced shell quoting; close the quote or write the example as a list of strings"
    );
}

#[test]
fn empty_example_is_an_error() {
    assert_eq!(
        load_error("prefix_rule(pattern = [\"a\"], not_match = [[]])"),
        "test.rules:1:1: prefix_rule: `not_match` examples cannot be empty; write e.g. \"git status\""
    );
}

#[test]
fn host_executable_name_must_be_bare() {
    assert_eq!(
        load_error("host_executable(name = \"bin/git\", paths = [])"),
        "test.rules:1:1: host_executable: name must be a bare program name like \"git\" (got \"bin/git\")"
    );
}

#[test]
fn host_executable_paths_must_be_absolute() {
    assert_eq!(
        load_error("host_executable(name = \"git\", paths = [\"bin/git\"])"),
        "test.rules:1:1: host_executable: paths must be absolute or start with `~/` (got \"bin/git\")"
    );
}

#[test]
fn host_executable_paths_must_end_in_the_name() {
    assert_eq!(
        load_error("host_executable(name = \"git\", paths = [\"/usr/bin/hub\"])"),
        "test.rules:1:1: host_executable: path \"/usr/bin/hub\" must end in the program name `git`"
    );
}

#[test]
fn network_rule_rejects_scheme_wildcard_protocol_and_decision() {
    assert_eq!(
        load_error("network_rule(host = \"https://example.com\", protocol = \"https\", decision = \"allow\")"),
        "test.rules:1:1: network_rule: host must be a bare hostname or IP literal, without scheme or path; write e.g. host = \"example.com\" (got \"https://example.com\")"
    );
    assert_eq!(
        load_error("network_rule(host = \"*.example.com\", protocol = \"https\", decision = \"allow\")"),
        "test.rules:1:1: network_rule: host must name one host; wildcards are not allowed (got \"*.example.com\")"
    );
    assert_eq!(
        load_error("network_rule(host = \"example.com\", protocol = \"ftp\", decision = \"allow\")"),
        "test.rules:1:1: network_rule: protocol must be \"http\", \"https\", \"socks5_tcp\" or \"socks5_udp\" (got \"ftp\")"
    );
    assert_eq!(
        load_error("network_rule(host = \"example.com\", protocol = \"https\", decision = \"ask\")"),
        "test.rules:1:1: network_rule: decision must be \"allow\", \"deny\", \"prompt\" or \"forbidden\" (got \"ask\")"
    );
    assert_eq!(
        load_error("network_rule(host = \" \", protocol = \"https\", decision = \"allow\")"),
        "test.rules:1:1: network_rule: host cannot be empty (got \" \")"
    );
}

#[test]
fn unreadable_file_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.rules");
    let err = Policy::from_files(&[&missing]).expect_err("must fail");
    assert!(matches!(err, PolicyError::Read { .. }));
    assert_eq!(
        err.to_string(),
        format!("cannot read rules file {}", missing.display())
    );
    let source = std::error::Error::source(&err).expect("the io error is the source");
    assert_eq!(source.to_string(), "No such file or directory (os error 2)");
}

#[test]
fn non_utf8_file_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.rules");
    std::fs::write(&path, b"prefix_rule(pattern = [\"\xff\"])").unwrap();
    let err = Policy::from_files(&[&path]).expect_err("must fail");
    assert_eq!(
        err.to_string(),
        format!("{}: rules file is not valid UTF-8 text", path.display())
    );
}

#[test]
fn error_in_second_file_names_that_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.rules");
    let bad = dir.path().join("bad.rules");
    std::fs::write(&good, "prefix_rule(pattern = [\"ls\"])\n").unwrap();
    std::fs::write(&bad, "\n\nprefix_rule(pattern = [])\n").unwrap();
    let err = Policy::from_files(&[&good, &bad]).expect_err("must fail");
    assert!(
        err.to_string()
            .starts_with(&format!("{}:3:1: ", bad.display())),
        "{err}"
    );
}

#[test]
fn collected_examples_report_every_outcome_in_file_order() {
    let mut loader = PolicyLoader::new().collect_examples();
    loader
        .add_source(
            "t.rules",
            r#"
prefix_rule(pattern = ["git", "status"], match = ["git status", "git stat"], not_match = ["git push"])
prefix_rule(pattern = ["ls"], not_match = ["ls -l"])
"#,
        )
        .expect("collecting never fails on examples");
    let (policy, outcomes) = loader.finish_with_examples();
    assert_eq!(policy.rules().len(), 2);
    let summary: Vec<(String, ExampleKind, String, bool)> = outcomes
        .iter()
        .map(|o| (o.rule.to_string(), o.kind, o.example_text(), o.passed()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "t.rules:2:1".into(),
                ExampleKind::Match,
                "git status".into(),
                true
            ),
            (
                "t.rules:2:1".into(),
                ExampleKind::Match,
                "git stat".into(),
                false
            ),
            (
                "t.rules:2:1".into(),
                ExampleKind::NotMatch,
                "git push".into(),
                true
            ),
            (
                "t.rules:3:1".into(),
                ExampleKind::NotMatch,
                "ls -l".into(),
                false
            ),
        ]
    );
}

#[test]
fn collected_examples_name_their_rule_even_when_a_loop_made_it() {
    let mut loader = PolicyLoader::new().collect_examples();
    loader
        .add_source(
            "t.rules",
            "for sub in [\"fmt\", \"check\"]:\n    prefix_rule(pattern = [\"cargo\", sub], match = [\"cargo \" + sub])\n",
        )
        .expect("loads");
    let (policy, outcomes) = loader.finish_with_examples();
    let owners: Vec<(String, usize, String)> = outcomes
        .iter()
        .map(|o| {
            (
                o.rule.to_string(),
                o.rule_index,
                policy.rules()[o.rule_index].pattern_text(),
            )
        })
        .collect();
    assert_eq!(
        owners,
        vec![
            ("t.rules:2:5".into(), 0, "[\"cargo\", \"fmt\"]".into()),
            ("t.rules:2:5".into(), 1, "[\"cargo\", \"check\"]".into()),
        ]
    );
}
