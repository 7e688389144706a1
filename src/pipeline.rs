//! The decision pipeline: rules → hooks → approver → verdict, for every exec of a session.
//!
//! [`Pipeline`] is the [`EscalationPolicy`] the `run` command and the MCP server plug into
//! the escalation server. It decides, and it notes *why* (decision, source, rule,
//! justification) in a [`DecisionLog`], which the session's recorder joins with the
//! server's events into [`ExecRecord`]s. It never touches the transport.
//!
//! | rules say       | verdict |
//! |-----------------|---------|
//! | nothing matched | Run (mode `untrusted`: prompt unless known safe) |
//! | `allow`         | Escalate |
//! | `forbidden`     | Deny, with the rule's justification |
//! | `prompt`        | hooks; then the approver; mode `never`: Deny |

use crate::approver::{ApprovalRequest, Approver, Choice, Unavailable};
use crate::report::{PolicyDecision, VerdictSource};
use crate::safe_commands::is_known_safe;
use async_trait::async_trait;
use execgate_escalate_server::{EscalationPolicy, ExecContext, Ruling, Verdict};
use execgate_execpolicy::{amend, render_prefix_rule, CheckOptions, Decision, Evaluation, Policy};
use execgate_hooks::{
    shell_quote_command, HookDecision, HooksConfig, PermissionMode, PermissionRequest,
};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// When a person is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ApprovalMode {
    /// Never ask: commands needing approval are denied.
    Never,
    /// Ask when a rule says `prompt` (the default).
    OnRequest,
    /// Also ask for commands no rule matched, unless they are known safe.
    Untrusted,
}

/// Why an exec got its verdict, as recorded for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionNote {
    /// What the rules said.
    pub decision: PolicyDecision,
    /// Who settled the verdict.
    pub source: VerdictSource,
    /// The deciding rule's location (`file:line`).
    pub rule: Option<String>,
    /// The rule's justification or the reason for a denial.
    pub justification: Option<String>,
}

/// Everything the pipeline needs; fixed for a session.
pub struct Pipeline {
    /// The loaded rules.
    pub policy: Arc<Policy>,
    /// The loaded hooks.
    pub hooks: Arc<HooksConfig>,
    /// The approval mode.
    pub approval: ApprovalMode,
    /// Who is asked.
    pub approver: Arc<dyn Approver>,
    /// The user's approvals file: an "always" answer appends an allow rule here, and an
    /// allow rule from this file settles a `prompt` (see [`Pipeline::saved_approval`]).
    /// `None` disables "always".
    pub user_rules_file: Option<PathBuf>,
    /// True for paths the sandboxed shell can write (invariant 3: a basename rule does not
    /// match a program living there unless `host_executable` lists it).
    pub is_sandbox_writable: Box<dyn Fn(&Path) -> bool + Send + Sync>,
    /// Hook input fields.
    pub session_id: String,
    /// Hook input fields.
    pub turn_id: String,
    /// Hook input fields.
    pub model: String,
    /// Prefixes a person allowed for this session ("s").
    pub session_allowed: Arc<Mutex<Vec<Vec<String>>>>,
}

type Decided = Ruling<DecisionNote>;

impl Pipeline {
    /// Evaluates the rules for `program` + argv[1..].
    fn evaluate(&self, program: &Path, argv: &[Vec<u8>]) -> Evaluation {
        let mut command: Vec<&[u8]> = Vec::with_capacity(argv.len().max(1));
        command.push(program.as_os_str().as_bytes());
        command.extend(argv.iter().skip(1).map(Vec::as_slice));
        let exact = self.policy.check(&command, &CheckOptions::default());
        if exact.decision.is_some() {
            return exact;
        }
        let fallback = self.policy.check(
            &command,
            &CheckOptions {
                resolve_host_executables: true,
            },
        );
        // Invariant 3: a basename rule never *grants* escalation to a program the sandbox
        // could have written (unless `host_executable` lists it), but its `prompt` and
        // `forbidden` still apply: being stricter is always safe.
        if (self.is_sandbox_writable)(program) && !self.host_executable_lists(program) {
            let matched: Vec<_> = fallback
                .matched
                .into_iter()
                .filter(|m| m.decision != Decision::Allow)
                .collect();
            return Evaluation {
                decision: matched.iter().map(|m| m.decision).max(),
                matched,
            };
        }
        fallback
    }

