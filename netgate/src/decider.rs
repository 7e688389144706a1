//! The decision seam: what the gate asks about each new (host, port, protocol), and the
//! answer it gets back.
//!
//! The gate never knows whether a verdict came from rules, a hook, a person or a test: it
//! asks a [`NetworkDecider`] once per undecided key and acts on the [`NetworkVerdict`],
//! which carries everything the records need (decision, source, rule, reason). The real
//! rules → hooks → person pipeline plugs in here; [`RulesDecider`] is its first stage and
//! what the tests and the benchmark use.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use execgate_execpolicy::{CanonicalHost, Decision, NetworkProtocol, Policy};

/// A boxed, sendable future (the decider is used as a trait object).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which door of the gate a connection came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Via {
    /// The HTTP proxy (CONNECT or an absolute-URI request).
    HttpProxy,
    /// The SOCKS5 proxy.
    Socks5,
    /// A captured connection to an address the gate's DNS responder gave out.
    Capture,
}

impl Via {
    /// A short name for records and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HttpProxy => "http-proxy",
            Self::Socks5 => "socks5",
            Self::Capture => "capture",
        }
    }
}

/// The sandbox side of a connection: enough to find the process that opened it (the
/// integration looks `peer` → `listener` up in the sandbox's `/proc/net/tcp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnectionOwner {
    /// The client's address and port, as the gate's listener sees them.
    pub peer: SocketAddr,
    /// The address the client connected to (the listener's, or for a captured connection
    /// the pool address it dialled).
    pub listener: SocketAddr,
    /// Which door it came through.
    pub via: Via,
}

/// One question: may the sandbox open this connection?
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkRequest {
    /// The destination host, canonical (see [`execgate_execpolicy::canonical_host`]).
    pub host: CanonicalHost,
    /// The destination port.
    pub port: u16,
    /// The protocol the connection speaks, as rules name it.
    pub protocol: NetworkProtocol,
    /// The connection that asked (the first one, when several share the question).
    pub owner: ConnectionOwner,
}

impl NetworkRequest {
    /// `protocol://host:port`, the form used in hook descriptions, prompts and denials
    /// (IPv6 hosts in brackets).
    pub fn target(&self) -> String {
        target_text(&self.host, self.port, self.protocol)
    }
}

/// `protocol://host:port` (IPv6 hosts in brackets).
pub fn target_text(host: &CanonicalHost, port: u16, protocol: NetworkProtocol) -> String {
    match host {
        CanonicalHost::Ip(std::net::IpAddr::V6(v6)) => {
            format!("{}://[{v6}]:{port}", protocol.as_str())
        }
        other => format!("{}://{other}:{port}", protocol.as_str()),
    }
}

/// What the gate does with the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Open the connection.
    Connect,
    /// Refuse it: 403, SOCKS reply 0x02, or a reset.
    Deny,
}

impl Outcome {
    /// The spelling used in records (`connect` / `deny`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Deny => "deny",
        }
    }
}

/// Who settled the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// A `network_rule` (or the absence of one, when nobody else could be asked).
    Policy,
    /// A `PermissionRequest` hook.
    Hook,
    /// A person.
    User,
    /// The approval mode (`never` turns prompts into denials).
    ApprovalMode,
    /// The gate itself: a local or private destination no rule names, a malformed target,
    /// an address the sandbox's DNS never gave out.
    Gate,
}

impl Source {
    /// The spelling used in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Policy => "policy",
            Self::Hook => "hook",
            Self::User => "user",
            Self::ApprovalMode => "approval-mode",
            Self::Gate => "gate",
        }
    }
}

/// How long a verdict holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// This question only: the connections waiting on it share the verdict, the next new
    /// connection to the same key asks again.
    Once,
    /// The rest of the session: the key is never asked about again.
    Session,
}

/// Whose connection it is, as the decider attributed it: the exec that opened it, or (when
/// no single exec owns it) the session's script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecRef {
    /// The exec's id in the session's records; `None` when the connection is the session
    /// script's as a whole.
    pub id: Option<u64>,
    /// Its command line, as shown to hooks and people.
    pub command: String,
}

/// The answer to a [`NetworkRequest`]. It carries its reason: the gate copies it into the
/// connection's record and, for a denial, into what the program sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkVerdict {
    /// Connect or deny.
    pub outcome: Outcome,
    /// What the rules said: the strictest matching decision, `None` when no rule names the
    /// destination.
    pub decision: Option<Decision>,
    /// Who settled it.
    pub source: Source,
    /// Where the deciding rule is written (`file:line`), if a rule decided or asked.
    pub rule: Option<String>,
    /// Why: the rule's justification, the hook's or person's reason, "denied by the user".
    pub reason: Option<String>,
    /// How long it holds.
    pub scope: Scope,
    /// The session must end (a person chose "deny and end", a hook denied with
    /// `interrupt: true`). The gate refuses the connection and reports it; ending the
    /// session is the integration's job.
    pub end_session: bool,
    /// Whose the asking connection was (`None`: the decider did not attribute it).
    pub exec: Option<ExecRef>,
}

