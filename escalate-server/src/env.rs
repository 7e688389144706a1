//! The environment of an escalated process (design invariant 3): the session's own,
//! captured outside the sandbox, plus a closed list of request variables.
//!
//! A sandboxed process chooses the environment of every command it asks to escalate, and
//! almost any variable can steer a program (`HOME` and `XDG_CONFIG_HOME` pick the config
//! git reads, `GIT_DIR` the repository, `PATH` every helper, `GIT_TRACE` a file to write,
//! `MAKEFILES` extra makefiles...). So nothing is taken from the request unless it is on
//! this allow-list, with a value that cannot name a file:
//!
//! | variable | taken when its value |
//! |---|---|
//! | `TERM` | has no `/` and does not start with `.` |
//! | `LANG`, `LC_*` | matches `[A-Za-z0-9_.@-]+`, not starting with `.` (glibc loads a locale named by a path) |
//! | `COLUMNS`, `LINES` | is digits |
//! | `TZ` | has no `/` and starts with neither `:` nor `.` (they name a zone file) |
//!
//! (A value starting with `.` could climb out of the folder it is looked up in: `..`.)
//! | `NO_COLOR`, `FORCE_COLOR`, `CLICOLOR` | is anything |
//!
//! plus the names the user passes explicitly (`SessionBuilder::pass_env`), byte-exact.
//! `TERMINFO*` never comes from the request; the server sets `PWD` to the directory the
//! process runs in; the session's plumbing (`EXECGATE_SOCKET`, `EXEC_WRAPPER`,
//! `BASH_EXEC_WRAPPER`, `EXECGATE_ESCALATION_FD`) never reaches an escalated process.

use execgate_protocol::{ESCALATION_FD_ENV, LEGACY_WRAPPER_ENV, SOCKET_ENV, WRAPPER_ENV};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

/// The session's own variables: never passed to an escalated process.
const PLUMBING: [&str; 4] = [
    SOCKET_ENV,
    WRAPPER_ENV,
    LEGACY_WRAPPER_ENV,
    ESCALATION_FD_ENV,
];

/// Variables shells maintain for themselves; a request that differs from the session in
/// these is not worth reporting as dropped.
const BOOKKEEPING: [&str; 4] = ["_", "SHLVL", "OLDPWD", "PWD"];

/// True when the request's `name=value` may reach an escalated process (the allow-list
/// of presentation variables in the module documentation).
pub(crate) fn is_presentation_var(name: &[u8], value: &[u8]) -> bool {
    match name {
        b"TERM" => !value.contains(&b'/') && !value.starts_with(b"."),
        b"COLUMNS" | b"LINES" => !value.is_empty() && value.iter().all(u8::is_ascii_digit),
        b"TZ" => !value.contains(&b'/') && !value.starts_with(b":") && !value.starts_with(b"."),
        b"NO_COLOR" | b"FORCE_COLOR" | b"CLICOLOR" => true,
        _ if name == b"LANG" || name.starts_with(b"LC_") => {
            !value.is_empty()
                && !value.starts_with(b".")
                && value
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b"_.@-".contains(&b))
        }
        _ => false,
    }
}

/// Why a name given to `SessionBuilder::pass_env` cannot be passed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PassEnvError {
    /// Not a variable name.
    #[error("{name:?} is not an environment variable name (empty, or contains '=' or NUL)")]
    BadName {
        /// The name as given.
        name: String,
    },
    /// A name the session sets itself, or one that is never passed.
    #[error("{name} cannot be passed to escalated commands: {why}")]
    Reserved {
        /// The name.
        name: String,
        /// What it is.
        why: &'static str,
    },
}

/// Whether `name` may be given to `SessionBuilder::pass_env`: a variable name (not empty,
/// no `=` or NUL) that the session does not set itself and that is not one of those never
/// passed (`TERMINFO*`). A command-line flag can check its value with this before any
/// session starts.
pub fn check_pass_env(name: &OsStr) -> Result<(), PassEnvError> {
    let bytes = name.as_bytes();
    let text = || name.to_string_lossy().into_owned();
    if bytes.is_empty() || bytes.contains(&b'=') || bytes.contains(&0) {
        return Err(PassEnvError::BadName { name: text() });
    }
    match reserved(bytes) {
        Some(why) => Err(PassEnvError::Reserved { name: text(), why }),
        None => Ok(()),
    }
}

