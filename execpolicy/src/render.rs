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

/// A Starlark string literal for `text` (JSON string syntax, which Starlark reads).
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
