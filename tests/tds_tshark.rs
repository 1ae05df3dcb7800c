//! Every TDS field tshark's dissector shows, cross-checked against tdsscope's own decoding on
//! every capture with TDS: the shared public captures and the lab's captures of real clients.
//!
//! Our side runs the library in-process: `capture::open` → `decode::Decoder` →
//! `tcp::Tracker` → a test [`StreamSink`] that feeds each direction's stream into a
//! [`Framer`], assembles messages and runs `parse_prelogin`, `parse_login7` and `parse_token`
//! (with a [`TokenContext`] whose version comes from LOGIN7, then LOGINACK).
//! tshark's side is its PDML tree (`-T pdml`), which keeps each token's fields together.
//!
//! Both sides become, per direction (sender → receiver address) and per record kind, a sequence
//! of records (a TDS packet header, a PRELOGIN, a LOGIN7, each token). tshark shows a message
//! in the frame of its last segment and we in the frame of its first byte, so sequences are
//! compared in stream order and aligned by longest common subsequence, never by frame number.
//! Every difference must match an entry of [`EXPLAINED`], which says why tshark differs;
//! anything else fails the test. The LOGIN7 password is never collected from either side.
//!
//! A second check runs the real session layer (`session::Sessions`, what `analyze` runs) and
//! compares its facts per connection (matched to tshark's TCP stream by first frame) with what
//! tshark's records imply: TDS detected or not, both PRELOGINs, LOGIN7, LOGINACK, every ERROR,
//! the current database, request and ATTENTION counts, and the TLS handshake (hellos, readable
//! alert, first application data, TLS inside PRELOGIN).
//!
//! Not compared: the header's Window byte (not kept by `HeaderRepr`), ROW contents and
//! request bodies (not decoded by tdsscope), SSPI blobs beyond the NTLM message type, ENVCHANGE
//! routing targets (tshark 4.0 does not decode them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use tdsscope::capture;
use tdsscope::decode::{Decoded, Decoder};
use tdsscope::facts::{
    ConnectionFacts, Dialect, EncryptionSetting, PreloginFacts, MAX_KEPT_PER_CONNECTION,
};
use tdsscope::limits::Limits;
use tdsscope::proto::tds::framer::{Framer, FramerItem};
use tdsscope::proto::tds::header::{status, HeaderRepr};
use tdsscope::proto::tds::login7::parse_login7;
use tdsscope::proto::tds::prelogin::{is_tls_record, parse_prelogin};
use tdsscope::proto::tds::smp::{starts_smp, SmpItem, SmpSplitter};
use tdsscope::proto::tds::tokens::{id, parse_token, EnvChange, Token, TokenContext};
use tdsscope::proto::tds::{PacketType, TdsVersion};
use tdsscope::proto::ParseError;
use tdsscope::session::Sessions;
use tdsscope::tcp::{ConnId, StreamEvent, StreamEventKind, StreamSink, TcpFacts, Tracker};

use crate::util::{shared_captures, tshark_or_skip};

/// The shared public captures that carry TDS, with the tshark arguments they need.
const SHARED: &[(&str, &[&str])] = &[
    ("tds7-login-loginack_arkime_tds7.pcap", &[]),
    ("tds-rpc-midstream_wswiki_ms-sql-tds-rpc-requests.pcap", &[]),
    // SQL Server 2000 picked up mid-stream: tshark decodes its result sets only when told
    // TDS 7.1 (5 frames malformed instead of 9); our walker starts at the same version.
    (
        "tds-midstream-retrans_wswiki_startmenu_Dameware.pcap",
        &["-o", "tds.protocol_type:TDS 7.1"],
    ),
    (
        "tds7-sspi-ntlm-ipv6-synthetic_arkime_ntlm_synthetic.pcap",
        &[],
    ),
    (
        "tds5-sybase-port3106_arkime_tds5.pcap",
        &["-d", "tcp.port==3106,tds"],
    ),
    ("tds-merged-plus-garbage_malcolm_TDS.pcap", &[]),
];

/// One capture to check.
struct Case {
    path: PathBuf,
    name: String,
    tshark_args: Vec<String>,
}

/// The lab's captures directory: this worktree's `tests/captures`, else the lab worktree's.
fn lab_dir() -> Option<PathBuf> {
    [
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures"),
        PathBuf::from("/work/wt/lab/tests/captures"),
    ]
    .into_iter()
    .find(|d| d.join("manifest.json").is_file())
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for (name, args) in SHARED {
        let path = shared_captures().join(name);
        assert!(path.is_file(), "missing shared capture {}", path.display());
        v.push(Case {
            path,
            name: (*name).to_string(),
            tshark_args: args.iter().map(|s| s.to_string()).collect(),
        });
    }
    let Some(dir) = lab_dir() else {
        eprintln!("tds_tshark: no lab captures found; only the shared captures are checked");
        return v;
    };
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    for (_, sc) in manifest["scenarios"].as_object().unwrap() {
        let mut args = Vec::new();
        if let Some(d) = sc["decode_as"].as_str() {
            args.push("-d".to_string());
            args.push(d.to_string());
        }
        for o in sc["tshark_opts"].as_array().into_iter().flatten() {
            args.push(o.as_str().unwrap().to_string());
        }
        let mut files = vec![sc["capture"].as_str().unwrap().to_string()];
        for c in sc["copies"].as_array().into_iter().flatten() {
            files.push(c["capture"].as_str().unwrap().to_string());
        }
        for f in files {
            let path = dir.join(&f);
            if path.is_file() {
                v.push(Case {
                    path,
                    name: f,
                    tshark_args: args.clone(),
                });
            }
        }
    }
    v
}

/// One decoded unit: a packet header, a PRELOGIN, a LOGIN7 or a token.
#[derive(Clone, Debug)]
struct Rec {
    kind: &'static str,
    /// Ours: frame of the first byte; tshark's: frame it shows the unit in. For messages only.
    frame: u64,
    fields: BTreeMap<&'static str, String>,
}

impl PartialEq for Rec {
    fn eq(&self, o: &Rec) -> bool {
        self.kind == o.kind && self.fields == o.fields
    }
}

impl Rec {
    fn new(kind: &'static str, frame: u64) -> Rec {
        Rec {
            kind,
            frame,
            fields: BTreeMap::new(),
        }
    }
    fn set(&mut self, k: &'static str, v: impl ToString) {
        let v = v.to_string();
        // An empty string and an absent field look the same in tshark's tree.
        if !v.is_empty() {
            self.fields.insert(k, v);
        }
    }
}

/// Records per direction key ("src -> dst").
type Side = BTreeMap<String, Vec<Rec>>;

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

// ---------------------------------------------------------------- our side

#[derive(Default)]
struct Msg {
    ptype: Option<PacketType>,
    frame: u64,
    body: Vec<u8>,
}

/// A piece of a TDS packet: its SMP session (None without MARS), header, bytes, first, last.
type PacketPiece = (Option<u16>, HeaderRepr, Vec<u8>, bool, bool);

struct DirState {
    key: String,
    framer: Framer,
    /// The message being assembled, per MARS (SMP) session; `None` is plain TDS.
    msgs: BTreeMap<Option<u16>, Msg>,
    /// MARS: once an SMP header shows up where a TDS packet would start, SMP DATA payloads
    /// are TDS packets of their session, framed per session ([MC-SMP] 2.2.5).
    smp: Option<SmpSplitter>,
    smp_framers: BTreeMap<u16, Framer>,
}

struct Conn {
    dirs: [DirState; 2],
    ctx: TokenContext,
    /// The direction whose next response message is a PRELOGIN response.
    prelogin_answer_dir: Option<usize>,
    /// A TDS 4.2/5.0 (Sybase) login was seen: its tokens are not TDS 7 tokens, and the
    /// session only labels such connections, so only packet headers are compared.
    sybase: bool,
}

struct Ours {
    version: TdsVersion,
    /// TCP ports tshark dissects as TDS (1433, 2433 and the `-d` ones). Our side decodes only
    /// connections on them: which connections are TDS is the session's detection, not a
    /// decoding question, and tshark does not run its dissector elsewhere.
    tds_ports: Vec<u16>,
    conns: BTreeMap<ConnId, Conn>,
    side: Side,
    /// Our parse failures: (key, frame, what).
    failures: Vec<(String, u64, String)>,
}

impl Ours {
    fn push(&mut self, key: &str, rec: Rec) {
        self.side.entry(key.to_string()).or_default().push(rec);
    }
}

