//! The server's cost per exec, isolated from any shell and wrapper: a real session socket
//! and server, and a client speaking the real protocol with
//! `execgate_protocol::client::Connection`, one conversation at a time.
//!
//! Usage: `roundtrip [--no-events] [N [ROW...]]` (default 2000 conversations per row;
//! ROW is `bare`, `run`, `run-cold`, `run-open` or `escalate`, default all). Release build:
//! `cargo run --release -p execgate-escalate-server --example roundtrip`. The server's
//! events are consumed by a task on its runtime, as `execgate run` does, unless
//! `--no-events`.
//!
//! The session's "shell" is this program again in client mode, so the client holds the
//! session socket exactly as a shell does. Rows, mean and median microseconds each:
//! - a bare `fork` + `execve(/bin/true)` + `waitpid` from the client, for scale;
//! - Run verdicts, with `Connection::open_with_request` and with `open` + `send_request`;
//! - Escalate of `/bin/true`: verdict, `send_fds` (0, 1, 2), Started, Exited.
//!
//! Each row also shows the server's CPU time per conversation, by thread, which a busy
//! machine disturbs much less than wall-clock time.

use execgate_escalate_server::{
    async_trait, EscalationPolicy, ExecContext, Interception, Ruling, SessionBuilder, Verdict,
};
use execgate_protocol::client::{session_socket_from_env_value, Connection};
use execgate_protocol::{ServerMessageRef, SOCKET_ENV};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::Arc;
use std::time::Instant;

/// Escalates requests whose `argv[0]` is `@escalate`, runs the rest. (The marker is not an
/// extra argument: coreutils' `true` given exactly one argument loads the locale, which
/// would make the escalated `/bin/true` slower than the bare one.)
struct ByMarker;

#[async_trait]
impl EscalationPolicy for ByMarker {
    type Note = ();

    async fn decide(&self, exec: &ExecContext) -> Ruling {
        if exec.request.argv.first().is_some_and(|a| a == b"@escalate") {
            Verdict::Escalate.into()
        } else {
            Verdict::Run.into()
        }
    }
}

const CLIENT_FLAG: &str = "--client";

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let events = args.first().map(String::as_str) != Some("--no-events");
    if !events {
        args.remove(0);
    }
    if args.first().map(String::as_str) == Some(CLIENT_FLAG) {
        let n = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(2000);
        return client(n, &args[2..]);
    }
    let n: usize = match args.first() {
        Some(n) => n.parse()?,
        None => 2000,
    };
    let rows = args.get(1..).unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let status = runtime.block_on(async {
        let wrapper = Interception::PatchedShell {
            wrapper: "/nonexistent/execgate-execve-wrapper".into(),
        };
        // Invoked names are checked against a writable folder, as `execgate run` does.
        let tmp = std::env::temp_dir();
        let mut builder = SessionBuilder::new(std::env::current_exe()?, wrapper)
            .arg(CLIENT_FLAG)
            .arg(n.to_string())
            .args(rows)
            .writable_paths(Arc::new(move |p: &std::path::Path| p.starts_with(&tmp)));
        let mut consumer = None;
        if events {
            let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
            builder = builder.events(events);
            // Drained on a timer, as `execgate run` does: a receiver parked in `recv` would
            // cost the acceptor a thread wake-up per exec.
            consumer = Some(tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_millis(50));
                loop {
                    tick.tick().await;
                    loop {
                        match received.try_recv() {
                            Ok(_) => {}
                            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => return,
                        }
                    }
                }
            }));
        }
        let mut session = builder.spawn(Arc::new(ByMarker))?;
        let status = session.wait().await?;
        drop(session);
        if let Some(consumer) = consumer {
            consumer.await?;
        }
        anyhow::Ok(status)
    })?;
    anyhow::ensure!(status.success(), "the client failed: {status}");
    Ok(())
}

