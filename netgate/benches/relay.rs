//! The network gate's costs, against a bare baseline in the same run:
//! - throughput of one big transfer through a CONNECT tunnel (splice and copy relays) vs a
//!   direct loopback copy;
//! - the latency a connection to an already-approved host adds (connect, CONNECT, one
//!   byte each way) over the same exchange done directly;
//! - N tunnels held open at once (each echoes a byte while all are open), with the gate's
//!   memory and fds per tunnel.
//!
//! The client and the sink are threads of this process, the gate runs on a two-worker
//! tokio runtime: on a two-core machine the gate competes for the cores like the third busy
//! process it is in real use.
//!
//!   cargo bench -p execgate-netgate --bench relay -- [--size 1G] [--rounds 3] [--latency 1000] [--held 200] [--relay copy|splice|both]
//!   benches/netgate.sh (same, with the full 1 GiB)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use execgate_execpolicy::Policy;
use execgate_netgate::{DenyAll, Gate, GateConfig, RelayMode, RulesDecider, Source};

struct Args {
    modes: Vec<RelayMode>,
    size: u64,
    rounds: usize,
    latency: usize,
    held: usize,
}

fn parse_size(text: &str) -> u64 {
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let n: u64 = digits
        .parse()
        .expect("--size takes a number with an optional K, M or G");
    n * match unit {
        "" => 1,
        "K" | "k" => 1 << 10,
        "M" | "m" => 1 << 20,
        "G" | "g" => 1 << 30,
        other => panic!("--size: unknown unit {other:?} (use K, M or G)"),
    }
}

fn args() -> Args {
    let mut args = Args {
        modes: vec![RelayMode::Copy, RelayMode::Splice],
        size: 64 << 20,
        rounds: 3,
        latency: 1000,
        held: 200,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--size" => args.size = parse_size(&value()),
            "--rounds" => args.rounds = value().parse().expect("--rounds N"),
            "--latency" => args.latency = value().parse().expect("--latency N"),
            "--held" => args.held = value().parse().expect("--held N"),
            "--relay" => {
                args.modes = match value().as_str() {
                    "copy" => vec![RelayMode::Copy],
                    "splice" => vec![RelayMode::Splice],
                    "both" => vec![RelayMode::Copy, RelayMode::Splice],
                    other => panic!("--relay copy|splice|both (got {other:?})"),
                }
            }
            "--bench" => {}
            other => panic!("unknown argument {other:?}; see the doc comment of benches/relay.rs"),
        }
    }
    args
}

/// Reads each connection to EOF, then answers with the byte count and closes.
fn sink() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 20];
                let mut total = 0u64;
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => total += n as u64,
                    }
                }
                let _ = stream.write_all(&total.to_be_bytes());
            });
        }
    });
    address
}

/// Echoes every byte back until EOF.
fn echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let _ = stream.set_nodelay(true);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    address
}

/// Opens a connection to `target` directly, or through the proxy at `proxy` with CONNECT
/// to `name:port`.
fn open(target: SocketAddr, proxy: Option<SocketAddr>, name: &str) -> TcpStream {
    match proxy {
        None => {
            let stream = TcpStream::connect(target).unwrap();
            stream.set_nodelay(true).unwrap();
            stream
        }
        Some(proxy) => {
            let mut stream = TcpStream::connect(proxy).unwrap();
            stream.set_nodelay(true).unwrap();
            write!(stream, "CONNECT {name}:{} HTTP/1.1\r\n\r\n", target.port()).unwrap();
            // Read exactly the response head, byte by byte, so no tunnel bytes are eaten.
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte).unwrap();
                head.push(byte[0]);
            }
            assert!(
                head.starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&head)
            );
            stream
        }
    }
}

/// CPU time (user + system) this process has used so far: client, sink and gate together.
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills a local struct.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Sends `size` bytes to the sink and waits for its count: the transfer's wall time and
/// the CPU time it took (all threads).
fn transfer(sink: SocketAddr, proxy: Option<SocketAddr>, size: u64) -> (Duration, Duration) {
    let buf = vec![0x5au8; 1 << 20];
    let cpu = cpu_time();
    let started = Instant::now();
    let mut stream = open(sink, proxy, "sink.test");
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        stream.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut count = [0u8; 8];
    stream.read_exact(&mut count).unwrap();
    assert_eq!(u64::from_be_bytes(count), size);
    (started.elapsed(), cpu_time().saturating_sub(cpu))
}

