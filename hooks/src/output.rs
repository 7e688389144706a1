//! Turning one finished handler process into a run report and, maybe, a decision.
//!
//! The rules and the message texts are Codex's, so that a hook behaves and reads the same
//! under both. A handler that fails in any way never decides.

use crate::runner::RunResult;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a handler decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HookDecision {
    /// Approve the command.
    Allow,
    /// Refuse the command.
    Deny,
}

/// How a handler run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HookRunStatus {
    /// Ran fine (it may or may not have allowed).
    Completed,
    /// Did not run properly or said something invalid; it decided nothing.
    Failed,
    /// Denied the command.
    Blocked,
}

impl HookRunStatus {
    /// The status as written in reports (`completed`, `failed`, `blocked`).
    pub fn as_str(self) -> &'static str {
        match self {
            HookRunStatus::Completed => "completed",
            HookRunStatus::Failed => "failed",
            HookRunStatus::Blocked => "blocked",
        }
    }
}

/// The kind of a line a handler run reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HookOutputEntryKind {
    /// Something to show the user (`systemMessage`, output cut at the cap).
    Warning,
    /// Why the run failed.
    Error,
    /// The denial message.
    Feedback,
}

impl HookOutputEntryKind {
    /// The kind as written in reports (`warning`, `error`, `feedback`).
    pub fn as_str(self) -> &'static str {
        match self {
            HookOutputEntryKind::Warning => "warning",
            HookOutputEntryKind::Error => "error",
            HookOutputEntryKind::Feedback => "feedback",
        }
    }
}

/// One line a handler run reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookOutputEntry {
    /// What kind of line it is.
    pub kind: HookOutputEntryKind,
    /// The text.
    pub text: String,
}

/// A handler's decision with its details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub decision: HookDecision,
    /// The denial message (always set for a deny).
    pub message: Option<String>,
    /// Deny and end the whole session.
    pub interrupt: bool,
}

/// The report of one handler run, before it is tied to its handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub status: HookRunStatus,
    pub entries: Vec<HookOutputEntry>,
    pub verdict: Option<Verdict>,
}

/// The denial message when a JSON deny gives none.
pub(crate) const DEFAULT_DENY_MESSAGE: &str = "PermissionRequest hook denied approval";

pub(crate) fn parse_run(result: RunResult) -> Parsed {
    let mut entries = result.notes;
    let failed = |mut entries: Vec<HookOutputEntry>, text: String| {
        entries.push(entry(HookOutputEntryKind::Error, text));
        Parsed {
            status: HookRunStatus::Failed,
            entries,
            verdict: None,
        }
    };
    if let Some(error) = result.error {
        return failed(entries, error);
    }
    match result.exit_code {
        Some(0) => {
            let stdout = String::from_utf8_lossy(&result.stdout);
            if stdout.trim().is_empty() {
                return completed(entries, None);
            }
            match parse_json_output(&stdout) {
                Some(output) => {
                    if let Some(message) = output.system_message {
                        entries.push(entry(HookOutputEntryKind::Warning, message));
                    }
                    match output.result {
                        Err(invalid) => failed(entries, invalid),
                        Ok(None) => completed(entries, None),
                        Ok(Some(verdict)) => decided(entries, verdict),
                    }
                }
                None if looks_like_json(&stdout) => failed(
                    entries,
                    "hook returned invalid permission-request JSON output".to_owned(),
                ),
                None => completed(entries, None),
            }
        }
        Some(2) => {
            let stderr = String::from_utf8_lossy(&result.stderr);
            let message = stderr.trim();
            if message.is_empty() {
                failed(
                    entries,
                    "PermissionRequest hook exited with code 2 but did not write a denial reason to stderr"
                        .to_owned(),
                )
            } else {
                decided(
                    entries,
                    Verdict {
                        decision: HookDecision::Deny,
                        message: Some(message.to_owned()),
                        interrupt: false,
                    },
                )
            }
        }
        Some(code) => failed(entries, format!("hook exited with code {code}")),
        None => failed(entries, "hook exited without a status code".to_owned()),
    }
}

fn entry(kind: HookOutputEntryKind, text: String) -> HookOutputEntry {
    HookOutputEntry { kind, text }
}

