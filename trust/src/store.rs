//! The user's trust file, `~/.config/execgate/trusted.json`: one entry per folder the user
//! ran `execgate trust` on, with the digest of its project policy and of its repository as
//! they were then.
//!
//! ```json
//! {
//!   "version": 1,
//!   "trusted": [
//!     {
//!       "dir": "/home/me/project",
//!       "trusted_at": 1767225600,
//!       "policy": {"digest": "sha256:…", "files": ["/home/me/project/.execgate/rules/a.rules"]},
//!       "repository": {"git_dir": "/home/me/project/.git", "common_dir": "/home/me/project/.git",
//!                      "top": "/home/me/project", "digest": "sha256:…",
//!                      "files": ["/home/me/project/.git/config"]}
//!     }
//!   ]
//! }
//! ```
//!
//! `files` is informative (what the digest covered, for `execgate trust --list`); the
//! digest decides. Changes take an exclusive lock (`trusted.json.lock`) around reading,
//! changing and replacing the file (written beside it, then renamed over it), so two
//! `execgate trust` at once both land and a reader never sees half a file. The folder lies
//! in `~/.config/execgate`, which sessions keep read-only: sandboxed code cannot trust
//! anything.

use serde::{Deserialize, Serialize};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The file format's version.
pub const VERSION: u32 = 1;

/// A trust file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// It could not be read, locked or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done (`cannot read`, ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// It is not a trust file this version of execgate reads.
    #[error("{} is not a trust file execgate can read ({why}); fix it, or remove it and trust your folders again", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A path that is not UTF-8 cannot be recorded.
    #[error("cannot record {}: execgate's trust file holds UTF-8 paths only", path.display())]
    NotUtf8 {
        /// The path.
        path: PathBuf,
    },
}

/// A digest and the files it covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// The digest (`sha256:…`).
    pub digest: String,
    /// The files it covered.
    pub files: Vec<PathBuf>,
}

/// A trusted repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRepository {
    /// Its git dir.
    pub git_dir: PathBuf,
    /// Its common dir.
    pub common_dir: PathBuf,
    /// The folder commands in it work from (where relative `core.hooksPath` starts).
    pub top: PathBuf,
    /// The digest of its config, included files and hooks.
    pub digest: String,
    /// The files that digest covered.
    pub files: Vec<PathBuf>,
}

/// One trusted folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trusted {
    /// The folder (canonical).
    pub dir: PathBuf,
    /// When it was trusted (seconds since the Unix epoch).
    pub trusted_at: u64,
    /// Its project policy (`DIR/.execgate`), if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Recorded>,
    /// Its git repository, if it was in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<RecordedRepository>,
}

#[derive(Debug, Serialize, Deserialize)]
struct FileFormat {
    version: u32,
    #[serde(default)]
    trusted: Vec<Trusted>,
}

/// What the user trusts, as read from the trust file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustStore {
    entries: Vec<Trusted>,
}

impl TrustStore {
    /// Where the trust file of the user with home `home` is.
    pub fn location(home: &Path) -> PathBuf {
        home.join(".config/execgate/trusted.json")
    }

