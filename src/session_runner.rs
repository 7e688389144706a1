//! Runs one script in an intercepted, sandboxed shell and reports what happened: the glue
//! shared by `execgate run` and the MCP `shell` tool.
//!
//! Data flows one way: the server's [`ExecEvent`]s and the pipeline's [`DecisionNote`]s are
//! joined by the recorder into [`ExecRecord`]s, which go to the audit log, the progress
//! channel and the final [`RunReport`].

use crate::approver::{ApprovalRequest, Approver, BoxFuture, Choice, OutputGate, Unavailable};
use crate::pipeline::{ApprovalMode, DecisionNote, Pipeline};
use crate::report::{ExecRecord, RunReport, VerdictKind};
use anyhow::Context;
use execgate_escalate_server::{
    ExecEvent, ExitStatus, Interception, Launcher, SessionBuilder, Verdict,
};
use execgate_execpolicy::Policy;
use execgate_hooks::HooksConfig;
use execgate_sandbox::Sandbox;
use serde::Serialize;
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// How often the server's events are collected into records (audit log, progress). A person
/// cannot tell 50 ms of delay in a progress line; the server saves a thread wake-up per exec.
const EVENT_DRAIN: Duration = Duration::from_millis(50);

/// Which shell runs the script, and how its execs are intercepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellSetup {
    /// The shell binary.
    pub shell: PathBuf,
    /// How its execs reach the server.
    pub interception: Interception,
}

/// Where the execgate binaries live (the wrapper, the shim, the patched shells).
#[derive(Debug, Clone)]
pub struct Install {
    /// `execgate-execve-wrapper`.
    pub wrapper: PathBuf,
    /// `libexecgate_preload.so`.
    pub shim: PathBuf,
    /// Folder holding our patched `zsh` and `bash`, when built.
    pub shells_dir: PathBuf,
}

impl Install {
    /// Locates the binaries next to the running `execgate` (a cargo target dir or an
    /// install prefix); `EXECGATE_WRAPPER`, `EXECGATE_PRELOAD` and `EXECGATE_SHELLS_DIR`
    /// override.
    pub fn locate() -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the execgate binary")?;
        let dir = exe
            .parent()
            .context("the execgate binary has no parent folder")?
            .to_path_buf();
        let from_env =
            |name: &str, default: PathBuf| std::env::var_os(name).map_or(default, PathBuf::from);
        // target/debug/execgate -> target/shells; <prefix>/bin/execgate -> <prefix>/lib/execgate/shells
        let shells_default = dir
            .parent()
            .map(|p| p.join("shells"))
            .filter(|p| p.is_dir())
            .unwrap_or_else(|| dir.join("../lib/execgate/shells"));
        Ok(Self {
            wrapper: from_env("EXECGATE_WRAPPER", dir.join("execgate-execve-wrapper")),
            shim: from_env("EXECGATE_PRELOAD", dir.join("libexecgate_preload.so")),
            shells_dir: from_env("EXECGATE_SHELLS_DIR", shells_default),
        })
    }

    /// Resolves `--shell` (`zsh`, `bash`, `sh` or a path; `None` for the default).
    pub fn shell(&self, choice: Option<&str>) -> anyhow::Result<ShellSetup> {
        let patched = |name: &str| {
            let path = self.shells_dir.join(name);
            path.is_file().then(|| ShellSetup {
                shell: path,
                interception: Interception::PatchedShell {
                    wrapper: self.wrapper.clone(),
                },
            })
        };
        let preloaded = |path: PathBuf| ShellSetup {
            shell: path,
            interception: Interception::Preload {
                shim: self.shim.clone(),
                wrapper: self.wrapper.clone(),
            },
        };
        let setup = match choice {
            None => patched("zsh").unwrap_or_else(|| preloaded("/bin/bash".into())),
            Some("zsh") => patched("zsh").unwrap_or_else(|| preloaded("/usr/bin/zsh".into())),
            Some("bash") => patched("bash").unwrap_or_else(|| preloaded("/bin/bash".into())),
            Some("sh") => preloaded("/bin/sh".into()),
            Some(path) => preloaded(PathBuf::from(path)),
        };
        anyhow::ensure!(
            self.wrapper.is_file(),
            "the execve wrapper {} is missing: build it with `cargo build`",
            self.wrapper.display()
        );
        if let Interception::Preload { shim, .. } = &setup.interception {
            anyhow::ensure!(
                shim.is_file(),
                "the preload shim {} is missing: build it with `cargo build -p execgate-preload`",
                shim.display()
            );
        }
        anyhow::ensure!(
            setup.shell.is_file(),
            "shell {} not found: pass --shell zsh|bash|sh|PATH",
            setup.shell.display()
        );
        Ok(setup)
    }
}

