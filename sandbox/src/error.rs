//! Why a sandbox could not be prepared or started.
//!
//! Every variant is a refusal: the caller must not start the shell without a sandbox when
//! one of these comes back (only `--sandbox danger-full-access` runs without one).

use std::io;
use std::path::PathBuf;

/// A reason the sandbox cannot be prepared; each message names what failed and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// `--network gated` on a backend that cannot give the sandbox a network namespace.
    #[error("--network gated needs a network namespace of the sandbox's own, which the Landlock backend can make only as root: install bubblewrap (with user namespaces), run as root, or pass --network on or --network off")]
    GatedNeedsNamespace,

    /// A `--sandbox` value that is not one of the three modes.
    #[error(
        "invalid sandbox mode {0:?}: expected read-only, workspace-write or danger-full-access"
    )]
    InvalidMode(String),

    /// `EXECGATE_SANDBOX_BACKEND` (or a backend name) is not `bubblewrap` or `landlock`.
    #[error("invalid sandbox backend {0:?} (from EXECGATE_SANDBOX_BACKEND): expected bubblewrap or landlock")]
    InvalidBackend(String),

    /// The working directory cannot be resolved.
    #[error("working directory {path}: {source}: pass an existing directory with --cwd")]
    Cwd {
        /// The directory as given.
        path: PathBuf,
        /// Why it could not be resolved.
        source: io::Error,
    },

    /// A writable root (extra root or temporary directory) cannot be resolved.
    #[error("writable root {path}: {source}: create it or leave it out of --writable-root")]
    WritableRoot {
        /// The root as given.
        path: PathBuf,
        /// Why it could not be resolved.
        source: io::Error,
    },

    /// No `bwrap` executable was found.
    #[error("bubblewrap is not installed (no bwrap in /usr/bin, /usr/local/bin, /bin or PATH): install bubblewrap or pass --sandbox danger-full-access")]
    BwrapMissing,

    /// `bwrap` exists but could not start a sandboxed process with our arguments.
    #[error("bubblewrap cannot start the sandbox ({detail}): allow user namespaces (kernel.unprivileged_userns_clone, AppArmor's restrict_unprivileged_userns), or pass --sandbox danger-full-access")]
    BwrapFailed {
        /// What bwrap said, or how spawning it failed.
        detail: String,
    },

    /// The kernel has no usable Landlock.
    #[error("Landlock is not available ({detail}): boot a kernel with CONFIG_SECURITY_LANDLOCK=y and `landlock` in the lsm= list, install bubblewrap, or pass --sandbox danger-full-access")]
    LandlockUnavailable {
        /// What the kernel answered.
        detail: String,
    },

    /// The kernel's Landlock cannot deny `truncate(2)`, so read-only would not be read-only.
    #[error("Landlock ABI {found} cannot deny truncate(2) (ABI 3, Linux 6.2, is needed): install bubblewrap or pass --sandbox danger-full-access")]
    LandlockTooOld {
        /// The ABI version the kernel reports.
        found: i32,
    },

    /// Landlock cannot keep a protected path read-only inside a writable root.
    #[error("Landlock cannot keep {protected} read-only inside the writable root {root}: use the bubblewrap backend (which can), or pass --allow-unprotected-landlock to accept that it stays writable")]
    LandlockUnprotected {
        /// The protected path (policy, hooks or git metadata).
        protected: PathBuf,
        /// The writable root that contains it (or that it contains).
        root: PathBuf,
    },

    /// A writable root contains the home, and a login bash would read a file the sandbox
    /// could create (`~/.bash_profile` does not exist, another login file does).
    #[error("the home {} is inside a writable root and has no .bash_profile: a login bash would run one the sandbox writes instead of {read_instead}. Create it (echo '. ~/{read_instead}' > ~/.bash_profile keeps what a login bash does today), or keep the home out of the writable roots", home.display())]
    HomeLoginFile {
        /// The home.
        home: PathBuf,
        /// The file a login bash reads today (`.bash_login` or `.profile`).
        read_instead: &'static str,
    },

    /// A file or folder of the home that must be protected could not be created.
    #[error("cannot create {} so that the sandbox keeps it read-only: {source}", path.display())]
    HomeFile {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },

    /// Building the Landlock ruleset failed.
    #[error("cannot build the Landlock ruleset for {path}: {detail}: install bubblewrap or pass --sandbox danger-full-access")]
    LandlockRuleset {
        /// The path whose rule failed (`/` for the ruleset itself).
        path: PathBuf,
        /// The landlock crate's message.
        detail: String,
    },

    /// Starting a process under Landlock + seccomp failed (the restriction step refused).
    #[error("cannot start a process under Landlock and seccomp ({source}): install bubblewrap or pass --sandbox danger-full-access")]
    LandlockStart {
        /// The error the child's restriction step or the spawn reported.
        source: io::Error,
    },

    /// Neither backend works here.
    #[error("no sandbox backend works on this machine: {bubblewrap}; {landlock}")]
    NoBackend {
        /// Why bubblewrap was refused.
        bubblewrap: Box<SandboxError>,
        /// Why Landlock was refused.
        landlock: Box<SandboxError>,
    },

    /// The session's init program is missing.
    #[error("the session init {path} is missing: build it with `cargo build`")]
    InitMissing {
        /// Where it was looked for.
        path: PathBuf,
    },

    /// The session's init or its seccomp supervisor could not start.
    #[error("the sandbox could not start: {reason}; pass --sandbox danger-full-access to run without a sandbox")]
    Start {
        /// What the init or the supervisor reported.
        reason: String,
    },

    /// An `--allow-unix-socket` path is not a unix socket that can be opened.
    #[error("--allow-unix-socket {path}: {source}: start the service that listens there first, or leave the flag out")]
    UnixSocket {
        /// The path as given.
        path: PathBuf,
        /// Why it cannot be used.
        source: io::Error,
    },

    /// The seccomp filter could not be compiled for this machine.
    #[error("cannot build the seccomp filter: {0}: pass --sandbox danger-full-access on this architecture")]
    Seccomp(String),

    /// An operating-system call made while preparing the sandbox failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: io::Error,
    },
}
