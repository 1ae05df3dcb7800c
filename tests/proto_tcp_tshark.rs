//! DNS and Kerberos over TCP (and Kerberos over UDP), the SSPI identity of integrated logins
//! and RPC procedure names, on the lab's captures of real programs (dig, MIT kinit/kvno, the
//! MIT KDC, FreeTDS with GSSAPI, impacket) and the shared captures, checked against tshark
//! field by field: what tdsscope reports in `exchanges`, `login.sspi` and the timeline must
//! be what tshark's dissectors show in the same frames.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::{shared_capture, tdsscope, tshark_by_frame, tshark_list, tshark_or_skip};

/// Decode-as for the SQL Server port, for tshark.
const TDS_DECODE: &[&str] = &["-d", "tcp.port==1433,tds"];

fn lab_capture(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/captures")
        .join(name);
    assert!(p.is_file(), "missing lab capture {}", p.display());
    p
}

/// `tdsscope analyze -v --format json FILE`.
fn report(file: &Path) -> Value {
    let out = tdsscope()
        .args(["analyze", "--quiet", "-v", "--format", "json"])
        .arg(file)
        .output()
        .expect("run tdsscope");
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// The exchanges of a report, with the frame of their first request.
fn exchanges(r: &Value, protocol: &str) -> Vec<(u64, Value)> {
    r["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["protocol"] == protocol)
        .map(|e| (e["first"]["frame"].as_u64().unwrap(), e.clone()))
        .collect()
}

const DNS_FIELDS: [&str; 9] = [
    "dns.flags.response",
    "dns.id",
    "dns.qry.name",
    "dns.qry.type",
    "dns.flags.rcode",
    "dns.a",
    "dns.aaaa",
    "tcp.stream",
    "udp.stream",
];

fn dns_type_name(t: &str) -> String {
    match t {
        "1" => "A".into(),
        "28" => "AAAA".into(),
        "5" => "CNAME".into(),
        "33" => "SRV".into(),
        "12" => "PTR".into(),
        other => format!("TYPE{other}"),
    }
}

/// Every DNS query tshark shows is an exchange with its name, type and transport, and its
/// answer (same connection, same id) has tshark's rcode and addresses.
fn dns_matches_tshark(file: &Path, expect_tcp: bool) -> usize {
    let rows = tshark_by_frame(TDS_DECODE, file, "dns", &DNS_FIELDS);
    let ours = exchanges(&report(file), "dns");
    let queries: Vec<u64> = rows
        .iter()
        .filter(|(_, r)| r[0] == "0")
        .map(|(n, _)| *n)
        .collect();
    let our_frames: Vec<u64> = ours.iter().map(|(n, _)| *n).collect();
    assert_eq!(our_frames, queries, "{}: query frames", file.display());
    for (frame, e) in &ours {
        let q = &rows[frame];
        let tcp = !q[7].is_empty();
        assert_eq!(tcp, expect_tcp);
        assert_eq!(str_of(e, "transport"), if tcp { "tcp" } else { "udp" });
        assert_eq!(str_of(&e["request"], "name"), q[2], "frame {frame}");
        assert_eq!(
            e["request"]["types"],
            serde_json::json!([dns_type_name(&q[3])]),
            "frame {frame}"
        );
        let stream = if tcp { &q[7] } else { &q[8] };
        let answer = rows.range(frame + 1..).find(|(_, r)| {
            r[0] == "1" && r[1] == q[1] && (if tcp { &r[7] } else { &r[8] }) == stream
        });
        let Some((_, a)) = answer else {
            assert!(
                e["response"].is_null(),
                "frame {frame}: no answer in tshark"
            );
            continue;
        };
        let resp = &e["response"];
        assert_eq!(resp["rcode"].as_u64().unwrap().to_string(), a[4]);
        let mut want: Vec<String> = tshark_list(&a[5]);
        want.extend(tshark_list(&a[6]));
        let got: Vec<String> = resp["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, want, "frame {frame}: addresses");
    }
    ours.len()
}

#[test]
fn dns_over_tcp_matches_tshark() {
    if !tshark_or_skip("dns_over_tcp_matches_tshark") {
        return;
    }
    // dig +tcp +keepopen: three queries on one connection, one NXDOMAIN.
    assert_eq!(dns_matches_tshark(&lab_capture("dns-tcp.pcap"), true), 3);
    let r = report(&lab_capture("dns-tcp.pcap"));
    let codes: Vec<&str> = r["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["findings"].as_array().unwrap())
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["dns.error"]);
    // The DNS connection is an ordinary, healthy non-SQL connection: no finding of its own.
    let conns = r["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0]["sql"], false);
    assert!(conns[0]["findings"].as_array().unwrap().is_empty());
}

const KRB_FIELDS: [&str; 8] = [
    "kerberos.msg_type",
    "kerberos.realm",
    "kerberos.CNameString",
    "kerberos.SNameString",
    "kerberos.KDCOptions.forwardable",
    "kerberos.error_code",
    "tcp.stream",
    "udp.stream",
];

fn krb_message(msg_type: &str) -> &'static str {
    match msg_type {
        "10" => "AS-REQ",
        "11" => "AS-REP",
        "12" => "TGS-REQ",
        "13" => "TGS-REP",
        "30" => "KRB-ERROR",
        _ => "?",
    }
}

/// Every KDC request tshark shows is an exchange with tshark's message type, realm, sname,
/// cname (AS-REQ) and forwardable option (TGS-REQ); its answer (next KDC message on the same
/// connection or UDP conversation) has tshark's type, error code and cname. Returns the
/// exchanges as (request, response) message names.
fn kerberos_matches_tshark(file: &Path, transport: &str) -> Vec<(String, String)> {
    let rows = tshark_by_frame(TDS_DECODE, file, "kerberos && !tds", &KRB_FIELDS);
    let ours = exchanges(&report(file), "kerberos");
    // A TGS-REQ also holds the AP-REQ of its TGT (PA-TGS-REQ): tshark lists "12,14".
    let first_type = |r: &Vec<String>| tshark_list(&r[0]).first().cloned().unwrap_or_default();
    let requests: Vec<u64> = rows
        .iter()
        .filter(|(_, r)| matches!(first_type(r).as_str(), "10" | "12"))
        .map(|(n, _)| *n)
        .collect();
    let our_frames: Vec<u64> = ours.iter().map(|(n, _)| *n).collect();
    assert_eq!(our_frames, requests, "{}: request frames", file.display());
    let mut out = Vec::new();
    for (frame, e) in &ours {
        let q = &rows[frame];
        assert_eq!(str_of(e, "transport"), transport, "frame {frame}");
        let req = &e["request"];
        let message = krb_message(&first_type(q));
        assert_eq!(str_of(req, "message"), message, "frame {frame}");
        // The request body's realm and sname come last (after the TGT's, in a TGS-REQ).
        assert_eq!(
            tshark_list(&q[1]).last().map(String::as_str),
            Some(str_of(req, "realm"))
        );
        let sname_parts: Vec<String> = str_of(req, "sname")
            .split('/')
            .map(str::to_string)
            .collect();
        let tshark_snames = tshark_list(&q[3]);
        assert!(
            tshark_snames.ends_with(&sname_parts),
            "frame {frame}: sname {sname_parts:?} vs tshark {tshark_snames:?}"
        );
        if message == "AS-REQ" {
            assert_eq!(tshark_list(&q[2]), [str_of(req, "cname").to_string()]);
        } else {
            assert_eq!(
                req["forwardable"]
                    .as_bool()
                    .map(|b| if b { "1" } else { "0" }),
                Some(q[4].as_str()),
                "frame {frame}"
            );
        }
        let stream = |r: &Vec<String>| {
            if transport == "tcp" {
                r[6].clone()
            } else {
                r[7].clone()
            }
        };
        let answer = rows.range(frame + 1..).find(|(_, r)| {
            stream(r) == stream(q) && matches!(first_type(r).as_str(), "11" | "13" | "30")
        });
        let (_, a) = answer.unwrap_or_else(|| panic!("frame {frame}: tshark shows no answer"));
        let resp = &e["response"];
        let answer_message = krb_message(&first_type(a));
        assert_eq!(str_of(resp, "message"), answer_message, "frame {frame}");
        match answer_message {
            "KRB-ERROR" => {
                assert_eq!(resp["error_code"].as_i64().unwrap().to_string(), a[5]);
                assert!(str_of(resp, "error").starts_with("KDC_ERR_"));
            }
            _ => {
                assert!(resp["error_code"].is_null());
                assert_eq!(
                    tshark_list(&a[2]),
                    [str_of(resp, "cname").to_string()],
                    "frame {frame}"
                );
            }
        }
        out.push((message.to_string(), answer_message.to_string()));
    }
    out
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn kerberos_over_tcp_and_udp_matches_tshark() {
    if !tshark_or_skip("kerberos_over_tcp_and_udp_matches_tshark") {
        return;
    }
    let kinit = [("AS-REQ", "KRB-ERROR"), ("AS-REQ", "AS-REP")];
    let ok = pairs(&[kinit[0], kinit[1], ("TGS-REQ", "TGS-REP")]);
    assert_eq!(
        kerberos_matches_tshark(&lab_capture("kerberos-tcp-spn-ok.pcap"), "tcp"),
        ok
    );
    assert_eq!(
        kerberos_matches_tshark(&lab_capture("kerberos-udp-spn-ok.pcap"), "udp"),
        ok
    );
    let unknown = pairs(&[
        kinit[0],
        kinit[1],
        ("TGS-REQ", "KRB-ERROR"),
        ("TGS-REQ", "KRB-ERROR"),
    ]);
    assert_eq!(
        kerberos_matches_tshark(&lab_capture("kerberos-spn-unknown.pcap"), "tcp"),
        unknown
    );
    assert_eq!(
        kerberos_matches_tshark(&lab_capture("kerberos-sql-spn-unknown.pcap"), "tcp"),
        unknown
    );
    assert_eq!(
        kerberos_matches_tshark(&lab_capture("kerberos-preauth-failed.pcap"), "tcp"),
        pairs(&[kinit[0], ("AS-REQ", "KRB-ERROR")])
    );
    assert_eq!(
        kerberos_matches_tshark(&lab_capture("kerberos-sql-login-18452.pcap"), "tcp"),
        ok
    );
    // The Kerberos connections are not SQL and draw no failure.
    let r = report(&lab_capture("kerberos-tcp-spn-ok.pcap"));
    for c in r["connections"].as_array().unwrap() {
        assert_eq!(c["sql"], false);
        assert_eq!(c["outcome"], "ok");
    }
}

fn connection_to(r: &Value, port: &str) -> Value {
    r["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| str_of(c, "server").ends_with(port))
        .cloned()
        .expect("a connection to the port")
}

fn finding(c: &Value, code: &str) -> Value {
    c["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == code)
        .cloned()
        .unwrap_or_else(|| panic!("no {code} in {}", c["findings"]))
}

#[test]
fn kerberos_refusal_for_the_sql_spn_explains_the_sspi_failure() {
    if !tshark_or_skip("kerberos_refusal_for_the_sql_spn_explains_the_sspi_failure") {
        return;
    }
    let file = lab_capture("kerberos-sql-spn-unknown.pcap");
    let r = report(&file);
    let c = connection_to(&r, ":1433");
    // Both refused TGS-REQs came while the SQL connection was open: linked to it.
    for e in r["exchanges"].as_array().unwrap() {
        let linked = e["request"]["message"] == "TGS-REQ";
        let want = if linked {
            vec![c["id"].clone()]
        } else {
            Vec::new()
        };
        assert_eq!(
            e["connections"].as_array().cloned().unwrap_or_default(),
            want,
            "{e}"
        );
    }
    let f = finding(&c, "login.sspi_failed");
    let errors = tshark_by_frame(
        TDS_DECODE,
        &file,
        "kerberos.error_code",
        &["kerberos.error_code", "kerberos.SNameString"],
    );
    let (last_frame, last) = errors.iter().next_back().unwrap();
    assert_eq!(
        f["detail"]["krb_error_code"].as_i64().unwrap().to_string(),
        last[0]
    );
    assert_eq!(f["detail"]["krb_error"], "KDC_ERR_S_PRINCIPAL_UNKNOWN");
    assert_eq!(
        str_of(&f["detail"], "spn").replacen('/', ",", 1),
        last[1],
        "the SPN the KDC refused"
    );
    assert!(f["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["frame"].as_u64() == Some(*last_frame)));
}

#[test]
fn kerberos_ap_req_in_login7_gives_spn_and_realm() {
    if !tshark_or_skip("kerberos_ap_req_in_login7_gives_spn_and_realm") {
        return;
    }
    let file = lab_capture("kerberos-sql-login-18452.pcap");
    let c = connection_to(&report(&file), ":1433");
    let sspi = &c["login"]["sspi"];
    let rows = tshark_by_frame(
        TDS_DECODE,
        &file,
        "tds.type == 0x10",
        &[
            "kerberos.SNameString",
            "kerberos.realm",
            "kerberos.msg_type",
        ],
    );
    assert_eq!(rows.len(), 1);
    let row = rows.values().next().unwrap();
    assert_eq!(row[2], "14", "LOGIN7 holds an AP-REQ");
    assert_eq!(sspi["mechanism"], "kerberos");
    assert_eq!(str_of(sspi, "spn").replacen('/', ",", 1), row[0]);
    assert_eq!(str_of(sspi, "realm"), row[1]);
    let f = finding(&c, "login.sspi_failed");
    assert_eq!(f["detail"]["spn"], sspi["spn"]);
    assert_eq!(f["detail"]["number"], 18452);
}

#[test]
fn ntlm_authenticate_identity_matches_tshark() {
    if !tshark_or_skip("ntlm_authenticate_identity_matches_tshark") {
        return;
    }
    let files = [
        lab_capture("sspi-ntlm-challenge-failed.pcap"),
        lab_capture("sspi-ntlm-challenge-ok.pcap"),
        // Raw NTLMSSP over TDS among SMB and HTTP NTLM rounds (only the TDS one may count).
        shared_capture("tds7-sspi-ntlm-ipv6-synthetic_arkime_ntlm_synthetic.pcap"),
    ];
    for file in &files {
        let name = file.display();
        let r = report(file);
        let with_sspi: Vec<&Value> = r["connections"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| !c["login"]["sspi"].is_null())
            .collect();
        assert_eq!(with_sspi.len(), 1, "{name}");
        let sspi = &with_sspi[0]["login"]["sspi"];
        let rows = tshark_by_frame(
            TDS_DECODE,
            file,
            "tcp.port == 1433 && ntlmssp.messagetype == 3",
            &[
                "ntlmssp.auth.username",
                "ntlmssp.auth.domain",
                "ntlmssp.auth.hostname",
            ],
        );
        assert_eq!(rows.len(), 1, "{name}");
        let row = rows.values().next().unwrap();
        // tshark writes NULL for an empty string field.
        let field = |v: &Value, t: &str| {
            let ours = v.as_str().unwrap_or("NULL").to_string();
            assert_eq!(ours, t, "{name}");
        };
        assert_eq!(sspi["mechanism"], "ntlm", "{name}");
        field(&sspi["user"], &row[0]);
        field(&sspi["domain"], &row[1]);
        field(&sspi["workstation"], &row[2]);
        assert_eq!(sspi["anonymous"], false);
    }
}

/// tds.rpc.name, or the ProcID's name (MS-TDS 2.2.6.6), of every RPC frame tshark decodes.
fn tshark_rpc_names(file: &Path) -> BTreeMap<u64, String> {
    tshark_by_frame(
        TDS_DECODE,
        file,
        "tds.type == 3",
        &["tds.rpc.name", "tds.rpc.proc_id"],
    )
    .into_iter()
    .filter_map(|(no, r)| {
        let name = tshark_list(&r[0]).into_iter().next().or_else(|| {
            let id: u16 = tshark_list(&r[1]).first()?.parse().ok()?;
            tdsscope::proto::tds::rpc::proc_id_name(id).map(str::to_string)
        })?;
        Some((no, name))
    })
    .collect()
}

#[test]
fn rpc_procedure_names_match_tshark() {
    if !tshark_or_skip("rpc_procedure_names_match_tshark") {
        return;
    }
    let files = [
        shared_capture("tds-rpc-midstream_wswiki_ms-sql-tds-rpc-requests.pcap"),
        shared_capture("tds-merged-plus-garbage_malcolm_TDS.pcap"),
        shared_capture("tds-midstream-retrans_wswiki_startmenu_Dameware.pcap"),
        lab_capture("attention-tedious.pcap"),
    ];
    let mut compared = 0;
    for file in &files {
        let want = tshark_rpc_names(file);
        let r = report(file);
        let mut ours = BTreeMap::new();
        for c in r["connections"].as_array().unwrap() {
            for t in c["timeline"].as_array().into_iter().flatten() {
                if let Some(rest) = str_of(t, "event").strip_prefix("RPC ") {
                    let name = rest.split(',').next().unwrap().to_string();
                    ours.insert(t["frame"].as_u64().unwrap(), name);
                }
            }
        }
        assert!(!ours.is_empty(), "{}: no named RPC", file.display());
        for (frame, name) in &ours {
            // tshark decodes TDS on 1433 only (-d): RPCs on other ports are not compared.
            let Some(w) = want.get(frame) else { continue };
            assert_eq!(w, name, "{}: frame {frame}", file.display());
            compared += 1;
        }
        // Every RPC tshark names that tdsscope shows in a timeline is named there.
        for t in r["connections"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["timeline"].as_array().into_iter().flatten())
        {
            let frame = t["frame"].as_u64().unwrap();
            if str_of(t, "event").starts_with("RPC") && want.contains_key(&frame) {
                assert!(
                    ours.contains_key(&frame),
                    "{}: frame {frame} unnamed",
                    file.display()
                );
            }
        }
    }
    assert!(compared >= 20, "only {compared} RPCs compared");
}
