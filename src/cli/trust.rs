//! `execgate trust`: trust a folder's project policy (`.execgate/`) and its git
//! repository, direnv-style, or list and revoke what is trusted.
//!
//! Trusting records digests in `~/.config/execgate/trusted.json`: of the project layer's
//! rules, hooks.json and the scripts its hooks name, and of the repository's config, the
//! files it includes and its hooks. Sessions load the layer, and escalate commands in the
//! repository when it lies in a writable root, only while those digests match.

use crate::setup::home_dir;
use anyhow::{bail, Context};
use clap::Args;
use execgate_decide::layers::{Layer, LayerKind, ProjectPolicy, Standing};
use execgate_protocol::display;
use execgate_trust::{git, Recorded, RecordedRepository, RepositoryFiles, TrustStore, Trusted};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `execgate trust`.
#[derive(Debug, Args)]
#[command(
    after_help = "Trusting DIR records what its .execgate rules, hooks.json and hook \
scripts, and its git repository's config, included files and hooks are now; sessions use \
them only while they stay so. Run it yourself, outside any execgate session, after reading \
what you trust."
)]
pub struct TrustArgs {
    /// The folder to trust (default: the current one).
    #[arg(value_name = "DIR", conflicts_with = "list")]
    dir: Option<PathBuf>,
    /// List the trusted folders and whether each is still as trusted.
    #[arg(long)]
    list: bool,
    /// Stop trusting DIR.
    #[arg(long, conflicts_with = "list")]
    revoke: bool,
}

/// Runs `execgate trust`.
pub fn run(args: TrustArgs) -> anyhow::Result<ExitCode> {
    if std::env::var_os(execgate_protocol::SOCKET_ENV).is_some() {
        bail!("execgate trust runs outside execgate sessions only: run it in your own shell");
    }
    let home = home_dir().context("HOME is not set: it says where the trust file lives")?;
    let file = TrustStore::location(&home);
    if args.list {
        return list(&file, &home);
    }
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let dir = dir
        .canonicalize()
        .with_context(|| format!("{} does not exist", dir.display()))?;
    if args.revoke {
        let removed = TrustStore::update(&file, |entries| {
            let before = entries.len();
            entries.retain(|e| e.dir != dir);
            before != entries.len()
        })?;
        if !removed {
            eprintln!("execgate: {} was not trusted", dir.display());
            return Ok(ExitCode::from(1));
        }
        println!("no longer trusted: {}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let entry = gather(&dir, &home)?;
    let (policy, repository) = (entry.policy.clone(), entry.repository.clone());
    TrustStore::update(&file, |entries| {
        match entries.iter_mut().find(|e| e.dir == dir) {
            Some(existing) => *existing = entry,
            None => entries.push(entry),
        }
    })?;
    println!("trusted {}", dir.display());
    if let Some(policy) = policy {
        println!("  project policy: {}", shown(&policy.files, &dir));
    }
    if let Some(repository) = repository {
        println!(
            "  repository {}: {}",
            text(&repository.git_dir),
            shown(&repository.files, &dir)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What trusting `dir` records now.
fn gather(dir: &Path, home: &Path) -> anyhow::Result<Trusted> {
    let path = std::env::var_os("PATH");
    let layer = Layer {
        kind: LayerKind::Project,
        dir: dir.join(".execgate"),
    };
    let policy = ProjectPolicy::gather(&layer, Some(home), path.as_deref())?.map(|p| Recorded {
        digest: p.digest,
        files: p.files,
    });
    let found = git::discover(dir)
        .with_context(|| format!("cannot tell which git repository {} is in", dir.display()))?;
    let repository = match found {
        Some(candidate) => {
            let (Some(git_dir), Some(common_dir)) = (candidate.git_dir, candidate.common_dir)
            else {
                bail!("{} leads to no git dir", text(&candidate.entry));
            };
            let files = RepositoryFiles::gather(&git_dir, &common_dir, &candidate.top, Some(home))
                .with_context(|| format!("cannot trust the repository {}", text(&git_dir)))?;
            let mut covered: Vec<PathBuf> = files
                .watched
                .iter()
                .filter(|p| p.is_file())
                .cloned()
                .collect();
            covered.dedup();
            Some(RecordedRepository {
                git_dir,
                common_dir,
                top: candidate.top,
                digest: files.digest,
                files: covered,
            })
        }
        None => None,
    };
    if policy.is_none() && repository.is_none() {
        bail!(
            "{} has no project policy (.execgate with rules or hooks.json) and is in no git \
             repository: there is nothing to trust",
            dir.display()
        );
    }
    let trusted_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(Trusted {
        dir: dir.to_path_buf(),
        trusted_at,
        policy,
        repository,
    })
}

/// `execgate trust --list`: each trusted folder and how it stands now.
fn list(file: &Path, home: &Path) -> anyhow::Result<ExitCode> {
    let store = TrustStore::load(file)?;
    if store.entries().is_empty() {
        println!("nothing is trusted ({} has no entries)", file.display());
        return Ok(ExitCode::SUCCESS);
    }
    let path = std::env::var_os("PATH");
    for entry in store.entries() {
        println!("{}", entry.dir.display());
        if entry.policy.is_some() {
            let layer = Layer {
                kind: LayerKind::Project,
                dir: entry.dir.join(".execgate"),
            };
            let state = match ProjectPolicy::gather(&layer, Some(home), path.as_deref()) {
                Ok(Some(now)) => match now.standing(&store) {
                    Standing::Trusted => "as trusted".to_string(),
                    _ => "CHANGED since trusted: sessions skip it".to_string(),
                },
                Ok(None) => "gone".to_string(),
                Err(e) => format!("cannot be read ({e})"),
            };
            println!("  project policy: {state}");
        }
        if let Some(repository) = &entry.repository {
            let now = RepositoryFiles::gather(
                &repository.git_dir,
                &repository.common_dir,
                &repository.top,
                Some(home),
            );
            let state = match now {
                Ok(now) if now.digest == repository.digest => "as trusted".to_string(),
                Ok(_) => "CHANGED since trusted: commands in it stay in the sandbox".to_string(),
                Err(e) => format!("cannot be read ({e})"),
            };
            println!("  repository {}: {state}", text(&repository.git_dir));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A path as a person is shown it (`protocol::display`): the names in a repository or a
/// project layer may be the sandbox's choice.
fn text(path: &Path) -> String {
    display::text_string(path.as_os_str().as_encoded_bytes())
}

/// `files`, relative to `dir` where they lie in it, comma-separated.
fn shown(files: &[PathBuf], dir: &Path) -> String {
    if files.is_empty() {
        return "no files yet".to_string();
    }
    files
        .iter()
        .map(|f| text(f.strip_prefix(dir).unwrap_or(f)))
        .collect::<Vec<_>>()
        .join(", ")
}
