//! `posix_spawn` and `posix_spawnp`. glibc spawns with an internal `execve` the shim cannot
//! see, so the shim resolves the program in the caller and spawns the wrapper instead, as
//! `[wrapper, program, argv0, ...]` (plain mode: the wrapper asks the server), with the
//! caller's file actions and attributes.
//!
//! glibc's `system()` and `popen()` use an internal `posix_spawn` that cannot be interposed:
//! the `/bin/sh` they start is not decided, but every program that shell runs is.

use crate::path::{self, Step};
use crate::state;
use crate::sys::{self, CArray, PtrArray, StderrLine};
use core::ffi::CStr;
use core::sync::atomic::{AtomicPtr, Ordering};
use execgate_protocol::display;
use libc::{c_char, c_int, c_void, pid_t, posix_spawn_file_actions_t, posix_spawnattr_t};

type SpawnFn = unsafe extern "C" fn(
    *mut pid_t,
    *const c_char,
    *const posix_spawn_file_actions_t,
    *const posix_spawnattr_t,
    CArray,
    CArray,
) -> c_int;

static REAL_POSIX_SPAWN: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());

/// libc's `posix_spawn`, looked up on first use (in the caller, not after `fork`).
fn real_posix_spawn() -> Option<SpawnFn> {
    let mut ptr = REAL_POSIX_SPAWN.load(Ordering::Acquire);
    if ptr.is_null() {
        // SAFETY: dlsym with a NUL-terminated name.
        ptr = unsafe { libc::dlsym(libc::RTLD_NEXT, c"posix_spawn".as_ptr()) };
        if ptr.is_null() {
            return None;
        }
        REAL_POSIX_SPAWN.store(ptr, Ordering::Release);
    }
    // SAFETY: dlsym found libc's posix_spawn, which has this signature.
    Some(unsafe { core::mem::transmute::<*mut c_void, SpawnFn>(ptr) })
}

/// Arguments of one `posix_spawn` call, passed through unchanged except path and argv.
#[derive(Clone, Copy)]
pub struct Spawn {
    /// Where the child's pid goes.
    pub pid: *mut pid_t,
    /// The caller's file actions (or NULL).
    pub actions: *const posix_spawn_file_actions_t,
    /// The caller's attributes (or NULL).
    pub attr: *const posix_spawnattr_t,
    /// The caller's argv.
    pub argv: CArray,
    /// The caller's environment for the child.
    pub envp: CArray,
}

/// `posix_spawn` (`search == false`) or `posix_spawnp` (`search == true`). Returns an error
/// number, as they do.
///
/// # Safety
/// As for `posix_spawn`.
pub unsafe fn spawn(path: *const c_char, search: bool, call: Spawn) -> c_int {
    if path.is_null() {
        return libc::EFAULT;
    }
    let given = CStr::from_ptr(path).to_bytes();
    if search && !given.contains(&b'/') {
        if given.is_empty() {
            return libc::ENOENT;
        }
        let found = path::search(given, |candidate| match check(candidate.as_ptr()) {
            Ok(st) => Step::Done(spawn_resolved(
                candidate.as_ptr(),
                candidate.bytes(),
                &st,
                call,
            )),
            Err(errno) => Step::Failed(errno),
        });
        return found.unwrap_or_else(|errno| errno);
    }
    match check(path) {
        Ok(st) => spawn_resolved(path, given, &st, call),
        Err(errno) => errno,
    }
}

/// The checks the child's exec would make, done in the caller so that a missing program is
/// reported by `posix_spawn` itself, as without the shim.
unsafe fn check(path: *const c_char) -> Result<libc::stat, c_int> {
    let st = sys::stat(path)?;
    sys::check_executable(path, &st)?;
    Ok(st)
}

unsafe fn spawn_resolved(path: *const c_char, shown: &[u8], st: &libc::stat, call: Spawn) -> c_int {
    let Some(real) = real_posix_spawn() else {
        return refuse(shown, b"libc's posix_spawn not found", libc::ENOSYS);
    };
    if state::is_wrapper(shown, st) {
        return real(
            call.pid,
            path,
            call.actions,
            call.attr,
            call.argv,
            call.envp,
        );
    }
    let Some((_, wrapper)) = state::wrapper() else {
        return refuse(
            shown,
            b"EXEC_WRAPPER is not set: posix_spawn needs the execgate wrapper",
            libc::EPERM,
        );
    };
    let argc = sys::count(call.argv);
    let Some(mut args) = PtrArray::with_capacity(argc + 2) else {
        return libc::ENOMEM;
    };
    args.push(wrapper);
    args.push(path);
    for i in 0..argc {
        args.push(*call.argv.add(i));
    }
    real(
        call.pid,
        wrapper,
        call.actions,
        call.attr,
        args.as_ptr(),
        call.envp,
    )
}

/// Prints `execgate: cannot run <program>: <why>` and returns `errno` (the caller keeps
/// running: only the spawn fails).
fn refuse(shown: &[u8], why: &[u8], errno: c_int) -> c_int {
    let mut line = StderrLine::new();
    let Ok(()) = display::cannot_run(shown, &mut line);
    line.put(why);
    line.finish();
    errno
}
