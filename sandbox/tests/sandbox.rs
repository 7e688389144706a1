//! The sandbox, exercised with real processes: each test starts the probe helper inside a
//! real bubblewrap or Landlock sandbox and asserts the exact errno of each operation.
//!
//! Fixtures live under `CARGO_TARGET_TMPDIR`, not `/tmp`, so "outside the workspace" is
//! really outside every writable root.

use execgate_sandbox::{
    pass_fd, Backend, BackendChoice, Sandbox, SandboxError, SandboxMode, SandboxPolicy,
};
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const PROBE: &str = env!("CARGO_BIN_EXE_execgate-sandbox-probe");
const INIT: &str = env!("CARGO_BIN_EXE_execgate-sandbox-init");

/// A workspace and a sibling directory outside every writable root.
struct Fixture {
    _dir: tempfile::TempDir,
    ws: PathBuf,
    outside: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        // Outside /tmp and the temporary directory: with the checkout under /tmp (a
        // writable root in some tests), the checkout's .git above the workspace would be
        // a protected path inside it, which Landlock refuses.
        let target = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let temp = std::env::temp_dir();
        let under_temp = target.starts_with("/tmp") || target.starts_with(&temp);
        let base = if under_temp {
            Path::new("/var/tmp")
        } else {
            target
        };
        let dir = tempfile::Builder::new()
            .prefix("sandbox-test-")
            .tempdir_in(base)
            .unwrap();
        let ws = dir.path().join("ws");
        let outside = dir.path().join("outside");
        fs::create_dir(&ws).unwrap();
        fs::create_dir(&outside).unwrap();
        Fixture {
            _dir: dir,
            ws: ws.canonicalize().unwrap(),
            outside: outside.canonicalize().unwrap(),
        }
    }

    fn policy(&self, mode: SandboxMode) -> SandboxPolicy {
        let mut policy = SandboxPolicy::new(mode, &self.ws);
        policy.tmpdir = None;
        policy.init = INIT.into();
        policy
    }
}

/// The errno a denied write reports: a read-only bind mount says EROFS, Landlock EACCES.
fn denied(backend: BackendChoice) -> &'static str {
    match backend {
        BackendChoice::Landlock => "EACCES",
        _ => "EROFS",
    }
}

fn prepare(policy: &SandboxPolicy, backend: BackendChoice) -> Sandbox {
    Sandbox::prepare(policy, backend).unwrap_or_else(|e| panic!("prepare failed: {e}"))
}

/// Runs the probe in the sandbox and returns one result per operation, in order.
fn probe_with(sandbox: &Sandbox, ops: &[String], setup: impl FnOnce(&mut Command)) -> Vec<String> {
    let args: Vec<OsString> = ops.iter().map(OsString::from).collect();
    let launch = sandbox.command(Path::new(PROBE), &args).unwrap();
    let mut cmd = launch.command;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    setup(&mut cmd);
    let child = cmd.spawn().unwrap();
    let mut supervisor = launch.supervisor;
    if let Some(s) = &mut supervisor {
        s.start().unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "probe failed: {:?}", out.status);
    let text = String::from_utf8(out.stdout).unwrap();
    let results: Vec<String> = ops
        .iter()
        .zip(text.lines())
        .map(|(op, line)| {
            line.strip_prefix(&format!("{op}: "))
                .unwrap_or_else(|| panic!("unexpected probe line {line:?} for {op}"))
                .to_owned()
        })
        .collect();
    assert_eq!(results.len(), ops.len(), "probe output: {text}");
    results
}

fn probe(sandbox: &Sandbox, ops: &[String]) -> Vec<String> {
    probe_with(sandbox, ops, |_| {})
}

fn op(name: &str, arg: impl AsRef<Path>) -> String {
    format!("{name}={}", arg.as_ref().display())
}

/// Defines `mod $name { fn bubblewrap(); fn landlock(); }` running the same body.
macro_rules! both_backends {
    ($name:ident, |$backend:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn check($backend: BackendChoice) $body
            #[test]
            fn bubblewrap() {
                check(BackendChoice::Bubblewrap)
            }
            #[test]
            fn landlock() {
                check(BackendChoice::Landlock)
            }
        }
    };
}

both_backends!(workspace_write_allows_cwd_and_denies_outside, |backend| {
    let fx = Fixture::new();
    let sb = prepare(&fx.policy(SandboxMode::WorkspaceWrite), backend);
    let results = probe(
        &sb,
        &[
            op("write", fx.ws.join("new.txt")),
            op("mkdir", fx.ws.join("sub")),
            op("write", fx.outside.join("x.txt")),
            op("mkdir", fx.outside.join("sub")),
        ],
    );
    assert_eq!(results, ["ok", "ok", denied(backend), denied(backend)]);
    assert_eq!(fs::read(fx.ws.join("new.txt")).unwrap(), b"probe\n");
    assert!(!fx.outside.join("x.txt").exists());
});

