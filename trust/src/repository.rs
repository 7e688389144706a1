//! What trusting a git repository covers: the files whose contents decide what git runs in
//! it. Its config (`config`, `config.worktree`), every file those include, its hooks
//! (`core.hooksPath` or the common dir's `hooks/`), and the same for each submodule git dir
//! under `modules/`. Objects, refs, the index and logs are data git never runs, and change
//! with every commit, so they are not covered.

use crate::config;
use crate::digest::Fingerprint;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// How deep `include.path` chains are followed (git stops at 10 too).
const MAX_INCLUDE_DEPTH: usize = 10;
/// The most files a hooks folder or `modules/` may hold before trusting it is refused.
const MAX_FILES: usize = 2000;

/// A repository's covered files, as they are now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryFiles {
    /// The git dir.
    pub git_dir: PathBuf,
    /// The common dir.
    pub common_dir: PathBuf,
    /// The digest of everything covered (see [`RepositoryFiles::watched`]).
    pub digest: String,
    /// Every path whose contents the digest covers or which must not change while the
    /// repository is trusted: the git dir, the common dir, the config files and what they
    /// include (also those that do not exist: git would read them once they do), and the
    /// hooks folders. A session keeps all of them read-only.
    pub watched: Vec<PathBuf>,
    /// Included files that do not exist (also in `watched`).
    pub missing: Vec<PathBuf>,
}

/// Why a repository's files could not be gathered.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// A file could not be read.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A config file is not one git would read.
    #[error("{}: {error}", file.display())]
    Config {
        /// The file.
        file: PathBuf,
        /// Where and why.
        error: config::ConfigError,
    },
    /// An include path execgate cannot resolve (`%(prefix)/...`, or `~` without a home).
    #[error("{}: cannot tell which file the include {path:?} names", file.display())]
    Unresolved {
        /// The config file.
        file: PathBuf,
        /// The include's value.
        path: String,
    },
    /// Too many files to cover.
    #[error("{} holds more than {MAX_FILES} files", dir.display())]
    TooMany {
        /// The folder.
        dir: PathBuf,
    },
}

impl RepositoryFiles {
    /// Gathers the covered files of the repository with git dir `git_dir`, common dir
    /// `common_dir` and work tree top `top` (where relative hook paths start), with `home`
    /// for `~/` in include paths.
    pub fn gather(
        git_dir: &Path,
        common_dir: &Path,
        top: &Path,
        home: Option<&Path>,
    ) -> Result<Self, RepositoryError> {
        let mut gathering = Gathering {
            home,
            fingerprint: Fingerprint::new(),
            watched: vec![git_dir.to_path_buf(), common_dir.to_path_buf()],
            missing: Vec::new(),
            seen: Vec::new(),
        };
        gathering.fingerprint.label("repository");
        gathering.fingerprint.label(&git_dir.to_string_lossy());
        gathering.fingerprint.label(&common_dir.to_string_lossy());
        let mut hooks_path = None;
        let mut configs = vec![
            common_dir.join("config"),
            common_dir.join("config.worktree"),
        ];
        if git_dir != common_dir {
            configs.push(git_dir.join("config.worktree"));
        }
        for file in configs {
            if let Some(found) = gathering.config(&file, 0)? {
                hooks_path = found.or(hooks_path);
            }
        }
        let hooks = match hooks_path {
            Some(value) => gathering.expand(&value, top, &common_dir.join("config"))?,
            None => common_dir.join("hooks"),
        };
        gathering.folder(&hooks)?;
        gathering.submodules(&common_dir.join("modules"))?;
        let Gathering {
            fingerprint,
            watched,
            missing,
            ..
        } = gathering;
        Ok(Self {
            git_dir: git_dir.to_path_buf(),
            common_dir: common_dir.to_path_buf(),
            digest: fingerprint.finish(),
            watched,
            missing,
        })
    }
}

