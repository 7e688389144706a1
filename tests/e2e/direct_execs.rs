//! Every session decides children of non-shell programs (issue 12, finding 7): the sandbox
//! traps every `execve`/`execveat`, and the ones that did not come through the session's
//! shell or shim are asked of the policy, which can let them run inside or deny them, never
//! escalate them. Each exec is still decided (and recorded) once.

use crate::support::dirs::Workspace;
use crate::support::report::{v, verdicts};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

const RULES: &str = r#"
prefix_rule(pattern = ["rm", "-rf"], decision = "forbidden", justification = "no recursive deletes")
prefix_rule(pattern = ["touch"], decision = "allow", justification = "touch may write outside")
"#;

/// Every shell setup `execgate run --shell` offers: patched zsh and bash (the wrapper),
/// Debian's dash, bash and zsh with the shim.
const SHELLS: [&str; 5] = ["zsh", "bash", "sh", "/bin/bash", "/usr/bin/zsh"];
const BACKENDS: [&str; 2] = ["bubblewrap", "landlock"];

/// A workspace under the target directory (so the rules file beside it is outside every
/// writable root, as Landlock requires), with the rules and a static program that execs
/// its arguments.
struct Env {
    ws: Workspace,
    rules: PathBuf,
    static_exec: PathBuf,
}

impl Env {
    fn new() -> Self {
        let ws = Workspace::outside_temp();
        let rules = ws.root().join("rules.rules");
        std::fs::write(&rules, RULES).unwrap();
        let source = ws.root().join("static_exec.c");
        std::fs::write(
            &source,
            "#include <unistd.h>\nint main(int c, char **v) { execv(v[1], v + 1); return 127; }\n",
        )
        .unwrap();
        let static_exec = ws.root().join("static_exec");
        let built = Command::new("cc")
            .arg("-static")
            .arg("-o")
            .arg(&static_exec)
            .arg(&source)
            .output()
            .unwrap();
        assert!(built.status.success(), "cc -static: {built:?}");
        Self {
            ws,
            rules,
            static_exec,
        }
    }

    /// `execgate run --json` of `script` with `shell` on `backend`.
    fn run(&self, backend: &str, shell: &str, script: &str) -> Value {
        let out = self
            .ws
            .execgate_session(&[
                "run",
                "--json",
                "--shell",
                shell,
                "--rules",
                self.rules.to_str().unwrap(),
                script,
            ])
            .env("EXECGATE_SANDBOX_BACKEND", backend)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{backend} {shell}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

fn denied_rm(victim: &str) -> String {
    format!("execgate: denied: /usr/bin/rm -rf {victim}: no recursive deletes\n")
}

#[test]
fn forbidden_commands_run_by_non_shell_programs_are_denied_in_every_setup() {
    let env = Env::new();
    let victims = [
        "v-env",
        "v-xargs",
        "v-python",
        "v-fexecve",
        "v-preload",
        "v-unset",
        "v-static",
    ];
    for backend in BACKENDS {
        for shell in SHELLS {
            for victim in victims {
                std::fs::write(env.ws.work.join(victim), "keep").unwrap();
            }
            let script = format!(
                "env rm -rf v-env\n\
                 echo v-xargs | xargs rm -rf\n\
                 /usr/bin/python3 -c 'import os; os.system(\"rm -rf v-python\")'\n\
                 /usr/bin/python3 -c 'import os, sys\ntry: os.execve(os.open(\"/usr/bin/rm\", os.O_RDONLY), [\"rm\", \"-rf\", \"v-fexecve\"], os.environ)\nexcept OSError: sys.exit(126)'\n\
                 env -u LD_PRELOAD rm -rf v-preload\n\
                 {static} /usr/bin/rm -rf v-static\n\
                 unset EXEC_WRAPPER; rm -rf v-unset\n\
                 echo done",
                static = env.static_exec.display()
            );
            let report = env.run(backend, shell, &script);
            let what = format!("{backend} {shell}: {report}");
            assert_eq!(report["stdout"], "done\n", "{what}");
            for victim in victims {
                assert!(
                    env.ws.work.join(victim).exists(),
                    "{victim} deleted: {what}"
                );
            }
            let stderr = report["stderr"].as_str().unwrap();
            for victim in victims {
                let line = denied_rm(victim);
                // Once each: a denial is neither asked nor reported twice, even where
                // `execvp` goes on to `/bin/rm` (the same file) after the first refusal.
                assert_eq!(stderr.matches(&line).count(), 1, "{victim}: {what}");
            }
            let denied: Vec<_> = verdicts(&report)
                .into_iter()
                .filter(|(_, _, verdict, _)| verdict == "deny")
                .collect();
            assert_eq!(
                denied,
                vec![v("rm", "forbidden", "deny", "policy"); victims.len()],
                "{what}"
            );
        }
    }
}

#[test]
fn a_direct_exec_that_would_escalate_is_denied_without_asking_and_stays_inside() {
    let env = Env::new();
    let marker = env.ws.root().join("outside-marker");
    for backend in BACKENDS {
        for shell in SHELLS {
            // A static program (no shim in it even in a shim session, where a dynamic
            // one's exec would go through the shim, which can carry out an escalation).
            let script = format!(
                "{} /usr/bin/touch {}; echo \"status $?\"",
                env.static_exec.display(),
                marker.display()
            );
            let report = env.run(backend, shell, &script);
            let what = format!("{backend} {shell}: {report}");
            assert!(!marker.exists(), "{what}");
            let line = format!(
                "execgate: denied: /usr/bin/touch {}: needs to run outside the sandbox, but \
                 {} executed it directly, not through the session's shell; run it from the \
                 shell\n",
                marker.display(),
                env.static_exec.display()
            );
            let stderr = report["stderr"].as_str().unwrap();
            assert_eq!(stderr.matches(&line).count(), 1, "{what}");
            assert_eq!(report["stdout"], "status 127\n", "{what}");
            let touch: Vec<_> = verdicts(&report)
                .into_iter()
                .filter(|(name, ..)| name == "touch")
                .collect();
            assert_eq!(touch, [v("touch", "allow", "deny", "policy")], "{what}");
        }
    }
}

#[test]
fn an_exec_decided_through_the_wrapper_or_the_shim_is_decided_and_recorded_once() {
    let env = Env::new();
    for backend in BACKENDS {
        for shell in SHELLS {
            let report = env.run(backend, shell, "/bin/echo once; /bin/echo twice");
            let what = format!("{backend} {shell}: {report}");
            assert_eq!(report["stdout"], "once\ntwice\n", "{what}");
            let echoes: Vec<_> = verdicts(&report)
                .into_iter()
                .filter(|(name, ..)| name == "echo")
                .collect();
            assert_eq!(
                echoes,
                vec![v("echo", "unmatched", "run", "policy"); 2],
                "{what}"
            );
        }
    }
}

#[test]
fn an_exec_of_a_missing_program_fails_as_the_kernel_would_and_is_not_recorded() {
    let env = Env::new();
    for backend in BACKENDS {
        let script = "/usr/bin/python3 -c 'import os\ntry:\n  os.execv(\"/nonexistent/x\", [\"x\"])\nexcept OSError as e:\n  print(e.errno)'";
        let report = env.run(backend, "zsh", script);
        let what = format!("{backend}: {report}");
        assert_eq!(report["stdout"], format!("{}\n", libc::ENOENT), "{what}");
        assert!(
            !verdicts(&report).iter().any(|(name, ..)| name == "x"),
            "{what}"
        );
    }
}
