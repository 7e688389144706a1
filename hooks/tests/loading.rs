//! Loading hooks.json files. (Finding them is `execgate_decide::layers`.)

mod support;

use execgate_hooks::{HookEvent, HooksConfig, HooksError};
use serde_json::json;
use std::path::PathBuf;
use support::{load, Fixture};

fn commands(config: &HooksConfig) -> Vec<&str> {
    config
        .handlers()
        .iter()
        .map(|h| h.command.as_str())
        .collect()
}

fn messages(warnings: &[execgate_hooks::Warning]) -> Vec<String> {
    warnings.iter().map(|w| w.message.clone()).collect()
}

#[test]
fn json_syntax_error_names_file_line_and_column() {
    let fx = Fixture::new();
    let path = fx.path().join("hooks.json");
    std::fs::write(
        &path,
        "{\n  \"hooks\": {\n    \"PermissionRequest\": [,]\n  }\n}\n",
    )
    .unwrap();
    let err = HooksConfig::load(std::slice::from_ref(&path)).unwrap_err();
    assert!(
        matches!(
            err,
            HooksError::Syntax {
                line: 3,
                column: 27,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "{}:3:27: invalid JSON in hooks file: expected value",
            path.display()
        )
    );
}

#[test]
fn wrong_type_names_file_and_position() {
    let fx = Fixture::new();
    let path = fx.path().join("hooks.json");
    std::fs::write(
        &path,
        r#"{"hooks": {"PermissionRequest": [{"hooks": [{"type": "command", "command": "true", "timeout": "soon"}]}]}}"#,
    )
    .unwrap();
    let err = HooksConfig::load(std::slice::from_ref(&path)).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("{}:1:", path.display())),
        "{text}"
    );
    assert!(
        text.contains("invalid hooks file: invalid type: string \"soon\", expected u64"),
        "{text}"
    );
}

#[test]
fn command_handler_without_command_is_an_error() {
    let fx = Fixture::new();
    let path = fx.hooks_file(
        "hooks.json",
        json!({"PermissionRequest": [{"hooks": [{"type": "command"}]}]}),
    );
    let err = HooksConfig::load(std::slice::from_ref(&path)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: invalid hooks file: PermissionRequest group 1 handler 1: a \"command\" hook needs a \"command\" string",
            path.display()
        )
    );
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let path = PathBuf::from("/nonexistent/execgate/hooks.json");
    let err = HooksConfig::load(std::slice::from_ref(&path)).unwrap_err();
    assert!(matches!(err, HooksError::Read { .. }));
    assert!(err
        .to_string()
        .starts_with("cannot read hooks file /nonexistent/execgate/hooks.json: "));
}

#[test]
fn known_events_are_kept_and_unknown_ones_warned_about() {
    let fx = Fixture::new();
    let handler = |c: &str| json!([{"hooks": [{"type": "command", "command": c}]}]);
    let path = fx.hooks_file(
        "hooks.json",
        json!({
            "PreToolUse": handler("pre"),
            "PermissionRequest": handler("perm"),
            "PostToolUse": handler("post"),
            "SessionStart": handler("start"),
            "UserPromptSubmit": handler("prompt"),
            "Stop": handler("stop"),
            "Notification": "anything at all",
        }),
    );
    let (config, warnings) = load(std::slice::from_ref(&path));
    let events: Vec<HookEvent> = config.handlers().iter().map(|h| h.event).collect();
    assert_eq!(events, HookEvent::ALL.to_vec());
    assert_eq!(
        commands(&config),
        ["pre", "perm", "post", "start", "prompt", "stop"]
    );
    assert_eq!(
        messages(&warnings),
        [format!(
            "ignoring unknown hook event \"Notification\" in {}",
            path.display()
        )]
    );
}

