//! Reading `run --json` reports (also the MCP tool's structured content) in tests.

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

/// A [`Verdict`] from string slices.
pub fn v(name: &str, decision: &str, verdict: &str, source: &str) -> Verdict {
    (name.into(), decision.into(), verdict.into(), source.into())
}
