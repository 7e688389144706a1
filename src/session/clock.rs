//! The prompt clock: how long a session has spent waiting for a person, so `--timeout`
//! (and the MCP `timeout_ms`) can leave that time out.

use execgate_decide::{ApprovalRequest, Approver, BoxFuture, Choice, Unavailable};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Time spent waiting for a person. Overlapping prompts count once.
#[derive(Default)]
pub struct PromptClock {
    /// Prompts on screen, when the first of them began, and the time already closed.
    state: Mutex<(u32, Option<Instant>, Duration)>,
}

impl PromptClock {
    fn begin(&self) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.0 == 0 {
            s.1 = Some(Instant::now());
        }
        s.0 += 1;
    }

    fn end(&self) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.0 = s.0.saturating_sub(1);
        if s.0 == 0 {
            if let Some(since) = s.1.take() {
                s.2 += since.elapsed();
            }
        }
    }

    /// Total prompt time so far, counting a prompt still on screen, and whether one is.
    pub fn paused(&self) -> (Duration, bool) {
        let s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let open = s.1.map_or(Duration::ZERO, |since| since.elapsed());
        (s.2 + open, s.0 > 0)
    }

    /// `approver`, telling this clock while a person is being asked.
    pub fn around(self: &Arc<Self>, approver: Arc<dyn Approver>) -> Arc<dyn Approver> {
        Arc::new(ClockedApprover {
            inner: approver,
            clock: Arc::clone(self),
        })
    }
}

/// An approver that tells the prompt clock when a person is being asked.
struct ClockedApprover {
    inner: Arc<dyn Approver>,
    clock: Arc<PromptClock>,
}

impl Approver for ClockedApprover {
    fn ask<'a>(
        &'a self,
        request: &'a ApprovalRequest,
    ) -> BoxFuture<'a, Result<Choice, Unavailable>> {
        Box::pin(async move {
            self.clock.begin();
            let answer = self.inner.ask(request).await;
            self.clock.end();
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_clock_counts_overlapping_prompts_once() {
        let clock = PromptClock::default();
        clock.begin();
        clock.begin();
        std::thread::sleep(Duration::from_millis(20));
        clock.end();
        assert!(clock.paused().1);
        clock.end();
        let (paused, open) = clock.paused();
        assert!(!open);
        assert!(paused >= Duration::from_millis(20));
    }
}