/// Why `name` may not be on the pass list, if it may not.
fn reserved(name: &[u8]) -> Option<&'static str> {
    if PLUMBING.iter().any(|p| p.as_bytes() == name) {
        Some("the session sets it to connect the sandboxed shell to the server")
    } else if name == b"LD_PRELOAD" {
        Some("the session sets it to load the preload shim in the sandbox")
    } else if name == b"PWD" {
        Some("the server sets it to the directory the command runs in")
    } else if name.starts_with(b"TERMINFO") {
        Some("terminal descriptions come from the session, never from the sandbox")
    } else {
        None
    }
}

/// Splits a raw `NAME=value` entry (an entry without `=` is all name).
fn split(entry: &[u8]) -> (&[u8], &[u8]) {
    match entry.iter().position(|&b| b == b'=') {
        Some(at) => (&entry[..at], &entry[at + 1..]),
        None => (entry, &[]),
    }
}

/// What an escalated process's environment is built from; fixed for a session.
#[derive(Debug, Default)]
pub(crate) struct EnvPolicy {
    /// The session's entries (`NAME=value`), plumbing and `PWD` removed, in order.
    session: Vec<Vec<u8>>,
    /// Name -> index in `session`.
    index: HashMap<Vec<u8>, usize>,
    /// Names the user passes from the request.
    pass: Vec<Vec<u8>>,
}

/// An escalated process's environment, borrowed from the request and the session.
#[derive(Debug)]
pub(crate) struct Built<'a> {
    /// The entries, each name once; `PWD` last when known.
    pub(crate) entries: Vec<&'a [u8]>,
    /// Names of request variables that were not passed on and differ from the session's
    /// (plumbing and shell bookkeeping not counted), in request order.
    pub(crate) dropped: Vec<Vec<u8>>,
}

impl EnvPolicy {
    /// The session's environment `session` (captured outside the sandbox) and the names
    /// `pass` the user lets through from requests.
    pub(crate) fn new(
        session: impl IntoIterator<Item = (OsString, OsString)>,
        pass: &[OsString],
    ) -> Result<Self, PassEnvError> {
        let mut policy = Self::default();
        for (name, value) in session {
            let name = name.as_bytes();
            if name.is_empty()
                || name.contains(&b'=')
                || name == b"PWD"
                || PLUMBING.iter().any(|p| p.as_bytes() == name)
                || policy.index.contains_key(name)
            {
                continue;
            }
            let mut entry = name.to_vec();
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            policy.index.insert(name.to_vec(), policy.session.len());
            policy.session.push(entry);
        }
        for name in pass {
            check_pass_env(name)?;
            let bytes = name.as_bytes();
            if !policy.pass.iter().any(|p| p == bytes) {
                policy.pass.push(bytes.to_vec());
            }
        }
        Ok(policy)
    }

    /// True when the request's `name=value` is passed on.
    fn passes(&self, name: &[u8], value: &[u8]) -> bool {
        is_presentation_var(name, value) || self.pass.iter().any(|p| p == name)
    }

