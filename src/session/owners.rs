//! Who opened a connection (network mode `gated`): the exec whose process holds the
//! sandbox's end of it.
//!
//! TCP carries no peer credentials, so the owner is found the long way, and only for a
//! connection whose destination is not decided yet (the gate asks its decider once per
//! key):
//! 1. the sandbox's end, looked up by its addresses in the sandbox's network namespace with
//!    `sock_diag` (`NETLINK_SOCK_DIAG`, the kernel's exact socket lookup that `ss` uses;
//!    the netlink socket was created inside that namespace), gives the socket's inode;
//! 2. the processes holding that inode, from `/proc/PID/fd` of the processes in the
//!    sandbox's network namespace;
//! 3. each one's exec: the last exec that process asked the server about (the server gives
//!    the asking pid, [`execgate_escalate_server::SessionBuilder::client_pids`]), or its
//!    nearest ancestor's (a process forked by an exec'd program).
//!
//! When no single exec owns the socket (it is shared, gone, or nobody asked about its
//! process), there is no owner and the decider falls back to the session's script. The
//! exec named is what the owning process last *asked* about: sandboxed code chooses which
//! process asks about which command, so it describes the connection to hooks and people,
//! it proves nothing.
//!
//! `sock_diag` is spoken here directly (one fixed request, one fixed reply) rather than
//! through a netlink crate: the whole protocol this needs is two C structs.

use execgate_decide::{BoxFuture, ConnectionOwners};
use execgate_escalate_server::{async_trait, EscalationPolicy, ExecContext, Ruling};
use execgate_hooks::shell_quote_command;
use execgate_netgate::{ConnectionOwner, ExecRef};
use execgate_protocol::ExecRequest;
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// Most processes remembered (a pid's entry is replaced by its next exec, so this bounds
/// what a script that spawns without end can make the server keep).
const MAX_REMEMBERED: usize = 1 << 16;
/// Most `/proc/PID/fd` entries read for one lookup; a sandbox holding more open files than
/// this gets no owner (the script's) instead of a slow scan.
const MAX_FDS_SCANNED: usize = 200_000;
/// How far up the process tree an owner is looked for.
const MAX_ANCESTORS: usize = 64;

/// What one process last asked the server about.
struct Asked {
    id: u64,
    request: Arc<ExecRequest>,
    program: PathBuf,
}

/// Which exec each sandboxed process last asked about, by pid.
#[derive(Default)]
pub struct ExecRegistry(Mutex<HashMap<i32, Asked>>);

impl ExecRegistry {
    /// Notes that `exec.pid` asked about `exec` (nothing without a pid).
    fn note(&self, exec: &ExecContext) {
        let Some(pid) = exec.pid else { return };
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_REMEMBERED && !map.contains_key(&pid) {
            // Forget the processes that are gone; if all are alive, forget everything.
            map.retain(|pid, _| Path::new(&format!("/proc/{pid}")).exists());
            if map.len() >= MAX_REMEMBERED {
                map.clear();
            }
        }
        map.insert(
            pid,
            Asked {
                id: exec.id,
                request: Arc::clone(&exec.request),
                program: exec.program.clone(),
            },
        );
    }

    /// The exec `pid` last asked about, with its command line as hooks are shown it.
    fn exec_of(&self, pid: i32) -> Option<ExecRef> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let asked = map.get(&pid)?;
        let args: Vec<&[u8]> = asked
            .request
            .argv
            .iter()
            .skip(1)
            .map(Vec::as_slice)
            .collect();
        Some(ExecRef {
            id: Some(asked.id),
            command: shell_quote_command(asked.program.as_os_str().as_bytes(), &args),
        })
    }
}

/// The session's policy, noting which process asked about each exec first.
pub struct Noting<P> {
    /// The policy that decides.
    pub policy: P,
    /// Where the asking processes are noted.
    pub registry: Arc<ExecRegistry>,
}

#[async_trait]
impl<P: EscalationPolicy> EscalationPolicy for Noting<P> {
    type Note = P::Note;

    async fn decide(&self, exec: &ExecContext) -> Ruling<P::Note> {
        self.registry.note(exec);
        self.policy.decide(exec).await
    }
}

/// Finds connection owners inside one sandbox's network namespace.
pub struct SandboxOwners(Arc<Lookup>);

