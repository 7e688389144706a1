//! The sandbox a Codex client asks for per call, in `_meta["codex/sandbox-state"]`, read
//! into a [`ClientSandbox`] that replaces the server's `--sandbox` flags for the call.
//!
//! The state is read with an allow-list: unknown keys are ignored, but an unknown `type`,
//! `kind` or `access` value, or anything malformed, yields the strictest sandbox (read-only,
//! network off) and a warning. A shape that restricts reading cannot be honoured
//! (execgate's sandbox restricts writes only), so the call is refused rather than run with
//! more access than the client asked for.

use super::sandbox_state::ClientSandbox;
use crate::session::network::NetworkMode;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, PathBuf};

/// The `_meta` key Codex puts its sandbox state under on every `tools/call`.
pub const META_KEY: &str = "codex/sandbox-state";
/// The same state under a second name (Codex sends both, identical).
pub const META_KEY_ALT: &str = "codex/sandbox-state-meta";

/// A per-call state, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromMeta {
    /// The sandbox to use.
    Sandbox(ClientSandbox),
    /// The state could not be read: the strictest sandbox, and this warning on stderr.
    Strictest(String),
    /// The state asks for something execgate cannot enforce: refuse the call with this.
    Refuse(String),
}

/// Reads the state from a call's `_meta`; `None` when the call carries none.
pub fn from_meta(meta: &Map<String, Value>) -> Option<FromMeta> {
    let state = match (meta.get(META_KEY), meta.get(META_KEY_ALT)) {
        (None, None) => return None,
        (Some(a), Some(b)) if a != b => {
            return Some(FromMeta::Strictest(format!(
                "{META_KEY} and {META_KEY_ALT} differ"
            )))
        }
        (Some(state), _) | (None, Some(state)) => state,
    };
    Some(match parse(state) {
        Ok(sandbox) => FromMeta::Sandbox(sandbox),
        Err(Unusable::Malformed(why)) => FromMeta::Strictest(why),
        Err(Unusable::Unenforceable(why)) => FromMeta::Refuse(why),
    })
}

