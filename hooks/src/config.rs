//! Loading hooks.json files (which files apply where is the decide crate's `layers`).
//!
//! The file format is Codex's: `{"hooks": {EVENT: [{"matcher": ..., "hooks": [HANDLER, ...]}]}}`.
//! A file that cannot be read or parsed is an error (the caller refuses to start rather
//! than run without the user's hooks); problems confined to one group or handler are
//! warnings, and that group or handler is skipped.

use crate::matcher::Matcher;
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The default handler timeout, in seconds, when a handler gives none.
pub const DEFAULT_TIMEOUT_SEC: u64 = 600;

/// The hook events a hooks.json file may configure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HookEvent {
    /// Before a tool runs (parsed and kept; not run by execgate yet).
    PreToolUse,
    /// When a command needs approval: the event execgate runs.
    PermissionRequest,
    /// After a tool ran (parsed and kept; not run by execgate yet).
    PostToolUse,
    /// When a session starts (parsed and kept; not run by execgate yet).
    SessionStart,
    /// When the user submits a prompt (parsed and kept; not run by execgate yet).
    UserPromptSubmit,
    /// When the agent stops (parsed and kept; not run by execgate yet).
    Stop,
}

impl HookEvent {
    /// Every event, in the order `execgate hooks check` lists them.
    pub const ALL: [HookEvent; 6] = [
        HookEvent::PreToolUse,
        HookEvent::PermissionRequest,
        HookEvent::PostToolUse,
        HookEvent::SessionStart,
        HookEvent::UserPromptSubmit,
        HookEvent::Stop,
    ];

    /// The event's key in hooks.json (and its `hook_event_name`).
    pub fn name(self) -> &'static str {
        match self {
            HookEvent::PreToolUse => "PreToolUse",
            HookEvent::PermissionRequest => "PermissionRequest",
            HookEvent::PostToolUse => "PostToolUse",
            HookEvent::SessionStart => "SessionStart",
            HookEvent::UserPromptSubmit => "UserPromptSubmit",
            HookEvent::Stop => "Stop",
        }
    }

    /// Whether groups of this event are filtered by their matcher. Codex ignores the
    /// matcher of `UserPromptSubmit` and `Stop` groups (they have nothing to match).
    pub fn uses_matcher(self) -> bool {
        !matches!(self, HookEvent::UserPromptSubmit | HookEvent::Stop)
    }
}

impl fmt::Display for HookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One command handler, as configured, with where it came from.
#[derive(Debug, Clone)]
pub struct HookHandler {
    /// The event it handles.
    pub event: HookEvent,
    /// Its group's matcher; `None` when the group has none (or the event ignores it).
    pub matcher: Option<Matcher>,
    /// The shell command, run as `sh -c COMMAND`.
    pub command: String,
    /// Timeout in seconds (at least 1).
    pub timeout_sec: u64,
    /// Text to show while the handler runs (`statusMessage`).
    pub status_message: Option<String>,
    /// The hooks.json file it was read from.
    pub source: PathBuf,
}

impl HookHandler {
    /// Whether this handler runs for a tool called `tool_name`.
    pub fn matches(&self, tool_name: &str) -> bool {
        self.matcher.as_ref().is_none_or(|m| m.matches(tool_name))
    }
}

/// A non-fatal problem found while loading: the named part was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The file the problem is in.
    pub path: PathBuf,
    /// The full one-line message (it names the file too).
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A hooks file that cannot be used at all.
#[derive(Debug, thiserror::Error)]
pub enum HooksError {
    /// The file could not be read.
    #[error("cannot read hooks file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid JSON.
    #[error("{}:{line}:{column}: invalid JSON in hooks file: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The file is JSON but not of the hooks.json shape (a wrong type, a missing field).
    #[error("{}:{line}:{column}: invalid hooks file: {message}", path.display())]
    Shape {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A handler is missing something it needs.
    #[error("{}: invalid hooks file: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        message: String,
    },
}

/// All handlers of a set of hooks files, in configured order: files in the order given,
/// then groups in file order, then handlers in group order.
#[derive(Debug, Clone, Default)]
pub struct HooksConfig {
    handlers: Vec<HookHandler>,
}

