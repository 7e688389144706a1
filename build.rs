//! Builds the helper programs a session needs, so `execgate` can carry them inside itself
//! (`src/install/embedded.rs` embeds them; at first use they are written to a per-user cache):
//! the freestanding execve wrapper (`execgate-execve-wrapper`), the preload shim
//! (`libexecgate_preload.so`) and the session init (`execgate-sandbox-init`, installed as
//! `execgate-init`).
//!
//! They are built by a nested `cargo build` of their own packages, in the same profile and
//! for the same target, into a target folder of their own (`execgate-helpers` next to the
//! build scripts' OUT_DIRs): the outer cargo holds the lock of its own target folder while
//! this script runs, so a nested build there would wait for it forever. Cargo's stable interface has no other way (artifact
//! dependencies are unstable), and the helpers cannot be bins of this package, or
//! `cargo install` would install them next to `execgate` instead of the embedded copies.
//!
//! It tells the compiler where they are (`EXECGATE_EMBED_*`, for `include_bytes!`) and what
//! their content address is (`EXECGATE_EMBED_DIGEST`, a SHA-256 over the three files).

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The helpers: (package, cargo target selection, file built, environment variable).
const HELPERS: [(&str, &[&str], &str, &str); 3] = [
    (
        "execgate-execve-wrapper",
        &["--bin", "execgate-execve-wrapper"],
        "execgate-execve-wrapper",
        "EXECGATE_EMBED_WRAPPER",
    ),
    (
        "execgate-preload",
        &["--lib"],
        "libexecgate_preload.so",
        "EXECGATE_EMBED_PRELOAD",
    ),
    (
        "execgate-sandbox",
        &["--bin", "execgate-sandbox-init"],
        "execgate-sandbox-init",
        "EXECGATE_EMBED_INIT",
    ),
];

/// The folders whose sources the helpers are built from.
const SOURCES: [&str; 5] = ["execve-wrapper", "preload", "sandbox", "protocol", "sys"];

fn main() {
    if let Err(why) = build() {
        eprintln!("error: cannot build execgate's helper programs: {why}");
        std::process::exit(1);
    }
}

fn build() -> Result<(), String> {
    let var = |name: &str| std::env::var(name).map_err(|_| format!("cargo did not set {name}"));
    let manifest_dir = PathBuf::from(var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(var("OUT_DIR")?);
    let target = var("TARGET")?;
    let profile = var("PROFILE")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=Cargo.toml");
    println!("cargo:rerun-if-changed=Cargo.lock");
    for dir in SOURCES {
        println!("cargo:rerun-if-changed={dir}");
    }

    // `<target>/<profile>/build/execgate-helpers`, shared by every run of this script
    // (`cargo build` and `cargo clippy` run it with different OUT_DIRs; one folder for both
    // saves building the helpers twice, about 20 s in CI). The outer cargo runs one build
    // script at a time per target folder, and the nested one locks its own.
    let target_dir = match out_dir.ancestors().nth(2) {
        Some(build) if build.file_name().is_some_and(|n| n == "build") => {
            build.join("execgate-helpers")
        }
        _ => out_dir.join("helpers"),
    };
    let mut cmd = Command::new(&cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(manifest_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .args(["--target", &target]);
    if profile == "release" {
        cmd.arg("--release");
    }
    for (package, selection, _, _) in HELPERS {
        cmd.args(["-p", package]).args(selection);
    }
    // What cargo told this script about the outer build is not about the nested one (the
    // nested cargo sets its own for its build scripts and crates); the jobserver
    // (CARGO_MAKEFLAGS), RUSTC and CARGO_ENCODED_RUSTFLAGS are kept, so both builds share the
    // job slots, the compiler and the flags.
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("CARGO_CFG_")
            || name.starts_with("CARGO_FEATURE_")
            || name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(
                name,
                "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_DIR"
                    | "CARGO_BUILD_TARGET_DIR"
                    | "CARGO_BUILD_TARGET"
                    | "OUT_DIR"
                    | "TARGET"
                    | "HOST"
                    | "OPT_LEVEL"
                    | "DEBUG"
                    | "PROFILE"
                    | "NUM_JOBS"
                    | "RUSTC_LINKER"
                    // `cargo clippy`'s: the helpers are built, not linted, here (clippy
                    // lints them as workspace members of its own run).
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "CLIPPY_ARGS"
                    | "CLIPPY_CONF_DIR"
            )
        {
            cmd.env_remove(name);
        }
    }
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {}: {e}", Path::new(&cargo).display()))?;
    if !status.success() {
        return Err(format!("the nested `cargo build` failed ({status})"));
    }

    let built = target_dir.join(&target).join(&profile);
    let mut digest = Sha256::new();
    for (_, _, file, var) in HELPERS {
        let path = built.join(file);
        let bytes =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        // Length-prefixed, so two different sets of files never hash the same stream.
        digest.update((bytes.len() as u64).to_le_bytes());
        digest.update(&bytes);
        println!("cargo:rustc-env={var}={}", path.display());
    }
    let hex: String = digest
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("cargo:rustc-env=EXECGATE_EMBED_DIGEST={hex}");
    Ok(())
}
