//! Frame-by-frame comparison of our Wireshark analysis flags with tshark 4.0 on the real
//! captures in `shared/captures`. The decoder is being written elsewhere, so this test reads
//! pcap/pcapng and decodes Ethernet/SLL/NULL/raw IP and TCP with a small test-only parser.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::Command;

use super::analysis as a;
use super::*;
use crate::decode::{IpInfo, Packet, TcpFlags, TcpOptions, TcpSegment, L4};
use crate::limits::Limits;

fn captures_dir() -> Option<PathBuf> {
    let local = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/captures"));
    [local, PathBuf::from("/work/shared/captures")]
        .into_iter()
        .find(|p| p.is_dir())
}

struct RawFrame {
    no: u64,
    ts_ns: i64,
    link: u32,
    orig_len: u32,
    data: Vec<u8>,
}

fn u16_at(b: &[u8], i: usize, be: bool) -> u16 {
    let x = [b[i], b[i + 1]];
    if be {
        u16::from_be_bytes(x)
    } else {
        u16::from_le_bytes(x)
    }
}
fn u32_at(b: &[u8], i: usize, be: bool) -> u32 {
    let x = [b[i], b[i + 1], b[i + 2], b[i + 3]];
    if be {
        u32::from_be_bytes(x)
    } else {
        u32::from_le_bytes(x)
    }
}

fn read_frames(bytes: &[u8]) -> Option<Vec<RawFrame>> {
    let magic = u32_at(bytes, 0, false);
    let mut out = Vec::new();
    match magic {
        0xa1b2c3d4 | 0xd4c3b2a1 | 0xa1b23c4d | 0x4d3cb2a1 => {
            let be = magic == 0xd4c3b2a1 || magic == 0x4d3cb2a1;
            let nanos = magic == 0xa1b23c4d || magic == 0x4d3cb2a1;
            let link = u32_at(bytes, 20, be);
            let mut off = 24;
            while off + 16 <= bytes.len() {
                let secs = i64::from(u32_at(bytes, off, be));
                let frac = i64::from(u32_at(bytes, off + 4, be));
                let incl = u32_at(bytes, off + 8, be) as usize;
                let orig = u32_at(bytes, off + 12, be);
                let data = bytes.get(off + 16..off + 16 + incl)?.to_vec();
                out.push(RawFrame {
                    no: out.len() as u64 + 1,
                    ts_ns: secs * 1_000_000_000 + if nanos { frac } else { frac * 1000 },
                    link,
                    orig_len: orig,
                    data,
                });
                off += 16 + incl;
            }
        }
        0x0a0d0d0a => {
            let mut off = 0;
            let mut be = false;
            let mut links: Vec<(u32, i64)> = Vec::new();
            while off + 12 <= bytes.len() {
                let btype = u32_at(bytes, off, be);
                if btype == 0x0a0d0d0a {
                    be = u32_at(bytes, off + 8, false) != 0x1a2b3c4d;
                    links.clear();
                }
                let blen = u32_at(bytes, off + 4, be) as usize;
                if blen < 12 || off + blen > bytes.len() {
                    break;
                }
                let body = &bytes[off + 8..off + blen - 4];
                match btype {
                    1 => {
                        // Default resolution µs; if_tsresol (option 9) may change it.
                        let mut unit_ns = 1000i64;
                        let mut o = 8;
                        while o + 4 <= body.len() {
                            let code = u16_at(body, o, be);
                            let len = u16_at(body, o + 2, be) as usize;
                            if code == 0 {
                                break;
                            }
                            if code == 9 && len == 1 {
                                let r = body[o + 4];
                                unit_ns = if r & 0x80 == 0 {
                                    1_000_000_000 / 10i64.pow(u32::from(r))
                                } else {
                                    1_000_000_000 >> (r & 0x7f)
                                }
                                .max(1);
                            }
                            o += 4 + len.div_ceil(4) * 4;
                        }
                        links.push((u32::from(u16_at(body, 0, be)), unit_ns));
                    }
                    6 => {
                        let ifc = u32_at(body, 0, be) as usize;
                        let hi = u64::from(u32_at(body, 4, be));
                        let lo = u64::from(u32_at(body, 8, be));
                        let cap = u32_at(body, 12, be) as usize;
                        let orig = u32_at(body, 16, be);
                        let (link, unit) = links.get(ifc).copied().unwrap_or((1, 1000));
                        out.push(RawFrame {
                            no: out.len() as u64 + 1,
                            ts_ns: ((hi << 32 | lo) as i64).saturating_mul(unit),
                            link,
                            orig_len: orig,
                            data: body.get(20..20 + cap)?.to_vec(),
                        });
                    }
                    3 => {
                        let orig = u32_at(body, 0, be);
                        let (link, _) = links.first().copied().unwrap_or((1, 1000));
                        let data = body[4..].to_vec();
                        out.push(RawFrame {
                            no: out.len() as u64 + 1,
                            ts_ns: 0,
                            link,
                            orig_len: orig,
                            data: data[..(orig as usize).min(data.len())].to_vec(),
                        });
                    }
                    _ => {}
                }
                off += blen;
            }
        }
        _ => return None,
    }
    Some(out)
}

