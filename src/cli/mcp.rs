//! `execgate mcp`: the MCP `shell` tool server on stdio.
//!
//! Rules and hooks are loaded once, here, before serving: a bad file refuses to start with
//! its `file:line:col`. stdout carries only the protocol; diagnostics go to stderr.

use super::run::{home_dir, load_hooks, load_policy, protected_paths, sandbox_mode};
use crate::mcp::{stdio, SandboxDefaults, ServerSetup, ShellServer};
use crate::pipeline::ApprovalMode;
use crate::session_runner::{user_rules_file, Install};
use anyhow::Context;
use clap::Args;
use rmcp::ServiceExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `execgate mcp`.
#[derive(Debug, Args)]
pub struct McpArgs {
    /// Shell the tool runs commands with: zsh, bash, sh or a path. Default: our patched zsh
    /// if built, else the system bash with the preload shim.
    #[arg(long, value_name = "zsh|bash|sh|PATH")]
    shell: Option<String>,
    /// A .rules file (repeatable). Replaces discovery of ~/.config/execgate/rules and
    /// .execgate/rules (from the server's working directory).
    #[arg(long = "rules", value_name = "FILE")]
    rules: Vec<PathBuf>,
    /// Also load CODEX_HOME/rules/*.rules. Without --rules, $CODEX_HOME is used when set.
    #[arg(long, value_name = "DIR")]
    codex_home: Option<PathBuf>,
    /// A hooks.json file (repeatable). Replaces discovery.
    #[arg(long = "hooks", value_name = "FILE")]
    hooks: Vec<PathBuf>,
    /// Filesystem sandbox, until the client sends codex/sandbox-state/update.
    #[arg(long, value_name = "MODE", default_value = "workspace-write",
          value_parser = ["read-only", "workspace-write", "danger-full-access"])]
    sandbox: String,
    /// An extra writable folder in workspace-write mode (repeatable).
    #[arg(long = "writable-root", value_name = "DIR")]
    writable_roots: Vec<PathBuf>,
    /// Allow network access inside the sandbox.
    #[arg(long)]
    network: bool,
    /// Accept that the Landlock fallback cannot keep .git, .execgate and loaded policy files
    /// read-only inside writable roots.
    #[arg(long)]
    allow_unprotected_landlock: bool,
    /// When to ask a person (through an MCP elicitation).
    #[arg(long, value_enum, default_value = "on-request")]
    approval: ApprovalMode,
    /// Append one JSON line per intercepted exec to FILE.
    #[arg(long, value_name = "FILE")]
    audit_log: Option<PathBuf>,
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
        if args.rules.is_empty() {
            std::env::var_os("CODEX_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        } else {
            None
        }
    });
    let mut rules = args.rules.clone();
    if let Some(codex_home) = &codex_home {
        rules.extend(codex_rules(codex_home)?);
    }
    let (policy, rule_files) = load_policy(&rules, &cwd, home.as_deref())?;
    let (hooks, hook_files) = load_hooks(&args.hooks, &cwd, home.as_deref())?;
    let install = Install::locate()?;
    let shell = install.shell(args.shell.as_deref())?;
    let setup = ServerSetup {
        shell,
        policy,
        hooks,
        approval: args.approval,
        sandbox: SandboxDefaults {
            mode: sandbox_mode(&args.sandbox),
            writable_roots: args.writable_roots,
            network: args.network,
            allow_unprotected_landlock: args.allow_unprotected_landlock,
        },
        protected_paths: protected_paths(&rule_files, &hook_files, home.as_deref()),
        user_rules_file: user_rules_file(home.as_deref()),
        audit_log: args.audit_log,
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
