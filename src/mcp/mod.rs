//! The MCP server behind `execgate mcp`: one `shell` tool whose every call runs in its own
//! intercepted, sandboxed session through the same decision pipeline as `execgate run`.
//!
//! Compatible with Codex's `codex-exec-mcp-server`: same tool name, arguments and text
//! result, and the `codex/sandbox-state` capability with its update request. Rules and
//! hooks are loaded once at start; the sandbox is prepared per call (the workdir is the
//! shell's cwd). A call's session ends with the call: when it finishes, when the client
//! cancels it, or when the client goes away.

pub mod approver;
pub mod output;
pub mod stdio;

use crate::install::ShellSetup;
use crate::report::{ExecRecord, RunReport};
use crate::session::{run_session, OutputMode, RunConfig, RunOutcome};
use crate::setup::Loaded;
use approver::ElicitationApprover;
use execgate_decide::SessionApprovals;
use execgate_escalate_server::Verdict;
use execgate_sandbox::{BackendChoice, Sandbox, SandboxMode, SandboxPolicy};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, CustomNotification,
    CustomRequest, CustomResult, ErrorCode, ExperimentalCapabilities, JsonObject, ListToolsResult,
    PaginatedRequestParams, ProgressNotificationParam, ProtocolVersion, ServerCapabilities,
    ServerConfig, Tool,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData as McpError, Peer, RoleServer, ServerHandler};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;

/// The tool's name (Codex's).
pub const TOOL_NAME: &str = "shell";
/// Codex's experimental capability announcing the sandbox-state request.
pub const SANDBOX_STATE_CAPABILITY: &str = "codex/sandbox-state";
/// The request that sets the sandbox for later calls.
pub const SANDBOX_STATE_METHOD: &str = "codex/sandbox-state/update";
/// Timeout of a call that names none (Codex's default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(10_000);

/// The sandbox the server's flags ask for.
#[derive(Debug, Clone)]
pub struct SandboxDefaults {
    /// `--sandbox`.
    pub mode: SandboxMode,
    /// `--writable-root`.
    pub writable_roots: Vec<PathBuf>,
    /// `--network`.
    pub network: bool,
    /// `--allow-unprotected-landlock`.
    pub allow_unprotected_landlock: bool,
}

/// Everything fixed at server start.
pub struct ServerSetup {
    /// The shell every call runs in.
    pub shell: ShellSetup,
    /// The rules and hooks, loaded once, and the approval mode.
    pub loaded: Loaded,
    /// The sandbox until a client sends a sandbox-state update.
    pub sandbox: SandboxDefaults,
    /// Files kept read-only inside writable roots (loaded rules and hooks).
    pub protected_paths: Vec<PathBuf>,
    /// `--audit-log`.
    pub audit_log: Option<PathBuf>,
    /// Cap on the output returned per stream.
    pub max_output_bytes: usize,
}

/// Codex's `sandboxPolicy`; fields we do not know are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum CodexSandboxPolicy {
    /// Nothing writable.
    ReadOnly {
        /// Whether IP networking is allowed.
        #[serde(default)]
        network_access: bool,
    },
    /// The cwd, the sandbox cwd, the listed roots and the temporary folders writable.
    WorkspaceWrite {
        /// Extra writable folders.
        #[serde(default)]
        writable_roots: Vec<PathBuf>,
        /// Whether IP networking is allowed.
        #[serde(default)]
        network_access: bool,
        /// Leave `$TMPDIR` read-only.
        #[serde(default)]
        exclude_tmpdir_env_var: bool,
        /// Leave `/tmp` read-only.
        #[serde(default)]
        exclude_slash_tmp: bool,
    },
    /// No sandbox.
    DangerFullAccess {},
}

/// The `codex/sandbox-state/update` parameters.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxState {
    /// The sandbox.
    pub sandbox_policy: CodexSandboxPolicy,
    /// The workspace the sandbox is about (writable in workspace-write).
    #[serde(default)]
    pub sandbox_cwd: Option<PathBuf>,
}

/// The `shell` tool's arguments.
#[derive(Debug, Deserialize)]
struct ShellArgs {
    command: String,
    workdir: String,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    login: Option<bool>,
}

/// Codex's result text.
#[derive(Debug, Serialize)]
struct CodexResult {
    exit_code: i32,
    output: String,
    duration: Duration,
    timed_out: bool,
}

/// The MCP server.
#[derive(Clone)]
pub struct ShellServer {
    setup: Arc<ServerSetup>,
    state: Arc<Mutex<Option<SandboxState>>>,
    session_approvals: SessionApprovals,
    one_question_at_a_time: Arc<tokio::sync::Mutex<()>>,
    server_session_id: String,
    client_gone: tokio::sync::watch::Receiver<bool>,
}

