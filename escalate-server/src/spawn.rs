//! Escalated execution: open the judged program once, start it outside the sandbox with the
//! client's fds on their numbers, and wait for it.
//!
//! # What is executed (security invariant 2)
//! The server opens the request's program once (`O_PATH`, following symlinks); the policy
//! judges the path of *that* open file, and a binary is executed from the same fd with
//! `execveat(fd, "", ..., AT_EMPTY_PATH)`, so swapping the file after the decision changes
//! nothing. A `#!` script cannot be run from the fd without the kernel naming it
//! `/dev/fd/N` (which breaks scripts that locate themselves through `$0`, and leaks the fd
//! into the interpreter), so scripts are executed by their resolved path, after checking
//! that the path still names the opened file (same device and inode). The interpreter
//! reopens the path, so a script replaced between that check and the interpreter's open
//! could run instead: put scripts you escalate where the sandbox cannot write.
//!
//! # The child
//! Forked by hand (no `std::process::Command`: its internal error pipe could collide with
//! the client's fd numbers), it only makes async-signal-safe calls: new process group,
//! default signal dispositions and an empty mask, `chdir` to the request's cwd, the
//! client's fds moved onto their targets with every other fd close-on-exec, and the
//! environment of the request minus [`crate::is_injection_var`] entries. A program without
//! `#!` that the kernel refuses (`ENOEXEC`) is run with `/bin/sh`, as shells do.

use crate::env::is_injection_var;
use execgate_protocol::{ExecRequest, ExitStatus};
use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use tokio::io::unix::AsyncFd;

/// The program of a request, opened once.
#[derive(Debug)]
pub(crate) struct OpenedProgram {
    fd: OwnedFd,
    /// Its path with symlinks resolved.
    pub(crate) canonical: PathBuf,
}

/// The request's program path, joined to its cwd when relative.
pub(crate) fn request_path(req: &ExecRequest) -> PathBuf {
    let raw = Path::new(OsStr::from_bytes(&req.program));
    if raw.is_absolute() {
        raw.to_path_buf()
    } else {
        Path::new(OsStr::from_bytes(&req.cwd)).join(raw)
    }
}

/// Opens the program of `req` and resolves its path.
pub(crate) fn open_program(req: &ExecRequest) -> io::Result<OpenedProgram> {
    let path = request_path(req);
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: open with a valid C string; the result is a new fd we own.
    let raw = unsafe { libc::open(c_path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh fd owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let canonical = std::fs::read_link(format!("/proc/self/fd/{raw}"))
        .or_else(|_| std::fs::canonicalize(&path))?;
    Ok(OpenedProgram { fd, canonical })
}

fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: fstat writes into the zeroed buffer we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// True when the opened file starts with `#!` (unreadable files are treated as binaries:
/// an interpreter could not read them either).
fn is_script(program: &OpenedProgram) -> bool {
    let proc_path = format!("/proc/self/fd/{}", program.fd.as_raw_fd());
    let Ok(mut file) = std::fs::File::open(proc_path) else {
        return false;
    };
    let mut magic = [0u8; 2];
    io::Read::read_exact(&mut file, &mut magic).is_ok() && &magic == b"#!"
}

/// A started escalated process. Dropping it before it was reaped kills and reaps it.
#[derive(Debug)]
pub(crate) struct EscalatedChild {
    pid: libc::pid_t,
    pidfd: AsyncFd<OwnedFd>,
    reaped: bool,
}

impl EscalatedChild {
    /// The child's pid, also its process group id.
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for the child to end and reaps it.
    pub(crate) async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.try_reap()? {
                return Ok(status);
            }
            let mut guard = self.pidfd.readable().await?;
            guard.clear_ready();
        }
    }

    fn try_reap(&mut self) -> io::Result<Option<ExitStatus>> {
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid status pointer.
        let rc = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        if rc == 0 {
            return Ok(None);
        }
        self.reaped = true;
        Ok(Some(if libc::WIFSIGNALED(status) {
            ExitStatus::Signal(libc::WTERMSIG(status))
        } else {
            ExitStatus::Code(libc::WEXITSTATUS(status))
        }))
    }
}

