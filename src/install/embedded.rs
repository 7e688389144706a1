//! The helper programs built into `execgate` (the execve wrapper, the preload shim, the
//! session init; see the root `build.rs`), and the per-user cache they are written to at
//! first use, so that the `execgate` binary alone is a whole install.
//!
//! The cache (`EXECGATE_CACHE_DIR`, else `$XDG_CACHE_HOME/execgate`, else
//! `~/.cache/execgate`, else `$XDG_RUNTIME_DIR/execgate`, else `/var/tmp/execgate-<uid>`)
//! holds them in
//! `helpers/<sha256 of the three>/`, so builds never overwrite each other's copies. Its
//! folders are created 0700 and must belong to the user; every use compares each file,
//! byte for byte, with the copy inside `execgate` and rewrites one that differs (never
//! running a file it has not just verified). The cache is never inside a writable root of
//! the session that uses it: a candidate inside one is skipped, and the sandbox keeps every
//! existing cache read-only (see [`cache_roots`]).

use anyhow::{bail, Context};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// One embedded helper program.
#[derive(Debug, Clone, Copy)]
pub struct Helper {
    /// Its file name in the cache (the name it is found by next to `execgate`, too).
    pub name: &'static str,
    /// Its bytes.
    pub bytes: &'static [u8],
}

/// The freestanding execve wrapper.
pub const WRAPPER: Helper = Helper {
    name: "execgate-execve-wrapper",
    bytes: include_bytes!(env!("EXECGATE_EMBED_WRAPPER")),
};

/// The LD_PRELOAD shim.
pub const SHIM: Helper = Helper {
    name: "libexecgate_preload.so",
    bytes: include_bytes!(env!("EXECGATE_EMBED_PRELOAD")),
};

/// The per-session init.
pub const INIT: Helper = Helper {
    name: "execgate-init",
    bytes: include_bytes!(env!("EXECGATE_EMBED_INIT")),
};

/// The content address of the three helpers (hex SHA-256, computed by `build.rs`).
pub const DIGEST: &str = env!("EXECGATE_EMBED_DIGEST");

/// Every cache folder execgate may use, in order of preference (whether or not they
/// exist): `EXECGATE_CACHE_DIR`, `$XDG_CACHE_HOME/execgate`, `~/.cache/execgate`,
/// `$XDG_RUNTIME_DIR/execgate`, `/var/tmp/execgate-<uid>` (for a home inside a writable
/// root, e.g. under `/tmp`; refused unless it is the user's own, 0700).
pub fn cache_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    roots.extend(env_path("EXECGATE_CACHE_DIR"));
    roots.extend(env_path("XDG_CACHE_HOME").map(|d| d.join("execgate")));
    roots.extend(env_path("HOME").map(|d| d.join(".cache").join("execgate")));
    roots.extend(env_path("XDG_RUNTIME_DIR").map(|d| d.join("execgate")));
    roots.push(PathBuf::from(format!(
        "/var/tmp/execgate-{}",
        nix::unistd::geteuid().as_raw()
    )));
    roots.dedup();
    roots
}

/// An absolute path from environment variable `name`.
fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

/// The cache folder for a session whose writable roots are `writable`: the one
/// `EXECGATE_CACHE_DIR` names, else the first of [`cache_roots`] outside all of them.
pub fn choose_root(writable: &[PathBuf]) -> anyhow::Result<PathBuf> {
    let roots = match env_path("EXECGATE_CACHE_DIR") {
        Some(named) => vec![named],
        None => cache_roots(),
    };
    choose_from(&roots, writable)
}

