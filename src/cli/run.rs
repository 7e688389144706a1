//! `execgate run`: run a script in an intercepted, sandboxed shell.

use clap::Args;
use std::process::ExitCode;

/// Arguments of `execgate run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The script to run.
    script: String,
}

/// Runs `execgate run`.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`execgate run {}` is not available yet", args.script)
}
