//! Hostile scripts against `execgate run` (issue 12): nothing the sandbox writes or sets may
//! steer an escalated command. Real shells, the real sandbox, the shipped example rules.
//!
//! Every test works the same way: a marker path outside every writable root, a script that
//! first shows it cannot create the marker itself, then asks for an escalation the rules
//! (`tests/e2e/data/read-only-git.rules`, or a test's own) allow while trying to smuggle something in (argv[0], an environment variable, a swapped
//! folder). The marker must not exist afterwards, and the escalation must have happened
//! (so the test cannot pass by the attack simply not being tried).

use crate::support::bins;
use crate::support::session::run_under;
use crate::support::setups::ShellSetup;
use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The shell setups of `execgate run`: (name, `--shell` value).
pub(crate) const SETUPS: [(&str, &str); 5] = [
    ("patched zsh", "zsh"),
    ("patched bash", "bash"),
    ("Debian bash + shim", "/bin/bash"),
    ("Debian dash + shim", "sh"),
    ("Debian zsh + shim", "/usr/bin/zsh"),
];

/// The same setups as in-process sessions (the server in this test process).
fn setups() -> Vec<ShellSetup> {
    vec![
        ShellSetup::patched_zsh(),
        ShellSetup::patched_bash(),
        ShellSetup::shim_bash(),
        ShellSetup::shim_dash(),
        ShellSetup::shim_zsh(),
    ]
}

/// A workspace (the only writable root besides the temp dir), a home, and a folder outside
/// every writable root, for one test.
pub(crate) struct Hostile {
    _tmp: tempfile::TempDir,
    pub(crate) work: PathBuf,
    pub(crate) home: PathBuf,
    pub(crate) outside: PathBuf,
}

impl Hostile {
    pub(crate) fn new() -> Self {
        // Not under /tmp, which workspace-write opens.
        let tmp = tempfile::Builder::new()
            .prefix("execgate-hostile-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let (work, home, outside) = (root.join("work"), root.join("home"), root.join("outside"));
        for dir in [&work, &home, &outside] {
            std::fs::create_dir_all(dir).unwrap();
        }
        Self {
            _tmp: tmp,
            work,
            home,
            outside,
        }
    }

    /// A marker path outside the writable roots (not created).
    pub(crate) fn marker(&self, name: &str) -> PathBuf {
        self.outside.join(name)
    }

    /// Writes `text` to `rel` under the outside folder and returns its path.
    pub(crate) fn write_outside(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.outside.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `execgate run --json` with `args`, a clean environment (PATH, HOME, LANG), no
    /// controlling terminal, cwd the workspace.
    pub(crate) fn command(&self, shell: &str, args: &[&str]) -> Command {
        let zsh = bins::patched_zsh();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_execgate"));
        cmd.args(["run", "--json", "--shell", shell])
            .args(args)
            .current_dir(&self.work)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &self.home)
            .env("LANG", "C.UTF-8")
            .env("EXECGATE_SHELLS_DIR", zsh.parent().unwrap())
            .stdin(Stdio::null());
        bins::with_helpers(&mut cmd);
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        cmd
    }

    /// Runs `script` in `shell` under the rules files `rules`; returns the report.
    pub(crate) fn run(&self, shell: &str, rules: &[&Path], script: &str) -> Report {
        self.run_on("auto", shell, rules, script)
    }

    /// [`Hostile::run`] on sandbox backend `backend` (`auto`, `bubblewrap`, `landlock`).
    pub(crate) fn run_on(
        &self,
        backend: &str,
        shell: &str,
        rules: &[&Path],
        script: &str,
    ) -> Report {
        let mut args = Vec::new();
        for file in rules {
            args.push("--rules");
            args.push(file.to_str().unwrap());
        }
        self.run_args(backend, shell, &args, script)
    }

    /// [`Hostile::run_on`] with `args` (flags) before the script instead of rules files.
    pub(crate) fn run_args(
        &self,
        backend: &str,
        shell: &str,
        args: &[&str],
        script: &str,
    ) -> Report {
        let mut args = args.to_vec();
        if backend != "auto" {
            args.insert(0, "--verbose");
        }
        args.push(script);
        let out = self
            .command(shell, &args)
            .env("EXECGATE_SANDBOX_BACKEND", backend)
            .output()
            .unwrap();
        let name = SETUPS
            .iter()
            .find(|(_, flag)| *flag == shell)
            .map_or(shell, |(name, _)| name);
        Report::parse(name, out)
    }
}

/// The shipped example rules.
pub(crate) fn basic_rules() -> PathBuf {
    bins::repo_root().join("examples/basic.rules")
}

/// Rules that escalate read-only git (`git status|log|diff|show`), as the example rules
/// once did: an escalation for the hostile scripts to attack.
pub(crate) fn git_read_rules() -> PathBuf {
    bins::repo_root().join("tests/e2e/data/read-only-git.rules")
}

/// A `run --json` report and the process output it came from.
pub(crate) struct Report {
    pub(crate) json: Value,
    pub(crate) out: Output,
    pub(crate) setup: String,
}

impl Report {
    pub(crate) fn parse(setup: &str, out: Output) -> Self {
        let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "[{setup}] not JSON ({e}): stdout={} stderr={}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        Self {
            json,
            out,
            setup: setup.to_string(),
        }
    }

