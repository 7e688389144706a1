//! Building our patched zsh and bash (`execgate shells build`): Debian's own source packages
//! plus one small patch each (`shells/*.patch`, embedded in `execgate`), into a folder of
//! patched shells (the per-user cache's `shells/`, or a prefix).
//!
//! Cached: a shell is rebuilt only when its patch or this recipe changed (a SHA-256 of both
//! is kept next to the binary as `.NAME.stamp`). Safe to run concurrently: a lock in the
//! build folder serialises runs, and a run that waited finds the work done. Every failure
//! names the step that failed and shows the end of its log.

mod apt;
pub mod progress;

use anyhow::{bail, Context};
use progress::Progress;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Bumped whenever the recipe below changes in a way that changes the binaries.
const RECIPE: &str = "execgate shells recipe 1: bookworm sources, zsh --disable-dynamic \
--disable-etcdir --disable-gdbm --disable-pcre --disable-cap --enable-multibyte \
--with-tcsetpgrp + regex system mathfunc param/private zselect static; bash \
--without-bash-malloc --disable-nls";

/// A shell we patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    /// zsh 5.9.
    Zsh,
    /// bash 5.2.
    Bash,
}

impl Shell {
    /// Its name (binary and Debian source package).
    pub fn name(self) -> &'static str {
        match self {
            Shell::Zsh => "zsh",
            Shell::Bash => "bash",
        }
    }

    /// Our patch.
    fn patch(self) -> &'static str {
        match self {
            Shell::Zsh => include_str!("../../shells/zsh-exec-wrapper.patch"),
            Shell::Bash => include_str!("../../shells/bash-exec-wrapper.patch"),
        }
    }

    /// The cache key of its build: the recipe and the patch.
    fn stamp(self) -> String {
        let mut digest = Sha256::new();
        digest.update(RECIPE.as_bytes());
        digest.update([0]);
        digest.update(self.patch().as_bytes());
        digest
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Whether `out/NAME` is built from the current patch and recipe.
pub fn up_to_date(out: &Path, shell: Shell) -> bool {
    let stamp = std::fs::read_to_string(out.join(format!(".{}.stamp", shell.name())));
    out.join(shell.name()).is_file() && stamp.is_ok_and(|s| s.trim() == shell.stamp())
}

/// Builds each of `shells` that is not up to date into `out` (build trees in
/// `out/.build`), reporting to `progress`.
pub fn build(out: &Path, shells: &[Shell], progress: &mut Progress) -> anyhow::Result<()> {
    // Absolute: the steps run in other folders (`patch -d`, `configure`).
    let out =
        &std::path::absolute(out).with_context(|| format!("cannot resolve {}", out.display()))?;
    let todo: Vec<Shell> = shells
        .iter()
        .copied()
        .filter(|s| !up_to_date(out, *s))
        .collect();
    if todo.is_empty() {
        return Ok(());
    }
    let work = out.join(".build");
    std::fs::create_dir_all(&work)
        .with_context(|| format!("cannot create the build folder {}", work.display()))?;
    let lock_path = work.join(".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open the build lock {}", lock_path.display()))?;
    progress.note(&format!("taking the build lock {}", lock_path.display()));
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .with_context(|| format!("cannot take the build lock {}", lock_path.display()))?;
    // Another run may have finished the work while this one waited.
    let todo: Vec<Shell> = todo.into_iter().filter(|s| !up_to_date(out, *s)).collect();
    if todo.is_empty() {
        return Ok(());
    }
    // Steps: tools, then per shell fetch, unpack, patch, configure, make, install.
    progress.set_total(1 + 6 * todo.len() as u64);
    progress.step("installing build tools");
    apt::install_build_tools()?;
    for shell in todo {
        build_one(&work, out, shell, progress)?;
    }
    Ok(())
}

