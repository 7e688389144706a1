//! The sandbox a call runs in: the server's flags, or what the client asked for (Codex's
//! sandbox-state capability), as one [`ClientSandbox`].
//!
//! A client asks in two ways: per call, in `_meta` (read by [`super::sandbox_meta`]), or
//! for later calls with the older `codex/sandbox-state/update` request, whose parameters
//! are parsed here. Either replaces the `--sandbox`, `--writable-root` and `--network`
//! flags; the loaded rules and hooks stay read-only whatever the client asks.

use crate::session::network::NetworkMode;
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
    /// `--network` (as the flags' sandbox mode makes it).
    pub network: NetworkMode,
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

/// What a client's sandbox state asks for, whichever way it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientSandbox {
    /// No sandbox at all.
    FullAccess,
    /// Everything readable; only `writable` (and what is inside) writable, except `read_only`.
    Restricted {
        /// Folders the shell may write.
        writable: Vec<PathBuf>,
        /// Paths kept read-only even inside `writable`.
        read_only: Vec<PathBuf>,
        /// The network: Codex's `restricted` (or `network_access: false`) is `gated`,
        /// `enabled` is `on`; a state execgate cannot read gets `off`.
        network: NetworkMode,
        /// Whether the call's workdir is writable whether or not `writable` covers it (the
        /// older update request's workspace-write; the per-call state lists its folders).
        workdir_writable: bool,
    },
}

impl ClientSandbox {
    /// Read-only, network off: what a state we cannot read gets.
    pub fn strictest() -> Self {
        ClientSandbox::Restricted {
            writable: Vec::new(),
            read_only: Vec::new(),
            network: NetworkMode::Off,
            workdir_writable: false,
        }
    }

    /// The sandbox policy for a call in `workdir` (canonical), before the server's
    /// protected paths are added.
    fn policy(&self, workdir: &Path) -> SandboxPolicy {
        match self {
            ClientSandbox::FullAccess => SandboxPolicy::new(SandboxMode::DangerFullAccess, workdir),
            ClientSandbox::Restricted {
                writable,
                read_only,
                network,
                workdir_writable,
            } => {
                let writable: Vec<PathBuf> =
                    writable.iter().filter(|p| p.is_dir()).cloned().collect();
                let covered = writable.iter().any(|root| {
                    std::fs::canonicalize(root).is_ok_and(|root| workdir.starts_with(root))
                });
                let mode = if writable.is_empty() && !workdir_writable {
                    SandboxMode::ReadOnly
                } else {
                    SandboxMode::WorkspaceWrite
                };
                let mut policy = SandboxPolicy::new(mode, workdir);
                policy.tmpdir = None;
                policy.writable_roots = writable;
                network.apply(&mut policy);
                policy.protected_paths = read_only.clone();
                // Workspace-write always lets the shell write its cwd; when the client did
                // not grant the workdir, keep it read-only instead.
                if mode == SandboxMode::WorkspaceWrite && !workdir_writable && !covered {
                    policy.protected_paths.push(workdir.to_path_buf());
                }
                policy
            }
        }
    }
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

impl SandboxState {
    /// The sandbox this update asks for. Workspace-write keeps its meaning: the call's
    /// workdir, `sandboxCwd`, the listed roots and the temporary folders writable.
    pub fn client_sandbox(&self) -> ClientSandbox {
        match &self.sandbox_policy {
            CodexSandboxPolicy::ReadOnly { network_access } => ClientSandbox::Restricted {
                writable: Vec::new(),
                read_only: Vec::new(),
                network: NetworkMode::from_access(*network_access),
                workdir_writable: false,
            },
            CodexSandboxPolicy::DangerFullAccess {} => ClientSandbox::FullAccess,
            CodexSandboxPolicy::WorkspaceWrite {
                writable_roots,
                network_access,
                exclude_tmpdir_env_var,
                exclude_slash_tmp,
            } => {
                let mut writable = writable_roots.clone();
                writable.extend(self.sandbox_cwd.clone());
                if !exclude_tmpdir_env_var {
                    writable.push(std::env::temp_dir());
                }
                if !exclude_slash_tmp {
                    writable.push(PathBuf::from("/tmp"));
                }
                ClientSandbox::Restricted {
                    writable,
                    read_only: Vec::new(),
                    network: NetworkMode::from_access(*network_access),
                    workdir_writable: true,
                }
            }
        }
    }
}

/// The sandbox policy for a call in `workdir` (canonical): what the client asked for when
/// it did, else the server's flags; `protected` (the loaded rules and hooks) stays
/// read-only either way.
pub fn sandbox_policy(
    defaults: &SandboxDefaults,
    client: Option<&ClientSandbox>,
    workdir: &Path,
    protected: &[PathBuf],
) -> SandboxPolicy {
    let mut policy = match client {
        Some(client) => client.policy(workdir),
        None => {
            let mut policy = SandboxPolicy::new(defaults.mode, workdir);
            policy.writable_roots = defaults.writable_roots.clone();
            defaults.network.apply(&mut policy);
            policy
        }
    };
    policy.protected_paths.extend(protected.iter().cloned());
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

    #[test]
    fn a_client_sandbox_without_writes_is_read_only_and_an_ungranted_workdir_stays_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().canonicalize().unwrap();
        let defaults = SandboxDefaults {
            mode: SandboxMode::DangerFullAccess,
            writable_roots: Vec::new(),
            network: NetworkMode::On,
            allow_unprotected_landlock: false,
            allow_unix_sockets: Vec::new(),
            init: PathBuf::from("/nonexistent/execgate-init"),
        };
        let rules = PathBuf::from("/rules/default.rules");
        let policy = sandbox_policy(
            &defaults,
            Some(&ClientSandbox::strictest()),
            &work,
            std::slice::from_ref(&rules),
        );
        assert_eq!(policy.mode, SandboxMode::ReadOnly);
        assert!(!policy.network);
        assert_eq!(policy.gated, None);
        assert_eq!(policy.protected_paths, std::slice::from_ref(&rules));
        let other = work.join("other");
        std::fs::create_dir(&other).unwrap();
        let granted_elsewhere = ClientSandbox::Restricted {
            writable: vec![other.clone()],
            read_only: Vec::new(),
            network: NetworkMode::Off,
            workdir_writable: false,
        };
        let policy = sandbox_policy(&defaults, Some(&granted_elsewhere), &work, &[]);
        assert_eq!(policy.mode, SandboxMode::WorkspaceWrite);
        assert_eq!(policy.writable_roots, std::slice::from_ref(&other));
        assert_eq!(policy.protected_paths, std::slice::from_ref(&work));
        let policy = sandbox_policy(&defaults, Some(&granted_elsewhere), &other, &[]);
        assert!(policy.protected_paths.is_empty());
    }
}
