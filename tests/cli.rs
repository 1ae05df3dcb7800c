//! What a user sees at the command line: help, version, errors, exit codes, chained inputs.

use std::io::Write;

use crate::util::{analyze_json, shared_capture, tdsscope};

#[test]
fn help_shows_examples_and_exit_codes() {
    let out = tdsscope().args(["analyze", "--help"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Examples:"), "{text}");
    assert!(text.contains("--format"), "{text}");
    assert!(text.contains("Exit status"), "{text}");
}

#[test]
fn version_names_the_program() {
    let out = tdsscope().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("tdsscope "));
}

#[test]
fn missing_file_is_one_line_naming_it_and_exit_2() {
    let out = tdsscope()
        .args(["analyze", "--quiet", "/no/such/capture.pcap"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/no/such/capture.pcap"), "{err}");
    assert!(err.contains("No such file"), "{err}");
}

#[test]
fn unknown_format_is_one_line_and_exit_2() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
        .unwrap();
    let out = tdsscope()
        .args(["analyze", "--quiet"])
        .arg(f.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not a capture file"), "{err}");
}

#[test]
fn unreadable_input_still_reports_the_good_ones() {
    let good = shared_capture("tds7-login-loginack_arkime_tds7.pcap");
    let out = tdsscope()
        .args(["analyze", "--quiet", "--format", "json", "/no/such.pcap"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["connections"].as_array().unwrap().len(), 1);
    assert_eq!(report["inputs"][0]["frames"], 13);
    assert!(report["inputs"][1]["error"]
        .as_str()
        .unwrap()
        .contains("/no/such.pcap"));
}

#[test]
fn truncated_file_reports_what_was_read_and_a_malformed_finding() {
    let src = std::fs::read(shared_capture("tds7-login-loginack_arkime_tds7.pcap")).unwrap();
    // Cut in the middle of the last frame: 12 frames survive whole.
    let cut = &src[..src.len() - 30];
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(cut).unwrap();
    let (report, code) = analyze_json(&[f.path()]);
    assert_ne!(code, 2, "damage part-way is reported, not a usage error");
    assert_eq!(report["inputs"][0]["frames"], 12);
    let malformed: Vec<_> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "capture.malformed")
        .collect();
    assert_eq!(malformed.len(), 1, "{report:#}");
    assert_eq!(malformed[0]["detail"]["input"], 0);
    assert!(malformed[0]["detail"]["offset"].as_u64().unwrap() > 24);
    assert_eq!(report["connections"].as_array().unwrap().len(), 1);
}

#[test]
fn several_files_are_one_capture_in_time_order() {
    // Given newest first, the 2006 login capture still becomes input 0.
    let newer = shared_capture("tcp1433-syn-unanswered-pcapng_chrissanders_synscan.pcapng");
    let older = shared_capture("tds7-login-loginack_arkime_tds7.pcap");
    let (report, _) = analyze_json(&[&newer, &older]);
    let inputs = report["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 2);
    assert!(inputs[0]["path"]
        .as_str()
        .unwrap()
        .ends_with("tds7-login-loginack_arkime_tds7.pcap"));
    assert_eq!(inputs[1]["format"], "pcapng");
    let login = report["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["server"] == "217.77.3.25:1433")
        .expect("the login connection");
    assert_eq!(login["first"]["input"], 0);
    assert_eq!(login["first"]["frame"], 1);
    let synscan_first = report["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["first"]["input"] == 1)
        .map(|c| c["first"]["frame"].as_u64().unwrap())
        .min()
        .unwrap();
    assert_eq!(synscan_first, 1, "frame numbers restart in each file");
}

#[test]
fn text_report_has_one_line_per_connection() {
    let file = shared_capture("tds7-login-loginack_arkime_tds7.pcap");
    let out = tdsscope()
        .args(["analyze", "--quiet"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with('#'))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    let line = lines[0];
    assert!(
        line.contains("217.77.3.70:1040 -> 217.77.3.25:1433"),
        "{line}"
    );
    assert!(line.contains("FIN by"), "{line}");
    assert!(text.contains("1 TCP connection: 1 ok"), "{text}");
}

#[test]
fn two_runs_write_the_same_report() {
    // Reading and reporting run on two threads; the report must not depend on their timing.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    files.sort();
    let run = || {
        tdsscope()
            .args(["analyze", "--quiet", "--format", "json"])
            .args(&files)
            .output()
            .unwrap()
            .stdout
    };
    let first = run();
    assert!(first.len() > 10_000);
    for _ in 0..3 {
        assert!(run() == first, "reports differ between runs");
    }
}

#[test]
fn text_report_groups_problems_by_server_and_sums_up() {
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/demo-mixed.pcapng");
    let out = tdsscope()
        .args(["analyze", "--quiet"])
        .arg(&demo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "error findings give exit 1");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.contains('\u{1b}'),
        "no colour codes when stdout is not a terminal"
    );
    let header = text.lines().next().unwrap();
    assert!(
        header.starts_with("tdsscope: 1 input, 116 frames"),
        "{header}"
    );
    assert!(
        text.contains("198.51.100.20:1433  found by tds, port; version 16.0.1000"),
        "{text}"
    );
    let problems = text
        .find("Connections with problems")
        .expect("problem section");
    let group = text
        .find("== 198.51.100.20:1433")
        .expect("grouped by server");
    let summary = text.find("\nSummary").expect("summary section");
    assert!(problems < group && group < summary);
    assert!(
        text.contains("login.failed Login for 'labuser' failed with error 18456 state 8"),
        "{text}"
    );
    assert!(text.contains("next: "), "next steps are shown");
    assert!(
        text.contains("8 TCP connections: 1 idle_killed, 2 login_failed, 1 no_answer, 2 ok, 1 refused, 1 reset"),
        "{text}"
    );
    // Forcing colour colours it.
    let out = tdsscope()
        .env("CLICOLOR_FORCE", "1")
        .env_remove("NO_COLOR")
        .args(["analyze", "--quiet"])
        .arg(&demo)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains('\u{1b}'));
}

#[test]
fn verbose_adds_each_connections_timeline() {
    let f = crate::util::shared_capture("tds7-login-loginack_arkime_tds7.pcap");
    let out = tdsscope()
        .args(["analyze", "--quiet", "--verbose"])
        .arg(&f)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let timeline: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("timeline:"))
        .skip(1)
        .take(8)
        .collect();
    assert!(timeline[0].contains("frame      1  client  SYN"), "{text}");
    assert!(
        timeline
            .iter()
            .any(|l| l.contains("PRELOGIN, encryption off")),
        "{timeline:#?}"
    );
    assert!(
        timeline
            .iter()
            .any(|l| l.contains("LOGIN7 (sql authentication, user testuser")),
        "{timeline:#?}"
    );
    assert!(
        timeline
            .iter()
            .any(|l| l.contains("LOGINACK, Microsoft SQL Server 8.0.2039")),
        "{timeline:#?}"
    );
    let (report, _) = crate::util::analyze_json(&[&f]);
    assert!(
        report["connections"][0].get("timeline").is_none(),
        "only with --verbose"
    );
}

#[test]
fn server_hints_make_connections_sql() {
    // Oracle TNS on 1521: not SQL Server, unless the user says that endpoint is one.
    let f = crate::util::shared_capture("pcap-bigendian-tcp_wswiki_TNS_Oracle2.pcap");
    let (plain, _) = crate::util::analyze_json(&[&f]);
    let server = plain["connections"][0]["server"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(plain["connections"][0]["sql"], false);
    assert!(plain["servers"].as_array().unwrap().is_empty());
    let out = tdsscope()
        .args([
            "analyze", "--quiet", "--format", "json", "--server", &server,
        ])
        .arg(&f)
        .output()
        .unwrap();
    let hinted: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(hinted["connections"][0]["sql"], true);
    assert_eq!(
        hinted["servers"][0]["found_by"],
        serde_json::json!(["hint"])
    );
    let bad = tdsscope()
        .args(["analyze", "--server", "db01", "x.pcap"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not an IP address"));
}

#[test]
fn fuzz_found_capture_is_analysed_without_a_panic() {
    // Found by the `pipeline` fuzz target (a TLS record header held past 5 bytes while
    // resynchronising TDS); kept as a regression.
    let f = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/regression/fuzz-pipeline-tls-header-held.bin");
    let out = tdsscope()
        .args(["analyze", "--quiet", "--format", "json"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(matches!(out.status.code(), Some(0..=2)), "{:?}", out.status);
    let _: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a report");
}