fn build_one(work: &Path, out: &Path, shell: Shell, progress: &mut Progress) -> anyhow::Result<()> {
    let name = shell.name();
    let src_dir = work.join("src");
    progress.step(&format!("fetching Debian's {name} sources"));
    apt::fetch_sources(&src_dir, name, &work.join(format!("{name}-fetch.log")))?;

    progress.step(&format!("unpacking {name}"));
    let dsc = newest_dsc(&src_dir, name)?;
    let tree = work.join(name);
    if tree.exists() {
        std::fs::remove_dir_all(&tree)
            .with_context(|| format!("cannot remove the old tree {}", tree.display()))?;
    }
    logged(
        Command::new("dpkg-source").arg("-x").arg(&dsc).arg(&tree),
        &work.join(format!("{name}-unpack.log")),
        &format!("unpacking {}", dsc.display()),
    )?;

    progress.step(&format!("applying our {name} patch"));
    let patch_file = work.join(format!("{name}-exec-wrapper.patch"));
    std::fs::write(&patch_file, shell.patch())
        .with_context(|| format!("cannot write {}", patch_file.display()))?;
    logged(
        Command::new("patch")
            .arg("-d")
            .arg(&tree)
            .args(["-p1", "--forward", "--no-backup-if-mismatch", "-i"])
            .arg(&patch_file),
        &work.join(format!("{name}-patch.log")),
        &format!("applying {name}-exec-wrapper.patch"),
    )?;

    let log = work.join(format!("{name}-build.log"));
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    progress.step(&format!("configuring {name}"));
    let binary = match shell {
        Shell::Zsh => {
            // --disable-dynamic links every module that can be linked statically into the
            // binary, so it runs without an installed module folder; --disable-etcdir: no
            // global startup files (the session decides).
            logged(
                Command::new("./configure").current_dir(&tree).args([
                    "--disable-dynamic",
                    "--disable-etcdir",
                    "--disable-gdbm",
                    "--disable-pcre",
                    "--disable-cap",
                    "--enable-multibyte",
                    "--with-tcsetpgrp",
                ]),
                &log,
                "configuring zsh",
            )?;
            select_zsh_modules(&tree.join("config.modules"))?;
            progress.step("building zsh");
            logged(
                Command::new("make")
                    .current_dir(&tree)
                    .arg(format!("-j{jobs}"))
                    .args(["-C", "Src"]),
                &log,
                "building zsh",
            )?;
            tree.join("Src/zsh")
        }
        Shell::Bash => {
            logged(
                Command::new("./configure")
                    .current_dir(&tree)
                    .args(["--without-bash-malloc", "--disable-nls"]),
                &log,
                "configuring bash",
            )?;
            progress.step("building bash");
            logged(
                Command::new("make")
                    .current_dir(&tree)
                    .arg(format!("-j{jobs}"))
                    .arg("bash"),
                &log,
                "building bash",
            )?;
            tree.join("bash")
        }
    };

    progress.step(&format!("installing {name} into {}", out.display()));
    // The shell must work from there, with no installation.
    let ok = Command::new(&binary)
        .args(["-c", "exit 0"])
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        bail!(
            "installing {name}: {} -c 'exit 0' did not succeed",
            binary.display()
        );
    }
    let temp = out.join(format!(".{name}.new"));
    std::fs::copy(&binary, &temp).with_context(|| format!("cannot write {}", temp.display()))?;
    std::fs::rename(&temp, out.join(name))
        .with_context(|| format!("cannot install {}", out.join(name).display()))?;
    std::fs::write(out.join(format!(".{name}.stamp")), shell.stamp() + "\n")
        .with_context(|| format!("cannot write the stamp of {name}"))?;
    progress.done(&format!("built {}", out.join(name).display()));
    Ok(())
}

