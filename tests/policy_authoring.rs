//! End-to-end tests of the policy authoring commands: `execgate policy check --explain`,
//! `execgate policy lint` and `execgate policy suggest`, run as a user would, with exact
//! output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn execgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_execgate"))
}

fn example_rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/basic.rules")
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("execgate runs");
    (
        status.code().expect("exited normally"),
        String::from_utf8(stdout).expect("utf-8 stdout"),
        String::from_utf8(stderr).expect("utf-8 stderr"),
    )
}

#[test]
fn explain_says_which_rules_matched_how_and_why_the_winner_won() {
    let rules = example_rules();
    let (code, stdout, stderr) = run(execgate()
        .args([
            "policy",
            "check",
            "--explain",
            "--resolve-host-executables",
            "--rules",
        ])
        .arg(&rules)
        .args(["--", "/usr/bin/git", "push", "origin"]));
    assert_eq!((code, stderr.as_str()), (0, ""));
    let file = rules.display();
    assert_eq!(
        stdout,
        format!(
            "command: [\"/usr/bin/git\", \"push\", \"origin\"]\n\
             program: \"/usr/bin/git\": no rule for it matched; falls back to rules for \"git\": host_executable at {file}:14:1 lists it\n\
             matched:\n  {file}:25:1 [\"git\", \"push\"] prompt (through \"git\"): matched [\"git\", \"push\"]\n\
             near misses:\n  {file}:17:1 [\"git\", [\"status\", \"log\", \"diff\", \"show\"]] allow (through \"git\"): argument 1 is \"push\", the rule wants \"status\" or \"log\" or \"diff\" or \"show\"\n\
             decision: prompt, from {file}:25:1 (the only matching rule)\n"
        )
    );
}

#[test]
fn explain_json_is_the_codex_json_plus_an_explain_key() {
    let rules = example_rules();
    let args = ["--", "git", "push", "origin", "main"];
    let (_, codex, _) = run(execgate()
        .args(["policy", "check", "--rules"])
        .arg(&rules)
        .args(args));
    let (code, explained, stderr) = run(execgate()
        .args(["policy", "check", "--explain", "--json", "--rules"])
        .arg(&rules)
        .args(args));
    assert_eq!((code, stderr.as_str()), (0, ""));
    let head = codex.strip_suffix("}\n").expect("one JSON object");
    assert!(
        explained.starts_with(&format!(
            "{head},\"explain\":{{\"argv\":[\"git\",\"push\",\"origin\",\"main\"],"
        )),
        "{explained}"
    );
    let value: serde_json::Value = serde_json::from_str(&explained).expect("json");
    assert_eq!(
        value["explain"]["deciding_rule"],
        serde_json::json!({"file": rules.display().to_string(), "line": 25, "column": 1})
    );
}

#[test]
fn json_without_explain_is_refused() {
    let (code, stdout, stderr) = run(execgate()
        .args(["policy", "check", "--json", "--rules"])
        .arg(example_rules())
        .args(["--", "ls"]));
    assert_eq!((code, stdout.as_str()), (2, ""));
    assert!(
        stderr.contains("the following required arguments were not provided:\n  --explain"),
        "{stderr}"
    );
}

/// A transcript from README.md: the code block holding `$ execgate ARGS`, as (the arguments
/// after `execgate`, split with shell quoting; the lines printed, each ending in a newline).
/// Indentation of the block is removed.
fn readme_transcript(command_start: &str) -> (Vec<String>, String) {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let mut lines = readme.lines();
    let mut indent = 0;
    let command = lines
        .by_ref()
        .find_map(|line| {
            let trimmed = line.trim_start();
            indent = line.len() - trimmed.len();
            trimmed
                .strip_prefix(&format!("$ execgate {command_start}"))
                .map(|rest| format!("{command_start}{rest}"))
        })
        .unwrap_or_else(|| panic!("README has no `$ execgate {command_start}` transcript"));
    let mut output = String::new();
    for line in lines {
        let line = line.get(indent..).unwrap_or(line.trim_start());
        if line.starts_with("```") || line.starts_with("$ ") {
            break;
        }
        output.push_str(line);
        output.push('\n');
    }
    (shlex::split(&command).expect("shell words"), output)
}

#[test]
fn readme_explain_transcript_is_what_execgate_prints() {
    let (args, expected) = readme_transcript("policy check --explain");
    let (code, stdout, stderr) = run(execgate()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(&args));
    assert_eq!((code, stderr.as_str()), (0, ""));
    assert_eq!(stdout, expected);
}
