//! What `execgate run` and `execgate mcp` load before any session: the rules and hooks
//! (from the files given, or from the policy layers that apply in the working directory;
//! a project layer only when the user trusted it), what the user trusts, the audit log,
//! the files the sandbox must keep read-only, and the pipeline built from them.
//!
//! A bad file refuses to start, with its `file:line:col`. An untrusted or changed project
//! layer is skipped with one line on stderr naming its files and the command that trusts
//! it.

use crate::session::HookSetup;
use anyhow::Context;
use execgate_decide::layers::{self, Layer, LayerKind, ProjectPolicy, Standing};
use execgate_decide::{ApprovalMode, Approver, HookIdentity, Pipeline, SessionApprovals};
use execgate_execpolicy::Policy;
use execgate_hooks::{HookRunner, HooksConfig, DEFAULT_PROCESS_LIMIT};
use execgate_protocol::display;
use execgate_trust::{TrustStore, TrustedRepositories};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The loaded policy of a `run` or an MCP server.
pub struct Loaded {
    /// The rules.
    pub policy: Arc<Policy>,
    /// The hooks, run at most [`DEFAULT_PROCESS_LIMIT`] processes at a time for every
    /// session of this process, identical pending requests sharing one run.
    pub hooks: Arc<HookRunner>,
    /// When a person is asked.
    pub approval: ApprovalMode,
    /// The rules files loaded, in order.
    pub rule_files: Vec<PathBuf>,
    /// The hooks files loaded, in order.
    pub hook_files: Vec<PathBuf>,
    /// The user's approvals file ("always" answers), when `$HOME` is known.
    pub approvals_file: Option<PathBuf>,
    /// The audit log (`--audit-log`), created by [`Loaded::audit_log`] before any sandbox.
    pub audit_log: Option<PathBuf>,
    /// What the user trusts (the trust file as it was at start).
    pub trust: TrustStore,
    /// The trusted project layers that were loaded.
    pub projects: Vec<ProjectPolicy>,
    /// `$HOME`.
    pub home: Option<PathBuf>,
    /// Folders the sandbox keeps read-only besides the loaded files: the user's execgate
    /// folder and the Codex home (created here when missing), and the folders of `PATH`.
    pub policy_dirs: Vec<PathBuf>,
    /// The folder execgate was started in: hooks run there.
    pub hook_dir: PathBuf,
}

impl Loaded {
    /// Loads `rules` (or, when empty, the rules of the layers that apply in `cwd`) and
    /// `hooks` (likewise), reads the user's trust file, and creates the user's execgate
    /// folder and the Codex home `codex_home` when missing, so the sandbox can keep them
    /// read-only. Hook warnings and skipped project layers go to stderr.
    pub fn load(
        rules: &[PathBuf],
        hooks: &[PathBuf],
        approval: ApprovalMode,
        cwd: &Path,
        home: Option<&Path>,
        codex_home: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let hook_dir = std::env::current_dir()
            .context("cannot read the current directory (hooks run there)")?;
        let trust = match home {
            Some(home) => {
                TrustStore::load(&TrustStore::location(home)).map_err(|e| anyhow::anyhow!("{e}"))?
            }
            None => TrustStore::default(),
        };
        let path = std::env::var_os("PATH");
        let mut projects = Vec::new();
        let discovered = if rules.is_empty() || hooks.is_empty() {
            let found = layers::discover(cwd, home);
            let wanted = Wanted {
                rules: rules.is_empty(),
                hooks: hooks.is_empty(),
            };
            Some(trusted_layers(
                found,
                &trust,
                home,
                path.as_deref(),
                wanted,
                &mut projects,
            )?)
        } else {
            None
        };
        let rule_files = match &discovered {
            Some(found) if rules.is_empty() => layers::rules_files(found)?,
            _ => rules.to_vec(),
        };
        let hook_files = match &discovered {
            Some(found) if hooks.is_empty() => layers::hooks_files(found),
            _ => hooks.to_vec(),
        };
        // The error already reads `file:line:col: message`.
        let policy = Policy::from_files(&rule_files).map_err(|e| anyhow::anyhow!("{e}"))?;
        let (hooks, warnings) =
            HooksConfig::load(&hook_files).map_err(|e| anyhow::anyhow!("{e}"))?;
        for warning in warnings {
            eprintln!("execgate: warning: {warning}");
        }
        let mut policy_dirs = Vec::new();
        let created = home
            .map(|h| h.join(".config/execgate"))
            .into_iter()
            .chain(codex_home.map(Path::to_path_buf));
        for dir in created {
            std::fs::create_dir_all(&dir).with_context(|| {
                format!(
                    "cannot create {} (so that sessions keep it read-only)",
                    dir.display()
                )
            })?;
            policy_dirs.push(dir);
        }
        // A program planted in a PATH folder would run in place of the one a hook or an
        // escalated program looks up by name.
        if let Some(path) = &path {
            policy_dirs.extend(std::env::split_paths(path).filter(|d| d.is_absolute()));
        }
        Ok(Self {
            policy: Arc::new(policy),
            hooks: Arc::new(HookRunner::new(Arc::new(hooks), DEFAULT_PROCESS_LIMIT)),
            approval,
            rule_files,
            hook_files,
            approvals_file: layers::user_rules_file(home),
            audit_log: None,
            trust,
            projects,
            home: home.map(Path::to_path_buf),
            policy_dirs,
            hook_dir,
        })
    }