/// Decodes a frame down to TCP; None for anything else (fragments included).
fn decode(f: &RawFrame) -> Option<Packet<'_>> {
    let d = &f.data[..];
    let (ip_off, ethertype) = match f.link {
        1 => {
            let mut off = 12;
            let mut et = u16_at(d, off, true);
            while et == 0x8100 || et == 0x88a8 {
                off += 4;
                et = u16_at(d, off, true);
            }
            (off + 2, et)
        }
        113 => (16, u16_at(d, 14, true)),
        0 => {
            let fam = u32_at(d, 0, false).min(u32_at(d, 0, true));
            (4, if fam == 2 { 0x0800 } else { 0x86dd })
        }
        101 | 12 | 14 | 228 | 229 => (0, if d.first()? >> 4 == 4 { 0x0800 } else { 0x86dd }),
        _ => return None,
    };
    let ip = d.get(ip_off..)?;
    let (src, dst, ttl, ip_id, l4) = match ethertype {
        0x0800 => {
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            let total = usize::from(u16_at(ip, 2, true));
            let frag = u16_at(ip, 6, true);
            if frag & 0x3fff != 0 || *ip.get(9)? != 6 || total < ihl {
                return None;
            }
            let src = IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
            let dst = IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
            let end = total.min(ip.len());
            // Like tshark, an IP length beyond the frame's length on the wire is not
            // believed: only a snaplen cut (captured < wire) leaves bytes "missing".
            let on_wire = (f.orig_len as usize).saturating_sub(ip_off);
            (
                src,
                dst,
                ip[8],
                Some(u32::from(u16_at(ip, 4, true))),
                (ip.get(ihl..end)?, total.min(on_wire).saturating_sub(ihl)),
            )
        }
        0x86dd => {
            if *ip.get(6)? != 6 {
                return None;
            }
            let plen = usize::from(u16_at(ip, 4, true));
            let mut s = [0u8; 16];
            s.copy_from_slice(ip.get(8..24)?);
            let mut t = [0u8; 16];
            t.copy_from_slice(ip.get(24..40)?);
            let end = (40 + plen).min(ip.len());
            let on_wire = (f.orig_len as usize).saturating_sub(ip_off + 40);
            (
                IpAddr::V6(Ipv6Addr::from(s)),
                IpAddr::V6(Ipv6Addr::from(t)),
                ip[7],
                None,
                (ip.get(40..end)?, plen.min(on_wire)),
            )
        }
        _ => return None,
    };
    let (tcp, l4_len) = l4;
    let hlen = usize::from(tcp.get(12)? >> 4) * 4;
    if hlen < 20 || tcp.len() < hlen || l4_len < hlen {
        return None;
    }
    let mut options = TcpOptions {
        any: hlen > 20,
        ..TcpOptions::default()
    };
    let mut o = 20;
    while o < hlen {
        match tcp[o] {
            0 => break,
            1 => o += 1,
            k => {
                let len = usize::from(*tcp.get(o + 1)?);
                if len < 2 || o + len > hlen {
                    break;
                }
                match (k, len) {
                    (2, 4) => options.mss = Some(u16_at(tcp, o + 2, true)),
                    (3, 3) => options.window_scale = Some(tcp[o + 2]),
                    (8, 10) => {
                        options.timestamps =
                            Some((u32_at(tcp, o + 2, true), u32_at(tcp, o + 6, true)))
                    }
                    _ => {}
                }
                o += len;
            }
        }
    }
    Some(Packet {
        frame: FrameRef { input: 0, no: f.no },
        ts: Timestamp::from_nanos(f.ts_ns),
        wire_len: f.orig_len,
        ip: IpInfo {
            src,
            dst,
            ttl,
            ip_id,
            reassembled: false,
        },
        l4: L4::Tcp(TcpSegment {
            src_port: u16_at(tcp, 0, true),
            dst_port: u16_at(tcp, 2, true),
            seq: u32_at(tcp, 4, true),
            ack: u32_at(tcp, 8, true),
            flags: TcpFlags(tcp[13]),
            window: u16_at(tcp, 14, true),
            options,
            payload: &tcp[hlen..],
            payload_len: (l4_len - hlen) as u32,
            checksum_ok: None,
        }),
    })
}

