//! The UDP protocol parsers (SSRP, DNS) on real captures, read through the project's own
//! capture readers and decoder, with tshark as the oracle where it has a dissector. tshark has
//! none for SSRP, so those tests assert the values the captures are known to hold.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use tdsscope::capture;
use tdsscope::decode::{Decoded, Decoder, L4};
use tdsscope::limits::Limits;
use tdsscope::proto::dns::{parse_dns, RecordData};
use tdsscope::proto::ssrp::{parse_ssrp, SsrpMessage};

use crate::util::{shared_capture, tshark_by_frame, tshark_list, tshark_or_skip};

/// A UDP datagram of a capture: frame number, ports and payload.
struct Datagram {
    frame: u64,
    dst_port: u16,
    payload: Vec<u8>,
}

/// Every UDP datagram of `path` with either port in `ports`, decoded by tdsscope.
fn udp_datagrams(path: &Path, ports: &[u16]) -> Vec<Datagram> {
    let limits = Limits::default();
    let mut source = capture::open(path, 0, &limits).expect("open capture");
    let mut decoder = Decoder::new(&limits);
    let mut out = Vec::new();
    for _ in 0..1_000_000 {
        let Ok(Some(frame)) = source.next_frame() else {
            break;
        };
        if let Decoded::Packet(p) = decoder.decode(&frame) {
            if let L4::Udp(u) = p.l4 {
                if ports.contains(&u.src_port) || ports.contains(&u.dst_port) {
                    out.push(Datagram {
                        frame: p.frame.no,
                        dst_port: u.dst_port,
                        payload: u.payload.to_vec(),
                    });
                }
            }
        }
    }
    out
}

const DNS_CAPTURES: [&str; 3] = [
    "netmon2-ipv6-port2433_wswiki_FTPv6-1.cap",
    "pcapng-many-interfaces_wswiki_many_interfaces.pcapng",
    "tds-midstream-retrans_wswiki_startmenu_Dameware.pcap",
];

