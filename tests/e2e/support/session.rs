//! Running scripts in intercepted shells under [`TestPolicy`]: a runner that captures the
//! output, the exec events and the requests the policy saw.

use super::policy::{Seen, TestPolicy};
use super::setups::ShellSetup;
use execgate_escalate_server::{EscalationPolicy, ExecEvent, ExecRequest, Session, SessionBuilder};
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// What a script run produced.
#[derive(Debug)]
pub struct Outcome {
    /// The setup's name.
    pub setup: String,
    /// The shell's exit status.
    pub status: ExitStatus,
    /// Everything written to the shell's stdout (escalated commands included).
    pub stdout: Vec<u8>,
    /// Everything written to its stderr.
    pub stderr: Vec<u8>,
    /// The server's events, in order.
    pub events: Vec<ExecEvent>,
    /// Why the policy interrupted the session, if it did.
    pub interrupted: Option<String>,
    /// Every request the policy saw, in arrival order.
    pub seen: Vec<Seen>,
}

impl Outcome {
    /// stdout, lossily decoded.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr, lossily decoded.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// The shell's exit code (`None` if a signal ended it).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Every request the policy saw, in arrival order.
    pub fn requests(&self) -> Vec<&ExecRequest> {
        self.seen.iter().map(|s| &s.request).collect()
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}] status {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.setup,
            self.status,
            self.stdout(),
            self.stderr()
        )
    }
}

/// A tokio runtime for one test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Changes a session's builder before it is spawned (e.g. to pass variables to escalated
/// commands); `|builder| builder` changes nothing.
pub type Configure<'a> = &'a dyn Fn(SessionBuilder) -> SessionBuilder;

/// Starts `script` in `setup` (cwd `dir`, PATH=/usr/bin:/bin plus `env`, no BASH_ENV or
/// ENV, stdin null, stdout and stderr piped). The caller drives the session.
pub fn start(
    setup: &ShellSetup,
    dir: &Path,
    script: impl Into<OsString>,
    env: &[(&str, &OsStr)],
    policy: Arc<TestPolicy>,
    events: mpsc::UnboundedSender<ExecEvent>,
) -> Session {
    start_configured(setup, dir, script, env, policy, events, &|builder| builder)
}

/// [`start`] under any policy, with `configure` applied to the builder last.
pub fn start_configured(
    setup: &ShellSetup,
    dir: &Path,
    script: impl Into<OsString>,
    env: &[(&str, &OsStr)],
    policy: Arc<dyn EscalationPolicy<Note = ()>>,
    events: mpsc::UnboundedSender<ExecEvent>,
    configure: Configure<'_>,
) -> Session {
    let mut builder = SessionBuilder::new(&setup.shell, setup.interception.clone())
        .args(setup.args.iter().cloned())
        .arg("-c")
        .arg(script)
        .cwd(dir)
        .env("PATH", "/usr/bin:/bin")
        .env_remove("BASH_ENV")
        .env_remove("ENV");
    for (key, value) in env {
        builder = builder.env(key, value);
    }
    let builder = builder
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .events(events);
    configure(builder)
        .spawn(policy)
        .unwrap_or_else(|e| panic!("[{}] {e}", setup.name))
}

/// Runs `script` to completion (60 s at most) and collects what happened.
pub fn run(
    setup: &ShellSetup,
    dir: &Path,
    script: impl Into<OsString>,
    policy: Arc<TestPolicy>,
) -> Outcome {
    run_with_env(setup, dir, script, &[], policy)
}

/// [`run`] with these variables added to the shell's environment.
pub fn run_with_env(
    setup: &ShellSetup,
    dir: &Path,
    script: impl Into<OsString>,
    env: &[(&str, &OsStr)],
    policy: Arc<TestPolicy>,
) -> Outcome {
    let seen = Arc::clone(&policy);
    runtime().block_on(run_async(
        setup,
        dir,
        script.into(),
        env,
        policy,
        &|builder| builder,
        &move || seen.seen(),
    ))
}

/// [`run`] with `configure` applied to the session builder last.
pub fn run_configured(
    setup: &ShellSetup,
    dir: &Path,
    script: impl Into<OsString>,
    policy: Arc<TestPolicy>,
    configure: Configure<'_>,
) -> Outcome {
    let seen = Arc::clone(&policy);
    runtime().block_on(run_async(
        setup,
        dir,
        script.into(),
        &[],
        policy,
        configure,
        &move || seen.seen(),
    ))
}

/// [`run_configured`] under a policy of the test's own (the outcome's `seen` is empty).
pub fn run_under(
    setup: &ShellSetup,
    dir: &Path,
    script: impl Into<OsString>,
    policy: Arc<dyn EscalationPolicy<Note = ()>>,
    configure: Configure<'_>,
) -> Outcome {
    runtime().block_on(run_async(
        setup,
        dir,
        script.into(),
        &[],
        policy,
        configure,
        &Vec::new,
    ))
}

async fn run_async(
    setup: &ShellSetup,
    dir: &Path,
    script: OsString,
    env: &[(&str, &OsStr)],
    policy: Arc<dyn EscalationPolicy<Note = ()>>,
    configure: Configure<'_>,
    seen: &dyn Fn() -> Vec<Seen>,
) -> Outcome {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut session = start_configured(setup, dir, script, env, policy, tx, configure);
    let mut out = session.take_stdout().unwrap();
    let mut err = session.take_stderr().unwrap();
    let stdout = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf).await;
        buf
    });
    let stderr = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf).await;
        buf
    });
    let status = match tokio::time::timeout(Duration::from_secs(60), session.wait()).await {
        Ok(status) => status.unwrap(),
        Err(_) => {
            session.kill();
            let status = session.wait().await.unwrap();
            drop(session);
            panic!(
                "[{}] script timed out ({status:?}); stdout so far:\n{}\nstderr:\n{}",
                setup.name,
                String::from_utf8_lossy(&stdout.await.unwrap()),
                String::from_utf8_lossy(&stderr.await.unwrap()),
            );
        }
    };
    let interrupted = session.interrupted();
    // Output pipes close once every writer (shell, escalated processes) is gone.
    drop(session);
    let stdout = stdout.await.unwrap();
    let stderr = stderr.await.unwrap();
    let mut events = Vec::new();
    while let Ok(event) = rx.try_recv() {
        events.push(event);
    }
    Outcome {
        setup: setup.name.to_string(),
        status,
        stdout,
        stderr,
        events,
        interrupted,
        seen: seen(),
    }
}
