//! Runs one script in an intercepted, sandboxed shell and reports what happened: the
//! session assembly shared by `execgate run` and the MCP `shell` tool.
//!
//! Data flows one way: the shell's execs reach the server, the server asks the pipeline,
//! and its events (each `Decided` carrying the pipeline's note) become records for the
//! audit log, the progress channel and the final [`RunReport`].

mod audit;
mod clock;
mod hooks;
pub mod network;
mod owners;
mod record;
mod relay;
mod sandbox;

pub use hooks::HookSetup;
pub use relay::OutputMode;

use crate::install::ShellSetup;
use crate::report::{ExecRecord, NetworkRecord, RunReport};
use anyhow::Context;
use audit::AuditLog;
use clock::PromptClock;
use execgate_decide::{Note, Pipeline, RepositoryGuard, SessionGit};
use execgate_escalate_server::{ExecEvent, Session, SessionBuilder};
use execgate_netgate::{ConnectionRecord, ResolveOverrides};
use execgate_sandbox::{Backend, Sandbox};
use execgate_terminal::Terminal;
use execgate_trust::TrustedRepositories;
use hooks::SessionHooks;
use network::{GateStarter, RunningGate};
use owners::{ExecRegistry, Noting};
use record::Recorder;
use relay::{Captured, Relay};
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How often the server's events are collected into records (audit log, progress). A person
/// cannot tell 50 ms of delay in a progress line; the server saves a thread wake-up per exec.
const EVENT_DRAIN: Duration = Duration::from_millis(50);

/// Everything one session needs.
pub struct RunConfig {
    /// Shell code to run (`shell -c SCRIPT`, or `-lc` with `login`).
    pub script: String,
    /// Run the shell as a login shell.
    pub login: bool,
    /// The shell and its interception.
    pub shell: ShellSetup,
    /// The sandbox, already prepared (it checked that it can start processes).
    pub sandbox: Arc<Sandbox>,
    /// What decides the session's execs. The session adds the sandbox's writability, the
    /// repository guard and the hooks (vetted against the sandbox), and times the approver
    /// (see `timeout`).
    pub pipeline: Pipeline,
    /// The hooks and where they run.
    pub hooks: HookSetup,
    /// The trusted repositories, gathered before the sandbox was prepared (their paths
    /// among its protected ones).
    pub repositories: TrustedRepositories,
    /// Kill the session after this long (time waiting for a person excluded).
    pub timeout: Option<Duration>,
    /// Output handling.
    pub output: OutputMode,
    /// The session's own terminal, when execgate relays one (see [`execgate_terminal`]):
    /// the shell's controlling terminal, and its stdin, stdout or stderr wherever
    /// execgate's are a terminal.
    pub terminal: Option<Terminal>,
    /// Give the shell `/dev/null` as stdin instead of execgate's.
    pub null_stdin: bool,
    /// Request variables escalated commands keep (`--pass-env`).
    pub pass_env: Vec<OsString>,
    /// Append each record to this file.
    pub audit_log: Option<PathBuf>,
    /// Receives each record as it is completed.
    pub progress: Option<mpsc::UnboundedSender<ExecRecord>>,
    /// `--network-resolve`, for a gated sandbox's network gate.
    pub network_resolve: ResolveOverrides,
}

/// The report plus what the MCP tool needs beyond it.
pub struct RunOutcome {
    /// The `run --json` object.
    pub report: RunReport,
    /// stdout and stderr interleaved in arrival order (when captured).
    pub combined: Vec<u8>,
    /// Wall time of the session.
    pub duration: Duration,
}

/// How the shell's wait ended.
struct Ended {
    status: Option<std::process::ExitStatus>,
    timed_out: bool,
    interrupted: bool,
}

/// Says on stderr which writable roots were not searched to the end for folders to
/// protect (see `Sandbox::scan_cut`).
pub fn warn_scan_cut(sandbox: &Sandbox) {
    for root in sandbox.scan_cut() {
        eprintln!(
            "execgate: warning: {} holds too many folders to search them all for .git, .execgate and agent folders; those deep inside it stay writable",
            root.display()
        );
    }
}

