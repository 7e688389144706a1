//! Running scripts in intercepted shells for end-to-end tests: the shell setups under test,
//! a deterministic recording policy, and a runner that captures output and exec events.

#![allow(dead_code)] // each test binary uses its own subset of these helpers

use execgate_escalate_server::{
    async_trait, EscalationPolicy, ExecContext, ExecEvent, ExecRequest, Interception, Session,
    SessionBuilder, Verdict,
};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// The wrapper binary built by this package.
pub fn wrapper() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_execgate-execve-wrapper"))
}

/// One way of running an intercepted shell.
#[derive(Debug, Clone)]
pub struct ShellSetup {
    /// Name shown in failures.
    pub name: &'static str,
    /// The shell binary.
    pub shell: PathBuf,
    /// Arguments before `-c SCRIPT`.
    pub args: Vec<OsString>,
    /// How execs reach the server.
    pub interception: Interception,
    /// Whether the shell has `<(...)`.
    pub process_substitution: bool,
}

impl ShellSetup {
    fn patched(name: &'static str, shell: PathBuf, args: &[&str]) -> Self {
        Self {
            name,
            shell,
            args: args.iter().map(OsString::from).collect(),
            interception: Interception::PatchedShell { wrapper: wrapper() },
            process_substitution: true,
        }
    }
}

/// Every shell setup the transport must work with. Adding the preload-shim setups (Debian
/// bash, dash and zsh with `libexecgate_preload.so`) is one line each here.
pub fn setups() -> Vec<ShellSetup> {
    let mut setups = vec![
        ShellSetup::patched("patched zsh", super::shells::patched_zsh(), &["-f"]),
        ShellSetup::patched(
            "patched bash",
            super::shells::patched_bash(),
            &["--norc", "--noprofile"],
        ),
    ];
    setups.extend(super::preload::preload_setups());
    setups
}

/// One request the policy saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request as sent.
    pub request: ExecRequest,
    /// The resolved program.
    pub program: PathBuf,
}

impl Seen {
    /// argv as lossy strings, for readable assertions.
    pub fn argv(&self) -> Vec<String> {
        self.request
            .argv
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }
}

/// A deterministic policy: Escalate programs whose basename is in `escalate` (or whose
/// argv holds `@escalate`), Deny those in `deny` (or with `@deny`) with reason
/// `test policy says no`, interrupt the session on `@interrupt`, Run everything else.
/// Records every request.
#[derive(Debug, Default)]
pub struct TestPolicy {
    pub escalate: Vec<String>,
    pub deny: Vec<String>,
    pub escalate_all: bool,
    pub seen: Mutex<Vec<Seen>>,
}

impl TestPolicy {
    /// Runs everything.
    pub fn run_all() -> Self {
        Self::default()
    }

    /// Escalates the programs with these basenames.
    pub fn escalating(names: &[&str]) -> Self {
        Self {
            escalate: names.iter().map(|s| s.to_string()).collect(),
            ..Self::default()
        }
    }

    /// Escalates every exec.
    pub fn escalate_all() -> Self {
        Self {
            escalate_all: true,
            ..Self::default()
        }
    }

    /// Everything the policy saw so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn basename(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[async_trait]
impl EscalationPolicy for TestPolicy {
    async fn decide(&self, exec: &ExecContext) -> Verdict {
        self.seen.lock().unwrap().push(Seen {
            request: (*exec.request).clone(),
            program: exec.program.clone(),
        });
        let has = |marker: &[u8]| exec.request.argv.iter().any(|a| a == marker);
        let requested = Path::new(std::ffi::OsStr::from_bytes(&exec.request.program));
        let names = [basename(&exec.program), basename(requested)];
        let named = |list: &[String]| names.iter().any(|n| list.contains(n));
        if has(b"@interrupt") {
            exec.session.interrupt("test policy interrupts");
            return Verdict::Deny {
                reason: b"interrupted".to_vec(),
            };
        }
        if has(b"@deny") || named(&self.deny) {
            return Verdict::Deny {
                reason: b"test policy says no".to_vec(),
            };
        }
        if self.escalate_all || has(b"@escalate") || named(&self.escalate) {
            return Verdict::Escalate;
        }
        Verdict::Run
    }
}

use std::os::unix::ffi::OsStrExt;

/// What a script run produced.
#[derive(Debug)]
pub struct Outcome {
    pub setup: String,
    pub status: std::process::ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub events: Vec<ExecEvent>,
    pub interrupted: Option<String>,
}

impl Outcome {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    pub fn code(&self) -> Option<i32> {
        self.status.code()
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

/// Starts `script` in `setup` (cwd `dir`, PATH=/usr/bin:/bin, stdin null, stdout and stderr
/// piped). The caller drives the session.
pub fn start(
    setup: &ShellSetup,
    dir: &Path,
    script: impl Into<OsString>,
    policy: Arc<dyn EscalationPolicy>,
    events: mpsc::UnboundedSender<ExecEvent>,
) -> Session {
    SessionBuilder::new(&setup.shell, setup.interception.clone())
        .args(setup.args.iter().cloned())
        .arg("-c")
        .arg(script)
        .cwd(dir)
        .env("PATH", "/usr/bin:/bin")
        .env_remove("BASH_ENV")
        .env_remove("ENV")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .events(events)
        .spawn(policy)
        .unwrap_or_else(|e| panic!("[{}] {e}", setup.name))
}

/// Runs `script` to completion (60 s at most) and collects what happened.
pub fn run(
    setup: &ShellSetup,
    dir: &Path,
    script: impl Into<OsString>,
    policy: Arc<dyn EscalationPolicy>,
) -> Outcome {
    runtime().block_on(run_async(setup, dir, script.into(), policy))
}

async fn run_async(
    setup: &ShellSetup,
    dir: &Path,
    script: OsString,
    policy: Arc<dyn EscalationPolicy>,
) -> Outcome {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut session = start(setup, dir, script, policy, tx);
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
    }
}

/// Open fds of this process.
pub fn open_fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Zombie children of this process.
pub fn zombie_children() -> Vec<i32> {
    let me = std::process::id().to_string();
    let mut zombies = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
        let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
            continue;
        };
        let mut fields = rest.split(' ');
        let state = fields.next().unwrap_or("");
        let ppid = fields.next().unwrap_or("");
        if state == "Z" && ppid == me {
            zombies.push(pid);
        }
    }
    zombies
}
