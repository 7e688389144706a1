//! The output relay: the shell's stdout and stderr, written through to execgate's own
//! (when those are a terminal the session cannot have) or captured for the report. The
//! session's own terminal is relayed by `execgate_terminal`.

use execgate_escalate_server::Session;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// How the session's output is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// The shell writes to execgate's stdout/stderr: inherited, except that one which is a
    /// terminal is the session's own terminal instead, or (without one) a pipe relayed here.
    Inherit,
    /// Captured into the report.
    Capture,
}

impl OutputMode {
    /// What the shell's stdout or stderr is connected to.
    pub fn stdio(self) -> Stdio {
        match self {
            OutputMode::Inherit => Stdio::inherit(),
            OutputMode::Capture => Stdio::piped(),
        }
    }
}

/// Output collected from the session.
#[derive(Default)]
pub struct Captured {
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr.
    pub stderr: Vec<u8>,
    /// Both, interleaved in arrival order.
    pub combined: Vec<u8>,
}

/// The running relay of one session's output.
pub struct Relay {
    pumps: Vec<JoinHandle<()>>,
    captured: Arc<Mutex<Captured>>,
    mode: OutputMode,
}

impl Relay {
    /// Starts relaying whatever of the session's stdout and stderr was piped.
    pub fn start(session: &mut Session, mode: OutputMode) -> Self {
        let captured = Arc::new(Mutex::new(Captured::default()));
        let mut pumps = Vec::new();
        if let Some(out) = session.take_stdout() {
            pumps.push(tokio::spawn(pump(out, false, mode, Arc::clone(&captured))));
        }
        if let Some(err) = session.take_stderr() {
            pumps.push(tokio::spawn(pump(err, true, mode, Arc::clone(&captured))));
        }
        Self {
            pumps,
            captured,
            mode,
        }
    }

    /// Adds a line of execgate's own to the session's stderr (the network gate's denials):
    /// into the captured stderr, or onto execgate's stderr (with `\r\n` on a terminal, which
    /// may be in raw mode while the session's terminal is relayed).
    pub fn note_stderr(&self, line: &str) {
        if self.mode == OutputMode::Capture {
            let mut c = self.captured.lock().unwrap_or_else(PoisonError::into_inner);
            c.stderr.extend_from_slice(line.as_bytes());
            c.combined.extend_from_slice(line.as_bytes());
            return;
        }
        use std::io::Write;
        // SAFETY: isatty only looks at the fd.
        let text = if unsafe { libc::isatty(2) } == 1 {
            line.replace('\n', "\r\n")
        } else {
            line.to_owned()
        };
        let _ = std::io::stderr().write_all(text.as_bytes());
    }

    /// Waits (2 s at most per stream) for the writers to be gone, and returns what was
    /// captured.
    pub async fn finish(self) -> Captured {
        for pump in self.pumps {
            let _ = tokio::time::timeout(Duration::from_secs(2), pump).await;
        }
        std::mem::take(&mut *self.captured.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

async fn pump<R: AsyncRead + Unpin>(
    mut reader: R,
    is_stderr: bool,
    mode: OutputMode,
    captured: Arc<Mutex<Captured>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if mode == OutputMode::Capture {
            let mut c = captured.lock().unwrap_or_else(PoisonError::into_inner);
            if is_stderr {
                c.stderr.extend_from_slice(chunk);
            } else {
                c.stdout.extend_from_slice(chunk);
            }
            c.combined.extend_from_slice(chunk);
            continue;
        }
        let result = if is_stderr {
            let mut err = tokio::io::stderr();
            match err.write_all(chunk).await {
                Ok(()) => err.flush().await,
                Err(e) => Err(e),
            }
        } else {
            let mut out = tokio::io::stdout();
            match out.write_all(chunk).await {
                Ok(()) => out.flush().await,
                Err(e) => Err(e),
            }
        };
        if result.is_err() {
            return;
        }
    }
}
