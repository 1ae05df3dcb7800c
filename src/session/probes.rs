//! Connection attempts that carried no data from the client, gathered per client address:
//! the raw material of a port-scan finding. A scanner opens connections to many ports (or
//! to one port on many hosts) and never speaks; an application that fails to connect retries
//! the same server. Memory is bounded: clients tracked, distinct targets per client and
//! connection ids kept are all capped.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use crate::facts::{ConnectionFacts, ProbeFacts};
use crate::tcp::Direction;

/// Clients whose probes are gathered; later ones are not tracked.
const MAX_CLIENTS: usize = 4_096;
/// Distinct targets remembered per client before counting stops (a full 65,535-port scan
/// of one host fits).
const MAX_TARGETS: usize = 65_536;
/// Targets held in a plain list before a set is built: most clients probe one or two.
const SMALL_TARGETS: usize = 16;
/// Connection ids kept per client, for evidence and for the report to group them.
const MAX_IDS: usize = 16_384;
/// Open targets listed per client.
const MAX_OPEN_LISTED: usize = 32;
/// Targets, hosts, ports and ids remembered over all clients together (a few tens of MB at
/// most): many clients each scanning a large range stop being counted here, not in memory.
const MAX_ENTRIES: usize = 2_000_000;

/// Distinct targets, as a short list first and a set once there are many.
enum Targets {
    Few(Vec<SocketAddr>),
    Many(HashSet<SocketAddr>),
}

impl Targets {
    /// Adds `t`; true when it was new. The caller keeps the count within its cap.
    fn insert(&mut self, t: SocketAddr) -> bool {
        match self {
            Targets::Few(v) => {
                if v.contains(&t) {
                    return false;
                }
                if v.len() < SMALL_TARGETS {
                    v.push(t);
                    return true;
                }
                let mut set: HashSet<SocketAddr> = v.drain(..).collect();
                set.insert(t);
                *self = Targets::Many(set);
                true
            }
            Targets::Many(set) => set.insert(t),
        }
    }

    fn contains(&self, t: &SocketAddr) -> bool {
        match self {
            Targets::Few(v) => v.contains(t),
            Targets::Many(set) => set.contains(t),
        }
    }

    fn len(&self) -> usize {
        match self {
            Targets::Few(v) => v.len(),
            Targets::Many(set) => set.len(),
        }
    }
}

struct ClientProbes {
    facts: ProbeFacts,
    targets: Targets,
    hosts: HashSet<IpAddr>,
    ports: HashSet<u16>,
}

/// Probing connections per client address.
#[derive(Default)]
pub struct Probes {
    clients: HashMap<IpAddr, ClientProbes>,
    /// Set entries and ids held, against [`MAX_ENTRIES`].
    entries: usize,
}

/// A connection attempt in which the client sent no data: it opened (or tried to open) the
/// connection and then left or reset it. Connections picked up mid-stream are not attempts.
pub fn is_probe(c: &ConnectionFacts) -> bool {
    let t = &c.tcp;
    let client = t.dir(Direction::ToServer);
    client.syn.is_some() && !t.mid_stream && client.payload_bytes == 0
}

impl Probes {
    pub fn on_connection(&mut self, c: &ConnectionFacts) {
        if !is_probe(c) {
            return;
        }
        let t = &c.tcp;
        let ip = t.client.ip();
        let id = t.id.0 + 1;
        let Some(syn) = t.dir(Direction::ToServer).syn else {
            return;
        };
        if !self.clients.contains_key(&ip) && self.clients.len() >= MAX_CLIENTS {
            return;
        }
        let cp = self.clients.entry(ip).or_insert_with(|| ClientProbes {
            facts: ProbeFacts {
                client: ip,
                probes: 0,
                targets: 0,
                hosts: 0,
                ports: 0,
                targets_capped: false,
                only_host: Some(t.server.ip()),
                only_port: Some(t.server.port()),
                answered: 0,
                refused: 0,
                unanswered: 0,
                open: Vec::new(),
                first: syn,
                last: syn,
                connections: Vec::new(),
            },
            targets: Targets::Few(Vec::new()),
            hosts: HashSet::new(),
            ports: HashSet::new(),
        });
        let f = &mut cp.facts;
        f.probes += 1;
        if syn.ts < f.first.ts {
            f.first = syn;
        }
        if syn.ts > f.last.ts {
            f.last = syn;
        }
        if f.only_host != Some(t.server.ip()) {
            f.only_host = None;
        }
        if f.only_port != Some(t.server.port()) {
            f.only_port = None;
        }
        if t.syn_ack.is_some() {
            f.answered += 1;
        } else if t.dir(Direction::ToClient).rst.is_some() {
            f.refused += 1;
        } else {
            f.unanswered += 1;
        }
        if t.syn_ack.is_some() && f.open.len() < MAX_OPEN_LISTED && !f.open.contains(&t.server) {
            f.open.push(t.server);
        }
        let room = self.entries < MAX_ENTRIES;
        if !room || cp.targets.len() >= MAX_TARGETS {
            // Counting stops here; this probe may have been to a new target.
            f.targets_capped |= !cp.targets.contains(&t.server);
        } else if cp.targets.insert(t.server) {
            self.entries += 1;
            if cp.hosts.len() < MAX_TARGETS && cp.hosts.insert(t.server.ip()) {
                self.entries += 1;
            }
            if cp.ports.insert(t.server.port()) {
                self.entries += 1;
            }
        }
        if room && f.connections.len() < MAX_IDS {
            f.connections.push(id);
            self.entries += 1;
        }
    }

    /// Every client's probes, by address.
    pub fn into_facts(self) -> Vec<ProbeFacts> {
        let mut out: Vec<ProbeFacts> = self
            .clients
            .into_values()
            .map(|cp| {
                let mut f = cp.facts;
                f.targets = cp.targets.len() as u64;
                f.hosts = cp.hosts.len() as u64;
                f.ports = cp.ports.len() as u64;
                f.open.sort();
                f.connections.sort_unstable();
                f
            })
            .collect();
        out.sort_by_key(|f| f.client);
        out
    }
}
