//! The report: what renderers format. Plain owned data shaped like the JSON contract
//! (`../shared/spec/findings.md`, `docs/report-schema.md`); renderers sort and format it, they
//! never decide what it says.

use schemars::JsonSchema;
use serde::Serialize;
use std::collections::BTreeMap;

/// The JSON report's schema name; bumped only on an incompatible change.
pub const SCHEMA: &str = "tdsscope-report/1";

/// A place in the capture: which input (index into `inputs`) and which frame, 1-based.
#[derive(Clone, Copy, Debug, Serialize, JsonSchema, PartialEq, Eq)]
pub struct FramePos {
    pub input: u16,
    pub frame: u64,
}

/// One capture input as read.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Input {
    pub path: String,
    /// `pcap`, `pcapng`, `netmon2` or `live`; null when the file could not be opened.
    pub format: Option<&'static str>,
    /// True when the file was gzip-compressed.
    pub compressed: bool,
    pub frames: u64,
    pub bytes: u64,
    pub first_time: Option<String>,
    pub last_time: Option<String>,
    /// Frames cut short by the capture's snaplen.
    pub truncated_frames: u64,
    pub snaplen: Option<u32>,
    /// Frames not decoded as IP, by reason.
    pub skipped: BTreeMap<&'static str, u64>,
    /// Why reading stopped early, if it did.
    pub error: Option<String>,
}

impl Input {
    /// An input not read yet: counters at zero, format unknown.
    pub fn new(path: String) -> Input {
        Input {
            path,
            format: None,
            compressed: false,
            frames: 0,
            bytes: 0,
            first_time: None,
            last_time: None,
            truncated_frames: 0,
            snaplen: None,
            skipped: BTreeMap::new(),
            error: None,
        }
    }
}

/// A SQL Server endpoint and how it was found.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Server {
    pub address: String,
    pub port: u16,
    pub found_by: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// One TCP connection.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Connection {
    pub id: u32,
    pub client: String,
    pub server: String,
    pub sql: bool,
    pub first: FramePos,
    pub last: FramePos,
    pub start: String,
    pub end: String,
    pub duration_s: f64,
    /// `ok`, `refused`, `no_answer`, `unreachable`, `reset`, `aborted`, `open`, …
    pub outcome: &'static str,
    /// How the connection ended, from TCP alone.
    pub ended_by: Ending,
    /// How the roles were decided: `syn`, `syn_ack`, `port`.
    pub roles_from: &'static str,
    pub mid_stream: bool,
    pub handshake_rtt_ms: Option<f64>,
    /// The login, when TDS was seen; null otherwise.
    pub login: Option<Login>,
    /// `tds7`, `sybase` (TDS 4.2/5.0, not diagnosed as SQL Server), or null.
    pub protocol: Option<&'static str>,
    pub stats: ConnectionStats,
    /// MARS: the SMP sessions multiplexed on this connection ([MC-SMP]); absent without MARS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mars: Option<Mars>,
    pub tcp: TcpDetail,
    pub findings: Vec<Finding>,
    /// Milestones in time order (with `--verbose`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<TimelineEntry>,
}

/// One milestone of a connection.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct TimelineEntry {
    pub input: u16,
    pub frame: u64,
    pub time: String,
    /// Who sent it: `client`, `server`, `network` (an ICMP error), `?`.
    pub side: &'static str,
    pub event: String,
}

/// The login of a TDS connection (JSON `login`).
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct Login {
    /// `ok`, `failed`, `timeout`, `incomplete` (the capture does not show the end), or
    /// `not_seen` (the connection was already logged in when the capture began).
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub library: Option<String>,
    /// "7.4": from LOGINACK when seen, else LOGIN7.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tds_version: Option<String>,
    /// SQL Server product version, from LOGINACK or the PRELOGIN response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// `none` (no TLS), `login_only`, `full`, from the PRELOGIN exchange and the TLS seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption: Option<&'static str>,
    /// The client's and the server's PRELOGIN ENCRYPTION values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_client: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_server: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<&'static str>,
    /// What the client's SSPI tokens showed in clear (integrated logins).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sspi: Option<Sspi>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<LoginError>,
    /// Milliseconds of each login step seen (`handshake`, `prelogin`, `tls`, `login`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub steps_ms: BTreeMap<&'static str, f64>,
}

/// The identity an integrated login presented (JSON `login.sspi`): from NTLMSSP AUTHENTICATE
/// (MS-NLMP 2.2.1.3) or the Kerberos AP-REQ's ticket (RFC 4120 5.5.1), possibly inside SPNEGO.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Sspi {
    /// `ntlm` or `kerberos`.
    pub mechanism: &'static str,
    /// The tokens were wrapped in SPNEGO (Negotiate).
    pub spnego: bool,
    /// NTLM: the account, its domain and the client's workstation name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workstation: Option<String>,
    /// NTLM anonymous or null session.
    pub anonymous: bool,
    /// Kerberos: the service principal of the ticket (`MSSQLSvc/host:port`) and its realm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
}

