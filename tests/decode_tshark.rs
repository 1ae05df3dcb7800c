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

const TSHARK_FIELDS: [&str; 15] = [
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
        let (src, dst) = if c[1].is_empty() {
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
    let Some(dir) = captures_dir() else {
        eprintln!("skipping: no shared/captures directory");
        return;
    };
    if Command::new("tshark").arg("-v").output().is_err() {
        eprintln!("skipping: tshark is not installed");
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
