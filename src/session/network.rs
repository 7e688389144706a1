//! The network gate of a `--network gated` session: its sockets inside the sandbox's
//! network namespace, the proxy variables the shell gets, and what its records become.
//!
//! No helper runs in the sandbox. The sandbox's init creates sockets in the sandbox's
//! namespaces on request ([`Supervisor::open_socket`]); the server configures them itself,
//! before the shell is released: loopback up, the DNS pool's block made local to loopback
//! (an address on `lo`, so every pool address is one the sandbox can connect to), and the
//! listeners bound and listening: the HTTP proxy on 127.0.0.1:3128, SOCKS5 on
//! 127.0.0.1:1080, DNS on 127.0.0.1:53 (UDP and TCP). Capture listeners are made per name,
//! bound to exactly the pool address the DNS responder hands out (so the sandbox keeps
//! 127.0.0.1 and every other address on ports 80 and 443 for itself). The kernel checks
//! these configuration calls against the *caller's* capabilities in the namespace's owner,
//! which the server has (as root, or as the owner of bubblewrap's user namespace).

use super::owners::{ExecRegistry, SandboxOwners};
use execgate_decide::NetworkPipeline;
use execgate_execpolicy::Policy;
use execgate_netgate::{
    AddressPool, BindCapture, CaptureBinder, ConnectionRecord, Gate, GateConfig, Outcome,
    ResolveOverrides, Source,
};
use execgate_sandbox::{GatedNetwork, SandboxPolicy, Supervisor};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// The HTTP proxy's address inside the sandbox.
pub const PROXY: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 3128);
/// The SOCKS5 proxy's address inside the sandbox.
pub const SOCKS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1080);
/// The DNS responder's address inside the sandbox.
pub const DNS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 53);
/// How long the init may take to hand over one socket.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);

/// `/etc/resolv.conf` inside a gated sandbox: the gate's DNS responder, and nothing to
/// search (every name is asked as written).
pub const RESOLV_CONF: &[u8] =
    b"# execgate network gate\nnameserver 127.0.0.1\noptions ndots:0 attempts:1\n";

/// What the sandbox's programs may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// Nothing: no IP sockets.
    Off,
    /// Through the network gate, each new host decided.
    Gated,
    /// Everything the host reaches.
    On,
}

impl NetworkMode {
    /// Sets `policy`'s network to this mode.
    pub fn apply(self, policy: &mut SandboxPolicy) {
        policy.network = self == NetworkMode::On;
        policy.gated = (self == NetworkMode::Gated).then(|| GatedNetwork {
            resolv_conf: RESOLV_CONF.to_vec(),
        });
    }

    /// A client's yes/no network access (Codex's `network_access`, `network: enabled`):
    /// yes is `on`, no is `gated` (Codex's `restricted`: each new host asked for).
    pub fn from_access(enabled: bool) -> Self {
        if enabled {
            NetworkMode::On
        } else {
            NetworkMode::Gated
        }
    }

    /// The flag's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Off => "off",
            NetworkMode::Gated => "gated",
            NetworkMode::On => "on",
        }
    }
}

/// The names a gated shell's environment sets, and to what: the usual spellings and the
/// ones npm, yarn, pip and cargo read. Escalated commands never get them (they start from
/// the session's own environment), and `--pass-env` refuses them in gated mode.
pub fn proxy_env() -> Vec<(&'static str, String)> {
    let http = format!("http://{PROXY}");
    let socks = format!("socks5h://{SOCKS}");
    let local = "localhost,127.0.0.1,::1".to_owned();
    let mut vars = Vec::new();
    for name in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "npm_config_proxy",
        "npm_config_https_proxy",
        "YARN_HTTP_PROXY",
        "YARN_HTTPS_PROXY",
        "PIP_PROXY",
        "CARGO_HTTP_PROXY",
    ] {
        vars.push((name, http.clone()));
    }
    vars.push(("ALL_PROXY", socks.clone()));
    vars.push(("all_proxy", socks));
    vars.push(("NO_PROXY", local.clone()));
    vars.push(("no_proxy", local.clone()));
    vars.push(("npm_config_noproxy", local));
    vars
}

/// Whether `name` is one of [`proxy_env`]'s.
pub fn is_proxy_var(name: &str) -> bool {
    proxy_env().iter().any(|(n, _)| *n == name)
}

/// The gate's sockets, made inside the sandbox's network namespace.
pub struct GateSockets {
    /// The HTTP proxy's listener.
    pub proxy: std::net::TcpListener,
    /// The SOCKS5 listener.
    pub socks: std::net::TcpListener,
    /// DNS over UDP.
    pub dns_udp: std::net::UdpSocket,
    /// DNS over TCP.
    pub dns_tcp: std::net::TcpListener,
    /// A `NETLINK_SOCK_DIAG` socket of the namespace (connection owners).
    pub diag: OwnedFd,
}