impl Drop for EscalatedChild {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: our own unreaped child: its pid cannot have been reused.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                let mut status = 0;
                libc::waitpid(self.pid, &mut status, 0);
            }
        }
    }
}

/// Why an escalated process could not be started: the `errno` and a one-line message.
#[derive(Debug)]
pub(crate) struct SpawnError {
    pub(crate) errno: i32,
    pub(crate) message: String,
}

impl SpawnError {
    fn new(step: &str, err: io::Error) -> Self {
        let errno = err.raw_os_error().unwrap_or(0);
        Self {
            errno,
            message: format!("{step}: {}", errno_text(&err)),
        }
    }
}

/// An io::Error's text without the "(os error N)" suffix.
pub(crate) fn errno_text(err: &io::Error) -> String {
    let text = err.to_string();
    match text.rfind(" (os error ") {
        Some(pos) => text[..pos].to_string(),
        None => text,
    }
}

/// Steps the child reports on its error pipe.
const STEP_CHDIR: u8 = 1;
const STEP_FDS: u8 = 2;
const STEP_EXEC: u8 = 3;

/// Starts `program` for `req` with `fds[i]` on fd number `targets[i]`.
pub(crate) async fn spawn(
    req: &ExecRequest,
    program: &OpenedProgram,
    fds: &[OwnedFd],
    targets: &[i32],
) -> Result<EscalatedChild, SpawnError> {
    let st = fstat(program.fd.as_raw_fd()).map_err(|e| SpawnError::new("stat", e))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(SpawnError::new(
            "not a regular file",
            io::Error::from_raw_os_error(libc::EACCES),
        ));
    }
    let script = is_script(program);
    if script {
        let now =
            std::fs::metadata(&program.canonical).map_err(|e| SpawnError::new("stat script", e))?;
        if std::os::unix::fs::MetadataExt::ino(&now) != st.st_ino
            || std::os::unix::fs::MetadataExt::dev(&now) != st.st_dev
        {
            return Err(SpawnError {
                errno: libc::ESTALE,
                message: "the script was replaced after the policy judged it".to_string(),
            });
        }
    }
    let child = Child::prepare(req, program, fds, targets, script)?;
    child.start().await
}

/// Everything the forked child needs, prepared before `fork` so the child never allocates.
struct Child {
    path: CString,
    cwd: CString,
    /// Owners of the strings `argv_ptrs`, `env_ptrs` and `sh_ptrs` point into.
    #[allow(dead_code)]
    argv: Vec<CString>,
    #[allow(dead_code)]
    env: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    env_ptrs: Vec<*const libc::c_char>,
    sh_ptrs: Vec<*const libc::c_char>,
    prog_fd: RawFd,
    script: bool,
    /// (source fd, target fd) pairs.
    pairs: Vec<(RawFd, RawFd)>,
    /// Scratch space for the sources' temporary numbers, filled in the child.
    moved: Vec<RawFd>,
    /// The targets, sorted.
    sorted_targets: Vec<RawFd>,
}

// SAFETY: the raw pointers point into CStrings owned by the same struct, which move with
// it and are never shared: sending the struct to another thread is sound.
unsafe impl Send for Child {}

fn cstring(bytes: &[u8], what: &str) -> Result<CString, SpawnError> {
    CString::new(bytes).map_err(|_| SpawnError {
        errno: libc::EINVAL,
        message: format!("NUL byte in {what}"),
    })
}

