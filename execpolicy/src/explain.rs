//! Why a policy decided what it did for one command (`execgate policy check --explain`).
//!
//! [`Policy::explain`] replays [`Policy::check`] step by step and keeps what `check` throws
//! away: whether each rule matched literally or through basename fallback, which
//! `host_executable` let the fallback happen (or stopped it), the rules for the same program
//! that nearly matched, and why the winning rule won. It never decides differently from
//! `check`: the decision and the deciding rule are `check`'s own.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::decision::Decision;
use crate::paths;
use crate::policy::{CheckOptions, Policy};
use crate::render::quote;
use crate::rule::{PrefixRule, SourceLocation};

/// How a rule's first position was compared with the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchVia {
    /// The rule names the program exactly as the command does.
    Exact,
    /// The rule names the program's basename; the command gives an absolute path.
    Basename,
}

/// What a rule had to do with the command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleStatus {
    /// The rule matched; this is the prefix it matched.
    Matched(Vec<String>),
    /// The rule would match through basename fallback, but the fallback did not apply (see
    /// [`Explanation::fallback`]).
    Skipped,
    /// Same program, but the command differs at `position` (0-based argv index).
    NearMiss {
        /// The first argv position the rule does not accept.
        position: usize,
        /// What the command has there; `None` when the command is too short.
        got: Option<String>,
    },
}

/// One rule that concerns the command's program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleExplanation {
    /// Where the rule is written.
    pub source: SourceLocation,
    /// The pattern as Starlark text.
    pub pattern: String,
    /// The rule's decision.
    pub decision: Decision,
    /// How its first position was compared.
    pub via: MatchVia,
    /// What happened.
    pub status: RuleStatus,
    /// The accepted tokens at the near-miss position (empty otherwise).
    pub expected: Vec<String>,
}

/// Whether an absolute program path fell back to the rules written for its basename.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// No basename rules concern this program (a bare name, a relative path, or no rule for
    /// the basename).
    NotApplicable,
    /// Rules naming the program literally matched, so basename rules were not consulted.
    NotNeeded,
    /// Host-executable resolution is off (`policy check` without
    /// `--resolve-host-executables`; the server always resolves).
    Off,
    /// Used: no `host_executable` exists for the name, so any absolute path with that
    /// basename falls back.
    Unrestricted,
    /// Used: the `host_executable` written at `source` lists this path.
    Listed {
        /// The declaration in effect.
        source: Option<SourceLocation>,
    },
    /// Refused: the `host_executable` written at `source` lists only `paths`.
    Refused {
        /// The declaration in effect.
        source: Option<SourceLocation>,
        /// The paths it allows.
        paths: Vec<PathBuf>,
    },
}

/// Everything [`Policy::explain`] found out about one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// The command, lossy UTF-8.
    pub argv: Vec<String>,
    /// The basename the program falls back to, for an absolute program path.
    pub basename: Option<String>,
    /// Whether basename fallback was used.
    pub fallback: Fallback,
    /// Every rule for the program (literal or basename), in load order.
    pub rules: Vec<RuleExplanation>,
    /// The decision, exactly as [`Policy::check`] gives it.
    pub decision: Option<Decision>,
    /// Index into `rules` of the rule quoted for the decision (the first matching rule with
    /// the strictest decision).
    pub deciding: Option<usize>,
}

