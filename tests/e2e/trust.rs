//! Hostile scripts against `execgate run` (issue 12, the policy side): what the sandbox
//! writes (a repository, policy files, hook scripts, a home) never steers an escalated
//! command or a later session. Real shells, the real sandbox.
//!
//! As in `hardening`, a marker path lies outside every writable root, the script first
//! shows it cannot create it itself, and the marker must not exist afterwards.

use crate::hardening::{
    assert_no_marker, basic_rules, direct_attempt, git_read_rules, outside_repo, Hostile, Report,
    SETUPS,
};
use crate::support::bins;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Rules that let `git status` (and the repository-picking options of the tests) escalate.
fn git_rules(env: &Hostile) -> PathBuf {
    env.write_outside(
        "rules/git.rules",
        "prefix_rule(pattern = [\"git\", \"status\"], decision = \"allow\")\n\
         prefix_rule(pattern = [\"git\", [\"-C\", \"--git-dir\"]], decision = \"allow\")\n",
    )
}

/// The records of `git SUB ...` (program /usr/bin/git, argv[1] `sub`).
fn git_execs<'a>(report: &'a Report, sub: &str) -> Vec<&'a Value> {
    report
        .execs_of("/usr/bin/git")
        .into_iter()
        .filter(|e| e["argv"][1] == sub)
        .collect()
}

/// Asserts that `exec` was allowed by the rules but kept in the sandbox for `why`.
fn assert_kept_in_sandbox(report: &Report, exec: &Value, why: &str) {
    assert_eq!(
        (&exec["decision"], &exec["verdict"], &exec["source"]),
        (&"allow".into(), &"run".into(), &"policy".into()),
        "[{}] {report}",
        report.setup
    );
    assert_eq!(exec["downgraded"], why, "[{}] {report}", report.setup);
}

/// The reason an escalation in the untrusted repository `git_dir` (in writable root `root`,
/// work tree `top`) is kept in the sandbox.
fn untrusted(git_dir: &Path, root: &Path, top: &Path) -> String {
    format!(
        "the repository {} is inside the writable root {} and not trusted; to let commands \
         escalate there, run `execgate trust {}` outside the sandbox",
        git_dir.display(),
        root.display(),
        top.display()
    )
}

/// `git ARGS` outside any sandbox, with the test's home.
fn git(env: &Hostile, dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("HOME", &env.home)
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?} in {}", dir.display());
}

/// `execgate trust ARGS` as the user, outside the sandbox; returns (status, stdout, stderr).
fn trust(env: &Hostile, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bins::execgate())
        .arg("trust")
        .args(args)
        .current_dir(&env.work)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &env.home)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A folder beside the workspace that the tests make a writable root of its own
/// (`--writable-root`), with `rel` under it created; returns (the root, `rel` in it).
fn boxed(env: &Hostile, rel: &str) -> (PathBuf, PathBuf) {
    let root = env.work.parent().unwrap().join("box");
    let dir = root.join(rel);
    std::fs::create_dir_all(&dir).unwrap();
    (root, dir)
}

/// The script lines that give the repository in the current folder an fsmonitor hook
/// that creates `marker`.
fn plant_fsmonitor(marker: &Path) -> String {
    format!("git config core.fsmonitor 'touch {}'\n", marker.display())
}

// ---- repositories (finding 3) -----------------------------------------------------------

#[test]
fn a_repository_created_in_the_session_does_not_steer_an_escalated_git() {
    for (_, shell) in SETUPS {
        let env = Hostile::new();
        let marker = env.marker("fsmonitor-ran");
        let script = format!(
            "{}git init -q\n{}git status --short\n",
            direct_attempt(&marker),
            plant_fsmonitor(&marker)
        );
        let report = env.run(shell, &[&git_rules(&env)], &script);
        report.assert_direct_write_refused();
        assert_no_marker(&marker, &report);
        let status = git_execs(&report, "status");
        assert_eq!(status.len(), 1, "[{}] {report}", report.setup);
        let why = untrusted(&env.work.join(".git"), &env.work, &env.work);
        assert_kept_in_sandbox(&report, status[0], &why);
        assert_eq!(
            String::from_utf8_lossy(&report.out.stderr)
                .lines()
                .filter(|l| l.starts_with("execgate: kept in the sandbox: "))
                .collect::<Vec<_>>(),
            [format!(
                "execgate: kept in the sandbox: /usr/bin/git status --short: {why}"
            )],
            "[{}] {report}",
            report.setup
        );
    }
}

#[test]
fn a_dot_git_file_or_symlink_naming_a_planted_git_dir_does_not_steer_an_escalated_git() {
    for (_, shell) in SETUPS {
        let env = Hostile::new();
        let marker = env.marker("fsmonitor-ran");
        // The planted git dir lives in the temp dir, another writable root.
        let evil = tempfile::tempdir().unwrap();
        let evil = evil.path().canonicalize().unwrap();
        let script = format!(
            "{d}git init -q --separate-git-dir {e}/gd file; cd file; {p}cd ..\n\
             mkdir link; git init -q {e}/repo; ln -s {e}/repo/.git link/.git\n\
             cd link; {p}cd ..\n\
             cd file; git status --short; cd ../link; git status --short\n",
            d = direct_attempt(&marker),
            e = evil.display(),
            p = plant_fsmonitor(&marker)
        );
        let report = env.run(shell, &[&git_rules(&env)], &script);
        report.assert_direct_write_refused();
        assert_no_marker(&marker, &report);
        let status = git_execs(&report, "status");
        assert_eq!(status.len(), 2, "[{}] {report}", report.setup);
        let tmp = std::env::temp_dir().canonicalize().unwrap();
        let through_file = untrusted(&evil.join("gd"), &tmp, &env.work.join("file"));
        assert_kept_in_sandbox(&report, status[0], &through_file);
        let through_link = untrusted(&evil.join("repo/.git"), &tmp, &env.work.join("link"));
        assert_kept_in_sandbox(&report, status[1], &through_link);
    }
}

