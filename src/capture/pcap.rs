//! Classic libpcap files: the 24-byte global header, then 16-byte record headers each
//! followed by the captured bytes (draft-ietf-opsawg-pcap, sections 4 and 5).
//!
//! All four magics are read: microsecond and nanosecond timestamps, either byte order. The
//! link type is the low 28 bits of the header's LinkType field (section 4: the upper bits carry
//! the FCS length, which frames here never need).

use std::io::BufRead;
use std::path::{Path, PathBuf};

use nom::number::complete::u32 as nom_u32;
use nom::number::Endianness;
use nom::{IResult, Parser};

use super::stream::{malformed, read_error, ByteStream};
use super::{Error, Format, Frame, FrameRef, FrameSource, LinkType};
use crate::limits::Limits;
use crate::time::Timestamp;

/// Bytes of the global file header.
pub const FILE_HEADER_LEN: usize = 24;
/// Bytes of each record header.
pub const RECORD_HEADER_LEN: usize = 16;

/// A captured length may exceed the header's snaplen a little (some writers put 65535 there
/// and still store jumbo or offloaded frames), but not by more than this: past it the length
/// field is garbage and the rest of the file cannot be trusted.
pub const SNAPLEN_SLACK_BYTES: u32 = 65_536;

/// What the magic number says about the rest of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Magic {
    pub endian: Endianness,
    pub nanos: bool,
}

/// Reads the magic number as stored on disk; `None` if it is not a pcap magic.
pub fn magic(first4: &[u8]) -> Option<Magic> {
    let m = |endian, nanos| Some(Magic { endian, nanos });
    match first4.get(..4)? {
        [0xd4, 0xc3, 0xb2, 0xa1] => m(Endianness::Little, false),
        [0xa1, 0xb2, 0xc3, 0xd4] => m(Endianness::Big, false),
        [0x4d, 0x3c, 0xb2, 0xa1] => m(Endianness::Little, true),
        [0xa1, 0xb2, 0x3c, 0x4d] => m(Endianness::Big, true),
        _ => None,
    }
}

/// The global header (section 4), less the fields nothing reads (thiszone, sigfigs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    pub magic: Magic,
    pub version_major: u16,
    pub version_minor: u16,
    pub snaplen: u32,
    pub link: LinkType,
}

/// ```text
///  magic(4) version_major(2) version_minor(2) thiszone(4) sigfigs(4) snaplen(4) linktype(4)
/// ```
pub fn parse_file_header(input: &[u8]) -> IResult<&[u8], FileHeader> {
    let Some(magic) = magic(input) else {
        return Err(nom::Err::Error(nom::error::Error::new(
            input,
            nom::error::ErrorKind::Tag,
        )));
    };
    let e = magic.endian;
    let (rest, (_, major, minor, _zone, _sigfigs, snaplen, linktype)) = (
        nom::bytes::complete::take(4usize),
        nom::number::complete::u16(e),
        nom::number::complete::u16(e),
        nom_u32(e),
        nom_u32(e),
        nom_u32(e),
        nom_u32(e),
    )
        .parse(input)?;
    Ok((
        rest,
        FileHeader {
            magic,
            version_major: major,
            version_minor: minor,
            snaplen,
            link: LinkType(linktype & 0x0FFF_FFFF),
        },
    ))
}

/// A record header (section 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub ts_sec: u32,
    /// Microseconds or nanoseconds, as the magic says.
    pub ts_frac: u32,
    pub caplen: u32,
    pub orig_len: u32,
}

/// ```text
///  ts_sec(4) ts_usec_or_nsec(4) captured_len(4) original_len(4)
/// ```
pub fn parse_record_header(input: &[u8], e: Endianness) -> IResult<&[u8], RecordHeader> {
    let (rest, (ts_sec, ts_frac, caplen, orig_len)) =
        (nom_u32(e), nom_u32(e), nom_u32(e), nom_u32(e)).parse(input)?;
    Ok((
        rest,
        RecordHeader {
            ts_sec,
            ts_frac,
            caplen,
            orig_len,
        },
    ))
}

/// Streaming reader for classic pcap. Memory: the read-ahead buffer plus one frame.
pub struct PcapReader<R> {
    stream: ByteStream<R>,
    path: PathBuf,
    input: u16,
    header: FileHeader,
    max_frame_bytes: usize,
    frame: Vec<u8>,
    frames: u64,
    truncated: u64,
    failed: bool,
}

