//! `execgate mcp` under the real agent CLIs (Codex CLI and Claude Code, pinned, from npm),
//! registered exactly as the README says, each driven by a fake model on loopback that
//! asks for `shell` calls. The assertions read what the client sent back to the model: the
//! tool result the model sees. One client process per scenario; a scenario's calls run in
//! one session, one per model turn.

use crate::support::agents;
use crate::support::bins::repo_root;
use crate::support::dirs::Workspace;
use crate::support::fake_model::{Api, FakeModel, Step};
use crate::support::pty::Terminal;
use crate::support::readme;
use serde_json::{json, Value};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The example rules' denial of `rm -rf build`, as the wrapper prints it.
const RM_DENIED: &str = "execgate: denied: /usr/bin/rm -rf build: recursive forced deletion is \
                         not allowed; delete specific files instead\n";

/// A person's home, a workspace (a git repository the person trusted with `execgate
/// trust`, so that `git push` there may escalate) and a folder outside it, for one
/// scenario.
struct Env {
    ws: Workspace,
    outside: PathBuf,
}

impl Env {
    fn new() -> Self {
        // Not under /tmp: Codex refuses to set up its helpers in a temporary folder (it
        // only warns, but the warning is noise in every failure message).
        let ws = Workspace::outside_temp();
        let outside = ws.root().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let git = Command::new("git")
            .args(["init", "-q"])
            .arg(&ws.work)
            .env("HOME", &ws.home)
            .status()
            .unwrap();
        assert!(git.success());
        ws.trust();
        Self { ws, outside }
    }

    /// A `shell` call's arguments in the workspace.
    fn call(&self, command: &str) -> Step {
        Step::Call(json!({"command": command, "workdir": self.ws.work, "login": false}))
    }

    /// Same, with the model's `justification`.
    fn call_because(&self, command: &str, justification: &str) -> Step {
        Step::Call(
            json!({"command": command, "workdir": self.ws.work, "login": false,
                          "justification": justification}),
        )
    }
}

/// Runs `cmd` to its end; a client that hangs is killed after two minutes (a guard against
/// a stuck test, not a timing assertion).
fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn describe(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The JSON object the model sees in a tool result (Codex puts a "Wall time" line before it).
fn seen(text: &str) -> Value {
    let start = text
        .find('{')
        .unwrap_or_else(|| panic!("no JSON in the tool result the model sees: {text}"));
    serde_json::from_str(&text[start..])
        .unwrap_or_else(|e| panic!("the tool result is not one JSON object ({e}): {text}"))
}

/// The environment every client gets: nothing of the developer's own configuration.
fn client_command(program: &Path, env: &Env) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("HOME", &env.ws.home)
        .env("LANG", "C.UTF-8")
        .current_dir(&env.ws.work);
    cmd
}

// ---------------------------------------------------------------------------------------
// Codex CLI

/// `CODEX_HOME/config.toml`: the fake model, then the README's registration (localized;
/// `args_line` replaces its `args = ...` line when given), and the example rules in
/// `CODEX_HOME/rules`.
fn codex_home(env: &Env, model: &FakeModel, args_line: Option<&str>) -> PathBuf {
    let codex_home = env.ws.home.join(".codex");
    std::fs::create_dir_all(codex_home.join("rules")).unwrap();
    std::fs::copy(
        repo_root().join("examples/basic.rules"),
        codex_home.join("rules/basic.rules"),
    )
    .unwrap();
    let mut registration = readme::block("**Register with Codex**");
    if let Some(line) = args_line {
        let old = registration
            .lines()
            .find(|l| l.starts_with("args = "))
            .unwrap()
            .to_string();
        registration = registration.replace(&old, line);
    }
    let config = format!(
        "model = \"fake-model\"\nmodel_provider = \"fake\"\ncheck_for_update_on_startup = false\n\n\
         {}\n[model_providers.fake]\nname = \"fake\"\nbase_url = \"{}/v1\"\n\
         wire_api = \"responses\"\nenv_key = \"FAKE_MODEL_KEY\"\n",
        readme::localize(&registration, &env.ws.home),
        model.url
    );
    std::fs::write(codex_home.join("config.toml"), config).unwrap();
    codex_home
}

