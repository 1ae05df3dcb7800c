//! Reports: the [`model`] that renderers format, built from facts and findings, and the
//! renderers themselves. Connections are rendered as they end, so a report of any size is
//! written in memory proportional to the connections open at once.

pub mod json;
pub mod model;
pub mod text;
pub mod timeline;

use std::io;

use crate::diagnose::login::{connection_encryption, login_outcome};
use crate::diagnose::Outcome;
use crate::facts::{ConnectionFacts, Dialect};
use crate::proto::tds::TdsVersion;
use crate::tcp::{DirFacts, Direction, Mark, RoleBasis, TcpEnd};
use model::{
    Connection, ConnectionStats, Ending, Finding, FramePos, Login, LoginError, Mars, SmpSession,
    TcpDetail, TcpDirDetail, Totals,
};

/// A renderer that receives connections one by one as they end, then the totals.
pub trait ReportWriter {
    fn connection(&mut self, c: &Connection) -> io::Result<()>;
    fn finish(&mut self, totals: &Totals) -> io::Result<()>;
}

fn pos(m: Mark) -> FramePos {
    FramePos {
        input: m.frame.input,
        frame: m.frame.no,
    }
}

/// Wireshark's flag names with their counts, for the flags that are set.
fn flag_counts(f: &crate::tcp::AnalysisCounts) -> std::collections::BTreeMap<&'static str, u32> {
    [
        ("retransmission", f.retransmission),
        ("fast_retransmission", f.fast_retransmission),
        ("spurious_retransmission", f.spurious_retransmission),
        ("keep_alive", f.keep_alive),
        ("keep_alive_ack", f.keep_alive_ack),
        ("zero_window", f.zero_window),
        ("zero_window_probe", f.zero_window_probe),
        ("zero_window_probe_ack", f.zero_window_probe_ack),
        ("window_update", f.window_update),
        ("window_full", f.window_full),
        ("duplicate_ack", f.duplicate_ack),
        ("lost_segment", f.lost_segment),
        ("ack_lost_segment", f.ack_lost_segment),
        ("out_of_order", f.out_of_order),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .collect()
}

fn dir_detail(d: &DirFacts) -> TcpDirDetail {
    let f = &d.flags;
    TcpDirDetail {
        ttl: d.ttl,
        retransmission: f.retransmission,
        fast_retransmission: f.fast_retransmission,
        spurious_retransmission: f.spurious_retransmission,
        keep_alive: f.keep_alive,
        keep_alive_ack: f.keep_alive_ack,
        zero_window: f.zero_window,
        zero_window_probe: f.zero_window_probe,
        zero_window_probe_ack: f.zero_window_probe_ack,
        window_update: f.window_update,
        window_full: f.window_full,
        duplicate_ack: f.duplicate_ack,
        lost_segment: f.lost_segment,
        ack_lost_segment: f.ack_lost_segment,
        out_of_order: f.out_of_order,
        duplicate: f.duplicate,
        bad_checksum: f.bad_checksum,
        gaps: d.gaps,
        gap_bytes: d.gap_bytes,
        duplicate_copy_flags: flag_counts(&d.duplicate_copy_flags),
    }
}

fn role(d: Direction) -> &'static str {
    // The sender of a direction: ToServer is sent by the client.
    match d {
        Direction::ToServer => "client",
        Direction::ToClient => "server",
    }
}

