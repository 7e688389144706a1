//! Install discovery: where the execgate binaries are (the execve wrapper, the preload
//! shim, the session init, our patched shells), and which shell a `--shell` choice means.
//! The helpers are built into `execgate` ([`embedded`]); copies named by environment
//! variables or found next to the binary take precedence (for packagers and tests).

use anyhow::Context;
use execgate_escalate_server::Interception;
use execgate_sandbox::SandboxMode;
use std::path::{Path, PathBuf};

pub mod embedded;

/// Which shell runs the script, and how its execs are intercepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellSetup {
    /// The shell binary.
    pub shell: PathBuf,
    /// How its execs reach the server.
    pub interception: Interception,
}

/// Where one helper program was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Named by an environment variable (`EXECGATE_WRAPPER`, ...).
    Env(&'static str),
    /// Next to the `execgate` binary (a packager's install, or a cargo target folder).
    NextToBinary,
    /// The copy built into `execgate`, written to the per-user cache.
    Embedded,
}

impl Source {
    /// How a missing file of this source is fixed.
    pub fn fix(&self) -> String {
        match self {
            Source::Env(var) => format!("unset {var} to use execgate's own copy, or fix it"),
            Source::NextToBinary => "remove it to use execgate's own copy".into(),
            Source::Embedded => "remove the cache folder and retry".into(),
        }
    }

    /// Lower-case description for `execgate doctor`.
    pub fn describe(&self) -> String {
        match self {
            Source::Env(var) => format!("from {var}"),
            Source::NextToBinary => "next to execgate".into(),
            Source::Embedded => "built into execgate, cached".into(),
        }
    }
}

/// Where the execgate binaries live (the wrapper, the shim, the init, the patched shells).
#[derive(Debug, Clone)]
pub struct Install {
    /// `execgate-execve-wrapper`.
    pub wrapper: PathBuf,
    /// Where the wrapper was found.
    pub wrapper_source: Source,
    /// `libexecgate_preload.so`.
    pub shim: PathBuf,
    /// Where the shim was found.
    pub shim_source: Source,
    /// `execgate-init`, the session init every sandboxed shell runs under.
    pub init: PathBuf,
    /// Where the init was found.
    pub init_source: Source,
    /// Folder holding our patched `zsh` and `bash`, when built.
    pub shells_dir: PathBuf,
    /// The cache folder chosen for this session (helpers and shells built into it).
    pub cache: Option<PathBuf>,
}

