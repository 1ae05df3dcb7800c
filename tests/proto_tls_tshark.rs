//! `proto::tls` against tshark on the lab captures whose TDS 7.x connections negotiate TLS inside
//! PRELOGIN packets. The TLS bytes are cut out of tshark's `tcp.payload` (TDS headers of 0x12
//! packets stripped, records after the handshake taken straight off TCP) and fed through one
//! `TlsFlow` per direction; every frame's record types, handshake types, hello versions,
//! cipher suites, SNI/ALPN, certificate serials, validity and names, and alerts must equal
//! tshark's for the same frame.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use tdsscope::proto::tls::{self, TlsFlow, TlsMessage};

use crate::util::tshark_or_skip;

/// The lab captures: merged into `tests/captures/` later, read in place until then.
fn lab_capture(name: &str) -> Option<PathBuf> {
    [
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures"),
        PathBuf::from("/work/wt/lab/tests/captures"),
    ]
    .into_iter()
    .map(|d| d.join(name))
    .find(|p| p.is_file())
}

const FIELDS: &[&str] = &[
    "frame.number",
    "tcp.stream",
    "tcp.srcport",
    "tds.type",
    "tls.record.content_type",
    "tls.handshake.type",
    "tls.handshake.version",
    "tls.handshake.ciphersuite",
    "tls.handshake.extensions.supported_version",
    "tls.handshake.extensions_server_name",
    "tls.handshake.extensions_alpn_str",
    "x509af.serialNumber",
    "x509af.utcTime",
    "x509sat.uTF8String",
    "x509sat.printableString",
    "tls.alert_message.level",
    "tls.alert_message.desc",
    "tcp.payload",
];

struct Row(BTreeMap<&'static str, String>);

impl Row {
    fn get(&self, f: &str) -> &str {
        self.0.get(f).map(String::as_str).unwrap_or("")
    }
    fn list(&self, f: &str) -> Vec<String> {
        let v = self.get(f);
        if v.is_empty() {
            Vec::new()
        } else {
            v.split(',').map(str::to_string).collect()
        }
    }
}

fn tshark_rows(file: &Path) -> Vec<Row> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(file);
    cmd.args(["-d", "tcp.port==1433,tds", "-Y", "tcp.len>0"]);
    cmd.args(["-T", "fields", "-E", "separator=/t", "-E", "occurrence=a"]);
    for f in FIELDS {
        cmd.arg("-e").arg(f);
    }
    let out = cmd.output().expect("run tshark");
    assert!(out.status.success(), "tshark failed on {}", file.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            Row(FIELDS
                .iter()
                .copied()
                .zip(l.split('\t').map(str::to_string))
                .collect())
        })
        .collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// The TLS bytes a frame carries: the bodies of its TDS 0x12 packets when they hold TLS, or
/// the whole payload when TLS records sit straight on TCP.
fn tls_bytes(row: &Row) -> Vec<u8> {
    let payload = unhex(row.get("tcp.payload"));
    let is_tls = |b: &[u8]| matches!(b, [20..=23, 3, ..]);
    if row.list("tds.type").iter().any(|t| t == "18") {
        let mut out = Vec::new();
        let mut rest = &payload[..];
        while rest.len() >= 8 {
            let len = usize::from(u16::from_be_bytes([rest[2], rest[3]])).clamp(8, rest.len());
            let body = &rest[8..len];
            if is_tls(body) || (!out.is_empty() && rest[0] == 0x12) {
                out.extend_from_slice(body);
            }
            rest = &rest[len..];
        }
        out
    } else if is_tls(&payload) {
        payload
    } else {
        Vec::new()
    }
}

fn handshake_type(m: &TlsMessage) -> Option<u8> {
    Some(match m {
        TlsMessage::ClientHello(_) => 1,
        TlsMessage::ServerHello(_) => 2,
        TlsMessage::NewSessionTicket => 4,
        TlsMessage::Certificate { .. } => 11,
        TlsMessage::ServerKeyExchange => 12,
        TlsMessage::CertificateRequest => 13,
        TlsMessage::ServerHelloDone => 14,
        TlsMessage::CertificateVerify => 15,
        TlsMessage::ClientKeyExchange => 16,
        TlsMessage::Finished => 20,
        TlsMessage::OtherHandshake { msg_type, .. } => u8::from(*msg_type),
        _ => return None,
    })
}

