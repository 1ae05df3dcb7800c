//! The Session Multiplex Protocol header ([MC-SMP] 2.2), which MARS puts in front of every TDS
//! packet once PRELOGIN agreed on MARS: several SMP sessions, each a TDS conversation of its own,
//! share one TCP connection.
//!
//! ```text
//!  0        1        2                 4                                 8
//! +--------+--------+--------+--------+--------+--------+--------+--------+
//! |  SMID  | FLAGS  |       SID       |              LENGTH               |
//! +--------+--------+--------+--------+--------+--------+--------+--------+
//! |              SEQNUM               |               WNDW                |
//! +--------+--------+--------+--------+--------+--------+--------+--------+
//! ```
//! SMID is 0x53; FLAGS exactly one of SYN, ACK, FIN, DATA ([MC-SMP] 2.2.1.1: combinations are
//! invalid); LENGTH counts the header; SEQNUM numbers the DATA packets of a session from 1;
//! WNDW is the highest SEQNUM the sender of this packet will accept from its peer. Multi-byte
//! fields are little-endian. Only DATA packets carry a payload: in TDS, one TDS packet.

use super::header::{Header, MAX_PACKET_LEN};
use crate::proto::ParseError;

mod field {
    pub const SMID: usize = 0;
    pub const FLAGS: usize = 1;
    pub const SID: std::ops::Range<usize> = 2..4;
    pub const LENGTH: std::ops::Range<usize> = 4..8;
    pub const SEQNUM: std::ops::Range<usize> = 8..12;
    pub const WNDW: std::ops::Range<usize> = 12..16;
}

/// SMP header length in bytes.
pub const SMP_HEADER_LEN: usize = 16;
/// The SMID byte every SMP packet starts with ([MC-SMP] 2.2.1).
pub const SMID: u8 = 0x53;
/// The largest DATA packet accepted: one TDS packet of the largest size, plus the SMP header.
pub const MAX_SMP_LEN: usize = SMP_HEADER_LEN + MAX_PACKET_LEN;

open_enum! {
    /// The FLAGS byte ([MC-SMP] 2.2.1.1): which of the four packet kinds this is.
    pub enum SmpFlags(u8) {
        /// Opens the session named by SID.
        Syn = 0x01,
        /// Announces a new window, nothing else.
        Ack = 0x02,
        /// The sender will not use the session any more.
        Fin = 0x04,
        /// Carries data (a TDS packet) after the header.
        Data = 0x08,
    }
}

/// A view over an SMP header. `new_checked` guarantees the accessors are in bounds.
#[derive(Clone, Copy, Debug)]
pub struct SmpHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SmpHeader<T> {
    /// Wraps `buffer` if it holds at least the 16 header bytes.
    pub fn new_checked(buffer: T) -> Option<SmpHeader<T>> {
        (buffer.as_ref().len() >= SMP_HEADER_LEN).then_some(SmpHeader { buffer })
    }

    fn byte(&self, i: usize) -> u8 {
        self.buffer.as_ref().get(i).copied().unwrap_or(0)
    }

    fn le16(&self, r: std::ops::Range<usize>) -> u16 {
        match self.buffer.as_ref().get(r) {
            Some(&[a, b]) => u16::from_le_bytes([a, b]),
            _ => 0,
        }
    }

    fn le32(&self, r: std::ops::Range<usize>) -> u32 {
        match self.buffer.as_ref().get(r) {
            Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
            _ => 0,
        }
    }

    pub fn smid(&self) -> u8 {
        self.byte(field::SMID)
    }
    pub fn flags(&self) -> SmpFlags {
        SmpFlags::from(self.byte(field::FLAGS))
    }
    pub fn sid(&self) -> u16 {
        self.le16(field::SID)
    }
    /// The whole SMP packet's length, header included.
    pub fn length(&self) -> u32 {
        self.le32(field::LENGTH)
    }
    pub fn seqnum(&self) -> u32 {
        self.le32(field::SEQNUM)
    }
    pub fn window(&self) -> u32 {
        self.le32(field::WNDW)
    }

