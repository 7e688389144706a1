//! The three verdicts a rule can carry, ordered from least to most strict.

use serde::Serialize;

use crate::error::RuleError;

/// What a matching rule says about a command.
///
/// The derived order is the strictness order: `Allow < Prompt < Forbidden`, so the
/// strictest decision among several matches is their maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The command may run outside the sandbox without asking anyone.
    Allow,
    /// Someone (a hook or a person) must approve the command first.
    Prompt,
    /// The command is refused.
    Forbidden,
}

impl Decision {
    /// Parses the `decision` argument of `prefix_rule`.
    pub fn parse(raw: &str) -> Result<Self, RuleError> {
        match raw {
            "allow" => Ok(Self::Allow),
            "prompt" => Ok(Self::Prompt),
            "forbidden" => Ok(Self::Forbidden),
            other => Err(RuleError(format!(
                "decision must be \"allow\", \"prompt\" or \"forbidden\" (got {other:?})"
            ))),
        }
    }

    /// The spelling used in rule files and in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Prompt => "prompt",
            Self::Forbidden => "forbidden",
        }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
