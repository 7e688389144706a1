//! Whether the name a program was invoked by can be trusted (design invariant 2).
//!
//! Rules are written for names (`python3`, `sh`), and multi-call programs dispatch on the
//! name in `argv[0]`. The request's path is the name the shell invoked, but sandboxed code
//! can make any name point anywhere with a symlink in a folder it writes. So the server
//! reports the invoked path ([`crate::ExecContext::invoked`]) only when no directory its
//! resolution reads (and not the file itself) is sandbox-writable: then what the name
//! points to was set up outside the sandbox, and the sandbox cannot change it.
//!
//! Resolving walks the path one component at a time (`lstat`, `readlink`), a few system
//! calls; the result is kept per request path and reused while the path still resolves to
//! the same file, so a shell loop pays for the walk once per program.

use crate::policy::WritablePaths;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// Most symlinks followed in one walk (the kernel's own limit).
const MAX_LINKS: usize = 40;

/// Most request paths remembered; the memory starts over when full (a flood of distinct
/// paths costs walks, not memory).
const MAX_REMEMBERED: usize = 4096;

/// Decides [`crate::ExecContext::invoked`] for a session.
pub(crate) struct InvokedNames {
    /// `None`: the session said nothing about writability, so every path counts as
    /// sandbox-writable and no invoked name is trusted (fail closed).
    writable: Option<Arc<dyn WritablePaths>>,
    /// Request path -> (the file it resolved to, whether the walk was trusted).
    remembered: Mutex<HashMap<Vec<u8>, (PathBuf, bool)>>,
}

impl InvokedNames {
    pub(crate) fn new(writable: Option<Arc<dyn WritablePaths>>) -> Self {
        Self {
            writable,
            remembered: Mutex::new(HashMap::new()),
        }
    }

