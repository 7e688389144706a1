//! `libexecgate_preload.so`: an `LD_PRELOAD` shim that routes the exec family of a stock
//! shell (and of every dynamically linked program it starts) through the execgate protocol.
//!
//! Hooked: `execve`, `execv`, `execvp`, `execvpe`, `execl`, `execle`, `execlp`, `fexecve`,
//! `posix_spawn`, `posix_spawnp`; plus `vfork` (made a `fork`) and `close_range`/`closefrom`
//! (which keep the session socket open).
//!
//! Each exec is decided in the calling process with one round trip to the server: Run execs
//! the target directly, Deny prints `execgate: denied: <command>: <reason>` and exits 126,
//! Escalate execs the wrapper binary to relay the escalation. The shim never runs a command
//! it could not get a verdict for: every fault prints `execgate: cannot run <program>:
//! <error>` and exits 126.
//!
//! The hooks usually run in a child between `fork` and `exec`, possibly of a multithreaded
//! program: they never allocate, lock or touch stdio (a static scratch area claimed with an
//! atomic, or stack buffers when it is taken; `mmap` for big arrays; raw system calls).
//! Every page such a child writes is a page fault, so an exec's buffers are carved from
//! the scratch area one after the other, as long as each needs, and the hooks' stack frames
//! stay small. They are written not to panic (no unchecked indexing, no unwrap); a
//! panic (a bug) prints one line and aborts the process.
//!
//! The shim is `no_std`: it is loaded into every process of the session, so what it costs to
//! map, relocate and initialise is paid on every exec. Without std it is small, needs no
//! unwinder (`libgcc_s` stays out of every process) and runs no initialisers but its own.
//! Its allocator always fails: nothing here allocates.
//!
//! Not seen (by design, the sandbox still holds them): statically linked programs, raw
//! `execve` system calls, and the `/bin/sh` started by glibc's `system()`/`popen()` (whose
//! children are seen again). A program that creates its child with a raw
//! `clone(CLONE_VM | CLONE_VFORK)` and then calls `execve` is decided, but the hook then runs
//! in memory shared with the parent (only `vfork` itself is made a `fork`).

#![cfg(target_os = "linux")]
// A test build (`--all-targets` builds one, though it has no tests) links std instead.
#![cfg_attr(not(test), no_std)]

mod gate;
mod path;
mod spawn;
mod state;
mod sys;

use libc::{c_char, c_int, c_uint, pid_t, posix_spawn_file_actions_t, posix_spawnattr_t};
use sys::CArray;

extern "C" {
    static environ: CArray;
}

/// A panic is a bug in the shim: say so on stderr and abort (it cannot unwind out of a C
/// function, and the process must not carry on with a half-done exec).
#[cfg(not(test))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    use core::fmt::Write as _;
    let mut line = sys::StderrLine::new();
    let _ = write!(
        line,
        "execgate: internal error in the preload shim: {}",
        info.message()
    );
    line.finish();
    // SAFETY: abort never returns.
    unsafe { libc::abort() }
}

/// The shim never allocates (its hooks run between `fork` and `exec`); a request to would be
/// a bug, so it fails (and panics).
#[cfg(not(test))]
struct NoAllocation;

#[cfg(not(test))]
// SAFETY: `alloc` always reports failure, which is a valid answer; `dealloc` is never given a
// block, since none was ever handed out.
unsafe impl core::alloc::GlobalAlloc for NoAllocation {
    unsafe fn alloc(&self, _layout: core::alloc::Layout) -> *mut u8 {
        core::ptr::null_mut()
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: core::alloc::Layout) {}
}

#[cfg(not(test))]
#[global_allocator]
static ALLOCATOR: NoAllocation = NoAllocation;

/// `execve(2)`, decided by the server first.
///
/// # Safety
/// As for libc's `execve`.
#[no_mangle]
pub unsafe extern "C" fn execve(path: *const c_char, argv: CArray, envp: CArray) -> c_int {
    gate::execve_path(path, argv, envp, false)
}

/// `execv(3)`, decided by the server first.
///
/// # Safety
/// As for libc's `execv`.
#[no_mangle]
pub unsafe extern "C" fn execv(path: *const c_char, argv: CArray) -> c_int {
    gate::execve_path(path, argv, environ, false)
}

/// `execvp(3)`: the shim searches `PATH` and decides the program found.
///
/// # Safety
/// As for libc's `execvp`.
#[no_mangle]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: CArray) -> c_int {
    path::execvpe(file, argv, environ)
}

/// `execvpe(3)`: the shim searches `PATH` and decides the program found.
///
/// # Safety
/// As for libc's `execvpe`.
#[no_mangle]
pub unsafe extern "C" fn execvpe(file: *const c_char, argv: CArray, envp: CArray) -> c_int {
    path::execvpe(file, argv, envp)
}

/// `fexecve(3)`: decided with the file's path as `/proc/self/fd` shows it.
///
/// # Safety
/// As for libc's `fexecve`.
#[no_mangle]
pub unsafe extern "C" fn fexecve(fd: c_int, argv: CArray, envp: CArray) -> c_int {
    gate::execve_fd(fd, argv, envp)
}

