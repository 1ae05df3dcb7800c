//! The server's token stream (MS-TDS 2.2.7): every token is walked so that what follows a
//! result set (an ERROR after rows, a DONE acknowledging an ATTENTION) is found. Rows are
//! skipped, never stored; values are not decoded.
//!
//! [`parse_token`] reads one token from the front of a buffer holding the message's bytes
//! (TDS packet headers already removed). It answers `Incomplete` when the buffer ends inside
//! the token, so a caller can feed a message packet by packet.

use nom::number::complete::{be_u32, le_i32, le_u16, le_u32, le_u64, u8 as byte};
use nom::{IResult, Parser};

use super::TdsVersion;
use crate::proto::ParseError;

/// Token identifiers (MS-TDS 2.2.7).
pub mod id {
    pub const OFFSET: u8 = 0x78;
    pub const RETURNSTATUS: u8 = 0x79;
    pub const COLMETADATA: u8 = 0x81;
    pub const ALTMETADATA: u8 = 0x88;
    pub const DATACLASSIFICATION: u8 = 0xA3;
    pub const TABNAME: u8 = 0xA4;
    pub const COLINFO: u8 = 0xA5;
    pub const ORDER: u8 = 0xA9;
    pub const ERROR: u8 = 0xAA;
    pub const INFO: u8 = 0xAB;
    pub const RETURNVALUE: u8 = 0xAC;
    pub const LOGINACK: u8 = 0xAD;
    pub const FEATUREEXTACK: u8 = 0xAE;
    pub const ROW: u8 = 0xD1;
    pub const NBCROW: u8 = 0xD2;
    pub const ALTROW: u8 = 0xD3;
    pub const ENVCHANGE: u8 = 0xE3;
    pub const SESSIONSTATE: u8 = 0xE4;
    pub const SSPI: u8 = 0xED;
    pub const FEDAUTHINFO: u8 = 0xEE;
    pub const DONE: u8 = 0xFD;
    pub const DONEPROC: u8 = 0xFE;
    pub const DONEINPROC: u8 = 0xFF;
}

/// DONE status bits (MS-TDS 2.2.7.6).
pub mod done_status {
    pub const MORE: u16 = 0x0001;
    pub const ERROR: u16 = 0x0002;
    pub const INXACT: u16 = 0x0004;
    pub const COUNT: u16 = 0x0010;
    pub const ATTN: u16 = 0x0020;
    pub const SRVERROR: u16 = 0x0100;
}

/// How a column's value is laid out in a ROW.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueLayout {
    /// A fixed number of bytes.
    Fixed(u8),
    /// One length byte, then that many bytes.
    ByteLen,
    /// Two length bytes (0xFFFF = NULL), then that many bytes.
    UShortLen,
    /// Four length bytes, then that many bytes (sql_variant).
    LongLen,
    /// Partially length-prefixed: 8-byte total, then chunks each with a 4-byte length, ending with 0.
    Plp,
    /// TEXT/NTEXT/IMAGE: text pointer length, pointer, 8-byte timestamp, 4-byte length, data.
    TextPtr,
}

/// A column's type as COLMETADATA describes it: enough to skip its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColumnType {
    pub type_id: u8,
    pub layout: ValueLayout,
}

/// LOGINACK (MS-TDS 2.2.7.14).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginAck {
    pub interface: u8,
    /// The TDS version the server agreed to (big-endian on the wire, unlike LOGIN7's).
    pub tds_version: TdsVersion,
    pub prog_name: String,
    pub major: u8,
    pub minor: u8,
    pub build: u16,
}

impl LoginAck {
    /// "16.0.1000": the SQL Server product version.
    pub fn server_version(&self) -> String {
        format!("{}.{}.{}", self.major, self.minor, self.build)
    }
}

/// ERROR or INFO (MS-TDS 2.2.7.10, 2.2.7.13).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerMessage {
    pub number: i32,
    pub state: u8,
    pub class: u8,
    pub message: String,
    pub server: String,
    pub procedure: String,
    pub line: u32,
}

/// ENVCHANGE (MS-TDS 2.2.7.9): the values users and rules need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvChange {
    Database {
        new: String,
        old: String,
    },
    Language {
        new: String,
        old: String,
    },
    CharacterSet {
        new: String,
    },
    PacketSize {
        new: u32,
        old: u32,
    },
    /// SQL collation: 5 bytes (LCID and flags, sort id).
    Collation {
        new: Vec<u8>,
    },
    BeginTransaction,
    CommitTransaction,
    RollbackTransaction,
    /// Database mirroring failover partner.
    MirroringPartner {
        new: String,
    },
    ResetConnectionAck,
    /// Read-only routing or Azure SQL redirection: reconnect there.
    Routing {
        protocol: u8,
        port: u16,
        server: String,
    },
    Other {
        env_type: u8,
    },
}