impl StreamSink for Ours {
    fn on_open(&mut self, conn: ConnId, client: SocketAddr, server: SocketAddr) {
        if !self
            .tds_ports
            .iter()
            .any(|p| *p == client.port() || *p == server.port())
        {
            return;
        }
        let dir = |a: SocketAddr, b: SocketAddr| DirState {
            key: format!("{a} -> {b}"),
            framer: Framer::new(),
            msgs: BTreeMap::new(),
            smp: None,
            smp_framers: BTreeMap::new(),
        };
        self.conns.insert(
            conn,
            Conn {
                dirs: [dir(client, server), dir(server, client)],
                ctx: TokenContext::new(self.version),
                prelogin_answer_dir: None,
                sybase: false,
            },
        );
    }

    fn on_event(&mut self, ev: StreamEvent<'_>) {
        let i = ev.dir.index();
        let frame = ev.frame.no;
        let Some(conn) = self.conns.get_mut(&ev.conn) else {
            return;
        };
        let mut items: Vec<PacketPiece> = Vec::new();
        match ev.kind {
            StreamEventKind::Data(bytes) => {
                let d = &mut conn.dirs[i];
                if d.smp.is_none() && d.framer.at_boundary() && starts_smp(bytes) {
                    d.smp = Some(SmpSplitter::new());
                }
                if let Some(splitter) = d.smp.as_mut() {
                    let mut pieces: Vec<(u16, Vec<u8>)> = Vec::new();
                    splitter.feed(bytes, &mut |item| {
                        if let SmpItem::Data { sid, data, .. } = item {
                            pieces.push((sid, data.to_vec()));
                        }
                    });
                    for (sid, data) in pieces {
                        let framer = d.smp_framers.entry(sid).or_default();
                        framer.feed(&data, &mut |item| {
                            if let FramerItem::Payload {
                                header,
                                data,
                                first,
                                last,
                            } = item
                            {
                                items.push((Some(sid), header, data.to_vec(), first, last));
                            }
                        });
                    }
                } else {
                    d.framer.feed(bytes, &mut |item| {
                        if let FramerItem::Payload {
                            header,
                            data,
                            first,
                            last,
                        } = item
                        {
                            items.push((None, header, data.to_vec(), first, last));
                        }
                    });
                }
            }
            StreamEventKind::Gap { len } => {
                let d = &mut conn.dirs[i];
                match d.smp.as_mut() {
                    Some(s) => s.on_gap(len),
                    None => d.framer.on_gap(len),
                }
                d.msgs.clear();
                return;
            }
            _ => return,
        }
        let key = conn.dirs[i].key.clone();
        for (sid, h, data, first, last) in items {
            if first {
                let mut r = Rec::new("packet", frame);
                r.set("type", u8::from(h.packet_type));
                r.set("status", h.status);
                r.set("length", h.length);
                r.set("channel", h.spid);
                r.set("packet_number", h.packet_id);
                self.side.entry(key.clone()).or_default().push(r);
                let conn = self.conns.get_mut(&ev.conn).unwrap();
                conn.dirs[i].msgs.entry(sid).or_insert_with(|| Msg {
                    ptype: Some(h.packet_type),
                    frame,
                    body: Vec::new(),
                });
            }
            let conn = self.conns.get_mut(&ev.conn).unwrap();
            if let Some(m) = conn.dirs[i].msgs.get_mut(&sid) {
                m.body.extend_from_slice(&data);
            }
            if last && h.status & status::EOM != 0 {
                if let Some(m) = conn.dirs[i].msgs.remove(&sid) {
                    self.on_message(ev.conn, i, &key, m);
                }
            }
        }
    }

    fn on_close(&mut self, facts: TcpFacts) {
        self.conns.remove(&facts.id);
    }
}

impl Ours {
    fn on_message(&mut self, conn_id: ConnId, i: usize, key: &str, m: Msg) {
        let conn = self.conns.get_mut(&conn_id).unwrap();
        let answer_prelogin = conn.prelogin_answer_dir == Some(i);
        let mut out: Vec<Rec> = Vec::new();
        let mut failure: Option<String> = None;
        let ptype = m.ptype.unwrap_or(PacketType::Unknown(0));
        if matches!(ptype, PacketType::PreTds7Login | PacketType::Tds5Query) {
            conn.sybase = true;
        }
        if conn.sybase {
            return;
        }
        match ptype {
            PacketType::Prelogin if !is_tls_record(&m.body) => {
                conn.prelogin_answer_dir = Some(1 - i);
                match parse_prelogin(&m.body) {
                    Ok(p) => out.push(prelogin_rec(&p, m.frame)),
                    Err(e) => failure = Some(format!("PRELOGIN: {e}")),
                }
            }
            PacketType::TabularResult if answer_prelogin => {
                conn.prelogin_answer_dir = None;
                match parse_prelogin(&m.body) {
                    Ok(p) => out.push(prelogin_rec(&p, m.frame)),
                    Err(e) => failure = Some(format!("PRELOGIN response: {e}")),
                }
            }
            PacketType::Login7 => {
                conn.prelogin_answer_dir = None;
                match parse_login7(&m.body) {
                    Ok(l) => {
                        if (0x70..=0x7F).contains(&(l.tds_version.0 >> 24))
                            || l.tds_version == TdsVersion::V8_0
                        {
                            conn.ctx.version = l.tds_version;
                        }
                        let mut r = Rec::new("login7", m.frame);
                        r.set("total_len", l.length);
                        r.set("version", l.tds_version.0);
                        r.set("packet_size", l.packet_size);
                        r.set("client_version", l.client_prog_ver);
                        r.set("client_pid", l.client_pid);
                        r.set("connection_id", l.connection_id);
                        r.set("option_flags1", l.option_flags1);
                        r.set("option_flags2", l.option_flags2);
                        r.set("sql_type_flags", l.type_flags);
                        r.set("reserved_flags", l.option_flags3);
                        r.set("time_zone", l.client_time_zone as u32);
                        r.set("collation", l.client_lcid);
                        r.set("clientname", &l.host_name);
                        r.set("username", &l.user_name);
                        r.set("appname", &l.app_name);
                        r.set("servername", &l.server_name);
                        r.set("libraryname", &l.library_name);
                        r.set("locale", &l.language);
                        r.set("databasename", &l.database);
                        out.push(r);
                        out.extend(sspi_rec(l.sspi, m.frame));
                    }
                    Err(e) => failure = Some(format!("LOGIN7: {e}")),
                }
            }
            PacketType::Sspi => out.extend(sspi_rec(&m.body, m.frame)),
            PacketType::TabularResult => {
                let mut rest: &[u8] = &m.body;
                let mut guard = rest.len() + 1;
                while !rest.is_empty() && guard > 0 {
                    guard -= 1;
                    match parse_token(rest, &mut conn.ctx) {
                        Ok((after, token)) => {
                            rest = after;
                            if let Token::LoginAck(a) = &token {
                                conn.ctx.version = a.tds_version;
                            }
                            let first = m.body.len() - rest.len();
                            let _ = first;
                            if let Some(r) = token_rec(&token, m.body.first().copied(), m.frame) {
                                out.push(r);
                            }
                        }
                        Err(e) => {
                            let at = m.body.len() - rest.len();
                            failure = Some(format!(
                                "token 0x{:02x} at byte {at} of the message: {e}",
                                rest.first().copied().unwrap_or(0)
                            ));
                            if !matches!(e, ParseError::Incomplete { .. }) {
                                // Unsupported tokens end the walk, as in the session.
                            }
                            break;
                        }
                    }
                }
            }
            _ => {}
        }
        for r in out {
            self.push(key, r);
        }
        if let Some(f) = failure {
            self.failures.push((key.to_string(), m.frame, f));
        }
    }
}

fn prelogin_rec(p: &tdsscope::proto::tds::prelogin::Prelogin<'_>, frame: u64) -> Rec {
    let mut r = Rec::new("prelogin", frame);
    if let Some(v) = p.version {
        r.set(
            "version",
            (u32::from(v.major) << 24) | (u32::from(v.minor) << 16) | u32::from(v.build),
        );
        r.set("subbuild", v.sub_build);
    }
    if let Some(e) = p.encryption {
        let raw = u8::from(e) | if p.client_cert { 0x80 } else { 0 };
        r.set("encryption", raw);
    }
    if let Some(i) = p.instance {
        r.set("instopt", String::from_utf8_lossy(i));
    }
    if let Some(t) = p.thread_id {
        r.set("threadid", t);
    }
    if let Some(m) = p.mars {
        r.set("mars", u8::from(m));
    }
    if let Some(t) = p.trace_id {
        r.set("traceid", hex(t));
    }
    if let Some(f) = p.fed_auth_required {
        r.set("fedauthrequired", u8::from(f));
    }
    if let Some(n) = p.nonce {
        r.set("nonceopt", hex(n));
    }
    r
}

