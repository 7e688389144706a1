//! The `NETLINK_SOCK_DIAG` unix-socket dump the supervisor uses to tell which file a
//! listening socket is bound to (`UDIAG_SHOW_VFS`) and which socket that is (its cookie).
//! The dump covers the network namespace the netlink socket was created in: the session's
//! init creates it inside the sandbox's namespace and hands it out.
//!
//! Written by hand rather than with a netlink crate: it is one request and three fields of
//! the answer, and the parser must refuse anything malformed without panicking.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const UDIAG_SHOW_VFS: u32 = 0x2;
const UNIX_DIAG_VFS: u16 = 1;
/// `TCP_LISTEN`, the state of a listening unix stream or seqpacket socket.
pub(crate) const STATE_LISTEN: u32 = 1 << 10;
/// Every state.
pub(crate) const STATE_ANY: u32 = u32::MAX;

/// One socket of the dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The socket's cookie (unique for the life of the namespace, never reused).
    pub cookie: u64,
    /// The file it is bound to: (device in the kernel's encoding, inode), if bound to a path.
    pub vfs: Option<(u32, u32)>,
}

/// Dumps the unix sockets in `states` of the diag socket's namespace.
pub(crate) fn dump(sock: BorrowedFd<'_>, states: u32) -> io::Result<Vec<Entry>> {
    let mut req = [0u8; 16 + 24];
    let total = req.len() as u32;
    req[0..4].copy_from_slice(&total.to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes()); // seq
    req[16] = libc::AF_UNIX as u8;
    req[20..24].copy_from_slice(&states.to_ne_bytes());
    req[28..32].copy_from_slice(&UDIAG_SHOW_VFS.to_ne_bytes());
    // SAFETY: sockaddr_nl is plain data; an all-zero one addresses the kernel.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: sendto from our buffer to the kernel's address.
    let n = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: recv into our own buffer.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(err);
        }
        if parse(&buf[..n as usize], &mut out)? {
            return Ok(out);
        }
    }
}

fn malformed() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "malformed sock_diag answer")
}

fn u32_at(b: &[u8], at: usize) -> io::Result<u32> {
    let s = b.get(at..at + 4).ok_or_else(malformed)?;
    Ok(u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn u16_at(b: &[u8], at: usize) -> io::Result<u16> {
    let s = b.get(at..at + 2).ok_or_else(malformed)?;
    Ok(u16::from_ne_bytes([s[0], s[1]]))
}

/// Parses one datagram of the answer into `out`; `Ok(true)` at the end of the dump.
fn parse(mut b: &[u8], out: &mut Vec<Entry>) -> io::Result<bool> {
    while b.len() >= 16 {
        let len = u32_at(b, 0)? as usize;
        let ty = u16_at(b, 4)?;
        if len < 16 || len > b.len() {
            return Err(malformed());
        }
        let msg = &b[16..len];
        match ty {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = u32_at(msg, 0)? as i32;
                return Err(io::Error::from_raw_os_error(-errno));
            }
            SOCK_DIAG_BY_FAMILY => {
                // unix_diag_msg: family, type, state, pad, ino u32, cookie [u32; 2]
                if msg.len() < 16 {
                    return Err(malformed());
                }
                let cookie = u64::from(u32_at(msg, 8)?) | (u64::from(u32_at(msg, 12)?) << 32);
                let mut vfs = None;
                let mut attrs = &msg[16..];
                while attrs.len() >= 4 {
                    let alen = u16_at(attrs, 0)? as usize;
                    let aty = u16_at(attrs, 2)? & 0x3fff;
                    if alen < 4 || alen > attrs.len() {
                        return Err(malformed());
                    }
                    if aty == UNIX_DIAG_VFS && alen >= 12 {
                        vfs = Some((u32_at(attrs, 8)?, u32_at(attrs, 4)?));
                    }
                    let step = (alen + 3) & !3;
                    attrs = attrs.get(step..).unwrap_or(&[]);
                }
                out.push(Entry { cookie, vfs });
            }
            _ => {}
        }
        let step = (len + 3) & !3;
        b = b.get(step..).unwrap_or(&[]);
    }
    Ok(false)
}

/// `st_dev` from `fstat` in the kernel's internal encoding (`MAJOR << 20 | MINOR`), the
/// one `UNIX_DIAG_VFS` reports.
pub(crate) fn kernel_dev(st_dev: u64) -> u32 {
    let major = libc::major(st_dev);
    let minor = libc::minor(st_dev);
    (major << 20) | (minor & 0xfffff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_bound_listener_is_found_by_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        // SAFETY: socket returns a new fd.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        assert!(fd >= 0);
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        let entries = dump(sock.as_fd(), STATE_LISTEN).unwrap();
        let want = (kernel_dev(meta.dev()), meta.ino() as u32);
        assert!(entries.iter().any(|e| e.vfs == Some(want)), "{entries:?}");
    }

    #[test]
    fn garbage_is_an_error() {
        let mut out = Vec::new();
        assert!(parse(&[0xff; 20], &mut out).is_err());
        assert!(parse(
            &[16, 0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &mut out
        )
        .is_err());
    }
}
