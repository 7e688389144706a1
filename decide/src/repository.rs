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
//!
//! git looks for its repository again when it starts, after the check (and after hooks
//! or a person were asked, which may take minutes), so an exec let out is pinned to what
//! was checked ([`Pinned`], set by the server): `GIT_DIR` and `GIT_WORK_TREE` name the
//! checked git dir and work tree, or, when there was none, `GIT_DIR` names a path that
//! cannot exist (with `GIT_CEILING_DIRECTORIES` at the working directory for programs that
//! drop `GIT_DIR`). Those paths cannot be redirected by the sandbox: a path outside every
//! writable root has no folder on it the sandbox can rename, and a trusted repository
//! inside one counts only when its entry, its git dir and every folder between the root
//! and them are mount points the sandbox cannot rename (bubblewrap). The pin also turns
//! git's `file` transport off (`protocol.file.allow=never` through `GIT_CONFIG_COUNT`):
//! a push or fetch to a local path would run that repository's hooks outside the sandbox,
//! and a local repository may be one the sandbox wrote.

use crate::guard::{EscalationGuard, Pinned};
use crate::pipeline::SandboxWritable;
use execgate_escalate_server::ExecContext;
use execgate_trust::git::{self, Candidate, GitOptions};
use execgate_trust::Verified;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// `GIT_DIR` of an escalated program when no repository was found: a path below a
/// character device, which nobody can create, so git finds no repository and makes none.
pub const NO_REPOSITORY: &str = "/dev/null/execgate-found-no-repository";

/// The git variables of the session's own environment (captured outside the sandbox),
/// which escalated programs get unless the guard pins them.
#[derive(Debug, Clone, Default)]
pub struct SessionGit {
    /// `GIT_DIR`.
    pub git_dir: Option<Vec<u8>>,
    /// `GIT_CONFIG_COUNT`: the guard's config entry goes after the session's own.
    pub config_count: Option<Vec<u8>>,
}

impl SessionGit {
    /// The git variables of this process's environment.
    pub fn from_process() -> Self {
        let var = |name| std::env::var_os(name).map(|v| v.into_encoded_bytes());
        Self {
            git_dir: var("GIT_DIR"),
            config_count: var("GIT_CONFIG_COUNT"),
        }
    }
}

/// Keeps in the sandbox every exec whose repository the sandbox could have written.
pub struct RepositoryGuard {
    roots: Vec<PathBuf>,
    writable: SandboxWritable,
    verified: Verified,
    session: SessionGit,
}

impl RepositoryGuard {
    /// A guard for a sandbox with writable roots `roots` (canonical), which can write what
    /// `writable` accepts, where the trusted repositories in `verified` count, and whose
    /// escalated programs get the session's git variables `session`.
    pub fn new(
        roots: Vec<PathBuf>,
        writable: SandboxWritable,
        verified: Verified,
        session: SessionGit,
    ) -> Self {
        Self {
            roots,
            writable,
            verified,
            session,
        }
    }

    /// What holds an escalated exec to the repository `used` that was checked (`None`:
    /// none was found), from the opened working directory `cwd`; `named` when `--git-dir`
    /// or the session's `GIT_DIR` chose it (git then takes the work tree from its config
    /// or the working directory, so it is not pinned).
    fn pin(&self, used: Option<&Candidate>, named: bool, cwd: Option<&Path>) -> Pinned {
        let entry = |name: &str, value: &[u8]| {
            let mut e = name.as_bytes().to_vec();
            e.push(b'=');
            e.extend_from_slice(value);
            e
        };
        let mut pinned = Pinned::new();
        match used.and_then(|c| c.git_dir.as_deref().map(|gd| (c, gd))) {
            Some((candidate, git_dir)) => {
                pinned.push(entry("GIT_DIR", git_dir.as_os_str().as_bytes()));
                if !named && candidate.entry == candidate.top.join(".git") {
                    let top = candidate.top.as_os_str().as_bytes();
                    pinned.push(entry("GIT_WORK_TREE", top));
                }
            }
            None => {
                pinned.push(entry("GIT_DIR", NO_REPOSITORY.as_bytes()));
                // A colon would split the list: then only GIT_DIR holds.
                if let Some(cwd) = cwd.filter(|c| !c.as_os_str().as_bytes().contains(&b':')) {
                    pinned.push(entry("GIT_CEILING_DIRECTORIES", cwd.as_os_str().as_bytes()));
                }
            }
        }
        let at = self
            .session
            .config_count
            .as_deref()
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.parse::<usize>().ok())
            .unwrap_or(0);
        pinned.push(entry("GIT_CONFIG_COUNT", (at + 1).to_string().as_bytes()));
        pinned.push(entry(
            &format!("GIT_CONFIG_KEY_{at}"),
            b"protocol.file.allow",
        ));
        pinned.push(entry(&format!("GIT_CONFIG_VALUE_{at}"), b"never"));
        pinned
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
    fn may_escalate(&self, exec: &ExecContext) -> Result<Pinned, String> {
        if self.roots.is_empty() {
            // Nothing is writable: no repository can have been planted.
            return Ok(Pinned::new());
        }
        let cwd = exec.cwd.path().display().to_string();
        let unknown = |e: std::io::Error| {
            format!("cannot tell which git repository {cwd} is in ({e}), so it could be one the sandbox wrote")
        };
        let dir = exec.cwd.fd().map_err(unknown)?;
        let (found, named) = if is_git(exec) {
            let options = GitOptions::parse(&exec.request.argv);
            let found = git::candidates_for_command(dir, &options, self.session.git_dir.as_deref())
                .map_err(unknown)?;
            found
                .iter()
                .try_for_each(|candidate| self.judge(candidate))?;
            if let Some(given) = &options.git_dir {
                // git opens the option's path again, over GIT_DIR: it must name what was
                // checked then too.
                fixed_path(given, &found)?;
            }
            let named = options.git_dir.is_some() || self.session.git_dir.is_some();
            (found, named)
        } else {
            let found = git::candidates(dir).map_err(unknown)?;
            found
                .iter()
                .try_for_each(|candidate| self.judge(candidate))?;
            (found, false)
        };
        let used = found.last().filter(|c| c.valid);
        Ok(self.pin(used, named, exec.cwd.resolved().ok()))
    }
}

