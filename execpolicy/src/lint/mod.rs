//! `execgate policy lint`: findings about a loaded policy that loading alone does not catch.
//!
//! Each [`Finding`] points at a place in a rule file, says what is wrong and gives a one-line
//! fix. The checks:
//! - **escape hatches** (error): an `allow` rule for a program that, escalated, runs code or
//!   writes files the sandbox chooses ([`escape_hatch`]);
//! - **failing examples** (error): what `policy test` reports;
//! - **shadowed and duplicate rules** (warning): a rule that can never change a decision,
//!   because other rules match everything it matches with a decision at least as strict;
//! - **examples decided elsewhere** (warning): a `match` example that passes, but a different,
//!   stricter rule decides it;
//! - **names that resolve elsewhere** (warning): a rule or `host_executable` path for a name
//!   that, on this machine, runs another file (`sh` → dash);
//! - **coverage** (warning): rules without `match` examples, `host_executable` names no rule
//!   uses;
//! - **network rules** (warning): hosts no connection can ever match, addresses written in a
//!   spelling that hides which address they are, ports that are not part of the match,
//!   network rules that can never change a decision.
//!
//! Pure: the only questions asked of the machine go through [`HostLookup`], so tests can
//! fake "sh resolves to dash".

mod escape;
mod names;
mod network;
mod shadow;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use escape::{escape_hatch, EscapeHatch};

use crate::decision::Decision;
use crate::loader::{ExampleKind, ExampleOutcome};
use crate::policy::{CheckOptions, Policy};
use crate::render::quote;
use crate::rule::{PrefixRule, SourceLocation};

/// How bad a finding is: errors fail `policy lint`, warnings only with `--deny-warnings`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Probably not what the author meant, or weaker than it looks.
    Warning,
    /// The policy hands the sandbox a way out, or its own examples fail.
    Error,
}

impl Severity {
    /// `warning` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }
}

/// Which check produced a finding (stable names, used in `--json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LintCode {
    /// An `allow` rule escalates a program that runs code or writes files it is told to.
    EscapeHatch,
    /// A `match` / `not_match` example does not behave as declared.
    ExampleFails,
    /// A rule can never change a decision: stricter (or equal) rules cover it.
    Shadowed,
    /// A rule repeats an earlier one.
    Duplicate,
    /// A `match` example passes, but another, stricter rule decides it.
    ExampleDecidedElsewhere,
    /// A rule's program runs as another file on this machine.
    ResolvesElsewhere,
    /// A rule has no `match` example.
    NoExamples,
    /// A `host_executable` names a program no rule is written for.
    UnusedHostExecutable,
    /// A `network_rule` host is an address written another way (`0x7f.1`).
    NetworkAddressForm,
    /// A `network_rule` host is neither an address nor a DNS name: nothing can match it.
    NetworkUnreachableHost,
    /// A `network_rule` host carries a port, which is not part of the match.
    NetworkPort,
}

impl LintCode {
    /// The code as written in `--json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EscapeHatch => "escape-hatch",
            Self::ExampleFails => "example-fails",
            Self::Shadowed => "shadowed",
            Self::Duplicate => "duplicate",
            Self::ExampleDecidedElsewhere => "example-decided-elsewhere",
            Self::ResolvesElsewhere => "resolves-elsewhere",
            Self::NoExamples => "no-examples",
            Self::UnusedHostExecutable => "unused-host-executable",
            Self::NetworkAddressForm => "network-address-form",
            Self::NetworkUnreachableHost => "network-unreachable-host",
            Self::NetworkPort => "network-port",
        }
    }

    /// How bad findings of this kind are.
    pub fn severity(self) -> Severity {
        match self {
            Self::EscapeHatch | Self::ExampleFails => Severity::Error,
            _ => Severity::Warning,
        }
    }
}

/// One problem, at one place in a rule file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Finding {
    /// Where: the `prefix_rule`, `host_executable` or `network_rule` call.
    pub location: SourceLocation,
    /// Which check found it.
    pub code: LintCode,
    /// What is wrong, in one line.
    pub message: String,
    /// What to write instead, in one line.
    pub fix: String,
}

impl Finding {
    fn new(location: &SourceLocation, code: LintCode, message: String, fix: String) -> Self {
        Self {
            location: location.clone(),
            code,
            message,
            fix,
        }
    }

    /// How bad it is.
    pub fn severity(&self) -> Severity {
        self.code.severity()
    }
}

