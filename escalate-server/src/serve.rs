//! The server side of the protocol: accept streams on the session's datagram socket and
//! serve each exec on its own task.

use crate::event::ExecEvent;
use crate::policy::{kill_group, EscalationPolicy, ExecContext, SessionControl, Shared};
use crate::spawn::{self, errno_text, OpenedProgram};
use crate::stream::{recv_with_fds, Stream, StreamError};
use execgate_protocol::{
    parse_handshake, ClientMessage, ExecRequest, ExitStatus, ServerMessage, Verdict, HANDSHAKE_LEN,
};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;

/// What every conversation of a session shares.
pub(crate) struct Server {
    pub(crate) policy: Arc<dyn EscalationPolicy>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) events: Option<UnboundedSender<ExecEvent>>,
    pub(crate) next_id: AtomicU64,
}

impl Server {
    fn emit(&self, event: ExecEvent) {
        if let Some(tx) = &self.events {
            // A consumer that went away just stops receiving.
            let _ = tx.send(event);
        }
    }
}

/// Accepts streams on the session's datagram socket until the task is aborted. Aborting it
/// also aborts every conversation it started.
pub(crate) async fn accept_loop(socket: AsyncFd<OwnedFd>, server: Arc<Server>) {
    let mut conversations = JoinSet::new();
    loop {
        tokio::select! {
            ready = socket.readable() => {
                let mut guard = match ready {
                    Ok(guard) => guard,
                    Err(err) => {
                        tracing::error!("session socket failed: {err}; no more execs are served");
                        return;
                    }
                };
                match guard.try_io(|inner| accept_one(inner.as_raw_fd())) {
                    Ok(Ok(Some(stream))) => {
                        let server = Arc::clone(&server);
                        conversations.spawn(async move { serve_stream(stream, &server).await });
                    }
                    Ok(Ok(None)) => {}
                    Ok(Err(err)) => tracing::debug!("session socket: {err}"),
                    Err(_would_block) => {}
                }
            }
            Some(_) = conversations.join_next(), if !conversations.is_empty() => {}
        }
    }
}

/// Receives one datagram: `Some(stream fd)` for a valid handshake carrying exactly one fd;
/// anything else is dropped (closing whatever fds came with it).
fn accept_one(sock: std::os::fd::RawFd) -> io::Result<Option<OwnedFd>> {
    let mut buf = [0u8; HANDSHAKE_LEN + 1];
    let mut fds = Vec::new();
    let n = match recv_with_fds(sock, &mut buf, &mut fds) {
        Ok(n) => n,
        Err(err) if err.raw_os_error() == Some(libc::EMSGSIZE) => {
            tracing::debug!("dropped a datagram with too many fds");
            return Ok(None);
        }
        Err(err) => return Err(err),
    };
    if let Err(err) = parse_handshake(&buf[..n]) {
        tracing::debug!("dropped a datagram: {err}");
        return Ok(None);
    }
    if fds.len() != 1 {
        tracing::debug!("dropped a handshake with {} fds", fds.len());
        return Ok(None);
    }
    Ok(fds.pop())
}

/// Serves one exec from request to verdict (and, on escalation, to exit status).
async fn serve_stream(fd: OwnedFd, server: &Server) {
    let stream = match Stream::new(fd) {
        Ok(stream) => stream,
        Err(err) => {
            tracing::debug!("refused a client stream: {err}");
            return;
        }
    };
    if let Err(err) = converse(&stream, server).await {
        tracing::debug!("client stream ended: {err}");
    }
}

async fn converse(stream: &Stream, server: &Server) -> Result<(), StreamError> {
    // No timeout here: a person may take minutes to approve, and every client has its own
    // task, so a stalled one blocks nobody.
    let mut fds = Vec::new();
    let payload = stream.read_frame(&mut fds).await?;
    let request = match ClientMessage::decode(&payload)? {
        ClientMessage::Request(req) if fds.is_empty() => req,
        _ => return Err(protocol("expected a Request frame without fds")),
    };
    drop(payload);
    let id = server.next_id.fetch_add(1, Ordering::Relaxed);
    let request = Arc::new(request);
    let opened = spawn::open_program(&request);
    let program = match &opened {
        Ok(opened) => opened.canonical.clone(),
        Err(_) => spawn::request_path(&request),
    };
    let ctx = ExecContext {
        id,
        request: Arc::clone(&request),
        program: program.clone(),
        session: SessionControl {
            shared: Arc::clone(&server.shared),
        },
    };
    let mut verdict = server.policy.decide(&ctx).await;
    if verdict == Verdict::Escalate && server.shared.has_ended() {
        verdict = Verdict::Deny {
            reason: b"the session has ended".to_vec(),
        };
    }
    server.emit(ExecEvent::Decided {
        id,
        request: Arc::clone(&request),
        program,
        verdict: verdict.clone(),
    });
    stream
        .write_all(&ServerMessage::Verdict(verdict.clone()).to_frame())
        .await?;
    if verdict != Verdict::Escalate {
        return Ok(());
    }
    escalate(stream, server, id, &request, opened).await
}

fn protocol(what: &'static str) -> StreamError {
    StreamError::Protocol(execgate_protocol::ProtocolError::BadField(what))
}

async fn escalate(
    stream: &Stream,
    server: &Server,
    id: u64,
    request: &ExecRequest,
    opened: io::Result<OpenedProgram>,
) -> Result<(), StreamError> {
    let mut fds = Vec::new();
    let payload = stream.read_frame(&mut fds).await?;
    let targets = match ClientMessage::decode(&payload)? {
        ClientMessage::Fds { targets } if targets.len() == fds.len() => targets,
        _ => return Err(protocol("expected an Fds frame with one fd per target")),
    };
    let mut sorted = targets.clone();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        return Err(protocol("duplicate fd target"));
    }
    let started = match opened {
        Ok(program) => spawn::spawn(request, &program, &fds, &targets).await,
        Err(err) => Err(spawn::SpawnError {
            errno: err.raw_os_error().unwrap_or(0),
            message: errno_text(&err),
        }),
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
    server.emit(ExecEvent::Started { id, pid });
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
