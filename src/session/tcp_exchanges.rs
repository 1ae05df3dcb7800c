//! DNS and Kerberos over TCP: the same requests and answers as over UDP, read from a
//! connection's reassembled byte stream instead of datagrams.
//!
//! DNS puts a 2-byte length before each message (RFC 1035 4.2.2; RFC 7766 6.2 lets a client
//! send several queries on one connection and the server answer them in any order, so
//! answers are matched by id). Kerberos puts a 4-byte record marker before each message
//! (RFC 4120 7.2.2), one answer per request, in order. Each request is one exchange (TCP
//! itself retransmits, so there are no retries to merge); the connection's exchanges are
//! handed on when it ends.

use std::net::SocketAddr;

use super::exchanges::{
    kerberos_ticket, parse_request, parse_response, ExchangeEvent, DNS_PORT, KERBEROS_PORT,
};
use crate::facts::{
    ExchangeFacts, ExchangeProtocol, ExchangeRequest, ExchangeResponse, ExchangeTransport,
};
use crate::proto::{dns, kerberos, ParseError};
use crate::tcp::{Direction, Mark};
use crate::time::Timestamp;

/// Requests kept per connection; a resolver pipelining more than this on one connection
/// is counted, not listed (RFC 7766 allows many, real stubs send one or two).
pub const MAX_EXCHANGES_PER_CONNECTION: usize = 64;
/// Answers kept per exchange: one is normal; a server repeating itself is bounded.
const MAX_RESPONSES: usize = 4;

/// The TCP exchange protocol a server port speaks, if any.
pub fn protocol_of_port(port: u16) -> Option<ExchangeProtocol> {
    match port {
        DNS_PORT => Some(ExchangeProtocol::Dns),
        KERBEROS_PORT => Some(ExchangeProtocol::Kerberos),
        _ => None,
    }
}

struct OpenExchange {
    facts: ExchangeFacts,
    dns_id: Option<u16>,
}

/// One direction's bytes not yet framed into a message.
#[derive(Default)]
struct Framing {
    buf: Vec<u8>,
    /// The framing broke (a gap in the capture, a length beyond the limit, a malformed
    /// length): nothing after it in this direction can be trusted to start a message.
    lost: bool,
}

/// One TCP connection to port 53 or 88, read as a sequence of exchanges.
pub struct TcpExchangeStream {
    proto: ExchangeProtocol,
    client: SocketAddr,
    server: SocketAddr,
    framing: [Framing; 2],
    exchanges: Vec<OpenExchange>,
    /// Requests beyond [`MAX_EXCHANGES_PER_CONNECTION`].
    pub not_kept: u64,
    /// Messages that framed but did not parse as a request or an answer of the protocol.
    pub undecoded: u64,
    /// Events to hand on as they happen (a KDC's answer to a TGS-REQ).
    events: Vec<ExchangeEvent>,
}

impl TcpExchangeStream {
    pub fn new(proto: ExchangeProtocol, client: SocketAddr, server: SocketAddr) -> Self {
        TcpExchangeStream {
            proto,
            client,
            server,
            framing: [Framing::default(), Framing::default()],
            exchanges: Vec::new(),
            not_kept: 0,
            undecoded: 0,
            events: Vec::new(),
        }
    }

    fn split(&self, stream: &[u8]) -> Result<(usize, usize), ParseError> {
        // (offset of the message, its length) within `stream`.
        match self.proto {
            ExchangeProtocol::Dns => dns::split_tcp_message(stream).map(|(m, _)| (2, m.len())),
            ExchangeProtocol::Kerberos => {
                kerberos::split_tcp_record(stream).map(|(m, _)| (4, m.len()))
            }
            ExchangeProtocol::Ssrp => Err(ParseError::Malformed {
                what: "SSRP does not run over TCP",
                at: 0,
            }),
        }
    }

    /// Stream bytes in one direction; `at` is the segment that carried them, which is the
    /// frame tshark shows a message in when the segment completes it.
    pub fn on_data(&mut self, dir: Direction, at: Mark, bytes: &[u8]) {
        let i = dir_index(dir);
        let Some(f) = self.framing.get_mut(i) else {
            return;
        };
        if f.lost {
            return;
        }
        f.buf.extend_from_slice(bytes);
        let mut buf = std::mem::take(&mut f.buf);
        let mut start = 0usize;
        let mut lost = false;
        loop {
            let rest = buf.get(start..).unwrap_or_default();
            if rest.is_empty() {
                break;
            }
            match self.split(rest) {
                Ok((offset, len)) => {
                    let msg = rest.get(offset..offset + len).unwrap_or_default();
                    self.on_message(dir, at, msg);
                    start += offset + len;
                }
                Err(ParseError::Incomplete { .. }) => break,
                Err(_) => {
                    lost = true;
                    break;
                }
            }
        }
        if lost {
            buf = Vec::new();
        } else {
            buf.drain(..start.min(buf.len()));
        }
        if let Some(f) = self.framing.get_mut(i) {
            f.buf = buf;
            f.lost = lost;
        }
    }

