//! The server's side of a sandboxed session: the control channel to the session's init and
//! the seccomp notification loop, on one thread of their own (never a Tokio worker), so a
//! notification is answered without a runtime round trip and nothing the session does can
//! stall the server's other work.

use crate::control::{self, FromInit, ShellStatus, ToInit};
use crate::notify::{Handlers, Listener};
use crate::seccomp::Notified;
use crate::unix_socket::{ConnectHandler, FileId, Namespace, SocketHandler, UnixPolicy};
use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

/// What the supervisor thread learned from the init.
#[derive(Debug, Default)]
struct State {
    /// The shell's status, once the init reported it.
    status: Option<ShellStatus>,
    /// Why the sandbox did not start, when the init said so.
    failure: Option<String>,
    /// The init's end of the channel is closed (the init is gone).
    closed: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    /// `OpenSocket` requests waiting for the init's answer, by id.
    sockets: Mutex<SocketRequests>,
}

#[derive(Debug, Default)]
struct SocketRequests {
    next: u32,
    waiting: HashMap<u32, mpsc::Sender<io::Result<OwnedFd>>>,
}

/// How the session's sockets are judged, decided by the backend before the start.
#[derive(Debug, Clone)]
pub(crate) struct SocketSetup {
    /// Whether the sandbox has a network namespace of its own.
    pub private_netns: bool,
    /// `--allow-unix-socket` files.
    pub allowed: Vec<FileId>,
}

impl SocketSetup {
    /// The calls the notify filter traps for this setup (before any extra handlers).
    pub(crate) fn notified(&self) -> Vec<Notified> {
        let mut calls = vec![Notified {
            nr: libc::SYS_connect,
            arg0: None,
        }];
        if !self.private_netns {
            calls.push(Notified {
                nr: libc::SYS_socket,
                arg0: Some(libc::AF_UNIX as u32),
            });
        }
        calls
    }
}

/// Supervises one sandboxed process tree: receives what its init sends, answers its seccomp
/// notifications, and ends it. Dropping it ends the session: the init sees its channel
/// close and kills every process of the session.
#[derive(Debug)]
pub struct Supervisor {
    shared: Arc<Shared>,
    control: Arc<OwnedFd>,
    init_end: Option<OwnedFd>,
    stop: Arc<OwnedFd>,
    thread: Option<std::thread::JoinHandle<()>>,
    pending: Option<(SocketSetup, Handlers)>,
    pid_namespace: bool,
    /// An fd the launched command reads while it starts (kept open as long as this lives).
    kept: Option<OwnedFd>,
}

