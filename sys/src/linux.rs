//! The system calls, on Linux.

use core::ffi::CStr;
use core::fmt;
use linux_raw_sys::general as g;
use linux_raw_sys::net as n;

#[cfg(not(target_pointer_width = "64"))]
compile_error!("execgate-sys assumes a 64-bit Linux target (x86_64, aarch64 or riscv64)");

/// A file descriptor number.
pub type Fd = i32;

/// The result of a system call: the kernel's error number on failure.
pub type Result<T> = core::result::Result<T, Errno>;

/// Most fds one [`send_with_fds`] call may carry (the kernel's `SCM_MAX_FD`).
pub const MAX_SEND_FDS: usize = 253;

mod arch {
    /// `syscall(nr, a0, ..., a5)`: the kernel's raw return value (`-errno` on failure).
    ///
    /// # Safety
    /// The arguments must be valid for system call `nr`.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(crate) unsafe fn syscall(nr: u32, args: [usize; 6]) -> isize {
        let ret: isize;
        // SAFETY: the caller vouches for the arguments; rcx and r11 are clobbered by
        // `syscall` itself.
        unsafe {
            core::arch::asm!(
                "syscall",
                inlateout("rax") nr as isize => ret,
                in("rdi") args[0],
                in("rsi") args[1],
                in("rdx") args[2],
                in("r10") args[3],
                in("r8") args[4],
                in("r9") args[5],
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack, preserves_flags),
            );
        }
        ret
    }

    /// `syscall(nr, a0, ..., a5)`: the kernel's raw return value (`-errno` on failure).
    ///
    /// # Safety
    /// The arguments must be valid for system call `nr`.
    #[cfg(target_arch = "aarch64")]
    #[inline(always)]
    pub(crate) unsafe fn syscall(nr: u32, args: [usize; 6]) -> isize {
        let ret: isize;
        // SAFETY: the caller vouches for the arguments.
        unsafe {
            core::arch::asm!(
                "svc 0",
                in("x8") nr as usize,
                inlateout("x0") args[0] => ret,
                in("x1") args[1],
                in("x2") args[2],
                in("x3") args[3],
                in("x4") args[4],
                in("x5") args[5],
                options(nostack),
            );
        }
        ret
    }

    /// `syscall(nr, a0, ..., a5)`: the kernel's raw return value (`-errno` on failure).
    ///
    /// # Safety
    /// The arguments must be valid for system call `nr`.
    #[cfg(target_arch = "riscv64")]
    #[inline(always)]
    pub(crate) unsafe fn syscall(nr: u32, args: [usize; 6]) -> isize {
        let ret: isize;
        // SAFETY: the caller vouches for the arguments.
        unsafe {
            core::arch::asm!(
                "ecall",
                in("a7") nr as usize,
                inlateout("a0") args[0] => ret,
                in("a1") args[1],
                in("a2") args[2],
                in("a3") args[3],
                in("a4") args[4],
                in("a5") args[5],
                options(nostack),
            );
        }
        ret
    }
}

/// Runs a system call and turns a `-errno` return into `Err`.
///
/// # Safety
/// The arguments must be valid for system call `nr`.
#[inline(always)]
unsafe fn call(nr: u32, args: [usize; 6]) -> Result<usize> {
    // SAFETY: forwarded from the caller.
    let ret = unsafe { arch::syscall(nr, args) };
    if (-4095..0).contains(&ret) {
        Err(Errno(-ret as i32))
    } else {
        Ok(ret as usize)
    }
}

/// Retries `f` while it fails with `EINTR`.
fn retry<T>(mut f: impl FnMut() -> Result<T>) -> Result<T> {
    loop {
        match f() {
            Err(Errno::EINTR) => continue,
            other => return other,
        }
    }
}

/// A kernel error number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(i32);

