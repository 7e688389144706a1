//! The Starlark `.rules` policy language: load rule files, validate their examples, and
//! evaluate a command to allow / prompt / forbidden with the rules that matched.
//!
//! Pure library: no I/O beyond reading rule files, and appending a rule to one
//! ([`amend`], for "always allow this" answers). Rule files written for the Codex CLI
//! (`prefix_rule`, `host_executable`, `network_rule`) load and decide identically, and
//! [`Evaluation::to_codex_json`] prints what `codex execpolicy check` prints.
//!
//! ```
//! use execgate_execpolicy::{CheckOptions, Decision, Policy};
//!
//! let policy = Policy::from_source(
//!     "example.rules",
//!     r#"prefix_rule(pattern = ["git", "push"], decision = "prompt", match = ["git push origin"])"#,
//! )?;
//! let evaluation = policy.check(&["git", "push", "origin"], &CheckOptions::default());
//! assert_eq!(evaluation.decision, Some(Decision::Prompt));
//! assert_eq!(evaluation.matched[0].source.line, 1);
//! # Ok::<(), execgate_execpolicy::PolicyError>(())
//! ```

#![warn(missing_docs)]

pub mod amend;
mod decision;
mod error;
mod explain;
pub mod lint;
mod loader;
mod network;
mod paths;
mod policy;
mod render;
mod rule;
pub mod suggest;

pub use amend::AmendError;
pub use decision::Decision;
pub use error::{PolicyError, RuleError};
pub use explain::{Explanation, Fallback, MatchVia, RuleExplanation, RuleStatus};
pub use loader::{ExampleKind, ExampleOutcome, PolicyLoader};
pub use network::{
    canonical_host, canonical_ip, is_public, non_public_reason, parse_ipv4_literal, CanonicalHost,
    NetworkEvaluation, MAX_HOST_NAME_LEN,
};
pub use policy::{CheckOptions, Evaluation, Policy, RuleMatch};
pub use render::{render_network_rule, render_prefix_rule, RenderError};
pub use rule::{NetworkProtocol, NetworkRule, PatternToken, PrefixRule, SourceLocation};