impl Child {
    fn prepare(
        req: &ExecRequest,
        program: &OpenedProgram,
        fds: &[OwnedFd],
        targets: &[i32],
        script: bool,
    ) -> Result<Self, SpawnError> {
        let path = cstring(program.canonical.as_os_str().as_bytes(), "program path")?;
        let cwd = cstring(&req.cwd, "cwd")?;
        let argv = req
            .argv
            .iter()
            .map(|a| cstring(a, "argv"))
            .collect::<Result<Vec<_>, _>>()?;
        let env = req
            .env
            .iter()
            .filter(|e| !is_injection_var(e))
            .map(|e| cstring(e, "environment"))
            .collect::<Result<Vec<_>, _>>()?;
        let terminated = |items: &[&CStr]| -> Vec<*const libc::c_char> {
            let mut ptrs: Vec<_> = items.iter().map(|c| c.as_ptr()).collect();
            ptrs.push(std::ptr::null());
            ptrs
        };
        let argv_refs: Vec<&CStr> = argv.iter().map(CString::as_c_str).collect();
        let env_refs: Vec<&CStr> = env.iter().map(CString::as_c_str).collect();
        let sh_refs: Vec<&CStr> = [c"/bin/sh", path.as_c_str()]
            .into_iter()
            .chain(argv.iter().skip(1).map(CString::as_c_str))
            .collect();
        let argv_ptrs = terminated(&argv_refs);
        let env_ptrs = terminated(&env_refs);
        let sh_ptrs = terminated(&sh_refs);
        let pairs: Vec<(RawFd, RawFd)> = fds
            .iter()
            .map(AsRawFd::as_raw_fd)
            .zip(targets.iter().copied())
            .collect();
        let mut sorted_targets: Vec<RawFd> = targets.to_vec();
        sorted_targets.sort_unstable();
        Ok(Self {
            path,
            cwd,
            argv,
            env,
            argv_ptrs,
            env_ptrs,
            sh_ptrs,
            prog_fd: program.fd.as_raw_fd(),
            script,
            moved: vec![-1; pairs.len()],
            pairs,
            sorted_targets,
        })
    }

    async fn start(mut self) -> Result<EscalatedChild, SpawnError> {
        let mut pipe = [-1; 2];
        // SAFETY: pipe2 writes two new fds into `pipe`.
        if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(SpawnError::new("pipe", io::Error::last_os_error()));
        }
        // SAFETY: both fds are fresh and ours.
        let (read_end, write_end) =
            unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };
        // SAFETY: the child runs only `run_child`, which makes async-signal-safe calls on
        // memory prepared before the fork, and never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(SpawnError::new("fork", io::Error::last_os_error()));
        }
        if pid == 0 {
            // SAFETY: see above; we are the child.
            unsafe { self.run_child(write_end.as_raw_fd()) }
        }
        drop(write_end);
        // From here on the child exists: EscalatedChild's Drop kills and reaps it on error.
        let pidfd = pidfd_open(pid).map_err(|e| {
            // SAFETY: our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            SpawnError::new("pidfd_open", e)
        })?;
        let mut child = EscalatedChild {
            pid,
            pidfd: crate::stream::register(pidfd).map_err(|e| SpawnError::new("pidfd", e))?,
            reaped: false,
        };
        let report = read_report(read_end)
            .await
            .map_err(|e| SpawnError::new("spawn report", e))?;
        if let Some((step, errno)) = report {
            let _ = child.wait().await;
            let step = match step {
                STEP_CHDIR => "cannot change to the working directory",
                STEP_FDS => "cannot set up file descriptors",
                _ => "cannot execute",
            };
            return Err(SpawnError::new(step, io::Error::from_raw_os_error(errno)));
        }
        Ok(child)
    }

    /// In the forked child: set up and exec, or report the failing step on `report_fd` and
    /// `_exit(127)`.
    ///
    /// # Safety
    /// Only call in the child of `fork`.
    unsafe fn run_child(&mut self, report_fd: RawFd) -> ! {
        let errno = || {
            io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO)
        };
        let fail = |fd: RawFd, step: u8, errno: i32| -> ! {
            let mut msg = [0u8; 5];
            msg[0] = step;
            msg[1..].copy_from_slice(&errno.to_le_bytes());
            libc::write(fd, msg.as_ptr().cast(), 5);
            libc::_exit(127)
        };
        libc::setpgid(0, 0);
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        for sig in 1..libc::SIGRTMAX() {
            libc::signal(sig, libc::SIG_DFL);
        }
        if libc::chdir(self.cwd.as_ptr()) != 0 {
            fail(report_fd, STEP_CHDIR, errno());
        }
        // Move every source (and our own fds) above all targets, so no dup2 below can
        // clobber an fd that is still needed.
        let floor = self.sorted_targets.last().map_or(3, |t| (t + 1).max(3));
        for (i, &(src, _)) in self.pairs.iter().enumerate() {
            let moved = libc::fcntl(src, libc::F_DUPFD_CLOEXEC, floor);
            if moved < 0 {
                fail(report_fd, STEP_FDS, errno());
            }
            self.moved[i] = moved;
        }
        let prog = libc::fcntl(self.prog_fd, libc::F_DUPFD_CLOEXEC, floor);
        let report = libc::fcntl(report_fd, libc::F_DUPFD_CLOEXEC, floor);
        if prog < 0 || report < 0 {
            fail(report_fd, STEP_FDS, errno());
        }
        let (step, err) = self.map_and_exec(prog);
        fail(report, step, err)
    }

    unsafe fn map_and_exec(&mut self, prog: RawFd) -> (u8, i32) {
        let errno = || {
            io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO)
        };
        for (i, &(_, target)) in self.pairs.iter().enumerate() {
            if libc::dup2(self.moved[i], target) < 0 {
                return (STEP_FDS, errno());
            }
        }
        let mut low: RawFd = 0;
        for &target in &self.sorted_targets {
            if target > low {
                cloexec_range(low, target - 1);
            }
            low = low.max(target + 1);
        }
        cloexec_range(low, RawFd::MAX);
        if self.script {
            libc::execve(
                self.path.as_ptr(),
                self.argv_ptrs.as_ptr(),
                self.env_ptrs.as_ptr(),
            );
        } else {
            libc::syscall(
                libc::SYS_execveat,
                prog,
                c"".as_ptr(),
                self.argv_ptrs.as_ptr(),
                self.env_ptrs.as_ptr(),
                libc::AT_EMPTY_PATH,
            );
        }
        let mut err = errno();
        if err == libc::ENOEXEC {
            libc::execve(
                c"/bin/sh".as_ptr(),
                self.sh_ptrs.as_ptr(),
                self.env_ptrs.as_ptr(),
            );
            err = errno();
        }
        (STEP_EXEC, err)
    }
}

