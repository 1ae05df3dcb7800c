//! The decoder against tshark on every real capture in `shared/captures/`: per frame, the
//! IP addresses, TCP ports, raw sequence number, TCP length, flags and checksum status, and
//! UDP ports must equal tshark's (`-T fields`, first occurrence, checksum checks on).
//!
//! The capture readers live in another module being written in parallel, so this file
//! carries its own minimal classic-pcap and pcapng readers (test-only, trusting their input).
//! NetMon files are converted with `editcap -F pcap` into a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use tdsscope::capture::{Frame, FrameRef, LinkType};
use tdsscope::decode::{Decoded, Decoder, Packet, SkipReason, L4};
use tdsscope::limits::Limits;
use tdsscope::time::Timestamp;

fn captures_dir() -> Option<PathBuf> {
    let rel = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/captures");
    [rel, PathBuf::from("/work/shared/captures")]
        .into_iter()
        .find(|p| p.is_dir())
}

struct RawFrame {
    link: u32,
    ts: i64,
    data: Vec<u8>,
    orig_len: u32,
}

/// Classic pcap (LE/BE, µs/ns). Stops at the first incomplete record.
fn read_pcap(b: &[u8]) -> Option<Vec<RawFrame>> {
    let magic = b.get(..4)?;
    let (le, nanos) = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] => (true, false),
        [0x4d, 0x3c, 0xb2, 0xa1] => (true, true),
        [0xa1, 0xb2, 0xc3, 0xd4] => (false, false),
        [0xa1, 0xb2, 0x3c, 0x4d] => (false, true),
        _ => return None,
    };
    let u32_at = |at: usize| -> u32 {
        let w: [u8; 4] = b[at..at + 4].try_into().unwrap();
        if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    };
    let link = u32_at(20) & 0x0fff_ffff;
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= b.len() {
        let (sec, frac, incl, orig) = (u32_at(at), u32_at(at + 4), u32_at(at + 8), u32_at(at + 12));
        let start = at + 16;
        let end = start + incl as usize;
        if end > b.len() {
            break;
        }
        let frac_ns = if nanos { frac } else { frac.wrapping_mul(1000) };
        out.push(RawFrame {
            link,
            ts: i64::from(sec) * 1_000_000_000 + i64::from(frac_ns),
            data: b[start..end].to_vec(),
            orig_len: orig,
        });
        at = end;
    }
    Some(out)
}

/// pcapng: SHB (byte order), IDB (link types, per section), EPB, SPB and the obsolete PB.
/// Timestamps are not needed beyond ordering, so `if_tsresol` is ignored.
fn read_pcapng(b: &[u8]) -> Option<Vec<RawFrame>> {
    let mut out = Vec::new();
    let mut le = true;
    let mut links: Vec<u32> = Vec::new();
    let mut at = 0;
    while at + 12 <= b.len() {
        let raw_type: [u8; 4] = b[at..at + 4].try_into().unwrap();
        if raw_type == [0x0a, 0x0d, 0x0d, 0x0a] {
            le = b[at + 8..at + 12] == [0x4d, 0x3c, 0x2b, 0x1a];
            links.clear();
        }
        let u32_at = |p: usize| -> u32 {
            let w: [u8; 4] = b[p..p + 4].try_into().unwrap();
            if le {
                u32::from_le_bytes(w)
            } else {
                u32::from_be_bytes(w)
            }
        };
        let u16_at = |p: usize| -> u16 {
            let w: [u8; 2] = b[p..p + 2].try_into().unwrap();
            if le {
                u16::from_le_bytes(w)
            } else {
                u16::from_be_bytes(w)
            }
        };
        let ty = u32_at(at);
        let len = u32_at(at + 4) as usize;
        if len < 12 || at + len > b.len() {
            break;
        }
        let body = at + 8;
        match ty {
            1 => links.push(u32::from(u16_at(body))),
            6 => {
                let iface = u32_at(body) as usize;
                let ts = (u64::from(u32_at(body + 4)) << 32) | u64::from(u32_at(body + 8));
                let cap = u32_at(body + 12) as usize;
                let orig = u32_at(body + 16);
                out.push(RawFrame {
                    link: *links.get(iface)?,
                    ts: ts as i64,
                    data: b[body + 20..body + 20 + cap].to_vec(),
                    orig_len: orig,
                });
            }
            3 => {
                let orig = u32_at(body);
                let cap = (orig as usize).min(len - 16);
                out.push(RawFrame {
                    link: *links.first()?,
                    ts: 0,
                    data: b[body + 4..body + 4 + cap].to_vec(),
                    orig_len: orig,
                });
            }
            2 => {
                let iface = usize::from(u16_at(body));
                let cap = u32_at(body + 12) as usize;
                let orig = u32_at(body + 16);
                out.push(RawFrame {
                    link: *links.get(iface)?,
                    ts: 0,
                    data: b[body + 20..body + 20 + cap].to_vec(),
                    orig_len: orig,
                });
            }
            _ => {}
        }
        at += len;
    }
    Some(out)
}