/// How the session's output is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// The shell writes straight to execgate's stdout/stderr.
    Inherit,
    /// Relayed through execgate, paused while a prompt is on screen.
    Relay,
    /// Captured into the report.
    Capture,
}

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
    /// The rules.
    pub policy: Arc<Policy>,
    /// The hooks.
    pub hooks: Arc<HooksConfig>,
    /// The approval mode.
    pub approval: ApprovalMode,
    /// Who is asked.
    pub approver: Arc<dyn Approver>,
    /// Where "always" writes its rule.
    pub user_rules_file: Option<PathBuf>,
    /// Prefixes allowed for longer than this session (the MCP server's "allow for this
    /// server session"); shared with the pipeline.
    pub session_allowed: Arc<Mutex<Vec<Vec<String>>>>,
    /// Kill the session after this long (time waiting for a person excluded).
    pub timeout: Option<Duration>,
    /// Output handling.
    pub output: OutputMode,
    /// The gate a relayed output waits on while a prompt is shown.
    pub output_gate: Option<OutputGate>,
    /// Give the shell `/dev/null` as stdin instead of execgate's.
    pub null_stdin: bool,
    /// Append each record to this file.
    pub audit_log: Option<PathBuf>,
    /// Receives each record as it is completed.
    pub progress: Option<mpsc::UnboundedSender<ExecRecord>>,
    /// Hook input fields.
    pub session_id: String,
    /// Hook input fields.
    pub model: String,
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

/// Adapts a prepared sandbox to the server's launcher seam.
struct SandboxLauncher(Arc<Sandbox>);

impl Launcher for SandboxLauncher {
    fn command(&self, program: &Path, args: &[OsString]) -> std::io::Result<std::process::Command> {
        self.0
            .command(program, args)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

/// Time spent waiting for a person, so `--timeout` can leave it out.
#[derive(Default)]
struct PromptClock {
    state: Mutex<(u32, Option<Instant>, Duration)>,
}

impl PromptClock {
    fn begin(&self) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.0 == 0 {
            s.1 = Some(Instant::now());
        }
        s.0 += 1;
    }

    fn end(&self) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.0 = s.0.saturating_sub(1);
        if s.0 == 0 {
            if let Some(since) = s.1.take() {
                s.2 += since.elapsed();
            }
        }
    }

    /// Total prompt time so far, counting a prompt still on screen.
    fn paused(&self) -> (Duration, bool) {
        let s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let open = s.1.map_or(Duration::ZERO, |since| since.elapsed());
        (s.2 + open, s.0 > 0)
    }
}

/// An approver that tells the prompt clock when a person is being asked.
struct ClockedApprover {
    inner: Arc<dyn Approver>,
    clock: Arc<PromptClock>,
}

impl Approver for ClockedApprover {
    fn ask<'a>(
        &'a self,
        request: &'a ApprovalRequest,
    ) -> BoxFuture<'a, Result<Choice, Unavailable>> {
        Box::pin(async move {
            self.clock.begin();
            let answer = self.inner.ask(request).await;
            self.clock.end();
            answer
        })
    }
}

/// One audit-log line: the exec record, the session it belongs to, and which moment of
/// the exec it records.
#[derive(Serialize)]
struct AuditLine<'a> {
    session: &'a str,
    /// `decided` (every exec) or `exited` (escalated execs, with their exit code).
    event: &'static str,
    #[serde(flatten)]
    record: &'a ExecRecord,
}