impl Errno {
    /// Interrupted system call.
    pub const EINTR: Self = Self(linux_raw_sys::errno::EINTR as i32);
    /// Resource temporarily unavailable (a non-blocking call would block).
    pub const EAGAIN: Self = Self(linux_raw_sys::errno::EAGAIN as i32);
    /// No such file or directory.
    pub const ENOENT: Self = Self(linux_raw_sys::errno::ENOENT as i32);
    /// Exec format error.
    pub const ENOEXEC: Self = Self(linux_raw_sys::errno::ENOEXEC as i32);
    /// Broken pipe.
    pub const EPIPE: Self = Self(linux_raw_sys::errno::EPIPE as i32);
    /// Connection reset by peer.
    pub const ECONNRESET: Self = Self(linux_raw_sys::errno::ECONNRESET as i32);
    /// Connection refused.
    pub const ECONNREFUSED: Self = Self(linux_raw_sys::errno::ECONNREFUSED as i32);
    /// Transport endpoint is not connected.
    pub const ENOTCONN: Self = Self(linux_raw_sys::errno::ENOTCONN as i32);
    /// Input/output error.
    pub const EIO: Self = Self(linux_raw_sys::errno::EIO as i32);
    /// File name too long.
    pub const ENAMETOOLONG: Self = Self(linux_raw_sys::errno::ENAMETOOLONG as i32);

    /// The error with kernel number `errno`.
    pub const fn from_raw(errno: i32) -> Self {
        Self(errno)
    }

    /// The kernel's number for this error.
    pub const fn raw(self) -> i32 {
        self.0
    }

    /// The C library's description of the error, for the errors a wrapper can meet.
    pub fn description(self) -> Option<&'static str> {
        use linux_raw_sys::errno as e;
        let text = match self.0 as u32 {
            e::EPERM => "Operation not permitted",
            e::ENOENT => "No such file or directory",
            e::ESRCH => "No such process",
            e::EINTR => "Interrupted system call",
            e::EIO => "Input/output error",
            e::ENXIO => "No such device or address",
            e::E2BIG => "Argument list too long",
            e::ENOEXEC => "Exec format error",
            e::EBADF => "Bad file descriptor",
            e::ECHILD => "No child processes",
            e::EAGAIN => "Resource temporarily unavailable",
            e::ENOMEM => "Cannot allocate memory",
            e::EACCES => "Permission denied",
            e::EFAULT => "Bad address",
            e::EBUSY => "Device or resource busy",
            e::EEXIST => "File exists",
            e::ENODEV => "No such device",
            e::ENOTDIR => "Not a directory",
            e::EISDIR => "Is a directory",
            e::EINVAL => "Invalid argument",
            e::ENFILE => "Too many open files in system",
            e::EMFILE => "Too many open files",
            e::ETXTBSY => "Text file busy",
            e::EFBIG => "File too large",
            e::ENOSPC => "No space left on device",
            e::EROFS => "Read-only file system",
            e::EPIPE => "Broken pipe",
            e::ENAMETOOLONG => "File name too long",
            e::ENOSYS => "Function not implemented",
            e::ELOOP => "Too many levels of symbolic links",
            e::ENOTSOCK => "Socket operation on non-socket",
            e::EMSGSIZE => "Message too long",
            e::EOPNOTSUPP => "Operation not supported",
            e::ECONNRESET => "Connection reset by peer",
            e::ENOBUFS => "No buffer space available",
            e::ENOTCONN => "Transport endpoint is not connected",
            e::ETIMEDOUT => "Connection timed out",
            e::ECONNREFUSED => "Connection refused",
            e::ESTALE => "Stale file handle",
            e::ELIBBAD => "Accessing a corrupted shared library",
            _ => return None,
        };
        Some(text)
    }
}

impl fmt::Display for Errno {
    /// Formats like std's `io::Error`: `No such file or directory (os error 2)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.description() {
            Some(text) => write!(f, "{text} (os error {})", self.0),
            None => write!(f, "error {} (os error {})", self.0, self.0),
        }
    }
}

