//! Lexical path helpers for `host_executable` and basename fallback. Nothing here touches the
//! file system: the caller passes the path it will execute, and we compare text.

use std::path::{Component, Path, PathBuf};

/// Expands a leading `~` or `~/` with `home`; other paths are returned as they are.
pub(crate) fn expand_home(raw: &str, home: Option<&Path>) -> PathBuf {
    if let (Some(rest), Some(home)) = (raw.strip_prefix('~'), home) {
        if rest.is_empty() {
            return home.to_path_buf();
        }
        if let Some(rest) = rest.strip_prefix('/') {
            return home.join(rest.trim_start_matches('/'));
        }
    }
    PathBuf::from(raw)
}

/// Returns `path` with `.` removed and `..` applied lexically, or `None` if it is not absolute.
pub(crate) fn normalize_absolute(path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Prefix(prefix) => out.push(prefix.as_os_str()),
            Component::RootDir => out.push(Component::RootDir.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(part) => out.push(part),
        }
    }
    Some(out)
}

/// The UTF-8 file name of `path`, used to look up basename rules.
pub(crate) fn basename(path: &Path) -> Option<&str> {
    path.file_name()?.to_str()
}
