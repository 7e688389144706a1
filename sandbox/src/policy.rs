//! What the caller asks the sandbox to enforce, before any path is resolved.

use crate::SandboxError;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// How much of the filesystem the sandboxed shell may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxMode {
    /// Everything readable; nothing writable but `/dev/null`-like devices.
    ReadOnly,
    /// Everything readable; the working directory, extra roots and the temp dir writable.
    WorkspaceWrite,
    /// No sandbox at all (interception still applies).
    DangerFullAccess,
}

impl SandboxMode {
    /// The command-line spelling (`read-only`, `workspace-write`, `danger-full-access`).
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxMode::ReadOnly => "read-only",
            SandboxMode::WorkspaceWrite => "workspace-write",
            SandboxMode::DangerFullAccess => "danger-full-access",
        }
    }
}

impl fmt::Display for SandboxMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SandboxMode {
    type Err = SandboxError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read-only" => Ok(SandboxMode::ReadOnly),
            "workspace-write" => Ok(SandboxMode::WorkspaceWrite),
            "danger-full-access" => Ok(SandboxMode::DangerFullAccess),
            other => Err(SandboxError::InvalidMode(other.to_owned())),
        }
    }
}

/// What a gated network needs from the sandbox besides its own network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatedNetwork {
    /// The content of `/etc/resolv.conf` inside the sandbox (naming the gate's DNS).
    pub resolv_conf: Vec<u8>,
}

/// The sandbox a session asks for. Paths need not be canonical; [`crate::Sandbox::prepare`]
/// resolves them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxPolicy {
    /// Filesystem mode.
    pub mode: SandboxMode,
    /// Extra writable roots (`--writable-root`), used in `workspace-write` only.
    pub writable_roots: Vec<PathBuf>,
    /// Whether IP networking is allowed (`--network`).
    pub network: bool,
    /// Network through execgate's gate (`--network gated`; `network` stays false): the
    /// sandbox keeps its own network namespace with only loopback, where IP sockets may be
    /// opened, `/etc/resolv.conf` names `resolv_conf`'s content, and the shell waits until
    /// the server opened the gate's sockets in that namespace
    /// ([`crate::Supervisor::release_shell`]). Needs a network namespace: bubblewrap, or
    /// Landlock as root.
    pub gated: Option<GatedNetwork>,
    /// Files and directories that stay read-only even inside writable roots: every rules
    /// and hooks file the session loaded, trusted repositories. What `crate::paths`
    /// protects by itself (git metadata, policy and agent folders, a writable home) is
    /// always added.
    pub protected_paths: Vec<PathBuf>,
    /// The shell's working directory; writable in `workspace-write`.
    pub cwd: PathBuf,
    /// The temporary directory made writable in `workspace-write` (`$TMPDIR` or `/tmp` from
    /// [`SandboxPolicy::new`]); `None` keeps no temporary directory writable.
    pub tmpdir: Option<PathBuf>,
    /// Accept that the Landlock backend leaves protected paths inside writable roots
    /// writable (`--allow-unprotected-landlock`); without it Landlock refuses to start.
    pub allow_unprotected_landlock: bool,
    /// Host unix sockets the sandbox may connect to (`--allow-unix-socket`); each must exist
    /// when the sandbox is prepared, and is identified by its file from then on.
    pub allow_unix_sockets: Vec<PathBuf>,
    /// The `execgate-init` program; [`SandboxPolicy::new`] takes `execgate-init` next to
    /// the running executable (the `execgate` program sets it from its install discovery).
    pub init: PathBuf,
    /// The user's home: when a writable root contains it, the files escalated programs
    /// and agents read from it stay read-only (see [`crate::HOME_FILES`]; those missing
    /// are created first). [`SandboxPolicy::new`] takes `$HOME`.
    pub home: Option<PathBuf>,
}

impl SandboxPolicy {
    /// A policy with no extra roots, network off, no loaded files, and `$TMPDIR` (or `/tmp`)
    /// as the temporary directory.
    pub fn new(mode: SandboxMode, cwd: impl Into<PathBuf>) -> Self {
        SandboxPolicy {
            mode,
            writable_roots: Vec::new(),
            network: false,
            gated: None,
            protected_paths: Vec::new(),
            cwd: cwd.into(),
            tmpdir: Some(std::env::temp_dir()),
            allow_unprotected_landlock: false,
            allow_unix_sockets: Vec::new(),
            init: default_init(),
            home: std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from),
        }
    }
}

/// `execgate-init` next to the running executable.
fn default_init() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("execgate-init")))
        .unwrap_or_else(|| PathBuf::from("execgate-init"))
}

/// Which backend to use. `Auto` honours `EXECGATE_SANDBOX_BACKEND`, then prefers
/// bubblewrap and falls back to Landlock when bubblewrap cannot start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// `EXECGATE_SANDBOX_BACKEND` if set, else bubblewrap, else Landlock.
    #[default]
    Auto,
    /// bubblewrap only; refuse if it cannot start.
    Bubblewrap,
    /// Landlock only; refuse if the kernel lacks it.
    Landlock,
}

impl BackendChoice {
    /// The environment variable that forces a backend when the choice is `Auto`.
    pub const ENV_VAR: &'static str = "EXECGATE_SANDBOX_BACKEND";

    /// Parses a backend name as accepted in `EXECGATE_SANDBOX_BACKEND`
    /// (`bubblewrap`/`bwrap`, `landlock`, `auto`).
    pub fn parse(name: &str) -> Result<Self, SandboxError> {
        match name {
            "auto" => Ok(BackendChoice::Auto),
            "bubblewrap" | "bwrap" => Ok(BackendChoice::Bubblewrap),
            "landlock" => Ok(BackendChoice::Landlock),
            other => Err(SandboxError::InvalidBackend(other.to_owned())),
        }
    }

    /// Resolves `Auto` against `EXECGATE_SANDBOX_BACKEND`; explicit choices are kept.
    pub(crate) fn resolve_env(self) -> Result<Self, SandboxError> {
        if self != BackendChoice::Auto {
            return Ok(self);
        }
        match std::env::var_os(Self::ENV_VAR) {
            None => Ok(BackendChoice::Auto),
            Some(value) if value.is_empty() => Ok(BackendChoice::Auto),
            Some(value) => match value.to_str() {
                Some(name) => Self::parse(name),
                None => Err(SandboxError::InvalidBackend(
                    value.to_string_lossy().into_owned(),
                )),
            },
        }
    }
}

/// The backend a prepared sandbox uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// No sandbox (`danger-full-access`).
    None,
    /// A bubblewrap mount, PID and (without network) network namespace, plus seccomp.
    Bubblewrap,
    /// Landlock applied in the child just before exec, plus seccomp.
    Landlock,
}

impl Backend {
    /// Lower-case name for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::None => "none",
            Backend::Bubblewrap => "bubblewrap",
            Backend::Landlock => "landlock",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
