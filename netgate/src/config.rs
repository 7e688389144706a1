//! What a gate is built from: the rules it consults for local destinations, the resolver
//! overrides, the address pool of the DNS responder, and its limits.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use execgate_execpolicy::{canonical_host, CanonicalHost, NetworkProtocol, Policy};

/// Everything a [`crate::Gate`] needs besides its decider.
#[derive(Clone, Debug)]
pub struct GateConfig {
    /// The session's rules. The gate reads them only to know which hosts a rule names
    /// (local and private destinations are refused unless one does); deciding is the
    /// decider's job.
    pub policy: Arc<Policy>,
    /// Names resolved without asking the system resolver (`--network-resolve`); the local
    /// address block is lifted for these names only.
    pub resolve: ResolveOverrides,
    /// The addresses the DNS responder hands out, one per name.
    pub pool: AddressPool,
    /// Caps and timeouts.
    pub limits: Limits,
    /// How tunnelled bytes are moved.
    pub relay: RelayMode,
    /// Creates capture listeners for each pool address before the DNS responder hands it
    /// out (one per [`GateConfig::capture_ports`] entry, bound to that address). Without
    /// one, the integration serves capture listeners of its own (e.g. on a wildcard
    /// address) and the responder hands addresses out at once.
    pub binder: Option<CaptureBinder>,
    /// The ports captured on each pool address and the protocol each speaks (default:
    /// [`crate::capture_ports`] of the policy).
    pub capture_ports: Vec<(u16, NetworkProtocol)>,
}

impl GateConfig {
    /// A configuration with `policy`, no overrides, the default pool, limits and relay, no
    /// binder, and the policy's capture ports.
    pub fn new(policy: Arc<Policy>) -> Self {
        let capture_ports = crate::capture_ports(&policy);
        Self {
            policy,
            resolve: ResolveOverrides::default(),
            pool: AddressPool::default(),
            limits: Limits::default(),
            relay: RelayMode::default(),
            binder: None,
            capture_ports,
        }
    }
}

/// Makes the listening socket that captures one pool address and port, inside the
/// sandbox's network namespace (bound to exactly that address, so the sandbox keeps every
/// other address and port for itself).
pub trait BindCapture: Send + Sync + 'static {
    /// A listening TCP socket bound to `address`. May block (it may ask the sandbox's init
    /// for a socket): the gate calls it on a blocking thread.
    fn bind(&self, address: SocketAddrV4) -> std::io::Result<std::net::TcpListener>;
}

/// A shared [`BindCapture`].
#[derive(Clone)]
pub struct CaptureBinder(pub Arc<dyn BindCapture>);

impl std::fmt::Debug for CaptureBinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CaptureBinder")
    }
}

/// Caps and timeouts; every one is enforced by refusing or closing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once across all of the session's listeners (proxied, captured
    /// and DNS over TCP). One more is answered at once with an error and closed.
    pub max_connections: usize,
    /// Time a client has to send a complete request head (HTTP), handshake (SOCKS5), TLS
    /// ClientHello (capture) or DNS message (TCP).
    pub header_timeout: Duration,
    /// A tunnel, keep-alive connection or DNS-over-TCP connection with no bytes moving in
    /// either direction for this long is closed.
    pub idle_timeout: Duration,
    /// Time to establish the upstream TCP connection (per address tried).
    pub connect_timeout: Duration,
    /// Largest HTTP request head (request line and headers), in bytes; larger gets `431`.
    pub max_header_bytes: usize,
    /// Most header fields in one HTTP request head; more gets `431`.
    pub max_headers: usize,
    /// With a [`CaptureBinder`]: most names whose addresses are captured (each costs a
    /// listening socket per capture port); the next new name gets SERVFAIL.
    pub max_captured_names: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_captured_names: 1024,
        }
    }
}

/// How tunnelled bytes move between the two sockets. Both cost the same CPU per byte on
/// the development VM (the loopback TCP stack dominates, not the copy; see
/// `benches/netgate.sh`), so the default is the one that needs no pipes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RelayMode {
    /// `splice(2)` through a pipe per direction: the bytes never enter user space, at the
    /// price of two more fds per active direction.
    Splice,
    /// `read`/`write` through a 256 KiB buffer per active direction.
    #[default]
    Copy,
}

/// Names mapped to addresses by the user (`--network-resolve NAME:ADDR`, like curl's
/// `--resolve`): a testing and air-gapped aid. Such names are never looked up, and the
/// local-address block is lifted for them (the user chose the address).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolveOverrides {
    map: HashMap<String, Vec<IpAddr>>,
}

/// A `--network-resolve` entry that could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("--network-resolve {entry:?}: {what}; write NAME:ADDR, e.g. pypi.test:127.0.0.1 or pypi.test:[::1]")]
pub struct ResolveEntryError {
    /// The entry as given.
    pub entry: String,
    /// What is wrong with it.
    pub what: &'static str,
}

