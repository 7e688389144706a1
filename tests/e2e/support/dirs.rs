//! The directories a test works in: a [`Scratch`] directory for fixtures, and a
//! [`Workspace`] (a project folder and an empty home) to run `execgate` in as a user would.

use super::bins;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh temporary directory, by its canonical path (as `getcwd` reports it); removed
/// when dropped.
pub struct Scratch {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Scratch {
    /// A new empty directory.
    pub fn new() -> Self {
        Self::from(tempfile::tempdir().expect("create temp dir"))
    }

    /// A new empty directory outside `/tmp` and the temporary directory, which sessions may
    /// write (workspace-write opens them) and the Codex CLI will not set up its helpers
    /// under: cargo's target directory, or `/var/tmp` when the checkout itself lies under
    /// one of them (a clone in `/tmp`).
    pub fn outside_temp() -> Self {
        let target = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let temp = std::env::temp_dir();
        let under_temp = [Path::new("/tmp"), temp.as_path()]
            .iter()
            .any(|t| target.starts_with(t));
        let base = if under_temp {
            Path::new("/var/tmp")
        } else {
            target
        };
        Self::from(
            tempfile::Builder::new()
                .prefix("execgate-test-")
                .tempdir_in(base)
                .expect("create temp dir"),
        )
    }

    fn from(dir: tempfile::TempDir) -> Self {
        let path = std::fs::canonicalize(dir.path()).expect("canonicalize temp dir");
        Self { _dir: dir, path }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `rel` under it.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// Writes `contents` to `rel` (creating its parent directories); returns the path.
    pub fn write(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// [`Scratch::write`], then sets the file's mode (e.g. `0o755` for a program).
    pub fn file(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>, mode: u32) -> PathBuf {
        let path = self.write(rel, contents);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }
}

/// A project folder (`work`, the cwd of every command) and an empty home (`home`, so the
/// user's own rules, hooks and approvals never leak into a test), side by side in one
/// scratch directory, with a temporary directory of their own (`tmp`, the sessions'
/// `TMPDIR`): the scratch directory lies under `/tmp`, and were that the sessions'
/// temporary directory (a writable root), the home and everything in it would be
/// sandbox-writable, as no real home is.
pub struct Workspace {
    scratch: Scratch,
    /// The project folder.
    pub work: PathBuf,
    /// `HOME`.
    pub home: PathBuf,
    /// `TMPDIR` of the commands run here.
    pub tmp: PathBuf,
}

impl Workspace {
    /// A new workspace with empty `work` and `home`.
    pub fn new() -> Self {
        Self::within(Scratch::new())
    }

    /// [`Workspace::new`] outside the temporary folders (see [`Scratch::outside_temp`]).
    pub fn outside_temp() -> Self {
        Self::within(Scratch::outside_temp())
    }

    fn within(scratch: Scratch) -> Self {
        let work = scratch.join("work");
        let home = scratch.join("home");
        let tmp = scratch.join("tmp");
        for dir in [&work, &home, &tmp] {
            std::fs::create_dir(dir).unwrap();
        }
        Self {
            scratch,
            work,
            home,
            tmp,
        }
    }

    /// The directory holding `work` and `home`.
    pub fn root(&self) -> &Path {
        self.scratch.path()
    }

    /// Writes `text` to `rel` under `work`; returns the path.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        self.scratch.write(Path::new("work").join(rel), text)
    }

    /// Writes `contents` to `rel` under `home` (creating its folders) with file mode
    /// `mode`; returns the path.
    pub fn home_file(&self, rel: &str, contents: &str, mode: u32) -> PathBuf {
        self.scratch
            .file(Path::new("home").join(rel), contents, mode)
    }

    /// `execgate ARGS` in `work`, with `HOME` and `TMPDIR` the workspace's, no `CODEX_HOME`,
    /// and the helpers named outright ([`bins::with_helpers`]: a `HOME` under `/tmp` is inside
    /// a session's writable temporary folder, where execgate keeps no cache).
    pub fn execgate(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bins::execgate());
        cmd.args(args)
            .current_dir(&self.work)
            .env("HOME", &self.home)
            .env("TMPDIR", &self.tmp)
            .env_remove("CODEX_HOME");
        bins::with_helpers(&mut cmd);
        cmd
    }

    /// `execgate trust` in `work`, as the user would before a session: its project policy
    /// and repository load and escalate from then on.
    pub fn trust(&self) {
        let out = self.execgate(&["trust"]).output().unwrap();
        assert!(
            out.status.success(),
            "execgate trust: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// [`Workspace::execgate`] for a subcommand that starts sessions (`run`, `mcp`): it also
    /// finds the freshly built patched shells and preload shim. stdin is null.
    pub fn execgate_session(&self, args: &[&str]) -> Command {
        let mut cmd = self.execgate(args);
        cmd.env("EXECGATE_SHELLS_DIR", bins::shells_dir())
            .stdin(std::process::Stdio::null());
        cmd
    }
}
