//! The escalation server: session setup (socket, environment, shell spawn), the server side
//! of the wire protocol, and execution of escalated commands outside the sandbox.
//!
//! A [`Session`] is a shell whose every `execve` is sent to this server, which asks an
//! [`EscalationPolicy`] for a [`Ruling`]: a [`Verdict`] (Run: the shell's process execs in
//! place; Escalate: the server runs the program itself, wired to the caller's fds; Deny),
//! the policy's note on why, and whether the session must end. What happened is reported
//! one way, as [`ExecEvent`]s on a channel; the `Decided` event carries the note, which the
//! server never reads.
//!
//! An escalated process takes nothing from the sandbox but its argv (with `argv[0]` the
//! path that was judged), its working directory (opened once) and the fds it was given;
//! its environment is the session's own plus a short, value-checked list of request
//! variables (see `env`).
//!
//! The server never trusts its clients: frames are size-checked before anything is
//! allocated, anything malformed closes only that client's stream (the client then fails
//! closed), and a client that has to wait (for its own bytes, a decision, an escalated
//! process) waits in a task of its own, so a stalled client blocks nobody; how many may
//! wait, and for how long, is bounded per session, so a flood of streams cannot exhaust
//! the server's file descriptors (the client of a refused stream fails closed). Execs that need
//! no waiting are served start to finish by the session's acceptor thread, without a
//! runtime round trip. Dropping a [`Session`] kills the shell's process group and every
//! escalated process group.
//!
//! Must be used inside a Tokio runtime (multi-threaded or current-thread, with I/O and
//! time enabled). Linux only for now.

#![deny(missing_docs)]

#[cfg(target_os = "linux")]
mod direct;
mod env;
mod event;
mod invoked;
mod policy;
#[cfg(target_os = "linux")]
mod serve;
#[cfg(target_os = "linux")]
mod session;
#[cfg(target_os = "linux")]
mod spawn;
#[cfg(target_os = "linux")]
mod stream;

/// The attribute to implement [`EscalationPolicy`] with an `async fn` (re-exported, so
/// implementors need no dependency of their own).
pub use async_trait::async_trait;
#[cfg(target_os = "linux")]
pub use direct::{direct_exec_denial, DirectAnswer, DirectExecs, FileId};
pub use env::{check_pass_env, PassEnvError};
pub use event::ExecEvent;
pub use execgate_protocol::{ExecRequest, ExitStatus, Verdict};
pub use policy::{Argv0, CwdDir, EscalationPolicy, ExecContext, Ruling, WritablePaths};
#[cfg(target_os = "linux")]
pub use session::{
    DirectLauncher, Interception, Launch, Launcher, Monitor, Session, SessionBuilder, SessionError,
};