/// Marks fds `low..=high` close-on-exec (async-signal-safe).
unsafe fn cloexec_range(low: RawFd, high: RawFd) {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    let rc = libc::syscall(
        libc::SYS_close_range,
        low as libc::c_uint,
        high as libc::c_uint,
        CLOSE_RANGE_CLOEXEC,
    );
    if rc == 0 {
        return;
    }
    // Kernels before 5.11: walk the fd table up to the limit.
    let mut limit: libc::rlimit = std::mem::zeroed();
    let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
        limit.rlim_cur.min(1 << 20) as RawFd
    } else {
        4096
    };
    for fd in low..=high.min(max) {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
        }
    }
}

fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd owned by us; pidfds are close-on-exec.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Reads the child's report: `None` when exec succeeded (the pipe closed empty).
async fn read_report(read_end: OwnedFd) -> io::Result<Option<(u8, i32)>> {
    let fd = crate::stream::register(read_end)?;
    let mut msg = [0u8; 5];
    let mut got = 0;
    loop {
        let mut guard = fd.readable().await?;
        let res = guard.try_io(|inner| {
            // SAFETY: reading into our buffer.
            let n = unsafe {
                libc::read(
                    inner.as_raw_fd(),
                    msg[got..].as_mut_ptr().cast(),
                    msg.len() - got,
                )
            };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match res {
            Ok(Ok(0)) => {
                return Ok(match got {
                    0 => None,
                    5 => Some((msg[0], i32::from_le_bytes([msg[1], msg[2], msg[3], msg[4]]))),
                    _ => Some((STEP_EXEC, libc::EIO)),
                })
            }
            Ok(Ok(n)) => got += n,
            Ok(Err(err)) => return Err(err),
            Err(_would_block) => continue,
        }
    }
}