    /// Bytes the capture lost: the message they belonged to, and the framing after it, are gone.
    pub fn on_gap(&mut self, dir: Direction) {
        if let Some(f) = self.framing.get_mut(dir_index(dir)) {
            f.buf = Vec::new();
            f.lost = true;
        }
    }

    fn on_message(&mut self, dir: Direction, at: Mark, msg: &[u8]) {
        match dir {
            Direction::ToServer => match parse_request(self.proto, msg, self.server.ip()) {
                Some((request, dns_id)) => self.on_request(at, request, dns_id),
                None => self.undecoded += 1,
            },
            Direction::ToClient => match parse_response(self.proto, msg) {
                Some((body, dns_id)) => self.on_response(at, body, dns_id),
                None => self.undecoded += 1,
            },
        }
    }

    fn on_request(&mut self, at: Mark, request: ExchangeRequest, dns_id: Option<u16>) {
        if self.exchanges.len() >= MAX_EXCHANGES_PER_CONNECTION {
            self.not_kept += 1;
            return;
        }
        self.exchanges.push(OpenExchange {
            facts: ExchangeFacts {
                protocol: self.proto,
                transport: ExchangeTransport::Tcp,
                client: self.client,
                server: self.server,
                first: at,
                last_attempt: at,
                attempts: 1,
                request,
                responses: Vec::new(),
                port_unreachable: None,
                cut_by_capture_end_ns: None,
                settled_early: false,
            },
            dns_id,
        });
    }

    fn on_response(
        &mut self,
        at: Mark,
        body: crate::facts::ExchangeResponseBody,
        dns_id: Option<u16>,
    ) {
        // DNS answers carry the query's id (RFC 1035 4.1.1) and may come in any order
        // (RFC 7766 6.2.1.1); Kerberos answers come one per request, in order.
        let index = self
            .exchanges
            .iter()
            .position(|e| e.facts.responses.is_empty() && e.dns_id == dns_id)
            .or_else(|| self.exchanges.iter().rposition(|e| e.dns_id == dns_id));
        let Some(e) = index.and_then(|i| self.exchanges.get_mut(i)) else {
            return;
        };
        if e.facts.responses.is_empty() {
            let ev = kerberos_ticket(
                &e.facts.request,
                e.facts.first,
                self.client.ip(),
                ExchangeTransport::Tcp,
                at,
                &body,
            );
            self.events.extend(ev);
        }
        if e.facts.responses.len() < MAX_RESPONSES {
            let delay_ns = at.ts.nanos_since(e.facts.first.ts).max(0);
            e.facts.responses.push(ExchangeResponse {
                at,
                from: self.server,
                delay_ns,
                body,
            });
        }
    }

    /// Events that happened since the last call.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, ExchangeEvent> {
        self.events.drain(..)
    }

    /// The connection ended: its exchanges, in request order. `capture_end` is given when the
    /// connection was still open as the capture stopped: unanswered requests then carry how
    /// long before the end they were sent.
    pub fn into_exchanges(
        self,
        capture_end: Option<Timestamp>,
    ) -> impl Iterator<Item = ExchangeFacts> {
        self.exchanges.into_iter().map(move |e| {
            let mut f = e.facts;
            if let Some(end) = capture_end.filter(|_| f.responses.is_empty()) {
                f.cut_by_capture_end_ns = Some(end.nanos_since(f.first.ts).max(0));
            }
            f
        })
    }
}

