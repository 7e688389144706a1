//! The approver: the person asked when a rule says `prompt` and no hook decided.
//!
//! [`Approver`] is the seam: the terminal approver ([`crate::terminal`]) asks on
//! `/dev/tty`; the MCP server asks its client with an elicitation. An approver only
//! answers; what an answer does (run once, remember a prefix, write a rule, end the
//! session) is the pipeline's business.

use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future (the approver trait is used as a trait object).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the person is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequest {
    /// The command: absolute program path and argv[1..], shell-quoted.
    pub command: String,
    /// The working directory it would run in.
    pub cwd: String,
    /// Where the rule that asked is written (`file:line`), when a rule asked.
    pub rule: Option<String>,
    /// The rule's justification, if it has one.
    pub justification: Option<String>,
    /// Whether "always" can be offered (it needs a rule prefix and a user rules file).
    pub can_remember: bool,
}

/// The person's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Run this command once.
    Once,
    /// Allow the rule's prefix for the rest of the session.
    Session,
    /// Allow the prefix from now on: write a rule to the user rules file.
    Always,
    /// Deny this command.
    Deny,
    /// Deny this command and end the whole session.
    DenyAndEnd,
}

/// Why no answer could be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// Nobody can be asked (no terminal, or a client without elicitation).
    NoApprover(String),
}

/// Someone who can approve or deny a command.
pub trait Approver: Send + Sync {
    /// Asks about one command. Callers may ask concurrently; implementations ask one at a
    /// time.
    fn ask<'a>(
        &'a self,
        request: &'a ApprovalRequest,
    ) -> BoxFuture<'a, Result<Choice, Unavailable>>;
}

/// An approver nobody stands behind: every question is answered "unavailable".
pub struct NoApprover {
    /// The denial reason reported.
    pub reason: String,
}

impl Approver for NoApprover {
    fn ask<'a>(
        &'a self,
        _request: &'a ApprovalRequest,
    ) -> BoxFuture<'a, Result<Choice, Unavailable>> {
        Box::pin(async move { Err(Unavailable::NoApprover(self.reason.clone())) })
    }
}
