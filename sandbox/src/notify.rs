//! Seccomp user notifications, server side: the listener the session's init hands out, one
//! [`Notification`] per trapped system call, and the [`Handler`] seam that decides it.
//!
//! A handler gets the notification by value and answers it exactly once with
//! [`Notification::respond`], inline or later from another thread (a blocking `connect`
//! runs on a worker, so the loop never stalls). A notification dropped without an answer
//! fails the call with `EPERM`: every fault ends in a refusal. Anything read from the
//! caller (its memory, an fd fetched by number) is only trusted after
//! [`Notification::is_valid`] confirmed the caller is still waiting in that same call (the
//! pid was not reused in between); and since another thread of the caller can rewrite the
//! memory or swap the fd right after, a handler that cares must act on what it read, never
//! answer [`Response::Continue`] for a call it checked.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

/// `PIDFD_THREAD` (Linux 6.9): a pidfd for this very thread (its fd table may be its own).
const PIDFD_THREAD: libc::c_uint = libc::O_EXCL as libc::c_uint;

/// `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP` (Linux 6.6; not in the libc crate).
const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: libc::c_ulong = 1;

/// The listener fd the kernel created for the session's notify filter.
#[derive(Debug)]
pub struct Listener(OwnedFd);

impl Listener {
    /// Wraps a listener fd received from the init. Where the kernel has it (Linux 6.6),
    /// the listener is switched to synchronous wake-ups: the trapped thread and the
    /// supervisor hand over on one CPU instead of a cross-CPU wake-up each way, which
    /// matters for a trapped call as frequent as `execve`.
    pub(crate) fn new(fd: OwnedFd) -> Self {
        // SAFETY: the ioctl takes its flags by value; an older kernel refuses it (EINVAL),
        // which leaves the listener as it was.
        unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS,
                SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP,
            )
        };
        Listener(fd)
    }

    /// The raw fd, for polling.
    pub(crate) fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Receives the next notification; `Ok(None)` when the caller went away before it could
    /// be read (`ENOENT`).
    pub(crate) fn receive(self: &Arc<Self>) -> io::Result<Option<Notification>> {
        // SAFETY: seccomp_notif is plain data; the kernel wants it zeroed.
        let mut raw: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: the ioctl writes one seccomp_notif into `raw`.
        let rc = unsafe { libc::ioctl(self.raw(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut raw) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::EINTR) => Ok(None),
                _ => Err(err),
            };
        }
        Ok(Some(Notification {
            listener: Arc::clone(self),
            id: raw.id,
            pid: raw.pid as libc::pid_t,
            nr: i64::from(raw.data.nr),
            args: raw.data.args,
            answered: false,
        }))
    }
}

/// How to answer a notification.
#[derive(Debug)]
pub enum Response {
    /// Let the call run as the caller made it. Only for calls whose outcome does not depend
    /// on anything read from the caller (a second thread could change it meanwhile).
    Continue,
    /// Fail the call with this errno.
    Errno(i32),
    /// Succeed with this return value.
    Value(i64),
    /// Install `fd` in the caller (close-on-exec when `cloexec`) and return its number.
    AddFd {
        /// The fd to install (ours; the caller gets a duplicate).
        fd: OwnedFd,
        /// Whether the caller's copy is close-on-exec.
        cloexec: bool,
    },
}

/// One trapped system call, waiting for its answer.
#[derive(Debug)]
pub struct Notification {
    listener: Arc<Listener>,
    /// The kernel's id of this notification.
    pub id: u64,
    /// The calling thread, as seen from the server's PID namespace.
    pub pid: libc::pid_t,
    /// The system call number.
    pub nr: i64,
    /// Its six arguments.
    pub args: [u64; 6],
    answered: bool,
}

impl Notification {
    /// Whether the caller is still waiting in this call: check it after reading its memory
    /// or fetching its fds, before trusting what was read.
    pub fn is_valid(&self) -> bool {
        let mut id = self.id;
        // SAFETY: the ioctl reads one u64.
        unsafe {
            libc::ioctl(
                self.listener.raw(),
                libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
                &mut id,
            ) == 0
        }
    }

