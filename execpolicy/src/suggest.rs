//! `execgate policy suggest`: a `.rules` file learned from what a session's person and hooks
//! decided, so that the same session runs again without asking.
//!
//! Input is what a session recorded ([`Observations`]); output is rule text for a person to
//! review. The observations come from inside the sandbox (program names, arguments, hosts),
//! so they are hostile text: every piece of it is written as an escaped Starlark string in
//! printable ASCII, comments included, and nothing is suggested that would widen what the
//! sandbox can reach:
//! - one `prefix_rule` per program and subcommand, as narrow as that: `allow` for what was
//!   approved, `prompt` for what was denied (or both approved and denied);
//! - never an `allow` that [`crate::lint::escape_hatch`] flags, nor one for a program outside
//!   the system folders (the sandbox may be able to write it), nor one that the rules in
//!   force would overrule (strictest wins): those are listed as comments;
//! - a `host_executable` naming the system paths seen, for programs no other rule is written
//!   for, so the `allow` does not extend to other files of the same name;
//! - `network_rule`s for the hosts people and hooks approved (`prompt` for denied ones).
//!
//! The text loads, passes `execgate policy test` and has no `execgate policy lint` findings.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::decision::Decision;
use crate::lint::escape_hatch;
use crate::paths;
use crate::policy::{CheckOptions, Policy};
use crate::render::quote;
use crate::rule::{normalize_network_host, NetworkProtocol};

/// Who settled a command or connection that needed approval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DecidedBy {
    /// A person (a terminal prompt, an MCP elicitation, a "session" or "always" answer), or
    /// nobody there to ask.
    Person,
    /// A `PermissionRequest` hook.
    Hook,
}

/// What a person or hook answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It ran (outside the sandbox, for a command; connected, for a connection).
    Approved(DecidedBy),
    /// It was refused.
    Denied(DecidedBy),
}

/// One command of a session that a person or a hook decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedCommand {
    /// The absolute path of the file that ran.
    pub program: String,
    /// `argv[1..]`.
    pub args: Vec<String>,
    /// `false` when the record had to make program or arguments lossy (not UTF-8): such
    /// text never matches the real bytes, so it is not written into a rule.
    pub exact: bool,
    /// What was answered.
    pub outcome: Outcome,
    /// The session's rule that asked (`file:line`), when a `prompt` rule did.
    pub asked_by: Option<String>,
}

/// One connection of a session that a person or a hook decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedConnection {
    /// The host the program asked for.
    pub host: String,
    /// The port.
    pub port: Option<u16>,
    /// The protocol as recorded (`http`, `https`, `socks5_tcp`, `socks5_udp`).
    pub protocol: String,
    /// What was answered.
    pub outcome: Outcome,
}

/// What one or more sessions recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observations {
    /// Where the records came from, for the header (e.g. the audit log's path).
    pub source: String,
    /// How many sessions the records belong to.
    pub sessions: usize,
    /// The commands a person or hook decided, in the order they were decided.
    pub commands: Vec<ObservedCommand>,
    /// The connections a person or hook decided, in order.
    pub connections: Vec<ObservedConnection>,
}

/// Folders whose programs may get an `allow`: root's, not the sandbox's.
const SYSTEM_DIRS: &[&str] = &[
    "/usr/bin",
    "/bin",
    "/usr/sbin",
    "/sbin",
    "/usr/local/bin",
    "/usr/local/sbin",
];

/// At most this many `match` examples per rule, of at most this many tokens of at most this
/// many characters: enough to show what ran, not a copy of a hostile megabyte.
const MAX_EXAMPLES: usize = 3;
const MAX_EXAMPLE_TOKENS: usize = 8;
const MAX_TOKEN_CHARS: usize = 64;

/// Counts of answers.
#[derive(Clone, Debug, Default)]
struct Tally {
    approved_person: usize,
    approved_hook: usize,
    denied_person: usize,
    denied_hook: usize,
}

