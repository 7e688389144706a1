//! Repository trust (design invariant 3): an escalated program never runs in a git
//! repository the sandbox could have written, unless the user trusted that repository and
//! it stayed read-only all session.
//!
//! A repository inside a writable root is attacker-written, in this session or an earlier
//! one: its config names the programs git runs (`core.fsmonitor`, pagers, diff drivers,
//! credential helpers), its hooks are programs. So [`RepositoryGuard`] finds the repository
//! an exec would use, as git would (from the opened working directory, walking up; `-C`,
//! `--git-dir` and `--bare` of a git command line; the session's own `GIT_DIR`), and lets
//! the exec leave the sandbox only when every place on the way lies outside every writable
//! root, or is a repository the session verified ([`Verified`]: trusted, unchanged and
//! read-only since the session started). Any program counts, not only git: a build tool
//! or a script runs git too.

use crate::guard::EscalationGuard;
use crate::pipeline::SandboxWritable;
use execgate_escalate_server::ExecContext;
use execgate_trust::git::{self, Candidate, GitOptions};
use execgate_trust::Verified;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Keeps in the sandbox every exec whose repository the sandbox could have written.
pub struct RepositoryGuard {
    roots: Vec<PathBuf>,
    writable: SandboxWritable,
    verified: Verified,
    session_git_dir: Option<Vec<u8>>,
}

impl RepositoryGuard {
    /// A guard for a sandbox with writable roots `roots` (canonical), which can write what
    /// `writable` accepts, where the trusted repositories in `verified` count, and whose
    /// escalated programs get `session_git_dir` as `GIT_DIR` (from the session's own
    /// environment).
    pub fn new(
        roots: Vec<PathBuf>,
        writable: SandboxWritable,
        verified: Verified,
        session_git_dir: Option<Vec<u8>>,
    ) -> Self {
        Self {
            roots,
            writable,
            verified,
            session_git_dir,
        }
    }

    fn root_of(&self, path: &Path) -> Option<&Path> {
        self.roots
            .iter()
            .find(|root| path.starts_with(root))
            .map(PathBuf::as_path)
    }

    /// Why `candidate` may not be escalated in, if it may not.
    fn judge(&self, candidate: &Candidate) -> Result<(), String> {
        let places = [
            candidate.git_dir.as_deref(),
            candidate.common_dir.as_deref(),
            Some(candidate.entry.as_path()),
        ];
        let Some((place, root)) = places
            .into_iter()
            .flatten()
            .find_map(|p| self.root_of(p).map(|root| (p, root)))
        else {
            return Ok(());
        };
        let trusted = match (&candidate.git_dir, &candidate.common_dir) {
            (Some(git_dir), Some(common_dir)) if candidate.valid => {
                self.verified.check(git_dir, common_dir)
            }
            _ => None,
        };
        match trusted {
            // Trusted and read-only all session; its entry must be too, or sandboxed code
            // could point it elsewhere after this check.
            Some(Ok(())) if !(self.writable)(&candidate.entry) => Ok(()),
            Some(Err(why)) => Err(why.clone()),
            _ => Err(format!(
                "the repository {} is inside the writable root {} and not trusted; to let \
                 commands escalate there, run `execgate trust {}` outside the sandbox",
                place.display(),
                root.display(),
                candidate.top.display()
            )),
        }
    }
}

impl EscalationGuard for RepositoryGuard {
    fn may_escalate(&self, exec: &ExecContext) -> Result<(), String> {
        if self.roots.is_empty() {
            // Nothing is writable: no repository can have been planted.
            return Ok(());
        }
        let cwd = exec.cwd.path().display().to_string();
        let unknown = |e: std::io::Error| {
            format!("cannot tell which git repository {cwd} is in ({e}), so it could be one the sandbox wrote")
        };
        let dir = exec.cwd.fd().map_err(unknown)?;
        let found = if is_git(exec) {
            let options = GitOptions::parse(&exec.request.argv);
            git::candidates_for_command(dir, &options, self.session_git_dir.as_deref())
        } else {
            git::candidates(dir)
        }
        .map_err(unknown)?;
        found.iter().try_for_each(|candidate| self.judge(candidate))
    }
}

/// Whether the exec runs git (by either of its names): git reads `-C` and `--git-dir`.
fn is_git(exec: &ExecContext) -> bool {
    let git = |path: &Path| {
        path.file_name()
            .is_some_and(|name| name.as_bytes().starts_with(b"git"))
    };
    git(&exec.program) || exec.invoked.as_deref().is_some_and(git)
}

#[cfg(test)]
mod tests {
    use super::*;
    use execgate_escalate_server::{CwdDir, ExecRequest};
    use execgate_trust::{
        RecordedRepository, RepositoryFiles, TrustStore, Trusted, TrustedRepositories,
    };
    use std::process::Command;
    use std::sync::Arc;

    fn git(dir: &Path, args: &[&str]) {
        let status = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("HOME", dir)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    }

    fn exec(program: &str, argv: &[&str], cwd: &Path) -> ExecContext {
        let cwd = cwd.as_os_str().as_bytes().to_vec();
        ExecContext {
            id: 1,
            request: Arc::new(ExecRequest {
                program: program.as_bytes().to_vec(),
                argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
                cwd: cwd.clone(),
                env: Vec::new(),
            }),
            program: PathBuf::from(program),
            invoked: None,
            cwd: Arc::new(CwdDir::new(cwd)),
            direct: None,
            pid: None,
        }
    }

    /// A scratch folder with `root` (writable) and `outside` (not), each holding a repository.
    struct Setup {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
    }