impl<R: BufRead> PcapReader<R> {
    /// Reads the global header. `path` only names the input in errors.
    pub fn new(reader: R, path: &Path, input: u16, limits: &Limits) -> Result<Self, Error> {
        let mut stream = ByteStream::new(reader);
        let mut raw = [0u8; FILE_HEADER_LEN];
        let got = stream
            .read_full(&mut raw)
            .map_err(|e| read_error(path, 0, e))?;
        if got == 0 {
            return Err(Error::Empty {
                path: path.to_path_buf(),
            });
        }
        let header = match raw.get(..got).map(parse_file_header) {
            Some(Ok((_, h))) if got == FILE_HEADER_LEN => h,
            _ if magic(&raw).is_none() => {
                return Err(malformed(path, 0, "not a pcap magic number"));
            }
            _ => {
                return Err(malformed(
                    path,
                    got as u64,
                    "file ends in the middle of the pcap file header",
                ))
            }
        };
        Ok(PcapReader {
            stream,
            path: path.to_path_buf(),
            input,
            header,
            max_frame_bytes: limits.max_frame_bytes,
            frame: Vec::new(),
            frames: 0,
            truncated: 0,
            failed: false,
        })
    }

    pub fn header(&self) -> &FileHeader {
        &self.header
    }

    fn read_frame(&mut self) -> Result<Option<Frame<'_>>, Error> {
        // Poisoned until this frame is complete: after any error the reader stays finished.
        self.failed = true;
        let start = self.stream.offset();
        let n = self.frames + 1;
        let at_eof = self
            .stream
            .at_eof()
            .map_err(|e| read_error(&self.path, start, e))?;
        if at_eof {
            self.failed = false;
            return Ok(None);
        }
        let mut raw = [0u8; RECORD_HEADER_LEN];
        let got = self
            .stream
            .read_full(&mut raw)
            .map_err(|e| read_error(&self.path, start, e))?;
        let rec = match parse_record_header(&raw, self.header.magic.endian) {
            Ok((_, rec)) if got == RECORD_HEADER_LEN => rec,
            _ => {
                return Err(malformed(
                    &self.path,
                    start,
                    format!("file ends in the middle of frame {n} (record header)"),
                ))
            }
        };
        let caplen = usize::try_from(rec.caplen).unwrap_or(usize::MAX);
        if caplen > self.max_frame_bytes {
            return Err(malformed(
                &self.path,
                start,
                format!(
                    "frame {n} claims {} captured bytes, more than the {} allowed; the length field is corrupt",
                    rec.caplen, self.max_frame_bytes
                ),
            ));
        }
        if self.header.snaplen > 0
            && rec.caplen > self.header.snaplen.saturating_add(SNAPLEN_SLACK_BYTES)
        {
            return Err(malformed(
                &self.path,
                start,
                format!(
                    "frame {n} claims {} captured bytes, far above the file's snaplen {}; the length field is corrupt",
                    rec.caplen, self.header.snaplen
                ),
            ));
        }
        if self.frame.len() < caplen {
            self.frame.resize(caplen, 0);
        }
        let data = self.frame.get_mut(..caplen).unwrap_or_default();
        let got = self
            .stream
            .read_full(data)
            .map_err(|e| read_error(&self.path, start, e))?;
        if got < caplen {
            return Err(malformed(
                &self.path,
                start,
                format!("file ends in the middle of frame {n}"),
            ));
        }
        let frac_ns = if self.header.magic.nanos {
            i64::from(rec.ts_frac)
        } else {
            i64::from(rec.ts_frac) * 1_000
        };
        let ts = Timestamp::from_nanos(i64::from(rec.ts_sec) * 1_000_000_000 + frac_ns);
        self.frames = n;
        self.failed = false;
        if rec.caplen < rec.orig_len {
            self.truncated += 1;
        }
        Ok(Some(Frame {
            at: FrameRef {
                input: self.input,
                no: n,
            },
            ts,
            link: self.header.link,
            data: self.frame.get(..caplen).unwrap_or_default(),
            orig_len: rec.orig_len,
        }))
    }
}

impl<R: BufRead> FrameSource for PcapReader<R> {
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, Error> {
        if self.failed {
            return Ok(None);
        }
        self.read_frame()
    }

    fn format(&self) -> Format {
        Format::Pcap
    }

    fn bytes_read(&self) -> u64 {
        self.stream.offset()
    }

    fn snaplen(&self) -> Option<u32> {
        Some(self.header.snaplen)
    }

    fn truncated_frames(&self) -> u64 {
        self.truncated
    }
}
