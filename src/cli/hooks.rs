//! `execgate hooks check|permission-request`.

use clap::Subcommand;
use std::process::ExitCode;

/// `execgate hooks` subcommands.
#[derive(Debug, Subcommand)]
pub enum HooksCommand {}

/// Runs an `execgate hooks` subcommand.
pub fn run(cmd: HooksCommand) -> anyhow::Result<ExitCode> {
    match cmd {}
}
