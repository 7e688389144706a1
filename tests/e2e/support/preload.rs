//! Where end-to-end tests find `libexecgate_preload.so` and the execve wrapper.
//!
//! cargo builds a workspace member's `cdylib` only when that member itself is built, never
//! for another package's tests (`cargo test --workspace` leaves no `.so` behind, and
//! artifact dependencies are unstable). So the first call of [`preload_shim`] in a test
//! binary runs `cargo build -p execgate-preload` into its own target directory,
//! `<target>/preload-shim` (separate, so it never waits on a lock the outer cargo may hold);
//! when it is up to date this takes well under a second. `EXECGATE_PRELOAD_SO` names a
//! prebuilt shim instead (benchmarks, packaging). A failed build panics with cargo's output.

#![allow(dead_code)] // each test binary uses its own subset of these helpers

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

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
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
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

/// Debian's own bash, dash and zsh with the preload shim, as setups for the shared
/// end-to-end suite (`super::session::setups()` can extend its list with these).
pub fn preload_setups() -> Vec<super::session::ShellSetup> {
    let setup = |name: &'static str, shell: &str, args: &[&str], process_substitution| {
        super::session::ShellSetup {
            name,
            shell: PathBuf::from(shell),
            args: args.iter().map(std::ffi::OsString::from).collect(),
            interception: execgate_escalate_server::Interception::Preload {
                shim: preload_shim(),
                wrapper: wrapper(),
            },
            process_substitution,
        }
    };
    vec![
        setup(
            "Debian bash + shim",
            "/bin/bash",
            &["--norc", "--noprofile"],
            true,
        ),
        setup("Debian dash + shim", "/bin/dash", &[], false),
        setup("Debian zsh + shim", "/usr/bin/zsh", &["-f"], true),
    ]
}
