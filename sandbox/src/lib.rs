//! The Linux sandbox the session's shell lives in: filesystem (bubblewrap, Landlock
//! fallback) and network (network namespace, seccomp) restrictions.
//!
//! [`Sandbox::prepare`] resolves a [`SandboxPolicy`], picks a backend, and starts a trivial
//! process in it once, so a machine that cannot sandbox refuses at session start with a
//! one-line reason instead of failing later. [`Sandbox::command`] then builds the
//! `std::process::Command` for the shell together with its [`Supervisor`]; the caller adds
//! environment, stdio and inherited fds ([`pass_fd`]), spawns it and starts the supervisor.
//!
//! Every sandboxed process tree runs under a per-session init (`execgate-init`, module
//! `init`), PID 1 of its own PID namespace where one can be made, else a child subreaper:
//! it applies the restrictions, hands the seccomp listener to the [`Supervisor`], and kills
//! and reaps every process of the session when the shell ends or the server goes away.
//! The supervisor answers the seccomp notifications (`connect`, and `socket(AF_UNIX)` when
//! the sandbox shares the host's network namespace) through [`Handler`]s: the unix-socket
//! policy (module `unix_socket`) is one, and more can be added ([`Handlers`]). Every
//! `execve`/`execveat` can be handed to an [`ExecGate`] ([`exec_handlers`]).
//!
//! This crate never falls back to running without a sandbox: the only unsandboxed result
//! is an explicit [`SandboxMode::DangerFullAccess`]. Escalated commands are not its
//! business; the server starts them itself, outside.

mod bwrap;
mod control;
mod diag;
mod error;
mod exec;
pub mod init;
mod landlock;
mod notify;
mod paths;
mod policy;
pub mod probe;
mod seccomp;
mod supervisor;
mod unix_socket;

pub use control::ShellStatus;
pub use error::SandboxError;
pub use exec::{exec_handlers, ExecCall, ExecGate, ExecRead, FileKey, MAX_BYTES, MAX_ENTRIES};
pub use notify::{Handler, Handlers, Notification, Response};
pub use paths::{HomeEntry, HOME_FILES, PROTECTED_NAMES};
pub use policy::{Backend, BackendChoice, GatedNetwork, SandboxMode, SandboxPolicy};
pub use seccomp::Notified;
pub use supervisor::Supervisor;

use crate::bwrap::BwrapPlan;
use crate::control::{InitConfig, Namespaces};
use crate::landlock::LandlockPlan;
use crate::paths::Resolved;
use crate::supervisor::SocketSetup;
use crate::unix_socket::FileId;
use std::ffi::OsString;
use std::io::{self, BufRead};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The program used to check that a backend can start a process (`sh -c :`).
const PROBE_PROGRAM: &str = "/bin/sh";

