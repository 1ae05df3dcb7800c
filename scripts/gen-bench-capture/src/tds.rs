//! TDS message builders (MS-TDS v7.4): just enough of each message for a dissector to walk it
//! completely — PRELOGIN (2.2.6.5), LOGIN7 (2.2.6.4), the login response tokens, SQLBatch (2.2.6.7),
//! RPCRequest (2.2.6.6) and tabular results (2.2.6.8, tokens in 2.2.7).

use crate::rng::Rng;

pub const PKT_SQL_BATCH: u8 = 0x01;
pub const PKT_RPC: u8 = 0x03;
pub const PKT_TABULAR: u8 = 0x04;
pub const PKT_LOGIN7: u8 = 0x10;
pub const PKT_PRELOGIN: u8 = 0x12;

/// The negotiated packet size (ENVCHANGE type 4 confirms it), so result sets split every 4096 bytes.
pub const PACKET_SIZE: usize = 4096;
const HEADER_LEN: usize = 8;
/// TDS 7.4 as carried on the wire in LOGIN7 (little-endian) and LOGINACK (big-endian).
const TDS_VERSION_74: u32 = 0x7400_0004;

/// Collation Latin1_General_CI_AS (LCID 0x0409, sort id 0x34).
const COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];

fn put_u16_le(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn put_u32_le(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn put_utf16(v: &mut Vec<u8>, s: &str) {
    for u in s.encode_utf16() {
        v.extend_from_slice(&u.to_le_bytes());
    }
}
fn utf16_units(s: &str) -> usize {
    s.encode_utf16().count()
}
/// B_VARCHAR: one length byte in characters, then UTF-16LE.
fn b_varchar(v: &mut Vec<u8>, s: &str) {
    v.push(utf16_units(s) as u8);
    put_utf16(v, s);
}
/// US_VARCHAR: a two-byte length in characters, then UTF-16LE.
fn us_varchar(v: &mut Vec<u8>, s: &str) {
    put_u16_le(v, utf16_units(s) as u16);
    put_utf16(v, s);
}

/// Splits a message into TDS packets of at most `PACKET_SIZE` bytes (2.2.3.1): status EOM (0x01)
/// only on the last, packet id counting from 1 and wrapping at 255.
pub fn packetize(out: &mut Vec<u8>, packet_type: u8, payload: &[u8], spid: u16) {
    let max_data = PACKET_SIZE - HEADER_LEN;
    let count = payload.len().div_ceil(max_data).max(1);
    for i in 0..count {
        let chunk = payload
            .get(i * max_data..((i + 1) * max_data).min(payload.len()))
            .unwrap_or(&[]);
        let status = if i + 1 == count { 0x01 } else { 0x00 };
        out.push(packet_type);
        out.push(status);
        out.extend_from_slice(&((HEADER_LEN + chunk.len()) as u16).to_be_bytes());
        out.extend_from_slice(&spid.to_be_bytes());
        out.push((i + 1) as u8);
        out.push(0);
        out.extend_from_slice(chunk);
    }
}

/// PRELOGIN option table (2.2.6.5): 5-byte entries (token, big-endian offset and length) ended by
/// 0xFF, offsets counted from the start of the message.
fn prelogin_body(out: &mut Vec<u8>, options: &[(u8, Vec<u8>)]) {
    let table_len = options.len() * 5 + 1;
    let mut offset = table_len;
    for (token, data) in options {
        out.push(*token);
        out.extend_from_slice(&(offset as u16).to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        offset += data.len();
    }
    out.push(0xFF);
    for (_, data) in options {
        out.extend_from_slice(data);
    }
}

/// Client PRELOGIN: VERSION, ENCRYPTION = ENCRYPT_NOT_SUP (so LOGIN7 travels in clear and the
/// benchmark exercises the login parser), INSTOPT, THREADID, MARS, TRACEID.
pub fn prelogin_request(out: &mut Vec<u8>, rng: &mut Rng) {
    let mut thread = vec![0u8; 4];
    rng.fill(&mut thread);
    let mut trace = vec![0u8; 36];
    rng.fill(&mut trace);
    prelogin_body(
        out,
        &[
            (0x00, vec![0x11, 0x00, 0x00, 0x00, 0x00, 0x00]),
            (0x01, vec![0x02]),
            (0x02, vec![0x00]),
            (0x03, thread),
            (0x04, vec![0x00]),
            (0x05, trace),
        ],
    );
}

/// Server PRELOGIN response (sent as packet type 0x04, 2.2.6.5): SQL Server 16.0.4100, no encryption.
pub fn prelogin_response(out: &mut Vec<u8>) {
    prelogin_body(
        out,
        &[
            (0x00, vec![0x10, 0x00, 0x10, 0x04, 0x00, 0x00]),
            (0x01, vec![0x02]),
            (0x02, vec![0x00]),
            (0x03, vec![]),
            (0x04, vec![0x00]),
        ],
    );
}

pub struct LoginNames<'a> {
    pub host: &'a str,
    pub user: &'a str,
    pub app: &'a str,
    pub server: &'a str,
    pub database: &'a str,
}

/// The fixed, fake password every LOGIN7 carries (obfuscated as 2.2.6.4 prescribes).
pub const FAKE_PASSWORD: &str = "NotARealPassw0rd!";

/// LOGIN7 (2.2.6.4): 94-byte fixed part, then the variable strings its offset/length pairs point at.
pub fn login7(out: &mut Vec<u8>, names: &LoginNames<'_>, rng: &mut Rng) {
    const FIXED: usize = 94;
    let start = out.len();
    out.resize(start + FIXED, 0);
    let mut fixed = [0u8; FIXED];
    let mut var: Vec<u8> = Vec::with_capacity(200);
    let put_str =
        |slot: usize, s: &str, obfuscate: bool, fixed: &mut [u8; FIXED], var: &mut Vec<u8>| {
            let offset = (FIXED + var.len()) as u16;
            let from = var.len();
            put_utf16(var, s);
            if obfuscate {
                for b in &mut var[from..] {
                    *b = b.rotate_left(4) ^ 0xA5;
                }
            }
            fixed[slot..slot + 2].copy_from_slice(&offset.to_le_bytes());
            fixed[slot + 2..slot + 4].copy_from_slice(&(utf16_units(s) as u16).to_le_bytes());
        };
    put_str(36, names.host, false, &mut fixed, &mut var);
    put_str(40, names.user, false, &mut fixed, &mut var);
    put_str(44, FAKE_PASSWORD, true, &mut fixed, &mut var);
    put_str(48, names.app, false, &mut fixed, &mut var);
    put_str(52, names.server, false, &mut fixed, &mut var);
    put_str(56, "", false, &mut fixed, &mut var); // ibUnused / cbUnused
    put_str(60, "ODBC", false, &mut fixed, &mut var);
    put_str(64, "", false, &mut fixed, &mut var); // language: server default
    put_str(68, names.database, false, &mut fixed, &mut var);
    // ClientID (72..78): a MAC address.
    rng.fill(&mut fixed[72..78]);
    // SSPI (78), AtchDBFile (82), ChangePassword (86): empty, pointing at the end.
    let end = ((FIXED + var.len()) as u16).to_le_bytes();
    for slot in [78usize, 82, 86] {
        fixed[slot..slot + 2].copy_from_slice(&end);
    }
    let total = (FIXED + var.len()) as u32;
    fixed[0..4].copy_from_slice(&total.to_le_bytes());
    fixed[4..8].copy_from_slice(&TDS_VERSION_74.to_le_bytes());
    fixed[8..12].copy_from_slice(&(PACKET_SIZE as u32).to_le_bytes());
    fixed[12..16].copy_from_slice(&0x0600_0000u32.to_le_bytes()); // client program version
    fixed[16..20].copy_from_slice(&(rng.range(1000, 60000) as u32).to_le_bytes()); // client PID
                                                                                   // ConnectionID (20..24) stays 0.
    fixed[24] = 0xE0; // USE_DB_ON, INIT_DB_FATAL, SET_LANG_ON
    fixed[25] = 0x03; // INIT_LANG_FATAL, ODBC_ON
    fixed[26] = 0x00; // TypeFlags: SQL_DFLT
    fixed[27] = 0x00;
    fixed[28..32].copy_from_slice(&(-60i32 as u32).to_le_bytes()); // ClientTimeZone (minutes)
    fixed[32..36].copy_from_slice(&0x0409u32.to_le_bytes()); // ClientLCID
    out[start..start + FIXED].copy_from_slice(&fixed);
    out.extend_from_slice(&var);
}

/// ENVCHANGE (2.2.7.9) with B_VARCHAR new and old values.
fn envchange_str(out: &mut Vec<u8>, kind: u8, new: &str, old: &str) {
    out.push(0xE3);
    let len = 1 + 1 + 2 * utf16_units(new) + 1 + 2 * utf16_units(old);
    put_u16_le(out, len as u16);
    out.push(kind);
    b_varchar(out, new);
    b_varchar(out, old);
}

/// INFO (0xAB) or ERROR (0xAA) token (2.2.7.10 / 2.2.7.13), TDS 7.2+ layout with a 4-byte line number.
pub fn info_or_error(
    out: &mut Vec<u8>,
    token: u8,
    number: u32,
    state: u8,
    class: u8,
    msg: &str,
    server: &str,
) {
    out.push(token);
    let len = 4 + 1 + 1 + 2 + 2 * utf16_units(msg) + 1 + 2 * utf16_units(server) + 1 + 4;
    put_u16_le(out, len as u16);
    put_u32_le(out, number);
    out.push(state);
    out.push(class);
    us_varchar(out, msg);
    b_varchar(out, server);
    b_varchar(out, ""); // procedure name
    put_u32_le(out, 1);
}

/// DONE / DONEPROC / DONEINPROC (2.2.7.6-8): status, current command, 8-byte row count.
pub fn done(out: &mut Vec<u8>, token: u8, status: u16, cur_cmd: u16, rows: u64) {
    out.push(token);
    put_u16_le(out, status);
    put_u16_le(out, cur_cmd);
    out.extend_from_slice(&rows.to_le_bytes());
}

pub const DONE: u8 = 0xFD;
pub const DONEPROC: u8 = 0xFE;
pub const DONEINPROC: u8 = 0xFF;
pub const DONE_MORE: u16 = 0x0001;
pub const DONE_ERROR: u16 = 0x0002;
pub const DONE_COUNT: u16 = 0x0010;

/// The login response a SQL Server 2022 sends: database and language changes with their INFO
/// messages, collation, LOGINACK (2.2.7.14), packet size, DONE.
pub fn login_response(out: &mut Vec<u8>, server: &str, database: &str) {
    envchange_str(out, 1, database, "master");
    let msg = format!("Changed database context to '{database}'.");
    info_or_error(out, 0xAB, 5701, 2, 0, &msg, server);
    // Collation: B_VARBYTE new value, empty old value.
    out.push(0xE3);
    put_u16_le(out, (1 + 1 + COLLATION.len() + 1) as u16);
    out.push(7);
    out.push(COLLATION.len() as u8);
    out.extend_from_slice(&COLLATION);
    out.push(0);
    envchange_str(out, 2, "us_english", "");
    info_or_error(
        out,
        0xAB,
        5703,
        1,
        0,
        "Changed language setting to us_english.",
        server,
    );
    // LOGINACK
    let prog = "Microsoft SQL Server";
    out.push(0xAD);
    put_u16_le(out, (1 + 4 + 1 + 2 * utf16_units(prog) + 4) as u16);
    out.push(1); // interface: SQL_TSQL
    out.extend_from_slice(&TDS_VERSION_74.to_be_bytes());
    b_varchar(out, prog);
    out.extend_from_slice(&[16, 0, 0x10, 0x04]);
    envchange_str(out, 4, "4096", "4096");
    done(out, DONE, 0, 0, 0);
}

/// ALL_HEADERS (2.2.5.3) with one transaction descriptor header, required for SQLBatch and RPC in 7.2+.
fn all_headers(out: &mut Vec<u8>) {
    put_u32_le(out, 22);
    put_u32_le(out, 18);
    put_u16_le(out, 2);
    out.extend_from_slice(&[0u8; 8]);
    put_u32_le(out, 1);
}

pub fn sql_batch(out: &mut Vec<u8>, text: &str) {
    all_headers(out);
    put_utf16(out, text);
}

/// RPCRequest calling sp_executesql by its well-known id (10) with the statement, the parameter
/// declaration and one INT parameter.
pub fn rpc_executesql(out: &mut Vec<u8>, stmt: &str, param: i32) {
    all_headers(out);
    put_u16_le(out, 0xFFFF);
    put_u16_le(out, 10);
    put_u16_le(out, 0); // option flags
    for (text, max) in [(stmt, 8000u16), ("@id int", 16)] {
        out.push(0); // unnamed parameter
        out.push(0); // status flags
        out.push(0xE7); // NVARCHARTYPE
        put_u16_le(out, max.max(2 * utf16_units(text) as u16));
        out.extend_from_slice(&COLLATION);
        put_u16_le(out, (2 * utf16_units(text)) as u16);
        put_utf16(out, text);
    }
    b_varchar(out, "@id");
    out.push(0);
    out.push(0x26); // INTNTYPE
    out.push(4);
    out.push(4);
    out.extend_from_slice(&param.to_le_bytes());
}

/// COLMETADATA (2.2.7.4) for the four columns every generated result set has.
fn colmetadata(out: &mut Vec<u8>) {
    out.push(0x81);
    put_u16_le(out, 4);
    // OrderId INT NULL
    put_u32_le(out, 0);
    put_u16_le(out, 0x0001);
    out.extend_from_slice(&[0x26, 4]);
    b_varchar(out, "OrderId");
    // CustomerName NVARCHAR(100) NULL
    put_u32_le(out, 0);
    put_u16_le(out, 0x0009);
    out.push(0xE7);
    put_u16_le(out, 200);
    out.extend_from_slice(&COLLATION);
    b_varchar(out, "CustomerName");
    // Quantity BIGINT NULL
    put_u32_le(out, 0);
    put_u16_le(out, 0x0001);
    out.extend_from_slice(&[0x26, 8]);
    b_varchar(out, "Quantity");
    // Total FLOAT NULL
    put_u32_le(out, 0);
    put_u16_le(out, 0x0001);
    out.extend_from_slice(&[0x6D, 8]);
    b_varchar(out, "Total");
}

const CUSTOMERS: [&str; 8] = [
    "Contoso Ltd",
    "Fabrikam Inc",
    "Northwind Traders",
    "Adventure Works Cycles",
    "Tailspin Toys",
    "Wide World Importers",
    "Litware, Inc.",
    "Proseware Distribution and Logistics Group",
];

/// COLMETADATA, `rows` ROW tokens (2.2.7.19), then the closing DONE-family token.
pub fn result_set(out: &mut Vec<u8>, rng: &mut Rng, rows: u64, done_token: u8, done_status: u16) {
    colmetadata(out);
    let base = rng.range(1, 9_000_000) as i32;
    for i in 0..rows {
        out.push(0xD1);
        out.push(4);
        out.extend_from_slice(&(base.wrapping_add(i as i32)).to_le_bytes());
        let name = rng.pick(&CUSTOMERS);
        put_u16_le(out, (2 * utf16_units(name)) as u16);
        put_utf16(out, name);
        out.push(8);
        out.extend_from_slice(&(rng.range(1, 500) as i64).to_le_bytes());
        out.push(8);
        out.extend_from_slice(&((rng.range(100, 10_000_000) as f64) / 100.0).to_le_bytes());
    }
    done(out, done_token, done_status | DONE_COUNT, 0x00C1, rows);
}

/// Bytes of one generated ROW on average, used to size result sets.
pub const AVG_ROW_BYTES: u64 = 75;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packetize_splits_at_4096_with_eom_last() {
        let payload = vec![0xAB; 10_000];
        let mut out = Vec::new();
        packetize(&mut out, PKT_TABULAR, &payload, 55);
        assert_eq!(out.len(), 10_000 + 3 * 8);
        assert_eq!(&out[0..8], &[0x04, 0x00, 0x10, 0x00, 0x00, 55, 1, 0]);
        assert_eq!(&out[4096..4104], &[0x04, 0x00, 0x10, 0x00, 0x00, 55, 2, 0]);
        let last = 8192;
        assert_eq!(out[last + 1], 0x01);
        assert_eq!(
            u16::from_be_bytes([out[last + 2], out[last + 3]]) as usize,
            out.len() - last
        );
    }

    #[test]
    fn login7_is_realistic_and_consistent() {
        let mut rng = Rng::new(3);
        let mut out = Vec::new();
        login7(
            &mut out,
            &LoginNames {
                host: "APPSRV-042",
                user: "svc_orders",
                app: "OrdersService",
                server: "10.0.0.10",
                database: "SalesDb",
            },
            &mut rng,
        );
        assert!(
            (200..=300).contains(&(out.len() + 8)),
            "LOGIN7 packet is {} bytes",
            out.len() + 8
        );
        assert_eq!(
            u32::from_le_bytes([out[0], out[1], out[2], out[3]]) as usize,
            out.len()
        );
        // Password de-obfuscates to the fixed fake string.
        let off = u16::from_le_bytes([out[44], out[45]]) as usize;
        let n = u16::from_le_bytes([out[46], out[47]]) as usize;
        let clear: Vec<u8> = out[off..off + 2 * n]
            .iter()
            .map(|b| (b ^ 0xA5).rotate_left(4))
            .collect();
        let units: Vec<u16> = clear
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(String::from_utf16(&units).unwrap(), FAKE_PASSWORD);
    }
}
