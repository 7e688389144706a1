//! Moving bytes between the sandbox's connection and the upstream one.
//!
//! Each direction runs until its sender closes, then half-closes the other side
//! (`shutdown(SHUT_WR)`), so request/response protocols that close their sending side
//! first keep working. Buffers are bounded: one pipe (splice mode) or one buffer (copy
//! mode) per direction, created when the first bytes arrive, so an idle held connection
//! costs two sockets and nothing else. A connection with no bytes moving either way for
//! the idle timeout is closed.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::RelayMode;
use crate::record::Tracked;

/// Bytes per direction in flight at most: the pipe size asked for in splice mode, the
/// buffer size in copy mode.
pub(crate) const CHUNK: usize = 256 * 1024;

/// When bytes last moved on a connection, for idle timeouts. A connection is never idle
/// while it is busy (a request waiting on its decision or on the upstream's response).
pub(crate) struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
    busy: AtomicUsize,
}

/// Marks a connection busy until dropped.
pub(crate) struct Busy<'a>(&'a Activity);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Activity {
    /// Starts counting from now.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        })
    }

    /// Marks the connection busy (not idle) until the guard is dropped.
    pub(crate) fn busy(&self) -> Busy<'_> {
        self.busy.fetch_add(1, Ordering::Relaxed);
        Busy(self)
    }

    /// Notes that bytes moved.
    pub(crate) fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(now, Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `idle` while the connection was not busy.
    pub(crate) async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                if self.busy.load(Ordering::Relaxed) == 0 {
                    return;
                }
                tokio::time::sleep(idle).await;
                continue;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// Relays between `client` (the sandbox side) and `upstream` until both directions have
/// closed, one fails, or the connection idles out. `up_first` is what the client already
/// sent that must reach upstream before anything else (a peeked ClientHello, bytes read
/// past a CONNECT head).
pub(crate) async fn relay(
    client: TcpStream,
    upstream: TcpStream,
    up_first: &[u8],
    mode: RelayMode,
    idle: Duration,
    tracked: &Tracked,
) -> io::Result<()> {
    let activity = Activity::new();
    let transfer = async {
        if !up_first.is_empty() {
            write_all(&upstream, up_first).await?;
            tracked.add_up(up_first.len() as u64);
            activity.touch();
        }
        let up = direction(&client, &upstream, mode, &activity, |n| tracked.add_up(n));
        let down = direction(&upstream, &client, mode, &activity, |n| tracked.add_down(n));
        tokio::try_join!(up, down).map(|_| ())
    };
    tokio::select! {
        result = transfer => result,
        () = activity.idle_for(idle) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no bytes moved for {}s", idle.as_secs()),
        )),
    }
}

async fn write_all(dst: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        dst.writable().await?;
        match dst.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One direction: `src` → `dst` until `src` says EOF, then half-close `dst`.
async fn direction(
    src: &TcpStream,
    dst: &TcpStream,
    mode: RelayMode,
    activity: &Activity,
    count: impl Fn(u64),
) -> io::Result<()> {
    // Nothing is allocated until the first bytes (or EOF) arrive.
    src.readable().await?;
    match mode {
        RelayMode::Splice => splice_direction(src, dst, activity, count).await?,
        RelayMode::Copy => copy_direction(src, dst, activity, count).await?,
    }
    match nix::sys::socket::shutdown(dst.as_raw_fd(), nix::sys::socket::Shutdown::Write) {
        Ok(()) | Err(nix::errno::Errno::ENOTCONN) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn copy_direction(
    src: &TcpStream,
    dst: &TcpStream,
    activity: &Activity,
    count: impl Fn(u64),
) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        src.readable().await?;
        let n = match src.try_read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        activity.touch();
        write_all(dst, &buf[..n]).await?;
        count(n as u64);
        activity.touch();
    }
}

/// A pipe for one splice direction; both ends non-blocking.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    size: usize,
}

impl Pipe {
    fn new() -> io::Result<Self> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        // A bigger pipe means fewer syscalls per byte; the kernel may cap it
        // (/proc/sys/fs/pipe-max-size), in which case the default size is kept.
        let _ = fcntl(&write, FcntlArg::F_SETPIPE_SZ(CHUNK as i32));
        let size = fcntl(&write, FcntlArg::F_GETPIPE_SZ)? as usize;
        Ok(Self { read, write, size })
    }
}

async fn splice_direction(
    src: &TcpStream,
    dst: &TcpStream,
    activity: &Activity,
    count: impl Fn(u64),
) -> io::Result<()> {
    let pipe = Pipe::new()?;
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    let src_fd = fd_of(src);
    let dst_fd = fd_of(dst);
    loop {
        // The pipe is empty here, so EAGAIN can only mean the socket has nothing to read.
        let n = loop {
            src.readable().await?;
            match src.try_io(Interest::READABLE, || {
                splice(src_fd, None, &pipe.write, None, pipe.size, flags).map_err(io::Error::from)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            return Ok(());
        }
        activity.touch();
        // The pipe holds `left` bytes, so EAGAIN can only mean the socket is full.
        let mut left = n;
        while left > 0 {
            dst.writable().await?;
            match dst.try_io(Interest::WRITABLE, || {
                splice(&pipe.read, None, dst_fd, None, left, flags).map_err(io::Error::from)
            }) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "splice moved nothing out of a non-empty pipe",
                    ))
                }
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        count(n as u64);
        activity.touch();
    }
}

/// The socket's fd, borrowed for as long as the stream is.
fn fd_of(stream: &TcpStream) -> BorrowedFd<'_> {
    stream.as_fd()
}

/// An I/O object that notes activity and counts bytes: wraps the sandbox side of an HTTP
/// connection (for its idle timeout) and the upstream side of a forwarded request (for its
/// record).
pub(crate) struct Metered<T> {
    inner: T,
    activity: Arc<Activity>,
    tracked: Option<Tracked>,
}

impl<T> Metered<T> {
    /// Wraps `inner`; `tracked`, when given, counts bytes written as up and read as down.
    pub(crate) fn new(inner: T, activity: Arc<Activity>, tracked: Option<Tracked>) -> Self {
        Self {
            inner,
            activity,
            tracked,
        }
    }

    /// The wrapped I/O object.
    pub(crate) fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Metered<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.activity.touch();
            if let Some(tracked) = &self.tracked {
                tracked.add_down(n as u64);
            }
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Metered<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            if n > 0 {
                self.activity.touch();
                if let Some(tracked) = &self.tracked {
                    tracked.add_up(n as u64);
                }
            }
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
