//! The prepared sandbox, adapted to the seams that need it: the server's launcher (how the
//! shell is started) and the writability question the pipeline (design invariant 3) and
//! the server (which invoked names it trusts, invariant 2) both ask.

use super::network::GateStarter;
use execgate_decide::SandboxWritable;
use execgate_escalate_server::FileId;
use execgate_escalate_server::{DirectAnswer, DirectExecs, ExecRequest, Launch, Launcher, Monitor};
use execgate_protocol::display;
use execgate_sandbox::{
    exec_handlers, Backend, ExecCall, ExecGate, Handlers, Sandbox, ShellStatus, Supervisor,
};
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Starts the shell inside the sandbox (and, for a gated network, the gate before the
/// shell is released).
pub struct SandboxLauncher(pub Arc<Sandbox>, pub Option<Arc<GateStarter>>);

impl Launcher for SandboxLauncher {
    fn command(&self, program: &Path, args: &[OsString]) -> std::io::Result<std::process::Command> {
        Ok(self.launch(program, args)?.command)
    }

    fn launch(&self, program: &Path, args: &[OsString]) -> std::io::Result<Launch> {
        self.launch_sandboxed(program, args, Handlers::default())
    }

    /// Every exec of the sandbox is trapped: those that do not come through the shell or
    /// the shim are decided by `direct` (issue 12: children of non-shell programs).
    fn launch_with(
        &self,
        program: &Path,
        args: &[OsString],
        direct: DirectExecs,
    ) -> std::io::Result<Launch> {
        if self.0.backend() == Backend::None {
            return self.launch(program, args);
        }
        direct.start_watching();
        let gate = Arc::new(SessionGate {
            direct,
            denied: Arc::default(),
        });
        self.launch_sandboxed(program, args, exec_handlers(gate))
    }
}

impl SandboxLauncher {
    fn launch_sandboxed(
        &self,
        program: &Path,
        args: &[OsString],
        handlers: Handlers,
    ) -> std::io::Result<Launch> {
        let launch = self
            .0
            .command_with(program, args, handlers)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        if self.1.is_some() && launch.supervisor.is_none() {
            return Err(std::io::Error::other(
                "a gated network needs the sandbox's init, and this sandbox has none",
            ));
        }
        Ok(Launch {
            command: launch.command,
            monitor: launch.supervisor.map(|s| {
                Box::new(SupervisorMonitor(Arc::new(Mutex::new(s)), self.1.clone()))
                    as Box<dyn Monitor>
            }),
        })
    }
}

/// Decides the sandbox's trapped execs: those the wrapper or the shim already asked about
/// (and the wrapper's own) go on at once; any other is asked of the session's policy, which
/// can let it run inside or deny it, never escalate it.
///
/// A denial is remembered per process: `execvp` goes on to the next `PATH` entry after
/// `EACCES`, and where `/bin` links to `/usr/bin` that is the same file again; the same
/// process executing the same file with the same argv right after is refused quietly (not
/// recorded or reported twice).
struct SessionGate {
    direct: DirectExecs,
    denied: Arc<Mutex<HashMap<i32, Denied>>>,
}

/// The last denial of a process: the file and the argv.
type Denied = (FileId, Vec<Vec<u8>>);

/// Most processes whose last denial is remembered.
const MAX_DENIED: usize = 1024;

impl ExecGate for SessionGate {
    fn exec(&self, call: ExecCall) {
        let file = call.file();
        let file = (file.dev, file.ino);
        if self.direct.is_wrapper(file) {
            return call.allow();
        }
        let decided = self.direct.take_decided(call.pid(), file).or_else(|| {
            // An exec from another thread than the one that asked: match by process.
            if !self.direct.remembers_any() {
                return None;
            }
            call.tgid()
                .and_then(|tgid| self.direct.take_decided(tgid, file))
        });
        if let Some(request) = decided {
            if call.argv_is(&request.argv) {
                return call.allow();
            }
        }
        let runtime = self.direct.runtime().clone();
        let read = match call.read() {
            Ok(read) => read,
            Err(err) => {
                let program = call.path().to_vec();
                let reason = format!(
                    "cannot read what the exec asks for (at most {} arguments and environment                      entries, {} bytes): {err}",
                    execgate_sandbox::MAX_ENTRIES,
                    execgate_sandbox::MAX_BYTES
                );
                let line = denial_line(&program, &[], reason.as_bytes());
                runtime.spawn_blocking(move || call.deny(libc::EACCES, &line));
                return;
            }
        };
        let pid = call.pid();
        let repeated = lock(&self.denied)
            .get(&pid)
            .is_some_and(|(f, argv)| *f == file && *argv == read.argv);
        if repeated {
            return call.refuse(libc::EACCES);
        }
        let caller = call.caller_program();
        let denied = Arc::clone(&self.denied);
        let argv = read.argv.clone();
        let program = read.program.clone();
        let args: Vec<Vec<u8>> = read.argv.iter().skip(1).cloned().collect();
        let request = ExecRequest {
            program: read.program,
            argv: read.argv,
            cwd: read.cwd,
            env: read.env,
        };
        self.direct.decide(
            request,
            caller,
            Box::new(move |answer| match answer {
                DirectAnswer::Run => call.allow(),
                DirectAnswer::Deny { reason } => {
                    {
                        let mut denied = lock(&denied);
                        if denied.len() >= MAX_DENIED {
                            denied.clear();
                        }
                        denied.insert(pid, (file, argv));
                    }
                    let line = denial_line(&program, &args, &reason);
                    // Writing to the caller's stderr may wait (a full pipe): not here.
                    runtime.spawn_blocking(move || call.deny(libc::EACCES, &line));
                }
            }),
        );
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `execgate: denied: <command>: <reason>` and a newline, as the wrapper and the shim
/// print it.
fn denial_line(program: &[u8], args: &[Vec<u8>], reason: &[u8]) -> Vec<u8> {
    let mut line = Vec::new();
    let Ok(()) = display::denial(program, args.iter().map(Vec::as_slice), reason, &mut line);
    line.push(b'\n');
    line
}

/// The sandbox's supervisor as the server's monitor of the shell.
struct SupervisorMonitor(Arc<Mutex<Supervisor>>, Option<Arc<GateStarter>>);

impl SupervisorMonitor {
    fn lock(&self) -> MutexGuard<'_, Supervisor> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Monitor for SupervisorMonitor {
    fn spawned(&self) -> std::io::Result<()> {
        self.lock().start()?;
        match &self.1 {
            Some(gate) => gate.start(&self.0),
            None => Ok(()),
        }
    }

    fn terminate(&self) {
        self.lock().terminate();
    }

    fn killed_with_group(&self) -> bool {
        self.lock().killed_with_launched_process()
    }

    fn exit_status(&self) -> Option<std::process::ExitStatus> {
        // The init reports before it exits, so this only waits for the supervisor thread
        // to read what is already there (or to see the channel closed).
        let status = self.lock().wait_done(Duration::from_secs(10))?;
        Some(match status {
            ShellStatus::Code(code) => std::process::ExitStatus::from_raw((code & 0xff) << 8),
            ShellStatus::Signal(signo) => std::process::ExitStatus::from_raw(signo & 0x7f),
        })
    }
}

/// Which paths the sandboxed shell can write. Without a sandbox everything already runs
/// with full access, so escalation lets nothing out and invariant 3 has nothing to guard.
pub fn writable(sandbox: &Arc<Sandbox>) -> SandboxWritable {
    let sandbox = Arc::clone(sandbox);
    Arc::new(move |p: &Path| sandbox.backend() != Backend::None && sandbox.is_sandbox_writable(p))
}
