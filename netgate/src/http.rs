//! The HTTP door: the proxy (CONNECT tunnels and absolute-URI requests) and captured plain
//! HTTP (origin-form requests to a pool address on a captured port).
//!
//! Each request is decided on its own: a keep-alive connection whose next request names
//! another host gets a new decision and a new upstream connection. The host decided is
//! the CONNECT target or the request URI's; a `Host` header naming anything else is
//! refused (`400`), so an allowed host can never carry a request the upstream would route
//! to another virtual host. Parsing, header caps and the header timeout are hyper's.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use execgate_execpolicy::{CanonicalHost, NetworkProtocol};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::decider::{target_text, ConnectionOwner};
use crate::gate::{lock, Gate, Opened, Refusal, UpstreamError};
use crate::relay::{relay, Activity, Metered};
use crate::target::{authority_text, parse_host_port};

type Body = BoxBody<Bytes, hyper::Error>;

/// What a connection on the HTTP door is.
#[derive(Clone, Debug)]
pub(crate) enum HttpMode {
    /// The proxy listener: CONNECT or absolute-URI requests to any host.
    Proxy,
    /// A captured connection to a pool address: every request goes to this host and port.
    Captured(CanonicalHost, u16),
}

/// A CONNECT that was allowed: the upstream stream waits for the client's side.
struct Tunnel {
    upgrade: OnUpgrade,
    opened: Opened,
}

/// The upstream connection a keep-alive client is using, and for which destination.
struct Upstream {
    host: CanonicalHost,
    port: u16,
    sender: SendRequest<Incoming>,
}

/// One client connection's state, shared with its request handler.
struct Conn {
    gate: Gate,
    owner: ConnectionOwner,
    mode: HttpMode,
    activity: Arc<Activity>,
    upstream: Mutex<Option<Upstream>>,
    tunnel: Mutex<Option<Tunnel>>,
    /// Upstream connection drivers; aborted when the client connection ends.
    tasks: Mutex<JoinSet<()>>,
}

/// The reply to a connection over the session's cap (written without waiting).
pub(crate) const TOO_MANY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 66\r\nconnection: close\r\n\r\nexecgate: network gate: too many connections open in this session\n";

/// Serves one client connection until it closes, idles out, or becomes a tunnel (which
/// then runs to its end here too).
pub(crate) async fn serve(gate: Gate, stream: TcpStream, owner: ConnectionOwner, mode: HttpMode) {
    let limits = *gate.limits();
    let activity = Activity::new();
    let conn = Arc::new(Conn {
        gate: gate.clone(),
        owner,
        mode,
        activity: Arc::clone(&activity),
        upstream: Mutex::new(None),
        tunnel: Mutex::new(None),
        tasks: Mutex::new(JoinSet::new()),
    });
    let io = TokioIo::new(Metered::new(stream, Arc::clone(&activity), None));
    let handler = Arc::clone(&conn);
    let service = service_fn(move |request| handle(Arc::clone(&handler), request));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_headers(limits.max_headers)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    let serving = builder.serve_connection(io, service).with_upgrades();
    tokio::select! {
        result = serving => if let Err(e) = result {
            tracing::debug!(peer = %owner.peer, "network gate: http connection ended: {e}");
        },
        () = activity.idle_for(limits.idle_timeout) => return,
    }
    // The keep-alive upstream (if any) is done with; its driver ends when the sender goes.
    drop(lock(&conn.upstream).take());
    let tunnel = lock(&conn.tunnel).take();
    if let Some(tunnel) = tunnel {
        run_tunnel(&gate, tunnel, limits.header_timeout).await;
    }
    let mut tasks = std::mem::take(&mut *lock(&conn.tasks));
    while tasks.join_next().await.is_some() {}
}

