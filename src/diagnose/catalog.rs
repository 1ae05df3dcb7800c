//! The catalogue: every finding code, its severity and the next steps a DBA can take.
//! Codes are permanent (`../shared/spec/findings.md`): never rename or reuse one.

use crate::report::model::Severity;

/// Finding codes produced so far. Each variant's string is part of the JSON contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    TcpRefused,
    TcpNoAnswer,
    TcpUnreachable,
    TcpSynRetry,
    TcpRetransmissions,
    TcpZeroWindow,
    CaptureOneDirection,
    CaptureDuplicates,
    CapturePacketLoss,
    CaptureTruncatedFrames,
    CaptureMidStream,
    CaptureMalformed,
    PreloginEncryptionMismatch,
    LoginOk,
    LoginCleartext,
    LoginFailed,
    LoginSspiFailed,
    LoginTimeout,
    LoginSlow,
    LoginRedirected,
    RequestAttention,
    RequestError,
    RequestAbandoned,
    ResetByServer,
    ResetByClient,
    ResetByMiddlebox,
    IdleKilled,
    TcpServerClosed,
    TcpKeepaliveUnanswered,
    TcpRetransmissionStorm,
    PatternMassReset,
    PatternListenBacklog,
    PatternNoPooling,
    PatternPortExhaustion,
    PatternChatty,
    TlsHandshakeFailed,
    TlsLegacyVersion,
    TlsCertificateProblem,
    DnsError,
    DnsNoResponse,
    DnsSlow,
    SsrpNoResponse,
    SsrpPortUnreachable,
    SsrpSlow,
    SsrpOversizedRequest,
    SsrpPortMismatch,
    /// An addition to the contract: the KDC refused a Kerberos request.
    KerberosError,
    /// An addition to the contract: one client probed many ports or hosts without sending data.
    PatternPortScan,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::TcpRefused => "tcp.refused",
            Code::TcpNoAnswer => "tcp.no_answer",
            Code::TcpUnreachable => "tcp.unreachable",
            Code::TcpSynRetry => "tcp.syn_retry",
            Code::TcpRetransmissions => "tcp.retransmissions",
            Code::TcpZeroWindow => "tcp.zero_window",
            Code::CaptureOneDirection => "capture.one_direction",
            Code::CaptureDuplicates => "capture.duplicates",
            Code::CapturePacketLoss => "capture.packet_loss",
            Code::CaptureTruncatedFrames => "capture.truncated_frames",
            Code::CaptureMidStream => "capture.mid_stream",
            Code::CaptureMalformed => "capture.malformed",
            Code::PreloginEncryptionMismatch => "prelogin.encryption_mismatch",
            Code::LoginOk => "login.ok",
            Code::LoginCleartext => "login.cleartext",
            Code::LoginFailed => "login.failed",
            Code::LoginSspiFailed => "login.sspi_failed",
            Code::LoginTimeout => "login.timeout",
            Code::LoginSlow => "login.slow",
            Code::LoginRedirected => "login.redirected",
            Code::RequestAttention => "request.attention",
            Code::RequestError => "request.error",
            Code::RequestAbandoned => "request.abandoned",
            Code::ResetByServer => "reset.by_server",
            Code::ResetByClient => "reset.by_client",
            Code::ResetByMiddlebox => "reset.by_middlebox",
            Code::IdleKilled => "idle.killed",
            Code::TcpServerClosed => "tcp.server_closed",
            Code::TcpKeepaliveUnanswered => "tcp.keepalive_unanswered",
            Code::TcpRetransmissionStorm => "tcp.retransmission_storm",
            Code::PatternMassReset => "pattern.mass_reset",
            Code::PatternListenBacklog => "pattern.listen_backlog",
            Code::PatternNoPooling => "pattern.no_pooling",
            Code::PatternPortExhaustion => "pattern.port_exhaustion",
            Code::PatternChatty => "pattern.chatty",
            Code::TlsHandshakeFailed => "tls.handshake_failed",
            Code::TlsLegacyVersion => "tls.legacy_version",
            Code::TlsCertificateProblem => "tls.certificate_problem",
            Code::DnsError => "dns.error",
            Code::DnsNoResponse => "dns.no_response",
            Code::DnsSlow => "dns.slow",
            Code::SsrpNoResponse => "ssrp.no_response",
            Code::SsrpPortUnreachable => "ssrp.port_unreachable",
            Code::SsrpSlow => "ssrp.slow",
            Code::SsrpOversizedRequest => "ssrp.oversized_request",
            Code::SsrpPortMismatch => "ssrp.port_mismatch",
            Code::KerberosError => "kerberos.error",
            Code::PatternPortScan => "pattern.port_scan",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            Code::TcpRefused
            | Code::TcpNoAnswer
            | Code::TcpUnreachable
            | Code::PreloginEncryptionMismatch
            | Code::LoginFailed
            | Code::LoginSspiFailed
            | Code::LoginTimeout
            | Code::RequestAbandoned
            | Code::ResetByServer
            | Code::ResetByMiddlebox
            | Code::IdleKilled
            | Code::TcpKeepaliveUnanswered
            | Code::TcpRetransmissionStorm
            | Code::PatternMassReset
            | Code::PatternListenBacklog
            | Code::TlsHandshakeFailed => Severity::Error,
            Code::TlsLegacyVersion | Code::TlsCertificateProblem => Severity::Warning,
            Code::PatternNoPooling | Code::PatternPortExhaustion | Code::PatternChatty => {
                Severity::Warning
            }
            Code::LoginCleartext
            | Code::LoginSlow
            | Code::RequestAttention
            | Code::RequestError
            | Code::ResetByClient => Severity::Warning,
            Code::LoginOk | Code::LoginRedirected | Code::TcpServerClosed => Severity::Info,
            Code::TcpSynRetry
            | Code::TcpRetransmissions
            | Code::TcpZeroWindow
            | Code::CaptureOneDirection
            | Code::CapturePacketLoss
            | Code::CaptureMalformed => Severity::Warning,
            Code::CaptureDuplicates | Code::CaptureTruncatedFrames | Code::CaptureMidStream => {
                Severity::Info
            }
            Code::DnsError
            | Code::SsrpNoResponse
            | Code::SsrpPortUnreachable
            | Code::SsrpPortMismatch => Severity::Error,
            Code::DnsNoResponse | Code::DnsSlow | Code::SsrpSlow | Code::SsrpOversizedRequest => {
                Severity::Warning
            }
            // A refused service ticket often ends in an NTLM fallback that logs in: at risk
            // (delegation, double hops), not necessarily broken; login.sspi_failed says when it
            // broke a login.
            Code::KerberosError => Severity::Warning,
            // A scan breaks nothing by itself; its own attempts are reported as errors on their
            // connections, and this finding says why there are so many.
            Code::PatternPortScan => Severity::Warning,
        }
    }

    /// General next steps; rules put fact-specific ones first.
    /// Sources: `../shared/knowledge/gne-causes.md` (sections B, D, E) and `tcp-timing.md`.
    pub fn next_steps(self) -> &'static [&'static str] {
        match self {
            Code::TcpRefused => &[
                "Check that the SQL Server service is running and listening on this address and port (ERRORLOG: \"Server is listening on ...\").",
                "Check that the TCP/IP protocol is enabled in SQL Server Configuration Manager and that the client uses the right port (alias, static or dynamic port).",
                "If the reset's TTL differs from the server's usual TTL, a firewall rejected the connection: check its rules for this port.",
            ],
            Code::TcpNoAnswer => &[
                "Check firewalls between client and server (network and host firewall) for this TCP port.",
                "Check that the server address is right and routed: Test-NetConnection -ComputerName <server> -Port <port> from the client.",
                "Capture on the server too: if the SYN arrives there but no SYN-ACK leaves, the server's host firewall or an overloaded listener is dropping it.",
            ],
            Code::TcpUnreachable => &[
                "Read the ICMP error's meaning: 'port unreachable' from the server itself means nothing listens there (service down, wrong port); 'host/network unreachable' or 'administratively prohibited' from a router or firewall means the path or a filter blocks it.",
                "The address that sent the error is in the evidence: a router's or firewall's address names the device to check.",
            ],
            Code::TcpSynRetry => &[
                "The first SYN went unanswered and a retry succeeded: look for packet loss on the path or a listener that is briefly overloaded (listen backlog).",
                "If many connections show this at once, look for a connection storm from clients that do not pool connections.",
            ],
            Code::TcpRetransmissions => &[
                "Retransmissions mean segments were lost between the capture point and the receiver: check NIC and switch error counters, VM host network buffers and VPN devices on the path.",
                "Capture at both ends: a segment retransmitted in one trace and missing from the other shows where it was lost.",
            ],
            Code::TcpZeroWindow => &[
                "The side advertising a zero window is not reading its data: on the client, an application that stops reading a result set; on the server, a busy or blocked session.",
            ],
            Code::CaptureOneDirection => &[
                "Only one direction was captured: capture where both directions pass (both ends, or a SPAN port that mirrors both), or check for asymmetric routing.",
                "If the visible side keeps retransmitting with no answer, the other direction is really lost: check devices on the return path.",
            ],
            Code::CaptureDuplicates => &[
                "Duplicates are a capture artefact (capturing on several interfaces or a SPAN/vSwitch copying packets twice); they are not network retransmissions.",
            ],
            Code::CapturePacketLoss => &[
                "The capture missed packets that the peer acknowledged: the capturing host or tap dropped them. Use a capture filter, a larger buffer (dumpcap -B) or a faster disk; do not read this as network loss.",
            ],
            Code::CaptureTruncatedFrames => &[
                "Frames were cut by the capture's snaplen: payload-based analysis of those frames is incomplete. Capture again with the full frame size (tcpdump -s 0, dumpcap default).",
            ],
            Code::CaptureMidStream => &[
                "The connection began before the capture: its login is not in the trace. Start the capture before the application connects to see the login.",
            ],
            Code::CaptureMalformed => &[
                "The input is damaged from this point on: the report covers only what was read before it. If the file was copied or cut, copy it again; if the capture tool crashed, capture again.",
            ],
            Code::PreloginEncryptionMismatch => &[
                "One side requires encryption and the other cannot do it: set the client's Encrypt option to match the server (Force Encryption in SQL Server Configuration Manager), or install a certificate on the server so it can encrypt.",
                "Old drivers (DB-Library, early ODBC/OLE DB) announce 'encryption not supported': upgrade the driver.",
            ],
            Code::LoginOk => &[],
            Code::LoginCleartext => &[
                "The LOGIN7 travelled without TLS: its password is only obfuscated and anyone on the path can read it. Enable encryption (Encrypt=True or Mandatory in the connection string; a server certificate).",
            ],
            Code::LoginFailed => &[
                "On the server, read the ERRORLOG entry for this failed login: it names the real state and reason.",
            ],
            Code::LoginSspiFailed => &[
                "Check the SPN: setspn -L <service account> must list MSSQLSvc/<fqdn>:<port> (and the instance name form), exactly once in the forest (setspn -X finds duplicates).",
                "Check clock skew between client, server and domain controllers (Kerberos tolerates 5 minutes).",
                "For double hops (a web server connecting on behalf of a user) check constrained delegation; 'NT AUTHORITY\\ANONYMOUS LOGON' in the ERRORLOG means the credentials were lost on the way.",
                "Check that the server can reach a domain controller and that the client's domain is trusted.",
            ],
            Code::LoginTimeout => &[
                "The client gave up before the server finished the login: raise the connect timeout only after finding the slow step.",
                "If the server was slow to answer: check server load (login dispatcher, worker threads), ERRORLOG, and for integrated logins the domain controller's response time.",
            ],
            Code::LoginSlow => &[
                "Look at the slowest step: a slow TCP handshake points at the network, a slow PRELOGIN or login response at the server (load, domain controller lookups for integrated logins), a slow TLS handshake at certificate checks (revocation lookups) on the client.",
            ],
            Code::LoginRedirected => &[
                "The server routed the client to another server (read-only routing of an availability group, or Azure SQL redirect): the client must be able to reach that server and port too (firewall rules for 11000-11999 on Azure).",
            ],
            Code::RequestAttention => &[
                "An attention is the client cancelling a request: when it comes a fixed time after the request (30 s for SqlClient's CommandTimeout), the command timed out. Find why the query was slow (blocking, plan, missing index) before raising the timeout.",
                "If the attention was never acknowledged (DONE with ATTN), the server was stuck or the connection broke: SqlClient closes the connection 5 s later.",
            ],
            Code::RequestError => &[
                "The server raised an error while running a request: look at its number and message; errors of class 20 and above end the connection.",
            ],
            Code::RequestAbandoned => &[
                "The client closed the connection while waiting for an answer: a client-side timeout or an application that gave up. Check the client's command timeout and why the server took so long.",
            ],
            Code::ResetByServer => &[
                "The SQL Server host reset the connection: check the ERRORLOG and the System event log at that time (a crash, a KILL, a fatal error of class 20+, the service stopping).",
                "If it happened during the login, look for an SSL/TLS or authentication failure in the ERRORLOG.",
            ],
            Code::ResetByClient => &[
                "The client reset the connection: an application that closed abruptly, a client-side timeout, or a pool discarding a connection. Check the application's logs at that time.",
            ],
            Code::ResetByMiddlebox => &[
                "A device between client and server (firewall, load balancer, IPS, NAT) forged the reset: its TTL differs from the real peer's. Identify the device from the hop count and check its logs and session timeouts.",
            ],
            Code::IdleKilled => &[
                "Keep connections alive below the device's idle timeout: SQL Server's client library sends TCP keep-alives every 30 s by default; Linux drivers rely on net.ipv4.tcp_keepalive_time (2 h by default) — lower it, or enable keep-alive in the driver.",
                "Or raise the idle timeout of the firewall or load balancer in the path (Azure Load Balancer: 4 min, AWS NLB: 350 s, many firewalls: 30-60 min).",
                "Connection pools: set a lifetime (Load Balance Timeout / Connection Lifetime) shorter than the idle timeout.",
            ],
            Code::TcpKeepaliveUnanswered => &[
                "Keep-alives went unanswered: a device in the path dropped the connection's state (firewall or NAT idle timeout) or the peer vanished. Capture on the other side too: if the probes never arrive there, a device in between dropped them.",
                "Find the device's idle timeout and keep connections busier than it (keep-alive interval below the timeout).",
            ],
            Code::TcpRetransmissionStorm => &[
                "One segment was sent again and again with no acknowledgement: the path to the peer stopped delivering (a device dropped the connection's state, a link or VPN went down, or the peer host hung). Capture at the peer too to see whether anything arrives.",
                "Check firewalls and load balancers for dropped sessions, and the network path for outages at that time.",
            ],
            Code::PatternMassReset => &[
                "Many connections dropped at once point at the server: check the ERRORLOG and the System event log at that time (service restart, memory pressure, a KILL of many sessions, 17830/17197 messages) and CPU and worker thread use.",
                "If the resets' TTL differs from the server's, a load balancer or firewall in front of it dropped them together (failover, rule reload): check its logs.",
            ],
            Code::PatternListenBacklog => &[
                "The server's listen queue overflowed: connections arrived faster than SQL Server accepted them. Find the connection storm (often a client without pooling) and check server CPU and worker threads; SQL Server 2019 and later accept logins on a dedicated pool.",
            ],
            Code::PatternNoPooling => &[
                "Enable connection pooling in the client (on by default in .NET SqlClient; make sure connections are closed or disposed so they return to the pool, and that the connection string is identical each time).",
                "Each new connection costs a TCP handshake, a login and often TLS: pooling removes them from every statement.",
            ],
            Code::PatternPortExhaustion => &[
                "On the client, count connections in TIME_WAIT (netstat -ano | find \"TIME_WAIT\", ss -tan state time-wait): near the ephemeral range means new connections will fail without a SYN on the wire.",
                "Fix the connection churn (pooling); widening the port range (netsh int ipv4 set dynamicport, net.ipv4.ip_local_port_range) or shortening TIME_WAIT only buys time.",
            ],
            Code::PatternChatty => &[
                "The application sends many small statements one after another: each costs a network round trip. Batch them (table-valued parameters, set-based statements, stored procedures) or run the application closer to the server.",
            ],
            Code::TlsHandshakeFailed => &[
                "If the client rejected the certificate: install a certificate from a CA the client trusts, whose name matches the server name in the connection string, on the SQL Server (SQL Server Configuration Manager, Protocols, Certificate), or set TrustServerCertificate=True only for testing.",
                "If no protocol version was common: the client and server must share TLS 1.2 (old SQL Server builds need TLS 1.2 updates; old clients need TLS 1.2 enabled; TLS 1.0/1.1 are disabled on current Windows).",
                "Read the server's ERRORLOG and the System event log (Schannel events 36871, 36874, 36888) at the time of the failure.",
            ],
            Code::TlsLegacyVersion => &[
                "Enable TLS 1.2 (or 1.3) on both sides: update SQL Server to a build with TLS 1.2 support and update the client driver; TLS 1.0 and 1.1 are being disabled everywhere and will break this connection.",
            ],
            Code::TlsCertificateProblem => &[
                "Install a certificate issued by a CA the clients trust, with the server's fully qualified name in its subject or subject alternative names, and select it for the instance in SQL Server Configuration Manager; restart the service.",
                "Until then, clients that validate certificates (Encrypt=True/Mandatory without TrustServerCertificate, ODBC 18 and Microsoft.Data.SqlClient 4+ by default) will refuse to connect.",
            ],
            Code::TcpServerClosed => &[
                "The server closed the connection first: normal after a KILL, a fatal error, or the server's own idle policies; check the ERRORLOG if the client did not expect it.",
            ],
            Code::DnsError => &[
                "The name does not resolve: check its A/AAAA record on the DNS server, the client's DNS suffix search list and its HOSTS file; for NXDOMAIN make sure the name in the connection string is spelt as registered.",
                "SERVFAIL or REFUSED point at the DNS server itself (forwarders, zone not loaded, recursion not allowed for this client).",
            ],
            Code::DnsNoResponse => &[
                "The DNS server never answered: check that it is reachable on UDP 53 from the client (firewall, wrong server in the client's configuration) and that the DNS service is running.",
                "Until it is fixed, a HOSTS entry or the server's IP address in the connection string avoids the lookup.",
            ],
            Code::DnsSlow => &[
                "Name resolution took over a second and delays every new connection: check the DNS server's load and forwarders, and the client's order of DNS servers (a dead first server costs a timeout each time).",
            ],
            Code::SsrpNoResponse => &[
                "The SQL Browser did not answer on UDP 1434: start the SQL Server Browser service on the server, and open UDP 1434 inbound on its firewall and any firewall in between.",
                "Or bypass the Browser: put the instance's TCP port in the connection string (host,port).",
                "If the Browser runs, check the instance name: a CLNT_UCAST_EX query (opcode 3) lists the instances the Browser knows.",
            ],
            Code::SsrpPortUnreachable => &[
                "The server host answered that nothing listens on UDP 1434: the SQL Server Browser service is stopped or disabled. Start it (and set it to start automatically), or put the instance's TCP port in the connection string (host,port).",
            ],
            Code::SsrpSlow => &[
                "The SQL Browser took over a second to answer: check the server's load and the Browser service; clients time out after a few seconds. Putting the port in the connection string (host,port) skips the lookup.",
            ],
            Code::SsrpOversizedRequest => &[
                "An SQL Browser request with an instance name longer than the protocol allows is a buggy client or an attack (the Slammer worm sent such datagrams): find the sending host, and check that the server has current SQL Server updates.",
            ],
            Code::SsrpPortMismatch => &[
                "The client connected to a TCP port other than the one the SQL Browser announced for the instance: look for a client alias (SQL Server Configuration Manager, cliconfg) or a port hard-coded in the connection string, and compare with \"Server is listening on\" in the instance's ERRORLOG.",
                "If the instance moved to a new dynamic port, give it a static port and update the clients.",
            ],
            Code::KerberosError => &[
                "For a SQL Server SPN (MSSQLSvc/host:port): setspn -Q MSSQLSvc/<fqdn>:<port> must find exactly one account, the one running the SQL Server service (setspn -S to add it; remove duplicates).",
                "Check the client's and domain controllers' clocks (Kerberos allows 5 minutes of skew by default) and the account's state (disabled, locked, password expired) in Active Directory.",
            ],
            Code::PatternPortScan => &[
                "Find out what runs on the probing host: a vulnerability scanner or inventory tool on a schedule is expected; anything else probing the network is a security incident.",
                "Its refused and unanswered attempts are reported on each connection (tcp.refused, tcp.no_answer) but are not an application failing to connect: judge the other connections on their own. The text report lists the scan's connections here instead of one by one.",
                "Every port that answered is reachable from that host: if SQL Server's ports (1433, the instance's port, UDP 1434) are among them and should not be, restrict them in the firewall.",
            ],
        }
    }
}
