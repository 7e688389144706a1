//! Loading `.rules` files: evaluate the Starlark, collect rules through the builtins, then
//! run each rule's `match` / `not_match` examples.
//!
//! Loading never runs anything on the host: the only builtins are `prefix_rule`,
//! `host_executable` and `network_rule`, and `load()` is rejected.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use starlark::any::ProvidesStaticType;
use starlark::codemap::FileSpan;
use starlark::environment::{GlobalsBuilder, Module};
use starlark::eval::Evaluator;
use starlark::starlark_module;
use starlark::syntax::{AstModule, Dialect};
use starlark::values::list::{ListRef, UnpackList};
use starlark::values::none::{NoneOr, NoneType};
use starlark::values::Value;

use crate::decision::Decision;
use crate::error::{PolicyError, RuleError};
use crate::paths;
use crate::policy::{IndexEntry, Policy};
use crate::render::escaped;
use crate::rule::{
    normalize_network_host, parse_network_decision, NetworkProtocol, NetworkRule, PatternToken,
    PrefixRule, SourceLocation,
};

/// Which of a rule's example lists an example came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExampleKind {
    /// From `match = [...]`: the rule must match it.
    Match,
    /// From `not_match = [...]`: the rule must not match it.
    NotMatch,
}

impl ExampleKind {
    /// The argument name as written in rule files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Match => "match",
            Self::NotMatch => "not_match",
        }
    }
}

/// The result of running one `match` / `not_match` example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExampleOutcome {
    /// Where the rule that owns the example is written.
    pub rule: SourceLocation,
    /// The owning rule's index in [`Policy::rules`] (rules made in a loop share a location).
    pub rule_index: usize,
    /// The rule's pattern as Starlark text.
    pub pattern: String,
    /// Which list the example came from.
    pub kind: ExampleKind,
    /// The example's tokens.
    pub example: Vec<String>,
    /// `None` when the example behaved as declared; otherwise what went wrong.
    pub failure: Option<String>,
}

impl ExampleOutcome {
    /// Whether the example behaved as declared.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }

    /// The example as one shell-quoted string.
    pub fn example_text(&self) -> String {
        render_example(&self.example)
    }
}

/// The example as one shell-quoted string, escaped to printable ASCII (it is shown in
/// one-line messages, and a rule file may come from anywhere).
fn render_example(example: &[String]) -> String {
    let joined = shlex::try_join(example.iter().map(String::as_str))
        .unwrap_or_else(|_| format!("{example:?}"));
    escaped(&joined)
}

#[derive(Debug)]
struct PendingExamples {
    rule: u32,
    matches: Vec<Vec<String>>,
    not_matches: Vec<Vec<String>>,
}

#[derive(Debug, ProvidesStaticType)]
struct Builder {
    policy: Policy,
    pending: Vec<PendingExamples>,
    file: Arc<str>,
    home: Option<PathBuf>,
}

/// Loads rule files one after another into one policy.
///
/// By default a failing example is a load error (what [`Policy::from_files`] does);
/// [`PolicyLoader::collect_examples`] records every example's outcome instead, for
/// `execgate policy test`.
///
/// After an error the loader holds a partly loaded file: report the error and drop it.
#[derive(Debug)]
pub struct PolicyLoader {
    builder: RefCell<Builder>,
    collect: bool,
    outcomes: Vec<ExampleOutcome>,
}

impl Default for PolicyLoader {
    fn default() -> Self {
        Self::new()
    }
}

impl PolicyLoader {
    /// A loader with no rules, resolving `~/` with the current user's home directory.
    pub fn new() -> Self {
        #[allow(deprecated)] // std::env::home_dir is fine on Unix, and un-deprecated since 1.86
        let home = std::env::home_dir();
        Self {
            builder: RefCell::new(Builder {
                policy: Policy::default(),
                pending: Vec::new(),
                file: Arc::from(""),
                home,
            }),
            collect: false,
            outcomes: Vec::new(),
        }
    }

    /// Uses `home` for `~/` in `host_executable` paths (`None`: such paths are errors).
    pub fn with_home_dir(mut self, home: Option<PathBuf>) -> Self {
        self.builder.get_mut().home = home;
        self
    }

    /// Records every example outcome instead of failing the load on the first failing one.
    pub fn collect_examples(mut self) -> Self {
        self.collect = true;
        self
    }

    /// Reads and loads one rule file; its path (as given) names it in errors and locations.
    pub fn add_file(&mut self, path: &Path) -> Result<(), PolicyError> {
        let bytes = std::fs::read(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|_| PolicyError::NotUtf8 {
            path: path.to_path_buf(),
        })?;
        self.add_source(&path.to_string_lossy(), &text)
    }