    /// The location of an `allow` rule from the user's approvals file among the matches.
    fn saved_approval(&self, evaluation: &Evaluation) -> Option<String> {
        let file = self.user_rules_file.as_deref()?;
        evaluation
            .matched
            .iter()
            .find(|m| m.decision == Decision::Allow && Path::new(&*m.source.file) == file)
            .map(|m| format!("{}:{}", m.source.file, m.source.line))
    }

    fn host_executable_lists(&self, program: &Path) -> bool {
        let Some(name) = program.file_name().and_then(OsStr::to_str) else {
            return false;
        };
        self.policy
            .host_executables()
            .get(name)
            .is_some_and(|paths| paths.iter().any(|p| p == program))
    }

    async fn decide_exec(&self, exec: &ExecContext) -> Decided {
        let request = &exec.request;
        let evaluation = self.evaluate(&exec.program, &request.argv);
        let rule = evaluation.deciding_rule();
        let location = rule.map(|r| format!("{}:{}", r.source.file, r.source.line));
        let justification = rule.and_then(|r| r.justification.clone());
        let note = |decision, source, justification: Option<String>| DecisionNote {
            decision,
            source,
            rule: location.clone(),
            justification,
        };
        match evaluation.decision {
            Some(Decision::Allow) => Decided::new(
                Verdict::Escalate,
                note(PolicyDecision::Allow, VerdictSource::Policy, justification),
            ),
            Some(Decision::Forbidden) => {
                let reason = justification.clone().unwrap_or_else(|| {
                    format!("forbidden by rule {}", location.as_deref().unwrap_or("?"))
                });
                Decided::new(
                    deny(&reason),
                    note(
                        PolicyDecision::Forbidden,
                        VerdictSource::Policy,
                        Some(reason),
                    ),
                )
            }
            Some(Decision::Prompt) if self.saved_approval(&evaluation).is_some() => {
                // The person answered "always" for this prefix earlier: that settles a
                // prompt (never a `forbidden`, which would be the decision instead).
                let saved = self.saved_approval(&evaluation);
                Decided::new(
                    Verdict::Escalate,
                    DecisionNote {
                        decision: PolicyDecision::Prompt,
                        source: VerdictSource::Policy,
                        rule: saved,
                        justification,
                    },
                )
            }
            Some(Decision::Prompt) => {
                let prefix = rule.map(|r| r.matched_prefix.clone()).unwrap_or_default();
                self.approve(
                    exec,
                    PolicyDecision::Prompt,
                    prefix,
                    location,
                    justification,
                )
                .await
            }
            None => {
                if self.approval == ApprovalMode::Untrusted
                    && !is_known_safe(&exec.program, &request.argv)
                {
                    // No rule: the remembered prefix is the whole command.
                    let mut prefix = vec![exec.program.to_string_lossy().into_owned()];
                    prefix.extend(
                        request
                            .argv
                            .iter()
                            .skip(1)
                            .map(|a| String::from_utf8_lossy(a).into_owned()),
                    );
                    self.approve(exec, PolicyDecision::Unmatched, prefix, None, None)
                        .await
                } else {
                    Decided::new(
                        Verdict::Run,
                        note(PolicyDecision::Unmatched, VerdictSource::Policy, None),
                    )
                }
            }
        }
    }

    /// The approval path: session-allowed prefixes, hooks, then the approver.
    async fn approve(
        &self,
        exec: &ExecContext,
        decision: PolicyDecision,
        prefix: Vec<String>,
        location: Option<String>,
        justification: Option<String>,
    ) -> Decided {
        let note = |source, justification: Option<String>| DecisionNote {
            decision,
            source,
            rule: location.clone(),
            justification,
        };
        if !prefix.is_empty()
            && self
                .session_allowed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&prefix)
        {
            return Decided::new(Verdict::Escalate, note(VerdictSource::User, justification));
        }

        let request = &exec.request;
        let args: Vec<&[u8]> = request.argv.iter().skip(1).map(Vec::as_slice).collect();
        let command = shell_quote_command(exec.program.as_os_str().as_bytes(), &args);
        let cwd = PathBuf::from(OsStr::from_bytes(&request.cwd));

