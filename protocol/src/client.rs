//! The client side of the transport, blocking and allocation-free.
//!
//! Used by the execve wrapper and by the preload shim, which may run it in a child between
//! `fork` and `exec` of a multithreaded program: so nothing here allocates, takes a lock or
//! touches global state (system calls go straight to the kernel through `execgate-sys`, not
//! through libc, so not even `errno` is written). Writes use `MSG_NOSIGNAL`, so a vanished
//! server is an error to report, never a silent `SIGPIPE` death.

use crate::{
    encode_fds_frame, encode_request, encode_signal_frame, frame_len, handshake, ProtocolError,
    ServerMessageRef, Sink, MAX_FDS,
};
use core::fmt;
use execgate_sys::{self as sys, Errno, Fd};

/// A raw fd number.
pub type RawFd = Fd;

/// Why a client could not get a verdict (every variant means: do not run the command).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientError {
    /// The session socket variable is not set.
    NoSocket,
    /// The session socket variable does not name an open socket fd.
    BadSocket,
    /// A system call failed.
    Io {
        /// Which operation failed.
        op: &'static str,
        /// Its `errno`.
        errno: i32,
    },
    /// The server closed the stream before answering.
    ServerClosed,
    /// The server sent something the protocol does not allow.
    Protocol(ProtocolError),
    /// The request is larger than a frame may be.
    RequestTooLarge,
    /// The server's frame does not fit the client's receive buffer.
    ResponseTooLarge,
    /// More fds to pass than one frame may carry.
    TooManyFds,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSocket => write!(
                f,
                "{} is not set: not running inside an execgate session",
                crate::SOCKET_ENV
            ),
            Self::BadSocket => write!(
                f,
                "{} does not name an open socket: the session's socket was closed",
                crate::SOCKET_ENV
            ),
            Self::Io { op, errno } => write!(f, "{op} failed: {}", Errno::from_raw(*errno)),
            Self::ServerClosed => write!(f, "the execgate server closed the connection"),
            Self::Protocol(err) => write!(f, "protocol error: {err}"),
            Self::RequestTooLarge => write!(
                f,
                "command too large to send ({} bytes max)",
                crate::MAX_FRAME_LEN
            ),
            Self::ResponseTooLarge => write!(f, "server response too large"),
            Self::TooManyFds => write!(f, "too many open fds to pass ({MAX_FDS} max)"),
        }
    }
}

impl core::error::Error for ClientError {}

/// The error for a failed `op`.
fn io(op: &'static str, err: Errno) -> ClientError {
    ClientError::Io {
        op,
        errno: err.raw(),
    }
}

/// Parses the value of [`crate::SOCKET_ENV`] and checks that it names an open socket.
pub fn session_socket_from_env_value(value: Option<&[u8]>) -> Result<RawFd, ClientError> {
    let value = value.ok_or(ClientError::NoSocket)?;
    let fd = parse_fd(value).ok_or(ClientError::BadSocket)?;
    sys::socket_type(fd).map_err(|_| ClientError::BadSocket)?;
    Ok(fd)
}

/// Parses a decimal fd number of at most 9 digits.
pub fn parse_fd(value: &[u8]) -> Option<RawFd> {
    if value.is_empty() || value.len() > 9 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        value
            .iter()
            .fold(0, |acc: RawFd, d| acc * 10 + RawFd::from(d - b'0')),
    )
}

/// A close-on-exec `AF_UNIX` stream socketpair: one end for the client, one for the server.
fn stream_pair() -> Result<[RawFd; 2], ClientError> {
    sys::unix_stream_pair().map_err(|e| io("socketpair", e))
}

/// A per-exec stream connection to the server. Closes its fd when dropped.
#[derive(Debug)]
pub struct Connection {
    fd: RawFd,
}