/// Runs the session to its end: build it, spawn it, wait for it, report.
pub async fn run_session(config: RunConfig) -> anyhow::Result<RunOutcome> {
    let started = Instant::now();
    let clock = Arc::new(PromptClock::default());
    let audit = match &config.audit_log {
        Some(path) => Some(AuditLog::open(
            path,
            config.pipeline.session_id().to_owned(),
        )?),
        None => None,
    };
    let mut recorder = Recorder::new(audit, config.progress.clone());
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (output, timeout) = (config.output, config.timeout);
    let script = config.script.clone();
    let (mut session, terminal, mut gate) = spawn(config, &clock, events_tx)?;
    let relay = Relay::start(&mut session, output);
    let gated = gate.is_some();
    if gated {
        recorder.gated();
    }
    let mut watch = Watch {
        events: &mut events,
        recorder: &mut recorder,
        gate: gate.as_mut(),
        relay: &relay,
        script: &script,
    };
    let ended = wait(&mut session, &mut watch, &clock, timeout, started).await;
    // The shell is gone: end whatever it left behind, then collect the rest.
    drop(session);
    if let Some(gate) = watch.gate.take() {
        // Closing the doors ends every relayed connection, whose records follow.
        gate.tasks.shutdown().await;
        while let Ok(record) = gate.records.try_recv() {
            watch.network(record, None);
        }
    }
    let captured = relay.finish().await;
    if let Some(terminal) = terminal {
        terminal.finish().await;
    }
    recorder.drain(&mut events);
    let (execs, network) = recorder.into_records();
    Ok(report(
        ended,
        captured,
        execs,
        gated.then_some(network),
        started,
    ))
}

/// What the wait loop collects from a running session.
struct Watch<'a> {
    events: &'a mut mpsc::UnboundedReceiver<ExecEvent<Note>>,
    recorder: &'a mut Recorder,
    gate: Option<&'a mut RunningGate>,
    relay: &'a Relay,
    script: &'a str,
}

impl Watch<'_> {
    /// Records one of the gate's connections: the denial line in the session's stderr,
    /// the record, and the session's end when the verdict asked for it.
    fn network(&mut self, record: ConnectionRecord, session: Option<&Session>) {
        if let Some(line) = network::denial_line(&record, self.script) {
            self.relay.note_stderr(&line);
        }
        if record.end_session {
            if let Some(session) = session {
                let reason = record
                    .reason
                    .clone()
                    .unwrap_or_else(|| "a network decision ended the session".to_owned());
                session.end(reason);
            }
        }
        self.recorder.network(NetworkRecord::from_gate(&record));
    }
}

/// The next record of the gate, if the session has one (never, otherwise).
async fn next_connection(gate: &mut Option<&mut RunningGate>) -> Option<ConnectionRecord> {
    match gate {
        Some(gate) => gate.records.recv().await,
        None => std::future::pending().await,
    }
}

/// Builds the session (the shell in its sandbox, asking the pipeline) and starts it; gives
/// back the session's terminal, if it has one, for the end.
///
/// The shell never gets a terminal of execgate's: each of its stdin, stdout and stderr that
/// would be one is the session's own terminal instead (or, without one, `/dev/null` for
/// stdin and a relayed pipe for output).
fn spawn(
    mut config: RunConfig,
    clock: &Arc<PromptClock>,
    events: mpsc::UnboundedSender<ExecEvent<Note>>,
) -> anyhow::Result<(Session, Option<Terminal>, Option<RunningGate>)> {
    // One writability test for both: the pipeline judges a program under the name it was
    // invoked by only when the server trusts that name, which it does by the same test.
    let writable = sandbox::writable(&config.sandbox);
    let roots = match config.sandbox.backend() {
        Backend::None => Vec::new(),
        _ => config.sandbox.writable_roots().to_vec(),
    };
    let in_root = |p: &std::path::Path| roots.iter().any(|r| p.starts_with(r));
    let verified = config.repositories.verify(&in_root, &*writable);
    // An escalated program gets the session's own environment, GIT_DIR included.
    let guard = RepositoryGuard::new(
        roots,
        Arc::clone(&writable),
        verified,
        SessionGit::from_process(),
    );
    let hooks = SessionHooks::new(config.hooks, Arc::clone(&writable));
    let pipeline = config
        .pipeline
        .sandbox_writable(Arc::clone(&writable))
        .guard(Arc::new(guard))
        .hooks(Arc::new(hooks))
        .wrap_approver(|approver| clock.around(approver));
    let flag = if config.login { "-lc" } else { "-c" };
    let is_tty = |fd: i32| {
        // SAFETY: isatty only looks at the fd.
        unsafe { libc::isatty(fd) == 1 }
    };
    let session_tty = |terminal: &Option<Terminal>| -> anyhow::Result<Option<Stdio>> {
        match terminal {
            Some(t) => Ok(Some(Stdio::from(
                t.session_tty()
                    .context("cannot open the session's terminal")?,
            ))),
            None => Ok(None),
        }
    };
    let stdin = if config.null_stdin {
        Stdio::null()
    } else if is_tty(0) {
        session_tty(&config.terminal)?.unwrap_or_else(Stdio::null)
    } else {
        Stdio::inherit()
    };
    let output = |fd: i32| -> anyhow::Result<Stdio> {
        Ok(match config.output {
            OutputMode::Inherit if is_tty(fd) => {
                session_tty(&config.terminal)?.unwrap_or_else(Stdio::piped)
            }
            mode => mode.stdio(),
        })
    };
    let (stdout, stderr) = (output(1)?, output(2)?);
    let mut builder = SessionBuilder::new(&config.shell.shell, config.shell.interception.clone());
    for name in &config.pass_env {
        builder = builder.pass_env(name);
    }
    // A gated network: the gate starts once the sandbox exists, before the shell runs.
    let registry = Arc::new(ExecRegistry::default());
    let gate = if config.sandbox.is_gated() {
        if let Some(name) = config
            .pass_env
            .iter()
            .find(|name| name.to_str().is_some_and(network::is_proxy_var))
        {
            anyhow::bail!(
                "--pass-env {}: with --network gated this names the sandbox's proxy, which escalated commands (outside the sandbox) cannot use; leave it out",
                name.to_string_lossy()
            );
        }
        network::raise_nofile();
        for (name, value) in network::proxy_env() {
            builder = builder.env(name, value);
        }
        builder = builder.client_pids(true);
        Some(Arc::new(GateStarter {
            policy: Arc::clone(pipeline.policy()),
            decider: std::sync::Mutex::new(Some(
                pipeline.network(config.script.clone(), config.sandbox.cwd()),
            )),
            registry: Arc::clone(&registry),
            resolve: config.network_resolve.clone(),
            runtime: tokio::runtime::Handle::current(),
            running: std::sync::Mutex::new(None),
        }))
    } else {
        None
    };
    builder = builder
        .args([OsString::from(flag), OsString::from(&config.script)])
        .cwd(config.sandbox.cwd())
        .launcher(Arc::new(sandbox::SandboxLauncher(
            Arc::clone(&config.sandbox),
            gate.clone(),
        )))
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr)
        .writable_paths(Arc::new(move |p: &std::path::Path| writable(p)))
        .events(events);
    if let Some(terminal) = &config.terminal {
        builder = builder.controlling_terminal(
            terminal
                .session_tty()
                .context("cannot open the session's terminal")?,
        );
    }
    let session = match &gate {
        Some(_) => builder.spawn(Arc::new(Noting {
            policy: pipeline,
            registry,
        })),
        None => builder.spawn(Arc::new(pipeline)),
    }
    .context("cannot start the session")?;
    let running = gate.and_then(|gate| {
        gate.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    });
    let mut terminal = config.terminal.take();
    if let Some(terminal) = &mut terminal {
        terminal.close_session_tty();
    }
    Ok((session, terminal, running))
}

