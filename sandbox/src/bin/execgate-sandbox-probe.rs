//! Test helper for `execgate-sandbox`: performs one operation per argument and prints
//! `OP: ok` or `OP: ERRNO` (for example `write=/x: EROFS`), so tests can assert exact
//! outcomes from inside the sandbox. Not meant for users.
//!
//! Operations: `write=PATH`, `mkdir=PATH`, `rename=FROM>TO`,
//! `socket=inet|inet6|unix|unix-seqpacket|unix-dgram|unix-raw|netlink` (unix is a stream),
//! `connect=IP:PORT`, `socketpair`, `ptrace`, `process_vm_readv`, `io_uring_setup`,
//! `tiocsti` (on stdin), `fd=N` (is fd N open), `write_fd=N:TEXT`, `caps` (prints CapPrm,
//! CapEff and NoNewPrivs), `remount` (remount `/` read-write), `kill=PID`
//! (signal 0), `prepare=CWD` (which backend `Auto` picks for a workspace-write sandbox),
//! `reap=CWD:SECONDS` (a session leaves a `setsid` daemon; is it gone afterwards),
//! `reap_terminate=CWD:SECONDS` (the same, with the session ended from outside).

use execgate_sandbox::{BackendChoice, Sandbox, SandboxMode, SandboxPolicy};
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{FromRawFd, RawFd};

fn main() {
    let mut out = io::stdout().lock();
    for op in std::env::args().skip(1) {
        let (name, arg) = op.split_once('=').unwrap_or((op.as_str(), ""));
        let result = match run(name, arg) {
            Ok(text) => text,
            Err(err) => match err.raw_os_error() {
                Some(code) => format!("{:?}", nix::errno::Errno::from_raw(code)),
                None => format!("error {err}"),
            },
        };
        let _ = writeln!(out, "{op}: {result}");
    }
}

fn ok() -> io::Result<String> {
    Ok("ok".to_owned())
}

fn check(rc: libc::c_long) -> io::Result<String> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        ok()
    }
}

