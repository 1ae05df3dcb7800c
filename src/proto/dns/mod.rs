//! DNS (RFC 1035 4.1) over UDP and TCP: the header, the questions and the answers a
//! connection diagnosis needs (A, AAAA, CNAME, SRV, PTR).
//!
//! ```text
//! ID (2) | QR Opcode(4) AA TC RD | RA Z AD CD RCODE(4) | QDCOUNT ANCOUNT NSCOUNT ARCOUNT (2 each)
//! questions: QNAME QTYPE (2) QCLASS (2)
//! records:   NAME TYPE (2) CLASS (2) TTL (4) RDLENGTH (2) RDATA
//! ```
//!
//! The records are decoded by `simple-dns`, which follows name pointers only backwards (so
//! it cannot loop) and bounds names to 255 bytes. It rejects a whole message when any record
//! is cut or odd, so on failure the header and the questions are read here by hand and the
//! message is flagged `truncated_records`: a snaplen-cut answer still says which name was
//! asked for and whether it failed.
//!
//! Over TCP each message is preceded by a 2-byte big-endian length (RFC 1035 4.2.2,
//! RFC 7766 8): [`split_tcp_message`].

use std::net::{Ipv4Addr, Ipv6Addr};

use simple_dns::rdata::RData;

use crate::proto::ParseError;

/// The fixed header (RFC 1035 4.1.1).
pub const HEADER_LEN: usize = 12;

/// A name is at most 255 bytes on the wire (RFC 1035 2.3.4), so at most 127 labels.
const MAX_NAME_BYTES: usize = 255;
const MAX_LABEL_BYTES: usize = 63;

/// Pointers followed per name; each must go backwards, so this only bounds the work on a
/// message built to chain hundreds of them.
const MAX_POINTERS: usize = 64;

/// Smallest question (root name, type, class) and resource record (root name, type, class,
/// TTL, empty RDATA): counts that cannot fit the message are not believed.
const MIN_QUESTION_BYTES: usize = 5;
const MIN_RECORD_BYTES: usize = 11;

open_enum! {
    /// RCODE (RFC 1035 4.1.1, RFC 6895 2.3), the 4 bits of the header.
    pub enum Rcode(u8) {
        NoError = 0,
        FormErr = 1,
        ServFail = 2,
        NxDomain = 3,
        NotImp = 4,
        Refused = 5,
    }
}

/// Record types decoded into [`RecordData`] (RFC 1035 3.2.2, RFC 3596, RFC 2782).
pub mod rtype {
    pub const A: u16 = 1;
    pub const CNAME: u16 = 5;
    pub const PTR: u16 = 12;
    pub const AAAA: u16 = 28;
    pub const SRV: u16 = 33;
}

/// A DNS message: header fields, questions, and the answer section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsMessage {
    pub id: u16,
    /// QR: a response.
    pub is_response: bool,
    pub opcode: u8,
    /// RCODE from the header (4 bits, without an EDNS extension).
    pub rcode: Rcode,
    /// TC: the server cut the answer to fit UDP; the client should retry over TCP.
    pub tc: bool,
    pub questions: Vec<Question>,
    pub answers: Vec<Answer>,
    /// The records could not all be decoded (cut by the snaplen, or one is malformed): the
    /// header and the questions read are still right, `answers` is empty.
    pub truncated_records: bool,
}

/// A question (RFC 1035 4.1.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    /// Dotted, without the trailing dot ("" for the root); `.` and `\` inside a label are
    /// escaped with `\`.
    pub name: String,
    pub qtype: u16,
}

/// A record of the answer section (RFC 1035 4.1.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub name: String,
    pub rtype: u16,
    pub ttl: u32,
    pub data: RecordData,
}

/// RDATA of the types a connection diagnosis follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Ptr(String),
    /// Any other type (NS, SOA, TXT, OPT …): `rtype` says which.
    Other,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    match b.get(at..at.checked_add(2)?)? {
        [hi, lo] => Some(u16::from_be_bytes([*hi, *lo])),
        _ => None,
    }
}