impl Connection {
    /// Opens a stream to the server through the session socket `session_fd`.
    pub fn open(session_fd: RawFd) -> Result<Self, ClientError> {
        let pair = stream_pair()?;
        let conn = Self { fd: pair[0] };
        let sent = send_with_fds(session_fd, &handshake(), &[pair[1]], "send handshake");
        // The server holds its own copy of the peer end once sent.
        sys::close(pair[1]);
        sent?;
        Ok(conn)
    }

    /// Opens a stream to the server and sends the exec request on it: the same as
    /// [`Connection::open`] followed by [`Connection::send_request`], but the request is
    /// written before the handshake whenever the socket buffer takes it, so the server finds
    /// it waiting when it accepts the stream and is woken once per exec instead of twice.
    /// A request larger than the buffer is finished after the handshake, as usual.
    ///
    /// `send_buf` batches the encoded request into few `send` calls (8 KiB is plenty for a
    /// typical environment; any size works). It is the caller's so that it can live where
    /// touching it is cheapest: the wrapper and the shim keep it off the stack, where every
    /// fresh page of a large frame is a page fault.
    pub fn open_with_request<'a, A, E>(
        session_fd: RawFd,
        program: &[u8],
        argv: A,
        cwd: &[u8],
        env: E,
        send_buf: &mut [u8],
    ) -> Result<Self, ClientError>
    where
        A: Iterator<Item = &'a [u8]> + Clone,
        E: Iterator<Item = &'a [u8]> + Clone,
    {
        let pair = stream_pair()?;
        let conn = Self { fd: pair[0] };
        let mut sink = FdSink {
            fd: conn.fd,
            buf: send_buf,
            len: 0,
            pending: Some(PendingHandshake {
                session: session_fd,
                peer: pair[1],
            }),
        };
        match encode_request(&mut sink, program, argv, cwd, env)? {
            Some(_) => sink.flush()?,
            // Nothing was written: the server never hears of this stream.
            None => return Err(ClientError::RequestTooLarge),
        }
        sink.send_handshake()?;
        Ok(conn)
    }

    /// Wraps an fd that already is a connection (e.g. one inherited across `exec`).
    ///
    /// # Safety
    /// `fd` must be an open stream socket connected to the server, owned by the caller.
    pub unsafe fn from_raw_fd(fd: RawFd) -> Self {
        Self { fd }
    }

    /// The connection's fd.
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd
    }

    /// Gives up ownership of the fd without closing it.
    pub fn into_raw_fd(self) -> RawFd {
        let fd = self.fd;
        core::mem::forget(self);
        fd
    }

    /// Sends the exec request. argv and env entries are borrowed byte strings.
    pub fn send_request<'a, A, E>(
        &self,
        program: &[u8],
        argv: A,
        cwd: &[u8],
        env: E,
    ) -> Result<(), ClientError>
    where
        A: Iterator<Item = &'a [u8]> + Clone,
        E: Iterator<Item = &'a [u8]> + Clone,
    {
        let mut buf = [0; 8192];
        let mut sink = FdSink {
            fd: self.fd,
            buf: &mut buf,
            len: 0,
            pending: None,
        };
        match encode_request(&mut sink, program, argv, cwd, env)? {
            Some(_) => sink.flush(),
            None => Err(ClientError::RequestTooLarge),
        }
    }

    /// Receives one server frame into `buf` and decodes it.
    ///
    /// The header and the payload's first byte come in one read: every frame has at least
    /// that byte, so this never reads into the next frame, and a Run verdict (one byte)
    /// costs one system call.
    pub fn recv<'b>(&self, buf: &'b mut [u8]) -> Result<ServerMessageRef<'b>, ClientError> {
        let mut start = [0u8; 5];
        read_exact(self.fd, &mut start)?;
        let [h0, h1, h2, h3, first] = start;
        let len = frame_len([h0, h1, h2, h3]).map_err(ClientError::Protocol)?;
        let payload = buf.get_mut(..len).ok_or(ClientError::ResponseTooLarge)?;
        // `frame_len` refuses empty frames, so there is a first byte.
        if let Some((head, rest)) = payload.split_first_mut() {
            *head = first;
            read_exact(self.fd, rest)?;
        }
        ServerMessageRef::decode(payload).map_err(ClientError::Protocol)
    }

    /// Sends the fds an escalated process must inherit, each to land on its target number.
    pub fn send_fds(&self, targets: &[i32], fds: &[RawFd]) -> Result<(), ClientError> {
        if targets.len() != fds.len() || targets.len() > MAX_FDS {
            return Err(ClientError::TooManyFds);
        }
        let mut frame = [0u8; 9 + 4 * MAX_FDS];
        let len = encode_fds_frame(targets, &mut frame).ok_or(ClientError::TooManyFds)?;
        send_with_fds(self.fd, &frame[..len], fds, "send fds")
    }

    /// Forwards a signal the client received. Async-signal-safe: may be called from a
    /// signal handler.
    pub fn send_signal(&self, signo: i32) -> Result<(), ClientError> {
        write_all(self.fd, &encode_signal_frame(signo))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        sys::close(self.fd);
    }
}

