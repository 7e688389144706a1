//! End-to-end tests of what a whole `execgate run` session's sandbox guarantees (issue 13):
//! host unix sockets, session reaping, capabilities, other terminals and the shell's exit
//! status, on both backends. Each test attacks from inside with a small Python helper and
//! checks the outcome from outside with real host-side servers.

use crate::support::bins;
use serde_json::Value;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Performs one operation per argument inside the sandbox and prints `OP: RESULT`, where
/// RESULT is `ok ...` or the errno name.
const HELPER: &str = r#"
import ctypes, errno, os, socket, sys, threading

def addr(arg):
    return "\0" + arg[1:] if arg.startswith("@") else arg

def echo_server(listener):
    conn, _ = listener.accept()
    conn.sendall(b"own:" + conn.recv(16))
    conn.close()

def run(kind, arg):
    if kind == "connect":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(addr(arg))
        s.settimeout(5)
        s.sendall(b"ping")
        try:
            return "ok " + s.recv(64).decode()
        except socket.timeout:
            return "connected, no answer"
    if kind == "dgram_socket":
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        return "ok"
    if kind == "raw_socket":
        socket.socket(socket.AF_UNIX, socket.SOCK_RAW)
        return "ok"
    if kind == "dgram_pair":
        socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        return "ok"
    if kind == "sendto_session":
        fd = os.dup(int(os.environ["EXECGATE_SOCKET"]))
        s = socket.socket(fileno=fd)
        s.sendto(b"leak", arg)
        return "sent"
    if kind == "sendto_fd":
        fd, _, path = arg.partition(":")
        s = socket.socket(fileno=os.dup(int(fd)))
        s.sendto(b"leak", path)
        return "sent"
    if kind == "serve":
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(addr(arg))
        listener.listen(1)
        t = threading.Thread(target=echo_server, args=(listener,))
        t.start()
        result = run("connect", arg)
        t.join()
        return result
    if kind == "write":
        with open(arg, "w") as f:
            f.write("x")
        return "ok"
    if kind == "read":
        with open(arg, "rb") as f:
            return "ok " + str(len(f.read(4)))
    if kind == "libc":
        libc = ctypes.CDLL(None, use_errno=True)
        if arg == "sethostname":
            rc = libc.sethostname(b"x", 1)
        elif arg == "mknod":
            rc = libc.mknod(b"made-null", 0o20600, os.makedev(1, 3))
        elif arg == "bpf":
            # BPF_MAP_CREATE of a one-entry array: needs CAP_BPF here
            # (kernel.unprivileged_bpf_disabled is set).
            attr = (ctypes.c_uint32 * 18)(2, 4, 4, 1)
            rc = libc.syscall(321, 0, attr, 72)
            rc = 0 if rc >= 0 else rc
        return "ok" if rc == 0 else errno.errorcode[ctypes.get_errno()]
    if kind == "openpty":
        import pty
        master, slave = pty.openpty()
        os.write(slave, b"x")
        return "ok" if os.read(master, 1) == b"x" else "no echo"
    if kind == "caps":
        fields = {}
        for line in open("/proc/self/status"):
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        return " ".join(f"{k}={fields[k]}" for k in
                        ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs"])
    return "unknown op"

for op in sys.argv[1:]:
    kind, _, arg = op.partition("=")
    try:
        result = run(kind, arg)
    except OSError as e:
        result = errno.errorcode.get(e.errno, str(e.errno))
    print(f"{op}: {result}", flush=True)
"#;

/// A workspace (writable root), a home and a temporary directory (the sessions' `TMPDIR`)
/// for one test. The three lie side by side under `/tmp`, which is therefore not the
/// sessions' temporary directory: were it a writable root, the home would be in it, and
/// the sandbox would protect the home's files (which Landlock refuses to start over).
struct Env {
    _tmp: tempfile::TempDir,
    work: PathBuf,
    home: PathBuf,
    tmpdir: PathBuf,
}

impl Env {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path().join("work");
        let home = tmp.path().join("home");
        let tmpdir = tmp.path().join("tmp");
        for dir in [&work, &home, &tmpdir] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(work.join("helper.py"), HELPER).unwrap();
        Self {
            work: work.canonicalize().unwrap(),
            home: home.canonicalize().unwrap(),
            tmpdir: tmpdir.canonicalize().unwrap(),
            _tmp: tmp,
        }
    }

    /// `execgate run` on `backend` with extra flags, in its own session (no terminal).
    fn command(&self, backend: &str, args: &[&str]) -> Command {
        let zsh = bins::patched_zsh();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_execgate"));
        cmd.arg("run")
            .args(args)
            .current_dir(&self.work)
            .env("HOME", &self.home)
            .env("TMPDIR", &self.tmpdir)
            .env("EXECGATE_SHELLS_DIR", zsh.parent().unwrap())
            .env("EXECGATE_SANDBOX_BACKEND", backend)
            .stdin(Stdio::null());
        bins::with_helpers(&mut cmd);
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        cmd
    }

    fn run_json(&self, backend: &str, args: &[&str]) -> (Value, Output) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.command(backend, &all).output().unwrap();
        let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{backend}: not JSON ({e}): stdout={} stderr={}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (json, out)
    }

    /// Runs the helper with `ops` inside the sandbox and returns one result per op.
    fn helper(&self, backend: &str, flags: &[&str], ops: &[String]) -> Vec<String> {
        let script = format!(
            "python3 helper.py {}",
            ops.iter()
                .map(|op| format!("'{op}'"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let mut args: Vec<&str> = flags.to_vec();
        args.push(&script);
        let (report, out) = self.run_json(backend, &args);
        assert_eq!(out.status.code(), Some(0), "{backend}: {report}");
        let stdout = report["stdout"].as_str().unwrap();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), ops.len(), "{backend}: {report}");
        ops.iter()
            .zip(lines)
            .map(|(op, line)| {
                line.strip_prefix(&format!("{op}: "))
                    .unwrap_or_else(|| panic!("{backend}: unexpected line {line:?}"))
                    .to_owned()
            })
            .collect()
    }
}