    pub(crate) fn stdout(&self) -> &str {
        self.json["stdout"].as_str().unwrap()
    }

    /// The exec records whose program is `program`.
    pub(crate) fn execs_of(&self, program: &str) -> Vec<&Value> {
        self.json["execs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["program"] == program)
            .collect()
    }

    /// Asserts that `program` was escalated by an allow rule at least once.
    pub(crate) fn assert_escalated(&self, program: &str) {
        assert!(
            self.execs_of(program)
                .iter()
                .any(|e| e["decision"] == "allow" && e["verdict"] == "escalate"),
            "[{}] {program} was not escalated: {self}",
            self.setup
        );
    }

    /// Asserts that the script's first line found the marker out of the sandbox's reach.
    pub(crate) fn assert_direct_write_refused(&self) {
        assert!(
            self.stdout().starts_with("direct-refused\n"),
            "[{}] the sandbox could create the marker itself: {self}",
            self.setup
        );
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status {:?}\n{}\n--- execgate stderr ---\n{}",
            self.out.status,
            serde_json::to_string_pretty(&self.json).unwrap(),
            String::from_utf8_lossy(&self.out.stderr)
        )
    }
}

/// The script line that tries to create `marker` from inside the sandbox.
pub(crate) fn direct_attempt(marker: &Path) -> String {
    format!(
        "touch {} 2>/dev/null && echo direct-write || echo direct-refused\n",
        marker.display()
    )
}

pub(crate) fn assert_no_marker(marker: &Path, report: &Report) {
    assert!(
        !marker.exists(),
        "[{}] {} was created outside the sandbox: {report}",
        report.setup,
        marker.display()
    );
}

// ---- argv[0] ---------------------------------------------------------------------------

/// How a setup makes git run with `git-difftool` as argv[0] while argv[1..] reads
/// `diff ...`, which the example rules allow. Run as difftool, git takes `diff` and `a`
/// (files the script made) as the two paths to compare, and runs `--extcmd` on them.
fn difftool_attack(shell: &str, marker: &Path) -> String {
    let args = format!("diff --no-index -y --extcmd='touch {}' a", marker.display());
    match shell {
        "zsh" | "/usr/bin/zsh" => format!("ARGV0=git-difftool git {args}\n"),
        "bash" | "/bin/bash" => format!("(exec -a git-difftool git {args})\n"),
        // dash cannot set argv[0]: a program that execs does, and the shim sees it.
        _ => format!(
            "python3 -c \"import os; os.execv('/usr/bin/git', ['git-difftool', 'diff', \
             '--no-index', '-y', '--extcmd=touch {}', 'a'])\"\n",
            marker.display()
        ),
    }
}

#[test]
fn escalated_git_never_gets_the_sandboxes_argv0() {
    for (name, shell) in SETUPS {
        let env = Hostile::new();
        let marker = env.marker("difftool-ran");
        let script = format!(
            "{}echo one > diff; echo two > a\n{}",
            direct_attempt(&marker),
            difftool_attack(shell, &marker)
        );
        let report = env.run(shell, &[&git_read_rules()], &script);
        report.assert_direct_write_refused();
        report.assert_escalated("/usr/bin/git");
        assert_no_marker(&marker, &report);
        let git = report.execs_of("/usr/bin/git");
        // git itself refuses `-y`: it ran as `git diff`, the command the rules allowed.
        assert_eq!(git[0]["exit_code"], 129, "[{name}] {report}");
    }
}

/// A tiny multi-call program: run as `multi-run` it runs its argument with `system`,
/// under any other name it only prints.
const MULTI_CALL: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    const char *name = argc > 0 ? argv[0] : "";
    const char *slash = strrchr(name, '/');
    if (slash) name = slash + 1;
    if (strcmp(name, "multi-run") == 0 && argc > 1) return system(argv[1]);
    printf("multi: safe as %s\n", name);
    return 0;
}
"#;

/// Builds the multi-call program outside the writable roots; returns its path.
fn build_multi_call(env: &Hostile) -> PathBuf {
    let source = env.write_outside("src/multi.c", MULTI_CALL);
    let program = env.outside.join("bin/multi");
    std::fs::create_dir_all(program.parent().unwrap()).unwrap();
    let status = Command::new("cc")
        .arg("-o")
        .arg(&program)
        .arg(&source)
        .status()
        .expect("a C compiler (cc) is needed for this test");
    assert!(status.success(), "cc failed");
    program
}

