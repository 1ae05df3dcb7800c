//! Link-layer headers: where the IP packet starts in a frame, for each link type we read.
//!
//! Written by hand rather than with etherparse: etherparse has no SLL2 and no BSD NULL/LOOP,
//! and for Ethernet/SLL we only need the EtherType walk, which is a handful of bounds-checked
//! reads (see `decoder.rs` for the measurement behind the choice).

use super::{read_u16, SkipReason};
use crate::capture::LinkType;

/// Which network protocol the link layer says follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NetProto {
    Ipv4,
    Ipv6,
    /// Raw IP link types that do not say: the version nibble decides.
    ByVersion,
}

/// Where the network layer starts in the frame and what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NetStart {
    pub offset: usize,
    pub proto: NetProto,
}

/// IEEE 802 EtherTypes we act on (IEEE Registration Authority EtherType registry).
mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const IPV6: u16 = 0x86dd;
    /// IEEE 802.1Q customer VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// IEEE 802.1ad service VLAN tag (QinQ outer tag).
    pub const QINQ: u16 = 0x88a8;
    /// Pre-standard QinQ outer tag still sent by some switches.
    pub const QINQ_OLD: u16 = 0x9100;
    /// Values below this are IEEE 802.3 length fields, not types (IEEE 802.3 §3.2.6).
    pub const MIN_TYPE: u16 = 0x0600;
}

/// Stacked VLAN tags we walk before giving up: real networks use one or two.
const MAX_VLAN_TAGS: usize = 8;

/// Ethernet II header (IEEE 802.3 §3.1.1): destination(6) source(6) type(2).
mod ethernet {
    pub const TYPE: usize = 12;
    pub const HEADER_LEN: usize = 14;
}

/// Linux cooked capture v1, LINKTYPE_LINUX_SLL (113): packet type(2) ARPHRD type(2)
/// address length(2) address(8) protocol(2).
mod sll {
    pub const PROTOCOL: usize = 14;
    pub const HEADER_LEN: usize = 16;
}

/// Linux cooked capture v2, LINKTYPE_LINUX_SLL2 (276): protocol(2) reserved(2)
/// interface index(4) ARPHRD type(2) packet type(1) address length(1) address(8).
mod sll2 {
    pub const PROTOCOL: usize = 0;
    pub const HEADER_LEN: usize = 20;
}

/// BSD loopback encapsulation, LINKTYPE_NULL (0) and LINKTYPE_LOOP (108): a 4-byte address
/// family, in the capturing host's byte order for NULL and network order for LOOP.
mod null {
    pub const HEADER_LEN: usize = 4;
    pub const AF_INET: u32 = 2;
    /// AF_INET6 is 24 on NetBSD/OpenBSD, 28 on FreeBSD/DragonFly, 30 on macOS.
    pub const AF_INET6: [u32; 3] = [24, 28, 30];
}

/// Finds the network layer of a frame with link type `link`.
pub(crate) fn net_start(link: LinkType, data: &[u8]) -> Result<NetStart, SkipReason> {
    match link {
        LinkType::ETHERNET => {
            let ty = read_u16(data, ethernet::TYPE).ok_or(SkipReason::Truncated)?;
            walk_ethertype(data, ty, ethernet::HEADER_LEN)
        }
        LinkType::LINUX_SLL => {
            let ty = read_u16(data, sll::PROTOCOL).ok_or(SkipReason::Truncated)?;
            walk_ethertype(data, ty, sll::HEADER_LEN)
        }
        LinkType::LINUX_SLL2 => {
            if data.len() < sll2::HEADER_LEN {
                return Err(SkipReason::Truncated);
            }
            let ty = read_u16(data, sll2::PROTOCOL).ok_or(SkipReason::Truncated)?;
            walk_ethertype(data, ty, sll2::HEADER_LEN)
        }
        LinkType::NULL | LinkType::LOOP => {
            let bytes: [u8; 4] = data
                .get(..null::HEADER_LEN)
                .and_then(|b| b.try_into().ok())
                .ok_or(SkipReason::Truncated)?;
            let family = if link == LinkType::LOOP {
                u32::from_be_bytes(bytes)
            } else {
                // The writer's byte order is unknown; families are small numbers, so the
                // order that gives a value below 65536 is the right one.
                let le = u32::from_le_bytes(bytes);
                if le > 0xffff {
                    le.swap_bytes()
                } else {
                    le
                }
            };
            let proto = if family == null::AF_INET {
                NetProto::Ipv4
            } else if null::AF_INET6.contains(&family) {
                NetProto::Ipv6
            } else {
                return Err(SkipReason::NotIp);
            };
            Ok(NetStart {
                offset: null::HEADER_LEN,
                proto,
            })
        }
        LinkType::RAW | LinkType::RAW_12 | LinkType::RAW_14 => Ok(NetStart {
            offset: 0,
            proto: NetProto::ByVersion,
        }),
        LinkType::IPV4 => Ok(NetStart {
            offset: 0,
            proto: NetProto::Ipv4,
        }),
        LinkType::IPV6 => Ok(NetStart {
            offset: 0,
            proto: NetProto::Ipv6,
        }),
        _ => Err(SkipReason::UnsupportedLink),
    }
}