/// DONE, DONEPROC, DONEINPROC (MS-TDS 2.2.7.6–2.2.7.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Done {
    pub token: u8,
    pub status: u16,
    pub cur_cmd: u16,
    pub row_count: u64,
}

impl Done {
    pub fn has(&self, bit: u16) -> bool {
        self.status & bit != 0
    }
    /// The last DONE of a response: no MORE bit, and not a DONEINPROC.
    pub fn is_final(&self) -> bool {
        !self.has(done_status::MORE) && self.token != id::DONEINPROC
    }
}

/// One token. Tokens whose content no rule uses carry no data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token<'a> {
    LoginAck(LoginAck),
    Error(ServerMessage),
    Info(ServerMessage),
    EnvChange(EnvChange),
    Done(Done),
    /// A new result set with this many columns (0 when the server sent "no metadata").
    ColMetadata {
        columns: u16,
    },
    Row,
    ReturnStatus(i32),
    ReturnValue,
    FeatureExtAck {
        features: Vec<u8>,
    },
    /// The server's SSPI answer (NTLM CHALLENGE, SPNEGO, Kerberos AP-REP).
    Sspi(&'a [u8]),
    FedAuthInfo,
    SessionState,
    /// TABNAME, COLINFO, ORDER, OFFSET and tokens known only by their length class.
    Skipped {
        token: u8,
    },
}

/// What the token walker must remember between tokens of one connection.
#[derive(Clone, Debug)]
pub struct TokenContext {
    pub version: TdsVersion,
    /// The columns of the current result set, from the last COLMETADATA.
    pub columns: Vec<ColumnType>,
    /// The previous result set's column buffer, reused for the next COLMETADATA.
    scratch: Vec<ColumnType>,
}

impl TokenContext {
    pub fn new(version: TdsVersion) -> Self {
        TokenContext {
            version,
            columns: Vec::new(),
            scratch: Vec::new(),
        }
    }
}

/// More columns than SQL Server allows in a result set (4,096 in a wide table) are malformed.
const MAX_COLUMNS: usize = 4096;

type R<'a, T> = IResult<&'a [u8], T>;

fn incomplete<E>(_: E) -> ParseError {
    ParseError::Incomplete { needed: None }
}

/// Takes `n` bytes or reports how many more are needed.
fn take(input: &[u8], n: usize) -> Result<(&[u8], &[u8]), ParseError> {
    if input.len() < n {
        return Err(ParseError::Incomplete {
            needed: Some(n - input.len()),
        });
    }
    let (head, rest) = input.split_at(n);
    Ok((rest, head))
}

fn ucs2_string(bytes: &[u8]) -> String {
    super::decode_ucs2(bytes)
}

/// B_VARCHAR: one length byte (characters), UCS-2LE.
fn b_varchar(input: &[u8]) -> Result<(&[u8], String), ParseError> {
    let (rest, n) = byte::<_, nom::error::Error<&[u8]>>(input).map_err(incomplete)?;
    let (rest, s) = take(rest, usize::from(n) * 2)?;
    Ok((rest, ucs2_string(s)))
}

/// US_VARCHAR: two length bytes (characters), UCS-2LE.
fn us_varchar(input: &[u8]) -> Result<(&[u8], String), ParseError> {
    let (rest, n) = le_u16::<_, nom::error::Error<&[u8]>>(input).map_err(incomplete)?;
    let (rest, s) = take(rest, usize::from(n) * 2)?;
    Ok((rest, ucs2_string(s)))
}

/// Skips a B_VARCHAR (a name nothing uses) without decoding it.
fn skip_b_varchar(input: &[u8]) -> Result<&[u8], ParseError> {
    let (rest, n) = u8_at(input)?;
    Ok(take(rest, usize::from(n) * 2)?.0)
}

/// Skips a US_VARCHAR without decoding it.
fn skip_us_varchar(input: &[u8]) -> Result<&[u8], ParseError> {
    let (rest, n) = u16_at(input)?;
    Ok(take(rest, usize::from(n) * 2)?.0)
}

/// B_VARBYTE: one length byte, then bytes.
fn b_varbyte(input: &[u8]) -> Result<(&[u8], &[u8]), ParseError> {
    let (rest, n) = byte::<_, nom::error::Error<&[u8]>>(input).map_err(incomplete)?;
    take(rest, usize::from(n))
}

