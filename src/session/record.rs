//! The recorder: turns the server's events into exec records, for the audit log, the
//! progress channel and the final report. Each `Decided` event carries the pipeline's
//! note (or none, when the server denied the exec itself), so a record is complete from
//! the event alone.

use super::audit::AuditLog;
use crate::report::{ExecRecord, NetworkRecord};
use execgate_decide::Note;
use execgate_escalate_server::{ExecEvent, ExitStatus, Verdict};
use execgate_protocol::display;
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::time::Instant;
use tokio::sync::mpsc;

/// Records of one session, in the order the execs were requested.
pub struct Recorder {
    audit: Option<AuditLog>,
    progress: Option<mpsc::UnboundedSender<ExecRecord>>,
    records: Vec<ExecRecord>,
    network: Vec<NetworkRecord>,
    /// Leave the network gate's proxy variables out of `env_dropped` (a gated session sets
    /// them in the sandbox; escalated commands never get them, so listing them on every
    /// escalation says nothing).
    gated: bool,
    /// Index in `records` and decision time, by exec id, for the exit that follows.
    index: HashMap<u64, (usize, Instant)>,
}

impl Recorder {
    /// A recorder that also writes to `audit` and sends each completed record to
    /// `progress`.
    pub fn new(
        audit: Option<AuditLog>,
        progress: Option<mpsc::UnboundedSender<ExecRecord>>,
    ) -> Self {
        Self {
            audit,
            progress,
            records: Vec::new(),
            network: Vec::new(),
            gated: false,
            index: HashMap::new(),
        }
    }

    /// Records every event waiting on `events`, without waiting for more.
    pub fn drain(&mut self, events: &mut mpsc::UnboundedReceiver<ExecEvent<Note>>) {
        while let Ok(event) = events.try_recv() {
            self.handle(event);
        }
    }

    /// Marks the session as gated (see the `gated` field).
    pub fn gated(&mut self) {
        self.gated = true;
    }

    /// Records one connection the network gate decided.
    pub fn network(&mut self, record: NetworkRecord) {
        if let Some(audit) = &mut self.audit {
            audit.write_network(&record);
        }
        self.network.push(record);
    }

    /// The exec records, in request order, and the network records, in the order the
    /// connections ended.
    pub fn into_records(self) -> (Vec<ExecRecord>, Vec<NetworkRecord>) {
        (self.records, self.network)
    }

    fn handle(&mut self, event: ExecEvent<Note>) {
        match event {
            ExecEvent::Decided {
                id,
                request,
                program,
                verdict,
                note,
            } => {
                let escalated = verdict == Verdict::Escalate;
                if let Some(why) = &note.as_ref().and_then(|n| n.downgraded.clone()) {
                    eprintln!(
                        "{}",
                        kept_line(program.as_os_str().as_bytes(), &request.argv, why)
                    );
                }
                let record = ExecRecord::decided(
                    id,
                    program.as_os_str().as_bytes(),
                    &request.argv,
                    &request.cwd,
                    verdict,
                    note,
                );
                if let Some(audit) = &mut self.audit {
                    audit.write("decided", &record);
                }
                // An escalated exec's record is complete only when it exits.
                if !escalated {
                    if let Some(progress) = &self.progress {
                        let _ = progress.send(record.clone());
                    }
                }
                self.index.insert(id, (self.records.len(), Instant::now()));
                self.records.push(record);
            }
            ExecEvent::Started {
                id, env_dropped, ..
            } => {
                let gated = self.gated;
                if let Some(record) = self.record_mut(id) {
                    if gated {
                        let shown: Vec<Vec<u8>> = env_dropped
                            .iter()
                            .filter(|name| {
                                !std::str::from_utf8(name).is_ok_and(super::network::is_proxy_var)
                            })
                            .cloned()
                            .collect();
                        record.set_env_dropped(&shown);
                    } else {
                        record.set_env_dropped(&env_dropped);
                    }
                }
            }
            ExecEvent::SpawnFailed { id, message, errno } => {
                let code = if errno == libc::ENOENT { 127 } else { 126 };
                self.finish(id, code, Some(message));
            }
            ExecEvent::Exited { id, status, .. } => {
                let code = match status {
                    ExitStatus::Code(code) => code,
                    ExitStatus::Signal(signo) => 128 + signo,
                };
                self.finish(id, code, None);
            }
        }
    }

    /// The record of exec `id`, once decided.
    fn record_mut(&mut self, id: u64) -> Option<&mut ExecRecord> {
        let &(at, _) = self.index.get(&id)?;
        self.records.get_mut(at)
    }

    fn finish(&mut self, id: u64, code: i32, failure: Option<String>) {
        let Some(&(at, since)) = self.index.get(&id) else {
            return;
        };
        let Some(record) = self.records.get_mut(at) else {
            return;
        };
        record.exit_code = Some(code);
        record.duration_ms = since.elapsed().as_millis() as u64;
        if let Some(failure) = failure {
            record.justification = Some(failure);
        }
        if let Some(audit) = &mut self.audit {
            audit.write("exited", record);
        }
        if let Some(progress) = &self.progress {
            let _ = progress.send(record.clone());
        }
    }
}

/// The line that tells the user an exec ran in the sandbox instead of outside, and why:
/// `execgate: kept in the sandbox: COMMAND: WHY`, both written as everything a person is
/// shown is (`protocol::display`): either may hold what the sandbox chose, such as folder
/// names.
fn kept_line(program: &[u8], argv: &[Vec<u8>], why: &str) -> String {
    let mut line = b"execgate: kept in the sandbox: ".to_vec();
    let args = argv.iter().skip(1).map(Vec::as_slice);
    let Ok(()) = display::quote_command(program, args, &mut line);
    line.extend_from_slice(b": ");
    let Ok(()) = display::text(why.as_bytes(), &mut line);
    String::from_utf8_lossy(&line).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_line_escapes_what_the_sandbox_chose() {
        let argv = vec![b"git".to_vec(), b"status".to_vec(), b"\x1b[2J".to_vec()];
        assert_eq!(
            kept_line(
                b"/usr/bin/git",
                &argv,
                "the repository /w/\u{1b}[2J\u{202e}/.git is untrusted"
            ),
            "execgate: kept in the sandbox: /usr/bin/git status $'\\e[2J': $'the repository \
             /w/\\e[2J\\u202e/.git is untrusted'"
        );
    }
}