#[test]
fn escalated_multi_call_program_runs_as_the_name_that_was_judged() {
    for (name, shell) in SETUPS {
        let env = Hostile::new();
        let multi = build_multi_call(&env);
        let rules = env.write_outside(
            "rules/multi.rules",
            &format!(
                "prefix_rule(pattern = [\"{}\"], decision = \"allow\")\n",
                multi.display()
            ),
        );
        let marker = env.marker("multi-ran");
        let mut script = direct_attempt(&marker);
        // A symlink the sandbox made names the program it points to.
        script.push_str(&format!(
            "ln -s {} multi-run\n./multi-run 'touch {}'\n",
            multi.display(),
            marker.display()
        ));
        match shell {
            "zsh" | "/usr/bin/zsh" => script.push_str(&format!(
                "ARGV0=multi-run {} 'touch {}'\n",
                multi.display(),
                marker.display()
            )),
            "bash" | "/bin/bash" => script.push_str(&format!(
                "(exec -a multi-run {} 'touch {}')\n",
                multi.display(),
                marker.display()
            )),
            _ => script.push_str(&format!(
                "python3 -c \"import os; os.execv('{}', ['multi-run', 'touch {}'])\"\n",
                multi.display(),
                marker.display()
            )),
        }
        let report = env.run(shell, &[&rules], &script);
        report.assert_direct_write_refused();
        assert_no_marker(&marker, &report);
        let runs = report.execs_of(multi.to_str().unwrap());
        assert_eq!(runs.len(), 2, "[{name}] {report}");
        assert!(
            runs.iter().all(|e| e["verdict"] == "escalate"),
            "[{name}] {report}"
        );
        assert_eq!(
            report.stdout(),
            "direct-refused\nmulti: safe as multi\nmulti: safe as multi\n",
            "[{name}] {report}"
        );
    }
}

#[test]
fn argv0_and_environment_are_not_smuggled_out_of_landlock_either() {
    for (_, shell) in SETUPS {
        let env = Hostile::new();
        outside_repo(&env);
        let (difftool, trace) = (env.marker("difftool-ran"), env.marker("trace-ran"));
        let script = format!(
            "{}echo one > diff; echo two > a\n{}cd {} && GIT_TRACE={} git status\n",
            direct_attempt(&difftool),
            difftool_attack(shell, &difftool),
            env.outside.join("repo").display(),
            trace.display()
        );
        // A copy outside every writable root (a checkout under /tmp is inside one, and
        // Landlock refuses to start with a rules file it cannot protect).
        let rules = env.write_outside(
            "read-only-git.rules",
            &std::fs::read_to_string(git_read_rules()).unwrap(),
        );
        let report = env.run_on("landlock", shell, &[&rules], &script);
        assert!(
            String::from_utf8_lossy(&report.out.stderr).contains("sandbox: backend: landlock"),
            "{report}"
        );
        report.assert_direct_write_refused();
        assert_eq!(report.execs_of("/usr/bin/git").len(), 2, "{report}");
        report.assert_escalated("/usr/bin/git");
        assert_no_marker(&difftool, &report);
        assert_no_marker(&trace, &report);
    }
}

// ---- the environment -------------------------------------------------------------------

