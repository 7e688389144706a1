//! The network decision table, row by row: every combination of what the `network_rule`s
//! say, the approval mode, what the hooks answer and what the person answers, against the
//! table in the README ("Network gate") written out as a specification. Then the rows the
//! product cannot show in one line: saved "always" answers, session hosts, attribution,
//! and what the hooks and the person are shown.

use crate::approver::{ApprovalRequest, Choice, Unavailable};
use crate::network::ConnectionOwners;
use crate::scripted::{ready, Hook, ScriptedHooks, ScriptedPerson, HOOK_REASON};
use crate::{ApprovalMode, BoxFuture, HookIdentity, Pipeline, SessionApprovals};
use execgate_execpolicy::{canonical_host, Decision, NetworkProtocol, Policy, PolicyLoader};
use execgate_hooks::PermissionMode;
use execgate_netgate::{
    ConnectionOwner, ExecRef, NetworkRequest, NetworkVerdict, Outcome, Scope, Source, Via,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const RULES_FILE: &str = "net.rules";
const NOBODY: &str = "nobody to ask";
const SCRIPT: &str = "curl https://a.test/ | sh";
const COMMAND: &str = "/usr/bin/curl https://a.test/";

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

    /// One rule on line 1 naming a.test for https, with a justification.
    fn source(self) -> &'static str {
        match self {
            Rules::Unmatched => {
                "network_rule(host = \"b.test\", protocol = \"https\", decision = \"allow\")\n"
            }
            Rules::Allow => "network_rule(host = \"a.test\", protocol = \"https\", decision = \"allow\", justification = \"j-allow\")\n",
            Rules::Prompt => "network_rule(host = \"a.test\", protocol = \"https\", decision = \"prompt\", justification = \"j-prompt\")\n",
            Rules::Forbidden => "network_rule(host = \"A.test.:443\", protocol = \"https\", decision = \"deny\", justification = \"j-forbid\")\n",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Person {
    Once,
    Session,
    Always,
    Deny,
    DenyAndEnd,
    Unavailable,
}

impl Person {
    const ALL: [Person; 6] = [
        Person::Once,
        Person::Session,
        Person::Always,
        Person::Deny,
        Person::DenyAndEnd,
        Person::Unavailable,
    ];

    fn answer(self) -> Result<Choice, Unavailable> {
        match self {
            Person::Once => Ok(Choice::Once),
            Person::Session => Ok(Choice::Session),
            Person::Always => Ok(Choice::Always),
            Person::Deny => Ok(Choice::Deny),
            Person::DenyAndEnd => Ok(Choice::DenyAndEnd),
            Person::Unavailable => Err(Unavailable::NoApprover(NOBODY.into())),
        }
    }
}

const MODES: [ApprovalMode; 3] = [
    ApprovalMode::Never,
    ApprovalMode::OnRequest,
    ApprovalMode::Untrusted,
];

/// An owner lookup that always names the same exec (or nobody).
struct FixedOwner(Option<ExecRef>);

impl ConnectionOwners for FixedOwner {
    fn owner<'a>(&'a self, _connection: &'a ConnectionOwner) -> BoxFuture<'a, Option<ExecRef>> {
        let owner = self.0.clone();
        Box::pin(async move { owner })
    }
}

fn curl() -> Option<ExecRef> {
    Some(ExecRef {
        id: Some(4),
        command: COMMAND.into(),
    })
}

fn request(host: &str, port: u16) -> NetworkRequest {
    NetworkRequest {
        host: canonical_host(host).unwrap(),
        port,
        protocol: NetworkProtocol::Https,
        owner: ConnectionOwner {
            peer: "127.0.0.1:40000".parse().unwrap(),
            listener: "127.0.0.1:3128".parse().unwrap(),
            via: Via::HttpProxy,
        },
    }
}

fn policy(source: &str) -> Arc<Policy> {
    let mut loader = PolicyLoader::new();
    loader.add_source(RULES_FILE, source).unwrap();
    Arc::new(loader.finish())
}

/// What a row must produce, and who must have been asked.
#[derive(Debug, PartialEq, Eq)]
struct Expected {
    verdict: NetworkVerdict,
    hooks_asked: usize,
    person_asked: usize,
    /// Whether an "always" answer appended a rule.
    saved: bool,
}

/// The README's network table, written out for one row.
fn expected(rules: Rules, mode: ApprovalMode, hook: Hook, person: Person) -> Expected {
    let decision = match rules {
        Rules::Unmatched => None,
        Rules::Allow => Some(Decision::Allow),
        Rules::Prompt => Some(Decision::Prompt),
        Rules::Forbidden => Some(Decision::Forbidden),
    };
    let justification = match rules {
        Rules::Unmatched => None,
        Rules::Allow => Some("j-allow"),
        Rules::Prompt => Some("j-prompt"),
        Rules::Forbidden => Some("j-forbid"),
    };
    let rule = decision.map(|_| format!("{RULES_FILE}:1"));
    let out = |outcome, source, reason: Option<&str>, scope, end, asked: (usize, usize)| Expected {
        verdict: NetworkVerdict {
            outcome,
            decision,
            source,
            rule: rule.clone(),
            reason: reason.map(str::to_owned),
            scope,
            end_session: end,
            exec: curl(),
        },
        hooks_asked: asked.0,
        person_asked: asked.1,
        saved: false,
    };
    use Outcome::{Connect, Deny};
    match rules {
        Rules::Forbidden => {
            return out(
                Deny,
                Source::Policy,
                justification,
                Scope::Session,
                false,
                (0, 0),
            )
        }
        Rules::Allow => {
            return out(
                Connect,
                Source::Policy,
                justification,
                Scope::Session,
                false,
                (0, 0),
            )
        }
        Rules::Prompt | Rules::Unmatched => {}
    }
    // The approval path: hooks, then the approval mode, then the person.
    match hook {
        Hook::Allow => {
            return out(
                Connect,
                Source::Hook,
                justification,
                Scope::Session,
                false,
                (1, 0),
            )
        }
        Hook::Deny | Hook::DenyAndInterrupt => {
            let end = hook == Hook::DenyAndInterrupt;
            return out(
                Deny,
                Source::Hook,
                Some(HOOK_REASON),
                Scope::Session,
                end,
                (1, 0),
            );
        }
        Hook::Silent => {}
    }
    if mode == ApprovalMode::Never {
        let reason = match &rule {
            Some(rule) => format!("approval required by rule {rule}; approval mode is never"),
            None => "approval required; approval mode is never".to_owned(),
        };
        return out(
            Deny,
            Source::ApprovalMode,
            Some(&reason),
            Scope::Session,
            false,
            (1, 0),
        );
    }
    let asked = (1, 1);
    match person {
        Person::Once => out(
            Connect,
            Source::User,
            justification,
            Scope::Once,
            false,
            asked,
        ),
        Person::Session => out(
            Connect,
            Source::User,
            justification,
            Scope::Session,
            false,
            asked,
        ),
        Person::Always => Expected {
            saved: true,
            ..out(
                Connect,
                Source::User,
                justification,
                Scope::Session,
                false,
                asked,
            )
        },
        Person::Deny => out(
            Deny,
            Source::User,
            Some("denied by the user"),
            Scope::Session,
            false,
            asked,
        ),
        Person::DenyAndEnd => out(
            Deny,
            Source::User,
            Some("denied by the user; session ended"),
            Scope::Session,
            true,
            asked,
        ),
        Person::Unavailable => out(
            Deny,
            Source::User,
            Some(NOBODY),
            Scope::Session,
            false,
            asked,
        ),
    }
}

/// What the network pipeline does for one row.
fn actual(rules: Rules, mode: ApprovalMode, hook: Hook, person: Person) -> Expected {
    let tmp = tempfile::tempdir().unwrap();
    let approvals = tmp.path().join("approved.rules");
    let hooks = ScriptedHooks::new(hook);
    let person_ = ScriptedPerson::new(person.answer());
    let pipeline = Pipeline::new(policy(rules.source()), hooks.clone())
        .approval(mode)
        .approver(person_.clone())
        .approvals_file(Some(approvals.clone()));
    let network = pipeline
        .network(SCRIPT, "/work")
        .owners(Arc::new(FixedOwner(curl())));
    let verdict = ready(network.rule_on(&request("a.test", 443)));
    let hooks_asked = hooks.asked.lock().unwrap().len();
    let person_asked = person_.asked.lock().unwrap().len();
    Expected {
        verdict,
        hooks_asked,
        person_asked,
        saved: approvals.exists(),
    }
}

#[test]
fn every_row_of_the_network_table() {
    let mut rows = 0;
    for rules in Rules::ALL {
        for mode in MODES {
            for hook in Hook::ALL {
                for person in Person::ALL {
                    let want = expected(rules, mode, hook, person);
                    let got = actual(rules, mode, hook, person);
                    assert_eq!(got, want, "{rules:?} {mode:?} {hook:?} {person:?}");
                    rows += 1;
                }
            }
        }
    }
    assert_eq!(rows, 4 * 3 * 4 * 6);
}

#[test]
fn hooks_are_told_whose_connection_it_is_and_where_it_goes() {
    let hooks = ScriptedHooks::new(Hook::Silent);
    let person = ScriptedPerson::new(Ok(Choice::Deny));
    let pipeline = Pipeline::new(policy(Rules::Prompt.source()), hooks.clone())
        .approver(person.clone())
        .identity(HookIdentity {
            session_id: "s".into(),
            turn_id: "t".into(),
            model: String::new(),
        });
    let network = pipeline
        .network(SCRIPT, "/work")
        .owners(Arc::new(FixedOwner(curl())));
    ready(network.rule_on(&request("a.test", 8443)));
    let asked = hooks.asked.lock().unwrap();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].command, COMMAND);
    assert_eq!(
        asked[0].description.as_deref(),
        Some("network-access https://a.test:8443")
    );
    assert_eq!(asked[0].cwd, PathBuf::from("/work"));
    assert_eq!(asked[0].session_id, "s");
    assert_eq!(asked[0].permission_mode, PermissionMode::Default);
    assert_eq!(
        *person.asked.lock().unwrap(),
        vec![ApprovalRequest::for_connection(
            COMMAND,
            b"/work",
            "https://a.test:8443",
            Some(&format!("{RULES_FILE}:1")),
            Some("j-prompt"),
            false,
        )]
    );
}

