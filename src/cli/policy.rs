//! `execgate policy check|test`.

use clap::Subcommand;
use std::process::ExitCode;

/// `execgate policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {}

/// Runs an `execgate policy` subcommand.
pub fn run(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {}
}
