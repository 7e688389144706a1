//! `Policy::explain`: how each rule relates to a command, why the fallback did or did not
//! happen, and why the winner won, in text and JSON.

use execgate_execpolicy::{
    CheckOptions, Decision, Fallback, MatchVia, Policy, RuleStatus, SourceLocation,
};

const RULES: &str = r#"host_executable(name = "git", paths = ["/usr/bin/git"])
prefix_rule(pattern = ["git", ["status", "log"]], decision = "allow")
prefix_rule(pattern = ["git", "push"], decision = "prompt", justification = "asks")
prefix_rule(pattern = ["git", "push", "--force"], decision = "forbidden")
prefix_rule(pattern = ["git"], decision = "prompt")
prefix_rule(pattern = ["/usr/local/bin/tool"], decision = "allow")
prefix_rule(pattern = ["tool", "run"], decision = "forbidden")
"#;

const LITERAL: CheckOptions = CheckOptions {
    resolve_host_executables: false,
};
const RESOLVE: CheckOptions = CheckOptions {
    resolve_host_executables: true,
};

fn policy() -> Policy {
    Policy::from_source("t.rules", RULES).expect("loads")
}

fn at(line: u32) -> SourceLocation {
    SourceLocation {
        file: "t.rules".into(),
        line,
        column: 1,
    }
}

#[test]
fn strictest_match_wins_and_other_rules_for_the_program_are_near_misses() {
    let explanation = policy().explain(&["git", "push", "--force", "x"], &LITERAL);
    assert_eq!(explanation.decision, Some(Decision::Forbidden));
    assert_eq!(explanation.fallback, Fallback::NotApplicable);
    let statuses: Vec<(u32, MatchVia, RuleStatus)> = explanation
        .rules
        .iter()
        .map(|r| (r.source.line, r.via, r.status.clone()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (
                2,
                MatchVia::Exact,
                RuleStatus::NearMiss {
                    position: 1,
                    got: Some("push".into())
                }
            ),
            (
                3,
                MatchVia::Exact,
                RuleStatus::Matched(vec!["git".into(), "push".into()])
            ),
            (
                4,
                MatchVia::Exact,
                RuleStatus::Matched(vec!["git".into(), "push".into(), "--force".into()])
            ),
            (5, MatchVia::Exact, RuleStatus::Matched(vec!["git".into()])),
        ]
    );
    assert_eq!(explanation.rules[0].expected, vec!["status", "log"]);
    assert_eq!(
        explanation
            .deciding
            .map(|i| explanation.rules[i].source.clone()),
        Some(at(4))
    );
    assert_eq!(
        explanation.to_text(),
        r#"command: ["git", "push", "--force", "x"]
matched:
  t.rules:3:1 ["git", "push"] prompt: matched ["git", "push"]
  t.rules:4:1 ["git", "push", "--force"] forbidden: matched ["git", "push", "--force"]
  t.rules:5:1 ["git"] prompt: matched ["git"]
near misses:
  t.rules:2:1 ["git", ["status", "log"]] allow: argument 1 is "push", the rule wants "status" or "log"
decision: forbidden, from t.rules:4:1: the strictest of the matching rules wins (forbidden > prompt)
"#
    );
}

#[test]
fn equal_decisions_quote_the_first_rule_in_load_order() {
    let text = policy().explain(&["git", "push"], &LITERAL).to_text();
    assert!(
        text.ends_with(
            "decision: prompt, from t.rules:3:1: every matching rule says prompt; the first of them in load order is the one quoted\n"
        ),
        "{text}"
    );
}

#[test]
fn listed_host_executable_lets_the_path_use_basename_rules() {
    let explanation = policy().explain(&["/usr/bin/git", "status"], &RESOLVE);
    assert_eq!(
        explanation.fallback,
        Fallback::Listed {
            source: Some(at(1))
        }
    );
    assert_eq!(explanation.basename.as_deref(), Some("git"));
    assert_eq!(
        explanation.to_text(),
        r#"command: ["/usr/bin/git", "status"]
program: "/usr/bin/git": no rule for it matched; falls back to rules for "git": host_executable at t.rules:1:1 lists it
matched:
  t.rules:2:1 ["git", ["status", "log"]] allow (through "git"): matched ["git", "status"]
  t.rules:5:1 ["git"] prompt (through "git"): matched ["git"]
near misses:
  t.rules:3:1 ["git", "push"] prompt (through "git"): argument 1 is "status", the rule wants "push"
  t.rules:4:1 ["git", "push", "--force"] forbidden (through "git"): argument 1 is "status", the rule wants "push"
decision: prompt, from t.rules:5:1: the strictest of the matching rules wins (prompt > allow)
"#
    );
}

#[test]
fn unlisted_path_is_refused_and_the_rules_it_would_match_are_not_consulted() {
    let explanation = policy().explain(&["/tmp/git", "push"], &RESOLVE);
    assert_eq!(
        explanation.fallback,
        Fallback::Refused {
            source: Some(at(1)),
            paths: vec!["/usr/bin/git".into()]
        }
    );
    assert_eq!(explanation.decision, None);
    assert_eq!(
        explanation.to_text(),
        r#"command: ["/tmp/git", "push"]
program: "/tmp/git": does not fall back to rules for "git": host_executable at t.rules:1:1 lists only "/usr/bin/git"
not consulted:
  t.rules:3:1 ["git", "push"] prompt (through "git"): would match, but the fallback did not apply
  t.rules:5:1 ["git"] prompt (through "git"): would match, but the fallback did not apply
decision: none: no rule matched, so the command runs inside the sandbox
"#
    );
}

