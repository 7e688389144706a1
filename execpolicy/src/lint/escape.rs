//! Escape hatches: programs that, escalated, run code or write files the sandbox chooses.
//!
//! An `allow` rule runs the command outside the sandbox, with every argument the sandbox
//! gave. For a program that runs the code or command in its arguments (a shell with `-c`,
//! an interpreter, `env`, `xargs`, `find -exec`), builds a project the sandbox can write
//! (`make`, `cargo build`, `npm install`), or writes the files it is told to (`cp`,
//! `git log --output`), that hands the sandbox a way out: a prefix rule cannot exclude the
//! arguments that come after its pattern.
//!
//! This table names the programs we know; a program it does not name is not thereby safe.
//! `policy suggest` uses the same table, so it never suggests allowing what lint flags.

use crate::render::escaped;

/// Why escalating commands that start with a prefix hands the sandbox a way out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EscapeHatch {
    /// The program (and subcommand or option) as the finding names it, e.g. `git log`;
    /// printable ASCII (anything else escaped).
    pub what: String,
    /// What it can do outside the sandbox, as a clause: "writes any file named by ...".
    pub can: String,
}

/// Arguments after which a program only prints and exits.
const INFO_ONLY: &[&str] = &["--version", "--help"];

/// Shells: `-c` runs any command, and any other argument is a script the sandbox may write.
const SHELLS: &[&str] = &[
    "sh", "bash", "zsh", "dash", "ksh", "mksh", "pdksh", "oksh", "yash", "ash", "fish", "csh",
    "tcsh", "rbash", "elvish", "nu", "xonsh", "busybox", "toybox",
];
const SHELL_CAN: &str = "runs any command it is given (`-c '...'`, or a script the sandbox wrote)";

/// Interpreters (versioned names such as `python3.11` or `lua5.4` count too).
const INTERPRETERS: &[&str] = &[
    "python",
    "pypy",
    "ipython",
    "node",
    "nodejs",
    "deno",
    "bun",
    "perl",
    "ruby",
    "irb",
    "php",
    "lua",
    "luajit",
    "tclsh",
    "wish",
    "expect",
    "Rscript",
    "R",
    "julia",
    "pwsh",
    "powershell",
    "osascript",
    "ghci",
    "runghc",
    "runhaskell",
    "scala",
    "groovy",
    "jshell",
    "java",
    "erl",
    "escript",
    "elixir",
    "iex",
    "guile",
    "racket",
    "sbcl",
    "swipl",
    "gawk",
    "awk",
    "mawk",
    "nawk",
    "m4",
    "gdb",
    "lldb",
    "sqlite3",
    "psql",
    "mysql",
    "gnuplot",
];
const INTERPRETER_CAN: &str =
    "runs the code it is given (`-c`/`-e`, or a script file the sandbox can write)";

/// Programs that run the command in their arguments.
const RUNNERS: &[&str] = &[
    "env",
    "xargs",
    "nice",
    "nohup",
    "timeout",
    "time",
    "stdbuf",
    "sudo",
    "doas",
    "su",
    "runuser",
    "pkexec",
    "setsid",
    "chroot",
    "unshare",
    "nsenter",
    "ionice",
    "taskset",
    "chrt",
    "flock",
    "watch",
    "strace",
    "ltrace",
    "valgrind",
    "script",
    "parallel",
    "entr",
    "systemd-run",
    "at",
    "batch",
    "tmux",
    "screen",
    "setpriv",
    "prlimit",
    "numactl",
    "firejail",
    "bwrap",
    "exec",
    "command",
    "builtin",
    "eval",
    "catchsegv",
    "faketime",
    "fakeroot",
    "proot",
];
const RUNNER_CAN: &str = "runs the command in its arguments (`{p} sh -c '...'`)";

/// Build tools: they run the recipes of build files the sandbox can write.
const BUILD_TOOLS: &[&str] = &[
    "make",
    "gmake",
    "bmake",
    "ninja",
    "cmake",
    "meson",
    "gradle",
    "gradlew",
    "mvn",
    "mvnw",
    "ant",
    "bazel",
    "bazelisk",
    "buck",
    "buck2",
    "scons",
    "just",
    "task",
    "rake",
    "sbt",
    "lein",
    "tox",
    "nox",
    "invoke",
    "dotnet",
    "msbuild",
    "xcodebuild",
    "waf",
];
const BUILD_CAN: &str =
    "runs the recipes of build files in the project (Makefile, build.gradle, ...), which the sandbox can write";

