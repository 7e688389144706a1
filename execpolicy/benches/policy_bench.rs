//! Throughput of loading and checking a 10,000-rule policy (plain `harness = false` bench).
//!
//! Run with `cargo bench -p execgate-execpolicy --bench policy_bench`. Prints the load time of
//! a generated 10,000-rule file and single-core checks per second for a mix of hits and misses.

use std::hint::black_box;
use std::time::{Duration, Instant};

use execgate_execpolicy::{CheckOptions, Policy};

const PROGRAMS: usize = 500;
const RULES_PER_PROGRAM: usize = 20;
const DECISIONS: [&str; 3] = ["allow", "prompt", "forbidden"];

/// 500 programs x 20 rules: 2-4 token patterns, some alternatives, a quarter with examples.
fn rules_text() -> String {
    let mut text = String::with_capacity(2 << 20);
    text.push_str("# generated benchmark policy\n");
    for p in 0..PROGRAMS {
        for r in 0..RULES_PER_PROGRAM {
            let decision = DECISIONS[(p + r) % 3];
            let pattern = match r % 4 {
                0 => format!("[\"prog{p}\", \"sub{r}\"]"),
                1 => format!("[\"prog{p}\", [\"sub{r}\", \"alias{r}\"], \"--flag\"]"),
                2 => format!("[\"prog{p}\", \"sub{r}\", \"--opt\", \"value{r}\"]"),
                _ => format!("[\"prog{p}\", \"sub{r}\", [\"-a\", \"-b\", \"-c\"]]"),
            };
            if r % 4 == 0 {
                text.push_str(&format!(
                    "prefix_rule(pattern = {pattern}, decision = \"{decision}\", justification = \"rule {p}/{r}\", match = [\"prog{p} sub{r} x\"], not_match = [\"prog{p} other\"])\n"
                ));
            } else {
                text.push_str(&format!(
                    "prefix_rule(pattern = {pattern}, decision = \"{decision}\")\n"
                ));
            }
        }
    }
    text
}

/// Commands of 3-8 tokens: about half match one or more rules, half match none.
fn commands() -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for i in 0..1000usize {
        let p = (i * 7919) % PROGRAMS;
        let r = (i * 31) % RULES_PER_PROGRAM;
        let cmd = match i % 6 {
            0 => format!("prog{p} sub{r} file.txt --verbose"),
            1 => format!("prog{p} alias{r} --flag a b c d"),
            2 => format!("prog{p} sub{r} --opt value{r} --x y"),
            3 => format!("unknown{i} sub{r} --flag"),
            4 => format!("prog{p} nosuch{r} --opt value a b"),
            _ => format!("/usr/bin/prog{p} sub{r} -a more args here"),
        };
        out.push(cmd.split(' ').map(str::to_owned).collect());
    }
    out
}

fn main() {
    let text = rules_text();
    let dir = std::env::temp_dir().join(format!("execgate-bench-{}", std::process::id()));
    if let Err(err) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {err}", dir.display());
        std::process::exit(1);
    }
    let path = dir.join("bench.rules");
    if let Err(err) = std::fs::write(&path, &text) {
        eprintln!("cannot write {}: {err}", path.display());
        std::process::exit(1);
    }

    let mut best_load = Duration::MAX;
    let mut policy = Policy::empty();
    for _ in 0..5 {
        let start = Instant::now();
        policy = match Policy::from_files(&[&path]) {
            Ok(policy) => policy,
            Err(err) => {
                eprintln!("benchmark rules failed to load: {err}");
                std::process::exit(1);
            }
        };
        best_load = best_load.min(start.elapsed());
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "load: {} rules ({} KiB) in {:.1} ms (best of 5)",
        policy.rules().len(),
        text.len() / 1024,
        best_load.as_secs_f64() * 1000.0
    );

    let commands = commands();
    for (label, options) in [
        ("literal", CheckOptions::default()),
        (
            "resolve-host-executables",
            CheckOptions {
                resolve_host_executables: true,
            },
        ),
    ] {
        let hits = commands
            .iter()
            .filter(|c| policy.check(c, &options).decision.is_some())
            .count();
        let rounds = 2000;
        let start = Instant::now();
        let mut matched = 0usize;
        for _ in 0..rounds {
            for command in &commands {
                matched += black_box(policy.check(black_box(command), &options))
                    .matched
                    .len();
            }
        }
        let elapsed = start.elapsed();
        let evaluations = rounds * commands.len();
        println!(
            "check ({label}): {:.2} M evaluations/s on one core ({} commands, {hits} hit / {} miss, {} matches per round)",
            evaluations as f64 / elapsed.as_secs_f64() / 1e6,
            commands.len(),
            commands.len() - hits,
            matched / rounds
        );
    }
}
