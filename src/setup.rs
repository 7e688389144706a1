//! What `execgate run` and `execgate mcp` load before any session: the rules and hooks
//! (from the files given, or from the policy layers that apply in the working directory),
//! the audit log, the files the sandbox must keep read-only, and the pipeline built from
//! them.
//!
//! A bad file refuses to start, with its `file:line:col`.

use anyhow::Context;
use execgate_decide::{layers, ApprovalMode, Approver, HookIdentity, Pipeline, SessionApprovals};
use execgate_execpolicy::Policy;
use execgate_hooks::{HookRunner, HooksConfig, DEFAULT_PROCESS_LIMIT};
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
}

impl Loaded {
    /// Loads `rules` (or, when empty, the rules of the layers that apply in `cwd`) and
    /// `hooks` (likewise). Hook warnings go to stderr.
    pub fn load(
        rules: &[PathBuf],
        hooks: &[PathBuf],
        approval: ApprovalMode,
        cwd: &Path,
        home: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let discovered =
            (rules.is_empty() || hooks.is_empty()).then(|| layers::discover(cwd, home));
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
        Ok(Self {
            policy: Arc::new(policy),
            hooks: Arc::new(HookRunner::new(Arc::new(hooks), DEFAULT_PROCESS_LIMIT)),
            approval,
            rule_files,
            hook_files,
            approvals_file: layers::user_rules_file(home),
            audit_log: None,
        })
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
    /// approvals file and the audit log.
    pub fn protected_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self
            .rule_files
            .iter()
            .chain(&self.hook_files)
            .cloned()
            .collect();
        paths.extend(self.approvals_file.clone());
        paths.extend(self.audit_log.clone());
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
        )
        .unwrap();
        assert_eq!(loaded.protected_paths(), vec![rules.clone()]);
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
        )
        .unwrap()
        .audit_log(Some(log.clone()))
        .unwrap();
        assert_eq!(std::fs::read(&log).unwrap(), b"");
        assert_eq!(loaded.protected_paths(), vec![rules, log]);
    }
}
