//! hooks.json loading and the `PermissionRequest` event: run the matching command
//! handlers, parse their output and fold their decisions.
//!
//! hooks.json files written for the Codex CLI behave identically here: same file format,
//! same matcher rules, same input JSON on stdin, same output schema, same messages.
//!
//! A hook can allow a command, deny it (optionally ending the session), or stay silent.
//! This crate never turns a fault into an allow: a hook that fails, times out or prints
//! something invalid decides nothing, and the request falls through to the normal
//! approval path.

#![warn(missing_docs)]

mod config;
mod flight;
mod matcher;
mod output;
mod request;
mod runner;

pub use config::{HookEvent, HookHandler, HooksConfig, HooksError, Warning, DEFAULT_TIMEOUT_SEC};
pub use flight::{HookRunner, DEFAULT_PROCESS_LIMIT};
pub use matcher::Matcher;
pub use output::{HookDecision, HookOutputEntry, HookOutputEntryKind, HookRunStatus};
pub use request::{shell_quote_command, PermissionMode, PermissionRequest, TOOL_NAME};
pub use runner::OUTPUT_CAP_BYTES;

use std::path::PathBuf;
use std::sync::Arc;

/// The report of one handler run, in configured order within [`PermissionOutcome::runs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookRun {
    /// The handler's command.
    pub command: String,
    /// The hooks file the handler came from.
    pub source: PathBuf,
    /// The handler's `statusMessage`, to show while it runs.
    pub status_message: Option<String>,
    /// How the run ended.
    pub status: HookRunStatus,
    /// What the run reported, in order.
    pub entries: Vec<HookOutputEntry>,
}

/// The folded result of a `PermissionRequest` event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PermissionOutcome {
    /// `None` when no hook decided: ask the approver as usual.
    pub decision: Option<HookDecision>,
    /// The denial message (set exactly when the decision is deny).
    pub message: Option<String>,
    /// The deny also ends the whole session.
    pub interrupt: bool,
    /// Every matching handler's run, in configured order.
    pub runs: Vec<HookRun>,
}

impl HooksConfig {
    /// The handlers a `PermissionRequest` for an intercepted exec would run, in configured
    /// order (to show their status messages before running them).
    pub fn permission_request_handlers(&self) -> Vec<&HookHandler> {
        self.matching(HookEvent::PermissionRequest, TOOL_NAME)
            .collect()
    }

    /// Runs every matching `PermissionRequest` handler concurrently and folds their
    /// decisions: the first deny in configured order wins (with its message and interrupt
    /// flag); otherwise any allow allows; otherwise there is no decision.
    ///
    /// Must run inside a Tokio runtime with I/O and time enabled. Dropping the returned
    /// future kills the hooks still running, with everything they started.
    pub async fn permission_request(&self, request: &PermissionRequest) -> PermissionOutcome {
        self.permission_request_limited(request, None).await
    }

    /// [`HooksConfig::permission_request`], each handler process waiting for a permit of
    /// `processes` (when given) before it starts.
    pub(crate) async fn permission_request_limited(
        &self,
        request: &PermissionRequest,
        processes: Option<Arc<tokio::sync::Semaphore>>,
    ) -> PermissionOutcome {
        let handlers = self.permission_request_handlers();
        if handlers.is_empty() {
            return PermissionOutcome::default();
        }
        let input = match request.to_input_json() {
            Ok(input) => Arc::<[u8]>::from(input),
            Err(err) => {
                let text = format!("failed to serialize permission request hook input: {err}");
                let runs = handlers
                    .iter()
                    .map(|handler| {
                        report(
                            handler,
                            HookRunStatus::Failed,
                            vec![HookOutputEntry {
                                kind: HookOutputEntryKind::Error,
                                text: text.clone(),
                            }],
                        )
                    })
                    .collect();
                return PermissionOutcome {
                    runs,
                    ..PermissionOutcome::default()
                };
            }
        };

        // One task per handler so they run at once; awaiting the handles in order keeps
        // the reports in configured order whatever order the hooks finish in. If this
        // future is dropped, the guard aborts the tasks, which kills their process groups.
        let mut tasks = AbortOnDrop(
            handlers
                .iter()
                .map(|handler| {
                    let command = handler.command.clone();
                    let cwd = request.cwd.clone();
                    let input = Arc::clone(&input);
                    let timeout_sec = handler.timeout_sec;
                    let processes = processes.clone();
                    tokio::spawn(async move {
                        // Held until the hook (and the task) ends; the hook's timeout
                        // starts once it runs.
                        let _permit = match processes {
                            Some(limit) => limit.acquire_owned().await.ok(),
                            None => None,
                        };
                        output::parse_run(
                            runner::run_command(&command, &cwd, &input, timeout_sec).await,
                        )
                    })
                })
                .collect(),
        );
        let mut outcome = PermissionOutcome::default();
        let mut allowed = false;
        for (handler, task) in handlers.iter().zip(tasks.0.iter_mut()) {
            let parsed = match task.await {
                Ok(parsed) => parsed,
                Err(err) => output::Parsed {
                    status: HookRunStatus::Failed,
                    entries: vec![HookOutputEntry {
                        kind: HookOutputEntryKind::Error,
                        text: format!("hook runner failed: {err}"),
                    }],
                    verdict: None,
                },
            };
            match &parsed.verdict {
                Some(verdict) if verdict.decision == HookDecision::Allow => allowed = true,
                Some(verdict) if outcome.decision.is_none() => {
                    outcome.decision = Some(HookDecision::Deny);
                    outcome.message = verdict.message.clone();
                    outcome.interrupt = verdict.interrupt;
                }
                _ => {}
            }
            outcome
                .runs
                .push(report(handler, parsed.status, parsed.entries));
        }
        if outcome.decision.is_none() && allowed {
            outcome.decision = Some(HookDecision::Allow);
        }
        outcome
    }
}

fn report(handler: &HookHandler, status: HookRunStatus, entries: Vec<HookOutputEntry>) -> HookRun {
    HookRun {
        command: handler.command.clone(),
        source: handler.source.clone(),
        status_message: handler.status_message.clone(),
        status,
        entries,
    }
}

/// Aborts its tasks when dropped.
struct AbortOnDrop<T>(Vec<tokio::task::JoinHandle<T>>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn permission_request_future_can_be_spawned_on_a_multithreaded_runtime() {
        let config = HooksConfig::empty();
        let request = PermissionRequest::new(PathBuf::from("/"), "ls".into());
        let future = config.permission_request(&request);
        assert_send(&future);
    }
}
