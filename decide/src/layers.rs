//! Policy layers: the folders rules and hooks are loaded from, what each one holds, and
//! whether a project's layer may load.
//!
//! One walk serves rules and hooks alike. The layers that apply in a working directory
//! are, in load order: the user's `~/.config/execgate`, then `.execgate` in every folder
//! from the outermost ancestor of the working directory down to the directory itself (the
//! most specific comes last). A Codex home (`$CODEX_HOME`) is a layer of its own that holds
//! only rules. Each layer may hold `rules/*.rules` (loaded in name order) and `hooks.json`.
//!
//! A project layer loads only when the user trusted it (design invariant 4), direnv-style:
//! `execgate trust DIR` records the digest of what [`ProjectPolicy`] covers (the layer's
//! rules files, its hooks.json, and every file its hooks' commands name), and a session
//! loads the layer only while that digest still matches. A layer planted by sandboxed code,
//! in this session or an earlier one, or shipped in a cloned repository, never loads by
//! itself.

use execgate_hooks::{named_files, HooksConfig};
use execgate_trust::{Fingerprint, TrustStore};
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

/// Where a layer comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// `~/.config/execgate`.
    User,
    /// `.execgate` in the working directory or one of its ancestors.
    Project,
    /// A Codex home folder (rules only).
    CodexHome,
}

/// One folder policy is loaded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// Where it comes from.
    pub kind: LayerKind,
    /// The folder (`~/.config/execgate`, `<dir>/.execgate`, or the Codex home).
    pub dir: PathBuf,
}

/// A layer's rules folder exists but cannot be listed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {}: {error}", dir.display())]
pub struct LayerError {
    /// The folder.
    pub dir: PathBuf,
    /// Why (part of the message, so the error stays one line).
    pub error: io::Error,
}

impl Layer {
    /// The layer of a Codex home folder.
    pub fn codex_home(dir: impl Into<PathBuf>) -> Self {
        Self {
            kind: LayerKind::CodexHome,
            dir: dir.into(),
        }
    }

    /// The `.rules` files in the layer's `rules/` folder, in name order; none when the
    /// folder does not exist.
    pub fn rules_files(&self) -> Result<Vec<PathBuf>, LayerError> {
        let dir = self.dir.join("rules");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(Vec::new())
            }
            Err(error) => return Err(LayerError { dir, error }),
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "rules") && p.is_file())
            .collect();
        files.sort();
        Ok(files)
    }

    /// The layer's `hooks.json`, when it exists (a Codex home has none for execgate).
    pub fn hooks_file(&self) -> Option<PathBuf> {
        if self.kind == LayerKind::CodexHome {
            return None;
        }
        let file = self.dir.join("hooks.json");
        file.is_file().then_some(file)
    }
}

/// What trusting a project layer covers, as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectPolicy {
    /// The project folder (the one holding `.execgate`).
    pub dir: PathBuf,
    /// The layer's folder, `DIR/.execgate`.
    pub layer: PathBuf,
    /// The files covered: rules files in load order, `hooks.json`, then the files in the
    /// project folder that its hook commands name (looked up from there), each once.
    pub files: Vec<PathBuf>,
    /// Their digest.
    pub digest: String,
}

/// Whether a project layer may load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Trusted, and unchanged since.
    Trusted,
    /// Never trusted (or the trust was revoked).
    Untrusted,
    /// Trusted, but it changed since.
    Changed,
}

impl ProjectPolicy {
    /// What `layer` (a project layer) holds now; `None` when it holds no rules and no
    /// hooks. Its hooks' named files are looked up as a hook would see them run from the
    /// project folder, with `home` and `path` (`PATH`); a hooks.json that does not parse
    /// names none (its bytes still count).
    pub fn gather(
        layer: &Layer,
        home: Option<&Path>,
        path: Option<&OsStr>,
    ) -> Result<Option<Self>, LayerError> {
        let dir = layer.dir.parent().unwrap_or(Path::new("/")).to_path_buf();
        let mut files = layer.rules_files()?;
        let hooks = layer.hooks_file();
        if files.is_empty() && hooks.is_none() {
            return Ok(None);
        }
        if let Some(hooks) = hooks {
            files.push(hooks.clone());
            if let Ok((config, _)) = HooksConfig::load(std::slice::from_ref(&hooks)) {
                for handler in config.handlers() {
                    if let Ok(named) = named_files(&handler.command, &dir, home, path) {
                        // The project's own scripts; programs elsewhere (`sh`, `python3`)
                        // are the system's, and hooks never run one the sandbox can write.
                        for file in named.files.into_iter().filter(|f| f.starts_with(&dir)) {
                            if !files.contains(&file) {
                                files.push(file);
                            }
                        }
                    }
                }
            }
        }
        let mut fingerprint = Fingerprint::new();
        fingerprint.label("project policy");
        fingerprint.label(&layer.dir.to_string_lossy());
        for file in &files {
            fingerprint.file(file).map_err(|error| LayerError {
                dir: layer.dir.clone(),
                error,
            })?;
        }
        Ok(Some(Self {
            dir,
            layer: layer.dir.clone(),
            files,
            digest: fingerprint.finish(),
        }))
    }

    /// How it stands against what the user trusted.
    pub fn standing(&self, store: &TrustStore) -> Standing {
        match store.get(&self.dir).and_then(|e| e.policy.as_ref()) {
            Some(recorded) if recorded.digest == self.digest => Standing::Trusted,
            Some(_) => Standing::Changed,
            None => Standing::Untrusted,
        }
    }

