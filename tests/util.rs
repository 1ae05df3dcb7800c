//! Helpers shared by the integration tests: where captures are, how to run tdsscope and tshark.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The directory of the project's shared public captures (`../shared/captures` from the
/// project root; CI has it there too).
pub fn shared_captures() -> PathBuf {
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/captures");
    if beside.is_dir() {
        return beside;
    }
    PathBuf::from("/work/shared/captures")
}

pub fn shared_capture(name: &str) -> PathBuf {
    let p = shared_captures().join(name);
    assert!(p.is_file(), "missing shared capture {}", p.display());
    p
}

/// Every file in the shared captures directory except its README, sorted by name.
pub fn all_shared_captures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(shared_captures())
        .expect("shared captures directory")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e != "md"))
        .collect();
    v.sort();
    v
}

pub fn tdsscope() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tdsscope"))
}

/// Runs `tdsscope analyze --quiet --format json ARGS…` and returns (report, exit code).
pub fn analyze_json(args: &[&Path]) -> (Value, i32) {
    let out = tdsscope()
        .arg("analyze")
        .arg("--quiet")
        .arg("--format")
        .arg("json")
        .args(args)
        .output()
        .expect("run tdsscope");
    let text = String::from_utf8(out.stdout).expect("utf-8 report");
    let report: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("report is not JSON ({e}):\n{text}"));
    (report, out.status.code().unwrap_or(-1))
}

pub fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// True when tshark is usable; otherwise says why the calling test skips its oracle part.
/// CI installs tshark (scripts/test), so there a missing tshark fails instead of skipping.
pub fn tshark_or_skip(test: &str) -> bool {
    if have("tshark") {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: tshark is required in CI (scripts/test installs it)");
    }
    eprintln!("{test}: tshark not installed, skipping the tshark cross-check");
    false
}

/// `tshark -r FILE -T fields -E separator=/t -E occurrence=f -e F1 -e F2 …` → rows of fields.
pub fn tshark_fields(file: &Path, extra: &[&str], fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(file).args(extra);
    cmd.args(["-T", "fields", "-E", "separator=/t", "-E", "occurrence=f"]);
    for f in fields {
        cmd.arg("-e").arg(f);
    }
    let out = cmd.output().expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed on {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// tshark rows keyed by frame number, every occurrence of a field joined by ','; `extra` goes
/// before the display filter (e.g. `-d tcp.port==1433,tds`).
pub fn tshark_by_frame(
    extra: &[&str],
    file: &Path,
    filter: &str,
    fields: &[&str],
) -> std::collections::BTreeMap<u64, Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(file).args(extra);
    cmd.args([
        "-Y",
        filter,
        "-T",
        "fields",
        "-E",
        "separator=/t",
        "-E",
        "occurrence=a",
    ]);
    cmd.args(["-E", "aggregator=,", "-e", "frame.number"]);
    for f in fields {
        cmd.arg("-e").arg(f);
    }
    let out = cmd.output().expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed on {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let mut row: Vec<String> = l.split('\t').map(str::to_string).collect();
            row.resize(fields.len() + 1, String::new());
            let no = row.remove(0).parse().unwrap();
            (no, row)
        })
        .collect()
}

/// A field of [`tshark_by_frame`] split back into its occurrences.
pub fn tshark_list(field: &str) -> Vec<String> {
    if field.is_empty() {
        Vec::new()
    } else {
        field.split(',').map(str::to_string).collect()
    }
}