struct Lookup {
    registry: Arc<ExecRegistry>,
    /// A `NETLINK_SOCK_DIAG` socket created in the sandbox's network namespace.
    diag: OwnedFd,
    /// `net:[INODE]`, as `/proc/PID/ns/net` names that namespace; `None` when it could not
    /// be read (every process is then scanned: socket inodes are unique on the host).
    netns: Option<String>,
}

impl SandboxOwners {
    /// Owners found with `diag` (a sock_diag socket of the sandbox's network namespace)
    /// among the processes `registry` noted.
    pub fn new(registry: Arc<ExecRegistry>, diag: OwnedFd) -> Self {
        let netns = netns_name(&diag);
        Self(Arc::new(Lookup {
            registry,
            diag,
            netns,
        }))
    }
}

impl Lookup {
    /// The owner of the sandbox socket `client` connected to `server` (blocking).
    fn lookup(&self, client: SocketAddr, server: SocketAddr) -> Option<ExecRef> {
        let inode = socket_inode(&self.diag, client, server).ok().flatten()?;
        let holders = holders(inode, self.netns.as_deref())?;
        let mut owners: Vec<ExecRef> = Vec::new();
        for pid in holders {
            let owner = self.exec_of_process(pid)?;
            if !owners.contains(&owner) {
                owners.push(owner);
            }
        }
        match <[ExecRef; 1]>::try_from(owners) {
            Ok([owner]) => Some(owner),
            Err(_) => None,
        }
    }

    /// The exec `pid` (or its nearest ancestor that asked about one) runs.
    fn exec_of_process(&self, mut pid: i32) -> Option<ExecRef> {
        for _ in 0..MAX_ANCESTORS {
            if let Some(exec) = self.registry.exec_of(pid) {
                return Some(exec);
            }
            pid = parent(pid)?;
            if pid <= 1 || !self.in_sandbox(pid) {
                return None;
            }
        }
        None
    }

    fn in_sandbox(&self, pid: i32) -> bool {
        match &self.netns {
            Some(netns) => process_netns(pid).as_deref() == Some(netns.as_str()),
            None => true,
        }
    }
}

impl ConnectionOwners for SandboxOwners {
    fn owner<'a>(&'a self, connection: &'a ConnectionOwner) -> BoxFuture<'a, Option<ExecRef>> {
        let owners = Arc::clone(&self.0);
        let (client, server) = (connection.peer, connection.listener);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || owners.lookup(client, server))
                .await
                .ok()
                .flatten()
        })
    }
}

/// `net:[INODE]` of the network namespace `socket` belongs to (`SIOCGSKNS`).
fn netns_name(socket: &OwnedFd) -> Option<String> {
    const SIOCGSKNS: libc::c_ulong = 0x894C;
    // SAFETY: SIOCGSKNS takes no argument and returns a new fd or -1.
    let fd = unsafe { libc::ioctl(socket.as_raw_fd(), SIOCGSKNS as _) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a fresh fd we own.
    let ns = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let file = std::fs::File::from(ns);
    let meta = file.metadata().ok()?;
    Some(format!(
        "net:[{}]",
        std::os::unix::fs::MetadataExt::ino(&meta)
    ))
}

fn process_netns(pid: i32) -> Option<String> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    Some(link.to_string_lossy().into_owned())
}

/// The parent of `pid`, from `/proc/PID/stat` (the field after the command name, which
/// may itself hold spaces and parentheses: read from the last `)`).
fn parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The processes (in namespace `netns`, when known) holding socket `inode`; `None` when the
/// scan gave up (too many fds).
fn holders(inode: u64, netns: Option<&str>) -> Option<HashSet<i32>> {
    let wanted = format!("socket:[{inode}]");
    let mut found = HashSet::new();
    let mut scanned = 0usize;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some(netns) = netns {
            if process_netns(pid).as_deref() != Some(netns) {
                continue;
            }
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            scanned += 1;
            if scanned > MAX_FDS_SCANNED {
                return None;
            }
            if std::fs::read_link(fd.path())
                .is_ok_and(|target| target.as_os_str() == wanted.as_str())
            {
                found.insert(pid);
            }
        }
    }
    Some(found)
}

/// `SOCK_DIAG_BY_FAMILY`, the request type of `NETLINK_SOCK_DIAG`.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `INET_DIAG_NOCOOKIE`: look the socket up by its addresses alone.
const NO_COOKIE: u32 = !0;

/// `struct inet_diag_sockid`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct SockId {
    sport: [u8; 2],
    dport: [u8; 2],
    src: [u8; 16],
    dst: [u8; 16],
    interface: u32,
    cookie: [u32; 2],
}