async fn run_tunnel(gate: &Gate, tunnel: Tunnel, deadline: Duration) {
    let Tunnel { upgrade, opened } = tunnel;
    let upgraded = match tokio::time::timeout(deadline, upgrade).await {
        Ok(Ok(upgraded)) => upgraded,
        _ => return,
    };
    let Ok(parts) = upgraded.downcast::<TokioIo<Metered<TcpStream>>>() else {
        return;
    };
    let client = parts.io.into_inner().into_inner();
    let Opened { stream, tracked } = opened;
    let limits = gate.limits();
    if let Err(e) = relay(
        client,
        stream,
        &parts.read_buf,
        gate.relay_mode(),
        limits.idle_timeout,
        &tracked,
    )
    .await
    {
        tracing::debug!("network gate: tunnel ended: {e}");
    }
}

async fn handle(conn: Arc<Conn>, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let _busy = conn.activity.busy();
    let response = if request.method() == Method::CONNECT {
        connect(&conn, request).await
    } else {
        forward(&conn, request).await
    };
    Ok(response)
}

/// A plain-text response; `close` ends the connection after it.
fn text(status: StatusCode, body: String, close: bool) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)).map_err(|n| match n {}).boxed());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if close {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

fn bad_request(what: String) -> Response<Body> {
    text(
        StatusCode::BAD_REQUEST,
        format!("execgate: network gate: {what}\n"),
        true,
    )
}

/// The response for a refused or failed upstream connection.
fn refusal_response(target: &str, refusal: Refusal) -> Response<Body> {
    match refusal {
        Refusal::Denied(reason) => text(
            StatusCode::FORBIDDEN,
            format!("execgate: network denied: {target}: {reason}\n"),
            false,
        ),
        Refusal::Failed(error) => {
            let status = match error {
                UpstreamError::TimedOut(_) => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::BAD_GATEWAY,
            };
            text(
                status,
                format!("execgate: network gate: {target}: {}\n", error.message()),
                false,
            )
        }
    }
}

async fn connect(conn: &Conn, mut request: Request<Incoming>) -> Response<Body> {
    if !matches!(conn.mode, HttpMode::Proxy) {
        return bad_request("CONNECT is only for the proxy port".to_owned());
    }
    let Some(authority) = request.uri().authority() else {
        return bad_request("CONNECT needs a host:port target".to_owned());
    };
    let Some((host, port)) = parse_host_port(authority.as_str(), None) else {
        return bad_request(format!(
            "CONNECT target {:?} is not host:port",
            authority.as_str()
        ));
    };
    let host = conn.gate.unpool(host);
    let target = target_text(&host, port, NetworkProtocol::Https);
    match conn
        .gate
        .open(host, port, NetworkProtocol::Https, conn.owner)
        .await
    {
        Ok(opened) => {
            let upgrade = hyper::upgrade::on(&mut request);
            *lock(&conn.tunnel) = Some(Tunnel { upgrade, opened });
            Response::new(Full::new(Bytes::new()).map_err(|n| match n {}).boxed())
        }
        Err(refusal) => refusal_response(&target, refusal),
    }
}

/// The headers that describe one hop, never forwarded: the fixed list and every name the
/// `Connection` header lists.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("proxy-connection"),
        HeaderName::from_static("keep-alive"),
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::EXPECT,
    ] {
        headers.remove(name);
    }
}

