//! The gate's core: every door (HTTP proxy, SOCKS5, capture) turns a connection into a
//! (host, port, protocol) and asks [`Gate::open`] for an upstream stream.
//!
//! `open` refuses local and private addresses no rule names before anyone is asked, asks
//! the decider once per undecided key (concurrent connections share the question; session
//! verdicts are remembered), resolves a name only after it was allowed (an undecided name
//! is never looked up, so DNS cannot carry data out), checks every address it resolves
//! to, and connects to those addresses and no others. It never opens a connection that was
//! not decided.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use execgate_execpolicy::{canonical_ip, non_public_reason, CanonicalHost, NetworkProtocol};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::config::GateConfig;
use crate::decider::{
    target_text, ConnectionOwner, NetworkDecider, NetworkRequest, NetworkVerdict, Outcome, Scope,
};
use crate::pool::Names;
use crate::record::{ConnectionRecord, Tracked};

/// Most (host, port, protocol) keys remembered per session; past it, new keys are decided
/// each time they are used (a script inventing names cannot grow the gate without bound).
const MAX_REMEMBERED: usize = 65_536;

/// The network gate of one session. Cheap to clone; every clone is the same gate. Serve
/// futures ([`Gate::serve_http_proxy`] and the others) run until dropped, and dropping them
/// closes every connection they opened.
#[derive(Clone)]
pub struct Gate {
    pub(crate) inner: Arc<Inner>,
}

type Key = (CanonicalHost, u16, NetworkProtocol);

enum Slot {
    Decided(Arc<NetworkVerdict>),
    Pending(watch::Receiver<Option<Arc<NetworkVerdict>>>),
}

pub(crate) struct Inner {
    pub(crate) config: GateConfig,
    decider: Arc<dyn NetworkDecider>,
    memory: Mutex<HashMap<Key, Slot>>,
    names: Mutex<Names>,
    events: mpsc::UnboundedSender<ConnectionRecord>,
    permits: Arc<Semaphore>,
    /// Decider calls in flight; aborted when the gate goes away.
    questions: Mutex<JoinSet<()>>,
    /// Pool addresses whose capture listeners exist (with a binder).
    captured: Mutex<HashSet<Ipv4Addr>>,
    /// Held while capture listeners are being made, so each address is bound once.
    binding: tokio::sync::Mutex<()>,
    /// New capture listeners, for [`Gate::serve_bound_captures`].
    bound: mpsc::UnboundedSender<(TcpListener, NetworkProtocol)>,
    bound_receiver: Mutex<Option<mpsc::UnboundedReceiver<(TcpListener, NetworkProtocol)>>>,
}

/// Why no upstream stream was opened.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The connection was denied; the text says why (for the 403 body or the log).
    Denied(String),
    /// It was allowed but could not be opened.
    Failed(UpstreamError),
}

/// An allowed connection that could not be opened.
#[derive(Debug)]
pub(crate) enum UpstreamError {
    /// The name has no address.
    Unresolved(String),
    /// Every address refused the connection.
    Refused(String),
    /// No address answered in time.
    TimedOut(String),
    /// Any other failure (unreachable network, ...).
    Other(String),
}

impl UpstreamError {
    pub(crate) fn message(&self) -> &str {
        match self {
            Self::Unresolved(m) | Self::Refused(m) | Self::TimedOut(m) | Self::Other(m) => m,
        }
    }
}

/// An upstream connection, opened to a checked address, with its record.
pub(crate) struct Opened {
    pub(crate) stream: TcpStream,
    pub(crate) tracked: Tracked,
}

