//! Connection facts: one owned record per connection, built by `session` from stream events
//! and protocol messages, read by `diagnose`. Plain data, no logic beyond accessors.

use crate::tcp::{Direction, Mark, TcpFacts};

/// Everything known about one TCP connection when it ends.
#[derive(Clone, Debug)]
pub struct ConnectionFacts {
    pub tcp: TcpFacts,
    /// What TDS showed, when the connection carried TDS.
    pub tds: Option<TdsFacts>,
    /// Bytes that should have been a protocol and were not.
    pub anomalies: Vec<Anomaly>,
    /// The server ip:port is known as SQL Server from elsewhere: TDS seen on an earlier
    /// connection to it, or named by the user (`--server`).
    pub known_sql_server: Option<KnownBy>,
    /// Kerberos service-ticket requests (TGS-REQ) for this server's SQL SPN that the same
    /// client made shortly before the connection, latest last: filled in by the reporting
    /// stage, which sees the exchanges.
    pub kerberos: Vec<KerberosTicketFacts>,
}

/// A TGS-REQ for a SQL Server SPN and the KDC's answer (RFC 4120 3.3), linked to the
/// connection it preceded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KerberosTicketFacts {
    /// The TGS-REQ.
    pub at: Mark,
    /// The requested service principal, `MSSQLSvc/host:port`.
    pub spn: String,
    pub realm: String,
    /// The KDC's answer: when it came, and KRB-ERROR's code and RFC 4120 7.5.9 name (None for
    /// a TGS-REP).
    pub answered: Mark,
    pub error: Option<(i32, &'static str)>,
    pub transport: ExchangeTransport,
}

/// How a server endpoint came to be known as SQL Server without TDS on this connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KnownBy {
    /// TDS was seen on another connection to it.
    Tds,
    /// The user named it with `--server`.
    Hint,
}

/// Something odd the session noticed, kept as data for the rules.
#[derive(Clone, Debug, PartialEq)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    pub at: Mark,
    pub dir: Direction,
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnomalyKind {
    /// Traffic on a SQL port that never looked like TDS.
    NotTds,
    /// A TDS message whose bytes broke its own format.
    MalformedTds,
    /// Bytes skipped to find the next TDS packet header.
    TdsResync,
    /// A message or token larger than the limit: the rest of it was skipped.
    TdsTooLarge,
}

/// Which TDS dialect a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// TDS 7.x (SQL Server 7.0 and later).
    Tds7,
    /// TDS 4.2/5.0: Sybase ASE or a very old SQL Server; not diagnosed as SQL Server.
    Sybase,
}

/// Encryption as the PRELOGIN exchange set it (MS-TDS 2.2.6.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncryptionSetting {
    Off,
    On,
    NotSupported,
    Required,
    Unknown(u8),
}

impl EncryptionSetting {
    pub fn as_str(self) -> &'static str {
        match self {
            EncryptionSetting::Off => "off",
            EncryptionSetting::On => "on",
            EncryptionSetting::NotSupported => "not_supported",
            EncryptionSetting::Required => "required",
            EncryptionSetting::Unknown(_) => "unknown",
        }
    }
}

/// One side's PRELOGIN.
#[derive(Clone, Debug, PartialEq)]
pub struct PreloginFacts {
    pub at: Mark,
    pub encryption: Option<EncryptionSetting>,
    /// Client: driver version; server: SQL Server product version ("16.0.1000").
    pub version: Option<String>,
    pub instance: Option<String>,
    pub mars: Option<bool>,
    pub fed_auth_required: Option<bool>,
}

/// How the client authenticated, from LOGIN7 and its SSPI blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthKind {
    Sql,
    Ntlm,
    Kerberos,
    Negotiate,
    FedAuth,
    /// Integrated security with a blob we could not classify.
    Integrated,
}

impl AuthKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthKind::Sql => "sql",
            AuthKind::Ntlm => "ntlm",
            AuthKind::Kerberos => "kerberos",
            AuthKind::Negotiate => "negotiate",
            AuthKind::FedAuth => "fedauth",
            AuthKind::Integrated => "integrated",
        }
    }
}

/// What LOGIN7 said. Never a password.
#[derive(Clone, Debug, PartialEq)]
pub struct Login7Facts {
    pub at: Mark,
    pub tds_version: u32,
    pub user: String,
    pub host: String,
    pub app: String,
    pub server_name: String,
    pub library: String,
    pub database: String,
    pub language: String,
    pub packet_size: u32,
    pub auth: AuthKind,
    pub read_only_intent: bool,
    pub client_pid: u32,
}