fn choose_from(roots: &[PathBuf], writable: &[PathBuf]) -> anyhow::Result<PathBuf> {
    if roots.is_empty() {
        bail!("no folder for execgate's cache: set HOME or EXECGATE_CACHE_DIR");
    }
    let writable: Vec<PathBuf> = writable.iter().map(|w| canonical_prefix(w)).collect();
    for root in roots {
        let resolved = canonical_prefix(root);
        match writable.iter().find(|w| resolved.starts_with(w)) {
            // A candidate this user cannot create or fill (a home that is not theirs, as
            // for `nobody` with HOME=/root) gives way to the next one.
            None if roots.len() > 1 && !creatable(&resolved) => {}
            None => return Ok(root.clone()),
            Some(w) if roots.len() == 1 => bail!(
                "the cache folder {} is inside the writable root {}: set EXECGATE_CACHE_DIR \
                 to a folder outside it",
                root.display(),
                w.display()
            ),
            Some(_) => {}
        }
    }
    bail!(
        "every cache folder execgate could use ({}) is inside a writable root of this \
         session: set EXECGATE_CACHE_DIR to a folder outside them",
        roots
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Whether this user may create `path` or fill it: its nearest existing folder (itself, or
/// the closest ancestor) is writable and searchable by them.
fn creatable(path: &Path) -> bool {
    use nix::unistd::{access, AccessFlags};
    path.ancestors()
        .find(|p| p.exists())
        .is_some_and(|p| access(p, AccessFlags::W_OK | AccessFlags::X_OK).is_ok())
}

/// `path` with its longest existing prefix resolved (symlinks followed), the rest appended.
fn canonical_prefix(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut head = path;
    loop {
        if let Ok(real) = head.canonicalize() {
            return rest.iter().rev().fold(real, |acc: PathBuf, c| acc.join(c));
        }
        match (head.parent(), head.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                head = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// Creates `dir` under the cache folder `root` (and missing folders up to and above it)
/// 0700 and checks it is safe to keep programs in: `root` and every folder between it and
/// `dir` are the user's own, 0700; every folder above `root` belongs to the user or root,
/// and none is writable by anyone else unless sticky (like `/tmp`).
pub fn private_dir(root: &Path, dir: &Path) -> anyhow::Result<()> {
    let uid = nix::unistd::geteuid().as_raw();
    let below = dir
        .strip_prefix(root)
        .with_context(|| format!("{} is not inside {}", dir.display(), root.display()))?;
    if let Some(parent) = root.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    // The cache's own folders one at a time, each checked before anything is made inside
    // it, so nothing is ever created through a symlink or in a folder someone else owns.
    let mut folder = root.to_path_buf();
    let levels = std::iter::once(None).chain(below.components().map(Some));
    for component in levels {
        if let Some(component) = component {
            folder.push(component);
        }
        match std::fs::DirBuilder::new().mode(0o700).create(&folder) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot create the cache folder {}", folder.display())
                })
            }
        }
        let meta = std::fs::symlink_metadata(&folder)
            .with_context(|| format!("cannot inspect the cache folder {}", folder.display()))?;
        if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
            bail!(
                "the cache folder {} is not a folder only you can use (owner {}, mode {:o}): \
                 remove it, or set EXECGATE_CACHE_DIR",
                folder.display(),
                meta.uid(),
                meta.mode() & 0o7777
            );
        }
    }
    for parent in root.ancestors().skip(1) {
        let meta = std::fs::metadata(parent)
            .with_context(|| format!("cannot inspect {}", parent.display()))?;
        let others_write = meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0;
        if (meta.uid() != uid && meta.uid() != 0) || others_write {
            bail!(
                "the cache folder {} is inside {}, which others can change (owner {}, mode \
                 {:o}): set EXECGATE_CACHE_DIR to a folder of your own",
                root.display(),
                parent.display(),
                meta.uid(),
                meta.mode() & 0o7777
            );
        }
    }
    Ok(())
}

/// The helpers' folder in the cache under `root` (for this build's helpers).
pub fn helpers_dir(root: &Path) -> PathBuf {
    root.join("helpers").join(DIGEST)
}

/// `helper`'s verified copy under `root`: written when missing or different, then checked
/// byte for byte against the embedded bytes.
pub fn materialize(root: &Path, helper: Helper) -> anyhow::Result<PathBuf> {
    let dir = helpers_dir(root);
    private_dir(root, &dir)?;
    let path = dir.join(helper.name);
    if matches(&path, helper.bytes)? {
        return Ok(path);
    }
    write_atomically(&dir, &path, helper.bytes)?;
    if !matches(&path, helper.bytes)? {
        bail!(
            "the cached {} differs from execgate's own copy right after it was written: \
             remove {} and retry",
            helper.name,
            dir.display()
        );
    }
    Ok(path)
}

/// Whether `path` is the user's regular file, writable by nobody else, holding exactly
/// `bytes`. A missing file does not match; a file that cannot be inspected is an error.
fn matches(path: &Path, bytes: &[u8]) -> anyhow::Result<bool> {
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        // A symlink (ELOOP) is replaced like any other wrong content.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    let meta = file
        .metadata()
        .with_context(|| format!("cannot inspect {}", path.display()))?;
    let uid = nix::unistd::geteuid().as_raw();
    if !meta.is_file()
        || meta.uid() != uid
        || meta.mode() & 0o022 != 0
        || meta.len() != bytes.len() as u64
    {
        return Ok(false);
    }
    let mut buf = vec![0u8; 1 << 16];
    let mut offset = 0usize;
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            return Ok(offset == bytes.len());
        }
        if bytes.get(offset..offset + n) != Some(&buf[..n]) {
            return Ok(false);
        }
        offset += n;
    }
}

