//! The capture readers against reality: every file in `shared/captures/` is read and compared
//! with capinfos and tshark run now, and copies made by editcap (pcapng, NetMon 2.x), gzip and
//! truncation must read back the same frames.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use tdsscope::capture::{self, open, Chain, ChainEvent, Error, Format, FrameSource, LinkType};
use tdsscope::limits::Limits;

fn captures_dir() -> PathBuf {
    let rel = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/captures");
    if rel.is_dir() {
        rel
    } else {
        PathBuf::from("/work/shared/captures")
    }
}

fn capture(name: &str) -> PathBuf {
    captures_dir().join(name)
}

/// Every capture file in the shared directory (anything that is not a README).
fn all_captures() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(captures_dir())
        .expect("shared captures directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !p.to_string_lossy().ends_with(".md"))
        .collect();
    files.sort();
    files
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("-v").output().is_ok()
}

/// A frame read into owned values.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owned {
    no: u64,
    ts: i64,
    link: LinkType,
    data: Vec<u8>,
    orig_len: u32,
}

/// Reads every frame; returns them and the error that ended the file, if any.
fn read_all(source: &mut dyn FrameSource) -> (Vec<Owned>, Option<Error>) {
    let mut frames = Vec::new();
    loop {
        match source.next_frame() {
            Ok(Some(f)) => frames.push(Owned {
                no: f.at.no,
                ts: f.ts.as_nanos(),
                link: f.link,
                data: f.data.to_vec(),
                orig_len: f.orig_len,
            }),
            Ok(None) => return (frames, None),
            Err(e) => return (frames, Some(e)),
        }
    }
}

fn read_path(path: &Path) -> (Format, Vec<Owned>, Option<Error>) {
    let mut source = open(path, 0, &Limits::default()).expect("opens");
    let format = source.format();
    let (frames, err) = read_all(source.as_mut());
    (format, frames, err)
}

/// `frame.time_epoch` as nanoseconds ("1121509769.800000000").
fn epoch_nanos(s: &str) -> i64 {
    let (secs, frac) = s.trim().split_once('.').unwrap_or((s.trim(), "0"));
    let mut frac = frac.to_string();
    frac.truncate(9);
    while frac.len() < 9 {
        frac.push('0');
    }
    secs.parse::<i64>().expect("seconds") * 1_000_000_000 + frac.parse::<i64>().expect("nanos")
}

/// One tshark line per frame: time, captured length, length on the wire, wiretap encapsulation.
struct TsharkFrame {
    ts: i64,
    cap_len: usize,
    len: u32,
    encap: u32,
}

fn tshark_frames(path: &Path) -> Vec<TsharkFrame> {
    let out = Command::new("tshark")
        .env("TZ", "UTC")
        .args(["-r"])
        .arg(path)
        .args(["-T", "fields", "-E", "separator=,"])
        .args([
            "-e",
            "frame.time_epoch",
            "-e",
            "frame.cap_len",
            "-e",
            "frame.len",
        ])
        .args(["-e", "frame.encap_type"])
        .output()
        .expect("tshark runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Vec<&str> = l.split(',').collect();
            TsharkFrame {
                ts: epoch_nanos(v[0]),
                cap_len: v[1].parse().unwrap(),
                len: v[2].parse().unwrap(),
                encap: v[3].parse().unwrap(),
            }
        })
        .collect()
}

/// Wiretap encapsulation numbers (wiretap/wtap.h) to LINKTYPEs, for those in the captures.
fn encap_to_linktype(encap: u32) -> u32 {
    match encap {
        1 => 1,    // Ethernet
        7 => 101,  // raw IP
        15 => 0,   // BSD loopback (NULL)
        25 => 113, // Linux cooked
        other => panic!("add wiretap encapsulation {other} to the table"),
    }
}

fn capinfos_count(path: &Path) -> u64 {
    let out = Command::new("capinfos")
        .arg("-c")
        .arg("-M")
        .arg(path)
        .output()
        .expect("capinfos runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Number of packets"))
        .expect("capinfos prints a count");
    line.rsplit(':')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .expect("a number")
}

