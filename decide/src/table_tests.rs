//! The decision table, row by row: every combination of what the rules say, the approval
//! mode, what the hooks answer, what the person answers, where the program lives and what
//! the escalation guard says, against the table in the README ("Decisions") written out as
//! a specification. Then the rows the product cannot show (saved approvals, session
//! approvals, known-safe commands, what the hooks and the person are shown).
//!
//! Hooks, the person and the guard are scripted; rules come from `Policy::from_source`.
//! Nothing here waits: every scripted answer is ready at once.

use crate::approver::{ApprovalRequest, Choice, Unavailable};
use crate::guard::EscalationGuard;
use crate::scripted::{ready, Hook, ScriptedHooks, ScriptedPerson, HOOK_REASON};
use crate::{ApprovalMode, Note, Pipeline, SessionApprovals, Source};
use execgate_escalate_server::{Argv0, CwdDir, ExecContext, ExecRequest, Ruling, Verdict};
use execgate_execpolicy::{Decision, Policy, PolicyLoader};
use execgate_hooks::{PermissionMode, PermissionRequest};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const RULES_FILE: &str = "table.rules";
const NOBODY: &str = "nobody to ask";
const CLIENT_DECLINED: &str = "the client declined";
const CLIENT_CANCELLED: &str = "the client cancelled";
const GUARD_REASON: &str = "its git dir is writable";

// ---- scripted parts ----

/// A guard that always gives the same answer, and counts how often it was asked.
struct ScriptedGuard {
    refuse: bool,
    asked: AtomicUsize,
}

impl ScriptedGuard {
    fn new(refuse: bool) -> Arc<Self> {
        Arc::new(Self {
            refuse,
            asked: AtomicUsize::new(0),
        })
    }
}

impl EscalationGuard for ScriptedGuard {
    fn may_escalate(&self, _exec: &ExecContext) -> Result<crate::Pinned, String> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        if self.refuse {
            Err(GUARD_REASON.into())
        } else {
            Ok(crate::Pinned::new())
        }
    }
}

fn exec(program: &str, argv: &[&str]) -> ExecContext {
    ExecContext {
        id: 7,
        request: Arc::new(ExecRequest {
            program: program.as_bytes().to_vec(),
            argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
            cwd: b"/work".to_vec(),
            env: Vec::new(),
        }),
        program: PathBuf::from(program),
        invoked: None,
        cwd: Arc::new(CwdDir::new(b"/work".to_vec())),
        direct: None,
        pid: None,
    }
}

/// [`exec`] of `program`, invoked by the trusted name `invoked`.
fn exec_invoked(invoked: &str, program: &str, argv: &[&str]) -> ExecContext {
    ExecContext {
        invoked: Some(PathBuf::from(invoked)),
        ..exec(program, argv)
    }
}

// ---- the dimensions ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rules {
    Unmatched,
    Allow,
    Prompt,
    Forbidden,
}

impl Rules {
    const ALL: [Rules; 4] = [
        Rules::Unmatched,
        Rules::Allow,
        Rules::Prompt,
        Rules::Forbidden,
    ];

    /// Line 1 of the rules file: a rule for the basename `tool`.
    fn source(self) -> &'static str {
        match self {
            Rules::Unmatched => r#"prefix_rule(pattern = ["other"], decision = "forbidden")"#,
            Rules::Allow => {
                r#"prefix_rule(pattern = ["tool"], decision = "allow", justification = "j-allow")"#
            }
            Rules::Prompt => {
                r#"prefix_rule(pattern = ["tool", "x"], decision = "prompt", justification = "j-prompt")"#
            }
            Rules::Forbidden => {
                r#"prefix_rule(pattern = ["tool"], decision = "forbidden", justification = "j-forbid")"#
            }
        }
    }
}

/// Where the program lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Program {
    /// `/usr/bin/tool`: the sandbox cannot write it.
    System,
    /// `/work/tool`, in a folder the sandbox can write.
    Writable,
    /// `/work/tool`, listed by `host_executable(name = "tool", ...)`.
    WritableListed,
}

