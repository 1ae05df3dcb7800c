//! Builders for small capture files in unit tests: every field written explicitly, so a test
//! reads like the layout it exercises.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::Cursor;

use nom::number::Endianness;

fn put16(out: &mut Vec<u8>, e: Endianness, v: u16) {
    match e {
        Endianness::Big => out.extend_from_slice(&v.to_be_bytes()),
        _ => out.extend_from_slice(&v.to_le_bytes()),
    }
}

fn put32(out: &mut Vec<u8>, e: Endianness, v: u32) {
    match e {
        Endianness::Big => out.extend_from_slice(&v.to_be_bytes()),
        _ => out.extend_from_slice(&v.to_le_bytes()),
    }
}

fn put64(out: &mut Vec<u8>, e: Endianness, v: u64) {
    match e {
        Endianness::Big => out.extend_from_slice(&v.to_be_bytes()),
        _ => out.extend_from_slice(&v.to_le_bytes()),
    }
}

/// A classic pcap header.
pub fn pcap_header(e: Endianness, nanos: bool, snaplen: u32, linktype: u32) -> Vec<u8> {
    let mut out = Vec::new();
    put32(&mut out, e, if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 });
    put16(&mut out, e, 2); // version_major
    put16(&mut out, e, 4); // version_minor
    put32(&mut out, e, 0); // thiszone
    put32(&mut out, e, 0); // sigfigs
    put32(&mut out, e, snaplen);
    put32(&mut out, e, linktype);
    out
}

/// A pcap record: header and data.
pub fn pcap_record(e: Endianness, sec: u32, frac: u32, data: &[u8], orig_len: u32) -> Vec<u8> {
    let mut out = Vec::new();
    put32(&mut out, e, sec);
    put32(&mut out, e, frac);
    put32(&mut out, e, data.len() as u32);
    put32(&mut out, e, orig_len);
    out.extend_from_slice(data);
    out
}

/// A pcapng block with correct lengths around `body` (padded to 32 bits).
pub fn block(e: Endianness, btype: u32, body: &[u8]) -> Vec<u8> {
    let mut body = body.to_vec();
    while body.len() % 4 != 0 {
        body.push(0);
    }
    let total = 12 + body.len() as u32;
    let mut out = Vec::new();
    put32(&mut out, e, btype);
    put32(&mut out, e, total);
    out.extend_from_slice(&body);
    put32(&mut out, e, total);
    out
}

pub fn shb(e: Endianness) -> Vec<u8> {
    let mut body = Vec::new();
    put32(&mut body, e, 0x1A2B_3C4D);
    put16(&mut body, e, 1);
    put16(&mut body, e, 0);
    put64(&mut body, e, u64::MAX); // section length unknown (-1)
    block(e, 0x0A0D_0D0A, &body)
}

/// An IDB; `tsresol`/`tsoffset` become options when given.
pub fn idb(
    e: Endianness,
    link: u16,
    snaplen: u32,
    tsresol: Option<u8>,
    tsoffset: Option<i64>,
) -> Vec<u8> {
    let mut body = Vec::new();
    put16(&mut body, e, link);
    put16(&mut body, e, 0);
    put32(&mut body, e, snaplen);
    if let Some(r) = tsresol {
        put16(&mut body, e, 9);
        put16(&mut body, e, 1);
        body.extend_from_slice(&[r, 0, 0, 0]);
    }
    if let Some(o) = tsoffset {
        put16(&mut body, e, 14);
        put16(&mut body, e, 8);
        put64(&mut body, e, o as u64);
    }
    if tsresol.is_some() || tsoffset.is_some() {
        put32(&mut body, e, 0); // opt_endofopt
    }
    block(e, 1, &body)
}

pub fn epb(e: Endianness, iface: u32, ts: u64, data: &[u8], orig_len: u32) -> Vec<u8> {
    let mut body = Vec::new();
    put32(&mut body, e, iface);
    put32(&mut body, e, (ts >> 32) as u32);
    put32(&mut body, e, ts as u32);
    put32(&mut body, e, data.len() as u32);
    put32(&mut body, e, orig_len);
    body.extend_from_slice(data);
    block(e, 6, &body)
}

pub fn spb(e: Endianness, data: &[u8], orig_len: u32) -> Vec<u8> {
    let mut body = Vec::new();
    put32(&mut body, e, orig_len);
    body.extend_from_slice(data);
    block(e, 3, &body)
}

/// Obsolete Packet Block (type 2).
pub fn pb(e: Endianness, iface: u16, ts: u64, data: &[u8], orig_len: u32) -> Vec<u8> {
    let mut body = Vec::new();
    put16(&mut body, e, iface);
    put16(&mut body, e, 0); // drops
    put32(&mut body, e, (ts >> 32) as u32);
    put32(&mut body, e, ts as u32);
    put32(&mut body, e, data.len() as u32);
    put32(&mut body, e, orig_len);
    body.extend_from_slice(data);
    block(e, 2, &body)
}

/// One NetMon frame for [`netmon_file`]: delta µs, data, orig_len, trailer media type and
/// (2.3) FILETIME.
pub struct NetmonFrame {
    pub delta_us: u64,
    pub data: Vec<u8>,
    pub orig_len: u32,
    pub media: u16,
    pub filetime: u64,
}

/// A NetMon 2.`minor` file: header, the frames in order, then the frame table. The table
/// lists frames in `order` (indexes into `frames`) when given.
pub fn netmon_file(
    minor: u8,
    media: u16,
    start: [u16; 8],
    frames: &[NetmonFrame],
    order: Option<&[usize]>,
) -> Vec<u8> {
    let le = Endianness::Little;
    let mut out = Vec::new();
    out.extend_from_slice(b"GMBU");
    out.push(minor);
    out.push(2);
    put16(&mut out, le, media);
    for v in start {
        put16(&mut out, le, v);
    }
    let table_fields_at = out.len();
    out.resize(128, 0);
    let mut offsets = Vec::new();
    for f in frames {
        offsets.push(out.len() as u32);
        put64(&mut out, le, f.delta_us);
        put32(&mut out, le, f.orig_len);
        put32(&mut out, le, f.data.len() as u32);
        out.extend_from_slice(&f.data);
        if minor >= 1 {
            put16(&mut out, le, f.media);
        }
        if minor >= 2 {
            put32(&mut out, le, 0); // process info index
        }
        if minor >= 3 {
            put64(&mut out, le, f.filetime);
            out.push(0); // time zone index
        }
    }
    let table_at = out.len() as u32;
    let order: Vec<usize> = order.map_or_else(|| (0..frames.len()).collect(), <[usize]>::to_vec);
    for i in &order {
        put32(&mut out, le, offsets[*i]);
    }
    let len = (order.len() * 4) as u32;
    out[table_fields_at..table_fields_at + 4].copy_from_slice(&table_at.to_le_bytes());
    out[table_fields_at + 4..table_fields_at + 8].copy_from_slice(&len.to_le_bytes());
    out
}

pub fn cursor(bytes: &[u8]) -> Cursor<Vec<u8>> {
    Cursor::new(bytes.to_vec())
}
