//! The TDS state machine of one connection: framer items in, [`TdsFacts`] out.
//!
//! Each direction has a [`Framer`]. Client messages are assembled (bounded) when their
//! content matters (PRELOGIN, LOGIN7, SSPI) and only counted otherwise; server messages are
//! walked token by token with a bounded carry-over buffer, so results of any size stream
//! through. The connection is recognised as TDS from structure, not from the port.

use crate::facts::{
    Anomaly, AnomalyKind, AttentionFacts, AuthKind, CertificateFacts, Dialect, EncryptionSetting,
    Login7Facts, LoginAckFacts, PreloginFacts, RequestFacts, RequestKind, RoutingFacts,
    ServerError, SmpSessionFacts, SspiFacts, TdsFacts, TlsFacts, MAX_KEPT_PER_CONNECTION,
    MAX_SMP_SESSIONS,
};
use crate::proto::tds::framer::{Framer, FramerItem};
use crate::proto::tds::header::HeaderRepr;
use crate::proto::tds::login7::{parse_login7, MAX_LOGIN7_LEN};
use crate::proto::tds::prelogin::{is_tls_record, parse_prelogin, Encryption, Prelogin};
use crate::proto::tds::rows::skip_rows;
use crate::proto::tds::smp::{starts_smp, SmpFlags, SmpItem, SmpRepr, SmpSplitter, SMID};
use crate::proto::tds::tokens::{done_status, parse_token, EnvChange, Token, TokenContext};
use crate::proto::tds::{PacketType, TdsVersion};
use crate::proto::tls::{TlsFlow, TlsMessage};
use crate::proto::ParseError;
use crate::tcp::{Direction, Mark};

/// Bytes per direction after which a connection that has not shown TDS is given up on.
const PROBE_LIMIT_BYTES: u64 = 16 * 1024;
/// PRELOGIN and SSPI messages are small; anything larger is not plausible.
const MAX_SMALL_MESSAGE: usize = 64 * 1024;
/// Largest single token the walker buffers (a ROW with a big inline value, an ERROR);
/// PLP values and larger tokens make it skip to the end of the message instead.
const MAX_TOKEN_CARRY: usize = 1 << 20;
/// Buffer capacity a connection keeps between messages; larger buffers are released.
const KEEP_CAPACITY: usize = 4096;

/// The first share of the next piece lent to a cut token; doubled until the token is whole.
const CARRY_STEP: usize = 256;
/// Anomalies kept per connection.
const MAX_ANOMALIES: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Detection {
    Probing,
    Tds,
    NotTds,
}

/// Where the login is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Before or during PRELOGIN.
    Prelogin,
    /// PRELOGIN answered; TLS may follow; LOGIN7 expected.
    Login,
    /// LOGIN7 sent; waiting for LOGINACK or an error.
    LoginResponse,
    /// Logged in: requests and responses.
    LoggedIn,
}

/// A client message being assembled.
#[derive(Default)]
struct ClientMessage {
    ptype: Option<PacketType>,
    at: Option<Mark>,
    body: Vec<u8>,
    /// Bytes beyond what we keep.
    dropped: usize,
    /// The body starts with TLS records (handshake inside PRELOGIN).
    tls: bool,
}

/// The server message being walked.
#[derive(Default)]
struct ServerMessage {
    at: Option<Mark>,
    carry: Vec<u8>,
    /// Give up on the rest of this message (malformed, too large, mid-message start).
    skipping: bool,
    /// PRELOGIN response, assembled whole.
    prelogin: Vec<u8>,
    tls: bool,
    last_done: Option<(u16, Option<u64>)>,
}

/// The TDS state of one MARS (SMP) session: its own framers, messages in progress, result-set
/// columns and outstanding request. While the session's bytes are processed it is swapped into
/// the connection's fields, so the one TDS state machine serves every session.
struct SmpContext {
    framers: [Framer; 2],
    at_message_start: [bool; 2],
    client: ClientMessage,
    server: ServerMessage,
    tokens: TokenContext,
    outstanding: Option<RequestFacts>,
}

impl SmpContext {
    fn new(version: TdsVersion) -> Self {
        SmpContext {
            framers: [Framer::new(), Framer::new()],
            at_message_start: [true, true],
            client: ClientMessage::default(),
            server: ServerMessage::default(),
            tokens: TokenContext::new(version),
            outstanding: None,
        }
    }
}

/// TDS state of one connection.
pub struct TdsSession {
    detection: Detection,
    /// Requests arrive in the direction TCP called ToClient: roles are reversed.
    reversed: bool,
    framers: [Framer; 2],
    bytes_probed: [u64; 2],
    /// The next packet of this direction starts a message (the previous one had EOM).
    at_message_start: [bool; 2],
    /// A packet began mid-message (capture started inside it) and was not understood.
    phase: Phase,
    version: Option<TdsVersion>,
    tokens: TokenContext,
    client: ClientMessage,
    server: ServerMessage,
    facts: Option<TdsFacts>,
    pub anomalies: Vec<Anomaly>,
    /// TLS records seen directly on TCP.
    tls_direct: bool,
    /// TLS state per role (client, server), and the TLS record being rebuilt per TCP direction.
    tls_flows: [TlsFlow; 2],
    tls_records: [Vec<u8>; 2],
    /// Per TCP direction: bytes were lost from the capture and no whole packet followed yet.
    after_gap: [bool; 2],
    /// Messages started by the client and ended by the server, for telling a mid-message
    /// start of the capture from a malformed message.
    client_messages: u64,
    server_messages: u64,
    /// Per TCP direction: the SMP splitter, once MARS packets were seen in that direction.
    smp: [Option<SmpSplitter>; 2],
    /// SMP sessions, parallel to `smp_facts` (bounded by [`MAX_SMP_SESSIONS`]).
    smp_contexts: Vec<SmpContext>,
    smp_facts: Vec<SmpSessionFacts>,
    smp_dropped: u64,
    /// The SMP session whose bytes are being processed; None for plain TDS.
    current_sid: Option<u16>,
}

fn setting(e: Encryption) -> EncryptionSetting {
    match e {
        Encryption::Off => EncryptionSetting::Off,
        Encryption::On => EncryptionSetting::On,
        Encryption::NotSup => EncryptionSetting::NotSupported,
        Encryption::Req => EncryptionSetting::Required,
        Encryption::Unknown(v) => EncryptionSetting::Unknown(v),
    }
}

fn prelogin_facts(p: &Prelogin<'_>, at: Mark) -> PreloginFacts {
    PreloginFacts {
        at,
        encryption: p.encryption.map(setting),
        version: p.version.map(|v| v.label()),
        instance: p
            .instance
            .filter(|i| !i.is_empty() && i.iter().all(|b| b.is_ascii_graphic()))
            .map(|i| String::from_utf8_lossy(i).into_owned()),
        mars: p.mars,
        fed_auth_required: p.fed_auth_required,
    }
}

/// Classifies an SSPI blob: NTLMSSP, SPNEGO (Negotiate) or a bare Kerberos AP-REQ.
pub fn sspi_kind(blob: &[u8]) -> AuthKind {
    if blob.starts_with(b"NTLMSSP\0") {
        AuthKind::Ntlm
    } else if blob.first() == Some(&0x60) {
        // GSS-API InitialContextToken: SPNEGO OID 1.3.6.1.5.5.2 or Kerberos 1.2.840.113554.1.2.2.
        let spnego = [0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x02];
        if blob.windows(spnego.len()).take(16).any(|w| w == spnego) {
            AuthKind::Negotiate
        } else {
            AuthKind::Kerberos
        }
    } else if blob.first() == Some(&0xa1) || blob.first() == Some(&0xa0) {
        AuthKind::Negotiate
    } else {
        AuthKind::Integrated
    }
}

