//! Microsoft Network Monitor 2.x capture files (`.cap`, magic "GMBU"), as documented in the
//! Network Monitor 3.x help ("Capture File Format") and read by Wireshark's wiretap/netmon.c.
//!
//! Layout (all integers little-endian):
//! ```text
//! file header (128 bytes, 64 used):
//!   magic "GMBU"(4) ver_minor(1) ver_major(1) mac_type(2)
//!   start time as SYSTEMTIME: year month day_of_week day hour minute second millisecond (8 × 2)
//!   frame_table_offset(4) frame_table_length(4) user_data/comment/process-info/network-info
//!   offsets and lengths (6 × 4 + 2 × 4)
//! frame records, anywhere in the file:
//!   ts_delta(8, µs since the start time) orig_len(4) incl_len(4) data(incl_len)
//!   trailer, version 2.1+: media_type(2)
//!                  2.2+: + process_info_index(4)
//!                  2.3+: + utc_timestamp(8, FILETIME) + timezone_index(1)
//! frame table: one u32 file offset per frame, in frame order.
//! ```
//! Frames are read in frame-table order with seeks, so the source must be seekable. The frame
//! table is read lazily in chunks of [`TABLE_CHUNK_ENTRIES`]: memory does not grow with the
//! number of frames.
//!
//! The start time is a SYSTEMTIME without a time zone. Wireshark converts it as local time of
//! the machine that reads the file; we read it as UTC, which equals `TZ=UTC tshark`.
//! Version 2.3 frames carry their own UTC FILETIME, which wins over start + delta.

use std::io::{BufRead, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use nom::bytes::complete::{tag, take};
use nom::number::complete::{le_u16, le_u32, le_u64, le_u8};
use nom::{IResult, Parser};

use super::stream::{malformed, read_error, ByteStream};
use super::{Error, Format, Frame, FrameRef, FrameSource, LinkType};
use crate::limits::Limits;
use crate::time::Timestamp;

pub const MAGIC: &[u8; 4] = b"GMBU";
/// Bytes of the file header that carry fields (the header is padded to 128).
pub const FILE_HEADER_LEN: usize = 64;
pub const RECORD_HEADER_LEN: usize = 16;
/// Frame-table entries read at a time (16 KiB).
pub const TABLE_CHUNK_ENTRIES: usize = 4096;

/// NetMon media types with no LINKTYPE equivalent become `LinkType(UNMAPPED_MEDIA_BASE |
/// media_type)`: above the 28 bits a LINKTYPE can have, so decode treats them as unknown.
pub const UNMAPPED_MEDIA_BASE: u32 = 0xFFFF_0000;

/// The NetMon media type behind a link type made by [`link_for_media`], if it had no LINKTYPE.
pub fn unmapped_media(link: LinkType) -> Option<u16> {
    if link.0 & 0xFFFF_0000 == UNMAPPED_MEDIA_BASE {
        u16::try_from(link.0 & 0xFFFF).ok()
    } else {
        None
    }
}

/// Per-frame media types that are NetMon's own metadata records (adapter list, DNS cache,
/// reassembly headers): Wireshark drops them, so frame numbers only match if we do too.
const MEDIA_PAYLOAD_HEADER: u16 = 0xFFFC;
const MEDIA_NETWORK_INFO: u16 = 0xFFFD;
const MEDIA_DNS_CACHE: u16 = 0xFFFE;

/// Maps a NetMon media (MAC) type to a LINKTYPE; `None` for metadata records to skip.
///
/// 0 and 1 are Ethernet (NetMon 3.4 VPN captures write 0 for Ethernet frames), 2 Token Ring,
/// 3 FDDI, 7/8/9 raw IP (tunnel, wireless WAN, raw IP frames), 0xE000 + n a converted pcap
/// file whose LINKTYPE is n, 0xE080 plain 802.11. NDIS WAN/ATM (4), NetMon's 802.11 with its
/// own radio header (6) and the WFP types (0xE083..0xE088) have no LINKTYPE.
pub fn link_for_media(media: u16) -> Option<LinkType> {
    let unmapped = LinkType(UNMAPPED_MEDIA_BASE | u32::from(media));
    Some(match media {
        0 | 1 => LinkType::ETHERNET,
        2 => LinkType(6),
        3 => LinkType(10),
        7..=9 => LinkType::RAW,
        0xE080 => LinkType(105),
        0xE081..=0xE08A => unmapped,
        0xE000..=0xEFFF => LinkType(u32::from(media & 0x0FFF)),
        MEDIA_PAYLOAD_HEADER | MEDIA_NETWORK_INFO | MEDIA_DNS_CACHE => return None,
        _ => unmapped,
    })
}

/// SYSTEMTIME fields (only those used).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SystemTime {
    pub year: u16,
    pub month: u16,
    pub day: u16,
    pub hour: u16,
    pub minute: u16,
    pub second: u16,
    pub millisecond: u16,
}