/// Finds the destination of a non-CONNECT request, or the reason it has none.
fn destination(conn: &Conn, request: &Request<Incoming>) -> Result<(CanonicalHost, u16), String> {
    let uri = request.uri();
    let from_uri = match uri.authority() {
        Some(authority) => {
            if uri.scheme_str() != Some("http") {
                return Err(format!(
                    "only http:// URLs can be proxied this way; use CONNECT for {}",
                    uri.scheme_str().unwrap_or("this scheme")
                ));
            }
            let parsed = parse_host_port(authority.as_str(), Some(80))
                .ok_or_else(|| format!("URL host {:?} is not host[:port]", authority.as_str()))?;
            Some(parsed)
        }
        None => None,
    };
    let target = match (&conn.mode, from_uri) {
        (HttpMode::Proxy, Some((host, port))) => (conn.gate.unpool(host), port),
        (HttpMode::Proxy, None) => {
            return Err(
                "this is a proxy: send absolute-URI requests (GET http://host/...) or CONNECT"
                    .to_owned(),
            )
        }
        (HttpMode::Captured(host, port), from_uri) => {
            if let Some(other) = from_uri.filter(|uri_target| uri_target != &(host.clone(), *port))
            {
                return Err(format!(
                    "the request names {} but this connection is to {}",
                    authority_text(&other.0, other.1, 80),
                    authority_text(host, *port, 80)
                ));
            }
            (host.clone(), *port)
        }
    };
    if let Some(value) = request.headers().get(header::HOST) {
        let named = value
            .to_str()
            .ok()
            .and_then(|v| parse_host_port(v, Some(80)))
            .map(|(host, port)| (conn.gate.unpool(host), port));
        if named.as_ref() != Some(&target) {
            return Err(format!(
                "the Host header ({}) names another host than the request ({})",
                String::from_utf8_lossy(value.as_bytes()),
                authority_text(&target.0, target.1, 80)
            ));
        }
    }
    Ok(target)
}

async fn forward(conn: &Conn, request: Request<Incoming>) -> Response<Body> {
    let (host, port) = match destination(conn, &request) {
        Ok(target) => target,
        Err(what) => return bad_request(what),
    };
    let target = target_text(&host, port, NetworkProtocol::Http);
    let mut sender = match upstream_for(conn, &host, port).await {
        Ok(sender) => sender,
        Err(refusal) => return refusal_response(&target, refusal),
    };
    let (mut parts, body) = request.into_parts();
    parts.uri = match parts.uri.path_and_query() {
        Some(path) => Uri::from(path.clone()),
        None => Uri::from_static("/"),
    };
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    match HeaderValue::from_str(&authority_text(&host, port, 80)) {
        Ok(value) => parts.headers.insert(header::HOST, value),
        Err(_) => return bad_request("the host cannot be written in a Host header".to_owned()),
    };
    let idle = conn.gate.limits().idle_timeout;
    let sent =
        tokio::time::timeout(idle, sender.send_request(Request::from_parts(parts, body))).await;
    let response = match sent {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            return text(
                StatusCode::BAD_GATEWAY,
                format!("execgate: network gate: {target}: the upstream connection failed: {e}\n"),
                true,
            )
        }
        Err(_) => {
            return text(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "execgate: network gate: {target}: no response within {}s\n",
                    idle.as_secs()
                ),
                true,
            )
        }
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        return text(
            StatusCode::BAD_GATEWAY,
            format!("execgate: network gate: {target}: protocol upgrades are not proxied\n"),
            true,
        );
    }
    // Keep the upstream for the client's next request to the same destination.
    *lock(&conn.upstream) = Some(Upstream { host, port, sender });
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, body.boxed())
}

/// The upstream for `host:port`: the client's current one if it is for the same
/// destination and still usable, otherwise a newly decided and opened one.
async fn upstream_for(
    conn: &Conn,
    host: &CanonicalHost,
    port: u16,
) -> Result<SendRequest<Incoming>, Refusal> {
    let current = lock(&conn.upstream).take();
    if let Some(mut upstream) = current {
        if &upstream.host == host && upstream.port == port && upstream.sender.ready().await.is_ok()
        {
            return Ok(upstream.sender);
        }
    }
    let Opened { stream, tracked } = conn
        .gate
        .open(host.clone(), port, NetworkProtocol::Http, conn.owner)
        .await?;
    let io = TokioIo::new(Metered::new(
        stream,
        Arc::clone(&conn.activity),
        Some(tracked),
    ));
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(1024 * 1024)
        .handshake(io)
        .await
        .map_err(|e| {
            Refusal::Failed(UpstreamError::Other(format!("HTTP handshake failed: {e}")))
        })?;
    lock(&conn.tasks).spawn(async move {
        // Dropping the connection (and its metered stream) sends the record.
        let _ = connection.await;
    });
    Ok(sender)
}
