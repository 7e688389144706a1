//! The relay between the user's terminal and the session's pty: keys in, output out,
//! window size across; held while a question is asked.
//!
//! While held it touches the user's terminal not at all: it neither reads keys (they are
//! the answer's) nor writes output (what the session writes waits in the pty, whose writers
//! then block, or in `output` here). Keys it read before the question stay in `input` and
//! go to the session, never to the answer.

use crate::modes;
use crate::{Control, User};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// The most keys held for the session before the relay stops reading the user's terminal.
const INPUT_CAP: usize = 64 * 1024;
/// How much of the session's output is read at once.
const OUTPUT_CHUNK: usize = 64 * 1024;

/// Runs the relay until told to finish (and the session's output ended or `drain` passed)
/// or until nobody can control it any more.
pub(crate) async fn run(
    user: Arc<User>,
    master: AsyncFd<OwnedFd>,
    mut commands: mpsc::UnboundedReceiver<Control>,
    drain: Duration,
) {
    let (Ok(mut winch), Ok(mut tstp), Ok(mut cont)) = (
        signal(SignalKind::window_change()),
        signal(SignalKind::from_raw(libc::SIGTSTP)),
        signal(SignalKind::from_raw(libc::SIGCONT)),
    ) else {
        return;
    };
    let mut relay = Relay {
        user,
        master,
        input: Vec::new(),
        output: Vec::new(),
        written: 0,
        held: false,
        user_open: true,
        session_open: true,
        size: None,
    };
    relay.sync_size();
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        if deadline.is_some() && (!relay.session_open || !relay.user_open) && relay.idle() {
            return;
        }
        let wants_keys = !relay.held && relay.user_open && relay.input.len() < INPUT_CAP;
        let wants_output = !relay.held && relay.session_open && relay.output.is_empty();
        let has_output = !relay.held && relay.user_open && !relay.output.is_empty();
        let has_input = relay.session_open && !relay.input.is_empty();
        tokio::select! {
            biased;
            command = commands.recv() => match command {
                Some(Control::Hold(ack)) => {
                    relay.held = true;
                    let _ = ack.send(());
                }
                Some(Control::Release) => relay.held = false,
                Some(Control::Finish) => {
                    deadline = Some(tokio::time::Instant::now() + drain);
                }
                None => return,
            },
            () = sleep_until(deadline) => return,
            _ = winch.recv() => relay.sync_size(),
            _ = tstp.recv() => relay.suspend(),
            _ = cont.recv() => relay.resume(),
            ready = relay.user.fd.readable(), if wants_keys => {
                if let Ok(mut ready) = ready {
                    let mut buf = [0u8; 4096];
                    match ready.try_io(|fd| modes::read(fd.get_ref().as_raw_fd(), &mut buf)) {
                        Ok(Ok(0)) => relay.user_open = false,
                        Ok(Ok(n)) => {
                            // A resize is always passed on before the keys typed after it.
                            relay.sync_size();
                            relay.input.extend_from_slice(&buf[..n]);
                        }
                        Ok(Err(err)) => relay.user_open = retry(&err),
                        Err(_would_block) => {}
                    }
                }
            }
            ready = relay.master.writable(), if has_input => {
                if let Ok(mut ready) = ready {
                    match ready.try_io(|fd| modes::write(fd.get_ref().as_raw_fd(), &relay.input)) {
                        Ok(Ok(n)) => { relay.input.drain(..n); }
                        Ok(Err(err)) if !retry(&err) => relay.input.clear(),
                        _ => {}
                    }
                }
            }
            ready = relay.master.readable(), if wants_output => {
                if let Ok(mut ready) = ready {
                    let mut buf = vec![0u8; OUTPUT_CHUNK];
                    match ready.try_io(|fd| modes::read(fd.get_ref().as_raw_fd(), &mut buf)) {
                        // EIO: every process holding the session's pty is gone.
                        Ok(Ok(0)) => relay.session_open = false,
                        Ok(Ok(n)) => {
                            buf.truncate(n);
                            relay.output = buf;
                            relay.written = 0;
                        }
                        Ok(Err(err)) => relay.session_open = retry(&err),
                        Err(_would_block) => {}
                    }
                }
            }
            ready = relay.user.fd.writable(), if has_output => {
                if let Ok(mut ready) = ready {
                    let rest = &relay.output[relay.written..];
                    match ready.try_io(|fd| modes::write(fd.get_ref().as_raw_fd(), rest)) {
                        Ok(Ok(n)) => {
                            relay.written += n;
                            if relay.written == relay.output.len() {
                                relay.output.clear();
                                relay.written = 0;
                            }
                        }
                        Ok(Err(err)) if !retry(&err) => {
                            relay.user_open = false;
                            relay.output.clear();
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

/// Whether an I/O error is worth trying again.
fn retry(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
    )
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

struct Relay {
    user: Arc<User>,
    master: AsyncFd<OwnedFd>,
    /// Keys read from the user, not yet written to the session.
    input: Vec<u8>,
    /// Output read from the session, not yet written to the user (from `written` on).
    output: Vec<u8>,
    written: usize,
    /// A question has the terminal.
    held: bool,
    user_open: bool,
    session_open: bool,
    /// The window size last passed on.
    size: Option<(u16, u16, u16, u16)>,
}

impl Relay {
    /// Nothing left to write.
    fn idle(&self) -> bool {
        self.output.is_empty() || !self.user_open
    }

    /// Passes the user's window size on to the session's pty when it changed.
    fn sync_size(&mut self) {
        let Ok(size) = modes::window_size(modes::raw_fd(&self.user.fd)) else {
            return;
        };
        let key = (size.ws_row, size.ws_col, size.ws_xpixel, size.ws_ypixel);
        if self.size != Some(key)
            && modes::set_window_size(modes::raw_fd(&self.master), &size).is_ok()
        {
            self.size = Some(key);
        }
    }

    /// SIGTSTP sent to execgate itself (Ctrl-Z is a key for the session): give the user
    /// their modes back while stopped.
    fn suspend(&mut self) {
        let _ = modes::set(&self.user.fd, &self.user.saved);
        // SAFETY: stopping ourselves; SIGCONT resumes here.
        unsafe { libc::kill(libc::getpid(), libc::SIGSTOP) };
    }

    /// SIGCONT: take the terminal again (the shell that resumed us may have changed its
    /// modes or size).
    fn resume(&mut self) {
        let modes = if self.held {
            &self.user.asking
        } else {
            &self.user.raw
        };
        let _ = modes::set(&self.user.fd, modes);
        self.sync_size();
    }
}
