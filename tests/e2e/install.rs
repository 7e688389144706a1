//! Installing execgate: the helpers built into the binary and their per-user cache, the
//! copies a packager puts next to the binary, `cargo install`, and the README's first
//! command from a clone anywhere.

use crate::support::{bins, cli, readme};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BACKENDS: [&str; 2] = ["bubblewrap", "landlock"];

/// A scratch folder under cargo's target folder with `work`, `home`, `tmp` (the sessions'
/// `TMPDIR`, so their writable temporary folder is not `/tmp`, where the clone may live)
/// and `bin/execgate`.
struct Prefix {
    _dir: tempfile::TempDir,
    work: PathBuf,
    home: PathBuf,
    bin: PathBuf,
}

impl Prefix {
    fn new() -> Self {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let root = dir.path().canonicalize().unwrap();
        let (work, home, bin) = (root.join("work"), root.join("home"), root.join("bin"));
        for d in [&work, &home, &bin, &root.join("tmp")] {
            std::fs::create_dir(d).unwrap();
        }
        // Hard links, not copies: a file just written may still be open for writing in a
        // child another test thread forked, and executing it would fail (ETXTBSY).
        std::fs::hard_link(bins::execgate(), bin.join("execgate")).unwrap();
        Self {
            _dir: dir,
            work,
            home,
            bin,
        }
    }

    /// Copies the helpers next to `execgate`, as a packager would.
    fn with_helpers_next_to_it(self) -> Self {
        for (from, name) in [
            (bins::wrapper(), "execgate-execve-wrapper"),
            (bins::preload_shim(), "libexecgate_preload.so"),
            (bins::init(), "execgate-init"),
        ] {
            std::fs::hard_link(from, self.bin.join(name)).unwrap();
        }
        self
    }

    /// The user's cache of this install.
    fn cache(&self) -> PathBuf {
        self.home.join(".cache/execgate")
    }

    /// `bin/execgate ARGS` from `work` with only PATH, HOME and TMPDIR set, plus `envs`,
    /// without a terminal.
    fn run(&self, envs: &[(&str, &Path)], args: &[&str]) -> (i32, String, String) {
        let mut cmd = Command::new(self.bin.join("execgate"));
        cmd.args(args)
            .current_dir(&self.work)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &self.home)
            .env("TMPDIR", self.home.with_file_name("tmp"))
            .envs(envs.iter().copied())
            .stdin(Stdio::null());
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        run_retrying(&mut cmd)
    }
}

/// [`cli::run`], again while the program is busy (ETXTBSY: a file this test wrote is still
/// open for writing in a child another test thread forked, until that child execs).
fn run_retrying(cmd: &mut Command) -> (i32, String, String) {
    for _ in 0..50 {
        match cmd.output() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            _ => break,
        }
    }
    cli::run(cmd)
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