enum Unusable {
    Malformed(String),
    Unenforceable(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct State {
    permission_profile: Profile,
    #[serde(default)]
    sandbox_cwd: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Profile {
    Disabled,
    Managed {
        file_system: FileSystem,
        network: Network,
    },
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum FileSystem {
    Restricted {
        #[serde(default)]
        entries: Vec<Entry>,
    },
    Unrestricted,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Network {
    Restricted,
    Enabled,
}

#[derive(Deserialize)]
struct Entry {
    path: EntryPath,
    access: Access,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Access {
    Read,
    Write,
    None,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum EntryPath {
    Path { path: PathBuf },
    Special { value: Special },
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Special {
    Root,
    Minimal,
    CurrentWorkingDirectory,
    ProjectRoots {
        #[serde(default)]
        subpath: Option<PathBuf>,
    },
    Tmpdir,
    SlashTmp,
}

fn parse(state: &Value) -> Result<ClientSandbox, Unusable> {
    let malformed = |why: String| Unusable::Malformed(format!("{META_KEY}: {why}"));
    let state = State::deserialize(state).map_err(|e| malformed(e.to_string()))?;
    let (file_system, network) = match state.permission_profile {
        Profile::Disabled => return Ok(ClientSandbox::FullAccess),
        Profile::Managed {
            file_system,
            network,
        } => (
            file_system,
            NetworkMode::from_access(network == Network::Enabled),
        ),
    };
    let entries = match file_system {
        FileSystem::Unrestricted => {
            return Ok(ClientSandbox::Restricted {
                writable: vec![PathBuf::from("/")],
                read_only: Vec::new(),
                network,
                workdir_writable: true,
            })
        }
        FileSystem::Restricted { entries } => entries,
    };
    let cwd = match &state.sandbox_cwd {
        Some(url) => Some(file_url_path(url).map_err(malformed)?),
        None => None,
    };
    let mut reads_everything = false;
    let mut writable = Vec::new();
    let mut read_only = Vec::new();
    for entry in entries {
        let path = match entry.path {
            EntryPath::Path { path } => {
                if !path.is_absolute() {
                    return Err(malformed(format!(
                        "path {} is not absolute",
                        path.display()
                    )));
                }
                Some(path)
            }
            EntryPath::Special { value } => match value {
                Special::Root => {
                    reads_everything |= entry.access != Access::None;
                    Some(PathBuf::from("/"))
                }
                Special::Minimal if entry.access == Access::Read => None,
                Special::Minimal => {
                    return Err(malformed("only read access makes sense for minimal".into()))
                }
                Special::CurrentWorkingDirectory | Special::ProjectRoots { subpath: None } => Some(
                    cwd.clone()
                        .ok_or_else(|| malformed("no sandboxCwd".into()))?,
                ),
                Special::ProjectRoots {
                    subpath: Some(subpath),
                } => {
                    let plain = subpath
                        .components()
                        .all(|c| matches!(c, Component::Normal(_)));
                    if !plain {
                        return Err(malformed(format!(
                            "project_roots subpath {} is not a plain relative path",
                            subpath.display()
                        )));
                    }
                    let cwd = cwd
                        .clone()
                        .ok_or_else(|| malformed("no sandboxCwd".into()))?;
                    Some(cwd.join(subpath))
                }
                Special::Tmpdir => std::env::var_os("TMPDIR")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
                    .filter(|p| p.is_absolute()),
                Special::SlashTmp => Some(PathBuf::from("/tmp")),
            },
        };
        let Some(path) = path else { continue };
        match entry.access {
            Access::Write => writable.push(path),
            Access::Read => read_only.push(path),
            Access::None => {
                return Err(Unusable::Unenforceable(format!(
                    "the client's sandbox hides {} from reading, which execgate cannot do (its \
                     sandbox only restricts writes); remove that entry from the client's \
                     permission profile",
                    path.display()
                )))
            }
        }
    }
    if !reads_everything {
        return Err(Unusable::Unenforceable(
            "the client's sandbox does not let the shell read the whole filesystem, which \
             execgate cannot restrict (its sandbox only restricts writes); give the profile \
             read access to the root"
                .into(),
        ));
    }
    // Read entries matter only inside a writable folder, where they carve a read-only hole.
    read_only.retain(|p| writable.iter().any(|w| p.starts_with(w) && p != w));
    // Root writable: everything is, but the carve-outs.
    Ok(ClientSandbox::Restricted {
        writable,
        read_only,
        network,
        workdir_writable: false,
    })
}

/// The path of a `file://` URL (percent-decoded bytes), or an absolute path given as is.
fn file_url_path(url: &str) -> Result<PathBuf, String> {
    let Some(rest) = url.strip_prefix("file://") else {
        return if url.starts_with('/') {
            Ok(PathBuf::from(url))
        } else {
            Err(format!(
                "sandboxCwd {url:?} is neither a file:// URL nor an absolute path"
            ))
        };
    };
    let path = match rest.strip_prefix("localhost") {
        Some(path) => path,
        None => rest,
    };
    if !path.starts_with('/') || path.contains(['?', '#']) {
        return Err(format!("sandboxCwd {url:?} is not a local file:// URL"));
    }
    let mut bytes = Vec::with_capacity(path.len());
    let mut rest = path.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = tail
                .get(..2)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("sandboxCwd {url:?} has a bad %-escape"))?;
            bytes.push(hex);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    if bytes.contains(&0) {
        return Err(format!("sandboxCwd {url:?} holds a NUL byte"));
    }
    let path = PathBuf::from(OsString::from_vec(bytes));
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!("sandboxCwd {url:?} has a .. component"));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(state: Value) -> FromMeta {
        let mut meta = Map::new();
        meta.insert(META_KEY.into(), state.clone());
        meta.insert(META_KEY_ALT.into(), state);
        meta.insert("progressToken".into(), json!(1));
        from_meta(&meta).unwrap()
    }

    fn root_read() -> Value {
        json!({"path": {"type": "special", "value": {"kind": "root"}}, "access": "read"})
    }

    fn managed(entries: Vec<Value>, network: &str) -> Value {
        json!({
            "permissionProfile": {"type": "managed",
                "file_system": {"type": "restricted", "entries": entries}, "network": network},
            "codexLinuxSandboxExe": "/x/codex", "sandboxCwd": "file:///w%20s",
            "useLegacyLandlock": false, "useMxc": false,
        })
    }

    fn strictest(result: FromMeta) -> String {
        match result {
            FromMeta::Strictest(why) => why,
            other => panic!("expected the strictest sandbox, got {other:?}"),
        }
    }

    #[test]
    fn no_state_in_meta_is_none() {
        let mut meta = Map::new();
        meta.insert("progressToken".into(), json!(1));
        assert_eq!(from_meta(&meta), None);
    }

    #[test]
    fn codex_read_only_is_read_only_with_the_network_gated() {
        assert_eq!(
            read(managed(vec![root_read()], "restricted")),
            FromMeta::Sandbox(ClientSandbox::Restricted {
                writable: Vec::new(),
                read_only: Vec::new(),
                network: NetworkMode::Gated,
                workdir_writable: false,
            })
        );
    }

    #[test]
    fn codex_full_access_is_no_sandbox() {
        assert_eq!(
            read(json!({"permissionProfile": {"type": "disabled"}, "sandboxCwd": "file:///w"})),
            FromMeta::Sandbox(ClientSandbox::FullAccess)
        );
    }

    #[test]
    fn codex_workspace_write_lists_its_folders_and_carves_out_metadata() {
        let path = |p: &str, access: &str| {
            json!({"path": {"type": "path", "path": p}, "access": access,
                   "missing_path_behavior": "skip"})
        };
        let special = |kind: &str, access: &str| json!({"path": {"type": "special", "value": {"kind": kind}}, "access": access});
        let state = managed(
            vec![
                root_read(),
                path("/w s", "write"),
                special("slash_tmp", "write"),
                special("current_working_directory", "write"),
                path("/w s/.git", "read"),
                path("/w s/.agents", "read"),
                path("/w s/.codex", "read"),
                path("/w s/.aws", "read"),
                path("/elsewhere/.git", "read"),
            ],
            "enabled",
        );
        assert_eq!(
            read(state),
            FromMeta::Sandbox(ClientSandbox::Restricted {
                writable: ["/w s", "/tmp", "/w s"].map(PathBuf::from).to_vec(),
                read_only: ["/w s/.git", "/w s/.agents", "/w s/.codex", "/w s/.aws"]
                    .map(PathBuf::from)
                    .to_vec(),
                network: NetworkMode::On,
                workdir_writable: false,
            })
        );
    }

    #[test]
    fn tmpdir_is_the_servers_tmpdir_and_project_roots_take_a_subpath() {
        let state = managed(
            vec![
                root_read(),
                json!({"path": {"type": "special", "value": {"kind": "project_roots",
                        "subpath": "sub/dir"}}, "access": "write"}),
            ],
            "restricted",
        );
        match read(state) {
            FromMeta::Sandbox(ClientSandbox::Restricted { writable, .. }) => {
                assert_eq!(writable, [PathBuf::from("/w s/sub/dir")]);
            }
            other => panic!("{other:?}"),
        }
        let escape = managed(
            vec![
                root_read(),
                json!({"path": {"type": "special", "value": {"kind": "project_roots",
                        "subpath": "../up"}}, "access": "write"}),
            ],
            "restricted",
        );
        assert!(strictest(read(escape)).contains("not a plain relative path"));
    }

    #[test]
    fn unknown_type_kind_access_or_network_is_the_strictest_sandbox() {
        let unknown_kind = managed(
            vec![
                root_read(),
                json!({"path": {"type": "special", "value": {"kind": "unknown",
                        "path": ":future"}}, "access": "write"}),
            ],
            "restricted",
        );
        assert!(strictest(read(unknown_kind)).contains("unknown variant"));
        let unknown_access = managed(
            vec![
                json!({"path": {"type": "special", "value": {"kind": "root"}},
                        "access": "append"}),
            ],
            "restricted",
        );
        assert!(strictest(read(unknown_access)).contains("unknown variant"));
        let unknown_profile = json!({"permissionProfile": {"type": "external",
                                     "network": "enabled"}});
        assert!(strictest(read(unknown_profile)).contains("unknown variant"));
        assert!(strictest(read(managed(vec![root_read()], "gated"))).contains("unknown variant"));
        let unknown_path_type = managed(
            vec![
                root_read(),
                json!({"path": {"type": "glob", "pattern": "**"}, "access": "write"}),
            ],
            "restricted",
        );
        assert!(strictest(read(unknown_path_type)).contains("unknown variant"));
    }

    #[test]
    fn malformed_states_are_the_strictest_sandbox() {
        for state in [
            json!("read-only"),
            json!({}),
            json!({"permissionProfile": {"type": "managed", "network": "enabled"}}),
            managed(
                vec![json!({"path": {"type": "path", "path": "rel"}, "access": "write"})],
                "restricted",
            ),
            json!({"permissionProfile": {"type": "managed", "file_system":
                {"type": "restricted", "entries": [root_read()]}, "network": "restricted"},
                "sandboxCwd": "https://example.com/w"}),
            json!({"permissionProfile": {"type": "managed", "file_system":
                {"type": "restricted", "entries": [root_read(), {"path": {"type": "special",
                "value": {"kind": "current_working_directory"}}, "access": "write"}]},
                "network": "restricted"}}),
        ] {
            strictest(read(state));
        }
        let mut meta = Map::new();
        meta.insert(
            META_KEY.into(),
            json!({"permissionProfile": {"type": "disabled"}}),
        );
        meta.insert(
            META_KEY_ALT.into(),
            managed(vec![root_read()], "restricted"),
        );
        assert!(strictest(from_meta(&meta).unwrap()).contains("differ"));
    }

    #[test]
    fn only_the_alternative_key_is_enough() {
        let mut meta = Map::new();
        meta.insert(
            META_KEY_ALT.into(),
            json!({"permissionProfile": {"type": "disabled"}}),
        );
        assert_eq!(
            from_meta(&meta),
            Some(FromMeta::Sandbox(ClientSandbox::FullAccess))
        );
    }

    #[test]
    fn restricted_reading_is_refused() {
        let hidden = managed(
            vec![
                root_read(),
                json!({"path": {"type": "path", "path": "/home/me/.ssh"}, "access": "none"}),
            ],
            "restricted",
        );
        assert!(matches!(read(hidden), FromMeta::Refuse(why) if why.contains("/home/me/.ssh")));
        let minimal = managed(
            vec![
                json!({"path": {"type": "special", "value": {"kind": "minimal"}},
                        "access": "read"}),
            ],
            "restricted",
        );
        assert!(matches!(read(minimal), FromMeta::Refuse(_)));
    }

    #[test]
    fn unrestricted_file_system_writes_everywhere_with_the_network_as_asked() {
        let state = json!({"permissionProfile": {"type": "managed",
            "file_system": {"type": "unrestricted"}, "network": "restricted"}});
        assert_eq!(
            read(state),
            FromMeta::Sandbox(ClientSandbox::Restricted {
                writable: vec![PathBuf::from("/")],
                read_only: Vec::new(),
                network: NetworkMode::Gated,
                workdir_writable: true,
            })
        );
    }

    #[test]
    fn file_urls_are_percent_decoded_to_bytes() {
        assert_eq!(
            file_url_path("file:///a%20b/%C3%A9").unwrap(),
            PathBuf::from("/a b/é")
        );
        assert_eq!(
            file_url_path("file://localhost/x").unwrap(),
            PathBuf::from("/x")
        );
        assert_eq!(file_url_path("/plain").unwrap(), PathBuf::from("/plain"));
        assert_eq!(
            file_url_path("file:///%ff").unwrap(),
            PathBuf::from(OsString::from_vec(vec![b'/', 0xff]))
        );
        for bad in [
            "file://host/x",
            "file:///a%zz",
            "file:///a%00",
            "file:///a/../b",
            "rel",
            "file:///x?q",
        ] {
            assert!(file_url_path(bad).is_err(), "{bad}");
        }
    }
}