/// An SSPI blob (LOGIN7's, an SSPI message's, the SSPI token's). tshark hands NTLMSSP blobs
/// to its NTLMSSP dissector, so the NTLM message type is what both sides show.
fn sspi_rec(blob: &[u8], frame: u64) -> Option<Rec> {
    let ty = blob.strip_prefix(b"NTLMSSP\0")?.get(..4)?;
    let mut r = Rec::new("sspi", frame);
    r.set("ntlm_type", u32::from_le_bytes(ty.try_into().ok()?));
    Some(r)
}

fn token_rec(t: &Token<'_>, _first: Option<u8>, frame: u64) -> Option<Rec> {
    Some(match t {
        Token::LoginAck(a) => {
            let mut r = Rec::new("loginack", frame);
            r.set("interface", a.interface);
            r.set("tdsversion", a.tds_version.0);
            r.set(
                "progversion",
                (u32::from(a.major) << 24) | (u32::from(a.minor) << 16) | u32::from(a.build),
            );
            r.set("progname", &a.prog_name);
            r
        }
        Token::Error(m) | Token::Info(m) => {
            let kind = if matches!(t, Token::Error(_)) {
                "error"
            } else {
                "info"
            };
            let mut r = Rec::new(kind, frame);
            r.set("number", m.number);
            r.set("state", m.state);
            r.set("class", m.class);
            r.set("msgtext", &m.message);
            r.set("servername", &m.server);
            r.set("procname", &m.procedure);
            r.set("linenumber", m.line);
            r
        }
        Token::EnvChange(e) => {
            let mut r = Rec::new("envchange", frame);
            match e {
                EnvChange::Database { new, old } => {
                    r.set("type", 1);
                    r.set("newvalue_string", new);
                    r.set("oldvalue_string", old);
                }
                EnvChange::Language { new, old } => {
                    r.set("type", 2);
                    r.set("newvalue_string", new);
                    r.set("oldvalue_string", old);
                }
                EnvChange::CharacterSet { new } => {
                    r.set("type", 3);
                    r.set("newvalue_string", new);
                }
                EnvChange::PacketSize { new, old } => {
                    r.set("type", 4);
                    r.set("newvalue_string", new);
                    if *old != 0 {
                        r.set("oldvalue_string", old);
                    }
                }
                EnvChange::Collation { new } => {
                    // tshark splits the 5-byte SQL collation into LCID (low 16 bits), flags
                    // and sort id ("charset id").
                    r.set("type", 7);
                    if let [a, b, c, d, sort] = new[..] {
                        r.set("collate_codepage", u16::from_le_bytes([a, b]));
                        r.set("collate_flags", u16::from_le_bytes([c, d]));
                        r.set("collate_charset_id", sort);
                    } else {
                        r.set("newvalue", hex(new));
                    }
                }
                EnvChange::BeginTransaction => r.set("type", 8),
                EnvChange::CommitTransaction => r.set("type", 9),
                EnvChange::RollbackTransaction => r.set("type", 10),
                EnvChange::MirroringPartner { new } => {
                    r.set("type", 13);
                    r.set("newvalue_string", new);
                }
                EnvChange::ResetConnectionAck => r.set("type", 18),
                EnvChange::Routing { .. } => r.set("type", 20),
                EnvChange::Other { env_type } => r.set("type", env_type),
            }
            r
        }
        Token::Done(d) => {
            let kind = match d.token {
                id::DONE => "done",
                id::DONEPROC => "doneproc",
                _ => "doneinproc",
            };
            let mut r = Rec::new(kind, frame);
            r.set("status", d.status);
            r.set("curcmd", d.cur_cmd);
            r.set("rowcount", d.row_count);
            r
        }
        Token::ColMetadata { columns } => {
            let mut r = Rec::new("colmetadata", frame);
            r.set("columns", columns);
            r
        }
        Token::ReturnStatus(v) => {
            let mut r = Rec::new("returnstatus", frame);
            r.set("value", *v as u32);
            r
        }
        Token::Sspi(b) => return sspi_rec(b, frame),
        _ => return None,
    })
}

/// The TDS version tshark is told to assume, if any: the same start for our token walker.
fn assumed_version(args: &[String]) -> TdsVersion {
    let pref = args
        .iter()
        .find_map(|a| a.strip_prefix("tds.protocol_type:"))
        .unwrap_or("");
    match pref {
        "TDS 7.0" => TdsVersion::V7_0,
        "TDS 7.1" => TdsVersion::V7_1,
        "TDS 7.2" => TdsVersion::V7_2,
        "TDS 7.3" | "TDS 7.3A" => TdsVersion::V7_3A,
        "TDS 7.3B" => TdsVersion::V7_3B,
        // What the session assumes before LOGIN7 tells it.
        _ => TdsVersion::V7_4,
    }
}

fn ours(case: &Case) -> Ours {
    let limits = Limits::default();
    let mut src = capture::open(&case.path, 0, &limits).unwrap();
    let mut decoder = Decoder::new(&limits);
    let mut tracker = Tracker::new(&limits);
    let mut tds_ports = vec![1433, 2433];
    for a in &case.tshark_args {
        if let Some(p) = a
            .strip_prefix("tcp.port==")
            .and_then(|r| r.split(',').next())
        {
            tds_ports.push(p.parse().unwrap());
        }
    }
    let mut sink = Ours {
        version: assumed_version(&case.tshark_args),
        tds_ports,
        conns: BTreeMap::new(),
        side: Side::new(),
        failures: Vec::new(),
    };
    // Bounded by the file: every frame is read once; damaged files end early.
    while let Ok(Some(frame)) = src.next_frame() {
        if let Decoded::Packet(p) = decoder.decode(&frame) {
            tracker.on_packet(&p, &mut sink);
        }
    }
    tracker.finish(&mut sink);
    sink
}

// ---------------------------------------------------------------- tshark's side

