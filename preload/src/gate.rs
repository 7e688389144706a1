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
use execgate_protocol::display;
use execgate_protocol::{ServerMessageRef, DENIED_EXIT_CODE, ESCALATION_FD_ENV, MAX_REASON_LEN};
use libc::{c_char, c_int};

/// Receive buffer for the verdict: the largest verdict is a Deny with a full reason.
const RECV_BUF: usize = MAX_REASON_LEN + 64;

/// `/proc/self/fd/<fd>` and its NUL.
const PROC_FD_PATH_LEN: usize = 32;

// The scratch area holds two paths, then the request; the verdict reuses the request's
// bytes (the request is sent in full before the verdict is read).
const _: () = assert!(state::SCRATCH_LEN >= 2 * sys::PATH_MAX + RECV_BUF);

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

/// Prints `execgate: cannot run <program>: <error>`; the hook then exits 126.
#[cold]
#[inline(never)]
fn report_fault(program: &[u8], fault: Fault) {
    let mut line = StderrLine::new();
    let Ok(()) = display::cannot_run(program, &mut line);
    fault.write(&mut line);
    line.finish();
}

/// Reports `fault` for `program`: the hook will exit 126.
fn fail_closed(program: &[u8], fault: Fault) -> Next {
    report_fault(program, fault);
    Next::Exit
}

