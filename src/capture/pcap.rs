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
    /// Bytes of the last frame handed out straight from the read buffer, consumed at the
    /// next call (the frame borrows them until then).
    pending: usize,
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
            pending: 0,
        })
    }

    pub fn header(&self) -> &FileHeader {
        &self.header
    }

    /// The fast path: a whole record already in the read buffer is handed out in place, with
    /// no copy. Anything unusual (a record cut by the buffer's end, a length to reject) is left
    /// to [`read_frame`](Self::read_frame), which copies and reports errors.
    fn frame_in_buffer(&mut self) -> Option<(RecordHeader, usize)> {
        let buf = self.stream.peek().ok()?;
        let raw = buf.get(..RECORD_HEADER_LEN)?;
        let (_, rec) = parse_record_header(raw, self.header.magic.endian).ok()?;
        let caplen = usize::try_from(rec.caplen).ok()?;
        let sane = caplen <= self.max_frame_bytes
            && (self.header.snaplen == 0
                || rec.caplen <= self.header.snaplen.saturating_add(SNAPLEN_SLACK_BYTES));
        (sane && buf.len() >= RECORD_HEADER_LEN + caplen).then_some((rec, caplen))
    }

    fn timestamp(&self, rec: &RecordHeader) -> Timestamp {
        let frac_ns = if self.header.magic.nanos {
            i64::from(rec.ts_frac)
        } else {
            i64::from(rec.ts_frac) * 1_000
        };
        Timestamp::from_nanos(i64::from(rec.ts_sec) * 1_000_000_000 + frac_ns)
    }

    fn read_frame(&mut self) -> Result<Option<Frame<'_>>, Error> {
        if self.pending > 0 {
            self.stream.consume(self.pending);
            self.pending = 0;
        }
        if let Some((rec, caplen)) = self.frame_in_buffer() {
            let n = self.frames + 1;
            self.frames = n;
            if rec.caplen < rec.orig_len {
                self.truncated += 1;
            }
            self.pending = RECORD_HEADER_LEN + caplen;
            let ts = self.timestamp(&rec);
            let at = FrameRef {
                input: self.input,
                no: n,
            };
            let link = self.header.link;
            let buf = self
                .stream
                .peek()
                .map_err(|e| read_error(&self.path, 0, e))?;
            let data = buf
                .get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + caplen)
                .unwrap_or_default();
            return Ok(Some(Frame {
                at,
                ts,
                link,
                data,
                orig_len: rec.orig_len,
            }));
        }
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
        let ts = self.timestamp(&rec);
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
        // The frame handed out in place counts as read, though its bytes are consumed later.
        self.stream.offset() + self.pending as u64
    }

    fn snaplen(&self) -> Option<u32> {
        Some(self.header.snaplen)
    }

    fn truncated_frames(&self) -> u64 {
        self.truncated
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::capture::fixtures::{cursor, pcap_header, pcap_record};
    use proptest::prelude::*;

    /// Little-endian microsecond pcap, Ethernet, snaplen 65535, two frames (the second cut
    /// to 4 of its 10 bytes).
    const VALID_LE: [u8; 24 + 16 + 6 + 16 + 4] = [
        /* magic */ 0xd4, 0xc3, 0xb2, 0xa1, /* version */ 0x02, 0x00, 0x04, 0x00,
        /* thiszone */ 0, 0, 0, 0, /* sigfigs */ 0, 0, 0, 0,
        /* snaplen 65535 */ 0xff, 0xff, 0x00, 0x00, /* linktype 1 */ 0x01, 0x00, 0x00,
        0x00, /* ts_sec 1_000_000_000 */ 0x00, 0xca, 0x9a, 0x3b, /* ts_usec 5 */ 0x05, 0,
        0, 0, /* caplen 6 */ 0x06, 0, 0, 0, /* orig_len 6 */ 0x06, 0, 0, 0,
        /* data */ 1, 2, 3, 4, 5, 6, /* ts_sec */ 0x01, 0xca, 0x9a, 0x3b,
        /* ts_usec 999_999 */ 0x3f, 0x42, 0x0f, 0x00, /* caplen 4 */ 0x04, 0, 0, 0,
        /* orig_len 10 */ 0x0a, 0, 0, 0, /* data */ 7, 8, 9, 10,
    ];

    fn reader(bytes: &[u8]) -> Result<PcapReader<std::io::Cursor<Vec<u8>>>, Error> {
        PcapReader::new(cursor(bytes), Path::new("t.pcap"), 3, &Limits::default())
    }

    #[test]
    fn reads_valid_little_endian_microseconds() {
        let mut r = reader(&VALID_LE).unwrap();
        assert_eq!(r.header().snaplen, 65535);
        let f = r.next_frame().unwrap().unwrap();
        assert_eq!(f.at, FrameRef { input: 3, no: 1 });
        assert_eq!(f.ts.as_nanos(), 1_000_000_000_000_005_000);
        assert_eq!(f.link, LinkType::ETHERNET);
        assert_eq!(f.data, &[1, 2, 3, 4, 5, 6]);
        assert!(!f.is_truncated());
        let f = r.next_frame().unwrap().unwrap();
        assert_eq!(f.at.no, 2);
        assert_eq!(f.ts.as_nanos(), 1_000_000_001_999_999_000);
        assert_eq!(f.data, &[7, 8, 9, 10]);
        assert_eq!(f.orig_len, 10);
        assert!(f.is_truncated());
        assert!(r.next_frame().unwrap().is_none());
        assert!(r.next_frame().unwrap().is_none());
        assert_eq!(r.truncated_frames(), 1);
        assert_eq!(r.snaplen(), Some(65535));
        assert_eq!(r.bytes_read(), VALID_LE.len() as u64);
    }

    #[test]
    fn all_four_magics_read_the_same_frames() {
        for e in [Endianness::Little, Endianness::Big] {
            for nanos in [false, true] {
                let mut file = pcap_header(e, nanos, 262_144, 101);
                let frac = if nanos { 123_456_789 } else { 123_456 };
                file.extend(pcap_record(e, 1_700_000_000, frac, &[0x45, 0, 0, 20], 4));
                let mut r = reader(&file).unwrap();
                assert_eq!(r.header().magic, Magic { endian: e, nanos });
                let f = r.next_frame().unwrap().unwrap();
                let want = if nanos {
                    1_700_000_000_123_456_789
                } else {
                    1_700_000_000_123_456_000
                };
                assert_eq!(f.ts.as_nanos(), want, "{e:?} nanos={nanos}");
                assert_eq!(f.link, LinkType::RAW);
                assert_eq!(f.data, &[0x45, 0, 0, 20]);
            }
        }
    }

    #[test]
    fn fcs_bits_of_the_link_type_are_ignored() {
        let file = pcap_header(Endianness::Little, false, 0, 0x1000_0000 | 1);
        let r = reader(&file).unwrap();
        assert_eq!(r.header().link, LinkType::ETHERNET);
    }

    #[test]
    fn every_truncation_gives_partial_frames_or_an_error() {
        for n in 0..VALID_LE.len() {
            let cut = &VALID_LE[..n];
            let Ok(mut r) = reader(cut) else {
                assert!(n < FILE_HEADER_LEN);
                continue;
            };
            let mut frames = 0;
            let end = loop {
                match r.next_frame() {
                    Ok(Some(_)) => frames += 1,
                    other => break other.map(|_| ()),
                }
            };
            let boundary = n == 24 || n == 24 + 16 + 6;
            match end {
                Ok(()) => assert!(boundary, "clean end at {n}"),
                Err(Error::Malformed { offset, what, .. }) => {
                    assert!(!boundary, "{n}: {what}");
                    assert!(what.contains(&format!("frame {}", frames + 1)), "{what}");
                    assert_eq!(offset, if frames == 0 { 24 } else { 46 });
                }
                Err(e) => panic!("{n}: {e}"),
            }
            // A finished reader stays finished.
            assert!(r.next_frame().unwrap().is_none());
        }
    }

    #[test]
    fn impossible_captured_length_is_malformed_after_good_frames() {
        let e = Endianness::Little;
        let mut file = pcap_header(e, false, 65535, 1);
        file.extend(pcap_record(e, 1, 0, &[1, 2], 2));
        let bad_at = file.len() as u64;
        file.extend(pcap_record(e, 1, 0, &[], 0));
        // caplen := 300 KiB, above the default 256 KiB limit.
        let at = bad_at as usize + 8;
        file[at..at + 4].copy_from_slice(&(300u32 << 10).to_le_bytes());
        let mut r = reader(&file).unwrap();
        assert!(r.next_frame().unwrap().is_some());
        match r.next_frame() {
            Err(Error::Malformed { offset, what, .. }) => {
                assert_eq!(offset, bad_at);
                assert!(what.contains("frame 2"), "{what}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn captured_length_far_above_snaplen_is_malformed() {
        let e = Endianness::Big;
        let mut file = pcap_header(e, false, 96, 1);
        file.extend(pcap_record(e, 1, 0, &[0; 200], 200)); // a little over: fine
        file.extend(pcap_record(e, 1, 0, &vec![0; 96 + 65_537], 70_000));
        let mut r = reader(&file).unwrap();
        assert_eq!(r.next_frame().unwrap().unwrap().data.len(), 200);
        assert!(matches!(
            r.next_frame(),
            Err(Error::Malformed { offset: 240, .. })
        ));
    }

    #[test]
    fn not_a_pcap_is_refused() {
        assert!(matches!(
            reader(b"GMBU\0\0\0\0"),
            Err(Error::Malformed { offset: 0, .. })
        ));
        assert!(matches!(reader(b""), Err(Error::Empty { .. })));
    }

    proptest! {
        #[test]
        fn any_bytes_after_a_header_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut file = pcap_header(Endianness::Little, false, 65535, 1);
            file.extend(tail);
            let mut r = reader(&file).unwrap();
            for _ in 0..1000 {
                match r.next_frame() {
                    Ok(Some(f)) => prop_assert!(f.data.len() <= file.len()),
                    _ => break,
                }
            }
        }
    }
}
