//! The `PATH` search of `execvp`, `execvpe`, `execlp` and `posix_spawnp`, done by the shim
//! so that the program it decides is the one that will run. Same rules as glibc: an empty
//! `PATH` entry is the working directory, `PATH` unset means `/bin:/usr/bin`, candidates
//! failing with `ENOENT`, `ENOTDIR`, `ESTALE`, `ENODEV`, `ETIMEDOUT` or `EACCES` are skipped,
//! and `EACCES` is reported if nothing was found but something was not executable.

use crate::gate;
use crate::sys::{self, CArray, PathBuf};
use core::ffi::CStr;
use libc::c_int;

/// What trying one candidate gave.
pub enum Step {
    /// Finished (the hook's return value).
    Done(c_int),
    /// This candidate failed with this errno.
    Failed(c_int),
}

/// Candidates up to this long (NUL included) are built in a small stack buffer; a `PATH`
/// with a longer one takes a `PATH_MAX` buffer (a frame of more than a page, whose every
/// page is touched).
const SHORT_CANDIDATE: usize = 256;

/// Tries `file` in each `PATH` directory; the first [`Step::Done`] wins. `Err(errno)` when
/// no candidate did.
///
/// The candidate is built on the stack, not in the exec scratch area: it is the path the
/// final exec reads, after the area has been given back.
pub fn search(file: &[u8], attempt: impl FnMut(&PathBuf) -> Step) -> Result<c_int, c_int> {
    if file.len() > libc::NAME_MAX as usize {
        return Err(libc::ENAMETOOLONG);
    }
    // SAFETY: getenv reads the environment without locking or allocating; the string lives
    // until the environment is changed, which this thread is not doing.
    let path = unsafe {
        let value = libc::getenv(c"PATH".as_ptr());
        if value.is_null() {
            &b"/bin:/usr/bin"[..]
        } else {
            CStr::from_ptr(value).to_bytes()
        }
    };
    let longest_dir = path.split(|&b| b == b':').map(<[u8]>::len).max();
    // dir, '/', file, NUL
    let longest = longest_dir
        .unwrap_or(0)
        .saturating_add(file.len())
        .saturating_add(2);
    if longest <= SHORT_CANDIDATE {
        let mut buf = [0u8; SHORT_CANDIDATE];
        search_in(&mut buf, path, file, attempt)
    } else {
        search_long(path, file, attempt)
    }
}

#[cold]
#[inline(never)]
fn search_long(
    path: &[u8],
    file: &[u8],
    attempt: impl FnMut(&PathBuf) -> Step,
) -> Result<c_int, c_int> {
    let mut buf = [0u8; sys::PATH_MAX];
    search_in(&mut buf, path, file, attempt)
}

/// [`search`] with `buf` for the candidate (at most `PATH_MAX` bytes of it are used; a
/// candidate that does not fit is skipped).
fn search_in(
    buf: &mut [u8],
    path: &[u8],
    file: &[u8],
    mut attempt: impl FnMut(&PathBuf) -> Step,
) -> Result<c_int, c_int> {
    let mut got_eacces = false;
    let mut candidate = PathBuf::new(buf);
    for dir in path.split(|&b| b == b':') {
        candidate.clear();
        let fits =
            candidate.push(dir) && (dir.is_empty() || candidate.push(b"/")) && candidate.push(file);
        if !fits {
            continue;
        }
        match attempt(&candidate) {
            Step::Done(value) => return Ok(value),
            Step::Failed(libc::EACCES) => got_eacces = true,
            Step::Failed(
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT,
            ) => {}
            Step::Failed(errno) => return Err(errno),
        }
    }
    Err(if got_eacces {
        libc::EACCES
    } else {
        libc::ENOENT
    })
}

/// `execvpe(file, argv, envp)`: search, then decide and exec the program found.
///
/// # Safety
/// As for `execvpe`.
pub unsafe fn execvpe(file: *const libc::c_char, argv: CArray, envp: CArray) -> c_int {
    if file.is_null() {
        sys::set_errno(libc::EFAULT);
        return -1;
    }
    let name = CStr::from_ptr(file).to_bytes();
    if name.is_empty() {
        sys::set_errno(libc::ENOENT);
        return -1;
    }
    if name.contains(&b'/') {
        return gate::execve_path(file, argv, envp, true);
    }
    let found = search(name, |candidate| {
        // Returns only when the exec failed (or the candidate does not qualify).
        gate::execve_path(candidate.as_ptr(), argv, envp, true);
        Step::Failed(sys::errno())
    });
    sys::set_errno(match found {
        Ok(_) => libc::ENOENT,
        Err(errno) => errno,
    });
    -1
}
