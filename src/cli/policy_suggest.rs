//! `execgate policy suggest`: read an audit log, keep what a person or a hook decided, and
//! print the rules `execgate_execpolicy::suggest` learns from it.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use execgate_execpolicy::suggest::{
    suggest, DecidedBy, Observations, ObservedCommand, ObservedConnection, Outcome,
};
use execgate_execpolicy::Policy;

use crate::report::read::{read_audit_log, AuditEntry};

/// Arguments of `execgate policy suggest`.
#[derive(Debug, Args)]
pub struct SuggestArgs {
    /// The audit log a session wrote (`execgate run --audit-log FILE`).
    #[arg(long = "from-audit", value_name = "FILE")]
    from_audit: PathBuf,
    /// The `.rules` files the suggestions will be used with (repeatable): nothing is
    /// suggested that they overrule or already ask for.
    #[arg(short = 'r', long = "rules", value_name = "FILE")]
    rules: Vec<PathBuf>,
    /// Only the records of this session (repeatable; the `session` field of each line).
    #[arg(long = "session", value_name = "ID")]
    sessions: Vec<String>,
}

/// Runs `execgate policy suggest`: prints a rules file on stdout.
pub fn run(args: SuggestArgs) -> anyhow::Result<ExitCode> {
    let file = std::fs::File::open(&args.from_audit)
        .with_context(|| format!("cannot open the audit log {}", args.from_audit.display()))?;
    let name = args.from_audit.display().to_string();
    let entries = read_audit_log(std::io::BufReader::new(file), &name)?;
    let existing = if args.rules.is_empty() {
        None
    } else {
        Some(Policy::from_files(&args.rules)?)
    };
    let observations = observe(&entries, &args.sessions, name);
    let text = suggest(&observations, existing.as_ref());
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// The commands and connections a person or a hook decided, from `decided` records.
fn observe(entries: &[AuditEntry], only: &[String], source: String) -> Observations {
    let wanted = |session: &str| only.is_empty() || only.iter().any(|s| s == session);
    let mut sessions = BTreeSet::new();
    let mut observations = Observations {
        source,
        ..Observations::default()
    };
    for entry in entries {
        match entry {
            AuditEntry::Exec(exec) if wanted(&exec.session) => {
                sessions.insert(exec.session.as_str());
                // `exited` repeats a `decided` record with the exit status.
                if exec.event != "decided" {
                    continue;
                }
                let Some(by) = decided_by(&exec.source) else {
                    continue;
                };
                let outcome = match exec.verdict.as_str() {
                    "escalate" => Outcome::Approved(by),
                    "deny" => Outcome::Denied(by),
                    // Ran inside the sandbox (or a word this reader does not know):
                    // nothing to learn.
                    _ => continue,
                };
                observations.commands.push(ObservedCommand {
                    program: exec.program.clone(),
                    args: exec.argv.iter().skip(1).cloned().collect(),
                    exact: exec.raw.is_none(),
                    outcome,
                    asked_by: (exec.decision == "prompt")
                        .then(|| exec.rule.clone())
                        .flatten(),
                });
            }
            AuditEntry::Network(network) if wanted(&network.session) => {
                sessions.insert(network.session.as_str());
                let Some(by) = decided_by(&network.source) else {
                    continue;
                };
                // The network gate's record words (`netgate::Outcome`); any other word
                // is not an answer this reader can learn from.
                let outcome = match network.verdict.as_str() {
                    "connect" => Outcome::Approved(by),
                    "deny" => Outcome::Denied(by),
                    _ => continue,
                };
                observations.connections.push(ObservedConnection {
                    host: network.host.clone(),
                    port: network.port,
                    protocol: network.protocol.clone(),
                    outcome,
                });
            }
            _ => {}
        }
    }
    observations.sessions = sessions.len();
    observations
}

/// Who settled a record, when it was a person (`user`) or a hook.
fn decided_by(source: &str) -> Option<DecidedBy> {
    match source {
        "user" => Some(DecidedBy::Person),
        "hook" => Some(DecidedBy::Hook),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::read::AuditNetwork;

    fn connection(host: &str, verdict: &str, source: &str) -> AuditEntry {
        AuditEntry::Network(AuditNetwork {
            session: "s".into(),
            host: host.into(),
            port: Some(443),
            protocol: "https".into(),
            verdict: verdict.into(),
            source: source.into(),
        })
    }

    #[test]
    fn connections_are_learned_from_the_gates_words_as_answered_by_people_and_hooks() {
        let entries = [
            connection("a.example", "connect", "user"),
            connection("b.example", "deny", "hook"),
            // Not the gate's words: nothing to learn, whoever is named.
            connection("c.example", "allow", "user"),
            connection("d.example", "escalate", "hook"),
            // Settled by the rules or by the gate itself: nothing a person approved.
            connection("e.example", "connect", "policy"),
            connection("f.example", "deny", "gate"),
        ];
        let observed = observe(&entries, &[], "log".into());
        let got: Vec<(&str, Outcome)> = observed
            .connections
            .iter()
            .map(|c| (c.host.as_str(), c.outcome))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a.example", Outcome::Approved(DecidedBy::Person)),
                ("b.example", Outcome::Denied(DecidedBy::Hook)),
            ]
        );
        assert_eq!(observed.sessions, 1);
    }
}