impl core::error::Error for Errno {}

/// `read(fd, buf)`, retried on `EINTR`: the number of bytes read (0 at end of file).
pub fn read(fd: Fd, buf: &mut [u8]) -> Result<usize> {
    retry(|| {
        // SAFETY: `buf` is valid for writes of its length.
        unsafe {
            call(
                g::__NR_read,
                [fd as usize, buf.as_mut_ptr() as usize, buf.len(), 0, 0, 0],
            )
        }
    })
}

/// `write(fd, buf)`, retried on `EINTR`: the number of bytes written.
pub fn write(fd: Fd, buf: &[u8]) -> Result<usize> {
    retry(|| {
        // SAFETY: `buf` is valid for reads of its length.
        unsafe {
            call(
                g::__NR_write,
                [fd as usize, buf.as_ptr() as usize, buf.len(), 0, 0, 0],
            )
        }
    })
}

/// Writes all of `buf` to `fd`, giving up silently on an error (for diagnostics on stderr).
pub fn write_all_best_effort(fd: Fd, mut buf: &[u8]) {
    while !buf.is_empty() {
        match write(fd, buf) {
            Ok(0) | Err(_) => return,
            Ok(written) => buf = &buf[written..],
        }
    }
}

/// `close(fd)`. Errors are ignored: the fd is released either way on Linux.
pub fn close(fd: Fd) {
    // SAFETY: close takes a plain number.
    let _ = unsafe { call(g::__NR_close, [fd as usize, 0, 0, 0, 0, 0]) };
}

/// A close-on-exec `AF_UNIX` `SOCK_STREAM` socketpair.
pub fn unix_stream_pair() -> Result<[Fd; 2]> {
    let mut pair = [-1 as Fd; 2];
    // SAFETY: socketpair writes two ints into `pair`.
    unsafe {
        call(
            g::__NR_socketpair,
            [
                n::AF_UNIX as usize,
                (n::SOCK_STREAM | g::O_CLOEXEC) as usize,
                0,
                pair.as_mut_ptr() as usize,
                0,
                0,
            ],
        )?;
    }
    Ok(pair)
}

/// `send(fd, buf, flags)` (flags as for `sendto`, e.g. [`MSG_NOSIGNAL`]), retried on
/// `EINTR`: the number of bytes sent.
pub fn send(fd: Fd, buf: &[u8], flags: u32) -> Result<usize> {
    retry(|| {
        // SAFETY: `buf` is valid for reads of its length; no address is given.
        unsafe {
            call(
                g::__NR_sendto,
                [
                    fd as usize,
                    buf.as_ptr() as usize,
                    buf.len(),
                    flags as usize,
                    0,
                    0,
                ],
            )
        }
    })
}

/// `send` flag: a vanished peer is `EPIPE`, never a `SIGPIPE`.
pub const MSG_NOSIGNAL: u32 = n::MSG_NOSIGNAL;
/// `send` flag: fail with `EAGAIN` instead of blocking.
pub const MSG_DONTWAIT: u32 = n::MSG_DONTWAIT;