/// tshark field → (record kind it starts, or belongs to; our key). `None` key: starts a record.
fn field_map(name: &str) -> Option<(&'static str, Option<&'static str>)> {
    let start = |k| Some((k, None));
    Some(match name {
        "tds.type" => ("packet", Some("type")),
        "tds.status" => ("packet", Some("status")),
        "tds.length" => ("packet", Some("length")),
        "tds.channel" => ("packet", Some("channel")),
        "tds.packet_number" => ("packet", Some("packet_number")),
        "tds.prelogin" => return start("prelogin"),
        "tds.prelogin.option.version" => ("prelogin", Some("version")),
        "tds.prelogin.option.subbuild" => ("prelogin", Some("subbuild")),
        "tds.prelogin.option.encryption" => ("prelogin", Some("encryption")),
        "tds.prelogin.option.instopt" => ("prelogin", Some("instopt")),
        "tds.prelogin.option.threadid" => ("prelogin", Some("threadid")),
        "tds.prelogin.option.mars" => ("prelogin", Some("mars")),
        "tds.prelogin.option.traceid" => ("prelogin", Some("traceid")),
        "tds.prelogin.option.fedauthrequired" => ("prelogin", Some("fedauthrequired")),
        "tds.prelogin.option.nonceopt" => ("prelogin", Some("nonceopt")),
        "tds.7login.total_len" => ("login7", Some("total_len")),
        "tds.7login.version" => ("login7", Some("version")),
        "tds.7login.packet_size" => ("login7", Some("packet_size")),
        "tds.7login.client_version" => ("login7", Some("client_version")),
        "tds.7login.client_pid" => ("login7", Some("client_pid")),
        "tds.7login.connection_id" => ("login7", Some("connection_id")),
        "tds.7login.option_flags1" => ("login7", Some("option_flags1")),
        "tds.7login.option_flags2" => ("login7", Some("option_flags2")),
        "tds.7login.sql_type_flags" => ("login7", Some("sql_type_flags")),
        "tds.7login.reserved_flags" => ("login7", Some("reserved_flags")),
        "tds.7login.time_zone" => ("login7", Some("time_zone")),
        "tds.7login.collation" => ("login7", Some("collation")),
        "tds.7login.clientname" => ("login7", Some("clientname")),
        "tds.7login.username" => ("login7", Some("username")),
        "tds.7login.appname" => ("login7", Some("appname")),
        "tds.7login.servername" => ("login7", Some("servername")),
        "tds.7login.libraryname" => ("login7", Some("libraryname")),
        "tds.7login.locale" => ("login7", Some("locale")),
        "tds.7login.databasename" => ("login7", Some("databasename")),
        "tds.loginack" => return start("loginack"),
        "tds.loginack.interface" => ("loginack", Some("interface")),
        "tds.loginack.tdsversion" => ("loginack", Some("tdsversion")),
        "tds.loginack.progversion" => ("loginack", Some("progversion")),
        "tds.loginack.progname" => ("loginack", Some("progname")),
        "tds.envchange" => return start("envchange"),
        "tds.envchange.type" => ("envchange", Some("type")),
        "tds.envchange.newvalue_string" => ("envchange", Some("newvalue_string")),
        "tds.envchange.oldvalue_string" => ("envchange", Some("oldvalue_string")),
        "tds.envchange.newvalue" => ("envchange", Some("newvalue")),
        "tds.envchange.collate_codepage" => ("envchange", Some("collate_codepage")),
        "tds.envchange.collate_flags" => ("envchange", Some("collate_flags")),
        "tds.envchange.collate_charset_id" => ("envchange", Some("collate_charset_id")),
        "tds.error" => return start("error"),
        "tds.info" => return start("info"),
        "tds.error.number" | "tds.info.number" => ("", Some("number")),
        "tds.error.state" | "tds.info.state" => ("", Some("state")),
        "tds.error.class" | "tds.info.class" => ("", Some("class")),
        "tds.error.msgtext" | "tds.info.msgtext" => ("", Some("msgtext")),
        "tds.error.servername" | "tds.info.servername" => ("", Some("servername")),
        "tds.error.procname" | "tds.info.procname" => ("", Some("procname")),
        "tds.error.linenumber" | "tds.info.linenumber" => ("", Some("linenumber")),
        "tds.done" => return start("done"),
        "tds.doneproc" => return start("doneproc"),
        "tds.doneinproc" => return start("doneinproc"),
        "tds.done.status" | "tds.doneproc.status" | "tds.doneinproc.status" => ("", Some("status")),
        "tds.done.curcmd" | "tds.doneproc.curcmd" | "tds.doneinproc.curcmd" => ("", Some("curcmd")),
        "tds.done.donerowcount"
        | "tds.doneproc.donerowcount"
        | "tds.doneinproc.donerowcount"
        | "tds.done.donerowcount64"
        | "tds.doneproc.donerowcount64"
        | "tds.doneinproc.donerowcount64" => ("", Some("rowcount")),
        "tds.colmetadata" => return start("colmetadata"),
        "tds.colmetadata.columns" => ("colmetadata", Some("columns")),
        "tds.returnstatus" => return start("returnstatus"),
        "tds.returnstatus.value" => ("returnstatus", Some("value")),
        "ntlmssp.messagetype" => ("sspi", Some("ntlm_type")),
        // Where tshark's token walk gives up: never produced by our side.
        "tds.unknown_tds_token" => return start("unknown_token"),
        _ => return None,
    })
}

/// Fields whose value is bytes: compared as the raw hex of PDML's `value`.
fn is_bytes(key: &str) -> bool {
    matches!(key, "traceid" | "nonceopt" | "newvalue")
}

/// Fields whose value is text: compared as shown.
fn is_text(key: &str) -> bool {
    matches!(
        key,
        "instopt"
            | "clientname"
            | "username"
            | "appname"
            | "servername"
            | "libraryname"
            | "locale"
            | "databasename"
            | "progname"
            | "newvalue_string"
            | "oldvalue_string"
            | "msgtext"
            | "procname"
    )
}

fn xml_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        rest = &rest[p..];
        let Some(end) = rest.find(';') else { break };
        let ent = &rest[1..end];
        let c = match ent {
            "quot" => Some('"'),
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "apos" => Some('\''),
            _ => ent
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => out.push(c),
            None => out.push_str(&rest[..=end]),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn attr(line: &str, name: &str) -> Option<String> {
    let pat = format!(" {name}=\"");
    let start = line.find(&pat)? + pat.len();
    let len = line[start..].find('"')?;
    Some(xml_unescape(&line[start..start + len]))
}

/// Numbers as decimal whether tshark shows them in hex or decimal.
fn number(show: &str) -> String {
    if let Some(h) = show.strip_prefix("0x") {
        if let Ok(v) = u64::from_str_radix(h, 16) {
            return v.to_string();
        }
    }
    show.to_string()
}

/// One TLS field tshark showed: frame, whether a TDS packet carried it, field, value.
type TlsSeen = (u64, bool, &'static str, String);

struct Theirs {
    side: Side,
    /// TLS seen by tshark per direction key: (frame, inside a TDS packet, field, value) for
    /// record content types, handshake types and alert level/description.
    tls: BTreeMap<(u64, String), Vec<TlsSeen>>,
    /// The records of `side` again, per TCP stream: the session check matches connections by
    /// stream, since a 4-tuple may be reused.
    by_stream: BTreeMap<(u64, String), Vec<Rec>>,
    /// tshark's TCP stream number by the stream's first frame.
    stream_by_first_frame: BTreeMap<u64, u64>,
    /// Frames tshark marks malformed in TDS, per direction key.
    malformed: BTreeMap<String, BTreeSet<u64>>,
}

impl Theirs {
    fn push(&mut self, stream: u64, key: String, r: Rec) {
        self.by_stream
            .entry((stream, key.clone()))
            .or_default()
            .push(r.clone());
        self.side.entry(key).or_default().push(r);
    }
}

fn theirs(case: &Case) -> Theirs {
    let out = Command::new("tshark")
        .arg("-n")
        .arg("-r")
        .arg(&case.path)
        .args(&case.tshark_args)
        // Every frame (for each TCP stream's first frame), only the protocols compared.
        .args(["-T", "pdml", "-J", "frame ip ipv6 tcp tds tls ntlmssp"])
        .output()
        .expect("run tshark");
    // tshark exits 2 on a file cut short (truncated-file.pcap) after dissecting what it read.
    assert!(
        out.status.success() || !out.stdout.is_empty(),
        "tshark failed on {}: {}",
        case.name,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut t = Theirs {
        side: Side::new(),
        tls: BTreeMap::new(),
        by_stream: BTreeMap::new(),
        stream_by_first_frame: BTreeMap::new(),
        malformed: BTreeMap::new(),
    };
    let mut seen_streams = BTreeSet::new();
    let mut stream = 0u64;
    let mut tds_in_packet = false;
    let (mut frame, mut src, mut dst, mut sport, mut dport) = (
        0u64,
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    );
    let mut in_tds = false;
    let mut cur: Option<Rec> = None;
    let key = |s: &str, sp: &str, d: &str, dp: &str| {
        let a: SocketAddr = format!("{}:{sp}", bracket(s)).parse().unwrap();
        let b: SocketAddr = format!("{}:{dp}", bracket(d)).parse().unwrap();
        format!("{a} -> {b}")
    };
    for line in text.lines() {
        let l = line.trim_start();
        if l.starts_with("<packet>") {
            in_tds = false;
            tds_in_packet = false;
            continue;
        }
        if l.starts_with("</packet>") {
            if let Some(r) = cur.take() {
                t.push(stream, key(&src, &sport, &dst, &dport), r);
            }
            continue;
        }
        if let Some(rest) = l.strip_prefix("<proto name=\"") {
            // NTLMSSP inside a TDS PDU (LOGIN7, SSPI message) starts an SSPI record.
            if rest.starts_with("ntlmssp\"") && in_tds {
                if let Some(r) = cur.take() {
                    t.push(stream, key(&src, &sport, &dst, &dport), r);
                }
                cur = Some(Rec::new("sspi", frame));
                continue;
            }
            in_tds = rest.starts_with("tds\"");
            tds_in_packet |= in_tds;
            if rest.starts_with("_ws.malformed\"") {
                t.malformed
                    .entry(key(&src, &sport, &dst, &dport))
                    .or_default()
                    .insert(frame);
            }
            continue;
        }
        if !l.starts_with("<field ") {
            continue;
        }
        let Some(name) = attr(l, "name") else {
            continue;
        };
        match name.as_str() {
            "num" => frame = attr(l, "show").unwrap_or_default().parse().unwrap_or(0),
            "ip.src" | "ipv6.src" => src = attr(l, "show").unwrap_or_default(),
            "ip.dst" | "ipv6.dst" => dst = attr(l, "show").unwrap_or_default(),
            "tcp.srcport" => sport = attr(l, "show").unwrap_or_default(),
            "tcp.dstport" => dport = attr(l, "show").unwrap_or_default(),
            "tcp.stream" => {
                stream = attr(l, "show").unwrap_or_default().parse().unwrap_or(0);
                if seen_streams.insert(stream) {
                    t.stream_by_first_frame.insert(frame, stream);
                }
            }
            "tls.record.content_type"
            | "tls.handshake.type"
            | "tls.alert_message.level"
            | "tls.alert_message.desc" => {
                let field = match name.as_str() {
                    "tls.record.content_type" => "content_type",
                    "tls.handshake.type" => "handshake",
                    "tls.alert_message.level" => "alert_level",
                    _ => "alert_desc",
                };
                t.tls
                    .entry((stream, key(&src, &sport, &dst, &dport)))
                    .or_default()
                    .push((
                        frame,
                        tds_in_packet,
                        field,
                        number(&attr(l, "show").unwrap_or_default()),
                    ));
            }
            "_ws.malformed" => {
                t.malformed
                    .entry(key(&src, &sport, &dst, &dport))
                    .or_default()
                    .insert(frame);
            }
            _ => {}
        }
        if !in_tds {
            continue;
        }
        let Some((kind, k)) = field_map(&name) else {
            continue;
        };
        let starts = k.is_none() || name == "tds.type" || name == "tds.7login.total_len";
        if starts {
            if let Some(r) = cur.take() {
                t.push(stream, key(&src, &sport, &dst, &dport), r);
            }
            cur = Some(Rec::new(kind, frame));
        }
        let Some(k) = k else { continue };
        let Some(r) = cur.as_mut() else { continue };
        if !kind.is_empty() && r.kind != kind {
            continue;
        }
        if r.fields.contains_key(k) {
            continue;
        }
        let v = if is_bytes(k) {
            attr(l, "value").unwrap_or_default()
        } else if is_text(k) {
            attr(l, "show").unwrap_or_default()
        } else {
            number(&attr(l, "show").unwrap_or_default())
        };
        r.set(k, v);
    }
    t
}

fn bracket(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    }
}

// ---------------------------------------------------------------- comparison

/// One unexplained or explained difference.
#[derive(Debug)]
struct Diff {
    capture: String,
    key: String,
    kind: &'static str,
    ours: Option<Rec>,
    theirs: Option<Rec>,
}

impl std::fmt::Display for Diff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}:", self.capture, self.key, self.kind)?;
        match &self.ours {
            Some(r) => write!(f, " ours (frame {}) {:?}", r.frame, r.fields)?,
            None => write!(f, " ours: -")?,
        }
        match &self.theirs {
            Some(r) => write!(f, " | tshark (frame {}) {:?}", r.frame, r.fields),
            None => write!(f, " | tshark: -"),
        }
    }
}

