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
mod scripts;

pub use config::{HookEvent, HookHandler, HooksConfig, HooksError, Warning, DEFAULT_TIMEOUT_SEC};
pub use flight::{HookRunner, DEFAULT_PROCESS_LIMIT};
pub use matcher::Matcher;
pub use output::{HookDecision, HookOutputEntry, HookOutputEntryKind, HookRunStatus};
pub use request::{shell_quote_command, PermissionMode, PermissionRequest, TOOL_NAME};
pub use runner::OUTPUT_CAP_BYTES;
pub use scripts::{named_files, Named, Unsplittable};

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

    /// [`HooksConfig::permission_request_in`] with every handler run in this process's
    /// working directory (the folder execgate was started in).
    pub async fn permission_request(&self, request: &PermissionRequest) -> PermissionOutcome {
        match RunIn::here() {
            Ok(run) => self.permission_request_in(request, &run).await,
            Err(err) => self.all_failed(format!(
                "cannot tell the folder hooks run in (the working directory): {err}"
            )),
        }
    }

    /// Runs every matching `PermissionRequest` handler concurrently, each as `sh -c
    /// COMMAND` in `run.dir` (never the command's own working directory, which the
    /// request's `cwd` names), and folds their decisions: the first deny in configured
    /// order wins (with its message and interrupt flag); otherwise any allow allows;
    /// otherwise there is no decision. A handler `run` refuses is not run and counts as
    /// failed, with the refusal as an error entry.
    ///
    /// Must run inside a Tokio runtime with I/O and time enabled. Dropping the returned
    /// future kills the hooks still running, with everything they started.
    pub async fn permission_request_in(
        &self,
        request: &PermissionRequest,
        run: &RunIn,
    ) -> PermissionOutcome {
        self.permission_request_limited(request, run, None).await
    }

    /// [`HooksConfig::permission_request_in`], each handler process waiting for a permit
    /// of `processes` (when given) before it starts.
    pub(crate) async fn permission_request_limited(
        &self,
        request: &PermissionRequest,
        run: &RunIn,
        processes: Option<Arc<tokio::sync::Semaphore>>,
    ) -> PermissionOutcome {
        let handlers = self.permission_request_handlers();
        if handlers.is_empty() {
            return PermissionOutcome::default();
        }
        let input = match request.to_input_json() {
            Ok(input) => Arc::<[u8]>::from(input),
            Err(err) => {
                return self.all_failed(format!(
                    "failed to serialize permission request hook input: {err}"
                ))
            }
        };

        // One task per handler so they run at once; awaiting the handles in order keeps
        // the reports in configured order whatever order the hooks finish in. If this
        // future is dropped, the guard aborts the tasks, which kills their process groups.
        let mut tasks = AbortOnDrop(
            handlers
                .iter()
                .enumerate()
                .map(|(index, handler)| {
                    let refused = run.refusal(index).map(str::to_owned);
                    let command = handler.command.clone();
                    let dir = run.dir.clone();
                    let input = Arc::clone(&input);
                    let timeout_sec = handler.timeout_sec;
                    let processes = processes.clone();
                    tokio::spawn(async move {
                        if let Some(why) = refused {
                            return output::Parsed {
                                status: HookRunStatus::Failed,
                                entries: vec![HookOutputEntry {
                                    kind: HookOutputEntryKind::Error,
                                    text: format!("not run: {why}"),
                                }],
                                verdict: None,
                            };
                        }
                        // Held until the hook (and the task) ends; the hook's timeout
                        // starts once it runs.
                        let _permit = match processes {
                            Some(limit) => limit.acquire_owned().await.ok(),
                            None => None,
                        };
                        output::parse_run(
                            runner::run_command(&command, &dir, &input, timeout_sec).await,
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

impl HooksConfig {
    /// The outcome when no matching handler could be run, for `text`.
    fn all_failed(&self, text: String) -> PermissionOutcome {
        let runs = self
            .permission_request_handlers()
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
        PermissionOutcome {
            runs,
            ..PermissionOutcome::default()
        }
    }
}

/// Where the handlers of a `PermissionRequest` event run, and which of them must not run
/// (see [`HooksConfig::permission_request_in`]). Owned and comparable: a [`HookRunner`]
/// shares one run between identical requests only when they run the same way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RunIn {
    /// The folder every handler runs in.
    pub dir: PathBuf,
    /// Handlers not to run, by their place among
    /// [`HooksConfig::permission_request_handlers`], each with the reason.
    pub refused: Vec<(usize, String)>,
}

impl RunIn {
    /// Every handler runs in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            refused: Vec::new(),
        }
    }

    /// Every handler runs in this process's working directory.
    pub fn here() -> std::io::Result<Self> {
        Ok(Self::new(std::env::current_dir()?))
    }

    /// Handlers of `config` run in `dir`, except those `vet` refuses (`Err(why)`).
    pub fn vetted(
        config: &HooksConfig,
        dir: PathBuf,
        vet: impl Fn(&HookHandler) -> Result<(), String>,
    ) -> Self {
        let refused = config
            .permission_request_handlers()
            .into_iter()
            .enumerate()
            .filter_map(|(index, handler)| vet(handler).err().map(|why| (index, why)))
            .collect();
        Self { dir, refused }
    }

    fn refusal(&self, index: usize) -> Option<&str> {
        self.refused
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, why)| why.as_str())
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
