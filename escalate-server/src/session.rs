//! A session: the intercepted shell, its socket, and the server task that answers it.

use crate::direct::DirectExecs;
use crate::env::{EnvPolicy, PassEnvError};
use crate::event::ExecEvent;
use crate::invoked::InvokedNames;
use crate::policy::{EscalationPolicy, Shared, WritablePaths};
use crate::serve::{Acceptor, Server, MAX_WAITING_DECISIONS, MAX_WAITING_STREAMS};
use crate::stream::Budget;
use execgate_protocol::{LEGACY_WRAPPER_ENV, SOCKET_ENV, WRAPPER_ENV};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::mpsc::UnboundedSender;

/// How the shell's execs are routed to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interception {
    /// A shell patched for `EXEC_WRAPPER` execs `wrapper` in place of every program.
    PatchedShell {
        /// The `execgate-execve-wrapper` binary.
        wrapper: PathBuf,
    },
    /// A stock shell with the preload shim (`LD_PRELOAD`); the shim execs `wrapper` to carry
    /// out escalations. `EXEC_WRAPPER` is set too, so a patched shell here has both entry
    /// points active (each exec is still decided once).
    Preload {
        /// `libexecgate_preload.so`.
        shim: PathBuf,
        /// The `execgate-execve-wrapper` binary.
        wrapper: PathBuf,
    },
}

/// Builds the command that starts the session's shell. The seam where a sandbox wraps the
/// shell (e.g. `bwrap ... -- shell args`).
///
/// The session then adds the environment, working directory, stdio and process group to
/// the returned command, so a launcher must pass its environment and fds (the session
/// socket is an inherited fd named by `EXECGATE_SOCKET`) through to the shell.
pub trait Launcher: Send + Sync {
    /// A command that runs `program` with `args`.
    fn command(&self, program: &Path, args: &[OsString]) -> io::Result<std::process::Command>;

    /// The command plus, for a sandbox with an init of its own, the [`Monitor`] that
    /// supervises it. The default has no monitor.
    fn launch(&self, program: &Path, args: &[OsString]) -> io::Result<Launch> {
        Ok(Launch {
            command: self.command(program, args)?,
            monitor: None,
        })
    }

    /// [`Launcher::launch`] for a session whose sandbox may trap every exec: `direct`
    /// decides the execs that do not come through the shell or the shim. The default
    /// ignores it.
    fn launch_with(
        &self,
        program: &Path,
        args: &[OsString],
        direct: DirectExecs,
    ) -> io::Result<Launch> {
        let _ = direct;
        self.launch(program, args)
    }
}

/// What a [`Launcher`] hands the session: the command to spawn and its monitor, if any.
pub struct Launch {
    /// The process to spawn.
    pub command: std::process::Command,
    /// Supervises what the command starts (a sandbox's init); the session keeps it alive.
    pub monitor: Option<Box<dyn Monitor>>,
}

/// A sandbox's supervisor of the launched shell: it knows the shell's own exit status and
/// how to end every process the shell started.
pub trait Monitor: Send + Sync {
    /// Called once, right after the command was spawned.
    fn spawned(&self) -> io::Result<()>;
    /// Ends every process the launched command started (asynchronously).
    fn terminate(&self);
    /// Whether `SIGKILL` to the launched process's group already ends every process it
    /// started (a PID namespace); if not, only [`Monitor::terminate`] does.
    fn killed_with_group(&self) -> bool;
    /// The shell's own status, once the launched process has exited (`None`: use the
    /// launched process's status).
    fn exit_status(&self) -> Option<std::process::ExitStatus>;
}

/// Runs the shell directly, unsandboxed.
#[derive(Debug, Clone, Copy, Default)]
pub struct DirectLauncher;

impl Launcher for DirectLauncher {
    fn command(&self, program: &Path, args: &[OsString]) -> io::Result<std::process::Command> {
        let mut cmd = std::process::Command::new(program);
        cmd.args(args);
        Ok(cmd)
    }
}

