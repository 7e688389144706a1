//! End-to-end tests of `execgate mcp`: the server runs as a child process on stdio, driven by
//! the rmcp client (and, when installed, by the MCP Inspector's CLI), with real shells, the
//! real sandbox and real rules.

use crate::support::bins::{execgate, shells_dir};
use crate::support::dirs::{Scratch, Workspace};
use crate::support::procs::{find_process, wait_for};
use crate::support::report::{self, v};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, ClientNotification,
    ClientRequest, CustomNotification, CustomRequest, ElicitRequestParams, ElicitResult,
    ElicitationAction, ElicitationCapability, Implementation, ProgressNotificationParam,
    ProtocolVersion, Request, ServerResult,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RequestContext, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, ErrorData as McpError, RoleClient, ServiceExt};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};

const RULES: &str = r#"
prefix_rule(pattern = ["date"], decision = "allow")
prefix_rule(pattern = ["touch"], decision = "prompt", justification = "touch needs a look")
prefix_rule(pattern = ["rm", ["-rf", "-fr"]], decision = "forbidden", justification = "no recursive deletes")
prefix_rule(pattern = ["sleep", "31.5"], decision = "allow")
prefix_rule(pattern = ["sleep", "31.75"], decision = "allow")
prefix_rule(pattern = ["sleep", "31.625"], decision = "allow")
"#;

/// A workspace and a rules file (next to `work`, not in it) for one test.
struct Env {
    ws: Workspace,
    rules: PathBuf,
}

impl Env {
    fn new() -> Self {
        let ws = Workspace::new();
        let rules = ws.root().join("test.rules");
        std::fs::write(&rules, RULES).unwrap();
        Self { ws, rules }
    }

    /// `execgate mcp --rules <rules> ARGS` with the test's HOME and freshly built shells.
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = self
            .ws
            .execgate_session(&["mcp", "--rules", self.rules.to_str().unwrap()]);
        cmd.args(args).stderr(Stdio::inherit());
        cmd.into()
    }
}

/// How the test client answers elicitations.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// The client declares no elicitation capability.
    NotCapable,
    Accept(&'static str),
    Decline,
    Cancel,
}

#[derive(Clone)]
struct TestClient {
    answer: Answer,
    asked: Arc<Mutex<Vec<String>>>,
    progress: Arc<Mutex<Vec<String>>>,
}

impl TestClient {
    fn new(answer: Answer) -> Self {
        Self {
            answer,
            asked: Arc::default(),
            progress: Arc::default(),
        }
    }
}

impl ClientHandler for TestClient {
    fn get_info(&self) -> ClientConfig {
        let mut capabilities = ClientCapabilities::default();
        if !matches!(self.answer, Answer::NotCapable) {
            capabilities.elicitation = Some(ElicitationCapability::new());
        }
        ClientConfig::new(capabilities, Implementation::new("execgate-test", "0"))
            .with_protocol_version(ProtocolVersion::V_2025_06_18)
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        let text = serde_json::to_value(&request).unwrap();
        self.asked
            .lock()
            .unwrap()
            .push(text["message"].as_str().unwrap().to_owned());
        assert_eq!(
            text["requestedSchema"]["properties"]["decision"]["enum"],
            json!(["once", "session", "deny"])
        );
        Ok(match self.answer {
            Answer::Accept(decision) => ElicitResult::new(ElicitationAction::Accept)
                .with_content(json!({ "decision": decision })),
            Answer::Decline | Answer::NotCapable => ElicitResult::new(ElicitationAction::Decline),
            Answer::Cancel => ElicitResult::new(ElicitationAction::Cancel),
        })
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress
            .lock()
            .unwrap()
            .push(params.message.unwrap_or_default());
    }
}

type Client = RunningService<RoleClient, TestClient>;

async fn connect(env: &Env, answer: Answer, args: &[&str]) -> Client {
    let transport = TokioChildProcess::new(env.command(args)).unwrap();
    TestClient::new(answer).serve(transport).await.unwrap()
}

fn shell_params(command: &str, workdir: &Path) -> CallToolRequestParams {
    let args = json!({"command": command, "workdir": workdir, "login": false});
    CallToolRequestParams::new("shell").with_arguments(args.as_object().unwrap().clone())
}

async fn shell(client: &Client, command: &str, workdir: &Path) -> CallToolResult {
    client
        .call_tool(shell_params(command, workdir))
        .await
        .unwrap()
}

/// The Codex JSON of the text content.
fn codex(result: &CallToolResult) -> Value {
    let text = result.content[0].as_text().unwrap().text.clone();
    serde_json::from_str(&text).unwrap()
}

/// The denied and escalated execs the tool's summary lists (see `support::report`).
fn verdicts(result: &CallToolResult) -> Vec<report::Verdict> {
    report::listed_verdicts(result.structured_content.as_ref().unwrap())
}

