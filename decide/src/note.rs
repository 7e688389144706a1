//! The note a ruling carries: why an exec got its verdict, for the records.
//!
//! The pipeline writes it; the escalation server carries it, unread, to its `Decided`
//! event; the session's recorder copies it into the exec's record. What the server learns
//! later (an escalated process's start, exit, or the request variables it did not pass
//! on) travels in the server's own events, never in the note.

use execgate_execpolicy::Decision;
use serde::Serialize;

/// Who settled the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The rules, the absence of a matching rule, or execgate's own safety checks (a
    /// refused escalation: see [`Note::downgraded`]).
    Policy,
    /// A `PermissionRequest` hook.
    Hook,
    /// A person (or the absence of one to ask).
    User,
    /// The approval mode (`never` turns prompts into denials).
    ApprovalMode,
    /// The escalation server itself, without a ruling: a limit refused the exec before
    /// the pipeline settled it (too many decisions of the session were waiting). The
    /// pipeline never gives this source; the records use it.
    Server,
}

impl Source {
    /// The word used in `run --json`, the audit log and the MCP result.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Policy => "policy",
            Source::Hook => "hook",
            Source::User => "user",
            Source::ApprovalMode => "approval-mode",
            Source::Server => "server",
        }
    }
}

/// Why an exec got its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// What the rules said; `None` when no rule matched (`unmatched` in the records).
    pub decision: Option<Decision>,
    /// Who settled the verdict.
    pub source: Source,
    /// Where the deciding rule is written (`file:line`), if a rule decided.
    pub rule: Option<String>,
    /// The rule's justification, or the reason for a denial.
    pub justification: Option<String>,
    /// Set when the exec would have left the sandbox but the escalation guard refused it,
    /// so it runs inside instead: the guard's reason.
    pub downgraded: Option<String>,
}

/// The word the records use for a rules decision: `allow`, `prompt`, `forbidden`, or
/// `unmatched` when no rule matched.
pub fn decision_word(decision: Option<Decision>) -> &'static str {
    decision.map_or("unmatched", Decision::as_str)
}