impl Program {
    const ALL: [Program; 3] = [Program::System, Program::Writable, Program::WritableListed];

    fn path(self) -> &'static str {
        match self {
            Program::System => "/usr/bin/tool",
            Program::Writable | Program::WritableListed => "/work/tool",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Person {
    Once,
    Session,
    Always,
    Deny,
    Abort,
    /// Refused by something not known to be a person (an MCP client's decline).
    Refused,
    /// Refused, ending the session (an MCP client's cancel).
    RefusedAndEnd,
    Unavailable,
}

impl Person {
    const ALL: [Person; 8] = [
        Person::Once,
        Person::Session,
        Person::Always,
        Person::Deny,
        Person::Abort,
        Person::Refused,
        Person::RefusedAndEnd,
        Person::Unavailable,
    ];

    fn answer(self) -> Result<Choice, Unavailable> {
        match self {
            Person::Once => Ok(Choice::Once),
            Person::Session => Ok(Choice::Session),
            Person::Always => Ok(Choice::Always),
            Person::Deny => Ok(Choice::Deny),
            Person::Abort => Ok(Choice::DenyAndEnd),
            Person::Refused => Ok(Choice::Refused {
                reason: CLIENT_DECLINED.into(),
                end: false,
            }),
            Person::RefusedAndEnd => Ok(Choice::Refused {
                reason: CLIENT_CANCELLED.into(),
                end: true,
            }),
            Person::Unavailable => Err(Unavailable::NoApprover(NOBODY.into())),
        }
    }
}

const MODES: [ApprovalMode; 3] = [
    ApprovalMode::Never,
    ApprovalMode::OnRequest,
    ApprovalMode::Untrusted,
];

#[derive(Debug, Clone, Copy)]
struct Row {
    rules: Rules,
    mode: ApprovalMode,
    hook: Hook,
    person: Person,
    program: Program,
    guard_refuses: bool,
}

/// What a row must produce, and who must have been asked.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    ruling: Ruling<Note>,
    guard_asked: usize,
    hooks_asked: usize,
    person_asked: usize,
    /// The rule line an "always" answer appended, if any.
    saved: Option<String>,
}

// ---- the specification ----

/// The README's decision table, written out for one row.
fn expected(row: Row) -> Outcome {
    // What the rules say. A basename rule never grants `allow` to a program the sandbox
    // could have written, unless `host_executable` lists it (design invariant 3).
    let decision = match (row.rules, row.program) {
        (Rules::Unmatched, _) | (Rules::Allow, Program::Writable) => None,
        (Rules::Allow, _) => Some(Decision::Allow),
        (Rules::Prompt, _) => Some(Decision::Prompt),
        (Rules::Forbidden, _) => Some(Decision::Forbidden),
    };
    let justification = match decision {
        None => None,
        Some(Decision::Allow) => Some("j-allow"),
        Some(Decision::Prompt) => Some("j-prompt"),
        Some(Decision::Forbidden) => Some("j-forbid"),
    };
    let rule = decision.map(|_| format!("{RULES_FILE}:1"));
    let note = |source, justification: Option<&str>, downgraded: bool| Note {
        decision,
        source,
        rule: rule.clone(),
        justification: justification.map(str::to_owned),
        downgraded: downgraded.then(|| GUARD_REASON.to_owned()),
    };
    let outcome = |verdict, note, end: Option<&str>, asked: (usize, usize, usize)| Outcome {
        ruling: Ruling {
            verdict,
            note,
            end_session: end.map(str::to_owned),
            // These rows have no invoked name (see `invoked_and_resolved_names`).
            argv0: Argv0::Resolved,
            set_env: Vec::new(),
        },
        guard_asked: asked.0,
        hooks_asked: asked.1,
        person_asked: asked.2,
        saved: None,
    };
    let deny = |reason: &str| Verdict::Deny {
        reason: reason.as_bytes().to_vec(),
    };

    let needs_approval = match decision {
        Some(Decision::Forbidden) => {
            return outcome(
                deny("j-forbid"),
                note(Source::Policy, Some("j-forbid"), false),
                None,
                (0, 0, 0),
            )
        }
        Some(Decision::Allow) if row.guard_refuses => {
            return outcome(
                Verdict::Run,
                note(Source::Policy, justification, true),
                None,
                (1, 0, 0),
            )
        }
        Some(Decision::Allow) => {
            return outcome(
                Verdict::Escalate,
                note(Source::Policy, justification, false),
                None,
                (1, 0, 0),
            )
        }
        Some(Decision::Prompt) => true,
        None => row.mode == ApprovalMode::Untrusted,
    };
    if !needs_approval {
        return outcome(
            Verdict::Run,
            note(Source::Policy, None, false),
            None,
            (0, 0, 0),
        );
    }

    // The approval path. Nobody is asked about an exec that may not leave the sandbox.
    if row.guard_refuses {
        return outcome(
            Verdict::Run,
            note(Source::Policy, justification, true),
            None,
            (1, 0, 0),
        );
    }
    match row.hook {
        Hook::Allow => {
            return outcome(
                Verdict::Escalate,
                note(Source::Hook, justification, false),
                None,
                (1, 1, 0),
            )
        }
        Hook::Deny => {
            return outcome(
                deny(HOOK_REASON),
                note(Source::Hook, Some(HOOK_REASON), false),
                None,
                (1, 1, 0),
            )
        }
        Hook::DenyAndInterrupt => {
            return outcome(
                deny(HOOK_REASON),
                note(Source::Hook, Some(HOOK_REASON), false),
                Some("hook: hook says no"),
                (1, 1, 0),
            )
        }
        Hook::Silent => {}
    }
    if row.mode == ApprovalMode::Never {
        let reason = match decision {
            Some(_) => format!("approval required by rule {RULES_FILE}:1; approval mode is never"),
            None => "approval required; approval mode is never".to_owned(),
        };
        return outcome(
            deny(&reason),
            note(Source::ApprovalMode, Some(&reason), false),
            None,
            (1, 1, 0),
        );
    }
    let asked = (1, 1, 1);
    match row.person {
        Person::Once | Person::Session => outcome(
            Verdict::Escalate,
            note(Source::User, justification, false),
            None,
            asked,
        ),
        Person::Always => {
            // The remembered prefix: the rule's, or the whole command when no rule asked.
            let pattern = match decision {
                Some(_) => r#"["tool", "x"]"#.to_owned(),
                None => format!(r#"["{}", "x"]"#, row.program.path()),
            };
            Outcome {
                saved: Some(format!(
                    r#"prefix_rule(pattern={pattern}, decision="allow")"#
                )),
                ..outcome(
                    Verdict::Escalate,
                    note(Source::User, justification, false),
                    None,
                    asked,
                )
            }
        }
        Person::Deny => outcome(
            deny("denied by the user"),
            note(Source::User, Some("denied by the user"), false),
            None,
            asked,
        ),
        Person::Abort => outcome(
            deny("denied by the user; session ended"),
            note(
                Source::User,
                Some("denied by the user; session ended"),
                false,
            ),
            Some("denied by the user; session ended"),
            asked,
        ),
        // The refusal names who refused; the person's source stands, as nobody else could
        // have been asked.
        Person::Refused => outcome(
            deny(CLIENT_DECLINED),
            note(Source::User, Some(CLIENT_DECLINED), false),
            None,
            asked,
        ),
        Person::RefusedAndEnd => outcome(
            deny(CLIENT_CANCELLED),
            note(Source::User, Some(CLIENT_CANCELLED), false),
            Some(CLIENT_CANCELLED),
            asked,
        ),
        Person::Unavailable => outcome(
            deny(NOBODY),
            note(Source::User, Some(NOBODY), false),
            None,
            asked,
        ),
    }
}

// ---- running a row ----

fn policy(rules: Rules, listed: bool) -> Arc<Policy> {
    let mut text = rules.source().to_owned();
    if listed {
        text.push_str("\nhost_executable(name = \"tool\", paths = [\"/work/tool\"])");
    }
    Arc::new(Policy::from_source(RULES_FILE, &text).unwrap())
}

fn writable_work() -> crate::SandboxWritable {
    Arc::new(|p: &Path| p.starts_with("/work"))
}

fn run(row: Row, policy: Arc<Policy>, approvals_file: &Path) -> Outcome {
    let hooks = ScriptedHooks::new(row.hook);
    let person = ScriptedPerson::new(row.person.answer());
    let guard = ScriptedGuard::new(row.guard_refuses);
    let pipeline = Pipeline::new(policy, hooks.clone())
        .approval(row.mode)
        .approver(person.clone())
        .approvals_file(Some(approvals_file.to_path_buf()))
        .sandbox_writable(writable_work())
        .guard(guard.clone());
    let ruling = ready(pipeline.rule_on(&exec(row.program.path(), &["tool", "x"])));
    let saved = std::fs::read_to_string(approvals_file)
        .ok()
        .and_then(|text| text.lines().last().map(str::to_owned));
    let hooks_asked = hooks.asked.lock().unwrap().len();
    let person_asked = person.asked.lock().unwrap().len();
    Outcome {
        ruling,
        guard_asked: guard.asked.load(Ordering::SeqCst),
        hooks_asked,
        person_asked,
        saved,
    }
}

#[test]
fn every_row_of_the_decision_table() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rows = 0;
    for rules in Rules::ALL {
        let plain = policy(rules, false);
        let listed = policy(rules, true);
        for program in Program::ALL {
            let policy = if program == Program::WritableListed {
                &listed
            } else {
                &plain
            };
            for mode in MODES {
                for hook in Hook::ALL {
                    for person in Person::ALL {
                        for guard_refuses in [false, true] {
                            let row = Row {
                                rules,
                                mode,
                                hook,
                                person,
                                program,
                                guard_refuses,
                            };
                            let file = tmp.path().join(format!("{rows}/approved.rules"));
                            assert_eq!(
                                run(row, Arc::clone(policy), &file),
                                expected(row),
                                "{row:?}"
                            );
                            rows += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(rows, 4 * 3 * 3 * 4 * 8 * 2);
}

// ---- rows the product does not show ----

fn pipeline_for(text: &str, person: &Arc<ScriptedPerson>, hooks: &Arc<ScriptedHooks>) -> Pipeline {
    Pipeline::new(
        Arc::new(Policy::from_source(RULES_FILE, text).unwrap()),
        hooks.clone(),
    )
    .approver(person.clone())
}

#[test]
fn the_person_and_the_hooks_see_the_command_cwd_rule_mode_and_description() {
    let person = ScriptedPerson::new(Ok(Choice::Once));
    let hooks = ScriptedHooks::new(Hook::Silent);
    let pipeline = pipeline_for(Rules::Prompt.source(), &person, &hooks)
        .approvals_file(Some(PathBuf::from("/nowhere/approved.rules")))
        .identity(crate::HookIdentity {
            session_id: "s-1".into(),
            turn_id: "t-1".into(),
            model: "m".into(),
        })
        .description(Some("ship\nit".into()));
    ready(pipeline.rule_on(&exec("/usr/bin/tool", &["tool", "x", "it's"])));
    assert_eq!(
        person.asked.lock().unwrap()[0].command(),
        r"/usr/bin/tool x 'it'\''s'"
    );
    assert_eq!(
        *person.asked.lock().unwrap(),
        [ApprovalRequest::new(
            b"/usr/bin/tool",
            [&b"x"[..], b"it's"],
            b"/work",
            Some(&format!("{RULES_FILE}:1")),
            Some("j-prompt"),
            true,
        )
        .with_description(Some("ship\nit"))
        .with_prefix(&["tool".to_owned(), "x".to_owned()])]
    );
    assert_eq!(person.asked.lock().unwrap()[0].prefix(), Some("tool x"));
    let asked = hooks.asked.lock().unwrap();
    let mut want =
        PermissionRequest::new(PathBuf::from("/work"), r#"/usr/bin/tool x "it's""#.into());
    want.session_id = "s-1".into();
    want.turn_id = "t-1".into();
    want.model = "m".into();
    want.description = Some("ship\nit".into());
    want.permission_mode = PermissionMode::Default;
    assert_eq!(*asked, [want]);
}

#[test]
fn hooks_are_told_when_nobody_will_be_asked() {
    let person = ScriptedPerson::new(Ok(Choice::Once));
    let hooks = ScriptedHooks::new(Hook::Silent);
    let pipeline =
        pipeline_for(Rules::Prompt.source(), &person, &hooks).approval(ApprovalMode::Never);
    ready(pipeline.rule_on(&exec("/usr/bin/tool", &["tool", "x"])));
    assert_eq!(
        hooks.asked.lock().unwrap()[0].permission_mode,
        PermissionMode::BypassPermissions
    );
}

#[test]
fn always_is_not_offered_without_an_approvals_file_and_fails_closed_if_chosen() {
    let person = ScriptedPerson::new(Ok(Choice::Always));
    let hooks = ScriptedHooks::new(Hook::Silent);
    let pipeline = pipeline_for(Rules::Prompt.source(), &person, &hooks);
    let ruling = ready(pipeline.rule_on(&exec("/usr/bin/tool", &["tool", "x"])));
    assert!(!person.asked.lock().unwrap()[0].can_remember());
    let reason = "could not save the rule: no user rules file";
    assert_eq!(
        ruling,
        Ruling::new(
            Verdict::Deny {
                reason: reason.as_bytes().to_vec()
            },
            Note {
                decision: Some(Decision::Prompt),
                source: Source::User,
                rule: Some(format!("{RULES_FILE}:1")),
                justification: Some(reason.into()),
                downgraded: None,
            }
        )
    );
}

#[test]
fn a_session_answer_settles_the_same_prefix_later_without_asking() {
    let person = ScriptedPerson::new(Ok(Choice::Session));
    let hooks = ScriptedHooks::new(Hook::Silent);
    let approvals = SessionApprovals::default();
    let pipeline =
        pipeline_for(Rules::Prompt.source(), &person, &hooks).session_approvals(approvals.clone());
    let first = ready(pipeline.rule_on(&exec("/usr/bin/tool", &["tool", "x"])));
    let again = ready(pipeline.rule_on(&exec("/usr/bin/tool", &["tool", "x", "more"])));
    assert_eq!(first, again);
    assert_eq!(again.verdict, Verdict::Escalate);
    assert_eq!(again.note.source, Source::User);
    assert_eq!(person.asked.lock().unwrap().len(), 1);
    assert_eq!(hooks.asked.lock().unwrap().len(), 1);
    assert!(approvals.contains(&["tool".to_string(), "x".to_string()]));

    // The guard still has the last word on a session-approved prefix.
    let guarded = pipeline.guard(ScriptedGuard::new(true));
    let ruling = ready(guarded.rule_on(&exec("/usr/bin/tool", &["tool", "x"])));
    assert_eq!(ruling.verdict, Verdict::Run);
    assert_eq!(ruling.note.downgraded.as_deref(), Some(GUARD_REASON));
    assert_eq!(ruling.note.source, Source::Policy);
}

#[test]
fn a_saved_approval_settles_a_prompt_but_never_a_forbidden() {
    let approvals = "/home/me/.config/execgate/rules/approved.rules";
    let mut loader = PolicyLoader::new();
    loader
        .add_source(RULES_FILE, Rules::Prompt.source())
        .unwrap();
    loader
        .add_source(
            approvals,
            "\n# saved\nprefix_rule(pattern=[\"tool\", \"x\"], decision=\"allow\")\n",
        )
        .unwrap();
    loader
        .add_source(
            "more.rules",
            r#"prefix_rule(pattern = ["tool", "x", "rm"], decision = "forbidden")"#,
        )
        .unwrap();
    let policy = Arc::new(loader.finish());
    let person = ScriptedPerson::new(Ok(Choice::Deny));
    let hooks = ScriptedHooks::new(Hook::Deny);
    let pipeline = Pipeline::new(Arc::clone(&policy), hooks.clone())
        .approver(person.clone())
        .approvals_file(Some(PathBuf::from(approvals)));
    let ruling = ready(pipeline.rule_on(&exec("/usr/bin/tool", &["tool", "x"])));
    assert_eq!(
        ruling,
        Ruling::new(
            Verdict::Escalate,
            Note {
                decision: Some(Decision::Prompt),
                source: Source::Policy,
                rule: Some(format!("{approvals}:3")),
                justification: Some("j-prompt".into()),
                downgraded: None,
            }
        )
    );
    let forbidden = ready(pipeline.rule_on(&exec("/usr/bin/tool", &["tool", "x", "rm"])));
    assert_eq!(forbidden.note.decision, Some(Decision::Forbidden));
    assert!(matches!(forbidden.verdict, Verdict::Deny { .. }));
    assert!(person.asked.lock().unwrap().is_empty());
    assert!(hooks.asked.lock().unwrap().is_empty());

    // Without the approvals file configured, the same allow rule is only a rule among
    // others: the prompt stands.
    let plain = Pipeline::new(policy, hooks.clone()).approver(person.clone());
    let ruling = ready(plain.rule_on(&exec("/usr/bin/tool", &["tool", "x"])));
    assert_eq!(ruling.note.source, Source::Hook);

    // And the guard has the last word on a saved approval too.
    let guarded = pipeline.guard(ScriptedGuard::new(true));
    let ruling = ready(guarded.rule_on(&exec("/usr/bin/tool", &["tool", "x"])));
    assert_eq!(ruling.verdict, Verdict::Run);
    assert_eq!(ruling.note.downgraded.as_deref(), Some(GUARD_REASON));
}

#[test]
fn untrusted_runs_known_safe_commands_without_asking() {
    let person = ScriptedPerson::new(Ok(Choice::Deny));
    let hooks = ScriptedHooks::new(Hook::Deny);
    let pipeline =
        pipeline_for(Rules::Unmatched.source(), &person, &hooks).approval(ApprovalMode::Untrusted);
    let ruling = ready(pipeline.rule_on(&exec("/usr/bin/ls", &["ls", "-la"])));
    assert_eq!(
        ruling,
        Ruling::new(
            Verdict::Run,
            Note {
                decision: None,
                source: Source::Policy,
                rule: None,
                justification: None,
                downgraded: None,
            }
        )
    );
    assert!(person.asked.lock().unwrap().is_empty());
    // The same name outside the system folders is not known safe.
    let ruling = ready(pipeline.rule_on(&exec("/work/ls", &["ls", "-la"])));
    assert_eq!(ruling.note.source, Source::Hook);
}

#[test]
fn a_forbidden_rule_without_justification_names_itself() {
    let person = ScriptedPerson::new(Ok(Choice::Once));
    let hooks = ScriptedHooks::new(Hook::Allow);
    let pipeline = pipeline_for(
        r#"prefix_rule(pattern = ["tool"], decision = "forbidden")"#,
        &person,
        &hooks,
    );
    let ruling = ready(pipeline.rule_on(&exec("/usr/bin/tool", &["tool"])));
    let reason = format!("forbidden by rule {RULES_FILE}:1");
    assert_eq!(
        ruling.verdict,
        Verdict::Deny {
            reason: reason.as_bytes().to_vec()
        }
    );
    assert_eq!(ruling.note.justification.as_deref(), Some(reason.as_str()));
}

#[test]
fn the_default_guard_lets_every_exec_escalate() {
    let guard = crate::AnyMayEscalate;
    assert_eq!(
        guard.may_escalate(&exec("/work/tool", &["tool"])),
        Ok(Vec::new())
    );
    // And a pipeline without one escalates an allow.
    let person = ScriptedPerson::new(Ok(Choice::Once));
    let hooks = ScriptedHooks::new(Hook::Silent);
    let pipeline = pipeline_for(Rules::Allow.source(), &person, &hooks);
    let ruling = ready(pipeline.rule_on(&exec("/usr/bin/tool", &["tool"])));
    assert_eq!(ruling.verdict, Verdict::Escalate);
}

// ---- the invoked name and the resolved file ----

/// Line 1 of the rules: one for `sh` (the invoked name), line 2: one for `dash` (the file
/// that runs), each with `decision`, or one that never matches.
fn sh_and_dash_rules(sh: Option<Decision>, dash: Option<Decision>) -> String {
    let line = |name: &str, decision: Option<Decision>| match decision {
        Some(decision) => format!(
            r#"prefix_rule(pattern = ["{name}", "-c"], decision = "{}", justification = "j-{name}")"#,
            decision.as_str()
        ),
        None => r#"prefix_rule(pattern = ["other"], decision = "forbidden")"#.to_owned(),
    };
    format!("{}\n{}\n", line("sh", sh), line("dash", dash))
}

/// (rule for sh, rule for dash, invoked name given, decision, deciding line, argv[0]).
type NameRow = (
    Option<Decision>,
    Option<Decision>,
    bool,
    Option<Decision>,
    Option<u32>,
    Argv0,
);

#[test]
fn invoked_and_resolved_names_are_both_judged_and_the_strictest_wins() {
    use Decision::{Allow, Forbidden, Prompt};
    let rows: [NameRow; 12] = [
        // A rule written for the invoked name applies to the file that runs.
        (
            Some(Forbidden),
            None,
            true,
            Some(Forbidden),
            Some(1),
            Argv0::Invoked,
        ),
        (
            Some(Allow),
            None,
            true,
            Some(Allow),
            Some(1),
            Argv0::Invoked,
        ),
        (
            Some(Prompt),
            None,
            true,
            Some(Prompt),
            Some(1),
            Argv0::Invoked,
        ),
        // A rule for the resolved file still applies; it judged that name only, so an
        // escalation runs the file by its own name.
        (
            None,
            Some(Forbidden),
            true,
            Some(Forbidden),
            Some(2),
            Argv0::Resolved,
        ),
        (
            None,
            Some(Allow),
            true,
            Some(Allow),
            Some(2),
            Argv0::Resolved,
        ),
        (
            None,
            Some(Prompt),
            true,
            Some(Prompt),
            Some(2),
            Argv0::Resolved,
        ),
        // The two disagree: the strictest wins, whichever name it was written for.
        (
            Some(Allow),
            Some(Prompt),
            true,
            Some(Prompt),
            Some(2),
            Argv0::Invoked,
        ),
        (
            Some(Prompt),
            Some(Allow),
            true,
            Some(Prompt),
            Some(1),
            Argv0::Invoked,
        ),
        (
            Some(Allow),
            Some(Forbidden),
            true,
            Some(Forbidden),
            Some(2),
            Argv0::Invoked,
        ),
        (
            Some(Forbidden),
            Some(Allow),
            true,
            Some(Forbidden),
            Some(1),
            Argv0::Invoked,
        ),
        // No trusted invoked name (the sandbox could have made it): its rules are not
        // consulted, and nothing runs by it.
        (Some(Forbidden), None, false, None, None, Argv0::Resolved),
        (None, None, true, None, None, Argv0::Resolved),
    ];
    for (sh, dash, given, decision, line, argv0) in rows {
        let person = ScriptedPerson::new(Ok(Choice::Once));
        let hooks = ScriptedHooks::new(Hook::Silent);
        let pipeline = pipeline_for(&sh_and_dash_rules(sh, dash), &person, &hooks);
        let argv = ["sh", "-c", "x"];
        let exec = if given {
            exec_invoked("/usr/bin/sh", "/usr/bin/dash", &argv)
        } else {
            exec("/usr/bin/dash", &argv)
        };
        let ruling = ready(pipeline.rule_on(&exec));
        let row = format!("sh={sh:?} dash={dash:?} given={given}");
        assert_eq!(ruling.note.decision, decision, "{row}");
        assert_eq!(
            ruling.note.rule,
            line.map(|l| format!("{RULES_FILE}:{l}")),
            "{row}"
        );
        assert_eq!(ruling.argv0, argv0, "{row}");
        let verdict = match decision {
            Some(Forbidden) => Verdict::Deny {
                reason: format!("j-{}", if line == Some(1) { "sh" } else { "dash" }).into_bytes(),
            },
            Some(Allow) | Some(Prompt) => Verdict::Escalate,
            None => Verdict::Run,
        };
        assert_eq!(ruling.verdict, verdict, "{row}");
        // Hooks and the person are shown the command by the name it will run as.
        let shown = match argv0 {
            Argv0::Invoked => "/usr/bin/sh -c x",
            Argv0::Resolved => "/usr/bin/dash -c x",
        };
        let asked: Vec<String> = person
            .asked
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.command().to_owned())
            .collect();
        let want: Vec<String> = if decision == Some(Prompt) {
            vec![shown.into()]
        } else {
            vec![]
        };
        assert_eq!(asked, want, "{row}");
        let hooked: Vec<String> = hooks
            .asked
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.command.clone())
            .collect();
        assert_eq!(hooked, want, "{row}");
    }
}

#[test]
fn one_rule_for_the_basename_judges_a_link_and_its_target_once() {
    let person = ScriptedPerson::new(Ok(Choice::Once));
    let hooks = ScriptedHooks::new(Hook::Silent);
    // Both names are the same file, as for a program invoked by its resolved path.
    let pipeline = pipeline_for(Rules::Allow.source(), &person, &hooks);
    let ruling = ready(pipeline.rule_on(&exec_invoked(
        "/usr/bin/tool",
        "/usr/bin/tool",
        &["tool", "x"],
    )));
    assert_eq!(ruling.verdict, Verdict::Escalate);
    assert_eq!(ruling.argv0, Argv0::Resolved);
    // `/usr/local/bin/tool` -> `/usr/bin/tool`: one rule for the basename `tool`, matched
    // under both names, decides once.
    let ruling = ready(pipeline.rule_on(&exec_invoked(
        "/usr/local/bin/tool",
        "/usr/bin/tool",
        &["tool", "x"],
    )));
    assert_eq!(ruling.note.rule, Some(format!("{RULES_FILE}:1")));
    assert_eq!(ruling.note.justification.as_deref(), Some("j-allow"));
    assert_eq!(ruling.argv0, Argv0::Invoked);
}

#[test]
fn a_direct_exec_runs_or_is_denied_and_nobody_is_asked() {
    let caller = "/usr/bin/xargs";
    let escalation = execgate_escalate_server::direct_exec_denial(Path::new(caller));
    for (rules, verdict) in [
        (Rules::Unmatched, Verdict::Run),
        (
            Rules::Allow,
            Verdict::Deny {
                reason: escalation.clone().into_bytes(),
            },
        ),
        (
            Rules::Prompt,
            Verdict::Deny {
                reason: escalation.clone().into_bytes(),
            },
        ),
        (
            Rules::Forbidden,
            Verdict::Deny {
                reason: b"j-forbid".to_vec(),
            },
        ),
    ] {
        let person = ScriptedPerson::new(Ok(Choice::Once));
        let hooks = ScriptedHooks::new(Hook::Allow);
        let pipeline = pipeline_for(rules.source(), &person, &hooks);
        let exec = ExecContext {
            direct: Some(PathBuf::from(caller)),
            ..exec("/usr/bin/tool", &["tool", "x"])
        };
        let ruling = ready(pipeline.rule_on(&exec));
        assert_eq!(ruling.verdict, verdict, "{rules:?}");
        assert!(person.asked.lock().unwrap().is_empty(), "{rules:?}");
        assert!(hooks.asked.lock().unwrap().is_empty(), "{rules:?}");
    }
    assert_eq!(
        escalation,
        "needs to run outside the sandbox, but /usr/bin/xargs executed it directly, not \
         through the session's shell; run it from the shell"
    );
}
