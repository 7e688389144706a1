//! End-to-end tests of the terminal while execgate asks (design invariant 7): what a person
//! is shown is escaped, the sandboxed shell runs on a pty execgate owns and relays, nothing
//! the session writes reaches the screen while a prompt is up, and no typeahead answers a
//! prompt. Each test runs `execgate run` on a real pty and compares the rendered screen
//! (a `vt100` model of the terminal), not the bytes.

use crate::support::dirs::Workspace;
use crate::support::pty::{without_terminal, Terminal};
use serde_json::Value;
use std::path::Path;

const RULES: &str = r#"
prefix_rule(pattern = ["touch"], decision = "prompt", justification = "touch needs a look")
prefix_rule(pattern = ["rm", "-rf"], decision = "forbidden", justification = "no recursive deletes")
prefix_rule(pattern = ["sh", "-c"], decision = "allow")
"#;

const OPTIONS: &str =
    "[y] run once  [s] allow this prefix for the session  [a] always  [n] deny  [x] deny and end the session:";

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
            r"  reason:  $'look\r\n  cwd:     /elsewhere\u2066'".to_owned(),
            OPTIONS.to_owned(),
        ]
    );
    term.type_text("n\r");
    term.until_row("done");
    assert!(term.wait().success());
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
