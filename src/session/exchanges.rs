//! UDP request/response exchanges: SQL Browser (SSRP, UDP 1434), DNS (53) and Kerberos (88).
//! DNS and Kerberos over TCP are read from the connection's stream by `tcp_exchanges`.
//!
//! Requests are matched to responses by addresses and ports (DNS also by id); a request
//! repeated by the same client for the same name or instance within [`RETRY_WINDOW_NS`] is a
//! retry of the same exchange, even from a new source port (SqlClient opens a new socket for
//! each SSRP retry). Time comes from packet timestamps only: an exchange settles when nothing
//! happened on it for [`SETTLE_NS`] of capture time, or at the end of the capture.

use std::net::{IpAddr, SocketAddr};

use crate::decode::{IcmpErrorKind, Packet, L4};
use crate::facts::{
    ExchangeFacts, ExchangeProtocol, ExchangeRequest, ExchangeResponse, ExchangeResponseBody,
    ExchangeTransport, KerberosTicketFacts, SsrpAnnouncement, SsrpInstanceFacts,
};
use crate::proto::dns::parse_dns;
use crate::proto::kerberos::{parse_krb, KrbMessage};
use crate::proto::ssrp::{parse_ssrp, SsrpMessage};
use crate::tcp::Mark;
use crate::time::Timestamp;

pub const SSRP_PORT: u16 = 1434;
pub const DNS_PORT: u16 = 53;
pub const KERBEROS_PORT: u16 = 88;

/// A request repeated within this time is a retry: clients retry within a second or two
/// (SqlClient's SSRP retries span about 3 s, resolvers 1-5 s).
pub const RETRY_WINDOW_NS: i64 = 5_000_000_000;
/// Capture time without activity after which an exchange is settled (an unanswered one
/// becomes "no response"): longer than any client waits for a Browser or resolver answer.
pub const SETTLE_NS: i64 = 5_000_000_000;
/// Exchanges waiting to settle; beyond it the oldest is settled early (memory stays bounded
/// on a capture full of DNS traffic).
pub const MAX_PENDING: usize = 1024;
/// Attempts remembered per exchange (counted beyond).
const MAX_ATTEMPTS: usize = 16;
/// Responses kept per exchange: a broadcast may draw one per server on the segment.
const MAX_RESPONSES: usize = 32;
/// ICMP type 3 code 3 (RFC 792) and ICMPv6 type 1 code 4 (RFC 4443): port unreachable.
const ICMP_PORT_UNREACHABLE: (u8, u8) = (3, 3);
const ICMP6_PORT_UNREACHABLE: (u8, u8) = (1, 4);

/// What the tracker hands on, in capture order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExchangeEvent {
    /// An SSRP answer as it arrives, so a TCP connection right after it can be checked.
    SsrpAnswer(SsrpAnnouncement),
    /// A KDC's answer to a TGS-REQ as it arrives (over UDP or TCP), so the SQL connection
    /// right after it can be linked to it before the exchange settles.
    KerberosTicket(KerberosTicketAnswer),
    /// A settled exchange.
    Done(ExchangeFacts),
}

/// A TGS-REQ's answer and who asked, for linking to the SQL connection that follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KerberosTicketAnswer {
    pub client: IpAddr,
    pub ticket: KerberosTicketFacts,
}

/// The [`ExchangeEvent::KerberosTicket`] for a response to a TGS-REQ, if it is one.
pub(crate) fn kerberos_ticket(
    request: &ExchangeRequest,
    first: Mark,
    client: IpAddr,
    transport: ExchangeTransport,
    answered: Mark,
    body: &ExchangeResponseBody,
) -> Option<ExchangeEvent> {
    let ExchangeRequest::Kerberos {
        message: "TGS-REQ",
        sname,
        realm,
        ..
    } = request
    else {
        return None;
    };
    let ExchangeResponseBody::Kerberos { error, .. } = body else {
        return None;
    };
    Some(ExchangeEvent::KerberosTicket(KerberosTicketAnswer {
        client,
        ticket: KerberosTicketFacts {
            at: first,
            spn: sname.clone(),
            realm: realm.clone(),
            answered,
            error: *error,
            transport,
        },
    }))
}