/// A git repository outside the writable roots with one commit: its own configuration is
/// trusted, so only what the sandbox sets can steer a git escalated in it.
pub(crate) fn outside_repo(env: &Hostile) -> PathBuf {
    let repo = env.outside.join("repo");
    let git = |args: &[&str]| {
        let status = Command::new("git")
            .args(args)
            .current_dir(&env.outside)
            .env("HOME", &env.home)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q", "repo"]);
    git(&[
        "-C",
        "repo",
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "init",
    ]);
    repo
}

/// Script lines that open a pty in the sandbox (held by a background python3) and leave
/// its name in `$pty`: a git whose stdout is a terminal runs its pager.
const OPEN_PTY: &str = r#"python3 -c 'import os, pty, time
m, s = pty.openpty()
print(os.ttyname(s), flush=True)
time.sleep(120)' > ptyname &
holder=$!
while [ ! -s ptyname ]; do :; done
read pty < ptyname
"#;

/// Runs one environment attack in every setup: `prepare` (sandboxed) then `attack` (an
/// escalation of `program` the rules allow), with `@W`, `@O` and `@M` in both replaced by
/// the workspace, the outside folder and the marker.
fn env_attack(name: &str, rules: &[&Path], program: &str, prepare: &str, attack: &str) {
    for (_, shell) in SETUPS {
        let env = Hostile::new();
        outside_repo(&env);
        std::fs::create_dir_all(env.outside.join("proj")).unwrap();
        std::fs::write(env.outside.join("proj/Makefile"), "all:\n\t@echo built\n").unwrap();
        let marker = env.marker(&format!("{name}-ran"));
        let fill = |text: &str| {
            text.replace("@W", env.work.to_str().unwrap())
                .replace("@O", env.outside.to_str().unwrap())
                .replace("@M", marker.to_str().unwrap())
        };
        let script = format!(
            "{}{}{}",
            direct_attempt(&marker),
            fill(prepare),
            fill(attack)
        );
        let report = env.run(shell, rules, &script);
        report.assert_direct_write_refused();
        report.assert_escalated(program);
        assert_no_marker(&marker, &report);
    }
}

const FSMONITOR: &str = "[core]\\n\\tfsmonitor = touch @M\\n";

#[test]
fn home_pointing_at_a_sandbox_written_gitconfig_does_not_reach_escalated_git() {
    env_attack(
        "home",
        &[&git_read_rules()],
        "/usr/bin/git",
        &format!("mkdir -p h; printf '{FSMONITOR}' > h/.gitconfig\n"),
        "cd @O/repo && HOME=@W/h git status\n",
    );
}

#[test]
fn xdg_config_home_does_not_reach_escalated_git() {
    env_attack(
        "xdg",
        &[&git_read_rules()],
        "/usr/bin/git",
        &format!("mkdir -p x/git; printf '{FSMONITOR}' > x/git/config\n"),
        "cd @O/repo && XDG_CONFIG_HOME=@W/x git status\n",
    );
}

#[test]
fn git_dir_and_work_tree_do_not_reach_escalated_git() {
    env_attack(
        "gitdir",
        &[&git_read_rules()],
        "/usr/bin/git",
        "git init -q --bare evil; printf '[core]\\n\\tbare = false\\n\\tfsmonitor = touch @M\\n' >> evil/config\n",
        "cd @O/repo && GIT_DIR=@W/evil GIT_WORK_TREE=@O/repo git status\n",
    );
}

#[test]
fn git_common_dir_does_not_reach_escalated_git() {
    env_attack(
        "commondir",
        &[&git_read_rules()],
        "/usr/bin/git",
        &format!("git init -q --bare evil; printf '{FSMONITOR}' >> evil/config\n"),
        "cd @O/repo && GIT_COMMON_DIR=@W/evil git status\n",
    );
}

#[test]
fn git_trace_cannot_make_escalated_git_write_a_file() {
    env_attack(
        "trace",
        &[&git_read_rules()],
        "/usr/bin/git",
        "",
        "cd @O/repo && GIT_TRACE=@M git status\n",
    );
}

#[test]
fn pagers_set_in_the_sandbox_do_not_run_outside() {
    for (name, attack) in [
        ("git-pager", "GIT_PAGER='touch @M' git log > \"$pty\""),
        ("pager", "PAGER='touch @M' git log > \"$pty\""),
        // git's default pager (`pager` on Debian, `less` elsewhere), looked up in a PATH
        // the sandbox chose.
        ("path-pager", "PATH=@W/bin:$PATH git log > \"$pty\""),
    ] {
        env_attack(
            name,
            &[&git_read_rules()],
            "/usr/bin/git",
            &format!(
                "{OPEN_PTY}mkdir -p bin; printf '#!/bin/sh\\ntouch @M\\n' > bin/less\n\
                 chmod +x bin/less; cp bin/less bin/pager\n"
            ),
            &format!("cd @O/repo && {attack}\nkill $holder\n"),
        );
    }
}

#[test]
fn a_path_the_sandbox_chose_does_not_pick_an_escalated_scripts_interpreter() {
    for (_, shell) in SETUPS {
        let env = Hostile::new();
        let tool = env.write_outside("bin/tool", "#!/usr/bin/env node\nconsole.log('tool')\n");
        std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let rules = env.write_outside(
            "rules/tool.rules",
            &format!(
                "prefix_rule(pattern = [\"{}\"], decision = \"allow\")\n",
                tool.display()
            ),
        );
        let marker = env.marker("node-ran");
        let script = format!(
            "{}mkdir -p bin; printf '#!/bin/sh\\ntouch {}\\n' > bin/node; chmod +x bin/node\n\
             PATH={}/bin:$PATH {}\n",
            direct_attempt(&marker),
            marker.display(),
            env.work.display(),
            tool.display()
        );
        let report = env.run(shell, &[&rules], &script);
        report.assert_direct_write_refused();
        report.assert_escalated(tool.to_str().unwrap());
        assert_no_marker(&marker, &report);
    }
}

#[test]
fn makefiles_set_in_the_sandbox_do_not_reach_escalated_make() {
    let env = Hostile::new();
    let rules = env.write_outside(
        "rules/make.rules",
        "prefix_rule(pattern = [\"make\"], decision = \"allow\")\n",
    );
    env_attack(
        "makefiles",
        &[&rules],
        "/usr/bin/make",
        "printf '$(shell touch @M)\\n' > evil.mk\n",
        "MAKEFILES=@W/evil.mk make -C @O/proj\n",
    );
}

// ---- the working directory -------------------------------------------------------------

/// Escalates requests with `@hold` in argv after checking their working directory (it
/// must hold a file named `checked`, looked up from the opened directory, as a repository
/// check would), then telling the script (`../held`) and waiting for it (`../go`), so the
/// script can swap the folder between the check and the exec. Runs everything else.
struct CheckThenHold;

#[execgate_escalate_server::async_trait]
impl execgate_escalate_server::EscalationPolicy for CheckThenHold {
    type Note = ();

    async fn decide(
        &self,
        exec: &execgate_escalate_server::ExecContext,
    ) -> execgate_escalate_server::Ruling {
        check_then_hold(exec).await.into()
    }
}

async fn check_then_hold(
    exec: &execgate_escalate_server::ExecContext,
) -> execgate_escalate_server::Verdict {
    use execgate_escalate_server::Verdict;
    use std::os::fd::AsRawFd;
    if !exec.request.argv.iter().any(|a| a == b"@hold") {
        return Verdict::Run;
    }
    let deny = |why: &str| Verdict::Deny {
        reason: why.as_bytes().to_vec(),
    };
    let Ok(dir) = exec.cwd.fd() else {
        return deny("cannot open the cwd");
    };
    // SAFETY: faccessat on an open directory fd with a NUL-terminated name.
    let found = unsafe { libc::faccessat(dir.as_raw_fd(), c"checked".as_ptr(), libc::F_OK, 0) };
    if found != 0 {
        return deny("the cwd failed the check");
    }
    let parent = exec.cwd.path().parent().unwrap().to_path_buf();
    std::fs::write(parent.join("held"), "").unwrap();
    for _ in 0..3000 {
        if parent.join("go").exists() {
            return Verdict::Escalate;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    deny("the script never said go")
}

#[test]
fn a_cwd_swapped_after_the_check_does_not_change_where_the_command_runs() {
    for setup in setups() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().canonicalize().unwrap();
        // The escalated sh writes where it runs; meanwhile the script renames the checked
        // folder away and puts an unchecked one of the same name in its place.
        let script = "mkdir sub; : > sub/checked; cd sub\n\
                      /bin/sh -c 'pwd -P > where; echo \"$PWD\" > pwd' @hold &\n\
                      cd ..\n\
                      while [ ! -e held ]; do :; done\n\
                      mv sub sub.old; mkdir sub; : > go\n\
                      wait\n";
        let out = run_under(
            &setup,
            &dir,
            script,
            std::sync::Arc::new(CheckThenHold),
            &|b| b,
        );
        let old = dir.join("sub.old");
        assert!(
            !dir.join("sub/where").exists(),
            "[{}] ran in the new folder: {out}",
            setup.name
        );
        let read = |name: &str| std::fs::read_to_string(old.join(name)).unwrap_or_default();
        assert_eq!(
            read("where"),
            format!("{}\n", old.display()),
            "[{}] {out}",
            setup.name
        );
        assert_eq!(
            read("pwd"),
            format!("{}\n", old.display()),
            "[{}] {out}",
            setup.name
        );
    }
}

// ---- the invoked name ------------------------------------------------------------------

/// Escalates requests with `@escalate` in argv (by the invoked name, as a policy that
/// judged it would) or `@escalate-resolved` (by the resolved file, the default), runs the
/// rest, and records (request program, invoked, resolved) for each.
#[derive(Default)]
struct RecordNames(std::sync::Mutex<Vec<(String, Option<PathBuf>, PathBuf)>>);

#[execgate_escalate_server::async_trait]
impl execgate_escalate_server::EscalationPolicy for RecordNames {
    type Note = ();

    async fn decide(
        &self,
        exec: &execgate_escalate_server::ExecContext,
    ) -> execgate_escalate_server::Ruling {
        self.0.lock().unwrap().push((
            String::from_utf8_lossy(&exec.request.program).into_owned(),
            exec.invoked.clone(),
            exec.program.clone(),
        ));
        use execgate_escalate_server::{Argv0, Ruling, Verdict};
        let has = |marker: &[u8]| exec.request.argv.iter().any(|a| a == marker);
        if has(b"@escalate") {
            Ruling::from(Verdict::Escalate).with_argv0(Argv0::Invoked)
        } else if has(b"@escalate-resolved") {
            Verdict::Escalate.into()
        } else {
            Verdict::Run.into()
        }
    }
}

#[test]
fn the_invoked_name_is_given_only_when_the_sandbox_cannot_have_chosen_it() {
    for setup in setups() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().canonicalize().unwrap();
        let policy = std::sync::Arc::new(RecordNames::default());
        let script = "ln -s /usr/bin/env e\n\
                      /bin/sh -c 'tr \"\\0\" \" \" < /proc/$$/cmdline; echo' @escalate\n\
                      /bin/sh -c 'tr \"\\0\" \" \" < /proc/$$/cmdline; echo' @escalate-resolved\n\
                      ./e true\nbasename x > /dev/null\n";
        let writable = dir.clone();
        let out = run_under(&setup, &dir, script, policy.clone(), &|session| {
            let writable = writable.clone();
            session.writable_paths(std::sync::Arc::new(move |p: &Path| {
                p.starts_with(&writable)
            }))
        });
        // The escalated sh got the name it was invoked by as argv[0] when the ruling said
        // it judged that name, else /usr/bin/dash; never the sandbox's `sh`.
        assert_eq!(
            out.stdout(),
            "/bin/sh -c tr \"\\0\" \" \" < /proc/$$/cmdline; echo @escalate \n\
             /usr/bin/dash -c tr \"\\0\" \" \" < /proc/$$/cmdline; echo @escalate-resolved \n",
            "{out}"
        );
        let seen = policy.0.lock().unwrap().clone();
        let find = |suffix: &str| {
            seen.iter()
                .find(|(program, _, _)| program.ends_with(suffix))
                .unwrap_or_else(|| panic!("[{}] no {suffix} in {seen:?}", setup.name))
                .clone()
        };
        let sh = find("/bin/sh");
        assert_eq!(
            sh.1.as_deref(),
            Some(Path::new("/bin/sh")),
            "[{}]",
            setup.name
        );
        assert_eq!(sh.2, std::fs::canonicalize("/bin/sh").unwrap());
        // A symlink the sandbox could have made: only the resolved file is given.
        let link = find("/e");
        assert_eq!(link.1, None, "[{}]", setup.name);
        assert_eq!(link.2, Path::new("/usr/bin/env"));
        let looked_up = find("/basename");
        assert_eq!(
            looked_up.1.as_deref(),
            Some(Path::new("/usr/bin/basename")),
            "[{}]",
            setup.name
        );
    }
}

// ---- rules for the invoked name ---------------------------------------------------------

#[test]
fn a_forbidden_rule_for_sh_applies_to_bin_sh_although_dash_runs() {
    for (name, shell) in SETUPS {
        let env = Hostile::new();
        let rules = env.write_outside(
            "rules/sh.rules",
            "prefix_rule(pattern = [\"sh\", \"-e\"], decision = \"forbidden\", justification = \"no shells\")\n",
        );
        // `-e`: the rule must not match the session's own `sh -c` (the shim sees its exec).
        let script = "sh -e -c 'echo ran-1'\n/bin/sh -e -c 'echo ran-2'\necho end\n";
        let report = env.run(shell, &[&rules], script);
        assert_eq!(report.stdout(), "end\n", "[{name}] {report}");
        let mut dash = report.execs_of("/usr/bin/dash");
        dash.retain(|exec| exec["argv"][1] == "-e");
        assert_eq!(dash.len(), 2, "[{name}] {report}");
        for exec in dash {
            assert_eq!(
                (&exec["decision"], &exec["verdict"], &exec["justification"]),
                (&"forbidden".into(), &"deny".into(), &"no shells".into()),
                "[{name}] {report}"
            );
            assert_eq!(exec["rule"], format!("{}:1", rules.display()));
        }
    }
}

#[test]
fn a_rule_for_python3_applies_to_its_version_and_runs_it_by_that_name() {
    for (name, shell) in SETUPS {
        let env = Hostile::new();
        let rules = env.write_outside(
            "rules/python.rules",
            "prefix_rule(pattern = [\"python3\"], decision = \"allow\")\n",
        );
        let report = env.run(
            shell,
            &[&rules],
            "python3 -c 'import sys; print(sys.orig_argv[0])'\n",
        );
        // Escalated by the rule for the name it was invoked by, and run by that name.
        let resolved = std::fs::canonicalize("/usr/bin/python3").unwrap();
        let python = report.execs_of(resolved.to_str().unwrap());
        assert_eq!(python.len(), 1, "[{name}] {report}");
        assert_eq!(
            (&python[0]["decision"], &python[0]["verdict"]),
            (&"allow".into(), &"escalate".into()),
            "[{name}] {report}"
        );
        assert_eq!(report.stdout(), "/usr/bin/python3\n", "[{name}] {report}");
    }
}

#[test]
fn a_host_symlink_to_git_does_not_run_it_as_a_name_no_rule_judged() {
    // /usr/lib/git-core/git-difftool is the host's own symlink to git: a trusted name, but
    // only the rules for `git` (the file it resolves to) allow `diff`. Run by that name,
    // git would be difftool and run `--extcmd`.
    let link = Path::new("/usr/lib/git-core/git-difftool");
    assert!(
        link.symlink_metadata().unwrap().file_type().is_symlink(),
        "this test needs git's own {}",
        link.display()
    );
    for (name, shell) in SETUPS {
        let env = Hostile::new();
        // No host_executable for git: every git binary outside the sandbox borrows its rules.
        let rules = env.write_outside(
            "rules/git.rules",
            "prefix_rule(pattern = [\"git\", [\"status\", \"diff\"]], decision = \"allow\")\n",
        );
        let marker = env.marker("difftool-ran");
        let script = format!(
            "{}echo one > diff; echo two > a\n\
             {} diff --no-index -y --extcmd='touch {}' a\n",
            direct_attempt(&marker),
            link.display(),
            marker.display()
        );
        let report = env.run(shell, &[&rules], &script);
        report.assert_direct_write_refused();
        let resolved = std::fs::canonicalize(link).unwrap();
        report.assert_escalated(resolved.to_str().unwrap());
        assert_no_marker(&marker, &report);
        // It ran as `git diff`, the command the rules allowed, which refuses `-y`.
        let git = report.execs_of(resolved.to_str().unwrap());
        assert_eq!(git[0]["exit_code"], 129, "[{name}] {report}");
    }
}

// ---- a flood of streams (issue 13) -----------------------------------------------------

/// Sends both ends of `argv[1]` socketpairs to the server as exec streams, then exits:
/// each end waits for a request that never comes, and the server holds both.
const FLOOD: &str = r#"
import os, socket, struct, sys
session = socket.socket(fileno=int(os.environ["EXECGATE_SOCKET"]))
handshake = b"EXECGATE" + struct.pack("<I", 1)
sent = 0
for _ in range(int(sys.argv[1])):
    a, b = socket.socketpair()
    for end in (a, b):
        try:
            socket.send_fds(session, [handshake], [end.fileno()])
            sent += 1
        except OSError:
            pass
    a.close()
    b.close()
print("sent", sent, flush=True)
"#;

/// The number of open fds of process `pid`.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Waits (at most 60 s) for `ready` to hold; false if it never did.
fn wait_until(mut ready: impl FnMut() -> bool) -> bool {
    for _ in 0..600 {
        if ready() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

#[test]
fn a_flood_of_stalled_streams_neither_exhausts_the_servers_fds_nor_stops_later_execs() {
    let env = Hostile::new();
    let rules = env.write_outside(
        "rules/date.rules",
        "prefix_rule(pattern = [\"date\"], decision = \"allow\")\n",
    );
    std::fs::write(env.work.join("flood.py"), FLOOD).unwrap();
    for fifo in ["start", "finish"] {
        let status = Command::new("mkfifo")
            .arg(env.work.join(fifo))
            .status()
            .unwrap();
        assert!(status.success());
    }
    // 1,500 pairs are 3,000 streams: more fds than the server may open.
    let script = "echo up > ready; read x < start\n\
                  python3 flood.py 1500 > flood.txt\n\
                  date +%Y > after-flood.txt; echo \"date=$?\" >> after-flood.txt\n\
                  read x < finish\n\
                  date +%Y > after-idle.txt; echo \"date=$?\" >> after-idle.txt\n";
    let mut cmd = env.command("zsh", &["--rules", rules.to_str().unwrap(), script]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 2048,
                rlim_max: 2048,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    let read = |name: &str| std::fs::read_to_string(env.work.join(name)).unwrap_or_default();
    let finish = |child: &mut std::process::Child| {
        // Unblock every fifo read so the session ends, whatever state it is in.
        for fifo in ["start", "finish"] {
            let path = env.work.join(fifo);
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&path)
                .map(|mut f| std::io::Write::write_all(&mut f, b"go\n"));
        }
        let _ = child.kill();
    };
    use std::os::unix::fs::OpenOptionsExt;
    assert!(
        wait_until(|| read("ready") == "up\n"),
        "the session never started"
    );
    let idle = fd_count(pid);
    std::fs::write(env.work.join("start"), "go\n").unwrap();
    let flooded = wait_until(|| read("after-flood.txt").contains("date="));
    let after_flood = read("after-flood.txt");
    let back_to_idle = wait_until(|| fd_count(pid) <= idle);
    let during = fd_count(pid);
    if !flooded || !back_to_idle {
        finish(&mut child);
        let out = child.wait_with_output().unwrap();
        panic!(
            "after the flood ({}): the exec {}; the server has {during} fds open (idle: \
             {idle});\nexecgate stderr: {}",
            read("flood.txt").trim(),
            if flooded {
                format!("wrote {after_flood:?}")
            } else {
                "never finished".to_string()
            },
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::write(env.work.join("finish"), "go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let report = Report::parse("patched zsh", out);
    assert!(read("flood.txt").starts_with("sent "), "{report}");
    let year = format!("{}\ndate=0\n", &after_flood.get(..4).unwrap_or("????"));
    assert_eq!(
        after_flood, year,
        "the exec after the flood failed: {report}"
    );
    assert_eq!(read("after-idle.txt"), year, "{report}");
    let dates = report.execs_of("/usr/bin/date");
    assert_eq!(dates.len(), 2, "{report}");
    assert!(dates.iter().all(|d| d["verdict"] == "escalate"), "{report}");
}

/// `execgate mcp` on pipes, spoken to line by line (JSON-RPC), for the flood test.
struct RawMcp {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
}

impl RawMcp {
    fn start(env: &Hostile, rules: &Path, nofile: libc::rlim_t) -> Self {
        let zsh = bins::patched_zsh();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_execgate"));
        cmd.args(["mcp", "--rules", rules.to_str().unwrap()])
            .current_dir(&env.work)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &env.home)
            .env("EXECGATE_SHELLS_DIR", zsh.parent().unwrap())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        bins::with_helpers(&mut cmd);
        // SAFETY: setsid and setrlimit are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                let limit = libc::rlimit {
                    rlim_cur: nofile,
                    rlim_max: nofile,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut mcp = Self {
            child,
            stdin,
            lines,
        };
        mcp.send(
            &serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "execgate-test", "version": "0"}}}),
        );
        mcp.response(0);
        mcp.send(&serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        mcp
    }

    fn send(&mut self, message: &Value) {
        use std::io::Write;
        writeln!(self.stdin, "{message}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Calls the shell tool with `command` in `workdir` under request id `id`.
    fn call(&mut self, id: u64, command: &str, workdir: &Path) {
        self.send(
            &serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "shell", "arguments": {"command": command,
                "workdir": workdir, "login": false, "timeout_ms": 120_000}}}),
        );
    }

    /// The response to request `id` (60 s at most; other messages are skipped).
    fn response(&mut self, id: u64) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no response to request {id}"));
            let message: Value = serde_json::from_str(&line).unwrap();
            if message["id"] == id {
                return message;
            }
        }
    }
}

