//! Scripted stand-ins for the hooks and the person, shared by the decision-table tests of
//! execs and of connections. Every answer is ready at once.

use crate::approver::{ApprovalRequest, Approver, BoxFuture, Choice, Unavailable};
use crate::hooks::PermissionHooks;
use execgate_hooks::{HookDecision, PermissionOutcome, PermissionRequest};
use std::sync::{Arc, Mutex};

/// The reason a scripted hook denies with.
pub(crate) const HOOK_REASON: &str = "hook says no";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hook {
    Silent,
    Allow,
    Deny,
    DenyAndInterrupt,
}

impl Hook {
    pub(crate) const ALL: [Hook; 4] = [
        Hook::Silent,
        Hook::Allow,
        Hook::Deny,
        Hook::DenyAndInterrupt,
    ];
}

/// A person who always gives the same answer, and remembers what they were shown.
pub(crate) struct ScriptedPerson {
    answer: Result<Choice, Unavailable>,
    pub(crate) asked: Mutex<Vec<ApprovalRequest>>,
}

impl ScriptedPerson {
    pub(crate) fn new(answer: Result<Choice, Unavailable>) -> Arc<Self> {
        Arc::new(Self {
            answer,
            asked: Mutex::new(Vec::new()),
        })
    }
}

impl Approver for ScriptedPerson {
    fn ask<'a>(
        &'a self,
        request: &'a ApprovalRequest,
    ) -> BoxFuture<'a, Result<Choice, Unavailable>> {
        self.asked.lock().unwrap().push(request.clone());
        let answer = self.answer.clone();
        Box::pin(async move { answer })
    }
}

/// Hooks that always fold to the same outcome, and remember what they were asked.
pub(crate) struct ScriptedHooks {
    outcome: PermissionOutcome,
    pub(crate) asked: Mutex<Vec<PermissionRequest>>,
}

impl ScriptedHooks {
    pub(crate) fn new(hook: Hook) -> Arc<Self> {
        let (decision, message, interrupt) = match hook {
            Hook::Silent => (None, None, false),
            Hook::Allow => (Some(HookDecision::Allow), None, false),
            Hook::Deny => (Some(HookDecision::Deny), Some(HOOK_REASON.into()), false),
            Hook::DenyAndInterrupt => (Some(HookDecision::Deny), Some(HOOK_REASON.into()), true),
        };
        Arc::new(Self {
            outcome: PermissionOutcome {
                decision,
                message,
                interrupt,
                runs: Vec::new(),
            },
            asked: Mutex::new(Vec::new()),
        })
    }
}

impl PermissionHooks for ScriptedHooks {
    fn permission_request<'a>(
        &'a self,
        request: &'a PermissionRequest,
    ) -> BoxFuture<'a, PermissionOutcome> {
        self.asked.lock().unwrap().push(request.clone());
        let outcome = self.outcome.clone();
        Box::pin(async move { outcome })
    }
}

/// Runs a future whose every part is ready at once.
pub(crate) fn ready<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}