struct Attempt {
    at: Mark,
    client_port: u16,
    dns_id: Option<u16>,
}

struct Pending {
    facts: ExchangeFacts,
    attempts: Vec<Attempt>,
    /// Attempts per query type (one entry, type 0, for SSRP and Kerberos).
    per_type: Vec<(u16, u32)>,
    last_activity: Timestamp,
}

/// Matches UDP requests to responses; feed it every UDP and ICMP packet in capture order.
#[derive(Default)]
pub struct ExchangeTracker {
    pending: Vec<Pending>,
    out: Vec<ExchangeEvent>,
    /// Capture time at which the oldest pending exchange may settle.
    next_deadline: Option<Timestamp>,
    /// Exchanges settled early because [`MAX_PENDING`] was reached.
    pub evicted: u64,
    /// The latest packet time seen: the end of the capture when it finishes.
    last_ts: Option<Timestamp>,
}

fn protocol_of(port: u16) -> Option<ExchangeProtocol> {
    match port {
        SSRP_PORT => Some(ExchangeProtocol::Ssrp),
        DNS_PORT => Some(ExchangeProtocol::Dns),
        KERBEROS_PORT => Some(ExchangeProtocol::Kerberos),
        _ => None,
    }
}

fn is_broadcast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_broadcast() || v4.octets()[3] == 255 || v4.is_multicast(),
        IpAddr::V6(v6) => v6.is_multicast(),
    }
}

/// Instance names shown to users: a name with control bytes or beyond this length (an
/// attack's shellcode) is escaped and cut.
const MAX_SHOWN_NAME: usize = 64;

