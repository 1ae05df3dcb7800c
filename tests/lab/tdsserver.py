#!/usr/bin/env python3
"""A small SQL-Server-like TDS 7.x server for the tdsscope scenario lab.

It speaks just enough TDS for real third-party clients (FreeTDS tsql, python-tds, impacket,
tedious) to finish a login and run queries, and it misbehaves on command so that each failure in
shared/spec/findings.md can be captured with real client bytes.

Run it with a JSON "behaviour" (inline or a file):

    tdsserver.py --behaviour '{"port": 1433, "encryption": "off", "query": {"rows": 5}}'
    tdsserver.py --behaviour-file scenario.json

Every connection runs in its own thread with plain blocking sockets: scenarios use at most a few
connections, and blocking code keeps each misbehaviour (sleep here, RST there) easy to read.
Events go to stderr as JSON lines so the lab runner can keep a log of what the server did.

Section numbers refer to [MS-TDS] (learn.microsoft.com/openspecs, "Tabular Data Stream Protocol").
"""

import argparse
import json
import select
import socket
import ssl
import struct
import sys
import threading
import time

# Packet types [MS-TDS 2.2.3.1.1].
PKT_SQL_BATCH = 0x01
PKT_RPC = 0x03
PKT_REPLY = 0x04
PKT_ATTENTION = 0x06
PKT_TRANSACTION = 0x0E
PKT_LOGIN7 = 0x10
PKT_SSPI = 0x11
PKT_PRELOGIN = 0x12

STATUS_EOM = 0x01

# Session Multiplex Protocol [MC-SMP 2.2.1]: a 16-byte little-endian header (SMID 0x53, FLAGS, SID,
# LENGTH including the header, SEQNUM, WNDW) in front of every TDS packet once MARS is on.
SMP_SMID = 0x53
SMP_SYN, SMP_ACK, SMP_FIN, SMP_DATA = 0x01, 0x02, 0x04, 0x08
SMP_HEADER = struct.Struct("<BBHIII")
# DATA packets the peer may send beyond the last one received [MC-SMP 3.1.5.2.1]; FreeTDS uses 4 too.
SMP_WINDOW = 4

# PRELOGIN ENCRYPTION values [MS-TDS 2.2.6.5].
ENC_OFF, ENC_ON, ENC_NOT_SUP, ENC_REQ = 0x00, 0x01, 0x02, 0x03
ENC_BY_NAME = {"off": ENC_OFF, "on": ENC_ON, "not_sup": ENC_NOT_SUP, "req": ENC_REQ, "required": ENC_REQ}

# Tokens [MS-TDS 2.2.7].
TOK_COLMETADATA = 0x81
TOK_RETURNSTATUS = 0x79
TOK_ERROR = 0xAA
TOK_INFO = 0xAB
TOK_LOGINACK = 0xAD
TOK_ROW = 0xD1
TOK_ENVCHANGE = 0xE3
TOK_SSPI = 0xED
TOK_DONE = 0xFD
TOK_DONEPROC = 0xFE
TOK_DONEINPROC = 0xFF

# DONE status bits [MS-TDS 2.2.7.6].
DONE_FINAL, DONE_MORE, DONE_ERROR, DONE_COUNT, DONE_ATTN = 0x00, 0x01, 0x02, 0x10, 0x20

# TDS versions as LOGINACK carries them (big-endian on the wire) [MS-TDS 2.2.7.14].
KNOWN_TDS_VERSIONS = {0x74000004, 0x730B0003, 0x730A0003, 0x72090002, 0x71000001, 0x71000000}

# Latin1_General_CI_AS, the collation SQL Server installs by default; clients only need 5 bytes that
# decode to a code page they know.
COLLATION = bytes([0x09, 0x04, 0xD0, 0x00, 0x34])

DEFAULTS = {
    "host": "0.0.0.0",
    "port": 1433,
    "server_name": "LABSQL",
    # Byte the PRELOGIN response carries in ENCRYPTION: off | on | req | not_sup.
    "encryption": "off",
    "cert": None,
    "key": None,
    # Highest/lowest TLS version offered: "1.0" .. "1.3". SQL Server's TDS 7.x TLS is 1.2 in
    # practice, and TLS 1.3 would add post-handshake session tickets the TDS framing does not expect.
    "tls_max": "1.2",
    "tls_min": "1.2",
    # TDS 8.0 ("strict"): TLS on the raw TCP connection first (ALPN "tds/8.0"), then PRELOGIN,
    # LOGIN7 and the rest inside it; no TLS in PRELOGIN packets [MS-TDS 2.1, 3.3.5.1].
    "strict": False,
    "users": {"labuser": "Lab-Pw-7f3Kq9"},
    # Databases a login may ask for; null accepts any.
    "databases": None,
    # Errors sent instead of LOGINACK, regardless of credentials (each: number, state, class, message).
    "login_errors": None,
    # State used for 18456 on a wrong password / unknown user (real on-prem servers send 1; the lab
    # wants the informative states of the ERRORLOG on the wire).
    "wrong_password_state": 8,
    "unknown_user_state": 5,
    # Seconds to wait before each step: accept, prelogin (before the response), login (before the
    # login response), logged_in (after it), query (before answering).
    "delay": {},
    # Close with RST (SO_LINGER 0) at a step: accept, prelogin, login, logged_in, query, mid_query.
    "rst_at": None,
    # Send FIN first (shutdown write) at a step (same names).
    "fin_at": None,
    # After this many seconds without a request on a logged-in connection: RST / FIN.
    "idle_rst_s": None,
    "idle_fin_s": None,
    # {"at": "logged_in", "seconds": 6}: stop reading at that step so the receive window fills.
    "stop_reading": None,
    # SO_RCVBUF of the listening socket (inherited by accepted ones); small makes zero windows easy.
    "rcvbuf": None,
    "backlog": 16,
    # False: listen but never accept (a full backlog makes the kernel drop further SYNs).
    "accept": True,
    # {"server": "198.51.100.20", "port": 14330}: send a routing ENVCHANGE after LOGINACK.
    "routing": None,
    # Default answer to a SQL batch or RPC; query_rules override it when their "match" substring
    # occurs in the statement text.
    "query": {"rows": 3, "delay_s": 0, "error_after_rows": None, "rst_after_rows": None},
    "query_rules": [],
    # The server process exits after this many seconds whatever happens (the runner also uses timeout(1)).
    "max_seconds": 120,
    # Integrated logins whose SSPI field holds an NTLMSSP NEGOTIATE: null answers ERROR 18452 at once;
    # "challenge-then-fail" / "challenge-then-success" answer an NTLM CHALLENGE in an SSPI token, read
    # the client's AUTHENTICATE (packet type 0x11), then send 18452 / LOGINACK [MS-TDS 3.2.5.1, MS-NLMP 3.1.5].
    "ntlm": None,
    # MARS: answer the client's PRELOGIN MARS option with 1 (when it asked for it) and speak the
    # Session Multiplex Protocol the client then wraps every TDS packet in [MC-SMP, MS-TDS 2.2.6.5].
    "mars": False,
}

