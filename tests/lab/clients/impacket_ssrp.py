#!/usr/bin/env python3
"""Sends one SQL Browser request built with impacket's SSRP ([MC-SQLR]) message classes and prints
the answer: CLNT_UCAST_INST (--opcode 4) or CLNT_UCAST_DAC (--opcode 15) for --instance.

impacket's own tools only send CLNT_UCAST_EX; this drives its SSRP classes directly (the DAC request
entirely, the INST request's opcode header only: see below).
Exit 0 when an answer came, 1 on timeout."""
import argparse
import select
import socket
import sys

from impacket import tds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--instance", required=True)
    ap.add_argument("--opcode", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=3)
    a = ap.parse_args()
    # The spec's instance name is NUL-terminated MBCS [MC-SQLR 2.2.3].
    name = a.instance.encode() + b"\0"
    if a.opcode == tds.SQLR_CLNT_UCAST_DAC:
        packet = tds.SQLR_UCAST_DAC()
        packet["OpCode"] = a.opcode
        packet["Instance"] = name
        data = packet.getData()
    else:
        # impacket 0.13's SQLR_UCAST_INST cannot pack (its structure lacks a tuple comma), so only the
        # opcode comes from impacket's SQLR header class and the name is appended here.
        header = tds.SQLR()
        header["OpCode"] = a.opcode
        data = header.getData() + name
    family = socket.AF_INET6 if ":" in a.server else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.sendto(data, (a.server, tds.SQLR_PORT))
        ready, _, _ = select.select([s], [], [], a.timeout)
        if not ready:
            print("no answer")
            return 1
        data, _ = s.recvfrom(65536)
    print("answer: %r" % data[:200])
    return 0


if __name__ == "__main__":
    sys.exit(main())
