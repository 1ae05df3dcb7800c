//! Per-connection drivers: receive the TCP tracker's stream events, run the protocol framers
//! and state machines over them, and hand finished [`ConnectionFacts`] on.

pub mod exchanges;
pub mod forward;
pub mod patterns;
pub mod probes;
pub mod tcp_exchanges;
pub mod tds;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;

use crate::facts::{Anomaly, AnomalyKind, ConnectionFacts, KnownBy};
use crate::tcp::{
    ConnId, Direction, FxBuild, Mark, StreamEvent, StreamEventKind, StreamSink, TcpEnd, TcpFacts,
};
use exchanges::ExchangeEvent;
use tcp_exchanges::TcpExchangeStream;
use tds::TdsSession;

/// The port SQL Server listens on by default; bytes on it that are not TDS are reported.
pub const SQL_SERVER_PORT: u16 = 1433;

/// Runs sessions for every open connection and collects finished connections in the order
/// they end; the driver drains them after each packet so that nothing accumulates.
#[derive(Default)]
pub struct Sessions {
    /// Boxed so that growing the table moves pointers, not sessions. Looked up for every
    /// stream event: hashed with the tracker's cheap hasher (ids are ours, not the input's).
    open: HashMap<ConnId, Box<TdsSession>, FxBuild>,
    /// Connections to DNS (53) and Kerberos (88) servers, read as exchanges instead of TDS.
    exchange_streams: HashMap<ConnId, Box<TcpExchangeStream>>,
    /// Exchange events from those connections, in the order they happened.
    exchange_events: Vec<ExchangeEvent>,
    finished: VecDeque<ConnectionFacts>,
    /// Server endpoints where TDS was seen (bounded), and the user's `--server` hints.
    tds_servers: HashSet<SocketAddr>,
    hints: Vec<ServerHint>,
    /// The capture's last frame time, once every input was read.
    capture_end: Option<crate::time::Timestamp>,
}

/// Server endpoints remembered as SQL Server because TDS was seen on them.
const MAX_KNOWN_SERVERS: usize = 10_000;

/// A `--server IP[:PORT]` hint: this address (on this port, or any) is SQL Server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerHint {
    pub ip: std::net::IpAddr,
    pub port: Option<u16>,
}

impl ServerHint {
    pub fn matches(&self, addr: SocketAddr) -> bool {
        self.ip == addr.ip() && self.port.is_none_or(|p| p == addr.port())
    }
}

impl std::str::FromStr for ServerHint {
    type Err = String;

    /// `10.0.0.5`, `10.0.0.5:14330`, `2001:db8::5`, `[2001:db8::5]:1433`.
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(ServerHint {
                ip: addr.ip(),
                port: Some(addr.port()),
            });
        }
        s.trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .map(|ip| ServerHint { ip, port: None })
            .map_err(|_| format!("'{s}' is not an IP address or IP:PORT"))
    }
}

impl Sessions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sessions that also treat these endpoints as SQL Server.
    pub fn with_hints(hints: Vec<ServerHint>) -> Self {
        Sessions {
            hints,
            ..Self::default()
        }
    }

    /// Every input was read; `last` is the capture's last frame time.
    pub fn on_capture_end(&mut self, last: crate::time::Timestamp) {
        self.capture_end = Some(last);
    }

    /// Connections that ended since the last call.
    pub fn drain_finished(&mut self) -> impl Iterator<Item = ConnectionFacts> + '_ {
        self.finished.drain(..)
    }

    /// DNS and Kerberos exchanges read from TCP connections since the last call: Kerberos
    /// answers as they come, each connection's exchanges when it ends.
    pub fn drain_exchange_events(&mut self) -> std::vec::Drain<'_, ExchangeEvent> {
        self.exchange_events.drain(..)
    }
}

/// Swaps client and server when TDS showed TCP's mid-stream guess was wrong.
fn swap_roles(t: &mut TcpFacts) {
    std::mem::swap(&mut t.client, &mut t.server);
    t.dirs.swap(0, 1);
    t.end = match t.end {
        TcpEnd::Fin { first } => TcpEnd::Fin {
            first: first.reverse(),
        },
        TcpEnd::HalfClosed { by } => TcpEnd::HalfClosed { by: by.reverse() },
        TcpEnd::Rst { by } => TcpEnd::Rst { by: by.reverse() },
        TcpEnd::Open => TcpEnd::Open,
    };
}

