//! The `shell` tool's `structuredContent`: what the model actually reads.
//!
//! Codex and Claude Code both hand the model `structuredContent` and drop the text item, so
//! it must stay small whatever the script does: a loop of a thousand commands is a count,
//! not a thousand records. The whole object stays within `--max-output-bytes` (at least
//! [`MIN_BYTES`]): output head and tail as in the text item, the exit status, counts by
//! verdict, and the denied and escalated commands with their reasons, as many as fit in a
//! quarter of the budget, with a count of the rest. The full record of every exec goes to
//! `--audit-log`.

use super::output;
use crate::report::{ExecRecord, RunReport};
use execgate_decide::{decision_word, Source};
use execgate_escalate_server::Verdict;
use serde::Serialize;
use serde_json::Value;

/// The smallest budget: below it the fixed fields alone would not fit.
pub const MIN_BYTES: usize = 1024;
/// Longest command and reason shown per listed exec (head and tail kept).
const FIELD_BYTES: usize = 256;

/// Execs by verdict.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    /// Ran inside the sandbox.
    pub run: usize,
    /// Ran outside it.
    pub escalate: usize,
    /// Not run.
    pub deny: usize,
}

/// A denied or escalated exec, as the model needs it.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Listed {
    /// Program path and arguments, shell-quoted (capped).
    pub command: String,
    /// What the rules said (`unmatched` when no rule matched).
    pub decision: &'static str,
    /// Who settled it.
    pub source: Source,
    /// The deciding rule (`file:line`).
    pub rule: Option<String>,
    /// Why it was denied (denials only; capped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The escalated command's exit code (escalations only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Request variables the escalated command was not given (escalations only, when any;
    /// the names, capped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_dropped: Option<Vec<String>>,
}

/// The structured result.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// The shell's exit code (130 when the call was ended, 124 on timeout).
    pub exit_code: Option<i32>,
    /// The signal that killed the shell.
    pub signal: Option<i32>,
    /// Whether the call hit its timeout.
    pub timed_out: bool,
    /// Whether a hook, a person or the client ended the call.
    pub interrupted: bool,
    /// Standard output, head and tail.
    pub stdout: String,
    /// Standard error, head and tail.
    pub stderr: String,
    /// How many execs were decided.
    pub execs_total: usize,
    /// Those execs by verdict.
    pub verdicts: Counts,
    /// Denied execs, in order, as many as fit.
    pub denied: Vec<Listed>,
    /// Escalated execs, in order, as many as fit.
    pub escalated: Vec<Listed>,
    /// Denied and escalated execs left out of the lists.
    pub not_listed: usize,
    /// The network gate's connections (a gated call only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkCounts>,
}

/// A gated call's connections, counted.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct NetworkCounts {
    /// Connections the gate decided.
    pub connections: usize,
    /// Those that were opened.
    pub connect: usize,
    /// Those that were refused.
    pub deny: usize,
    /// Questions the client was asked (elicitations), one per destination decided by the
    /// person.
    pub elicitations: usize,
    /// Refused destinations (`protocol://host:port`, each once), as many as fit.
    pub denied: Vec<String>,
}

fn listed(record: &ExecRecord) -> Listed {
    let command = match &record.raw {
        Some(raw) => {
            let args: Vec<&[u8]> = raw.argv.iter().skip(1).map(Vec::as_slice).collect();
            execgate_hooks::shell_quote_command(&raw.program, &args)
        }
        None => {
            let args: Vec<&[u8]> = record.argv.iter().skip(1).map(|a| a.as_bytes()).collect();
            execgate_hooks::shell_quote_command(record.program.as_bytes(), &args)
        }
    };
    let deny = matches!(record.verdict, Verdict::Deny { .. });
    Listed {
        command: output::cap(&command, FIELD_BYTES),
        decision: decision_word(record.decision),
        source: record.source,
        rule: record.rule.clone(),
        reason: deny
            .then(|| {
                record
                    .justification
                    .as_deref()
                    .map(|r| output::cap(r, FIELD_BYTES))
            })
            .flatten(),
        exit_code: if deny { None } else { record.exit_code },
        env_dropped: record
            .env_dropped
            .as_ref()
            .map(|names| names.iter().map(|n| output::cap(n, FIELD_BYTES)).collect()),
    }
}

