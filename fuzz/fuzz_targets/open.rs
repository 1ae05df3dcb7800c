//! Arbitrary bytes through format detection (including gzip) and whichever reader it picks.
#![no_main]

use std::io::Cursor;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tdsscope::capture::from_reader;
use tdsscope::limits::Limits;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_frame_bytes: 4096,
        ..Limits::default()
    };
    let Ok(mut reader) = from_reader(Cursor::new(data.to_vec()), Path::new("fuzz"), 0, &limits) else {
        return;
    };
    for _ in 0..100_000 {
        if !matches!(reader.next_frame(), Ok(Some(_))) {
            break;
        }
    }
});