    /// True when the header could be real: SMID 0x53, a single known flag, a length of exactly
    /// the header for SYN/ACK/FIN ([MC-SMP] 2.2.2-2.2.4) and of a header plus at least a TDS
    /// header (and at most the largest TDS packet) for DATA.
    pub fn is_plausible(&self) -> bool {
        let len = usize::try_from(self.length()).unwrap_or(usize::MAX);
        self.smid() == SMID
            && match self.flags() {
                SmpFlags::Syn | SmpFlags::Ack | SmpFlags::Fin => len == SMP_HEADER_LEN,
                SmpFlags::Data => {
                    (SMP_HEADER_LEN + super::header::HEADER_LEN..=MAX_SMP_LEN).contains(&len)
                }
                SmpFlags::Unknown(_) => false,
            }
    }

    /// Length of the payload that follows the header (0 when LENGTH is impossible).
    pub fn payload_len(&self) -> usize {
        usize::try_from(self.length())
            .unwrap_or(0)
            .saturating_sub(SMP_HEADER_LEN)
    }
}

/// A decoded SMP header ([MC-SMP] 2.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmpRepr {
    pub flags: SmpFlags,
    pub sid: u16,
    pub length: u32,
    pub seqnum: u32,
    pub window: u32,
}

impl SmpRepr {
    pub fn parse<T: AsRef<[u8]>>(h: &SmpHeader<T>) -> SmpRepr {
        SmpRepr {
            flags: h.flags(),
            sid: h.sid(),
            length: h.length(),
            seqnum: h.seqnum(),
            window: h.window(),
        }
    }

    /// Writes the header into the first 16 bytes of `out`; false when `out` is shorter.
    pub fn emit(&self, out: &mut [u8]) -> bool {
        let Some(h) = out.get_mut(..SMP_HEADER_LEN) else {
            return false;
        };
        let mut a = [0u8; SMP_HEADER_LEN];
        a[field::SMID] = SMID;
        a[field::FLAGS] = u8::from(self.flags);
        a[field::SID].copy_from_slice(&self.sid.to_le_bytes());
        a[field::LENGTH].copy_from_slice(&self.length.to_le_bytes());
        a[field::SEQNUM].copy_from_slice(&self.seqnum.to_le_bytes());
        a[field::WNDW].copy_from_slice(&self.window.to_le_bytes());
        h.copy_from_slice(&a);
        true
    }

    /// Length of the payload after the header.
    pub fn payload_len(&self) -> usize {
        usize::try_from(self.length)
            .unwrap_or(0)
            .saturating_sub(SMP_HEADER_LEN)
    }
}

/// One whole SMP packet from the start of `input`: the header, its payload, and the rest.
/// Implausible headers are `Malformed`; a packet cut short is `Incomplete`.
pub fn parse_smp(input: &[u8]) -> Result<(&[u8], SmpRepr, &[u8]), ParseError> {
    let Some(h) = SmpHeader::new_checked(input) else {
        return Err(ParseError::Incomplete {
            needed: Some(SMP_HEADER_LEN - input.len()),
        });
    };
    if h.smid() != SMID {
        return Err(ParseError::Malformed {
            what: "SMID",
            at: 0,
        });
    }
    if !h.is_plausible() {
        let len = usize::try_from(h.length()).unwrap_or(usize::MAX);
        if h.flags() == SmpFlags::Data && len > MAX_SMP_LEN {
            return Err(ParseError::TooLarge {
                what: "SMP DATA packet",
                len,
                max: MAX_SMP_LEN,
            });
        }
        let what = if h.flags().is_known() {
            "SMP LENGTH"
        } else {
            "SMP FLAGS"
        };
        return Err(ParseError::Malformed { what, at: 1 });
    }
    let repr = SmpRepr::parse(&h);
    let end = SMP_HEADER_LEN + repr.payload_len();
    match (input.get(SMP_HEADER_LEN..end), input.get(end..)) {
        (Some(payload), Some(rest)) => Ok((rest, repr, payload)),
        _ => Err(ParseError::Incomplete {
            needed: Some(end - input.len()),
        }),
    }
}

/// True when `window` (at least 16 bytes) starts an SMP packet worth switching to: a plausible
/// header and, for DATA, a plausible TDS header right after it when those bytes are there.
pub fn starts_smp(window: &[u8]) -> bool {
    let Some(h) = SmpHeader::new_checked(window) else {
        return false;
    };
    if !h.is_plausible() {
        return false;
    }
    if h.flags() != SmpFlags::Data {
        return true;
    }
    match window.get(SMP_HEADER_LEN..) {
        Some(inner) if inner.len() >= super::header::HEADER_LEN => Header::new_checked(inner)
            .is_some_and(|t| t.is_plausible() && usize::from(t.length()) == h.payload_len()),
        _ => true,
    }
}