/// Why a session could not start.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Not called from inside a Tokio runtime.
    #[error("an execgate session must be started inside a Tokio runtime")]
    NoRuntime,
    /// The session's socket could not be set up.
    #[error("cannot create the session socket: {0}")]
    Socket(#[source] io::Error),
    /// A name given to [`SessionBuilder::pass_env`] cannot be passed.
    #[error("{0}")]
    PassEnv(#[from] PassEnvError),
    /// The shell could not be started.
    #[error("cannot start the shell {shell}: {source}")]
    Spawn {
        /// The shell program.
        shell: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Configures and starts a [`Session`]; `N` is the note type of the policy it will ask
/// (see [`EscalationPolicy::Note`]).
pub struct SessionBuilder<N = ()> {
    shell: PathBuf,
    args: Vec<OsString>,
    cwd: Option<PathBuf>,
    env: BTreeMap<OsString, OsString>,
    interception: Interception,
    launcher: Arc<dyn Launcher>,
    stdin: Option<Stdio>,
    stdout: Option<Stdio>,
    stderr: Option<Stdio>,
    events: Option<UnboundedSender<ExecEvent<N>>>,
    escalation_env: Vec<(OsString, OsString)>,
    pass_env: Vec<OsString>,
    writable: Option<Arc<dyn WritablePaths>>,
    terminal: Option<OwnedFd>,
    client_pids: bool,
}

impl<N: Send + 'static> SessionBuilder<N> {
    /// A session running `shell` with `interception`; it starts with this process's
    /// environment and working directory, inherited stdio and no arguments. This process's
    /// environment, as it is now, is also the session's own environment, which escalated
    /// commands start from (see [`SessionBuilder::escalation_env`]).
    pub fn new(shell: impl Into<PathBuf>, interception: Interception) -> Self {
        let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        Self {
            shell: shell.into(),
            args: Vec::new(),
            cwd: None,
            env: env.iter().cloned().collect(),
            escalation_env: env,
            pass_env: Vec::new(),
            writable: None,
            client_pids: false,
            interception,
            launcher: Arc::new(DirectLauncher),
            stdin: None,
            stdout: None,
            stderr: None,
            events: None,
            terminal: None,
        }
    }

    /// Appends one argument for the shell.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments for the shell.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The shell's working directory.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Sets an environment variable for the shell.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Removes an environment variable from the shell's environment.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.remove(key.as_ref());
        self
    }

    /// Starts the shell with an empty environment (plus what later `env` calls and the
    /// session itself add).
    pub fn env_clear(mut self) -> Self {
        self.env.clear();
        self
    }

    /// Wraps the shell's start, e.g. in a sandbox. Default: [`DirectLauncher`].
    pub fn launcher(mut self, launcher: Arc<dyn Launcher>) -> Self {
        self.launcher = launcher;
        self
    }

    /// Makes `tty` (a terminal, e.g. a pty's slave) the shell's controlling terminal. The
    /// shell always starts a session of its own (`setsid`), so without this it has no
    /// controlling terminal at all: never the one of the process that started it.
    pub fn controlling_terminal(mut self, tty: OwnedFd) -> Self {
        self.terminal = Some(tty);
        self
    }

    /// The shell's stdin (default: inherited).
    pub fn stdin(mut self, stdio: Stdio) -> Self {
        self.stdin = Some(stdio);
        self
    }

    /// The shell's stdout (default: inherited). Escalated commands write where the shell's
    /// fds point, so a piped stdout captures their output too.
    pub fn stdout(mut self, stdio: Stdio) -> Self {
        self.stdout = Some(stdio);
        self
    }

    /// The shell's stderr (default: inherited).
    pub fn stderr(mut self, stdio: Stdio) -> Self {
        self.stderr = Some(stdio);
        self
    }

    /// Sends an [`ExecEvent`] for every decision, escalated start and exit to `events`.
    ///
    /// Each send wakes a receiver parked in `recv`, and the Run path pays for that wake-up
    /// (a futex and, across CPUs, an interrupt): consumers that can wait a few milliseconds
    /// should drain the channel on a timer with `try_recv`, as `execgate run` does.
    pub fn events(mut self, events: UnboundedSender<ExecEvent<N>>) -> Self {
        self.events = Some(events);
        self
    }

    /// The session's own environment, captured outside the sandbox: every escalated
    /// command starts from it (plus `PWD`, the allowed presentation variables of its
    /// request such as `TERM`, and the names given to [`SessionBuilder::pass_env`]),
    /// never from the environment the sandbox sends. Default: this process's environment
    /// when the builder was created. The shell's own environment ([`SessionBuilder::env`])
    /// is separate. The session's plumbing variables are removed from it.
    pub fn escalation_env<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        self.escalation_env = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self
    }

    /// Lets escalated commands keep the request's value of variable `name` (byte-exact),
    /// e.g. `FOO` for `FOO=1 make`. The session's plumbing, `LD_PRELOAD`, `PWD` and
    /// `TERMINFO*` are refused when the session starts ([`SessionError::PassEnv`]).
    pub fn pass_env(mut self, name: impl Into<OsString>) -> Self {
        self.pass_env.push(name.into());
        self
    }

    /// Gives the policy the pid of the process that sent each request
    /// ([`crate::ExecContext::pid`]), for a policy that attributes what a process does
    /// later (the network gate names the exec that opened a connection). Off by default: it
    /// costs one `getsockopt` per exec.
    pub fn client_pids(mut self, on: bool) -> Self {
        self.client_pids = on;
        self
    }

    /// Tells the server which paths sandboxed code can write, so it can trust the name a
    /// program was invoked by ([`crate::ExecContext::invoked`]). Without it every path
    /// counts as writable: no invoked name is trusted, and escalated programs get their
    /// resolved path as `argv[0]`. With it, an escalated program gets its invoked name as
    /// `argv[0]` only when the ruling says the policy judged that name
    /// ([`crate::Argv0::Invoked`]).
    pub fn writable_paths(mut self, writable: Arc<dyn WritablePaths>) -> Self {
        self.writable = Some(writable);
        self
    }

    /// The environment the shell gets: the builder's, plus the session's variables.
    fn shell_env(&self, socket_fd: i32) -> BTreeMap<OsString, OsString> {
        let mut env = self.env.clone();
        env.insert(SOCKET_ENV.into(), socket_fd.to_string().into());
        let wrapper = match &self.interception {
            Interception::PatchedShell { wrapper } => wrapper,
            Interception::Preload { shim, wrapper } => {
                let mut preload = shim.as_os_str().to_os_string();
                if let Some(existing) = env.get(OsStr::new("LD_PRELOAD")) {
                    if !existing.is_empty() {
                        preload.push(":");
                        preload.push(existing);
                    }
                }
                env.insert("LD_PRELOAD".into(), preload);
                wrapper
            }
        };
        env.insert(WRAPPER_ENV.into(), wrapper.into());
        env.insert(LEGACY_WRAPPER_ENV.into(), wrapper.into());
        env
    }

    /// Starts the server and the shell. Must be called inside a Tokio runtime.
    pub fn spawn(
        self,
        policy: Arc<dyn EscalationPolicy<Note = N>>,
    ) -> Result<Session, SessionError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| SessionError::NoRuntime)?;
        let _enter = runtime.enter();
        let env = EnvPolicy::new(self.escalation_env.iter().cloned(), &self.pass_env)?;
        let (server_end, shell_end) = session_pair().map_err(SessionError::Socket)?;
        let shell_fd = shell_end.as_raw_fd();
        let target_fd = shell_socket_fd().unwrap_or(shell_fd);
        let shared = Arc::new(Shared::default());
        let server = Arc::new(Server {
            policy,
            shared: Arc::clone(&shared),
            events: self.events.clone(),
            next_id: AtomicU64::new(0),
            spawner: crate::spawn::Spawner::new(InvokedNames::new(self.writable.clone())),
            env,
            waiting_requests: Budget::new(MAX_WAITING_STREAMS),
            waiting_fds: Budget::new(MAX_WAITING_STREAMS),
            waiting_decisions: Budget::new(MAX_WAITING_DECISIONS),
            run_memory: Arc::default(),
            client_pids: self.client_pids,
        });
        let wrapper = match &self.interception {
            Interception::PatchedShell { wrapper } | Interception::Preload { wrapper, .. } => {
                wrapper.clone()
            }
        };
        let direct = DirectExecs::new(Arc::clone(&server), &wrapper, runtime.clone());
        let Launch {
            command: mut cmd,
            monitor,
        } = self
            .launcher
            .launch_with(&self.shell, &self.args, direct)
            .map_err(|source| SessionError::Spawn {
                shell: self.shell.clone(),
                source,
            })?;
        cmd.env_clear().envs(self.shell_env(target_fd));
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        // The shell leads a new session (so also its own process group), whose controlling
        // terminal is the one given, if any.
        let terminal = self.terminal.as_ref().map(|tty| tty.as_raw_fd());
        // SAFETY: setsid, ioctl, dup2 and fcntl are async-signal-safe. The shell's end of
        // the socket lands on `target_fd` and survives exec (it is close-on-exec everywhere
        // else).
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                if let Some(tty) = terminal {
                    if libc::ioctl(tty, libc::TIOCSCTTY, 0) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                if target_fd != shell_fd {
                    if libc::dup2(shell_fd, target_fd) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                } else if libc::fcntl(shell_fd, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.stdin(self.stdin.unwrap_or_else(Stdio::inherit));
        cmd.stdout(self.stdout.unwrap_or_else(Stdio::inherit));
        cmd.stderr(self.stderr.unwrap_or_else(Stdio::inherit));
        let acceptor =
            Acceptor::start(server_end, server, runtime.clone()).map_err(SessionError::Socket)?;
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(source) => {
                drop(acceptor);
                return Err(SessionError::Spawn {
                    shell: self.shell,
                    source,
                });
            }
        };
        drop(shell_end);
        let pid = child.id().map_or(0, |pid| pid as i32);
        let monitor: Option<Arc<dyn Monitor>> = monitor.map(Arc::from);
        if let Some(monitor) = &monitor {
            if let Err(source) = monitor.spawned() {
                crate::policy::kill_group(pid, libc::SIGKILL);
                return Err(SessionError::Spawn {
                    shell: self.shell,
                    source,
                });
            }
        }
        shared.set_shell(pid, monitor.clone());
        Ok(Session {
            child,
            pid,
            shared,
            monitor,
            _acceptor: acceptor,
        })
    }
}

