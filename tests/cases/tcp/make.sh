#!/usr/bin/env bash
# Regenerates the TCP-behaviour captures of this folder with real programs (Python's socket
# stack and the Linux kernel's TCP) inside a private network namespace, captured by tcpdump.
# Run as root: tests/cases/tcp/make.sh. Only the namespace's loopback carries traffic.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ns=tdsscope-tcp-$$
cleanup() { ip netns del "$ns" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
run() { ip netns exec "$ns" "$@"; }

capture() { # name, snaplen, then the command that makes the traffic
  local name=$1 snap=$2; shift 2
  run timeout 60 tcpdump -i lo -s "$snap" -U -w "$here/$name.pcap" 'tcp port 1433' 2>/dev/null &
  local dump=$!
  sleep 1
  run timeout 40 "$@"
  sleep 1
  # `timeout` does not pass our signal on to tcpdump: stop tcpdump itself.
  pkill -INT -f "tcpdump -i lo -s $snap -U -w $here/$name.pcap" || true
  wait "$dump" 2>/dev/null || true
}

# 1. Loss: 4 % of segments dropped on input; the sender retransmits (fast and timeout-driven).
run iptables -A INPUT -p tcp --dport 1433 -m statistic --mode random --probability 0.04 -j DROP
run iptables -A INPUT -p tcp --sport 1433 -m statistic --mode random --probability 0.04 -j DROP
run ip link set lo mtu 1500
capture loss 128 python3 "$here/traffic.py" loss
run iptables -F

# 2. Zero window: the server stops reading; its receive window closes and the client probes.
capture zero-window 128 python3 "$here/traffic.py" zero-window

# 3. Refused and reset: nothing listens on 1433 for the first attempt; then a server that
#    resets (SO_LINGER 0) after reading a request; then an orderly FIN close.
capture refused-reset-fin 0 python3 "$here/traffic.py" refused-reset-fin
ls -l "$here"/*.pcap
