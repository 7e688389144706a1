//! End-to-end tests of the `EXEC_WRAPPER` patches in `shells/`, on the real patched zsh and
//! bash.
//!
//! These test the shells, not execgate's wrapper: the wrapper here is a small Perl fixture
//! that appends its argv (hex-encoded, one line per exec) to `$WRAPPER_LOG` and then runs the
//! command, with glibc's `execvp` running scripts without `#!` through `/bin/sh`. Where the
//! patch must not change what the user sees (command not found, permission denied), the
//! same script also runs with no wrapper and the two results must be identical.

use crate::support::bins::{patched_bash, patched_zsh};
use crate::support::dirs::Scratch;
use crate::support::setups::per_setup;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::Command;

/// Stands in for execgate's wrapper: log `[path, argv0, argv1, ...]`, then exec `path` with
/// `[argv0, argv1, ...]`.
const RECORDING_WRAPPER: &str = r#"#!/usr/bin/perl
open(my $log, '>>', $ENV{WRAPPER_LOG}) or die "wrapper: $ENV{WRAPPER_LOG}: $!\n";
binmode $log;
print $log join(' ', ($ENV{WRAPPER_TAG} // 'wrapper'), map { unpack('H*', $_) } @ARGV), "\n";
close($log);
my ($path, @argv) = @ARGV;
$path = "./$path" unless $path =~ m{/};
exec { $path } @argv or do { print STDERR "wrapper: $path: $!\n"; exit 127; };
"#;

/// A program that prints its arguments (after argv0), hex-encoded, and exits with
/// `$SHOW_STATUS` (default 0).
const SHOW: &str = r#"#!/usr/bin/perl
print join(' ', map { unpack('H*', $_) } @ARGV), "\n";
exit($ENV{SHOW_STATUS} // 0);
"#;

#[derive(Clone, Copy, Debug)]
enum Shell {
    Zsh,
    Bash,
}

impl Shell {
    fn path(self) -> PathBuf {
        match self {
            Shell::Zsh => patched_zsh(),
            Shell::Bash => patched_bash(),
        }
    }

    /// How the shell reports `what` on line 1 of a `-c` script.
    fn error_prefix(self) -> String {
        match self {
            Shell::Zsh => "zsh:1: ".to_string(),
            Shell::Bash => format!("{}: line 1: ", self.path().display()),
        }
    }
}

/// What one shell run produced.
#[derive(PartialEq, Eq)]
struct Outcome {
    status: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcome")
            .field("status", &self.status)
            .field("stdout", &self.stdout.escape_ascii().to_string())
            .field("stderr", &self.stderr.escape_ascii().to_string())
            .finish()
    }
}

/// A scratch directory with `bin/show`, the recording wrapper and its log.
struct Fixture {
    dir: Scratch,
}

impl Fixture {
    fn new() -> Fixture {
        let fixture = Fixture {
            dir: Scratch::new(),
        };
        fixture.file("bin/show", SHOW.as_bytes(), 0o755);
        fixture.file("wrapper", RECORDING_WRAPPER.as_bytes(), 0o755);
        fixture.file("legacy-wrapper", RECORDING_WRAPPER.as_bytes(), 0o755);
        fixture
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn path_str(&self, rel: &str) -> String {
        self.path(rel)
            .to_str()
            .expect("utf-8 temp path")
            .to_string()
    }

    fn file(&self, rel: &str, contents: &[u8], mode: u32) {
        self.dir.file(rel, contents, mode);
    }

    /// Run `script` with `shell -c` in the fixture directory, with a clean environment:
    /// `PATH=<fixture>/bin:/usr/bin:/bin`, `EXEC_WRAPPER=<fixture>/wrapper` unless `env`
    /// overrides it (a `None` value removes a variable).
    fn run(&self, shell: Shell, script: &[u8], env: &[(&str, Option<&OsStr>)]) -> Outcome {
        let mut cmd = Command::new(shell.path());
        match shell {
            Shell::Zsh => cmd.arg("-f"),
            Shell::Bash => cmd.arg("--norc"),
        };
        cmd.arg("-c").arg(OsStr::from_bytes(script));
        cmd.env_clear()
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env("PATH", format!("{}:/usr/bin:/bin", self.path_str("bin")))
            .env("WRAPPER_LOG", self.path("log"))
            .env("EXEC_WRAPPER", self.path("wrapper"));
        for (key, value) in env {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        let out = cmd.output().expect("run the patched shell");
        Outcome {
            status: out.status.code(),
            stdout: out.stdout,
            stderr: out.stderr,
        }
    }

    /// Run `script` unwrapped (no `EXEC_WRAPPER`, no `BASH_EXEC_WRAPPER`).
    fn run_unwrapped(&self, shell: Shell, script: &[u8]) -> Outcome {
        self.run(shell, script, &[("EXEC_WRAPPER", None)])
    }

    /// The execs the wrapper saw, in order: `(tag, [path, argv0, argv1, ...])`.
    fn execs(&self) -> Vec<(String, Vec<Vec<u8>>)> {
        let log = match fs::read(self.path("log")) {
            Ok(log) => log,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => panic!("read wrapper log: {e}"),
        };
        let log = String::from_utf8(log).expect("the log is hex");
        log.lines()
            .map(|line| {
                let mut fields = line.split(' ');
                let tag = fields.next().unwrap().to_string();
                (tag, fields.map(unhex).collect())
            })
            .collect()
    }

    /// Like `execs`, for tests with one wrapper: just the argv vectors.
    fn argvs(&self) -> Vec<Vec<Vec<u8>>> {
        self.execs().into_iter().map(|(_, argv)| argv).collect()
    }
}

fn unhex(field: &str) -> Vec<u8> {
    (0..field.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&field[i..i + 2], 16).expect("hex byte"))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `show`'s output for these arguments.
fn shown(args: &[&[u8]]) -> Vec<u8> {
    let mut line = args.iter().map(|a| hex(a)).collect::<Vec<_>>().join(" ");
    line.push('\n');
    line.into_bytes()
}

fn argv(parts: &[&str]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.as_bytes().to_vec()).collect()
}

fn os(s: &str) -> Option<&OsStr> {
    Some(OsStr::new(s))
}

fn ok(stdout: Vec<u8>) -> Outcome {
    Outcome {
        status: Some(0),
        stdout,
        stderr: Vec::new(),
    }
}

// ---- the behaviours, each run on both shells (see `per_setup!` at the end) ----

fn path_lookup_passes_absolute_path_and_original_argv(shell: Shell) {
    let f = Fixture::new();
    let out = f.run(shell, b"show a 'b c'", &[]);
    assert_eq!(out, ok(shown(&[b"a", b"b c"])));
    assert_eq!(
        f.argvs(),
        vec![argv(&[&f.path_str("bin/show"), "show", "a", "b c"])]
    );
}

fn relative_path_is_passed_as_written(shell: Shell) {
    let f = Fixture::new();
    let out = f.run(shell, b"./bin/show x; bin/show y", &[]);
    assert_eq!(out, ok([shown(&[b"x"]), shown(&[b"y"])].concat()));
    assert_eq!(
        f.argvs(),
        vec![
            argv(&["./bin/show", "./bin/show", "x"]),
            argv(&["bin/show", "bin/show", "y"]),
        ]
    );
}

fn dot_in_path_runs_the_program_in_the_working_directory(shell: Shell) {
    let f = Fixture::new();
    f.file("here", SHOW.as_bytes(), 0o755);
    let out = f.run(shell, b"PATH=.:/usr/bin:/bin; here z", &[]);
    assert_eq!(out, ok(shown(&[b"z"])));
    // zsh hands execve the bare name for a `.` entry; bash prefixes `./`.
    let path = match shell {
        Shell::Zsh => "here",
        Shell::Bash => "./here",
    };
    assert_eq!(f.argvs(), vec![argv(&[path, "here", "z"])]);
}

fn exec_builtin_goes_through_the_wrapper(shell: Shell) {
    let f = Fixture::new();
    let out = f.run(
        shell,
        b"exec show from-exec; echo not reached",
        &[("SHOW_STATUS", os("7"))],
    );
    assert_eq!(
        out,
        Outcome {
            status: Some(7),
            stdout: shown(&[b"from-exec"]),
            stderr: Vec::new(),
        }
    );
    assert_eq!(
        f.argvs(),
        vec![argv(&[&f.path_str("bin/show"), "show", "from-exec"])]
    );
}

fn command_not_found_behaves_as_unwrapped(shell: Shell) {
    let f = Fixture::new();
    let script = b"no-such-command arg; echo status=$?";
    let out = f.run(shell, script, &[]);
    let message = match shell {
        Shell::Zsh => "command not found: no-such-command\n",
        Shell::Bash => "no-such-command: command not found\n",
    };
    assert_eq!(
        out,
        Outcome {
            status: Some(0),
            stdout: b"status=127\n".to_vec(),
            stderr: format!("{}{message}", shell.error_prefix()).into_bytes(),
        }
    );
    assert_eq!(out, f.run_unwrapped(shell, script));
    assert_eq!(f.argvs(), Vec::<Vec<Vec<u8>>>::new());
}

fn permission_denied_behaves_as_unwrapped(shell: Shell) {
    let f = Fixture::new();
    f.file("bin/not-executable", SHOW.as_bytes(), 0o644);
    let script = b"not-executable; echo status=$?; ./bin/not-executable; echo status=$?";
    let out = f.run(shell, script, &[]);
    let prefix = shell.error_prefix();
    let stderr = match shell {
        Shell::Zsh => format!(
            "{prefix}permission denied: not-executable\n{prefix}permission denied: ./bin/not-executable\n"
        ),
        Shell::Bash => format!(
            "{prefix}{}: Permission denied\n{prefix}./bin/not-executable: Permission denied\n",
            f.path_str("bin/not-executable")
        ),
    };
    assert_eq!(
        out,
        Outcome {
            status: Some(0),
            stdout: b"status=126\nstatus=126\n".to_vec(),
            stderr: stderr.into_bytes(),
        }
    );
    assert_eq!(out, f.run_unwrapped(shell, script));
    assert_eq!(f.argvs(), Vec::<Vec<Vec<u8>>>::new());
}

fn missing_file_by_path_behaves_as_unwrapped(shell: Shell) {
    let f = Fixture::new();
    let script = b"./bin/missing; echo status=$?";
    let out = f.run(shell, script, &[]);
    let prefix = shell.error_prefix();
    let stderr = match shell {
        Shell::Zsh => format!("{prefix}no such file or directory: ./bin/missing\n"),
        Shell::Bash => format!("{prefix}./bin/missing: No such file or directory\n"),
    };
    assert_eq!(
        out,
        Outcome {
            status: Some(0),
            stdout: b"status=127\n".to_vec(),
            stderr: stderr.into_bytes(),
        }
    );
    assert_eq!(out, f.run_unwrapped(shell, script));
    assert_eq!(f.argvs(), Vec::<Vec<Vec<u8>>>::new());
}

fn path_search_skips_non_executable_files_and_directories(shell: Shell) {
    let f = Fixture::new();
    f.file("first/tool", b"#!/bin/sh\necho wrong tool\n", 0o644);
    fs::create_dir_all(f.path("second/tool")).unwrap();
    f.file("third/tool", SHOW.as_bytes(), 0o755);
    let path = format!(
        "{}:{}:{}:/usr/bin:/bin",
        f.path_str("first"),
        f.path_str("second"),
        f.path_str("third")
    );
    let script = format!("PATH='{path}'; tool t");
    let out = f.run(shell, script.as_bytes(), &[]);
    assert_eq!(out, ok(shown(&[b"t"])));
    assert_eq!(out, f.run_unwrapped(shell, script.as_bytes()));
    assert_eq!(
        f.argvs(),
        vec![argv(&[&f.path_str("third/tool"), "tool", "t"])]
    );
}

fn legacy_bash_exec_wrapper_is_used_when_exec_wrapper_is_unset(shell: Shell) {
    let f = Fixture::new();
    let legacy = f.path("legacy-wrapper");
    let out = f.run(
        shell,
        b"show legacy",
        &[
            ("EXEC_WRAPPER", None),
            ("BASH_EXEC_WRAPPER", Some(legacy.as_os_str())),
            ("WRAPPER_TAG", os("legacy")),
        ],
    );
    assert_eq!(out, ok(shown(&[b"legacy"])));
    assert_eq!(
        f.execs(),
        vec![(
            "legacy".to_string(),
            argv(&[&f.path_str("bin/show"), "show", "legacy"])
        )]
    );
}

fn legacy_bash_exec_wrapper_is_used_when_exec_wrapper_is_empty(shell: Shell) {
    let f = Fixture::new();
    let legacy = f.path("legacy-wrapper");
    let out = f.run(
        shell,
        b"show legacy",
        &[
            ("EXEC_WRAPPER", os("")),
            ("BASH_EXEC_WRAPPER", Some(legacy.as_os_str())),
        ],
    );
    assert_eq!(out, ok(shown(&[b"legacy"])));
    assert_eq!(
        f.argvs(),
        vec![argv(&[&f.path_str("bin/show"), "show", "legacy"])]
    );
}

fn exec_wrapper_takes_precedence_over_the_legacy_name(shell: Shell) {
    let f = Fixture::new();
    // The legacy wrapper would log under another tag; it must not run at all.
    f.file(
        "legacy-wrapper",
        b"#!/bin/sh\necho legacy wrapper ran >&2\nexit 99\n",
        0o755,
    );
    let legacy = f.path("legacy-wrapper");
    let out = f.run(
        shell,
        b"show both",
        &[("BASH_EXEC_WRAPPER", Some(legacy.as_os_str()))],
    );
    assert_eq!(out, ok(shown(&[b"both"])));
    assert_eq!(
        f.execs(),
        vec![(
            "wrapper".to_string(),
            argv(&[&f.path_str("bin/show"), "show", "both"])
        )]
    );
}

fn empty_exec_wrapper_means_no_wrapping(shell: Shell) {
    let f = Fixture::new();
    let out = f.run(shell, b"show plain", &[("EXEC_WRAPPER", os(""))]);
    assert_eq!(out, ok(shown(&[b"plain"])));
    assert_eq!(f.argvs(), Vec::<Vec<Vec<u8>>>::new());
}

fn argv_bytes_reach_the_wrapper_and_the_program_exactly(shell: Shell) {
    let f = Fixture::new();
    // Single quotes keep every byte literal, in both shells.
    let script: &[u8] = b"show 'two  spaces' 'new\nline' '' '\xff\xfe\x80 not utf-8' '\"quoted\"'";
    let args: [&[u8]; 5] = [
        b"two  spaces",
        b"new\nline",
        b"",
        b"\xff\xfe\x80 not utf-8",
        b"\"quoted\"",
    ];
    let out = f.run(shell, script, &[]);
    assert_eq!(out, ok(shown(&args)));
    let mut expected = vec![f.path_str("bin/show").into_bytes(), b"show".to_vec()];
    expected.extend(args.iter().map(|a| a.to_vec()));
    assert_eq!(f.argvs(), vec![expected]);
}

fn pipelines_and_command_substitution_are_wrapped(shell: Shell) {
    let f = Fixture::new();
    let out = f.run(
        shell,
        b"show p1 | show p2; x=$(show sub); echo \"got $x\"",
        &[],
    );
    assert_eq!(
        out,
        ok([shown(&[b"p2"]).as_slice(), b"got 737562\n"].concat())
    );
    let show = f.path_str("bin/show");
    // The two sides of the pipeline run concurrently: their order in the log is not fixed.
    let mut execs = f.argvs();
    execs[..2].sort();
    assert_eq!(
        execs,
        vec![
            argv(&[&show, "show", "p1"]),
            argv(&[&show, "show", "p2"]),
            argv(&[&show, "show", "sub"]),
        ]
    );
}

fn script_without_shebang_runs_once_through_the_wrapper(shell: Shell) {
    let f = Fixture::new();
    f.file(
        "bin/no-shebang",
        b"echo \"ran with $1\" >>\"$HOME/ran\"\nexit 3\n",
        0o755,
    );
    let out = f.run(shell, b"no-shebang arg; echo status=$?", &[]);
    assert_eq!(out, ok(b"status=3\n".to_vec()));
    assert_eq!(fs::read(f.path("ran")).unwrap(), b"ran with arg\n");
    assert_eq!(
        f.argvs(),
        vec![argv(&[&f.path_str("bin/no-shebang"), "no-shebang", "arg"])]
    );
}

fn missing_wrapper_fails_closed(shell: Shell) {
    let f = Fixture::new();
    let out = f.run(
        shell,
        b"show must-not-run; echo status=$?",
        &[("EXEC_WRAPPER", os("/nonexistent/wrapper"))],
    );
    let errno = match shell {
        Shell::Zsh => "no such file or directory",
        Shell::Bash => "No such file or directory",
    };
    assert_eq!(
        out,
        Outcome {
            status: Some(0),
            stdout: b"status=126\n".to_vec(),
            stderr: format!(
                "{}{}: exec wrapper /nonexistent/wrapper: {errno}\n",
                shell.error_prefix(),
                f.path_str("bin/show")
            )
            .into_bytes(),
        }
    );
}

fn missing_wrapper_fails_closed_on_exec_with_one_message(shell: Shell) {
    let f = Fixture::new();
    let out = f.run(
        shell,
        b"exec show must-not-run; echo not reached",
        &[("EXEC_WRAPPER", os("/nonexistent/wrapper"))],
    );
    let errno = match shell {
        Shell::Zsh => "no such file or directory",
        Shell::Bash => "No such file or directory",
    };
    assert_eq!(
        out,
        Outcome {
            status: Some(126),
            stdout: Vec::new(),
            stderr: format!(
                "{}{}: exec wrapper /nonexistent/wrapper: {errno}\n",
                shell.error_prefix(),
                f.path_str("bin/show")
            )
            .into_bytes(),
        }
    );
}

fn builtins_and_functions_are_not_execs_but_their_commands_are(shell: Shell) {
    let f = Fixture::new();
    let out = f.run(shell, b"f() { show in-function; }; echo builtin; f", &[]);
    assert_eq!(
        out,
        ok([b"builtin\n".as_slice(), &shown(&[b"in-function"])].concat())
    );
    assert_eq!(
        f.argvs(),
        vec![argv(&[&f.path_str("bin/show"), "show", "in-function"])]
    );
}

/// The variable is read from the shell's environment at each exec, and both shells update
/// that environment on `unset` / `export`: a script can turn wrapping off. That is why
/// interception is not the security boundary (see shells/README.md).
fn unset_exec_wrapper_in_a_script_turns_wrapping_off(shell: Shell) {
    let f = Fixture::new();
    let out = f.run(shell, b"show before; unset EXEC_WRAPPER; show after", &[]);
    assert_eq!(out, ok([shown(&[b"before"]), shown(&[b"after"])].concat()));
    assert_eq!(
        f.argvs(),
        vec![argv(&[&f.path_str("bin/show"), "show", "before"])]
    );
}

fn nested_patched_shell_is_wrapped_and_wraps_its_own_commands(shell: Shell) {
    let f = Fixture::new();
    let inner = shell.path();
    let inner = inner.to_str().unwrap();
    let script = format!("'{inner}' -c 'show inner'");
    let out = f.run(shell, script.as_bytes(), &[]);
    assert_eq!(out, ok(shown(&[b"inner"])));
    assert_eq!(
        f.argvs(),
        vec![
            argv(&[inner, inner, "-c", "show inner"]),
            argv(&[&f.path_str("bin/show"), "show", "inner"]),
        ]
    );
}

per_setup! {
    zsh => Shell::Zsh,
    bash => Shell::Bash;
    [
        path_lookup_passes_absolute_path_and_original_argv,
        relative_path_is_passed_as_written,
        dot_in_path_runs_the_program_in_the_working_directory,
        exec_builtin_goes_through_the_wrapper,
        command_not_found_behaves_as_unwrapped,
        permission_denied_behaves_as_unwrapped,
        missing_file_by_path_behaves_as_unwrapped,
        path_search_skips_non_executable_files_and_directories,
        legacy_bash_exec_wrapper_is_used_when_exec_wrapper_is_unset,
        legacy_bash_exec_wrapper_is_used_when_exec_wrapper_is_empty,
        exec_wrapper_takes_precedence_over_the_legacy_name,
        empty_exec_wrapper_means_no_wrapping,
        argv_bytes_reach_the_wrapper_and_the_program_exactly,
        pipelines_and_command_substitution_are_wrapped,
        script_without_shebang_runs_once_through_the_wrapper,
        missing_wrapper_fails_closed,
        missing_wrapper_fails_closed_on_exec_with_one_message,
        builtins_and_functions_are_not_execs_but_their_commands_are,
        unset_exec_wrapper_in_a_script_turns_wrapping_off,
        nested_patched_shell_is_wrapped_and_wraps_its_own_commands,
    ]
}