/// Longest common subsequence alignment of two record sequences.
fn align(a: &[Rec], b: &[Rec]) -> Vec<(Option<usize>, Option<usize>)> {
    let (n, m) = (a.len(), b.len());
    let mut dp = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            dp[at(i, j)] = if a[i] == b[j] {
                dp[at(i + 1, j + 1)] + 1
            } else {
                dp[at(i + 1, j)].max(dp[at(i, j + 1)])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push((Some(i), Some(j)));
            i += 1;
            j += 1;
        } else if j == m || (i < n && dp[at(i + 1, j)] >= dp[at(i, j + 1)]) {
            out.push((Some(i), None));
            i += 1;
        } else {
            out.push((None, Some(j)));
            j += 1;
        }
    }
    out
}

#[derive(Default)]
struct Tally {
    records: u64,
    fields: u64,
    /// Our connections whose first frame starts no tshark TCP stream.
    unmatched_streams: u64,
    /// Equal records per kind, and the captures they came from.
    by_kind: BTreeMap<&'static str, (u64, BTreeSet<String>)>,
}

fn compare(case: &Case, ours: &Ours, theirs: &Theirs, tally: &mut Tally) -> Vec<Diff> {
    let mut diffs = Vec::new();
    let keys: BTreeSet<&String> = ours.side.keys().chain(theirs.side.keys()).collect();
    let empty = Vec::new();
    for key in keys {
        let o = ours.side.get(key).unwrap_or(&empty);
        let t = theirs.side.get(key).unwrap_or(&empty);
        let kinds: BTreeSet<&'static str> = o.iter().chain(t.iter()).map(|r| r.kind).collect();
        for kind in kinds {
            let a: Vec<Rec> = o.iter().filter(|r| r.kind == kind).cloned().collect();
            let b: Vec<Rec> = t.iter().filter(|r| r.kind == kind).cloned().collect();
            let mut pending_ours: Vec<Rec> = Vec::new();
            let mut pending_theirs: Vec<Rec> = Vec::new();
            let flush = |po: &mut Vec<Rec>, pt: &mut Vec<Rec>, diffs: &mut Vec<Diff>| {
                let n = po.len().max(pt.len());
                let (mut po_it, mut pt_it) = (po.drain(..), pt.drain(..));
                for _ in 0..n {
                    diffs.push(Diff {
                        capture: case.name.clone(),
                        key: key.clone(),
                        kind,
                        ours: po_it.next(),
                        theirs: pt_it.next(),
                    });
                }
            };
            for (i, j) in align(&a, &b) {
                match (i, j) {
                    (Some(i), Some(_)) => {
                        flush(&mut pending_ours, &mut pending_theirs, &mut diffs);
                        tally.records += 1;
                        tally.fields += a[i].fields.len() as u64;
                        let e = tally.by_kind.entry(kind).or_default();
                        e.0 += 1;
                        e.1.insert(case.name.clone());
                    }
                    (Some(i), None) => pending_ours.push(a[i].clone()),
                    (None, Some(j)) => pending_theirs.push(b[j].clone()),
                    (None, None) => {}
                }
            }
            flush(&mut pending_ours, &mut pending_theirs, &mut diffs);
        }
    }
    diffs
}

/// Why tshark and tdsscope may disagree: capture (substring of the file name), record kind,
/// and a test on the difference. The reason is printed with the count of differences it covers.
struct Explanation {
    capture: &'static str,
    kind: &'static str,
    applies: fn(&Diff) -> bool,
    why: &'static str,
}

fn only_ours(d: &Diff) -> bool {
    d.ours.is_some() && d.theirs.is_none()
}

fn only_theirs(d: &Diff) -> bool {
    d.ours.is_none() && d.theirs.is_some()
}

fn ours_frame_in(d: &Diff, lo: u64, hi: u64) -> bool {
    d.ours
        .as_ref()
        .is_some_and(|r| (lo..=hi).contains(&r.frame))
}

/// Equal but for `field`, where `same` relates our value to tshark's.
fn differs_only_in(d: &Diff, field: &str, same: fn(u64, u64) -> bool) -> bool {
    let (Some(o), Some(t)) = (&d.ours, &d.theirs) else {
        return false;
    };
    let keys: BTreeSet<&&str> = o.fields.keys().chain(t.fields.keys()).collect();
    keys.into_iter().all(|k| {
        let (a, b) = (o.fields.get(*k), t.fields.get(*k));
        if *k == field {
            match (
                a.and_then(|v| v.parse().ok()),
                b.and_then(|v| v.parse().ok()),
            ) {
                (Some(x), Some(y)) => same(x, y),
                _ => false,
            }
        } else {
            a == b
        }
    })
}

