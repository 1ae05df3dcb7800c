//! Snapshots of the text report, the one a DBA reads: reviewed by eye when made, and any later
//! change to wording, order or layout shows up as a diff to review again
//! (`cargo insta review`, or `INSTA_UPDATE=always cargo test snapshots` and `git diff`).

use crate::util::tdsscope;

/// The text report of the given captures (paths relative to the project root), as a user sees
/// it in a pipe: no colour, the default width.
fn text_report(args: &[&str]) -> String {
    let out = tdsscope()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("COLUMNS")
        .env("NO_COLOR", "1")
        .arg("analyze")
        .arg("--quiet")
        .args(args)
        .output()
        .expect("run tdsscope");
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 report")
}

#[test]
fn demo_capture() {
    insta::assert_snapshot!(text_report(&["captures/demo-mixed.pcapng"]));
}

#[test]
fn login_timeout_with_verbose_timeline() {
    insta::assert_snapshot!(text_report(&["-v", "tests/captures/login-timeout.pcap"]));
}

#[test]
fn mass_reset_of_idle_connections() {
    insta::assert_snapshot!(text_report(&["tests/captures/mass-reset.pcap"]));
}

#[test]
fn certificate_rejected_without_sni() {
    insta::assert_snapshot!(text_report(&[
        "tests/captures/tls-cert-name-mismatch-tsql.pcap"
    ]));
}

#[test]
fn middlebox_reset_of_an_idle_connection() {
    insta::assert_snapshot!(text_report(&["tests/captures/middlebox-idle-kill.pcap"]));
}

#[test]
fn browser_and_dns_failures_in_a_mixed_capture() {
    insta::assert_snapshot!(text_report(&["tests/captures/mixed.pcapng"]));
}

/// Every shared public capture, the findings tdsscope reports on it, counted per code (on
/// connections, on exchanges and across the capture) with the outcomes: reviewed once by eye
/// against what each capture holds (its README), so that any change in what is found shows up.
#[test]
fn findings_on_every_shared_capture() {
    use std::collections::BTreeMap;
    use std::fmt::Write;
    let mut text = String::new();
    for path in crate::util::all_shared_captures() {
        let (report, code) = crate::util::analyze_json(&[&path]);
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        let mut add = |prefix: &str, findings: &serde_json::Value| {
            for f in findings.as_array().into_iter().flatten() {
                *counts
                    .entry(format!("{prefix}{}", f["code"].as_str().unwrap_or("?")))
                    .or_default() += 1;
            }
        };
        let connections = report["connections"].as_array().unwrap();
        let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
        for c in connections {
            add("", &c["findings"]);
            *outcomes
                .entry(c["outcome"].as_str().unwrap_or("?").to_string())
                .or_default() += 1;
        }
        for e in report["exchanges"].as_array().into_iter().flatten() {
            add("exchange ", &e["findings"]);
        }
        add("capture ", &report["findings"]);
        let sql = connections.iter().filter(|c| c["sql"] == true).count();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        writeln!(
            text,
            "{name}: exit {code}, {} connections ({sql} SQL), outcomes {outcomes:?}",
            connections.len()
        )
        .unwrap();
        for (k, n) in counts {
            writeln!(text, "    {n:>5}  {k}").unwrap();
        }
    }
    insta::assert_snapshot!(text);
}
