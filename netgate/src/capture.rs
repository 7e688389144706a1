//! Transparent capture: connections a program made to a pool address (because the
//! sandbox's DNS answered its lookup with one) without knowing about any proxy.
//!
//! The address the client dialled is the accepted socket's local address (the integration
//! routes the pool to the capture listeners); it is read back as the name it was handed
//! out for and decided like a proxied connection. An address that is not a handed-out
//! pool address is refused at once. TLS connections must name the same host in their
//! ClientHello's SNI (or none); a mismatch is refused. Refusals are resets.

use std::net::{IpAddr, SocketAddr};

use execgate_execpolicy::{canonical_host, canonical_ip, CanonicalHost, NetworkProtocol, Policy};
use rustls::server::Acceptor;
use tokio::net::TcpStream;

use crate::decider::{ConnectionOwner, Via};
use crate::gate::{reset, Gate};
use crate::http::{self, HttpMode};
use crate::relay::relay;

/// The ports to capture and the protocol each one speaks: 443 (`https`) and 80 (`http`),
/// then every port a `network_rule` host names (`example.com:8443`), with that rule's
/// protocol (`socks5_tcp` passes raw TCP; `socks5_udp` rules name no TCP port). A port is
/// listed once, with the first protocol named for it.
pub fn capture_ports(policy: &Policy) -> Vec<(u16, NetworkProtocol)> {
    let mut ports = vec![(443, NetworkProtocol::Https), (80, NetworkProtocol::Http)];
    for rule in policy.network_rules() {
        let Some(port) = rule.port else { continue };
        if rule.protocol == NetworkProtocol::Socks5Udp || ports.iter().any(|&(p, _)| p == port) {
            continue;
        }
        ports.push((port, rule.protocol));
    }
    ports
}

/// The most ClientHello bytes read before giving up on finding its end.
const MAX_CLIENT_HELLO: usize = 64 * 1024;

/// Serves one captured connection, speaking `protocol` (HTTPS: TLS passed through; HTTP:
/// requests read and forwarded; anything else: bytes passed through).
pub(crate) async fn serve(
    gate: Gate,
    stream: TcpStream,
    peer: SocketAddr,
    protocol: NetworkProtocol,
) {
    let Ok(dialled) = stream.local_addr() else {
        return reset(stream);
    };
    let owner = ConnectionOwner {
        peer,
        listener: dialled,
        via: Via::Capture,
    };
    let port = dialled.port();
    let address = canonical_ip(dialled.ip());
    let name = match address {
        CanonicalHost::Ip(IpAddr::V4(v4)) => gate.name_for(v4),
        _ => None,
    };
    let Some(name) = name else {
        let reason = format!(
            "{} is not an address the sandbox's DNS gave out; connect by name or through the proxy",
            dialled.ip()
        );
        gate.refuse(&address, port, protocol, owner, reason);
        return reset(stream);
    };
    let host = CanonicalHost::Name(name);
    match protocol {
        NetworkProtocol::Http => {
            http::serve(gate, stream, owner, HttpMode::Captured(host, port)).await
        }
        NetworkProtocol::Https => {
            let limits = *gate.limits();
            let hello =
                tokio::time::timeout(limits.header_timeout, read_client_hello(&stream)).await;
            let (bytes, sni) = match hello {
                Ok(Ok(hello)) => hello,
                Ok(Err(why)) => {
                    gate.refuse(&host, port, protocol, owner, why);
                    return reset(stream);
                }
                Err(_) => return reset(stream),
            };
            if let Some(sni) = sni {
                if canonical_host(&sni).as_ref() != Some(&host) {
                    let reason = format!(
                        "the TLS server name {sni:?} is not {host}, the name this address was given for"
                    );
                    gate.refuse(&host, port, protocol, owner, reason);
                    return reset(stream);
                }
            }
            pass_through(gate, stream, host, port, protocol, owner, &bytes).await;
        }
        other => pass_through(gate, stream, host, port, other, owner, &[]).await,
    }
}

async fn pass_through(
    gate: Gate,
    stream: TcpStream,
    host: CanonicalHost,
    port: u16,
    protocol: NetworkProtocol,
    owner: ConnectionOwner,
    first: &[u8],
) {
    let opened = match gate.open(host, port, protocol, owner).await {
        Ok(opened) => opened,
        Err(_) => return reset(stream),
    };
    let limits = *gate.limits();
    if let Err(e) = relay(
        stream,
        opened.stream,
        first,
        gate.relay_mode(),
        limits.idle_timeout,
        &opened.tracked,
    )
    .await
    {
        tracing::debug!("network gate: captured connection ended: {e}");
    }
}

/// Reads until a whole ClientHello has arrived; returns the bytes read (to pass on
/// unchanged) and the server name it asks for, if any. Anything that is not a ClientHello
/// rustls can parse is refused with the reason.
async fn read_client_hello(stream: &TcpStream) -> Result<(Vec<u8>, Option<String>), String> {
    let mut acceptor = Acceptor::default();
    let mut bytes = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        stream
            .readable()
            .await
            .map_err(|e| format!("reading the TLS ClientHello: {e}"))?;
        let n = match stream.try_read(&mut chunk) {
            Ok(0) => return Err("the client closed before its TLS ClientHello".to_owned()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(format!("reading the TLS ClientHello: {e}")),
        };
        bytes.extend_from_slice(&chunk[..n]);
        let mut fresh = &chunk[..n];
        while !fresh.is_empty() {
            acceptor
                .read_tls(&mut fresh)
                .map_err(|e| format!("not a TLS ClientHello: {e}"))?;
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let sni = accepted.client_hello().server_name().map(str::to_owned);
                return Ok((bytes, sni));
            }
            Ok(None) if bytes.len() < MAX_CLIENT_HELLO => continue,
            Ok(None) => return Err("the TLS ClientHello is too large".to_owned()),
            Err((e, _alert)) => return Err(format!("not a TLS ClientHello: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_ports_are_80_443_and_every_port_a_rule_names() {
        let policy = Policy::from_source(
            "net.rules",
            r#"
network_rule(host = "a.test:8443", protocol = "https", decision = "allow")
network_rule(host = "b.test:8443", protocol = "http", decision = "allow")
network_rule(host = "[::1]:2222", protocol = "socks5_tcp", decision = "prompt")
network_rule(host = "c.test:5353", protocol = "socks5_udp", decision = "allow")
network_rule(host = "d.test:443", protocol = "http", decision = "allow")
network_rule(host = "e.test", protocol = "http", decision = "allow")
"#,
        )
        .unwrap();
        assert_eq!(
            capture_ports(&policy),
            vec![
                (443, NetworkProtocol::Https),
                (80, NetworkProtocol::Http),
                (8443, NetworkProtocol::Https),
                (2222, NetworkProtocol::Socks5Tcp),
            ]
        );
    }
}
