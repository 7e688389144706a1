//! The `PermissionRequest` event's input: what execgate knows about the command that needs
//! approval, and the JSON object a hook reads on stdin (Codex's field names and order).

use serde::Serialize;
use std::path::PathBuf;

/// The tool name every intercepted exec is reported as (what matchers see).
pub const TOOL_NAME: &str = "Bash";

/// The agent's approval mode, as hooks see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PermissionMode {
    /// Approval may be asked for (`"default"`).
    #[default]
    Default,
    /// Approval mode `never`: nothing will be asked (`"bypassPermissions"`).
    BypassPermissions,
}

impl PermissionMode {
    /// The value of `permission_mode` in the hook input.
    pub fn as_str(self) -> &'static str {
        match self {
            PermissionMode::Default => "default",
            PermissionMode::BypassPermissions => "bypassPermissions",
        }
    }
}

/// A command that needs approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionRequest {
    /// The execgate session's id.
    pub session_id: String,
    /// The id of the agent turn (for `execgate run`, one per script run).
    pub turn_id: String,
    /// The agent's transcript file, when there is one (sent as `null` otherwise).
    pub transcript_path: Option<PathBuf>,
    /// Where the command runs (hooks run elsewhere: see [`crate::RunIn`]).
    pub cwd: PathBuf,
    /// The agent's model name (empty when execgate does not know it).
    pub model: String,
    /// The approval mode.
    pub permission_mode: PermissionMode,
    /// The command line (see [`shell_quote_command`] for intercepted execs).
    pub command: String,
    /// Why the command is run, when the agent said.
    pub description: Option<String>,
}

impl PermissionRequest {
    /// A one-off request with fresh random session and turn ids, no transcript, an empty
    /// model and the default permission mode.
    pub fn new(cwd: PathBuf, command: String) -> Self {
        Self {
            session_id: uuid::Uuid::new_v4().to_string(),
            turn_id: uuid::Uuid::new_v4().to_string(),
            transcript_path: None,
            cwd,
            model: String::new(),
            permission_mode: PermissionMode::Default,
            command,
            description: None,
        }
    }

    /// The JSON object written to each hook's stdin.
    pub fn to_input_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&InputWire {
            session_id: &self.session_id,
            turn_id: &self.turn_id,
            transcript_path: self
                .transcript_path
                .as_ref()
                .map(|p| p.display().to_string()),
            cwd: self.cwd.display().to_string(),
            hook_event_name: "PermissionRequest",
            model: &self.model,
            permission_mode: self.permission_mode.as_str(),
            tool_name: TOOL_NAME,
            tool_input: ToolInputWire {
                command: &self.command,
                description: self.description.as_deref(),
            },
        })
    }
}

#[derive(Serialize)]
struct InputWire<'a> {
    session_id: &'a str,
    turn_id: &'a str,
    transcript_path: Option<String>,
    cwd: String,
    hook_event_name: &'static str,
    model: &'a str,
    permission_mode: &'static str,
    tool_name: &'static str,
    tool_input: ToolInputWire<'a>,
}

#[derive(Serialize)]
struct ToolInputWire<'a> {
    command: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
}

