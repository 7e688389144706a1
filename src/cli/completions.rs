//! `execgate completions SHELL` and `execgate man`: shell completions and a man page,
//! generated from the command-line definitions (clap_complete, clap_mangen), so they never
//! drift from `--help`.

use clap::{Args, CommandFactory, ValueEnum};
use std::io::Write;
use std::process::ExitCode;

/// Arguments of `execgate completions`.
#[derive(Debug, Args)]
#[command(after_help = "Install, for example: \
execgate completions bash > ~/.local/share/bash-completion/completions/execgate; \
execgate completions zsh > ~/.zfunc/_execgate (with ~/.zfunc in fpath); \
execgate completions fish > ~/.config/fish/completions/execgate.fish")]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    shell: CompletionShell,
}

/// Shells we write completions for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// Arguments of `execgate man`.
#[derive(Debug, Args)]
#[command(after_help = "Install, for example: \
execgate man > ~/.local/share/man/man1/execgate.1")]
pub struct ManArgs {}

/// Prints the completion script for `args.shell` on stdout.
pub fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let shell = match args.shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut super::Cli::command(), "execgate", &mut out);
    write_stdout(&out)
}

/// Prints the man page (roff, section 1) on stdout.
pub fn man(_: ManArgs) -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    clap_mangen::Man::new(super::Cli::command()).render(&mut out)?;
    write_stdout(&out)
}

fn write_stdout(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    // A reader that stopped early (`| head`) is no error.
    let _ = std::io::stdout().write_all(bytes);
    Ok(ExitCode::SUCCESS)
}