/// A std mutex that shrugs off poisoning: a panic elsewhere must not wedge the gate (the
/// data under these locks stays consistent across every early return).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Gate {
    /// A gate for one session. The receiver gets one [`ConnectionRecord`] per decided
    /// connection, when it ends (a denied one at once).
    pub fn new(
        config: GateConfig,
        decider: Arc<dyn NetworkDecider>,
    ) -> (Self, mpsc::UnboundedReceiver<ConnectionRecord>) {
        let (events, receiver) = mpsc::unbounded_channel();
        let permits = Arc::new(Semaphore::new(config.limits.max_connections));
        let names = Mutex::new(Names::new(config.pool));
        let (bound, bound_receiver) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            config,
            decider,
            memory: Mutex::new(HashMap::new()),
            names,
            events,
            permits,
            questions: Mutex::new(JoinSet::new()),
            captured: Mutex::new(HashSet::new()),
            binding: tokio::sync::Mutex::new(()),
            bound,
            bound_receiver: Mutex::new(Some(bound_receiver)),
        });
        (Self { inner }, receiver)
    }

    /// The pool address the DNS responder gives `name` (canonical), handing one out the
    /// first time; `None` once the pool is used up.
    pub fn address_for(&self, name: &str) -> Option<Ipv4Addr> {
        lock(&self.inner.names).address_for(name)
    }

    /// Whether `address` can be handed out: there is no binder, or its capture listeners
    /// exist.
    pub(crate) fn is_captured(&self, address: Ipv4Addr) -> bool {
        self.inner.config.binder.is_none() || lock(&self.inner.captured).contains(&address)
    }

    /// Makes the capture listeners for `address` (one per capture port) with the binder,
    /// once; false when they cannot be made (or the session's cap on captured names is
    /// reached), and the address must not be handed out.
    pub(crate) async fn ensure_captured(&self, address: Ipv4Addr) -> bool {
        let Some(binder) = self.inner.config.binder.clone() else {
            return true;
        };
        let _one_at_a_time = self.inner.binding.lock().await;
        {
            let captured = lock(&self.inner.captured);
            if captured.contains(&address) {
                return true;
            }
            if captured.len() >= self.inner.config.limits.max_captured_names {
                tracing::warn!(%address, "network gate: too many names captured in this session");
                return false;
            }
        }
        let ports = self.inner.config.capture_ports.clone();
        let made = tokio::task::spawn_blocking(move || {
            ports
                .iter()
                .map(|&(port, protocol)| {
                    let listener = binder.0.bind(std::net::SocketAddrV4::new(address, port))?;
                    listener.set_nonblocking(true)?;
                    Ok((listener, protocol))
                })
                .collect::<io::Result<Vec<_>>>()
        })
        .await;
        let listeners = match made {
            Ok(Ok(listeners)) => listeners,
            Ok(Err(e)) => {
                tracing::warn!(%address, "network gate: cannot capture a pool address: {e}");
                return false;
            }
            Err(_) => return false,
        };
        for (listener, protocol) in listeners {
            match TcpListener::from_std(listener) {
                Ok(listener) => {
                    // Nobody serving them (the session is ending) only leaves them unserved.
                    let _ = self.inner.bound.send((listener, protocol));
                }
                Err(e) => {
                    tracing::warn!(%address, "network gate: cannot serve a capture listener: {e}");
                    return false;
                }
            }
        }
        lock(&self.inner.captured).insert(address);
        true
    }

    /// Serves every capture listener the binder makes, until dropped (dropping it closes
    /// them all). Call it once per gate, alongside the other doors; a second call returns
    /// at once.
    pub async fn serve_bound_captures(&self) -> io::Result<()> {
        let Some(mut receiver) = lock(&self.inner.bound_receiver).take() else {
            return Ok(());
        };
        let mut serving = JoinSet::new();
        loop {
            tokio::select! {
                Some((listener, protocol)) = receiver.recv() => {
                    let gate = self.clone();
                    serving.spawn(async move {
                        if let Err(e) = gate.serve_captured(listener, protocol).await {
                            tracing::warn!("network gate: a capture listener failed: {e}");
                        }
                    });
                }
                Some(_) = serving.join_next(), if !serving.is_empty() => {}
                else => return Ok(()),
            }
        }
    }

    /// The name a pool address was handed out for.
    pub fn name_for(&self, ip: Ipv4Addr) -> Option<String> {
        lock(&self.inner.names).name_for(ip).map(str::to_owned)
    }

    /// Reads a pool address back as the name it was given for (so a SOCKS client that
    /// resolved through the sandbox's DNS is decided by name); any other host unchanged.
    pub(crate) fn unpool(&self, host: CanonicalHost) -> CanonicalHost {
        if let CanonicalHost::Ip(IpAddr::V4(v4)) = host {
            if let Some(name) = self.name_for(v4) {
                return CanonicalHost::Name(name);
            }
        }
        host
    }

    /// Records a refusal the gate made on its own, before any decision (an address that
    /// is not a name the sandbox was given, a malformed target). Returns the denial text.
    pub(crate) fn refuse(
        &self,
        host: &CanonicalHost,
        port: u16,
        protocol: NetworkProtocol,
        owner: ConnectionOwner,
        reason: String,
    ) -> String {
        let verdict = NetworkVerdict::gate_denial(reason, None);
        let text = verdict.denial_text();
        drop(Tracked::new(
            (host, port, protocol),
            owner,
            &verdict,
            false,
            Instant::now(),
            self.inner.events.clone(),
        ));
        text
    }

    /// Whether a rule names `host` for `protocol`, or the user mapped the name with
    /// `--network-resolve`: the only ways a local or private destination is allowed.
    fn named(&self, host: &CanonicalHost, protocol: NetworkProtocol) -> bool {
        let by_override = matches!(host, CanonicalHost::Name(name) if self.inner.config.resolve.get(name).is_some());
        by_override
            || !self
                .inner
                .config
                .policy
                .check_network(host, protocol)
                .matched
                .is_empty()
    }

    /// Decides and opens one connection to `host:port` speaking `protocol`.
    pub(crate) async fn open(
        &self,
        host: CanonicalHost,
        port: u16,
        protocol: NetworkProtocol,
        owner: ConnectionOwner,
    ) -> Result<Opened, Refusal> {
        let started = Instant::now();
        let target = target_text(&host, port, protocol);
        let named = self.named(&host, protocol);
        if port == 0 {
            let reason = format!("{target}: port 0 is not a destination");
            return Err(Refusal::Denied(
                self.refuse(&host, port, protocol, owner, reason),
            ));
        }
        if let CanonicalHost::Ip(ip) = host {
            if let (Some(why), false) = (non_public_reason(ip), named) {
                let reason = format!(
                    "{ip} is {why}; local and private addresses need a network_rule naming them"
                );
                return Err(Refusal::Denied(
                    self.refuse(&host, port, protocol, owner, reason),
                ));
            }
        }
        let request = NetworkRequest {
            host,
            port,
            protocol,
            owner,
        };
        let (verdict, asked) = self.decide(&request).await;
        let mut tracked = Tracked::new(
            (&request.host, port, protocol),
            owner,
            &verdict,
            asked,
            started,
            self.inner.events.clone(),
        );
        if verdict.outcome == Outcome::Deny {
            return Err(Refusal::Denied(verdict.denial_text()));
        }
        let addresses = match self.resolve(&request.host, port).await {
            Ok(addresses) => addresses,
            Err(error) => {
                tracked.fail(error.message().to_owned());
                return Err(Refusal::Failed(error));
            }
        };
        if !named {
            if let Some((ip, why)) = addresses
                .iter()
                .find_map(|a| non_public_reason(a.ip()).map(|why| (a.ip(), why)))
            {
                let reason = format!(
                    "{} resolves to {ip}, which is {why}; a network_rule naming the host would allow it",
                    request.host
                );
                tracked.deny(crate::decider::Source::Gate, reason.clone());
                return Err(Refusal::Denied(reason));
            }
        }
        match self.connect(&addresses).await {
            Ok(stream) => {
                if let Ok(address) = stream.peer_addr() {
                    tracked.set_address(address);
                }
                Ok(Opened { stream, tracked })
            }
            Err(error) => {
                tracked.fail(error.message().to_owned());
                Err(Refusal::Failed(error))
            }
        }
    }

    /// The verdict for `request`'s key: remembered, shared with a question in flight, or
    /// asked now. The second value says whether this call asked.
    async fn decide(&self, request: &NetworkRequest) -> (Arc<NetworkVerdict>, bool) {
        let key: Key = (request.host.clone(), request.port, request.protocol);
        let (mut receiver, asked) = {
            let mut memory = lock(&self.inner.memory);
            match memory.get(&key) {
                Some(Slot::Decided(verdict)) => return (Arc::clone(verdict), false),
                Some(Slot::Pending(receiver)) => (receiver.clone(), false),
                None => {
                    let (sender, receiver) = watch::channel(None);
                    memory.insert(key.clone(), Slot::Pending(receiver.clone()));
                    self.ask(key, request.clone(), sender);
                    (receiver, true)
                }
            }
        };
        let verdict = match receiver.wait_for(Option::is_some).await {
            Ok(verdict) => verdict.clone(),
            Err(_) => None,
        };
        let verdict = verdict.unwrap_or_else(|| {
            // The question was dropped unanswered (the gate is going away): fail closed.
            Arc::new(NetworkVerdict::gate_denial(
                "the decision was abandoned (the session is ending)",
                None,
            ))
        });
        (verdict, asked)
    }

    /// Puts one question to the decider in a task of its own, so a client that hangs up
    /// does not cancel a question other connections wait on.
    fn ask(
        &self,
        key: Key,
        request: NetworkRequest,
        sender: watch::Sender<Option<Arc<NetworkVerdict>>>,
    ) {
        let decider = Arc::clone(&self.inner.decider);
        let gate: Weak<Inner> = Arc::downgrade(&self.inner);
        let mut questions = lock(&self.inner.questions);
        while questions.try_join_next().is_some() {}
        questions.spawn(async move {
            let verdict = Arc::new(decider.decide(&request).await);
            if let Some(gate) = gate.upgrade() {
                let mut memory = lock(&gate.memory);
                let remember = verdict.scope == Scope::Session && memory.len() <= MAX_REMEMBERED;
                if remember {
                    memory.insert(key, Slot::Decided(Arc::clone(&verdict)));
                } else {
                    memory.remove(&key);
                }
            }
            let _ = sender.send(Some(verdict));
        });
    }

    /// The addresses to connect to: the literal, the user's override, or what the system
    /// resolver says (looked up once; these are the addresses checked and used).
    async fn resolve(
        &self,
        host: &CanonicalHost,
        port: u16,
    ) -> Result<Vec<SocketAddr>, UpstreamError> {
        let name = match host {
            CanonicalHost::Ip(ip) => return Ok(vec![SocketAddr::new(*ip, port)]),
            CanonicalHost::Name(name) => name,
        };
        if let Some(addresses) = self.inner.config.resolve.get(name) {
            return Ok(addresses
                .iter()
                .map(|&ip| SocketAddr::new(ip, port))
                .collect());
        }
        let timeout = self.inner.config.limits.connect_timeout;
        let lookup = tokio::net::lookup_host((name.as_str(), port));
        let addresses: Vec<SocketAddr> = match tokio::time::timeout(timeout, lookup).await {
            Ok(Ok(found)) => found
                .map(|a| match canonical_ip(a.ip()) {
                    CanonicalHost::Ip(ip) => SocketAddr::new(ip, port),
                    CanonicalHost::Name(_) => a,
                })
                .collect(),
            Ok(Err(e)) => {
                return Err(UpstreamError::Unresolved(format!(
                    "cannot resolve {name}: {e}"
                )))
            }
            Err(_) => {
                return Err(UpstreamError::TimedOut(format!(
                    "resolving {name} took longer than {}s",
                    timeout.as_secs()
                )))
            }
        };
        if addresses.is_empty() {
            return Err(UpstreamError::Unresolved(format!("{name} has no address")));
        }
        Ok(addresses)
    }

    /// Connects to the first of `addresses` that answers.
    async fn connect(&self, addresses: &[SocketAddr]) -> Result<TcpStream, UpstreamError> {
        let timeout = self.inner.config.limits.connect_timeout;
        let mut last = UpstreamError::Other("no address to connect to".to_owned());
        for &address in addresses {
            match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    last = UpstreamError::Refused(format!("{address} refused the connection"));
                }
                Ok(Err(e)) => {
                    last = UpstreamError::Other(format!("cannot connect to {address}: {e}"))
                }
                Err(_) => {
                    last = UpstreamError::TimedOut(format!(
                        "{address} did not answer within {}s",
                        timeout.as_secs()
                    ))
                }
            }
        }
        Err(last)
    }

    /// The configured limits.
    pub(crate) fn limits(&self) -> &crate::config::Limits {
        &self.inner.config.limits
    }

    /// The configured relay mode.
    pub(crate) fn relay_mode(&self) -> crate::config::RelayMode {
        self.inner.config.relay
    }

    /// Accepts connections on `listener` and runs `handle` for each in a task owned by this
    /// loop (dropping the loop aborts them). A connection over the session's cap is passed
    /// to `reject` instead, which must answer at once without waiting on the client.
    pub(crate) async fn accept_loop<H, Fut>(
        &self,
        listener: TcpListener,
        handle: H,
        reject: fn(TcpStream),
    ) -> io::Result<()>
    where
        H: Fn(Gate, TcpStream, SocketAddr, OwnedSemaphorePermit) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        match Arc::clone(&self.inner.permits).try_acquire_owned() {
                            Ok(permit) => {
                                connections.spawn(handle(self.clone(), stream, peer, permit));
                            }
                            Err(_) => {
                                tracing::warn!(%peer, "network gate: too many connections; refused one");
                                reject(stream);
                            }
                        }
                    }
                    Err(e) => accept_error(e).await?,
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    }
}

/// Decides whether an accept error ends the loop (the listener itself is broken) or is
/// waited out (out of fds or memory, a client that went away).
async fn accept_error(error: io::Error) -> io::Result<()> {
    match error.raw_os_error() {
        Some(libc::EBADF | libc::EINVAL | libc::ENOTSOCK | libc::EOPNOTSUPP) => Err(error),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
            tracing::warn!("network gate: cannot accept ({error}); retrying shortly");
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Resets a connection (RST, not FIN): a captured connection the gate refuses.
pub(crate) fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}
