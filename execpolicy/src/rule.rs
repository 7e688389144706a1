//! Rule values built by the loader: prefix rules, network rules and their source locations.

use std::fmt;
use std::sync::Arc;

use crate::decision::Decision;
use crate::error::RuleError;
use crate::render::quote;

/// A place in a rule file: file name as given to the loader, 1-based line and column.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SourceLocation {
    /// The rule file's name (the path it was loaded from, or the name given to
    /// [`crate::Policy::from_source`]).
    pub file: Arc<str>,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One position of a prefix pattern: a literal token or a set of alternatives. Displayed as
/// Starlark text in printable ASCII (see [`crate::render_prefix_rule`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PatternToken {
    /// Exactly this token.
    Single(Box<str>),
    /// Any one of these tokens (at least two).
    Alts(Box<[Box<str>]>),
}

impl PatternToken {
    /// Returns the pattern text equal to `token`, if any. Non-UTF-8 bytes never equal a
    /// pattern string, so they never match.
    #[inline]
    pub fn matching(&self, token: &[u8]) -> Option<&str> {
        match self {
            Self::Single(expected) => (expected.as_bytes() == token).then_some(&**expected),
            Self::Alts(alts) => alts
                .iter()
                .find(|alt| alt.as_bytes() == token)
                .map(|alt| &**alt),
        }
    }

    /// The accepted tokens at this position.
    pub fn alternatives(&self) -> &[Box<str>] {
        match self {
            Self::Single(expected) => std::slice::from_ref(expected),
            Self::Alts(alts) => alts,
        }
    }
}

impl fmt::Display for PatternToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Single(token) => f.write_str(&quote(token)),
            Self::Alts(alts) => {
                f.write_str("[")?;
                for (i, alt) in alts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    f.write_str(&quote(alt))?;
                }
                f.write_str("]")
            }
        }
    }
}

/// A `prefix_rule(...)`: a pattern matched against the start of argv, and its verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixRule {
    /// The pattern, one entry per argv position; never empty.
    pub pattern: Box<[PatternToken]>,
    /// What the rule decides when it matches.
    pub decision: Decision,
    /// Why the rule exists; shown in prompts and denials.
    pub justification: Option<String>,
    /// Where the `prefix_rule(...)` call is.
    pub source: SourceLocation,
}

impl PrefixRule {
    /// Matches argv positions `1..` against the pattern's positions `1..`, given the text that
    /// the first position matched. Returns the matched prefix.
    #[inline]
    pub(crate) fn match_rest<T: AsRef<[u8]>>(
        &self,
        first: &str,
        argv: &[T],
    ) -> Option<Vec<String>> {
        let len = self.pattern.len();
        if argv.len() < len {
            return None;
        }
        let rest = &self.pattern[1..];
        let args = &argv[1..len];
        // Check before allocating: most candidate rules do not match.
        if !rest
            .iter()
            .zip(args)
            .all(|(token, arg)| token.matching(arg.as_ref()).is_some())
        {
            return None;
        }
        let mut prefix = Vec::with_capacity(len);
        prefix.push(first.to_owned());
        for (token, arg) in rest.iter().zip(args) {
            prefix.push(token.matching(arg.as_ref())?.to_owned());
        }
        Some(prefix)
    }

    /// Matches the whole pattern against `argv` literally (no basename fallback).
    pub(crate) fn match_argv<T: AsRef<[u8]>>(&self, argv: &[T]) -> Option<Vec<String>> {
        let first = self.pattern.first()?.matching(argv.first()?.as_ref())?;
        self.match_rest(first, argv)
    }

    /// The pattern as Starlark list text, e.g. `["git", ["push", "pull"]]`.
    pub fn pattern_text(&self) -> String {
        let mut out = String::from("[");
        for (i, token) in self.pattern.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&token.to_string());
        }
        out.push(']');
        out
    }
}

/// The protocol a `network_rule` applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NetworkProtocol {
    /// Plain HTTP.
    Http,
    /// HTTPS / HTTP CONNECT (`https`, `https_connect`, `http-connect`).
    Https,
    /// SOCKS5 TCP.
    Socks5Tcp,
    /// SOCKS5 UDP.
    Socks5Udp,
}

