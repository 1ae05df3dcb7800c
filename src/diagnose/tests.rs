//! Rules on hand-built facts: the look-alikes the catalogue must tell apart.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::net::SocketAddr;

use super::{connection_findings, outcome, Outcome, Settings};
use crate::capture::FrameRef;
use crate::facts::{
    AttentionFacts, AuthKind, ConnectionFacts, Dialect, Login7Facts, LoginAckFacts, RequestFacts,
    RequestKind, ServerError, TdsFacts,
};
use crate::report::model::Finding;
use crate::tcp::{ConnId, DirFacts, Direction, Mark, RoleBasis, TcpEnd, TcpFacts};
use crate::time::Timestamp;

const S: i64 = 1_000_000_000;

fn mark(frame: u64, secs: f64) -> Mark {
    Mark {
        frame: FrameRef {
            input: 0,
            no: frame,
        },
        ts: Timestamp::from_nanos((secs * S as f64) as i64),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A connection with a completed handshake at t=0, client TTL 64, server TTL 63.
fn connection() -> ConnectionFacts {
    let mut client = DirFacts {
        ttl: Some(64),
        frames: 3,
        syn: Some(mark(1, 0.0)),
        syn_count: 1,
        ..DirFacts::default()
    };
    client.first_data = Some(mark(3, 0.001));
    client.last_data = Some(mark(3, 0.001));
    let server = DirFacts {
        ttl: Some(63),
        frames: 2,
        syn_count: 1,
        ..DirFacts::default()
    };
    ConnectionFacts {
        tcp: TcpFacts {
            id: ConnId(0),
            client: addr("192.0.2.10:50000"),
            server: addr("198.51.100.20:1433"),
            roles: RoleBasis::Syn,
            first: mark(1, 0.0),
            last: mark(3, 0.001),
            syn_ack: Some(mark(2, 0.0005)),
            handshake_rtt_ns: Some(500_000),
            mid_stream: false,
            end: TcpEnd::Open,
            evicted: false,
            dirs: [client, server],
            icmp_error: None,
        },
        tds: None,
        anomalies: Vec::new(),
        known_sql_server: None,
        kerberos: Vec::new(),
    }
}

fn codes(c: &ConnectionFacts) -> Vec<&'static str> {
    connection_findings(c, &Settings::default())
        .iter()
        .map(|f| f.code)
        .collect()
}

fn diagnose_all(c: &ConnectionFacts) -> Vec<Finding> {
    connection_findings(c, &Settings::default())
}

fn finding(c: &ConnectionFacts, code: &str) -> Finding {
    connection_findings(c, &Settings::default())
        .into_iter()
        .find(|f| f.code == code)
        .unwrap_or_else(|| panic!("no {code} in {:?}", codes(c)))
}

fn unanswered_syns(c: &mut ConnectionFacts, n: u32) {
    c.tcp.syn_ack = None;
    c.tcp.handshake_rtt_ns = None;
    let client = &mut c.tcp.dirs[0];
    client.syn_count = n;
    client.frames = u64::from(n);
    client.first_data = None;
    client.last_data = None;
    c.tcp.dirs[1] = DirFacts::default();
    c.tcp.last = mark(u64::from(n), 3.0 * f64::from(n - 1));
}

#[test]
fn refused_unanswered_and_unreachable_are_told_apart() {
    let mut c = connection();
    unanswered_syns(&mut c, 3);
    assert_eq!(codes(&c), ["tcp.no_answer"]);
    assert_eq!(outcome(&c, &diagnose_all(&c)), Outcome::NoAnswer);

    let mut refused = c.clone();
    refused.tcp.dirs[1] = DirFacts {
        ttl: Some(63),
        frames: 1,
        rst: Some(mark(2, 0.0001)),
        rst_ttl: Some(63),
        ..DirFacts::default()
    };
    refused.tcp.end = TcpEnd::Rst {
        by: Direction::ToClient,
    };
    assert_eq!(codes(&refused), ["tcp.refused"]);
    assert_eq!(outcome(&refused, &diagnose_all(&refused)), Outcome::Refused);

    let mut unreachable = c.clone();
    unreachable.tcp.icmp_error = Some(crate::tcp::IcmpSeen {
        at: mark(2, 0.0002),
        error: crate::decode::IcmpError {
            v6: false,
            icmp_type: 3,
            code: 1,
            kind: crate::decode::IcmpErrorKind::DestinationUnreachable,
            original: None,
        },
        from: "192.0.2.1".parse().unwrap(),
        count: 1,
    });
    assert_eq!(codes(&unreachable), ["tcp.unreachable"]);
    assert_eq!(
        finding(&unreachable, "tcp.unreachable").detail["icmp_code"],
        1
    );
    assert_eq!(
        outcome(&unreachable, &diagnose_all(&unreachable)),
        Outcome::Unreachable
    );
}

#[test]
fn a_reset_with_the_servers_ttl_is_the_server_and_another_ttl_is_a_middlebox() {
    let mut c = connection();
    c.tcp.dirs[1].rst = Some(mark(9, 1.0));
    c.tcp.dirs[1].rst_ttl = Some(63);
    c.tcp.end = TcpEnd::Rst {
        by: Direction::ToClient,
    };
    assert!(codes(&c).contains(&"reset.by_server"), "{:?}", codes(&c));

    c.tcp.dirs[1].rst_ttl = Some(64);
    let f = finding(&c, "reset.by_middlebox");
    assert_eq!(f.detail["ttl"], 64);
    assert_eq!(f.detail["peer_ttl"], 63);
    assert!(!codes(&c).contains(&"reset.by_server"));
}

#[test]
fn idle_kill_needs_the_threshold() {
    let mut c = connection();
    c.tcp.dirs[1].last_data = Some(mark(4, 0.002));
    c.tcp.dirs[1].rst = Some(mark(9, 4.9));
    c.tcp.dirs[1].rst_ttl = Some(63);
    c.tcp.end = TcpEnd::Rst {
        by: Direction::ToClient,
    };
    assert!(
        !codes(&c).contains(&"idle.killed"),
        "4.9 s is below the 5 s default"
    );
    c.tcp.dirs[1].rst = Some(mark(9, 40.0));
    let f = finding(&c, "idle.killed");
    assert_eq!(f.detail["by"], "server");
    assert!(f.detail["idle_s"].as_f64().unwrap() > 39.0);
}

#[test]
fn unanswered_keepalives_then_the_clients_abort_is_a_silent_drop() {
    let mut c = connection();
    c.tcp.dirs[1].last_data = Some(mark(4, 0.002));
    let client = &mut c.tcp.dirs[0];
    client.flags.keep_alive = 10;
    client.unanswered_keepalives = 10;
    client.keepalive_run = Some((mark(10, 30.0), mark(19, 39.0)));
    client.rst = Some(mark(20, 40.0));
    client.rst_ttl = Some(64);
    c.tcp.end = TcpEnd::Rst {
        by: Direction::ToServer,
    };
    let codes = codes(&c);
    assert!(codes.contains(&"tcp.keepalive_unanswered"), "{codes:?}");
    assert!(
        !codes.contains(&"reset.by_client"),
        "the client's RST is its reaction: {codes:?}"
    );
    let f = finding(&c, "idle.killed");
    assert_eq!(f.detail["by"], "unknown");
    assert_eq!(
        finding(&c, "tcp.keepalive_unanswered").detail["interval_s"],
        1.0
    );
}

fn logged_in(c: &mut ConnectionFacts) -> &mut TdsFacts {
    c.tds = Some(empty_tds());
    let t = c.tds.as_mut().unwrap();
    t.login7 = Some(Login7Facts {
        at: mark(4, 0.002),
        tds_version: 0x7400_0004,
        user: "app".into(),
        host: "web1".into(),
        app: "svc".into(),
        server_name: "db".into(),
        library: "ODBC".into(),
        database: "sales".into(),
        language: String::new(),
        packet_size: 4096,
        auth: AuthKind::Sql,
        read_only_intent: false,
        client_pid: 1,
    });
    t
}

/// A TDS 7.x connection's facts with nothing seen yet.
fn empty_tds() -> TdsFacts {
    TdsFacts::new(Dialect::Tds7, mark(3, 0.001))
}

#[test]
fn login_failure_names_the_18456_state() {
    let mut c = connection();
    let t = logged_in(&mut c);
    t.login_errors.push(ServerError {
        at: mark(5, 0.003),
        number: 18456,
        state: 8,
        class: 14,
        message: "Login failed for user 'app'.".into(),
        server: String::new(),
        procedure: String::new(),
        line: 1,
        smp_sid: None,
    });
    c.tcp.end = TcpEnd::Fin {
        first: Direction::ToServer,
    };
    let f = finding(&c, "login.failed");
    assert_eq!(f.detail["meaning"], "the password is wrong");
    assert!(f.next_steps[0].contains("password"), "{:?}", f.next_steps);
    assert_eq!(outcome(&c, &diagnose_all(&c)), Outcome::LoginFailed);
    assert!(!codes(&c).contains(&"login.timeout"));
}

#[test]
fn login_ack_after_the_clients_fin_is_a_timeout_not_a_success() {
    let mut c = connection();
    let t = logged_in(&mut c);
    t.login_ack = Some(LoginAckFacts {
        at: mark(8, 6.0),
        tds_version: 0x7400_0004,
        prog_name: "Microsoft SQL Server".into(),
        server_version: "16.0.1000".into(),
    });
    c.tcp.dirs[0].fin = Some(mark(6, 3.0));
    c.tcp.end = TcpEnd::Fin {
        first: Direction::ToServer,
    };
    let codes = codes(&c);
    assert!(codes.contains(&"login.timeout"), "{codes:?}");
    assert!(
        !codes.contains(&"login.ok") && !codes.contains(&"login.slow"),
        "{codes:?}"
    );
    assert_eq!(finding(&c, "login.timeout").detail["pending_step"], "login");
}

#[test]
fn an_attention_that_cancels_the_login_is_part_of_the_login_timeout() {
    let mut c = connection();
    let t = logged_in(&mut c);
    t.login_ack = None;
    t.attention_count = 1;
    t.attentions.push(AttentionFacts {
        at: mark(6, 3.0),
        request_at: None,
        acknowledged: None,
        during_login: true,
        smp_sid: None,
    });
    c.tcp.dirs[0].fin = Some(mark(7, 3.0));
    c.tcp.end = TcpEnd::Fin {
        first: Direction::ToServer,
    };
    let codes = codes(&c);
    assert!(codes.contains(&"login.timeout"), "{codes:?}");
    assert!(!codes.contains(&"request.attention"), "{codes:?}");
    let f = finding(&c, "login.timeout");
    assert_eq!(f.detail["cancelled_with_attention"], true);
    assert!(f.evidence.iter().any(|e| e.frame == 6), "{:?}", f.evidence);
}

#[test]
fn an_attention_after_thirty_seconds_reads_as_a_command_timeout() {
    let mut c = connection();
    let t = logged_in(&mut c);
    t.request_count = 1;
    t.attention_count = 1;
    t.attentions.push(AttentionFacts {
        at: mark(9, 30.01),
        request_at: Some(mark(7, 0.01)),
        acknowledged: Some(mark(10, 30.02)),
        during_login: false,
        smp_sid: None,
    });
    t.requests.push(RequestFacts {
        kind: RequestKind::SqlBatch,
        at: mark(7, 0.01),
        first_response: Some(mark(10, 30.02)),
        done: Some(mark(10, 30.02)),
        done_status: 0x20,
        row_count: None,
        smp_sid: None,
        procedure: None,
    });
    let f = finding(&c, "request.attention");
    assert!(
        f.summary.contains("typical command timeout"),
        "{}",
        f.summary
    );
    assert_eq!(f.detail["acknowledged"], true);
}

fn refused_ticket(spn: &str) -> crate::facts::KerberosTicketFacts {
    crate::facts::KerberosTicketFacts {
        at: mark(1, -0.2),
        spn: spn.into(),
        realm: "LAB.TEST".into(),
        answered: mark(2, -0.19),
        error: Some((7, "KDC_ERR_S_PRINCIPAL_UNKNOWN")),
        transport: crate::facts::ExchangeTransport::Tcp,
    }
}

#[test]
fn a_kdc_refusal_for_the_sql_spn_is_an_sspi_failure_with_its_details() {
    // PRELOGIN only, then the client closes: it could not get a ticket.
    let mut c = connection();
    c.tds = Some(empty_tds());
    c.tcp.end = TcpEnd::Fin {
        first: Direction::ToServer,
    };
    assert!(!codes(&c).contains(&"login.sspi_failed"));
    c.kerberos = vec![refused_ticket("MSSQLSvc/sql.lab.test:1433")];
    let f = finding(&c, "login.sspi_failed");
    assert_eq!(f.detail["spn"], "MSSQLSvc/sql.lab.test:1433");
    assert_eq!(f.detail["krb_error"], "KDC_ERR_S_PRINCIPAL_UNKNOWN");
    assert_eq!(f.detail["krb_error_code"], 7);
    assert!(f.evidence.iter().any(|e| e.frame == 2));
    // A later ticket for the same SPN means the refusal was overcome.
    let mut granted = refused_ticket("MSSQLSvc/sql.lab.test:1433");
    granted.error = None;
    c.kerberos.push(granted);
    assert!(!codes(&c).contains(&"login.sspi_failed"));
}

#[test]
fn a_kdc_refusal_does_not_fail_a_login_that_succeeded() {
    let mut c = connection();
    let t = logged_in(&mut c);
    if let Some(l) = t.login7.as_mut() {
        l.auth = AuthKind::Negotiate;
    }
    t.login_ack = Some(LoginAckFacts {
        at: mark(5, 0.003),
        tds_version: 0x7400_0004,
        prog_name: "Microsoft SQL Server".into(),
        server_version: "16.0.1000".into(),
    });
    // NTLM fallback after the refusal: the login went through.
    c.kerberos = vec![refused_ticket("MSSQLSvc/sql.lab.test:1433")];
    assert!(!codes(&c).contains(&"login.sspi_failed"));
    // 18452 after an NTLM round carries the account and still names the refused SPN.
    let t = c.tds.as_mut().unwrap();
    t.login_ack = None;
    t.sspi = Some(crate::facts::SspiFacts {
        mechanism: Some("ntlm"),
        user: Some("alice".into()),
        domain: Some("LAB".into()),
        ..Default::default()
    });
    t.login_errors.push(ServerError {
        at: mark(6, 0.004),
        number: 18452,
        state: 1,
        class: 14,
        message: "Login failed. The login is from an untrusted domain.".into(),
        server: String::new(),
        procedure: String::new(),
        line: 1,
        smp_sid: None,
    });
    let f = finding(&c, "login.sspi_failed");
    assert_eq!(f.detail["number"], 18452);
    assert_eq!(f.detail["account"], "LAB\\alice");
    assert_eq!(f.detail["spn"], "MSSQLSvc/sql.lab.test:1433");
}

#[test]
fn a_storm_needs_the_silent_side_in_the_capture() {
    let mut c = connection();
    let server = &mut c.tcp.dirs[1];
    server.retransmission_run = 8;
    server.retransmission_run_marks = Some((mark(10, 1.0), mark(17, 60.0)));
    c.tcp.last = mark(17, 60.0);
    assert!(codes(&c).contains(&"tcp.retransmission_storm"));
    // The client's side missing from the capture: its ACKs may simply not be in the file.
    c.tcp.dirs[0].frames = 0;
    assert!(
        !codes(&c).contains(&"tcp.retransmission_storm"),
        "{:?}",
        codes(&c)
    );
}

#[test]
fn a_client_that_closes_at_once_abandons_the_login_rather_than_timing_out() {
    let mut c = connection();
    let t = logged_in(&mut c);
    t.login_ack = None;
    c.tcp.dirs[0].fin = Some(mark(7, 0.05));
    c.tcp.end = TcpEnd::Fin {
        first: Direction::ToServer,
    };
    let f = finding(&c, "login.timeout");
    assert!(f.summary.contains("abandoned"), "{}", f.summary);
    assert!(
        !f.next_steps
            .iter()
            .any(|s| s.contains("raise the connect timeout")),
        "{:?}",
        f.next_steps
    );
}

/// A connection attempt from `client` to `server` that carried no client data, answered as
/// `answer` says: "open" (SYN-ACK, then the client left), "refused" (RST) or "none".
fn probe(id: u32, client: &str, server: &str, answer: &str, at: f64) -> ConnectionFacts {
    let mut c = connection();
    c.tcp.id = ConnId(id);
    c.tcp.client = addr(client);
    c.tcp.server = addr(server);
    c.tcp.first = mark(u64::from(id) + 1, at);
    c.tcp.dirs[0].syn = Some(c.tcp.first);
    c.tcp.dirs[0].first_data = None;
    c.tcp.dirs[0].last_data = None;
    match answer {
        "open" => {}
        "refused" => {
            c.tcp.syn_ack = None;
            c.tcp.dirs[1].rst = Some(mark(u64::from(id) + 2, at + 0.0001));
        }
        _ => {
            c.tcp.syn_ack = None;
            c.tcp.dirs[1] = DirFacts::default();
        }
    }
    c
}

fn scan_findings(conns: &[ConnectionFacts]) -> Vec<Finding> {
    let mut p = crate::session::patterns::Patterns::default();
    for c in conns {
        p.on_connection(c);
    }
    let (servers, clients, probes) = p.into_facts();
    let facts = crate::facts::CaptureFacts {
        servers,
        clients,
        probes,
        ..Default::default()
    };
    super::capture_findings(&facts)
        .into_iter()
        .filter(|f| f.code == "pattern.port_scan")
        .collect()
}

#[test]
fn many_ports_probed_without_data_are_one_port_scan() {
    let mut conns = Vec::new();
    for port in 1..=25u16 {
        let answer = match port {
            22 | 3 => "open",
            5..=7 => "refused",
            _ => "none",
        };
        let id = u32::from(port);
        conns.push(probe(
            id,
            "192.0.2.66:40000",
            &format!("198.51.100.20:{port}"),
            answer,
            f64::from(port) * 0.01,
        ));
    }
    // The scanner retries an unanswered port: a second probe, not a second target.
    conns.push(probe(
        26,
        "192.0.2.66:40001",
        "198.51.100.20:9",
        "none",
        0.5,
    ));
    let found = scan_findings(&conns);
    assert_eq!(found.len(), 1);
    let d = &found[0].detail;
    assert_eq!(d["client"], "192.0.2.66");
    assert_eq!(d["server"], "198.51.100.20");
    assert_eq!(d["ports"], 25);
    assert_eq!(d["targets"], 25);
    assert_eq!(d["probes"], 26);
    assert_eq!(d["answered"], 2);
    assert_eq!(d["refused"], 3);
    assert_eq!(d["unanswered"], 21);
    assert_eq!(
        d["open"],
        serde_json::json!(["198.51.100.20:3", "198.51.100.20:22"])
    );
    assert!(d.get("port").is_none());
    assert_eq!(found[0].connections.len(), 26);
    assert!(found[0].summary.contains("25 TCP ports on 198.51.100.20"));
    assert!(found[0].summary.contains("2 answered (3, 22)"));
}

#[test]
fn one_port_on_many_hosts_is_a_sweep() {
    let conns: Vec<ConnectionFacts> = (1..=22u32)
        .map(|h| {
            let answer = if h == 7 { "open" } else { "none" };
            probe(
                h,
                "192.0.2.66:40000",
                &format!("10.0.0.{h}:1433"),
                answer,
                0.0,
            )
        })
        .collect();
    let found = scan_findings(&conns);
    assert_eq!(found.len(), 1);
    let d = &found[0].detail;
    assert_eq!(d["port"], 1433);
    assert_eq!(d["hosts"], 22);
    assert!(d.get("server").is_none());
    assert!(found[0].summary.contains("port 1433 on 22 hosts"));
    assert!(found[0].summary.contains("1 answered (10.0.0.7)"));
}

#[test]
fn failing_applications_and_busy_clients_are_not_scans() {
    // An application retrying one server 40 times.
    let retries: Vec<ConnectionFacts> = (0..40u32)
        .map(|i| {
            probe(
                i,
                "192.0.2.10:50000",
                "198.51.100.20:1433",
                "none",
                f64::from(i),
            )
        })
        .collect();
    assert!(scan_findings(&retries).is_empty());
    // A client that talks to 30 servers (it sends data on each).
    let busy: Vec<ConnectionFacts> = (1..=30u32)
        .map(|h| {
            let mut c = probe(
                h,
                "192.0.2.10:50000",
                &format!("10.0.0.{h}:1433"),
                "open",
                0.0,
            );
            c.tcp.dirs[0].payload_bytes = 200;
            c
        })
        .collect();
    assert!(scan_findings(&busy).is_empty());
    // Nineteen ports: below the threshold.
    let few: Vec<ConnectionFacts> = (1..=19u16)
        .map(|p| {
            probe(
                u32::from(p),
                "192.0.2.66:40000",
                &format!("198.51.100.20:{p}"),
                "none",
                0.0,
            )
        })
        .collect();
    assert!(scan_findings(&few).is_empty());
}

/// nmap -sS: a SYN with a TTL of nmap's choosing, the server's SYN-ACK, and the scanning
/// host's kernel answering it with a RST of the kernel's TTL. Not a forged reset: the client
/// never completed the handshake, so its SYN's TTL says nothing about its usual one.
#[test]
fn a_syn_scanners_reset_is_the_clients_not_a_middleboxs() {
    let mut c = connection();
    let client = &mut c.tcp.dirs[0];
    client.ttl = Some(53);
    client.frames = 2;
    client.first_data = None;
    client.last_data = None;
    client.rst = Some(mark(3, 0.001));
    client.rst_ttl = Some(64);
    client.rst_count = 1;
    c.tcp.end = TcpEnd::Rst {
        by: Direction::ToServer,
    };
    let f = finding(&c, "reset.by_client");
    assert_eq!(f.detail["phase"], "handshake");
    assert!(f.summary.contains("SYN-ACK"), "{}", f.summary);
    assert!(!codes(&c).contains(&"reset.by_middlebox"));

    // Once the client has sent more than its SYN, a RST with another TTL is forged.
    let mut talked = c.clone();
    talked.tcp.dirs[0].frames = 4;
    talked.tcp.dirs[0].first_data = Some(mark(3, 0.001));
    talked.tcp.dirs[0].payload_bytes = 10;
    let f = finding(&talked, "reset.by_middlebox");
    assert_eq!(f.detail["why"], "ttl");
}

/// Only the client's direction was captured: its SYN, then data, then its RST. The handshake
/// completed out of sight, so this is no refused attempt: the client's reset is reported.
#[test]
fn a_reset_in_a_one_direction_capture_is_not_hidden_as_a_refusal() {
    let mut c = connection();
    c.tcp.syn_ack = None;
    c.tcp.handshake_rtt_ns = None;
    c.tcp.dirs[1] = DirFacts::default();
    let client = &mut c.tcp.dirs[0];
    client.frames = 5;
    client.payload_bytes = 300;
    client.rst = Some(mark(5, 2.0));
    client.rst_ttl = Some(64);
    client.rst_count = 1;
    c.tcp.end = TcpEnd::Rst {
        by: Direction::ToServer,
    };
    assert!(c.tcp.handshake_unseen());
    let found = codes(&c);
    assert!(found.contains(&"reset.by_client"), "{found:?}");
    assert!(!found.contains(&"tcp.refused") && !found.contains(&"tcp.no_answer"));
}

/// A scan larger than what is remembered: distinct targets stop being counted at the cap (the
/// finding says "at least"), connection ids stop at theirs, and every probe is still counted.
#[test]
fn a_huge_scan_is_counted_within_bounds() {
    let mut p = crate::session::patterns::Patterns::default();
    let total = 70_000u32;
    for i in 0..total {
        let host = 1 + i / 60_000;
        let port = 1 + i % 60_000;
        p.on_connection(&probe(
            i,
            "192.0.2.66:40000",
            &format!("10.0.0.{host}:{port}"),
            "none",
            f64::from(i) * 0.0001,
        ));
    }
    let (_, _, probes) = p.into_facts();
    let f = &probes[0];
    assert_eq!(f.probes, u64::from(total));
    assert_eq!(f.targets, 65_536);
    assert!(f.targets_capped);
    assert_eq!(f.connections.len(), 16_384);
    let found = super::capture_findings(&crate::facts::CaptureFacts {
        probes,
        ..Default::default()
    });
    let scan = found
        .iter()
        .find(|f| f.code == "pattern.port_scan")
        .unwrap();
    assert_eq!(scan.detail["targets_capped"], true);
    assert!(
        scan.summary.contains("at least 65536 targets"),
        "{}",
        scan.summary
    );
}
