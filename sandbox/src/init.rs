//! `execgate-init`: the per-session init that runs inside the sandbox as the shell's parent.
//!
//! It is PID 1 of the session's PID namespace where one exists (bubblewrap runs it with
//! `--as-pid-1`; the Landlock backend creates PID, mount and, with the network off, network
//! namespaces itself when it may), otherwise a child subreaper, so no process of the
//! session can leave it by `setsid` and a double fork. It
//! - reads its [`InitConfig`] from the control channel, makes itself non-dumpable (sandboxed
//!   code cannot open its fds through `/proc`), and sends the server a `sock_diag` socket of
//!   the sandbox's network namespace;
//! - forks the shell's process, which restricts itself (no-new-privs, every capability
//!   dropped, Landlock, the seccomp filters, the user-notification filter last), sends the
//!   seccomp listener to the server and execs the shell;
//! - forwards signals to the shell, answers the server's requests, and when the shell ends
//!   or the server goes away (the control channel closes) kills every process of the
//!   session, reaps them, reports the shell's status (`Exited`) and exits.
//!
//! It never runs the shell without every restriction in place: any failure before the exec
//! is reported (`Failed`) and the shell does not run. Only the init calls `waitpid(-1)`:
//! the server waits for its own children through their pids.

use crate::control::{self, FromInit, InitConfig, Namespaces, ShellStatus, ToInit};
use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

/// Exit status of an init that could not set the sandbox up.
const SETUP_FAILED: i32 = 125;
/// Signals the init forwards to the shell.
const FORWARDED: [i32; 8] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGCONT,
];
/// `SO_NETNS_COOKIE` (Linux 5.14; not in the libc crate).
pub(crate) const SO_NETNS_COOKIE: libc::c_int = 71;

/// Runs the init: `execgate-init CONTROL_FD PROGRAM [ARG...]`. Never returns.
pub fn main() -> ! {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let code = match args.as_slice() {
        [fd, program, rest @ ..] => match fd.to_str().and_then(|s| s.parse::<RawFd>().ok()) {
            // SAFETY: the server passed this fd for us alone; we own it from here on.
            Some(fd) if fd > 2 => run(unsafe { OwnedFd::from_raw_fd(fd) }, program, rest),
            _ => usage(),
        },
        _ => usage(),
    };
    std::process::exit(code)
}

fn usage() -> i32 {
    eprintln!(
        "execgate-init: usage: execgate-init CONTROL_FD PROGRAM [ARG...] (started by execgate, \
         not by hand)"
    );
    2
}

/// A setup step that failed: what was being done and why.
fn fail(what: &str, err: impl std::fmt::Display) -> String {
    format!("{what}: {err}")
}

fn run(control: OwnedFd, program: &OsString, args: &[OsString]) -> i32 {
    set_cloexec(control.as_raw_fd());
    match setup_and_supervise(&control, program, args) {
        Ok(code) => code,
        Err(reason) => {
            eprintln!("execgate: the sandbox could not start: {reason}");
            let _ = control::send_to_server(control.as_fd(), &FromInit::Failed(reason), &[]);
            SETUP_FAILED
        }
    }
}

