//! How a session runs its `PermissionRequest` hooks (design invariant 4): in the folder
//! execgate was started in, never the command's working directory; and never a hook whose
//! command names a file the sandbox can write (or could put in place: a symlink on the way,
//! a path that does not exist yet), or, for a project layer's hook, a file in the project
//! that the user's trust did not cover. Such a hook is not run: it counts as failed, and a
//! warning names the file.

use execgate_decide::layers::ProjectPolicy;
use execgate_decide::{BoxFuture, PermissionHooks, SandboxWritable};
use execgate_hooks::{
    named_files, HookHandler, HookRunner, PermissionOutcome, PermissionRequest, RunIn,
};
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

/// The loaded hooks and where they run; fixed for a server's life.
#[derive(Clone)]
pub struct HookSetup {
    /// The hooks, and how many of their processes run at once (shared by every session).
    pub runner: Arc<HookRunner>,
    /// The folder execgate was started in, where every hook runs.
    pub dir: PathBuf,
    /// `$HOME` (for `~/` in hook commands).
    pub home: Option<PathBuf>,
    /// `PATH` (where a hook's program is looked up).
    pub path: Option<OsString>,
    /// The trusted project layers, by their hooks.json.
    pub projects: Arc<HashMap<PathBuf, ProjectPolicy>>,
}

/// The hooks of one session: [`HookSetup`] vetted against that session's sandbox.
pub struct SessionHooks {
    setup: HookSetup,
    writable: SandboxWritable,
}

impl SessionHooks {
    /// Hooks for a session whose sandbox can write what `writable` accepts.
    pub fn new(setup: HookSetup, writable: SandboxWritable) -> Self {
        Self { setup, writable }
    }

    /// Why `handler` must not run, if it must not.
    fn vet(&self, handler: &HookHandler) -> Result<(), String> {
        let setup = &self.setup;
        let named = named_files(
            &handler.command,
            &setup.dir,
            setup.home.as_deref(),
            setup.path.as_deref(),
        )
        .map_err(|e| e.to_string())?;
        // The files, the PATH folders searched, and the symlinks and paths-to-be on the
        // way: the sandbox could change what any of them names after this check.
        for file in named
            .files
            .iter()
            .chain(&named.searched)
            .chain(&named.places)
        {
            if (self.writable)(file) {
                return Err(format!(
                    "it names {}, which the sandbox can write",
                    file.display()
                ));
            }
        }
        if let Some(project) = setup.projects.get(&handler.source) {
            let uncovered = named
                .files
                .iter()
                .find(|f| f.starts_with(&project.dir) && !project.files.contains(f));
            if let Some(file) = uncovered {
                return Err(format!(
                    "it names {}, which `execgate trust {}` did not cover",
                    file.display(),
                    project.dir.display()
                ));
            }
        }
        Ok(())
    }
}

impl PermissionHooks for SessionHooks {
    fn permission_request<'a>(
        &'a self,
        request: &'a PermissionRequest,
    ) -> BoxFuture<'a, PermissionOutcome> {
        Box::pin(async move {
            let run = RunIn::vetted(
                self.setup.runner.config(),
                self.setup.dir.clone(),
                |handler| {
                    let verdict = self.vet(handler);
                    if let Err(why) = &verdict {
                        eprintln!("execgate: hook not run: {}: {why}", handler.command);
                    }
                    verdict
                },
            );
            self.setup.runner.permission_request_in(request, run).await
        })
    }
}