impl NetworkProtocol {
    /// Parses the `protocol` argument of `network_rule`.
    pub fn parse(raw: &str) -> Result<Self, RuleError> {
        match raw {
            "http" => Ok(Self::Http),
            "https" | "https_connect" | "http-connect" => Ok(Self::Https),
            "socks5_tcp" => Ok(Self::Socks5Tcp),
            "socks5_udp" => Ok(Self::Socks5Udp),
            other => Err(RuleError(format!(
                "network_rule: protocol must be \"http\", \"https\", \"socks5_tcp\" or \"socks5_udp\" (got {other:?})"
            ))),
        }
    }

    /// The canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
            Self::Socks5Tcp => "socks5_tcp",
            Self::Socks5Udp => "socks5_udp",
        }
    }
}

/// A `network_rule(...)`: parsed and validated; [`crate::Policy::check_network`] matches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkRule {
    /// Lowercased host name or IP literal, without port, brackets or trailing dot.
    pub host: String,
    /// The port written after the host (`example.com:8443`), if any. Matching ignores it,
    /// as Codex does; the network gate uses it to know which ports to capture.
    pub port: Option<u16>,
    /// The protocol the rule covers.
    pub protocol: NetworkProtocol,
    /// `allow`, `prompt` or `forbidden` (`deny` is read as `forbidden`).
    pub decision: Decision,
    /// Why the rule exists.
    pub justification: Option<String>,
    /// Where the `network_rule(...)` call is.
    pub source: SourceLocation,
}

/// Parses the `decision` argument of `network_rule`, which also accepts `deny`.
pub(crate) fn parse_network_decision(raw: &str) -> Result<Decision, RuleError> {
    match raw {
        "deny" => Ok(Decision::Forbidden),
        "allow" => Ok(Decision::Allow),
        "prompt" => Ok(Decision::Prompt),
        "forbidden" => Ok(Decision::Forbidden),
        other => Err(RuleError(format!(
            "network_rule: decision must be \"allow\", \"deny\", \"prompt\" or \"forbidden\" (got {other:?})"
        ))),
    }
}

/// Normalizes a `network_rule` host: trims, strips a port and IPv6 brackets and a trailing
/// dot, lowercases; rejects schemes, paths, wildcards, whitespace and empty hosts. Returns
/// the host and the port it named (when that port is 1 to 65535).
pub(crate) fn normalize_network_host(raw: &str) -> Result<(String, Option<u16>), RuleError> {
    let err = |what: &str| RuleError(format!("network_rule: host {what} (got {raw:?})"));
    let mut host = raw.trim();
    let mut port = None;
    if host.is_empty() {
        return Err(err("cannot be empty"));
    }
    if host.contains("://") || host.contains(['/', '?', '#']) {
        return Err(err(
            "must be a bare hostname or IP literal, without scheme or path; write e.g. host = \"example.com\"",
        ));
    }
    if let Some(bracketed) = host.strip_prefix('[') {
        let Some((inside, rest)) = bracketed.split_once(']') else {
            return Err(err("has an unterminated [IPv6] literal"));
        };
        let port_ok = rest.is_empty()
            || rest
                .strip_prefix(':')
                .is_some_and(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
        if !port_ok {
            return Err(err("has an unsupported suffix after the [IPv6] literal"));
        }
        port = rest.strip_prefix(':').and_then(|p| p.parse().ok());
        host = inside;
    } else if host.matches(':').count() == 1 {
        if let Some((name, digits)) = host.rsplit_once(':') {
            if !name.is_empty() && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
            {
                host = name;
                port = digits.parse().ok();
            }
        }
    }
    let normalized = host.trim_end_matches('.').trim().to_ascii_lowercase();
    if normalized.is_empty() {
        return Err(err("cannot be empty"));
    }
    if normalized.contains('*') {
        return Err(err("must name one host; wildcards are not allowed"));
    }
    if normalized.chars().any(char::is_whitespace) {
        return Err(err("cannot contain whitespace"));
    }
    Ok((normalized, port.filter(|&p| p != 0)))
}
