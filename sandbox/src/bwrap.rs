//! The bubblewrap backend: a fresh mount namespace with `/` bound read-only, writable roots
//! bound read-write, protected paths re-bound read-only on top; a new PID namespace whose
//! PID 1 is the session's init (`--as-pid-1`); no network namespace peers when the network
//! is off; all capabilities dropped. The init installs the seccomp filters itself, after
//! bwrap set the namespaces up: bwrap's `--add-seccomp-fd` cannot return the listener of a
//! user-notification filter.
//!
//! Deliberately *not* `--new-session`: `setsid` would take the controlling terminal away
//! from the shell and break job control; the base seccomp filter blocks `TIOCSTI` and
//! `TIOCLINUX` instead, which is the injection `--new-session` exists to prevent.

use crate::paths::Resolved;
use crate::SandboxError;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where bwrap is looked for before `PATH`: system locations first, so a `bwrap` planted in
/// a directory the sandbox could write is not picked up by a later session.
const SYSTEM_LOCATIONS: [&str; 3] = ["/usr/bin/bwrap", "/usr/local/bin/bwrap", "/bin/bwrap"];

/// The resolver configuration a gated sandbox replaces.
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// An fd that reads `bytes` from offset 0 (a sealed memfd), for `--ro-bind-data`.
pub(crate) fn data_fd(bytes: &[u8]) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::io::{Seek, Write};
    use std::os::fd::FromRawFd;
    // SAFETY: memfd_create with a valid C string returns a new fd or -1.
    let fd = unsafe { libc::memfd_create(c"execgate-resolv.conf".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(bytes)?;
    file.rewind()?;
    Ok(file.into())
}

/// A ready bwrap invocation.
#[derive(Debug, Clone)]
pub(crate) struct BwrapPlan {
    /// The bwrap executable.
    pub bwrap: PathBuf,
    /// Namespace and mount arguments (everything but the program).
    args: Vec<OsString>,
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
    pub fn new(bwrap: PathBuf, resolved: &Resolved) -> Self {
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |items: &[&OsStr]| args.extend(items.iter().map(|s| s.to_os_string()));
        push(&[
            "--die-with-parent".as_ref(),
            "--unshare-pid".as_ref(),
            "--as-pid-1".as_ref(),
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
            // Nothing in /proc is writable, as under Landlock. As root the shell is uid 0
            // without capabilities, and /proc/sys's files belong to root with mode 0644:
            // bwrap covers /proc/sys only where it can write the folder itself, so
            // kernel.core_pattern (a program run as root on the host) stayed writable.
            // Magic links (/proc/self/fd/N, /dev/stdout) still open their targets.
            "--remount-ro".as_ref(),
            "/proc".as_ref(),
        ]);
        for root in &resolved.writable {
            push(&["--bind".as_ref(), root.as_os_str(), root.as_os_str()]);
        }
        // A mount point cannot be renamed: what lies above a protected path stays put.
        for dir in &resolved.pinned {
            push(&["--bind".as_ref(), dir.as_os_str(), dir.as_os_str()]);
        }
        for path in &resolved.protected {
            push(&["--ro-bind".as_ref(), path.as_os_str(), path.as_os_str()]);
        }
        push(&["--chdir".as_ref(), resolved.cwd.as_os_str()]);
        BwrapPlan {
            bwrap,
            args,
            cwd: resolved.cwd.clone(),
        }
    }

    /// A command that runs `init control_fd program args` inside the sandbox.
    /// With `resolv_fd` (a file to read, at offset 0), `/etc/resolv.conf` inside is a
    /// read-only copy of it (a gated network's).
    pub fn command(
        &self,
        init: &Path,
        control_fd: i32,
        resolv_fd: Option<i32>,
        program: &Path,
        args: &[OsString],
    ) -> Command {
        let mut cmd = Command::new(&self.bwrap);
        cmd.args(&self.args);
        if let Some(fd) = resolv_fd {
            // Where the name leads when it is a link (e.g. to systemd-resolved's stub file):
            // the root is bound as it is, so the same path inside.
            let target =
                std::fs::canonicalize(RESOLV_CONF).unwrap_or_else(|_| PathBuf::from(RESOLV_CONF));
            cmd.arg("--ro-bind-data").arg(fd.to_string()).arg(target);
        }
        cmd.arg("--")
            .arg(init)
            .arg(control_fd.to_string())
            .arg(program)
            .args(args);
        cmd.current_dir(&self.cwd);
        cmd
    }
}