/// Appends complete JSON lines (one `write` each) to the audit log.
struct AuditLog {
    file: std::fs::File,
    session: String,
}

impl AuditLog {
    fn open(path: &Path, session: String) -> anyhow::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the audit log {}", path.display()))?;
        Ok(Self { file, session })
    }

    fn write(&mut self, event: &'static str, record: &ExecRecord) {
        let line = AuditLine {
            session: &self.session,
            event,
            record,
        };
        if let Ok(mut text) = serde_json::to_vec(&line) {
            text.push(b'\n');
            if let Err(err) = self.file.write_all(&text) {
                tracing::warn!("cannot write the audit log: {err}");
            }
        }
    }
}

/// Turns server events (each `Decided` carrying the pipeline's note) into records.
struct Recorder {
    audit: Option<AuditLog>,
    progress: Option<mpsc::UnboundedSender<ExecRecord>>,
    records: Vec<ExecRecord>,
    index: HashMap<u64, (usize, Instant)>,
}

impl Recorder {
    fn handle(&mut self, event: ExecEvent<DecisionNote>) {
        match event {
            ExecEvent::Decided {
                id,
                request,
                program,
                verdict,
                note,
            } => {
                let (verdict_kind, exit_code) = match &verdict {
                    Verdict::Run => (VerdictKind::Run, None),
                    Verdict::Escalate => (VerdictKind::Escalate, None),
                    Verdict::Deny { .. } => (VerdictKind::Deny, Some(126)),
                };
                let program_bytes = {
                    use std::os::unix::ffi::OsStrExt;
                    program.as_os_str().as_bytes().to_vec()
                };
                let (program, argv, cwd, raw) =
                    ExecRecord::text_fields(&program_bytes, &request.argv, &request.cwd);
                let record = ExecRecord {
                    id,
                    program,
                    argv,
                    cwd,
                    decision: note.decision,
                    verdict: verdict_kind,
                    source: note.source,
                    rule: note.rule,
                    justification: note.justification,
                    exit_code,
                    duration_ms: 0,
                    raw,
                };
                if let Some(audit) = &mut self.audit {
                    audit.write("decided", &record);
                }
                if verdict_kind != VerdictKind::Escalate {
                    if let Some(progress) = &self.progress {
                        let _ = progress.send(record.clone());
                    }
                }
                self.index.insert(id, (self.records.len(), Instant::now()));
                self.records.push(record);
            }
            ExecEvent::Started { .. } => {}
            ExecEvent::SpawnFailed { id, message, errno } => {
                let code = if errno == libc::ENOENT { 127 } else { 126 };
                self.finish(id, code, Some(message));
            }
            ExecEvent::Exited { id, status, .. } => {
                let code = match status {
                    ExitStatus::Code(code) => code,
                    ExitStatus::Signal(signo) => 128 + signo,
                };
                self.finish(id, code, None);
            }
        }
    }

    fn finish(&mut self, id: u64, code: i32, failure: Option<String>) {
        let Some(&(at, since)) = self.index.get(&id) else {
            return;
        };
        let Some(record) = self.records.get_mut(at) else {
            return;
        };
        record.exit_code = Some(code);
        record.duration_ms = since.elapsed().as_millis() as u64;
        if let Some(failure) = failure {
            record.justification = Some(failure);
        }
        if let Some(audit) = &mut self.audit {
            audit.write("exited", record);
        }
        if let Some(progress) = &self.progress {
            let _ = progress.send(record.clone());
        }
    }
}

/// Output collected from the session.
#[derive(Default)]
struct Captured {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    combined: Vec<u8>,
}