/// Per-frame lower-layer fields, in tshark's text forms.
#[derive(Debug, Default, PartialEq, Eq, Clone)]
struct Fields {
    ip_src: String,
    ip_dst: String,
    tcp_srcport: String,
    tcp_dstport: String,
    tcp_seq_raw: String,
    tcp_len: String,
    tcp_flags: String,
    tcp_checksum_status: String,
    udp_srcport: String,
    udp_dstport: String,
}

const TSHARK_FIELDS: [&str; 16] = [
    "frame.number",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.seq_raw",
    "tcp.len",
    "tcp.flags",
    "tcp.checksum.status",
    "udp.srcport",
    "udp.dstport",
    "icmp.type",
    "icmpv6.type",
    "ip.proto",
];

/// Runs tshark; None (with the reason printed) when it cannot run.
fn tshark_fields(path: &Path) -> Option<BTreeMap<u64, (Fields, bool)>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(path).args([
        "-o",
        "tcp.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
        "-T",
        "fields",
        "-E",
        "occurrence=f",
        "-E",
        "separator=/t",
    ]);
    for f in TSHARK_FIELDS {
        cmd.args(["-e", f]);
    }
    let out = match cmd.output() {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            eprintln!(
                "skipping {}: tshark failed: {}",
                path.display(),
                String::from_utf8_lossy(&o.stderr)
            );
            return None;
        }
        Err(e) => {
            eprintln!("skipping tshark comparison: cannot run tshark: {e}");
            return None;
        }
    };
    let mut map = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let c: Vec<&str> = line.split('\t').collect();
        if c.len() < TSHARK_FIELDS.len() {
            continue;
        }
        let no: u64 = c[0].parse().unwrap();
        // IPv6 tunnelled in IPv4 (protocol 41): the connection's addresses are the inner ones.
        let (src, dst) = if c[1].is_empty() || c[15] == "41" {
            (c[3], c[4])
        } else {
            (c[1], c[2])
        };
        let is_icmp = !c[13].is_empty() || !c[14].is_empty();
        map.insert(
            no,
            (
                Fields {
                    ip_src: src.to_string(),
                    ip_dst: dst.to_string(),
                    tcp_srcport: c[5].to_string(),
                    tcp_dstport: c[6].to_string(),
                    tcp_seq_raw: c[7].to_string(),
                    tcp_len: c[8].to_string(),
                    tcp_flags: c[9].to_string(),
                    tcp_checksum_status: c[10].to_string(),
                    udp_srcport: c[11].to_string(),
                    udp_dstport: c[12].to_string(),
                },
                is_icmp,
            ),
        );
    }
    Some(map)
}

fn addr(a: IpAddr) -> String {
    a.to_string()
}

/// Our decode of one frame in tshark's text forms; None when we produced no packet.
fn our_fields(p: &Packet<'_>) -> Fields {
    let mut f = Fields {
        ip_src: addr(p.ip.src),
        ip_dst: addr(p.ip.dst),
        ..Fields::default()
    };
    match &p.l4 {
        L4::Tcp(t) => {
            f.tcp_srcport = t.src_port.to_string();
            f.tcp_dstport = t.dst_port.to_string();
            f.tcp_seq_raw = t.seq.to_string();
            f.tcp_len = t.payload_len.to_string();
            f.tcp_flags = format!("0x{:04x}", t.flags.0);
            f.tcp_checksum_status = match t.checksum_ok {
                Some(true) => "1",
                Some(false) => "0",
                None => "2",
            }
            .to_string();
        }
        L4::Udp(u) => {
            f.udp_srcport = u.src_port.to_string();
            f.udp_dstport = u.dst_port.to_string();
        }
        L4::Icmp(e) => {
            // tshark's first tcp/udp occurrence is the quoted header's.
            if let Some(q) = e.original {
                let (s, d) = (
                    q.src_port.map(|p| p.to_string()).unwrap_or_default(),
                    q.dst_port.map(|p| p.to_string()).unwrap_or_default(),
                );
                match q.protocol {
                    6 => (f.tcp_srcport, f.tcp_dstport) = (s, d),
                    17 => (f.udp_srcport, f.udp_dstport) = (s, d),
                    _ => {}
                }
            }
        }
        L4::IcmpOther => {}
    }
    f
}

