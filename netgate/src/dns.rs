//! The sandbox's DNS responder: every A query gets an address from the pool, remembered so
//! a captured connection to it can be read back as the name.
//!
//! Nothing is ever looked up upstream: a name asked about here reaches no real resolver,
//! so DNS cannot carry data out of the sandbox, and a name is resolved for real only after
//! a connection to it was allowed. AAAA and other types get an empty answer (NODATA), so
//! programs fall back to the A address; PTR queries for pool addresses get the name.
//! Malformed queries get FORMERR; nothing a client sends can stop the responder.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use execgate_execpolicy::{canonical_host, CanonicalHost};
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::JoinSet;

use crate::gate::Gate;

/// Seconds an answer may be cached: the mapping never changes within a session.
const TTL: u32 = 300;

/// The largest UDP query read (a larger datagram is truncated and answered FORMERR).
const MAX_UDP: usize = 4096;

/// The pool address an A (or ANY) query for a name will be answered with, handed out now
/// if it is the name's first query; `None` for any other message. The responder makes sure
/// the address is captured ([`Gate::ensure_captured`]) before it answers.
fn address_asked(gate: &Gate, query: &[u8]) -> Option<Ipv4Addr> {
    let message = Message::from_vec(query).ok()?;
    if message.metadata.message_type != MessageType::Query
        || message.metadata.op_code != OpCode::Query
        || message.queries.len() != 1
    {
        return None;
    }
    let query = &message.queries[0];
    if query.query_class() != DNSClass::IN
        || !matches!(query.query_type(), RecordType::A | RecordType::ANY)
    {
        return None;
    }
    let Some(CanonicalHost::Name(host)) = canonical_host(&name_text(query.name())?) else {
        return None;
    };
    if host.ends_with(".in-addr.arpa") || host.ends_with(".ip6.arpa") {
        return None;
    }
    gate.address_for(&host)
}

/// Answers one DNS message as the responder does on its sockets: a name's first A query
/// waits until its pool address is captured, and is answered SERVFAIL if it cannot be.
pub(crate) async fn answer_captured(gate: &Gate, query: &[u8]) -> Option<Vec<u8>> {
    let captured = match address_asked(gate, query) {
        Some(address) => gate.ensure_captured(address).await,
        None => true,
    };
    answer_as(gate, query, captured)
}

/// Answers one DNS message (the bytes of a query); `None` when there is nothing to answer
/// (fewer bytes than a header, or a response rather than a query).
pub(crate) fn answer(gate: &Gate, query: &[u8]) -> Option<Vec<u8>> {
    answer_as(gate, query, true)
}

/// [`answer`], with `captured` false when the name's address could not be captured (its
/// A query then gets SERVFAIL: an address nothing listens on would only hang a client).
fn answer_as(gate: &Gate, query: &[u8], captured: bool) -> Option<Vec<u8>> {
    let message = match Message::from_vec(query) {
        Ok(message) => message,
        Err(_) => return format_error(query),
    };
    if message.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut response = Message::response(message.metadata.id, message.metadata.op_code);
    response.metadata.recursion_desired = message.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.authoritative = true;
    if message.edns.is_some() {
        let mut edns = hickory_proto::op::Edns::new();
        edns.set_max_payload(1232);
        response.set_edns(edns);
    }
    let code = if message.metadata.op_code != OpCode::Query {
        ResponseCode::NotImp
    } else if message.queries.len() != 1 {
        ResponseCode::FormErr
    } else {
        let query = &message.queries[0];
        response.add_query(query.clone());
        respond(
            gate,
            query.name(),
            query.query_type(),
            query.query_class(),
            captured,
            &mut response,
        )
    };
    response.metadata.response_code = code;
    response.to_vec().ok()
}

/// Fills in the answer to one question and returns the response code.
fn respond(
    gate: &Gate,
    name: &Name,
    query_type: RecordType,
    class: DNSClass,
    captured: bool,
    response: &mut Message,
) -> ResponseCode {
    if class != DNSClass::IN {
        return ResponseCode::Refused;
    }
    let Some(text) = name_text(name) else {
        return ResponseCode::NXDomain;
    };
    if query_type == RecordType::PTR {
        return match reverse_pool_name(gate, &text) {
            Some(target) => match Name::from_ascii(format!("{target}.")) {
                Ok(target) => {
                    response.add_answer(Record::from_rdata(
                        name.clone(),
                        TTL,
                        RData::PTR(PTR(target)),
                    ));
                    ResponseCode::NoError
                }
                Err(_) => ResponseCode::ServFail,
            },
            None => ResponseCode::NXDomain,
        };
    }
    // Names that are addresses, or not names we would ever decide, do not exist.
    let Some(CanonicalHost::Name(host)) = canonical_host(&text) else {
        return ResponseCode::NXDomain;
    };
    if host.ends_with(".in-addr.arpa") || host.ends_with(".ip6.arpa") {
        return ResponseCode::NXDomain;
    }
    let Some(address) = gate.address_for(&host) else {
        return ResponseCode::ServFail;
    };
    if !captured && matches!(query_type, RecordType::A | RecordType::ANY) {
        return ResponseCode::ServFail;
    }
    if matches!(query_type, RecordType::A | RecordType::ANY) {
        response.add_answer(Record::from_rdata(name.clone(), TTL, RData::A(A(address))));
    }
    ResponseCode::NoError
}