    fn setup() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let (root, outside) = (base.join("root"), base.join("outside"));
        for dir in [&root, &outside] {
            std::fs::create_dir(dir).unwrap();
            git(dir, &["init", "-q", "repo"]);
        }
        Setup {
            _tmp: tmp,
            root,
            outside,
        }
    }

    /// A guard over the writable root `s.root`, where everything but `protected` is
    /// writable.
    fn guard_with(s: &Setup, verified: Verified, protected: Option<PathBuf>) -> RepositoryGuard {
        let root = s.root.clone();
        let writable: SandboxWritable = Arc::new(move |p: &Path| {
            p.starts_with(&root) && !protected.as_ref().is_some_and(|x| p.starts_with(x))
        });
        RepositoryGuard::new(vec![s.root.clone()], writable, verified, None)
    }

    fn guard(s: &Setup, verified: Verified) -> RepositoryGuard {
        guard_with(s, verified, None)
    }

    fn untrusted(repo: &Path, root: &Path) -> String {
        format!(
            "the repository {}/.git is inside the writable root {} and not trusted; to let \
             commands escalate there, run `execgate trust {}` outside the sandbox",
            repo.display(),
            root.display(),
            repo.display()
        )
    }

    #[test]
    fn a_repository_outside_the_writable_roots_may_be_escalated_in() {
        let s = setup();
        let g = guard(&s, Verified::default());
        let sub = s.outside.join("repo/sub");
        std::fs::create_dir(&sub).unwrap();
        assert_eq!(
            g.may_escalate(&exec("/usr/bin/git", &["git", "status"], &sub)),
            Ok(())
        );
        assert_eq!(
            g.may_escalate(&exec("/usr/bin/make", &["make"], &s.outside)),
            Ok(())
        );
    }

    #[test]
    fn a_repository_in_a_writable_root_is_refused_for_any_program() {
        let s = setup();
        let g = guard(&s, Verified::default());
        let repo = s.root.join("repo");
        for program in ["/usr/bin/git", "/usr/bin/make"] {
            assert_eq!(
                g.may_escalate(&exec(program, &["x"], &repo)),
                Err(untrusted(&repo, &s.root))
            );
        }
        // Reached from outside through git's options.
        let cwd = s.outside.join("repo");
        let into = repo.to_str().unwrap();
        let git_dir = format!("--git-dir={into}/.git");
        for argv in [
            &["git", "-C", into, "status"][..],
            &["git", &git_dir, "status"],
        ] {
            assert_eq!(
                g.may_escalate(&exec("/usr/bin/git", argv, &cwd)),
                Err(untrusted(&repo, &s.root)),
                "{argv:?}"
            );
        }
        // Only git reads git's options.
        assert_eq!(
            g.may_escalate(&exec("/usr/bin/make", &["make", "-C", into], &cwd)),
            Ok(())
        );
    }

    #[test]
    fn a_trusted_repository_counts_only_as_verified() {
        let s = setup();
        let repo = s.root.join("repo");
        let gd = repo.join(".git");
        let files = RepositoryFiles::gather(&gd, &gd, &repo, None).unwrap();
        let store_file = s.outside.join("trusted.json");
        TrustStore::update(&store_file, |e| {
            e.push(Trusted {
                dir: repo.clone(),
                trusted_at: 0,
                policy: None,
                repository: Some(RecordedRepository {
                    git_dir: gd.clone(),
                    common_dir: gd.clone(),
                    top: repo.clone(),
                    digest: files.digest.clone(),
                    files: Vec::new(),
                }),
            })
        })
        .unwrap();
        let store = TrustStore::load(&store_file).unwrap();
        let trusted = TrustedRepositories::gather(&store, None);
        let run = exec("/usr/bin/git", &["git", "status"], &repo);
        // Read-only in the sandbox: it counts.
        let verified = trusted.verify(&|p| p.starts_with(&s.root), &|_| false);
        assert_eq!(
            guard_with(&s, verified, Some(gd.clone())).may_escalate(&run),
            Ok(())
        );
        // Writable (Landlock), or changed since: it does not, and the reason says so.
        let verified = trusted.verify(&|p| p.starts_with(&s.root), &|p| p == gd.as_path());
        assert_eq!(
            guard(&s, verified).may_escalate(&run),
            Err(format!(
                "the repository {} is trusted, but this sandbox cannot keep {} read-only (use the \
                 bubblewrap backend)",
                gd.display(),
                gd.display()
            ))
        );
        std::fs::write(gd.join("hooks/post-checkout"), "#!/bin/sh\n").unwrap();
        let changed = TrustedRepositories::gather(&store, None);
        let verified = changed.verify(&|p| p.starts_with(&s.root), &|_| false);
        assert_eq!(
            guard(&s, verified).may_escalate(&run),
            Err(format!(
                "the repository {} changed since it was trusted; run `execgate trust {}` again \
                 outside the sandbox to trust it as it is",
                gd.display(),
                repo.display()
            ))
        );
    }

    #[test]
    fn without_writable_roots_nothing_can_have_been_planted() {
        let s = setup();
        let g = RepositoryGuard::new(
            Vec::new(),
            Arc::new(|_: &Path| false),
            Verified::default(),
            None,
        );
        assert_eq!(
            g.may_escalate(&exec("/usr/bin/git", &["git"], &s.root.join("repo"))),
            Ok(())
        );
    }

    #[test]
    fn a_working_directory_that_cannot_be_opened_is_refused() {
        let s = setup();
        let g = guard(&s, Verified::default());
        let gone = s.root.join("gone");
        let err = g
            .may_escalate(&exec("/usr/bin/git", &["git"], &gone))
            .unwrap_err();
        assert_eq!(
            err,
            format!(
                "cannot tell which git repository {} is in (No such file or directory (os error 2)), \
                 so it could be one the sandbox wrote",
                gone.display()
            )
        );
    }
}