STEPS = ("accept", "prelogin", "login", "logged_in", "query", "mid_query")


def log(event, **fields):
    fields = {"t": round(time.time(), 6), "event": event, **fields}
    print(json.dumps(fields), file=sys.stderr, flush=True)


class Closed(Exception):
    """The peer closed the connection (or the scenario decided to stop talking)."""


# --- byte helpers -----------------------------------------------------------------------------


def ucs2(text):
    return text.encode("utf-16-le")


def b_varchar(text):
    """B_VARCHAR: character count (1 byte) + UCS-2LE [MS-TDS 2.2.5.1.3]."""
    return bytes([len(text)]) + ucs2(text)


def us_varchar(text):
    """US_VARCHAR: character count (2 bytes LE) + UCS-2LE."""
    return struct.pack("<H", len(text)) + ucs2(text)


def deobfuscate_password(raw):
    """LOGIN7 passwords are UCS-2LE with each byte nibble-swapped then XORed with 0xA5
    [MS-TDS 2.2.6.4]; undo it: XOR first, then swap the nibbles back."""
    out = bytearray()
    for b in raw:
        b ^= 0xA5
        out.append(((b << 4) & 0xF0) | (b >> 4))
    return bytes(out).decode("utf-16-le", "replace")


# --- transports: plain TCP, or TLS records over TCP via MemoryBIO --------------------------------


class PlainTransport:
    def __init__(self, sock):
        self.sock = sock

    def recv(self, n):
        return self.sock.recv(n)

    def sendall(self, data):
        self.sock.sendall(data)

    def pending(self):
        return False


class TlsTransport:
    """TLS records directly on TCP after the handshake (TDS packets inside application data)."""

    def __init__(self, sock, sslobj, inbio, outbio):
        self.sock, self.obj, self.inbio, self.outbio = sock, sslobj, inbio, outbio

    def recv(self, n):
        for _ in range(10000):
            try:
                return self.obj.read(n)
            except ssl.SSLWantReadError:
                data = self.sock.recv(65536)
                if not data:
                    return b""
                self.inbio.write(data)
            except ssl.SSLZeroReturnError:
                return b""
        raise Closed("tls read made no progress")

    def sendall(self, data):
        self.obj.write(data)
        out = self.outbio.read()
        if out:
            self.sock.sendall(out)

    def pending(self):
        return self.obj.pending() > 0 or self.inbio.pending > 0


# --- one connection ------------------------------------------------------------------------------