/// Programs that write (or delete) the files they are told to.
const WRITERS: &[&str] = &[
    "cp", "mv", "install", "ln", "tee", "dd", "truncate", "shred", "rm", "rmdir", "unlink",
    "chmod", "chown", "chgrp", "chattr", "setfacl", "touch", "mkdir", "patch", "split", "csplit",
    "sed", "sort", "rsync", "scp", "sftp", "curl", "wget", "aria2c", "tar", "zip", "unzip", "7z",
    "7za", "cpio", "ar", "gzip", "gunzip", "bzip2", "xz", "zstd", "ed", "crontab", "mktemp",
];
const WRITER_CAN: &str =
    "writes or deletes the files it is told to (`~/.bashrc`, `~/.ssh/authorized_keys`, ...)";

/// Programs with a more specific story.
const SPECIFIC: &[(&[&str], &str)] = &[
    (
        &["find", "fd", "fdfind"],
        "runs commands and deletes or writes files through options after the pattern (`-exec`, `-execdir`, `-delete`, `-fprint`, `fd -x`)",
    ),
    (
        &["rg"],
        "runs the program named by `--pre` on every file it searches",
    ),
    (
        &["vi", "vim", "nvim", "view", "ex", "emacs", "nano", "less", "more", "most", "man"],
        "runs commands (`-c`, `+cmd`, `!cmd`, `--pager`) and opens or writes any file",
    ),
    (
        &["ssh"],
        "runs local commands through `-o ProxyCommand=...`/`LocalCommand`, and any command on the hosts it reaches",
    ),
    (
        &["gcc", "cc", "c++", "g++", "clang", "clang++", "rustc", "ld", "javac", "go-build", "tcc"],
        "runs the programs and plugins its options name (`-wrapper`, `-B`, `-fplugin`, `-C linker=`) and writes `-o` anywhere",
    ),
    (
        &["docker", "podman", "nerdctl", "ctr", "kubectl", "lxc", "incus", "virsh"],
        "starts containers or machines that can mount the host (`docker run -v /:/host`): anything, as root",
    ),
    (
        &["npx", "pnpx", "bunx", "uvx", "pipx"],
        "downloads and runs package code, or runs a package from a node_modules/venv the sandbox can write",
    ),
];

/// Programs with subcommands: the ones that only print are listed; every other subcommand
/// (and the program with no subcommand) is an escape hatch.
struct Subcommands {
    names: &'static [&'static str],
    safe: &'static [&'static str],
    can: &'static str,
}

const SUBCOMMAND_TOOLS: &[Subcommands] = &[
    Subcommands {
        names: &["cargo"],
        safe: &["--version", "-V", "version", "help", "--help", "--list"],
        can: "compiles and runs code of a project the sandbox can write: build scripts, proc macros, tests, and `.cargo/config.toml` settings (`build.rustc-wrapper`, target runners, aliases)",
    },
    Subcommands {
        names: &["npm"],
        safe: &[
            "--version", "-v", "--help", "help", "view", "info", "show", "v", "ls", "list",
            "outdated", "search", "whoami", "ping",
        ],
        can: "runs package scripts: the lifecycle scripts of the packages it installs and of a package.json the sandbox can write",
    },
    Subcommands {
        names: &["yarn", "pnpm"],
        safe: &["--version", "-v", "--help", "help", "info", "why", "list", "ls", "outdated"],
        can: "runs package.json scripts (any name it does not know is a script) and the lifecycle scripts of the packages it installs",
    },
    Subcommands {
        names: &["pip", "pip3"],
        safe: &[
            "--version", "-V", "--help", "help", "list", "show", "freeze", "check", "search",
            "index", "inspect",
        ],
        can: "installs packages by running their setup.py or build backend, from a path or index the sandbox can choose",
    },
    Subcommands {
        names: &["uv", "poetry", "pipenv", "pdm", "hatch", "conda", "mamba", "micromamba"],
        safe: &["--version", "-V", "--help", "help"],
        can: "installs packages (running their build code) or runs project code the sandbox can write",
    },
    Subcommands {
        names: &["go"],
        safe: &["version", "help", "doc", "--help"],
        can: "builds or runs code of a module the sandbox can write (`go generate`, `go test`, `go run`, cgo, `-toolexec`)",
    },
    Subcommands {
        names: &["gem", "bundle", "bundler", "composer"],
        safe: &["--version", "-v", "--help", "help", "list", "search", "info", "show"],
        can: "installs packages by running their build code, or runs a Gemfile/composer.json script the sandbox can write",
    },
];

/// Git global options that do not change what git runs or where it looks.
const GIT_HARMLESS_GLOBALS: &[&str] = &[
    "--no-pager",
    "-P",
    "--no-optional-locks",
    "--literal-pathspecs",
    "--no-replace-objects",
    "--bare",
];