fn hex16(v: u16) -> String {
    format!("0x{v:04x}")
}

#[derive(Default, Debug)]
struct Seen {
    frames: usize,
    client_hellos: usize,
    server_hellos: usize,
    certificates: usize,
    alerts: usize,
    ccs: usize,
    app_data: usize,
    server_version: Option<u16>,
    fallback: bool,
}

fn check(name: &str) -> Option<Seen> {
    // The lab's captures are committed: a missing one is a failure, not a skip.
    let path = lab_capture(name).unwrap_or_else(|| panic!("{name}: lab capture missing"));
    if !tshark_or_skip(name) {
        return None;
    }
    let mut flows: BTreeMap<(String, String), (TlsFlow, Vec<u8>)> = BTreeMap::new();
    let mut seen = Seen::default();
    for row in tshark_rows(&path) {
        let frame = row.get("frame.number").to_string();
        let bytes = tls_bytes(&row);
        if bytes.is_empty() {
            continue;
        }
        let key = (
            row.get("tcp.stream").to_string(),
            row.get("tcp.srcport").to_string(),
        );
        let (flow, buf) = flows
            .entry(key)
            .or_insert_with(|| (TlsFlow::new(), Vec::new()));
        buf.extend_from_slice(&bytes);
        let (records, used) = flow.parse_records(buf);
        buf.drain(..used);
        seen.frames += 1;
        let at = format!("{name} frame {frame}");

        let types: Vec<String> = records
            .iter()
            .map(|r| u8::from(r.content_type).to_string())
            .collect();
        assert_eq!(
            types,
            row.list("tls.record.content_type"),
            "{at}: record types"
        );
        let msgs: Vec<&TlsMessage> = records.iter().flat_map(|r| &r.messages).collect();
        let hs: Vec<String> = msgs
            .iter()
            .filter_map(|m| handshake_type(m))
            .map(|t| t.to_string())
            .collect();
        assert_eq!(hs, row.list("tls.handshake.type"), "{at}: handshake types");

        let mut utc = row.list("x509af.utcTime").into_iter();
        let mut serials = row.list("x509af.serialNumber").into_iter();
        let mut names = row.list("x509sat.uTF8String");
        names.extend(row.list("x509sat.printableString"));
        let mut levels = row.list("tls.alert_message.level").into_iter();
        let mut descs = row.list("tls.alert_message.desc").into_iter();
        for m in msgs {
            match m {
                TlsMessage::ClientHello(ch) => {
                    seen.client_hellos += 1;
                    assert_eq!(
                        hex16(ch.legacy_version),
                        row.get("tls.handshake.version"),
                        "{at}"
                    );
                    let suites: Vec<String> =
                        ch.cipher_suites.iter().map(|c| hex16(c.id)).collect();
                    assert_eq!(
                        suites,
                        row.list("tls.handshake.ciphersuite"),
                        "{at}: suites"
                    );
                    let sv: Vec<String> = ch.supported_versions.iter().map(|v| hex16(*v)).collect();
                    assert_eq!(
                        sv,
                        row.list("tls.handshake.extensions.supported_version"),
                        "{at}"
                    );
                    assert_eq!(
                        ch.sni.as_deref().unwrap_or(""),
                        row.get("tls.handshake.extensions_server_name"),
                        "{at}: SNI"
                    );
                    assert_eq!(
                        ch.alpn,
                        row.list("tls.handshake.extensions_alpn_str"),
                        "{at}: ALPN"
                    );
                    assert!(
                        ch.cipher_suites.iter().all(|c| c.name != "unknown"),
                        "{at}: {:?}",
                        ch.cipher_suites
                    );
                }
                TlsMessage::ServerHello(sh) => {
                    seen.server_hellos += 1;
                    seen.server_version = Some(sh.version);
                    assert_eq!(
                        hex16(sh.legacy_version),
                        row.get("tls.handshake.version"),
                        "{at}"
                    );
                    assert_eq!(
                        hex16(sh.cipher.id),
                        row.get("tls.handshake.ciphersuite"),
                        "{at}"
                    );
                    let sv = row.get("tls.handshake.extensions.supported_version");
                    if !sv.is_empty() {
                        assert_eq!(hex16(sh.version), sv, "{at}: negotiated version");
                    }
                }
                TlsMessage::Certificate { chain, undecodable } => {
                    seen.certificates += 1;
                    assert_eq!(*undecodable, 0, "{at}");
                    assert!(!chain.is_empty(), "{at}: empty chain");
                    for c in chain {
                        assert_eq!(Some(c.serial.clone()), serials.next(), "{at}: serial");
                        let fmt = |s: i64| {
                            chrono::DateTime::from_timestamp(s, 0)
                                .unwrap()
                                .format("%Y-%m-%d %H:%M:%S (UTC)")
                                .to_string()
                        };
                        assert_eq!(Some(fmt(c.not_before)), utc.next(), "{at}: notBefore");
                        assert_eq!(Some(fmt(c.not_after)), utc.next(), "{at}: notAfter");
                        let cn = c.common_name.clone().expect("CN");
                        assert!(names.contains(&cn), "{at}: CN {cn} not in {names:?}");
                        if c.sql_server_fallback {
                            seen.fallback = true;
                            assert!(
                                c.self_signed,
                                "{at}: the fallback certificate is self-signed"
                            );
                            assert_eq!(c.subject, "CN=SSL_Self_Signed_Fallback");
                        }
                    }
                }
                TlsMessage::Alert(a) => {
                    seen.alerts += 1;
                    assert_eq!(Some(u8::from(a.level).to_string()), levels.next(), "{at}");
                    assert_eq!(Some(a.description.to_string()), descs.next(), "{at}");
                }
                TlsMessage::ChangeCipherSpec => seen.ccs += 1,
                TlsMessage::ApplicationData { .. } => seen.app_data += 1,
                TlsMessage::Malformed { what } => panic!("{at}: malformed {what}"),
                _ => {}
            }
        }
        assert_eq!(serials.next(), None, "{at}: tshark shows more certificates");
    }
    for ((stream, port), (_, buf)) in &flows {
        assert!(
            buf.is_empty(),
            "{name} stream {stream} port {port}: {} bytes left over",
            buf.len()
        );
    }
    Some(seen)
}