class Connection:
    def __init__(self, server, sock, peer):
        self.srv = server
        self.cfg = server.cfg
        self.sock = sock
        self.peer = peer
        self.transport = PlainTransport(sock)
        self.buf = b""
        self.packet_size = 4096
        self.tds_version = 0x74000004
        self.packet_id = 1
        self.encryption = "none"
        # SMP sessions by SID once the client started MARS; None before (plain TDS framing).
        self.smp = None
        self.smp_sid = 0
        self.smp_ready = []
        self.mars = False

    # framing

    def recv_exact(self, n):
        while len(self.buf) < n:
            chunk = self.transport.recv(65536)
            if not chunk:
                raise Closed("peer closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_packet(self):
        header = self.recv_exact(8)
        ptype, status, length = header[0], header[1], struct.unpack(">H", header[2:4])[0]
        if length < 8:
            raise Closed("bad TDS length %d" % length)
        return ptype, status, self.recv_exact(length - 8)

    def read_message(self):
        """Packets up to EOM make one message [MS-TDS 2.2.3.1.2]."""
        if self.mars and self.smp is None and self.peek_byte() == SMP_SMID:
            self.smp = {}
            log("smp_started", peer=self.peer)
        if self.smp is not None:
            return self.smp_read_message()
        ptype, status, payload = self.read_packet()
        parts = [payload]
        for _ in range(100000):
            if status & STATUS_EOM:
                break
            _, status, payload = self.read_packet()
            parts.append(payload)
        return ptype, b"".join(parts)

    def peek_byte(self):
        while not self.buf:
            chunk = self.transport.recv(65536)
            if not chunk:
                raise Closed("peer closed")
            self.buf += chunk
        return self.buf[0]

    # Session Multiplex Protocol [MC-SMP]

    def smp_send(self, flags, sid, data=b""):
        """DATA is queued and sent as the client's window allows; SYN/ACK/FIN go out at once."""
        s = self.smp[sid]
        if flags == SMP_DATA:
            s["outq"].append(data)
            self.smp_flush(sid)
            return
        self.smp_put(flags, sid, b"")

    def smp_put(self, flags, sid, data):
        s = self.smp[sid]
        # Every packet carries our receive window: the last DATA seen plus SMP_WINDOW [MC-SMP 3.1.5.2].
        s["recv_wnd"] = (s["recv_seq"] + SMP_WINDOW) & 0xFFFFFFFF
        head = SMP_HEADER.pack(SMP_SMID, flags, sid, 16 + len(data), s["send_seq"], s["recv_wnd"])
        self.transport.sendall(head + data)

    def smp_flush(self, sid):
        """Send queued DATA while its SEQNUM stays within the client's window (SEQNUM <= WNDW,
        serial arithmetic) [MC-SMP 3.1.5.2]; the rest waits for the client's next window."""
        s = self.smp.get(sid)
        while s and s["outq"]:
            nxt = (s["send_seq"] + 1) & 0xFFFFFFFF
            if (s["send_wnd"] - nxt) & 0x80000000:
                if not s["blocked"]:
                    log("smp_window_full", peer=self.peer, sid=sid, seq=nxt, wnd=s["send_wnd"],
                        queued=len(s["outq"]))
                s["blocked"] = True
                return
            s["blocked"] = False
            s["send_seq"] = nxt
            self.smp_put(SMP_DATA, sid, s["outq"].pop(0))

    def smp_read_message(self):
        """SMP packets until one session has a whole TDS message; that session answers it."""
        for _ in range(100000):
            if self.smp_ready:
                self.smp_sid, ptype, payload = self.smp_ready.pop(0)
                return ptype, payload
            smid, flags, sid, length, seq, wnd = SMP_HEADER.unpack(self.recv_exact(16))
            if smid != SMP_SMID or length < 16:
                raise Closed("not an SMP packet (0x%02x, length %d)" % (smid, length))
            data = self.recv_exact(length - 16)
            if flags == SMP_SYN:
                self.smp[sid] = {"send_seq": 0, "send_wnd": wnd, "recv_seq": 0, "recv_wnd": SMP_WINDOW,
                                 "packets": [], "outq": [], "blocked": False}
                log("smp_syn", peer=self.peer, sid=sid, wnd=wnd)
                continue
            s = self.smp.get(sid)
            if s is None:
                log("smp_unknown_session", peer=self.peer, sid=sid, flags=flags)
                raise Closed("SMP packet for a session never opened")
            s["send_wnd"] = wnd
            # A new window from the client may release DATA queued for this session.
            self.smp_flush(sid)
            if flags == SMP_ACK:
                log("smp_ack", peer=self.peer, sid=sid, wnd=wnd)
            elif flags == SMP_FIN:
                # The session ends; the server answers with its own FIN [MC-SMP 3.1.5.3].
                log("smp_fin", peer=self.peer, sid=sid)
                self.smp_send(SMP_FIN, sid)
                del self.smp[sid]
            elif flags == SMP_DATA:
                s["recv_seq"] = seq
                if len(data) < 8:
                    raise Closed("SMP DATA without a TDS packet")
                ptype, status = data[0], data[1]
                s["packets"].append(data[8:])
                if status & STATUS_EOM:
                    self.smp_ready.append((sid, ptype, b"".join(s["packets"])))
                    s["packets"] = []
                elif (s["recv_wnd"] - s["recv_seq"]) & 0xFFFFFFFF <= 2:
                    # A long request: open the window before the client has to stop [MC-SMP 3.1.5.2].
                    self.smp_send(SMP_ACK, sid)
            else:
                log("smp_bad_flags", peer=self.peer, sid=sid, flags=flags)
                raise Closed("SMP flags 0x%02x" % flags)
        raise Closed("too many SMP packets without a message")

    def send_message(self, ptype, payload, flush_each=False):
        """Split a message into packets no larger than the negotiated size [MS-TDS 2.2.3.1.3]."""
        room = self.packet_size - 8
        # PacketID counts the packets of one message from 1, as SQL Server does; Wireshark's
        # defragmenter relies on it [MS-TDS 2.2.3.1.5].
        self.packet_id = 1
        chunks = [payload[i : i + room] for i in range(0, len(payload), room)] or [b""]
        for i, chunk in enumerate(chunks):
            status = STATUS_EOM if i == len(chunks) - 1 else 0
            header = struct.pack(">BBHHBB", ptype, status, len(chunk) + 8, 0x0033, self.packet_id, 0)
            self.packet_id = (self.packet_id + 1) % 256
            if self.smp is not None and self.smp_sid in self.smp:
                # One TDS packet per SMP DATA packet (FreeTDS checks the TDS length against it).
                self.smp_send(SMP_DATA, self.smp_sid, header + chunk)
            else:
                self.transport.sendall(header + chunk)

    def readable(self, timeout):
        if self.buf or self.smp_ready or self.transport.pending():
            return True
        r, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        return bool(r)

    # misbehaviour

    def maybe_delay(self, step):
        seconds = (self.cfg.get("delay") or {}).get(step)
        if seconds:
            log("delay", peer=self.peer, step=step, seconds=seconds)
            time.sleep(seconds)

    def reset(self, why):
        log("rst", peer=self.peer, why=why)
        # SO_LINGER with a zero timeout makes close() abort the connection with a RST.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()
        raise Closed(why)

    def fin(self, why):
        log("fin", peer=self.peer, why=why)
        try:
            self.sock.shutdown(socket.SHUT_WR)
            # Drain until the client closes too, so the close is an orderly four-way one.
            deadline = time.time() + 10
            while time.time() < deadline and self.readable(deadline - time.time()):
                if not self.sock.recv(65536):
                    break
        except OSError:
            pass
        self.sock.close()
        raise Closed(why)

    def checkpoint(self, step):
        """Apply the knobs configured for one step: delay, then RST / FIN / stop reading."""
        self.maybe_delay(step)
        if self.cfg.get("rst_at") == step:
            self.reset("rst_at " + step)
        if self.cfg.get("fin_at") == step:
            self.fin("fin_at " + step)
        stop = self.cfg.get("stop_reading")
        if stop and stop.get("at") == step:
            seconds = float(stop.get("seconds", 5))
            log("stop_reading", peer=self.peer, step=step, seconds=seconds)
            time.sleep(seconds)

    # protocol steps

    def serve(self):
        self.checkpoint("accept")
        if self.cfg.get("strict"):
            self.strict_tls_handshake()
        ptype, payload = self.read_message()
        if ptype == 0x16 or (ptype != PKT_PRELOGIN):
            log("unexpected_first_packet", peer=self.peer, type=ptype)
            raise Closed("not a TDS 7.x PRELOGIN")
        self.handle_prelogin(payload)
        ptype, payload = self.read_message()
        if ptype != PKT_LOGIN7:
            log("unexpected_packet", peer=self.peer, type=ptype, expected="LOGIN7")
            raise Closed("no LOGIN7")
        if not self.handle_login(payload):
            return
        self.request_loop()

    def handle_prelogin(self, payload):
        opts = parse_prelogin(payload)
        client_enc = opts.get(0x01, b"\x02")[:1] or b"\x02"
        client_enc = client_enc[0] & 0x7F
        setting = ENC_BY_NAME[str(self.cfg["encryption"]).lower()]
        server_enc = negotiate_encryption(setting, client_enc)
        if self.cfg.get("encryption_byte") is not None:
            server_enc = int(self.cfg["encryption_byte"])  # deliberately wrong answers
        log("prelogin", peer=self.peer, client_encryption=client_enc, server_setting=setting,
            server_encryption=server_enc, client_version=opts.get(0x00, b"").hex(),
            client_mars=opts.get(0x04, b"").hex())
        self.checkpoint("prelogin")
        client_mars = opts.get(0x04, b"\x00")[:1] == b"\x01"
        self.mars = bool(self.cfg.get("mars")) and client_mars
        self.send_message(PKT_REPLY, build_prelogin_response(server_enc, self.mars))
        if self.cfg.get("strict"):
            # Already inside TLS: the ENCRYPTION values negotiate nothing in TDS 8.0 (tedious sends
            # ENCRYPT_OFF and ignores the answer), so no TLS-in-PRELOGIN step follows.
            return

        # Outcome table of [MS-TDS 2.2.6.5]: NOT_SUP against ON/REQ ends the connection, OFF/OFF
        # encrypts the LOGIN7 only, ON/REQ on either side encrypts everything.
        if server_enc == ENC_REQ and client_enc == ENC_NOT_SUP:
            log("encryption_mismatch", peer=self.peer, client=client_enc, server=server_enc)
            self.sock.close()
            raise Closed("client cannot encrypt, server requires it")
        if server_enc == ENC_NOT_SUP or client_enc == ENC_NOT_SUP:
            self.encryption = "none"
            if client_enc in (ENC_ON, ENC_REQ):
                # The client is expected to hang up now; the request loop just sees it go.
                self.encryption = "client_mismatch"
            return
        self.encryption = "login_only" if (server_enc == ENC_OFF and client_enc == ENC_OFF) else "full"
        self.tls_handshake()

    def tls_context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cfg["cert"], self.cfg["key"])
        versions = {"1.0": ssl.TLSVersion.TLSv1, "1.1": ssl.TLSVersion.TLSv1_1,
                    "1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
        ctx.minimum_version = versions[self.cfg["tls_min"]]
        ctx.maximum_version = versions[self.cfg["tls_max"]]
        ctx.options |= ssl.OP_NO_TICKET
        try:
            ctx.num_tickets = 0
        except (AttributeError, ValueError):
            pass
        return ctx

    def strict_tls_handshake(self):
        """TDS 8.0: the server's first bytes are its TLS handshake answer on the bare TCP stream;
        the client names the protocol with ALPN "tds/8.0" [MS-TDS 2.1]."""
        ctx = self.tls_context()
        ctx.set_alpn_protocols(["tds/8.0"])
        inbio, outbio = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inbio, outbio, server_side=True)
        self.encryption = "strict"
        for _ in range(50):
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                out = outbio.read()
                if out:
                    self.sock.sendall(out)
                data = self.sock.recv(65536)
                if not data:
                    raise Closed("peer closed during the TDS 8.0 TLS handshake")
                inbio.write(data)
                continue
            except ssl.SSLError as e:
                log("tls_failed", peer=self.peer, error=str(e))
                out = outbio.read()
                if out:
                    self.sock.sendall(out)
                raise Closed("tls handshake failed")
            out = outbio.read()
            if out:
                self.sock.sendall(out)
            log("tls_ok", peer=self.peer, version=obj.version(), cipher=obj.cipher()[0],
                mode=self.encryption, alpn=obj.selected_alpn_protocol())
            self.transport = TlsTransport(self.sock, obj, inbio, outbio)
            return
        raise Closed("tls handshake took too many rounds")

    def tls_handshake(self):
        """TDS 7.x TLS: handshake records travel inside PRELOGIN (0x12) packets both ways
        [MS-TDS 2.2.6.5, 3.3.5.x]; afterwards records go straight onto TCP."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cfg["cert"], self.cfg["key"])
        versions = {"1.0": ssl.TLSVersion.TLSv1, "1.1": ssl.TLSVersion.TLSv1_1,
                    "1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
        if self.cfg["tls_min"] in ("1.0", "1.1"):
            # Python warns that TLS < 1.2 is deprecated; the lab wants it on purpose (and a JSON-only log).
            import warnings
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            # OpenSSL 3 refuses TLS < 1.2 at the default security level.
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = versions[self.cfg["tls_min"]]
        ctx.maximum_version = versions[self.cfg["tls_max"]]
        # No session tickets: Schannel-based SQL Server sends none, and TLS 1.3 tickets would arrive
        # after the handshake, outside the PRELOGIN framing the client still expects.
        ctx.options |= ssl.OP_NO_TICKET
        try:
            ctx.num_tickets = 0
        except (AttributeError, ValueError):
            pass
        inbio, outbio = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inbio, outbio, server_side=True)
        for _ in range(20):
            ptype, payload = self.read_message()
            if ptype != PKT_PRELOGIN:
                log("tls_unexpected_packet", peer=self.peer, type=ptype)
                raise Closed("expected TLS handshake in PRELOGIN packets")
            inbio.write(payload)
            done = False
            try:
                obj.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as e:
                log("tls_failed", peer=self.peer, error=str(e))
                out = outbio.read()
                if out:
                    self.send_message(PKT_PRELOGIN, out)
                raise Closed("tls handshake failed")
            out = outbio.read()
            if out:
                self.send_message(PKT_PRELOGIN, out)
            if done:
                log("tls_ok", peer=self.peer, version=obj.version(), cipher=obj.cipher()[0],
                    mode=self.encryption)
                self.transport = TlsTransport(self.sock, obj, inbio, outbio)
                return
        raise Closed("tls handshake took too many rounds")

    def handle_login(self, payload):
        login = parse_login7(payload)
        # Log everything but the password itself: the lab's own logs must not leak it either.
        log("login7", peer=self.peer, user=login["user"], database=login["database"], app=login["app"],
            host=login["host"], library=login["library"], tds_version="%08x" % login["tds_version"],
            packet_size=login["packet_size"], integrated=login["integrated"])
        if self.encryption == "login_only":
            # Only the LOGIN7 was encrypted; the response and everything after are cleartext.
            self.transport = PlainTransport(self.sock)
        if login["tds_version"] in KNOWN_TDS_VERSIONS:
            self.tds_version = login["tds_version"]
        elif login["tds_version"] > 0x74000004 or login["tds_version"] < 0x70000000:
            self.tds_version = 0x74000004
        self.checkpoint("login")

        errors = self.cfg.get("login_errors")
        ntlm_mode = self.cfg.get("ntlm")
        if not errors and login["integrated"] and ntlm_mode and find_ntlmssp(login["sspi"], 1) is not None:
            errors = self.ntlm_round(login, ntlm_mode)
        elif not errors:
            errors = self.check_credentials(login)
        if errors:
            body = b"".join(self.error_token(e) for e in errors)
            body += self.done_token(TOK_DONE, DONE_ERROR, 0, 0)
            self.send_message(PKT_REPLY, body)
            log("login_failed", peer=self.peer, errors=[(e["number"], e.get("state", 1)) for e in errors])
            # Fatal login errors end the connection from the server side [MS-TDS 2.2.2.2]; drain
            # briefly so the client closes first, as real servers usually see.
            deadline = time.time() + 5
            while time.time() < deadline and self.readable(deadline - time.time()):
                try:
                    if not self.sock.recv(65536):
                        break
                except OSError:
                    break
            self.sock.close()
            return False

        size = login["packet_size"]
        if 512 <= size <= 32767:
            self.packet_size = size
        database = login["database"] or "master"
        body = b""
        body += envchange_text(1, database, "master")
        body += self.info_token(5701, 2, "Changed database context to '%s'." % database)
        body += envchange_bytes(7, COLLATION, b"")
        body += envchange_text(2, "us_english", "")
        body += self.info_token(5703, 1, "Changed language setting to us_english.")
        body += self.loginack_token()
        body += envchange_text(4, str(self.packet_size), str(self.packet_size))
        routing = self.cfg.get("routing")
        if routing:
            # Routing ENVCHANGE (type 20, TDS 7.4) after LOGINACK: the client must reconnect to the named
            # server and port (read-only routing, Azure redirect) [MS-TDS 2.2.7.9].
            target = bytes([0]) + struct.pack("<H", int(routing["port"])) + us_varchar(routing["server"])
            data = bytes([20]) + struct.pack("<H", len(target)) + target + struct.pack("<H", 0)
            body += struct.pack("<BH", TOK_ENVCHANGE, len(data)) + data
        body += self.done_token(TOK_DONE, DONE_FINAL, 0, 0)
        self.send_message(PKT_REPLY, body)
        log("login_ok", peer=self.peer, database=database, tds_version="%08x" % self.tds_version)
        self.checkpoint("logged_in")
        return True

    def ntlm_round(self, login, mode):
        """One NTLM challenge round inside the login; returns the login errors (none on success)."""
        challenge = build_ntlm_challenge(self.cfg["server_name"])
        self.send_message(PKT_REPLY, struct.pack("<BH", TOK_SSPI, len(challenge)) + challenge)
        log("ntlm_challenge", peer=self.peer, bytes=len(challenge))
        ptype, payload = self.read_message()
        if ptype != PKT_SSPI:
            log("unexpected_packet", peer=self.peer, type=ptype, expected="SSPI")
            raise Closed("no SSPI message after the challenge")
        auth = find_ntlmssp(payload, 3)
        user = domain = None
        if auth is not None:
            try:
                from impacket import ntlm
                msg = ntlm.NTLMAuthChallengeResponse()
                msg.fromString(auth)
                user = msg["user_name"].decode("utf-16-le", "replace")
                domain = msg["domain_name"].decode("utf-16-le", "replace")
            except Exception as e:  # noqa: BLE001 - the lab logs what it could not parse
                log("ntlm_authenticate_unparsed", peer=self.peer, error=str(e))
        log("ntlm_authenticate", peer=self.peer, found=auth is not None, user=user, domain=domain)
        if mode == "challenge-then-success" and auth is not None:
            return []
        return [{"number": 18452, "state": 1, "class": 14,
                 "message": "Login failed. The login is from an untrusted domain and cannot be used with Integrated authentication."}]

    def check_credentials(self, login):
        users = self.cfg.get("users") or {}
        message = "Login failed for user '%s'." % login["user"]
        if login["integrated"]:
            return [{"number": 18452, "state": 1, "class": 14,
                     "message": "Login failed. The login is from an untrusted domain and cannot be used with Integrated authentication."}]
        if login["user"] not in users:
            return [{"number": 18456, "state": self.cfg["unknown_user_state"], "class": 14, "message": message}]
        if users[login["user"]] != login["password"]:
            return [{"number": 18456, "state": self.cfg["wrong_password_state"], "class": 14, "message": message}]
        dbs = self.cfg.get("databases")
        if dbs is not None and login["database"] and login["database"] not in dbs:
            return [{"number": 4060, "state": 1, "class": 11,
                     "message": 'Cannot open database "%s" requested by the login. The login failed.' % login["database"]},
                    {"number": 18456, "state": 1, "class": 14, "message": message}]
        return []

    def request_loop(self):
        for _ in range(100000):
            idle_rst, idle_fin = self.cfg.get("idle_rst_s"), self.cfg.get("idle_fin_s")
            idle = idle_rst or idle_fin
            if idle and not self.readable(float(idle)):
                if idle_rst:
                    self.reset("idle %ss" % idle)
                self.fin("idle %ss" % idle)
            ptype, payload = self.read_message()
            if ptype == PKT_SQL_BATCH:
                text = self.batch_text(payload)
                self.answer_query("batch", text)
            elif ptype == PKT_RPC:
                text = self.rpc_text(payload)
                self.answer_query("rpc", text)
            elif ptype == PKT_TRANSACTION:
                self.answer_transaction(payload)
            elif ptype == PKT_ATTENTION:
                # An attention with nothing running still gets its acknowledgement.
                log("attention", peer=self.peer, while_running=False)
                self.send_message(PKT_REPLY, self.done_token(TOK_DONE, DONE_ATTN, 0, 0))
            else:
                log("unexpected_packet", peer=self.peer, type=ptype)
                raise Closed("unexpected packet type")

    def skip_all_headers(self, payload):
        # ALL_HEADERS precede batch and RPC data from TDS 7.2 on [MS-TDS 2.2.5.3].
        if self.tds_version >= 0x72000000 and len(payload) >= 4:
            total = struct.unpack("<I", payload[:4])[0]
            if 4 <= total <= len(payload):
                return payload[total:]
        return payload

    def batch_text(self, payload):
        return self.skip_all_headers(payload).decode("utf-16-le", "replace")

    def rpc_text(self, payload):
        """Best effort: the statement of sp_executesql, or the procedure name."""
        data = self.skip_all_headers(payload)
        try:
            name_len = struct.unpack("<H", data[:2])[0]
            if name_len == 0xFFFF:
                proc = "procid:%d" % struct.unpack("<H", data[2:4])[0]
                pos = 4
            else:
                proc = data[2 : 2 + name_len * 2].decode("utf-16-le")
                pos = 2 + name_len * 2
            pos += 2  # option flags
            pname_len = data[pos]
            pos += 1 + pname_len * 2 + 1  # name, status flags
            tinfo = data[pos]
            if tinfo not in (0xE7, 0xEF):  # NVARCHAR / NCHAR
                return proc
            maxlen = struct.unpack("<H", data[pos + 1 : pos + 3])[0]
            pos += 3 + 5
            if maxlen == 0xFFFF:  # PLP: total length then chunks [MS-TDS 2.2.5.2.3]
                pos += 8
                parts = []
                for _ in range(10000):
                    clen = struct.unpack("<I", data[pos : pos + 4])[0]
                    pos += 4
                    if clen == 0:
                        break
                    parts.append(data[pos : pos + clen])
                    pos += clen
                return b"".join(parts).decode("utf-16-le", "replace")
            vlen = struct.unpack("<H", data[pos : pos + 2])[0]
            return data[pos + 2 : pos + 2 + vlen].decode("utf-16-le", "replace")
        except (IndexError, struct.error, UnicodeDecodeError):
            return "?"

    def query_behaviour(self, text):
        behaviour = dict(DEFAULTS["query"])
        behaviour.update(self.cfg.get("query") or {})
        for rule in self.cfg.get("query_rules") or []:
            if rule.get("match", "\0").lower() in text.lower():
                behaviour.update(rule)
                break
        return behaviour

    def wait_for_attention(self, seconds):
        """Sleep for a slow query, but notice an ATTENTION the client sends meanwhile."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            if self.readable(min(0.2, deadline - time.time())):
                ptype, _ = self.read_message()
                if ptype == PKT_ATTENTION:
                    return True
                log("unexpected_packet_during_query", peer=self.peer, type=ptype)
        return False

    def answer_query(self, kind, text):
        b = self.query_behaviour(text)
        log("request", peer=self.peer, kind=kind, text=text[:120], rows=b["rows"])
        self.checkpoint("query")
        if b.get("rst_on_request"):
            self.reset("rst_on_request")
        delay = float(b.get("delay_s") or 0)
        if delay and self.wait_for_attention(delay):
            log("attention", peer=self.peer, while_running=True)
            # The cancelled request's (cut short) response comes first, then a separate message
            # with the DONE(ATTN) acknowledgement; tedious relies on this two-message order.
            self.send_message(PKT_REPLY, self.done_token(TOK_DONE, DONE_ERROR, 0, 0))
            self.send_message(PKT_REPLY, self.done_token(TOK_DONE, DONE_ATTN, 0, 0))
            return
        stripped = text.strip().lower()
        final = TOK_DONEPROC if kind == "rpc" else TOK_DONE
        if not b.get("force_rows") and stripped.startswith(("set ", "use ", "if ", "begin tran", "commit", "rollback")):
            self.send_message(PKT_REPLY, self.done_token(final, DONE_FINAL, 0, 0))
            return

        rows = int(b["rows"])
        meta = self.colmetadata()
        row_tokens = [self.row_token(i) for i in range(rows)]
        rst_after = b.get("rst_after_rows")
        if rst_after is not None or self.cfg.get("rst_at") == "mid_query" or self.cfg.get("fin_at") == "mid_query":
            # Send the first rows as complete packets so the capture shows data before the break.
            cut = int(rst_after if rst_after is not None else rows // 2)
            first = meta + b"".join(row_tokens[:cut])
            self.packet_id = 1
            head = struct.pack(">BBHHBB", PKT_REPLY, 0, len(first) + 8, 0x0033, self.packet_id, 0)
            self.packet_id = (self.packet_id + 1) % 256
            self.transport.sendall(head + first)
            time.sleep(0.3)
            if self.cfg.get("fin_at") == "mid_query":
                self.fin("mid_query")
            self.reset("mid_query after %d rows" % cut)

        body = meta + b"".join(row_tokens)
        err = b.get("error_after_rows")
        if kind == "rpc":
            body += self.done_token(TOK_DONEINPROC, DONE_MORE | DONE_COUNT | (DONE_ERROR if err else 0), 0xC1, rows)
            if err:
                body += self.error_token(err)
            body += struct.pack("<Bi", TOK_RETURNSTATUS, 0)
            body += self.done_token(TOK_DONEPROC, DONE_ERROR if err else DONE_FINAL, 0xE0, 0)
        else:
            if err:
                body += self.error_token(err)
                body += self.done_token(TOK_DONE, DONE_ERROR | DONE_COUNT, 0xC1, rows)
            else:
                body += self.done_token(TOK_DONE, DONE_COUNT, 0xC1, rows)
        self.send_message(PKT_REPLY, body)

    def answer_transaction(self, payload):
        """pytds and others use Transaction Manager requests [MS-TDS 2.2.6.9]; type 5 is BEGIN,
        answered with a transaction descriptor in ENVCHANGE 8."""
        data = self.skip_all_headers(payload)
        req = struct.unpack("<H", data[:2])[0] if len(data) >= 2 else 0
        log("transaction", peer=self.peer, request=req)
        body = b""
        if req == 5:
            body += envchange_bytes(8, struct.pack("<Q", 1), b"")
        elif req in (7, 8):
            body += envchange_bytes(9 if req == 7 else 10, b"", struct.pack("<Q", 1))
        body += self.done_token(TOK_DONE, DONE_FINAL, 0, 0)
        self.send_message(PKT_REPLY, body)

    # token builders that depend on the negotiated TDS version

    def done_token(self, token, status, curcmd, rowcount):
        # RowCount is 8 bytes from TDS 7.2 on, 4 before [MS-TDS 2.2.7.6].
        if self.tds_version >= 0x72000000:
            return struct.pack("<BHHQ", token, status, curcmd, rowcount)
        return struct.pack("<BHHI", token, status, curcmd, rowcount)

    def message_token(self, token, e):
        server = self.cfg["server_name"]
        line = struct.pack("<I", 1) if self.tds_version >= 0x72000000 else struct.pack("<H", 1)
        data = (struct.pack("<iBB", int(e["number"]), int(e.get("state", 1)), int(e.get("class", 14)))
                + us_varchar(e.get("message", "")) + b_varchar(server) + b_varchar("") + line)
        return struct.pack("<BH", token, len(data)) + data

    def error_token(self, e):
        return self.message_token(TOK_ERROR, e)

    def info_token(self, number, state, message):
        return self.message_token(TOK_INFO, {"number": number, "state": state, "class": 0, "message": message})

    def loginack_token(self):
        data = (bytes([1]) + struct.pack(">I", self.tds_version)
                + b_varchar("Microsoft SQL Server") + bytes([16, 0, 0x03, 0xE8]))
        return struct.pack("<BH", TOK_LOGINACK, len(data)) + data

    def colmetadata(self):
        """Two columns: id INT (fixed-length INT4) and name NVARCHAR(64) [MS-TDS 2.2.7.4]."""
        usertype = (lambda: struct.pack("<I", 0)) if self.tds_version >= 0x72000000 else (lambda: struct.pack("<H", 0))
        cols = struct.pack("<H", 2)
        cols += usertype() + struct.pack("<H", 0x0008) + bytes([0x38]) + b_varchar("id")
        cols += usertype() + struct.pack("<H", 0x0009) + bytes([0xE7]) + struct.pack("<H", 128) + COLLATION + b_varchar("name")
        return bytes([TOK_COLMETADATA]) + cols

    def row_token(self, i):
        name = ucs2("row-%d" % (i + 1))
        return bytes([TOK_ROW]) + struct.pack("<i", i + 1) + struct.pack("<H", len(name)) + name


# --- message parsers and builders ----------------------------------------------------------------


def negotiate_encryption(setting, client):
    """Server response ENCRYPTION value for its setting and the client's value [MS-TDS 2.2.6.5]."""
    if setting == ENC_NOT_SUP:
        return ENC_NOT_SUP
    if setting in (ENC_ON, ENC_REQ):
        # A server that forces encryption answers REQ to clients that offered less than ON.
        return ENC_ON if client in (ENC_ON, ENC_REQ) else ENC_REQ
    # setting OFF: follow the client
    return {ENC_OFF: ENC_OFF, ENC_ON: ENC_ON, ENC_REQ: ENC_ON}.get(client, ENC_NOT_SUP)


def parse_prelogin(payload):
    """Option list: token, offset (BE), length (BE) … 0xFF, then the data [MS-TDS 2.2.6.5]."""
    opts = {}
    pos = 0
    for _ in range(64):
        if pos >= len(payload) or payload[pos] == 0xFF:
            break
        if pos + 5 > len(payload):
            break
        token, off, length = payload[pos], *struct.unpack(">HH", payload[pos + 1 : pos + 5])
        opts[token] = payload[off : off + length]
        pos += 5
    return opts


def build_prelogin_response(encryption, mars=False):
    options = [
        (0x00, bytes([16, 0, 0x03, 0xE8, 0, 0])),  # VERSION: SQL Server 16.0.1000 (2022 RTM)
        (0x01, bytes([encryption])),
        (0x02, b"\x00"),  # INSTOPT: default instance
        (0x03, b""),  # THREADID: servers send it empty
        (0x04, b"\x01" if mars else b"\x00"),  # MARS
    ]
    header_len = 5 * len(options) + 1
    head, data = b"", b""
    for token, value in options:
        head += struct.pack(">BHH", token, header_len + len(data), len(value))
        data += value
    return head + b"\xff" + data


def parse_login7(p):
    """Fixed part then offset/length pairs (lengths in characters) [MS-TDS 2.2.6.4]."""
    if len(p) < 94:
        raise Closed("LOGIN7 too short")
    tds_version = struct.unpack("<I", p[4:8])[0]
    packet_size = struct.unpack("<I", p[8:12])[0]
    flags2 = p[25]

    def field(index):
        off, length = struct.unpack("<HH", p[36 + 4 * index : 40 + 4 * index])
        return p[off : off + 2 * length]

    def text(index):
        return field(index).decode("utf-16-le", "replace")

    # ibSSPI/cbSSPI follow the nine pairs and the 6-byte ClientID; cbSSPI counts bytes.
    sspi_off, sspi_len = struct.unpack("<HH", p[78:82])
    # Order of the pairs: host, user, password, app, server, extension, library, language, database.
    return {
        "tds_version": tds_version,
        "packet_size": packet_size,
        "host": text(0),
        "user": text(1),
        "password": deobfuscate_password(field(2)),
        "app": text(3),
        "server": text(4),
        "library": text(6),
        "language": text(7),
        "database": text(8),
        "integrated": bool(flags2 & 0x80),
        "sspi": p[sspi_off : sspi_off + sspi_len],
    }


def find_ntlmssp(blob, message_type):
    """The NTLMSSP message of that type in a raw or SPNEGO-wrapped blob [MS-NLMP 2.2.1], or None.

    SPNEGO (RFC 4178) carries the NTLMSSP message as an OCTET STRING, so finding the signature is
    enough for the lab; the message runs to the end of the blob in both framings the lab meets."""
    pos = blob.find(b"NTLMSSP\x00")
    if pos < 0 or len(blob) < pos + 12:
        return None
    if struct.unpack("<I", blob[pos + 8 : pos + 12])[0] != message_type:
        return None
    return blob[pos:]


def build_ntlm_challenge(server_name):
    """NTLMSSP CHALLENGE [MS-NLMP 2.2.1.2] with the target info AV pairs of a domain member [2.2.2.1]."""
    import os
    from impacket import ntlm

    domain, dns_domain = "LAB", "lab.example"
    av = ntlm.AV_PAIRS()
    av[ntlm.NTLMSSP_AV_DOMAINNAME] = ucs2(domain)
    av[ntlm.NTLMSSP_AV_HOSTNAME] = ucs2(server_name)
    av[ntlm.NTLMSSP_AV_DNS_DOMAINNAME] = ucs2(dns_domain)
    av[ntlm.NTLMSSP_AV_DNS_HOSTNAME] = ucs2("%s.%s" % (server_name.lower(), dns_domain))
    # FILETIME: 100 ns ticks since 1601-01-01.
    av[ntlm.NTLMSSP_AV_TIME] = struct.pack("<Q", int((time.time() + 11644473600) * 10_000_000))
    msg = ntlm.NTLMAuthChallenge()
    msg["flags"] = (ntlm.NTLMSSP_NEGOTIATE_UNICODE | ntlm.NTLMSSP_REQUEST_TARGET | ntlm.NTLMSSP_NEGOTIATE_NTLM
                    | ntlm.NTLMSSP_NEGOTIATE_ALWAYS_SIGN | ntlm.NTLMSSP_TARGET_TYPE_DOMAIN
                    | ntlm.NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY | ntlm.NTLMSSP_NEGOTIATE_TARGET_INFO
                    | ntlm.NTLMSSP_NEGOTIATE_VERSION | ntlm.NTLMSSP_NEGOTIATE_128 | ntlm.NTLMSSP_NEGOTIATE_56)
    msg["domain_name"] = ucs2(domain)
    msg["challenge"] = os.urandom(8)
    msg["reserved"] = b"\x00" * 8
    # VERSION [MS-NLMP 2.2.2.10]: Windows Server 2022 (10.0.20348), NTLM revision 15.
    msg["Version"] = struct.pack("<BBHBBBB", 10, 0, 20348, 0, 0, 0, 15)
    msg["domain_offset"] = 56
    msg["TargetInfoFields"] = av.getData()
    msg["TargetInfoFields_offset"] = 56 + len(msg["domain_name"])
    return msg.getData()


def envchange_text(kind, new, old):
    data = bytes([kind]) + b_varchar(new) + b_varchar(old)
    return struct.pack("<BH", TOK_ENVCHANGE, len(data)) + data


def envchange_bytes(kind, new, old):
    data = bytes([kind, len(new)]) + new + bytes([len(old)]) + old
    return struct.pack("<BH", TOK_ENVCHANGE, len(data)) + data


# --- listener ------------------------------------------------------------------------------------


class Server:
    def __init__(self, cfg):
        self.cfg = cfg

    def run(self):
        host = self.cfg["host"]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        ls = socket.socket(family, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # "::" serves IPv4 too, so one server covers both address families of a scenario.
            ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        if self.cfg.get("rcvbuf"):
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, int(self.cfg["rcvbuf"]))
        ls.bind((host, int(self.cfg["port"])))
        ls.listen(int(self.cfg["backlog"]))
        log("listening", host=host, port=self.cfg["port"], encryption=self.cfg["encryption"])
        deadline = time.time() + float(self.cfg["max_seconds"])
        if not self.cfg.get("accept", True):
            # Never accept: the kernel completes up to backlog+1 handshakes, then drops SYNs.
            time.sleep(max(0.0, deadline - time.time()))
            return
        while time.time() < deadline:
            r, _, _ = select.select([ls], [], [], min(1.0, max(0.0, deadline - time.time())))
            if not r:
                continue
            sock, peer = ls.accept()
            peer_s = "%s:%d" % (peer[0], peer[1])
            log("accepted", peer=peer_s)
            threading.Thread(target=self.serve_one, args=(sock, peer_s), daemon=True).start()

    def serve_one(self, sock, peer):
        conn = Connection(self, sock, peer)
        try:
            conn.serve()
        except Closed as e:
            log("closed", peer=peer, why=str(e))
        except (OSError, ssl.SSLError) as e:
            log("socket_error", peer=peer, error=str(e))
        finally:
            try:
                sock.close()
            except OSError:
                pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--behaviour", help="JSON object overriding the defaults")
    ap.add_argument("--behaviour-file", help="file holding such a JSON object")
    args = ap.parse_args()
    cfg = dict(DEFAULTS)
    if args.behaviour_file:
        with open(args.behaviour_file) as f:
            cfg.update(json.load(f))
    if args.behaviour:
        cfg.update(json.loads(args.behaviour))
    for key in ("rst_at", "fin_at"):
        if cfg.get(key) not in (None,) + STEPS:
            ap.error("%s must be one of %s" % (key, ", ".join(STEPS)))
    Server(cfg).run()


if __name__ == "__main__":
    main()
