//! ICMP (RFC 792) and ICMPv6 (RFC 4443) error messages and the datagram they quote.

use std::net::IpAddr;

use super::ipv4::Ipv4Header;
use super::ipv6::{walk_extensions, Ipv6Header, HEADER_LEN as IPV6_HEADER_LEN};
use super::{read_u16, read_u32, read_u8, IcmpError, IcmpErrorKind, QuotedHeader, SkipReason, L4};

/// Type(1) code(1) checksum(2) and four type-specific bytes precede the quoted datagram in
/// every error message (RFC 792, RFC 4443 §3).
const HEADER_LEN: usize = 8;

fn v4_kind(ty: u8) -> Option<IcmpErrorKind> {
    Some(match ty {
        3 => IcmpErrorKind::DestinationUnreachable,
        4 => IcmpErrorKind::SourceQuench,
        5 => IcmpErrorKind::Redirect,
        11 => IcmpErrorKind::TimeExceeded,
        12 => IcmpErrorKind::ParameterProblem,
        _ => return None,
    })
}

/// ICMPv6 error types are 0..=127 (RFC 4443 §2.1); the Neighbor Discovery Redirect (137) is
/// informational and quotes the packet in an option, so it is not treated as an error.
fn v6_kind(ty: u8) -> Option<IcmpErrorKind> {
    Some(match ty {
        1 => IcmpErrorKind::DestinationUnreachable,
        2 => IcmpErrorKind::PacketTooBig,
        3 => IcmpErrorKind::TimeExceeded,
        4 => IcmpErrorKind::ParameterProblem,
        _ => return None,
    })
}

/// Decodes an ICMP (`v6` false) or ICMPv6 message of `wire_len` bytes, `buf` captured.
pub(crate) fn decode<'a>(buf: &'a [u8], wire_len: usize, v6: bool) -> Result<L4<'a>, SkipReason> {
    if wire_len < HEADER_LEN {
        return Err(SkipReason::Malformed);
    }
    if buf.len() < HEADER_LEN {
        return Err(SkipReason::Truncated);
    }
    let icmp_type = read_u8(buf, 0).unwrap_or(0);
    let code = read_u8(buf, 1).unwrap_or(0);
    let kind = if v6 {
        v6_kind(icmp_type)
    } else {
        v4_kind(icmp_type)
    };
    let Some(kind) = kind else {
        return Ok(L4::IcmpOther);
    };
    let quoted = buf.get(HEADER_LEN..).unwrap_or(&[]);
    let original = if v6 {
        quoted_v6(quoted)
    } else {
        quoted_v4(quoted)
    };
    Ok(L4::Icmp(IcmpError {
        v6,
        icmp_type,
        code,
        kind,
        original,
    }))
}

fn quoted_v4(buf: &[u8]) -> Option<QuotedHeader> {
    let ip = Ipv4Header::new_checked(buf).ok()?;
    let l4 = if ip.fragment_offset() == 0 {
        buf.get(ip.header_len()..).unwrap_or(&[])
    } else {
        &[]
    };
    Some(quoted_ports(
        IpAddr::V4(ip.src()),
        IpAddr::V4(ip.dst()),
        ip.protocol(),
        l4,
    ))
}

fn quoted_v6(buf: &[u8]) -> Option<QuotedHeader> {
    let ip = Ipv6Header::new_checked(buf).ok()?;
    let (src, dst) = (IpAddr::V6(ip.src()), IpAddr::V6(ip.dst()));
    // The quote is cut wherever the error's sender chose: treat its end as the wire end so
    // a cut extension header reads as "no ports" rather than an error.
    match walk_extensions(buf, IPV6_HEADER_LEN, ip.next_header(), buf.len()) {
        Ok(w) if w.fragment.is_none_or(|f| f.offset == 0) => Some(quoted_ports(
            src,
            dst,
            w.protocol,
            buf.get(w.offset..).unwrap_or(&[]),
        )),
        Ok(w) => Some(quoted_ports(src, dst, w.protocol, &[])),
        Err(_) => Some(quoted_ports(src, dst, ip.next_header(), &[])),
    }
}

/// Transports whose first four bytes are the source and destination ports: TCP, UDP,
/// DCCP (33), SCTP (132), UDP-Lite (136).
fn has_ports(protocol: u8) -> bool {
    matches!(protocol, 6 | 17 | 33 | 132 | 136)
}

fn quoted_ports(src: IpAddr, dst: IpAddr, protocol: u8, l4: &[u8]) -> QuotedHeader {
    let ports = has_ports(protocol);
    QuotedHeader {
        src,
        dst,
        protocol,
        src_port: read_u16(l4, 0).filter(|_| ports),
        dst_port: read_u16(l4, 2).filter(|_| ports),
        tcp_seq: read_u32(l4, 4).filter(|_| protocol == 6),
    }
}