/// Git subcommands that run programs or write files their arguments name.
const GIT_SUBCOMMANDS: &[(&[&str], &str)] = &[
    (
        &["log", "show", "diff", "whatchanged", "format-patch", "range-diff", "diff-tree", "diff-index", "diff-files"],
        "writes any file named by `--output=FILE` (`format-patch -o DIR`), with contents the sandbox chooses",
    ),
    (
        &["fetch", "pull", "ls-remote", "fetch-pack"],
        "runs the program named by `--upload-pack` (for a remote that is a local path) on this machine",
    ),
    (
        &["push", "send-pack"],
        "runs the program named by `--receive-pack`/`--exec` (for a remote that is a local path) on this machine",
    ),
    (
        &["clone"],
        "runs `--upload-pack`, installs hooks from `--template`, takes `-c` configuration and writes wherever it is told",
    ),
    (
        &["archive"],
        "writes any file named by `--output` and runs the program named by `--exec` with `--remote`",
    ),
    (&["bundle"], "writes any file (`git bundle create FILE`)"),
    (&["worktree"], "writes a checkout anywhere (`git worktree add PATH`)"),
    (&["init"], "creates a repository anywhere, with hooks from `--template`"),
    (
        &["config"],
        "writes git configuration (`--global`, `--file`): `core.pager`, `core.fsmonitor` and `alias.x=!cmd` then run commands",
    ),
    (&["rebase"], "runs the command given to `--exec`/`-x`"),
    (&["bisect"], "runs the command given to `git bisect run`"),
    (&["submodule"], "runs the command given to `git submodule foreach`"),
    (&["difftool", "mergetool"], "runs the command given to `--extcmd`/`--tool`"),
    (&["filter-branch", "filter-repo"], "runs the filter commands it is given"),
    (&["grep"], "runs the command given to `-O`/`--open-files-in-pager`"),
    (&["send-email"], "runs the commands given to `--smtp-server`, `--to-cmd` and `--cc-cmd`"),
    (
        &["apply", "am"],
        "writes files outside the work tree with `--directory` and `--unsafe-paths`",
    ),
    (&["checkout-index"], "writes files anywhere with `--prefix`"),
    (&["daemon", "instaweb"], "runs the commands given to `--access-hook`/`--httpd`"),
];

/// The program name a table entry is written for: exact, or with a version suffix
/// (`python3.11` → `python`, `gcc-12` → `gcc`, `pip3` → `pip`).
fn family(name: &str) -> impl Iterator<Item = &str> {
    let stripped = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.' || c == '-');
    let stripped = (!stripped.is_empty() && stripped != name).then_some(stripped);
    std::iter::once(name).chain(stripped)
}

fn named(list: &[&str], name: &str) -> bool {
    family(name).any(|n| list.contains(&n))
}

/// Whether an `allow` rule for commands starting with `prefix` is an escape hatch. `prefix`
/// is concrete: one token per pattern position (expand alternatives first). The program may
/// be a bare name or an absolute path.
pub fn escape_hatch<S: AsRef<str>>(prefix: &[S]) -> Option<EscapeHatch> {
    let program = prefix.first()?.as_ref();
    let name = program.rsplit('/').next().unwrap_or(program);
    let rest: Vec<&str> = prefix[1..].iter().map(AsRef::as_ref).collect();
    let hatch = |what: String, can: &str| {
        Some(EscapeHatch {
            can: can.replace("{p}", &escaped(name)),
            what: escaped(&what),
        })
    };
    if name == "git" {
        return git(&rest);
    }
    for tool in SUBCOMMAND_TOOLS {
        if named(tool.names, name) {
            return match rest.first() {
                Some(sub) if tool.safe.contains(sub) => None,
                Some(sub) => hatch(format!("{name} {sub}"), tool.can),
                None => hatch(name.to_owned(), tool.can),
            };
        }
    }
    if rest.first().is_some_and(|arg| INFO_ONLY.contains(arg)) {
        return None;
    }
    let can = if named(SHELLS, name) {
        SHELL_CAN
    } else if named(INTERPRETERS, name) {
        INTERPRETER_CAN
    } else if named(RUNNERS, name) {
        RUNNER_CAN
    } else if named(BUILD_TOOLS, name) {
        BUILD_CAN
    } else if let Some((_, can)) = SPECIFIC.iter().find(|(names, _)| named(names, name)) {
        can
    } else if named(WRITERS, name) {
        WRITER_CAN
    } else {
        return None;
    };
    hatch(name.to_owned(), can)
}

