//! What building the shells needs from apt: the build tools, a `deb-src` entry, and the
//! source packages (downloaded once into the build folder's `src/`). Runs `apt-get` as root
//! (through `sudo` when not root).

use anyhow::{bail, Context};
use std::path::Path;
use std::process::{Command, Stdio};

/// Only what fetching, unpacking and configuring need (not `apt-get build-dep`, which pulls
/// in the documentation toolchains): dpkg-source, a C toolchain, patch, a terminal library
/// for zsh's configure, xz for the tarballs.
const BUILD_TOOLS: [&str; 7] = [
    "dpkg-dev",
    "gcc",
    "make",
    "libc6-dev",
    "patch",
    "libncurses-dev",
    "xz-utils",
];

/// `program args...` as root: directly when we are root, through `sudo` otherwise.
fn as_root(program: &str) -> Command {
    if nix::unistd::geteuid().is_root() {
        Command::new(program)
    } else {
        let mut cmd = Command::new("sudo");
        cmd.arg(program);
        cmd
    }
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn apt_update() -> bool {
    succeeds(as_root("apt-get").args(["update", "-qq"]))
}

/// Installs the build tools that are missing.
pub fn install_build_tools() -> anyhow::Result<()> {
    let missing: Vec<&str> = BUILD_TOOLS
        .into_iter()
        .filter(|pkg| !succeeds(Command::new("dpkg").args(["-s", pkg])))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let install = || {
        succeeds(
            as_root("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y", "-qq"])
                .args(&missing),
        )
    };
    // A fresh machine may not have fetched its package lists yet.
    if install() || (apt_update() && install()) {
        return Ok(());
    }
    bail!(
        "installing build tools failed: run `sudo apt-get install {}`",
        missing.join(" ")
    )
}

/// Downloads the source package `name` into `dir` unless it is there; `log` gets apt's
/// output.
pub fn fetch_sources(dir: &Path, name: &str, log: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let have = std::fs::read_dir(dir)?.filter_map(Result::ok).any(|e| {
        e.file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(&format!("{name}_")) && n.ends_with(".dsc"))
    });
    if have {
        return Ok(());
    }
    if !have_deb_src() {
        enable_deb_src(dir)?;
    }
    let fetch = || -> anyhow::Result<bool> {
        let out = std::fs::File::create(log)
            .with_context(|| format!("cannot create the log {}", log.display()))?;
        let err = out.try_clone()?;
        Ok(Command::new("apt-get")
            .args(["source", "--download-only", "-qq", name])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .is_ok_and(|s| s.success()))
    };
    // An outdated package list (the deb-src entry exists but was never fetched).
    if fetch()? || (apt_update() && fetch()?) {
        return Ok(());
    }
    bail!(
        "apt-get source {name} failed; the end of {}:\n{}",
        log.display(),
        super::tail(log, 30)
    )
}

const SOURCES_LIST: &str = "/etc/apt/sources.list";
const SOURCES_DIR: &str = "/etc/apt/sources.list.d";

/// The apt sources files: `(path, text)`.
fn sources() -> Vec<(std::path::PathBuf, String)> {
    let mut files = vec![std::path::PathBuf::from(SOURCES_LIST)];
    if let Ok(entries) = std::fs::read_dir(SOURCES_DIR) {
        let mut more: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    files
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(&p).ok().map(|t| (p, t)))
        .collect()
}

fn have_deb_src() -> bool {
    sources().iter().any(|(path, text)| {
        let deb822 = path.extension().is_some_and(|e| e == "sources");
        text.lines().any(|line| {
            let line = line.trim_start();
            if deb822 {
                line.to_ascii_lowercase().starts_with("types:")
                    && line.split_whitespace().any(|t| t == "deb-src")
            } else {
                line.starts_with("deb-src ") || line.starts_with("deb-src\t")
            }
        })
    })
}

/// A `deb-src` twin of every Debian entry: deb822 stanzas with `Types: deb-src`, or
/// one-line `deb-src` lines.
pub(crate) fn deb_src_entries(files: &[(std::path::PathBuf, String)]) -> (String, String) {
    let mut deb822 = String::new();
    let mut oneline = String::new();
    for (path, text) in files {
        if path.extension().is_some_and(|e| e == "sources") {
            for stanza in text.split("\n\n") {
                let debian = stanza
                    .lines()
                    .any(|l| l.starts_with("URIs:") && l.contains("debian"));
                if !debian {
                    continue;
                }
                let stanza: Vec<String> = stanza
                    .lines()
                    .map(|l| {
                        if l.starts_with("Types:") {
                            "Types: deb-src".to_string()
                        } else {
                            l.to_string()
                        }
                    })
                    .collect();
                deb822 += &(stanza.join("\n") + "\n\n");
            }
        } else if path.extension().is_some_and(|e| e == "list") || path.ends_with("sources.list") {
            for line in text.lines() {
                let trimmed = line.trim_start();
                if let Some(rest) = trimmed.strip_prefix("deb") {
                    if rest.starts_with(char::is_whitespace) && rest.contains("debian") {
                        oneline += &format!("deb-src{rest}\n");
                    }
                }
            }
        }
    }
    (deb822, oneline)
}

/// Adds the entries of [`deb_src_entries`] to apt's sources (written first under `work`)
/// and updates its lists.
fn enable_deb_src(work: &Path) -> anyhow::Result<()> {
    let (deb822, oneline) = deb_src_entries(&sources());
    let (text, target) = if !deb822.is_empty() {
        (deb822, format!("{SOURCES_DIR}/execgate-deb-src.sources"))
    } else if !oneline.is_empty() {
        (oneline, format!("{SOURCES_DIR}/execgate-deb-src.list"))
    } else {
        bail!(
            "enabling deb-src: no Debian 'deb' entry found in /etc/apt to derive a deb-src \
             entry from; add one for Debian bookworm"
        );
    };
    let temp = work.join(".execgate-deb-src");
    std::fs::write(&temp, text)
        .with_context(|| format!("cannot write the deb-src entry {}", temp.display()))?;
    let installed = succeeds(
        as_root("install")
            .args(["-m", "0644"])
            .arg(&temp)
            .arg(&target),
    );
    let _ = std::fs::remove_file(&temp);
    if !installed || !apt_update() {
        bail!("enabling deb-src: cannot install {target} and update apt's lists (needs root)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn deb_src_twins_of_debian_entries_in_both_formats() {
        let files = vec![
            (
                PathBuf::from("/etc/apt/sources.list.d/debian.sources"),
                "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n\n\
                 Types: deb\nURIs: http://example.com/other\nSuites: x\n"
                    .to_string(),
            ),
            (
                PathBuf::from("/etc/apt/sources.list"),
                "# comment\ndeb http://deb.debian.org/debian bookworm main\n\
                 deb http://example.com/x y z\n"
                    .to_string(),
            ),
        ];
        let (deb822, oneline) = deb_src_entries(&files);
        assert_eq!(
            deb822,
            "Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n\n"
        );
        assert_eq!(
            oneline,
            "deb-src http://deb.debian.org/debian bookworm main\n"
        );
    }
}