/// An ERROR (or INFO) token the server sent.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerError {
    pub at: Mark,
    pub number: i32,
    pub state: u8,
    pub class: u8,
    pub message: String,
    pub server: String,
    pub procedure: String,
    pub line: u32,
    /// The MARS (SMP) session whose reply carried the error, on a MARS connection.
    pub smp_sid: Option<u16>,
}

/// LOGINACK.
#[derive(Clone, Debug, PartialEq)]
pub struct LoginAckFacts {
    pub at: Mark,
    pub tds_version: u32,
    pub prog_name: String,
    pub server_version: String,
}

/// A routing ENVCHANGE: the server sent the client elsewhere.
#[derive(Clone, Debug, PartialEq)]
pub struct RoutingFacts {
    pub at: Mark,
    pub server: String,
    pub port: u16,
}

/// The TLS handshake as far as it can be seen without decrypting.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TlsFacts {
    /// True when TLS records travelled inside PRELOGIN packets (TDS 7.x); false for TLS first
    /// (TDS 8.0 strict).
    pub in_prelogin: bool,
    /// The client offered ALPN `tds/8.0`: TDS 8.0 strict encryption.
    pub strict: bool,
    pub client_hello: Option<Mark>,
    /// The highest version the client offered, and the server name it asked for (SNI).
    pub client_max_version: Option<u16>,
    pub sni: Option<String>,
    pub server_hello: Option<Mark>,
    /// The version and cipher suite the server chose.
    pub version: Option<u16>,
    pub cipher: Option<&'static str>,
    /// The server's certificate (the chain's first).
    pub certificate: Option<CertificateFacts>,
    /// (level, description) of the first alert seen unencrypted, and who sent it.
    pub alert: Option<(Mark, u8, u8)>,
    pub alert_from: Option<Direction>,
    /// ChangeCipherSpec (or the encrypted Finished) of each side: the handshake's last steps.
    pub client_finished: Option<Mark>,
    pub server_finished: Option<Mark>,
    /// The client's first record after the handshake (LOGIN7 inside TLS): the handshake ended.
    pub application_data: Option<Mark>,
}

/// What a server certificate says, for the certificate rules.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CertificateFacts {
    pub at: Option<Mark>,
    pub subject: String,
    pub issuer: String,
    pub common_name: Option<String>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    pub not_before_text: String,
    pub not_after_text: String,
    pub self_signed: bool,
    /// SQL Server's own certificate, generated at start-up when none is configured.
    pub sql_server_fallback: bool,
    pub dns_names: Vec<String>,
    /// subjectAltName iPAddress entries, as text.
    pub ip_addresses: Vec<String>,
    /// Whether the certificate names the host the client asked for (SNI), when it asked.
    pub matches_sni: Option<bool>,
}

impl CertificateFacts {
    /// Whether the certificate names this address: an iPAddress entry, or (as older clients
    /// accept) a common name that is the address, when there are no dNSName entries.
    pub fn names_address(&self, ip: std::net::IpAddr) -> bool {
        let text = ip.to_string();
        self.ip_addresses.contains(&text)
            || (self.dns_names.is_empty() && self.common_name.as_deref() == Some(text.as_str()))
    }
}

/// The identity an integrated login presented, from the client's SSPI tokens: NTLMSSP
/// AUTHENTICATE (MS-NLMP 2.2.1.3) or the Kerberos AP-REQ's ticket (RFC 4120 5.5.1), directly
/// or inside SPNEGO (RFC 4178). Never a response, hash or key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SspiFacts {
    /// `ntlm` or `kerberos`: the mechanism whose token was seen (inside SPNEGO too).
    pub mechanism: Option<&'static str>,
    /// SPNEGO wrapped the tokens (Negotiate).
    pub spnego: bool,
    pub user: Option<String>,
    pub domain: Option<String>,
    pub workstation: Option<String>,
    /// NTLM anonymous or null session (MS-NLMP 3.2.5.1.2).
    pub anonymous: bool,
    /// The service principal of the presented ticket (`MSSQLSvc/host:port`) and its realm.
    pub spn: Option<String>,
    pub realm: Option<String>,
    /// The token that gave the identity.
    pub at: Option<Mark>,
}

/// A client request and what came of it.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestFacts {
    pub kind: RequestKind,
    pub at: Mark,
    /// First byte of the server's answer.
    pub first_response: Option<Mark>,
    /// The final DONE of the answer.
    pub done: Option<Mark>,
    pub done_status: u16,
    pub row_count: Option<u64>,
    /// The MARS (SMP) session it was sent on; None on a connection without MARS.
    pub smp_sid: Option<u16>,
    /// RPC: the procedure called, by name or by its well-known ProcID (MS-TDS 2.2.6.6).
    pub procedure: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    SqlBatch,
    Rpc,
    TransactionManager,
    BulkLoad,
}