    /// The invoked path of a request whose program path is `requested` and whose opened
    /// file is `resolved`, when it can be trusted.
    pub(crate) fn trusted(&self, requested: &[u8], resolved: &Path) -> Option<PathBuf> {
        let writable = self.writable.as_deref()?;
        if !is_clean_absolute(requested) {
            return None;
        }
        let path = Path::new(OsStr::from_bytes(requested));
        {
            let remembered = self.lock();
            if let Some((target, trusted)) = remembered.get(requested) {
                if target == resolved {
                    return trusted.then(|| path.to_path_buf());
                }
            }
        }
        let walked = walk(path, writable);
        let trusted = walked.as_deref() == Some(resolved);
        let mut remembered = self.lock();
        if remembered.len() >= MAX_REMEMBERED {
            remembered.clear();
        }
        remembered.insert(requested.to_vec(), (resolved.to_path_buf(), trusted));
        trusted.then(|| path.to_path_buf())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, (PathBuf, bool)>> {
        // A map of plain values has no invariant a panic could break.
        self.remembered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// An absolute path with no empty, `.` or `..` component and no trailing slash: the form
/// a `PATH` lookup produces. Anything else is not reported as a name.
fn is_clean_absolute(path: &[u8]) -> bool {
    path.len() > 1
        && path[0] == b'/'
        && path[1..]
            .split(|&b| b == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b"..")
}

/// Resolves `path` the way the kernel does, one component at a time; the resolved file
/// when no directory read on the way, and not the file itself, is writable; else `None`.
fn walk(path: &Path, writable: &dyn WritablePaths) -> Option<PathBuf> {
    let mut dir = PathBuf::from("/");
    // Components still to resolve, the next one last.
    let mut rest: Vec<OsString> = Vec::new();
    push_components(&mut rest, path);
    let mut links = 0;
    while let Some(name) = rest.pop() {
        if name == ".." {
            dir.pop();
            continue;
        }
        // The entry `name` is read from `dir`: the sandbox must not be able to change it.
        // Nothing under /proc is a name: its links lead into other processes' namespaces
        // (`/proc/<pid>/root`), whatever `readlink` says.
        if writable.is_writable(&dir) || dir.starts_with("/proc") {
            return None;
        }
        let next = dir.join(&name);
        let meta = std::fs::symlink_metadata(&next).ok()?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return None;
            }
            let target = std::fs::read_link(&next).ok()?;
            if target.is_absolute() {
                dir = PathBuf::from("/");
            }
            push_components(&mut rest, &target);
        } else {
            dir = next;
        }
    }
    (!writable.is_writable(&dir)).then_some(dir)
}

/// Pushes the components of `path` onto `stack` so that the first one is popped first.
fn push_components(stack: &mut Vec<OsString>, path: &Path) {
    for component in path.components().rev() {
        match component {
            Component::Normal(name) => stack.push(name.to_os_string()),
            Component::ParentDir => stack.push("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn names(writable_root: &Path) -> InvokedNames {
        let root = writable_root.to_path_buf();
        InvokedNames::new(Some(Arc::new(move |p: &Path| p.starts_with(&root))))
    }

    fn canonical(path: &Path) -> PathBuf {
        std::fs::canonicalize(path).unwrap()
    }

    #[test]
    fn clean_absolute_paths_only() {
        for (path, clean) in [
            (&b"/usr/bin/git"[..], true),
            (b"/a", true),
            (b"/", false),
            (b"usr/bin/git", false),
            (b"/usr//bin/git", false),
            (b"/usr/./bin/git", false),
            (b"/usr/../bin/git", false),
            (b"/usr/bin/", false),
            (b"", false),
        ] {
            assert_eq!(
                is_clean_absolute(path),
                clean,
                "{}",
                String::from_utf8_lossy(path)
            );
        }
    }

    #[test]
    fn a_name_outside_writable_folders_is_trusted_through_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let host = canonical(tmp.path()).join("host");
        let writable = canonical(tmp.path()).join("work");
        std::fs::create_dir_all(host.join("bin")).unwrap();
        std::fs::create_dir_all(&writable).unwrap();
        std::fs::write(host.join("bin/python3.11"), "").unwrap();
        symlink("python3.11", host.join("bin/python3")).unwrap();
        // A symlinked directory on the way, as /bin -> usr/bin on merged-usr systems.
        symlink("host/bin", tmp.path().join("hbin")).unwrap();
        let names = names(&writable);
        let resolved = host.join("bin/python3.11");
        let invoked = canonical(tmp.path()).join("hbin/python3");
        let bytes = invoked.as_os_str().as_bytes();
        assert_eq!(names.trusted(bytes, &resolved), Some(invoked.clone()));
        // Remembered, and still checked against what the path resolves to now.
        assert_eq!(names.trusted(bytes, &resolved), Some(invoked.clone()));
        assert_eq!(names.trusted(bytes, &host.join("bin/other")), None);
    }

    #[test]
    fn a_name_the_sandbox_could_have_made_is_not_trusted() {
        let tmp = tempfile::tempdir().unwrap();
        let base = canonical(tmp.path());
        let host = base.join("host");
        let writable = base.join("work");
        std::fs::create_dir_all(&host).unwrap();
        std::fs::create_dir_all(&writable).unwrap();
        std::fs::write(host.join("git"), "").unwrap();
        let names = names(&writable);
        let resolved = host.join("git");
        // A symlink in a writable folder pointing at a host program.
        symlink(&resolved, writable.join("git-difftool")).unwrap();
        let planted = writable.join("git-difftool");
        assert_eq!(
            names.trusted(planted.as_os_str().as_bytes(), &resolved),
            None
        );
        // A host symlink whose target lies in a writable folder.
        std::fs::write(writable.join("tool"), "").unwrap();
        symlink(writable.join("tool"), host.join("tool")).unwrap();
        assert_eq!(
            names.trusted(
                host.join("tool").as_os_str().as_bytes(),
                &writable.join("tool")
            ),
            None
        );
        // A host symlink that passes through a writable folder on its way back out.
        symlink(&resolved, writable.join("hop")).unwrap();
        symlink(writable.join("hop"), host.join("hop")).unwrap();
        assert_eq!(
            names.trusted(host.join("hop").as_os_str().as_bytes(), &resolved),
            None
        );
        // Nothing reached through /proc is a name (its links lead into other namespaces).
        let exe = std::fs::canonicalize("/proc/self/exe").unwrap();
        assert_eq!(names.trusted(b"/proc/self/exe", &exe), None);
        // Without a writability check nothing is trusted.
        let blind = InvokedNames::new(None);
        assert_eq!(
            blind.trusted(resolved.as_os_str().as_bytes(), &resolved),
            None
        );
    }
}