fn size(value: &impl Serialize) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |v| v.len())
}

/// The summary of `report` within `max` bytes of JSON (at least [`MIN_BYTES`]).
pub fn summarize(report: &RunReport, max: usize) -> Value {
    let max = max.max(MIN_BYTES);
    let mut summary = Summary {
        exit_code: report.exit_code,
        signal: report.signal,
        timed_out: report.timed_out,
        interrupted: report.interrupted,
        stdout: String::new(),
        stderr: String::new(),
        execs_total: report.execs.len(),
        verdicts: Counts::default(),
        denied: Vec::new(),
        escalated: Vec::new(),
        not_listed: 0,
        network: None,
    };
    let list_budget = max / 4;
    let mut list_bytes = 0;
    if let Some(records) = &report.network {
        let mut counts = NetworkCounts {
            connections: records.len(),
            ..NetworkCounts::default()
        };
        for record in records {
            if record.verdict == "connect" {
                counts.connect += 1;
            } else {
                counts.deny += 1;
                let target = output::cap(&record.target(), FIELD_BYTES);
                let bytes = target.len() + 3;
                if !counts.denied.contains(&target) && list_bytes + bytes <= list_budget {
                    list_bytes += bytes;
                    counts.denied.push(target);
                }
            }
            // Only the connection whose question was answered names its command.
            if record.source == "user" && record.command.is_some() {
                counts.elicitations += 1;
            }
        }
        summary.network = Some(counts);
    }
    for record in &report.execs {
        let list = match record.verdict {
            Verdict::Run => {
                summary.verdicts.run += 1;
                continue;
            }
            Verdict::Escalate => {
                summary.verdicts.escalate += 1;
                &mut summary.escalated
            }
            Verdict::Deny { .. } => {
                summary.verdicts.deny += 1;
                &mut summary.denied
            }
        };
        let entry = listed(record);
        let bytes = size(&entry) + 1;
        // The first one always gets in if it can: one named denial beats a bare count.
        if list_bytes + bytes <= list_budget || (list_bytes == 0 && bytes <= max / 2) {
            list_bytes += bytes;
            list.push(entry);
        } else {
            summary.not_listed += 1;
        }
    }
    // The output shares what is left; JSON escaping can make text longer than its bytes,
    // so shrink until the whole object fits.
    let mut room = max.saturating_sub(size(&summary));
    loop {
        let (out_cap, err_cap) = split(report.stdout.len(), report.stderr.len(), room);
        summary.stdout = capped(&report.stdout, out_cap);
        summary.stderr = capped(&report.stderr, err_cap);
        let total = size(&summary);
        if total <= max || room == 0 {
            break;
        }
        room = room.saturating_sub(total - max + 64);
    }
    serde_json::to_value(&summary).unwrap_or(Value::Null)
}

/// Caps for stdout and stderr sharing `room` bytes: each gets half, and what one does not
/// need goes to the other.
fn split(out: usize, err: usize, room: usize) -> (usize, usize) {
    let half = room / 2;
    match (out <= half, err <= half) {
        (true, _) => (out, room - out),
        (_, true) => (room - err, err),
        _ => (half, room - half),
    }
}

