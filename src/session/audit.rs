//! The audit log (`--audit-log FILE`): one JSON line per moment of an exec's life.

use crate::report::{ExecRecord, NetworkRecord};
use anyhow::Context;
use serde::Serialize;
use std::io::Write;
use std::path::Path;

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

/// One audit-log line of a connection the network gate decided.
#[derive(Serialize)]
struct NetworkLine<'a> {
    session: &'a str,
    /// Always `network`.
    event: &'static str,
    #[serde(flatten)]
    record: &'a NetworkRecord,
}

/// Appends complete JSON lines (one `write` each, to a file opened for appending, so a
/// crash never leaves half a line).
pub struct AuditLog {
    file: std::fs::File,
    session: String,
}

impl AuditLog {
    /// Opens (or creates) `path` for appending lines of session `session`.
    pub fn open(path: &Path, session: String) -> anyhow::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the audit log {}", path.display()))?;
        Ok(Self { file, session })
    }

    /// Appends the line of one decided connection (when it ended; a refused one at once).
    pub fn write_network(&mut self, record: &NetworkRecord) {
        let line = NetworkLine {
            session: &self.session,
            event: "network",
            record,
        };
        append(&mut self.file, &line);
    }

    /// Appends the line for `record` at moment `event`. A failed write is logged, not
    /// fatal: the session goes on.
    pub fn write(&mut self, event: &'static str, record: &ExecRecord) {
        let line = AuditLine {
            session: &self.session,
            event,
            record,
        };
        append(&mut self.file, &line);
    }
}

/// Appends one line (one `write`).
fn append(file: &mut std::fs::File, line: &impl Serialize) {
    if let Ok(mut text) = serde_json::to_vec(line) {
        text.push(b'\n');
        if let Err(err) = file.write_all(&text) {
            tracing::warn!("cannot write the audit log: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::read::{read_audit_log, AuditEntry, AuditExec};
    use execgate_decide::{Note, Source};
    use execgate_escalate_server::Verdict;
    use execgate_execpolicy::Decision;

    #[test]
    fn what_the_audit_log_writes_policy_suggest_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut log = AuditLog::open(&path, "s1".into()).unwrap();
        let mut record = ExecRecord::decided(
            3,
            b"/usr/bin/git",
            &[b"git".to_vec(), vec![0xff]],
            b"/w",
            Verdict::Escalate,
            Some(Note {
                decision: Some(Decision::Prompt),
                source: Source::User,
                rule: Some("/r/default.rules:2".into()),
                justification: None,
                downgraded: None,
            }),
        );
        log.write("decided", &record);
        record.exit_code = Some(0);
        log.write("exited", &record);
        let text = std::fs::read(&path).unwrap();
        let entries = read_audit_log(text.as_slice(), "audit.jsonl").unwrap();
        let exec = |event: &str| {
            AuditEntry::Exec(AuditExec {
                session: "s1".into(),
                event: event.into(),
                program: "/usr/bin/git".into(),
                argv: vec!["git".into(), "\u{fffd}".into()],
                decision: "prompt".into(),
                verdict: "escalate".into(),
                source: "user".into(),
                rule: Some("/r/default.rules:2".into()),
                raw: Some(serde_json::json!({
                    "program": b"/usr/bin/git",
                    "argv": [b"git", [0xff]],
                    "cwd": b"/w",
                })),
            })
        };
        assert_eq!(entries, vec![exec("decided"), exec("exited")]);
    }
}
