//! pcapng files (draft-ietf-opsawg-pcapng, "PCAP Now Generic"): a sequence of sections, each
//! opened by a Section Header Block that fixes the byte order, declares its own interfaces
//! (Interface Description Blocks) and carries packet blocks pointing at them.
//!
//! Read: SHB (section 4.1), IDB (4.2) with `if_tsresol` and `if_tsoffset`, EPB (4.3), SPB
//! (4.4) and the obsolete Packet Block (appendix A, type 2). Every other block (Name
//! Resolution, Interface Statistics, Decryption Secrets, custom, unknown) is skipped without
//! being buffered; its length fields are still checked.

use std::io::BufRead;
use std::ops::Range;
use std::path::{Path, PathBuf};

use nom::bytes::complete::take;
use nom::number::complete::{i64 as nom_i64, u16 as nom_u16, u32 as nom_u32};
use nom::number::Endianness;
use nom::{IResult, Parser};

use super::stream::{malformed, read_error, ByteStream};
use super::{Error, Format, Frame, FrameRef, FrameSource, LinkType};
use crate::limits::Limits;
use crate::time::Timestamp;

/// Block types (section 11.1 of the draft, "Block Type Codes").
pub mod block_type {
    pub const SECTION_HEADER: u32 = 0x0A0D_0D0A;
    pub const INTERFACE_DESCRIPTION: u32 = 0x0000_0001;
    /// Obsolete Packet Block (appendix A).
    pub const PACKET: u32 = 0x0000_0002;
    pub const SIMPLE_PACKET: u32 = 0x0000_0003;
    pub const NAME_RESOLUTION: u32 = 0x0000_0004;
    pub const INTERFACE_STATISTICS: u32 = 0x0000_0005;
    pub const ENHANCED_PACKET: u32 = 0x0000_0006;
    pub const DECRYPTION_SECRETS: u32 = 0x0000_000A;
    pub const CUSTOM: u32 = 0x0000_0BAD;
    pub const CUSTOM_NO_COPY: u32 = 0x4000_0BAD;
}

/// The Byte-Order Magic of a Section Header Block, read in the section's own byte order.
pub const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

/// Blocks that are skipped (not buffered) may be this large at most. They cost no memory,
/// but a larger length in a block header is far more likely corruption than a real block,
/// and believing it would silently swallow the rest of the file.
pub const MAX_SKIPPED_BLOCK_BYTES: u32 = 128 << 20;

/// Room for options in a buffered block on top of `Limits::max_frame_bytes` (comments,
/// flags, hashes). Wireshark writes a few hundred bytes at most.
pub const OPTIONS_ALLOWANCE_BYTES: usize = 1 << 20;

/// Interfaces one section may declare. An EPB's interface id is 32-bit; real captures have a
/// handful, and each costs a few bytes here.
pub const MAX_INTERFACES: usize = 65_536;

/// Option codes read from an IDB (section 4.2).
const OPT_END: u16 = 0;
const OPT_IF_TSRESOL: u16 = 9;
const OPT_IF_TSOFFSET: u16 = 14;

/// `if_tsresol`: the unit of packet timestamps, 10^-n or (most significant bit set) 2^-n
/// seconds. Default 10^-6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TsResol {
    Pow10(u8),
    Pow2(u8),
}

impl Default for TsResol {
    fn default() -> Self {
        TsResol::Pow10(6)
    }
}

impl TsResol {
    pub fn from_option(value: u8) -> Self {
        if value & 0x80 != 0 {
            TsResol::Pow2(value & 0x7f)
        } else {
            TsResol::Pow10(value)
        }
    }

    /// Nanoseconds in `units` timestamp units, rounded down, in exact integer arithmetic
    /// (u64 units times 10^9 fits in 94 bits).
    pub fn units_to_nanos(self, units: u64) -> i128 {
        let u = u128::from(units);
        let ns = match self {
            TsResol::Pow10(e) if e <= 9 => u * 10u128.pow(u32::from(9 - e)),
            TsResol::Pow10(e) => 10u128.checked_pow(u32::from(e - 9)).map_or(0, |d| u / d),
            TsResol::Pow2(p) if p < 128 => (u * 1_000_000_000) >> p,
            TsResol::Pow2(_) => 0,
        };
        // At most 2^94: always fits.
        i128::try_from(ns).unwrap_or(i128::MAX)
    }
}

