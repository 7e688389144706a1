//! What the shim learns from the process's environment when it is loaded (the session socket
//! and the wrapper path), and what its exec hooks write while the process runs (the scratch
//! area for an exec's buffers, the wrapper's identity).
//!
//! Captured once, at load time, from the environment the process started with: a program
//! may clear its environment before exec'ing (`env -i cmd`), and that exec must still be
//! decided. The work is a scan of the environment block and one `fstat`; nothing else runs
//! at load time.

use crate::sys::{self, CArray, CStrings, PATH_MAX};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use execgate_protocol::client::ClientError;
use execgate_protocol::{LEGACY_WRAPPER_ENV, SOCKET_ENV, WRAPPER_ENV};
use libc::{c_char, c_int};

/// The session socket as found at load time.
#[derive(Clone, Copy)]
enum Socket {
    /// `EXECGATE_SOCKET` was not set.
    Missing,
    /// It was set but did not name an open socket.
    Bad,
    /// It named this socket (fd number and identity).
    Open { fd: c_int, dev: u64, ino: u64 },
}

#[repr(C)]
struct Captured {
    socket: Socket,
    /// `0` when unset. Before the path: [`init`] writes only the start of this struct.
    wrapper_len: usize,
    /// The wrapper path, NUL-terminated.
    wrapper: [u8; PATH_MAX],
}

/// Written only by [`init`], which the dynamic loader runs before any code of the program
/// (and so before any of our hooks can be called); read-only afterwards.
struct Shared(UnsafeCell<Captured>);

// SAFETY: see `Shared`: a single write before any concurrent access.
unsafe impl Sync for Shared {}

/// All the shim's writable state but its lazily set pointers, in one static so that its
/// parts keep this order in memory. Each page a process writes costs a page fault, so:
///
/// - `captured` first: the linker puts `.data` right after the relocated `.data.rel.ro`
///   and `.init_array`, so what [`init`] writes at load time (the start of `captured`)
///   shares the page the loader writes anyway;
/// - `exec` after it: the exec hooks' flags and scratch, each exec writing it from the
///   start, usually within one page. That page is written only in the process that execs
///   (a freshly forked child, typically), never at load time.
///
/// Page-aligning `exec` would cost more than it saves: `.data` would then start on a page
/// of its own, and `captured` with it.
///
/// In `.data`, not `.bss`: a `.bss` this large would reach past the file-backed pages and
/// cost the dynamic loader an extra anonymous mapping in every process of the session.
/// Pages of it that are never touched cost nothing but file size.
#[repr(C)]
struct ShimData {
    captured: Shared,
    exec: ExecArea,
}

#[link_section = ".data"]
static DATA: ShimData = ShimData {
    captured: Shared(UnsafeCell::new(Captured {
        socket: Socket::Missing,
        wrapper_len: 0,
        wrapper: [0; PATH_MAX],
    })),
    exec: ExecArea {
        busy: AtomicBool::new(false),
        wrapper_id_state: AtomicU8::new(0),
        wrapper_dev: AtomicU64::new(0),
        wrapper_ino: AtomicU64::new(0),
        scratch: UnsafeCell::new([0; SCRATCH_LEN]),
    },
};

fn captured() -> &'static Captured {
    // SAFETY: see `Shared`.
    unsafe { &*DATA.captured.0.get() }
}

extern "C" {
    static environ: CArray;
}

/// Runs when the library is loaded (glibc passes `argc, argv, envp` to `.init_array`
/// functions). A hand-written `.init_array` entry rather than the `ctor` crate: it is three
/// lines, and it keeps the shim's dependencies to `libc` and the protocol crate.
#[used]
#[link_section = ".init_array"]
static INIT: unsafe extern "C" fn(c_int, CArray, CArray) = init;

unsafe extern "C" fn init(_argc: c_int, _argv: CArray, envp: CArray) {
    let envp = if envp.is_null() { environ } else { envp };
    let mut socket = None;
    let mut wrapper = None;
    let mut legacy = None;
    for entry in CStrings::new(envp) {
        if let Some(v) = value_of(entry, SOCKET_ENV) {
            socket = Some(v);
        } else if let Some(v) = value_of(entry, WRAPPER_ENV) {
            wrapper = Some(v);
        } else if let Some(v) = value_of(entry, LEGACY_WRAPPER_ENV) {
            legacy = Some(v);
        }
    }
    let state = &mut *DATA.captured.0.get();
    state.socket = match socket {
        None => Socket::Missing,
        Some(value) => open_socket(value),
    };
    let wrapper = wrapper.filter(|w| !w.is_empty()).or(legacy);
    if let Some(path) = wrapper {
        if let Some(slot) = state.wrapper.get_mut(..path.len()) {
            if path.len() < PATH_MAX {
                slot.copy_from_slice(path);
                state.wrapper_len = path.len();
            }
        }
    }
}

fn value_of<'a>(entry: &'a [u8], name: &str) -> Option<&'a [u8]> {
    entry.strip_prefix(name.as_bytes())?.strip_prefix(b"=")
}