/// Without dynamic loading, modules that are only ever loaded dynamically would be missing:
/// link in the ones scripts commonly rely on (`=~` needs zsh/regex). zsh/files and zsh/stat
/// stay out: they would shadow rm, mv, stat... with builtins, which never reach execve.
fn select_zsh_modules(config: &Path) -> anyhow::Result<()> {
    const WANTED: [&str; 5] = [
        "zsh/regex",
        "zsh/system",
        "zsh/mathfunc",
        "zsh/param/private",
        "zsh/zselect",
    ];
    let text = std::fs::read_to_string(config).with_context(|| {
        format!(
            "selecting static zsh modules: cannot read {}",
            config.display()
        )
    })?;
    let mut changed = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let module = line
                .strip_prefix("name=")
                .and_then(|rest| rest.split(' ').next());
            match module {
                Some(m) if WANTED.contains(&m) && line.contains(" link=no") => {
                    changed += 1;
                    line.replacen(" link=no", " link=static", 1)
                }
                Some(m) if WANTED.contains(&m) && line.contains(" link=static") => {
                    changed += 1;
                    line.to_string()
                }
                _ => line.to_string(),
            }
        })
        .collect();
    if changed != WANTED.len() {
        bail!("selecting static zsh modules: config.modules does not list the expected modules");
    }
    std::fs::write(config, lines.join("\n") + "\n")
        .with_context(|| format!("cannot write {}", config.display()))
}

/// The newest `NAME_*.dsc` in `dir`.
fn newest_dsc(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let prefix = format!("{name}_");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".dsc"))
        })
        .collect();
    found.sort();
    found
        .pop()
        .with_context(|| format!("no {name} source package in {}", dir.display()))
}

/// Runs `cmd` with its output appended to `log`; a failure names `step` and shows the
/// log's last lines.
fn logged(cmd: &mut Command, log: &Path, step: &str) -> anyhow::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open the log {}", log.display()))?;
    let err = file.try_clone().context("cannot duplicate the log file")?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .status()
        .with_context(|| format!("{step}: cannot run {:?}", cmd.get_program()))?;
    if status.success() {
        return Ok(());
    }
    bail!(
        "{step} failed ({status}); the end of {}:\n{}",
        log.display(),
        tail(log, 30)
    )
}

/// The last `n` lines of `path`.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_changes_with_the_patch_and_differs_per_shell() {
        assert_ne!(Shell::Zsh.stamp(), Shell::Bash.stamp());
        assert_eq!(Shell::Zsh.stamp().len(), 64);
    }

    #[test]
    fn a_shell_is_up_to_date_only_with_its_binary_and_current_stamp() {
        let out = tempfile::tempdir().unwrap();
        assert!(!up_to_date(out.path(), Shell::Zsh));
        std::fs::write(out.path().join("zsh"), "").unwrap();
        std::fs::write(out.path().join(".zsh.stamp"), "old\n").unwrap();
        assert!(!up_to_date(out.path(), Shell::Zsh));
        std::fs::write(out.path().join(".zsh.stamp"), Shell::Zsh.stamp() + "\n").unwrap();
        assert!(up_to_date(out.path(), Shell::Zsh));
        assert!(!up_to_date(out.path(), Shell::Bash));
    }

    #[test]
    fn the_static_zsh_modules_are_selected_or_the_step_fails() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.modules");
        let mut text = String::from("name=zsh/files modfile=Src/Modules/files.mdd link=no\n");
        for m in ["regex", "system", "mathfunc", "param/private", "zselect"] {
            text += &format!("name=zsh/{m} modfile=Src/Modules/x.mdd link=no auto=no\n");
        }
        std::fs::write(&config, &text).unwrap();
        select_zsh_modules(&config).unwrap();
        let after = std::fs::read_to_string(&config).unwrap();
        assert_eq!(after.matches("link=static").count(), 5);
        assert!(after.starts_with("name=zsh/files modfile=Src/Modules/files.mdd link=no\n"));
        std::fs::write(&config, "name=zsh/regex modfile=x link=no\n").unwrap();
        assert!(select_zsh_modules(&config).is_err());
    }
}
