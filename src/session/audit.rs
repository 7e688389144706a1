//! The audit log (`--audit-log FILE`): one JSON line per moment of an exec's life.

use crate::report::ExecRecord;
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

    /// Appends the line for `record` at moment `event`. A failed write is logged, not
    /// fatal: the session goes on.
    pub fn write(&mut self, event: &'static str, record: &ExecRecord) {
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