/// Records what a client security token shows in clear: NTLM AUTHENTICATE's user, domain and
/// workstation (MS-NLMP 2.2.1.3), or the Kerberos ticket's service and realm (RFC 4120 5.3),
/// directly or inside SPNEGO. NEGOTIATE messages name only the mechanism (their optional
/// domain and workstation are usually empty and never the identity used).
fn note_sspi_identity(facts: &mut TdsFacts, at: Mark, blob: &[u8]) {
    use crate::proto::ntlm::{parse_security_blob, NtlmMessage, SecurityBlob, Spnego};
    let parsed = parse_security_blob(blob);
    let spnego = matches!(parsed, SecurityBlob::Spnego(_));
    let sspi = facts.sspi.get_or_insert_with(SspiFacts::default);
    sspi.spnego |= spnego;
    if let Some(m) = parsed.ntlm() {
        sspi.mechanism = Some("ntlm");
        if let NtlmMessage::Authenticate(a) = m {
            let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
            sspi.user = some(&a.user);
            sspi.domain = some(&a.domain);
            sspi.workstation = some(&a.workstation);
            sspi.anonymous = a.anonymous;
            sspi.at = Some(at);
        }
    } else if let Some(ap) = parsed.kerberos_ap_req() {
        sspi.mechanism = Some("kerberos");
        sspi.spn = ap.spn.clone();
        sspi.realm = ap.realm.clone();
        sspi.at = Some(at);
    } else if let SecurityBlob::Spnego(Spnego::Init(init)) = &parsed {
        // An SPNEGO offer without a readable token: the first mechanism it prefers.
        if sspi.mechanism.is_none() {
            sspi.mechanism = init.mech_types.first().and_then(|m| {
                if m.is_kerberos() {
                    Some("kerberos")
                } else if *m == crate::proto::ntlm::Mech::Ntlmssp {
                    Some("ntlm")
                } else {
                    None
                }
            });
        }
    } else if matches!(parsed, SecurityBlob::KerberosApReq(_)) {
        sspi.mechanism = Some("kerberos");
    }
}

impl Default for TdsSession {
    fn default() -> Self {
        TdsSession::new()
    }
}

impl TdsSession {
    pub fn new() -> Self {
        TdsSession {
            detection: Detection::Probing,
            reversed: false,
            framers: [Framer::new(), Framer::new()],
            bytes_probed: [0, 0],
            at_message_start: [true, true],
            phase: Phase::Prelogin,
            version: None,
            tokens: TokenContext::new(TdsVersion::V7_4),
            client: ClientMessage::default(),
            server: ServerMessage::default(),
            facts: None,
            anomalies: Vec::new(),
            tls_direct: false,
            tls_flows: [TlsFlow::new(), TlsFlow::new()],
            tls_records: [Vec::new(), Vec::new()],
            after_gap: [false, false],
            client_messages: 0,
            server_messages: 0,
            smp: [None, None],
            smp_contexts: Vec::new(),
            smp_facts: Vec::new(),
            smp_dropped: 0,
            current_sid: None,
        }
    }

    /// True once the connection was recognised as TDS.
    pub fn is_tds(&self) -> bool {
        self.detection == Detection::Tds
    }

    /// True when the probe gave up: the bytes are not TDS.
    pub fn is_not_tds(&self) -> bool {
        self.detection == Detection::NotTds
    }

    pub fn reversed(&self) -> bool {
        self.reversed
    }

    /// A side finished sending (FIN) or the connection was reset: what it was assembling will
    /// never complete, so the buffers go now rather than when the tracker finally closes the
    /// connection (which lingers a while for stray packets).
    /// `dir` is the direction that ended (FIN: its sender is done; RST: both are).
    pub fn on_end(&mut self, dir: Direction, reset: bool) {
        let role = self.role(dir);
        if reset || role == Direction::ToServer {
            self.client = ClientMessage::default();
        }
        if reset || role == Direction::ToClient {
            self.server.carry = Vec::new();
            self.server.prelogin = Vec::new();
        }
        for ctx in &mut self.smp_contexts {
            if reset || role == Direction::ToServer {
                ctx.client = ClientMessage::default();
            }
            if reset || role == Direction::ToClient {
                ctx.server.carry = Vec::new();
            }
        }
    }

    /// The facts, once TDS was recognised.
    pub fn into_facts(mut self) -> (Option<TdsFacts>, Vec<Anomaly>) {
        if let Some(f) = self.facts.as_mut() {
            f.roles_reversed = self.reversed;
            if !self.smp_facts.is_empty() {
                f.mars = true;
                f.smp_sessions = std::mem::take(&mut self.smp_facts);
                f.smp_packets_dropped = self.smp_dropped;
            }
            // Requests still open on other SMP sessions: the latest stays the outstanding one.
            for ctx in &mut self.smp_contexts {
                let Some(req) = ctx.outstanding.take() else {
                    continue;
                };
                match f.outstanding.take() {
                    Some(old) if old.at.ts > req.at.ts => {
                        keep_request(f, req);
                        f.outstanding = Some(old);
                    }
                    Some(old) => {
                        keep_request(f, old);
                        f.outstanding = Some(req);
                    }
                    None => f.outstanding = Some(req),
                }
            }
        }
        (self.facts, self.anomalies)
    }

    fn anomaly(&mut self, kind: AnomalyKind, at: Mark, dir: Direction, detail: String) {
        if self.anomalies.len() < MAX_ANOMALIES {
            self.anomalies.push(Anomaly {
                kind,
                at,
                dir,
                detail,
            });
        }
    }

    /// Bytes of the stream that were never captured.
    pub fn on_gap(&mut self, dir: Direction, len: u64) {
        if self.detection == Detection::NotTds {
            return;
        }
        let i = dir.index();
        let in_progress = self
            .smp
            .get(i)
            .and_then(Option::as_ref)
            .map(SmpSplitter::payload_in_progress);
        if let Some(in_progress) = in_progress {
            // The SMP session whose DATA the gap cut loses that packet. An SMP DATA carries one
            // whole TDS packet, so the session's next DATA starts a TDS packet again: its framer
            // starts afresh instead of hunting for a header. The other sessions keep their place.
            if let Some((sid, _)) = in_progress {
                let role = self.role(dir);
                let k = self.smp_index(sid);
                if let Some(ctx) = k.and_then(|k| self.smp_contexts.get_mut(k)) {
                    if let Some(f) = ctx.framers.get_mut(i) {
                        *f = Framer::new();
                    }
                    match role {
                        Direction::ToServer => ctx.client = ClientMessage::default(),
                        Direction::ToClient => ctx.server.skipping = true,
                    }
                }
            }
            if let Some(splitter) = self.smp.get_mut(i).and_then(Option::as_mut) {
                splitter.on_gap(len);
            }
        } else if let Some(f) = self.framers.get_mut(i) {
            f.on_gap(len);
        }
        // Skipping to the next header after bytes the capture lost is expected, not a fault.
        if let Some(g) = self.after_gap.get_mut(i) {
            *g = true;
        }
        if let Some(f) = self.facts.as_mut() {
            f.gaps = f.gaps.saturating_add(1);
        }
        // Whatever message was in progress in that direction is no longer whole.
        match self.role(dir) {
            Direction::ToServer => self.client = ClientMessage::default(),
            Direction::ToClient => self.server.skipping = true,
        }
    }

    /// `dir` as TCP named it, mapped to the roles TDS showed.
    fn role(&self, dir: Direction) -> Direction {
        if self.reversed {
            dir.reverse()
        } else {
            dir
        }
    }

    /// Next in-order bytes of `dir`, first of which arrived in the frame `at`.
    pub fn on_data(&mut self, dir: Direction, at: Mark, data: &[u8]) {
        if self.detection == Detection::NotTds {
            return;
        }
        let i = dir.index();
        if self.detection == Detection::Probing {
            if let Some(n) = self.bytes_probed.get_mut(i) {
                *n += data.len() as u64;
            }
        }
        if self.smp.get(i).is_some_and(Option::is_none) && self.smp_starts(i, data) {
            if let Some(slot) = self.smp.get_mut(i) {
                *slot = Some(SmpSplitter::new());
            }
        }
        if let Some(mut splitter) = self.smp.get_mut(i).and_then(Option::take) {
            splitter.feed(data, &mut |item| self.on_smp_item(dir, at, item));
            if let Some(slot) = self.smp.get_mut(i) {
                *slot = Some(splitter);
            }
        } else {
            // The framer is moved out while it runs so that its callback may borrow the session.
            let mut framer = match self.framers.get_mut(i) {
                Some(f) => std::mem::take(f),
                None => return,
            };
            self.feed_framer(dir, at, &mut framer, data);
            if let Some(f) = self.framers.get_mut(i) {
                *f = framer;
            }
        }
        if self.detection == Detection::Probing
            && self.bytes_probed.iter().any(|&n| n > PROBE_LIMIT_BYTES)
        {
            self.detection = Detection::NotTds;
        }
    }