/// `execve` for the variadic `execl`/`execle` (in `variadic.c`).
///
/// # Safety
/// As for libc's `execve`.
#[no_mangle]
pub unsafe extern "C" fn execgate_preload_execve(
    path: *const c_char,
    argv: CArray,
    envp: CArray,
) -> c_int {
    gate::execve_path(path, argv, envp, false)
}

/// `execvpe` for the variadic `execlp` (in `variadic.c`).
///
/// # Safety
/// As for libc's `execvpe`.
#[no_mangle]
pub unsafe extern "C" fn execgate_preload_execvpe(
    file: *const c_char,
    argv: CArray,
    envp: CArray,
) -> c_int {
    path::execvpe(file, argv, envp)
}

// `execl`, `execle` and `execlp` are C variadic functions, which stable Rust cannot define:
// they are written in C (`variadic.c`). rustc exports only Rust items from a cdylib, so each
// is exported here as a naked function that jumps to the C code with every register and the
// stack untouched (the variadic arguments pass through as they came).
macro_rules! variadic_trampoline {
    ($name:ident, $target:ident) => {
        extern "C" {
            fn $target();
        }
        #[doc = concat!("`", stringify!($name), "(3)`: see `variadic.c`.")]
        ///
        /// # Safety
        /// As for libc's function of the same name.
        #[unsafe(naked)]
        #[no_mangle]
        pub unsafe extern "C" fn $name() {
            #[cfg(target_arch = "x86_64")]
            core::arch::naked_asm!("jmp {}", sym $target);
            #[cfg(target_arch = "aarch64")]
            core::arch::naked_asm!("b {}", sym $target);
        }
    };
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
variadic_trampoline!(execl, execgate_preload_execl);
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
variadic_trampoline!(execle, execgate_preload_execle);
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
variadic_trampoline!(execlp, execgate_preload_execlp);

/// `posix_spawn(3)`: spawns the wrapper, which asks the server.
///
/// # Safety
/// As for libc's `posix_spawn`.
#[no_mangle]
pub unsafe extern "C" fn posix_spawn(
    pid: *mut pid_t,
    path: *const c_char,
    actions: *const posix_spawn_file_actions_t,
    attr: *const posix_spawnattr_t,
    argv: CArray,
    envp: CArray,
) -> c_int {
    let call = spawn::Spawn {
        pid,
        actions,
        attr,
        argv,
        envp,
    };
    spawn::spawn(path, false, call)
}

/// `posix_spawnp(3)`: the shim searches `PATH`, then spawns the wrapper.
///
/// # Safety
/// As for libc's `posix_spawnp`.
#[no_mangle]
pub unsafe extern "C" fn posix_spawnp(
    pid: *mut pid_t,
    file: *const c_char,
    actions: *const posix_spawn_file_actions_t,
    attr: *const posix_spawnattr_t,
    argv: CArray,
    envp: CArray,
) -> c_int {
    let call = spawn::Spawn {
        pid,
        actions,
        attr,
        argv,
        envp,
    };
    spawn::spawn(file, true, call)
}

/// `vfork(2)`, made a plain `fork`.
///
/// A `vfork` child shares the parent's memory and runs on its stack until it execs. The
/// exec hook that follows does real work there (a connection, a round trip, `mmap`ed
/// arrays, `errno`, lazily cached state): in a `vfork` child all of it would write into the
/// parent's memory and leak into it. Python's `_posixsubprocess`, for one, calls the libc
/// `vfork` symbol, so it reaches this function.
///
/// # Safety
/// As for libc's `fork`.
#[no_mangle]
pub unsafe extern "C" fn vfork() -> pid_t {
    libc::fork()
}

/// `close_range(2)`, except that it leaves the session socket open: programs that close
/// every fd before exec'ing (Python's `subprocess`, daemons) would otherwise cut the
/// process off from the server, and its exec would fail closed.
///
/// # Safety
/// As for libc's `close_range`.
#[no_mangle]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    let raw = |first: c_uint, last: c_uint| -> c_int {
        libc::syscall(libc::SYS_close_range, first, last, flags) as c_int
    };
    let keep = match state::live_session_fd().map(c_int::unsigned_abs) {
        Some(fd) if (first..=last).contains(&fd) => fd,
        _ => return raw(first, last),
    };
    if keep > first && raw(first, keep - 1) != 0 {
        return -1;
    }
    if keep < last && raw(keep + 1, last) != 0 {
        return -1;
    }
    0
}

/// `closefrom(3)`, leaving the session socket open (see [`close_range`]).
///
/// # Safety
/// As for libc's `closefrom`.
#[no_mangle]
pub unsafe extern "C" fn closefrom(lowfd: c_int) {
    let first = lowfd.max(0).unsigned_abs();
    if close_range(first, c_uint::MAX, 0) == 0 {
        return;
    }
    // No close_range (kernel < 5.9 or filtered): close one by one up to the fd limit.
    let keep = state::live_session_fd();
    let mut limit: libc::rlimit = core::mem::zeroed();
    let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
        limit.rlim_cur.min(1 << 20) as c_int
    } else {
        1024
    };
    for fd in first as c_int..max {
        if Some(fd) != keep {
            libc::syscall(libc::SYS_close, fd);
        }
    }
}
