//! The escalation guard: the last word on whether an exec may leave the sandbox at all.
//!
//! The pipeline asks it before any hook or person is asked about an exec, and before an
//! `allow` escalates. A refusal never denies: the exec runs inside the sandbox instead
//! (verdict Run), and the note records why in `downgraded`. A `forbidden` rule still
//! denies; the guard is not asked then. A guard that lets an exec out may pin what it
//! checked: the environment entries it gives ([`Pinned`]) are set in the escalated
//! process's environment by the server, over the session's and the request's.

use execgate_escalate_server::ExecContext;

/// Decides whether an exec may leave the sandbox.
///
/// Called on the session's acceptor thread for execs that would escalate, so it must answer
/// at once (no blocking waits; a few file-system checks are fine).
pub trait EscalationGuard: Send + Sync {
    /// `Ok(pinned)` when `exec` may run outside the sandbox, with the environment entries
    /// that hold it to what was checked; `Err(why)` when it must run inside it instead.
    fn may_escalate(&self, exec: &ExecContext) -> Result<Pinned, String>;
}

/// `NAME=value` entries an escalated process gets from the guard (outside the sandbox,
/// never from the request): e.g. the git repository that was checked, so the program
/// cannot find another one planted after the check.
pub type Pinned = Vec<Vec<u8>>;

/// The guard that lets every exec leave the sandbox (the pipeline's default).
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyMayEscalate;

impl EscalationGuard for AnyMayEscalate {
    fn may_escalate(&self, _exec: &ExecContext) -> Result<Pinned, String> {
        Ok(Pinned::new())
    }
}
