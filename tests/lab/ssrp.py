#!/usr/bin/env python3
"""A SQL Server Browser (SSRP, [MC-SQLR]) responder for the tdsscope lab.

    ssrp.py --behaviour '{"mode": "answer", "instances": [{"name": "LABINST", "tcp": 1433}]}'

Modes: "answer" (reply to valid requests), "silent" (read requests, never reply: the client
retries and gives up). "Browser not running" needs no mode: run no responder and the kernel
answers with ICMP port unreachable. A wrong-port scenario is just an instance announced with a port
nothing listens on.

Section numbers refer to [MC-SQLR] (learn.microsoft.com/openspecs, "SQL Server Resolution Protocol").
"""

import argparse
import json
import select
import socket
import struct
import sys
import time

# Request ids [MC-SQLR 2.2.1–2.2.4]; every answer is SVR_RESP (0x05) [MC-SQLR 2.2.5].
CLNT_BCAST_EX, CLNT_UCAST_EX, CLNT_UCAST_INST, CLNT_UCAST_DAC, SVR_RESP = 0x02, 0x03, 0x04, 0x0F, 0x05

DEFAULTS = {
    "host": "0.0.0.0",
    "port": 1434,
    "mode": "answer",
    "server_name": "LABSQL",
    "instances": [{"name": "MSSQLSERVER", "tcp": 1433, "version": "16.0.1000.6", "dac": 1434}],
    "delay_s": 0,
    "max_seconds": 60,
}


def log(event, **fields):
    print(json.dumps({"t": round(time.time(), 6), "event": event, **fields}), file=sys.stderr, flush=True)


def instance_record(server, inst):
    """One instance: ServerName;…;InstanceName;…;IsClustered;…;Version;…;tcp;…;; [MC-SQLR 2.2.5]."""
    text = "ServerName;%s;InstanceName;%s;IsClustered;No;Version;%s;" % (
        server, inst["name"], inst.get("version", "16.0.1000.6"))
    if inst.get("np", True):
        pipe = "\\\\%s\\pipe\\sql\\query" % server if inst["name"].upper() == "MSSQLSERVER" else \
            "\\\\%s\\pipe\\MSSQL$%s\\sql\\query" % (server, inst["name"])
        text += "np;%s;" % pipe
    if inst.get("tcp") is not None:
        text += "tcp;%d;" % inst["tcp"]
    return text + ";"


def svr_resp(text):
    data = text.encode("ascii")
    return struct.pack("<BH", SVR_RESP, len(data)) + data


def answer(cfg, req):
    """The reply to one request, or None when a real Browser would stay silent."""
    if not req:
        return None
    op = req[0]
    server, instances = cfg["server_name"], cfg["instances"]
    if op in (CLNT_BCAST_EX, CLNT_UCAST_EX) and len(req) == 1:
        return svr_resp("".join(instance_record(server, i) for i in instances))
    if op == CLNT_UCAST_INST:
        name = req[1:].split(b"\0", 1)[0]
        if len(name) > 32:
            # Longer than [MC-SQLR 2.2.3] allows (the Slammer shape): not answered.
            return None
        for inst in instances:
            if inst["name"].upper().encode() == name.upper():
                return svr_resp(instance_record(server, inst))
        return None
    if op == CLNT_UCAST_DAC and len(req) >= 2 and req[1] == 0x01:
        name = req[2:].split(b"\0", 1)[0]
        for inst in instances:
            if inst["name"].upper().encode() == name.upper() and inst.get("dac"):
                # DAC answer: 0x05, size 6, version 1, port (LE) [MC-SQLR 2.2.5].
                return struct.pack("<BHBH", SVR_RESP, 6, 1, inst["dac"])
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--behaviour", default="{}")
    args = ap.parse_args()
    cfg = dict(DEFAULTS)
    cfg.update(json.loads(args.behaviour))
    family = socket.AF_INET6 if ":" in cfg["host"] else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind((cfg["host"], int(cfg["port"])))
    log("listening", port=cfg["port"], mode=cfg["mode"])
    deadline = time.time() + float(cfg["max_seconds"])
    for _ in range(100000):
        left = deadline - time.time()
        if left <= 0:
            break
        r, _, _ = select.select([s], [], [], min(1.0, left))
        if not r:
            continue
        req, peer = s.recvfrom(65535)
        log("request", peer="%s:%d" % peer[:2], opcode=req[:1].hex(), length=len(req))
        if cfg["mode"] == "silent":
            continue
        reply = answer(cfg, req)
        if reply is None:
            log("no_reply", peer="%s:%d" % peer[:2])
            continue
        if cfg.get("delay_s"):
            time.sleep(float(cfg["delay_s"]))
        s.sendto(reply, peer)
        log("reply", peer="%s:%d" % peer[:2], length=len(reply))


if __name__ == "__main__":
    main()
