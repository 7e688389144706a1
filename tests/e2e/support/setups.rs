//! The shell setups end-to-end tests run in (a shell, its flags, and how its execs reach the
//! server), and [`per_setup!`], which makes each setup its own test module.

use super::bins::{patched_bash, patched_zsh, preload_shim, wrapper};
use execgate_escalate_server::Interception;
use std::ffi::OsString;
use std::path::PathBuf;

/// One way of running an intercepted shell.
#[derive(Debug, Clone)]
pub struct ShellSetup {
    /// Name shown in failures.
    pub name: &'static str,
    /// The shell binary.
    pub shell: PathBuf,
    /// Arguments before `-c SCRIPT`.
    pub args: Vec<OsString>,
    /// How execs reach the server.
    pub interception: Interception,
    /// Whether the shell has `<(...)`.
    pub process_substitution: bool,
}

impl ShellSetup {
    /// execgate's patched zsh, wrapping every exec in the wrapper.
    pub fn patched_zsh() -> Self {
        Self::patched("patched zsh", patched_zsh(), &["-f"])
    }

    /// execgate's patched bash, wrapping every exec in the wrapper.
    pub fn patched_bash() -> Self {
        Self::patched("patched bash", patched_bash(), &["--norc", "--noprofile"])
    }

    /// Debian's bash with the preload shim.
    pub fn shim_bash() -> Self {
        Self::shim(
            "Debian bash + shim",
            "/bin/bash",
            &["--norc", "--noprofile"],
            true,
        )
    }

    /// Debian's dash with the preload shim.
    pub fn shim_dash() -> Self {
        Self::shim("Debian dash + shim", "/bin/dash", &[], false)
    }

    /// Debian's zsh with the preload shim.
    pub fn shim_zsh() -> Self {
        Self::shim("Debian zsh + shim", "/usr/bin/zsh", &["-f"], true)
    }

    /// A program that is no shell (e.g. python3), run as `program -c SCRIPT` in a
    /// patched-shell session: it finds the wrapper in `EXEC_WRAPPER` and calls it itself.
    pub fn program_with_wrapper(name: &'static str, program: &str) -> Self {
        Self {
            name,
            shell: program.into(),
            args: Vec::new(),
            interception: Interception::PatchedShell { wrapper: wrapper() },
            process_substitution: false,
        }
    }

    fn patched(name: &'static str, shell: PathBuf, args: &[&str]) -> Self {
        Self {
            name,
            shell,
            args: args.iter().map(OsString::from).collect(),
            interception: Interception::PatchedShell { wrapper: wrapper() },
            process_substitution: true,
        }
    }

    fn shim(name: &'static str, shell: &str, args: &[&str], process_substitution: bool) -> Self {
        Self {
            name,
            shell: PathBuf::from(shell),
            args: args.iter().map(OsString::from).collect(),
            interception: Interception::Preload {
                shim: preload_shim(),
                wrapper: wrapper(),
            },
            process_substitution,
        }
    }
}

/// Makes one test module per setup, holding one `#[test]` per behaviour, so that a failure
/// names both (`escalation::shim_dash::set_e_stops_at_a_denied_command`):
///
/// ```ignore
/// per_setup! {
///     patched_zsh => &ShellSetup::patched_zsh(),
///     shim_dash => &ShellSetup::shim_dash();
///     [set_e_stops_at_a_denied_command, exit_codes_round_trip]
/// }
/// ```
///
/// Each behaviour is a function of the enclosing module taking the setup expression's value;
/// the expression is evaluated inside the generated module, which sees the enclosing
/// module's names.
macro_rules! per_setup {
    ($($module:ident => $setup:expr),+ $(,)? ; $tests:tt) => {
        $( $crate::support::setups::per_setup!(@module $module, $setup, $tests); )+
    };
    (@module $module:ident, $setup:expr, [$($test:ident),* $(,)?]) => {
        mod $module {
            use super::*;
            $( #[test] fn $test() { super::$test($setup) } )*
        }
    };
}
pub(crate) use per_setup;
