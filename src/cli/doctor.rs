//! `execgate doctor`: what this machine gives execgate, on one screen (or as JSON): the
//! sandbox backend and what it enforces, the kernel features behind it, bubblewrap, the
//! helper programs (checked by running one intercepted `true`), the patched shells, the
//! rules and hooks that would load here, and the approvals file. Every problem line says
//! how to fix it. It changes nothing but the helper cache (written as any session would).

use crate::install::{session_writable, Install};
use crate::setup::home_dir;
use anyhow::Context;
use clap::Args;
use execgate_decide::layers::{self, LayerKind, ProjectPolicy, Standing};
use execgate_sandbox::{probe, BackendChoice, Sandbox, SandboxMode, SandboxPolicy};
use execgate_trust::TrustStore;
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

/// Arguments of `execgate doctor`.
#[derive(Debug, Args)]
#[command(after_help = "Exit status: 0 when nothing failed (warnings allowed), 1 otherwise.")]
pub struct DoctorArgs {
    /// Print one JSON object (`{"ok": bool, "checks": [...]}`) instead of the screen.
    #[arg(long)]
    json: bool,
}

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    /// Works.
    Ok,
    /// Works less well than it could (a fallback, a missing optional part).
    Warn,
    /// Does not work: sessions would refuse to start or run without it.
    Fail,
    /// Something to know, neither good nor bad.
    Info,
}

/// One line of the report.
#[derive(Debug, Serialize)]
struct Check {
    /// What was checked (`sandbox`, `landlock`, ...).
    name: &'static str,
    status: Status,
    /// What was found.
    detail: String,
    /// What to do about a warning or failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
    /// Further lines (what the sandbox enforces, the files found).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    more: Vec<String>,
}

