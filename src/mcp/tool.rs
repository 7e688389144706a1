//! The `shell` tool: its name, arguments and schema (Codex's, plus `justification`), checks
//! on its arguments, and the result a finished call returns.

use super::{output, summary};
use crate::report::{ExecRecord, RunReport};
use crate::session::RunOutcome;
use execgate_escalate_server::Verdict;
use execgate_protocol::display;
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The tool's name (Codex's).
pub const TOOL_NAME: &str = "shell";
/// Timeout of a call that names none (Codex's default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(10_000);

/// The `shell` tool's arguments.
#[derive(Debug, Deserialize)]
pub struct ShellArgs {
    /// Shell code to run.
    pub command: String,
    /// Absolute path of the folder to run it in.
    pub workdir: String,
    /// Kill the call after this long (default [`DEFAULT_TIMEOUT`]).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Run a login shell (default true).
    #[serde(default)]
    pub login: Option<bool>,
    /// Why the agent runs the command (model-written): hooks get it as
    /// `tool_input.description`, and a person asked to approve sees it escaped.
    #[serde(default)]
    pub justification: Option<String>,
}

/// Codex's result text.
#[derive(Debug, Serialize)]
struct CodexResult {
    exit_code: i32,
    output: String,
    duration: Duration,
    timed_out: bool,
}

/// The `shell` tool's description and input schema (Codex's arguments).
pub fn shell_tool() -> Tool {
    let schema = json!({
        "type": "object",
        "properties": {
            "command": {
                "type": "string",
                "description": "Shell code to run."
            },
            "workdir": {
                "type": "string",
                "description": "Absolute path of the folder to run the command in."
            },
            "timeout_ms": {
                "type": ["integer", "null"],
                "minimum": 0,
                "description": "Kill the command after this many milliseconds (default 10000; time spent waiting for an approval is not counted)."
            },
            "login": {
                "type": ["boolean", "null"],
                "description": "Run the shell as a login shell (-lc) rather than -c. Default true."
            },
            "justification": {
                "type": ["string", "null"],
                "description": "Why this command is needed, in one sentence: shown to the person asked to approve a command and passed to approval hooks."
            }
        },
        "required": ["command", "workdir"]
    });
    let schema: JsonObject = match schema {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    };
    Tool::new(
        TOOL_NAME,
        "Runs a shell command in a sandbox, with every program it starts checked against \
         execgate's rules, and returns its output. workdir must be an absolute path.",
        Arc::new(schema),
    )
}

/// The tool result of a finished call: Codex's text (output capped at about `max` bytes)
/// and, as structured content (what Codex and Claude Code hand the model), a summary of
/// the `run --json` object within `max` bytes as a whole.
pub fn result(outcome: RunOutcome, max: usize) -> CallToolResult {
    let RunOutcome {
        mut report,
        mut combined,
        duration,
    } = outcome;
    if report.interrupted {
        for line in unprinted_denials(&report) {
            report.stderr.push_str(&line);
            combined.extend_from_slice(line.as_bytes());
        }
    }
    let codex = CodexResult {
        exit_code: exit_code(&report),
        output: output::cap(&String::from_utf8_lossy(&combined), max),
        duration,
        timed_out: report.timed_out,
    };
    let text = serde_json::to_string(&codex).unwrap_or_default();
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(summary::summarize(&report, max));
    result
}

/// The denial lines of a session that was ended (a hook, a person or the client ended it)
/// that are not in its stderr: the denial that ended it comes with the order to kill the
/// shell, and its wrapper may be killed before it prints the line. Each line is the one the
/// wrapper prints; it counts as printed when stderr has a denial line with the same reason.
fn unprinted_denials(report: &RunReport) -> Vec<String> {
    let mut lines = Vec::new();
    for record in &report.execs {
        let Verdict::Deny { reason } = &record.verdict else {
            continue;
        };
        let ending = format!(": {}", String::from_utf8_lossy(reason));
        let printed = report
            .stderr
            .lines()
            .any(|l| l.starts_with("execgate: denied: ") && l.ends_with(&ending));
        if !printed {
            lines.push(denial_line(record, reason));
        }
    }
    lines
}

/// `execgate: denied: <command>: <reason>` and a newline, as the wrapper prints it.
fn denial_line(record: &ExecRecord, reason: &[u8]) -> String {
    let (program, argv): (&[u8], Vec<&[u8]>) = match &record.raw {
        Some(raw) => (&raw.program, raw.argv.iter().map(Vec::as_slice).collect()),
        None => (
            record.program.as_bytes(),
            record.argv.iter().map(String::as_bytes).collect(),
        ),
    };
    let mut line = Vec::new();
    let Ok(()) = display::denial(program, argv.iter().skip(1).copied(), reason, &mut line);
    line.push(b'\n');
    String::from_utf8_lossy(&line).into_owned()
}

/// The Codex `exit_code`: the shell's, else 128+signal, else -1.
fn exit_code(report: &RunReport) -> i32 {
    match (report.exit_code, report.signal) {
        (Some(code), _) => code,
        (None, Some(signo)) => 128 + signo,
        (None, None) => -1,
    }
}

/// A tool error (`isError: true`) with `message`.
pub fn tool_error(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

/// Checks that `workdir` is an absolute path to an existing folder; returns it canonical.
pub fn check_workdir(workdir: &str) -> Result<PathBuf, String> {
    let path = Path::new(workdir);
    if !path.is_absolute() {
        return Err(format!("workdir must be an absolute path, got {workdir:?}"));
    }
    let canonical = path
        .canonicalize()
        .map_err(|e| format!("workdir {workdir} cannot be used: {e}"))?;
    if !canonical.is_dir() {
        return Err(format!("workdir {workdir} is not a directory"));
    }
    Ok(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workdir_must_be_an_existing_absolute_folder() {
        assert!(check_workdir("relative/dir")
            .unwrap_err()
            .contains("must be an absolute path"));
        assert!(check_workdir("/no/such/folder/here")
            .unwrap_err()
            .contains("cannot be used"));
        assert_eq!(check_workdir("/").unwrap(), PathBuf::from("/"));
    }

    #[test]
    fn codex_result_serializes_duration_as_secs_and_nanos() {
        let text = serde_json::to_value(CodexResult {
            exit_code: 0,
            output: "hi\n".into(),
            duration: Duration::new(1, 5),
            timed_out: false,
        })
        .unwrap();
        assert_eq!(
            text,
            json!({"exit_code": 0, "output": "hi\n", "duration": {"secs": 1, "nanos": 5}, "timed_out": false})
        );
    }
}
