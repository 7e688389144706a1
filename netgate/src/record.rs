//! One record per decided connection, for `--json`, the audit log and the session's
//! denial line.
//!
//! A [`Tracked`] value travels with each decided connection and sends its record when it
//! is dropped, so every decided connection reports exactly once, however it ends (closed,
//! reset, timed out, or aborted with the session).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use execgate_execpolicy::{Decision, NetworkProtocol};
use tokio::sync::mpsc::UnboundedSender;

use crate::decider::{ConnectionOwner, ExecRef, NetworkVerdict, Outcome, Source};

/// What happened to one decided connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionRecord {
    /// The destination host, canonical text (IPv6 without brackets).
    pub host: String,
    /// The destination port.
    pub port: u16,
    /// The protocol it was decided as.
    pub protocol: NetworkProtocol,
    /// What the rules said (`None`: no rule names the destination).
    pub decision: Option<Decision>,
    /// What the gate did.
    pub verdict: Outcome,
    /// Who settled it.
    pub source: Source,
    /// Where the deciding rule is written (`file:line`).
    pub rule: Option<String>,
    /// Why (justification, hook or person reason, the gate's refusal).
    pub reason: Option<String>,
    /// The verdict asked for the session to end.
    pub end_session: bool,
    /// The sandbox side of the connection.
    pub owner: ConnectionOwner,
    /// The exec the decider attributed the connection to; only on the record of the
    /// connection whose question the decider answered.
    pub exec: Option<ExecRef>,
    /// Whether this connection's question went to the decider (`false`: a remembered
    /// verdict, or a question another connection asked).
    pub asked: bool,
    /// The upstream address the gate connected to (the address it checked).
    pub address: Option<SocketAddr>,
    /// Why an allowed connection could not be opened (name not found, refused, timed out).
    pub error: Option<String>,
    /// Bytes sent from the sandbox to the destination.
    pub bytes_up: u64,
    /// Bytes sent from the destination to the sandbox.
    pub bytes_down: u64,
    /// From the request to the end of the connection.
    pub duration: Duration,
}

/// A decided connection in flight; sends its record when dropped.
pub(crate) struct Tracked {
    record: Option<ConnectionRecord>,
    up: AtomicU64,
    down: AtomicU64,
    started: Instant,
    events: UnboundedSender<ConnectionRecord>,
}

impl Tracked {
    /// Starts tracking a connection decided by `verdict`.
    pub(crate) fn new(
        request: (&execgate_execpolicy::CanonicalHost, u16, NetworkProtocol),
        owner: ConnectionOwner,
        verdict: &NetworkVerdict,
        asked: bool,
        started: Instant,
        events: UnboundedSender<ConnectionRecord>,
    ) -> Self {
        let (host, port, protocol) = request;
        Self {
            record: Some(ConnectionRecord {
                host: host.as_text(),
                port,
                protocol,
                decision: verdict.decision,
                verdict: verdict.outcome,
                source: verdict.source,
                rule: verdict.rule.clone(),
                reason: verdict.reason.clone(),
                end_session: verdict.end_session,
                owner,
                exec: if asked { verdict.exec.clone() } else { None },
                asked,
                address: None,
                error: None,
                bytes_up: 0,
                bytes_down: 0,
                duration: Duration::ZERO,
            }),
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            started,
            events,
        }
    }

    /// Turns the record into a denial (the connection was refused after all).
    pub(crate) fn deny(&mut self, source: Source, reason: String) {
        if let Some(record) = &mut self.record {
            record.verdict = Outcome::Deny;
            record.source = source;
            record.reason = Some(reason);
        }
    }

    /// Notes why the upstream connection could not be opened.
    pub(crate) fn fail(&mut self, error: String) {
        if let Some(record) = &mut self.record {
            record.error = Some(error);
        }
    }

    /// Notes the upstream address connected to.
    pub(crate) fn set_address(&mut self, address: SocketAddr) {
        if let Some(record) = &mut self.record {
            record.address = Some(address);
        }
    }

    /// Adds bytes sent towards the destination.
    pub(crate) fn add_up(&self, n: u64) {
        self.up.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds bytes sent towards the sandbox.
    pub(crate) fn add_down(&self, n: u64) {
        self.down.fetch_add(n, Ordering::Relaxed);
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(mut record) = self.record.take() {
            record.duration = self.started.elapsed();
            record.bytes_up = self.up.load(Ordering::Relaxed);
            record.bytes_down = self.down.load(Ordering::Relaxed);
            // A session that stopped listening has nobody left to tell.
            let _ = self.events.send(record);
        }
    }
}
