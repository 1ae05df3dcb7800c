//! The simulation: a fixed number of connection slots, each running one TDS connection after
//! another. Every connection plans one stage at a time (handshake, PRELOGIN, LOGIN7, one request
//! and its response, close) as a short list of timed packets; a heap merges all slots into one
//! capture in time order. Nothing depends on the requested output size, so a smaller file is a byte
//! prefix of a larger one made with the same seed and concurrency.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Write};

use crate::rng::Rng;
use crate::tds;
use crate::wire::{self, Endpoint, Segment, ACK, FIN, PSH, RST, SYN};

#[derive(Clone, Debug)]
pub struct Config {
    pub seed: u64,
    /// Connection slots: how many connections are open at once once the ramp-up is over.
    pub concurrency: u32,
    /// Chance, per data segment, that it is lost before the capture point (then retransmitted).
    pub loss_ppm: u32,
    /// Chance, per data segment, that the capture holds it twice.
    pub dup_ppm: u32,
    /// Share of connections that look like loopback flows (127.0.0.1, segments up to 64 KiB).
    pub loopback_ppm: u32,
    /// Share of connections whose SYN is never answered.
    pub unanswered_ppm: u32,
    /// Share of connections refused (SYN answered by RST).
    pub refused_ppm: u32,
    /// Share of connections the server resets instead of answering a request.
    pub server_reset_ppm: u32,
    /// Share of connections the client ends with RST rather than FIN.
    pub client_reset_ppm: u32,
}

impl Config {
    pub fn new(seed: u64, concurrency: u32) -> Self {
        Config {
            seed,
            concurrency,
            loss_ppm: 300,
            dup_ppm: 100,
            loopback_ppm: 50_000,
            unanswered_ppm: 5_000,
            refused_ppm: 5_000,
            server_reset_ppm: 30_000,
            client_reset_ppm: 50_000,
        }
    }
}

/// What was written, counted as it was written (a connection cut off by the size limit counts
/// only the packets that made it into the file).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub bytes: u64,
    pub packets: u64,
    /// Connections with at least one packet in the file (= tshark's TCP conversation count).
    pub connections: u64,
    pub max_open: u64,
    pub first_ts_us: u64,
    pub last_ts_us: u64,
    pub closed_fin: u64,
    pub closed_client_rst: u64,
    pub closed_server_rst: u64,
    pub unanswered: u64,
    pub refused: u64,
    /// Data segments lost before the capture point (absent from the file).
    pub lost_segments: u64,
    pub retransmissions: u64,
    pub syn_retransmissions: u64,
    pub dup_acks: u64,
    pub duplicates: u64,
    /// TDS packets written, by packet type (index = type byte; only 0..=0x12 used).
    pub tds_packets: [u64; 19],
}

impl Stats {
    pub fn to_json(&self) -> String {
        let types: Vec<String> = self
            .tds_packets
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(t, n)| format!("\"0x{t:02x}\": {n}"))
            .collect();
        format!(
            concat!(
                "{{\"bytes\": {}, \"packets\": {}, \"connections\": {}, \"max_open\": {}, ",
                "\"duration_us\": {}, \"closed_fin\": {}, \"closed_client_rst\": {}, ",
                "\"closed_server_rst\": {}, \"unanswered\": {}, \"refused\": {}, ",
                "\"lost_segments\": {}, \"retransmissions\": {}, \"syn_retransmissions\": {}, ",
                "\"dup_acks\": {}, \"duplicates\": {}, \"tds_packets\": {{{}}}}}"
            ),
            self.bytes,
            self.packets,
            self.connections,
            self.max_open,
            self.last_ts_us.saturating_sub(self.first_ts_us),
            self.closed_fin,
            self.closed_client_rst,
            self.closed_server_rst,
            self.unanswered,
            self.refused,
            self.lost_segments,
            self.retransmissions,
            self.syn_retransmissions,
            self.dup_acks,
            self.duplicates,
            types.join(", ")
        )
    }
}

