//! Helpers for the gate tests: local upstream servers (HTTP, HTTPS with a test CA, TCP
//! echo) on the host's loopback, a gate with scripted decisions, raw clients, and a
//! "sandbox" (a user + network + mount namespace with only loopback, the pool routed to
//! it and /etc/resolv.conf pointing at the gate's DNS) whose listening sockets are handed
//! to the gate as fds, exactly as the integration will do.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use execgate_execpolicy::Policy;
use execgate_netgate::{
    tcp_listener_from_fd, udp_socket_from_fd, BoxFuture, ConnectionRecord, Gate, GateConfig,
    NetworkDecider, NetworkProtocol, NetworkRequest, NetworkVerdict, Outcome, RulesDecider, Scope,
    Source,
};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

/// The names tests use; all are mapped to 127.0.0.1 with the resolver override.
pub const NAMES: &[&str] = &[
    "allowed.test",
    "denied.test",
    "other.test",
    "ask.test",
    "echo.test",
];

/// A generous bound for things that must happen; hitting it means the test hung.
pub const HANG: Duration = Duration::from_secs(20);

/// Counts connections a server accepted.
#[derive(Clone, Default)]
pub struct Accepts(Arc<AtomicUsize>);

impl Accepts {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
    fn bump(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Local upstream servers on 127.0.0.1.
pub struct Upstreams {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub echo: SocketAddr,
    pub http_accepts: Accepts,
    pub https_accepts: Accepts,
    pub echo_accepts: Accepts,
    pub ca_pem: PathBuf,
    _dir: tempfile::TempDir,
    _tasks: JoinSet<()>,
}

/// What the HTTP(S) servers answer: `METHOD HOST PATH` (the Host header they saw), or for
/// `/bytes/N` N bytes of `x`.
async fn app(
    request: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, hyper::Error> {
    let path = request.uri().path().to_owned();
    let body = if let Some(n) = path.strip_prefix("/bytes/") {
        Bytes::from(vec![b'x'; n.parse().unwrap_or(0)])
    } else {
        let host = request
            .headers()
            .get(http::header::HOST)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        let method = request.method().clone();
        let sent = request.into_body().collect().await?.to_bytes();
        Bytes::from(format!("{method} {host} {path} {}\n", sent.len()))
    };
    Ok(http::Response::new(Full::new(body)))
}

async fn serve_http<S>(stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(
            hyper_util::rt::TokioIo::new(stream),
            hyper::service::service_fn(app),
        )
        .await;
}

impl Upstreams {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut tasks = JoinSet::new();

        let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = http_listener.local_addr().unwrap();
        let http_accepts = Accepts::default();
        let counter = http_accepts.clone();
        tasks.spawn(async move {
            loop {
                let (stream, _) = http_listener.accept().await.unwrap();
                counter.bump();
                tokio::spawn(serve_http(stream));
            }
        });

        // A test CA and one certificate for every test name.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "execgate test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf_params =
            rcgen::CertificateParams::new(NAMES.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
        let ca_pem = dir.path().join("ca.pem");
        std::fs::write(&ca_pem, ca.pem()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let https_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let https = https_listener.local_addr().unwrap();
        let https_accepts = Accepts::default();
        let counter = https_accepts.clone();
        tasks.spawn(async move {
            loop {
                let (stream, _) = https_listener.accept().await.unwrap();
                counter.bump();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        serve_http(tls).await;
                    }
                });
            }
        });

        // Echoes everything, then half-closes when the client has.
        let echo_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo = echo_listener.local_addr().unwrap();
        let echo_accepts = Accepts::default();
        let counter = echo_accepts.clone();
        tasks.spawn(async move {
            loop {
                let (mut stream, _) = echo_listener.accept().await.unwrap();
                counter.bump();
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        });

        Self {
            http,
            https,
            echo,
            http_accepts,
            https_accepts,
            echo_accepts,
            ca_pem,
            _dir: dir,
            _tasks: tasks,
        }
    }
}

/// A decider standing in for hooks and a person: answers by host from a table, else
/// denies "denied by the user"; counts and records every question; can hold answers
/// until released.
pub struct Scripted {
    answers: Mutex<HashMap<String, NetworkVerdict>>,
    pub questions: Mutex<Vec<NetworkRequest>>,
    hold: Option<Arc<Semaphore>>,
}

pub fn user_verdict(outcome: Outcome, scope: Scope) -> NetworkVerdict {
    NetworkVerdict {
        outcome,
        decision: None,
        source: Source::User,
        rule: None,
        reason: (outcome == Outcome::Deny).then(|| "denied by the user".to_owned()),
        scope,
        end_session: false,
        exec: None,
    }
}

impl Scripted {
    pub fn new() -> Self {
        Self {
            answers: Mutex::new(HashMap::new()),
            questions: Mutex::new(Vec::new()),
            hold: None,
        }
    }

    /// Answers wait for a permit on the returned semaphore.
    pub fn held() -> (Self, Arc<Semaphore>) {
        let gate = Arc::new(Semaphore::new(0));
        let mut scripted = Self::new();
        scripted.hold = Some(Arc::clone(&gate));
        (scripted, gate)
    }

    pub fn answer(self, host: &str, verdict: NetworkVerdict) -> Self {
        self.answers
            .lock()
            .unwrap()
            .insert(host.to_owned(), verdict);
        self
    }

    pub fn allow(self, host: &str) -> Self {
        self.answer(host, user_verdict(Outcome::Connect, Scope::Session))
    }

    pub fn asked(&self) -> usize {
        self.questions.lock().unwrap().len()
    }

    pub fn targets(&self) -> Vec<String> {
        self.questions
            .lock()
            .unwrap()
            .iter()
            .map(|q| q.target())
            .collect()
    }
}

impl NetworkDecider for Scripted {
    fn decide<'a>(&'a self, request: &'a NetworkRequest) -> BoxFuture<'a, NetworkVerdict> {
        Box::pin(async move {
            self.questions.lock().unwrap().push(request.clone());
            if let Some(hold) = &self.hold {
                hold.acquire().await.unwrap().forget();
            }
            let host = request.host.to_string();
            let answer = self.answers.lock().unwrap().get(&host).cloned();
            answer.unwrap_or_else(|| user_verdict(Outcome::Deny, Scope::Session))
        })
    }
}

/// A gate on 127.0.0.1 listeners: rules, then the scripted decider.
pub struct Harness {
    pub gate: Gate,
    pub proxy: SocketAddr,
    pub socks: SocketAddr,
    pub scripted: Arc<Scripted>,
    pub rules_file: PathBuf,
    records: tokio::sync::Mutex<mpsc::UnboundedReceiver<ConnectionRecord>>,
    _tasks: JoinSet<()>,
    _dir: tempfile::TempDir,
}

pub fn config_for(rules: &str) -> (GateConfig, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let rules_file = dir.path().join("net.rules");
    std::fs::write(&rules_file, rules).unwrap();
    let policy = Policy::from_files(&[&rules_file]).unwrap();
    let mut config = GateConfig::new(Arc::new(policy));
    for name in NAMES {
        config
            .resolve
            .add_entry(&format!("{name}:127.0.0.1"))
            .unwrap();
    }
    config.limits.header_timeout = Duration::from_secs(5);
    (config, rules_file, dir)
}

impl Harness {
    pub async fn start(rules: &str, scripted: Scripted) -> Self {
        Self::start_with(rules, scripted, |_| {}).await
    }

    pub async fn start_with(
        rules: &str,
        scripted: Scripted,
        tweak: impl FnOnce(&mut GateConfig),
    ) -> Self {
        let (mut config, rules_file, dir) = config_for(rules);
        tweak(&mut config);
        let scripted = Arc::new(scripted);
        let decider = Arc::new(RulesDecider::new(
            Arc::clone(&config.policy),
            Arc::clone(&scripted) as Arc<dyn NetworkDecider>,
        ));
        let (gate, records) = Gate::new(config, decider);
        let proxy_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let socks_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = proxy_listener.local_addr().unwrap();
        let socks = socks_listener.local_addr().unwrap();
        let mut tasks = JoinSet::new();
        let g = gate.clone();
        tasks.spawn(async move {
            g.serve_http_proxy(proxy_listener).await.unwrap();
        });
        let g = gate.clone();
        tasks.spawn(async move {
            g.serve_socks5(socks_listener).await.unwrap();
        });
        Self {
            gate,
            proxy,
            socks,
            scripted,
            rules_file,
            records: tokio::sync::Mutex::new(records),
            _tasks: tasks,
            _dir: dir,
        }
    }

    /// The next record (waits for it).
    pub async fn record(&self) -> ConnectionRecord {
        tokio::time::timeout(HANG, self.records.lock().await.recv())
            .await
            .expect("a record within the hang bound")
            .expect("the gate is alive")
    }

    /// Records already sent, without waiting.
    pub async fn pending_records(&self) -> Vec<ConnectionRecord> {
        let mut out = Vec::new();
        let mut records = self.records.lock().await;
        while let Ok(record) = records.try_recv() {
            out.push(record);
        }
        out
    }

    /// The rule location `file:line` for line `line` of the rules file.
    pub fn rule(&self, line: u32) -> String {
        format!("{}:{line}", self.rules_file.display())
    }
}

/// Runs curl with no proxy variables from the environment; returns (exit code, stdout,
/// stderr).
pub async fn curl(args: &[&str]) -> (i32, String, String) {
    let output = tokio::time::timeout(
        HANG,
        tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "15"])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("curl finished")
    .expect("curl runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// One HTTP response read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response (head, then a Content-Length body) from `stream`.
pub async fn read_response(stream: &mut TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(HANG, stream.read(&mut chunk))
            .await
            .expect("a response within the hang bound")
            .expect("read");
        assert!(
            n > 0,
            "connection closed before a response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(HANG, stream.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed inside a body");
        body.extend_from_slice(&chunk[..n]);
    }
    RawResponse {
        status,
        headers,
        body: String::from_utf8(body).unwrap(),
    }
}

/// Sends `request` on a new connection to `addr` and reads one response.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_response(&mut stream).await
}

/// Reads until the peer closes (or resets); returns what arrived.
pub async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(HANG, stream.read_to_end(&mut out))
        .await
        .expect("the peer closes within the hang bound");
    out
}

