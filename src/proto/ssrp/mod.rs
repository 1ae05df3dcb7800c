//! SQL Server Resolution Protocol, the SQL Server Browser on UDP 1434 (MC-SQLR 2.2): one
//! message per datagram, its first byte says which.
//!
//! ```text
//! 0x02 CLNT_BCAST_EX                       list every instance on the network
//! 0x03 CLNT_UCAST_EX                       list every instance on one host
//! 0x04 CLNT_UCAST_INST  INSTANCENAME [0x00]  one instance, name ≤ 32 bytes
//! 0x0F CLNT_UCAST_DAC   0x01 INSTANCENAME [0x00]  the instance's DAC port
//! 0x05 SVR_RESP         RESP_SIZE (2, LE) RESP_DATA (MBCS text)
//! 0x05 SVR_RESP (DAC)   0x0006 (LE) 0x01 TCP_DAC_PORT (2, LE)
//! ```
//!
//! Requests are taken as they come: an instance name too long for the spec (the SQL Slammer
//! worm's 375 bytes of 0x01) is a request with `oversized` set, not an error, because that is
//! exactly what a diagnosis wants to see.

pub mod instances;

pub use instances::{emit_instances, parse_instances, BanyanVines, InstanceInfo, InstanceList};

use crate::proto::ParseError;

open_enum! {
    /// The first byte of an SSRP datagram (MC-SQLR 2.2.1–2.2.6).
    pub enum MessageId(u8) {
        ClntBcastEx = 0x02,
        ClntUcastEx = 0x03,
        ClntUcastInst = 0x04,
        SvrResp = 0x05,
        ClntUcastDac = 0x0F,
    }
}

/// Longest INSTANCENAME a CLNT_UCAST_INST may carry (MC-SQLR 2.2.3: "no greater than 32
/// bytes", excluding the terminator).
pub const MAX_INSTANCE_NAME: usize = 32;

/// The PROTOCOLVERSION of CLNT_UCAST_DAC and of its answer (MC-SQLR 2.2.4, 2.2.6).
pub const DAC_PROTOCOL_VERSION: u8 = 0x01;

/// The RESP_SIZE a DAC answer carries: the whole 6-byte message (MC-SQLR 2.2.6).
const DAC_RESP_SIZE: u16 = 6;

