//! Resolving a [`SandboxPolicy`] into canonical writable roots and protected paths.
//!
//! Both backends consume the result, so they agree on what is writable and what stays
//! read-only. Paths are canonicalized (symlinks resolved) because bind mounts and Landlock
//! rules both act on the object a path names, not on the spelling.
//!
//! What is protected (design invariant 4), when it exists at session start and lies in a
//! writable root: every entry named in [`PROTECTED_NAMES`] anywhere in a writable root
//! (the temporary directory only at its top: it is shared scratch space, and walking it
//! would make every session depend on what others left there), the git dirs `.git` files
//! name, every `.execgate` above a writable root, the `.git` of the repository that
//! contains a writable root, the start-up and config files of a home that lies in a
//! writable root ([`HOME_FILES`], created when missing so they cannot be planted), and
//! whatever the caller adds (loaded policy files, trusted repositories).
//!
//! A read-only bind is only as good as its path: sandboxed code could rename a folder
//! above a protected path and put its own in its place. So every folder between a writable
//! root and a protected path is made a mount point of its own ([`Resolved::pinned`]),
//! which cannot be renamed or removed.

use crate::{SandboxError, SandboxMode, SandboxPolicy};
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// Names kept read-only wherever they appear in a writable root (design invariant 4): git
/// metadata, execgate's policy, and agents' configuration (Codex, Claude Code, `.agents`).
pub const PROTECTED_NAMES: [&str; 5] = [".git", ".execgate", ".codex", ".claude", ".agents"];

/// How a file of the home is protected when the home lies in a writable root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HomeEntry {
    /// A file that is created empty when missing (an empty one changes nothing).
    File,
    /// A folder that is created when missing (mode 0700).
    Dir,
    /// Protected when it exists; never created.
    IfExists,
}

/// What escalated programs and agents read from a home, relative to it: kept read-only in
/// the sandbox when a writable root contains the home. `~/.bash_profile` is handled apart
/// (creating it can change which file a login bash reads).
pub const HOME_FILES: [(&str, HomeEntry); 20] = [
    (".gitconfig", HomeEntry::File),
    (".config/git", HomeEntry::Dir),
    (".ssh", HomeEntry::Dir),
    (".profile", HomeEntry::File),
    (".bashrc", HomeEntry::File),
    (".bash_logout", HomeEntry::File),
    (".bash_login", HomeEntry::IfExists),
    (".zshenv", HomeEntry::File),
    (".zprofile", HomeEntry::File),
    (".zshrc", HomeEntry::File),
    (".zlogin", HomeEntry::File),
    (".zlogout", HomeEntry::File),
    (".config/fish", HomeEntry::Dir),
    (".config/execgate", HomeEntry::Dir),
    (".codex", HomeEntry::Dir),
    (".claude", HomeEntry::Dir),
    (".agents", HomeEntry::IfExists),
    (".npmrc", HomeEntry::IfExists),
    (".cargo/config.toml", HomeEntry::IfExists),
    (".config/systemd", HomeEntry::IfExists),
];

/// The most folders one writable root's walk for protected names reads before it stops
/// (the rest of that root is then not searched; [`Resolved::scan_cut`] says so).
const SCAN_BUDGET: usize = 50_000;

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
    /// Folders strictly between a writable root and a protected path (none inside a
    /// protected path), shortest first: each is bound onto itself so it cannot be renamed.
    pub pinned: Vec<PathBuf>,
    /// Writable roots whose walk for protected names stopped at [`SCAN_BUDGET`].
    pub scan_cut: Vec<PathBuf>,
    /// Whether IP networking is allowed.
    pub network: bool,
    /// Network through the gate (see [`crate::SandboxPolicy::gated`]).
    pub gated: Option<crate::GatedNetwork>,
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
    let mut tmp_root = None;
    if policy.mode == SandboxMode::WorkspaceWrite {
        roots.push(cwd.clone());
        let extra = policy
            .writable_roots
            .iter()
            .map(|r| (r, false))
            .chain(policy.tmpdir.iter().map(|r| (r, true)));
        for (root, is_tmp) in extra {
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
            if is_tmp {
                tmp_root = Some(canonical.clone());
            }
            roots.push(canonical);
        }
    }
    let writable = outermost(roots.clone());

    let mut candidates: Vec<PathBuf> = Vec::new();
    for root in &roots {
        for name in PROTECTED_NAMES {
            candidates.push(root.join(name));
        }
        candidates.extend(git_dirs_named_by_dot_git_file(root));
        candidates.extend(above(root));
    }
    let mut scan_cut = Vec::new();
    // The temporary directory is walked only where another root holds it (or lies in it).
    let walked: Vec<PathBuf> = roots
        .iter()
        .filter(|r| tmp_root.as_ref() != Some(*r))
        .cloned()
        .collect();
    for root in outermost(walked) {
        if !scan(&root, &mut candidates) {
            scan_cut.push(root);
        }
    }
    if let Some(home) = &policy.home {
        if let Ok(home) = fs::canonicalize(home) {
            if writable.iter().any(|root| home.starts_with(root)) {
                candidates.extend(home_paths(&home)?);
            }
        }
    }
    candidates.extend(policy.protected_paths.iter().cloned());

    let mut protected = Vec::new();
    for candidate in candidates {
        let Some(path) = canonical_if_exists(&candidate)? else {
            continue;
        };
        let overlaps = writable
            .iter()
            .any(|root| path.starts_with(root) || root.starts_with(&path));
        if overlaps {
            protected.push(path);
        }
    }
    let protected = sorted_unique(protected);
    let pinned = pinned(&writable, &protected);

    Ok(Resolved {
        mode: policy.mode,
        cwd,
        writable,
        protected,
        pinned,
        scan_cut,
        network: policy.network,
        gated: if policy.network {
            None
        } else {
            policy.gated.clone()
        },
    })
}

