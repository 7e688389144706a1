//! The execgate wire protocol: every message exchanged between a client (the execve wrapper
//! or the preload shim) and the escalation server, the frame format and its limits.
//!
//! # Transport
//! The server creates a `socketpair(AF_UNIX, SOCK_SEQPACKET)`; the session's shell inherits
//! one end, whose fd number is in [`SOCKET_ENV`]. (Seqpacket, not datagram: the sandbox
//! allows no unix datagram socket, since one could `sendto()` a host socket by path.) For
//! each exec a client:
//! 1. creates a `socketpair(AF_UNIX, SOCK_STREAM)` and sends one end to the server over the
//!    session socket with `SCM_RIGHTS`, as one record whose payload is [`handshake`]
//!    (magic + [`PROTOCOL_VERSION`]);
//! 2. speaks length-prefixed frames on its end of the stream.
//!
//! # Frames
//! A frame is a little-endian `u32` payload length (1..=[`MAX_FRAME_LEN`]) followed by the
//! payload. The payload's first byte is a message tag; the body encodings are:
//! `u32`/`i32` little-endian; *bytes* = `u32` length + raw bytes; *list* = `u32` count + that
//! many *bytes*. Nothing is text: paths, argv and env are raw bytes and survive byte-exact.
//!
//! # Conversation (who sends what, in order)
//! ```text
//! client                                   server
//!   Request ------------------------------>
//!           <------------------------------ Verdict(Run | Escalate | Deny)
//! Run:      client execs the program itself; the stream is closed.
//! Deny:     client prints the reason, exits 126; the stream is closed.
//! Escalate:
//!   Fds (+ SCM_RIGHTS, one fd per target) ->
//!           <------------------------------ Started | SpawnFailed
//!   Signal* ------------------------------->   (any number, until Exited)
//!           <------------------------------ Exited(status)
//! ```
//! Anything else — an unknown tag, a frame out of order, a truncated or oversized frame, a
//! wrong number of fds — is a protocol error: the receiver closes the stream, and a client
//! never runs the command (it fails closed).

#![no_std]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

#[cfg(target_os = "linux")]
pub mod client;
pub mod display;
mod shown;

use alloc::vec::Vec;
use core::fmt;

/// Version of this protocol; carried in the handshake record and in every [`Request`].
/// Bump it on any incompatible change to the messages below.
pub const PROTOCOL_VERSION: u32 = 1;

/// Magic bytes opening the handshake record.
pub const HANDSHAKE_MAGIC: [u8; 8] = *b"EXECGATE";

/// Length of the handshake record: magic + `u32` version.
pub const HANDSHAKE_LEN: usize = HANDSHAKE_MAGIC.len() + 4;

/// Largest payload a frame may carry (16 MiB): above Linux's default `ARG_MAX` for argv +
/// env together, small enough that a hostile length cannot exhaust the server's memory.
pub const MAX_FRAME_LEN: usize = 16 << 20;

/// Largest number of fds one [`ClientMessage::Fds`] frame may carry (the kernel's
/// `SCM_MAX_FD`).
pub const MAX_FDS: usize = 253;

/// Longest deny reason or spawn-failure message the server sends; longer text is cut.
pub const MAX_REASON_LEN: usize = 4096;

/// Environment variable holding the fd number of the session's seqpacket socket.
pub const SOCKET_ENV: &str = "EXECGATE_SOCKET";

/// Environment variable naming the wrapper binary the patched shells exec.
pub const WRAPPER_ENV: &str = "EXEC_WRAPPER";

/// Legacy name of [`WRAPPER_ENV`], read by shells patched the Codex way.
pub const LEGACY_WRAPPER_ENV: &str = "BASH_EXEC_WRAPPER";

/// Environment variable the preload shim sets when it execs the wrapper to carry out an
/// escalation: the fd number of the stream on which Escalate was already received. The
/// wrapper removes it and continues at the "send fds" step.
pub const ESCALATION_FD_ENV: &str = "EXECGATE_ESCALATION_FD";