#[test]
fn execgate_alone_runs_intercepted_sandboxed_sessions_from_its_own_helpers() {
    let prefix = Prefix::new();
    for backend in BACKENDS {
        for shell in ["sh", "/bin/bash"] {
            let (code, stdout, stderr) = prefix.run(
                &[("EXECGATE_SANDBOX_BACKEND", Path::new(backend))],
                &[
                    "run",
                    "--shell",
                    shell,
                    "--rules",
                    cli::example_rules().to_str().unwrap(),
                    "echo inside; touch /etc/x 2>/dev/null || echo read-only; rm -rf /tmp/x",
                ],
            );
            assert_eq!(
                (code, stdout.as_str(), stderr.as_str()),
                (
                    126,
                    "inside\nread-only\n",
                    "execgate: denied: /usr/bin/rm -rf /tmp/x: recursive forced deletion is \
                     not allowed; delete specific files instead\n"
                ),
                "{backend} {shell}"
            );
        }
    }
    let helpers = prefix
        .cache()
        .join("helpers")
        .read_dir()
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect::<Vec<_>>();
    assert_eq!(helpers.len(), 1, "{helpers:?}");
    for dir in [
        prefix.cache(),
        prefix.cache().join("helpers"),
        helpers[0].clone(),
    ] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    for (name, built) in [
        ("execgate-execve-wrapper", bins::wrapper()),
        ("libexecgate_preload.so", bins::preload_shim()),
        ("execgate-init", bins::init()),
    ] {
        let file = helpers[0].join(name);
        assert_eq!(mode(&file), 0o500, "{name}");
        assert!(
            std::fs::read(&file).unwrap() == std::fs::read(&built).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn a_tampered_cached_helper_is_replaced_before_it_runs() {
    let prefix = Prefix::new();
    let run = || prefix.run(&[], &["run", "--shell", "sh", "echo inside"]);
    assert_eq!(run(), (0, "inside\n".into(), String::new()));
    let dir = prefix.cache().join("helpers").read_dir().unwrap().next();
    let dir = dir.unwrap().unwrap().path();
    let init = dir.join("execgate-init");
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(&init, "#!/bin/sh\necho planted\n").unwrap();
    assert_eq!(run(), (0, "inside\n".into(), String::new()));
    assert_eq!(
        std::fs::read(&init).unwrap(),
        std::fs::read(bins::init()).unwrap()
    );
}

#[test]
fn the_cache_is_never_inside_a_writable_root() {
    let prefix = Prefix::new();
    // HOME inside the working directory: ~/.cache/execgate would be writable by the
    // session; the next candidate outside it is taken.
    let home = prefix.work.join("home");
    std::fs::create_dir(&home).unwrap();
    let runtime = prefix.home.join("run");
    std::fs::create_dir(&runtime).unwrap();
    let (code, stdout, stderr) = prefix.run(
        &[("HOME", &home), ("XDG_RUNTIME_DIR", &runtime)],
        &["run", "echo inside"],
    );
    assert_eq!((code, stdout.as_str()), (0, "inside\n"), "{stderr}");
    assert!(runtime.join("execgate/helpers").is_dir());
    assert!(!home.join(".cache").exists());
    // Without XDG_RUNTIME_DIR: the user's own folder in /var/tmp.
    let (code, stdout, stderr) = prefix.run(&[("HOME", &home)], &["run", "echo inside"]);
    assert_eq!((code, stdout.as_str()), (0, "inside\n"), "{stderr}");
    let var_tmp = PathBuf::from(format!("/var/tmp/execgate-{}", nix::unistd::geteuid()));
    assert_eq!(mode(&var_tmp), 0o700);
    assert!(var_tmp.join("helpers").is_dir());
    assert!(!home.join(".cache").exists());
    // Named outright inside the working directory: refused, naming both.
    let named = prefix.work.join("cache");
    let (code, _, stderr) = prefix.run(&[("EXECGATE_CACHE_DIR", &named)], &["run", "true"]);
    assert_eq!(
        (code, stderr),
        (
            2,
            format!(
                "execgate: the cache folder {} is inside the writable root {}: set \
                 EXECGATE_CACHE_DIR to a folder outside it\n",
                named.display(),
                prefix.work.display()
            )
        )
    );
    // Without a writable root it may be anywhere.
    let (code, stdout, stderr) = prefix.run(
        &[("EXECGATE_CACHE_DIR", &named)],
        &["run", "--sandbox", "read-only", "echo inside"],
    );
    assert_eq!((code, stdout.as_str()), (0, "inside\n"), "{stderr}");
}

#[test]
fn a_session_cannot_change_a_cache_inside_its_writable_roots() {
    // The session uses a cache outside its roots, but $XDG_CACHE_HOME/execgate (another
    // session's cache) is inside its working directory.
    let prefix = Prefix::new();
    let xdg = prefix.work.join("xdg");
    let other = xdg.join("execgate");
    std::fs::create_dir_all(&other).unwrap();
    let outside = prefix.home.join("cache");
    let envs = |backend: &'static str| {
        [
            ("XDG_CACHE_HOME", xdg.clone()),
            ("EXECGATE_CACHE_DIR", outside.clone()),
            ("EXECGATE_SANDBOX_BACKEND", PathBuf::from(backend)),
        ]
    };
    let script = "echo x > xdg/execgate/planted || echo refused";
    let bwrap = envs("bubblewrap");
    let bwrap: Vec<(&str, &Path)> = bwrap.iter().map(|(k, v)| (*k, v.as_path())).collect();
    let (code, stdout, stderr) = prefix.run(&bwrap, &["run", "--shell", "sh", script]);
    assert_eq!((code, stdout.as_str()), (0, "refused\n"), "{stderr}");
    assert!(!other.join("planted").exists());
    // Landlock cannot keep a folder inside a writable root read-only: it refuses to start.
    let landlock = envs("landlock");
    let landlock: Vec<(&str, &Path)> = landlock.iter().map(|(k, v)| (*k, v.as_path())).collect();
    let (code, stdout, stderr) = prefix.run(&landlock, &["run", "--shell", "sh", script]);
    assert_eq!(
        (code, stdout.as_str(), stderr),
        (
            2,
            "",
            format!(
                "execgate: Landlock cannot keep {} read-only inside the writable root {}: use \
                 the bubblewrap backend (which can), or pass --allow-unprotected-landlock to \
                 accept that it stays writable\n",
                other.display(),
                prefix.work.display()
            )
        )
    );
}

#[test]
fn a_packagers_helpers_next_to_execgate_take_precedence() {
    let prefix = Prefix::new().with_helpers_next_to_it();
    // A stand-in init that says it ran, then runs the real one.
    std::fs::remove_file(prefix.bin.join("execgate-init")).unwrap();
    let init = prefix.bin.join("execgate-init");
    std::fs::write(
        &init,
        format!(
            "#!/bin/sh\necho packaged init >&2\nexec {} \"$@\"\n",
            bins::init().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).unwrap();
    for backend in BACKENDS {
        let (code, stdout, stderr) = prefix.run(
            &[("EXECGATE_SANDBOX_BACKEND", Path::new(backend))],
            &["run", "--shell", "sh", "echo inside"],
        );
        assert_eq!(
            (code, stdout.as_str(), stderr.as_str()),
            (0, "inside\n", "packaged init\n"),
            "{backend}"
        );
    }
    // Nothing was written to the cache: every helper was found next to execgate.
    assert!(!prefix.cache().exists());
}

#[test]
fn execgate_init_naming_a_missing_file_refuses_every_sandboxed_command_in_one_line() {
    let prefix = Prefix::new();
    let missing = prefix.home.join("no-init");
    let line = format!(
        "execgate: the session init {} is missing: unset EXECGATE_INIT to use execgate's own \
         copy, or fix it\n",
        missing.display()
    );
    for args in [
        &["run", "echo inside"][..],
        &["run", "--sandbox", "read-only", "echo inside"],
        &["sandbox", "check"],
        &["mcp"],
    ] {
        assert_eq!(
            prefix.run(&[("EXECGATE_INIT", &missing)], args),
            (2, String::new(), line.clone()),
            "{args:?}"
        );
    }
    // Without a sandbox there is nothing for an init to do.
    let (code, stdout, stderr) = prefix.run(
        &[("EXECGATE_INIT", &missing)],
        &["run", "--sandbox", "danger-full-access", "echo outside"],
    );
    assert_eq!((code, stdout.as_str()), (0, "outside\n"), "{stderr}");
}

/// The README's first command (`cargo build && CMD`), with `cargo build` left out.
fn readme_first_command() -> String {
    let block = readme::block("then run the tests:");
    let first = block.lines().next().unwrap();
    first
        .strip_prefix("cargo build && ")
        .unwrap_or_else(|| panic!("README's first command changed: {first}"))
        .to_string()
}

/// What the README's first command prints: `ls / | head -3` and the denial.
fn readme_first_output() -> (String, String) {
    let ls = Command::new("sh").args(["-c", "ls / | head -3"]).output();
    (
        String::from_utf8(ls.unwrap().stdout).unwrap(),
        "execgate: denied: /usr/bin/rm -rf /tmp/nothing: recursive forced deletion is not \
         allowed; delete specific files instead\n"
            .to_string(),
    )
}

#[test]
fn the_readmes_first_command_works_from_a_clone_under_tmp() {
    // A "clone" under /tmp: the example rules, and target/debug/execgate.
    let clone = tempfile::Builder::new()
        .prefix("execgate-clone-")
        .tempdir_in("/tmp")
        .unwrap();
    let clone = clone.path();
    std::fs::create_dir_all(clone.join("examples")).unwrap();
    std::fs::create_dir_all(clone.join("target/debug")).unwrap();
    std::fs::copy(cli::example_rules(), clone.join("examples/basic.rules")).unwrap();
    std::os::unix::fs::symlink(bins::execgate(), clone.join("target/debug/execgate")).unwrap();
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let command = readme_first_command();
    for backend in BACKENDS {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &command])
            .current_dir(clone)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", home.path())
            .env("EXECGATE_SANDBOX_BACKEND", backend)
            .stdin(Stdio::null());
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let (code, stdout, stderr) = run_retrying(&mut cmd);
        let (want_out, want_err) = readme_first_output();
        assert_eq!(
            (code, stdout, stderr),
            (126, want_out, want_err),
            "{backend}"
        );
    }
}

#[test]
fn cargo_install_gives_a_working_tool() {
    let block = readme::block("From a clone, with rustup's toolchain");
    let mut lines = block.lines();
    let install = lines.next().unwrap();
    let check = lines.next().unwrap();
    assert_eq!(install, "cargo install --locked --path .");
    let prefix = Prefix::new();
    let root = prefix.home.join("root");
    // The install shares this build's target folder (same profile, same lock file), so it
    // links the artifacts the tests were built from instead of building everything again.
    let target = bins::execgate()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(install.split(' ').skip(1))
        .args(["--debug", "--quiet", "--root"])
        .arg(&root)
        .current_dir(bins::repo_root())
        .env("CARGO_TARGET_DIR", &target);
    let started = std::time::Instant::now();
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("cargo install took {:?}", started.elapsed());
    let installed: Vec<String> = root
        .join("bin")
        .read_dir()
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(installed, ["execgate"]);
    let path = format!("{}:/usr/bin:/bin", root.join("bin").display());
    let run = |cwd: &Path, backend: &str, args: &[&str]| {
        let mut cmd = Command::new(root.join("bin/execgate"));
        cmd.args(args)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", &path)
            .env("HOME", &prefix.home)
            .env("TMPDIR", prefix.home.with_file_name("tmp"))
            .env("EXECGATE_SANDBOX_BACKEND", backend)
            .stdin(Stdio::null());
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        run_retrying(&mut cmd)
    };
    let check: Vec<String> = shlex::split(check).unwrap();
    assert_eq!(check[0], "execgate");
    let check: Vec<&str> = check[1..].iter().map(String::as_str).collect();
    for backend in BACKENDS {
        // The README's check, from the clone.
        let (want_out, want_err) = readme_first_output();
        assert_eq!(
            run(&bins::repo_root(), backend, &check),
            (126, want_out, want_err),
            "{backend}"
        );
        // The system bash through the embedded shim and wrapper, in the sandbox: the
        // workspace writable, /etc not, rm -rf denied by the rules.
        let rules = cli::example_rules();
        let (code, stdout, stderr) = run(
            &prefix.work,
            backend,
            &[
                "run",
                "--rules",
                rules.to_str().unwrap(),
                "touch here && echo wrote; touch /etc/x 2>/dev/null || echo read-only; \
                 rm -rf /tmp/x",
            ],
        );
        assert_eq!(
            (code, stdout.as_str(), stderr.as_str()),
            (
                126,
                "wrote\nread-only\n",
                "execgate: denied: /usr/bin/rm -rf /tmp/x: recursive forced deletion is not \
                 allowed; delete specific files instead\n"
            ),
            "{backend}"
        );
    }
    // Its helpers came from its own cache.
    assert_eq!(
        prefix.cache().join("helpers").read_dir().unwrap().count(),
        1
    );
}

/// `execgate doctor --json` of `prefix` with `envs`: its exit code and report.
fn doctor(prefix: &Prefix, envs: &[(&str, &Path)]) -> (i32, serde_json::Value) {
    let (code, stdout, stderr) = prefix.run(envs, &["doctor", "--json"]);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    (code, report)
}

/// The checks named `name`: (status, detail, fix).
fn checks(report: &serde_json::Value, name: &str) -> Vec<(String, String, Option<String>)> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == name)
        .map(|c| {
            (
                c["status"].as_str().unwrap().to_string(),
                c["detail"].as_str().unwrap().to_string(),
                c["fix"].as_str().map(str::to_string),
            )
        })
        .collect()
}

