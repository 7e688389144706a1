//! Async-signal-safe building blocks: raw system calls, `errno`, C string arrays, a
//! stack-buffered stderr line writer and `mmap`-backed pointer arrays.
//!
//! Nothing here allocates, takes a lock or uses stdio: these run in a child between `fork`
//! and `exec`, possibly of a multithreaded program.

use core::ffi::CStr;
use libc::{c_char, c_int};

/// Largest path the shim handles in its stack buffers (Linux `PATH_MAX`, NUL included).
pub const PATH_MAX: usize = libc::PATH_MAX as usize;

/// A C `char *const *` array: NULL-terminated, of NUL-terminated strings.
pub type CArray = *const *const c_char;

extern "C" {
    /// glibc ≥ 2.32: the untranslated description of an errno value (static storage, no
    /// locale lookup, so safe after `fork`); NULL for unknown values.
    fn strerrordesc_np(errnum: c_int) -> *const c_char;
}

/// The calling thread's `errno`.
pub fn errno() -> c_int {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's `errno`.
pub fn set_errno(value: c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = value }
}

/// `execve` through `syscall`, so no interposed `execve` (ours included) sees it. Returns
/// only on failure, with the errno.
///
/// # Safety
/// `path` is a NUL-terminated string; `argv` and `envp` are C arrays or NULL.
pub unsafe fn raw_execve(path: *const c_char, argv: CArray, envp: CArray) -> c_int {
    libc::syscall(libc::SYS_execve, path, argv, envp);
    errno()
}

/// `execveat(fd, "", argv, envp, AT_EMPTY_PATH)`: executes the file open as `fd`. Returns
/// only on failure, with the errno.
///
/// # Safety
/// `argv` and `envp` are C arrays or NULL.
pub unsafe fn raw_execveat(fd: c_int, argv: CArray, envp: CArray) -> c_int {
    libc::syscall(
        libc::SYS_execveat,
        fd,
        c"".as_ptr(),
        argv,
        envp,
        libc::AT_EMPTY_PATH,
    );
    errno()
}

/// `stat(2)` of a NUL-terminated path; the errno on failure.
///
/// # Safety
/// `path` is a NUL-terminated string.
pub unsafe fn stat(path: *const c_char) -> Result<libc::stat, c_int> {
    let mut st: libc::stat = core::mem::zeroed();
    if libc::stat(path, &mut st) == 0 {
        Ok(st)
    } else {
        Err(errno())
    }
}

/// `fstat(2)`; the errno on failure.
pub fn fstat(fd: c_int) -> Result<libc::stat, c_int> {
    // SAFETY: fstat only writes into the zeroed buffer we own.
    unsafe {
        let mut st: libc::stat = core::mem::zeroed();
        if libc::fstat(fd, &mut st) == 0 {
            Ok(st)
        } else {
            Err(errno())
        }
    }
}

/// Whether `execve` of this file can succeed as far as its type and mode tell: a regular
/// file the caller may execute. The errno `execve` would give otherwise (`EACCES`).
///
/// # Safety
/// `path` is a NUL-terminated string naming the file `st` describes.
pub unsafe fn check_executable(path: *const c_char, st: &libc::stat) -> Result<(), c_int> {
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(libc::EACCES);
    }
    // Executable by everyone (the common 0755): no need to ask the kernel.
    if st.st_mode & libc::S_IXOTH != 0 {
        return Ok(());
    }
    if libc::faccessat(libc::AT_FDCWD, path, libc::X_OK, libc::AT_EACCESS) == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

/// Iterator over the strings of a C array as byte slices (shared with the wrapper).
pub use execgate_sys::CStrings;

/// Number of entries of a C array (0 for NULL).
///
/// # Safety
/// As for [`CStrings::new`].
pub unsafe fn count(array: CArray) -> usize {
    let mut n = 0;
    if !array.is_null() {
        while !(*array.add(n)).is_null() {
            n += 1;
        }
    }
    n
}

/// A NULL-terminated array of C string pointers in its own anonymous mapping: `malloc` is
/// not safe after `fork` in a multithreaded program, and argv/env arrays can be too large
/// for the stack.
pub struct PtrArray {
    base: *mut *const c_char,
    bytes: usize,
    cap: usize,
    len: usize,
}

impl PtrArray {
    /// Room for `cap` pointers plus the terminating NULL; `None` when `mmap` fails.
    pub fn with_capacity(cap: usize) -> Option<Self> {
        let bytes = cap
            .checked_add(1)?
            .checked_mul(core::mem::size_of::<usize>())?;
        // SAFETY: a fresh private anonymous mapping; zero-filled, so already NULL-terminated.
        let base = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        Some(Self {
            base: base.cast(),
            bytes,
            cap,
            len: 0,
        })
    }

