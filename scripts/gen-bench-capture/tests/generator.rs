//! End-to-end checks of the generator binary: determinism, prefix property, frame validity
//! (checksums, lengths, time order) with an independent reader, and tshark as an oracle.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_gen-bench-capture")
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gen-bench-capture-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn generate(out: &Path, args: &[&str]) -> String {
    let stats = out.with_extension("json");
    let status = Command::new(bin())
        .args(args)
        .arg("-o")
        .arg(out)
        .arg("--stats-json")
        .arg(&stats)
        .arg("--quiet")
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read_to_string(stats).unwrap()
}

/// Reads one integer field from the generator's flat stats JSON.
fn stat(json: &str, key: &str) -> u64 {
    let pat = format!("\"{key}\": ");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + pat.len();
    json[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap()
}

fn sha256(path: &Path) -> Option<String> {
    let out = Command::new("sha256sum").arg(path).output().ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string()
    })
}

#[test]
fn same_seed_and_size_give_identical_bytes() {
    let a = tmp("det-a.pcap");
    let b = tmp("det-b.pcap");
    let c = tmp("det-c.pcap");
    let args = ["--size-mib", "4", "--concurrency", "300", "--seed", "42"];
    generate(&a, &args);
    generate(&b, &args);
    generate(
        &c,
        &["--size-mib", "4", "--concurrency", "300", "--seed", "43"],
    );
    let (ba, bb, bc) = (
        std::fs::read(&a).unwrap(),
        std::fs::read(&b).unwrap(),
        std::fs::read(&c).unwrap(),
    );
    assert!(ba.len() as u64 >= 4 << 20);
    assert!(ba == bb, "same seed, different bytes");
    assert!(ba != bc, "different seeds, same bytes");
    if let (Some(ha), Some(hb)) = (sha256(&a), sha256(&b)) {
        assert_eq!(ha, hb);
        eprintln!("sha256 of 4 MiB, seed 42: {ha}");
    }
    for f in [a, b, c] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn smaller_file_is_prefix_of_larger() {
    let small = tmp("prefix-1.pcap");
    let large = tmp("prefix-3.pcap");
    generate(
        &small,
        &["--size-mib", "1", "--concurrency", "500", "--seed", "5"],
    );
    generate(
        &large,
        &["--size-mib", "3", "--concurrency", "500", "--seed", "5"],
    );
    let (s, l) = (
        std::fs::read(&small).unwrap(),
        std::fs::read(&large).unwrap(),
    );
    assert!(l.len() > s.len());
    assert!(l.starts_with(&s));
    let _ = std::fs::remove_file(small);
    let _ = std::fs::remove_file(large);
}

fn fold(mut acc: u64) -> u16 {
    while acc > 0xFFFF {
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    !(acc as u16)
}

/// RFC 1071 sum, written independently of the generator's (16-bit words).
fn sum16(data: &[u8], mut acc: u64) -> u64 {
    let mut it = data.chunks(2);
    for w in &mut it {
        let hi = u64::from(w[0]) << 8;
        let lo = w.get(1).map_or(0, |b| u64::from(*b));
        acc += hi | lo;
    }
    acc
}

#[test]
fn every_frame_is_well_formed_with_good_checksums() {
    let path = tmp("frames.pcap");
    let json = generate(
        &path,
        &[
            "--size-mib",
            "6",
            "--concurrency",
            "400",
            "--seed",
            "9",
            "--loss-ppm",
            "3000",
            "--dup-ppm",
            "3000",
        ],
    );
    let data = std::fs::read(&path).unwrap();
    assert_eq!(&data[0..4], &0xA1B2_C3D4u32.to_le_bytes());
    assert_eq!(u16::from_le_bytes([data[4], data[5]]), 2);
    assert_eq!(u16::from_le_bytes([data[6], data[7]]), 4);
    assert_eq!(
        u32::from_le_bytes(data[16..20].try_into().unwrap()),
        262_144
    );
    assert_eq!(u32::from_le_bytes(data[20..24].try_into().unwrap()), 1);
    let mut pos = 24;
    let mut last_ts = 0u64;
    let mut packets = 0u64;
    let mut syns = std::collections::BTreeSet::new();
    let mut max_payload = 0usize;
    while pos < data.len() {
        let rec = &data[pos..pos + 16];
        let ts = u64::from(u32::from_le_bytes(rec[0..4].try_into().unwrap())) * 1_000_000
            + u64::from(u32::from_le_bytes(rec[4..8].try_into().unwrap()));
        let incl = u32::from_le_bytes(rec[8..12].try_into().unwrap()) as usize;
        let orig = u32::from_le_bytes(rec[12..16].try_into().unwrap()) as usize;
        assert_eq!(incl, orig);
        assert!(incl <= 262_144);
        assert!(ts > last_ts, "timestamps must increase");
        last_ts = ts;
        let f = &data[pos + 16..pos + 16 + incl];
        pos += 16 + incl;
        packets += 1;
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        let ip = &f[14..];
        assert_eq!(ip[0], 0x45);
        let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
        assert_eq!(total, ip.len(), "IPv4 total length");
        assert_eq!(
            fold(sum16(&ip[..20], 0)),
            0,
            "IPv4 header checksum, packet {packets}"
        );
        assert_eq!(ip[9], 6);
        let tcp = &ip[20..];
        let mut acc = sum16(&ip[12..20], 0);
        acc += 6 + tcp.len() as u64;
        assert_eq!(fold(sum16(tcp, acc)), 0, "TCP checksum, packet {packets}");
        let hdr = usize::from(tcp[12] >> 4) * 4;
        max_payload = max_payload.max(tcp.len() - hdr);
        let flags = tcp[13];
        if flags & 0x02 != 0 && flags & 0x10 == 0 {
            syns.insert((ip[12..20].to_vec(), tcp[0..4].to_vec()));
        }
    }
    assert_eq!(pos, data.len(), "file ends on a record boundary");
    assert_eq!(packets, stat(&json, "packets"));
    assert_eq!(
        syns.len() as u64,
        stat(&json, "connections"),
        "one SYN 4-tuple per connection"
    );
    assert!(max_payload > 1448, "loopback flows carry large segments");
    assert!(max_payload <= 65_483);
    let _ = std::fs::remove_file(path);
}

fn tshark_available() -> bool {
    Command::new("tshark")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn tshark(args: &[&str]) -> String {
    let out = Command::new("tshark").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "tshark {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tshark_agrees() {
    if !tshark_available() {
        eprintln!("tshark not installed: skipping the oracle check");
        return;
    }
    let path = tmp("oracle.pcap");
    let json = generate(
        &path,
        &[
            "--size-mib",
            "6",
            "--concurrency",
            "200",
            "--seed",
            "7",
            "--loss-ppm",
            "3000",
            "--dup-ppm",
            "2000",
            "--refused-ppm",
            "20000",
        ],
    );
    let p = path.to_str().unwrap();

    let conv = tshark(&["-r", p, "-q", "-z", "conv,tcp"]);
    let conversations = conv.lines().filter(|l| l.contains("<->")).count() as u64;
    assert_eq!(conversations, stat(&json, "connections"));

    // Every TCP analysis flag is one the generator meant: losses (next segment flagged as previous
    // segment not captured), dup ACKs, retransmissions (tshark calls a quick one on a loopback
    // flow out-of-order), duplicates, SYN retransmissions.
    let flagged = tshark(&[
        "-r",
        p,
        "-Y",
        "tcp.analysis.flags && !tcp.analysis.window_update",
    ])
    .lines()
    .count() as u64;
    let intended = [
        "lost_segments",
        "retransmissions",
        "dup_acks",
        "duplicates",
        "syn_retransmissions",
    ]
    .iter()
    .map(|k| stat(&json, k))
    .sum::<u64>();
    assert!(
        stat(&json, "lost_segments") > 0 && stat(&json, "duplicates") > 0,
        "{json}"
    );
    assert!(
        flagged > 0 && flagged <= intended,
        "tshark flagged {flagged}, generator intended at most {intended}"
    );
    let unexpected = tshark(&[
        "-r", p, "-Y",
        "tcp.analysis.ack_lost_segment || tcp.analysis.window_full || tcp.analysis.zero_window || tcp.analysis.keep_alive || tcp.analysis.reused_ports",
    ]);
    assert_eq!(unexpected.lines().count(), 0, "{unexpected}");

    let malformed = tshark(&["-r", p, "-d", "tcp.port==1433,tds", "-Y", "_ws.malformed"]);
    assert_eq!(malformed.lines().count(), 0, "{malformed}");

    let bad = tshark(&[
        "-r",
        p,
        "-o",
        "tcp.check_checksum:TRUE",
        "-o",
        "ip.check_checksum:TRUE",
        "-Y",
        "tcp.checksum.status == 0 || ip.checksum.status == 0",
    ]);
    assert_eq!(bad.lines().count(), 0, "{bad}");

    let types = tshark(&[
        "-r",
        p,
        "-d",
        "tcp.port==1433,tds",
        "-Y",
        "tds",
        "-T",
        "fields",
        "-e",
        "tds.type",
    ]);
    for t in ["1", "3", "4", "16", "18"] {
        assert!(
            types.lines().any(|l| l.split(',').any(|x| x == t)),
            "no TDS packet of type {t}"
        );
    }
    let logins = tshark(&["-r", p, "-d", "tcp.port==1433,tds", "-Y", "tds.loginack"])
        .lines()
        .count();
    assert!(logins > 100, "only {logins} LOGINACKs decoded");
    let _ = std::fs::remove_file(path);
}
