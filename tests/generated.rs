//! Captures generated with real programs (tests/cases/): tshark cross-checks, and the same
//! results from pcapng and NetMon 2.x copies of each.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::tshark::compare;
use crate::util::{analyze_json, tshark_or_skip};

fn generated_captures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut out = Vec::new();
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "pcap") {
                out.push(f);
            }
        }
    }
    // The scenario lab's captures (real SQL clients against the lab's server).
    let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures");
    for f in std::fs::read_dir(&lab).unwrap() {
        let f = f.unwrap().path();
        // The deliberately cut file is a reader test (tests/cli.rs), not a TCP one.
        if f.extension().is_some_and(|e| e == "pcap") && !f.ends_with("truncated-file.pcap") {
            out.push(f);
        }
    }
    out.sort();
    assert!(
        out.len() > 40,
        "generated captures missing under {} and {}",
        root.display(),
        lab.display()
    );
    out
}

fn editcap(src: &Path, format: &str, dir: &Path) -> PathBuf {
    let dst = dir.join(format!(
        "{}.{format}",
        src.file_stem().unwrap().to_string_lossy()
    ));
    let out = Command::new("editcap")
        .args(["-F", format])
        .arg(src)
        .arg(&dst)
        .output()
        .expect("run editcap");
    assert!(
        out.status.success(),
        "editcap -F {format}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dst
}

/// The report with what legitimately differs between copies removed: paths, formats, sizes,
/// and the snaplen (NetMon files do not record one).
fn comparable(mut report: Value) -> Value {
    for input in report["inputs"].as_array_mut().unwrap() {
        let o = input.as_object_mut().unwrap();
        for k in ["path", "format", "bytes", "snaplen"] {
            o.remove(k);
        }
    }
    for f in report["findings"].as_array_mut().unwrap() {
        if f["code"] == "capture.truncated_frames" {
            let o = f.as_object_mut().unwrap();
            o.remove("summary");
            o["detail"].as_object_mut().unwrap().remove("snaplen");
        }
    }
    report
}

#[test]
fn generated_captures_match_tshark() {
    if !tshark_or_skip("generated_captures_match_tshark") {
        return;
    }
    let mut diffs = Vec::new();
    for f in generated_captures() {
        diffs.extend(compare(&f));
    }
    assert!(
        diffs.is_empty(),
        "differences from tshark:\n{}",
        diffs.join("\n")
    );
}

#[test]
fn pcapng_and_netmon_copies_give_the_same_report() {
    if !tshark_or_skip("pcapng_and_netmon_copies_give_the_same_report") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    for original in generated_captures() {
        let (base, _) = analyze_json(&[&original]);
        let base = comparable(base);
        for format in ["pcapng", "netmon2"] {
            let copy = editcap(&original, format, tmp.path());
            let (report, _) = analyze_json(&[&copy]);
            assert_eq!(
                report["inputs"][0]["format"],
                if format == "pcapng" {
                    "pcapng"
                } else {
                    "netmon2"
                }
            );
            assert_eq!(
                comparable(report),
                base,
                "{} as {format} differs from the pcap original",
                original.display()
            );
        }
    }
}

#[test]
fn tcp_cases_show_what_the_lab_did() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/tcp");
    let (report, code) = analyze_json(&[&dir.join("refused-reset-fin.pcap")]);
    assert_eq!(code, 1, "a refused connection is an error finding");
    let conns = report["connections"].as_array().unwrap();
    let mut by_id: Vec<&Value> = conns.iter().collect();
    by_id.sort_by_key(|c| c["id"].as_u64());
    let outcomes: Vec<&str> = by_id
        .iter()
        .map(|c| c["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["refused", "reset", "ok"]);
    assert_eq!(by_id[0]["findings"][0]["code"], "tcp.refused");
    assert_eq!(by_id[1]["ended_by"]["how"], "rst");
    assert_eq!(by_id[1]["ended_by"]["by"], "server");
    assert_eq!(
        by_id[2]["ended_by"]["by"], "server",
        "the server sent the first FIN"
    );

    let (report, _) = analyze_json(&[&dir.join("zero-window.pcap")]);
    let conn = &report["connections"][0];
    let zw: Vec<&Value> = conn["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "tcp.zero_window")
        .collect();
    assert_eq!(zw.len(), 1, "{conn:#}");
    assert_eq!(zw[0]["detail"]["side"], "server");
    assert!(
        zw[0]["detail"]["duration_s"].as_f64().unwrap() > 1.0,
        "{:#}",
        zw[0]
    );

    let (report, _) = analyze_json(&[&dir.join("loss.pcap")]);
    let conn = &report["connections"][0];
    assert!(
        conn["stats"]["retransmissions"].as_u64().unwrap() > 5,
        "{conn:#}"
    );
    assert!(report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["code"] == "capture.truncated_frames"));
}

#[test]
fn duplicates_are_not_retransmissions() {
    // Captured on two interfaces: every packet twice. tshark calls the copies
    // retransmissions; they are a capture artefact.
    let f =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures/duplicates-two-interfaces.pcap");
    let (report, _) = analyze_json(&[&f]);
    let conn = &report["connections"][0];
    assert_eq!(conn["stats"]["retransmissions"], 0, "{conn:#}");
    assert!(
        conn["stats"]["duplicates"].as_u64().unwrap() >= 10,
        "{conn:#}"
    );
    let codes: Vec<&str> = conn["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"capture.duplicates"), "{codes:?}");
    assert!(!codes.contains(&"tcp.retransmissions"), "{codes:?}");
    let copies = &conn["tcp"]["to_server"]["duplicate_copy_flags"]["retransmission"];
    assert!(
        copies.as_u64().unwrap() > 0,
        "tshark's view is kept for comparison"
    );
}
