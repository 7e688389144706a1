//! The built-in known-safe list used by approval mode `untrusted`.
//!
//! In `untrusted` mode a command no rule matched is not run silently: it needs approval,
//! unless it is *known safe* — a program that only reads and prints, called without any
//! option that makes it write files or run other programs. A known-safe command still runs
//! inside the sandbox; the list only spares the person a prompt for `ls` or `cat`.
//!
//! The reasoning, per entry:
//! - always safe: programs with no option that writes a file or runs a program (`cat`,
//!   `echo`, `head`, `ls`, `pwd`, `wc`, `grep`, ...);
//! - safe without some options: `find` (not `-exec`, `-execdir`, `-ok`, `-okdir`,
//!   `-delete`, `-fprint*`, `-fls`), `sort` (not `-o`/`--output`, `--compress-program`),
//!   `rg` (not `--pre`, `--hostname-bin`, `-z`/`--search-zip`), `sed` only as
//!   `sed -n <N>p` / `sed -n <M>,<N>p`, `git` only for read-only subcommands without `-c`,
//!   `--output`, `--ext-diff` or `--exec-path`;
//! - never on the list: anything that runs its arguments (`env`, `xargs`, `sh`, `time`,
//!   `nice`, `timeout`), writes (`cp`, `tee`, `touch`, `uniq`'s output operand), or talks to
//!   the network.
//!
//! Only programs living in system directories qualify, so a sandbox-written `./ls` never
//! does.

use std::path::Path;

/// Directories a known-safe program must live in.
const SYSTEM_DIRS: &[&str] = &["/bin", "/usr/bin", "/sbin", "/usr/sbin", "/usr/local/bin"];

/// Programs that only read and print whatever their arguments.
const ALWAYS_SAFE: &[&str] = &[
    "basename", "cat", "cut", "date", "dirname", "echo", "egrep", "expr", "false", "fgrep", "file",
    "grep", "head", "hostname", "id", "ls", "nl", "printf", "pwd", "readlink", "realpath", "stat",
    "tail", "tr", "true", "uname", "wc", "which", "whoami",
];

/// Read-only git subcommands.
const GIT_READ_ONLY: &[&str] = &[
    "blame",
    "diff",
    "log",
    "ls-files",
    "rev-parse",
    "show",
    "status",
];

/// True when `program` (absolute, canonical) called with `argv` is on the known-safe list.
pub fn is_known_safe(program: &Path, argv: &[Vec<u8>]) -> bool {
    let Some(dir) = program.parent().and_then(Path::to_str) else {
        return false;
    };
    if !SYSTEM_DIRS.contains(&dir) {
        return false;
    }
    let Some(name) = program.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    // Every argument must be text: a non-UTF-8 option cannot be judged, so it is not safe.
    let Some(args) = argv
        .iter()
        .skip(1)
        .map(|a| std::str::from_utf8(a).ok())
        .collect::<Option<Vec<&str>>>()
    else {
        return false;
    };
    match name {
        _ if ALWAYS_SAFE.contains(&name) => true,
        "find" => !args.iter().any(|a| {
            matches!(
                *a,
                "-exec"
                    | "-execdir"
                    | "-ok"
                    | "-okdir"
                    | "-delete"
                    | "-fls"
                    | "-fprint"
                    | "-fprint0"
                    | "-fprintf"
            )
        }),
        "sort" => !args.iter().any(|a| {
            *a == "-o"
                || a.starts_with("--output")
                || a.starts_with("--compress-program")
                || (a.starts_with('-') && !a.starts_with("--") && a.contains('o'))
        }),
        "rg" => !args.iter().any(|a| {
            a.starts_with("--pre")
                || a.starts_with("--hostname-bin")
                || *a == "--search-zip"
                || (a.starts_with('-') && !a.starts_with("--") && a.contains('z'))
        }),
        "sed" => is_safe_sed(&args),
        "git" => is_safe_git(&args),
        _ => false,
    }
}

