//! Exchanges (SSRP, DNS, Kerberos; UDP and TCP) against the lab manifest's expectations and two public captures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::{analyze_json, shared_capture};

/// The lab's captures directory: this worktree's `tests/captures`, else the lab worktree's.
fn lab_dir() -> Option<PathBuf> {
    [
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures"),
        PathBuf::from("/work/wt/lab/tests/captures"),
    ]
    .into_iter()
    .find(|d| d.join("manifest.json").is_file())
}

fn is_exchange_code(code: &str) -> bool {
    code.starts_with("ssrp.") || code.starts_with("dns.")
}

fn codes(findings: &Value) -> Vec<String> {
    findings
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap().to_string())
        .collect()
}

/// `got` has every member of `want` with the same value (delays within 100 ms).
fn check_detail(scenario: &str, code: &str, want: &Value, got: &Value) {
    for (k, v) in want.as_object().unwrap() {
        let g = &got[k];
        if k == "delay_ms" {
            let (w, g) = (v.as_f64().unwrap(), g.as_f64().unwrap_or(-1e9));
            assert!(
                (w - g).abs() < 100.0,
                "{scenario}: {code} {k} {g}, want {w}"
            );
        } else {
            assert_eq!(g, v, "{scenario}: {code} detail {k}");
        }
    }
}