const BACKENDS: [&str; 2] = ["bubblewrap", "landlock"];

/// A host stream server on `listener` answering each connection's first bytes with
/// `host:<bytes>`, until the listener is dropped by the returned guard's owner.
fn host_stream_server(listener: UnixListener) -> std::thread::JoinHandle<Vec<String>> {
    listener.set_nonblocking(false).unwrap();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            let mut buf = [0u8; 16];
            let n = conn.read(&mut buf).unwrap_or(0);
            let got = String::from_utf8_lossy(&buf[..n]).into_owned();
            if got == "stop" {
                break;
            }
            let _ = conn.write_all(format!("host:{got}").as_bytes());
            seen.push(got);
        }
        seen
    })
}

/// Stops a [`host_stream_server`] and returns what it received.
fn stop_host_server(path: &Path, server: std::thread::JoinHandle<Vec<String>>) -> Vec<String> {
    let mut stop = std::os::unix::net::UnixStream::connect(path).unwrap();
    stop.write_all(b"stop").unwrap();
    server.join().unwrap()
}

// ---- host AF_UNIX sockets ---------------------------------------------------------------

#[test]
fn host_stream_socket_inside_a_writable_root_is_refused_also_through_links() {
    for backend in BACKENDS {
        for network in [false, true] {
            let env = Env::new();
            let path = env.work.join("host.sock");
            let server = host_stream_server(UnixListener::bind(&path).unwrap());
            std::fs::hard_link(&path, env.work.join("hard.sock")).unwrap();
            std::os::unix::fs::symlink(&path, env.work.join("sym.sock")).unwrap();
            let flags: &[&str] = if network {
                &["--network", "on"]
            } else {
                &["--network", "off"]
            };
            let results = env.helper(
                backend,
                flags,
                &[
                    format!("connect={}", path.display()),
                    "connect=host.sock".to_owned(),
                    "connect=hard.sock".to_owned(),
                    "connect=sym.sock".to_owned(),
                ],
            );
            assert_eq!(
                results,
                ["EACCES", "EACCES", "EACCES", "EACCES"],
                "{backend} network={network}"
            );
            assert_eq!(
                stop_host_server(&path, server),
                Vec::<String>::new(),
                "{backend} network={network}"
            );
        }
    }
}

