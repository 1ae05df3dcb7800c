//! No LOGIN7 password ever appears in any output: every lab capture (whose passwords the
//! manifest lists, because the lab chose them), every format, stdout and stderr.

use std::path::{Path, PathBuf};

use crate::util::tdsscope;

fn lab_captures() -> (Vec<PathBuf>, Vec<String>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let passwords: Vec<String> = manifest["passwords"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e != "json"))
        .collect();
    files.sort();
    (files, passwords)
}

#[test]
fn no_password_in_any_output() {
    let (files, passwords) = lab_captures();
    assert!(files.len() > 20, "lab captures missing");
    assert!(!passwords.is_empty());
    for format in ["text", "json"] {
        let out = tdsscope()
            .args(["analyze", "--quiet", "--format", format])
            .args(&files)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_lowercase();
        let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(stdout.len() > 1000, "{format}: no report");
        for p in &passwords {
            let p = p.to_lowercase();
            assert!(!stdout.contains(&p), "password {p} in {format} output");
            assert!(!stderr.contains(&p), "password {p} in {format} errors");
        }
        // The login the wrong password was tried for is reported, so the check above ran
        // over real login output.
        assert!(stdout.contains("labuser"), "{format}");
    }
}
