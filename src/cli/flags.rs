//! The flags `execgate run` and `execgate mcp` share: how a session is set up.

use clap::builder::{OsStringValueParser, TypedValueParser};
use clap::{Args, ValueEnum};
use execgate_decide::ApprovalMode;
use execgate_escalate_server::{check_pass_env, PassEnvError};
use execgate_sandbox::SandboxMode;
use std::ffi::OsString;
use std::path::PathBuf;

/// The flags `execgate run` and `execgate mcp` share.
#[derive(Debug, Args)]
pub struct SessionFlags {
    /// Shell to run commands with: zsh, bash, sh or a path. Default: our patched zsh if
    /// built, else the system bash with the preload shim.
    #[arg(long, value_name = "zsh|bash|sh|PATH")]
    pub shell: Option<String>,
    /// A .rules file (repeatable). Replaces discovery of ~/.config/execgate/rules and
    /// .execgate/rules.
    #[arg(long = "rules", value_name = "FILE")]
    pub rules: Vec<PathBuf>,
    /// A hooks.json file (repeatable). Replaces discovery of ~/.config/execgate/hooks.json
    /// and .execgate/hooks.json.
    #[arg(long = "hooks", value_name = "FILE")]
    pub hooks: Vec<PathBuf>,
    /// Filesystem sandbox for the shell.
    #[arg(long, value_name = "MODE", default_value = "workspace-write",
          value_parser = ["read-only", "workspace-write", "danger-full-access"])]
    pub sandbox: String,
    /// An extra writable folder in workspace-write mode (repeatable).
    #[arg(long = "writable-root", value_name = "DIR")]
    pub writable_roots: Vec<PathBuf>,
    /// Allow network access inside the sandbox.
    #[arg(long)]
    pub network: bool,
    /// Accept that the Landlock fallback cannot keep .git, .execgate and loaded policy files
    /// read-only inside writable roots.
    #[arg(long)]
    pub allow_unprotected_landlock: bool,
    /// Let sandboxed code connect to the host unix socket PATH, e.g. an ssh agent
    /// (repeatable; the socket must exist when the session starts). Every other host
    /// socket is refused.
    #[arg(long = "allow-unix-socket", value_name = "PATH")]
    pub allow_unix_sockets: Vec<PathBuf>,
    /// When to ask a person.
    #[arg(long, value_enum, default_value = "on-request")]
    pub approval: Approval,
    /// Let escalated commands keep the shell's value of variable NAME (repeatable). They
    /// otherwise start from execgate's own environment plus a few checked display
    /// variables (TERM, LANG, LC_*, COLUMNS, LINES, TZ, NO_COLOR, FORCE_COLOR, CLICOLOR).
    #[arg(long = "pass-env", value_name = "NAME",
          value_parser = OsStringValueParser::new().try_map(pass_env_name))]
    pub pass_env: Vec<OsString>,
    /// Append one JSON line per intercepted exec to FILE.
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
}

/// A `--pass-env` value: a name escalated commands may be given (checked before any
/// session starts, so a bad one stops execgate with the flag named).
fn pass_env_name(value: OsString) -> Result<OsString, PassEnvError> {
    check_pass_env(&value)?;
    Ok(value)
}

impl SessionFlags {
    /// The sandbox mode named by `--sandbox`.
    pub fn sandbox_mode(&self) -> SandboxMode {
        match self.sandbox.as_str() {
            "read-only" => SandboxMode::ReadOnly,
            "danger-full-access" => SandboxMode::DangerFullAccess,
            _ => SandboxMode::WorkspaceWrite,
        }
    }
}

/// `--approval` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Approval {
    /// Never ask: commands needing approval are denied.
    Never,
    /// Ask when a rule says `prompt` (the default).
    OnRequest,
    /// Also ask for commands no rule matched, unless they are known safe.
    Untrusted,
}

impl From<Approval> for ApprovalMode {
    fn from(value: Approval) -> Self {
        match value {
            Approval::Never => ApprovalMode::Never,
            Approval::OnRequest => ApprovalMode::OnRequest,
            Approval::Untrusted => ApprovalMode::Untrusted,
        }
    }
}
