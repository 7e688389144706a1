//! The server side of the protocol: accept streams on the session's seqpacket socket and
//! serve each exec.
//!
//! One thread, the acceptor, waits on the session socket in a blocking `recvmsg`, so an
//! exec's handshake wakes it directly, with no reactor turn in between. It then serves the
//! new stream inline for as long as nothing has to wait: read the request (a client that
//! writes it before the handshake has it waiting in the socket buffer), ask the policy,
//! write the verdict. The first thing that would wait (a request not fully sent yet, a
//! policy that asks a hook or a person, an escalated process) hands the rest of that
//! conversation to the session's Tokio runtime as a task of its own, so a slow exec never
//! holds up the others.
//!
//! # Limits (a flood from the sandbox must not stop the session)
//! A sandboxed process can hand the server any number of streams. Three bounds keep the
//! server's file descriptors from running out, each enforced by refusing (the client of a
//! refused stream sees it closed, or gets a Deny, and fails closed):
//! - at most [`MAX_WAITING_STREAMS`] streams of a session wait for their client's request
//!   at once, and as many escalations for their client's fds (a separate budget, so a
//!   flood of streams that never send a request does not hold up escalations), each at
//!   most [`CLIENT_TIMEOUT`] from when the server started waiting;
//! - at most [`MAX_WAITING_DECISIONS`] decisions of a session wait (a hook, a person) at
//!   once; beyond that a request that would wait is denied;
//! - a stream received on an fd number within [`FD_RESERVE`] of the process's limit is
//!   closed at once: those numbers are kept for the decisions and escalations under way,
//!   across every session of the process.
//!
//! A Run that needs no waiting pays for none of this: the bounds apply only when a
//! conversation would wait.

use crate::env::EnvPolicy;
use crate::event::ExecEvent;
use crate::policy::{kill_group, Argv0, CwdDir, EscalationPolicy, ExecContext, Ruling, Shared};
use crate::spawn::{self, errno_text, OpenedProgram, SpawnError};
use crate::stream::{recv_with_fds, Budget, Slot, Stream, StreamError};
use execgate_protocol::{
    parse_handshake, ClientMessage, ExecRequest, ExitStatus, ServerMessage, Verdict, HANDSHAKE_LEN,
};
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;

/// Most streams of a session that wait for their client's request at once (and, apart,
/// most escalations that wait for their client's fds).
pub(crate) const MAX_WAITING_STREAMS: usize = 64;

/// How long the server waits for a client's request (or an escalation's fds).
pub(crate) const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Most decisions of a session that wait at once.
pub(crate) const MAX_WAITING_DECISIONS: usize = 64;

/// The fd numbers below the process's limit that new streams may not take.
pub(crate) const FD_RESERVE: libc::rlim_t = 64;

/// What every conversation of a session shares; `N` is the policy's note type.
pub(crate) struct Server<N> {
    pub(crate) policy: Arc<dyn EscalationPolicy<Note = N>>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) events: Option<UnboundedSender<ExecEvent<N>>>,
    pub(crate) next_id: AtomicU64,
    /// Opens programs and starts escalated ones.
    pub(crate) spawner: spawn::Spawner,
    /// What escalated processes' environments are built from.
    pub(crate) env: EnvPolicy,
    /// Streams waiting for their client's request.
    pub(crate) waiting_requests: Arc<Budget>,
    /// Escalations waiting for their client's fds.
    pub(crate) waiting_fds: Arc<Budget>,
    /// Decisions waiting for a hook or a person.
    pub(crate) waiting_decisions: Arc<Budget>,
    /// Run verdicts whose trapped exec has not been seen yet (see `direct`).
    pub(crate) run_memory: Arc<crate::direct::RunMemory>,
    /// Read each client's pid for the policy ([`ExecContext::pid`]).
    pub(crate) client_pids: bool,
}

impl<N> Server<N> {
    pub(crate) fn emit(&self, event: ExecEvent<N>) {
        if let Some(tx) = &self.events {
            // A consumer that went away just stops receiving.
            let _ = tx.send(event);
        }
    }
}

/// The conversations the acceptor handed to the runtime; aborted when the session ends.
type Tasks = Mutex<JoinSet<()>>;

/// The session's acceptor thread. Dropping it stops the thread (waiting for it, so the
/// session socket is closed on return) and aborts every conversation still running.
pub(crate) struct Acceptor {
    socket: Arc<OwnedFd>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    tasks: Arc<Tasks>,
}