const CLIENT: usize = 0;
const SERVER: usize = 1;
/// Payload per segment on an Ethernet path: MSS 1460 less 12 bytes of timestamp option.
const ETH_SEG: usize = 1448;
/// Capture starts at this Unix time (2026-01-15 09:00:00 UTC), in µs.
const EPOCH_US: u64 = 1_768_467_600_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mark {
    Normal,
    /// Lost before the capture point: sent (sequence space used) but not written.
    Lost,
    /// Written twice.
    Twice,
    Retransmission,
    SynRetransmission,
    DupAck,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opts {
    None,
    Syn,
    Data,
}

#[derive(Clone, Copy, Debug)]
struct Step {
    at: u64,
    from: usize,
    flags: u8,
    seq: u32,
    ack: u32,
    window: u16,
    /// Range of `Conn::msg[from]` carried as payload.
    data_start: u32,
    data_len: u32,
    mark: Mark,
    opts: Opts,
    sack: Option<(u32, u32)>,
    /// Marks the packet that finishes the connection (for the open-connections count).
    last: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Handshake,
    Prelogin,
    Login,
    Work,
    Close,
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opening {
    Normal,
    Unanswered,
    Refused,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    ClientFin,
    ServerFin,
    ClientRst,
    ServerRst,
}

const USERS: [&str; 5] = [
    "svc_orders",
    "svc_billing",
    "app_reader",
    "etl_loader",
    "reporting",
];
const APPS: [&str; 5] = [
    "OrdersService",
    "BillingWorker",
    "ReportPortal",
    "NightlyETL",
    "InventoryApi",
];
const DATABASES: [&str; 4] = ["SalesDb", "Billing", "Inventory", "Reporting"];
const SERVER_NAMES: [&str; 4] = ["SQLPROD01", "SQLPROD02", "SQLPROD03", "SQLPROD04"];

struct Conn {
    rng: Rng,
    ep: [Endpoint; 2],
    ttl: [u8; 2],
    ip_id: [u16; 2],
    ts_base: [u32; 2],
    last_tsval: [u32; 2],
    snd: [u32; 2],
    window: [u16; 2],
    syn_window: [u16; 2],
    loopback: bool,
    rtt_us: u64,
    spid: u16,
    opening: Opening,
    ending: Ending,
    stage: Stage,
    exchanges_left: u32,
    names: usize,
    steps: VecDeque<Step>,
    msg: [Vec<u8>; 2],
    /// Scratch for a message body before it is cut into TDS packets.
    body: Vec<u8>,
    seen: bool,
}

/// Pacing of a sender's back-to-back segments, µs.
fn seg_gap(rng: &mut Rng, loopback: bool, len: usize) -> u64 {
    if loopback {
        2 + (len as u64) / 3000 + rng.below(8)
    } else {
        // about a gigabit link's serialisation time, with jitter
        1 + (len as u64) * 8 / 1000 + rng.below(6)
    }
}

impl Conn {
    fn new(cfg: &Config, no: u64, loopback_no: &mut u64) -> Self {
        let mut rng = Rng::derive(cfg.seed, no);
        let loopback = rng.chance(cfg.loopback_ppm);
        let client_k = no % 4000;
        let (client, server) = if loopback {
            let port = 49152 + (*loopback_no % 16384) as u16;
            *loopback_no += 1;
            (
                Endpoint {
                    mac: [0; 6],
                    ip: [127, 0, 0, 1],
                    port,
                },
                Endpoint {
                    mac: [0; 6],
                    ip: [127, 0, 0, 1],
                    port: 1433,
                },
            )
        } else {
            let q = no / 4000;
            let port = 49152 + ((q * 7 + client_k) % 16384) as u16;
            let srv = (client_k % 4) as u8;
            (
                Endpoint {
                    mac: [
                        0x00,
                        0x50,
                        0x56,
                        0x01,
                        (client_k >> 8) as u8,
                        client_k as u8,
                    ],
                    ip: [10, 1, (client_k / 250) as u8, (client_k % 250) as u8 + 1],
                    port,
                },
                Endpoint {
                    mac: [0x00, 0x15, 0x5D, 0x00, 0x00, 0x0A + srv],
                    ip: [10, 0, 0, 10 + srv],
                    port: 1433,
                },
            )
        };
        let roll = rng.below(1_000_000) as u32;
        let opening = if roll < cfg.unanswered_ppm {
            Opening::Unanswered
        } else if roll < cfg.unanswered_ppm + cfg.refused_ppm {
            Opening::Refused
        } else {
            Opening::Normal
        };
        let roll = rng.below(1_000_000) as u32;
        let ending = if roll < cfg.server_reset_ppm {
            Ending::ServerRst
        } else if roll < cfg.server_reset_ppm + cfg.client_reset_ppm {
            Ending::ClientRst
        } else if roll < cfg.server_reset_ppm + cfg.client_reset_ppm + 30_000 {
            Ending::ServerFin
        } else {
            Ending::ClientFin
        };
        let rtt_us = if loopback {
            rng.range(10, 40)
        } else {
            rng.log_range(150, 3000)
        };
        let exchanges_left = rng.range(1, 10) as u32;
        let mut ip_id = [0u16; 2];
        ip_id[0] = rng.next_u32() as u16;
        ip_id[1] = rng.next_u32() as u16;
        let ts_base = [rng.next_u32(), rng.next_u32()];
        let snd = [rng.next_u32(), rng.next_u32()];
        let spid = rng.range(51, 900) as u16;
        let names = rng.below(1 << 20) as usize;
        Conn {
            rng,
            ep: [client, server],
            ttl: if loopback { [64, 64] } else { [127, 64] },
            ip_id,
            ts_base,
            last_tsval: [0, 0],
            snd,
            // Windows clients scale by 8, Linux servers by 7: both about 512 KiB, far above any
            // message in flight, so no window-full noise.
            window: [2052, 4106],
            syn_window: [64240, 65160],
            loopback,
            rtt_us,
            spid,
            opening,
            ending,
            stage: Stage::Handshake,
            exchanges_left,
            names,
            steps: VecDeque::new(),
            msg: [Vec::new(), Vec::new()],
            body: Vec::new(),
            seen: false,
        }
    }

    /// Delay from a packet at the capture point to the other side's reply reaching it: the
    /// capture sits next to the server, so the server answers in µs and the client after a round trip.
    fn reply_delay(&mut self, replier: usize) -> u64 {
        if self.loopback {
            self.rng.range(5, 30)
        } else if replier == SERVER {
            self.rng.range(15, 60)
        } else {
            self.rtt_us + self.rng.below(self.rtt_us / 4 + 1)
        }
    }

    fn push(
        &mut self,
        at: u64,
        from: usize,
        flags: u8,
        seq: u32,
        ack: u32,
        opts: Opts,
    ) -> &mut Step {
        let window = if flags & SYN != 0 {
            self.syn_window[from]
        } else {
            self.window[from]
        };
        self.steps.push_back(Step {
            at,
            from,
            flags,
            seq,
            ack,
            window,
            data_start: 0,
            data_len: 0,
            mark: Mark::Normal,
            opts,
            sack: None,
            last: false,
        });
        self.steps.back_mut().expect("just pushed")
    }

    /// Plans the next stage starting at `t`. Returns false once the connection is finished.
    fn plan(&mut self, t: u64, cfg: &Config) -> bool {
        match self.stage {
            Stage::Handshake => self.plan_handshake(t),
            Stage::Prelogin => {
                let mut rng = self.rng.clone();
                self.msg[CLIENT].clear();
                self.body.clear();
                tds::prelogin_request(&mut self.body, &mut rng);
                tds::packetize(&mut self.msg[CLIENT], tds::PKT_PRELOGIN, &self.body, 0);
                self.body.clear();
                tds::prelogin_response(&mut self.body);
                self.msg[SERVER].clear();
                tds::packetize(&mut self.msg[SERVER], tds::PKT_TABULAR, &self.body, 0);
                self.rng = rng;
                let exec = self.rng.range(40, 300);
                self.plan_exchange(t, exec, cfg);
                self.stage = Stage::Login;
            }
            Stage::Login => {
                let mut rng = self.rng.clone();
                let n = self.names;
                let host = format!("APPSRV-{:03}", n % 240);
                let server = SERVER_NAMES[n % SERVER_NAMES.len()];
                let database = DATABASES[(n / 7) % DATABASES.len()];
                let names = tds::LoginNames {
                    host: &host,
                    user: USERS[(n / 3) % USERS.len()],
                    app: APPS[(n / 5) % APPS.len()],
                    server,
                    database,
                };
                self.body.clear();
                tds::login7(&mut self.body, &names, &mut rng);
                self.msg[CLIENT].clear();
                tds::packetize(&mut self.msg[CLIENT], tds::PKT_LOGIN7, &self.body, 0);
                self.body.clear();
                tds::login_response(&mut self.body, server, database);
                self.msg[SERVER].clear();
                tds::packetize(
                    &mut self.msg[SERVER],
                    tds::PKT_TABULAR,
                    &self.body,
                    self.spid,
                );
                self.rng = rng;
                let exec = self.rng.log_range(800, 20_000);
                self.plan_exchange(t, exec, cfg);
                self.stage = Stage::Work;
            }
            Stage::Work => {
                self.build_request_response();
                let exec = if self.rng.chance(10_000) {
                    self.rng.log_range(100_000, 3_000_000)
                } else {
                    self.rng.log_range(80, 30_000)
                };
                self.exchanges_left = self.exchanges_left.saturating_sub(1);
                if self.exchanges_left == 0 && self.ending == Ending::ServerRst {
                    self.plan_message(t, CLIENT, cfg);
                    let at = self.steps.back().map_or(t, |s| s.at) + exec;
                    let (seq, ack) = (self.snd[SERVER], self.snd[CLIENT]);
                    let s = self.push(at, SERVER, RST | ACK, seq, ack, Opts::None);
                    s.window = 0;
                    s.last = true;
                    self.stage = Stage::Done;
                } else {
                    self.plan_exchange(t, exec, cfg);
                    if self.exchanges_left == 0 {
                        self.stage = Stage::Close;
                    }
                }
            }
            Stage::Close => self.plan_close(t),
            Stage::Done => return false,
        }
        true
    }

    /// Think time before the next stage, µs.
    fn think(&mut self) -> u64 {
        match self.stage {
            Stage::Prelogin => self.rng.range(100, 1000),
            Stage::Login => self.rng.range(100, 400),
            Stage::Handshake | Stage::Done => 0,
            Stage::Work | Stage::Close => {
                if self.rng.chance(10_000) {
                    self.rng.log_range(1_000_000, 10_000_000)
                } else {
                    self.rng.log_range(300, 500_000)
                }
            }
        }
    }

    fn plan_handshake(&mut self, t: u64) {
        let isn = self.snd;
        match self.opening {
            Opening::Unanswered => {
                // The client's SYN and its retransmissions at +1 s and +3 s, then it gives up.
                self.push(t, CLIENT, SYN, isn[CLIENT], 0, Opts::Syn);
                self.push(t + 1_000_000, CLIENT, SYN, isn[CLIENT], 0, Opts::Syn)
                    .mark = Mark::SynRetransmission;
                let s = self.push(t + 3_000_000, CLIENT, SYN, isn[CLIENT], 0, Opts::Syn);
                s.mark = Mark::SynRetransmission;
                s.last = true;
                self.stage = Stage::Done;
            }
            Opening::Refused => {
                self.push(t, CLIENT, SYN, isn[CLIENT], 0, Opts::Syn);
                let d = self.reply_delay(SERVER);
                let s = self.push(
                    t + d,
                    SERVER,
                    RST | ACK,
                    0,
                    isn[CLIENT].wrapping_add(1),
                    Opts::None,
                );
                s.window = 0;
                s.last = true;
                self.stage = Stage::Done;
            }
            Opening::Normal => {
                self.push(t, CLIENT, SYN, isn[CLIENT], 0, Opts::Syn);
                let t1 = t + self.reply_delay(SERVER);
                self.push(
                    t1,
                    SERVER,
                    SYN | ACK,
                    isn[SERVER],
                    isn[CLIENT].wrapping_add(1),
                    Opts::Syn,
                );
                let t2 = t1 + self.reply_delay(CLIENT);
                self.snd = [isn[CLIENT].wrapping_add(1), isn[SERVER].wrapping_add(1)];
                self.push(
                    t2,
                    CLIENT,
                    ACK,
                    self.snd[CLIENT],
                    self.snd[SERVER],
                    Opts::Data,
                );
                self.stage = Stage::Prelogin;
            }
        }
    }

    fn plan_close(&mut self, t: u64) {
        let (c, s) = (self.snd[CLIENT], self.snd[SERVER]);
        match self.ending {
            Ending::ClientRst | Ending::ServerRst => {
                let st = self.push(t, CLIENT, RST | ACK, c, s, Opts::None);
                st.window = 0;
                st.last = true;
            }
            Ending::ClientFin => {
                self.push(t, CLIENT, FIN | ACK, c, s, Opts::Data);
                let t1 = t + self.reply_delay(SERVER);
                self.push(t1, SERVER, FIN | ACK, s, c.wrapping_add(1), Opts::Data);
                let t2 = t1 + self.reply_delay(CLIENT);
                self.push(
                    t2,
                    CLIENT,
                    ACK,
                    c.wrapping_add(1),
                    s.wrapping_add(1),
                    Opts::Data,
                )
                .last = true;
            }
            Ending::ServerFin => {
                self.push(t, SERVER, FIN | ACK, s, c, Opts::Data);
                let t1 = t + self.reply_delay(CLIENT);
                self.push(t1, CLIENT, FIN | ACK, c, s.wrapping_add(1), Opts::Data);
                let t2 = t1 + self.reply_delay(SERVER);
                self.push(
                    t2,
                    SERVER,
                    ACK,
                    s.wrapping_add(1),
                    c.wrapping_add(1),
                    Opts::Data,
                )
                .last = true;
            }
        }
        self.snd = [c.wrapping_add(1), s.wrapping_add(1)];
        self.stage = Stage::Done;
    }

    /// The client's message, the server's work time, then the server's reply.
    fn plan_exchange(&mut self, t: u64, exec_us: u64, cfg: &Config) {
        let t_req_end = self.plan_message(t, CLIENT, cfg);
        self.plan_message(t_req_end + exec_us, SERVER, cfg);
    }

    /// Cuts `msg[from]` into segments starting at `t0`, with the receiver's ACKs, an occasional
    /// loss (then dup ACKs with SACK and a fast retransmission, or a timeout retransmission at the
    /// tail) and duplicates. Returns the time the last data segment reaches the capture point.
    fn plan_message(&mut self, t0: u64, from: usize, cfg: &Config) -> u64 {
        let to = 1 - from;
        let total = self.msg[from].len();
        let base = self.snd[from];
        let peer_seq = self.snd[to];
        let mut bounds: Vec<(usize, usize)> = Vec::new();
        let mut off = 0;
        while off < total {
            let len = if self.loopback {
                // Loopback / segmentation-offload captures: several TDS packets per segment.
                let k = self.rng.range(1, 16) as usize;
                (k * tds::PACKET_SIZE).min(wire::MAX_PAYLOAD_WITH_TS)
            } else {
                ETH_SEG
            }
            .min(total - off);
            bounds.push((off, len));
            off += len;
        }
        let n = bounds.len();
        let mut t = t0;
        let mut last_ack_at = t0;
        let mut unacked = 0u32;
        let mut hole: Option<(usize, usize)> = None; // (segment index, dup acks so far)
        let mut last_data_at = t0;
        for (i, &(off, len)) in bounds.iter().enumerate() {
            if i > 0 {
                t += seg_gap(&mut self.rng, self.loopback, len);
            }
            let seq = base.wrapping_add(off as u32);
            let end = seq.wrapping_add(len as u32);
            let flags = if i + 1 == n { ACK | PSH } else { ACK };
            let lost = hole.is_none() && self.rng.chance(cfg.loss_ppm);
            let twice = !lost && self.rng.chance(cfg.dup_ppm);
            let s = self.push(t, from, flags, seq, peer_seq, Opts::Data);
            s.data_start = off as u32;
            s.data_len = len as u32;
            s.mark = if lost {
                Mark::Lost
            } else if twice {
                Mark::Twice
            } else {
                Mark::Normal
            };
            last_data_at = t;
            if lost {
                hole = Some((i, 0));
                if i + 1 == n {
                    // Tail loss: nothing follows to trigger dup ACKs, so the retransmission
                    // timer fires (at least 200 ms on Linux).
                    t += self.rng.range(200_000, 240_000);
                    let r = self.push(t, from, flags, seq, peer_seq, Opts::Data);
                    r.data_start = off as u32;
                    r.data_len = len as u32;
                    r.mark = Mark::Retransmission;
                    last_data_at = t;
                    let at = t + self.reply_delay(to);
                    self.push(at, to, ACK, peer_seq, end, Opts::Data);
                    last_ack_at = at;
                    hole = None;
                }
                continue;
            }
            let arrive = (t + self.reply_delay(to)).max(last_ack_at + 1);
            if let Some((lost_i, dups)) = hole {
                let (l_off, l_len) = bounds[lost_i];
                let l_seq = base.wrapping_add(l_off as u32);
                let s = self.push(arrive, to, ACK, peer_seq, l_seq, Opts::Data);
                s.sack = Some((l_seq.wrapping_add(l_len as u32), end));
                s.mark = Mark::DupAck;
                last_ack_at = arrive;
                let dups = dups + 1;
                if dups == 3 || i + 1 == n {
                    let tr = arrive + self.reply_delay(from);
                    let l_flags = if lost_i + 1 == n { ACK | PSH } else { ACK };
                    let r = self.push(tr, from, l_flags, l_seq, peer_seq, Opts::Data);
                    r.data_start = l_off as u32;
                    r.data_len = l_len as u32;
                    r.mark = Mark::Retransmission;
                    last_data_at = tr;
                    let ta = tr + self.reply_delay(to);
                    self.push(ta, to, ACK, peer_seq, end, Opts::Data);
                    last_ack_at = ta;
                    // The sender resumes after the recovery.
                    t = tr;
                    hole = None;
                    unacked = 0;
                } else {
                    hole = Some((lost_i, dups));
                }
                continue;
            }
            unacked += 1;
            if unacked == 2 || i + 1 == n {
                self.push(arrive, to, ACK, peer_seq, end, Opts::Data);
                last_ack_at = arrive;
                unacked = 0;
            }
        }
        self.snd[from] = base.wrapping_add(total as u32);
        // Steps were appended per sender in time order; interleave them by time.
        self.steps.make_contiguous().sort_by_key(|s| s.at);
        last_data_at
    }

    fn build_request_response(&mut self) {
        let mut rng = self.rng.clone();
        self.body.clear();
        self.msg[CLIENT].clear();
        self.msg[SERVER].clear();
        let id = rng.range(1, 2_000_000) as i32;
        let roll = rng.below(1000);
        let spid = self.spid;
        let mut resp = Vec::new();
        let req_type;
        if roll < 200 {
            let rows = rng.range(0, 50);
            tds::rpc_executesql(
                &mut self.body,
                "SELECT OrderId, CustomerName, Quantity, Total FROM dbo.Orders WHERE OrderId > @id ORDER BY OrderId OFFSET 0 ROWS FETCH NEXT 50 ROWS ONLY",
                id,
            );
            req_type = tds::PKT_RPC;
            if rows > 0 {
                tds::result_set(&mut resp, &mut rng, rows, tds::DONEINPROC, tds::DONE_MORE);
            }
            resp.push(0x79); // RETURNSTATUS
            resp.extend_from_slice(&0i32.to_le_bytes());
            tds::done(&mut resp, tds::DONEPROC, 0, 0x00E0, 0);
        } else {
            req_type = tds::PKT_SQL_BATCH;
            let text;
            if roll < 580 {
                text = format!(
                    "SELECT OrderId, CustomerName, Quantity, Total FROM dbo.Orders WHERE CustomerId = {id} ORDER BY OrderId;"
                );
                let rows = rng.range(1, 20);
                tds::result_set(&mut resp, &mut rng, rows, tds::DONE, 0);
            } else if roll < 730 {
                text = if roll % 2 == 0 {
                    format!("UPDATE dbo.Orders SET Status = 2, ModifiedAt = SYSUTCDATETIME() WHERE OrderId = {id};")
                } else {
                    format!("INSERT INTO dbo.AuditLog (EventType, EntityId, CreatedAt) VALUES (N'order.viewed', {id}, SYSUTCDATETIME());")
                };
                tds::done(
                    &mut resp,
                    tds::DONE,
                    tds::DONE_COUNT,
                    if roll % 2 == 0 { 0x00C5 } else { 0x00C3 },
                    1,
                );
            } else if roll < 780 {
                text = "SET NOCOUNT ON; SET XACT_ABORT ON; SET TRANSACTION ISOLATION LEVEL READ COMMITTED;".to_string();
                tds::done(&mut resp, tds::DONE, 0, 0x00C1, 0);
            } else if roll < 930 {
                text = format!(
                    "SELECT OrderId, CustomerName, Quantity, Total FROM dbo.Orders WHERE RegionId = {} AND OrderDate >= DATEADD(day, -30, SYSUTCDATETIME());",
                    id % 50
                );
                let rows = rng.range(50, 400);
                tds::result_set(&mut resp, &mut rng, rows, tds::DONE, 0);
            } else if roll < 955 {
                text = "SELECT OrderId, CustomerName, Quantity, Total FROM dbo.Orders WITH (NOLOCK) ORDER BY OrderDate DESC;".to_string();
                let rows = rng.range(600, 2600);
                tds::result_set(&mut resp, &mut rng, rows, tds::DONE, 0);
            } else if roll < 975 {
                // A long IN list: a request that spans several TDS packets.
                let mut s = String::from("SELECT OrderId, CustomerName, Quantity, Total FROM dbo.Orders WHERE OrderId IN (");
                let count = rng.range(300, 1200);
                for k in 0..count {
                    if k > 0 {
                        s.push_str(", ");
                    }
                    s.push_str(&(id as u64 + k * 7).to_string());
                }
                s.push_str(");");
                text = s;
                let rows = rng.range(20, 300);
                tds::result_set(&mut resp, &mut rng, rows, tds::DONE, 0);
            } else {
                text = format!(
                    "SELECT TOP (10) * FROM dbo.OrderArchive{} WHERE OrderId = {id};",
                    id % 9
                );
                let msg = format!("Invalid object name 'dbo.OrderArchive{}'.", id % 9);
                tds::info_or_error(
                    &mut resp,
                    0xAA,
                    208,
                    1,
                    16,
                    &msg,
                    SERVER_NAMES[self.names % SERVER_NAMES.len()],
                );
                tds::done(&mut resp, tds::DONE, tds::DONE_ERROR, 0x00C1, 0);
            }
            tds::sql_batch(&mut self.body, &text);
        }
        tds::packetize(&mut self.msg[CLIENT], req_type, &self.body, spid);
        tds::packetize(&mut self.msg[SERVER], tds::PKT_TABULAR, &resp, spid);
        self.rng = rng;
    }
}

pub struct Generator<W: Write> {
    cfg: Config,
    out: W,
    slots: Vec<Conn>,
    heap: BinaryHeap<Reverse<(u64, u32)>>,
    next_no: u64,
    loopback_no: u64,
    rng: Rng,
    last_ts: u64,
    open: u64,
    frame: Vec<u8>,
    opts: Vec<u8>,
    pub stats: Stats,
}

impl<W: Write> Generator<W> {
    pub fn new(cfg: Config, mut out: W) -> io::Result<Self> {
        wire::write_global_header(&mut out)?;
        let mut g = Generator {
            rng: Rng::derive(cfg.seed, u64::MAX),
            cfg,
            out,
            slots: Vec::new(),
            heap: BinaryHeap::new(),
            next_no: 0,
            loopback_no: 0,
            last_ts: EPOCH_US,
            open: 0,
            frame: Vec::with_capacity(70_000),
            opts: Vec::with_capacity(40),
            stats: Stats {
                bytes: 24,
                ..Stats::default()
            },
        };
        // Connections start over the first second rather than all in the same microsecond.
        for slot in 0..g.cfg.concurrency {
            let start = EPOCH_US + g.rng.below(1_000_000);
            let mut conn = Conn::new(&g.cfg, g.next_no, &mut g.loopback_no);
            g.next_no += 1;
            conn.plan(start, &g.cfg);
            if let Some(s) = conn.steps.front() {
                g.heap.push(Reverse((s.at, slot)));
            }
            g.slots.push(conn);
        }
        Ok(g)
    }

    /// Writes packets until the file holds at least `limit_bytes` (stopping after the packet that
    /// crosses it, so the file ends on a record boundary).
    pub fn run(&mut self, limit_bytes: u64) -> io::Result<()> {
        while self.stats.bytes < limit_bytes {
            let Some(Reverse((_, slot))) = self.heap.pop() else {
                break;
            };
            let idx = slot as usize;
            let Some(step) = self.slots[idx].steps.pop_front() else {
                continue;
            };
            let t = step.at.max(self.last_ts + 1);
            self.emit(idx, &step, t)?;
            if self.slots[idx].steps.is_empty() {
                let think = self.slots[idx].think();
                let cfg = self.cfg.clone();
                if !self.slots[idx].plan(t + think, &cfg) {
                    let gap = self.rng.log_range(100, 50_000);
                    let mut conn = Conn::new(&self.cfg, self.next_no, &mut self.loopback_no);
                    self.next_no += 1;
                    conn.plan(t + gap, &cfg);
                    self.slots[idx] = conn;
                }
            }
            if let Some(next) = self.slots[idx].steps.front() {
                self.heap.push(Reverse((next.at.max(t), slot)));
            }
        }
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    fn emit(&mut self, idx: usize, step: &Step, t: u64) -> io::Result<()> {
        let conn = &mut self.slots[idx];
        let from = step.from;
        let to = 1 - from;
        let tsval = conn.ts_base[from].wrapping_add((t / 1000) as u32);
        let tsecr = conn.last_tsval[to];
        let ip_id = conn.ip_id[from];
        conn.ip_id[from] = ip_id.wrapping_add(1);
        if step.mark == Mark::Lost {
            self.stats.lost_segments += 1;
            return Ok(());
        }
        conn.last_tsval[from] = tsval;
        match step.opts {
            Opts::None => self.opts.clear(),
            Opts::Syn => {
                let (mss, wscale) = match (conn.loopback, from) {
                    (true, _) => (65_495, 7),
                    (false, CLIENT) => (1460, 8),
                    (false, _) => (1460, 7),
                };
                wire::syn_options(
                    &mut self.opts,
                    mss,
                    wscale,
                    tsval,
                    if step.flags & ACK != 0 { tsecr } else { 0 },
                );
            }
            Opts::Data => wire::data_options(&mut self.opts, tsval, tsecr, step.sack),
        }
        let start = step.data_start as usize;
        let payload = &conn.msg[from][start..start + step.data_len as usize];
        wire::build_frame(
            &mut self.frame,
            &Segment {
                src: &conn.ep[from],
                dst: &conn.ep[to],
                ip_id,
                ttl: conn.ttl[from],
                seq: step.seq,
                ack: step.ack,
                flags: step.flags,
                window: step.window,
                options: &self.opts,
                payload,
            },
        );
        // Count TDS packet headers that start in this segment (all our segment boundaries fall on
        // TDS packet boundaries or inside them; count by walking the message once per message).
        if step.mark != Mark::Retransmission {
            count_tds_headers(
                &conn.msg[from],
                start,
                step.data_len as usize,
                &mut self.stats.tds_packets,
            );
        }
        let copies = if step.mark == Mark::Twice { 2 } else { 1 };
        for ts in t..t + copies {
            wire::write_record(&mut self.out, ts, &self.frame)?;
            self.stats.packets += 1;
            self.stats.bytes += 16 + self.frame.len() as u64;
            self.last_ts = ts;
        }
        if self.stats.first_ts_us == 0 {
            self.stats.first_ts_us = t;
        }
        self.stats.last_ts_us = self.last_ts;
        match step.mark {
            Mark::Twice => self.stats.duplicates += 1,
            Mark::Retransmission => self.stats.retransmissions += 1,
            Mark::SynRetransmission => self.stats.syn_retransmissions += 1,
            Mark::DupAck => self.stats.dup_acks += 1,
            Mark::Normal | Mark::Lost => {}
        }
        if !conn.seen {
            conn.seen = true;
            self.stats.connections += 1;
            self.open += 1;
            self.stats.max_open = self.stats.max_open.max(self.open);
        }
        if step.last {
            self.open = self.open.saturating_sub(1);
            match (conn.opening, conn.ending) {
                (Opening::Unanswered, _) => self.stats.unanswered += 1,
                (Opening::Refused, _) => self.stats.refused += 1,
                (_, Ending::ClientFin | Ending::ServerFin) => self.stats.closed_fin += 1,
                (_, Ending::ClientRst) => self.stats.closed_client_rst += 1,
                (_, Ending::ServerRst) => self.stats.closed_server_rst += 1,
            }
        }
        Ok(())
    }
}

/// Counts TDS packet headers whose first byte lies in `msg[start..start+len]`. Messages are
/// concatenations of whole TDS packets, so headers are found by walking lengths from the start.
fn count_tds_headers(msg: &[u8], start: usize, len: usize, counts: &mut [u64; 19]) {
    let mut pos = 0usize;
    while pos < start + len && pos + 4 <= msg.len() {
        if pos >= start {
            let t = msg[pos] as usize;
            if t < counts.len() {
                counts[t] += 1;
            }
        }
        let plen = u16::from_be_bytes([msg[pos + 2], msg[pos + 3]]) as usize;
        if plen == 0 {
            break;
        }
        pos += plen;
    }
}