#[test]
fn dns_over_udp_matches_tshark() {
    if !tshark_or_skip("dns_over_udp_matches_tshark") {
        return;
    }
    let mut checked = 0;
    for name in DNS_CAPTURES {
        let path = shared_capture(name);
        let oracle = tshark_by_frame(
            &[],
            &path,
            "dns && udp",
            &[
                "dns.id",
                "dns.flags.response",
                "dns.flags.rcode",
                "dns.qry.name",
                "dns.qry.type",
                "dns.count.answers",
                "dns.resp.type",
                "dns.a",
                "dns.aaaa",
                "dns.ptr.domain_name",
                "dns.cname",
            ],
        );
        let ours = udp_datagrams(&path, &[53]);
        assert_eq!(
            ours.iter().map(|d| d.frame).collect::<Vec<_>>(),
            oracle.keys().copied().collect::<Vec<_>>(),
            "{name}: DNS frames"
        );
        for d in &ours {
            let t = &oracle[&d.frame];
            let at = format!("{name} frame {}", d.frame);
            let m = parse_dns(&d.payload).unwrap_or_else(|e| panic!("{at}: {e}"));
            assert!(!m.truncated_records, "{at}");
            assert_eq!(format!("0x{:04x}", m.id), t[0], "{at}: id");
            assert_eq!(m.is_response, t[1] == "1" || t[1] == "True", "{at}: QR");
            if m.is_response {
                assert_eq!(u8::from(m.rcode).to_string(), t[2], "{at}: rcode");
            }
            let qnames: Vec<_> = m.questions.iter().map(|q| q.name.clone()).collect();
            assert_eq!(qnames, tshark_list(&t[3]), "{at}: qry.name");
            let qtypes: Vec<_> = m.questions.iter().map(|q| q.qtype.to_string()).collect();
            assert_eq!(qtypes, tshark_list(&t[4]), "{at}: qry.type");
            assert_eq!(m.answers.len().to_string(), t[5], "{at}: answer count");
            // dns.resp.type lists every section; the answers come first.
            let rtypes: Vec<_> = m.answers.iter().map(|a| a.rtype.to_string()).collect();
            assert_eq!(
                rtypes[..],
                tshark_list(&t[6])[..m.answers.len()],
                "{at}: answer types"
            );
            // dns.a / dns.aaaa / dns.ptr / dns.cname also hold other sections' records.
            for a in &m.answers {
                let (field, value) = match &a.data {
                    RecordData::A(ip) => (7, ip.to_string()),
                    RecordData::Aaaa(ip) => (8, IpAddr::V6(*ip).to_string()),
                    RecordData::Ptr(n) => (9, n.clone()),
                    RecordData::Cname(n) => (10, n.clone()),
                    _ => continue,
                };
                assert!(
                    tshark_list(&t[field]).contains(&value),
                    "{at}: {value} not in {}",
                    t[field]
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 100, "only {checked} DNS messages checked");
}

#[test]
fn slammer_is_an_oversized_instance_request() {
    let ours = udp_datagrams(
        &shared_capture("ssrp-slammer-overflow_wswiki_slammer.pcap"),
        &[1434],
    );
    assert_eq!(ours.len(), 1);
    let d = &ours[0];
    assert_eq!((d.dst_port, d.payload.len()), (1434, 376));
    match parse_ssrp(&d.payload).unwrap() {
        SsrpMessage::UcastInst {
            instance,
            nul_terminated,
            oversized,
        } => {
            assert_eq!(instance.len(), 375);
            assert_eq!(&instance[..4], &[1, 1, 1, 1]);
            assert!(!nul_terminated, "the worm's payload has no NUL");
            assert!(oversized);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn netmon_browser_broadcast() {
    let ours = udp_datagrams(
        &shared_capture("netmon2-ssrp-bcast_wswiki_netlog5.cap"),
        &[1434],
    );
    let frames: Vec<_> = ours.iter().map(|d| d.frame).collect();
    assert_eq!(frames, [731]);
    assert_eq!(
        parse_ssrp(&ours[0].payload).unwrap(),
        SsrpMessage::BcastEx { extra: &[] }
    );
}

/// The lab's generated SSRP captures: in `tests/captures/` once merged, else beside this
/// worktree in the lab helper's. Missing captures skip (they are generated, not shipped).
fn lab_capture(name: &str) -> Option<PathBuf> {
    [
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures"),
        PathBuf::from("/work/wt/lab/tests/captures"),
    ]
    .into_iter()
    .map(|d| d.join(name))
    .find(|p| p.is_file())
}

#[test]
fn lab_ssrp_captures() {
    type Wanted = fn(&SsrpMessage) -> bool;
    let cases: [(&str, Wanted); 4] = [
        ("ssrp-answered-port-14330.pcap", |m| {
            matches!(m, SsrpMessage::Response(r) if r.instances.len() == 1
                && r.instances[0].tcp_port == Some(14330)
                && r.instances[0].instance_name == "LABINST" && r.malformed_at.is_none())
        }),
        ("ssrp-dac.pcap", |m| {
            matches!(
                m,
                SsrpMessage::DacResponse {
                    version: 1,
                    port: 1434
                }
            )
        }),
        ("ssrp-oversized-request.pcap", |m| {
            matches!(
                m,
                SsrpMessage::UcastInst {
                    oversized: true,
                    nul_terminated: true,
                    ..
                }
            )
        }),
        ("ssrp-port-unreachable.pcap", |m| {
            matches!(m, SsrpMessage::UcastEx { extra: [] })
        }),
    ];
    for (name, wanted) in cases {
        // The lab's captures are committed: a missing one is a failure, not a skip.
        let path = lab_capture(name).unwrap_or_else(|| panic!("{name}: lab capture missing"));
        let msgs: Vec<_> = udp_datagrams(&path, &[1434]);
        assert!(!msgs.is_empty(), "{name}");
        for d in &msgs {
            let m = parse_ssrp(&d.payload).unwrap_or_else(|e| panic!("{name} {}: {e}", d.frame));
            let is_request = d.dst_port == 1434;
            assert_eq!(
                is_request,
                !matches!(
                    m,
                    SsrpMessage::Response(_) | SsrpMessage::DacResponse { .. }
                ),
                "{name} frame {}: {m:?}",
                d.frame
            );
        }
        assert!(
            msgs.iter()
                .any(|d| wanted(&parse_ssrp(&d.payload).unwrap())),
            "{name}: expected message not found"
        );
    }
}