        // Hooks first.
        let mut hook_request = PermissionRequest::new(cwd.clone(), command.clone());
        hook_request.session_id = self.session_id.clone();
        hook_request.turn_id = self.turn_id.clone();
        hook_request.model = self.model.clone();
        hook_request.permission_mode = if self.approval == ApprovalMode::Never {
            PermissionMode::BypassPermissions
        } else {
            PermissionMode::Default
        };
        let outcome = self.hooks.permission_request(&hook_request).await;
        match outcome.decision {
            Some(HookDecision::Allow) => {
                return Decided::new(Verdict::Escalate, note(VerdictSource::Hook, justification))
            }
            Some(HookDecision::Deny) => {
                let reason = outcome
                    .message
                    .unwrap_or_else(|| "PermissionRequest hook denied approval".to_string());
                let decided = Decided::new(
                    deny(&reason),
                    note(VerdictSource::Hook, Some(reason.clone())),
                );
                return if outcome.interrupt {
                    decided.ending_session(format!("hook: {reason}"))
                } else {
                    decided
                };
            }
            None => {}
        }

        if self.approval == ApprovalMode::Never {
            let reason = match &location {
                Some(loc) => format!("approval required by rule {loc}; approval mode is never"),
                None => "approval required; approval mode is never".to_string(),
            };
            return Decided::new(
                deny(&reason),
                note(VerdictSource::ApprovalMode, Some(reason)),
            );
        }

        let can_remember = !prefix.is_empty() && self.user_rules_file.is_some();
        let ask = ApprovalRequest {
            command,
            cwd: cwd.to_string_lossy().into_owned(),
            rule: location.clone(),
            justification: justification.clone(),
            can_remember,
        };
        let escalate = |justification| {
            Decided::new(Verdict::Escalate, note(VerdictSource::User, justification))
        };
        match self.approver.ask(&ask).await {
            Ok(Choice::Once) => escalate(justification),
            Ok(Choice::Session) => {
                if !prefix.is_empty() {
                    self.session_allowed
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(prefix);
                }
                escalate(justification)
            }
            Ok(Choice::Always) => match self.remember(&prefix, &ask) {
                Ok(()) => escalate(justification),
                Err(err) => {
                    let reason = format!("could not save the rule: {err:#}");
                    Decided::new(deny(&reason), note(VerdictSource::User, Some(reason)))
                }
            },
            Ok(Choice::Deny) => {
                let reason = "denied by the user".to_string();
                Decided::new(deny(&reason), note(VerdictSource::User, Some(reason)))
            }
            Ok(Choice::DenyAndEnd) => {
                let reason = "denied by the user; session ended".to_string();
                Decided::new(
                    deny(&reason),
                    note(VerdictSource::User, Some(reason.clone())),
                )
                .ending_session(reason)
            }
            Err(Unavailable::NoApprover(reason)) => {
                Decided::new(deny(&reason), note(VerdictSource::User, Some(reason)))
            }
        }
    }

    /// Appends an allow rule for `prefix` to the user rules file, with a comment saying
    /// when and why (nothing when the file already holds that exact rule).
    fn remember(&self, prefix: &[String], ask: &ApprovalRequest) -> anyhow::Result<()> {
        use anyhow::Context;
        let path = self
            .user_rules_file
            .as_ref()
            .context("no user rules file")?;
        let rule = render_prefix_rule(prefix, Decision::Allow, None)?;
        let comment = format!(
            "Added by execgate on {}: \"always\" answered for `{}` (asked by {}).",
            humantime_now(),
            ask.command,
            ask.rule.as_deref().unwrap_or("no rule")
        );
        amend::append_rule(path, &rule, Some(&comment))?;
        Ok(())
    }
}

/// The current UTC time as `YYYY-MM-DD HH:MM:SS UTC`.
fn humantime_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn deny(reason: &str) -> Verdict {
    Verdict::Deny {
        reason: reason.as_bytes().to_vec(),
    }
}

#[async_trait]
impl EscalationPolicy for Pipeline {
    type Note = DecisionNote;

    async fn decide(&self, exec: &ExecContext) -> Ruling<DecisionNote> {
        self.decide_exec(exec).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_has_the_documented_shape() {
        let now = humantime_now();
        assert_eq!(now.len(), "2026-11-23 09:00:00 UTC".len());
        assert!(now.ends_with(" UTC"));
        assert_eq!(&now[4..5], "-");
    }
}
