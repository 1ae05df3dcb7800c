#!/usr/bin/env python3
"""A userspace delay line for the lab router: this kernel has no netem, so latency is added by
routing forwarded IPv4 traffic through a TUN device whose reader holds every packet for a fixed
time before writing it back. Packets written back arrive on the TUN and are routed by the main
table (the policy rules only send traffic that came in on the veths to the TUN), so each
packet passes the delay once per direction.

usage: delayline.py IFNAME DELAY_MS SECONDS
"""

import fcntl
import heapq
import os
import select
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_HELD = 100000  # packets in flight; beyond, new packets are dropped (as a full queue would)


def main(argv):
    name, delay_ms, seconds = argv[0], float(argv[1]), float(argv[2])
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    print("ready", flush=True)
    delay = delay_ms / 1000.0
    held, seq = [], 0
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        now = time.monotonic()
        while held and held[0][0] <= now:
            _, _, pkt = heapq.heappop(held)
            os.write(fd, pkt)
        timeout = max(0.0, min(held[0][0] - now, 0.5)) if held else 0.5
        ready, _, _ = select.select([fd], [], [], timeout)
        if ready:
            pkt = os.read(fd, 65535)
            if len(held) < MAX_HELD:
                seq += 1
                heapq.heappush(held, (time.monotonic() + delay, seq, pkt))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
