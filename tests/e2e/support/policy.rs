//! The deterministic policy end-to-end sessions run under: it decides from the request
//! alone, so a script says in its own argv what should happen to each command.

use execgate_escalate_server::{
    async_trait, EscalationPolicy, ExecContext, ExecRequest, Ruling, Verdict,
};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why [`TestPolicy`] denies.
pub const DENY_REASON: &str = "test policy says no";

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

/// Decides each exec from its argv and program name, in this order, and records every
/// request:
/// - an argument `@interrupt`: denies and ends the session;
/// - an argument `@deny`, or a first argument `forbidden`: Deny with [`DENY_REASON`];
/// - an argument `@escalate` or `escalate-me`, or a program (requested or resolved) whose
///   basename is in the escalate list: Escalate;
/// - anything else: Run.
#[derive(Debug, Default)]
pub struct TestPolicy {
    escalate: Vec<String>,
    seen: Mutex<Vec<Seen>>,
}

impl TestPolicy {
    /// Runs everything not marked otherwise.
    pub fn run_all() -> Self {
        Self::default()
    }

    /// Also escalates the programs with these basenames.
    pub fn escalating(names: &[&str]) -> Self {
        Self {
            escalate: names.iter().map(|s| s.to_string()).collect(),
            ..Self::default()
        }
    }

    /// Everything the policy saw so far, in arrival order.
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
    type Note = ();

    async fn decide(&self, exec: &ExecContext) -> Ruling {
        self.seen.lock().unwrap().push(Seen {
            request: (*exec.request).clone(),
            program: exec.program.clone(),
        });
        let argv = &exec.request.argv;
        let has = |marker: &[u8]| argv.iter().any(|a| a == marker);
        let requested = Path::new(OsStr::from_bytes(&exec.request.program));
        let names = [basename(&exec.program), basename(requested)];
        if has(b"@interrupt") {
            return Ruling::from(Verdict::Deny {
                reason: b"interrupted".to_vec(),
            })
            .ending_session("test policy interrupts");
        }
        if has(b"@deny") || argv.get(1).is_some_and(|a| a == b"forbidden") {
            return Verdict::Deny {
                reason: DENY_REASON.into(),
            }
            .into();
        }
        if has(b"@escalate")
            || has(b"escalate-me")
            || names.iter().any(|n| self.escalate.contains(n))
        {
            return Verdict::Escalate.into();
        }
        Verdict::Run.into()
    }
}