impl Policy {
    /// Explains how [`Policy::check`] decides `argv` with `options`.
    pub fn explain<T: AsRef<[u8]>>(&self, argv: &[T], options: &CheckOptions) -> Explanation {
        let evaluation = self.check(argv, options);
        let lossy: Vec<String> = argv
            .iter()
            .map(|t| String::from_utf8_lossy(t.as_ref()).into_owned())
            .collect();
        let mut rules = Vec::new();
        let mut exact_matched = false;
        if let Some(entry) = argv.first().and_then(|p| self.index.get(p.as_ref())) {
            for &id in &entry.rules {
                let rule = &self.rules[id as usize];
                let explained = explain_rule(rule, &entry.name, argv, MatchVia::Exact);
                exact_matched |= matches!(explained.status, RuleStatus::Matched(_));
                rules.push(explained);
            }
        }
        let (basename, fallback) = self.fallback_for(argv, options, exact_matched);
        if let Some(name) = &basename {
            let used = matches!(fallback, Fallback::Unrestricted | Fallback::Listed { .. });
            if let Some(entry) = self.index.get(name.as_bytes()) {
                for &id in &entry.rules {
                    let rule = &self.rules[id as usize];
                    let mut explained = explain_rule(rule, &entry.name, argv, MatchVia::Basename);
                    match (&explained.status, used) {
                        (_, true) => rules.push(explained),
                        (RuleStatus::Matched(_), false) => {
                            explained.status = RuleStatus::Skipped;
                            rules.push(explained);
                        }
                        // A near miss through a fallback that did not happen is noise.
                        (_, false) => {}
                    }
                }
            }
        }
        // `rules` lists matches in `check`'s order, so the first match with the decision is
        // `check`'s deciding rule.
        let deciding = evaluation.decision.and_then(|decision| {
            rules
                .iter()
                .position(|r| r.decision == decision && matches!(r.status, RuleStatus::Matched(_)))
        });
        Explanation {
            argv: lossy,
            basename,
            fallback,
            rules,
            decision: evaluation.decision,
            deciding,
        }
    }

    fn fallback_for<T: AsRef<[u8]>>(
        &self,
        argv: &[T],
        options: &CheckOptions,
        exact_matched: bool,
    ) -> (Option<String>, Fallback) {
        let Some(raw) = argv
            .first()
            .and_then(|p| std::str::from_utf8(p.as_ref()).ok())
        else {
            return (None, Fallback::NotApplicable);
        };
        let Some(program) = paths::normalize_absolute(Path::new(raw)) else {
            return (None, Fallback::NotApplicable);
        };
        let Some(name) = paths::basename(&program).map(str::to_owned) else {
            return (None, Fallback::NotApplicable);
        };
        if !self.index.contains_key(name.as_bytes()) {
            return (None, Fallback::NotApplicable);
        }
        let fallback = if exact_matched {
            Fallback::NotNeeded
        } else if !options.resolve_host_executables {
            Fallback::Off
        } else {
            let source = self.host_executable_source(&name).cloned();
            match self.host_executables.get(&name) {
                None => Fallback::Unrestricted,
                Some(allowed) if allowed.contains(&program) => Fallback::Listed { source },
                Some(allowed) => Fallback::Refused {
                    source,
                    paths: allowed.clone(),
                },
            }
        };
        (Some(name), fallback)
    }
}

fn explain_rule<T: AsRef<[u8]>>(
    rule: &PrefixRule,
    first: &str,
    argv: &[T],
    via: MatchVia,
) -> RuleExplanation {
    let mut expected = Vec::new();
    let status = match rule.match_rest(first, argv) {
        Some(prefix) => RuleStatus::Matched(prefix),
        None => {
            let position = (1..rule.pattern.len())
                .find(|&i| {
                    argv.get(i)
                        .is_none_or(|arg| rule.pattern[i].matching(arg.as_ref()).is_none())
                })
                .unwrap_or(rule.pattern.len());
            if let Some(token) = rule.pattern.get(position) {
                expected = token.alternatives().iter().map(|a| a.to_string()).collect();
            }
            RuleStatus::NearMiss {
                position,
                got: argv
                    .get(position)
                    .map(|arg| String::from_utf8_lossy(arg.as_ref()).into_owned()),
            }
        }
    };
    RuleExplanation {
        source: rule.source.clone(),
        pattern: rule.pattern_text(),
        decision: rule.decision,
        via,
        status,
        expected,
    }
}

