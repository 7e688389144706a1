//! The flags `execgate run` and `execgate mcp` share: how a session is set up.

pub use crate::session::network::NetworkMode;
use clap::builder::{OsStringValueParser, TypedValueParser};
use clap::{Args, ValueEnum};
use execgate_decide::ApprovalMode;
use execgate_escalate_server::{check_pass_env, PassEnvError};
use execgate_netgate::ResolveOverrides;
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
    /// Network access from the sandbox.
    #[command(flatten)]
    pub network: NetworkFlags,
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

/// `--network` and `--network-resolve`: what the sandbox may reach (shared by `run`, `mcp`
/// and `sandbox check`).
#[derive(Debug, Args)]
pub struct NetworkFlags {
    /// off: no network; gated: every new host a program connects to is decided by the
    /// network_rules, hooks and a person (the default with a sandbox); on: unrestricted
    /// (the default, and the only choice, in danger-full-access).
    #[arg(long = "network", value_name = "off|gated|on", num_args = 0..=1,
          default_missing_value = "", value_parser = parse_network)]
    pub mode: Option<NetworkMode>,
    /// Resolve NAME to ADDR in the network gate instead of asking the system resolver, like
    /// curl's --resolve (repeatable; a testing and air-gapped aid). Local and private
    /// addresses are allowed for the names given this way.
    #[arg(long = "network-resolve", value_name = "NAME:ADDR", value_parser = parse_resolve)]
    pub resolve: Vec<String>,
}

fn parse_network(value: &str) -> Result<NetworkMode, String> {
    match value {
        "off" => Ok(NetworkMode::Off),
        "gated" => Ok(NetworkMode::Gated),
        "on" => Ok(NetworkMode::On),
        "" => Err("--network needs a value: write --network on for the old bare --network (or off, or gated)".to_owned()),
        other => Err(format!(
            "--network takes off, gated or on, not {other:?} (a bare --network would take the next word: write --network on)"
        )),
    }
}

fn parse_resolve(value: &str) -> Result<String, String> {
    ResolveOverrides::default()
        .add_entry(value)
        .map_err(|e| e.to_string())?;
    Ok(value.to_owned())
}

impl NetworkFlags {
    /// The mode for a session in `sandbox`: as given, else `gated` with a sandbox and `on`
    /// without. Refuses `off` and `gated` without a sandbox (nothing could enforce them).
    pub fn mode_for(&self, sandbox: SandboxMode) -> anyhow::Result<NetworkMode> {
        match (sandbox, self.mode) {
            (SandboxMode::DangerFullAccess, None | Some(NetworkMode::On)) => Ok(NetworkMode::On),
            (SandboxMode::DangerFullAccess, Some(mode)) => anyhow::bail!(
                "--network {} needs a sandbox, and --sandbox danger-full-access has none: pass --sandbox workspace-write or --network on",
                mode.as_str()
            ),
            (_, Some(mode)) => Ok(mode),
            (_, None) => Ok(NetworkMode::Gated),
        }
    }

    /// The `--network-resolve` entries.
    pub fn overrides(&self) -> ResolveOverrides {
        let mut overrides = ResolveOverrides::default();
        for entry in &self.resolve {
            // Checked when parsed.
            let _ = overrides.add_entry(entry);
        }
        overrides
    }
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