/// Splits one DNS-over-TCP message off the front of a stream: `(message, rest)`.
pub fn split_tcp_message(stream: &[u8]) -> Result<(&[u8], &[u8]), ParseError> {
    let len = usize::from(be16(stream, 0).ok_or(ParseError::Incomplete {
        needed: Some(2 - stream.len().min(2)),
    })?);
    if len < HEADER_LEN {
        return Err(ParseError::Malformed {
            what: "DNS over TCP length shorter than a header",
            at: 0,
        });
    }
    let body = stream.get(2..).unwrap_or_default();
    match (body.get(..len), body.get(len..)) {
        (Some(message), Some(rest)) => Ok((message, rest)),
        _ => Err(ParseError::Incomplete {
            needed: Some(len.saturating_sub(body.len())),
        }),
    }
}

/// Reads a (possibly compressed) name starting at `at`: `(name, offset after it)`.
/// Pointers must point before the label that holds them (RFC 1035 4.1.4 "a prior
/// occurrence"), which rules out loops; labels and total length are bounded as the RFC says.
fn read_name(msg: &[u8], at: usize) -> Result<(String, usize), ParseError> {
    let bad = |what| ParseError::Malformed { what, at };
    let mut name = String::new();
    let mut pos = at;
    let mut end = None;
    let mut wire_len = 0usize;
    let mut pointers = 0usize;
    loop {
        let len = *msg
            .get(pos)
            .ok_or(ParseError::Incomplete { needed: None })?;
        match len {
            0 => return Ok((name, end.unwrap_or(pos + 1))),
            l if l & 0xC0 == 0xC0 => {
                let target = usize::from(
                    be16(msg, pos).ok_or(ParseError::Incomplete { needed: Some(1) })? & 0x3FFF,
                );
                if target >= pos {
                    return Err(bad("DNS name pointer not pointing backwards"));
                }
                pointers += 1;
                if pointers > MAX_POINTERS {
                    return Err(bad("DNS name with too many pointers"));
                }
                end.get_or_insert(pos + 2);
                pos = target;
            }
            l if usize::from(l) <= MAX_LABEL_BYTES => {
                let label = msg
                    .get(pos + 1..pos + 1 + usize::from(l))
                    .ok_or(ParseError::Incomplete { needed: None })?;
                wire_len += 1 + label.len();
                if wire_len > MAX_NAME_BYTES {
                    return Err(bad("DNS name longer than 255 bytes"));
                }
                if !name.is_empty() {
                    name.push('.');
                }
                for c in String::from_utf8_lossy(label).chars() {
                    if c == '.' || c == '\\' {
                        name.push('\\');
                    }
                    name.push(c);
                }
                pos += 1 + label.len();
            }
            _ => return Err(bad("DNS label type 0x40/0x80 (obsolete or reserved)")),
        }
    }
}

/// Header and questions read by hand, for messages `simple-dns` refuses.
fn questions_by_hand(msg: &[u8], count: u16) -> (Vec<Question>, bool) {
    let mut questions = Vec::new();
    let mut at = HEADER_LEN;
    for _ in 0..count {
        let Ok((name, after)) = read_name(msg, at) else {
            return (questions, false);
        };
        let Some(qtype) = be16(msg, after) else {
            return (questions, false);
        };
        if msg.get(after + 2..after + 4).is_none() {
            return (questions, false);
        }
        questions.push(Question { name, qtype });
        at = after + 4;
    }
    (questions, true)
}

fn record_data(rdata: &RData<'_>) -> RecordData {
    match rdata {
        RData::A(a) => RecordData::A(Ipv4Addr::from(a.address)),
        RData::AAAA(a) => RecordData::Aaaa(Ipv6Addr::from(a.address)),
        RData::CNAME(c) => RecordData::Cname(c.0.to_string()),
        RData::PTR(p) => RecordData::Ptr(p.0.to_string()),
        RData::SRV(s) => RecordData::Srv {
            priority: s.priority,
            weight: s.weight,
            port: s.port,
            target: s.target.to_string(),
        },
        _ => RecordData::Other,
    }
}