/// Exit status a client uses when a command is denied or cannot be decided.
pub const DENIED_EXIT_CODE: i32 = 126;

/// Message tags: the first byte of every frame payload.
mod tag {
    pub const REQUEST: u8 = 0x01;
    pub const FDS: u8 = 0x02;
    pub const SIGNAL: u8 = 0x03;
    pub const RUN: u8 = 0x10;
    pub const ESCALATE: u8 = 0x11;
    pub const DENY: u8 = 0x12;
    pub const STARTED: u8 = 0x20;
    pub const SPAWN_FAILED: u8 = 0x21;
    pub const EXITED_CODE: u8 = 0x22;
    pub const EXITED_SIGNAL: u8 = 0x23;
}

/// The handshake record a client sends with the stream end attached.
pub fn handshake() -> [u8; HANDSHAKE_LEN] {
    let mut out = [0u8; HANDSHAKE_LEN];
    out[..8].copy_from_slice(&HANDSHAKE_MAGIC);
    out[8..].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    out
}

/// Checks a received handshake record and returns the client's protocol version.
pub fn parse_handshake(datagram: &[u8]) -> Result<u32, ProtocolError> {
    if datagram.len() != HANDSHAKE_LEN || datagram[..8] != HANDSHAKE_MAGIC {
        return Err(ProtocolError::BadHandshake);
    }
    let version = u32::from_le_bytes([datagram[8], datagram[9], datagram[10], datagram[11]]);
    if version != PROTOCOL_VERSION {
        return Err(ProtocolError::VersionMismatch {
            client: version,
            server: PROTOCOL_VERSION,
        });
    }
    Ok(version)
}

/// Why a frame or handshake was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// The handshake record had the wrong size or magic.
    BadHandshake,
    /// The two sides speak different protocol versions.
    VersionMismatch {
        /// Version the client speaks.
        client: u32,
        /// Version the server speaks.
        server: u32,
    },
    /// A frame declared a length of zero or above [`MAX_FRAME_LEN`].
    BadFrameLength(u64),
    /// The payload ended before a field was complete.
    Truncated,
    /// Bytes were left over after the last field.
    TrailingBytes,
    /// The payload's tag is not a message this side accepts.
    UnknownTag(u8),
    /// A field's value is out of range.
    BadField(&'static str),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadHandshake => write!(f, "malformed handshake"),
            Self::VersionMismatch { client, server } => write!(
                f,
                "protocol version mismatch: wrapper speaks {client}, server speaks {server}; \
                 use the wrapper shipped with this execgate"
            ),
            Self::BadFrameLength(n) => {
                write!(f, "frame length {n} outside 1..={MAX_FRAME_LEN}")
            }
            Self::Truncated => write!(f, "truncated frame"),
            Self::TrailingBytes => write!(f, "trailing bytes after message"),
            Self::UnknownTag(t) => write!(f, "unexpected message tag {t:#04x}"),
            Self::BadField(name) => write!(f, "invalid field `{name}`"),
        }
    }
}

impl core::error::Error for ProtocolError {}

/// Checks a frame header and returns the payload length it announces.
pub fn frame_len(header: [u8; 4]) -> Result<usize, ProtocolError> {
    let len = u32::from_le_bytes(header) as usize;
    if len == 0 || len > MAX_FRAME_LEN {
        return Err(ProtocolError::BadFrameLength(len as u64));
    }
    Ok(len)
}

/// One exec a client asks the server to decide. All fields are raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// Absolute path of the program to execute (relative paths are joined to `cwd` by the
    /// client; symlinks are not resolved: the server does that).
    pub program: Vec<u8>,
    /// The full argv, `argv[0]` included, exactly as the shell passed it.
    pub argv: Vec<Vec<u8>>,
    /// The client's working directory.
    pub cwd: Vec<u8>,
    /// The environment, one raw `NAME=value` entry per element, in the caller's order.
    pub env: Vec<Vec<u8>>,
}

