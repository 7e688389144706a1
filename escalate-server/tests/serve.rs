//! The server over a real session socket, with this test binary as the session's "shell":
//! each test starts a session whose shell is the same test re-run in client mode
//! (`EXECGATE_TEST_CLIENT` set), where it speaks the protocol with the real client,
//! `execgate_protocol::client::Connection`, and asserts what it receives.

use execgate_escalate_server::{
    async_trait, EscalationPolicy, ExecContext, ExecEvent, Interception, Ruling, SessionBuilder,
    Verdict,
};
use execgate_protocol::client::{session_socket_from_env_value, ClientError, Connection};
use execgate_protocol::{ClientMessage, ExecRequest, ServerMessageRef, SOCKET_ENV};
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const CLIENT_ENV: &str = "EXECGATE_TEST_CLIENT";

fn in_client() -> bool {
    std::env::var_os(CLIENT_ENV).is_some()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A session whose shell is the test `name` in client mode.
fn builder(name: &str) -> SessionBuilder {
    let wrapper = Interception::PatchedShell {
        wrapper: "/nonexistent/execgate-execve-wrapper".into(),
    };
    SessionBuilder::new(std::env::current_exe().unwrap(), wrapper)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CLIENT_ENV, "1")
        .stdout(std::process::Stdio::null())
}

/// Starts a session served by `policy` whose shell is the test `name` in client mode.
fn start(
    name: &str,
    policy: Arc<dyn EscalationPolicy<Note = ()>>,
) -> execgate_escalate_server::Session {
    builder(name).spawn(policy).unwrap()
}

/// Runs the test `name` as the shell of a session served by `policy`; panics unless the
/// client side passed.
fn serve(name: &str, policy: Arc<dyn EscalationPolicy<Note = ()>>) {
    serve_with_events(name, policy);
}

/// [`serve`], returning the session's events.
fn serve_with_events(
    name: &str,
    policy: Arc<dyn EscalationPolicy<Note = ()>>,
) -> Vec<ExecEvent<()>> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let status = runtime().block_on(async {
        let mut session = builder(name).events(tx).spawn(policy).unwrap();
        tokio::time::timeout(Duration::from_secs(60), session.wait())
            .await
            .expect("the client side timed out")
            .unwrap()
    });
    assert!(status.success(), "the client side failed: {status}");
    let mut events = Vec::new();
    while let Ok(event) = rx.try_recv() {
        events.push(event);
    }
    events
}

/// Client side: the session socket.
fn session() -> RawFd {
    let value = std::env::var_os(SOCKET_ENV);
    session_socket_from_env_value(value.as_deref().map(OsStrExt::as_bytes)).unwrap()
}

/// Client side: opens a connection with a request for `/bin/true` with `marker` in argv.
fn ask(marker: &str) -> Connection {
    let argv: [&[u8]; 2] = [b"/bin/true", marker.as_bytes()];
    Connection::open_with_request(
        session(),
        b"/bin/true",
        argv.iter().copied(),
        b"/",
        [].into_iter(),
        &mut [0u8; 8192],
    )
    .unwrap()
}

/// Client side: whether `conn` has something to read within `timeout`.
fn readable(conn: &Connection, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: conn.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis() as libc::c_int;
    unsafe { libc::poll(&mut pfd, 1, ms) == 1 }
}

/// Client side: the next message on `conn`, waiting at most 10 s for it.
fn next(conn: &Connection, buf: &mut [u8; 4096]) -> Result<String, ClientError> {
    assert!(
        readable(conn, Duration::from_secs(10)),
        "no answer from the server"
    );
    conn.recv(buf).map(|m| format!("{m:?}"))
}

fn run_verdict() -> String {
    format!("{:?}", ServerMessageRef::Run)
}

/// Runs everything; requests marked `@wait` wait until a request marked `@release` comes;
/// `@panic` panics.
#[derive(Default)]
struct Gate {
    release: tokio::sync::Notify,
    /// Set when a waiting decision is dropped before it finished.
    abandoned: Arc<AtomicBool>,
    /// Told when a decision starts waiting.
    waiting: tokio::sync::Notify,
}

