//! The Linux sandbox the session's shell lives in: filesystem (bubblewrap, Landlock
//! fallback) and network (network namespace, seccomp) restrictions.
//!
//! [`Sandbox::prepare`] resolves a [`SandboxPolicy`], picks a backend, and starts a trivial
//! process in it once, so a machine that cannot sandbox refuses at session start with a
//! one-line reason instead of failing later. [`Sandbox::command`] then builds the
//! `std::process::Command` for the shell; the caller adds environment, stdio and inherited
//! fds ([`pass_fd`]) and spawns it.
//!
//! This crate never falls back to running without a sandbox: the only unsandboxed result
//! is an explicit [`SandboxMode::DangerFullAccess`]. Escalated commands are not its
//! business; the server starts them itself, outside.

mod bwrap;
mod error;
mod landlock;
mod paths;
mod policy;
mod seccomp;

pub use error::SandboxError;
pub use paths::PROTECTED_NAMES;
pub use policy::{Backend, BackendChoice, SandboxMode, SandboxPolicy};

use crate::bwrap::BwrapPlan;
use crate::landlock::LandlockPlan;
use crate::paths::Resolved;
use std::ffi::OsString;
use std::io::{self, BufRead};
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

/// The program used to check that a backend can start a process (`sh -c :`).
const PROBE_PROGRAM: &str = "/bin/sh";

/// A prepared sandbox: a backend that was just shown to start processes, and the resolved
/// paths. Cheap to clone; building commands from it does not touch the policy again.
///
/// Process lifetime: with bubblewrap the spawned process is `bwrap`, which runs the program
/// as a child in a new PID namespace. Killing it with `SIGKILL` ends every process in the
/// sandbox; other signals are not forwarded; a program killed by signal N shows up as exit
/// status 128+N. bwrap's `--die-with-parent` uses `PR_SET_PDEATHSIG`, which fires when the
/// *thread* that spawned it exits, so spawn from a long-lived thread (a tokio worker or the
/// main thread, not a `spawn_blocking` thread). With Landlock the spawned process is the
/// program itself, in the host PID namespace.
#[derive(Debug, Clone)]
pub struct Sandbox {
    backend: Backend,
    plan: Plan,
    resolved: Resolved,
    /// Why bubblewrap was not used when `Auto` fell back to Landlock.
    fallback_reason: Option<String>,
    /// Protected paths left writable because the user accepted it (Landlock only).
    unprotected: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
enum Plan {
    None,
    Bubblewrap(BwrapPlan),
    Landlock(LandlockPlan),
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
            });
        }
        let allow = policy.allow_unprotected_landlock;
        match choice {
            BackendChoice::Bubblewrap => prepare_bwrap(resolved),
            BackendChoice::Landlock => prepare_landlock(resolved, allow),
            BackendChoice::Auto => match prepare_bwrap(resolved.clone()) {
                Ok(sandbox) => Ok(sandbox),
                Err(bwrap_err) => match prepare_landlock(resolved, allow) {
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

    /// A command that runs `program args` inside the sandbox, in [`Sandbox::cwd`].
    ///
    /// Add environment, stdio and fds to it as usual, but do not change its program,
    /// arguments or working directory, and do not `dup2` onto arbitrary fd numbers in a
    /// `pre_exec` hook: the bubblewrap command hands its seccomp filters over in extra fds.
    /// Use [`pass_fd`] to keep an fd open (at its own number) inside the sandbox.
    pub fn command(&self, program: &Path, args: &[OsString]) -> Result<Command, SandboxError> {
        match &self.plan {
            Plan::None => {
                let mut cmd = Command::new(program);
                cmd.args(args).current_dir(&self.resolved.cwd);
                Ok(cmd)
            }
            Plan::Bubblewrap(plan) => plan.command(program, args),
            Plan::Landlock(plan) => Ok(plan.command(program, args)),
        }
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
            Plan::Landlock(plan) => {
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
        if r.network {
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
        match &self.plan {
            Plan::Bubblewrap(_) => line(
                "processes: own PID namespace, all capabilities dropped, killed when execgate exits; fresh /dev and /proc"
                    .to_owned(),
            ),
            Plan::Landlock(plan) if plan.scoped => line(
                "processes: host PID namespace; signals and abstract UNIX sockets confined to the sandbox; host /dev visible"
                    .to_owned(),
            ),
            Plan::Landlock(_) => line(
                "processes: host PID namespace; signals and abstract UNIX sockets NOT confined (needs Landlock ABI 6); host /dev visible"
                    .to_owned(),
            ),
            Plan::None => {}
        }
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

/// Set once bubblewrap was shown to start a process, without and with network access.
static BWRAP_PROBED: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];

fn prepare_bwrap(resolved: Resolved) -> Result<Sandbox, SandboxError> {
    let filters = seccomp::build(resolved.network)?;
    let bwrap = bwrap::locate()?;
    let plan = BwrapPlan::new(bwrap, &resolved, &filters);
    // Whether bubblewrap can create its namespaces here does not change while this process
    // lives, so one successful probe per network setting is enough (the MCP server prepares
    // a sandbox per call). A later failure still fails closed: the shell's spawn reports it.
    let probed = &BWRAP_PROBED[usize::from(resolved.network)];
    if probed.load(Ordering::Relaxed) {
        return Ok(Sandbox {
            backend: Backend::Bubblewrap,
            plan: Plan::Bubblewrap(plan),
            resolved,
            fallback_reason: None,
            unprotected: Vec::new(),
        });
    }
    let mut probe = plan.command(Path::new(PROBE_PROGRAM), &probe_args())?;
    let output = probe
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| SandboxError::BwrapFailed {
            detail: format!("cannot run {}: {e}", plan.bwrap.display()),
        })?;
    if !output.status.success() {
        let said = output
            .stderr
            .lines()
            .map_while(Result::ok)
            .find(|l| !l.trim().is_empty())
            .unwrap_or_else(|| format!("{}", output.status));
        return Err(SandboxError::BwrapFailed { detail: said });
    }
    probed.store(true, Ordering::Relaxed);
    Ok(Sandbox {
        backend: Backend::Bubblewrap,
        plan: Plan::Bubblewrap(plan),
        resolved,
        fallback_reason: None,
        unprotected: Vec::new(),
    })
}

fn prepare_landlock(resolved: Resolved, allow_unprotected: bool) -> Result<Sandbox, SandboxError> {
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
    let filters = seccomp::build(resolved.network)?;
    let plan = LandlockPlan::new(&resolved, filters)?;
    let status = plan
        .command(Path::new(PROBE_PROGRAM), &probe_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|source| SandboxError::LandlockStart { source })?;
    if !status.success() {
        return Err(SandboxError::LandlockStart {
            source: io::Error::other(format!("{PROBE_PROGRAM} -c : ended with {status}")),
        });
    }
    Ok(Sandbox {
        backend: Backend::Landlock,
        plan: Plan::Landlock(plan),
        unprotected: resolved.protected.clone(),
        resolved,
        fallback_reason: None,
    })
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
