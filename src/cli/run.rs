//! `execgate run`: run a script in an intercepted, sandboxed shell.

use crate::approver::{Approver, NoApprover, OutputGate, TerminalApprover};
use crate::pipeline::ApprovalMode;
use crate::session_runner::{
    discover_rules, run_session, user_rules_file, Install, OutputMode, RunConfig,
};
use anyhow::Context;
use clap::Args;
use execgate_execpolicy::Policy;
use execgate_hooks::HooksConfig;
use execgate_sandbox::{BackendChoice, Sandbox, SandboxMode, SandboxPolicy};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The flags `execgate run` and `execgate mcp` share: how a session is set up.
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
    /// When to ask a person.
    #[arg(long, value_enum, default_value = "on-request")]
    pub approval: ApprovalMode,
    /// Append one JSON line per intercepted exec to FILE.
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
}

/// Arguments of `execgate run`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: the shell's own; 130 when a hook or a person ended the \
session; 124 on timeout; 2 when execgate could not start the session."
)]
pub struct RunArgs {
    #[command(flatten)]
    session: SessionFlags,
    /// Working directory of the shell (default: the current one).
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
    /// Kill the whole session after SECS seconds (time waiting for a person excluded).
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Run the shell as a login shell (-lc instead of -c).
    #[arg(long)]
    login: bool,
    /// Print one JSON result object instead of streaming the output.
    #[arg(long)]
    json: bool,
    /// Print which sandbox backend is active and what it enforces, on stderr.
    #[arg(long, short)]
    verbose: bool,
    /// Shell code to run (passed to the shell with -c).
    #[arg(value_name = "SCRIPT")]
    script: String,
}

/// Loads the rules: explicit files, or discovery.
pub fn load_policy(
    explicit: &[PathBuf],
    cwd: &Path,
    home: Option<&Path>,
) -> anyhow::Result<(Arc<Policy>, Vec<PathBuf>)> {
    let files = if explicit.is_empty() {
        discover_rules(cwd, home)
    } else {
        explicit.to_vec()
    };
    // The error already reads `file:line:col: message`.
    let policy = Policy::from_files(&files).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((Arc::new(policy), files))
}

/// Loads the hooks: explicit files, or discovery. Warnings go to stderr.
pub fn load_hooks(
    explicit: &[PathBuf],
    cwd: &Path,
    home: Option<&Path>,
) -> anyhow::Result<(Arc<HooksConfig>, Vec<PathBuf>)> {
    let files = if explicit.is_empty() {
        HooksConfig::discover(cwd, home)
    } else {
        explicit.to_vec()
    };
    let (hooks, warnings) = HooksConfig::load(&files).map_err(|e| anyhow::anyhow!("{e}"))?;
    for warning in warnings {
        eprintln!("execgate: warning: {warning}");
    }
    Ok((Arc::new(hooks), files))
}

/// `$HOME`, when set and not empty.
pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// The sandbox mode named by `--sandbox` (`workspace-write` for anything unknown).
pub fn sandbox_mode(name: &str) -> SandboxMode {
    match name {
        "read-only" => SandboxMode::ReadOnly,
        "danger-full-access" => SandboxMode::DangerFullAccess,
        _ => SandboxMode::WorkspaceWrite,
    }
}

/// What the sandbox keeps read-only: every loaded rules and hooks file, and the user's
/// approvals file.
pub fn protected_paths(
    rule_files: &[PathBuf],
    hook_files: &[PathBuf],
    home: Option<&Path>,
) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = rule_files.iter().chain(hook_files).cloned().collect();
    if let Some(user_rules) = user_rules_file(home) {
        paths.push(user_rules);
    }
    paths
}

/// Runs `execgate run`.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let cwd = match &args.cwd {
        Some(dir) => dir.clone(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let cwd = cwd
        .canonicalize()
        .with_context(|| format!("working directory {} does not exist", cwd.display()))?;
    let home = home_dir();
    let (policy, rule_files) = load_policy(&args.session.rules, &cwd, home.as_deref())?;
    let (hooks, hook_files) = load_hooks(&args.session.hooks, &cwd, home.as_deref())?;
    let install = Install::locate()?;
    let shell = install.shell(args.session.shell.as_deref())?;

    let mut sandbox_policy = SandboxPolicy::new(sandbox_mode(&args.session.sandbox), &cwd);
    sandbox_policy.writable_roots = args.session.writable_roots.clone();
    sandbox_policy.network = args.session.network;
    sandbox_policy.allow_unprotected_landlock = args.session.allow_unprotected_landlock;
    sandbox_policy.protected_paths = protected_paths(&rule_files, &hook_files, home.as_deref());
    let sandbox = Sandbox::prepare(&sandbox_policy, BackendChoice::Auto)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if args.verbose {
        for line in sandbox.describe().lines() {
            eprintln!("execgate: sandbox: {line}");
        }
    }

    let gate = OutputGate::default();
    let terminal = if args.session.approval == ApprovalMode::Never {
        None
    } else {
        TerminalApprover::open(Some(gate.clone()))
    };
    let output = match (&terminal, args.json) {
        (_, true) => OutputMode::Capture,
        (Some(_), false) => OutputMode::Relay,
        (None, false) => OutputMode::Inherit,
    };
    let approver: Arc<dyn Approver> = match terminal {
        Some(t) => Arc::new(t),
        None => Arc::new(NoApprover {
            reason: "approval required; no approver available".into(),
        }),
    };
    let config = RunConfig {
        script: args.script,
        login: args.login,
        shell,
        sandbox: Arc::new(sandbox),
        policy,
        hooks,
        approval: args.session.approval,
        approver,
        user_rules_file: user_rules_file(home.as_deref()),
        session_allowed: Arc::new(Mutex::new(Vec::new())),
        timeout: args.timeout.map(Duration::from_secs_f64),
        output,
        output_gate: Some(gate),
        null_stdin: false,
        audit_log: args.session.audit_log,
        progress: None,
        session_id: uuid::Uuid::new_v4().to_string(),
        model: String::new(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(run_session(config))?;
    let report = outcome.report;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    let code = match (report.exit_code, report.signal) {
        (Some(code), _) => code,
        (None, Some(signo)) => 128 + signo,
        (None, None) => 1,
    };
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