#[test]
fn every_shared_capture_matches_capinfos_and_tshark() {
    if !have("tshark") || !have("capinfos") {
        println!("SKIPPED: tshark/capinfos not installed");
        return;
    }
    let files = all_captures();
    assert!(
        files.len() >= 18,
        "expected the shared captures, found {}",
        files.len()
    );
    for path in files {
        let (format, frames, err) = read_path(&path);
        assert!(err.is_none(), "{}: {:?}", path.display(), err);
        let count = capinfos_count(&path);
        assert_eq!(frames.len() as u64, count, "{} frame count", path.display());
        let tshark = tshark_frames(&path);
        assert_eq!(
            tshark.len() as u64,
            count,
            "{} tshark lines",
            path.display()
        );
        let us = |ns: i64| ns.div_euclid(1_000);
        let (first, last) = (&frames[0], &frames[frames.len() - 1]);
        assert_eq!(
            us(first.ts),
            us(tshark[0].ts),
            "{} first ts",
            path.display()
        );
        let tlast = tshark.last().unwrap().ts;
        assert_eq!(us(last.ts), us(tlast), "{} last ts", path.display());
        // Every frame, not only the ends, is cheap to check on files this size.
        for (i, (f, t)) in frames.iter().zip(&tshark).enumerate() {
            let what = format!("{} frame {}", path.display(), f.no);
            assert_eq!(f.no, i as u64 + 1, "{what}");
            assert_eq!(us(f.ts), us(t.ts), "{what}");
            assert_eq!(f.data.len(), t.cap_len, "{what}");
            assert_eq!(f.orig_len, t.len, "{what}");
            assert_eq!(f.link.0, encap_to_linktype(t.encap), "{what}");
        }
        println!("{}: {} {} frames ok", path.display(), format, frames.len());
    }
}

#[test]
fn pcapng_multi_linktype_gives_each_frame_its_interface_link() {
    let (format, frames, err) = read_path(&capture(
        "pcapng-multi-linktype_wswiki_pcapng-example.pcapng",
    ));
    assert_eq!(format, Format::Pcapng);
    assert!(err.is_none());
    let links: std::collections::BTreeSet<u32> = frames.iter().map(|f| f.link.0).collect();
    assert!(links.contains(&1) && links.contains(&113), "{links:?}");
    if have("tshark") {
        let out = Command::new("tshark")
            .arg("-r")
            .arg(capture(
                "pcapng-multi-linktype_wswiki_pcapng-example.pcapng",
            ))
            .args(["-T", "fields", "-e", "frame.encap_type"])
            .output()
            .unwrap();
        let encaps: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        // Wiretap encapsulation 1 is Ethernet, 25 is Linux cooked (SLL).
        for (f, e) in frames.iter().zip(&encaps) {
            let want = match e.trim() {
                "1" => 1,
                "25" => 113,
                other => panic!("unexpected encap {other}"),
            };
            assert_eq!(f.link.0, want, "frame {}", f.no);
        }
    }
}

fn editcap(format: &str, src: &Path, dst: &Path) -> bool {
    if !have("editcap") {
        println!("SKIPPED: editcap not installed");
        return false;
    }
    let st = Command::new("editcap")
        .args(["-F", format])
        .arg(src)
        .arg(dst)
        .status()
        .expect("editcap runs");
    assert!(st.success(), "editcap -F {format}");
    true
}

/// Frames equal apart from the link type, which NetMon and pcapng keep in other ways.
fn assert_same_frames(a: &[Owned], b: &[Owned], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: frame count");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.no, y.no, "{what}");
        assert_eq!(x.ts, y.ts, "{what}: ts of frame {}", x.no);
        assert_eq!(x.data, y.data, "{what}: data of frame {}", x.no);
        assert_eq!(x.orig_len, y.orig_len, "{what}: orig_len of frame {}", x.no);
        assert_eq!(x.link, y.link, "{what}: link of frame {}", x.no);
    }
}

const CONVERT_SOURCES: [&str; 3] = [
    "tds-merged-plus-garbage_malcolm_TDS.pcap",
    "tds7-login-loginack_arkime_tds7.pcap",
    "pcap-bigendian-tcp_wswiki_TNS_Oracle2.pcap",
];

#[test]
fn editcap_pcapng_copy_reads_identically() {
    let dir = tempfile::tempdir().unwrap();
    for name in CONVERT_SOURCES {
        let src = capture(name);
        let dst = dir.path().join("copy.pcapng");
        if !editcap("pcapng", &src, &dst) {
            return;
        }
        let (_, a, ea) = read_path(&src);
        let (format, b, eb) = read_path(&dst);
        assert_eq!(format, Format::Pcapng);
        assert!(ea.is_none() && eb.is_none());
        assert_same_frames(&a, &b, name);
    }
}

#[test]
fn editcap_netmon2_copy_reads_identically() {
    let dir = tempfile::tempdir().unwrap();
    for name in CONVERT_SOURCES {
        let src = capture(name);
        let dst = dir.path().join("copy.cap");
        if !editcap("netmon2", &src, &dst) {
            return;
        }
        let (_, a, ea) = read_path(&src);
        let (format, b, eb) = read_path(&dst);
        assert_eq!(format, Format::Netmon2);
        assert!(ea.is_none() && eb.is_none(), "{eb:?}");
        assert_same_frames(&a, &b, name);
    }
}