impl Acceptor {
    /// Starts accepting on `socket` (the server's end of the session socketpair, in
    /// blocking mode); conversations that must wait continue on `runtime`.
    pub(crate) fn start<N: Send + 'static>(
        socket: OwnedFd,
        server: Arc<Server<N>>,
        runtime: Handle,
    ) -> io::Result<Self> {
        let socket = Arc::new(socket);
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = Arc::new(Tasks::default());
        let thread = {
            let (socket, stop, tasks) =
                (Arc::clone(&socket), Arc::clone(&stop), Arc::clone(&tasks));
            std::thread::Builder::new()
                .name("execgate-accept".into())
                .spawn(move || accept_loop(&socket, &server, &runtime, &stop, &tasks))?
        };
        Ok(Self {
            socket,
            stop,
            thread: Some(thread),
            tasks,
        })
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the blocked recvmsg (it returns 0), and clients see EPIPE from here on.
        // SAFETY: shutdown on our own open socket.
        unsafe { libc::shutdown(self.socket.as_raw_fd(), libc::SHUT_RD) };
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // Dropping the set aborts every task in it.
        drop(std::mem::take(
            &mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner),
        ));
    }
}

/// The acceptor thread: accepts streams on `socket` until `stop` is set.
fn accept_loop<N: Send + 'static>(
    socket: &OwnedFd,
    server: &Arc<Server<N>>,
    runtime: &Handle,
    stop: &AtomicBool,
    tasks: &Tasks,
) {
    // Policies and the streams' reactor registrations need the runtime's context.
    let _runtime = runtime.enter();
    let _closed = StopServing(socket);
    let ceiling = fd_ceiling();
    loop {
        let accepted = accept_one(socket.as_raw_fd());
        if stop.load(Ordering::Acquire) {
            return;
        }
        match accepted {
            Ok(Accepted::Stream(stream)) if stream.as_raw_fd() >= ceiling => {
                // Dropping it closes it: its client fails closed.
                tracing::debug!("refused a stream: the process is short of file descriptors");
            }
            Ok(Accepted::Stream(stream)) => serve_new(stream, server, runtime, tasks),
            Ok(Accepted::Dropped) => {}
            // Every holder of the shell's end is gone: no handshake can come any more.
            Ok(Accepted::Closed) => return,
            Err(err) if err.raw_os_error() == Some(libc::EINTR) => {}
            Err(err) => tracing::debug!("session socket: {err}"),
        }
    }
}

/// The lowest fd number a new stream may not have: [`FD_RESERVE`] below the soft
/// `RLIMIT_NOFILE`. The kernel gives out the lowest free number, so a stream numbered at
/// least this means the process has at most the reserve left.
fn fd_ceiling() -> RawFd {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into our buffer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return RawFd::MAX;
    }
    RawFd::try_from(limit.rlim_cur.saturating_sub(FD_RESERVE)).unwrap_or(RawFd::MAX)
}

/// Ends serving when the acceptor thread ends, however it ends: later handshakes fail
/// (EPIPE) and the streams of handshakes still queued are closed, so every waiting client
/// fails closed at once instead of waiting for the session to be dropped.
struct StopServing<'a>(&'a OwnedFd);

impl Drop for StopServing<'_> {
    fn drop(&mut self) {
        let sock = self.0.as_raw_fd();
        // SAFETY: shutdown on our own open socket.
        unsafe { libc::shutdown(sock, libc::SHUT_RD) };
        let mut buf = [0u8; HANDSHAKE_LEN + 1];
        loop {
            let mut fds = Vec::new();
            match recv_with_fds(sock, &mut buf, &mut fds, libc::MSG_DONTWAIT) {
                // Dropping `fds` closes the streams that came with the record.
                Ok(n) if n > 0 || !fds.is_empty() => {}
                Err(err) if err.raw_os_error() == Some(libc::EMSGSIZE) => {}
                _ => return,
            }
        }
    }
}

