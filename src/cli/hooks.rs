//! `execgate hooks check|permission-request`: validate hooks.json files, and run the
//! `PermissionRequest` hooks once for a command, printing what each hook said and the
//! folded decision.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::setup::home_dir;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use execgate_decide::layers;
use execgate_hooks::{
    HookDecision, HookEvent, HookOutputEntry, HookRunStatus, HooksConfig, PermissionOutcome,
    PermissionRequest,
};
use serde::Serialize;

/// `execgate hooks` subcommands.
#[derive(Debug, Subcommand)]
pub enum HooksCommand {
    /// Validate hooks.json files: list each event's handlers with matcher and timeout, and
    /// print every warning. Exits 1 when a file cannot be used.
    Check(CheckArgs),
    /// Run the PermissionRequest hooks once for a command and print the outcome.
    PermissionRequest(PermissionRequestArgs),
}

/// Arguments of `execgate hooks check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A hooks.json file (repeatable, in run order). Without it, the files discovered from
    /// the current directory are checked.
    #[arg(long = "hooks", value_name = "FILE")]
    hooks: Vec<PathBuf>,
}

/// Arguments of `execgate hooks permission-request`.
#[derive(Debug, Args)]
pub struct PermissionRequestArgs {
    /// A hooks.json file (repeatable, in run order). Without it, the files discovered from
    /// the working directory are used.
    #[arg(long = "hooks", value_name = "FILE")]
    hooks: Vec<PathBuf>,
    /// The command line the hooks are asked about (`tool_input.command`).
    #[arg(long, value_name = "STR", allow_hyphen_values = true)]
    command: String,
    /// Why the command is run (`tool_input.description`).
    #[arg(long, value_name = "STR", allow_hyphen_values = true)]
    description: Option<String>,
    /// The working directory of the command (the hook input's `cwd`; hooks run in the
    /// current directory, as in a session). Default: the current one.
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs an `execgate hooks` subcommand.
pub fn run(cmd: HooksCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        HooksCommand::Check(args) => check(args),
        HooksCommand::PermissionRequest(args) => permission_request(args),
    }
}

/// The given files, or the discovered ones when none were given.
fn hooks_files(given: Vec<PathBuf>, cwd: &Path) -> Vec<PathBuf> {
    if given.is_empty() {
        layers::hooks_files(&layers::discover(cwd, home_dir().as_deref()))
    } else {
        given
    }
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let files = hooks_files(args.hooks, &cwd);
    if files.is_empty() {
        println!("no hooks files found");
        return Ok(ExitCode::SUCCESS);
    }
    let mut handlers = Vec::new();
    let mut warnings = Vec::new();
    let mut unusable = false;
    // Each file alone, so one bad file does not hide the others' reports.
    for file in &files {
        match HooksConfig::load(std::slice::from_ref(file)) {
            Ok((config, file_warnings)) => {
                println!(
                    "{}: ok ({} handler{})",
                    file.display(),
                    config.handlers().len(),
                    if config.handlers().len() == 1 {
                        ""
                    } else {
                        "s"
                    }
                );
                handlers.extend(config.handlers().iter().cloned());
                warnings.extend(file_warnings);
            }
            Err(err) => {
                println!("error: {err}");
                unusable = true;
            }
        }
    }
    for event in HookEvent::ALL {
        let of_event: Vec<_> = handlers.iter().filter(|h| h.event == event).collect();
        if of_event.is_empty() {
            continue;
        }
        println!("{event}:");
        for (index, handler) in of_event.iter().enumerate() {
            let matcher = match (&handler.matcher, event.uses_matcher()) {
                (_, false) => String::new(),
                (None, true) => "matcher (all tools), ".to_owned(),
                (Some(m), true) => format!("matcher {:?}, ", m.pattern()),
            };
            println!(
                "  {}. {matcher}timeout {}s: {}",
                index + 1,
                handler.timeout_sec,
                handler.command
            );
            if let Some(status) = &handler.status_message {
                println!("     status message: {status}");
            }
            println!("     from {}", handler.source.display());
        }
    }
    for warning in &warnings {
        println!("warning: {warning}");
    }
    Ok(if unusable {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn permission_request(args: PermissionRequestArgs) -> anyhow::Result<ExitCode> {
    let cwd = match args.cwd {
        Some(dir) => dir,
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    if !cwd.is_dir() {
        bail!("--cwd {}: not a directory", cwd.display());
    }
    let cwd = std::path::absolute(&cwd)
        .with_context(|| format!("cannot make {} absolute", cwd.display()))?;
    // This runs the hooks: a project layer's only when trusted, as in a session.
    let files = if args.hooks.is_empty() {
        crate::setup::discovered_hooks_files(&cwd, home_dir().as_deref())?
    } else {
        args.hooks
    };
    let (config, warnings) = HooksConfig::load(&files)?;
    for warning in &warnings {
        eprintln!("execgate: warning: {warning}");
    }

    let mut request = PermissionRequest::new(cwd, args.command);
    request.description = args.description;
    if !args.json {
        for handler in config.permission_request_handlers() {
            if let Some(status) = &handler.status_message {
                eprintln!("execgate: hook: {status}");
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(config.permission_request(&request));

    if args.json {
        println!("{}", serde_json::to_string(&OutcomeJson::from(&outcome))?);
    } else {
        print_outcome(&outcome);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_outcome(outcome: &PermissionOutcome) {
    if outcome.runs.is_empty() {
        println!("no PermissionRequest hooks matched");
    }
    let total = outcome.runs.len();
    for (index, run) in outcome.runs.iter().enumerate() {
        println!(
            "hook {}/{total}: {}: {}",
            index + 1,
            run.status.as_str(),
            run.command
        );
        for entry in &run.entries {
            println!("  {}: {}", entry.kind.as_str(), entry.text);
        }
    }
    match outcome.decision {
        None => println!("decision: none (the normal approval prompt follows)"),
        Some(HookDecision::Allow) => println!("decision: allow"),
        Some(HookDecision::Deny) => {
            println!("decision: deny");
            if let Some(message) = &outcome.message {
                println!("message: {message}");
            }
            if outcome.interrupt {
                println!("interrupt: the session would end");
            }
        }
    }
}

/// `--json` output; field order is part of the interface.
#[derive(Serialize)]
struct OutcomeJson<'a> {
    decision: Option<HookDecision>,
    message: Option<&'a str>,
    interrupt: bool,
    runs: Vec<RunJson<'a>>,
}

#[derive(Serialize)]
struct RunJson<'a> {
    command: &'a str,
    status: HookRunStatus,
    entries: &'a [HookOutputEntry],
}

impl<'a> From<&'a PermissionOutcome> for OutcomeJson<'a> {
    fn from(outcome: &'a PermissionOutcome) -> Self {
        Self {
            decision: outcome.decision,
            message: outcome.message.as_deref(),
            interrupt: outcome.interrupt,
            runs: outcome
                .runs
                .iter()
                .map(|run| RunJson {
                    command: &run.command,
                    status: run.status,
                    entries: &run.entries,
                })
                .collect(),
        }
    }
}