/// Checks that the path a `--git-dir` option gives will name, when git opens it again,
/// what the guard checked (`found`): an absolute path that exists with no link on its way
/// (so its folders are the checked entry's, which the judgement held unchangeable).
fn fixed_path(given: &[u8], found: &[Candidate]) -> Result<(), String> {
    let path = Path::new(std::ffi::OsStr::from_bytes(given));
    let trimmed: PathBuf = path.components().collect();
    let same = path.is_absolute()
        && !given
            .split(|&b| b == b'/')
            .any(|part| part == b"." || part == b"..")
        && found.len() == 1
        && found[0].entry == trimmed;
    if same {
        Ok(())
    } else {
        Err(format!(
            "git's --git-dir {} is not the absolute path of an existing repository without \
             links, so what git opens could differ from what was checked; name the git dir \
             by its real absolute path",
            String::from_utf8_lossy(given)
        ))
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
        RepositoryGuard::new(
            vec![s.root.clone()],
            writable,
            verified,
            SessionGit::default(),
        )
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

    /// The entries `NAME=value` as text.
    fn entries(pairs: &[(&str, &str)]) -> Pinned {
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}").into_bytes())
            .collect()
    }

    /// What an escalation in the repository with work tree `top` is pinned to.
    fn pinned_to(top: &Path) -> Pinned {
        let (gd, top) = (top.join(".git"), top.display().to_string());
        entries(&[
            ("GIT_DIR", &gd.display().to_string()),
            ("GIT_WORK_TREE", &top),
            ("GIT_CONFIG_COUNT", "1"),
            ("GIT_CONFIG_KEY_0", "protocol.file.allow"),
            ("GIT_CONFIG_VALUE_0", "never"),
        ])
    }

    #[test]
    fn a_repository_outside_the_writable_roots_may_be_escalated_in_and_is_pinned() {
        let s = setup();
        let g = guard(&s, Verified::default());
        let repo = s.outside.join("repo");
        let sub = repo.join("sub");
        std::fs::create_dir(&sub).unwrap();
        assert_eq!(
            g.may_escalate(&exec("/usr/bin/git", &["git", "status"], &sub)),
            Ok(pinned_to(&repo))
        );
        // No repository: git must not find one later.
        let none = entries(&[
            ("GIT_DIR", NO_REPOSITORY),
            ("GIT_CEILING_DIRECTORIES", &s.outside.display().to_string()),
            ("GIT_CONFIG_COUNT", "1"),
            ("GIT_CONFIG_KEY_0", "protocol.file.allow"),
            ("GIT_CONFIG_VALUE_0", "never"),
        ]);
        assert_eq!(
            g.may_escalate(&exec("/usr/bin/make", &["make"], &s.outside)),
            Ok(none)
        );
        // The guard's config entry goes after the session's own.
        let g = RepositoryGuard::new(
            vec![s.root.clone()],
            Arc::new(|_: &Path| false),
            Verified::default(),
            SessionGit {
                git_dir: None,
                config_count: Some(b"2".to_vec()),
            },
        );
        let pinned = g
            .may_escalate(&exec("/usr/bin/git", &["git", "status"], &repo))
            .unwrap();
        assert_eq!(
            pinned[2..],
            entries(&[
                ("GIT_CONFIG_COUNT", "3"),
                ("GIT_CONFIG_KEY_2", "protocol.file.allow"),
                ("GIT_CONFIG_VALUE_2", "never"),
            ])
        );
    }

    #[test]
    fn a_git_dir_option_must_name_the_checked_repository_by_its_real_path() {
        let s = setup();
        let g = guard(&s, Verified::default());
        let repo = s.outside.join("repo");
        let gd = repo.join(".git");
        let cwd = s.root.clone();
        let exact = format!("--git-dir={}", gd.display());
        let pinned = g
            .may_escalate(&exec("/usr/bin/git", &["git", &exact, "status"], &cwd))
            .unwrap();
        // Named by the option: git takes the work tree as it would without the pin.
        assert_eq!(pinned[0], format!("GIT_DIR={}", gd.display()).into_bytes());
        assert!(!pinned.iter().any(|e| e.starts_with(b"GIT_WORK_TREE=")));
        // A link in a writable root (swappable after the check), a relative path, a path
        // that names nothing yet: refused.
        std::os::unix::fs::symlink(&gd, s.root.join("link")).unwrap();
        let link = format!("{}/link", s.root.display());
        let later = format!("{}/later.git", s.root.display());
        for given in [link.as_str(), "../outside/repo/.git", later.as_str()] {
            let err = g
                .may_escalate(&exec(
                    "/usr/bin/git",
                    &["git", "--git-dir", given, "status"],
                    &cwd,
                ))
                .unwrap_err();
            assert_eq!(
                err,
                format!(
                    "git's --git-dir {given} is not the absolute path of an existing repository \
                     without links, so what git opens could differ from what was checked; name \
                     the git dir by its real absolute path"
                )
            );
        }
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
            Ok(pinned_to(&cwd))
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
            Ok(pinned_to(&repo))
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
            SessionGit::default(),
        );
        assert_eq!(
            g.may_escalate(&exec("/usr/bin/git", &["git"], &s.root.join("repo"))),
            Ok(Pinned::new())
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