#[test]
fn allow_unix_socket_opts_one_host_socket_in() {
    for backend in BACKENDS {
        let env = Env::new();
        let outside = tempfile::Builder::new()
            .prefix("execgate-host-sock-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let allowed = outside.path().join("agent.sock");
        let other = outside.path().join("other.sock");
        let allowed_server = host_stream_server(UnixListener::bind(&allowed).unwrap());
        let other_server = host_stream_server(UnixListener::bind(&other).unwrap());
        let allow_flag = allowed.to_str().unwrap();
        let results = env.helper(
            backend,
            &["--allow-unix-socket", allow_flag],
            &[
                format!("connect={}", allowed.display()),
                format!("connect={}", other.display()),
            ],
        );
        assert_eq!(results, ["ok host:ping", "EACCES"], "{backend}");
        assert_eq!(stop_host_server(&allowed, allowed_server), ["ping"]);
        assert_eq!(stop_host_server(&other, other_server), Vec::<String>::new());
    }
}

#[test]
fn host_abstract_socket_is_unreachable_with_and_without_network() {
    for backend in BACKENDS {
        for network in [false, true] {
            let env = Env::new();
            let name = format!(
                "execgate-test-abstract-{}-{backend}-{network}",
                std::process::id()
            );
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            let listener = UnixListener::bind_addr(&addr).unwrap();
            listener.set_nonblocking(true).unwrap();
            let flags: &[&str] = if network {
                &["--network", "on"]
            } else {
                &["--network", "off"]
            };
            let results = env.helper(backend, flags, &[format!("connect=@{name}")]);
            assert!(
                results == ["ECONNREFUSED"] || results == ["EPERM"],
                "{backend} network={network}: {results:?}"
            );
            assert_eq!(
                listener.accept().unwrap_err().kind(),
                std::io::ErrorKind::WouldBlock,
                "{backend} network={network}"
            );
        }
    }
}

#[test]
fn no_unix_datagram_socket_reaches_a_host_datagram_socket() {
    for backend in BACKENDS {
        for network in [false, true] {
            let env = Env::new();
            let path = env.work.join("journal.sock");
            let host = UnixDatagram::bind(&path).unwrap();
            host.set_nonblocking(true).unwrap();
            let flags: &[&str] = if network {
                &["--network", "on"]
            } else {
                &["--network", "off"]
            };
            let results = env.helper(
                backend,
                flags,
                &[
                    "dgram_socket".to_owned(),
                    "raw_socket".to_owned(),
                    "dgram_pair".to_owned(),
                    format!("sendto_session={}", path.display()),
                ],
            );
            assert_eq!(
                results,
                ["EPERM", "EPERM", "EPERM", "sent"],
                "{backend} network={network}"
            );
            let mut buf = [0u8; 16];
            assert_eq!(
                host.recv(&mut buf).unwrap_err().kind(),
                std::io::ErrorKind::WouldBlock,
                "{backend} network={network}: the host socket got a datagram"
            );
        }
    }
}

#[test]
fn an_inherited_unix_datagram_socket_is_closed_before_the_shell_runs() {
    for backend in BACKENDS {
        let env = Env::new();
        let path = env.work.join("journal.sock");
        let host = UnixDatagram::bind(&path).unwrap();
        host.set_nonblocking(true).unwrap();
        let leaked = UnixDatagram::unbound().unwrap();
        let raw = leaked.as_raw_fd();
        let script = format!("python3 helper.py 'sendto_fd=7:{}'", path.display());
        let mut cmd = env.command(backend, &["--json", &script]);
        // SAFETY: dup2 is async-signal-safe; fd 7 is left open across exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(raw, 7) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            report["stdout"],
            "sendto_fd=7:".to_owned() + path.to_str().unwrap() + ": EBADF\n",
            "{backend}: {report}"
        );
        let mut buf = [0u8; 16];
        assert_eq!(
            host.recv(&mut buf).unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock,
            "{backend}: the host socket got a datagram"
        );
    }
}

#[test]
fn sockets_the_sandbox_binds_stay_reachable_from_the_sandbox() {
    for backend in BACKENDS {
        for network in [false, true] {
            let env = Env::new();
            let flags: &[&str] = if network {
                &["--network", "on"]
            } else {
                &["--network", "off"]
            };
            let abstract_name = format!("@execgate-own-{}-{backend}-{network}", std::process::id());
            let results = env.helper(
                backend,
                flags,
                &[
                    format!("serve={}", env.work.join("own.sock").display()),
                    "serve=rel.sock".to_owned(),
                    format!("serve={abstract_name}"),
                ],
            );
            assert_eq!(
                results,
                ["ok own:ping", "ok own:ping", "ok own:ping"],
                "{backend} network={network}"
            );
        }
    }
}

