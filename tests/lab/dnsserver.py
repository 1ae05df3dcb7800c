#!/usr/bin/env python3
"""A tiny DNS responder (UDP and TCP 53) for the tdsscope lab: answers, NXDOMAIN, slow answers, silence.

    dnsserver.py --behaviour '{"mode": "answer", "records": {"sql.lab.test": ["198.51.100.20"]}, "delay_s": 0}'

Modes: "answer" (A/AAAA from "records"; a known name without a record of the asked type gets an empty
NOERROR answer, an unknown name NXDOMAIN), "nxdomain" (every query gets rcode 3), "silent" (no reply).
Only what a stub resolver needs from RFC 1035 4.1: one question, answers by name pointer.
Over TCP (RFC 1035 4.2.2, RFC 7766) each message has a 2-byte length before it; a connection may
carry several queries (dig +keepopen), answered in order, until the client closes it.
"""

import argparse
import ipaddress
import json
import select
import socket
import struct
import sys
import threading
import time

DEFAULTS = {"host": "0.0.0.0", "port": 53, "mode": "answer", "records": {}, "delay_s": 0, "ttl": 60,
            "max_seconds": 60}
TYPE_A, TYPE_AAAA = 1, 28
RCODE_NXDOMAIN = 3


def log(event, **fields):
    print(json.dumps({"t": round(time.time(), 6), "event": event, **fields}), file=sys.stderr, flush=True)


def parse_question(msg):
    """(id, flags, qname, qtype, end of question) of a query, or None."""
    if len(msg) < 12:
        return None
    qid, flags, qdcount = struct.unpack(">HHH", msg[:6])
    if qdcount != 1:
        return None
    pos, labels = 12, []
    for _ in range(128):
        if pos >= len(msg):
            return None
        n = msg[pos]
        pos += 1
        if n == 0:
            break
        if n & 0xC0:  # a pointer cannot appear in a first question
            return None
        labels.append(msg[pos : pos + n].decode("ascii", "replace"))
        pos += n
    if pos + 4 > len(msg):
        return None
    qtype, _qclass = struct.unpack(">HH", msg[pos : pos + 4])
    return qid, flags, ".".join(labels).lower(), qtype, pos + 4


def reply(cfg, msg):
    q = parse_question(msg)
    if q is None:
        return None, None
    qid, flags, name, qtype, end = q
    answers = []
    rcode = 0
    if cfg["mode"] == "nxdomain":
        rcode = RCODE_NXDOMAIN
    else:
        addrs = cfg["records"].get(name)
        if addrs is None:
            rcode = RCODE_NXDOMAIN
        else:
            for a in addrs:
                ip = ipaddress.ip_address(a)
                if (qtype == TYPE_A and ip.version == 4) or (qtype == TYPE_AAAA and ip.version == 6):
                    answers.append(struct.pack(">HHHIH", 0xC00C, qtype, 1, int(cfg["ttl"]), len(ip.packed)) + ip.packed)
    # QR, opcode 0, AA, RD copied from the query, RA.
    rflags = 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080 | rcode
    header = struct.pack(">HHHHHH", qid, rflags, 1, len(answers), 0, 0)
    return header + msg[12:end] + b"".join(answers), (name, qtype, rcode, len(answers))


def recv_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def serve_tcp_connection(cfg, conn, peer):
    with conn:
        conn.settimeout(float(cfg["max_seconds"]))
        for _ in range(1000):
            try:
                head = recv_exact(conn, 2)
                if head is None:
                    return
                msg = recv_exact(conn, struct.unpack(">H", head)[0])
            except OSError:
                return
            if msg is None:
                return
            out, what = reply(cfg, msg)
            log("query", peer="%s:%d" % peer[:2], question=what, transport="tcp")
            if out is None or cfg["mode"] == "silent":
                continue
            if cfg.get("delay_s"):
                time.sleep(float(cfg["delay_s"]))
            conn.sendall(struct.pack(">H", len(out)) + out)
            log("reply", peer="%s:%d" % peer[:2], transport="tcp")


def serve_tcp(cfg, listener):
    for _ in range(1000):
        try:
            conn, peer = listener.accept()
        except OSError:
            return
        threading.Thread(target=serve_tcp_connection, args=(cfg, conn, peer), daemon=True).start()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--behaviour", default="{}")
    cfg = dict(DEFAULTS)
    cfg.update(json.loads(ap.parse_args().behaviour))
    cfg["records"] = {k.lower().rstrip("."): v for k, v in cfg["records"].items()}
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((cfg["host"], int(cfg["port"])))
    if cfg.get("tcp", True):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((cfg["host"], int(cfg["port"])))
        listener.listen(16)
        threading.Thread(target=serve_tcp, args=(cfg, listener), daemon=True).start()
    log("listening", port=cfg["port"], mode=cfg["mode"])
    deadline = time.time() + float(cfg["max_seconds"])
    pending = []  # (due time, reply, peer): slow answers must not hold up later queries
    for _ in range(100000):
        now = time.time()
        if now >= deadline:
            break
        for item in [p for p in pending if p[0] <= now]:
            s.sendto(item[1], item[2])
            log("reply", peer="%s:%d" % item[2][:2], delayed=True)
            pending.remove(item)
        wait = min([deadline - now, 0.5] + [p[0] - now for p in pending])
        r, _, _ = select.select([s], [], [], max(0.0, wait))
        if not r:
            continue
        msg, peer = s.recvfrom(4096)
        out, what = reply(cfg, msg)
        log("query", peer="%s:%d" % peer[:2], question=what)
        if out is None or cfg["mode"] == "silent":
            continue
        if cfg.get("delay_s"):
            pending.append((time.time() + float(cfg["delay_s"]), out, peer))
        else:
            s.sendto(out, peer)
            log("reply", peer="%s:%d" % peer[:2], delayed=False)


if __name__ == "__main__":
    main()
