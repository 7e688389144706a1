//! Frames over one client's stream socket, with the fds passed alongside them.
//!
//! Every call first tries the socket directly (`MSG_DONTWAIT`) and registers the stream
//! with the Tokio reactor only when a call would block: a client that wrote its request
//! before handing the stream over, and reads its verdict at once, is served with no reactor
//! round trip at all.
//!
//! While the server expects bytes the client owes it (its request, the fds of an
//! escalation: [`Stream::expect_client`]), a wait is bounded twice over: it needs one of a
//! session's limited [`Budget`] slots, and it ends after a timeout. So streams that never
//! send anything cannot pile up and exhaust the server's file descriptors; the client of a
//! stream refused that way sees it closed and fails closed. Only the slow path pays for
//! this: a call that does not have to wait takes no slot and starts no timer. And a stream
//! never waits while it holds fds the client attached to an unfinished frame: a client
//! sends each frame with its fds in one message, so this costs honest clients nothing, and
//! a stalled stream cannot make the server hold hundreds of fds.

use execgate_protocol::{frame_len, ProtocolError, MAX_FDS};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

/// Largest chunk read at once: payload memory grows with the bytes that actually arrive, so
/// a client announcing a large frame and sending nothing costs nothing.
const CHUNK: usize = 64 << 10;

/// Why a stream conversation ended early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamError {
    /// The client closed its end.
    #[error("client closed the stream")]
    Closed,
    /// The client broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// More fds arrived than one message may carry.
    #[error("too many fds attached")]
    TooManyFds,
    /// The client would have to be waited for, but too many streams already are.
    #[error("too many streams of this session are waiting for their client")]
    Busy,
    /// The client did not send what it owes in time.
    #[error("the client did not send its message in time")]
    TimedOut,
    /// Fds arrived with a frame whose rest was not there: a client sends a frame with its
    /// fds in one message, so only a client trying to make the server hold fds does this.
    #[error("fds arrived with a frame the client did not finish")]
    StalledWithFds,
    /// A socket call failed.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
}

/// A fixed number of slots shared by the conversations of a session, for things that wait.
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicUsize,
    max: usize,
}

/// One slot of a [`Budget`], given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<Budget>);

impl Budget {
    /// A budget of `max` slots.
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicUsize::new(0),
            max,
        })
    }

    /// A slot, or `None` when all are taken.
    pub(crate) fn take(self: &Arc<Self>) -> Option<Slot> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < self.max).then_some(used + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(self)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A bounded wait for the client (see the module documentation).
#[derive(Debug)]
struct ClientWait {
    budget: Arc<Budget>,
    timeout: Duration,
    /// Taken, with the deadline set, on the first wait.
    slot: Option<(Slot, Instant)>,
}

/// Registers an owned fd with the Tokio reactor.
pub(crate) fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns `fd`, so it stays open and unchanged for its whole life.
    Ok(unsafe { AsyncFd::register(fd) }?)
}

/// An fd number borrowed from the [`Stream`] that owns it, for the reactor.
struct Registered(RawFd);

impl AsRawFd for Registered {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// One client's stream: a connected `AF_UNIX` stream socket. Every socket call passes
/// `MSG_DONTWAIT`, so the fd needs no `O_NONBLOCK` (one `fcntl` pair less per exec).
pub(crate) struct Stream {
    /// The reactor registration, made on the first call that would block. Declared before
    /// `fd` so it is deregistered before the fd closes.
    reactor: Option<AsyncFd<Registered>>,
    /// Set while the client owes the server a message.
    client: Option<ClientWait>,
    fd: OwnedFd,
}

/// Which way a call would have blocked.
#[derive(Clone, Copy)]
enum Direction {
    Read,
    Write,
}

impl Stream {
    /// Wraps a received fd after checking that it is a stream socket.
    pub(crate) fn new(fd: OwnedFd) -> io::Result<Self> {
        let mut kind: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes an int into `kind`.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TYPE,
                (&raw mut kind).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        if kind != libc::SOCK_STREAM {
            return Err(io::Error::from_raw_os_error(libc::EPROTOTYPE));
        }
        Ok(Self {
            reactor: None,
            client: None,
            fd,
        })
    }

