//! Running `PermissionRequest` events for many requests at once without flooding the host:
//! at most a few hook processes run at a time, and identical requests that are pending
//! together share one run (single flight).
//!
//! A flood of prompt-worthy execs (`for i in $(seq 5000); do git push & done`) thus costs
//! one hook run per distinct request, a few at a time, instead of thousands of processes.
//! A run nobody waits for any more (every waiter was dropped, e.g. its session ended) is
//! dropped too, which kills its hooks.

use crate::{HooksConfig, PermissionOutcome, PermissionRequest, RunIn};
use futures_util::future::{BoxFuture, FutureExt, Shared, WeakShared};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::Semaphore;

/// How many hook processes run at once, unless told otherwise.
pub const DEFAULT_PROCESS_LIMIT: usize = 4;

type Flight = Shared<BoxFuture<'static, PermissionOutcome>>;

/// Runs the `PermissionRequest` event of a [`HooksConfig`] for concurrent requests: at
/// most `limit` hook processes at a time across all of them, and one run for identical
/// requests (the same hook input, byte for byte) pending at the same time. Share one
/// runner (e.g. in an `Arc`) to share the limit.
pub struct HookRunner {
    config: Arc<HooksConfig>,
    processes: Arc<Semaphore>,
    flights: Mutex<HashMap<Vec<u8>, WeakShared<BoxFuture<'static, PermissionOutcome>>>>,
}

impl HookRunner {
    /// A runner for `config` starting at most `limit` (at least 1) hook processes at once.
    pub fn new(config: Arc<HooksConfig>, limit: usize) -> Self {
        Self {
            config,
            processes: Arc::new(Semaphore::new(limit.max(1))),
            flights: Mutex::default(),
        }
    }

    /// The hooks it runs.
    pub fn config(&self) -> &HooksConfig {
        &self.config
    }

    /// [`HookRunner::permission_request_in`] with the handlers run in this process's
    /// working directory.
    pub async fn permission_request(&self, request: &PermissionRequest) -> PermissionOutcome {
        match RunIn::here() {
            Ok(run) => self.permission_request_in(request, run).await,
            Err(_) => self.config.permission_request(request).await,
        }
    }

    /// The folded outcome of the event for `request`, its handlers run as `run` says (see
    /// [`HooksConfig::permission_request_in`]), sharing a run already under way for the
    /// same request run the same way. Dropping the returned future stops waiting; the run
    /// goes on while anyone else waits for it, and is dropped (its hooks killed) when
    /// nobody does.
    pub async fn permission_request_in(
        &self,
        request: &PermissionRequest,
        run: RunIn,
    ) -> PermissionOutcome {
        if self.config.permission_request_handlers().is_empty() {
            return PermissionOutcome::default();
        }
        let Ok(mut key) = request.to_input_json() else {
            // The run reports the serialization failure itself.
            return self
                .config
                .permission_request_limited(request, &run, Some(Arc::clone(&self.processes)))
                .await;
        };
        // The same input run elsewhere, or with other handlers held back, is another run.
        key.push(0);
        key.extend_from_slice(run.dir.as_os_str().as_encoded_bytes());
        for (index, why) in &run.refused {
            key.push(0);
            key.extend_from_slice(&(*index as u64).to_le_bytes());
            key.extend_from_slice(why.as_bytes());
        }
        let flight = self.join(key.clone(), request, run);
        let outcome = flight.clone().await;
        self.land(&key, &flight);
        outcome
    }

    /// The run under way for `key`, or a new one.
    fn join(&self, key: Vec<u8>, request: &PermissionRequest, run: RunIn) -> Flight {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(flight) = flights.get(&key).and_then(WeakShared::upgrade) {
            return flight;
        }
        let (config, request) = (Arc::clone(&self.config), request.clone());
        let processes = Arc::clone(&self.processes);
        let flight = async move {
            config
                .permission_request_limited(&request, &run, Some(processes))
                .await
        }
        .boxed()
        .shared();
        if let Some(weak) = flight.downgrade() {
            // Forget runs nobody waits for any more.
            flights.retain(|_, weak| weak.upgrade().is_some());
            flights.insert(key, weak);
        }
        flight
    }

