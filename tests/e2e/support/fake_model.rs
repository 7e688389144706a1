//! Fake model servers on loopback for the real agent CLIs: the OpenAI Responses API (Codex,
//! `wire_api = "responses"`, streamed) and the Anthropic Messages API (Claude Code, streamed).
//!
//! Each server follows a script: turn N of the conversation (N = how many tool results the
//! client has sent back so far) is the script's step N, either a tool call or a final
//! message. Every request body is kept, so a test can read exactly what the client sent
//! back to the model: the tool result the model would see. Plain HTTP/1.1 on 127.0.0.1
//! with keep-alive; anything but a POST gets a 404. Nothing leaves the machine.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One turn of the fake model.
#[derive(Debug, Clone)]
pub enum Step {
    /// Ask for one tool call with these arguments.
    Call(Value),
    /// Answer with this text and end the turn.
    Say(&'static str),
}

/// Which API the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `POST /v1/responses`, server-sent events, as Codex reads them. Tool calls name the
    /// MCP tool `shell` inside the namespace `mcp__execgate`.
    Responses,
    /// `POST /v1/messages`, server-sent events, as Claude Code reads them. Tool calls name
    /// `mcp__execgate__shell`.
    Messages,
}

/// A running fake model. It serves until the test process ends (its thread blocks in
/// `accept`; nothing else is left behind).
pub struct FakeModel {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    requests: Arc<Mutex<Vec<Value>>>,
}

impl FakeModel {
    /// Starts a server for `api` that plays `script`.
    pub fn start(api: Api, script: Vec<Step>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(script);
        let seen = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (script, seen) = (Arc::clone(&script), Arc::clone(&seen));
                std::thread::spawn(move || serve(stream, api, &script, &seen));
            }
        });
        Self { url, requests }
    }

    /// Every model request body received so far (JSON), in arrival order.
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }

    /// The tool results the client sent back to the model, in order, as the text the model
    /// reads (the last request holds the whole conversation).
    pub fn tool_results(&self, api: Api) -> Vec<String> {
        let Some(last) = self.requests().pop() else {
            return Vec::new();
        };
        match api {
            Api::Responses => last["input"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|item| item["type"] == "function_call_output")
                .map(|item| text_of(&item["output"], "input_text"))
                .collect(),
            Api::Messages => last["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|m| m["content"].as_array())
                .flatten()
                .filter(|block| block["type"] == "tool_result")
                .map(|block| text_of(&block["content"], "text"))
                .collect(),
        }
    }
}

/// A tool result's text: a string, or the text of every item of `kind` in a list.
fn text_of(content: &Value, kind: &str) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(items) => items
            .iter()
            .filter(|i| i["type"] == kind)
            .filter_map(|i| i["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    }
}

/// How many tool results `body` carries: the turn number.
fn turn(api: Api, body: &Value) -> usize {
    match api {
        Api::Responses => body["input"].as_array().map_or(0, |items| {
            items
                .iter()
                .filter(|i| i["type"] == "function_call_output")
                .count()
        }),
        Api::Messages => body["messages"].as_array().map_or(0, |messages| {
            messages
                .iter()
                .filter_map(|m| m["content"].as_array())
                .flatten()
                .filter(|b| b["type"] == "tool_result")
                .count()
        }),
    }
}

fn serve(stream: TcpStream, api: Api, script: &[Step], seen: &Mutex<Vec<Value>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("");
        let (status, kind, payload) = if !request_line.starts_with("POST ") {
            ("404 Not Found", "text/plain", Vec::new())
        } else if path.contains("count_tokens") {
            (
                "200 OK",
                "application/json",
                br#"{"input_tokens":1}"#.to_vec(),
            )
        } else {
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let n = turn(api, &body);
            seen.lock().unwrap().push(body);
            let step = script
                .get(n)
                .cloned()
                .unwrap_or(Step::Say("the script is over"));
            let events = match api {
                Api::Responses => responses_events(n, &step),
                Api::Messages => messages_events(n, &step),
            };
            ("200 OK", "text/event-stream", events)
        };
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\n\r\n",
            payload.len()
        );
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(&payload).is_err() {
            return;
        }
    }
}

fn sse(out: &mut Vec<u8>, event: &str, data: Value) {
    out.extend_from_slice(format!("event: {event}\ndata: {data}\n\n").as_bytes());
}

/// One Responses API turn: created, one output item, completed.
fn responses_events(n: usize, step: &Step) -> Vec<u8> {
    let id = format!("resp_{n}");
    let item = match step {
        Step::Call(arguments) => json!({
            "type": "function_call", "id": format!("fc_{n}"), "call_id": format!("call_{n}"),
            "namespace": "mcp__execgate", "name": "shell", "arguments": arguments.to_string(),
        }),
        Step::Say(text) => json!({
            "type": "message", "role": "assistant", "id": format!("msg_{n}"),
            "content": [{"type": "output_text", "text": text}],
        }),
    };
    let mut out = Vec::new();
    sse(
        &mut out,
        "response.created",
        json!({"type": "response.created", "response": {"id": id}}),
    );
    sse(
        &mut out,
        "response.output_item.done",
        json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
    );
    sse(
        &mut out,
        "response.completed",
        json!({"type": "response.completed", "response": {"id": id, "usage": {
            "input_tokens": 1, "input_tokens_details": null, "output_tokens": 1,
            "output_tokens_details": null, "total_tokens": 2}}}),
    );
    out
}

/// One Messages API turn: message_start, one content block, message_delta, message_stop.
fn messages_events(n: usize, step: &Step) -> Vec<u8> {
    let mut out = Vec::new();
    sse(
        &mut out,
        "message_start",
        json!({"type": "message_start", "message": {
            "id": format!("msg_{n}"), "type": "message", "role": "assistant",
            "model": "fake-model", "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 1, "output_tokens": 1}}}),
    );
    let (block, delta, stop) = match step {
        Step::Call(arguments) => (
            json!({"type": "tool_use", "id": format!("toolu_{n}"),
                   "name": "mcp__execgate__shell", "input": {}}),
            json!({"type": "input_json_delta", "partial_json": arguments.to_string()}),
            "tool_use",
        ),
        Step::Say(text) => (
            json!({"type": "text", "text": ""}),
            json!({"type": "text_delta", "text": text}),
            "end_turn",
        ),
    };
    sse(
        &mut out,
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": block}),
    );
    sse(
        &mut out,
        "content_block_delta",
        json!({"type": "content_block_delta", "index": 0, "delta": delta}),
    );
    sse(
        &mut out,
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    );
    sse(
        &mut out,
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
               "usage": {"output_tokens": 1}}),
    );
    sse(&mut out, "message_stop", json!({"type": "message_stop"}));
    out
}
