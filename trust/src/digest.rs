//! A digest of a set of files: what `execgate trust` records and what later sessions
//! compare with.
//!
//! SHA-256 over a canonical encoding of every entry in the order given: its kind, its path
//! and, for a file, whether it is executable and its bytes, each length-prefixed, so no
//! two different sets of entries encode alike. Written `sha256:` and 64 hex digits.

use sha2::{Digest, Sha256};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Builds a digest entry by entry.
#[derive(Debug, Default, Clone)]
pub struct Fingerprint {
    hash: Sha256,
}

impl Fingerprint {
    /// An empty fingerprint.
    pub fn new() -> Self {
        Self::default()
    }

    fn field(&mut self, bytes: &[u8]) {
        self.hash.update((bytes.len() as u64).to_le_bytes());
        self.hash.update(bytes);
    }

    /// Adds a text label (what a group of entries is).
    pub fn label(&mut self, text: &str) {
        self.field(b"label");
        self.field(text.as_bytes());
    }

    /// Adds the file at `path`: its path, whether it is executable, and its bytes. A path
    /// that does not exist is added as missing (its appearing later changes the digest);
    /// anything else that cannot be read is an error.
    pub fn file(&mut self, path: &Path) -> io::Result<()> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let executable = std::fs::metadata(path)?.permissions().mode() & 0o111 != 0;
                self.field(if executable { b"exec" } else { b"file" });
                self.field(path.as_os_str().as_bytes());
                self.field(&bytes);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.missing(path);
                Ok(())
            }
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("cannot read {}: {e}", path.display()),
            )),
        }
    }

    /// Adds `path` as a file that does not exist.
    pub fn missing(&mut self, path: &Path) {
        self.field(b"missing");
        self.field(path.as_os_str().as_bytes());
    }

    /// The digest, `sha256:` and 64 lower-case hex digits.
    pub fn finish(self) -> String {
        let bytes = self.hash.finalize();
        let mut out = String::with_capacity(7 + 64);
        out.push_str("sha256:");
        for byte in bytes.iter() {
            out.push_str(&format!("{byte:02x}"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_paths_modes_and_absence_all_count() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        std::fs::write(&a, "one").unwrap();
        let digest = |path: &Path| {
            let mut f = Fingerprint::new();
            f.label("test");
            f.file(path).unwrap();
            f.finish()
        };
        let first = digest(&a);
        assert!(first.starts_with("sha256:") && first.len() == 71, "{first}");
        assert_eq!(digest(&a), first);
        std::fs::write(&a, "two").unwrap();
        let second = digest(&a);
        assert_ne!(second, first);
        std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_ne!(digest(&a), second);
        std::fs::remove_file(&a).unwrap();
        let gone = digest(&a);
        std::fs::write(&a, "").unwrap();
        assert_ne!(digest(&a), gone);
        assert_ne!(digest(&tmp.path().join("b")), gone);
    }

    #[test]
    fn entries_cannot_run_into_each_other() {
        let mut one = Fingerprint::new();
        one.label("ab");
        one.label("c");
        let mut two = Fingerprint::new();
        two.label("a");
        two.label("bc");
        assert_ne!(one.finish(), two.finish());
    }
}
