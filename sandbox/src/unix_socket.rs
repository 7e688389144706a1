//! Which unix sockets the sandbox may connect to, decided for every `connect` (and, when the
//! sandbox shares the host's network namespace, every `socket(AF_UNIX)`).
//!
//! The supervisor never lets a checked `connect` continue: between the check and the
//! kernel's own copy, another thread of the caller could rewrite the address or `dup2` a
//! different socket onto the fd. Instead the server fetches the caller's socket
//! (`pidfd_getfd`: the same open file), reads the address once, and connects that socket
//! itself:
//! - other families: as given (the socket's own network namespace applies);
//! - a path: resolved in the caller's view (`/proc/<tid>/root` or `/cwd`, no magic links),
//!   opened `O_PATH` once, and allowed only if that very file is bound by a listening socket
//!   of the sandbox (a `sock_diag` dump: in a private network namespace every socket is the
//!   sandbox's; in the host's, only those the server created for it, by cookie) or is an
//!   `--allow-unix-socket` path (by device and inode, fixed at session start). The connect
//!   goes to `/proc/self/fd/N` of the opened file, so a path swapped afterwards changes
//!   nothing, and the file cannot be re-bound by another socket while we hold it;
//! - an abstract name: in the sandbox's private network namespace, allowed from a socket of
//!   that namespace (abstract names are per namespace). In the host's namespace, names are
//!   not pinned (a host process could bind a name the moment the sandbox's socket lets it
//!   go), so the kernel decides instead: the server creates every unix socket of the
//!   sandbox, and makes its abstract connects, on one thread in a Landlock domain of its own
//!   that scopes abstract sockets (ABI 6), so those connects reach only sockets created in
//!   that domain, i.e. the sandbox's. Without Landlock ABI 6 they are refused.
//!
//! Every connect runs on a worker thread (a blocking one may wait for a peer's `accept`),
//! answered from there; a signal to the caller invalidates the notification, and the
//! restarted call is decided again.

use crate::diag;
use crate::notify::{Handler, Notification, Response};
use std::collections::HashSet;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};

/// `SO_COOKIE` (not in the libc crate).
const SO_COOKIE: libc::c_int = 57;
/// Connects in flight at once; beyond it a connect fails with `EAGAIN`.
const MAX_WORKERS: usize = 64;
/// Tracked cookies kept before the set is pruned to the sockets still alive.
const PRUNE_AT: usize = 16 * 1024;

/// A host socket the user opted in (`--allow-unix-socket`): its file's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    /// Device, in the kernel's encoding (as `sock_diag` reports it).
    pub dev: u32,
    /// Inode.
    pub ino: u64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> Self {
        FileId {
            dev: diag::kernel_dev(meta.dev()),
            ino: meta.ino(),
        }
    }

    /// The identity of the socket file at `path` (which must be one).
    pub(crate) fn of_socket(path: &std::path::Path) -> io::Result<Self> {
        use std::os::unix::fs::FileTypeExt;
        let meta = std::fs::metadata(path)?;
        if !meta.file_type().is_socket() {
            return Err(io::Error::other("not a unix socket"));
        }
        Ok(FileId::of(&meta))
    }
}

/// Whose sockets live in the network namespace of the sandbox.
#[derive(Debug)]
pub(crate) enum Namespace {
    /// A namespace of its own: every socket in it is the sandbox's.
    Private {
        /// Its cookie (`SO_NETNS_COOKIE`).
        cookie: u64,
    },
    /// The host's: only sockets the server created for the sandbox, by cookie.
    Shared {
        /// Cookies of the sockets created through [`SocketHandler`].
        created: Mutex<HashSet<u64>>,
    },
}

/// The policy and the means to check it, shared by both handlers and their workers.
#[derive(Debug)]
pub(crate) struct UnixPolicy {
    namespace: Namespace,
    allowed: Vec<FileId>,
    diag: Mutex<OwnedFd>,
    workers: AtomicUsize,
    /// The scoped thread (host namespace with Landlock ABI 6 only).
    scoped: Option<Mutex<mpsc::Sender<Job>>>,
}