/// What an Interface Description Block says that frames need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interface {
    pub link: LinkType,
    pub snaplen: u32,
    pub tsresol: TsResol,
    /// `if_tsoffset`: seconds added to every timestamp of this interface.
    pub tsoffset_s: i64,
}

impl Interface {
    /// The frame time for a 64-bit timestamp of this interface. Times outside i64
    /// nanoseconds (years 1678..2262) are clamped: the frame is still delivered.
    pub fn timestamp(&self, units: u64) -> Timestamp {
        let ns = self.tsresol.units_to_nanos(units) + i128::from(self.tsoffset_s) * 1_000_000_000;
        let clamped = ns.clamp(i128::from(i64::MIN), i128::from(i64::MAX));
        Timestamp::from_nanos(i64::try_from(clamped).unwrap_or(i64::MAX))
    }
}

/// The fixed part of a Section Header Block body, after the byte-order magic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectionHeader {
    pub endian: Endianness,
    pub major: u16,
    pub minor: u16,
}

/// Which byte order a Section Header Block's Byte-Order Magic (as stored) announces.
pub fn section_endianness(bom: [u8; 4]) -> Option<Endianness> {
    match u32::from_le_bytes(bom) {
        BYTE_ORDER_MAGIC => Some(Endianness::Little),
        m if m.swap_bytes() == BYTE_ORDER_MAGIC => Some(Endianness::Big),
        _ => None,
    }
}

/// SHB body: `byte_order_magic(4) major(2) minor(2) section_length(8) options…`
pub fn parse_section_header(body: &[u8]) -> IResult<&[u8], SectionHeader> {
    let (rest, bom) = take(4usize).parse(body)?;
    let mut bom4 = [0u8; 4];
    bom4.copy_from_slice(bom);
    let Some(endian) = section_endianness(bom4) else {
        return Err(nom::Err::Error(nom::error::Error::new(
            body,
            nom::error::ErrorKind::Tag,
        )));
    };
    let (rest, (major, minor, _section_len)) =
        (nom_u16(endian), nom_u16(endian), nom_i64(endian)).parse(rest)?;
    Ok((
        rest,
        SectionHeader {
            endian,
            major,
            minor,
        },
    ))
}

/// IDB body: `linktype(2) reserved(2) snaplen(4) options…`. Options that do not parse
/// end the option list rather than the file, as they only refine timestamps.
pub fn parse_interface(body: &[u8], e: Endianness) -> IResult<&[u8], Interface> {
    let (mut rest, (link, _reserved, snaplen)) =
        (nom_u16(e), nom_u16(e), nom_u32(e)).parse(body)?;
    let mut iface = Interface {
        link: LinkType(u32::from(link)),
        snaplen,
        tsresol: TsResol::default(),
        tsoffset_s: 0,
    };
    while let Ok((after, (code, value))) = parse_option(rest, e) {
        rest = after;
        match code {
            OPT_END => break,
            OPT_IF_TSRESOL => {
                if let Some(&v) = value.first() {
                    iface.tsresol = TsResol::from_option(v);
                }
            }
            OPT_IF_TSOFFSET => {
                if let Ok((_, off)) = nom_i64::<_, nom::error::Error<&[u8]>>(e)(value) {
                    iface.tsoffset_s = off;
                }
            }
            _ => {}
        }
    }
    Ok((rest, iface))
}

/// One option (section 3.5): `code(2) length(2) value(length) padding to 32 bits`.
pub fn parse_option(input: &[u8], e: Endianness) -> IResult<&[u8], (u16, &[u8])> {
    let (rest, (code, len)) = (nom_u16(e), nom_u16(e)).parse(input)?;
    let (rest, value) = take(usize::from(len)).parse(rest)?;
    let pad = (4 - usize::from(len) % 4) % 4;
    let rest = rest.get(pad..).unwrap_or_default();
    Ok((rest, (code, value)))
}

/// The fixed part of a packet block, before its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketHeader {
    pub interface_id: u32,
    /// Timestamp in the interface's units; `None` for a Simple Packet Block.
    pub ts_units: Option<u64>,
    pub caplen: u32,
    pub orig_len: u32,
}

/// EPB body: `interface_id(4) ts_high(4) ts_low(4) captured_len(4) original_len(4) data…`
pub fn parse_enhanced_packet(body: &[u8], e: Endianness) -> IResult<&[u8], PacketHeader> {
    let (rest, (interface_id, hi, lo, caplen, orig_len)) =
        (nom_u32(e), nom_u32(e), nom_u32(e), nom_u32(e), nom_u32(e)).parse(body)?;
    Ok((
        rest,
        PacketHeader {
            interface_id,
            ts_units: Some(u64::from(hi) << 32 | u64::from(lo)),
            caplen,
            orig_len,
        },
    ))
}