#[test]
fn doctor_on_a_bare_install_checks_the_embedded_helpers_with_an_intercepted_true() {
    let prefix = Prefix::new();
    let shells = prefix.home.join("no-shells");
    let (code, report) = doctor(&prefix, &[("EXECGATE_SHELLS_DIR", &shells)]);
    assert_eq!(
        (code, &report["ok"]),
        (0, &serde_json::Value::Bool(true)),
        "{report}"
    );
    let helpers = prefix
        .cache()
        .join("helpers")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for (name, file) in [
        ("wrapper", "execgate-execve-wrapper"),
        ("shim", "libexecgate_preload.so"),
        ("init", "execgate-init"),
    ] {
        assert_eq!(
            checks(&report, name),
            [(
                "ok".into(),
                format!(
                    "{} (built into execgate, cached)",
                    helpers.join(file).display()
                ),
                None
            )]
        );
    }
    assert_eq!(
        checks(&report, "intercept"),
        [(
            "ok".into(),
            "the system sh through the preload shim: /bin/true was decided and ran in the \
             sandbox"
                .into(),
            None
        )]
    );
    assert_eq!(
        checks(&report, "shells")
            .into_iter()
            .map(|(status, _, fix)| (status, fix))
            .collect::<Vec<_>>(),
        [
            ("warn".into(), Some("execgate shells build zsh".into())),
            ("warn".into(), Some("execgate shells build bash".into()))
        ]
    );
    for name in [
        "sandbox", "landlock", "userns", "seccomp", "bwrap", "policy",
    ] {
        assert_eq!(checks(&report, name).len(), 1, "{name}: {report}");
    }
}