    /// Appends a pointer; ignored when full (capacities are computed from the inputs).
    pub fn push(&mut self, ptr: *const c_char) {
        if self.len < self.cap {
            // SAFETY: len < cap, inside the mapping.
            unsafe { *self.base.add(self.len) = ptr };
            self.len += 1;
        }
    }

    /// The array, for `execve`.
    pub fn as_ptr(&self) -> CArray {
        self.base.cast_const()
    }
}

impl Drop for PtrArray {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping we created.
        unsafe { libc::munmap(self.base.cast(), self.bytes) };
    }
}

/// A byte buffer on the stack holding one NUL-terminated path.
pub struct PathBuf {
    buf: [u8; PATH_MAX],
    len: usize,
}

impl PathBuf {
    /// An empty path.
    pub fn new() -> Self {
        Self {
            buf: [0; PATH_MAX],
            len: 0,
        }
    }

    /// Appends bytes; `false` (and unchanged) when the result would not fit with its NUL.
    pub fn push(&mut self, bytes: &[u8]) -> bool {
        let Some(end) = self.len.checked_add(bytes.len()) else {
            return false;
        };
        match self.buf.get_mut(self.len..end) {
            Some(slot) if end < PATH_MAX => {
                slot.copy_from_slice(bytes);
                self.len = end;
                if let Some(nul) = self.buf.get_mut(end) {
                    *nul = 0;
                }
                true
            }
            _ => false,
        }
    }

    /// Empties the path.
    pub fn clear(&mut self) {
        self.len = 0;
        self.buf[0] = 0;
    }

    /// Appends a decimal number.
    pub fn push_num(&mut self, value: u32) -> bool {
        let mut digits = [0u8; 10];
        let mut i = digits.len();
        let mut v = value;
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 || i == 0 {
                break;
            }
        }
        self.push(digits.get(i..).unwrap_or_default())
    }

    /// Replaces the contents with the target of the symlink `link`; `false` on failure.
    ///
    /// # Safety
    /// `link` is a NUL-terminated string.
    pub unsafe fn set_readlink(&mut self, link: *const c_char) -> bool {
        let n = libc::readlink(link, self.buf.as_mut_ptr().cast(), PATH_MAX - 1);
        match usize::try_from(n) {
            Ok(n) if n < PATH_MAX => {
                self.len = n;
                if let Some(nul) = self.buf.get_mut(n) {
                    *nul = 0;
                }
                true
            }
            _ => {
                self.clear();
                false
            }
        }
    }

    /// The path without its NUL.
    pub fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// The NUL-terminated path.
    pub fn as_ptr(&self) -> *const c_char {
        self.buf.as_ptr().cast()
    }

    /// Fills the buffer with the working directory (`getcwd` into the caller's buffer does
    /// not allocate); the errno on failure.
    pub fn set_cwd(&mut self) -> Result<(), c_int> {
        // SAFETY: getcwd writes at most PATH_MAX bytes, NUL included, into our buffer.
        let ok = unsafe { !libc::getcwd(self.buf.as_mut_ptr().cast(), PATH_MAX).is_null() };
        if !ok {
            self.clear();
            return Err(errno());
        }
        self.len = self.buf.iter().position(|&b| b == 0).unwrap_or(0);
        Ok(())
    }
}

/// One line for stderr from a stack buffer (shared with the wrapper).
pub use execgate_sys::StderrLine;

/// Appends a decimal number to `line`.
fn put_num(line: &mut StderrLine, value: i64) {
    let mut digits = [0u8; 24];
    let mut i = digits.len();
    let negative = value < 0;
    let mut v = value.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 || i == 1 {
            break;
        }
    }
    if negative {
        i -= 1;
        digits[i] = b'-';
    }
    line.put(digits.get(i..).unwrap_or_default());
}

/// Appends an errno's description to `line`, as Rust's `io::Error` shows it, with glibc's
/// full table of descriptions.
pub fn put_errno(line: &mut StderrLine, err: c_int) {
    // SAFETY: strerrordesc_np returns NULL or a pointer to a static string.
    let desc = unsafe { strerrordesc_np(err) };
    if desc.is_null() {
        line.put(b"Unknown error");
    } else {
        // SAFETY: non-NULL: a static NUL-terminated string.
        line.put(unsafe { CStr::from_ptr(desc) }.to_bytes());
    }
    line.put(b" (os error ");
    put_num(line, i64::from(err));
    line.put(b")");
}

/// Terminates the process without running atexit handlers or flushing stdio (which may
/// hold locks after `fork`).
pub fn exit_now(code: c_int) -> ! {
    // SAFETY: _exit never returns and is async-signal-safe.
    unsafe { libc::_exit(code) }
}