both_backends!(extra_writable_root_is_writable, |backend| {
    let fx = Fixture::new();
    let mut policy = fx.policy(SandboxMode::WorkspaceWrite);
    policy.writable_roots.push(fx.outside.clone());
    let sb = prepare(&policy, backend);
    assert_eq!(probe(&sb, &[op("write", fx.outside.join("x"))]), ["ok"]);
});

both_backends!(
    tmp_is_writable_in_workspace_write_but_not_read_only,
    |backend| {
        let fx = Fixture::new();
        let name = format!("execgate-sandbox-test-{}-{:?}", std::process::id(), backend);
        let file = Path::new("/tmp").join(name);
        let mut policy = fx.policy(SandboxMode::WorkspaceWrite);
        policy.tmpdir = Some(PathBuf::from("/tmp"));
        let sb = prepare(&policy, backend);
        assert_eq!(probe(&sb, &[op("write", &file)]), ["ok"]);
        fs::remove_file(&file).unwrap();

        policy.mode = SandboxMode::ReadOnly;
        let sb = prepare(&policy, backend);
        assert_eq!(probe(&sb, &[op("write", &file)]), [denied(backend)]);
        assert!(!file.exists());
    }
);

both_backends!(read_only_allows_only_null_like_devices, |backend| {
    let fx = Fixture::new();
    let sb = prepare(&fx.policy(SandboxMode::ReadOnly), backend);
    assert!(sb.writable_roots().is_empty());
    let results = probe(
        &sb,
        &[
            "write=/dev/null".to_owned(),
            "write=/dev/zero".to_owned(),
            op("write", fx.ws.join("x")),
        ],
    );
    assert_eq!(results, ["ok", "ok", denied(backend)]);
});

/// A workspace with git metadata, execgate rules and a Codex dir.
fn protected_workspace(fx: &Fixture) {
    fs::create_dir_all(fx.ws.join(".git/hooks")).unwrap();
    fs::write(fx.ws.join(".git/config"), "[core]\n").unwrap();
    fs::create_dir_all(fx.ws.join(".execgate/rules")).unwrap();
    fs::create_dir_all(fx.ws.join(".codex")).unwrap();
}

#[test]
fn bubblewrap_keeps_git_execgate_and_codex_read_only_inside_workspace() {
    let fx = Fixture::new();
    protected_workspace(&fx);
    let sb = prepare(
        &fx.policy(SandboxMode::WorkspaceWrite),
        BackendChoice::Bubblewrap,
    );
    let results = probe(
        &sb,
        &[
            op("write", fx.ws.join(".git/hooks/pre-commit")),
            op("write", fx.ws.join(".git/config")),
            op("write", fx.ws.join(".execgate/rules/x.rules")),
            op("write", fx.ws.join(".codex/config.toml")),
            op("write", fx.ws.join("src.txt")),
        ],
    );
    assert_eq!(results, ["EROFS", "EROFS", "EROFS", "EROFS", "ok"]);
    assert!(!sb.is_sandbox_writable(&fx.ws.join(".git/hooks/pre-commit")));
    assert!(sb.is_sandbox_writable(&fx.ws.join("src.txt")));
    assert!(!sb.is_sandbox_writable(&fx.outside.join("x")));
    assert!(!fx.ws.join(".git/hooks/pre-commit").exists());
    assert_eq!(
        fs::read_to_string(fx.ws.join(".git/config")).unwrap(),
        "[core]\n"
    );
    assert!(!fx.ws.join(".execgate/rules/x.rules").exists());
    assert!(!fx.ws.join(".codex/config.toml").exists());
}

#[test]
fn bubblewrap_keeps_loaded_rules_file_in_another_writable_root_read_only() {
    let fx = Fixture::new();
    let rules = fx.outside.join("team.rules");
    fs::write(&rules, "# rules\n").unwrap();
    let mut policy = fx.policy(SandboxMode::WorkspaceWrite);
    policy.writable_roots.push(fx.outside.clone());
    policy.protected_paths.push(rules.clone());
    let sb = prepare(&policy, BackendChoice::Bubblewrap);
    assert_eq!(sb.protected_paths(), std::slice::from_ref(&rules));
    let results = probe(
        &sb,
        &[op("write", &rules), op("write", fx.outside.join("other"))],
    );
    assert_eq!(results, ["EROFS", "ok"]);
    assert_eq!(fs::read_to_string(&rules).unwrap(), "# rules\n");
}