fn u8_at(input: &[u8]) -> Result<(&[u8], u8), ParseError> {
    byte::<_, nom::error::Error<&[u8]>>(input).map_err(incomplete)
}
fn u16_at(input: &[u8]) -> Result<(&[u8], u16), ParseError> {
    le_u16::<_, nom::error::Error<&[u8]>>(input).map_err(incomplete)
}
fn u32_at(input: &[u8]) -> Result<(&[u8], u32), ParseError> {
    le_u32::<_, nom::error::Error<&[u8]>>(input).map_err(incomplete)
}

/// A token body prefixed by a USHORT length.
fn ushort_body(input: &[u8]) -> Result<(&[u8], &[u8]), ParseError> {
    let (rest, len) = u16_at(input)?;
    take(rest, usize::from(len))
}

/// A token body prefixed by a DWORD length.
fn dword_body(input: &[u8]) -> Result<(&[u8], &[u8]), ParseError> {
    let (rest, len) = u32_at(input)?;
    take(rest, usize::try_from(len).unwrap_or(usize::MAX))
}

/// Fields of a length-bounded body that must all be there: running out is malformed, not
/// incomplete, because the token's length said the body was whole.
fn bounded<T>(r: Result<T, ParseError>, what: &'static str) -> Result<T, ParseError> {
    r.map_err(|e| match e {
        ParseError::Incomplete { .. } => ParseError::Malformed { what, at: 0 },
        other => other,
    })
}

fn login_ack(body: &[u8]) -> Result<LoginAck, ParseError> {
    let parsed: R<(u8, u32)> = (byte, be_u32).parse(body);
    let (rest, (interface, version)) = parsed.map_err(|_| ParseError::Malformed {
        what: "LOGINACK",
        at: 0,
    })?;
    let (rest, prog_name) = bounded(b_varchar(rest), "LOGINACK ProgName")?;
    // Servers pad the name with NULs ("Microsoft SQL Server\0\0").
    let prog_name = prog_name.trim_end_matches('\0').to_string();
    let parsed: R<(u8, u8, u8, u8)> = (byte, byte, byte, byte).parse(rest);
    let (_, (major, minor, hi, lo)) = parsed.map_err(|_| ParseError::Malformed {
        what: "LOGINACK ProgVersion",
        at: 0,
    })?;
    Ok(LoginAck {
        interface,
        tds_version: TdsVersion(version),
        prog_name,
        major,
        minor,
        build: u16::from_be_bytes([hi, lo]),
    })
}

fn server_message(body: &[u8], version: TdsVersion) -> Result<ServerMessage, ParseError> {
    let parsed: R<(i32, u8, u8)> = (le_i32, byte, byte).parse(body);
    let (rest, (number, state, class)) = parsed.map_err(|_| ParseError::Malformed {
        what: "ERROR/INFO",
        at: 0,
    })?;
    let (rest, message) = bounded(us_varchar(rest), "ERROR/INFO MsgText")?;
    let (rest, server) = bounded(b_varchar(rest), "ERROR/INFO ServerName")?;
    let (rest, procedure) = bounded(b_varchar(rest), "ERROR/INFO ProcName")?;
    // LineNumber is a LONG from TDS 7.2 on and a USHORT before; trust what the length left.
    let line = match rest {
        [a, b, c, d, ..] if version.at_least_7_2() || rest.len() >= 4 => {
            u32::from_le_bytes([*a, *b, *c, *d])
        }
        [a, b, ..] => u32::from(u16::from_le_bytes([*a, *b])),
        _ => 0,
    };
    Ok(ServerMessage {
        number,
        state,
        class,
        message,
        server,
        procedure,
        line,
    })
}

fn env_change(body: &[u8]) -> Result<EnvChange, ParseError> {
    let (rest, env_type) = bounded(u8_at(body), "ENVCHANGE type")?;
    let strings = |rest| -> Result<(String, String), ParseError> {
        let (rest, new) = bounded(b_varchar(rest), "ENVCHANGE new value")?;
        let (_, old) = bounded(b_varchar(rest), "ENVCHANGE old value")?;
        Ok((new, old))
    };
    Ok(match env_type {
        1 => {
            let (new, old) = strings(rest)?;
            EnvChange::Database { new, old }
        }
        2 => {
            let (new, old) = strings(rest)?;
            EnvChange::Language { new, old }
        }
        3 => EnvChange::CharacterSet {
            new: strings(rest)?.0,
        },
        4 => {
            let (new, old) = strings(rest)?;
            EnvChange::PacketSize {
                new: new.trim().parse().unwrap_or(0),
                old: old.trim().parse().unwrap_or(0),
            }
        }
        7 => {
            let (_, new) = bounded(b_varbyte(rest), "ENVCHANGE collation")?;
            EnvChange::Collation { new: new.to_vec() }
        }
        8 => EnvChange::BeginTransaction,
        9 => EnvChange::CommitTransaction,
        10 => EnvChange::RollbackTransaction,
        13 => EnvChange::MirroringPartner {
            new: strings(rest)?.0,
        },
        18 => EnvChange::ResetConnectionAck,
        20 => {
            let (rest, _value_len) = bounded(u16_at(rest), "ENVCHANGE routing length")?;
            let (rest, protocol) = bounded(u8_at(rest), "ENVCHANGE routing protocol")?;
            let (rest, port) = bounded(u16_at(rest), "ENVCHANGE routing port")?;
            let (_, server) = bounded(us_varchar(rest), "ENVCHANGE routing server")?;
            EnvChange::Routing {
                protocol,
                port,
                server,
            }
        }
        other => EnvChange::Other { env_type: other },
    })
}

