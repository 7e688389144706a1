//! Reading an audit log back (`execgate policy suggest --from-audit FILE`).
//!
//! Fields are read by name and words as words (`escalate`, `hook`, ...), so the reader does
//! not depend on how the writing side types them. A line that is not a record fails the
//! whole read, naming the line: suggestions from a file that was cut or edited by hand
//! would be suggestions from something else.

use std::io::BufRead;

use anyhow::Context;
use serde::Deserialize;

/// One line of an audit log, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditEntry {
    /// An exec record.
    Exec(AuditExec),
    /// A decided network connection (the network gate's `network` records).
    Network(AuditNetwork),
}

/// The fields of an exec record that reading an audit log needs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AuditExec {
    /// The session it belongs to.
    pub session: String,
    /// `decided` (every exec) or `exited` (escalated ones, with their status).
    pub event: String,
    /// Absolute program path (lossy UTF-8 when `raw` is present).
    pub program: String,
    /// argv, `argv[0]` included (lossy when `raw` is present).
    pub argv: Vec<String>,
    /// `allow`, `prompt`, `forbidden` or `unmatched`.
    pub decision: String,
    /// `run`, `escalate` or `deny`.
    pub verdict: String,
    /// `policy`, `hook`, `user` or `approval-mode`.
    pub source: String,
    /// Where the deciding rule is written (`file:line`).
    #[serde(default)]
    pub rule: Option<String>,
    /// Present when program, argv or cwd is not UTF-8 (the text fields are then lossy).
    #[serde(default)]
    pub raw: Option<serde_json::Value>,
}

/// The fields of a network record that reading an audit log needs: the host a program
/// asked for, port, protocol, what happened and who settled it (design "`run --json`").
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AuditNetwork {
    /// The session it belongs to.
    pub session: String,
    /// The host as the program named it.
    pub host: String,
    /// The port, when recorded.
    #[serde(default)]
    pub port: Option<u16>,
    /// `http`, `https`, `socks5_tcp` or `socks5_udp`.
    pub protocol: String,
    /// What happened (`deny` for a refused connection).
    pub verdict: String,
    /// Who settled it.
    pub source: String,
}

/// Longest audit line read back: a record of a command at the kernel's argv limit, escaped.
const MAX_AUDIT_LINE: u64 = 64 << 20;

/// Reads every line of an audit log (`name` is how errors call it). Fails on the first line
/// that is not an audit record, naming the line: suggestions from a file that was cut or
/// edited by hand would be suggestions from something else.
pub fn read_audit_log(mut reader: impl BufRead, name: &str) -> anyhow::Result<Vec<AuditEntry>> {
    let mut entries = Vec::new();
    let mut line = Vec::new();
    for number in 1.. {
        line.clear();
        let read = std::io::Read::take(&mut reader, MAX_AUDIT_LINE + 1)
            .read_until(b'\n', &mut line)
            .with_context(|| format!("cannot read the audit log {name}"))?;
        if read == 0 {
            break;
        }
        if line.len() as u64 > MAX_AUDIT_LINE {
            anyhow::bail!("{name}:{number}: line longer than {MAX_AUDIT_LINE} bytes; this is not an audit log written by --audit-log");
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        entries.push(parse_audit_line(text).with_context(|| {
            format!("{name}:{number}: not an audit record; pass a file written by `execgate run --audit-log`")
        })?);
    }
    Ok(entries)
}

fn parse_audit_line(text: &[u8]) -> anyhow::Result<AuditEntry> {
    let value: serde_json::Value = serde_json::from_slice(text)?;
    let object = value.as_object().context("a record is a JSON object")?;
    if object.contains_key("argv") {
        Ok(AuditEntry::Exec(serde_json::from_value(value)?))
    } else if object.contains_key("host") {
        Ok(AuditEntry::Network(serde_json::from_value(value)?))
    } else {
        anyhow::bail!("it has neither `argv` (an exec) nor `host` (a connection)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_and_network_lines_read_back_field_by_field() {
        let exec = r#"{"session":"s1","event":"decided","id":3,"program":"/usr/bin/git","argv":["git","\ufffd"],"cwd":"/w","decision":"unmatched","verdict":"deny","source":"approval-mode","rule":null,"justification":"no","exit_code":126,"duration_ms":0,"raw":{"program":[47],"argv":[[103],[255]],"cwd":[47]}}"#;
        let network = r#"{"session":"s1","host":"example.com","port":443,"protocol":"https","decision":"prompt","verdict":"connect","source":"user","rule":null,"exec_id":3,"bytes_up":0}"#;
        let text = format!("{exec}\n\n{network}\n");
        let entries = read_audit_log(text.as_bytes(), "a.jsonl").unwrap();
        assert_eq!(
            entries,
            vec![
                AuditEntry::Exec(AuditExec {
                    session: "s1".into(),
                    event: "decided".into(),
                    program: "/usr/bin/git".into(),
                    argv: vec!["git".into(), "\u{fffd}".into()],
                    decision: "unmatched".into(),
                    verdict: "deny".into(),
                    source: "approval-mode".into(),
                    rule: None,
                    raw: Some(serde_json::json!({
                        "program": [47], "argv": [[103], [255]], "cwd": [47]
                    })),
                }),
                AuditEntry::Network(AuditNetwork {
                    session: "s1".into(),
                    host: "example.com".into(),
                    port: Some(443),
                    protocol: "https".into(),
                    verdict: "connect".into(),
                    source: "user".into(),
                }),
            ]
        );
    }

    #[test]
    fn a_line_that_is_not_a_record_fails_naming_it() {
        let text = "{\"session\":\"s\",\"event\":\"decided\"}\n";
        let err = read_audit_log(text.as_bytes(), "a.jsonl").unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "a.jsonl:1: not an audit record; pass a file written by `execgate run --audit-log`: it has neither `argv` (an exec) nor `host` (a connection)"
        );
        let err = read_audit_log("{\"argv\": [\n".as_bytes(), "a.jsonl").unwrap_err();
        assert!(
            format!("{err:#}").starts_with("a.jsonl:1: not an audit record; "),
            "{err:#}"
        );
    }
}