/// `sendmsg` of `buf` with `fds` attached as `SCM_RIGHTS`, retried on `EINTR`: the number
/// of bytes sent. At most [`MAX_SEND_FDS`] fds (more is `EINVAL`).
pub fn send_with_fds(fd: Fd, buf: &[u8], fds: &[Fd], flags: u32) -> Result<usize> {
    /// `cmsghdr` on a 64-bit target: `cmsg_len: usize`, `cmsg_level: i32`, `cmsg_type: i32`.
    const HEADER: usize = 16;
    if fds.len() > MAX_SEND_FDS {
        return Err(Errno(linux_raw_sys::errno::EINVAL as i32));
    }
    // u64 elements give the control buffer the header's alignment.
    let mut control = [0u64; (HEADER + 4 * MAX_SEND_FDS).div_ceil(8)];
    let data_len = 4 * fds.len();
    let header = [
        (HEADER + data_len) as u64,
        u64::from(n::SOL_SOCKET) | (u64::from(n::SCM_RIGHTS) << 32),
    ];
    control[..2].copy_from_slice(&header);
    for (i, pair) in fds.chunks(2).enumerate() {
        let low = pair[0] as u32 as u64;
        let high = pair.get(1).map_or(0, |&fd| fd as u32 as u64);
        control[2 + i] = low | (high << 32);
    }
    let mut iov = g::iovec {
        iov_base: buf.as_ptr() as *mut _,
        iov_len: buf.len() as _,
    };
    let msg = n::msghdr {
        msg_name: core::ptr::null_mut(),
        msg_namelen: 0,
        msg_iov: (&raw mut iov).cast(),
        msg_iovlen: 1,
        msg_control: if fds.is_empty() {
            core::ptr::null_mut()
        } else {
            control.as_mut_ptr().cast()
        },
        msg_controllen: if fds.is_empty() {
            0
        } else {
            HEADER + data_len.next_multiple_of(8)
        },
        msg_flags: 0,
    };
    retry(|| {
        // SAFETY: `msg` points at live buffers of the lengths it states.
        unsafe {
            call(
                g::__NR_sendmsg,
                [
                    fd as usize,
                    &raw const msg as usize,
                    flags as usize,
                    0,
                    0,
                    0,
                ],
            )
        }
    })
}

/// The socket type (`SOCK_STREAM`, `SOCK_DGRAM`, ...) of `fd`; fails with `ENOTSOCK` when
/// `fd` is open but not a socket, `EBADF` when it is not open.
pub fn socket_type(fd: Fd) -> Result<i32> {
    let mut value: i32 = 0;
    let mut len: u32 = 4;
    // SAFETY: getsockopt writes at most `len` bytes into `value` and updates `len`.
    unsafe {
        call(
            g::__NR_getsockopt,
            [
                fd as usize,
                n::SOL_SOCKET as usize,
                n::SO_TYPE as usize,
                &raw mut value as usize,
                &raw mut len as usize,
                0,
            ],
        )?;
    }
    Ok(value)
}

/// `getcwd` into `buf`: the length of the path (without its NUL terminator, which follows
/// it in `buf`).
pub fn getcwd(buf: &mut [u8]) -> Result<usize> {
    // SAFETY: the kernel writes at most `buf.len()` bytes.
    let with_nul = unsafe {
        call(
            g::__NR_getcwd,
            [buf.as_mut_ptr() as usize, buf.len(), 0, 0, 0, 0],
        )?
    };
    // Linux returns "(unreachable)/..." for a cwd outside the process's root; that is not
    // an absolute path and would be misread as one.
    if with_nul == 0 || buf[0] != b'/' {
        return Err(Errno(linux_raw_sys::errno::ENOENT as i32));
    }
    Ok(with_nul - 1)
}

/// `execve(path, argv, envp)`; returns only on failure.
///
/// # Safety
/// `path` must be a NUL-terminated string; `argv` and `envp` NULL-terminated arrays of
/// NUL-terminated strings, all alive for the call.
pub unsafe fn execve(path: *const u8, argv: *const *const u8, envp: *const *const u8) -> Errno {
    // SAFETY: forwarded from the caller.
    match unsafe {
        call(
            g::__NR_execve,
            [path as usize, argv as usize, envp as usize, 0, 0, 0],
        )
    } {
        Err(err) => err,
        Ok(_) => Errno::EIO,
    }
}

/// Ends the process with `code`.
pub fn exit(code: i32) -> ! {
    loop {
        // SAFETY: exit_group takes a plain number and does not return.
        let _ = unsafe { call(g::__NR_exit_group, [code as usize, 0, 0, 0, 0, 0]) };
    }
}

