//! The prepared sandbox, adapted to the seams that need it: the server's launcher (how the
//! shell is started) and the writability question the pipeline (design invariant 3) and
//! the server (which invoked names it trusts, invariant 2) both ask.

use execgate_decide::SandboxWritable;
use execgate_escalate_server::{Launch, Launcher, Monitor};
use execgate_sandbox::{Backend, Sandbox, ShellStatus, Supervisor};
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Starts the shell inside the sandbox.
pub struct SandboxLauncher(pub Arc<Sandbox>);

impl Launcher for SandboxLauncher {
    fn command(&self, program: &Path, args: &[OsString]) -> std::io::Result<std::process::Command> {
        Ok(self.launch(program, args)?.command)
    }

    fn launch(&self, program: &Path, args: &[OsString]) -> std::io::Result<Launch> {
        let launch = self
            .0
            .command(program, args)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Launch {
            command: launch.command,
            monitor: launch
                .supervisor
                .map(|s| Box::new(SupervisorMonitor(Mutex::new(s))) as Box<dyn Monitor>),
        })
    }
}

/// The sandbox's supervisor as the server's monitor of the shell.
struct SupervisorMonitor(Mutex<Supervisor>);

impl SupervisorMonitor {
    fn lock(&self) -> MutexGuard<'_, Supervisor> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Monitor for SupervisorMonitor {
    fn spawned(&self) -> std::io::Result<()> {
        self.lock().start()
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