/// One SSRP datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SsrpMessage<'a> {
    /// CLNT_BCAST_EX (MC-SQLR 2.2.1). `extra` holds bytes after the id (the spec has none).
    BcastEx { extra: &'a [u8] },
    /// CLNT_UCAST_EX (MC-SQLR 2.2.2).
    UcastEx { extra: &'a [u8] },
    /// CLNT_UCAST_INST (MC-SQLR 2.2.3). `instance` excludes the NUL; bytes after a NUL are
    /// ignored.
    UcastInst {
        instance: &'a [u8],
        nul_terminated: bool,
        /// The name is longer than [`MAX_INSTANCE_NAME`]: a buggy client or an attack.
        oversized: bool,
    },
    /// CLNT_UCAST_DAC (MC-SQLR 2.2.4).
    UcastDac {
        version: u8,
        instance: &'a [u8],
        nul_terminated: bool,
        oversized: bool,
    },
    /// SVR_RESP (MC-SQLR 2.2.5) with the instance list parsed from its text.
    Response(SvrResp<'a>),
    /// SVR_RESP to a CLNT_UCAST_DAC (MC-SQLR 2.2.6).
    DacResponse { version: u8, port: u16 },
    /// A first byte that is no SSRP message: not SSRP, or a message we do not know.
    Other { id: u8, body: &'a [u8] },
}

/// SVR_RESP (MC-SQLR 2.2.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SvrResp<'a> {
    /// RESP_SIZE as sent.
    pub resp_size: u16,
    /// The RESP_DATA bytes present (fewer than `resp_size` when `truncated`).
    pub data: &'a [u8],
    /// The datagram ends before RESP_SIZE bytes (snaplen, or a lying server).
    pub truncated: bool,
    pub instances: Vec<InstanceInfo>,
    /// Offset in RESP_DATA where the text stops following the grammar.
    pub malformed_at: Option<usize>,
}

/// Splits an instance name off a request body: up to the first NUL, which is optional.
fn instance_name(body: &[u8]) -> (&[u8], bool, bool) {
    let (name, nul) = match body.iter().position(|&b| b == 0) {
        Some(n) => (body.get(..n).unwrap_or(body), true),
        None => (body, false),
    };
    (name, nul, name.len() > MAX_INSTANCE_NAME)
}

/// Parses one SSRP datagram (the UDP payload).
///
/// Errors only when the bytes cannot be the message their first byte names: an empty
/// datagram, a SVR_RESP shorter than its 3-byte header, a DAC request without its version.
pub fn parse_ssrp(datagram: &[u8]) -> Result<SsrpMessage<'_>, ParseError> {
    let (&id, body) = datagram
        .split_first()
        .ok_or(ParseError::Incomplete { needed: Some(1) })?;
    Ok(match MessageId::from(id) {
        MessageId::ClntBcastEx => SsrpMessage::BcastEx { extra: body },
        MessageId::ClntUcastEx => SsrpMessage::UcastEx { extra: body },
        MessageId::ClntUcastInst => {
            let (instance, nul_terminated, oversized) = instance_name(body);
            SsrpMessage::UcastInst {
                instance,
                nul_terminated,
                oversized,
            }
        }
        MessageId::ClntUcastDac => {
            let (&version, rest) = body
                .split_first()
                .ok_or(ParseError::Incomplete { needed: Some(2) })?;
            let (instance, nul_terminated, oversized) = instance_name(rest);
            SsrpMessage::UcastDac {
                version,
                instance,
                nul_terminated,
                oversized,
            }
        }
        MessageId::SvrResp => parse_svr_resp(datagram, body)?,
        MessageId::Unknown(id) => SsrpMessage::Other { id, body },
    })
}

fn parse_svr_resp<'a>(datagram: &'a [u8], body: &'a [u8]) -> Result<SsrpMessage<'a>, ParseError> {
    let (resp_size, data) = match body {
        [lo, hi, data @ ..] => (u16::from_le_bytes([*lo, *hi]), data),
        _ => return Err(ParseError::Incomplete { needed: Some(3) }),
    };
    // The DAC answer counts its whole 6 bytes in RESP_SIZE; an instance list of 3 bytes is
    // impossible, so a 6-byte datagram saying 6 is the DAC form.
    if resp_size == DAC_RESP_SIZE && datagram.len() == usize::from(DAC_RESP_SIZE) {
        if let [version, lo, hi] = data {
            return Ok(SsrpMessage::DacResponse {
                version: *version,
                port: u16::from_le_bytes([*lo, *hi]),
            });
        }
    }
    let want = usize::from(resp_size);
    let truncated = data.len() < want;
    let data = data.get(..want).unwrap_or(data);
    let list = parse_instances(data);
    Ok(SsrpMessage::Response(SvrResp {
        resp_size,
        data,
        truncated,
        instances: list.instances,
        malformed_at: list.malformed_at,
    }))
}

impl SsrpMessage<'_> {
    /// The datagram this message came from (or a canonical one): for test fixtures and the
    /// round-trip property. A `Response` is written from `data`, not from `instances`.
    pub fn emit(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            SsrpMessage::BcastEx { extra } => {
                out.push(0x02);
                out.extend_from_slice(extra);
            }
            SsrpMessage::UcastEx { extra } => {
                out.push(0x03);
                out.extend_from_slice(extra);
            }
            SsrpMessage::UcastInst {
                instance,
                nul_terminated,
                ..
            } => {
                out.push(0x04);
                out.extend_from_slice(instance);
                if *nul_terminated {
                    out.push(0);
                }
            }
            SsrpMessage::UcastDac {
                version,
                instance,
                nul_terminated,
                ..
            } => {
                out.extend_from_slice(&[0x0F, *version]);
                out.extend_from_slice(instance);
                if *nul_terminated {
                    out.push(0);
                }
            }
            SsrpMessage::Response(r) => {
                out.push(0x05);
                out.extend_from_slice(&r.resp_size.to_le_bytes());
                out.extend_from_slice(r.data);
            }
            SsrpMessage::DacResponse { version, port } => {
                out.push(0x05);
                out.extend_from_slice(&DAC_RESP_SIZE.to_le_bytes());
                out.push(*version);
                out.extend_from_slice(&port.to_le_bytes());
            }
            SsrpMessage::Other { id, body } => {
                out.push(*id);
                out.extend_from_slice(body);
            }
        }
        out
    }
}