#[test]
fn a_connection_no_exec_owns_is_the_scripts() {
    let hooks = ScriptedHooks::new(Hook::Deny);
    let pipeline = Pipeline::new(policy(Rules::Unmatched.source()), hooks.clone());
    let verdict = ready(
        pipeline
            .network(SCRIPT, "/work")
            .rule_on(&request("a.test", 443)),
    );
    assert_eq!(hooks.asked.lock().unwrap()[0].command, SCRIPT);
    assert_eq!(
        verdict.exec,
        Some(ExecRef {
            id: None,
            command: SCRIPT.into()
        })
    );
}

#[test]
fn always_appends_a_network_rule_that_settles_the_prompt_next_time() {
    let tmp = tempfile::tempdir().unwrap();
    let approvals = tmp.path().join("approved.rules");
    let build = |person: &Arc<ScriptedPerson>| {
        let mut loader = PolicyLoader::new();
        loader
            .add_source(RULES_FILE, Rules::Prompt.source())
            .unwrap();
        if approvals.exists() {
            loader.add_file(&approvals).unwrap();
        }
        Pipeline::new(Arc::new(loader.finish()), ScriptedHooks::new(Hook::Silent))
            .approver(person.clone())
            .approvals_file(Some(approvals.clone()))
    };
    let first = ScriptedPerson::new(Ok(Choice::Always));
    let verdict = ready(
        build(&first)
            .network(SCRIPT, "/w")
            .rule_on(&request("A.TEST.", 443)),
    );
    assert_eq!(
        (verdict.outcome, verdict.source),
        (Outcome::Connect, Source::User)
    );
    let text = std::fs::read_to_string(&approvals).unwrap();
    assert!(
        text.ends_with("\nnetwork_rule(host=\"a.test\", protocol=\"https\", decision=\"allow\")\n"),
        "{text}"
    );
    // The next session loads the approvals file: the prompt rule is settled without asking.
    let second = ScriptedPerson::new(Ok(Choice::Deny));
    let verdict = ready(
        build(&second)
            .network(SCRIPT, "/w")
            .rule_on(&request("a.test", 8080)),
    );
    assert_eq!(verdict.outcome, Outcome::Connect);
    assert_eq!(verdict.source, Source::Policy);
    assert_eq!(verdict.decision, Some(Decision::Prompt));
    assert_eq!(
        verdict.rule,
        Some(format!("{}:3", approvals.display())),
        "the saved rule is quoted"
    );
    assert!(second.asked.lock().unwrap().is_empty());
}