    /// TDS packets of `dir` through `framer` into the state machine.
    fn feed_framer(&mut self, dir: Direction, at: Mark, framer: &mut Framer, data: &[u8]) {
        let i = dir.index();
        framer.feed(data, &mut |item| {
            if self.detection == Detection::NotTds {
                return;
            }
            match item {
                FramerItem::Payload {
                    header,
                    data,
                    first,
                    last,
                } => {
                    if last {
                        if let Some(g) = self.after_gap.get_mut(i) {
                            *g = false;
                        }
                    }
                    self.on_packet_piece(dir, at, header, data, first, last)
                }
                FramerItem::Tls {
                    content_type,
                    data,
                    first,
                    last,
                } => self.on_tls_piece(dir, at, content_type, data, first, last),
                FramerItem::Skipped { bytes } => {
                    let expected = self.after_gap.get(i).copied().unwrap_or(false);
                    if self.detection == Detection::Tds && !expected {
                        self.anomaly(
                            AnomalyKind::TdsResync,
                            at,
                            dir,
                            format!("{bytes} bytes skipped to find the next TDS packet header"),
                        );
                    }
                    if let Some(s) = self.at_message_start.get_mut(i) {
                        *s = false;
                    }
                }
            }
        });
    }

    /// True when `data`, the next bytes of TCP direction `i`, start the MARS layer: an SMP
    /// header where a TDS packet could start ([MS-TDS] 2.2.6.5 MARS, [MC-SMP] 2.2.1), on a
    /// connection whose PRELOGIN agreed on MARS or was not captured (joined mid-stream).
    fn smp_starts(&self, i: usize, data: &[u8]) -> bool {
        if data.first() != Some(&SMID) {
            return false;
        }
        let boundary = self
            .framers
            .get(i)
            .is_some_and(|f| f.at_boundary() || f.is_lost());
        let agreed = match self.facts.as_ref() {
            None => true,
            Some(f) => {
                let asked = [&f.prelogin_client, &f.prelogin_server];
                let seen = asked.iter().filter(|p| p.is_some()).count();
                seen == 0
                    || asked
                        .iter()
                        .filter_map(|p| p.as_ref())
                        .all(|p| p.mars == Some(true))
            }
        };
        boundary && agreed && starts_smp(data)
    }

    fn smp_index(&self, sid: u16) -> Option<usize> {
        self.smp_facts.iter().position(|f| f.sid == sid)
    }

    /// The session's index, creating it while there is room.
    fn smp_session(&mut self, sid: u16, at: Mark) -> Option<usize> {
        if let Some(k) = self.smp_index(sid) {
            return Some(k);
        }
        if self.smp_facts.len() >= MAX_SMP_SESSIONS {
            self.smp_dropped = self.smp_dropped.saturating_add(1);
            return None;
        }
        let version = self.version.unwrap_or(self.tokens.version);
        self.smp_contexts.push(SmpContext::new(version));
        self.smp_facts.push(SmpSessionFacts {
            sid,
            first_seen: at,
            opened: None,
            client_fin: None,
            server_fin: None,
            data_to_server: 0,
            data_to_client: 0,
            acks: 0,
            requests: 0,
            attentions: 0,
            attentions_acknowledged: 0,
        });
        Some(self.smp_facts.len() - 1)
    }

    fn on_smp_item(&mut self, dir: Direction, at: Mark, item: SmpItem<'_>) {
        if self.detection == Detection::NotTds {
            return;
        }
        match item {
            SmpItem::Header(h) => self.on_smp_header(dir, at, h),
            SmpItem::Data { sid, data, .. } => self.on_smp_data(dir, at, sid, data),
            SmpItem::Skipped { bytes } => {
                let expected = self.after_gap.get(dir.index()).copied().unwrap_or(false);
                if self.detection == Detection::Tds && !expected {
                    self.anomaly(
                        AnomalyKind::TdsResync,
                        at,
                        dir,
                        format!("{bytes} bytes skipped to find the next SMP (MARS) header"),
                    );
                }
            }
        }
    }

    fn on_smp_header(&mut self, dir: Direction, at: Mark, h: SmpRepr) {
        let role = self.role(dir);
        let Some(k) = self.smp_session(h.sid, at) else {
            return;
        };
        let Some(f) = self.smp_facts.get_mut(k) else {
            return;
        };
        match (h.flags, role) {
            (SmpFlags::Syn, _) => {
                f.opened.get_or_insert(at);
            }
            (SmpFlags::Fin, Direction::ToServer) => {
                f.client_fin.get_or_insert(at);
            }
            (SmpFlags::Fin, Direction::ToClient) => {
                f.server_fin.get_or_insert(at);
            }
            (SmpFlags::Ack, _) => f.acks += 1,
            (SmpFlags::Data, Direction::ToServer) => f.data_to_server += 1,
            (SmpFlags::Data, Direction::ToClient) => f.data_to_client += 1,
            (SmpFlags::Unknown(_), _) => {}
        }
    }

    /// A piece of an SMP DATA payload: TDS packets of session `sid`, run through the TDS state
    /// machine with that session's state swapped in.
    fn on_smp_data(&mut self, dir: Direction, at: Mark, sid: u16, data: &[u8]) {
        let Some(k) = self.smp_index(sid) else {
            return;
        };
        let Some(slot) = self.smp_contexts.get_mut(k) else {
            return;
        };
        let mut ctx = std::mem::replace(slot, SmpContext::new(TdsVersion::V7_4));
        self.swap_context(&mut ctx);
        if let Some(v) = self.version {
            self.tokens.version = v;
        }
        self.current_sid = Some(sid);
        let i = dir.index();
        let mut framer = self
            .framers
            .get_mut(i)
            .map(std::mem::take)
            .unwrap_or_default();
        self.feed_framer(dir, at, &mut framer, data);
        if let Some(f) = self.framers.get_mut(i) {
            *f = framer;
        }
        self.current_sid = None;
        let version = self.tokens.version;
        self.swap_context(&mut ctx);
        if self.version.is_none() {
            // A guess made while walking this session's messages holds for the connection.
            self.tokens.version = version;
        }
        if let Some(slot) = self.smp_contexts.get_mut(k) {
            *slot = ctx;
        }
    }

    fn swap_context(&mut self, ctx: &mut SmpContext) {
        std::mem::swap(&mut self.framers, &mut ctx.framers);
        std::mem::swap(&mut self.at_message_start, &mut ctx.at_message_start);
        std::mem::swap(&mut self.client, &mut ctx.client);
        std::mem::swap(&mut self.server, &mut ctx.server);
        std::mem::swap(&mut self.tokens, &mut ctx.tokens);
        if let Some(f) = self.facts.as_mut() {
            std::mem::swap(&mut f.outstanding, &mut ctx.outstanding);
        }
    }

    /// The current SMP session's facts.
    fn smp_current(&mut self) -> Option<&mut SmpSessionFacts> {
        let sid = self.current_sid?;
        self.smp_facts.iter_mut().find(|f| f.sid == sid)
    }

    /// Bytes this connection carried while the probe was still looking, per TCP direction.
    pub fn probed_bytes(&self) -> u64 {
        self.bytes_probed.iter().sum()
    }

    fn facts_mut(&mut self, at: Mark, dialect: Dialect) -> &mut TdsFacts {
        facts_entry(&mut self.facts, at, dialect)
    }

    /// Confirms TDS on a probe, deciding roles from which side sent a request.
    fn confirm(&mut self, tcp_dir: Direction, at: Mark, is_request: bool, dialect: Dialect) {
        if self.detection == Detection::Tds {
            return;
        }
        self.detection = Detection::Tds;
        // A request from what TCP called the server means TCP guessed the roles wrong.
        self.reversed = is_request == (tcp_dir == Direction::ToClient);
        self.facts_mut(at, dialect);
    }

    fn on_packet_piece(
        &mut self,
        tcp_dir: Direction,
        at: Mark,
        header: HeaderRepr,
        data: &[u8],
        first: bool,
        last: bool,
    ) {
        let i = tcp_dir.index();
        let message_start = first && self.at_message_start.get(i).copied().unwrap_or(true);
        let eom = last && header.status & crate::proto::tds::header::status::EOM != 0;
        if last {
            if let Some(s) = self.at_message_start.get_mut(i) {
                *s = eom;
            }
        }
        let ptype = header.packet_type;
        if self.detection == Detection::Probing {
            // Old TDS (4.2/5.0) logins: recognise and label, no SQL Server diagnosis.
            if first && plausible_old_tds(ptype, header.length, data) {
                self.confirm(tcp_dir, at, true, Dialect::Sybase);
                return;
            }
            if !self.probe(tcp_dir, at, ptype, data, first) {
                return;
            }
        }
        if self
            .facts
            .as_ref()
            .is_some_and(|f| f.dialect == Dialect::Sybase)
        {
            return;
        }
        match self.role(tcp_dir) {
            Direction::ToServer => self.on_client_piece(at, ptype, data, message_start, eom),
            Direction::ToClient => self.on_server_piece(at, ptype, data, message_start, eom),
        }
    }

