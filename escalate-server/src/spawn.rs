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
//! `argv[0]` is the path that was judged: the invoked path when the server trusts it
//! ([`crate::ExecContext::invoked`]) and the policy's ruling says it judged that name
//! ([`crate::Argv0::Invoked`]), else the resolved one. Never the sandbox's own
//! `argv[0]`: multi-call programs (git, busybox) pick what to do by that name, so the
//! sandbox could otherwise run a different command than the one the rules allowed.
//!
//! # The child
//! Cloned by hand, vfork-style (`CLONE_VM | CLONE_VFORK`: no copy of the server's page
//! tables, and the outcome of the exec is known when the clone returns; see
//! [`Child::start`]). No `std::process::Command`: its internal error pipe could collide
//! with the client's fd numbers. The child only makes async-signal-safe calls: default
//! signal dispositions, new process group, an empty mask, `fchdir` to the request's cwd as
//! opened for the policy ([`crate::CwdDir`]), the client's fds moved onto their targets
//! with every other fd close-on-exec, and the environment built by [`crate::env`]. A
//! program without `#!` that the kernel refuses (`ENOEXEC`) is run with `/bin/sh`, as
//! shells do. A failing step is reported with its errno; a child that dies before exec (a
//! fault) shows up as a started process that died by a signal.

use crate::invoked::InvokedNames;
use execgate_protocol::{ExecRequest, ExitStatus};
use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tokio::io::unix::AsyncFd;

/// The program of a request, opened once.
#[derive(Debug)]
pub(crate) struct OpenedProgram {
    fd: OwnedFd,
    /// Its path with symlinks resolved.
    pub(crate) canonical: PathBuf,
    /// The request's path, when the server trusts it as the name the program was invoked
    /// by (see [`crate::ExecContext::invoked`]); cleared when the ruling asks for the
    /// resolved name as `argv[0]`.
    pub(crate) invoked: Option<PathBuf>,
}

impl OpenedProgram {
    /// The opened file's device and inode.
    pub(crate) fn file_key(&self) -> Option<(u64, u64)> {
        let st = fstat(self.fd.as_raw_fd()).ok()?;
        Some((st.st_dev, st.st_ino))
    }

    /// The escalated process's `argv[0]`: the path that was judged.
    fn argv0(&self) -> &Path {
        self.invoked.as_deref().unwrap_or(&self.canonical)
    }
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

/// This process's fd directory (`/proc/self/fd`), opened once per session: resolving the
/// path of an opened program (every exec) is then one `readlinkat` in it rather than a
/// lookup of `/proc/self/fd/N` from the root.
#[derive(Debug)]
pub(crate) struct FdDir(Option<OwnedFd>);

impl FdDir {
    /// Opens `/proc/self/fd`; without it (no `/proc`), paths are resolved the slow way.
    pub(crate) fn open() -> Self {
        // SAFETY: open with a valid C string; the result is a new fd we own.
        let raw = unsafe {
            libc::open(
                c"/proc/self/fd".as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        // SAFETY: `raw`, when valid, is a fresh fd owned by nobody else.
        Self((raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw) }))
    }

