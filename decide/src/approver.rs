//! The approver: the person asked when a rule says `prompt` and no hook decided.
//!
//! [`Approver`] is the seam: the terminal approver ([`crate::terminal`]) asks on
//! `/dev/tty`; the MCP server asks its client with an elicitation. An approver only
//! answers; what an answer does (run once, remember a prefix, write a rule, end the
//! session) is the pipeline's business.

use execgate_protocol::display;
use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future (the approver trait is used as a trait object).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the person is shown. Every field is display text, escaped with
/// [`execgate_protocol::display`] when the request is made, so an approver can show it as
/// it is: no control, bidi or invisible character chosen inside the sandbox survives into
/// it (design invariant 7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequest {
    command: String,
    cwd: String,
    rule: Option<String>,
    justification: Option<String>,
    description: Option<String>,
    can_remember: bool,
    network: Option<String>,
}

impl ApprovalRequest {
    /// The request for running `program` with `args` (argv[1..]) in `cwd`, asked by the
    /// rule at `rule` (`file:line`) with its `justification`; `can_remember` offers
    /// "always". Everything is escaped here.
    pub fn new<'a>(
        program: &[u8],
        args: impl IntoIterator<Item = &'a [u8]>,
        cwd: &[u8],
        rule: Option<&str>,
        justification: Option<&str>,
        can_remember: bool,
    ) -> Self {
        Self {
            command: display::command_string(program, args),
            cwd: display::text_string(cwd),
            rule: rule.map(|r| display::text_string(r.as_bytes())),
            justification: justification.map(|j| display::text_string(j.as_bytes())),
            description: None,
            can_remember,
            network: None,
        }
    }

    /// The request for a connection to `target` (`protocol://host:port`) opened by the exec
    /// whose command line is `command` (or the session's script), in the session's `cwd`;
    /// `rule` and `justification` are the `network_rule` that said `prompt`, if one did;
    /// `can_remember` offers "always" (a `network_rule` in the approvals file). Everything
    /// is escaped here: the command line, the host and the rule file are the sandbox's.
    pub fn for_connection(
        command: &str,
        cwd: &[u8],
        target: &str,
        rule: Option<&str>,
        justification: Option<&str>,
        can_remember: bool,
    ) -> Self {
        Self {
            command: display::text_string(command.as_bytes()),
            cwd: display::text_string(cwd),
            rule: rule.map(|r| display::text_string(r.as_bytes())),
            justification: justification.map(|j| display::text_string(j.as_bytes())),
            description: None,
            can_remember,
            network: Some(display::text_string(target.as_bytes())),
        }
    }

    /// The same request with the agent's `description` of why it runs the command (the MCP
    /// tool's `justification`), escaped: the model wrote it.
    pub fn with_description(mut self, description: Option<&str>) -> Self {
        self.description = description.map(|d| display::text_string(d.as_bytes()));
        self
    }

    /// The command: absolute program path and argv[1..], each word shell-quoted, escaped.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// The working directory it would run in, escaped.
    pub fn cwd(&self) -> &str {
        &self.cwd
    }

    /// Where the rule that asked is written (`file:line`), escaped; `None` when no rule
    /// asked.
    pub fn rule(&self) -> Option<&str> {
        self.rule.as_deref()
    }

    /// The rule's justification, escaped, if it has one.
    pub fn justification(&self) -> Option<&str> {
        self.justification.as_deref()
    }

    /// Why the agent says it runs the command, escaped, if it said.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Whether "always" can be offered (it needs a rule prefix and a user rules file).
    pub fn can_remember(&self) -> bool {
        self.can_remember
    }

    /// Set when the question is about a connection, not an exec: its destination,
    /// `protocol://host:port`, escaped. [`Self::command`] is then the exec that opened it
    /// (or the session's script), and "session" and "always" allow the host for that
    /// protocol.
    pub fn network(&self) -> Option<&str> {
        self.network.as_deref()
    }
}

/// The person's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Run this command (open this connection) once.
    Once,
    /// Allow the rule's prefix (the connection's host) for the rest of the session.
    Session,
    /// Allow the prefix (the host) from now on: write a rule to the user rules file.
    Always,
    /// Deny this command.
    Deny,
    /// Deny this command and end the whole session.
    DenyAndEnd,
    /// Denied by something not known to be a person (an MCP client answers the same
    /// whether its user declined or it declined by itself): `reason` says who, and `end`
    /// ends the session too.
    Refused {
        /// The denial reason reported.
        reason: String,
        /// Whether the session ends as well.
        end: bool,
    },
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
