//! The control channel between the server's [`crate::Supervisor`] and the session's init
//! (`execgate-init`, inside the sandbox): one `SOCK_SEQPACKET` socketpair, one message per
//! record, fds attached with `SCM_RIGHTS`.
//!
//! ```text
//! server (Supervisor)                      init
//!   Config --------------------------------->   (first record; written before the spawn)
//!           <--------------------------------- Ready(netns cookie) + [sock_diag socket]
//!           <--------------------------------- Listener + [seccomp listener] (from the shell's child)
//!   Signal(n) | Terminate | OpenSocket ------>  (any time)
//!           <--------------------------------- Socket(id, errno) + [socket]   (answers OpenSocket)
//!           <--------------------------------- Failed(reason)   (setup failed; nothing ran)
//!           <--------------------------------- Exited(status)   (last: everything is reaped)
//! ```
//! The channel closing is itself a message: the init ends the session when the server's end
//! closes (the server went away), and the server treats an init that closes without
//! `Exited` as a session that ended abnormally. Both sides are built together, so the
//! config carries a version and a mismatched init refuses to start.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// Version of the config record; bump on any change to the messages below.
const VERSION: u32 = 2;
/// Largest record either side sends (the config, with its filters and paths, is the
/// largest by far).
pub(crate) const MAX_RECORD: usize = 256 * 1024;
/// Most fds one record carries.
const MAX_FDS: usize = 4;

mod tag {
    pub const CONFIG: u8 = 1;
    pub const SIGNAL: u8 = 2;
    pub const TERMINATE: u8 = 3;
    pub const OPEN_SOCKET: u8 = 4;
    pub const START: u8 = 5;
    pub const READY: u8 = 0x10;
    pub const LISTENER: u8 = 0x11;
    pub const EXITED_CODE: u8 = 0x12;
    pub const EXITED_SIGNAL: u8 = 0x13;
    pub const FAILED: u8 = 0x14;
    pub const SOCKET: u8 = 0x15;
}

/// Which namespaces the init creates itself before anything else (Landlock backend; under
/// bubblewrap, bwrap has made them already).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Namespaces {
    /// None: the init stays in the host's namespaces and is a child subreaper.
    None,
    /// A PID and a mount namespace (the init is PID 1, with its own `/proc`).
    PidMount,
    /// PID, mount and network namespace (network off: no peers, abstract sockets private).
    PidMountNet,
}

/// The Landlock domain the init applies to the shell's process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LandlockSpec {
    /// The kernel's Landlock ABI, as probed by the server.
    pub abi: i32,
    /// Whether filesystem access is restricted (Landlock backend) or only scoped
    /// (bubblewrap, which restricts the filesystem itself).
    pub fs: bool,
    /// Trees readable and executable.
    pub read: Vec<PathBuf>,
    /// Directories whose entries may be listed (not their files' contents).
    pub list: Vec<PathBuf>,
    /// Trees fully writable.
    pub write: Vec<PathBuf>,
    /// Device files readable and writable (with ioctls).
    pub devices: Vec<PathBuf>,
}

/// Everything the init needs to set up the sandbox; the first record on the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InitConfig {
    /// Namespaces to create (Landlock backend only).
    pub namespaces: Namespaces,
    /// Seccomp programs (raw `sock_filter` arrays) installed in order, before the notifier.
    pub filters: Vec<Vec<u8>>,
    /// The user-notification program, installed last with `SECCOMP_FILTER_FLAG_NEW_LISTENER`.
    pub notify: Vec<u8>,
    /// The Landlock domain, if any.
    pub landlock: Option<LandlockSpec>,
    /// Wait for [`ToInit::Start`] before starting the shell (answering `OpenSocket`
    /// meanwhile): a gated sandbox's shell starts only once the gate listens.
    pub hold_shell: bool,
    /// In the init's own mount namespace, `/etc/resolv.conf` becomes a read-only file with
    /// these bytes (a gated sandbox under Landlock; bubblewrap binds it itself).
    pub resolv_conf: Option<Vec<u8>>,
}