fn done(token: u8, input: &[u8], version: TdsVersion) -> Result<(&[u8], Done), ParseError> {
    if version.at_least_7_2() {
        let parsed: R<(u16, u16, u64)> = (le_u16, le_u16, le_u64).parse(input);
        let (rest, (status, cur_cmd, row_count)) = parsed.map_err(incomplete)?;
        Ok((
            rest,
            Done {
                token,
                status,
                cur_cmd,
                row_count,
            },
        ))
    } else {
        let parsed: R<(u16, u16, u32)> = (le_u16, le_u16, le_u32).parse(input);
        let (rest, (status, cur_cmd, row_count)) = parsed.map_err(incomplete)?;
        Ok((
            rest,
            Done {
                token,
                status,
                cur_cmd,
                row_count: u64::from(row_count),
            },
        ))
    }
}

/// TYPE_INFO (MS-TDS 2.2.5.6): the type byte and its type-specific metadata. `table_name`
/// is true in COLMETADATA, where TEXT/NTEXT/IMAGE columns carry their table's name.
fn type_info(
    input: &[u8],
    version: TdsVersion,
    table_name: bool,
) -> Result<(&[u8], ColumnType), ParseError> {
    let (rest, type_id) = u8_at(input)?;
    let col = |layout| ColumnType { type_id, layout };
    let fixed = |n| Ok((rest, col(ValueLayout::Fixed(n))));
    match type_id {
        0x1F => fixed(0),
        0x30 | 0x32 => fixed(1),
        0x34 => fixed(2),
        0x38 | 0x3A | 0x3B | 0x7A => fixed(4),
        0x3C | 0x3D | 0x3E | 0x7F => fixed(8),
        // GUID, INTN, BITN, FLTN, MONEYN, DATETIMN and the legacy CHAR/VARCHAR/BINARY/VARBINARY.
        0x24 | 0x26 | 0x68 | 0x6D | 0x6E | 0x6F | 0x2F | 0x27 | 0x2D | 0x25 => {
            let (rest, _max) = u8_at(rest)?;
            Ok((rest, col(ValueLayout::ByteLen)))
        }
        // DECIMAL, NUMERIC and their N forms: length, precision, scale.
        0x37 | 0x3F | 0x6A | 0x6C => {
            let (rest, _) = take(rest, 3)?;
            Ok((rest, col(ValueLayout::ByteLen)))
        }
        // DATEN has no metadata.
        0x28 => Ok((rest, col(ValueLayout::ByteLen))),
        // TIMEN, DATETIME2N, DATETIMEOFFSETN: scale.
        0x29..=0x2B => {
            let (rest, _scale) = u8_at(rest)?;
            Ok((rest, col(ValueLayout::ByteLen)))
        }
        // BIGVARBINARY, BIGBINARY: max length; 0xFFFF = varbinary(max), sent as PLP.
        0xA5 | 0xAD => {
            let (rest, max) = u16_at(rest)?;
            let layout = if max == 0xFFFF {
                ValueLayout::Plp
            } else {
                ValueLayout::UShortLen
            };
            Ok((rest, col(layout)))
        }
        // BIGVARCHAR, BIGCHAR, NVARCHAR, NCHAR: max length and a 5-byte collation.
        0xA7 | 0xAF | 0xE7 | 0xEF => {
            let (rest, max) = u16_at(rest)?;
            let (rest, _collation) = take(rest, 5)?;
            let layout = if max == 0xFFFF {
                ValueLayout::Plp
            } else {
                ValueLayout::UShortLen
            };
            Ok((rest, col(layout)))
        }
        // TEXT, NTEXT (with collation), IMAGE: max length, then the table name in COLMETADATA.
        0x23 | 0x63 | 0x22 => {
            let (mut rest, _max) = u32_at(rest)?;
            if type_id != 0x22 {
                rest = take(rest, 5)?.0;
            }
            if table_name {
                if version.at_least_7_2() {
                    let (r, parts) = u8_at(rest)?;
                    rest = r;
                    for _ in 0..parts {
                        rest = skip_us_varchar(rest)?;
                    }
                } else {
                    rest = skip_us_varchar(rest)?;
                }
            }
            Ok((rest, col(ValueLayout::TextPtr)))
        }
        // SQL_VARIANT: max length; values are LONGLEN.
        0x62 => {
            let (rest, _max) = u32_at(rest)?;
            Ok((rest, col(ValueLayout::LongLen)))
        }
        // XML: schema present?, then database, owning schema, schema collection.
        0xF1 => {
            let (mut rest, present) = u8_at(rest)?;
            if present != 0 {
                rest = skip_b_varchar(rest)?;
                rest = skip_b_varchar(rest)?;
                rest = skip_us_varchar(rest)?;
            }
            Ok((rest, col(ValueLayout::Plp)))
        }
        // UDT: max length, database, schema, type name, assembly-qualified name.
        0xF0 => {
            let (rest, max) = u16_at(rest)?;
            let rest = skip_b_varchar(rest)?;
            let rest = skip_b_varchar(rest)?;
            let rest = skip_b_varchar(rest)?;
            let rest = skip_us_varchar(rest)?;
            let layout = if max == 0xFFFF {
                ValueLayout::Plp
            } else {
                ValueLayout::UShortLen
            };
            Ok((rest, col(layout)))
        }
        // JSON (SQL Server 2025): PLP.
        0xF4 => Ok((rest, col(ValueLayout::Plp))),
        _ => Err(ParseError::Unsupported {
            what: "column data type",
            at: 0,
        }),
    }
}

