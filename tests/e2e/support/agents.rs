//! The real agent CLIs, pinned: the Codex CLI and Claude Code.
//!
//! `.ci/run` installs `@openai/codex` and `@anthropic-ai/claude-code` from npm into
//! `target/ci-tools/` and names them in `EXECGATE_CODEX` / `EXECGATE_CLAUDE`. A missing or
//! wrongly versioned client fails the test with the command that installs it: the tests
//! that need one are never skipped.

use super::bins::repo_root;
use std::path::PathBuf;
use std::process::Command;

/// The Codex CLI version the tests and the README were checked against.
pub const CODEX_VERSION: &str = "0.171.0";
/// The Claude Code version the tests and the README were checked against.
pub const CLAUDE_VERSION: &str = "2.1.197";

/// The pinned client named by `var`, else `target/ci-tools/<dir>/node_modules/.bin/<bin>`.
fn client(var: &str, dir: &str, bin: &str, package: &str, version: &str) -> PathBuf {
    let path = std::env::var_os(var).map_or_else(
        || {
            repo_root()
                .join("target/ci-tools")
                .join(dir)
                .join("node_modules/.bin")
                .join(bin)
        },
        PathBuf::from,
    );
    let install = format!(
        "install it with `npm install --prefix target/ci-tools/{dir} {package}@{version}` \
         (as .ci/run does) or name it in {var}"
    );
    assert!(
        path.is_file(),
        "{package} is not installed at {}: {install}",
        path.display()
    );
    let out = Command::new(&path)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {install}", path.display()));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains(version),
        "{} --version says {shown:?}, the tests need {version}: {install}",
        path.display()
    );
    path
}

/// The Codex CLI (`codex`).
pub fn codex() -> PathBuf {
    client(
        "EXECGATE_CODEX",
        "codex",
        "codex",
        "@openai/codex",
        CODEX_VERSION,
    )
}

/// The Claude Code CLI (`claude`).
pub fn claude() -> PathBuf {
    client(
        "EXECGATE_CLAUDE",
        "claude",
        "claude",
        "@anthropic-ai/claude-code",
        CLAUDE_VERSION,
    )
}
