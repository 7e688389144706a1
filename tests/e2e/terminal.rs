//! End-to-end tests of the terminal while execgate asks (design invariant 7): what a person
//! is shown is escaped, the sandboxed shell runs on a pty execgate owns and relays, nothing
//! the session writes reaches the screen while a prompt is up, and no typeahead answers a
//! prompt. Each test runs `execgate run` on a real pty and compares the rendered screen
//! (a `vt100` model of the terminal), not the bytes.

use crate::support::dirs::Workspace;
use crate::support::pty::{without_terminal, Terminal};
use serde_json::Value;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

const RULES: &str = r#"
prefix_rule(pattern = ["touch"], decision = "prompt", justification = "touch needs a look")
prefix_rule(pattern = ["rm", "-rf"], decision = "forbidden", justification = "no recursive deletes")
prefix_rule(pattern = ["dash", "-c"], decision = "allow")
"#;

const OPTIONS: &str = "[y] run once  [s] allow \"touch\" for this session  \
[a] always allow \"touch\" (writes a rule)  [n] deny  [x] deny and end the session:";

/// `execgate run --rules RULES ARGS...` in `env` on a fresh terminal.
fn on_terminal(env: &Workspace, rules: &Path, args: &[&str]) -> Terminal {
    let mut all = vec!["run", "--rules", rules.to_str().unwrap()];
    all.extend_from_slice(args);
    Terminal::start(env.execgate_session(&all))
}

/// The rows of the last prompt on screen, from its title to its options line.
fn prompt_rows(rows: &[String]) -> Vec<String> {
    let start = rows
        .iter()
        .rposition(|r| r == "execgate: approval needed")
        .unwrap_or_else(|| panic!("no prompt on screen:\n{}", rows.join("\n")));
    let end = rows[start..]
        .iter()
        .position(|r| r.starts_with("[y] run once"))
        .map_or(rows.len(), |i| start + i + 1);
    rows[start..end].to_vec()
}

/// Reads until a whole prompt is on screen.
fn until_prompt(term: &mut Terminal) {
    term.until("a prompt", |rows| {
        rows.iter().any(|r| r.starts_with("[y] run once"))
            && rows.iter().any(|r| r == "execgate: approval needed")
    });
}

// ---- (a) what a person is shown is escaped ---------------------------------------------

#[test]
fn prompt_shows_control_and_bidi_characters_in_argv_escaped() {
    let env = Workspace::new();
    let rules = env.write("r.rules", RULES);
    // An ESC sequence and a CR that would erase the command line and write a harmless one
    // in its place; a right-to-left override; a C1 control; a byte that is not UTF-8.
    let script =
        r"touch $'a\e[2K\rcommand: /bin/true' $'b\342\200\256c' $'\302\2332J' $'\xff'; echo done";
    let mut term = on_terminal(&env, &rules, &[script]);
    until_prompt(&mut term);
    assert_eq!(
        prompt_rows(&term.rows()),
        vec![
            "execgate: approval needed".to_owned(),
            r"  command: /usr/bin/touch $'a\e[2K\rcommand: /bin/true' $'b\u202ec' $'\u009b2J' $'\xff'"
                .to_owned(),
            format!("  cwd:     {}", env.work.display()),
            format!("  rule:    {}:2", rules.display()),
            "  reason:  touch needs a look".to_owned(),
            r"  runs:    /usr/bin/touch $'a\e[2K\rcommand: /bin/t ... (4 arguments)"
                .to_owned(),
            OPTIONS.to_owned(),
        ]
    );
    term.type_text("n\r");
    term.until_row("done");
    assert!(term.wait().success());
}