impl fmt::Display for Finding {
    /// `file:line:col: warning|error: message`, then `  fix: ...` on a second line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}\n  fix: {}",
            self.location,
            self.severity().as_str(),
            self.message,
            self.fix
        )
    }
}

/// What the lint may ask of the machine it runs on.
pub trait HostLookup {
    /// The path a bare program name is found at on `PATH`, before symlinks are resolved
    /// (`sh` → `/usr/bin/sh`); `None` when it is not installed.
    fn find_program(&self, name: &str) -> Option<PathBuf>;
    /// `path` with every symlink resolved (`/usr/bin/sh` → `/usr/bin/dash`); `None` when it
    /// does not exist.
    fn canonicalize(&self, path: &Path) -> Option<PathBuf>;
}

/// A [`HostLookup`] that finds nothing: the machine-dependent checks stay silent.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHostLookup;

impl HostLookup for NoHostLookup {
    fn find_program(&self, _name: &str) -> Option<PathBuf> {
        None
    }
    fn canonicalize(&self, _path: &Path) -> Option<PathBuf> {
        None
    }
}

/// Lints `policy`. `examples` are the outcomes collected while loading it
/// ([`crate::PolicyLoader::collect_examples`]); without them the example checks are skipped.
/// Findings come in file order (files in load order, then line and column), each once.
pub fn lint(policy: &Policy, examples: &[ExampleOutcome], host: &dyn HostLookup) -> Vec<Finding> {
    let mut findings = Vec::new();
    for rule in policy.rules() {
        findings.extend(escape_hatch_finding(rule));
    }
    findings.extend(example_failures(examples));
    let dead = shadow::dead_rules(policy, &mut findings);
    findings.extend(examples_decided_elsewhere(policy, examples, &dead));
    findings.extend(names::resolves_elsewhere(policy, host));
    findings.extend(coverage(policy, examples));
    findings.extend(network::network_findings(policy));
    order(policy, findings)
}

/// Files ranked by first appearance, then line, column and check; duplicates dropped (rules
/// made in a loop share a location).
fn order(policy: &Policy, findings: Vec<Finding>) -> Vec<Finding> {
    let mut rank: HashMap<&str, usize> = HashMap::new();
    let mut host_sources: Vec<(&String, &SourceLocation)> =
        policy.host_executable_sources.iter().collect();
    host_sources.sort_by_key(|(name, _)| *name);
    let locations = policy
        .rules()
        .iter()
        .map(|r| &r.source)
        .chain(policy.network_rules().iter().map(|r| &r.source))
        .chain(host_sources.into_iter().map(|(_, source)| source));
    for location in locations {
        let next = rank.len();
        rank.entry(&location.file).or_insert(next);
    }
    let mut seen = HashSet::new();
    let mut unique: Vec<Finding> = findings
        .into_iter()
        .filter(|f| seen.insert(f.clone()))
        .collect();
    unique.sort_by_key(|f| {
        (
            rank.get(&*f.location.file).copied().unwrap_or(usize::MAX),
            f.location.line,
            f.location.column,
        )
    });
    unique
}