/// The fd number the shell gets its end of the session socket on: the highest the soft
/// `RLIMIT_NOFILE` allows, at most 1023. Scripts open low numbers (`exec 3>log`,
/// `exec 9>lock` for `flock`) and a redirection onto the session socket would cut the shell
/// off from the server (every later exec would fail closed), so keep it far from them.
/// `None` when the limit is too low to do better than wherever the socket was opened.
fn shell_socket_fd() -> Option<i32> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into our buffer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    let highest = limit.rlim_cur.min(1024).saturating_sub(1) as i32;
    (highest >= 64).then_some(highest)
}

/// The session socketpair, both ends close-on-exec (the server's end is read by the
/// acceptor thread in blocking mode). `SOCK_SEQPACKET`, not `SOCK_DGRAM`: a datagram
/// socket in the sandbox could `sendto()` any host datagram socket by path (the journal,
/// syslog), and the sandbox refuses to create unix datagram sockets for that reason; a
/// seqpacket socket keeps each handshake a record of its own and ignores addresses.
fn session_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut pair = [-1; 2];
    // SAFETY: socketpair writes two new fds into `pair`.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            pair.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds are fresh and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1])) })
}

/// A running intercepted shell and its server. Dropping it kills the shell's process group
/// and every escalated process group, and stops serving.
pub struct Session {
    child: Child,
    pid: i32,
    shared: Arc<Shared>,
    monitor: Option<Arc<dyn Monitor>>,
    /// Held for its Drop: stops serving and closes the session socket.
    _acceptor: Acceptor,
}

