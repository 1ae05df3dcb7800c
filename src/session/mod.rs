//! Per-connection drivers: receive the TCP tracker's stream events, run protocol framers and
//! state machines over them (later stages), and hand finished [`ConnectionFacts`] on.

use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::facts::ConnectionFacts;
use crate::tcp::{ConnId, StreamEvent, StreamSink, TcpFacts};

/// Collects finished connections in the order they end; the driver drains them after each
/// packet so that nothing accumulates.
#[derive(Default)]
pub struct Sessions {
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

impl StreamSink for Sessions {
    fn on_open(&mut self, _conn: ConnId, _client: SocketAddr, _server: SocketAddr) {}

    fn on_event(&mut self, _ev: StreamEvent<'_>) {}

    fn on_close(&mut self, tcp: TcpFacts) {
        self.finished.push_back(ConnectionFacts {
            tcp,
            tds: None,
            anomalies: Vec::new(),
        });
    }
}