/// Sets its flag when dropped unfinished.
struct Abandoned(Arc<AtomicBool>, bool);

impl Drop for Abandoned {
    fn drop(&mut self) {
        if !self.1 {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

#[async_trait]
impl EscalationPolicy for Gate {
    type Note = ();

    async fn decide(&self, exec: &ExecContext) -> Ruling {
        let has = |marker: &[u8]| exec.request.argv.iter().any(|a| a == marker);
        if has(b"@panic") {
            panic!("test policy panics");
        }
        if has(b"@release") {
            self.release.notify_one();
        }
        if has(b"@wait") {
            let mut guard = Abandoned(Arc::clone(&self.abandoned), false);
            self.waiting.notify_one();
            self.release.notified().await;
            guard.1 = true;
        }
        Verdict::Run.into()
    }
}

#[test]
fn a_waiting_decision_does_not_hold_up_other_execs() {
    if !in_client() {
        return serve(
            "a_waiting_decision_does_not_hold_up_other_execs",
            Arc::new(Gate::default()),
        );
    }
    let mut buf = [0u8; 4096];
    let waiting = ask("@wait");
    let other = ask("plain");
    assert_eq!(next(&other, &mut buf).unwrap(), run_verdict());
    assert!(!readable(&waiting, Duration::from_millis(100)));
    let release = ask("@release");
    assert_eq!(next(&release, &mut buf).unwrap(), run_verdict());
    assert_eq!(next(&waiting, &mut buf).unwrap(), run_verdict());
}

#[test]
fn a_request_sent_in_pieces_after_the_handshake_is_served() {
    if !in_client() {
        return serve(
            "a_request_sent_in_pieces_after_the_handshake_is_served",
            Arc::new(Gate::default()),
        );
    }
    let conn = Connection::open(session()).unwrap();
    let frame = ClientMessage::Request(ExecRequest {
        program: b"/bin/true".to_vec(),
        argv: vec![b"true".to_vec()],
        cwd: b"/".to_vec(),
        env: vec![b"A=1".to_vec()],
    })
    .to_frame();
    // The header alone, then the rest: the server must wait for each piece.
    for piece in [&frame[..2], &frame[2..7], &frame[7..]] {
        std::thread::sleep(Duration::from_millis(50));
        let sent = unsafe { libc::send(conn.as_raw_fd(), piece.as_ptr().cast(), piece.len(), 0) };
        assert_eq!(sent, piece.len() as isize);
    }
    let mut buf = [0u8; 4096];
    assert_eq!(next(&conn, &mut buf).unwrap(), run_verdict());
}

#[test]
fn a_panicking_policy_refuses_only_its_own_exec() {
    if cfg!(panic = "abort") {
        // Where panics abort, the server process ends: there is nothing to test.
        return;
    }
    if !in_client() {
        return serve(
            "a_panicking_policy_refuses_only_its_own_exec",
            Arc::new(Gate::default()),
        );
    }
    let mut buf = [0u8; 4096];
    let conn = ask("@panic");
    assert_eq!(next(&conn, &mut buf), Err(ClientError::ServerClosed));
    assert_eq!(next(&ask("plain"), &mut buf).unwrap(), run_verdict());
}

#[test]
fn dropping_the_session_abandons_waiting_decisions() {
    if in_client() {
        // Ask, then wait to be killed with the session.
        let conn = ask("@wait");
        let _ = readable(&conn, Duration::from_secs(30));
        return;
    }
    let gate = Arc::new(Gate::default());
    let abandoned = Arc::clone(&gate.abandoned);
    runtime().block_on(async {
        let policy: Arc<dyn EscalationPolicy<Note = ()>> = gate.clone();
        let session = start("dropping_the_session_abandons_waiting_decisions", policy);
        tokio::time::timeout(Duration::from_secs(30), gate.waiting.notified())
            .await
            .expect("the request never reached the policy");
        drop(session);
        for _ in 0..200 {
            if abandoned.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the waiting decision was not dropped with its session");
    });
}

#[test]
fn a_decision_beyond_the_waiting_limit_is_denied_and_runs_still_pass() {
    let reason = "too many commands of this session are waiting for a decision (at most \
                  64); run it again once some are decided";
    if !in_client() {
        let events = serve_with_events(
            "a_decision_beyond_the_waiting_limit_is_denied_and_runs_still_pass",
            Arc::new(Gate::default()),
        );
        // The server's own denial is reported without a note: no ruling was made.
        let unruled: Vec<&Verdict> = events
            .iter()
            .filter_map(|event| match event {
                ExecEvent::Decided {
                    verdict,
                    note: None,
                    ..
                } => Some(verdict),
                _ => None,
            })
            .collect();
        assert_eq!(
            unruled,
            [&Verdict::Deny {
                reason: reason.as_bytes().to_vec()
            }]
        );
        return;
    }
    let mut buf = [0u8; 4096];
    // 64 decisions wait (a hook, a person); the 65th that would wait is refused.
    let waiting: Vec<Connection> = (0..64).map(|_| ask("@wait")).collect();
    let refused = ask("@wait");
    assert_eq!(
        next(&refused, &mut buf).unwrap(),
        format!(
            "{:?}",
            ServerMessageRef::Deny {
                reason: reason.as_bytes()
            }
        )
    );
    assert_eq!(next(&ask("plain"), &mut buf).unwrap(), run_verdict());
    // A decision that finishes gives its place back.
    assert_eq!(next(&ask("@release"), &mut buf).unwrap(), run_verdict());
    let answered = waiting
        .iter()
        .position(|conn| readable(conn, Duration::from_secs(10)))
        .expect("a released decision was answered");
    assert_eq!(next(&waiting[answered], &mut buf).unwrap(), run_verdict());
    let another = ask("@wait");
    assert!(!readable(&another, Duration::from_millis(100)));
}

#[test]
fn a_stream_that_never_sends_its_request_is_closed() {
    if !in_client() {
        return serve(
            "a_stream_that_never_sends_its_request_is_closed",
            Arc::new(Gate::default()),
        );
    }
    let mut buf = [0u8; 4096];
    let silent = Connection::open(session()).unwrap();
    assert_eq!(next(&silent, &mut buf), Err(ClientError::ServerClosed));
    assert_eq!(next(&ask("plain"), &mut buf).unwrap(), run_verdict());
}

#[test]
fn fds_attached_to_an_unfinished_frame_are_not_held() {
    if !in_client() {
        return serve(
            "fds_attached_to_an_unfinished_frame_are_not_held",
            Arc::new(Gate::default()),
        );
    }
    // A stream that sends nothing: closed only by the server's timeout.
    let silent = Connection::open(session()).unwrap();
    // Half a request frame with 200 copies of a pipe's write end, then nothing more.
    let mut pipe = [-1; 2];
    assert_eq!(
        unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) },
        0
    );
    let holder = Connection::open(session()).unwrap();
    let fds = [pipe[1]; 200];
    let frame = 100u32.to_le_bytes();
    send_with_fds(holder.as_raw_fd(), &frame, &fds);
    unsafe { libc::close(pipe[1]) };
    // The server lets go of the fds at once (the pipe's read end sees end of file) rather
    // than when the stream times out, which comes first for the stream opened first.
    let mut pfd = libc::pollfd {
        fd: pipe[0],
        events: libc::POLLIN,
        revents: 0,
    };
    assert_eq!(
        unsafe { libc::poll(&mut pfd, 1, 10_000) },
        1,
        "fds still held"
    );
    assert!(
        !readable(&silent, Duration::ZERO),
        "the silent stream timed out first"
    );
    let mut buf = [0u8; 4096];
    assert_eq!(next(&holder, &mut buf), Err(ClientError::ServerClosed));
}

/// Client side: one `sendmsg` of `bytes` with `fds` attached.
fn send_with_fds(sock: RawFd, bytes: &[u8], fds: &[RawFd]) {
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of_val(fds) as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast(), fds.len());
        assert_eq!(
            libc::sendmsg(sock, &msg, 0),
            bytes.len() as isize,
            "sendmsg"
        );
    }
}

