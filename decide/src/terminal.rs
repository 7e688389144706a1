//! The terminal approver: asks the person at the controlling terminal (`/dev/tty`), one
//! question at a time, while the session's relayed output is held back.

use crate::approver::{ApprovalRequest, Approver, BoxFuture, Choice, Unavailable};
use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;

/// Asks on the controlling terminal (`/dev/tty`), one question at a time.
pub struct TerminalApprover {
    lock: Arc<tokio::sync::Mutex<()>>,
    output_gate: Option<OutputGate>,
}

/// Held while a prompt is on screen, so the session's relayed output waits instead of
/// garbling the prompt.
#[derive(Clone, Default)]
pub struct OutputGate(Arc<tokio::sync::RwLock<()>>);

impl OutputGate {
    /// Waits until no prompt is on screen; output may be written while the guard lives.
    pub async fn writing(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.0.read().await
    }

    async fn prompting(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.0.write().await
    }
}

impl TerminalApprover {
    /// A terminal approver if this process has a controlling terminal, else `None`.
    pub fn open(output_gate: Option<OutputGate>) -> Option<Self> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .ok()
            .map(|_| Self {
                lock: Arc::new(tokio::sync::Mutex::new(())),
                output_gate,
            })
    }
}

/// The prompt text shown for `request`.
pub fn render_prompt(request: &ApprovalRequest) -> String {
    let mut text = String::from("\r\nexecgate: approval needed\r\n");
    text.push_str(&format!("  command: {}\r\n", request.command()));
    text.push_str(&format!("  cwd:     {}\r\n", request.cwd()));
    if let Some(rule) = request.rule() {
        text.push_str(&format!("  rule:    {rule}\r\n"));
    }
    if let Some(why) = request.justification() {
        text.push_str(&format!("  reason:  {why}\r\n"));
    }
    text.push_str("[y] run once  [s] allow this prefix for the session  ");
    if request.can_remember() {
        text.push_str("[a] always  ");
    }
    text.push_str("[n] deny  [x] deny and end the session: ");
    text
}

/// Parses one answer line; `None` when it is not one of the offered choices.
pub fn parse_answer(line: &str, can_remember: bool) -> Option<Choice> {
    match line.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Some(Choice::Once),
        "s" | "session" => Some(Choice::Session),
        "a" | "always" if can_remember => Some(Choice::Always),
        "n" | "no" => Some(Choice::Deny),
        "x" | "exit" => Some(Choice::DenyAndEnd),
        _ => None,
    }
}

fn ask_on_tty(request: &ApprovalRequest) -> Result<Choice, Unavailable> {
    let unavailable =
        |e: std::io::Error| Unavailable::NoApprover(format!("cannot use /dev/tty: {e}"));
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(unavailable)?;
    let mut out = tty.try_clone().map_err(unavailable)?;
    let mut input = BufReader::new(tty);
    out.write_all(render_prompt(request).as_bytes())
        .map_err(unavailable)?;
    loop {
        out.flush().map_err(unavailable)?;
        let mut line = String::new();
        // End of input (the person pressed ^D, or the terminal went away) denies.
        if input.read_line(&mut line).map_err(unavailable)? == 0 {
            let _ = out.write_all(b"\r\n");
            return Ok(Choice::Deny);
        }
        if let Some(choice) = parse_answer(&line, request.can_remember()) {
            return Ok(choice);
        }
        let keys = if request.can_remember() {
            "y/s/a/n/x"
        } else {
            "y/s/n/x"
        };
        out.write_all(format!("please answer {keys}: ").as_bytes())
            .map_err(unavailable)?;
    }
}

impl Approver for TerminalApprover {
    fn ask<'a>(
        &'a self,
        request: &'a ApprovalRequest,
    ) -> BoxFuture<'a, Result<Choice, Unavailable>> {
        Box::pin(async move {
            let _one_at_a_time = self.lock.lock().await;
            let _quiet = match &self.output_gate {
                Some(gate) => Some(gate.prompting().await),
                None => None,
            };
            let request = request.clone();
            tokio::task::spawn_blocking(move || ask_on_tty(&request))
                .await
                .unwrap_or_else(|e| Err(Unavailable::NoApprover(format!("prompt failed: {e}"))))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_case_insensitively() {
        assert_eq!(parse_answer("Y\n", true), Some(Choice::Once));
        assert_eq!(parse_answer(" s ", true), Some(Choice::Session));
        assert_eq!(parse_answer("a", true), Some(Choice::Always));
        assert_eq!(parse_answer("n", true), Some(Choice::Deny));
        assert_eq!(parse_answer("X", true), Some(Choice::DenyAndEnd));
        assert_eq!(parse_answer("maybe", true), None);
    }

    #[test]
    fn always_is_refused_when_it_cannot_be_offered() {
        assert_eq!(parse_answer("a", false), None);
        let text = render_prompt(&ApprovalRequest::new(
            b"/usr/bin/git",
            [&b"push"[..]],
            b"/w",
            None,
            None,
            false,
        ));
        assert!(!text.contains("[a]"));
    }

    #[test]
    fn prompt_names_command_cwd_rule_and_reason() {
        let text = render_prompt(&ApprovalRequest::new(
            b"/usr/bin/git",
            [&b"push"[..], b"origin"],
            b"/work/repo",
            Some("/rules/default.rules:3"),
            Some("publishes commits"),
            true,
        ));
        assert!(text.contains("command: /usr/bin/git push origin\r\n"));
        assert!(text.contains("cwd:     /work/repo\r\n"));
        assert!(text.contains("rule:    /rules/default.rules:3\r\n"));
        assert!(text.contains("reason:  publishes commits\r\n"));
        assert!(text.contains("[a] always"));
    }
}
