//! The MCP approver: asks the client's person with an `elicitation/create` request.
//!
//! It only answers; what the answer does is the pipeline's business. A client that did not
//! declare the elicitation capability is never asked: the command is denied. A decline or a
//! cancel looks the same whether a person or the client itself answered (Codex exec declines
//! every question, `claude -p` cancels every one), so the denial says the client did it.

use execgate_decide::{ApprovalRequest, Approver, BoxFuture, Choice, Unavailable};
use rmcp::model::{ElicitRequestParams, ElicitationAction, ElicitationSchema};
use rmcp::service::ElicitationMode;
use rmcp::{Peer, RoleServer};
use std::sync::Arc;

/// The denial reason when the client cannot be asked.
pub const CANNOT_ASK: &str = "approval required; the client cannot be asked";
/// The denial reason when the client declines.
pub const DECLINED: &str = "the MCP client declined the approval request";
/// The denial reason when the client cancels (the call ends too).
pub const CANCELLED: &str = "the MCP client cancelled the approval request; the call was ended";

/// The choice a person picks in the elicitation form, and what it maps to.
const CHOICES: [(&str, &str, Choice); 3] = [
    ("once", "Run once", Choice::Once),
    ("session", "Allow for this server session", Choice::Session),
    ("deny", "Deny", Choice::Deny),
];

/// Asks the MCP client, one question at a time across the whole server.
pub struct ElicitationApprover {
    /// The client of the tool call that needs the approval.
    pub peer: Peer<RoleServer>,
    /// Shared by every call of the server, so a person sees one question at a time.
    pub one_at_a_time: Arc<tokio::sync::Mutex<()>>,
}

/// The text shown to the person: command, cwd, rule and justification, and the prefix the
/// session choice allows (each bounded by the request).
pub fn message(request: &ApprovalRequest) -> String {
    let mut text = match request.network() {
        None => "execgate: approval needed".to_owned(),
        Some(target) => format!("execgate: network access needed\nnetwork: {target}"),
    };
    text.push_str(&format!(
        "\ncommand: {}\ncwd: {}",
        request.command(),
        request.cwd()
    ));
    if let Some(rule) = request.rule() {
        text.push_str(&format!("\nrule: {rule}"));
    }
    if let Some(why) = request.justification() {
        text.push_str(&format!("\nreason: {why}"));
    }
    if let Some(why) = request.description() {
        text.push_str(&format!("\njustification: {why}"));
    }
    if let Some(prefix) = request.prefix() {
        text.push_str(&format!("\nsession allows: \"{prefix}\""));
    }
    text
}

/// The form: one required `decision` field with the three choices.
pub fn schema() -> Result<ElicitationSchema, serde_json::Error> {
    let values: Vec<&str> = CHOICES.iter().map(|c| c.0).collect();
    let names: Vec<&str> = CHOICES.iter().map(|c| c.1).collect();
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "decision": {
                "type": "string",
                "title": "Decision",
                "description": "Run the command once, allow its rule's prefix for the rest of \
                                this server session, or deny it.",
                "enum": values,
                "enumNames": names,
            }
        },
        "required": ["decision"],
    });
    serde_json::from_value(schema)
}

/// Maps the client's answer to a choice. An accept without content runs once (clients that
/// only show yes/no); an accept with an unknown decision denies.
pub fn choice(action: &ElicitationAction, content: Option<&serde_json::Value>) -> Choice {
    match action {
        ElicitationAction::Accept => match content.and_then(|c| c.get("decision")) {
            None => Choice::Once,
            Some(value) => CHOICES
                .iter()
                .find(|c| value.as_str() == Some(c.0))
                .map_or(Choice::Deny, |c| c.2.clone()),
        },
        ElicitationAction::Cancel => Choice::Refused {
            reason: CANCELLED.into(),
            end: true,
        },
        _ => Choice::Refused {
            reason: DECLINED.into(),
            end: false,
        },
    }
}

impl Approver for ElicitationApprover {
    fn ask<'a>(
        &'a self,
        request: &'a ApprovalRequest,
    ) -> BoxFuture<'a, Result<Choice, Unavailable>> {
        Box::pin(async move {
            if !self
                .peer
                .supported_elicitation_modes()
                .contains(&ElicitationMode::Form)
            {
                return Err(Unavailable::NoApprover(CANNOT_ASK.into()));
            }
            let requested_schema = schema().map_err(|e| {
                Unavailable::NoApprover(format!("cannot build the approval form: {e}"))
            })?;
            let params = ElicitRequestParams::FormElicitationParams {
                meta: None,
                message: message(request),
                requested_schema,
            };
            let _one = self.one_at_a_time.lock().await;
            let result = self.peer.create_elicitation(params).await.map_err(|e| {
                Unavailable::NoApprover(format!("cannot ask the client for approval: {e}"))
            })?;
            Ok(choice(&result.action, result.content.as_ref()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn form_offers_once_session_and_deny() {
        let schema = serde_json::to_value(schema().unwrap()).unwrap();
        assert_eq!(
            schema["properties"]["decision"]["enum"],
            json!(["once", "session", "deny"])
        );
        assert_eq!(schema["required"], json!(["decision"]));
    }

    #[test]
    fn answers_map_to_choices() {
        let accept = ElicitationAction::Accept;
        assert_eq!(
            choice(&accept, Some(&json!({"decision": "once"}))),
            Choice::Once
        );
        assert_eq!(
            choice(&accept, Some(&json!({"decision": "session"}))),
            Choice::Session
        );
        assert_eq!(
            choice(&accept, Some(&json!({"decision": "deny"}))),
            Choice::Deny
        );
        assert_eq!(
            choice(&accept, Some(&json!({"decision": "always"}))),
            Choice::Deny
        );
        assert_eq!(choice(&accept, None), Choice::Once);
        assert_eq!(
            choice(&ElicitationAction::Decline, None),
            Choice::Refused {
                reason: DECLINED.into(),
                end: false
            }
        );
        assert_eq!(
            choice(&ElicitationAction::Cancel, None),
            Choice::Refused {
                reason: CANCELLED.into(),
                end: true
            }
        );
    }

    #[test]
    fn message_names_command_cwd_rule_and_reason() {
        let text = message(
            &ApprovalRequest::new(
                b"/usr/bin/git",
                [&b"push"[..]],
                b"/w",
                Some("/r/a.rules:2"),
                Some("publishes"),
                false,
            )
            .with_prefix(&["git".to_owned(), "push".to_owned()]),
        );
        assert_eq!(
            text,
            "execgate: approval needed\ncommand: /usr/bin/git push\ncwd: /w\nrule: /r/a.rules:2\nreason: publishes\nsession allows: \"git push\""
        );
    }
}