/// Serves a new stream inline up to the first wait, then as a task on `runtime`.
fn serve_new<N: Send + 'static>(
    fd: OwnedFd,
    server: &Arc<Server<N>>,
    runtime: &Handle,
    tasks: &Tasks,
) {
    let server = Arc::clone(server);
    let mut conversation = Box::pin(async move { serve_stream(fd, &server).await });
    // A waker that does nothing is enough: a conversation that returns Pending here is
    // spawned, and the runtime polls it again at once with its own waker.
    let mut cx = Context::from_waker(Waker::noop());
    match catch_unwind(AssertUnwindSafe(|| conversation.as_mut().poll(&mut cx))) {
        Ok(Poll::Ready(())) => {}
        Ok(Poll::Pending) => {
            let mut tasks = tasks.lock().unwrap_or_else(PoisonError::into_inner);
            // Forget finished conversations, so the set holds only running ones.
            while tasks.try_join_next().is_some() {}
            tasks.spawn_on(conversation, runtime);
        }
        Err(_) => {
            // As on a runtime task: the panic ends this conversation only; its stream closes
            // and the client fails closed.
            tracing::error!("serving an exec panicked; the exec is refused");
            let _ = catch_unwind(AssertUnwindSafe(move || drop(conversation)));
        }
    }
}

/// What one record on the session socket was.
enum Accepted {
    /// A valid handshake carrying exactly one fd: the client's stream.
    Stream(OwnedFd),
    /// Anything else, dropped (with whatever fds came with it).
    Dropped,
    /// End of file: every holder of the shell's end has closed it.
    Closed,
}

/// Receives one record from the session socket.
fn accept_one(sock: std::os::fd::RawFd) -> io::Result<Accepted> {
    let mut buf = [0u8; HANDSHAKE_LEN + 1];
    let mut fds = Vec::new();
    let n = match recv_with_fds(sock, &mut buf, &mut fds, 0) {
        Ok(n) => n,
        Err(err) if err.raw_os_error() == Some(libc::EMSGSIZE) => {
            tracing::debug!("dropped a record with too many fds");
            return Ok(Accepted::Dropped);
        }
        Err(err) => return Err(err),
    };
    if n == 0 && fds.is_empty() && peer_closed(sock) {
        return Ok(Accepted::Closed);
    }
    if let Err(err) = parse_handshake(&buf[..n]) {
        tracing::debug!("dropped a record: {err}");
        return Ok(Accepted::Dropped);
    }
    if fds.len() != 1 {
        tracing::debug!("dropped a handshake with {} fds", fds.len());
        return Ok(Accepted::Dropped);
    }
    Ok(fds.pop().map_or(Accepted::Dropped, Accepted::Stream))
}

/// Whether the other end of the seqpacket socket `sock` is closed with nothing left to
/// read (a zero-length record, which a hostile client can send, leaves it open).
fn peer_closed(sock: std::os::fd::RawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd: sock,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one pollfd we own, without waiting.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n == 1 && pfd.revents & libc::POLLHUP != 0 && pfd.revents & libc::POLLIN == 0
}

/// Serves one exec from request to verdict (and, on escalation, to exit status).
async fn serve_stream<N: Send + 'static>(fd: OwnedFd, server: &Server<N>) {
    let mut stream = match Stream::new(fd) {
        Ok(stream) => stream,
        Err(err) => {
            tracing::debug!("refused a client stream: {err}");
            return;
        }
    };
    if let Err(err) = converse(&mut stream, server).await {
        tracing::debug!("client stream ended: {err}");
    }
}

