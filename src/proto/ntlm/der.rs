//! Just enough DER (X.690 8.1) to walk SPNEGO and Kerberos structures: single-byte tags,
//! definite lengths of up to four length octets, every length checked against the input.

/// One TLV: the identifier octet and the contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tlv<'a> {
    pub tag: u8,
    pub value: &'a [u8],
}

/// Tag classes and forms used by RFC 4178 / RFC 4120 (X.690 8.1.2).
pub(crate) const SEQUENCE: u8 = 0x30;
pub(crate) const OID: u8 = 0x06;
pub(crate) const OCTET_STRING: u8 = 0x04;
pub(crate) const ENUMERATED: u8 = 0x0a;
pub(crate) const INTEGER: u8 = 0x02;
pub(crate) const GENERAL_STRING: u8 = 0x1b;

/// `[n]` context-specific, constructed.
pub(crate) const fn context(n: u8) -> u8 {
    0xa0 | n
}

/// `[APPLICATION n]`, constructed.
pub(crate) const fn application(n: u8) -> u8 {
    0x60 | n
}

/// Reads one TLV; `None` on a high tag number, an indefinite or oversized length, or
/// contents running past the input.
pub(crate) fn read_tlv(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let octets = rest.get(..n)?;
        let len = octets
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest.get(n..)?)
    };
    let value = rest.get(..len)?;
    Some((Tlv { tag, value }, rest.get(len..)?))
}

/// Reads one TLV and requires its tag.
pub(crate) fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (tlv, rest) = read_tlv(input)?;
    (tlv.tag == tag).then_some((tlv.value, rest))
}

/// The TLVs of a constructed value's contents, stopping at the first that does not parse;
/// at most `MAX_ITEMS`, so a crafted list cannot make us loop long.
pub(crate) fn items(mut input: &[u8]) -> impl Iterator<Item = Tlv<'_>> {
    const MAX_ITEMS: usize = 64;
    std::iter::from_fn(move || {
        let (tlv, rest) = read_tlv(input)?;
        input = rest;
        Some(tlv)
    })
    .take(MAX_ITEMS)
}

/// The contents of the `[n]` field of a SEQUENCE's contents.
pub(crate) fn field(seq: &[u8], n: u8) -> Option<&[u8]> {
    items(seq).find(|t| t.tag == context(n)).map(|t| t.value)
}

/// A small non-negative or negative INTEGER (up to 8 octets).
pub(crate) fn integer(value: &[u8]) -> Option<i64> {
    if value.is_empty() || value.len() > 8 {
        return None;
    }
    let negative = value.first().is_some_and(|&b| b & 0x80 != 0);
    let init: i64 = if negative { -1 } else { 0 };
    Some(value.iter().fold(init, |acc, &b| (acc << 8) | i64::from(b)))
}

/// Dotted text of an OID's contents (X.690 8.19); `None` when malformed.
pub(crate) fn oid_text(value: &[u8]) -> Option<String> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for (i, &b) in value.iter().enumerate() {
        if acc > (u64::MAX >> 7) {
            return None;
        }
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        } else if i + 1 == value.len() {
            return None;
        }
    }
    if arcs.is_empty() {
        return None;
    }
    Some(
        arcs.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("."),
    )
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lengths() {
        let (t, rest) = read_tlv(&[0x04, 0x02, 1, 2, 9]).unwrap();
        assert_eq!((t.tag, t.value, rest), (0x04, &[1u8, 2][..], &[9u8][..]));
        let mut long = vec![0x04, 0x82, 0x01, 0x00];
        long.extend_from_slice(&[0; 256]);
        assert_eq!(read_tlv(&long).unwrap().0.value.len(), 256);
        assert_eq!(read_tlv(&[0x04, 0x80]), None, "indefinite");
        assert_eq!(
            read_tlv(&[0x04, 0x85, 1, 1, 1, 1, 1]),
            None,
            "5 length octets"
        );
        assert_eq!(
            read_tlv(&[0x04, 0x84, 0xff, 0xff, 0xff, 0xff]),
            None,
            "past the input"
        );
        assert_eq!(read_tlv(&[0x1f, 0x01, 0x00]), None, "high tag number");
        for n in 0..long.len() {
            assert!(read_tlv(&long[..n]).is_none());
        }
    }

    #[test]
    fn oids_and_integers() {
        // 1.3.6.1.5.5.2 (SPNEGO)
        assert_eq!(
            oid_text(&[0x2b, 0x06, 0x01, 0x05, 0x05, 0x02]).unwrap(),
            "1.3.6.1.5.5.2"
        );
        // 1.2.840.113554.1.2.2 (Kerberos 5)
        assert_eq!(
            oid_text(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02]).unwrap(),
            "1.2.840.113554.1.2.2"
        );
        assert_eq!(oid_text(&[0x2a, 0x86]), None);
        assert_eq!(oid_text(&[]), None);
        assert_eq!(integer(&[0x05]), Some(5));
        assert_eq!(integer(&[0xff]), Some(-1));
        assert_eq!(integer(&[0x00, 0x80]), Some(128));
        assert_eq!(integer(&[]), None);
    }
}
