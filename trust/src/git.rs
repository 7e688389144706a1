//! Which git repository a program would use, found the way git finds it, from an open
//! directory: `DIR/.git` folders, `.git` files (`gitdir: PATH`), `.git` symlinks, a folder
//! that is itself a git dir (a bare repository), walking up to `/`; `-C`, `--git-dir` and
//! `--bare` in a git command line; and each git dir's `commondir` (where a worktree's
//! config and hooks live).
//!
//! Everything is opened relative to file descriptors (`openat`), never re-resolved by
//! path, so what is reported is what was looked at; paths are read back from the open
//! descriptors (`/proc/self/fd`). Nothing here runs git.
//!
//! Where git would skip an entry (a `.git` folder without `HEAD`, `objects` and `refs`),
//! the walk goes on as git's does, but reports the entry too ([`Candidate::valid`] false):
//! sandboxed code that can write an entry can make it valid the moment after it was
//! looked at, so a caller judging safety must judge every entry on the way.

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstat, FileStat, Mode, SFlag};
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The most a `.git` file or a `commondir` file may hold; git's are one short line.
const POINTER_MAX: usize = 4096;

/// How many folders up the walk goes at most (a path has far fewer components).
const MAX_LEVELS: usize = 4096;

/// One place git may take its repository from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// What was found: `DIR/.git` (a folder, a file or a link to either), a folder that is
    /// itself a git dir, or the path a `--git-dir` option or `GIT_DIR` names.
    pub entry: PathBuf,
    /// The folder a command in this repository works from: the one holding `.git`, or the
    /// git dir itself for a bare repository.
    pub top: PathBuf,
    /// The git dir the entry leads to, as the kernel names it now; `None` when it leads
    /// nowhere (a `.git` file naming nothing).
    pub git_dir: Option<PathBuf>,
    /// The git dir's common dir (named by its `commondir` file), else the git dir.
    pub common_dir: Option<PathBuf>,
    /// Whether git would use it: `HEAD` in the git dir, `objects` and `refs` in the
    /// common dir.
    pub valid: bool,
}

/// The options of a git command line that choose its repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitOptions {
    /// Each `-C DIR`, in order (each relative to the one before).
    pub chdir: Vec<Vec<u8>>,
    /// `--git-dir DIR` / `--git-dir=DIR` (the last one).
    pub git_dir: Option<Vec<u8>>,
    /// `--bare`: the working directory is the git dir.
    pub bare: bool,
}

impl GitOptions {
    /// Reads git's global options (those before the subcommand) from `argv` (`argv[0]` is
    /// the program). Options that take a value skip it, so a value is never read as an
    /// option.
    pub fn parse(argv: &[Vec<u8>]) -> Self {
        let mut options = GitOptions::default();
        let mut args = argv.iter().skip(1);
        while let Some(arg) = args.next() {
            let arg = arg.as_slice();
            if !arg.starts_with(b"-") || arg == b"-" {
                break;
            }
            match arg {
                b"--" => break,
                b"-C" => match args.next() {
                    Some(dir) => options.chdir.push(dir.clone()),
                    None => break,
                },
                b"--git-dir" => options.git_dir = args.next().cloned(),
                b"--bare" => options.bare = true,
                // Options whose value is the next argument.
                b"-c" | b"--work-tree" | b"--namespace" | b"--super-prefix" | b"--config-env"
                | b"--attr-source" | b"--list-cmds" => {
                    args.next();
                }
                _ => {
                    if let Some(dir) = arg.strip_prefix(b"--git-dir=") {
                        options.git_dir = Some(dir.to_vec());
                    }
                    // Everything else (`--work-tree=DIR`, `-p`, `--no-pager`, ...) takes
                    // its value, if any, in the same argument.
                }
            }
        }
        options
    }
}

/// The repository git would use in `dir` (a path), if any: the last of
/// [`candidates`], when valid.
pub fn discover(dir: &Path) -> io::Result<Option<Candidate>> {
    let fd = open_dir_path(dir)?;
    let found = candidates(fd.as_fd())?;
    Ok(found.into_iter().last().filter(|c| c.valid))
}

