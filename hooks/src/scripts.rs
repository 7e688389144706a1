//! The files a hook command names: what `sh -c COMMAND` would run or read by name, so a
//! caller can refuse to run a hook whose script someone else could have written, and
//! `execgate trust` can cover a project's hook scripts.
//!
//! The command is split into words as `sh` would (quotes, escapes); each word that is a
//! path to an existing file counts (relative words from the folder the hook runs in, `~/`
//! from the home), as does the value of a `--option=PATH` word, and the program the first
//! word names, looked up in `PATH` when it has no `/` (with every `PATH` folder searched
//! on the way, where a program of that name could appear). A command that builds paths at
//! run time (`cd`, variables, `$(...)`) is not understood beyond its words: give scripts by
//! absolute path.
//!
//! A file is not only its final path: whoever can replace a symlink on the way to it, or
//! create a path word's file that does not exist yet, decides what runs once the hook
//! starts, after any check. So [`Named::places`] lists those entries too: every symlink met
//! while resolving a named path (links in links included), and for a path that does not
//! exist, its first missing entry (where it would be created).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What a hook command names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Named {
    /// Existing files it names, symlinks resolved, in order, each once.
    pub files: Vec<PathBuf>,
    /// `PATH` folders searched for its program before (and including) the one it was found
    /// in: a program of that name put in one of them would run instead.
    pub searched: Vec<PathBuf>,
    /// Directory entries whose replacement or creation would change what a named path
    /// names: the symlinks on the way to each named file, and the first missing entry of
    /// each path word (a word with a `/`, or `~/...`) that names nothing yet; each as its
    /// resolved folder and its name, once, in order.
    pub places: Vec<PathBuf>,
}

/// The command cannot be split into words (an unclosed quote).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot split the hook command into words (unclosed quote?)")]
pub struct Unsplittable;

/// The files `command` names when it runs in `dir`, with home `home` and program search
/// path `path` (`PATH`'s value).
pub fn named_files(
    command: &str,
    dir: &Path,
    home: Option<&Path>,
    path: Option<&OsStr>,
) -> Result<Named, Unsplittable> {
    let words = shlex::split(command).ok_or(Unsplittable)?;
    let mut named = Named::default();
    let mut first = true;
    for word in &words {
        if is_operator(word) {
            first = true;
            continue;
        }
        if first && is_assignment(word) {
            continue;
        }
        let program = std::mem::take(&mut first);
        let value = word
            .strip_prefix("--")
            .and_then(|w| w.split_once('='))
            .map(|(_, v)| v);
        for text in std::iter::once(word.as_str()).chain(value) {
            if let Some(file) = file_named(text, dir, home) {
                push(&mut named.files, file);
                if let Some(spelled) = spelled_path(text, dir, home) {
                    resolve(&spelled, &mut named.places, 0);
                }
            } else if program && !text.contains('/') {
                if let Some(found) = lookup(text, dir, path, &mut named.searched) {
                    push(&mut named.files, found);
                }
            } else if looks_like_a_path(text) {
                if let Some(spelled) = spelled_path(text, dir, home) {
                    resolve(&spelled, &mut named.places, 0);
                }
            }
        }
    }
    Ok(named)
}

fn push(files: &mut Vec<PathBuf>, file: PathBuf) {
    if !files.contains(&file) {
        files.push(file);
    }
}

/// A shell control operator as its own word.
fn is_operator(word: &str) -> bool {
    matches!(word, ";" | "&&" | "||" | "|" | "&" | "(" | ")" | "!")
}

/// `NAME=value` before a command.
fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// The existing file `text` names as a path, if it names one (`~/` from `home`, relative
/// paths from `dir`). Words without a `/` count only when they name a file in `dir`.
fn file_named(text: &str, dir: &Path, home: Option<&Path>) -> Option<PathBuf> {
    let path = spelled_path(text, dir, home)?;
    if text.is_empty() || !path.is_file() {
        return None;
    }
    path.canonicalize().ok()
}

/// `text` as an absolute path, not resolved (`~/` from `home`, relative paths from `dir`).
fn spelled_path(text: &str, dir: &Path, home: Option<&Path>) -> Option<PathBuf> {
    Some(if let Some(rest) = text.strip_prefix("~/") {
        home?.join(rest)
    } else if text.starts_with('/') {
        PathBuf::from(text)
    } else {
        dir.join(text)
    })
}

/// Whether a word that names no existing file is still read as a path: it has a `/` (or
/// is `~/...`), is no option and no URL. (A bare word is a file only when one exists:
/// arguments like `-r` or `.tool_input` are not files to be.)
fn looks_like_a_path(text: &str) -> bool {
    text.contains('/') && !text.starts_with('-') && !text.contains("://")
}

