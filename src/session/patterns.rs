//! Cross-connection aggregates, updated as each connection ends: the servers seen, and the
//! bursts and rates that show patterns no single connection shows (no pooling, mass resets,
//! listen backlog, ephemeral port exhaustion). Memory is bounded: sliding windows of recent
//! events per server and client, and a cap on how many servers and clients are tracked.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use crate::facts::{Burst, ClientFacts, ConnectionFacts, Dialect, ProbeFacts, ServerFacts};
use crate::tcp::{Direction, Mark, TcpEnd};
use crate::time::Timestamp;

/// Servers and clients tracked; past this, new ones are counted but not aggregated.
const MAX_ENDPOINTS: usize = 10_000;
/// Buckets kept per window at most (a guard; [`BUCKETS_KEPT`] normally bounds it first).
const MAX_WINDOW_EVENTS: usize = 4_096;
/// Resets of different connections to one server within this window are one burst.
/// 2 s: a server that aborts its connections (overload, restart, a KILL storm) does so within
/// milliseconds; a window of seconds keeps unrelated resets apart.
pub const MASS_RESET_WINDOW_NS: i64 = 2_000_000_000;
/// Failed connection attempts and accepted ones this close together show a listener that is
/// overloaded rather than down (`gne-causes.md` B3).
pub const BACKLOG_WINDOW_NS: i64 = 5_000_000_000;
/// A client port used again for the same server within this time reused it before TIME_WAIT
/// could have ended on Linux (60 s) — the pool of ephemeral ports is being cycled through.
pub const PORT_REUSE_NS: i64 = 60_000_000_000;
/// (client, port, server) uses remembered for port reuse, across all clients: one client
/// cycling through Linux's whole ephemeral range (28,232 ports) fits, and the memory is fixed.
const MAX_PORTS_REMEMBERED: usize = 32_768;

/// Width of a time bucket. Connections are reported when they end (after a linger), not in
/// time order, so events are counted in buckets that tolerate arrival out of order.
const BUCKET_NS: i64 = 1_000_000_000;
/// Buckets kept behind the newest: events arriving later than this are dropped (they cannot
/// be: the tracker lingers 10 s at most).
const BUCKETS_KEPT: i64 = 120;
/// Connection ids kept per bucket for evidence.
const IDS_PER_BUCKET: usize = 64;

#[derive(Default, Clone)]
struct Bucket {
    count: u64,
    first: Option<Mark>,
    last: Option<Mark>,
    ids: Vec<u32>,
}

/// Events counted per one-second bucket, remembering the largest burst over `span` buckets.
#[derive(Default)]
struct Window {
    buckets: std::collections::BTreeMap<i64, Bucket>,
    best: Option<Burst>,
}

impl Window {
    fn add(&mut self, at: Mark, conn: u32) {
        let b = at.ts.as_nanos().div_euclid(BUCKET_NS);
        let newest = self.buckets.keys().next_back().copied().unwrap_or(b).max(b);
        if b < newest - BUCKETS_KEPT {
            return;
        }
        while self.buckets.len() > MAX_WINDOW_EVENTS {
            self.buckets.pop_first();
        }
        self.buckets.retain(|k, _| *k >= newest - BUCKETS_KEPT);
        let e = self.buckets.entry(b).or_default();
        e.count += 1;
        if e.first.is_none_or(|f| at.ts < f.ts) {
            e.first = Some(at);
        }
        if e.last.is_none_or(|l| at.ts > l.ts) {
            e.last = Some(at);
        }
        if e.ids.len() < IDS_PER_BUCKET {
            e.ids.push(conn);
        }
    }

    fn count(&self, from: i64, span: i64) -> u64 {
        self.buckets
            .range(from..from + span)
            .map(|(_, e)| e.count)
            .sum()
    }

