//! The decision table: rules → escalation guard → hooks → a person → a ruling, for every
//! exec of a session.
//!
//! [`Pipeline`] is the [`EscalationPolicy`] `execgate run` and the MCP server plug into the
//! escalation server. Its ruling carries the verdict, the [`Note`] saying why, and whether
//! the session must end; it never touches the transport and never calls back into it.
//!
//! | the rules' decision | verdict |
//! |---|---|
//! | unmatched | Run (mode `untrusted`: the approval path, unless known safe) |
//! | `allow` | Escalate, if the guard lets it leave the sandbox; else Run |
//! | `prompt` | the approval path |
//! | `forbidden` | Deny, with the rule's justification |
//!
//! The approval path: the guard (a refusal means Run, nobody is asked), then prefixes a
//! person allowed for the session, then the hooks (allow → Escalate, deny → Deny), then
//! mode `never` → Deny, then the person.
//!
//! An exec the sandbox trapped outside the shell's and the shim's path
//! ([`ExecContext::direct`]) cannot leave the sandbox: where the table says Escalate or
//! the approval path (past the guard), it is denied, and nobody is asked.

use crate::approver::{ApprovalRequest, Approver, Choice, NoApprover, Unavailable};
use crate::guard::{AnyMayEscalate, EscalationGuard};
use crate::hooks::PermissionHooks;
use crate::known_safe::is_known_safe;
use crate::mode::ApprovalMode;
use crate::network::{NetworkPipeline, NoOwners};
use crate::note::{Note, Source};
use crate::remember::{save_always, SessionApprovals};
use crate::rules;
use execgate_escalate_server::{
    async_trait, direct_exec_denial, EscalationPolicy, ExecContext, Ruling, Verdict,
};
use execgate_execpolicy::{Decision, Evaluation, Policy};
use execgate_hooks::{shell_quote_command, HookDecision, PermissionMode, PermissionRequest};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The denial reason when nobody can be asked and no approver was given.
pub const NO_APPROVER: &str = "approval required; no approver available";

/// The identity fields every hook input carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookIdentity {
    /// The session (`session_id`).
    pub session_id: String,
    /// The turn (`turn_id`).
    pub turn_id: String,
    /// The model (`model`).
    pub model: String,
}

/// Answers whether a path is one the sandboxed shell can write.
pub type SandboxWritable = Arc<dyn Fn(&Path) -> bool + Send + Sync>;

/// Everything that decides a session's execs; fixed for the session.
pub struct Pipeline {
    policy: Arc<Policy>,
    hooks: Arc<dyn PermissionHooks>,
    approval: ApprovalMode,
    approver: Arc<dyn Approver>,
    approvals_file: Option<PathBuf>,
    sandbox_writable: SandboxWritable,
    guard: Arc<dyn EscalationGuard>,
    identity: HookIdentity,
    session_approvals: SessionApprovals,
    description: Option<String>,
}

impl Pipeline {
    /// A pipeline over `policy` and `hooks` with approval mode `on-request`, nobody to ask
    /// (denied with [`NO_APPROVER`]), no approvals file ("always" not offered), nothing
    /// sandbox-writable, a guard that lets every exec escalate, empty hook identity, no
    /// session approvals yet, and no description.
    pub fn new(policy: Arc<Policy>, hooks: Arc<dyn PermissionHooks>) -> Self {
        Self {
            policy,
            hooks,
            approval: ApprovalMode::default(),
            approver: Arc::new(NoApprover {
                reason: NO_APPROVER.into(),
            }),
            approvals_file: None,
            sandbox_writable: Arc::new(|_: &Path| false),
            guard: Arc::new(AnyMayEscalate),
            identity: HookIdentity::default(),
            session_approvals: SessionApprovals::default(),
            description: None,
        }
    }

    /// Who answers `PermissionRequest` events (replacing the hooks given to
    /// [`Pipeline::new`]).
    pub fn hooks(mut self, hooks: Arc<dyn PermissionHooks>) -> Self {
        self.hooks = hooks;
        self
    }