/// A network sandbox: a child in new user, network and mount namespaces (only loopback;
/// the pool 198.18.0.0/16 routed to it; /etc/resolv.conf naming 127.0.0.1) that creates
/// the gate's listening sockets inside its namespace, hands them over as fds, and then
/// runs the programs tests ask it to.
pub struct Sandbox {
    control: UnixStream,
    /// Asks the sandbox for a TCP socket of its network namespace (one byte, one fd back).
    pub sockets: Arc<Mutex<UnixStream>>,
    child: std::process::Child,
    pub fds: HashMap<String, OwnedFd>,
    _dir: tempfile::TempDir,
}

/// The program run inside the sandbox: makes the listeners, sends them, then runs
/// commands (one JSON line each) and answers with their results.
const SANDBOX_PY: &str = r#"
import array, json, socket, subprocess, sys, threading
control = socket.socket(fileno=3)
sockets = socket.socket(fileno=4)
def make_sockets():
    # One TCP socket of this network namespace per byte received (the binder's requests).
    while sockets.recv(1):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        socket.send_fds(sockets, [b"s"], [s.fileno()])
        s.close()
threading.Thread(target=make_sockets, daemon=True).start()
names, socks = [], []
def listen(name, family, kind, addr):
    s = socket.socket(family, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(addr)
    if kind == socket.SOCK_STREAM:
        s.listen(512)
    names.append(name); socks.append(s)
listen("proxy", socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 3128))
listen("socks", socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 1080))
listen("dns-udp", socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", 53))
listen("dns-tcp", socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 53))
for port in sys.argv[1:]:
    listen("capture:" + port, socket.AF_INET, socket.SOCK_STREAM, ("0.0.0.0", int(port)))