    /// The burst over `span` buckets starting at `from`.
    fn burst(&self, from: i64, span: i64) -> Option<Burst> {
        let mut burst: Option<Burst> = None;
        for e in self.buckets.range(from..from + span).map(|(_, e)| e) {
            let (Some(f), Some(l)) = (e.first, e.last) else {
                continue;
            };
            let b = burst.get_or_insert(Burst {
                count: 0,
                first: f,
                last: l,
                connections: Vec::new(),
            });
            b.count += e.count;
            if f.ts < b.first.ts {
                b.first = f;
            }
            if l.ts > b.last.ts {
                b.last = l;
            }
            b.connections.extend(&e.ids);
        }
        burst
    }

    /// Re-evaluates the windows of `span` buckets that contain bucket `b`; keeps the best one
    /// for which `accept(start)` holds.
    fn update_best(&mut self, b: i64, span: i64, accept: &dyn Fn(i64) -> bool) {
        for start in b - span + 1..=b {
            let n = self.count(start, span);
            if self.best.as_ref().is_some_and(|best| best.count >= n) || !accept(start) {
                continue;
            }
            if let Some(mut burst) = self.burst(start, span) {
                burst.connections.sort_unstable();
                self.best = Some(burst);
            }
        }
    }
}

#[derive(Default)]
struct ServerState {
    facts: ServerFacts,
    resets: Window,
    failures: Window,
    successes: Window,
}

/// Buckets in the mass-reset and backlog windows.
const MASS_RESET_SPAN: i64 = MASS_RESET_WINDOW_NS / BUCKET_NS;
const BACKLOG_SPAN: i64 = BACKLOG_WINDOW_NS / BUCKET_NS;

impl ServerState {
    fn on_reset(&mut self, at: Mark, id: u32) {
        self.resets.add(at, id);
        let b = at.ts.as_nanos().div_euclid(BUCKET_NS);
        self.resets.update_best(b, MASS_RESET_SPAN, &|_| true);
    }

    /// Failed attempts count towards a backlog burst only in windows where the server also
    /// accepted connections.
    fn on_attempt(&mut self, at: Mark, id: u32, failed: bool) {
        let b = at.ts.as_nanos().div_euclid(BUCKET_NS);
        if failed {
            self.failures.add(at, id);
        } else {
            self.successes.add(at, id);
        }
        let successes = &self.successes;
        let accept = |start: i64| successes.count(start, BACKLOG_SPAN) > 0;
        self.failures.update_best(b, BACKLOG_SPAN, &accept);
    }
}

#[derive(Default)]
struct ClientState {
    facts: ClientFacts,
}

type PortKey = (IpAddr, u16, SocketAddr);

/// Recent uses of client ports, oldest first, bounded in count and in time.
#[derive(Default)]
struct RecentPorts {
    last_use: HashMap<PortKey, Timestamp>,
    order: std::collections::VecDeque<(PortKey, Timestamp)>,
}

impl RecentPorts {
    /// Records a use at `ts`; returns the previous use if it was within the reuse window.
    fn use_port(&mut self, key: PortKey, ts: Timestamp) -> Option<Timestamp> {
        while let Some(&(old, at)) = self.order.front() {
            let expired = ts.nanos_since(at) > PORT_REUSE_NS;
            if !expired && self.order.len() < MAX_PORTS_REMEMBERED {
                break;
            }
            self.order.pop_front();
            if self.last_use.get(&old) == Some(&at) {
                self.last_use.remove(&old);
            }
        }
        let previous = self.last_use.insert(key, ts);
        self.order.push_back((key, ts));
        previous.filter(|p| ts.nanos_since(*p) <= PORT_REUSE_NS)
    }
}

/// Aggregates updated per finished connection.
#[derive(Default)]
pub struct Patterns {
    servers: HashMap<SocketAddr, ServerState>,
    clients: HashMap<IpAddr, ClientState>,
    ports: RecentPorts,
    probes: super::probes::Probes,
    /// Endpoints not tracked because of [`MAX_ENDPOINTS`].
    pub untracked: u64,
}