    /// When a person is asked.
    pub fn approval(mut self, mode: ApprovalMode) -> Self {
        self.approval = mode;
        self
    }

    /// Who is asked.
    pub fn approver(mut self, approver: Arc<dyn Approver>) -> Self {
        self.approver = approver;
        self
    }

    /// Replaces the approver with `wrap(approver)` (e.g. to time how long people take).
    pub fn wrap_approver(
        mut self,
        wrap: impl FnOnce(Arc<dyn Approver>) -> Arc<dyn Approver>,
    ) -> Self {
        self.approver = wrap(self.approver);
        self
    }

    /// The user's approvals file: an "always" answer appends an allow rule to it, and an
    /// allow rule loaded from it settles a `prompt`. `None` never offers "always".
    pub fn approvals_file(mut self, file: Option<PathBuf>) -> Self {
        self.approvals_file = file;
        self
    }

    /// Which paths the sandboxed shell can write (design invariant 3).
    pub fn sandbox_writable(mut self, writable: SandboxWritable) -> Self {
        self.sandbox_writable = writable;
        self
    }

    /// The guard asked before an exec may leave the sandbox.
    pub fn guard(mut self, guard: Arc<dyn EscalationGuard>) -> Self {
        self.guard = guard;
        self
    }

    /// The identity fields hooks are given.
    pub fn identity(mut self, identity: HookIdentity) -> Self {
        self.identity = identity;
        self
    }

    /// Where "session" answers are kept (share one value to keep them beyond a session).
    pub fn session_approvals(mut self, approvals: SessionApprovals) -> Self {
        self.session_approvals = approvals;
        self
    }

    /// Why the agent runs this session's commands, in its own words (the MCP tool's
    /// `justification`): hooks get it as `tool_input.description`, and the person sees it
    /// escaped (it is model-written).
    pub fn description(mut self, description: Option<String>) -> Self {
        self.description = description;
        self
    }

    /// The session id hooks are given.
    pub fn session_id(&self) -> &str {
        &self.identity.session_id
    }

    /// The session's rules.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// The decider of the session's connections (network mode `gated`): the same rules,
    /// hooks, approval mode, person, approvals file and session approvals as the execs.
    /// A connection no exec owns is attributed to `script`; hooks run in `cwd`.
    pub fn network(&self, script: impl Into<String>, cwd: impl Into<PathBuf>) -> NetworkPipeline {
        NetworkPipeline {
            policy: Arc::clone(&self.policy),
            hooks: Arc::clone(&self.hooks),
            approval: self.approval,
            approver: Arc::clone(&self.approver),
            approvals_file: self.approvals_file.clone(),
            identity: self.identity.clone(),
            session_approvals: self.session_approvals.clone(),
            owners: Arc::new(NoOwners),
            script: script.into(),
            cwd: cwd.into(),
        }
    }

    /// The ruling on one exec. Rules are checked under the name it was invoked by (when
    /// the server gives one) and the file that runs; an escalation runs it by its invoked
    /// name only when a rule for that name matched, and hooks and the person are shown the
    /// command by the name it runs as.
    pub async fn rule_on(&self, exec: &ExecContext) -> Ruling<Note> {
        let judged = rules::evaluate(&self.policy, exec, &*self.sandbox_writable);
        let name = judged.name(exec);
        self.rule_by(exec, &judged.evaluation, name)
            .await
            .with_argv0(judged.argv0)
    }