#[test]
fn options_that_pick_another_repository_are_checked_too() {
    for (_, shell) in SETUPS {
        let env = Hostile::new();
        let repo = outside_repo(&env);
        let marker = env.marker("fsmonitor-ran");
        let evil = env.work.join("evil");
        let script = format!(
            "{}git init -q evil; cd evil; {}cd {}\n\
             git -C {e} status --short\n\
             git --git-dir {e}/.git status --short\n",
            direct_attempt(&marker),
            plant_fsmonitor(&marker),
            repo.display(),
            e = evil.display()
        );
        let report = env.run(shell, &[&git_rules(&env)], &script);
        report.assert_direct_write_refused();
        assert_no_marker(&marker, &report);
        let why = untrusted(&evil.join(".git"), &env.work, &evil);
        for sub in ["-C", "--git-dir"] {
            let execs = git_execs(&report, sub);
            assert_eq!(execs.len(), 1, "[{}] {report}", report.setup);
            assert_kept_in_sandbox(&report, execs[0], &why);
        }
    }
}

#[test]
fn a_repository_outside_the_writable_roots_still_escalates() {
    let env = Hostile::new();
    let repo = outside_repo(&env);
    let script = format!(
        "cd {} && git status --short && echo clean\n",
        repo.display()
    );
    let report = env.run("zsh", &[&git_rules(&env)], &script);
    assert_eq!(report.stdout(), "clean\n", "{report}");
    report.assert_escalated("/usr/bin/git");
}

#[test]
fn the_repository_around_a_subfolder_workspace_is_read_only_and_not_trusted() {
    // The workspace is a subfolder of a repository that lives in another writable root
    // (as under /tmp): the repository's .git is above the workspace, inside that root.
    let env = Hostile::new();
    let (root, sub) = boxed(&env, "repo/sub");
    let repo = root.join("repo");
    git(&env, &repo, &["init", "-q"]);
    let marker = env.marker("fsmonitor-ran");
    let script = format!(
        "{}printf '[core]\\n\\tfsmonitor = touch {}\\n' >> ../.git/config 2>/dev/null \
         && echo config-written || echo config-refused\n\
         git status --short\n",
        direct_attempt(&marker),
        marker.display()
    );
    let rules = git_rules(&env);
    let args = [
        "--rules",
        rules.to_str().unwrap(),
        "--cwd",
        sub.to_str().unwrap(),
        "--writable-root",
        root.to_str().unwrap(),
    ];
    let report = env.run_args("auto", "zsh", &args, &script);
    report.assert_direct_write_refused();
    assert_no_marker(&marker, &report);
    assert_eq!(
        report.stdout(),
        "direct-refused\nconfig-refused\n",
        "{report}"
    );
    let status = git_execs(&report, "status");
    assert_eq!(status.len(), 1, "{report}");
    assert_kept_in_sandbox(
        &report,
        status[0],
        &untrusted(&repo.join(".git"), &root, &repo),
    );
}

#[test]
fn a_trusted_repository_escalates_and_cannot_be_swapped_for_another() {
    // A repository in a writable root that the user trusted. Sandboxed code tries to move
    // it (or its .git) away and make a repository of its own in its place.
    let env = Hostile::new();
    let (root, proj) = boxed(&env, "proj");
    git(&env, &proj, &["init", "-q"]);
    let (code, _, stderr) = trust(&env, &[proj.to_str().unwrap()]);
    assert_eq!(code, 0, "execgate trust: {stderr}");
    let marker = env.marker("fsmonitor-ran");
    let script = format!(
        "{}cd proj; git status --short
cd ..
         mv proj proj.old 2>/dev/null && echo moved || echo rename-refused
         mv proj/.git proj/.git.old 2>/dev/null && echo moved || echo rename-refused
         mkdir -p proj; cd proj; git init -q 2>/dev/null; {}git status --short
",
        direct_attempt(&marker),
        plant_fsmonitor(&marker).replace('\n', " 2>/dev/null\n")
    );
    let rules = git_rules(&env);
    let args = [
        "--rules",
        rules.to_str().unwrap(),
        "--cwd",
        root.to_str().unwrap(),
    ];
    let report = env.run_args("auto", "zsh", &args, &script);
    report.assert_direct_write_refused();
    assert_no_marker(&marker, &report);
    assert_eq!(
        report.stdout(),
        "direct-refused\nrename-refused\nrename-refused\n",
        "{report}"
    );
    let status = git_execs(&report, "status");
    assert_eq!(status.len(), 2, "{report}");
    assert!(
        status.iter().all(|e| e["verdict"] == "escalate"),
        "{report}"
    );
}

#[test]
fn a_repository_created_under_landlock_does_not_steer_an_escalated_git() {
    for (_, shell) in SETUPS {
        let env = Hostile::new();
        let tmp = tempfile::tempdir_in(&env.outside).unwrap();
        let marker = env.marker("fsmonitor-ran");
        let script = format!(
            "{}git init -q\n{}git status --short\n",
            direct_attempt(&marker),
            plant_fsmonitor(&marker)
        );
        let rules = git_rules(&env);
        let out = env
            .command(
                shell,
                &["--verbose", "--rules", rules.to_str().unwrap(), &script],
            )
            .env("EXECGATE_SANDBOX_BACKEND", "landlock")
            .env("TMPDIR", tmp.path())
            .output()
            .unwrap();
        let report = Report::parse(shell, out);
        assert!(
            String::from_utf8_lossy(&report.out.stderr).contains("sandbox: backend: landlock"),
            "{report}"
        );
        report.assert_direct_write_refused();
        assert_no_marker(&marker, &report);
        let status = git_execs(&report, "status");
        assert_eq!(status.len(), 1, "{report}");
        assert_kept_in_sandbox(
            &report,
            status[0],
            &untrusted(&env.work.join(".git"), &env.work, &env.work),
        );
    }
}