impl From<core::convert::Infallible> for ClientError {
    fn from(never: core::convert::Infallible) -> Self {
        match never {}
    }
}

/// A buffered sink writing to a socket fd.
struct FdSink<'b> {
    fd: RawFd,
    buf: &'b mut [u8],
    len: usize,
    /// The handshake not sent yet ([`Connection::open_with_request`]): until it is, writes
    /// must not block, since the server cannot read this stream before it has the other end.
    pending: Option<PendingHandshake>,
}

/// A handshake to send on `session` with the stream's other end, `peer`, attached.
struct PendingHandshake {
    session: RawFd,
    peer: RawFd,
}

impl FdSink<'_> {
    fn flush(&mut self) -> Result<(), ClientError> {
        if self.len > 0 {
            let len = self.len;
            self.len = 0;
            write_stream(self.fd, &mut self.pending, &self.buf[..len])?;
        }
        Ok(())
    }

    /// Sends the pending handshake, if any.
    fn send_handshake(&mut self) -> Result<(), ClientError> {
        send_handshake(&mut self.pending)
    }
}

/// Writes `bytes` to the stream `fd`; while a handshake is pending, without blocking, and
/// once the buffer is full, after sending the handshake.
fn write_stream(
    fd: RawFd,
    pending: &mut Option<PendingHandshake>,
    mut bytes: &[u8],
) -> Result<(), ClientError> {
    if pending.is_some() {
        while !bytes.is_empty() {
            match sys::send(fd, bytes, sys::MSG_NOSIGNAL | sys::MSG_DONTWAIT) {
                Ok(n) => bytes = &bytes[n..],
                Err(Errno::EAGAIN) => break,
                Err(e) => return Err(send_error(e)),
            }
        }
        if bytes.is_empty() {
            return Ok(());
        }
        // The buffer is full: hand the stream over, then finish with blocking writes.
        send_handshake(pending)?;
    }
    write_all(fd, bytes)
}

/// Sends a pending handshake (if any) and closes our copy of the peer end.
fn send_handshake(pending: &mut Option<PendingHandshake>) -> Result<(), ClientError> {
    if let Some(p) = pending.take() {
        let sent = send_with_fds(p.session, &handshake(), &[p.peer], "send handshake");
        // The server holds its own copy of the peer end once sent.
        sys::close(p.peer);
        sent?;
    }
    Ok(())
}

impl Drop for FdSink<'_> {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            // An unsent peer end is ours alone.
            sys::close(pending.peer);
        }
    }
}

impl Sink for FdSink<'_> {
    type Error = ClientError;

    fn put(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        if self.len + bytes.len() > self.buf.len() {
            self.flush()?;
        }
        if bytes.len() >= self.buf.len() {
            return write_stream(self.fd, &mut self.pending, bytes);
        }
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
        Ok(())
    }
}

fn send_error(e: Errno) -> ClientError {
    if e == Errno::EPIPE || e == Errno::ECONNRESET {
        ClientError::ServerClosed
    } else {
        io("send", e)
    }
}