    /// Looks at a packet while the connection is not yet known to be TDS. Returns true when
    /// the packet is TDS (detection confirmed) and should be processed.
    fn probe(
        &mut self,
        dir: Direction,
        at: Mark,
        ptype: PacketType,
        data: &[u8],
        first: bool,
    ) -> bool {
        if !first {
            return false;
        }
        let plausible = match ptype {
            PacketType::Prelogin => {
                is_tls_record(data) || parse_prelogin(data).is_ok() || prelogin_table_start(data)
            }
            PacketType::Login7 => {
                data.len() >= 36
                    && data
                        .get(4..8)
                        .is_some_and(|v| matches!(v.get(3), Some(0x70..=0x74) | Some(0x08)))
            }
            PacketType::SqlBatch | PacketType::Rpc => plausible_request(data),
            PacketType::TabularResult => plausible_tokens(data),
            _ => false,
        };
        if !plausible {
            return false;
        }
        let is_request = ptype != PacketType::TabularResult;
        self.confirm(dir, at, is_request, Dialect::Tds7);
        true
    }

    fn on_client_piece(
        &mut self,
        at: Mark,
        ptype: PacketType,
        data: &[u8],
        start: bool,
        eom: bool,
    ) {
        if start {
            self.client_messages += 1;
            self.client = ClientMessage {
                ptype: Some(ptype),
                at: Some(at),
                tls: ptype == PacketType::Prelogin && is_tls_record(data),
                ..ClientMessage::default()
            };
            self.on_client_message_start(at, ptype);
            if ptype == PacketType::Rpc {
                self.on_rpc_start(data);
            }
        }
        let keep = match self.client.ptype {
            Some(PacketType::Login7) => MAX_LOGIN7_LEN,
            Some(PacketType::Prelogin) | Some(PacketType::Sspi) => MAX_SMALL_MESSAGE,
            _ => 0,
        };
        let room = keep.saturating_sub(self.client.body.len());
        let take = room.min(data.len());
        self.client
            .body
            .extend_from_slice(data.get(..take).unwrap_or(&[]));
        self.client.dropped += data.len() - take;
        if eom {
            self.on_client_message_end();
        }
    }

    /// Names the outstanding RPC request's procedure from its first packet.
    fn on_rpc_start(&mut self, data: &[u8]) {
        let Ok(p) = crate::proto::tds::rpc::parse_rpc_procedure(data) else {
            return;
        };
        if let Some(r) = self.facts.as_mut().and_then(|f| f.outstanding.as_mut()) {
            r.procedure = Some(p.display_name());
        }
    }

    fn on_client_message_start(&mut self, at: Mark, ptype: PacketType) {
        let kind = match ptype {
            PacketType::SqlBatch => Some(RequestKind::SqlBatch),
            PacketType::Rpc => Some(RequestKind::Rpc),
            PacketType::TransactionManager => Some(RequestKind::TransactionManager),
            PacketType::BulkLoad => Some(RequestKind::BulkLoad),
            _ => None,
        };
        let phase = self.phase;
        let smp_sid = self.current_sid;
        if kind.is_some() || ptype == PacketType::Attention {
            if let Some(f) = self.smp_current() {
                if kind.is_some() {
                    f.requests += 1;
                } else {
                    f.attentions += 1;
                }
            }
        }
        let facts = self.facts_mut(at, Dialect::Tds7);
        if let Some(kind) = kind {
            // A request on a connection whose login we never saw: it is logged in.
            facts.request_count += 1;
            if let Some(done) = facts.outstanding.take() {
                keep_request(facts, done);
            }
            facts.outstanding = Some(RequestFacts {
                kind,
                at,
                first_response: None,
                done: None,
                done_status: 0,
                row_count: None,
                smp_sid,
                procedure: None,
            });
            if phase != Phase::LoggedIn {
                self.phase = Phase::LoggedIn;
            }
        } else if ptype == PacketType::Attention {
            facts.attention_count += 1;
            let request_at = facts.outstanding.as_ref().map(|r| r.at);
            if facts.attentions.len() < MAX_KEPT_PER_CONNECTION {
                facts.attentions.push(AttentionFacts {
                    at,
                    request_at,
                    acknowledged: None,
                    // A client that gives up on a slow login cancels it with an ATTENTION.
                    during_login: phase == Phase::LoginResponse,
                    smp_sid,
                });
            }
        } else if ptype == PacketType::Sspi {
            facts.sspi_rounds.push(at);
        }
    }

    fn on_client_message_end(&mut self) {
        let Some(at) = self.client.at else { return };
        let body = std::mem::take(&mut self.client.body);
        match self.client.ptype {
            Some(PacketType::Prelogin) if self.client.tls => {
                self.on_tls_handshake(Direction::ToServer, at, &body, true);
            }
            Some(PacketType::Prelogin) => match parse_prelogin(&body) {
                Ok(p) => {
                    let pf = prelogin_facts(&p, at);
                    self.facts_mut(at, Dialect::Tds7).prelogin_client = Some(pf);
                    self.phase = Phase::Prelogin;
                }
                Err(e) => self.malformed(at, Direction::ToServer, "PRELOGIN", &e),
            },
            Some(PacketType::Sspi) => {
                // The SSPI continuation names the package even when LOGIN7 was inside TLS.
                let kind = sspi_kind(&body);
                let facts = facts_entry(&mut self.facts, at, Dialect::Tds7);
                facts.sspi_auth.get_or_insert(kind);
                note_sspi_identity(facts, at, &body);
            }
            Some(PacketType::Login7) => {
                match parse_login7(&body) {
                    Ok(l) => {
                        if let Some(v) = Some(l.tds_version)
                            .filter(|v| v.0 >> 24 >= 0x70 || v.0 == TdsVersion::V8_0.0)
                        {
                            self.version = Some(v);
                            self.tokens.version = v;
                        }
                        let auth = if l.has_feature(crate::proto::tds::login7::feature::FEDAUTH) {
                            AuthKind::FedAuth
                        } else if l.integrated_security() || !l.sspi.is_empty() {
                            sspi_kind(l.sspi)
                        } else {
                            AuthKind::Sql
                        };
                        let lf = Login7Facts {
                            at,
                            tds_version: l.tds_version.0,
                            user: l.user_name.clone(),
                            host: l.host_name.clone(),
                            app: l.app_name.clone(),
                            server_name: l.server_name.clone(),
                            library: l.library_name.clone(),
                            database: l.database.clone(),
                            language: l.language.clone(),
                            packet_size: l.packet_size,
                            auth,
                            read_only_intent: l.read_only_intent(),
                            client_pid: l.client_pid,
                        };
                        let facts = self.facts_mut(at, Dialect::Tds7);
                        facts.login7 = Some(lf);
                        if !l.sspi.is_empty() {
                            note_sspi_identity(facts, at, l.sspi);
                        }
                    }
                    Err(e) => self.malformed(at, Direction::ToServer, "LOGIN7", &e),
                }
                self.phase = Phase::LoginResponse;
            }
            _ => {}
        }
        self.client = ClientMessage::default();
    }

    fn malformed(&mut self, at: Mark, dir: Direction, what: &str, e: &ParseError) {
        // After the capture lost bytes of the stream, a message that does not parse is the
        // loss showing, not the sender's fault (capture.packet_loss or truncated frames say it).
        if self.facts.as_ref().is_some_and(|f| f.gaps > 0) {
            return;
        }
        let kind = match e {
            ParseError::TooLarge { .. } => AnomalyKind::TdsTooLarge,
            _ => AnomalyKind::MalformedTds,
        };
        self.anomaly(kind, at, dir, format!("{what}: {e}"));
    }