/// A connection that logged in, made few requests and closed within a few seconds: what a
/// client without connection pooling does for every statement (`gne-causes.md` C2).
fn short_sql_connection(c: &ConnectionFacts) -> bool {
    const MAX_REQUESTS: u64 = 3;
    const MAX_DURATION_NS: i64 = 5_000_000_000;
    let Some(t) = c.tds.as_ref().filter(|t| t.dialect == Dialect::Tds7) else {
        return false;
    };
    let logged_in = t.login_ack.is_some() || t.login7.is_some() || t.login7_encrypted.is_some();
    logged_in
        && t.request_count <= MAX_REQUESTS
        && !matches!(c.tcp.end, TcpEnd::Open)
        && c.tcp.last.ts.nanos_since(c.tcp.first.ts) <= MAX_DURATION_NS
}

impl Patterns {
    pub fn on_connection(&mut self, c: &ConnectionFacts) {
        self.probes.on_connection(c);
        let t = &c.tcp;
        let id = t.id.0 + 1;
        let tds = c.tds.as_ref().filter(|t| t.dialect == Dialect::Tds7);
        let tracked = self.servers.len() < MAX_ENDPOINTS || self.servers.contains_key(&t.server);
        if tracked {
            let s = self.servers.entry(t.server).or_default();
            s.facts.address = Some(t.server);
            s.facts.connections += 1;
            s.facts.hinted |= c.known_sql_server == Some(crate::facts::KnownBy::Hint);
            if let Some(tds) = tds {
                s.facts.tds_seen = true;
                let version = tds
                    .login_ack
                    .as_ref()
                    .map(|a| a.server_version.clone())
                    .or_else(|| tds.prelogin_server.as_ref().and_then(|p| p.version.clone()));
                if version.is_some() {
                    s.facts.version = version;
                }
                if let Some(inst) = tds
                    .prelogin_client
                    .as_ref()
                    .and_then(|p| p.instance.clone())
                {
                    s.facts.instance.get_or_insert(inst);
                }
            }
            let client_syn = t.dir(Direction::ToServer).syn;
            let failed_attempt = client_syn.is_some() && t.syn_ack.is_none();
            if let Some(syn) = client_syn {
                s.on_attempt(syn, id, failed_attempt);
            }
            if let TcpEnd::Rst { .. } = t.end {
                if !failed_attempt {
                    let at = [
                        t.dir(Direction::ToServer).rst,
                        t.dir(Direction::ToClient).rst,
                    ]
                    .into_iter()
                    .flatten()
                    .min_by_key(|m| m.ts);
                    if let Some(at) = at {
                        s.on_reset(at, id);
                    }
                }
            }
            s.facts.mass_reset = s.resets.best.clone();
            s.facts.backlog = s.failures.best.clone();
        } else {
            self.untracked += 1;
        }

        let ip = t.client.ip();
        if self.clients.len() >= MAX_ENDPOINTS && !self.clients.contains_key(&ip) {
            self.untracked += 1;
            return;
        }
        let cl = self.clients.entry(ip).or_default();
        cl.facts.address = Some(ip);
        cl.facts.connections += 1;
        let start = t.first.ts;
        cl.facts.first.get_or_insert(t.first);
        cl.facts.last = Some(t.first);
        if short_sql_connection(c) {
            cl.facts.short_sql_connections += 1;
            cl.facts.short_sql_first.get_or_insert(t.first);
            cl.facts.short_sql_last = Some(t.first);
            if cl.facts.short_sql_ids.len() < 16 {
                cl.facts.short_sql_ids.push(id);
            }
        }
        if let Some(syn) = t.dir(Direction::ToServer).syn {
            if self
                .ports
                .use_port((ip, t.client.port(), t.server), start)
                .is_some()
            {
                cl.facts.port_reuses += 1;
                cl.facts.port_reuse_example.get_or_insert(syn);
            }
        }
    }

    /// The aggregates, sorted by address so that reports are stable.
    pub fn into_facts(self) -> (Vec<ServerFacts>, Vec<ClientFacts>, Vec<ProbeFacts>) {
        let mut servers: Vec<ServerFacts> = self.servers.into_values().map(|s| s.facts).collect();
        servers.sort_by_key(|s| s.address);
        let mut clients: Vec<ClientFacts> = self.clients.into_values().map(|c| c.facts).collect();
        clients.sort_by_key(|c| c.address);
        (servers, clients, self.probes.into_facts())
    }
}