/// Builds the report's record of one connection from its facts and diagnosis.
pub fn connection(
    c: &ConnectionFacts,
    outcome: Outcome,
    findings: Vec<Finding>,
    verbose: bool,
) -> Connection {
    let t = &c.tcp;
    let (cs, sc) = (t.dir(Direction::ToServer), t.dir(Direction::ToClient));
    let ended_by = match t.end {
        TcpEnd::Fin { first } => Ending {
            how: "fin",
            by: Some(role(first)),
            at: t.dir(first).fin.map(pos),
        },
        TcpEnd::HalfClosed { by } => Ending {
            how: "half_close",
            by: Some(role(by)),
            at: t.dir(by).fin.map(pos),
        },
        TcpEnd::Rst { by } => Ending {
            how: "rst",
            by: Some(role(by)),
            at: t.dir(by).rst.map(pos),
        },
        TcpEnd::Open => Ending {
            how: if t.evicted { "evicted" } else { "open" },
            by: None,
            at: None,
        },
    };
    let retrans = crate::diagnose::data_retransmissions;
    let duration_ns = t.last.ts.nanos_since(t.first.ts);
    Connection {
        id: t.id.0 + 1,
        client: t.client.to_string(),
        server: t.server.to_string(),
        sql: crate::diagnose::is_sql(c),
        first: pos(t.first),
        last: pos(t.last),
        start: t.first.ts.to_rfc3339(),
        end: t.last.ts.to_rfc3339(),
        duration_s: duration_ns as f64 / 1e9,
        outcome: outcome.as_str(),
        ended_by,
        roles_from: match t.roles {
            RoleBasis::Syn => "syn",
            RoleBasis::SynAck => "syn_ack",
            RoleBasis::Port => "port",
        },
        mid_stream: t.mid_stream,
        handshake_rtt_ms: t.handshake_rtt_ns.map(|ns| ns as f64 / 1e6),
        login: login(c),
        protocol: c.tds.as_ref().map(|t| match t.dialect {
            Dialect::Tds7 => "tds7",
            Dialect::Sybase => "sybase",
        }),
        stats: ConnectionStats {
            frames: cs.frames + sc.frames,
            frames_to_server: cs.frames,
            frames_to_client: sc.frames,
            bytes_to_server: cs.frame_bytes,
            bytes_to_client: sc.frame_bytes,
            payload_to_server: cs.stream_bytes,
            payload_to_client: sc.stream_bytes,
            retransmissions: retrans(cs) + retrans(sc),
            duplicates: u64::from(cs.flags.duplicate) + u64::from(sc.flags.duplicate),
            keepalives: u64::from(cs.flags.keep_alive) + u64::from(sc.flags.keep_alive),
            zero_windows: u64::from(cs.flags.zero_window) + u64::from(sc.flags.zero_window),
            requests: c.tds.as_ref().map_or(0, |t| t.request_count),
            attentions: c.tds.as_ref().map_or(0, |t| t.attention_count),
        },
        mars: c.tds.as_ref().filter(|t| t.mars).map(|t| Mars {
            sessions: t
                .smp_sessions
                .iter()
                .map(|s| SmpSession {
                    sid: s.sid,
                    opened: s.opened.map(pos),
                    client_fin: s.client_fin.map(pos),
                    server_fin: s.server_fin.map(pos),
                    data_to_server: s.data_to_server,
                    data_to_client: s.data_to_client,
                    acks: s.acks,
                    requests: s.requests,
                    attentions: s.attentions,
                    attentions_acknowledged: s.attentions_acknowledged,
                })
                .collect(),
            packets_dropped: t.smp_packets_dropped,
        }),
        tcp: TcpDetail {
            to_server: dir_detail(cs),
            to_client: dir_detail(sc),
        },
        findings,
        timeline: if verbose {
            timeline::timeline(c)
        } else {
            Vec::new()
        },
    }
}

fn ms(ns: i64) -> f64 {
    (ns as f64 / 1e3).round() / 1e3
}

