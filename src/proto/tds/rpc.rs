//! The procedure an RPC request calls (MS-TDS 2.2.6.6): only its name or ProcID, never its
//! parameters (they may carry secrets, e.g. `sp_addlogin`'s password).
//!
//! ```text
//! RPCRequest = [ALL_HEADERS] NameLenProcID OptionFlags *ParameterData …
//! NameLenProcID = US_VARCHAR ProcName / (%xFF %xFF USHORT ProcID)
//! ```

use crate::proto::ParseError;

/// What an RPC request names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RpcProcedure {
    /// By name (US_VARCHAR: length in characters, UCS-2).
    Name(String),
    /// By well-known ProcID.
    ProcId(u16),
}

impl RpcProcedure {
    /// The name users know: the RPC's own name, or the special procedure a ProcID stands
    /// for (`sp_executesql` for 10), or `procid N` for an id MS-TDS does not list.
    pub fn display_name(&self) -> String {
        match self {
            RpcProcedure::Name(n) => n.clone(),
            RpcProcedure::ProcId(id) => proc_id_name(*id)
                .map(str::to_string)
                .unwrap_or_else(|| format!("procid {id}")),
        }
    }
}

/// MS-TDS 2.2.6.6: the ProcIDs of the special stored procedures.
pub fn proc_id_name(id: u16) -> Option<&'static str> {
    Some(match id {
        1 => "sp_cursor",
        2 => "sp_cursoropen",
        3 => "sp_cursorprepare",
        4 => "sp_cursorexecute",
        5 => "sp_cursorprepexec",
        6 => "sp_cursorunprepare",
        7 => "sp_cursorfetch",
        8 => "sp_cursoroption",
        9 => "sp_cursorclose",
        10 => "sp_executesql",
        11 => "sp_prepare",
        12 => "sp_execute",
        13 => "sp_prepexec",
        14 => "sp_prepexecrpc",
        15 => "sp_unprepare",
        _ => return None,
    })
}

/// Longest procedure name kept: SQL Server's identifiers are at most 128 characters, and a
/// four-part name is four of them with dots.
const MAX_NAME_CHARS: usize = 4 * 128 + 3;

/// Size of ALL_HEADERS when `data` starts with a well-formed one (MS-TDS 2.2.5.3: TotalLength,
/// then headers of HeaderLength (4) HeaderType (2) data, filling TotalLength exactly).
/// TDS 7.2 and later always send it; older versions never do, so its shape decides.
fn all_headers_len(data: &[u8]) -> Option<usize> {
    let le32 = |at: usize| -> Option<usize> {
        let b = data.get(at..at.checked_add(4)?)?;
        let v = u32::from_le_bytes([*b.first()?, *b.get(1)?, *b.get(2)?, *b.get(3)?]);
        usize::try_from(v).ok()
    };
    let total = le32(0)?;
    if total < 4 + 6 || total > data.len() {
        return None;
    }
    let mut at = 4usize;
    // Three header types exist; a few more would still be bounded by `total`.
    for _ in 0..16 {
        if at == total {
            return Some(total);
        }
        let len = le32(at)?;
        if len < 6 {
            return None;
        }
        at = at.checked_add(len)?;
        if at > total {
            return None;
        }
    }
    None
}

/// The procedure named at the start of an RPC request message (its first packet's data is
/// enough unless the name itself crosses a packet boundary).
pub fn parse_rpc_procedure(data: &[u8]) -> Result<RpcProcedure, ParseError> {
    let start = all_headers_len(data).unwrap_or(0);
    let incomplete = ParseError::Incomplete { needed: None };
    let body = data.get(start..).ok_or(incomplete.clone())?;
    let len = match body {
        [a, b, ..] => u16::from_le_bytes([*a, *b]),
        _ => return Err(incomplete),
    };
    if len == 0xFFFF {
        return match body.get(2..4) {
            Some([a, b]) => Ok(RpcProcedure::ProcId(u16::from_le_bytes([*a, *b]))),
            _ => Err(incomplete),
        };
    }
    let chars = usize::from(len);
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(ParseError::Malformed {
            what: "RPC procedure name length",
            at: start,
        });
    }
    let raw = body.get(2..2 + 2 * chars).ok_or(incomplete)?;
    let units = raw.chunks_exact(2).map(|c| {
        u16::from_le_bytes([
            c.first().copied().unwrap_or(0),
            c.get(1).copied().unwrap_or(0),
        ])
    });
    let name: String = char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    if name.chars().any(char::is_control) {
        return Err(ParseError::Malformed {
            what: "RPC procedure name with control characters",
            at: start + 2,
        });
    }
    Ok(RpcProcedure::Name(name))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// ALL_HEADERS with the transaction descriptor header (MS-TDS 2.2.5.3.2), as 7.2+ clients send.
    fn all_headers() -> Vec<u8> {
        let mut v = 22u32.to_le_bytes().to_vec();
        v.extend_from_slice(&18u32.to_le_bytes());
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&1u32.to_le_bytes());
        v
    }

    #[test]
    fn proc_id_after_all_headers() {
        let mut m = all_headers();
        m.extend_from_slice(&[0xFF, 0xFF, 10, 0, 0, 0]);
        let p = parse_rpc_procedure(&m).unwrap();
        assert_eq!(p, RpcProcedure::ProcId(10));
        assert_eq!(p.display_name(), "sp_executesql");
        assert_eq!(RpcProcedure::ProcId(99).display_name(), "procid 99");
    }

    #[test]
    fn name_with_and_without_all_headers() {
        let name: Vec<u8> = "dbo.get_rows"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut bare = 12u16.to_le_bytes().to_vec();
        bare.extend_from_slice(&name);
        bare.extend_from_slice(&[0, 0]);
        let mut with = all_headers();
        with.extend_from_slice(&bare);
        for m in [bare, with] {
            assert_eq!(
                parse_rpc_procedure(&m).unwrap(),
                RpcProcedure::Name("dbo.get_rows".into())
            );
        }
    }

    #[test]
    fn short_and_absurd_inputs_are_errors() {
        assert!(parse_rpc_procedure(&[]).is_err());
        assert!(parse_rpc_procedure(&[0xFF, 0xFF, 1]).is_err());
        assert!(parse_rpc_procedure(&[0xF0, 0xFF, b'a', 0]).is_err());
        assert!(parse_rpc_procedure(&[3, 0, b'a', 0]).is_err());
    }
}
