//! `execgate sandbox check`: which sandbox backend a session would get here, and what it
//! enforces. It prepares the sandbox exactly as a session would (including starting a
//! trivial process in it), so a refusal here is the refusal `execgate run` would give.

use super::flags::NetworkFlags;
use crate::install::{session_writable, Install};
use anyhow::Context;
use clap::{Args, Subcommand};
use execgate_sandbox::{BackendChoice, Sandbox, SandboxMode, SandboxPolicy};
use std::path::PathBuf;
use std::process::ExitCode;

/// `execgate sandbox` subcommands.
#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Show which backend is active and what it enforces (EXECGATE_SANDBOX_BACKEND
    /// forces bubblewrap or landlock).
    Check(CheckArgs),
}

/// Arguments of `execgate sandbox check` (the same sandbox flags as `execgate run`).
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// read-only | workspace-write | danger-full-access
    #[arg(long, value_name = "MODE", default_value = "workspace-write", value_parser = parse_mode)]
    sandbox: SandboxMode,
    /// Extra writable root for workspace-write (repeatable).
    #[arg(long = "writable-root", value_name = "DIR")]
    writable_roots: Vec<PathBuf>,
    /// Network access from the sandbox.
    #[command(flatten)]
    network: NetworkFlags,
    /// Working directory of the session (default: the current directory).
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
    /// Accept that the Landlock backend cannot keep .git, .execgate, .codex and loaded
    /// rules files read-only inside writable roots.
    #[arg(long)]
    allow_unprotected_landlock: bool,
    /// A host unix socket sandboxed code may connect to (repeatable).
    #[arg(long = "allow-unix-socket", value_name = "PATH")]
    allow_unix_sockets: Vec<PathBuf>,
}

fn parse_mode(s: &str) -> Result<SandboxMode, String> {
    s.parse()
        .map_err(|e: execgate_sandbox::SandboxError| e.to_string())
}

/// Runs an `execgate sandbox` subcommand.
pub fn run(cmd: SandboxCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SandboxCommand::Check(args) => check(args),
    }
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let cwd = match args.cwd {
        Some(dir) => dir,
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let install = Install::locate(&session_writable(args.sandbox, &cwd, &args.writable_roots))?;
    let mut policy = SandboxPolicy::new(args.sandbox, cwd);
    policy.init = install.check_init(args.sandbox)?.to_path_buf();
    policy.writable_roots = args.writable_roots;
    args.network.mode_for(args.sandbox)?.apply(&mut policy);
    policy.allow_unprotected_landlock = args.allow_unprotected_landlock;
    policy.allow_unix_sockets = args.allow_unix_sockets;
    policy.protected_paths = Install::protected_paths();
    let sandbox = Sandbox::prepare(&policy, BackendChoice::Auto)?;
    print!("{}", sandbox.describe());
    print!("{}", execgate_terminal::describe());
    Ok(ExitCode::SUCCESS)
}