fn setup_and_supervise(
    control: &OwnedFd,
    program: &OsString,
    args: &[OsString],
) -> Result<i32, String> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(fail(
            "cannot make the init non-dumpable",
            io::Error::last_os_error(),
        ));
    }
    let config = match control::recv_from_server(control.as_fd()) {
        Ok(Some(ToInit::Config(config))) => config,
        Ok(Some(_)) => return Err("the server sent no configuration".to_owned()),
        Ok(None) => return Err("the server went away before the session started".to_owned()),
        Err(e) => return Err(fail("cannot read the configuration", e)),
    };
    if config.namespaces != Namespaces::None {
        enter_namespaces(config.namespaces)?;
        if let Some(text) = &config.resolv_conf {
            bind_resolv_conf(text)?;
        }
    } else if config.resolv_conf.is_some() {
        return Err("a gated network needs the init's own mount namespace".to_owned());
    }
    let pid1 = std::process::id() == 1;
    if !pid1 {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            return Err(fail(
                "cannot become a child subreaper",
                io::Error::last_os_error(),
            ));
        }
    }
    let diag = diag_socket().map_err(|e| fail("cannot open a sock_diag socket", e))?;
    let cookie =
        netns_cookie(diag.as_fd()).map_err(|e| fail("cannot read the network namespace", e))?;
    control::send_to_server(
        control.as_fd(),
        &FromInit::Ready {
            netns_cookie: cookie,
        },
        &[diag.as_raw_fd()],
    )
    .map_err(|e| fail("cannot reach the server", e))?;
    drop(diag);
    if config.hold_shell {
        wait_for_start(control)?;
    }

    let (signals, old_mask) = block_signals().map_err(|e| fail("cannot block signals", e))?;
    // SAFETY: the init is single-threaded, so the child may do anything after fork.
    let shell = unsafe { libc::fork() };
    if shell < 0 {
        return Err(fail("cannot fork the shell", io::Error::last_os_error()));
    }
    if shell == 0 {
        // SAFETY: restores the mask the init started with.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old_mask, std::ptr::null_mut()) };
        drop(signals);
        shell_process(&config, control, program, args);
    }
    let status = supervise(shell, &signals, control);
    teardown(pid1);
    let _ = control::send_to_server(control.as_fd(), &FromInit::Exited(status), &[]);
    Ok(match status {
        ShellStatus::Code(code) => code,
        ShellStatus::Signal(signo) => 128 + signo,
    })
}

/// Creates the requested namespaces and forks: the parent stays behind (outside the new PID
/// namespace) until the child, PID 1 inside, exits, and exits with its status. Only the
/// child returns.
fn enter_namespaces(namespaces: Namespaces) -> Result<(), String> {
    let mut flags = libc::CLONE_NEWPID | libc::CLONE_NEWNS;
    if namespaces == Namespaces::PidMountNet {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: unshare with flags; the init is single-threaded.
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(fail(
            "cannot create the session's namespaces",
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: see above.
    let parent = unsafe { libc::getpid() };
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(fail(
            "cannot fork into the PID namespace",
            io::Error::last_os_error(),
        ));
    }
    if child > 0 {
        std::process::exit(wait_exit_code(child));
    }
    // PID 1 now. Die with the parent (whose parent is the server), and take the whole PID
    // namespace along.
    // SAFETY: prctl/getppid with integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::getppid() != 0 && libc::getppid() != parent {
            libc::_exit(SETUP_FAILED);
        }
    }
    mount_session_fs()
}

/// The parent's half of [`enter_namespaces`]: waits for `child` and maps its status to an
/// exit code.
fn wait_exit_code(child: libc::pid_t) -> i32 {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child.
        let rc = unsafe { libc::waitpid(child, &mut status, 0) };
        if rc == child {
            break;
        }
        if rc < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return SETUP_FAILED;
        }
    }
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

