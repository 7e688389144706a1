//! Network decisions: each new (host, port, protocol) a sandboxed program connects to
//! through the network gate, decided like an exec that needs approval.
//!
//! | what the `network_rule`s say | verdict |
//! |---|---|
//! | `forbidden` (or `deny`) | refused, with the rule's justification |
//! | `allow` | connect |
//! | `prompt`, or no rule names the destination | the approval path |
//!
//! The approval path: an "always" answered earlier (an `allow` rule from the approvals file
//! settles a `prompt`), then hosts a person allowed for the session, then the
//! `PermissionRequest` hooks (`tool_input.command` is the command line of the exec that
//! opened the connection, `tool_input.description` is `network-access
//! <protocol>://<host>:<port>`: a hook that approves commands tells connections apart by
//! it), then approval mode `never` (refused), then the person. The gate asks once per
//! undecided key; the [`NetworkVerdict`]'s scope says how long the answer holds.
//!
//! [`NetworkPipeline`] implements the gate's [`NetworkDecider`]; it never touches the
//! gate's sockets and never calls back into the gate.

use crate::approver::{ApprovalRequest, Approver, BoxFuture, Choice, Unavailable};
use crate::hooks::PermissionHooks;
use crate::mode::ApprovalMode;
use crate::pipeline::HookIdentity;
use crate::remember::{save_always_network, SessionApprovals};
use execgate_execpolicy::{Decision, NetworkEvaluation, NetworkRule, Policy};
use execgate_hooks::{HookDecision, PermissionMode, PermissionRequest};
use execgate_netgate::{
    ConnectionOwner, ExecRef, NetworkDecider, NetworkRequest, NetworkVerdict, Outcome, Scope,
    Source,
};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Finds who opened a connection: the exec whose process holds the sandbox side of it.
pub trait ConnectionOwners: Send + Sync {
    /// The exec that owns `connection`, or `None` when no single exec does (several
    /// processes share the socket, it is gone, or it belongs to no exec the session
    /// decided). May take a while (it reads the sandbox's process table); never blocks a
    /// thread.
    fn owner<'a>(&'a self, connection: &'a ConnectionOwner) -> BoxFuture<'a, Option<ExecRef>>;
}

/// Attributes nothing: every connection is the session script's.
pub struct NoOwners;

impl ConnectionOwners for NoOwners {
    fn owner<'a>(&'a self, _connection: &'a ConnectionOwner) -> BoxFuture<'a, Option<ExecRef>> {
        Box::pin(async { None })
    }
}

/// The hook description of a connection: `network-access <protocol>://<host>:<port>`.
pub fn hook_description(request: &NetworkRequest) -> String {
    format!("network-access {}", request.target())
}

/// Decides a session's connections; built by [`crate::Pipeline::network`], so it asks the
/// same hooks and the same person, in the same approval mode, as the session's execs.
pub struct NetworkPipeline {
    pub(crate) policy: Arc<Policy>,
    pub(crate) hooks: Arc<dyn PermissionHooks>,
    pub(crate) approval: ApprovalMode,
    pub(crate) approver: Arc<dyn Approver>,
    pub(crate) approvals_file: Option<PathBuf>,
    pub(crate) identity: HookIdentity,
    pub(crate) session_approvals: SessionApprovals,
    pub(crate) owners: Arc<dyn ConnectionOwners>,
    /// Whose a connection is when no exec owns it: the session's script.
    pub(crate) script: String,
    /// Where hooks run and what they are told the cwd is: the session's working directory
    /// (a connection has no cwd of its own, and hooks never run where sandboxed code chose).
    pub(crate) cwd: PathBuf,
}

/// What the rules say about one destination, with the rule to quote.
struct Ruled {
    decision: Option<Decision>,
    rule: Option<String>,
    justification: Option<String>,
}

fn location(rule: &NetworkRule) -> String {
    format!("{}:{}", rule.source.file, rule.source.line)
}

/// An `allow` rule from the approvals file among the matches: a person's earlier "always"
/// for this host and protocol.
fn saved_approval(evaluation: &NetworkEvaluation<'_>, approvals_file: &Path) -> Option<String> {
    evaluation
        .matched
        .iter()
        .find(|r| r.decision == Decision::Allow && Path::new(&*r.source.file) == approvals_file)
        .map(|r| location(r))
}

impl NetworkPipeline {
    /// Attributes connections with `owners` (default: nobody owns anything, so every
    /// connection is the script's).
    pub fn owners(mut self, owners: Arc<dyn ConnectionOwners>) -> Self {
        self.owners = owners;
        self
    }

    /// The verdict on one connection.
    pub async fn rule_on(&self, request: &NetworkRequest) -> NetworkVerdict {
        let exec = match self.owners.owner(&request.owner).await {
            Some(exec) => exec,
            None => ExecRef {
                id: None,
                command: self.script.clone(),
            },
        };
        let evaluation = self.policy.check_network(&request.host, request.protocol);
        let deciding = evaluation.deciding_rule();
        let ruled = Ruled {
            decision: evaluation.decision,
            rule: deciding.map(location),
            justification: deciding.and_then(|r| r.justification.clone()),
        };
        let saved = match (ruled.decision, &self.approvals_file) {
            (Some(Decision::Prompt), Some(file)) => saved_approval(&evaluation, file),
            _ => None,
        };
        match ruled.decision {
            Some(Decision::Forbidden) => {
                let reason = ruled
                    .justification
                    .clone()
                    .unwrap_or_else(|| "forbidden by a network_rule".to_owned());
                verdict(ruled, exec, Source::Policy, Err(reason), Scope::Session)
            }
            Some(Decision::Allow) => verdict(ruled, exec, Source::Policy, Ok(()), Scope::Session),
            Some(Decision::Prompt) if saved.is_some() => {
                let ruled = Ruled {
                    rule: saved,
                    ..ruled
                };
                verdict(ruled, exec, Source::Policy, Ok(()), Scope::Session)
            }
            Some(Decision::Prompt) | None => self.approve(request, ruled, exec).await,
        }
    }

