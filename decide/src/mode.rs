//! Approval modes: when a person is asked.

/// When a person is asked. (The command line maps its own flag values onto this; the
/// pipeline knows nothing of argument parsing.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApprovalMode {
    /// Never ask: commands needing approval are denied.
    Never,
    /// Ask when a rule says `prompt` (the default).
    #[default]
    OnRequest,
    /// Also ask for commands no rule matched, unless they are known safe.
    Untrusted,
}