// ---- processes, capabilities, terminals ------------------------------------------------

/// Whether a process whose command line contains `needle` exists on the host.
fn host_process_with(needle: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().any(|entry| {
        let Ok(entry) = entry else { return false };
        std::fs::read(entry.path().join("cmdline"))
            .map(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(needle)
            })
            .unwrap_or(false)
    })
}

/// A script that leaves a `setsid` daemon `sleep MARKER` behind (a double fork: `sh` forks
/// it and exits) and then runs `rest`, and the daemon's command line `sleep MARKER`. The
/// script spells the marker in two parts, so only the daemon's own command line (and, until
/// it execs, that of the `sh` forked for it) contains it, not execgate's or the shell's.
fn daemon_script(tag: usize, rest: &str) -> (String, String) {
    let digits = format!("{}{tag}", std::process::id());
    let script =
        format!("d=1000.; setsid sh -c \"sleep ${{d}}{digits} & echo \\$! > daemon.pid\"; {rest}");
    (script, format!("sleep 1000.{digits}"))
}

#[test]
fn a_double_forked_setsid_daemon_is_gone_when_run_returns() {
    for backend in BACKENDS {
        let env = Env::new();
        let (script, daemon) =
            daemon_script(backend.len(), "kill -0 $(cat daemon.pid) && echo started");
        let (report, out) = env.run_json(backend, &[&script]);
        assert_eq!(out.status.code(), Some(0), "{backend}: {report}");
        assert_eq!(report["stdout"], "started\n", "{backend}: {report}");
        assert!(
            !host_process_with(&daemon),
            "{backend}: the daemon outlived the session"
        );
    }
}

#[test]
fn the_shell_dying_by_a_signal_is_reported_as_that_signal() {
    for backend in BACKENDS {
        let env = Env::new();
        let (report, out) = env.run_json(backend, &["kill -TERM $$"]);
        assert_eq!(report["signal"], 15, "{backend}: {report}");
        assert_eq!(report["exit_code"], Value::Null, "{backend}: {report}");
        assert_eq!(out.status.code(), Some(143), "{backend}");
    }
}

#[test]
fn no_capability_survives_into_the_sandbox() {
    for backend in BACKENDS {
        let env = Env::new();
        let results = env.helper(
            backend,
            &[],
            &[
                "libc=sethostname".to_owned(),
                "libc=mknod".to_owned(),
                "libc=bpf".to_owned(),
                "caps".to_owned(),
            ],
        );
        assert_eq!(results[..3], ["EPERM", "EPERM", "EPERM"], "{backend}");
        let caps = &results[3];
        for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
            assert!(
                caps.contains(&format!("{set}=0000000000000000")),
                "{backend}: {caps}"
            );
        }
        assert!(caps.ends_with("NoNewPrivs=1"), "{backend}: {caps}");
        if backend == "landlock" {
            assert!(caps.contains("CapBnd=0000000000000000"), "{caps}");
        }
    }
}

#[test]
fn the_sessions_dev_holds_only_the_allowed_devices() {
    for backend in BACKENDS {
        let env = Env::new();
        let (report, out) = env.run_json(
            backend,
            &["ls -A /dev | tr '\\n' ' '; echo; ls -A /dev/pts"],
        );
        assert_eq!(out.status.code(), Some(0), "{backend}: {report}");
        // bubblewrap also links core to /proc/kcore (which needs CAP_SYS_RAWIO).
        let core = if backend == "bubblewrap" { "core " } else { "" };
        assert_eq!(
            report["stdout"],
            format!(
                "{core}fd full null ptmx pts random shm stderr stdin stdout tty urandom zero \nptmx\n"
            ),
            "{backend}: {report}"
        );
    }
}

