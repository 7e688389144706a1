//! `execgate sandbox check`.

use clap::Subcommand;
use std::process::ExitCode;

/// `execgate sandbox` subcommands.
#[derive(Debug, Subcommand)]
pub enum SandboxCommand {}

/// Runs an `execgate sandbox` subcommand.
pub fn run(cmd: SandboxCommand) -> anyhow::Result<ExitCode> {
    match cmd {}
}
