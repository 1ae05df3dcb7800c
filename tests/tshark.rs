//! Cross-checks against tshark (Wireshark's dissectors) on every shared capture: frame counts,
//! capture times, TCP connections, frames and bytes each way, and every `tcp.analysis` flag
//! per connection and direction.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use serde_json::Value;

use crate::util::{all_shared_captures, analyze_json, tshark_fields, tshark_or_skip};

/// tshark field → our per-direction key in `connections[].tcp.to_server|to_client`.
const FLAGS: &[(&str, &str)] = &[
    ("tcp.analysis.retransmission", "retransmission"),
    ("tcp.analysis.fast_retransmission", "fast_retransmission"),
    (
        "tcp.analysis.spurious_retransmission",
        "spurious_retransmission",
    ),
    ("tcp.analysis.keep_alive", "keep_alive"),
    ("tcp.analysis.keep_alive_ack", "keep_alive_ack"),
    ("tcp.analysis.zero_window", "zero_window"),
    ("tcp.analysis.zero_window_probe", "zero_window_probe"),
    (
        "tcp.analysis.zero_window_probe_ack",
        "zero_window_probe_ack",
    ),
    ("tcp.analysis.window_update", "window_update"),
    ("tcp.analysis.window_full", "window_full"),
    ("tcp.analysis.duplicate_ack", "duplicate_ack"),
    ("tcp.analysis.lost_segment", "lost_segment"),
    ("tcp.analysis.ack_lost_segment", "ack_lost_segment"),
    ("tcp.analysis.out_of_order", "out_of_order"),
];

const BASE_FIELDS: &[&str] = &[
    "frame.number",
    "frame.time_epoch",
    "frame.len",
    "tcp.stream",
    "ip.src",
    "ipv6.src",
    "tcp.srcport",
    "icmp.type",
    "icmpv6.type",
    "ip.proto",
];

/// Per tshark TCP stream: what we compare with one of our connections.
#[derive(Debug, Default, PartialEq)]
struct Conv {
    first_frame: u64,
    /// Sender address of the first frame.
    first_src: Option<SocketAddr>,
    /// frames, bytes and flag counts keyed by sender address
    by_sender: BTreeMap<SocketAddr, Side>,
}

#[derive(Debug, Default, PartialEq, Clone)]
struct Side {
    frames: u64,
    bytes: u64,
    flags: BTreeMap<&'static str, u64>,
}

fn epoch_ns(s: &str) -> i128 {
    let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
    let frac = format!("{frac:0<9}");
    secs.parse::<i128>().unwrap() * 1_000_000_000 + frac[..9].parse::<i128>().unwrap()
}

fn rfc3339_ns(s: &str) -> i128 {
    let dt = chrono::DateTime::parse_from_rfc3339(s).unwrap();
    i128::from(dt.timestamp()) * 1_000_000_000 + i128::from(dt.timestamp_subsec_nanos())
}

fn tshark_convs(file: &Path) -> (Vec<Vec<String>>, BTreeMap<u64, Conv>) {
    let mut fields: Vec<&str> = BASE_FIELDS.to_vec();
    fields.extend(FLAGS.iter().map(|(f, _)| *f));
    let rows = tshark_fields(file, &[], &fields);
    let mut convs: BTreeMap<u64, Conv> = BTreeMap::new();
    for row in &rows {
        let get = |i: usize| row.get(i).map(String::as_str).unwrap_or("");
        let Ok(stream) = get(3).parse::<u64>() else {
            continue;
        };
        // TCP headers quoted inside ICMP errors are not packets of the connection.
        if !get(7).is_empty() || !get(8).is_empty() {
            continue;
        }
        // IPv6 tunnelled in IPv4 (protocol 41): the connection's addresses are the inner ones.
        let ip: IpAddr = match (get(4), get(5)) {
            (v4, _) if !v4.is_empty() && get(9) != "41" => v4.parse().unwrap(),
            (_, v6) => v6.parse().unwrap(),
        };
        let src = SocketAddr::new(ip, get(6).parse().unwrap());
        let frame: u64 = get(0).parse().unwrap();
        let conv = convs.entry(stream).or_insert_with(|| Conv {
            first_frame: frame,
            first_src: Some(src),
            ..Conv::default()
        });
        let side = conv.by_sender.entry(src).or_default();
        side.frames += 1;
        side.bytes += get(2).parse::<u64>().unwrap();
        for (i, (_, key)) in FLAGS.iter().enumerate() {
            if !get(BASE_FIELDS.len() + i).is_empty() {
                *side.flags.entry(key).or_default() += 1;
            }
        }
    }
    (rows, convs)
}