/// Wall-clock samples of one row (microseconds) and the server's CPU time over them.
struct Timed {
    samples: Vec<f64>,
    /// Server CPU time per conversation in microseconds, per thread name.
    server_cpu: BTreeMap<String, f64>,
}

/// Prints mean and median of `samples` (microseconds), and the server's CPU time.
fn summary(name: &str, samples: &mut [f64], server_cpu: Option<&BTreeMap<String, f64>>) {
    samples.sort_by(f64::total_cmp);
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    let median = samples[samples.len() / 2];
    let cpu = server_cpu.map_or(String::new(), |threads| {
        let total: f64 = threads.values().sum();
        let each: Vec<String> = threads
            .iter()
            .map(|(name, us)| format!("{name} {us:.1}"))
            .collect();
        format!("   server CPU {total:6.1} us ({})", each.join(", "))
    });
    println!("{name:<40} mean {mean:8.1} us   median {median:8.1} us{cpu}");
}

/// CPU time used so far by the threads of the server (our parent), in nanoseconds per
/// thread name: the first field of each thread's `schedstat`. Unlike wall-clock time it
/// does not count waiting for a CPU, so it stays comparable on a busy machine.
fn server_cpu_ns() -> BTreeMap<String, u64> {
    let mut threads = BTreeMap::new();
    let dir = format!("/proc/{}/task", std::os::unix::process::parent_id());
    let Ok(tasks) = std::fs::read_dir(dir) else {
        return threads;
    };
    for task in tasks.flatten() {
        let read = |file: &str| std::fs::read_to_string(task.path().join(file));
        let (Ok(name), Ok(stat)) = (read("comm"), read("schedstat")) else {
            continue;
        };
        let ns: u64 = stat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        *threads.entry(name.trim().to_string()).or_insert(0) += ns;
    }
    threads
}

