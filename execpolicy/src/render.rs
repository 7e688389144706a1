//! Writing rules back as Starlark text (for "always allow this" approvals).

use crate::decision::Decision;

/// Why a rule could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A rule needs at least one token.
    #[error("cannot write a rule for an empty command")]
    Empty,
    /// Rule files are UTF-8 Starlark; a non-UTF-8 token can never be matched by a rule.
    #[error("cannot write a rule for argument {position}: it is not valid UTF-8")]
    NotUtf8 {
        /// 0-based argv position of the offending token.
        position: usize,
    },
    /// A justification must say something.
    #[error("a rule's justification cannot be empty")]
    EmptyJustification,
}

/// Renders `prefix_rule(pattern=[...], decision="...")` (one line, no newline) matching
/// exactly the commands that start with `prefix`. The text is what Codex appends for an
/// "always allow" approval, so a rules file amended by either tool reads the same.
pub fn render_prefix_rule<T: AsRef<[u8]>>(
    prefix: &[T],
    decision: Decision,
    justification: Option<&str>,
) -> Result<String, RenderError> {
    if prefix.is_empty() {
        return Err(RenderError::Empty);
    }
    let mut tokens = Vec::with_capacity(prefix.len());
    for (position, token) in prefix.iter().enumerate() {
        let text =
            std::str::from_utf8(token.as_ref()).map_err(|_| RenderError::NotUtf8 { position })?;
        tokens.push(quote(text));
    }
    let mut rule = format!(
        "prefix_rule(pattern=[{}], decision=\"{}\"",
        tokens.join(", "),
        decision.as_str()
    );
    if let Some(text) = justification {
        if text.trim().is_empty() {
            return Err(RenderError::EmptyJustification);
        }
        rule.push_str(", justification=");
        rule.push_str(&quote(text));
    }
    rule.push(')');
    Ok(rule)
}

/// Renders `network_rule(host="...", protocol="...", decision="...")` (one line, no
/// newline) for `host` (canonical text, as [`crate::CanonicalHost::as_text`] gives it) and
/// `protocol`: what an "always" answer about a connection appends to the approvals file.
/// The host is quoted like any other text (it comes from the sandbox).
pub fn render_network_rule(
    host: &str,
    protocol: crate::NetworkProtocol,
    decision: Decision,
) -> String {
    format!(
        "network_rule(host={}, protocol=\"{}\", decision=\"{}\")",
        quote(host),
        protocol.as_str(),
        decision.as_str()
    )
}

/// A Starlark string literal for `text`, written in printable ASCII only.
///
/// The text of a rule often comes from the sandbox (an "always" answer, `policy suggest`), so
/// it is attacker-chosen, and a person reads the file later. Everything outside printable
/// ASCII is escaped (an allow-list, not a list of dangerous characters): a newline cannot end
/// a comment, a bidi override or zero-width character cannot make the rule read differently
/// from what it matches, and the escapes load back to exactly the same string.
pub(crate) fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => push_printable(&mut out, c),
        }
    }
    out.push('"');
    out
}

/// Pushes `c` when it is printable ASCII, else its Starlark escape (`\n`, `\x01`,
/// `\u202e`, `\U0001f600`).
fn push_printable(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        ' '..='~' => out.push(c),
        c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
        c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04x}", c as u32)),
        c => out.push_str(&format!("\\U{:08x}", c as u32)),
    }
}

/// `text` for a `#` comment in a rules file: printable ASCII kept as it is (quotes and
/// backslashes too), everything else escaped as in [`quote`], so the comment stays on its
/// line and reads as what it says.
pub(crate) fn comment_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        push_printable(&mut out, c);
    }
    out
}

/// `text` with everything outside printable ASCII escaped as in [`quote`], without the
/// quotes: for showing text from a rule file or the sandbox inside a one-line message.
pub(crate) fn escaped(text: &str) -> String {
    let quoted = quote(text);
    quoted[1..quoted.len() - 1].to_owned()
}

#[cfg(test)]
mod tests {
    use super::{quote, render_network_rule};
    use crate::{Decision, NetworkProtocol, Policy};

    #[test]
    fn a_rendered_network_rule_loads_back_as_itself() {
        let text = render_network_rule("pypi.org", NetworkProtocol::Https, Decision::Allow);
        assert_eq!(
            text,
            r#"network_rule(host="pypi.org", protocol="https", decision="allow")"#
        );
        let v6 = render_network_rule("2001:db8::1", NetworkProtocol::Socks5Tcp, Decision::Allow);
        let policy = Policy::from_source("a.rules", &format!("{text}\n{v6}\n")).unwrap();
        let rules = policy.network_rules();
        assert_eq!(rules[0].host, "pypi.org");
        assert_eq!(rules[0].protocol, NetworkProtocol::Https);
        assert_eq!(rules[1].host, "2001:db8::1");
        assert_eq!(rules[1].port, None);
    }

    #[test]
    fn quoted_text_is_printable_ascii_on_one_line() {
        let hostile = "a\u{202e}b\u{2028}c\u{200b}\u{7f}\u{1}\n\u{1f600}\"\\é";
        assert_eq!(
            quote(hostile),
            r#""a\u202eb\u2028c\u200b\x7f\x01\n\U0001f600\"\\\u00e9""#
        );
    }
}
