//! The person's terminal while an execgate session runs (design invariant 7).
//!
//! The sandboxed shell never holds the user's terminal. When execgate is the foreground job
//! of its controlling terminal, [`Terminal::open`] gives the session a pty of its own (the
//! shell's controlling terminal, so `/dev/tty` inside is that pty) and relays between it and
//! the user's terminal, which it puts in raw mode; the inner pty takes the user's modes and
//! window size, so line editing, Ctrl-C, Ctrl-Z and job control happen inside the session.
//! execgate gives up its own controlling terminal ([`detach_controlling_terminal`]), so
//! nothing it starts (escalated commands, hooks) can open the user's terminal either:
//! escalated commands get the session's pty through the fds they are passed.
//!
//! A [`Console`] takes the terminal for one question ([`Console::question`]): the relay
//! stops reading the user's keys and stops reading what the session writes (held in the
//! pty, or in the relay's buffer, and shown after the answer), pending input is discarded,
//! the terminal's drawing state is reset and the question is asked in line mode, so an
//! answer needs Enter.
//!
//! The user's modes are restored when the [`Terminal`] is dropped, when execgate panics
//! (a panic hook), and around a SIGTSTP; the caller restores them on termination signals by
//! dropping the terminal before it dies.
//!
//! This crate never decides anything; it only owns the terminal.

#![deny(missing_docs)]

mod modes;
mod relay;

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How long [`Terminal::finish`] waits for the session's last output once the session is
/// over (a process that escaped with the pty open must not keep execgate running).
const DRAIN: Duration = Duration::from_secs(2);

/// The user's terminal, shared by the relay and the questions.
struct User {
    /// `/dev/tty`, opened by execgate (its own open file description, non-blocking).
    fd: AsyncFd<OwnedFd>,
    /// The modes the user had, restored at the end.
    saved: libc::termios,
    /// Raw mode, while relaying.
    raw: libc::termios,
    /// Line mode with echo and no signal keys, while a question is asked.
    asking: libc::termios,
}

/// What the relay is told.
enum Control {
    /// Stop touching the user's terminal; answer when it is stopped.
    Hold(oneshot::Sender<()>),
    /// Relay again.
    Release,
    /// The session is over: write what is left, then end.
    Finish,
}

/// The session's terminal: the pty the shell runs on and the relay to the user's terminal.
/// Dropping it stops the relay and restores the user's terminal modes.
pub struct Terminal {
    user: Arc<User>,
    slave: Option<OwnedFd>,
    control: mpsc::UnboundedSender<Control>,
    relay: Option<JoinHandle<()>>,
}

/// Gives up this process's controlling terminal, if it has one, so that nothing it starts
/// from now on can open it through `/dev/tty` (processes it already started keep theirs).
///
/// For a process that is not a session leader this only detaches the process. A session
/// leader's terminal is taken from its whole session, and the kernel sends the terminal's
/// foreground group SIGHUP and SIGCONT; SIGHUP is ignored around the call.
pub fn detach_controlling_terminal() -> io::Result<()> {
    let tty = match open_tty() {
        Ok(tty) => tty,
        // No controlling terminal: nothing to give up.
        Err(err) if err.raw_os_error() == Some(libc::ENXIO) => return Ok(()),
        Err(err) => return Err(err),
    };
    detach(&tty)
}

fn detach(tty: &OwnedFd) -> io::Result<()> {
    // SAFETY: getsid/getpid have no preconditions.
    let leader = unsafe { libc::getsid(0) == libc::getpid() };
    let old = leader.then(|| {
        // SAFETY: replacing a disposition; restored below.
        unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) }
    });
    // SAFETY: TIOCNOTTY takes no argument.
    let rc = unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCNOTTY) };
    let err = io::Error::last_os_error();
    if let Some(old) = old {
        // SAFETY: putting back what was there.
        unsafe { libc::signal(libc::SIGHUP, old) };
    }
    if rc != 0 {
        return Err(err);
    }
    Ok(())
}

