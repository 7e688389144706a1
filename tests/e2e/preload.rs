//! End-to-end tests of the preload shim (`libexecgate_preload.so`): Debian's own bash, dash
//! and zsh, and the dynamically linked programs they start (`env`, `xargs`, `find`, `make`,
//! python), run in a real session of the escalation server with a deterministic test policy.
//!
//! The test policy (`support::policy`) records every request and decides from the argv
//! alone: a first argument `forbidden` is denied, any argument `escalate-me` is escalated,
//! everything else runs. The shell behaviours run in each of the three shells, each its own
//! test module (see the `per_setup!` list); the rest run in bash.

use crate::support::bins::{preload_shim, wrapper};
use crate::support::dirs::Scratch;
use crate::support::policy::{TestPolicy, DENY_REASON};
use crate::support::session::{run_with_env, Outcome};
use crate::support::setups::{per_setup, ShellSetup};
use execgate_escalate_server::ExecRequest;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

/// Raw bytes that print readably in assertion failures.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Bytes(Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

/// `(program, argv, cwd)` of every request, in arrival order.
fn execs(outcome: &Outcome) -> Vec<(Bytes, Vec<Bytes>, Bytes)> {
    outcome
        .requests()
        .into_iter()
        .map(|r| {
            (
                Bytes(r.program.clone()),
                r.argv.iter().cloned().map(Bytes).collect(),
                Bytes(r.cwd.clone()),
            )
        })
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A scratch directory with a `sub/` directory.
fn scratch() -> Scratch {
    let scratch = Scratch::new();
    std::fs::create_dir(scratch.join("sub")).expect("create sub");
    scratch
}

/// A path's bytes, as a request carries it.
fn path_bytes(path: &Path) -> Vec<u8> {
    path.as_os_str().as_bytes().to_vec()
}

/// Runs `script` in a preload-shim session of `setup` in `dir`, with `HOME=dir` and the
/// extra `env`.
fn run(setup: &ShellSetup, script: &str, dir: &Path, env: &[(&str, &OsStr)]) -> Outcome {
    let mut all = vec![("HOME", dir.as_os_str())];
    all.extend_from_slice(env);
    run_with_env(setup, dir, script, &all, Arc::new(TestPolicy::run_all()))
}

fn argv(parts: &[&str]) -> Vec<Bytes> {
    parts.iter().map(|p| b(p)).collect()
}

fn b(s: &str) -> Bytes {
    Bytes(s.as_bytes().to_vec())
}

fn assert_ok(outcome: &Outcome) {
    assert_eq!(outcome.code(), Some(0), "stderr: {}", text(&outcome.stderr));
    assert_eq!(text(&outcome.stderr), "");
}

// ---- Shell behaviour (each test runs with bash, dash and zsh) ----

fn execs_reach_the_server_with_absolute_path_exact_argv_and_cwd(setup: &ShellSetup) {
    let scratch = scratch();
    let arg = OsStr::from_bytes(b"\xff\xfe-not-utf8");
    let outcome = run(
        setup,
        r#"cd sub && cat /dev/null && /bin/echo "$ARG" 'two  words'"#,
        scratch.path(),
        &[("ARG", arg)],
    );
    assert_ok(&outcome);
    assert_eq!(outcome.stdout, b"\xff\xfe-not-utf8 two  words\n");
    let sub = Bytes(path_bytes(&scratch.join("sub")));
    assert_eq!(
        execs(&outcome),
        vec![
            (b("/usr/bin/cat"), argv(&["cat", "/dev/null"]), sub.clone()),
            (
                b("/bin/echo"),
                vec![
                    b("/bin/echo"),
                    Bytes(arg.as_bytes().to_vec()),
                    b("two  words")
                ],
                sub
            ),
        ]
    );
    let env = &outcome.requests()[1].env;
    assert!(
        env.contains(&b"ARG=\xff\xfe-not-utf8".to_vec()),
        "request env lacks ARG: {env:?}"
    );
}

fn relative_program_path_is_joined_to_the_working_directory(setup: &ShellSetup) {
    let scratch = scratch();
    scratch.file("tool", "#!/bin/sh\nexec /bin/echo tool \"$@\"\n", 0o755);
    let outcome = run(setup, "./tool x", scratch.path(), &[]);
    assert_ok(&outcome);
    assert_eq!(outcome.stdout, b"tool x\n");
    let dir = Bytes(path_bytes(scratch.path()));
    assert_eq!(
        execs(&outcome),
        vec![
            (
                Bytes(path_bytes(&scratch.join("tool"))),
                argv(&["./tool", "x"]),
                dir.clone()
            ),
            (b("/bin/echo"), argv(&["/bin/echo", "tool", "x"]), dir),
        ]
    );
}

fn denied_command_prints_the_reason_and_exits_126(setup: &ShellSetup) {
    let scratch = scratch();
    let outcome = run(
        setup,
        "/bin/echo forbidden 'a b'; echo \"status=$?\"",
        scratch.path(),
        &[],
    );
    assert_eq!(outcome.code(), Some(0));
    assert_eq!(text(&outcome.stdout), "status=126\n");
    assert_eq!(
        text(&outcome.stderr),
        format!("execgate: denied: /bin/echo forbidden 'a b': {DENY_REASON}\n")
    );
    assert_eq!(outcome.requests().len(), 1);
}

fn set_e_stops_at_a_denied_command(setup: &ShellSetup) {
    let scratch = scratch();
    let outcome = run(
        setup,
        "set -e; /bin/echo forbidden; /bin/echo not-reached",
        scratch.path(),
        &[],
    );
    assert_eq!(outcome.code(), Some(126));
    assert_eq!(text(&outcome.stdout), "");
    assert_eq!(outcome.requests().len(), 1);
}

fn escalated_command_runs_through_the_wrapper(setup: &ShellSetup) {
    let scratch = scratch();
    let outcome = run(
        setup,
        "/bin/echo escalate-me; /bin/sh -c 'exit 7' escalate-me; echo \"status=$?\"",
        scratch.path(),
        &[],
    );
    assert_ok(&outcome);
    assert_eq!(text(&outcome.stdout), "escalate-me\nstatus=7\n");
    // Decided once each: the shim's exec of the wrapper is not a new request.
    assert_eq!(
        execs(&outcome)
            .into_iter()
            .map(|(program, ..)| program)
            .collect::<Vec<_>>(),
        vec![b("/bin/echo"), b("/bin/sh")]
    );
}

fn exec_of_the_wrapper_binary_is_decided_once(setup: &ShellSetup) {
    let scratch = scratch();
    let outcome = run(
        setup,
        r#""$EXEC_WRAPPER" /bin/echo echo once"#,
        scratch.path(),
        &[],
    );
    assert_ok(&outcome);
    assert_eq!(outcome.stdout, b"once\n");
    assert_eq!(
        execs(&outcome),
        vec![(
            b("/bin/echo"),
            argv(&["echo", "once"]),
            Bytes(path_bytes(scratch.path()))
        )]
    );
}

fn env_dash_i_child_is_still_decided(setup: &ShellSetup) {
    let scratch = scratch();
    let outcome = run(setup, "env -i /bin/echo clean", scratch.path(), &[]);
    assert_ok(&outcome);
    assert_eq!(outcome.stdout, b"clean\n");
    let dir = Bytes(path_bytes(scratch.path()));
    assert_eq!(
        execs(&outcome),
        vec![
            (
                b("/usr/bin/env"),
                argv(&["env", "-i", "/bin/echo", "clean"]),
                dir.clone()
            ),
            (b("/bin/echo"), argv(&["/bin/echo", "clean"]), dir),
        ]
    );
    assert_eq!(outcome.requests()[1].env, Vec::<Vec<u8>>::new());
}

fn execvp_path_search_decides_the_program_found(setup: &ShellSetup) {
    let scratch = scratch();
    let outcome = run(setup, "env echo found", scratch.path(), &[]);
    assert_ok(&outcome);
    assert_eq!(outcome.stdout, b"found\n");
    assert_eq!(
        execs(&outcome)[1],
        (
            b("/usr/bin/echo"),
            argv(&["echo", "found"]),
            Bytes(path_bytes(scratch.path()))
        )
    );
}

fn script_without_shebang_runs_with_sh_after_execvp(setup: &ShellSetup) {
    let scratch = scratch();
    scratch.file("plain", "/bin/echo from-plain\n", 0o755);
    let outcome = run(setup, "env ./plain", scratch.path(), &[]);
    assert_ok(&outcome);
    assert_eq!(outcome.stdout, b"from-plain\n");
    let dir = Bytes(path_bytes(scratch.path()));
    assert_eq!(
        execs(&outcome),
        vec![
            (b("/usr/bin/env"), argv(&["env", "./plain"]), dir.clone()),
            (
                Bytes(path_bytes(&scratch.join("plain"))),
                argv(&["./plain"]),
                dir.clone()
            ),
            (b("/bin/echo"), argv(&["/bin/echo", "from-plain"]), dir),
        ]
    );
}

fn pipelines_subshells_substitutions_and_background_jobs_are_decided(setup: &ShellSetup) {
    let scratch = scratch();
    let script = "f() { /bin/echo in-function; }; f; \
                  /bin/echo piped | cat; \
                  (/bin/echo in-subshell); \
                  x=$(/bin/echo substituted); /bin/echo \"$x\"; \
                  /bin/echo background & wait; \
                  exec /bin/echo exec-builtin";
    let outcome = run(setup, script, scratch.path(), &[]);
    assert_ok(&outcome);
    let mut echoed: Vec<Vec<Bytes>> = program_of(&outcome, "/bin/echo");
    echoed.sort_by(|a, b| a[1].0.cmp(&b[1].0));
    assert_eq!(
        echoed,
        vec![
            argv(&["/bin/echo", "background"]),
            argv(&["/bin/echo", "exec-builtin"]),
            argv(&["/bin/echo", "in-function"]),
            argv(&["/bin/echo", "in-subshell"]),
            argv(&["/bin/echo", "piped"]),
            argv(&["/bin/echo", "substituted"]),
            argv(&["/bin/echo", "substituted"]),
        ]
    );
    assert_eq!(program_of(&outcome, "/usr/bin/cat"), vec![argv(&["cat"])]);
    assert_eq!(
        text(&outcome.stdout),
        "in-function\npiped\nin-subshell\nsubstituted\nbackground\nexec-builtin\n"
    );
}

fn escalated_command_gets_the_callers_fds(setup: &ShellSetup) {
    let scratch = scratch();
    let script = "/bin/sh -c 'cat; echo to-three >&3' escalate-me 3>out.txt <<EOF\n\
                  from-stdin\n\
                  EOF\n\
                  /bin/cat out.txt";
    let outcome = run(setup, script, scratch.path(), &[]);
    assert_ok(&outcome);
    assert_eq!(text(&outcome.stdout), "from-stdin\nto-three\n");
}

fn escalated_signal_death_gives_128_plus_signal(setup: &ShellSetup) {
    let scratch = scratch();
    let outcome = run(
        setup,
        "/bin/sh -c 'kill -9 $$' escalate-me; echo \"status=$?\"",
        scratch.path(),
        &[],
    );
    assert_eq!(outcome.code(), Some(0));
    assert_eq!(text(&outcome.stdout), "status=137\n");
}

fn script_without_shebang_run_by_the_shell_has_its_commands_decided(setup: &ShellSetup) {
    let scratch = scratch();
    scratch.file("plain", "/bin/echo from-plain\n", 0o755);
    let outcome = run(setup, "./plain; echo \"status=$?\"", scratch.path(), &[]);
    assert_ok(&outcome);
    assert_eq!(text(&outcome.stdout), "from-plain\nstatus=0\n");
    assert_eq!(
        execs(&outcome)[0],
        (
            Bytes(path_bytes(&scratch.join("plain"))),
            argv(&["./plain"]),
            Bytes(path_bytes(scratch.path()))
        )
    );
    assert_eq!(
        program_of(&outcome, "/bin/echo"),
        vec![argv(&["/bin/echo", "from-plain"])]
    );
}

fn missing_session_socket_fails_closed(setup: &ShellSetup) {
    let outcome = run_without_server(setup, None);
    assert_eq!(text(&outcome.stdout), "status=126\n");
    assert_eq!(
        text(&outcome.stderr),
        "execgate: cannot run /bin/echo: EXECGATE_SOCKET is not set: not running inside an \
         execgate session\n"
    );
}

fn server_gone_fails_closed(setup: &ShellSetup) {
    let (ours, theirs) = UnixDatagram::pair().expect("socketpair");
    drop(theirs);
    let outcome = run_without_server(setup, Some(ours));
    assert_eq!(text(&outcome.stdout), "status=126\n");
    assert_eq!(
        text(&outcome.stderr),
        "execgate: cannot run /bin/echo: the execgate server closed the connection\n"
    );
}

/// A server that answers the first request with a frame of an unknown message type: a
/// Python peer on the real socket (receives the stream end with `SCM_RIGHTS`).
const BAD_FRAME_PEER: &str = r#"
import array, socket, struct
s = socket.socket(fileno=0)
_, ancillary, _, _ = s.recvmsg(64, socket.CMSG_SPACE(4))
fds = array.array('i')
fds.frombytes(ancillary[0][2][:4])
c = socket.socket(fileno=fds[0])
(n,) = struct.unpack('<I', c.recv(4, socket.MSG_WAITALL))
c.recv(n, socket.MSG_WAITALL)
c.sendall(struct.pack('<I', 1) + b'\x7f')
"#;

fn malformed_verdict_fails_closed(setup: &ShellSetup) {
    let (ours, theirs) = UnixDatagram::pair().expect("socketpair");
    let mut peer = Command::new("/usr/bin/python3")
        .args(["-c", BAD_FRAME_PEER])
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .spawn()
        .expect("start the bad-frame peer");
    let outcome = run_without_server(setup, Some(ours));
    assert!(peer.wait().expect("wait for peer").success());
    assert_eq!(text(&outcome.stdout), "status=126\n");
    assert_eq!(
        text(&outcome.stderr),
        "execgate: cannot run /bin/echo: protocol error: unexpected message tag 0x7f\n"
    );
}

per_setup! {
    bash => &ShellSetup::shim_bash(),
    dash => &ShellSetup::shim_dash(),
    zsh => &ShellSetup::shim_zsh();
    [
        execs_reach_the_server_with_absolute_path_exact_argv_and_cwd,
        relative_program_path_is_joined_to_the_working_directory,
        denied_command_prints_the_reason_and_exits_126,
        set_e_stops_at_a_denied_command,
        escalated_command_runs_through_the_wrapper,
        exec_of_the_wrapper_binary_is_decided_once,
        env_dash_i_child_is_still_decided,
        execvp_path_search_decides_the_program_found,
        script_without_shebang_runs_with_sh_after_execvp,
        script_without_shebang_run_by_the_shell_has_its_commands_decided,
        pipelines_subshells_substitutions_and_background_jobs_are_decided,
        escalated_command_gets_the_callers_fds,
        escalated_signal_death_gives_128_plus_signal,
        missing_session_socket_fails_closed,
        server_gone_fails_closed,
        malformed_verdict_fails_closed,
    ]
}

// ---- Dynamically linked children of the shell ----

/// Runs `script` in Debian bash with the shim ([`run`] with no extra environment).
fn in_bash(script: &str, dir: &Path) -> Outcome {
    run(&ShellSetup::shim_bash(), script, dir, &[])
}

/// The argv of every request for `program`, in arrival order.
fn program_of(outcome: &Outcome, program: &str) -> Vec<Vec<Bytes>> {
    execs(outcome)
        .into_iter()
        .filter(|(p, ..)| p.0 == program.as_bytes())
        .map(|(_, argv, _)| argv)
        .collect()
}

#[test]
fn xargs_execs_are_decided() {
    let scratch = scratch();
    let outcome = in_bash("printf 'a\\nb\\n' | xargs /bin/echo", scratch.path());
    assert_ok(&outcome);
    assert_eq!(outcome.stdout, b"a b\n");
    assert_eq!(
        program_of(&outcome, "/bin/echo"),
        vec![argv(&["/bin/echo", "a", "b"])]
    );
    assert_eq!(program_of(&outcome, "/usr/bin/xargs").len(), 1);
}

#[test]
fn parallel_execs_are_each_decided_once() {
    let scratch = scratch();
    let outcome = in_bash("seq 64 | xargs -P 64 -n 1 /bin/echo", scratch.path());
    assert_ok(&outcome);
    let mut lines: Vec<u32> = text(&outcome.stdout)
        .lines()
        .map(|l| l.parse().expect("a number"))
        .collect();
    lines.sort_unstable();
    assert_eq!(lines, (1..=64).collect::<Vec<_>>());
    let mut echoed: Vec<u32> = program_of(&outcome, "/bin/echo")
        .iter()
        .map(|argv| {
            String::from_utf8_lossy(&argv[1].0)
                .parse()
                .expect("a number")
        })
        .collect();
    echoed.sort_unstable();
    assert_eq!(echoed, (1..=64).collect::<Vec<_>>());
}

#[test]
fn find_exec_is_decided() {
    let scratch = scratch();
    scratch.file("marker", "", 0o644);
    let outcome = in_bash(
        "find . -name marker -exec /bin/echo found {} \\;",
        scratch.path(),
    );
    assert_ok(&outcome);
    assert_eq!(outcome.stdout, b"found ./marker\n");
    assert_eq!(
        program_of(&outcome, "/bin/echo"),
        vec![argv(&["/bin/echo", "found", "./marker"])]
    );
}

#[test]
fn find_exec_of_a_denied_command_is_refused() {
    let scratch = scratch();
    scratch.file("marker", "", 0o644);
    let outcome = in_bash(
        "find . -name marker -exec /bin/echo forbidden {} \\; ; echo \"status=$?\"",
        scratch.path(),
    );
    // A failing `-exec` command only makes the test false: find itself succeeds.
    assert_eq!(text(&outcome.stdout), "status=0\n");
    assert_eq!(
        text(&outcome.stderr),
        format!("execgate: denied: /bin/echo forbidden ./marker: {DENY_REASON}\n")
    );
}

#[test]
fn make_recipes_are_decided() {
    let scratch = scratch();
    scratch.file(
        "Makefile",
        "all:\n\t/bin/echo made\n\t/bin/echo 'with shell' | cat\n",
        0o644,
    );
    let outcome = in_bash("make -s", scratch.path());
    assert_ok(&outcome);
    assert_eq!(outcome.stdout, b"made\nwith shell\n");
    assert_eq!(
        program_of(&outcome, "/bin/echo"),
        vec![
            argv(&["/bin/echo", "made"]),
            argv(&["/bin/echo", "with shell"])
        ]
    );
    assert_eq!(program_of(&outcome, "/usr/bin/cat").len(), 1);
}

#[test]
fn python_subprocess_is_decided() {
    let scratch = scratch();
    // subprocess closes every fd above 2 before exec (close_fds=True) and uses vfork.
    let script = "import subprocess; subprocess.run(['/bin/echo', 'py'], check=True); \
                  subprocess.run(['echo', 'viapath'], check=True)";
    let outcome = in_bash(&format!("/usr/bin/python3 -c \"{script}\""), scratch.path());
    assert_ok(&outcome);
    assert_eq!(outcome.stdout, b"py\nviapath\n");
    assert_eq!(
        program_of(&outcome, "/bin/echo"),
        vec![argv(&["/bin/echo", "py"])]
    );
    assert_eq!(
        program_of(&outcome, "/usr/bin/echo"),
        vec![argv(&["echo", "viapath"])]
    );
}

#[test]
fn python_posix_spawn_is_decided_by_the_wrapper() {
    let scratch = scratch();
    let script = "import os; \
                  p = os.posix_spawn('/bin/echo', ['echo', 'spawned'], os.environ); \
                  q = os.posix_spawnp('echo', ['echo', 'spawnedp'], os.environ); \
                  r = os.posix_spawn('/bin/echo', ['echo', 'forbidden'], os.environ); \
                  print([os.waitstatus_to_exitcode(os.waitpid(x, 0)[1]) for x in (p, q, r)])";
    let outcome = in_bash(&format!("/usr/bin/python3 -c \"{script}\""), scratch.path());
    assert_eq!(outcome.code(), Some(0));
    let stdout = text(&outcome.stdout);
    assert!(stdout.contains("spawned\n"), "{stdout}");
    assert!(stdout.contains("spawnedp\n"), "{stdout}");
    assert!(stdout.ends_with("[0, 0, 126]\n"), "{stdout}");
    assert_eq!(
        text(&outcome.stderr),
        format!("execgate: denied: /bin/echo forbidden: {DENY_REASON}\n")
    );
    // The three children run concurrently: their decisions arrive in any order.
    let mut echoes = program_of(&outcome, "/bin/echo");
    echoes.sort();
    assert_eq!(
        echoes,
        vec![argv(&["echo", "forbidden"]), argv(&["echo", "spawned"])]
    );
    assert_eq!(
        program_of(&outcome, "/usr/bin/echo"),
        vec![argv(&["echo", "spawnedp"])]
    );
}

#[test]
fn python_fexecve_is_decided_with_the_files_path() {
    let scratch = scratch();
    let script = "import os; fd = os.open('/usr/bin/echo', os.O_RDONLY); \
                  os.execve(fd, ['echo', 'via-fd'], os.environ)";
    let outcome = in_bash(&format!("/usr/bin/python3 -c \"{script}\""), scratch.path());
    assert_ok(&outcome);
    assert_eq!(outcome.stdout, b"via-fd\n");
    assert_eq!(
        program_of(&outcome, "/usr/bin/echo"),
        vec![argv(&["echo", "via-fd"])]
    );
}

/// `execl`, `execlp` and `execle` are C variadic functions: exercised from C, with more
/// arguments than fit in registers.
const EXECL_PROGRAM: &str = r#"
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void run(int which) {
    pid_t pid = fork();
    if (pid == 0) {
        char *envp[] = { "ONLY=this", NULL };
        if (which == 0) execl("/bin/echo", "echo", "1", "2", "3", "4", "5", "6", "7", "8", (char *)NULL);
        if (which == 1) execlp("echo", "echo", "from-execlp", (char *)NULL);
        if (which == 2) execle("/usr/bin/env", "env", (char *)NULL, envp);
        _exit(99);
    }
    int status;
    waitpid(pid, &status, 0);
}
int main(void) { run(0); run(1); run(2); return 0; }
"#;

#[test]
fn execl_execlp_and_execle_are_decided() {
    let scratch = scratch();
    let source = scratch.file("execl.c", EXECL_PROGRAM, 0o644);
    let status = Command::new("cc")
        .arg("-o")
        .arg(scratch.join("execl"))
        .arg(&source)
        .status()
        .expect("run cc");
    assert!(status.success(), "cc failed");
    let outcome = in_bash("./execl", scratch.path());
    assert_ok(&outcome);
    assert_eq!(
        text(&outcome.stdout),
        "1 2 3 4 5 6 7 8\nfrom-execlp\nONLY=this\n"
    );
    assert_eq!(
        program_of(&outcome, "/bin/echo"),
        vec![argv(&["echo", "1", "2", "3", "4", "5", "6", "7", "8"])]
    );
    assert_eq!(
        program_of(&outcome, "/usr/bin/echo"),
        vec![argv(&["echo", "from-execlp"])]
    );
    let env_requests: Vec<&ExecRequest> = outcome
        .requests()
        .into_iter()
        .filter(|r| r.program == b"/usr/bin/env")
        .collect();
    assert_eq!(env_requests.len(), 1);
    assert_eq!(env_requests[0].env, vec![b"ONLY=this".to_vec()]);
}

#[test]
fn posix_spawn_keeps_the_callers_file_actions() {
    let scratch = scratch();
    let script = "import os; \
                  actions = [(os.POSIX_SPAWN_OPEN, 1, 'out.txt', os.O_WRONLY | os.O_CREAT, 0o644)]; \
                  p = os.posix_spawn('/bin/echo', ['echo', 'to-file'], os.environ, file_actions=actions); \
                  print(os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]))";
    let outcome = in_bash(
        &format!("/usr/bin/python3 -c \"{script}\"; /bin/cat out.txt"),
        scratch.path(),
    );
    assert_ok(&outcome);
    assert_eq!(text(&outcome.stdout), "0\nto-file\n");
}

#[test]
fn posix_spawn_of_a_missing_program_reports_enoent_without_asking() {
    let scratch = scratch();
    let script = "import os\ntry:\n    os.posix_spawn('/nonexistent/x', ['x'], os.environ)\n\
                  except FileNotFoundError:\n    print('enoent')";
    let outcome = in_bash(&format!("/usr/bin/python3 -c \"{script}\""), scratch.path());
    assert_ok(&outcome);
    assert_eq!(outcome.stdout, b"enoent\n");
    assert_eq!(outcome.requests().len(), 1, "only python itself is decided");
}

// ---- Faults, without a server ----

/// Runs `/bin/echo hi; echo "status=$?"` with the shim and `socket` as the session socket,
/// or no `EXECGATE_SOCKET` at all.
fn run_without_server(setup: &ShellSetup, socket: Option<UnixDatagram>) -> Output {
    let mut cmd = Command::new(&setup.shell);
    cmd.args(&setup.args)
        .args(["-c", "/bin/echo hi; echo \"status=$?\""])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        // bash sources ~/.bashrc when its stdin is a socket (the "run by sshd" guess).
        .env("HOME", "/nonexistent")
        .env("LD_PRELOAD", preload_shim())
        .env("EXEC_WRAPPER", wrapper())
        .stdin(Stdio::null());
    if let Some(socket) = socket {
        // The socket is inherited as the shell's stdin (fd 0), which `-c` leaves unused.
        cmd.env("EXECGATE_SOCKET", "0")
            .stdin(Stdio::from(OwnedFd::from(socket)));
    }
    cmd.output().expect("run shell")
}

/// Runs a binutils tool on `file` and returns its stdout.
fn binutils(tool: &str, args: &[&str], file: &Path) -> String {
    let out = Command::new(tool)
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
    assert!(out.status.success(), "{tool} failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn shim_exports_only_its_hooks_and_needs_only_libc() {
    // Anything else exported would interpose on the programs it is loaded into (e.g. a
    // `rust_eh_personality` would break a Rust program's panics); anything else needed would
    // be loaded into every process of the session.
    let shim = preload_shim();
    let exported: Vec<String> = binutils("nm", &["-D", "--defined-only"], &shim)
        .lines()
        .filter_map(|line| line.split_whitespace().nth(2).map(str::to_string))
        .collect();
    assert_eq!(
        exported,
        [
            "close_range",
            "closefrom",
            "execgate_preload_execve",
            "execgate_preload_execvpe",
            "execl",
            "execle",
            "execlp",
            "execv",
            "execve",
            "execvp",
            "execvpe",
            "fexecve",
            "posix_spawn",
            "posix_spawnp",
            "vfork",
        ]
    );
    let needed: Vec<String> = binutils("readelf", &["-d"], &shim)
        .lines()
        .filter(|line| line.contains("(NEEDED)"))
        .map(|line| {
            line.rsplit('[')
                .next()
                .unwrap_or("")
                .trim_end_matches(']')
                .to_string()
        })
        .collect();
    assert_eq!(needed, ["libc.so.6"]);
}

#[test]
fn shim_maps_as_two_segments_with_nothing_to_protect_or_finalise() {
    // Every exec of the session loads the shim: each extra segment, RELRO `mprotect` or
    // anonymous `.bss` mapping is paid again by every process (preload/build.rs).
    let shim = preload_shim();
    let headers = binutils("readelf", &["-lW"], &shim);
    let loads: Vec<&str> = headers
        .lines()
        .filter(|line| line.trim_start().starts_with("LOAD"))
        .collect();
    assert_eq!(loads.len(), 2, "{headers}");
    assert!(!headers.contains("GNU_RELRO"), "{headers}");
    // The writable segment's memory ends on the page its file contents end on: no `.bss`
    // beyond it for the loader to map separately.
    let fields: Vec<u64> = loads[1]
        .split_whitespace()
        .filter_map(|f| u64::from_str_radix(f.trim_start_matches("0x"), 16).ok())
        .collect();
    let [_, vaddr, _, filesz, memsz, ..] = fields[..] else {
        panic!("unexpected LOAD line: {}", loads[1]);
    };
    assert_eq!(
        (vaddr + filesz - 1) / 4096,
        (vaddr + memsz - 1) / 4096,
        "{headers}"
    );
    let dynamic = binutils("readelf", &["-dW"], &shim);
    for tag in ["(INIT)", "(FINI)", "(FINI_ARRAY)"] {
        assert!(!dynamic.contains(tag), "{tag} in {dynamic}");
    }
}

#[test]
fn wrapper_is_static_with_no_interpreter() {
    let headers = binutils("readelf", &["-lW"], &wrapper());
    assert!(!headers.contains("INTERP"), "{headers}");
    let dynamic = binutils("readelf", &["-d"], &wrapper());
    assert!(!dynamic.contains("(NEEDED)"), "{dynamic}");
}

/// Threads of one process deciding execs at the same time, and forking children (which may
/// start with the shim's scratch area claimed by another thread of the parent, so their hook
/// runs with its buffers on the stack). Each thread's `execve` of a file with no known format
/// is decided (Run) and then fails with `ENOEXEC`, so the thread carries on and many of its
/// decisions overlap with its siblings'; each child execs `echo` (by path, or by `PATH`
/// search). Two execs sharing one scratch area would mix up their program paths or garble
/// their requests.
const CONCURRENT_EXECS_PROGRAM: &str = r#"
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#define THREADS 8
#define ROUNDS 25
extern char **environ;
/* All threads exist before any execs: while one thread is in execve, the kernel refuses to
   create threads in its process (EAGAIN). */
static pthread_barrier_t all_started;
static void *worker(void *arg) {
    long t = (long)arg;
    pthread_barrier_wait(&all_started);
    char prog[64], ts[16], is[16];
    snprintf(prog, sizeof prog, "./not-a-program-%ld", t);
    snprintf(ts, sizeof ts, "%ld", t);
    for (int i = 0; i < ROUNDS; i++) {
        snprintf(is, sizeof is, "%d", i);
        char *args[] = { prog, ts, is, NULL };
        if (execve(prog, args, environ) != -1 || errno != ENOEXEC) {
            fprintf(stderr, "thread %ld round %d: execve gave %s\n", t, i, strerror(errno));
            exit(2);
        }
        pid_t pid = fork();
        if (pid == 0) {
            char *child[] = { "echo", "child", ts, is, NULL };
            if (i % 2 == 0) execve("/bin/echo", child, environ);
            else execvp("echo", child);
            _exit(127);
        }
        int status;
        if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)
            || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "thread %ld round %d: child failed\n", t, i);
            exit(3);
        }
    }
    return NULL;
}
int main(void) {
    pthread_t threads[THREADS];
    pthread_barrier_init(&all_started, NULL, THREADS);
    for (long t = 0; t < THREADS; t++) {
        int err = pthread_create(&threads[t], NULL, worker, (void *)t);
        if (err != 0) {
            fprintf(stderr, "pthread_create: %s\n", strerror(err));
            return 4;
        }
    }
    for (long t = 0; t < THREADS; t++) pthread_join(threads[t], NULL);
    return 0;
}
"#;