fn col_metadata<'a>(
    input: &'a [u8],
    ctx: &mut TokenContext,
) -> Result<(&'a [u8], u16), ParseError> {
    let (mut rest, count) = u16_at(input)?;
    // Built in a reused buffer and swapped in only when the token is whole: an Incomplete
    // answer must leave the current result set's columns as they were.
    let mut columns = std::mem::take(&mut ctx.scratch);
    columns.clear();
    if count != 0xFFFF {
        if usize::from(count) > MAX_COLUMNS {
            return Err(ParseError::TooLarge {
                what: "COLMETADATA columns",
                len: usize::from(count),
                max: MAX_COLUMNS,
            });
        }
        for _ in 0..count {
            let user_type_len = if ctx.version.at_least_7_2() { 4 } else { 2 };
            let (r, _user_type) = take(rest, user_type_len)?;
            let (r, flags) = u16_at(r)?;
            // fEncrypted (Always Encrypted) adds CryptoMetaData we do not walk.
            if flags & 0x0800 != 0 {
                return Err(ParseError::Unsupported {
                    what: "encrypted column metadata",
                    at: input.len() - r.len(),
                });
            }
            let (r, col) = type_info(r, ctx.version, true)?;
            let r = skip_b_varchar(r)?;
            columns.push(col);
            rest = r;
        }
    }
    ctx.scratch = std::mem::replace(&mut ctx.columns, columns);
    Ok((rest, if count == 0xFFFF { 0 } else { count }))
}

/// Skips one column value of `layout`.
fn skip_value(input: &[u8], layout: ValueLayout) -> Result<&[u8], ParseError> {
    super::rows::value_end(input, 0, layout)
        .and_then(|end| input.get(end..))
        .ok_or(ParseError::Incomplete { needed: None })
}

fn row<'a>(input: &'a [u8], ctx: &TokenContext, null_bitmap: bool) -> Result<&'a [u8], ParseError> {
    super::rows::row_end(input, 0, &ctx.columns, null_bitmap)
        .and_then(|end| input.get(end..))
        .ok_or(ParseError::Incomplete { needed: None })
}

fn return_value<'a>(input: &'a [u8], ctx: &TokenContext) -> Result<&'a [u8], ParseError> {
    let (rest, _ordinal) = u16_at(input)?;
    let (rest, _name) = b_varchar(rest)?;
    let (rest, _status) = u8_at(rest)?;
    let user_type_len = if ctx.version.at_least_7_2() { 4 } else { 2 };
    let (rest, _user_type) = take(rest, user_type_len)?;
    let (rest, flags) = u16_at(rest)?;
    if flags & 0x0800 != 0 {
        return Err(ParseError::Unsupported {
            what: "encrypted return value",
            at: 0,
        });
    }
    let (rest, col) = type_info(rest, ctx.version, false)?;
    skip_value(rest, col.layout)
}

