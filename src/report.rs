//! The records `execgate run --json`, the audit log and the MCP tool report: one
//! [`ExecRecord`] per intercepted exec, and one [`RunReport`] per session. The words in
//! them (decision, verdict, source) are the decide crate's vocabulary. [`read`] reads an
//! audit log back (for `execgate policy suggest`).

use execgate_decide::{decision_word, Note, Source};
use execgate_escalate_server::Verdict;
use execgate_execpolicy::Decision;
use execgate_netgate::ConnectionRecord;
use serde::{Serialize, Serializer};

pub mod read;

/// One intercepted exec.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecRecord {
    /// Sequence number within the session, from 0.
    pub id: u64,
    /// Absolute, canonical program path (lossy UTF-8; see `raw` for the exact bytes).
    pub program: String,
    /// argv, `argv[0]` included (lossy UTF-8; see `raw`).
    pub argv: Vec<String>,
    /// Working directory (lossy UTF-8; see `raw`).
    pub cwd: String,
    /// What the rules said (`unmatched` when no rule matched).
    #[serde(serialize_with = "serialize_decision")]
    pub decision: Option<Decision>,
    /// What the server did: `run`, `escalate` or `deny`.
    #[serde(serialize_with = "serialize_verdict")]
    pub verdict: Verdict,
    /// Who settled it.
    pub source: Source,
    /// Where the deciding rule is written (`file:line`), if a rule decided.
    pub rule: Option<String>,
    /// The rule's justification, or the hook's / approver's reason for a denial.
    pub justification: Option<String>,
    /// Exit code of an escalated command (128+N when killed by signal N); `null` for
    /// commands run in place (they replace the wrapper, so the server never sees their
    /// status), denied ones get 126.
    pub exit_code: Option<i32>,
    /// Time from the request to the verdict (run/deny) or to the escalated command's exit.
    pub duration_ms: u64,
    /// Why an exec that would have left the sandbox ran inside it instead (present only
    /// then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downgraded: Option<String>,
    /// Names of the request's environment variables an escalated command was not given
    /// (lossy UTF-8, in request order); present only when there are some.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_dropped: Option<Vec<String>>,
    /// The exact bytes, present only when one of program, argv or cwd is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<RawBytes>,
}

/// Byte-exact program, argv and cwd, for records whose text had to be made lossy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RawBytes {
    /// Program path bytes.
    pub program: Vec<u8>,
    /// argv bytes.
    pub argv: Vec<Vec<u8>>,
    /// cwd bytes.
    pub cwd: Vec<u8>,
}

/// The record's word for a verdict.
pub fn verdict_word(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Run => "run",
        Verdict::Escalate => "escalate",
        Verdict::Deny { .. } => "deny",
    }
}

fn serialize_decision<S: Serializer>(decision: &Option<Decision>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(decision_word(*decision))
}

fn serialize_verdict<S: Serializer>(verdict: &Verdict, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(verdict_word(verdict))
}

impl ExecRecord {
    /// The record of a decided exec: the server's facts (`program`, `argv`, `cwd` as raw
    /// bytes, the verdict sent) and the pipeline's note. Without a note (the server denied
    /// the exec itself, before the pipeline ruled), the source is `server`, the decision
    /// `unmatched` and the justification the server's reason. Denied execs get exit code
    /// 126; an escalated one gets its code when it exits.
    pub fn decided(
        id: u64,
        program: &[u8],
        argv: &[Vec<u8>],
        cwd: &[u8],
        verdict: Verdict,
        note: Option<Note>,
    ) -> Self {
        let note = note.unwrap_or_else(|| Note {
            decision: None,
            source: Source::Server,
            rule: None,
            justification: match &verdict {
                Verdict::Deny { reason } => Some(String::from_utf8_lossy(reason).into_owned()),
                Verdict::Run | Verdict::Escalate => None,
            },
            downgraded: None,
        });
        let (program, argv, cwd, raw) = Self::text_fields(program, argv, cwd);
        let exit_code = matches!(verdict, Verdict::Deny { .. }).then_some(126);
        Self {
            id,
            program,
            argv,
            cwd,
            decision: note.decision,
            verdict,
            source: note.source,
            rule: note.rule,
            justification: note.justification,
            exit_code,
            duration_ms: 0,
            downgraded: note.downgraded,
            env_dropped: None,
            raw,
        }
    }

    /// Records the request variables an escalated command was not given (`names` as the
    /// server reports them, raw bytes); nothing when there are none.
    pub fn set_env_dropped(&mut self, names: &[Vec<u8>]) {
        self.env_dropped = (!names.is_empty()).then(|| {
            names
                .iter()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect()
        });
    }