async fn pump<R: AsyncRead + Unpin>(
    mut reader: R,
    is_stderr: bool,
    mode: OutputMode,
    gate: Option<OutputGate>,
    captured: Arc<Mutex<Captured>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if mode == OutputMode::Capture {
            let mut c = captured.lock().unwrap_or_else(PoisonError::into_inner);
            if is_stderr {
                c.stderr.extend_from_slice(chunk);
            } else {
                c.stdout.extend_from_slice(chunk);
            }
            c.combined.extend_from_slice(chunk);
            continue;
        }
        let _quiet = match &gate {
            Some(gate) => Some(gate.writing().await),
            None => None,
        };
        let result = if is_stderr {
            let mut err = tokio::io::stderr();
            match err.write_all(chunk).await {
                Ok(()) => err.flush().await,
                Err(e) => Err(e),
            }
        } else {
            let mut out = tokio::io::stdout();
            match out.write_all(chunk).await {
                Ok(()) => out.flush().await,
                Err(e) => Err(e),
            }
        };
        if result.is_err() {
            return;
        }
    }
}

/// Runs the session to its end.
pub async fn run_session(config: RunConfig) -> anyhow::Result<RunOutcome> {
    let started = Instant::now();
    let clock = Arc::new(PromptClock::default());
    let sandbox = Arc::clone(&config.sandbox);
    let pipeline = Pipeline {
        policy: Arc::clone(&config.policy),
        hooks: Arc::clone(&config.hooks),
        approval: config.approval,
        approver: Arc::new(ClockedApprover {
            inner: Arc::clone(&config.approver),
            clock: Arc::clone(&clock),
        }),
        user_rules_file: config.user_rules_file.clone(),
        is_sandbox_writable: {
            let sandbox = Arc::clone(&sandbox);
            // Without a sandbox everything already runs with full access, so escalation
            // lets nothing out and invariant 3 has nothing to guard.
            Box::new(move |p: &Path| {
                sandbox.backend() != execgate_sandbox::Backend::None
                    && sandbox.is_sandbox_writable(p)
            })
        },
        session_id: config.session_id.clone(),
        turn_id: uuid::Uuid::new_v4().to_string(),
        model: config.model.clone(),
        session_allowed: Arc::clone(&config.session_allowed),
    };
    let audit = match &config.audit_log {
        Some(path) => Some(AuditLog::open(path, config.session_id.clone())?),
        None => None,
    };
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let mut recorder = Recorder {
        audit,
        progress: config.progress.clone(),
        records: Vec::new(),
        index: HashMap::new(),
    };

    let flag = if config.login { "-lc" } else { "-c" };
    let piped = config.output != OutputMode::Inherit;
    let stdio = || {
        if piped {
            Stdio::piped()
        } else {
            Stdio::inherit()
        }
    };
    let builder = SessionBuilder::new(&config.shell.shell, config.shell.interception.clone())
        .args([OsString::from(flag), OsString::from(&config.script)])
        .cwd(sandbox.cwd())
        .launcher(Arc::new(SandboxLauncher(Arc::clone(&sandbox))))
        .stdin(if config.null_stdin {
            Stdio::null()
        } else {
            Stdio::inherit()
        })
        .stdout(stdio())
        .stderr(stdio())
        .events(events_tx);
    let mut session = builder
        .spawn(Arc::new(pipeline))
        .context("cannot start the session")?;

    let captured = Arc::new(Mutex::new(Captured::default()));
    let mut pumps = Vec::new();
    if let Some(out) = session.take_stdout() {
        pumps.push(tokio::spawn(pump(
            out,
            false,
            config.output,
            config.output_gate.clone(),
            Arc::clone(&captured),
        )));
    }
    if let Some(err) = session.take_stderr() {
        pumps.push(tokio::spawn(pump(
            err,
            true,
            config.output,
            config.output_gate.clone(),
            Arc::clone(&captured),
        )));
    }

    // Wait for the shell, recording events every EVENT_DRAIN, enforcing the timeout with
    // time spent waiting for a person left out. Events are drained on a timer rather than
    // awaited: a task parked in `recv` is woken by every send, and that wake-up (a futex and
    // an IPI) cost the server's acceptor more than the rest of a Run verdict.
    let mut drain = tokio::time::interval(EVENT_DRAIN);
    let mut timed_out = false;
    let status = loop {
        let sleep_for = match config.timeout {
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
            _ = drain.tick() => {
                while let Ok(event) = events_rx.try_recv() {
                    recorder.handle(event);
                }
            }
            () = tokio::time::sleep(sleep_for) => {}
        }
    };
    let interrupted = session.interrupted().is_some();
    // The shell is gone: end whatever it left behind, then collect the rest.
    drop(session);
    for pump in pumps {
        let _ = tokio::time::timeout(Duration::from_secs(2), pump).await;
    }
    while let Ok(event) = events_rx.try_recv() {
        recorder.handle(event);
    }

    let (mut exit_code, signal) = match status {
        Some(status) => (status.code(), status.signal()),
        None => (None, None),
    };
    if interrupted {
        exit_code = Some(130);
    } else if timed_out {
        exit_code = Some(124);
    }
    let captured = std::mem::take(&mut *captured.lock().unwrap_or_else(PoisonError::into_inner));
    Ok(RunOutcome {
        report: RunReport {
            exit_code,
            signal: if interrupted || timed_out {
                None
            } else {
                signal
            },
            stdout: String::from_utf8_lossy(&captured.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&captured.stderr).into_owned(),
            timed_out,
            interrupted,
            execs: recorder.records,
        },
        combined: captured.combined,
        duration: started.elapsed(),
    })
}