/// How many execs the summary counts as run in the sandbox.
fn run_count(result: &CallToolResult) -> u64 {
    result.structured_content.as_ref().unwrap()["verdicts"]["run"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn initialize_announces_the_shell_tool_and_the_sandbox_state_capability() {
    let env = Env::new();
    let client = connect(&env, Answer::NotCapable, &[]).await;
    let info = client.peer_info().unwrap();
    assert_eq!(info.server_info.as_ref().unwrap().name, "execgate");
    let experimental = info.capabilities.experimental.as_ref().unwrap();
    assert_eq!(experimental["codex/sandbox-state"]["version"], "1.0.0");
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 1);
    assert_eq!(tools[0].name, "shell");
    let schema = Value::Object((*tools[0].input_schema).clone());
    assert_eq!(schema["required"], json!(["command", "workdir"]));
    for field in ["command", "workdir", "timeout_ms", "login"] {
        assert!(schema["properties"].get(field).is_some(), "{field}");
    }
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn shell_runs_escalates_and_denies_with_codex_text_and_our_report() {
    let env = Env::new();
    let client = connect(&env, Answer::NotCapable, &[]).await;
    let result = shell(
        &client,
        "date +%Y | tr 0-9 x; (rm -rf gone); echo end",
        &env.ws.work,
    )
    .await;
    assert_eq!(result.is_error, Some(false));
    let text = codex(&result);
    assert_eq!(text["exit_code"], 0);
    assert_eq!(text["timed_out"], false);
    assert!(text["duration"]["secs"].is_u64() && text["duration"]["nanos"].is_u64());
    let output = text["output"].as_str().unwrap();
    // stdout and stderr come through two pipes: their relative order is the arrival order.
    let denial = "execgate: denied: /usr/bin/rm -rf gone: no recursive deletes\n";
    assert!(output.contains(denial), "{output}");
    assert_eq!(output.replace(denial, ""), "xxxx\nend\n");
    let report = result.structured_content.as_ref().unwrap();
    assert_eq!(report["stdout"], "xxxx\nend\n");
    assert_eq!(
        verdicts(&result),
        vec![
            v("date", "allow", "escalate", "policy"),
            v("rm", "forbidden", "deny", "policy"),
        ]
    );
    assert_eq!(run_count(&result), 1);
    assert_eq!(report["execs_total"], 3);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn pass_env_lets_a_variable_through_and_the_record_lists_what_was_dropped() {
    let env = Env::new();
    let printenv = env.ws.root().join("printenv.rules");
    std::fs::write(
        &printenv,
        "prefix_rule(pattern = [\"printenv\"], decision = \"allow\")\n",
    )
    .unwrap();
    // zsh exports LOGNAME when it is missing: give the server the same.
    let user = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    let user = String::from_utf8(user.stdout).unwrap().trim().to_owned();
    let mut cmd = env.command(&["--rules", printenv.to_str().unwrap(), "--pass-env", "FOO"]);
    cmd.env("LOGNAME", user);
    let transport = TokioChildProcess::new(cmd).unwrap();
    let client = TestClient::new(Answer::NotCapable)
        .serve(transport)
        .await
        .unwrap();
    let result = shell(&client, "FOO=1 BAR=2 printenv FOO BAR", &env.ws.work).await;
    assert_eq!(codex(&result)["output"], "1\n");
    let report = result.structured_content.as_ref().unwrap();
    assert_eq!(report["verdicts"]["escalate"], 1, "{report}");
    assert_eq!(
        report["escalated"][0]["env_dropped"],
        json!(["BAR"]),
        "{report}"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn bad_workdir_is_a_tool_error_and_the_server_keeps_serving() {
    let env = Env::new();
    let client = connect(&env, Answer::NotCapable, &[]).await;
    let relative = shell(&client, "echo hi", Path::new("relative/dir")).await;
    assert_eq!(relative.is_error, Some(true));
    let message = relative.content[0].as_text().unwrap().text.clone();
    assert_eq!(
        message,
        "workdir must be an absolute path, got \"relative/dir\""
    );
    let missing = shell(&client, "echo hi", &env.ws.work.join("nope")).await;
    assert_eq!(missing.is_error, Some(true));
    let no_command = client
        .call_tool(
            CallToolRequestParams::new("shell")
                .with_arguments(json!({"workdir": "/"}).as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    assert_eq!(no_command.is_error, Some(true));
    let ok = shell(&client, "echo hi", &env.ws.work).await;
    assert_eq!(codex(&ok)["output"], "hi\n");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn client_without_elicitation_gets_a_denial() {
    let env = Env::new();
    let client = connect(&env, Answer::NotCapable, &[]).await;
    let result = shell(&client, "touch t1 || echo no", &env.ws.work).await;
    let output = codex(&result)["output"].as_str().unwrap().to_owned();
    let denial =
        "execgate: denied: /usr/bin/touch t1: approval required; the client cannot be asked\n";
    assert!(output.contains(denial), "{output}");
    assert_eq!(output.replace(denial, ""), "no\n");
    assert_eq!(
        verdicts(&result),
        vec![v("touch", "prompt", "deny", "user")]
    );
    assert!(!env.ws.work.join("t1").exists());
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn elicitation_accepted_once_runs_the_command_and_asks_again_next_time() {
    let env = Env::new();
    let client = connect(&env, Answer::Accept("once"), &[]).await;
    let result = shell(&client, "touch t1 && echo done", &env.ws.work).await;
    assert_eq!(codex(&result)["output"], "done\n");
    assert_eq!(
        verdicts(&result),
        vec![v("touch", "prompt", "escalate", "user")]
    );
    assert!(env.ws.work.join("t1").exists());
    let asked = client.service().asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 1);
    assert!(
        asked[0].contains(&format!(
            "command: /usr/bin/touch t1\ncwd: {}\n",
            env.ws.work.display()
        )),
        "{}",
        asked[0]
    );
    assert!(
        asked[0].contains(&format!(
            "rule: {}:3\nreason: touch needs a look",
            env.rules.display()
        )),
        "{}",
        asked[0]
    );
    shell(&client, "touch t2", &env.ws.work).await;
    assert_eq!(client.service().asked.lock().unwrap().len(), 2);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn elicitation_allow_for_session_is_remembered_across_calls() {
    let env = Env::new();
    let client = connect(&env, Answer::Accept("session"), &[]).await;
    shell(&client, "touch t1", &env.ws.work).await;
    let second = shell(&client, "touch t2", &env.ws.work).await;
    assert_eq!(
        verdicts(&second),
        vec![v("touch", "prompt", "escalate", "user")]
    );
    assert!(env.ws.work.join("t1").exists() && env.ws.work.join("t2").exists());
    assert_eq!(client.service().asked.lock().unwrap().len(), 1);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn elicitation_declined_denies_and_the_script_goes_on() {
    let env = Env::new();
    let client = connect(&env, Answer::Decline, &[]).await;
    let result = shell(&client, "touch t1 || echo after", &env.ws.work).await;
    let text = codex(&result);
    assert_eq!(
        result.structured_content.as_ref().unwrap()["stdout"],
        "after\n",
        "{text}"
    );
    assert_eq!(text["exit_code"], 0);
    assert_eq!(
        verdicts(&result),
        vec![v("touch", "prompt", "deny", "user")]
    );
    // A decline looks the same whether a person or the client answered: say who we know.
    assert_eq!(
        result.structured_content.as_ref().unwrap()["stderr"],
        "execgate: denied: /usr/bin/touch t1: the MCP client declined the approval request\n"
    );
    assert!(!env.ws.work.join("t1").exists());
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn elicitation_message_escapes_what_could_forge_its_lines() {
    let env = Env::new();
    let client = connect(&env, Answer::Decline, &[]).await;
    // A newline in an argument would give the message a second, forged `cwd:` line; a
    // right-to-left override would reorder what a person reads.
    let script = r#"touch "$(printf 'x\ncwd: /fake\342\200\256')" || echo after"#;
    shell(&client, script, &env.ws.work).await;
    let asked = client.service().asked.lock().unwrap().clone();
    assert_eq!(
        asked,
        vec![format!(
            "execgate: approval needed\ncommand: /usr/bin/touch $'x\\ncwd: /fake\\u202e'\n\
             cwd: {}\nrule: {}:3\nreason: touch needs a look\nsession allows: \"touch\"",
            env.ws.work.display(),
            env.rules.display()
        )]
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn elicitation_message_bounds_a_long_command() {
    let env = Env::new();
    let client = connect(&env, Answer::Decline, &[]).await;
    let script = format!("touch {} || echo after", "a".repeat(5000));
    shell(&client, &script, &env.ws.work).await;
    let asked = client.service().asked.lock().unwrap().clone();
    // 5,015 bytes of command: the first 214 and the last 106 are shown.
    assert_eq!(
        asked,
        vec![format!(
            "execgate: approval needed\ncommand: /usr/bin/touch {} ... 4695 more bytes ... {}\n\
             cwd: {}\nrule: {}:3\nreason: touch needs a look\nsession allows: \"touch\"",
            "a".repeat(199),
            "a".repeat(106),
            env.ws.work.display(),
            env.rules.display()
        )]
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn elicitation_cancelled_denies_and_ends_the_call() {
    let env = Env::new();
    let client = connect(&env, Answer::Cancel, &[]).await;
    let result = shell(&client, "touch t1; echo after", &env.ws.work).await;
    let text = codex(&result);
    assert_eq!(text["exit_code"], 130, "{text}");
    assert!(
        !text["output"].as_str().unwrap().contains("after"),
        "{text}"
    );
    assert_eq!(
        result.structured_content.as_ref().unwrap()["interrupted"],
        true
    );
    // The model is told why the call ended, in the summary and in the text item.
    let line = "execgate: denied: /usr/bin/touch t1: the MCP client cancelled the approval \
                request; the call was ended\n";
    assert_eq!(
        result.structured_content.as_ref().unwrap()["stderr"],
        line,
        "{}",
        result.structured_content.as_ref().unwrap()
    );
    assert_eq!(text["output"], line);
    assert!(!env.ws.work.join("t1").exists());
    // The server is still there for the next call.
    let next = shell(&client, "echo next", &env.ws.work).await;
    assert_eq!(codex(&next)["output"], "next\n");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn sandbox_state_update_to_read_only_makes_writes_fail() {
    let env = Env::new();
    let client = connect(&env, Answer::NotCapable, &[]).await;
    let before = shell(&client, "echo x > a && echo wrote", &env.ws.work).await;
    assert_eq!(codex(&before)["output"], "wrote\n");
    let update = CustomRequest::new(
        "codex/sandbox-state/update",
        Some(json!({
            "sandboxPolicy": {"type": "read-only", "unknown_field": true},
            "sandboxCwd": env.ws.work,
            "codexLinuxSandboxExe": null,
        })),
    );
    let answer = client
        .send_request(ClientRequest::CustomRequest(update))
        .await
        .unwrap();
    match answer {
        ServerResult::CustomResult(result) => assert_eq!(result.0, json!({})),
        ServerResult::EmptyResult(_) => {}
        other => panic!("unexpected answer {other:?}"),
    }
    let after = shell(&client, "echo y > b && echo wrote", &env.ws.work).await;
    let text = codex(&after);
    assert_ne!(text["exit_code"], 0, "{text}");
    assert!(
        !text["output"].as_str().unwrap().contains("wrote"),
        "{text}"
    );
    assert!(!env.ws.work.join("b").exists());
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn sandbox_state_update_sent_as_a_notification_is_honoured_too() {
    let env = Env::new();
    let client = connect(&env, Answer::NotCapable, &[]).await;
    let update = CustomNotification::new(
        "codex/sandbox-state/update",
        Some(json!({"sandboxPolicy": {"type": "read-only"}})),
    );
    client
        .send_notification(ClientNotification::CustomNotification(update))
        .await
        .unwrap();
    // A notification has no answer: poll until a call sees the read-only sandbox.
    let mut denied = None;
    for _ in 0..100 {
        let result = shell(&client, "echo y > b && echo wrote", &env.ws.work).await;
        if !codex(&result)["output"].as_str().unwrap().contains("wrote") {
            denied = Some(result);
            break;
        }
        std::fs::remove_file(env.ws.work.join("b")).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(denied.is_some(), "the notification never took effect");
    assert!(!env.ws.work.join("b").exists());
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn cancelled_call_ends_its_session_escalated_processes_included() {
    let env = Env::new();
    let client = connect(&env, Answer::NotCapable, &[]).await;
    let pidfile = env.ws.work.join("pid");
    // `sleep 31.5` is allowed: it runs outside the sandbox, as an escalated process.
    let command = format!("echo $$ > {}; sleep 31.5; echo finished", pidfile.display());
    let mut params = shell_params(&command, &env.ws.work);
    params
        .arguments
        .as_mut()
        .unwrap()
        .insert("timeout_ms".into(), json!(60_000));
    let handle = client
        .send_cancellable_request(
            ClientRequest::CallToolRequest(Request::new(params)),
            PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    // Wait until the escalated sleep is running.
    let escalated = wait_for(|| find_process("31.5")).await;
    assert!(escalated.is_some(), "the escalated sleep never started");
    handle.cancel(Some("test".into())).await.unwrap();
    let gone = wait_for(|| find_process("31.5").is_none().then_some(())).await;
    assert!(
        gone.is_some(),
        "the escalated sleep outlived its cancelled call"
    );
    let next = shell(&client, "echo next", &env.ws.work).await;
    assert_eq!(codex(&next)["output"], "next\n");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn timeout_ms_ends_the_call_with_timed_out_and_124() {
    let env = Env::new();
    let client = connect(&env, Answer::NotCapable, &[]).await;
    let mut params = shell_params("echo before; sleep 31.625; echo after", &env.ws.work);
    params
        .arguments
        .as_mut()
        .unwrap()
        .insert("timeout_ms".into(), json!(300));
    let result = client.call_tool(params).await.unwrap();
    let text = codex(&result);
    assert_eq!(text["timed_out"], true, "{text}");
    assert_eq!(text["exit_code"], 124, "{text}");
    assert_eq!(text["output"], "before\n");
    assert!(
        wait_for(|| find_process("31.625").is_none().then_some(()))
            .await
            .is_some(),
        "the escalated sleep outlived the timeout"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn two_concurrent_calls_each_get_their_own_session() {
    let env = Env::new();
    let client = connect(&env, Answer::NotCapable, &[]).await;
    // Each call waits for the other's file, so they can only both finish if they overlap.
    let a = shell(
        &client,
        "echo a > a; i=0; while [ ! -e b ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; cat b",
        &env.ws.work,
    );
    let b = shell(
        &client,
        "echo b > b; i=0; while [ ! -e a ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; cat a",
        &env.ws.work,
    );
    let (a, b) = tokio::join!(a, b);
    assert_eq!(codex(&a)["output"], "b\n");
    assert_eq!(codex(&b)["output"], "a\n");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn progress_notifications_count_verdicts() {
    let env = Env::new();
    let client = connect(&env, Answer::NotCapable, &[]).await;
    shell(
        &client,
        "date > /dev/null; (rm -rf x); cat /dev/null",
        &env.ws.work,
    )
    .await;
    // Every notification is written before the call's response: none can trail it.
    let progress = client.service().progress.lock().unwrap().clone();
    assert_eq!(
        progress.last().map(String::as_str),
        Some("1 commands run, 1 escalated, 1 denied"),
        "{progress:?}"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn output_is_capped_keeping_head_and_tail() {
    let env = Env::new();
    let client = connect(&env, Answer::NotCapable, &["--max-output-bytes", "100"]).await;
    let result = shell(
        &client,
        "echo start; head -c 5000 /dev/zero | tr '\\0' x; echo; echo stop",
        &env.ws.work,
    )
    .await;
    let output = codex(&result)["output"].as_str().unwrap().to_owned();
    assert!(output.starts_with("start\nxxx"), "{output}");
    assert!(output.ends_with("xxx\nstop\n"), "{output}");
    assert!(
        output.contains("\n[... execgate: 4912 bytes of output cut ...]\n"),
        "{output}"
    );
    client.cancel().await.unwrap();
}

/// `execgate mcp` driven by hand: sent `initialize` (id 1), `notifications/initialized` and
/// then `lines`, one JSON-RPC message each. Returns the server, its stdin and its stdout's
/// lines.
async fn raw_session(
    env: &Env,
    lines: &[String],
) -> (
    tokio::process::Child,
    tokio::process::ChildStdin,
    Lines<BufReader<tokio::process::ChildStdout>>,
) {
    let mut child = env
        .command(&[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}});
    let start = [
        init.to_string(),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_string(),
    ];
    for line in start.iter().chain(lines) {
        stdin.write_all(line.as_bytes()).await.unwrap();
        stdin.write_all(b"\n").await.unwrap();
    }
    stdin.flush().await.unwrap();
    (child, stdin, stdout)
}

#[tokio::test]
async fn malformed_json_rpc_gets_an_error_response_and_the_server_keeps_serving() {
    let env = Env::new();
    let (mut child, stdin, mut stdout) = raw_session(
        &env,
        &[
            "{this is not json".to_string(),
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#.to_string(),
        ],
    )
    .await;
    let mut answers = Vec::new();
    while answers.len() < 3 {
        let line = tokio::time::timeout(Duration::from_secs(20), stdout.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        answers.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    // Answers may come in any order; find each by its id.
    let by_id = |id: Value| answers.iter().find(|a| a["id"] == id).unwrap();
    assert_eq!(by_id(json!(1))["result"]["serverInfo"]["name"], "execgate");
    assert_eq!(by_id(Value::Null)["error"]["code"], -32700);
    assert_eq!(by_id(json!(2))["result"]["tools"][0]["name"], "shell");
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn client_disconnect_mid_call_ends_the_server_and_its_sessions() {
    let env = Env::new();
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "shell", "arguments": {
            "command": "sleep 31.75", "workdir": env.ws.work, "login": false, "timeout_ms": 60000}}});
    let (mut child, stdin, mut stdout) = raw_session(&env, &[call.to_string()]).await;
    let first = stdout.next_line().await.unwrap().unwrap();
    assert_eq!(serde_json::from_str::<Value>(&first).unwrap()["id"], 1);
    assert!(
        wait_for(|| find_process("31.75")).await.is_some(),
        "the escalated sleep never started"
    );
    // The client goes away without a word.
    drop(stdin);
    drop(stdout);
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(
        wait_for(|| find_process("31.75").is_none().then_some(()))
            .await
            .is_some(),
        "the escalated sleep outlived the server"
    );
}

#[tokio::test]
async fn codex_home_rules_are_loaded_when_no_rules_flag_is_given() {
    let env = Env::new();
    let codex_home = env.ws.home.join("codex");
    std::fs::create_dir_all(codex_home.join("rules")).unwrap();
    std::fs::write(
        codex_home.join("rules/default.rules"),
        "prefix_rule(pattern = [\"cat\"], decision = \"forbidden\", justification = \"codex says no\")\n",
    )
    .unwrap();
    let mut cmd = env.ws.execgate_session(&["mcp"]);
    cmd.env("CODEX_HOME", &codex_home).stderr(Stdio::inherit());
    let client = TestClient::new(Answer::NotCapable)
        .serve(TokioChildProcess::new(tokio::process::Command::from(cmd)).unwrap())
        .await
        .unwrap();
    let result = shell(&client, "cat /dev/null", &env.ws.work).await;
    assert_eq!(
        verdicts(&result),
        vec![v("cat", "forbidden", "deny", "policy")]
    );
    let report = result.structured_content.as_ref().unwrap();
    assert_eq!(
        report["denied"][0]["rule"],
        format!("{}:1", codex_home.join("rules/default.rules").display())
    );
    client.cancel().await.unwrap();
}

#[test]
fn bad_rules_file_refuses_to_start_naming_file_line_col() {
    let env = Env::new();
    std::fs::write(&env.rules, "prefix_rule(pattern = [])\n").unwrap();
    let out = env
        .ws
        .execgate(&["mcp", "--rules", env.rules.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!("execgate: {}:1:", env.rules.display())),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn help_says_the_clients_per_call_sandbox_replaces_the_sandbox_flags() {
    let env = Env::new();
    let out = env.ws.execgate(&["mcp", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for said in [
        "--sandbox, --writable-root and --network apply to calls whose client sends no sandbox \
         of its own. Codex sends its sandbox with every call (_meta \"codex/sandbox-state\"), \
         which replaces those flags for that call;",
        "The older codex/sandbox-state/update request replaces them for the calls that follow \
         it.",
    ] {
        assert!(help.contains(said), "{help}");
    }
}

/// The MCP Inspector's CLI (`mcp-inspector` from `@modelcontextprotocol/inspector`), named by
/// `EXECGATE_MCP_INSPECTOR`: a client this project did not write. `None` (with a loud
/// message) when the variable is unset; a set variable naming nothing fails the test.
fn inspector() -> Option<PathBuf> {
    let Some(path) = std::env::var_os("EXECGATE_MCP_INSPECTOR") else {
        eprintln!(
            "\n*** SKIPPED: EXECGATE_MCP_INSPECTOR is not set; install the MCP Inspector with \
             `npm install --prefix DIR @modelcontextprotocol/inspector@2.12.0` and set \
             EXECGATE_MCP_INSPECTOR=DIR/node_modules/.bin/mcp-inspector ***\n"
        );
        return None;
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "EXECGATE_MCP_INSPECTOR={} is not a file",
        path.display()
    );
    Some(path)
}

/// `mcp-inspector --cli ARGS -- execgate mcp --rules <rules>`; returns its JSON output.
fn inspect(env: &Env, args: &[&str]) -> Value {
    let inspector = inspector().unwrap();
    let shells = format!("EXECGATE_SHELLS_DIR={}", shells_dir().display());
    let home = format!("HOME={}", env.ws.home.display());
    // The helpers by name: a HOME under /tmp is inside the session's writable temporary
    // folder, where execgate keeps no cache.
    let helpers = [
        format!(
            "EXECGATE_WRAPPER={}",
            crate::support::bins::wrapper().display()
        ),
        format!(
            "EXECGATE_PRELOAD={}",
            crate::support::bins::preload_shim().display()
        ),
        format!("EXECGATE_INIT={}", crate::support::bins::init().display()),
    ];
    let out = std::process::Command::new(inspector)
        .arg("--cli")
        .args(args)
        .args(["-e", &home, "-e", &shells])
        .args(helpers.iter().flat_map(|h| ["-e", h.as_str()]))
        .arg("--")
        .arg(execgate())
        .arg("mcp")
        .arg("--rules")
        .arg(&env.rules)
        .env("HOME", &env.ws.home)
        .current_dir(&env.ws.work)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    // The inspector exits non-zero when the tool reports an error.
    let is_error = json["isError"] == true;
    assert_eq!(out.status.success(), !is_error, "{stdout}");
    json
}

#[test]
fn inspector_cli_lists_the_shell_tool() {
    if inspector().is_none() {
        return;
    }
    let env = Env::new();
    let tools = inspect(&env, &["--method", "tools/list"]);
    assert_eq!(tools["tools"][0]["name"], "shell");
    assert_eq!(
        tools["tools"][0]["inputSchema"]["required"],
        json!(["command", "workdir"])
    );
}

#[test]
fn inspector_cli_calls_shell_for_run_escalate_deny_and_unaskable_prompt() {
    if inspector().is_none() {
        return;
    }
    let env = Env::new();
    let command = "date +%Y | tr 0-9 x; (rm -rf g); touch t; echo end";
    let workdir = format!("workdir={}", env.ws.work.display());
    let result = inspect(
        &env,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "shell",
            "--tool-arg",
            &format!("command={command}"),
            "--tool-arg",
            &workdir,
            "--tool-arg",
            "login=false",
        ],
    );
    let text: Value = serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(text["exit_code"], 0);
    let report = &result["structuredContent"];
    assert_eq!(report["stdout"], "xxxx\nend\n");
    let commands = |list: &str| -> Vec<String> {
        let mut seen: Vec<String> = report[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["command"].as_str().unwrap().to_owned())
            .collect();
        seen.sort();
        seen
    };
    assert_eq!(commands("escalated"), ["/usr/bin/date '+%Y'"]);
    assert_eq!(
        commands("denied"),
        ["/usr/bin/rm -rf g", "/usr/bin/touch t"]
    );
    assert_eq!(
        report["verdicts"],
        json!({"run": 1, "escalate": 1, "deny": 2})
    );
    assert!(!env.ws.work.join("t").exists());
}

#[test]
fn inspector_cli_sees_a_bad_workdir_as_a_tool_error() {
    if inspector().is_none() {
        return;
    }
    let env = Env::new();
    let result = inspect(
        &env,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "shell",
            "--tool-arg",
            "command=echo hi",
            "--tool-arg",
            "workdir=not/absolute",
        ],
    );
    assert_eq!(result["isError"], true);
    assert_eq!(
        result["content"][0]["text"],
        "workdir must be an absolute path, got \"not/absolute\""
    );
}

#[tokio::test]
async fn a_flooding_call_leaves_no_hook_process_or_waiting_exec_behind() {
    let env = Env::new();
    let rules = env.ws.root().join("flood.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"git\", \"push\"], decision = \"prompt\")\n",
    )
    .unwrap();
    let hook = env.ws.root().join("slow-hook.sh");
    std::fs::write(&hook, "sleep 30\n").unwrap();
    let hooks = env.ws.root().join("hooks.json");
    std::fs::write(
        &hooks,
        json!({"hooks": {"PermissionRequest": [{"hooks": [
            {"type": "command", "command": format!("sh {}", hook.display())}
        ]}]}})
        .to_string(),
    )
    .unwrap();
    let client = connect(
        &env,
        Answer::Accept("once"),
        &[
            "--rules",
            rules.to_str().unwrap(),
            "--hooks",
            hooks.to_str().unwrap(),
        ],
    )
    .await;
    let server = find_process(rules.to_str().unwrap()).expect("the server's pid");
    let fds = || {
        std::fs::read_dir(format!("/proc/{server}/fd"))
            .unwrap()
            .count()
    };
    shell(&client, "true", &env.ws.work).await;
    let idle = fds();
    // Every exec waits for a hook that outlives the call's timeout.
    let args = json!({
        "command": "for i in $(seq 200); do git push origin b$((i % 10)) & done; wait",
        "workdir": env.ws.work, "login": false, "timeout_ms": 3000,
    });
    let params =
        CallToolRequestParams::new("shell").with_arguments(args.as_object().unwrap().clone());
    let result = client.call_tool(params).await.unwrap();
    assert_eq!(codex(&result)["timed_out"], true);
    let hook_path = hook.to_str().unwrap().to_owned();
    assert!(
        wait_for(|| find_process(&hook_path).is_none().then_some(()))
            .await
            .is_some(),
        "a hook process outlived its call"
    );
    assert!(
        wait_for(|| (fds() == idle).then_some(())).await.is_some(),
        "the server holds {} fds after the call, {idle} before",
        fds()
    );
    // And it still serves.
    assert_eq!(
        codex(&shell(&client, "echo ok", &env.ws.work).await)["output"],
        "ok\n"
    );
    client.cancel().await.unwrap();
}

/// `_meta` carrying Codex's per-call sandbox state (under both of Codex's keys).
fn with_sandbox_state(mut params: CallToolRequestParams, state: Value) -> CallToolRequestParams {
    let mut meta = rmcp::model::RequestMetaObject::default();
    meta.0
         .0
        .insert("codex/sandbox-state".into(), state.clone());
    meta.0 .0.insert("codex/sandbox-state-meta".into(), state);
    params.meta = Some(meta);
    params
}

/// Codex 0.171.0's state for `-s read-only`, word for word but the paths.
fn codex_read_only(work: &Path) -> Value {
    json!({"permissionProfile": {"type": "managed", "file_system": {"type": "restricted",
        "entries": [{"path": {"type": "special", "value": {"kind": "root"}}, "access": "read"}]},
        "network": "restricted"}, "codexLinuxSandboxExe": "/opt/codex/bin/codex",
        "sandboxCwd": format!("file://{}", work.display()), "useLegacyLandlock": false,
        "useMxc": false})
}

/// Codex 0.171.0's state for `-s workspace-write`, word for word but the paths.
fn codex_workspace_write(work: &Path) -> Value {
    let entry = |path: PathBuf, access: &str| {
        json!({"path": {"type": "path", "path": path}, "access": access,
               "missing_path_behavior": "skip"})
    };
    let special = |kind: &str| json!({"path": {"type": "special", "value": {"kind": kind}}, "access": "write"});
    json!({"permissionProfile": {"type": "managed", "file_system": {"type": "restricted",
        "entries": [
            {"path": {"type": "special", "value": {"kind": "root"}}, "access": "read"},
            entry(work.to_path_buf(), "write"), special("slash_tmp"), special("tmpdir"),
            entry(work.join(".git"), "read"), entry(work.join(".agents"), "read"),
            entry(work.join(".codex"), "read"), entry(work.join(".aws"), "read")]},
        "network": "restricted"}, "codexLinuxSandboxExe": "/opt/codex/bin/codex",
        "sandboxCwd": format!("file://{}", work.display()), "useLegacyLandlock": false,
        "useMxc": false})
}

#[tokio::test]
async fn per_call_codex_read_only_state_blocks_a_write_in_the_workdir() {
    let env = Env::new();
    // The server's own flag would allow it: the client's state replaces it for the call.
    let client = connect(&env, Answer::NotCapable, &["--sandbox", "workspace-write"]).await;
    let params = with_sandbox_state(
        shell_params("true > a; echo status=$?", &env.ws.work),
        codex_read_only(&env.ws.work),
    );
    let result = client.call_tool(params).await.unwrap();
    assert_eq!(
        result.structured_content.as_ref().unwrap()["stdout"],
        "status=1\n"
    );
    assert!(!env.ws.work.join("a").exists());
    // A call without the state gets the server's flags again.
    let plain = shell(&client, "true > b; echo status=$?", &env.ws.work).await;
    assert_eq!(codex(&plain)["output"], "status=0\n");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn per_call_codex_workspace_write_state_writes_only_the_workspace_and_not_its_metadata() {
    let env = Env::new();
    // Codex's workspace-write also grants /tmp: the folder outside must not be in it.
    let elsewhere = Scratch::outside_temp();
    let (work, outside) = (env.ws.work.join("ws"), elsewhere.path().to_path_buf());
    for dir in [work.join(".git"), work.join(".aws"), outside.clone()] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let client = connect(&env, Answer::NotCapable, &["--sandbox", "read-only"]).await;
    let script = format!(
        "true > in && echo in; true > .git/x || echo git; true > .aws/x || echo aws; \
         true > {}/x || echo outside",
        outside.display()
    );
    let params = with_sandbox_state(shell_params(&script, &work), codex_workspace_write(&work));
    let result = client.call_tool(params).await.unwrap();
    let report = result.structured_content.as_ref().unwrap();
    assert_eq!(report["stdout"], "in\ngit\naws\noutside\n", "{report}");
    assert!(work.join("in").exists());
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn per_call_codex_full_access_state_writes_outside_the_workspace() {
    let env = Env::new();
    let client = connect(&env, Answer::NotCapable, &["--sandbox", "read-only"]).await;
    let target = env.ws.home.join("written");
    let state = json!({"permissionProfile": {"type": "disabled"},
                       "sandboxCwd": format!("file://{}", env.ws.work.display())});
    let params = with_sandbox_state(
        shell_params(
            &format!("true > {}; echo status=$?", target.display()),
            &env.ws.work,
        ),
        state,
    );
    let result = client.call_tool(params).await.unwrap();
    assert_eq!(codex(&result)["output"], "status=0\n");
    assert!(target.exists());
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn unknown_per_call_state_runs_read_only_without_network_and_warns_once() {
    let env = Env::new();
    let log = env.ws.home.join("server.stderr");
    let (transport, _) = TokioChildProcess::builder(env.command(&[
        "--sandbox",
        "danger-full-access",
        "--network",
        "on",
    ]))
    .stderr(std::fs::File::create(&log).unwrap())
    .spawn()
    .unwrap();
    let client = TestClient::new(Answer::NotCapable)
        .serve(transport)
        .await
        .unwrap();
    let mut state = codex_read_only(&env.ws.work);
    state["permissionProfile"]["file_system"]["entries"][0]["access"] = json!("append");
    let params = with_sandbox_state(
        shell_params("true > a; echo status=$?", &env.ws.work),
        state,
    );
    let result = client.call_tool(params).await.unwrap();
    assert_eq!(
        result.structured_content.as_ref().unwrap()["stdout"],
        "status=1\n"
    );
    assert!(!env.ws.work.join("a").exists());
    client.cancel().await.unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap();
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("codex/sandbox-state"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].starts_with("execgate: warning: unusable codex/sandbox-state"),
        "{stderr}"
    );
    assert!(warnings[0].contains("read-only, network off"), "{stderr}");
}

#[tokio::test]
async fn per_call_state_that_hides_paths_from_reading_is_refused() {
    let env = Env::new();
    let client = connect(&env, Answer::NotCapable, &[]).await;
    let mut state = codex_read_only(&env.ws.work);
    state["permissionProfile"]["file_system"]["entries"]
        .as_array_mut()
        .unwrap()
        .push(json!({"path": {"type": "path", "path": env.ws.home}, "access": "none"}));
    let params = with_sandbox_state(shell_params("touch a", &env.ws.work), state);
    let result = client.call_tool(params).await.unwrap();
    assert_eq!(result.is_error, Some(true));
    let message = result.content[0].as_text().unwrap().text.clone();
    assert!(
        message.contains(&format!("hides {} from reading", env.ws.home.display())),
        "{message}"
    );
    assert!(!env.ws.work.join("a").exists());
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn structured_content_of_a_thousand_execs_is_a_bounded_summary() {
    let env = Env::new();
    let audit = env.ws.home.join("audit.jsonl");
    let audit_arg = audit.display().to_string();
    let client = connect(
        &env,
        Answer::NotCapable,
        &["--max-output-bytes", "4096", "--audit-log", &audit_arg],
    )
    .await;
    let mut params = shell_params(
        "for i in $(seq 1000); do /bin/true; done; (rm -rf x); head -c 100000 /dev/zero | tr '\\0' y",
        &env.ws.work,
    );
    params
        .arguments
        .as_mut()
        .unwrap()
        .insert("timeout_ms".into(), json!(300_000));
    let result = client.call_tool(params).await.unwrap();
    let summary = result.structured_content.as_ref().unwrap();
    let bytes = serde_json::to_vec(summary).unwrap().len();
    assert!(bytes <= 4096, "{bytes} bytes: {summary}");
    // seq, a thousand true, rm, head and tr.
    assert_eq!(summary["execs_total"], 1004, "{summary}");
    assert_eq!(
        summary["verdicts"],
        json!({"run": 1003, "escalate": 0, "deny": 1})
    );
    assert_eq!(
        summary["denied"],
        json!([{"command": "/usr/bin/rm -rf x", "decision": "forbidden", "source": "policy",
                "rule": format!("{}:4", env.rules.display()), "reason": "no recursive deletes"}])
    );
    assert_eq!(summary["not_listed"], 0);
    assert!(summary["stdout"]
        .as_str()
        .unwrap()
        .contains(" bytes of output cut ...]"));
    client.cancel().await.unwrap();
    // The full record is in the audit log.
    let lines = std::fs::read_to_string(&audit).unwrap();
    assert_eq!(
        lines
            .lines()
            .filter(|l| l.contains(r#""event":"decided""#))
            .count(),
        1004
    );
}

#[tokio::test]
async fn justification_reaches_hooks_as_the_description_and_is_shown_escaped() {
    let env = Env::new();
    let seen = env.ws.home.join("hook-input.json");
    let hooks = env.ws.home.join("hooks.json");
    // The hook keeps its input and has no opinion, so the person is asked next.
    std::fs::write(
        &hooks,
        json!({"hooks": {"PermissionRequest": [{"hooks": [{"type": "command",
            "command": format!("cat > {}", seen.display())}]}]}})
        .to_string(),
    )
    .unwrap();
    let hooks_arg = hooks.display().to_string();
    let client = connect(&env, Answer::Accept("once"), &["--hooks", &hooks_arg]).await;
    let mut params = shell_params("touch t1", &env.ws.work);
    params.arguments.as_mut().unwrap().insert(
        "justification".into(),
        json!("make t1\nrule: fake\u{1b}[2J\u{202e}"),
    );
    client.call_tool(params).await.unwrap();
    let input: Value = serde_json::from_str(&std::fs::read_to_string(&seen).unwrap()).unwrap();
    assert_eq!(
        input["tool_input"],
        json!({"command": "/usr/bin/touch t1", "description": "make t1\nrule: fake\u{1b}[2J\u{202e}"})
    );
    let asked = client.service().asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 1);
    assert!(
        asked[0].ends_with(
            "\njustification: $'make t1\\nrule: fake\\e[2J\\u202e'\nsession allows: \"touch\""
        ),
        "{}",
        asked[0]
    );
    client.cancel().await.unwrap();
}

/// A client that checks the progress protocol line by line: a notification for a token no
/// call carried, or after that call's response, fails the test; so does a progress token on
/// a request the server sends.
#[tokio::test]
async fn progress_only_for_the_calls_token_all_before_its_response_none_on_our_requests() {
    let env = Env::new();
    let mut child = env
        .command(&[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let send = |message: Value| {
        let mut line = message.to_string();
        line.push('\n');
        line
    };
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {"elicitation": {}},
        "clientInfo": {"name": "strict", "version": "0"}}});
    let call = |id: u64, token: Value, command: &str| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "_meta": {"progressToken": token},
            "name": "shell", "arguments": {"command": command, "workdir": env.ws.work,
                                           "login": false}}})
    };
    let mut text = send(init);
    text.push_str(&send(
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    ));
    text.push_str(&send(call(
        2,
        json!("tok-a"),
        "date > /dev/null; (rm -rf x); touch t; true",
    )));
    text.push_str(&send(call(3, json!(77), "cat /dev/null; ls > /dev/null")));
    stdin.write_all(text.as_bytes()).await.unwrap();
    stdin.flush().await.unwrap();
    let tokens = [(json!("tok-a"), json!(2)), (json!(77), json!(3))];
    let mut answered = Vec::new();
    let mut progress = Vec::new();
    while answered.len() < 3 {
        let line = tokio::time::timeout(Duration::from_secs(60), stdout.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let message: Value = serde_json::from_str(&line).unwrap();
        if message["method"] == "notifications/progress" {
            let token = &message["params"]["progressToken"];
            let (_, id) = tokens
                .iter()
                .find(|(t, _)| t == token)
                .unwrap_or_else(|| panic!("progress for a token nobody issued: {line}"));
            assert!(
                !answered.contains(id),
                "progress after the response to {id}: {line}"
            );
            progress.push(token.clone());
        } else if message["method"] == "elicitation/create" {
            assert!(
                message["params"]["_meta"].get("progressToken").is_none(),
                "our own request carries a progress token: {line}"
            );
            let answer = json!({"jsonrpc": "2.0", "id": message["id"], "result": {
                "action": "accept", "content": {"decision": "once"}}});
            stdin.write_all(send(answer).as_bytes()).await.unwrap();
            stdin.flush().await.unwrap();
        } else if message.get("id").is_some() && message.get("method").is_none() {
            answered.push(message["id"].clone());
        } else {
            panic!("unexpected message {line}");
        }
    }
    // After both responses, one more round trip: anything still queued would come first.
    stdin
        .write_all(send(json!({"jsonrpc": "2.0", "id": 9, "method": "ping"})).as_bytes())
        .await
        .unwrap();
    stdin.flush().await.unwrap();
    let line = stdout.next_line().await.unwrap().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&line).unwrap()["id"],
        9,
        "{line}"
    );
    assert!(
        progress.contains(&json!("tok-a")) && progress.contains(&json!(77)),
        "{progress:?}"
    );
    drop(stdin);
    child.wait().await.unwrap();
}

#[tokio::test]
async fn codex_restricted_network_is_gated_asks_by_elicitation_and_the_summary_counts_connections()
{
    let env = Env::new();
    let port = crate::network::http_upstream();
    let net = env.ws.root().join("net.rules");
    std::fs::write(
        &net,
        r#"network_rule(host="good.test", protocol="http", decision="allow")
network_rule(host="bad.test", protocol="http", decision="deny", justification="not this one")
"#,
    )
    .unwrap();
    let mut args = vec!["--rules".to_owned(), net.display().to_string()];
    for name in ["good.test", "bad.test", "ask.test"] {
        args.extend(["--network-resolve".to_owned(), format!("{name}:127.0.0.1")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let client = connect(&env, Answer::Accept("once"), &args).await;
    let script = format!(
        "curl -sS http://good.test:{port}/a; curl -sf http://bad.test:{port}/ || echo failed; \
         curl -sS http://ask.test:{port}/c"
    );
    let params = with_sandbox_state(
        shell_params(&script, &env.ws.work),
        codex_read_only(&env.ws.work),
    );
    let result = client.call_tool(params).await.unwrap();
    let report = result.structured_content.as_ref().unwrap();
    assert_eq!(
        report["stdout"], "upstream: GET /a HTTP/1.1\nfailed\nupstream: GET /c HTTP/1.1\n",
        "{report}"
    );
    assert_eq!(
        report["network"],
        json!({"connections": 3, "connect": 2, "deny": 1, "elicitations": 1,
               "denied": [format!("http://bad.test:{port}")]}),
        "{report}"
    );
    assert_eq!(
        report["stderr"],
        format!(
            "execgate: network denied: /usr/bin/curl -sf http://bad.test:{port}/: http://bad.test:{port}: not this one (rule {}:2)\n",
            net.display()
        )
    );
    client.cancel().await.unwrap();
}
