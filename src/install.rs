//! Install discovery: where the execgate binaries are (the execve wrapper, the preload
//! shim, the session init, our patched shells), and which shell a `--shell` choice means.

use anyhow::Context;
use execgate_escalate_server::Interception;
use execgate_sandbox::SandboxMode;
use std::path::{Path, PathBuf};

/// Which shell runs the script, and how its execs are intercepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellSetup {
    /// The shell binary.
    pub shell: PathBuf,
    /// How its execs reach the server.
    pub interception: Interception,
}

/// Where the execgate binaries live (the wrapper, the shim, the init, the patched shells).
#[derive(Debug, Clone)]
pub struct Install {
    /// `execgate-execve-wrapper`.
    pub wrapper: PathBuf,
    /// `libexecgate_preload.so`.
    pub shim: PathBuf,
    /// `execgate-init`, the session init every sandboxed shell runs under.
    pub init: PathBuf,
    /// Folder holding our patched `zsh` and `bash`, when built.
    pub shells_dir: PathBuf,
}

impl Install {
    /// Locates the binaries next to the running `execgate` (a cargo target dir or an
    /// install prefix); `EXECGATE_WRAPPER`, `EXECGATE_PRELOAD`, `EXECGATE_INIT` and
    /// `EXECGATE_SHELLS_DIR` override.
    pub fn locate() -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the execgate binary")?;
        let dir = exe
            .parent()
            .context("the execgate binary has no parent folder")?
            .to_path_buf();
        let from_env =
            |name: &str, default: PathBuf| std::env::var_os(name).map_or(default, PathBuf::from);
        // target/debug/execgate -> target/shells; <prefix>/bin/execgate -> <prefix>/lib/execgate/shells
        let shells_default = dir
            .parent()
            .map(|p| p.join("shells"))
            .filter(|p| p.is_dir())
            .unwrap_or_else(|| dir.join("../lib/execgate/shells"));
        Ok(Self {
            wrapper: from_env("EXECGATE_WRAPPER", dir.join("execgate-execve-wrapper")),
            shim: from_env("EXECGATE_PRELOAD", dir.join("libexecgate_preload.so")),
            init: from_env("EXECGATE_INIT", dir.join("execgate-init")),
            shells_dir: from_env("EXECGATE_SHELLS_DIR", shells_default),
        })
    }

    /// The session init, when a session in `mode` needs one (every mode but
    /// `danger-full-access`): a sandbox never starts without it.
    pub fn check_init(&self, mode: SandboxMode) -> anyhow::Result<&Path> {
        anyhow::ensure!(
            mode == SandboxMode::DangerFullAccess || self.init.is_file(),
            "the session init {} is missing: build it with `cargo build`",
            self.init.display()
        );
        Ok(&self.init)
    }

    /// Resolves `--shell` (`zsh`, `bash`, `sh` or a path; `None` for the default).
    pub fn shell(&self, choice: Option<&str>) -> anyhow::Result<ShellSetup> {
        let patched = |name: &str| {
            let path = self.shells_dir.join(name);
            path.is_file().then(|| ShellSetup {
                shell: path,
                interception: Interception::PatchedShell {
                    wrapper: self.wrapper.clone(),
                },
            })
        };
        let preloaded = |path: PathBuf| ShellSetup {
            shell: path,
            interception: Interception::Preload {
                shim: self.shim.clone(),
                wrapper: self.wrapper.clone(),
            },
        };
        let setup = match choice {
            None => patched("zsh").unwrap_or_else(|| preloaded("/bin/bash".into())),
            Some("zsh") => patched("zsh").unwrap_or_else(|| preloaded("/usr/bin/zsh".into())),
            Some("bash") => patched("bash").unwrap_or_else(|| preloaded("/bin/bash".into())),
            Some("sh") => preloaded("/bin/sh".into()),
            Some(path) => preloaded(PathBuf::from(path)),
        };
        anyhow::ensure!(
            self.wrapper.is_file(),
            "the execve wrapper {} is missing: build it with `cargo build`",
            self.wrapper.display()
        );
        if let Interception::Preload { shim, .. } = &setup.interception {
            anyhow::ensure!(
                shim.is_file(),
                "the preload shim {} is missing: build it with `cargo build -p execgate-preload`",
                shim.display()
            );
        }
        anyhow::ensure!(
            setup.shell.is_file(),
            "shell {} not found: pass --shell zsh|bash|sh|PATH",
            setup.shell.display()
        );
        Ok(setup)
    }
}