/// This process's id.
pub fn getpid() -> i32 {
    // SAFETY: getpid takes no arguments and cannot fail.
    unsafe { arch::syscall(g::__NR_getpid, [0; 6]) as i32 }
}

/// `kill(pid, signal)`.
pub fn kill(pid: i32, signal: i32) -> Result<()> {
    // SAFETY: kill takes plain numbers.
    unsafe { call(g::__NR_kill, [pid as usize, signal as usize, 0, 0, 0, 0]) }.map(drop)
}

/// The fd flags of `fd` (`fcntl(F_GETFD)`); fails with `EBADF` when `fd` is not open.
pub fn fd_flags(fd: Fd) -> Result<u32> {
    // SAFETY: F_GETFD takes no pointer.
    unsafe {
        call(
            g::__NR_fcntl,
            [fd as usize, g::F_GETFD as usize, 0, 0, 0, 0],
        )
    }
    .map(|flags| flags as u32)
}

/// Opens the directory `path` read-only, close-on-exec.
pub fn open_directory(path: &CStr) -> Result<Fd> {
    retry(|| {
        // SAFETY: `path` is NUL-terminated.
        unsafe {
            call(
                g::__NR_openat,
                [
                    g::AT_FDCWD as usize,
                    path.as_ptr() as usize,
                    (g::O_RDONLY | g::O_DIRECTORY | g::O_CLOEXEC) as usize,
                    0,
                    0,
                    0,
                ],
            )
        }
    })
    .map(|fd| fd as Fd)
}

/// Reads directory entries of `dir` into `buf`: the number of bytes filled (0 at the end).
/// Walk them with [`dir_entry_names`].
pub fn getdents(dir: Fd, buf: &mut [u8]) -> Result<usize> {
    // SAFETY: the kernel writes at most `buf.len()` bytes of records.
    unsafe {
        call(
            g::__NR_getdents64,
            [dir as usize, buf.as_mut_ptr() as usize, buf.len(), 0, 0, 0],
        )
    }
}

/// The names in a buffer filled by [`getdents`].
pub fn dir_entry_names(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    /// `linux_dirent64`: `d_ino: u64`, `d_off: i64`, `d_reclen: u16`, `d_type: u8`, name.
    const NAME: usize = 19;
    let mut rest = buf;
    core::iter::from_fn(move || {
        let reclen = usize::from(u16::from_ne_bytes([*rest.get(16)?, *rest.get(17)?]));
        let record = rest.get(..reclen).filter(|r| r.len() > NAME)?;
        rest = &rest[reclen..];
        let name = &record[NAME..];
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        Some(&name[..end])
    })
}

/// The strings of a NULL-terminated array of NUL-terminated strings (an argv or an
/// environment) as byte slices; a NULL array has none.
#[derive(Clone, Copy)]
pub struct CStrings<'a> {
    next: *const *const u8,
    _borrow: core::marker::PhantomData<&'a [u8]>,
}

impl CStrings<'_> {
    /// Iterates `array` (of `char` or `u8` strings).
    ///
    /// # Safety
    /// `array` is NULL or a NULL-terminated array of NUL-terminated strings that stays
    /// valid and unmodified while iterated.
    pub unsafe fn new<T>(array: *const *const T) -> Self {
        Self {
            next: array.cast(),
            _borrow: core::marker::PhantomData,
        }
    }
}

impl<'a> Iterator for CStrings<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.next.is_null() {
            return None;
        }
        // SAFETY: per `new`, `next` points into a NULL-terminated array of strings that
        // live for 'a.
        unsafe {
            let entry = *self.next;
            if entry.is_null() {
                return None;
            }
            self.next = self.next.add(1);
            Some(CStr::from_ptr(entry.cast()).to_bytes())
        }
    }
}