struct Gathering<'a> {
    home: Option<&'a Path>,
    fingerprint: Fingerprint,
    watched: Vec<PathBuf>,
    missing: Vec<PathBuf>,
    seen: Vec<PathBuf>,
}

impl Gathering<'_> {
    /// Adds a config file and, recursively, what it includes. Returns `None` when the file
    /// does not exist, else its last `core.hooksPath` (or that of a file it includes).
    fn config(
        &mut self,
        file: &Path,
        depth: usize,
    ) -> Result<Option<Option<Vec<u8>>>, RepositoryError> {
        if self.seen.iter().any(|s| s == file) {
            return Ok(Some(None));
        }
        self.seen.push(file.to_path_buf());
        self.watched.push(file.to_path_buf());
        let text = match std::fs::read(file) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.fingerprint.missing(file);
                return Ok(None);
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot read {}: {e}", file.display()),
                )
                .into())
            }
        };
        self.fingerprint.file(file)?;
        let refs = config::refs(&text).map_err(|error| RepositoryError::Config {
            file: file.to_path_buf(),
            error,
        })?;
        let mut hooks_path = refs.hooks_path;
        let dir = file.parent().unwrap_or(Path::new("/"));
        for include in refs.includes {
            let target = self.expand(&include, dir, file)?;
            if depth + 1 >= MAX_INCLUDE_DEPTH {
                continue;
            }
            match self.config(&target, depth + 1)? {
                Some(found) => hooks_path = found.or(hooks_path),
                None => self.missing.push(target),
            }
        }
        Ok(Some(hooks_path))
    }

    /// An include or hooks path as git resolves it: `~/` from the home, relative paths
    /// from `base`; `:(optional)` dropped.
    fn expand(&self, value: &[u8], base: &Path, file: &Path) -> Result<PathBuf, RepositoryError> {
        let value = value.strip_prefix(b":(optional)").unwrap_or(value);
        let unresolved = || RepositoryError::Unresolved {
            file: file.to_path_buf(),
            path: String::from_utf8_lossy(value).into_owned(),
        };
        if value.is_empty() || value.starts_with(b"%(") {
            return Err(unresolved());
        }
        let path = if let Some(rest) = value.strip_prefix(b"~/") {
            let home = self.home.ok_or_else(unresolved)?;
            home.join(OsStr::from_bytes(rest))
        } else if value.starts_with(b"~") {
            return Err(unresolved());
        } else {
            base.join(OsStr::from_bytes(value))
        };
        Ok(physical(&path))
    }

    /// Adds every file under a hooks folder (none when it does not exist).
    fn folder(&mut self, dir: &Path) -> Result<(), RepositoryError> {
        self.watched.push(dir.to_path_buf());
        self.fingerprint.label("hooks");
        self.fingerprint.label(&dir.to_string_lossy());
        let mut files = Vec::new();
        walk_files(dir, &mut files)?;
        for file in files {
            self.fingerprint.file(&file)?;
        }
        Ok(())
    }

    /// Adds the config and hooks of every submodule git dir under `modules`.
    fn submodules(&mut self, modules: &Path) -> Result<(), RepositoryError> {
        let mut dirs = Vec::new();
        walk_dirs(modules, &mut dirs)?;
        for dir in dirs {
            if dir.join("HEAD").exists() {
                self.config(&dir.join("config"), 0)?;
                self.folder(&dir.join("hooks"))?;
            }
        }
        Ok(())
    }
}

/// `path` with symlinks resolved as far as it exists (the rest appended as written, `.`
/// and `..` applied), as the kernel would resolve it.
pub(crate) fn physical(path: &Path) -> PathBuf {
    if let Ok(canonical) = path.canonicalize() {
        return canonical;
    }
    let mut rest = Vec::new();
    let mut base = path;
    while let Some(parent) = base.parent() {
        rest.push(base.file_name().map(|n| n.to_os_string()));
        if let Ok(canonical) = parent.canonicalize() {
            let mut out = canonical;
            for part in rest.into_iter().rev() {
                match part {
                    Some(name) => out.push(name),
                    None => {
                        out.pop();
                    }
                }
            }
            return out;
        }
        base = parent;
    }
    path.to_path_buf()
}