/// In the new mount namespace: stop propagation to the host, give the PID namespace its own
/// `/proc` (the host's would show and let it address host processes), make every mount
/// `nodev` (a device file anywhere, a writable root included, cannot be opened), and give
/// the session a `/dev` of its own: a read-only tmpfs holding the host's null-like devices
/// and `/dev/tty` (bound from the host), its own `/dev/pts` instance (no other terminal is
/// even visible; ptys it opens work), a `/dev/shm` tmpfs and the usual links, as
/// bubblewrap's `--dev` makes it. The Landlock domain can then grant `/` whole.
fn mount_session_fs() -> Result<(), String> {
    let none = std::ptr::null::<libc::c_char>();
    // SAFETY: mount with valid C strings or NULL.
    unsafe {
        if libc::mount(
            none,
            c"/".as_ptr(),
            none,
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return Err(fail(
                "cannot make the mounts private",
                io::Error::last_os_error(),
            ));
        }
        let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        if libc::mount(
            c"proc".as_ptr(),
            c"/proc".as_ptr(),
            c"proc".as_ptr(),
            flags,
            std::ptr::null(),
        ) != 0
        {
            return Err(fail(
                "cannot mount /proc for the PID namespace",
                io::Error::last_os_error(),
            ));
        }
    }
    // Detached copies of the host's device files, taken before anything is nodev.
    let mut nodes = Vec::new();
    for path in crate::landlock::DEVICE_NODES {
        let c_path = CString::new(path).map_err(|e| fail("bad device path", e))?;
        // SAFETY: open_tree with a valid C string; returns a new fd or -1.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_open_tree,
                libc::AT_FDCWD,
                c_path.as_ptr(),
                libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC,
            )
        };
        if fd < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENOENT) {
                continue; // the host has no such device; neither does the session
            }
            return Err(fail(&format!("cannot take {path} for the session"), err));
        }
        // SAFETY: a fresh fd.
        nodes.push((c_path, unsafe { OwnedFd::from_raw_fd(fd as RawFd) }));
    }
    set_mount_attr(c"/", libc::AT_RECURSIVE, libc::MOUNT_ATTR_NODEV)
        .map_err(|e| fail("cannot make the mounts nodev", e))?;
    let mount = |source: &std::ffi::CStr,
                 target: &std::ffi::CStr,
                 fstype: &std::ffi::CStr,
                 flags: libc::c_ulong,
                 options: &std::ffi::CStr| {
        // SAFETY: mount with valid C strings.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                flags,
                options.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(fail(
                &format!("cannot mount {}", target.to_string_lossy()),
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    };
    let secure = libc::MS_NOSUID | libc::MS_NOEXEC;
    mount(
        c"tmpfs",
        c"/dev",
        c"tmpfs",
        secure | libc::MS_NODEV,
        c"mode=0755",
    )?;
    for (path, fd) in &nodes {
        make_file(path).map_err(|e| fail("cannot create a device file", e))?;
        // SAFETY: move_mount of a detached tree onto a path, both valid.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                fd.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_FDCWD,
                path.as_ptr(),
                libc::MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        if rc != 0 {
            return Err(fail(
                &format!("cannot bind {}", path.to_string_lossy()),
                io::Error::last_os_error(),
            ));
        }
    }
    make_dir(c"/dev/pts").map_err(|e| fail("cannot create /dev/pts", e))?;
    mount(
        c"devpts",
        c"/dev/pts",
        c"devpts",
        secure,
        c"newinstance,ptmxmode=0666,mode=0620",
    )?;
    make_dir(c"/dev/shm").map_err(|e| fail("cannot create /dev/shm", e))?;
    mount(
        c"tmpfs",
        c"/dev/shm",
        c"tmpfs",
        secure | libc::MS_NODEV,
        c"mode=1777",
    )?;
    for (target, link) in [
        (c"pts/ptmx", c"/dev/ptmx"),
        (c"/proc/self/fd", c"/dev/fd"),
        (c"/proc/self/fd/0", c"/dev/stdin"),
        (c"/proc/self/fd/1", c"/dev/stdout"),
        (c"/proc/self/fd/2", c"/dev/stderr"),
    ] {
        // SAFETY: symlink with valid C strings.
        if unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) } != 0 {
            return Err(fail(
                &format!("cannot create {}", link.to_string_lossy()),
                io::Error::last_os_error(),
            ));
        }
    }
    set_mount_attr(c"/dev", 0, libc::MOUNT_ATTR_RDONLY)
        .map_err(|e| fail("cannot make /dev read-only", e))
}