// ---- policy (finding 4) ------------------------------------------------------------------

/// Script lines that plant a project layer in folder `dir`: a rule allowing `sh` and one
/// prompting for `true`, and a hook (run on that prompt) creating `hook_marker`.
fn plant_layer(dir: &Path, hook_marker: &Path) -> String {
    format!(
        "mkdir -p {d}/.execgate/rules\n\
         printf 'prefix_rule(pattern = [\"sh\"], decision = \"allow\")\\n\
         prefix_rule(pattern = [\"true\"], decision = \"prompt\")\\n' > {d}/.execgate/rules/evil.rules\n\
         printf '{{\"hooks\": {{\"PermissionRequest\": [{{\"hooks\": [{{\"type\": \"command\", \
         \"command\": \"touch {m}\"}}]}}]}}}}' > {d}/.execgate/hooks.json\n",
        d = dir.display(),
        m = hook_marker.display()
    )
}

/// The next session's script: the planted rule would escalate `sh`, the planted prompt
/// would run the planted hook.
fn use_layer(marker: &Path) -> String {
    format!(
        "{}sh -c 'touch {}'\ntrue\necho done\n",
        direct_attempt(marker),
        marker.display()
    )
}

/// Runs the planting session and the next one from `cwd` (rules and hooks discovered),
/// and checks that the next one loaded nothing planted.
fn planted_layer_is_skipped(env: &Hostile, shell: &str, layer: &Path, extra: &[&str]) {
    let (marker, hook_marker) = (env.marker("sh-ran"), env.marker("hook-ran"));
    let first = env.run_args("auto", shell, extra, &plant_layer(layer, &hook_marker));
    assert_eq!(first.json["exit_code"], 0, "{first}");
    let next = env.run_args("auto", shell, extra, &use_layer(&marker));
    next.assert_direct_write_refused();
    assert_no_marker(&marker, &next);
    assert_no_marker(&hook_marker, &next);
    assert_eq!(next.stdout(), "direct-refused\ndone\n", "{next}");
    let layer = layer.join(".execgate");
    assert_eq!(
        String::from_utf8_lossy(&next.out.stderr)
            .lines()
            .collect::<Vec<_>>(),
        [format!(
            "execgate: skipped the untrusted project policy {l} (rules/evil.rules, hooks.json): \
             run `execgate trust {d}` to load it",
            l = layer.display(),
            d = layer.parent().unwrap().display()
        )],
        "{next}"
    );
}

#[test]
fn policy_planted_in_the_workspace_does_not_load_in_the_next_session() {
    for (_, shell) in SETUPS {
        let env = Hostile::new();
        planted_layer_is_skipped(&env, shell, &env.work.clone(), &[]);
    }
}

#[test]
fn policy_planted_above_the_workspace_does_not_load_in_the_next_session() {
    let env = Hostile::new();
    let (root, work) = boxed(&env, "a/work");
    let extra = [
        "--cwd",
        work.to_str().unwrap(),
        "--writable-root",
        root.to_str().unwrap(),
    ];
    planted_layer_is_skipped(&env, "zsh", &root.join("a"), &extra);
}

#[test]
fn policy_shipped_in_a_cloned_repository_does_not_load_until_trusted() {
    let env = Hostile::new();
    let clone = env.outside.join("clone");
    let (marker, hook_marker) = (env.marker("sh-ran"), env.marker("hook-ran"));
    // What the clone ships, written outside any session.
    let planted = Command::new("sh")
        .arg("-c")
        .arg(plant_layer(&clone, &hook_marker))
        .status()
        .unwrap();
    assert!(planted.success());
    let report = env.run_args(
        "auto",
        "zsh",
        &["--cwd", clone.to_str().unwrap()],
        &use_layer(&marker),
    );
    report.assert_direct_write_refused();
    assert_no_marker(&marker, &report);
    assert_no_marker(&hook_marker, &report);
    assert_eq!(report.stdout(), "direct-refused\ndone\n", "{report}");
}

#[test]
fn policy_folders_in_and_above_writable_roots_are_read_only() {
    let env = Hostile::new();
    let (root, work) = boxed(&env, "a/b/work");
    let above = root.join("a/.execgate/rules");
    std::fs::create_dir_all(&above).unwrap();
    std::fs::write(above.join("mine.rules"), "").unwrap();
    let codex = env.home.join("codex-home");
    let targets = [
        above.join("mine.rules"),
        above.join("new.rules"),
        env.home.join(".config/execgate/rules/new.rules"),
        env.home.join(".config/execgate/hooks.json"),
        codex.join("rules/new.rules"),
    ];
    let mut script = String::new();
    for target in &targets {
        script.push_str(&format!(
            "mkdir -p {d} 2>/dev/null; echo x >> {t} 2>/dev/null && echo written || echo refused\n",
            d = target.parent().unwrap().display(),
            t = target.display()
        ));
    }
    let out = env
        .command(
            "zsh",
            &[
                "--cwd",
                work.to_str().unwrap(),
                "--writable-root",
                root.to_str().unwrap(),
                "--writable-root",
                env.home.to_str().unwrap(),
                &script,
            ],
        )
        .env("CODEX_HOME", &codex)
        .env("EXECGATE_SANDBOX_BACKEND", "bubblewrap")
        .output()
        .unwrap();
    let report = Report::parse("patched zsh", out);
    assert_eq!(
        report.stdout(),
        "refused\n".repeat(targets.len()),
        "{report}"
    );
    assert_eq!(std::fs::read(above.join("mine.rules")).unwrap(), b"");
    for target in &targets[1..] {
        assert!(
            !target.exists(),
            "{} was created: {report}",
            target.display()
        );
    }
}

// ---- hooks (finding 5) -------------------------------------------------------------------

