//! Arbitrary bytes as a whole capture file through every stage: capture reader, decoder, TCP
//! tracker and the TDS sessions (in-process, one thread). Never a panic; the sessions' output
//! is drained as it comes, as the driver does.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tdsscope::capture::from_reader;
use tdsscope::decode::{Decoded, Decoder};
use tdsscope::diagnose::{connection_findings, Settings};
use tdsscope::limits::Limits;
use tdsscope::session::Sessions;
use tdsscope::tcp::Tracker;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_connections: 64,
        stream_buffer_bytes: 1 << 16,
        total_buffer_bytes: 1 << 20,
        ..Limits::default()
    };
    let Ok(mut source) = from_reader(std::io::Cursor::new(data.to_vec()), Path::new("fuzz"), 0, &limits) else {
        return;
    };
    let mut decoder = Decoder::new(&limits);
    let mut tracker = Tracker::new(&limits);
    let mut sessions = Sessions::new();
    let settings = Settings::default();
    for _ in 0..100_000 {
        let Ok(Some(frame)) = source.next_frame() else { break };
        if let Decoded::Packet(p) = decoder.decode(&frame) {
            tracker.on_packet(&p, &mut sessions);
        }
        for facts in sessions.drain_finished() {
            let _ = connection_findings(&facts, &settings);
        }
        // DNS and Kerberos read from TCP streams (ports 53, 88).
        let _ = sessions.drain_exchange_events().count();
    }
    tracker.finish(&mut sessions);
    for facts in sessions.drain_finished() {
        let _ = connection_findings(&facts, &settings);
    }
});