/// `mount_setattr(path, flags, {attr_set: set})`.
fn set_mount_attr(path: &std::ffi::CStr, flags: libc::c_int, set: u64) -> io::Result<()> {
    let attr = libc::mount_attr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads `attr` (of the size given) and the path.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags as libc::c_uint,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Creates an empty regular file (a mount point for a device).
fn make_file(path: &std::ffi::CStr) -> io::Result<()> {
    // SAFETY: open with a valid C string; the fd is closed at once.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: our own fresh fd.
    unsafe { libc::close(fd) };
    Ok(())
}

fn make_dir(path: &std::ffi::CStr) -> io::Result<()> {
    // SAFETY: mkdir with a valid C string.
    if unsafe { libc::mkdir(path.as_ptr(), 0o755) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_cloexec(fd: RawFd) {
    // SAFETY: fcntl on an fd we own.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
}

/// A `NETLINK_SOCK_DIAG` socket in the current network namespace.
fn diag_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket returns a new fd or -1.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The cookie of the network namespace `sock` lives in.
pub(crate) fn netns_cookie(sock: BorrowedFd<'_>) -> io::Result<u64> {
    let mut cookie = 0u64;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cookie`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

/// Blocks SIGCHLD and the forwarded signals and returns a signalfd for them, plus the mask
/// to restore in the shell.
fn block_signals() -> io::Result<(OwnedFd, libc::sigset_t)> {
    // SAFETY: sigset manipulation on local values; signalfd returns a new fd.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        for sig in FORWARDED {
            libc::sigaddset(&mut set, sig);
        }
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) != 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((OwnedFd::from_raw_fd(fd), old))
    }
}

/// Waits until the shell ends (returning its status), the server asks to end the session,
/// or the server goes away (returning SIGKILL: teardown kills the shell).
fn supervise(shell: libc::pid_t, signals: &OwnedFd, control: &OwnedFd) -> ShellStatus {
    loop {
        let mut fds = [
            libc::pollfd {
                fd: signals.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: control.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: poll on two pollfds we own.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            continue;
        }
        if fds[0].revents & libc::POLLIN != 0 {
            // SAFETY: signalfd_siginfo is plain data; read fills it.
            let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            let size = std::mem::size_of::<libc::signalfd_siginfo>();
            let got = unsafe {
                libc::read(
                    signals.as_raw_fd(),
                    (&mut info as *mut libc::signalfd_siginfo).cast(),
                    size,
                )
            };
            if got == size as isize {
                let signo = info.ssi_signo as i32;
                if signo == libc::SIGCHLD {
                    if let Some(status) = reap_until(shell) {
                        return status;
                    }
                } else {
                    // SAFETY: kill with integer arguments.
                    unsafe { libc::kill(shell, signo) };
                }
            }
        }
        if fds[1].revents != 0 {
            match control::recv_from_server(control.as_fd()) {
                Ok(Some(ToInit::Signal(signo))) => {
                    // SAFETY: kill with integer arguments.
                    unsafe { libc::kill(shell, signo) };
                }
                Ok(Some(ToInit::OpenSocket {
                    id,
                    domain,
                    ty,
                    protocol,
                })) => open_socket(control, id, domain, ty, protocol),
                Ok(Some(ToInit::Config(_))) | Ok(Some(ToInit::Start)) => {}
                Ok(Some(ToInit::Terminate)) | Ok(None) | Err(_) => {
                    return reap_shell_after_teardown(shell);
                }
            }
        }
    }
}

/// Answers the server's socket requests until it says `Start` (a gated network: the gate
/// listens before anything runs). Fails when the server ends the session first.
fn wait_for_start(control: &OwnedFd) -> Result<(), String> {
    loop {
        match control::recv_from_server(control.as_fd()) {
            Ok(Some(ToInit::Start)) => return Ok(()),
            Ok(Some(ToInit::OpenSocket {
                id,
                domain,
                ty,
                protocol,
            })) => open_socket(control, id, domain, ty, protocol),
            Ok(Some(ToInit::Signal(_))) | Ok(Some(ToInit::Config(_))) => {}
            Ok(Some(ToInit::Terminate)) | Ok(None) => {
                return Err("the server ended the session before the shell started".to_owned())
            }
            Err(e) => return Err(fail("cannot read the server's requests", e)),
        }
    }
}

/// Makes `/etc/resolv.conf` (or the file it links to) a read-only file holding `text`, in
/// the init's own mount namespace: a file on a detached tmpfs of its own (the new mount API:
/// `fsopen`, `fsmount`, `open_tree`, `move_mount`) moved over it. A memfd cannot be the
/// source of a bind mount (the kernel refuses its internal mount with EINVAL), and no
/// file the sandbox can reach by a path holds the content.
fn bind_resolv_conf(text: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let what = "cannot give the sandbox its /etc/resolv.conf";
    let check = |rc: libc::c_long| -> Result<libc::c_int, String> {
        if rc < 0 {
            Err(fail(what, io::Error::last_os_error()))
        } else {
            Ok(rc as libc::c_int)
        }
    };
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
    // SAFETY: each syscall gets valid C strings and fds; every fd returned is owned below.
    let fs =
        check(unsafe { libc::syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), 1 as libc::c_uint) })?;
    // SAFETY: a fresh fd we own.
    let fs = unsafe { OwnedFd::from_raw_fd(fs) };
    // SAFETY: as above.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    })?;
    // SAFETY: as above.
    let mnt = check(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            0 as libc::c_uint,
        )
    })?;
    // SAFETY: a fresh fd we own.
    let mnt = unsafe { OwnedFd::from_raw_fd(mnt) };
    // SAFETY: openat relative to our mount fd with a valid C string.
    let file = unsafe {
        libc::openat(
            mnt.as_raw_fd(),
            c"resolv.conf".as_ptr(),
            libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
            0o644,
        )
    };
    let file = check(file as libc::c_long)?;
    // SAFETY: a fresh fd we own.
    let mut file = unsafe { std::fs::File::from_raw_fd(file) };
    file.write_all(text).map_err(|e| fail(what, e))?;
    drop(file);
    // SAFETY: as above.
    let tree = check(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            mnt.as_raw_fd(),
            c"resolv.conf".as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    })?;
    // SAFETY: a fresh fd we own.
    let tree = unsafe { OwnedFd::from_raw_fd(tree) };
    let target = std::fs::canonicalize("/etc/resolv.conf")
        .unwrap_or_else(|_| std::path::PathBuf::from("/etc/resolv.conf"));
    let target_c = CString::new(target.as_os_str().as_bytes()).map_err(|e| fail(what, e))?;
    // SAFETY: as above.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target_c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })?;
    set_mount_attr(&target_c, 0, libc::MOUNT_ATTR_RDONLY).map_err(|e| fail(what, e))
}

/// The server asked to end (or went away): the shell's status is what teardown leaves.
fn reap_shell_after_teardown(shell: libc::pid_t) -> ShellStatus {
    // SAFETY: kill with integer arguments.
    unsafe { libc::kill(shell, libc::SIGKILL) };
    let mut status = 0;
    // SAFETY: waitpid on our own child.
    let rc = unsafe { libc::waitpid(shell, &mut status, 0) };
    if rc == shell {
        decode(status)
    } else {
        ShellStatus::Signal(libc::SIGKILL)
    }
}

/// Reaps every child that has exited; `Some(status)` once the shell is among them.
fn reap_until(shell: libc::pid_t) -> Option<ShellStatus> {
    let mut found = None;
    loop {
        let mut status = 0;
        // SAFETY: waitpid without blocking; only the init waits for its children.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return found;
        }
        if pid == shell {
            found = Some(decode(status));
        }
    }
}

fn decode(status: i32) -> ShellStatus {
    if libc::WIFSIGNALED(status) {
        ShellStatus::Signal(libc::WTERMSIG(status))
    } else {
        ShellStatus::Code(libc::WEXITSTATUS(status))
    }
}

/// Kills every process of the session and reaps them all. As PID 1, `kill(-1)` reaches
/// every other process of the namespace; as a subreaper, every descendant (orphans are
/// re-parented to us, so a double fork cannot leave the tree).
fn teardown(pid1: bool) {
    loop {
        if pid1 {
            // SAFETY: kill with integer arguments; PID 1's kill(-1) spares itself.
            unsafe { libc::kill(-1, libc::SIGKILL) };
        } else {
            let mut pending = vec![std::process::id() as libc::pid_t];
            while let Some(pid) = pending.pop() {
                for child in children_of(pid) {
                    // SAFETY: kill with integer arguments.
                    unsafe { libc::kill(child, libc::SIGKILL) };
                    pending.push(child);
                }
            }
        }
        let mut status = 0;
        // SAFETY: a blocking wait for any child: every one was just killed.
        let rc = unsafe { libc::waitpid(-1, &mut status, 0) };
        if rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
            return;
        }
    }
}

/// The children of `pid` (all its threads'), from `/proc`.
fn children_of(pid: libc::pid_t) -> Vec<libc::pid_t> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<libc::pid_t>().ok()),
            );
        }
    }
    out
}

fn open_socket(control: &OwnedFd, id: u32, domain: i32, ty: i32, protocol: i32) {
    // SAFETY: socket returns a new fd or -1.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        let errno = io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        let _ = control::send_to_server(control.as_fd(), &FromInit::Socket { id, errno }, &[]);
        return;
    }
    // SAFETY: fresh fd.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = control::send_to_server(
        control.as_fd(),
        &FromInit::Socket { id, errno: 0 },
        &[fd.as_raw_fd()],
    );
}

/// The shell's process: restrict, hand the listener out, exec. Never returns.
fn shell_process(
    config: &InitConfig,
    control: &OwnedFd,
    program: &OsString,
    args: &[OsString],
) -> ! {
    match restrict(config) {
        Ok(listener) => {
            if let Err(e) = control::send_to_server(
                control.as_fd(),
                &FromInit::Listener,
                &[listener.as_raw_fd()],
            ) {
                eprintln!("execgate: the sandbox could not start: cannot hand the seccomp listener to the server: {e}");
                // SAFETY: _exit in a forked child.
                unsafe { libc::_exit(SETUP_FAILED) };
            }
        }
        Err(reason) => {
            eprintln!("execgate: the sandbox could not start: {reason}");
            let _ = control::send_to_server(control.as_fd(), &FromInit::Failed(reason), &[]);
            // SAFETY: _exit in a forked child.
            unsafe { libc::_exit(SETUP_FAILED) };
        }
    }
    // Every fd of ours is close-on-exec; the listener was dropped above.
    let c_program = CString::new(program.as_bytes()).unwrap_or_default();
    let mut c_args: Vec<CString> = vec![c_program.clone()];
    c_args.extend(
        args.iter()
            .map(|a| CString::new(a.as_bytes()).unwrap_or_default()),
    );
    let mut argv: Vec<*const libc::c_char> = c_args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY: NUL-terminated argv of valid C strings; environ is the process's.
    unsafe { libc::execv(c_program.as_ptr(), argv.as_ptr()) };
    let err = io::Error::last_os_error();
    eprintln!("execgate: cannot run {}: {err}", program.to_string_lossy());
    let code = if err.raw_os_error() == Some(libc::ENOENT) {
        127
    } else {
        126
    };
    // SAFETY: _exit in a forked child.
    unsafe { libc::_exit(code) }
}

/// Closes every inherited unix socket that is neither a stream nor a seqpacket socket: a
/// datagram socket passed in from outside could `sendto()` any host socket by path, which
/// the sandbox's own socket rules exist to prevent. Everything else inherited stays.
fn close_datagram_sockets() -> Result<(), String> {
    let entries =
        std::fs::read_dir("/proc/self/fd").map_err(|e| fail("cannot list the inherited fds", e))?;
    let fds: Vec<RawFd> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    for fd in fds {
        let opt = |name: libc::c_int| {
            let mut value = 0i32;
            let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
            // SAFETY: getsockopt writes at most `len` bytes into `value`.
            let rc = unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    name,
                    (&mut value as *mut i32).cast(),
                    &mut len,
                )
            };
            (rc == 0).then_some(value)
        };
        let (Some(domain), Some(ty)) = (opt(libc::SO_DOMAIN), opt(libc::SO_TYPE)) else {
            continue;
        };
        if domain == libc::AF_UNIX && ty != libc::SOCK_STREAM && ty != libc::SOCK_SEQPACKET {
            eprintln!(
                "execgate: closed inherited fd {fd}: a unix datagram socket could reach host sockets from the sandbox"
            );
            // SAFETY: closing an fd this process inherited and no code of ours uses.
            unsafe { libc::close(fd) };
        }
    }
    Ok(())
}

/// Applies every restriction to this process, the notifier last; returns its listener.
fn restrict(config: &InitConfig) -> Result<OwnedFd, String> {
    close_datagram_sockets()?;
    // Built before the capabilities go: opening the rule paths may need them.
    let ruleset = match &config.landlock {
        Some(spec) => Some(crate::landlock::build(spec).map_err(|e| e.to_string())?),
        None => None,
    };
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(fail("cannot set no_new_privs", io::Error::last_os_error()));
    }
    drop_capabilities()?;
    if let Some(ruleset) = ruleset {
        // SAFETY: landlock_restrict_self on a ruleset fd we own.
        let rc =
            unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0u32) };
        if rc != 0 {
            return Err(fail(
                "cannot apply the Landlock ruleset",
                io::Error::last_os_error(),
            ));
        }
    }
    for program in &config.filters {
        install_filter(program, 0).map_err(|e| fail("cannot install a seccomp filter", e))?;
    }
    let listener = install_filter(&config.notify, libc::SECCOMP_FILTER_FLAG_NEW_LISTENER).map_err(
        |e| match e.raw_os_error() {
            Some(libc::EBUSY) => "cannot create the seccomp listener: another seccomp supervisor \
                                  already watches this process (a nested sandbox?)"
                .to_owned(),
            _ => fail(
                "cannot create the seccomp listener (Linux 5.14 or later is needed)",
                e,
            ),
        },
    )?;
    listener.ok_or_else(|| "the kernel returned no seccomp listener".to_owned())
}

/// Installs one raw `sock_filter` program; with `SECCOMP_FILTER_FLAG_NEW_LISTENER` returns
/// the listener fd.
fn install_filter(bytes: &[u8], flags: libc::c_ulong) -> io::Result<Option<OwnedFd>> {
    let insns: Vec<libc::sock_filter> = bytes
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let prog = libc::sock_fprog {
        len: insns.len() as libc::c_ushort,
        filter: insns.as_ptr().cast_mut(),
    };
    // SAFETY: the program outlives the call; the kernel copies it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 {
        // SAFETY: the kernel returned a new listener fd (close-on-exec).
        return Ok(Some(unsafe { OwnedFd::from_raw_fd(rc as RawFd) }));
    }
    Ok(None)
}

/// Drops every capability: the bounding set (where we may), ambient, inheritable,
/// permitted and effective. Under bubblewrap the capabilities are gone already and the
/// bounding set cannot be changed (no CAP_SETPCAP); no_new_privs keeps exec from granting.
fn drop_capabilities() -> Result<(), String> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .unwrap_or(63);
    // SAFETY: prctl and capset with valid pointers.
    unsafe {
        for cap in 0..=last {
            if libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) == 1
                && libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0
            {
                let err = io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EPERM) {
                    return Err(fail("cannot drop a capability from the bounding set", err));
                }
            }
        }
        if libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        ) != 0
        {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINVAL) {
                return Err(fail("cannot clear the ambient capabilities", err));
            }
        }
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let mut header = Header {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let data = [Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        if libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) != 0 {
            return Err(fail(
                "cannot drop the capabilities",
                io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}
