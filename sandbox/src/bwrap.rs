//! The bubblewrap backend: a fresh mount namespace with `/` bound read-only, writable roots
//! bound read-write, protected paths re-bound read-only on top; a new PID namespace; no
//! network namespace peers when the network is off; all capabilities dropped; and our
//! seccomp filters, handed to bwrap through `--add-seccomp-fd` so bwrap installs them right
//! before it execs the program (bwrap itself needs netlink to set up loopback, so the
//! filters cannot be applied to bwrap).
//!
//! Deliberately *not* `--new-session`: `setsid` would take the controlling terminal away
//! from the shell and break job control; the base seccomp filter blocks `TIOCSTI` and
//! `TIOCLINUX` instead, which is the injection `--new-session` exists to prevent.

use crate::paths::Resolved;
use crate::seccomp::Program;
use crate::SandboxError;
use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where bwrap is looked for before `PATH`: system locations first, so a `bwrap` planted in
/// a directory the sandbox could write is not picked up by a later session.
const SYSTEM_LOCATIONS: [&str; 3] = ["/usr/bin/bwrap", "/usr/local/bin/bwrap", "/bin/bwrap"];

/// A ready bwrap invocation; each [`BwrapPlan::command`] gets its own seccomp fds.
#[derive(Debug, Clone)]
pub(crate) struct BwrapPlan {
    /// The bwrap executable.
    pub bwrap: PathBuf,
    /// Namespace and mount arguments (everything but the seccomp fds and the program).
    args: Vec<OsString>,
    /// Serialized seccomp programs.
    filters: Vec<Vec<u8>>,
    /// Working directory inside the sandbox.
    cwd: PathBuf,
}

/// Finds the bwrap executable.
pub(crate) fn locate() -> Result<PathBuf, SandboxError> {
    let system = SYSTEM_LOCATIONS.iter().map(PathBuf::from);
    let from_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join("bwrap"));
    system
        .chain(from_path)
        .find(|candidate| is_executable(candidate))
        .ok_or(SandboxError::BwrapMissing)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

impl BwrapPlan {
    /// Builds the bwrap arguments for a resolved policy.
    pub fn new(bwrap: PathBuf, resolved: &Resolved, filters: &[Program]) -> Self {
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |items: &[&OsStr]| args.extend(items.iter().map(|s| s.to_os_string()));
        push(&[
            "--die-with-parent".as_ref(),
            "--unshare-pid".as_ref(),
            "--cap-drop".as_ref(),
            "ALL".as_ref(),
        ]);
        if !resolved.network {
            push(&["--unshare-net".as_ref()]);
        }
        push(&[
            "--ro-bind".as_ref(),
            "/".as_ref(),
            "/".as_ref(),
            "--dev".as_ref(),
            "/dev".as_ref(),
            "--proc".as_ref(),
            "/proc".as_ref(),
        ]);
        for root in &resolved.writable {
            push(&["--bind".as_ref(), root.as_os_str(), root.as_os_str()]);
        }
        for path in &resolved.protected {
            push(&["--ro-bind".as_ref(), path.as_os_str(), path.as_os_str()]);
        }
        push(&["--chdir".as_ref(), resolved.cwd.as_os_str()]);
        BwrapPlan {
            bwrap,
            args,
            filters: filters.iter().map(Program::to_bytes).collect(),
            cwd: resolved.cwd.clone(),
        }
    }

    /// A command that runs `program args` inside the sandbox.
    pub fn command(&self, program: &Path, args: &[OsString]) -> Result<Command, SandboxError> {
        let mut fds = Vec::with_capacity(self.filters.len());
        for bytes in &self.filters {
            fds.push(filter_fd(bytes).map_err(|source| SandboxError::Io {
                what: "cannot hand the seccomp filter to bubblewrap (memfd)",
                source,
            })?);
        }
        let mut cmd = Command::new(&self.bwrap);
        cmd.args(&self.args);
        for fd in &fds {
            cmd.arg("--add-seccomp-fd").arg(fd.as_raw_fd().to_string());
        }
        cmd.arg("--").arg(program).args(args);
        cmd.current_dir(&self.cwd);
        let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        // SAFETY: the hook only calls lseek and fcntl, which are async-signal-safe, on fds
        // the closure keeps open (it owns `fds`); it does not allocate.
        unsafe {
            cmd.pre_exec(move || {
                let _keep_open = &fds;
                for &fd in &raw {
                    if libc::lseek(fd, 0, libc::SEEK_SET) < 0
                        || libc::fcntl(fd, libc::F_SETFD, 0) < 0
                    {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        Ok(cmd)
    }
}

/// A close-on-exec memfd (numbered 3 or above) holding `bytes`.
fn filter_fd(bytes: &[u8]) -> io::Result<OwnedFd> {
    // SAFETY: plain system calls; every returned fd is immediately owned.
    let memfd = unsafe { libc::memfd_create(c"execgate-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if memfd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd is a fresh fd nobody else owns.
    let memfd = unsafe { OwnedFd::from_raw_fd(memfd) };
    let mut file = std::fs::File::from(memfd);
    file.write_all(bytes)?;
    // SAFETY: F_DUPFD_CLOEXEC returns a new fd that we own.
    let high = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if high < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `high` is a fresh fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(high) })
}