impl Supervisor {
    /// A supervisor whose init will get `config`; `init_end` goes to the init.
    pub(crate) fn new(
        config: &control::InitConfig,
        sockets: SocketSetup,
        extra: Handlers,
        pid_namespace: bool,
    ) -> io::Result<Self> {
        let (ours, theirs) = control::pair()?;
        control::send_to_init(ours.as_fd(), &ToInit::Config(config.clone()))?;
        // SAFETY: eventfd returns a new fd or -1.
        let stop = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if stop < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Supervisor {
            shared: Arc::default(),
            control: Arc::new(ours),
            init_end: Some(theirs),
            // SAFETY: fresh fd.
            stop: Arc::new(unsafe { OwnedFd::from_raw_fd(stop) }),
            thread: None,
            pending: Some((sockets, extra)),
            pid_namespace,
            kept: None,
        })
    }

    /// The fd the init must receive (inherited; its number goes on the init's command line).
    pub(crate) fn init_fd(&self) -> RawFd {
        self.init_end.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    /// Starts supervising; call right after the command was spawned.
    pub fn start(&mut self) -> io::Result<()> {
        drop(self.init_end.take());
        let Some((sockets, extra)) = self.pending.take() else {
            return Ok(());
        };
        let (shared, control, stop) = (
            Arc::clone(&self.shared),
            Arc::clone(&self.control),
            Arc::clone(&self.stop),
        );
        self.thread = Some(
            std::thread::Builder::new()
                .name("execgate-supervise".into())
                .spawn(move || run(&shared, &control, &stop, sockets, extra))?,
        );
        Ok(())
    }

    /// The shell's status as the init reported it (after every process was reaped).
    pub fn exit_status(&self) -> Option<ShellStatus> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .status
    }

    /// Why the sandbox did not start, if the init reported a failure.
    pub fn failure(&self) -> Option<String> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .failure
            .clone()
    }

    /// Waits until the init reported the shell's status or went away, at most `timeout`.
    pub fn wait_done(&self, timeout: Duration) -> Option<ShellStatus> {
        let state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (state, _) = self
            .shared
            .changed
            .wait_timeout_while(state, timeout, |s| s.status.is_none() && !s.closed)
            .unwrap_or_else(PoisonError::into_inner);
        state.status
    }

    /// Delivers `signo` to the shell (through its init).
    pub fn signal(&self, signo: i32) -> io::Result<()> {
        control::send_to_init(self.control.as_fd(), &ToInit::Signal(signo))
    }

    /// A socket created by the init inside the sandbox's namespaces (its network namespace
    /// in particular: a listening socket there is reachable from the sandbox only), e.g. for
    /// a proxy. Blocks until the init answers, at most `timeout`.
    pub fn open_socket(
        &self,
        domain: i32,
        ty: i32,
        protocol: i32,
        timeout: Duration,
    ) -> io::Result<OwnedFd> {
        let (tx, rx) = mpsc::channel();
        let id = {
            let mut requests = self
                .shared
                .sockets
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            requests.next = requests.next.wrapping_add(1);
            let id = requests.next;
            requests.waiting.insert(id, tx);
            id
        };
        control::send_to_init(
            self.control.as_fd(),
            &ToInit::OpenSocket {
                id,
                domain,
                ty,
                protocol,
            },
        )?;
        let answer = rx.recv_timeout(timeout);
        self.shared
            .sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .waiting
            .remove(&id);
        answer.unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the sandbox's init did not answer",
            ))
        })
    }

    /// Keeps `fd` open for the session's life (a file the launched command reads while it
    /// starts).
    pub(crate) fn keep_fd(&mut self, fd: Option<OwnedFd>) {
        self.kept = fd;
    }

    /// Lets a held shell start (a gated sandbox holds it until the server opened the
    /// gate's sockets in the sandbox's network namespace; see
    /// [`crate::SandboxPolicy::gated`]). Without a hold it is not needed, and harmless.
    pub fn release_shell(&self) -> io::Result<()> {
        control::send_to_init(self.control.as_fd(), &ToInit::Start)
    }

    /// Asks the init to kill every process of the session and exit.
    pub fn terminate(&self) {
        let _ = control::send_to_init(self.control.as_fd(), &ToInit::Terminate);
    }

    /// Whether killing the launched process kills every process of the session too (a PID
    /// namespace whose init dies takes the namespace with it); as a subreaper it does not,
    /// and only [`Supervisor::terminate`] ends the session.
    pub fn killed_with_launched_process(&self) -> bool {
        self.pid_namespace
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // The init sees end of file and ends the session; the thread wakes and returns.
        // SAFETY: shutdown and write on our own fds.
        unsafe {
            libc::shutdown(self.control.as_raw_fd(), libc::SHUT_RDWR);
            let one: u64 = 1;
            libc::write(self.stop.as_raw_fd(), (&one as *const u64).cast(), 8);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn update(shared: &Shared, f: impl FnOnce(&mut State)) {
    let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    f(&mut state);
    shared.changed.notify_all();
}

/// The supervisor thread.
fn run(shared: &Shared, control: &OwnedFd, stop: &OwnedFd, sockets: SocketSetup, extra: Handlers) {
    let mut listener: Option<Arc<Listener>> = None;
    let mut handlers: Option<Handlers> = None;
    let mut control_open = true;
    let own_netns = own_netns_cookie();
    loop {
        let mut fds = vec![
            libc::pollfd {
                fd: stop.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if control_open {
                    control.as_raw_fd()
                } else {
                    -1
                },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        if let Some(l) = &listener {
            fds.push(libc::pollfd {
                fd: l.raw(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if !control_open && listener.is_none() {
            return;
        }
        // SAFETY: poll on pollfds we own.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            continue;
        }
        if fds[0].revents != 0 {
            return;
        }
        if fds[1].revents != 0 {
            match control::recv_from_init(control.as_fd(), true) {
                Ok(Some((FromInit::Ready { netns_cookie }, mut got))) => {
                    let Some(diag) = got.pop() else {
                        fail(shared, control, "the init sent no sock_diag socket");
                        continue;
                    };
                    let private = netns_cookie != own_netns;
                    if private != sockets.private_netns {
                        fail(
                            shared,
                            control,
                            "the sandbox's network namespace is not the one expected",
                        );
                        continue;
                    }
                    let namespace = if private {
                        Namespace::Private {
                            cookie: netns_cookie,
                        }
                    } else {
                        Namespace::Shared {
                            created: Mutex::new(HashSet::new()),
                        }
                    };
                    let policy = UnixPolicy::new(namespace, sockets.allowed.clone(), diag);
                    let mut all = Handlers::default();
                    for call in sockets.notified() {
                        if call.nr == libc::SYS_connect {
                            all.add(call, Arc::new(ConnectHandler(Arc::clone(&policy))));
                        } else {
                            all.add(call, Arc::new(SocketHandler(Arc::clone(&policy))));
                        }
                    }
                    for (call, handler) in extra.entries() {
                        all.add(call, handler);
                    }
                    handlers = Some(all);
                }
                Ok(Some((FromInit::Listener, mut got))) => match (got.pop(), &handlers) {
                    (Some(fd), Some(_)) => listener = Some(Arc::new(Listener::new(fd))),
                    _ => fail(
                        shared,
                        control,
                        "the seccomp listener came before the init was ready",
                    ),
                },
                Ok(Some((FromInit::Exited(status), _))) => {
                    update(shared, |s| s.status = Some(status))
                }
                Ok(Some((FromInit::Failed(reason), _))) => {
                    update(shared, |s| s.failure = Some(reason))
                }
                Ok(Some((FromInit::Socket { id, errno }, mut got))) => {
                    let waiting = shared
                        .sockets
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .waiting
                        .remove(&id);
                    if let Some(tx) = waiting {
                        let answer = match (errno, got.pop()) {
                            (0, Some(fd)) => Ok(fd),
                            (0, None) => Err(io::Error::other("the init sent no socket")),
                            (errno, _) => Err(io::Error::from_raw_os_error(errno)),
                        };
                        let _ = tx.send(answer);
                    }
                }
                Ok(None) | Err(_) => {
                    control_open = false;
                    update(shared, |s| s.closed = true);
                }
            }
        }
        if let (Some(l), Some(p)) = (&listener, fds.get(2)) {
            if p.revents & libc::POLLIN != 0 {
                if let Ok(Some(notification)) = l.receive() {
                    if let Some(h) = &handlers {
                        h.dispatch(notification);
                    }
                }
            } else if p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
                // Every process under the filter is gone.
                listener = None;
            }
        }
    }
}

/// Ends the session after a fault of the init's: fail closed.
fn fail(shared: &Shared, control: &OwnedFd, reason: &str) {
    let _ = control::send_to_init(control.as_fd(), &ToInit::Terminate);
    update(shared, |s| s.failure = Some(reason.to_owned()));
}

/// The cookie of the server's own network namespace.
fn own_netns_cookie() -> u64 {
    // SAFETY: socket returns a new fd or -1.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return 0;
    }
    // SAFETY: fresh fd.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    crate::init::netns_cookie(sock.as_fd()).unwrap_or(0)
}