    fn on_server_piece(
        &mut self,
        at: Mark,
        ptype: PacketType,
        data: &[u8],
        start: bool,
        eom: bool,
    ) {
        if start {
            self.server = ServerMessage {
                at: Some(at),
                tls: ptype == PacketType::Prelogin
                    || is_tls_record(data) && self.phase != Phase::LoggedIn,
                ..ServerMessage::default()
            };
            if let Some(facts) = self.facts.as_mut() {
                if let Some(req) = facts
                    .outstanding
                    .as_mut()
                    .filter(|r| r.first_response.is_none())
                {
                    req.first_response = Some(at);
                    facts.response_ns_total += at.ts.nanos_since(req.at.ts);
                    facts.responses += 1;
                }
            }
        } else if self.server.at.is_none() {
            // Joined mid-message: nothing to walk until the next message starts.
            self.server.skipping = true;
        }
        let awaiting_prelogin = self.phase == Phase::Prelogin
            && self
                .facts
                .as_ref()
                .is_some_and(|f| f.prelogin_client.is_some() && f.prelogin_server.is_none());
        if self.server.tls {
            self.server.prelogin.extend_from_slice(
                data.get(
                    ..MAX_SMALL_MESSAGE
                        .saturating_sub(self.server.prelogin.len())
                        .min(data.len()),
                )
                .unwrap_or(&[]),
            );
        } else if awaiting_prelogin && ptype == PacketType::TabularResult {
            let room = MAX_SMALL_MESSAGE.saturating_sub(self.server.prelogin.len());
            self.server
                .prelogin
                .extend_from_slice(data.get(..room.min(data.len())).unwrap_or(&[]));
        } else if ptype == PacketType::Sspi {
            // Some servers (and synthetic captures) send the SSPI challenge as a bare SSPI
            // packet rather than an SSPI token inside a tabular result: nothing to walk.
        } else if !self.server.skipping {
            self.walk_tokens(at, data);
        }
        if eom {
            self.on_server_message_end(at, awaiting_prelogin);
        }
    }

    fn walk_tokens(&mut self, at: Mark, data: &[u8]) {
        // Tokens are parsed straight from the packet's bytes. Only a token cut by a packet
        // boundary is carried over, and completed by borrowing just enough of the next bytes
        // (in doubling steps) rather than copying the whole next piece behind it: rows are
        // cut at almost every segment boundary of a large result.
        let mut events: Vec<TokenEvent> = Vec::new();
        let mut failure: Option<ParseError> = None;
        let mut carry = std::mem::take(&mut self.server.carry);
        let mut data_from = 0;
        if !carry.is_empty() {
            let mut held = carry.len();
            let mut taken = 0;
            data_from = data.len();
            while taken < data.len() {
                let add = carry.len().max(CARRY_STEP).min(data.len() - taken);
                carry.extend_from_slice(data.get(taken..taken + add).unwrap_or_default());
                taken += add;
                let consumed = self.walk_buffer(&carry, &mut events, &mut failure);
                if failure.is_some() {
                    carry.clear();
                    break;
                }
                if consumed >= held {
                    // The cut token is whole; what follows it is walked in place below.
                    data_from = consumed - held;
                    carry.clear();
                    break;
                }
                carry.drain(..consumed);
                held -= consumed;
            }
        }
        if let Some(rest) = data.get(data_from..).filter(|r| !r.is_empty()) {
            if failure.is_none() {
                let consumed = self.walk_buffer(rest, &mut events, &mut failure);
                carry.extend_from_slice(rest.get(consumed..).unwrap_or_default());
            }
        }
        if carry.is_empty() && carry.capacity() > KEEP_CAPACITY {
            // A large token passed; do not hold its buffer for the rest of the connection.
            carry = Vec::new();
        }
        self.server.carry = carry;
        if let Some(e) = failure {
            // The capture may have started inside this message: only complain once the
            // conversation has been followed from a message start on both sides.
            let joined_mid_message = self.server_messages == 0 && self.client_messages == 0;
            // Without LOGIN7 or LOGINACK the TDS version is a guess: a message that does not
            // walk under it says the guess was wrong, not that the server is.
            let guessing = self.version.is_none();
            if guessing {
                self.switch_version_guess();
            }
            if !matches!(e, ParseError::Unsupported { .. }) && !joined_mid_message && !guessing {
                self.malformed(at, Direction::ToClient, "server token stream", &e);
            }
            self.server.skipping = true;
        }
        if self.server.carry.len() > MAX_TOKEN_CARRY {
            self.anomaly(
                AnomalyKind::TdsTooLarge,
                at,
                Direction::ToClient,
                format!("a server token larger than {MAX_TOKEN_CARRY} bytes was skipped"),
            );
            self.server.carry = Vec::new();
            self.server.skipping = true;
        }
        for ev in events {
            self.on_token(at, ev);
        }
    }

    /// Walks whole tokens at the front of `input`, collecting their events; returns how many
    /// bytes they took. A token cut by the end of `input` is left unconsumed; a token that does
    /// not parse sets `failure` and counts the whole input as consumed.
    fn walk_buffer(
        &mut self,
        input: &[u8],
        events: &mut Vec<TokenEvent>,
        failure: &mut Option<ParseError>,
    ) -> usize {
        let mut rest = input;
        let mut guard = input.len() + 1;
        while !rest.is_empty() && guard > 0 {
            guard -= 1;
            // Rows carry nothing the session keeps: a run of them is skipped in one go.
            rest = skip_rows(rest, &self.tokens.columns);
            if rest.is_empty() {
                break;
            }
            match parse_token(rest, &mut self.tokens) {
                Ok((after, token)) => {
                    rest = after;
                    if let Some(ev) = TokenEvent::from_token(token) {
                        events.push(ev);
                    }
                }
                Err(ParseError::Incomplete { .. }) => break,
                Err(e) => {
                    *failure = Some(e);
                    rest = &[];
                }
            }
        }
        input.len() - rest.len()
    }

    fn on_token(&mut self, at: Mark, ev: TokenEvent) {
        let phase = self.phase;
        let smp_sid = self.current_sid;
        if matches!(ev, TokenEvent::Done { status, .. } if status & done_status::ATTN != 0) {
            if let Some(f) = self.smp_current() {
                f.attentions_acknowledged += 1;
            }
        }
        let facts = facts_entry(&mut self.facts, at, Dialect::Tds7);
        match ev {
            TokenEvent::LoginAck {
                tds_version,
                prog_name,
                server_version,
            } => {
                facts.login_ack = Some(LoginAckFacts {
                    at,
                    tds_version,
                    prog_name,
                    server_version,
                });
                self.tokens.version = TdsVersion(tds_version);
                self.version = Some(TdsVersion(tds_version));
                self.phase = Phase::LoggedIn;
            }
            TokenEvent::Error(e) => {
                let err = ServerError { at, smp_sid, ..e };
                if phase == Phase::LoggedIn || facts.login_ack.is_some() {
                    facts.error_count += 1;
                    if facts.errors.len() < MAX_KEPT_PER_CONNECTION {
                        facts.errors.push(err);
                    }
                } else if facts.login_errors.len() < MAX_KEPT_PER_CONNECTION {
                    facts.login_errors.push(err);
                }
            }
            TokenEvent::Database(db) => facts.database = Some(db),
            TokenEvent::Routing { server, port } => {
                facts.routing = Some(RoutingFacts { at, server, port })
            }
            TokenEvent::Done {
                status,
                row_count,
                is_final,
            } => {
                self.server.last_done = Some((status, row_count));
                if status & done_status::ATTN != 0 {
                    // With MARS only the cancelled session's DONE(ATTN) answers its ATTENTION.
                    if let Some(a) = facts
                        .attentions
                        .iter_mut()
                        .find(|a| a.acknowledged.is_none() && a.smp_sid == smp_sid)
                    {
                        a.acknowledged = Some(at);
                    }
                }
                if is_final
                    && matches!(phase, Phase::LoginResponse | Phase::Login)
                    && facts.login_done.is_none()
                {
                    facts.login_done = Some(at);
                }
            }
            TokenEvent::Sspi => {}
        }
    }

    /// Mid-stream, the token layouts of TDS 7.1 (4-byte row counts, 2-byte user types) and
    /// 7.2+ are tried in turn until the server's messages walk cleanly.
    fn switch_version_guess(&mut self) {
        self.tokens.version = if self.tokens.version.at_least_7_2() {
            TdsVersion::V7_1
        } else {
            TdsVersion::V7_4
        };
    }

    fn on_server_message_end(&mut self, at: Mark, awaiting_prelogin: bool) {
        let msg = std::mem::take(&mut self.server);
        self.server_messages += 1;
        // A message that ended with a token still incomplete did not walk cleanly.
        if self.version.is_none() && !msg.carry.is_empty() && !msg.skipping {
            self.switch_version_guess();
        }
        let Some(start) = msg.at else { return };
        if msg.tls {
            self.on_tls_handshake(Direction::ToClient, start, &msg.prelogin, true);
        } else if awaiting_prelogin {
            match parse_prelogin(&msg.prelogin) {
                Ok(p) => {
                    let pf = prelogin_facts(&p, start);
                    self.facts_mut(start, Dialect::Tds7).prelogin_server = Some(pf);
                    self.phase = Phase::Login;
                }
                Err(e) => self.malformed(start, Direction::ToClient, "PRELOGIN response", &e),
            }
            return;
        }
        if let Some(facts) = self.facts.as_mut() {
            if self.phase == Phase::LoggedIn {
                if let Some(mut req) = facts.outstanding.take() {
                    req.done = Some(at);
                    if let Some((status, rows)) = msg.last_done {
                        req.done_status = status;
                        req.row_count = rows;
                    }
                    keep_request(facts, req);
                }
            }
            facts.last_app_data = Some(at);
        }
    }