both_backends!(
    loaded_rules_file_outside_writable_roots_is_read_only,
    |backend| {
        let fx = Fixture::new();
        let rules = fx.outside.join("user.rules");
        fs::write(&rules, "# rules\n").unwrap();
        let mut policy = fx.policy(SandboxMode::WorkspaceWrite);
        policy.protected_paths.push(rules.clone());
        let sb = prepare(&policy, backend);
        assert_eq!(probe(&sb, &[op("write", &rules)]), [denied(backend)]);
        assert_eq!(fs::read_to_string(&rules).unwrap(), "# rules\n");
    }
);

#[test]
fn bubblewrap_keeps_gitdir_named_by_dot_git_file_read_only() {
    // A worktree: ws/.git is a file naming a git dir in another writable root, whose
    // `commondir` names the main repository's .git (where hooks live).
    let fx = Fixture::new();
    let main_git = fx.outside.join("main/.git");
    let gitdir = main_git.join("worktrees/ws");
    fs::create_dir_all(main_git.join("hooks")).unwrap();
    fs::create_dir_all(&gitdir).unwrap();
    fs::write(gitdir.join("commondir"), "../..\n").unwrap();
    fs::write(gitdir.join("HEAD"), "ref: refs/heads/main\n").unwrap();
    fs::write(
        fx.ws.join(".git"),
        format!("gitdir: {}\n", gitdir.display()),
    )
    .unwrap();
    let mut policy = fx.policy(SandboxMode::WorkspaceWrite);
    policy.writable_roots.push(fx.outside.clone());
    let sb = prepare(&policy, BackendChoice::Bubblewrap);
    let results = probe(
        &sb,
        &[
            op("write", fx.ws.join(".git")),
            op("write", gitdir.join("HEAD")),
            op("write", main_git.join("hooks/pre-commit")),
            op("write", fx.outside.join("main/README")),
        ],
    );
    assert_eq!(results, ["EROFS", "EROFS", "EROFS", "ok"]);
    assert!(!main_git.join("hooks/pre-commit").exists());
}

#[test]
fn landlock_refuses_when_a_writable_root_contains_a_protected_path() {
    let fx = Fixture::new();
    protected_workspace(&fx);
    let err = Sandbox::prepare(
        &fx.policy(SandboxMode::WorkspaceWrite),
        BackendChoice::Landlock,
    )
    .unwrap_err();
    match &err {
        SandboxError::LandlockUnprotected { protected, root } => {
            assert_eq!(protected, &fx.ws.join(".codex"));
            assert_eq!(root, &fx.ws);
        }
        other => panic!("unexpected error: {other}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "Landlock cannot keep {}/.codex read-only inside the writable root {}: use the \
             bubblewrap backend (which can), or pass --allow-unprotected-landlock to accept that it \
             stays writable",
            fx.ws.display(),
            fx.ws.display()
        )
    );
}

#[test]
fn landlock_with_accepted_risk_starts_and_says_what_is_unprotected() {
    let fx = Fixture::new();
    protected_workspace(&fx);
    let mut policy = fx.policy(SandboxMode::WorkspaceWrite);
    policy.allow_unprotected_landlock = true;
    let sb = prepare(&policy, BackendChoice::Landlock);
    let describe = sb.describe();
    assert!(
        describe.contains(&format!("NOT protected (Landlock cannot, accepted with --allow-unprotected-landlock): {}/.codex", fx.ws.display())),
        "{describe}"
    );
    assert!(sb.is_sandbox_writable(&fx.ws.join(".git/hooks/pre-commit")));
}

both_backends!(
    network_off_denies_ip_sockets_but_keeps_unix_sockets,
    |backend| {
        let fx = Fixture::new();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let sb = prepare(&fx.policy(SandboxMode::WorkspaceWrite), backend);
        let results = probe(
            &sb,
            &[
                "socket=inet".to_owned(),
                "socket=inet6".to_owned(),
                "socket=netlink".to_owned(),
                format!("connect={addr}"),
                "socket=unix".to_owned(),
                "socketpair".to_owned(),
            ],
        );
        assert_eq!(
            results,
            [
                "EAFNOSUPPORT",
                "EAFNOSUPPORT",
                "EAFNOSUPPORT",
                "EAFNOSUPPORT",
                "ok",
                "ok"
            ]
        );
        assert_eq!(
            listener.accept().unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock
        );
    }
);

both_backends!(unix_sockets_are_streams_or_seqpackets_only, |backend| {
    for network in [false, true] {
        let fx = Fixture::new();
        let mut policy = fx.policy(SandboxMode::WorkspaceWrite);
        policy.network = network;
        let sb = prepare(&policy, backend);
        let results = probe(
            &sb,
            &[
                "socket=unix".to_owned(),
                "socket=unix-seqpacket".to_owned(),
                "socket=unix-dgram".to_owned(),
                "socket=unix-raw".to_owned(),
            ],
        );
        assert_eq!(results, ["ok", "ok", "EPERM", "EPERM"], "network={network}");
    }
});

