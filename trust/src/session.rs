//! Trusted repositories for one session: which paths the sandbox must keep read-only so
//! they stay what was trusted, and, once it is prepared, which of them may be escalated in.
//!
//! A trusted repository whose covered files lie outside every writable root needs nothing:
//! the sandbox cannot change it. One inside a writable root counts only when its digest
//! still matches what `execgate trust` recorded and every path it covers is read-only in
//! this sandbox from the session's start (bubblewrap binds them read-only; Landlock cannot,
//! so there such a repository never counts).

use crate::repository::RepositoryFiles;
use crate::store::{RecordedRepository, TrustStore};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The trusted repositories, as they are at session start.
#[derive(Debug, Clone, Default)]
pub struct TrustedRepositories {
    repositories: Vec<(RecordedRepository, Result<RepositoryFiles, String>)>,
}

/// What the session may escalate in: for each trusted repository (git dir, common dir)
/// that lies in a writable root, `Ok` when it still counts, else why not.
#[derive(Debug, Clone, Default)]
pub struct Verified {
    repositories: HashMap<(PathBuf, PathBuf), Result<(), String>>,
}

impl TrustedRepositories {
    /// Gathers every repository `store` trusts as it is now (`home` for `~/` in includes).
    pub fn gather(store: &TrustStore, home: Option<&Path>) -> Self {
        let repositories = store
            .entries()
            .iter()
            .filter_map(|entry| entry.repository.clone())
            .map(|recorded| {
                let now = RepositoryFiles::gather(
                    &recorded.git_dir,
                    &recorded.common_dir,
                    &recorded.top,
                    home,
                )
                .map_err(|e| e.to_string());
                (recorded, now)
            })
            .collect();
        Self { repositories }
    }

    /// Every path the sandbox must keep read-only (those outside its writable roots need
    /// no protecting; the sandbox leaves them out).
    pub fn watched(&self) -> Vec<PathBuf> {
        self.repositories
            .iter()
            .filter_map(|(_, now)| now.as_ref().ok())
            .flat_map(|files| files.watched.iter().cloned())
            .collect()
    }

    /// Which repositories count in a sandbox whose writable roots contain the paths
    /// `in_root` accepts, and which can write the paths `writable` accepts.
    pub fn verify(
        &self,
        in_root: &dyn Fn(&Path) -> bool,
        writable: &dyn Fn(&Path) -> bool,
    ) -> Verified {
        let mut repositories = HashMap::new();
        for (recorded, now) in &self.repositories {
            let key = (recorded.git_dir.clone(), recorded.common_dir.clone());
            let name = recorded.git_dir.display();
            let again = format!(
                "run `execgate trust {}` again outside the sandbox to trust it as it is",
                recorded.top.display()
            );
            let verdict = match now {
                Err(e) => Err(format!(
                    "the trusted repository {name} cannot be read ({e})"
                )),
                Ok(files) if !files.watched.iter().any(|p| in_root(p)) => Ok(()),
                Ok(files) if files.digest != recorded.digest => Err(format!(
                    "the repository {name} changed since it was trusted; {again}"
                )),
                Ok(files) => match files.missing.iter().find(|p| in_root(p)) {
                    Some(missing) => Err(format!(
                        "the repository {name} is trusted, but its config includes {}, which does \
                         not exist and which the sandbox could create",
                        missing.display()
                    )),
                    None => match files.watched.iter().find(|p| writable(p)) {
                        Some(open) => Err(format!(
                            "the repository {name} is trusted, but this sandbox cannot keep {} \
                             read-only (use the bubblewrap backend)",
                            open.display()
                        )),
                        None => Ok(()),
                    },
                },
            };
            repositories.insert(key, verdict);
        }
        Verified { repositories }
    }
}

impl Verified {
    /// For the repository with `git_dir` and `common_dir`: `None` when the user never
    /// trusted it, `Some(Ok)` when it counts in this session, `Some(Err(why))` when not.
    pub fn check(&self, git_dir: &Path, common_dir: &Path) -> Option<&Result<(), String>> {
        self.repositories
            .get(&(git_dir.to_path_buf(), common_dir.to_path_buf()))
    }
}