    /// The trusted repositories as they are now, for a session about to start.
    pub fn repositories(&self) -> TrustedRepositories {
        TrustedRepositories::gather(&self.trust, self.home.as_deref())
    }

    /// How the loaded hooks run in a session.
    pub fn hook_setup(&self) -> HookSetup {
        let projects: HashMap<PathBuf, ProjectPolicy> = self
            .projects
            .iter()
            .map(|p| (p.layer.join("hooks.json"), p.clone()))
            .collect();
        HookSetup {
            runner: Arc::clone(&self.hooks),
            dir: self.hook_dir.clone(),
            home: self.home.clone(),
            path: std::env::var_os("PATH"),
            projects: Arc::new(projects),
        }
    }

    /// Sessions append their records to `path`. It is created here, when missing, so
    /// that it exists before the sandbox is built and the sandbox can keep it read-only
    /// (see [`Loaded::protected_paths`]): records sandboxed code could append to would be
    /// records of something else, and `execgate policy suggest` turns "approved" records
    /// into allow rules.
    pub fn audit_log(mut self, path: Option<PathBuf>) -> anyhow::Result<Self> {
        if let Some(path) = &path {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open the audit log {}", path.display()))?;
        }
        self.audit_log = path;
        Ok(self)
    }

    /// What the sandbox keeps read-only: every loaded rules and hooks file, the user's
    /// approvals file and the audit log, the loaded project layers and the files their
    /// trust covers, the user's execgate folder, the Codex home and the `PATH` folders
    /// (the sandbox leaves out what lies outside its writable roots).
    pub fn protected_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self
            .rule_files
            .iter()
            .chain(&self.hook_files)
            .cloned()
            .collect();
        paths.extend(self.approvals_file.clone());
        paths.extend(self.audit_log.clone());
        for project in &self.projects {
            paths.push(project.layer.clone());
            paths.extend(project.files.iter().cloned());
        }
        paths.extend(self.policy_dirs.iter().cloned());
        paths
    }

    /// A pipeline for one session over this policy, asking `approver`, with hook identity
    /// `session_id` (a fresh turn id each time) and "session" answers kept in `approvals`.
    pub fn pipeline(
        &self,
        approver: Arc<dyn Approver>,
        session_id: String,
        approvals: SessionApprovals,
    ) -> Pipeline {
        Pipeline::new(Arc::clone(&self.policy), self.hooks.clone())
            .approval(self.approval)
            .approver(approver)
            .approvals_file(self.approvals_file.clone())
            .identity(HookIdentity {
                session_id,
                turn_id: uuid::Uuid::new_v4().to_string(),
                model: String::new(),
            })
            .session_approvals(approvals)
    }
}

/// The hooks files discovery finds from `cwd` for a one-off run of the hooks (`execgate
/// hooks permission-request`): the user's, and a project layer's only when trusted (the
/// ones skipped are named on stderr).
pub fn discovered_hooks_files(cwd: &Path, home: Option<&Path>) -> anyhow::Result<Vec<PathBuf>> {
    let trust = match home {
        Some(home) => {
            TrustStore::load(&TrustStore::location(home)).map_err(|e| anyhow::anyhow!("{e}"))?
        }
        None => TrustStore::default(),
    };
    let path = std::env::var_os("PATH");
    let wanted = Wanted {
        rules: false,
        hooks: true,
    };
    let found = layers::discover(cwd, home);
    let usable = trusted_layers(
        found,
        &trust,
        home,
        path.as_deref(),
        wanted,
        &mut Vec::new(),
    )?;
    Ok(layers::hooks_files(&usable))
}