/// How many symlinks deep [`resolve`] follows (the kernel stops at 40).
const MAX_LINKS: usize = 40;

/// Resolves the absolute `path` entry by entry, as the kernel would, adding to `places`
/// every symlink met and, when an entry is missing, that entry; returns the resolved
/// path when it exists.
fn resolve(path: &Path, places: &mut Vec<PathBuf>, depth: usize) -> Option<PathBuf> {
    use std::path::Component;
    let mut at = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::RootDir | Component::Prefix(_) => at = PathBuf::from("/"),
            Component::CurDir => {}
            Component::ParentDir => {
                at.pop();
            }
            Component::Normal(name) => {
                let entry = at.join(name);
                let Ok(meta) = std::fs::symlink_metadata(&entry) else {
                    push(places, entry);
                    return None;
                };
                if !meta.file_type().is_symlink() {
                    at = entry;
                    continue;
                }
                push(places, entry.clone());
                let target = std::fs::read_link(&entry).ok()?;
                if depth >= MAX_LINKS {
                    return None;
                }
                at = resolve(&at.join(target), places, depth + 1)?;
            }
        }
    }
    Some(at)
}

/// Looks `name` up in `path` as `sh` would (relative entries from `dir`), recording each
/// folder searched.
fn lookup(
    name: &str,
    dir: &Path,
    path: Option<&OsStr>,
    searched: &mut Vec<PathBuf>,
) -> Option<PathBuf> {
    for entry in path?.as_bytes().split(|&b| b == b':') {
        let folder = if entry.is_empty() {
            dir.to_path_buf()
        } else {
            dir.join(OsStr::from_bytes(entry))
        };
        let folder = folder.canonicalize().unwrap_or(folder);
        if !searched.contains(&folder) {
            searched.push(folder.clone());
        }
        let candidate = folder.join(name);
        let executable = candidate
            .metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        if executable {
            return candidate.canonicalize().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_interpreters_and_search_folders_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().canonicalize().unwrap();
        std::fs::create_dir_all(dir.join(".execgate")).unwrap();
        std::fs::write(dir.join(".execgate/guard.sh"), "").unwrap();
        std::fs::write(dir.join("cfg.json"), "").unwrap();
        std::fs::create_dir(dir.join("home")).unwrap();
        std::fs::write(dir.join("home/h.py"), "").unwrap();
        let sh = std::fs::canonicalize("/bin/sh").unwrap();
        let named = named_files(
            "X=1 sh .execgate/guard.sh --config=cfg.json missing.sh && python3 ~/h.py 'a b'",
            &dir,
            Some(&dir.join("home")),
            Some(OsStr::new("/nonexistent:/bin")),
        )
        .unwrap();
        let python = std::fs::canonicalize("/bin/python3").unwrap();
        assert_eq!(
            named.files,
            [
                sh,
                dir.join(".execgate/guard.sh"),
                dir.join("cfg.json"),
                python,
                dir.join("home/h.py"),
            ]
        );
        assert_eq!(
            named.searched,
            [
                PathBuf::from("/nonexistent"),
                std::fs::canonicalize("/bin").unwrap()
            ]
        );
    }

    #[test]
    fn symlinks_on_the_way_and_paths_to_be_are_places() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().canonicalize().unwrap();
        std::fs::create_dir_all(dir.join("real/sub")).unwrap();
        std::fs::write(dir.join("real/sub/guard.sh"), "").unwrap();
        std::os::unix::fs::symlink("real", dir.join("a")).unwrap();
        std::os::unix::fs::symlink(dir.join("a/sub"), dir.join("b")).unwrap();
        let named = named_files(
            "sh b/guard.sh --log=logs/x.log missing/y.sh -r .field http://localhost:1/x",
            &dir,
            None,
            Some(OsStr::new("/bin")),
        )
        .unwrap();
        assert_eq!(
            named.files,
            [
                std::fs::canonicalize("/bin/sh").unwrap(),
                dir.join("real/sub/guard.sh")
            ]
        );
        // b, then a (which b's target goes through); the first missing entry of each path
        // word; no option, field or URL.
        assert_eq!(
            named.places,
            [
                dir.join("b"),
                dir.join("a"),
                dir.join("logs"),
                dir.join("missing")
            ]
        );
    }

    #[test]
    fn a_program_named_by_path_needs_no_search() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().canonicalize().unwrap();
        let named = named_files("/bin/sh -c true", &dir, None, Some(OsStr::new("/bin"))).unwrap();
        assert_eq!(named.files, [std::fs::canonicalize("/bin/sh").unwrap()]);
        assert_eq!(named.searched, Vec::<PathBuf>::new());
        assert_eq!(named_files("sh 'open", &dir, None, None), Err(Unsplittable));
    }
}