impl ResolveOverrides {
    /// Adds one `NAME:ADDR` entry (ADDR an IPv4 address, or IPv6 with or without
    /// brackets). Repeating a name adds addresses, tried in order.
    pub fn add_entry(&mut self, entry: &str) -> Result<(), ResolveEntryError> {
        let error = |what| ResolveEntryError {
            entry: entry.to_owned(),
            what,
        };
        let (name, addr) = entry.split_once(':').ok_or_else(|| error("no ':'"))?;
        let Some(CanonicalHost::Name(name)) = canonical_host(name) else {
            return Err(error("NAME must be a host name (not an address)"));
        };
        let addr = addr
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr);
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| error("ADDR must be an IP address"))?;
        let addrs = self.map.entry(name).or_default();
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
        Ok(())
    }

    /// Adds `name` → `addr` (a canonical name).
    pub fn insert(&mut self, name: &str, addr: IpAddr) {
        let addrs = self.map.entry(name.to_owned()).or_default();
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }

    /// The addresses `name` (canonical) is mapped to, if it is.
    pub fn get(&self, name: &str) -> Option<&[IpAddr]> {
        self.map.get(name).map(Vec::as_slice)
    }
}

/// The IPv4 block the DNS responder gives out addresses from, one per name asked about.
/// It must lie in the benchmarking range 198.18.0.0/15, which is never a real destination
/// (so an address from it can only have come from the responder).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressPool {
    base: Ipv4Addr,
    prefix: u8,
}

/// An address pool outside the range it must lie in.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("address pool {base}/{prefix} must lie within 198.18.0.0/15 and hold at least 2 addresses (prefix 15 to 30)")]
pub struct PoolError {
    /// The base given.
    pub base: Ipv4Addr,
    /// The prefix length given.
    pub prefix: u8,
}

impl AddressPool {
    /// The pool `base/prefix`; `base` is masked to the prefix.
    pub fn new(base: Ipv4Addr, prefix: u8) -> Result<Self, PoolError> {
        let error = PoolError { base, prefix };
        if !(15..=30).contains(&prefix) {
            return Err(error);
        }
        let mask = u32::MAX << (32 - prefix);
        let base = Ipv4Addr::from(u32::from(base) & mask);
        if u32::from(base) & 0xfffe_0000 != u32::from(Ipv4Addr::new(198, 18, 0, 0)) {
            return Err(error);
        }
        Ok(Self { base, prefix })
    }

    /// The first address of the block.
    pub fn base(&self) -> Ipv4Addr {
        self.base
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// How many addresses can be handed out (the block minus its first and last).
    pub fn capacity(&self) -> u32 {
        (1u32 << (32 - self.prefix)) - 2
    }

    /// The `index`-th address handed out (0-based), if within capacity.
    pub(crate) fn address(&self, index: u32) -> Option<Ipv4Addr> {
        (index < self.capacity()).then(|| Ipv4Addr::from(u32::from(self.base) + 1 + index))
    }

    /// The index of `ip` in the pool, if it is one the pool can hand out.
    pub(crate) fn index_of(&self, ip: Ipv4Addr) -> Option<u32> {
        let offset = u32::from(ip).checked_sub(u32::from(self.base))?;
        (1..=self.capacity()).contains(&offset).then(|| offset - 1)
    }
}

impl Default for AddressPool {
    /// 198.18.0.0/16: 65534 names per session.
    fn default() -> Self {
        Self {
            base: Ipv4Addr::new(198, 18, 0, 0),
            prefix: 16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_entries_take_v4_and_v6_and_reject_the_rest() {
        let mut overrides = ResolveOverrides::default();
        overrides.add_entry("PyPI.Test.:127.0.0.1").unwrap();
        overrides.add_entry("pypi.test:[::1]").unwrap();
        overrides.add_entry("other.test:::1").unwrap();
        assert_eq!(
            overrides.get("pypi.test"),
            Some(&["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()][..])
        );
        assert_eq!(
            overrides.get("other.test"),
            Some(&["::1".parse().unwrap()][..])
        );
        let err = overrides.add_entry("pypi.test").unwrap_err();
        assert_eq!(
            err.to_string(),
            "--network-resolve \"pypi.test\": no ':'; write NAME:ADDR, e.g. pypi.test:127.0.0.1 or pypi.test:[::1]"
        );
        assert_eq!(
            overrides.add_entry("10.0.0.1:127.0.0.1").unwrap_err().what,
            "NAME must be a host name (not an address)"
        );
        assert_eq!(
            overrides.add_entry("a.test:localhost").unwrap_err().what,
            "ADDR must be an IP address"
        );
    }

    #[test]
    fn pools_must_lie_in_the_benchmarking_range() {
        let pool = AddressPool::new(Ipv4Addr::new(198, 19, 7, 9), 24).unwrap();
        assert_eq!(pool.base(), Ipv4Addr::new(198, 19, 7, 0));
        assert_eq!(pool.capacity(), 254);
        assert_eq!(pool.address(0), Some(Ipv4Addr::new(198, 19, 7, 1)));
        assert_eq!(pool.address(253), Some(Ipv4Addr::new(198, 19, 7, 254)));
        assert_eq!(pool.address(254), None);
        assert_eq!(pool.index_of(Ipv4Addr::new(198, 19, 7, 1)), Some(0));
        assert_eq!(pool.index_of(Ipv4Addr::new(198, 19, 7, 0)), None);
        assert_eq!(pool.index_of(Ipv4Addr::new(198, 19, 7, 255)), None);
        assert_eq!(pool.index_of(Ipv4Addr::new(198, 19, 8, 1)), None);
        assert!(AddressPool::new(Ipv4Addr::new(10, 0, 0, 0), 16).is_err());
        assert!(AddressPool::new(Ipv4Addr::new(198, 18, 0, 0), 14).is_err());
        assert!(AddressPool::new(Ipv4Addr::new(198, 18, 0, 0), 31).is_err());
        assert_eq!(AddressPool::default().capacity(), 65534);
    }
}