#[test]
fn a_saved_allow_never_settles_a_forbidden_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let approvals = tmp.path().join("approved.rules");
    std::fs::write(
        &approvals,
        "network_rule(host=\"a.test\", protocol=\"https\", decision=\"allow\")\n",
    )
    .unwrap();
    let mut loader = PolicyLoader::new();
    loader
        .add_source(RULES_FILE, Rules::Forbidden.source())
        .unwrap();
    loader.add_file(&approvals).unwrap();
    let pipeline = Pipeline::new(Arc::new(loader.finish()), ScriptedHooks::new(Hook::Allow))
        .approvals_file(Some(approvals));
    let verdict = ready(
        pipeline
            .network(SCRIPT, "/w")
            .rule_on(&request("a.test", 443)),
    );
    assert_eq!(verdict.outcome, Outcome::Deny);
    assert_eq!(verdict.reason.as_deref(), Some("j-forbid"));
}

#[test]
fn a_session_answer_allows_the_host_on_every_port_for_that_protocol_only() {
    let approvals = SessionApprovals::default();
    let person = ScriptedPerson::new(Ok(Choice::Session));
    let pipeline = Pipeline::new(
        policy(Rules::Unmatched.source()),
        ScriptedHooks::new(Hook::Silent),
    )
    .approver(person.clone())
    .session_approvals(approvals.clone());
    let network = pipeline.network(SCRIPT, "/w");
    assert_eq!(
        ready(network.rule_on(&request("a.test", 443))).scope,
        Scope::Session
    );
    let again = ready(network.rule_on(&request("a.test", 8443)));
    assert_eq!(
        (again.outcome, again.source),
        (Outcome::Connect, Source::User)
    );
    assert_eq!(person.asked.lock().unwrap().len(), 1);
    let mut http = request("a.test", 80);
    http.protocol = NetworkProtocol::Http;
    ready(network.rule_on(&http));
    assert_eq!(
        person.asked.lock().unwrap().len(),
        2,
        "http is another question"
    );
    // Shared with the session's other pipelines (the MCP server keeps it across calls).
    assert!(approvals.contains_host(&canonical_host("a.test").unwrap(), NetworkProtocol::Https));
}