/// Replaces `path` in `dir` by a file holding `bytes`, mode 0500, in one rename.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let temp = dir.join(format!(
        ".{}.{}.{}",
        name.unwrap_or_default(),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o700)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o500))?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_helper_is_written_0500_in_a_0700_content_addressed_folder() {
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("cache");
        let path = materialize(&cache, WRAPPER).unwrap();
        assert_eq!(path, cache.join("helpers").join(DIGEST).join(WRAPPER.name));
        assert_eq!(std::fs::read(&path).unwrap(), WRAPPER.bytes);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&path), 0o500);
        for dir in [&cache, &cache.join("helpers"), &helpers_dir(&cache)] {
            assert_eq!(mode(dir), 0o700, "{}", dir.display());
        }
        assert_eq!(DIGEST.len(), 64);
    }

    #[test]
    fn a_changed_or_replaced_cached_helper_is_rewritten_before_use() {
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("cache");
        let path = materialize(&cache, INIT).unwrap();
        // Same length, one byte different.
        let mut bytes = INIT.bytes.to_vec();
        bytes[100] ^= 1;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(materialize(&cache, INIT).unwrap(), path);
        assert_eq!(std::fs::read(&path).unwrap(), INIT.bytes);
        // A symlink to a file with the right bytes is not the cache's own file.
        let elsewhere = root.path().join("elsewhere");
        std::fs::write(&elsewhere, INIT.bytes).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        materialize(&cache, INIT).unwrap();
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
        // A group-writable file is replaced too.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o720)).unwrap();
        materialize(&cache, INIT).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o500);
    }

    #[test]
    fn a_cache_folder_others_can_use_is_refused_with_the_fix() {
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = materialize(&cache, WRAPPER).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            format!(
                "the cache folder {} is not a folder only you can use (owner {}, mode 755): \
                 remove it, or set EXECGATE_CACHE_DIR",
                cache.display(),
                nix::unistd::geteuid()
            )
        );
        // A parent others may write to (and not sticky).
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
        let inner = cache.join("inner");
        let err = private_dir(&inner, &inner.join("helpers")).unwrap_err();
        assert!(
            format!("{err:#}").starts_with(&format!(
                "the cache folder {} is inside {}, which others can change",
                inner.display(),
                cache.display()
            )),
            "{err:#}"
        );
    }

    #[test]
    fn the_first_cache_folder_outside_every_writable_root_is_chosen() {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (root.path().join("w/a"), root.path().join("b"));
        let writable = [root.path().join("w")];
        let roots = [a.clone(), b.clone()];
        assert_eq!(choose_from(&roots, &writable).unwrap(), b);
        assert_eq!(choose_from(&roots, &[]).unwrap(), a);
        let err = choose_from(&roots, &[root.path().to_path_buf()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "every cache folder execgate could use ({}, {}) is inside a writable root of \
                 this session: set EXECGATE_CACHE_DIR to a folder outside them",
                a.display(),
                b.display()
            )
        );
        // Through a symlink into the writable root.
        std::fs::create_dir(root.path().join("w")).unwrap();
        let link = root.path().join("link");
        std::os::unix::fs::symlink(root.path().join("w"), &link).unwrap();
        let err = choose_from(&[link.join("c")], &writable).unwrap_err();
        assert!(
            format!("{err}").contains("is inside the writable root"),
            "{err}"
        );
    }

    #[test]
    fn a_cache_folder_that_is_a_symlink_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
        let cache = root.path().join("cache");
        std::os::unix::fs::symlink(&real, &cache).unwrap();
        let err = materialize(&cache, SHIM).unwrap_err();
        assert!(
            format!("{err:#}").starts_with(&format!(
                "the cache folder {} is not a folder only you can use",
                cache.display()
            )),
            "{err:#}"
        );
        assert_eq!(std::fs::read_dir(&real).unwrap().count(), 0);
    }

    #[test]
    fn canonical_prefix_resolves_what_exists() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().canonicalize().unwrap();
        assert_eq!(
            canonical_prefix(&root.path().join("a/b")),
            real.join("a").join("b")
        );
    }
}