impl ExecRequest {
    /// The value of environment variable `name`, if the request's env sets it.
    pub fn env_var(&self, name: &[u8]) -> Option<&[u8]> {
        self.env.iter().find_map(|entry| {
            let rest = entry.strip_prefix(name)?;
            rest.strip_prefix(b"=")
        })
    }
}

/// What the server decided for an exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Execute the program in place, inside the sandbox.
    Run,
    /// The server executes the program outside the sandbox, wired to the client's fds.
    Escalate,
    /// Do not execute; the client prints the reason and exits with [`DENIED_EXIT_CODE`].
    Deny {
        /// Why, in one line (shown as `execgate: denied: <command>: <reason>`).
        reason: Vec<u8>,
    },
}

/// How an escalated process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code (0..=255).
    Code(i32),
    /// It was killed by this signal number.
    Signal(i32),
}

/// Messages a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// The exec to decide; always the first frame.
    Request(ExecRequest),
    /// After [`Verdict::Escalate`]: the fd numbers the escalated process must see, in the
    /// same order as the fds attached to this frame with `SCM_RIGHTS`.
    Fds {
        /// Target fd number for each attached fd.
        targets: Vec<i32>,
    },
    /// After escalation: a signal the client received, to deliver to the escalated process
    /// group.
    Signal {
        /// The signal number.
        signo: i32,
    },
}

/// Messages the server sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMessage {
    /// The answer to a [`ClientMessage::Request`].
    Verdict(Verdict),
    /// The escalated process was started with this pid (as seen by the server).
    Started {
        /// The escalated process's pid.
        pid: i32,
    },
    /// The escalated process could not be started.
    SpawnFailed {
        /// The `errno` of the failure (e.g. `ENOENT`), 0 when there is none.
        errno: i32,
        /// What failed, in one line.
        message: Vec<u8>,
    },
    /// The escalated process ended; the last frame of an escalation.
    Exited(ExitStatus),
}