/// The flags in our bit order, as tshark field names.
const FIELDS: [(u16, &str); 14] = [
    (a::RETRANSMISSION, "retransmission"),
    (a::FAST_RETRANSMISSION, "fast_retransmission"),
    (a::SPURIOUS_RETRANSMISSION, "spurious_retransmission"),
    (a::KEEP_ALIVE, "keep_alive"),
    (a::KEEP_ALIVE_ACK, "keep_alive_ack"),
    (a::ZERO_WINDOW, "zero_window"),
    (a::ZERO_WINDOW_PROBE, "zero_window_probe"),
    (a::ZERO_WINDOW_PROBE_ACK, "zero_window_probe_ack"),
    (a::WINDOW_UPDATE, "window_update"),
    (a::WINDOW_FULL, "window_full"),
    (a::DUPLICATE_ACK, "duplicate_ack"),
    (a::LOST_SEGMENT, "lost_segment"),
    (a::ACK_LOST_SEGMENT, "ack_lost_segment"),
    (a::OUT_OF_ORDER, "out_of_order"),
];

fn tshark_flags(path: &std::path::Path) -> Option<BTreeMap<u64, u16>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(path)
        .args(["-Y", "tcp.analysis.flags", "-T", "fields"]);
    cmd.args(["-E", "occurrence=f", "-e", "frame.number"]);
    for (_, name) in FIELDS {
        cmd.arg("-e").arg(format!("tcp.analysis.{name}"));
    }
    let out = cmd.output().ok()?;
    if !out.status.success() {
        return None;
    }
    let mut m = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut cols = line.split('\t');
        let no: u64 = cols.next()?.parse().ok()?;
        let mut bits = 0;
        for ((bit, _), c) in FIELDS.iter().zip(cols) {
            if !c.is_empty() {
                bits |= bit;
            }
        }
        if bits != 0 {
            m.insert(no, bits);
        }
    }
    Some(m)
}

struct Null;
impl StreamSink for Null {
    fn on_event(&mut self, _ev: StreamEvent<'_>) {}
    fn on_close(&mut self, _facts: TcpFacts) {}
}

fn names(bits: u16) -> String {
    FIELDS
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(",")
}

/// Compares one capture; returns (frames flagged by tshark, mismatching frames).
fn compare(name: &str) -> Option<(usize, Vec<String>)> {
    compare_path(&captures_dir()?.join(name))
}

fn compare_path(path: &std::path::Path) -> Option<(usize, Vec<String>)> {
    let path = path.to_path_buf();
    let bytes = std::fs::read(&path).ok()?;
    let frames = read_frames(&bytes)?;
    let want = tshark_flags(&path)?;
    let mut tracker = Tracker::new(&Limits::default());
    let mut got = BTreeMap::new();
    for f in &frames {
        if let Some(p) = decode(f) {
            tracker.on_packet(&p, &mut Null);
            if tracker.last_flags != 0 {
                got.insert(f.no, tracker.last_flags);
            }
        }
    }
    tracker.finish(&mut Null);
    let mut bad = Vec::new();
    let all: std::collections::BTreeSet<u64> = want.keys().chain(got.keys()).copied().collect();
    for no in all {
        let w = want.get(&no).copied().unwrap_or(0);
        let g = got.get(&no).copied().unwrap_or(0);
        if w != g {
            bad.push(format!(
                "frame {no}: tshark [{}] ours [{}]",
                names(w),
                names(g)
            ));
        }
    }
    Some((want.len(), bad))
}

#[test]
fn analysis_flags_match_tshark_frame_by_frame() {
    if Command::new("tshark").arg("-v").output().is_err() {
        eprintln!("tshark not installed: skipped");
        return;
    }
    let files = [
        "tds7-login-loginack_arkime_tds7.pcap",
        "tds-rpc-midstream_wswiki_ms-sql-tds-rpc-requests.pcap",
        "tds-midstream-retrans_wswiki_startmenu_Dameware.pcap",
        "tds7-sspi-ntlm-ipv6-synthetic_arkime_ntlm_synthetic.pcap",
        "tds5-sybase-port3106_arkime_tds5.pcap",
        "tds-merged-plus-garbage_malcolm_TDS.pcap",
        "tcp1433-one-sided_zeek_one-sided-2745.pcap",
        "tcp1433-syn-unanswered-pcapng_chrissanders_synscan.pcapng",
        "pcapng-multi-linktype_wswiki_pcapng-example.pcapng",
        "pcapng-many-interfaces_wswiki_many_interfaces.pcapng",
        "pcap-bigendian-tcp_wswiki_TNS_Oracle2.pcap",
    ];
    let mut failures = Vec::new();
    let mut checked = 0;
    for f in files {
        let Some((flagged, bad)) = compare(f) else {
            eprintln!("{f}: not available, skipped");
            continue;
        };
        checked += 1;
        eprintln!("{f}: tshark flags {flagged} frames, {} differ", bad.len());
        for b in bad.iter().take(15) {
            eprintln!("  {b}");
        }
        if !bad.is_empty() {
            failures.push(format!("{f}: {} frames differ", bad.len()));
        }
    }
    // NetMon files: our test reader has no NetMon support, so editcap converts them
    // (frame numbers are kept).
    let tmp = tempfile::tempdir().unwrap();
    for f in [
        "netmon2-ipv6-port2433_wswiki_FTPv6-1.cap",
        "netmon2-ssrp-bcast_wswiki_netlog5.cap",
        "netmon2_wswiki_Mixed1.cap",
        "netmon2_wswiki_RTSPPACKETS1.cap",
    ] {
        let Some(src) = captures_dir().map(|d| d.join(f)) else {
            continue;
        };
        let dst = tmp.path().join(format!("{f}.pcap"));
        let ok = Command::new("editcap")
            .args(["-F", "pcap"])
            .arg(&src)
            .arg(&dst)
            .status()
            .is_ok_and(|s| s.success());
        let Some((flagged, bad)) = ok.then(|| compare_path(&dst)).flatten() else {
            eprintln!("{f}: not available, skipped");
            continue;
        };
        checked += 1;
        eprintln!("{f}: tshark flags {flagged} frames, {} differ", bad.len());
        for b in bad.iter().take(15) {
            eprintln!("  {b}");
        }
        if !bad.is_empty() {
            failures.push(format!("{f}: {} frames differ", bad.len()));
        }
    }
    assert!(checked > 0 || captures_dir().is_none());
    assert!(failures.is_empty(), "{failures:?}");
}

/// A pcap file built packet by packet (Ethernet / IPv4 / TCP, checksums left zero: tshark
/// does not verify them by default).
struct PcapWriter {
    buf: Vec<u8>,
}

struct Synth {
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    ip_id: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    win: u16,
    wscale: Option<u8>,
    payload: Vec<u8>,
    ts_ns: i64,
}

impl PcapWriter {
    fn new() -> PcapWriter {
        let mut buf = Vec::new();
        buf.extend(0xa1b2c3d4u32.to_le_bytes());
        buf.extend(2u16.to_le_bytes());
        buf.extend(4u16.to_le_bytes());
        buf.extend([0u8; 8]);
        buf.extend(65535u32.to_le_bytes());
        buf.extend(1u32.to_le_bytes());
        PcapWriter { buf }
    }

