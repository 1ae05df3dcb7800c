//! The SVR_RESP text (MC-SQLR 2.2.5): `;`-separated key/value pairs, one record per instance,
//! each ending with an empty field (`;;`), records concatenated:
//!
//! ```text
//! ServerName;<srv>;InstanceName;<inst>;IsClustered;<Yes|No>;Version;<ver>;
//!     [np;<pipe>;] [tcp;<port>;] [via;<netbios>,<nic>:<port>[,…];] [rpc;<computer>;]
//!     [spx;<service>;] [adsp;<object>;] [bv;<item>;<group>;<org>;]  ;
//! ```
//!
//! The text is MBCS; values are decoded lossily as UTF-8, which is exact for the ASCII names
//! servers send.

/// One instance of an SVR_RESP (MC-SQLR 2.2.5).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceInfo {
    pub server_name: String,
    pub instance_name: String,
    pub is_clustered: bool,
    /// VERSION_STRING, digits and dots ("16.0.1000.6").
    pub version: String,
    /// `tcp;<port>`: the port the instance listens on.
    pub tcp_port: Option<u16>,
    /// `np;<pipe>`: the named pipe (`\\SRV\pipe\sql\query`).
    pub pipe: Option<String>,
    /// `via;<netbios>,<nic>:<port>[,…]`, kept as sent.
    pub via: Option<String>,
    /// `rpc;<computer>`: multiprotocol RPC.
    pub rpc: Option<String>,
    /// `spx;<service>`.
    pub spx: Option<String>,
    /// `adsp;<object>` (AppleTalk).
    pub adsp: Option<String>,
    /// `bv;<item>;<group>;<org>` (Banyan VINES).
    pub bv: Option<BanyanVines>,
}

/// The three Banyan VINES fields of `bv;…` (MC-SQLR 2.2.5 BV_INFO).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BanyanVines {
    pub item: String,
    pub group: String,
    pub org: String,
}

/// Instances parsed from RESP_DATA, and where the text stopped following the grammar.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceList {
    pub instances: Vec<InstanceInfo>,
    /// Offset in RESP_DATA of the first field that breaks the grammar (or of the unfinished
    /// record when the text ends inside one); `None` when the whole text parsed.
    pub malformed_at: Option<usize>,
}

/// A `;`-separated field and its offset in the text.
struct Fields<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    /// The next field, or `None` at the end of the text or when the last field has no `;`.
    fn next_field(&mut self) -> Option<(usize, &'a [u8])> {
        let rest = self.text.get(self.at..)?;
        let len = rest.iter().position(|&b| b == b';')?;
        let field = rest.get(..len)?;
        let start = self.at;
        self.at = start.saturating_add(len).saturating_add(1);
        Some((start, field))
    }

    fn done(&self) -> bool {
        self.at >= self.text.len()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Reads the value that must follow `key`; `Err(offset)` when it is missing.
fn keyed<'a>(f: &mut Fields<'a>, key: &str) -> Result<&'a [u8], usize> {
    let at = f.at;
    match f.next_field() {
        Some((_, k)) if k.eq_ignore_ascii_case(key.as_bytes()) => {}
        _ => return Err(at),
    }
    f.next_field().map(|(_, v)| v).ok_or(at)
}

fn one_instance(f: &mut Fields<'_>) -> Result<InstanceInfo, usize> {
    let mut info = InstanceInfo {
        server_name: text(keyed(f, "ServerName")?),
        instance_name: text(keyed(f, "InstanceName")?),
        ..InstanceInfo::default()
    };
    let clustered_at = f.at;
    let clustered = keyed(f, "IsClustered")?;
    info.is_clustered = if clustered.eq_ignore_ascii_case(b"Yes") {
        true
    } else if clustered.eq_ignore_ascii_case(b"No") {
        false
    } else {
        return Err(clustered_at);
    };
    info.version = text(keyed(f, "Version")?);
    loop {
        let (at, key) = f.next_field().ok_or(f.at)?;
        let mut value = || f.next_field().map(|(_, v)| text(v)).ok_or(at);
        match key.to_ascii_lowercase().as_slice() {
            b"" => return Ok(info),
            b"np" => info.pipe = Some(value()?),
            b"tcp" => info.tcp_port = Some(value()?.parse().map_err(|_| at)?),
            b"via" => info.via = Some(value()?),
            b"rpc" => info.rpc = Some(value()?),
            b"spx" => info.spx = Some(value()?),
            b"adsp" => info.adsp = Some(value()?),
            b"bv" => {
                info.bv = Some(BanyanVines {
                    item: value()?,
                    group: value()?,
                    org: value()?,
                })
            }
            _ => return Err(at),
        }
    }
}

/// Parses the instance records of RESP_DATA (MC-SQLR 2.2.5). Records before a grammar error
/// are kept; the count is bounded by the text's length (each record is at least 40 bytes).
pub fn parse_instances(resp_data: &[u8]) -> InstanceList {
    let mut f = Fields {
        text: resp_data,
        at: 0,
    };
    let mut list = InstanceList::default();
    while !f.done() {
        let start = f.at;
        match one_instance(&mut f) {
            Ok(info) => list.instances.push(info),
            Err(at) => {
                list.malformed_at = Some(at.max(start));
                break;
            }
        }
    }
    list
}

/// Writes the instance records as a server would (MC-SQLR 2.2.5 order).
pub fn emit_instances(instances: &[InstanceInfo], out: &mut Vec<u8>) {
    let mut put = |s: &str| {
        out.extend_from_slice(s.as_bytes());
        out.push(b';');
    };
    for i in instances {
        put("ServerName");
        put(&i.server_name);
        put("InstanceName");
        put(&i.instance_name);
        put("IsClustered");
        put(if i.is_clustered { "Yes" } else { "No" });
        put("Version");
        put(&i.version);
        if let Some(p) = &i.pipe {
            put("np");
            put(p);
        }
        if let Some(p) = i.tcp_port {
            put("tcp");
            put(&p.to_string());
        }
        for (key, v) in [
            ("via", &i.via),
            ("rpc", &i.rpc),
            ("spx", &i.spx),
            ("adsp", &i.adsp),
        ] {
            if let Some(v) = v {
                put(key);
                put(v);
            }
        }
        if let Some(bv) = &i.bv {
            put("bv");
            put(&bv.item);
            put(&bv.group);
            put(&bv.org);
        }
        put("");
    }
}