impl SystemTime {
    /// Nanoseconds since the Unix epoch, reading the fields as UTC. Out-of-range fields
    /// carry over as C `mktime` does (second 60 is the next minute), so no value fails.
    /// i128, because SYSTEMTIME years (1601..30827) reach far beyond i64 nanoseconds.
    pub fn to_unix_nanos(self) -> i128 {
        let month0 = i64::from(self.month) - 1;
        let year = i64::from(self.year) + month0.div_euclid(12);
        let month = month0.rem_euclid(12) + 1;
        let days = days_from_civil(year, month) + i64::from(self.day) - 1;
        let secs = days * 86_400
            + i64::from(self.hour) * 3_600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        i128::from(secs) * 1_000_000_000 + i128::from(self.millisecond) * 1_000_000
    }
}

/// Days from 1970-01-01 to the first day of `month` (1..=12) of `year`, proleptic Gregorian.
fn days_from_civil(year: i64, month: i64) -> i64 {
    // Count years from March so the leap day is the last day of the counting year.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y.rem_euclid(400);
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The file header fields the reader needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    pub version_major: u8,
    pub version_minor: u8,
    pub media: u16,
    pub start: SystemTime,
    pub frame_table_offset: u32,
    pub frame_table_length: u32,
}

impl FileHeader {
    /// Bytes of the trailer after each frame's data: none before 2.1.
    pub fn trailer_len(&self) -> usize {
        match self.version_minor {
            0 => 0,
            1 => 2,
            2 => 6,
            _ => 15,
        }
    }
}

/// Parses the first [`FILE_HEADER_LEN`] bytes (see the module doc for the layout).
pub fn parse_file_header(input: &[u8]) -> IResult<&[u8], FileHeader> {
    let (rest, (_, version_minor, version_major, media)) =
        (tag(&MAGIC[..]), le_u8, le_u8, le_u16).parse(input)?;
    let (rest, (year, month, _dow, day, hour, minute, second, millisecond)) = (
        le_u16, le_u16, le_u16, le_u16, le_u16, le_u16, le_u16, le_u16,
    )
        .parse(rest)?;
    let (rest, (frame_table_offset, frame_table_length, _other)) =
        (le_u32, le_u32, take(32usize)).parse(rest)?;
    Ok((
        rest,
        FileHeader {
            version_major,
            version_minor,
            media,
            start: SystemTime {
                year,
                month,
                day,
                hour,
                minute,
                second,
                millisecond,
            },
            frame_table_offset,
            frame_table_length,
        },
    ))
}

/// A frame record header: `ts_delta(8) orig_len(4) incl_len(4)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub ts_delta_us: u64,
    pub orig_len: u32,
    pub caplen: u32,
}

pub fn parse_record_header(input: &[u8]) -> IResult<&[u8], RecordHeader> {
    let (rest, (ts_delta_us, orig_len, caplen)) = (le_u64, le_u32, le_u32).parse(input)?;
    Ok((
        rest,
        RecordHeader {
            ts_delta_us,
            orig_len,
            caplen,
        },
    ))
}

/// The frame's offset from the start time in nanoseconds. The field is documented as
/// unsigned microseconds, but NetMon writes frames before the start time as values that turn
/// negative once multiplied by 10 into 100 ns units (Wireshark reads it the same way).
pub fn delta_nanos(ts_delta_us: u64) -> i128 {
    let hundred_ns = ts_delta_us.wrapping_mul(10) as i64;
    i128::from(hundred_ns) * 100
}

/// FILETIME (100 ns units since 1601-01-01 UTC) to Unix nanoseconds.
pub fn filetime_to_unix_nanos(filetime: u64) -> i128 {
    const EPOCH_DIFF_100NS: i128 = 116_444_736_000_000_000;
    (i128::from(filetime) - EPOCH_DIFF_100NS) * 100
}

fn clamp_ts(ns: i128) -> Timestamp {
    let c = ns.clamp(i128::from(i64::MIN), i128::from(i64::MAX));
    Timestamp::from_nanos(i64::try_from(c).unwrap_or(i64::MAX))
}

