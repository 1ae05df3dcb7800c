//! Capture sources: files (pcap, pcapng, NetMon 2.x, any of them gzip-compressed) and, later,
//! live interfaces. Everything below this module sees frames, never files or sockets.
//!
//! Readers stream: each holds one frame's buffer and the file's read-ahead, so memory does not
//! grow with file size. A reader hands out one [`Frame`] at a time, borrowed from its buffer.
//!
//! Entry points: [`open`] (a file, format from its magic bytes, gzip decompressed on the fly),
//! [`from_reader`] (the same over any `Read + Seek`, for tests and fuzzing), and [`Chain`]
//! (several files as one capture, in first-timestamp order, with an [`InputInfo`] per file).

use std::fmt;
use std::path::PathBuf;

use crate::time::Timestamp;

pub mod chain;
#[cfg(test)]
mod fixtures;
pub mod netmon;
pub mod open;
pub mod pcap;
pub mod pcapng;
mod stream;

pub use chain::{order_by_first_timestamp, Chain, ChainEvent, InputInfo};
pub use open::{from_reader, open};
pub use stream::READ_BUFFER_BYTES;

/// Which input a frame came from, and its 1-based number within that input, exactly as
/// Wireshark numbers it (`frame.number`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FrameRef {
    /// Index into the report's `inputs`.
    pub input: u16,
    /// 1-based frame number within that input.
    pub no: u64,
}

/// A link-layer header type, numbered as in the pcap/pcapng LINKTYPE registry
/// (<https://www.tcpdump.org/linktypes.html>). NetMon media types are mapped onto it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinkType(pub u32);

impl LinkType {
    pub const NULL: LinkType = LinkType(0);
    pub const ETHERNET: LinkType = LinkType(1);
    pub const RAW_12: LinkType = LinkType(12);
    pub const RAW_14: LinkType = LinkType(14);
    pub const LOOP: LinkType = LinkType(108);
    pub const RAW: LinkType = LinkType(101);
    pub const LINUX_SLL: LinkType = LinkType(113);
    pub const IPV4: LinkType = LinkType(228);
    pub const IPV6: LinkType = LinkType(229);
    pub const LINUX_SLL2: LinkType = LinkType(276);
}

/// The file format, chosen from magic bytes, never from the file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Pcap,
    Pcapng,
    Netmon2,
    Live,
}

impl Format {
    /// The name used in the JSON report's `inputs[].format`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Pcap => "pcap",
            Format::Pcapng => "pcapng",
            Format::Netmon2 => "netmon2",
            Format::Live => "live",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One captured frame, borrowed from its reader's buffer until the next call.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub at: FrameRef,
    pub ts: Timestamp,
    pub link: LinkType,
    /// The captured bytes; shorter than `orig_len` when the capture was cut by its snaplen.
    pub data: &'a [u8],
    /// The frame's length on the wire.
    pub orig_len: u32,
}

impl Frame<'_> {
    /// True when the capture kept fewer bytes than the frame had on the wire.
    pub fn is_truncated(&self) -> bool {
        (self.data.len() as u64) < u64::from(self.orig_len)
    }
}

/// Why a capture source cannot go on. Variants carry what a user needs to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open '{path}': {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read '{path}': {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("'{path}' is not a capture file tdsscope can read (pcap, pcapng, Network Monitor 2.x, optionally gzip-compressed); it starts with {magic}")]
    UnknownFormat { path: PathBuf, magic: String },
    #[error("'{path}' is empty")]
    Empty { path: PathBuf },
    /// The file is damaged at `offset`; frames before it were delivered.
    #[error("'{path}' is damaged at byte {offset}: {what}")]
    Malformed {
        path: PathBuf,
        offset: u64,
        what: String,
    },
}

/// A source of frames: a capture file reader or a live interface.
///
/// `next_frame` returns `Ok(None)` at a clean end. After an `Err`, the source is finished:
/// the caller reports the error (a `capture.malformed` finding for damage) and moves on.
pub trait FrameSource {
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, Error>;
    /// The format of this source, fixed once the header is read.
    fn format(&self) -> Format;
    /// Bytes consumed from the underlying file so far (compressed bytes for gzip input), for
    /// the progress bar.
    fn bytes_read(&self) -> u64;
    /// Frames whose captured length was shorter than the original, and the largest snaplen
    /// seen (0 if unknown), for the `capture.truncated_frames` finding.
    fn snaplen(&self) -> Option<u32> {
        None
    }
    /// True when the file was gzip-compressed.
    fn compressed(&self) -> bool {
        false
    }
    /// Frames so far whose captured length was shorter than their length on the wire.
    fn truncated_frames(&self) -> u64 {
        0
    }
}

impl Error {
    /// The file the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            Error::Open { path, .. }
            | Error::Read { path, .. }
            | Error::UnknownFormat { path, .. }
            | Error::Empty { path }
            | Error::Malformed { path, .. } => path,
        }
    }
}
