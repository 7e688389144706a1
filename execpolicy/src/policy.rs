//! A loaded policy and its evaluation of one command.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::decision::Decision;
use crate::error::PolicyError;
use crate::explain::{Explanation, ExplanationJson};
use crate::loader::PolicyLoader;
use crate::paths;
use crate::rule::{NetworkRule, PrefixRule, SourceLocation};

/// How [`Policy::check`] treats an absolute program path that no rule names literally.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckOptions {
    /// Fall back from `/usr/bin/git` to rules written for `git`, gated by `host_executable`.
    pub resolve_host_executables: bool,
}

/// One rule that matched a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleMatch {
    /// The argv prefix the rule matched (the basename in first position when the match came
    /// from host-executable fallback).
    pub matched_prefix: Vec<String>,
    /// The rule's decision.
    pub decision: Decision,
    /// The absolute program path, set only when basename fallback produced this match.
    pub resolved_program: Option<PathBuf>,
    /// The rule's justification, if it has one.
    pub justification: Option<String>,
    /// Where the rule is written.
    pub source: SourceLocation,
}

/// The result of checking one command: every matching rule and the strictest decision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// The strictest decision among `matched`; `None` when nothing matched.
    pub decision: Option<Decision>,
    /// Every matching rule, in the order the rules were loaded.
    pub matched: Vec<RuleMatch>,
}

impl Evaluation {
    fn from_matches(matched: Vec<RuleMatch>) -> Self {
        let decision = matched.iter().map(|m| m.decision).max();
        Self { decision, matched }
    }

    /// One command checked under two program names, `self` for the name it was invoked by
    /// (`/bin/sh`, `/usr/bin/python3`) and `other` for the file that runs (`/usr/bin/dash`,
    /// `/usr/bin/python3.11`): every match of both, each rule once (in `self`'s order,
    /// then `other`'s), and the strictest decision of all. A `forbidden` rule written for
    /// either name wins. `execgate policy check` never merges: it checks the argv it is
    /// given, as Codex does.
    pub fn merge(self, other: Evaluation) -> Evaluation {
        let mut matched = self.matched;
        for m in other.matched {
            if !matched.iter().any(|seen| seen.source == m.source) {
                matched.push(m);
            }
        }
        Self::from_matches(matched)
    }

    /// The first matched rule carrying the final decision: the one to quote in a prompt or
    /// denial ("the rule that asked").
    pub fn deciding_rule(&self) -> Option<&RuleMatch> {
        let decision = self.decision?;
        self.matched.iter().find(|m| m.decision == decision)
    }

    /// Renders the evaluation exactly as `codex execpolicy check` prints it.
    pub fn to_codex_json(&self, pretty: bool) -> Result<String, serde_json::Error> {
        to_json(&self.codex_output(), pretty)
    }

    /// Renders the evaluation as [`Evaluation::to_codex_json`] does, with one more key at the
    /// end, `explain`: `explanation` as JSON. Everything before it is byte-identical to the
    /// Codex output.
    pub fn to_codex_json_with_explanation(
        &self,
        explanation: &Explanation,
        pretty: bool,
    ) -> Result<String, serde_json::Error> {
        let output = ExplainedOutput {
            codex: self.codex_output(),
            explain: ExplanationJson::from(explanation),
        };
        to_json(&output, pretty)
    }

    fn codex_output(&self) -> CheckOutput<'_> {
        CheckOutput {
            matched_rules: self
                .matched
                .iter()
                .map(|m| MatchJson {
                    prefix_rule_match: PrefixMatchJson {
                        matched_prefix: &m.matched_prefix,
                        decision: m.decision,
                        resolved_program: m.resolved_program.as_deref(),
                        justification: m.justification.as_deref(),
                    },
                })
                .collect(),
            decision: self.decision,
        }
    }
}

fn to_json<T: Serialize>(value: &T, pretty: bool) -> Result<String, serde_json::Error> {
    if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    }
}

#[derive(Serialize)]
struct ExplainedOutput<'a> {
    #[serde(flatten)]
    codex: CheckOutput<'a>,
    explain: ExplanationJson<'a>,
}

#[derive(Serialize)]
struct CheckOutput<'a> {
    #[serde(rename = "matchedRules")]
    matched_rules: Vec<MatchJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<Decision>,
}

#[derive(Serialize)]
struct MatchJson<'a> {
    #[serde(rename = "prefixRuleMatch")]
    prefix_rule_match: PrefixMatchJson<'a>,
}

#[derive(Serialize)]
struct PrefixMatchJson<'a> {
    #[serde(rename = "matchedPrefix")]
    matched_prefix: &'a [String],
    decision: Decision,
    #[serde(rename = "resolvedProgram", skip_serializing_if = "Option::is_none")]
    resolved_program: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none")]
    justification: Option<&'a str>,
}

/// Rules indexed under one first token.
#[derive(Clone, Debug)]
pub(crate) struct IndexEntry {
    /// The first token itself.
    pub(crate) name: Box<str>,
    /// Indices into `Policy::rules`, in load order.
    pub(crate) rules: Vec<u32>,
}

/// A set of loaded rules, ready to check commands. Cheap to share behind an `Arc`; checking
/// never mutates it.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub(crate) rules: Vec<PrefixRule>,
    pub(crate) index: HashMap<Box<[u8]>, IndexEntry, foldhash::fast::RandomState>,
    pub(crate) host_executables: HashMap<String, Vec<PathBuf>>,
    pub(crate) host_executable_sources: HashMap<String, SourceLocation>,
    pub(crate) network_rules: Vec<NetworkRule>,
}

