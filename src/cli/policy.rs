//! `execgate policy check|test`: evaluate a command against `.rules` files, and run the
//! files' `match` / `not_match` examples; the wiring of `policy lint` and `policy suggest` (their
//! code is in `policy_lint.rs` and `policy_suggest.rs`).

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use execgate_execpolicy::{
    CanonicalHost, CheckOptions, ExampleOutcome, NetworkProtocol, Policy, PolicyLoader,
};
use execgate_netgate::parse_host_port;
use serde::Serialize;

/// `execgate policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the rules matching a command and the resulting decision, as JSON (the same JSON
    /// as `codex execpolicy check`).
    Check(CheckArgs),
    /// Run every `match` / `not_match` example of the rules files and report each one.
    Test(TestArgs),
    /// Find rules that hand the sandbox a way out, never take effect, or match another
    /// program than meant; exit 1 on errors.
    Lint(super::policy_lint::LintArgs),
    /// Print a `.rules` file learned from a session's audit log: what a person or a hook
    /// approved becomes a narrow allow rule, what they denied a prompt rule.
    Suggest(super::policy_suggest::SuggestArgs),
}

/// Arguments of `execgate policy check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A `.rules` file (repeatable; files merge in the order given).
    #[arg(short = 'r', long = "rules", value_name = "FILE", required = true)]
    rules: Vec<PathBuf>,
    /// Pretty-print the JSON.
    #[arg(long)]
    pretty: bool,
    /// Let an absolute program path fall back to rules for its basename, gated by
    /// `host_executable(...)`.
    #[arg(long)]
    resolve_host_executables: bool,
    /// Explain the decision in text instead: which rules matched and how (literally or
    /// through the basename, allowed by which `host_executable`), which nearly matched, and
    /// why the winner won.
    #[arg(long)]
    explain: bool,
    /// With --explain: print the Codex JSON with one more key, `explain`, instead of text.
    #[arg(long, requires = "explain")]
    json: bool,
    /// Check a connection instead of a command: the network_rules naming HOST for the
    /// protocol, as the network gate reads a CONNECT target (HOST:PORT, [V6]:PORT, or a
    /// bare HOST on the protocol's usual port).
    #[arg(long, value_name = "HOST[:PORT]", conflicts_with_all = ["explain", "resolve_host_executables", "command"])]
    network: Option<String>,
    /// With --network: the protocol the connection speaks (https, http, socks5_tcp,
    /// socks5_udp).
    #[arg(
        long,
        value_name = "PROTOCOL",
        requires = "network",
        default_value = "https"
    )]
    protocol: String,
    /// The command to check: program, then its arguments.
    #[arg(
        value_name = "CMD",
        required_unless_present = "network",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    command: Vec<OsString>,
}

/// Arguments of `execgate policy test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// A `.rules` file (repeatable; files merge in the order given).
    #[arg(short = 'r', long = "rules", value_name = "FILE", required = true)]
    rules: Vec<PathBuf>,
    /// Print one JSON object with every example's outcome instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs an `execgate policy` subcommand.
pub fn run(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Check(args) => check(args),
        PolicyCommand::Test(args) => test(args),
        PolicyCommand::Lint(args) => super::policy_lint::run(args),
        PolicyCommand::Suggest(args) => super::policy_suggest::run(args),
    }
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let policy = Policy::from_files(&args.rules)?;
    if let Some(target) = &args.network {
        let json = check_network(&policy, target, &args.protocol, args.pretty)?;
        print_line(&json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let argv: Vec<&[u8]> = args
        .command
        .iter()
        .map(|arg| arg.as_encoded_bytes())
        .collect();
    let options = CheckOptions {
        resolve_host_executables: args.resolve_host_executables,
    };
    let evaluation = policy.check(&argv, &options);
    let output = if args.explain {
        let explanation = policy.explain(&argv, &options);
        if args.json {
            evaluation.to_codex_json_with_explanation(&explanation, args.pretty)
        } else {
            let text = explanation.to_text();
            Ok(text.strip_suffix('\n').unwrap_or(&text).to_owned())
        }
    } else {
        evaluation.to_codex_json(args.pretty)
    }
    .context("cannot render the evaluation as JSON")?;
    print_line(&output)?;
    Ok(ExitCode::SUCCESS)
}

/// `policy check --network`: the destination as the gate reads it, every network_rule
/// naming it for the protocol, the strictest decision (absent when no rule names it), and
/// for a local or private address, why the gate refuses it unless a rule names it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NetworkCheck<'a> {
    host: String,
    port: u16,
    protocol: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_public: Option<&'static str>,
    matched_rules: Vec<NetworkRuleJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NetworkRuleJson<'a> {
    network_rule_match: NetworkRuleMatch<'a>,
}