/// Streaming NetMon 2.x reader over a seekable source. Memory: read-ahead, one frame, one
/// frame-table chunk.
pub struct NetmonReader<R> {
    stream: ByteStream<R>,
    path: PathBuf,
    input: u16,
    header: FileHeader,
    start_ns: i128,
    max_frame_bytes: usize,
    table_entries: u64,
    next_entry: u64,
    chunk: Vec<u32>,
    chunk_first: u64,
    frame: Vec<u8>,
    frames: u64,
    truncated: u64,
    failed: bool,
}

impl<R: BufRead + Seek> NetmonReader<R> {
    /// Reads the file header and the first chunk of the frame table. `reader` must be at
    /// the start of the file. `path` only names the input in errors.
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
        if raw.get(..4) != Some(&MAGIC[..]) {
            return Err(malformed(path, 0, "not a Network Monitor 2.x magic number"));
        }
        let header = match parse_file_header(&raw) {
            Ok((_, h)) if got == FILE_HEADER_LEN => h,
            _ => {
                return Err(malformed(
                    path,
                    got as u64,
                    "file ends in the middle of the Network Monitor file header",
                ))
            }
        };
        if header.version_major != 2 {
            return Err(malformed(
                path,
                4,
                format!(
                    "Network Monitor version {}.{} is not supported (only 2.x)",
                    header.version_major, header.version_minor
                ),
            ));
        }
        if header.frame_table_length % 4 != 0 {
            return Err(malformed(
                path,
                28,
                format!(
                    "frame table length {} is not a multiple of 4",
                    header.frame_table_length
                ),
            ));
        }
        let mut r = NetmonReader {
            stream,
            path: path.to_path_buf(),
            input,
            header,
            start_ns: header.start.to_unix_nanos(),
            max_frame_bytes: limits.max_frame_bytes,
            table_entries: u64::from(header.frame_table_length / 4),
            next_entry: 0,
            chunk: Vec::new(),
            chunk_first: 0,
            frame: Vec::new(),
            frames: 0,
            truncated: 0,
            failed: false,
        };
        // Read the table's first chunk now, so a damaged table is reported at open.
        if r.table_entries > 0 {
            r.table_entry(0)?;
        }
        Ok(r)
    }

    pub fn header(&self) -> &FileHeader {
        &self.header
    }

    fn seek_to(&mut self, offset: u64) -> Result<(), Error> {
        if self.stream.offset() != offset {
            let path = &self.path;
            self.stream
                .get_mut()
                .seek(SeekFrom::Start(offset))
                .map_err(|e| read_error(path, offset, e))?;
            self.stream.set_offset(offset);
        }
        Ok(())
    }

    /// The file offset of frame-table entry `i` (0-based), loading its chunk if needed.
    fn table_entry(&mut self, i: u64) -> Result<u32, Error> {
        let in_chunk = i
            .checked_sub(self.chunk_first)
            .and_then(|k| usize::try_from(k).ok())
            .and_then(|k| self.chunk.get(k).copied());
        if let Some(off) = in_chunk {
            return Ok(off);
        }
        let count = (self.table_entries - i).min(TABLE_CHUNK_ENTRIES as u64);
        let at = u64::from(self.header.frame_table_offset) + i * 4;
        self.seek_to(at)?;
        let mut raw = vec![0u8; usize::try_from(count).unwrap_or(0) * 4];
        let got = self
            .stream
            .read_full(&mut raw)
            .map_err(|e| read_error(&self.path, at, e))?;
        if got < raw.len() {
            return Err(malformed(
                &self.path,
                at,
                format!(
                    "file ends in the middle of the frame table ({} entries declared at offset {})",
                    self.table_entries, self.header.frame_table_offset
                ),
            ));
        }
        self.chunk.clear();
        self.chunk.extend(
            raw.chunks_exact(4)
                .filter_map(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_le_bytes),
        );
        self.chunk_first = i;
        self.chunk
            .first()
            .copied()
            .ok_or_else(|| malformed(&self.path, at, "empty frame table chunk"))
    }

    /// Reads records until one is a frame (metadata records are skipped); returns its
    /// timestamp, link, captured length and original length.
    fn read_record(&mut self) -> Result<Option<(Timestamp, LinkType, usize, u32)>, Error> {
        loop {
            if self.next_entry >= self.table_entries {
                return Ok(None);
            }
            let n = self.frames + 1;
            let start = u64::from(self.table_entry(self.next_entry)?);
            self.next_entry += 1;
            self.seek_to(start)?;
            let path = &self.path;
            let cut = || malformed(path, start, format!("file ends in the middle of frame {n}"));
            let mut raw = [0u8; RECORD_HEADER_LEN];
            let got = self
                .stream
                .read_full(&mut raw)
                .map_err(|e| read_error(path, start, e))?;
            let rec = match parse_record_header(&raw) {
                Ok((_, rec)) if got == RECORD_HEADER_LEN => rec,
                _ => return Err(cut()),
            };
            let caplen = usize::try_from(rec.caplen).unwrap_or(usize::MAX);
            if caplen > self.max_frame_bytes {
                return Err(malformed(
                    path,
                    start,
                    format!(
                        "frame {n} claims {} captured bytes, more than the {} allowed; the length field is corrupt",
                        rec.caplen, self.max_frame_bytes
                    ),
                ));
            }
            let trailer_len = self.header.trailer_len();
            let need = caplen + trailer_len;
            if self.frame.len() < need {
                self.frame.resize(need, 0);
            }
            let dest = self.frame.get_mut(..need).unwrap_or_default();
            let got = self
                .stream
                .read_full(dest)
                .map_err(|e| read_error(path, start, e))?;
            if got < need {
                return Err(cut());
            }
            let trailer = self.frame.get(caplen..need).unwrap_or_default();
            let media = match trailer {
                [a, b, ..] => u16::from_le_bytes([*a, *b]),
                _ => self.header.media,
            };
            let Some(link) = link_for_media(media) else {
                continue;
            };
            let ns = match trailer.get(6..14) {
                Some(ft) if self.header.version_minor >= 3 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(ft);
                    filetime_to_unix_nanos(u64::from_le_bytes(b))
                }
                _ => self.start_ns + delta_nanos(rec.ts_delta_us),
            };
            self.frames = n;
            if rec.caplen < rec.orig_len {
                self.truncated += 1;
            }
            return Ok(Some((clamp_ts(ns), link, caplen, rec.orig_len)));
        }
    }

    fn read_frame(&mut self) -> Result<Option<Frame<'_>>, Error> {
        // Poisoned until a frame or the end is reached: after an error the reader is done.
        self.failed = true;
        let Some((ts, link, caplen, orig_len)) = self.read_record()? else {
            self.failed = false;
            return Ok(None);
        };
        self.failed = false;
        Ok(Some(Frame {
            at: FrameRef {
                input: self.input,
                no: self.frames,
            },
            ts,
            link,
            data: self.frame.get(..caplen).unwrap_or_default(),
            orig_len,
        }))
    }
}