/// `codex exec -s SANDBOX` through the whole script; returns the tool results the model saw.
fn codex_exec(env: &Env, script: Vec<Step>, sandbox: &str, args_line: Option<&str>) -> Vec<Value> {
    let codex = agents::codex();
    let calls = script.iter().filter(|s| matches!(s, Step::Call(_))).count();
    let model = FakeModel::start(Api::Responses, script);
    let codex_home = codex_home(env, &model, args_line);
    let mut cmd = client_command(&codex, env);
    cmd.env("CODEX_HOME", &codex_home)
        .env("FAKE_MODEL_KEY", "test")
        .args([
            "exec",
            "--skip-git-repo-check",
            "-s",
            sandbox,
            "do the task",
        ]);
    let out = run(cmd);
    assert!(out.status.success(), "{}", describe(&out));
    let results = model.tool_results(Api::Responses);
    assert_eq!(results.len(), calls, "{results:#?}\n{}", describe(&out));
    results.iter().map(|text| seen(text)).collect()
}

#[test]
fn codex_exec_with_the_readme_registration_runs_denies_and_says_who_declined() {
    let env = Env::new();
    let outside = env.outside.display();
    let results = codex_exec(
        &env,
        vec![
            env.call("echo hello from codex"),
            env.call("rm -rf build"),
            env.call("git push; echo status=$?"),
            env.call(&format!(
                "touch inside; touch .git/planted; touch {outside}/escaped; echo done"
            )),
            Step::Say("finished"),
        ],
        "workspace-write",
        None,
    );
    assert_eq!(results[0]["stdout"], "hello from codex\n", "{}", results[0]);
    assert_eq!(results[0]["exit_code"], 0, "{}", results[0]);
    assert_eq!(results[1]["stderr"], RM_DENIED, "{}", results[1]);
    // Codex exec declines every elicitation without asking anyone: say so, not "the user".
    let stderr = results[2]["stderr"].as_str().unwrap();
    assert!(
        stderr.contains("git push: the MCP client declined the approval request\n"),
        "{}",
        results[2]
    );
    assert_eq!(results[2]["stdout"], "status=126\n", "{}", results[2]);
    // Codex's workspace-write: the workspace is writable, its .git and the world are not.
    assert_eq!(results[3]["stdout"], "done\n", "{}", results[3]);
    assert!(env.ws.work.join("inside").exists(), "{}", results[3]);
    assert!(!env.ws.work.join(".git/planted").exists(), "{}", results[3]);
    assert!(!env.outside.join("escaped").exists(), "{}", results[3]);
}

#[test]
fn codex_exec_read_only_sandbox_blocks_a_write_in_the_workspace() {
    let env = Env::new();
    let results = codex_exec(
        &env,
        vec![
            env.call("touch made-while-read-only; echo status=$?"),
            Step::Say("finished"),
        ],
        "read-only",
        None,
    );
    assert!(
        !env.ws.work.join("made-while-read-only").exists(),
        "{}",
        results[0]
    );
    assert_eq!(results[0]["stdout"], "status=1\n", "{}", results[0]);
}

#[test]
fn codex_exec_full_access_writes_outside_the_workspace() {
    let env = Env::new();
    let target = env.outside.join("full-access");
    let results = codex_exec(
        &env,
        vec![
            env.call(&format!("touch {}; echo status=$?", target.display())),
            Step::Say("finished"),
        ],
        "danger-full-access",
        None,
    );
    assert_eq!(results[0]["stdout"], "status=0\n", "{}", results[0]);
    assert!(target.exists(), "{}", results[0]);
}

#[test]
fn codex_exec_approvals_answered_by_a_hook_with_the_models_justification() {
    let env = Env::new();
    let codex_home = env.ws.home.join(".codex");
    std::fs::create_dir_all(&codex_home).unwrap();
    // The hook keeps what it was asked and allows.
    let seen_input = env.ws.home.join("hook-input.json");
    let hook = env.ws.home.join("allow.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\ncat > {}\nprintf '%s\\n' '{{\"hookSpecificOutput\":{{\"hookEventName\":\"PermissionRequest\",\"decision\":{{\"behavior\":\"allow\"}}}}}}'\n",
            seen_input.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        codex_home.join("execgate-hooks.json"),
        json!({"hooks": {"PermissionRequest": [{"hooks": [{"type": "command", "command": hook}]}]}})
            .to_string(),
    )
    .unwrap();
    let args_line = readme::block("**Approvals without a person in `codex exec`.**");
    let results = codex_exec(
        &env,
        vec![
            env.call_because("git push; echo status=$?", "publish the fix"),
            Step::Say("finished"),
        ],
        "workspace-write",
        Some(args_line.trim_end()),
    );
    // Approved: git ran outside the sandbox (and failed: there is no remote).
    let escalated = results[0]["escalated"].as_array().unwrap();
    assert_eq!(escalated.len(), 1, "{}", results[0]);
    assert_eq!(escalated[0]["source"], "hook", "{}", results[0]);
    assert_eq!(escalated[0]["exit_code"], 128, "{}", results[0]);
    let input: Value =
        serde_json::from_str(&std::fs::read_to_string(&seen_input).unwrap()).unwrap();
    assert_eq!(
        input["tool_input"]["description"], "publish the fix",
        "{input}"
    );
}