/// One line for stderr, built in a stack buffer and written with one `write` when it fits
/// (under 4 KiB), so lines from concurrent processes do not interleave; a longer line goes
/// out in pieces. Errors writing are ignored: it is the last word of a process.
pub struct StderrLine {
    buf: [u8; 4096],
    len: usize,
}

impl Default for StderrLine {
    fn default() -> Self {
        Self::new()
    }
}

impl StderrLine {
    /// Starts a line.
    pub fn new() -> Self {
        Self {
            buf: [0; 4096],
            len: 0,
        }
    }

    /// Appends bytes, writing out the buffer whenever it fills.
    pub fn put(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.len == self.buf.len() {
                write_all_best_effort(2, &self.buf);
                self.len = 0;
            }
            let take = bytes.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + take].copy_from_slice(&bytes[..take]);
            self.len += take;
            bytes = &bytes[take..];
        }
    }

    /// Ends the line with a newline and writes it out.
    pub fn finish(mut self) {
        self.put(b"\n");
        write_all_best_effort(2, &self.buf[..self.len]);
    }
}

impl fmt::Write for StderrLine {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.put(s.as_bytes());
        Ok(())
    }
}

/// Signal numbers.
pub mod signal {
    use linux_raw_sys::general as g;
    /// Hangup.
    pub const SIGHUP: i32 = g::SIGHUP as i32;
    /// Interrupt (Ctrl-C).
    pub const SIGINT: i32 = g::SIGINT as i32;
    /// Quit (Ctrl-\).
    pub const SIGQUIT: i32 = g::SIGQUIT as i32;
    /// Kill (cannot be caught).
    pub const SIGKILL: i32 = g::SIGKILL as i32;
    /// User signal 1.
    pub const SIGUSR1: i32 = g::SIGUSR1 as i32;
    /// User signal 2.
    pub const SIGUSR2: i32 = g::SIGUSR2 as i32;
    /// Termination.
    pub const SIGTERM: i32 = g::SIGTERM as i32;
    /// Continue a stopped process.
    pub const SIGCONT: i32 = g::SIGCONT as i32;
    /// Stop (cannot be caught).
    pub const SIGSTOP: i32 = g::SIGSTOP as i32;
    /// Terminal stop (Ctrl-Z).
    pub const SIGTSTP: i32 = g::SIGTSTP as i32;
    /// Window size change.
    pub const SIGWINCH: i32 = g::SIGWINCH as i32;
}

/// A set of the standard signals (1..=64), as the kernel's 64-bit mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SigSet(u64);

impl SigSet {
    /// The empty set.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// Adds `signal` (1..=64; others are ignored).
    pub fn add(&mut self, signal: i32) {
        if (1..=64).contains(&signal) {
            self.0 |= 1 << (signal - 1);
        }
    }

    /// Whether `signal` is in the set.
    pub fn contains(self, signal: i32) -> bool {
        (1..=64).contains(&signal) && self.0 & (1 << (signal - 1)) != 0
    }
}

/// How [`sigprocmask`] changes the mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigHow {
    /// Add the set to the blocked signals.
    Block,
    /// Remove the set from the blocked signals.
    Unblock,
}

/// Blocks or unblocks `set`; returns the previous mask.
pub fn sigprocmask(how: SigHow, set: SigSet) -> Result<SigSet> {
    let how = match how {
        SigHow::Block => g::SIG_BLOCK,
        SigHow::Unblock => g::SIG_UNBLOCK,
    };
    let mut old = 0u64;
    // SAFETY: both masks are 8-byte buffers, the size we pass.
    unsafe {
        call(
            g::__NR_rt_sigprocmask,
            [
                how as usize,
                &raw const set.0 as usize,
                &raw mut old as usize,
                8,
                0,
                0,
            ],
        )?;
    }
    Ok(SigSet(old))
}

/// The raw handler value of a `kernel_sigaction` (its first field on every architecture).
const SIG_IGN: usize = 1;