/// Obsolete PB body (appendix A): `interface_id(2) drops_count(2) ts_high(4) ts_low(4)
/// captured_len(4) original_len(4) data…`
pub fn parse_obsolete_packet(body: &[u8], e: Endianness) -> IResult<&[u8], PacketHeader> {
    let (rest, (interface_id, _drops, hi, lo, caplen, orig_len)) = (
        nom_u16(e),
        nom_u16(e),
        nom_u32(e),
        nom_u32(e),
        nom_u32(e),
        nom_u32(e),
    )
        .parse(body)?;
    Ok((
        rest,
        PacketHeader {
            interface_id: u32::from(interface_id),
            ts_units: Some(u64::from(hi) << 32 | u64::from(lo)),
            caplen,
            orig_len,
        },
    ))
}

/// SPB body: `original_len(4) data…`. The captured length is not stored: it is what the
/// block holds, cut to the original length and to interface 0's snaplen (section 4.4).
pub fn parse_simple_packet(
    body: &[u8],
    e: Endianness,
    snaplen: u32,
) -> IResult<&[u8], PacketHeader> {
    let (rest, orig_len) = nom_u32(e)(body)?;
    let held = u32::try_from(rest.len()).unwrap_or(u32::MAX);
    let mut caplen = held.min(orig_len);
    if snaplen > 0 {
        caplen = caplen.min(snaplen);
    }
    Ok((
        rest,
        PacketHeader {
            interface_id: 0,
            ts_units: None,
            caplen,
            orig_len,
        },
    ))
}

/// What one block turned out to be, without borrowing the block buffer.
enum Block {
    Packet {
        ts: Timestamp,
        link: LinkType,
        data: Range<usize>,
        orig_len: u32,
    },
    Other,
    End,
}

/// Streaming pcapng reader. Memory: the read-ahead buffer, one block buffer (at most
/// `max_frame_bytes` + [`OPTIONS_ALLOWANCE_BYTES`]) and the current section's interfaces.
pub struct PcapngReader<R> {
    stream: ByteStream<R>,
    path: PathBuf,
    input: u16,
    endian: Endianness,
    sections: u64,
    interfaces: Vec<Interface>,
    block: Vec<u8>,
    max_frame_bytes: usize,
    frames: u64,
    truncated: u64,
    last_ts: Timestamp,
    max_snaplen: Option<u32>,
    failed: bool,
}

impl<R: BufRead> PcapngReader<R> {
    /// Reads the first Section Header Block. `path` only names the input in errors.
    pub fn new(reader: R, path: &Path, input: u16, limits: &Limits) -> Result<Self, Error> {
        let mut r = PcapngReader {
            stream: ByteStream::new(reader),
            path: path.to_path_buf(),
            input,
            endian: Endianness::Little,
            sections: 0,
            interfaces: Vec::new(),
            block: Vec::new(),
            max_frame_bytes: limits.max_frame_bytes,
            frames: 0,
            truncated: 0,
            last_ts: Timestamp::default(),
            max_snaplen: None,
            failed: false,
        };
        match r.read_block()? {
            Block::End => Err(Error::Empty {
                path: path.to_path_buf(),
            }),
            _ => Ok(r),
        }
    }

    /// Sections seen so far.
    pub fn sections(&self) -> u64 {
        self.sections
    }

    /// The current section's interfaces.
    pub fn interfaces(&self) -> &[Interface] {
        &self.interfaces
    }

    fn err(&self, offset: u64, what: String) -> Error {
        malformed(&self.path, offset, what)
    }

    fn u32_at(&self, bytes: [u8; 4]) -> u32 {
        match self.endian {
            Endianness::Big => u32::from_be_bytes(bytes),
            _ => u32::from_le_bytes(bytes),
        }
    }