socket.send_fds(control, [json.dumps(names).encode() + b"\n"], [s.fileno() for s in socks])
for s in socks:
    s.close()
f = control.makefile("rb")
for line in f:
    job = json.loads(line)
    try:
        p = subprocess.run(job["argv"], input=job.get("stdin", "").encode(), capture_output=True, timeout=30, env=job.get("env"))
        result = {"code": p.returncode, "stdout": p.stdout.decode(errors="replace"), "stderr": p.stderr.decode(errors="replace")}
    except Exception as e:
        result = {"code": -1, "stdout": "", "stderr": repr(e)}
    control.sendall(json.dumps(result).encode() + b"\n")
"#;

/// What a program run in the sandbox did.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Sandbox {
    /// Starts the sandbox with capture listeners on `capture_ports`.
    pub fn start(capture_ports: &[u16]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(
            &resolv,
            "nameserver 127.0.0.1\noptions attempts:1 timeout:5\n",
        )
        .unwrap();
        let script = dir.path().join("sandbox.py");
        std::fs::write(&script, SANDBOX_PY).unwrap();
        let (control, child_end) = UnixStream::pair().unwrap();
        let child_fd = child_end.as_raw_fd();
        let (sockets, sockets_child) = UnixStream::pair().unwrap();
        let sockets_fd = sockets_child.as_raw_fd();
        let setup = format!(
            "ip link set lo up && ip route add local 198.18.0.0/16 dev lo && mount --bind {} /etc/resolv.conf && exec python3 {} \"$@\"",
            resolv.display(),
            script.display()
        );
        let mut command = std::process::Command::new("unshare");
        command
            .args([
                "--user",
                "--map-root-user",
                "--net",
                "--mount",
                "--",
                "sh",
                "-c",
                &setup,
                "sh",
            ])
            .args(capture_ports.iter().map(|p| p.to_string()))
            .stdin(std::process::Stdio::null());
        // SAFETY: fcntl and dup2 are async-signal-safe. Both fds are first copied out of
        // the way, so putting one on 3 cannot overwrite the other before it is placed on 4.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(move || {
                let control = libc::fcntl(child_fd, libc::F_DUPFD, 100);
                let sockets = libc::fcntl(sockets_fd, libc::F_DUPFD, 100);
                if control < 0
                    || sockets < 0
                    || libc::dup2(control, 3) < 0
                    || libc::dup2(sockets, 4) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("unshare runs");
        drop(child_end);
        drop(sockets_child);
        let fds = receive_fds(&control);
        Self {
            control,
            sockets: Arc::new(Mutex::new(sockets)),
            child,
            fds,
            _dir: dir,
        }
    }

    /// A capture binder that asks the sandbox for each socket, as the integration asks the
    /// sandbox's init.
    pub fn binder(&self) -> execgate_netgate::CaptureBinder {
        execgate_netgate::CaptureBinder(Arc::new(SandboxBinder(Arc::clone(&self.sockets))))
    }

    /// Takes the listener `name` ("proxy", "socks", "dns-tcp", "capture:PORT") as a tokio
    /// listener, through the fd API the integration uses.
    pub fn listener(&mut self, name: &str) -> TcpListener {
        tcp_listener_from_fd(self.fds.remove(name).expect("the sandbox made it")).unwrap()
    }

    /// Takes the DNS UDP socket.
    pub fn dns_udp(&mut self) -> tokio::net::UdpSocket {
        udp_socket_from_fd(self.fds.remove("dns-udp").unwrap()).unwrap()
    }

    /// Runs `argv` inside the sandbox (blocking; call from `spawn_blocking`).
    pub fn run(&mut self, argv: &[&str], env: &[(&str, &str)]) -> Ran {
        let mut env_map: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env_map
            .entry("PATH".to_owned())
            .or_insert_with(|| std::env::var("PATH").unwrap_or_default());
        let job = serde_json::json!({"argv": argv, "env": env_map});
        let mut line = job.to_string();
        line.push('\n');
        self.control.write_all(line.as_bytes()).unwrap();
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            self.control.read_exact(&mut byte).unwrap();
            if byte[0] == b'\n' {
                break;
            }
            reply.push(byte[0]);
        }
        let value: serde_json::Value = serde_json::from_slice(&reply).unwrap();
        Ran {
            code: value["code"].as_i64().unwrap() as i32,
            stdout: value["stdout"].as_str().unwrap().to_owned(),
            stderr: value["stderr"].as_str().unwrap().to_owned(),
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.control.shutdown(std::net::Shutdown::Both);
        let _ = self.child.wait();
    }
}