/// Waits for the shell, recording events every [`EVENT_DRAIN`] and enforcing `timeout`
/// with time spent waiting for a person left out.
///
/// Events are drained on a timer rather than awaited: a task parked in `recv` is woken by
/// every send, and that wake-up (a futex and an IPI) cost the server's acceptor more than
/// the rest of a Run verdict.
async fn wait(
    session: &mut Session,
    watch: &mut Watch<'_>,
    clock: &PromptClock,
    timeout: Option<Duration>,
    started: Instant,
) -> Ended {
    let mut drain = tokio::time::interval(EVENT_DRAIN);
    let mut timed_out = false;
    let status = loop {
        let sleep_for = match timeout {
            Some(limit) => {
                let (paused, prompting) = clock.paused();
                let used = started.elapsed().saturating_sub(paused);
                if !prompting && used >= limit {
                    timed_out = true;
                    session.kill();
                    break session.wait().await.ok();
                }
                if prompting {
                    Duration::from_millis(100)
                } else {
                    limit - used
                }
            }
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            status = session.wait() => break status.ok(),
            _ = drain.tick() => watch.recorder.drain(watch.events),
            Some(record) = next_connection(&mut watch.gate) => watch.network(record, Some(session)),
            () = tokio::time::sleep(sleep_for) => {}
        }
    };
    Ended {
        status,
        timed_out,
        interrupted: session.interrupted().is_some(),
    }
}

/// The session's report: the shell's status (130 when a hook or a person ended the
/// session, 124 on timeout), its output and the records.
fn report(
    ended: Ended,
    captured: Captured,
    execs: Vec<ExecRecord>,
    network: Option<Vec<NetworkRecord>>,
    started: Instant,
) -> RunOutcome {
    let (mut exit_code, signal) = match ended.status {
        Some(status) => (status.code(), status.signal()),
        None => (None, None),
    };
    if ended.interrupted {
        exit_code = Some(130);
    } else if ended.timed_out {
        exit_code = Some(124);
    }
    RunOutcome {
        report: RunReport {
            exit_code,
            signal: if ended.interrupted || ended.timed_out {
                None
            } else {
                signal
            },
            stdout: String::from_utf8_lossy(&captured.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&captured.stderr).into_owned(),
            timed_out: ended.timed_out,
            interrupted: ended.interrupted,
            execs,
            network,
        },
        combined: captured.combined,
        duration: started.elapsed(),
    }
}