    /// Loads one rule file from text.
    pub fn add_source(&mut self, name: &str, text: &str) -> Result<(), PolicyError> {
        let mut dialect = Dialect::Extended;
        dialect.enable_f_strings = true;
        dialect.enable_load = false;
        let ast = AstModule::parse(name, text.to_owned(), &dialect)
            .map_err(|err| starlark_error(name, &err))?;
        let globals = GlobalsBuilder::standard().with(rule_builtins).build();
        {
            let builder = self.builder.get_mut();
            builder.file = Arc::from(name);
            builder.pending.clear();
        }
        let builder = &self.builder;
        Module::with_temp_heap(|module| {
            let mut eval = Evaluator::new(&module);
            eval.extra = Some(builder);
            eval.eval_module(ast, &globals).map(|_| ())
        })
        .map_err(|err| starlark_error(name, &err))?;
        self.run_examples()
    }

    fn run_examples(&mut self) -> Result<(), PolicyError> {
        let builder = self.builder.get_mut();
        let pending = std::mem::take(&mut builder.pending);
        let policy = &builder.policy;
        let home = builder.home.as_deref();
        let mut first_failure: Option<(SourceLocation, String)> = None;
        let mut failures = 0usize;
        for item in &pending {
            let Some(rule) = policy.rules.get(item.rule as usize) else {
                continue;
            };
            let lists = [
                (ExampleKind::Match, &item.matches),
                (ExampleKind::NotMatch, &item.not_matches),
            ];
            for (kind, examples) in lists {
                for example in examples {
                    let matched = policy.rule_matches_example(item.rule, example, home);
                    let failure = match (kind, matched) {
                        (ExampleKind::Match, false) => Some(format!(
                            "prefix_rule: `match` example `{}` does not match pattern {}; fix the example or the pattern",
                            render_example(example),
                            rule.pattern_text()
                        )),
                        (ExampleKind::NotMatch, true) => Some(format!(
                            "prefix_rule: `not_match` example `{}` matches pattern {}; fix the example or make the pattern more specific",
                            render_example(example),
                            rule.pattern_text()
                        )),
                        _ => None,
                    };
                    if let Some(message) = &failure {
                        failures += 1;
                        if first_failure.is_none() {
                            first_failure = Some((rule.source.clone(), message.clone()));
                        }
                    }
                    if self.collect {
                        self.outcomes.push(ExampleOutcome {
                            rule: rule.source.clone(),
                            rule_index: item.rule as usize,
                            pattern: rule.pattern_text(),
                            kind,
                            example: example.clone(),
                            failure,
                        });
                    }
                }
            }
        }
        match first_failure {
            Some((location, mut message)) if !self.collect => {
                if failures > 1 {
                    message.push_str(&format!(
                        " ({} more failing examples; `execgate policy test` lists them all)",
                        failures - 1
                    ));
                }
                Err(PolicyError::Located { location, message })
            }
            _ => Ok(()),
        }
    }

    /// The policy built from every file loaded so far.
    pub fn finish(self) -> Policy {
        self.builder.into_inner().policy
    }

    /// The policy and, with [`PolicyLoader::collect_examples`], every example's outcome in
    /// file order.
    pub fn finish_with_examples(self) -> (Policy, Vec<ExampleOutcome>) {
        (self.builder.into_inner().policy, self.outcomes)
    }
}

const BUILTINS: [(&str, &str); 3] = [
    (
        "prefix_rule",
        "write prefix_rule(pattern = [\"git\", \"status\"], decision = \"allow\" | \"prompt\" | \"forbidden\", justification = \"...\", match = [...], not_match = [...])",
    ),
    (
        "host_executable",
        "write host_executable(name = \"git\", paths = [\"/usr/bin/git\", \"~/bin/git\"])",
    ),
    (
        "network_rule",
        "write network_rule(host = \"example.com\", protocol = \"https\", decision = \"allow\", justification = \"...\")",
    ),
];

/// Turns a Starlark error into a one-line `file:line:col: message`.
fn starlark_error(file: &str, err: &starlark::Error) -> PolicyError {
    let mut message = err.without_diagnostic().to_string();
    message = message
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ");
    let Some(span) = err.span() else {
        return PolicyError::Unlocated {
            file: file.to_owned(),
            message,
        };
    };
    let call = span.source_span().trim_start();
    if let Some((name, hint)) = BUILTINS.iter().find(|(name, _)| {
        call.strip_prefix(name)
            .is_some_and(|rest| rest.trim_start().starts_with('('))
    }) {
        if !message.starts_with(name) {
            message = format!("{name}: {message}; {hint}");
        }
    } else if call.starts_with("load") && message.contains("load") {
        message =
            "load() is not supported in rules files; pass each file with its own --rules instead"
                .to_owned();
    } else if message.contains("not found") {
        message.push_str("; rules files may call prefix_rule, host_executable and network_rule");
    }
    PolicyError::Located {
        location: location_of(span),
        message,
    }
}