impl<R: BufRead + Seek> FrameSource for NetmonReader<R> {
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, Error> {
        if self.failed {
            return Ok(None);
        }
        self.read_frame()
    }

    fn format(&self) -> Format {
        Format::Netmon2
    }

    fn bytes_read(&self) -> u64 {
        self.stream.offset()
    }

    fn snaplen(&self) -> Option<u32> {
        None
    }

    fn truncated_frames(&self) -> u64 {
        self.truncated
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::capture::fixtures::{cursor, netmon_file, NetmonFrame};
    use proptest::prelude::*;

    /// Start time of netmon2-ipv6-port2433_wswiki_FTPv6-1.cap: 2005-07-16 (Saturday)
    /// 10:29:29.800, which tshark shows as 1121509769.800 with TZ=UTC.
    const START: [u16; 8] = [2005, 7, 6, 16, 10, 29, 29, 800];
    const START_NS: i64 = 1_121_509_769_800_000_000;

    type TestReader = NetmonReader<std::io::Cursor<Vec<u8>>>;

    fn reader(bytes: &[u8]) -> Result<TestReader, Error> {
        NetmonReader::new(cursor(bytes), Path::new("t.cap"), 2, &Limits::default())
    }

    fn frame(delta_us: u64, data: &[u8], media: u16) -> NetmonFrame {
        NetmonFrame {
            delta_us,
            data: data.to_vec(),
            orig_len: data.len() as u32,
            media,
            filetime: 0,
        }
    }

    /// (number, ns, link, data)
    type Seen = (u64, i64, u32, Vec<u8>);

    fn frames(r: &mut TestReader) -> (Vec<Seen>, Option<Error>) {
        let mut out = Vec::new();
        for _ in 0..10_000 {
            match r.next_frame() {
                Ok(Some(f)) => out.push((f.at.no, f.ts.as_nanos(), f.link.0, f.data.to_vec())),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
        panic!("no end")
    }

    #[test]
    fn systemtime_reads_as_utc_like_mktime() {
        let st = |y, mo, d, h, mi, s, ms| SystemTime {
            year: y,
            month: mo,
            day: d,
            hour: h,
            minute: mi,
            second: s,
            millisecond: ms,
        };
        assert_eq!(
            st(2005, 7, 16, 10, 29, 29, 800).to_unix_nanos(),
            i128::from(START_NS)
        );
        assert_eq!(st(1970, 1, 1, 0, 0, 0, 0).to_unix_nanos(), 0);
        for (y, mo, d) in [
            (2024, 2, 29),
            (2000, 3, 1),
            (1601, 1, 1),
            (2100, 12, 31),
            (1999, 12, 31),
        ] {
            let want = chrono::NaiveDate::from_ymd_opt(i32::from(y), u32::from(mo), u32::from(d))
                .unwrap()
                .and_hms_opt(23, 59, 58)
                .unwrap()
                .and_utc()
                .timestamp();
            assert_eq!(
                st(y, mo, d, 23, 59, 58, 0).to_unix_nanos(),
                i128::from(want) * 1_000_000_000
            );
        }
        // Out-of-range fields carry over instead of failing.
        assert_eq!(st(1970, 1, 1, 0, 0, 60, 0).to_unix_nanos(), 60_000_000_000);
        assert_eq!(st(1969, 13, 1, 0, 0, 0, 0).to_unix_nanos(), 0);
        assert_eq!(
            st(1970, 1, 0, 0, 0, 0, 0).to_unix_nanos(),
            -86_400_000_000_000
        );
        assert!(
            st(
                u16::MAX,
                u16::MAX,
                u16::MAX,
                u16::MAX,
                u16::MAX,
                u16::MAX,
                u16::MAX
            )
            .to_unix_nanos()
                > 0
        );
    }

    #[test]
    fn version_2_0_uses_the_header_media_type_and_start_time() {
        let negative = (1u64 << 63) - 5_000_000; // -5 s once in 100 ns units
        let file = netmon_file(
            0,
            1,
            START,
            &[
                frame(0, &[1, 2, 3], 0),
                frame(1_500_000, &[4], 0),
                frame(negative, &[5], 0),
            ],
            None,
        );
        let mut r = reader(&file).unwrap();
        let (f, err) = frames(&mut r);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(
            f,
            vec![
                (1, START_NS, 1, vec![1, 2, 3]),
                (2, START_NS + 1_500_000_000, 1, vec![4]),
                (3, START_NS - 5_000_000_000, 1, vec![5]),
            ]
        );
        assert!(r.next_frame().unwrap().is_none());
        assert_eq!(r.format(), Format::Netmon2);
    }

    #[test]
    fn trailers_of_2_1_and_2_2_give_each_frame_its_media_type() {
        for minor in [1, 2] {
            let file = netmon_file(
                minor,
                1,
                START,
                &[
                    frame(1, &[1], 1),
                    frame(2, &[2], 0xE000 | 101),
                    frame(3, &[3], 0xFFFD), // adapter list: not a frame
                    frame(4, &[4], 6),      // NetMon 802.11: no LINKTYPE
                    frame(5, &[5], 0xFFFF), // filter string: delivered, unmapped
                    frame(6, &[6], 9),
                ],
                None,
            );
            let (f, err) = frames(&mut reader(&file).unwrap());
            assert!(err.is_none(), "{err:?}");
            let links: Vec<(u64, u32, u8)> = f.iter().map(|x| (x.0, x.2, x.3[0])).collect();
            assert_eq!(
                links,
                vec![
                    (1, 1, 1),
                    (2, 101, 2),
                    (3, UNMAPPED_MEDIA_BASE | 6, 4),
                    (4, UNMAPPED_MEDIA_BASE | 0xFFFF, 5),
                    (5, 101, 6),
                ],
                "2.{minor}"
            );
            assert_eq!(unmapped_media(LinkType(f[2].2)), Some(6));
            assert_eq!(unmapped_media(LinkType::ETHERNET), None);
        }
    }

    #[test]
    fn version_2_3_uses_the_per_frame_filetime() {
        // 2020-01-01T00:00:00Z + 0.1234567 s.
        let filetime = 1_577_836_800u64 * 10_000_000 + 116_444_736_000_000_000 + 1_234_567;
        let mut f0 = frame(999, &[1, 2], 1);
        f0.filetime = filetime;
        let file = netmon_file(3, 1, START, &[f0], None);
        let (f, err) = frames(&mut reader(&file).unwrap());
        assert!(err.is_none());
        assert_eq!(f[0].1, 1_577_836_800_123_456_700);
    }

    #[test]
    fn frames_come_in_table_order() {
        let file = netmon_file(
            0,
            1,
            START,
            &[frame(3, &[3], 1), frame(1, &[1], 1), frame(2, &[2], 1)],
            Some(&[1, 2, 0]),
        );
        let (f, err) = frames(&mut reader(&file).unwrap());
        assert!(err.is_none());
        assert_eq!(f.iter().map(|x| x.3[0]).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(f.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    }

    #[test]
    fn tables_larger_than_one_chunk_are_read_in_chunks() {
        let many: Vec<NetmonFrame> = (0..TABLE_CHUNK_ENTRIES as u64 * 2 + 3)
            .map(|i| frame(i, &(i as u32).to_le_bytes(), 1))
            .collect();
        let file = netmon_file(1, 1, START, &many, None);
        let (f, err) = frames(&mut reader(&file).unwrap());
        assert!(err.is_none());
        assert_eq!(f.len(), many.len());
        for (i, x) in f.iter().enumerate() {
            assert_eq!(x.3, (i as u32).to_le_bytes());
            assert_eq!(x.1, START_NS + i as i64 * 1_000);
        }
    }

    #[test]
    fn impossible_lengths_are_malformed() {
        let good = netmon_file(0, 1, START, &[frame(0, &[1], 1), frame(0, &[2], 1)], None);
        // Second frame claims 1 MiB.
        let second = 128 + 16 + 1;
        let mut big = good.clone();
        big[second + 12..second + 16].copy_from_slice(&(1u32 << 20).to_le_bytes());
        let mut r = reader(&big).unwrap();
        let (f, err) = frames(&mut r);
        assert_eq!(f.len(), 1);
        assert!(matches!(err, Some(Error::Malformed { offset, .. }) if offset == second as u64));
        // Table length not a multiple of 4.
        let mut odd = good.clone();
        odd[28..32].copy_from_slice(&7u32.to_le_bytes());
        assert!(matches!(reader(&odd), Err(Error::Malformed { .. })));
        // Table beyond the end of the file.
        let mut far = good.clone();
        far[24..28].copy_from_slice(&1_000_000u32.to_le_bytes());
        assert!(matches!(reader(&far), Err(Error::Malformed { .. })));
        // A table entry pointing past the end.
        let mut past = good.clone();
        let n = past.len();
        past[n - 4..].copy_from_slice(&1_000_000u32.to_le_bytes());
        let (f, err) = frames(&mut reader(&past).unwrap());
        assert_eq!(f.len(), 1);
        assert!(matches!(err, Some(Error::Malformed { what, .. }) if what.contains("frame 2")));
        // Version 1.x and 3.x are refused.
        let mut v1 = good.clone();
        v1[5] = 1;
        assert!(matches!(reader(&v1), Err(Error::Malformed { .. })));
        assert!(matches!(reader(b"GMBU"), Err(Error::Malformed { .. })));
        assert!(matches!(reader(b""), Err(Error::Empty { .. })));
    }

    #[test]
    fn every_truncation_gives_partial_frames_or_an_error() {
        let file = netmon_file(
            2,
            1,
            START,
            &[frame(0, &[1, 2, 3], 1), frame(5, &[4, 5], 1)],
            None,
        );
        for n in 0..file.len() {
            match reader(&file[..n]) {
                Err(_) => {}
                Ok(mut r) => {
                    let (_, err) = frames(&mut r);
                    assert!(err.is_some(), "{n}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn any_bytes_after_a_header_never_panic(
            minor in 0u8..5,
            table_at in 0u32..2200,
            table_len in 0u32..64,
            tail in proptest::collection::vec(any::<u8>(), 0..2048),
        ) {
            let mut file = netmon_file(minor, 1, START, &[], None);
            file[24..28].copy_from_slice(&table_at.to_le_bytes());
            file[28..32].copy_from_slice(&(table_len * 4).to_le_bytes());
            file.extend(tail);
            if let Ok(mut r) = reader(&file) {
                for _ in 0..100 {
                    if !matches!(r.next_frame(), Ok(Some(_))) {
                        break;
                    }
                }
            }
        }
    }
}