#[test]
fn without_resolution_the_fallback_is_off() {
    let explanation = policy().explain(&["/usr/bin/git", "push"], &LITERAL);
    assert_eq!(explanation.fallback, Fallback::Off);
    assert!(explanation.to_text().contains(
        "program: \"/usr/bin/git\": no rule for it matched; rules for \"git\" apply only with --resolve-host-executables (the server always resolves)\n"
    ));
}

#[test]
fn a_literal_match_keeps_basename_rules_out() {
    let explanation = policy().explain(&["/usr/local/bin/tool", "run"], &RESOLVE);
    assert_eq!(explanation.fallback, Fallback::NotNeeded);
    assert_eq!(explanation.decision, Some(Decision::Allow));
    assert_eq!(
        explanation.to_text(),
        r#"command: ["/usr/local/bin/tool", "run"]
program: "/usr/local/bin/tool": rules name it literally and matched, so rules for "tool" are not consulted
matched:
  t.rules:6:1 ["/usr/local/bin/tool"] allow: matched ["/usr/local/bin/tool"]
not consulted:
  t.rules:7:1 ["tool", "run"] forbidden (through "tool"): would match, but the fallback did not apply
decision: allow, from t.rules:6:1 (the only matching rule)
"#
    );
}

#[test]
fn no_host_executable_means_any_path_with_the_name_falls_back() {
    let explanation = policy().explain(&["/opt/tool", "run"], &RESOLVE);
    assert_eq!(explanation.fallback, Fallback::Unrestricted);
    assert_eq!(explanation.decision, Some(Decision::Forbidden));
}

#[test]
fn a_short_command_names_the_position_it_lacks() {
    let text = policy().explain(&["git"], &LITERAL).to_text();
    assert!(
        text.contains(
            "  t.rules:3:1 [\"git\", \"push\"] prompt: the command ends before argument 1 (\"push\")\n"
        ),
        "{text}"
    );
}

#[test]
fn hostile_tokens_are_shown_escaped_on_one_line() {
    let text = policy()
        .explain(
            &["git".as_bytes(), b"pu\xe2\x80\xaesh\n", b"\xff"],
            &LITERAL,
        )
        .to_text();
    assert!(
        text.starts_with("command: [\"git\", \"pu\\u202esh\\n\", \"\\ufffd\"]\n"),
        "{text}"
    );
    assert!(text.contains("argument 1 is \"pu\\u202esh\\n\", the rule wants \"push\"\n"));
}

#[test]
fn json_adds_explain_after_the_codex_keys() {
    let policy = policy();
    let argv = ["/tmp/git", "push"];
    let evaluation = policy.check(&argv, &RESOLVE);
    let explanation = policy.explain(&argv, &RESOLVE);
    let codex = evaluation.to_codex_json(false).unwrap();
    let json = evaluation
        .to_codex_json_with_explanation(&explanation, false)
        .unwrap();
    assert_eq!(codex, r#"{"matchedRules":[]}"#);
    assert_eq!(
        json,
        r#"{"matchedRules":[],"explain":{"argv":["/tmp/git","push"],"basename":"git","fallback":{"status":"refused","host_executable":{"file":"t.rules","line":1,"column":1,"paths":["/usr/bin/git"]}},"rules":[{"file":"t.rules","line":3,"column":1,"pattern":"[\"git\", \"push\"]","decision":"prompt","via":"basename","status":"skipped"},{"file":"t.rules","line":5,"column":1,"pattern":"[\"git\"]","decision":"prompt","via":"basename","status":"skipped"}],"decision":null,"deciding_rule":null}}"#
    );
}

#[test]
fn json_keeps_the_codex_output_byte_for_byte_pretty_or_not() {
    let policy = policy();
    for argv in [
        &["git", "push", "origin"][..],
        &["/usr/bin/git", "log"],
        &["ls"],
    ] {
        for pretty in [false, true] {
            let evaluation = policy.check(argv, &RESOLVE);
            let codex = evaluation.to_codex_json(pretty).unwrap();
            let json = evaluation
                .to_codex_json_with_explanation(&policy.explain(argv, &RESOLVE), pretty)
                .unwrap();
            let head = codex
                .strip_suffix(if pretty { "\n}" } else { "}" })
                .unwrap();
            assert!(json.starts_with(head), "{json}");
            let value: serde_json::Value = serde_json::from_str(&json).unwrap();
            let mut without: serde_json::Value = value.clone();
            without.as_object_mut().unwrap().remove("explain");
            assert_eq!(
                without,
                serde_json::from_str::<serde_json::Value>(&codex).unwrap()
            );
        }
    }
}

#[test]
fn near_miss_json_names_the_position_and_what_was_there() {
    let policy = policy();
    let explanation = policy.explain(&["git", "pull"], &LITERAL);
    let json: serde_json::Value = serde_json::from_str(
        &policy
            .check(&["git", "pull"], &LITERAL)
            .to_codex_json_with_explanation(&explanation, false)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        json["explain"]["rules"][1],
        serde_json::json!({"file": "t.rules", "line": 3, "column": 1,
            "pattern": "[\"git\", \"push\"]", "decision": "prompt", "via": "exact",
            "status": "near-miss", "position": 1, "expected": ["push"], "got": "pull"})
    );
    assert_eq!(
        json["explain"]["deciding_rule"],
        serde_json::json!({"file": "t.rules", "line": 5, "column": 1})
    );
    assert_eq!(json["explain"]["decision"], "prompt");
}