/// Streaming encoder: the caller supplies the output sink, so clients that must not
/// allocate (the preload shim after `fork`) can encode straight into a stack buffer.
pub trait Sink {
    /// The sink's error type.
    type Error;
    /// Appends `bytes` to the output.
    fn put(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;
}

impl Sink for Vec<u8> {
    type Error = core::convert::Infallible;
    fn put(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

#[cfg(target_os = "linux")]
impl Sink for execgate_sys::StderrLine {
    type Error = core::convert::Infallible;
    fn put(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        execgate_sys::StderrLine::put(self, bytes);
        Ok(())
    }
}

fn put_u32<S: Sink>(sink: &mut S, value: u32) -> Result<(), S::Error> {
    sink.put(&value.to_le_bytes())
}

fn put_bytes<S: Sink>(sink: &mut S, bytes: &[u8]) -> Result<(), S::Error> {
    put_u32(sink, bytes.len() as u32)?;
    sink.put(bytes)
}

/// Encodes a whole request frame (header included) from borrowed parts without allocating.
///
/// Returns `Ok(None)` (writing nothing) when the frame would exceed [`MAX_FRAME_LEN`].
pub fn encode_request<'a, S, A, E>(
    sink: &mut S,
    program: &[u8],
    argv: A,
    cwd: &[u8],
    env: E,
) -> Result<Option<usize>, S::Error>
where
    S: Sink,
    A: Iterator<Item = &'a [u8]> + Clone,
    E: Iterator<Item = &'a [u8]> + Clone,
{
    let list_len = |items: &mut dyn Iterator<Item = &'a [u8]>| -> (u64, u32) {
        items.fold((4u64, 0u32), |(len, n), item| {
            (len + 4 + item.len() as u64, n.saturating_add(1))
        })
    };
    let (argv_len, argc) = list_len(&mut argv.clone());
    let (env_len, envc) = list_len(&mut env.clone());
    let payload = 1 + 4 + (4 + program.len() as u64) + (4 + cwd.len() as u64) + argv_len + env_len;
    if payload > MAX_FRAME_LEN as u64 {
        return Ok(None);
    }
    put_u32(sink, payload as u32)?;
    sink.put(&[tag::REQUEST])?;
    put_u32(sink, PROTOCOL_VERSION)?;
    put_bytes(sink, program)?;
    put_bytes(sink, cwd)?;
    put_u32(sink, argc)?;
    for arg in argv {
        put_bytes(sink, arg)?;
    }
    put_u32(sink, envc)?;
    for entry in env {
        put_bytes(sink, entry)?;
    }
    Ok(Some(4 + payload as usize))
}

/// Encodes a whole [`ClientMessage::Fds`] frame (header included) into `out`, returning its
/// length, or `None` when `out` is too small or there are more than [`MAX_FDS`] targets.
pub fn encode_fds_frame(targets: &[i32], out: &mut [u8]) -> Option<usize> {
    if targets.len() > MAX_FDS {
        return None;
    }
    let payload = 1 + 4 + 4 * targets.len();
    let total = 4 + payload;
    if out.len() < total {
        return None;
    }
    out[..4].copy_from_slice(&(payload as u32).to_le_bytes());
    out[4] = tag::FDS;
    out[5..9].copy_from_slice(&(targets.len() as u32).to_le_bytes());
    for (i, target) in targets.iter().enumerate() {
        out[9 + 4 * i..13 + 4 * i].copy_from_slice(&target.to_le_bytes());
    }
    Some(total)
}

/// Encodes a whole [`ClientMessage::Signal`] frame (header included).
pub fn encode_signal_frame(signo: i32) -> [u8; 9] {
    let mut out = [0u8; 9];
    out[..4].copy_from_slice(&5u32.to_le_bytes());
    out[4] = tag::SIGNAL;
    out[5..].copy_from_slice(&signo.to_le_bytes());
    out
}

impl ClientMessage {
    /// Encodes this message as a whole frame (header included).
    pub fn to_frame(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Self::Request(req) => {
                // A request too large for a frame is encoded anyway so tests can send it;
                // real clients use `encode_request`, which refuses.
                let argv = req.argv.iter().map(Vec::as_slice);
                let env = req.env.iter().map(Vec::as_slice);
                let fits = encode_request(&mut out, &req.program, argv, &req.cwd, env);
                if !matches!(fits, Ok(Some(_))) {
                    out.clear();
                    out.extend_from_slice(&[0, 0, 0, 0, tag::REQUEST]);
                }
            }
            Self::Fds { targets } => {
                out.resize(9 + 4 * targets.len(), 0);
                let payload = (5 + 4 * targets.len()) as u32;
                out[..4].copy_from_slice(&payload.to_le_bytes());
                out[4] = tag::FDS;
                out[5..9].copy_from_slice(&(targets.len() as u32).to_le_bytes());
                for (i, t) in targets.iter().enumerate() {
                    out[9 + 4 * i..13 + 4 * i].copy_from_slice(&t.to_le_bytes());
                }
            }
            Self::Signal { signo } => out.extend_from_slice(&encode_signal_frame(*signo)),
        }
        out
    }

    /// Decodes a frame payload (header already removed and checked with [`frame_len`]).
    pub fn decode(payload: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(payload);
        let msg = match r.u8()? {
            tag::REQUEST => {
                let version = r.u32()?;
                if version != PROTOCOL_VERSION {
                    return Err(ProtocolError::VersionMismatch {
                        client: version,
                        server: PROTOCOL_VERSION,
                    });
                }
                let program = r.bytes()?.to_vec();
                let cwd = r.bytes()?.to_vec();
                let argv = r.list()?;
                let env = r.list()?;
                Self::Request(ExecRequest {
                    program,
                    argv,
                    cwd,
                    env,
                })
            }
            tag::FDS => {
                let count = r.u32()? as usize;
                if count > MAX_FDS {
                    return Err(ProtocolError::BadField("fd count"));
                }
                let mut targets = Vec::with_capacity(count);
                for _ in 0..count {
                    let target = r.i32()?;
                    if target < 0 {
                        return Err(ProtocolError::BadField("fd target"));
                    }
                    targets.push(target);
                }
                Self::Fds { targets }
            }
            tag::SIGNAL => {
                let signo = r.i32()?;
                if !(1..=64).contains(&signo) {
                    return Err(ProtocolError::BadField("signal number"));
                }
                Self::Signal { signo }
            }
            other => return Err(ProtocolError::UnknownTag(other)),
        };
        r.finish()?;
        Ok(msg)
    }
}

