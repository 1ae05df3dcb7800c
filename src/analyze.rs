//! The driver: runs every stage over the inputs, one frame at a time, and hands each
//! connection's report to the writer as soon as the connection ends.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};

use crate::capture::{self, FrameSource};
use crate::decode::{Decoded, Decoder};
use crate::diagnose;
use crate::facts::{CaptureFacts, InputDamage};
use crate::facts::{ExchangeFacts, ServerFacts, SsrpAnnouncement};
use crate::limits::Limits;
use crate::report::model::{Connection, Exchange, Input, Severity, Totals};
use crate::report::{self, ReportWriter};
use crate::session::exchanges::{ExchangeEvent, ExchangeTracker, KerberosTicketAnswer};
use crate::session::forward::{replay, Batch, Forwarder};
use crate::session::patterns::Patterns;
use crate::session::Sessions;
use crate::tcp::Tracker;
use crate::time::Timestamp;

/// What the user asked for, resolved.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub limits: Limits,
    pub settings: diagnose::Settings,
    /// Add each connection's milestone timeline to the report.
    pub verbose: bool,
    /// Endpoints the user says are SQL Server (`--server`).
    pub hints: Vec<crate::session::ServerHint>,
}

/// How far the run has got, for a progress bar.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// What the caller needs to choose an exit code and print errors.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Inputs that could not be opened or are not captures: one line each for stderr.
    pub input_errors: Vec<capture::Error>,
    /// Inputs damaged part-way (reported as `capture.malformed` too).
    pub damaged_inputs: Vec<capture::Error>,
    /// True when any finding has severity `error`.
    pub error_findings: bool,
    pub connections: u64,
}

/// Connections closed at a time at the end of the capture before their reports are written.
const FINISH_BATCH: usize = 256;

/// Frames between progress callbacks: often enough for a smooth bar, rare enough to cost nothing.
const PROGRESS_EVERY_FRAMES: u64 = 8192;

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// What the reporting thread gives back when the capture is done.
struct Reported {
    patterns: Patterns,
    outcomes: BTreeMap<&'static str, u64>,
    connections: u64,
    error_findings: bool,
    exchanges: Vec<Exchange>,
    exchanges_not_listed: u64,
    /// ip:port the SQL Browser announced, with instance and version.
    ssrp_servers: BTreeMap<std::net::SocketAddr, (String, String)>,
}

/// Exchanges listed in the report; beyond, they are diagnosed and counted only (a capture
/// of a busy resolver holds millions of lookups).
const MAX_EXCHANGES: usize = 10_000;
/// Recent SSRP answers kept for matching the connections that follow them.
const RECENT_SSRP_ANSWERS: usize = 64;
/// SSRP-announced endpoints kept for the `servers` list.
const MAX_SSRP_SERVERS: usize = 1024;

/// A connection that follows an exchange this soon is the one the exchange was for.
const EXCHANGE_LINK_NS: i64 = 30_000_000_000;
/// Recent listed exchanges, and recent connections, kept for linking the two (whichever is
/// reported first waits for the other).
const RECENT_FOR_LINKS: usize = 256;

/// What links a listed exchange to the connections after it.
struct ExchangeLink {
    /// Index into `Reported::exchanges` (before sorting).
    index: usize,
    client: std::net::IpAddr,
    start: crate::time::Timestamp,
    /// Server addresses the connection may go to (any port unless `port`).
    servers: Vec<std::net::IpAddr>,
    port: Option<u16>,
    /// A Kerberos ticket request may also come while the connection is open (FreeTDS asks
    /// for it after PRELOGIN).
    during: bool,
}