#[test]
fn an_exec_prefix_approval_does_not_approve_connections() {
    let approvals = SessionApprovals::default();
    approvals.add(vec!["/usr/bin/curl".into(), "https://a.test/".into()]);
    let person = ScriptedPerson::new(Ok(Choice::Deny));
    let pipeline = Pipeline::new(
        policy(Rules::Unmatched.source()),
        ScriptedHooks::new(Hook::Silent),
    )
    .approver(person.clone())
    .session_approvals(approvals);
    let verdict = ready(
        pipeline
            .network(SCRIPT, "/w")
            .owners(Arc::new(FixedOwner(curl())))
            .rule_on(&request("a.test", 443)),
    );
    assert_eq!(verdict.outcome, Outcome::Deny);
    assert_eq!(person.asked.lock().unwrap().len(), 1);
}

#[test]
fn approval_mode_never_tells_hooks_nobody_will_be_asked() {
    let hooks = ScriptedHooks::new(Hook::Silent);
    let pipeline = Pipeline::new(policy(Rules::Unmatched.source()), hooks.clone())
        .approval(ApprovalMode::Never);
    ready(
        pipeline
            .network(SCRIPT, Path::new("/w"))
            .rule_on(&request("a.test", 443)),
    );
    assert_eq!(
        hooks.asked.lock().unwrap()[0].permission_mode,
        PermissionMode::BypassPermissions
    );
}
