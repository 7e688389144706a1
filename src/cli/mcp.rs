//! `execgate mcp`: the MCP `shell` tool server on stdio.
//!
//! Rules and hooks are loaded once, here, before serving: a bad file refuses to start with
//! its `file:line:col`. stdout carries only the protocol; diagnostics go to stderr.

use super::run::{home_dir, load_hooks, load_policy, protected_paths, sandbox_mode, SessionFlags};
use crate::mcp::{stdio, SandboxDefaults, ServerSetup, ShellServer};
use crate::session_runner::{user_rules_file, Install};
use anyhow::Context;
use clap::Args;
use rmcp::ServiceExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `execgate mcp`.
#[derive(Debug, Args)]
#[command(
    after_help = "Without --rules, rules are discovered from the server's working \
directory. --sandbox applies until the client sends codex/sandbox-state/update; approvals \
are asked through MCP elicitation."
)]
pub struct McpArgs {
    #[command(flatten)]
    session: SessionFlags,
    /// Also load CODEX_HOME/rules/*.rules. Without --rules, $CODEX_HOME is used when set.
    #[arg(long, value_name = "DIR")]
    codex_home: Option<PathBuf>,
    /// Cap on the output returned per call (head and tail kept, the middle cut).
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    max_output_bytes: usize,
}

/// The `.rules` files in `dir/rules`, in name order.
fn codex_rules(codex_home: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let dir = codex_home.join("rules");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "rules") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
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
    let mut rules = args.session.rules.clone();
    if let Some(codex_home) = &codex_home {
        rules.extend(codex_rules(codex_home)?);
    }
    let (policy, rule_files) = load_policy(&rules, &cwd, home.as_deref())?;
    let (hooks, hook_files) = load_hooks(&args.session.hooks, &cwd, home.as_deref())?;
    let install = Install::locate()?;
    let shell = install.shell(args.session.shell.as_deref())?;
    let setup = ServerSetup {
        shell,
        policy,
        hooks,
        approval: args.session.approval,
        sandbox: SandboxDefaults {
            mode: sandbox_mode(&args.session.sandbox),
            writable_roots: args.session.writable_roots,
            network: args.session.network,
            allow_unprotected_landlock: args.session.allow_unprotected_landlock,
        },
        protected_paths: protected_paths(&rule_files, &hook_files, home.as_deref()),
        user_rules_file: user_rules_file(home.as_deref()),
        audit_log: args.session.audit_log,
        max_output_bytes: args.max_output_bytes.max(64),
    };

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
