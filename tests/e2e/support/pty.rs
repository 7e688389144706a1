//! Running a command with or without a controlling terminal: [`PtyRun`] gives it a real pty
//! that the test reads and types into (the approver's prompts), [`without_terminal`] none at
//! all (the approver is unavailable).

use serde_json::Value;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Makes `cmd` start in a new session with no controlling terminal.
pub fn without_terminal(cmd: &mut Command) -> &mut Command {
    // SAFETY: setsid(2) is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        })
    }
}

/// A command running with a pty as its controlling terminal; stdout/stderr captured.
pub struct PtyRun {
    master: std::fs::File,
    child: std::process::Child,
}

impl PtyRun {
    /// Starts `cmd` in a new session whose controlling terminal is a fresh pty.
    pub fn start(mut cmd: Command) -> Self {
        let pty = nix::pty::openpty(None, None).unwrap();
        let slave: OwnedFd = pty.slave;
        let slave_fd = slave.as_raw_fd();
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        // SAFETY: setsid(2) and ioctl(2) are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 || libc::ioctl(slave_fd, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        drop(slave);
        // SAFETY: the fd is the pty master this function owns.
        let master = unsafe { std::fs::File::from_raw_fd(pty.master.into_raw_fd()) };
        Self { master, child }
    }

    /// Reads the terminal until `needle` shows up (30 s at most); returns everything read.
    pub fn expect(&mut self, needle: &str) -> String {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            let mut poll = [nix::poll::PollFd::new(
                self.master.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            if nix::poll::poll(&mut poll, nix::poll::PollTimeout::from(200u16)).unwrap() == 0 {
                continue;
            }
            let n = self.master.read(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains(needle) {
                return String::from_utf8_lossy(&seen).into_owned();
            }
        }
        panic!(
            "never saw {needle:?}; got {:?}",
            String::from_utf8_lossy(&seen)
        );
    }

    /// Types `text` at the terminal.
    pub fn answer(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).unwrap();
    }

    /// Waits for the command to end; returns its stdout as JSON, and its output.
    pub fn finish(self) -> (Value, Output) {
        let out = self.child.wait_with_output().unwrap();
        let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} / {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (json, out)
    }
}