/// Every place git may take its repository from when it starts in the open directory
/// `start`, walking up: each `.git` entry and each folder that looks like a git dir
/// (`HEAD` in it), up to and including the first one git would use. Empty when there is
/// none up to `/`.
pub fn candidates(start: BorrowedFd<'_>) -> io::Result<Vec<Candidate>> {
    let mut found = Vec::new();
    let mut level = reopen(start)?;
    for _ in 0..MAX_LEVELS {
        if let Some(candidate) = dot_git(level.as_fd())? {
            let valid = candidate.valid;
            found.push(candidate);
            if valid {
                return Ok(found);
            }
        }
        if exists(level.as_fd(), "HEAD")? {
            let candidate = git_dir_candidate(level.as_fd(), path_of(level.as_fd())?)?;
            let valid = candidate.valid;
            found.push(candidate);
            if valid {
                return Ok(found);
            }
        }
        let parent = open_dir(level.as_fd(), OsStr::new(".."))?;
        if same_file(&fstat(&level)?, &fstat(&parent)?) {
            return Ok(found);
        }
        level = parent;
    }
    Err(io::Error::other("the folder is nested too deeply"))
}

/// The repository a git command with `options` uses when started in `cwd` (an open
/// directory; `session_git_dir` is `GIT_DIR` of the environment git gets): the git dir an
/// option or the variable names, else [`candidates`] from the folder `-C` leads to.
pub fn candidates_for_command(
    cwd: BorrowedFd<'_>,
    options: &GitOptions,
    session_git_dir: Option<&[u8]>,
) -> io::Result<Vec<Candidate>> {
    let mut base = reopen(cwd)?;
    for dir in &options.chdir {
        // git ignores `-C ""`.
        if !dir.is_empty() {
            base = open_dir(base.as_fd(), OsStr::from_bytes(dir))?;
        }
    }
    let named = options.git_dir.as_deref().or(session_git_dir);
    if let Some(git_dir) = named {
        let entry = OsStr::from_bytes(git_dir);
        return match open_path(base.as_fd(), entry) {
            Ok(fd) => Ok(vec![named_candidate(base.as_fd(), fd, entry)?]),
            Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        };
    }
    if options.bare {
        let path = path_of(base.as_fd())?;
        return Ok(vec![git_dir_candidate(base.as_fd(), path)?]);
    }
    candidates(base.as_fd())
}