/// An ATTENTION (cancel) and its acknowledgement.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionFacts {
    pub at: Mark,
    /// The request it cancelled was sent at this time.
    pub request_at: Option<Mark>,
    /// DONE with the ATTN bit.
    pub acknowledged: Option<Mark>,
    /// Sent while the login was still unanswered: it cancelled the login, not a request.
    pub during_login: bool,
    /// The MARS (SMP) session it was sent on: only a DONE(ATTN) of that session acknowledges it.
    pub smp_sid: Option<u16>,
}

/// One SMP session of a MARS connection ([MC-SMP]): its packets and the TDS requests it carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmpSessionFacts {
    pub sid: u16,
    /// First SMP packet of this session seen.
    pub first_seen: Mark,
    /// The client's SYN, when captured.
    pub opened: Option<Mark>,
    /// FIN per role.
    pub client_fin: Option<Mark>,
    pub server_fin: Option<Mark>,
    pub data_to_server: u64,
    pub data_to_client: u64,
    /// ACK packets (window updates), both directions.
    pub acks: u64,
    pub requests: u64,
    pub attentions: u64,
    pub attentions_acknowledged: u64,
}

/// SMP sessions followed per connection; packets of further sessions are only counted.
pub const MAX_SMP_SESSIONS: usize = 64;

/// Most requests, errors and attentions kept one by one per connection; beyond, only counted.
pub const MAX_KEPT_PER_CONNECTION: usize = 64;

/// Everything TDS showed on a connection.
#[derive(Clone, Debug)]
pub struct TdsFacts {
    pub dialect: Dialect,
    /// First frame recognised as TDS.
    pub detected_at: Mark,
    /// Requests came from the side TCP called the server (mid-stream guess was wrong).
    pub roles_reversed: bool,
    pub prelogin_client: Option<PreloginFacts>,
    pub prelogin_server: Option<PreloginFacts>,
    pub tls: Option<TlsFacts>,
    pub login7: Option<Login7Facts>,
    /// The LOGIN7 travelled inside TLS (so its fields are not known).
    pub login7_encrypted: Option<Mark>,
    pub sspi_rounds: Vec<Mark>,
    /// The security package of the client's SSPI messages (NTLM, Kerberos, Negotiate).
    pub sspi_auth: Option<AuthKind>,
    /// What the client's security tokens (LOGIN7's SSPI field, SSPI packets) say in clear.
    pub sspi: Option<SspiFacts>,
    pub login_ack: Option<LoginAckFacts>,
    /// ERROR tokens in the login response.
    pub login_errors: Vec<ServerError>,
    /// The final DONE of the login response.
    pub login_done: Option<Mark>,
    pub routing: Option<RoutingFacts>,
    /// Database after login (ENVCHANGE 1).
    pub database: Option<String>,
    /// Requests after login (first [`MAX_KEPT_PER_CONNECTION`]).
    pub requests: Vec<RequestFacts>,
    pub request_count: u64,
    /// A request sent and not (completely) answered when the connection ended.
    pub outstanding: Option<RequestFacts>,
    /// ERROR tokens after login (first [`MAX_KEPT_PER_CONNECTION`]).
    pub errors: Vec<ServerError>,
    pub error_count: u64,
    pub attentions: Vec<AttentionFacts>,
    pub attention_count: u64,
    /// Sum and count of request→first-response times, for round-trip patterns.
    pub response_ns_total: i64,
    pub responses: u64,
    /// The MARS (SMP) header was seen.
    pub mars: bool,
    /// SMP sessions in order of first appearance (first [`MAX_SMP_SESSIONS`]).
    pub smp_sessions: Vec<SmpSessionFacts>,
    /// SMP packets of sessions beyond [`MAX_SMP_SESSIONS`], not decoded.
    pub smp_packets_dropped: u64,
    /// Bytes of TLS application data after login (full encryption).
    pub encrypted_after_login: bool,
    pub last_app_data: Option<Mark>,
    /// Bytes of the stream the capture lost (either direction): message-level conclusions
    /// about what was or was not sent are unsafe after one.
    pub gaps: u32,
}

