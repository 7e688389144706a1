//! Running one handler process: `sh -c COMMAND` in its own process group, the input on
//! stdin, stdout and stderr captured up to a cap, and a timeout that kills the whole group.
//!
//! Nothing here may hang on a misbehaving hook: stdin is written while the output is read,
//! a hook that stops reading stdin only costs it its input, and output past the cap is read
//! and thrown away so the hook never blocks on a full pipe.

use crate::output::{HookOutputEntry, HookOutputEntryKind};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::io;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// How much of each of a hook's stdout and stderr is kept, in bytes.
pub const OUTPUT_CAP_BYTES: usize = 1024 * 1024;

/// What running a handler produced.
#[derive(Debug, Default)]
pub(crate) struct RunResult {
    /// The exit code; `None` when killed by a signal (or not run).
    pub exit_code: Option<i32>,
    /// The first [`OUTPUT_CAP_BYTES`] of stdout.
    pub stdout: Vec<u8>,
    /// The first [`OUTPUT_CAP_BYTES`] of stderr.
    pub stderr: Vec<u8>,
    /// Why the run failed before producing an exit status worth reading.
    pub error: Option<String>,
    /// Warnings about the run itself (output cut at the cap).
    pub notes: Vec<HookOutputEntry>,
}

impl RunResult {
    fn failed(error: String) -> Self {
        Self {
            error: Some(error),
            ..Self::default()
        }
    }
}

/// Kills a process group when dropped, unless disarmed: a run that is cancelled or times
/// out leaves nothing behind.
struct GroupKiller(Option<Pid>);

impl GroupKiller {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // ESRCH (the group is already gone) is fine.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `sh -c command` in `cwd` with `input` on stdin and waits at most `timeout_sec`.
pub(crate) async fn run_command(
    command: &str,
    cwd: &Path,
    input: &[u8],
    timeout_sec: u64,
) -> RunResult {
    let mut child = match Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(err) => {
            return RunResult::failed(format!("failed to start hook in {}: {err}", cwd.display()))
        }
    };
    let mut killer = GroupKiller(
        child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .map(Pid::from_raw),
    );
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return RunResult::failed("failed to open pipes to the hook".to_owned());
    };

    let write_stdin = async move {
        let written = stdin.write_all(input).await;
        drop(stdin);
        match written {
            Err(err) if err.kind() != io::ErrorKind::BrokenPipe => {
                Some(format!("failed to write hook stdin: {err}"))
            }
            _ => None,
        }
    };
    let everything = async {
        tokio::join!(
            write_stdin,
            read_capped(stdout),
            read_capped(stderr),
            child.wait()
        )
    };
    let finished = tokio::time::timeout(Duration::from_secs(timeout_sec), everything).await;
    let Ok((stdin_error, stdout, stderr, status)) = finished else {
        killer.kill();
        let _ = child.wait().await;
        return RunResult::failed(format!("hook timed out after {timeout_sec}s"));
    };
    // The hook and everything holding its pipes are done; whatever else it left running
    // (detached from its output) is its own business, as under Codex.
    killer.0 = None;

    let status = match status {
        Ok(status) => status,
        Err(err) => return RunResult::failed(format!("failed to wait for hook: {err}")),
    };
    let mut result = RunResult {
        exit_code: status.code(),
        ..RunResult::default()
    };
    for (name, captured, slot) in [
        ("stdout", stdout, &mut result.stdout),
        ("stderr", stderr, &mut result.stderr),
    ] {
        match captured {
            Ok((bytes, truncated)) => {
                *slot = bytes;
                if truncated {
                    result.notes.push(HookOutputEntry {
                        kind: HookOutputEntryKind::Warning,
                        text: format!(
                            "hook {name} was longer than {OUTPUT_CAP_BYTES} bytes; the rest was discarded"
                        ),
                    });
                }
            }
            Err(err) => {
                result.error = Some(format!("failed to read hook {name}: {err}"));
            }
        }
    }
    if result.error.is_none() {
        result.error = stdin_error;
    }
    result
}

/// Reads `reader` to the end, keeping the first [`OUTPUT_CAP_BYTES`]; says whether more
/// came.
async fn read_capped<R: AsyncRead + Unpin>(mut reader: R) -> io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok((kept, truncated));
        }
        let room = OUTPUT_CAP_BYTES - kept.len();
        kept.extend_from_slice(&buf[..n.min(room)]);
        truncated |= n > room;
    }
}