/// `struct nlmsghdr` + `struct inet_diag_req_v2`.
#[repr(C)]
struct Request {
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    pid: u32,
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    id: SockId,
}

/// The offset of `idiag_inode` in a reply: `nlmsghdr` (16), then `inet_diag_msg`'s
/// family, state, timer, retrans (4), `id` (48), expires, rqueue, wqueue, uid (16).
const INODE_OFFSET: usize = 16 + 4 + 48 + 16;

/// The inode of the TCP socket bound to `local` and connected to `remote`, in the network
/// namespace of the sock_diag socket `diag`; `None` when there is none.
fn socket_inode(diag: &OwnedFd, local: SocketAddr, remote: SocketAddr) -> io::Result<Option<u64>> {
    let (family, src, dst) = match (local.ip(), remote.ip()) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src[..4].copy_from_slice(&a.octets());
            dst[..4].copy_from_slice(&b.octets());
            (libc::AF_INET as u8, src, dst)
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => (libc::AF_INET6 as u8, a.octets(), b.octets()),
        _ => return Ok(None),
    };
    let request = Request {
        len: std::mem::size_of::<Request>() as u32,
        kind: SOCK_DIAG_BY_FAMILY,
        flags: libc::NLM_F_REQUEST as u16,
        seq: 1,
        pid: 0,
        family,
        protocol: libc::IPPROTO_TCP as u8,
        ext: 0,
        pad: 0,
        states: !0,
        id: SockId {
            sport: local.port().to_be_bytes(),
            dport: remote.port().to_be_bytes(),
            src,
            dst,
            interface: 0,
            cookie: [NO_COOKIE, NO_COOKIE],
        },
    };
    // SAFETY: sends the bytes of a repr(C) struct without padding holes we care about
    // (every field is initialised).
    let sent = unsafe {
        libc::send(
            diag.as_raw_fd(),
            (&raw const request).cast(),
            std::mem::size_of::<Request>(),
            0,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut reply = [0u8; 512];
    // SAFETY: receives into our buffer.
    let n = unsafe { libc::recv(diag.as_raw_fd(), reply.as_mut_ptr().cast(), reply.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let reply = &reply[..n as usize];
    let kind = reply.get(4..6).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    if kind != Some(SOCK_DIAG_BY_FAMILY) {
        // NLMSG_ERROR: no such socket (ENOENT), or the kernel refused.
        return Ok(None);
    }
    let inode = reply
        .get(INODE_OFFSET..INODE_OFFSET + 4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    Ok(inode.filter(|&i| i != 0).map(u64::from))
}

/// A `NETLINK_SOCK_DIAG` socket of this process's own network namespace (tests).
#[cfg(test)]
fn own_diag_socket() -> OwnedFd {
    // SAFETY: socket returns a new fd or -1.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    assert!(fd >= 0, "{}", io::Error::last_os_error());
    // SAFETY: a fresh fd we own.
    unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn inode_of(fd: &impl AsRawFd) -> u64 {
        std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .unwrap()
            .ino()
    }

    #[test]
    fn sock_diag_finds_a_connected_socket_by_its_addresses_and_proc_finds_its_holder() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server_side, _) = listener.accept().unwrap();
        let diag = own_diag_socket();
        let local = client.local_addr().unwrap();
        let remote = client.peer_addr().unwrap();
        assert_eq!(
            socket_inode(&diag, local, remote).unwrap(),
            Some(inode_of(&client))
        );
        // The other end is another socket; a tuple nobody has is nobody's.
        assert_eq!(
            socket_inode(&diag, remote, local).unwrap(),
            Some(inode_of(&server_side))
        );
        let unused = SocketAddr::new(local.ip(), 1);
        assert_eq!(socket_inode(&diag, unused, remote).unwrap(), None);
        let netns = netns_name(&diag);
        assert_eq!(netns, process_netns(std::process::id() as i32));
        assert_eq!(
            holders(inode_of(&client), netns.as_deref()),
            Some(HashSet::from([std::process::id() as i32]))
        );
    }

    #[test]
    fn parents_are_read_past_odd_command_names() {
        let me = std::process::id() as i32;
        let parent_pid = parent(me).unwrap();
        // SAFETY: getppid has no preconditions.
        assert_eq!(parent_pid, unsafe { libc::getppid() });
    }
}
