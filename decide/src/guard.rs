//! The escalation guard: the last word on whether an exec may leave the sandbox at all.
//!
//! The pipeline asks it before any hook or person is asked about an exec, and before an
//! `allow` escalates. A refusal never denies: the exec runs inside the sandbox instead
//! (verdict Run), and the note records why in `downgraded`. A `forbidden` rule still
//! denies; the guard is not asked then.

use execgate_escalate_server::ExecContext;

/// Decides whether an exec may leave the sandbox.
///
/// Called on the session's acceptor thread for execs that would escalate, so it must answer
/// at once (no blocking waits; a few file-system checks are fine).
pub trait EscalationGuard: Send + Sync {
    /// `Ok(())` when `exec` may run outside the sandbox; `Err(why)` when it must run
    /// inside it instead.
    fn may_escalate(&self, exec: &ExecContext) -> Result<(), String>;
}

/// The guard that lets every exec leave the sandbox (the pipeline's default).
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyMayEscalate;

impl EscalationGuard for AnyMayEscalate {
    fn may_escalate(&self, _exec: &ExecContext) -> Result<(), String> {
        Ok(())
    }
}
