//! Which environment variables never reach an escalated process (security invariant 3).
//!
//! A sandboxed process chooses the environment of the commands it asks to escalate; these
//! variables would let it run code of its choosing outside the sandbox (loader injection,
//! interpreter start-up files and options, commands git runs) or belong to the session
//! itself.

/// Exact names removed from an escalated process's environment.
pub const INJECTION_VARS: &[&str] = &[
    // Shell start-up code and options.
    "BASH_ENV",
    "ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "ZDOTDIR",
    // glibc.
    "GLIBC_TUNABLES",
    "GCONV_PATH",
    "LOCPATH",
    // Interpreters.
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONUSERBASE",
    "PYTHONBREAKPOINT",
    "PYTHONWARNINGS",
    "PERL5LIB",
    "PERLLIB",
    "PERL5OPT",
    "PERL5DB",
    "RUBYOPT",
    "RUBYLIB",
    "NODE_OPTIONS",
    "NODE_PATH",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    // Commands and configuration git would run or read.
    "GIT_CONFIG",
    "GIT_EXEC_PATH",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_PROXY_COMMAND",
    "GIT_ASKPASS",
    "SSH_ASKPASS",
    "GIT_EXTERNAL_DIFF",
    "GIT_TEMPLATE_DIR",
    // The session's own plumbing: an escalated process is outside the session.
    execgate_protocol::WRAPPER_ENV,
    execgate_protocol::LEGACY_WRAPPER_ENV,
    execgate_protocol::SOCKET_ENV,
    execgate_protocol::ESCALATION_FD_ENV,
];

/// Name prefixes removed from an escalated process's environment: every dynamic loader
/// variable (`LD_PRELOAD`, `LD_LIBRARY_PATH`, `LD_AUDIT`, ...; `DYLD_*` on macOS), bash's
/// exported functions, and git's config-injection variables (`GIT_CONFIG_COUNT`,
/// `GIT_CONFIG_KEY_n`, `GIT_CONFIG_PARAMETERS`, ...).
pub const INJECTION_VAR_PREFIXES: &[&str] = &["LD_", "DYLD_", "BASH_FUNC_", "GIT_CONFIG_"];

/// True when the raw `NAME=value` entry `entry` must not reach an escalated process.
pub fn is_injection_var(entry: &[u8]) -> bool {
    let name = entry.split(|&b| b == b'=').next().unwrap_or(entry);
    INJECTION_VARS.iter().any(|v| v.as_bytes() == name)
        || INJECTION_VAR_PREFIXES
            .iter()
            .any(|p| name.starts_with(p.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_interpreter_and_session_variables_are_injection() {
        for entry in [
            &b"LD_PRELOAD=/x.so"[..],
            b"LD_LIBRARY_PATH=/x",
            b"LD_AUDIT=/x",
            b"BASH_ENV=/x",
            b"ENV=/x",
            b"BASH_FUNC_git%%=() { :; }",
            b"PYTHONPATH=/x",
            b"EXECGATE_SOCKET=3",
            b"EXEC_WRAPPER=/w",
            b"BASH_EXEC_WRAPPER=/w",
            b"GIT_CONFIG_COUNT=1",
        ] {
            assert!(
                is_injection_var(entry),
                "{}",
                String::from_utf8_lossy(entry)
            );
        }
    }

    #[test]
    fn ordinary_variables_are_kept() {
        for entry in [
            &b"PATH=/bin"[..],
            b"HOME=/root",
            b"ENVIRONMENT=x",
            b"LANG=C",
            b"OLDPWD",
            b"A=\xff",
        ] {
            assert!(
                !is_injection_var(entry),
                "{}",
                String::from_utf8_lossy(entry)
            );
        }
    }
}