fn assert_full_handshake(seen: &Seen) {
    assert!(seen.frames >= 4, "{seen:?}");
    assert!(
        seen.client_hellos >= 1 && seen.server_hellos >= 1,
        "{seen:?}"
    );
    assert!(seen.certificates >= 1 && seen.ccs >= 2, "{seen:?}");
    assert!(
        seen.fallback,
        "the lab server uses SQL Server's fallback certificate: {seen:?}"
    );
}

#[test]
fn tls_healthy_tsql_login() {
    if let Some(s) = check("healthy-tsql-login-tls.pcap") {
        assert_full_handshake(&s);
        assert_eq!(s.server_version, Some(0x0303));
        assert!(s.app_data >= 1, "LOGIN7 travels as application data: {s:?}");
    }
}

#[test]
fn tls_healthy_tedious() {
    if let Some(s) = check("healthy-tedious-tls.pcap") {
        assert_full_handshake(&s);
        assert!(s.app_data >= 1, "{s:?}");
    }
}

#[test]
fn tls_healthy_impacket() {
    if let Some(s) = check("healthy-impacket.pcap") {
        assert_full_handshake(&s);
    }
}

#[test]
fn tls_cert_rejected() {
    if let Some(s) = check("tls-cert-rejected.pcap") {
        assert_full_handshake(&s);
        assert_eq!(
            s.app_data, 0,
            "the client hangs up after the handshake: {s:?}"
        );
    }
}

#[test]
fn tls_sspi_failed_impacket() {
    if let Some(s) = check("sspi-failed-impacket.pcap") {
        assert_full_handshake(&s);
    }
}

#[test]
fn tls_legacy_versions() {
    if let Some(s) = check("tls-1.0-tsql.pcap") {
        assert_eq!(s.server_version, Some(0x0301));
        assert!(tls::is_legacy(0x0301));
    }
    if let Some(s) = check("tls-1.1-impacket.pcap") {
        assert_eq!(s.server_version, Some(0x0302));
        assert_eq!(tls::version_name(0x0302), "TLS 1.1");
    }
}