/// A SVR_RESP datagram listing `instances` (MC-SQLR 2.2.5), for fixtures and responders.
pub fn emit_response(instances: &[InstanceInfo]) -> Vec<u8> {
    let mut data = Vec::new();
    emit_instances(instances, &mut data);
    let size = u16::try_from(data.len()).unwrap_or(u16::MAX);
    data.truncate(usize::from(size));
    let mut out = vec![0x05];
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&data);
    out
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    /// A CLNT_UCAST_EX answer's RESP_DATA in the MC-SQLR 2.2.5 grammar, after the shape of
    /// the spec's section 4 example (written from memory of it, not checked byte for byte):
    /// three instances on one host, the second with a named pipe only, the third with both
    /// (pipe first, as the ABNF orders them).
    const THREE_INSTANCES: &[u8] = b"ServerName;ILSUNG1;InstanceName;YUKONSTD;IsClustered;No;\
Version;9.00.1399.06;tcp;57137;;\
ServerName;ILSUNG1;InstanceName;YUKONDEV;IsClustered;No;Version;9.00.1399.06;\
np;\\\\ILSUNG1\\pipe\\MSSQL$YUKONDEV\\sql\\query;;\
ServerName;ILSUNG1;InstanceName;MSSQLSERVER;IsClustered;No;Version;9.00.1399.06;\
np;\\\\ILSUNG1\\pipe\\sql\\query;tcp;1433;;";

    /// Frame 4 of the lab's ssrp-answered-port-14330.pcap (a SVR_RESP from the lab helper's
    /// responder): 0x05, RESP_SIZE 0x007e, then the text.
    const LAB_RESPONSE: &[u8] = b"\x05\x7e\x00ServerName;LABSQL;InstanceName;LABINST;\
IsClustered;No;Version;16.0.1000.6;np;\\\\LABSQL\\pipe\\MSSQL$LABINST\\sql\\query;tcp;14330;;";

    /// ssrp-dac.pcap frames 3 and 4: CLNT_UCAST_DAC for LABINST and its answer.
    const DAC_REQUEST: [u8; 10] = [
        0x0f, /* CLNT_UCAST_DAC */
        0x01, /* protocol version */
        b'L', b'A', b'B', b'I', b'N', b'S', b'T', 0x00, /* instance, NUL */
    ];
    const DAC_RESPONSE: [u8; 6] = [
        0x05, /* SVR_RESP */
        0x06, 0x00, /* RESP_SIZE 6, LE: the whole message */
        0x01, /* version */
        0x9a, 0x05, /* DAC port 1434, LE */
    ];

    #[test]
    fn one_byte_requests() {
        assert_eq!(
            parse_ssrp(&[0x02]).unwrap(),
            SsrpMessage::BcastEx { extra: &[] }
        );
        assert_eq!(
            parse_ssrp(&[0x03]).unwrap(),
            SsrpMessage::UcastEx { extra: &[] }
        );
        assert_eq!(
            parse_ssrp(&[0x03, 0xaa]).unwrap(),
            SsrpMessage::UcastEx { extra: &[0xaa] }
        );
    }

    #[test]
    fn ucast_inst_with_and_without_nul() {
        assert_eq!(
            parse_ssrp(b"\x04MSSQLSERVER\x00").unwrap(),
            SsrpMessage::UcastInst {
                instance: b"MSSQLSERVER",
                nul_terminated: true,
                oversized: false
            }
        );
        assert_eq!(
            parse_ssrp(b"\x04SQLEXPRESS").unwrap(),
            SsrpMessage::UcastInst {
                instance: b"SQLEXPRESS",
                nul_terminated: false,
                oversized: false
            }
        );
    }

    #[test]
    fn oversized_instance_names_are_requests_not_errors() {
        // ssrp-oversized-request.pcap frame 3: 0x04, "LABINST_" and 32 'X', NUL: 40 bytes.
        let mut lab = b"\x04LABINST_".to_vec();
        lab.extend_from_slice(&[b'X'; 32]);
        lab.push(0);
        match parse_ssrp(&lab).unwrap() {
            SsrpMessage::UcastInst {
                instance,
                nul_terminated: true,
                oversized: true,
            } => assert_eq!(instance.len(), 40),
            other => panic!("{other:?}"),
        }
        // The Slammer pattern: 0x04 then 0x01 bytes and code, no NUL in the first 100.
        let mut slammer = vec![0x04];
        slammer.extend_from_slice(&[0x01; 99]);
        assert!(matches!(
            parse_ssrp(&slammer).unwrap(),
            SsrpMessage::UcastInst {
                nul_terminated: false,
                oversized: true,
                ..
            }
        ));
        // Exactly 32 bytes is still within the limit.
        let mut max = vec![0x04];
        max.extend_from_slice(&[b'A'; 32]);
        assert!(matches!(
            parse_ssrp(&max).unwrap(),
            SsrpMessage::UcastInst {
                oversized: false,
                ..
            }
        ));
    }

    #[test]
    fn dac_request_and_response() {
        assert_eq!(
            parse_ssrp(&DAC_REQUEST).unwrap(),
            SsrpMessage::UcastDac {
                version: 1,
                instance: b"LABINST",
                nul_terminated: true,
                oversized: false
            }
        );
        assert_eq!(
            parse_ssrp(&DAC_RESPONSE).unwrap(),
            SsrpMessage::DacResponse {
                version: 1,
                port: 1434
            }
        );
        assert_eq!(
            parse_ssrp(&[0x0f]),
            Err(ParseError::Incomplete { needed: Some(2) })
        );
    }

    #[test]
    fn lab_response_fields() {
        let SsrpMessage::Response(r) = parse_ssrp(LAB_RESPONSE).unwrap() else {
            panic!("not a response")
        };
        assert_eq!(r.resp_size, 126);
        assert_eq!(r.data.len(), 126);
        assert!(!r.truncated);
        assert_eq!(r.malformed_at, None);
        assert_eq!(
            r.instances,
            vec![InstanceInfo {
                server_name: "LABSQL".into(),
                instance_name: "LABINST".into(),
                is_clustered: false,
                version: "16.0.1000.6".into(),
                tcp_port: Some(14330),
                pipe: Some(r"\\LABSQL\pipe\MSSQL$LABINST\sql\query".into()),
                ..InstanceInfo::default()
            }]
        );
    }

    #[test]
    fn spec_example_lists_three_instances() {
        let list = parse_instances(THREE_INSTANCES);
        assert_eq!(list.malformed_at, None);
        let names: Vec<_> = list
            .instances
            .iter()
            .map(|i| i.instance_name.as_str())
            .collect();
        assert_eq!(names, ["YUKONSTD", "YUKONDEV", "MSSQLSERVER"]);
        let ports: Vec<_> = list.instances.iter().map(|i| i.tcp_port).collect();
        assert_eq!(ports, [Some(57137), None, Some(1433)]);
        assert_eq!(
            list.instances[1].pipe.as_deref(),
            Some(r"\\ILSUNG1\pipe\MSSQL$YUKONDEV\sql\query")
        );
        assert_eq!(list.instances[2].version, "9.00.1399.06");
    }

    #[test]
    fn every_protocol_token() {
        let text = b"ServerName;S;InstanceName;I;IsClustered;Yes;Version;15.0.2000.5;\
np;\\\\S\\pipe\\q;tcp;1;via;S,0:1433;rpc;S;spx;SVC;adsp;OBJ;bv;item;group;org;;";
        let list = parse_instances(text);
        assert_eq!(list.malformed_at, None);
        let i = &list.instances[0];
        assert!(i.is_clustered);
        assert_eq!(i.via.as_deref(), Some("S,0:1433"));
        assert_eq!(i.rpc.as_deref(), Some("S"));
        assert_eq!(i.spx.as_deref(), Some("SVC"));
        assert_eq!(i.adsp.as_deref(), Some("OBJ"));
        assert_eq!(
            i.bv,
            Some(BanyanVines {
                item: "item".into(),
                group: "group".into(),
                org: "org".into()
            })
        );
        let mut out = Vec::new();
        emit_instances(&list.instances, &mut out);
        assert_eq!(out, text);
    }

    #[test]
    fn grammar_errors_keep_earlier_instances() {
        let mut text = THREE_INSTANCES[..THREE_INSTANCES.len() - 10].to_vec();
        let list = parse_instances(&text);
        assert_eq!(
            list.instances.len(),
            2,
            "the cut third record is not an instance"
        );
        assert!(list.malformed_at.is_some());
        text = b"ServerName;A;InstanceName;B;IsClustered;Maybe;Version;1;;".to_vec();
        assert_eq!(parse_instances(&text).malformed_at, Some(28));
        text = b"ServerName;A;InstanceName;B;IsClustered;No;Version;1;tcp;99999;;".to_vec();
        assert_eq!(parse_instances(&text).malformed_at, Some(53));
        text = b"ServerName;A;InstanceName;B;IsClustered;No;Version;1;ftp;21;;".to_vec();
        assert_eq!(parse_instances(&text).malformed_at, Some(53));
        text = b"Hello;".to_vec();
        assert_eq!(parse_instances(&text).malformed_at, Some(0));
    }

    #[test]
    fn response_cut_short_is_flagged() {
        let cut = &LAB_RESPONSE[..60];
        let SsrpMessage::Response(r) = parse_ssrp(cut).unwrap() else {
            panic!()
        };
        assert!(r.truncated);
        assert!(r.instances.is_empty());
        assert!(r.malformed_at.is_some());
        assert_eq!(
            parse_ssrp(&[0x05, 0x01]),
            Err(ParseError::Incomplete { needed: Some(3) })
        );
    }

    #[test]
    fn every_truncation_never_panics() {
        for fixture in [LAB_RESPONSE, &DAC_REQUEST, &DAC_RESPONSE] {
            for n in 0..fixture.len() {
                let _ = parse_ssrp(&fixture[..n]);
            }
        }
        assert!(parse_ssrp(&[]).is_err());
    }

    #[test]
    fn unknown_first_byte_is_other() {
        assert_eq!(
            parse_ssrp(&[0x47, 0x45]).unwrap(),
            SsrpMessage::Other {
                id: 0x47,
                body: &[0x45]
            }
        );
    }

    #[test]
    fn emit_response_reparses() {
        let list = parse_instances(THREE_INSTANCES);
        let bytes = emit_response(&list.instances);
        assert_eq!(&bytes[3..], THREE_INSTANCES);
        let SsrpMessage::Response(r) = parse_ssrp(&bytes).unwrap() else {
            panic!()
        };
        assert_eq!(r.instances, list.instances);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn field() -> impl Strategy<Value = String> {
            "[A-Za-z0-9_.$\\\\ -]{1,20}"
        }

        prop_compose! {
            fn instance()(
                server_name in field(), instance_name in field(), is_clustered in any::<bool>(),
                version in "[0-9.]{1,16}", tcp_port in proptest::option::of(any::<u16>()),
                pipe in proptest::option::of(field()), via in proptest::option::of(field()),
                rpc in proptest::option::of(field()), spx in proptest::option::of(field()),
                adsp in proptest::option::of(field()),
                bv in proptest::option::of((field(), field(), field())),
            ) -> InstanceInfo {
                InstanceInfo {
                    server_name, instance_name, is_clustered, version, tcp_port, pipe, via, rpc,
                    spx, adsp,
                    bv: bv.map(|(item, group, org)| BanyanVines { item, group, org }),
                }
            }
        }

        proptest! {
            #[test]
            fn any_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
                if let Ok(SsrpMessage::Response(r)) = parse_ssrp(&data) {
                    prop_assert!(r.data.len() <= data.len());
                }
            }

            #[test]
            fn instance_lists_round_trip(list in proptest::collection::vec(instance(), 1..4)) {
                let bytes = emit_response(&list);
                let msg = parse_ssrp(&bytes).unwrap();
                prop_assert_eq!(msg.emit(), bytes.clone());
                let SsrpMessage::Response(r) = msg else { panic!() };
                prop_assert_eq!(r.malformed_at, None);
                prop_assert_eq!(r.instances, list);
            }

            #[test]
            fn requests_round_trip(
                kind in 0u8..5,
                name in proptest::collection::vec(1u8..=255, 0..60),
                nul in any::<bool>(),
                port in any::<u16>(),
            ) {
                let oversized = name.len() > MAX_INSTANCE_NAME;
                let msg = match kind {
                    0 => SsrpMessage::BcastEx { extra: &name },
                    1 => SsrpMessage::UcastEx { extra: &name },
                    2 => SsrpMessage::UcastInst { instance: &name, nul_terminated: nul, oversized },
                    3 => SsrpMessage::UcastDac {
                        version: 1, instance: &name, nul_terminated: nul, oversized,
                    },
                    _ => SsrpMessage::DacResponse { version: 1, port },
                };
                let bytes = msg.emit();
                prop_assert_eq!(parse_ssrp(&bytes).unwrap(), msg);
            }
        }
    }
}
