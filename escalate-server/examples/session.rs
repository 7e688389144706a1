//! Runs one intercepted shell session with a fixed verdict for every exec; used by
//! `benches/interception.sh`.
//!
//! Usage: `session run|escalate WRAPPER [--shim SO] -- SHELL [ARG...]`
//! Exits with the shell's status.

use execgate_escalate_server::{
    async_trait, EscalationPolicy, ExecContext, Interception, Ruling, SessionBuilder, Verdict,
};
use std::path::PathBuf;
use std::sync::Arc;

struct Fixed(Verdict);

#[async_trait]
impl EscalationPolicy for Fixed {
    type Note = ();

    async fn decide(&self, _exec: &ExecContext) -> Ruling {
        self.0.clone().into()
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let usage = "usage: session run|escalate WRAPPER [--shim SO] -- SHELL [ARG...]";
    let verdict = match args.next().and_then(|a| a.into_string().ok()).as_deref() {
        Some("run") => Verdict::Run,
        Some("escalate") => Verdict::Escalate,
        _ => anyhow::bail!(usage),
    };
    let wrapper = PathBuf::from(args.next().ok_or_else(|| anyhow::anyhow!(usage))?);
    let mut shim = None;
    loop {
        match args.next() {
            Some(a) if a == "--shim" => {
                shim = Some(PathBuf::from(
                    args.next().ok_or_else(|| anyhow::anyhow!(usage))?,
                ))
            }
            Some(a) if a == "--" => break,
            _ => anyhow::bail!(usage),
        }
    }
    let shell = args.next().ok_or_else(|| anyhow::anyhow!(usage))?;
    let interception = match shim {
        Some(shim) => Interception::Preload { shim, wrapper },
        None => Interception::PatchedShell { wrapper },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let status = runtime.block_on(async {
        // As `execgate run` does: the server trusts invoked names outside writable folders
        // (here the temporary directory), which costs a walk per new program path.
        let tmp = std::env::temp_dir();
        let mut session = SessionBuilder::new(shell, interception)
            .args(args)
            .writable_paths(Arc::new(move |p: &std::path::Path| p.starts_with(&tmp)))
            .spawn(Arc::new(Fixed(verdict)))?;
        anyhow::Ok(session.wait().await?)
    })?;
    std::process::exit(status.code().unwrap_or(1))
}