/// The rules files discovery finds: `~/.config/execgate/rules/*.rules`, then
/// `.execgate/rules/*.rules` from the outermost ancestor of `cwd` down to `cwd`, each
/// folder's files in name order.
pub fn discover_rules(cwd: &Path, home: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(home) = home {
        dirs.push(home.join(".config/execgate/rules"));
    }
    let mut ancestors: Vec<&Path> = cwd.ancestors().collect();
    ancestors.reverse();
    for dir in ancestors {
        let candidate = dir.join(".execgate/rules");
        if !dirs.contains(&candidate) {
            dirs.push(candidate);
        }
    }
    let mut files = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "rules") && p.is_file())
            .collect();
        found.sort();
        files.extend(found);
    }
    files
}

/// The user's approvals file: "always" answers append to it; discovery loads it with the
/// other user rules.
pub fn user_rules_file(home: Option<&Path>) -> Option<PathBuf> {
    home.map(|h| h.join(".config/execgate/rules/approved.rules"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_discovered_user_first_then_outermost_project() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let project = tmp.path().join("work/project");
        let sub = project.join("sub");
        for dir in [
            home.join(".config/execgate/rules"),
            tmp.path().join("work/.execgate/rules"),
            sub.join(".execgate/rules"),
        ] {
            std::fs::create_dir_all(&dir).unwrap();
        }
        std::fs::write(home.join(".config/execgate/rules/u.rules"), "").unwrap();
        std::fs::write(tmp.path().join("work/.execgate/rules/b.rules"), "").unwrap();
        std::fs::write(tmp.path().join("work/.execgate/rules/a.rules"), "").unwrap();
        std::fs::write(tmp.path().join("work/.execgate/rules/notes.txt"), "").unwrap();
        std::fs::write(sub.join(".execgate/rules/s.rules"), "").unwrap();
        let found = discover_rules(&sub, Some(&home));
        let names: Vec<String> = found
            .iter()
            .map(|p| p.strip_prefix(tmp.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "home/.config/execgate/rules/u.rules",
                "work/.execgate/rules/a.rules",
                "work/.execgate/rules/b.rules",
                "work/project/sub/.execgate/rules/s.rules",
            ]
        );
    }

    #[test]
    fn prompt_clock_counts_overlapping_prompts_once() {
        let clock = PromptClock::default();
        clock.begin();
        clock.begin();
        std::thread::sleep(Duration::from_millis(20));
        clock.end();
        assert!(clock.paused().1);
        clock.end();
        let (paused, open) = clock.paused();
        assert!(!open);
        assert!(paused >= Duration::from_millis(20));
    }
}