/// The ERROR that failed a login.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct LoginError {
    pub number: i32,
    pub state: u8,
    pub class: u8,
    pub message: String,
}

/// How a connection ended.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Ending {
    /// `fin`, `half_close`, `rst`, `open`, `evicted`
    pub how: &'static str,
    /// `client`, `server`, or null when still open.
    pub by: Option<&'static str>,
    pub at: Option<FramePos>,
}

/// Counters of the contract's `stats` object.
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct ConnectionStats {
    pub frames: u64,
    pub frames_to_server: u64,
    pub frames_to_client: u64,
    /// Bytes of whole frames, as tshark's conversation table counts them.
    pub bytes_to_server: u64,
    pub bytes_to_client: u64,
    /// TCP payload bytes delivered once, in order.
    pub payload_to_server: u64,
    pub payload_to_client: u64,
    pub retransmissions: u64,
    pub duplicates: u64,
    pub keepalives: u64,
    pub zero_windows: u64,
    pub requests: u64,
    pub attentions: u64,
}

/// The MARS layer of a connection (JSON `mars`).
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Mars {
    /// SMP sessions in order of first appearance (at most 64).
    pub sessions: Vec<SmpSession>,
    /// SMP packets of sessions beyond the first 64, counted and not decoded.
    pub packets_dropped: u64,
}

/// One SMP session ([MC-SMP]): its own TDS conversation inside the connection.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct SmpSession {
    /// The SMP session id (SID, as tshark's `smp.sid`).
    pub sid: u16,
    /// The client's SYN, when captured.
    pub opened: Option<FramePos>,
    /// The first FIN of the client and of the server.
    pub client_fin: Option<FramePos>,
    pub server_fin: Option<FramePos>,
    /// SMP DATA packets per direction, and ACK (window update) packets of both.
    pub data_to_server: u64,
    pub data_to_client: u64,
    pub acks: u64,
    /// TDS requests (SQL batch, RPC, transaction manager, bulk load) sent on this session.
    pub requests: u64,
    pub attentions: u64,
    /// DONE tokens with the ATTN bit the server sent on this session.
    pub attentions_acknowledged: u64,
}

/// Per-direction TCP analysis counts, with Wireshark's flag names.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct TcpDetail {
    pub to_server: TcpDirDetail,
    pub to_client: TcpDirDetail,
}

#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct TcpDirDetail {
    pub ttl: Option<u8>,
    pub retransmission: u32,
    pub fast_retransmission: u32,
    pub spurious_retransmission: u32,
    pub keep_alive: u32,
    pub keep_alive_ack: u32,
    pub zero_window: u32,
    pub zero_window_probe: u32,
    pub zero_window_probe_ack: u32,
    pub window_update: u32,
    pub window_full: u32,
    pub duplicate_ack: u32,
    pub lost_segment: u32,
    pub ack_lost_segment: u32,
    pub out_of_order: u32,
    pub duplicate: u32,
    pub bad_checksum: u32,
    pub gaps: u32,
    pub gap_bytes: u64,
    /// The `tcp.analysis` flags Wireshark gives the capture duplicates (mostly
    /// `retransmission` and `duplicate_ack`), which tdsscope leaves out of the counts above:
    /// tshark's count of a flag is the field above plus this.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub duplicate_copy_flags: BTreeMap<&'static str, u32>,
}

/// Severity, as the contract defines it.
#[derive(Clone, Copy, Debug, Serialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// A frame a user should open in Wireshark, and why.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Evidence {
    pub input: u16,
    pub frame: u64,
    pub time: String,
    pub note: String,
}

/// One diagnosis.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Finding {
    pub code: &'static str,
    pub severity: Severity,
    pub summary: String,
    pub detail: serde_json::Map<String, serde_json::Value>,
    pub evidence: Vec<Evidence>,
    /// Mostly the catalogue's fixed texts, borrowed rather than copied per finding.
    pub next_steps: Vec<std::borrow::Cow<'static, str>>,
    /// For capture-level findings: the connections concerned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connections: Vec<u32>,
}

/// What is known only at the end of a run.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Totals {
    pub inputs: Vec<Input>,
    pub servers: Vec<Server>,
    /// Exchanges (SSRP, DNS, Kerberos; UDP and TCP), in order of their first request.
    pub exchanges: Vec<Exchange>,
    /// Exchanges left out of `exchanges` at its limit.
    pub exchanges_not_listed: u64,
    pub findings: Vec<Finding>,
    pub connections: u64,
    /// Connections by outcome.
    pub outcomes: BTreeMap<&'static str, u64>,
}