    /// The environment for a request whose environment is `request`; `set` are the
    /// policy's own `NAME=value` entries (a ruling's `set_env`), which replace the
    /// session's and the request's of the same names; `pwd` is the `PWD=...` entry for the
    /// directory the process runs in, when known.
    pub(crate) fn build<'a>(
        &'a self,
        request: &'a [Vec<u8>],
        set: &'a [Vec<u8>],
        pwd: Option<&'a [u8]>,
    ) -> Built<'a> {
        let is_set = |name: &[u8]| set.iter().any(|e| split(e).0 == name);
        let mut taken: Vec<(&[u8], &[u8])> = Vec::new();
        let mut dropped: Vec<Vec<u8>> = Vec::new();
        for entry in request {
            let (name, value) = split(entry);
            // The first of duplicate names wins, as for getenv.
            if taken.iter().any(|&(n, _)| n == name) {
                continue;
            }
            if self.passes(name, value) {
                taken.push((name, entry));
                continue;
            }
            let bookkeeping = BOOKKEEPING.iter().any(|b| b.as_bytes() == name)
                || PLUMBING.iter().any(|p| p.as_bytes() == name)
                || name == b"LD_PRELOAD";
            let same = self.index.get(name).is_some_and(|&at| {
                self.session[at][name.len()..].strip_prefix(b"=") == Some(value)
            });
            if !bookkeeping && !same && !dropped.iter().any(|d| d == name) {
                dropped.push(name.to_vec());
            }
        }
        let mut entries: Vec<&[u8]> =
            Vec::with_capacity(self.session.len() + taken.len() + set.len() + 1);
        for entry in &self.session {
            let (name, _) = split(entry);
            if !taken.iter().any(|&(n, _)| n == name) && !is_set(name) {
                entries.push(entry);
            }
        }
        entries.extend(
            taken
                .iter()
                .filter(|&&(name, _)| !is_set(name))
                .map(|&(_, entry)| entry),
        );
        for entry in set {
            let (name, _) = split(entry);
            // Never the session's plumbing or PWD, which the server sets.
            if name != b"PWD" && !PLUMBING.iter().any(|p| p.as_bytes() == name) {
                entries.push(entry);
            }
        }
        entries.extend(pwd);
        Built { entries, dropped }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presentation_values_are_checked() {
        for (entry, passes) in [
            (&b"TERM=xterm-256color"[..], true),
            (b"TERM=", true),
            (b"TERM=../../tmp/evil", false),
            (b"TERM=/tmp/evil", false),
            (b"TERM=..", false),
            (b"LANG=C.UTF-8", true),
            (b"LANG=en_US.UTF-8", true),
            (b"LANG=de_DE@euro", true),
            (b"LANG=", false),
            (b"LANG=/tmp/locale", false),
            (b"LANG=../locale", false),
            (b"LANG=..", false),
            (b"LC_ALL=.", false),
            (b"LANG=C UTF-8", false),
            (b"LC_ALL=sr_RS.UTF-8@latin", true),
            (b"LC_CTYPE=/tmp/x", false),
            (b"LC_MESSAGES=fr_FR\xff", false),
            (b"COLUMNS=80", true),
            (b"LINES=24", true),
            (b"COLUMNS=", false),
            (b"COLUMNS=80x", false),
            (b"LINES=-1", false),
            (b"TZ=UTC", true),
            (b"TZ=CET-1CEST,M3.5.0,M10.5.0/3", false),
            (b"TZ=EST5EDT", true),
            (b"TZ=Europe/Paris", false),
            (b"TZ=:/tmp/zone", false),
            (b"TZ=:UTC", false),
            (b"TZ=..", false),
            (b"NO_COLOR=1", true),
            (b"FORCE_COLOR=3", true),
            (b"CLICOLOR=", true),
            // Never from the request, whatever the value.
            (b"TERMINFO=/usr/share/terminfo", false),
            (b"TERMINFO_DIRS=/x", false),
            (b"HOME=/root", false),
            (b"PATH=/usr/bin", false),
            (b"XDG_CONFIG_HOME=/x", false),
            (b"GIT_DIR=/x", false),
            (b"GIT_PAGER=cat", false),
            (b"PAGER=cat", false),
            (b"GIT_TRACE=/x", false),
            (b"MAKEFILES=/x", false),
            (b"LD_PRELOAD=/x.so", false),
            (b"BASH_ENV=/x", false),
            (b"PYTHONPATH=/x", false),
            (b"EXECGATE_SOCKET=3", false),
            (b"PWD=/x", false),
            (b"LANGUAGE=fr", false),
            (b"COLORTERM=truecolor", false),
        ] {
            let (name, value) = split(entry);
            assert_eq!(
                is_presentation_var(name, value),
                passes,
                "{}",
                String::from_utf8_lossy(entry)
            );
        }
    }

    fn session(vars: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        vars.iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    fn text(entries: &[&[u8]]) -> Vec<String> {
        entries
            .iter()
            .map(|e| String::from_utf8_lossy(e).into_owned())
            .collect()
    }

    #[test]
    fn escalated_env_is_the_sessions_plus_allowed_request_variables() {
        let policy = EnvPolicy::new(
            session(&[
                ("HOME", "/home/me"),
                ("PATH", "/usr/bin:/bin"),
                ("TERM", "dumb"),
                ("EXECGATE_SOCKET", "9"),
                ("PWD", "/started/here"),
                ("SHLVL", "1"),
            ]),
            &["FOO".into()],
        )
        .unwrap();
        let request: Vec<Vec<u8>> = [
            &b"HOME=/work/evil"[..],
            b"PATH=/usr/bin:/bin",
            b"TERM=xterm",
            b"TERM=vt100",
            b"LANG=/work/locale",
            b"COLUMNS=120",
            b"FOO=\xffbar",
            b"GIT_DIR=/work/g",
            b"EXECGATE_SOCKET=1023",
            b"EXEC_WRAPPER=/w",
            b"LD_PRELOAD=/shim.so",
            b"SHLVL=2",
            b"_=/usr/bin/git",
            b"NOVALUE",
            b"HOME=/work/again",
        ]
        .iter()
        .map(|e| e.to_vec())
        .collect();
        let built = policy.build(&request, &[], Some(b"PWD=/work/sub"));
        assert_eq!(
            text(&built.entries),
            [
                "HOME=/home/me",
                "PATH=/usr/bin:/bin",
                "SHLVL=1",
                "TERM=xterm",
                "COLUMNS=120",
                "FOO=\u{fffd}bar",
                "PWD=/work/sub",
            ]
        );
        assert_eq!(built.entries[5], b"FOO=\xffbar");
        let dropped: Vec<String> = built
            .dropped
            .iter()
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .collect();
        assert_eq!(dropped, ["HOME", "LANG", "GIT_DIR", "NOVALUE"]);
    }

    #[test]
    fn the_policys_entries_replace_the_sessions_and_the_requests() {
        let policy = EnvPolicy::new(
            session(&[("GIT_DIR", "/session/.git"), ("HOME", "/home/me")]),
            &["GIT_WORK_TREE".into()],
        )
        .unwrap();
        let request: Vec<Vec<u8>> = vec![b"GIT_WORK_TREE=/work/evil".to_vec()];
        let set: Vec<Vec<u8>> = vec![
            b"GIT_DIR=/checked/.git".to_vec(),
            b"GIT_WORK_TREE=/checked".to_vec(),
            b"PWD=/not/this".to_vec(),
            b"EXECGATE_SOCKET=1".to_vec(),
        ];
        let built = policy.build(&request, &set, Some(b"PWD=/checked/sub"));
        assert_eq!(
            text(&built.entries),
            [
                "HOME=/home/me",
                "GIT_DIR=/checked/.git",
                "GIT_WORK_TREE=/checked",
                "PWD=/checked/sub",
            ]
        );
    }

    #[test]
    fn reserved_and_malformed_names_cannot_be_passed() {
        for name in [
            "EXECGATE_SOCKET",
            "EXEC_WRAPPER",
            "BASH_EXEC_WRAPPER",
            "EXECGATE_ESCALATION_FD",
            "LD_PRELOAD",
            "PWD",
            "TERMINFO",
            "TERMINFO_DIRS",
        ] {
            let err = EnvPolicy::new(Vec::new(), &[name.into()]).unwrap_err();
            assert!(
                matches!(err, PassEnvError::Reserved { .. }),
                "{name}: {err}"
            );
        }
        for name in ["", "A=B"] {
            let err = EnvPolicy::new(Vec::new(), &[name.into()]).unwrap_err();
            assert!(
                matches!(err, PassEnvError::BadName { .. }),
                "{name:?}: {err}"
            );
        }
        assert_eq!(
            EnvPolicy::new(Vec::new(), &["PWD".into()])
                .unwrap_err()
                .to_string(),
            "PWD cannot be passed to escalated commands: the server sets it to the directory \
             the command runs in"
        );
    }
}