impl Check {
    fn new(name: &'static str, status: Status, detail: impl Into<String>) -> Self {
        Self {
            name,
            status,
            detail: detail.into(),
            fix: None,
            more: Vec::new(),
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    fn more(mut self, more: Vec<String>) -> Self {
        self.more = more;
        self
    }
}

#[derive(Debug, Serialize)]
struct Report {
    /// No check failed.
    ok: bool,
    checks: Vec<Check>,
}

/// Runs `execgate doctor`.
pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let home = home_dir();
    let mut checks = Vec::new();
    let install = Install::locate(&session_writable(SandboxMode::WorkspaceWrite, &cwd, &[]));
    checks.push(sandbox_check(&cwd, install.as_ref().ok()));
    checks.extend(kernel_checks());
    checks.push(bwrap_check());
    match &install {
        Ok(install) => {
            checks.extend(helper_checks(install));
            checks.extend(shell_checks(install));
        }
        Err(e) => checks.push(
            Check::new("helpers", Status::Fail, format!("{e:#}"))
                .fix("follow the advice above, then run `execgate doctor` again"),
        ),
    }
    checks.extend(policy_checks(&cwd, home.as_deref()));
    let ok = checks.iter().all(|c| c.status != Status::Fail);
    let report = Report { ok, checks };
    let text = if args.json {
        serde_json::to_string(&report)? + "\n"
    } else {
        render(&report)
    };
    // A reader that stopped early (`| head`) is no error.
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The report as the screen shows it.
fn render(report: &Report) -> String {
    let mut out = String::new();
    for check in &report.checks {
        let status = match check.status {
            Status::Ok => "ok",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Info => "--",
        };
        out += &format!("{status:<5} {:<10} {}\n", check.name, check.detail);
        for line in &check.more {
            out += &format!("{:16} {line}\n", "");
        }
        if let Some(fix) = &check.fix {
            out += &format!("{:16} fix: {fix}\n", "");
        }
    }
    out += if report.ok {
        "execgate is ready.\n"
    } else {
        "execgate cannot run sessions here until the FAIL lines are fixed.\n"
    };
    out
}

/// The sandbox a default session (`workspace-write` in `cwd`) would get.
fn sandbox_check(cwd: &Path, install: Option<&Install>) -> Check {
    let mut policy = SandboxPolicy::new(SandboxMode::WorkspaceWrite, cwd);
    if let Some(install) = install {
        policy.init = install.init.clone();
    }
    policy.protected_paths = Install::protected_paths();
    match Sandbox::prepare(&policy, BackendChoice::Auto) {
        Ok(sandbox) => {
            let describe = sandbox.describe();
            let mut lines = describe.lines().map(str::to_string);
            let first = lines.next().unwrap_or_default();
            let status = match sandbox.backend() {
                execgate_sandbox::Backend::Bubblewrap => Status::Ok,
                _ => Status::Warn,
            };
            let check = Check::new("sandbox", status, first).more(lines.collect());
            if status == Status::Warn {
                check.fix(
                    "install bubblewrap (sudo apt-get install bubblewrap) for a sandbox \
                     that also keeps policy files read-only inside writable roots",
                )
            } else {
                check
            }
        }
        Err(e) => Check::new("sandbox", Status::Fail, e.to_string())
            .fix("sessions refuse to start here; see the message for what to change"),
    }
}

/// Landlock, user namespaces, seccomp user notification.
fn kernel_checks() -> Vec<Check> {
    let landlock = match probe::landlock_abi() {
        Ok(abi) => Check::new("landlock", Status::Ok, format!("ABI {abi}")),
        Err(e) => Check::new("landlock", Status::Warn, e.to_string()).fix(
            "the Landlock fallback needs Linux 5.13 or later with landlock in the lsm= boot \
             list; bubblewrap does not need it",
        ),
    };
    let sysctls = probe::user_namespace_sysctls();
    let blocked = sysctls.iter().any(|(path, value)| {
        let off = if path.ends_with("apparmor_restrict_unprivileged_userns") {
            "1"
        } else {
            "0"
        };
        value == off
    });
    let detail = if sysctls.is_empty() {
        "no user namespace sysctls found".to_string()
    } else {
        sysctls
            .iter()
            .map(|(path, value)| {
                let name = path.trim_start_matches("/proc/sys/").replace('/', ".");
                format!("{name}={value}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let userns = if blocked {
        Check::new("userns", Status::Warn, detail).fix(
            "bubblewrap needs unprivileged user namespaces: set the sysctl shown to allow them \
             (or run as root); Landlock works without",
        )
    } else {
        Check::new("userns", Status::Ok, detail)
    };
    let notify = match probe::seccomp_user_notification() {
        Ok(()) => Check::new("seccomp", Status::Ok, "user notification available"),
        Err(e) => Check::new(
            "seccomp",
            Status::Fail,
            format!("no seccomp user notification ({e})"),
        )
        .fix("the session supervisor needs Linux 5.0 or later built with CONFIG_SECCOMP_FILTER"),
    };
    vec![landlock, userns, notify]
}

/// The bubblewrap program and its version.
fn bwrap_check() -> Check {
    let Some(path) = probe::bwrap_path() else {
        return Check::new("bwrap", Status::Warn, "not installed")
            .fix("sudo apt-get install bubblewrap (sessions fall back to Landlock)");
    };
    let version = Command::new(&path)
        .arg("--version")
        .stdin(Stdio::null())
        .output();
    match version {
        Ok(out) if out.status.success() => Check::new(
            "bwrap",
            Status::Ok,
            format!(
                "{} ({})",
                String::from_utf8_lossy(&out.stdout).trim(),
                path.display()
            ),
        ),
        _ => Check::new(
            "bwrap",
            Status::Warn,
            format!("{} does not run", path.display()),
        )
        .fix("reinstall bubblewrap (sudo apt-get install --reinstall bubblewrap)"),
    }
}

/// The wrapper, the shim and the init, and one intercepted `true` through them.
fn helper_checks(install: &Install) -> Vec<Check> {
    let mut checks = Vec::new();
    for (name, path, source) in [
        ("wrapper", &install.wrapper, &install.wrapper_source),
        ("shim", &install.shim, &install.shim_source),
        ("init", &install.init, &install.init_source),
    ] {
        checks.push(if path.is_file() {
            Check::new(
                name,
                Status::Ok,
                format!("{} ({})", path.display(), source.describe()),
            )
        } else {
            Check::new(name, Status::Fail, format!("{} is missing", path.display()))
                .fix(source.fix())
        });
    }
    if let Some(cache) = &install.cache {
        checks.push(Check::new(
            "cache",
            Status::Info,
            format!("{} (outside this folder's writable roots)", cache.display()),
        ));
    }
    let mut shells = vec![("sh", "the system sh through the preload shim")];
    if install.shells_dir.join("zsh").is_file() {
        shells.push(("zsh", "our patched zsh through the execve wrapper"));
    }
    for (shell, how) in shells {
        checks.push(intercepted_true(shell, how));
    }
    checks
}

/// Runs `/bin/true` in a read-only session of `shell` (this `execgate`, with the same
/// environment) and checks that the server saw it and let it run.
fn intercepted_true(shell: &str, how: &str) -> Check {
    let exe = std::env::current_exe();
    let out = exe.and_then(|exe| {
        Command::new(exe)
            .args(["run", "--sandbox", "read-only", "--approval", "never"])
            .args(["--json", "--shell", shell, "/bin/true"])
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .output()
    });
    let fail = |why: String| {
        Check::new("intercept", Status::Fail, format!("{how}: {why}")).fix(
            "run `execgate run --shell SHELL -v /bin/true` to see the error; reinstall \
             execgate if a helper is damaged",
        )
    };
    let out = match out {
        Ok(out) => out,
        Err(e) => return fail(format!("cannot run execgate: {e}")),
    };
    let report: serde_json::Value = match serde_json::from_slice(&out.stdout) {
        Ok(report) => report,
        Err(_) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return fail(stderr.lines().last().unwrap_or("no report").to_string());
        }
    };
    let execs = report["execs"].as_array().cloned().unwrap_or_default();
    let ran = execs
        .iter()
        .any(|e| e["argv"][0] == "/bin/true" && e["verdict"] == "run");
    if report["exit_code"] == 0 && ran {
        Check::new(
            "intercept",
            Status::Ok,
            format!("{how}: /bin/true was decided and ran in the sandbox"),
        )
    } else {
        fail(format!(
            "/bin/true was not decided as expected (exit code {}, {} exec(s) seen)",
            report["exit_code"],
            execs.len()
        ))
    }
}

/// The patched shells.
fn shell_checks(install: &Install) -> Vec<Check> {
    ["zsh", "bash"]
        .into_iter()
        .map(|shell| {
            let path = install.shells_dir.join(shell);
            if path.is_file() {
                Check::new(
                    "shells",
                    Status::Ok,
                    format!("patched {shell}: {}", path.display()),
                )
            } else {
                Check::new(
                    "shells",
                    Status::Warn,
                    format!(
                        "no patched {shell} in {} (the system {shell} is intercepted with the \
                         preload shim instead)",
                        install.shells_dir.display()
                    ),
                )
                .fix(format!("execgate shells build {shell}"))
            }
        })
        .collect()
}

/// The rules and hooks that would load here (a project layer only when trusted and
/// unchanged, as sessions load them), and the approvals file.
fn policy_checks(cwd: &Path, home: Option<&Path>) -> Vec<Check> {
    let found = layers::discover(cwd, home);
    let trust = match home {
        Some(home) => TrustStore::load(&TrustStore::location(home)).map_err(|e| e.to_string()),
        None => Ok(TrustStore::default()),
    };
    let path = std::env::var_os("PATH");
    let mut files = Vec::new();
    let mut problems = Vec::new();
    let mut skipped = Vec::new();
    let mut loading = Vec::new();
    if let Err(e) = &trust {
        problems.push(e.clone());
    }
    for layer in found {
        let kind = match layer.kind {
            LayerKind::User => "user",
            LayerKind::Project => "project",
            LayerKind::CodexHome => "codex home",
        };
        let mut state = "loads";
        if layer.kind == LayerKind::Project {
            let dir = layer.dir.parent().unwrap_or(Path::new("/")).to_path_buf();
            match (ProjectPolicy::gather(&layer, home, path.as_deref()), &trust) {
                (Ok(None), _) => continue,
                (Ok(Some(project)), Ok(store)) => match project.standing(store) {
                    Standing::Trusted => state = "trusted, loads",
                    Standing::Untrusted => {
                        state = "untrusted, skipped";
                        skipped.push(format!("execgate trust {}", dir.display()));
                    }
                    Standing::Changed => {
                        state = "changed since trusted, skipped";
                        skipped.push(format!("execgate trust {}", dir.display()));
                    }
                },
                (Ok(Some(_)), Err(_)) => state = "skipped (trust file unreadable)",
                (Err(e), _) => {
                    problems.push(e.to_string());
                    continue;
                }
            }
        }
        let rules = match layer.rules_files() {
            Ok(rules) => rules,
            Err(e) => {
                problems.push(e.to_string());
                Vec::new()
            }
        };
        let hooks = layer.hooks_file();
        for file in rules.iter().chain(hooks.iter()) {
            files.push(format!("{kind} ({state}): {}", file.display()));
        }
        if !state.contains("skipped") {
            loading.push(layer);
        }
    }
    let rule_files = match layers::rules_files(&loading) {
        Ok(files) => files,
        Err(e) => {
            problems.push(e.to_string());
            Vec::new()
        }
    };
    if let Err(e) = execgate_execpolicy::Policy::from_files(&rule_files) {
        problems.push(e.to_string());
    }
    let hook_files = layers::hooks_files(&loading);
    if let Err(e) = execgate_hooks::HooksConfig::load(&hook_files) {
        problems.push(e.to_string());
    }
    let summary = format!(
        "{} rules file(s), {} hooks file(s) would load in {}",
        rule_files.len(),
        hook_files.len(),
        cwd.display()
    );
    let mut policy = if problems.is_empty() {
        Check::new("policy", Status::Ok, summary).more(files)
    } else {
        Check::new("policy", Status::Fail, summary)
            .more(files.into_iter().chain(problems).collect())
            .fix("fix the file:line:col named above; `execgate policy lint FILE` explains")
    };
    if policy.status == Status::Ok && !skipped.is_empty() {
        policy.status = Status::Warn;
        policy.fix = Some(format!(
            "after reviewing the skipped files: {}",
            skipped.join("; ")
        ));
    }
    let approvals = match layers::user_rules_file(home) {
        None => Check::new(
            "approvals",
            Status::Warn,
            "HOME is not set: no approvals file",
        )
        .fix("set HOME so \"always\" answers are remembered"),
        Some(file) if file.is_file() => {
            let rules = std::fs::read_to_string(&file)
                .map(|t| t.lines().filter(|l| l.starts_with("prefix_rule(")).count())
                .unwrap_or(0);
            Check::new(
                "approvals",
                Status::Ok,
                format!("{} ({rules} remembered rule(s))", file.display()),
            )
        }
        Some(file) => Check::new(
            "approvals",
            Status::Info,
            format!(
                "{} (none yet; \"always\" answers are written there)",
                file.display()
            ),
        ),
    };
    vec![policy, approvals]
}