struct SandboxBinder(Arc<Mutex<UnixStream>>);

impl execgate_netgate::BindCapture for SandboxBinder {
    fn bind(&self, address: std::net::SocketAddrV4) -> std::io::Result<std::net::TcpListener> {
        use nix::sys::socket::{bind, listen, setsockopt, sockopt, Backlog, SockaddrIn};
        let stream = self.0.lock().unwrap();
        (&*stream).write_all(b"s")?;
        let fd = receive_fds_raw(&stream).pop().expect("one socket");
        setsockopt(&fd, sockopt::ReuseAddr, &true)?;
        bind(fd.as_raw_fd(), &SockaddrIn::from(address))?;
        listen(&fd, Backlog::new(128).unwrap())?;
        Ok(std::net::TcpListener::from(fd))
    }
}

fn receive_fds_raw(control: &UnixStream) -> Vec<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 16];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let message = recvmsg::<()>(
        control.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .expect("the sandbox sends a socket");
    let mut fds = Vec::new();
    for cmsg in message.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            // SAFETY: the fds were just received and belong to nobody else.
            fds.extend(
                received
                    .into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    fds
}

fn receive_fds(control: &UnixStream) -> HashMap<String, OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = vec![0u8; 4096];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 16]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let message = recvmsg::<()>(
        control.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .expect("the sandbox sends its sockets");
    let mut fds = Vec::new();
    for cmsg in message.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            // SAFETY: the fds were just received and belong to nobody else.
            fds.extend(
                received
                    .into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    let n = message.bytes;
    let names: Vec<String> = serde_json::from_slice(&buf[..n]).expect("names of the sockets");
    assert_eq!(names.len(), fds.len(), "one fd per socket name");
    names.into_iter().zip(fds).collect()
}

/// Serves every listener of `sandbox` with `gate`: proxy, SOCKS, DNS over UDP and TCP, and
/// each capture port with its protocol.
pub fn serve_sandbox(
    gate: &Gate,
    sandbox: &mut Sandbox,
    captures: &[(u16, NetworkProtocol)],
    tasks: &mut JoinSet<()>,
) {
    let g = gate.clone();
    let l = sandbox.listener("proxy");
    tasks.spawn(async move { g.serve_http_proxy(l).await.unwrap() });
    let g = gate.clone();
    let l = sandbox.listener("socks");
    tasks.spawn(async move { g.serve_socks5(l).await.unwrap() });
    let g = gate.clone();
    let l = sandbox.listener("dns-tcp");
    tasks.spawn(async move { g.serve_dns_tcp(l).await.unwrap() });
    let g = gate.clone();
    let s = sandbox.dns_udp();
    tasks.spawn(async move { g.serve_dns_udp(s).await.unwrap() });
    for &(port, protocol) in captures {
        let g = gate.clone();
        let l = sandbox.listener(&format!("capture:{port}"));
        tasks.spawn(async move { g.serve_captured(l, protocol).await.unwrap() });
    }
}