impl Drop for RawMcp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_mcp_call_that_floods_the_server_does_not_stop_another_call() {
    let env = Hostile::new();
    let rules = env.write_outside(
        "rules/date.rules",
        "prefix_rule(pattern = [\"date\"], decision = \"allow\")\n",
    );
    std::fs::write(env.work.join("flood.py"), FLOOD).unwrap();
    let status = Command::new("mkfifo")
        .arg(env.work.join("hold"))
        .status()
        .unwrap();
    assert!(status.success());
    let mut mcp = RawMcp::start(&env, &rules, 2048);
    // Call 1 floods, then stays (its session alive) until the test lets it go.
    mcp.call(
        1,
        "python3 flood.py 1500 > flood.txt; read x < hold",
        &env.work,
    );
    let read = |name: &str| std::fs::read_to_string(env.work.join(name)).unwrap_or_default();
    assert!(
        wait_until(|| read("flood.txt").starts_with("sent ")),
        "no flood"
    );
    mcp.call(2, "date +%Y", &env.work);
    let other = mcp.response(2);
    std::fs::write(env.work.join("hold"), "go\n").unwrap();
    let flooder = mcp.response(1);
    let report = &other["result"]["structuredContent"];
    assert_eq!(report["exit_code"], 0, "{other}\nflooding call: {flooder}");
    assert_eq!(report["stdout"].as_str().unwrap().len(), 5, "{other}");
    assert_eq!(report["verdicts"]["escalate"], 1, "{other}");
    assert_eq!(
        report["escalated"][0]["command"], "/usr/bin/date '+%Y'",
        "{other}"
    );
    assert_eq!(
        flooder["result"]["structuredContent"]["exit_code"], 0,
        "{flooder}"
    );
}