fn open_tty() -> io::Result<OwnedFd> {
    // SAFETY: open with a constant, NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c"/dev/tty".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What `execgate run` started here would do with the terminal, as the `terminal relay:`
/// line of `execgate sandbox check` says it (same for every sandbox backend).
pub fn describe() -> String {
    let state = match open_tty() {
        Err(_) => "none here (no controlling terminal): the shell gets no terminal at all, \
                   and nobody can be asked"
            .to_owned(),
        Ok(tty) => {
            // SAFETY: tcgetpgrp/getpgrp on our own fd.
            if unsafe { libc::tcgetpgrp(tty.as_raw_fd()) != libc::getpgrp() } {
                "none here (execgate is not the terminal's foreground job): the shell gets \
                 no terminal, and nobody can be asked"
                    .to_owned()
            } else {
                "on: the shell runs on a pty of its own (its stdin, stdout, stderr and \
                 /dev/tty) that execgate relays to this terminal in raw mode; nothing the \
                 session writes is shown while a prompt is up, and typeahead never answers one"
                    .to_owned()
            }
        }
    };
    format!(
        "terminal relay: {state}; execgate, escalated commands and hooks never hold \
         the user's terminal\n"
    )
}

impl Terminal {
    /// The session's terminal, when this process is the foreground job of a controlling
    /// terminal; `None` otherwise (no terminal, or running in the background, where
    /// reading the terminal would steal the keys of the job in the foreground).
    ///
    /// On `Some`, the controlling terminal has been given up
    /// ([`detach_controlling_terminal`]), the user's terminal is in raw mode and the relay
    /// runs. Must be called inside a Tokio runtime.
    pub fn open() -> io::Result<Option<Self>> {
        let tty = match open_tty() {
            Ok(tty) => tty,
            Err(err) if err.raw_os_error() == Some(libc::ENXIO) => return Ok(None),
            Err(err) => return Err(err),
        };
        // SAFETY: tcgetpgrp/getpgrp on our own fd.
        let foreground = unsafe { libc::tcgetpgrp(tty.as_raw_fd()) == libc::getpgrp() };
        if !foreground {
            return Ok(None);
        }
        let saved = nix::sys::termios::tcgetattr(tty.as_fd())?;
        let size = modes::window_size(tty.as_raw_fd())?;
        let pty = nix::pty::openpty(Some(&size), Some(&saved))?;
        for fd in [&pty.master, &pty.slave] {
            modes::set_cloexec(fd.as_raw_fd())?;
        }
        modes::set_nonblocking(pty.master.as_raw_fd())?;
        modes::set_nonblocking(tty.as_raw_fd())?;
        // From here on nothing this process starts can open the user's terminal.
        detach(&tty)?;
        let user = Arc::new(User {
            raw: modes::raw(&saved).into(),
            asking: modes::asking(&saved).into(),
            saved: saved.clone().into(),
            // SAFETY: the AsyncFd owns the OwnedFd, so the fd stays open and the same.
            fd: unsafe { AsyncFd::register(tty)? },
        });
        modes::restore_on_panic(user.fd.get_ref().as_raw_fd(), &user.saved);
        modes::set(&user.fd, &user.raw)?;
        // SAFETY: as above.
        let master = unsafe { AsyncFd::register(pty.master)? };
        let (control, commands) = mpsc::unbounded_channel();
        let relay = tokio::spawn(relay::run(Arc::clone(&user), master, commands, DRAIN));
        Ok(Some(Self {
            user,
            slave: Some(pty.slave),
            control,
            relay: Some(relay),
        }))
    }

    /// A new fd on the session's pty (the slave side), for the shell's stdin, stdout or
    /// stderr and as its controlling terminal.
    pub fn session_tty(&self) -> io::Result<OwnedFd> {
        match &self.slave {
            Some(slave) => Ok(slave.try_clone()?),
            None => Err(io::Error::other(
                "the session's terminal was already closed",
            )),
        }
    }

    /// The path of the session's pty (its slave side, e.g. `/dev/pts/3`).
    pub fn session_tty_path(&self) -> io::Result<std::path::PathBuf> {
        match &self.slave {
            Some(slave) => std::fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd())),
            None => Err(io::Error::other(
                "the session's terminal was already closed",
            )),
        }
    }

    /// Closes execgate's own fd on the session's pty, once the shell holds it: the relay
    /// then sees the end of the session's output when the last process holding it exits.
    pub fn close_session_tty(&mut self) {
        self.slave = None;
    }

    /// The handle questions are asked through.
    pub fn console(&self) -> Console {
        Console {
            user: Arc::clone(&self.user),
            control: self.control.clone(),
        }
    }

    /// After the session: shows what the session wrote last (up to the end of its output,
    /// at most 2 s), stops the relay and restores the user's terminal modes.
    pub async fn finish(mut self) {
        self.slave = None;
        let _ = self.control.send(Control::Finish);
        if let Some(relay) = self.relay.take() {
            let _ = relay.await;
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Some(relay) = self.relay.take() {
            relay.abort();
        }
        let _ = modes::set(&self.user.fd, &self.user.saved);
    }
}