/// Every combination of a pattern's alternatives, up to `limit` (`None` beyond it).
fn combinations(rule: &PrefixRule, positions: usize, limit: usize) -> Option<Vec<Vec<&str>>> {
    let mut out: Vec<Vec<&str>> = vec![Vec::new()];
    for token in rule.pattern.iter().take(positions) {
        let alternatives = token.alternatives();
        if out.len().saturating_mul(alternatives.len()) > limit {
            return None;
        }
        out = out
            .iter()
            .flat_map(|prefix| {
                alternatives.iter().map(move |alt| {
                    let mut next = prefix.clone();
                    next.push(&**alt);
                    next
                })
            })
            .collect();
    }
    Some(out)
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn escape_hatch_finding(rule: &PrefixRule) -> Vec<Finding> {
    if rule.decision != Decision::Allow {
        return Vec::new();
    }
    // Three positions are enough for every entry (git's harmless globals take one).
    let Some(prefixes) = combinations(rule, 3, 256) else {
        return Vec::new();
    };
    let mut by_reason: Vec<(String, Vec<String>)> = Vec::new();
    for prefix in prefixes {
        if let Some(hatch) = escape_hatch(&prefix) {
            let what = format!("`{}`", hatch.what);
            match by_reason.iter_mut().find(|(can, _)| *can == hatch.can) {
                Some((_, whats)) if whats.contains(&what) => {}
                Some((_, whats)) => whats.push(what),
                None => by_reason.push((hatch.can, vec![what])),
            }
        }
    }
    by_reason
        .into_iter()
        .map(|(can, whats)| {
            let programs = and_list(&whats);
            let it = if whats.len() == 1 { "it" } else { "each" };
            Finding::new(
                &rule.source,
                LintCode::EscapeHatch,
                format!("allow escalates {programs}: outside the sandbox {it} {can}"),
                format!(
                    "write decision = \"prompt\" (a person sees each command), or remove the rule so {programs} {} inside the sandbox",
                    if whats.len() == 1 { "runs" } else { "run" }
                ),
            )
        })
        .collect()
}

fn example_failures(examples: &[ExampleOutcome]) -> Vec<Finding> {
    examples
        .iter()
        .filter(|o| !o.passed())
        .map(|o| {
            let (message, fix) = match o.kind {
                ExampleKind::Match => (
                    format!(
                        "`match` example `{}` does not match pattern {}",
                        o.example_text(),
                        o.pattern
                    ),
                    "fix the example or the pattern (`execgate policy test` lists every example)",
                ),
                ExampleKind::NotMatch => (
                    format!(
                        "`not_match` example `{}` matches pattern {}",
                        o.example_text(),
                        o.pattern
                    ),
                    "fix the example or make the pattern more specific (`execgate policy test` lists every example)",
                ),
            };
            Finding::new(&o.rule, LintCode::ExampleFails, message, fix.to_owned())
        })
        .collect()
}

fn examples_decided_elsewhere(
    policy: &Policy,
    examples: &[ExampleOutcome],
    dead: &HashSet<usize>,
) -> Vec<Finding> {
    let resolve = CheckOptions {
        resolve_host_executables: true,
    };
    let mut out = Vec::new();
    for outcome in examples {
        if outcome.kind != ExampleKind::Match
            || !outcome.passed()
            || dead.contains(&outcome.rule_index)
        {
            continue;
        }
        let Some(rule) = policy.rules().get(outcome.rule_index) else {
            continue;
        };
        let evaluation = policy.check(&outcome.example, &resolve);
        let (Some(decision), Some(winner)) = (evaluation.decision, evaluation.deciding_rule())
        else {
            continue;
        };
        if decision <= rule.decision {
            continue;
        }
        out.push(Finding::new(
            &rule.source,
            LintCode::ExampleDecidedElsewhere,
            format!(
                "`match` example `{}` passes, but {} decides it ({decision}), not this rule ({})",
                outcome.example_text(),
                winner.source,
                rule.decision
            ),
            format!(
                "move the example to the rule at {}, or narrow that rule if this one should decide `{}`",
                winner.source,
                outcome.example_text()
            ),
        ));
    }
    out
}

fn coverage(policy: &Policy, examples: &[ExampleOutcome]) -> Vec<Finding> {
    let with_examples: HashSet<usize> = examples
        .iter()
        .filter(|o| o.kind == ExampleKind::Match)
        .map(|o| o.rule_index)
        .collect();
    let mut out = Vec::new();
    for (index, rule) in policy.rules().iter().enumerate() {
        if with_examples.contains(&index) {
            continue;
        }
        let example: Vec<&str> = rule.pattern.iter().map(|t| &*t.alternatives()[0]).collect();
        let example = shlex::try_join(example.iter().copied())
            .map(|text| quote(&text))
            .unwrap_or_else(|_| {
                let tokens: Vec<String> = example.iter().map(|t| quote(t)).collect();
                format!("[{}]", tokens.join(", "))
            });
        out.push(Finding::new(
            &rule.source,
            LintCode::NoExamples,
            format!("rule {} has no `match` example", rule.pattern_text()),
            format!(
                "add match = [{example}] (and not_match for what must stay out), so `execgate policy test` shows the rule matches what you meant"
            ),
        ));
    }
    let used: HashSet<&str> = policy
        .rules()
        .iter()
        .flat_map(|r| r.pattern[0].alternatives().iter().map(|a| &**a))
        .collect();
    for (name, source) in &policy.host_executable_sources {
        if !used.contains(name.as_str()) {
            out.push(Finding::new(
                source,
                LintCode::UnusedHostExecutable,
                format!(
                    "host_executable(name = {}) names a program no rule is written for",
                    quote(name)
                ),
                format!(
                    "remove it, or write the rules for {} it was meant for",
                    quote(name)
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests;