    /// TLS records carried inside PRELOGIN packets (`in_prelogin`) or straight on TCP.
    /// Whole TLS records, carried inside PRELOGIN packets (`in_prelogin`) or rebuilt from
    /// records straight on TCP: decoded with each direction's TLS state.
    fn on_tls_handshake(&mut self, role: Direction, at: Mark, records: &[u8], in_prelogin: bool) {
        let flow = match role {
            Direction::ToServer => &mut self.tls_flows[0],
            Direction::ToClient => &mut self.tls_flows[1],
        };
        let (infos, _) = flow.parse_records(records);
        for info in infos {
            let content_type = u8::from(info.content_type);
            if info.messages.is_empty() {
                self.on_tls_message(role, at, content_type, None, in_prelogin);
            }
            for msg in info.messages {
                self.on_tls_message(role, at, content_type, Some(msg), in_prelogin);
            }
        }
    }

    fn on_tls_message(
        &mut self,
        role: Direction,
        at: Mark,
        content_type: u8,
        msg: Option<TlsMessage>,
        in_prelogin: bool,
    ) {
        let phase = self.phase;
        let facts = facts_entry(&mut self.facts, at, Dialect::Tds7);
        let tls = facts.tls.get_or_insert_with(|| TlsFacts {
            in_prelogin,
            ..TlsFacts::default()
        });
        match msg {
            Some(TlsMessage::ClientHello(h)) if tls.client_hello.is_none() => {
                tls.client_hello = Some(at);
                tls.client_max_version = Some(h.max_version());
                tls.strict |= h.offers_tds8();
                tls.sni = h.sni;
            }
            Some(TlsMessage::ServerHello(h)) if tls.server_hello.is_none() => {
                tls.server_hello = Some(at);
                tls.version = Some(h.version);
                tls.cipher = Some(h.cipher.name);
            }
            Some(TlsMessage::Certificate { chain, .. }) if role == Direction::ToClient => {
                if let (None, Some(leaf)) = (&tls.certificate, chain.first()) {
                    tls.certificate = Some(CertificateFacts {
                        at: Some(at),
                        subject: leaf.subject.clone(),
                        issuer: leaf.issuer.clone(),
                        common_name: leaf.common_name.clone(),
                        not_before: leaf.not_before,
                        not_after: leaf.not_after,
                        not_before_text: leaf.not_before_rfc3339(),
                        not_after_text: leaf.not_after_rfc3339(),
                        self_signed: leaf.self_signed,
                        sql_server_fallback: leaf.sql_server_fallback,
                        dns_names: leaf.dns_names.clone(),
                        ip_addresses: leaf.ip_addresses.clone(),
                        matches_sni: tls.sni.as_deref().map(|h| leaf.matches_host(h)),
                    });
                }
            }
            Some(TlsMessage::Alert(a)) if tls.alert.is_none() && tls.application_data.is_none() => {
                tls.alert = Some((at, a.level.into(), a.description));
                tls.alert_from = Some(role);
            }
            Some(TlsMessage::ChangeCipherSpec | TlsMessage::EncryptedHandshake { .. }) => {
                let done = match role {
                    Direction::ToServer => &mut tls.client_finished,
                    Direction::ToClient => &mut tls.server_finished,
                };
                done.get_or_insert(at);
            }
            _ if content_type == 23 => {
                if role == Direction::ToServer && tls.application_data.is_none() {
                    tls.application_data = Some(at);
                    if phase != Phase::LoggedIn && facts.login7.is_none() {
                        facts.login7_encrypted = Some(at);
                        self.phase = Phase::LoginResponse;
                    }
                } else if phase == Phase::LoginResponse && role == Direction::ToClient {
                    // Full encryption: the login response itself is inside TLS.
                    facts.encrypted_after_login = true;
                    facts.login_done.get_or_insert(at);
                } else if phase == Phase::LoggedIn || facts.login_done.is_some() {
                    facts.encrypted_after_login = true;
                }
                facts.last_app_data = Some(at);
            }
            _ => {}
        }
    }

    /// A piece of a TLS record straight on TCP: after the TDS 7.x handshake, or from the start
    /// with TDS 8.0 strict. Handshake and alert records are rebuilt whole (bounded) and
    /// decoded; application data is only noted.
    fn on_tls_piece(
        &mut self,
        tcp_dir: Direction,
        at: Mark,
        content_type: u8,
        data: &[u8],
        first: bool,
        last: bool,
    ) {
        let probing = self.detection == Detection::Probing;
        if !probing && self.detection != Detection::Tds {
            return;
        }
        // While probing, only a client's first record can show TDS 8.0 (ALPN tds/8.0).
        let role = if probing {
            Direction::ToServer
        } else {
            self.role(tcp_dir)
        };
        if probing && !(content_type == 22 && tcp_dir == Direction::ToServer) {
            return;
        }
        self.tls_direct = true;
        let i = tcp_dir.index();
        if content_type == 23 {
            if first && !probing {
                self.on_tls_message(role, at, 23, None, false);
            }
            return;
        }
        let Some(buf) = self.tls_records.get_mut(i) else {
            return;
        };
        if first {
            buf.clear();
            buf.extend_from_slice(&[content_type, 3, 3, 0, 0]);
        }
        if buf.len() + data.len() <= MAX_SMALL_MESSAGE {
            buf.extend_from_slice(data);
        }
        if !last {
            return;
        }
        let len = u16::try_from(buf.len().saturating_sub(5)).unwrap_or(u16::MAX);
        if let Some(dst) = buf.get_mut(3..5) {
            dst.copy_from_slice(&len.to_be_bytes());
        }
        let record = std::mem::take(buf);
        if probing {
            let offers_tds8 = crate::proto::tls::parse_records(&record)
                .0
                .iter()
                .flat_map(|r| r.messages.iter())
                .any(|m| matches!(m, TlsMessage::ClientHello(h) if h.offers_tds8()));
            if !offers_tds8 {
                self.detection = Detection::NotTds;
                return;
            }
            self.confirm(tcp_dir, at, true, Dialect::Tds7);
            self.phase = Phase::Login;
        }
        self.on_tls_handshake(role, at, &record, false);
    }
}

fn keep_request(facts: &mut TdsFacts, req: RequestFacts) {
    if facts.requests.len() < MAX_KEPT_PER_CONNECTION {
        facts.requests.push(req);
    }
}

/// SQL batch: ALL_HEADERS (TDS 7.2+, total length then headers) or UTF-16 text; RPC: a name
/// length or the 0xFFFF ProcID marker.
fn plausible_request(data: &[u8]) -> bool {
    match data {
        // ALL_HEADERS: TotalLength (4, LE) covering at least one header (4 + 4 + 2).
        [a, b, c, d, ..]
            if u32::from_le_bytes([*a, *b, *c, *d]) >= 18
                && u32::from_le_bytes([*a, *b, *c, *d]) <= 1024 =>
        {
            true
        }
        // UTF-16LE text (a batch), or an RPC name's length then its first character: ASCII
        // interleaved with zeros. NULs are not text: zero-filled bytes of other protocols
        // (SMB) must not pass.
        [x, 0, y, 0, ..]
            if *x != 0 && x.is_ascii() && (y.is_ascii_graphic() || y.is_ascii_whitespace()) =>
        {
            true
        }
        // RPC by ProcID: 0xFFFF then the id.
        [0xFF, 0xFF, _, 0, ..] => true,
        _ => false,
    }
}

/// The start of a PRELOGIN option table whose option data lies beyond this packet: clients
/// send VERSION first (token 0, 6 bytes).
fn prelogin_table_start(data: &[u8]) -> bool {
    matches!(data, [0x00, _, _, 0x00, 0x06, _, _, _, ..])
}

