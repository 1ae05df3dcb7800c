//! TDS packets out of one direction's byte stream. The only stateful piece of the TDS parser:
//! it keeps at most one packet header (8 bytes) between calls and hands out payload as it
//! arrives, so a 100 MB result set passes through without being buffered.
//!
//! After a gap in the stream the framer has lost its place. It then looks for the next
//! plausible TDS header in the following bytes, and says how many bytes it skipped.
//!
//! TLS records sit on TCP where TDS packets would (after the TDS 7.x handshake, and from the
//! start with TDS 8.0 strict): at a packet boundary, a first byte of 20..=23 (TLS content types;
//! no TDS packet type is that high) starts a 5-byte TLS record header instead.

use super::header::{Header, HeaderRepr, HEADER_LEN};

/// One step of the framer's output.
#[derive(Debug, PartialEq, Eq)]
pub enum FramerItem<'a> {
    /// A piece of a packet's payload. `first` is true for the piece that starts the packet,
    /// `last` for the piece that ends it (both for a packet delivered whole).
    Payload {
        header: HeaderRepr,
        data: &'a [u8],
        first: bool,
        last: bool,
    },
    /// A piece of a TLS record seen where a TDS packet could start.
    Tls {
        content_type: u8,
        data: &'a [u8],
        first: bool,
        last: bool,
    },
    /// Bytes were skipped while looking for a packet header (after a gap or garbage).
    Skipped { bytes: u64 },
}

/// TLS record header length: content type, version (2), length (2).
const TLS_HEADER_LEN: usize = 5;
/// Largest TLS ciphertext record (RFC 8446 5.2: 2^14 + 256; TLS 1.2 allows 2^14 + 2048).
const TLS_MAX_RECORD: usize = (1 << 14) + 2048;

fn is_tls_content_type(b: u8) -> bool {
    (20..=23).contains(&b)
}

/// A TLS record header that could be real: known content type, version 3.x, sane length.
fn tls_record_len(h: &[u8]) -> Option<usize> {
    match h {
        [ct, 3, minor, hi, lo, ..] if is_tls_content_type(*ct) && *minor <= 4 => {
            let len = usize::from(u16::from_be_bytes([*hi, *lo]));
            (len <= TLS_MAX_RECORD).then_some(len)
        }
        _ => None,
    }
}

/// Where the framer is in the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At a packet boundary, collecting header bytes.
    Header,
    /// Inside a packet's payload; `remaining` bytes are still to come.
    Payload {
        header: HeaderRepr,
        remaining: usize,
        started: bool,
    },
    /// Inside a TLS record's body.
    Tls {
        content_type: u8,
        remaining: usize,
        started: bool,
    },
    /// Lost: scanning for a plausible header.
    Lost,
}

/// Splits one direction's stream into TDS packets.
#[derive(Clone, Debug)]
pub struct Framer {
    state: State,
    header: [u8; HEADER_LEN],
    header_len: usize,
    /// Bytes skipped in the current search for a header.
    skipped: u64,
    /// Packets seen whole, for detection confidence.
    pub packets: u64,
}

impl Default for Framer {
    fn default() -> Self {
        Framer::new()
    }
}

impl Framer {
    pub fn new() -> Self {
        Framer {
            state: State::Header,
            header: [0; HEADER_LEN],
            header_len: 0,
            skipped: 0,
            packets: 0,
        }
    }

    /// True when the framer has lost its place and is scanning for a header.
    pub fn is_lost(&self) -> bool {
        self.state == State::Lost
    }

    /// True between packets with nothing held: the next byte starts a header (or, with MARS,
    /// an SMP header that wraps one).
    pub fn at_boundary(&self) -> bool {
        self.state == State::Header && self.header_len == 0
    }