/// `text` capped at about `max` bytes including the cut marker; empty when nothing fits.
fn capped(text: &str, max: usize) -> String {
    const MARKER: usize = 64;
    if text.len() <= max {
        text.to_string()
    } else if max <= MARKER {
        String::new()
    } else {
        output::cap(text, max - MARKER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use execgate_decide::Note;
    use execgate_execpolicy::Decision;
    use serde_json::json;

    #[derive(Clone, Copy)]
    enum Kind {
        Run,
        Escalate,
        Deny,
    }

    fn record(id: u64, program: &str, arg: &str, kind: Kind) -> ExecRecord {
        let (verdict, decision) = match kind {
            Kind::Run => (Verdict::Run, None),
            Kind::Escalate => (Verdict::Escalate, Some(Decision::Allow)),
            Kind::Deny => (
                Verdict::Deny {
                    reason: b"no".to_vec(),
                },
                Some(Decision::Forbidden),
            ),
        };
        let name = program.rsplit('/').next().unwrap();
        let note = Note {
            decision,
            source: Source::Policy,
            rule: decision.map(|_| "/r.rules:1".to_string()),
            justification: matches!(kind, Kind::Deny).then(|| "no".to_string()),
            downgraded: None,
        };
        let argv = [name.as_bytes().to_vec(), arg.as_bytes().to_vec()];
        let mut record =
            ExecRecord::decided(id, program.as_bytes(), &argv, b"/w", verdict, Some(note));
        if matches!(kind, Kind::Escalate) {
            record.exit_code = Some(0);
        }
        record
    }

    fn report(execs: Vec<ExecRecord>, stdout: String, stderr: String) -> RunReport {
        RunReport {
            exit_code: Some(0),
            signal: None,
            stdout,
            stderr,
            timed_out: false,
            interrupted: false,
            execs,
            network: None,
        }
    }

    #[test]
    fn small_results_are_whole() {
        let execs = vec![
            record(0, "/bin/true", "a", Kind::Run),
            record(1, "/usr/bin/rm", "-rf /", Kind::Deny),
            record(2, "/usr/bin/date", "+%Y", Kind::Escalate),
        ];
        let value = summarize(&report(execs, "out\n".into(), "err\n".into()), 65536);
        assert_eq!(
            value,
            json!({
                "exit_code": 0, "signal": null, "timed_out": false, "interrupted": false,
                "stdout": "out\n", "stderr": "err\n", "execs_total": 3,
                "verdicts": {"run": 1, "escalate": 1, "deny": 1},
                "denied": [{"command": "/usr/bin/rm '-rf /'", "decision": "forbidden",
                            "source": "policy", "rule": "/r.rules:1", "reason": "no"}],
                "escalated": [{"command": "/usr/bin/date '+%Y'", "decision": "allow",
                               "source": "policy", "rule": "/r.rules:1", "exit_code": 0}],
                "not_listed": 0,
            })
        );
    }

    #[test]
    fn a_thousand_execs_and_a_flood_of_output_stay_within_the_budget() {
        let mut execs = Vec::new();
        for i in 0..1000 {
            let verdict = match i % 3 {
                0 => Kind::Run,
                1 => Kind::Deny,
                _ => Kind::Escalate,
            };
            execs.push(record(i, "/usr/bin/x", &"y".repeat(1000), verdict));
        }
        let flood = "\u{1}".repeat(100_000);
        for max in [0, 1024, 4096, 65536] {
            let value = summarize(&report(execs.clone(), flood.clone(), flood.clone()), max);
            let bytes = serde_json::to_vec(&value).unwrap().len();
            assert!(bytes <= max.max(MIN_BYTES), "{bytes} > {max}");
            assert_eq!(value["execs_total"], 1000);
            assert_eq!(
                value["verdicts"],
                json!({"run": 334, "escalate": 333, "deny": 333})
            );
            let listed = value["denied"].as_array().unwrap().len()
                + value["escalated"].as_array().unwrap().len();
            assert_eq!(listed + value["not_listed"].as_u64().unwrap() as usize, 666);
            assert!(listed >= 1, "{max}");
        }
    }

    #[test]
    fn output_room_goes_where_it_is_needed() {
        assert_eq!(split(10, 5000, 1000), (10, 990));
        assert_eq!(split(5000, 10, 1000), (990, 10));
        assert_eq!(split(5000, 5000, 1000), (500, 500));
    }
}