impl ExchangeLink {
    fn new(index: usize, e: &ExchangeFacts) -> Option<ExchangeLink> {
        use crate::facts::{ExchangeRequest as Req, ExchangeResponseBody as Body};
        let mut servers = Vec::new();
        let mut port = None;
        let during = matches!(e.request, Req::Kerberos { .. });
        match &e.request {
            Req::Ssrp { .. } => servers.extend(e.responses.iter().map(|r| r.from.ip())),
            Req::Dns { .. } => {
                for r in &e.responses {
                    if let Body::Dns { addresses, .. } = &r.body {
                        servers.extend(addresses.iter().copied());
                    }
                }
            }
            Req::Kerberos { sname, .. } => {
                // MSSQLSvc/host:port names the port; the host is a name, not an address.
                let (service, rest) = sname.split_once('/')?;
                if !service.eq_ignore_ascii_case("MSSQLSvc") {
                    return None;
                }
                port = Some(rest.rsplit_once(':')?.1.parse().ok()?);
            }
        }
        if servers.is_empty() && port.is_none() {
            return None;
        }
        Some(ExchangeLink {
            index,
            client: e.client.ip(),
            start: e.first.ts,
            servers,
            port,
            during,
        })
    }

    fn matches(&self, c: &ConnectionStart) -> bool {
        let after = c.start.nanos_since(self.start);
        let open_then = self.during && self.start >= c.start && self.start <= c.end;
        c.client == self.client
            && ((0..=EXCHANGE_LINK_NS).contains(&after) || open_then)
            && (self.servers.is_empty() || self.servers.contains(&c.server.ip()))
            && self.port.is_none_or(|p| p == c.server.port())
    }
}

/// KDC answers kept for linking to the connections after them.
const RECENT_KERBEROS_TICKETS: usize = 64;

/// For a SQL Server SPN (`MSSQLSvc/host:port`, or `MSSQLSvc/host` / `MSSQLSvc/host:instance`,
/// which name no port): Some(the port, if it names one). None for any other service.
fn sql_spn_port(spn: &str) -> Option<Option<u16>> {
    let (service, rest) = spn.split_once('/')?;
    if !service.eq_ignore_ascii_case("MSSQLSvc") {
        return None;
    }
    Some(rest.rsplit_once(':').and_then(|(_, p)| p.parse().ok()))
}

/// A SQL connection's start, for linking it to the exchange before it.
struct ConnectionStart {
    id: u32,
    client: std::net::IpAddr,
    server: std::net::SocketAddr,
    start: crate::time::Timestamp,
    end: crate::time::Timestamp,
}

/// The reporting side's view of UDP exchanges: diagnoses settled ones and remembers recent
/// SSRP answers.
#[derive(Default)]
struct ExchangeReports {
    recent_answers: std::collections::VecDeque<SsrpAnnouncement>,
    /// Recent KDC answers to TGS-REQs, for the SQL connections after them.
    recent_tickets: std::collections::VecDeque<KerberosTicketAnswer>,
    links: std::collections::VecDeque<ExchangeLink>,
    starts: std::collections::VecDeque<ConnectionStart>,
}

impl ExchangeReports {
    fn on_event(&mut self, ev: ExchangeEvent, r: &mut Reported) {
        match ev {
            ExchangeEvent::SsrpAnswer(a) => {
                for i in &a.instances {
                    let Some(port) = i.tcp_port else { continue };
                    let addr = std::net::SocketAddr::new(a.server, port);
                    if r.ssrp_servers.len() < MAX_SSRP_SERVERS || r.ssrp_servers.contains_key(&addr)
                    {
                        r.ssrp_servers
                            .insert(addr, (i.instance.clone(), i.version.clone()));
                    }
                }
                if self.recent_answers.len() >= RECENT_SSRP_ANSWERS {
                    self.recent_answers.pop_front();
                }
                self.recent_answers.push_back(a);
            }
            ExchangeEvent::KerberosTicket(t) => {
                if self.recent_tickets.len() >= RECENT_KERBEROS_TICKETS {
                    self.recent_tickets.pop_front();
                }
                self.recent_tickets.push_back(t);
            }
            ExchangeEvent::Done(e) => self.on_exchange(&e, r),
        }
    }

    /// The service tickets the connection's client asked for this server's SQL SPN from
    /// [`EXCHANGE_LINK_NS`] before the connection began until it ended (clients such as
    /// FreeTDS ask for the ticket after PRELOGIN, on the open connection), oldest first.
    fn kerberos_before(
        &self,
        c: &crate::facts::ConnectionFacts,
    ) -> Vec<crate::facts::KerberosTicketFacts> {
        self.recent_tickets
            .iter()
            .filter(|t| {
                let before = c.tcp.first.ts.nanos_since(t.ticket.at.ts);
                t.client == c.tcp.client.ip()
                    && before <= EXCHANGE_LINK_NS
                    && t.ticket.at.ts <= c.tcp.last.ts
                    && sql_spn_port(&t.ticket.spn)
                        .is_some_and(|p| p.is_none_or(|p| p == c.tcp.server.port()))
            })
            .map(|t| t.ticket.clone())
            .collect()
    }

