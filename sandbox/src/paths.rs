//! Resolving a [`SandboxPolicy`] into canonical writable roots and protected paths.
//!
//! Both backends consume the result, so they agree on what is writable and what stays
//! read-only. Paths are canonicalized (symlinks resolved) because bind mounts and Landlock
//! rules both act on the object a path names, not on the spelling.

use crate::{SandboxError, SandboxMode, SandboxPolicy};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Directory names kept read-only at the top of every writable root (design invariant 4).
pub const PROTECTED_NAMES: [&str; 3] = [".git", ".execgate", ".codex"];

/// A policy with every path resolved.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// The filesystem mode.
    pub mode: SandboxMode,
    /// Canonical working directory.
    pub cwd: PathBuf,
    /// Canonical writable roots, none nested in another, shortest first. Empty unless
    /// `workspace-write`.
    pub writable: Vec<PathBuf>,
    /// Canonical, existing protected paths that overlap a writable root, shortest first.
    pub protected: Vec<PathBuf>,
    /// Whether IP networking is allowed.
    pub network: bool,
}

/// Resolves the policy's paths; fails when the working directory or a writable root does
/// not exist.
pub(crate) fn resolve(policy: &SandboxPolicy) -> Result<Resolved, SandboxError> {
    let cwd = fs::canonicalize(&policy.cwd).map_err(|source| SandboxError::Cwd {
        path: policy.cwd.clone(),
        source,
    })?;
    if !cwd.is_dir() {
        return Err(SandboxError::Cwd {
            path: policy.cwd.clone(),
            source: io::Error::from(io::ErrorKind::NotADirectory),
        });
    }

    let mut roots = Vec::new();
    if policy.mode == SandboxMode::WorkspaceWrite {
        roots.push(cwd.clone());
        let extra = policy.writable_roots.iter().chain(policy.tmpdir.iter());
        for root in extra {
            let canonical =
                fs::canonicalize(root).map_err(|source| SandboxError::WritableRoot {
                    path: root.clone(),
                    source,
                })?;
            if !canonical.is_dir() {
                return Err(SandboxError::WritableRoot {
                    path: root.clone(),
                    source: io::Error::from(io::ErrorKind::NotADirectory),
                });
            }
            roots.push(canonical);
        }
    }

    let mut candidates: Vec<PathBuf> = Vec::new();
    for root in &roots {
        for name in PROTECTED_NAMES {
            candidates.push(root.join(name));
        }
        candidates.extend(git_dirs_named_by_dot_git_file(root));
    }
    candidates.extend(policy.protected_paths.iter().cloned());

    let mut protected = Vec::new();
    for candidate in candidates {
        let Some(path) = canonical_if_exists(&candidate)? else {
            continue;
        };
        let overlaps = roots
            .iter()
            .any(|root| path.starts_with(root) || root.starts_with(&path));
        if overlaps {
            protected.push(path);
        }
    }

    Ok(Resolved {
        mode: policy.mode,
        cwd,
        writable: outermost(roots),
        protected: sorted_unique(protected),
        network: policy.network,
    })
}

/// Canonicalizes `path`, or `None` when it (or a symlink target) does not exist.
fn canonical_if_exists(path: &Path) -> Result<Option<PathBuf>, SandboxError> {
    match fs::canonicalize(path) {
        Ok(p) => Ok(Some(p)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(_) if path.symlink_metadata().is_err() => Ok(None),
        Err(source) => Err(SandboxError::Io {
            what: "cannot resolve a protected path",
            source: io::Error::new(source.kind(), format!("{}: {source}", path.display())),
        }),
    }
}

/// When `root/.git` is a file (`gitdir: PATH`, as in worktrees and submodules), the git
/// dir it names and that dir's `commondir` (where a worktree's hooks live).
fn git_dirs_named_by_dot_git_file(root: &Path) -> Vec<PathBuf> {
    let dot_git = root.join(".git");
    let mut out = Vec::new();
    if !dot_git.is_file() {
        return out;
    }
    let Some(gitdir) = read_pointer(&dot_git, "gitdir:").map(|p| root.join(p)) else {
        return out;
    };
    if let Some(common) = read_pointer(&gitdir.join("commondir"), "") {
        out.push(gitdir.join(common));
    }
    out.push(gitdir);
    out
}

/// Reads a small git pointer file and returns the path after `prefix` on its first line.
fn read_pointer(file: &Path, prefix: &str) -> Option<PathBuf> {
    let text = fs::read_to_string(file).ok()?;
    let first = text.lines().next()?;
    let rest = first.strip_prefix(prefix)?.trim();
    (!rest.is_empty()).then(|| PathBuf::from(rest))
}

/// Drops roots nested inside another root and sorts shortest first.
fn outermost(roots: Vec<PathBuf>) -> Vec<PathBuf> {
    let roots = sorted_unique(roots);
    let mut kept: Vec<PathBuf> = Vec::new();
    for root in roots {
        if !kept.iter().any(|k| root.starts_with(k)) {
            kept.push(root);
        }
    }
    kept
}

/// Sorts by depth then name (so a bind of a parent precedes its children) and dedups.
fn sorted_unique(mut paths: Vec<PathBuf>) -> Vec<PathBuf> {
    paths.sort_by(|a, b| {
        (a.components().count(), a.as_os_str()).cmp(&(b.components().count(), b.as_os_str()))
    });
    paths.dedup();
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_roots_collapse_into_the_outer_one() {
        let roots = vec![
            PathBuf::from("/a/b"),
            PathBuf::from("/a"),
            PathBuf::from("/c"),
            PathBuf::from("/a"),
        ];
        assert_eq!(
            outermost(roots),
            vec![PathBuf::from("/a"), PathBuf::from("/c")]
        );
    }

    #[test]
    fn dot_git_file_names_its_gitdir_and_commondir() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("wt");
        let gitdir = dir.path().join("main.git/worktrees/wt");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&gitdir).unwrap();
        fs::write(root.join(".git"), format!("gitdir: {}\n", gitdir.display())).unwrap();
        fs::write(gitdir.join("commondir"), "../..\n").unwrap();
        assert_eq!(
            git_dirs_named_by_dot_git_file(&root),
            vec![gitdir.join("../.."), gitdir.clone()]
        );
    }
}