    /// Reads one block; packets come back as ranges into `self.block`.
    fn read_block(&mut self) -> Result<Block, Error> {
        let start = self.stream.offset();
        let path = &self.path;
        let io = |e| read_error(path, start, e);
        if self.stream.at_eof().map_err(io)? {
            return Ok(Block::End);
        }
        let after = |frames: u64| {
            if frames == 0 {
                String::new()
            } else {
                format!(" after frame {frames}")
            }
        };
        let mut head = [0u8; 8];
        if self.stream.read_full(&mut head).map_err(io)? < head.len() {
            return Err(self.err(
                start,
                format!(
                    "file ends in the middle of a block header{}",
                    after(self.frames)
                ),
            ));
        }
        let [t0, t1, t2, t3, l0, l1, l2, l3] = head;
        let is_shb = u32::from_le_bytes([t0, t1, t2, t3]) == block_type::SECTION_HEADER;
        if self.sections == 0 && !is_shb {
            return Err(self.err(start, "does not start with a Section Header Block".into()));
        }
        // The SHB's own length is in the byte order its body announces.
        let mut bom = [0u8; 4];
        if is_shb {
            if self.stream.read_full(&mut bom).map_err(io)? < bom.len() {
                return Err(self.err(
                    start,
                    "file ends in the middle of a Section Header Block".into(),
                ));
            }
            self.endian = section_endianness(bom).ok_or_else(|| {
                self.err(
                    start + 8,
                    "Section Header Block with an invalid byte-order magic".into(),
                )
            })?;
        }
        let btype = self.u32_at([t0, t1, t2, t3]);
        let total = self.u32_at([l0, l1, l2, l3]);
        let buffered = matches!(
            btype,
            block_type::SECTION_HEADER
                | block_type::INTERFACE_DESCRIPTION
                | block_type::ENHANCED_PACKET
                | block_type::SIMPLE_PACKET
                | block_type::PACKET
        );
        let limit = if buffered {
            u32::try_from(self.max_frame_bytes.saturating_add(OPTIONS_ALLOWANCE_BYTES))
                .unwrap_or(u32::MAX)
        } else {
            MAX_SKIPPED_BLOCK_BYTES
        };
        let min = if is_shb { 28 } else { 12 };
        if total % 4 != 0 || total < min || total > limit {
            return Err(self.err(
                start,
                format!(
                    "block of type {btype:#x} has an impossible total length {total} (must be a multiple of 4, at least {min}, at most {limit})"
                ),
            ));
        }
        // Body and trailing length, less what was already read.
        let consumed_body = if is_shb { 4 } else { 0 };
        let rest_len = usize::try_from(total - 8).unwrap_or(usize::MAX);
        if !buffered {
            let skip = u64::from(total) - 12;
            let skipped = self.stream.skip(skip).map_err(io)?;
            let mut trailer = [0u8; 4];
            let got = self.stream.read_full(&mut trailer).map_err(io)?;
            if skipped < skip || got < 4 {
                return Err(self.err(
                    start,
                    format!(
                        "file ends in the middle of a block of type {btype:#x}{}",
                        after(self.frames)
                    ),
                ));
            }
            if self.u32_at(trailer) != total {
                return Err(self.err(
                    start,
                    format!("block of type {btype:#x}: trailing length {} differs from leading length {total}", self.u32_at(trailer)),
                ));
            }
            return Ok(Block::Other);
        }
        if self.block.len() < rest_len {
            self.block.resize(rest_len, 0);
        }
        let dest = self
            .block
            .get_mut(consumed_body..rest_len)
            .unwrap_or_default();
        let want = dest.len();
        let got = self.stream.read_full(dest).map_err(io)?;
        if got < want {
            let what = if matches!(
                btype,
                block_type::ENHANCED_PACKET | block_type::SIMPLE_PACKET | block_type::PACKET
            ) {
                format!("file ends in the middle of frame {}", self.frames + 1)
            } else {
                format!(
                    "file ends in the middle of a block of type {btype:#x}{}",
                    after(self.frames)
                )
            };
            return Err(self.err(start, what));
        }
        if let Some(b) = self.block.get_mut(..4).filter(|_| is_shb) {
            b.copy_from_slice(&bom);
        }
        let body_len = rest_len - 4;
        let mut trailer = [0u8; 4];
        if let Some(t) = self.block.get(body_len..rest_len) {
            trailer.copy_from_slice(t);
        }
        if self.u32_at(trailer) != total {
            return Err(self.err(
                start,
                format!(
                    "block of type {btype:#x}: trailing length {} differs from leading length {total}",
                    self.u32_at(trailer)
                ),
            ));
        }
        self.handle_block(btype, start, body_len)
    }