    /// Reads `buf.len()` bytes of the caller's memory at `addr`.
    pub fn read_memory(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: reads into our own buffer; the remote range is only read by the kernel.
        let n = unsafe { libc::process_vm_readv(self.pid, &local, 1, &remote, 1, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n as usize != buf.len() {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        }
        Ok(())
    }

    /// The caller's fd `fd`, duplicated into this process (the same open file description).
    pub fn fetch_fd(&self, fd: i32) -> io::Result<OwnedFd> {
        let pidfd = pidfd_open(self.pid)?;
        // SAFETY: pidfd_getfd returns a new fd or -1.
        let got = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0u32) };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd (close-on-exec, as pidfd_getfd makes it).
        Ok(unsafe { OwnedFd::from_raw_fd(got as RawFd) })
    }

    /// Opens `/proc/<pid>/<what>` of the caller (`root`, `cwd`) as an `O_PATH` directory.
    pub fn open_proc_dir(&self, what: &str) -> io::Result<OwnedFd> {
        let path = std::ffi::CString::new(format!("/proc/{}/{what}", self.pid))
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: open with a valid C string.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh fd.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Answers the call. A notification whose caller went away meanwhile is dropped quietly.
    pub fn respond(mut self, response: Response) {
        self.answered = true;
        self.send(response);
    }

    fn send(&self, response: Response) {
        let sock = self.listener.raw();
        let mut resp = libc::seccomp_notif_resp {
            id: self.id,
            val: 0,
            error: 0,
            flags: 0,
        };
        match response {
            Response::Continue => resp.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
            Response::Errno(errno) => resp.error = -errno,
            Response::Value(value) => resp.val = value,
            Response::AddFd { fd, cloexec } => {
                let addfd = libc::seccomp_notif_addfd {
                    id: self.id,
                    flags: libc::SECCOMP_ADDFD_FLAG_SEND as u32,
                    srcfd: fd.as_raw_fd() as u32,
                    newfd: 0,
                    newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
                };
                // SAFETY: the ioctl reads one seccomp_notif_addfd; with SEND it also answers.
                let rc = unsafe { libc::ioctl(sock, libc::SECCOMP_IOCTL_NOTIF_ADDFD, &addfd) };
                if rc >= 0 {
                    return;
                }
                let err = io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO);
                if err == libc::ENOENT {
                    return; // the caller is gone
                }
                resp.error = -err;
            }
        }
        // SAFETY: the ioctl reads one seccomp_notif_resp.
        unsafe { libc::ioctl(sock, libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) };
    }
}

impl Drop for Notification {
    fn drop(&mut self) {
        if !self.answered {
            self.send(Response::Errno(libc::EPERM));
        }
    }
}

fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open returns a new fd or -1.
    let mut fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, PIDFD_THREAD) };
    if fd < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        // Before Linux 6.9: a thread-group leader's pidfd (its fd table is shared with its
        // threads unless they were cloned without CLONE_FILES).
        // SAFETY: as above.
        fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) };
    }
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Decides the notifications of one system call. Implementations must not block for long:
/// anything that may wait (a blocking `connect`) is moved to another thread together with
/// the notification, which is answered from there.
pub trait Handler: Send + Sync {
    /// Decides `notification`, answering it now or later (dropping it answers `EPERM`).
    fn handle(&self, notification: Notification);
}

/// The handlers of a session, keyed by system call number, with the filter that traps
/// exactly those calls.
#[derive(Clone, Default)]
pub struct Handlers {
    entries: Vec<(crate::seccomp::Notified, Arc<dyn Handler>)>,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(n, _)| n))
            .finish()
    }
}

impl Handlers {
    /// Routes the calls `notified` selects to `handler` (a later entry for the same call is
    /// never reached: the first match wins).
    pub fn add(&mut self, notified: crate::seccomp::Notified, handler: Arc<dyn Handler>) {
        self.entries.push((notified, handler));
    }

    /// The entries, in order.
    pub(crate) fn entries(&self) -> Vec<(crate::seccomp::Notified, Arc<dyn Handler>)> {
        self.entries.clone()
    }

    /// The calls to trap, in order.
    pub(crate) fn notified(&self) -> Vec<crate::seccomp::Notified> {
        self.entries.iter().map(|(n, _)| *n).collect()
    }

    /// Hands `notification` to its handler (an unknown call is refused with `ENOSYS`).
    pub(crate) fn dispatch(&self, notification: Notification) {
        let handler = self.entries.iter().find(|(n, _)| {
            n.nr == notification.nr && n.arg0.is_none_or(|a| notification.args[0] as u32 == a)
        });
        match handler {
            Some((_, handler)) => handler.handle(notification),
            None => notification.respond(Response::Errno(libc::ENOSYS)),
        }
    }
}