async fn converse<N: Send + 'static>(
    stream: &mut Stream,
    server: &Server<N>,
) -> Result<(), StreamError> {
    // The request is owed by the client: bounded (see the module documentation). The
    // decision is not: a person may take minutes to approve, and a conversation that waits
    // does so in its own task, so a slow one blocks nobody.
    let mut fds = Vec::new();
    stream.expect_client(&server.waiting_requests, CLIENT_TIMEOUT);
    let payload = stream.read_frame(&mut fds).await?;
    stream.client_done();
    let request = match ClientMessage::decode(&payload)? {
        ClientMessage::Request(req) if fds.is_empty() => req,
        _ => return Err(protocol("expected a Request frame without fds")),
    };
    drop(payload);
    let id = server.next_id.fetch_add(1, Ordering::Relaxed);
    let request = Arc::new(request);
    let mut opened = server.spawner.open_program(&request);
    let (program, invoked) = match &opened {
        Ok(opened) => (opened.canonical.clone(), opened.invoked.clone()),
        Err(_) => (spawn::request_path(&request), None),
    };
    let cwd = Arc::new(CwdDir::new(request.cwd.clone()));
    let ctx = ExecContext {
        id,
        request: Arc::clone(&request),
        program: program.clone(),
        invoked,
        cwd: Arc::clone(&cwd),
        direct: None,
        pid: if server.client_pids {
            stream.peer_pid()
        } else {
            None
        },
    };
    let decision = Bounded {
        decision: Some(server.policy.decide(&ctx)),
        budget: &server.waiting_decisions,
        slot: None,
    };
    // `None` for the note: the server denied the exec itself, without a ruling.
    let mut set_env = Vec::new();
    let (mut verdict, note, end_session) = match decision.await {
        Some(Ruling {
            verdict,
            note,
            end_session,
            argv0,
            set_env: pinned,
        }) => {
            set_env = pinned;
            if argv0 == Argv0::Resolved {
                // The policy judged the resolved file only: run it by that name.
                if let Ok(opened) = &mut opened {
                    opened.invoked = None;
                }
            }
            (verdict, Some(note), end_session)
        }
        None => {
            let reason = format!(
                "too many commands of this session are waiting for a decision (at most \
                 {MAX_WAITING_DECISIONS}); run it again once some are decided"
            );
            (
                Verdict::Deny {
                    reason: reason.into_bytes(),
                },
                None,
                None,
            )
        }
    };
    if verdict == Verdict::Escalate && (end_session.is_some() || server.shared.has_ended()) {
        verdict = Verdict::Deny {
            reason: b"the session has ended".to_vec(),
        };
    }
    if verdict == Verdict::Run {
        // Before the verdict goes out: the client execs as soon as it reads it, and the
        // sandbox's trap of that exec must find this.
        let file = opened.as_ref().ok().and_then(OpenedProgram::file_key);
        server
            .run_memory
            .remember(stream.peer_pid(), file, &request);
    }
    let frame = ServerMessage::Verdict(verdict.clone()).to_frame();
    // The event must be on its channel before `Session::drop` returns, for every verdict a
    // client may have acted on. On the acceptor (outside any task) the verdict goes out
    // first, so the client is woken before the event's consumer: `Session::drop` waits for
    // the acceptor, which emits right after the send. A task may be aborted between two
    // polls, so there the event goes first, as before. A ruling that ends the session
    // records its event, then ends the session, then sends its verdict to a shell that is
    // gone: whoever waits for the shell may read the events as soon as it dies, and nothing
    // acts on a verdict of an ended session.
    let sent = if end_session.is_none() && tokio::task::try_id().is_none() {
        stream.try_send(&frame)
    } else {
        0
    };
    server.emit(ExecEvent::Decided {
        id,
        request: Arc::clone(&request),
        program,
        verdict: verdict.clone(),
        note,
    });
    if let Some(reason) = end_session {
        server.shared.interrupt(reason);
    }
    stream.write_all(&frame[sent..]).await?;
    if verdict != Verdict::Escalate {
        return Ok(());
    }
    // Starting the process blocks its thread until the exec: never the acceptor's.
    OffTheAcceptor { polled: false }.await;
    escalate(stream, server, id, &request, &cwd, opened, &set_env).await
}

/// A policy's decision that may wait only while it holds a slot of `budget`: the first
/// time it would wait it takes one, or, when none is free, gives up (`None`; the policy's
/// future is dropped, as when a session ends).
pub(crate) struct Bounded<'a, F> {
    pub(crate) decision: Option<F>,
    pub(crate) budget: &'a Arc<Budget>,
    pub(crate) slot: Option<Slot>,
}

impl<F, T> Future for Bounded<'_, F>
where
    F: Future<Output = T> + Unpin,
{
    type Output = Option<T>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = &mut *self;
        let Some(decision) = this.decision.as_mut() else {
            return Poll::Ready(None);
        };
        match std::pin::Pin::new(decision).poll(cx) {
            Poll::Ready(ruling) => Poll::Ready(Some(ruling)),
            Poll::Pending if this.slot.is_some() => Poll::Pending,
            Poll::Pending => match this.budget.take() {
                Some(slot) => {
                    this.slot = Some(slot);
                    Poll::Pending
                }
                None => {
                    this.decision = None;
                    Poll::Ready(None)
                }
            },
        }
    }
}

/// Completes at once on a runtime task; on the acceptor thread (outside any task) it is
/// Pending once, which hands the conversation over to the runtime.
struct OffTheAcceptor {
    polled: bool,
}

