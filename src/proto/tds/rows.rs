//! ROW and NBCROW (MS-TDS 2.2.7.19, 2.2.7.17), skipped without being decoded.
//!
//! A result set is mostly rows, so this is the token walk's hot loop: on a large capture it
//! runs for most of the server's bytes. Rows are walked by offset over the buffer, reading
//! only the length prefixes that COLMETADATA's layouts say are there; no token value is built
//! and nothing is allocated per row. A run of rows is skipped in one call, so the walker's
//! per-token dispatch is paid once per run rather than once per row.

use super::tokens::{id, ColumnType, ValueLayout};

fn u8_at(buf: &[u8], p: usize) -> Option<usize> {
    buf.get(p).map(|b| usize::from(*b))
}

fn u16_at(buf: &[u8], p: usize) -> Option<usize> {
    match buf.get(p..p.checked_add(2)?)? {
        [a, b] => Some(usize::from(u16::from_le_bytes([*a, *b]))),
        _ => None,
    }
}

fn u32_at(buf: &[u8], p: usize) -> Option<usize> {
    match buf.get(p..p.checked_add(4)?)? {
        [a, b, c, d] => usize::try_from(u32::from_le_bytes([*a, *b, *c, *d])).ok(),
        _ => None,
    }
}

fn u64_at(buf: &[u8], p: usize) -> Option<u64> {
    let bytes: [u8; 8] = buf.get(p..p.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Where the value of `layout` that starts at `p` ends (it may lie beyond `buf`, which the
/// caller checks), or None when a length prefix is not in `buf`. Ends past `buf` by more
/// than a short value's length (64 KiB) are None too, so callers may add up several ends
/// before checking them.
#[inline]
pub fn value_end(buf: &[u8], p: usize, layout: ValueLayout) -> Option<usize> {
    match layout {
        ValueLayout::Fixed(n) => Some(p + usize::from(n)),
        ValueLayout::ByteLen => Some(p + 1 + u8_at(buf, p)?),
        ValueLayout::UShortLen => match u16_at(buf, p)? {
            0xFFFF => Some(p + 2), // NULL
            n => Some(p + 2 + n),
        },
        ValueLayout::LongLen => (p + 4)
            .checked_add(u32_at(buf, p)?)
            .filter(|&q| q <= buf.len()),
        ValueLayout::Plp => {
            if u64_at(buf, p)? == u64::MAX {
                return Some(p + 8); // PLP_NULL
            }
            // Chunks, each with its 4-byte length, until a zero-length terminator. Every
            // chunk moves on at least 4 bytes, so the loop ends with the buffer.
            let mut q = p + 8;
            loop {
                let chunk = u32_at(buf, q)?;
                q += 4;
                if chunk == 0 {
                    return Some(q);
                }
                q = q.checked_add(chunk)?;
                if q > buf.len() {
                    return None;
                }
            }
        }
        ValueLayout::TextPtr => match u8_at(buf, p)? {
            0 => Some(p + 1), // NULL
            ptr_len => {
                // Text pointer, 8-byte timestamp, then a 4-byte length and the data.
                let q = p + 1 + ptr_len + 8;
                (q + 4)
                    .checked_add(u32_at(buf, q)?)
                    .filter(|&q| q <= buf.len())
            }
        },
    }
}

/// Where the row whose values start at `p` ends, given the result set's columns; None when
/// `buf` ends first. `null_bitmap` is true for NBCROW, whose values are preceded by one bit
/// per column (set: NULL, no bytes).
pub fn row_end(buf: &[u8], p: usize, columns: &[ColumnType], null_bitmap: bool) -> Option<usize> {
    let mut q = p;
    if null_bitmap {
        let bitmap_len = columns.len().div_ceil(8);
        let bitmap = buf.get(p..p.checked_add(bitmap_len)?)?;
        q += bitmap_len;
        for (i, col) in columns.iter().enumerate() {
            let is_null = bitmap.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0);
            if !is_null {
                q = value_end(buf, q, col.layout)?;
            }
        }
    } else {
        // Checked once at the end: an end past `buf` makes the next length read fail, and
        // at most 4,096 short values (64 KiB each) cannot overflow.
        for col in columns {
            q = value_end(buf, q, col.layout)?;
        }
    }
    (q <= buf.len()).then_some(q)
}

/// Skips the whole ROW and NBCROW tokens at the front of `input`; returns what follows the
/// last of them (`input` itself when it does not start with a whole row). A row cut by the end
/// of `input` is left for the caller, whose token parser reports it as incomplete.
pub fn skip_rows<'a>(input: &'a [u8], columns: &[ColumnType]) -> &'a [u8] {
    let mut pos = 0;
    loop {
        let end = match input.get(pos) {
            Some(&id::ROW) => row_end(input, pos + 1, columns, false),
            Some(&id::NBCROW) => row_end(input, pos + 1, columns, true),
            _ => None,
        };
        match end {
            Some(end) => pos = end,
            None => return input.get(pos..).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::proto::tds::tokens::{parse_token, Token, TokenContext};
    use crate::proto::tds::TdsVersion;

    /// COLMETADATA with INTN(4), NVARCHAR(100), NVARCHAR(max), IMAGE-free TEXT-free columns:
    /// enough layouts to exercise every path but TextPtr, which `text_pointer_values` covers.
    fn metadata() -> Vec<u8> {
        let mut m = vec![id::COLMETADATA, 4, 0];
        m.extend_from_slice(&[0, 0, 0, 0, 0x01, 0x00, 0x26, 4, 1, b'a', 0]);
        m.extend_from_slice(&[0, 0, 0, 0, 0x01, 0x00, 0xE7, 200, 0, 0x09, 0x04, 0xD0, 0x00]);
        m.extend_from_slice(&[0x34, 1, b'b', 0]);
        m.extend_from_slice(&[
            0, 0, 0, 0, 0x01, 0x00, 0xE7, 0xFF, 0xFF, 0x09, 0x04, 0xD0, 0x00,
        ]);
        m.extend_from_slice(&[0x34, 1, b'c', 0]);
        m.extend_from_slice(&[0, 0, 0, 0, 0x01, 0x00, 0x3E, 1, b'd', 0]);
        m
    }

    /// Three rows and where each ends.
    fn rows() -> (Vec<u8>, Vec<usize>) {
        let mut r = Vec::new();
        let mut ends = Vec::new();
        // ROW: 7, "hi", PLP "x!" in two chunks, 8-byte float.
        r.push(id::ROW);
        r.extend_from_slice(&[4, 7, 0, 0, 0, 4, 0, b'h', 0, b'i', 0]);
        r.extend_from_slice(&4u64.to_le_bytes());
        r.extend_from_slice(&[2, 0, 0, 0, b'x', 0, 2, 0, 0, 0, b'!', 0, 0, 0, 0, 0]);
        r.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        ends.push(r.len());
        // ROW: NULL INTN, NULL NVARCHAR, PLP_NULL, float.
        r.push(id::ROW);
        r.extend_from_slice(&[0, 0xFF, 0xFF]);
        r.extend_from_slice(&u64::MAX.to_le_bytes());
        r.extend_from_slice(&[8; 8]);
        ends.push(r.len());
        // NBCROW: columns 0 and 2 NULL.
        r.extend_from_slice(&[id::NBCROW, 0b0101, 2, 0, b'z', 0]);
        r.extend_from_slice(&[9; 8]);
        ends.push(r.len());
        (r, ends)
    }

    #[test]
    fn skips_whole_rows_at_every_cut() {
        let mut ctx = TokenContext::new(TdsVersion::V7_4);
        let meta = metadata();
        let (rest, t) = parse_token(&meta, &mut ctx).unwrap();
        assert!(rest.is_empty() && t == Token::ColMetadata { columns: 4 });
        let (mut all, ends) = rows();
        let done = [id::DONE, 0x10, 0, 0xC1, 0, 3, 0, 0, 0, 0, 0, 0, 0];
        all.extend_from_slice(&done);
        assert_eq!(skip_rows(&all, &ctx.columns).len(), done.len());
        for cut in 0..=all.len() {
            let skipped = ends
                .iter()
                .copied()
                .filter(|&e| e <= cut)
                .max()
                .unwrap_or(0);
            assert_eq!(
                skip_rows(&all[..cut], &ctx.columns).len(),
                cut - skipped,
                "cut at {cut}"
            );
        }
        // The token parser agrees row by row: a cut row is incomplete, a whole one a Row.
        let mut start = 0;
        for &end in &ends {
            for cut in start + 1..end {
                let r = parse_token(&all[start..cut], &mut ctx);
                assert!(matches!(
                    r,
                    Err(crate::proto::ParseError::Incomplete { .. })
                ));
            }
            let (rest, t) = parse_token(&all[start..], &mut ctx).unwrap();
            assert_eq!((t, all.len() - rest.len()), (Token::Row, end));
            start = end;
        }
    }

    #[test]
    fn text_pointer_values() {
        let columns = [ColumnType {
            type_id: 0x23,
            layout: ValueLayout::TextPtr,
        }];
        let mut r = vec![id::ROW, 16];
        r.extend_from_slice(&[0xAA; 16 + 8]);
        r.extend_from_slice(&3u32.to_le_bytes());
        r.extend_from_slice(b"abc");
        r.extend_from_slice(&[id::ROW, 0]); // NULL
        assert!(skip_rows(&r, &columns).is_empty());
        assert_eq!(skip_rows(&r[..r.len() - 3], &columns).len(), r.len() - 3);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut ctx = TokenContext::new(TdsVersion::V7_4);
            let _ = parse_token(&metadata(), &mut ctx);
            let rest = skip_rows(&data, &ctx.columns);
            proptest::prop_assert!(rest.len() <= data.len());
        }
    }
}
