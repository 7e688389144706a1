//! The prepared sandbox, adapted to the seams that need it: the server's launcher (how the
//! shell is started) and the writability question the pipeline (design invariant 3) and
//! the server (which invoked names it trusts, invariant 2) both ask.

use execgate_decide::SandboxWritable;
use execgate_escalate_server::Launcher;
use execgate_sandbox::{Backend, Sandbox};
use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;

/// Starts the shell inside the sandbox.
pub struct SandboxLauncher(pub Arc<Sandbox>);

impl Launcher for SandboxLauncher {
    fn command(&self, program: &Path, args: &[OsString]) -> std::io::Result<std::process::Command> {
        self.0
            .command(program, args)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

/// Which paths the sandboxed shell can write. Without a sandbox everything already runs
/// with full access, so escalation lets nothing out and invariant 3 has nothing to guard.
pub fn writable(sandbox: &Arc<Sandbox>) -> SandboxWritable {
    let sandbox = Arc::clone(sandbox);
    Arc::new(move |p: &Path| sandbox.backend() != Backend::None && sandbox.is_sandbox_writable(p))
}