    fn on_exchange(&mut self, e: &ExchangeFacts, r: &mut Reported) {
        let findings = diagnose::exchange_findings(e);
        r.error_findings |= findings.iter().any(|f| f.severity == Severity::Error);
        if r.exchanges.len() < MAX_EXCHANGES {
            let mut listed = report::exchange(e, findings);
            if let Some(link) = ExchangeLink::new(r.exchanges.len(), e) {
                // Connections reported before the exchange settled.
                listed.connections = self
                    .starts
                    .iter()
                    .filter(|c| link.matches(c))
                    .map(|c| c.id)
                    .collect();
                if self.links.len() >= RECENT_FOR_LINKS {
                    self.links.pop_front();
                }
                self.links.push_back(link);
            }
            r.exchanges.push(listed);
        } else {
            r.exchanges_not_listed += 1;
        }
    }

    /// Links a finished SQL connection to the listed exchanges before it.
    fn on_connection(&mut self, c: &crate::facts::ConnectionFacts, r: &mut Reported) {
        if !diagnose::is_sql(c) {
            return;
        }
        let start = ConnectionStart {
            id: c.tcp.id.0 + 1,
            client: c.tcp.client.ip(),
            server: c.tcp.server,
            start: c.tcp.first.ts,
            end: c.tcp.last.ts,
        };
        for link in self.links.iter().filter(|l| l.matches(&start)) {
            if let Some(e) = r.exchanges.get_mut(link.index) {
                if !e.connections.contains(&start.id) {
                    e.connections.push(start.id);
                }
            }
        }
        if self.starts.len() >= RECENT_FOR_LINKS {
            self.starts.pop_front();
        }
        self.starts.push_back(start);
    }

    /// `ssrp.port_mismatch` against the latest SSRP answer that concerns the connection.
    fn port_mismatch(&self, c: &crate::facts::ConnectionFacts) -> Option<report::model::Finding> {
        self.recent_answers
            .iter()
            .rev()
            .find(|a| {
                a.client == c.tcp.client.ip()
                    && a.server == c.tcp.server.ip()
                    && a.at.ts <= c.tcp.first.ts
            })
            .and_then(|a| diagnose::ssrp_port_mismatch(c, a))
    }
}

/// The reporting thread: runs the sessions over the tracker's events, diagnoses each
/// connection as it ends and writes its report.
fn report_connections(
    batches: Receiver<Batch>,
    recycle: Sender<Batch>,
    to_writer: SyncSender<Connection>,
    settings: &diagnose::Settings,
    verbose: bool,
    hints: Vec<crate::session::ServerHint>,
) -> Reported {
    let mut sessions = Sessions::with_hints(hints);
    let mut r = Reported {
        patterns: Patterns::default(),
        outcomes: BTreeMap::new(),
        connections: 0,
        error_findings: false,
        exchanges: Vec::new(),
        exchanges_not_listed: 0,
        ssrp_servers: BTreeMap::new(),
    };
    let mut exchange_events = Vec::new();
    let mut exchanges = ExchangeReports::default();
    for mut batch in batches {
        replay(&mut batch, &mut sessions, &mut exchange_events);
        // DNS and Kerberos read from TCP connections, after the UDP ones of the batch: the
        // order only matters for linking, which works either way.
        exchange_events.extend(sessions.drain_exchange_events());
        for ev in exchange_events.drain(..) {
            exchanges.on_event(ev, &mut r);
        }
        for mut facts in sessions.drain_finished() {
            if diagnose::is_sql(&facts) {
                facts.kerberos = exchanges.kerberos_before(&facts);
            }
            r.patterns.on_connection(&facts);
            let mut findings = diagnose::connection_findings(&facts, settings);
            findings.extend(exchanges.port_mismatch(&facts));
            exchanges.on_connection(&facts, &mut r);
            r.error_findings |= findings.iter().any(|f| f.severity == Severity::Error);
            let outcome = diagnose::outcome(&facts, &findings);
            *r.outcomes.entry(outcome.as_str()).or_default() += 1;
            r.connections += 1;
            if to_writer
                .send(report::connection(&facts, outcome, findings, verbose))
                .is_err()
            {
                // The writer failed (its error is reported from its thread): stop here.
                return r;
            }
        }
        // The reading thread may have finished already; then the batch is simply dropped.
        let _ = recycle.send(batch);
    }
    r.exchanges.sort_by_key(|e| (e.first.input, e.first.frame));
    for e in &mut r.exchanges {
        e.connections.sort_unstable();
    }
    r
}

