//! What a user should read from each public capture in `../shared/captures/`: every one runs
//! without error, and the findings its README implies are reported (and nothing false on the
//! real TDS).

use serde_json::Value;

use std::collections::BTreeSet;

use crate::util::{
    all_shared_captures, analyze_json, shared_capture, tdsscope, tshark_fields, tshark_or_skip,
};

fn connection<'a>(report: &'a Value, server: &str, client_port: u16) -> &'a Value {
    report["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["server"] == server
                && c["client"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!(":{client_port}"))
        })
        .unwrap_or_else(|| panic!("no connection to {server} from port {client_port}"))
}

fn codes(c: &Value) -> Vec<&str> {
    c["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect()
}

#[test]
fn every_shared_capture_runs_without_error() {
    for f in all_shared_captures() {
        let (report, code) = analyze_json(&[&f]);
        assert_ne!(code, 2, "{}", f.display());
        assert!(
            report["inputs"][0]["error"].is_null(),
            "{}: {}",
            f.display(),
            report["inputs"][0]["error"]
        );
        assert!(report["inputs"][0]["frames"].as_u64().unwrap() > 0);
    }
}

#[test]
fn unanswered_syns_to_1433_in_the_synscan() {
    let (report, code) = analyze_json(&[&shared_capture(
        "tcp1433-syn-unanswered-pcapng_chrissanders_synscan.pcapng",
    )]);
    assert_eq!(code, 1);
    for port in [36050, 36051] {
        let c = connection(&report, "64.13.134.52:1433", port);
        assert_eq!(c["outcome"], "no_answer");
        assert_eq!(c["sql"], true, "port 1433 makes it a SQL connection");
        assert_eq!(codes(c), ["tcp.no_answer"]);
    }
}

/// The synscan capture is an nmap SYN scan of 1,000 ports: one `pattern.port_scan` names the
/// scanner, the host, how many ports it probed and which answered, agreeing with tshark's
/// view of the SYNs and SYN-ACKs; the text report lists the scan once instead of 1,991
/// failed connections.
#[test]
fn the_synscan_is_one_port_scan_and_the_text_report_folds_it() {
    let file = shared_capture("tcp1433-syn-unanswered-pcapng_chrissanders_synscan.pcapng");
    let (report, _) = analyze_json(&[&file]);
    let scans: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "pattern.port_scan")
        .collect();
    assert_eq!(scans.len(), 1, "{:#}", report["findings"]);
    let scan = scans[0];
    let d = &scan["detail"];
    assert_eq!(d["client"], "172.16.0.8");
    assert_eq!(d["server"], "64.13.134.52");
    assert_eq!(d["hosts"], 1);
    assert_eq!(scan["severity"], "warning");
    let probes = d["probes"].as_u64().unwrap();
    assert_eq!(
        d["answered"].as_u64().unwrap()
            + d["refused"].as_u64().unwrap()
            + d["unanswered"].as_u64().unwrap(),
        probes
    );
    assert_eq!(scan["connections"].as_array().unwrap().len() as u64, probes);
    let no_answer = report["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["outcome"] == "no_answer")
        .count() as u64;
    assert_eq!(d["unanswered"].as_u64().unwrap(), no_answer);

    if tshark_or_skip("the_synscan_is_one_port_scan_and_the_text_report_folds_it") {
        let syn_ports: BTreeSet<String> = tshark_fields(
            &file,
            &[
                "-Y",
                "ip.src == 172.16.0.8 && tcp.flags.syn == 1 && tcp.flags.ack == 0",
            ],
            &["tcp.dstport"],
        )
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
        assert_eq!(d["ports"].as_u64().unwrap(), syn_ports.len() as u64);
        let open: BTreeSet<String> = tshark_fields(
            &file,
            &[
                "-Y",
                "ip.dst == 172.16.0.8 && tcp.flags.syn == 1 && tcp.flags.ack == 1",
            ],
            &["ip.src", "tcp.srcport"],
        )
        .into_iter()
        .map(|r| format!("{}:{}", r[0], r[1]))
        .collect();
        let reported: BTreeSet<String> = d["open"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(reported, open);
        let refused = tshark_fields(
            &file,
            &["-Y", "ip.dst == 172.16.0.8 && tcp.flags.reset == 1"],
            &["tcp.srcport"],
        );
        assert_eq!(d["refused"].as_u64().unwrap(), refused.len() as u64);
    }

    let out = tdsscope().arg("analyze").arg(&file).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().count() < 80, "{text}");
    assert!(
        text.contains("besides the 1991 connection attempts of a port scan"),
        "{text}"
    );
    assert!(
        text.contains("pattern.port_scan 172.16.0.8 probed"),
        "{text}"
    );
    assert!(!text.contains("== 64.13.134.52:"), "{text}");
}

#[test]
fn the_one_sided_zeek_capture_says_so() {
    let (report, _) = analyze_json(&[&shared_capture(
        "tcp1433-one-sided_zeek_one-sided-2745.pcap",
    )]);
    let c = connection(&report, "245.181.165.133:1433", 2745);
    assert_eq!(
        c["roles_from"], "syn_ack",
        "the SYN-ACK's receiver is the client"
    );
    let f = c["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "capture.one_direction")
        .unwrap();
    assert_eq!(f["detail"]["seen"], "server_to_client");
}

#[test]
fn the_malcolm_garbage_flow_is_malformed_and_the_real_tds_is_not() {
    let (report, _) = analyze_json(&[&shared_capture("tds-merged-plus-garbage_malcolm_TDS.pcap")]);
    let garbage = connection(&report, "172.20.2.34:1433", 2296);
    let f = garbage["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "capture.malformed");
    assert_eq!(
        f.expect("capture.malformed on the garbage")["detail"]["what"],
        "not_tds"
    );
    assert!(garbage["protocol"].is_null(), "not recognised as TDS");
    for c in report["connections"].as_array().unwrap() {
        if c["server"] == "10.0.0.1:1433" {
            assert_eq!(c["protocol"], "tds7", "{c:#}");
            assert!(!codes(c).contains(&"capture.malformed"), "{c:#}");
            assert!(
                c["client"].as_str().unwrap().starts_with("10.111.111.111:"),
                "roles from the TDS requests"
            );
        }
    }
}

#[test]
fn the_complete_login_is_read_field_by_field() {
    let (report, code) = analyze_json(&[&shared_capture("tds7-login-loginack_arkime_tds7.pcap")]);
    assert_eq!(code, 0, "a healthy login: no error finding");
    let c = &report["connections"][0];
    let login = &c["login"];
    assert_eq!(login["outcome"], "ok");
    assert_eq!(login["user"], "testuser");
    assert_eq!(login["tds_version"], "7.1");
    assert_eq!(login["server_version"], "8.0.2039");
    assert_eq!(login["encryption"], "none");
    assert_eq!(c["stats"]["requests"], 1);
    assert_eq!(codes(c), ["login.ok", "login.cleartext"]);
    assert_eq!(
        report["servers"][0]["found_by"],
        serde_json::json!(["tds", "port"])
    );
}

#[test]
fn tds_is_found_on_any_port_and_not_where_it_is_not() {
    // Sybase TDS 5 on port 3106: recognised and labelled, not diagnosed as SQL Server.
    let (report, _) = analyze_json(&[&shared_capture("tds5-sybase-port3106_arkime_tds5.pcap")]);
    let c = connection(&report, "10.0.0.2:3106", 3933);
    assert_eq!(c["protocol"], "sybase");
    assert_eq!(c["sql"], false);
    // Gnutella on 2433 (a port Wireshark registers for TDS), FTP, Oracle TNS: no TDS.
    for name in [
        "netmon2-ipv6-port2433_wswiki_FTPv6-1.cap",
        "pcap-bigendian-tcp_wswiki_TNS_Oracle2.pcap",
        "netmon2_wswiki_Mixed1.cap",
    ] {
        let (report, _) = analyze_json(&[&shared_capture(name)]);
        for c in report["connections"].as_array().unwrap() {
            assert!(c["protocol"].is_null(), "{name}: {c:#}");
        }
        assert!(report["servers"].as_array().unwrap().is_empty(), "{name}");
    }
    // Mid-stream TDS 7.1 results are walked to their DONE (row counts) without a LOGIN7.
    let (report, _) = analyze_json(&[&shared_capture(
        "tds-midstream-retrans_wswiki_startmenu_Dameware.pcap",
    )]);
    let c = connection(&report, "130.243.82.167:1433", 2081);
    assert_eq!(c["protocol"], "tds7");
    assert_eq!(c["stats"]["requests"], 7);
    assert_eq!(c["stats"]["retransmissions"], 1, "frame 68");
}

#[test]
fn tds8_strict_is_recognised_by_its_alpn_and_is_healthy() {
    let f = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/captures/tds8-strict-tedious.pcap");
    let (report, code) = analyze_json(&[&f]);
    assert_eq!(code, 0);
    let c = &report["connections"][0];
    assert_eq!(c["protocol"], "tds7", "TLS first with ALPN tds/8.0 is TDS");
    assert_eq!(c["login"]["encryption"], "strict");
    assert_eq!(c["login"]["outcome"], "encrypted");
    assert_eq!(c["login"]["tls_version"], "TLS 1.2");
    assert!(c["findings"].as_array().unwrap().is_empty(), "{c:#}");
    assert_eq!(report["servers"][0]["found_by"][0], "tds");
}

#[test]
fn an_ntlm_round_after_an_encrypted_login7_names_the_authentication() {
    // impacket -windows-auth: LOGIN7 inside login-only TLS, then the NTLM CHALLENGE and
    // AUTHENTICATE in clear, then 18452.
    let f = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/captures/sspi-ntlm-challenge-failed.pcap");
    let (report, _) = analyze_json(&[&f]);
    let c = &report["connections"][0];
    assert_eq!(c["login"]["auth"], "ntlm");
    assert_eq!(c["login"]["error"]["number"], 18452);
    assert!(codes(c).contains(&"login.sspi_failed"), "{c:#}");
}
