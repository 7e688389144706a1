//! `execgate hooks check` and `execgate hooks permission-request`, run as a user would.

use crate::support::bins::repo_root;
use crate::support::dirs::Workspace;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Output;

const ALLOW: &str = r#"{"hookSpecificOutput":{"hookEventName":"PermissionRequest","decision":{"behavior":"allow"}}}"#;

/// A workspace (whose empty HOME keeps the user's own hooks out of every test) to write
/// hooks files in and run `execgate` from.
struct Fixture {
    ws: Workspace,
}

impl Fixture {
    fn new() -> Self {
        Self {
            ws: Workspace::new(),
        }
    }

    fn path(&self) -> &Path {
        &self.ws.work
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        self.ws.write(name, text)
    }

    fn hooks_file(&self, name: &str, hooks: Value) -> PathBuf {
        self.write(name, &json!({ "hooks": hooks }).to_string())
    }

    fn execgate(&self, args: &[&str]) -> Output {
        self.ws.execgate(args).output().unwrap()
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn path_arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn check_lists_handlers_per_event_and_prints_warnings() {
    let fx = Fixture::new();
    let file = fx.hooks_file(
        "hooks.json",
        json!({
            "PermissionRequest": [
                {"matcher": "Bash", "hooks": [
                    {"type": "command", "command": "sh guard.sh", "timeout": 30, "statusMessage": "Checking"},
                    {"type": "command", "command": ""},
                ]},
                {"hooks": [{"type": "command", "command": "true"}]},
            ],
            "Stop": [{"hooks": [{"type": "command", "command": "echo bye"}]}],
            "Bogus": [],
        }),
    );
    let out = fx.execgate(&["hooks", "check", "--hooks", path_arg(&file)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let f = file.display();
    assert_eq!(
        stdout(&out),
        format!(
            "{f}: ok (3 handlers)\n\
             PermissionRequest:\n\
             \x20 1. matcher \"Bash\", timeout 30s: sh guard.sh\n\
             \x20    status message: Checking\n\
             \x20    from {f}\n\
             \x20 2. matcher (all tools), timeout 600s: true\n\
             \x20    from {f}\n\
             Stop:\n\
             \x20 1. timeout 600s: echo bye\n\
             \x20    from {f}\n\
             warning: ignoring unknown hook event \"Bogus\" in {f}\n\
             warning: skipping empty hook command in {f}\n"
        )
    );
}

#[test]
fn check_exits_nonzero_and_names_line_and_column_of_a_broken_file() {
    let fx = Fixture::new();
    let good = fx.hooks_file(
        "good.json",
        json!({"PermissionRequest": [{"hooks": [{"type": "command", "command": "true"}]}]}),
    );
    let bad = fx.write(
        "bad.json",
        "{\"hooks\": {\n  \"PermissionRequest\": [}\n}\n",
    );
    let out = fx.execgate(&[
        "hooks",
        "check",
        "--hooks",
        path_arg(&good),
        "--hooks",
        path_arg(&bad),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("{}: ok (1 handler)\n", good.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "error: {}:2:25: invalid JSON in hooks file: expected value\n",
            bad.display()
        )),
        "{text}"
    );
}

#[test]
fn permission_request_json_reports_runs_in_configured_order_and_the_fold() {
    let fx = Fixture::new();
    let file = fx.hooks_file(
        "hooks.json",
        json!({"PermissionRequest": [{"matcher": "Bash", "hooks": [
            {"type": "command", "command": format!("printf '%s' '{ALLOW}'")},
            {"type": "command", "command": "echo 'not on my watch' >&2; exit 2"},
            {"type": "command", "command": "exit 7"},
            {"type": "command", "command": "echo '{\"systemMessage\":\"fyi\"}'"},
        ]}]}),
    );
    let out = fx.execgate(&[
        "hooks",
        "permission-request",
        "--hooks",
        path_arg(&file),
        "--command",
        "/usr/bin/git push",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let expected = json!({
        "decision": "deny",
        "message": "not on my watch",
        "interrupt": false,
        "runs": [
            {"command": format!("printf '%s' '{ALLOW}'"), "status": "completed", "entries": []},
            {"command": "echo 'not on my watch' >&2; exit 2", "status": "blocked",
             "entries": [{"kind": "feedback", "text": "not on my watch"}]},
            {"command": "exit 7", "status": "failed",
             "entries": [{"kind": "error", "text": "hook exited with code 7"}]},
            {"command": "echo '{\"systemMessage\":\"fyi\"}'", "status": "completed",
             "entries": [{"kind": "warning", "text": "fyi"}]},
        ],
    });
    let actual: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(actual, expected);
    // Top-level keys come in the documented order.
    assert!(stdout(&out).starts_with(
        r#"{"decision":"deny","message":"not on my watch","interrupt":false,"runs":["#
    ));
}

#[test]
fn permission_request_with_no_decision_prints_null_decision() {
    let fx = Fixture::new();
    let file = fx.hooks_file(
        "hooks.json",
        json!({"PermissionRequest": [{"matcher": "Edit", "hooks": [{"type": "command", "command": "exit 2"}]}]}),
    );
    let out = fx.execgate(&[
        "hooks",
        "permission-request",
        "--hooks",
        path_arg(&file),
        "--command",
        "ls",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out),
        "{\"decision\":null,\"message\":null,\"interrupt\":false,\"runs\":[]}\n"
    );
}

#[test]
fn permission_request_passes_command_description_and_cwd_to_the_hook_run_where_execgate_started() {
    let fx = Fixture::new();
    let work = fx.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let file = fx.hooks_file(
        "hooks.json",
        json!({"PermissionRequest": [{"hooks": [{"type": "command", "command": "cat > input.json"}]}]}),
    );
    let out = fx.execgate(&[
        "hooks",
        "permission-request",
        "--hooks",
        path_arg(&file),
        "--command",
        "/usr/bin/touch '/tmp/a b'",
        "--description",
        "make a file",
        "--cwd",
        path_arg(&work),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The hook ran in the folder execgate was started in, not the command's.
    assert!(!work.join("input.json").exists());
    let input: Value =
        serde_json::from_str(&std::fs::read_to_string(fx.path().join("input.json")).unwrap())
            .unwrap();
    assert_eq!(input["cwd"], path_arg(&work));
    assert_eq!(input["hook_event_name"], "PermissionRequest");
    assert_eq!(input["tool_name"], "Bash");
    assert_eq!(input["permission_mode"], "default");
    assert_eq!(input["transcript_path"], Value::Null);
    assert_eq!(
        input["tool_input"],
        json!({"command": "/usr/bin/touch '/tmp/a b'", "description": "make a file"})
    );
    assert_eq!(input["session_id"].as_str().unwrap().len(), 36);
}

#[test]
fn permission_request_text_output_shows_each_run_and_the_decision() {
    let fx = Fixture::new();
    let file = fx.hooks_file(
        "hooks.json",
        json!({"PermissionRequest": [{"hooks": [
            {"type": "command", "command": "echo '{oops'", "statusMessage": "Asking the linter"},
            {"type": "command", "command": format!("printf '%s' '{ALLOW}'")},
        ]}]}),
    );
    let out = fx.execgate(&[
        "hooks",
        "permission-request",
        "--hooks",
        path_arg(&file),
        "--command",
        "ls",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out),
        format!(
            "hook 1/2: failed: echo '{{oops'\n\
             \x20 error: hook returned invalid permission-request JSON output\n\
             hook 2/2: completed: printf '%s' '{ALLOW}'\n\
             decision: allow\n"
        )
    );
    assert_eq!(stderr(&out), "execgate: hook: Asking the linter\n");
}

#[test]
fn permission_request_refuses_to_run_with_a_broken_hooks_file() {
    let fx = Fixture::new();
    let marker = fx.path().join("ran");
    let good = fx.hooks_file(
        "good.json",
        json!({"PermissionRequest": [{"hooks": [{"type": "command", "command": format!("touch '{}'", marker.display())}]}]}),
    );
    let bad = fx.hooks_file("bad.json", json!({"PermissionRequest": {"not": "a list"}}));
    let out = fx.execgate(&[
        "hooks",
        "permission-request",
        "--hooks",
        path_arg(&good),
        "--hooks",
        path_arg(&bad),
        "--command",
        "ls",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("execgate: {}:1:", bad.display())),
        "{err}"
    );
    assert!(
        err.contains("invalid hooks file: invalid type: map, expected a sequence"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);
    assert!(!marker.exists());
}

#[test]
fn permission_request_rejects_a_missing_cwd() {
    let fx = Fixture::new();
    let out = fx.execgate(&[
        "hooks",
        "permission-request",
        "--command",
        "ls",
        "--cwd",
        "/nonexistent/dir",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "execgate: --cwd /nonexistent/dir: not a directory\n"
    );
}

/// Installs the example hook as README says: guard.sh (executable) and hooks.json in
/// `~/.config/execgate/`, where discovery finds them.
fn install_example(fx: &Fixture) {
    let example = repo_root().join("examples/hooks");
    let dir = fx.ws.home.join(".config/execgate");
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["hooks.json", "guard.sh"] {
        std::fs::copy(example.join(name), dir.join(name)).unwrap();
    }
    std::fs::set_permissions(
        dir.join("guard.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
}

fn ask_example(fx: &Fixture, command: &str) -> Value {
    let out = fx.execgate(&[
        "hooks",
        "permission-request",
        "--command",
        command,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

#[test]
fn example_hook_denies_force_pushes() {
    let fx = Fixture::new();
    install_example(&fx);
    for command in [
        "/usr/bin/git push --force origin main",
        "/usr/bin/git push -uf origin main",
        "/usr/bin/git push origin +main",
        "/usr/bin/git push --force-with-lease=main origin main",
    ] {
        let outcome = ask_example(&fx, command);
        assert_eq!(outcome["decision"], "deny", "{command}");
        assert_eq!(
            outcome["message"],
            "force-pushing is not allowed here; push without --force or +"
        );
        assert_eq!(outcome["interrupt"], false);
    }
}

#[test]
fn example_hook_allows_exactly_a_push_to_origin_and_is_silent_otherwise() {
    let fx = Fixture::new();
    install_example(&fx);
    assert_eq!(
        ask_example(&fx, "/usr/bin/git push origin main")["decision"],
        "allow"
    );
    // Text matching would let these through; the exact argv does not.
    for command in [
        "/usr/bin/git push evil '/git status'",
        "/usr/bin/git push evil 'origin main'",
        "/usr/bin/git push origin main --receive-pack=/tmp/x",
        "/tmp/git push origin main",
        "/usr/bin/npm publish",
    ] {
        let silent = ask_example(&fx, command);
        assert_eq!(silent["decision"], Value::Null, "{command}");
        assert_eq!(silent["runs"][0]["status"], "completed", "{command}");
    }
}

#[test]
fn example_hooks_file_checks_clean() {
    let fx = Fixture::new();
    let example = repo_root().join("examples/hooks/hooks.json");
    let out = fx.execgate(&["hooks", "check", "--hooks", path_arg(&example)]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!stdout(&out).contains("warning:"), "{}", stdout(&out));
}