/// Denies every exec and ends the session, after yielding once (so it decides in a task, as
/// a policy that asks a person does).
struct Ender;

#[async_trait]
impl EscalationPolicy for Ender {
    type Note = ();

    async fn decide(&self, _exec: &ExecContext) -> Ruling {
        tokio::task::yield_now().await;
        Ruling::from(Verdict::Deny {
            reason: b"ended".to_vec(),
        })
        .ending_session("the policy ends it")
    }
}

#[test]
fn the_exec_that_ends_the_session_is_reported_before_the_session_is_gone() {
    const NAME: &str = "the_exec_that_ends_the_session_is_reported_before_the_session_is_gone";
    if in_client() {
        // Ask, then wait to be killed by the ruling.
        let conn = ask("@end");
        let _ = readable(&conn, Duration::from_secs(30));
        return;
    }
    // The ruling kills the shell; its record must be on the channel by the time the session
    // is dropped, or the audit log and the report lose the exec that ended the session. A
    // race when it breaks: repeat it.
    let runtime = runtime();
    for round in 0..100 {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        runtime.block_on(async {
            let wrapper = Interception::PatchedShell {
                wrapper: "/nonexistent/execgate-execve-wrapper".into(),
            };
            let mut session = SessionBuilder::new(std::env::current_exe().unwrap(), wrapper)
                .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
                .env(CLIENT_ENV, "1")
                .stdout(std::process::Stdio::null())
                .events(tx)
                .spawn(Arc::new(Ender))
                .unwrap();
            tokio::time::timeout(Duration::from_secs(60), session.wait())
                .await
                .expect("the session was not ended")
                .unwrap();
            assert_eq!(session.interrupted().as_deref(), Some("the policy ends it"));
        });
        let event = rx.try_recv();
        assert!(
            matches!(
                event,
                Ok(ExecEvent::Decided {
                    verdict: Verdict::Deny { .. },
                    ..
                })
            ),
            "round {round}: {event:?}"
        );
    }
}