/// Which kinds of file discovery looks for.
#[derive(Debug, Clone, Copy)]
struct Wanted {
    rules: bool,
    hooks: bool,
}

/// The layers of `found` that may load: the user's and the Codex home always, a project
/// layer only when trusted and unchanged (each one skipped is named on stderr, when it
/// holds something discovery looks for). Trusted project layers are added to `projects`.
fn trusted_layers(
    found: Vec<Layer>,
    trust: &TrustStore,
    home: Option<&Path>,
    path: Option<&std::ffi::OsStr>,
    wanted: Wanted,
    projects: &mut Vec<ProjectPolicy>,
) -> anyhow::Result<Vec<Layer>> {
    let mut usable = Vec::new();
    for layer in found {
        if layer.kind != LayerKind::Project {
            usable.push(layer);
            continue;
        }
        let dir = layer.dir.parent().unwrap_or(Path::new("/")).to_path_buf();
        let project = match ProjectPolicy::gather(&layer, home, path) {
            Ok(Some(project)) => project,
            Ok(None) => continue,
            // The user's own trusted layer must load or stop us; one nobody trusted is
            // skipped (sandboxed code could have made it unreadable on purpose).
            Err(e) if trust.get(&dir).is_some() => return Err(e.into()),
            Err(e) => {
                eprintln!(
                    "execgate: skipped the untrusted project policy {} ({}): run `execgate trust {}` to load it",
                    shown(layer.dir.as_os_str()),
                    display::text_string(e.to_string().as_bytes()),
                    shown(dir.as_os_str())
                );
                continue;
            }
        };
        let relevant = (wanted.rules && !layer.rules_files()?.is_empty())
            || (wanted.hooks && layer.hooks_file().is_some());
        match project.standing(trust) {
            Standing::Trusted => {
                projects.push(project);
                usable.push(layer);
            }
            Standing::Untrusted if relevant => eprintln!(
                "execgate: skipped the untrusted project policy {} ({}): run `execgate trust {}` to load it",
                shown(layer.dir.as_os_str()),
                display::text_string(project.file_list().as_bytes()),
                shown(dir.as_os_str())
            ),
            Standing::Changed if relevant => eprintln!(
                "execgate: skipped the project policy {} ({}): it changed since it was trusted; run `execgate trust {}` to load it as it is",
                shown(layer.dir.as_os_str()),
                display::text_string(project.file_list().as_bytes()),
                shown(dir.as_os_str())
            ),
            Standing::Untrusted | Standing::Changed => {}
        }
    }
    Ok(usable)
}

/// A path for a message: file names in a project layer are the sandbox's choice (it may
/// have planted the layer), so they are written as everything a person is shown is.
fn shown(path: &std::ffi::OsStr) -> String {
    display::text_string(path.as_encoded_bytes())
}

/// `$HOME`, when set and not empty.
pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_log_exists_before_the_sandbox_and_is_protected() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("a.rules");
        std::fs::write(&rules, "").unwrap();
        let log = dir.path().join("logs/audit.jsonl");
        let loaded = Loaded::load(
            std::slice::from_ref(&rules),
            &[],
            ApprovalMode::OnRequest,
            dir.path(),
            None,
            None,
        )
        .unwrap();
        let path_dirs = loaded.policy_dirs.clone();
        assert_eq!(
            loaded.protected_paths(),
            [vec![rules.clone()], path_dirs.clone()].concat()
        );
        // A folder that does not exist: refused, naming the file.
        let err = loaded.audit_log(Some(log.clone())).err().unwrap();
        assert_eq!(
            format!("{err:#}"),
            format!(
                "cannot open the audit log {}: No such file or directory (os error 2)",
                log.display()
            )
        );
        std::fs::create_dir(dir.path().join("logs")).unwrap();
        let loaded = Loaded::load(
            std::slice::from_ref(&rules),
            &[],
            ApprovalMode::OnRequest,
            dir.path(),
            None,
            None,
        )
        .unwrap()
        .audit_log(Some(log.clone()))
        .unwrap();
        assert_eq!(std::fs::read(&log).unwrap(), b"");
        assert_eq!(
            loaded.protected_paths(),
            [vec![rules, log], path_dirs].concat()
        );
    }
}