/// How the session's shell ended, as its init saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

/// Server to init.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ToInit {
    Config(InitConfig),
    /// Deliver this signal to the shell.
    Signal(i32),
    /// Kill every process of the session, reap them, report `Exited` and exit.
    Terminate,
    /// Start the held shell (see [`InitConfig::hold_shell`]).
    Start,
    /// Create `socket(domain, ty, protocol)` inside the sandbox's namespaces and send it.
    OpenSocket {
        id: u32,
        domain: i32,
        ty: i32,
        protocol: i32,
    },
}

/// Init to server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FromInit {
    /// The init is up; carries the sock_diag socket of the sandbox's network namespace.
    Ready { netns_cookie: u64 },
    /// The seccomp listener, from the shell's process right before it execs the shell.
    Listener,
    /// The shell ended and every process of the session was reaped.
    Exited(ShellStatus),
    /// Setting up the sandbox failed; the shell did not run.
    Failed(String),
    /// The answer to `OpenSocket` (errno 0: the socket is attached).
    Socket { id: u32, errno: i32 },
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }
    fn paths(&mut self, paths: &[PathBuf]) {
        use std::os::unix::ffi::OsStrExt;
        self.u32(paths.len() as u32);
        for p in paths {
            self.bytes(p.as_os_str().as_bytes());
        }
    }
}

struct Reader<'a>(&'a [u8]);

fn bad() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "malformed control record")
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.0.len() < n {
            return Err(bad());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> io::Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i32(&mut self) -> io::Result<i32> {
        Ok(self.u32()? as i32)
    }
    fn u64(&mut self) -> io::Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> io::Result<Vec<u8>> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn paths(&mut self) -> io::Result<Vec<PathBuf>> {
        use std::os::unix::ffi::OsStringExt;
        let n = self.u32()? as usize;
        if n > MAX_RECORD {
            return Err(bad());
        }
        (0..n)
            .map(|_| Ok(PathBuf::from(std::ffi::OsString::from_vec(self.bytes()?))))
            .collect()
    }
    fn end(&self) -> io::Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(bad())
        }
    }
}