#[test]
fn concurrent_execs_of_threads_and_their_children_each_get_their_own_buffers() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 25;
    let scratch = scratch();
    let source = scratch.file("concurrent.c", CONCURRENT_EXECS_PROGRAM, 0o644);
    let status = Command::new("cc")
        .arg("-pthread")
        .arg("-o")
        .arg(scratch.join("concurrent"))
        .arg(&source)
        .status()
        .expect("run cc");
    assert!(status.success(), "cc failed");
    for t in 0..THREADS {
        scratch.file(
            format!("not-a-program-{t}"),
            "no format the kernel knows\n",
            0o755,
        );
    }
    let outcome = in_bash("./concurrent", scratch.path());
    assert_ok(&outcome);

    // (program, argv, cwd) as text, sorted: the order of concurrent requests is arbitrary.
    let sorted = |mut v: Vec<(String, Vec<String>, String)>| {
        v.sort_unstable();
        v
    };
    let dir = scratch.path().display().to_string();
    let mut expected_lines = Vec::new();
    let mut expected = Vec::new();
    for t in 0..THREADS {
        for i in 0..ROUNDS {
            expected_lines.push(format!("child {t} {i}"));
            let attempt = [format!("./not-a-program-{t}"), t.to_string(), i.to_string()];
            expected.push((
                format!("{dir}/not-a-program-{t}"),
                attempt.to_vec(),
                dir.clone(),
            ));
            let echo = if i % 2 == 0 {
                "/bin/echo"
            } else {
                "/usr/bin/echo"
            };
            let child = ["echo", "child", &t.to_string(), &i.to_string()].map(str::to_string);
            expected.push((echo.to_string(), child.to_vec(), dir.clone()));
        }
    }
    let mut lines: Vec<&str> = std::str::from_utf8(&outcome.stdout)
        .expect("utf-8 output")
        .lines()
        .collect();
    lines.sort_unstable();
    expected_lines.sort_unstable();
    assert_eq!(lines, expected_lines);

    // Every request names the program its own argv goes with; the only other one is the
    // shell's exec of the test program.
    let seen: Vec<(String, Vec<String>, String)> = execs(&outcome)
        .into_iter()
        .map(|(program, argv, cwd)| {
            let argv: Vec<String> = argv.iter().map(|a| text(&a.0)).collect();
            (text(&program.0), argv, text(&cwd.0))
        })
        .filter(|(_, argv, _)| argv.first().is_none_or(|a| a != "./concurrent"))
        .collect();
    assert_eq!(outcome.requests().len(), 1 + seen.len());
    assert_eq!(sorted(seen), sorted(expected));
}