/// A prepared sandbox: a backend that was just shown to start processes, and the resolved
/// paths. Cheap to clone; building commands from it does not touch the policy again.
///
/// Process lifetime: the spawned process is `bwrap` (bubblewrap) or the session's init
/// (Landlock); the program runs under the init, and the [`Supervisor`] reports its status
/// faithfully (code or signal) and ends the session. With bubblewrap, and with Landlock
/// when it could make a PID namespace, killing the spawned process with `SIGKILL` also ends
/// every process of the sandbox; as a subreaper only [`Supervisor::terminate`] (or dropping
/// the supervisor) does. bwrap's `--die-with-parent` uses `PR_SET_PDEATHSIG`, which fires
/// when the *thread* that spawned it exits, so spawn from a long-lived thread (a tokio
/// worker or the main thread, not a `spawn_blocking` thread).
#[derive(Debug, Clone)]
pub struct Sandbox {
    backend: Backend,
    plan: Plan,
    resolved: Resolved,
    /// Why bubblewrap was not used when `Auto` fell back to Landlock.
    fallback_reason: Option<String>,
    /// Protected paths left writable because the user accepted it (Landlock only).
    unprotected: Vec<PathBuf>,
    /// The `execgate-init` program.
    init: PathBuf,
    /// The seccomp programs installed before the notifier, as raw bytes.
    filters: Vec<Vec<u8>>,
    /// `--allow-unix-socket` files.
    allowed_sockets: Vec<FileId>,
    /// Their paths, as given.
    allowed_socket_paths: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
enum Plan {
    None,
    Bubblewrap(BwrapPlan),
    Landlock(LandlockPlan, Namespaces),
}

/// A command that starts a program in the sandbox, and the supervisor that must be started
/// right after it was spawned (`None` without a sandbox).
#[derive(Debug)]
pub struct SandboxCommand {
    /// The process to spawn (bwrap, or the session's init).
    pub command: Command,
    /// Supervises the sandboxed processes; start it after the spawn, keep it for the
    /// session's life.
    pub supervisor: Option<Supervisor>,
}

impl Sandbox {
    /// Resolves `policy`, selects a backend per `choice` (and, for `Auto`,
    /// `EXECGATE_SANDBOX_BACKEND`), and checks that it can start a process.
    pub fn prepare(policy: &SandboxPolicy, choice: BackendChoice) -> Result<Self, SandboxError> {
        let choice = choice.resolve_env()?;
        let resolved = paths::resolve(policy)?;
        if resolved.mode == SandboxMode::DangerFullAccess {
            return Ok(Sandbox {
                backend: Backend::None,
                plan: Plan::None,
                resolved,
                fallback_reason: None,
                unprotected: Vec::new(),
                init: policy.init.clone(),
                filters: Vec::new(),
                allowed_sockets: Vec::new(),
                allowed_socket_paths: Vec::new(),
            });
        }
        if !policy.init.is_file() {
            return Err(SandboxError::InitMissing {
                path: policy.init.clone(),
            });
        }
        let mut allowed_sockets = Vec::new();
        for path in &policy.allow_unix_sockets {
            let id = FileId::of_socket(path).map_err(|source| SandboxError::UnixSocket {
                path: path.clone(),
                source,
            })?;
            allowed_sockets.push(id);
        }
        let base = Sandbox {
            backend: Backend::None,
            plan: Plan::None,
            filters: seccomp::build(resolved.network || resolved.gated.is_some())?
                .iter()
                .map(seccomp::Program::to_bytes)
                .collect(),
            resolved,
            fallback_reason: None,
            unprotected: Vec::new(),
            init: policy.init.clone(),
            allowed_sockets,
            allowed_socket_paths: policy.allow_unix_sockets.clone(),
        };
        let allow = policy.allow_unprotected_landlock;
        match choice {
            BackendChoice::Bubblewrap => prepare_bwrap(base),
            BackendChoice::Landlock => prepare_landlock(base, allow),
            BackendChoice::Auto => match prepare_bwrap(base.clone()) {
                Ok(sandbox) => Ok(sandbox),
                Err(bwrap_err) => match prepare_landlock(base, allow) {
                    Ok(mut sandbox) => {
                        sandbox.fallback_reason = Some(bwrap_err.to_string());
                        Ok(sandbox)
                    }
                    Err(landlock_err) => Err(SandboxError::NoBackend {
                        bubblewrap: Box::new(bwrap_err),
                        landlock: Box::new(landlock_err),
                    }),
                },
            },
        }
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The filesystem mode.
    pub fn mode(&self) -> SandboxMode {
        self.resolved.mode
    }

    /// Whether the network is gated ([`SandboxPolicy::gated`]): the shell is held until
    /// [`Supervisor::release_shell`], and the server opens the gate's sockets in the
    /// sandbox's network namespace first.
    pub fn is_gated(&self) -> bool {
        self.backend != Backend::None && self.resolved.gated.is_some()
    }

    /// The canonical working directory the shell starts in.
    pub fn cwd(&self) -> &Path {
        &self.resolved.cwd
    }

    /// Canonical writable roots (empty in `read-only` and `danger-full-access`).
    pub fn writable_roots(&self) -> &[PathBuf] {
        &self.resolved.writable
    }

    /// Canonical existing protected paths inside writable roots.
    pub fn protected_paths(&self) -> &[PathBuf] {
        &self.resolved.protected
    }

    /// Writable roots not searched to the end for paths to protect (too many folders):
    /// `.git`, `.execgate` and agent folders deep in them may be writable.
    pub fn scan_cut(&self) -> &[PathBuf] {
        &self.resolved.scan_cut
    }

    /// Whether sandboxed code could have written `path` (for design invariant 3: a program
    /// in such a place is not trusted as a host executable). Always true without a sandbox.
    /// `path` should be canonical.
    pub fn is_sandbox_writable(&self, path: &Path) -> bool {
        match self.backend {
            Backend::None => true,
            _ => {
                let in_root = self.resolved.writable.iter().any(|r| path.starts_with(r));
                let protected = self.resolved.protected.iter().any(|p| path.starts_with(p))
                    && !self.unprotected.iter().any(|p| path.starts_with(p));
                in_root && !protected
            }
        }
    }

    /// Lets sandboxed code open `tty`, the session's own terminal (a pty the caller made for
    /// the shell), by its path as well as through the fds it inherits. This matters only
    /// where the session shares the host's `/dev` (Landlock without a mount namespace),
    /// where every other terminal is refused; elsewhere the session's `/dev/pts` is its own
    /// and the host's terminals have no path inside. Call it before building commands.
    pub fn allow_terminal(&mut self, tty: &Path) {
        if let Plan::Landlock(plan, Namespaces::None) = &mut self.plan {
            plan.spec.devices.push(tty.to_path_buf());
        }
    }

    /// A command that runs `program args` inside the sandbox, in [`Sandbox::cwd`], with
    /// the supervisor to start once it was spawned.
    ///
    /// Add environment, stdio and fds to it as usual, but do not change its program,
    /// arguments or working directory, and do not `dup2` onto arbitrary fd numbers in a
    /// `pre_exec` hook: the command hands the init its control channel in an extra fd. Use
    /// [`pass_fd`] to keep an fd open (at its own number) inside the sandbox.
    pub fn command(
        &self,
        program: &Path,
        args: &[OsString],
    ) -> Result<SandboxCommand, SandboxError> {
        self.command_with(program, args, Handlers::default())
    }

    /// [`Sandbox::command`] with more system calls handed to the supervisor: each of
    /// `extra`'s calls is trapped and decided by its [`Handler`] (after the sandbox's own).
    pub fn command_with(
        &self,
        program: &Path,
        args: &[OsString],
        extra: Handlers,
    ) -> Result<SandboxCommand, SandboxError> {
        let (namespaces, landlock, private_netns, pid_namespace) = match &self.plan {
            Plan::None => {
                let mut cmd = Command::new(program);
                cmd.args(args).current_dir(&self.resolved.cwd);
                return Ok(SandboxCommand {
                    command: cmd,
                    supervisor: None,
                });
            }
            Plan::Bubblewrap(_) => (
                Namespaces::None,
                landlock::scope_only(),
                !self.resolved.network,
                true,
            ),
            Plan::Landlock(plan, ns) => (
                *ns,
                Some(plan.spec.clone()),
                *ns == Namespaces::PidMountNet,
                *ns != Namespaces::None,
            ),
        };
        let sockets = SocketSetup {
            private_netns,
            allowed: self.allowed_sockets.clone(),
        };
        let mut calls = sockets.notified();
        calls.extend(extra.notified());
        let gated = self.resolved.gated.as_ref();
        let config = InitConfig {
            namespaces,
            filters: self.filters.clone(),
            notify: seccomp::notify_program(&calls).to_bytes(),
            landlock,
            hold_shell: gated.is_some(),
            // bubblewrap binds it itself; the Landlock init in its own mount namespace.
            resolv_conf: match &self.plan {
                Plan::Landlock(..) => gated.map(|g| g.resolv_conf.clone()),
                _ => None,
            },
        };
        let supervisor =
            Supervisor::new(&config, sockets, extra, pid_namespace).map_err(|source| {
                SandboxError::Io {
                    what: "cannot create the sandbox's control channel",
                    source,
                }
            })?;
        let fd = supervisor.init_fd();
        let resolv = match (&self.plan, gated) {
            (Plan::Bubblewrap(_), Some(gated)) => Some(
                bwrap::data_fd(&gated.resolv_conf).map_err(|source| SandboxError::Io {
                    what: "cannot hand the sandbox its /etc/resolv.conf",
                    source,
                })?,
            ),
            _ => None,
        };
        let mut cmd = match &self.plan {
            Plan::Bubblewrap(plan) => {
                let resolv_fd = resolv.as_ref().map(AsRawFd::as_raw_fd);
                let mut cmd = plan.command(&self.init, fd, resolv_fd, program, args);
                if let Some(resolv_fd) = resolv_fd {
                    pass_fd(&mut cmd, resolv_fd);
                }
                cmd
            }
            _ => {
                let mut cmd = Command::new(&self.init);
                cmd.arg(fd.to_string()).arg(program).args(args);
                cmd.current_dir(&self.resolved.cwd);
                cmd
            }
        };
        pass_fd(&mut cmd, fd);
        if pid_namespace && !matches!(self.plan, Plan::Bubblewrap(_)) {
            // The init's first stage dies with the server, and PID 1 and the whole
            // namespace with it. (A subreaper must not die this way: the processes it
            // holds would be left behind; it ends the session when its channel closes.)
            // SAFETY: prctl is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                    Ok(())
                });
            }
        }
        let mut supervisor = supervisor;
        // bwrap reads it while it sets the sandbox up; the supervisor lives longer.
        supervisor.keep_fd(resolv);
        Ok(SandboxCommand {
            command: cmd,
            supervisor: Some(supervisor),
        })
    }

    /// A multi-line description of the backend and everything it enforces.
    pub fn describe(&self) -> String {
        let r = &self.resolved;
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        match &self.plan {
            Plan::None => {
                line("backend: none (danger-full-access)".to_owned());
                line(
                    "enforces: nothing; commands may write anywhere and use the network".to_owned(),
                );
                return out;
            }
            Plan::Bubblewrap(plan) => {
                line(format!("backend: bubblewrap ({})", plan.bwrap.display()));
            }
            Plan::Landlock(plan, _) => {
                line(format!("backend: landlock (kernel ABI {})", plan.abi));
                if let Some(reason) = &self.fallback_reason {
                    line(format!("fallback: bubblewrap was not usable: {reason}"));
                }
            }
        }
        line(format!("mode: {}", r.mode));
        line("readable: the whole filesystem".to_owned());
        if r.writable.is_empty() {
            line("writable: nothing but /dev/null-like devices".to_owned());
        } else {
            line(format!("writable: {}", join(&r.writable)));
        }
        let kept: Vec<PathBuf> = r
            .protected
            .iter()
            .filter(|p| !self.unprotected.contains(p))
            .cloned()
            .collect();
        if !kept.is_empty() {
            line(format!("read-only inside writable roots: {}", join(&kept)));
        }
        if !self.unprotected.is_empty() {
            line(format!(
                "NOT protected (Landlock cannot, accepted with --allow-unprotected-landlock): {}",
                join(&self.unprotected)
            ));
        }
        let net_ns = matches!(self.plan, Plan::Bubblewrap(_));
        if r.gated.is_some() {
            line("network: gated (own network namespace with only loopback; every connection goes through execgate's network gate, which decides each new host; /etc/resolv.conf names the gate's DNS)".to_owned());
        } else if r.network {
            line("network: allowed".to_owned());
        } else if net_ns {
            line("network: off (own network namespace; socket() for any family but AF_UNIX fails with EAFNOSUPPORT)".to_owned());
        } else {
            line(
                "network: off (socket() for any family but AF_UNIX fails with EAFNOSUPPORT)"
                    .to_owned(),
            );
        }
        line("seccomp: ptrace, process_vm_readv/writev, io_uring_* and the TIOCSTI/TIOCLINUX ioctls fail with EPERM".to_owned());
        let private_netns = match &self.plan {
            Plan::Bubblewrap(_) => !r.network,
            Plan::Landlock(_, ns) => *ns == Namespaces::PidMountNet,
            Plan::None => false,
        };
        let abstract_names = if private_netns {
            "abstract names are private to the sandbox's network namespace"
        } else if landlock::scope_only().is_some() {
            "abstract names reach only the sandbox's own (Landlock scoping)"
        } else {
            "abstract names are refused (scoping them needs Landlock ABI 6)"
        };
        let mut unix = format!(
            "unix sockets: connect reaches only sockets bound inside the sandbox, decided by the supervisor; no unix datagram sockets; {abstract_names}"
        );
        if !self.allowed_socket_paths.is_empty() {
            unix.push_str(&format!(
                "; host sockets allowed: {}",
                join(&self.allowed_socket_paths)
            ));
        }
        line(unix);
        line(match &self.plan {
            Plan::Landlock(..) => {
                "capabilities: all dropped (bounding and ambient sets included), no_new_privs"
                    .to_owned()
            }
            _ => "capabilities: all dropped, no_new_privs".to_owned(),
        });
        line(match &self.plan {
            Plan::Landlock(_, Namespaces::None) => "session reaping: the session's init is a child subreaper (setsid and double forks cannot leave it); every process is killed when the shell ends or execgate exits".to_owned(),
            _ => "session reaping: the session's init is PID 1 of its own PID namespace (own /proc); every process is killed when the shell ends or execgate exits".to_owned(),
        });
        line(match &self.plan {
            Plan::Landlock(_, Namespaces::None) => "devices: /dev/null, zero, full, random, urandom, tty, ptmx and the session's own terminal; no other terminal".to_owned(),
            _ => "devices: a fresh /dev (null, zero, full, random, urandom, tty, its own /dev/pts and /dev/shm); every other mount is nodev".to_owned(),
        });
        out
    }
}