/// The writing thread: formats each connection's report as it comes.
fn write_connections(
    connections: Receiver<Connection>,
    out: &mut (dyn ReportWriter + Send),
) -> std::io::Result<()> {
    for c in connections {
        out.connection(&c)?;
    }
    Ok(())
}

/// Connection reports queued for the writer.
const CONNECTIONS_IN_FLIGHT: usize = 256;

/// Batches in flight between the threads: enough to keep both busy, few enough to keep memory
/// flat (each is a few hundred KiB).
const BATCHES_IN_FLIGHT: usize = 4;

/// Reads every input, writes each connection as it ends, then the totals.
///
/// Three threads: this one reads, decodes and tracks TCP; a second decodes TDS and diagnoses;
/// a third writes the report. Everything crosses in order through bounded channels, so the
/// report does not depend on thread timing.
pub fn analyze(
    paths: &[PathBuf],
    opts: &Options,
    out: &mut (dyn ReportWriter + Send),
    progress: &mut dyn FnMut(Progress),
) -> std::io::Result<Outcome> {
    let mut result = Outcome::default();
    // Several files are one capture, read in the order of their first frames (files that
    // cannot be read go last and are reported).
    let ordered = capture::order_by_first_timestamp(paths, &opts.limits);
    let bytes_total: u64 = ordered.iter().map(|p| file_len(p)).sum();
    let mut capture_facts = CaptureFacts::default();
    let mut inputs = Vec::new();

    let (to_sessions, batches) = sync_channel::<Batch>(BATCHES_IN_FLIGHT);
    let (recycle, recycled) = channel::<Batch>();
    let settings = &opts.settings;
    let (to_writer, connections) = sync_channel::<Connection>(CONNECTIONS_IN_FLIGHT);
    // Reborrowed for the writing thread; the totals are written here once it is done.
    let out_for_thread: &mut (dyn ReportWriter + Send) = &mut *out;
    let (reported, written) = std::thread::scope(|scope| {
        let writer = scope.spawn(move || write_connections(connections, out_for_thread));
        let reporter = scope.spawn(move || {
            report_connections(
                batches,
                recycle,
                to_writer,
                settings,
                opts.verbose,
                opts.hints.clone(),
            )
        });
        let mut forwarder = Forwarder::new(to_sessions, recycled);
        read_inputs(
            &ordered,
            opts,
            bytes_total,
            &mut forwarder,
            &mut capture_facts,
            &mut inputs,
            &mut result,
            progress,
        );
        // Dropping the forwarder closes the channel: the reporter finishes its queue and ends.
        drop(forwarder);
        let failed = |what: &str| std::io::Error::other(format!("the {what} thread failed"));
        let reported = reporter.join().map_err(|_| failed("reporting"));
        let written = writer.join().unwrap_or_else(|_| Err(failed("writing")));
        (reported, written)
    });
    written?;
    let reported = reported?;

    result.connections = reported.connections;
    result.error_findings = reported.error_findings;
    let (mut servers, clients, probes) = reported.patterns.into_facts();
    for (addr, (instance, version)) in reported.ssrp_servers {
        let known = servers.iter_mut().find(|s| s.address == Some(addr));
        let s = match known {
            Some(s) => s,
            None => {
                servers.push(ServerFacts {
                    address: Some(addr),
                    ..ServerFacts::default()
                });
                let Some(s) = servers.last_mut() else {
                    continue;
                };
                s
            }
        };
        s.ssrp = true;
        s.instance.get_or_insert(instance);
        s.version.get_or_insert(version);
    }
    capture_facts.servers = servers;
    capture_facts.clients = clients;
    capture_facts.probes = probes;
    let findings = diagnose::capture_findings(&capture_facts);
    result.error_findings |= findings.iter().any(|f| f.severity == Severity::Error);
    out.finish(&Totals {
        inputs,
        servers: report::servers(&capture_facts),
        exchanges: reported.exchanges,
        exchanges_not_listed: reported.exchanges_not_listed,
        findings,
        connections: result.connections,
        outcomes: reported.outcomes,
    })?;
    Ok(result)
}

