//! The network gate: the only way out of a sandbox in `--network gated` mode.
//!
//! A [`Gate`] serves four doors, each on a socket handed in by the caller (so the
//! integration can create them inside the sandbox's network namespace and hold them from
//! outside: no helper process runs in the sandbox):
//! - an HTTP proxy ([`Gate::serve_http_proxy`]): CONNECT tunnels and absolute-URI requests;
//! - a SOCKS5 proxy ([`Gate::serve_socks5`]): TCP CONNECT by name, IPv4 or IPv6;
//! - a DNS responder ([`Gate::serve_dns_udp`], [`Gate::serve_dns_tcp`]) that answers every
//!   name with an address from a private pool and never looks anything up;
//! - capture listeners ([`Gate::serve_captured`]) for connections to those pool addresses,
//!   read back as the name and decided like proxied ones.
//!
//! Each new (host, port, protocol) is put to a [`NetworkDecider`] once (concurrent
//! connections share the question); the gate never knows who decided. It must never open
//! a connection that was not decided, never resolve a name before it was allowed, never
//! connect to an address other than the ones it checked, and never reach a local or
//! private address that no rule (or `--network-resolve` entry) names. Every decided
//! connection ends in one [`ConnectionRecord`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use execgate_execpolicy::Policy;
//! use execgate_netgate::{DenyAll, Gate, GateConfig, RulesDecider, Source};
//!
//! # async fn session(proxy_fd: std::os::fd::OwnedFd) -> Result<(), Box<dyn std::error::Error>> {
//! let policy = Arc::new(Policy::from_source(
//!     "net.rules",
//!     r#"network_rule(host = "pypi.test", protocol = "https", decision = "allow")"#,
//! )?);
//! // Rules first; what they leave open goes to the next stage (here: nobody to ask).
//! let next = Arc::new(DenyAll::new(Source::User, "nobody can be asked"));
//! let decider = Arc::new(RulesDecider::new(Arc::clone(&policy), next));
//! let mut config = GateConfig::new(policy);
//! config.resolve.add_entry("pypi.test:127.0.0.1")?;
//! let (gate, mut records) = Gate::new(config, decider);
//! let listener = execgate_netgate::tcp_listener_from_fd(proxy_fd)?;
//! tokio::spawn(async move { gate.serve_http_proxy(listener).await });
//! while let Some(record) = records.recv().await {
//!     println!("{} {}:{} {}", record.verdict.as_str(), record.host, record.port, record.bytes_down);
//! }
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod capture;
mod config;
mod decider;
mod dns;
mod gate;
mod http;
mod pool;
mod record;
mod relay;
mod socks;
mod target;

use std::io;
use std::os::fd::OwnedFd;

pub use capture::capture_ports;
pub use config::{
    AddressPool, BindCapture, CaptureBinder, GateConfig, Limits, PoolError, RelayMode,
    ResolveEntryError, ResolveOverrides,
};
pub use decider::{
    target_text, BoxFuture, ConnectionOwner, DenyAll, ExecRef, NetworkDecider, NetworkRequest,
    NetworkVerdict, Outcome, RulesDecider, Scope, Source, Via,
};
pub use execgate_execpolicy::NetworkProtocol;
pub use gate::Gate;
pub use record::ConnectionRecord;
pub use target::parse_host_port;

use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::decider::ConnectionOwner as Owner;

impl Gate {
    /// Serves the HTTP proxy on `listener` until dropped. Returns only if the listener
    /// itself fails.
    pub async fn serve_http_proxy(&self, listener: TcpListener) -> io::Result<()> {
        let local = listener.local_addr()?;
        self.accept_loop(
            listener,
            move |gate, stream, peer, permit| async move {
                let owner = Owner {
                    peer,
                    listener: local,
                    via: Via::HttpProxy,
                };
                http::serve(gate, stream, owner, http::HttpMode::Proxy).await;
                drop(permit);
            },
            |stream| reject(stream, http::TOO_MANY),
        )
        .await
    }