fn our_side(conn: &Value, dir: &str) -> Side {
    let frames_key = format!("frames_{dir}");
    let bytes_key = format!("bytes_{dir}");
    let mut side = Side {
        frames: conn["stats"][&frames_key].as_u64().unwrap(),
        bytes: conn["stats"][&bytes_key].as_u64().unwrap(),
        flags: BTreeMap::new(),
    };
    for (_, key) in FLAGS {
        // tshark flags a captured-twice packet as a retransmission (or duplicate ACK);
        // tdsscope knows it is a capture duplicate and counts it apart
        // (`duplicate_copy_flags`). tdsscope is right; tshark's count is the sum.
        let copies = conn["tcp"][dir]["duplicate_copy_flags"][key]
            .as_u64()
            .unwrap_or(0);
        let n = conn["tcp"][dir][key].as_u64().unwrap() + copies;
        if n > 0 {
            side.flags.insert(key, n);
        }
    }
    side
}

/// Compares one capture; returns human-readable differences.
pub(crate) fn compare(file: &Path) -> Vec<String> {
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    let (report, _code) = analyze_json(&[file]);
    let (rows, convs) = tshark_convs(file);
    let mut diffs = Vec::new();

    let input = &report["inputs"][0];
    if input["frames"].as_u64().unwrap() != rows.len() as u64 {
        diffs.push(format!(
            "{name}: frames {} vs tshark {}",
            input["frames"],
            rows.len()
        ));
    }
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        let ours = (
            input["first_time"].as_str().map(rfc3339_ns),
            input["last_time"].as_str().map(rfc3339_ns),
        );
        let theirs = (Some(epoch_ns(&first[1])), Some(epoch_ns(&last[1])));
        if ours != theirs {
            diffs.push(format!(
                "{name}: first/last time {ours:?} vs tshark {theirs:?}"
            ));
        }
    }

    let conns = report["connections"].as_array().unwrap();
    let by_first: BTreeMap<u64, &Value> = conns
        .iter()
        .map(|c| (c["first"]["frame"].as_u64().unwrap(), c))
        .collect();
    if conns.len() != convs.len() {
        diffs.push(format!(
            "{name}: {} TCP connections vs tshark {} streams",
            conns.len(),
            convs.len()
        ));
    }
    for (stream, conv) in &convs {
        let Some(conn) = by_first.get(&conv.first_frame) else {
            diffs.push(format!(
                "{name}: tshark stream {stream} (first frame {}) has no connection starting there",
                conv.first_frame
            ));
            continue;
        };
        let client: SocketAddr = conn["client"].as_str().unwrap().parse().unwrap();
        let server: SocketAddr = conn["server"].as_str().unwrap().parse().unwrap();
        for (addr, dir) in [(client, "to_server"), (server, "to_client")] {
            let theirs = conv.by_sender.get(&addr).cloned().unwrap_or_default();
            let ours = our_side(conn, dir);
            if ours != theirs {
                diffs.push(format!(
                    "{name}: conn {} {dir} (stream {stream}): ours {ours:?} vs tshark {theirs:?}",
                    conn["id"]
                ));
            }
        }
    }
    diffs
}

#[test]
fn every_shared_capture_matches_tshark() {
    if !tshark_or_skip("every_shared_capture_matches_tshark") {
        return;
    }
    let mut all = Vec::new();
    for file in all_shared_captures() {
        all.extend(compare(&file));
    }
    assert!(
        all.is_empty(),
        "differences from tshark:\n{}",
        all.join("\n")
    );
}