#[test]
fn hooks_run_in_the_folder_execgate_started_in_not_the_commands() {
    let env = Hostile::new();
    let repo = outside_repo(&env);
    // The project's hook, as README's "An example hook" once installed it (a relative
    // path), in a layer the user trusted.
    std::fs::create_dir_all(env.work.join(".execgate")).unwrap();
    std::fs::write(
        env.work.join(".execgate/hooks.json"),
        r#"{"hooks": {"PermissionRequest": [{"hooks": [{"type": "command", "command": "sh .execgate/guard.sh"}]}]}}"#,
    )
    .unwrap();
    let log = env.outside.join("hook-cwd");
    std::fs::write(
        env.work.join(".execgate/guard.sh"),
        format!("echo \"$PWD\" >> {}\n", log.display()),
    )
    .unwrap();
    let (code, _, stderr) = trust(&env, &[env.work.to_str().unwrap()]);
    assert_eq!(code, 0, "execgate trust: {stderr}");
    let marker = env.marker("planted-hook-ran");
    let script = format!(
        "{}mkdir -p sub/.execgate\n\
         printf '#!/bin/sh\\ntouch {m}\\n' > sub/.execgate/guard.sh\n\
         cd sub && git push nowhere main\ncd {r} && git push nowhere main\n",
        direct_attempt(&marker),
        r = repo.display(),
        m = marker.display()
    );
    let report = env.run("zsh", &[&basic_rules()], &script);
    report.assert_direct_write_refused();
    assert_no_marker(&marker, &report);
    // Both prompts ran the project's own hook, in the folder execgate was started in.
    assert_eq!(
        std::fs::read_to_string(&log).unwrap_or_default(),
        format!("{w}\n{w}\n", w = env.work.display()),
        "{report}"
    );
}