impl Session {
    /// The shell's pid (also its process group id).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Takes the shell's stdin, when it was configured as piped.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// Takes the shell's stdout, when it was configured as piped.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// Takes the shell's stderr, when it was configured as piped.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// Waits for the shell to exit and returns its status. Escalated processes it left in
    /// the background keep running (and being served) until the session is dropped.
    pub async fn wait(&mut self) -> io::Result<std::process::ExitStatus> {
        let status = self.child.wait().await?;
        Ok(self
            .monitor
            .as_ref()
            .and_then(|m| m.exit_status())
            .unwrap_or(status))
    }

    /// Kills the shell's process group and every escalated process group; the session keeps
    /// serving whatever is left until it is dropped.
    pub fn kill(&self) {
        self.shared.kill_all(false);
    }

    /// Ends the whole session for `reason`, as a ruling's [`crate::Ruling::end_session`]
    /// does: kills the shell's group and every escalated group, refuses later escalations,
    /// and [`Session::interrupted`] gives the reason (the first one given). For deciders
    /// outside the exec protocol, such as the network gate's.
    pub fn end(&self, reason: impl Into<String>) {
        self.shared.interrupt(reason.into());
    }

    /// Why the session was ended by a policy's ruling ([`crate::Ruling::end_session`]) or
    /// [`Session::end`], if it was.
    pub fn interrupted(&self) -> Option<String> {
        self.shared.interrupted()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shared.kill_all(true);
        // The acceptor's own Drop (a field) then stops serving.
    }
}