#[test]
fn doctor_names_each_problem_with_its_fix() {
    let prefix = Prefix::new();
    let missing = prefix.home.join("no-init");
    std::fs::create_dir_all(prefix.home.join(".config/execgate/rules")).unwrap();
    std::fs::write(
        prefix.home.join(".config/execgate/rules/bad.rules"),
        "prefix_rule(\n",
    )
    .unwrap();
    let (code, report) = doctor(&prefix, &[("EXECGATE_INIT", &missing)]);
    assert_eq!(
        (code, &report["ok"]),
        (1, &serde_json::Value::Bool(false)),
        "{report}"
    );
    assert_eq!(
        checks(&report, "init"),
        [(
            "fail".into(),
            format!("{} is missing", missing.display()),
            Some("unset EXECGATE_INIT to use execgate's own copy, or fix it".into())
        )]
    );
    let policy = checks(&report, "policy");
    assert_eq!(policy[0].0, "fail", "{report}");
    let more = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "policy")
        .unwrap()["more"]
        .to_string();
    assert!(more.contains("bad.rules:"), "{more}");
    // On the screen every FAIL line is followed by its fix.
    let (code, screen, _) = prefix.run(&[("EXECGATE_INIT", &missing)], &["doctor"]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = screen.lines().collect();
    for (i, line) in lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("FAIL"))
    {
        let fix = lines[i + 1..]
            .iter()
            .take_while(|l| l.starts_with(' '))
            .any(|l| l.trim_start().starts_with("fix: "));
        assert!(fix, "{line} has no fix:\n{screen}");
    }
    assert_eq!(
        lines.last(),
        Some(&"execgate cannot run sessions here until the FAIL lines are fixed.")
    );
}