/// Answers Run, and denies unless the request's second argument is the pid the server
/// gave the policy (or "none" when it gave none).
struct PidCheck;

#[async_trait]
impl EscalationPolicy for PidCheck {
    type Note = ();

    async fn decide(&self, exec: &ExecContext) -> Ruling {
        let said = exec.pid.map_or("none".to_owned(), |pid| pid.to_string());
        if exec.request.argv.get(1).map(Vec::as_slice) == Some(said.as_bytes()) {
            Verdict::Run.into()
        } else {
            Verdict::Deny {
                reason: format!("the policy was told {said}").into_bytes(),
            }
            .into()
        }
    }
}

#[test]
fn the_policy_learns_the_asking_process_only_when_the_session_asks_for_it() {
    if in_client() {
        let expected = std::env::var("EXPECT_PID").unwrap();
        let expected = if expected == "self" {
            std::process::id().to_string()
        } else {
            expected
        };
        let mut buf = [0u8; 4096];
        assert_eq!(next(&ask(&expected), &mut buf).unwrap(), run_verdict());
        return;
    }
    let name = "the_policy_learns_the_asking_process_only_when_the_session_asks_for_it";
    for (on, expect) in [(true, "self"), (false, "none")] {
        let status = runtime().block_on(async {
            let mut session = builder(name)
                .env("EXPECT_PID", expect)
                .client_pids(on)
                .spawn(Arc::new(PidCheck))
                .unwrap();
            session.wait().await.unwrap()
        });
        assert!(status.success(), "client_pids({on}): {status}");
    }
}
