//! Errors raised while loading rule files.

use std::path::PathBuf;

use crate::rule::SourceLocation;

/// A rule file could not be loaded. Every variant renders as one line.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read rules file {}", path.display())]
    Read {
        /// The file that failed.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The file is not UTF-8 text (Starlark source must be).
    #[error("{}: rules file is not valid UTF-8 text", path.display())]
    NotUtf8 {
        /// The file that failed.
        path: PathBuf,
    },
    /// A syntax, type or validation error at a known place in a rule file.
    #[error("{location}: {message}")]
    Located {
        /// Where in the file the error is.
        location: SourceLocation,
        /// What is wrong and what to write instead.
        message: String,
    },
    /// An error Starlark could not place in the file.
    #[error("{file}: {message}")]
    Unlocated {
        /// The rule file's name as given to the loader.
        file: String,
        /// What is wrong.
        message: String,
    },
}

/// A message raised by a builtin (`prefix_rule`, `host_executable`, `network_rule`); Starlark
/// attaches the call's location to it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);