fn feature_ext_ack(input: &[u8]) -> Result<(&[u8], Vec<u8>), ParseError> {
    let mut rest = input;
    let mut features = Vec::new();
    loop {
        let (r, feature) = u8_at(rest)?;
        if feature == 0xFF {
            return Ok((r, features));
        }
        let (r, _data) = dword_body(r)?;
        features.push(feature);
        rest = r;
    }
}

/// Reads one token from the front of `input`. On success returns the bytes after it.
pub fn parse_token<'a>(
    input: &'a [u8],
    ctx: &mut TokenContext,
) -> Result<(&'a [u8], Token<'a>), ParseError> {
    let (rest, token) = u8_at(input)?;
    let at_body = |e: ParseError| match e {
        ParseError::Malformed { what, at } => ParseError::Malformed { what, at: at + 1 },
        other => other,
    };
    match token {
        id::LOGINACK => {
            let (rest, body) = ushort_body(rest)?;
            Ok((rest, Token::LoginAck(login_ack(body).map_err(at_body)?)))
        }
        id::ERROR | id::INFO => {
            let (rest, body) = ushort_body(rest)?;
            let msg = server_message(body, ctx.version).map_err(at_body)?;
            Ok((
                rest,
                if token == id::ERROR {
                    Token::Error(msg)
                } else {
                    Token::Info(msg)
                },
            ))
        }
        id::ENVCHANGE => {
            let (rest, body) = ushort_body(rest)?;
            Ok((rest, Token::EnvChange(env_change(body).map_err(at_body)?)))
        }
        id::DONE | id::DONEPROC | id::DONEINPROC => {
            let (rest, d) = done(token, rest, ctx.version)?;
            Ok((rest, Token::Done(d)))
        }
        id::COLMETADATA => {
            let (rest, columns) = col_metadata(rest, ctx)?;
            Ok((rest, Token::ColMetadata { columns }))
        }
        id::ROW => Ok((row(rest, ctx, false)?, Token::Row)),
        id::NBCROW => Ok((row(rest, ctx, true)?, Token::Row)),
        id::RETURNSTATUS => {
            let parsed: R<i32> = le_i32(rest);
            let (rest, v) = parsed.map_err(incomplete)?;
            Ok((rest, Token::ReturnStatus(v)))
        }
        id::RETURNVALUE => Ok((return_value(rest, ctx)?, Token::ReturnValue)),
        id::FEATUREEXTACK => {
            let (rest, features) = feature_ext_ack(rest)?;
            Ok((rest, Token::FeatureExtAck { features }))
        }
        id::SSPI => {
            let (rest, body) = ushort_body(rest)?;
            Ok((rest, Token::Sspi(body)))
        }
        id::FEDAUTHINFO => Ok((dword_body(rest)?.0, Token::FedAuthInfo)),
        id::SESSIONSTATE => Ok((dword_body(rest)?.0, Token::SessionState)),
        id::TABNAME | id::COLINFO | id::ORDER => {
            Ok((ushort_body(rest)?.0, Token::Skipped { token }))
        }
        id::ALTMETADATA | id::ALTROW | id::DATACLASSIFICATION => Err(ParseError::Unsupported {
            what: "COMPUTE BY or data classification token",
            at: 0,
        }),
        // Unknown tokens, sized by their class bits (MS-TDS 2.2.4.2.1).
        other => match other & 0x30 {
            0x10 => Ok((rest, Token::Skipped { token })),
            0x20 => Ok((ushort_body(rest)?.0, Token::Skipped { token })),
            0x30 => {
                let n = 1usize << ((other >> 2) & 0x03);
                Ok((take(rest, n)?.0, Token::Skipped { token }))
            }
            _ => Err(ParseError::Malformed {
                what: "unknown TDS token",
                at: 0,
            }),
        },
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The login response of frame 7 of tds7-login-loginack_arkime_tds7.pcap, after its
    /// 8-byte TDS header (SQL Server 2000, TDS 7.1).
    fn login_response() -> Vec<u8> {
        hex(concat!(
            "e31b0001066d0061007300740065007200066d0061007300740065007200ab6a",
            "0045160000020025004300680061006e00670065006400200064006100740061",
            "006200610073006500200063006f006e007400650078007400200074006f0020",
            "0027006d006100730074006500720027002e000a4a0042002d004d0053004100",
            "44002d0030003100000000e3080007050904d0000000e31700020a750073005f",
            "0065006e0067006c0069007300680000ab6e0047160000010027004300680061",
            "006e0067006500640020006c0061006e00670075006100670065002000730065",
            "007400740069006e006700200074006f002000750073005f0065006e0067006c",
            "006900730068002e000a4a0042002d004d005300410044002d00300031000000",
            "00ad36000171000001164d006900630072006f0073006f006600740020005300",
            "51004c00200053006500720076006500720000000000080007f7e31300040434",
            "00300039003600043400300039003600fd0000000000000000"
        ))
    }

    fn walk<'a>(mut input: &'a [u8], ctx: &mut TokenContext) -> Vec<Token<'a>> {
        let mut out = Vec::new();
        while !input.is_empty() {
            let (rest, t) = parse_token(input, ctx).unwrap();
            out.push(t);
            input = rest;
        }
        out
    }

    #[test]
    fn login_response_tokens_match_tshark() {
        let body = login_response();
        let mut ctx = TokenContext::new(TdsVersion::V7_1);
        let tokens = walk(&body, &mut ctx);
        assert_eq!(tokens.len(), 8, "{tokens:#?}");
        assert_eq!(
            tokens[0],
            Token::EnvChange(EnvChange::Database {
                new: "master".into(),
                old: "master".into()
            })
        );
        let Token::Info(info) = &tokens[1] else {
            panic!("{:?}", tokens[1])
        };
        assert_eq!((info.number, info.state, info.class), (5701, 2, 0));
        assert_eq!(info.message, "Changed database context to 'master'.");
        assert_eq!(info.server, "JB-MSAD-01");
        assert!(
            matches!(&tokens[2], Token::EnvChange(EnvChange::Collation { new }) if new.len() == 5)
        );
        assert!(
            matches!(&tokens[3], Token::EnvChange(EnvChange::Language { new, .. }) if new == "us_english")
        );
        let Token::Info(info) = &tokens[4] else {
            panic!()
        };
        assert_eq!(info.number, 5703);
        let Token::LoginAck(ack) = &tokens[5] else {
            panic!()
        };
        assert_eq!(ack.tds_version, TdsVersion::V7_1_REV1);
        assert_eq!(ack.prog_name, "Microsoft SQL Server");
        assert_eq!(ack.server_version(), "8.0.2039");
        assert_eq!(
            tokens[6],
            Token::EnvChange(EnvChange::PacketSize {
                new: 4096,
                old: 4096
            })
        );
        let Token::Done(done) = tokens[7] else {
            panic!()
        };
        assert!(done.is_final());
        assert!(!done.has(done_status::ERROR));
    }

    #[test]
    fn result_set_is_walked_to_its_done() {
        // Frame 9 of the same capture: one NVARCHAR(128) column "name", one row "iso_1".
        let body = hex(concat!(
            "810100000001 00e7000109 04d0000004 6e0061006d006500",
            "d10a00690073006f005f003100",
            "fd1000c10001000000"
        )
        .replace(' ', "")
        .as_str());
        let mut ctx = TokenContext::new(TdsVersion::V7_1);
        let tokens = walk(&body, &mut ctx);
        assert_eq!(tokens[0], Token::ColMetadata { columns: 1 });
        assert_eq!(tokens[1], Token::Row);
        let Token::Done(done) = tokens[2] else {
            panic!()
        };
        assert!(done.has(done_status::COUNT));
        assert_eq!(done.row_count, 1);
    }

    #[test]
    fn every_truncation_is_incomplete_never_a_panic() {
        let body = login_response();
        let mut ctx = TokenContext::new(TdsVersion::V7_1);
        // Cutting inside any token must answer Incomplete for that token.
        let mut starts = vec![0usize];
        let mut input = &body[..];
        while !input.is_empty() {
            let (rest, _) = parse_token(input, &mut ctx).unwrap();
            starts.push(body.len() - rest.len());
            input = rest;
        }
        for w in starts.windows(2) {
            for cut in w[0] + 1..w[1] {
                let r = parse_token(&body[w[0]..cut], &mut ctx);
                assert!(
                    matches!(r, Err(ParseError::Incomplete { .. })),
                    "token at {} cut at {cut}: {r:?}",
                    w[0]
                );
            }
        }
    }

    #[test]
    fn error_token_after_rows_and_done_with_attention() {
        let mut msg = Vec::new();
        // COLMETADATA: one INT4 column "n" (TDS 7.4: 4-byte user type).
        msg.extend_from_slice(&[0x81, 1, 0, 0, 0, 0, 0, 0x01, 0x00, 0x38, 1, b'n', 0]);
        // Two rows.
        for v in [1u32, 2] {
            msg.push(id::ROW);
            msg.extend_from_slice(&v.to_le_bytes());
        }
        // ERROR 8134 "Divide by zero error encountered." state 1 class 16, line 1.
        let text: Vec<u8> = "Divide by zero error encountered."
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut body = Vec::new();
        body.extend_from_slice(&8134i32.to_le_bytes());
        body.extend_from_slice(&[1, 16]);
        body.extend_from_slice(&(text.len() as u16 / 2).to_le_bytes());
        body.extend_from_slice(&text);
        body.extend_from_slice(&[0, 0]); // no server, no procedure
        body.extend_from_slice(&1u32.to_le_bytes());
        msg.push(id::ERROR);
        msg.extend_from_slice(&(body.len() as u16).to_le_bytes());
        msg.extend_from_slice(&body);
        // DONE with ERROR | ATTN.
        msg.push(id::DONE);
        msg.extend_from_slice(&(done_status::ERROR | done_status::ATTN).to_le_bytes());
        msg.extend_from_slice(&[0xC1, 0]);
        msg.extend_from_slice(&0u64.to_le_bytes());

        let mut ctx = TokenContext::new(TdsVersion::V7_4);
        let tokens = walk(&msg, &mut ctx);
        assert_eq!(tokens.len(), 5);
        let Token::Error(e) = &tokens[3] else {
            panic!("{tokens:?}")
        };
        assert_eq!((e.number, e.state, e.class, e.line), (8134, 1, 16, 1));
        assert_eq!(e.message, "Divide by zero error encountered.");
        let Token::Done(d) = tokens[4] else { panic!() };
        assert!(d.has(done_status::ATTN) && d.has(done_status::ERROR));
    }

    #[test]
    fn plp_and_nbcrow_values_are_skipped() {
        let mut ctx = TokenContext::new(TdsVersion::V7_4);
        // Two columns: nvarchar(max) and int (INTN, 4).
        let mut msg = vec![0x81, 2, 0];
        msg.extend_from_slice(&[
            0, 0, 0, 0, 0x01, 0x00, 0xE7, 0xFF, 0xFF, 0x09, 0x04, 0xD0, 0x00, 0x34, 1, b'a', 0,
        ]);
        msg.extend_from_slice(&[0, 0, 0, 0, 0x01, 0x00, 0x26, 4, 1, b'b', 0]);
        // ROW: PLP with two chunks, then INTN 4 bytes.
        msg.push(id::ROW);
        msg.extend_from_slice(&6u64.to_le_bytes());
        msg.extend_from_slice(&[
            2, 0, 0, 0, b'h', 0, 4, 0, 0, 0, b'i', 0, b'!', 0, 0, 0, 0, 0,
        ]);
        msg.extend_from_slice(&[4, 7, 0, 0, 0]);
        // NBCROW: first column NULL (bit 0), second present.
        msg.extend_from_slice(&[id::NBCROW, 0b01, 4, 9, 0, 0, 0]);
        msg.extend_from_slice(&[id::DONE, 0x10, 0, 0xC1, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
        let tokens = walk(&msg, &mut ctx);
        assert_eq!(tokens.len(), 4, "{tokens:?}");
        assert_eq!(tokens[1], Token::Row);
        assert_eq!(tokens[2], Token::Row);
        assert!(matches!(tokens[3], Token::Done(d) if d.row_count == 2));
    }

    #[test]
    fn routing_envchange() {
        let server: Vec<u8> = "replica2"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut value = vec![0u8]; // protocol TCP
        value.extend_from_slice(&1433u16.to_le_bytes());
        value.extend_from_slice(&8u16.to_le_bytes());
        value.extend_from_slice(&server);
        let mut body = vec![20u8];
        body.extend_from_slice(&(value.len() as u16).to_le_bytes());
        body.extend_from_slice(&value);
        body.extend_from_slice(&[0, 0]);
        let mut msg = vec![id::ENVCHANGE];
        msg.extend_from_slice(&(body.len() as u16).to_le_bytes());
        msg.extend_from_slice(&body);
        let mut ctx = TokenContext::new(TdsVersion::V7_4);
        let (_, t) = parse_token(&msg, &mut ctx).unwrap();
        assert_eq!(
            t,
            Token::EnvChange(EnvChange::Routing {
                protocol: 0,
                port: 1433,
                server: "replica2".into()
            })
        );
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut ctx = TokenContext::new(TdsVersion::V7_4);
            let mut input = &data[..];
            for _ in 0..300 {
                match parse_token(input, &mut ctx) {
                    Ok((rest, _)) if rest.len() < input.len() => input = rest,
                    _ => break,
                }
            }
        }

        #[test]
        fn consumed_never_exceeds_input(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut ctx = TokenContext::new(TdsVersion::V7_1);
            if let Ok((rest, _)) = parse_token(&data, &mut ctx) {
                proptest::prop_assert!(rest.len() < data.len());
            }
        }
    }
}