impl Install {
    /// Locates the helper programs for a session whose writable roots are `writable`: each
    /// is the file its environment variable names (`EXECGATE_WRAPPER`, `EXECGATE_PRELOAD`,
    /// `EXECGATE_INIT`), else the one next to the running `execgate` (a packager's
    /// install), else execgate's own copy, verified in the per-user cache (see
    /// [`embedded`]), which is chosen outside `writable`. `EXECGATE_SHELLS_DIR` names the
    /// patched shells' folder; by default it is `../shells` from the binary (a cargo target
    /// folder), `../lib/execgate/shells`, or `shells/` in the cache.
    pub fn locate(writable: &[PathBuf]) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the execgate binary")?;
        let dir = exe
            .parent()
            .context("the execgate binary has no parent folder")?
            .to_path_buf();
        let cache = embedded::choose_root(writable);
        let find = |var: &'static str, helper: embedded::Helper| -> anyhow::Result<_> {
            if let Some(path) = std::env::var_os(var).filter(|v| !v.is_empty()) {
                return Ok((PathBuf::from(path), Source::Env(var)));
            }
            let next = dir.join(helper.name);
            if next.is_file() {
                return Ok((next, Source::NextToBinary));
            }
            let root = cache.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
            let path = embedded::materialize(root, helper)
                .with_context(|| format!("cannot install execgate's own {}", helper.name))?;
            Ok((path, Source::Embedded))
        };
        let (wrapper, wrapper_source) = find("EXECGATE_WRAPPER", embedded::WRAPPER)?;
        let (shim, shim_source) = find("EXECGATE_PRELOAD", embedded::SHIM)?;
        let (init, init_source) = find("EXECGATE_INIT", embedded::INIT)?;
        let cache = cache.ok();
        let shells_dir = shells_dir(&dir, cache.as_deref());
        Ok(Self {
            wrapper,
            wrapper_source,
            shim,
            shim_source,
            init,
            init_source,
            shells_dir,
            cache,
        })
    }

    /// What the sandbox keeps read-only: every cache folder that exists (so no session can
    /// change the programs another session will run).
    pub fn protected_paths() -> Vec<PathBuf> {
        embedded::cache_roots()
            .into_iter()
            .filter(|root| root.is_dir())
            .collect()
    }

    /// The session init, when a session in `mode` needs one (every mode but
    /// `danger-full-access`): a sandbox never starts without it.
    pub fn check_init(&self, mode: SandboxMode) -> anyhow::Result<&Path> {
        anyhow::ensure!(
            mode == SandboxMode::DangerFullAccess || self.init.is_file(),
            "the session init {} is missing: {}",
            self.init.display(),
            self.init_source.fix()
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
        // An explicit zsh or bash without our patched build: the system one with the shim,
        // said once on stderr with how to build ours.
        let stock = |name: &str, path: &str| {
            patched(name).unwrap_or_else(|| {
                eprintln!(
                    "execgate: no patched {name} in {}: using {path} with the preload shim \
                     (build ours with `execgate shells build {name}`)",
                    self.shells_dir.display()
                );
                preloaded(path.into())
            })
        };
        let setup = match choice {
            None => patched("zsh").unwrap_or_else(|| preloaded("/bin/bash".into())),
            Some("zsh") => stock("zsh", "/usr/bin/zsh"),
            Some("bash") => stock("bash", "/bin/bash"),
            Some("sh") => preloaded("/bin/sh".into()),
            Some(path) => preloaded(PathBuf::from(path)),
        };
        anyhow::ensure!(
            self.wrapper.is_file(),
            "the execve wrapper {} is missing: {}",
            self.wrapper.display(),
            self.wrapper_source.fix()
        );
        if let Interception::Preload { shim, .. } = &setup.interception {
            anyhow::ensure!(
                shim.is_file(),
                "the preload shim {} is missing: {}",
                shim.display(),
                self.shim_source.fix()
            );
        }
        if !setup.shell.is_file() {
            let build = match choice {
                Some(name @ ("zsh" | "bash")) => {
                    format!("build our patched {name} with `execgate shells build {name}`, or ")
                }
                _ => String::new(),
            };
            anyhow::bail!(
                "shell {} not found: {build}pass --shell zsh|bash|sh|PATH",
                setup.shell.display()
            );
        }
        Ok(setup)
    }
}

/// The patched shells' folder for an `execgate` in `bin_dir` (`EXECGATE_SHELLS_DIR`, else
/// [`default_shells_dir`]).
fn shells_dir(bin_dir: &Path, cache: Option<&Path>) -> PathBuf {
    match std::env::var_os("EXECGATE_SHELLS_DIR").filter(|v| !v.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => default_shells_dir(bin_dir, cache),
    }
}

/// Where `execgate shells build` puts the shells by default: where sessions look for them
/// (see [`Install::locate`]), with the cache chosen as for a session without writable roots.
pub fn shells_build_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the execgate binary")?;
    let dir = exe
        .parent()
        .context("the execgate binary has no parent folder")?;
    let cache = embedded::choose_root(&[])?;
    Ok(shells_dir(dir, Some(&cache)))
}

/// The patched shells' default folder for an `execgate` in `bin_dir`.
fn default_shells_dir(bin_dir: &Path, cache: Option<&Path>) -> PathBuf {
    // target/debug/execgate -> target/shells (where shells/build.sh puts them).
    if let Some(dir) = bin_dir.parent().map(|p| p.join("shells")) {
        if dir.is_dir() {
            return dir;
        }
    }
    // <prefix>/bin/execgate -> <prefix>/lib/execgate/shells (a packager's install).
    let packaged = bin_dir.join("../lib/execgate/shells");
    if packaged.is_dir() {
        return packaged;
    }
    match cache {
        Some(cache) => cache.join("shells"),
        None => packaged,
    }
}

/// The folders a session in `mode` started in `cwd` with the extra roots `roots` can
/// write (what the cache must stay out of): the working directory, the extra roots and
/// the temporary directory in `workspace-write`, nothing otherwise (`danger-full-access`
/// has no sandbox to keep anything from).
pub fn session_writable(mode: SandboxMode, cwd: &Path, roots: &[PathBuf]) -> Vec<PathBuf> {
    match mode {
        SandboxMode::WorkspaceWrite => std::iter::once(cwd.to_path_buf())
            .chain(roots.iter().cloned())
            .chain(std::iter::once(std::env::temp_dir()))
            .collect(),
        SandboxMode::ReadOnly | SandboxMode::DangerFullAccess => Vec::new(),
    }
}