fn text(bytes: &[u8]) -> String {
    let plain = bytes.len() <= MAX_SHOWN_NAME && bytes.iter().all(|b| (0x20..0x7f).contains(b));
    if plain {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let cut = bytes.get(..MAX_SHOWN_NAME).unwrap_or(bytes);
    let mut s = cut.escape_ascii().to_string();
    if cut.len() < bytes.len() {
        s.push('…');
    }
    s
}

/// A request's content, or None when the datagram is no request of the protocol.
pub(crate) fn parse_request(
    proto: ExchangeProtocol,
    payload: &[u8],
    dst: IpAddr,
) -> Option<(ExchangeRequest, Option<u16>)> {
    let length = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    match proto {
        ExchangeProtocol::Ssrp => {
            let opcode = *payload.first()?;
            let broadcast = is_broadcast(dst);
            let ssrp = |instance: Option<String>, oversized: bool| ExchangeRequest::Ssrp {
                opcode,
                instance,
                length,
                oversized,
                broadcast,
            };
            let req = match parse_ssrp(payload) {
                Ok(SsrpMessage::BcastEx { .. }) | Ok(SsrpMessage::UcastEx { .. }) => {
                    ssrp(None, false)
                }
                Ok(SsrpMessage::UcastInst {
                    instance,
                    oversized,
                    ..
                })
                | Ok(SsrpMessage::UcastDac {
                    instance,
                    oversized,
                    ..
                }) => ssrp(Some(text(instance)), oversized),
                // A request id whose body would not parse is the malformed kind Slammer sent.
                Err(_) if matches!(opcode, 2 | 3 | 4 | 15) => ssrp(None, true),
                _ => return None,
            };
            Some((req, None))
        }
        ExchangeProtocol::Dns => {
            let m = parse_dns(payload).ok()?;
            if m.is_response {
                return None;
            }
            let q = m.questions.first()?;
            Some((
                ExchangeRequest::Dns {
                    name: q.name.clone(),
                    types: vec![q.qtype],
                },
                Some(m.id),
            ))
        }
        ExchangeProtocol::Kerberos => match parse_krb(payload).ok()? {
            KrbMessage::AsReq {
                cname,
                realm,
                sname,
            } => Some((
                ExchangeRequest::Kerberos {
                    message: "AS-REQ",
                    sname,
                    realm,
                    cname,
                    forwardable: None,
                },
                None,
            )),
            KrbMessage::TgsReq {
                sname,
                realm,
                forwardable,
            } => Some((
                ExchangeRequest::Kerberos {
                    message: "TGS-REQ",
                    sname,
                    realm,
                    cname: None,
                    forwardable: Some(forwardable),
                },
                None,
            )),
            _ => None,
        },
    }
}

fn instance_facts(i: &crate::proto::ssrp::InstanceInfo) -> SsrpInstanceFacts {
    SsrpInstanceFacts {
        server_name: i.server_name.clone(),
        instance: i.instance_name.clone(),
        version: i.version.clone(),
        tcp_port: i.tcp_port,
        pipe: i.pipe.clone(),
        clustered: i.is_clustered,
    }
}

/// A response's content and DNS id, or None when the datagram is no response.
pub(crate) fn parse_response(
    proto: ExchangeProtocol,
    payload: &[u8],
) -> Option<(ExchangeResponseBody, Option<u16>)> {
    match proto {
        ExchangeProtocol::Ssrp => match parse_ssrp(payload).ok()? {
            SsrpMessage::Response(r) => Some((
                ExchangeResponseBody::Ssrp {
                    instances: r.instances.iter().map(instance_facts).collect(),
                    dac_port: None,
                },
                None,
            )),
            SsrpMessage::DacResponse { port, .. } => Some((
                ExchangeResponseBody::Ssrp {
                    instances: Vec::new(),
                    dac_port: Some(port),
                },
                None,
            )),
            _ => None,
        },
        ExchangeProtocol::Dns => {
            let m = parse_dns(payload).ok()?;
            if !m.is_response {
                return None;
            }
            let addresses = m
                .answers
                .iter()
                .filter_map(|a| match a.data {
                    crate::proto::dns::RecordData::A(v4) => Some(IpAddr::V4(v4)),
                    crate::proto::dns::RecordData::Aaaa(v6) => Some(IpAddr::V6(v6)),
                    _ => None,
                })
                .collect();
            Some((
                ExchangeResponseBody::Dns {
                    rcode: m.rcode.into(),
                    addresses,
                },
                Some(m.id),
            ))
        }
        ExchangeProtocol::Kerberos => {
            let (message, error, cname) = match parse_krb(payload).ok()? {
                KrbMessage::AsRep { cname, .. } => ("AS-REP", None, Some(cname)),
                KrbMessage::TgsRep { cname, .. } => ("TGS-REP", None, Some(cname)),
                KrbMessage::KrbError {
                    error_code, name, ..
                } => ("KRB-ERROR", Some((error_code, name)), None),
                _ => return None,
            };
            Some((
                ExchangeResponseBody::Kerberos {
                    message,
                    error,
                    cname,
                },
                None,
            ))
        }
    }
}

/// Two requests ask the same thing (a retry, or DNS's A and AAAA for one name).
fn same_question(a: &ExchangeRequest, b: &ExchangeRequest) -> bool {
    match (a, b) {
        (
            ExchangeRequest::Ssrp {
                opcode: o1,
                instance: i1,
                ..
            },
            ExchangeRequest::Ssrp {
                opcode: o2,
                instance: i2,
                ..
            },
        ) => o1 == o2 && i1 == i2,
        (ExchangeRequest::Dns { name: n1, .. }, ExchangeRequest::Dns { name: n2, .. }) => {
            n1.eq_ignore_ascii_case(n2)
        }
        (
            ExchangeRequest::Kerberos {
                message: m1,
                sname: s1,
                ..
            },
            ExchangeRequest::Kerberos {
                message: m2,
                sname: s2,
                ..
            },
        ) => m1 == m2 && s1 == s2,
        _ => false,
    }
}

impl ExchangeTracker {
    pub fn new() -> Self {
        ExchangeTracker::default()
    }

    /// Events ready to hand on, in order.
    pub fn drain(&mut self) -> std::vec::Drain<'_, ExchangeEvent> {
        self.out.drain(..)
    }

    pub fn has_events(&self) -> bool {
        !self.out.is_empty()
    }

    /// One decoded packet; anything but UDP to or from the watched ports and ICMP errors
    /// about them is ignored.
    pub fn on_packet(&mut self, p: &Packet<'_>) {
        self.last_ts = Some(self.last_ts.map_or(p.ts, |t| t.max(p.ts)));
        self.settle_older(p.ts);
        let at = Mark {
            frame: p.frame,
            ts: p.ts,
        };
        match &p.l4 {
            L4::Udp(u) => {
                if let Some(proto) = protocol_of(u.dst_port) {
                    let client = SocketAddr::new(p.ip.src, u.src_port);
                    let server = SocketAddr::new(p.ip.dst, u.dst_port);
                    if let Some((req, id)) = parse_request(proto, u.payload, p.ip.dst) {
                        self.on_request(proto, client, server, at, req, id);
                        return;
                    }
                }
                if let Some(proto) = protocol_of(u.src_port) {
                    let from = SocketAddr::new(p.ip.src, u.src_port);
                    let to = SocketAddr::new(p.ip.dst, u.dst_port);
                    if let Some((body, id)) = parse_response(proto, u.payload) {
                        self.on_response(proto, from, to, at, body, id);
                    }
                }
            }
            L4::Icmp(e) => {
                let port_unreachable = (e.icmp_type, e.code) == ICMP_PORT_UNREACHABLE
                    || (e.v6 && (e.icmp_type, e.code) == ICMP6_PORT_UNREACHABLE);
                if e.kind != IcmpErrorKind::DestinationUnreachable || !port_unreachable {
                    return;
                }
                let Some(q) = e.original else { return };
                let (Some(sport), Some(dport)) = (q.src_port, q.dst_port) else {
                    return;
                };
                if q.protocol != 17 || protocol_of(dport).is_none() {
                    return;
                }
                self.on_port_unreachable(
                    SocketAddr::new(q.src, sport),
                    SocketAddr::new(q.dst, dport),
                    at,
                );
            }
            _ => {}
        }
    }

    fn on_request(
        &mut self,
        proto: ExchangeProtocol,
        client: SocketAddr,
        server: SocketAddr,
        at: Mark,
        req: ExchangeRequest,
        dns_id: Option<u16>,
    ) {
        let attempt = Attempt {
            at,
            client_port: client.port(),
            dns_id,
        };
        let retry = self.pending.iter_mut().rev().find(|p| {
            p.facts.protocol == proto
                && p.facts.client.ip() == client.ip()
                && p.facts.server.ip() == server.ip()
                && at.ts.nanos_since(p.facts.last_attempt.ts) <= RETRY_WINDOW_NS
                && same_question(&p.facts.request, &req)
                // A Kerberos request after the KDC answered is the next step (preauthentication
                // after KDC_ERR_PREAUTH_REQUIRED, RFC 4120 3.1.1), not a retry.
                && (proto != ExchangeProtocol::Kerberos || p.facts.responses.is_empty())
        });
        if let Some(p) = retry {
            let qtype = match &req {
                ExchangeRequest::Dns { types, .. } => types.first().copied(),
                _ => None,
            };
            if let (Some(t), ExchangeRequest::Dns { types, .. }) = (qtype, &mut p.facts.request) {
                if !types.contains(&t) && types.len() < MAX_ATTEMPTS {
                    types.push(t);
                }
            }
            // DNS asks A and AAAA for one name in one lookup: attempts are counted per type.
            let count = match p
                .per_type
                .iter_mut()
                .find(|(t, _)| *t == qtype.unwrap_or(0))
            {
                Some((_, n)) => {
                    *n = n.saturating_add(1);
                    *n
                }
                None => {
                    if p.per_type.len() < MAX_ATTEMPTS {
                        p.per_type.push((qtype.unwrap_or(0), 1));
                    }
                    1
                }
            };
            p.facts.attempts = p.facts.attempts.max(count);
            p.facts.last_attempt = at;
            p.last_activity = at.ts;
            if p.attempts.len() < MAX_ATTEMPTS {
                p.attempts.push(attempt);
            }
            self.bump_deadline(at.ts);
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            self.evicted += 1;
            let mut oldest = self.pending.remove(0);
            oldest.facts.settled_early = true;
            self.settle(oldest);
        }
        let qtype = match &req {
            ExchangeRequest::Dns { types, .. } => types.first().copied().unwrap_or(0),
            _ => 0,
        };
        self.pending.push(Pending {
            per_type: vec![(qtype, 1)],
            facts: ExchangeFacts {
                protocol: proto,
                transport: ExchangeTransport::Udp,
                client,
                server,
                first: at,
                last_attempt: at,
                attempts: 1,
                request: req,
                responses: Vec::new(),
                port_unreachable: None,
                cut_by_capture_end_ns: None,
                settled_early: false,
            },
            attempts: vec![attempt],
            last_activity: at.ts,
        });
        self.bump_deadline(at.ts);
    }

    fn on_response(
        &mut self,
        proto: ExchangeProtocol,
        from: SocketAddr,
        to: SocketAddr,
        at: Mark,
        body: ExchangeResponseBody,
        dns_id: Option<u16>,
    ) {
        let found = self.pending.iter_mut().rev().find_map(|p| {
            let f = &p.facts;
            let server_ok = f.server.ip() == from.ip()
                || matches!(
                    f.request,
                    ExchangeRequest::Ssrp {
                        broadcast: true,
                        ..
                    }
                );
            if f.protocol != proto || f.client.ip() != to.ip() || !server_ok {
                return None;
            }
            let attempt =
                p.attempts.iter().rev().find(|a| {
                    a.client_port == to.port() && a.dns_id == dns_id && a.at.ts <= at.ts
                })?;
            let delay_ns = at.ts.nanos_since(attempt.at.ts);
            Some((p, delay_ns))
        });
        let Some((p, delay_ns)) = found else { return };
        if let ExchangeResponseBody::Ssrp { instances, .. } = &body {
            if !instances.is_empty() {
                let requested = match &p.facts.request {
                    ExchangeRequest::Ssrp { instance, .. } => instance.clone(),
                    _ => None,
                };
                self.out.push(ExchangeEvent::SsrpAnswer(SsrpAnnouncement {
                    at,
                    client: to.ip(),
                    server: from.ip(),
                    requested,
                    instances: instances.clone(),
                }));
            }
        }
        if p.facts.responses.is_empty() {
            let ev = kerberos_ticket(
                &p.facts.request,
                p.facts.first,
                to.ip(),
                ExchangeTransport::Udp,
                at,
                &body,
            );
            self.out.extend(ev);
        }
        if p.facts.responses.len() < MAX_RESPONSES {
            p.facts.responses.push(ExchangeResponse {
                at,
                from,
                delay_ns,
                body,
            });
        }
        p.last_activity = at.ts;
        self.bump_deadline(at.ts);
    }

    fn on_port_unreachable(&mut self, client: SocketAddr, server: SocketAddr, at: Mark) {
        let found = self.pending.iter_mut().rev().find(|p| {
            p.facts.client.ip() == client.ip()
                && p.facts.server == server
                && p.attempts.iter().any(|a| a.client_port == client.port())
        });
        if let Some(p) = found {
            p.facts.port_unreachable.get_or_insert(at);
            p.last_activity = at.ts;
            self.bump_deadline(at.ts);
        }
    }

    fn bump_deadline(&mut self, ts: Timestamp) {
        let d = ts.add_nanos(SETTLE_NS);
        self.next_deadline = Some(self.next_deadline.map_or(d, |n| n.min(d)));
    }

    /// Settles the exchanges idle for [`SETTLE_NS`] at capture time `now`.
    fn settle_older(&mut self, now: Timestamp) {
        match self.next_deadline {
            Some(d) if now > d => {}
            _ => return,
        }
        let mut next: Option<Timestamp> = None;
        let mut i = 0;
        while i < self.pending.len() {
            let Some(p) = self.pending.get(i) else { break };
            if now.nanos_since(p.last_activity) > SETTLE_NS {
                let p = self.pending.remove(i);
                self.settle(p);
            } else {
                let d = p.last_activity.add_nanos(SETTLE_NS);
                next = Some(next.map_or(d, |n| n.min(d)));
                i += 1;
            }
        }
        self.next_deadline = next;
    }

    fn settle(&mut self, p: Pending) {
        self.out.push(ExchangeEvent::Done(p.facts));
    }

    /// The end of the capture: every pending exchange is settled, oldest first.
    pub fn finish(&mut self) {
        for mut p in std::mem::take(&mut self.pending) {
            if let Some(end) = self.last_ts {
                p.facts.cut_by_capture_end_ns = Some(end.nanos_since(p.last_activity));
            }
            self.settle(p);
        }
        self.next_deadline = None;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::capture::FrameRef;
    use crate::decode::{IcmpError, IpInfo, QuotedHeader, UdpDatagram};
    use crate::proto::ssrp::{emit_response, InstanceInfo};

    const CLIENT: &str = "192.0.2.10";
    const SERVER: &str = "198.51.100.20";
    const MS: i64 = 1_000_000;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn packet<'a>(no: u64, ms: i64, src: &str, dst: &str, l4: L4<'a>) -> Packet<'a> {
        Packet {
            frame: FrameRef { input: 0, no },
            ts: Timestamp::from_secs_nanos(1_000, 0).add_nanos(ms * MS),
            wire_len: 100,
            ip: IpInfo {
                src: ip(src),
                dst: ip(dst),
                ttl: 64,
                ip_id: None,
                reassembled: false,
            },
            l4,
        }
    }

    fn udp(src_port: u16, dst_port: u16, payload: &[u8]) -> L4<'_> {
        L4::Udp(UdpDatagram {
            src_port,
            dst_port,
            payload,
            payload_len: payload.len() as u32,
        })
    }

    /// A DNS message with one question for `name` (RFC 1035 4.1).
    fn dns(id: u16, response: bool, rcode: u8, name: &str, qtype: u16) -> Vec<u8> {
        let flags: u16 = if response {
            0x8180 | u16::from(rcode)
        } else {
            0x0100
        };
        let mut m = Vec::new();
        for v in [id, flags, 1, 0, 0, 0] {
            m.extend_from_slice(&v.to_be_bytes());
        }
        for label in name.split('.') {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m
    }

    fn svr_resp(port: u16) -> Vec<u8> {
        emit_response(&[InstanceInfo {
            server_name: "LABSQL".into(),
            instance_name: "LABINST".into(),
            version: "16.0.1000.6".into(),
            tcp_port: Some(port),
            ..InstanceInfo::default()
        }])
    }

    fn done(t: &mut ExchangeTracker) -> Vec<ExchangeFacts> {
        t.drain()
            .filter_map(|e| match e {
                ExchangeEvent::Done(f) => Some(f),
                ExchangeEvent::SsrpAnswer(_) | ExchangeEvent::KerberosTicket(_) => None,
            })
            .collect()
    }

    #[test]
    fn ssrp_request_matched_to_its_answer() {
        let mut t = ExchangeTracker::new();
        t.on_packet(&packet(1, 0, CLIENT, SERVER, udp(50000, 1434, &[3])));
        let resp = svr_resp(14330);
        t.on_packet(&packet(2, 3, SERVER, CLIENT, udp(1434, 50000, &resp)));
        let events: Vec<_> = t.drain().collect();
        let [ExchangeEvent::SsrpAnswer(a)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!((a.client, a.server), (ip(CLIENT), ip(SERVER)));
        assert_eq!(a.instances[0].tcp_port, Some(14330));
        t.finish();
        let d = done(&mut t);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].attempts, 1);
        assert_eq!(d[0].responses.len(), 1);
        assert_eq!(d[0].responses[0].delay_ns, 3 * MS);
    }

    #[test]
    fn retries_from_new_ports_are_one_exchange() {
        let mut t = ExchangeTracker::new();
        for (i, port) in [50000u16, 50001, 50002].into_iter().enumerate() {
            let ms = i as i64 * 800;
            t.on_packet(&packet(
                i as u64 + 1,
                ms,
                CLIENT,
                SERVER,
                udp(port, 1434, &[3]),
            ));
        }
        // The answer to the second attempt: the delay counts from that attempt.
        let resp = svr_resp(14330);
        t.on_packet(&packet(4, 2000, SERVER, CLIENT, udp(1434, 50001, &resp)));
        t.finish();
        let d = done(&mut t);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].attempts, 3);
        assert_eq!(d[0].responses[0].delay_ns, 1200 * MS);
    }

    #[test]
    fn unanswered_request_settles_on_capture_time() {
        let mut t = ExchangeTracker::new();
        t.on_packet(&packet(1, 0, CLIENT, SERVER, udp(50000, 1434, &[3])));
        t.on_packet(&packet(
            2,
            4_000,
            CLIENT,
            "203.0.113.1",
            udp(40000, 9999, b"x"),
        ));
        assert!(done(&mut t).is_empty(), "settled too early");
        t.on_packet(&packet(
            3,
            5_100,
            CLIENT,
            "203.0.113.1",
            udp(40000, 9999, b"x"),
        ));
        let d = done(&mut t);
        assert_eq!(d.len(), 1);
        assert!(d[0].responses.is_empty());
        // A later request for the same thing is a new exchange.
        t.on_packet(&packet(4, 11_000, CLIENT, SERVER, udp(50001, 1434, &[3])));
        t.finish();
        assert_eq!(done(&mut t).len(), 1);
    }

    #[test]
    fn icmp_port_unreachable_marks_the_exchange() {
        let mut t = ExchangeTracker::new();
        t.on_packet(&packet(1, 0, CLIENT, SERVER, udp(50000, 1434, &[3])));
        let icmp = |src_port: u16, dst_port: u16, src: &str, dst: &str| {
            L4::Icmp(IcmpError {
                v6: false,
                icmp_type: 3,
                code: 3,
                kind: IcmpErrorKind::DestinationUnreachable,
                original: Some(QuotedHeader {
                    src: ip(src),
                    dst: ip(dst),
                    protocol: 17,
                    src_port: Some(src_port),
                    dst_port: Some(dst_port),
                    tcp_seq: None,
                }),
            })
        };
        // An error about an answer (the client's port closed) does not count.
        t.on_packet(&packet(
            2,
            1,
            CLIENT,
            SERVER,
            icmp(1434, 50000, SERVER, CLIENT),
        ));
        t.on_packet(&packet(
            3,
            1,
            SERVER,
            CLIENT,
            icmp(50000, 1434, CLIENT, SERVER),
        ));
        t.finish();
        let d = done(&mut t);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].port_unreachable.map(|m| m.frame.no), Some(3));
    }

    #[test]
    fn dns_a_and_aaaa_are_one_lookup_matched_by_id() {
        let mut t = ExchangeTracker::new();
        let name = "sql.lab.test";
        t.on_packet(&packet(
            1,
            0,
            CLIENT,
            SERVER,
            udp(40000, 53, &dns(1, false, 0, name, 1)),
        ));
        t.on_packet(&packet(
            2,
            1,
            CLIENT,
            SERVER,
            udp(40000, 53, &dns(2, false, 0, name, 28)),
        ));
        t.on_packet(&packet(
            3,
            1000,
            CLIENT,
            SERVER,
            udp(40000, 53, &dns(1, false, 0, name, 1)),
        ));
        // A response with an id never asked is not this lookup's.
        t.on_packet(&packet(
            4,
            1001,
            SERVER,
            CLIENT,
            udp(53, 40000, &dns(9, true, 0, name, 1)),
        ));
        t.on_packet(&packet(
            5,
            1002,
            SERVER,
            CLIENT,
            udp(53, 40000, &dns(2, true, 3, name, 28)),
        ));
        t.finish();
        let d = done(&mut t);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].attempts, 2);
        assert_eq!(
            d[0].request,
            ExchangeRequest::Dns {
                name: name.into(),
                types: vec![1, 28]
            }
        );
        assert_eq!(d[0].responses.len(), 1);
        assert_eq!(d[0].responses[0].at.frame.no, 5);
        assert!(matches!(
            d[0].responses[0].body,
            ExchangeResponseBody::Dns { rcode: 3, .. }
        ));
    }

    #[test]
    fn broadcast_answered_by_any_server() {
        let mut t = ExchangeTracker::new();
        t.on_packet(&packet(
            1,
            0,
            CLIENT,
            "255.255.255.255",
            udp(50000, 1434, &[2]),
        ));
        let resp = svr_resp(1433);
        t.on_packet(&packet(2, 5, SERVER, CLIENT, udp(1434, 50000, &resp)));
        t.on_packet(&packet(
            3,
            6,
            "198.51.100.21",
            CLIENT,
            udp(1434, 50000, &resp),
        ));
        t.finish();
        let d = done(&mut t);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].responses.len(), 2);
    }

    #[test]
    fn kerberos_request_matched_by_ports() {
        use crate::proto::kerberos::tests::{KRB_ERROR_S_PRINCIPAL_UNKNOWN, TGS_REQ_WITH_PADATA};
        let mut t = ExchangeTracker::new();
        t.on_packet(&packet(
            1,
            0,
            CLIENT,
            SERVER,
            udp(51000, 88, &TGS_REQ_WITH_PADATA),
        ));
        // An answer to another client port is not this request's.
        let err = &KRB_ERROR_S_PRINCIPAL_UNKNOWN;
        t.on_packet(&packet(2, 1, SERVER, CLIENT, udp(88, 51001, err)));
        t.on_packet(&packet(3, 2, SERVER, CLIENT, udp(88, 51000, err)));
        t.finish();
        let d = done(&mut t);
        assert_eq!(d.len(), 1);
        assert!(matches!(
            &d[0].request,
            ExchangeRequest::Kerberos { message: "TGS-REQ", sname, .. } if sname == "MSSQLSvc/sql01.corp.example:1433"
        ));
        assert_eq!(d[0].responses.len(), 1);
        assert_eq!(
            d[0].responses[0].body,
            ExchangeResponseBody::Kerberos {
                message: "KRB-ERROR",
                error: Some((7, "KDC_ERR_S_PRINCIPAL_UNKNOWN")),
                cname: None,
            }
        );
    }

    #[test]
    fn pending_exchanges_are_bounded() {
        let mut t = ExchangeTracker::new();
        for i in 0..=MAX_PENDING {
            let q = dns(i as u16, false, 0, &format!("h{i}.lab.test"), 1);
            t.on_packet(&packet(i as u64 + 1, 0, CLIENT, SERVER, udp(40000, 53, &q)));
        }
        assert_eq!(t.evicted, 1);
        let d = done(&mut t);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].first.frame.no, 1);
        assert!(d[0].settled_early);
        t.finish();
        assert_eq!(done(&mut t).len(), MAX_PENDING);
    }
}