/// Frames of one capture file, and the file tshark should read for the same frame numbers.
fn load(path: &Path, tmp: &Path) -> Result<(Vec<RawFrame>, PathBuf), String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    if let Some(frames) = read_pcap(&bytes) {
        return Ok((frames, path.to_path_buf()));
    }
    if bytes.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        return read_pcapng(&bytes)
            .map(|f| (f, path.to_path_buf()))
            .ok_or_else(|| "pcapng unreadable by the test reader".to_string());
    }
    let out = tmp.join(format!(
        "{}.pcap",
        path.file_name().unwrap().to_string_lossy()
    ));
    let st = Command::new("editcap")
        .args(["-F", "pcap"])
        .arg(path)
        .arg(&out)
        .output()
        .map_err(|e| format!("cannot run editcap: {e}"))?;
    if !st.status.success() {
        return Err(format!(
            "editcap refused: {}",
            String::from_utf8_lossy(&st.stderr)
        ));
    }
    let bytes = std::fs::read(&out).map_err(|e| e.to_string())?;
    read_pcap(&bytes)
        .map(|f| (f, out.clone()))
        .ok_or_else(|| "editcap output unreadable".to_string())
}

#[test]
fn lower_layers_match_tshark_on_every_capture() {
    let dir = captures_dir().expect("the shared captures directory");
    if !crate::util::tshark_or_skip("lower_layers_match_tshark_on_every_capture") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e != "md"))
        .collect();
    paths.sort();
    let mut mismatches = Vec::new();
    let mut compared_files = 0;
    for path in &paths {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let (frames, tshark_path) = match load(path, tmp.path()) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("skipping {name}: {e}");
                continue;
            }
        };
        let Some(theirs) = tshark_fields(&tshark_path) else {
            continue;
        };
        compared_files += 1;
        let mut dec = Decoder::new(&Limits::default());
        let (mut tcp, mut udp, mut icmp, mut skipped) = (0, 0, 0, 0);
        for (i, rf) in frames.iter().enumerate() {
            let no = i as u64 + 1;
            let frame = Frame {
                at: FrameRef { input: 0, no },
                ts: Timestamp::from_nanos(rf.ts),
                link: LinkType(rf.link),
                data: &rf.data,
                orig_len: rf.orig_len,
            };
            let (want, want_icmp) = theirs.get(&no).cloned().unwrap_or_default();
            match dec.decode(&frame) {
                Decoded::Packet(p) => {
                    match p.l4 {
                        L4::Tcp(_) => tcp += 1,
                        L4::Udp(_) => udp += 1,
                        L4::Icmp(_) | L4::IcmpOther => icmp += 1,
                    }
                    let is_icmp = matches!(p.l4, L4::Icmp(_) | L4::IcmpOther);
                    let mut got = our_fields(&p);
                    let mut want = want.clone();
                    if is_icmp {
                        // Only the quoted ports are ours to compare; tshark's quoted TCP
                        // fields beyond ports are not in QuotedHeader.
                        want.tcp_seq_raw.clear();
                        want.tcp_len.clear();
                        want.tcp_flags.clear();
                        want.tcp_checksum_status.clear();
                        if matches!(p.l4, L4::IcmpOther) {
                            got.tcp_srcport = want.tcp_srcport.clone();
                            got.tcp_dstport = want.tcp_dstport.clone();
                            got.udp_srcport = want.udp_srcport.clone();
                            got.udp_dstport = want.udp_dstport.clone();
                        }
                    }
                    if got != want || is_icmp != want_icmp {
                        mismatches.push(format!(
                            "{name} #{no}: ours {got:?} (icmp {is_icmp}) tshark {want:?} (icmp {want_icmp})"
                        ));
                    }
                }
                Decoded::FragmentHeld => {}
                Decoded::Skipped(r) => {
                    skipped += 1;
                    // A frame tshark decodes as IP with TCP or UDP must not be skipped,
                    // except for transports we do not decode (tunnels put TCP inside).
                    let tshark_l4 = !want.tcp_srcport.is_empty() || !want.udp_srcport.is_empty();
                    let ok = match r {
                        SkipReason::NotIp | SkipReason::UnsupportedLink => want.ip_src.is_empty(),
                        SkipReason::OtherTransport => true,
                        _ => !tshark_l4,
                    };
                    if !ok {
                        mismatches.push(format!("{name} #{no}: skipped {r:?}, tshark {want:?}"));
                    }
                }
            }
        }
        let s = dec.stats();
        eprintln!(
            "{name}: {} frames, tcp {tcp} udp {udp} icmp {icmp} skipped {skipped} {:?} \
             bad tcp csum {} ip len>frame {} frag held {} reassembled {}",
            frames.len(),
            s.skipped_by_reason()
                .filter(|(_, n)| *n > 0)
                .collect::<Vec<_>>(),
            s.bad_tcp_checksums,
            s.ip_length_exceeds_frame,
            s.fragments_held,
            s.fragments_reassembled,
        );
    }
    for m in mismatches.iter().take(40) {
        eprintln!("{m}");
    }
    assert!(compared_files > 0 || paths.is_empty());
    assert!(
        mismatches.is_empty(),
        "{} frames differ from tshark",
        mismatches.len()
    );
}