    /// Fills the text fields from raw bytes, adding `raw` when any is not UTF-8.
    fn text_fields(
        program: &[u8],
        argv: &[Vec<u8>],
        cwd: &[u8],
    ) -> (String, Vec<String>, String, Option<RawBytes>) {
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let exact = std::str::from_utf8(program).is_ok()
            && std::str::from_utf8(cwd).is_ok()
            && argv.iter().all(|a| std::str::from_utf8(a).is_ok());
        let raw = (!exact).then(|| RawBytes {
            program: program.to_vec(),
            argv: argv.to_vec(),
            cwd: cwd.to_vec(),
        });
        (
            lossy(program),
            argv.iter().map(|a| lossy(a)).collect(),
            lossy(cwd),
            raw,
        )
    }
}

/// The result of one session (`run --json`, the MCP tool's structured content).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// The shell's exit code (130 when interrupted, 124 on timeout); `null` if it died by a
    /// signal.
    pub exit_code: Option<i32>,
    /// The signal that killed the shell, if one did.
    pub signal: Option<i32>,
    /// Captured standard output (lossy UTF-8).
    pub stdout: String,
    /// Captured standard error (lossy UTF-8).
    pub stderr: String,
    /// Whether the session hit its timeout.
    pub timed_out: bool,
    /// Whether a hook or a person ended the session.
    pub interrupted: bool,
    /// Every intercepted exec, in the order they were requested.
    pub execs: Vec<ExecRecord>,
    /// Every connection the network gate decided, in the order they ended; absent unless
    /// the session's network was `gated`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<Vec<NetworkRecord>>,
}

/// One connection the network gate decided (network mode `gated`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkRecord {
    /// The destination host, canonical (a name lowercased, or an address; IPv6 without
    /// brackets).
    pub host: String,
    /// The destination port.
    pub port: u16,
    /// The protocol it was decided as: `http`, `https`, `socks5_tcp`.
    pub protocol: &'static str,
    /// What the `network_rule`s said (`unmatched` when none names the host).
    #[serde(serialize_with = "serialize_decision")]
    pub decision: Option<Decision>,
    /// What the gate did: `connect` or `deny`.
    pub verdict: &'static str,
    /// Who settled it: policy, hook, user, approval-mode, or `gate` (a local or private
    /// address no rule names, a malformed target, an address the sandbox's DNS never gave
    /// out).
    pub source: &'static str,
    /// Where the deciding rule is written (`file:line`).
    pub rule: Option<String>,
    /// Why: the rule's justification, the hook's or the person's reason, the gate's
    /// refusal.
    pub reason: Option<String>,
    /// The exec that opened the connection (its `id` in `execs`), when this connection's
    /// question was asked and a single exec owned it.
    pub exec_id: Option<u64>,
    /// That exec's command line (or the session's script when no exec owned it); `null`
    /// for connections that reused an earlier answer.
    pub command: Option<String>,
    /// Which door it came through: `http-proxy`, `socks5`, `capture`.
    pub via: &'static str,
    /// The address the gate connected to (the one it checked).
    pub address: Option<String>,
    /// Why an allowed connection could not be opened.
    pub error: Option<String>,
    /// Bytes from the sandbox to the destination.
    pub bytes_up: u64,
    /// Bytes from the destination to the sandbox.
    pub bytes_down: u64,
    /// From the request to the end of the connection.
    pub duration_ms: u64,
}

impl NetworkRecord {
    /// The destination as `protocol://host:port` (IPv6 in brackets).
    pub fn target(&self) -> String {
        if self.host.contains(':') {
            format!("{}://[{}]:{}", self.protocol, self.host, self.port)
        } else {
            format!("{}://{}:{}", self.protocol, self.host, self.port)
        }
    }

    /// The record of one of the gate's connections.
    pub fn from_gate(record: &ConnectionRecord) -> Self {
        Self {
            host: record.host.clone(),
            port: record.port,
            protocol: record.protocol.as_str(),
            decision: record.decision,
            verdict: record.verdict.as_str(),
            source: record.source.as_str(),
            rule: record.rule.clone(),
            reason: record.reason.clone(),
            exec_id: record.exec.as_ref().and_then(|e| e.id),
            command: record.exec.as_ref().map(|e| e.command.clone()),
            via: record.owner.via.as_str(),
            address: record.address.map(|a| a.to_string()),
            error: record.error.clone(),
            bytes_up: record.bytes_up,
            bytes_down: record.bytes_down,
            duration_ms: u64::try_from(record.duration.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_serializes_with_the_design_field_names() {
        let mut record = ExecRecord::decided(
            1,
            b"/usr/bin/git",
            &[b"git".to_vec(), b"push".to_vec()],
            b"/w",
            Verdict::Escalate,
            Some(Note {
                decision: Some(Decision::Prompt),
                source: Source::ApprovalMode,
                rule: Some("/r/default.rules:2".into()),
                justification: None,
                downgraded: None,
            }),
        );
        record.exit_code = Some(0);
        record.duration_ms = 5;
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": 1, "program": "/usr/bin/git", "argv": ["git", "push"], "cwd": "/w",
                "decision": "prompt", "verdict": "escalate", "source": "approval-mode",
                "rule": "/r/default.rules:2", "justification": null, "exit_code": 0,
                "duration_ms": 5
            })
        );
    }