impl ServerMessage {
    /// Encodes this message as a whole frame (header included). Reasons and messages longer
    /// than [`MAX_REASON_LEN`] are cut.
    pub fn to_frame(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let cut = |text: &[u8]| -> Vec<u8> { text[..text.len().min(MAX_REASON_LEN)].to_vec() };
        match self {
            Self::Verdict(Verdict::Run) => body.push(tag::RUN),
            Self::Verdict(Verdict::Escalate) => body.push(tag::ESCALATE),
            Self::Verdict(Verdict::Deny { reason }) => {
                body.push(tag::DENY);
                let reason = cut(reason);
                body.extend_from_slice(&(reason.len() as u32).to_le_bytes());
                body.extend_from_slice(&reason);
            }
            Self::Started { pid } => {
                body.push(tag::STARTED);
                body.extend_from_slice(&pid.to_le_bytes());
            }
            Self::SpawnFailed { errno, message } => {
                body.push(tag::SPAWN_FAILED);
                body.extend_from_slice(&errno.to_le_bytes());
                let message = cut(message);
                body.extend_from_slice(&(message.len() as u32).to_le_bytes());
                body.extend_from_slice(&message);
            }
            Self::Exited(ExitStatus::Code(code)) => {
                body.push(tag::EXITED_CODE);
                body.extend_from_slice(&code.to_le_bytes());
            }
            Self::Exited(ExitStatus::Signal(signo)) => {
                body.push(tag::EXITED_SIGNAL);
                body.extend_from_slice(&signo.to_le_bytes());
            }
        }
        let mut out = Vec::with_capacity(4 + body.len());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }
}

/// A decoded server message that borrows its text from the receive buffer, so clients can
/// decode without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerMessageRef<'a> {
    /// See [`Verdict::Run`].
    Run,
    /// See [`Verdict::Escalate`].
    Escalate,
    /// See [`Verdict::Deny`].
    Deny {
        /// Why the command was denied.
        reason: &'a [u8],
    },
    /// See [`ServerMessage::Started`].
    Started {
        /// The escalated process's pid.
        pid: i32,
    },
    /// See [`ServerMessage::SpawnFailed`].
    SpawnFailed {
        /// The `errno` of the failure.
        errno: i32,
        /// What failed.
        message: &'a [u8],
    },
    /// See [`ServerMessage::Exited`].
    Exited(ExitStatus),
}

impl<'a> ServerMessageRef<'a> {
    /// Decodes a frame payload (header already removed and checked with [`frame_len`]).
    pub fn decode(payload: &'a [u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(payload);
        let msg = match r.u8()? {
            tag::RUN => Self::Run,
            tag::ESCALATE => Self::Escalate,
            tag::DENY => Self::Deny { reason: r.bytes()? },
            tag::STARTED => Self::Started { pid: r.i32()? },
            tag::SPAWN_FAILED => Self::SpawnFailed {
                errno: r.i32()?,
                message: r.bytes()?,
            },
            tag::EXITED_CODE => {
                let code = r.i32()?;
                if !(0..=255).contains(&code) {
                    return Err(ProtocolError::BadField("exit code"));
                }
                Self::Exited(ExitStatus::Code(code))
            }
            tag::EXITED_SIGNAL => {
                let signo = r.i32()?;
                if !(1..=64).contains(&signo) {
                    return Err(ProtocolError::BadField("signal number"));
                }
                Self::Exited(ExitStatus::Signal(signo))
            }
            other => return Err(ProtocolError::UnknownTag(other)),
        };
        r.finish()?;
        Ok(msg)
    }

