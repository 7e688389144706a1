//! Progress notifications: a call that carries a progress token hears about its execs as
//! they are decided or finish.

use crate::report::ExecRecord;
use execgate_escalate_server::Verdict;
use rmcp::model::ProgressNotificationParam;
use rmcp::{Peer, RoleServer};
use tokio::sync::mpsc;

/// Sends `notifications/progress` as execs are decided or finish, until the sender drops.
pub fn spawn_progress(
    peer: Peer<RoleServer>,
    token: rmcp::model::ProgressToken,
) -> (
    mpsc::UnboundedSender<ExecRecord>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<ExecRecord>();
    let task = tokio::spawn(async move {
        let (mut run, mut escalated, mut denied) = (0u64, 0u64, 0u64);
        while let Some(record) = rx.recv().await {
            match record.verdict {
                Verdict::Run => run += 1,
                Verdict::Escalate => escalated += 1,
                Verdict::Deny { .. } => denied += 1,
            }
            let mut note =
                ProgressNotificationParam::new(token.clone(), (run + escalated + denied) as f64);
            note.message = Some(format!(
                "{run} commands run, {escalated} escalated, {denied} denied"
            ));
            if peer.notify_progress(note).await.is_err() {
                break;
            }
        }
    });
    (tx, task)
}
