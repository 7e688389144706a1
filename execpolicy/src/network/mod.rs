//! Matching a network destination against `network_rule(...)` declarations.
//!
//! A rule names one host exactly, as Codex's `network_rule` does: no wildcards, no
//! subdomains; the rule's host is compared case-insensitively, without its trailing dot,
//! port or IPv6 brackets. Beyond Codex, a rule's protocol is enforced: an `https` rule
//! says nothing about plain `http` or SOCKS to the same host. Among the rules naming one
//! (host, protocol), the strictest decision wins (`forbidden` > `prompt` > `allow`), as for
//! prefix rules, so a later `allow` never lifts an earlier `deny`.
//!
//! Both sides are put in one canonical form before they are compared ([`canonical_host`]):
//! DNS names lowercased without the trailing dot, IP literals in every spelling a C
//! resolver accepts (`2130706433`, `0x7f.1`, `0177.0.0.1`, `[::ffff:127.0.0.1]`) as the
//! address they denote. So a rule naming `127.0.0.1` covers `0x7f.1`, and a hostile
//! spelling never slips past a rule that names the address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

mod local;

pub use local::{is_public, non_public_reason};

use crate::decision::Decision;
use crate::policy::Policy;
use crate::rule::{NetworkProtocol, NetworkRule};

/// The longest DNS name accepted, in its text form without the trailing dot.
pub const MAX_HOST_NAME_LEN: usize = 253;

/// A destination host in canonical form: an IP address, or a validated DNS name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CanonicalHost {
    /// An IP literal; IPv4-mapped IPv6 addresses are read as the IPv4 address they map.
    Ip(IpAddr),
    /// A DNS name: lowercase ASCII letters, digits, `-` and `_` in dot-separated labels of 1
    /// to 63 characters, at most [`MAX_HOST_NAME_LEN`] in all, no trailing dot.
    Name(String),
}

impl CanonicalHost {
    /// The canonical text: the address as `std` prints it (IPv6 without brackets), or the
    /// name.
    pub fn as_text(&self) -> String {
        match self {
            Self::Ip(ip) => ip.to_string(),
            Self::Name(name) => name.clone(),
        }
    }
}

impl std::fmt::Display for CanonicalHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Name(name) => f.write_str(name),
        }
    }
}

/// Reads a host as a request names it (no port): `[v6]`, an IPv4 literal in any form a C
/// resolver accepts, an IPv6 literal, or a DNS name; one trailing dot is ignored and
/// letters are lowercased. Returns `None` for anything else (empty labels, spaces, `%`
/// zone ids, non-ASCII, over-long names): such a host is refused, never resolved.
pub fn canonical_host(raw: &str) -> Option<CanonicalHost> {
    if let Some(inside) = raw.strip_prefix('[') {
        let inside = inside.strip_suffix(']')?;
        return inside
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| canonical_ip(ip.into()));
    }
    if raw.contains(':') {
        return raw
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| canonical_ip(ip.into()));
    }
    let lower = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
    if let Some(ip) = parse_ipv4_literal(&lower) {
        return Some(CanonicalHost::Ip(IpAddr::V4(ip)));
    }
    valid_dns_name(&lower).then_some(CanonicalHost::Name(lower))
}

/// An address in canonical form: IPv4-mapped IPv6 (`::ffff:a.b.c.d`) becomes IPv4.
pub fn canonical_ip(ip: IpAddr) -> CanonicalHost {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => CanonicalHost::Ip(IpAddr::V4(v4)),
            None => CanonicalHost::Ip(IpAddr::V6(v6)),
        },
        v4 => CanonicalHost::Ip(v4),
    }
}

/// Parses an IPv4 literal the way `inet_aton(3)` does: one to four dot-separated parts,
/// each decimal, octal (leading `0`) or hex (`0x`), the last part filling the remaining
/// bytes (`127.1` is `127.0.0.1`, `2130706433` is `127.0.0.1`). Unlike `inet_aton`, no
/// trailing text is tolerated.
pub fn parse_ipv4_literal(text: &str) -> Option<Ipv4Addr> {
    let mut parts = [0u32; 4];
    let mut count = 0;
    for part in text.split('.') {
        if count == 4 {
            return None;
        }
        parts[count] = parse_c_integer(part)?;
        count += 1;
    }
    let (head, last) = (&parts[..count - 1], parts[count - 1]);
    if head.iter().any(|&p| p > 0xff) {
        return None;
    }
    let last_bits = 8 * (4 - head.len() as u32);
    if last_bits < 32 && last >> last_bits != 0 {
        return None;
    }
    let mut value = last;
    for (i, &p) in head.iter().enumerate() {
        value |= p << (24 - 8 * i as u32);
    }
    Some(Ipv4Addr::from(value))
}

