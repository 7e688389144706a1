//! Names that resolve elsewhere: a rule written for `sh` where `sh` runs `/usr/bin/dash`.
//!
//! execgate checks a command against the name it was invoked by (the `PATH` result, before
//! symlinks are resolved) and against the file that really runs; the strictest decision
//! wins (design invariant 2). So when a name is a link to a file with another name, rules
//! for either name decide it, and running the target by its own name is not decided by the
//! rules for the link. The author should know both names.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::{Finding, HostLookup, LintCode};
use crate::decision::Decision;
use crate::paths;
use crate::policy::Policy;
use crate::render::quote;

pub(super) fn resolves_elsewhere(policy: &Policy, host: &dyn HostLookup) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for rule in policy.rules() {
        for name in rule.pattern[0].alternatives() {
            if !seen.insert(name) {
                continue;
            }
            let finding = if name.contains('/') {
                absolute(policy, name, host)
            } else {
                bare(policy, name, host)
            };
            if let Some((message, fix)) = finding {
                out.push(Finding::new(
                    &rule.source,
                    LintCode::ResolvesElsewhere,
                    message,
                    fix,
                ));
            }
        }
    }
    let mut declared: Vec<(&String, &Vec<PathBuf>)> = policy.host_executables.iter().collect();
    declared.sort();
    for (name, listed) in declared {
        let Some(source) = policy.host_executable_source(name) else {
            continue;
        };
        for path in listed {
            let Some(real) = host.canonicalize(path) else {
                continue;
            };
            if &real == path || listed.contains(&real) {
                continue;
            }
            let shown = quote(&path.to_string_lossy());
            let real_shown = quote(&real.to_string_lossy());
            let real_name = real_name(&real);
            let message = if real_name.as_deref() == Some(name.as_str()) {
                format!(
                    "host_executable path {shown} is {real_shown} on this machine: a command that runs {real_shown} by that path gets the rules for {} only if {real_shown} is listed too",
                    quote(name)
                )
            } else {
                format!(
                    "host_executable path {shown} runs {real_shown} on this machine: the file that runs is also judged by the rules for {}",
                    quote(real_name.as_deref().unwrap_or("?"))
                )
            };
            out.push(Finding::new(
                source,
                LintCode::ResolvesElsewhere,
                message,
                format!("add {real_shown} to paths if it is the program you mean"),
            ));
        }
    }
    out
}

fn real_name(path: &Path) -> Option<String> {
    paths::basename(path).map(str::to_owned)
}

/// A rule for a bare name: does the name run a file with another name?
fn bare(policy: &Policy, name: &str, host: &dyn HostLookup) -> Option<(String, String)> {
    let invoked = host.find_program(name)?;
    let real = host.canonicalize(&invoked)?;
    let real_name = real_name(&real)?;
    if real_name == name {
        return None;
    }
    let (q_name, q_real) = (quote(name), quote(&real_name));
    let message = format!(
        "{q_name} runs {} on this machine ({} is a link): execgate checks a command against the name it was invoked by and the file that runs, strictest decision wins, so rules for {q_real} also decide {q_name} commands, and {q_real} run by its own name is not decided by this rule",
        quote(&real.to_string_lossy()),
        quote(&invoked.to_string_lossy()),
    );
    let has_rules_for_real = policy.index.contains_key(real_name.as_bytes());
    let strict = policy.rules().iter().any(|r| {
        r.decision != Decision::Allow
            && r.pattern[0].alternatives().iter().any(|alt| &**alt == name)
    });
    let fix = if has_rules_for_real {
        format!("keep the rules for {q_name} and {q_real} consistent, or write them once with both names first: [{q_name}, {q_real}]")
    } else if strict {
        format!("list both names in the first position (pattern = [[{q_name}, {q_real}], ...]) so running {q_real} directly is decided the same way")
    } else {
        format!("nothing to change if only {q_name} should be allowed: {q_real} run by its own name stays unmatched (inside the sandbox)")
    };
    Some((message, fix))
}

/// A rule for an absolute path: is that path a link?
fn absolute(policy: &Policy, written: &str, host: &dyn HostLookup) -> Option<(String, String)> {
    let path = paths::normalize_absolute(Path::new(written))?;
    let real = host.canonicalize(&path)?;
    if real == path {
        return None;
    }
    let (q_path, q_real) = (quote(written), quote(&real.to_string_lossy()));
    let real_name = real_name(&real)?;
    let mentioned = policy.index.contains_key(real.to_string_lossy().as_bytes());
    if mentioned {
        return None;
    }
    Some((
        format!(
            "{q_path} is {q_real} on this machine: this rule matches commands that run {q_path} by that path; one that runs {q_real} is judged by the rules for {q_real} and {}",
            quote(&real_name)
        ),
        format!("add {q_real} to the first position if it should be decided the same way"),
    ))
}