both_backends!(network_on_allows_ip_sockets, |backend| {
    let fx = Fixture::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut policy = fx.policy(SandboxMode::WorkspaceWrite);
    policy.network = true;
    let sb = prepare(&policy, backend);
    let results = probe(&sb, &["socket=inet".to_owned(), format!("connect={addr}")]);
    assert_eq!(results, ["ok", "ok"]);
    listener.accept().unwrap();
});

both_backends!(inherited_socket_fd_survives_into_the_sandbox, |backend| {
    let fx = Fixture::new();
    let sb = prepare(&fx.policy(SandboxMode::WorkspaceWrite), backend);
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    let fd = theirs.as_raw_fd();
    let results = probe_with(
        &sb,
        &[format!("fd={fd}"), format!("write_fd={fd}:hello")],
        |cmd| {
            cmd.env("EXECGATE_SOCKET", fd.to_string());
            pass_fd(cmd, fd);
        },
    );
    assert_eq!(results, ["ok", "ok"]);
    drop(theirs);
    let mut got = String::new();
    ours.read_to_string(&mut got).unwrap();
    assert_eq!(got, "hello");
});

both_backends!(fds_not_passed_stay_closed, |backend| {
    let fx = Fixture::new();
    let sb = prepare(&fx.policy(SandboxMode::WorkspaceWrite), backend);
    let (_ours, theirs) = UnixStream::pair().unwrap();
    let fd = theirs.as_raw_fd();
    assert_eq!(probe(&sb, &[format!("fd={fd}")]), ["EBADF"]);
});

#[test]
fn probe_control_outside_sandbox() {
    // Without a sandbox the same calls succeed (or fail for unrelated reasons), so the
    // EPERMs below come from the filter.
    let out = Command::new(PROBE)
        .args(["tiocsti", "process_vm_readv", "ptrace"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "tiocsti: ENOTTY\nprocess_vm_readv: ok\nptrace: ok\n"
    );
}

both_backends!(
    seccomp_denies_ptrace_process_vm_io_uring_and_tiocsti,
    |backend| {
        let fx = Fixture::new();
        let mut policy = fx.policy(SandboxMode::WorkspaceWrite);
        policy.network = true; // the base filter applies with network too
        let sb = prepare(&policy, backend);
        let results = probe(
            &sb,
            &[
                "ptrace".to_owned(),
                "process_vm_readv".to_owned(),
                "io_uring_setup".to_owned(),
                "tiocsti".to_owned(),
            ],
        );
        assert_eq!(results, ["EPERM", "EPERM", "EPERM", "EPERM"]);
    }
);

both_backends!(sandbox_cannot_signal_processes_outside, |backend| {
    let fx = Fixture::new();
    let sb = prepare(&fx.policy(SandboxMode::WorkspaceWrite), backend);
    let mut outside = Command::new("sleep").arg("60").spawn().unwrap();
    let results = probe(&sb, &[format!("kill={}", outside.id())]);
    outside.kill().unwrap();
    outside.wait().unwrap();
    // SAFETY: geteuid has no arguments.
    let root = unsafe { libc::geteuid() } == 0;
    let expected = match backend {
        // Another PID namespace (bubblewrap always; the Landlock backend's init makes one
        // as root): the host process does not exist in there.
        BackendChoice::Bubblewrap => "ESRCH",
        _ if root => "ESRCH",
        // Landlock ABI 6 signal scoping.
        _ => "EPERM",
    };
    assert_eq!(results, [expected]);
});

#[test]
fn bubblewrap_drops_every_capability_for_good() {
    // As root bwrap needs no user namespace and keeps the bounding set, but it drops every
    // capability and sets no_new_privs, so no exec (setuid or not) can regain one.
    let fx = Fixture::new();
    let sb = prepare(
        &fx.policy(SandboxMode::WorkspaceWrite),
        BackendChoice::Bubblewrap,
    );
    let results = probe(&sb, &["caps".to_owned(), "remount".to_owned()]);
    assert_eq!(
        results,
        [
            "CapPrm=0000000000000000 CapEff=0000000000000000 NoNewPrivs=1",
            "EPERM"
        ]
    );
}

#[test]
fn bubblewrap_describe_names_backend_and_protections() {
    let fx = Fixture::new();
    protected_workspace(&fx);
    let sb = prepare(
        &fx.policy(SandboxMode::WorkspaceWrite),
        BackendChoice::Bubblewrap,
    );
    assert_eq!(sb.backend(), Backend::Bubblewrap);
    let text = sb.describe();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("backend: bubblewrap ("), "{text}");
    assert_eq!(lines[1], "mode: workspace-write");
    assert_eq!(lines[3], format!("writable: {}", fx.ws.display()));
    assert_eq!(
        lines[4],
        format!(
            "read-only inside writable roots: {ws}/.codex, {ws}/.execgate, {ws}/.git",
            ws = fx.ws.display()
        )
    );
}

