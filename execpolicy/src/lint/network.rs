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
//! - a port in the host (`example.com:8443`) restricts nothing.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{Finding, LintCode};
use crate::policy::Policy;
use crate::render::quote;

pub(super) fn network_findings(policy: &Policy) -> Vec<Finding> {
    let rules = policy.network_rules();
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        if let Some(usual) = usual_address_form(&rule.host) {
            let kind = local_kind(&usual)
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
                    quote(&usual)
                ),
            ));
        } else if !is_address(&rule.host) && !valid_dns_name(&rule.host) {
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
                    "the port in {} is not part of the match: like Codex, execgate drops it, so this rule covers {} on every port",
                    quote(&format!("{}:{port}", rule.host)),
                    quote(&rule.host)
                ),
                format!("write host = {} to say what the rule does", quote(&rule.host)),
            ));
        }
        let same = |other: &&crate::rule::NetworkRule| {
            other.host == rule.host && other.protocol == rule.protocol
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
/// an address or is already written the usual way.
fn usual_address_form(host: &str) -> Option<String> {
    if let Ok(v6) = host.parse::<Ipv6Addr>() {
        return v6.to_ipv4_mapped().map(|v4| v4.to_string());
    }
    let v4 = parse_inet_aton(host)?;
    let usual = v4.to_string();
    (usual != host).then_some(usual)
}

/// Parses the forms `inet_aton(3)` accepts (what curl, Python and glibc resolvers read as an
/// address): one to four parts, each decimal, `0x` hex or `0` octal, the last filling the
/// remaining bytes.
fn parse_inet_aton(host: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = host.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut values = Vec::with_capacity(parts.len());
    for part in &parts {
        let (digits, radix) =
            if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
                (hex, 16)
            } else if part.len() > 1 && part.starts_with('0') {
                (&part[1..], 8)
            } else {
                (*part, 10)
            };
        if digits.is_empty() && radix != 16 {
            return None;
        }
        let value = if digits.is_empty() {
            0
        } else {
            u32::from_str_radix(digits, radix).ok()?
        };
        values.push(value);
    }
    let (last, init) = values.split_last()?;
    if init.iter().any(|&v| v > 0xff) {
        return None;
    }
    let remaining_bits = 8 * (4 - init.len() as u32);
    if remaining_bits < 32 && *last >= 1u32 << remaining_bits {
        return None;
    }
    let mut address: u32 = 0;
    for (i, v) in init.iter().enumerate() {
        address |= v << (24 - 8 * i as u32);
    }
    Some(Ipv4Addr::from(address | last))
}

/// What kind of local or private address `usual` is, if it is one.
fn local_kind(usual: &str) -> Option<&'static str> {
    if let Ok(v4) = usual.parse::<Ipv4Addr>() {
        let [a, b, ..] = v4.octets();
        return if v4.octets() == [169, 254, 169, 254] {
            Some("the cloud metadata address")
        } else if v4.is_loopback() {
            Some("a loopback address")
        } else if v4.is_private() || (a == 100 && (64..128).contains(&b)) {
            Some("a private address")
        } else if v4.is_link_local() {
            Some("a link-local address")
        } else if v4.is_unspecified() {
            Some("the unspecified address")
        } else {
            None
        };
    }
    None
}

fn is_address(host: &str) -> bool {
    host.parse::<Ipv6Addr>().is_ok() || parse_inet_aton(host).is_some()
}

/// A DNS name as the gate accepts one: lowercase ASCII letters, digits, `-` and `_` in
/// dot-separated labels of 1 to 63, at most 253 in all (rule hosts are already lowercased
/// and have no trailing dot).
fn valid_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::usual_address_form;

    #[test]
    fn other_address_forms_are_recognised() {
        let usual = |h: &str| usual_address_form(h);
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
