//! The records `execgate run --json`, the audit log and the MCP tool report: one
//! [`ExecRecord`] per intercepted exec, and one [`RunReport`] per session.

use serde::Serialize;

/// What the rules said about a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyDecision {
    /// A rule allowed it.
    Allow,
    /// A rule asked for approval.
    Prompt,
    /// A rule forbade it.
    Forbidden,
    /// No rule matched.
    Unmatched,
}

/// What happened to the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VerdictKind {
    /// Executed in place, inside the sandbox.
    Run,
    /// Executed by the server, outside the sandbox.
    Escalate,
    /// Not executed.
    Deny,
}

/// Who settled the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictSource {
    /// The rules (or the absence of a matching rule).
    Policy,
    /// A `PermissionRequest` hook.
    Hook,
    /// A person (or the absence of one to ask).
    User,
    /// The approval mode (`never` turns prompts into denials).
    ApprovalMode,
}

/// One intercepted exec.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecRecord {
    /// Sequence number within the session, from 0.
    pub id: u64,
    /// Absolute, canonical program path (lossy UTF-8; see `raw` for the exact bytes).
    pub program: String,
    /// argv, `argv[0]` included (lossy UTF-8; see `raw`).
    pub argv: Vec<String>,
    /// Working directory (lossy UTF-8; see `raw`).
    pub cwd: String,
    /// What the rules said.
    pub decision: PolicyDecision,
    /// What happened.
    pub verdict: VerdictKind,
    /// Who settled it.
    pub source: VerdictSource,
    /// Where the deciding rule is written (`file:line`), if a rule decided.
    pub rule: Option<String>,
    /// The rule's justification, or the hook's / approver's reason for a denial.
    pub justification: Option<String>,
    /// Exit code of an escalated command (128+N when killed by signal N); `null` for
    /// commands run in place (they replace the wrapper, so the server never sees their
    /// status), denied ones get 126.
    pub exit_code: Option<i32>,
    /// Time from the request to the verdict (run/deny) or to the escalated command's exit.
    pub duration_ms: u64,
    /// The exact bytes, present only when one of program, argv or cwd is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<RawBytes>,
}

/// Byte-exact program, argv and cwd, for records whose text had to be made lossy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RawBytes {
    /// Program path bytes.
    pub program: Vec<u8>,
    /// argv bytes.
    pub argv: Vec<Vec<u8>>,
    /// cwd bytes.
    pub cwd: Vec<u8>,
}

impl ExecRecord {
    /// Fills the text fields from raw bytes, adding `raw` when any is not UTF-8.
    pub fn text_fields(
        program: &[u8],
        argv: &[Vec<u8>],
        cwd: &[u8],
    ) -> (String, Vec<String>, String, Option<RawBytes>) {
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let exact = std::str::from_utf8(program).is_ok()
            && std::str::from_utf8(cwd).is_ok()
            && argv.iter().all(|a| std::str::from_utf8(a).is_ok());
        let raw = (!exact).then(|| RawBytes {
            program: program.to_vec(),
            argv: argv.to_vec(),
            cwd: cwd.to_vec(),
        });
        (
            lossy(program),
            argv.iter().map(|a| lossy(a)).collect(),
            lossy(cwd),
            raw,
        )
    }
}

/// The result of one session (`run --json`, the MCP tool's structured content).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// The shell's exit code (130 when interrupted, 124 on timeout); `null` if it died by a
    /// signal.
    pub exit_code: Option<i32>,
    /// The signal that killed the shell, if one did.
    pub signal: Option<i32>,
    /// Captured standard output (lossy UTF-8).
    pub stdout: String,
    /// Captured standard error (lossy UTF-8).
    pub stderr: String,
    /// Whether the session hit its timeout.
    pub timed_out: bool,
    /// Whether a hook or a person ended the session.
    pub interrupted: bool,
    /// Every intercepted exec, in the order they were requested.
    pub execs: Vec<ExecRecord>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_serializes_with_the_design_field_names() {
        let (program, argv, cwd, raw) =
            ExecRecord::text_fields(b"/usr/bin/git", &[b"git".to_vec(), b"push".to_vec()], b"/w");
        let record = ExecRecord {
            id: 1,
            program,
            argv,
            cwd,
            decision: PolicyDecision::Prompt,
            verdict: VerdictKind::Escalate,
            source: VerdictSource::ApprovalMode,
            rule: Some("/r/default.rules:2".into()),
            justification: None,
            exit_code: Some(0),
            duration_ms: 5,
            raw,
        };
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": 1, "program": "/usr/bin/git", "argv": ["git", "push"], "cwd": "/w",
                "decision": "prompt", "verdict": "escalate", "source": "approval-mode",
                "rule": "/r/default.rules:2", "justification": null, "exit_code": 0,
                "duration_ms": 5
            })
        );
    }

    #[test]
    fn non_utf8_fields_keep_their_exact_bytes() {
        let (_, argv, _, raw) =
            ExecRecord::text_fields(b"/bin/echo", &[b"echo".to_vec(), vec![0xff]], b"/");
        assert_eq!(argv[1], "\u{fffd}");
        assert_eq!(raw.unwrap().argv[1], vec![0xff]);
    }
}