    /// The path the open file `fd` was reached by, symlinks resolved.
    fn path_of(&self, fd: RawFd) -> io::Result<PathBuf> {
        if let Some(dir) = &self.0 {
            let name = FdName::new(fd);
            let mut buf = [0u8; libc::PATH_MAX as usize];
            // SAFETY: `name` is a NUL-terminated string; readlinkat writes at most
            // `buf.len()` bytes into `buf`.
            let n = unsafe {
                libc::readlinkat(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            // A result filling the whole buffer may be cut: let std grow its buffer.
            if n >= 0 && (n as usize) < buf.len() {
                return Ok(PathBuf::from(OsStr::from_bytes(&buf[..n as usize])));
            }
        }
        std::fs::read_link(format!("/proc/self/fd/{fd}"))
    }

    /// Opens the file `fd` refers to (e.g. one opened `O_PATH`) again, for reading.
    fn reopen(&self, fd: RawFd) -> io::Result<std::fs::File> {
        if let Some(dir) = &self.0 {
            let name = FdName::new(fd);
            // SAFETY: openat with a NUL-terminated name; the result is a new fd we own.
            let raw = unsafe {
                libc::openat(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    libc::O_RDONLY | libc::O_CLOEXEC,
                )
            };
            if raw >= 0 {
                // SAFETY: a fresh fd owned by nobody else.
                return Ok(unsafe { std::fs::File::from_raw_fd(raw) });
            }
        }
        std::fs::File::open(format!("/proc/self/fd/{fd}"))
    }
}

/// An fd number as a NUL-terminated decimal string, without allocating.
struct FdName {
    buf: [u8; 12],
    start: usize,
}

impl FdName {
    fn new(fd: RawFd) -> Self {
        let mut buf = [0u8; 12];
        let mut start = buf.len() - 1; // keep the final NUL
        let mut rest = fd.unsigned_abs();
        loop {
            start -= 1;
            buf[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        Self { buf, start }
    }

    fn as_ptr(&self) -> *const libc::c_char {
        self.buf[self.start..].as_ptr().cast()
    }
}

/// What the escalations of a session share: the fd directory programs are resolved in,
/// and the stacks children start on (kept for reuse: mapping and unmapping one for every
/// spawn costs system calls and, in a multi-threaded server, a TLB shootdown on every CPU
/// running one of its threads).
pub(crate) struct Spawner {
    fd_dir: FdDir,
    stacks: Mutex<Vec<ChildStack>>,
    invoked: InvokedNames,
}

impl Spawner {
    /// Most stacks kept for reuse: one per spawn that may run at the same time.
    const KEPT_STACKS: usize = 8;

    pub(crate) fn new(invoked: InvokedNames) -> Self {
        Self {
            fd_dir: FdDir::open(),
            stacks: Mutex::new(Vec::new()),
            invoked,
        }
    }

    /// Opens the program of `req` and resolves its path.
    pub(crate) fn open_program(&self, req: &ExecRequest) -> io::Result<OpenedProgram> {
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
        let canonical = self
            .fd_dir
            .path_of(raw)
            .or_else(|_| std::fs::canonicalize(&path))?;
        let invoked = self.invoked.trusted(&req.program, &canonical);
        Ok(OpenedProgram {
            fd,
            canonical,
            invoked,
        })
    }

    /// The `PWD=...` entry for the open directory `cwd`: the path it has now, when it has
    /// one (not deleted, absolute).
    pub(crate) fn pwd_entry(&self, cwd: BorrowedFd<'_>) -> Option<Vec<u8>> {
        let path = self.fd_dir.path_of(cwd.as_raw_fd()).ok()?;
        let path = path.as_os_str().as_bytes();
        if !path.starts_with(b"/") || path.ends_with(b" (deleted)") {
            return None;
        }
        let mut entry = b"PWD=".to_vec();
        entry.extend_from_slice(path);
        Some(entry)
    }

    /// Starts `program` for `req` in the open directory `cwd`, with environment `env` and
    /// `fds[i]` on fd number `targets[i]`.
    pub(crate) fn spawn(
        &self,
        req: &ExecRequest,
        program: &OpenedProgram,
        cwd: BorrowedFd<'_>,
        env: &[&[u8]],
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
        // The policy judged the file by its path: that path must name this very file here,
        // outside the sandbox. It does not when the file was reached through a namespace
        // only the sandbox sees (`/proc/<pid>/root/dev/shm/x` names bubblewrap's private
        // /dev), or when it was replaced since (a script is run by that path).
        if !names_file(&program.canonical, &st) {
            return Err(SpawnError {
                errno: libc::ESTALE,
                message: format!(
                    "{} is not the file the policy judged (replaced, or visible only inside \
                     the sandbox); it was not run",
                    program.canonical.display()
                ),
            });
        }
        let script = is_script(program, &self.fd_dir);
        let child = Child::prepare(req, program, cwd, env, fds, targets, script)?;
        let stack = match self.lock_stacks().pop() {
            Some(stack) => stack,
            None => ChildStack::new().map_err(|e| SpawnError::new("child stack", e))?,
        };
        let started = child.start(&stack);
        let mut stacks = self.lock_stacks();
        if stacks.len() < Self::KEPT_STACKS {
            stacks.push(stack);
        }
        started
    }

    fn lock_stacks(&self) -> std::sync::MutexGuard<'_, Vec<ChildStack>> {
        // A Vec of mappings has no invariant a panic could break.
        self.stacks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// True when `path` names the file whose `fstat` is `st` (same device and inode).
pub(crate) fn names_file(path: &Path, st: &libc::stat) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).is_ok_and(|now| now.dev() == st.st_dev && now.ino() == st.st_ino)
}

/// `fstat` of `fd`.
pub(crate) fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: fstat writes into the zeroed buffer we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// True when the opened file starts with `#!` (unreadable files are treated as binaries:
/// an interpreter could not read them either).
fn is_script(program: &OpenedProgram, fd_dir: &FdDir) -> bool {
    let Ok(file) = fd_dir.reopen(program.fd.as_raw_fd()) else {
        return false;
    };
    let mut magic = [0u8; 2];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut magic, 0).is_ok() && &magic == b"#!"
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
    /// The failure of `step`, with the errno and text of `err`.
    pub(crate) fn new(step: &str, err: io::Error) -> Self {
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

/// Steps the child reports on failure (0: no failure reported).
const STEP_CHDIR: u8 = 1;
const STEP_FDS: u8 = 2;
const STEP_EXEC: u8 = 3;

/// Everything the child needs, prepared before it is cloned so it never allocates.
struct Child {
    /// Every string the child needs, NUL-terminated, in one allocation (dozens of
    /// environment entries would otherwise be dozens of allocations per spawn). The
    /// pointers below point into it; it is never changed once they are taken.
    #[allow(dead_code)]
    strings: Vec<u8>,
    path: *const libc::c_char,
    /// The working directory, open (`fchdir`).
    cwd: RawFd,
    argv_ptrs: Vec<*const libc::c_char>,
    env_ptrs: Vec<*const libc::c_char>,
    sh_ptrs: Vec<*const libc::c_char>,
    prog_fd: RawFd,
    script: bool,
    /// (source fd, target fd) pairs.
    pairs: Vec<(RawFd, RawFd)>,
    /// Scratch space for the sources' temporary numbers, filled in the child.
    moved: Vec<RawFd>,
    /// Where the sources are moved first: above every target, so no `dup2` onto a target
    /// can clobber a source that is still needed.
    floor: RawFd,
    /// The fd ranges around the targets, to be marked close-on-exec.
    gaps: Vec<(RawFd, RawFd)>,
    /// The highest signal number (`SIGRTMAX`).
    max_signal: libc::c_int,
    /// Written by the child when it gives up: the failing step (one of `STEP_*`) and its
    /// errno. Stays `(0, 0)` when the child exec'd.
    report: (u8, i32),
}

// SAFETY: the raw pointers point into `strings`, owned by the same struct (a heap buffer,
// which does not move with it), and are never shared: sending the struct to another thread
// is sound.
unsafe impl Send for Child {}

/// Builds [`Child::strings`]: appends NUL-terminated strings, returning their offsets.
struct Strings(Vec<u8>);

impl Strings {
    fn push(&mut self, bytes: &[u8], what: &str) -> Result<usize, SpawnError> {
        if bytes.contains(&0) {
            return Err(SpawnError {
                errno: libc::EINVAL,
                message: format!("NUL byte in {what}"),
            });
        }
        let at = self.0.len();
        self.0.extend_from_slice(bytes);
        self.0.push(0);
        Ok(at)
    }
}

/// A child's stack, with a guard page below it so an overflow faults instead of writing
/// into the server's memory, which the child shares. Free for reuse once the child it was
/// given to has exec'd or exited: the exec'd program has a memory of its own.
#[derive(Debug)]
struct ChildStack {
    base: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is owned by this value alone; moving that ownership to another
// thread is sound.
unsafe impl Send for ChildStack {}

impl ChildStack {
    /// Plenty for `run_child` (a few frames of plain system calls), even unoptimised; pages
    /// never touched cost nothing.
    const SIZE: usize = 256 << 10;

    fn new() -> io::Result<Self> {
        // SAFETY: sysconf has no memory effects.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let len = Self::SIZE + page;
        // SAFETY: a fresh private anonymous mapping, owned by the returned value.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = Self { base, len };
        // SAFETY: the lowest page of our own mapping.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// The initial stack pointer (the stack grows down; page-aligned, so 16-byte aligned).
    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of our mapping.
        unsafe { self.base.cast::<u8>().add(self.len).cast() }
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: our own mapping; no child runs on it any more.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// Sets the calling thread's signal mask to `mask` (all 64 signals, glibc's internal ones
/// included: the raw system call) and returns the previous one.
fn set_thread_sigmask(mask: u64) -> u64 {
    let mut old: u64 = 0;
    // SAFETY: rt_sigprocmask reads and writes 8-byte kernel sigsets we own.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &raw const mask,
            &raw mut old,
            std::mem::size_of::<u64>(),
        );
    }
    old
}

/// Resets `sig` to its default disposition with the raw `rt_sigaction` system call; 0 on
/// success. Async-signal-safe.
fn set_default_disposition(sig: libc::c_int) -> libc::c_long {
    // All zeros is "SIG_DFL, no flags, empty mask" in every architecture's layout of the
    // kernel's struct sigaction (32 bytes cover the largest).
    let default = [0u64; 4];
    // SAFETY: rt_sigaction reads the zeroed struct we own and writes nothing back.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            default.as_ptr(),
            std::ptr::null_mut::<libc::c_void>(),
            std::mem::size_of::<u64>(),
        )
    }
}

/// The child's entry point: `arg` is the `Child` that [`Child::start`] cloned us with.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points to the parent's `Child`, which the parent does not touch until
    // we exec or exit (CLONE_VFORK suspends it); we only run async-signal-safe calls.
    unsafe { (*arg.cast::<Child>()).run_child() }
}

impl Child {
    fn prepare(
        req: &ExecRequest,
        program: &OpenedProgram,
        cwd: BorrowedFd<'_>,
        env: &[&[u8]],
        fds: &[OwnedFd],
        targets: &[i32],
        script: bool,
    ) -> Result<Self, SpawnError> {
        let path = program.canonical.as_os_str().as_bytes();
        let argv0 = program.argv0().as_os_str().as_bytes();
        // argv[0] is the judged path, also when the request sent no argv at all.
        let args = req.argv.get(1..).unwrap_or_default();
        let size = path.len()
            + argv0.len()
            + args.iter().map(Vec::len).sum::<usize>()
            + env.iter().map(|e| e.len()).sum::<usize>()
            + args.len()
            + env.len()
            + 3;
        let mut strings = Strings(Vec::with_capacity(size));
        let path = strings.push(path, "program path")?;
        let mut argv = Vec::with_capacity(args.len() + 1);
        argv.push(strings.push(argv0, "argv")?);
        for arg in args {
            argv.push(strings.push(arg, "argv")?);
        }
        let env = env
            .iter()
            .map(|e| strings.push(e, "environment"))
            .collect::<Result<Vec<_>, _>>()?;
        // All pushed: `strings` is final, pointers into it stay valid.
        let strings = strings.0;
        let at = |offset: usize| -> *const libc::c_char { strings[offset..].as_ptr().cast() };
        let terminated = |offsets: &[usize]| -> Vec<*const libc::c_char> {
            let mut ptrs = Vec::with_capacity(offsets.len() + 2);
            ptrs.extend(offsets.iter().map(|&o| at(o)));
            ptrs.push(std::ptr::null());
            ptrs
        };
        let argv_ptrs = terminated(&argv);
        let env_ptrs = terminated(&env);
        let mut sh_ptrs = Vec::with_capacity(argv.len() + 2);
        sh_ptrs.extend([c"/bin/sh".as_ptr(), at(path)]);
        sh_ptrs.extend(argv.iter().skip(1).map(|&o| at(o)));
        sh_ptrs.push(std::ptr::null());
        let path = at(path);
        let pairs: Vec<(RawFd, RawFd)> = fds
            .iter()
            .map(AsRawFd::as_raw_fd)
            .zip(targets.iter().copied())
            .collect();
        let mut sorted_targets: Vec<RawFd> = targets.to_vec();
        sorted_targets.sort_unstable();
        // Computed here, saturating: the child must not do arithmetic that could panic.
        let floor = sorted_targets
            .last()
            .map_or(3, |t| t.saturating_add(1).max(3));
        let mut gaps = Vec::with_capacity(sorted_targets.len() + 1);
        let mut low: RawFd = 0;
        for &target in &sorted_targets {
            if target > low {
                gaps.push((low, target - 1));
            }
            low = low.max(target.saturating_add(1));
        }
        if sorted_targets.last() != Some(&RawFd::MAX) {
            gaps.push((low, RawFd::MAX));
        }
        Ok(Self {
            strings,
            path,
            cwd: cwd.as_raw_fd(),
            argv_ptrs,
            env_ptrs,
            sh_ptrs,
            prog_fd: program.fd.as_raw_fd(),
            script,
            moved: vec![-1; pairs.len()],
            pairs,
            floor,
            gaps,
            max_signal: libc::SIGRTMAX(),
            report: (0, 0),
        })
    }

    /// Clones the child vfork-style (`CLONE_VM | CLONE_VFORK`): no page tables to copy,
    /// however large the server, and this thread resumes only once the child has exec'd or
    /// given up, so the outcome is known on return, from `report`, without a pipe.
    ///
    /// The child shares our memory while other threads keep running, so it follows the
    /// vfork rules: its own stack, nothing allocated, no locks, writes only to `self`
    /// (which this thread, suspended, does not touch meanwhile). Every signal is blocked
    /// around the clone, so no handler of ours can run in the child before it has reset
    /// every disposition to the default.
    fn start(mut self, stack: &ChildStack) -> Result<EscalatedChild, SpawnError> {
        let saved_mask = set_thread_sigmask(!0);
        // SAFETY: the child runs `child_main` on its own stack and only calls
        // async-signal-safe functions on memory prepared before; it never returns (it
        // execs or `_exit`s). SIGCHLD as exit signal makes it an ordinary child to
        // `waitpid` (exec would make it one anyway).
        let pid = unsafe {
            libc::clone(
                child_main,
                stack.top(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                (&raw mut self).cast(),
            )
        };
        let clone_error = io::Error::last_os_error();
        set_thread_sigmask(saved_mask);
        if pid < 0 {
            return Err(SpawnError::new("clone", clone_error));
        }
        // SAFETY: the child is done with `self` (it exec'd or exited): read what it wrote.
        let (step, errno) = unsafe { std::ptr::read_volatile(&raw const self.report) };
        if step != 0 {
            reap(pid);
            let step = match step {
                STEP_CHDIR => "cannot change to the working directory",
                STEP_FDS => "cannot set up file descriptors",
                _ => "cannot execute",
            };
            return Err(SpawnError::new(step, io::Error::from_raw_os_error(errno)));
        }
        // From here on the child exists: EscalatedChild's Drop kills and reaps it on error.
        let pidfd = pidfd_open(pid)
            .map_err(|e| SpawnError::new("pidfd_open", e))
            .and_then(|fd| crate::stream::register(fd).map_err(|e| SpawnError::new("pidfd", e)));
        match pidfd {
            Ok(pidfd) => Ok(EscalatedChild {
                pid,
                pidfd,
                reaped: false,
            }),
            Err(err) => {
                // SAFETY: our own unreaped child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                reap(pid);
                Err(err)
            }
        }
    }

    /// In the child: set up and exec, or record the failing step in `report` and
    /// `_exit(127)`.
    ///
    /// # Safety
    /// Only call in the child cloned by [`Child::start`].
    unsafe fn run_child(&mut self) -> ! {
        let errno = || {
            io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO)
        };
        // Dispositions first, while every signal is still blocked: a handler of the
        // server's must never run here, and an ignored signal would stay ignored across
        // exec. The raw system call, because glibc's wrapper refuses its two internal
        // signals, which a server started with posix_spawn inherits ignored.
        for sig in 1..=self.max_signal {
            if set_default_disposition(sig) != 0 {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        libc::setpgid(0, 0);
        set_thread_sigmask(0);
        if libc::fchdir(self.cwd) != 0 {
            self.fail(STEP_CHDIR, errno());
        }
        // Move every source (and the program fd) above all targets, so no dup2 below can
        // clobber an fd that is still needed.
        for i in 0..self.pairs.len() {
            let moved = libc::fcntl(self.pairs[i].0, libc::F_DUPFD_CLOEXEC, self.floor);
            if moved < 0 {
                self.fail(STEP_FDS, errno());
            }
            self.moved[i] = moved;
        }
        let prog = libc::fcntl(self.prog_fd, libc::F_DUPFD_CLOEXEC, self.floor);
        if prog < 0 {
            self.fail(STEP_FDS, errno());
        }
        let (step, err) = self.map_and_exec(prog);
        self.fail(step, err)
    }

    /// In the child: records why it gives up, for the parent to read, and exits.
    unsafe fn fail(&mut self, step: u8, errno: i32) -> ! {
        std::ptr::write_volatile(&raw mut self.report, (step, errno));
        libc::_exit(127)
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
        for &(low, high) in &self.gaps {
            cloexec_range(low, high);
        }
        if self.script {
            libc::execve(self.path, self.argv_ptrs.as_ptr(), self.env_ptrs.as_ptr());
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

/// Waits for our own child `pid` to end (it already has, or is about to).
fn reap(pid: libc::pid_t) {
    loop {
        // SAFETY: waitpid on our own child; a null status pointer is allowed.
        let rc = unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        if rc >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;

    fn request(program: &str, argv: &[&str], cwd: &str) -> ExecRequest {
        ExecRequest {
            program: program.as_bytes().to_vec(),
            argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
            cwd: cwd.as_bytes().to_vec(),
            env: vec![b"PATH=/usr/bin:/bin".to_vec()],
        }
    }

    /// A close-on-exec pipe: (read end, write end).
    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut fds = [-1; 2];
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    fn read_all(fd: OwnedFd) -> String {
        let mut text = String::new();
        std::fs::File::from(fd).read_to_string(&mut text).unwrap();
        text
    }

    /// Spawns `req` with `fds` on `targets` (dropping our copies), waits for it, and
    /// returns its pid and status.
    async fn run(
        req: ExecRequest,
        fds: Vec<OwnedFd>,
        targets: Vec<i32>,
    ) -> Result<(i32, ExitStatus), SpawnError> {
        let spawner = Spawner::new(InvokedNames::new(None));
        let opened = spawner.open_program(&req).expect("open the program");
        let cwd = crate::policy::CwdDir::new(req.cwd.clone());
        let cwd = cwd
            .fd()
            .map_err(|e| SpawnError::new("cannot change to the working directory", e))?;
        let env: Vec<&[u8]> = req.env.iter().map(Vec::as_slice).collect();
        let mut child = spawner.spawn(&req, &opened, cwd, &env, &fds, &targets)?;
        drop(fds);
        let status = child.wait().await.expect("wait");
        Ok((child.pid(), status))
    }

    #[tokio::test]
    async fn fds_land_on_their_targets_when_targets_are_each_others_sources() {
        let (r1, w1) = pipe();
        let (r2, w2) = pipe();
        // Each source goes to the other's number: moving either one first without care
        // would clobber the other.
        let (t1, t2) = (w2.as_raw_fd(), w1.as_raw_fd());
        let script = format!("echo one > /dev/fd/{t1}; echo two > /dev/fd/{t2}");
        let req = request("/bin/sh", &["sh", "-c", &script], "/");
        let (_, status) = run(req, vec![w1, w2], vec![t1, t2]).await.unwrap();
        assert_eq!(status, ExitStatus::Code(0));
        assert_eq!(read_all(r1), "one\n");
        assert_eq!(read_all(r2), "two\n");
    }

    #[tokio::test]
    async fn only_the_passed_fds_reach_the_child() {
        let (r, w) = pipe();
        // An fd of ours without close-on-exec must not reach the child.
        let stray = unsafe { OwnedFd::from_raw_fd(libc::dup(r.as_raw_fd())) };
        let script = format!(
            "if [ -e /dev/fd/{} ]; then echo leaked; else echo closed; fi",
            stray.as_raw_fd()
        );
        let req = request("/bin/sh", &["sh", "-c", &script], "/");
        let (_, status) = run(req, vec![w], vec![1]).await.unwrap();
        assert_eq!(status, ExitStatus::Code(0));
        assert_eq!(read_all(r), "closed\n");
    }

    #[tokio::test]
    async fn the_child_has_its_own_group_default_signals_and_an_empty_mask() {
        // This thread (the one that clones: a current-thread runtime) blocks SIGUSR1, and
        // Rust ignores SIGPIPE: neither may reach the child.
        let mut usr1: libc::sigset_t = unsafe { std::mem::zeroed() };
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        unsafe {
            libc::sigemptyset(&mut usr1);
            libc::sigaddset(&mut usr1, libc::SIGUSR1);
            libc::pthread_sigmask(libc::SIG_BLOCK, &usr1, &mut old);
        }
        let (r, w) = pipe();
        let req = request("/bin/cat", &["cat", "/proc/self/status"], "/");
        let (_, status) = run(req, vec![w], vec![1]).await.unwrap();
        let (r2, w2) = pipe();
        let req = request("/bin/cat", &["cat", "/proc/self/stat"], "/");
        let (pid, status2) = run(req, vec![w2], vec![1]).await.unwrap();
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        assert_eq!(
            (status, status2),
            (ExitStatus::Code(0), ExitStatus::Code(0))
        );
        let text = read_all(r);
        for field in ["SigBlk", "SigIgn"] {
            let line = text
                .lines()
                .find(|l| l.starts_with(field))
                .unwrap_or_else(|| panic!("no {field} in {text}"));
            assert!(line.ends_with("\t0000000000000000"), "{line}");
        }
        // "pid (comm) state ppid pgrp ...": the child leads its own process group.
        let stat = read_all(r2);
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        let pgrp: i32 = after_comm.split(' ').nth(2).unwrap().parse().unwrap();
        assert_eq!(pgrp, pid, "{stat}");
    }

    #[tokio::test]
    async fn argv0_is_the_judged_path_never_the_requests() {
        let (r, w) = pipe();
        let req = request("/bin/cat", &["git-difftool", "/proc/self/cmdline"], "/");
        let (_, status) = run(req, vec![w], vec![1]).await.unwrap();
        assert_eq!(status, ExitStatus::Code(0));
        let resolved = std::fs::canonicalize("/bin/cat").unwrap();
        assert_eq!(
            read_all(r),
            format!("{}\0/proc/self/cmdline\0", resolved.display())
        );
        // A request without argv still gives the program its argv[0].
        let (r, w) = pipe();
        let req = request("/usr/bin/env", &[], "/");
        let (_, status) = run(req, vec![w], vec![1]).await.unwrap();
        assert_eq!(status, ExitStatus::Code(0));
        assert_eq!(read_all(r), "PATH=/usr/bin:/bin\n");
    }

    #[tokio::test]
    async fn a_failing_step_is_reported_with_its_errno() {
        let err = run(
            request("/bin/true", &["true"], "/nonexistent/dir"),
            vec![],
            vec![],
        )
        .await
        .unwrap_err();
        assert_eq!(err.errno, libc::ENOENT);
        assert_eq!(
            err.message,
            "cannot change to the working directory: No such file or directory"
        );

        // No fd can have this number.
        let (_r, w) = pipe();
        let err = run(
            request("/bin/true", &["true"], "/"),
            vec![w],
            vec![RawFd::MAX],
        )
        .await
        .unwrap_err();
        assert!(
            err.message.starts_with("cannot set up file descriptors: "),
            "{}",
            err.message
        );

        // Not executable, even for root: the kernel refuses the exec itself.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        std::fs::write(&path, "not a program\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let path = path.to_str().unwrap();
        let err = run(request(path, &["data"], "/"), vec![], vec![])
            .await
            .unwrap_err();
        assert_eq!(err.errno, libc::EACCES);
        assert_eq!(err.message, "cannot execute: Permission denied");
    }

    #[tokio::test]
    async fn a_program_without_a_shebang_is_run_by_sh_and_statuses_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain");
        std::fs::write(&path, "echo \"from sh: $1\"\nexit 7\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (r, w) = pipe();
        let req = request(path.to_str().unwrap(), &["plain", "arg"], "/");
        let (_, status) = run(req, vec![w], vec![1]).await.unwrap();
        assert_eq!(status, ExitStatus::Code(7));
        assert_eq!(read_all(r), "from sh: arg\n");

        let req = request("/bin/sh", &["sh", "-c", "kill -9 $$"], "/");
        let (_, status) = run(req, vec![], vec![]).await.unwrap();
        assert_eq!(status, ExitStatus::Signal(libc::SIGKILL));
    }
}
