//! Reading `run --json` reports and the MCP tool's structured content (a summary that lists
//! only the denied and escalated execs) in tests.

use serde_json::Value;
use std::path::Path;

/// One exec as (program basename, decision, verdict, source).
pub type Verdict = (String, String, String, String);

/// Every exec of `report` as a [`Verdict`], sorted (pipelines decide in any order).
pub fn verdicts(report: &Value) -> Vec<Verdict> {
    let mut out: Vec<_> = report["execs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let program = e["program"].as_str().unwrap();
            (
                Path::new(program)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                e["decision"].as_str().unwrap().to_owned(),
                e["verdict"].as_str().unwrap().to_owned(),
                e["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The execs an MCP summary lists (`denied`, then `escalated`) as [`Verdict`]s, sorted;
/// execs run in the sandbox are only counted there.
pub fn listed_verdicts(summary: &Value) -> Vec<Verdict> {
    let mut out = Vec::new();
    for (list, verdict) in [("denied", "deny"), ("escalated", "escalate")] {
        for exec in summary[list].as_array().unwrap() {
            let command = exec["command"].as_str().unwrap();
            let program = command.split(' ').next().unwrap();
            out.push(v(
                &Path::new(program).file_name().unwrap().to_string_lossy(),
                exec["decision"].as_str().unwrap(),
                verdict,
                exec["source"].as_str().unwrap(),
            ));
        }
    }
    out.sort();
    out
}

/// A [`Verdict`] from string slices.
pub fn v(name: &str, decision: &str, verdict: &str, source: &str) -> Verdict {
    (name.into(), decision.into(), verdict.into(), source.into())
}
