//! `execgate`: a per-command approval gate for an AI agent's sandboxed shell.
//!
//! Each subcommand lives in its own module under `cli/`; this file only parses the command
//! line and dispatches.

mod cli;
mod install;
mod mcp;
mod report;
mod session;
mod setup;
mod shells;

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
