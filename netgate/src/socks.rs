//! The SOCKS5 door (RFC 1928): no authentication, TCP CONNECT to a domain name, an IPv4 or
//! an IPv6 address. BIND and UDP ASSOCIATE are refused with "command not supported".
//!
//! The protocol is a few fixed-size fields, read here directly with exact reads (no
//! buffering past the request, so nothing the client sends early is lost or reordered).
//! The whole negotiation runs under the header timeout; the decision that follows does not.

use std::net::{Ipv4Addr, Ipv6Addr};

use execgate_execpolicy::{canonical_host, canonical_ip, CanonicalHost, NetworkProtocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::decider::ConnectionOwner;
use crate::gate::{Gate, Refusal, UpstreamError};
use crate::relay::relay;

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0;
const NO_ACCEPTABLE_METHOD: u8 = 0xff;
const CMD_CONNECT: u8 = 1;
const ATYP_V4: u8 = 1;
const ATYP_DOMAIN: u8 = 3;
const ATYP_V6: u8 = 4;

/// Reply codes (RFC 1928 §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Reply {
    Succeeded = 0,
    GeneralFailure = 1,
    NotAllowed = 2,
    NetworkUnreachable = 3,
    HostUnreachable = 4,
    ConnectionRefused = 5,
    TtlExpired = 6,
    CommandNotSupported = 7,
    AddressTypeNotSupported = 8,
}

/// A reply with an all-zero bound address (the gate's own addresses are none of the
/// sandbox's business).
fn reply(code: Reply) -> [u8; 10] {
    [VERSION, code as u8, 0, ATYP_V4, 0, 0, 0, 0, 0, 0]
}

/// What the negotiation produced.
enum Negotiated {
    /// A CONNECT to this destination.
    Connect(CanonicalHost, u16),
    /// The client got its answer (a refusal) and the connection is done.
    Refused,
}

/// Serves one SOCKS5 client.
pub(crate) async fn serve(gate: Gate, mut stream: TcpStream, owner: ConnectionOwner) {
    let limits = *gate.limits();
    let negotiated = tokio::time::timeout(limits.header_timeout, negotiate(&mut stream)).await;
    let (host, port) = match negotiated {
        Ok(Ok(Negotiated::Connect(host, port))) => (gate.unpool(host), port),
        Ok(Ok(Negotiated::Refused)) | Ok(Err(_)) | Err(_) => return,
    };
    let opened = gate
        .open(host, port, NetworkProtocol::Socks5Tcp, owner)
        .await;
    let opened = match opened {
        Ok(opened) => opened,
        Err(refusal) => {
            let code = match refusal {
                Refusal::Denied(_) => Reply::NotAllowed,
                Refusal::Failed(UpstreamError::Unresolved(_)) => Reply::HostUnreachable,
                Refusal::Failed(UpstreamError::Refused(_)) => Reply::ConnectionRefused,
                Refusal::Failed(UpstreamError::TimedOut(_)) => Reply::TtlExpired,
                Refusal::Failed(UpstreamError::Other(_)) => Reply::NetworkUnreachable,
            };
            let _ = stream.write_all(&reply(code)).await;
            return;
        }
    };
    if stream.write_all(&reply(Reply::Succeeded)).await.is_err() {
        return;
    }
    if let Err(e) = relay(
        stream,
        opened.stream,
        &[],
        gate.relay_mode(),
        limits.idle_timeout,
        &opened.tracked,
    )
    .await
    {
        tracing::debug!("network gate: socks tunnel ended: {e}");
    }
}

/// Reads the greeting and the request, answering refusals itself.
async fn negotiate(stream: &mut TcpStream) -> std::io::Result<Negotiated> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await?;
    if head[0] != VERSION {
        // Not SOCKS5 (SOCKS4, HTTP, junk): there is no reply format to answer in.
        return Ok(Negotiated::Refused);
    }
    let mut methods = vec![0u8; usize::from(head[1])];
    stream.read_exact(&mut methods).await?;
    if !methods.contains(&NO_AUTH) {
        stream.write_all(&[VERSION, NO_ACCEPTABLE_METHOD]).await?;
        return Ok(Negotiated::Refused);
    }
    stream.write_all(&[VERSION, NO_AUTH]).await?;

    let mut request = [0u8; 4];
    stream.read_exact(&mut request).await?;
    let [version, command, _reserved, address_type] = request;
    if version != VERSION {
        stream.write_all(&reply(Reply::GeneralFailure)).await?;
        return Ok(Negotiated::Refused);
    }
    let host = match address_type {
        ATYP_V4 => {
            let mut octets = [0u8; 4];
            stream.read_exact(&mut octets).await?;
            Some(canonical_ip(Ipv4Addr::from(octets).into()))
        }
        ATYP_V6 => {
            let mut octets = [0u8; 16];
            stream.read_exact(&mut octets).await?;
            Some(canonical_ip(Ipv6Addr::from(octets).into()))
        }
        ATYP_DOMAIN => {
            let mut len = [0u8; 1];
            stream.read_exact(&mut len).await?;
            let mut name = vec![0u8; usize::from(len[0])];
            stream.read_exact(&mut name).await?;
            std::str::from_utf8(&name).ok().and_then(canonical_host)
        }
        _ => {
            stream
                .write_all(&reply(Reply::AddressTypeNotSupported))
                .await?;
            return Ok(Negotiated::Refused);
        }
    };
    let mut port = [0u8; 2];
    stream.read_exact(&mut port).await?;
    if command != CMD_CONNECT {
        // BIND and UDP ASSOCIATE: not offered.
        stream.write_all(&reply(Reply::CommandNotSupported)).await?;
        return Ok(Negotiated::Refused);
    }
    let Some(host) = host else {
        stream.write_all(&reply(Reply::HostUnreachable)).await?;
        return Ok(Negotiated::Refused);
    };
    Ok(Negotiated::Connect(host, u16::from_be_bytes(port)))
}