// ---- files only the sandbox can see ----------------------------------------------------

/// A client speaking the protocol by hand: asks to escalate `argv[1]` with cwd `argv[2]`
/// and the remaining arguments as argv, passes its stdio along, and prints what happened.
const RAW_CLIENT: &str = r#"
import os, socket, struct, sys
session = socket.socket(fileno=int(os.environ["EXECGATE_SOCKET"]))
def field(x): return struct.pack("<I", len(x)) + x
def frame(payload): return struct.pack("<I", len(payload)) + payload
def read_frame(s):
    data = b""
    while len(data) < 4 or len(data) < 4 + struct.unpack("<I", data[:4])[0]:
        chunk = s.recv(65536)
        if not chunk:
            return None
        data += chunk
    return data[4:]
program, cwd, argv = sys.argv[1].encode(), sys.argv[2].encode(), [a.encode() for a in sys.argv[3:]]
request = b"\x01" + struct.pack("<I", 1) + field(program) + field(cwd)
request += struct.pack("<I", len(argv)) + b"".join(field(a) for a in argv)
request += struct.pack("<I", 1) + field(b"PATH=/usr/bin:/bin")
mine, theirs = socket.socketpair()
mine.sendall(frame(request))
socket.send_fds(session, [b"EXECGATE" + struct.pack("<I", 1)], [theirs.fileno()])
theirs.close()
verdict = read_frame(mine)
if verdict[:1] != b"\x11":
    print("not escalated", verdict, flush=True)
    sys.exit(0)