    /// The ruling on `exec` given what the rules say; `name` is the path it runs by.
    async fn rule_by(
        &self,
        exec: &ExecContext,
        evaluation: &Evaluation,
        name: &Path,
    ) -> Ruling<Note> {
        let request = &exec.request;
        let deciding = evaluation.deciding_rule();
        let note = Note {
            decision: evaluation.decision,
            source: Source::Policy,
            rule: deciding.map(rules::location),
            justification: deciding.and_then(|r| r.justification.clone()),
            downgraded: None,
        };
        match evaluation.decision {
            Some(Decision::Forbidden) => {
                let reason = note.justification.clone().unwrap_or_else(|| {
                    format!("forbidden by rule {}", note.rule.as_deref().unwrap_or("?"))
                });
                deny(note, Source::Policy, reason)
            }
            Some(Decision::Allow) => self.escalate_unless_guarded(exec, note),
            Some(Decision::Prompt) => {
                let saved = self
                    .approvals_file
                    .as_deref()
                    .and_then(|file| rules::saved_approval(evaluation, file));
                match saved {
                    // A person answered "always" for this prefix earlier: that settles a
                    // prompt (never a `forbidden`, which would be the decision instead).
                    Some(saved) => {
                        let note = Note {
                            rule: Some(saved),
                            ..note
                        };
                        self.escalate_unless_guarded(exec, note)
                    }
                    None => {
                        let prefix = deciding
                            .map(|r| r.matched_prefix.clone())
                            .unwrap_or_default();
                        self.approve(exec, name, prefix, note).await
                    }
                }
            }
            None => {
                if self.approval == ApprovalMode::Untrusted
                    && !is_known_safe(&exec.program, &request.argv)
                {
                    // No rule: the remembered prefix is the whole command.
                    let mut prefix = vec![exec.program.to_string_lossy().into_owned()];
                    prefix.extend(
                        request
                            .argv
                            .iter()
                            .skip(1)
                            .map(|a| String::from_utf8_lossy(a).into_owned()),
                    );
                    self.approve(exec, name, prefix, note).await
                } else {
                    Ruling::new(Verdict::Run, note)
                }
            }
        }
    }

    /// Escalate, unless the guard keeps the exec in the sandbox.
    fn escalate_unless_guarded(&self, exec: &ExecContext, note: Note) -> Ruling<Note> {
        match self.guard.may_escalate(exec) {
            Ok(pinned) => match &exec.direct {
                Some(caller) => deny(note, Source::Policy, direct_exec_denial(caller)),
                None => Ruling::new(Verdict::Escalate, note).with_env(pinned),
            },
            Err(why) => downgrade(note, why),
        }
    }

    /// The approval path: the guard, session approvals, hooks, the approval mode, then the
    /// person, who are shown the command as it runs (`name` and `argv[1..]`). `prefix` is
    /// what "session" and "always" remember (empty: nothing). An escalation keeps what the
    /// guard checked before anyone was asked: its pinned entries go with the ruling.
    async fn approve(
        &self,
        exec: &ExecContext,
        name: &Path,
        prefix: Vec<String>,
        note: Note,
    ) -> Ruling<Note> {
        // Nobody is asked about an exec that could not leave the sandbox anyway.
        let pinned = match self.guard.may_escalate(exec) {
            Ok(pinned) => pinned,
            Err(why) => return downgrade(note, why),
        };
        let ruling = self.ask_about(exec, name, prefix, note).await;
        if ruling.verdict == Verdict::Escalate {
            ruling.with_env(pinned)
        } else {
            ruling
        }
    }

