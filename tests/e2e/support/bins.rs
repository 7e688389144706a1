//! Where end-to-end tests find the programs under test: the `execgate` binary and the execve
//! wrapper, the preload shim and the session init it embeds, and the patched shells.
//!
//! The helpers (wrapper, shim, init) are the files the root package's `build.rs` built to
//! embed in `execgate` (it names them in `EXECGATE_EMBED_*`); `EXECGATE_PRELOAD_SO` names a
//! prebuilt shim instead (benchmarks, packaging).
//!
//! The patched shells live in `target/shells/{zsh,bash}` under the repository root (not
//! under `CARGO_TARGET_DIR`: execgate builds them, not cargo). The first call of
//! [`patched_zsh`] or [`patched_bash`] runs `execgate shells build --prefix target/shells`
//! (what `shells/build.sh` runs), which returns at once when the shells are up to date and
//! otherwise builds them (minutes, once); it holds a lock, so concurrent test runs wait for
//! one build instead of racing.
//!
//! A failed build panics with the builder's own output: a test never silently falls back to
//! an unpatched shell or a stale shim.

use std::path::PathBuf;
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

/// The execve wrapper the root `build.rs` built (and `execgate` embeds).
pub fn wrapper() -> PathBuf {
    PathBuf::from(env!("EXECGATE_EMBED_WRAPPER"))
}

/// The session init the root `build.rs` built (and `execgate` embeds).
pub fn init() -> PathBuf {
    PathBuf::from(env!("EXECGATE_EMBED_INIT"))
}

/// `libexecgate_preload.so`: the one the root `build.rs` built (and `execgate` embeds), or
/// the one `EXECGATE_PRELOAD_SO` names.
pub fn preload_shim() -> PathBuf {
    match std::env::var_os("EXECGATE_PRELOAD_SO") {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "EXECGATE_PRELOAD_SO names {}, which does not exist",
                path.display()
            );
            path
        }
        None => PathBuf::from(env!("EXECGATE_EMBED_PRELOAD")),
    }
}

/// `cmd` (an `execgate` that starts sessions) with the helpers named outright
/// (`EXECGATE_WRAPPER`, `EXECGATE_PRELOAD`, `EXECGATE_INIT`), so a test's `HOME` needs no
/// cache and a test that looks for the wrapper's processes knows its path.
pub fn with_helpers(cmd: &mut Command) -> &mut Command {
    cmd.env("EXECGATE_WRAPPER", wrapper())
        .env("EXECGATE_PRELOAD", preload_shim())
        .env("EXECGATE_INIT", init())
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
    let out = repo_root().join("target").join("shells");
    let output = Command::new(execgate())
        .args(["shells", "build", "--prefix"])
        .arg(&out)
        .current_dir(repo_root())
        .output()
        .map_err(|e| format!("cannot run execgate shells build: {e}"))?;
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
