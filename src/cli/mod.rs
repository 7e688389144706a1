//! The command-line surface of `execgate` (see design.md, "Command-line surface").

mod completions;
mod doctor;
mod flags;
mod hooks;
mod mcp;
mod policy;
mod policy_lint;
mod policy_suggest;
mod run;
mod sandbox;
mod shells;
mod trust;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// A per-command approval gate for an AI agent's sandboxed shell.
#[derive(Debug, Parser)]
#[command(name = "execgate", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a script in an intercepted, sandboxed shell.
    Run(run::RunArgs),
    /// Check commands against `.rules` files and test the files' examples.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Validate hooks.json files and run the PermissionRequest hooks once.
    #[command(subcommand)]
    Hooks(hooks::HooksCommand),
    /// Inspect the sandbox this machine supports.
    #[command(subcommand)]
    Sandbox(sandbox::SandboxCommand),
    /// Serve the MCP `shell` tool on stdin/stdout.
    Mcp(mcp::McpArgs),
    /// Trust a folder's .execgate policy and git repository (direnv-style), or list or
    /// revoke trust.
    Trust(trust::TrustArgs),
    /// Build our patched zsh and bash.
    #[command(subcommand)]
    Shells(shells::ShellsCommand),
    /// Print a completion script for bash, zsh or fish.
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff).
    Man(completions::ManArgs),
    /// Check what this machine gives execgate (sandbox, kernel, helpers, shells, policy).
    Doctor(doctor::DoctorArgs),
}

/// Runs the parsed command and returns the process exit status.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Hooks(cmd) => hooks::run(cmd),
        Command::Sandbox(cmd) => sandbox::run(cmd),
        Command::Mcp(args) => mcp::run(args),
        Command::Trust(args) => trust::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Shells(cmd) => shells::run(cmd),
        Command::Completions(args) => completions::completions(args),
        Command::Man(args) => completions::man(args),
    }
}
