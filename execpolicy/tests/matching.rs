//! Evaluating commands: prefix matching edge cases, strictest decision, basename fallback
//! with `host_executable`, the Codex JSON output, and rendering rules back as text.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use execgate_execpolicy::{
    render_prefix_rule, CheckOptions, Decision, Evaluation, Policy, PolicyLoader, RenderError,
};

fn load(text: &str) -> Policy {
    match Policy::from_source("test.rules", text) {
        Ok(policy) => policy,
        Err(err) => panic!("rules should load: {err}"),
    }
}

const LITERAL: CheckOptions = CheckOptions {
    resolve_host_executables: false,
};
const RESOLVE: CheckOptions = CheckOptions {
    resolve_host_executables: true,
};

fn prefixes(evaluation: &Evaluation) -> Vec<Vec<String>> {
    evaluation
        .matched
        .iter()
        .map(|m| m.matched_prefix.clone())
        .collect()
}

#[test]
fn pattern_matches_a_prefix_of_argv_position_by_position() {
    let policy = load(r#"prefix_rule(pattern = ["git", "push"], decision = "prompt")"#);
    let evaluation = policy.check(&["git", "push", "origin", "main"], &LITERAL);
    assert_eq!(evaluation.decision, Some(Decision::Prompt));
    assert_eq!(prefixes(&evaluation), vec![vec!["git", "push"]]);
    assert_eq!(policy.check(&["git", "pull"], &LITERAL).decision, None);
    assert_eq!(
        policy
            .check(&["git", "--no-pager", "push"], &LITERAL)
            .decision,
        None
    );
}

#[test]
fn pattern_longer_than_argv_does_not_match() {
    let policy = load(r#"prefix_rule(pattern = ["git", "push", "--force"])"#);
    let evaluation = policy.check(&["git", "push"], &LITERAL);
    assert_eq!(evaluation, Evaluation::default());
}

#[test]
fn empty_argv_matches_nothing() {
    let policy = load(r#"prefix_rule(pattern = ["git"])"#);
    let empty: [&str; 0] = [];
    assert_eq!(policy.check(&empty, &RESOLVE), Evaluation::default());
}

#[test]
fn alternatives_match_any_listed_token_and_report_the_actual_one() {
    let policy = load(r#"prefix_rule(pattern = ["npm", ["install", "ci"], "--save"])"#);
    let evaluation = policy.check(&["npm", "ci", "--save", "x"], &LITERAL);
    assert_eq!(prefixes(&evaluation), vec![vec!["npm", "ci", "--save"]]);
    assert_eq!(
        policy.check(&["npm", "test", "--save"], &LITERAL).decision,
        None
    );
}

#[test]
fn alternatives_in_first_position_index_the_rule_under_each_program() {
    let policy = load(
        r#"prefix_rule(pattern = [["python", "python3"], "-c"], decision = "prompt", match = ["python3 -c 1", "python -c 2"])"#,
    );
    for program in ["python", "python3"] {
        let evaluation = policy.check(&[program, "-c", "print(1)"], &LITERAL);
        assert_eq!(evaluation.decision, Some(Decision::Prompt), "{program}");
        assert_eq!(prefixes(&evaluation), vec![vec![program, "-c"]]);
    }
    assert_eq!(
        policy.check(&["python2", "-c", "x"], &LITERAL).decision,
        None
    );
}

#[test]
fn strictest_decision_wins_and_every_match_is_listed_in_load_order() {
    let policy = load(
        r#"
prefix_rule(pattern = ["git"], decision = "allow")
prefix_rule(pattern = ["git", "push"], decision = "forbidden", justification = "no pushing")
prefix_rule(pattern = ["git", "push", "--dry-run"], decision = "prompt")
prefix_rule(pattern = ["ls"], decision = "forbidden")
"#,
    );
    let evaluation = policy.check(&["git", "push", "--dry-run"], &LITERAL);
    assert_eq!(evaluation.decision, Some(Decision::Forbidden));
    let decisions: Vec<Decision> = evaluation.matched.iter().map(|m| m.decision).collect();
    assert_eq!(
        decisions,
        vec![Decision::Allow, Decision::Forbidden, Decision::Prompt]
    );
    let deciding = evaluation.deciding_rule().expect("a rule decided");
    assert_eq!(deciding.justification.as_deref(), Some("no pushing"));
    assert_eq!(deciding.source.to_string(), "test.rules:3:1");
    let lines: Vec<u32> = evaluation.matched.iter().map(|m| m.source.line).collect();
    assert_eq!(lines, vec![2, 3, 4]);
}

#[test]
fn prompt_beats_allow() {
    let policy = load(
        r#"
prefix_rule(pattern = ["cargo"], decision = "prompt")
prefix_rule(pattern = ["cargo", "build"])
"#,
    );
    assert_eq!(
        policy.check(&["cargo", "build"], &LITERAL).decision,
        Some(Decision::Prompt)
    );
}

#[test]
fn unicode_tokens_match_byte_for_byte() {
    let policy = load(r#"prefix_rule(pattern = ["echo", "héllo ✓"], decision = "prompt")"#);
    assert_eq!(
        policy.check(&["echo", "héllo ✓", "x"], &LITERAL).decision,
        Some(Decision::Prompt)
    );
    // Same letters, different normalization (e + combining acute): a different token.
    assert_eq!(
        policy.check(&["echo", "he\u{301}llo ✓"], &LITERAL).decision,
        None
    );
}

#[test]
fn non_utf8_tokens_never_match_and_never_panic() {
    let policy = load(
        r#"
prefix_rule(pattern = ["rm"], decision = "forbidden")
prefix_rule(pattern = ["cat", ["a", "b"]], decision = "prompt")
"#,
    );
    let bad: &[u8] = b"\xff\xfe";
    assert_eq!(
        policy.check(&[b"rm".as_slice(), bad], &LITERAL).decision,
        Some(Decision::Forbidden)
    );
    assert_eq!(
        policy.check(&[b"cat".as_slice(), bad], &LITERAL).decision,
        None
    );
    assert_eq!(
        policy.check(&[bad, b"rm".as_slice()], &RESOLVE).decision,
        None
    );
    let path = OsStr::from_bytes(b"/tmp/\xff/rm");
    assert_eq!(policy.check(&[path.as_bytes()], &RESOLVE).decision, None);
}

#[test]
fn argv_may_be_os_strings() {
    let policy = load(r#"prefix_rule(pattern = ["ls", "-l"])"#);
    let argv = [OsStr::new("ls"), OsStr::new("-l")];
    let bytes: Vec<&[u8]> = argv.iter().map(|a| a.as_bytes()).collect();
    assert_eq!(
        policy.check(&bytes, &LITERAL).decision,
        Some(Decision::Allow)
    );
}

#[test]
fn absolute_path_needs_resolution_to_reach_basename_rules() {
    let policy = load(r#"prefix_rule(pattern = ["git", "status"])"#);
    assert_eq!(
        policy.check(&["/usr/bin/git", "status"], &LITERAL).decision,
        None
    );
    let evaluation = policy.check(&["/usr/bin/git", "status"], &RESOLVE);
    assert_eq!(evaluation.decision, Some(Decision::Allow));
    let rule = &evaluation.matched[0];
    assert_eq!(rule.matched_prefix, vec!["git", "status"]);
    assert_eq!(rule.resolved_program, Some(PathBuf::from("/usr/bin/git")));
}

#[test]
fn relative_program_paths_never_fall_back() {
    let policy = load(r#"prefix_rule(pattern = ["git"])"#);
    assert_eq!(policy.check(&["./git"], &RESOLVE).decision, None);
    assert_eq!(policy.check(&["bin/git"], &RESOLVE).decision, None);
}

#[test]
fn host_executable_limits_fallback_to_listed_paths() {
    let policy = load(
        r#"
host_executable(name = "git", paths = ["/usr/bin/git"])
prefix_rule(pattern = ["git", "push"], decision = "prompt")
"#,
    );
    assert_eq!(
        policy.check(&["/usr/bin/git", "push"], &RESOLVE).decision,
        Some(Decision::Prompt)
    );
    // Lexically the same file.
    assert_eq!(
        policy
            .check(&["/usr/./lib/../bin/git", "push"], &RESOLVE)
            .matched[0]
            .resolved_program,
        Some(PathBuf::from("/usr/bin/git"))
    );
    // A git planted in a sandbox-writable directory does not inherit git's rules.
    assert_eq!(
        policy.check(&["/tmp/work/git", "push"], &RESOLVE).decision,
        None
    );
}

#[test]
fn host_executable_with_home_relative_path_matches_the_expanded_path() {
    let mut loader = PolicyLoader::new().with_home_dir(Some(PathBuf::from("/home/ada")));
    loader
        .add_source(
            "t.rules",
            r#"
host_executable(name = "az", paths = ["~/.local/bin/az"])
prefix_rule(pattern = ["az", "login"], decision = "prompt", match = ["/home/ada/.local/bin/az login", "~/.local/bin/az login"], not_match = ["/usr/bin/az login"])
"#,
        )
        .expect("loads");
    let policy = loader.finish();
    let evaluation = policy.check(&["/home/ada/.local/bin/az", "login"], &RESOLVE);
    assert_eq!(evaluation.decision, Some(Decision::Prompt));
    assert_eq!(
        evaluation.matched[0].resolved_program,
        Some(PathBuf::from("/home/ada/.local/bin/az"))
    );
    assert_eq!(
        policy.check(&["/usr/bin/az", "login"], &RESOLVE).decision,
        None
    );
}

#[test]
fn exact_program_rules_win_over_basename_fallback() {
    let policy = load(
        r#"
prefix_rule(pattern = ["git"], decision = "forbidden")
prefix_rule(pattern = ["/usr/bin/git", "status"], decision = "allow")
"#,
    );
    let evaluation = policy.check(&["/usr/bin/git", "status"], &RESOLVE);
    assert_eq!(evaluation.decision, Some(Decision::Allow));
    assert_eq!(evaluation.matched.len(), 1);
    assert_eq!(evaluation.matched[0].resolved_program, None);
    // When the exact rule does not match, fallback applies.
    assert_eq!(
        policy.check(&["/usr/bin/git", "push"], &RESOLVE).decision,
        Some(Decision::Forbidden)
    );
}

#[test]
fn json_output_matches_codex_execpolicy_check() {
    let policy = load(
        r#"
prefix_rule(pattern = ["git"], decision = "allow")
prefix_rule(pattern = ["git", "push"], decision = "prompt", justification = "pushes leave the machine")
"#,
    );
    let evaluation = policy.check(&["/usr/bin/git", "push", "origin"], &RESOLVE);
    assert_eq!(
        evaluation.to_codex_json(false).unwrap(),
        r#"{"matchedRules":[{"prefixRuleMatch":{"matchedPrefix":["git"],"decision":"allow","resolvedProgram":"/usr/bin/git"}},{"prefixRuleMatch":{"matchedPrefix":["git","push"],"decision":"prompt","resolvedProgram":"/usr/bin/git","justification":"pushes leave the machine"}}],"decision":"prompt"}"#
    );
    let evaluation = policy.check(&["git", "push"], &LITERAL);
    assert_eq!(
        evaluation.to_codex_json(true).unwrap(),
        r#"{
  "matchedRules": [
    {
      "prefixRuleMatch": {
        "matchedPrefix": [
          "git"
        ],
        "decision": "allow"
      }
    },
    {
      "prefixRuleMatch": {
        "matchedPrefix": [
          "git",
          "push"
        ],
        "decision": "prompt",
        "justification": "pushes leave the machine"
      }
    }
  ],
  "decision": "prompt"
}"#
    );
}

#[test]
fn json_output_without_match_omits_decision() {
    let policy = load(r#"prefix_rule(pattern = ["git"])"#);
    let evaluation = policy.check(&["ls"], &LITERAL);
    assert_eq!(
        evaluation.to_codex_json(false).unwrap(),
        r#"{"matchedRules":[]}"#
    );
    assert_eq!(
        evaluation.to_codex_json(true).unwrap(),
        "{\n  \"matchedRules\": []\n}"
    );
}

#[test]
fn rendered_allow_rule_loads_and_matches_exactly_that_prefix() {
    let argv = ["echo", "say \"hi\"\\", "tab\tnew\nline\u{1}", "✓"];
    let text = render_prefix_rule(&argv, Decision::Allow, None).expect("renders");
    assert_eq!(
        text,
        r#"prefix_rule(pattern=["echo", "say \"hi\"\\", "tab\tnew\nline\x01", "\u2713"], decision="allow")"#
    );
    let policy = load(&text);
    let evaluation = policy.check(&[&argv[..], &["more"]].concat(), &LITERAL);
    assert_eq!(evaluation.decision, Some(Decision::Allow));
    assert_eq!(evaluation.matched[0].matched_prefix, argv);
    assert_eq!(policy.check(&argv[..3], &LITERAL).decision, None);
}

#[test]
fn rendered_rule_from_hostile_argv_is_one_line_of_ascii_that_matches_the_same_bytes() {
    // argv comes from the sandbox: a right-to-left override would make the rule read
    // differently from what it matches, and a line separator could end a comment early.
    let argv = ["git", "push", "origin\u{202e}niam", "x\u{2028}y\u{200b}"];
    let text = render_prefix_rule(&argv, Decision::Allow, None).expect("renders");
    assert_eq!(
        text,
        r#"prefix_rule(pattern=["git", "push", "origin\u202eniam", "x\u2028y\u200b"], decision="allow")"#
    );
    let policy = load(&text);
    assert_eq!(
        policy.check(&argv, &LITERAL).decision,
        Some(Decision::Allow)
    );
    assert_eq!(
        policy
            .check(&["git", "push", "originniam", "xy"], &LITERAL)
            .decision,
        None
    );
}

#[test]
fn rendered_rule_carries_decision_and_justification() {
    let text = render_prefix_rule(&["git", "push"], Decision::Prompt, Some("asks first"))
        .expect("renders");
    assert_eq!(
        text,
        r#"prefix_rule(pattern=["git", "push"], decision="prompt", justification="asks first")"#
    );
    assert_eq!(
        load(&text).rules()[0].justification.as_deref(),
        Some("asks first")
    );
}

#[test]
fn rendering_refuses_empty_and_non_utf8_commands() {
    let empty: [&str; 0] = [];
    assert!(matches!(
        render_prefix_rule(&empty, Decision::Allow, None),
        Err(RenderError::Empty)
    ));
    assert!(matches!(
        render_prefix_rule(&[b"ls".as_slice(), b"\xff"], Decision::Allow, None),
        Err(RenderError::NotUtf8 { position: 1 })
    ));
}

#[test]
fn policy_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Policy>();
}

#[test]
fn shipped_example_rules_load_and_decide() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/basic.rules");
    let policy = Policy::from_files(&[path]).expect("examples/basic.rules loads");
    let check = |argv: &[&str]| policy.check(argv, &RESOLVE).decision;
    // Only what needs the outside world leaves the sandbox; read-only git and builds run
    // inside it (`git log --output=FILE` and a build script write files).
    assert_eq!(check(&["git", "status"]), None);
    assert_eq!(check(&["git", "log", "--output=/tmp/x"]), None);
    assert_eq!(
        check(&["git", "push", "origin", "main"]),
        Some(Decision::Prompt)
    );
    assert_eq!(check(&["rm", "-rf", "/"]), Some(Decision::Forbidden));
    assert_eq!(check(&["/tmp/git", "push"]), None);
    assert_eq!(check(&["cargo", "test"]), None);
    assert!(policy
        .check(&["cargo", "build"], &RESOLVE)
        .matched
        .is_empty());
    assert_eq!(policy.network_rules().len(), 1);
}

#[test]
fn merging_the_invoked_and_the_resolved_name_keeps_every_rule_once_and_the_strictest() {
    let policy = load(
        r#"
prefix_rule(pattern = ["sh"], decision = "forbidden", justification = "no shells")
prefix_rule(pattern = ["python3"], decision = "allow")
prefix_rule(pattern = ["python3.11", "-c"], decision = "prompt")
prefix_rule(pattern = [["git", "other"]], decision = "allow")
"#,
    );
    // A rule for `sh` applies to /bin/sh although the file that runs is dash.
    let invoked = policy.check(&["/bin/sh", "-c", "x"], &RESOLVE);
    let resolved = policy.check(&["/usr/bin/dash", "-c", "x"], &RESOLVE);
    assert_eq!(resolved.decision, None);
    let both = invoked.merge(resolved);
    assert_eq!(both.decision, Some(Decision::Forbidden));
    assert_eq!(
        both.deciding_rule().unwrap().justification.as_deref(),
        Some("no shells")
    );
    // python3 -> python3.11: the stricter rule of the resolved name wins over the allow.
    let both = policy
        .check(&["/usr/bin/python3", "-c", "x"], &RESOLVE)
        .merge(policy.check(&["/usr/bin/python3.11", "-c", "x"], &RESOLVE));
    assert_eq!(both.decision, Some(Decision::Prompt));
    assert_eq!(
        prefixes(&both),
        vec![vec!["python3"], vec!["python3.11", "-c"]]
    );
    // The same rule matched under both names is listed once.
    let both = policy
        .check(&["/usr/local/bin/git", "status"], &RESOLVE)
        .merge(policy.check(&["/usr/bin/git", "status"], &RESOLVE));
    assert_eq!(both.matched.len(), 1);
    assert_eq!(both.decision, Some(Decision::Allow));
    // Nothing matched under either name: no decision.
    let none = policy
        .check(&["/usr/bin/ls"], &RESOLVE)
        .merge(policy.check(&["/usr/bin/ls"], &RESOLVE));
    assert_eq!(none, Evaluation::default());
}