fn run(name: &str, arg: &str) -> io::Result<String> {
    match name {
        "write" => std::fs::write(arg, b"probe\n").and_then(|_| ok()),
        "mkdir" => std::fs::create_dir(arg).and_then(|_| ok()),
        // `rename=FROM>TO`
        "rename" => match arg.split_once('>') {
            Some((from, to)) => std::fs::rename(from, to).and_then(|_| ok()),
            None => Err(io::Error::from(io::ErrorKind::InvalidInput)),
        },
        "socket" => {
            let (family, ty) = match arg {
                "inet" => (libc::AF_INET, libc::SOCK_DGRAM),
                "inet6" => (libc::AF_INET6, libc::SOCK_DGRAM),
                "unix" => (libc::AF_UNIX, libc::SOCK_STREAM),
                "unix-seqpacket" => (libc::AF_UNIX, libc::SOCK_SEQPACKET),
                "unix-dgram" => (libc::AF_UNIX, libc::SOCK_DGRAM),
                "unix-raw" => (libc::AF_UNIX, libc::SOCK_RAW),
                "netlink" => (libc::AF_NETLINK, libc::SOCK_DGRAM),
                other => return Ok(format!("unknown family {other}")),
            };
            // SAFETY: plain system calls on an fd we own.
            let fd = unsafe { libc::socket(family, ty | libc::SOCK_CLOEXEC, 0) };
            if fd >= 0 {
                unsafe { libc::close(fd) };
            }
            check(fd.into())
        }
        "connect" => {
            let addr: SocketAddr = arg
                .parse()
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            TcpStream::connect(addr).and_then(|_| ok())
        }
        "socketpair" => std::os::unix::net::UnixStream::pair().and_then(|_| ok()),
        // SAFETY: the ptrace/syscall/ioctl calls below pass valid pointers or none.
        "ptrace" => check(unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) }),
        "process_vm_readv" => {
            let mut buf = [0u8; 8];
            let src = [1u8; 8];
            let local = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            let remote = libc::iovec {
                iov_base: src.as_ptr() as *mut libc::c_void,
                iov_len: src.len(),
            };
            let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
            check(n as libc::c_long)
        }
        "io_uring_setup" => {
            let mut params = [0u8; 120];
            let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
            if fd >= 0 {
                unsafe { libc::close(fd as RawFd) };
            }
            check(fd)
        }
        "tiocsti" => {
            let byte: u8 = b'\n';
            check(unsafe { libc::ioctl(0, libc::TIOCSTI, &byte) }.into())
        }
        "fd" => {
            let fd: RawFd = arg.parse().unwrap_or(-1);
            check(unsafe { libc::fcntl(fd, libc::F_GETFD) }.into())
        }
        "write_fd" => {
            let (fd, text) = arg.split_once(':').unwrap_or((arg, ""));
            let fd: RawFd = fd.parse().unwrap_or(-1);
            // SAFETY: the fd is borrowed for one write and never closed here.
            let file = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
            (&*file).write_all(text.as_bytes()).and_then(|_| ok())
        }
        "caps" => {
            let status = std::fs::read_to_string("/proc/self/status")?;
            let field = |key: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .map(str::trim)
                    .unwrap_or("?")
                    .to_owned()
            };
            Ok(format!(
                "CapPrm={} CapEff={} NoNewPrivs={}",
                field("CapPrm:"),
                field("CapEff:"),
                field("NoNewPrivs:")
            ))
        }
        "kill" => {
            let pid: libc::pid_t = arg.parse().unwrap_or(0);
            check(unsafe { libc::kill(pid, 0) }.into())
        }
        "prepare" => {
            // Prepares a workspace-write sandbox for cwd ARG with BackendChoice::Auto.
            let mut policy = workspace_policy(arg);
            policy.tmpdir = None;
            match Sandbox::prepare(&policy, BackendChoice::Auto) {
                Ok(sandbox) => Ok(sandbox.backend().to_string()),
                Err(err) => Ok(format!("refused: {err}")),
            }
        }
        "reap" | "reap_terminate" => {
            // Prepares a workspace-write sandbox for cwd ARG (`CWD:SECONDS`), runs a shell
            // that leaves a double-forked `sleep SECONDS` daemon, and checks it is gone once
            // the session reported its end.
            let (cwd, seconds) = arg.rsplit_once(':').unwrap_or((arg, "1000"));
            let mut policy = workspace_policy(cwd);
            policy.tmpdir = None;
            let sandbox = match Sandbox::prepare(&policy, BackendChoice::Auto) {
                Ok(sandbox) => sandbox,
                Err(err) => return Ok(format!("refused: {err}")),
            };
            let mode = if sandbox.describe().contains("child subreaper") {
                "subreaper"
            } else {
                "pid-namespace"
            };
            // With `terminate`: the shell keeps running, and the session is ended from
            // outside (Supervisor::terminate) once the daemon is up.
            let terminate = name == "reap_terminate";
            let script = if terminate {
                format!("setsid sh -c 'sleep {seconds} &'; echo started; sleep {seconds}")
            } else {
                format!("setsid sh -c 'sleep {seconds} &'; sleep 0.2")
            };
            let args = ["-c".into(), script.into()];
            let launch = sandbox
                .command(std::path::Path::new("/bin/sh"), &args)
                .map_err(io::Error::other)?;
            let mut cmd = launch.command;
            let mut child = cmd
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .spawn()?;
            let mut supervisor = launch
                .supervisor
                .ok_or_else(|| io::Error::other("no supervisor"))?;
            supervisor.start()?;
            if terminate {
                use std::io::BufRead;
                let stdout = child
                    .stdout
                    .take()
                    .ok_or_else(|| io::Error::other("no stdout"))?;
                let mut line = String::new();
                io::BufReader::new(stdout).read_line(&mut line)?;
                supervisor.terminate();
            }
            child.wait()?;
            supervisor.wait_done(std::time::Duration::from_secs(10));
            let needle = format!("sleep {seconds}");
            let alive = std::fs::read_dir("/proc")?.flatten().any(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .map(|c| {
                        String::from_utf8_lossy(&c)
                            .replace('\0', " ")
                            .contains(&needle)
                    })
                    .unwrap_or(false)
            });
            let verdict = if alive { "daemon survived" } else { "ok" };
            Ok(format!("{} {mode}: {verdict}", sandbox.backend()))
        }
        "remount" => {
            let rc = unsafe {
                libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REMOUNT | libc::MS_BIND,
                    std::ptr::null(),
                )
            };
            check(rc.into())
        }
        other => Ok(format!("unknown operation {other}")),
    }
}

/// A workspace-write policy for `cwd` with the init `EXECGATE_INIT` names (the tests' own
/// build of it), else the default.
fn workspace_policy(cwd: &str) -> SandboxPolicy {
    let mut policy = SandboxPolicy::new(SandboxMode::WorkspaceWrite, cwd);
    if let Some(init) = std::env::var_os("EXECGATE_INIT") {
        policy.init = init.into();
    }
    policy
}