impl ShellServer {
    /// A server with no sandbox-state update received yet. Running calls end when
    /// `client_gone` turns true.
    pub fn new(setup: ServerSetup, client_gone: tokio::sync::watch::Receiver<bool>) -> Self {
        Self {
            setup: Arc::new(setup),
            state: Arc::new(Mutex::new(None)),
            session_approvals: SessionApprovals::default(),
            one_question_at_a_time: Arc::new(tokio::sync::Mutex::new(())),
            server_session_id: uuid::Uuid::new_v4().to_string(),
            client_gone,
        }
    }

    /// The sandbox policy for a call in `workdir` (canonical).
    fn sandbox_policy(&self, workdir: &Path) -> SandboxPolicy {
        let defaults = &self.setup.sandbox;
        let state = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut policy = match state {
            None => {
                let mut policy = SandboxPolicy::new(defaults.mode, workdir);
                policy.writable_roots = defaults.writable_roots.clone();
                policy.network = defaults.network;
                policy
            }
            Some(state) => match state.sandbox_policy {
                CodexSandboxPolicy::ReadOnly { network_access } => {
                    let mut policy = SandboxPolicy::new(SandboxMode::ReadOnly, workdir);
                    policy.network = network_access;
                    policy
                }
                CodexSandboxPolicy::DangerFullAccess {} => {
                    SandboxPolicy::new(SandboxMode::DangerFullAccess, workdir)
                }
                CodexSandboxPolicy::WorkspaceWrite {
                    writable_roots,
                    network_access,
                    exclude_tmpdir_env_var,
                    exclude_slash_tmp,
                } => {
                    let mut policy = SandboxPolicy::new(SandboxMode::WorkspaceWrite, workdir);
                    policy.writable_roots = writable_roots;
                    policy.writable_roots.extend(state.sandbox_cwd);
                    policy.network = network_access;
                    if exclude_tmpdir_env_var {
                        policy.tmpdir = None;
                    }
                    let slash_tmp = PathBuf::from("/tmp");
                    if !exclude_slash_tmp && policy.tmpdir.as_ref() != Some(&slash_tmp) {
                        policy.writable_roots.push(slash_tmp);
                    }
                    policy
                }
            },
        };
        policy.protected_paths = self.setup.protected_paths.clone();
        policy.allow_unprotected_landlock = defaults.allow_unprotected_landlock;
        policy
    }

    /// Runs one `shell` call to its end (or until `cancelled`).
    async fn shell(
        &self,
        args: ShellArgs,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let workdir = match check_workdir(&args.workdir) {
            Ok(dir) => dir,
            Err(message) => return Ok(tool_error(message)),
        };
        let policy = self.sandbox_policy(&workdir);
        let sandbox = match tokio::task::spawn_blocking(move || {
            Sandbox::prepare(&policy, BackendChoice::Auto)
        })
        .await
        {
            Ok(Ok(sandbox)) => sandbox,
            Ok(Err(e)) => return Ok(tool_error(format!("cannot prepare the sandbox: {e}"))),
            Err(e) => return Ok(tool_error(format!("cannot prepare the sandbox: {e}"))),
        };

        let progress = context
            .meta
            .get_progress_token()
            .map(|token| spawn_progress(context.peer.clone(), token));
        let approver = Arc::new(ElicitationApprover {
            peer: context.peer.clone(),
            one_at_a_time: Arc::clone(&self.one_question_at_a_time),
        });
        let config = RunConfig {
            script: args.command,
            login: args.login.unwrap_or(true),
            shell: self.setup.shell.clone(),
            sandbox: Arc::new(sandbox),
            pipeline: self.setup.loaded.pipeline(
                approver,
                self.server_session_id.clone(),
                self.session_approvals.clone(),
            ),
            timeout: Some(
                args.timeout_ms
                    .map_or(DEFAULT_TIMEOUT, Duration::from_millis),
            ),
            output: OutputMode::Capture,
            output_gate: None,
            null_stdin: true,
            audit_log: self.setup.audit_log.clone(),
            progress: progress.as_ref().map(|(tx, _)| tx.clone()),
        };
        // Dropping the session future (cancellation, client gone) kills the shell and every
        // escalated process it started.
        let mut client_gone = self.client_gone.clone();
        let outcome = tokio::select! {
            outcome = run_session(config) => outcome,
            () = context.ct.cancelled() => {
                return Err(McpError::new(ErrorCode::INTERNAL_ERROR, "the call was cancelled", None));
            }
            _ = client_gone.wait_for(|gone| *gone) => {
                return Err(McpError::new(ErrorCode::INTERNAL_ERROR, "the client went away", None));
            }
        };
        if let Some((tx, task)) = progress {
            drop(tx);
            let _ = task.await;
        }
        match outcome {
            Ok(outcome) => Ok(self.result(outcome)),
            Err(e) => Ok(tool_error(format!("{e:#}"))),
        }
    }