#[test]
fn netmon1_copy_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("v1.cap");
    if !editcap(
        "netmon1",
        &capture("tds7-login-loginack_arkime_tds7.pcap"),
        &dst,
    ) {
        return;
    }
    match open(&dst, 0, &Limits::default()) {
        Err(Error::UnknownFormat { magic, .. }) => {
            assert!(magic.contains("Network Monitor 1.x"), "{magic}")
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("NetMon 1.x is not read"),
    }
}

#[test]
fn editcap_nanosecond_pcapng_keeps_nanoseconds() {
    let dir = tempfile::tempdir().unwrap();
    let src = capture("pcap-nanosecond-le_wswiki_dhcp-nanosecond.pcap");
    let dst = dir.path().join("ns.pcapng");
    if !editcap("pcapng", &src, &dst) {
        return;
    }
    let (_, a, _) = read_path(&src);
    let (_, b, eb) = read_path(&dst);
    assert!(eb.is_none());
    assert_same_frames(&a, &b, "nanosecond pcapng");
}

fn gzip_copy(src: &Path, dst: &Path) {
    let data = std::fs::read(src).unwrap();
    let mut enc =
        flate2::write::GzEncoder::new(File::create(dst).unwrap(), flate2::Compression::fast());
    enc.write_all(&data).unwrap();
    enc.finish().unwrap();
}

#[test]
fn gzip_copies_read_identically() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "tds-merged-plus-garbage_malcolm_TDS.pcap",
        "pcapng-multi-linktype_wswiki_pcapng-example.pcapng",
        "netmon2-ssrp-bcast_wswiki_netlog5.cap",
    ] {
        let src = capture(name);
        let dst = dir.path().join("copy.gz");
        gzip_copy(&src, &dst);
        let (fa, a, ea) = read_path(&src);
        let mut source = open(&dst, 0, &Limits::default()).expect("opens gzip");
        assert_eq!(source.format(), fa);
        let (b, eb) = read_all(source.as_mut());
        assert!(ea.is_none() && eb.is_none(), "{eb:?}");
        assert_same_frames(&a, &b, name);
        let compressed = std::fs::metadata(&dst).unwrap().len();
        assert_eq!(
            source.bytes_read(),
            compressed,
            "{name}: bytes_read counts the gzip file"
        );
    }
}

#[test]
fn bytes_read_counts_the_whole_file() {
    let path = capture("tds-merged-plus-garbage_malcolm_TDS.pcap");
    let mut source = open(&path, 0, &Limits::default()).unwrap();
    let _ = read_all(source.as_mut());
    assert_eq!(source.bytes_read(), std::fs::metadata(&path).unwrap().len());
}

/// Cuts `name` at `cut` bytes and checks: every frame that ends before the cut is delivered,
/// then `Error::Malformed` at the start of the cut record.
fn check_truncated(name: &str, cut_fraction: f64) {
    let src = capture(name);
    let bytes = std::fs::read(&src).unwrap();
    let cut = (bytes.len() as f64 * cut_fraction) as usize;
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("cut");
    std::fs::write(&dst, &bytes[..cut]).unwrap();

    // Where each frame ends in the original, from the reader's own offset.
    let mut whole = capture::from_reader(
        std::io::Cursor::new(bytes.clone()),
        &src,
        0,
        &Limits::default(),
    )
    .unwrap();
    let mut ends = Vec::new();
    while whole.next_frame().unwrap().is_some() {
        ends.push(whole.bytes_read());
    }
    let expect_frames = ends.iter().filter(|&&e| e <= cut as u64).count();
    let expect_offset = if expect_frames == 0 {
        0
    } else {
        ends[expect_frames - 1]
    };

    let (_, frames, err) = read_path(&dst);
    assert_eq!(frames.len(), expect_frames, "{name} cut at {cut}");
    match err {
        Some(Error::Malformed { offset, what, .. }) => {
            assert_eq!(offset, expect_offset, "{name}: {what}");
            assert!(what.contains("ends in the middle"), "{what}");
            assert!(
                what.contains(&format!("frame {}", expect_frames + 1)) || what.contains("block"),
                "{what}"
            );
        }
        other => panic!("{name}: expected Malformed, got {other:?}"),
    }
}

