//! Frame building: classic pcap records (little-endian, microsecond timestamps), Ethernet II,
//! IPv4 (RFC 791) and TCP (RFC 9293) with correct checksums (RFC 1071), built into a reused buffer.

use std::io::{self, Write};

pub const SNAPLEN: u32 = 262_144;
pub const LINKTYPE_ETHERNET: u32 = 1;
pub const ETH_LEN: usize = 14;
pub const IPV4_LEN: usize = 20;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// The largest TCP payload an IPv4 datagram can carry with a 32-byte TCP header (timestamps).
pub const MAX_PAYLOAD_WITH_TS: usize = 65_535 - IPV4_LEN - 32;

/// The 24-byte classic pcap global header, little-endian, microsecond resolution.
pub fn write_global_header(w: &mut impl Write) -> io::Result<()> {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xA1B2_C3D4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    // thiszone and sigfigs stay zero.
    h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    w.write_all(&h)
}

/// One pcap record: 16-byte header then the whole frame (never truncated: frames stay under the snaplen).
pub fn write_record(w: &mut impl Write, ts_us: u64, frame: &[u8]) -> io::Result<()> {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&((ts_us / 1_000_000) as u32).to_le_bytes());
    h[4..8].copy_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
    h[8..12].copy_from_slice(&(frame.len() as u32).to_le_bytes());
    h[12..16].copy_from_slice(&(frame.len() as u32).to_le_bytes());
    w.write_all(&h)?;
    w.write_all(frame)
}

/// The one's-complement sum of `data` as big-endian 16-bit words, not yet folded or inverted.
/// Summing 32-bit words is equivalent because 2^16 ≡ 1 (mod 0xFFFF).
pub fn ones_sum(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    acc + u64::from(u32::from_be_bytes(tail))
}

pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xFFFF {
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    !(acc as u16)
}

#[derive(Clone, Copy, Debug)]
pub struct Endpoint {
    pub mac: [u8; 6],
    pub ip: [u8; 4],
    pub port: u16,
}

/// Everything needed to build one Ethernet/IPv4/TCP frame.
pub struct Segment<'a> {
    pub src: &'a Endpoint,
    pub dst: &'a Endpoint,
    pub ip_id: u16,
    pub ttl: u8,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// Already padded to a multiple of 4 bytes.
    pub options: &'a [u8],
    pub payload: &'a [u8],
}

/// Builds the frame into `buf` (cleared first) so the caller can reuse one allocation.
pub fn build_frame(buf: &mut Vec<u8>, s: &Segment<'_>) {
    debug_assert!(s.options.len() % 4 == 0 && s.options.len() <= 40);
    let tcp_len = 20 + s.options.len() + s.payload.len();
    let ip_total = IPV4_LEN + tcp_len;
    debug_assert!(ip_total <= 65_535);
    buf.clear();
    // Ethernet II
    buf.extend_from_slice(&s.dst.mac);
    buf.extend_from_slice(&s.src.mac);
    buf.extend_from_slice(&0x0800u16.to_be_bytes());
    // IPv4, DF set, no options
    let ip_start = buf.len();
    buf.extend_from_slice(&[0x45, 0x00]);
    buf.extend_from_slice(&(ip_total as u16).to_be_bytes());
    buf.extend_from_slice(&s.ip_id.to_be_bytes());
    buf.extend_from_slice(&0x4000u16.to_be_bytes());
    buf.extend_from_slice(&[s.ttl, 6, 0, 0]);
    buf.extend_from_slice(&s.src.ip);
    buf.extend_from_slice(&s.dst.ip);
    let ip_ck = fold(ones_sum(&buf[ip_start..ip_start + IPV4_LEN], 0));
    buf[ip_start + 10..ip_start + 12].copy_from_slice(&ip_ck.to_be_bytes());
    // TCP
    let tcp_start = buf.len();
    buf.extend_from_slice(&s.src.port.to_be_bytes());
    buf.extend_from_slice(&s.dst.port.to_be_bytes());
    buf.extend_from_slice(&s.seq.to_be_bytes());
    buf.extend_from_slice(&s.ack.to_be_bytes());
    let data_offset_words = ((20 + s.options.len()) / 4) as u8;
    buf.extend_from_slice(&[data_offset_words << 4, s.flags]);
    buf.extend_from_slice(&s.window.to_be_bytes());
    buf.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    buf.extend_from_slice(s.options);
    buf.extend_from_slice(s.payload);
    // Pseudo-header: source, destination, zero, protocol, TCP length.
    let mut acc = ones_sum(&s.src.ip, 0);
    acc = ones_sum(&s.dst.ip, acc);
    acc += 6 + tcp_len as u64;
    acc = ones_sum(&buf[tcp_start..], acc);
    let tcp_ck = fold(acc);
    buf[tcp_start + 16..tcp_start + 18].copy_from_slice(&tcp_ck.to_be_bytes());
}

/// TCP options for a SYN or SYN-ACK (Linux order): MSS, SACK permitted, timestamps, NOP, window scale.
pub fn syn_options(out: &mut Vec<u8>, mss: u16, wscale: u8, tsval: u32, tsecr: u32) {
    out.clear();
    out.extend_from_slice(&[2, 4]);
    out.extend_from_slice(&mss.to_be_bytes());
    out.extend_from_slice(&[4, 2, 8, 10]);
    out.extend_from_slice(&tsval.to_be_bytes());
    out.extend_from_slice(&tsecr.to_be_bytes());
    out.extend_from_slice(&[1, 3, 3, wscale]);
}

/// NOP, NOP, timestamps; then NOP, NOP, one SACK block when the receiver holds data past a hole.
pub fn data_options(out: &mut Vec<u8>, tsval: u32, tsecr: u32, sack: Option<(u32, u32)>) {
    out.clear();
    out.extend_from_slice(&[1, 1, 8, 10]);
    out.extend_from_slice(&tsval.to_be_bytes());
    out.extend_from_slice(&tsecr.to_be_bytes());
    if let Some((left, right)) = sack {
        out.extend_from_slice(&[1, 1, 5, 10]);
        out.extend_from_slice(&left.to_be_bytes());
        out.extend_from_slice(&right.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (before inversion).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(ones_sum(&data, 0)), !0xddf2);
    }

    #[test]
    fn built_frame_verifies() {
        let a = Endpoint {
            mac: [2, 0, 0, 0, 0, 1],
            ip: [10, 1, 0, 1],
            port: 50000,
        };
        let b = Endpoint {
            mac: [2, 0, 0, 0, 0, 2],
            ip: [10, 0, 0, 10],
            port: 1433,
        };
        let mut opts = Vec::new();
        data_options(&mut opts, 1, 2, Some((3, 4)));
        let mut buf = Vec::new();
        for len in [0usize, 1, 2, 3, 1448] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            build_frame(
                &mut buf,
                &Segment {
                    src: &a,
                    dst: &b,
                    ip_id: 7,
                    ttl: 128,
                    seq: 1,
                    ack: 2,
                    flags: ACK | PSH,
                    window: 1000,
                    options: &opts,
                    payload: &payload,
                },
            );
            assert_eq!(fold(ones_sum(&buf[14..34], 0)), 0, "ip header checksum");
            let tcp = &buf[34..];
            let mut acc = ones_sum(&a.ip, 0);
            acc = ones_sum(&b.ip, acc);
            acc += 6 + tcp.len() as u64;
            assert_eq!(fold(ones_sum(tcp, acc)), 0, "tcp checksum");
        }
    }
}