/// The `login` object: what LOGIN7, LOGINACK and PRELOGIN said, and how long each step took.
fn login(c: &ConnectionFacts) -> Option<Login> {
    let outcome = login_outcome(c)?;
    let t = c.tds.as_ref()?;
    let l7 = t.login7.as_ref();
    let nonempty = |s: &String| (!s.is_empty()).then(|| s.clone());
    let mut steps = std::collections::BTreeMap::new();
    if let Some(rtt) = c.tcp.handshake_rtt_ns {
        steps.insert("handshake", ms(rtt));
    }
    if let (Some(a), Some(b)) = (&t.prelogin_client, &t.prelogin_server) {
        steps.insert("prelogin", ms(b.at.ts.nanos_since(a.at.ts)));
    }
    if let Some(tls) = &t.tls {
        if let (Some(a), Some(b)) = (tls.client_hello, tls.application_data) {
            steps.insert("tls", ms(b.ts.nanos_since(a.ts)));
        }
    }
    let login_start = l7.map(|l| l.at).or(t.login7_encrypted);
    let login_end = t.login_ack.as_ref().map(|a| a.at).or(t.login_done);
    if let (Some(a), Some(b)) = (login_start, login_end) {
        steps.insert("login", ms(b.ts.nanos_since(a.ts)));
    }
    // The first error names the cause (4060 "cannot open database" comes before the
    // generic 18456 that follows it).
    let error = t.login_errors.first().map(|e| LoginError {
        number: e.number,
        state: e.state,
        class: e.class,
        message: e.message.clone(),
    });
    Some(Login {
        outcome: outcome.as_str(),
        user: l7.and_then(|l| nonempty(&l.user)),
        database: t
            .database
            .clone()
            .or_else(|| l7.and_then(|l| nonempty(&l.database))),
        app: l7.and_then(|l| nonempty(&l.app)),
        host: l7.and_then(|l| nonempty(&l.host)),
        library: l7.and_then(|l| nonempty(&l.library)),
        tds_version: t
            .login_ack
            .as_ref()
            .map(|a| TdsVersion(a.tds_version).label())
            .or_else(|| l7.map(|l| TdsVersion(l.tds_version).label())),
        server_version: t
            .login_ack
            .as_ref()
            .map(|a| a.server_version.clone())
            .or_else(|| t.prelogin_server.as_ref().and_then(|p| p.version.clone())),
        // TDS 8.0 strict is full encryption that starts before PRELOGIN: worth its own word.
        encryption: if t.tls.as_ref().is_some_and(|tls| tls.strict) {
            Some("strict")
        } else {
            connection_encryption(t).map(|m| m.as_str())
        },
        encryption_client: t
            .prelogin_client
            .as_ref()
            .and_then(|p| p.encryption)
            .map(|e| e.as_str()),
        encryption_server: t
            .prelogin_server
            .as_ref()
            .and_then(|p| p.encryption)
            .map(|e| e.as_str()),
        tls_version: t
            .tls
            .as_ref()
            .and_then(|tls| tls.version)
            .map(|v| crate::proto::tls::version_name(v).to_string()),
        auth: l7.map(|l| l.auth).or(t.sspi_auth).map(|a| a.as_str()),
        sspi: t.sspi.as_ref().and_then(sspi),
        error,
        steps_ms: steps,
    })
}

/// The `login.sspi` object: only when a token showed a mechanism.
fn sspi(s: &crate::facts::SspiFacts) -> Option<model::Sspi> {
    Some(model::Sspi {
        mechanism: s.mechanism?,
        spnego: s.spnego,
        user: s.user.clone(),
        domain: s.domain.clone(),
        workstation: s.workstation.clone(),
        anonymous: s.anonymous,
        spn: s.spn.clone(),
        realm: s.realm.clone(),
    })
}

/// The `servers` list: SQL Server endpoints, how each was found, and what they said.
pub fn servers(c: &crate::facts::CaptureFacts) -> Vec<model::Server> {
    c.servers
        .iter()
        .filter_map(|s| {
            let addr = s.address?;
            let mut found_by = Vec::new();
            if s.tds_seen {
                found_by.push("tds");
            }
            if s.ssrp {
                found_by.push("ssrp");
            }
            if s.hinted {
                found_by.push("hint");
            }
            if addr.port() == crate::session::SQL_SERVER_PORT {
                found_by.push("port");
            }
            if found_by.is_empty() {
                return None;
            }
            Some(model::Server {
                address: addr.ip().to_string(),
                port: addr.port(),
                found_by,
                instance: s.instance.clone(),
                version: s.version.clone(),
            })
        })
        .collect()
}

/// A DNS query type's mnemonic (RFC 1035 3.2.2, RFC 3596, RFC 2782).
fn dns_type(t: u16) -> String {
    match t {
        1 => "A".into(),
        5 => "CNAME".into(),
        12 => "PTR".into(),
        28 => "AAAA".into(),
        33 => "SRV".into(),
        255 => "ANY".into(),
        n => format!("TYPE{n}"),
    }
}