    /// Converts to the owned form.
    pub fn to_owned(self) -> ServerMessage {
        match self {
            Self::Run => ServerMessage::Verdict(Verdict::Run),
            Self::Escalate => ServerMessage::Verdict(Verdict::Escalate),
            Self::Deny { reason } => ServerMessage::Verdict(Verdict::Deny {
                reason: reason.to_vec(),
            }),
            Self::Started { pid } => ServerMessage::Started { pid },
            Self::SpawnFailed { errno, message } => ServerMessage::SpawnFailed {
                errno,
                message: message.to_vec(),
            },
            Self::Exited(status) => ServerMessage::Exited(status),
        }
    }
}

/// Bounds-checked reader over a frame payload; never allocates on a declared length that
/// the payload cannot back.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.buf.len() < n {
            return Err(ProtocolError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, ProtocolError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i32(&mut self) -> Result<i32, ProtocolError> {
        Ok(self.u32()? as i32)
    }

    fn bytes(&mut self) -> Result<&'a [u8], ProtocolError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn list(&mut self) -> Result<Vec<Vec<u8>>, ProtocolError> {
        let count = self.u32()? as usize;
        // Each element needs at least its 4-byte length: refuse counts the payload can't hold.
        if count > self.buf.len() / 4 {
            return Err(ProtocolError::Truncated);
        }
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(self.bytes()?.to_vec());
        }
        Ok(items)
    }

    fn finish(&self) -> Result<(), ProtocolError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::TrailingBytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    fn payload(frame: &[u8]) -> &[u8] {
        let len = frame_len([frame[0], frame[1], frame[2], frame[3]]).unwrap();
        assert_eq!(len, frame.len() - 4);
        &frame[4..]
    }

    #[test]
    fn request_round_trips_non_utf8_bytes() {
        let req = ExecRequest {
            program: b"/usr/bin/printf".to_vec(),
            argv: vec![
                b"printf".to_vec(),
                b"a\nb".to_vec(),
                vec![0xff, 0xfe],
                vec![],
            ],
            cwd: vec![b'/', 0xc3, 0x28],
            env: vec![b"A=\xff".to_vec(), b"NOEQUALS".to_vec()],
        };
        let frame = ClientMessage::Request(req.clone()).to_frame();
        assert_eq!(
            ClientMessage::decode(payload(&frame)).unwrap(),
            ClientMessage::Request(req)
        );
    }

    #[test]
    fn env_var_finds_exact_name_only() {
        let req = ExecRequest {
            program: vec![],
            argv: vec![],
            cwd: vec![],
            env: vec![b"PATHX=1".to_vec(), b"PATH=/bin".to_vec()],
        };
        assert_eq!(req.env_var(b"PATH"), Some(&b"/bin"[..]));
        assert_eq!(req.env_var(b"PAT"), None);
    }

    #[test]
    fn oversized_request_is_refused_without_writing() {
        let big = vec![b'x'; MAX_FRAME_LEN];
        let mut out = Vec::new();
        let argv = [&big[..]];
        let res = encode_request(&mut out, b"/p", argv.iter().copied(), b"/", [].into_iter());
        assert_eq!(res, Ok(None));
        assert!(out.is_empty());
    }

    #[test]
    fn frame_length_limits_are_enforced() {
        assert_eq!(
            frame_len(0u32.to_le_bytes()),
            Err(ProtocolError::BadFrameLength(0))
        );
        let too_big = (MAX_FRAME_LEN + 1) as u32;
        assert_eq!(
            frame_len(too_big.to_le_bytes()),
            Err(ProtocolError::BadFrameLength(too_big as u64))
        );
        assert_eq!(
            frame_len((MAX_FRAME_LEN as u32).to_le_bytes()),
            Ok(MAX_FRAME_LEN)
        );
    }

    #[test]
    fn hostile_list_count_is_truncated_not_allocated() {
        let mut p = vec![tag::REQUEST];
        p.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        p.extend_from_slice(&0u32.to_le_bytes()); // program
        p.extend_from_slice(&0u32.to_le_bytes()); // cwd
        p.extend_from_slice(&u32::MAX.to_le_bytes()); // argv count
        assert_eq!(ClientMessage::decode(&p), Err(ProtocolError::Truncated));
    }

    #[test]
    fn wrong_request_version_is_reported() {
        let mut p = vec![tag::REQUEST];
        p.extend_from_slice(&99u32.to_le_bytes());
        assert_eq!(
            ClientMessage::decode(&p),
            Err(ProtocolError::VersionMismatch {
                client: 99,
                server: PROTOCOL_VERSION
            })
        );
    }

    #[test]
    fn trailing_bytes_and_unknown_tags_are_rejected() {
        let mut frame = ClientMessage::Signal { signo: 2 }.to_frame();
        frame.push(0);
        assert_eq!(
            ClientMessage::decode(&frame[4..]),
            Err(ProtocolError::TrailingBytes)
        );
        assert_eq!(
            ClientMessage::decode(&[0x7f]),
            Err(ProtocolError::UnknownTag(0x7f))
        );
        assert_eq!(
            ServerMessageRef::decode(&[tag::REQUEST]),
            Err(ProtocolError::UnknownTag(tag::REQUEST))
        );
    }

    #[test]
    fn server_messages_round_trip() {
        let messages = [
            ServerMessage::Verdict(Verdict::Run),
            ServerMessage::Verdict(Verdict::Escalate),
            ServerMessage::Verdict(Verdict::Deny {
                reason: b"no \xff".to_vec(),
            }),
            ServerMessage::Started { pid: 42 },
            ServerMessage::SpawnFailed {
                errno: 2,
                message: b"not found".to_vec(),
            },
            ServerMessage::Exited(ExitStatus::Code(255)),
            ServerMessage::Exited(ExitStatus::Signal(9)),
        ];
        for msg in messages {
            let frame = msg.to_frame();
            assert_eq!(
                ServerMessageRef::decode(payload(&frame))
                    .unwrap()
                    .to_owned(),
                msg
            );
        }
    }

    #[test]
    fn long_deny_reason_is_cut() {
        let frame = ServerMessage::Verdict(Verdict::Deny {
            reason: vec![b'r'; MAX_REASON_LEN * 2],
        })
        .to_frame();
        match ServerMessageRef::decode(payload(&frame)).unwrap() {
            ServerMessageRef::Deny { reason } => assert_eq!(reason.len(), MAX_REASON_LEN),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn fds_frame_matches_owned_encoding() {
        let mut buf = [0u8; 64];
        let n = encode_fds_frame(&[0, 1, 2, 7], &mut buf).unwrap();
        let owned = ClientMessage::Fds {
            targets: vec![0, 1, 2, 7],
        }
        .to_frame();
        assert_eq!(&buf[..n], &owned[..]);
        assert_eq!(
            ClientMessage::decode(payload(&owned)).unwrap(),
            ClientMessage::Fds {
                targets: vec![0, 1, 2, 7]
            }
        );
        assert_eq!(encode_fds_frame(&[0; MAX_FDS + 1], &mut [0u8; 4096]), None);
    }

    #[test]
    fn handshake_checks_magic_and_version() {
        assert_eq!(parse_handshake(&handshake()), Ok(PROTOCOL_VERSION));
        assert_eq!(parse_handshake(b"nope"), Err(ProtocolError::BadHandshake));
        let mut other = handshake();
        other[8] = 7;
        assert_eq!(
            parse_handshake(&other),
            Err(ProtocolError::VersionMismatch {
                client: 7,
                server: PROTOCOL_VERSION
            })
        );
    }
}