impl ToInit {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        match self {
            ToInit::Config(c) => {
                w.u8(tag::CONFIG);
                w.u32(VERSION);
                w.u8(match c.namespaces {
                    Namespaces::None => 0,
                    Namespaces::PidMount => 1,
                    Namespaces::PidMountNet => 2,
                });
                w.u32(c.filters.len() as u32);
                for f in &c.filters {
                    w.bytes(f);
                }
                w.bytes(&c.notify);
                match &c.landlock {
                    None => w.u8(0),
                    Some(l) => {
                        w.u8(1);
                        w.i32(l.abi);
                        w.u8(u8::from(l.fs));
                        w.paths(&l.read);
                        w.paths(&l.list);
                        w.paths(&l.write);
                        w.paths(&l.devices);
                    }
                }
                w.u8(u8::from(c.hold_shell));
                match &c.resolv_conf {
                    None => w.u8(0),
                    Some(text) => {
                        w.u8(1);
                        w.bytes(text);
                    }
                }
            }
            ToInit::Signal(n) => {
                w.u8(tag::SIGNAL);
                w.i32(*n);
            }
            ToInit::Terminate => w.u8(tag::TERMINATE),
            ToInit::Start => w.u8(tag::START),
            ToInit::OpenSocket {
                id,
                domain,
                ty,
                protocol,
            } => {
                w.u8(tag::OPEN_SOCKET);
                w.u32(*id);
                w.i32(*domain);
                w.i32(*ty);
                w.i32(*protocol);
            }
        }
        w.0
    }

    fn decode(bytes: &[u8]) -> io::Result<Self> {
        let mut r = Reader(bytes);
        let msg = match r.u8()? {
            tag::CONFIG => {
                let version = r.u32()?;
                if version != VERSION {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "execgate-init speaks control version {VERSION}, the server {version}: \
                             use the execgate-init built with this execgate"
                        ),
                    ));
                }
                let namespaces = match r.u8()? {
                    0 => Namespaces::None,
                    1 => Namespaces::PidMount,
                    2 => Namespaces::PidMountNet,
                    _ => return Err(bad()),
                };
                let n = r.u32()? as usize;
                if n > 16 {
                    return Err(bad());
                }
                let filters = (0..n).map(|_| r.bytes()).collect::<io::Result<_>>()?;
                let notify = r.bytes()?;
                let landlock = match r.u8()? {
                    0 => None,
                    1 => Some(LandlockSpec {
                        abi: r.i32()?,
                        fs: r.u8()? != 0,
                        read: r.paths()?,
                        list: r.paths()?,
                        write: r.paths()?,
                        devices: r.paths()?,
                    }),
                    _ => return Err(bad()),
                };
                let hold_shell = r.u8()? != 0;
                let resolv_conf = match r.u8()? {
                    0 => None,
                    1 => Some(r.bytes()?),
                    _ => return Err(bad()),
                };
                ToInit::Config(InitConfig {
                    namespaces,
                    filters,
                    notify,
                    landlock,
                    hold_shell,
                    resolv_conf,
                })
            }
            tag::SIGNAL => ToInit::Signal(r.i32()?),
            tag::TERMINATE => ToInit::Terminate,
            tag::START => ToInit::Start,
            tag::OPEN_SOCKET => ToInit::OpenSocket {
                id: r.u32()?,
                domain: r.i32()?,
                ty: r.i32()?,
                protocol: r.i32()?,
            },
            _ => return Err(bad()),
        };
        r.end()?;
        Ok(msg)
    }
}

impl FromInit {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        match self {
            FromInit::Ready { netns_cookie } => {
                w.u8(tag::READY);
                w.u64(*netns_cookie);
            }
            FromInit::Listener => w.u8(tag::LISTENER),
            FromInit::Exited(ShellStatus::Code(c)) => {
                w.u8(tag::EXITED_CODE);
                w.i32(*c);
            }
            FromInit::Exited(ShellStatus::Signal(s)) => {
                w.u8(tag::EXITED_SIGNAL);
                w.i32(*s);
            }
            FromInit::Failed(reason) => {
                w.u8(tag::FAILED);
                w.bytes(reason.as_bytes());
            }
            FromInit::Socket { id, errno } => {
                w.u8(tag::SOCKET);
                w.u32(*id);
                w.i32(*errno);
            }
        }
        w.0
    }

    fn decode(bytes: &[u8]) -> io::Result<Self> {
        let mut r = Reader(bytes);
        let msg = match r.u8()? {
            tag::READY => FromInit::Ready {
                netns_cookie: r.u64()?,
            },
            tag::LISTENER => FromInit::Listener,
            tag::EXITED_CODE => FromInit::Exited(ShellStatus::Code(r.i32()?)),
            tag::EXITED_SIGNAL => FromInit::Exited(ShellStatus::Signal(r.i32()?)),
            tag::FAILED => FromInit::Failed(String::from_utf8_lossy(&r.bytes()?).into_owned()),
            tag::SOCKET => FromInit::Socket {
                id: r.u32()?,
                errno: r.i32()?,
            },
            _ => return Err(bad()),
        };
        r.end()?;
        Ok(msg)
    }
}

/// A close-on-exec `SOCK_SEQPACKET` socketpair: (server end, init end).
pub(crate) fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: socketpair writes two new fds into `fds`.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds are fresh and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn send(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let iov = [IoSlice::new(bytes)];
    let cmsgs = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsgs };
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}