/// `DIR/.git` of the open folder `level`, when there is one.
fn dot_git(level: BorrowedFd<'_>) -> io::Result<Option<Candidate>> {
    let fd = match open_path(level, ".git") {
        Ok(fd) => fd,
        // Missing, or a link to nothing: git sees no `.git` here either.
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let top = path_of(level)?;
    let entry = top.join(".git");
    let st = fstat(&fd)?;
    if is_dir(&st) {
        let mut candidate = git_dir_candidate(fd.as_fd(), path_of(fd.as_fd())?)?;
        candidate.entry = entry;
        candidate.top = top;
        return Ok(Some(candidate));
    }
    if is_regular(&st) {
        return Ok(Some(gitfile_candidate(level, ".git", entry, top)?));
    }
    // A fifo, socket or device named `.git`: git does not use it, but sandboxed code that
    // made it can replace it.
    Ok(Some(Candidate {
        entry,
        top,
        git_dir: None,
        common_dir: None,
        valid: false,
    }))
}

/// The candidate for a git dir named by `--git-dir` or `GIT_DIR` (`fd`, opened from
/// `base`): a folder, or a `.git`-style file pointing at one.
fn named_candidate(base: BorrowedFd<'_>, fd: OwnedFd, name: &OsStr) -> io::Result<Candidate> {
    let st = fstat(&fd)?;
    let entry = path_of(fd.as_fd())?;
    if is_regular(&st) {
        let top = entry.parent().map_or(entry.clone(), Path::to_path_buf);
        return gitfile_candidate(base, name, entry, top);
    }
    let mut candidate = git_dir_candidate(fd.as_fd(), entry.clone())?;
    // Where `execgate trust` would find it: the folder holding a `.git`, else itself.
    candidate.top = match entry.file_name() {
        Some(name) if name == ".git" => entry.parent().map_or(entry.clone(), Path::to_path_buf),
        _ => entry.clone(),
    };
    candidate.entry = entry;
    Ok(candidate)
}

/// The candidate for a `.git` file `name` in `dir`: the git dir its `gitdir:` line names
/// (relative to `dir`).
fn gitfile_candidate(
    dir: BorrowedFd<'_>,
    name: impl AsRef<OsStr>,
    entry: PathBuf,
    top: PathBuf,
) -> io::Result<Candidate> {
    let nowhere = Candidate {
        entry: entry.clone(),
        top: top.clone(),
        git_dir: None,
        common_dir: None,
        valid: false,
    };
    let Some(text) = read_small(dir, name.as_ref())? else {
        return Ok(nowhere);
    };
    let Some(target) = gitfile_target(&text) else {
        return Ok(nowhere);
    };
    match open_dir(dir, OsStr::from_bytes(target)) {
        Ok(fd) => {
            let mut candidate = git_dir_candidate(fd.as_fd(), path_of(fd.as_fd())?)?;
            candidate.entry = entry;
            candidate.top = top;
            Ok(candidate)
        }
        Err(e) if is_missing(&e) => Ok(nowhere),
        Err(e) => Err(e),
    }
}

/// The path after `gitdir: ` in a `.git` file's text, trailing whitespace removed.
fn gitfile_target(text: &[u8]) -> Option<&[u8]> {
    let rest = text.strip_prefix(b"gitdir: ")?;
    let end = rest
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |at| at + 1);
    let target = &rest[..end];
    (!target.is_empty()).then_some(target)
}

/// The candidate for the open git dir `git_dir` (named `path`): its common dir and whether
/// git would use it.
fn git_dir_candidate(git_dir: BorrowedFd<'_>, path: PathBuf) -> io::Result<Candidate> {
    let common = match read_small(git_dir, OsStr::new("commondir"))? {
        Some(text) => {
            let end = text
                .iter()
                .rposition(|b| !b.is_ascii_whitespace())
                .map_or(0, |at| at + 1);
            let target = &text[..end];
            if target.is_empty() {
                None
            } else {
                match open_dir(git_dir, OsStr::from_bytes(target)) {
                    Ok(fd) => Some(fd),
                    // A commondir naming nothing: git refuses the repository.
                    Err(_) => {
                        return Ok(Candidate {
                            entry: path.clone(),
                            top: path.clone(),
                            git_dir: Some(path),
                            common_dir: None,
                            valid: false,
                        })
                    }
                }
            }
        }
        None => None,
    };
    let (common_path, valid) = match &common {
        Some(fd) => (
            path_of(fd.as_fd())?,
            exists(git_dir, "HEAD")? && has_store(fd.as_fd())?,
        ),
        None => (
            path.clone(),
            exists(git_dir, "HEAD")? && has_store(git_dir)?,
        ),
    };
    Ok(Candidate {
        entry: path.clone(),
        top: path.clone(),
        git_dir: Some(path),
        common_dir: Some(common_path),
        valid,
    })
}

/// Whether the open folder holds `objects` (a folder) and `refs`.
fn has_store(dir: BorrowedFd<'_>) -> io::Result<bool> {
    let objects = match open_dir(dir, OsStr::new("objects")) {
        Ok(_) => true,
        Err(e) if is_missing(&e) => false,
        Err(e) => return Err(e),
    };
    Ok(objects && exists(dir, "refs")?)
}