impl StreamSink for Sessions {
    fn on_open(&mut self, conn: ConnId, client: SocketAddr, server: SocketAddr) {
        // DNS and Kerberos go to their own parsers: TDS probing would only waste time on them,
        // and a user's hint that the address is SQL Server does not make port 53 speak TDS.
        if let Some(proto) = tcp_exchanges::protocol_of_port(server.port()) {
            self.exchange_streams.insert(
                conn,
                Box::new(TcpExchangeStream::new(proto, client, server)),
            );
            return;
        }
        self.open.insert(conn, Box::default());
    }

    fn on_event(&mut self, ev: StreamEvent<'_>) {
        if let Some(stream) = self.exchange_streams.get_mut(&ev.conn) {
            let at = Mark {
                frame: ev.frame,
                ts: ev.ts,
            };
            match ev.kind {
                StreamEventKind::Data(bytes) => stream.on_data(ev.dir, at, bytes),
                StreamEventKind::Gap { .. } => stream.on_gap(ev.dir),
                StreamEventKind::Fin | StreamEventKind::Rst => {}
            }
            self.exchange_events.extend(stream.drain_events());
            return;
        }
        let session = self.open.entry(ev.conn).or_default();
        let at = Mark {
            frame: ev.frame,
            ts: ev.ts,
        };
        match ev.kind {
            StreamEventKind::Data(bytes) => session.on_data(ev.dir, at, bytes),
            StreamEventKind::Gap { len } => session.on_gap(ev.dir, len),
            StreamEventKind::Fin => session.on_end(ev.dir, false),
            StreamEventKind::Rst => session.on_end(ev.dir, true),
        }
    }

    fn on_close(&mut self, mut tcp: TcpFacts) {
        if let Some(stream) = self.exchange_streams.remove(&tcp.id) {
            let mut stream = *stream;
            self.exchange_events.extend(stream.drain_events());
            // Still open when the capture stopped: an unanswered request may only have been
            // asked too late for its answer to be captured.
            let cut_at = self.capture_end.filter(|_| matches!(tcp.end, TcpEnd::Open));
            self.exchange_events
                .extend(stream.into_exchanges(cut_at).map(ExchangeEvent::Done));
            self.finished.push_back(ConnectionFacts {
                tcp,
                tds: None,
                anomalies: Vec::new(),
                known_sql_server: None,
                kerberos: Vec::new(),
            });
            return;
        }
        let session = *self.open.remove(&tcp.id).unwrap_or_default();
        let not_tds = !session.is_tds() && session.probed_bytes() > 0;
        let reversed = session.reversed();
        let (tds, mut anomalies) = session.into_facts();
        if reversed {
            swap_roles(&mut tcp);
        }
        if not_tds && tcp.server.port() == SQL_SERVER_PORT {
            let (dir, at) = first_data(&tcp);
            anomalies.push(Anomaly {
                kind: AnomalyKind::NotTds,
                at,
                dir,
                detail: "bytes on the SQL Server port that are not TDS".to_string(),
            });
        }
        let tds_here = tds
            .as_ref()
            .is_some_and(|t| t.dialect == crate::facts::Dialect::Tds7);
        if tds_here && self.tds_servers.len() < MAX_KNOWN_SERVERS {
            self.tds_servers.insert(tcp.server);
        }
        let known_sql_server = if self.hints.iter().any(|h| h.matches(tcp.server)) {
            Some(KnownBy::Hint)
        } else if !tds_here && self.tds_servers.contains(&tcp.server) {
            Some(KnownBy::Tds)
        } else {
            None
        };
        self.finished.push_back(ConnectionFacts {
            tcp,
            tds,
            anomalies,
            known_sql_server,
            kerberos: Vec::new(),
        });
    }
}

/// The first data of a connection, whichever side sent it.
fn first_data(t: &TcpFacts) -> (Direction, Mark) {
    let a = t.dir(Direction::ToServer).first_data;
    let b = t.dir(Direction::ToClient).first_data;
    match (a, b) {
        (Some(a), Some(b)) if b.ts < a.ts => (Direction::ToClient, b),
        (Some(a), _) => (Direction::ToServer, a),
        (None, Some(b)) => (Direction::ToClient, b),
        (None, None) => (Direction::ToServer, t.first),
    }
}
