//! `execgate shells build`: builds our patched zsh and bash (see `crate::shells`) where
//! sessions look for them, or into `--prefix`.

use crate::install::{embedded, shells_build_dir};
use crate::shells::{self, progress::Progress, Shell};
use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// `execgate shells` subcommands.
#[derive(Debug, Subcommand)]
pub enum ShellsCommand {
    /// Build the patched zsh and bash from Debian's source packages (cached: a shell is
    /// rebuilt only when its patch changed; about 3 minutes each). Uses apt-get through
    /// sudo when not root.
    Build(BuildArgs),
}

/// Arguments of `execgate shells build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The shells to build (default: both).
    #[arg(value_enum)]
    shells: Vec<ShellName>,
    /// Folder to put them in (default: where sessions look: EXECGATE_SHELLS_DIR, or
    /// `shells/` in the per-user cache).
    #[arg(long, value_name = "DIR")]
    prefix: Option<PathBuf>,
}

/// A shell name on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ShellName {
    Zsh,
    Bash,
}

/// Runs an `execgate shells` subcommand.
pub fn run(cmd: ShellsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ShellsCommand::Build(args) => build(args),
    }
}

fn build(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let mut wanted: Vec<Shell> = args
        .shells
        .iter()
        .map(|s| match s {
            ShellName::Zsh => Shell::Zsh,
            ShellName::Bash => Shell::Bash,
        })
        .collect();
    if wanted.is_empty() {
        wanted = vec![Shell::Zsh, Shell::Bash];
    }
    wanted.dedup();
    let out = match args.prefix {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            dir
        }
        None => {
            let dir = shells_build_dir()?;
            // In the cache: a folder only the user can change.
            match embedded::cache_roots()
                .into_iter()
                .find(|root| dir.starts_with(root))
            {
                Some(root) => embedded::private_dir(&root, &dir)?,
                None => std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?,
            }
            dir
        }
    };
    let mut progress = Progress::new("execgate shells build");
    shells::build(&out, &wanted, &mut progress)?;
    for shell in wanted {
        println!("{}", out.join(shell.name()).display());
    }
    Ok(ExitCode::SUCCESS)
}
