//! Arbitrary bytes as the two directions of a DNS (port 53) or Kerberos (port 88) TCP
//! connection, cut into uneven segments with gaps: never a panic, never more buffered than
//! one message's limit plus one segment, never more exchanges than the per-connection limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tdsscope::capture::FrameRef;
use tdsscope::facts::ExchangeProtocol;
use tdsscope::session::tcp_exchanges::{TcpExchangeStream, MAX_EXCHANGES_PER_CONNECTION};
use tdsscope::tcp::{Direction, Mark};
use tdsscope::time::Timestamp;

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let proto = if control & 1 == 0 {
        ExchangeProtocol::Dns
    } else {
        ExchangeProtocol::Kerberos
    };
    let server = if proto == ExchangeProtocol::Dns {
        "198.51.100.20:53"
    } else {
        "198.51.100.20:88"
    };
    let (Ok(client), Ok(server)) = ("192.0.2.10:40000".parse(), server.parse()) else {
        return;
    };
    let mut stream = TcpExchangeStream::new(proto, client, server);
    // Segment sizes from the control byte: 1..=64 bytes, so splits land everywhere.
    let size = usize::from(control >> 2) + 1;
    for (i, piece) in rest.chunks(size).enumerate() {
        let at = Mark {
            frame: FrameRef {
                input: 0,
                no: i as u64 + 1,
            },
            ts: Timestamp::from_secs_nanos(1_000, 0).add_nanos(i as i64),
        };
        // The first byte of each piece says which side sent it (mostly alternating runs).
        let dir = if piece.first().is_some_and(|b| b & 0x80 != 0) {
            Direction::ToClient
        } else {
            Direction::ToServer
        };
        if piece.first() == Some(&0xEE) {
            stream.on_gap(dir);
            continue;
        }
        stream.on_data(dir, at, piece);
        let _ = stream.drain_events().count();
    }
    // Closed as if the capture stopped right after the last piece: unanswered requests get
    // their distance to the end, never a negative one.
    let end = Timestamp::from_secs_nanos(1_000, 0).add_nanos(rest.len() as i64);
    let exchanges: Vec<_> = stream.into_exchanges(Some(end)).collect();
    assert!(exchanges.len() <= MAX_EXCHANGES_PER_CONNECTION);
    assert!(exchanges
        .iter()
        .all(|e| e.cut_by_capture_end_ns.is_none_or(|ns| ns >= 0)));
});