socket.send_fds(mine, [frame(b"\x02" + struct.pack("<Iiii", 3, 0, 1, 2))], [0, 1, 2])
started = read_frame(mine)
print("started" if started[:1] == b"\x20" else "spawn failed: %r" % started[9:], flush=True)
"#;

/// The host pid of the sandboxed shell whose command line holds `needle`.
fn host_pid_of_shell(needle: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let exe = std::fs::read_link(entry.path().join("exe")).ok()?;
            (exe.file_name()? == "zsh" && String::from_utf8_lossy(&cmdline).contains(needle))
                .then_some(pid)
        })
}

#[test]
fn a_file_only_the_sandbox_can_see_is_never_escalated_by_a_host_path() {
    // bubblewrap gives the sandbox its own /dev, a tmpfs it can write. Through
    // /proc/<pid>/root of a sandboxed process the server could open a binary planted there,
    // and would judge it by the path it has inside the sandbox (/dev/shm/date), which names
    // no writable root, so a basename rule for `date` allowed it. A real script would scan
    // pid numbers for its own processes; here the test tells it its shell's host pid.
    let env = Hostile::new();
    let rules = env.write_outside(
        "rules/date.rules",
        "prefix_rule(pattern = [\"date\"], decision = \"allow\")\n",
    );
    std::fs::write(env.work.join("raw.py"), RAW_CLIENT).unwrap();
    let marker = env.marker("planted-ran");
    let script = format!(
        "{}cp /usr/bin/touch /dev/shm/date\n\
         echo up > ready; while [ ! -s hostpid ]; do :; done; read pid < hostpid\n\
         python3 raw.py /proc/$pid/root/dev/shm/date / date {}\n\
         python3 raw.py /usr/bin/date /proc/$pid/root/dev/shm date\n",
        direct_attempt(&marker),
        marker.display()
    );
    let mut cmd = env.command("zsh", &["--rules", rules.to_str().unwrap(), &script]);
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ready = wait_until(|| env.work.join("ready").exists());
    let pid = host_pid_of_shell("hostpid");
    std::fs::write(env.work.join("hostpid"), format!("{}\n", pid.unwrap_or(1))).unwrap();
    let report = Report::parse("patched zsh", child.wait_with_output().unwrap());
    assert!(ready && pid.is_some(), "{report}");
    report.assert_direct_write_refused();
    assert_no_marker(&marker, &report);
    // Neither the planted program nor a cwd only the sandbox can see was used. The cwd
    // never reaches the spawn: the repository guard cannot open it either, so the exec is
    // kept in the sandbox (verdict Run).
    let lines: Vec<&str> = report.stdout().lines().collect();
    assert_eq!(
        lines,
        [
            "direct-refused",
            "spawn failed: b'/dev/shm/date is not the file the policy judged (replaced, or \
             visible only inside the sandbox); it was not run'",
            "not escalated b'\\x10'",
        ],
        "{report}"
    );
    let date = report.execs_of("/usr/bin/date");
    assert_eq!(
        date.last().unwrap()["downgraded"],
        format!(
            "cannot tell which git repository /proc/{}/root/dev/shm is in (Invalid cross-device \
             link (os error 18)), so it could be one the sandbox wrote",
            pid.unwrap()
        ),
        "{report}"
    );
}