fn completed(entries: Vec<HookOutputEntry>, verdict: Option<Verdict>) -> Parsed {
    Parsed {
        status: HookRunStatus::Completed,
        entries,
        verdict,
    }
}

fn decided(mut entries: Vec<HookOutputEntry>, verdict: Verdict) -> Parsed {
    match verdict.decision {
        HookDecision::Allow => completed(entries, Some(verdict)),
        HookDecision::Deny => {
            let message = verdict.message.clone().unwrap_or_default();
            entries.push(entry(HookOutputEntryKind::Feedback, message));
            Parsed {
                status: HookRunStatus::Blocked,
                entries,
                verdict: Some(verdict),
            }
        }
    }
}

/// Whether text that failed to parse was meant as JSON.
fn looks_like_json(stdout: &str) -> bool {
    let start = stdout.trim_start();
    start.starts_with('{') || start.starts_with('[')
}

struct JsonOutput {
    system_message: Option<String>,
    /// `Err` holds why a well-formed object is still invalid.
    result: Result<Option<Verdict>, String>,
}

/// Parses stdout as the PermissionRequest output object; `None` when it is not valid JSON,
/// not an object, or not of the schema (an unknown field anywhere, a wrong type).
fn parse_json_output(stdout: &str) -> Option<JsonOutput> {
    let value: Value = serde_json::from_str(stdout.trim()).ok()?;
    if !value.is_object() {
        return None;
    }
    let wire: OutputWire = serde_json::from_value(value).ok()?;
    let decision = wire.hook_specific_output.and_then(|o| o.decision);
    let invalid = if !wire.continue_processing {
        Some("continue:false")
    } else if wire.stop_reason.is_some() {
        Some("stopReason")
    } else if wire.suppress_output {
        Some("suppressOutput")
    } else if let Some(decision) = &decision {
        if decision.updated_input.is_some() {
            Some("updatedInput")
        } else if decision.updated_permissions.is_some() {
            Some("updatedPermissions")
        } else if decision.interrupt && decision.behavior == BehaviorWire::Allow {
            Some("interrupt:true")
        } else {
            None
        }
    } else {
        None
    };
    let result = match invalid {
        Some(field) => Err(format!(
            "PermissionRequest hook returned unsupported {field}"
        )),
        None => Ok(decision.map(|d| match d.behavior {
            BehaviorWire::Allow => Verdict {
                decision: HookDecision::Allow,
                message: None,
                interrupt: false,
            },
            BehaviorWire::Deny => Verdict {
                decision: HookDecision::Deny,
                message: Some(
                    d.message
                        .as_deref()
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .unwrap_or(DEFAULT_DENY_MESSAGE)
                        .to_owned(),
                ),
                interrupt: d.interrupt,
            },
        })),
    };
    Some(JsonOutput {
        system_message: wire.system_message,
        result,
    })
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OutputWire {
    #[serde(rename = "continue", default = "yes")]
    continue_processing: bool,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    suppress_output: bool,
    #[serde(default)]
    system_message: Option<String>,
    #[serde(default)]
    hook_specific_output: Option<SpecificWire>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SpecificWire {
    // Codex accepts any known event name here; it is checked, then not used.
    #[allow(dead_code)]
    hook_event_name: EventNameWire,
    #[serde(default)]
    decision: Option<DecisionWire>,
}

#[derive(Deserialize)]
enum EventNameWire {
    PreToolUse,
    PermissionRequest,
    PostToolUse,
    SessionStart,
    UserPromptSubmit,
    Stop,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DecisionWire {
    behavior: BehaviorWire,
    #[serde(default)]
    updated_input: Option<Value>,
    #[serde(default)]
    updated_permissions: Option<Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    interrupt: bool,
}

#[derive(Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum BehaviorWire {
    Allow,
    Deny,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: i32, stdout: &str, stderr: &str) -> RunResult {
        RunResult {
            exit_code: Some(code),
            stdout: stdout.as_bytes().to_vec(),
            stderr: stderr.as_bytes().to_vec(),
            error: None,
            notes: Vec::new(),
        }
    }

    fn error(text: &str) -> HookOutputEntry {
        entry(HookOutputEntryKind::Error, text.to_owned())
    }

    fn invalid(stdout: &str) -> Parsed {
        parse_run(exited(0, stdout, ""))
    }

    #[test]
    fn unknown_field_at_any_depth_makes_output_invalid() {
        for stdout in [
            r#"{"extra":1}"#,
            r#"{"hookSpecificOutput":{"hookEventName":"PermissionRequest","extra":1}}"#,
            r#"{"hookSpecificOutput":{"hookEventName":"PermissionRequest","decision":{"behavior":"allow","extra":1}}}"#,
        ] {
            let parsed = invalid(stdout);
            assert_eq!(parsed.status, HookRunStatus::Failed, "{stdout}");
            assert_eq!(
                parsed.entries,
                vec![error(
                    "hook returned invalid permission-request JSON output"
                )]
            );
            assert_eq!(parsed.verdict, None);
        }
    }

    #[test]
    fn wrong_types_and_unknown_values_make_output_invalid() {
        for stdout in [
            r#"{"continue":"yes"}"#,
            r#"{"hookSpecificOutput":{"decision":{"behavior":"allow"}}}"#,
            r#"{"hookSpecificOutput":{"hookEventName":"Nope"}}"#,
            r#"{"hookSpecificOutput":{"hookEventName":"PermissionRequest","decision":{"behavior":"ask"}}}"#,
            r#"[1, 2]"#,
            r#"{"unterminated": "#,
        ] {
            assert_eq!(invalid(stdout).status, HookRunStatus::Failed, "{stdout}");
        }
    }

    #[test]
    fn each_unsupported_field_is_named_in_the_error() {
        let cases = [
            (r#"{"continue":false}"#, "continue:false"),
            (r#"{"stopReason":"x"}"#, "stopReason"),
            (r#"{"suppressOutput":true}"#, "suppressOutput"),
            (
                r#"{"hookSpecificOutput":{"hookEventName":"PermissionRequest","decision":{"behavior":"allow","updatedInput":{}}}}"#,
                "updatedInput",
            ),
            (
                r#"{"hookSpecificOutput":{"hookEventName":"PermissionRequest","decision":{"behavior":"deny","updatedPermissions":[]}}}"#,
                "updatedPermissions",
            ),
            (
                r#"{"hookSpecificOutput":{"hookEventName":"PermissionRequest","decision":{"behavior":"allow","interrupt":true}}}"#,
                "interrupt:true",
            ),
        ];
        for (stdout, field) in cases {
            let parsed = invalid(stdout);
            assert_eq!(parsed.status, HookRunStatus::Failed, "{stdout}");
            assert_eq!(
                parsed.entries,
                vec![error(&format!(
                    "PermissionRequest hook returned unsupported {field}"
                ))]
            );
            assert_eq!(parsed.verdict, None);
        }
    }

    #[test]
    fn null_reserved_fields_count_as_absent() {
        let parsed = invalid(
            r#"{"stopReason":null,"hookSpecificOutput":{"hookEventName":"PermissionRequest","decision":{"behavior":"allow","updatedInput":null}}}"#,
        );
        assert_eq!(parsed.status, HookRunStatus::Completed);
        assert_eq!(
            parsed.verdict.map(|v| v.decision),
            Some(HookDecision::Allow)
        );
    }

    #[test]
    fn system_message_is_a_warning_even_when_output_is_invalid() {
        let parsed = invalid(r#"{"systemMessage":"heads up","continue":false}"#);
        assert_eq!(
            parsed.entries,
            vec![
                entry(HookOutputEntryKind::Warning, "heads up".into()),
                error("PermissionRequest hook returned unsupported continue:false"),
            ]
        );
    }

    #[test]
    fn deny_without_message_gets_the_default_message() {
        let parsed = invalid(
            r#"{"hookSpecificOutput":{"hookEventName":"PermissionRequest","decision":{"behavior":"deny","message":"   "}}}"#,
        );
        assert_eq!(parsed.status, HookRunStatus::Blocked);
        assert_eq!(
            parsed.verdict.unwrap().message.as_deref(),
            Some(DEFAULT_DENY_MESSAGE)
        );
    }

    #[test]
    fn json_that_is_not_an_object_or_array_is_plain_text() {
        let parsed = invalid("\"just a string\"");
        assert_eq!(parsed.status, HookRunStatus::Completed);
        assert!(parsed.entries.is_empty());
    }
}