/// One step of the SMP splitter's output.
#[derive(Debug, PartialEq, Eq)]
pub enum SmpItem<'a> {
    /// An SMP packet's header (every packet, DATA or not).
    Header(SmpRepr),
    /// A piece of a DATA packet's payload; `last` ends the packet.
    Data {
        sid: u16,
        data: &'a [u8],
        last: bool,
    },
    /// Bytes skipped while looking for an SMP header (after a gap or garbage).
    Skipped { bytes: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SplitState {
    /// At a packet boundary, collecting header bytes.
    Header,
    /// Inside a DATA payload.
    Payload { sid: u16, remaining: usize },
    /// Lost: scanning for a plausible header.
    Lost,
}

/// Splits one direction's stream into SMP packets, handing DATA payloads out as they arrive
/// (at most one 16-byte header is held between calls).
#[derive(Clone, Debug)]
pub struct SmpSplitter {
    state: SplitState,
    header: [u8; SMP_HEADER_LEN],
    header_len: usize,
    skipped: u64,
}

impl Default for SmpSplitter {
    fn default() -> Self {
        SmpSplitter::new()
    }
}

impl SmpSplitter {
    pub fn new() -> Self {
        SmpSplitter {
            state: SplitState::Header,
            header: [0; SMP_HEADER_LEN],
            header_len: 0,
            skipped: 0,
        }
    }

    /// The DATA payload being handed out: its session and the bytes still to come.
    pub fn payload_in_progress(&self) -> Option<(u16, usize)> {
        match self.state {
            SplitState::Payload { sid, remaining } => Some((sid, remaining)),
            _ => None,
        }
    }

    /// True while scanning for a header after losing the packet boundary.
    pub fn is_lost(&self) -> bool {
        self.state == SplitState::Lost
    }

    /// The stream skipped `len` bytes that were never captured.
    pub fn on_gap(&mut self, len: u64) {
        match self.state {
            SplitState::Payload { sid, remaining } if (len as usize) < remaining => {
                self.state = SplitState::Payload {
                    sid,
                    remaining: remaining - len as usize,
                };
            }
            SplitState::Payload { remaining, .. } if len as usize == remaining => {
                self.state = SplitState::Header;
                self.header_len = 0;
            }
            _ => {
                self.state = SplitState::Lost;
                self.header_len = 0;
            }
        }
    }

    /// Feeds the next in-order bytes; `emit` receives headers, payload pieces and skips.
    pub fn feed(&mut self, mut data: &[u8], emit: &mut dyn FnMut(SmpItem<'_>)) {
        // Each iteration consumes at least one byte or ends the call.
        let mut guard = data.len() + 2;
        while !data.is_empty() && guard > 0 {
            guard -= 1;
            match self.state {
                SplitState::Header => {
                    let want = SMP_HEADER_LEN - self.header_len;
                    let n = want.min(data.len());
                    let (head, rest) = data.split_at(n);
                    if let Some(dst) = self.header.get_mut(self.header_len..self.header_len + n) {
                        dst.copy_from_slice(head);
                    }
                    self.header_len += n;
                    data = rest;
                    if self.header_len < SMP_HEADER_LEN {
                        return;
                    }
                    self.header_len = 0;
                    let held = self.header;
                    match SmpHeader::new_checked(&held[..]).filter(|h| h.is_plausible()) {
                        Some(h) => {
                            if self.skipped > 0 {
                                emit(SmpItem::Skipped {
                                    bytes: self.skipped,
                                });
                                self.skipped = 0;
                            }
                            let repr = SmpRepr::parse(&h);
                            emit(SmpItem::Header(repr));
                            let remaining = repr.payload_len();
                            if remaining > 0 {
                                self.state = SplitState::Payload {
                                    sid: repr.sid,
                                    remaining,
                                };
                            }
                        }
                        None => {
                            self.state = SplitState::Lost;
                            self.skipped += 1;
                            self.hold_candidate(held.get(1..).unwrap_or(&[]));
                        }
                    }
                }
                SplitState::Payload { sid, remaining } => {
                    let n = remaining.min(data.len());
                    let (piece, rest) = data.split_at(n);
                    data = rest;
                    let last = n == remaining;
                    emit(SmpItem::Data {
                        sid,
                        data: piece,
                        last,
                    });
                    self.state = if last {
                        SplitState::Header
                    } else {
                        SplitState::Payload {
                            sid,
                            remaining: remaining - n,
                        }
                    };
                }
                SplitState::Lost => {
                    let consumed = self.scan(data, emit);
                    data = data.get(consumed..).unwrap_or(&[]);
                }
            }
        }
    }

    /// Scans for a plausible header while lost; returns the bytes consumed.
    fn scan(&mut self, data: &[u8], emit: &mut dyn FnMut(SmpItem<'_>)) -> usize {
        for (i, window) in data.windows(SMP_HEADER_LEN).enumerate() {
            if starts_smp(data.get(i..).unwrap_or(window)) {
                self.skipped += i as u64;
                emit(SmpItem::Skipped {
                    bytes: self.skipped,
                });
                self.skipped = 0;
                self.state = SplitState::Header;
                return i;
            }
        }
        // No whole candidate: keep a tail that could start a header.
        let keep = data.len().min(SMP_HEADER_LEN - 1);
        let skip = data.len() - keep;
        self.skipped += skip as u64;
        self.hold_candidate(data.get(skip..).unwrap_or(&[]));
        data.len()
    }

    /// Holds the first suffix of `tail` (shorter than a header) that starts with SMID as a
    /// partial header; the bytes before it are skipped.
    fn hold_candidate(&mut self, tail: &[u8]) {
        let start = tail.iter().position(|b| *b == SMID).unwrap_or(tail.len());
        self.skipped += start as u64;
        let cand = tail.get(start..).unwrap_or(&[]);
        if cand.is_empty() || cand.len() >= SMP_HEADER_LEN {
            self.state = SplitState::Lost;
            return;
        }
        if let Some(dst) = self.header.get_mut(..cand.len()) {
            dst.copy_from_slice(cand);
        }
        self.header_len = cand.len();
        // The skip is reported once the candidate proves to be a header.
        self.state = SplitState::Header;
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Frame 10 of tests/captures/mars-two-sessions.pcap starts with FreeTDS's SYN for
    /// session 0: window 4.
    const SYN: [u8; 16] = [
        /* smid */ 0x53, /* flags: SYN */ 0x01, /* sid */ 0x00, 0x00,
        /* length */ 0x10, 0x00, 0x00, 0x00, /* seqnum */ 0x00, 0x00, 0x00, 0x00,
        /* wndw */ 0x04, 0x00, 0x00, 0x00,
    ];

    /// A DATA packet of session 1 carrying an ATTENTION (8-byte TDS packet).
    const DATA_ATTN: [u8; 24] = [
        /* smid */ 0x53, /* flags: DATA */ 0x08, /* sid */ 0x01, 0x00,
        /* length */ 0x18, 0x00, 0x00, 0x00, /* seqnum */ 0x02, 0x00, 0x00, 0x00,
        /* wndw */ 0x05, 0x00, 0x00, 0x00, /* TDS: ATTENTION, EOM, length 8 */ 0x06,
        0x01, 0x00, 0x08, 0x00, 0x00, 0x01, 0x00,
    ];

    #[test]
    fn syn_field_by_field() {
        let h = SmpHeader::new_checked(&SYN[..]).unwrap();
        assert_eq!(h.smid(), SMID);
        assert_eq!(h.flags(), SmpFlags::Syn);
        assert_eq!(h.sid(), 0);
        assert_eq!(h.length(), 16);
        assert_eq!(h.seqnum(), 0);
        assert_eq!(h.window(), 4);
        assert!(h.is_plausible());
        let (rest, repr, payload) = parse_smp(&SYN).unwrap();
        assert!(rest.is_empty() && payload.is_empty());
        assert_eq!(repr.flags, SmpFlags::Syn);
    }

    #[test]
    fn data_carries_one_tds_packet() {
        let (rest, repr, payload) = parse_smp(&DATA_ATTN).unwrap();
        assert!(rest.is_empty());
        assert_eq!(
            repr,
            SmpRepr {
                flags: SmpFlags::Data,
                sid: 1,
                length: 24,
                seqnum: 2,
                window: 5
            }
        );
        assert_eq!(payload, &DATA_ATTN[16..]);
        assert!(starts_smp(&DATA_ATTN));
    }

    #[test]
    fn every_truncation_is_incomplete() {
        for n in 0..DATA_ATTN.len() {
            assert!(
                matches!(
                    parse_smp(&DATA_ATTN[..n]),
                    Err(ParseError::Incomplete { .. })
                ),
                "{n}"
            );
        }
    }

    #[test]
    fn impossible_headers_are_rejected() {
        let mut b = SYN;
        b[1] = 0x06; // ACK + FIN: invalid combination ([MC-SMP] 2.2.1.1)
        assert!(matches!(
            parse_smp(&b),
            Err(ParseError::Malformed {
                what: "SMP FLAGS",
                ..
            })
        ));
        assert_eq!(
            SmpHeader::new_checked(&b[..]).unwrap().flags(),
            SmpFlags::Unknown(6)
        );
        let mut b = SYN;
        b[4] = 0x20; // a SYN with a payload
        assert!(parse_smp(&b).is_err());
        let mut b = DATA_ATTN;
        b[4..8].copy_from_slice(&0x10u32.to_le_bytes()); // DATA without data
        assert!(parse_smp(&b).is_err());
        b[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(parse_smp(&b), Err(ParseError::TooLarge { .. })));
        let mut b = SYN;
        b[0] = 0x12;
        assert!(matches!(
            parse_smp(&b),
            Err(ParseError::Malformed { what: "SMID", .. })
        ));
    }

    #[test]
    fn data_whose_tds_length_disagrees_does_not_start_smp() {
        let mut b = DATA_ATTN;
        b[19] = 0x09;
        assert!(!starts_smp(&b));
    }

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut s = SmpSplitter::new();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, &mut |item| {
                out.push(match item {
                    SmpItem::Header(r) => format!("H{:?}{}", r.flags, r.sid),
                    SmpItem::Data { sid, data, last } => format!("D{sid}:{}:{last}", data.len()),
                    SmpItem::Skipped { bytes } => format!("S{bytes}"),
                })
            });
        }
        out
    }

    #[test]
    fn splitter_follows_packets_across_chunks() {
        let mut stream = SYN.to_vec();
        stream.extend_from_slice(&DATA_ATTN);
        assert_eq!(split(&[&stream]), ["HSyn0", "HData1", "D1:8:true"]);
        let (a, b) = stream.split_at(20);
        assert_eq!(split(&[a, b]), ["HSyn0", "HData1", "D1:8:true"]);
        let (a, b) = stream.split_at(36);
        assert_eq!(
            split(&[a, b]),
            ["HSyn0", "HData1", "D1:4:false", "D1:4:true"]
        );
    }

    #[test]
    fn splitter_resyncs_after_garbage() {
        let mut stream = vec![0x00, 0x53, 0x99, 0x01];
        stream.extend_from_slice(&DATA_ATTN);
        assert_eq!(split(&[&stream]), ["S4", "HData1", "D1:8:true"]);
        let mut s = SmpSplitter::new();
        s.on_gap(3);
        assert!(s.is_lost());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200),
                                    cut in 0usize..200) {
            if let Ok((rest, repr, payload)) = parse_smp(&data) {
                prop_assert!(rest.len() + payload.len() + SMP_HEADER_LEN <= data.len());
                prop_assert_eq!(repr.payload_len(), payload.len());
            }
            let _ = starts_smp(&data);
            let mut s = SmpSplitter::new();
            let mut seen = 0usize;
            let (a, b) = data.split_at(cut.min(data.len()));
            for c in [a, b] {
                s.feed(c, &mut |item| if let SmpItem::Data { data, .. } = item { seen += data.len() });
            }
            prop_assert!(seen <= data.len());
        }

        #[test]
        fn encode_parse_round_trip(flag in prop::sample::select(vec![1u8, 2, 4, 8]), sid: u16,
                                   seqnum: u32, window: u32, payload_len in 8usize..64) {
            let flags = SmpFlags::from(flag);
            let payload_len = if flags == SmpFlags::Data { payload_len } else { 0 };
            let repr = SmpRepr { flags, sid, length: (SMP_HEADER_LEN + payload_len) as u32, seqnum, window };
            let mut buf = vec![0u8; SMP_HEADER_LEN + payload_len];
            prop_assert!(repr.emit(&mut buf));
            let (rest, back, payload) = parse_smp(&buf).unwrap();
            prop_assert!(rest.is_empty());
            prop_assert_eq!(back, repr);
            prop_assert_eq!(payload.len(), payload_len);
        }
    }
}