const EXPLAINED: &[Explanation] = &[
    Explanation {
        // The NTLM round captures: sspi-ntlm-challenge-ok/-failed and sspi-ntlm-anonymous.
        capture: "sspi-ntlm-",
        kind: "sspi",
        applies: only_ours,
        why: "the server's SSPI token (0xED) with an NTLM CHALLENGE: tshark 4.0 marks that frame \
              malformed and decodes nothing in it; the bytes (0xED, length 170, a 170-byte \
              NTLMSSP type 2 message) were checked by hand, and impacket answered the challenge \
              with an AUTHENTICATE that tshark does decode",
    },
    Explanation {
        capture: "tds8-strict-tedious",
        kind: "session.detected",
        applies: |d| {
            d.ours
                .as_ref()
                .is_some_and(|r| r.fields.get("tds").is_some_and(|v| v == "1"))
                && d.theirs
                    .as_ref()
                    .is_some_and(|r| r.fields.get("tds").is_some_and(|v| v == "0"))
        },
        why: "TDS 8.0 strict: TLS from the first byte, PRELOGIN and LOGIN7 inside it, so tshark \
              (told to decode port 1433 as TLS) sees no TDS; tdsscope recognises the \
              connection as TDS by the ClientHello's ALPN tds/8.0",
    },
    Explanation {
        capture: "",
        kind: "login7",
        applies: |d| {
            differs_only_in(d, "client_version", |o, t| {
                u32::try_from(o).is_ok_and(|o| u64::from(o.swap_bytes()) == t)
            })
        },
        why: "LOGIN7 ClientProgVer: tshark 4.0 reads it big-endian; MS-TDS 2.2.6.4 declares a \
              DWORD, little-endian like TDSVersion and ClientPID beside it (both sides read \
              those little-endian); the value is informational only",
    },
    Explanation {
        capture: "",
        kind: "prelogin",
        applies: |d| only_theirs(d) && d.theirs.as_ref().is_some_and(|r| r.fields.is_empty()),
        why: "PRELOGIN packets carrying the TLS handshake: tshark opens an empty Pre-Login \
              tree for each; there are no PRELOGIN options in them",
    },
    Explanation {
        capture: "ms-sql-tds-rpc-requests",
        kind: "doneproc",
        applies: only_ours,
        why: "no LOGIN7 in the capture: tshark (no version preference) shows DONEPROC after \
              RETURNSTATUS as 'Token - Unknown' and stops; we decode it",
    },
    Explanation {
        capture: "malcolm_TDS",
        kind: "doneproc",
        applies: only_ours,
        why: "no LOGIN7 in the capture: tshark (no version preference) shows DONEPROC after \
              RETURNSTATUS as 'Token - Unknown' and stops; we decode it",
    },
    Explanation {
        capture: "ms-sql-tds-rpc-requests",
        kind: "done",
        applies: |d| only_theirs(d) && d.theirs.as_ref().is_some_and(|r| r.frame == 6),
        why: "mid-stream without LOGIN7: a 9-byte DONE in TDS 7.1 layout; we assume 7.4 as \
              the session does (8-byte row count) and find it incomplete; tshark shows its \
              status and curcmd and marks the frame malformed",
    },
    Explanation {
        capture: "malcolm_TDS",
        kind: "done",
        applies: |d| only_theirs(d) && d.theirs.as_ref().is_some_and(|r| r.frame == 11),
        why: "mid-stream without LOGIN7: a 9-byte DONE in TDS 7.1 layout; we assume 7.4 as \
              the session does (8-byte row count) and find it incomplete; tshark shows its \
              status and curcmd and marks the frame malformed",
    },
    Explanation {
        capture: "Dameware",
        kind: "",
        applies: |d| only_ours(d) && ours_frame_in(d, 264, 275),
        why: "SQL Server 2000 result sets with TEXT columns: tshark 4.0 misreads the TEXT \
              value in ROW (frames 266, 269, 272, 273 malformed) and loses the tokens after \
              it; we walk on to DONE/DONEINPROC/DONEPROC/RETURNSTATUS",
    },
    Explanation {
        capture: "tds5-sybase",
        kind: "envchange",
        applies: only_theirs,
        why: "TDS 5.0 (Sybase): tshark decodes the response's ENVCHANGE with TDS 7's UCS-2 \
              layout (garbage text); tdsscope recognises the Sybase login and does not decode \
              TDS 5 tokens",
    },
    Explanation {
        capture: "login-redirected",
        kind: "done",
        applies: only_ours,
        why: "tshark 4.0 does not decode ENVCHANGE type 20 (routing) and cannot walk past it \
              ('Token - Unknown'); we decode the routing and the DONE after it",
    },
    Explanation {
        capture: "Dameware",
        kind: "session.request_done",
        applies: |_| true,
        why: "mid-stream SQL Server 2000 without LOGIN7: the session assumes TDS 7.4, cannot \
              walk the TDS 7.1 COLMETADATA (2-byte user types) and records the end of each \
              response without its DONE (status 0, no row count); tshark was told TDS 7.1",
    },
    Explanation {
        capture: "ms-sql-tds-rpc-requests",
        kind: "session.request_done",
        applies: |_| true,
        why: "mid-stream without LOGIN7: tshark stops at the DONEPROC that ends these RPC \
              answers ('Token - Unknown', see above), so its last DONE is an earlier one",
    },
    Explanation {
        capture: "malcolm_TDS",
        kind: "session.request_done",
        applies: |_| true,
        why: "mid-stream without LOGIN7: tshark stops at the DONEPROC that ends these RPC \
              answers ('Token - Unknown', see above), so its last DONE is an earlier one",
    },
    Explanation {
        capture: "snaplen-96",
        kind: "",
        applies: |_| true,
        why: "frames cut to 96 bytes: tshark dissects the captured part of each segment; our \
              stream has gaps where the bytes were cut, so the messages are incomplete",
    },
    Explanation {
        capture: "",
        kind: "unknown_token",
        applies: |d| {
            only_theirs(d)
                && [
                    "ms-sql-tds-rpc-requests",
                    "malcolm_TDS",
                    "tds5-sybase",
                    "login-redirected",
                ]
                .iter()
                .any(|c| d.capture.contains(c))
        },
        why: "where tshark's token walk stops ('Token - Unknown'): after RETURNSTATUS without \
              a TDS version, in TDS 5 tokens, after ENVCHANGE routing (see the entries above)",
    },
    Explanation {
        capture: "kerberos-spnego-impacket",
        kind: "error",
        applies: error_line_number_of_tds_7_1,
        why: TDS_7_1_LINE_NUMBER,
    },
    Explanation {
        capture: "kerberos-spnego-impacket",
        kind: "session.error",
        applies: error_line_number_of_tds_7_1,
        why: TDS_7_1_LINE_NUMBER,
    },
    Explanation {
        capture: "kerberos-spnego-impacket",
        kind: "done",
        applies: only_ours,
        why: TDS_7_1_DONE_LOST,
    },
    Explanation {
        capture: "kerberos-spnego-impacket",
        kind: "unknown_token",
        applies: only_theirs,
        why: TDS_7_1_DONE_LOST,
    },
];

const TDS_7_1_LINE_NUMBER: &str = "impacket logs in with TDS 7.1 and the login fails before any \
    LOGINACK: the ERROR's LineNumber is then a USHORT (MS-TDS 2.2.7.10, LONG only from 7.2), as the \
    server sent it (bytes 01 00, then the DONE token 0xFD); tshark 4.0 reads four bytes (line \
    50135041 = 0x02FD0001, the DONE's first bytes) and loses the DONE ('Token - Unknown')";

const TDS_7_1_DONE_LOST: &str =
    "the TDS 7.1 DONE after that ERROR, which tshark lost by reading a \
    4-byte LineNumber (see the entry above)";

/// The same ERROR but for its LineNumber: ours is line 1 read as a USHORT, tshark's the
/// USHORT and the next token's first two bytes read as one LONG.
fn error_line_number_of_tds_7_1(d: &Diff) -> bool {
    let (Some(ours), Some(theirs)) = (&d.ours, &d.theirs) else {
        return false;
    };
    let without_line = |r: &Rec| {
        let mut f = r.fields.clone();
        f.remove("linenumber");
        f
    };
    ours.fields.get("linenumber").map(String::as_str) == Some("1")
        && theirs
            .fields
            .get("linenumber")
            .and_then(|v| v.parse::<u32>().ok())
            .is_some_and(|v| v & 0xFFFF == 1 && v >> 16 == 0x02FD)
        && without_line(ours) == without_line(theirs)
}

// ---------------------------------------------------------------- the session's facts

/// Runs the whole session layer (what `tdsscope analyze` runs) and returns its facts.
fn session_facts(case: &Case) -> Vec<ConnectionFacts> {
    let limits = Limits::default();
    let mut src = capture::open(&case.path, 0, &limits).unwrap();
    let mut decoder = Decoder::new(&limits);
    let mut tracker = Tracker::new(&limits);
    let mut sessions = Sessions::new();
    let mut out = Vec::new();
    while let Ok(Some(frame)) = src.next_frame() {
        if let Decoded::Packet(p) = decoder.decode(&frame) {
            tracker.on_packet(&p, &mut sessions);
        }
        out.extend(sessions.drain_finished());
    }
    tracker.finish(&mut sessions);
    out.extend(sessions.drain_finished());
    out
}

fn prelogin_label(v: &str) -> String {
    let v: u32 = v.parse().unwrap_or(0);
    format!("{}.{}.{}", v >> 24, (v >> 16) & 0xff, v & 0xffff)
}

fn setting_code(e: EncryptionSetting) -> u8 {
    match e {
        EncryptionSetting::Off => 0,
        EncryptionSetting::On => 1,
        EncryptionSetting::NotSupported => 2,
        EncryptionSetting::Required => 3,
        EncryptionSetting::Unknown(v) => v,
    }
}