#[test]
fn prompt_shows_cwd_rule_and_reason_escaped() {
    let env = Workspace::new();
    // A rules folder whose name sets the window title (an OSC sequence hides itself), a
    // justification with a forged line, and a working directory with a newline and an
    // isolate that reorders what follows.
    let odd = env.root().join("r\u{1b}]0;t\u{7}");
    std::fs::create_dir(&odd).unwrap();
    let rules = odd.join("t.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"touch\"], decision = \"prompt\", \
         justification = \"look\\r\\n  cwd:     /elsewhere\\u2066\")\n",
    )
    .unwrap();
    let script = r"mkdir -p $'d\n\342\201\246x' && cd $'d\n\342\201\246x' && touch f; echo done";
    let mut term = on_terminal(&env, &rules, &[script]);
    until_prompt(&mut term);
    let root = env.root().display().to_string();
    assert_eq!(
        prompt_rows(&term.rows()),
        vec![
            "execgate: approval needed".to_owned(),
            "  command: /usr/bin/touch f".to_owned(),
            format!(r"  cwd:     $'{}/d\n\u2066x'", env.work.display()),
            format!(r"  rule:    $'{root}/r\e]0;t\a/t.rules:1'"),
            r"  reason:  $'look\r\n  cwd:\x20{5}/elsewhere\u2066'".to_owned(),
            "  runs:    /usr/bin/touch f (1 argument)".to_owned(),
            OPTIONS.to_owned(),
        ]
    );
    term.type_text("n\r");
    term.until_row("done");
    assert!(term.wait().success());
}

#[test]
fn a_long_argument_neither_pushes_the_command_off_an_80x24_prompt_nor_forges_one() {
    let env = Workspace::new();
    let rules = env.write("r.rules", RULES);
    // Red-team finding 4: a long argument scrolls the real command off the screen (600
    // letters, then spaces up to the start of a row 30 rows on), then draws a forged
    // prompt where the real one would be.
    let forged = format!(
        "--x; #{}{}{:<80}{:<79}",
        "A".repeat(600),
        " ".repeat(2407),
        "execgate: approval needed",
        "  command: /usr/bin/touch ok"
    );
    let script = format!("touch '{forged}'; echo done");
    let cmd = env.execgate_session(&["run", "--rules", rules.to_str().unwrap(), &script]);
    let mut term = Terminal::start_sized(cmd, (24, 80));
    until_prompt(&mut term);
    // The command's first 214 and last 106 bytes, the spaces counted.
    let command = format!(
        r"  command: /usr/bin/touch $'--x; #{} ... 381 more bytes ... {}\x20{{2407}}execgate: approval needed\x20{{57}}command: /usr/bin/touch ok\x20{{51}}'",
        "A".repeat(191),
        "A".repeat(28),
    );
    let mut expected = vec!["execgate: approval needed".to_owned()];
    expected.extend(command.as_bytes().chunks(80).map(|row| {
        String::from_utf8(row.to_vec())
            .unwrap()
            .trim_end()
            .to_owned()
    }));
    expected.extend([
        format!("  cwd:     {}", env.work.display()),
        format!("  rule:    {}:2", rules.display()),
        "  reason:  touch needs a look".to_owned(),
        format!(
            r"  runs:    /usr/bin/touch $'--x; #{} ... (1 argument)",
            "A".repeat(17)
        ),
        "[y] run once  [s] allow \"touch\" for this session  [a] always allow \"touch\" (writ"
            .to_owned(),
        "es a rule)  [n] deny  [x] deny and end the session:".to_owned(),
    ]);
    let screen = term.rows();
    let mut whole = vec![String::new(); screen.len() - expected.len()];
    whole.append(&mut expected);
    assert_eq!(screen, whole, "\n{}", term.text());
    term.type_text("n\r");
    term.until_row("done");
    assert!(term.wait().success());
    assert!(term
        .rows()
        .iter()
        .any(|r| r.starts_with("execgate: denied: /usr/bin/touch $'--x; #AAA")));
}

