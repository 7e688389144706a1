//! execgate's decision pipeline: for every exec of a session, what the rules say, what the
//! hooks and a person answer, and the ruling the escalation server acts on.
//!
//! The crate knows nothing of argument parsing or of the transport beyond the
//! [`EscalationPolicy`](execgate_escalate_server::EscalationPolicy) trait its [`Pipeline`]
//! implements. A ruling carries its reason: the [`Note`] rides on the value returned to the
//! server, which hands it on, unread, in its `Decided` event.
//!
//! # Vocabulary
//!
//! Three words, used the same way in code, in the README and in the records
//! (`run --json`, the audit log, the MCP result):
//!
//! - **decision**: what the rules say about a command: `allow`, `prompt`, `forbidden`, or
//!   `unmatched` when no rule matched ([`execgate_execpolicy::Decision`]; `None` is
//!   unmatched).
//! - **verdict**: what the server does with the exec: **run** it in place inside the
//!   sandbox, **escalate** it (run it outside), or **deny** it
//!   ([`Verdict`](execgate_escalate_server::Verdict)).
//! - **source**: who settled the verdict: `policy`, `hook`, `user` or `approval-mode`
//!   ([`Source`]); the records also say `server` for an exec the escalation server denied
//!   itself, over a limit, before the pipeline ruled.
//!
//! The [`Note`] gathers the decision, the source, the deciding rule and the justification
//! for one exec; a **ruling** ([`Ruling`](execgate_escalate_server::Ruling)) is the verdict
//! plus its note plus whether the session must end. A person's **choice** ([`Choice`]) and
//! a hook's decision ([`execgate_hooks::HookDecision`], Codex's word in hooks.json) are
//! inputs to the verdict, never records of their own.
//!
//! # Parts
//!
//! - [`pipeline`]: the decision table ([`Pipeline`]).
//! - [`network`]: the same table for the connections of a `--network gated` session
//!   ([`NetworkPipeline`], the network gate's decider).
//! - [`guard`]: may an exec leave the sandbox at all ([`EscalationGuard`]); [`repository`]:
//!   the guard execgate uses (repository trust).
//! - [`hooks`]: how hooks are asked ([`PermissionHooks`]).
//! - [`approver`] and [`terminal`]: who asks a person, and the terminal prompt.
//! - [`remember`]: what "session" and "always" answers leave behind.
//! - [`known_safe`]: the commands approval mode `untrusted` runs without asking.
//! - [`layers`]: the folders rules and hooks are loaded from, and whether a project's
//!   layer is trusted to load.

#![deny(missing_docs)]

pub mod approver;
pub mod guard;
pub mod hooks;
pub mod known_safe;
pub mod layers;
mod mode;
pub mod network;
mod note;
pub mod pipeline;
pub mod remember;
pub mod repository;
mod rules;
pub mod terminal;

pub use approver::{ApprovalRequest, Approver, BoxFuture, Choice, NoApprover, Unavailable};
pub use guard::{AnyMayEscalate, EscalationGuard, Pinned};
pub use hooks::PermissionHooks;
pub use mode::ApprovalMode;
pub use network::{ConnectionOwners, NetworkPipeline, NoOwners};
pub use note::{decision_word, Note, Source};
pub use pipeline::{HookIdentity, Pipeline, SandboxWritable, NO_APPROVER};
pub use remember::SessionApprovals;
pub use repository::{RepositoryGuard, SessionGit};
pub use terminal::TerminalApprover;

#[cfg(test)]
mod network_tests;
#[cfg(test)]
mod scripted;
#[cfg(test)]
mod table_tests;