#[test]
fn dev_shm_is_writable_and_the_sessions_own() {
    for backend in BACKENDS {
        let env = Env::new();
        let name = format!("/dev/shm/execgate-test-{}-{backend}", std::process::id());
        let script = format!("echo shared > {name} && cat {name}");
        let (report, out) = env.run_json(backend, &[&script]);
        assert_eq!(out.status.code(), Some(0), "{backend}: {report}");
        assert_eq!(report["stdout"], "shared\n", "{backend}: {report}");
        assert!(
            !Path::new(&name).exists(),
            "{backend}: the host's /dev/shm got it"
        );
    }
}

#[test]
fn a_device_file_in_a_writable_root_cannot_be_opened() {
    // A host device file inside a writable root (a chroot's /dev, a copied disk node) must
    // not hand sandboxed code the device: every mount but the session's own /dev is nodev.
    for backend in BACKENDS {
        let env = Env::new();
        let node =
            std::ffi::CString::new(env.work.join("zero-copy").as_os_str().as_encoded_bytes())
                .unwrap();
        // SAFETY: mknod with a valid path; the test runs as root.
        let rc = unsafe { libc::mknod(node.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 5)) };
        assert_eq!(rc, 0, "mknod: {}", std::io::Error::last_os_error());
        let results = env.helper(
            backend,
            &[],
            &["read=zero-copy".to_owned(), "read=/dev/zero".to_owned()],
        );
        assert_eq!(results, ["EACCES", "ok 4"], "{backend}");
    }
}

#[test]
fn another_terminal_cannot_be_written_from_inside() {
    for backend in BACKENDS {
        let env = Env::new();
        let (mut master, mut slave) = (-1, -1);
        // SAFETY: openpty writes two fds; the name, termios and winsize are optional.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0);
        // SAFETY: both fds are fresh and ours.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let name = std::fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd())).unwrap();
        let results = env.helper(
            backend,
            &[],
            &[format!("write={}", name.display()), "openpty".to_owned()],
        );
        // A pty of the session's own works (bubblewrap's and, as root, the Landlock init's
        // own devpts instance).
        assert_eq!(results[1], "ok", "{backend}");
        let results = &results[..1];
        // bubblewrap's own devpts hides or refuses it; Landlock allows only the session's
        // own terminal.
        assert!(
            results == ["EACCES"] || results == ["ENOENT"],
            "{backend}: {results:?}"
        );
        // SAFETY: a non-blocking read on our own master.
        let mut buf = [0u8; 8];
        unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
        let n = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        assert_eq!(n, -1, "{backend}: the other terminal received output");
    }
}

// ---- execgate sandbox check ----------------------------------------------------------------

#[test]
fn sandbox_check_states_sockets_capabilities_reaping_and_terminal_per_backend() {
    let env = Env::new();
    let outside = tempfile::Builder::new()
        .prefix("execgate-check-sock-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let agent = outside.path().join("agent.sock");
    let _listener = UnixListener::bind(&agent).unwrap();
    let check = |backend: &str, network: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_execgate"));
        cmd.args(["sandbox", "check", "--allow-unix-socket"])
            .arg(&agent)
            .current_dir(&env.work)
            .env("EXECGATE_SANDBOX_BACKEND", backend);
        bins::with_helpers(&mut cmd);
        cmd.args(["--network", if network { "on" } else { "off" }]);
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{backend}: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines[lines.len() - 5..].to_vec()
    };
    let unix = |abstract_names: &str| {
        format!(
            "unix sockets: connect reaches only sockets bound inside the sandbox, decided by the \
             supervisor; no unix datagram sockets; {abstract_names}; host sockets allowed: {}",
            agent.display()
        )
    };
    let pid1 = "session reaping: the session's init is PID 1 of its own PID namespace (own \
                /proc); every process is killed when the shell ends or execgate exits";
    // Without a terminal (the test's stdin is not one) execgate says so; the line with a
    // terminal is the terminal area's test.
    let relay = "terminal relay: none here (no controlling terminal): the shell gets no \
                 terminal at all, and nobody can be asked; execgate, escalated commands and \
                 hooks never hold the user's terminal";
    assert_eq!(
        check("bubblewrap", false),
        [
            unix("abstract names are private to the sandbox's network namespace"),
            "capabilities: all dropped, no_new_privs".to_owned(),
            pid1.to_owned(),
            "devices: a fresh /dev (null, zero, full, random, urandom, tty, its own /dev/pts and \
             /dev/shm); every other mount is nodev"
                .to_owned(),
            relay.to_owned(),
        ]
    );
    // As root the Landlock backend's init makes its own namespaces too.
    assert_eq!(
        check("landlock", true),
        [
            unix("abstract names reach only the sandbox's own (Landlock scoping)"),
            "capabilities: all dropped (bounding and ambient sets included), no_new_privs"
                .to_owned(),
            pid1.to_owned(),
            "devices: a fresh /dev (null, zero, full, random, urandom, tty, its own /dev/pts and \
             /dev/shm); every other mount is nodev"
                .to_owned(),
            relay.to_owned(),
        ]
    );
}

