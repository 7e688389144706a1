//! Shared fixtures: real `sh` hook scripts and hooks.json files in a temporary directory.

#![allow(dead_code)]

use execgate_hooks::{HooksConfig, PermissionMode, PermissionRequest, Warning};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `body` as a script and returns the hook command that runs it.
    pub fn script(&self, name: &str, body: &str) -> String {
        let path = self.path().join(format!("{name}.sh"));
        std::fs::write(&path, body).unwrap();
        format!("sh '{}'", path.display())
    }

    /// Writes a hooks.json file with the given `hooks` object.
    pub fn hooks_file(&self, name: &str, hooks: Value) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(&json!({ "hooks": hooks })).unwrap(),
        )
        .unwrap();
        path
    }

    /// Loads one hooks.json whose single `PermissionRequest` group (matcher `Bash`) runs
    /// `commands` in order.
    pub fn config(&self, commands: &[String]) -> HooksConfig {
        let handlers: Vec<Value> = commands
            .iter()
            .map(|c| json!({"type": "command", "command": c, "timeout": 30}))
            .collect();
        let path = self.hooks_file(
            "hooks.json",
            json!({"PermissionRequest": [{"matcher": "Bash", "hooks": handlers}]}),
        );
        load(&[path]).0
    }

    pub fn request(&self, command: &str) -> PermissionRequest {
        PermissionRequest {
            session_id: "session-1".into(),
            turn_id: "turn-1".into(),
            transcript_path: None,
            cwd: self.path().to_path_buf(),
            model: "test-model".into(),
            permission_mode: PermissionMode::Default,
            command: command.into(),
            description: None,
        }
    }
}

pub fn load(paths: &[PathBuf]) -> (HooksConfig, Vec<Warning>) {
    HooksConfig::load(paths).unwrap()
}

pub const ALLOW: &str = r#"{"hookSpecificOutput":{"hookEventName":"PermissionRequest","decision":{"behavior":"allow"}}}"#;

/// A JSON deny with `message`.
pub fn deny_json(message: &str) -> String {
    json!({"hookSpecificOutput": {"hookEventName": "PermissionRequest",
        "decision": {"behavior": "deny", "message": message}}})
    .to_string()
}

/// A command that prints `text` verbatim on stdout.
pub fn print(text: &str) -> String {
    format!("printf '%s' '{}'", text.replace('\'', r"'\''"))
}
