//! `execgate run`: run a script in an intercepted, sandboxed shell.

use super::flags::SessionFlags;
use crate::install::{session_writable, Install};
use crate::session::{run_session, warn_scan_cut, OutputMode, RunConfig};
use crate::setup::{home_dir, Loaded};
use anyhow::Context;
use clap::Args;
use execgate_decide::{
    ApprovalMode, Approver, NoApprover, SessionApprovals, TerminalApprover, NO_APPROVER,
};
use execgate_sandbox::{BackendChoice, Sandbox, SandboxPolicy};
use execgate_terminal::Terminal;
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
    let codex_home = std::env::var_os("CODEX_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let loaded = Loaded::load(
        &flags.rules,
        &flags.hooks,
        flags.approval.into(),
        &cwd,
        home.as_deref(),
        codex_home.as_deref(),
    )?
    .audit_log(flags.audit_log.clone())?;
    let install = Install::locate(&session_writable(
        flags.sandbox_mode(),
        &cwd,
        &flags.writable_roots,
    ))?;
    let shell = install.shell(flags.shell.as_deref())?;
    let init = install.check_init(flags.sandbox_mode())?;

    let mut sandbox_policy = SandboxPolicy::new(flags.sandbox_mode(), &cwd);
    sandbox_policy.init = init.to_path_buf();
    sandbox_policy.writable_roots = flags.writable_roots.clone();
    let network = flags.network.mode_for(flags.sandbox_mode())?;
    network.apply(&mut sandbox_policy);
    sandbox_policy.allow_unprotected_landlock = flags.allow_unprotected_landlock;
    sandbox_policy.allow_unix_sockets = flags.allow_unix_sockets.clone();
    let repositories = loaded.repositories();
    sandbox_policy.protected_paths = loaded.protected_paths();
    sandbox_policy
        .protected_paths
        .extend(repositories.watched());
    sandbox_policy
        .protected_paths
        .extend(Install::protected_paths());
    let mut sandbox = Sandbox::prepare(&sandbox_policy, BackendChoice::Auto)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    warn_scan_cut(&sandbox);
    if args.verbose {
        for line in sandbox.describe().lines() {
            eprintln!("execgate: sandbox: {line}");
        }
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // The session gets a terminal of its own when execgate has one; either way execgate
    // gives up its controlling terminal, so nothing it starts can open the user's.
    let (terminal, signals) = {
        let _runtime = runtime.enter();
        // Watched before the terminal goes raw, so no signal finds it raw and unwatched.
        let signals = TerminationSignals::watch();
        let terminal = Terminal::open().context("cannot set up the session's terminal")?;
        (terminal, signals)
    };
    match &terminal {
        // The shell's own pty is the one terminal the sandbox lets it open by name.
        Some(t) => sandbox.allow_terminal(
            &t.session_tty_path()
                .context("cannot name the session's terminal")?,
        ),
        None => execgate_terminal::detach_controlling_terminal()
            .context("cannot give up the controlling terminal")?,
    }
    let approver: Arc<dyn Approver> = match &terminal {
        Some(t) if loaded.approval != ApprovalMode::Never => {
            Arc::new(TerminalApprover::new(t.console()))
        }
        _ => Arc::new(NoApprover {
            reason: NO_APPROVER.into(),
        }),
    };
    let output = if args.json {
        OutputMode::Capture
    } else {
        OutputMode::Inherit
    };
    let session_id = uuid::Uuid::new_v4().to_string();
    let network_resolve = flags.network.overrides();
    let config = RunConfig {
        script: args.script,
        login: args.login,
        shell,
        sandbox: Arc::new(sandbox),
        pipeline: loaded.pipeline(approver, session_id, SessionApprovals::default()),
        hooks: loaded.hook_setup(),
        repositories,
        timeout: args.timeout.map(Duration::from_secs_f64),
        output,
        terminal,
        null_stdin: false,
        pass_env: args.session.pass_env,
        audit_log: loaded.audit_log.clone(),
        progress: None,
        network_resolve,
    };
    // A termination signal ends the session (by dropping its future: everything it started
    // is killed and the user's terminal modes are restored) before execgate dies of it.
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = run_session(config) => outcome.map(Ok),
            signo = signals.first() => Ok(Err(signo)),
        }
    })?;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(signo) => {
            drop(runtime);
            die_of(signo)
        }
    };
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

/// SIGTERM, SIGINT, SIGHUP and SIGQUIT, watched (so they no longer kill execgate before
/// it has ended its session and restored the user's terminal).
struct TerminationSignals(Option<[(i32, tokio::signal::unix::Signal); 4]>);

impl TerminationSignals {
    /// Starts watching; when that fails the signals keep their default action. Must be
    /// called inside a Tokio runtime.
    fn watch() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        let watch = |signo: i32| signal(SignalKind::from_raw(signo)).map(|s| (signo, s));
        let all = (|| -> std::io::Result<_> {
            Ok([
                watch(libc::SIGTERM)?,
                watch(libc::SIGINT)?,
                watch(libc::SIGHUP)?,
                watch(libc::SIGQUIT)?,
            ])
        })();
        Self(all.ok())
    }

    /// The first of them to arrive.
    async fn first(self) -> i32 {
        let Some([mut a, mut b, mut c, mut d]) = self.0 else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = a.1.recv() => a.0,
            _ = b.1.recv() => b.0,
            _ = c.1.recv() => c.0,
            _ = d.1.recv() => d.0,
        }
    }
}

/// Dies of `signo`, as the signal would have killed execgate had it not been caught.
fn die_of(signo: i32) -> ! {
    // SAFETY: restoring the default action and raising the signal at ourselves.
    unsafe {
        libc::signal(signo, libc::SIG_DFL);
        libc::raise(signo);
    }
    std::process::exit(128 + signo)
}