    fn handle_block(&mut self, btype: u32, start: u64, body_len: usize) -> Result<Block, Error> {
        let e = self.endian;
        let body = self.block.get(..body_len).unwrap_or_default();
        let header = match btype {
            block_type::SECTION_HEADER => {
                let Ok((_, shb)) = parse_section_header(body) else {
                    return Err(self.err(start, "Section Header Block too short".into()));
                };
                if shb.major != 1 {
                    return Err(self.err(
                        start,
                        format!(
                            "pcapng version {}.{} is not supported",
                            shb.major, shb.minor
                        ),
                    ));
                }
                self.sections += 1;
                self.interfaces.clear();
                return Ok(Block::Other);
            }
            block_type::INTERFACE_DESCRIPTION => {
                let Ok((_, iface)) = parse_interface(body, e) else {
                    return Err(self.err(start, "Interface Description Block too short".into()));
                };
                if self.interfaces.len() >= MAX_INTERFACES {
                    return Err(self.err(
                        start,
                        format!("more than {MAX_INTERFACES} interfaces in one section"),
                    ));
                }
                self.max_snaplen = Some(self.max_snaplen.unwrap_or(0).max(iface.snaplen));
                self.interfaces.push(iface);
                return Ok(Block::Other);
            }
            block_type::ENHANCED_PACKET => parse_enhanced_packet(body, e),
            block_type::PACKET => parse_obsolete_packet(body, e),
            _ => {
                let snaplen = self.interfaces.first().map_or(0, |i| i.snaplen);
                parse_simple_packet(body, e, snaplen)
            }
        };
        let n = self.frames + 1;
        let Ok((data, ph)) = header else {
            return Err(self.err(start, format!("packet block of frame {n} too short")));
        };
        let Some(iface) = usize::try_from(ph.interface_id)
            .ok()
            .and_then(|i| self.interfaces.get(i))
        else {
            return Err(self.err(
                start,
                format!(
                    "frame {n} refers to interface {} but the section declares {}",
                    ph.interface_id,
                    self.interfaces.len()
                ),
            ));
        };
        let caplen = usize::try_from(ph.caplen).unwrap_or(usize::MAX);
        if caplen > data.len() || caplen > self.max_frame_bytes {
            return Err(self.err(
                start,
                format!(
                    "frame {n} claims {} captured bytes but its block holds {} (limit {}); the length field is corrupt",
                    ph.caplen,
                    data.len(),
                    self.max_frame_bytes
                ),
            ));
        }
        // SPBs carry no time: reuse the previous frame's, so times stay ordered (Wireshark
        // leaves such frames without a time).
        let ts = ph.ts_units.map_or(self.last_ts, |u| iface.timestamp(u));
        let link = iface.link;
        let data_start = body_len - data.len();
        self.last_ts = ts;
        self.frames = n;
        if ph.caplen < ph.orig_len {
            self.truncated += 1;
        }
        Ok(Block::Packet {
            ts,
            link,
            data: data_start..data_start + caplen,
            orig_len: ph.orig_len,
        })
    }

    fn read_frame(&mut self) -> Result<Option<Frame<'_>>, Error> {
        // Poisoned until a frame or the end is reached: after an error the reader is done.
        self.failed = true;
        loop {
            match self.read_block()? {
                Block::Other => continue,
                Block::End => {
                    self.failed = false;
                    return Ok(None);
                }
                Block::Packet {
                    ts,
                    link,
                    data,
                    orig_len,
                } => {
                    self.failed = false;
                    return Ok(Some(Frame {
                        at: FrameRef {
                            input: self.input,
                            no: self.frames,
                        },
                        ts,
                        link,
                        data: self.block.get(data).unwrap_or_default(),
                        orig_len,
                    }));
                }
            }
        }
    }
}

impl<R: BufRead> FrameSource for PcapngReader<R> {
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, Error> {
        if self.failed {
            return Ok(None);
        }
        self.read_frame()
    }

    fn format(&self) -> Format {
        Format::Pcapng
    }

    fn bytes_read(&self) -> u64 {
        self.stream.offset()
    }

    fn snaplen(&self) -> Option<u32> {
        self.max_snaplen
    }

