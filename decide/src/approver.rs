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

/// How many bytes of the command [`ApprovalRequest::first_words`] keeps.
const FIRST_WORDS: usize = 40;

/// How many bytes of a prefix [`ApprovalRequest::prefix`] keeps.
const PREFIX_LIMIT: usize = 32;

/// What the person is shown. Every field is display text, escaped with
/// [`execgate_protocol::display`] when the request is made, so an approver can show it as
/// it is: no control, bidi or invisible character chosen inside the sandbox survives into
/// it, and every field is bounded, so nothing can push the rest off a screen (design
/// invariant 7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequest {
    command: String,
    first_words: String,
    arguments: usize,
    prefix: Option<String>,
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
    /// "always". Everything is escaped and bounded here.
    pub fn new<'a, A>(
        program: &[u8],
        args: A,
        cwd: &[u8],
        rule: Option<&str>,
        justification: Option<&str>,
        can_remember: bool,
    ) -> Self
    where
        A: IntoIterator<Item = &'a [u8]>,
        A::IntoIter: Clone,
    {
        let args = args.into_iter();
        let full = display::command_string(program, args.clone());
        let first_words = if full.len() > FIRST_WORDS {
            format!("{} ...", &full[..floor_char(&full, FIRST_WORDS)])
        } else {
            full
        };
        Self {
            command: display::command_string_within(program, args.clone(), display::COMMAND_LIMIT),
            first_words,
            arguments: args.count(),
            prefix: None,
            cwd: display::text_string_within(cwd, display::TEXT_LIMIT),
            rule: rule.map(|r| display::text_string_within(r.as_bytes(), display::TEXT_LIMIT)),
            justification: justification
                .map(|j| display::text_string_within(j.as_bytes(), display::TEXT_LIMIT)),
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
        let command = display::text_string_within(command.as_bytes(), display::COMMAND_LIMIT);
        Self {
            first_words: command.clone(),
            command,
            arguments: 0,
            prefix: None,
            cwd: display::text_string_within(cwd, display::TEXT_LIMIT),
            rule: rule.map(|r| display::text_string_within(r.as_bytes(), display::TEXT_LIMIT)),
            justification: justification
                .map(|j| display::text_string_within(j.as_bytes(), display::TEXT_LIMIT)),
            description: None,
            can_remember,
            network: Some(display::text_string_within(
                target.as_bytes(),
                display::TEXT_LIMIT,
            )),
        }
    }

    /// The same request with the agent's `description` of why it runs the command (the MCP
    /// tool's `justification`), escaped: the model wrote it.
    pub fn with_description(mut self, description: Option<&str>) -> Self {
        self.description =
            description.map(|d| display::text_string_within(d.as_bytes(), display::TEXT_LIMIT));
        self
    }

    /// The same request naming the `prefix` that "session" and "always" allow (empty:
    /// nothing is remembered), each word quoted as argv is, bounded.
    pub fn with_prefix(mut self, prefix: &[String]) -> Self {
        self.prefix = (!prefix.is_empty()).then(|| {
            let mut words = prefix.iter().map(|w| w.as_bytes());
            let first = words.next().unwrap_or_default();
            display::command_string_within(first, words, PREFIX_LIMIT)
        });
        self
    }

    /// The command: absolute program path and argv[1..], each word shell-quoted, escaped,
    /// at most [`display::COMMAND_LIMIT`] bytes of it.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// The start of the command (program and first words, escaped), short enough for one
    /// line, with ` ...` when cut.
    pub fn first_words(&self) -> &str {
        &self.first_words
    }

    /// How many arguments (argv[1..]) the command has.
    pub fn arguments(&self) -> usize {
        self.arguments
    }

    /// The prefix "session" and "always" allow, quoted; `None` when nothing is remembered.
    pub fn prefix(&self) -> Option<&str> {
        self.prefix.as_deref()
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

/// The largest character boundary of `text` at or before `at`.
fn floor_char(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
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