/// Whether the disposition of `signal` is "ignore".
pub fn signal_is_ignored(signal: i32) -> Result<bool> {
    // SAFETY: an all-zero kernel_sigaction is a valid value (SIG_DFL, no flags).
    let mut old: g::kernel_sigaction = unsafe { core::mem::zeroed() };
    // SAFETY: rt_sigaction writes one kernel_sigaction into `old`; no new action is set.
    unsafe {
        call(
            g::__NR_rt_sigaction,
            [signal as usize, 0, &raw mut old as usize, 8, 0, 0],
        )?;
    }
    // SAFETY: the handler is the struct's first field, pointer-sized.
    let handler = unsafe { (&raw const old).cast::<usize>().read() };
    Ok(handler == SIG_IGN)
}

/// Sets the disposition of `signal` to the default action.
pub fn set_default_action(signal: i32) -> Result<()> {
    // SAFETY: all zeroes is SIG_DFL with no flags and an empty mask.
    let action: g::kernel_sigaction = unsafe { core::mem::zeroed() };
    // SAFETY: rt_sigaction reads one kernel_sigaction from `action`.
    unsafe {
        call(
            g::__NR_rt_sigaction,
            [signal as usize, &raw const action as usize, 0, 8, 0, 0],
        )
    }
    .map(drop)
}

/// A non-blocking, close-on-exec `signalfd` for `set` (which should be blocked).
pub fn signalfd(set: SigSet) -> Result<Fd> {
    // SAFETY: the mask is an 8-byte buffer, the size we pass.
    unsafe {
        call(
            g::__NR_signalfd4,
            [
                usize::MAX, // -1: a new fd
                &raw const set.0 as usize,
                8,
                (g::O_CLOEXEC | g::O_NONBLOCK) as usize,
                0,
                0,
            ],
        )
    }
    .map(|fd| fd as Fd)
}

/// Reads the next signal from a non-blocking signalfd; `None` when none is pending.
pub fn read_signal(signalfd: Fd) -> Result<Option<i32>> {
    // `struct signalfd_siginfo` is 128 bytes; `ssi_signo` is its first `u32`.
    let mut info = [0u8; 128];
    match read(signalfd, &mut info) {
        Ok(128) => Ok(Some(
            u32::from_ne_bytes([info[0], info[1], info[2], info[3]]) as i32,
        )),
        Ok(_) => Err(Errno::EIO),
        Err(Errno::EAGAIN) => Ok(None),
        Err(err) => Err(err),
    }
}

/// One entry of a [`poll`] set (the kernel's `struct pollfd`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollFd {
    /// The fd to watch.
    pub fd: Fd,
    /// The events to wait for ([`POLLIN`]).
    pub events: i16,
    /// The events that happened, filled in by [`poll`].
    pub revents: i16,
}

/// `poll` event: data to read (or end of file).
pub const POLLIN: i16 = g::POLLIN as i16;

/// Waits without a timeout until an fd in `fds` is ready; the number of ready fds.
pub fn poll(fds: &mut [PollFd]) -> Result<usize> {
    // SAFETY: `fds` is a valid array of pollfd structs of the given length; no timeout and
    // no signal mask.
    unsafe {
        call(
            g::__NR_ppoll,
            [fds.as_mut_ptr() as usize, fds.len(), 0, 0, 0, 0],
        )
    }
}