/// Makes the sandbox's network namespace ready for the gate (loopback up, `pool` local to
/// it) and opens the gate's sockets there. Blocking (each socket is one request to the
/// init); called before the shell is released.
pub fn open_gate_sockets(supervisor: &Supervisor, pool: AddressPool) -> io::Result<GateSockets> {
    let open = |domain, ty, protocol| supervisor.open_socket(domain, ty, protocol, SOCKET_TIMEOUT);
    let dns_udp = open(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    configure_loopback(&dns_udp, pool).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot set up the sandbox's loopback: {e}"),
        )
    })?;
    bind(&dns_udp, DNS)?;
    let listen_on = |address| -> io::Result<std::net::TcpListener> {
        let fd = open(libc::AF_INET, libc::SOCK_STREAM, 0)?;
        listen(fd, address)
    };
    Ok(GateSockets {
        proxy: listen_on(PROXY)?,
        socks: listen_on(SOCKS)?,
        dns_tcp: listen_on(DNS)?,
        dns_udp: std::net::UdpSocket::from(dns_udp),
        diag: open(libc::AF_NETLINK, libc::SOCK_DGRAM, libc::NETLINK_SOCK_DIAG)?,
    })
}

/// Binds `fd` to `address` (after `SO_REUSEADDR`).
fn bind(fd: &OwnedFd, address: SocketAddrV4) -> io::Result<()> {
    let one: libc::c_int = 1;
    let sockaddr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: address.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*address.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: setsockopt and bind read the values we pass, of the sizes we give.
    let ok = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&raw const one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
            && libc::bind(
                fd.as_raw_fd(),
                (&raw const sockaddr).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ) == 0
    };
    if ok {
        Ok(())
    } else {
        let e = io::Error::last_os_error();
        Err(io::Error::new(
            e.kind(),
            format!("cannot listen on {address} in the sandbox: {e}"),
        ))
    }
}

/// Binds and listens `fd` on `address`.
fn listen(fd: OwnedFd, address: SocketAddrV4) -> io::Result<std::net::TcpListener> {
    bind(&fd, address)?;
    // SAFETY: listen on our own socket.
    if unsafe { libc::listen(fd.as_raw_fd(), 512) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(std::net::TcpListener::from(fd))
}

/// `struct ifreq` as the flag and address ioctls use it.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    /// `ifr_flags` (first two bytes) or a `sockaddr_in`.
    data: [u8; 24],
}

fn ifreq(name: &str) -> IfReq {
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: [0; 24],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    req
}

fn ioctl(fd: &OwnedFd, request: libc::c_ulong, req: &mut IfReq) -> io::Result<()> {
    // SAFETY: the interface ioctls read and write one `struct ifreq`.
    if unsafe { libc::ioctl(fd.as_raw_fd(), request as _, req as *mut IfReq) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_address(fd: &OwnedFd, request: libc::c_ulong, name: &str, ip: Ipv4Addr) -> io::Result<()> {
    let mut req = ifreq(name);
    req.data[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
    req.data[4..8].copy_from_slice(&ip.octets());
    ioctl(fd, request, &mut req)
}

/// Brings `lo` up (a namespace the Landlock init made has it down) and puts the pool's
/// first address, with the pool's prefix, on `lo:1`: the kernel makes a loopback prefix a
/// local route, so every pool address is an address of this namespace.
fn configure_loopback(fd: &OwnedFd, pool: AddressPool) -> io::Result<()> {
    let mut req = ifreq("lo");
    ioctl(fd, libc::SIOCGIFFLAGS, &mut req)?;
    let flags = i16::from_ne_bytes([req.data[0], req.data[1]]) | libc::IFF_UP as i16;
    req.data[..2].copy_from_slice(&flags.to_ne_bytes());
    ioctl(fd, libc::SIOCSIFFLAGS, &mut req)?;
    set_address(fd, libc::SIOCSIFADDR, "lo:1", pool.base())?;
    let mask = Ipv4Addr::from(u32::MAX << (32 - u32::from(pool.prefix())));
    set_address(fd, libc::SIOCSIFNETMASK, "lo:1", mask)
}

/// Makes capture listeners through the session's supervisor. It holds the supervisor
/// weakly: a capture asked for after the session ended fails instead of keeping the
/// sandbox alive.
pub struct SupervisorBinder(pub Weak<Mutex<Supervisor>>);

impl BindCapture for SupervisorBinder {
    fn bind(&self, address: SocketAddrV4) -> io::Result<std::net::TcpListener> {
        let supervisor = self
            .0
            .upgrade()
            .ok_or_else(|| io::Error::other("the session has ended"))?;
        let fd = supervisor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open_socket(libc::AF_INET, libc::SOCK_STREAM, 0, SOCKET_TIMEOUT)?;
        listen(fd, address)
    }
}

/// The session's stderr line for a refused connection, when it gets one: each decision
/// that denies (not each connection that reuses it), and each refusal the gate makes on
/// its own. `script` names the connection when no exec owns it.
pub fn denial_line(record: &ConnectionRecord, script: &str) -> Option<String> {
    if record.verdict != Outcome::Deny || !(record.asked || record.source == Source::Gate) {
        return None;
    }
    let command = record
        .exec
        .as_ref()
        .map_or(script, |exec| exec.command.as_str());
    let target = match record.host.parse::<std::net::Ipv6Addr>() {
        Ok(v6) => format!("{}://[{v6}]:{}", record.protocol.as_str(), record.port),
        Err(_) => format!(
            "{}://{}:{}",
            record.protocol.as_str(),
            record.host,
            record.port
        ),
    };
    let reason = match (&record.reason, &record.rule) {
        (Some(reason), Some(rule)) => format!("{reason} (rule {rule})"),
        (Some(reason), None) => reason.clone(),
        (None, Some(rule)) => format!("denied by rule {rule}"),
        (None, None) => "denied".to_owned(),
    };
    Some(format!(
        "execgate: network denied: {}: {target}: {}\n",
        printable(command),
        printable(&reason)
    ))
}

/// `text` with everything but printable ASCII escaped (`\u{...}`): the line is one line
/// on the person's terminal, whatever the sandbox put in a command or a hook its reason.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            ' '..='~' => c.to_string(),
            c => c.escape_unicode().to_string(),
        })
        .collect()
}