/// What lies above a writable root and can steer what runs in it: every `.execgate` on
/// the way up, and the `.git` of the repository that contains the root (the first one up,
/// with the git dirs a `.git` file names). Only those inside another writable root end up
/// protected; the others are out of the sandbox's reach already.
fn above(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut repository_found = false;
    for dir in root.ancestors().skip(1) {
        out.push(dir.join(".execgate"));
        if !repository_found && dir.join(".git").symlink_metadata().is_ok() {
            repository_found = true;
            out.push(dir.join(".git"));
            out.extend(git_dirs_named_by_dot_git_file(dir));
        }
    }
    out
}

/// Adds every entry named in [`PROTECTED_NAMES`] under `root` to `out` (and the git dirs
/// `.git` files name), without following symlinks or entering what it finds. False when it
/// stopped at [`SCAN_BUDGET`] folders.
fn scan(root: &Path, out: &mut Vec<PathBuf>) -> bool {
    let mut budget = SCAN_BUDGET;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if budget == 0 {
            return false;
        }
        budget -= 1;
        // A folder that cannot be read cannot be searched; neither can the sandbox's code
        // list it, but it may still write in it: nothing better can be done here.
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if PROTECTED_NAMES.iter().any(|n| name == *n) {
                let path = entry.path();
                if name == ".git" && kind.is_file() {
                    out.extend(git_dirs_named_by_dot_git_file(&dir));
                }
                out.push(path);
            } else if kind.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    true
}

/// The home's [`HOME_FILES`] (creating those that are created when missing) and its login
/// file: `~/.bash_profile`, created empty only when a login bash reads nothing today.
fn home_paths(home: &Path) -> Result<Vec<PathBuf>, SandboxError> {
    let create = |path: &Path, entry: HomeEntry| -> io::Result<()> {
        if path.symlink_metadata().is_ok() {
            return Ok(());
        }
        if let Some(parent) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)?;
        }
        match entry {
            HomeEntry::File => fs::OpenOptions::new()
                .create_new(true)
                .write(true)
                .open(path)
                .map(drop),
            HomeEntry::Dir => fs::DirBuilder::new().mode(0o700).create(path),
            HomeEntry::IfExists => Ok(()),
        }
    };
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SandboxError::HomeFile { path, source }
    };
    let bash_profile = home.join(".bash_profile");
    if bash_profile.symlink_metadata().is_err() {
        let read_instead = [".bash_login", ".profile"]
            .into_iter()
            .find(|name| home.join(name).symlink_metadata().is_ok());
        if let Some(name) = read_instead {
            return Err(SandboxError::HomeLoginFile {
                home: home.to_path_buf(),
                read_instead: name,
            });
        }
        create(&bash_profile, HomeEntry::File).map_err(failed(&bash_profile))?;
    }
    let mut out = vec![bash_profile];
    for (rel, entry) in HOME_FILES {
        let path = home.join(rel);
        create(&path, entry).map_err(failed(&path))?;
        out.push(path);
    }
    Ok(out)
}

/// The folders strictly between a writable root and each protected path inside it, that
/// are not themselves inside a protected path; shortest first.
fn pinned(roots: &[PathBuf], protected: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for path in protected {
        let Some(root) = roots.iter().find(|r| path.starts_with(r) && *r != path) else {
            continue;
        };
        for dir in path.ancestors().skip(1) {
            if dir == root.as_path() || !dir.starts_with(root) {
                break;
            }
            if !protected.iter().any(|p| dir.starts_with(p)) {
                out.push(dir.to_path_buf());
            }
        }
    }
    sorted_unique(out)
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
