//! Which addresses are local, private or otherwise not on the public internet.
//!
//! The network gate refuses these destinations unless a rule (or a `--network-resolve`
//! entry) names the host: a sandboxed script must not reach the host's own services, the
//! LAN, or a cloud metadata endpoint through the gate. `policy lint` uses the same table to
//! say what an address in a rule is. The tables are the IANA special-purpose
//! registries: every block there is refused, so what is left is exactly the globally
//! routable unicast space.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 special-purpose blocks (RFC 6890 and successors), with the name used in denials.
const V4_SPECIAL: &[([u8; 4], u8, &str)] = &[
    ([0, 0, 0, 0], 8, "\"this network\" (0.0.0.0/8)"),
    ([10, 0, 0, 0], 8, "private (10.0.0.0/8)"),
    ([100, 64, 0, 0], 10, "carrier-grade NAT (100.64.0.0/10)"),
    ([127, 0, 0, 0], 8, "loopback (127.0.0.0/8)"),
    ([169, 254, 169, 254], 32, "the cloud metadata address"),
    ([169, 254, 0, 0], 16, "link-local (169.254.0.0/16)"),
    ([172, 16, 0, 0], 12, "private (172.16.0.0/12)"),
    (
        [192, 0, 0, 0],
        24,
        "IETF protocol assignments (192.0.0.0/24)",
    ),
    ([192, 0, 2, 0], 24, "documentation (192.0.2.0/24)"),
    ([192, 88, 99, 0], 24, "6to4 relay anycast (192.88.99.0/24)"),
    ([192, 168, 0, 0], 16, "private (192.168.0.0/16)"),
    ([198, 18, 0, 0], 15, "benchmarking (198.18.0.0/15)"),
    ([198, 51, 100, 0], 24, "documentation (198.51.100.0/24)"),
    ([203, 0, 113, 0], 24, "documentation (203.0.113.0/24)"),
    ([224, 0, 0, 0], 4, "multicast (224.0.0.0/4)"),
    ([240, 0, 0, 0], 4, "reserved (240.0.0.0/4)"),
];

/// Why `ip` is not a public destination (`None` when it is one).
pub fn non_public_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

/// Whether `ip` is a globally routable unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    non_public_reason(ip).is_none()
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let bits = u32::from(ip);
    V4_SPECIAL.iter().find_map(|&(base, len, name)| {
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        (bits & mask == u32::from(Ipv4Addr::from(base)) & mask).then_some(name)
    })
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4_reason(v4).unwrap_or("IPv4-mapped (::ffff:0:0/96)"));
    }
    let s = ip.segments();
    let in_prefix = |prefix: [u16; 2], len: u32| {
        let head = (u32::from(s[0]) << 16) | u32::from(s[1]);
        let base = (u32::from(prefix[0]) << 16) | u32::from(prefix[1]);
        let mask = u32::MAX << (32 - len);
        head & mask == base & mask
    };
    if ip.is_loopback() {
        return Some("loopback (::1)");
    }
    if ip.is_unspecified() {
        return Some("unspecified (::)");
    }
    // NAT64 (64:ff9b::/96) reaches the IPv4 address it embeds: judge that address.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return v4_reason(v4);
    }
    // Only global unicast (2000::/3) is public, minus its special blocks.
    if !in_prefix([0x2000, 0], 3) {
        return Some(if in_prefix([0xfc00, 0], 7) {
            "unique local (fc00::/7)"
        } else if in_prefix([0xfe80, 0], 10) {
            "link-local (fe80::/10)"
        } else if in_prefix([0xff00, 0], 8) {
            "multicast (ff00::/8)"
        } else {
            "reserved IPv6 space (outside 2000::/3)"
        });
    }
    if in_prefix([0x2001, 0], 23) {
        return Some("IETF protocol assignments (2001::/23)");
    }
    if in_prefix([0x2001, 0x0db8], 32) || in_prefix([0x3fff, 0], 20) {
        return Some("documentation (2001:db8::/32, 3fff::/20)");
    }
    if in_prefix([0x2002, 0], 16) {
        return Some("6to4 (2002::/16)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(text: &str) -> bool {
        is_public(text.parse().unwrap())
    }

    #[test]
    fn local_private_and_special_v4_are_not_public() {
        for addr in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "169.254.1.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!public(addr), "{addr}");
        }
    }

    #[test]
    fn public_v4_is_public() {
        for addr in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
        ] {
            assert!(public(addr), "{addr}");
        }
    }

    #[test]
    fn local_and_special_v6_are_not_public() {
        for addr in [
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:8.8.8.8",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001::1",
            "2001:db8::1",
            "2002:7f00:1::",
            "3fff::1",
            "100::1",
        ] {
            assert!(!public(addr), "{addr}");
        }
    }

    #[test]
    fn global_v6_is_public() {
        for addr in ["2606:4700::1111", "2a00:1450:4001::1", "64:ff9b::808:808"] {
            assert!(public(addr), "{addr}");
        }
    }

    #[test]
    fn the_metadata_address_is_named() {
        assert_eq!(
            non_public_reason("169.254.169.254".parse().unwrap()),
            Some("the cloud metadata address")
        );
        assert_eq!(
            non_public_reason("::ffff:10.1.2.3".parse().unwrap()),
            Some("private (10.0.0.0/8)")
        );
    }
}
