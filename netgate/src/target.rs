//! Reading `host[:port]` as requests write it (CONNECT targets, absolute URIs, `Host`
//! headers).

use execgate_execpolicy::{canonical_host, CanonicalHost};

/// Reads `host:port`, `[v6]:port`, or (with `default_port`) a bare `host` / `[v6]`. The
/// host is canonical; anything else (bad port, empty, junk) is `None`.
pub fn parse_host_port(text: &str, default_port: Option<u16>) -> Option<(CanonicalHost, u16)> {
    let (host, port) = if text.starts_with('[') {
        let end = text.find(']')?;
        let (host, rest) = text.split_at(end + 1);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match text.rsplit_once(':') {
            // An IPv6 literal must be bracketed to be followed by a port.
            Some((host, _)) if host.contains(':') => return None,
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let port = match port {
        Some(port) => parse_port(port)?,
        None => default_port?,
    };
    Some((canonical_host(host)?, port))
}

fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `host` or `host:port` (IPv6 in brackets), leaving out `default_port`: what a `Host`
/// header says.
pub(crate) fn authority_text(host: &CanonicalHost, port: u16, default_port: u16) -> String {
    let host = match host {
        CanonicalHost::Ip(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
        other => other.to_string(),
    };
    if port == default_port {
        host
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str, default: Option<u16>) -> Option<(String, u16)> {
        parse_host_port(text, default).map(|(h, p)| (h.to_string(), p))
    }

    #[test]
    fn host_and_port_forms() {
        assert_eq!(
            parsed("Example.com:443", None),
            Some(("example.com".into(), 443))
        );
        assert_eq!(
            parsed("example.com", Some(80)),
            Some(("example.com".into(), 80))
        );
        assert_eq!(parsed("example.com", None), None);
        assert_eq!(parsed("[::1]:8080", None), Some(("::1".into(), 8080)));
        assert_eq!(parsed("[::1]", Some(80)), Some(("::1".into(), 80)));
        assert_eq!(parsed("0x7f.1:80", None), Some(("127.0.0.1".into(), 80)));
        assert_eq!(
            parsed("2130706433:80", None),
            Some(("127.0.0.1".into(), 80))
        );
        assert_eq!(
            parsed("example.com:0", None),
            Some(("example.com".into(), 0))
        );
    }

    #[test]
    fn junk_is_refused() {
        for text in [
            "",
            ":80",
            "example.com:",
            "example.com:65536",
            "example.com:+80",
            "example.com:080000",
            "example.com:80:80",
            "[::1]80",
            "[::1",
            "::1:80",
            "exa mple.com:80",
            "user@example.com:80",
        ] {
            assert_eq!(parse_host_port(text, Some(80)), None, "{text:?}");
        }
    }

    #[test]
    fn authority_text_leaves_out_the_default_port() {
        let host = canonical_host("example.com").unwrap();
        assert_eq!(authority_text(&host, 80, 80), "example.com");
        assert_eq!(authority_text(&host, 8080, 80), "example.com:8080");
        let v6 = canonical_host("[::1]").unwrap();
        assert_eq!(authority_text(&v6, 8080, 80), "[::1]:8080");
    }
}
