//! The stdio channel, with malformed lines answered instead of dropped.
//!
//! rmcp silently skips a line that is not JSON. The protocol asks for an error response
//! (JSON-RPC `-32700`), so lines pass through this filter first: a line that is not a JSON
//! object gets its error response written to stdout by the filter itself, and the server
//! keeps serving. Every other line goes to rmcp unchanged. Whole lines are written to
//! stdout one at a time, so the filter's answers never interleave with rmcp's messages.
//!
//! On the way out, rmcp puts a progress token on every request it sends (our elicitations):
//! a token the client never issued and that nothing reports on, which strict clients reject.
//! [`outbound`] takes it out; every other line goes out byte for byte.

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, DuplexStream};
use tokio::sync::{mpsc, watch};

/// Buffer size of the in-process pipes between the filter and rmcp.
const PIPE_BYTES: usize = 256 * 1024;

/// The error response for `line`, or `None` when the line should go to rmcp.
pub fn reject(line: &[u8]) -> Option<Value> {
    let trimmed = line.trim_ascii();
    if trimmed.is_empty() {
        return None;
    }
    match serde_json::from_slice::<Value>(trimmed) {
        Err(e) => Some(json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": {"code": -32700, "message": format!("parse error: {e}")},
        })),
        Ok(Value::Object(map)) if map.get("jsonrpc") == Some(&json!("2.0")) => None,
        Ok(Value::Object(map)) => Some(json!({
            "jsonrpc": "2.0",
            "id": map.get("id").cloned().unwrap_or(Value::Null),
            "error": {"code": -32600, "message": "invalid request: not a JSON-RPC 2.0 message"},
        })),
        Ok(_) => Some(json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": {"code": -32600, "message": "invalid request: a message must be a JSON object"},
        })),
    }
}

/// `line` (one message from rmcp) as it should go to the client: a request loses
/// `params._meta.progressToken` (and an `_meta` left empty); anything else is unchanged.
pub fn outbound(line: Vec<u8>) -> Vec<u8> {
    // Only a key can hold these bytes: inside a JSON string the quote would be escaped.
    if memchr::memmem::find(&line, b"\"progressToken\"").is_none() {
        return line;
    }
    let Ok(Value::Object(mut message)) = serde_json::from_slice::<Value>(&line) else {
        return line;
    };
    if !message.contains_key("id") || !message.contains_key("method") {
        return line;
    }
    let Some(Value::Object(params)) = message.get_mut("params") else {
        return line;
    };
    let Some(Value::Object(meta)) = params.get_mut("_meta") else {
        return line;
    };
    if meta.remove("progressToken").is_none() {
        return line;
    }
    if meta.is_empty() {
        params.remove("_meta");
    }
    match serde_json::to_vec(&message) {
        Ok(mut out) => {
            out.push(b'\n');
            out
        }
        Err(_) => line,
    }
}

/// Starts the filter between `input`/`output` and the returned pair of streams, which rmcp
/// reads from and writes to, plus a flag that turns true when `input` ends (the client is
/// gone). The tasks end when `input` ends or `output` fails.
pub fn filtered<R, W>(input: R, output: W) -> ((DuplexStream, DuplexStream), watch::Receiver<bool>)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (server_in, mut feed) = tokio::io::duplex(PIPE_BYTES);
    let (server_out, drain) = tokio::io::duplex(PIPE_BYTES);
    let (errors_tx, mut errors_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let (gone_tx, gone_rx) = watch::channel(false);

    tokio::spawn(async move {
        let mut input = BufReader::new(input);
        let mut line = Vec::new();
        loop {
            line.clear();
            match input.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if let Some(error) = reject(&line) {
                let mut text = error.to_string().into_bytes();
                text.push(b'\n');
                if errors_tx.send(text).is_err() {
                    break;
                }
                continue;
            }
            if !line.ends_with(b"\n") {
                line.push(b'\n');
            }
            if feed.write_all(&line).await.is_err() {
                break;
            }
        }
        // Dropping `feed` tells rmcp the client is gone; the flag tells running calls.
        let _ = gone_tx.send(true);
    });

    tokio::spawn(async move {
        let mut output = output;
        let mut drain = BufReader::new(drain);
        let mut line = Vec::new();
        let mut errors_open = true;
        loop {
            // `read_until` keeps a partly read line in `line` when the other branch wins.
            let chunk = tokio::select! {
                read = drain.read_until(b'\n', &mut line) => match read {
                    Ok(0) | Err(_) => None,
                    Ok(_) => Some(None),
                },
                error = errors_rx.recv(), if errors_open => {
                    errors_open = error.is_some();
                    error.map(Some).or(Some(Some(Vec::new())))
                },
            };
            let written = match chunk {
                None => break,
                Some(None) => {
                    let message = outbound(std::mem::take(&mut line));
                    output.write_all(&message).await
                }
                Some(Some(text)) => output.write_all(&text).await,
            };
            if written.is_err() || output.flush().await.is_err() {
                break;
            }
        }
    });

    ((server_in, server_out), gone_rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_requests_lose_the_progress_token_rmcp_adds() {
        let request = br#"{"jsonrpc":"2.0","id":0,"method":"elicitation/create","params":{"_meta":{"progressToken":0},"message":"m"}}"#;
        assert_eq!(
            serde_json::from_slice::<Value>(&outbound(request.to_vec())).unwrap(),
            json!({"jsonrpc":"2.0","id":0,"method":"elicitation/create","params":{"message":"m"}})
        );
        let kept = br#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":{"progressToken":1,"k":2}}}"#;
        assert_eq!(
            serde_json::from_slice::<Value>(&outbound(kept.to_vec())).unwrap()["params"]["_meta"],
            json!({"k": 2})
        );
        // Notifications and responses go out byte for byte.
        for line in [
            &br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1.0}}"#[..],
            br#"{"jsonrpc":"2.0","id":2,"result":{"_meta":{"progressToken":1},"content":[]}}"#,
        ] {
            assert_eq!(outbound(line.to_vec()), line);
        }
    }

    #[test]
    fn json_rpc_messages_pass() {
        assert_eq!(reject(br#"{"jsonrpc":"2.0","method":"ping","id":1}"#), None);
        assert_eq!(reject(b"\n"), None);
    }

    #[test]
    fn garbage_gets_a_parse_error_with_null_id() {
        let error = reject(b"{not json\n").unwrap();
        assert_eq!(error["id"], Value::Null);
        assert_eq!(error["error"]["code"], -32700);
    }

    #[test]
    fn json_that_is_not_json_rpc_gets_an_invalid_request_with_its_id() {
        let error = reject(br#"{"id":7,"method":"x"}"#).unwrap();
        assert_eq!(error["id"], 7);
        assert_eq!(error["error"]["code"], -32600);
        assert_eq!(reject(b"[1,2]").unwrap()["error"]["code"], -32600);
    }
}