fn location_of(span: &FileSpan) -> SourceLocation {
    let resolved = span.resolve_span();
    SourceLocation {
        file: Arc::from(span.filename()),
        line: u32::try_from(resolved.begin.line + 1).unwrap_or(u32::MAX),
        column: u32::try_from(resolved.begin.column + 1).unwrap_or(u32::MAX),
    }
}

fn with_builder<R>(
    eval: &Evaluator<'_, '_, '_>,
    f: impl FnOnce(&mut Builder, SourceLocation) -> Result<R, RuleError>,
) -> anyhow::Result<R> {
    let cell = eval
        .extra
        .and_then(|extra| extra.downcast_ref::<RefCell<Builder>>())
        .ok_or_else(|| {
            anyhow::anyhow!("internal error: rule builtins called outside the loader")
        })?;
    let mut builder = cell
        .try_borrow_mut()
        .map_err(|_| anyhow::anyhow!("internal error: rule builder is busy"))?;
    let location = eval
        .call_stack_top_location()
        .map(|span| location_of(&span))
        .unwrap_or_else(|| SourceLocation {
            file: builder.file.clone(),
            line: 1,
            column: 1,
        });
    Ok(f(&mut builder, location)?)
}

fn parse_pattern(pattern: UnpackList<Value<'_>>) -> Result<Box<[PatternToken]>, RuleError> {
    let mut tokens = Vec::with_capacity(pattern.items.len());
    for (position, value) in pattern.items.into_iter().enumerate() {
        if let Some(token) = value.unpack_str() {
            tokens.push(PatternToken::Single(token.into()));
        } else if let Some(list) = ListRef::from_value(value) {
            let mut alts: Vec<Box<str>> = Vec::with_capacity(list.len());
            for alt in list.content() {
                let text = alt.unpack_str().ok_or_else(|| {
                    RuleError(format!(
                        "prefix_rule: pattern alternatives must be strings (got {} at position {position}); write e.g. [\"push\", \"pull\"]",
                        alt.get_type()
                    ))
                })?;
                alts.push(text.into());
            }
            match alts.len() {
                0 => {
                    return Err(RuleError(format!(
                        "prefix_rule: pattern alternatives at position {position} cannot be empty; list at least one token"
                    )))
                }
                1 => tokens.extend(alts.pop().map(PatternToken::Single)),
                _ => tokens.push(PatternToken::Alts(alts.into_boxed_slice())),
            }
        } else {
            return Err(RuleError(format!(
                "prefix_rule: pattern elements must be strings or lists of strings (got {} at position {position})",
                value.get_type()
            )));
        }
    }
    if tokens.is_empty() {
        return Err(RuleError(
            "prefix_rule: pattern cannot be empty; write e.g. pattern = [\"git\", \"status\"]"
                .to_owned(),
        ));
    }
    Ok(tokens.into_boxed_slice())
}

fn parse_examples(
    kind: &str,
    examples: Option<UnpackList<Value<'_>>>,
) -> Result<Vec<Vec<String>>, RuleError> {
    let Some(examples) = examples else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(examples.items.len());
    for value in examples.items {
        let tokens = if let Some(raw) = value.unpack_str() {
            shlex::split(raw).ok_or_else(|| {
                RuleError(format!(
                    "prefix_rule: `{kind}` example {raw:?} has unbalanced shell quoting; close the quote or write the example as a list of strings"
                ))
            })?
        } else if let Some(list) = ListRef::from_value(value) {
            let mut tokens = Vec::with_capacity(list.len());
            for token in list.content() {
                let text = token.unpack_str().ok_or_else(|| {
                    RuleError(format!(
                        "prefix_rule: `{kind}` example tokens must be strings (got {})",
                        token.get_type()
                    ))
                })?;
                tokens.push(text.to_owned());
            }
            tokens
        } else {
            return Err(RuleError(format!(
                "prefix_rule: each `{kind}` example must be a string or a list of strings (got {})",
                value.get_type()
            )));
        };
        if tokens.is_empty() {
            return Err(RuleError(format!(
                "prefix_rule: `{kind}` examples cannot be empty; write e.g. \"git status\""
            )));
        }
        out.push(tokens);
    }
    Ok(out)
}

fn parse_justification(call: &str, raw: Option<&str>) -> Result<Option<String>, RuleError> {
    match raw {
        Some(text) if text.trim().is_empty() => Err(RuleError(format!(
            "{call}: justification cannot be empty; omit it or say why the rule exists"
        ))),
        Some(text) => Ok(Some(text.to_owned())),
        None => Ok(None),
    }
}

