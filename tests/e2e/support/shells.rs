//! Where end-to-end tests find execgate's patched shells.
//!
//! `patched_zsh()` and `patched_bash()` return `target/shells/{zsh,bash}` under the
//! repository root (not under `CARGO_TARGET_DIR`: the shells are built by `shells/build.sh`,
//! not by cargo). The first call in a test binary runs `shells/build.sh`, which returns at
//! once when the shells are up to date and otherwise builds them (minutes, once); it holds a
//! lock, so test binaries running in parallel wait for one build instead of racing. A failed
//! build panics with the script's own error message: a test never silently falls back to an
//! unpatched shell.

#![allow(dead_code)] // each test binary uses its own subset of these helpers

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The repository root (the root package's manifest directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The directory the patched shells are built into: `<repo>/target/shells`.
pub fn shells_dir() -> PathBuf {
    repo_root().join("target").join("shells")
}

/// Patched zsh 5.9 (Debian bookworm's, plus `shells/zsh-exec-wrapper.patch`).
pub fn patched_zsh() -> PathBuf {
    patched("zsh")
}

/// Patched bash 5.2 (Debian bookworm's, plus `shells/bash-exec-wrapper.patch`).
pub fn patched_bash() -> PathBuf {
    patched("bash")
}

fn patched(name: &str) -> PathBuf {
    static BUILD: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(why) = BUILD.get_or_init(build_shells) {
        panic!("{why}");
    }
    let path = shells_dir().join(name);
    assert!(
        path.is_file(),
        "shells/build.sh succeeded but {} is missing",
        path.display()
    );
    path
}

fn build_shells() -> Result<(), String> {
    let script = repo_root().join("shells").join("build.sh");
    let output = Command::new("bash")
        .arg(&script)
        .current_dir(repo_root())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "building the patched shells failed ({}); run `shells/build.sh` to see why:\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        ))
    }
}