#[derive(Serialize)]
struct NetworkRuleMatch<'a> {
    host: &'a str,
    protocol: &'static str,
    decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    justification: Option<&'a str>,
    rule: String,
}

fn check_network(
    policy: &Policy,
    target: &str,
    protocol: &str,
    pretty: bool,
) -> anyhow::Result<String> {
    let protocol =
        NetworkProtocol::parse(protocol).map_err(|e| anyhow::anyhow!("--protocol: {e}"))?;
    let default_port = match protocol {
        NetworkProtocol::Http => 80,
        _ => 443,
    };
    let (host, port) = parse_host_port(target, Some(default_port)).with_context(|| {
        format!(
            "--network {target:?} is not a host the gate would connect to; write HOST, HOST:PORT or [IPV6]:PORT (e.g. pypi.org:443)"
        )
    })?;
    let evaluation = policy.check_network(&host, protocol);
    let not_public = match &host {
        CanonicalHost::Ip(ip) => execgate_execpolicy::non_public_reason(*ip),
        CanonicalHost::Name(_) => None,
    };
    let report = NetworkCheck {
        host: host.as_text(),
        port,
        protocol: protocol.as_str(),
        not_public,
        matched_rules: evaluation
            .matched
            .iter()
            .map(|rule| NetworkRuleJson {
                network_rule_match: NetworkRuleMatch {
                    host: &rule.host,
                    protocol: rule.protocol.as_str(),
                    decision: rule.decision.as_str(),
                    justification: rule.justification.as_deref(),
                    rule: format!("{}:{}", rule.source.file, rule.source.line),
                },
            })
            .collect(),
        decision: evaluation.decision.map(|d| d.as_str()),
    };
    let json = if pretty {
        serde_json::to_string_pretty(&report)
    } else {
        serde_json::to_string(&report)
    };
    json.context("cannot render the evaluation as JSON")
}

#[derive(Serialize)]
struct TestReport<'a> {
    passed: usize,
    failed: usize,
    examples: Vec<ExampleJson<'a>>,
}

#[derive(Serialize)]
struct ExampleJson<'a> {
    file: &'a str,
    line: u32,
    column: u32,
    pattern: &'a str,
    kind: &'static str,
    example: &'a [String],
    passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<&'a str>,
}

fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let mut loader = PolicyLoader::new().collect_examples();
    for path in &args.rules {
        loader.add_file(path)?;
    }
    let (_policy, outcomes) = loader.finish_with_examples();
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    let passed = outcomes.len() - failed;
    if args.json {
        let report = TestReport {
            passed,
            failed,
            examples: outcomes.iter().map(example_json).collect(),
        };
        let json = serde_json::to_string(&report).context("cannot render the report as JSON")?;
        print_line(&json)?;
    } else {
        let mut text = String::new();
        for outcome in &outcomes {
            text.push_str(&describe(outcome));
            text.push('\n');
        }
        text.push_str(&format!("{passed} passed, {failed} failed"));
        print_line(&text)?;
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn example_json(outcome: &ExampleOutcome) -> ExampleJson<'_> {
    ExampleJson {
        file: &outcome.rule.file,
        line: outcome.rule.line,
        column: outcome.rule.column,
        pattern: &outcome.pattern,
        kind: outcome.kind.as_str(),
        example: &outcome.example,
        passed: outcome.passed(),
        failure: outcome.failure.as_deref(),
    }
}

fn describe(outcome: &ExampleOutcome) -> String {
    match &outcome.failure {
        None => format!(
            "ok {}: {} `{}`",
            outcome.rule,
            outcome.kind.as_str(),
            outcome.example_text()
        ),
        Some(failure) => format!("FAIL {}: {failure}", outcome.rule),
    }
}

fn print_line(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")
}
