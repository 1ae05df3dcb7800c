//! MARS (SMP, [MC-SMP]) on the lab's captures of pyodbc over FreeTDS ODBC with
//! MARS_Connection=Yes: the SMP sessions, the requests and attentions of each, checked against
//! tshark 4.0's SMP dissector (Wireshark hands TDS payloads starting with 0x53 to its `smp`
//! dissector, which decodes the header and passes DATA payloads back to TDS) and against what
//! the lab's client did (tests/lab/clients/odbc_mars_client.py).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::util::{analyze_json, tdsscope, tshark_or_skip};

const CLIENT_IP: &str = "192.0.2.10";

fn capture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/captures")
        .join(name)
}

/// What tshark says about each SMP session: SYN frames, DATA packets per direction, requests,
/// attentions, DONE(ATTN) frames.
#[derive(Debug, Default, PartialEq)]
struct SessionOracle {
    syn: Vec<u64>,
    data_to_server: u64,
    data_to_client: u64,
    acks: u64,
    requests: u64,
    attentions: u64,
    attn_acks: u64,
}

fn all_fields(file: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(file);
    cmd.args(["-d", "tcp.port==1433,tds", "-Y", filter]);
    cmd.args(["-T", "fields", "-E", "separator=/t", "-E", "occurrence=a"]);
    cmd.args(["-E", "aggregator=,"]);
    for f in fields {
        cmd.arg("-e").arg(f);
    }
    let out = cmd.output().expect("run tshark");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

fn list(s: &str) -> Vec<&str> {
    s.split(',').filter(|x| !x.is_empty()).collect()
}

fn oracle(file: &Path) -> BTreeMap<u16, SessionOracle> {
    let mut m: BTreeMap<u16, SessionOracle> = BTreeMap::new();
    let rows = all_fields(
        file,
        "smp",
        &["frame.number", "ip.src", "smp.flags", "smp.sid", "tds.type"],
    );
    for r in rows {
        let frame: u64 = r[0].parse().unwrap();
        let from_client = r[1] == CLIENT_IP;
        let flags = list(&r[2]);
        let sids = list(&r[3]);
        let types = list(&r[4]);
        assert_eq!(flags.len(), sids.len(), "frame {frame}");
        // Each DATA packet carries one TDS packet: the n-th DATA goes with the n-th tds.type.
        let mut types = types.into_iter();
        for (flag, sid) in flags.iter().zip(&sids) {
            let sid: u16 = sid.parse().unwrap();
            let s = m.entry(sid).or_default();
            match *flag {
                "0x01" => s.syn.push(frame),
                "0x02" => s.acks += 1,
                "0x08" => {
                    let t = types.next().unwrap_or("");
                    if from_client {
                        s.data_to_server += 1;
                        match t {
                            "1" | "3" | "7" | "14" => s.requests += 1,
                            "6" => s.attentions += 1,
                            _ => {}
                        }
                    } else {
                        s.data_to_client += 1;
                    }
                }
                _ => {}
            }
        }
    }
    for r in all_fields(
        file,
        "tds.done.status.attn == 1",
        &["frame.number", "smp.sid"],
    ) {
        let sids = list(&r[1]);
        assert_eq!(sids.len(), 1, "one SMP packet in DONE(ATTN) frame {}", r[0]);
        m.entry(sids[0].parse().unwrap()).or_default().attn_acks += 1;
    }
    m
}

fn mars_of(report: &Value) -> &Value {
    let conns = report["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 1);
    &conns[0]["mars"]
}

fn ours(report: &Value) -> BTreeMap<u16, SessionOracle> {
    mars_of(report)["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let n = |k: &str| s[k].as_u64().unwrap();
            (
                n("sid") as u16,
                SessionOracle {
                    syn: s["opened"]["frame"].as_u64().into_iter().collect(),
                    data_to_server: n("data_to_server"),
                    data_to_client: n("data_to_client"),
                    acks: n("acks"),
                    requests: n("requests"),
                    attentions: n("attentions"),
                    attn_acks: n("attentions_acknowledged"),
                },
            )
        })
        .collect()
}

/// The lab's knowledge of the client, independent of tshark: per session (requests, attentions).
fn lab_expectation(report: &Value, want: &[(u16, u64, u64)]) {
    let got: Vec<(u16, u64, u64)> = ours(report)
        .into_iter()
        .map(|(sid, s)| (sid, s.requests, s.attentions))
        .collect();
    assert_eq!(got, want);
    assert_eq!(mars_of(report)["packets_dropped"], 0);
}

#[test]
fn mars_two_sessions_match_tshark_and_the_lab() {
    let file = capture("mars-two-sessions.pcap");
    let (report, _) = analyze_json(&[&file]);
    // odbc_mars_client.py two-sessions: pyodbc's four sp_datatype_info_100 batches, each cut
    // short by an ATTENTION, and SELECT first_table on session 0; SELECT second_table on 1.
    lab_expectation(&report, &[(0, 5, 4), (1, 1, 0)]);
    let c = &report["connections"][0];
    assert_eq!(c["stats"]["requests"], 6);
    assert_eq!(c["stats"]["attentions"], 4);
    assert_eq!(c["login"]["outcome"], "ok");
    let codes: Vec<&str> = c["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(!codes.contains(&"capture.malformed"), "{codes:?}");
    if tshark_or_skip("mars_two_sessions_match_tshark_and_the_lab") {
        assert_eq!(ours(&report), oracle(&file));
    }
}

#[test]
fn mars_attention_is_acknowledged_on_its_own_session() {
    let file = capture("mars-attention.pcap");
    let (report, _) = analyze_json(&[&file]);
    lab_expectation(&report, &[(0, 5, 4), (1, 1, 1)]);
    let s1 = &mars_of(&report)["sessions"][1];
    assert_eq!(s1["attentions_acknowledged"], 1);
    let c = &report["connections"][0];
    let att = c["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "request.attention")
        .expect("request.attention");
    assert_eq!(att["detail"]["acknowledged"], true);
    assert_eq!(att["detail"]["count"], 5);
    if tshark_or_skip("mars_attention_is_acknowledged_on_its_own_session") {
        assert_eq!(ours(&report), oracle(&file));
    }
}

/// Session 0's 1500-row result is cut by the SMP window; session 1's whole result arrives in
/// between. Each session's token stream is walked with its own COLMETADATA.
#[test]
fn mars_interleaved_results_are_walked_per_session() {
    let file = capture("mars-interleaved.pcap");
    let (report, _) = analyze_json(&[&file]);
    lab_expectation(&report, &[(0, 5, 4), (1, 1, 0)]);
    let sessions = &mars_of(&report)["sessions"];
    assert!(sessions[0]["acks"].as_u64().unwrap() >= 1);
    let c = &report["connections"][0];
    for f in c["findings"].as_array().unwrap() {
        assert_ne!(f["code"], "capture.malformed", "{f}");
    }
    let out = tdsscope()
        .args(["analyze", "-v"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let has = |session: &str, rows: &str| {
        text.lines()
            .any(|l| l.contains(session) && l.trim_end().ends_with(rows))
    };
    assert!(
        has("SQL batch on MARS session 0, answered in", ", 1500 rows"),
        "{text}"
    );
    assert!(
        has("SQL batch on MARS session 1, answered in", ", 3 rows"),
        "{text}"
    );
    if tshark_or_skip("mars_interleaved_results_are_walked_per_session") {
        assert_eq!(ours(&report), oracle(&file));
        // tshark's own row count of session 0's final DONE.
        let rows = all_fields(
            &file,
            "smp.sid == 0 && tds.done.donerowcount64 == 1500",
            &["frame.number"],
        );
        assert_eq!(rows.len(), 1);
    }
}

#[test]
fn mars_timeline_names_the_session() {
    let out = tdsscope()
        .args(["analyze", "-v"])
        .arg(capture("mars-attention.pcap"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "SMP SYN: MARS session 1 opened",
        "SQL batch on MARS session 1, answer",
        "ATTENTION on MARS session 1",
        "DONE with ATTN (cancel acknowledged) on MARS session 1",
        "SQL batch on MARS session 0, answered",
    ] {
        assert!(text.contains(want), "{want}\n{text}");
    }
}

#[test]
fn connections_without_mars_have_no_mars_object() {
    let (report, _) = analyze_json(&[&capture("healthy-tsql-plain.pcap")]);
    for c in report["connections"].as_array().unwrap() {
        assert!(c.get("mars").is_none());
    }
}

/// The manifest's `smp_sessions` (what the lab's client did on each SMP session) against our
/// report, for every lab capture that lists them.
#[test]
fn manifest_smp_sessions_are_reported() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let mut checked = 0;
    for (name, sc) in manifest["scenarios"].as_object().unwrap() {
        for expected in sc["connections"].as_array().into_iter().flatten() {
            let Some(want) = expected["smp_sessions"].as_array() else {
                continue;
            };
            let (report, _) = analyze_json(&[&dir.join(sc["capture"].as_str().unwrap())]);
            let conn = report["connections"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["client"] == expected["client"] && c["server"] == expected["server"])
                .unwrap_or_else(|| panic!("{name}: no connection {}", expected["client"]));
            let got = conn["mars"]["sessions"].as_array().unwrap();
            assert_eq!(got.len(), want.len(), "{name}");
            for (g, w) in got.iter().zip(want) {
                assert_eq!(g["sid"], w["sid"], "{name}");
                assert_eq!(g["requests"], w["requests"], "{name} sid {}", w["sid"]);
                assert_eq!(g["attentions"], w["attentions"], "{name} sid {}", w["sid"]);
                checked += 1;
            }
        }
    }
    assert!(checked >= 4, "{checked}");
}
