//! The seam between the transport and whoever decides: rules, hooks, a person or a test.
//!
//! Data flows one way: the server asks, the policy answers with a [`Ruling`], and the
//! server acts on it (sends the verdict, ends the session when asked to) and hands the
//! ruling's note on, untouched, in its [`crate::ExecEvent::Decided`] event. The policy gets
//! no handle on the session: it never calls back into the server.

use async_trait::async_trait;
use execgate_protocol::{ExecRequest, Verdict};
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Decides every exec of a session.
///
/// Called concurrently, once per exec. The returned future is first polled on the
/// session's acceptor thread (inside the runtime's context), so a decision that is ready at
/// once costs no task switch; a decision that waits (a hook, a person thinking) continues
/// as a task of its own and delays only that exec. So `decide` must not block its thread:
/// blocking work belongs in `tokio::task::spawn_blocking`, else it holds up every exec of
/// the session while it runs.
#[async_trait]
pub trait EscalationPolicy: Send + Sync + 'static {
    /// Why the policy ruled as it did, in the policy's own terms. The server never looks
    /// inside it: it carries it to the [`crate::ExecEvent::Decided`] event.
    type Note: Send + 'static;

    /// The ruling on one exec.
    async fn decide(&self, exec: &ExecContext) -> Ruling<Self::Note>;
}

/// A policy's answer about one exec: what the server does, why (for the records), and
/// whether the whole session must end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruling<N = ()> {
    /// What the server does with the exec.
    pub verdict: Verdict,
    /// Why, as the policy records it; carried to the `Decided` event.
    pub note: N,
    /// `Some(reason)`: end the whole session (the shell's process group and every
    /// escalated one) before the verdict is sent; `Session::interrupted` then gives the
    /// reason.
    pub end_session: Option<String>,
    /// The name an escalated process gets as `argv[0]`: the one the policy judged.
    pub argv0: Argv0,
    /// `NAME=value` entries the server sets in an escalated process's environment, over
    /// the session's and the request's (the policy's own, never the sandbox's): e.g. the
    /// repository a guard checked, so the program cannot pick another one later.
    pub set_env: Vec<Vec<u8>>,
}

/// Which path an escalated process gets as `argv[0]`. Multi-call programs (git, busybox)
/// act by that name, so it must be a name the policy judged: `/usr/lib/git-core/git-difftool`
/// is a host symlink to git, and a rule allowing `git diff` judged git, not difftool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Argv0 {
    /// The resolved file, [`ExecContext::program`] (the default).
    #[default]
    Resolved,
    /// The name the program was invoked by, [`ExecContext::invoked`], when the server gave
    /// one (else the resolved file): for a policy whose rules judged that name.
    Invoked,
}

impl<N> Ruling<N> {
    /// A ruling that leaves the session running; an escalation runs the resolved file by
    /// its own name ([`Argv0::Resolved`]).
    pub fn new(verdict: Verdict, note: N) -> Self {
        Self {
            verdict,
            note,
            end_session: None,
            argv0: Argv0::Resolved,
            set_env: Vec::new(),
        }
    }

    /// The same ruling, ending the session for `reason`.
    pub fn ending_session(mut self, reason: impl Into<String>) -> Self {
        self.end_session = Some(reason.into());
        self
    }

    /// The same ruling, with `argv0` as the escalated process's `argv[0]`.
    pub fn with_argv0(mut self, argv0: Argv0) -> Self {
        self.argv0 = argv0;
        self
    }

    /// The same ruling, setting `entries` (`NAME=value`) in an escalated process's
    /// environment (see [`Ruling::set_env`]).
    pub fn with_env(mut self, entries: Vec<Vec<u8>>) -> Self {
        self.set_env = entries;
        self
    }
}

impl From<Verdict> for Ruling<()> {
    fn from(verdict: Verdict) -> Self {
        Self::new(verdict, ())
    }
}

