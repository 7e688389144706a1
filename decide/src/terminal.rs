//! The terminal approver: asks the person at the user's terminal, one question at a time,
//! through the session's [`Console`]: while it asks, the session's output is held back, keys
//! typed before the question answer nothing, and an answer needs Enter.

use crate::approver::{ApprovalRequest, Approver, BoxFuture, Choice, Unavailable};
use execgate_terminal::Console;
use std::sync::Arc;

/// Asks on the user's terminal, one question at a time.
pub struct TerminalApprover {
    lock: Arc<tokio::sync::Mutex<()>>,
    console: Console,
}

impl TerminalApprover {
    /// An approver asking through `console`.
    pub fn new(console: Console) -> Self {
        Self {
            lock: Arc::new(tokio::sync::Mutex::new(())),
            console,
        }
    }
}

/// The prompt text shown for `request`. Every field is bounded, so on an 80x24 terminal the
/// whole prompt stays on screen; the line above the answer repeats the program and the first
/// words with the number of arguments, and the choices name the prefix they allow.
pub fn render_prompt(request: &ApprovalRequest) -> String {
    let mut text = match request.network() {
        None => String::from("\r\nexecgate: approval needed\r\n"),
        Some(target) => format!("\r\nexecgate: network access needed\r\n  network: {target}\r\n"),
    };
    text.push_str(&format!("  command: {}\r\n", request.command()));
    text.push_str(&format!("  cwd:     {}\r\n", request.cwd()));
    if let Some(rule) = request.rule() {
        text.push_str(&format!("  rule:    {rule}\r\n"));
    }
    if let Some(why) = request.justification() {
        text.push_str(&format!("  reason:  {why}\r\n"));
    }
    if let Some(why) = request.description() {
        text.push_str(&format!("  agent:   {why}\r\n"));
    }
    match request.network() {
        Some(_) => {
            text.push_str("[y] allow once  [s] allow this host for the session  ");
            if request.can_remember() {
                text.push_str("[a] always  ");
            }
        }
        None => {
            let arguments = match request.arguments() {
                1 => "1 argument".to_owned(),
                n => format!("{n} arguments"),
            };
            text.push_str(&format!(
                "  runs:    {} ({arguments})\r\n",
                request.first_words()
            ));
            match request.prefix() {
                Some(prefix) => {
                    text.push_str(&format!(
                        "[y] run once  [s] allow \"{prefix}\" for this session  "
                    ));
                    if request.can_remember() {
                        text.push_str(&format!("[a] always allow \"{prefix}\" (writes a rule)  "));
                    }
                }
                None => text.push_str("[y] run once  [s] run once (nothing to remember)  "),
            }
        }
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

async fn ask(console: &Console, request: &ApprovalRequest) -> Result<Choice, Unavailable> {
    let unavailable =
        |e: std::io::Error| Unavailable::NoApprover(format!("cannot use the terminal: {e}"));
    let question = console.question().await.map_err(unavailable)?;
    question
        .write(render_prompt(request).as_bytes())
        .await
        .map_err(unavailable)?;
    loop {
        // End of input (the person pressed ^D, or the terminal went away) denies.
        let Some(line) = question.read_line().await.map_err(unavailable)? else {
            let _ = question.write(b"\r\n").await;
            question.done();
            return Ok(Choice::Deny);
        };
        let answer = std::str::from_utf8(&line)
            .ok()
            .and_then(|line| parse_answer(line, request.can_remember()));
        if let Some(choice) = answer {
            question.done();
            return Ok(choice);
        }
        let keys = if request.can_remember() {
            "y/s/a/n/x"
        } else {
            "y/s/n/x"
        };
        question
            .write(format!("please answer {keys}: ").as_bytes())
            .await
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
            ask(&self.console, request).await
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
        let text = render_prompt(
            &ApprovalRequest::new(
                b"/usr/bin/git",
                [&b"push"[..], b"origin"],
                b"/work/repo",
                Some("/rules/default.rules:3"),
                Some("publishes commits"),
                true,
            )
            .with_description(Some("ship it\u{1b}[2J"))
            .with_prefix(&["git".to_owned(), "push".to_owned()]),
        );
        assert!(text.contains("  agent:   $'ship it\\e[2J'\r\n"), "{text}");
        assert!(text.contains("command: /usr/bin/git push origin\r\n"));
        assert!(text.contains("cwd:     /work/repo\r\n"));
        assert!(text.contains("rule:    /rules/default.rules:3\r\n"));
        assert!(text.contains("reason:  publishes commits\r\n"));
        assert!(text.contains("  runs:    /usr/bin/git push origin (2 arguments)\r\n"));
        assert!(text.ends_with(
            "[y] run once  [s] allow \"git push\" for this session  \
             [a] always allow \"git push\" (writes a rule)  [n] deny  [x] deny and end the session: "
        ), "{text}");
    }

    #[test]
    fn the_longest_prompt_fits_on_an_80x24_terminal() {
        // Every field as long as it can be shown; a line's bytes bound its columns (a
        // character two columns wide takes three bytes or more).
        let long = "x\u{1b}".repeat(2_000);
        let mut words: Vec<&[u8]> = vec![long.as_bytes()];
        words.resize(100_000, b"x");
        let prefix: Vec<String> = (0..10).map(|_| long.clone()).collect();
        let text = render_prompt(
            &ApprovalRequest::new(
                long.as_bytes(),
                words.iter().copied(),
                long.as_bytes(),
                Some(&long),
                Some(&long),
                true,
            )
            .with_description(Some(&long))
            .with_prefix(&prefix),
        );
        let rows: usize = text
            .split("\r\n")
            .map(|line| line.len().div_ceil(80).max(1))
            .sum();
        assert!(rows <= 24, "{rows} rows:\n{text}");
    }

    #[test]
    fn without_a_prefix_session_says_it_remembers_nothing() {
        let text = render_prompt(&ApprovalRequest::new(
            b"/usr/bin/git",
            [&b"push"[..]],
            b"/w",
            None,
            None,
            false,
        ));
        assert!(
            text.ends_with(
                "  runs:    /usr/bin/git push (1 argument)\r\n[y] run once  \
             [s] run once (nothing to remember)  [n] deny  [x] deny and end the session: "
            ),
            "{text}"
        );
    }

    #[test]
    fn a_network_prompt_names_the_destination_and_whose_connection_it_is() {
        let text = render_prompt(&ApprovalRequest::for_connection(
            "/usr/bin/curl https://pypi.test/",
            b"/work/repo",
            "https://pypi.test:443",
            None,
            None,
            true,
        ));
        assert_eq!(
            text,
            "\r\nexecgate: network access needed\r\n  network: https://pypi.test:443\r\n  command: /usr/bin/curl https://pypi.test/\r\n  cwd:     /work/repo\r\n[y] allow once  [s] allow this host for the session  [a] always  [n] deny  [x] deny and end the session: "
        );
    }
}