/// Builds the `tool_input.command` string for an intercepted exec: the absolute program
/// path followed by `argv[1..]`, each word quoted for a POSIX shell only when it needs it
/// (`/usr/bin/touch '/tmp/a b'`).
///
/// A word that is not valid UTF-8 is written in ANSI-C form, `$'...'`, with each byte that
/// is not printable ASCII as `\xHH` (`$'caf\xe9'`); bash, zsh and ksh read that form back
/// to the same bytes. NUL cannot occur in an execve argument; were one given it would be
/// written as `\x00` in the same form.
pub fn shell_quote_command(program: &[u8], args: &[&[u8]]) -> String {
    std::iter::once(program)
        .chain(args.iter().copied())
        .map(quote_word)
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote_word(word: &[u8]) -> String {
    match std::str::from_utf8(word) {
        Ok(text) => match shlex::try_quote(text) {
            Ok(quoted) => quoted.into_owned(),
            Err(_) => ansi_c_quote(word),
        },
        Err(_) => ansi_c_quote(word),
    }
}

fn ansi_c_quote(word: &[u8]) -> String {
    let mut out = String::from("$'");
    for &byte in word {
        match byte {
            b'\\' => out.push_str("\\\\"),
            b'\'' => out.push_str("\\'"),
            b' '..=b'~' => out.push(char::from(byte)),
            _ => out.push_str(&format!("\\x{byte:02x}")),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_json_has_codex_fields_in_codex_order() {
        let request = PermissionRequest {
            session_id: "s-1".into(),
            turn_id: "t-1".into(),
            transcript_path: None,
            cwd: PathBuf::from("/work"),
            model: "gpt-test".into(),
            permission_mode: PermissionMode::Default,
            command: "/usr/bin/touch '/tmp/a b'".into(),
            description: None,
        };
        let json = String::from_utf8(request.to_input_json().unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{"session_id":"s-1","turn_id":"t-1","transcript_path":null,"cwd":"/work","hook_event_name":"PermissionRequest","model":"gpt-test","permission_mode":"default","tool_name":"Bash","tool_input":{"command":"/usr/bin/touch '/tmp/a b'"}}"#
        );
    }

    #[test]
    fn input_json_carries_description_transcript_and_bypass_mode() {
        let request = PermissionRequest {
            session_id: "s".into(),
            turn_id: "t".into(),
            transcript_path: Some(PathBuf::from("/tmp/t.jsonl")),
            cwd: PathBuf::from("/"),
            model: String::new(),
            permission_mode: PermissionMode::BypassPermissions,
            command: "ls".into(),
            description: Some("list".into()),
        };
        let value: serde_json::Value =
            serde_json::from_slice(&request.to_input_json().unwrap()).unwrap();
        assert_eq!(value["transcript_path"], "/tmp/t.jsonl");
        assert_eq!(value["permission_mode"], "bypassPermissions");
        assert_eq!(
            value["tool_input"],
            serde_json::json!({"command": "ls", "description": "list"})
        );
    }

    #[test]
    fn quoting_leaves_plain_words_bare_and_quotes_the_rest() {
        assert_eq!(
            shell_quote_command(b"/usr/bin/touch", &[b"/tmp/a b"]),
            "/usr/bin/touch '/tmp/a b'"
        );
        assert_eq!(
            shell_quote_command(b"/bin/echo", &[b"", b"$HOME", b"a'b"]),
            r#"/bin/echo '' '$HOME' "a'b""#
        );
        assert_eq!(shell_quote_command(b"/usr/bin/git", &[]), "/usr/bin/git");
    }

    #[test]
    fn quoting_writes_non_utf8_words_in_ansi_c_form() {
        assert_eq!(
            shell_quote_command(b"/bin/cat", &[b"caf\xe9 'x'\\"]),
            r"/bin/cat $'caf\xe9 \'x\'\\'"
        );
    }

    #[test]
    fn quoted_non_utf8_word_reads_back_to_the_same_bytes_in_bash() {
        let Ok(bash) = which("bash") else { return };
        let word: &[u8] = b"a\xff\x01 '\\\"$x";
        let script = format!(
            "printf %s {}",
            shell_quote_command(b"", &[word]).trim_start_matches("'' ")
        );
        let out = std::process::Command::new(bash)
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        assert_eq!(out.stdout, word);
    }

    fn which(name: &str) -> Result<PathBuf, ()> {
        for dir in ["/bin", "/usr/bin", "/usr/local/bin"] {
            let path = PathBuf::from(dir).join(name);
            if path.is_file() {
                return Ok(path);
            }
        }
        Err(())
    }
}