fn session_prelogin(kind: &'static str, p: &PreloginFacts) -> Rec {
    let mut r = Rec::new(kind, p.at.frame.no);
    if let Some(e) = p.encryption {
        r.set("encryption", setting_code(e));
    }
    if let Some(v) = &p.version {
        r.set("version", v);
    }
    if let Some(i) = &p.instance {
        r.set("instance", i);
    }
    if let Some(m) = p.mars {
        r.set("mars", u8::from(m));
    }
    r
}

/// What the session should have concluded, from tshark's records of one connection.
fn expected_prelogin(kind: &'static str, recs: &[Rec]) -> Option<Rec> {
    let t = recs
        .iter()
        .find(|r| r.kind == "prelogin" && !r.fields.is_empty())?;
    let mut r = Rec::new(kind, t.frame);
    if let Some(e) = t.fields.get("encryption") {
        r.set("encryption", e.parse::<u8>().unwrap() & 0x7f);
    }
    if let Some(v) = t.fields.get("version") {
        r.set("version", prelogin_label(v));
    }
    if let Some(i) = t.fields.get("instopt") {
        if i.bytes().all(|b| b.is_ascii_graphic()) {
            r.set("instance", i);
        }
    }
    if let Some(m) = t.fields.get("mars") {
        r.set("mars", u8::from(m != "0"));
    }
    Some(r)
}

/// The final DONE (status, and row count when DONE_COUNT is set) of each server message after
/// the one carrying LOGINACK, from tshark's records: a message's tokens follow the header of
/// its last packet (EOM), up to the next packet header. At most `limit` (the session keeps the
/// first `MAX_KEPT_PER_CONNECTION` requests).
fn expected_request_dones(s2c: &[Rec], login_seen: bool, limit: usize) -> Vec<Rec> {
    let mut out = Vec::new();
    let mut seen_loginack = false;
    // Without a LOGIN7 in the capture the session takes the connection as logged in.
    let mut answering = !login_seen;
    let mut in_tail = false;
    let mut last_done: Option<&Rec> = None;
    let flush = |d: Option<&Rec>, out: &mut Vec<Rec>| {
        if let Some(d) = d {
            let status: u16 = d.fields["status"].parse().unwrap();
            // A DONE with DONE_ATTN ends the answer to an ATTENTION, not to a request (the
            // session records it as the attention's acknowledgement).
            if status & 0x20 != 0 {
                return;
            }
            let mut x = Rec::new("session.request_done", d.frame);
            x.set("status", status);
            if status & 0x10 != 0 {
                x.set("rowcount", &d.fields["rowcount"]);
            }
            out.push(x);
        }
    };
    for r in s2c {
        match r.kind {
            "packet" => {
                if in_tail {
                    if answering {
                        flush(last_done, &mut out);
                    }
                    last_done = None;
                    answering = seen_loginack || !login_seen;
                }
                in_tail = r.fields["status"].parse::<u8>().unwrap() & 1 != 0;
            }
            "done" | "doneproc" | "doneinproc" => last_done = Some(r),
            "loginack" => {
                seen_loginack = true;
                answering = false;
            }
            _ => {}
        }
    }
    if in_tail && answering {
        flush(last_done, &mut out);
    }
    out.truncate(limit.max(MAX_KEPT_PER_CONNECTION));
    out
}

/// Client messages that are requests, counted as the session counts them: a packet that
/// starts a message (the previous one ended with EOM) of type SQL batch, RPC, bulk load or
/// transaction manager.
fn expected_requests(c2s: &[Rec]) -> (u64, u64) {
    let (mut requests, mut attentions, mut at_start) = (0, 0, true);
    for p in c2s.iter().filter(|r| r.kind == "packet") {
        let ty: u8 = p.fields["type"].parse().unwrap();
        let st: u8 = p.fields["status"].parse().unwrap();
        if at_start && matches!(ty, 1 | 3 | 7 | 14) {
            requests += 1;
        }
        if ty == 6 {
            attentions += 1;
        }
        at_start = st & 1 != 0;
    }
    (requests, attentions)
}

/// The session's TLS facts as tshark's TLS records imply them.
fn expected_tls(theirs: &Theirs, stream: u64, c2s_key: &str, s2c_key: &str) -> Option<Rec> {
    let empty = Vec::new();
    let c2s = theirs
        .tls
        .get(&(stream, c2s_key.to_string()))
        .unwrap_or(&empty);
    let s2c = theirs
        .tls
        .get(&(stream, s2c_key.to_string()))
        .unwrap_or(&empty);
    if c2s.is_empty() && s2c.is_empty() {
        return None;
    }
    let hello = c2s.iter().find(|e| e.2 == "handshake" && e.3 == "1");
    let mut r = Rec::new("session.tls", hello.map_or(0, |e| e.0));
    let first = c2s.first().or(s2c.first());
    r.set("in_prelogin", u8::from(first.is_some_and(|e| e.1)));
    r.set("client_hello", u8::from(hello.is_some()));
    let server_hello = s2c.iter().any(|e| e.2 == "handshake" && e.3 == "2");
    r.set("server_hello", u8::from(server_hello));
    // The first alert tshark could read (an encrypted alert has no level).
    for side in [c2s, s2c] {
        if let Some(i) = side.iter().position(|e| e.2 == "alert_level") {
            if let Some(d) = side.get(i + 1).filter(|e| e.2 == "alert_desc") {
                r.set("alert", format!("{}/{}", side[i].3, d.3));
                break;
            }
        }
    }
    let app = c2s.iter().any(|e| e.2 == "content_type" && e.3 == "23");
    r.set("application_data", u8::from(app));
    Some(r)
}