/// One connection and one byte each way.
fn ping(echo: SocketAddr, proxy: Option<SocketAddr>) -> Duration {
    let started = Instant::now();
    let mut stream = open(echo, proxy, "echo.test");
    stream.write_all(b"p").unwrap();
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).unwrap();
    started.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn gib_per_s(size: u64, time: Duration) -> f64 {
    size as f64 / time.as_secs_f64() / (1u64 << 30) as f64
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn main() {
    let args = args();
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let policy = Arc::new(
        Policy::from_source(
            "bench.rules",
            r#"network_rule(host = "sink.test", protocol = "https", decision = "allow")
network_rule(host = "echo.test", protocol = "https", decision = "allow")"#,
        )
        .unwrap(),
    );
    let sink = sink();
    let echo = echo();
    let mut proxies = Vec::new();
    let mut records = Vec::new();
    for &mode in &args.modes {
        let mut config = GateConfig::new(Arc::clone(&policy));
        config.relay = mode;
        config.limits.max_connections = args.held + 64;
        config.resolve.add_entry("sink.test:127.0.0.1").unwrap();
        config.resolve.add_entry("echo.test:127.0.0.1").unwrap();
        let decider = Arc::new(RulesDecider::new(
            Arc::clone(&policy),
            Arc::new(DenyAll::new(Source::Policy, "not in the benchmark's rules")),
        ));
        let (gate, receiver) = Gate::new(config, decider);
        records.push(receiver);
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let address = listener.local_addr().unwrap();
        runtime.spawn(async move { gate.serve_http_proxy(listener).await });
        proxies.push((mode, address));
    }

    println!(
        "throughput: {} MiB per transfer, best of {} rounds (configurations alternate)",
        args.size >> 20,
        args.rounds
    );
    let mut best = vec![Duration::MAX; 1 + proxies.len()];
    let mut cpu = vec![Duration::MAX; 1 + proxies.len()];
    for _ in 0..args.rounds {
        let mut run = |i: usize, proxy| {
            let (wall, used) = transfer(sink, proxy, args.size);
            best[i] = best[i].min(wall);
            cpu[i] = cpu[i].min(used);
        };
        run(0, None);
        for (i, &(_, proxy)) in proxies.iter().enumerate() {
            run(i + 1, Some(proxy));
        }
    }
    let gib = args.size as f64 / (1u64 << 30) as f64;
    let direct = gib_per_s(args.size, best[0]);
    println!(
        "  direct loopback        {direct:6.2} GiB/s               CPU {:5.2} s/GiB (client + sink)",
        cpu[0].as_secs_f64() / gib
    );
    for (i, (mode, _)) in proxies.iter().enumerate() {
        let rate = gib_per_s(args.size, best[i + 1]);
        println!(
            "  gate, {:<6} relay     {rate:6.2} GiB/s  {:5.1} % of direct   CPU {:5.2} s/GiB, the gate's share {:5.2}",
            format!("{mode:?}").to_lowercase(),
            100.0 * rate / direct,
            cpu[i + 1].as_secs_f64() / gib,
            cpu[i + 1].saturating_sub(cpu[0]).as_secs_f64() / gib
        );
    }

    // The first relay (the default, copy, unless --relay says otherwise) from here on.
    let (_, proxy) = proxies[0];
    ping(echo, Some(proxy)); // decided once; every later connection is remembered
    let mut direct_pings = Vec::new();
    let mut proxied_pings = Vec::new();
    for _ in 0..args.latency {
        direct_pings.push(ping(echo, None));
        proxied_pings.push(ping(echo, Some(proxy)));
    }
    let (direct, proxied) = (median(direct_pings), median(proxied_pings));
    println!(
        "latency: connect + one byte each way, median of {}, already-approved host",
        args.latency
    );
    println!(
        "  direct                 {:8.1} µs",
        direct.as_secs_f64() * 1e6
    );
    println!(
        "  through the gate       {:8.1} µs   adds {:.1} µs",
        proxied.as_secs_f64() * 1e6,
        (proxied.saturating_sub(direct)).as_secs_f64() * 1e6
    );

    // Let the records of finished connections drain before measuring.
    std::thread::sleep(Duration::from_millis(200));
    for receiver in &mut records {
        while receiver.try_recv().is_ok() {}
    }
    let (rss_before, fds_before) = (status_kib("VmRSS:"), open_fds());
    let mut held: Vec<TcpStream> = (0..args.held)
        .map(|_| open(echo, Some(proxy), "echo.test"))
        .collect();
    for stream in &mut held {
        stream.write_all(b"h").unwrap();
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).unwrap();
    }
    let (rss_after, fds_after) = (status_kib("VmRSS:"), open_fds());
    // Everything still answers with all of them open.
    for stream in &mut held {
        stream.write_all(b"i").unwrap();
    }
    for stream in &mut held {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).unwrap();
        assert_eq!(&byte, b"i");
    }
    println!("held: {} tunnels open at once, each echoing", args.held);
    let per = |delta: u64| delta as f64 / args.held as f64;
    println!(
        "  process: +{} KiB RSS ({:.1} KiB per tunnel, both ends and the echo thread included), +{} fds ({:.1} per tunnel)",
        rss_after.saturating_sub(rss_before),
        per(rss_after.saturating_sub(rss_before)),
        fds_after.saturating_sub(fds_before),
        per(fds_after.saturating_sub(fds_before) as u64),
    );
    drop(held);
}
