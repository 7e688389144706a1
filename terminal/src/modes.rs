//! Terminal modes and the small system calls around them.

use nix::sys::termios::{self, InputFlags, LocalFlags, OutputFlags, Termios};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use tokio::io::unix::AsyncFd;

/// Raw mode: every key goes to the session as it is typed, nothing is echoed or
/// translated here (the session's pty does that).
pub(crate) fn raw(saved: &Termios) -> Termios {
    let mut raw = saved.clone();
    termios::cfmakeraw(&mut raw);
    raw
}

/// Line mode for a question: the user's own modes with line editing, echo and newline
/// translation on, and the signal keys off (Ctrl-C must not kill execgate while it asks).
pub(crate) fn asking(saved: &Termios) -> Termios {
    let mut asking = saved.clone();
    asking.local_flags |= LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ECHOE;
    asking.local_flags |= LocalFlags::ECHOK;
    asking.local_flags &= !LocalFlags::ISIG;
    asking.input_flags |= InputFlags::ICRNL;
    asking.input_flags &= !(InputFlags::INLCR | InputFlags::IGNCR);
    asking.output_flags |= OutputFlags::OPOST | OutputFlags::ONLCR;
    asking
}

/// Sets `modes` on the user's terminal at once.
pub(crate) fn set(fd: &AsyncFd<OwnedFd>, modes: &libc::termios) -> io::Result<()> {
    set_how(fd, modes, libc::TCSANOW)
}

/// Sets `modes` on the user's terminal, `how` being `TCSANOW`, `TCSADRAIN` or `TCSAFLUSH`.
pub(crate) fn set_how(
    fd: &AsyncFd<OwnedFd>,
    modes: &libc::termios,
    how: libc::c_int,
) -> io::Result<()> {
    // SAFETY: tcsetattr reads one termios from our buffer.
    if unsafe { libc::tcsetattr(raw_fd(fd), how, modes) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The window size of terminal `fd`.
pub(crate) fn window_size(fd: RawFd) -> io::Result<libc::winsize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into our buffer.
    if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut size) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(size)
}

/// Sets the window size of terminal `fd` (for a pty master, its slave's foreground group
/// gets SIGWINCH).
pub(crate) fn set_window_size(fd: RawFd, size: &libc::winsize) -> io::Result<()> {
    // SAFETY: TIOCSWINSZ reads one winsize from our buffer.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, size) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(crate) fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(crate) fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own (our own open file description).
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(crate) fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: read into our own buffer.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

pub(crate) fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: write from our own buffer.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// The user's terminal and its modes, for the panic hook.
static ON_PANIC: OnceLock<(RawFd, libc::termios)> = OnceLock::new();

/// Restores `saved` on terminal `fd` if this process panics (panics abort, but the hook
/// runs first). Installed once per process.
pub(crate) fn restore_on_panic(fd: RawFd, saved: &libc::termios) {
    if ON_PANIC.set((fd, *saved)).is_err() {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some((fd, termios)) = ON_PANIC.get() {
            // SAFETY: tcsetattr from our own copy; the fd may be closed by now, then it
            // fails harmlessly.
            unsafe { libc::tcsetattr(*fd, libc::TCSANOW, termios) };
        }
        previous(info);
    }));
}

/// The raw fd of an async fd, for the plain calls above.
pub(crate) fn raw_fd(fd: &AsyncFd<OwnedFd>) -> RawFd {
    fd.get_ref().as_raw_fd()
}