    fn result(&self, outcome: RunOutcome) -> CallToolResult {
        let max = self.setup.max_output_bytes;
        let RunOutcome {
            mut report,
            combined,
            duration,
        } = outcome;
        let codex = CodexResult {
            exit_code: exit_code(&report),
            output: output::cap(&String::from_utf8_lossy(&combined), max),
            duration,
            timed_out: report.timed_out,
        };
        report.stdout = output::cap(&report.stdout, max);
        report.stderr = output::cap(&report.stderr, max);
        let text = serde_json::to_string(&codex).unwrap_or_default();
        let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
        result.structured_content = serde_json::to_value(&report).ok();
        result
    }
}

/// The Codex `exit_code`: the shell's, else 128+signal, else -1.
fn exit_code(report: &RunReport) -> i32 {
    match (report.exit_code, report.signal) {
        (Some(code), _) => code,
        (None, Some(signo)) => 128 + signo,
        (None, None) => -1,
    }
}

fn tool_error(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

/// Checks that `workdir` is an absolute path to an existing folder; returns it canonical.
fn check_workdir(workdir: &str) -> Result<PathBuf, String> {
    let path = Path::new(workdir);
    if !path.is_absolute() {
        return Err(format!("workdir must be an absolute path, got {workdir:?}"));
    }
    let canonical = path
        .canonicalize()
        .map_err(|e| format!("workdir {workdir} cannot be used: {e}"))?;
    if !canonical.is_dir() {
        return Err(format!("workdir {workdir} is not a directory"));
    }
    Ok(canonical)
}

/// Sends `notifications/progress` as execs are decided or finish, until the sender drops.
fn spawn_progress(
    peer: Peer<RoleServer>,
    token: rmcp::model::ProgressToken,
) -> (
    mpsc::UnboundedSender<ExecRecord>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<ExecRecord>();
    let task = tokio::spawn(async move {
        let (mut run, mut escalated, mut denied) = (0u64, 0u64, 0u64);
        while let Some(record) = rx.recv().await {
            match record.verdict {
                Verdict::Run => run += 1,
                Verdict::Escalate => escalated += 1,
                Verdict::Deny { .. } => denied += 1,
            }
            let mut note =
                ProgressNotificationParam::new(token.clone(), (run + escalated + denied) as f64);
            note.message = Some(format!(
                "{run} commands run, {escalated} escalated, {denied} denied"
            ));
            if peer.notify_progress(note).await.is_err() {
                break;
            }
        }
    });
    (tx, task)
}

/// The `shell` tool's description and input schema (Codex's arguments).
pub fn shell_tool() -> Tool {
    let schema = json!({
        "type": "object",
        "properties": {
            "command": {
                "type": "string",
                "description": "Shell code to run."
            },
            "workdir": {
                "type": "string",
                "description": "Absolute path of the folder to run the command in."
            },
            "timeout_ms": {
                "type": ["integer", "null"],
                "minimum": 0,
                "description": "Kill the command after this many milliseconds (default 10000; time spent waiting for an approval is not counted)."
            },
            "login": {
                "type": ["boolean", "null"],
                "description": "Run the shell as a login shell (-lc) rather than -c. Default true."
            }
        },
        "required": ["command", "workdir"]
    });
    let schema: JsonObject = match schema {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    };
    Tool::new(
        TOOL_NAME,
        "Runs a shell command in a sandbox, with every program it starts checked against \
         execgate's rules, and returns its output. workdir must be an absolute path.",
        Arc::new(schema),
    )
}

impl ServerHandler for ShellServer {
    fn get_info(&self) -> ServerConfig {
        let mut experimental = ExperimentalCapabilities::new();
        let mut sandbox_state = JsonObject::new();
        sandbox_state.insert("version".into(), json!("1.0.0"));
        experimental.insert(SANDBOX_STATE_CAPABILITY.into(), sandbox_state);
        let mut capabilities = ServerCapabilities::builder().enable_tools().build();
        capabilities.experimental = Some(experimental);
        ServerConfig::new(capabilities)
            .with_server_info(rmcp::model::Implementation::new(
                "execgate",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "The shell tool runs commands in a sandbox; programs the rules allow run \
                 outside it, programs they forbid are denied, and others may need a person's \
                 approval.",
            )
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        // Later revisions forbid server-to-client requests, which elicitation needs.
        Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2025_11_25))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(vec![shell_tool()]))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        (name == TOOL_NAME).then(shell_tool)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        if request.name != TOOL_NAME {
            return Err(McpError::invalid_params(
                format!(
                    "unknown tool {:?}; this server has only `shell`",
                    request.name
                ),
                None,
            ));
        }
        let arguments = Value::Object(request.arguments.unwrap_or_default());
        let args: ShellArgs = match serde_json::from_value(arguments) {
            Ok(args) => args,
            Err(e) => return Ok(tool_error(format!("bad arguments for shell: {e}")).into()),
        };
        self.shell(args, context).await.map(Into::into)
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, McpError> {
        if request.method != SANDBOX_STATE_METHOD {
            return Err(McpError::new(
                ErrorCode::METHOD_NOT_FOUND,
                format!("unknown method {}", request.method),
                None,
            ));
        }
        let state: SandboxState = match request.params_as() {
            Ok(Some(state)) => state,
            Ok(None) => {
                return Err(McpError::invalid_params(
                    "codex/sandbox-state/update needs params",
                    None,
                ))
            }
            Err(e) => {
                return Err(McpError::invalid_params(
                    format!("bad codex/sandbox-state/update params: {e}"),
                    None,
                ))
            }
        };
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = Some(state);
        Ok(CustomResult::new(json!({})))
    }

    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        _context: NotificationContext<RoleServer>,
    ) {
        // Some clients send the update as a notification; honour it the same way, but a
        // notification has no answer, so bad params can only be logged.
        if notification.method != SANDBOX_STATE_METHOD {
            return;
        }
        match notification.params_as::<SandboxState>() {
            Ok(Some(state)) => {
                *self.state.lock().unwrap_or_else(PoisonError::into_inner) = Some(state);
            }
            Ok(None) => eprintln!("execgate: codex/sandbox-state/update without params ignored"),
            Err(e) => eprintln!("execgate: bad codex/sandbox-state/update ignored: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_state_update_parses_codex_fields_and_ignores_unknown_ones() {
        let state: SandboxState = serde_json::from_value(json!({
            "sandboxPolicy": {
                "type": "workspace-write",
                "writable_roots": ["/a"],
                "network_access": true,
                "exclude_tmpdir_env_var": false,
                "exclude_slash_tmp": true,
                "something_new": 1
            },
            "sandboxCwd": "/w",
            "codexLinuxSandboxExe": null,
            "useLinuxSandboxBindMounts": false
        }))
        .unwrap();
        assert_eq!(
            state,
            SandboxState {
                sandbox_policy: CodexSandboxPolicy::WorkspaceWrite {
                    writable_roots: vec![PathBuf::from("/a")],
                    network_access: true,
                    exclude_tmpdir_env_var: false,
                    exclude_slash_tmp: true,
                },
                sandbox_cwd: Some(PathBuf::from("/w")),
            }
        );
        let read_only: SandboxState =
            serde_json::from_value(json!({"sandboxPolicy": {"type": "read-only"}})).unwrap();
        assert_eq!(
            read_only.sandbox_policy,
            CodexSandboxPolicy::ReadOnly {
                network_access: false
            }
        );
        let full: SandboxState =
            serde_json::from_value(json!({"sandboxPolicy": {"type": "danger-full-access"}}))
                .unwrap();
        assert_eq!(full.sandbox_policy, CodexSandboxPolicy::DangerFullAccess {});
    }

    #[test]
    fn workdir_must_be_an_existing_absolute_folder() {
        assert!(check_workdir("relative/dir")
            .unwrap_err()
            .contains("must be an absolute path"));
        assert!(check_workdir("/no/such/folder/here")
            .unwrap_err()
            .contains("cannot be used"));
        assert_eq!(check_workdir("/").unwrap(), PathBuf::from("/"));
    }

    #[test]
    fn codex_result_serializes_duration_as_secs_and_nanos() {
        let text = serde_json::to_value(CodexResult {
            exit_code: 0,
            output: "hi\n".into(),
            duration: Duration::new(1, 5),
            timed_out: false,
        })
        .unwrap();
        assert_eq!(
            text,
            json!({"exit_code": 0, "output": "hi\n", "duration": {"secs": 1, "nanos": 5}, "timed_out": false})
        );
    }
}