/// Every file under `dir`, sorted, symlinks taken as files (git runs what they point to).
fn walk_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), RepositoryError> {
    let mut entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries.collect::<Result<Vec<_>, _>>()?,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(())
        }
        Err(e) => return Err(e.into()),
    };
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        if out.len() >= MAX_FILES {
            return Err(RepositoryError::TooMany {
                dir: dir.to_path_buf(),
            });
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// `dir` and every folder under it (symlinks not followed), sorted.
fn walk_dirs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), RepositoryError> {
    let mut entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries.collect::<Result<Vec<_>, _>>()?,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(())
        }
        Err(e) => return Err(e.into()),
    };
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        if out.len() >= MAX_FILES {
            return Err(RepositoryError::TooMany {
                dir: dir.to_path_buf(),
            });
        }
        if entry.file_type()?.is_dir() {
            let path = entry.path();
            out.push(path.clone());
            walk_dirs(&path, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) {
        let status = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("HOME", dir)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    }

    #[test]
    fn config_includes_and_hooks_are_covered_and_objects_are_not() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        git(&root, &["init", "-q", "r"]);
        let (r, gd) = (root.join("r"), root.join("r/.git"));
        let gather = || RepositoryFiles::gather(&gd, &gd, &r, Some(&root)).unwrap();
        let first = gather();
        assert_eq!(
            first.watched,
            [
                gd.clone(),
                gd.clone(),
                gd.join("config"),
                gd.join("config.worktree"),
                gd.join("hooks")
            ]
        );
        // Data git writes as it works changes nothing.
        git(
            &r,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@e",
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                "x",
            ],
        );
        assert_eq!(gather().digest, first.digest);
        // A hook does.
        std::fs::write(gd.join("hooks/pre-commit"), "#!/bin/sh\n").unwrap();
        let with_hook = gather();
        assert_ne!(with_hook.digest, first.digest);
        // An include names a file, existing or not; its contents count.
        let mut config = std::fs::read_to_string(gd.join("config")).unwrap();
        config.push_str("[include]\n\tpath = ../extra.cfg\n\tpath = ~/home.cfg\n");
        std::fs::write(gd.join("config"), config).unwrap();
        let included = gather();
        assert_eq!(
            included.missing,
            [r.join("extra.cfg"), root.join("home.cfg")]
        );
        assert!(included.watched.contains(&r.join("extra.cfg")));
        std::fs::write(r.join("extra.cfg"), "[core]\n\thooksPath = myhooks\n").unwrap();
        let redirected = gather();
        assert_ne!(redirected.digest, included.digest);
        assert_eq!(redirected.missing, [root.join("home.cfg")]);
        // ... which moved the hooks: the new folder is covered, relative to the top.
        assert!(redirected.watched.contains(&r.join("myhooks")));
        std::fs::create_dir(r.join("myhooks")).unwrap();
        std::fs::write(r.join("myhooks/post-checkout"), "x").unwrap();
        assert_ne!(gather().digest, redirected.digest);
    }

    #[test]
    fn a_config_git_would_refuse_or_an_unknown_include_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let gd = tmp.path().join("g");
        std::fs::create_dir(&gd).unwrap();
        std::fs::write(gd.join("config"), "[core\n").unwrap();
        let err = RepositoryFiles::gather(&gd, &gd, tmp.path(), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: line 1: bad section header",
                gd.join("config").display()
            )
        );
        std::fs::write(gd.join("config"), "[include]\npath = %(prefix)/etc/x\n").unwrap();
        let err = RepositoryFiles::gather(&gd, &gd, tmp.path(), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: cannot tell which file the include \"%(prefix)/etc/x\" names",
                gd.join("config").display()
            )
        );
    }
}