#[test]
fn danger_full_access_runs_without_a_sandbox() {
    let fx = Fixture::new();
    let mut policy = fx.policy(SandboxMode::DangerFullAccess);
    policy
        .writable_roots
        .push(PathBuf::from("/nonexistent-is-ignored"));
    let sb = prepare(&policy, BackendChoice::Bubblewrap);
    assert_eq!(sb.backend(), Backend::None);
    let results = probe(
        &sb,
        &[op("write", fx.outside.join("x")), "socket=inet".to_owned()],
    );
    assert_eq!(results, ["ok", "ok"]);
    assert!(sb.is_sandbox_writable(Path::new("/etc/passwd")));
}

both_backends!(missing_writable_root_is_refused, |backend| {
    let fx = Fixture::new();
    let mut policy = fx.policy(SandboxMode::WorkspaceWrite);
    let missing = fx.outside.join("missing");
    policy.writable_roots.push(missing.clone());
    let err = Sandbox::prepare(&policy, backend).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "writable root {}: No such file or directory (os error 2): create it or leave it \
             out of --writable-root",
            missing.display()
        )
    );
});

#[test]
fn backend_names_parse_and_unknown_names_are_refused() {
    assert_eq!(
        BackendChoice::parse("bubblewrap").unwrap(),
        BackendChoice::Bubblewrap
    );
    assert_eq!(
        BackendChoice::parse("landlock").unwrap(),
        BackendChoice::Landlock
    );
    assert_eq!(
        BackendChoice::parse("seatbelt").unwrap_err().to_string(),
        "invalid sandbox backend \"seatbelt\" (from EXECGATE_SANDBOX_BACKEND): expected \
         bubblewrap or landlock"
    );
    assert_eq!(
        "workspace-write".parse::<SandboxMode>().unwrap(),
        SandboxMode::WorkspaceWrite
    );
    assert!("none".parse::<SandboxMode>().is_err());
}

/// Runs the probe under bwrap in a user namespace that forbids creating more user
/// namespaces, i.e. on a machine where bubblewrap cannot work.
fn probe_without_user_namespaces(ops: &[String], env: &[(&str, &str)]) -> Vec<String> {
    let mut cmd = Command::new("bwrap");
    // Without capabilities the inner bwrap needs a user namespace of its own, as it does
    // for an ordinary user.
    cmd.args([
        "--unshare-user",
        "--disable-userns",
        "--unshare-pid",
        "--cap-drop",
        "ALL",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--",
        PROBE,
    ])
    .args(ops)
    .env_remove(BackendChoice::ENV_VAR)
    .env("EXECGATE_INIT", INIT)
    .envs(env.iter().copied())
    .stdin(Stdio::null());
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    ops.iter()
        .zip(text.lines())
        .map(|(op, line)| line.strip_prefix(&format!("{op}: ")).unwrap().to_owned())
        .collect()
}

const NO_USERNS: &str = "bubblewrap cannot start the sandbox (bwrap: Creating new namespace \
     failed: Operation not permitted): allow user namespaces (kernel.unprivileged_userns_clone, \
     AppArmor's restrict_unprivileged_userns), or pass --sandbox danger-full-access";

#[test]
fn auto_falls_back_to_landlock_when_bubblewrap_cannot_create_namespaces() {
    let fx = Fixture::new();
    let results = probe_without_user_namespaces(&[op("prepare", &fx.ws)], &[]);
    assert_eq!(results, ["landlock"]);
}

#[test]
fn forced_bubblewrap_refuses_when_it_cannot_create_namespaces() {
    let fx = Fixture::new();
    let results = probe_without_user_namespaces(
        &[op("prepare", &fx.ws)],
        &[(BackendChoice::ENV_VAR, "bubblewrap")],
    );
    assert_eq!(results, [format!("refused: {NO_USERNS}")]);
}

#[test]
fn auto_refuses_when_neither_backend_can_keep_the_policy() {
    let fx = Fixture::new();
    protected_workspace(&fx);
    let results = probe_without_user_namespaces(&[op("prepare", &fx.ws)], &[]);
    assert_eq!(
        results,
        [format!(
            "refused: no sandbox backend works on this machine: {NO_USERNS}; Landlock cannot \
             keep {ws}/.codex read-only inside the writable root {ws}: use the bubblewrap \
             backend (which can), or pass --allow-unprotected-landlock to accept that it stays \
             writable",
            ws = fx.ws.display()
        )]
    );
}

