//! `execgate policy lint`: print the findings of `execgate_execpolicy::lint` for rule files,
//! with this machine's `PATH` and file system answering the "names that resolve elsewhere"
//! questions.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use execgate_execpolicy::lint::{lint, Finding, HostLookup, Severity};
use execgate_execpolicy::PolicyLoader;
use serde::Serialize;

/// Arguments of `execgate policy lint`.
#[derive(Debug, Args)]
pub struct LintArgs {
    /// A `.rules` file (repeatable; files merge in the order given, as a session loads them).
    #[arg(short = 'r', long = "rules", value_name = "FILE", required = true)]
    rules: Vec<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Exit 1 on warnings too, not only on errors.
    #[arg(long)]
    deny_warnings: bool,
}

/// The machine's answers: `PATH` as this process sees it, and the real file system.
struct SystemHost {
    path: Option<OsString>,
}

impl HostLookup for SystemHost {
    fn find_program(&self, name: &str) -> Option<PathBuf> {
        std::env::split_paths(self.path.as_ref()?)
            // A relative PATH entry depends on the command's working directory: skip it.
            .filter(|dir| dir.is_absolute())
            .map(|dir| dir.join(name))
            .find(|candidate| {
                std::fs::metadata(candidate)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    }

    fn canonicalize(&self, path: &Path) -> Option<PathBuf> {
        std::fs::canonicalize(path).ok()
    }
}

#[derive(Serialize)]
struct Report<'a> {
    findings: Vec<FindingJson<'a>>,
    errors: usize,
    warnings: usize,
}

#[derive(Serialize)]
struct FindingJson<'a> {
    file: &'a str,
    line: u32,
    column: u32,
    severity: Severity,
    code: &'static str,
    message: &'a str,
    fix: &'a str,
}

/// Runs `execgate policy lint`: exit 1 when there are errors (or warnings, with
/// `--deny-warnings`), 2 when a file cannot be loaded.
pub fn run(args: LintArgs) -> anyhow::Result<ExitCode> {
    let mut loader = PolicyLoader::new().collect_examples();
    for path in &args.rules {
        loader.add_file(path)?;
    }
    let (policy, examples) = loader.finish_with_examples();
    let host = SystemHost {
        path: std::env::var_os("PATH"),
    };
    let findings = lint(&policy, &examples, &host);
    let errors = findings
        .iter()
        .filter(|f| f.severity() == Severity::Error)
        .count();
    let warnings = findings.len() - errors;
    let text = if args.json {
        let report = Report {
            findings: findings.iter().map(finding_json).collect(),
            errors,
            warnings,
        };
        serde_json::to_string(&report).context("cannot render the findings as JSON")?
    } else {
        let mut text = String::new();
        for finding in &findings {
            text.push_str(&finding.to_string());
            text.push('\n');
        }
        text.push_str(&summary(errors, warnings));
        text
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")?;
    let failed = errors > 0 || (args.deny_warnings && warnings > 0);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn summary(errors: usize, warnings: usize) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    format!(
        "{}, {}",
        plural(errors, "error"),
        plural(warnings, "warning")
    )
}

fn finding_json(finding: &Finding) -> FindingJson<'_> {
    FindingJson {
        file: &finding.location.file,
        line: finding.location.line,
        column: finding.location.column,
        severity: finding.severity(),
        code: finding.code.as_str(),
        message: &finding.message,
        fix: &finding.fix,
    }
}