// ---- /proc ----------------------------------------------------------------------------

/// Writes every file in `paths` with what it holds (so a failure of this test changes
/// nothing on the host), one `path: ok|ERRNO` line each.
const PROC_WRITES: &str = r#"
import errno, sys
for path in sys.argv[1:]:
    try:
        with open(path, "rb") as f:
            old = f.read()
        with open(path, "wb") as f:
            f.write(old)
        print(f"{path}: ok")
    except OSError as e:
        print(f"{path}: {errno.errorcode[e.errno]}")
"#;

#[test]
fn proc_is_read_only_so_root_without_capabilities_cannot_change_the_host_kernel() {
    // As root, bubblewrap's shell is uid 0 without capabilities: the files of /proc/sys
    // (kernel.core_pattern runs a program of the writer's choosing as root on the host,
    // outside every sandbox) are owned by root and mode 0644, so their owner could write
    // them. Before, bubblewrap left /proc/sys writable (it covers /proc/sys only where the
    // directory itself is writable) and both writes succeeded.
    let paths = [
        "/proc/sys/kernel/core_pattern",
        "/proc/sys/kernel/hostname",
        "/proc/self/oom_score_adj",
    ];
    for backend in BACKENDS {
        let env = Env::new();
        std::fs::write(env.work.join("proc_writes.py"), PROC_WRITES).unwrap();
        let (report, out) = env.run_json(
            backend,
            &[&format!("python3 proc_writes.py {}", paths.join(" "))],
        );
        assert_eq!(out.status.code(), Some(0), "{backend}: {report}");
        let errno = if backend == "bubblewrap" {
            "EROFS"
        } else {
            "EACCES"
        };
        let expected: String = paths.iter().map(|p| format!("{p}: {errno}\n")).collect();
        assert_eq!(report["stdout"], expected, "{backend}: {report}");
    }
}

#[test]
fn a_sandbox_inside_a_supervised_sandbox_refuses_to_start() {
    // The outer session's notify filter already has a listener: the inner init cannot
    // create one (EBUSY), and the inner execgate refuses instead of running unsupervised.
    let env = Env::new();
    let inner = format!(
        "EXECGATE_SANDBOX_BACKEND=landlock {} sandbox check --network off; echo \"status $?\"",
        env!("CARGO_BIN_EXE_execgate")
    );
    let (report, out) = env.run_json("bubblewrap", &["--network", "on", &inner]);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["stdout"], "status 2\n", "{report}");
    assert_eq!(
        report["stderr"],
        "execgate: the sandbox could not start: cannot create the seccomp listener: another \
         seccomp supervisor already watches this process (a nested sandbox?); pass --sandbox \
         danger-full-access to run without a sandbox\n",
        "{report}"
    );
}

#[test]
fn killing_execgate_ends_every_process_of_its_session() {
    // The server going away (SIGKILL: no cleanup of its own) is the init's signal to end
    // the session: bubblewrap's --die-with-parent and the Landlock init's PDEATHSIG, and
    // the control channel closing.
    for backend in BACKENDS {
        let env = Env::new();
        let (script, daemon) = daemon_script(backend.len() + 3, "echo up; sleep 1000");
        let mut cmd = env.command(backend, &[&script]);
        let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line, "up\n", "{backend}");
        // The shell waited for setsid's sh, which forked the daemon before it exited.
        assert!(host_process_with(&daemon), "{backend}: no daemon");
        child.kill().unwrap();
        child.wait().unwrap();
        // The kernel delivers the death signals and the init reaps at once; allow it a
        // few seconds on a loaded machine before calling it a leak.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while host_process_with(&daemon) {
            assert!(
                std::time::Instant::now() < deadline,
                "{backend}: the daemon outlived a killed execgate"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