/// Everything a policy knows about one exec.
#[derive(Debug, Clone)]
pub struct ExecContext {
    /// The exec's id, unique within the session (matches the [`crate::ExecEvent`]s).
    pub id: u64,
    /// The request exactly as the client sent it (raw bytes).
    pub request: Arc<ExecRequest>,
    /// The program with symlinks resolved: the file an Escalate verdict executes. When the
    /// server cannot open the program (e.g. it exists only inside the sandbox), this is the
    /// request's path as sent, and an escalation of it fails.
    pub program: PathBuf,
    /// The name the program was invoked by: the request's absolute path before symlinks are
    /// resolved (the `PATH` result, e.g. `/usr/bin/python3` for `python3.11`), given only
    /// when sandboxed code cannot have chosen what it names: it is a clean absolute path,
    /// no directory its resolution reads and not the file itself is sandbox-writable (see
    /// [`WritablePaths`]), and it resolves to [`ExecContext::program`]. `None` otherwise,
    /// and always when the session was given no [`WritablePaths`]. An escalated process
    /// gets this path as its `argv[0]` only when the ruling says the policy judged it
    /// ([`Argv0::Invoked`]), else [`ExecContext::program`]: never the sandbox's own
    /// `argv[0]`.
    pub invoked: Option<PathBuf>,
    /// The request's working directory, opened once: what a policy inspects (with
    /// `openat`, from [`CwdDir::fd`]) is the directory an escalated process runs in, even
    /// if the folder is renamed and re-created after the check.
    pub cwd: Arc<CwdDir>,
    /// `Some(caller)` when the exec did not come through the session's shell or shim but
    /// was trapped by the sandbox (see [`crate::DirectExecs`]): `caller` (the program that
    /// executed it) cannot carry out an escalation, so a policy must not ask anyone about
    /// it, and the server denies a ruling that would escalate it.
    pub direct: Option<PathBuf>,
    /// The pid of the process that asked (the one that becomes the program on a Run
    /// verdict), in the server's PID namespace; only when the session asked for it
    /// ([`crate::SessionBuilder::client_pids`]). Sandboxed code chooses which process asks
    /// about which command, so it names a process, not a proof of what the process runs.
    pub pid: Option<i32>,
}

/// Tells which paths sandboxed code can write; the sandbox knows. The server trusts the
/// name a program was invoked by ([`ExecContext::invoked`]) only when nothing on its way
/// to the program is writable by the sandbox.
pub trait WritablePaths: Send + Sync + 'static {
    /// True when sandboxed code could create, replace or change what `path` (canonical,
    /// symlinks resolved) names, or the entries of the directory `path`.
    fn is_writable(&self, path: &Path) -> bool;
}

impl<F> WritablePaths for F
where
    F: Fn(&Path) -> bool + Send + Sync + 'static,
{
    fn is_writable(&self, path: &Path) -> bool {
        self(path)
    }
}

/// A request's working directory, opened on first use (`O_PATH | O_DIRECTORY`, symlinks
/// followed, as `chdir` would) and then fixed for the exec: the policy's checks and the
/// escalated process's `fchdir` use the same open directory. A directory whose path does
/// not name it outside the sandbox (one reached through `/proc/<pid>/root` into a mount
/// only the sandbox sees) is refused, so a check by path can trust what the path says.
#[derive(Debug)]
pub struct CwdDir {
    path: Vec<u8>,
    opened: OnceLock<Result<(OwnedFd, PathBuf), i32>>,
}

impl CwdDir {
    /// The directory named by `path` (raw bytes, as the request sent it), not opened yet.
    pub fn new(path: Vec<u8>) -> Self {
        Self {
            path,
            opened: OnceLock::new(),
        }
    }

    /// The path as the request sent it.
    pub fn path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.path))
    }

    /// The open directory: opened on the first call, the same fd on every later one. A
    /// relative path is refused (`EINVAL`): the server's own working directory means
    /// nothing to the sandbox. So is a directory that its path (as the kernel reports it for
    /// the open fd, see [`CwdDir::resolved`]) does not name here (`EXDEV`).
    pub fn fd(&self) -> io::Result<BorrowedFd<'_>> {
        match self.opened.get_or_init(|| open_dir(&self.path)) {
            Ok((fd, _)) => Ok(fd.as_fd()),
            Err(errno) => Err(io::Error::from_raw_os_error(*errno)),
        }
    }

    /// The opened directory's path, symlinks resolved, as it was when it was opened (it
    /// named the directory then). Opens it if needed.
    pub fn resolved(&self) -> io::Result<&Path> {
        self.fd()?;
        match self.opened.get() {
            Some(Ok((_, path))) => Ok(path),
            _ => Err(io::Error::from_raw_os_error(libc::EIO)),
        }
    }
}

/// Opens the directory `path` and checks that the path the kernel gives for the open fd
/// names it (device and inode): not true of a directory reached through a namespace only
/// the sandbox sees.
fn open_dir(path: &[u8]) -> Result<(OwnedFd, PathBuf), i32> {
    let fd = open_path(path)?;
    let errno = |e: io::Error| e.raw_os_error().unwrap_or(libc::EIO);
    let st = crate::spawn::fstat(fd.as_raw_fd()).map_err(errno)?;
    let resolved =
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(errno)?;
    if !crate::spawn::names_file(&resolved, &st) {
        return Err(libc::EXDEV);
    }
    Ok((fd, resolved))
}