/// A running gate: its serve tasks (aborted when dropped) and its records.
pub struct RunningGate {
    /// The doors being served; dropping the set closes every connection.
    pub tasks: JoinSet<()>,
    /// One record per decided connection.
    pub records: mpsc::UnboundedReceiver<ConnectionRecord>,
}

/// Starts the gate of a gated session once its sandbox exists: called by the launcher
/// after the supervisor started and before the held shell is released.
pub struct GateStarter {
    /// The session's rules (which hosts a rule names).
    pub policy: Arc<Policy>,
    /// The decider, without owners yet (they need the namespace's sock_diag socket).
    pub decider: Mutex<Option<NetworkPipeline>>,
    /// Which process asked about which exec.
    pub registry: Arc<ExecRegistry>,
    /// `--network-resolve`.
    pub resolve: ResolveOverrides,
    /// The runtime the doors are served on.
    pub runtime: tokio::runtime::Handle,
    /// Where the running gate is left for the session.
    pub running: Mutex<Option<RunningGate>>,
}

impl GateStarter {
    /// Opens the gate's sockets in the sandbox's network namespace, starts serving them,
    /// then releases the shell. Any failure leaves the shell held (the session fails to
    /// start): a gated session never runs without its gate.
    pub fn start(&self, supervisor: &Arc<Mutex<Supervisor>>) -> io::Result<()> {
        let decider = self
            .decider
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| io::Error::other("the network gate was started twice"))?;
        let mut config = GateConfig::new(Arc::clone(&self.policy));
        config.resolve = self.resolve.clone();
        let sockets = {
            let guard = supervisor.lock().unwrap_or_else(PoisonError::into_inner);
            open_gate_sockets(&guard, config.pool)?
        };
        let owners = SandboxOwners::new(Arc::clone(&self.registry), sockets.diag);
        let decider = decider.owners(Arc::new(owners));
        config.binder = Some(CaptureBinder(Arc::new(SupervisorBinder(Arc::downgrade(
            supervisor,
        )))));
        let (gate, records) = Gate::new(config, Arc::new(decider));
        let _entered = self.runtime.enter();
        let tokio_listener = |l: std::net::TcpListener| -> io::Result<tokio::net::TcpListener> {
            l.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(l)
        };
        let (proxy, socks, dns_tcp) = (
            tokio_listener(sockets.proxy)?,
            tokio_listener(sockets.socks)?,
            tokio_listener(sockets.dns_tcp)?,
        );
        sockets.dns_udp.set_nonblocking(true)?;
        let dns_udp = tokio::net::UdpSocket::from_std(sockets.dns_udp)?;
        let mut tasks = JoinSet::new();
        let door = |what: &'static str, result: io::Result<()>| {
            if let Err(e) = result {
                tracing::warn!("network gate: the {what} stopped: {e}");
            }
        };
        let g = gate.clone();
        tasks.spawn(async move { door("HTTP proxy", g.serve_http_proxy(proxy).await) });
        let g = gate.clone();
        tasks.spawn(async move { door("SOCKS5 proxy", g.serve_socks5(socks).await) });
        let g = gate.clone();
        tasks.spawn(async move { door("DNS responder", g.serve_dns_udp(dns_udp).await) });
        let g = gate.clone();
        tasks.spawn(async move { door("DNS responder", g.serve_dns_tcp(dns_tcp).await) });
        tasks.spawn(async move { door("capture", gate.serve_bound_captures().await) });
        *self.running.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(RunningGate { tasks, records });
        supervisor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .release_shell()
            .map_err(|e| {
                io::Error::new(e.kind(), format!("cannot release the sandboxed shell: {e}"))
            })
    }
}

/// Raises this process's soft open-file limit to its hard limit: a gated session holds
/// two sockets per relayed connection (and the gate's limit is 512 connections).
pub fn raise_nofile() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write one rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