    /// Serves the SOCKS5 proxy on `listener` until dropped.
    pub async fn serve_socks5(&self, listener: TcpListener) -> io::Result<()> {
        let local = listener.local_addr()?;
        self.accept_loop(
            listener,
            move |gate, stream, peer, permit| async move {
                let owner = Owner {
                    peer,
                    listener: local,
                    via: Via::Socks5,
                };
                socks::serve(gate, stream, owner).await;
                drop(permit);
            },
            drop,
        )
        .await
    }

    /// Serves captured connections on `listener` until dropped: each one is to the pool
    /// address it dialled (the accepted socket's local address), on a port whose traffic
    /// is `protocol` (`https` for 443, `http` for 80; `socks5_tcp` passes raw TCP through).
    pub async fn serve_captured(
        &self,
        listener: TcpListener,
        protocol: NetworkProtocol,
    ) -> io::Result<()> {
        self.accept_loop(
            listener,
            move |gate, stream, peer, permit| async move {
                capture::serve(gate, stream, peer, protocol).await;
                drop(permit);
            },
            gate::reset,
        )
        .await
    }

    /// Answers DNS queries on a UDP socket until dropped.
    pub async fn serve_dns_udp(&self, socket: UdpSocket) -> io::Result<()> {
        dns::serve_udp(self.clone(), socket).await
    }

    /// Answers DNS queries over TCP on `listener` until dropped.
    pub async fn serve_dns_tcp(&self, listener: TcpListener) -> io::Result<()> {
        self.accept_loop(
            listener,
            |gate, stream, _peer, permit| async move {
                dns::serve_tcp_connection(gate, stream).await;
                drop(permit);
            },
            drop,
        )
        .await
    }

    /// Answers one DNS message (a query's bytes) as the responder would; `None` when it
    /// gets no answer. For tests and for callers with their own transport.
    pub fn answer_dns(&self, query: &[u8]) -> Option<Vec<u8>> {
        dns::answer(self, query)
    }
}

/// Answers a connection over the cap without waiting on it: one non-blocking write of
/// `reply`, then close.
fn reject(stream: TcpStream, reply: &[u8]) {
    let _ = stream.try_write(reply);
}

/// Turns a listening TCP socket handed in as an fd (e.g. created inside the sandbox's
/// network namespace) into a tokio listener. Fails if the fd is not a listening TCP
/// socket. Must be called within a tokio runtime.
pub fn tcp_listener_from_fd(fd: OwnedFd) -> io::Result<TcpListener> {
    use nix::sys::socket::{getsockopt, sockopt};
    let listening = getsockopt(&fd, sockopt::AcceptConn).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("network gate: the fd handed in is not a socket ({e})"),
        )
    })?;
    let kind = getsockopt(&fd, sockopt::SockType).map_err(io::Error::from)?;
    if !listening || kind != nix::sys::socket::SockType::Stream || !is_inet(&fd) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "network gate: the fd handed in is not a listening TCP socket (bind and listen it first)",
        ));
    }
    let listener = std::net::TcpListener::from(fd);
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

/// Whether `fd` is an IPv4 or IPv6 socket (a unix socket can look like a listening
/// stream socket too).
fn is_inet(fd: &OwnedFd) -> bool {
    use nix::sys::socket::{getsockname, AddressFamily, SockaddrLike, SockaddrStorage};
    use std::os::fd::AsRawFd;
    getsockname::<SockaddrStorage>(fd.as_raw_fd())
        .ok()
        .and_then(|address| address.family())
        .is_some_and(|family| matches!(family, AddressFamily::Inet | AddressFamily::Inet6))
}

/// Turns a bound UDP socket handed in as an fd into a tokio socket. Fails if the fd is not
/// a datagram socket. Must be called within a tokio runtime.
pub fn udp_socket_from_fd(fd: OwnedFd) -> io::Result<UdpSocket> {
    use nix::sys::socket::{getsockopt, sockopt};
    let kind = getsockopt(&fd, sockopt::SockType).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("network gate: the fd handed in is not a socket ({e})"),
        )
    })?;
    if kind != nix::sys::socket::SockType::Datagram || !is_inet(&fd) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "network gate: the fd handed in is not a UDP socket",
        ));
    }
    let socket = std::net::UdpSocket::from(fd);
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}