impl TdsFacts {
    /// A connection's TDS facts when TDS is first recognised: nothing seen yet.
    pub fn new(dialect: Dialect, detected_at: Mark) -> TdsFacts {
        TdsFacts {
            dialect,
            detected_at,
            roles_reversed: false,
            prelogin_client: None,
            prelogin_server: None,
            tls: None,
            login7: None,
            login7_encrypted: None,
            sspi_rounds: Vec::new(),
            sspi_auth: None,
            sspi: None,
            login_ack: None,
            login_errors: Vec::new(),
            login_done: None,
            routing: None,
            database: None,
            requests: Vec::new(),
            request_count: 0,
            outstanding: None,
            errors: Vec::new(),
            error_count: 0,
            attentions: Vec::new(),
            attention_count: 0,
            response_ns_total: 0,
            responses: 0,
            mars: false,
            smp_sessions: Vec::new(),
            smp_packets_dropped: 0,
            encrypted_after_login: false,
            last_app_data: None,
            gaps: 0,
        }
    }

    /// The ATTENTIONs that cancelled a request; those sent during the login cancelled the
    /// login and belong to it.
    pub fn request_attentions(&self) -> impl Iterator<Item = &AttentionFacts> {
        self.attentions.iter().filter(|a| !a.during_login)
    }

    /// A request cancel (ATTENTION) the server has not acknowledged (DONE with ATTN) yet.
    pub fn cancel_pending(&self) -> bool {
        self.request_attentions().any(|a| a.acknowledged.is_none())
    }
}

/// A capture input's damage, as the reader reported it.
#[derive(Clone, Debug)]
pub struct InputDamage {
    pub input: u16,
    pub offset: u64,
    pub what: String,
    /// The last frame read before the damage (0 if none).
    pub last_good_frame: u64,
}

/// Several connections' events close together in time.
#[derive(Clone, Debug, PartialEq)]
pub struct Burst {
    pub count: u64,
    pub first: Mark,
    pub last: Mark,
    /// Report ids of the connections in the burst.
    pub connections: Vec<u32>,
}

/// What all connections to one server ip:port showed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerFacts {
    pub address: Option<std::net::SocketAddr>,
    pub connections: u64,
    pub tds_seen: bool,
    /// Named by the user with `--server`.
    pub hinted: bool,
    pub version: Option<String>,
    pub instance: Option<String>,
    /// The SQL Browser (SSRP) announced this ip:port for an instance.
    pub ssrp: bool,
    /// The largest burst of connections reset within the mass-reset window.
    pub mass_reset: Option<Burst>,
    /// The largest burst of failed attempts close to accepted ones (listen backlog).
    pub backlog: Option<Burst>,
}

/// What all connections from one client address showed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClientFacts {
    pub address: Option<std::net::IpAddr>,
    pub connections: u64,
    pub first: Option<Mark>,
    pub last: Option<Mark>,
    /// SQL connections that logged in, made a few requests and closed within seconds.
    pub short_sql_connections: u64,
    pub short_sql_first: Option<Mark>,
    pub short_sql_last: Option<Mark>,
    pub short_sql_ids: Vec<u32>,
    /// New connections on a client port used for the same server less than TIME_WAIT ago.
    pub port_reuses: u64,
    pub port_reuse_example: Option<Mark>,
}

/// One client's connection attempts that carried no data from it (a SYN, perhaps a handshake,
/// then nothing or a reset), over all the servers it tried: what a port scan or a sweep for a
/// service looks like on the wire (nmap -sS and -sT, masscan, inventory tools).
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeFacts {
    pub client: std::net::IpAddr,
    /// Connection attempts without client data.
    pub probes: u64,
    /// Distinct server ip:port, hosts and ports probed. Counting stops at a cap
    /// (`targets_capped`), so on a huge scan these are lower bounds.
    pub targets: u64,
    pub hosts: u64,
    pub ports: u64,
    pub targets_capped: bool,
    /// The one host or the one port, when all probes went to it.
    pub only_host: Option<std::net::IpAddr>,
    pub only_port: Option<u16>,
    /// How the probed servers answered: SYN-ACK, RST, nothing (or ICMP unreachable).
    pub answered: u64,
    pub refused: u64,
    pub unanswered: u64,
    /// The first few ip:ports that answered with a SYN-ACK, sorted.
    pub open: Vec<std::net::SocketAddr>,
    pub first: Mark,
    pub last: Mark,
    /// Report ids of the probing connections (the first ones, up to a cap).
    pub connections: Vec<u32>,
}

/// Facts about the capture as a whole, for capture-level findings.
#[derive(Clone, Debug, Default)]
pub struct CaptureFacts {
    pub damage: Vec<InputDamage>,
    /// (input, frames cut by snaplen, snaplen)
    pub truncated: Vec<(u16, u64, Option<u32>)>,
    pub servers: Vec<ServerFacts>,
    pub clients: Vec<ClientFacts>,
    /// Clients that made connection attempts without data to several targets.
    pub probes: Vec<ProbeFacts>,
}