    #[test]
    fn unmatched_deny_and_downgraded_use_the_record_words() {
        let record = ExecRecord::decided(
            2,
            b"/work/tool",
            &[b"tool".to_vec()],
            b"/w",
            Verdict::Run,
            Some(Note {
                decision: None,
                source: Source::Policy,
                rule: None,
                justification: None,
                downgraded: Some("its git dir is writable".into()),
            }),
        );
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["decision"], "unmatched");
        assert_eq!(json["verdict"], "run");
        assert_eq!(json["exit_code"], serde_json::Value::Null);
        assert_eq!(json["downgraded"], "its git dir is writable");
        let denied = ExecRecord::decided(
            3,
            b"/bin/rm",
            &[b"rm".to_vec()],
            b"/w",
            Verdict::Deny {
                reason: b"no".to_vec(),
            },
            Some(Note {
                decision: Some(Decision::Forbidden),
                source: Source::Policy,
                rule: None,
                justification: Some("no".into()),
                downgraded: None,
            }),
        );
        let json = serde_json::to_value(&denied).unwrap();
        assert_eq!(json["verdict"], "deny");
        assert_eq!(json["exit_code"], 126);
        assert!(json.get("downgraded").is_none());
        assert!(json.get("env_dropped").is_none());
    }

    #[test]
    fn env_dropped_lists_names_and_is_absent_when_none_were_dropped() {
        let mut record = ExecRecord::decided(
            5,
            b"/usr/bin/make",
            &[b"make".to_vec()],
            b"/w",
            Verdict::Escalate,
            None,
        );
        record.set_env_dropped(&[]);
        assert!(serde_json::to_value(&record)
            .unwrap()
            .get("env_dropped")
            .is_none());
        record.set_env_dropped(&[b"FOO".to_vec(), b"caf\xe9".to_vec()]);
        assert_eq!(
            serde_json::to_value(&record).unwrap()["env_dropped"],
            serde_json::json!(["FOO", "caf\u{fffd}"])
        );
    }

    #[test]
    fn a_denial_by_the_server_itself_is_recorded_with_source_server_and_its_reason() {
        let record = ExecRecord::decided(
            4,
            b"/usr/bin/git",
            &[b"git".to_vec(), b"push".to_vec()],
            b"/w",
            Verdict::Deny {
                reason: b"too many commands are waiting".to_vec(),
            },
            None,
        );
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": 4, "program": "/usr/bin/git", "argv": ["git", "push"], "cwd": "/w",
                "decision": "unmatched", "verdict": "deny", "source": "server",
                "rule": null, "justification": "too many commands are waiting",
                "exit_code": 126, "duration_ms": 0
            })
        );
    }

    #[test]
    fn a_network_record_serializes_with_the_design_field_names() {
        use execgate_netgate::{ConnectionOwner, ExecRef, NetworkProtocol, Outcome, Via};
        let gate = ConnectionRecord {
            host: "pypi.test".into(),
            port: 443,
            protocol: NetworkProtocol::Https,
            decision: None,
            verdict: Outcome::Connect,
            source: execgate_netgate::Source::User,
            rule: None,
            reason: None,
            end_session: false,
            owner: ConnectionOwner {
                peer: "127.0.0.1:40000".parse().unwrap(),
                listener: "127.0.0.1:3128".parse().unwrap(),
                via: Via::HttpProxy,
            },
            exec: Some(ExecRef {
                id: Some(2),
                command: "/usr/bin/curl https://pypi.test/".into(),
            }),
            asked: true,
            address: Some("127.0.0.1:8443".parse().unwrap()),
            error: None,
            bytes_up: 10,
            bytes_down: 20,
            duration: std::time::Duration::from_millis(7),
        };
        assert_eq!(
            serde_json::to_value(NetworkRecord::from_gate(&gate)).unwrap(),
            serde_json::json!({
                "host": "pypi.test", "port": 443, "protocol": "https", "decision": "unmatched",
                "verdict": "connect", "source": "user", "rule": null, "reason": null,
                "exec_id": 2, "command": "/usr/bin/curl https://pypi.test/", "via": "http-proxy",
                "address": "127.0.0.1:8443", "error": null, "bytes_up": 10, "bytes_down": 20,
                "duration_ms": 7
            })
        );
    }

    #[test]
    fn non_utf8_fields_keep_their_exact_bytes() {
        let (_, argv, _, raw) =
            ExecRecord::text_fields(b"/bin/echo", &[b"echo".to_vec(), vec![0xff]], b"/");
        assert_eq!(argv[1], "\u{fffd}");
        assert_eq!(raw.unwrap().argv[1], vec![0xff]);
    }
}