fn write_all(fd: RawFd, mut bytes: &[u8]) -> Result<(), ClientError> {
    while !bytes.is_empty() {
        let n = sys::send(fd, bytes, sys::MSG_NOSIGNAL).map_err(send_error)?;
        bytes = &bytes[n..];
    }
    Ok(())
}

fn read_exact(fd: RawFd, mut buf: &mut [u8]) -> Result<(), ClientError> {
    while !buf.is_empty() {
        match sys::read(fd, buf) {
            Ok(0) | Err(Errno::ECONNRESET) => return Err(ClientError::ServerClosed),
            Ok(n) => buf = &mut buf[n..],
            Err(e) => return Err(io("read", e)),
        }
    }
    Ok(())
}

/// Sends `bytes` on `sock` with `fds` attached as `SCM_RIGHTS` (to the first byte).
fn send_with_fds(
    sock: RawFd,
    bytes: &[u8],
    fds: &[RawFd],
    op: &'static str,
) -> Result<(), ClientError> {
    if fds.len() > MAX_FDS {
        return Err(ClientError::TooManyFds);
    }
    let sent = sys::send_with_fds(sock, bytes, fds, sys::MSG_NOSIGNAL).map_err(|e| {
        if [
            Errno::EPIPE,
            Errno::ECONNREFUSED,
            Errno::ECONNRESET,
            Errno::ENOTCONN,
        ]
        .contains(&e)
        {
            ClientError::ServerClosed
        } else {
            io(op, e)
        }
    })?;
    // The fds went with the first byte; the rest of a stream frame is plain data.
    write_all(sock, &bytes[sent..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientMessage, ExitStatus, ServerMessage, Verdict};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixDatagram;
    use std::string::ToString;
    use std::vec;

    #[test]
    fn env_value_must_be_an_open_socket() {
        assert_eq!(
            session_socket_from_env_value(None),
            Err(ClientError::NoSocket)
        );
        assert_eq!(
            session_socket_from_env_value(Some(b"x1")),
            Err(ClientError::BadSocket)
        );
        // fd 0 in the test harness is not a socket (or is closed).
        let (a, _b) = UnixDatagram::pair().unwrap();
        let value = a.as_raw_fd().to_string();
        assert_eq!(
            session_socket_from_env_value(Some(value.as_bytes())),
            Ok(a.as_raw_fd())
        );
    }

    #[test]
    fn open_fails_closed_when_server_is_gone() {
        let (a, b) = UnixDatagram::pair().unwrap();
        drop(b);
        let err = Connection::open(a.as_raw_fd()).unwrap_err();
        assert_eq!(err, ClientError::ServerClosed);
    }

    /// Server side of a test: the stream end that came with the handshake record.
    fn accept(server_dgram: &UnixDatagram) -> std::os::unix::net::UnixStream {
        use std::os::fd::FromRawFd;
        let mut buf = [0u8; 64];
        let mut control = [0u64; 8];
        // SAFETY: recvmsg into our own buffers; the received fd becomes the stream's.
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
            let n = libc::recvmsg(server_dgram.as_raw_fd(), &mut msg, 0);
            assert_eq!(n as usize, crate::HANDSHAKE_LEN);
            assert_eq!(crate::parse_handshake(&buf[..crate::HANDSHAKE_LEN]), Ok(1));
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            assert_eq!((*cmsg).cmsg_type, libc::SCM_RIGHTS);
            let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>());
            std::os::unix::net::UnixStream::from_raw_fd(fd)
        }
    }

    fn read_request(stream: &mut std::os::unix::net::UnixStream) -> crate::ExecRequest {
        use std::io::Read;
        let mut header = [0u8; 4];
        stream.read_exact(&mut header).unwrap();
        let mut payload = vec![0u8; frame_len(header).unwrap()];
        stream.read_exact(&mut payload).unwrap();
        match ClientMessage::decode(&payload).unwrap() {
            ClientMessage::Request(req) => req,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn request_written_before_the_handshake_is_waiting_for_the_server() {
        let (client_dgram, server_dgram) = UnixDatagram::pair().unwrap();
        let argv: [&[u8]; 2] = [b"ls", b"\xff"];
        let env: [&[u8]; 1] = [b"A=1"];
        // Returns before the server reads anything: the request sits in the socket buffer.
        let conn = Connection::open_with_request(
            client_dgram.as_raw_fd(),
            b"/bin/ls",
            argv.iter().copied(),
            b"/tmp",
            env.iter().copied(),
            &mut [0u8; 8192],
        )
        .unwrap();
        let mut server = accept(&server_dgram);
        let req = read_request(&mut server);
        assert_eq!(req.program, b"/bin/ls");
        assert_eq!(req.argv, vec![b"ls".to_vec(), b"\xff".to_vec()]);
        assert_eq!(req.env, vec![b"A=1".to_vec()]);
        drop(conn);
    }

    #[test]
    fn request_larger_than_the_socket_buffer_is_finished_after_the_handshake() {
        let (client_dgram, server_dgram) = UnixDatagram::pair().unwrap();
        let big = vec![b'x'; 4 << 20];
        let server = std::thread::spawn(move || {
            let mut stream = accept(&server_dgram);
            read_request(&mut stream)
        });
        let argv: [&[u8]; 2] = [b"echo", &big];
        let conn = Connection::open_with_request(
            client_dgram.as_raw_fd(),
            b"/bin/echo",
            argv.iter().copied(),
            b"/",
            [].into_iter(),
            &mut [0u8; 8192],
        )
        .unwrap();
        let req = server.join().unwrap();
        assert_eq!(req.argv[1], big);
        drop(conn);
    }

    #[test]
    fn open_with_request_fails_closed_when_server_is_gone() {
        let (a, b) = UnixDatagram::pair().unwrap();
        drop(b);
        let argv: [&[u8]; 1] = [b"true"];
        let err = Connection::open_with_request(
            a.as_raw_fd(),
            b"/bin/true",
            argv.iter().copied(),
            b"/",
            [].into_iter(),
            &mut [0u8; 8192],
        )
        .unwrap_err();
        assert_eq!(err, ClientError::ServerClosed);
    }

    #[test]
    fn request_reaches_a_server_and_verdict_comes_back() {
        use std::io::Write;

        let (client_dgram, server_dgram) = UnixDatagram::pair().unwrap();
        let conn = Connection::open(client_dgram.as_raw_fd()).unwrap();

        let mut server = accept(&server_dgram);

        let argv: [&[u8]; 2] = [b"ls", b"\xff"];
        let env: [&[u8]; 1] = [b"A=1"];
        conn.send_request(
            b"/bin/ls",
            argv.iter().copied(),
            b"/tmp",
            env.iter().copied(),
        )
        .unwrap();
        let req = read_request(&mut server);
        assert_eq!(req.program, b"/bin/ls");
        assert_eq!(req.argv, vec![b"ls".to_vec(), b"\xff".to_vec()]);
        assert_eq!(req.cwd, b"/tmp");
        assert_eq!(req.env, vec![b"A=1".to_vec()]);

        server
            .write_all(
                &ServerMessage::Verdict(Verdict::Deny {
                    reason: b"no".to_vec(),
                })
                .to_frame(),
            )
            .unwrap();
        server
            .write_all(&ServerMessage::Exited(ExitStatus::Signal(9)).to_frame())
            .unwrap();
        let mut rbuf = [0u8; 256];
        assert_eq!(
            conn.recv(&mut rbuf).unwrap(),
            ServerMessageRef::Deny { reason: b"no" }
        );
        assert_eq!(
            conn.recv(&mut rbuf).unwrap(),
            ServerMessageRef::Exited(ExitStatus::Signal(9))
        );
        drop(server);
        assert_eq!(conn.recv(&mut rbuf).unwrap_err(), ClientError::ServerClosed);
    }
}
