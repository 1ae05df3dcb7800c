//! The JSON report's schema: the committed `docs/report.schema.json` is what the Rust types
//! generate, and every report tdsscope writes validates against it.

use std::path::Path;

use crate::util::{all_shared_captures, tdsscope};

fn generated_schema() -> serde_json::Value {
    let out = tdsscope().arg("schema").output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn committed_schema_is_the_generated_one() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report.schema.json");
    let committed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(
        committed == generated_schema(),
        "docs/report.schema.json is stale: regenerate it with `tdsscope schema > docs/report.schema.json`"
    );
}

#[test]
fn every_report_validates_against_the_schema() {
    let schema = generated_schema();
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures");
    let mut files: Vec<_> = std::fs::read_dir(&lab)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e != "json"))
        .collect();
    files.extend(all_shared_captures());
    files.sort();
    let mut checked = 0;
    for f in &files {
        for verbose in [false, true] {
            let mut cmd = tdsscope();
            cmd.args(["analyze", "--quiet", "--format", "json"]);
            if verbose {
                cmd.arg("--verbose");
            }
            let out = cmd.arg(f).output().unwrap();
            let report: serde_json::Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", f.display()));
            let errors: Vec<String> = validator
                .iter_errors(&report)
                .take(5)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(errors.is_empty(), "{}: {errors:#?}", f.display());
            checked += 1;
        }
    }
    assert!(checked > 100, "{checked}");
}