/// Work for the scoped thread.
type Job = Box<dyn FnOnce() + Send>;

impl UnixPolicy {
    /// A policy for the namespace `diag` (from the init) lives in.
    pub(crate) fn new(namespace: Namespace, allowed: Vec<FileId>, diag: OwnedFd) -> Arc<Self> {
        let scoped = match namespace {
            Namespace::Shared { .. } => start_scoped_thread().map(Mutex::new),
            Namespace::Private { .. } => None,
        };
        Arc::new(UnixPolicy {
            namespace,
            allowed,
            diag: Mutex::new(diag),
            workers: AtomicUsize::new(0),
            scoped,
        })
    }

    /// Runs `job` on the scoped thread; `false` when there is none.
    fn on_scoped_thread(&self, job: Job) -> bool {
        let Some(tx) = &self.scoped else {
            return false;
        };
        tx.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(job)
            .is_ok()
    }

    /// Whether the file `id` is bound by a listening socket of the sandbox.
    fn bound_by_sandbox(&self, id: FileId) -> io::Result<bool> {
        let entries = {
            let diag = self.diag.lock().unwrap_or_else(PoisonError::into_inner);
            diag::dump(diag.as_fd(), diag::STATE_LISTEN)?
        };
        let want = Some((id.dev, id.ino as u32));
        let mut bound = entries.iter().filter(|e| e.vfs == want);
        Ok(match &self.namespace {
            Namespace::Private { .. } => bound.next().is_some(),
            Namespace::Shared { created } => {
                let created = created.lock().unwrap_or_else(PoisonError::into_inner);
                bound.any(|e| created.contains(&e.cookie))
            }
        })
    }

    fn track(&self, cookie: u64) {
        let Namespace::Shared { created } = &self.namespace else {
            return;
        };
        let mut set = created.lock().unwrap_or_else(PoisonError::into_inner);
        set.insert(cookie);
        if set.len() < PRUNE_AT {
            return;
        }
        let live = {
            let diag = self.diag.lock().unwrap_or_else(PoisonError::into_inner);
            diag::dump(diag.as_fd(), diag::STATE_ANY)
        };
        if let Ok(live) = live {
            let live: HashSet<u64> = live.iter().map(|e| e.cookie).collect();
            set.retain(|c| live.contains(c));
        }
    }