/// The path the kernel gives for an open file, as it is named now.
pub(crate) fn path_of(fd: BorrowedFd<'_>) -> io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Opens `path` as a directory (`O_PATH`), symlinks followed.
pub(crate) fn open_dir_path(path: &Path) -> io::Result<OwnedFd> {
    openat(
        nix::fcntl::AT_FDCWD,
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

/// Opens `name` under `dir` as a directory (`O_PATH`), symlinks followed.
fn open_dir(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    openat(
        dir,
        name,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

/// Opens `name` under `dir` (`O_PATH`), whatever it is, symlinks followed.
fn open_path(dir: BorrowedFd<'_>, name: impl AsRef<OsStr>) -> Result<OwnedFd, Errno> {
    openat(
        dir,
        name.as_ref(),
        OFlag::O_PATH | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// A new descriptor for the same open directory.
fn reopen(dir: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    open_dir(dir, OsStr::new("."))
}

/// Whether `name` exists under `dir` (symlinks followed).
fn exists(dir: BorrowedFd<'_>, name: &str) -> io::Result<bool> {
    match open_path(dir, name) {
        Ok(_) => Ok(true),
        Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The contents of the regular file `name` under `dir`, if it is one and holds at most
/// [`POINTER_MAX`] bytes; `None` when it is missing, not a regular file, or larger.
fn read_small(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<Vec<u8>>> {
    // O_NONBLOCK: a fifo planted under the name must not hang the caller.
    let fd = match openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) | Err(Errno::ENOTDIR) | Err(Errno::EISDIR) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if !is_regular(&fstat(&fd)?) {
        return Ok(None);
    }
    let mut text = Vec::new();
    std::fs::File::from(fd)
        .take(POINTER_MAX as u64 + 1)
        .read_to_end(&mut text)?;
    Ok((text.len() <= POINTER_MAX).then_some(text))
}

fn is_missing(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(n) if n == Errno::ENOENT as i32 || n == Errno::ENOTDIR as i32)
}

fn is_dir(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

fn is_regular(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG
}

fn same_file(a: &FileStat, b: &FileStat) -> bool {
    a.st_dev == b.st_dev && a.st_ino == b.st_ino
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) {
        let status = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("HOME", dir)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    }

    fn scratch() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        (tmp, root)
    }

    fn from(dir: &Path) -> Vec<Candidate> {
        candidates(open_dir_path(dir).unwrap().as_fd()).unwrap()
    }

    #[test]
    fn a_work_tree_is_found_from_a_subfolder() {
        let (_tmp, root) = scratch();
        git(&root, &["init", "-q", "repo"]);
        let sub = root.join("repo/a/b");
        std::fs::create_dir_all(&sub).unwrap();
        let repo = root.join("repo");
        assert_eq!(
            from(&sub),
            [Candidate {
                entry: repo.join(".git"),
                top: repo.clone(),
                git_dir: Some(repo.join(".git")),
                common_dir: Some(repo.join(".git")),
                valid: true,
            }]
        );
        assert_eq!(discover(&sub).unwrap().unwrap().top, repo);
    }

    #[test]
    fn nothing_is_found_outside_a_repository() {
        let (_tmp, root) = scratch();
        // (The temp dir is not inside a repository on the machines the tests run on.)
        assert_eq!(from(&root), []);
        assert_eq!(discover(&root).unwrap(), None);
    }

    #[test]
    fn a_dot_git_file_leads_to_its_git_dir_and_a_worktree_to_its_common_dir() {
        let (_tmp, root) = scratch();
        git(
            &root,
            &["init", "-q", "--separate-git-dir", "sep.git", "wt"],
        );
        let found = from(&root.join("wt"));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].entry, root.join("wt/.git"));
        assert_eq!(found[0].git_dir, Some(root.join("sep.git")));
        assert_eq!(found[0].common_dir, Some(root.join("sep.git")));
        assert!(found[0].valid);

        git(&root, &["init", "-q", "main"]);
        git(
            &root.join("main"),
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@e",
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                "x",
            ],
        );
        git(&root.join("main"), &["worktree", "add", "-q", "../linked"]);
        let found = from(&root.join("linked"));
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].git_dir,
            Some(root.join("main/.git/worktrees/linked"))
        );
        assert_eq!(found[0].common_dir, Some(root.join("main/.git")));
        assert!(found[0].valid);
    }

    #[test]
    fn a_symlinked_dot_git_names_what_it_points_to() {
        let (_tmp, root) = scratch();
        git(&root, &["init", "-q", "real"]);
        std::fs::create_dir(root.join("w")).unwrap();
        std::os::unix::fs::symlink(root.join("real/.git"), root.join("w/.git")).unwrap();
        let found = from(&root.join("w"));
        assert_eq!(found[0].entry, root.join("w/.git"));
        assert_eq!(found[0].git_dir, Some(root.join("real/.git")));
        assert_eq!(found[0].top, root.join("w"));
    }

    #[test]
    fn an_invalid_dot_git_is_reported_and_the_walk_goes_on() {
        let (_tmp, root) = scratch();
        git(&root, &["init", "-q", "repo"]);
        let sub = root.join("repo/sub");
        std::fs::create_dir_all(sub.join(".git")).unwrap();
        let found = from(&sub);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].entry, sub.join(".git"));
        assert!(!found[0].valid);
        assert_eq!(found[1].git_dir, Some(root.join("repo/.git")));
        assert!(found[1].valid);
        // A `.git` file naming nothing, and a fifo.
        std::fs::remove_dir(sub.join(".git")).unwrap();
        std::fs::write(sub.join(".git"), "gitdir: nowhere\n").unwrap();
        let found = from(&sub);
        assert_eq!((found[0].git_dir.clone(), found[0].valid), (None, false));
        std::fs::remove_file(sub.join(".git")).unwrap();
        nix::unistd::mkfifo(&sub.join(".git"), Mode::from_bits_truncate(0o600)).unwrap();
        let found = from(&sub);
        assert_eq!((found[0].git_dir.clone(), found[0].valid), (None, false));
    }

    #[test]
    fn a_bare_repository_is_its_own_top() {
        let (_tmp, root) = scratch();
        git(&root, &["init", "-q", "--bare", "b.git"]);
        let found = from(&root.join("b.git/refs"));
        assert_eq!(found.last().unwrap().git_dir, Some(root.join("b.git")));
        assert_eq!(found.last().unwrap().top, root.join("b.git"));
    }

    #[test]
    fn options_choose_the_repository() {
        let (_tmp, root) = scratch();
        git(&root, &["init", "-q", "a"]);
        git(&root, &["init", "-q", "b"]);
        let cwd = open_dir_path(&root.join("a")).unwrap();
        let argv = |args: &[&str]| -> Vec<Vec<u8>> {
            std::iter::once("git")
                .chain(args.iter().copied())
                .map(|a| a.as_bytes().to_vec())
                .collect()
        };
        let pick = |args: &[&str], env: Option<&[u8]>| {
            let options = GitOptions::parse(&argv(args));
            candidates_for_command(cwd.as_fd(), &options, env)
                .unwrap()
                .last()
                .and_then(|c| c.git_dir.clone())
        };
        let (a, b) = (Some(root.join("a/.git")), Some(root.join("b/.git")));
        assert_eq!(pick(&["status"], None), a);
        assert_eq!(pick(&["-C", "../b", "status"], None), b);
        assert_eq!(pick(&["-C", "..", "-C", "b", "status"], None), b);
        assert_eq!(pick(&["--git-dir", "../b/.git", "status"], None), b);
        assert_eq!(pick(&["--git-dir=../b/.git", "status"], None), b);
        assert_eq!(pick(&["status"], Some(b"../b/.git")), b);
        // A value is not an option: `-c -C` sets a config key named -C.
        assert_eq!(pick(&["-c", "-C", "status"], None), a);
        // Options after the subcommand are the subcommand's.
        assert_eq!(pick(&["log", "-C", "../b"], None), a);
        assert_eq!(pick(&["-C", "../b/.git", "--bare", "status"], None), b);
    }
}