/// The whole JSON report, as `--format json` writes it: the type the JSON Schema
/// (`docs/report.schema.json`) is generated from. The writer streams the same members
/// (`report::json`).
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Report {
    /// `tdsscope-report/1`.
    pub schema: String,
    pub connections: Vec<Connection>,
    pub inputs: Vec<Input>,
    pub servers: Vec<Server>,
    /// SSRP, DNS and Kerberos exchanges.
    pub exchanges: Vec<Exchange>,
    pub findings: Vec<Finding>,
    pub summary: Summary,
}

/// Counts over the whole capture.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Summary {
    pub connections: u64,
    /// Connections by outcome.
    pub outcomes: BTreeMap<String, u64>,
}

/// One request (with its UDP retries) and what answered it: SQL Browser (SSRP), DNS or
/// Kerberos, over UDP or (DNS, Kerberos) TCP (JSON `exchanges`).
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Exchange {
    /// `ssrp`, `dns` or `kerberos`.
    pub protocol: &'static str,
    /// `udp`, or `tcp` for DNS and Kerberos read from a TCP connection (one request each).
    pub transport: &'static str,
    /// The first attempt's source, ip:port.
    pub client: String,
    /// Where the request went, ip:port (a broadcast address for CLNT_BCAST_EX).
    pub server: String,
    pub request: ExchangeRequest,
    /// The first answer (DNS: all answers merged); null when none came.
    pub response: Option<ExchangeResponse>,
    /// Requests sent: the first and its retries (DNS: per query type).
    pub attempts: u32,
    /// The first request.
    pub first: FramePos,
    pub start: String,
    /// From the attempt answered to the first answer.
    pub delay_ms: Option<f64>,
    /// Hosts that answered (several for a broadcast).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub responders: Vec<String>,
    /// The request drew an ICMP port unreachable.
    pub port_unreachable: bool,
    /// Ids of the TCP connections it preceded: from the same client, within 30 s, to an
    /// address it returned (DNS), the host that answered (SSRP) or the port of the SPN
    /// (Kerberos; also a connection open when the ticket was asked for).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connections: Vec<u32>,
    pub findings: Vec<Finding>,
}

/// What was asked, per protocol.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ExchangeRequest {
    Ssrp(SsrpRequest),
    Dns(DnsRequest),
    Kerberos(KerberosRequest),
}

/// An SSRP request (MC-SQLR 2.2.1-2.2.4).
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct SsrpRequest {
    /// 2 CLNT_BCAST_EX, 3 CLNT_UCAST_EX, 4 CLNT_UCAST_INST, 15 CLNT_UCAST_DAC.
    pub opcode: u8,
    /// The instance asked for (null for the "all instances" requests).
    pub instance: Option<String>,
    /// UDP payload bytes.
    pub length: u32,
}

/// A DNS query: one name, the types asked.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct DnsRequest {
    pub name: String,
    /// `A`, `AAAA`, `SRV`, … (`TYPEnn` for others).
    pub types: Vec<String>,
}

/// A Kerberos request to a KDC.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct KerberosRequest {
    /// `AS-REQ` or `TGS-REQ`.
    pub message: &'static str,
    pub sname: String,
    pub realm: String,
    /// AS-REQ: the client principal's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cname: Option<String>,
    /// TGS-REQ: the forwardable KDC option (delegation needs it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwardable: Option<bool>,
}

/// What answered, per protocol.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ExchangeResponse {
    Ssrp(SsrpResponse),
    Dns(DnsResponse),
    Kerberos(KerberosResponse),
}

/// An SSRP answer (MC-SQLR 2.2.5, 2.2.6).
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct SsrpResponse {
    pub instances: Vec<SsrpInstance>,
    /// The DAC port of a CLNT_UCAST_DAC answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dac_port: Option<u16>,
}

/// One instance an SSRP answer lists.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct SsrpInstance {
    /// The ServerName the Browser gave.
    pub server: String,
    pub instance: String,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipe: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clustered: Option<bool>,
}

/// A DNS answer: its RCODE and the addresses given (A and AAAA answers merged).
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct DnsResponse {
    /// 0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, 5 REFUSED, …: the first non-zero one of the answers.
    pub rcode: u8,
    pub addresses: Vec<String>,
}

/// A KDC's answer.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct KerberosResponse {
    /// `AS-REP`, `TGS-REP` or `KRB-ERROR`.
    pub message: &'static str,
    /// KRB-ERROR's RFC 4120 name (`KDC_ERR_S_PRINCIPAL_UNKNOWN`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// KRB-ERROR's error-code (RFC 4120 7.5.9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i32>,
    /// AS-REP/TGS-REP: the client principal's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cname: Option<String>,
}