/// TDS 4.2/5.0 (MS-TDS's "pre-TDS7 login", Sybase TDS 5.0): the LOGIN record (MS-SSTDS
/// 2.2.6.3, 563 to 573 bytes) starts with the 30-byte host name and its length byte, and
/// clients send it in 512-byte packets (the TDS 4.2/5.0 default packet size), so its first
/// packet is 512 bytes long; a TDS 5.0 language request starts with the LANGUAGE token (0x21). Any other 0x02/0x0F packet is
/// not evidence of TDS (the first byte of LDAP's and SMB's messages can frame as one).
fn plausible_old_tds(ptype: PacketType, length: u16, data: &[u8]) -> bool {
    match ptype {
        PacketType::PreTds7Login => length == 512 && data.get(30).is_some_and(|n| *n <= 30),
        PacketType::Tds5Query => data.first() == Some(&0x21),
        _ => false,
    }
}

/// A tabular result whose first token parses.
fn plausible_tokens(data: &[u8]) -> bool {
    let mut ctx = TokenContext::new(TdsVersion::V7_4);
    match parse_token(data, &mut ctx) {
        Ok((_, Token::Skipped { .. })) => false,
        Ok(_) => true,
        Err(ParseError::Incomplete { .. }) => data.first().is_some_and(|t| {
            matches!(
                *t,
                0x81 | 0xAA | 0xAB | 0xAD | 0xE3 | 0xFD | 0xFE | 0xFF | 0xD1 | 0xD2 | 0xED
            )
        }),
        Err(_) => false,
    }
}

/// The parts of tokens the session keeps, owned.
enum TokenEvent {
    LoginAck {
        tds_version: u32,
        prog_name: String,
        server_version: String,
    },
    Error(ServerError),
    Database(String),
    Routing {
        server: String,
        port: u16,
    },
    Done {
        status: u16,
        row_count: Option<u64>,
        is_final: bool,
    },
    Sspi,
}

impl TokenEvent {
    fn from_token(t: Token<'_>) -> Option<TokenEvent> {
        let placeholder = Mark {
            frame: Default::default(),
            ts: Default::default(),
        };
        match t {
            Token::LoginAck(a) => Some(TokenEvent::LoginAck {
                tds_version: a.tds_version.0,
                server_version: a.server_version(),
                prog_name: a.prog_name,
            }),
            Token::Error(e) => Some(TokenEvent::Error(ServerError {
                at: placeholder,
                number: e.number,
                state: e.state,
                class: e.class,
                message: e.message,
                server: e.server,
                procedure: e.procedure,
                line: e.line,
                smp_sid: None,
            })),
            Token::EnvChange(EnvChange::Database { new, .. }) => Some(TokenEvent::Database(new)),
            Token::EnvChange(EnvChange::Routing { server, port, .. }) => {
                Some(TokenEvent::Routing { server, port })
            }
            Token::Done(d) => Some(TokenEvent::Done {
                status: d.status,
                row_count: d.has(done_status::COUNT).then_some(d.row_count),
                is_final: d.is_final(),
            }),
            Token::Sspi(_) => Some(TokenEvent::Sspi),
            _ => None,
        }
    }
}

