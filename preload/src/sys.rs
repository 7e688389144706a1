//! Async-signal-safe building blocks: raw system calls, `errno`, C string arrays, a
//! stack-buffered stderr line writer, `mmap`-backed pointer arrays and paths built in
//! borrowed buffers.
//!
//! Nothing here allocates, takes a lock or uses stdio: these run in a child between `fork`
//! and `exec`, possibly of a multithreaded program.

use core::ffi::CStr;
use libc::{c_char, c_int};

/// Largest path the shim handles (Linux `PATH_MAX`, NUL included).
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
/// for the stack. The mapping can also hold copies of strings the array points to.
pub struct PtrArray {
    base: *mut *const c_char,
    bytes: usize,
    cap: usize,
    len: usize,
    /// Bytes for string copies, after the pointers, and how many are used.
    text: usize,
    text_len: usize,
}

impl PtrArray {
    /// Room for `cap` pointers plus the terminating NULL; `None` when `mmap` fails.
    pub fn with_capacity(cap: usize) -> Option<Self> {
        Self::with_room(cap, 0)
    }

    /// Room for `cap` pointers plus the terminating NULL, and `text` bytes of strings for
    /// [`PtrArray::push_copy`]; `None` when `mmap` fails.
    pub fn with_room(cap: usize, text: usize) -> Option<Self> {
        let bytes = cap
            .checked_add(1)?
            .checked_mul(core::mem::size_of::<usize>())?
            .checked_add(text)?;
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
            text,
            text_len: 0,
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

    /// Copies `bytes` (with a NUL added) into the mapping and appends a pointer to the copy,
    /// which lives as long as the array. The copy's address; `None` (and nothing appended)
    /// when the room given to [`PtrArray::with_room`] or the pointer capacity is used up.
    pub fn push_copy(&mut self, bytes: &[u8]) -> Option<*const c_char> {
        let end = self.text_len.checked_add(bytes.len())?.checked_add(1)?;
        if end > self.text || self.len >= self.cap {
            return None;
        }
        // SAFETY: the text area starts after the `cap + 1` pointers and is `text` bytes
        // long; `text_len..end` lies inside it.
        let copy = unsafe {
            let dst = self.base.add(self.cap + 1).cast::<u8>().add(self.text_len);
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len());
            *dst.add(bytes.len()) = 0;
            dst.cast_const().cast::<c_char>()
        };
        self.text_len = end;
        self.push(copy);
        Some(copy)
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

/// A NUL-terminated path built in a buffer the caller lends (at most its first
/// [`PATH_MAX`] bytes): the shim's buffers live in a static scratch area or on the stack,
/// and only the bytes a path needs are ever written.
pub struct PathBuf<'a> {
    /// The whole lent buffer; the path and its NUL are at the start.
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> PathBuf<'a> {
    /// An empty path at the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        if let Some(nul) = buf.first_mut() {
            *nul = 0;
        }
        Self { buf, len: 0 }
    }

    /// How long the path may be, its NUL included.
    fn cap(&self) -> usize {
        self.buf.len().min(PATH_MAX)
    }

    /// Appends bytes; `false` (and unchanged) when the result would not fit with its NUL.
    pub fn push(&mut self, bytes: &[u8]) -> bool {
        let Some(end) = self.len.checked_add(bytes.len()) else {
            return false;
        };
        if end >= self.cap() {
            return false;
        }
        match self
            .buf
            .get_mut(self.len..=end)
            .and_then(<[u8]>::split_last_mut)
        {
            Some((nul, slot)) => {
                slot.copy_from_slice(bytes);
                *nul = 0;
                self.len = end;
                true
            }
            None => false,
        }
    }

    /// Empties the path.
    pub fn clear(&mut self) {
        self.len = 0;
        if let Some(nul) = self.buf.first_mut() {
            *nul = 0;
        }
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
        let cap = self.cap();
        if cap == 0 {
            return false;
        }
        let n = libc::readlink(link, self.buf.as_mut_ptr().cast(), cap - 1);
        match usize::try_from(n) {
            Ok(n) if n < cap => {
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
        if self.buf.is_empty() {
            return c"".as_ptr();
        }
        self.buf.as_ptr().cast()
    }

    /// Fills the buffer with the working directory (`getcwd` into the caller's buffer does
    /// not allocate); the errno on failure.
    pub fn set_cwd(&mut self) -> Result<(), c_int> {
        let cap = self.cap();
        // SAFETY: getcwd writes at most `cap` bytes, NUL included, into our buffer (and
        // writes nothing when `cap` is 0).
        let ok = cap > 0 && unsafe { !libc::getcwd(self.buf.as_mut_ptr().cast(), cap).is_null() };
        if !ok {
            let err = if cap == 0 { libc::ERANGE } else { errno() };
            self.clear();
            return Err(err);
        }
        let written = self.buf.get(..cap).unwrap_or_default();
        self.len = written.iter().position(|&b| b == 0).unwrap_or(0);
        Ok(())
    }

    /// Ends the building: the finished path, and the rest of the lent buffer after its NUL
    /// (for the next buffer, so that consecutive buffers share pages).
    pub fn finish(self) -> (&'a CStr, &'a mut [u8]) {
        let Self { buf, len } = self;
        let mid = len.saturating_add(1).min(buf.len());
        let (head, rest) = buf.split_at_mut(mid);
        let head: &'a [u8] = head;
        (CStr::from_bytes_until_nul(head).unwrap_or_default(), rest)
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