/// The query name as lowercase text without the trailing dot, if every label is plain
/// ASCII (anything else is refused before it is turned into text).
fn name_text(name: &Name) -> Option<String> {
    let mut labels = Vec::new();
    for label in name.iter() {
        let label = std::str::from_utf8(label).ok()?;
        if !label.is_ascii() || label.contains('.') {
            return None;
        }
        labels.push(label.to_ascii_lowercase());
    }
    Some(labels.join("."))
}

/// The pool name for `d.c.b.a.in-addr.arpa`, when `a.b.c.d` is a handed-out pool address.
fn reverse_pool_name(gate: &Gate, text: &str) -> Option<String> {
    let octets = text.strip_suffix(".in-addr.arpa")?;
    let mut parts = [0u8; 4];
    let mut count = 0;
    for part in octets.split('.') {
        if count == 4
            || part.is_empty()
            || part.len() > 3
            || !part.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        parts[3 - count] = part.parse().ok()?;
        count += 1;
    }
    (count == 4).then_some(())?;
    gate.name_for(Ipv4Addr::from(parts))
}

/// FORMERR for bytes that are not a DNS message but start with a header.
fn format_error(query: &[u8]) -> Option<Vec<u8>> {
    let header = query.get(..12)?;
    if header[2] & 0x80 != 0 {
        return None; // a response: never answer those
    }
    let mut reply = vec![0u8; 12];
    reply[..2].copy_from_slice(&header[..2]);
    reply[2] = 0x80 | (header[2] & 0x79); // QR, opcode and RD copied
    reply[3] = ResponseCode::FormErr.low();
    Some(reply)
}

/// Most first queries waiting for their names' capture listeners at once; more are
/// dropped (the client asks again).
const MAX_WAITING: usize = 256;

/// Answers queries on a UDP socket until dropped.
pub(crate) async fn serve_udp(gate: Gate, socket: UdpSocket) -> std::io::Result<()> {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; MAX_UDP];
    let mut waiting = JoinSet::new();
    loop {
        let received = tokio::select! {
            received = socket.recv_from(&mut buf) => received,
            Some(_) = waiting.join_next(), if !waiting.is_empty() => continue,
        };
        let (n, peer) = match received {
            Ok(received) => received,
            Err(e) if is_fatal(&e) => return Err(e),
            Err(_) => continue,
        };
        let query = &buf[..n];
        if address_asked(&gate, query).is_some_and(|a| !gate.is_captured(a)) {
            // A name's first query waits for its capture listeners, in a task of its own so
            // other names are answered meanwhile.
            if waiting.len() < MAX_WAITING {
                let (gate, socket, query) = (gate.clone(), Arc::clone(&socket), query.to_vec());
                waiting.spawn(async move {
                    if let Some(reply) = answer_captured(&gate, &query).await {
                        let _ = socket.send_to(&reply, peer).await;
                    }
                });
            }
            continue;
        }
        if let Some(reply) = answer(&gate, query) {
            // A client that cannot take the reply simply does not get one.
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

fn is_fatal(error: &std::io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EBADF | libc::EINVAL | libc::ENOTSOCK)
    )
}

/// Answers length-prefixed queries on one TCP connection until it closes or idles out.
pub(crate) async fn serve_tcp_connection(gate: Gate, mut stream: TcpStream) {
    let limits = *gate.limits();
    loop {
        let message = tokio::time::timeout(limits.header_timeout, read_message(&mut stream)).await;
        let Ok(Ok(message)) = message else {
            return;
        };
        let Some(reply) = answer_captured(&gate, &message).await else {
            return;
        };
        let Ok(len) = u16::try_from(reply.len()) else {
            return;
        };
        let write = async {
            stream.write_all(&len.to_be_bytes()).await?;
            stream.write_all(&reply).await
        };
        if !matches!(
            tokio::time::timeout(Duration::from_secs(10), write).await,
            Ok(Ok(()))
        ) {
            return;
        }
    }
}

async fn read_message(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut message).await?;
    Ok(message)
}
