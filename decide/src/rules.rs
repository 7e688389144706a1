//! What the rules say about one exec: its program and argv checked against the policy, with
//! design invariant 3 applied (a basename rule never grants `allow` to a program the
//! sandbox could have written, unless `host_executable` lists that path).

use execgate_execpolicy::{CheckOptions, Decision, Evaluation, Policy, RuleMatch};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Evaluates the rules for `program` + `argv[1..]`: rules naming the exact path first, then
/// rules written for the program's basename (`host_executable` fallback).
/// `sandbox_writable(program)` is asked only when that fallback is needed.
pub(crate) fn evaluate(
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