fn open_socket(value: &[u8]) -> Socket {
    if value.is_empty() || value.len() > 9 || !value.iter().all(u8::is_ascii_digit) {
        return Socket::Bad;
    }
    let fd = value
        .iter()
        .fold(0i32, |acc, d| acc * 10 + i32::from(d - b'0'));
    match sys::fstat(fd) {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFSOCK => Socket::Open {
            fd,
            dev: st.st_dev,
            ino: st.st_ino,
        },
        _ => Socket::Bad,
    }
}

/// The session socket's fd, checked (one `fstat`) to still be the socket found at load
/// time: a closed fd whose number was reused must not receive our handshake.
pub fn session_fd() -> Result<c_int, ClientError> {
    match captured().socket {
        Socket::Missing => Err(ClientError::NoSocket),
        Socket::Bad => Err(ClientError::BadSocket),
        Socket::Open { fd, dev, ino } => match sys::fstat(fd) {
            Ok(st) if st.st_dev == dev && st.st_ino == ino => Ok(fd),
            _ => Err(ClientError::BadSocket),
        },
    }
}

/// The session socket's fd if it is still open as that socket (for `close_range`).
pub fn live_session_fd() -> Option<c_int> {
    match captured().socket {
        Socket::Open { .. } => session_fd().ok(),
        _ => None,
    }
}

/// The wrapper path (`EXEC_WRAPPER`, else `BASH_EXEC_WRAPPER`) and its NUL-terminated form.
pub fn wrapper() -> Option<(&'static [u8], *const c_char)> {
    let state = captured();
    let path = state.wrapper.get(..state.wrapper_len)?;
    if path.is_empty() {
        return None;
    }
    Some((path, state.wrapper.as_ptr().cast()))
}

/// What the exec hooks write while the process runs (see [`ShimData`]).
#[repr(C)]
struct ExecArea {
    /// Set while an exec hook uses `scratch` ([`Claim`]).
    busy: AtomicBool,
    /// Identity of the wrapper binary, looked up on first need: 0 unknown, 1 known, 2 absent.
    wrapper_id_state: AtomicU8,
    wrapper_dev: AtomicU64,
    wrapper_ino: AtomicU64,
    /// The exec hook's buffers (cwd, program path, request, then verdict), never zeroed:
    /// each use writes before it reads, and only as far as it needs.
    scratch: UnsafeCell<[u8; SCRATCH_LEN]>,
}

/// Bytes of the scratch area: two `PATH_MAX` paths and 8 KiB for the request (the verdict
/// reuses the request's bytes).
pub const SCRATCH_LEN: usize = 2 * PATH_MAX + 8192;

// SAFETY: `scratch` is only reached through a `Claim`, of which there is one at a time per
// address space (an atomic compare-and-exchange hands it out); the rest are atomics.
unsafe impl Sync for ExecArea {}

/// The use of the scratch area, for one exec hook, until dropped.
///
/// A claim can fail: another thread of the process is in an exec hook; a signal handler
/// execs while this thread is in one; this process was forked (from a multithreaded
/// parent) while another thread held the claim, and nobody here will give it back; or a
/// `clone(CLONE_VM)` child and its parent share the area. The caller then uses the stack.
pub struct Claim {
    _only_from_take: (),
}

impl Claim {
    /// Claims the scratch area; `None` when it is in use (see [`Claim`]).
    pub fn take() -> Option<Self> {
        DATA.exec
            .busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| Self {
                _only_from_take: (),
            })
    }

    /// The scratch area, as long as the claim is held.
    pub fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: this claim is the only one (see `ExecArea`'s `Sync`), and the borrow ends
        // before the claim is dropped.
        unsafe { &mut *DATA.exec.scratch.get() }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        DATA.exec.busy.store(false, Ordering::Release);
    }
}

/// Whether the file `path` (described by `st`) is the wrapper binary: same path as
/// `EXEC_WRAPPER`, or the same file under another name. Such an exec is passed straight
/// through, because the wrapper decides it itself.
pub fn is_wrapper(path: &[u8], st: &libc::stat) -> bool {
    let Some((wrapper, wrapper_c)) = wrapper() else {
        return false;
    };
    if path == wrapper {
        return true;
    }
    let area = &DATA.exec;
    let (dev, ino) = match area.wrapper_id_state.load(Ordering::Acquire) {
        1 => (
            area.wrapper_dev.load(Ordering::Relaxed),
            area.wrapper_ino.load(Ordering::Relaxed),
        ),
        2 => return false,
        _ => {
            // SAFETY: the captured wrapper path is NUL-terminated.
            match unsafe { sys::stat(wrapper_c) } {
                Ok(w) => {
                    area.wrapper_dev.store(w.st_dev, Ordering::Relaxed);
                    area.wrapper_ino.store(w.st_ino, Ordering::Relaxed);
                    area.wrapper_id_state.store(1, Ordering::Release);
                    (w.st_dev, w.st_ino)
                }
                Err(_) => {
                    area.wrapper_id_state.store(2, Ordering::Relaxed);
                    return false;
                }
            }
        }
    };
    st.st_dev == dev && st.st_ino == ino
}
