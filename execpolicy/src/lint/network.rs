//! Network rules that cannot mean what they say.
//!
//! The gate (design "Network", issue 16) decides each connection by the host a program asks
//! for: compared with the rule's host in one canonical form (names lowercased without the
//! trailing dot; IP literals, in any spelling a C resolver reads, as the address they are),
//! protocol enforced, port not part of the match (as in Codex). Local and private addresses
//! are refused unless a rule names them. So:
//! - a host that is neither an address nor a DNS name the gate accepts can never match;
//! - an address spelt `0x7f.1`, `2852039166` or `::ffff:10.0.0.1` matches the address it is,
//!   which the spelling hides from a reader (`2852039166` is the cloud metadata service);
//! - a port in the host (`example.com:8443`) restricts nothing (the gate only captures that
//!   port for programs that ignore proxy settings);
//! - two spellings of one address are one host for duplicates and overrules.

use std::net::{IpAddr, Ipv6Addr};

use super::{Finding, LintCode};
use crate::network::{canonical_host, non_public_reason, parse_ipv4_literal};
use crate::policy::Policy;
use crate::render::quote;

pub(super) fn network_findings(policy: &Policy) -> Vec<Finding> {
    let rules = policy.network_rules();
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let canonical = canonical_host(&rule.host);
        if let Some(usual) = usual_address_form(&rule.host) {
            let kind = non_public_reason(usual)
                .map(|kind| {
                    format!(" ({kind}: reachable through the gate only because a rule names it)")
                })
                .unwrap_or_default();
            out.push(Finding::new(
                &rule.source,
                LintCode::NetworkAddressForm,
                format!(
                    "host {} is the address {usual}{kind}, written another way: the gate compares addresses, not spellings, so this rule is about {usual}",
                    quote(&rule.host),
                ),
                format!(
                    "write host = {} so a reader sees which address the rule opens",
                    quote(&usual.to_string())
                ),
            ));
        } else if canonical.is_none() {
            let fix = if rule.host.is_ascii() {
                "write the host name the program connects to (labels of 1 to 63 letters, digits, `-` or `_`)"
            } else {
                "write the name in its ASCII form (punycode, `xn--...`), which is what programs ask for"
            };
            out.push(Finding::new(
                &rule.source,
                LintCode::NetworkUnreachableHost,
                format!(
                    "host {} is neither an address nor a DNS name the gate accepts, so no connection can ever match this rule",
                    quote(&rule.host)
                ),
                fix.to_owned(),
            ));
        }
        if let Some(port) = rule.port {
            out.push(Finding::new(
                &rule.source,
                LintCode::NetworkPort,
                format!(
                    "the port in {} is not part of the match: like Codex, execgate drops it, so this rule covers {} on every port (the port only makes the network gate capture connections to it from programs that ignore proxy settings)",
                    quote(&format!("{}:{port}", rule.host)),
                    quote(&rule.host)
                ),
                format!(
                    "write host = {} to say what the rule does, unless programs connect to that port without a proxy",
                    quote(&rule.host)
                ),
            ));
        }
        // The gate compares canonical hosts: `127.0.0.1` and `2130706433` are one host.
        let same = |other: &&crate::rule::NetworkRule| {
            other.protocol == rule.protocol
                && (other.host == rule.host
                    || (canonical.is_some() && canonical_host(&other.host) == canonical))
        };
        if let Some(earlier) = rules[..i]
            .iter()
            .find(|o| same(o) && o.decision == rule.decision)
        {
            out.push(Finding::new(
                &rule.source,
                LintCode::Duplicate,
                format!(
                    "this network rule repeats the one at {} (same host, protocol and decision)",
                    earlier.source
                ),
                "remove one of them".to_owned(),
            ));
        } else if let Some(stricter) = rules
            .iter()
            .filter(|o| same(o) && o.decision > rule.decision)
            .max_by_key(|o| o.decision)
        {
            out.push(Finding::new(
                &rule.source,
                LintCode::Shadowed,
                format!(
                    "this `{}` network rule never takes effect: the rule at {} names the same host and protocol with the stricter decision `{}`",
                    rule.decision, stricter.source, stricter.decision
                ),
                "remove one of them".to_owned(),
            ));
        }
    }
    out
}

/// The usual text of an IP address written in another form, or `None` when `host` is not
/// an address or is already written the usual way. IPv6 written out in full is not
/// flagged; an IPv4-mapped one is (the gate reads it as the IPv4 address it maps).
fn usual_address_form(host: &str) -> Option<IpAddr> {
    if let Ok(v6) = host.parse::<Ipv6Addr>() {
        return v6.to_ipv4_mapped().map(IpAddr::V4);
    }
    let v4 = parse_ipv4_literal(host)?;
    (v4.to_string() != host).then_some(IpAddr::V4(v4))
}

#[cfg(test)]
mod tests {
    use super::usual_address_form;

    #[test]
    fn other_address_forms_are_recognised() {
        let usual = |h: &str| usual_address_form(h).map(|ip| ip.to_string());
        assert_eq!(usual("2130706433").as_deref(), Some("127.0.0.1"));
        assert_eq!(usual("0x7f.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(usual("0177.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(usual("127.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(usual("10.0.1").as_deref(), Some("10.0.0.1"));
        assert_eq!(usual("::ffff:10.0.0.1").as_deref(), Some("10.0.0.1"));
        assert_eq!(usual("0:0:0:0:0:0:0:1"), None);
        assert_eq!(usual("127.0.0.1"), None);
        assert_eq!(usual("::1"), None);
        assert_eq!(usual("example.com"), None);
        assert_eq!(usual("1e100.net"), None);
        assert_eq!(usual("256.1.1.1"), None);
        assert_eq!(usual("1.2.3.4.5"), None);
    }
}
