//! Exec notifications: every `execve`/`execveat` of the sandbox, handed to an [`ExecGate`].
//!
//! The handler reads the program's path from the caller and identifies the file it names
//! in the caller's view (`/proc/<pid>/root`, `cwd` or the `execveat` directory fd): a path
//! that names nothing is answered at once with the errno the kernel would give (`ENOENT`,
//! `ENOTDIR`...), so `execvp`'s walk over `PATH` costs one short round trip per miss.
//! Everything else goes to the gate as an [`ExecCall`], which can compare the caller's argv
//! with an expected one, read the whole request (bounded), and answer.
//!
//! The very first exec under the filter is the session's shell, started by the init
//! before any sandboxed code runs (the filter is installed in that very process): it is
//! continued without asking.
//!
//! What is read from the caller can change after it was read (another thread rewriting
//! the path or argv, a rename in a writable folder): an exec the gate continues runs
//! whatever the kernel then finds. That exec is still inside the sandbox; a gate must
//! never let a continued exec's verdict depend on more than that (it cannot escalate).

use crate::notify::{Handler, Handlers, Notification, Response};
use crate::seccomp::Notified;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Longest program path read from a caller (the kernel's `PATH_MAX`).
const PATH_MAX: usize = 4096;
/// Most argv plus env entries read from a caller.
pub const MAX_ENTRIES: usize = 16384;
/// Most bytes of argv and env strings (and their pointer arrays) read from a caller.
pub const MAX_BYTES: usize = 1 << 20;
const PAGE: u64 = 4096;

/// `execveat`'s flags.
const AT_EMPTY_PATH: u64 = 0x1000;
const AT_SYMLINK_NOFOLLOW: u64 = 0x100;

/// Decides the execs of a sandbox. Called on the supervisor's thread: anything that may
/// wait must move the call elsewhere (it is `Send`), and answer it from there.
pub trait ExecGate: Send + Sync {
    /// Decides `call`; dropping it without an answer fails the exec with `EPERM`.
    fn exec(&self, call: ExecCall);
}

/// The handlers that trap `execve` and `execveat` and hand them to `gate`.
pub fn exec_handlers(gate: Arc<dyn ExecGate>) -> Handlers {
    let handler = Arc::new(ExecHandler {
        gate,
        shell_started: AtomicBool::new(false),
    });
    let mut handlers = Handlers::default();
    for nr in [libc::SYS_execve, libc::SYS_execveat] {
        handlers.add(Notified { nr, arg0: None }, handler.clone());
    }
    handlers
}

struct ExecHandler {
    gate: Arc<dyn ExecGate>,
    shell_started: AtomicBool,
}

impl Handler for ExecHandler {
    fn handle(&self, notification: Notification) {
        if !self.shell_started.swap(true, Ordering::AcqRel) {
            // The init's exec of the session's shell: nothing sandboxed has run yet.
            return notification.respond(Response::Continue);
        }
        match ExecCall::new(notification) {
            Ok(call) => self.gate.exec(call),
            Err((notification, errno)) => notification.respond(Response::Errno(errno)),
        }
    }
}

/// A file's identity: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileKey {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

impl FileKey {
    /// The identity of the file `path` names here (symlinks followed).
    pub fn of_path(path: &std::path::Path) -> io::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)?;
        Ok(FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

/// What a caller's exec asks for, read from its memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRead {
    /// The program: the path as passed when absolute, else joined to the caller's working
    /// directory (or the `execveat` directory).
    pub program: Vec<u8>,
    /// The argv, `argv[0]` included.
    pub argv: Vec<Vec<u8>>,
    /// The caller's working directory.
    pub cwd: Vec<u8>,
    /// The environment, one `NAME=value` entry per element.
    pub env: Vec<Vec<u8>>,
}

/// One trapped exec, waiting for its answer.
#[derive(Debug)]
pub struct ExecCall {
    notification: Notification,
    path: Vec<u8>,
    file: FileKey,
}

impl ExecCall {
    fn new(notification: Notification) -> Result<Self, (Notification, i32)> {
        let errno = |e: io::Error| e.raw_os_error().unwrap_or(libc::EIO);
        let path = match read_path(&notification) {
            Ok(path) => path,
            Err(e) => return Err((notification, errno(e))),
        };
        let file = match stat_in_caller(&notification, &path) {
            Ok(file) => file,
            Err(e) => return Err((notification, errno(e))),
        };
        Ok(ExecCall {
            notification,
            path,
            file,
        })
    }

    /// The calling thread's id, as seen from this process.
    pub fn pid(&self) -> i32 {
        self.notification.pid
    }

    /// The calling thread's process (thread-group) id, when it differs from
    /// [`ExecCall::pid`] (an exec from another thread than the main one).
    pub fn tgid(&self) -> Option<i32> {
        let status = std::fs::read(format!("/proc/{}/status", self.notification.pid)).ok()?;
        let line = status
            .split(|&b| b == b'\n')
            .find_map(|l| l.strip_prefix(b"Tgid:"))?;
        let tgid: i32 = std::str::from_utf8(line).ok()?.trim().parse().ok()?;
        (tgid != self.notification.pid).then_some(tgid)
    }

    /// The file the program path named when it was checked.
    pub fn file(&self) -> FileKey {
        self.file
    }

    /// The program path as the caller passed it.
    pub fn path(&self) -> &[u8] {
        &self.path
    }

    /// The program the caller runs now (`/proc/<pid>/exe`), for messages.
    pub fn caller_program(&self) -> PathBuf {
        std::fs::read_link(format!("/proc/{}/exe", self.notification.pid))
            .unwrap_or_else(|_| PathBuf::from("a program"))
    }

    /// Whether the caller's argv is exactly `expected` (byte for byte, same length), read
    /// now and confirmed with the notification's validity check.
    pub fn argv_is(&self, expected: &[Vec<u8>]) -> bool {
        let mut mem = Remote::new(&self.notification);
        let argv = self.argv_ptr();
        for (i, want) in expected.iter().enumerate() {
            let ptr = match mem.pointer(argv, i) {
                Ok(ptr) if ptr != 0 => ptr,
                _ => return false,
            };
            if !matches!(mem.cstr_is(ptr, want), Ok(true)) {
                return false;
            }
        }
        matches!(mem.pointer(argv, expected.len()), Ok(0)) && self.notification.is_valid()
    }

    /// Reads the whole request: program, argv, env (at most [`MAX_ENTRIES`] entries and
    /// [`MAX_BYTES`] bytes, else `E2BIG`) and working directory.
    pub fn read(&self) -> io::Result<ExecRead> {
        let mut mem = Remote::new(&self.notification);
        let argv = mem.strings(self.argv_ptr(), MAX_ENTRIES)?;
        let env = mem.strings(self.envp_ptr(), MAX_ENTRIES - argv.len())?;
        let cwd = proc_link(self.notification.pid, "cwd")?;
        let program = if self.path.starts_with(b"/") {
            self.path.clone()
        } else {
            let mut base = match self.execveat_dirfd() {
                Some(fd) => proc_link(self.notification.pid, &format!("fd/{fd}"))?,
                None => cwd.clone(),
            };
            if !self.path.is_empty() {
                if !base.ends_with(b"/") {
                    base.push(b'/');
                }
                base.extend_from_slice(&self.path);
            }
            base
        };
        if !self.notification.is_valid() {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(ExecRead {
            program,
            argv,
            cwd,
            env,
        })
    }

    /// Lets the exec go on as the caller made it.
    pub fn allow(self) {
        self.notification.respond(Response::Continue);
    }

    /// Fails the exec with `errno`, saying nothing.
    pub fn refuse(self, errno: i32) {
        self.notification.respond(Response::Errno(errno));
    }

    /// Fails the exec with `errno` after writing `line` (one line, newline included) to
    /// the caller's stderr. Waits at most 100 ms for room in a full pipe or terminal: call
    /// it off the supervisor's thread.
    pub fn deny(self, errno: i32, line: &[u8]) {
        if let Ok(stderr) = self.notification.fetch_fd(2) {
            write_line(&stderr, line);
        }
        self.notification.respond(Response::Errno(errno));
    }

    fn argv_ptr(&self) -> u64 {
        let a = &self.notification.args;
        if self.notification.nr == libc::SYS_execveat {
            a[2]
        } else {
            a[1]
        }
    }

    fn envp_ptr(&self) -> u64 {
        let a = &self.notification.args;
        if self.notification.nr == libc::SYS_execveat {
            a[3]
        } else {
            a[2]
        }
    }

    /// The `execveat` directory fd, when the path is resolved against one.
    fn execveat_dirfd(&self) -> Option<i32> {
        let a = &self.notification.args;
        let dirfd = a[0] as i32;
        (self.notification.nr == libc::SYS_execveat && dirfd != libc::AT_FDCWD).then_some(dirfd)
    }
}

/// Writes `line` to `fd` in one `write`, waiting at most 100 ms for room.
fn write_line(fd: &OwnedFd, line: &[u8]) {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: poll on one pollfd we own.
    if unsafe { libc::poll(&mut pfd, 1, 100) } != 1 || pfd.revents & libc::POLLOUT == 0 {
        return;
    }
    // SAFETY: writes from our own buffer to our own duplicate of the caller's fd.
    unsafe { libc::write(fd.as_raw_fd(), line.as_ptr().cast(), line.len()) };
}

fn proc_link(pid: i32, what: &str) -> io::Result<Vec<u8>> {
    Ok(std::fs::read_link(format!("/proc/{pid}/{what}"))?
        .into_os_string()
        .as_bytes()
        .to_vec())
}

/// The program path of a trapped exec (execve's first argument, execveat's second).
fn read_path(n: &Notification) -> io::Result<Vec<u8>> {
    let addr = if n.nr == libc::SYS_execveat {
        n.args[1]
    } else {
        n.args[0]
    };
    let mut mem = Remote::new(n);
    let path = mem.cstr(addr, PATH_MAX)?;
    if path.is_empty() && !(n.nr == libc::SYS_execveat && n.args[4] & AT_EMPTY_PATH != 0) {
        return Err(io::Error::from_raw_os_error(libc::ENOENT));
    }
    Ok(path)
}

/// The identity of what `path` names for the caller: from its root, its working directory
/// or its `execveat` directory fd, through `/proc/<pid>/`.
fn stat_in_caller(n: &Notification, path: &[u8]) -> io::Result<FileKey> {
    let execveat = n.nr == libc::SYS_execveat;
    // `/proc/<pid>/fd/<n>/` plus the path and a NUL, on the stack.
    let mut buf = [0u8; 48 + PATH_MAX + 2];
    let mut len = 0;
    let mut put = |bytes: &[u8]| -> io::Result<()> {
        let end = len + bytes.len();
        if end >= buf.len() {
            return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
        buf[len..end].copy_from_slice(bytes);
        len = end;
        Ok(())
    };
    let mut number = itoa(n.pid as i64);
    put(b"/proc/")?;
    put(number.as_bytes())?;
    if path.starts_with(b"/") {
        put(b"/root")?;
        put(path)?;
    } else {
        let dirfd = n.args[0] as i32;
        if execveat && dirfd != libc::AT_FDCWD {
            put(b"/fd/")?;
            number = itoa(i64::from(dirfd));
            put(number.as_bytes())?;
        } else {
            put(b"/cwd")?;
        }
        if !path.is_empty() {
            put(b"/")?;
            put(path)?;
        }
    }
    if path.contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let c_path = std::ffi::CStr::from_bytes_until_nul(&buf[..=len])
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: stat/lstat with a valid C string into our own buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let nofollow = execveat && n.args[4] & AT_SYMLINK_NOFOLLOW != 0 && !path.is_empty();
    let rc = unsafe {
        if nofollow {
            libc::lstat(c_path.as_ptr(), &mut st)
        } else {
            libc::stat(c_path.as_ptr(), &mut st)
        }
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if !n.is_valid() {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(FileKey {
        dev: st.st_dev,
        ino: st.st_ino,
    })
}

type Page = Box<[u8; PAGE as usize]>;

/// Most pages a thread keeps for reuse.
const POOLED_PAGES: usize = 8;

thread_local! {
    /// Pages for [`Remote`], reused: the supervisor's thread reads a recognised exec
    /// without allocating once it has read a few.
    static POOL: std::cell::RefCell<Vec<Page>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The decimal digits of `v`, without allocating.
fn itoa(v: i64) -> Itoa {
    let mut out = Itoa {
        buf: [0; 20],
        start: 20,
    };
    let negative = v < 0;
    let mut v = v.unsigned_abs();
    loop {
        out.start -= 1;
        out.buf[out.start] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if negative {
        out.start -= 1;
        out.buf[out.start] = b'-';
    }
    out
}

struct Itoa {
    buf: [u8; 20],
    start: usize,
}

impl Itoa {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// Reads a caller's memory a page at a time, keeping the pages read: argv and env
/// strings usually sit together, so a whole request takes a few reads.
struct Remote<'a> {
    n: &'a Notification,
    pages: Vec<(u64, Page)>,
}

impl Drop for Remote<'_> {
    fn drop(&mut self) {
        POOL.with_borrow_mut(|pool| {
            for (_, page) in self.pages.drain(..) {
                if pool.len() < POOLED_PAGES {
                    pool.push(page);
                }
            }
        });
    }
}

impl<'a> Remote<'a> {
    fn new(n: &'a Notification) -> Self {
        Remote {
            n,
            pages: Vec::with_capacity(4),
        }
    }

    /// The page at `base` (page-aligned).
    fn page(&mut self, base: u64) -> io::Result<&[u8; PAGE as usize]> {
        if let Some(i) = self.pages.iter().position(|(b, _)| *b == base) {
            return Ok(&self.pages[i].1);
        }
        if self.pages.len() * PAGE as usize >= MAX_BYTES {
            return Err(io::Error::from_raw_os_error(libc::E2BIG));
        }
        let mut page = POOL
            .with_borrow_mut(Vec::pop)
            .unwrap_or_else(|| Box::new([0u8; PAGE as usize]));
        if let Err(err) = self.n.read_memory(base, &mut page[..]) {
            POOL.with_borrow_mut(|pool| pool.push(page));
            return Err(err);
        }
        self.pages.push((base, page));
        Ok(&self.pages[self.pages.len() - 1].1)
    }

    /// The NUL-terminated string at `addr`, at most `max` bytes (else `E2BIG`).
    fn cstr(&mut self, mut addr: u64, max: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let base = addr & !(PAGE - 1);
            let off = (addr - base) as usize;
            let page = self.page(base)?;
            match page[off..].iter().position(|&b| b == 0) {
                Some(end) => {
                    out.extend_from_slice(&page[off..off + end]);
                    return if out.len() > max {
                        Err(io::Error::from_raw_os_error(libc::E2BIG))
                    } else {
                        Ok(out)
                    };
                }
                None => out.extend_from_slice(&page[off..]),
            }
            if out.len() > max {
                return Err(io::Error::from_raw_os_error(libc::E2BIG));
            }
            addr = base
                .checked_add(PAGE)
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EFAULT))?;
        }
    }

    /// Pointer `i` of the array at `addr`.
    fn pointer(&mut self, addr: u64, i: usize) -> io::Result<u64> {
        let at = (i as u64)
            .checked_mul(8)
            .and_then(|off| addr.checked_add(off))
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EFAULT))?;
        let mut word = [0u8; 8];
        let mut done = 0;
        while done < 8 {
            let here = at + done as u64;
            let base = here & !(PAGE - 1);
            let off = (here - base) as usize;
            let take = (8 - done).min(PAGE as usize - off);
            let page = self.page(base)?;
            word[done..done + take].copy_from_slice(&page[off..off + take]);
            done += take;
        }
        Ok(u64::from_ne_bytes(word))
    }

    /// Whether the NUL-terminated string at `addr` is exactly `want`.
    fn cstr_is(&mut self, mut addr: u64, mut want: &[u8]) -> io::Result<bool> {
        loop {
            let base = addr & !(PAGE - 1);
            let off = (addr - base) as usize;
            let page = self.page(base)?;
            let here = &page[off..];
            let n = here.len().min(want.len());
            if here[..n] != want[..n] {
                return Ok(false);
            }
            if n < here.len() {
                // `want` ends inside this page: the caller's string must end there too.
                return Ok(here[n] == 0);
            }
            want = &want[n..];
            addr = base
                .checked_add(PAGE)
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EFAULT))?;
        }
    }

    /// The strings of the NULL-terminated pointer array at `addr` (a NULL array is empty,
    /// as for the kernel), at most `max` of them (else `E2BIG`).
    fn strings(&mut self, addr: u64, max: usize) -> io::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        if addr == 0 {
            return Ok(out);
        }
        for i in 0.. {
            if i > max {
                return Err(io::Error::from_raw_os_error(libc::E2BIG));
            }
            let ptr = self.pointer(addr, i)?;
            if ptr == 0 {
                break;
            }
            out.push(self.cstr(ptr, MAX_BYTES)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn itoa_writes_decimal_digits() {
        for v in [0i64, 7, 42, 4_194_304, -1, i64::MIN, i64::MAX] {
            assert_eq!(itoa(v).as_bytes(), v.to_string().as_bytes());
        }
    }
}