// ---- fragments, checked against tshark's reassembly ---------------------------------------

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn v4_fragment(proto: u8, id: u16, offset: usize, more: bool, data: &[u8]) -> Vec<u8> {
    let mut p = vec![0x45, 0x00];
    p.extend_from_slice(&((20 + data.len()) as u16).to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    let ff = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
    p.extend_from_slice(&ff.to_be_bytes());
    p.extend_from_slice(&[64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    // A correct header checksum, so tshark does not flag it.
    let c = !tdsscope::decode::checksum::fold(tdsscope::decode::checksum::add_words(0, &p));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(data);
    eth(0x0800, &p)
}

fn v6_fragment(id: u32, offset: usize, more: bool, data: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[44, 64]);
    p.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    p.extend_from_slice(
        &"2001:db8::2"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    p.extend_from_slice(&[17, 0]);
    p.extend_from_slice(&((offset as u16) | u16::from(more)).to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(data);
    eth(0x86dd, &p)
}

fn udp(src: &str, dst: &str, len: usize) -> Vec<u8> {
    let mut u = vec![0x13, 0x88, 0x05, 0x9a];
    u.extend_from_slice(&((8 + len) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend((0..len).map(|i| (i % 253) as u8));
    let c = tdsscope::decode::checksum::transport_checksum(
        src.parse().unwrap(),
        dst.parse().unwrap(),
        17,
        &u,
    );
    u[6..8].copy_from_slice(&c.to_be_bytes());
    u
}

fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut b = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    b.extend_from_slice(&65535u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        b.extend_from_slice(&(1_000_000 + i as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&(f.len() as u32).to_le_bytes());
        b.extend_from_slice(&(f.len() as u32).to_le_bytes());
        b.extend_from_slice(f);
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn reassembly_matches_tshark() {
    if !crate::util::tshark_or_skip("reassembly_matches_tshark") {
        return;
    }
    let u4 = udp("10.0.0.1", "10.0.0.2", 1200); // 1208 bytes
    let mut tcp = vec![
        0x05, 0x99, 0xc3, 0x50, /* seq */ 0, 0, 0x10, 0, /* ack */ 0, 0, 0x20, 0,
        /* offset 5 */ 0x50, /* PSH ACK */ 0x18, /* window */ 0x10, 0, 0, 0, 0, 0,
    ];
    tcp.extend((0..600).map(|i| (i % 7) as u8 + b'a'));
    let c = tdsscope::decode::checksum::transport_checksum(
        "10.0.0.1".parse().unwrap(),
        "10.0.0.2".parse().unwrap(),
        6,
        &tcp,
    );
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    let u6 = udp("2001:db8::1", "2001:db8::2", 900);
    let frames = vec![
        // UDP over IPv4 in three fragments, last one first, middle completes.
        v4_fragment(17, 1, 0, true, &u4[..496]),
        v4_fragment(17, 1, 1000, false, &u4[1000..]),
        v4_fragment(17, 1, 496, true, &u4[496..1000]),
        // TCP over IPv4 in two fragments, in order.
        v4_fragment(6, 2, 0, true, &tcp[..304]),
        v4_fragment(6, 2, 304, false, &tcp[304..]),
        // UDP over IPv6 in two fragments, out of order.
        v6_fragment(0xabcd, 504, false, &u6[504..]),
        v6_fragment(0xabcd, 0, true, &u6[..504]),
        // A lone fragment that never completes.
        v4_fragment(17, 3, 0, true, &u4[..496]),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("frags.pcap");
    write_pcap(&path, &frames);
    let theirs = tshark_fields(&path).unwrap();
    let mut dec = Decoder::new(&Limits::default());
    let mut outcomes = Vec::new();
    for (i, data) in frames.iter().enumerate() {
        let no = i as u64 + 1;
        let frame = Frame {
            at: FrameRef { input: 0, no },
            ts: Timestamp::from_secs_nanos(1_000_000 + i as i64, 0),
            link: LinkType::ETHERNET,
            data,
            orig_len: data.len() as u32,
        };
        let (want, _) = theirs.get(&no).cloned().unwrap_or_default();
        match dec.decode(&frame) {
            Decoded::Packet(p) => {
                assert!(p.ip.reassembled, "frame {no}");
                let mut got = our_fields(&p);
                // We give no checksum verdict on reassembled datagrams; tshark does.
                assert_eq!(
                    got.tcp_checksum_status,
                    if got.tcp_srcport.is_empty() { "" } else { "2" }
                );
                got.tcp_checksum_status = want.tcp_checksum_status.clone();
                assert_eq!(got, want, "frame {no}");
                outcomes.push('P');
            }
            Decoded::FragmentHeld => {
                assert!(
                    want.tcp_srcport.is_empty() && want.udp_srcport.is_empty(),
                    "frame {no}: {want:?}"
                );
                outcomes.push('H');
            }
            Decoded::Skipped(r) => panic!("frame {no}: {r:?}"),
        }
    }
    assert_eq!(outcomes.iter().collect::<String>(), "HHPHPHPH");
    assert_eq!(dec.stats().fragments_reassembled, 3);
    assert_eq!(dec.fragments_pending(), 1);
}

/// Throughput, not a pass/fail test: `cargo test --release --test decode_tshark decode_speed
/// -- --ignored --nocapture`. Decodes two captures many times and prints ns/frame, next to
/// etherparse's lax slicer reading the same fields, which is how the hand-written views were
/// chosen (see `src/decode/decoder.rs`).
#[test]
#[ignore]
fn decode_speed() {
    let Some(dir) = captures_dir() else { return };
    for name in [
        "tds-merged-plus-garbage_malcolm_TDS.pcap",
        "tcp1433-syn-unanswered-pcapng_chrissanders_synscan.pcapng",
    ] {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let frames = read_pcap(&bytes).or_else(|| read_pcapng(&bytes)).unwrap();
        for round in 0..3 {
            let (ours, theirs, theirs_csum) = measure(&frames);
            eprintln!(
                "{name} round {round}: tdsscope {ours:.1} ns/frame; etherparse lax slicer \
                 {theirs:.1} ns/frame without checksum, {theirs_csum:.1} with"
            );
        }
    }
}

fn measure(frames: &[RawFrame]) -> (f64, f64, f64) {
    use std::hint::black_box;
    use std::time::Instant;
    let rounds = 1000;
    let count = (rounds * frames.len()) as f64;
    let mut dec = Decoder::new(&Limits::default());
    let t0 = Instant::now();
    let mut n = 0u64;
    for _ in 0..rounds {
        for (i, rf) in frames.iter().enumerate() {
            let frame = Frame {
                at: FrameRef {
                    input: 0,
                    no: i as u64 + 1,
                },
                ts: Timestamp::from_nanos(rf.ts),
                link: LinkType(rf.link),
                data: &rf.data,
                orig_len: rf.orig_len,
            };
            if let Decoded::Packet(p) = dec.decode(&frame) {
                if let L4::Tcp(t) = p.l4 {
                    n += u64::from(t.payload_len)
                        + u64::from(t.checksum_ok == Some(true))
                        + u64::from(t.options.mss.unwrap_or(0));
                }
            }
        }
    }
    let ours = t0.elapsed().as_nanos() as f64 / count;
    black_box(n);
    let mut theirs = [0.0; 2];
    for (k, with_checksum) in [false, true].into_iter().enumerate() {
        let t0 = Instant::now();
        let mut n = 0u64;
        for _ in 0..rounds {
            for rf in frames {
                let Ok(p) = etherparse::LaxSlicedPacket::from_ethernet(&rf.data) else {
                    continue;
                };
                if let (Some(net), Some(etherparse::TransportSlice::Tcp(t))) =
                    (&p.net, &p.transport)
                {
                    let mut mss = 0u16;
                    for o in t.options_iterator().flatten() {
                        if let etherparse::TcpOptionElement::MaximumSegmentSize(m) = o {
                            mss = m;
                        }
                    }
                    let ok = with_checksum
                        && match net {
                            etherparse::LaxNetSlice::Ipv4(ip) => {
                                let h = ip.header();
                                t.calc_checksum_ipv4(h.source(), h.destination())
                                    .is_ok_and(|c| c == t.checksum())
                            }
                            _ => false,
                        };
                    n += t.payload().len() as u64 + u64::from(mss) + u64::from(ok);
                }
            }
        }
        theirs[k] = t0.elapsed().as_nanos() as f64 / count;
        black_box(n);
    }
    (ours, theirs[0], theirs[1])
}