fn validate_executable_name(name: &str) -> Result<(), RuleError> {
    let path = Path::new(name);
    let bare = !name.is_empty()
        && path.components().count() == 1
        && path.file_name().and_then(|n| n.to_str()) == Some(name);
    if bare {
        Ok(())
    } else {
        Err(RuleError(format!(
            "host_executable: name must be a bare program name like \"git\" (got {name:?})"
        )))
    }
}

#[starlark_module]
fn rule_builtins(builder: &mut GlobalsBuilder) {
    /// Declares a rule for commands whose argv starts with `pattern`.
    fn prefix_rule<'v>(
        pattern: UnpackList<Value<'v>>,
        decision: Option<NoneOr<&'v str>>,
        r#match: Option<NoneOr<UnpackList<Value<'v>>>>,
        not_match: Option<NoneOr<UnpackList<Value<'v>>>>,
        justification: Option<NoneOr<&'v str>>,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> anyhow::Result<NoneType> {
        // `x = None` means the same as leaving `x` out.
        let decision = decision.and_then(NoneOr::into_option);
        let r#match = r#match.and_then(NoneOr::into_option);
        let not_match = not_match.and_then(NoneOr::into_option);
        let justification = justification.and_then(NoneOr::into_option);
        let decision = match decision {
            Some(raw) => {
                Decision::parse(raw).map_err(|e| RuleError(format!("prefix_rule: {e}")))?
            }
            None => Decision::Allow,
        };
        let justification = parse_justification("prefix_rule", justification)?;
        let pattern = parse_pattern(pattern)?;
        let matches = parse_examples("match", r#match)?;
        let not_matches = parse_examples("not_match", not_match)?;
        with_builder(eval, |b, source| {
            let id = u32::try_from(b.policy.rules.len())
                .map_err(|_| RuleError("prefix_rule: too many rules".to_owned()))?;
            for first in pattern[0].alternatives() {
                b.policy
                    .index
                    .entry(Box::from(first.as_bytes()))
                    .or_insert_with(|| IndexEntry {
                        name: first.clone(),
                        rules: Vec::new(),
                    })
                    .rules
                    .push(id);
            }
            b.policy.rules.push(PrefixRule {
                pattern,
                decision,
                justification,
                source,
            });
            if !matches.is_empty() || !not_matches.is_empty() {
                b.pending.push(PendingExamples {
                    rule: id,
                    matches,
                    not_matches,
                });
            }
            Ok(())
        })?;
        Ok(NoneType)
    }

    /// Lists the absolute paths that basename rules for `name` may resolve to.
    fn host_executable<'v>(
        name: &'v str,
        paths: UnpackList<Value<'v>>,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> anyhow::Result<NoneType> {
        validate_executable_name(name)?;
        with_builder(eval, |b, source| {
            let mut parsed: Vec<PathBuf> = Vec::with_capacity(paths.items.len());
            for value in &paths.items {
                let raw = value.unpack_str().ok_or_else(|| {
                    RuleError(format!(
                        "host_executable: paths must be strings (got {})",
                        value.get_type()
                    ))
                })?;
                let expanded = paths::expand_home(raw, b.home.as_deref());
                let path = paths::normalize_absolute(&expanded).ok_or_else(|| {
                    RuleError(format!(
                        "host_executable: paths must be absolute or start with `~/` (got {raw:?})"
                    ))
                })?;
                if paths::basename(&path) != Some(name) {
                    return Err(RuleError(format!(
                        "host_executable: path {raw:?} must end in the program name `{name}`"
                    )));
                }
                if !parsed.contains(&path) {
                    parsed.push(path);
                }
            }
            b.policy.host_executables.insert(name.to_owned(), parsed);
            b.policy
                .host_executable_sources
                .insert(name.to_owned(), source);
            Ok(())
        })?;
        Ok(NoneType)
    }

    /// Declares a network rule (parsed and validated; enforced elsewhere).
    fn network_rule<'v>(
        host: &'v str,
        protocol: &'v str,
        decision: &'v str,
        justification: Option<NoneOr<&'v str>>,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> anyhow::Result<NoneType> {
        let justification = justification.and_then(NoneOr::into_option);
        let protocol = NetworkProtocol::parse(protocol)?;
        let decision = parse_network_decision(decision)?;
        let justification = parse_justification("network_rule", justification)?;
        let (host, port) = normalize_network_host(host)?;
        with_builder(eval, |b, source| {
            b.policy.network_rules.push(NetworkRule {
                host,
                port,
                protocol,
                decision,
                justification,
                source,
            });
            Ok(())
        })?;
        Ok(NoneType)
    }
}