    /// The pid of the process that created the client's socket (`SO_PEERCRED`), as seen
    /// from this process's PID namespace.
    pub(crate) fn peer_pid(&self) -> Option<i32> {
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: getsockopt writes one ucred into `cred`.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&raw mut cred).cast(),
                &mut len,
            )
        };
        (rc == 0 && cred.pid > 0).then_some(cred.pid)
    }

    /// From now until [`Stream::client_done`], the client owes the server a message: a
    /// wait for it needs a slot of `budget` (else [`StreamError::Busy`]) and ends after
    /// `timeout` from the first wait ([`StreamError::TimedOut`]).
    pub(crate) fn expect_client(&mut self, budget: &Arc<Budget>, timeout: Duration) {
        self.client = Some(ClientWait {
            budget: Arc::clone(budget),
            timeout,
            slot: None,
        });
    }

    /// The client's message arrived: later waits are unbounded, and the slot is given back.
    pub(crate) fn client_done(&mut self) {
        self.client = None;
    }

    /// Waits until the socket is ready in `direction`, registering it on first use.
    async fn ready(&mut self, direction: Direction) -> Result<(), StreamError> {
        if self.reactor.is_none() {
            // SAFETY: `self.fd` stays open and unchanged until the registration is dropped,
            // which happens first (field order).
            let registered = unsafe { AsyncFd::register(Registered(self.fd.as_raw_fd())) }
                .map_err(io::Error::from)?;
            self.reactor = Some(registered);
        }
        let deadline = match &mut self.client {
            None => None,
            Some(wait) => {
                if wait.slot.is_none() {
                    let slot = wait.budget.take().ok_or(StreamError::Busy)?;
                    wait.slot = Some((slot, Instant::now() + wait.timeout));
                }
                wait.slot.as_ref().map(|(_, deadline)| *deadline)
            }
        };
        let Some(reactor) = &self.reactor else {
            unreachable!("registered above")
        };
        // The call that sent us here saw EAGAIN, so clearing the readiness tokio may have
        // cached is right; the next call tries the socket again either way.
        let ready = async {
            match direction {
                Direction::Read => reactor.readable().await,
                Direction::Write => reactor.writable().await,
            }
        };
        let mut guard = match deadline {
            None => ready.await?,
            Some(deadline) => tokio::time::timeout_at(deadline, ready)
                .await
                .map_err(|_| StreamError::TimedOut)??,
        };
        guard.clear_ready();
        Ok(())
    }

    /// Reads one frame's payload; fds that arrive with it are appended to `fds`.
    pub(crate) async fn read_frame(
        &mut self,
        fds: &mut Vec<OwnedFd>,
    ) -> Result<Vec<u8>, StreamError> {
        let mut header = [0u8; 4];
        let mut got = 0;
        while got < header.len() {
            got += self.recv(&mut header[got..], fds).await?;
        }
        let len = frame_len(header)?;
        let mut payload = Vec::new();
        while payload.len() < len {
            let start = payload.len();
            payload.resize(start + (len - start).min(CHUNK), 0);
            let n = self.recv(&mut payload[start..], fds).await?;
            payload.truncate(start + n);
        }
        Ok(payload)
    }

    /// Receives some bytes (at least one); end of stream is [`StreamError::Closed`].
    async fn recv(&mut self, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> Result<usize, StreamError> {
        loop {
            match recv_with_fds(self.fd.as_raw_fd(), buf, fds, libc::MSG_DONTWAIT) {
                Ok(0) => return Err(StreamError::Closed),
                Ok(n) => return Ok(n),
                Err(err) => match err.raw_os_error() {
                    // Never wait while holding a client's fds.
                    Some(libc::EAGAIN) if !fds.is_empty() => {
                        return Err(StreamError::StalledWithFds)
                    }
                    Some(libc::EAGAIN) => self.ready(Direction::Read).await?,
                    Some(libc::EINTR) => {}
                    Some(libc::EMSGSIZE) => return Err(StreamError::TooManyFds),
                    Some(libc::ECONNRESET) => return Err(StreamError::Closed),
                    _ => return Err(err.into()),
                },
            }
        }
    }

    /// Sends what the socket takes of `bytes` without waiting: the number of bytes sent, 0
    /// when it would block or fails (a following [`Stream::write_all`] reports the error).
    pub(crate) fn try_send(&self, bytes: &[u8]) -> usize {
        loop {
            match send(self.fd.as_raw_fd(), bytes) {
                Ok(n) => return n,
                Err(err) if err.raw_os_error() == Some(libc::EINTR) => {}
                Err(_) => return 0,
            }
        }
    }

    /// Writes a whole frame.
    pub(crate) async fn write_all(&mut self, mut bytes: &[u8]) -> Result<(), StreamError> {
        while !bytes.is_empty() {
            let err = match send(self.fd.as_raw_fd(), bytes) {
                Ok(n) => {
                    bytes = &bytes[n..];
                    continue;
                }
                Err(err) => err,
            };
            match err.raw_os_error() {
                Some(libc::EAGAIN) => self.ready(Direction::Write).await?,
                Some(libc::EINTR) => {}
                Some(libc::EPIPE | libc::ECONNRESET) => return Err(StreamError::Closed),
                _ => return Err(err.into()),
            }
        }
        Ok(())
    }
}

/// One non-blocking `send`. MSG_NOSIGNAL turns a vanished peer into EPIPE instead of
/// SIGPIPE.
fn send(sock: RawFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: sending from a valid buffer of the given length.
    let n = unsafe {
        libc::send(
            sock,
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Room for the largest fd batch a client may send, plus alignment slack.
const CONTROL_LEN: usize = 64 + 4 * MAX_FDS;

/// `recvmsg` with `flags` that collects `SCM_RIGHTS` fds (close-on-exec) into `fds`. A
/// truncated control message (more fds than [`MAX_FDS`]) is reported as `EMSGSIZE`.
pub(crate) fn recv_with_fds(
    sock: RawFd,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    flags: libc::c_int,
) -> io::Result<usize> {
    let mut control = [0u64; CONTROL_LEN / 8];
    // SAFETY: recvmsg fills our buffers within the lengths given; CMSG_* walk the control
    // buffer the kernel filled, and each SCM_RIGHTS fd is a new fd we now own.
    unsafe {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC | flags);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let bytes = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                for i in 0..bytes / std::mem::size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        if msg.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
        }
        Ok(n as usize)
    }
}