/// The last four lines of `describe()`: unix sockets, capabilities, reaping, devices (the
/// terminal relay line is the `execgate` program's).
fn describe_tail(sb: &Sandbox) -> Vec<String> {
    let text = sb.describe();
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[lines.len() - 4..].to_vec()
}

#[test]
fn describe_states_unix_sockets_capabilities_reaping_devices_and_terminal() {
    let fx = Fixture::new();
    let sb = prepare(
        &fx.policy(SandboxMode::WorkspaceWrite),
        BackendChoice::Bubblewrap,
    );
    assert_eq!(
        describe_tail(&sb),
        [
            "unix sockets: connect reaches only sockets bound inside the sandbox, decided by the supervisor; no unix datagram sockets; abstract names are private to the sandbox's network namespace",
            "capabilities: all dropped, no_new_privs",
            "session reaping: the session's init is PID 1 of its own PID namespace (own /proc); every process is killed when the shell ends or execgate exits",
            "devices: a fresh /dev (null, zero, full, random, urandom, tty, its own /dev/pts and /dev/shm); every other mount is nodev",
        ]
    );
    let host = fx.outside.join("agent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&host).unwrap();
    let mut policy = fx.policy(SandboxMode::WorkspaceWrite);
    policy.network = true;
    policy.allow_unix_sockets.push(host.clone());
    let sb = prepare(&policy, BackendChoice::Landlock);
    let tail = describe_tail(&sb);
    assert_eq!(
        tail[0],
        format!(
            "unix sockets: connect reaches only sockets bound inside the sandbox, decided by the supervisor; no unix datagram sockets; abstract names reach only the sandbox's own (Landlock scoping); host sockets allowed: {}",
            host.display()
        )
    );
    assert_eq!(
        tail[1],
        "capabilities: all dropped (bounding and ambient sets included), no_new_privs"
    );
    assert_eq!(
        tail[3],
        "devices: a fresh /dev (null, zero, full, random, urandom, tty, its own /dev/pts and /dev/shm); every other mount is nodev"
    );
}

#[test]
fn a_missing_allowed_unix_socket_is_refused_at_prepare() {
    let fx = Fixture::new();
    let mut policy = fx.policy(SandboxMode::WorkspaceWrite);
    let missing = fx.outside.join("gone.sock");
    policy.allow_unix_sockets.push(missing.clone());
    let err = Sandbox::prepare(&policy, BackendChoice::Bubblewrap).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "--allow-unix-socket {}: No such file or directory (os error 2): start the service that listens there first, or leave the flag out",
            missing.display()
        )
    );
}

#[test]
fn landlock_subreaper_reaps_a_setsid_daemon_without_namespaces() {
    // Inside a user namespace without capabilities, the Landlock backend cannot make
    // namespaces: its init is a child subreaper, and still ends a double-forked daemon.
    let fx = Fixture::new();
    // Once when the shell ends with the daemon still running, once when the session is
    // ended from outside (Supervisor::terminate) while the shell still runs.
    let id = std::process::id();
    let results = probe_without_user_namespaces(
        &[
            format!("reap={}:1000.{id}7", fx.ws.display()),
            format!("reap_terminate={}:1000.{id}8", fx.ws.display()),
        ],
        &[(BackendChoice::ENV_VAR, "landlock")],
    );
    assert_eq!(
        results,
        ["landlock subreaper: ok", "landlock subreaper: ok"]
    );
}

/// Answers every trapped call with `EHOSTDOWN` after checking its first argument.
struct DenyKill {
    seen: std::sync::Mutex<Vec<(i64, u64)>>,
}

impl execgate_sandbox::Handler for DenyKill {
    fn handle(&self, n: execgate_sandbox::Notification) {
        assert!(n.is_valid());
        self.seen.lock().unwrap().push((n.nr, n.args[1]));
        n.respond(execgate_sandbox::Response::Errno(libc::EHOSTDOWN));
    }
}

both_backends!(extra_handlers_decide_the_calls_they_trap, |backend| {
    // The seam issue 12 will route execve through: any call can be trapped and decided.
    let fx = Fixture::new();
    let sb = prepare(&fx.policy(SandboxMode::WorkspaceWrite), backend);
    let handler = std::sync::Arc::new(DenyKill {
        seen: std::sync::Mutex::new(Vec::new()),
    });
    let mut extra = execgate_sandbox::Handlers::default();
    extra.add(
        execgate_sandbox::Notified {
            nr: libc::SYS_kill,
            arg0: None,
        },
        handler.clone(),
    );
    let args: Vec<OsString> = vec!["kill=1".into(), "socketpair".into()];
    let launch = sb.command_with(Path::new(PROBE), &args, extra).unwrap();
    let mut cmd = launch.command;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut supervisor = launch.supervisor.unwrap();
    supervisor.start().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "kill=1: EHOSTDOWN\nsocketpair: ok\n"
    );
    assert_eq!(*handler.seen.lock().unwrap(), [(libc::SYS_kill, 0)]);
});

