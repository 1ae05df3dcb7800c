//! Per-connection drivers: receive the TCP tracker's stream events, run the protocol framers
//! and state machines over them, and hand finished [`ConnectionFacts`] on.

pub mod exchanges;
pub mod forward;
pub mod patterns;
pub mod tds;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use crate::facts::{Anomaly, AnomalyKind, ConnectionFacts};
use crate::tcp::{
    ConnId, Direction, Mark, StreamEvent, StreamEventKind, StreamSink, TcpEnd, TcpFacts,
};
use tds::TdsSession;

/// The port SQL Server listens on by default; bytes on it that are not TDS are reported.
pub const SQL_SERVER_PORT: u16 = 1433;

/// Runs sessions for every open connection and collects finished connections in the order
/// they end; the driver drains them after each packet so that nothing accumulates.
#[derive(Default)]
pub struct Sessions {
    /// Boxed so that growing the table moves pointers, not sessions.
    open: HashMap<ConnId, Box<TdsSession>>,
    finished: VecDeque<ConnectionFacts>,
}

impl Sessions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Connections that ended since the last call.
    pub fn drain_finished(&mut self) -> impl Iterator<Item = ConnectionFacts> + '_ {
        self.finished.drain(..)
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
    fn on_open(&mut self, conn: ConnId, _client: SocketAddr, _server: SocketAddr) {
        self.open.insert(conn, Box::default());
    }

    fn on_event(&mut self, ev: StreamEvent<'_>) {
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
        self.finished.push_back(ConnectionFacts {
            tcp,
            tds,
            anomalies,
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