impl NetworkVerdict {
    /// A verdict of the gate's own: deny, for the session, for `reason`.
    pub fn gate_denial(reason: impl Into<String>, decision: Option<Decision>) -> Self {
        Self {
            outcome: Outcome::Deny,
            decision,
            source: Source::Gate,
            rule: None,
            reason: Some(reason.into()),
            scope: Scope::Session,
            end_session: false,
            exec: None,
        }
    }

    /// The one-line reason a program is shown for a denial.
    pub fn denial_text(&self) -> String {
        match (&self.reason, &self.rule) {
            (Some(reason), Some(rule)) => format!("{reason} (rule {rule})"),
            (Some(reason), None) => reason.clone(),
            (None, Some(rule)) => format!("denied by rule {rule}"),
            (None, None) => match self.source {
                Source::User => "denied by the user".to_owned(),
                Source::Hook => "denied by a hook".to_owned(),
                Source::ApprovalMode => "denied: approval mode is never".to_owned(),
                Source::Policy | Source::Gate => "denied".to_owned(),
            },
        }
    }
}

/// Decides whether the sandbox may open a connection. Called once per undecided
/// (host, port, protocol): concurrent connections to one key share one call, and verdicts
/// with [`Scope::Session`] are remembered by the gate. Implementations may take as long as
/// a person takes; the connections asking wait.
pub trait NetworkDecider: Send + Sync + 'static {
    /// Answers one question.
    fn decide<'a>(&'a self, request: &'a NetworkRequest) -> BoxFuture<'a, NetworkVerdict>;
}

/// The first stage of the pipeline: `network_rule` `forbidden`/`deny` refuses, `allow`
/// connects, and `prompt` or no rule goes to `next` (hooks and a person, in the full
/// pipeline), which learns what the rules said from [`Policy::check_network`] itself.
pub struct RulesDecider {
    policy: Arc<Policy>,
    next: Arc<dyn NetworkDecider>,
}

impl RulesDecider {
    /// Rules from `policy`; prompts and misses go to `next`.
    pub fn new(policy: Arc<Policy>, next: Arc<dyn NetworkDecider>) -> Self {
        Self { policy, next }
    }
}

impl NetworkDecider for RulesDecider {
    fn decide<'a>(&'a self, request: &'a NetworkRequest) -> BoxFuture<'a, NetworkVerdict> {
        Box::pin(async move {
            let evaluation = self.policy.check_network(&request.host, request.protocol);
            let rule = evaluation.deciding_rule();
            let location = rule.map(|r| format!("{}:{}", r.source.file, r.source.line));
            let outcome = match evaluation.decision {
                Some(Decision::Allow) => Outcome::Connect,
                Some(Decision::Forbidden) => Outcome::Deny,
                Some(Decision::Prompt) | None => {
                    // The next stage settles it; the record still says what the rules said.
                    let mut verdict = self.next.decide(request).await;
                    verdict.decision = evaluation.decision;
                    if verdict.rule.is_none() {
                        verdict.rule = location;
                    }
                    return verdict;
                }
            };
            let reason = match (outcome, rule.and_then(|r| r.justification.clone())) {
                (_, Some(justification)) => Some(justification),
                (Outcome::Deny, None) => Some("forbidden by a network_rule".to_owned()),
                (Outcome::Connect, None) => None,
            };
            NetworkVerdict {
                outcome,
                decision: evaluation.decision,
                source: Source::Policy,
                rule: location,
                reason,
                scope: Scope::Session,
                end_session: false,
                exec: None,
            }
        })
    }
}

/// A decider that refuses everything it is asked, with the same verdict each time: the end
/// of the pipeline when nobody can be asked (approval mode `never`, no terminal).
pub struct DenyAll {
    /// The verdict given (its outcome should be [`Outcome::Deny`]).
    pub verdict: NetworkVerdict,
}

impl DenyAll {
    /// Refuses with `reason`, settled by `source`, remembered for the session.
    pub fn new(source: Source, reason: impl Into<String>) -> Self {
        Self {
            verdict: NetworkVerdict {
                outcome: Outcome::Deny,
                decision: None,
                source,
                rule: None,
                reason: Some(reason.into()),
                scope: Scope::Session,
                end_session: false,
                exec: None,
            },
        }
    }
}

impl NetworkDecider for DenyAll {
    fn decide<'a>(&'a self, _request: &'a NetworkRequest) -> BoxFuture<'a, NetworkVerdict> {
        Box::pin(async move { self.verdict.clone() })
    }
}