fn open_path(path: &[u8]) -> Result<OwnedFd, i32> {
    if !path.starts_with(b"/") {
        return Err(libc::EINVAL);
    }
    let c_path = std::ffi::CString::new(path).map_err(|_| libc::EINVAL)?;
    // SAFETY: open with a valid C string; the result is a new fd we own.
    let raw = unsafe {
        libc::open(
            c_path.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO));
    }
    // SAFETY: `raw` is a fresh fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// State shared by a session and its server tasks.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    state: std::sync::Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The shell's process group, once spawned.
    shell_pgid: Option<i32>,
    /// Process groups of escalated processes that may still have members.
    escalated: std::collections::HashSet<i32>,
    /// Set once the session is over: new escalations are refused.
    ended: bool,
    interrupted: Option<String>,
    /// The sandbox's monitor of the shell, when it has one.
    monitor: Option<MonitorRef>,
}

/// A shared [`crate::session::Monitor`] (opaque in `Debug` output).
#[derive(Clone)]
struct MonitorRef(std::sync::Arc<dyn crate::session::Monitor>);

impl std::fmt::Debug for MonitorRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Monitor")
    }
}

impl State {
    /// Ends the shell and what it started. A sandbox's init ends what the shell started
    /// (daemons that left the group included); killing the group also does when the init
    /// is a PID namespace's PID 1, but would leave a subreaper's processes behind.
    fn kill_shell(&self) {
        let group = self.monitor.as_ref().is_none_or(|m| {
            m.0.terminate();
            m.0.killed_with_group()
        });
        if let (Some(pgid), true) = (self.shell_pgid, group) {
            kill_group(pgid, libc::SIGKILL);
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind; keep going.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records the shell's process group and the sandbox's monitor of it; ends the shell at
    /// once when the session already ended (a ruling may end it before the spawning thread
    /// gets here).
    pub(crate) fn set_shell(
        &self,
        pgid: i32,
        monitor: Option<std::sync::Arc<dyn crate::session::Monitor>>,
    ) {
        let mut state = self.lock();
        state.shell_pgid = Some(pgid);
        state.monitor = monitor.map(MonitorRef);
        if state.ended {
            state.kill_shell();
        }
    }

    /// Records an escalated process group; false (and the caller must kill it) when the
    /// session already ended.
    pub(crate) fn add_escalated(&self, pgid: i32) -> bool {
        let mut state = self.lock();
        if state.ended {
            return false;
        }
        state.escalated.insert(pgid);
        true
    }

    /// Forgets an escalated group once its leader was reaped and no member is left.
    pub(crate) fn escalated_leader_exited(&self, pgid: i32) {
        let mut state = self.lock();
        if !group_alive(pgid) {
            state.escalated.remove(&pgid);
        }
    }

    pub(crate) fn has_ended(&self) -> bool {
        self.lock().ended
    }

    /// Kills the shell's group and every escalated group.
    pub(crate) fn kill_all(&self, end: bool) {
        let mut state = self.lock();
        if end {
            state.ended = true;
        }
        state.kill_shell();
        for &pgid in &state.escalated {
            kill_group(pgid, libc::SIGKILL);
        }
    }

    /// Ends the session for `reason` (the first reason given is kept).
    pub(crate) fn interrupt(&self, reason: String) {
        {
            let mut state = self.lock();
            state.interrupted.get_or_insert(reason);
        }
        self.kill_all(true);
    }

    pub(crate) fn interrupted(&self) -> Option<String> {
        self.lock().interrupted.clone()
    }
}

/// Sends `signo` to process group `pgid`.
pub(crate) fn kill_group(pgid: i32, signo: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid addresses the group; no memory involved.
        unsafe { libc::kill(-pgid, signo) };
    }
}

fn group_alive(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    pgid > 1
        && (unsafe { libc::kill(-pgid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::{CommandExt, ExitStatusExt};

    #[test]
    fn a_session_ended_before_its_shell_was_recorded_still_kills_the_shell() {
        // A ruling can end the session while the thread that spawned the shell has not
        // recorded its process group yet (the shell is already running its script).
        let mut shell = std::process::Command::new("sleep")
            .arg("100")
            .process_group(0)
            .spawn()
            .unwrap();
        let shared = Shared::default();
        shared.interrupt("ended early".into());
        shared.set_shell(shell.id() as i32, None);
        // SIGKILL, once sent, decides how the process ends; this SIGTERM only ends the
        // sleep when nothing killed it.
        kill_group(shell.id() as i32, libc::SIGTERM);
        let status = shell.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
        assert_eq!(shared.interrupted().as_deref(), Some("ended early"));
    }
}
