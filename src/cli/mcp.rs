//! `execgate mcp`: the MCP `shell` tool server on stdio.
//!
//! Rules and hooks are loaded once, here, before serving: a bad file refuses to start with
//! its `file:line:col`. stdout carries only the protocol; diagnostics go to stderr.

use super::flags::SessionFlags;
use crate::install::{session_writable, Install};
use crate::mcp::{stdio, SandboxDefaults, ServerSetup, ShellServer};
use crate::setup::{home_dir, Loaded};
use anyhow::Context;
use clap::Args;
use execgate_decide::layers::Layer;
use rmcp::ServiceExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `execgate mcp`.
#[derive(Debug, Args)]
#[command(
    after_help = "Without --rules, rules are discovered from the server's working \
directory.\n\n\
Sandbox: --sandbox, --writable-root and --network apply to calls whose client sends no \
sandbox of its own. Codex sends its sandbox with every call (_meta \"codex/sandbox-state\"), \
which replaces those flags for that call; a state execgate cannot read runs the call \
read-only with the network off (one warning on stderr), and one that hides paths from \
reading is refused. The older codex/sandbox-state/update request replaces them for the \
calls that follow it. The loaded rules and hooks stay read-only whatever the client asks.\n\n\
Approvals are asked through MCP elicitation; a client that declines or cancels is reported \
as such (`codex exec` and `claude -p` answer every question by themselves)."
)]
pub struct McpArgs {
    #[command(flatten)]
    session: SessionFlags,
    /// Also load CODEX_HOME/rules/*.rules. Without --rules, $CODEX_HOME is used when set.
    #[arg(long, value_name = "DIR")]
    codex_home: Option<PathBuf>,
    /// Cap on what a call returns: its output in the text item (head and tail kept, the
    /// middle cut) and the structured summary as a whole (at least 1024).
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    max_output_bytes: usize,
}

/// Runs `execgate mcp`.
pub fn run(args: McpArgs) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let home = home_dir();
    let codex_home = args.codex_home.clone().or_else(|| {
        if args.session.rules.is_empty() {
            std::env::var_os("CODEX_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        } else {
            None
        }
    });
    // The Codex home's rules count as given: with any, discovery is not used.
    let mut rules = args.session.rules.clone();
    if let Some(codex_home) = codex_home {
        rules.extend(Layer::codex_home(codex_home).rules_files()?);
    }
    let flags = &args.session;
    let codex_home = args.codex_home.clone().or_else(|| {
        std::env::var_os("CODEX_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let loaded = Loaded::load(
        &rules,
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
    // Checked for the flags' sandbox; a client that later asks for a sandbox the flags did
    // not gets the sandbox's own "init is missing" error for its call.
    let init = install.check_init(flags.sandbox_mode())?.to_path_buf();
    let setup = ServerSetup {
        shell,
        sandbox: SandboxDefaults {
            mode: flags.sandbox_mode(),
            writable_roots: flags.writable_roots.clone(),
            network: flags.network.mode_for(flags.sandbox_mode())?,
            allow_unprotected_landlock: flags.allow_unprotected_landlock,
            allow_unix_sockets: flags.allow_unix_sockets.clone(),
            init,
        },
        protected_paths: loaded
            .protected_paths()
            .into_iter()
            .chain(Install::protected_paths())
            .collect(),
        loaded,
        pass_env: args.session.pass_env,
        max_output_bytes: args.max_output_bytes.max(64),
        network_resolve: args.session.network.overrides(),
    };

    // Nothing a call starts (shells, escalated commands, hooks) may open the terminal
    // execgate was started from.
    execgate_terminal::detach_controlling_terminal()
        .context("cannot give up the controlling terminal")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let served = runtime.block_on(async move {
        let (transport, client_gone) = stdio::filtered(tokio::io::stdin(), tokio::io::stdout());
        let service = ShellServer::new(setup, client_gone)
            .serve(transport)
            .await
            .context("MCP initialization failed")?;
        service.waiting().await.context("the MCP service failed")?;
        anyhow::Ok(())
    });
    // Whatever calls are still running belong to a client that is gone: dropping their
    // tasks kills their sessions.
    runtime.shutdown_timeout(Duration::from_secs(2));
    served?;
    Ok(ExitCode::SUCCESS)
}
