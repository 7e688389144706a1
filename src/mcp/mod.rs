//! The MCP server behind `execgate mcp`: one `shell` tool whose every call runs in its own
//! intercepted, sandboxed session through the same decision pipeline as `execgate run`.
//!
//! Compatible with Codex's `codex-exec-mcp-server`: same tool name, arguments and text
//! result, and the `codex/sandbox-state` capability, honoured per call (`_meta`) and with
//! the older update request. Rules and hooks are loaded once at start; the sandbox is
//! prepared per call (the workdir is the shell's cwd). A call's session ends with the call:
//! when it finishes, when the client cancels it, or when the client goes away. Progress
//! notifications are sent from the call's own future, so none can follow its response.

pub mod approver;
pub mod output;
mod progress;
mod sandbox_meta;
mod sandbox_state;
pub mod stdio;
mod summary;
mod tool;

pub use sandbox_state::SandboxDefaults;

use progress::Progress;
use sandbox_meta::FromMeta;
use sandbox_state::{ClientSandbox, SandboxState, SANDBOX_STATE_CAPABILITY, SANDBOX_STATE_METHOD};
use tool::{check_workdir, shell_tool, tool_error, ShellArgs, DEFAULT_TIMEOUT, TOOL_NAME};

use crate::install::ShellSetup;
use crate::report::ExecRecord;
use crate::session::{run_session, OutputMode, RunConfig};
use crate::setup::Loaded;
use approver::ElicitationApprover;
use execgate_decide::SessionApprovals;
use execgate_sandbox::{BackendChoice, Sandbox};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CustomNotification, CustomRequest,
    CustomResult, ErrorCode, ExperimentalCapabilities, JsonObject, ListToolsResult,
    PaginatedRequestParams, ProtocolVersion, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{json, Value};
use std::borrow::Cow;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;

/// Everything fixed at server start.
pub struct ServerSetup {
    /// The shell every call runs in.
    pub shell: ShellSetup,
    /// The rules and hooks, loaded once, and the approval mode.
    pub loaded: Loaded,
    /// The sandbox of calls whose client sent no sandbox state.
    pub sandbox: SandboxDefaults,
    /// Files kept read-only inside writable roots (loaded rules and hooks, the audit log).
    pub protected_paths: Vec<PathBuf>,
    /// `--pass-env`: request variables escalated commands keep.
    pub pass_env: Vec<OsString>,
    /// Cap on the output returned per stream, and on the structured result as a whole.
    pub max_output_bytes: usize,
    /// `--network-resolve`, for gated calls.
    pub network_resolve: execgate_netgate::ResolveOverrides,
}

/// The MCP server.
#[derive(Clone)]
pub struct ShellServer {
    setup: Arc<ServerSetup>,
    /// The sandbox the last `codex/sandbox-state/update` asked for.
    state: Arc<Mutex<Option<ClientSandbox>>>,
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

    /// The sandbox policy for a call in `workdir` (canonical): the call's own
    /// `codex/sandbox-state` in `_meta`, else the last update request's, else the server's
    /// flags. A state execgate cannot enforce is an error: the call is refused.
    fn sandbox_policy(
        &self,
        workdir: &Path,
        meta: &JsonObject,
    ) -> Result<execgate_sandbox::SandboxPolicy, String> {
        let client = match sandbox_meta::from_meta(meta) {
            Some(FromMeta::Sandbox(sandbox)) => Some(sandbox),
            Some(FromMeta::Strictest(why)) => {
                eprintln!(
                    "execgate: warning: unusable {} ({why}); this call runs read-only, network off",
                    sandbox_meta::META_KEY
                );
                Some(ClientSandbox::strictest())
            }
            Some(FromMeta::Refuse(why)) => return Err(why),
            None => self
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        };
        Ok(sandbox_state::sandbox_policy(
            &self.setup.sandbox,
            client.as_ref(),
            workdir,
            &self.setup.protected_paths,
        ))
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
        // The trusted repositories as they are now, kept read-only for this call.
        let repositories = self.setup.loaded.repositories();
        let policy = match self.sandbox_policy(&workdir, &context.meta.0 .0) {
            Ok(mut policy) => {
                policy.protected_paths.extend(repositories.watched());
                policy
            }
            Err(message) => return Ok(tool_error(message)),
        };
        let sandbox = match tokio::task::spawn_blocking(move || {
            Sandbox::prepare(&policy, BackendChoice::Auto)
        })
        .await
        {
            Ok(Ok(sandbox)) => sandbox,
            Ok(Err(e)) => return Ok(tool_error(format!("cannot prepare the sandbox: {e}"))),
            Err(e) => return Ok(tool_error(format!("cannot prepare the sandbox: {e}"))),
        };

        let mut progress = context.meta.get_progress_token().map(Progress::new);
        let (progress_tx, mut progress_rx) = mpsc::unbounded_channel::<ExecRecord>();
        let approver = Arc::new(ElicitationApprover {
            peer: context.peer.clone(),
            one_at_a_time: Arc::clone(&self.one_question_at_a_time),
        });
        let config = RunConfig {
            script: args.command,
            login: args.login.unwrap_or(true),
            shell: self.setup.shell.clone(),
            sandbox: Arc::new(sandbox),
            pipeline: self
                .setup
                .loaded
                .pipeline(
                    approver,
                    self.server_session_id.clone(),
                    self.session_approvals.clone(),
                )
                .description(args.justification),
            hooks: self.setup.loaded.hook_setup(),
            repositories,
            timeout: Some(
                args.timeout_ms
                    .map_or(DEFAULT_TIMEOUT, Duration::from_millis),
            ),
            output: OutputMode::Capture,
            terminal: None,
            null_stdin: true,
            pass_env: self.setup.pass_env.clone(),
            audit_log: self.setup.loaded.audit_log.clone(),
            network_resolve: self.setup.network_resolve.clone(),
            progress: progress.is_some().then_some(progress_tx),
        };
        // Dropping the session future (cancellation, client gone) kills the shell and every
        // escalated process it started. Progress is sent from here, not from a task of its
        // own, so every notification is written before this call's response and none after.
        let mut client_gone = self.client_gone.clone();
        let gone = async move {
            let _ = client_gone.wait_for(|gone| *gone).await;
        };
        let session = run_session(config);
        tokio::pin!(session, gone);
        let outcome = loop {
            tokio::select! {
                outcome = &mut session => break outcome,
                Some(record) = progress_rx.recv() => {
                    if let Some(progress) = &mut progress {
                        progress.send(&context.peer, &record).await;
                    }
                }
                () = context.ct.cancelled() => {
                    return Err(McpError::new(ErrorCode::INTERNAL_ERROR, "the call was cancelled", None));
                }
                () = &mut gone => {
                    return Err(McpError::new(ErrorCode::INTERNAL_ERROR, "the client went away", None));
                }
            }
        };
        // The session sends its last records as it ends: they go out before the response.
        while let Ok(record) = progress_rx.try_recv() {
            if let Some(progress) = &mut progress {
                progress.send(&context.peer, &record).await;
            }
        }
        match outcome {
            Ok(outcome) => Ok(tool::result(outcome, self.setup.max_output_bytes)),
            Err(e) => Ok(tool_error(format!("{e:#}"))),
        }
    }
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
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = Some(state.client_sandbox());
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
                *self.state.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(state.client_sandbox());
            }
            Ok(None) => eprintln!("execgate: codex/sandbox-state/update without params ignored"),
            Err(e) => eprintln!("execgate: bad codex/sandbox-state/update ignored: {e}"),
        }
    }
}
