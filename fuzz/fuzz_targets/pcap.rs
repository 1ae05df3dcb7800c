//! Arbitrary bytes through the classic pcap reader: it must end with a frame count, a clean end or
//! an error, never a panic, and never hand out more bytes than it was given.
#![no_main]

use std::io::Cursor;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tdsscope::capture::FrameSource;
use tdsscope::limits::Limits;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_frame_bytes: 4096,
        ..Limits::default()
    };
    let Ok(mut reader) = tdsscope::capture::pcap::PcapReader::new(Cursor::new(data), Path::new("fuzz"), 0, &limits) else {
        return;
    };
    for _ in 0..100_000 {
        match reader.next_frame() {
            Ok(Some(frame)) => assert!(frame.data.len() <= data.len()),
            _ => break,
        }
    }
});