    fn truncated_frames(&self) -> u64 {
        self.truncated
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::capture::fixtures::{block, cursor, epb, idb, pb, shb, spb};
    use proptest::prelude::*;

    const LE: Endianness = Endianness::Little;
    const BE: Endianness = Endianness::Big;

    /// SHB (LE) + IDB Ethernet + EPB, field by field.
    const VALID_LE: [u8; 28 + 20 + 36] = [
        /* SHB type */ 0x0a, 0x0d, 0x0d, 0x0a, /* total length 28 */ 28, 0, 0, 0,
        /* byte-order magic */ 0x4d, 0x3c, 0x2b, 0x1a, /* major 1 */ 1, 0,
        /* minor 0 */ 0, 0, /* section length -1 */ 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, /* total length */ 28, 0, 0, 0, /* IDB type */ 1, 0, 0, 0,
        /* total length 20 */ 20, 0, 0, 0, /* linktype 1 */ 1, 0, /* reserved */ 0,
        0, /* snaplen 0 */ 0, 0, 0, 0, /* total length */ 20, 0, 0, 0,
        /* EPB type */ 6, 0, 0, 0, /* total length 36 */ 36, 0, 0, 0,
        /* interface 0 */ 0, 0, 0, 0, /* ts high */ 0, 0, 0, 0,
        /* ts low 1_000_001 µs */ 0x41, 0x42, 0x0f, 0, /* caplen 3 */ 3, 0, 0, 0,
        /* orig_len 5 */ 5, 0, 0, 0, /* data + pad */ 0xaa, 0xbb, 0xcc, 0,
        /* total length */ 36, 0, 0, 0,
    ];

    type TestReader = PcapngReader<std::io::Cursor<Vec<u8>>>;
    /// (number, ns, link, data, orig_len)
    type Seen = (u64, i64, u32, Vec<u8>, u32);

    fn reader(bytes: &[u8]) -> Result<TestReader, Error> {
        PcapngReader::new(cursor(bytes), Path::new("t.pcapng"), 1, &Limits::default())
    }

    fn frames(r: &mut TestReader) -> (Vec<Seen>, Option<Error>) {
        let mut out = Vec::new();
        for _ in 0..10_000 {
            match r.next_frame() {
                Ok(Some(f)) => out.push((
                    f.at.no,
                    f.ts.as_nanos(),
                    f.link.0,
                    f.data.to_vec(),
                    f.orig_len,
                )),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
        panic!("no end")
    }

    #[test]
    fn reads_valid_fixture() {
        let mut r = reader(&VALID_LE).unwrap();
        let (f, err) = frames(&mut r);
        assert!(err.is_none());
        assert_eq!(f, vec![(1, 1_000_001_000, 1, vec![0xaa, 0xbb, 0xcc], 5)]);
        assert_eq!(r.truncated_frames(), 1);
        assert_eq!(r.snaplen(), Some(0));
        assert_eq!(r.bytes_read(), VALID_LE.len() as u64);
    }

    #[test]
    fn timestamp_resolutions_are_exact() {
        assert_eq!(
            TsResol::from_option(6).units_to_nanos(1_500_000),
            1_500_000_000
        );
        assert_eq!(
            TsResol::from_option(9).units_to_nanos(u64::MAX),
            i128::from(u64::MAX)
        );
        // 2^-10: 1025 units = 1.0009765625 s, rounded down to the nanosecond.
        assert_eq!(
            TsResol::from_option(0x80 | 10).units_to_nanos(1025),
            1_000_976_562
        );
        assert_eq!(
            TsResol::from_option(12).units_to_nanos(1_234_567_891_234),
            1_234_567_891
        );
        assert_eq!(TsResol::from_option(0).units_to_nanos(3), 3_000_000_000);
        assert_eq!(TsResol::from_option(0x80 | 127).units_to_nanos(u64::MAX), 0);
        assert_eq!(TsResol::from_option(127).units_to_nanos(u64::MAX), 0);
    }

    #[test]
    fn interfaces_carry_resolution_offset_and_link() {
        for e in [LE, BE] {
            let mut file = shb(e);
            file.extend(idb(e, 1, 0, None, None)); // µs
            file.extend(idb(e, 113, 0, Some(9), None)); // ns, Linux SLL
            file.extend(idb(e, 101, 0, Some(0x80 | 10), Some(100))); // 2^-10, +100 s
            file.extend(epb(e, 0, 1_700_000_000_123_456, &[1], 1));
            file.extend(epb(e, 1, 1_700_000_000_123_456_789, &[2], 1));
            file.extend(epb(e, 2, 1024 * 5 + 512, &[3], 1));
            let mut r = reader(&file).unwrap();
            let (f, err) = frames(&mut r);
            assert!(err.is_none(), "{err:?}");
            assert_eq!(r.interfaces().len(), 3);
            assert_eq!(f[0].1, 1_700_000_000_123_456_000);
            assert_eq!((f[0].2, f[1].2, f[2].2), (1, 113, 101));
            assert_eq!(f[1].1, 1_700_000_000_123_456_789);
            assert_eq!(f[2].1, 105_500_000_000);
            assert_eq!(f.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 2, 3]);
        }
    }

    #[test]
    fn simple_packet_blocks_take_the_previous_time_and_the_snaplen() {
        let mut file = shb(LE);
        file.extend(idb(LE, 1, 4, None, None));
        file.extend(spb(LE, &[9, 9], 2)); // no previous frame: time 0
        file.extend(epb(LE, 0, 7_000_000, &[1, 2], 2));
        file.extend(spb(LE, &[1, 2, 3, 4, 5, 6], 6)); // cut to snaplen 4
        let mut r = reader(&file).unwrap();
        let (f, err) = frames(&mut r);
        assert!(err.is_none());
        assert_eq!(f[0].1, 0);
        assert_eq!(f[2].1, 7_000_000_000);
        assert_eq!(f[2].3, vec![1, 2, 3, 4]);
        assert_eq!(f[2].4, 6);
        assert_eq!(r.truncated_frames(), 1);
    }

    #[test]
    fn obsolete_packet_block_is_read() {
        let mut file = shb(BE);
        file.extend(idb(BE, 1, 0, None, None));
        file.extend(pb(BE, 0, 2_000_000, &[5, 6, 7], 3));
        let (f, err) = frames(&mut reader(&file).unwrap());
        assert!(err.is_none());
        assert_eq!(f, vec![(1, 2_000_000_000, 1, vec![5, 6, 7], 3)]);
    }

    #[test]
    fn other_blocks_are_skipped() {
        let mut file = shb(LE);
        file.extend(idb(LE, 1, 0, None, None));
        for t in [
            block_type::NAME_RESOLUTION,
            block_type::INTERFACE_STATISTICS,
            block_type::DECRYPTION_SECRETS,
            block_type::CUSTOM,
            block_type::CUSTOM_NO_COPY,
            0x1234_5678,
        ] {
            file.extend(block(LE, t, &[1, 2, 3, 4, 5]));
        }
        file.extend(block(LE, 0x8000_0001, &[]));
        file.extend(epb(LE, 0, 1, &[1], 1));
        let (f, err) = frames(&mut reader(&file).unwrap());
        assert!(err.is_none(), "{err:?}");
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn sections_have_their_own_byte_order_and_interfaces() {
        let mut file = shb(LE);
        file.extend(idb(LE, 1, 0, None, None));
        file.extend(epb(LE, 0, 1_000_000, &[1], 1));
        file.extend(shb(BE));
        file.extend(idb(BE, 101, 0, Some(9), None));
        file.extend(epb(BE, 0, 2_000_000_000, &[2], 1));
        // Interface 1 of the first section is gone in the second.
        let bad_at = {
            let mut r = reader(&file).unwrap();
            let (f, err) = frames(&mut r);
            assert!(err.is_none(), "{err:?}");
            assert_eq!(
                f,
                vec![
                    (1, 1_000_000_000, 1, vec![1], 1),
                    (2, 2_000_000_000, 101, vec![2], 1)
                ]
            );
            assert_eq!(r.sections(), 2);
            file.len() as u64
        };
        file.extend(epb(BE, 1, 0, &[3], 1));
        let (f, err) = frames(&mut reader(&file).unwrap());
        assert_eq!(f.len(), 2);
        assert!(matches!(err, Some(Error::Malformed { offset, .. }) if offset == bad_at));
    }

    #[test]
    fn impossible_block_lengths_are_malformed_at_the_block() {
        let base = {
            let mut f = shb(LE);
            f.extend(idb(LE, 1, 0, None, None));
            f
        };
        let at = base.len() as u64;
        let good = epb(LE, 0, 1, &[1, 2, 3, 4], 4);
        let mut cases: Vec<Vec<u8>> = Vec::new();
        for total in [0u32, 8, 13, 1 << 30] {
            let mut b = good.clone();
            b[4..8].copy_from_slice(&total.to_le_bytes());
            cases.push(b);
        }
        let mut mismatch = good.clone();
        let n = mismatch.len();
        mismatch[n - 4..].copy_from_slice(&99u32.to_le_bytes());
        cases.push(mismatch);
        let mut caplen_over = good.clone();
        caplen_over[20..24].copy_from_slice(&5u32.to_le_bytes()); // block holds 4
        cases.push(caplen_over);
        let mut unknown_over = block(LE, 0x77, &[]);
        unknown_over[4..8].copy_from_slice(&(MAX_SKIPPED_BLOCK_BYTES + 4).to_le_bytes());
        cases.push(unknown_over);
        for (i, case) in cases.iter().enumerate() {
            let mut file = base.clone();
            file.extend(epb(LE, 0, 1, &[0], 1));
            file.extend(case);
            let (f, err) = frames(&mut reader(&file).unwrap());
            assert_eq!(f.len(), 1, "case {i}");
            match err {
                Some(Error::Malformed { offset, .. }) => assert_eq!(offset, at + 36, "case {i}"),
                other => panic!("case {i}: {other:?}"),
            }
        }
    }

    #[test]
    fn must_start_with_a_section_header() {
        let file = idb(LE, 1, 0, None, None);
        assert!(matches!(
            reader(&file),
            Err(Error::Malformed { offset: 0, .. })
        ));
        let mut bad_bom = shb(LE);
        bad_bom[8] = 0;
        assert!(matches!(
            reader(&bad_bom),
            Err(Error::Malformed { offset: 8, .. })
        ));
        let mut v2 = shb(LE);
        v2[12] = 2;
        assert!(matches!(reader(&v2), Err(Error::Malformed { .. })));
        assert!(matches!(reader(&[]), Err(Error::Empty { .. })));
    }

    #[test]
    fn every_truncation_gives_partial_frames_or_an_error() {
        let mut file = shb(BE);
        file.extend(idb(BE, 1, 0, Some(9), Some(-5)));
        file.extend(epb(BE, 0, 9, &[1, 2, 3], 3));
        file.extend(block(BE, 4, &[0; 8]));
        file.extend(spb(BE, &[1], 1));
        let boundaries: Vec<usize> = {
            let mut v = vec![];
            let mut at = 0;
            for b in [
                shb(BE),
                idb(BE, 1, 0, Some(9), Some(-5)),
                epb(BE, 0, 9, &[1, 2, 3], 3),
                block(BE, 4, &[0; 8]),
                spb(BE, &[1], 1),
            ] {
                at += b.len();
                v.push(at);
            }
            v
        };
        for n in 0..file.len() {
            let Ok(mut r) = reader(&file[..n]) else {
                continue;
            };
            let (_, err) = frames(&mut r);
            if boundaries.contains(&n) {
                assert!(err.is_none(), "{n}: {err:?}");
            } else {
                assert!(matches!(err, Some(Error::Malformed { .. })), "{n}: {err:?}");
            }
        }
    }

    #[test]
    fn timestamps_out_of_range_are_clamped_not_wrapped() {
        let iface = Interface {
            link: LinkType::ETHERNET,
            snaplen: 0,
            tsresol: TsResol::Pow10(9),
            tsoffset_s: i64::MAX,
        };
        assert_eq!(iface.timestamp(u64::MAX).as_nanos(), i64::MAX);
        let iface = Interface {
            tsoffset_s: i64::MIN,
            ..iface
        };
        assert_eq!(iface.timestamp(0).as_nanos(), i64::MIN);
    }

    #[test]
    fn options_with_bad_lengths_end_the_option_list() {
        let mut body = Vec::new();
        body.extend([1, 0, 0, 0, 0, 0, 0, 0]); // linktype 1, snaplen 0
        body.extend([9, 0, 200, 0, 6]); // if_tsresol claiming 200 bytes
        let mut file = shb(LE);
        file.extend(block(LE, 1, &body));
        file.extend(epb(LE, 0, 3, &[1], 1));
        let (f, err) = frames(&mut reader(&file).unwrap());
        assert!(err.is_none());
        assert_eq!(f[0].1, 3_000);
    }

    proptest! {
        #[test]
        fn any_bytes_after_a_header_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut file = shb(LE);
            file.extend(idb(LE, 1, 0, None, None));
            file.extend(tail);
            let mut r = reader(&file).unwrap();
            for _ in 0..1000 {
                match r.next_frame() {
                    Ok(Some(f)) => prop_assert!(f.data.len() <= file.len()),
                    _ => break,
                }
            }
        }

        #[test]
        fn any_packet_blocks_never_panic(blocks in proptest::collection::vec((0u32..8, proptest::collection::vec(any::<u8>(), 0..64)), 0..20)) {
            let mut file = shb(BE);
            file.extend(idb(BE, 1, 0, None, None));
            for (t, body) in blocks {
                file.extend(block(BE, t, &body));
            }
            let mut r = reader(&file).unwrap();
            for _ in 0..100 {
                if !matches!(r.next_frame(), Ok(Some(_))) {
                    break;
                }
            }
        }
    }
}