impl Future for OffTheAcceptor {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if self.polled || tokio::task::try_id().is_some() {
            return Poll::Ready(());
        }
        // No wake needed: the acceptor spawns every conversation that returns Pending, and
        // the runtime polls it at once.
        self.polled = true;
        Poll::Pending
    }
}

/// Why the escalated process cannot start in the request's working directory.
fn cwd_error(err: io::Error) -> SpawnError {
    if err.raw_os_error() == Some(libc::EXDEV) {
        return SpawnError {
            errno: libc::EXDEV,
            message: "cannot change to the working directory: its path does not name it \
                      outside the sandbox (visible only inside the sandbox)"
                .to_string(),
        };
    }
    SpawnError::new("cannot change to the working directory", err)
}

fn protocol(what: &'static str) -> StreamError {
    StreamError::Protocol(execgate_protocol::ProtocolError::BadField(what))
}

async fn escalate<N: Send + 'static>(
    stream: &mut Stream,
    server: &Server<N>,
    id: u64,
    request: &ExecRequest,
    cwd: &CwdDir,
    opened: io::Result<OpenedProgram>,
    set_env: &[Vec<u8>],
) -> Result<(), StreamError> {
    let mut fds = Vec::new();
    stream.expect_client(&server.waiting_fds, CLIENT_TIMEOUT);
    let payload = stream.read_frame(&mut fds).await?;
    stream.client_done();
    let targets = match ClientMessage::decode(&payload)? {
        ClientMessage::Fds { targets } if targets.len() == fds.len() => targets,
        _ => return Err(protocol("expected an Fds frame with one fd per target")),
    };
    let mut sorted = targets.clone();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        return Err(protocol("duplicate fd target"));
    }
    let mut env_dropped = Vec::new();
    let started = match (opened, cwd.fd()) {
        (Ok(program), Ok(cwd)) => {
            // The directory's path now, not the request's: it may have been renamed.
            let pwd = server.spawner.pwd_entry(cwd);
            let env = server.env.build(&request.env, set_env, pwd.as_deref());
            env_dropped = env.dropped;
            server
                .spawner
                .spawn(request, &program, cwd, &env.entries, &fds, &targets)
        }
        (Err(err), _) => Err(SpawnError {
            errno: err.raw_os_error().unwrap_or(0),
            message: errno_text(&err),
        }),
        (_, Err(err)) => Err(cwd_error(err)),
    };
    // The child holds its own copies now.
    drop(fds);
    let mut child = match started {
        Ok(child) => child,
        Err(err) => {
            server.emit(ExecEvent::SpawnFailed {
                id,
                errno: err.errno,
                message: err.message.clone(),
            });
            let frame = ServerMessage::SpawnFailed {
                errno: err.errno,
                message: err.message.into_bytes(),
            };
            return stream.write_all(&frame.to_frame()).await;
        }
    };
    let pid = child.pid();
    let start = Instant::now();
    if !server.shared.add_escalated(pid) {
        kill_group(pid, libc::SIGKILL);
    }
    server.emit(ExecEvent::Started {
        id,
        pid,
        env_dropped,
    });
    let mut client_gone = stream
        .write_all(&ServerMessage::Started { pid }.to_frame())
        .await
        .is_err();
    let status = loop {
        if client_gone {
            break child.wait().await;
        }
        let mut fds = Vec::new();
        tokio::select! {
            status = child.wait() => break status,
            frame = stream.read_frame(&mut fds) => {
                let signo = frame.ok().and_then(|payload| {
                    match ClientMessage::decode(&payload) {
                        Ok(ClientMessage::Signal { signo }) if fds.is_empty() => Some(signo),
                        _ => None,
                    }
                });
                match signo {
                    Some(signo) => kill_group(pid, signo),
                    None => {
                        // The wrapper is gone or broke the protocol: nobody is left to
                        // relay to, so the escalated process must not outlive it.
                        kill_group(pid, libc::SIGKILL);
                        client_gone = true;
                    }
                }
            }
        }
    };
    server.shared.escalated_leader_exited(pid);
    let status = match status {
        Ok(status) => status,
        Err(err) => {
            tracing::warn!("waiting for escalated process {pid}: {err}");
            ExitStatus::Signal(libc::SIGKILL)
        }
    };
    server.emit(ExecEvent::Exited {
        id,
        status,
        duration: start.elapsed(),
    });
    if client_gone {
        return Ok(());
    }
    stream
        .write_all(&ServerMessage::Exited(status).to_frame())
        .await
}
