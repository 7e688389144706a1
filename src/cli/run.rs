//! `execgate run`: run a script in an intercepted, sandboxed shell.

use super::flags::SessionFlags;
use crate::install::Install;
use crate::session::{run_session, OutputMode, RunConfig};
use crate::setup::{home_dir, Loaded};
use anyhow::Context;
use clap::Args;
use execgate_decide::{
    ApprovalMode, Approver, NoApprover, OutputGate, SessionApprovals, TerminalApprover, NO_APPROVER,
};
use execgate_sandbox::{BackendChoice, Sandbox, SandboxPolicy};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

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
    let flags = &args.session;
    let loaded = Loaded::load(
        &flags.rules,
        &flags.hooks,
        flags.approval.into(),
        &cwd,
        home.as_deref(),
    )?
    .audit_log(flags.audit_log.clone())?;
    let install = Install::locate()?;
    let shell = install.shell(flags.shell.as_deref())?;

    let mut sandbox_policy = SandboxPolicy::new(flags.sandbox_mode(), &cwd);
    sandbox_policy.writable_roots = flags.writable_roots.clone();
    sandbox_policy.network = flags.network;
    sandbox_policy.allow_unprotected_landlock = flags.allow_unprotected_landlock;
    sandbox_policy.protected_paths = loaded.protected_paths();
    let sandbox = Sandbox::prepare(&sandbox_policy, BackendChoice::Auto)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if args.verbose {
        for line in sandbox.describe().lines() {
            eprintln!("execgate: sandbox: {line}");
        }
    }

    let gate = OutputGate::default();
    let terminal = if loaded.approval == ApprovalMode::Never {
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
            reason: NO_APPROVER.into(),
        }),
    };
    let session_id = uuid::Uuid::new_v4().to_string();
    let config = RunConfig {
        script: args.script,
        login: args.login,
        shell,
        sandbox: Arc::new(sandbox),
        pipeline: loaded.pipeline(approver, session_id, SessionApprovals::default()),
        timeout: args.timeout.map(Duration::from_secs_f64),
        output,
        output_gate: Some(gate),
        null_stdin: false,
        pass_env: args.session.pass_env,
        audit_log: loaded.audit_log.clone(),
        progress: None,
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
