//! Frames over one client's stream socket, with the fds passed alongside them.

use execgate_protocol::{frame_len, ProtocolError, MAX_FDS};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use tokio::io::unix::AsyncFd;

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
    /// A socket call failed.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
}

/// Registers an owned fd with the Tokio reactor.
pub(crate) fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns `fd`, so it stays open and unchanged for its whole life.
    Ok(unsafe { AsyncFd::register(fd) }?)
}

/// One client's stream: a connected `AF_UNIX` stream socket.
pub(crate) struct Stream {
    fd: AsyncFd<OwnedFd>,
}

impl Stream {
    /// Wraps a received fd after checking that it is a stream socket.
    pub(crate) fn new(fd: OwnedFd) -> io::Result<Self> {
        let raw = fd.as_raw_fd();
        let mut kind: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes an int into `kind`; fcntl only changes fd flags.
        unsafe {
            if libc::getsockopt(
                raw,
                libc::SOL_SOCKET,
                libc::SO_TYPE,
                (&raw mut kind).cast(),
                &mut len,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if kind != libc::SOCK_STREAM {
                return Err(io::Error::from_raw_os_error(libc::EPROTOTYPE));
            }
            let flags = libc::fcntl(raw, libc::F_GETFL);
            if flags < 0 || libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(Self { fd: register(fd)? })
    }

    /// Reads one frame's payload; fds that arrive with it are appended to `fds`.
    pub(crate) async fn read_frame(&self, fds: &mut Vec<OwnedFd>) -> Result<Vec<u8>, StreamError> {
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
    async fn recv(&self, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> Result<usize, StreamError> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|inner| recv_with_fds(inner.as_raw_fd(), buf, fds)) {
                Ok(Ok(0)) => return Err(StreamError::Closed),
                Ok(Ok(n)) => return Ok(n),
                Ok(Err(err)) if err.raw_os_error() == Some(libc::EMSGSIZE) => {
                    return Err(StreamError::TooManyFds)
                }
                Ok(Err(err)) if err.raw_os_error() == Some(libc::ECONNRESET) => {
                    return Err(StreamError::Closed)
                }
                Ok(Err(err)) => return Err(err.into()),
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes a whole frame.
    pub(crate) async fn write_all(&self, mut bytes: &[u8]) -> Result<(), StreamError> {
        while !bytes.is_empty() {
            let mut guard = self.fd.writable().await?;
            let sent = guard.try_io(|inner| {
                // SAFETY: sending from a valid buffer; MSG_NOSIGNAL turns a vanished peer
                // into EPIPE instead of SIGPIPE.
                let n = unsafe {
                    libc::send(
                        inner.as_raw_fd(),
                        bytes.as_ptr().cast(),
                        bytes.len(),
                        libc::MSG_NOSIGNAL,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match sent {
                Ok(Ok(n)) => bytes = &bytes[n..],
                Ok(Err(err))
                    if matches!(err.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET)) =>
                {
                    return Err(StreamError::Closed)
                }
                Ok(Err(err)) => return Err(err.into()),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }
}

/// Room for the largest fd batch a client may send, plus alignment slack.
const CONTROL_LEN: usize = 64 + 4 * MAX_FDS;

/// `recvmsg` that collects `SCM_RIGHTS` fds (close-on-exec) into `fds`. A truncated control
/// message (more fds than [`MAX_FDS`]) is reported as `EMSGSIZE`.
pub(crate) fn recv_with_fds(
    sock: RawFd,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
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
        let n = libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT);
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