impl Explanation {
    /// The explanation as text for a person: one fact per line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let command: Vec<String> = self.argv.iter().map(|t| quote(t)).collect();
        out.push_str(&format!("command: [{}]\n", command.join(", ")));
        if let Some(line) = self.fallback_text() {
            out.push_str(&line);
            out.push('\n');
        }
        let section = |title: &str, pick: &dyn Fn(&RuleStatus) -> bool| {
            let lines: Vec<String> = self
                .rules
                .iter()
                .filter(|r| pick(&r.status))
                .map(|r| format!("  {}\n", self.rule_text(r)))
                .collect();
            if lines.is_empty() {
                String::new()
            } else {
                format!("{title}:\n{}", lines.concat())
            }
        };
        out.push_str(&section("matched", &|s| {
            matches!(s, RuleStatus::Matched(_))
        }));
        out.push_str(&section("not consulted", &|s| {
            matches!(s, RuleStatus::Skipped)
        }));
        out.push_str(&section("near misses", &|s| {
            matches!(s, RuleStatus::NearMiss { .. })
        }));
        out.push_str(&self.why());
        out.push('\n');
        out
    }

    fn fallback_text(&self) -> Option<String> {
        let program = quote(self.argv.first()?);
        let name = self.basename.as_deref().map(quote)?;
        Some(match &self.fallback {
            Fallback::NotApplicable => return None,
            Fallback::NotNeeded => format!(
                "program: {program}: rules name it literally and matched, so rules for {name} are not consulted"
            ),
            Fallback::Off => format!(
                "program: {program}: no rule for it matched; rules for {name} apply only with --resolve-host-executables (the server always resolves)"
            ),
            Fallback::Unrestricted => format!(
                "program: {program}: no rule for it matched; falls back to rules for {name} (no host_executable(name = {name}) restricts which paths may)"
            ),
            Fallback::Listed { source } => format!(
                "program: {program}: no rule for it matched; falls back to rules for {name}: host_executable{} lists it",
                at(source.as_ref())
            ),
            Fallback::Refused { source, paths } => {
                let listed: Vec<String> = paths.iter().map(|p| quote(&p.to_string_lossy())).collect();
                format!(
                    "program: {program}: does not fall back to rules for {name}: host_executable{} lists only {}",
                    at(source.as_ref()),
                    listed.join(", ")
                )
            }
        })
    }

    fn rule_text(&self, rule: &RuleExplanation) -> String {
        let head = format!("{} {} {}", rule.source, rule.pattern, rule.decision);
        let through = match (rule.via, &self.basename) {
            (MatchVia::Basename, Some(name)) => format!(" (through {})", quote(name)),
            _ => String::new(),
        };
        match &rule.status {
            RuleStatus::Matched(prefix) => {
                let prefix: Vec<String> = prefix.iter().map(|t| quote(t)).collect();
                format!("{head}{through}: matched [{}]", prefix.join(", "))
            }
            RuleStatus::Skipped => {
                format!("{head}{through}: would match, but the fallback did not apply")
            }
            RuleStatus::NearMiss { position, got } => {
                let wants = rule
                    .expected
                    .iter()
                    .map(|t| quote(t))
                    .collect::<Vec<_>>()
                    .join(" or ");
                match got {
                    Some(got) => format!(
                        "{head}{through}: argument {position} is {}, the rule wants {wants}",
                        quote(got)
                    ),
                    None => format!(
                        "{head}{through}: the command ends before argument {position} ({wants})"
                    ),
                }
            }
        }
    }

    fn why(&self) -> String {
        let matched: Vec<&RuleExplanation> = self
            .rules
            .iter()
            .filter(|r| matches!(r.status, RuleStatus::Matched(_)))
            .collect();
        let (Some(decision), Some(winner)) = (self.decision, self.deciding.map(|i| &self.rules[i]))
        else {
            return "decision: none: no rule matched, so the command runs inside the sandbox"
                .to_owned();
        };
        if matched.len() == 1 {
            return format!(
                "decision: {decision}, from {} (the only matching rule)",
                winner.source
            );
        }
        let mut decisions: Vec<Decision> = matched.iter().map(|r| r.decision).collect();
        decisions.sort();
        decisions.dedup();
        let peers = matched.iter().filter(|r| r.decision == decision).count();
        let mut why = if decisions.len() == 1 {
            format!(
                "decision: {decision}, from {}: every matching rule says {decision}",
                winner.source,
            )
        } else {
            let list: Vec<&str> = decisions.iter().rev().map(|d| d.as_str()).collect();
            format!(
                "decision: {decision}, from {}: the strictest of the matching rules wins ({})",
                winner.source,
                list.join(" > ")
            )
        };
        if peers > 1 {
            why.push_str("; the first of them in load order is the one quoted");
        }
        why
    }
}