/// Prints `execgate: denied: <command>: <reason>`; the hook then exits 126.
///
/// # Safety
/// `argv` is NULL or a valid C array.
#[cold]
#[inline(never)]
unsafe fn report_denial(program: &[u8], argv: CArray, reason: &[u8]) {
    let mut line = StderrLine::new();
    let Ok(()) = display::denial(program, CStrings::new(argv).skip(1), reason, &mut line);
    line.finish();
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

/// How a hook ends, once deciding is over and the scratch area given back. Nothing here
/// points into the scratch area: another thread may have claimed it by the time the final
/// exec reads its arguments.
enum Next {
    /// Return -1 with this errno, deciding nothing (what `execve` itself would refuse).
    Fail(c_int),
    /// Exec the target without asking (the wrapper, which decides its own exec).
    PassThrough,
    /// Exec the target as the caller asked.
    Run,
    /// Exit 126: a denial or a fault, already reported on stderr.
    Exit,
    /// Exec the wrapper to carry out an escalation.
    Escalate(Escalation),
}

/// The wrapper's exec, prepared: everything it reads is in these mappings or the caller's
/// memory.
struct Escalation {
    wrapper: *const c_char,
    args: PtrArray,
    env: PtrArray,
    /// The program as the failure message names it (the caller's path, or a copy in `args`).
    shown: *const c_char,
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
    // The checks execve would make come before bothering the server: a program that does
    // not exist or cannot be executed is not an exec to decide (dash, for one, tries execve
    // on candidates along PATH). This one even before the scratch area is claimed: most of
    // dash's candidates fail it.
    let st = match sys::stat(path) {
        Ok(st) => st,
        Err(err) => {
            set_errno(err);
            return -1;
        }
    };
    let exec = Exec {
        target: Target::Path(path),
        argv,
        envp,
        sh_fallback: sh,
    };
    carry_out(decide(exec, &st), exec)
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
    let exec = Exec {
        target: Target::Fd(fd),
        argv,
        envp,
        sh_fallback: false,
    };
    carry_out(decide(exec, &st), exec)
}

/// Decides `exec` with its buffers in the shared scratch area, or on the stack while that
/// is claimed. The area is given back when this returns, before the final exec: a
/// `clone(CLONE_VM | CLONE_VFORK)` child whose exec succeeds would otherwise leave it
/// claimed in its parent for good.
///
/// # Safety
/// `exec`'s pointers are valid (as for `execve`); `st` describes its target.
unsafe fn decide(exec: Exec, st: &libc::stat) -> Next {
    // The claim is the exec area's first touch here, and a write: in a freshly forked child
    // the page then costs one copy-on-write fault, where a read first (the wrapper identity
    // next to the flag) would cost a fault to map the page and another to copy it.
    let Some(mut claim) = state::Claim::take() else {
        return decide_on_stack(exec, st);
    };
    decide_in(claim.bytes(), exec, st)
}

/// [`decide`] with the buffers on the stack: the scratch area is in use.
#[cold]
#[inline(never)]
unsafe fn decide_on_stack(exec: Exec, st: &libc::stat) -> Next {
    let mut buf = [0u8; state::SCRATCH_LEN];
    decide_in(&mut buf, exec, st)
}

/// Decides `exec` with `buf` (at least [`state::SCRATCH_LEN`] bytes) for its buffers,
/// each starting right after the previous one ends, so that a typical exec writes only
/// the start of it.
unsafe fn decide_in(buf: &mut [u8], exec: Exec, st: &libc::stat) -> Next {
    match exec.target {
        Target::Path(path) => decide_path(buf, path, st, exec),
        Target::Fd(fd) => decide_fd(buf, fd, st, exec),
    }
}

unsafe fn decide_path(buf: &mut [u8], path: *const c_char, st: &libc::stat, exec: Exec) -> Next {
    let given = CStr::from_ptr(path).to_bytes();
    if state::is_wrapper(given, st) {
        // The wrapper decides its own exec.
        return Next::PassThrough;
    }
    if let Err(err) = sys::check_executable(path, st) {
        return Next::Fail(err);
    }
    let mut cwd = PathBuf::new(buf);
    if let Err(errno) = cwd.set_cwd() {
        return fail_closed(
            given,
            Fault::Io {
                op: "getcwd",
                errno,
            },
        );
    }
    let (cwd, rest) = cwd.finish();
    let mut program = PathBuf::new(rest);
    if !absolute(given, cwd.to_bytes(), &mut program) {
        return fail_closed(given, Fault::Msg("program path longer than PATH_MAX"));
    }
    let (program, rest) = program.finish();
    ask_and_decide(given, program, cwd.to_bytes(), exec, rest)
}

unsafe fn decide_fd(buf: &mut [u8], fd: c_int, st: &libc::stat, exec: Exec) -> Next {
    let mut link_buf = [0u8; PROC_FD_PATH_LEN];
    let mut link = PathBuf::new(&mut link_buf);
    proc_fd_path(fd, &mut link);
    let mut program = PathBuf::new(buf);
    if !(program.set_readlink(link.as_ptr()) && program.bytes().starts_with(b"/")) {
        program.clear();
        program.push(link.bytes());
    }
    let (program, rest) = program.finish();
    if state::is_wrapper(program.to_bytes(), st) {
        return Next::PassThrough;
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Next::Fail(libc::EACCES);
    }
    let mut cwd = PathBuf::new(rest);
    if let Err(errno) = cwd.set_cwd() {
        return fail_closed(
            program.to_bytes(),
            Fault::Io {
                op: "getcwd",
                errno,
            },
        );
    }
    let (cwd, rest) = cwd.finish();
    ask_and_decide(program.to_bytes(), program, cwd.to_bytes(), exec, rest)
}

fn proc_fd_path(fd: c_int, out: &mut PathBuf) {
    out.clear();
    out.push(b"/proc/self/fd/");
    out.push_num(fd.unsigned_abs());
}

/// Joins a relative program path to the working directory (dropping leading `./`).
fn absolute(given: &[u8], cwd: &[u8], out: &mut PathBuf) -> bool {
    out.clear();
    if given.starts_with(b"/") {
        return out.push(given);
    }
    let mut rest = given;
    while let Some(tail) = rest.strip_prefix(b"./") {
        rest = tail;
    }
    out.push(cwd) && (cwd.ends_with(b"/") || out.push(b"/")) && out.push(rest)
}

/// Asks the server, then prepares to run, deny or escalate. `buf` takes the request, then
/// the verdict.
///
/// # Safety
/// `exec`'s arrays are valid C arrays (or NULL).
unsafe fn ask_and_decide(
    shown: &[u8],
    program: &CStr,
    cwd: &[u8],
    exec: Exec,
    buf: &mut [u8],
) -> Next {
    match ask(program.to_bytes(), cwd, exec, buf) {
        Err(fault) => fail_closed(shown, fault),
        Ok((conn, ServerMessageRef::Run)) => {
            drop(conn);
            Next::Run
        }
        Ok((_, ServerMessageRef::Deny { reason })) => {
            report_denial(program.to_bytes(), exec.argv, reason);
            Next::Exit
        }
        Ok((conn, ServerMessageRef::Escalate)) => escalate(conn, shown, program, exec),
        Ok(_) => fail_closed(
            shown,
            Fault::Msg("protocol error: unexpected message instead of a verdict from server"),
        ),
    }
}

/// One round trip: the request (written before the handshake, so the server is woken once),
/// then the verdict, read into the start of the buffer the request was sent from.
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
        buf,
    )?;
    let (recv, _) = buf.split_at_mut(RECV_BUF.min(buf.len()));
    let verdict = conn.recv(recv)?;
    Ok((conn, verdict))
}