/// Times `n` runs of `f` (after a tenth as many warm-up runs).
fn time(n: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Timed> {
    for _ in 0..n / 10 {
        f()?;
    }
    let mut samples = Vec::with_capacity(n);
    let cpu_before = server_cpu_ns();
    for _ in 0..n {
        let start = Instant::now();
        f()?;
        samples.push(start.elapsed().as_secs_f64() * 1e6);
    }
    let server_cpu = server_cpu_ns()
        .into_iter()
        .map(|(name, ns)| {
            let before = cpu_before.get(&name).copied().unwrap_or(0);
            (name, ns.saturating_sub(before) as f64 / 1e3 / n as f64)
        })
        .collect();
    Ok(Timed {
        samples,
        server_cpu,
    })
}

fn client(n: usize, rows: &[String]) -> anyhow::Result<()> {
    let row = |name: &str| rows.is_empty() || rows.iter().any(|r| r == name);
    let socket_var = std::env::var_os(SOCKET_ENV);
    let session = session_socket_from_env_value(socket_var.as_deref().map(OsStrExt::as_bytes))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let cwd = std::env::current_dir()?.into_os_string().into_vec();
    // The environment a wrapper would send: this process's own.
    let env: Vec<Vec<u8>> = std::env::vars_os()
        .map(|(k, v)| {
            let mut entry = k.into_vec();
            entry.push(b'=');
            entry.extend_from_slice(v.as_bytes());
            entry
        })
        .collect();
    let env_iter = || env.iter().map(Vec::as_slice);
    let program: &[u8] = b"/bin/true";
    let run_argv: [&[u8]; 1] = [program];
    let escalate_argv: [&[u8]; 1] = [b"@escalate"];
    let mut buf = [0u8; 8192];

    println!("per conversation, {n} sequential conversations per row");
    if row("bare") {
        let mut timed = time(n, bare_true)?;
        summary("bare fork+execve(/bin/true)+wait", &mut timed.samples, None);
    }
    // One Run conversation, as the wrapper and the shim hold it.
    let mut run_once = || {
        let conn = Connection::open_with_request(
            session,
            program,
            run_argv.iter().copied(),
            &cwd,
            env_iter(),
            &mut [0u8; 8192],
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        expect(conn.recv(&mut buf), |m| matches!(m, ServerMessageRef::Run))
    };
    if row("run") {
        let mut timed = time(n, &mut run_once)?;
        summary(
            "Run (open_with_request)",
            &mut timed.samples,
            Some(&timed.server_cpu),
        );
    }
    if row("run-cold") {
        // Each timed conversation follows an untimed fork + exec + wait, as in a shell loop:
        // the server has slept about a millisecond and its caches have gone cold.
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            bare_true()?;
            let start = Instant::now();
            run_once()?;
            samples.push(start.elapsed().as_secs_f64() * 1e6);
        }
        summary("Run, each after a fork+exec", &mut samples, None);
    }
    if row("run-open") {
        let mut timed = time(n, || {
            let conn = Connection::open(session).map_err(|e| anyhow::anyhow!("{e}"))?;
            conn.send_request(program, run_argv.iter().copied(), &cwd, env_iter())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            expect(conn.recv(&mut buf), |m| matches!(m, ServerMessageRef::Run))
        })?;
        summary(
            "Run (open + send_request)",
            &mut timed.samples,
            Some(&timed.server_cpu),
        );
    }
    if row("escalate") {
        // Phases: request to verdict, fds sent to Started, Started to Exited.
        let mut phases = [Vec::new(), Vec::new(), Vec::new()];
        let mut timed = time(n, || {
            let start = Instant::now();
            let conn = Connection::open_with_request(
                session,
                program,
                escalate_argv.iter().copied(),
                &cwd,
                env_iter(),
                &mut [0u8; 8192],
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            expect(conn.recv(&mut buf), |m| {
                matches!(m, ServerMessageRef::Escalate)
            })?;
            let verdict = Instant::now();
            conn.send_fds(&[0, 1, 2], &[0, 1, 2])
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            expect(conn.recv(&mut buf), |m| {
                matches!(m, ServerMessageRef::Started { .. })
            })?;
            let started = Instant::now();
            expect(conn.recv(&mut buf), |m| {
                matches!(
                    m,
                    ServerMessageRef::Exited(execgate_protocol::ExitStatus::Code(0))
                )
            })?;
            let micros = |from: Instant, to: Instant| (to - from).as_secs_f64() * 1e6;
            phases[0].push(micros(start, verdict));
            phases[1].push(micros(verdict, started));
            phases[2].push(micros(started, Instant::now()));
            Ok(())
        })?;
        summary(
            "Escalate /bin/true (to Exited)",
            &mut timed.samples,
            Some(&timed.server_cpu),
        );
        let names = [
            "  request to Escalate",
            "  fds to Started",
            "  Started to Exited",
        ];
        for (name, samples) in names.iter().zip(&mut phases) {
            summary(name, samples, None);
        }
    }
    Ok(())
}

fn expect(
    got: Result<ServerMessageRef<'_>, execgate_protocol::client::ClientError>,
    ok: impl FnOnce(&ServerMessageRef<'_>) -> bool,
) -> anyhow::Result<()> {
    let message = got.map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(ok(&message), "unexpected server message {message:?}");
    Ok(())
}

/// What a bare shell does per `/bin/true`: fork, exec with this environment, wait.
fn bare_true() -> anyhow::Result<()> {
    let path = CString::new("/bin/true")?;
    let argv = [path.as_ptr(), std::ptr::null()];
    extern "C" {
        static environ: *const *const libc::c_char;
    }
    // SAFETY: the child only calls execve and _exit (async-signal-safe) on memory prepared
    // before the fork.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        unsafe {
            // The same environment an escalated /bin/true gets (locale files and all).
            libc::execve(path.as_ptr(), argv.as_ptr(), environ);
            libc::_exit(127);
        }
    }
    anyhow::ensure!(pid > 0, "fork: {}", std::io::Error::last_os_error());
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    anyhow::ensure!(status == 0, "/bin/true failed: {status}");
    Ok(())
}