/// Keeps `fd` open, at the same number, in the process `cmd` starts, by clearing its
/// close-on-exec flag in the child only (bubblewrap passes such fds through to the program).
/// The caller keeps `fd` open until `cmd` is spawned; this is how the session's socket
/// (`EXECGATE_SOCKET`) reaches the sandboxed shell.
pub fn pass_fd(cmd: &mut Command, fd: RawFd) {
    // SAFETY: fcntl is async-signal-safe; the hook does not allocate.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Set once bubblewrap was shown to start a process, with network off, on and gated.
static BWRAP_PROBED: [AtomicBool; 3] = [
    AtomicBool::new(false),
    AtomicBool::new(false),
    AtomicBool::new(false),
];

fn prepare_bwrap(mut sandbox: Sandbox) -> Result<Sandbox, SandboxError> {
    let bwrap = bwrap::locate()?;
    sandbox.plan = Plan::Bubblewrap(BwrapPlan::new(bwrap, &sandbox.resolved));
    sandbox.backend = Backend::Bubblewrap;
    // Whether bubblewrap can create its namespaces here does not change while this process
    // lives, so one successful probe per network setting is enough (the MCP server prepares
    // a sandbox per call). A later failure still fails closed: the shell's spawn reports it.
    let setting = match (&sandbox.resolved.gated, sandbox.resolved.network) {
        (Some(_), _) => 2,
        (None, network) => usize::from(network),
    };
    let probed = &BWRAP_PROBED[setting];
    if probed.load(Ordering::Relaxed) {
        return Ok(sandbox);
    }
    match probe(&sandbox) {
        Ok(()) => {}
        Err(Probe::Sandbox(reason)) => return Err(SandboxError::Start { reason }),
        Err(Probe::Spawn(detail)) | Err(Probe::Other(detail)) => {
            return Err(SandboxError::BwrapFailed { detail })
        }
    }
    probed.store(true, Ordering::Relaxed);
    Ok(sandbox)
}

fn prepare_landlock(
    mut sandbox: Sandbox,
    allow_unprotected: bool,
) -> Result<Sandbox, SandboxError> {
    let resolved = &sandbox.resolved;
    if let Some(protected) = resolved.protected.first() {
        if !allow_unprotected {
            let root = resolved
                .writable
                .iter()
                .find(|r| protected.starts_with(r) || r.starts_with(protected))
                .cloned()
                .unwrap_or_default();
            return Err(SandboxError::LandlockUnprotected {
                protected: protected.clone(),
                root,
            });
        }
    }
    sandbox.backend = Backend::Landlock;
    sandbox.unprotected = resolved.protected.clone();
    // Namespaces where we may make them (as root; without privileges bubblewrap would have
    // been the backend if user namespaces worked), else a subreaper.
    // SAFETY: geteuid has no arguments.
    let mut choices = Vec::new();
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        choices.push(if resolved.network {
            Namespaces::PidMount
        } else {
            Namespaces::PidMountNet
        });
    }
    if resolved.gated.is_some() {
        // A gated network is a network namespace of the sandbox's own, or nothing: never
        // the host's (which would be `--network on` without anyone saying so).
        if !root {
            return Err(SandboxError::GatedNeedsNamespace);
        }
    } else {
        choices.push(Namespaces::None);
    }
    let mut last = None;
    for ns in choices {
        let plan = LandlockPlan::new(&sandbox.resolved, ns != Namespaces::None)?;
        sandbox.plan = Plan::Landlock(plan, ns);
        match probe(&sandbox) {
            Ok(()) => return Ok(sandbox),
            Err(err) => last = Some(err),
        }
    }
    Err(match last {
        Some(Probe::Sandbox(reason)) => SandboxError::Start { reason },
        Some(Probe::Spawn(detail)) | Some(Probe::Other(detail)) => SandboxError::LandlockStart {
            source: io::Error::other(detail),
        },
        None => SandboxError::LandlockStart {
            source: io::Error::other("no way to start the session's init"),
        },
    })
}