impl Tally {
    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Approved(DecidedBy::Person) => self.approved_person += 1,
            Outcome::Approved(DecidedBy::Hook) => self.approved_hook += 1,
            Outcome::Denied(DecidedBy::Person) => self.denied_person += 1,
            Outcome::Denied(DecidedBy::Hook) => self.denied_hook += 1,
        }
    }

    fn merge(&mut self, other: &Tally) {
        self.approved_person += other.approved_person;
        self.approved_hook += other.approved_hook;
        self.denied_person += other.denied_person;
        self.denied_hook += other.denied_hook;
    }

    fn denied(&self) -> usize {
        self.denied_person + self.denied_hook
    }

    /// `approved 3 times (2 by a person, 1 by a hook), denied once by a hook`.
    fn text(&self) -> String {
        let part = |verb: &str, person: usize, hook: usize| -> Option<String> {
            let total = person + hook;
            if total == 0 {
                return None;
            }
            let times = if total == 1 {
                "once".to_owned()
            } else {
                format!("{total} times")
            };
            let by = match (person, hook) {
                (_, 0) => "by a person".to_owned(),
                (0, _) => "by a hook".to_owned(),
                (p, h) => format!("({p} by a person, {h} by a hook)"),
            };
            Some(format!("{verb} {times} {by}"))
        };
        [
            part("approved", self.approved_person, self.approved_hook),
            part("denied", self.denied_person, self.denied_hook),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// The commands for one program and subcommand.
#[derive(Clone, Debug, Default)]
struct Group {
    tally: Tally,
    /// Program paths seen.
    paths: BTreeSet<String>,
    /// Distinct example commands with how often each ran, in first-seen order.
    examples: Vec<(Vec<String>, usize)>,
    /// The session's rules that asked.
    asked_by: BTreeSet<String>,
}

impl Group {
    fn merge(&mut self, other: Group) {
        self.tally.merge(&other.tally);
        self.paths.extend(other.paths);
        for (example, count) in other.examples {
            self.add_example(example, count);
        }
        self.asked_by.extend(other.asked_by);
    }

    fn add_example(&mut self, example: Vec<String>, count: usize) {
        match self.examples.iter_mut().find(|(e, _)| *e == example) {
            Some((_, seen)) => *seen += count,
            None => self.examples.push((example, count)),
        }
    }
}

/// A subcommand: a plain word, not an option, path or file name.
fn subcommand(arg: &str) -> Option<&str> {
    let mut chars = arg.chars();
    let first = chars.next()?;
    let word = first.is_ascii_alphabetic()
        && arg.len() <= MAX_TOKEN_CHARS
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    word.then_some(arg)
}

/// The example for a command: the program's name, then its arguments, cut before the first
/// argument that is too long and after [`MAX_EXAMPLE_TOKENS`] tokens.
fn example(name: &str, args: &[String], pattern_len: usize) -> Vec<String> {
    let mut out = vec![name.to_owned()];
    for (i, arg) in args.iter().enumerate() {
        let in_pattern = i + 1 < pattern_len;
        if !in_pattern && (out.len() >= MAX_EXAMPLE_TOKENS || arg.chars().count() > MAX_TOKEN_CHARS)
        {
            break;
        }
        out.push(arg.clone());
    }
    out
}

fn in_system_dir(program: &str) -> bool {
    std::path::Path::new(program)
        .parent()
        .and_then(|dir| dir.to_str())
        .is_some_and(|dir| SYSTEM_DIRS.contains(&dir))
}

fn list(tokens: &[String]) -> String {
    let quoted: Vec<String> = tokens.iter().map(|t| quote(t)).collect();
    format!("[{}]", quoted.join(", "))
}

/// A rule the output will hold.
struct Suggested {
    name: String,
    pattern: Vec<String>,
    decision: Decision,
    group: Group,
}

/// Renders the suggested rules for `observations`. `existing` is the policy the rules will be
/// used with (`--rules`); with it, nothing is suggested that it would overrule or that it
/// already decides as strictly.
pub fn suggest(observations: &Observations, existing: Option<&Policy>) -> String {
    let mut not_suggested: Vec<String> = Vec::new();
    // name -> subcommand (None: the program without one) -> group
    let mut groups: BTreeMap<String, BTreeMap<Option<String>, Group>> = BTreeMap::new();
    for command in &observations.commands {
        let name = paths::basename(std::path::Path::new(&command.program))
            .unwrap_or(&command.program)
            .to_owned();
        let sub = command
            .args
            .first()
            .and_then(|a| subcommand(a))
            .map(str::to_owned);
        let mut pattern = vec![name.clone()];
        pattern.extend(sub.clone());
        if !command.exact && pattern.iter().any(|t| t.contains('\u{fffd}')) {
            not_suggested.push(format!(
                "{}: its name or subcommand is not UTF-8 text, which no rule can match",
                list(&pattern)
            ));
            continue;
        }
        let group = groups
            .entry(name.clone())
            .or_default()
            .entry(sub)
            .or_default();
        group.tally.add(command.outcome);
        group.paths.insert(command.program.clone());
        if let Some(rule) = &command.asked_by {
            group.asked_by.insert(rule.clone());
        }
        if command.exact {
            group.add_example(example(&name, &command.args, pattern.len()), 1);
        }
    }

    let mut rules: Vec<Suggested> = Vec::new();
    for (name, mut subs) in groups {
        // A rule for the bare program covers its subcommands: fold them into it, so no
        // suggested rule shadows another.
        if let Some(mut broad) = subs.remove(&None) {
            for (_, group) in std::mem::take(&mut subs) {
                broad.merge(group);
            }
            subs.insert(None, broad);
        }
        for (sub, group) in subs {
            let mut pattern = vec![name.clone()];
            pattern.extend(sub);
            let decision = if group.tally.denied() > 0 {
                Decision::Prompt
            } else {
                Decision::Allow
            };
            rules.push(Suggested {
                name: name.clone(),
                pattern,
                decision,
                group,
            });
        }
    }

    let mut kept: Vec<Suggested> = Vec::new();
    for rule in rules {
        match refusal(&rule, existing) {
            Some(reason) => not_suggested.push(format!(
                "{}: {}; {reason}",
                list(&rule.pattern),
                rule.group.tally.text()
            )),
            None => kept.push(rule),
        }
    }

    let mut out = String::new();
    let commands = observations.commands.len();
    let connections = observations.connections.len();
    let _ = writeln!(
        out,
        "# Suggested by `execgate policy suggest` from {}:",
        quote(&observations.source)
    );
    let _ = writeln!(
        out,
        "# {}, {} and {} decided by a person or a hook.",
        count(observations.sessions, "session"),
        count(commands, "command"),
        count(connections, "connection")
    );
    out.push_str(
        "# Review every rule before you use it: an \"allow\" rule runs its commands outside the\n\
         # sandbox without asking, whatever arguments follow the pattern.\n",
    );

    let mut declared: BTreeSet<&str> = BTreeSet::new();
    for rule in &kept {
        out.push('\n');
        if rule.decision == Decision::Allow && !declared.contains(rule.name.as_str()) {
            if let Some(line) = host_executable(rule, &kept, existing) {
                out.push_str(&line);
                declared.insert(&rule.name);
            }
        }
        let examples = examples_text(rule);
        let _ = writeln!(
            out,
            "# {}: {}",
            list(&rule.pattern),
            rule.group.tally.text()
        );
        let _ = write!(
            out,
            "prefix_rule(\n    pattern = {},\n    decision = \"{}\",\n",
            list(&rule.pattern),
            rule.decision
        );
        if rule.decision == Decision::Prompt {
            out.push_str(
                "    justification = \"denied when this session was recorded; ask again\",\n",
            );
        }
        out.push_str(&examples);
        out.push_str(")\n");
    }

    network_rules(observations, existing, &mut out, &mut not_suggested);

    if !not_suggested.is_empty() {
        out.push_str(
            "\n# Not suggested (leave these unmatched so they run inside the sandbox, or write a\n\
             # prompt rule yourself):\n",
        );
        for line in not_suggested {
            let _ = writeln!(out, "#   {line}");
        }
    }
    out
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// Why `rule` must not be suggested, if it must not.
fn refusal(rule: &Suggested, existing: Option<&Policy>) -> Option<String> {
    let resolve = CheckOptions {
        resolve_host_executables: true,
    };
    let examples: Vec<&Vec<String>> = rule.group.examples.iter().map(|(e, _)| e).collect();
    if rule.decision == Decision::Allow {
        if let Some(hatch) = escape_hatch(&rule.pattern) {
            return Some(format!(
                "allowing it would let the sandbox out: outside the sandbox `{}` {} (see `execgate policy lint`)",
                hatch.what, hatch.can
            ));
        }
        if let Some(path) = rule.group.paths.iter().find(|p| !in_system_dir(p)) {
            return Some(format!(
                "{} is not in a system folder, so the sandbox may be able to write it",
                quote(path)
            ));
        }
        if let Some(policy) = existing {
            for example in &examples {
                let evaluation = policy.check(example, &resolve);
                if let (Some(decision), Some(rule_at)) =
                    (evaluation.decision, evaluation.deciding_rule())
                {
                    if decision > Decision::Allow {
                        return Some(format!(
                            "your rule at {} says {decision}, and the strictest rule wins: change that rule, or answer \"always\" at the prompt",
                            rule_at.source
                        ));
                    }
                }
            }
        } else if let Some(asked_by) = rule.group.asked_by.iter().next() {
            return Some(format!(
                "the session's rule at {} asked, and the strictest rule wins, so an allow here would not take effect: change that rule, or answer \"always\" at the prompt",
                quote(asked_by)
            ));
        }
    } else if let Some(policy) = existing {
        let decided = |example: &Vec<String>| {
            policy
                .check(example, &resolve)
                .decision
                .is_some_and(|d| d >= Decision::Prompt)
        };
        if !examples.is_empty() && examples.iter().all(|e| decided(e)) {
            return Some("your rules already ask for it".to_owned());
        }
    } else if let Some(asked_by) = rule.group.asked_by.iter().next() {
        return Some(format!(
            "the session's rule at {} already asks for it",
            quote(asked_by)
        ));
    }
    None
}

/// `host_executable(...)` for the name of `rule`, when no rule in force is written for that
/// name (a declaration would narrow those rules too).
fn host_executable(
    rule: &Suggested,
    kept: &[Suggested],
    existing: Option<&Policy>,
) -> Option<String> {
    if let Some(policy) = existing {
        let mentioned = policy.host_executables().contains_key(&rule.name)
            || policy.rules().iter().any(|r| {
                r.pattern[0]
                    .alternatives()
                    .iter()
                    .any(|a| **a == *rule.name)
            });
        if mentioned {
            return None;
        }
    }
    let paths: BTreeSet<&String> = kept
        .iter()
        .filter(|r| r.name == rule.name)
        .flat_map(|r| r.group.paths.iter())
        .collect();
    if paths.is_empty() || !paths.iter().all(|p| in_system_dir(p)) {
        return None;
    }
    let paths: Vec<String> = paths.into_iter().cloned().collect();
    Some(format!(
        "host_executable(name = {}, paths = {})\n",
        quote(&rule.name),
        list(&paths)
    ))
}

fn examples_text(rule: &Suggested) -> String {
    let mut examples: Vec<&(Vec<String>, usize)> = rule.group.examples.iter().collect();
    // Most frequent first; ties in first-seen order (the sort is stable).
    examples.sort_by_key(|e| std::cmp::Reverse(e.1));
    let mut lines: Vec<String> = examples
        .iter()
        .take(MAX_EXAMPLES)
        .map(|(example, _)| list(example))
        .collect();
    if lines.is_empty() {
        // Every command was lossy text: the pattern itself is the one example we can write.
        lines.push(list(&rule.pattern));
    }
    let mut out = String::from("    match = [\n");
    for line in lines {
        let _ = writeln!(out, "        {line},");
    }
    out.push_str("    ],\n");
    out
}

fn network_rules(
    observations: &Observations,
    existing: Option<&Policy>,
    out: &mut String,
    not_suggested: &mut Vec<String>,
) {
    // (host, protocol) -> (tally, ports)
    let mut hosts: BTreeMap<(String, &'static str), (Tally, BTreeSet<u16>)> = BTreeMap::new();
    for connection in &observations.connections {
        let shown = format!("{}://{}", connection.protocol, connection.host);
        let Ok(protocol) = NetworkProtocol::parse(&connection.protocol) else {
            not_suggested.push(format!(
                "{}: not a protocol network rules know",
                quote(&shown)
            ));
            continue;
        };
        let host = match normalize_network_host(&connection.host) {
            Ok((host, _port)) => host,
            Err(_) => {
                not_suggested.push(format!(
                    "{}: not a host a network rule can name",
                    quote(&shown)
                ));
                continue;
            }
        };
        let entry = hosts.entry((host, protocol.as_str())).or_default();
        entry.0.add(connection.outcome);
        entry.1.extend(connection.port);
    }
    let mut first = true;
    for ((host, protocol), (tally, ports)) in hosts {
        let decision = if tally.denied() > 0 {
            Decision::Prompt
        } else {
            Decision::Allow
        };
        let ruled = existing.and_then(|policy| {
            policy
                .network_rules()
                .iter()
                .filter(|r| r.host == host && r.protocol.as_str() == protocol)
                .map(|r| (r.decision, r.source.clone()))
                .max_by_key(|(d, _)| *d)
        });
        if let Some((ruled_decision, at)) = ruled {
            if ruled_decision >= decision {
                not_suggested.push(format!(
                    "{}: {}; your rule at {at} already says {ruled_decision}",
                    quote(&format!("{protocol}://{host}")),
                    tally.text()
                ));
                continue;
            }
        }
        if first {
            out.push_str("\n# Network\n");
            first = false;
        }
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        let _ = writeln!(
            out,
            "# {}{}: {}",
            quote(&format!("{protocol}://{host}")),
            if ports.is_empty() {
                String::new()
            } else {
                format!(" (port {})", ports.join(", "))
            },
            tally.text()
        );
        let _ = writeln!(
            out,
            "network_rule(host = {}, protocol = \"{protocol}\", decision = \"{decision}\")",
            quote(&host)
        );
    }
}