fn session_diffs(
    case: &Case,
    facts: &[ConnectionFacts],
    theirs: &Theirs,
    tally: &mut Tally,
) -> Vec<Diff> {
    let mut diffs = Vec::new();
    let key = |a: SocketAddr, b: SocketAddr| format!("{a} -> {b}");
    let empty = Vec::new();
    for f in facts {
        let c2s_key = key(f.tcp.client, f.tcp.server);
        let s2c_key = key(f.tcp.server, f.tcp.client);
        let Some(&stream) = theirs.stream_by_first_frame.get(&f.tcp.first.frame.no) else {
            tally.unmatched_streams += 1;
            continue;
        };
        let c2s = theirs
            .by_stream
            .get(&(stream, c2s_key.clone()))
            .unwrap_or(&empty);
        let s2c = theirs
            .by_stream
            .get(&(stream, s2c_key.clone()))
            .unwrap_or(&empty);
        let mut pairs: Vec<(&'static str, Option<Rec>, Option<Rec>)> = Vec::new();
        let tshark_tds = !c2s.is_empty() || !s2c.is_empty();
        let detected = |tds: bool, frame: u64| {
            let mut r = Rec::new("session.detected", frame);
            r.set("tds", u8::from(tds));
            Some(r)
        };
        let Some(tds) = &f.tds else {
            if tshark_tds {
                pairs.push((
                    "session.detected",
                    detected(false, f.tcp.first.frame.no),
                    detected(true, f.tcp.first.frame.no),
                ));
                push_pairs(case, &c2s_key, pairs, &mut diffs, tally);
            }
            continue;
        };
        pairs.push((
            "session.detected",
            detected(true, tds.detected_at.frame.no),
            detected(tshark_tds, tds.detected_at.frame.no),
        ));
        if !tshark_tds {
            push_pairs(case, &c2s_key, pairs, &mut diffs, tally);
            continue;
        }
        if tds.dialect == Dialect::Sybase {
            continue;
        }
        pairs.push((
            "session.prelogin_client",
            tds.prelogin_client
                .as_ref()
                .map(|p| session_prelogin("session.prelogin_client", p)),
            expected_prelogin("session.prelogin_client", c2s),
        ));
        pairs.push((
            "session.prelogin_server",
            tds.prelogin_server
                .as_ref()
                .map(|p| session_prelogin("session.prelogin_server", p)),
            expected_prelogin("session.prelogin_server", s2c),
        ));
        let ours_login = tds.login7.as_ref().map(|l| {
            let mut r = Rec::new("session.login7", l.at.frame.no);
            r.set("version", l.tds_version);
            r.set("username", &l.user);
            r.set("clientname", &l.host);
            r.set("appname", &l.app);
            r.set("servername", &l.server_name);
            r.set("libraryname", &l.library);
            r.set("databasename", &l.database);
            r.set("locale", &l.language);
            r.set("packet_size", l.packet_size);
            r.set("client_pid", l.client_pid);
            r
        });
        let their_login = c2s.iter().find(|r| r.kind == "login7").map(|t| {
            let mut r = Rec::new("session.login7", t.frame);
            for k in [
                "version",
                "username",
                "clientname",
                "appname",
                "servername",
                "libraryname",
                "databasename",
                "locale",
                "packet_size",
                "client_pid",
            ] {
                if let Some(v) = t.fields.get(k) {
                    r.set(k, v);
                }
            }
            r
        });
        pairs.push(("session.login7", ours_login, their_login));
        let ours_ack = tds.login_ack.as_ref().map(|a| {
            let mut r = Rec::new("session.loginack", a.at.frame.no);
            r.set("tdsversion", a.tds_version);
            r.set("progname", &a.prog_name);
            r.set("server_version", &a.server_version);
            r
        });
        let their_ack = s2c.iter().find(|r| r.kind == "loginack").map(|t| {
            let mut r = Rec::new("session.loginack", t.frame);
            r.set("tdsversion", &t.fields["tdsversion"]);
            r.set(
                "progname",
                t.fields.get("progname").map(String::as_str).unwrap_or(""),
            );
            r.set("server_version", prelogin_label(&t.fields["progversion"]));
            r
        });
        pairs.push(("session.loginack", ours_ack, their_ack));
        let ours_errors: Vec<Rec> = tds
            .login_errors
            .iter()
            .chain(tds.errors.iter())
            .map(|e| {
                let mut r = Rec::new("session.error", e.at.frame.no);
                r.set("number", e.number);
                r.set("state", e.state);
                r.set("class", e.class);
                r.set("msgtext", &e.message);
                r.set("servername", &e.server);
                r.set("procname", &e.procedure);
                r.set("linenumber", e.line);
                r
            })
            .collect();
        let their_errors: Vec<Rec> = s2c
            .iter()
            .filter(|r| r.kind == "error")
            .take(ours_errors.len().max(MAX_KEPT_PER_CONNECTION))
            .map(|t| Rec {
                kind: "session.error",
                ..t.clone()
            })
            .collect();
        for i in 0..ours_errors.len().max(their_errors.len()) {
            pairs.push((
                "session.error",
                ours_errors.get(i).cloned(),
                their_errors.get(i).cloned(),
            ));
        }
        let db = |v: Option<&String>, frame: u64| {
            v.map(|v| {
                let mut r = Rec::new("session.database", frame);
                r.set("database", v);
                r
            })
        };
        let their_db = s2c
            .iter()
            .rev()
            .find(|r| r.kind == "envchange" && r.fields.get("type").is_some_and(|t| t == "1"));
        pairs.push((
            "session.database",
            db(tds.database.as_ref(), 0),
            db(
                their_db.and_then(|r| r.fields.get("newvalue_string")),
                their_db.map_or(0, |r| r.frame),
            ),
        ));
        let ours_tls = tds.tls.as_ref().map(|t| {
            let mut r = Rec::new("session.tls", t.client_hello.map_or(0, |m| m.frame.no));
            r.set("in_prelogin", u8::from(t.in_prelogin));
            r.set("client_hello", u8::from(t.client_hello.is_some()));
            r.set("server_hello", u8::from(t.server_hello.is_some()));
            if let Some((_, level, desc)) = t.alert {
                r.set("alert", format!("{level}/{desc}"));
            }
            r.set("application_data", u8::from(t.application_data.is_some()));
            r
        });
        pairs.push((
            "session.tls",
            ours_tls,
            expected_tls(theirs, stream, &c2s_key, &s2c_key),
        ));
        // Each answered request's final DONE: the last DONE-kind token of each response
        // message after the login response, in order.
        let ours_dones: Vec<Rec> = tds
            .requests
            .iter()
            .chain(tds.outstanding.iter())
            .filter(|r| r.done.is_some())
            .map(|r| {
                let mut x = Rec::new("session.request_done", r.at.frame.no);
                x.set("status", r.done_status);
                if let Some(n) = r.row_count {
                    x.set("rowcount", n);
                }
                x
            })
            .collect();
        // A LOGIN7 in the clear, or (login-only encryption) TLS application data from the client.
        let login_seen = c2s
            .iter()
            .any(|r| r.kind == "packet" && r.fields["type"] == "16")
            || theirs
                .tls
                .get(&(stream, c2s_key.clone()))
                .is_some_and(|v| v.iter().any(|e| e.2 == "content_type" && e.3 == "23"));
        let their_dones = expected_request_dones(s2c, login_seen, ours_dones.len());
        for (i, j) in align(&ours_dones, &their_dones) {
            pairs.push((
                "session.request_done",
                i.map(|i| ours_dones[i].clone()),
                j.map(|j| their_dones[j].clone()),
            ));
        }
        let (requests, attentions) = expected_requests(c2s);
        let counts = |n_ours: u64, n_theirs: u64, kind: &'static str| {
            let mk = |n: u64| {
                let mut r = Rec::new(kind, 0);
                r.set("count", n);
                Some(r)
            };
            (kind, mk(n_ours), mk(n_theirs))
        };
        pairs.push(counts(tds.request_count, requests, "session.request_count"));
        let acked = tds
            .attentions
            .iter()
            .filter(|a| a.acknowledged.is_some())
            .count() as u64;
        let their_acked = s2c
            .iter()
            .filter(|r| {
                matches!(r.kind, "done" | "doneproc" | "doneinproc")
                    && r.fields["status"].parse::<u16>().unwrap() & 0x20 != 0
            })
            .count() as u64;
        pairs.push(counts(acked, their_acked, "session.attention_acknowledged"));
        pairs.push(counts(
            tds.attention_count,
            attentions,
            "session.attention_count",
        ));
        push_pairs(case, &c2s_key, pairs, &mut diffs, tally);
    }
    diffs
}

fn push_pairs(
    case: &Case,
    key: &str,
    pairs: Vec<(&'static str, Option<Rec>, Option<Rec>)>,
    diffs: &mut Vec<Diff>,
    tally: &mut Tally,
) {
    for (kind, o, t) in pairs {
        match (&o, &t) {
            (None, None) => {}
            (Some(a), Some(b)) if a == b => {
                tally.records += 1;
                tally.fields += a.fields.len() as u64;
                let e = tally.by_kind.entry(kind).or_default();
                e.0 += 1;
                e.1.insert(case.name.clone());
            }
            _ => diffs.push(Diff {
                capture: case.name.clone(),
                key: key.to_string(),
                kind,
                ours: o,
                theirs: t,
            }),
        }
    }
}

#[test]
fn tds_fields_match_tshark() {
    if !tshark_or_skip("tds_fields_match_tshark") {
        return;
    }
    let started = std::time::Instant::now();
    let mut tally = Tally::default();
    let mut unexplained = Vec::new();
    let mut explained: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut n_cases = 0;
    for case in cases() {
        n_cases += 1;
        let o = ours(&case);
        let t = theirs(&case);
        for (key, frame, what) in &o.failures {
            eprintln!(
                "{}: {key} frame {frame}: our parse stopped: {what}",
                case.name
            );
        }
        let mut diffs = compare(&case, &o, &t, &mut tally);
        diffs.extend(session_diffs(&case, &session_facts(&case), &t, &mut tally));
        for d in diffs {
            match EXPLAINED.iter().find(|e| {
                d.capture.contains(e.capture)
                    && (e.kind.is_empty() || e.kind == d.kind)
                    && (e.applies)(&d)
            }) {
                Some(e) => {
                    *explained.entry(e.why).or_default() += 1;
                    // The fields that do agree in an explained difference were compared too.
                    if let (Some(o), Some(t)) = (&d.ours, &d.theirs) {
                        tally.fields += o
                            .fields
                            .iter()
                            .filter(|(k, v)| t.fields.get(*k) == Some(v))
                            .count() as u64;
                    }
                }
                None => unexplained.push(d.to_string()),
            }
        }
    }
    eprintln!(
        "tds_tshark: {n_cases} captures, {} records and {} field values equal to tshark's, \
         {} differences explained, {} unexplained, {:.1} s",
        tally.records,
        tally.fields,
        explained.values().sum::<u64>(),
        unexplained.len(),
        started.elapsed().as_secs_f64()
    );
    eprintln!(
        "  session check: {} connections start no tshark TCP stream",
        tally.unmatched_streams
    );
    for (kind, (n, files)) in &tally.by_kind {
        eprintln!("  {n:5} equal {kind} records in {} captures", files.len());
    }
    for (why, n) in &explained {
        eprintln!("  {n:5} explained: {why}");
    }
    assert!(
        unexplained.is_empty(),
        "{} TDS differences from tshark:\n{}",
        unexplained.len(),
        unexplained.join("\n")
    );
}