fn check_exchange(scenario: &str, want: &Value, got: &Value) {
    for (k, v) in want["request"].as_object().unwrap() {
        assert_eq!(&got["request"][k], v, "{scenario}: request.{k}");
    }
    if want["response"].is_null() {
        assert!(got["response"].is_null(), "{scenario}: response {}", got);
    } else {
        let (w, g) = (&want["response"], &got["response"]);
        assert!(g.is_object(), "{scenario}: no response in {got}");
        if let Some(rcode) = w.get("rcode") {
            assert_eq!(&g["rcode"], rcode, "{scenario}: rcode");
        }
        if let Some(addrs) = w.get("addresses") {
            assert_eq!(&g["addresses"], addrs, "{scenario}: addresses");
        }
        for key in ["message", "error"] {
            if let Some(v) = w.get(key) {
                assert_eq!(&g[key], v, "{scenario}: {key}");
            }
        }
        if let Some(port) = w.get("dac_port") {
            assert_eq!(&g["dac_port"], port, "{scenario}: dac_port");
        }
        if let Some(list) = w.get("instances") {
            let list = list.as_array().unwrap();
            let got_list = g["instances"].as_array().unwrap();
            assert_eq!(got_list.len(), list.len(), "{scenario}: instances {g}");
            for (wi, gi) in list.iter().zip(got_list) {
                for (k, v) in wi.as_object().unwrap() {
                    assert_eq!(&gi[k], v, "{scenario}: instance {k}");
                }
            }
        }
    }
    if let Some(n) = want.get("attempts") {
        assert_eq!(&got["attempts"], n, "{scenario}: attempts");
    }
    let want_codes = codes(&want["findings"]);
    for wf in want["findings"].as_array().unwrap() {
        let code = wf["code"].as_str().unwrap();
        let gf = got["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["code"] == code)
            .unwrap_or_else(|| panic!("{scenario}: {code} missing from {got}"));
        if let Some(d) = wf.get("detail") {
            check_detail(scenario, code, d, &gf["detail"]);
        }
        assert!(!gf["evidence"].as_array().unwrap().is_empty());
        assert!(!gf["next_steps"].as_array().unwrap().is_empty());
    }
    for gf in got["findings"].as_array().unwrap() {
        let code = gf["code"].as_str().unwrap();
        if gf["severity"] != "info" {
            assert!(
                want_codes.iter().any(|c| c == code),
                "{scenario}: unexpected {code} in {got}"
            );
        }
    }
}

#[test]
fn lab_exchanges_match_the_manifest() {
    let Some(dir) = lab_dir() else {
        eprintln!("skipped: no lab captures");
        return;
    };
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let mut checked = 0;
    for (name, s) in manifest["scenarios"].as_object().unwrap() {
        let exchanges = s["exchanges"].as_array().cloned().unwrap_or_default();
        let conn_codes: Vec<(&Value, &Value)> = s["connections"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .flat_map(|c| {
                        c["findings"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter(|f| is_exchange_code(f["code"].as_str().unwrap_or("")))
                            .map(move |f| (c, f))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let capture_codes = s["capture_findings"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|f| is_exchange_code(f["code"].as_str().unwrap_or("")));
        if exchanges.is_empty() && conn_codes.is_empty() && !capture_codes {
            continue;
        }
        let path = dir.join(s["capture"].as_str().unwrap());
        let (report, _) = analyze_json(&[&path]);
        let got = report["exchanges"].as_array().unwrap();
        assert_eq!(got.len(), exchanges.len(), "{name}: exchanges {got:?}");
        // Several exchanges with one server (a TCP connection's queries, kinit's two AS-REQs)
        // are listed in the order of their first request, as the manifest lists them.
        let mut used = vec![false; got.len()];
        for want in &exchanges {
            let i = (0..got.len())
                .find(|&i| {
                    !used[i]
                        && got[i]["protocol"] == want["protocol"]
                        && got[i]["server"] == want["server"]
                })
                .unwrap_or_else(|| panic!("{name}: no exchange like {want}"));
            used[i] = true;
            let g = &got[i];
            check_exchange(name, want, g);
            let transport = want["transport"].as_str().unwrap_or("udp");
            assert_eq!(g["transport"], transport, "{name}: transport");
            // Kerberos exchanges are linked by SPN port only when they precede the connection
            // (tests/proto_tcp_tshark.rs checks the login.sspi_failed link instead).
            if want["protocol"] == "kerberos" {
                continue;
            }
            // An answered lookup is linked to the SQL connection that followed it.
            let followed = s["connections"].as_array().is_some_and(|c| !c.is_empty());
            let healthy = g["findings"].as_array().is_some_and(|f| f.is_empty());
            if followed && healthy && !want["response"].is_null() {
                // Linked to connections of the same client that followed the answer.
                let links = g["connections"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{name}: links {g}"));
                assert!(!links.is_empty(), "{name}: links");
                let client_ip = g["client"].as_str().unwrap().rsplit_once(':').unwrap().0;
                for id in links {
                    let c = report["connections"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|c| &c["id"] == id)
                        .unwrap_or_else(|| panic!("{name}: linked connection {id} missing"));
                    assert!(
                        c["client"].as_str().unwrap().starts_with(client_ip),
                        "{name}: {c}"
                    );
                }
            }
        }
        for (conn, wf) in conn_codes {
            let code = wf["code"].as_str().unwrap();
            let c = report["connections"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["server"] == conn["server"])
                .unwrap_or_else(|| panic!("{name}: no connection to {}", conn["server"]));
            let f = c["findings"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["code"] == code)
                .unwrap_or_else(|| panic!("{name}: {code} missing on {c}"));
            check_detail(name, code, &wf["detail"], &f["detail"]);
        }
        // SSRP answers register the announced instance ports as SQL servers.
        for e in got.iter().filter(|e| e["protocol"] == "ssrp") {
            for i in e["response"]["instances"].as_array().into_iter().flatten() {
                let port = &i["tcp_port"];
                let server = report["servers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|s| &s["port"] == port)
                    .unwrap_or_else(|| panic!("{name}: no server on port {port}"));
                assert!(server["found_by"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|f| f == "ssrp"));
                assert_eq!(server["instance"], i["instance"], "{name}");
            }
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} scenarios checked");
}

fn exchange_codes(report: &Value) -> Vec<String> {
    report["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| codes(&e["findings"]))
        .collect()
}

#[test]
fn slammer_datagram_is_an_oversized_request() {
    let (report, _) = analyze_json(&[&shared_capture("ssrp-slammer-overflow_wswiki_slammer.pcap")]);
    let e = &report["exchanges"][0];
    assert_eq!(e["protocol"], "ssrp");
    assert_eq!(e["request"]["opcode"], 4);
    let f = e["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "ssrp.oversized_request")
        .expect("ssrp.oversized_request");
    assert_eq!(f["detail"]["length"], 376);
    // The worm's code is not printed raw.
    let instance = e["request"]["instance"].as_str().unwrap();
    assert!(instance.chars().all(|c| !c.is_control()), "{instance}");
}

#[test]
fn unanswered_broadcast_is_no_response() {
    let (report, _) = analyze_json(&[&shared_capture("netmon2-ssrp-bcast_wswiki_netlog5.cap")]);
    let ssrp: Vec<&Value> = report["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["protocol"] == "ssrp")
        .collect();
    assert_eq!(ssrp.len(), 1, "{ssrp:?}");
    assert_eq!(ssrp[0]["request"]["opcode"], 2);
    assert!(ssrp[0]["response"].is_null());
    assert_eq!(codes(&ssrp[0]["findings"]), ["ssrp.no_response"]);
    assert_eq!(ssrp[0]["findings"][0]["detail"]["attempts"], 1);
    // Nothing else in the capture is an exchange with a problem.
    let n = exchange_codes(&report)
        .iter()
        .filter(|c| c.as_str() != "ssrp.no_response")
        .count();
    assert_eq!(n, 0, "{}", report["exchanges"]);
}
