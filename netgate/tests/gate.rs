//! The network gate against real clients (curl, python, raw sockets) and real upstream
//! servers on the host's loopback.

mod util;

use std::sync::Arc;
use std::time::Duration;

use execgate_execpolicy::Decision;
use execgate_netgate::{NetworkProtocol, Outcome, Scope, Source, Via};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use util::*;

const ALLOW_HTTPS: &str = r#"network_rule(host = "allowed.test", protocol = "https", decision = "allow")
network_rule(host = "denied.test", protocol = "https", decision = "deny", justification = "no exfiltration to denied.test")
network_rule(host = "allowed.test", protocol = "http", decision = "allow")
network_rule(host = "denied.test", protocol = "http", decision = "forbidden")
network_rule(host = "allowed.test", protocol = "socks5_tcp", decision = "allow")
network_rule(host = "ask.test", protocol = "https", decision = "prompt")
"#;

fn proxy_url(h: &Harness) -> String {
    format!("http://{}", h.proxy)
}

// ---- HTTP proxy: CONNECT ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_an_allowed_host_tunnels_tls_end_to_end() {
    let up = Upstreams::start().await;
    let h = Harness::start(ALLOW_HTTPS, Scripted::new()).await;
    let url = format!("https://allowed.test:{}/hello", up.https.port());
    let (code, out, err) = curl(&[
        "--proxy",
        &proxy_url(&h),
        "--cacert",
        up.ca_pem.to_str().unwrap(),
        &url,
    ])
    .await;
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        format!("GET allowed.test:{} /hello 0\n", up.https.port())
    );
    let record = h.record().await;
    assert_eq!(record.host, "allowed.test");
    assert_eq!(record.port, up.https.port());
    assert_eq!(record.protocol, NetworkProtocol::Https);
    assert_eq!(record.decision, Some(Decision::Allow));
    assert_eq!(record.verdict, Outcome::Connect);
    assert_eq!(record.source, Source::Policy);
    assert_eq!(record.rule, Some(h.rule(1)));
    assert_eq!(record.owner.via, Via::HttpProxy);
    assert_eq!(record.owner.listener, h.proxy);
    assert_eq!(record.address, Some(up.https));
    assert!(record.asked);
    assert!(record.bytes_up > 0 && record.bytes_down > 0, "{record:?}");
    assert_eq!(h.scripted.asked(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_a_denied_host_gets_403_naming_the_rule_and_nothing_is_opened() {
    let up = Upstreams::start().await;
    let h = Harness::start(ALLOW_HTTPS, Scripted::new()).await;
    let target = format!("denied.test:{}", up.https.port());
    let response = exchange(
        h.proxy,
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(response.status, 403);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        response.body,
        format!(
            "execgate: network denied: https://{target}: no exfiltration to denied.test (rule {})\n",
            h.rule(2)
        )
    );
    let record = h.record().await;
    assert_eq!(
        (record.verdict, record.source, record.decision),
        (Outcome::Deny, Source::Policy, Some(Decision::Forbidden))
    );
    assert_eq!(
        (record.bytes_up, record.bytes_down, record.address),
        (0, 0, None)
    );
    assert_eq!(up.https_accepts.count(), 0);

    // curl sees the refusal at once, as a failed tunnel.
    let (code, _, err) = curl(&["--proxy", &proxy_url(&h), &format!("https://{target}/")]).await;
    assert_eq!(code, 56, "{err}");
    assert!(err.contains("403"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_no_rule_names_goes_to_the_next_stage_and_its_denial_says_who() {
    let up = Upstreams::start().await;
    let h = Harness::start(ALLOW_HTTPS, Scripted::new()).await;
    let target = format!("other.test:{}", up.https.port());
    let response = exchange(
        h.proxy,
        format!("CONNECT {target} HTTP/1.1\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(response.status, 403);
    assert_eq!(
        response.body,
        format!("execgate: network denied: https://{target}: denied by the user\n")
    );
    assert_eq!(h.scripted.targets(), vec![format!("https://{target}")]);
    let record = h.record().await;
    assert_eq!((record.decision, record.source), (None, Source::User));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_rule_asks_and_the_record_keeps_what_the_rule_said() {
    let up = Upstreams::start().await;
    let h = Harness::start(ALLOW_HTTPS, Scripted::new().allow("ask.test")).await;
    let url = format!("https://ask.test:{}/x", up.https.port());
    let (code, out, err) = curl(&[
        "--proxy",
        &proxy_url(&h),
        "--cacert",
        up.ca_pem.to_str().unwrap(),
        &url,
    ])
    .await;
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(out, format!("GET ask.test:{} /x 0\n", up.https.port()));
    let record = h.record().await;
    assert_eq!(
        (record.decision, record.verdict, record.source, record.rule),
        (
            Some(Decision::Prompt),
            Outcome::Connect,
            Source::User,
            Some(h.rule(6))
        )
    );
    assert_eq!(h.scripted.asked(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_rule_opens_neither_plain_http_nor_socks() {
    let up = Upstreams::start().await;
    let rules = r#"network_rule(host = "other.test", protocol = "https", decision = "allow")"#;
    let h = Harness::start(rules, Scripted::new()).await;
    // Plain HTTP to the same host: not covered, so the next stage is asked (and denies).
    let response = exchange(
        h.proxy,
        format!(
            "GET http://other.test:{port}/ HTTP/1.1\r\nHost: other.test:{port}\r\n\r\n",
            port = up.http.port()
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(response.status, 403);
    // SOCKS to the same host: likewise.
    let mut socks = TcpStream::connect(h.socks).await.unwrap();
    socks.write_all(&[5, 1, 0]).await.unwrap();
    let mut greeting = [0u8; 2];
    socks.read_exact(&mut greeting).await.unwrap();
    let mut request = vec![5, 1, 0, 3, 10];
    request.extend_from_slice(b"other.test");
    request.extend_from_slice(&up.https.port().to_be_bytes());
    socks.write_all(&request).await.unwrap();
    let mut reply = [0u8; 10];
    socks.read_exact(&mut reply).await.unwrap();
    assert_eq!(reply[1], 2, "connection not allowed by ruleset");
    assert_eq!(
        h.scripted.targets(),
        vec![
            format!("http://other.test:{}", up.http.port()),
            format!("socks5_tcp://other.test:{}", up.https.port())
        ]
    );
    assert_eq!((up.http_accepts.count(), up.https_accepts.count()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_decides_its_target_not_the_host_header() {
    let up = Upstreams::start().await;
    let h = Harness::start(ALLOW_HTTPS, Scripted::new()).await;
    let port = up.https.port();
    let response = exchange(
        h.proxy,
        format!("CONNECT denied.test:{port} HTTP/1.1\r\nHost: allowed.test:{port}\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(response.status, 403);
    assert_eq!(up.https_accepts.count(), 0);
    let record = h.record().await;
    assert_eq!(
        (record.host.as_str(), record.verdict),
        ("denied.test", Outcome::Deny)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_connect_requests_get_400_and_open_nothing() {
    let up = Upstreams::start().await;
    let h = Harness::start(ALLOW_HTTPS, Scripted::new()).await;
    for request in [
        "CONNECT allowed.test HTTP/1.1\r\n\r\n".to_owned(),
        "CONNECT allowed.test: HTTP/1.1\r\n\r\n".to_owned(),
        "CONNECT allowed.test:99999 HTTP/1.1\r\n\r\n".to_owned(),
        "CONNECT user@allowed.test:443 HTTP/1.1\r\n\r\n".to_owned(),
        "CONNECT /path HTTP/1.1\r\n\r\n".to_owned(),
        "CONNECT [::1 HTTP/1.1\r\n\r\n".to_owned(),
        "CONNECT allowed.test:443 garbage\r\n\r\n".to_owned(),
        "\x16\x03\x01\x02\x00\x01\x00\x01\x7c\x03\x03\r\n\r\n".to_owned(),
        format!(
            "CONNECT allowed.test:{} HTTP/1.1\r\nBad Header\r\n\r\n",
            up.https.port()
        ),
    ] {
        let mut stream = TcpStream::connect(h.proxy).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let reply = read_to_close(&mut stream).await;
        let reply = String::from_utf8_lossy(&reply);
        assert!(
            reply.starts_with("HTTP/1.1 400 "),
            "{request:?} got {reply:?}"
        );
    }
    assert_eq!(h.scripted.asked(), 0);
    assert_eq!(up.https_accepts.count(), 0);
    assert!(h.pending_records().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_or_too_many_headers_get_431() {
    let h = Harness::start(ALLOW_HTTPS, Scripted::new()).await;
    let big = format!(
        "CONNECT allowed.test:443 HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let many = format!(
        "CONNECT allowed.test:443 HTTP/1.1\r\n{}\r\n",
        (0..101)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect::<String>()
    );
    for request in [big, many] {
        let mut stream = TcpStream::connect(h.proxy).await.unwrap();
        let _ = stream.write_all(request.as_bytes()).await;
        let reply = read_to_close(&mut stream).await;
        assert!(
            String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 431 "),
            "{:?}",
            String::from_utf8_lossy(&reply[..reply.len().min(80)])
        );
    }
    assert_eq!(h.scripted.asked(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_request_is_closed_after_the_header_timeout() {
    let h = Harness::start_with(ALLOW_HTTPS, Scripted::new(), |c| {
        c.limits.header_timeout = Duration::from_millis(300);
    })
    .await;
    let mut silent = TcpStream::connect(h.proxy).await.unwrap();
    let mut partial = TcpStream::connect(h.proxy).await.unwrap();
    partial
        .write_all(b"CONNECT allowed.test:443 HTTP/1.1\r\nHost: a")
        .await
        .unwrap();
    assert_eq!(read_to_close(&mut partial).await, b"");
    assert_eq!(read_to_close(&mut silent).await, b"");
    // The proxy still serves.
    let response = exchange(h.proxy, b"CONNECT denied.test:443 HTTP/1.1\r\n\r\n").await;
    assert_eq!(response.status, 403);
}

// ---- HTTP proxy: absolute-URI requests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_through_the_proxy_with_curl() {
    let up = Upstreams::start().await;
    let h = Harness::start(ALLOW_HTTPS, Scripted::new()).await;
    let url = format!("http://allowed.test:{}/page?q=1", up.http.port());
    let (code, out, err) = curl(&["--proxy", &proxy_url(&h), "-d", "body!", &url]).await;
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        format!("POST allowed.test:{} /page 5\n", up.http.port())
    );
    let record = h.record().await;
    assert_eq!(
        (record.protocol, record.verdict, record.rule.clone()),
        (NetworkProtocol::Http, Outcome::Connect, Some(h.rule(3)))
    );
    assert!(record.bytes_up > 5 && record.bytes_down > 0, "{record:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_decides_each_request_and_a_second_host_gets_its_own_decision() {
    let up = Upstreams::start().await;
    let h = Harness::start(ALLOW_HTTPS, Scripted::new().allow("other.test")).await;
    let port = up.http.port();
    let mut stream = TcpStream::connect(h.proxy).await.unwrap();
    let request = |host: &str, path: &str| {
        format!("GET http://{host}:{port}{path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n")
    };
    stream
        .write_all(request("allowed.test", "/1").as_bytes())
        .await
        .unwrap();
    let first = read_response(&mut stream).await;
    assert_eq!(first.body, format!("GET allowed.test:{port} /1 0\n"));
    stream
        .write_all(request("allowed.test", "/2").as_bytes())
        .await
        .unwrap();
    let second = read_response(&mut stream).await;
    assert_eq!(second.body, format!("GET allowed.test:{port} /2 0\n"));
    stream
        .write_all(request("denied.test", "/3").as_bytes())
        .await
        .unwrap();
    let third = read_response(&mut stream).await;
    assert_eq!(third.status, 403);
    assert_eq!(
        third.body,
        format!(
            "execgate: network denied: http://denied.test:{port}: forbidden by a network_rule (rule {})\n",
            h.rule(4)
        )
    );
    stream
        .write_all(request("other.test", "/4").as_bytes())
        .await
        .unwrap();
    let fourth = read_response(&mut stream).await;
    assert_eq!(fourth.body, format!("GET other.test:{port} /4 0\n"));
    drop(stream);
    // Two requests shared one upstream connection; the other host got its own.
    assert_eq!(up.http_accepts.count(), 2);
    let mut records = [h.record().await, h.record().await, h.record().await];
    records.sort_by(|a, b| a.host.cmp(&b.host));
    let summary: Vec<_> = records
        .iter()
        .map(|r| (r.host.as_str(), r.verdict, r.source))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("allowed.test", Outcome::Connect, Source::Policy),
            ("denied.test", Outcome::Deny, Source::Policy),
            ("other.test", Outcome::Connect, Source::User),
        ]
    );
    assert_eq!(
        h.scripted.targets(),
        vec![format!("http://other.test:{port}")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_header_naming_another_host_is_refused_before_anything_is_decided() {
    let up = Upstreams::start().await;
    let h = Harness::start(ALLOW_HTTPS, Scripted::new()).await;
    let port = up.http.port();
    for host_header in [
        format!("denied.test:{port}"),
        "allowed.test".to_owned(),
        format!("allowed.test:{port}, denied.test"),
        format!("allowed.test:{port}@denied.test"),
    ] {
        let response = exchange(
            h.proxy,
            format!("GET http://allowed.test:{port}/ HTTP/1.1\r\nHost: {host_header}\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert_eq!(response.status, 400, "{host_header}");
        assert_eq!(
            response.body,
            format!(
                "execgate: network gate: the Host header ({host_header}) names another host than the request (allowed.test:{port})\n"
            )
        );
    }
    // A matching Host (any case, trailing dot) goes through.
    let response = exchange(
        h.proxy,
        format!("GET http://allowed.test:{port}/ok HTTP/1.1\r\nHost: Allowed.Test.:{port}\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(response.body, format!("GET allowed.test:{port} /ok 0\n"));
    assert_eq!(up.http_accepts.count(), 1);
    assert_eq!(h.scripted.asked(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_form_and_https_urls_sent_to_the_proxy_are_refused() {
    let h = Harness::start(ALLOW_HTTPS, Scripted::new()).await;
    let origin = exchange(h.proxy, b"GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n").await;
    assert_eq!(origin.status, 400);
    assert_eq!(origin.header("connection"), Some("close"));
    assert_eq!(
        origin.body,
        "execgate: network gate: this is a proxy: send absolute-URI requests (GET http://host/...) or CONNECT\n"
    );
    let https = exchange(
        h.proxy,
        b"GET https://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
    )
    .await;
    assert_eq!(https.status, 400);
    assert_eq!(
        https.body,
        "execgate: network gate: only http:// URLs can be proxied this way; use CONNECT for https\n"
    );
    assert_eq!(h.scripted.asked(), 0);
}

// ---- SOCKS5 ----

async fn socks_connect(
    socks: std::net::SocketAddr,
    address: &[u8],
    port: u16,
) -> (TcpStream, [u8; 10]) {
    let mut stream = TcpStream::connect(socks).await.unwrap();
    stream.write_all(&[5, 1, 0]).await.unwrap();
    let mut greeting = [0u8; 2];
    stream.read_exact(&mut greeting).await.unwrap();
    assert_eq!(greeting, [5, 0]);
    let mut request = vec![5, 1, 0];
    request.extend_from_slice(address);
    request.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&request).await.unwrap();
    let mut reply = [0u8; 10];
    stream.read_exact(&mut reply).await.unwrap();
    (stream, reply)
}

fn domain(name: &str) -> Vec<u8> {
    let mut out = vec![3, name.len() as u8];
    out.extend_from_slice(name.as_bytes());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_with_curl_reaches_an_allowed_host_by_name() {
    let up = Upstreams::start().await;
    let h = Harness::start(ALLOW_HTTPS, Scripted::new()).await;
    let url = format!("https://allowed.test:{}/s", up.https.port());
    let proxy = format!("socks5h://{}", h.socks);
    let (code, out, err) = curl(&[
        "--proxy",
        &proxy,
        "--cacert",
        up.ca_pem.to_str().unwrap(),
        &url,
    ])
    .await;
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(out, format!("GET allowed.test:{} /s 0\n", up.https.port()));
    let record = h.record().await;
    assert_eq!(
        (record.protocol, record.verdict, record.owner.via),
        (NetworkProtocol::Socks5Tcp, Outcome::Connect, Via::Socks5)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_connects_to_v4_and_v6_literals_a_rule_names_and_half_closes() {
    let up = Upstreams::start().await;
    let v6_echo = tokio::net::TcpListener::bind("[::1]:0").await.unwrap();
    let v6_port = v6_echo.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = v6_echo.accept().await.unwrap();
        let (mut r, mut w) = s.split();
        tokio::io::copy(&mut r, &mut w).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let rules = r#"network_rule(host = "127.0.0.1", protocol = "socks5_tcp", decision = "allow")
network_rule(host = "[::1]", protocol = "socks5_tcp", decision = "allow")"#;
    let h = Harness::start(rules, Scripted::new()).await;
    for (address, port) in [
        (vec![1, 127, 0, 0, 1], up.echo.port()),
        (
            {
                let mut a = vec![4];
                a.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
                a
            },
            v6_port,
        ),
    ] {
        let (mut stream, reply) = socks_connect(h.socks, &address, port).await;
        assert_eq!(reply, [5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        stream.write_all(b"ping through socks").await.unwrap();
        stream.shutdown().await.unwrap();
        assert_eq!(read_to_close(&mut stream).await, b"ping through socks");
        let record = h.record().await;
        assert_eq!((record.bytes_up, record.bytes_down), (18, 18));
        assert_eq!(record.source, Source::Policy);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_refusals_have_their_reply_codes() {
    let up = Upstreams::start().await;
    let h = Harness::start(ALLOW_HTTPS, Scripted::new()).await;
    // A denied host (no socks5_tcp rule; the next stage says no): 0x02, connection not
    // allowed by ruleset.
    let (_, reply) = socks_connect(h.socks, &domain("denied.test"), up.echo.port()).await;
    assert_eq!(reply, [5, 2, 0, 1, 0, 0, 0, 0, 0, 0]);
    // UDP ASSOCIATE and BIND: 0x07, command not supported.
    for command in [2u8, 3] {
        let mut stream = TcpStream::connect(h.socks).await.unwrap();
        stream.write_all(&[5, 1, 0]).await.unwrap();
        let mut greeting = [0u8; 2];
        stream.read_exact(&mut greeting).await.unwrap();
        stream
            .write_all(&[5, command, 0, 1, 0, 0, 0, 0, 0, 0])
            .await
            .unwrap();
        let mut reply = [0u8; 10];
        stream.read_exact(&mut reply).await.unwrap();
        assert_eq!(reply, [5, 7, 0, 1, 0, 0, 0, 0, 0, 0]);
    }
    // Only username/password offered: 0xFF, no acceptable method.
    let mut stream = TcpStream::connect(h.socks).await.unwrap();
    stream.write_all(&[5, 1, 2]).await.unwrap();
    assert_eq!(read_to_close(&mut stream).await, [5, 0xff]);
    // An unknown address type: 0x08.
    let mut stream = TcpStream::connect(h.socks).await.unwrap();
    stream
        .write_all(&[5, 1, 0, 5, 1, 0, 9, 1, 2, 3, 4])
        .await
        .unwrap();
    assert_eq!(
        read_to_close(&mut stream).await,
        [5, 0, 5, 8, 0, 1, 0, 0, 0, 0, 0, 0]
    );
    // A name that is no host name: 0x04.
    let (_, reply) = socks_connect(h.socks, &domain("bad name"), 80).await;
    assert_eq!(reply[1], 4);
    // SOCKS4, HTTP and junk: closed without a word.
    for junk in [
        &[4u8, 1, 0, 80, 127, 0, 0, 1, 0][..],
        b"GET / HTTP/1.1\r\n\r\n",
        &[0u8; 3],
    ] {
        let mut stream = TcpStream::connect(h.socks).await.unwrap();
        stream.write_all(junk).await.unwrap();
        assert_eq!(read_to_close(&mut stream).await, b"");
    }
    assert_eq!(up.echo_accepts.count(), 0);
    assert_eq!(
        h.scripted.targets(),
        vec![format!("socks5_tcp://denied.test:{}", up.echo.port())]
    );
}

// ---- Local and private destinations ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_and_private_addresses_in_every_spelling_are_refused_without_asking() {
    let up = Upstreams::start().await;
    let h = Harness::start("", Scripted::new()).await;
    let port = up.echo.port();
    for (spelling, address, why) in [
        ("127.0.0.1", "127.0.0.1", "loopback (127.0.0.0/8)"),
        ("2130706433", "127.0.0.1", "loopback (127.0.0.0/8)"),
        ("0x7f.1", "127.0.0.1", "loopback (127.0.0.0/8)"),
        ("0177.0.0.1", "127.0.0.1", "loopback (127.0.0.0/8)"),
        ("127.1", "127.0.0.1", "loopback (127.0.0.0/8)"),
        ("[::ffff:127.0.0.1]", "127.0.0.1", "loopback (127.0.0.0/8)"),
        ("[::1]", "::1", "loopback (::1)"),
        ("0.0.0.0", "0.0.0.0", "\"this network\" (0.0.0.0/8)"),
        ("10.1.2.3", "10.1.2.3", "private (10.0.0.0/8)"),
        ("172.16.0.1", "172.16.0.1", "private (172.16.0.0/12)"),
        ("192.168.0.1", "192.168.0.1", "private (192.168.0.0/16)"),
        (
            "100.64.0.1",
            "100.64.0.1",
            "carrier-grade NAT (100.64.0.0/10)",
        ),
        (
            "169.254.169.254",
            "169.254.169.254",
            "the cloud metadata address",
        ),
        (
            "0xa9fea9fe",
            "169.254.169.254",
            "the cloud metadata address",
        ),
        ("169.254.1.1", "169.254.1.1", "link-local (169.254.0.0/16)"),
        ("[fe80::1]", "fe80::1", "link-local (fe80::/10)"),
        ("[fd00::1]", "fd00::1", "unique local (fc00::/7)"),
        ("198.18.0.1", "198.18.0.1", "benchmarking (198.18.0.0/15)"),
    ] {
        let response = exchange(
            h.proxy,
            format!("CONNECT {spelling}:{port} HTTP/1.1\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(response.status, 403, "{spelling}");
        let shown = if address.contains(':') {
            format!("[{address}]")
        } else {
            address.to_owned()
        };
        assert_eq!(
            response.body,
            format!(
                "execgate: network denied: https://{shown}:{port}: {address} is {why}; local and private addresses need a network_rule naming them\n"
            ),
            "{spelling}"
        );
        let record = h.record().await;
        assert_eq!(
            (record.host.as_str(), record.source),
            (address, Source::Gate)
        );
    }
    // The same through absolute URIs and SOCKS.
    let response = exchange(
        h.proxy,
        format!("GET http://2130706433:{port}/ HTTP/1.1\r\nHost: 2130706433:{port}\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(response.status, 403);
    let (_, reply) = socks_connect(h.socks, &[1, 169, 254, 169, 254], 80).await;
    assert_eq!(reply[1], 2);
    let (_, reply) = socks_connect(h.socks, &domain("0x7f.1"), port).await;
    assert_eq!(reply[1], 2);
    assert_eq!(h.scripted.asked(), 0);
    assert_eq!(up.echo_accepts.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_resolves_to_a_local_address_is_refused_after_it_was_allowed() {
    let up = Upstreams::start().await;
    // The user allows "localhost" (no rule names it): the system resolver says 127.0.0.1.
    let h = Harness::start("", Scripted::new().allow("localhost")).await;
    let port = up.echo.port();
    let response = exchange(
        h.proxy,
        format!("CONNECT localhost:{port} HTTP/1.1\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(response.status, 403);
    assert!(
        response.body.starts_with(&format!(
            "execgate: network denied: https://localhost:{port}: localhost resolves to "
        )),
        "{}",
        response.body
    );
    assert!(
        response
            .body
            .ends_with("; a network_rule naming the host would allow it\n"),
        "{}",
        response.body
    );
    assert_eq!(up.echo_accepts.count(), 0);
    let record = h.record().await;
    assert_eq!(
        (record.verdict, record.source),
        (Outcome::Deny, Source::Gate)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_naming_a_local_address_lets_it_through() {
    let up = Upstreams::start().await;
    let rules = r#"network_rule(host = "127.0.0.1", protocol = "https", decision = "allow")"#;
    let h = Harness::start(rules, Scripted::new()).await;
    let mut stream = TcpStream::connect(h.proxy).await.unwrap();
    stream
        .write_all(format!("CONNECT 0x7f.1:{} HTTP/1.1\r\n\r\n", up.echo.port()).as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut stream).await.status, 200);
    stream.write_all(b"echo").await.unwrap();
    stream.shutdown().await.unwrap();
    assert_eq!(read_to_close(&mut stream).await, b"echo");
    assert_eq!(h.record().await.host, "127.0.0.1");
}

// ---- Decisions: single flight, memory ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connections_to_one_host_share_one_question() {
    let up = Upstreams::start().await;
    let (scripted, release) = Scripted::held();
    let h = Arc::new(Harness::start("", scripted.allow("other.test")).await);
    let port = up.echo.port();
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..8u8 {
        let proxy = h.proxy;
        clients.spawn(async move {
            let mut stream = TcpStream::connect(proxy).await.unwrap();
            stream
                .write_all(format!("CONNECT other.test:{port} HTTP/1.1\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let status = read_response(&mut stream).await.status;
            stream.write_all(&[i]).await.unwrap();
            stream.shutdown().await.unwrap();
            (status, read_to_close(&mut stream).await)
        });
    }
    // Every client is waiting on the one question.
    while h.scripted.asked() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    release.add_permits(1);
    let mut results = Vec::new();
    while let Some(result) = clients.join_next().await {
        results.push(result.unwrap());
    }
    results.sort();
    assert_eq!(
        results,
        (0..8u8).map(|i| (200, vec![i])).collect::<Vec<_>>()
    );
    assert_eq!(h.scripted.asked(), 1);
    let mut asked = 0;
    for _ in 0..8 {
        asked += usize::from(h.record().await.asked);
    }
    assert_eq!(asked, 1);
    // Remembered for the session: a later connection is not asked about.
    let response = exchange(
        h.proxy,
        format!("CONNECT other.test:{port} HTTP/1.1\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(h.scripted.asked(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verdict_for_once_is_asked_again_and_a_new_port_is_a_new_question() {
    let up = Upstreams::start().await;
    let scripted =
        Scripted::new().answer("other.test", user_verdict(Outcome::Connect, Scope::Once));
    let h = Harness::start("", scripted).await;
    let port = up.echo.port();
    for _ in 0..2 {
        let response = exchange(
            h.proxy,
            format!("CONNECT other.test:{port} HTTP/1.1\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(response.status, 200);
    }
    let response = exchange(
        h.proxy,
        format!("CONNECT other.test:{} HTTP/1.1\r\n\r\n", up.http.port()).as_bytes(),
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(
        h.scripted.targets(),
        vec![
            format!("https://other.test:{port}"),
            format!("https://other.test:{port}"),
            format!("https://other.test:{}", up.http.port()),
        ]
    );
}

// ---- Limits ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_connections_is_capped_and_the_proxy_keeps_serving() {
    let up = Upstreams::start().await;
    let h = Harness::start_with(ALLOW_HTTPS, Scripted::new(), |c| {
        c.limits.max_connections = 4
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(h.proxy).await.unwrap();
        stream
            .write_all(
                format!("CONNECT allowed.test:{} HTTP/1.1\r\n\r\n", up.echo.port()).as_bytes(),
            )
            .await
            .unwrap();
        assert_eq!(read_response(&mut stream).await.status, 200);
        held.push(stream);
    }
    for _ in 0..20 {
        let mut stream = TcpStream::connect(h.proxy).await.unwrap();
        let reply = read_to_close(&mut stream).await;
        assert_eq!(
            String::from_utf8_lossy(&reply),
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 66\r\nconnection: close\r\n\r\nexecgate: network gate: too many connections open in this session\n"
        );
    }
    // The held tunnels still work.
    for stream in &mut held {
        stream.write_all(b"still here").await.unwrap();
        let mut buf = [0u8; 10];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"still here");
    }
    // Closing one frees a slot.
    drop(held.pop());
    let _ = h.record().await;
    let response = exchange(h.proxy, b"CONNECT denied.test:443 HTTP/1.1\r\n\r\n").await;
    assert_eq!(response.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tunnel_is_closed() {
    let up = Upstreams::start().await;
    let h = Harness::start_with(ALLOW_HTTPS, Scripted::new(), |c| {
        c.limits.idle_timeout = Duration::from_millis(300);
    })
    .await;
    let mut stream = TcpStream::connect(h.proxy).await.unwrap();
    stream
        .write_all(format!("CONNECT allowed.test:{} HTTP/1.1\r\n\r\n", up.echo.port()).as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut stream).await.status, 200);
    stream.write_all(b"x").await.unwrap();
    assert_eq!(read_to_close(&mut stream).await, b"x");
    let record = h.record().await;
    assert_eq!((record.bytes_up, record.bytes_down), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_relay_modes_carry_bytes_exactly_both_ways() {
    let up = Upstreams::start().await;
    for mode in [
        execgate_netgate::RelayMode::Splice,
        execgate_netgate::RelayMode::Copy,
    ] {
        let h = Harness::start_with(ALLOW_HTTPS, Scripted::new(), |c| c.relay = mode).await;
        let mut stream = TcpStream::connect(h.proxy).await.unwrap();
        stream
            .write_all(
                format!("CONNECT allowed.test:{} HTTP/1.1\r\n\r\n", up.echo.port()).as_bytes(),
            )
            .await
            .unwrap();
        assert_eq!(read_response(&mut stream).await.status, 200);
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (mut r, mut w) = stream.into_split();
        let sent = payload.clone();
        let writer = tokio::spawn(async move {
            w.write_all(&sent).await.unwrap();
            w.shutdown().await.unwrap();
        });
        let mut back = Vec::new();
        tokio::time::timeout(HANG, r.read_to_end(&mut back))
            .await
            .unwrap()
            .unwrap();
        writer.await.unwrap();
        assert!(back == payload, "{mode:?}: {} bytes back", back.len());
        let record = h.record().await;
        assert_eq!(
            (record.bytes_up, record.bytes_down),
            (3_000_000, 3_000_000),
            "{mode:?}"
        );
    }
}

// ---- DNS responder ----

fn query(name: &str, kind: hickory_proto::rr::RecordType) -> Vec<u8> {
    let mut message = hickory_proto::op::Message::query();
    message.metadata.id = 0x1234;
    message.metadata.recursion_desired = true;
    message.add_query(hickory_proto::op::Query::query(
        hickory_proto::rr::Name::from_ascii(name).unwrap(),
        kind,
    ));
    message.to_vec().unwrap()
}

/// A query built byte by byte, for names a DNS library would refuse to write.
fn raw_query(labels: &[&[u8]], qtype: u16) -> Vec<u8> {
    let mut out = vec![0x43, 0x21, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in labels {
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out
}

fn parse(reply: &[u8]) -> hickory_proto::op::Message {
    hickory_proto::op::Message::from_vec(reply).unwrap()
}

fn answers(reply: &hickory_proto::op::Message) -> Vec<String> {
    reply.answers.iter().map(|r| r.data.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_answers_every_name_from_the_pool_and_remembers_it() {
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::RecordType;
    let h = Harness::start("", Scripted::new()).await;
    let a = parse(
        &h.gate
            .answer_dns(&query("Pypi.Org.", RecordType::A))
            .unwrap(),
    );
    assert_eq!(a.metadata.id, 0x1234);
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert_eq!(answers(&a), vec!["198.18.0.1"]);
    let b = parse(
        &h.gate
            .answer_dns(&query("files.example.", RecordType::A))
            .unwrap(),
    );
    assert_eq!(answers(&b), vec!["198.18.0.2"]);
    let again = parse(
        &h.gate
            .answer_dns(&query("pypi.org.", RecordType::A))
            .unwrap(),
    );
    assert_eq!(answers(&again), vec!["198.18.0.1"]);
    assert_eq!(
        h.gate.name_for("198.18.0.1".parse().unwrap()).as_deref(),
        Some("pypi.org")
    );
    // AAAA, MX, HTTPS: an empty answer, so programs use the A address.
    for kind in [
        RecordType::AAAA,
        RecordType::MX,
        RecordType::HTTPS,
        RecordType::TXT,
    ] {
        let reply = parse(&h.gate.answer_dns(&query("pypi.org.", kind)).unwrap());
        assert_eq!(
            (reply.metadata.response_code, reply.answers.len()),
            (ResponseCode::NoError, 0),
            "{kind}"
        );
    }
    // PTR: the name for a handed-out pool address; nothing else exists.
    let ptr = parse(
        &h.gate
            .answer_dns(&query("1.0.18.198.in-addr.arpa.", RecordType::PTR))
            .unwrap(),
    );
    assert_eq!(answers(&ptr), vec!["pypi.org."]);
    for name in ["9.9.18.198.in-addr.arpa.", "1.0.0.127.in-addr.arpa."] {
        let reply = parse(&h.gate.answer_dns(&query(name, RecordType::PTR)).unwrap());
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NXDomain,
            "{name}"
        );
    }
    // Names that are addresses or could never be decided do not exist.
    for labels in [
        &[&b"10"[..], b"0", b"0", b"1"][..],
        &[b"bad name", b"test"],
        &[b"bad.dot", b"test"],
        &[b"caf\xc3\xa9", b"test"],
        &[b"nul\0", b"test"],
        &[b"x", b"1", b"0", b"18", b"198", b"in-addr", b"arpa"],
    ] {
        let reply = parse(&h.gate.answer_dns(&raw_query(labels, 1)).unwrap());
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NXDomain,
            "{labels:?}"
        );
    }
    // Junk with a header: FORMERR with the id; shorter junk or a response: no answer.
    let junk = [
        0xab, 0xcd, 0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1, 2, 3,
    ];
    assert_eq!(
        h.gate.answer_dns(&junk),
        Some(vec![0xab, 0xcd, 0x81, 0x01, 0, 0, 0, 0, 0, 0, 0, 0])
    );
    assert_eq!(h.gate.answer_dns(&[1, 2, 3]), None);
    assert_eq!(h.gate.answer_dns(&a.to_vec().unwrap()), None);
    // Other classes are refused; other opcodes not implemented; two questions malformed.
    let mut chaos = hickory_proto::op::Message::query();
    let mut q = hickory_proto::op::Query::query(
        hickory_proto::rr::Name::from_ascii("version.bind.").unwrap(),
        RecordType::TXT,
    );
    q.set_query_class(hickory_proto::rr::DNSClass::CH);
    chaos.add_query(q);
    let reply = parse(&h.gate.answer_dns(&chaos.to_vec().unwrap()).unwrap());
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    let mut two = parse(&query("a.test.", RecordType::A));
    two.add_query(hickory_proto::op::Query::query(
        hickory_proto::rr::Name::from_ascii("b.test.").unwrap(),
        RecordType::A,
    ));
    let reply = parse(&h.gate.answer_dns(&two.to_vec().unwrap()).unwrap());
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    let mut status = parse(&query("a.test.", RecordType::A));
    status.metadata.op_code = hickory_proto::op::OpCode::Status;
    let reply = parse(&h.gate.answer_dns(&status.to_vec().unwrap()).unwrap());
    assert_eq!(reply.metadata.response_code, ResponseCode::NotImp);
    // Asking never decides anything and never reaches a resolver.
    assert_eq!(h.scripted.asked(), 0);
    assert!(h.pending_records().await.is_empty());
}

// ---- Inside a sandbox: fds handed in, DNS, capture, proxy-aware programs ----

struct Sandboxed {
    h: Harness,
    up: Upstreams,
    sandbox: Arc<std::sync::Mutex<Sandbox>>,
    _tasks: tokio::task::JoinSet<()>,
}

impl Sandboxed {
    async fn start(rules: &str, scripted: Scripted) -> Self {
        let up = Upstreams::start().await;
        let h = Harness::start(rules, scripted).await;
        let mut sandbox = Sandbox::start(&[up.https.port(), up.http.port(), up.echo.port()]);
        let mut tasks = tokio::task::JoinSet::new();
        serve_sandbox(
            &h.gate,
            &mut sandbox,
            &[
                (up.https.port(), NetworkProtocol::Https),
                (up.http.port(), NetworkProtocol::Http),
                (up.echo.port(), NetworkProtocol::Socks5Tcp),
            ],
            &mut tasks,
        );
        Self {
            h,
            up,
            sandbox: Arc::new(std::sync::Mutex::new(sandbox)),
            _tasks: tasks,
        }
    }

    /// A sandbox whose capture listeners the gate makes itself, one per name and port,
    /// bound to the name's pool address (as the integration does), instead of wildcard
    /// listeners made up front.
    async fn start_bound(rules: &str, scripted: Scripted) -> Self {
        let up = Upstreams::start().await;
        let mut sandbox = Sandbox::start(&[]);
        let binder = sandbox.binder();
        let ports = vec![
            (up.https.port(), NetworkProtocol::Https),
            (up.http.port(), NetworkProtocol::Http),
        ];
        let h = Harness::start_with(rules, scripted, move |config| {
            config.binder = Some(binder);
            config.capture_ports = ports;
        })
        .await;
        let mut tasks = tokio::task::JoinSet::new();
        serve_sandbox(&h.gate, &mut sandbox, &[], &mut tasks);
        let gate = h.gate.clone();
        tasks.spawn(async move { gate.serve_bound_captures().await.unwrap() });
        Self {
            h,
            up,
            sandbox: Arc::new(std::sync::Mutex::new(sandbox)),
            _tasks: tasks,
        }
    }

    /// Runs `argv` inside the sandbox.
    async fn run(&self, argv: &[&str], env: &[(&str, &str)]) -> Ran {
        let sandbox = Arc::clone(&self.sandbox);
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tokio::task::spawn_blocking(move || {
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            sandbox.lock().unwrap().run(&argv, &env)
        })
        .await
        .unwrap()
    }

    async fn python(&self, code: &str) -> Ran {
        self.run(&["python3", "-c", code], &[]).await
    }

    /// A python program that fetches `/path` over TLS from `host:port` resolved by the
    /// sandbox's DNS (no proxy), sending `sni`; prints the pool address it dialled and the
    /// body, or the exception's class.
    async fn tls_get(&self, host: &str, sni: &str, path: &str) -> Ran {
        let code = format!(
            r#"
import socket, ssl
ctx = ssl.create_default_context(cafile={ca:?})
try:
    with socket.create_connection(({host:?}, {port}), timeout=10) as s:
        print(s.getpeername()[0])
        with ctx.wrap_socket(s, server_hostname={sni:?}) as t:
            t.sendall(b"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = t.recv(65536)
                if not chunk:
                    break
                data += chunk
            print(data.split(b"\r\n\r\n", 1)[1].decode(), end="")
except Exception as e:
    print(type(e).__name__)
"#,
            ca = self.up.ca_pem.to_str().unwrap(),
            port = self.up.https.port(),
        );
        self.python(&code).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_resolver_gets_pool_addresses_over_udp_and_tcp() {
    let s = Sandboxed::start("", Scripted::new()).await;
    let ran = s
        .python(
            "import socket; print(sorted({a[4][0] for a in socket.getaddrinfo('pypi.org', 443)}))",
        )
        .await;
    assert_eq!(
        (ran.code, ran.stdout.as_str(), ran.stderr.as_str()),
        (0, "['198.18.0.1']\n", "")
    );
    // The same name over TCP (length-prefixed), as a resolver falls back to.
    let q = query("pypi.org.", hickory_proto::rr::RecordType::A);
    let code = format!(
        "import socket, sys\nq = bytes({q:?})\ns = socket.create_connection(('127.0.0.1', 53))\ns.sendall(len(q).to_bytes(2, 'big') + q)\nn = int.from_bytes(s.recv(2), 'big')\nr = b''\nwhile len(r) < n:\n    r += s.recv(n - len(r))\nprint(r[-4:].hex())"
    );
    let ran = s.python(&code).await;
    assert_eq!(
        (ran.code, ran.stdout.as_str(), ran.stderr.as_str()),
        (0, "c6120001\n", "")
    );
    assert_eq!(s.h.scripted.asked(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_unaware_program_reaches_an_allowed_host_by_name_through_capture() {
    let s = Sandboxed::start(ALLOW_HTTPS, Scripted::new()).await;
    let ran = s.tls_get("allowed.test", "allowed.test", "/captured").await;
    assert_eq!(
        (ran.stdout.as_str(), ran.stderr.as_str()),
        ("198.18.0.1\nGET allowed.test /captured 0\n", "")
    );
    let record = s.h.record().await;
    assert_eq!(
        (
            record.host.as_str(),
            record.port,
            record.protocol,
            record.verdict,
            record.owner.via
        ),
        (
            "allowed.test",
            s.up.https.port(),
            NetworkProtocol::Https,
            Outcome::Connect,
            Via::Capture
        )
    );
    assert_eq!(
        record.owner.listener,
        format!("198.18.0.1:{}", s.up.https.port()).parse().unwrap()
    );
    assert!(record.bytes_up > 0 && record.bytes_down > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_connections_that_are_denied_mismatched_or_not_from_the_pool_are_reset() {
    let s = Sandboxed::start(ALLOW_HTTPS, Scripted::new()).await;
    // Denied by rule.
    let ran = s.tls_get("denied.test", "denied.test", "/").await;
    assert_eq!(ran.stdout, "198.18.0.1\nConnectionResetError\n");
    let record = s.h.record().await;
    assert_eq!(
        (record.host.as_str(), record.verdict, record.source),
        ("denied.test", Outcome::Deny, Source::Policy)
    );
    // An allowed name's address, but the ClientHello asks for another host.
    let ran = s.tls_get("allowed.test", "denied.test", "/").await;
    assert_eq!(ran.stdout, "198.18.0.2\nConnectionResetError\n");
    let record = s.h.record().await;
    assert_eq!(
        record.reason.as_deref(),
        Some("the TLS server name \"denied.test\" is not allowed.test, the name this address was given for")
    );
    // Addresses the sandbox's DNS never gave out: an unused pool address, loopback.
    let port = s.up.https.port();
    for address in ["198.18.7.7", "127.0.0.1"] {
        let code = format!(
            "import socket\ntry:\n    s = socket.create_connection(({address:?}, {port}))\n    s.sendall(b'x')\n    print(s.recv(10))\nexcept Exception as e:\n    print(type(e).__name__)"
        );
        let ran = s.python(&code).await;
        assert_eq!(
            ran.stdout, "ConnectionResetError\n",
            "{address}: {}",
            ran.stderr
        );
        let record = s.h.record().await;
        assert_eq!(
            (record.host.as_str(), record.source, record.reason),
            (address, Source::Gate, Some(format!("{address} is not an address the sandbox's DNS gave out; connect by name or through the proxy")))
        );
    }
    assert_eq!(s.up.https_accepts.count(), 0);
    assert_eq!(s.h.scripted.asked(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_name_no_rule_covers_works_only_after_approval() {
    let s = Sandboxed::start(ALLOW_HTTPS, Scripted::new().allow("other.test")).await;
    let denied = s.tls_get("ask.test", "ask.test", "/").await;
    assert_eq!(denied.stdout, "198.18.0.1\nConnectionResetError\n");
    let allowed = s.tls_get("other.test", "other.test", "/ok").await;
    assert_eq!(allowed.stdout, "198.18.0.2\nGET other.test /ok 0\n");
    let questions = s.h.scripted.questions.lock().unwrap().clone();
    assert_eq!(
        questions
            .iter()
            .map(|q| (q.target(), q.owner.via))
            .collect::<Vec<_>>(),
        vec![
            (
                format!("https://ask.test:{}", s.up.https.port()),
                Via::Capture
            ),
            (
                format!("https://other.test:{}", s.up.https.port()),
                Via::Capture
            ),
        ]
    );
    // The owner is the sandbox socket as /proc/net/tcp inside the sandbox lists it.
    assert_eq!(questions[1].owner.listener.ip().to_string(), "198.18.0.2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_capture_takes_only_pool_addresses_and_leaves_loopback_to_the_sandbox() {
    let s = Sandboxed::start_bound(ALLOW_HTTPS, Scripted::new()).await;
    let ran = s.tls_get("allowed.test", "allowed.test", "/bound").await;
    assert_eq!(
        (ran.stdout.as_str(), ran.stderr.as_str()),
        ("198.18.0.1\nGET allowed.test /bound 0\n", "")
    );
    assert_eq!(s.h.record().await.owner.via, Via::Capture);
    // The sandbox's own server on 127.0.0.1 at a captured port: its own, not the gate's;
    // an unused pool address is refused at once (nothing listens there).
    let port = s.up.https.port();
    let code = format!(
        r#"
import socket
own = socket.socket()
own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
own.bind(("127.0.0.1", {port}))
own.listen()
c = socket.create_connection(("127.0.0.1", {port}))
a, _ = own.accept()
c.sendall(b"mine")
print(a.recv(4).decode())
try:
    socket.create_connection(("198.18.7.7", {port}), timeout=5)
except Exception as e:
    print(type(e).__name__)
"#
    );
    let ran = s.python(&code).await;
    assert_eq!(
        (ran.stdout.as_str(), ran.stderr.as_str()),
        ("mine\nConnectionRefusedError\n", "")
    );
    assert_eq!(s.h.pending_records().await, vec![]);
    assert_eq!(s.up.https_accepts.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_cap_on_captured_names_a_new_name_gets_servfail() {
    let up = Upstreams::start().await;
    let mut sandbox = Sandbox::start(&[]);
    let binder = sandbox.binder();
    let port = up.https.port();
    let h = Harness::start_with("", Scripted::new(), move |config| {
        config.binder = Some(binder);
        config.capture_ports = vec![(port, NetworkProtocol::Https)];
        config.limits.max_captured_names = 2;
    })
    .await;
    let mut tasks = tokio::task::JoinSet::new();
    serve_sandbox(&h.gate, &mut sandbox, &[], &mut tasks);
    let gate = h.gate.clone();
    tasks.spawn(async move { gate.serve_bound_captures().await.unwrap() });
    let sandbox = Arc::new(std::sync::Mutex::new(sandbox));
    let ran = tokio::task::spawn_blocking(move || {
        sandbox.lock().unwrap().run(
            &[
                "python3",
                "-c",
                "import socket\nfor n in ['a.test', 'b.test', 'a.test', 'c.test']:\n    try:\n        print(socket.gethostbyname(n))\n    except Exception as e:\n        print(type(e).__name__)",
            ],
            &[],
        )
    })
    .await
    .unwrap();
    assert_eq!(
        (ran.stdout.as_str(), ran.stderr.as_str()),
        ("198.18.0.1\n198.18.0.2\n198.18.0.1\ngaierror\n", "")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_plain_http_is_forwarded_and_a_foreign_host_header_refused() {
    let s = Sandboxed::start(ALLOW_HTTPS, Scripted::new()).await;
    let port = s.up.http.port();
    let code = format!(
        r#"
import http.client
for host in ["allowed.test:{port}", "denied.test:{port}"]:
    c = http.client.HTTPConnection("allowed.test", {port}, timeout=10)
    c.request("GET", "/plain", headers={{"Host": host}})
    r = c.getresponse()
    print(r.status, r.read().decode(), end="")
"#
    );
    let ran = s.python(&code).await;
    assert_eq!(
        (ran.stdout.as_str(), ran.stderr.as_str()),
        (
            format!(
                "200 GET allowed.test:{port} /plain 0\n400 execgate: network gate: the Host header (denied.test:{port}) names another host than the request (allowed.test:{port})\n"
            )
            .as_str(),
            ""
        )
    );
    assert_eq!(s.up.http_accepts.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_raw_tcp_on_a_rule_port_passes_bytes_through() {
    let rules = r#"network_rule(host = "echo.test", protocol = "socks5_tcp", decision = "allow")"#;
    let s = Sandboxed::start(rules, Scripted::new()).await;
    let code = format!(
        "import socket\ns = socket.create_connection(('echo.test', {}))\ns.sendall(b'raw bytes')\ns.shutdown(socket.SHUT_WR)\nprint(s.makefile('rb').read().decode())",
        s.up.echo.port()
    );
    let ran = s.python(&code).await;
    assert_eq!(
        (ran.stdout.as_str(), ran.stderr.as_str()),
        ("raw bytes\n", "")
    );
    let record = s.h.record().await;
    assert_eq!((record.bytes_up, record.bytes_down), (9, 9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_aware_programs_in_the_sandbox_use_the_proxy_by_name() {
    let s = Sandboxed::start(ALLOW_HTTPS, Scripted::new()).await;
    let https_url = format!("https://allowed.test:{}/curl", s.up.https.port());
    let proxy_env = [
        ("HTTPS_PROXY", "http://127.0.0.1:3128"),
        ("HTTP_PROXY", "http://127.0.0.1:3128"),
    ];
    let ran = s
        .run(
            &[
                "curl",
                "-sS",
                "--cacert",
                s.up.ca_pem.to_str().unwrap(),
                &https_url,
            ],
            &proxy_env,
        )
        .await;
    assert_eq!(
        (ran.code, ran.stdout.as_str(), ran.stderr.as_str()),
        (
            0,
            format!("GET allowed.test:{} /curl 0\n", s.up.https.port()).as_str(),
            ""
        )
    );
    let denied_url = format!("https://denied.test:{}/curl", s.up.https.port());
    let ran = s
        .run(
            &[
                "curl",
                "-sS",
                "--cacert",
                s.up.ca_pem.to_str().unwrap(),
                &denied_url,
            ],
            &proxy_env,
        )
        .await;
    assert_eq!(ran.code, 56, "{}", ran.stderr);
    // python urllib reads the proxy variables too (plain HTTP here).
    let code = format!(
        "import urllib.request\nprint(urllib.request.urlopen('http://allowed.test:{}/urllib', timeout=10).read().decode(), end='')",
        s.up.http.port()
    );
    let ran = s.run(&["python3", "-c", &code], &proxy_env).await;
    assert_eq!(
        (ran.stdout.as_str(), ran.stderr.as_str()),
        (
            format!("GET allowed.test:{} /urllib 0\n", s.up.http.port()).as_str(),
            ""
        )
    );
    // The names were never looked up inside the sandbox: the pool is untouched.
    assert_eq!(s.h.gate.name_for("198.18.0.1".parse().unwrap()), None);
    let mut vias = Vec::new();
    for _ in 0..3 {
        let record = s.h.record().await;
        vias.push((record.host, record.verdict, record.owner.via));
    }
    vias.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        vias,
        vec![
            ("allowed.test".to_owned(), Outcome::Connect, Via::HttpProxy),
            ("allowed.test".to_owned(), Outcome::Connect, Via::HttpProxy),
            ("denied.test".to_owned(), Outcome::Deny, Via::HttpProxy),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_listening_inet_sockets_are_taken_as_listeners() {
    use execgate_netgate::{tcp_listener_from_fd, udp_socket_from_fd};
    use std::os::fd::OwnedFd;
    let dir = tempfile::tempdir().unwrap();
    let unix = std::os::unix::net::UnixListener::bind(dir.path().join("s")).unwrap();
    let error = tcp_listener_from_fd(OwnedFd::from(unix)).unwrap_err();
    assert_eq!(
        error.to_string(),
        "network gate: the fd handed in is not a listening TCP socket (bind and listen it first)"
    );
    let unlistened = std::net::TcpStream::connect(
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap(),
    )
    .unwrap();
    assert!(tcp_listener_from_fd(OwnedFd::from(unlistened)).is_err());
    let file = std::fs::File::open("/dev/null").unwrap();
    assert!(tcp_listener_from_fd(OwnedFd::from(file))
        .unwrap_err()
        .to_string()
        .starts_with("network gate: the fd handed in is not a socket"));
    let udp_unix = std::os::unix::net::UnixDatagram::unbound().unwrap();
    assert_eq!(
        udp_socket_from_fd(OwnedFd::from(udp_unix))
            .unwrap_err()
            .to_string(),
        "network gate: the fd handed in is not a UDP socket"
    );
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    assert!(udp_socket_from_fd(OwnedFd::from(udp)).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verdict_that_ends_the_session_refuses_and_its_record_says_so_and_whose_it_was() {
    let mut verdict = user_verdict(Outcome::Deny, Scope::Session);
    verdict.end_session = true;
    verdict.exec = Some(execgate_netgate::ExecRef {
        id: Some(7),
        command: "/usr/bin/curl https://ask.test/".to_owned(),
    });
    let h = Harness::start(ALLOW_HTTPS, Scripted::new().answer("ask.test", verdict)).await;
    let mut stream = TcpStream::connect(h.proxy).await.unwrap();
    let peer = stream.local_addr().unwrap();
    stream
        .write_all(b"CONNECT ask.test:443 HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let response = read_response(&mut stream).await;
    assert_eq!(
        response.body,
        format!(
            "execgate: network denied: https://ask.test:443: denied by the user (rule {})\n",
            h.rule(6)
        )
    );
    let record = h.record().await;
    assert!(record.end_session);
    assert_eq!(record.owner.peer, peer);
    assert_eq!(
        record.exec.map(|e| (e.id, e.command)),
        Some((Some(7), "/usr/bin/curl https://ask.test/".to_owned()))
    );
    // The owner reached the decider too.
    assert_eq!(h.scripted.questions.lock().unwrap()[0].owner.peer, peer);
}