/// `execgate run --json --rules RULES [--shell SHELL] SCRIPT` without a terminal.
fn run_json(env: &Workspace, rules: &Path, shell: Option<&str>, script: &str) -> Value {
    let mut args = vec!["run", "--json", "--rules", rules.to_str().unwrap()];
    if let Some(shell) = shell {
        args.extend(["--shell", shell]);
    }
    args.push(script);
    let out = without_terminal(&mut env.execgate_session(&args))
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {} / {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The denial line printed by the wrapper (patched zsh) and by the preload shim (dash).
fn denial_line_escapes_the_command_and_the_reason(shell: Option<&str>) {
    let env = Workspace::new();
    let rules = env.write(
        "r.rules",
        "prefix_rule(pattern = [\"rm\", \"-rf\"], decision = \"forbidden\", \
         justification = \"no\\r\\nexecgate: approved \\u202eok\")\n",
    );
    // dash's printf knows octal escapes only.
    let script = r#"rm -rf "$(printf 'x\033[2J\rok')"; echo after"#;
    let report = run_json(&env, &rules, shell, script);
    assert_eq!(report["stdout"], "after\n", "{report}");
    assert_eq!(
        report["stderr"],
        "execgate: denied: /usr/bin/rm -rf $'x\\e[2J\\rok': \
         $'no\\r\\nexecgate: approved \\u202eok'\n",
        "{report}"
    );
}

#[test]
fn denial_line_escapes_the_command_and_the_reason_wrapper() {
    denial_line_escapes_the_command_and_the_reason(None);
}

#[test]
fn denial_line_escapes_the_command_and_the_reason_preload_shim() {
    denial_line_escapes_the_command_and_the_reason(Some("/bin/dash"));
}

// ---- (b) the shell runs on a pty execgate owns -----------------------------------------

/// `MAJOR:MINOR` in hex, as `stat -c %t:%T` prints a device.
fn device_of(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).unwrap();
    assert!(meta.file_type().is_char_device());
    let rdev = meta.rdev();
    format!("{:x}:{:x}", libc::major(rdev), libc::minor(rdev))
}

/// A controlling terminal as `/proc/PID/stat` gives it (`tty_nr`, decimal), as
/// `MAJOR:MINOR` in hex; `none` for 0.
fn tty_nr(field: &str) -> String {
    let nr: u32 = field.trim().parse().unwrap();
    if nr == 0 {
        return "none".into();
    }
    let (major, minor) = ((nr >> 8) & 0xfff, (nr & 0xff) | ((nr >> 12) & 0xfff00));
    format!("{major:x}:{minor:x}")
}

/// The value of the screen row `NAME=VALUE`.
fn field(term: &Terminal, name: &str) -> String {
    term.rows()
        .iter()
        .find_map(|r| r.strip_prefix(&format!("{name}=")).map(str::to_owned))
        .unwrap_or_else(|| panic!("no {name}= on screen:\n{}", term.text()))
}

fn the_shell_and_dev_tty_are_a_pty_of_the_sessions_own(backend: &str) {
    let env = Workspace::new();
    let rules = env.write("r.rules", RULES);
    // stdin, stderr and the controlling terminal (`tty_nr` of /proc/PID/stat: what
    // /dev/tty opens).
    let script = "stat -L -c 'in=%t:%T' /proc/self/fd/0; stat -L -c 'err=%t:%T' /proc/self/fd/2; \
                  echo \"ctty=$(cut -d' ' -f7 /proc/self/stat)\"; echo done";
    let mut cmd = env.execgate_session(&["run", "--rules", rules.to_str().unwrap(), script]);
    cmd.env("EXECGATE_SANDBOX_BACKEND", backend);
    if backend == "landlock" {
        cmd.arg("--allow-unprotected-landlock");
    }
    let mut term = Terminal::start(cmd);
    let user = device_of(&term.slave_path);
    term.until_row("done");
    assert!(term.wait().success(), "{}", term.text());
    let (stdin, stderr) = (field(&term, "in"), field(&term, "err"));
    assert_eq!(stdin, stderr);
    assert_eq!(stdin, tty_nr(&field(&term, "ctty")));
    assert_ne!(stdin, user, "the sandboxed shell holds the user's terminal");
}

#[test]
fn the_shell_and_dev_tty_are_a_pty_of_the_sessions_own_bubblewrap() {
    the_shell_and_dev_tty_are_a_pty_of_the_sessions_own("bubblewrap");
}

#[test]
fn the_shell_and_dev_tty_are_a_pty_of_the_sessions_own_landlock() {
    the_shell_and_dev_tty_are_a_pty_of_the_sessions_own("landlock");
}

#[test]
fn escalated_processes_get_the_sessions_pty_and_never_the_users_terminal() {
    let env = Workspace::new();
    let rules = env.write("r.rules", RULES);
    let script = "/bin/dash -c 'stat -L -c \"esc=%t:%T\" /proc/self/fd/1; \
                  echo \"escctty=$(cut -d\" \" -f7 /proc/self/stat)\"; \
                  if (exec 3<>/dev/tty) 2>/dev/null; then echo tty-opened; else echo no-tty; fi'; \
                  stat -L -c 'run=%t:%T' /proc/self/fd/1; echo done";
    let mut term = on_terminal(&env, &rules, &[script]);
    let user = device_of(&term.slave_path);
    term.until_row("done");
    assert!(term.wait().success(), "{}", term.text());
    let (esc, run) = (field(&term, "esc"), field(&term, "run"));
    assert_eq!(esc, run, "{}", term.text());
    assert_ne!(esc, user);
    assert_eq!(tty_nr(&field(&term, "escctty")), "none");
    assert!(term.rows().iter().any(|r| r == "no-tty"), "{}", term.text());
}

#[test]
fn writes_to_dev_tty_are_held_back_while_a_prompt_is_up() {
    let env = Workspace::new();
    let rules = env.write("r.rules", RULES);
    // A background process keeps repainting the screen through /dev/tty with a forged
    // prompt while the real one is asked.
    let script = r"(while :; do printf '\033[2J\033[HFAKE execgate: approval needed\n  command: /bin/true\n' >/dev/tty; sleep 0.02; done) &
touch gated; kill $!; echo done";
    let mut term = on_terminal(&env, &rules, &[script]);
    until_prompt(&mut term);
    let asked = term.bytes.len();
    term.soak(600);
    assert!(
        !String::from_utf8_lossy(&term.bytes[asked..]).contains("FAKE"),
        "the session wrote to the screen while the prompt was up:\n{}",
        term.text()
    );
    assert_eq!(
        prompt_rows(&term.rows())[1],
        "  command: /usr/bin/touch gated"
    );
    term.type_text("n\r");
    // Held back, not lost: the repaints resume once the prompt is answered.
    let answered = term.bytes.len();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !String::from_utf8_lossy(&term.bytes[answered..]).contains("FAKE") {
        assert!(std::time::Instant::now() < deadline, "{}", term.text());
        term.soak(50);
    }
    term.until_row("done");
    assert!(term.wait().success());
}

#[test]
fn tiocsti_on_the_sessions_terminal_is_refused() {
    let env = Workspace::new();
    let rules = env.write("r.rules", RULES);
    let script = "python3 -c 'import fcntl, termios\ntry:\n    fcntl.ioctl(0, termios.TIOCSTI, b\"x\")\n    print(\"injected\")\nexcept OSError as e:\n    print(\"refused\", e.errno)'";
    let mut term = on_terminal(&env, &rules, &[script]);
    term.until("an answer", |rows| {
        rows.iter()
            .any(|r| r.starts_with("injected") || r.starts_with("refused "))
    });
    term.wait();
    assert!(
        term.rows().iter().any(|r| r == "refused 1"),
        "{}",
        term.text()
    );
}

#[test]
fn job_control_and_window_size_work_on_the_relayed_pty() {
    let env = Workspace::new();
    let rules = env.write("r.rules", RULES);
    let mut cmd = env.execgate_session(&[
        "run",
        "--rules",
        rules.to_str().unwrap(),
        "exec /bin/bash --norc --noprofile -i",
    ]);
    cmd.env("PS1", "inner$ ");
    let mut term = Terminal::start(cmd);
    term.until_row("inner$");
    term.type_text("sleep 1919\r");
    term.until_row("inner$ sleep 1919");
    let sleep = wait_for_process("1919");
    term.type_text("\x1a");
    term.until_row("Stopped");
    term.type_text("fg\r");
    // Ctrl-C once the job is running in the foreground of the session's terminal again.
    wait_until_foreground(sleep);
    term.type_text("\x03");
    term.until_row("inner$");
    term.type_text("echo \"rc=$?\"\r");
    term.until("rc=130", |rows| rows.iter().any(|r| r == "rc=130"));
    term.resize(40, 120);
    term.type_text("stty size\r");
    term.until("40 120", |rows| rows.iter().any(|r| r == "40 120"));
    term.type_text("exit\r");
    assert!(term.wait().success(), "{}", term.text());
}

/// The pid of the live process with argument `arg` (waits for it).
fn wait_for_process(arg: &str) -> i32 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(pid) = crate::support::procs::find_process(arg) {
            return pid;
        }
        assert!(std::time::Instant::now() < deadline, "no process {arg}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Waits until `pid` runs (not stopped) as the foreground group of its terminal.
fn wait_until_foreground(pid: i32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // After the comm field: state, ppid, pgrp, session, tty_nr, tpgid.
        let rest: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        if rest[0] != "T" && rest[2] == rest[5] {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{pid} never in the foreground"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

// ---- the user's terminal is given back -------------------------------------------------

fn raw(termios: &nix::sys::termios::Termios) -> bool {
    !termios
        .local_flags
        .contains(nix::sys::termios::LocalFlags::ICANON)
}

#[test]
fn terminal_modes_are_restored_when_the_session_ends() {
    let env = Workspace::new();
    let rules = env.write("r.rules", RULES);
    let mut term = on_terminal(&env, &rules, &["read -r line; echo \"got $line\""]);
    let before = term.termios();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !raw(&term.termios()) {
        assert!(std::time::Instant::now() < deadline, "never in raw mode");
        term.soak(20);
    }
    term.type_text("hello\r");
    term.until_row("got hello");
    assert!(term.wait().success());
    let after = term.termios();
    assert_eq!(after.local_flags, before.local_flags);
    assert_eq!(after.input_flags, before.input_flags);
    assert_eq!(after.output_flags, before.output_flags);
}

#[test]
fn terminal_modes_are_restored_when_execgate_is_killed_by_sigterm() {
    let env = Workspace::new();
    let rules = env.write("r.rules", RULES);
    let mut term = on_terminal(&env, &rules, &["sleep 1717"]);
    let before = term.termios();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !raw(&term.termios()) {
        assert!(std::time::Instant::now() < deadline, "never in raw mode");
        term.soak(20);
    }
    // SAFETY: kill(2) of the process this test started.
    unsafe { libc::kill(term.pid(), libc::SIGTERM) };
    let status = term.wait();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    let after = term.termios();
    assert_eq!(after.local_flags, before.local_flags);
    assert_eq!(after.input_flags, before.input_flags);
    // Nothing of the session is left.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while crate::support::procs::find_process("1717").is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the session's sleep lives on"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

// ---- (c) no typeahead answers a prompt -------------------------------------------------

#[test]
fn typeahead_never_answers_a_prompt() {
    let env = Workspace::new();
    let rules = env.write("r.rules", RULES);
    let mut term = on_terminal(&env, &rules, &["touch ahead; echo done"]);
    // Typed before any prompt is on screen.
    term.type_text("y\ry\r");
    until_prompt(&mut term);
    term.soak(300);
    assert!(!env.work.join("ahead").exists());
    term.type_text("n\r");
    term.until_row("done");
    assert!(term
        .rows()
        .iter()
        .any(|r| r == "execgate: denied: /usr/bin/touch ahead: denied by the user"));
    assert!(term.wait().success());
    assert!(!env.work.join("ahead").exists());
}

#[test]
fn an_answer_needs_enter_and_can_be_corrected() {
    let env = Workspace::new();
    let rules = env.write("r.rules", RULES);
    let mut term = on_terminal(&env, &rules, &["touch t; echo done"]);
    until_prompt(&mut term);
    term.type_text("y");
    term.soak(300);
    assert!(!env.work.join("t").exists());
    // Backspace, then the real answer.
    term.type_text("\x7fn\r");
    term.until_row("done");
    assert!(term.wait().success());
    assert!(!env.work.join("t").exists());
}

// ---- (d) a flood of prompts ------------------------------------------------------------

#[test]
fn a_flood_of_prompts_is_asked_one_at_a_time_and_ends_with_the_session() {
    let env = Workspace::new();
    let rules = env.write(
        "r.rules",
        "prefix_rule(pattern = [\"git\", \"push\"], decision = \"prompt\")\n",
    );
    let script = "for i in $(seq 200); do git push origin flood-$i & done; wait";
    let mut term = on_terminal(&env, &rules, &[script]);
    until_prompt(&mut term);
    term.soak(300);
    let rows = term.rows();
    assert_eq!(
        rows.iter()
            .filter(|r| *r == "execgate: approval needed")
            .count(),
        1,
        "{}",
        term.text()
    );
    // x: deny and end the session; every other exec is refused with it.
    term.type_text("x\r");
    let status = term.wait();
    assert_eq!(status.code(), Some(130), "{}", term.text());
    let wrapper = crate::support::bins::wrapper();
    let left: Vec<i32> = crate::support::procs::processes()
        .into_iter()
        .filter(|p| p.state != 'Z' && p.exe().as_deref() == Some(wrapper.as_path()))
        .filter(|p| p.cmdline().iter().any(|a| a.starts_with(b"flood-")))
        .map(|p| p.pid)
        .collect();
    assert_eq!(left, Vec::<i32>::new(), "execs outlived the session");
}

// ---- sandbox check ---------------------------------------------------------------------

const RELAY_ON: &str =
    "terminal relay: on: the shell runs on a pty of its own (its stdin, stdout, \
stderr and /dev/tty) that execgate relays to this terminal in raw mode; nothing the session \
writes is shown while a prompt is up, and typeahead never answers one; execgate, escalated \
commands and hooks never hold the user's terminal";

const RELAY_NONE: &str = "terminal relay: none here (no controlling terminal): the shell gets \
no terminal at all, and nobody can be asked; execgate, escalated commands and hooks never hold \
the user's terminal";

#[test]
fn sandbox_check_states_the_terminal_relay_for_each_backend() {
    for backend in ["bubblewrap", "landlock"] {
        let env = Workspace::new();
        let mut cmd = env.execgate(&["sandbox", "check", "--cwd", env.work.to_str().unwrap()]);
        cmd.env("EXECGATE_SANDBOX_BACKEND", backend);
        let out = without_terminal(&mut cmd).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{backend}: {text}");
        assert_eq!(text.lines().last(), Some(RELAY_NONE), "{backend}");

        let mut cmd = env.execgate(&["sandbox", "check", "--cwd", env.work.to_str().unwrap()]);
        cmd.env("EXECGATE_SANDBOX_BACKEND", backend);
        let mut term = Terminal::start(cmd);
        assert!(term.wait().success(), "{backend}: {}", term.text());
        let joined: String = String::from_utf8_lossy(&term.bytes).replace("\r\n", "\n");
        assert_eq!(joined.lines().last(), Some(RELAY_ON), "{backend}");
    }
}