fn dir_index(dir: Direction) -> usize {
    match dir {
        Direction::ToServer => 0,
        Direction::ToClient => 1,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::capture::FrameRef;
    use crate::facts::ExchangeResponseBody;
    use crate::proto::kerberos::tests::{KRB_ERROR_S_PRINCIPAL_UNKNOWN, TGS_REQ_WITH_PADATA};
    use crate::time::Timestamp;

    fn mark(no: u64) -> Mark {
        Mark {
            frame: FrameRef { input: 0, no },
            ts: Timestamp::from_secs_nanos(1_000, 0).add_nanos(no as i64 * 1_000_000),
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A DNS message with one question, and for a response one A record (RFC 1035 4.1).
    fn dns(id: u16, response: bool, name: &str) -> Vec<u8> {
        let flags: u16 = if response { 0x8180 } else { 0x0100 };
        let mut m = Vec::new();
        for v in [id, flags, 1, u16::from(response), 0, 0] {
            m.extend_from_slice(&v.to_be_bytes());
        }
        for label in name.split('.') {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        if response {
            m.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 51, 100, 20]);
        }
        m
    }

    fn framed(prefix_len: usize, msg: &[u8]) -> Vec<u8> {
        let len = msg.len() as u32;
        let mut v = len.to_be_bytes()[4 - prefix_len..].to_vec();
        v.extend_from_slice(msg);
        v
    }

    fn dns_stream() -> TcpExchangeStream {
        TcpExchangeStream::new(
            ExchangeProtocol::Dns,
            addr("192.0.2.10:40000"),
            addr("198.51.100.20:53"),
        )
    }

    /// A query on a connection still open when the capture stopped: unanswered, and marked
    /// with how long before the end it was sent (the report then says the answer may have come
    /// after the capture). An answered one, or a closed connection, carries no such mark.
    #[test]
    fn an_unanswered_query_at_the_capture_end_is_marked() {
        let mut s = dns_stream();
        s.on_data(
            Direction::ToServer,
            mark(1),
            &framed(2, &dns(1, false, "a.lab.test")),
        );
        s.on_data(
            Direction::ToClient,
            mark(2),
            &framed(2, &dns(1, true, "a.lab.test")),
        );
        s.on_data(
            Direction::ToServer,
            mark(30),
            &framed(2, &dns(2, false, "b.lab.test")),
        );
        let end = mark(100).ts;
        let ex: Vec<_> = s.into_exchanges(Some(end)).collect();
        assert_eq!(ex.len(), 2);
        assert_eq!(ex[0].cut_by_capture_end_ns, None);
        assert_eq!(ex[1].cut_by_capture_end_ns, Some(70_000_000));

        let mut closed = dns_stream();
        closed.on_data(
            Direction::ToServer,
            mark(1),
            &framed(2, &dns(3, false, "c.lab.test")),
        );
        let ex: Vec<_> = closed.into_exchanges(None).collect();
        assert_eq!(ex[0].cut_by_capture_end_ns, None);
    }

    #[test]
    fn pipelined_dns_queries_split_across_segments_answered_out_of_order() {
        let mut s = dns_stream();
        let mut out = framed(2, &dns(1, false, "a.lab.test"));
        out.extend(framed(2, &dns(2, false, "b.lab.test")));
        // Every byte in its own segment: framing must survive any split.
        for (i, b) in out.iter().enumerate() {
            s.on_data(Direction::ToServer, mark(i as u64 + 1), &[*b]);
        }
        let mut back = framed(2, &dns(2, true, "b.lab.test"));
        back.extend(framed(2, &dns(1, true, "a.lab.test")));
        let (one, two) = back.split_at(7);
        s.on_data(Direction::ToClient, mark(500), one);
        s.on_data(Direction::ToClient, mark(501), two);
        let ex: Vec<_> = s.into_exchanges(None).collect();
        assert_eq!(ex.len(), 2);
        let names: Vec<_> = ex
            .iter()
            .map(|e| match &e.request {
                ExchangeRequest::Dns { name, .. } => name.clone(),
                _ => String::new(),
            })
            .collect();
        assert_eq!(names, ["a.lab.test", "b.lab.test"]);
        for e in &ex {
            assert_eq!(e.transport, ExchangeTransport::Tcp);
            assert_eq!(e.responses.len(), 1);
            assert_eq!(e.responses[0].at.frame.no, 501);
            assert!(matches!(
                &e.responses[0].body,
                ExchangeResponseBody::Dns { rcode: 0, addresses } if addresses.len() == 1
            ));
        }
        // The first query ended in the segment of its last byte.
        assert_eq!(
            ex[0].first.frame.no,
            (2 + dns(1, false, "a.lab.test").len()) as u64
        );
    }

    #[test]
    fn kerberos_record_marks_and_ticket_event() {
        let mut s = TcpExchangeStream::new(
            ExchangeProtocol::Kerberos,
            addr("192.0.2.10:40000"),
            addr("198.51.100.20:88"),
        );
        s.on_data(
            Direction::ToServer,
            mark(1),
            &framed(4, &TGS_REQ_WITH_PADATA),
        );
        let err = framed(4, &KRB_ERROR_S_PRINCIPAL_UNKNOWN);
        s.on_data(Direction::ToClient, mark(2), &err[..3]);
        assert_eq!(s.drain_events().count(), 0);
        s.on_data(Direction::ToClient, mark(3), &err[3..]);
        let events: Vec<_> = s.drain_events().collect();
        let [ExchangeEvent::KerberosTicket(t)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(t.ticket.spn, "MSSQLSvc/sql01.corp.example:1433");
        assert_eq!(t.ticket.error, Some((7, "KDC_ERR_S_PRINCIPAL_UNKNOWN")));
        assert_eq!(t.ticket.transport, ExchangeTransport::Tcp);
        let ex: Vec<_> = s.into_exchanges(None).collect();
        assert_eq!(ex.len(), 1);
        assert_eq!(ex[0].responses[0].at.frame.no, 3);
    }

    #[test]
    fn broken_framing_and_gaps_stop_the_direction_without_growing() {
        let mut s = TcpExchangeStream::new(
            ExchangeProtocol::Kerberos,
            addr("192.0.2.10:40000"),
            addr("198.51.100.20:88"),
        );
        // A record marker claiming 2 GiB (reserved bit clear): refused, nothing buffered.
        s.on_data(
            Direction::ToServer,
            mark(1),
            &[0x7f, 0xff, 0xff, 0xff, 1, 2],
        );
        s.on_data(Direction::ToServer, mark(2), &[0u8; 4096]);
        assert!(s.framing[0].lost && s.framing[0].buf.is_empty());
        let mut d = dns_stream();
        d.on_data(Direction::ToServer, mark(1), &[0, 40, 1, 2]);
        d.on_gap(Direction::ToServer);
        d.on_data(
            Direction::ToServer,
            mark(2),
            &framed(2, &dns(1, false, "x.test")),
        );
        assert_eq!(d.into_exchanges(None).count(), 0);
    }

    #[test]
    fn requests_per_connection_are_bounded() {
        let mut s = dns_stream();
        let q = framed(2, &dns(7, false, "a.test"));
        for i in 0..MAX_EXCHANGES_PER_CONNECTION + 3 {
            s.on_data(Direction::ToServer, mark(i as u64), &q);
        }
        assert_eq!(s.not_kept, 3);
        assert_eq!(s.into_exchanges(None).count(), MAX_EXCHANGES_PER_CONNECTION);
    }

    /// The exchanges a stream gives, as (request frame, name, answer frame).
    fn summary(s: TcpExchangeStream) -> Vec<(u64, String, Option<u64>)> {
        s.into_exchanges(None)
            .map(|e| {
                let name = match &e.request {
                    ExchangeRequest::Dns { name, .. } => name.clone(),
                    _ => String::new(),
                };
                (
                    e.first.frame.no,
                    name,
                    e.responses.first().map(|r| r.at.frame.no),
                )
            })
            .collect()
    }

    proptest::proptest! {
        /// However the two directions' bytes are cut into segments, the same queries are
        /// matched to the same answers, each in the segment that completed it.
        #[test]
        fn any_segmentation_gives_the_same_exchanges(
            names in proptest::collection::vec("[a-z]{1,12}(\\.[a-z]{1,8}){0,3}", 1..6),
            cuts in proptest::collection::vec(1usize..40, 1..40),
        ) {
            let mut queries = Vec::new();
            let mut answers = Vec::new();
            for (i, n) in names.iter().enumerate() {
                queries.extend(framed(2, &dns(i as u16, false, n)));
                answers.extend(framed(2, &dns(i as u16, true, n)));
            }
            // Segment boundaries: the ends of the messages, then arbitrary extra cuts.
            let feed = |s: &mut TcpExchangeStream, dir: Direction, bytes: &[u8], base: u64| {
                let mut at = 0usize;
                let mut k = 0usize;
                while at < bytes.len() {
                    let step = cuts.get(k % cuts.len()).copied().unwrap_or(1);
                    let end = (at + step).min(bytes.len());
                    s.on_data(dir, mark(base + end as u64), &bytes[at..end]);
                    at = end;
                    k += 1;
                }
            };
            let mut split = dns_stream();
            feed(&mut split, Direction::ToServer, &queries, 0);
            feed(&mut split, Direction::ToClient, &answers, 100_000);
            let got = summary(split);
            proptest::prop_assert_eq!(got.len(), names.len());
            let mut q_end = 0u64;
            let mut a_end = 0u64;
            for (i, (first, name, answered)) in got.iter().enumerate() {
                q_end += framed(2, &dns(i as u16, false, &names[i])).len() as u64;
                a_end += framed(2, &dns(i as u16, true, &names[i])).len() as u64;
                proptest::prop_assert_eq!(name, &names[i]);
                // The frame of the segment holding the message's last byte.
                proptest::prop_assert!(*first >= q_end && *first < q_end + 40);
                let answered = answered.unwrap_or(0);
                proptest::prop_assert!(answered >= 100_000 + a_end && answered < 100_000 + a_end + 40);
            }
        }
    }
}