impl Policy {
    /// A policy with no rules: every command is unmatched.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Loads rule files, merging them in the order given. Any error (unreadable file, syntax,
    /// bad arguments, a failing `match`/`not_match` example) fails the whole load.
    pub fn from_files<P: AsRef<Path>>(paths: &[P]) -> Result<Self, PolicyError> {
        let mut loader = PolicyLoader::new();
        for path in paths {
            loader.add_file(path.as_ref())?;
        }
        Ok(loader.finish())
    }

    /// Loads one rule file from text; `name` is used in error messages and rule locations.
    pub fn from_source(name: &str, text: &str) -> Result<Self, PolicyError> {
        let mut loader = PolicyLoader::new();
        loader.add_source(name, text)?;
        Ok(loader.finish())
    }

    /// Every prefix rule, in load order.
    pub fn rules(&self) -> &[PrefixRule] {
        &self.rules
    }

    /// Every `network_rule(...)`, in load order.
    pub fn network_rules(&self) -> &[NetworkRule] {
        &self.network_rules
    }

    /// The `host_executable` declarations: bare name to the absolute paths allowed for it.
    pub fn host_executables(&self) -> &HashMap<String, Vec<PathBuf>> {
        &self.host_executables
    }

    /// Where the `host_executable(name = ...)` in effect for `name` is written (the last
    /// declaration for the name replaces earlier ones).
    pub fn host_executable_source(&self, name: &str) -> Option<&SourceLocation> {
        self.host_executable_sources.get(name)
    }

    /// Checks `argv` (program first, raw bytes) against the rules.
    ///
    /// Rules naming the program literally win; only when none matches and
    /// `resolve_host_executables` is on does an absolute program path fall back to rules for
    /// its basename, and only if no `host_executable` exists for that name or the path is one
    /// of those listed. The program path is compared after lexical `.`/`..` clean-up (it is
    /// the caller's job to pass the path that will really run). Non-UTF-8 tokens never match.
    pub fn check<T: AsRef<[u8]>>(&self, argv: &[T], options: &CheckOptions) -> Evaluation {
        let mut matched = self.exact_matches(argv);
        if matched.is_empty() && options.resolve_host_executables {
            matched = self.basename_matches(argv, None);
        }
        Evaluation::from_matches(matched)
    }

    fn exact_matches<T: AsRef<[u8]>>(&self, argv: &[T]) -> Vec<RuleMatch> {
        let Some(program) = argv.first() else {
            return Vec::new();
        };
        let Some(entry) = self.index.get(program.as_ref()) else {
            return Vec::new();
        };
        self.collect(entry, argv, None)
    }

    fn collect<T: AsRef<[u8]>>(
        &self,
        entry: &IndexEntry,
        argv: &[T],
        resolved: Option<&Path>,
    ) -> Vec<RuleMatch> {
        let mut out = Vec::new();
        for &id in &entry.rules {
            let rule = &self.rules[id as usize];
            if let Some(prefix) = rule.match_rest(&entry.name, argv) {
                out.push(RuleMatch {
                    matched_prefix: prefix,
                    decision: rule.decision,
                    resolved_program: resolved.map(Path::to_path_buf),
                    justification: rule.justification.clone(),
                    source: rule.source.clone(),
                });
            }
        }
        out
    }

    /// The index entry for the program's basename and the normalized absolute program path,
    /// when basename fallback may apply.
    fn fallback_entry<T: AsRef<[u8]>>(&self, argv: &[T]) -> Option<(&IndexEntry, PathBuf)> {
        let raw = std::str::from_utf8(argv.first()?.as_ref()).ok()?;
        let name = paths::basename(Path::new(raw))?;
        // Cheap test first: most programs have no basename rules at all.
        let entry = self.index.get(name.as_bytes())?;
        // Unlike `host_executable` paths, a program path is never `~`-expanded: for execve,
        // `~/bin/git` is a relative path, and treating it as the home one would judge a
        // different file than the one that runs.
        let program = paths::normalize_absolute(Path::new(raw))?;
        if let Some(allowed) = self.host_executables.get(name) {
            if !allowed.contains(&program) {
                return None;
            }
        }
        Some((entry, program))
    }

    /// Basename-fallback matches; with `only`, restricted to that one rule (example checks).
    fn basename_matches<T: AsRef<[u8]>>(&self, argv: &[T], only: Option<u32>) -> Vec<RuleMatch> {
        let Some((entry, program)) = self.fallback_entry(argv) else {
            return Vec::new();
        };
        match only {
            None => self.collect(entry, argv, Some(&program)),
            Some(id) => {
                let single = IndexEntry {
                    name: entry.name.clone(),
                    rules: entry.rules.iter().copied().filter(|&r| r == id).collect(),
                };
                self.collect(&single, argv, Some(&program))
            }
        }
    }

    /// Whether rule `id` matches `example` the way load-time example checks define it:
    /// literally, or through basename fallback (host-executable resolution on). As in Codex,
    /// an example may name its program as `~/...`; that is expanded with `home` here (only
    /// here: examples are text, not commands about to run).
    pub(crate) fn rule_matches_example(
        &self,
        id: u32,
        example: &[String],
        home: Option<&Path>,
    ) -> bool {
        let Some(rule) = self.rules.get(id as usize) else {
            return false;
        };
        if rule.match_argv(example).is_some() {
            return true;
        }
        let expanded: Vec<String>;
        let example = match example.split_first() {
            Some((first, rest)) if first.starts_with('~') => {
                match paths::expand_home(first, home)
                    .into_os_string()
                    .into_string()
                {
                    Ok(first) => {
                        expanded = std::iter::once(first).chain(rest.iter().cloned()).collect();
                        &expanded[..]
                    }
                    Err(_) => example,
                }
            }
            _ => example,
        };
        !self.basename_matches(example, Some(id)).is_empty()
    }
}