/// Why a probe run failed.
enum Probe {
    /// The init or the supervisor reported why the sandbox could not be set up.
    Sandbox(String),
    /// The backend's process failed to start or said why on stderr.
    Spawn(String),
    /// Anything else.
    Other(String),
}

/// Starts `sh -c :` in the prepared sandbox, with its init and supervisor, and checks that
/// it ran and was reported.
fn probe(sandbox: &Sandbox) -> Result<(), Probe> {
    let SandboxCommand {
        mut command,
        supervisor,
    } = sandbox
        .command(Path::new(PROBE_PROGRAM), &probe_args())
        .map_err(|e| Probe::Other(e.to_string()))?;
    let mut supervisor = supervisor.ok_or_else(|| Probe::Other("no supervisor".to_owned()))?;
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Probe::Spawn(format!("cannot run {}: {e}", sandbox.launched().display())))?;
    supervisor
        .start()
        .map_err(|e| Probe::Other(format!("cannot start the supervisor: {e}")))?;
    if sandbox.resolved.gated.is_some() {
        // An init that failed is gone (the pipe is broken); what it said, read below, is
        // the reason worth reporting.
        let _ = supervisor.release_shell();
    }
    let output = child
        .wait_with_output()
        .map_err(|e| Probe::Other(e.to_string()))?;
    let status = supervisor.wait_done(Duration::from_secs(10));
    if let Some(reason) = supervisor.failure() {
        return Err(Probe::Sandbox(reason));
    }
    if output.status.success() && status == Some(ShellStatus::Code(0)) {
        return Ok(());
    }
    let said = output
        .stderr
        .lines()
        .map_while(Result::ok)
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| format!("{PROBE_PROGRAM} -c : ended with {}", output.status));
    Err(Probe::Spawn(said))
}

impl Sandbox {
    /// The program the backend spawns (bwrap or the init).
    fn launched(&self) -> &Path {
        match &self.plan {
            Plan::Bubblewrap(plan) => &plan.bwrap,
            _ => &self.init,
        }
    }
}

fn probe_args() -> Vec<OsString> {
    vec!["-c".into(), ":".into()]
}

fn join(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