/// The Codex TUI with the README's registration: a `prompt` rule reaches the person as one
/// question, ours, shown as Codex's MCP dialog (without `default_tools_approval_mode`,
/// Codex asks its own "Allow the execgate MCP server to run tool" first); the first choice,
/// run once, escalates the command.
#[test]
fn codex_tui_with_the_readme_registration_asks_the_person_once_in_our_words() {
    let env = Env::new();
    let codex = agents::codex();
    let model = FakeModel::start(
        Api::Responses,
        vec![
            env.call_because("git push; echo status=$?", "publish the fix"),
            Step::Say("all done here"),
        ],
    );
    let codex_home = codex_home(&env, &model, None);
    // The workspace is its own repository (see Env), trusted, so Codex asks nothing about
    // the folder (it would ask about the repository the target directory is in).
    let mut config = std::fs::OpenOptions::new()
        .append(true)
        .open(codex_home.join("config.toml"))
        .unwrap();
    writeln!(
        config,
        "\n[projects.\"{}\"]\ntrust_level = \"trusted\"",
        env.ws.work.display()
    )
    .unwrap();
    let mut cmd = client_command(&codex, &env);
    // --no-daemon: the MCP servers are the TUI's children and end with it (by default a
    // background app server Codex starts owns them, and outlives the test).
    cmd.env("CODEX_HOME", &codex_home)
        .env("FAKE_MODEL_KEY", "test")
        .env("TERM", "xterm-256color")
        .args(["--no-daemon", "do the task"]);
    let mut tui = Terminal::start(cmd);
    tui.until_row("execgate: approval needed");
    // The dialog is drawn in pieces: read it once its last choice is on the screen.
    tui.until_row("3. Deny");
    let asked = tui.text();
    assert!(!asked.contains("Allow the execgate MCP server"), "{asked}");
    for line in [
        "cwd: ",
        "rule: ",
        "reason: pushing publishes commits; confirm the remote and branch",
        "justification: publish the fix",
        "1. Run once",
        "2. Allow for this server session",
        "3. Deny",
    ] {
        assert!(asked.contains(line), "{line:?} not in\n{asked}");
    }
    // Enter picks the first choice. A key that arrives as the dialog is first drawn can be
    // lost: type it again while the question stays on the screen.
    for _ in 0..10 {
        tui.type_text("\r");
        tui.soak(500);
        if !tui.text().contains("execgate: approval needed") {
            break;
        }
    }
    tui.until_row("all done here");
    let done = tui.text();
    assert!(!done.contains("Allow the execgate MCP server"), "{done}");
    drop(tui);
    let results: Vec<Value> = model
        .tool_results(Api::Responses)
        .iter()
        .map(|text| seen(text))
        .collect();
    assert_eq!(results.len(), 1, "{results:#?}");
    // Run once: git ran outside the sandbox and failed for want of a repository.
    let escalated = results[0]["escalated"].as_array().unwrap();
    assert_eq!(escalated.len(), 1, "{}", results[0]);
    assert_eq!(escalated[0]["source"], "user", "{}", results[0]);
    assert_eq!(results[0]["stdout"], "status=128\n", "{}", results[0]);
}

// ---------------------------------------------------------------------------------------
// Claude Code

/// Registers execgate the README's way (`claude mcp add ...`, localized) with the example
/// rules as the README's rules file.
fn claude_mcp_add(env: &Env, claude: &Path, model: &FakeModel) {
    let rules = env.ws.home.join(".config/execgate/rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::copy(
        repo_root().join("examples/basic.rules"),
        rules.join("default.rules"),
    )
    .unwrap();
    let line = readme::localize(
        readme::block("**Register with Claude Code**").trim_end(),
        &env.ws.home,
    );
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[..3], ["claude", "mcp", "add"], "{line}");
    let mut cmd = claude_command(env, claude, model);
    cmd.args(&words[1..]);
    let out = run(cmd);
    assert!(out.status.success(), "{}", describe(&out));
}

