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

fn nonzero(n: u16) -> std::num::NonZeroU16 {
    std::num::NonZeroU16::new(n).unwrap()
}

/// Rows and columns of a [`Terminal`] unless a test resizes it.
pub const SIZE: (u16, u16) = (30, 150);

/// A command running on a pty as a person's terminal: the pty is its controlling terminal
/// and its stdin, stdout and stderr. What it writes is fed to a terminal emulator model
/// (`vt100`), so tests compare the screen a person would see, not the bytes.
pub struct Terminal {
    master: std::fs::File,
    child: std::process::Child,
    screen: vt100::Parser,
    /// Every byte read from the terminal, in order.
    pub bytes: Vec<u8>,
    /// The pty's slave, the terminal the command was given.
    pub slave_path: std::path::PathBuf,
}

impl Terminal {
    /// Starts `cmd` in a new session whose controlling terminal (and stdin, stdout, stderr)
    /// is a fresh pty of [`SIZE`].
    pub fn start(cmd: Command) -> Self {
        Self::start_sized(cmd, SIZE)
    }

    /// [`Terminal::start`] on a pty of `(rows, cols)`.
    pub fn start_sized(mut cmd: Command, (rows, cols): (u16, u16)) -> Self {
        let size = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&size), None).unwrap();
        let slave: OwnedFd = pty.slave;
        let slave_fd = slave.as_raw_fd();
        let slave_path = std::fs::read_link(format!("/proc/self/fd/{slave_fd}")).unwrap();
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave.try_clone().unwrap()));
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
        drop(cmd);
        // SAFETY: the fd is the pty master this function owns.
        let master = unsafe { std::fs::File::from_raw_fd(pty.master.into_raw_fd()) };
        Self {
            master,
            child,
            screen: vt100::Parser::new(nonzero(rows), nonzero(cols), 0),
            bytes: Vec::new(),
            slave_path,
        }
    }

    /// The pid of the command.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Reads what is there within `wait_ms`; false at end of output.
    fn pump(&mut self, wait_ms: u16) -> bool {
        let mut poll = [nix::poll::PollFd::new(
            self.master.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut poll, nix::poll::PollTimeout::from(wait_ms)) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(_) => return true,
        }
        let mut buf = [0u8; 4096];
        match self.master.read(&mut buf) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.bytes.extend_from_slice(&buf[..n]);
                self.screen.process(&buf[..n]);
                true
            }
        }
    }

    /// The screen's rows, trailing blanks removed.
    pub fn rows(&self) -> Vec<String> {
        self.screen
            .screen()
            .rows(0, self.screen.screen().size().1.get())
            .map(|row| row.trim_end().to_owned())
            .collect()
    }

    /// The screen as text, one row per line (for failure messages).
    pub fn text(&self) -> String {
        self.rows().join("\n")
    }

    /// Reads until `done(rows)` holds (30 s at most, else panics with the screen).
    pub fn until(&mut self, what: &str, done: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if done(&self.rows()) {
                return;
            }
            if !self.pump(100) {
                if done(&self.rows()) {
                    return;
                }
                break;
            }
        }
        panic!("never saw {what}; the screen:\n{}", self.text());
    }

    /// Reads until a row contains `needle`.
    pub fn until_row(&mut self, needle: &str) {
        self.until(needle, |rows| rows.iter().any(|r| r.contains(needle)));
    }

    /// Reads whatever arrives for `ms` milliseconds (giving a hostile writer the chance to
    /// show something; no assertion depends on how long this is).
    pub fn soak(&mut self, ms: u64) {
        let deadline = Instant::now() + Duration::from_millis(ms);
        while Instant::now() < deadline {
            if !self.pump(20) {
                return;
            }
        }
    }

    /// Types `text`.
    pub fn type_text(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).unwrap();
    }

    /// Resizes the terminal (the command's foreground group gets SIGWINCH).
    pub fn resize(&mut self, rows: u16, cols: u16) {
        let size = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from our buffer.
        assert_eq!(
            unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &size) },
            0
        );
        self.screen
            .screen_mut()
            .set_size(nonzero(rows), nonzero(cols));
    }

    /// The terminal's modes as the command left them (ioctls on a pty master act on its
    /// slave).
    pub fn termios(&self) -> nix::sys::termios::Termios {
        nix::sys::termios::tcgetattr(self.master.as_fd()).unwrap()
    }

    /// Waits for the command to end, reading the screen until then; returns its status.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while self.pump(50) && Instant::now() < deadline {}
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "never ended; the screen:\n{}",
                self.text()
            );
            self.pump(50);
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