#[test]
fn invalid_regex_matcher_skips_its_group_with_a_warning() {
    let fx = Fixture::new();
    let path = fx.hooks_file(
        "hooks.json",
        json!({"PermissionRequest": [
            {"matcher": "[", "hooks": [{"type": "command", "command": "skipped"}]},
            {"matcher": "Bash", "hooks": [{"type": "command", "command": "kept"}]},
        ]}),
    );
    let (config, warnings) = load(std::slice::from_ref(&path));
    assert_eq!(commands(&config), ["kept"]);
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].message.starts_with(&format!(
            "invalid matcher \"[\" in {}: regex parse error",
            path.display()
        )),
        "{}",
        warnings[0]
    );
    assert!(!warnings[0].message.contains('\n'));
}

#[test]
fn matcher_of_events_without_a_tool_is_ignored() {
    let fx = Fixture::new();
    let path = fx.hooks_file(
        "hooks.json",
        json!({"Stop": [{"matcher": "[", "hooks": [{"type": "command", "command": "kept"}]}]}),
    );
    let (config, warnings) = load(&[path]);
    assert_eq!(commands(&config), ["kept"]);
    assert!(config.handlers()[0].matcher.is_none());
    assert!(warnings.is_empty());
}

#[test]
fn other_handler_types_and_empty_commands_are_skipped_with_warnings() {
    let fx = Fixture::new();
    let path = fx.hooks_file(
        "hooks.json",
        json!({"PermissionRequest": [{"hooks": [
            {"type": "prompt", "prompt": "is this ok?"},
            {"type": "agent"},
            {"type": "http", "url": "http://localhost"},
            {"type": "command", "command": "  "},
            {"type": "command", "command": "bg", "async": true},
            {"type": "command", "command": "kept"},
        ]}]}),
    );
    let (config, warnings) = load(std::slice::from_ref(&path));
    assert_eq!(commands(&config), ["kept"]);
    let p = path.display();
    assert_eq!(
        messages(&warnings),
        [
            format!("skipping prompt hook in {p}: prompt hooks are not supported yet"),
            format!("skipping agent hook in {p}: agent hooks are not supported yet"),
            format!("skipping hook of unsupported type \"http\" in {p}"),
            format!("skipping empty hook command in {p}"),
            format!("skipping async hook in {p}: async hooks are not supported yet"),
        ]
    );
}

#[test]
fn timeout_defaults_to_600_accepts_timeout_sec_and_raises_zero_to_one() {
    let fx = Fixture::new();
    let path = fx.hooks_file(
        "hooks.json",
        json!({"PermissionRequest": [{"hooks": [
            {"type": "command", "command": "a"},
            {"type": "command", "command": "b", "timeout": 5},
            {"type": "command", "command": "c", "timeoutSec": 7},
            {"type": "command", "command": "d", "timeout": 0, "statusMessage": "Checking"},
        ]}]}),
    );
    let (config, _) = load(&[path]);
    let timeouts: Vec<u64> = config.handlers().iter().map(|h| h.timeout_sec).collect();
    assert_eq!(timeouts, [600, 5, 7, 1]);
    assert_eq!(
        config.handlers()[3].status_message.as_deref(),
        Some("Checking")
    );
}

#[test]
fn configured_order_is_files_then_groups_then_handlers() {
    let fx = Fixture::new();
    let group = |a: &str, b: &str| json!({"hooks": [{"type": "command", "command": a}, {"type": "command", "command": b}]});
    let first = fx.hooks_file(
        "first.json",
        json!({"PermissionRequest": [group("1a", "1b"), group("1c", "1d")]}),
    );
    let second = fx.hooks_file(
        "second.json",
        json!({"PermissionRequest": [group("2a", "2b")]}),
    );
    let (config, _) = load(&[first.clone(), second]);
    assert_eq!(commands(&config), ["1a", "1b", "1c", "1d", "2a", "2b"]);
    assert_eq!(config.handlers()[0].source, first);
}

#[test]
fn file_without_hooks_key_has_no_handlers() {
    let fx = Fixture::new();
    let path = fx.path().join("hooks.json");
    std::fs::write(&path, "{}").unwrap();
    let (config, warnings) = load(&[path]);
    assert!(config.handlers().is_empty());
    assert!(warnings.is_empty());
}