    /// The approval path: session approvals, hooks, the approval mode, the person.
    async fn approve(
        &self,
        request: &NetworkRequest,
        ruled: Ruled,
        exec: ExecRef,
    ) -> NetworkVerdict {
        if self
            .session_approvals
            .contains_host(&request.host, request.protocol)
        {
            return verdict(ruled, exec, Source::User, Ok(()), Scope::Session);
        }
        let target = request.target();
        let mut hook_request = PermissionRequest::new(self.cwd.clone(), exec.command.clone());
        hook_request.description = Some(hook_description(request));
        hook_request.session_id = self.identity.session_id.clone();
        hook_request.turn_id = self.identity.turn_id.clone();
        hook_request.model = self.identity.model.clone();
        hook_request.permission_mode = if self.approval == ApprovalMode::Never {
            PermissionMode::BypassPermissions
        } else {
            PermissionMode::Default
        };
        let outcome = self.hooks.permission_request(&hook_request).await;
        match outcome.decision {
            Some(HookDecision::Allow) => {
                return verdict(ruled, exec, Source::Hook, Ok(()), Scope::Session)
            }
            Some(HookDecision::Deny) => {
                let reason = outcome
                    .message
                    .unwrap_or_else(|| "PermissionRequest hook denied network access".to_owned());
                let mut denied = verdict(ruled, exec, Source::Hook, Err(reason), Scope::Session);
                denied.end_session = outcome.interrupt;
                return denied;
            }
            None => {}
        }
        if self.approval == ApprovalMode::Never {
            let reason = match &ruled.rule {
                Some(rule) => format!("approval required by rule {rule}; approval mode is never"),
                None => "approval required; approval mode is never".to_owned(),
            };
            return verdict(
                ruled,
                exec,
                Source::ApprovalMode,
                Err(reason),
                Scope::Session,
            );
        }
        let ask = ApprovalRequest::for_connection(
            &exec.command,
            self.cwd.as_os_str().as_bytes(),
            &target,
            ruled.rule.as_deref(),
            ruled.justification.as_deref(),
            self.approvals_file.is_some(),
        );
        match self.approver.ask(&ask).await {
            Ok(Choice::Once) => verdict(ruled, exec, Source::User, Ok(()), Scope::Once),
            Ok(Choice::Session) => {
                self.session_approvals
                    .add_host(request.host.clone(), request.protocol);
                verdict(ruled, exec, Source::User, Ok(()), Scope::Session)
            }
            Ok(Choice::Always) => {
                let saved = match &self.approvals_file {
                    Some(file) => save_always_network(
                        file,
                        &request.host.as_text(),
                        request.protocol,
                        &target,
                        &exec.command,
                        ruled.rule.as_deref(),
                    )
                    .map_err(|e| e.to_string()),
                    None => Err("no user rules file".to_owned()),
                };
                match saved {
                    Ok(()) => {
                        self.session_approvals
                            .add_host(request.host.clone(), request.protocol);
                        verdict(ruled, exec, Source::User, Ok(()), Scope::Session)
                    }
                    Err(err) => {
                        let reason = format!("could not save the rule: {err}");
                        verdict(ruled, exec, Source::User, Err(reason), Scope::Once)
                    }
                }
            }
            Ok(Choice::Deny) => {
                let reason = "denied by the user".to_owned();
                verdict(ruled, exec, Source::User, Err(reason), Scope::Session)
            }
            Ok(Choice::DenyAndEnd) => {
                let reason = "denied by the user; session ended".to_owned();
                let mut denied = verdict(ruled, exec, Source::User, Err(reason), Scope::Session);
                denied.end_session = true;
                denied
            }
            Ok(Choice::Refused { reason, end }) => {
                let mut denied = verdict(ruled, exec, Source::User, Err(reason), Scope::Session);
                denied.end_session = end;
                denied
            }
            Err(Unavailable::NoApprover(reason)) => {
                verdict(ruled, exec, Source::User, Err(reason), Scope::Session)
            }
        }
    }
}

/// A verdict: connect (`Ok`) or deny for the reason (`Err`), settled by `source`.
fn verdict(
    ruled: Ruled,
    exec: ExecRef,
    source: Source,
    outcome: Result<(), String>,
    scope: Scope,
) -> NetworkVerdict {
    let (outcome, reason) = match outcome {
        Ok(()) => (Outcome::Connect, ruled.justification),
        Err(reason) => (Outcome::Deny, Some(reason)),
    };
    NetworkVerdict {
        outcome,
        decision: ruled.decision,
        source,
        rule: ruled.rule,
        reason,
        scope,
        end_session: false,
        exec: Some(exec),
    }
}

impl NetworkDecider for NetworkPipeline {
    fn decide<'a>(
        &'a self,
        request: &'a NetworkRequest,
    ) -> execgate_netgate::BoxFuture<'a, NetworkVerdict> {
        Box::pin(self.rule_on(request))
    }
}
