//! Arbitrary bytes as a whole capture file through every stage: capture reader, decoder, TCP
//! tracker, the TDS sessions, the diagnosis (per connection and across connections: patterns,
//! port scans) and both report writers (in-process, one thread). Never a panic; the sessions'
//! output is drained as it comes, as the driver does.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tdsscope::capture::from_reader;
use tdsscope::decode::{Decoded, Decoder};
use tdsscope::diagnose::{connection_findings, Settings};
use tdsscope::facts::CaptureFacts;
use tdsscope::report::json::JsonWriter;
use tdsscope::report::model::Totals;
use tdsscope::report::text::TextWriter;
use tdsscope::report::ReportWriter;
use tdsscope::session::patterns::Patterns;
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
    let mut patterns = Patterns::default();
    let mut text = TextWriter::new(std::io::sink());
    let mut json = JsonWriter::new(std::io::sink());
    let mut count = 0u64;
    for facts in sessions.drain_finished() {
        patterns.on_connection(&facts);
        let findings = connection_findings(&facts, &settings);
        let outcome = tdsscope::diagnose::outcome(&facts, &findings);
        let c = tdsscope::report::connection(&facts, outcome, findings, true);
        let _ = text.connection(&c);
        let _ = json.connection(&c);
        count += 1;
    }
    let (servers, clients, probes) = patterns.into_facts();
    let capture = CaptureFacts {
        servers,
        clients,
        probes,
        ..CaptureFacts::default()
    };
    let totals = Totals {
        inputs: Vec::new(),
        servers: tdsscope::report::servers(&capture),
        exchanges: Vec::new(),
        exchanges_not_listed: 0,
        findings: tdsscope::diagnose::capture_findings(&capture),
        connections: count,
        outcomes: Default::default(),
    };
    let _ = text.finish(&totals);
    let _ = json.finish(&totals);
});