#[test]
fn the_init_hands_out_sockets_of_the_sandboxs_network_namespace() {
    // What a network proxy needs: a listening socket inside the sandbox's own namespace.
    let fx = Fixture::new();
    let sb = prepare(
        &fx.policy(SandboxMode::WorkspaceWrite),
        BackendChoice::Bubblewrap,
    );
    let args: Vec<OsString> = vec!["-c".into(), "sleep 5".into()];
    let launch = sb.command(Path::new("/bin/sh"), &args).unwrap();
    let mut cmd = launch.command;
    let mut child = cmd.stdin(Stdio::null()).spawn().unwrap();
    let mut supervisor = launch.supervisor.unwrap();
    supervisor.start().unwrap();
    let inside = supervisor
        .open_socket(
            libc::AF_INET,
            libc::SOCK_STREAM,
            0,
            std::time::Duration::from_secs(5),
        )
        .unwrap();
    let ours = TcpListener::bind("127.0.0.1:0").unwrap();
    let cookie = |fd: i32| {
        let mut value = 0u64;
        let mut len = 8u32;
        // SAFETY: getsockopt writes at most 8 bytes (SO_NETNS_COOKIE = 71).
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                71,
                (&mut value as *mut u64).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        value
    };
    assert_ne!(cookie(inside.as_raw_fd()), cookie(ours.as_raw_fd()));
    supervisor.terminate();
    child.wait().unwrap();
    assert_eq!(
        supervisor.wait_done(std::time::Duration::from_secs(5)),
        Some(execgate_sandbox::ShellStatus::Signal(libc::SIGKILL))
    );
}

// ---- protected paths beyond the top of each root (issue 12) ------------------------------

