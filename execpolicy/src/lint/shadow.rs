//! Rules that can never change a decision.
//!
//! Every matching rule counts and the strictest decision wins, so a rule `A` changes nothing
//! when every command it matches is also matched by some other rule with a decision at least
//! as strict. A pattern matches the commands whose argv starts with one token from each
//! position, so it is enough to check each combination of `A`'s alternatives: another rule
//! `B` matches all commands of a combination when `B` is no longer than it and accepts its
//! token at each of `B`'s positions.

use std::cmp::Reverse;
use std::collections::HashSet;

use super::{and_list, combinations, Finding, LintCode};
use crate::policy::Policy;
use crate::rule::PrefixRule;

/// Patterns with more combinations than this are not analysed (no finding).
const COMBINATION_LIMIT: usize = 1024;

/// Rule-against-combination comparisons for a whole policy; beyond it the remaining rules
/// are not analysed, so a huge or hostile file still lints in bounded time (seconds).
const COMPARISON_BUDGET: usize = 50_000_000;

/// Adds a finding for each rule that can never change a decision, and returns their indices.
pub(super) fn dead_rules(policy: &Policy, findings: &mut Vec<Finding>) -> HashSet<usize> {
    let rules = policy.rules();
    let mut dead = HashSet::new();
    let mut budget = COMPARISON_BUDGET;
    for (a, rule) in rules.iter().enumerate() {
        let Some(combos) = combinations(rule, usize::MAX, COMBINATION_LIMIT) else {
            continue;
        };
        let mut candidates: Vec<usize> = rule.pattern[0]
            .alternatives()
            .iter()
            .filter_map(|alt| policy.index.get(alt.as_bytes()))
            .flat_map(|entry| entry.rules.iter().map(|&i| i as usize))
            // A rule already reported covers nothing: every reported rule can be removed
            // at once (covering is transitive, so nothing it covered loses its cover).
            .filter(|&b| b != a && !dead.contains(&b))
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        let twin = |b: usize| same_pattern(&rules[b], rule) && rules[b].decision == rule.decision;
        if let Some(&b) = candidates.iter().find(|&&b| b < a && twin(b)) {
            findings.push(Finding::new(
                &rule.source,
                LintCode::Duplicate,
                format!(
                    "this rule repeats the rule at {} (same pattern, same decision)",
                    rules[b].source
                ),
                "remove one of them".to_owned(),
            ));
            dead.insert(a);
            continue;
        }
        // Of two twins only the later one is reported, so a later twin is no cover.
        candidates.retain(|&b| !(b > a && twin(b)));
        // Only rules at least as strict can cover; the strictest first, so the rule named
        // is the one that decides.
        candidates.retain(|&b| rules[b].decision >= rule.decision);
        candidates.sort_by_key(|&b| (Reverse(rules[b].decision), b));
        let mut covering: Vec<usize> = Vec::new();
        let mut stricter = None;
        let mut all_covered = true;
        for combo in &combos {
            // Neighbouring combinations usually share a cover: try the ones found so far
            // first.
            let found = covering
                .iter()
                .chain(candidates.iter())
                .copied()
                .find(|&b| {
                    budget = budget.saturating_sub(1);
                    covers(&rules[b], combo)
                });
            let Some(b) = found else {
                all_covered = false;
                break;
            };
            if rules[b].decision > rule.decision {
                stricter = stricter.max(Some(rules[b].decision));
            }
            if !covering.contains(&b) {
                covering.push(b);
            }
            if budget == 0 {
                return dead;
            }
        }
        if !all_covered {
            continue;
        }
        dead.insert(a);
        let locations: Vec<String> = covering
            .iter()
            .map(|&b| rules[b].source.to_string())
            .collect();
        let one = covering.len() == 1;
        let who = format!(
            "the rule{} at {}",
            if one { "" } else { "s" },
            and_list(&locations)
        );
        let (matches, decides) = if one {
            ("matches", "decides")
        } else {
            ("match", "decide")
        };
        let decision = rule.decision;
        let (message, fix) = match stricter {
            Some(stricter) => (
                format!(
                    "this `{decision}` rule never takes effect: {who} also {matches} every command it matches, with the stricter decision `{stricter}`"
                ),
                format!("remove it, or narrow {who} if `{decision}` is what those commands should get"),
            ),
            None => (
                format!(
                    "this `{decision}` rule never changes a decision: {who} also {matches} every command it matches and {decides} `{decision}` too"
                ),
                format!("remove it; {who} already {decides} the same"),
            ),
        };
        findings.push(Finding::new(&rule.source, LintCode::Shadowed, message, fix));
    }
    dead
}

/// Whether `rule` matches every command that starts with `combo`.
fn covers(rule: &PrefixRule, combo: &[&str]) -> bool {
    rule.pattern.len() <= combo.len()
        && rule
            .pattern
            .iter()
            .zip(combo)
            .all(|(token, text)| token.matching(text.as_bytes()).is_some())
}

/// Same length and the same set of alternatives at each position.
fn same_pattern(a: &PrefixRule, b: &PrefixRule) -> bool {
    a.pattern.len() == b.pattern.len()
        && a.pattern.iter().zip(b.pattern.iter()).all(|(x, y)| {
            let (x, y) = (x.alternatives(), y.alternatives());
            x.iter().all(|t| y.contains(t)) && y.iter().all(|t| x.contains(t))
        })
}