/// Carries out what [`decide`] settled on.
///
/// # Safety
/// `exec`'s pointers are valid (as for `execve`).
unsafe fn carry_out(next: Next, exec: Exec) -> c_int {
    match next {
        Next::Fail(errno) => {
            set_errno(errno);
            -1
        }
        Next::PassThrough => {
            set_errno(exec_target(exec.target, exec.argv, exec.envp));
            -1
        }
        Next::Run => run(exec),
        Next::Exit => sys::exit_now(DENIED_EXIT_CODE),
        Next::Escalate(escalation) => escalation.exec(),
    }
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
            let mut buf = [0u8; PROC_FD_PATH_LEN];
            let mut path = PathBuf::new(&mut buf);
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

/// Prepares the hand-over of the escalation to the wrapper: exec it as `[wrapper, program,
/// argv...]` with `EXECGATE_ESCALATION_FD=<stream>` added, the stream left open across the
/// exec. The program path and the variable are copied into the arrays' mappings, off the
/// scratch area.
unsafe fn escalate(conn: Connection, shown: &[u8], program: &CStr, exec: Exec) -> Next {
    let Some((_, wrapper)) = state::wrapper() else {
        return fail_closed(
            shown,
            Fault::Msg("EXEC_WRAPPER is not set: no wrapper to carry out the escalation"),
        );
    };
    let fd = conn.into_raw_fd();
    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
        return fail_closed(
            shown,
            Fault::Io {
                op: "fcntl",
                errno: sys::errno(),
            },
        );
    }
    let mut entry_buf = [0u8; ESCALATION_ENTRY_LEN];
    let mut entry = PathBuf::new(&mut entry_buf);
    entry.push(ESCALATION_FD_ENV.as_bytes());
    entry.push(b"=");
    entry.push_num(fd.unsigned_abs());
    let argc = sys::count(exec.argv);
    let envc = sys::count(exec.envp);
    let (Some(mut args), Some(mut env)) = (
        PtrArray::with_room(argc + 2, program.to_bytes().len() + 1),
        PtrArray::with_room(envc + 1, entry.bytes().len() + 1),
    ) else {
        return fail_closed(
            shown,
            Fault::Io {
                op: "mmap",
                errno: sys::errno(),
            },
        );
    };
    args.push(wrapper);
    let program_copy = args.push_copy(program.to_bytes());
    for i in 0..argc {
        args.push(*exec.argv.add(i));
    }
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
    let (Some(program_copy), Some(_)) = (program_copy, env.push_copy(entry.bytes())) else {
        // The mappings were sized for these copies: not reached.
        return fail_closed(
            shown,
            Fault::Io {
                op: "mmap",
                errno: libc::ENOMEM,
            },
        );
    };
    let shown = match exec.target {
        Target::Path(path) => path,
        Target::Fd(_) => program_copy,
    };
    Next::Escalate(Escalation {
        wrapper,
        args,
        env,
        shown,
    })
}

/// `EXECGATE_ESCALATION_FD=<fd>` and its NUL.
const ESCALATION_ENTRY_LEN: usize = 64;

impl Escalation {
    /// Execs the wrapper; on failure prints why and exits 126.
    unsafe fn exec(self) -> ! {
        let errno = sys::raw_execve(self.wrapper, self.args.as_ptr(), self.env.as_ptr());
        report_fault(
            CStr::from_ptr(self.shown).to_bytes(),
            Fault::Io {
                op: "exec of the execgate wrapper",
                errno,
            },
        );
        sys::exit_now(DENIED_EXIT_CODE)
    }
}