/// One `inet_aton` part: `0x1F` hex, `017` octal, `15` decimal; at most 32 bits.
fn parse_c_integer(part: &str) -> Option<u32> {
    let (digits, radix) = if let Some(hex) = part.strip_prefix("0x") {
        (hex, 16)
    } else if part.len() > 1 && part.starts_with('0') {
        (&part[1..], 8)
    } else {
        (part, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

/// Whether `name` (already lowercased, no trailing dot) is a DNS name we accept.
fn valid_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_HOST_NAME_LEN
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
}

/// The canonical form of a rule's (already normalized) host, for comparison. A rule host
/// that is neither an address nor a valid name can never match a request.
fn rule_host(rule: &NetworkRule) -> Option<CanonicalHost> {
    canonical_host(&rule.host)
}

/// The rules naming one (host, protocol), and what they decide together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkEvaluation<'a> {
    /// The strictest decision among `matched`; `None` when no rule names the destination.
    pub decision: Option<Decision>,
    /// Every rule naming this host for this protocol, in load order.
    pub matched: Vec<&'a NetworkRule>,
}

impl NetworkEvaluation<'_> {
    /// The first matched rule carrying the final decision: the one to quote.
    pub fn deciding_rule(&self) -> Option<&NetworkRule> {
        let decision = self.decision?;
        self.matched
            .iter()
            .copied()
            .find(|r| r.decision == decision)
    }
}

impl Policy {
    /// Checks a destination against the `network_rule`s: the rules whose host is `host`
    /// (compared in canonical form) and whose protocol is `protocol`.
    pub fn check_network(
        &self,
        host: &CanonicalHost,
        protocol: NetworkProtocol,
    ) -> NetworkEvaluation<'_> {
        let matched: Vec<&NetworkRule> = self
            .network_rules
            .iter()
            .filter(|rule| rule.protocol == protocol && rule_host(rule).as_ref() == Some(host))
            .collect();
        let decision = matched.iter().map(|r| r.decision).max();
        NetworkEvaluation { decision, matched }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<CanonicalHost> {
        Some(CanonicalHost::Ip(text.parse().unwrap()))
    }

    fn name(text: &str) -> Option<CanonicalHost> {
        Some(CanonicalHost::Name(text.to_owned()))
    }

    #[test]
    fn ipv4_literals_in_every_c_spelling_are_the_address() {
        for spelling in [
            "127.0.0.1",
            "2130706433",
            "0x7f000001",
            "0x7f.1",
            "0177.0.0.1",
            "0177.1",
            "127.1",
            "127.0.1",
            "0X7F.0.0.01",
            "127.0.0.1.",
        ] {
            assert_eq!(canonical_host(spelling), ip("127.0.0.1"), "{spelling}");
        }
        assert_eq!(canonical_host("169.254.169.254"), ip("169.254.169.254"));
        assert_eq!(canonical_host("0xa9fea9fe"), ip("169.254.169.254"));
        assert_eq!(canonical_host("0"), ip("0.0.0.0"));
        assert_eq!(canonical_host("10.65535"), ip("10.0.255.255"));
        assert_eq!(canonical_host("10.65536"), ip("10.1.0.0"));
    }

    #[test]
    fn out_of_range_or_malformed_numbers_are_not_addresses() {
        // Not addresses, and not names either when they are not valid labels.
        assert_eq!(canonical_host("256.0.0.1"), name("256.0.0.1"));
        assert_eq!(canonical_host("10.16777216"), name("10.16777216"));
        assert_eq!(canonical_host("1.2.65536"), name("1.2.65536"));
        assert_eq!(canonical_host("1.2.3.4.5"), name("1.2.3.4.5"));
        assert_eq!(canonical_host("4294967296"), name("4294967296"));
        assert_eq!(canonical_host("08.0.0.1"), name("08.0.0.1"));
        assert_eq!(canonical_host("0x"), name("0x"));
        assert_eq!(canonical_host("0xg.1"), name("0xg.1"));
        assert_eq!(canonical_host("1..1"), None);
        assert_eq!(canonical_host(".1"), None);
        assert_eq!(canonical_host("127.0.0.1 "), None);
    }

    #[test]
    fn ipv6_literals_with_or_without_brackets() {
        assert_eq!(canonical_host("[::1]"), ip("::1"));
        assert_eq!(canonical_host("::1"), ip("::1"));
        assert_eq!(canonical_host("[FE80::1]"), ip("fe80::1"));
        assert_eq!(canonical_host("[::ffff:127.0.0.1]"), ip("127.0.0.1"));
        assert_eq!(canonical_host("[::ffff:7f00:1]"), ip("127.0.0.1"));
        assert_eq!(canonical_host("[fe80::1%eth0]"), None);
        assert_eq!(canonical_host("[::1"), None);
        assert_eq!(canonical_host("[example.com]"), None);
        assert_eq!(canonical_host("example.com:443"), None);
    }