/// Installs the shipped example hook as README says: guard.sh and hooks.json in
/// `~/.config/execgate/`.
fn install_example_hook(env: &Hostile) {
    let dir = env.home.join(".config/execgate");
    std::fs::create_dir_all(&dir).unwrap();
    let examples = bins::repo_root().join("examples/hooks");
    for file in ["guard.sh", "hooks.json"] {
        std::fs::copy(examples.join(file), dir.join(file)).unwrap();
    }
    std::fs::set_permissions(
        dir.join("guard.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
}

#[test]
fn the_example_hook_judges_the_exact_argv() {
    let env = Hostile::new();
    let repo = outside_repo(&env);
    install_example_hook(&env);
    let script = format!(
        "cd {}\n\
         git push evil \"/git status\"\n\
         git push --force origin main\n\
         git push origin '+main'\n\
         git push origin main\n",
        repo.display()
    );
    let report = env.run_args(
        "auto",
        "zsh",
        &["--rules", basic_rules().to_str().unwrap()],
        &script,
    );
    let pushes: Vec<(&Value, &Value, &Value)> = git_execs(&report, "push")
        .into_iter()
        .map(|e| (&e["verdict"], &e["source"], &e["justification"]))
        .collect();
    let force = "force-pushing is not allowed here; push without --force or +".into();
    assert_eq!(
        pushes,
        [
            (
                &"deny".into(),
                &"user".into(),
                &"approval required; no approver available".into()
            ),
            (&"deny".into(), &"hook".into(), &force),
            (&"deny".into(), &"hook".into(), &force),
            (
                &"escalate".into(),
                &"hook".into(),
                &"pushing publishes commits; confirm the remote and branch".into()
            ),
        ],
        "{report}"
    );
}

#[test]
fn a_hook_naming_a_script_the_sandbox_can_write_is_not_run() {
    let env = Hostile::new();
    let repo = outside_repo(&env);
    let script_path = env.work.join("hook.sh");
    let marker = env.marker("hook-ran");
    let hooks = env.write_outside(
        "hooks.json",
        &format!(
            r#"{{"hooks": {{"PermissionRequest": [{{"hooks": [{{"type": "command", "command": "sh {}"}}]}}]}}}}"#,
            script_path.display()
        ),
    );
    let script = format!(
        "{}printf 'touch {}\\n' > hook.sh\ncd {} && git push nowhere main\n",
        direct_attempt(&marker),
        marker.display(),
        repo.display()
    );
    let rules = basic_rules();
    let args = [
        "--rules",
        rules.to_str().unwrap(),
        "--hooks",
        hooks.to_str().unwrap(),
    ];
    let report = env.run_args("auto", "zsh", &args, &script);
    report.assert_direct_write_refused();
    assert_no_marker(&marker, &report);
    let push = git_execs(&report, "push");
    assert_eq!(push.len(), 1, "{report}");
    assert_eq!(push[0]["source"], "user", "{report}");
    assert!(
        String::from_utf8_lossy(&report.out.stderr).contains(&format!(
            "execgate: hook not run: sh {s}: it names {s}, which the sandbox can write",
            s = script_path.display()
        )),
        "{report}"
    );
}

// ---- the example rules (findings 6 and 9) ------------------------------------------------

#[test]
fn git_log_output_under_the_example_rules_writes_only_inside_the_sandbox() {
    for (_, shell) in SETUPS {
        let env = Hostile::new();
        let repo = outside_repo(&env);
        let marker = env.marker("log-output");
        let script = format!(
            "{}cd {} && git log --output={} -1\n",
            direct_attempt(&marker),
            repo.display(),
            marker.display()
        );
        let report = env.run(shell, &[&basic_rules()], &script);
        report.assert_direct_write_refused();
        assert_no_marker(&marker, &report);
        let log = git_execs(&report, "log");
        assert_eq!(log.len(), 1, "[{}] {report}", report.setup);
        assert_eq!(
            (&log[0]["decision"], &log[0]["verdict"]),
            (&"unmatched".into(), &"run".into()),
            "{report}"
        );
    }
}

#[test]
fn cargo_build_under_the_example_rules_runs_build_scripts_inside_the_sandbox() {
    let env = Hostile::new();
    let marker = env.marker("build-rs-ran");
    let cargo = PathBuf::from(std::env::var("CARGO").expect("cargo sets CARGO for tests"));
    let toolchain = cargo.parent().unwrap();
    std::fs::create_dir_all(env.work.join("src")).unwrap();
    std::fs::write(
        env.work.join("Cargo.toml"),
        "[package]\nname = \"evil\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::write(env.work.join("src/main.rs"), "fn main() {}\n").unwrap();
    let script = format!(
        "{}printf 'fn main() {{ std::fs::write(\"{}\", \"\").unwrap(); }}\\n' > build.rs\n\
         cargo build --offline -q 2>/dev/null; echo built\n",
        direct_attempt(&marker),
        marker.display()
    );
    let out = env
        .command(
            "zsh",
            &["--rules", basic_rules().to_str().unwrap(), &script],
        )
        .env("PATH", format!("{}:/usr/bin:/bin", toolchain.display()))
        .env("CARGO_HOME", env.outside.join("cargo-home"))
        .output()
        .unwrap();
    let report = Report::parse("patched zsh", out);
    report.assert_direct_write_refused();
    assert_no_marker(&marker, &report);
    let cargo_runs = report.execs_of(cargo.canonicalize().unwrap().to_str().unwrap());
    assert_eq!(cargo_runs.len(), 1, "{report}");
    assert_eq!(
        (&cargo_runs[0]["decision"], &cargo_runs[0]["verdict"]),
        (&"unmatched".into(), &"run".into()),
        "{report}"
    );
}

// ---- a writable home (finding 10) --------------------------------------------------------

/// What a user's home holds before the session, relative to it.
const HOME_FILES: [&str; 7] = [
    ".gitconfig",
    ".bashrc",
    ".profile",
    ".bash_profile",
    ".ssh/config",
    ".claude/settings.json",
    ".codex/config.toml",
];

/// Paths under the home the sandbox tries to create.
const HOME_NEW: [&str; 6] = [
    ".config/git/config",
    ".zshrc",
    ".ssh/authorized_keys",
    ".config/execgate/rules/evil.rules",
    ".claude/hooks.json",
    ".agents/evil.md",
];

fn fill_home(env: &Hostile) {
    for rel in HOME_FILES {
        let path = env.home.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "").unwrap();
    }
    std::fs::create_dir_all(env.home.join(".agents")).unwrap();
}

#[test]
fn a_writable_home_keeps_what_escalated_programs_and_agents_read_read_only() {
    let env = Hostile::new();
    fill_home(&env);
    let repo = outside_repo(&env);
    let marker = env.marker("fsmonitor-ran");
    let mut script = direct_attempt(&marker);
    for rel in HOME_FILES.iter().chain(&HOME_NEW) {
        let path = env.home.join(rel);
        script.push_str(&format!(
            "mkdir -p {} 2>/dev/null; printf '[core]\\n\\tfsmonitor = touch {}\\n' >> {} 2>/dev/null \
             && echo {rel}: written || echo {rel}: refused\n",
            path.parent().unwrap().display(),
            marker.display(),
            path.display()
        ));
    }
    script.push_str(&format!("cd {} && git status --short\n", repo.display()));
    let home = env.home.to_str().unwrap();
    let rules = git_read_rules();
    let args = ["--rules", rules.to_str().unwrap(), "--cwd", home];
    let out = env
        .command("zsh", &[&args[..], &[&script]].concat())
        .env("EXECGATE_SANDBOX_BACKEND", "bubblewrap")
        .output()
        .unwrap();
    let report = Report::parse("patched zsh", out);
    report.assert_direct_write_refused();
    assert_no_marker(&marker, &report);
    let expected: String = HOME_FILES
        .iter()
        .chain(&HOME_NEW)
        .map(|rel| format!("{rel}: refused\n"))
        .collect();
    assert_eq!(
        report.stdout(),
        format!("direct-refused\n{expected}"),
        "{report}"
    );
    for rel in HOME_FILES {
        assert_eq!(std::fs::read(env.home.join(rel)).unwrap(), b"", "{rel}");
    }
}

// ---- execgate trust: trusting, listing, revoking -----------------------------------------

/// A project layer in the workspace whose one rule forbids `seq`.
fn forbid_seq_layer(env: &Hostile) -> PathBuf {
    let rules = env.work.join(".execgate/rules/t.rules");
    std::fs::create_dir_all(rules.parent().unwrap()).unwrap();
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"seq\"], decision = \"forbidden\", justification = \"the project forbids seq\")\n",
    )
    .unwrap();
    rules
}

#[test]
fn a_trusted_project_layer_loads_until_it_changes_or_its_trust_is_revoked() {
    let env = Hostile::new();
    let rules = forbid_seq_layer(&env);
    let work = env.work.display().to_string();
    let layer = env.work.join(".execgate");
    let session = || {
        let report = env.run_args("auto", "zsh", &[], "seq 1; echo end\n");
        // execgate's own lines, then the shell's (where a denial is written).
        let stderr = String::from_utf8_lossy(&report.out.stderr).into_owned()
            + report.json["stderr"].as_str().unwrap();
        (report.stdout().to_string(), stderr)
    };
    let untrusted = format!(
        "execgate: skipped the untrusted project policy {l} (rules/t.rules): run `execgate \
         trust {work}` to load it\n",
        l = layer.display()
    );
    let denied = "execgate: denied: /usr/bin/seq 1: the project forbids seq\n".to_string();

    // Untrusted: skipped, seq runs.
    assert_eq!(session(), ("1\nend\n".into(), untrusted.clone()));
    assert_eq!(
        trust(&env, &["--list"]),
        (
            0,
            format!(
                "nothing is trusted ({}/.config/execgate/trusted.json has no entries)\n",
                env.home.display()
            ),
            String::new()
        )
    );

    // Trusted (the default folder is the current one): it loads.
    assert_eq!(
        trust(&env, &[]),
        (
            0,
            format!("trusted {work}\n  project policy: .execgate/rules/t.rules\n"),
            String::new()
        )
    );
    assert_eq!(session(), ("end\n".into(), denied.clone()));
    assert_eq!(
        trust(&env, &["--list"]),
        (
            0,
            format!("{work}\n  project policy: as trusted\n"),
            String::new()
        )
    );

    // Changed since: skipped again, and the list says so.
    std::fs::write(&rules, "").unwrap();
    assert_eq!(
        session(),
        (
            "1\nend\n".into(),
            format!(
                "execgate: skipped the project policy {l} (rules/t.rules): it changed since it \
                 was trusted; run `execgate trust {work}` to load it as it is\n",
                l = layer.display()
            )
        )
    );
    assert_eq!(
        trust(&env, &["--list"]),
        (
            0,
            format!("{work}\n  project policy: CHANGED since trusted: sessions skip it\n"),
            String::new()
        )
    );

    // Trusted as it is now, then revoked: skipped as untrusted.
    forbid_seq_layer(&env);
    assert_eq!(trust(&env, &[&work]).0, 0);
    assert_eq!(session(), ("end\n".into(), denied));
    assert_eq!(
        trust(&env, &["--revoke", &work]),
        (0, format!("no longer trusted: {work}\n"), String::new())
    );
    assert_eq!(session(), ("1\nend\n".into(), untrusted));
    assert_eq!(
        trust(&env, &["--revoke", &work]),
        (
            1,
            String::new(),
            format!("execgate: {work} was not trusted\n")
        )
    );
}

#[test]
fn execgate_trust_refuses_inside_a_session_and_where_there_is_nothing_to_trust() {
    let env = Hostile::new();
    assert_eq!(
        trust(&env, &[]),
        (
            2,
            String::new(),
            format!(
                "execgate: {} has no project policy (.execgate with rules or hooks.json) and is \
                 in no git repository: there is nothing to trust\n",
                env.work.display()
            )
        )
    );
    forbid_seq_layer(&env);
    // From the sandboxed shell (its trust file is read-only there anyway).
    let script = format!(
        "{} trust {} 2>&1; echo status $?\n",
        bins::execgate().display(),
        env.work.display()
    );
    let report = env.run_args("auto", "zsh", &[], &script);
    assert_eq!(
        report.stdout(),
        "execgate: execgate trust runs outside execgate sessions only: run it in your own shell\n\
         status 2\n",
        "{report}"
    );
    assert!(!env.home.join(".config/execgate/trusted.json").exists());
}

// ---- messages ------------------------------------------------------------------------

#[test]
fn names_in_a_skipped_layer_are_shown_escaped() {
    // The sandbox chose the file names: they must not reach the terminal raw.
    let env = Hostile::new();
    let first = env.run_args(
        "auto",
        "zsh",
        &[],
        "mkdir -p .execgate/rules; : > .execgate/rules/$'\\e[2J\\e]0;pwned\\a'.rules\n",
    );
    assert_eq!(first.json["exit_code"], 0, "{first}");
    let next = env.run_args("auto", "zsh", &[], "echo end\n");
    let stderr = String::from_utf8_lossy(&next.out.stderr).into_owned();
    assert_eq!(
        stderr,
        format!(
            "execgate: skipped the untrusted project policy {l} ($'rules/\\e[2J\\e]0;pwned\\a.rules'): \
             run `execgate trust {w}` to load it\n",
            l = env.work.join(".execgate").display(),
            w = env.work.display()
        ),
        "{next}"
    );
}

/// Runs a session whose one hook (in `hooks.json` outside, `command`) signals that it
/// started, waits for the script's go, then runs what `command` names; the script makes
/// a prompted `git push`, waits for the hook to start (or the push to end), runs `swap`
/// and gives the go. `STARTED` and `GO` reach the hook through execgate's environment,
/// so the words of its command name neither.
fn hook_raced(env: &Hostile, command: &str, swap: &str) -> Report {
    let repo = outside_repo(env);
    let (started, go) = (env.outside.join("started"), env.work.join("go"));
    let hooks = env.write_outside(
        "hooks.json",
        &serde_json::json!({"hooks": {"PermissionRequest": [{"hooks": [{
            "type": "command",
            "command": format!(
                "touch \"$STARTED\"; while [ ! -e \"$GO\" ]; do sleep 0.02; done; {command}"
            ),
        }]}]}})
        .to_string(),
    );
    let script = format!(
        "(cd {r} && git push nowhere main 2>/dev/null) & push=$!\n\
         while [ ! -e {s} ] && kill -0 $push 2>/dev/null; do sleep 0.02; done\n\
         {swap}\ntouch {g}\nwait $push\necho end\n",
        r = repo.display(),
        s = started.display(),
        g = go.display(),
    );
    let rules = basic_rules();
    let args = [
        "--rules",
        rules.to_str().unwrap(),
        "--hooks",
        hooks.to_str().unwrap(),
        &script,
    ];
    let out = env
        .command("zsh", &args)
        .env("STARTED", &started)
        .env("GO", &go)
        .output()
        .unwrap();
    Report::parse("patched zsh", out)
}

#[test]
fn a_hook_script_reached_through_a_symlink_the_sandbox_can_replace_is_not_run() {
    let env = Hostile::new();
    let marker = env.marker("swapped-hook-ran");
    // The user's script lies outside; the workspace links to its folder.
    env.write_outside("bin/guard.sh", "exit 0\n");
    std::os::unix::fs::symlink(env.outside.join("bin"), env.work.join("bin")).unwrap();
    let command = format!("sh {}/bin/guard.sh", env.work.display());
    let swap = format!(
        "rm bin; mkdir bin; printf 'touch {}\\n' > bin/guard.sh",
        marker.display()
    );
    let report = hook_raced(&env, &command, &swap);
    assert_eq!(report.stdout(), "end\n", "{report}");
    assert_no_marker(&marker, &report);
    assert!(
        String::from_utf8_lossy(&report.out.stderr).contains(&format!(
            "execgate: hook not run: {}: it names {}, which the sandbox can write",
            report_command(&command),
            env.work.join("bin").display()
        )),
        "{report}"
    );
}

#[test]
fn a_hook_script_that_does_not_exist_yet_where_the_sandbox_can_write_is_not_run() {
    let env = Hostile::new();
    let marker = env.marker("late-hook-ran");
    let command = format!("sh {}/late.sh", env.work.display());
    let swap = format!("printf 'touch {}\\n' > late.sh", marker.display());
    let report = hook_raced(&env, &command, &swap);
    assert_eq!(report.stdout(), "end\n", "{report}");
    assert_no_marker(&marker, &report);
    assert!(
        String::from_utf8_lossy(&report.out.stderr).contains(&format!(
            "it names {}, which the sandbox can write",
            env.work.join("late.sh").display()
        )),
        "{report}"
    );
}

/// The hook command as the warning shows it (the whole handler command).
fn report_command(command: &str) -> String {
    format!("touch \"$STARTED\"; while [ ! -e \"$GO\" ]; do sleep 0.02; done; {command}")
}

// ---- the README's transcripts ------------------------------------------------------------

/// Runs each `$ execgate ...` line of the README block after `marker` as the user (in the
/// workspace, the test's home as `/home/me`, the workspace as `/home/me/project`) and
/// checks that it prints the lines that follow it.
fn readme_transcript_holds(env: &Hostile, marker: &str) {
    let block = crate::support::readme::block(marker);
    let show = |text: &str| {
        text.replace(&env.work.display().to_string(), "/home/me/project")
            .replace(&env.home.display().to_string(), "/home/me")
    };
    let mut printed = String::new();
    for line in block.lines() {
        let Some(command) = line.strip_prefix("$ execgate ") else {
            continue;
        };
        let out = Command::new(bins::execgate())
            .args(shlex::split(command).unwrap())
            .current_dir(&env.work)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &env.home)
            .output()
            .unwrap();
        assert!(out.status.success(), "{line}: {out:?}");
        printed.push_str(&format!(
            "{line}\n{}",
            show(&String::from_utf8_lossy(&out.stdout))
        ));
    }
    assert_eq!(printed, block);
}

