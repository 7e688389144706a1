//! `execgate`: a per-command approval gate for an AI agent's sandboxed shell.
//!
//! Each subcommand lives in its own module under `cli/`; this file only parses the command
//! line and dispatches.

mod approver;
mod cli;
mod mcp;
mod pipeline;
mod report;
mod safe_commands;
mod session_runner;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("execgate: {err:#}");
            ExitCode::from(2)
        }
    }
}
