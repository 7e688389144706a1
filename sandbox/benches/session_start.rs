//! What a sandboxed session costs to start: `sh -c true` bare, under bubblewrap and under
//! Landlock, plus the one-time `Sandbox::prepare` (which starts one probe process).
//!
//! Run: `cargo bench -p execgate-sandbox --bench session_start [-- ITERATIONS]`.
//! Prints minimum, median, mean and 95th percentile wall time per start, in milliseconds.

use execgate_sandbox::{BackendChoice, Sandbox, SandboxMode, SandboxPolicy};
use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let iterations: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().expect("temporary workspace");
    let mut policy = SandboxPolicy::new(SandboxMode::WorkspaceWrite, dir.path());
    policy.tmpdir = None;
    policy.init = env!("CARGO_BIN_EXE_execgate-sandbox-init").into();
    let sh = Path::new("/bin/sh");
    let args: Vec<OsString> = vec!["-c".into(), "true".into()];

    println!("{iterations} iterations, workspace-write, network off");
    report("bare sh -c true", iterations, || {
        run(Command::new(sh).args(&args));
    });
    for (name, choice) in [
        ("bubblewrap", BackendChoice::Bubblewrap),
        ("landlock", BackendChoice::Landlock),
    ] {
        let sandbox = match Sandbox::prepare(&policy, choice) {
            Ok(s) => s,
            Err(e) => {
                println!("{name}: unavailable: {e}");
                continue;
            }
        };
        report(&format!("{name} sh -c true"), iterations, || {
            let launch = sandbox.command(sh, &args).expect("command");
            let mut supervisor = launch.supervisor.expect("a supervisor");
            let mut cmd = launch.command;
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn");
            supervisor.start().expect("supervisor");
            let status = child.wait().expect("wait");
            assert!(status.success(), "{status}");
        });
        report(
            &format!("{name} Sandbox::prepare"),
            iterations / 4 + 1,
            || {
                Sandbox::prepare(&policy, choice).expect("prepare");
            },
        );
    }
}

fn run(cmd: &mut Command) {
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("spawn");
    assert!(status.success(), "{status}");
}

fn report(name: &str, iterations: usize, mut f: impl FnMut()) {
    f(); // warm up caches
    let mut samples: Vec<Duration> = (0..iterations)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = samples.iter().map(|d| ms(*d)).sum::<f64>() / samples.len() as f64;
    let min = ms(samples[0]);
    let median = ms(samples[samples.len() / 2]);
    let p95 = ms(samples[(samples.len() * 95 / 100).min(samples.len() - 1)]);
    println!(
        "{name:<32} min {min:6.2} ms  median {median:6.2} ms  mean {mean:6.2} ms  p95 {p95:6.2} ms"
    );
}