/// Builds the report's record of one UDP exchange from its facts and diagnosis.
pub fn exchange(e: &crate::facts::ExchangeFacts, findings: Vec<Finding>) -> model::Exchange {
    use crate::facts::{ExchangeRequest as Req, ExchangeResponseBody as Body};
    let request = match &e.request {
        Req::Ssrp {
            opcode,
            instance,
            length,
            ..
        } => model::ExchangeRequest::Ssrp(model::SsrpRequest {
            opcode: *opcode,
            instance: instance.clone(),
            length: *length,
        }),
        Req::Dns { name, types } => model::ExchangeRequest::Dns(model::DnsRequest {
            name: name.clone(),
            types: types.iter().map(|t| dns_type(*t)).collect(),
        }),
        Req::Kerberos {
            message,
            sname,
            realm,
            cname,
            forwardable,
        } => model::ExchangeRequest::Kerberos(model::KerberosRequest {
            message,
            sname: sname.clone(),
            realm: realm.clone(),
            cname: cname.clone(),
            forwardable: *forwardable,
        }),
    };
    let response = e.responses.first().map(|first| match &first.body {
        Body::Ssrp { .. } => {
            // Instances of every answer (a broadcast draws one per server).
            let mut instances = Vec::new();
            let mut dac_port = None;
            for r in &e.responses {
                if let Body::Ssrp {
                    instances: list,
                    dac_port: dac,
                } = &r.body
                {
                    dac_port = dac_port.or(*dac);
                    for i in list {
                        // Retries draw the same answer again: list each instance once.
                        let seen = instances.iter().any(|s: &model::SsrpInstance| {
                            s.server == i.server_name
                                && s.instance == i.instance
                                && s.tcp_port == i.tcp_port
                        });
                        if !seen {
                            instances.push(model::SsrpInstance {
                                server: i.server_name.clone(),
                                instance: i.instance.clone(),
                                version: i.version.clone(),
                                tcp_port: i.tcp_port,
                                pipe: i.pipe.clone(),
                                clustered: i.clustered.then_some(true),
                            });
                        }
                    }
                }
            }
            model::ExchangeResponse::Ssrp(model::SsrpResponse {
                instances,
                dac_port,
            })
        }
        Body::Dns { .. } => {
            let mut rcode = 0;
            let mut addresses: Vec<String> = Vec::new();
            for r in &e.responses {
                if let Body::Dns {
                    rcode: rc,
                    addresses: list,
                } = &r.body
                {
                    if rcode == 0 {
                        rcode = *rc;
                    }
                    for a in list {
                        let a = a.to_string();
                        if !addresses.contains(&a) {
                            addresses.push(a);
                        }
                    }
                }
            }
            model::ExchangeResponse::Dns(model::DnsResponse { rcode, addresses })
        }
        Body::Kerberos {
            message,
            error,
            cname,
        } => model::ExchangeResponse::Kerberos(model::KerberosResponse {
            message,
            error: error.map(|(code, name)| format!("{name} ({code})")),
            error_code: error.map(|(code, _)| code),
            cname: cname.clone(),
        }),
    });
    let mut responders: Vec<String> = Vec::new();
    for r in &e.responses {
        let a = r.from.to_string();
        if !responders.contains(&a) {
            responders.push(a);
        }
    }
    model::Exchange {
        protocol: e.protocol.as_str(),
        transport: e.transport.as_str(),
        client: e.client.to_string(),
        server: e.server.to_string(),
        request,
        response,
        attempts: e.attempts,
        first: FramePos {
            input: e.first.frame.input,
            frame: e.first.frame.no,
        },
        start: e.first.ts.to_rfc3339(),
        delay_ms: e.responses.first().map(|r| ms(r.delay_ns)),
        responders,
        port_unreachable: e.port_unreachable.is_some(),
        connections: Vec::new(),
        findings,
    }
}