/// `sed -n 5p FILE...` or `sed -n 1,20p FILE...`: print lines, nothing else.
fn is_safe_sed(args: &[&str]) -> bool {
    let [flag, script, ..] = args else {
        return false;
    };
    if *flag != "-n" {
        return false;
    }
    let Some(range) = script.strip_suffix('p') else {
        return false;
    };
    let is_num = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match range.split_once(',') {
        Some((a, b)) => is_num(a) && is_num(b),
        None => is_num(range),
    }
}

fn is_safe_git(args: &[&str]) -> bool {
    let Some(sub) = args.first() else {
        return false;
    };
    GIT_READ_ONLY.contains(sub)
        && !args.iter().any(|a| {
            *a == "-c"
                || a.starts_with("--output")
                || a.starts_with("--ext-diff")
                || a.starts_with("--exec-path")
                || a.starts_with("--textconv")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn safe(program: &str, argv: &[&str]) -> bool {
        let argv: Vec<Vec<u8>> = argv.iter().map(|a| a.as_bytes().to_vec()).collect();
        is_known_safe(Path::new(program), &argv)
    }

    #[test]
    fn plain_readers_in_system_dirs_are_safe() {
        assert!(safe("/usr/bin/ls", &["ls", "-la"]));
        assert!(safe("/bin/cat", &["cat", "a", "b"]));
        assert!(safe("/usr/bin/grep", &["grep", "-rn", "x", "."]));
    }

    #[test]
    fn programs_outside_system_dirs_are_never_safe() {
        assert!(!safe("/work/repo/ls", &["ls"]));
        assert!(!safe("/tmp/cat", &["cat"]));
    }

    #[test]
    fn programs_that_run_or_write_are_not_safe() {
        assert!(!safe("/usr/bin/env", &["env", "ls"]));
        assert!(!safe("/usr/bin/xargs", &["xargs", "rm"]));
        assert!(!safe("/usr/bin/tee", &["tee", "f"]));
        assert!(!safe("/usr/bin/rm", &["rm", "-rf", "x"]));
    }

    #[test]
    fn find_with_exec_or_delete_is_not_safe() {
        assert!(safe("/usr/bin/find", &["find", ".", "-name", "*.rs"]));
        assert!(!safe(
            "/usr/bin/find",
            &["find", ".", "-exec", "rm", "{}", ";"]
        ));
        assert!(!safe("/usr/bin/find", &["find", ".", "-delete"]));
    }

    #[test]
    fn sort_with_output_is_not_safe() {
        assert!(safe("/usr/bin/sort", &["sort", "-n", "f"]));
        assert!(!safe("/usr/bin/sort", &["sort", "-o", "f", "g"]));
        assert!(!safe("/usr/bin/sort", &["sort", "-no", "f"]));
        assert!(!safe("/usr/bin/sort", &["sort", "--output=f"]));
    }

    #[test]
    fn sed_only_prints_line_ranges() {
        assert!(safe("/usr/bin/sed", &["sed", "-n", "5p", "f"]));
        assert!(safe("/usr/bin/sed", &["sed", "-n", "1,20p", "f"]));
        assert!(!safe("/usr/bin/sed", &["sed", "-i", "s/a/b/", "f"]));
        assert!(!safe("/usr/bin/sed", &["sed", "-n", "1w out", "f"]));
    }

    #[test]
    fn git_read_only_subcommands_are_safe() {
        assert!(safe("/usr/bin/git", &["git", "status"]));
        assert!(safe("/usr/bin/git", &["git", "log", "--oneline"]));
        assert!(!safe("/usr/bin/git", &["git", "push"]));
        assert!(!safe(
            "/usr/bin/git",
            &["git", "-c", "core.pager=sh", "log"]
        ));
        assert!(!safe("/usr/bin/git", &["git", "diff", "--ext-diff"]));
    }

    #[test]
    fn non_utf8_argument_is_not_safe() {
        let argv = vec![b"ls".to_vec(), vec![0xff]];
        assert!(!is_known_safe(Path::new("/usr/bin/ls"), &argv));
    }
}
