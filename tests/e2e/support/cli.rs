//! Running execgate's one-shot commands (`policy check|test|lint|suggest`) as a user would,
//! and reading what they print.

use super::bins;
use std::path::PathBuf;
use std::process::{Command, Output};

/// `execgate`, in the test's own working directory and environment.
pub fn execgate() -> Command {
    Command::new(bins::execgate())
}

/// The repository's `examples/basic.rules`.
pub fn example_rules() -> PathBuf {
    bins::repo_root().join("examples/basic.rules")
}

/// Runs `cmd` to its end: its exit code, stdout and stderr (both UTF-8).
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("execgate runs");
    (
        status.code().expect("exited normally"),
        String::from_utf8(stdout).expect("utf-8 stdout"),
        String::from_utf8(stderr).expect("utf-8 stderr"),
    )
}