/// How an exchange travelled: one datagram per message, or length-prefixed messages on a
/// TCP connection (DNS: RFC 1035 4.2.2, RFC 7766; Kerberos: RFC 4120 7.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExchangeTransport {
    Udp,
    Tcp,
}

impl ExchangeTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeTransport::Udp => "udp",
            ExchangeTransport::Tcp => "tcp",
        }
    }
}

/// Which protocol an exchange speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExchangeProtocol {
    /// SQL Server Resolution Protocol (MC-SQLR), UDP 1434.
    Ssrp,
    Dns,
    Kerberos,
}

impl ExchangeProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeProtocol::Ssrp => "ssrp",
            ExchangeProtocol::Dns => "dns",
            ExchangeProtocol::Kerberos => "kerberos",
        }
    }
}

/// What a request asked, per protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExchangeRequest {
    Ssrp {
        /// The message id (MC-SQLR 2.2: 2 CLNT_BCAST_EX, 3 CLNT_UCAST_EX, 4 CLNT_UCAST_INST,
        /// 15 CLNT_UCAST_DAC).
        opcode: u8,
        instance: Option<String>,
        /// UDP payload bytes of the first attempt.
        length: u32,
        /// The instance name is longer than MC-SQLR allows, or the request is malformed
        /// (the Slammer pattern).
        oversized: bool,
        /// Sent to a broadcast address: any server may answer.
        broadcast: bool,
    },
    Dns {
        name: String,
        /// Query types asked for this name (A and AAAA are one lookup).
        types: Vec<u16>,
    },
    Kerberos {
        /// `AS-REQ` or `TGS-REQ`.
        message: &'static str,
        sname: String,
        realm: String,
        /// AS-REQ: the client principal (TGS-REQ carries it only inside the encrypted ticket).
        cname: Option<String>,
        /// TGS-REQ: the forwardable KDC option (RFC 4120 5.4.1), which delegation needs.
        forwardable: Option<bool>,
    },
}

/// One instance an SSRP answer lists (MC-SQLR 2.2.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsrpInstanceFacts {
    pub server_name: String,
    pub instance: String,
    pub version: String,
    pub tcp_port: Option<u16>,
    pub pipe: Option<String>,
    pub clustered: bool,
}

/// What a response said, per protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExchangeResponseBody {
    Ssrp {
        instances: Vec<SsrpInstanceFacts>,
        /// The DAC port of a CLNT_UCAST_DAC answer (MC-SQLR 2.2.6).
        dac_port: Option<u16>,
    },
    Dns {
        rcode: u8,
        addresses: Vec<std::net::IpAddr>,
    },
    Kerberos {
        /// `AS-REP`, `TGS-REP`, `KRB-ERROR`, …
        message: &'static str,
        /// KRB-ERROR's code and RFC 4120 name.
        error: Option<(i32, &'static str)>,
        /// AS-REP/TGS-REP: the client principal the ticket is for (its name, without realm).
        cname: Option<String>,
    },
}

/// One response of an exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeResponse {
    pub at: Mark,
    pub from: std::net::SocketAddr,
    /// Nanoseconds since the attempt it answers.
    pub delay_ns: i64,
    pub body: ExchangeResponseBody,
}

/// A request, its retries and its answers (SSRP, DNS, Kerberos over UDP; DNS and Kerberos
/// over TCP, one request per exchange), once settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeFacts {
    pub protocol: ExchangeProtocol,
    pub transport: ExchangeTransport,
    /// The first attempt's source and destination.
    pub client: std::net::SocketAddr,
    pub server: std::net::SocketAddr,
    pub first: Mark,
    pub last_attempt: Mark,
    /// Requests sent: the first and its retries.
    pub attempts: u32,
    pub request: ExchangeRequest,
    /// In arrival order; bounded (broadcasts may draw many).
    pub responses: Vec<ExchangeResponse>,
    /// The first ICMP port unreachable for one of the attempts.
    pub port_unreachable: Option<Mark>,
    /// Settled by the end of the capture this soon (ns) after its last activity: an answer
    /// may have come after the capture stopped.
    pub cut_by_capture_end_ns: Option<i64>,
    /// Settled before its time because too many exchanges were pending: no answer yet does
    /// not mean none came.
    pub settled_early: bool,
}

/// An SSRP answer as soon as it arrives, for matching the TCP connection that follows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsrpAnnouncement {
    pub at: Mark,
    pub client: std::net::IpAddr,
    pub server: std::net::IpAddr,
    /// The instance the request named, if any.
    pub requested: Option<String>,
    pub instances: Vec<SsrpInstanceFacts>,
}