/// The connection's TDS facts, created on first use. A free function so that callers can
/// hold it while touching the session's other fields.
fn facts_entry(facts: &mut Option<TdsFacts>, at: Mark, dialect: Dialect) -> &mut TdsFacts {
    facts.get_or_insert_with(|| TdsFacts::new(dialect, at))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Found by tests/tds_tshark.rs: SMB, LDAP and DCERPC connections of
    /// tds7-sspi-ntlm-ipv6-synthetic_arkime_ntlm_synthetic.pcap and the SMB connection of
    /// tds-midstream-retrans_wswiki_startmenu_Dameware.pcap were taken for TDS.
    #[test]
    fn zero_bytes_are_not_a_request() {
        // Frame 6 of the NTLM capture (SMB on 445) framed as a SQL batch of zeros.
        assert!(!plausible_request(&[0, 0, 0, 0, 0, 0, 0]));
        assert!(plausible_request(&[b's', 0, b'e', 0]));
        // An RPC by name: length 13, "sp_executesql".
        assert!(plausible_request(&[0x0d, 0, b's', 0, b'p', 0]));
    }

    #[test]
    fn old_tds_needs_its_login_shape() {
        let mut login = vec![0u8; 504];
        login[30] = 4;
        assert!(plausible_old_tds(PacketType::PreTds7Login, 512, &login));
        // The Dameware SMB stream framed as a 10240-byte "pre-TDS7 login".
        assert!(!plausible_old_tds(PacketType::PreTds7Login, 10240, &login));
        login[30] = 0x53;
        assert!(!plausible_old_tds(PacketType::PreTds7Login, 512, &login));
        assert!(plausible_old_tds(PacketType::Tds5Query, 27, &[0x21, 0x0e]));
        assert!(!plausible_old_tds(PacketType::Tds5Query, 86, &[0, 0]));
    }

    #[test]
    fn prelogin_fallback_needs_a_version_option() {
        // LDAP's NTLMSSP challenge (frame 106 of the NTLM capture) framed as PRELOGIN.
        let ldap = [0x05, 0x02, 0x00, 0x02, 0x01, 0x23, 0x45, 0x67, 0x89];
        assert!(!prelogin_table_start(&ldap));
        let real = [0x00, 0x00, 0x1a, 0x00, 0x06, 0x01, 0x00, 0x20, 0x00];
        assert!(prelogin_table_start(&real));
    }

    fn session_on(stream: &[u8]) -> TdsSession {
        let mut s = TdsSession::new();
        let at = Mark {
            frame: Default::default(),
            ts: Default::default(),
        };
        s.on_data(Direction::ToServer, at, stream);
        s
    }

    #[test]
    fn smb_negotiate_is_not_tds() {
        // NetBIOS + SMB1 header as in frame 4 of the NTLM capture: misframes as a type-0
        // packet, then as a SQL batch "of zeros".
        let mut smb = vec![0x00, 0x00, 0x00, 0x20, 0xff, b'S', b'M', b'B'];
        smb.extend_from_slice(&[0; 24]);
        smb.extend_from_slice(&[0x01, 0x00, 0x00, 0x10, 0x04, 0xff, 0x00, 0x00]);
        smb.extend_from_slice(&[0; 8]);
        assert!(!session_on(&smb).is_tds());
    }

    /// An SMP packet ([MC-SMP] 2.2.1): little-endian header, then the payload.
    fn smp(flags: u8, sid: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0x53, flags];
        v.extend_from_slice(&sid.to_le_bytes());
        v.extend_from_slice(&((16 + payload.len()) as u32).to_le_bytes());
        v.extend_from_slice(&seq.to_le_bytes());
        v.extend_from_slice(&(seq + 4).to_le_bytes());
        v.extend_from_slice(payload);
        v
    }

    /// A one-packet TDS message.
    fn tds(ptype: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![ptype, 0x01];
        v.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        v.extend_from_slice(&[0, 0, 1, 0]);
        v.extend_from_slice(payload);
        v
    }

    const BATCH: &[u8] = &[b's', 0, b'e', 0, b'l', 0, b'e', 0, b'c', 0, b't', 0];
    /// DONE(COUNT) with 3 rows, TDS 7.2+ layout.
    const DONE_COUNT: &[u8] = &[0xFD, 0x10, 0x00, 0xC1, 0x00, 3, 0, 0, 0, 0, 0, 0, 0];
    /// DONE(ATTN).
    const DONE_ATTN: &[u8] = &[0xFD, 0x20, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];

    fn at(no: u64) -> Mark {
        Mark {
            frame: crate::capture::FrameRef { input: 0, no },
            ts: Default::default(),
        }
    }

    #[test]
    fn attention_is_acknowledged_only_on_its_own_session() {
        let mut s = TdsSession::new();
        let c = Direction::ToServer;
        let mut first = smp(0x01, 0, 0, &[]);
        first.extend(smp(0x08, 0, 1, &tds(0x01, BATCH)));
        s.on_data(c, at(1), &first);
        let mut second = smp(0x01, 1, 0, &[]);
        second.extend(smp(0x08, 1, 1, &tds(0x01, BATCH)));
        s.on_data(c, at(2), &second);
        s.on_data(c, at(3), &smp(0x08, 1, 2, &tds(0x06, &[])));
        let srv = Direction::ToClient;
        s.on_data(srv, at(4), &smp(0x08, 0, 1, &tds(0x04, DONE_COUNT)));
        // A DONE(ATTN) on session 0 does not answer the ATTENTION sent on session 1.
        s.on_data(srv, at(5), &smp(0x08, 0, 2, &tds(0x04, DONE_ATTN)));
        assert!(s.facts.as_ref().unwrap().attentions[0]
            .acknowledged
            .is_none());
        s.on_data(srv, at(6), &smp(0x08, 1, 1, &tds(0x04, DONE_ATTN)));
        let (f, anomalies) = s.into_facts();
        let f = f.unwrap();
        assert!(anomalies.is_empty(), "{anomalies:?}");
        assert!(f.mars);
        assert_eq!(f.attentions.len(), 1);
        assert_eq!(f.attentions[0].smp_sid, Some(1));
        assert_eq!(f.attentions[0].acknowledged.map(|m| m.frame.no), Some(6));
        // Session 0's request ended with its DONE(COUNT), session 1's with the DONE(ATTN).
        let sids: Vec<_> = f.requests.iter().map(|r| r.smp_sid).collect();
        assert_eq!(sids, [Some(0), Some(1)]);
        assert_eq!(f.requests[0].row_count, Some(3));
        assert!(f.outstanding.is_none());
        let sessions: Vec<_> = f
            .smp_sessions
            .iter()
            .map(|x| {
                (
                    x.sid,
                    x.opened.map(|m| m.frame.no),
                    x.requests,
                    x.attentions,
                )
            })
            .collect();
        assert_eq!(sessions, [(0, Some(1), 1, 0), (1, Some(2), 1, 1)]);
        assert_eq!(f.smp_sessions[0].attentions_acknowledged, 1);
        assert_eq!(f.smp_sessions[1].attentions_acknowledged, 1);
    }

    #[test]
    fn smp_sessions_are_capped_and_the_rest_counted() {
        let mut s = TdsSession::new();
        s.on_data(Direction::ToServer, at(1), &smp(0x01, 0, 0, &[]));
        s.on_data(
            Direction::ToServer,
            at(2),
            &smp(0x08, 0, 1, &tds(0x01, BATCH)),
        );
        for sid in 1..70u16 {
            s.on_data(Direction::ToServer, at(3), &smp(0x01, sid, 0, &[]));
        }
        s.on_data(
            Direction::ToServer,
            at(4),
            &smp(0x08, 69, 1, &tds(0x01, BATCH)),
        );
        let (f, _) = s.into_facts();
        let f = f.unwrap();
        assert_eq!(f.smp_sessions.len(), MAX_SMP_SESSIONS);
        // SYNs of sessions 64..=69 and the DATA of session 69.
        assert_eq!(f.smp_packets_dropped, 7);
        assert_eq!(f.request_count, 1);
    }

    #[test]
    fn gaps_inside_smp_data_resynchronise() {
        let mut s = TdsSession::new();
        let c = Direction::ToServer;
        s.on_data(c, at(1), &smp(0x01, 0, 0, &[]));
        let data = smp(0x08, 0, 1, &tds(0x01, BATCH));
        // The capture lost the end of a DATA packet: exactly its rest, then more than its rest.
        s.on_data(c, at(2), &data[..20]);
        s.on_gap(c, (data.len() - 20) as u64);
        s.on_data(c, at(3), &smp(0x08, 0, 2, &tds(0x01, BATCH)));
        s.on_data(c, at(4), &data[..20]);
        s.on_gap(c, (data.len() - 20 + 7) as u64);
        let mut after = vec![0xAA; 9];
        after.extend(smp(0x08, 0, 4, &tds(0x01, BATCH)));
        s.on_data(c, at(5), &after);
        let (f, anomalies) = s.into_facts();
        let f = f.unwrap();
        assert!(anomalies.is_empty(), "{anomalies:?}");
        // The two cut requests are lost (their TDS headers were incomplete); the two whole ones
        // after them are decoded, without a resynchronisation anomaly.
        assert_eq!(f.request_count, 2);
        assert_eq!(f.smp_sessions[0].data_to_server, 4);
    }

    #[test]
    fn smp_bytes_without_mars_agreed_stay_plain_tds() {
        let mut s = TdsSession::new();
        let prelogin_off = [
            0x00, 0x00, 0x0b, 0x00, 0x06, 0x04, 0x00, 0x11, 0x00, 0x01, 0xff, 9, 0, 0, 0, 0, 0,
            0x00,
        ];
        s.on_data(Direction::ToServer, at(1), &tds(0x12, &prelogin_off));
        s.on_data(Direction::ToServer, at(2), &smp(0x01, 0, 0, &[]));
        assert!(s.smp.iter().all(Option::is_none));
    }

    /// UCS-2 of an ASCII string.
    fn ucs2(text: &str) -> Vec<u8> {
        text.bytes().flat_map(|b| [b, 0]).collect()
    }

    /// A result set of INTN(4) and NVARCHAR(200) columns with these rows, an ERROR token after
    /// `error_after` rows, and DONE(COUNT): the token stream of one server reply.
    fn result_tokens(names: &[String], error_after: usize) -> Vec<u8> {
        let mut t = vec![0x81, 2, 0];
        t.extend_from_slice(&[0, 0, 0, 0, 0x01, 0x00, 0x26, 4, 1, b'a', 0]);
        t.extend_from_slice(&[
            0, 0, 0, 0, 0x01, 0x00, 0xE7, 200, 0, 0x09, 0x04, 0xD0, 0x00, 0x34,
        ]);
        t.extend_from_slice(&[1, b'b', 0]);
        for (i, name) in names.iter().enumerate() {
            if i == error_after {
                let msg = ucs2("Divide by zero error encountered.");
                let mut e = Vec::new();
                e.extend_from_slice(&8134i32.to_le_bytes());
                e.extend_from_slice(&[1, 16]);
                e.extend_from_slice(&((msg.len() / 2) as u16).to_le_bytes());
                e.extend_from_slice(&msg);
                e.extend_from_slice(&[0, 0]);
                e.extend_from_slice(&7i32.to_le_bytes());
                t.push(0xAA);
                t.extend_from_slice(&(e.len() as u16).to_le_bytes());
                t.extend_from_slice(&e);
            }
            let value = ucs2(name);
            t.extend_from_slice(&[0xD1, 4]);
            t.extend_from_slice(&(i as u32).to_le_bytes());
            t.extend_from_slice(&(value.len() as u16).to_le_bytes());
            t.extend_from_slice(&value);
        }
        t.extend_from_slice(&[0xFD, 0x12, 0x00, 0xC1, 0x00]);
        t.extend_from_slice(&(names.len() as u64).to_le_bytes());
        t
    }

    /// Tokens cut into TDS reply packets of at most `size` payload bytes, EOM on the last.
    fn reply_packets(tokens: &[u8], size: usize) -> Vec<u8> {
        let chunks: Vec<&[u8]> = tokens.chunks(size).collect();
        let mut out = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let eom = u8::from(i + 1 == chunks.len());
            out.extend_from_slice(&[0x04, eom]);
            out.extend_from_slice(&((8 + c.len()) as u16).to_be_bytes());
            out.extend_from_slice(&[0, 0, (i % 256) as u8, 0]);
            out.extend_from_slice(c);
        }
        out
    }

    /// A session that saw a SQL batch, then `reply` in the given pieces; its facts as text.
    fn facts_after(reply: &[u8], cuts: &[usize]) -> String {
        let mut s = TdsSession::new();
        s.on_data(Direction::ToServer, at(1), &tds(0x01, BATCH));
        let mut from = 0;
        for &cut in cuts.iter().chain(std::iter::once(&reply.len())) {
            let to = cut.clamp(from, reply.len());
            s.on_data(Direction::ToClient, at(2), &reply[from..to]);
            from = to;
        }
        format!("{:?}", s.into_facts())
    }

    proptest::proptest! {
        /// Rows cut anywhere by TDS packets and by TCP segments, including tokens longer than
        /// the piece that starts them, walk to the same facts as the reply in one piece.
        #[test]
        fn a_reply_walks_the_same_however_it_is_cut(
            names in proptest::collection::vec("[a-z]{0,120}", 1..40),
            error_at in 0usize..40,
            packet in 16usize..700,
            mut cuts in proptest::collection::vec(0usize..20_000, 0..30),
        ) {
            let reply = reply_packets(&result_tokens(&names, error_at), packet);
            cuts.sort_unstable();
            let whole = facts_after(&reply, &[]);
            proptest::prop_assert!(whole.contains("number: 8134") == (error_at < names.len()));
            proptest::prop_assert!(whole.contains(&format!("row_count: Some({})", names.len())), "{}", whole);
            proptest::prop_assert_eq!(facts_after(&reply, &cuts), whole);
        }
    }
}