    /// Connects `sock` to `addr` on a worker thread and answers `n` from there.
    fn connect_on_worker(
        self: &Arc<Self>,
        n: Notification,
        sock: OwnedFd,
        addr: Vec<u8>,
        pinned: Option<OwnedFd>,
    ) {
        if self.workers.fetch_add(1, Ordering::AcqRel) >= MAX_WORKERS {
            self.workers.fetch_sub(1, Ordering::AcqRel);
            n.respond(Response::Errno(libc::EAGAIN));
            return;
        }
        let policy = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("execgate-connect".into())
            .spawn(move || {
                // SAFETY: connect with an address buffer of the given length.
                let rc = unsafe {
                    libc::connect(
                        sock.as_raw_fd(),
                        addr.as_ptr().cast(),
                        addr.len() as libc::socklen_t,
                    )
                };
                let response = if rc == 0 {
                    Response::Value(0)
                } else {
                    Response::Errno(errno())
                };
                drop(pinned);
                n.respond(response);
                policy.workers.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            self.workers.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Starts the thread whose Landlock domain scopes abstract unix sockets (and nothing
/// else), or `None` when the kernel cannot (Landlock ABI below 6).
fn start_scoped_thread() -> Option<mpsc::Sender<Job>> {
    use landlock::{Ruleset, RulesetAttr, RulesetStatus, Scope};
    let (tx, rx) = mpsc::channel::<Job>();
    let (ready_tx, ready_rx) = mpsc::channel::<bool>();
    std::thread::Builder::new()
        .name("execgate-unix-scope".into())
        .spawn(move || {
            // Per thread: restrict_self (and its no_new_privs) applies to this thread and
            // the workers it starts, not to the rest of the server.
            let restricted = Ruleset::default()
                .scope(Scope::AbstractUnixSocket)
                .and_then(|r| r.create())
                .and_then(|r| r.restrict_self())
                .map(|s| s.ruleset == RulesetStatus::FullyEnforced)
                .unwrap_or(false);
            let _ = ready_tx.send(restricted);
            if !restricted {
                return;
            }
            for job in rx {
                job();
            }
        })
        .ok()?;
    ready_rx.recv().ok()?.then_some(tx)
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn sockopt_i32(sock: BorrowedFd<'_>, opt: libc::c_int) -> io::Result<i32> {
    let mut value = 0i32;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&mut value as *mut i32).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

fn cookie(sock: BorrowedFd<'_>) -> io::Result<u64> {
    let mut value = 0u64;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_COOKIE,
            (&mut value as *mut u64).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// `openat2(dir, path, O_PATH, resolve)`.
fn open_path(dir: BorrowedFd<'_>, path: &[u8], in_root: bool) -> io::Result<OwnedFd> {
    let path =
        std::ffi::CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut resolve = libc::RESOLVE_NO_MAGICLINKS;
    if in_root {
        resolve |= libc::RESOLVE_IN_ROOT;
    }
    // SAFETY: open_how is plain data; zero is "no flags".
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    // SAFETY: openat2 reads `how` and the path; returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A `sockaddr_un` naming `/proc/self/fd/<fd>`.
fn proc_fd_addr(fd: i32) -> Vec<u8> {
    let mut addr = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
    addr.extend_from_slice(format!("/proc/self/fd/{fd}").as_bytes());
    addr.push(0);
    addr
}

/// Decides `connect(2)`.
pub(crate) struct ConnectHandler(pub Arc<UnixPolicy>);

impl Handler for ConnectHandler {
    fn handle(&self, n: Notification) {
        let policy = &self.0;
        let fd = n.args[0] as i32;
        let len = n.args[2] as u32 as usize;
        if len > std::mem::size_of::<libc::sockaddr_storage>() {
            return n.respond(Response::Errno(libc::EINVAL));
        }
        let mut addr = vec![0u8; len];
        if n.read_memory(n.args[1], &mut addr).is_err() {
            return n.respond(Response::Errno(libc::EFAULT));
        }
        let sock = match n.fetch_fd(fd) {
            Ok(sock) => sock,
            Err(e) => return n.respond(Response::Errno(e.raw_os_error().unwrap_or(libc::EBADF))),
        };
        let is_unix_path =
            len > 2 && addr[2] != 0 && addr[..2] == (libc::AF_UNIX as u16).to_ne_bytes();
        let base = if is_unix_path {
            let which = if addr[2] == b'/' { "root" } else { "cwd" };
            match n.open_proc_dir(which) {
                Ok(dir) => Some(dir),
                Err(_) => return n.respond(Response::Errno(libc::EACCES)),
            }
        } else {
            None
        };
        // Everything read from the caller is trusted only if it still waits in this call.
        if !n.is_valid() {
            return;
        }
        let domain = match sockopt_i32(sock.as_fd(), libc::SO_DOMAIN) {
            Ok(d) => d,
            Err(e) => {
                return n.respond(Response::Errno(e.raw_os_error().unwrap_or(libc::ENOTSOCK)))
            }
        };
        if domain != libc::AF_UNIX {
            return policy.connect_on_worker(n, sock, addr, None);
        }
        if len <= 2 || addr[..2] != (libc::AF_UNIX as u16).to_ne_bytes() {
            return n.respond(Response::Errno(libc::EINVAL));
        }
        let Some(base) = base else {
            // An abstract name: only inside a namespace of the sandbox's own.
            if let Namespace::Shared { .. } = &policy.namespace {
                // The kernel's scoping decides (see the module doc).
                let worker_policy = Arc::clone(policy);
                let (tx, rx) = mpsc::channel::<Notification>();
                let job: Job = Box::new(move || {
                    if let Ok(n) = rx.recv() {
                        worker_policy.connect_on_worker(n, sock, addr, None);
                    }
                });
                if policy.on_scoped_thread(job) {
                    let _ = tx.send(n);
                } else {
                    n.respond(Response::Errno(libc::EPERM));
                }
                return;
            }
            let own = match &policy.namespace {
                Namespace::Private { cookie } => {
                    crate::init::netns_cookie(sock.as_fd()).ok() == Some(*cookie)
                }
                Namespace::Shared { .. } => false,
            };
            if !own {
                return n.respond(Response::Errno(libc::EPERM));
            }
            return policy.connect_on_worker(n, sock, addr, None);
        };
        let raw_path = &addr[2..];
        let path = raw_path.split(|b| *b == 0).next().unwrap_or(raw_path);
        let target = match open_path(base.as_fd(), path, path.first() == Some(&b'/')) {
            Ok(t) => t,
            Err(e) => {
                let errno = match e.raw_os_error() {
                    Some(libc::ELOOP) | None => libc::EACCES,
                    Some(other) => other,
                };
                return n.respond(Response::Errno(errno));
            }
        };
        let file = std::fs::File::from(target);
        let meta = match file.metadata() {
            Ok(m) => m,
            Err(_) => return n.respond(Response::Errno(libc::EACCES)),
        };
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return n.respond(Response::Errno(libc::ECONNREFUSED));
        }
        let id = FileId::of(&meta);
        let allowed = policy.allowed.contains(&id) || policy.bound_by_sandbox(id).unwrap_or(false);
        if !allowed {
            return n.respond(Response::Errno(libc::EACCES));
        }
        let pinned = OwnedFd::from(file);
        let addr = proc_fd_addr(pinned.as_raw_fd());
        policy.connect_on_worker(n, sock, addr, Some(pinned));
    }
}

/// Decides `socket(AF_UNIX, ...)` when the sandbox shares the host's network namespace: the
/// server creates the socket, remembers its cookie and installs it in the caller.
pub(crate) struct SocketHandler(pub Arc<UnixPolicy>);

impl Handler for SocketHandler {
    fn handle(&self, n: Notification) {
        // Created on the scoped thread, the socket belongs to its Landlock domain, which is
        // what lets the sandbox's abstract connects reach it (and nothing else).
        let policy = Arc::clone(&self.0);
        let (tx, rx) = mpsc::channel::<Notification>();
        let job: Job = Box::new(move || {
            if let Ok(n) = rx.recv() {
                create_socket(&policy, n);
            }
        });
        if self.0.on_scoped_thread(job) {
            let _ = tx.send(n);
        } else {
            create_socket(&self.0, n);
        }
    }
}

fn create_socket(policy: &UnixPolicy, n: Notification) {
    {
        let ty = n.args[1] as i32;
        let protocol = n.args[2] as i32;
        let base = ty & 0xf;
        if base != libc::SOCK_STREAM && base != libc::SOCK_SEQPACKET {
            return n.respond(Response::Errno(libc::EPERM));
        }
        if ty & !(0xf | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK) != 0 {
            return n.respond(Response::Errno(libc::EINVAL));
        }
        let flags = libc::SOCK_CLOEXEC | (ty & libc::SOCK_NONBLOCK);
        // SAFETY: socket returns a new fd or -1.
        let fd = unsafe { libc::socket(libc::AF_UNIX, base | flags, protocol) };
        if fd < 0 {
            return n.respond(Response::Errno(errno()));
        }
        // SAFETY: fresh fd.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        match cookie(sock.as_fd()) {
            Ok(c) => policy.track(c),
            Err(e) => return n.respond(Response::Errno(e.raw_os_error().unwrap_or(libc::EIO))),
        }
        n.respond(Response::AddFd {
            fd: sock,
            cloexec: ty & libc::SOCK_CLOEXEC != 0,
        });
    }
}
