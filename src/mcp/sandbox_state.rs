//! The sandbox a call runs in: the server's flags, or the client's
//! `codex/sandbox-state/update` (Codex's sandbox-state capability), whose parameters are
//! parsed here.

use execgate_sandbox::{SandboxMode, SandboxPolicy};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Codex's experimental capability announcing the sandbox-state request.
pub const SANDBOX_STATE_CAPABILITY: &str = "codex/sandbox-state";
/// The request that sets the sandbox for later calls.
pub const SANDBOX_STATE_METHOD: &str = "codex/sandbox-state/update";

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
    /// `--allow-unix-socket`.
    pub allow_unix_sockets: Vec<PathBuf>,
    /// The session init (install discovery's).
    pub init: PathBuf,
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

/// The sandbox policy for a call in `workdir` (canonical): the client's last sandbox-state
/// update when there was one, else the server's flags; `protected` stays read-only.
pub fn sandbox_policy(
    defaults: &SandboxDefaults,
    state: Option<SandboxState>,
    workdir: &Path,
    protected: &[PathBuf],
) -> SandboxPolicy {
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
    policy.protected_paths = protected.to_vec();
    policy.allow_unprotected_landlock = defaults.allow_unprotected_landlock;
    policy.allow_unix_sockets = defaults.allow_unix_sockets.clone();
    policy.init = defaults.init.clone();
    policy
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