fn git_init(dir: &Path) {
    let status = Command::new("git")
        .args(["init", "-q"])
        .arg(dir)
        .env("HOME", dir)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn bubblewrap_keeps_nested_repositories_and_agent_folders_read_only_and_in_place() {
    let fx = Fixture::new();
    git_init(&fx.ws.join("vendor/lib"));
    fs::create_dir_all(fx.ws.join("a/b/.claude")).unwrap();
    fs::create_dir_all(fx.ws.join("tools/.agents")).unwrap();
    fs::create_dir_all(fx.ws.join("deep/.execgate/rules")).unwrap();
    let sb = prepare(
        &fx.policy(SandboxMode::WorkspaceWrite),
        BackendChoice::Bubblewrap,
    );
    assert_eq!(
        sb.protected_paths(),
        [
            fx.ws.join("deep/.execgate"),
            fx.ws.join("tools/.agents"),
            fx.ws.join("a/b/.claude"),
            fx.ws.join("vendor/lib/.git"),
        ]
    );
    let results = probe(
        &sb,
        &[
            op("write", fx.ws.join("vendor/lib/.git/hooks/pre-commit")),
            op("write", fx.ws.join("a/b/.claude/settings.json")),
            op("write", fx.ws.join("tools/.agents/x.md")),
            op("write", fx.ws.join("deep/.execgate/rules/x.rules")),
            // The folders above them cannot be renamed away and re-created.
            format!(
                "rename={}>{}",
                fx.ws.join("vendor").display(),
                fx.ws.join("v2").display()
            ),
            format!(
                "rename={}>{}",
                fx.ws.join("vendor/lib").display(),
                fx.ws.join("vendor/l2").display()
            ),
            format!(
                "rename={}>{}",
                fx.ws.join("a/b").display(),
                fx.ws.join("a/b2").display()
            ),
            // Everything else stays writable.
            op("write", fx.ws.join("vendor/lib/src.c")),
            op("mkdir", fx.ws.join("a/b/new")),
        ],
    );
    assert_eq!(
        results,
        ["EROFS", "EROFS", "EROFS", "EROFS", "EBUSY", "EBUSY", "EBUSY", "ok", "ok"]
    );
}

#[test]
fn bubblewrap_protects_what_lies_above_a_writable_root_inside_another() {
    // The workspace is a subfolder of a repository that lives in another writable root:
    // that repository's .git and every .execgate on the way up are inside that root.
    let fx = Fixture::new();
    let repo = fx.outside.join("repo");
    git_init(&repo);
    let sub = repo.join("pkg/sub");
    fs::create_dir_all(&sub).unwrap();
    fs::create_dir_all(repo.join("pkg/.execgate")).unwrap();
    let mut policy = SandboxPolicy::new(SandboxMode::WorkspaceWrite, &sub);
    policy.tmpdir = None;
    policy.init = INIT.into();
    policy.writable_roots.push(fx.outside.clone());
    let sb = prepare(&policy, BackendChoice::Bubblewrap);
    assert_eq!(
        sb.protected_paths(),
        [repo.join(".git"), repo.join("pkg/.execgate")]
    );
    let results = probe(
        &sb,
        &[
            op("write", repo.join(".git/config")),
            op("write", repo.join("pkg/.execgate/hooks.json")),
            format!(
                "rename={}>{}",
                repo.display(),
                fx.outside.join("moved").display()
            ),
            op("write", sub.join("ok.txt")),
        ],
    );
    assert_eq!(results, ["EROFS", "EROFS", "EBUSY", "ok"]);
}

#[test]
fn the_temporary_directory_is_searched_only_at_its_top() {
    let fx = Fixture::new();
    let tmp = fx.outside.join("tmp");
    git_init(&tmp.join("someone/else"));
    fs::create_dir_all(tmp.join(".codex")).unwrap();
    let mut policy = fx.policy(SandboxMode::WorkspaceWrite);
    policy.tmpdir = Some(tmp.clone());
    let sb = prepare(&policy, BackendChoice::Bubblewrap);
    assert_eq!(sb.protected_paths(), [tmp.join(".codex")]);
}

/// A home inside the workspace, with what a Debian home has.
fn writable_home(fx: &Fixture) -> PathBuf {
    let home = fx.ws.join("home");
    fs::create_dir_all(&home).unwrap();
    for file in [".bashrc", ".profile", ".bash_profile"] {
        fs::write(home.join(file), "# mine\n").unwrap();
    }
    home
}

#[test]
fn bubblewrap_keeps_a_writable_homes_start_up_and_config_files_read_only() {
    let fx = Fixture::new();
    let home = writable_home(&fx);
    let mut policy = fx.policy(SandboxMode::WorkspaceWrite);
    policy.home = Some(home.clone());
    let sb = prepare(&policy, BackendChoice::Bubblewrap);
    let results = probe(
        &sb,
        &[
            op("write", home.join(".bashrc")),
            op("write", home.join(".bash_profile")),
            op("write", home.join(".gitconfig")),
            op("write", home.join(".zshrc")),
            op("write", home.join(".ssh/config")),
            op("write", home.join(".config/git/config")),
            op("write", home.join(".config/execgate/hooks.json")),
            op("write", home.join(".codex/config.toml")),
            op("write", home.join(".claude/settings.json")),
            op("write", home.join("notes.txt")),
        ],
    );
    assert_eq!(
        results,
        ["EROFS", "EROFS", "EROFS", "EROFS", "EROFS", "EROFS", "EROFS", "EROFS", "EROFS", "ok"]
    );
    // What was missing was created empty, so that nothing can be planted in its place.
    assert_eq!(fs::read(home.join(".gitconfig")).unwrap(), b"");
    assert!(home.join(".ssh").is_dir());
    assert_eq!(
        fs::read_to_string(home.join(".bashrc")).unwrap(),
        "# mine\n"
    );
}

#[test]
fn a_writable_home_without_bash_profile_refuses_to_start() {
    let fx = Fixture::new();
    let home = writable_home(&fx);
    fs::remove_file(home.join(".bash_profile")).unwrap();
    let mut policy = fx.policy(SandboxMode::WorkspaceWrite);
    policy.home = Some(home.clone());
    let err = Sandbox::prepare(&policy, BackendChoice::Bubblewrap).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the home {} is inside a writable root and has no .bash_profile: a login bash \
             would run one the sandbox writes instead of .profile. Create it (echo '. \
             ~/.profile' > ~/.bash_profile keeps what a login bash does today), or keep the \
             home out of the writable roots",
            home.display()
        )
    );
    assert!(!home.join(".bash_profile").exists());
}

#[test]
fn landlock_refuses_a_writable_home_naming_what_it_cannot_protect() {
    let fx = Fixture::new();
    let home = writable_home(&fx);
    let mut policy = fx.policy(SandboxMode::WorkspaceWrite);
    policy.home = Some(home.clone());
    let err = Sandbox::prepare(&policy, BackendChoice::Landlock).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "Landlock cannot keep {}/.bash_logout read-only inside the writable root {}: use the \
             bubblewrap backend (which can), or pass --allow-unprotected-landlock to accept that \
             it stays writable",
            home.display(),
            fx.ws.display()
        )
    );
}
