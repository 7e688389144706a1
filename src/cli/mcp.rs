//! `execgate mcp`: the MCP `shell` tool server on stdio.

use clap::Args;
use std::process::ExitCode;

/// Arguments of `execgate mcp`.
#[derive(Debug, Args)]
pub struct McpArgs {}

/// Runs `execgate mcp`.
pub fn run(_args: McpArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`execgate mcp` is not available yet")
}
