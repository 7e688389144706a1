//! Tool-name matchers of hooks.json groups, with Codex's three forms: match-all (`""`,
//! `"*"`, or no matcher), exact names (`Bash|Write`), and unanchored regexes.

use regex::Regex;

/// A compiled group matcher; it remembers the text it was written as.
#[derive(Debug, Clone)]
pub struct Matcher {
    pattern: String,
    kind: MatcherKind,
}

#[derive(Debug, Clone)]
enum MatcherKind {
    All,
    Exact,
    Regex(Regex),
}

impl Matcher {
    /// Compiles `pattern`; fails only when it is neither match-all, an exact name list,
    /// nor a valid regex.
    pub fn new(pattern: &str) -> Result<Self, regex::Error> {
        let kind = if pattern.is_empty() || pattern == "*" {
            MatcherKind::All
        } else if pattern
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '|')
        {
            MatcherKind::Exact
        } else {
            MatcherKind::Regex(Regex::new(pattern)?)
        };
        Ok(Self {
            pattern: pattern.to_owned(),
            kind,
        })
    }

    /// The matcher as written in the hooks file.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether this matcher selects the tool called `tool_name`.
    pub fn matches(&self, tool_name: &str) -> bool {
        match &self.kind {
            MatcherKind::All => true,
            MatcherKind::Exact => self.pattern.split('|').any(|name| name == tool_name),
            MatcherKind::Regex(regex) => regex.is_match(tool_name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Matcher;

    fn matches(pattern: &str, tool: &str) -> bool {
        Matcher::new(pattern).unwrap().matches(tool)
    }

    #[test]
    fn empty_and_star_match_every_tool() {
        assert!(matches("", "Bash"));
        assert!(matches("*", "Bash"));
        assert!(matches("*", "Write"));
    }

    #[test]
    fn plain_name_is_an_exact_match() {
        assert!(matches("Bash", "Bash"));
        assert!(!matches("Bash", "BashOutput"));
        assert!(!matches("Bas", "Bash"));
    }

    #[test]
    fn pipe_list_matches_each_name_exactly() {
        assert!(matches("Edit|Bash", "Bash"));
        assert!(matches("Edit|Bash", "Edit"));
        assert!(!matches("Edit|Write", "Bash"));
    }

    #[test]
    fn other_patterns_are_unanchored_regexes() {
        assert!(matches("^Ba", "BashOutput"));
        assert!(matches("as.", "Bash"));
        assert!(matches("^Bash$", "Bash"));
        assert!(!matches("^Bash$", "BashOutput"));
    }

    #[test]
    fn invalid_regex_is_rejected() {
        assert!(Matcher::new("[").is_err());
    }
}