    /// The stream skipped `len` bytes that were never captured.
    pub fn on_gap(&mut self, len: u64) {
        match &mut self.state {
            State::Payload {
                remaining,
                header,
                started,
            } if (len as usize) < *remaining => {
                // The gap falls inside the payload: the packet boundary is still known.
                let left = *remaining - len as usize;
                self.state = State::Payload {
                    header: *header,
                    remaining: left,
                    started: *started,
                };
            }
            State::Payload { remaining, .. } if len as usize == *remaining => {
                self.state = State::Header;
                self.header_len = 0;
            }
            State::Tls {
                content_type,
                remaining,
                started,
            } if (len as usize) < *remaining => {
                let left = *remaining - len as usize;
                self.state = State::Tls {
                    content_type: *content_type,
                    remaining: left,
                    started: *started,
                };
            }
            _ => {
                self.state = State::Lost;
                self.header_len = 0;
            }
        }
    }

    /// Feeds the next in-order bytes; `emit` receives payload pieces and skip reports.
    pub fn feed(&mut self, mut data: &[u8], emit: &mut dyn FnMut(FramerItem<'_>)) {
        // Bounded: every iteration consumes at least one byte or changes state in a way that
        // the next one consumes.
        let mut guard = data.len() + 4;
        while !data.is_empty() && guard > 0 {
            guard -= 1;
            match self.state {
                State::Header => {
                    let tls = match self.header_len {
                        0 => data.first().is_some_and(|b| is_tls_content_type(*b)),
                        _ => is_tls_content_type(self.header[0]),
                    };
                    if tls && self.header_len >= TLS_HEADER_LEN {
                        // Resynchronising held more than a TLS record header: the rest of
                        // what is held is the start of the record's body.
                        self.take_held_tls_record(emit);
                        continue;
                    }
                    let header_len = if tls { TLS_HEADER_LEN } else { HEADER_LEN };
                    let want = header_len.saturating_sub(self.header_len);
                    let n = want.min(data.len());
                    let (head, rest) = data.split_at(n);
                    if let Some(dst) = self.header.get_mut(self.header_len..self.header_len + n) {
                        dst.copy_from_slice(head);
                    }
                    self.header_len += n;
                    data = rest;
                    if self.header_len < header_len {
                        return;
                    }
                    self.header_len = 0;
                    if tls {
                        match tls_record_len(&self.header) {
                            Some(0) => emit(FramerItem::Tls {
                                content_type: self.header[0],
                                data: &[],
                                first: true,
                                last: true,
                            }),
                            Some(len) => {
                                self.state = State::Tls {
                                    content_type: self.header[0],
                                    remaining: len,
                                    started: false,
                                }
                            }
                            None => {
                                self.state = State::Lost;
                                self.skipped = 0;
                                let held = self.header;
                                self.scan_into_header(&held[1..TLS_HEADER_LEN], emit);
                                self.skipped += 1;
                            }
                        }
                        continue;
                    }
                    let view = Header::new_checked(&self.header[..]);
                    match view {
                        Some(h) if h.is_plausible() => {
                            let header = HeaderRepr::parse(&h);
                            let remaining = usize::from(header.length) - HEADER_LEN;
                            if remaining == 0 {
                                self.packets += 1;
                                emit(FramerItem::Payload {
                                    header,
                                    data: &[],
                                    first: true,
                                    last: true,
                                });
                            } else {
                                self.state = State::Payload {
                                    header,
                                    remaining,
                                    started: false,
                                };
                            }
                        }
                        _ => {
                            // Not a header: rescan from the second byte of what we took.
                            self.state = State::Lost;
                            self.skipped = 0;
                            let held = self.header;
                            self.scan_into_header(&held[1..], emit);
                            self.skipped += 1;
                        }
                    }
                }
                State::Payload {
                    header,
                    remaining,
                    started,
                } => {
                    let n = remaining.min(data.len());
                    let (piece, rest) = data.split_at(n);
                    data = rest;
                    let last = n == remaining;
                    emit(FramerItem::Payload {
                        header,
                        data: piece,
                        first: !started,
                        last,
                    });
                    if last {
                        self.packets += 1;
                        self.state = State::Header;
                    } else {
                        self.state = State::Payload {
                            header,
                            remaining: remaining - n,
                            started: true,
                        };
                    }
                }
                State::Tls {
                    content_type,
                    remaining,
                    started,
                } => {
                    let n = remaining.min(data.len());
                    let (piece, rest) = data.split_at(n);
                    data = rest;
                    let last = n == remaining;
                    emit(FramerItem::Tls {
                        content_type,
                        data: piece,
                        first: !started,
                        last,
                    });
                    self.state = if last {
                        State::Header
                    } else {
                        State::Tls {
                            content_type,
                            remaining: remaining - n,
                            started: true,
                        }
                    };
                }
                State::Lost => {
                    let consumed = self.scan(data, emit);
                    data = data.get(consumed..).unwrap_or(&[]);
                }
            }
        }
    }

    /// The held bytes start with a TLS record header and go past it (a resync kept up to 7
    /// bytes): the header is taken, the rest delivered as the body's first piece.
    fn take_held_tls_record(&mut self, emit: &mut dyn FnMut(FramerItem<'_>)) {
        let held = self.header;
        let n = self.header_len.min(HEADER_LEN);
        self.header_len = 0;
        let content_type = held[0];
        match tls_record_len(&held[..TLS_HEADER_LEN]) {
            Some(len) => {
                let extra = held.get(TLS_HEADER_LEN..n).unwrap_or(&[]);
                let take = extra.len().min(len);
                let piece = extra.get(..take).unwrap_or(&[]);
                emit(FramerItem::Tls {
                    content_type,
                    data: piece,
                    first: true,
                    last: take == len,
                });
                self.state = if take == len {
                    State::Header
                } else {
                    State::Tls {
                        content_type,
                        remaining: len - take,
                        started: true,
                    }
                };
                // Bytes held beyond a (tiny) record start the next header.
                if let Some(after) = extra.get(take..).filter(|a| !a.is_empty()) {
                    self.scan_into_header(after, emit);
                }
            }
            None => {
                self.state = State::Lost;
                self.skipped = 1;
                self.scan_into_header(held.get(1..n).unwrap_or(&[]), emit);
            }
        }
    }

    /// Scans `data` for a plausible header start while lost; returns bytes consumed. When a
    /// candidate starts near the end, its bytes are taken into the header buffer.
    fn scan(&mut self, data: &[u8], emit: &mut dyn FnMut(FramerItem<'_>)) -> usize {
        for (i, window) in data.windows(HEADER_LEN).enumerate() {
            let tds = Header::new_checked(window).is_some_and(|h| h.is_plausible());
            if tds || tls_record_len(window).is_some() {
                self.skipped += i as u64;
                emit(FramerItem::Skipped {
                    bytes: self.skipped,
                });
                self.skipped = 0;
                self.state = State::Header;
                return i;
            }
        }
        // No full candidate: keep the tail that could start a header, skip the rest.
        let keep = data.len().min(HEADER_LEN - 1);
        let skip = data.len() - keep;
        self.skipped += skip as u64;
        let tail = data.get(skip..).unwrap_or(&[]);
        self.scan_into_header(tail, emit);
        data.len()
    }

    /// Takes a short tail (< 8 bytes) while lost: if it could be the start of a header, it is
    /// held as a partial header; otherwise its first byte is skipped and the rest retried.
    fn scan_into_header(&mut self, tail: &[u8], emit: &mut dyn FnMut(FramerItem<'_>)) {
        let mut tail = tail;
        while let Some((&first, rest)) = tail.split_first() {
            if could_start_header(tail) {
                if let Some(dst) = self.header.get_mut(..tail.len()) {
                    dst.copy_from_slice(tail);
                }
                self.header_len = tail.len();
                self.state = State::Header;
                if self.skipped > 0 {
                    emit(FramerItem::Skipped {
                        bytes: self.skipped,
                    });
                    self.skipped = 0;
                }
                return;
            }
            let _ = first;
            self.skipped += 1;
            tail = rest;
        }
        self.state = State::Lost;
    }
}

/// True when `prefix` (shorter than a header) agrees with a plausible header so far.
fn could_start_header(prefix: &[u8]) -> bool {
    if prefix.first().is_some_and(|b| is_tls_content_type(*b)) {
        let mut probe = [0u8, 3, 3, 0, 0];
        for (dst, src) in probe.iter_mut().zip(prefix) {
            *dst = *src;
        }
        return tls_record_len(&probe).is_some();
    }
    let mut probe = [0u8; HEADER_LEN];
    let n = prefix.len().min(HEADER_LEN);
    if let (Some(dst), Some(src)) = (probe.get_mut(..n), prefix.get(..n)) {
        dst.copy_from_slice(src);
    }
    // Fill unknown bytes with values that keep the header plausible: length 8..=32768.
    if n <= 2 {
        probe[2] = 0x00;
    }
    if n <= 3 {
        probe[3] = 0x08;
    }
    Header::new_checked(&probe[..]).is_some_and(|h| h.is_plausible())
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::proto::tds::PacketType;

    fn packet(ptype: u8, status: u8, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() + HEADER_LEN) as u16;
        let mut p = vec![ptype, status];
        p.extend_from_slice(&len.to_be_bytes());
        p.extend_from_slice(&[0, 0, 1, 0]);
        p.extend_from_slice(payload);
        p
    }

    /// Runs the framer over `chunks`, returning (packet type, payload, eom) per whole packet
    /// and the skipped-byte reports.
    fn run(f: &mut Framer, chunks: &[&[u8]]) -> (Vec<(PacketType, Vec<u8>)>, Vec<u64>) {
        let mut packets: Vec<(PacketType, Vec<u8>)> = Vec::new();
        let mut skips = Vec::new();
        let mut current: Vec<u8> = Vec::new();
        for chunk in chunks {
            f.feed(chunk, &mut |item| match item {
                FramerItem::Payload {
                    header,
                    data,
                    first,
                    last,
                } => {
                    if first {
                        current.clear();
                    }
                    current.extend_from_slice(data);
                    if last {
                        packets.push((header.packet_type, current.clone()));
                    }
                }
                FramerItem::Skipped { bytes } => skips.push(bytes),
                FramerItem::Tls {
                    content_type,
                    data,
                    first,
                    last,
                } => {
                    if first {
                        current.clear();
                    }
                    current.extend_from_slice(data);
                    if last {
                        packets.push((PacketType::Unknown(content_type), current.clone()));
                    }
                }
            });
        }
        (packets, skips)
    }

    #[test]
    fn packets_split_anywhere_come_out_whole() {
        let mut stream = packet(0x12, 1, b"prelogin-bytes");
        stream.extend(packet(0x10, 1, &[7u8; 300]));
        stream.extend(packet(0x06, 1, b""));
        for cut in 0..stream.len() {
            let mut f = Framer::new();
            let (packets, skips) = run(&mut f, &[&stream[..cut], &stream[cut..]]);
            assert_eq!(packets.len(), 3, "cut at {cut}");
            assert_eq!(
                packets[0],
                (PacketType::Prelogin, b"prelogin-bytes".to_vec())
            );
            assert_eq!(packets[1].1.len(), 300);
            assert_eq!(packets[2], (PacketType::Attention, vec![]));
            assert!(skips.is_empty());
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let stream = packet(0x01, 1, &[0x41; 50]);
        let chunks: Vec<&[u8]> = stream.chunks(1).collect();
        let mut f = Framer::new();
        let (packets, _) = run(&mut f, &chunks);
        assert_eq!(packets, vec![(PacketType::SqlBatch, vec![0x41; 50])]);
    }

    #[test]
    fn gap_inside_payload_keeps_the_boundary() {
        let a = packet(0x04, 0, &[1u8; 100]);
        let b = packet(0x04, 1, &[2u8; 10]);
        let mut f = Framer::new();
        let mut got = Vec::new();
        let mut collect = |item: FramerItem<'_>| {
            if let FramerItem::Payload {
                header, last: true, ..
            } = item
            {
                got.push(header.status);
            }
        };
        f.feed(&a[..50], &mut collect);
        f.on_gap(30);
        f.feed(&a[80..], &mut collect);
        f.feed(&b, &mut collect);
        assert_eq!(got, vec![0, 1]);
        assert!(!f.is_lost());
    }

    #[test]
    fn resynchronises_after_garbage_and_says_how_much_it_skipped() {
        let mut stream = b"\x47ET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        let garbage = stream.len() as u64;
        stream.extend(packet(0x01, 1, b"select 1"));
        let mut f = Framer::new();
        let (packets, skips) = run(&mut f, &[&stream]);
        assert_eq!(packets, vec![(PacketType::SqlBatch, b"select 1".to_vec())]);
        assert_eq!(skips.iter().sum::<u64>(), garbage);
    }

    #[test]
    fn resynchronises_after_a_gap_that_crosses_a_boundary() {
        let a = packet(0x04, 0, &[1u8; 100]);
        let b = packet(0x04, 1, &[2u8; 20]);
        let mut f = Framer::new();
        let (_, _) = run(&mut f, &[&a[..40]]);
        f.on_gap(200);
        assert!(f.is_lost());
        let tail_of_something = [9u8; 13];
        let (packets, skips) = run(&mut f, &[&tail_of_something, &b]);
        assert_eq!(packets, vec![(PacketType::TabularResult, vec![2u8; 20])]);
        assert_eq!(skips.iter().sum::<u64>(), 13);
    }

    #[test]
    fn tls_records_between_tds_packets() {
        // Login-only encryption: TLS application data (LOGIN7 inside), then cleartext TDS.
        let mut stream = vec![0x17, 0x03, 0x03, 0x00, 0x04, 1, 2, 3, 4];
        stream.extend(packet(0x01, 1, b"select 1"));
        for cut in 0..stream.len() {
            let mut f = Framer::new();
            let (packets, skips) = run(&mut f, &[&stream[..cut], &stream[cut..]]);
            assert_eq!(
                packets,
                vec![
                    (PacketType::Unknown(0x17), vec![1, 2, 3, 4]),
                    (PacketType::SqlBatch, b"select 1".to_vec())
                ],
                "cut at {cut}"
            );
            assert!(skips.is_empty());
        }
    }

    /// Found by the `tds` fuzz target: resynchronising held 7 bytes starting like a TLS record
    /// header (5 bytes), and the header arithmetic underflowed.
    #[test]
    fn fuzz_regression_tls_header_held_past_five_bytes() {
        let data = include_bytes!("testdata/fuzz-tls-header-held-past-5-bytes.bin");
        let mut f = Framer::new();
        let mut seen = 0u64;
        for (i, piece) in data.chunks(37).enumerate() {
            if i % 7 == 6 {
                f.on_gap(u64::from(piece[0]));
                continue;
            }
            f.feed(piece, &mut |item| match item {
                FramerItem::Payload { data, .. } | FramerItem::Tls { data, .. } => {
                    seen += data.len() as u64
                }
                FramerItem::Skipped { bytes } => seen += bytes,
            });
        }
        assert!(seen <= data.len() as u64);
    }

    #[test]
    fn a_held_prefix_longer_than_a_tls_header_is_header_plus_body() {
        // Lost, then 7 trailing bytes that start a TLS record: 5 header bytes + 2 body bytes.
        let mut f = Framer::new();
        f.on_gap(1000);
        let mut got = Vec::new();
        let mut collect = |item: FramerItem<'_>| {
            if let FramerItem::Tls { data, last, .. } = item {
                got.push((data.to_vec(), last));
            }
        };
        f.feed(&[0x17, 0x03, 0x03, 0x00, 0x04, 0xaa, 0xbb], &mut collect);
        f.feed(&[0xcc, 0xdd], &mut collect);
        let body: Vec<u8> = got.iter().flat_map(|(d, _)| d.clone()).collect();
        assert_eq!(body, [0xaa, 0xbb, 0xcc, 0xdd]);
        assert!(got.last().unwrap().1, "the record ends");
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_any_split_never_panic(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            cut in 0usize..600,
        ) {
            let cut = cut.min(data.len());
            let mut f = Framer::new();
            let mut total = 0u64;
            let mut count = |item: FramerItem<'_>| match item {
                FramerItem::Payload { data, .. } => total += data.len() as u64,
                FramerItem::Skipped { bytes } => total += bytes,
                FramerItem::Tls { data, .. } => total += data.len() as u64,
            };
            f.feed(&data[..cut], &mut count);
            f.feed(&data[cut..], &mut count);
            // Payload and skipped bytes never exceed the input.
            proptest::prop_assert!(total <= data.len() as u64);
        }
    }
}
