//! Where end-to-end tests find the programs under test: the `execgate` binary and the execve
//! wrapper cargo built for this test binary, the preload shim, and the patched shells.
//!
//! cargo builds a workspace member's `cdylib` only when that member itself is built, never
//! for another package's tests (`cargo test --workspace` leaves no `.so` behind, and
//! artifact dependencies are unstable). So the first call of [`preload_shim`] runs
//! `cargo build -p execgate-preload` into its own target directory, `<target>/preload-shim`
//! (separate, so it never waits on a lock the outer cargo may hold); when it is up to date
//! this takes well under a second. `EXECGATE_PRELOAD_SO` names a prebuilt shim instead
//! (benchmarks, packaging).
//!
//! The patched shells live in `target/shells/{zsh,bash}` under the repository root (not
//! under `CARGO_TARGET_DIR`: `shells/build.sh` builds them, not cargo). The first call of
//! [`patched_zsh`] or [`patched_bash`] runs `shells/build.sh`, which returns at once when the
//! shells are up to date and otherwise builds them (minutes, once); it holds a lock, so
//! concurrent test runs wait for one build instead of racing.
//!
//! A failed build panics with the builder's own output: a test never silently falls back to
//! an unpatched shell or a stale shim.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root (the root package's manifest directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `execgate` binary cargo built for these tests.
pub fn execgate() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_execgate"))
}

/// The `execgate-execve-wrapper` binary cargo built for these tests.
pub fn wrapper() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_execgate-execve-wrapper"))
}

/// `libexecgate_preload.so`, built on first use.
pub fn preload_shim() -> PathBuf {
    static SHIM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match SHIM.get_or_init(build_shim) {
        Ok(path) => path.clone(),
        Err(why) => panic!("{why}"),
    }
}

fn build_shim() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("EXECGATE_PRELOAD_SO") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "EXECGATE_PRELOAD_SO names {}, which does not exist",
                path.display()
            ))
        };
    }
    // The wrapper lives in <target>/<profile>/; build next to that profile directory.
    let wrapper = wrapper();
    let target = wrapper
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("unexpected wrapper path {}", wrapper.display()))?
        .join("preload-shim");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = repo_root().join("Cargo.toml");
    let output = Command::new(&cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "execgate-preload",
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .output()
        .map_err(|e| format!("cannot run cargo to build the preload shim: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo build -p execgate-preload failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let so = target.join("debug").join("libexecgate_preload.so");
    if so.is_file() {
        Ok(so)
    } else {
        Err(format!(
            "cargo build -p execgate-preload succeeded but {} is missing",
            so.display()
        ))
    }
}

/// The directory the patched shells are built into, `<repo>/target/shells`, once they are
/// built (what `EXECGATE_SHELLS_DIR` names for `execgate run` and `execgate mcp`).
pub fn shells_dir() -> PathBuf {
    static BUILD: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(why) = BUILD.get_or_init(build_shells) {
        panic!("{why}");
    }
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