    #[test]
    fn names_are_lowercased_without_trailing_dot_and_validated() {
        assert_eq!(canonical_host("Example.COM."), name("example.com"));
        assert_eq!(canonical_host("_srv.a-b.example"), name("_srv.a-b.example"));
        assert_eq!(canonical_host("example.com.."), None);
        assert_eq!(canonical_host(""), None);
        assert_eq!(canonical_host("."), None);
        assert_eq!(canonical_host("exa mple.com"), None);
        assert_eq!(canonical_host("exa\0mple.com"), None);
        assert_eq!(canonical_host("ex\u{e4}mple.com"), None);
        assert_eq!(canonical_host("a/b"), None);
        assert_eq!(canonical_host(&"a".repeat(64)), None);
        assert_eq!(canonical_host(&"a".repeat(63)), name(&"a".repeat(63)));
        let long = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(long.len(), 253);
        assert_eq!(canonical_host(&long), name(&long));
        assert_eq!(canonical_host(&format!("{long}e")), None);
    }

    fn policy(text: &str) -> Policy {
        Policy::from_source("net.rules", text).unwrap()
    }

    fn check(policy: &Policy, host: &str, protocol: NetworkProtocol) -> Option<Decision> {
        policy
            .check_network(&canonical_host(host).unwrap(), protocol)
            .decision
    }

    #[test]
    fn a_rule_names_one_host_case_insensitively_without_dot_or_port() {
        let p = policy(
            r#"network_rule(host = "API.Example.com.:8443", protocol = "https", decision = "allow")"#,
        );
        assert_eq!(
            check(&p, "api.example.com", NetworkProtocol::Https),
            Some(Decision::Allow)
        );
        assert_eq!(
            check(&p, "API.EXAMPLE.COM.", NetworkProtocol::Https),
            Some(Decision::Allow)
        );
        assert_eq!(check(&p, "example.com", NetworkProtocol::Https), None);
        assert_eq!(check(&p, "x.api.example.com", NetworkProtocol::Https), None);
        assert_eq!(
            check(&p, "api.example.com.evil", NetworkProtocol::Https),
            None
        );
    }

    #[test]
    fn a_rule_covers_only_its_protocol() {
        let p =
            policy(r#"network_rule(host = "example.com", protocol = "https", decision = "allow")"#);
        assert_eq!(
            check(&p, "example.com", NetworkProtocol::Https),
            Some(Decision::Allow)
        );
        assert_eq!(check(&p, "example.com", NetworkProtocol::Http), None);
        assert_eq!(check(&p, "example.com", NetworkProtocol::Socks5Tcp), None);
        assert_eq!(check(&p, "example.com", NetworkProtocol::Socks5Udp), None);
    }

    #[test]
    fn the_strictest_rule_wins_in_any_order() {
        let p = policy(
            r#"
network_rule(host = "a.example", protocol = "http", decision = "deny", justification = "no")
network_rule(host = "a.example", protocol = "http", decision = "allow")
network_rule(host = "b.example", protocol = "http", decision = "allow")
network_rule(host = "b.example", protocol = "http", decision = "prompt")
"#,
        );
        let a = p.check_network(&canonical_host("a.example").unwrap(), NetworkProtocol::Http);
        assert_eq!(a.decision, Some(Decision::Forbidden));
        assert_eq!(a.matched.len(), 2);
        let deciding = a.deciding_rule().unwrap();
        assert_eq!(deciding.justification.as_deref(), Some("no"));
        assert_eq!(deciding.source.line, 2);
        assert_eq!(
            check(&p, "b.example", NetworkProtocol::Http),
            Some(Decision::Prompt)
        );
    }

    #[test]
    fn address_rules_cover_every_spelling_of_the_address() {
        let p = policy(
            r#"
network_rule(host = "127.0.0.1", protocol = "http", decision = "allow")
network_rule(host = "[::1]:80", protocol = "http", decision = "allow")
network_rule(host = "0x7f.2", protocol = "http", decision = "allow")
"#,
        );
        for spelling in [
            "127.0.0.1",
            "2130706433",
            "0x7f.1",
            "0177.0.0.1",
            "[::ffff:127.0.0.1]",
        ] {
            assert_eq!(
                check(&p, spelling, NetworkProtocol::Http),
                Some(Decision::Allow),
                "{spelling}"
            );
        }
        assert_eq!(
            check(&p, "[::1]", NetworkProtocol::Http),
            Some(Decision::Allow)
        );
        assert_eq!(
            check(&p, "127.0.0.2", NetworkProtocol::Http),
            Some(Decision::Allow)
        );
        assert_eq!(check(&p, "127.0.0.3", NetworkProtocol::Http), None);
    }
}
