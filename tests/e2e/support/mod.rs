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
//! - [`report`]: reading `execgate run --json` reports.

pub mod bins;
pub mod cli;
pub mod dirs;
pub mod policy;
pub mod procs;
pub mod pty;
pub mod report;
pub mod session;
pub mod setups;
