//! Progress notifications: a call that carries a progress token hears about its execs as
//! they are decided or finish.
//!
//! They are sent from the call's own future, never from a task of their own, so every one
//! is written before the call's response and none after it (a client drops a token once the
//! call is answered, and rejects what comes later). Only the token the call carried is
//! used.

use crate::report::ExecRecord;
use execgate_escalate_server::Verdict;
use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::{Peer, RoleServer};

/// A call's progress: its token and the counts so far.
pub struct Progress {
    token: ProgressToken,
    run: u64,
    escalated: u64,
    denied: u64,
}

impl Progress {
    /// Progress for the call that carried `token`.
    pub fn new(token: ProgressToken) -> Self {
        Self {
            token,
            run: 0,
            escalated: 0,
            denied: 0,
        }
    }

    /// Counts `record` and sends `notifications/progress` with the counts so far.
    pub async fn send(&mut self, peer: &Peer<RoleServer>, record: &ExecRecord) {
        match record.verdict {
            Verdict::Run => self.run += 1,
            Verdict::Escalate => self.escalated += 1,
            Verdict::Deny { .. } => self.denied += 1,
        }
        let done = self.run + self.escalated + self.denied;
        let mut note = ProgressNotificationParam::new(self.token.clone(), done as f64);
        note.message = Some(format!(
            "{} commands run, {} escalated, {} denied",
            self.run, self.escalated, self.denied
        ));
        // A client that cannot take a notification will see the response fail too.
        let _ = peer.notify_progress(note).await;
    }
}