/// Sets this process's core-dump size limit to zero.
pub fn disable_core_dumps() -> Result<()> {
    let mut limit = [0u64; 2];
    // SAFETY: prlimit64 reads and writes one `rlimit64` (two u64s) in our buffers.
    unsafe {
        call(
            g::__NR_prlimit64,
            [
                0,
                g::RLIMIT_CORE as usize,
                0,
                limit.as_mut_ptr() as usize,
                0,
                0,
            ],
        )?;
        limit[0] = 0;
        call(
            g::__NR_prlimit64,
            [0, g::RLIMIT_CORE as usize, limit.as_ptr() as usize, 0, 0, 0],
        )
    }
    .map(drop)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn errors_come_back_as_errno() {
        let mut buf = [0u8; 4];
        assert_eq!(read(-1, &mut buf), Err(Errno::from_raw(9)));
        assert_eq!(
            std::format!("{}", Errno::ENOENT),
            "No such file or directory (os error 2)"
        );
        assert_eq!(
            std::format!("{}", Errno::from_raw(4000)),
            "error 4000 (os error 4000)"
        );
    }

    #[test]
    fn socket_type_tells_sockets_from_other_fds() {
        let (a, _b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        assert_eq!(socket_type(a.as_raw_fd()), Ok(2));
        let file = std::fs::File::open("/").unwrap();
        assert_eq!(socket_type(file.as_raw_fd()), Err(Errno::from_raw(88)));
    }

    #[test]
    fn fds_travel_with_a_message() {
        use std::io::Read;
        let [a, b] = unix_stream_pair().unwrap();
        let file = std::fs::File::open("/proc/self/exe").unwrap();
        assert_eq!(
            send_with_fds(a, b"x", &[file.as_raw_fd()], MSG_NOSIGNAL),
            Ok(1)
        );
        // SAFETY: b is ours.
        let mut stream =
            unsafe { <std::os::unix::net::UnixStream as std::os::fd::FromRawFd>::from_raw_fd(b) };
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"x");
        close(a);
    }

    #[test]
    fn getcwd_matches_std() {
        let mut buf = [0u8; 4096];
        let len = getcwd(&mut buf).unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            &buf[..len],
            std::os::unix::ffi::OsStrExt::as_bytes(cwd.as_os_str())
        );
        assert_eq!(buf[len], 0);
    }

    #[test]
    fn directory_entries_list_open_fds() {
        let dir = open_directory(c"/proc/self/fd").unwrap();
        let mut buf = [0u8; 4096];
        let len = getdents(dir, &mut buf).unwrap();
        let names: std::vec::Vec<&[u8]> = dir_entry_names(&buf[..len]).collect();
        assert!(names.contains(&&b"0"[..]) || names.contains(&&b"1"[..]));
        assert!(names.contains(&&b"."[..]));
        let own = std::format!("{dir}");
        assert!(names.contains(&own.as_bytes()));
        close(dir);
        assert_eq!(fd_flags(dir), Err(Errno::from_raw(9)));
    }

    #[test]
    fn c_strings_iterate_an_array_until_its_null() {
        let strings: [&[u8]; 2] = [b"A=1\0", b"B=\xff\0"];
        let array = [strings[0].as_ptr(), strings[1].as_ptr(), core::ptr::null()];
        // SAFETY: a NULL-terminated array of NUL-terminated strings that outlives the use.
        let items: std::vec::Vec<&[u8]> = unsafe { CStrings::new(array.as_ptr()) }.collect();
        assert_eq!(items, [&b"A=1"[..], &b"B=\xff"[..]]);
        // SAFETY: NULL is an empty array.
        assert_eq!(
            unsafe { CStrings::new(core::ptr::null::<*const u8>()) }.count(),
            0
        );
    }

    #[test]
    fn signal_masks_round_trip() {
        let mut set = SigSet::empty();
        set.add(signal::SIGUSR2);
        assert!(set.contains(signal::SIGUSR2));
        assert!(!set.contains(signal::SIGUSR1));
        let old = sigprocmask(SigHow::Block, set).unwrap();
        let fd = signalfd(set).unwrap();
        assert_eq!(read_signal(fd), Ok(None));
        close(fd);
        if !old.contains(signal::SIGUSR2) {
            sigprocmask(SigHow::Unblock, set).unwrap();
        }
        assert_eq!(signal_is_ignored(signal::SIGWINCH), Ok(false));
    }
}
