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

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn lint_reports_findings_with_a_fix_and_exits_1_on_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = write(
        dir.path(),
        "t.rules",
        "prefix_rule(pattern = [\"xargs\"], match = [\"xargs rm\"])\n\
         prefix_rule(pattern = [\"ls\"], decision = \"prompt\")\n",
    );
    let (code, stdout, stderr) = run(execgate()
        .env("PATH", dir.path())
        .args(["policy", "lint", "--rules"])
        .arg(&rules));
    assert_eq!((code, stderr.as_str()), (1, ""));
    let file = rules.display();
    assert_eq!(
        stdout,
        format!(
            "{file}:1:1: error: allow escalates `xargs`: outside the sandbox it runs the command in its arguments (`xargs sh -c '...'`)\n  \
             fix: write decision = \"prompt\" (a person sees each command), or remove the rule so `xargs` runs inside the sandbox\n\
             {file}:2:1: warning: rule [\"ls\"] has no `match` example\n  \
             fix: add match = [\"ls\"] (and not_match for what must stay out), so `execgate policy test` shows the rule matches what you meant\n\
             1 error, 1 warning\n"
        )
    );
}

#[test]
fn lint_exits_0_on_warnings_unless_told_to_deny_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = write(
        dir.path(),
        "t.rules",
        "prefix_rule(pattern = [\"ls\"], decision = \"prompt\")\n",
    );
    let lint = |extra: &[&str]| {
        run(execgate()
            .env("PATH", dir.path())
            .args(["policy", "lint"])
            .args(extra)
            .arg("--rules")
            .arg(&rules))
    };
    assert_eq!(lint(&[]).0, 0);
    assert_eq!(lint(&["--deny-warnings"]).0, 1);
}

#[test]
fn lint_of_a_clean_file_says_so_and_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = write(
        dir.path(),
        "t.rules",
        "prefix_rule(pattern = [\"git\", \"push\"], decision = \"prompt\", match = [\"git push\"])\n",
    );
    let (code, stdout, _) = run(execgate()
        .env("PATH", dir.path())
        .args(["policy", "lint", "--deny-warnings", "--rules"])
        .arg(&rules));
    assert_eq!((code, stdout.as_str()), (0, "0 errors, 0 warnings\n"));
}

#[test]
fn lint_json_lists_each_finding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = write(
        dir.path(),
        "t.rules",
        "prefix_rule(pattern = [\"ls\"], decision = \"prompt\", match = [\"cat\"])\n",
    );
    let (code, stdout, _) = run(execgate()
        .env("PATH", dir.path())
        .args(["policy", "lint", "--json", "--rules"])
        .arg(&rules));
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(
        report,
        serde_json::json!({
            "findings": [{
                "file": rules.display().to_string(), "line": 1, "column": 1,
                "severity": "error", "code": "example-fails",
                "message": "`match` example `cat` does not match pattern [\"ls\"]",
                "fix": "fix the example or the pattern (`execgate policy test` lists every example)"
            }],
            "errors": 1,
            "warnings": 0
        })
    );
}

#[test]
fn lint_looks_names_up_on_path_and_follows_links() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("mkdir");
    let real = bin.join("realtool");
    std::fs::write(&real, "#!/bin/sh\n").expect("write");
    std::fs::set_permissions(&real, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    std::os::unix::fs::symlink("realtool", bin.join("tool")).expect("symlink");
    let rules = write(
        dir.path(),
        "t.rules",
        "prefix_rule(pattern = [\"tool\", \"run\"], decision = \"forbidden\", match = [\"tool run\"])\n",
    );
    let (code, stdout, _) = run(execgate()
        .env("PATH", format!("relative/bin:{}", bin.display()))
        .args(["policy", "lint", "--rules"])
        .arg(&rules));
    assert_eq!(code, 0);
    let bin = bin.canonicalize().expect("canonical");
    assert_eq!(
        stdout,
        format!(
            "{}:1:1: warning: \"tool\" runs \"{real}\" on this machine (\"{link}\" is a link): execgate checks a command against the name it was invoked by and the file that runs, strictest decision wins, so rules for \"realtool\" also decide \"tool\" commands, and \"realtool\" run by its own name is not decided by this rule\n  \
             fix: list both names in the first position (pattern = [[\"tool\", \"realtool\"], ...]) so running \"realtool\" directly is decided the same way\n\
             0 errors, 1 warning\n",
            rules.display(),
            real = bin.join("realtool").display(),
            link = dir.path().join("bin/tool").display(),
        )
    );
}

#[test]
fn lint_of_an_unloadable_file_fails_with_one_located_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = write(dir.path(), "t.rules", "prefix_rule(pattern = [])\n");
    let (code, stdout, stderr) = run(execgate().args(["policy", "lint", "--rules"]).arg(&rules));
    assert_eq!((code, stdout.as_str()), (2, ""));
    assert!(
        stderr.starts_with(&format!("execgate: {}:1:1: ", rules.display())),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
