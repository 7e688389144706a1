//! Everything the end-to-end tests share; each area module uses what it needs.
//!
//! - [`bins`]: where the programs under test are (`execgate`, the wrapper, the preload
//!   shim, the patched shells), building the shim and the shells on first use.
//! - [`cli`]: running execgate's one-shot `policy` commands and reading their output.
//! - [`dirs`]: a scratch directory for fixtures; a workspace (project folder and empty home)
//!   to run `execgate` in.
//! - [`setups`]: the shell setups sessions run in, and `per_setup!`, which makes each setup
//!   its own test module.
//! - [`policy`]: the deterministic policy sessions run under.
//! - [`session`]: running a script in a setup and collecting what happened.
//! - [`pty`]: running a command with a real pty as its terminal, or with none.
//! - [`procs`]: looking at processes in `/proc`; re-running a test alone in a child.
//! - [`report`]: reading `execgate run --json` reports and the MCP tool's summary.
//! - [`readme`]: the README's snippets, word for word, for the tests that run them.
//! - [`agents`]: the real agent CLIs (Codex CLI, Claude Code), pinned.
//! - [`fake_model`]: fake model APIs on loopback for those CLIs.

pub mod agents;
pub mod bins;
pub mod cli;
pub mod dirs;
pub mod fake_model;
pub mod policy;
pub mod procs;
pub mod pty;
pub mod readme;
pub mod report;
pub mod session;
pub mod setups;