    /// The covered files, relative to the layer's folder where they lie in it (for
    /// messages): `rules/a.rules, hooks.json, guard.sh`.
    pub fn file_list(&self) -> String {
        self.files
            .iter()
            .map(|f| {
                f.strip_prefix(&self.layer)
                    .unwrap_or(f)
                    .display()
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The user layer (when `home` is known) and the project layers of `cwd`, in load order.
/// A relative `cwd` is taken from the process's current directory. Layers are listed
/// whether or not their folder exists.
pub fn discover(cwd: &Path, home: Option<&Path>) -> Vec<Layer> {
    let mut layers = Vec::new();
    if let Some(home) = home {
        layers.push(Layer {
            kind: LayerKind::User,
            dir: home.join(".config").join("execgate"),
        });
    }
    let cwd = std::path::absolute(cwd).unwrap_or_else(|_| cwd.to_path_buf());
    let mut ancestors: Vec<&Path> = cwd.ancestors().collect();
    ancestors.reverse();
    for dir in ancestors {
        let layer = Layer {
            kind: LayerKind::Project,
            dir: dir.join(".execgate"),
        };
        if !layers.iter().any(|l| l.dir == layer.dir) {
            layers.push(layer);
        }
    }
    layers
}

/// Every rules file of `layers`, in load order.
pub fn rules_files(layers: &[Layer]) -> Result<Vec<PathBuf>, LayerError> {
    let mut files = Vec::new();
    for layer in layers {
        files.extend(layer.rules_files()?);
    }
    Ok(files)
}

/// Every hooks file of `layers`, in run order.
pub fn hooks_files(layers: &[Layer]) -> Vec<PathBuf> {
    layers.iter().filter_map(Layer::hooks_file).collect()
}

/// The user's approvals file: "always" answers append to it; the user layer loads it with
/// the other user rules.
pub fn user_rules_file(home: Option<&Path>) -> Option<PathBuf> {
    home.map(|h| h.join(".config/execgate/rules/approved.rules"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(root: &Path, files: &[PathBuf]) -> Vec<String> {
        files
            .iter()
            .map(|p| p.strip_prefix(root).unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn rules_are_discovered_user_first_then_outermost_project() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let project = tmp.path().join("work/project");
        let sub = project.join("sub");
        for dir in [
            home.join(".config/execgate/rules"),
            tmp.path().join("work/.execgate/rules"),
            sub.join(".execgate/rules"),
        ] {
            std::fs::create_dir_all(&dir).unwrap();
        }
        std::fs::write(home.join(".config/execgate/rules/u.rules"), "").unwrap();
        std::fs::write(tmp.path().join("work/.execgate/rules/b.rules"), "").unwrap();
        std::fs::write(tmp.path().join("work/.execgate/rules/a.rules"), "").unwrap();
        std::fs::write(tmp.path().join("work/.execgate/rules/notes.txt"), "").unwrap();
        std::fs::write(sub.join(".execgate/rules/s.rules"), "").unwrap();
        let found = rules_files(&discover(&sub, Some(&home))).unwrap();
        assert_eq!(
            names(tmp.path(), &found),
            [
                "home/.config/execgate/rules/u.rules",
                "work/.execgate/rules/a.rules",
                "work/.execgate/rules/b.rules",
                "work/project/sub/.execgate/rules/s.rules",
            ]
        );
    }

    // Moved from hooks/tests/loading.rs, assertions unchanged, when discovery moved here.
    #[test]
    fn discovery_lists_user_file_then_project_files_outermost_first() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let home = root.join("home");
        let project = root.join("project");
        let sub = project.join("sub").join("dir");
        std::fs::create_dir_all(home.join(".config/execgate")).unwrap();
        std::fs::create_dir_all(project.join(".execgate")).unwrap();
        std::fs::create_dir_all(sub.join(".execgate")).unwrap();
        std::fs::create_dir_all(root.join("project/sub/.execgate")).unwrap(); // no file: skipped
        for file in [
            home.join(".config/execgate/hooks.json"),
            project.join(".execgate/hooks.json"),
            sub.join(".execgate/hooks.json"),
        ] {
            std::fs::write(file, "{}").unwrap();
        }
        assert_eq!(
            hooks_files(&discover(&sub, Some(&home))),
            [
                home.join(".config/execgate/hooks.json"),
                project.join(".execgate/hooks.json"),
                sub.join(".execgate/hooks.json"),
            ]
        );
        assert_eq!(
            hooks_files(&discover(&sub, None)),
            [
                project.join(".execgate/hooks.json"),
                sub.join(".execgate/hooks.json")
            ]
        );
    }

    #[test]
    fn a_codex_home_holds_rules_only() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("rules")).unwrap();
        std::fs::write(tmp.path().join("rules/default.rules"), "").unwrap();
        std::fs::write(tmp.path().join("hooks.json"), "{}").unwrap();
        let layer = Layer::codex_home(tmp.path());
        assert_eq!(
            names(tmp.path(), &layer.rules_files().unwrap()),
            ["rules/default.rules"]
        );
        assert_eq!(layer.hooks_file(), None);
        assert_eq!(
            Layer::codex_home(tmp.path().join("none"))
                .rules_files()
                .unwrap(),
            Vec::<PathBuf>::new()
        );
    }
}