fn at(source: Option<&SourceLocation>) -> String {
    source.map(|s| format!(" at {s}")).unwrap_or_default()
}

/// The `explain` object of `policy check --explain --json`.
#[derive(Serialize)]
pub(crate) struct ExplanationJson<'a> {
    argv: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    basename: Option<&'a str>,
    fallback: FallbackJson<'a>,
    rules: Vec<RuleJson<'a>>,
    decision: Option<Decision>,
    deciding_rule: Option<LocationJson<'a>>,
}

#[derive(Serialize)]
struct FallbackJson<'a> {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_executable: Option<HostExecutableJson<'a>>,
}

#[derive(Serialize)]
struct HostExecutableJson<'a> {
    #[serde(flatten)]
    location: Option<LocationJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    paths: Option<Vec<String>>,
}

#[derive(Serialize)]
struct LocationJson<'a> {
    file: &'a str,
    line: u32,
    column: u32,
}

impl<'a> From<&'a SourceLocation> for LocationJson<'a> {
    fn from(source: &'a SourceLocation) -> Self {
        Self {
            file: &source.file,
            line: source.line,
            column: source.column,
        }
    }
}

#[derive(Serialize)]
struct RuleJson<'a> {
    #[serde(flatten)]
    location: LocationJson<'a>,
    pattern: &'a str,
    decision: Decision,
    via: MatchVia,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    matched_prefix: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    got: Option<Option<&'a str>>,
}

impl<'a> From<&'a Explanation> for ExplanationJson<'a> {
    fn from(explanation: &'a Explanation) -> Self {
        let (status, host_executable) = match &explanation.fallback {
            Fallback::NotApplicable => ("not-applicable", None),
            Fallback::NotNeeded => ("not-needed", None),
            Fallback::Off => ("off", None),
            Fallback::Unrestricted => ("used", None),
            Fallback::Listed { source } => (
                "used",
                Some(HostExecutableJson {
                    location: source.as_ref().map(LocationJson::from),
                    paths: None,
                }),
            ),
            Fallback::Refused { source, paths } => (
                "refused",
                Some(HostExecutableJson {
                    location: source.as_ref().map(LocationJson::from),
                    paths: Some(
                        paths
                            .iter()
                            .map(|p| p.to_string_lossy().into_owned())
                            .collect(),
                    ),
                }),
            ),
        };
        let rules = explanation
            .rules
            .iter()
            .map(|r| {
                let (status, matched_prefix, position, got) = match &r.status {
                    RuleStatus::Matched(prefix) => ("matched", Some(prefix.as_slice()), None, None),
                    RuleStatus::Skipped => ("skipped", None, None, None),
                    RuleStatus::NearMiss { position, got } => {
                        ("near-miss", None, Some(*position), Some(got.as_deref()))
                    }
                };
                RuleJson {
                    location: LocationJson::from(&r.source),
                    pattern: &r.pattern,
                    decision: r.decision,
                    via: r.via,
                    status,
                    matched_prefix,
                    position,
                    expected: position.map(|_| r.expected.as_slice()),
                    got,
                }
            })
            .collect();
        Self {
            argv: &explanation.argv,
            basename: explanation.basename.as_deref(),
            fallback: FallbackJson {
                status,
                host_executable,
            },
            rules,
            decision: explanation.decision,
            deciding_rule: explanation
                .deciding
                .map(|i| LocationJson::from(&explanation.rules[i].source)),
        }
    }
}