/// Parses one DNS message (a UDP payload, or one message from [`split_tcp_message`]).
/// Errors only when the 12-byte header is not all there.
pub fn parse_dns(msg: &[u8]) -> Result<DnsMessage, ParseError> {
    let header = msg.get(..HEADER_LEN).ok_or(ParseError::Incomplete {
        needed: Some(HEADER_LEN.saturating_sub(msg.len())),
    })?;
    let word = |i: usize| be16(header, i).unwrap_or(0);
    let (id, flags) = (word(0), word(2));
    let counts = [word(4), word(6), word(8), word(10)];
    let mut out = DnsMessage {
        id,
        is_response: flags & 0x8000 != 0,
        opcode: ((flags >> 11) & 0x0F) as u8,
        rcode: Rcode::from((flags & 0x0F) as u8),
        tc: flags & 0x0200 != 0,
        questions: Vec::new(),
        answers: Vec::new(),
        truncated_records: false,
    };
    // simple-dns reserves vectors by the header's counts: only believe counts that fit.
    let least = usize::from(counts[0]) * MIN_QUESTION_BYTES
        + counts[1..].iter().map(|&c| usize::from(c)).sum::<usize>() * MIN_RECORD_BYTES;
    let packet = if least <= msg.len() - HEADER_LEN {
        simple_dns::Packet::parse(msg).ok()
    } else {
        None
    };
    match packet {
        Some(p) => {
            out.questions = p
                .questions
                .iter()
                .map(|q| Question {
                    name: q.qname.to_string(),
                    qtype: u16::from(q.qtype),
                })
                .collect();
            out.answers = p
                .answers
                .iter()
                .map(|rr| Answer {
                    name: rr.name.to_string(),
                    rtype: u16::from(rr.rdata.type_code()),
                    ttl: rr.ttl,
                    data: record_data(&rr.rdata),
                })
                .collect();
        }
        None => {
            let (questions, _) = questions_by_hand(msg, counts[0]);
            out.questions = questions;
            out.truncated_records = true;
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    /// A response for db.corp.example with one record of each decoded type, names
    /// compressed with pointers as servers write them.
    #[rustfmt::skip]
    const RESPONSE: [u8; 164] = [
        0x12, 0x34, /* id */ 0x81, 0x80, /* QR, RD, RA, NOERROR */
        0x00, 0x01, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, /* 1 question, 5 answers */
        /* 12: question db.corp.example ("corp" at 15) A IN */
        2, b'd', b'b', 4, b'c', b'o', b'r', b'p', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0,
        0x00, 0x01, 0x00, 0x01,
        /* 33: db.corp.example CNAME sql01.corp.example (at 45), TTL 3600 */
        0xc0, 0x0c, 0x00, 0x05, 0x00, 0x01, 0x00, 0x00, 0x0e, 0x10, 0x00, 0x08,
        5, b's', b'q', b'l', b'0', b'1', 0xc0, 0x0f,
        /* 53: sql01.corp.example A 10.0.0.5, TTL 60 */
        0xc0, 0x2d, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x04, 10, 0, 0, 5,
        /* 69: sql01.corp.example AAAA fd00::5 */
        0xc0, 0x2d, 0x00, 0x1c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x10,
        0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5,
        /* 97: _mssql._tcp.corp.example SRV 0 5 1433 sql01.corp.example, TTL 600 */
        6, b'_', b'm', b's', b's', b'q', b'l', 4, b'_', b't', b'c', b'p', 0xc0, 0x0f,
        0x00, 0x21, 0x00, 0x01, 0x00, 0x00, 0x02, 0x58, 0x00, 0x08,
        0x00, 0x00, 0x00, 0x05, 0x05, 0x99, 0xc0, 0x2d,
        /* 129: 5.0.0.10.in-addr.arpa PTR sql01.corp.example */
        1, b'5', 1, b'0', 1, b'0', 2, b'1', b'0', 7, b'i', b'n', b'-', b'a', b'd', b'd', b'r',
        4, b'a', b'r', b'p', b'a', 0,
        0x00, 0x0c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x02, 0xc0, 0x2d,
    ];

    #[test]
    fn response_field_by_field() {
        let m = parse_dns(&RESPONSE).unwrap();
        assert_eq!(m.id, 0x1234);
        assert!(m.is_response);
        assert_eq!((m.opcode, m.rcode, m.tc), (0, Rcode::NoError, false));
        assert!(!m.truncated_records);
        assert_eq!(
            m.questions,
            vec![Question {
                name: "db.corp.example".into(),
                qtype: rtype::A
            }]
        );
        let data: Vec<_> = m.answers.iter().map(|a| a.data.clone()).collect();
        assert_eq!(
            data,
            vec![
                RecordData::Cname("sql01.corp.example".into()),
                RecordData::A(Ipv4Addr::new(10, 0, 0, 5)),
                RecordData::Aaaa("fd00::5".parse().unwrap()),
                RecordData::Srv {
                    priority: 0,
                    weight: 5,
                    port: 1433,
                    target: "sql01.corp.example".into()
                },
                RecordData::Ptr("sql01.corp.example".into()),
            ]
        );
        assert_eq!(m.answers[0].ttl, 3600);
        assert_eq!(m.answers[3].name, "_mssql._tcp.corp.example");
        assert_eq!(m.answers[3].rtype, rtype::SRV);
        assert_eq!(m.answers[4].name, "5.0.0.10.in-addr.arpa");
    }

    #[test]
    fn cut_records_keep_header_and_question() {
        for n in HEADER_LEN..RESPONSE.len() {
            let m = parse_dns(&RESPONSE[..n]).unwrap();
            assert_eq!(m.id, 0x1234);
            assert!(m.truncated_records, "cut at {n}");
            assert!(m.answers.is_empty());
            let want = usize::from(n >= 33);
            assert_eq!(m.questions.len(), want, "cut at {n}");
        }
        for n in 0..HEADER_LEN {
            assert!(matches!(
                parse_dns(&RESPONSE[..n]),
                Err(ParseError::Incomplete { .. })
            ));
        }
    }

    #[test]
    fn nxdomain_query_flags() {
        let mut b = RESPONSE;
        b[3] = 0x83; // RA, NXDOMAIN
        b[2] |= 0x02; // TC
        let m = parse_dns(&b).unwrap();
        assert_eq!(m.rcode, Rcode::NxDomain);
        assert!(m.tc);
        b[3] = 0x89;
        assert_eq!(parse_dns(&b).unwrap().rcode, Rcode::Unknown(9));
    }

    #[test]
    fn pointer_loops_and_forward_pointers_are_refused() {
        // A name that points at itself, and one that points forwards.
        for (ptr, what) in [(12u8, "self"), (20, "forward")] {
            let mut b = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, ptr, 0, 1, 0, 1];
            b.extend_from_slice(&[0; 8]);
            let m = parse_dns(&b).unwrap();
            assert!(m.truncated_records, "{what}");
            assert!(m.questions.is_empty(), "{what}");
            assert!(read_name(&b, 12).is_err(), "{what}");
        }
    }

    #[test]
    fn names_are_bounded() {
        // 5 labels of 63 bytes = 320 bytes > 255.
        let mut b = vec![0u8; 12];
        for _ in 0..5 {
            b.push(63);
            b.extend_from_slice(&[b'a'; 63]);
        }
        b.push(0);
        assert!(matches!(
            read_name(&b, 12),
            Err(ParseError::Malformed { .. })
        ));
        // A reserved label type.
        assert!(read_name(&[0x40, 0], 0).is_err());
        // Escapes: a dot inside a label.
        let (name, end) = read_name(b"\x03a.b\x01c\x00", 0).unwrap();
        assert_eq!((name.as_str(), end), ("a\\.b.c", 7));
    }

    #[test]
    fn counts_larger_than_the_message_are_not_believed() {
        let mut b = RESPONSE;
        b[6] = 0xff; // 65 285 answers in 164 bytes
        let m = parse_dns(&b).unwrap();
        assert!(m.truncated_records);
        assert_eq!(m.questions.len(), 1);
    }

    #[test]
    fn tcp_framing() {
        let mut stream = vec![0x00, RESPONSE.len() as u8];
        stream.extend_from_slice(&RESPONSE);
        stream.extend_from_slice(&[0x00, 0x20, 0x12]);
        let (msg, rest) = split_tcp_message(&stream).unwrap();
        assert_eq!(msg, &RESPONSE[..]);
        assert_eq!(
            split_tcp_message(rest),
            Err(ParseError::Incomplete { needed: Some(31) })
        );
        assert_eq!(
            split_tcp_message(&[0x00]),
            Err(ParseError::Incomplete { needed: Some(1) })
        );
        assert!(matches!(
            split_tcp_message(&[0x00, 0x03, 1, 2, 3]),
            Err(ParseError::Malformed { .. })
        ));
        for n in 0..stream.len() {
            let _ = split_tcp_message(&stream[..n]);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse_dns(&data);
            if let Ok((m, rest)) = split_tcp_message(&data) {
                proptest::prop_assert_eq!(m.len() + rest.len() + 2, data.len());
            }
        }

        #[test]
        fn mutated_responses_never_panic(at in 0usize..164, v in proptest::num::u8::ANY) {
            let mut b = RESPONSE;
            b[at] = v;
            let m = parse_dns(&b).unwrap();
            let qdcount = usize::from(u16::from_be_bytes([b[4], b[5]]));
            proptest::prop_assert!(m.questions.len() <= qdcount);
        }
    }
}