#[test]
fn truncated_copies_give_frames_before_the_cut_and_an_offset() {
    check_truncated("tds-merged-plus-garbage_malcolm_TDS.pcap", 0.5);
    check_truncated(
        "tds-rpc-midstream_wswiki_ms-sql-tds-rpc-requests.pcap",
        0.37,
    );
    check_truncated(
        "tcp1433-syn-unanswered-pcapng_chrissanders_synscan.pcapng",
        0.5,
    );
    check_truncated("pcapng-multi-linktype_wswiki_pcapng-example.pcapng", 0.61);
}

#[test]
fn truncated_gzip_reports_damage_after_delivering_frames() {
    let dir = tempfile::tempdir().unwrap();
    let src = capture("tds-merged-plus-garbage_malcolm_TDS.pcap");
    let gz = dir.path().join("copy.gz");
    gzip_copy(&src, &gz);
    let data = std::fs::read(&gz).unwrap();
    let cut = dir.path().join("cut.gz");
    std::fs::write(&cut, &data[..data.len() / 2]).unwrap();
    let (_, frames, err) = read_path(&cut);
    assert!(!frames.is_empty());
    assert!(matches!(err, Some(Error::Malformed { .. })), "{err:?}");
}

#[test]
fn unknown_and_empty_files_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        open(&empty, 0, &Limits::default()),
        Err(Error::Empty { .. })
    ));
    let text = dir.path().join("notes.pcap");
    std::fs::write(&text, b"hello world").unwrap();
    match open(&text, 0, &Limits::default()) {
        Err(Error::UnknownFormat { magic, .. }) => assert_eq!(magic, "68 65 6c 6c"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened text"),
    }
    let missing = dir.path().join("missing.pcap");
    assert!(matches!(
        open(&missing, 0, &Limits::default()),
        Err(Error::Open { .. })
    ));
}

#[test]
fn chain_orders_by_first_timestamp_and_numbers_per_file() {
    let paths = vec![
        capture("tds7-login-loginack_arkime_tds7.pcap"),
        capture("netmon2_wswiki_PPPHandshake.cap"),
        PathBuf::from("/nonexistent/file.pcap"),
        capture("pcap-nanosecond-le_wswiki_dhcp-nanosecond.pcap"),
    ];
    let mut chain = Chain::new(&paths, &Limits::default());
    let mut seen: Vec<(u16, u64)> = Vec::new();
    let mut done = Vec::new();
    let mut guard = 0;
    loop {
        guard += 1;
        assert!(guard < 100_000);
        match chain.next_event() {
            ChainEvent::Frame(f) => seen.push((f.at.input, f.at.no)),
            ChainEvent::InputDone { input, error } => done.push((input, error.is_some())),
            ChainEvent::End => break,
        }
    }
    let inputs = chain.inputs();
    assert_eq!(inputs.len(), 4);
    // The missing file sorts last; the others by their first frame time.
    assert_eq!(inputs[3].path, PathBuf::from("/nonexistent/file.pcap"));
    assert!(inputs[3].error.is_some());
    for w in inputs[..3].windows(2) {
        assert!(w[0].first_ts <= w[1].first_ts);
    }
    for (i, info) in inputs.iter().enumerate().take(3) {
        assert!(info.error.is_none());
        let nos: Vec<u64> = seen
            .iter()
            .filter(|(inp, _)| *inp as usize == i)
            .map(|s| s.1)
            .collect();
        assert_eq!(nos, (1..=info.frames).collect::<Vec<_>>());
        assert!(info.frames > 0);
    }
    assert_eq!(done, vec![(0, false), (1, false), (2, false), (3, true)]);
}

/// Throughput check, run by hand: `TDSSCOPE_BENCH_FILES=a.pcap,b.pcapng cargo test --release
/// --test capture_readers throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput() {
    let Ok(list) = std::env::var("TDSSCOPE_BENCH_FILES") else {
        println!("SKIPPED: set TDSSCOPE_BENCH_FILES");
        return;
    };
    for name in list.split(',') {
        let path = Path::new(name);
        let size = std::fs::metadata(path).unwrap().len();
        let start = std::time::Instant::now();
        let mut source = open(path, 0, &Limits::default()).unwrap();
        let (mut frames, mut bytes, mut sum) = (0u64, 0u64, 0u64);
        while let Some(f) = source.next_frame().unwrap() {
            frames += 1;
            bytes += f.data.len() as u64;
            sum = sum.wrapping_add(u64::from(*f.data.first().unwrap_or(&0)));
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{name}: {} {frames} frames, {bytes} data bytes, {size} file bytes in {secs:.3} s = {:.0} frames/s, {:.0} MB/s (checksum {sum})",
            source.format(),
            frames as f64 / secs,
            size as f64 / secs / 1e6
        );
    }
}
