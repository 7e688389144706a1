//! Deciding one exec with the server and carrying out the verdict, in the calling process.
//!
//! Run execs the target directly (no extra exec of the wrapper); Deny prints the denial and
//! exits 126; Escalate execs the wrapper in continue mode on the already-connected stream.
//! Every fault (no socket, server gone, bad frame) prints one line and exits 126: the
//! command never runs undecided.

use crate::state;
use crate::sys::{self, set_errno, CArray, CStrings, PathBuf, PtrArray, StderrLine};
use core::ffi::CStr;
use core::fmt::Write as _;
use execgate_protocol::client::{ClientError, Connection};
use execgate_protocol::display::quote_command;
use execgate_protocol::{ServerMessageRef, DENIED_EXIT_CODE, ESCALATION_FD_ENV, MAX_REASON_LEN};
use libc::{c_char, c_int};

/// Receive buffer for the verdict: the largest verdict is a Deny with a full reason.
const RECV_BUF: usize = MAX_REASON_LEN + 64;

/// What failed while deciding; every variant means the command does not run.
enum Fault {
    Client(ClientError),
    Io { op: &'static str, errno: c_int },
    Msg(&'static str),
}

impl From<ClientError> for Fault {
    fn from(err: ClientError) -> Self {
        Self::Client(err)
    }
}

impl Fault {
    fn write(&self, line: &mut StderrLine) {
        match self {
            // `ClientError`'s Display knows only the common errno descriptions; spell it
            // out with glibc's full table instead.
            Self::Client(ClientError::Io { op, errno }) | Self::Io { op, errno } => {
                line.put(op.as_bytes());
                line.put(b" failed: ");
                sys::put_errno(line, *errno);
            }
            Self::Client(err) => {
                let _ = write!(line, "{err}");
            }
            Self::Msg(text) => line.put(text.as_bytes()),
        }
    }
}

/// Prints `execgate: cannot run <program>: <error>` and exits 126.
fn fail_closed(program: &[u8], fault: Fault) -> ! {
    let mut line = StderrLine::new();
    line.put(b"execgate: cannot run ");
    line.put(program);
    line.put(b": ");
    fault.write(&mut line);
    line.finish();
    sys::exit_now(DENIED_EXIT_CODE)
}

/// Prints `execgate: denied: <command>: <reason>` and exits 126.
///
/// # Safety
/// `argv` is NULL or a valid C array.
unsafe fn deny(program: &[u8], argv: CArray, reason: &[u8]) -> ! {
    let mut line = StderrLine::new();
    line.put(b"execgate: denied: ");
    let Ok(()) = quote_command(program, CStrings::new(argv).skip(1), &mut line);
    line.put(b": ");
    line.put(reason);
    line.finish();
    sys::exit_now(DENIED_EXIT_CODE)
}

/// What the exec will run: a path, or an open file (`fexecve`).
#[derive(Clone, Copy)]
pub enum Target {
    /// A NUL-terminated path, as the caller gave it.
    Path(*const c_char),
    /// An fd open on the program.
    Fd(c_int),
}

/// Options of one gated exec.
#[derive(Clone, Copy)]
pub struct Exec {
    /// What to execute.
    pub target: Target,
    /// The caller's argv (sent to the server exactly as given).
    pub argv: CArray,
    /// The environment for the new program (sent to the server).
    pub envp: CArray,
    /// On `ENOEXEC`, run the file with `/bin/sh` (the `execvp` family does).
    pub sh_fallback: bool,
}

/// Execs `path` without asking: the raw system call, errno set, -1 returned on failure.
///
/// # Safety
/// As for `execve`.
pub unsafe fn pass_through(path: *const c_char, argv: CArray, envp: CArray) -> c_int {
    set_errno(sys::raw_execve(path, argv, envp));
    -1
}

/// `execve(path, argv, envp)` through the gate. Returns -1 with `errno` set when the exec
/// (or the checks `execve` itself would make) failed; exits 126 on Deny or a fault.
///
/// # Safety
/// As for `execve`.
pub unsafe fn execve_path(path: *const c_char, argv: CArray, envp: CArray, sh: bool) -> c_int {
    if path.is_null() {
        set_errno(libc::EFAULT);
        return -1;
    }
    let given = CStr::from_ptr(path).to_bytes();
    // The checks execve would make, before bothering the server: a program that does not
    // exist or cannot be executed is not an exec to decide (dash, for one, tries execve on
    // candidates along PATH).
    let st = match sys::stat(path) {
        Ok(st) => st,
        Err(err) => {
            set_errno(err);
            return -1;
        }
    };
    if state::is_wrapper(given, &st) {
        return pass_through(path, argv, envp);
    }
    if let Err(err) = sys::check_executable(path, &st) {
        set_errno(err);
        return -1;
    }
    let mut cwd = PathBuf::new();
    if let Err(errno) = cwd.set_cwd() {
        fail_closed(
            given,
            Fault::Io {
                op: "getcwd",
                errno,
            },
        );
    }
    let mut program = PathBuf::new();
    if !absolute(given, &cwd, &mut program) {
        fail_closed(given, Fault::Msg("program path longer than PATH_MAX"));
    }
    let exec = Exec {
        target: Target::Path(path),
        argv,
        envp,
        sh_fallback: sh,
    };
    decide_and_exec(given, &program, &cwd, exec)
}

/// `fexecve(fd, argv, envp)` through the gate; the program reported is the file's path as
/// `/proc/self/fd` shows it.
///
/// # Safety
/// As for `fexecve`.
pub unsafe fn execve_fd(fd: c_int, argv: CArray, envp: CArray) -> c_int {
    let st = match sys::fstat(fd) {
        Ok(st) => st,
        Err(err) => {
            set_errno(err);
            return -1;
        }
    };
    let mut link = PathBuf::new();
    proc_fd_path(fd, &mut link);
    let mut resolved = PathBuf::new();
    let program = if resolved.set_readlink(link.as_ptr()) && resolved.bytes().starts_with(b"/") {
        resolved
    } else {
        link
    };
    if state::is_wrapper(program.bytes(), &st) {
        set_errno(exec_target(Target::Fd(fd), argv, envp));
        return -1;
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        set_errno(libc::EACCES);
        return -1;
    }
    let mut cwd = PathBuf::new();
    if let Err(errno) = cwd.set_cwd() {
        fail_closed(
            program.bytes(),
            Fault::Io {
                op: "getcwd",
                errno,
            },
        );
    }
    let exec = Exec {
        target: Target::Fd(fd),
        argv,
        envp,
        sh_fallback: false,
    };
    decide_and_exec(program.bytes(), &program, &cwd, exec)
}

fn proc_fd_path(fd: c_int, out: &mut PathBuf) {
    out.clear();
    out.push(b"/proc/self/fd/");
    out.push_num(fd.unsigned_abs());
}

/// Joins a relative program path to the working directory (dropping leading `./`).
fn absolute(given: &[u8], cwd: &PathBuf, out: &mut PathBuf) -> bool {
    out.clear();
    if given.starts_with(b"/") {
        return out.push(given);
    }
    let mut rest = given;
    while let Some(tail) = rest.strip_prefix(b"./") {
        rest = tail;
    }
    let cwd = cwd.bytes();
    out.push(cwd) && (cwd.ends_with(b"/") || out.push(b"/")) && out.push(rest)
}

/// Asks the server, then runs, denies or escalates. Returns -1 with errno set only when a
/// Run's exec failed.
///
/// # Safety
/// `exec`'s arrays are valid C arrays (or NULL).
unsafe fn decide_and_exec(shown: &[u8], program: &PathBuf, cwd: &PathBuf, exec: Exec) -> c_int {
    let mut buf = [0u8; RECV_BUF];
    match ask(program.bytes(), cwd.bytes(), exec, &mut buf) {
        Err(fault) => fail_closed(shown, fault),
        Ok((conn, ServerMessageRef::Run)) => {
            drop(conn);
            run(exec)
        }
        Ok((_, ServerMessageRef::Deny { reason })) => deny(program.bytes(), exec.argv, reason),
        Ok((conn, ServerMessageRef::Escalate)) => escalate(conn, shown, program, exec),
        Ok(_) => fail_closed(
            shown,
            Fault::Msg("protocol error: unexpected message instead of a verdict from server"),
        ),
    }
}

/// One round trip: the request (written before the handshake, so the server is woken once),
/// then the verdict.
unsafe fn ask<'b>(
    program: &[u8],
    cwd: &[u8],
    exec: Exec,
    buf: &'b mut [u8],
) -> Result<(Connection, ServerMessageRef<'b>), Fault> {
    let session = state::session_fd()?;
    let conn = Connection::open_with_request(
        session,
        program,
        CStrings::new(exec.argv),
        cwd,
        CStrings::new(exec.envp),
    )?;
    let verdict = conn.recv(buf)?;
    Ok((conn, verdict))
}

/// Execs the target itself; on `ENOEXEC` with `sh_fallback`, runs it with `/bin/sh` as
/// glibc's `execvp` does (the same command, so it is not decided again).
unsafe fn run(exec: Exec) -> c_int {
    let mut err = exec_target(exec.target, exec.argv, exec.envp);
    if let (libc::ENOEXEC, true, Target::Path(path)) = (err, exec.sh_fallback, exec.target) {
        err = exec_with_sh(path, exec.argv, exec.envp);
    }
    set_errno(err);
    -1
}

unsafe fn exec_target(target: Target, argv: CArray, envp: CArray) -> c_int {
    match target {
        Target::Path(path) => sys::raw_execve(path, argv, envp),
        Target::Fd(fd) => {
            let err = sys::raw_execveat(fd, argv, envp);
            if err != libc::ENOSYS {
                return err;
            }
            let mut path = PathBuf::new();
            proc_fd_path(fd, &mut path);
            sys::raw_execve(path.as_ptr(), argv, envp)
        }
    }
}

unsafe fn exec_with_sh(path: *const c_char, argv: CArray, envp: CArray) -> c_int {
    let argc = sys::count(argv);
    let Some(mut args) = PtrArray::with_capacity(argc + 2) else {
        return libc::ENOMEM;
    };
    let sh = c"/bin/sh".as_ptr();
    args.push(sh);
    args.push(path);
    for i in 1..argc {
        args.push(*argv.add(i));
    }
    sys::raw_execve(sh, args.as_ptr(), envp)
}

/// Hands the escalation to the wrapper: exec it as `[wrapper, program, argv...]` with
/// `EXECGATE_ESCALATION_FD=<stream>` added, the stream left open across the exec.
unsafe fn escalate(conn: Connection, shown: &[u8], program: &PathBuf, exec: Exec) -> ! {
    let Some((_, wrapper)) = state::wrapper() else {
        fail_closed(
            shown,
            Fault::Msg("EXEC_WRAPPER is not set: no wrapper to carry out the escalation"),
        );
    };
    let fd = conn.into_raw_fd();
    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
        fail_closed(
            shown,
            Fault::Io {
                op: "fcntl",
                errno: sys::errno(),
            },
        );
    }
    let argc = sys::count(exec.argv);
    let envc = sys::count(exec.envp);
    let (Some(mut args), Some(mut env)) = (
        PtrArray::with_capacity(argc + 2),
        PtrArray::with_capacity(envc + 1),
    ) else {
        fail_closed(
            shown,
            Fault::Io {
                op: "mmap",
                errno: sys::errno(),
            },
        );
    };
    args.push(wrapper);
    args.push(program.as_ptr());
    for i in 0..argc {
        args.push(*exec.argv.add(i));
    }
    let mut entry = PathBuf::new();
    entry.push(ESCALATION_FD_ENV.as_bytes());
    entry.push(b"=");
    entry.push_num(fd.unsigned_abs());
    let prefix = ESCALATION_FD_ENV.len() + 1;
    for i in 0..envc {
        let ptr = *exec.envp.add(i);
        let var = CStr::from_ptr(ptr).to_bytes();
        // Drop a stale or forged value: ours is the only one the wrapper may see.
        if var.get(..prefix) == entry.bytes().get(..prefix) {
            continue;
        }
        env.push(ptr);
    }
    env.push(entry.as_ptr());
    let errno = sys::raw_execve(wrapper, args.as_ptr(), env.as_ptr());
    fail_closed(
        shown,
        Fault::Io {
            op: "exec of the execgate wrapper",
            errno,
        },
    )
}
