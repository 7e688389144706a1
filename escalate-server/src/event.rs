//! What the server reports about each exec, one way, for logs and result summaries.

use execgate_protocol::{ExecRequest, ExitStatus, Verdict};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// One step in the life of an intercepted exec. Every event carries the exec's `id`
/// (unique within a session, in arrival order), so a consumer can join them. `N` is the
/// policy's note type ([`crate::EscalationPolicy::Note`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent<N = ()> {
    /// A request got its verdict: from the policy's ruling, or from the server itself when
    /// a limit refused it before the policy could rule (then `note` is `None`).
    Decided {
        /// The exec's id.
        id: u64,
        /// The request as the client sent it.
        request: Arc<ExecRequest>,
        /// The program the policy judged: the request's path with symlinks resolved.
        program: PathBuf,
        /// The verdict sent back: the ruling's; Deny when an escalation came after the
        /// session ended; or, without a ruling, the server's Deny, whose reason says which
        /// limit refused it.
        verdict: Verdict,
        /// The ruling's note, as the policy gave it; `None` when the server denied the
        /// request without a ruling (too many decisions of the session were waiting: see
        /// the `serve` module's limits).
        note: Option<N>,
    },
    /// An escalated process was started.
    Started {
        /// The exec's id.
        id: u64,
        /// Its pid (also its process group id).
        pid: i32,
        /// Names of the request's environment variables that it was not given (not on the
        /// allow-list, or with a value that failed its check) although they differ from the
        /// session's, in request order, as raw bytes: why `FOO=1 make` ran without `FOO`.
        /// The session's plumbing and the variables shells keep for themselves (`_`,
        /// `SHLVL`, `OLDPWD`, `PWD`) are not listed.
        env_dropped: Vec<Vec<u8>>,
    },
    /// An escalated process could not be started.
    SpawnFailed {
        /// The exec's id.
        id: u64,
        /// The `errno` of the failure, 0 when there is none.
        errno: i32,
        /// What failed.
        message: String,
    },
    /// An escalated process ended.
    Exited {
        /// The exec's id.
        id: u64,
        /// How it ended.
        status: ExitStatus,
        /// Time from start to exit.
        duration: Duration,
    },
}