/// The reading thread's work: every input in order through decode and TCP tracking.
#[allow(clippy::too_many_arguments)]
fn read_inputs(
    ordered: &[PathBuf],
    opts: &Options,
    bytes_total: u64,
    forwarder: &mut Forwarder,
    capture_facts: &mut CaptureFacts,
    inputs: &mut Vec<Input>,
    result: &mut Outcome,
    progress: &mut dyn FnMut(Progress),
) {
    let mut decoder = Decoder::new(&opts.limits);
    let mut tracker = Tracker::new(&opts.limits);
    let mut exchanges = ExchangeTracker::new();
    let mut bytes_before = 0u64;
    let mut capture_last: Option<Timestamp> = None;
    for (index, path) in ordered.iter().enumerate() {
        let input_no = u16::try_from(index).unwrap_or(u16::MAX);
        let mut input = Input::new(path.display().to_string());
        input.bytes = file_len(path);
        let mut source: Box<dyn FrameSource> = match capture::open(path, input_no, &opts.limits) {
            Ok(s) => s,
            Err(e) => {
                input.error = Some(e.to_string());
                result.input_errors.push(e);
                inputs.push(input);
                continue;
            }
        };
        input.format = Some(source.format().as_str());
        let mut first: Option<Timestamp> = None;
        let mut last: Option<Timestamp> = None;
        while !forwarder.closed {
            let frame = match source.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    if let capture::Error::Malformed { offset, what, .. } = &e {
                        capture_facts.damage.push(InputDamage {
                            input: input_no,
                            offset: *offset,
                            what: what.clone(),
                            last_good_frame: input.frames,
                        });
                    }
                    input.error = Some(e.to_string());
                    result.damaged_inputs.push(e);
                    break;
                }
            };
            input.frames += 1;
            first.get_or_insert(frame.ts);
            last = Some(frame.ts);
            if frame.is_truncated() {
                input.truncated_frames += 1;
            }
            match decoder.decode(&frame) {
                Decoded::Packet(packet) => {
                    exchanges.on_packet(&packet);
                    for ev in exchanges.drain() {
                        forwarder.on_exchange(ev);
                    }
                    tracker.on_packet(&packet, forwarder);
                }
                Decoded::FragmentHeld => {}
                Decoded::Skipped(reason) => *input.skipped.entry(reason.as_str()).or_default() += 1,
            }
            forwarder.flush(false);
            if input.frames % PROGRESS_EVERY_FRAMES == 0 {
                progress(Progress {
                    bytes_done: bytes_before + source.bytes_read(),
                    bytes_total,
                });
            }
        }
        input.compressed = source.compressed();
        input.snaplen = source.snaplen();
        capture_last = capture_last.max(last);
        input.first_time = first.map(Timestamp::to_rfc3339);
        input.last_time = last.map(Timestamp::to_rfc3339);
        capture_facts
            .truncated
            .push((input_no, input.truncated_frames, input.snaplen));
        bytes_before += input.bytes;
        progress(Progress {
            bytes_done: bytes_before,
            bytes_total,
        });
        inputs.push(input);
    }
    exchanges.finish();
    for ev in exchanges.drain() {
        forwarder.on_exchange(ev);
    }
    if let Some(last) = capture_last {
        forwarder.on_capture_end(last);
    }
    // Connections still open (or lingering) at the end are closed in batches, so their facts
    // never all sit in memory at once.
    while tracker.finish_some(forwarder, FINISH_BATCH) {
        forwarder.flush(true);
    }
    forwarder.flush(true);
}