/// One received record: its bytes and the fds that came with it. `Ok(None)` at end of file.
fn recv(sock: BorrowedFd<'_>, flags: i32) -> io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = vec![0u8; MAX_RECORD];
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
    loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let flags = MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::from_bits_truncate(flags);
        let msg = match recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), flags) {
            Ok(msg) => msg,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
        };
        let mut fds = Vec::new();
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    // SAFETY: the kernel just installed these fds for us.
                    fds.extend(
                        raw.into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
        }
        let n = msg.bytes;
        if msg
            .flags
            .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC)
        {
            return Err(bad());
        }
        if n == 0 && fds.is_empty() {
            return Ok(None);
        }
        buf.truncate(n);
        return Ok(Some((buf, fds)));
    }
}

/// Sends `msg` to the init.
pub(crate) fn send_to_init(sock: BorrowedFd<'_>, msg: &ToInit) -> io::Result<()> {
    send(sock, &msg.encode(), &[])
}

/// Sends `msg` (with `fds`) to the server.
pub(crate) fn send_to_server(
    sock: BorrowedFd<'_>,
    msg: &FromInit,
    fds: &[RawFd],
) -> io::Result<()> {
    send(sock, &msg.encode(), fds)
}

/// Receives one message from the server; `Ok(None)` when the server's end closed.
pub(crate) fn recv_from_server(sock: BorrowedFd<'_>) -> io::Result<Option<ToInit>> {
    match recv(sock, 0)? {
        None => Ok(None),
        Some((bytes, _fds)) => ToInit::decode(&bytes).map(Some),
    }
}

/// Receives one message from the init (non-blocking when `dontwait`); `Ok(None)` when the
/// init's end closed.
pub(crate) fn recv_from_init(
    sock: BorrowedFd<'_>,
    dontwait: bool,
) -> io::Result<Option<(FromInit, Vec<OwnedFd>)>> {
    let flags = if dontwait { libc::MSG_DONTWAIT } else { 0 };
    match recv(sock, flags)? {
        None => Ok(None),
        Some((bytes, fds)) => Ok(Some((FromInit::decode(&bytes)?, fds))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn config_round_trips() {
        let config = InitConfig {
            namespaces: Namespaces::PidMountNet,
            filters: vec![vec![1, 2, 3], vec![]],
            notify: vec![9; 16],
            landlock: Some(LandlockSpec {
                abi: 7,
                fs: true,
                read: vec!["/usr".into()],
                list: vec!["/".into()],
                write: vec!["/tmp/a b".into()],
                devices: vec!["/dev/null".into()],
            }),
            hold_shell: true,
            resolv_conf: Some(b"nameserver 127.0.0.1\n".to_vec()),
        };
        let (a, b) = pair().unwrap();
        send_to_init(a.as_fd(), &ToInit::Config(config.clone())).unwrap();
        send_to_init(a.as_fd(), &ToInit::Start).unwrap();
        send_to_init(a.as_fd(), &ToInit::Signal(15)).unwrap();
        assert_eq!(
            recv_from_server(b.as_fd()).unwrap(),
            Some(ToInit::Config(config))
        );
        assert_eq!(recv_from_server(b.as_fd()).unwrap(), Some(ToInit::Start));
        assert_eq!(
            recv_from_server(b.as_fd()).unwrap(),
            Some(ToInit::Signal(15))
        );
        send_to_server(b.as_fd(), &FromInit::Exited(ShellStatus::Signal(9)), &[]).unwrap();
        let (msg, fds) = recv_from_init(a.as_fd(), false).unwrap().unwrap();
        assert_eq!(msg, FromInit::Exited(ShellStatus::Signal(9)));
        assert!(fds.is_empty());
        drop(b);
        assert!(recv_from_init(a.as_fd(), false).unwrap().is_none());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &[][..],
            &[0xff],
            &[tag::CONFIG, 1],
            &[tag::SIGNAL, 1, 2, 3, 4, 5],
        ] {
            assert!(ToInit::decode(bytes).is_err());
            assert!(FromInit::decode(bytes).is_err());
        }
    }
}