    /// Forgets `flight` once it is done, so a later request runs the hooks again.
    fn land(&self, key: &[u8], flight: &Flight) {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        let same = flights
            .get(key)
            .and_then(WeakShared::upgrade)
            .is_some_and(|current| Shared::ptr_eq(&current, flight));
        if same {
            flights.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// A hooks config whose one handler appends a line to `log` and then waits for
    /// `release` to exist.
    fn counting(dir: &Path) -> Arc<HooksConfig> {
        let log = dir.join("log");
        let release = dir.join("release");
        let command = format!(
            "echo $$ > {2}; echo start >> {0}; while [ ! -e {1} ]; do sleep 0.02; done; \
             echo end >> {0}",
            log.display(),
            release.display(),
            dir.join("pid").display()
        );
        let text = serde_json::json!({"hooks": {"PermissionRequest": [
            {"hooks": [{"type": "command", "command": command}]}
        ]}})
        .to_string();
        let (config, _) = HooksConfig::load_str(&dir.join("hooks.json"), &text).unwrap();
        Arc::new(config)
    }

    fn request(command: &str) -> PermissionRequest {
        PermissionRequest::new(PathBuf::from("/"), command.into())
    }

    fn lines(dir: &Path, word: &str) -> usize {
        std::fs::read_to_string(dir.join("log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == word)
            .count()
    }

    #[tokio::test]
    async fn identical_pending_requests_share_one_run() {
        let dir = tempfile::tempdir().unwrap();
        let runner = HookRunner::new(counting(dir.path()), DEFAULT_PROCESS_LIMIT);
        let same = request("/usr/bin/git push");
        // All fifty join before any run can finish: the hook waits for `release`.
        let waiters =
            futures_util::future::join_all((0..50).map(|_| runner.permission_request(&same)));
        let release = async {
            while lines(dir.path(), "start") == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            std::fs::write(dir.path().join("release"), "").unwrap();
        };
        let (outcomes, ()) = tokio::join!(waiters, release);
        assert_eq!(outcomes.len(), 50);
        assert_eq!(lines(dir.path(), "start"), 1);
        // Done runs are forgotten: the next request runs the hook again.
        runner.permission_request(&same).await;
        assert_eq!(lines(dir.path(), "start"), 2);
    }

    /// The most hooks between their `start` and `end` lines at any point of the log.
    fn most_at_once(dir: &Path) -> usize {
        let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
        let (mut now, mut most) = (0usize, 0usize);
        for line in log.lines() {
            match line {
                "start" => now += 1,
                "end" => now -= 1,
                _ => {}
            }
            most = most.max(now);
        }
        most
    }

    #[tokio::test]
    async fn at_most_the_limit_of_hook_processes_run_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let command = format!(
            "echo start >> {0}; sleep 0.1; echo end >> {0}",
            log.display()
        );
        let text = serde_json::json!({"hooks": {"PermissionRequest": [
            {"hooks": [{"type": "command", "command": command}]}
        ]}})
        .to_string();
        let (config, _) = HooksConfig::load_str(&dir.path().join("hooks.json"), &text).unwrap();
        let runner = HookRunner::new(Arc::new(config), 3);
        let requests: Vec<_> = (0..12)
            .map(|i| request(&format!("/usr/bin/git push b{i}")))
            .collect();
        futures_util::future::join_all(requests.iter().map(|r| runner.permission_request(r))).await;
        assert_eq!(lines(dir.path(), "start"), 12);
        assert!(
            most_at_once(dir.path()) <= 3,
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
    }

    #[tokio::test]
    async fn a_run_nobody_waits_for_is_dropped_with_its_hooks() {
        let dir = tempfile::tempdir().unwrap();
        let runner = HookRunner::new(counting(dir.path()), DEFAULT_PROCESS_LIMIT);
        let r = request("/usr/bin/git push");
        {
            let waiting = runner.permission_request(&r);
            tokio::pin!(waiting);
            tokio::select! {
                _ = &mut waiting => unreachable!("the hook waits for release"),
                () = async {
                    while lines(dir.path(), "start") == 0 {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                } => {}
            }
        }
        // The only waiter is gone: so is the run, and its hook was killed.
        assert!(runner
            .flights
            .lock()
            .unwrap()
            .values()
            .all(|w| w.upgrade().is_none()));
        let pid: i32 = std::fs::read_to_string(dir.path().join("pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !stat.rsplit_once(") ").unwrap().1.starts_with('Z'))
        {
            assert!(std::time::Instant::now() < deadline, "hook {pid} lives on");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