impl HooksConfig {
    /// A configuration with no handlers.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Loads `paths` in order. Fails on the first file that cannot be used; skipped parts
    /// of usable files come back as warnings.
    pub fn load(paths: &[PathBuf]) -> Result<(HooksConfig, Vec<Warning>), HooksError> {
        let mut config = HooksConfig::default();
        let mut warnings = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(path).map_err(|source| HooksError::Read {
                path: path.clone(),
                source,
            })?;
            config.add_file(path, &text, &mut warnings)?;
        }
        Ok((config, warnings))
    }

    /// Parses one file's text as if it had been read from `path`.
    pub fn load_str(path: &Path, text: &str) -> Result<(HooksConfig, Vec<Warning>), HooksError> {
        let mut config = HooksConfig::default();
        let mut warnings = Vec::new();
        config.add_file(path, text, &mut warnings)?;
        Ok((config, warnings))
    }

    /// Every loaded handler, in configured order.
    pub fn handlers(&self) -> &[HookHandler] {
        &self.handlers
    }

    /// The handlers of `event` that match `tool_name`, in configured order.
    pub fn matching<'a>(
        &'a self,
        event: HookEvent,
        tool_name: &'a str,
    ) -> impl Iterator<Item = &'a HookHandler> + 'a {
        self.handlers
            .iter()
            .filter(move |h| h.event == event && h.matches(tool_name))
    }

    fn add_file(
        &mut self,
        path: &Path,
        text: &str,
        warnings: &mut Vec<Warning>,
    ) -> Result<(), HooksError> {
        // Parse twice: first for syntax, so a syntax error is reported as one, then into
        // the typed shape, whose errors also carry line and column.
        if let Err(err) = serde_json::from_str::<IgnoredAny>(text) {
            let (line, column, message) = split_position(&err);
            return Err(HooksError::Syntax {
                path: path.to_path_buf(),
                line,
                column,
                message,
            });
        }
        let file: FileWire = serde_json::from_str(text).map_err(|err| {
            let (line, column, message) = split_position(&err);
            HooksError::Shape {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        })?;
        let Some(events) = file.hooks else {
            return Ok(());
        };
        for name in events.unknown.keys() {
            warnings.push(Warning {
                path: path.to_path_buf(),
                message: format!("ignoring unknown hook event {name:?} in {}", path.display()),
            });
        }
        for (event, groups) in [
            (HookEvent::PreToolUse, events.pre_tool_use),
            (HookEvent::PermissionRequest, events.permission_request),
            (HookEvent::PostToolUse, events.post_tool_use),
            (HookEvent::SessionStart, events.session_start),
            (HookEvent::UserPromptSubmit, events.user_prompt_submit),
            (HookEvent::Stop, events.stop),
        ] {
            for (group_index, group) in groups.unwrap_or_default().into_iter().enumerate() {
                self.add_group(path, event, group_index, group, warnings)?;
            }
        }
        Ok(())
    }

    fn add_group(
        &mut self,
        path: &Path,
        event: HookEvent,
        group_index: usize,
        group: GroupWire,
        warnings: &mut Vec<Warning>,
    ) -> Result<(), HooksError> {
        let warn = |warnings: &mut Vec<Warning>, message: String| {
            warnings.push(Warning {
                path: path.to_path_buf(),
                message,
            })
        };
        let matcher = match group.matcher.filter(|_| event.uses_matcher()) {
            None => None,
            Some(pattern) => match Matcher::new(&pattern) {
                Ok(matcher) => Some(matcher),
                Err(err) => {
                    let err = one_line(&err.to_string());
                    warn(
                        warnings,
                        format!("invalid matcher {pattern:?} in {}: {err}", path.display()),
                    );
                    return Ok(());
                }
            },
        };
        for (handler_index, handler) in group.hooks.into_iter().enumerate() {
            match handler.kind.as_str() {
                "command" => {}
                "prompt" | "agent" => {
                    let kind = &handler.kind;
                    warn(
                        warnings,
                        format!(
                            "skipping {kind} hook in {}: {kind} hooks are not supported yet",
                            path.display()
                        ),
                    );
                    continue;
                }
                other => {
                    warn(
                        warnings,
                        format!(
                            "skipping hook of unsupported type {other:?} in {}",
                            path.display()
                        ),
                    );
                    continue;
                }
            }
            let Some(command) = handler.command else {
                return Err(HooksError::Invalid {
                    path: path.to_path_buf(),
                    message: format!(
                        "{event} group {} handler {}: a \"command\" hook needs a \"command\" string",
                        group_index + 1,
                        handler_index + 1
                    ),
                });
            };
            if command.trim().is_empty() {
                warn(
                    warnings,
                    format!("skipping empty hook command in {}", path.display()),
                );
                continue;
            }
            if handler.is_async {
                warn(
                    warnings,
                    format!(
                        "skipping async hook in {}: async hooks are not supported yet",
                        path.display()
                    ),
                );
                continue;
            }
            self.handlers.push(HookHandler {
                event,
                matcher: matcher.clone(),
                command,
                timeout_sec: handler.timeout_sec.unwrap_or(DEFAULT_TIMEOUT_SEC).max(1),
                status_message: handler.status_message,
                source: path.to_path_buf(),
            });
        }
        Ok(())
    }
}

/// Splits serde_json's "MESSAGE at line L column C" into its parts.
fn split_position(err: &serde_json::Error) -> (usize, usize, String) {
    let (line, column) = (err.line(), err.column());
    let text = err.to_string();
    let suffix = format!(" at line {line} column {column}");
    let message = text.strip_suffix(&suffix).unwrap_or(&text).to_owned();
    (line, column, message)
}

/// Joins a multi-line message (regex errors draw a caret diagram) into one line.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Deserialize)]
struct FileWire {
    #[serde(default)]
    hooks: Option<EventsWire>,
}

#[derive(Deserialize)]
struct EventsWire {
    #[serde(rename = "PreToolUse", default)]
    pre_tool_use: Option<Vec<GroupWire>>,
    #[serde(rename = "PermissionRequest", default)]
    permission_request: Option<Vec<GroupWire>>,
    #[serde(rename = "PostToolUse", default)]
    post_tool_use: Option<Vec<GroupWire>>,
    #[serde(rename = "SessionStart", default)]
    session_start: Option<Vec<GroupWire>>,
    #[serde(rename = "UserPromptSubmit", default)]
    user_prompt_submit: Option<Vec<GroupWire>>,
    #[serde(rename = "Stop", default)]
    stop: Option<Vec<GroupWire>>,
    #[serde(flatten)]
    unknown: BTreeMap<String, IgnoredAny>,
}

#[derive(Deserialize)]
struct GroupWire {
    #[serde(default)]
    matcher: Option<String>,
    #[serde(default)]
    hooks: Vec<HandlerWire>,
}

#[derive(Deserialize)]
struct HandlerWire {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    command: Option<String>,
    #[serde(default, rename = "timeout", alias = "timeoutSec")]
    timeout_sec: Option<u64>,
    #[serde(default, rename = "statusMessage")]
    status_message: Option<String>,
    #[serde(default, rename = "async")]
    is_async: bool,
}