/// Every NTLMSSP message in the Arkime NTLM capture (TDS LOGIN7/SSPI, SMB, HTTP, LDAP, DCERPC,
/// SMTP streams) against tshark: message type, flags, server challenge, target name, user,
/// domain and workstation. The message is found by its signature in the TCP payload, or by its
/// base64 form ("TlRMTVNTUA") where HTTP and SMTP carry it as text.
#[test]
fn ntlm_arkime_all_streams() {
    use tdsscope::proto::ntlm::{parse_ntlmssp, NtlmMessage};
    let name = "tds7-sspi-ntlm-ipv6-synthetic_arkime_ntlm_synthetic.pcap";
    let Some(path) = [
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/captures"),
        PathBuf::from("/work/shared/captures"),
    ]
    .into_iter()
    .map(|d| d.join(name))
    .find(|p| p.is_file()) else {
        eprintln!("{name} not found, skipping");
        return;
    };
    if !tshark_or_skip(name) {
        return;
    }
    let fields = [
        "frame.number",
        "ntlmssp.messagetype",
        "ntlmssp.negotiateflags",
        "ntlmssp.ntlmserverchallenge",
        "ntlmssp.challenge.target_name",
        "ntlmssp.auth.username",
        "ntlmssp.auth.domain",
        "ntlmssp.auth.hostname",
        "tcp.payload",
    ];
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&path)
        .args([
            "-d",
            "tcp.port==1433,tds",
            "-Y",
            "ntlmssp",
            "-T",
            "fields",
            "-E",
            "separator=/t",
        ])
        .args(fields.iter().flat_map(|f| ["-e", f]))
        .output()
        .expect("run tshark");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut checked = 0;
    let mut users = Vec::new();
    for line in text.lines() {
        let row: BTreeMap<&str, &str> = fields.iter().copied().zip(line.split('\t')).collect();
        let at = format!("frame {}", row["frame.number"]);
        let payload = unhex(row["tcp.payload"]);
        let blob = match find(&payload, b"NTLMSSP\0") {
            Some(i) => payload[i..].to_vec(),
            None => {
                let i = find(&payload, b"TlRMTVNTUA").unwrap_or_else(|| panic!("{at}: no NTLMSSP"));
                base64(&payload[i..])
            }
        };
        let msg = parse_ntlmssp(&blob).unwrap_or_else(|e| panic!("{at}: {e}"));
        let (kind, flags) = match &msg {
            NtlmMessage::Negotiate(n) => (1, n.flags),
            NtlmMessage::Challenge(c) => {
                assert_eq!(
                    hexs(&c.server_challenge),
                    row["ntlmssp.ntlmserverchallenge"],
                    "{at}"
                );
                assert_eq!(
                    c.target_name.as_deref().unwrap_or(""),
                    row["ntlmssp.challenge.target_name"],
                    "{at}"
                );
                (2, c.flags)
            }
            NtlmMessage::Authenticate(a) => {
                assert_eq!(a.user, row["ntlmssp.auth.username"], "{at}");
                assert_eq!(a.domain, row["ntlmssp.auth.domain"], "{at}");
                assert_eq!(a.workstation, row["ntlmssp.auth.hostname"], "{at}");
                assert!(!a.anonymous, "{at}");
                users.push(format!("{}\\{}", a.domain, a.user));
                (3, a.flags)
            }
            NtlmMessage::Unknown { message_type } => panic!("{at}: unknown type {message_type}"),
        };
        assert_eq!(format!("0x{kind:08x}"), row["ntlmssp.messagetype"], "{at}");
        assert_eq!(
            format!("0x{flags:08x}"),
            row["ntlmssp.negotiateflags"],
            "{at}"
        );
        checked += 1;
    }
    assert!(checked >= 28, "only {checked} NTLMSSP messages checked");
    assert!(users.contains(&"TDSDOM\\mona".to_string()), "{users:?}");
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn hexs(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Standard base64 up to the first byte outside its alphabet.
fn base64(text: &[u8]) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let sextets: Vec<u8> = text.iter().map_while(|&c| val(c)).collect();
    let mut out = Vec::new();
    for chunk in sextets.chunks(4) {
        let mut acc = 0u32;
        for (i, s) in chunk.iter().enumerate() {
            acc |= u32::from(*s) << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}