fn claude_command(env: &Env, claude: &Path, model: &FakeModel) -> Command {
    let mut cmd = client_command(claude, env);
    cmd.env("ANTHROPIC_BASE_URL", &model.url)
        .env("ANTHROPIC_API_KEY", "sk-test")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1");
    cmd
}

/// `claude ARGS` through the whole script; returns the tool results the model saw.
fn claude_p(
    env: &Env,
    claude: &Path,
    model: &FakeModel,
    calls: usize,
    args: &[&str],
) -> Vec<Value> {
    let mut cmd = claude_command(env, claude, model);
    cmd.args(args);
    let out = run(cmd);
    assert!(out.status.success(), "{}", describe(&out));
    let results = model.tool_results(Api::Messages);
    assert_eq!(results.len(), calls, "{results:#?}\n{}", describe(&out));
    results.iter().map(|text| seen(text)).collect()
}

/// The README's `claude -p "PROMPT" --allowedTools ...` line as arguments.
fn readme_claude_p_args() -> Vec<String> {
    let line = readme::block("so allow it there, on the command line:");
    let mut quoted = line.trim_end().split('"');
    let (before, prompt, after) = (quoted.next(), quoted.next(), quoted.next());
    let mut args: Vec<String> = before
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(String::from)
        .collect();
    args.push(prompt.unwrap().to_string());
    args.extend(after.unwrap().split_whitespace().map(String::from));
    args
}

#[test]
fn claude_p_with_the_readme_registration_and_allow_step_runs_denies_and_says_who_cancelled() {
    let env = Env::new();
    let claude = agents::claude();
    let script = vec![
        env.call("echo hello from claude"),
        env.call("rm -rf build"),
        env.call("git push; echo after"),
        Step::Say("finished"),
    ];
    let model = FakeModel::start(Api::Messages, script);
    claude_mcp_add(&env, &claude, &model);
    let args = readme_claude_p_args();
    assert_eq!(
        args,
        [
            "-p",
            "run the tests",
            "--allowedTools",
            "mcp__execgate__shell"
        ]
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let results = claude_p(&env, &claude, &model, 3, &args);
    assert_eq!(
        results[0]["stdout"], "hello from claude\n",
        "{}",
        results[0]
    );
    assert_eq!(results[1]["stderr"], RM_DENIED, "{}", results[1]);
    // claude -p cancels every elicitation: the call ends, and the model is told why.
    assert_eq!(results[2]["exit_code"], 130, "{}", results[2]);
    assert_eq!(results[2]["interrupted"], true, "{}", results[2]);
    let stderr = results[2]["stderr"].as_str().unwrap();
    assert!(
        stderr.contains(
            "git push: the MCP client cancelled the approval request; the call was ended\n"
        ),
        "{}",
        results[2]
    );
    assert!(!results[2]["stdout"].as_str().unwrap().contains("after"));
}

#[test]
fn claude_p_elicitation_hook_from_the_readme_approves_git_push() {
    let env = Env::new();
    let claude = agents::claude();
    let script = vec![
        env.call_because("git push; echo status=$?", "publish the fix"),
        Step::Say("finished"),
    ];
    let model = FakeModel::start(Api::Messages, script);
    claude_mcp_add(&env, &claude, &model);
    let settings = readme::localize(
        &readme::block("questions instead; in `~/.claude/settings.json`:"),
        &env.ws.home,
    );
    std::fs::create_dir_all(env.ws.home.join(".claude")).unwrap();
    std::fs::write(env.ws.home.join(".claude/settings.json"), settings).unwrap();
    let hook = env.ws.home.join("bin/execgate-approve");
    std::fs::create_dir_all(hook.parent().unwrap()).unwrap();
    std::fs::write(
        &hook,
        readme::block("`/home/me/bin/execgate-approve` approves"),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let results = claude_p(&env, &claude, &model, 1, &["-p", "do the task"]);
    let escalated = results[0]["escalated"].as_array().unwrap();
    assert_eq!(escalated.len(), 1, "{}", results[0]);
    assert_eq!(escalated[0]["source"], "user", "{}", results[0]);
    // git ran outside the sandbox and failed for want of a remote: it was not denied.
    assert_eq!(escalated[0]["exit_code"], 128, "{}", results[0]);
    assert_eq!(results[0]["stdout"], "status=128\n", "{}", results[0]);
}