    fn push(&mut self, p: &Synth) {
        let mut opts = Vec::new();
        if p.flags & TcpFlags::SYN != 0 {
            opts.extend([2, 4, 0x05, 0xb4]);
            if let Some(s) = p.wscale {
                opts.extend([1, 3, 3, s]);
            }
        }
        let tcp_len = 20 + opts.len();
        let total = 20 + tcp_len + p.payload.len();
        let mut f = Vec::new();
        f.extend([0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 6, 0x08, 0x00]);
        f.extend([0x45, 0]);
        f.extend((total as u16).to_be_bytes());
        f.extend(p.ip_id.to_be_bytes());
        f.extend([0x40, 0, 64, 6, 0, 0]);
        f.extend(p.src.0);
        f.extend(p.dst.0);
        f.extend(p.src.1.to_be_bytes());
        f.extend(p.dst.1.to_be_bytes());
        f.extend(p.seq.to_be_bytes());
        f.extend(p.ack.to_be_bytes());
        f.push(((tcp_len / 4) as u8) << 4);
        f.push(p.flags);
        f.extend(p.win.to_be_bytes());
        f.extend([0, 0, 0, 0]);
        f.extend(&opts);
        f.extend(&p.payload);
        let secs = p.ts_ns.div_euclid(1_000_000_000) as u32;
        let usec = (p.ts_ns.rem_euclid(1_000_000_000) / 1000) as u32;
        self.buf.extend(secs.to_le_bytes());
        self.buf.extend(usec.to_le_bytes());
        self.buf.extend((f.len() as u32).to_le_bytes());
        self.buf.extend((f.len() as u32).to_le_bytes());
        self.buf.extend(f);
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// One side of a generated conversation.
struct Side {
    addr: ([u8; 4], u16),
    next: u32,
    /// Highest ack this side has sent, and its last window.
    last_ack: u32,
    win: u16,
    wscale: Option<u8>,
    ip_id: u16,
    /// Segments sent: (seq, len).
    sent: Vec<(u32, u32)>,
}

/// Generates one randomised conversation into `out` (capture order, timestamps rising).
fn generate(rng: &mut Rng, conn: u16, t: &mut i64, out: &mut Vec<Synth>) {
    let mut sides = [
        Side {
            addr: ([10, 1, (conn >> 8) as u8, conn as u8], 40000 + conn),
            next: rng.next() as u32,
            last_ack: 0,
            win: 8192,
            wscale: None,
            ip_id: rng.next() as u16,
            sent: Vec::new(),
        },
        Side {
            addr: ([10, 2, 0, 1], 1433),
            next: {
                let r = rng.next() as u32;
                rng.pick(&[0u32, u32::MAX - 3000, r])
            },
            last_ack: 0,
            win: 16384,
            wscale: None,
            ip_id: rng.next() as u16,
            sent: Vec::new(),
        },
    ];
    let start = out.len();
    let emit = |sides: &mut [Side; 2],
                from: usize,
                seq: u32,
                flags: u8,
                len: u32,
                t: i64,
                out: &mut Vec<Synth>| {
        let to = 1 - from;
        let ack = sides[from].last_ack;
        let s = &mut sides[from];
        s.ip_id = s.ip_id.wrapping_add(1);
        out.push(Synth {
            src: s.addr,
            dst: sides[to].addr,
            ip_id: sides[from].ip_id,
            seq,
            ack,
            flags,
            win: sides[from].win,
            wscale: sides[from].wscale,
            payload: vec![0x5a; len as usize],
            ts_ns: t,
        });
    };
    let tick = |rng: &mut Rng, t: &mut i64| {
        *t += rng.pick(&[
            0,
            50_000,
            1_000_000,
            2_900_000,
            3_100_000,
            25_000_000,
            300_000_000,
            2_000_000_000,
        ]);
    };
    if rng.below(10) < 7 {
        let ws = rng.below(3);
        if ws != 2 {
            sides[0].wscale = Some(rng.below(10) as u8);
        }
        if ws == 0 {
            sides[1].wscale = Some(rng.below(10) as u8);
        }
        let isn_c = sides[0].next;
        emit(&mut sides, 0, isn_c, TcpFlags::SYN, 0, *t, out);
        sides[0].next = isn_c.wrapping_add(1);
        tick(rng, t);
        let isn_s = sides[1].next;
        sides[1].last_ack = sides[0].next;
        emit(
            &mut sides,
            1,
            isn_s,
            TcpFlags::SYN | TcpFlags::ACK,
            0,
            *t,
            out,
        );
        sides[1].next = isn_s.wrapping_add(1);
        tick(rng, t);
        sides[0].last_ack = sides[1].next;
        let q = sides[0].next;
        emit(&mut sides, 0, q, TcpFlags::ACK, 0, *t, out);
    } else {
        sides[0].last_ack = sides[1].next;
        sides[1].last_ack = sides[0].next;
    }
    let steps = 10 + rng.below(70);
    for _ in 0..steps {
        tick(rng, t);
        let from = if rng.below(4) == 0 { 1 } else { 0 };
        let to = 1 - from;
        let ackf = TcpFlags::ACK;
        match rng.below(13) {
            0..=3 => {
                let len = rng.pick(&[1u32, 10, 100, 536, 1460]);
                let seq = sides[from].next;
                sides[from].next = seq.wrapping_add(len);
                sides[from].sent.push((seq, len));
                if rng.below(10) == 0 {
                    continue; // lost in the capture
                }
                emit(&mut sides, from, seq, ackf | TcpFlags::PSH, len, *t, out);
            }
            4 | 5 => {
                // The receiver acks some or all of what was sent, with some window.
                let peer_next = sides[to].next;
                let base = sides[from].last_ack;
                let span = peer_next.wrapping_sub(base);
                let ack = if rng.below(3) == 0 && span > 0 {
                    base.wrapping_add(rng.below(u64::from(span)) as u32)
                } else {
                    peer_next
                };
                sides[from].last_ack = ack;
                sides[from].win = match rng.below(8) {
                    0 => 0,
                    1 => rng.below(4000) as u16 + 1,
                    2 => 100,
                    _ => sides[from].win,
                };
                let q = sides[from].next;
                emit(&mut sides, from, q, ackf, 0, *t, out);
            }
            6 => {
                let q = sides[from].next;
                emit(&mut sides, from, q, ackf, 0, *t, out)
            } // dup ack
            7 => {
                if let Some(&(seq, len)) = sides[from]
                    .sent
                    .get(rng.below(sides[from].sent.len() as u64) as usize)
                {
                    emit(&mut sides, from, seq, ackf, len, *t, out);
                }
            }
            8 => {
                let len = rng.below(2) as u32;
                let q = sides[from].next.wrapping_sub(1);
                emit(&mut sides, from, q, ackf, len, *t, out);
            }
            9 => {
                let q = sides[from].next;
                emit(&mut sides, from, q, ackf, 1, *t, out)
            } // probe-like
            10 => {
                // Fill the peer's window exactly.
                let shift = u32::from(sides[to].wscale.unwrap_or(0));
                let edge = sides[to]
                    .last_ack
                    .wrapping_add(u32::from(sides[to].win) << shift);
                let len = edge.wrapping_sub(sides[from].next);
                if len > 0 && len <= 3000 {
                    let seq = sides[from].next;
                    sides[from].next = edge;
                    sides[from].sent.push((seq, len));
                    emit(&mut sides, from, seq, ackf, len, *t, out);
                }
            }
            11 => {
                if out.len() > start + 1 {
                    let n = out.len();
                    out.swap(n - 1, n - 2);
                    let (a, b) = (out[n - 2].ts_ns, out[n - 1].ts_ns);
                    out[n - 2].ts_ns = a.min(b);
                    out[n - 1].ts_ns = a.max(b);
                }
            }
            _ => {
                if let Some(last) = out.last() {
                    let copy = Synth {
                        payload: last.payload.clone(),
                        ts_ns: *t,
                        ..*last
                    };
                    out.push(copy);
                }
            }
        }
    }
    tick(rng, t);
    match rng.below(3) {
        0 => {
            let seq = sides[0].next;
            emit(
                &mut sides,
                0,
                seq,
                TcpFlags::ACK | TcpFlags::FIN,
                0,
                *t,
                out,
            );
            sides[0].next = seq.wrapping_add(1);
            sides[1].last_ack = sides[0].next;
            tick(rng, t);
            let seq = sides[1].next;
            emit(
                &mut sides,
                1,
                seq,
                TcpFlags::ACK | TcpFlags::FIN,
                0,
                *t,
                out,
            );
            sides[1].next = seq.wrapping_add(1);
            sides[0].last_ack = sides[1].next;
            tick(rng, t);
            let q = sides[0].next;
            emit(&mut sides, 0, q, TcpFlags::ACK, 0, *t, out);
        }
        1 => {
            let q = sides[1].next;
            emit(&mut sides, 1, q, TcpFlags::RST | TcpFlags::ACK, 0, *t, out)
        }
        _ => {}
    }
}

#[test]
fn analysis_flags_match_tshark_on_generated_conversations() {
    if Command::new("tshark").arg("-v").output().is_err() {
        eprintln!("tshark not installed: skipped");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for seed in [
        0x9e37_79b9_7f4a_7c15u64,
        0x1234_5678_9abc_def1,
        0x0f0f_1e1e_2d2d_3c3c,
    ] {
        let mut rng = Rng(seed);
        let mut pkts = Vec::new();
        // Connections one after another, each on its own 5-tuple, 100 s apart.
        for conn in 0..150u16 {
            let mut t = 1_000_000_000_000 + i64::from(conn) * 100_000_000_000;
            generate(&mut rng, conn, &mut t, &mut pkts);
        }
        let mut w = PcapWriter::new();
        for p in &pkts {
            w.push(p);
        }
        let path = tmp.path().join(format!("gen-{seed:x}.pcap"));
        std::fs::write(&path, &w.buf).unwrap();
        let (flagged, bad) = compare_path(&path).unwrap();
        let not_ack_lost = bad
            .iter()
            .filter(|b| {
                let strip = |x: &str| {
                    x.replace(",ack_lost_segment", "")
                        .replace("ack_lost_segment", "")
                };
                let (t, o) = b.split_once(" ours ").unwrap_or((b, ""));
                strip(t.split_once("tshark ").map_or("", |x| x.1)) != strip(o)
            })
            .count();
        eprintln!(
            "seed {seed:x}: {} frames, tshark flags {flagged}, {} differ ({not_ack_lost} in other flags than ack_lost_segment)",
            pkts.len(),
            bad.len()
        );
        for b in bad.iter().take(60) {
            eprintln!("  {b}");
        }
        // Known deviations (see analysis.rs): a few fast retransmissions after mid-stream
        // starts, and connections we split after the linger time where tshark keeps one
        // stream. Measured: 7, 4 and 16 frames before the last fix, 1, 3, 3 after.
        if bad.len() * 500 > flagged {
            failures.push(format!("seed {seed:x}: {} frames differ", bad.len()));
            let keep = std::env::temp_dir().join(format!("tdsscope-gen-{seed:x}.pcap"));
            let _ = std::fs::copy(&path, &keep);
            eprintln!("  kept as {}", keep.display());
        }
        assert!(flagged > 100, "the generator should exercise the flags");
    }
    assert!(failures.is_empty(), "{failures:?}");
}

/// Per connection and direction, the bytes delivered (gaps left out).
#[derive(Default)]
struct Streams {
    data: BTreeMap<(u32, usize), Vec<u8>>,
    ends: BTreeMap<u32, (std::net::SocketAddr, std::net::SocketAddr)>,
    opened: Vec<(u32, std::net::SocketAddr, std::net::SocketAddr)>,
}

impl StreamSink for Streams {
    fn on_open(
        &mut self,
        conn: ConnId,
        client: std::net::SocketAddr,
        server: std::net::SocketAddr,
    ) {
        self.opened.push((conn.0, client, server));
    }
    fn on_event(&mut self, ev: StreamEvent<'_>) {
        if let StreamEventKind::Data(d) = ev.kind {
            self.data
                .entry((ev.conn.0, ev.dir.index()))
                .or_default()
                .extend_from_slice(d);
        }
    }
    fn on_close(&mut self, facts: TcpFacts) {
        self.ends.insert(facts.id.0, (facts.client, facts.server));
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// tshark's "Follow TCP stream" for every stream of a capture: (node0, node1, bytes from
/// node0, bytes from node1).
fn tshark_follow(
    path: &std::path::Path,
    streams: usize,
) -> Vec<(String, String, Vec<u8>, Vec<u8>)> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(path).arg("-q");
    for i in 0..streams {
        cmd.args(["-z", &format!("follow,tcp,raw,{i}")]);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut res = Vec::new();
    let mut cur: Option<(String, String, Vec<u8>, Vec<u8>)> = None;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("Node 0: ") {
            cur = Some((n.to_string(), String::new(), Vec::new(), Vec::new()));
        } else if let Some(n) = line.strip_prefix("Node 1: ") {
            if let Some(c) = cur.as_mut() {
                c.1 = n.to_string();
            }
        } else if line.starts_with("=====") {
            if let Some(c) = cur.take() {
                res.push(c);
            }
        } else if let Some(c) = cur.as_mut() {
            if let Some(h) = line.strip_prefix('\t') {
                c.3.extend(unhex(h.trim()));
            } else if !line.is_empty() {
                c.2.extend(unhex(line.trim()));
            }
        }
    }
    res
}

#[test]
fn reassembled_streams_match_tshark_follow() {
    if Command::new("tshark").arg("-v").output().is_err() {
        return;
    }
    let Some(dir) = captures_dir() else {
        return;
    };
    let mut compared = 0;
    let mut failures = Vec::new();
    for name in [
        "tds7-login-loginack_arkime_tds7.pcap",
        "tds-rpc-midstream_wswiki_ms-sql-tds-rpc-requests.pcap",
        "tds-midstream-retrans_wswiki_startmenu_Dameware.pcap",
        "tds-merged-plus-garbage_malcolm_TDS.pcap",
        "tds7-sspi-ntlm-ipv6-synthetic_arkime_ntlm_synthetic.pcap",
        "pcap-bigendian-tcp_wswiki_TNS_Oracle2.pcap",
    ] {
        compare_follow(&dir.join(name), name, &mut compared, &mut failures);
    }
    eprintln!("compared {compared} connections with tshark's Follow TCP Stream");
    for f in &failures {
        eprintln!("  {f}");
    }
    assert!(compared > 0);
    assert!(failures.is_empty(), "{failures:?}");
}

/// Compares our delivered bytes per connection with tshark's Follow TCP Stream.
fn compare_follow(
    path: &std::path::Path,
    name: &str,
    compared: &mut usize,
    failures: &mut Vec<String>,
) {
    let Ok(bytes) = std::fs::read(path) else {
        return;
    };
    let frames = read_frames(&bytes).unwrap();
    let mut sink = Streams::default();
    let mut tracker = Tracker::new(&Limits::default());
    for f in &frames {
        if let Some(p) = decode(f) {
            tracker.on_packet(&p, &mut sink);
        }
    }
    tracker.finish(&mut sink);
    // Connections whose 5-tuple was used once (port reuse would make matching ambiguous).
    let mut by_pair: BTreeMap<(String, String), Vec<u32>> = BTreeMap::new();
    for (id, c, s) in &sink.opened {
        let (a, b) = (c.to_string(), s.to_string());
        let key = if a < b { (a, b) } else { (b, a) };
        by_pair.entry(key).or_default().push(*id);
    }
    for (n0, n1, d0, d1) in tshark_follow(path, sink.opened.len()) {
        // tshark writes IPv6 nodes as addr:port without brackets.
        let norm = |n: &str| -> Option<std::net::SocketAddr> {
            let (ip, port) = n.rsplit_once(':')?;
            Some(std::net::SocketAddr::new(
                ip.parse().ok()?,
                port.parse().ok()?,
            ))
        };
        let (Some(a0), Some(a1)) = (norm(&n0), norm(&n1)) else {
            continue;
        };
        let (x, y) = (a0.to_string(), a1.to_string());
        let key = if x < y { (x, y) } else { (y, x) };
        let Some(ids) = by_pair.get(&key) else {
            failures.push(format!("{name}: no connection for {n0} <-> {n1}"));
            continue;
        };
        if ids.len() != 1 {
            continue;
        }
        let id = ids[0];
        let (client, _) = sink.ends[&id];
        let (from0, from1) = if client == a0 { (0, 1) } else { (1, 0) };
        let ours0 = sink.data.get(&(id, from0)).cloned().unwrap_or_default();
        let ours1 = sink.data.get(&(id, from1)).cloned().unwrap_or_default();
        *compared += 1;
        if ours0 != d0 || ours1 != d1 {
            failures.push(format!(
                "{name}: {n0} <-> {n1}: ours {}+{} bytes, tshark {}+{}",
                ours0.len(),
                ours1.len(),
                d0.len(),
                d1.len()
            ));
        }
    }
}

#[derive(Default)]
struct Facts(Vec<TcpFacts>);
impl StreamSink for Facts {
    fn on_event(&mut self, _ev: StreamEvent<'_>) {}
    fn on_close(&mut self, facts: TcpFacts) {
        self.0.push(facts);
    }
}

/// Per connection and sender: frames, frame bytes and TCP payload bytes, as tshark counts
/// them, compared with our `DirFacts`; plus the roles and ends of the one real login.
#[test]
fn per_direction_counts_match_tshark() {
    if Command::new("tshark").arg("-v").output().is_err() {
        return;
    }
    let Some(dir) = captures_dir() else {
        return;
    };
    let mut compared = 0;
    for name in [
        "tds7-login-loginack_arkime_tds7.pcap",
        "tds-midstream-retrans_wswiki_startmenu_Dameware.pcap",
        "tds-merged-plus-garbage_malcolm_TDS.pcap",
        "tcp1433-syn-unanswered-pcapng_chrissanders_synscan.pcapng",
        "tds7-sspi-ntlm-ipv6-synthetic_arkime_ntlm_synthetic.pcap",
    ] {
        let path = dir.join(name);
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let frames = read_frames(&bytes).unwrap();
        let mut sink = Facts::default();
        let mut tracker = Tracker::new(&Limits::default());
        for f in &frames {
            if let Some(p) = decode(f) {
                tracker.on_packet(&p, &mut sink);
            }
        }
        tracker.finish(&mut sink);
        let out = Command::new("tshark")
            .arg("-r")
            .arg(&path)
            .args(["-Y", "tcp && !icmp", "-T", "fields", "-E", "occurrence=f"])
            .args(["-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport"])
            .args(["-e", "ip.dst", "-e", "ipv6.dst", "-e", "tcp.dstport"])
            .args(["-e", "frame.len", "-e", "tcp.len"])
            .output()
            .unwrap();
        // (src, dst) -> (frames, frame bytes, payload bytes)
        let mut want: BTreeMap<(String, String), (u64, u64, u64)> = BTreeMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let c: Vec<&str> = line.split('\t').collect();
            if c.len() < 8 {
                continue;
            }
            let ip = |a: &str, b: &str| {
                if a.is_empty() {
                    b.to_string()
                } else {
                    a.to_string()
                }
            };
            let sa =
                std::net::SocketAddr::new(ip(c[0], c[1]).parse().unwrap(), c[2].parse().unwrap());
            let da =
                std::net::SocketAddr::new(ip(c[3], c[4]).parse().unwrap(), c[5].parse().unwrap());
            let e = want.entry((sa.to_string(), da.to_string())).or_default();
            e.0 += 1;
            e.1 += c[6].parse::<u64>().unwrap();
            e.2 += c[7].parse::<u64>().unwrap_or(0);
        }
        // Sum ours per (src, dst), across connections of the same 5-tuple.
        let mut got: BTreeMap<(String, String), (u64, u64, u64)> = BTreeMap::new();
        for f in &sink.0 {
            for (d, from, to) in [
                (Direction::ToServer, f.client, f.server),
                (Direction::ToClient, f.server, f.client),
            ] {
                let x = f.dir(d);
                if x.frames == 0 {
                    continue;
                }
                let e = got.entry((from.to_string(), to.to_string())).or_default();
                e.0 += x.frames;
                e.1 += x.frame_bytes;
                e.2 += x.payload_bytes;
            }
        }
        assert_eq!(got, want, "{name}");
        compared += want.len();
        if name.starts_with("tds7-login") {
            let f = sink
                .0
                .iter()
                .find(|f| f.server.port() == 1433)
                .expect("the login connection");
            assert_eq!(f.roles, RoleBasis::Syn);
            assert_eq!(f.client.to_string(), "217.77.3.70:1040");
            assert!(matches!(f.end, TcpEnd::Fin { .. }));
            assert!(f.handshake_rtt_ns.is_some());
            assert!(!f.mid_stream);
        }
        if name.contains("Dameware") {
            let f = sink
                .0
                .iter()
                .find(|f| f.server.to_string() == "130.243.82.167:1433")
                .expect("the TDS connection");
            assert!(f.mid_stream);
            assert_eq!(f.roles, RoleBasis::Port);
            assert_eq!(f.client.to_string(), "193.11.84.90:2081");
            assert_eq!(f.dir(Direction::ToClient).flags.retransmission, 1);
        }
    }
    eprintln!("compared {compared} (sender, receiver) pairs with tshark");
    assert!(compared > 0);
}