fn git(rest: &[&str]) -> Option<EscapeHatch> {
    let hatch = |what: String, can: &str| {
        Some(EscapeHatch {
            what: escaped(&what),
            can: can.to_owned(),
        })
    };
    let mut args = rest.iter().skip_while(|a| GIT_HARMLESS_GLOBALS.contains(a));
    let Some(&sub) = args.next() else {
        return hatch(
            "git".to_owned(),
            "covers every git command, including `git -c core.pager='sh -c ...' log` and `git --exec-path=DIR`, which run programs the sandbox chooses",
        );
    };
    if matches!(sub, "--version" | "version" | "--help") {
        return None;
    }
    if sub.starts_with('-') {
        let option = sub.split('=').next().unwrap_or(sub);
        let can = match option {
            "-c" | "--config-env" => "sets any configuration for the command (`core.pager`, `core.fsmonitor`, `alias.x=!cmd`), which runs commands the sandbox chooses",
            "--exec-path" => "runs git's helper programs from a folder the sandbox chooses",
            _ => "changes where git looks (`-C`, `--git-dir`, `--work-tree`, ...): a repository the sandbox chooses, whose configuration runs commands",
        };
        return hatch(format!("git {option}"), can);
    }
    GIT_SUBCOMMANDS
        .iter()
        .find(|(subs, _)| subs.contains(&sub))
        .and_then(|(_, can)| hatch(format!("git {sub}"), can))
}

#[cfg(test)]
mod tests {
    use super::escape_hatch;

    fn flagged(prefix: &[&str]) -> Option<String> {
        escape_hatch(prefix).map(|h| h.what)
    }

    #[test]
    fn shells_interpreters_and_runners_are_flagged_whatever_follows() {
        for prefix in [
            &["sh"][..],
            &["bash", "-c"],
            &["/bin/sh", "script.sh"],
            &["python3.11"],
            &["python3", "-m", "http.server"],
            &["node", "-e"],
            &["perl"],
            &["ruby"],
            &["env"],
            &["xargs", "rm"],
            &["find", "."],
            &["make", "test"],
            &["cp"],
        ] {
            assert!(flagged(prefix).is_some(), "{prefix:?}");
        }
        assert_eq!(
            flagged(&["/usr/bin/python3.11", "x.py"]).as_deref(),
            Some("python3.11")
        );
    }

    #[test]
    fn version_and_help_only_print() {
        assert_eq!(flagged(&["python3", "--version"]), None);
        assert_eq!(flagged(&["bash", "--help"]), None);
        assert_eq!(flagged(&["cargo", "--version"]), None);
        assert_eq!(flagged(&["git", "--version"]), None);
    }

    #[test]
    fn build_tool_subcommands_are_flagged_and_read_only_ones_are_not() {
        assert_eq!(flagged(&["cargo", "build"]).as_deref(), Some("cargo build"));
        assert_eq!(flagged(&["cargo", "test"]).as_deref(), Some("cargo test"));
        assert_eq!(flagged(&["cargo"]).as_deref(), Some("cargo"));
        assert_eq!(flagged(&["npm", "install"]).as_deref(), Some("npm install"));
        assert_eq!(
            flagged(&["npm", "run", "build"]).as_deref(),
            Some("npm run")
        );
        assert_eq!(flagged(&["npm", "view"]), None);
        assert_eq!(
            flagged(&["pip3", "install"]).as_deref(),
            Some("pip3 install")
        );
        assert_eq!(flagged(&["pip", "list"]), None);
        assert_eq!(flagged(&["yarn", "build"]).as_deref(), Some("yarn build"));
    }

    #[test]
    fn git_is_flagged_by_subcommand_and_global_option() {
        assert_eq!(flagged(&["git"]).as_deref(), Some("git"));
        assert_eq!(flagged(&["git", "log"]).as_deref(), Some("git log"));
        assert_eq!(
            flagged(&["git", "push", "origin"]).as_deref(),
            Some("git push")
        );
        assert_eq!(flagged(&["git", "fetch"]).as_deref(), Some("git fetch"));
        assert_eq!(
            flagged(&["git", "-c", "x=y", "status"]).as_deref(),
            Some("git -c")
        );
        assert_eq!(
            flagged(&["git", "--exec-path=/tmp", "status"]).as_deref(),
            Some("git --exec-path")
        );
        assert_eq!(
            flagged(&["git", "-C", "/tmp", "status"]).as_deref(),
            Some("git -C")
        );
        assert_eq!(
            flagged(&["git", "--no-pager", "log"]).as_deref(),
            Some("git log")
        );
        assert_eq!(flagged(&["git", "status"]), None);
        assert_eq!(flagged(&["git", "--no-pager", "status"]), None);
        assert_eq!(flagged(&["git", "commit"]), None);
    }

    #[test]
    fn programs_the_table_does_not_name_are_not_flagged() {
        assert_eq!(flagged(&["ls"]), None);
        assert_eq!(flagged(&["date"]), None);
        assert_eq!(flagged(&["printenv", "HOME"]), None);
        assert_eq!(flagged(&["sleep"]), None);
    }

    #[test]
    fn the_reason_names_the_program() {
        let hatch = escape_hatch(&["xargs"]).unwrap();
        assert_eq!(
            hatch.can,
            "runs the command in its arguments (`xargs sh -c '...'`)"
        );
    }
}
