//! What the rules say about one exec: its program and argv checked against the policy under
//! the name it was invoked by and the file that runs (design invariant 2), with design
//! invariant 3 applied to each (a basename rule never grants `allow` to a program the
//! sandbox could have written, unless `host_executable` lists that path).

use execgate_escalate_server::{Argv0, ExecContext};
use execgate_execpolicy::{CheckOptions, Decision, Evaluation, Policy, RuleMatch};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What the rules say about one exec, and the name it is judged (and escalated) by.
pub(crate) struct Judged {
    /// Every matching rule of both names, strictest decision first.
    pub(crate) evaluation: Evaluation,
    /// Whether an escalation runs the program by its invoked name: only when a rule
    /// written for that name matched, so the name a multi-call program acts by is one the
    /// rules judged.
    pub(crate) argv0: Argv0,
}

impl Judged {
    /// The path the command runs by, for what hooks and the person are shown.
    pub(crate) fn name<'a>(&self, exec: &'a ExecContext) -> &'a Path {
        match (self.argv0, exec.invoked.as_deref()) {
            (Argv0::Invoked, Some(invoked)) => invoked,
            _ => &exec.program,
        }
    }
}

/// Evaluates the rules for an exec under the name it was invoked by (when the server gave
/// one: `/bin/sh`, `/usr/bin/python3`) and under the file that runs (`/usr/bin/dash`,
/// `/usr/bin/python3.11`), each with [`evaluate_name`], and merges them: every rule once,
/// the strictest decision wins, so a `forbidden` rule written for either name applies.
///
/// A decision reached only through the resolved file's rules says nothing about the
/// invoked name, so such an exec escalates by the resolved name ([`Argv0::Resolved`]):
/// `/usr/lib/git-core/git-difftool` is the host's own link to git, and a rule allowing
/// `git diff` must not run git as difftool.
pub(crate) fn evaluate(
    policy: &Policy,
    exec: &ExecContext,
    sandbox_writable: &dyn Fn(&Path) -> bool,
) -> Judged {
    let argv = &exec.request.argv;
    let resolved = evaluate_name(policy, &exec.program, argv, sandbox_writable);
    match exec.invoked.as_deref() {
        Some(invoked) if invoked != exec.program => {
            let by_name = evaluate_name(policy, invoked, argv, sandbox_writable);
            let argv0 = if by_name.decision.is_some() {
                Argv0::Invoked
            } else {
                Argv0::Resolved
            };
            Judged {
                evaluation: by_name.merge(resolved),
                argv0,
            }
        }
        _ => Judged {
            evaluation: resolved,
            argv0: Argv0::Resolved,
        },
    }
}

/// Evaluates the rules for `program` + `argv[1..]`: rules naming the exact path first, then
/// rules written for the program's basename (`host_executable` fallback).
/// `sandbox_writable(program)` is asked only when that fallback is needed.
fn evaluate_name(
    policy: &Policy,
    program: &Path,
    argv: &[Vec<u8>],
    sandbox_writable: &dyn Fn(&Path) -> bool,
) -> Evaluation {
    let mut command: Vec<&[u8]> = Vec::with_capacity(argv.len().max(1));
    command.push(program.as_os_str().as_bytes());
    command.extend(argv.iter().skip(1).map(Vec::as_slice));
    let exact = policy.check(&command, &CheckOptions::default());
    if exact.decision.is_some() {
        return exact;
    }
    let fallback = policy.check(
        &command,
        &CheckOptions {
            resolve_host_executables: true,
        },
    );
    // Being stricter is always safe: the fallback's `prompt` and `forbidden` still apply.
    if sandbox_writable(program) && !host_executable_lists(policy, program) {
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

/// Whether a `host_executable` for the program's basename lists exactly `program`.
fn host_executable_lists(policy: &Policy, program: &Path) -> bool {
    let Some(name) = program.file_name().and_then(OsStr::to_str) else {
        return false;
    };
    policy
        .host_executables()
        .get(name)
        .is_some_and(|paths| paths.iter().any(|p| p == program))
}

/// Where a rule is written, as `file:line`.
pub(crate) fn location(rule: &RuleMatch) -> String {
    format!("{}:{}", rule.source.file, rule.source.line)
}

/// The location of an `allow` rule from the user's approvals file among the matches: a
/// person's earlier "always" for this prefix.
pub(crate) fn saved_approval(evaluation: &Evaluation, approvals_file: &Path) -> Option<String> {
    evaluation
        .matched
        .iter()
        .find(|m| m.decision == Decision::Allow && Path::new(&*m.source.file) == approvals_file)
        .map(location)
}