    /// [`Pipeline::approve`] past the guard.
    async fn ask_about(
        &self,
        exec: &ExecContext,
        name: &Path,
        prefix: Vec<String>,
        note: Note,
    ) -> Ruling<Note> {
        // Nor about one that came from outside the shell's and the shim's path: only they
        // can carry out an escalation.
        if let Some(caller) = &exec.direct {
            return deny(note, Source::Policy, direct_exec_denial(caller));
        }
        if !prefix.is_empty() && self.session_approvals.contains(&prefix) {
            return escalate(note, Source::User);
        }

        let request = &exec.request;
        let args: Vec<&[u8]> = request.argv.iter().skip(1).map(Vec::as_slice).collect();
        let command = shell_quote_command(name.as_os_str().as_bytes(), &args);
        let cwd = PathBuf::from(OsStr::from_bytes(&request.cwd));

        let mut hook_request = PermissionRequest::new(cwd.clone(), command.clone());
        hook_request.session_id = self.identity.session_id.clone();
        hook_request.turn_id = self.identity.turn_id.clone();
        hook_request.model = self.identity.model.clone();
        hook_request.description = self.description.clone();
        hook_request.permission_mode = if self.approval == ApprovalMode::Never {
            PermissionMode::BypassPermissions
        } else {
            PermissionMode::Default
        };
        let outcome = self.hooks.permission_request(&hook_request).await;
        match outcome.decision {
            Some(HookDecision::Allow) => return escalate(note, Source::Hook),
            Some(HookDecision::Deny) => {
                let reason = outcome
                    .message
                    .unwrap_or_else(|| "PermissionRequest hook denied approval".to_string());
                let end = outcome.interrupt.then(|| format!("hook: {reason}"));
                let ruling = deny(note, Source::Hook, reason);
                return match end {
                    Some(end) => ruling.ending_session(end),
                    None => ruling,
                };
            }
            None => {}
        }

        if self.approval == ApprovalMode::Never {
            let reason = match &note.rule {
                Some(loc) => format!("approval required by rule {loc}; approval mode is never"),
                None => "approval required; approval mode is never".to_string(),
            };
            return deny(note, Source::ApprovalMode, reason);
        }

        let ask = ApprovalRequest::new(
            name.as_os_str().as_bytes(),
            args.iter().copied(),
            &request.cwd,
            note.rule.as_deref(),
            note.justification.as_deref(),
            !prefix.is_empty() && self.approvals_file.is_some(),
        )
        .with_description(self.description.as_deref())
        .with_prefix(&prefix);
        match self.approver.ask(&ask).await {
            Ok(Choice::Once) => escalate(note, Source::User),
            Ok(Choice::Session) => {
                if !prefix.is_empty() {
                    self.session_approvals.add(prefix);
                }
                escalate(note, Source::User)
            }
            Ok(Choice::Always) => {
                let saved = match &self.approvals_file {
                    Some(file) => save_always(file, &prefix, ask.command(), ask.rule())
                        .map_err(|e| e.to_string()),
                    None => Err("no user rules file".to_string()),
                };
                match saved {
                    Ok(()) => escalate(note, Source::User),
                    Err(err) => deny(
                        note,
                        Source::User,
                        format!("could not save the rule: {err}"),
                    ),
                }
            }
            Ok(Choice::Deny) => deny(note, Source::User, "denied by the user".into()),
            Ok(Choice::DenyAndEnd) => {
                let reason = "denied by the user; session ended".to_string();
                deny(note, Source::User, reason.clone()).ending_session(reason)
            }
            Ok(Choice::Refused { reason, end }) => {
                let ruling = deny(note, Source::User, reason.clone());
                if end {
                    ruling.ending_session(reason)
                } else {
                    ruling
                }
            }
            Err(Unavailable::NoApprover(reason)) => deny(note, Source::User, reason),
        }
    }
}

#[async_trait]
impl EscalationPolicy for Pipeline {
    type Note = Note;

    async fn decide(&self, exec: &ExecContext) -> Ruling<Note> {
        self.rule_on(exec).await
    }
}

/// Escalate, settled by `source`.
fn escalate(note: Note, source: Source) -> Ruling<Note> {
    Ruling::new(Verdict::Escalate, Note { source, ..note })
}

/// Deny for `reason`, settled by `source`; the reason is the note's justification.
fn deny(note: Note, source: Source, reason: String) -> Ruling<Note> {
    let verdict = Verdict::Deny {
        reason: reason.as_bytes().to_vec(),
    };
    Ruling::new(
        verdict,
        Note {
            source,
            justification: Some(reason),
            ..note
        },
    )
}

/// Run inside the sandbox instead of escalating, because the guard said `why`.
fn downgrade(note: Note, why: String) -> Ruling<Note> {
    Ruling::new(
        Verdict::Run,
        Note {
            source: Source::Policy,
            downgraded: Some(why),
            ..note
        },
    )
}