/// Follows an EtherType through VLAN tags (IEEE 802.1Q §9.6: TCI(2) type(2)) to IP.
fn walk_ethertype(data: &[u8], mut ty: u16, mut offset: usize) -> Result<NetStart, SkipReason> {
    for _ in 0..=MAX_VLAN_TAGS {
        match ty {
            ethertype::IPV4 => {
                return Ok(NetStart {
                    offset,
                    proto: NetProto::Ipv4,
                })
            }
            ethertype::IPV6 => {
                return Ok(NetStart {
                    offset,
                    proto: NetProto::Ipv6,
                })
            }
            ethertype::VLAN | ethertype::QINQ | ethertype::QINQ_OLD => {
                ty = read_u16(data, offset + 2).ok_or(SkipReason::Truncated)?;
                offset += 4;
            }
            t if t < ethertype::MIN_TYPE => return Err(SkipReason::NotIp),
            _ => return Err(SkipReason::NotIp),
        }
    }
    Err(SkipReason::Malformed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, clippy::unwrap_used)]
    use super::*;

    const ETH_VLAN2: [u8; 22] = [
        /* dst */ 0, 1, 2, 3, 4, 5, /* src */ 6, 7, 8, 9, 10, 11,
        /* 802.1ad */ 0x88, 0xa8, /* TCI */ 0x00, 0x64, /* 802.1Q */ 0x81, 0x00,
        /* TCI */ 0x00, 0x0a, /* type IPv6 */ 0x86, 0xdd,
    ];

    #[test]
    fn ethernet_with_stacked_vlans() {
        let s = net_start(LinkType::ETHERNET, &ETH_VLAN2).unwrap();
        assert_eq!(
            s,
            NetStart {
                offset: 22,
                proto: NetProto::Ipv6
            }
        );
        for n in 0..ETH_VLAN2.len() {
            assert_eq!(
                net_start(LinkType::ETHERNET, &ETH_VLAN2[..n]),
                Err(SkipReason::Truncated)
            );
        }
    }

    #[test]
    fn ethernet_8023_length_and_arp_are_not_ip() {
        let mut f = ETH_VLAN2;
        f[12] = 0x00;
        f[13] = 0x40; // an 802.3 length
        assert_eq!(net_start(LinkType::ETHERNET, &f), Err(SkipReason::NotIp));
        f[12] = 0x08;
        f[13] = 0x06; // ARP
        assert_eq!(net_start(LinkType::ETHERNET, &f), Err(SkipReason::NotIp));
    }

    #[test]
    fn endless_vlan_stack_is_malformed() {
        let mut f = vec![0u8; 12];
        for _ in 0..20 {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x01]);
        }
        assert_eq!(
            net_start(LinkType::ETHERNET, &f),
            Err(SkipReason::Malformed)
        );
    }

    #[test]
    fn null_detects_byte_order() {
        assert_eq!(
            net_start(LinkType::NULL, &[2, 0, 0, 0]).unwrap().proto,
            NetProto::Ipv4
        );
        assert_eq!(
            net_start(LinkType::NULL, &[0, 0, 0, 2]).unwrap().proto,
            NetProto::Ipv4
        );
        assert_eq!(
            net_start(LinkType::NULL, &[30, 0, 0, 0]).unwrap().proto,
            NetProto::Ipv6
        );
        assert_eq!(
            net_start(LinkType::NULL, &[0, 0, 0, 24]).unwrap().proto,
            NetProto::Ipv6
        );
        assert_eq!(
            net_start(LinkType::NULL, &[7, 0, 0, 0]),
            Err(SkipReason::NotIp)
        );
        assert_eq!(
            net_start(LinkType::LOOP, &[0, 0, 0, 28]).unwrap().proto,
            NetProto::Ipv6
        );
        // LOOP is always network order: a little-endian 2 is family 0x02000000.
        assert_eq!(
            net_start(LinkType::LOOP, &[2, 0, 0, 0]),
            Err(SkipReason::NotIp)
        );
        assert_eq!(
            net_start(LinkType::NULL, &[2, 0, 0]),
            Err(SkipReason::Truncated)
        );
    }

    #[test]
    fn unsupported_links() {
        assert_eq!(
            net_start(LinkType(9), &[0; 40]),
            Err(SkipReason::UnsupportedLink)
        ); // PPP
        assert_eq!(
            net_start(LinkType(105), &[0; 40]),
            Err(SkipReason::UnsupportedLink)
        );
    }
}