#[test]
fn completions_load_in_bash_and_name_every_subcommand() {
    let prefix = Prefix::new();
    for shell in ["bash", "zsh", "fish"] {
        let (code, script, stderr) = prefix.run(&[], &["completions", shell]);
        assert_eq!((code, stderr.as_str()), (0, ""), "{shell}");
        for sub in [
            "run", "policy", "hooks", "sandbox", "mcp", "doctor", "shells", "man",
        ] {
            assert!(script.contains(sub), "{shell} completions lack {sub}");
        }
    }
    let bin = prefix.bin.join("execgate");
    let loaded = Command::new("bash")
        .args([
            "-c",
            &format!(
                "source <({} completions bash) && complete -p execgate",
                bin.display()
            ),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&loaded.stdout),
        "complete -o bashdefault -o default -o nosort -F _execgate execgate\n",
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
}

#[test]
fn the_man_page_is_roff_for_section_1_with_every_subcommand() {
    let prefix = Prefix::new();
    let (code, page, stderr) = prefix.run(&[], &["man"]);
    assert_eq!((code, stderr.as_str()), (0, ""));
    assert!(
        page.lines()
            .any(|l| l == ".TH execgate 1  \"execgate 0.1.0\" "),
        "{page}"
    );
    for sub in ["run", "doctor", "shells", "completions", "man"] {
        assert!(
            page.contains(&format!("execgate\\-{sub}(1)")),
            "no {sub}:\n{page}"
        );
    }
}

#[test]
fn shells_build_reports_numbered_steps_and_names_the_step_that_failed() {
    let prefix = Prefix::new();
    let out = prefix.home.join("shells");
    // No dpkg or apt-get on PATH: the first step fails, saying what to run.
    let (code, stdout, stderr) = prefix.run(
        &[("PATH", Path::new("/nonexistent"))],
        &["shells", "build", "zsh", "--prefix", out.to_str().unwrap()],
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!((code, stdout.as_str(), lines.len()), (2, "", 3), "{stderr}");
    assert_eq!(
        lines[0],
        format!(
            "execgate shells build: taking the build lock {}",
            out.join(".build/.lock").display()
        )
    );
    assert!(
        lines[1].starts_with("execgate shells build: [1/7] installing build tools (")
            && lines[1].ends_with(" s)"),
        "{stderr}"
    );
    assert_eq!(
        lines[2],
        "execgate: installing build tools failed: run `sudo apt-get install dpkg-dev gcc make \
         libc6-dev patch libncurses-dev xz-utils`"
    );
    assert!(!out.join("zsh").exists());
}

#[test]
fn shells_build_with_the_shells_up_to_date_only_names_them() {
    let shells = bins::shells_dir();
    let prefix = Prefix::new();
    let (code, stdout, stderr) = prefix.run(
        &[],
        &["shells", "build", "--prefix", shells.to_str().unwrap()],
    );
    assert_eq!(
        (code, stdout, stderr),
        (
            0,
            format!(
                "{}\n{}\n",
                shells.join("zsh").display(),
                shells.join("bash").display()
            ),
            String::new()
        )
    );
}

#[test]
fn run_shell_zsh_without_a_patched_zsh_says_how_to_build_it() {
    let prefix = Prefix::new();
    let empty = prefix.home.join("no-shells");
    std::fs::create_dir(&empty).unwrap();
    let (code, stdout, stderr) = prefix.run(
        &[("EXECGATE_SHELLS_DIR", &empty)],
        &["run", "--shell", "zsh", "echo $ZSH_VERSION"],
    );
    assert_eq!(
        (code, stdout.as_str(), stderr),
        (
            0,
            "5.9\n",
            format!(
                "execgate: no patched zsh in {}: using /usr/bin/zsh with the preload shim \
                 (build ours with `execgate shells build zsh`)\n",
                empty.display()
            )
        )
    );
}

#[test]
fn doctor_says_an_untrusted_project_policy_is_skipped_and_how_to_trust_it() {
    let prefix = Prefix::new();
    std::fs::create_dir_all(prefix.work.join(".execgate/rules")).unwrap();
    let rules = prefix.work.join(".execgate/rules/project.rules");
    std::fs::write(
        &rules,
        "prefix_rule(pattern = [\"make\"], decision = \"allow\")\n",
    )
    .unwrap();
    let (code, report) = doctor(&prefix, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        checks(&report, "policy"),
        [(
            "warn".into(),
            format!(
                "0 rules file(s), 0 hooks file(s) would load in {}",
                prefix.work.display()
            ),
            Some(format!(
                "after reviewing the skipped files: execgate trust {}",
                prefix.work.display()
            ))
        )]
    );
    let policy = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "policy")
        .unwrap();
    assert_eq!(
        policy["more"],
        serde_json::json!([format!("project (untrusted, skipped): {}", rules.display())])
    );
    // Trusted: it loads.
    let (code, _, stderr) = prefix.run(&[], &["trust"]);
    assert_eq!(code, 0, "{stderr}");
    let (_, report) = doctor(&prefix, &[]);
    assert_eq!(
        checks(&report, "policy")[0].1,
        format!(
            "1 rules file(s), 0 hooks file(s) would load in {}",
            prefix.work.display()
        )
    );
}