    /// Reads the trust file at `path`; a file that does not exist trusts nothing.
    pub fn load(path: &Path) -> Result<Self, TrustError> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(TrustError::Io {
                    what: "cannot read",
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        Ok(Self {
            entries: parse(path, &text)?,
        })
    }

    /// Every trusted folder, in the order they were first trusted.
    pub fn entries(&self) -> &[Trusted] {
        &self.entries
    }

    /// The entry for `dir` (canonical), if it is trusted.
    pub fn get(&self, dir: &Path) -> Option<&Trusted> {
        self.entries.iter().find(|e| e.dir == dir)
    }

    /// Changes the trust file at `path` under its lock: reads it (none: empty), lets `change`
    /// edit the entries, writes the result back, and returns what `change` returned.
    pub fn update<R>(
        path: &Path,
        change: impl FnOnce(&mut Vec<Trusted>) -> R,
    ) -> Result<R, TrustError> {
        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| TrustError::Io { what, path, source }
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io("cannot create the folder of", path))?;
        let lock_path = path.with_extension("json.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("cannot open", &lock_path))?;
        lock.lock().map_err(io("cannot lock", &lock_path))?;
        let mut entries = Self::load(path)?.entries;
        let result = change(&mut entries);
        for entry in &entries {
            utf8(&entry.dir)?;
        }
        let mut text = serde_json::to_vec_pretty(&FileFormat {
            version: VERSION,
            trusted: entries,
        })
        .map_err(|e| TrustError::Format {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        text.push(b'\n');
        let temp = path.with_extension(format!("json.{}.tmp", std::process::id()));
        let written = std::fs::File::create(&temp)
            .and_then(|mut f| f.write_all(&text).and_then(|()| f.sync_all()));
        if let Err(source) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(TrustError::Io {
                what: "cannot write",
                path: temp,
                source,
            });
        }
        std::fs::rename(&temp, path).map_err(io("cannot replace", path))?;
        Ok(result)
    }
}

fn parse(path: &Path, text: &[u8]) -> Result<Vec<Trusted>, TrustError> {
    let format = |why: String| TrustError::Format {
        path: path.to_path_buf(),
        why,
    };
    let file: FileFormat = serde_json::from_slice(text).map_err(|e| format(e.to_string()))?;
    if file.version != VERSION {
        return Err(format(format!(
            "version {} (this execgate reads version {VERSION})",
            file.version
        )));
    }
    Ok(file.trusted)
}

fn utf8(path: &Path) -> Result<(), TrustError> {
    match path.to_str() {
        Some(_) => Ok(()),
        None => Err(TrustError::NotUtf8 {
            path: path.to_path_buf(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dir: &str, digest: &str) -> Trusted {
        Trusted {
            dir: PathBuf::from(dir),
            trusted_at: 7,
            policy: Some(Recorded {
                digest: digest.into(),
                files: vec![PathBuf::from(dir).join(".execgate/hooks.json")],
            }),
            repository: None,
        }
    }

    #[test]
    fn the_file_is_written_whole_and_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let path = TrustStore::location(tmp.path());
        assert_eq!(TrustStore::load(&path).unwrap(), TrustStore::default());
        TrustStore::update(&path, |entries| entries.push(entry("/p", "sha256:aa"))).unwrap();
        TrustStore::update(&path, |entries| entries.push(entry("/q", "sha256:bb"))).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\n  \"version\": 1,\n  \"trusted\": [\n    {\n      \"dir\": \"/p\",\n      \
             \"trusted_at\": 7,\n      \"policy\": {\n        \"digest\": \"sha256:aa\",\n        \
             \"files\": [\n          \"/p/.execgate/hooks.json\"\n        ]\n      }\n    },\n    \
             {\n      \"dir\": \"/q\",\n      \"trusted_at\": 7,\n      \"policy\": {\n        \
             \"digest\": \"sha256:bb\",\n        \"files\": [\n          \
             \"/q/.execgate/hooks.json\"\n        ]\n      }\n    }\n  ]\n}\n"
        );
        let store = TrustStore::load(&path).unwrap();
        assert_eq!(store.get(Path::new("/q")), Some(&entry("/q", "sha256:bb")));
        assert_eq!(store.get(Path::new("/r")), None);
        // Nothing is left beside it but the lock.
        let mut names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["trusted.json", "trusted.json.lock"]);
    }

    #[test]
    fn concurrent_updates_all_land() {
        let tmp = tempfile::tempdir().unwrap();
        let path = TrustStore::location(tmp.path());
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    TrustStore::update(&path, |e| e.push(entry(&format!("/d{i}"), "sha256:x")))
                        .unwrap()
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(TrustStore::load(&path).unwrap().entries().len(), 8);
    }

    #[test]
    fn a_file_that_is_not_a_trust_file_is_refused_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("trusted.json");
        std::fs::write(&path, "{\"version\": 2}").unwrap();
        let err = TrustStore::load(&path).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{} is not a trust file execgate can read (version 2 (this execgate reads version \
                 1)); fix it, or remove it and trust your folders again",
                path.display()
            )
        );
        // ... and never overwritten.
        assert!(TrustStore::update(&path, |_| ()).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"version\": 2}");
    }
}