/// Takes the user's terminal for questions; cheap to clone.
#[derive(Clone)]
pub struct Console {
    user: Arc<User>,
    control: mpsc::UnboundedSender<Control>,
}

/// Resets what the session may have left switched on that would hide or distort a
/// question: an unfinished escape sequence or string (CAN, then ST), another character set
/// (SI, G0 and G1 back to ASCII), colours and hidden text, insert mode, no line wrap,
/// a hidden cursor, reverse video, origin mode, scroll and left/right margins, mouse
/// reporting (a click would type into the answer); then moves to the bottom row, so the
/// question starts on fresh lines at the bottom of the screen.
pub const RESET: &[u8] =
    b"\x18\x1b\\\x0f\x1b(B\x1b)B\x1b[0m\x1b[4l\x1b[?7h\x1b[?25h\x1b[?5l\x1b[?6l\
\x1b[?69l\x1b[r\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[999;1H";

impl Console {
    /// Takes the terminal for one question: the relay stops (the session's output is held
    /// back until the [`Question`] is dropped), everything typed so far is discarded (keys
    /// pressed before the question is on screen answer nothing; keys the relay had already
    /// read go to the session), the terminal is put in line mode and reset ([`RESET`]).
    pub async fn question(&self) -> io::Result<Question> {
        let (ack, held) = oneshot::channel();
        self.control
            .send(Control::Hold(ack))
            .map_err(|_| io::Error::other("the terminal relay has stopped"))?;
        held.await
            .map_err(|_| io::Error::other("the terminal relay has stopped"))?;
        let question = Question {
            user: Arc::clone(&self.user),
            control: self.control.clone(),
            answered: false,
        };
        // TCSAFLUSH: discards whatever was typed before the question.
        modes::set_how(&self.user.fd, &self.user.asking, libc::TCSAFLUSH)?;
        question.write(RESET).await?;
        Ok(question)
    }
}

/// The terminal, taken for one question. Dropping it gives the terminal back to the relay
/// (in raw mode); dropping it before [`Question::done`] (the question was withdrawn, e.g.
/// the session ended) says so on the screen.
pub struct Question {
    user: Arc<User>,
    control: mpsc::UnboundedSender<Control>,
    answered: bool,
}

impl Question {
    /// Writes `bytes` to the terminal.
    pub async fn write(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let mut ready = self.user.fd.writable().await?;
            match ready.try_io(|fd| modes::write(fd.get_ref().as_raw_fd(), bytes)) {
                Ok(Ok(n)) => bytes = &bytes[n..],
                Ok(Err(err)) if err.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(err)) => return Err(err),
                Err(_would_block) => {}
            }
        }
        Ok(())
    }

    /// Reads one line, ended by Enter (the newline included); `None` at end of input (the
    /// person pressed Ctrl-D, or the terminal hung up).
    pub async fn read_line(&self) -> io::Result<Option<Vec<u8>>> {
        let mut line = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let mut ready = self.user.fd.readable().await?;
            match ready.try_io(|fd| modes::read(fd.get_ref().as_raw_fd(), &mut buf)) {
                Ok(Ok(0)) => return Ok(None),
                Ok(Ok(n)) => {
                    line.extend_from_slice(&buf[..n]);
                    if line.ends_with(b"\n") {
                        return Ok(Some(line));
                    }
                }
                Ok(Err(err)) if err.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(err)) if err.raw_os_error() == Some(libc::EIO) => return Ok(None),
                Ok(Err(err)) => return Err(err),
                Err(_would_block) => {}
            }
        }
    }

    /// The question was answered: give the terminal back without a note.
    pub fn done(mut self) {
        self.answered = true;
    }
}

impl Drop for Question {
    fn drop(&mut self) {
        let fd = self.user.fd.get_ref().as_raw_fd();
        if !self.answered {
            let _ = modes::write(fd, b"\r\nexecgate: the question was withdrawn\r\n");
        }
        let _ = modes::set(&self.user.fd, &self.user.raw);
        let _ = self.control.send(Control::Release);
    }
}