#[test]
fn readme_trust_transcript_is_what_execgate_prints() {
    let env = Hostile::new();
    let rules = env.work.join(".execgate/rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::copy(basic_rules(), rules.join("basic.rules")).unwrap();
    git(&env, &env.work, &["init", "-q"]);
    readme_transcript_holds(&env, "which change with every commit):");
}

#[test]
fn readme_example_hook_transcript_is_what_execgate_prints() {
    let env = Hostile::new();
    install_example_hook(&env);
    readme_transcript_holds(&env, "Try hooks without an agent:");
}

// ---- the repository git uses is the one checked (red-team findings 2 and 3) -----------

/// Rules that ask about `git status` (a hook answers) and allow `git push` and `printenv`.
fn ask_status_rules(env: &Hostile) -> PathBuf {
    env.write_outside(
        "rules/ask-status.rules",
        "prefix_rule(pattern = [\"git\", \"status\"], decision = \"prompt\")\n\
         prefix_rule(pattern = [\"git\", \"push\"], decision = \"allow\")\n\
         prefix_rule(pattern = [\"printenv\"], decision = \"allow\")\n",
    )
}

/// Runs `script_prefix`, then a background `git status` the rules ask about; its hook
/// (outside) says it started, waits until the script has run `plant`, and allows. So
/// what `plant` does happens after the repository check and before the escalated git
/// starts, every time. `args` go before the script (after `--rules` and `--hooks`); `go`
/// is a path the script can create. `STARTED` and `GO` reach the hook through execgate's environment, so the words of its
/// command name no path the sandbox can write.
fn planted_while_asked(
    env: &Hostile,
    backend: &str,
    shell: &str,
    args: &[&str],
    go: &Path,
    script_prefix: &str,
    plant: &str,
) -> Report {
    let started = env.outside.join("started");
    let allow = r#"{"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": {"behavior": "allow"}}}"#;
    let hooks = env.write_outside(
        "hooks/planted.json",
        &serde_json::json!({"hooks": {"PermissionRequest": [{"hooks": [{
            "type": "command",
            "command": format!(
                "touch \"$STARTED\"; while [ ! -e \"$GO\" ]; do sleep 0.02; done; echo '{allow}'"
            ),
        }]}]}})
        .to_string(),
    );
    let script = format!(
        "{script_prefix}(git status --short >/dev/null 2>&1; echo status=$?) & st=$!\n\
         while [ ! -e {s} ] && kill -0 $st 2>/dev/null; do sleep 0.02; done\n\
         {plant}\ntouch {g}\nwait $st\n",
        s = started.display(),
        g = go.display(),
    );
    let rules = ask_status_rules(env);
    let mut all = vec![
        "--rules",
        rules.to_str().unwrap(),
        "--hooks",
        hooks.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    all.push(&script);
    let mut cmd = on_backend(env, backend, shell, &all);
    let out = cmd.env("STARTED", &started).env("GO", go).output().unwrap();
    let name = SETUPS
        .iter()
        .find(|(_, flag)| *flag == shell)
        .map_or(shell, |(name, _)| name);
    Report::parse(&format!("{name}, {backend}"), out)
}

/// `execgate run` in `shell` on sandbox `backend` with `args`; under Landlock with a temp
/// dir of its own (the shared /tmp may hold repositories of other tests, which Landlock
/// cannot keep read-only, so it would refuse to start).
fn on_backend(env: &Hostile, backend: &str, shell: &str, args: &[&str]) -> Command {
    let mut cmd = env.command(shell, args);
    cmd.env("EXECGATE_SANDBOX_BACKEND", backend);
    if backend == "landlock" {
        let tmp = env.outside.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        cmd.env("TMPDIR", tmp);
    }
    cmd
}

/// The script lines that make `prep/.git`, a repository whose fsmonitor creates `marker`.
fn prepared_repository(marker: &Path) -> String {
    format!(
        "git init -q prep && git -C prep config core.fsmonitor 'touch {}'\n",
        marker.display()
    )
}

/// Asserts that the report's one `git status` was escalated by the hook.
fn assert_status_escalated_by_hook(report: &Report) {
    let status = git_execs(report, "status");
    assert_eq!(status.len(), 1, "[{}] {report}", report.setup);
    assert_eq!(
        (&status[0]["verdict"], &status[0]["source"]),
        (&"escalate".into(), &"hook".into()),
        "[{}] {report}",
        report.setup
    );
}

#[test]
fn a_repository_planted_after_the_check_in_a_plain_folder_is_not_used() {
    // Red-team finding 2: no repository when checked, one moved in while the hook is
    // asked. The escalated git finds none (GIT_DIR names a path that cannot exist).
    let runs = SETUPS
        .iter()
        .map(|&(_, shell)| ("auto", shell))
        .chain([("landlock", "zsh"), ("landlock", "sh")]);
    for (backend, shell) in runs {
        let env = Hostile::new();
        let marker = env.marker("planted-fsmonitor-ran");
        let prefix = format!(
            "{}{}",
            direct_attempt(&marker),
            prepared_repository(&marker)
        );
        let go = env.work.join("go");
        let report =
            planted_while_asked(&env, backend, shell, &[], &go, &prefix, "mv prep/.git .git");
        report.assert_direct_write_refused();
        assert_no_marker(&marker, &report);
        assert_status_escalated_by_hook(&report);
        // git found no repository: not a git repository.
        assert_eq!(
            report.stdout(),
            "direct-refused\nstatus=128\n",
            "[{}] {report}",
            report.setup
        );
    }
}

#[test]
fn a_repository_planted_after_the_check_in_a_trusted_repositorys_subfolder_is_not_used() {
    // Red-team finding 2, second form: the workspace is a trusted repository; the script
    // plants a repository in a subfolder while the hook is asked. The escalated git uses
    // the trusted one, which was checked, and works there.
    for (_, shell) in SETUPS {
        let env = Hostile::new();
        let (root, proj) = boxed(&env, "proj");
        git(&env, &proj, &["init", "-q"]);
        let (code, _, stderr) = trust(&env, &[proj.to_str().unwrap()]);
        assert_eq!(code, 0, "execgate trust: {stderr}");
        let marker = env.marker("planted-fsmonitor-ran");
        let prefix = format!(
            "{}cd proj; mkdir sub; cd sub\n{}",
            direct_attempt(&marker),
            prepared_repository(&marker)
        );
        let args = ["--cwd", root.to_str().unwrap()];
        let go = root.join("go");
        let report = planted_while_asked(
            &env,
            "auto",
            shell,
            &args,
            &go,
            &prefix,
            "mv prep/.git .git",
        );
        report.assert_direct_write_refused();
        assert_no_marker(&marker, &report);
        assert_status_escalated_by_hook(&report);
        assert_eq!(
            report.stdout(),
            "direct-refused\nstatus=0\n",
            "[{}] {report}",
            report.setup
        );
    }
}

#[test]
fn a_push_to_a_local_repository_the_sandbox_wrote_runs_none_of_its_hooks() {
    // Red-team finding 3: a push to a path (or file:// URL) in a writable root starts
    // receive-pack there, outside the sandbox, and its hooks run. Escalated git has the
    // file transport turned off. The escalated environment names the checked repository.
    let runs = SETUPS
        .iter()
        .map(|&(_, shell)| ("auto", shell))
        .chain([("landlock", "zsh")]);
    for (backend, shell) in runs {
        let env = Hostile::new();
        let repo = outside_repo(&env);
        let marker = env.marker("pre-receive-ran");
        let w = env.work.display();
        let script = format!(
            "{}git init -q --bare origin\n\
             printf '#!/bin/sh\\ntouch {m}\\n' > origin/hooks/pre-receive\n\
             chmod +x origin/hooks/pre-receive\n\
             cd {r}\n\
             git push -q {w}/origin HEAD:refs/heads/a 2>/dev/null; echo push=$?\n\
             git push -q file://{w}/origin HEAD:refs/heads/b 2>/dev/null; echo push=$?\n\
             printenv GIT_DIR GIT_WORK_TREE GIT_CONFIG_KEY_0 GIT_CONFIG_VALUE_0\n",
            direct_attempt(&marker),
            m = marker.display(),
            r = repo.display(),
        );
        let rules = ask_status_rules(&env);
        let args = ["--rules", rules.to_str().unwrap(), &script];
        let out = on_backend(&env, backend, shell, &args).output().unwrap();
        let report = Report::parse(shell, out);
        let setup = format!("{shell}, {backend}");
        report.assert_direct_write_refused();
        assert_no_marker(&marker, &report);
        let pushes = git_execs(&report, "push");
        assert_eq!(pushes.len(), 2, "[{setup}] {report}");
        assert!(
            pushes.iter().all(|e| e["verdict"] == "escalate"),
            "[{setup}] {report}"
        );
        assert_eq!(
            report.stdout(),
            format!(
                "direct-refused\npush=128\npush=128\n{}/.git\n{}\nprotocol.file.allow\nnever\n",
                repo.display(),
                repo.display()
            ),
            "[{setup}] {report}"
        );
        report.assert_escalated("/usr/bin/printenv");
    }
}
