#!/usr/bin/env python3
"""Scenario runner of the tdsscope lab: real clients against tests/lab/tdsserver.py across network
namespaces, one capture per scenario. Entry point: scripts/lab [SCENARIO…] (as root).

Topology, rebuilt for every scenario so no rule or conntrack state leaks between scenarios:

    client ns  c0 192.0.2.10 / 2001:db8:c::10
         |  veth
    router ns  rc 192.0.2.1 / 2001:db8:c::1     rs 198.51.100.1 / 2001:db8:5::1   (forwards; faults)
         |  veth
    server ns  s0 198.51.100.20 / 2001:db8:5::20

Only documentation prefixes (RFC 5737, RFC 3849) are used and only inside the namespaces: nothing is
routed to the host or any real network. tcpdump runs on the client's interface, so server packets
show TTL 63 (one hop) and packets made by the router TTL 64, as in a real capture on a client.

Every child process runs under timeout(1); namespaces (with their veths and iptables rules) are
deleted in a finally block and on SIGINT/SIGTERM.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CAPTURES = os.path.join(ROOT, "tests", "captures")
MANIFEST = os.path.join(CAPTURES, "manifest.json")

# The SQL login password of every scenario. Distinctive so tests can assert that tdsscope never
# prints it (it travels obfuscated, not encrypted, in cleartext LOGIN7s).
PASSWORD = "Lab-Pw-7f3Kq9"
WRONG_PASSWORD = "Wrong-Pw-Zx81"
USER = "labuser"

C4, R4C, R4S, S4 = "192.0.2.10", "192.0.2.1", "198.51.100.1", "198.51.100.20"
C6, R6C, R6S, S6 = "2001:db8:c::10", "2001:db8:c::1", "2001:db8:5::1", "2001:db8:5::20"
SNAPLEN = 262144
DNS_NAME = "sql.lab.test"


def log(msg):
    print("[lab] " + msg, flush=True)


class LabError(Exception):
    pass


class Lab:
    """One scenario's namespaces, processes and files."""

    def __init__(self, name, run_dir):
        self.name = name
        self.dir = os.path.join(run_dir, name)
        os.makedirs(self.dir, exist_ok=True)
        tag = "tl%d" % (os.getpid() % 100000)
        self.ns = {"c": tag + "c", "r": tag + "r", "s": tag + "s"}
        self.procs = []
        self.tcpdumps = []
        # Written in the run directory and moved into tests/captures only when the scenario succeeded, so
        # a failed or interrupted run never replaces a committed capture.
        self.capture = os.path.join(self.dir, name + ".pcap")
        self.final = os.path.join(CAPTURES, name + ".pcap")
        self.notes = []

    # processes

    def run(self, where, cmd, timeout=20, env=None, stdin=None, check=True):
        full = ["ip", "netns", "exec", self.ns[where], "timeout", "-k", "2", str(timeout)] + cmd
        r = subprocess.run(full, input=stdin, capture_output=True, text=True, env=env, timeout=timeout + 10)
        if check and r.returncode != 0:
            raise LabError("%s failed (%d): %s" % (" ".join(cmd), r.returncode, r.stderr.strip()[:500]))
        return r

    def spawn(self, where, cmd, timeout, logname, env=None, sig="TERM"):
        out = open(os.path.join(self.dir, logname), "w")
        full = ["ip", "netns", "exec", self.ns[where], "timeout", "-s", sig, "-k", "3", str(timeout)] + cmd
        p = subprocess.Popen(full, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.procs.append((p, out))
        return p

    def wait_log(self, logname, pattern, seconds=8.0):
        path = os.path.join(self.dir, logname)
        deadline = time.time() + seconds
        while time.time() < deadline:
            try:
                with open(path) as f:
                    if re.search(pattern, f.read()):
                        return True
            except FileNotFoundError:
                pass
            time.sleep(0.05)
        raise LabError("%s: no %r within %ss" % (logname, pattern, seconds))

    def read_log(self, logname):
        try:
            with open(os.path.join(self.dir, logname)) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    # network

    def up(self):
        c, r, s = self.ns["c"], self.ns["r"], self.ns["s"]
        for ns in (c, r, s):
            sh(["ip", "netns", "add", ns])
        sh(["ip", "link", "add", "c0", "netns", c, "type", "veth", "peer", "name", "rc", "netns", r])
        sh(["ip", "link", "add", "s0", "netns", s, "type", "veth", "peer", "name", "rs", "netns", r])
        plan = {
            c: [("c0", C4, 24, C6)],
            r: [("rc", R4C, 24, R6C), ("rs", R4S, 24, R6S)],
            s: [("s0", S4, 24, S6)],
        }
        for ns, ifaces in plan.items():
            x = ["ip", "netns", "exec", ns]
            sh(x + ["ip", "link", "set", "lo", "up"])
            for ifname, v4, plen, v6 in ifaces:
                # No router solicitations, no DAD, short MLD report bursts: link-up chatter would
                # otherwise spill into the captures.
                for knob in ("router_solicitations=0", "accept_dad=0", "mldv2_unsolicited_report_interval=10",
                             "mldv1_unsolicited_report_interval=10"):
                    sh(x + ["sysctl", "-qw", "net.ipv6.conf.%s.%s" % (ifname, knob)])
                sh(x + ["ip", "addr", "add", "%s/%d" % (v4, plen), "dev", ifname])
                sh(x + ["ip", "-6", "addr", "add", v6 + "/64", "dev", ifname, "nodad"])
                # Offloads off: the capture then shows wire-sized segments, as on a real NIC.
                subprocess.run(x + ["ethtool", "-K", ifname, "tso", "off", "gso", "off", "gro", "off"],
                               capture_output=True)
                sh(x + ["ip", "link", "set", ifname, "up"])
        xc, xr, xs = (["ip", "netns", "exec", n] for n in (c, r, s))
        sh(xc + ["ip", "route", "add", "default", "via", R4C])
        sh(xc + ["ip", "-6", "route", "add", "default", "via", R6C])
        sh(xs + ["ip", "route", "add", "default", "via", R4S])
        sh(xs + ["ip", "-6", "route", "add", "default", "via", R6S])
        sh(xr + ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        sh(xr + ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
        # Short SYN retry budget on the client: an unanswered connect gives up after ~5 s
        # (SYNs at 0,1,2,3,4 s with Linux's linear first backoffs) instead of 2 minutes.
        sh(xc + ["sysctl", "-qw", "net.ipv4.tcp_syn_retries=4"])
        # Resolve neighbours before the capture starts, so the capture holds the scenario only.
        sh(xc + ["ping", "-c1", "-W2", S4], check=False)
        sh(xc + ["ping", "-6", "-c1", "-W2", S6], check=False)
        time.sleep(1)  # let link-up chatter (MLD reports) pass before the capture starts

    def delay_line(self, one_way_ms, seconds=60):
        """Adds `one_way_ms` of latency each way to IPv4 traffic through the router (no netem on
        this kernel: tests/lab/delayline.py holds packets in a TUN device instead)."""
        self.spawn("r", [sys.executable, "-u", os.path.join(HERE, "delayline.py"), "dl0", str(one_way_ms),
                         str(seconds)], seconds + 5, "delayline.log")
        for _ in range(50):
            if "ready" in self.read_log("delayline.log"):
                break
            time.sleep(0.1)
        else:
            raise LabError("delay line did not start: " + self.read_log("delayline.log")[-300:])
        for cmd in (["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"],
                    ["sysctl", "-qw", "net.ipv4.conf.dl0.rp_filter=0"],
                    ["ip", "link", "set", "dl0", "up"],
                    ["ip", "route", "add", "default", "dev", "dl0", "table", "100"],
                    ["ip", "rule", "add", "iif", "rc", "lookup", "100"],
                    ["ip", "rule", "add", "iif", "rs", "lookup", "100"]):
            self.run("r", cmd, timeout=10)
        self.notes.append("router: %d ms each way through a TUN delay line (tests/lab/delayline.py)" % one_way_ms)

    def iptables(self, where, args, v6=False):
        self.run(where, ["ip6tables" if v6 else "iptables"] + args, timeout=10)
        self.notes.append("%s: %s %s" % (where, "ip6tables" if v6 else "iptables", " ".join(args)))

    def start_capture(self, seconds=60, where="c", iface="c0", snaplen=SNAPLEN, bpf=None, path=None):
        logname = "tcpdump-%s.log" % iface
        cmd = ["tcpdump", "-i", iface, "-n", "-U", "--immediate-mode", "-Z", "root", "-s", str(snaplen),
               "-w", path or self.capture]
        if bpf:
            cmd.append(bpf)
        self.tcpdumps.append((self.spawn(where, cmd, seconds, logname, sig="INT"), logname))
        self.wait_log(logname, "listening on")
        time.sleep(0.2)

    def stop_capture(self):
        time.sleep(0.5)  # let the last FIN/RST/ICMP land
        for p, logname in self.tcpdumps:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)  # timeout(1) forwards it to tcpdump
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
            log("%s: %s" % (self.name, self.read_log(logname).strip().splitlines()[-3:]))
        self.tcpdumps = []

    def start_server(self, behaviour, seconds=60, logname="server.log"):
        b = {"host": "::", "cert": os.path.join(self.certdir, "cert.pem"),
             "key": os.path.join(self.certdir, "key.pem"), "max_seconds": seconds}
        b.update(behaviour)
        self.spawn("s", [sys.executable, os.path.join(HERE, "tdsserver.py"), "--behaviour", json.dumps(b)],
                   seconds + 5, logname)
        self.wait_log(logname, '"listening"')
        return b

    def start_ssrp(self, behaviour, seconds=60):
        b = {"host": "::", "max_seconds": seconds}
        b.update(behaviour)
        self.spawn("s", [sys.executable, os.path.join(HERE, "ssrp.py"), "--behaviour", json.dumps(b)],
                   seconds + 5, "ssrp.log")
        self.wait_log("ssrp.log", '"listening"')

    def resolv_conf(self, options):
        """`ip netns exec` bind-mounts /etc/netns/<ns>/* over /etc/*: the client then asks the lab's DNS
        responder, with the resolver options the scenario needs."""
        d = os.path.join("/etc/netns", self.ns["c"])
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "resolv.conf"), "w") as fh:
            fh.write("nameserver %s\noptions %s\n" % (S4, options))
        self.notes.append("client resolv.conf: nameserver %s, options %s" % (S4, options))

    def start_dns(self, behaviour, seconds=60):
        b = {"max_seconds": seconds, "records": {DNS_NAME: [S4, S6]}}
        b.update(behaviour)
        self.spawn("s", [sys.executable, os.path.join(HERE, "dnsserver.py"), "--behaviour", json.dumps(b)],
                   seconds + 5, "dns.log")
        self.wait_log("dns.log", '"listening"')

    def down(self):
        shutil.rmtree(os.path.join("/etc/netns", self.ns["c"]), ignore_errors=True)
        for p, out in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
            out.close()
        self.procs = []
        for ns in self.ns.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def sh(cmd, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise LabError("%s: %s" % (" ".join(cmd), r.stderr.strip()))
    return r


# --- real clients ----------------------------------------------------------------------------------


def freetds_conf(lab, host, port, encryption, tds="7.4", connect_timeout=10, extra=""):
    path = os.path.join(lab.dir, "freetds.conf")
    with open(path, "w") as f:
        f.write("[global]\n    tds version = %s\n[lab]\n    host = %s\n    port = %d\n"
                "    tds version = %s\n    encryption = %s\n    connect timeout = %d\n"
                % (tds, host, port, tds, encryption, connect_timeout) + extra)
    return path


def tsql(lab, host=S4, port=1433, encryption="off", password=PASSWORD, sql="select id, name from lab_rows",
         timeout=25, connect_timeout=10, conf_extra=""):
    """FreeTDS tsql. encryption: off (FreeTDS then offers NOT_SUP), request, require."""
    env = dict(os.environ, FREETDSCONF=freetds_conf(lab, host, port, encryption, connect_timeout=connect_timeout,
                                                    extra=conf_extra))
    r = lab.run("c", ["tsql", "-S", "lab", "-U", USER, "-P", password], timeout=timeout, env=env,
                stdin=sql + "\ngo\nquit\n", check=False)
    out = (r.stdout + r.stderr).replace(password, "<password>")
    with open(os.path.join(lab.dir, "client.log"), "w") as f:
        f.write(out)
    return r.returncode, out


def pytds_args(host=S4, port=1433, password=PASSWORD, **extra):
    args = [sys.executable, os.path.join(HERE, "clients", "pytds_client.py"), "--server", host,
            "--port", str(port), "--password", password]
    for k, v in extra.items():
        if v is True:
            args.append("--" + k.replace("_", "-"))
        else:
            args += ["--" + k.replace("_", "-"), str(v)]
    return args


def pytds(lab, proc_timeout=30, **kw):
    r = lab.run("c", pytds_args(**kw), timeout=proc_timeout, check=False)
    out = r.stdout + r.stderr
    with open(os.path.join(lab.dir, "client.log"), "w") as f:
        f.write(out)
    return r.returncode, out


def tedious(lab, opts, timeout=45):
    o = {"server": S4, "port": 1433, "password": PASSWORD}
    o.update(opts)
    r = lab.run("c", ["node", os.path.join(HERE, "node", "client.js"), json.dumps(o)], timeout=timeout,
                check=False, env=dict(os.environ, NODE_NO_WARNINGS="1"))
    out = r.stdout + r.stderr
    with open(os.path.join(lab.dir, "client.log"), "w") as f:
        f.write(out)
    return r.returncode, out


def impacket(lab, host=S4, port=1433, password=PASSWORD, sql="select id, name from lab_rows", timeout=25):
    exe = shutil.which("mssqlclient.py") or "mssqlclient.py"
    r = lab.run("c", [exe, "%s:%s@%s" % (USER, password, host), "-port", str(port), "-command", sql],
                timeout=timeout, check=False)
    out = (r.stdout + r.stderr).replace(password, "<password>")
    with open(os.path.join(lab.dir, "client.log"), "w") as f:
        f.write(out)
    return r.returncode, out


def odbc_mars(lab, mode, host=S4, port=1433, password=PASSWORD, timeout=30):
    """pyodbc over FreeTDS's ODBC driver with MARS_Connection=Yes (tests/lab/clients/odbc_mars_client.py)."""
    r = lab.run("c", [sys.executable, os.path.join(HERE, "clients", "odbc_mars_client.py"), "--server", host,
                      "--port", str(port), "--password", password, "--mode", mode], timeout=timeout, check=False)
    out = (r.stdout + r.stderr).replace(password, "<password>")
    with open(os.path.join(lab.dir, "client.log"), "w") as f:
        f.write(out)
    return r.returncode, out


def expect(cond, what):
    if not cond:
        raise LabError("scenario check failed: " + what)


# --- scenarios -------------------------------------------------------------------------------------
# Each scenario: the function drives the lab; the metadata says what the capture must show.
# "connections" lists expected TCP connections in SYN order (the runner fills in the client port from
# the capture); "checks" are tshark display filters with the frame counts they must match.

SCENARIOS = {}


def scenario(name, client, what, connections=(), exchanges=(), checks=(), decode_port=1433, tshark_opts=(),
             capture_findings=(), offline=False, copies=()):
    def deco(fn):
        SCENARIOS[name] = {"fn": fn, "client": client, "what": what, "connections": list(connections),
                           "exchanges": list(exchanges), "checks": list(checks), "decode_port": decode_port,
                           "tshark_opts": list(tshark_opts), "capture_findings": list(capture_findings),
                           "offline": offline, "copies": list(copies)}
        return fn
    return deco


def f(code, **detail):
    return {"code": code, "detail": detail} if detail else {"code": code}


def conn(server, outcome, findings, **extra):
    d = {"server": server, "outcome": outcome, "findings": findings}
    d.update(extra)
    return d


def chk(display_filter, min_count=1, max_count=None, fields=None, note=""):
    return {"filter": display_filter, "min": min_count, "max": max_count, "note": note}


@scenario("healthy-tsql-plain", "tsql",
          "FreeTDS tsql with encryption=off (offers ENCRYPT_NOT_SUP); server OFF answers NOT_SUP: no TLS, "
          "cleartext LOGIN7 and login response, one SELECT of 3 rows, client closes with FIN.",
          connections=[conn(S4 + ":1433", "ok", [f("login.ok"), f("login.cleartext")],
                            login={"user": USER, "tds_version": "7.4", "encryption": "none"})],
          checks=[chk("tds.type == 0x12", 1, 1), chk("tds.type == 0x10", 1, 1), chk("tds.loginack", 1),
                  chk("tds.type == 0x01", 1), chk("tds.done.donerowcount64 == 3", 1), chk("tcp.flags.reset == 1", 0, 0)])
def sc_healthy_tsql_plain(lab):
    lab.start_server({"encryption": "off"})
    lab.start_capture()
    rc, out = tsql(lab)
    expect(rc == 0 and "(3 rows affected)" in out, "tsql query ok")


@scenario("healthy-tsql-login-tls", "tsql",
          "FreeTDS tsql with encryption=request (offers OFF); server OFF: TLS 1.2 handshake inside PRELOGIN "
          "packets encrypts only the LOGIN7; login response and query in cleartext.",
          copies=[{"capture": "healthy-tsql-login-tls.pcapng", "format": "pcapng"}],
          connections=[conn(S4 + ":1433", "ok", [f("login.ok"), f("tls.certificate_problem", problem="self_signed_fallback")],
                            login={"user": None, "encryption": "login_only", "tls_version": "TLS 1.2"},
                            note="user null: the LOGIN7 travelled inside TLS")],
          checks=[chk("tds.type == 0x12", 3), chk("tls.handshake.type == 1", 1, 1), chk("tds.loginack", 1),
                  chk("tds.type == 0x10", 0, 0, note="LOGIN7 travels inside TLS"), chk("tds.done.donerowcount64 == 3", 1)])
def sc_healthy_tsql_login_tls(lab):
    lab.start_server({"encryption": "off"})
    lab.start_capture()
    rc, out = tsql(lab, encryption="request")
    expect(rc == 0 and "(3 rows affected)" in out, "tsql query ok")
    expect('"login_only"' in lab.read_log("server.log"), "login-only TLS")


@scenario("healthy-pytds-plain", "pytds",
          "python-tds without TLS support offers ENCRYPT_NOT_SUP: cleartext login and one SELECT of 3 rows.",
          connections=[conn(S4 + ":1433", "ok", [f("login.ok"), f("login.cleartext")],
                            login={"user": USER, "database": "master", "tds_version": "7.4"})],
          checks=[chk("tds.type == 0x10", 1, 1), chk("tds.loginack", 1), chk("tds.done.donerowcount64 == 3", 1),
                  chk("tcp.flags.reset == 1", 0, 0)])
def sc_healthy_pytds_plain(lab):
    lab.start_server({"encryption": "off"})
    lab.start_capture()
    rc, out = pytds(lab)
    expect(rc == 0 and "rows: 3" in out, "pytds query ok: " + out)


@scenario("healthy-pytds-ipv6", "pytds",
          "As healthy-pytds-plain over IPv6 (2001:db8::/32 documentation prefix).",
          connections=[conn("[%s]:1433" % S6, "ok", [f("login.ok"), f("login.cleartext")])],
          checks=[chk("ipv6 && tds.type == 0x10", 1, 1), chk("ipv6 && tds.loginack", 1)])
def sc_healthy_pytds_ipv6(lab):
    lab.start_server({"encryption": "off"})
    lab.start_capture()
    rc, out = pytds(lab, host=S6)
    expect(rc == 0 and "rows: 3" in out, "pytds over IPv6 ok: " + out)


@scenario("healthy-tedious-tls", "tedious",
          "tedious (encrypt=true, trustServerCertificate) offers ENCRYPT_ON: full TLS 1.2 after the handshake "
          "in PRELOGIN packets; login, tedious' SET batch and an RPC (sp_executesql) SELECT all inside TLS.",
          connections=[conn(S4 + ":1433", "ok", [f("tls.certificate_problem", problem="self_signed_fallback")],
                            login={"outcome": "encrypted", "encryption": "full",
                                   "tls_version": "TLS 1.2"},
                            note="LOGINACK is encrypted: a closing FIN from the client after application data "
                                 "is the only sign of success")],
          checks=[chk("tds.type == 0x12", 3), chk("tls.handshake.type == 11", 1, 1), chk("tls.record.content_type == 23", 4),
                  chk("tds.type == 0x10", 0, 0), chk("tcp.flags.reset == 1", 0, 0)])
def sc_healthy_tedious_tls(lab):
    lab.start_server({"encryption": "off"})
    lab.start_capture()
    rc, out = tedious(lab, {"encrypt": True})
    expect(rc == 0 and "rows: 3" in out, "tedious query ok: " + out)
    expect('"mode": "full"' in lab.read_log("server.log"), "full TLS")


@scenario("healthy-impacket", "impacket mssqlclient",
          "impacket mssqlclient (TDS 7.1, offers ENCRYPT_OFF): TLS for the LOGIN7 only, then cleartext "
          "login response (TDS 7.1: 4-byte DONE row counts) and two SELECTs.",
          connections=[conn(S4 + ":1433", "ok", [f("login.ok"), f("tls.certificate_problem", problem="self_signed_fallback")],
                            login={"tds_version": "7.1", "encryption": "login_only"})],
          checks=[chk("tds.type == 0x12", 3), chk("tds.loginack.tdsversion == 0x71000000", 1),
                  chk("tds.type == 0x01", 2), chk("tds.done.donerowcount == 3", 2)],
          # The LOGIN7 (which tells Wireshark the TDS version) is inside TLS: name the version.
          tshark_opts=["-o", "tds.protocol_type:TDS 7.1"])
def sc_healthy_impacket(lab):
    lab.start_server({"encryption": "off"})
    lab.start_capture()
    rc, out = impacket(lab)
    expect(rc == 0 and "row-3" in out, "impacket query ok: " + out[-300:])


@scenario("login-failed-18456-s8", "tsql",
          "tsql (no TLS) with a wrong password: server answers ERROR 18456 state 8 class 14 and DONE(ERROR), "
          "no LOGINACK; the client closes.",
          copies=[{"capture": "login-failed-18456-s8.pcapng", "format": "pcapng"},
                  {"capture": "login-failed-18456-s8.netmon2.cap", "format": "netmon2"}],
          connections=[conn(S4 + ":1433", "login_failed",
                            [f("login.failed", number=18456, state=8, **{"class": 14}), f("login.cleartext")],
                            login={"user": USER, "error": {"number": 18456, "state": 8, "class": 14}})],
          checks=[chk("tds.error.number == 18456", 1, 1), chk("tds.error.state == 8", 1, 1), chk("tds.loginack", 0, 0)])
def sc_login_failed_18456(lab):
    lab.start_server({"encryption": "off"})
    lab.start_capture()
    rc, out = tsql(lab, password=WRONG_PASSWORD)
    expect("18456" in out, "tsql saw 18456: " + out[-300:])


def login_error_scenario(name, errors, what):
    first = errors[0]
    findings = [f("login.failed", number=first["number"], state=first["state"], **{"class": first["class"]}),
                f("login.cleartext")]
    checks = [chk("tds.error.number == %d" % e["number"], 1, 1) for e in errors] + [chk("tds.loginack", 0, 0)]

    @scenario(name, "tsql", what, connections=[conn(S4 + ":1433", "login_failed", findings,
                                                     login={"error": {k: first[k] for k in ("number", "state", "class")}})],
              checks=checks)
    def run(lab):
        lab.start_server({"encryption": "off", "login_errors": errors})
        lab.start_capture()
        rc, out = tsql(lab)
        expect(str(first["number"]) in out, "tsql saw %d: %s" % (first["number"], out[-300:]))


login_error_scenario("login-failed-4060", [
    {"number": 4060, "state": 1, "class": 11, "message": 'Cannot open database "labdb" requested by the login. The login failed.'},
    {"number": 18456, "state": 1, "class": 14, "message": "Login failed for user 'labuser'."}],
    "tsql; server answers 4060 (cannot open database) then 18456 state 1, as SQL Server does.")
login_error_scenario("login-failed-18486", [
    {"number": 18486, "state": 1, "class": 14,
     "message": "Login failed for user 'labuser' because the account is currently locked out."}],
    "tsql; server answers 18486 (account locked out).")
login_error_scenario("login-failed-17809", [
    {"number": 17809, "state": 1, "class": 20,
     "message": "Could not connect because the maximum number of '10' user connections has already been reached."}],
    "tsql; server answers 17809 class 20 (user connections limit).")


@scenario("refused", "tsql",
          "Nothing listens on the server's 1433: the server's kernel answers the SYN with RST+ACK.",
          connections=[conn(S4 + ":1433", "refused", [f("tcp.refused", attempts=1)])],
          checks=[chk("tcp.flags.syn == 1 && tcp.flags.ack == 0", 1), chk("tcp.flags.reset == 1 && ip.src == %s" % S4, 1)])
def sc_refused(lab):
    lab.start_capture()
    rc, out = tsql(lab)
    expect(rc != 0, "tsql failed to connect")


@scenario("no-answer", "tsql",
          "The router drops SYNs to 1433 (iptables DROP): the first SYN and 6 retransmissions (Linux linear "
          "backoff: 0,1,2,3,4,5,7 s) go unanswered; tsql's connect timeout (10 s) then gives up.",
          connections=[conn(S4 + ":1433", "no_answer", [f("tcp.no_answer", attempts=7, waited_s=7)],
                            note="waited_s: first to last SYN on the wire (~7 s); tsql gave up at ~10 s, which sends nothing")],
          checks=[chk("tcp.flags.syn == 1 && tcp.flags.ack == 0", 7, 7), chk("tcp.flags.syn == 1 && tcp.flags.ack == 1", 0, 0),
                  chk("tcp.flags.reset == 1 || icmp", 0, 0)])
def sc_no_answer(lab):
    lab.start_server({"encryption": "off"})
    lab.iptables("r", ["-A", "FORWARD", "-p", "tcp", "--syn", "--dport", "1433", "-j", "DROP"])
    lab.start_capture()
    rc, out = tsql(lab, connect_timeout=10)
    expect(rc != 0, "tsql failed to connect")


@scenario("icmp-host-unreachable", "tsql",
          "The router rejects SYNs to 1433 with ICMP host unreachable (type 3 code 1).",
          connections=[conn(S4 + ":1433", "unreachable",
                            [f("tcp.unreachable", icmp_type=3, icmp_code=1, meaning="host unreachable: the server's address does not answer on its network (host down, wrong address, ARP failure)")])],
          checks=[chk("icmp.type == 3 && icmp.code == 1", 1), chk("tcp.flags.syn == 1 && tcp.flags.ack == 1", 0, 0)])
def sc_icmp_unreachable(lab):
    lab.start_server({"encryption": "off"})
    lab.iptables("r", ["-A", "FORWARD", "-p", "tcp", "--dport", "1433", "-j", "REJECT",
                       "--reject-with", "icmp-host-unreachable"])
    lab.start_capture()
    rc, out = tsql(lab)
    expect(rc != 0, "tsql failed to connect")


@scenario("attention-tedious", "tedious",
          "tedious (encrypt=false: it offers ENCRYPT_NOT_SUP, so no TLS at all) runs an RPC the server delays 8 s; its "
          "requestTimeout of 2 s fires and it sends ATTENTION; the server ends the cut-short response and "
          "acknowledges with DONE(ATTN) in a second message; the client closes normally.",
          connections=[conn(S4 + ":1433", "ok",
                            [f("login.ok"), f("login.cleartext"),
                             f("request.attention", count=1, after_s=2, acknowledged=True)])],
          checks=[chk("tds.type == 0x10", 1, 1), chk("tds.type == 0x03", 1, 1), chk("tds.type == 0x06", 1, 1),
                  chk("tds.done.status.attn == 1", 1, 1), chk("tcp.flags.reset == 1", 0, 0)])
def sc_attention_tedious(lab):
    lab.start_server({"encryption": "off", "query_rules": [{"match": "slow", "delay_s": 8}]})
    lab.start_capture()
    rc, out = tedious(lab, {"encrypt": False, "mode": "timeout", "sql": "select 'slow' as lab_rows",
                            "requestTimeout": 2000})
    expect(rc == 0 and "ETIMEOUT" in out, "tedious timed out: " + out)


@scenario("server-rst-mid-query", "pytds",
          "pytds runs a SELECT; the server sends the first 50 of 200 rows, then aborts the connection "
          "(SO_LINGER 0 close: RST from the server with its normal TTL).",
          connections=[conn(S4 + ":1433", "reset", [f("login.ok"), f("login.cleartext"), f("reset.by_server", phase="request")])],
          checks=[chk("tcp.flags.reset == 1 && ip.src == %s && ip.ttl == 63" % S4, 1),
                  chk("tcp.flags.reset == 1 && ip.src == %s" % C4, 0, 0)])
def sc_server_rst_mid_query(lab):
    lab.start_server({"encryption": "off", "query": {"rows": 200, "rst_after_rows": 50}})
    lab.start_capture()
    rc, out = pytds(lab)
    expect(rc != 0, "pytds saw the reset: " + out)


@scenario("middlebox-idle-kill", "pytds",
          "pytds logs in, stays idle 8 s, then sends a query. Meanwhile the router starts rejecting the "
          "connection's packets with tcp-reset (a middlebox whose idle timer expired): the client gets a RST "
          "with TTL 64 (made by the router) where the server's packets have TTL 63.",
          copies=[{"capture": "middlebox-idle-kill.netmon2.cap", "format": "netmon2"}],
          connections=[conn(S4 + ":1433", "idle_killed",
                            [f("login.ok"), f("login.cleartext"), f("reset.by_middlebox", ttl=64, peer_ttl=63, why="ttl"),
                             f("idle.killed", by="middlebox", idle_s=8)])],
          checks=[chk("tcp.flags.reset == 1 && ip.src == %s && ip.ttl == 64" % S4, 1),
                  chk("tds.type == 0x01", 1)])
def sc_middlebox_idle_kill(lab):
    lab.start_server({"encryption": "off"})
    lab.start_capture()
    p = lab.spawn("c", pytds_args(mode="sleep_query", sleep=8), 30, "client.log")
    lab.wait_log("server.log", '"login_ok"')
    time.sleep(2)
    lab.iptables("r", ["-I", "FORWARD", "-p", "tcp", "-s", C4, "--dport", "1433", "-j", "REJECT",
                       "--reject-with", "tcp-reset"])
    p.wait(30)
    expect("ConnectionResetError" in lab.read_log("client.log") or "reset" in lab.read_log("client.log").lower(),
           "client saw the reset: " + lab.read_log("client.log"))


@scenario("zero-window", "pytds",
          "The server (SO_RCVBUF 2048) stops reading for 6 s right after the login; pytds sends a 100 kB "
          "SQL batch, the server's window closes (zero window, client probes), then reading resumes and the "
          "query completes.",
          connections=[conn(S4 + ":1433", "ok", [f("login.ok"), f("login.cleartext"), f("tcp.zero_window", side="server"),
                                                 f("tcp.retransmissions", count=1)],
                            note="one client segment is retransmitted while the window is closed")],
          checks=[chk("tcp.analysis.zero_window && ip.src == %s" % S4, 1), chk("tds.done.donerowcount64 == 3", 1)])
def sc_zero_window(lab):
    lab.start_server({"encryption": "off", "rcvbuf": 2048, "stop_reading": {"at": "logged_in", "seconds": 6}})
    lab.start_capture()
    rc, out = pytds(lab, mode="big", size=100000)
    expect(rc == 0 and "rows: 3" in out, "pytds big query ok: " + out)


INST_PORT = 14330


@scenario("ssrp-answered-port-14330", "pytds",
          "pytds connects to 198.51.100.20\\LABINST: it asks the SQL Browser for all instances (UDP 1434, "
          "CLNT_UCAST_EX 0x03, one byte), the responder announces LABINST on tcp 14330, and the client logs "
          "in there (non-standard port, cleartext).",
          connections=[conn("%s:%d" % (S4, INST_PORT), "ok", [f("login.ok"), f("login.cleartext")])],
          exchanges=[{"protocol": "ssrp", "server": S4 + ":1434", "request": {"opcode": 3, "instance": None},
                      "response": {"instances": [{"instance": "LABINST", "tcp_port": INST_PORT}]}, "findings": []}],
          checks=[chk("!icmp && udp.dstport == 1434", 1), chk("!icmp && udp.srcport == 1434", 1), chk("tds.loginack", 1)],
          decode_port=INST_PORT)
def sc_ssrp_answered(lab):
    lab.start_server({"encryption": "off", "port": INST_PORT})
    lab.start_ssrp({"instances": [{"name": "LABINST", "tcp": INST_PORT, "version": "16.0.1000.6"}]})
    lab.start_capture()
    rc, out = pytds(lab, instance="LABINST")
    expect(rc == 0 and "rows: 3" in out, "pytds via SSRP ok: " + out)


@scenario("ssrp-silent", "pytds",
          "pytds asks the Browser (CLNT_UCAST_EX) for LABINST's port; the responder reads the requests but "
          "never answers. pytds sends 4 requests (each from a new UDP source port) at ~0, 0.4, 1.2, 2.8 s, "
          "then gives up before any TCP connection.",
          exchanges=[{"protocol": "ssrp", "server": S4 + ":1434", "request": {"opcode": 3, "instance": None},
                      "response": None, "attempts": 4,
                      "findings": [f("ssrp.no_response", opcode=3, attempts=4)]}],
          checks=[chk("!icmp && udp.dstport == 1434", 4, 4), chk("!icmp && udp.srcport == 1434", 0, 0), chk("tcp", 0, 0)])
def sc_ssrp_silent(lab):
    lab.start_ssrp({"mode": "silent"})
    lab.start_capture()
    rc, out = pytds(lab, instance="LABINST", login_timeout=5)
    expect(rc == 2 and "TypeError" not in out and "request" in lab.read_log("ssrp.log"),
           "pytds failed after an unanswered SSRP request: " + out)


@scenario("ssrp-port-unreachable", "pytds",
          "No Browser runs on the server: each of pytds' 4 SSRP requests (CLNT_UCAST_EX) draws ICMP port "
          "unreachable from the server's kernel.",
          exchanges=[{"protocol": "ssrp", "server": S4 + ":1434", "request": {"opcode": 3, "instance": None},
                      "response": None, "attempts": 4, "findings": [f("ssrp.port_unreachable")]}],
          checks=[chk("!icmp && udp.dstport == 1434", 4), chk("icmp.type == 3 && icmp.code == 3", 4)])
def sc_ssrp_port_unreachable(lab):
    lab.start_capture()
    rc, out = pytds(lab, instance="LABINST", login_timeout=5)
    expect(rc == 2 and "TypeError" not in out, "pytds failed on the SSRP lookup: " + out)


@scenario("error-after-rows", "tsql",
          "tsql SELECT: the server sends 3 rows, then ERROR 8134 (divide by zero, class 16) and DONE(ERROR).",
          connections=[conn(S4 + ":1433", "ok", [f("login.ok"), f("login.cleartext"),
                                                   f("request.error", number=8134, state=1, **{"class": 16})])],
          checks=[chk("tds.error.number == 8134", 1, 1), chk("tds.row", 1)])
def sc_error_after_rows(lab):
    lab.start_server({"encryption": "off", "query": {"rows": 3, "error_after_rows": {
        "number": 8134, "state": 1, "class": 16, "message": "Divide by zero error encountered."}}})
    lab.start_capture()
    rc, out = tsql(lab)
    expect("8134" in out, "tsql saw 8134: " + out[-300:])


@scenario("attention-pytds", "pytds",
          "pytds with timeout=2 runs a query the server delays 8 s: on the socket timeout pytds sends "
          "ATTENTION and closes the connection at once; the server's first answer (the cut-short "
          "response) draws a RST from the client's kernel, so the DONE(ATTN) never reaches the wire.",
          connections=[conn(S4 + ":1433", "aborted",
                            [f("login.ok"), f("login.cleartext"),
                             f("request.attention", count=1, after_s=2, acknowledged=False),
                             f("reset.by_client", phase="request")])],
          checks=[chk("tds.type == 0x06", 1, 1), chk("tcp.flags.reset == 1 && ip.src == %s" % C4, 1),
                  chk("tds.done.status.attn == 1", 0, 0)])
def sc_attention_pytds(lab):
    lab.start_server({"encryption": "off", "query_rules": [{"match": "slow", "delay_s": 8}]})
    lab.start_capture()
    rc, out = pytds(lab, mode="query", sql="select 'slow' as lab_rows", timeout=2)
    expect(rc == 3 and "imeout" in out, "pytds timed out: " + out)
    expect('"attention"' in lab.read_log("server.log"), "server saw the attention")


@scenario("server-idle-reset", "pytds",
          "pytds logs in and stays idle; after 6 s without a request the server aborts the connection "
          "(RST, TTL 63 like all its packets). At 9 s the client sends its query into the dead connection "
          "and draws a second RST from the server's kernel.",
          connections=[conn(S4 + ":1433", "idle_killed",
                            [f("login.ok"), f("login.cleartext"), f("reset.by_server", phase="idle"),
                             f("idle.killed", by="server", idle_s=6)])],
          checks=[chk("tcp.flags.reset == 1 && ip.src == %s && ip.ttl == 63" % S4, 1),
                  chk("tcp.flags.reset == 1 && ip.src == %s" % C4, 0, 0)])
def sc_server_idle_reset(lab):
    lab.start_server({"encryption": "off", "idle_rst_s": 6})
    lab.start_capture()
    rc, out = pytds(lab, mode="sleep_query", sleep=9)
    expect(rc == 3, "query after the reset failed: " + out)


@scenario("server-fin-idle", "pytds",
          "pytds logs in and stays idle 9 s; after 6 s without a request the server closes first (FIN); "
          "the client closes (FIN) when it wakes up, without a query.",
          connections=[conn(S4 + ":1433", "ok", [f("login.ok"), f("login.cleartext"), f("tcp.server_closed", phase="idle")])],
          checks=[chk("tcp.flags.fin == 1 && ip.src == %s" % S4, 1, 1), chk("tcp.flags.fin == 1 && ip.src == %s" % C4, 1, 1),
                  chk("tcp.flags.reset == 1", 0, 0)])
def sc_server_fin_idle(lab):
    lab.start_server({"encryption": "off", "idle_fin_s": 6})
    lab.start_capture()
    rc, out = pytds(lab, mode="sleep_close", sleep=9)
    expect(rc == 0 and "closed" in out, "pytds closed: " + out)


MASS = 6


@scenario("mass-reset", "pytds",
          "%d pytds clients log in and stay idle 9 s; after 5 s without a request the server aborts all of "
          "them within a few milliseconds (RST each)." % MASS,
          connections=[conn(S4 + ":1433", "idle_killed", [f("login.ok"), f("login.cleartext"), f("reset.by_server", phase="idle"),
                                                            f("idle.killed", by="server", idle_s=5)])
                       for _ in range(MASS)],
          capture_findings=[f("pattern.mass_reset", server=S4 + ":1433", connections=MASS)],
          checks=[chk("tcp.flags.syn == 1 && tcp.flags.ack == 0", MASS, MASS),
                  chk("tcp.flags.reset == 1 && ip.src == %s && tcp.seq > 1 && frame.time_relative < 8" % S4, MASS)])
def sc_mass_reset(lab):
    lab.start_server({"encryption": "off", "idle_rst_s": 5})
    lab.start_capture()
    procs = [lab.spawn("c", pytds_args(mode="sleep_query", sleep=9), 30, "client-%d.log" % i) for i in range(MASS)]
    for p in procs:
        p.wait(30)
    resets = lab.read_log("server.log").count('"event": "rst"')
    expect(resets == MASS, "server reset %d of %d connections" % (resets, MASS))


BACKLOG_CLIENTS = 5


@scenario("listen-backlog", "pytds",
          "The server listens with backlog 1 and never accepts. %d pytds clients connect at once: the "
          "kernel completes the handshake for the first 2 (they send PRELOGIN, get no answer and give up "
          "after their 4 s login timeout), the SYNs of the other 3 are dropped (SYN retries, no SYN-ACK) "
          "until they give up too. pytds' connect retries are off (one connection per client)." % BACKLOG_CLIENTS,
          connections=[conn(S4 + ":1433", "login_timeout",
                            [f("login.timeout", pending_step="prelogin", waited_s=4),
                             f("request.attention", count=1, acknowledged=False)],
                            note="on its login timeout pytds sends ATTENTION (type 6) and then FIN")
                       for _ in range(2)] +
                      [conn(S4 + ":1433", "no_answer", [f("tcp.no_answer", attempts=4, waited_s=4)],
                            note="pytds closes the SYN_SENT socket at its 4 s login timeout: no packet marks the end")
                       for _ in range(BACKLOG_CLIENTS - 2)],
          capture_findings=[f("pattern.listen_backlog", server=S4 + ":1433", refused=BACKLOG_CLIENTS - 2)],
          checks=[chk("tcp.flags.syn == 1 && tcp.flags.ack == 1", 2, 2),
                  chk("tcp.analysis.retransmission && tcp.flags.syn == 1 && tcp.flags.ack == 0", 1),
                  chk("tds.type == 0x12", 2)])
def sc_listen_backlog(lab):
    lab.start_server({"encryption": "off", "accept": False, "backlog": 1})
    lab.start_capture()
    procs = []
    for i in range(BACKLOG_CLIENTS):
        procs.append(lab.spawn("c", pytds_args(login_timeout=4, no_retry=True), 20, "client-%d.log" % i))
        time.sleep(0.05)
    for p in procs:
        p.wait(30)


SCAN_PORTS = list(range(1, 101)) + [1433]
SCAN_FILTERED = list(range(20, 25))


@scenario("port-scan-nmap", "nmap -sS",
          "nmap SYN-scans ports 1-100 and 1433 of the server once each (--max-retries 0): 1433 answers "
          "(tdsserver listens; nmap's kernel resets the half-open connection), the router drops SYNs to "
          "ports 20-24, the server's kernel refuses the rest.",
          connections=[conn(S4 + ":%d" % p, "no_answer", [f("tcp.no_answer", attempts=1, waited_s=0)])
                       for p in SCAN_PORTS if p in SCAN_FILTERED] +
                      [conn(S4 + ":%d" % p, "refused", [f("tcp.refused", attempts=1)])
                       for p in SCAN_PORTS if p not in SCAN_FILTERED and p != 1433] +
                      [conn(S4 + ":1433", "reset", [f("reset.by_client", phase="handshake")],
                            note="nmap never completes the handshake: its kernel answers the SYN-ACK with RST "
                                 "(TTL 64, while nmap's own SYN had a TTL of nmap's choosing: not a forged reset)")],
          capture_findings=[f("pattern.port_scan", client=C4, server=S4, ports=len(SCAN_PORTS),
                              targets=len(SCAN_PORTS), hosts=1, probes=len(SCAN_PORTS), answered=1,
                              refused=len(SCAN_PORTS) - len(SCAN_FILTERED) - 1,
                              unanswered=len(SCAN_FILTERED), open=[S4 + ":1433"])],
          checks=[chk("tcp.flags.syn == 1 && tcp.flags.ack == 0", len(SCAN_PORTS), len(SCAN_PORTS)),
                  chk("tcp.flags.syn == 1 && tcp.flags.ack == 1", 1, 1),
                  chk("tcp.flags.reset == 1 && ip.src == %s" % S4, len(SCAN_PORTS) - len(SCAN_FILTERED) - 1,
                      len(SCAN_PORTS) - len(SCAN_FILTERED) - 1),
                  chk("tcp.flags.reset == 1 && ip.src == %s" % C4, 1, 1),
                  chk("tcp.len > 0", 0, 0)])
def sc_port_scan_nmap(lab):
    lab.start_server({"encryption": "off"})
    lab.iptables("r", ["-A", "FORWARD", "-p", "tcp", "--syn", "--dport", "20:24", "-j", "DROP"])
    lab.start_capture()
    ports = ",".join(str(p) for p in SCAN_PORTS)
    r = lab.run("c", ["nmap", "-sS", "-Pn", "-n", "--max-retries", "0", "--max-rtt-timeout", "300ms",
                      "-p", ports, S4], timeout=60, check=False)
    expect(r.returncode == 0 and "1433/tcp open" in r.stdout, "nmap found 1433 open: " + r.stdout[-400:])


@scenario("syn-retry-then-success", "tsql",
          "The router drops SYNs to 1433 for the first 2.5 s: the SYNs at 0, 1 and 2 s go unanswered, the "
          "retry at 3 s gets through, then a normal cleartext login and query.",
          connections=[conn(S4 + ":1433", "ok", [f("tcp.syn_retry", attempts=4, delay_s=3), f("login.ok"),
                                                   f("login.cleartext"), f("login.slow", slowest_step="tcp_handshake")],
                            note="login.slow: the contract measures a login from the first SYN, 3 s before the SYN-ACK")],
          checks=[chk("tcp.flags.syn == 1 && tcp.flags.ack == 0", 4, 4), chk("tcp.flags.syn == 1 && tcp.flags.ack == 1", 1, 1),
                  chk("tds.loginack", 1, 1)])
def sc_syn_retry(lab):
    lab.start_server({"encryption": "off"})
    rule = ["FORWARD", "-p", "tcp", "--syn", "--dport", "1433", "-j", "DROP"]
    lab.iptables("r", ["-A"] + rule)
    lab.start_capture()
    timer = threading.Timer(2.5, lambda: lab.iptables("r", ["-D"] + rule))
    timer.start()
    try:
        rc, out = tsql(lab)
    finally:
        timer.join(10)
    expect(rc == 0 and "(3 rows affected)" in out, "tsql query ok after SYN retries: " + out[-300:])


@scenario("slow-login", "tsql",
          "The server waits 2.5 s between the LOGIN7 and its login response; the login then succeeds.",
          connections=[conn(S4 + ":1433", "ok", [f("login.ok"), f("login.cleartext"),
                                                   f("login.slow", slowest_step="login7_to_loginack")],
                            note="total_ms >= 2500; the gap is between LOGIN7 and the LOGINACK response")],
          checks=[chk("tds.type == 0x10 && frame.time_relative < 1.5", 1, 1),
                  chk("tds.loginack && frame.time_relative > 2.5", 1, 1)])
def sc_slow_login(lab):
    lab.start_server({"encryption": "off", "delay": {"login": 2.5}})
    lab.start_capture()
    rc, out = tsql(lab)
    expect(rc == 0 and "(3 rows affected)" in out, "tsql query ok: " + out[-300:])


@scenario("login-timeout", "pytds",
          "The server holds the login response for 6 s; pytds (login_timeout=3, no connect retry) gives up "
          "after 3 s: it sends ATTENTION and FIN. The server's late login response then draws a RST from "
          "the client's kernel.",
          connections=[conn(S4 + ":1433", "login_timeout",
                            [f("login.timeout", pending_step="login", waited_s=3), f("login.cleartext"),
                             f("reset.by_client", phase="login")],
                            note="LOGINACK arrives ~3 s after the client's FIN; the client's kernel answers it "
                                 "with RST. The ATTENTION belongs to the login, so no request.attention")],
          checks=[chk("tds.type == 0x10", 1, 1), chk("tds.type == 0x06", 1, 1),
                  chk("tcp.flags.fin == 1 && ip.src == %s" % C4, 1), chk("tcp.flags.reset == 1 && ip.src == %s" % C4, 1)])
def sc_login_timeout(lab):
    lab.start_server({"encryption": "off", "delay": {"login": 6}})
    lab.start_capture()
    rc, out = pytds(lab, login_timeout=3, no_retry=True)
    expect(rc == 2, "pytds login timed out: " + out)
    time.sleep(3.5)  # the server's late answer and the client's RST


@scenario("request-abandoned", "pytds",
          "pytds runs a query the server delays 30 s (no command timeout); after 2 s the client process is "
          "terminated (SIGTERM), so its kernel closes the connection with FIN while the request is unanswered.",
          connections=[conn(S4 + ":1433", "aborted", [f("login.ok"), f("login.cleartext"),
                                                        f("request.abandoned", after_s=2)])],
          checks=[chk("tds.type == 0x01", 1, 1), chk("tcp.flags.fin == 1 && ip.src == %s" % C4, 1, 1),
                  chk("tds.type == 0x06", 0, 0)])
def sc_request_abandoned(lab):
    lab.start_server({"encryption": "off", "query_rules": [{"match": "slow", "delay_s": 30}]})
    lab.start_capture()
    p = lab.spawn("c", pytds_args(sql="select 'slow' as lab_rows"), 40, "client.log")
    lab.wait_log("server.log", '"kind": "batch"')
    time.sleep(2)
    p.send_signal(signal.SIGTERM)  # timeout(1) passes it on to the client
    p.wait(10)


@scenario("encryption-mismatch", "pytds",
          "The server forces encryption; pytds (no TLS support) offers ENCRYPT_NOT_SUP. The server answers "
          "ENCRYPT_REQ and closes the connection right after its PRELOGIN response.",
          connections=[conn(S4 + ":1433", "aborted",
                            [f("prelogin.encryption_mismatch", client="not_supported", server="required")])],
          checks=[chk("tds.prelogin.option.encryption == 2", 1, 1), chk("tds.prelogin.option.encryption == 3", 1, 1),
                  chk("tds.type == 0x10", 0, 0)])
def sc_encryption_mismatch(lab):
    lab.start_server({"encryption": "on"})
    lab.start_capture()
    rc, out = pytds(lab, no_retry=True)
    expect(rc == 2, "pytds refused to go on: " + out)


@scenario("tls-cert-rejected", "tedious",
          "tedious with encrypt=true and trustServerCertificate=false: Node completes the TLS 1.2 handshake "
          "(inside PRELOGIN packets, both Finished messages exchanged), then rejects the self-signed "
          "certificate and closes with FIN: no TLS alert, no LOGIN7.",
          connections=[conn(S4 + ":1433", "tls_failed",
                            [f("tls.handshake_failed", stage="after_finished"),
                             f("tls.certificate_problem", problem="self_signed_fallback")],
                            note="stage 'after_finished' is not in findings.md's list (after_client_hello, "
                                 "after_server_hello, after_certificate, alert): Node validates the certificate "
                                 "only once the handshake is complete, so the wire shows a finished handshake "
                                 "followed by the client's FIN and no application data")],
          checks=[chk("tls.handshake.type == 11", 1, 1), chk("tls.record.content_type == 21", 0, 0),
                  chk("tls.record.content_type == 23", 0, 0), chk("tds.type == 0x10", 0, 0),
                  chk("tcp.flags.fin == 1 && ip.src == %s" % C4, 1, 1)])
def sc_tls_cert_rejected(lab):
    lab.start_server({"encryption": "off"})
    lab.start_capture()
    rc, out = tedious(lab, {"encrypt": True, "trustServerCertificate": False})
    expect(rc == 2 and "connect failed" in out, "tedious rejected the certificate: " + out)


@scenario("sspi-failed-impacket", "impacket mssqlclient",
          "impacket mssqlclient -windows-auth: LOGIN7 with integrated security and an NTLM NEGOTIATE in its "
          "SSPI field (inside login-only TLS); instead of an SSPI challenge the server answers ERROR 18452 "
          "(untrusted domain) in cleartext; impacket, expecting NTLMSSP, fails to parse it and closes.",
          connections=[conn(S4 + ":1433", "login_failed",
                            [f("login.sspi_failed", number=18452),
                             f("login.failed", number=18452, state=1, **{"class": 14}),
                             f("tls.certificate_problem", problem="self_signed_fallback")])],
          checks=[chk("tds.error.number == 18452", 1, 1), chk("tds.loginack", 0, 0)],
          tshark_opts=["-o", "tds.protocol_type:TDS 7.1"])
def sc_sspi_failed(lab):
    lab.start_server({"encryption": "off"})
    lab.start_capture()
    exe = shutil.which("mssqlclient.py") or "mssqlclient.py"
    r = lab.run("c", [exe, "-windows-auth", "LAB/%s:%s@%s" % (USER, PASSWORD, S4), "-command", "select 1"],
                timeout=25, check=False)
    out = (r.stdout + r.stderr).replace(PASSWORD, "<password>")
    with open(os.path.join(lab.dir, "client.log"), "w") as fh:
        fh.write(out)
    # impacket expects an SSPI challenge, gets the ERROR token instead and prints it raw.
    expect("[18452, 1]" in lab.read_log("server.log") and "NTLMSSP" in out, "impacket got 18452: " + out[-400:])


NTLM_CHALLENGE_NOTE = ("tshark 4.0 shows the server's SSPI token (0xED) but stops there as [Malformed Packet] "
                       "instead of handing it to NTLMSSP, so ntlmssp.messagetype == 2 never matches; the bytes "
                       "NTLMSSP\\0 + type 2 in that frame are checked instead (impacket parsed it and answered)")


def impacket_windows_auth(lab):
    exe = shutil.which("mssqlclient.py") or "mssqlclient.py"
    r = lab.run("c", [exe, "-windows-auth", "LAB/%s:%s@%s" % (USER, PASSWORD, S4), "-command", "select 1"],
                timeout=25, check=False)
    out = (r.stdout + r.stderr).replace(PASSWORD, "<password>")
    with open(os.path.join(lab.dir, "client.log"), "w") as fh:
        fh.write(out)
    return out


def ntlm_round_checks(*outcome):
    """The tshark checks of an NTLM SSPI round (CHALLENGE from the server in an SSPI token, the
    client's AUTHENTICATE in an SSPI packet), then the checks of how the login ended."""
    return [chk("tds.type == 0x11", 1, 1), chk("tcp.srcport == 1433 && tds.sspi", 1, 1),
            chk("tcp.srcport == 1433 && tds.sspi && tcp.payload contains 4e:54:4c:4d:53:53:50:00:02:00:00:00", 1, 1,
                note=NTLM_CHALLENGE_NOTE),
            chk("ntlmssp.messagetype == 3 && ntlmssp.auth.username == \"%s\"" % USER, 1, 1)] + list(outcome)


@scenario("sspi-ntlm-challenge-failed", "impacket mssqlclient",
          "impacket mssqlclient -windows-auth: LOGIN7 with integrated security and an NTLM NEGOTIATE (inside "
          "login-only TLS); the server answers an SSPI token with an NTLM CHALLENGE, impacket sends the NTLM "
          "AUTHENTICATE in an SSPI packet (0x11), and the server rejects it with ERROR 18452 (untrusted domain); "
          "the SSPI round is cleartext.",
          connections=[conn(S4 + ":1433", "login_failed",
                            [f("login.sspi_failed", number=18452, auth="ntlm"),
                             f("login.failed", number=18452, state=1, **{"class": 14}),
                             f("tls.certificate_problem", problem="self_signed_fallback")],
                            note="auth ntlm: LOGIN7 went inside login-only TLS, the SSPI packet names NTLM")],
          checks=ntlm_round_checks(chk("tds.error.number == 18452", 1, 1), chk("tds.loginack", 0, 0)),
          tshark_opts=["-o", "tds.protocol_type:TDS 7.1"])
def sc_sspi_ntlm_failed(lab):
    lab.start_server({"encryption": "off", "ntlm": "challenge-then-fail"})
    lab.start_capture()
    out = impacket_windows_auth(lab)
    log = lab.read_log("server.log")
    expect("ntlm_authenticate" in log and "[18452, 1]" in log, "NTLM round then 18452: " + out[-400:])


@scenario("sspi-ntlm-challenge-ok", "impacket mssqlclient",
          "impacket mssqlclient -windows-auth: LOGIN7 with integrated security and an NTLM NEGOTIATE (inside "
          "login-only TLS); the server answers an NTLM CHALLENGE in an SSPI token, impacket sends the NTLM "
          "AUTHENTICATE in an SSPI packet (0x11), the server accepts it with LOGINACK and answers one query.",
          connections=[conn(S4 + ":1433", "ok",
                            [f("login.ok"),
                             f("tls.certificate_problem", problem="self_signed_fallback")])],
          checks=ntlm_round_checks(chk("tds.loginack", 1, 1), chk("tds.error.number == 18452", 0, 0)),
          tshark_opts=["-o", "tds.protocol_type:TDS 7.1"])
def sc_sspi_ntlm_ok(lab):
    lab.start_server({"encryption": "off", "ntlm": "challenge-then-success"})
    lab.start_capture()
    out = impacket_windows_auth(lab)
    log = lab.read_log("server.log")
    expect("ntlm_authenticate" in log and "login_ok" in log, "NTLM round then LOGINACK: " + out[-400:])


@scenario("sspi-ntlm-anonymous", "impacket mssqlclient",
          "impacket mssqlclient -windows-auth with an empty user name and -no-pass: the NTLM AUTHENTICATE "
          "carries no user, no domain and empty responses (null credentials, what a second hop without "
          "delegation sends); the server rejects the login with ERROR 18452.",
          connections=[conn(S4 + ":1433", "login_failed",
                            [f("login.sspi_failed", number=18452, auth="ntlm", null_credentials=True),
                             f("login.failed", number=18452, state=1, **{"class": 14}),
                             f("tls.certificate_problem", problem="self_signed_fallback")],
                            login={"sspi": {"mechanism": "ntlm", "anonymous": True}})],
          checks=[chk("tds.type == 0x11", 1, 1), chk("ntlmssp.messagetype == 3", 1, 1),
                  chk("ntlmssp.messagetype == 3 && ntlmssp.auth.username == \"NULL\"", 1, 1),
                  chk("tds.error.number == 18452", 1, 1)],
          tshark_opts=["-o", "tds.protocol_type:TDS 7.1"])
def sc_sspi_ntlm_anonymous(lab):
    lab.start_server({"encryption": "off", "ntlm": "challenge-then-fail"})
    lab.start_capture()
    exe = shutil.which("mssqlclient.py") or "mssqlclient.py"
    r = lab.run("c", [exe, "-windows-auth", "-no-pass", "LAB/@%s" % S4, "-command", "select 1"],
                timeout=25, check=False)
    with open(os.path.join(lab.dir, "client.log"), "w") as fh:
        fh.write(r.stdout + r.stderr)
    log = lab.read_log("server.log")
    expect("ntlm_authenticate" in log and "[18452, 1]" in log, "anonymous NTLM round then 18452: " + r.stdout[-400:])


@scenario("retransmissions", "pytds",
          "The router drops every 4th client data segment of 1000+ bytes to 1433 while pytds sends a "
          "60 kB SQL batch; the client retransmits each dropped segment (visible in this client-side "
          "capture) and the query completes.",
          connections=[conn(S4 + ":1433", "ok", [f("login.ok"), f("login.cleartext"), f("tcp.retransmissions")],
                            note="count = frames tshark flags tcp.analysis.retransmission/fast_retransmission")],
          checks=[chk("tcp.analysis.retransmission || tcp.analysis.fast_retransmission", 3),
                  chk("tds.done.donerowcount64 == 3", 1, 1)])
def sc_retransmissions(lab):
    lab.start_server({"encryption": "off"})
    lab.iptables("r", ["-A", "FORWARD", "-p", "tcp", "--dport", "1433", "-m", "length", "--length", "1000:65535",
                       "-m", "statistic", "--mode", "nth", "--every", "4", "--packet", "0", "-j", "DROP"])
    lab.start_capture()
    rc, out = pytds(lab, mode="big", size=60000)
    expect(rc == 0 and "rows: 3" in out, "pytds big query ok: " + out)


@scenario("retransmission-storm", "pytds",
          "pytds logs in; 1 s later the router starts dropping everything from the client to 1433. At 3 s "
          "the client sends its query, which is retransmitted with exponential backoff until the client's "
          "kernel gives up (tcp_retries2=4, about 6 s); the connection dies without FIN or RST.",
          connections=[conn(S4 + ":1433", "aborted", [f("login.ok"), f("login.cleartext"),
                                                        f("tcp.retransmission_storm", count=5, span_s=3.3),
                                                        f("tcp.retransmissions", count=5, max_per_segment=5)],
                            note="the query at ~3.0 s, retransmissions at ~3.2, 3.4, 3.8, 4.7, 6.3 s; the kernel "
                                 "gives up silently a few seconds later (no FIN, no RST)")],
          checks=[chk("tcp.analysis.retransmission && ip.src == %s" % C4, 5, 5), chk("tcp.flags.reset == 1", 0, 0),
                  chk("tcp.flags.fin == 1", 0, 0)])
def sc_retransmission_storm(lab):
    lab.start_server({"encryption": "off"})
    lab.run("c", ["sysctl", "-qw", "net.ipv4.tcp_retries2=4"])
    lab.start_capture(seconds=40)
    p = lab.spawn("c", pytds_args(mode="sleep_query", sleep=3), 30, "client.log")
    lab.wait_log("server.log", '"login_ok"')
    time.sleep(1)
    lab.iptables("r", ["-I", "FORWARD", "-p", "tcp", "-s", C4, "--dport", "1433", "-j", "DROP"])
    p.wait(30)
    expect("query failed" in lab.read_log("client.log"), "client gave up: " + lab.read_log("client.log"))


@scenario("ssrp-slow", "pytds",
          "The Browser answers each request only after 1.5 s, one at a time. pytds gives each request a "
          "short slice of its login timeout and re-asks from a new UDP port each time (at ~0, 0.6, 1.9, "
          "4.5 s); the answers to its closed sockets draw ICMP port unreachable from the client, the answer "
          "to the 4th request (at ~6 s) is taken and the client logs in on tcp 14330.",
          connections=[conn("%s:%d" % (S4, INST_PORT), "ok", [f("login.ok"), f("login.cleartext")])],
          exchanges=[{"protocol": "ssrp", "server": S4 + ":1434", "request": {"opcode": 3, "instance": None},
                      "response": {"instances": [{"instance": "LABINST", "tcp_port": INST_PORT}]},
                      "attempts": 4, "findings": [f("ssrp.slow", delay_ms=1500)]}],
          checks=[chk("!icmp && udp.dstport == 1434", 4, 4), chk("!icmp && udp.srcport == 1434", 4, 4),
                  chk("icmp.type == 3 && icmp.code == 3 && ip.src == %s" % C4, 3, 3), chk("tds.loginack", 1, 1)],
          decode_port=INST_PORT)
def sc_ssrp_slow(lab):
    lab.start_server({"encryption": "off", "port": INST_PORT})
    lab.start_ssrp({"delay_s": 1.5, "instances": [{"name": "LABINST", "tcp": INST_PORT}]})
    lab.start_capture()
    rc, out = pytds(lab, instance="LABINST", login_timeout=8)
    expect(rc == 0 and "rows: 3" in out, "pytds via slow SSRP ok: " + out)
    time.sleep(2)


POOL_COUNT = 120


@scenario("no-pooling", "pytds",
          "One pytds process opens %d connections in a row (connect, one SELECT, close) within a few seconds: "
          "an application without connection pooling." % POOL_COUNT,
          connections=[conn(S4 + ":1433", "ok", [f("login.ok"), f("login.cleartext")]) for _ in range(POOL_COUNT)],
          capture_findings=[f("pattern.no_pooling", client=C4, connections=POOL_COUNT)],
          checks=[chk("tcp.flags.syn == 1 && tcp.flags.ack == 0", POOL_COUNT, POOL_COUNT),
                  chk("tds.loginack", POOL_COUNT, POOL_COUNT)])
def sc_no_pooling(lab):
    lab.start_server({"encryption": "off"})
    lab.start_capture()
    rc, out = pytds(lab, mode="loop", count=POOL_COUNT, proc_timeout=60)
    expect(rc == 0 and "loop done" in out, "pytds loop ok: " + out[-300:])


@scenario("login-redirected", "tedious",
          "tedious (encrypt=false: no TLS) logs in on 1433; the server answers LOGINACK followed by a routing "
          "ENVCHANGE (type 20) to 198.51.100.20:14330; tedious closes and logs in again there, then runs its "
          "query on the second connection.",
          connections=[conn(S4 + ":1433", "ok", [f("login.redirected", to_server=S4, to_port=INST_PORT),
                                                   f("login.ok"), f("login.cleartext")],
                            note="LOGINACK is present too; the routing ENVCHANGE follows it"),
                       conn("%s:%d" % (S4, INST_PORT), "ok", [f("login.ok"), f("login.cleartext")])],
          checks=[chk("tds.envchange.type == 20", 1, 1), chk("tds.loginack", 2, 2),
                  chk("tcp.flags.syn == 1 && tcp.flags.ack == 0 && tcp.dstport == %d" % INST_PORT, 1, 1)],
          tshark_opts=["-d", "tcp.port==%d,tds" % INST_PORT])
def sc_login_redirected(lab):
    lab.start_server({"encryption": "off", "routing": {"server": S4, "port": INST_PORT}})
    lab.start_server({"encryption": "off", "port": INST_PORT}, logname="server2.log")
    lab.start_capture()
    rc, out = tedious(lab, {"encrypt": False})
    expect(rc == 0 and "rows: 3" in out, "tedious followed the redirect: " + out)
    expect('"request"' in lab.read_log("server2.log"), "query ran on the routed server")


@scenario("keepalive-unanswered", "tedious",
          "tedious (encrypt=false) logs in and stays idle. It enables TCP keep-alive with a 30 s idle time; "
          "Node's libuv sets the probe interval to 1 s and the count to 10 (as Windows does). After the "
          "login the router silently drops the connection both ways: 10 probes, 1 s apart from ~30 s on, go "
          "unanswered and the client's kernel aborts the connection with a RST.",
          connections=[conn(S4 + ":1433", "idle_killed",
                            [f("login.ok"), f("login.cleartext"), f("tcp.keepalive_unanswered", probes=10, interval_s=1),
                             f("idle.killed", by="unknown", keepalive_probes=10)],
                            note="the RST is the client kernel's abort (dropped by the router, never reaches the server)")],
          checks=[chk("tcp.analysis.keep_alive && ip.src == %s" % C4, 9, 11), chk("tcp.flags.reset == 1 && ip.src == %s" % C4, 1, 1),
                  chk("tcp.analysis.keep_alive_ack", 0, 0), chk("tcp.len > 0 && frame.time_relative > 5", 0, 0)])
def sc_keepalive_unanswered(lab):
    lab.start_server({"encryption": "off"})
    lab.start_capture(seconds=80)
    # The query would come after the abort; it only matters that the client stays idle that long.
    p = lab.spawn("c", ["node", os.path.join(HERE, "node", "client.js"), json.dumps(
        {"server": S4, "password": PASSWORD, "encrypt": False, "idleMs": 48000, "hardStopMs": 55000})], 65,
        "client.log", env=dict(os.environ, NODE_NO_WARNINGS="1"))
    lab.wait_log("server.log", '"kind": "batch"')  # tedious' SET batch right after the login
    time.sleep(1)
    lab.iptables("r", ["-I", "FORWARD", "-p", "tcp", "--dport", "1433", "-j", "DROP"])
    lab.iptables("r", ["-I", "FORWARD", "-p", "tcp", "--sport", "1433", "-j", "DROP"])
    p.wait(70)
    r = sh(["tshark", "-n", "-r", lab.capture, "-Y", "tcp.flags.reset == 1 && ip.src == %s" % C4])
    expect(r.stdout.strip() != "", "the client's kernel aborted the connection: " + lab.read_log("client.log"))


@scenario("one-direction", "pytds",
          "A healthy pytds login and query, captured with the BPF filter 'src host 192.0.2.10': only the "
          "client-to-server half of the conversation is in the file.",
          connections=[conn(S4 + ":1433", "ok", [f("capture.one_direction", seen="client_to_server"),
                                                   f("login.cleartext")],
                            note="the login's outcome cannot be seen (no server packets)")],
          checks=[chk("ip.src == %s" % S4, 0, 0), chk("tds.type == 0x10", 1, 1), chk("tds.type == 0x01", 1, 1)])
def sc_one_direction(lab):
    lab.start_server({"encryption": "off"})
    lab.start_capture(bpf="src host %s" % C4)
    rc, out = pytds(lab)
    expect(rc == 0 and "rows: 3" in out, "pytds query ok: " + out)


@scenario("snaplen-96", "tsql",
          "A healthy tsql login and query captured with snaplen 96: every frame longer than 96 bytes is cut "
          "(TDS payloads beyond the first ~30 bytes are missing).",
          connections=[conn(S4 + ":1433", "ok", [],
                            note="login facts are partly unreadable; the truncation is a capture-wide finding")],
          capture_findings=[f("capture.truncated_frames", snaplen=96)],
          checks=[chk("frame.len > frame.cap_len", 4), chk("frame.cap_len > 96", 0, 0)])
def sc_snaplen_96(lab):
    lab.start_server({"encryption": "off"})
    lab.start_capture(snaplen=96)
    rc, out = tsql(lab)
    expect(rc == 0 and "(3 rows affected)" in out, "tsql query ok: " + out[-300:])


@scenario("mid-stream", "pytds",
          "pytds logs in, idles 4 s, then runs a query; the capture starts only after the login, so the "
          "connection has no SYN and no login in the file.",
          connections=[conn(S4 + ":1433", "ok", [f("capture.mid_stream")])],
          checks=[chk("tcp.flags.syn == 1", 0, 0), chk("tds.type == 0x01", 1, 1), chk("tds.done.donerowcount64 == 3", 1, 1)])
def sc_mid_stream(lab):
    lab.start_server({"encryption": "off"})
    p = lab.spawn("c", pytds_args(mode="sleep_query", sleep=4), 30, "client.log")
    lab.wait_log("server.log", '"login_ok"')
    time.sleep(0.5)
    lab.start_capture()
    p.wait(30)
    expect("rows: 3" in lab.read_log("client.log"), "pytds query ok")


@scenario("duplicates-two-interfaces", "tsql",
          "A healthy tsql login and query captured in the router namespace on both of its interfaces "
          "(rc towards the client, rs towards the server), merged with mergecap: every forwarded packet is "
          "in the file twice, the second copy with TTL one lower and other MAC addresses.",
          connections=[conn(S4 + ":1433", "ok", [f("capture.duplicates"), f("login.ok"), f("login.cleartext")],
                            note="count = forwarded TCP packets (each seen on rc and rs); TTLs of the two copies "
                                 "differ by 1, so duplicates must be matched on IP id + TCP header, not whole bytes")],
          # Wireshark treats the second copies as retransmissions and does not dissect them again.
          checks=[chk("ip.src == %s && ip.ttl == 64 && tcp.len > 0" % S4, 3, 3),
                  chk("ip.src == %s && ip.ttl == 63 && tcp.len > 0" % S4, 3, 3),
                  chk("ip.src == %s && ip.ttl == 63 && tcp.len > 0" % C4, 3, 3),
                  chk("tds.type == 0x10", 1, 1), chk("tds.loginack", 1, 1)])
def sc_duplicates(lab):
    lab.start_server({"encryption": "off"})
    a, b = os.path.join(lab.dir, "rc.pcap"), os.path.join(lab.dir, "rs.pcap")
    lab.start_capture(where="r", iface="rc", path=a)
    lab.start_capture(where="r", iface="rs", path=b)
    rc, out = tsql(lab)
    expect(rc == 0 and "(3 rows affected)" in out, "tsql query ok: " + out[-300:])
    lab.stop_capture()
    sh(["mergecap", "-F", "pcap", "-w", lab.capture, a, b])


@scenario("packet-loss", "pytds (derived)",
          "Derived from healthy-pytds-plain.pcap with editcap, deleting the server's login response frame "
          "(the one holding LOGINACK): the client's ACK covers bytes the capture never saw, as when a capture "
          "drops packets.",
          connections=[conn(S4 + ":1433", "ok", [f("capture.packet_loss", gaps=1), f("login.cleartext")],
                            note="bytes = the deleted frame's TCP payload length")],
          checks=[chk("tds.loginack", 0, 0), chk("tcp.analysis.ack_lost_segment", 1)],
          offline=True)
def sc_packet_loss(lab):
    src = os.path.join(CAPTURES, "healthy-pytds-plain.pcap")
    r = sh(["tshark", "-n", "-r", src, "-d", "tcp.port==1433,tds", "-Y", "tds.loginack", "-T", "fields", "-e", "frame.number"])
    frame = r.stdout.split()[0]
    sh(["editcap", src, lab.capture, frame])
    lab.notes.append("editcap healthy-pytds-plain.pcap packet-loss.pcap %s (deleted frame)" % frame)


@scenario("truncated-file", "tsql (derived)",
          "Derived from healthy-tsql-plain.pcap: the file is cut 30 bytes into its last packet record, as a "
          "capture copied while still being written.",
          connections=[conn(S4 + ":1433", "ok", [f("login.ok"), f("login.cleartext")])],
          capture_findings=[f("capture.malformed", what="file ends in the middle of frame 16", input=0)],
          checks=[chk("tds.loginack", 1, 1)],
          offline=True)
def sc_truncated_file(lab):
    src = os.path.join(CAPTURES, "healthy-tsql-plain.pcap")
    r = sh(["tshark", "-n", "-r", src, "-T", "fields", "-e", "frame.cap_len"])
    last = int(r.stdout.split()[-1])
    with open(src, "rb") as fh:
        data = fh.read()
    with open(lab.capture, "wb") as fh:
        fh.write(data[: len(data) - last - 16 + 30])  # keep 16-byte record header + 30 bytes of the last frame
    lab.notes.append("healthy-tsql-plain.pcap cut 30 bytes into its last record")


def tls_legacy_scenario(name, version, client):
    tls_field = {"1.0": "0x0301", "1.1": "0x0302"}[version]

    @scenario(name, client,
              "The server only speaks TLS %s; %s (login-only encryption) negotiates it: TLS %s inside PRELOGIN "
              "packets for the LOGIN7, then a cleartext login response and query." % (version, client, version),
              connections=[conn(S4 + ":1433", "ok", [f("login.ok"), f("tls.legacy_version", version="TLS " + version),
                                                       f("tls.certificate_problem", problem="self_signed_fallback")],
                                login={"encryption": "login_only", "tls_version": "TLS " + version})],
              checks=[chk("tls.handshake.type == 2 && tls.handshake.version == %s" % tls_field, 1, 1),
                      chk("tds.type == 0x10", 0, 0)],
              tshark_opts=["-o", "tds.protocol_type:TDS 7.1"] if client.startswith("impacket") else [])
    def run(lab):
        lab.start_server({"encryption": "off", "tls_min": version, "tls_max": version})
        lab.start_capture()
        if client == "tsql":
            rc, out = tsql(lab, encryption="request")
            ok = rc == 0 and "(3 rows affected)" in out
        else:
            rc, out = impacket(lab)
            ok = rc == 0 and "row-3" in out
        expect(ok and '"TLSv%s"' % ("1" if version == "1.0" else version) in lab.read_log("server.log"),
               "TLS %s login ok: %s" % (version, out[-300:]))


tls_legacy_scenario("tls-1.0-tsql", "1.0", "tsql")
tls_legacy_scenario("tls-1.1-impacket", "1.1", "impacket mssqlclient")




@scenario("tls-no-common-version-old-server", "tedious",
          "The reverse of tls-no-common-version: the server speaks TLS 1.0 only; tedious (Node 20, TLS 1.2 "
          "minimum) offers 1.2/1.3, the server answers ServerHello 1.0 with its (self-signed) Certificate and "
          "ServerHelloDone; Node sends a fatal alert protocol_version (70) inside a PRELOGIN packet "
          "('unsupported protocol'), the server closes (FIN), then the client. No LOGIN7.",
          connections=[conn(S4 + ":1433", "tls_failed",
                            [f("tls.handshake_failed", stage="alert", alert="protocol_version", alert_level="fatal",
                               alert_from="client"),
                             f("tls.certificate_problem", problem="self_signed_fallback"),
                             f("tcp.server_closed", phase="login")],
                            note="no tls.legacy_version: the server offered 1.0 but the client refused it, so "
                                 "nothing was negotiated; the certificate is visible in the server's flight")],
          checks=[chk("tls.handshake.type == 2 && tls.handshake.version == 0x0301", 1, 1),
                  chk("tls.handshake.type == 11", 1, 1), chk("tls.handshake.type == 16", 0, 0),
                  chk("tls.alert_message.desc == 70 && tls.alert_message.level == 2 && ip.src == %s" % C4, 1, 1),
                  chk("tls.record.content_type == 21 && ip.src == %s" % S4, 0, 0),
                  chk("tds.type == 0x10", 0, 0), chk("tcp.flags.reset == 1", 0, 0)])
def sc_tls_no_common_version_old_server(lab):
    lab.start_server({"encryption": "off", "tls_min": "1.0", "tls_max": "1.0"})
    lab.start_capture()
    rc, out = tedious(lab, {"encrypt": True})
    expect(rc == 2, "tedious refused the server's TLS version: " + out)

# --- mixed capture: several scenarios interleaved with HTTP noise -------------------------------------

MIXED_SOURCES = ["healthy-tsql-plain", "healthy-pytds-ipv6", "login-failed-18456-s8", "refused",
                 "attention-tedious", "server-rst-mid-query", "tls-cert-expired", "tls-no-common-version",
                 "ssrp-silent", "dns-nxdomain"]
MIXED_STEP_S = 0.25
# One curl per URL (a connection each) and one curl fetching two URLs over one kept-alive connection.
MIXED_HTTP = [["/"], ["/missing.txt"], ["/index.html", "/lab.txt"], ["-I", "/lab.txt"]]
# Filters whose frame count in the merged file must equal the sum over the parts (the merge keeps
# every frame and the streams do not interfere).
MIXED_SUM_FILTERS = ["tcp.flags.syn == 1 && tcp.flags.ack == 0", "tcp.flags.reset == 1", "tds.type == 0x12",
                     "tds.type == 0x10", "tds.loginack", "tds.error.number == 18456", "tds.type == 0x06",
                     "tls.handshake.type == 11", "tls.alert_message.desc == 70", "udp.dstport == 1434",
                     "dns.flags.rcode == 3", "http.request", "http.response", "tcp.analysis.flags",
                     "tcp.analysis.reused_ports"]


def first_epoch(path):
    r = sh(["tshark", "-n", "-r", path, "-c", "1", "-T", "fields", "-e", "frame.time_epoch"])
    return float(r.stdout.split()[0])


def frame_count(path, display_filter):
    r = sh(["tshark", "-n", "-r", path, "-d", "tcp.port==1433,tds", "-Y", display_filter, "-T", "fields",
            "-e", "frame.number"])
    return len(r.stdout.split())


@scenario("mixed", "several (merged) + curl",
          "A mixed pcapng: the captures of %s, each shifted in time (editcap -t) to start %.2f s after the "
          "previous one, merged (mergecap) with real HTTP noise captured now on the client interface "
          "(python3 -m http.server --protocol HTTP/1.1 on 198.51.100.20:8080 in the server namespace, curl from the client "
          "namespace: %d connections, one of them fetching two URLs over a kept-alive connection, one 404). "
          "Every 5-tuple is distinct (the runner checks it), so the interleaved connections do not collide; "
          "the expected findings are the union of the parts' manifest entries (connection field 'from'), "
          "the HTTP connections have none."
          % (", ".join(MIXED_SOURCES), MIXED_STEP_S, len(MIXED_HTTP)))
def sc_mixed(lab):
    lab.capture = os.path.join(lab.dir, "mixed.pcapng")
    lab.final = os.path.join(CAPTURES, "mixed.pcapng")
    manifest = dict(load_manifest().get("scenarios", {}), **RUN_ENTRIES)  # parts made earlier in this run
    www = os.path.join(lab.dir, "www")
    os.makedirs(www)
    with open(os.path.join(www, "index.html"), "w") as fh:
        fh.write("<html><body>lab web server</body></html>\n")
    with open(os.path.join(www, "lab.txt"), "w") as fh:
        fh.write("not SQL\n" * 20)
    lab.spawn("s", [sys.executable, "-u", "-m", "http.server", "8080", "--bind", S4, "--directory", www,
                     "--protocol", "HTTP/1.1"], 40,
              "http.log")
    for _ in range(100):
        if lab.run("c", ["curl", "-s", "-o", "/dev/null", "--max-time", "1", "http://%s:8080/" % S4],
                   timeout=3, check=False).returncode == 0:
            break
        time.sleep(0.1)
    http_pcap = os.path.join(lab.dir, "http.pcap")
    lab.start_capture(path=http_pcap, bpf="tcp port 8080")
    codes = []
    for spec in MIXED_HTTP:
        args = []
        for a in spec:
            args += ["-o", "/dev/null", "http://%s:8080%s" % (S4, a)] if a.startswith("/") else [a]
        r = lab.run("c", ["curl", "-s", "-w", "%{http_code} ", "--max-time", "5"] + args,
                    timeout=8, check=False)
        codes += r.stdout.split()
        time.sleep(0.6)
    lab.stop_capture()
    expect(codes == ["200", "404", "200", "200", "200"], "curl answers: %r" % codes)
    lab.notes.append("http.server 8080 in the server ns; curl " + "; curl ".join(" ".join(x) for x in MIXED_HTTP))

    t0 = first_epoch(http_pcap)
    parts, conns, exchanges, seen = [http_pcap], {}, [], set()
    for client, _ in tcp_clients(http_pcap):
        conns[client] = {"server": S4 + ":8080", "outcome": "ok", "findings": [], "from": "http-noise",
                         "note": "HTTP (curl), not TDS: no finding"}
    for i, name in enumerate(MIXED_SOURCES):
        src = os.path.join(CAPTURES, name + ".pcap")
        entry = manifest.get(name)
        expect(entry is not None and entry.get("result") == "ok" and os.path.exists(src), "source %s ok" % name)
        shifted = os.path.join(lab.dir, name + ".shifted.pcap")
        delta = t0 + 0.05 + i * MIXED_STEP_S - first_epoch(src)
        sh(["editcap", "-t", "%.6f" % delta, src, shifted])
        parts.append(shifted)
        for c in entry["connections"]:
            expect(c["client"] not in conns, "client endpoint %s appears once" % c["client"])
            conns[c["client"]] = dict({k: v for k, v in c.items() if k != "client"}, **{"from": name})
        for x in entry["exchanges"]:
            exchanges.append(dict(x, **{"from": name}))
    sh(["mergecap", "-F", "pcapng", "-w", lab.capture] + parts)
    order = [client for client, _ in tcp_clients(lab.capture)]
    expect(sorted(order) == sorted(conns), "merged connections = the parts' (%d vs %d)" % (len(order), len(conns)))
    meta = SCENARIOS["mixed"]
    meta["connections"] = [conns[c] for c in order]
    meta["exchanges"] = exchanges
    checks = []
    for flt in MIXED_SUM_FILTERS:
        n = sum(frame_count(p, flt) for p in parts)
        expect(frame_count(lab.capture, flt) == n, "merged count of %s" % flt)
        checks.append(chk(flt, n, n, note="sum over the merged parts"))
    checks += [chk("tcp.port == 8080 && tcp.flags.syn == 1 && tcp.flags.ack == 0", len(MIXED_HTTP),
                   len(MIXED_HTTP), note="one HTTP connection per curl"),
               chk("http.response.code == 404", 1, 1), chk("tds && tcp.port == 8080", 0, 0)]
    meta["checks"] = checks
    lab.notes.append("editcap -t shifts: parts start %.2f s apart after the HTTP capture's first packet; "
                     "mergecap -F pcapng" % MIXED_STEP_S)

# --- certificates from the lab CA (made by make_lab_ca) ----------------------------------------------
# tedious with trustServerCertificate=false and the lab CA as its only trust anchor, so the certificate
# problem is exactly the one the scenario makes: an expired certificate, a certificate for another name,
# or (healthy) a valid one for the address the client dials.


def lab_cert_behaviour(lab, name, **extra):
    b = {"encryption": "off", "cert": os.path.join(lab.certdir, name + "-cert.pem"),
         "key": os.path.join(lab.certdir, name + "-key.pem")}
    b.update(extra)
    return b


def tedious_lab_ca(lab, **opts):
    o = {"encrypt": True, "trustServerCertificate": False, "caFile": os.path.join(lab.certdir, "ca.pem")}
    o.update(opts)
    return tedious(lab, o)


@scenario("tls-cert-expired", "tedious",
          "tedious with encrypt=true, trustServerCertificate=false and the lab CA trusted; the server presents a "
          "certificate from that CA for 198.51.100.20 valid 2024-01-01 .. 2025-01-01 (expired at capture time). "
          "Node completes the TLS 1.2 handshake inside PRELOGIN packets (both Finished messages), then fails "
          "'certificate has expired' and closes with FIN: no TLS alert, no LOGIN7.",
          connections=[conn(S4 + ":1433", "tls_failed",
                            [f("tls.handshake_failed", stage="after_finished"),
                             f("tls.certificate_problem", problem="expired", subject="CN=198.51.100.20",
                               issuer="CN=tdsscope lab CA", not_before="2024-01-01T00:00:00Z",
                               not_after="2025-01-01T00:00:00Z")],
                            note="stage 'after_finished' as in tls-cert-rejected (Node checks the chain after the "
                                 "handshake); the certificate's only problem is its validity (issuer is the "
                                 "client's trusted lab CA, the SAN holds the address dialled)")],
          checks=[chk("tls.handshake.type == 11", 1, 1),
                  chk('x509af.utcTime == "2025-01-01 00:00:00 (UTC)"', 1, 1, note="notAfter in the past"),
                  chk('x509af.utcTime == "2035-01-01 00:00:00 (UTC)"', 0, 0),
                  chk("x509ce.IPAddress.ipv4 == %s" % S4, 1, 1),
                  chk("tls.record.content_type == 21", 0, 0), chk("tls.record.content_type == 23", 0, 0),
                  chk("tds.type == 0x10", 0, 0), chk("tcp.flags.fin == 1 && ip.src == %s" % C4, 1, 1),
                  chk("tcp.flags.reset == 1", 0, 0)])
def sc_tls_cert_expired(lab):
    lab.start_server(lab_cert_behaviour(lab, "expired"))
    lab.start_capture()
    rc, out = tedious_lab_ca(lab)
    expect(rc == 2 and "expired" in out, "tedious rejected the expired certificate: " + out)


@scenario("tls-cert-name-mismatch", "tedious",
          "tedious dials 198.51.100.20 with encrypt=true, trustServerCertificate=false and the lab CA trusted "
          "(its ClientHello carries SNI '198.51.100.20'); the server presents a valid certificate from that CA "
          "for sql-other.lab.test only (CN and SAN dNSName). Node completes the TLS 1.2 handshake, then fails "
          "'Hostname/IP does not match certificate's altnames' and closes with FIN: no alert, no LOGIN7.",
          connections=[conn(S4 + ":1433", "tls_failed",
                            [f("tls.handshake_failed", stage="after_finished"),
                             f("tls.certificate_problem", problem="name_mismatch", subject="CN=sql-other.lab.test",
                               issuer="CN=tdsscope lab CA", server_name="198.51.100.20")],
                            note="the name the client used is visible as the SNI (tedious sends the IP literal "
                                 "there) and as the address dialled; the certificate is otherwise valid")],
          checks=[chk("tls.handshake.type == 11", 1, 1),
                  chk('tls.handshake.extensions_server_name == "%s"' % S4, 1, 1),
                  chk('x509ce.dNSName == "sql-other.lab.test"', 1, 1), chk("x509ce.IPAddress.ipv4", 0, 0),
                  chk("tls.record.content_type == 21", 0, 0), chk("tls.record.content_type == 23", 0, 0),
                  chk("tds.type == 0x10", 0, 0), chk("tcp.flags.fin == 1 && ip.src == %s" % C4, 1, 1)])
def sc_tls_cert_name_mismatch(lab):
    lab.start_server(lab_cert_behaviour(lab, "wrongname"))
    lab.start_capture()
    rc, out = tedious_lab_ca(lab)
    expect(rc == 2 and ("altnames" in out or "Hostname" in out or "IP" in out),
           "tedious rejected the certificate's name: " + out)


@scenario("healthy-tedious-lab-ca", "tedious",
          "tedious with encrypt=true, trustServerCertificate=false and the lab CA trusted; the server presents a "
          "valid certificate from that CA for IP 198.51.100.20 (2025 .. 2035): the client accepts it, full TLS 1.2, "
          "login, tedious' SET batch and an RPC SELECT inside TLS, FIN. No certificate finding.",
          connections=[conn(S4 + ":1433", "ok", [],
                            login={"outcome": "encrypted", "encryption": "full",
                                   "tls_version": "TLS 1.2"},
                            note="no tls.certificate_problem: CA-issued (not self-signed), valid at capture time, "
                                 "SAN IP matches the SNI and the address dialled; LOGINACK is encrypted")],
          checks=[chk("tls.handshake.type == 11", 1, 1), chk("x509ce.IPAddress.ipv4 == %s" % S4, 1, 1),
                  chk('x509af.utcTime == "2035-01-01 00:00:00 (UTC)"', 1, 1),
                  chk("tls.record.content_type == 23", 4), chk("tls.record.content_type == 21", 0, 0),
                  chk("tds.type == 0x10", 0, 0), chk("tcp.flags.reset == 1", 0, 0)])
def sc_healthy_tedious_lab_ca(lab):
    lab.start_server(lab_cert_behaviour(lab, "valid"))
    lab.start_capture()
    rc, out = tedious_lab_ca(lab)
    expect(rc == 0 and "rows: 3" in out, "tedious query ok with the lab CA: " + out)


@scenario("tds8-strict-tedious", "tedious",
          "TDS 8.0 strict encryption: tedious with encrypt='strict' and the lab CA trusted starts TLS 1.2 right "
          "after the TCP handshake (ALPN tds/8.0, SNI empty: an IP address is dialled); the server presents the "
          "valid lab-CA certificate for 198.51.100.20. PRELOGIN (client ENCRYPT_OFF, server OFF: meaningless "
          "in TDS 8.0, no TLS-in-PRELOGIN), LOGIN7, tedious' SET batch and an RPC SELECT all inside TLS, FIN.",
          connections=[conn(S4 + ":1433", "ok", [],
                            login={"outcome": "encrypted", "encryption": "strict",
                                   "tls_version": "TLS 1.2"},
                            note="no cleartext TDS at all: the first payload byte on the wire is the TLS "
                                 "ClientHello, so tdsscope sees TLS records on the SQL port and nothing of "
                                 "PRELOGIN or the login; no certificate finding (CA-issued, valid, SAN IP matches)")],
          checks=[chk("tls.handshake.type == 1 && tcp.seq == 1 && ip.src == %s" % C4, 1, 1,
                      note="the ClientHello is the client's first payload byte: TLS before any TDS"),
                  chk('tls.handshake.extensions_alpn_str == "tds/8.0"', 2, 2, note="ClientHello and ServerHello"),
                  chk("tls.handshake.type == 11", 1, 1), chk("x509ce.IPAddress.ipv4 == %s" % S4, 1, 1),
                  chk("tls.record.content_type == 23", 4), chk("tls.record.content_type == 21", 0, 0),
                  chk("tds", 0, 0), chk("tcp.flags.reset == 1", 0, 0)],
          tshark_opts=["-d", "tcp.port==1433,tls"])
def sc_tds8_strict_tedious(lab):
    lab.start_server(lab_cert_behaviour(lab, "valid", strict=True))
    lab.start_capture()
    rc, out = tedious_lab_ca(lab, encrypt="strict")
    expect(rc == 0 and "rows: 3" in out, "tedious strict query ok: " + out)
    log_text = lab.read_log("server.log")
    expect('"mode": "strict"' in log_text and '"alpn": "tds/8.0"' in log_text, "TDS 8.0 TLS with ALPN tds/8.0")


def tsql_lab_ca(lab, cert):
    """tsql (GnuTLS) with encryption=require, the lab CA as `ca file` and hostname checking; returns
    (rc, out, the TLS lines of FreeTDS' dump file: they say why the certificate was refused)."""
    lab.start_server(lab_cert_behaviour(lab, cert))
    lab.start_capture()
    dump = os.path.join(lab.dir, "tdsdump.log")
    rc, out = tsql(lab, encryption="require",
                   conf_extra="    ca file = %s\n    check certificate hostname = yes\n    dump file = %s\n"
                   % (os.path.join(lab.certdir, "ca.pem"), dump))
    try:
        with open(dump, errors="replace") as fh:
            why = "\n".join(l for l in fh.read().splitlines() if re.search(r"certif|tls|handshake", l, re.I))
        os.remove(dump)  # FreeTDS dumps the login packet too: keep no copy of it
    except OSError:
        why = ""
    with open(os.path.join(lab.dir, "client.log"), "a") as fh:
        fh.write("--- FreeTDS dump, TLS lines\n" + why + "\n")
    return rc, out, why


@scenario("tls-cert-expired-tsql", "tsql",
          "FreeTDS tsql (GnuTLS) with encryption=require, the lab CA as 'ca file' and 'check certificate "
          "hostname'; the server presents the lab CA's certificate for 198.51.100.20 valid 2024-01-01 .. "
          "2025-01-01. GnuTLS verifies the chain as soon as the ServerHello..ServerHelloDone flight arrives "
          "(dump: 'Certificate status: 1026' = invalid|expired, 'handshake failed: Error in the certificate') "
          "and tsql closes with FIN at once: no ClientKeyExchange, no alert, no LOGIN7.",
          connections=[conn(S4 + ":1433", "tls_failed",
                            [f("tls.handshake_failed", stage="after_certificate"),
                             f("tls.certificate_problem", problem="expired", subject="CN=198.51.100.20",
                               issuer="CN=tdsscope lab CA", not_before="2024-01-01T00:00:00Z",
                               not_after="2025-01-01T00:00:00Z")],
                            note="unlike Node (tls-cert-expired: after_finished) GnuTLS rejects inside the "
                                 "handshake, right after the server's Certificate, without sending an alert")],
          checks=[chk("tls.handshake.type == 11", 1, 1), chk("tls.handshake.type == 16", 0, 0,
                                                             note="no ClientKeyExchange"),
                  chk('x509af.utcTime == "2025-01-01 00:00:00 (UTC)"', 1, 1, note="notAfter in the past"),
                  chk("tls.record.content_type == 21", 0, 0), chk("tds.type == 0x10", 0, 0),
                  chk("tcp.flags.fin == 1 && ip.src == %s" % C4, 1, 1), chk("tcp.flags.reset == 1", 0, 0)])
def sc_tls_cert_expired_tsql(lab):
    rc, out, why = tsql_lab_ca(lab, "expired")
    expect(rc != 0 and "(3 rows affected)" not in out, "tsql rejected the expired certificate: " + out[-500:])


@scenario("tls-cert-name-mismatch-tsql", "tsql",
          "FreeTDS tsql (GnuTLS) dials 198.51.100.20 with encryption=require, the lab CA as 'ca file' and 'check "
          "certificate hostname = yes' (no SNI: the host is an IP literal); the server presents a valid lab CA "
          "certificate for sql-other.lab.test only. FreeTDS checks the name when the Certificate arrives "
          "(dump: 'Certificate hostname does not match') and closes with FIN: no ClientKeyExchange, no alert.",
          connections=[conn(S4 + ":1433", "tls_failed",
                            [f("tls.handshake_failed", stage="after_certificate"),
                             f("tls.certificate_problem", problem="name_mismatch", subject="CN=sql-other.lab.test",
                               issuer="CN=tdsscope lab CA", server_name="198.51.100.20")],
                            note="no SNI here: the name the client used is only the address dialled")],
          checks=[chk("tls.handshake.type == 11", 1, 1), chk("tls.handshake.type == 16", 0, 0),
                  chk("tls.handshake.extensions_server_name", 0, 0),
                  chk('x509ce.dNSName == "sql-other.lab.test"', 1, 1), chk("x509ce.IPAddress.ipv4", 0, 0),
                  chk("tls.record.content_type == 21", 0, 0), chk("tds.type == 0x10", 0, 0),
                  chk("tcp.flags.fin == 1 && ip.src == %s" % C4, 1, 1)])
def sc_tls_cert_name_mismatch_tsql(lab):
    rc, out, why = tsql_lab_ca(lab, "wrongname")
    expect(rc != 0 and "(3 rows affected)" not in out, "tsql rejected the certificate's name: " + out[-500:])


@scenario("healthy-tsql-lab-ca", "tsql",
          "FreeTDS tsql (GnuTLS) with encryption=require (offers ENCRYPT_ON: full TLS), the lab CA as 'ca file' "
          "and hostname checking; the server presents a valid lab CA certificate for IP 198.51.100.20: the "
          "handshake completes, login and a 3-row SELECT inside TLS 1.2, FIN. No certificate finding.",
          connections=[conn(S4 + ":1433", "ok", [],
                            login={"outcome": "encrypted", "encryption": "full",
                                   "tls_version": "TLS 1.2"},
                            note="the control for tls-cert-expired-tsql / tls-cert-name-mismatch-tsql: same client "
                                 "and settings, a certificate GnuTLS accepts")],
          checks=[chk("tls.handshake.type == 16", 1, 1), chk("x509ce.IPAddress.ipv4 == %s" % S4, 1, 1),
                  chk("tls.record.content_type == 23", 4), chk("tls.record.content_type == 21", 0, 0),
                  chk("tds.type == 0x10", 0, 0), chk("tcp.flags.reset == 1", 0, 0)])
def sc_healthy_tsql_lab_ca(lab):
    rc, out, why = tsql_lab_ca(lab, "valid")
    expect(rc == 0 and "(3 rows affected)" in out, "tsql query ok with the lab CA: " + out[-500:])


@scenario("tls-no-common-version", "tedious",
          "The server accepts TLS 1.3 only; tedious (encrypt=true, Node capped at TLS 1.2 by "
          "cryptoCredentialsDetails.maxVersion) sends a ClientHello without supported_versions (legacy "
          "version 1.2). The server answers, inside a PRELOGIN packet, a fatal alert protocol_version (70) "
          "and closes with FIN; tedious fails with 'alert protocol version'. No ServerHello, no LOGIN7.",
          connections=[conn(S4 + ":1433", "tls_failed",
                            [f("tls.handshake_failed", stage="alert", alert="protocol_version", alert_level="fatal",
                               alert_from="server"),
                             f("tcp.server_closed", phase="login"), f("tcp.retransmissions", count=1)],
                            note="the alert record (15 bytes) is in cleartext in a PRELOGIN (0x12) packet right "
                                 "after the ClientHello; the server closes first (its FIN is sent twice)")],
          checks=[chk("tls.handshake.type == 1", 1, 1),
                  chk("tls.handshake.type == 1 && tls.handshake.extensions.supported_version", 0, 0,
                      note="client offers nothing above 1.2"),
                  chk("tls.handshake.type == 2", 0, 0),
                  chk("tls.alert_message.desc == 70 && tls.alert_message.level == 2 && ip.src == %s" % S4, 1, 1),
                  chk("tds.type == 0x10", 0, 0), chk("tcp.flags.fin == 1 && ip.src == %s" % S4, 1),
                  chk("tcp.flags.reset == 1", 0, 0)])
def sc_tls_no_common_version(lab):
    lab.start_server({"encryption": "off", "tls_min": "1.3", "tls_max": "1.3"})
    lab.start_capture()
    rc, out = tedious(lab, {"encrypt": True, "maxVersion": "TLSv1.2"})
    expect(rc == 2, "tedious could not agree on a TLS version: " + out)
    expect("tls_failed" in lab.read_log("server.log"), "server saw the handshake fail")


def impacket_ssrp(lab, instance, opcode, timeout=3):
    r = lab.run("c", [sys.executable, os.path.join(HERE, "clients", "impacket_ssrp.py"), "--server", S4,
                      "--instance", instance, "--opcode", str(opcode), "--timeout", str(timeout)],
                timeout=timeout + 10, check=False)
    with open(os.path.join(lab.dir, "client.log"), "w") as fh:
        fh.write(r.stdout + r.stderr)
    return r.returncode, r.stdout + r.stderr


LONG_INSTANCE = "LABINST_" + "X" * 32  # 40 bytes: over the 32-byte limit of [MC-SQLR 2.2.3]


@scenario("ssrp-oversized-request", "lab-made (impacket SQLR header)",
          "A CLNT_UCAST_INST request for a 40-byte instance name (over the 32-byte limit, the Slammer shape "
          "in miniature); the Browser does not answer it. The bytes are lab-made: impacket's SQLR header "
          "class gives the opcode, the name is appended by tests/lab/clients/impacket_ssrp.py, because "
          "impacket's SQLR_UCAST_INST class cannot pack and no installed client sends CLNT_UCAST_INST.",
          exchanges=[{"protocol": "ssrp", "server": S4 + ":1434", "request": {"opcode": 4, "instance": LONG_INSTANCE},
                      "response": None,
                      "findings": [f("ssrp.oversized_request", length=len(LONG_INSTANCE) + 2),
                                   f("ssrp.no_response", opcode=4, instance=LONG_INSTANCE, attempts=1)],
                      "note": "length = UDP payload bytes (opcode + name + NUL)"}],
          checks=[chk("!icmp && udp.dstport == 1434 && udp.length == %d" % (8 + len(LONG_INSTANCE) + 2), 1, 1),
                  chk("!icmp && udp.srcport == 1434", 0, 0)])
def sc_ssrp_oversized(lab):
    lab.start_ssrp({"instances": [{"name": "LABINST", "tcp": INST_PORT}]})
    lab.start_capture()
    rc, out = impacket_ssrp(lab, LONG_INSTANCE, 4)
    expect(rc == 1 and "no answer" in out, "no answer to the oversized request: " + out)


@scenario("ssrp-dac", "impacket SSRP classes",
          "A CLNT_UCAST_DAC request (impacket's SQLR_UCAST_DAC) for LABINST; the Browser answers with the "
          "6-byte DAC response announcing TCP port 1434.",
          exchanges=[{"protocol": "ssrp", "server": S4 + ":1434", "request": {"opcode": 15, "instance": "LABINST"},
                      "response": {"dac_port": 1434}, "findings": []}],
          checks=[chk("!icmp && udp.dstport == 1434", 1, 1), chk("!icmp && udp.srcport == 1434 && udp.length == 14", 1, 1)])
def sc_ssrp_dac(lab):
    lab.start_ssrp({"instances": [{"name": "LABINST", "tcp": INST_PORT, "dac": 1434}]})
    lab.start_capture()
    rc, out = impacket_ssrp(lab, "LABINST", 15)
    expect(rc == 0 and "answer" in out, "DAC answer: " + out)


@scenario("dns-nxdomain", "tsql",
          "tsql connects to sql.lab.test; the lab's DNS server answers NXDOMAIN (rcode 3) to the A and AAAA "
          "queries of the client's resolver (glibc, both in parallel); no TCP connection follows.",
          exchanges=[{"protocol": "dns", "server": S4 + ":53", "request": {"name": DNS_NAME, "types": ["A", "AAAA"]},
                      "response": {"rcode": 3}, "findings": [f("dns.error", name=DNS_NAME, rcode=3)]}],
          checks=[chk("dns.flags.response == 0 && dns.qry.name == \"%s\"" % DNS_NAME, 2),
                  chk("dns.flags.rcode == 3", 2), chk("tcp", 0, 0)])
def sc_dns_nxdomain(lab):
    lab.start_dns({"mode": "nxdomain"})
    lab.resolv_conf("timeout:2 attempts:1")
    lab.start_capture()
    rc, out = tsql(lab, host=DNS_NAME)
    expect(rc != 0, "tsql failed on the name: " + out[-300:])


@scenario("dns-slow", "tsql",
          "The DNS server answers sql.lab.test (A only) after 1.5 s (resolver timeout 3 s, so no retry); "
          "tsql then connects and logs in (cleartext).",
          connections=[conn(S4 + ":1433", "ok", [f("login.ok"), f("login.cleartext")])],
          exchanges=[{"protocol": "dns", "server": S4 + ":53", "request": {"name": DNS_NAME, "types": ["A", "AAAA"]},
                      "response": {"rcode": 0, "addresses": [S4], "note": "AAAA: NOERROR, no answer"},
                      "findings": [f("dns.slow", name=DNS_NAME, delay_ms=1500)]}],
          checks=[chk("dns.flags.response == 1 && dns.time > 1.4", 1), chk("tds.loginack", 1, 1)])
def sc_dns_slow(lab):
    lab.start_server({"encryption": "off"})
    # An A record only: with A and AAAA, FreeTDS opens connections to both addresses at once and closes
    # the loser, which would blur this scenario.
    lab.start_dns({"delay_s": 1.5, "records": {DNS_NAME: [S4]}})
    lab.resolv_conf("timeout:3 attempts:1")
    lab.start_capture()
    rc, out = tsql(lab, host=DNS_NAME)
    expect(rc == 0 and "(3 rows affected)" in out, "tsql via a slow DNS answer: " + out[-300:])


@scenario("dns-no-response", "tsql",
          "The DNS server reads the queries for sql.lab.test but never answers; the resolver (timeout 1 s, "
          "2 attempts) asks twice per type, then tsql gives up without any TCP connection.",
          exchanges=[{"protocol": "dns", "server": S4 + ":53", "request": {"name": DNS_NAME, "types": ["A", "AAAA"]},
                      "response": None, "findings": [f("dns.no_response", name=DNS_NAME, attempts=2)]}],
          checks=[chk("dns.flags.response == 0", 4), chk("dns.flags.response == 1", 0, 0), chk("tcp", 0, 0)])
def sc_dns_no_response(lab):
    lab.start_dns({"mode": "silent"})
    lab.resolv_conf("timeout:1 attempts:2")
    lab.start_capture()
    rc, out = tsql(lab, host=DNS_NAME)
    expect(rc != 0, "tsql failed on the name: " + out[-300:])


@scenario("ssrp-port-mismatch", "impacket mssqlinstance + tsql",
          "From the client host, impacket's mssqlinstance asks the Browser (CLNT_UCAST_EX), which announces "
          "LABINST on tcp 14330; then tsql, configured with the static port 1433 (a stale connection "
          "string), connects there, where nothing listens: RST. The instance really runs on 14330.",
          connections=[conn(S4 + ":1433", "refused", [f("tcp.refused", attempts=1),
                                                        f("ssrp.port_mismatch", instance="LABINST", announced_port=INST_PORT,
                                                          used_port=1433)])],
          exchanges=[{"protocol": "ssrp", "server": S4 + ":1434", "request": {"opcode": 3, "instance": None},
                      "response": {"instances": [{"instance": "LABINST", "tcp_port": INST_PORT}]}, "findings": []}],
          checks=[chk("!icmp && udp.srcport == 1434", 1, 1), chk("tcp.flags.reset == 1 && ip.src == %s" % S4, 1, 1),
                  chk("tcp.dstport == %d" % INST_PORT, 0, 0)])
def sc_ssrp_port_mismatch(lab):
    lab.start_server({"encryption": "off", "port": INST_PORT})
    lab.start_ssrp({"instances": [{"name": "LABINST", "tcp": INST_PORT}]})
    lab.start_capture()
    exe = shutil.which("mssqlinstance.py") or "mssqlinstance.py"
    r = lab.run("c", [exe, S4], timeout=20, check=False)
    with open(os.path.join(lab.dir, "instance.log"), "w") as fh:
        fh.write(r.stdout + r.stderr)
    expect(str(INST_PORT) in r.stdout, "mssqlinstance listed the instance: " + r.stdout[-300:])
    time.sleep(0.5)
    rc, out = tsql(lab, port=1433)
    expect(rc != 0, "tsql refused on the static port")


EXHAUST_COUNT, EXHAUST_PORTS = 40, 8


@scenario("port-exhaustion", "pytds",
          "The client namespace has only %d ephemeral ports (ip_local_port_range 40000-40007) and "
          "tcp_tw_reuse=1. One pytds process opens %d short connections, 0.15 s apart: every port is "
          "reused from TIME_WAIT several times within seconds (same 4-tuple, new SYN)."
          % (EXHAUST_PORTS, EXHAUST_COUNT),
          connections=[conn(S4 + ":1433", "ok", [f("login.ok"), f("login.cleartext")]) for _ in range(EXHAUST_COUNT)],
          capture_findings=[f("pattern.port_exhaustion", client=C4),
                            f("pattern.no_pooling", client=C4, connections=EXHAUST_COUNT)],
          checks=[chk("tcp.flags.syn == 1 && tcp.flags.ack == 0", EXHAUST_COUNT, EXHAUST_COUNT),
                  chk("tcp.flags.syn == 1 && tcp.flags.ack == 0 && (tcp.srcport < 40000 || tcp.srcport > 40007)", 0, 0),
                  chk("tcp.analysis.reused_ports", EXHAUST_COUNT - EXHAUST_PORTS, EXHAUST_COUNT - EXHAUST_PORTS),
                  chk("tds.loginack", EXHAUST_COUNT, EXHAUST_COUNT)])
def sc_port_exhaustion(lab):
    lab.run("c", ["sysctl", "-qw", "net.ipv4.ip_local_port_range=40000 40007"])
    lab.run("c", ["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"])
    lab.start_server({"encryption": "off"})
    lab.start_capture()
    rc, out = pytds(lab, mode="loop", count=EXHAUST_COUNT, sleep=0.15, no_retry=True, proc_timeout=60)
    expect(rc == 0 and "loop done" in out, "pytds loop ok: " + out[-300:])


CHATTY_COUNT = 300


@scenario("mars-two-sessions", "pyodbc + FreeTDS ODBC",
          "pyodbc over FreeTDS's ODBC driver with MARS_Connection=Yes; the server answers PRELOGIN MARS=1. Login "
          "in plain TDS, then FreeTDS wraps every packet in SMP [MC-SMP]: SYN of session 0, pyodbc's four "
          "sp_datatype_info_100 batches (each closed early with an ATTENTION the server acknowledges with "
          "DONE(ATTN)), SELECT first_table on session 0 (its rows left unread), SYN of session 1 and SELECT "
          "second_table on session 1; both results are then read, the client closes with FIN (no SMP FIN).",
          connections=[conn(S4 + ":1433", "ok", [f("login.ok"), f("login.cleartext"),
                                                  f("request.attention", count=4, acknowledged=True)],
                            smp_sessions=[{"sid": 0, "requests": 5, "attentions": 4},
                                          {"sid": 1, "requests": 1, "attentions": 0}])],
          checks=[chk("tds.type == 0x10", 1, 1), chk("smp.flags.syn == 1", 2, 2), chk("smp.flags.syn == 1 && smp.sid == 1", 1, 1),
                  chk("smp.flags.data == 1 && smp.sid == 1 && tds.type == 0x01", 1, 1),
                  chk("smp.flags.data == 1 && smp.sid == 1 && tds.done.donerowcount64 == 3", 1, 1),
                  chk("smp.flags.data == 1 && smp.sid == 0 && tds.type == 0x01", 5, 5),
                  chk("smp.sid == 0 && tds.type == 0x06", 4, 4), chk("smp.sid == 0 && tds.done.status.attn == 1", 4, 4),
                  chk("tcp.flags.reset == 1", 0, 0)])
def sc_mars_two_sessions(lab):
    lab.start_server({"encryption": "off", "mars": True})
    lab.start_capture()
    rc, out = odbc_mars(lab, "two-sessions")
    expect(rc == 0 and "two-sessions done" in out, "pyodbc MARS two sessions: " + out[-300:])
    log_text = lab.read_log("server.log")
    expect('"smp_syn"' in log_text and '"sid": 1' in log_text, "FreeTDS opened SMP session 1")


@scenario("mars-error", "pyodbc + FreeTDS ODBC",
          "As mars-two-sessions, but the server answers SELECT second_table on SMP session 1 with 3 rows, then "
          "ERROR 8134 (class 16) and DONE(ERROR); pyodbc raises it, reads the first SELECT's rows on session 0 "
          "and closes.",
          connections=[conn(S4 + ":1433", "ok", [f("login.ok"), f("login.cleartext"),
                                                  f("request.attention", count=4, acknowledged=True, smp_session=0),
                                                  f("request.error", number=8134, state=1, smp_session=1,
                                                    **{"class": 16})],
                            smp_sessions=[{"sid": 0, "requests": 5, "attentions": 4},
                                          {"sid": 1, "requests": 1, "attentions": 0}])],
          checks=[chk("smp.flags.syn == 1 && smp.sid == 1", 1, 1),
                  chk("smp.flags.data == 1 && smp.sid == 1 && tds.error.number == 8134", 1, 1),
                  chk("tds.error.number == 8134", 1, 1), chk("tcp.flags.reset == 1", 0, 0)])
def sc_mars_error(lab):
    lab.start_server({"encryption": "off", "mars": True, "query_rules": [
        {"match": "second_table", "error_after_rows": {
            "number": 8134, "state": 1, "class": 16, "message": "Divide by zero error encountered."}}]})
    lab.start_capture()
    rc, out = odbc_mars(lab, "error")
    expect(rc == 5 and "8134" in out, "pyodbc MARS saw the error on the second session: " + out[-300:])


@scenario("mars-interleaved", "pyodbc + FreeTDS ODBC",
          "pyodbc over FreeTDS ODBC with MARS_Connection=Yes: SELECT big_table on SMP session 0 answers 1500 rows "
          "(9 TDS packets), more than the 4-packet window FreeTDS grants, so the server sends 4 and queues the rest; "
          "meanwhile the client opens session 1 and runs SELECT second_table, answered at once (session 1's "
          "COLMETADATA, ROWs and DONE arrive between packets of session 0's unfinished result); then the client "
          "reads session 0's rows, its SMP ACKs open the window and the server sends the rest. Plus pyodbc's four "
          "acknowledged ATTENTIONs on session 0.",
          connections=[conn(S4 + ":1433", "ok", [f("login.ok"), f("login.cleartext"),
                                                  f("request.attention", count=4, acknowledged=True)],
                            smp_sessions=[{"sid": 0, "requests": 5, "attentions": 4},
                                          {"sid": 1, "requests": 1, "attentions": 0}])],
          checks=[chk("smp.flags.syn == 1", 2, 2), chk("smp.flags.ack == 1 && ip.src == %s" % C4, 1),
                  chk("smp.sid == 1 && tds.type == 0x04", 1, 1), chk("smp.sid == 0 && tds.type == 0x04 && tds.status == 0", 2),
                  chk("tcp.flags.reset == 1", 0, 0)])
def sc_mars_interleaved(lab):
    lab.start_server({"encryption": "off", "mars": True, "query_rules": [{"match": "big", "rows": 1500}]})
    lab.start_capture()
    rc, out = odbc_mars(lab, "interleaved")
    expect(rc == 0 and "first: 1500 rows" in out, "pyodbc MARS interleaved: " + out[-300:])
    log_text = lab.read_log("server.log")
    expect('"smp_window_full"' in log_text and '"smp_ack"' in log_text,
           "the server waited for the client's window (SMP ACK)")


@scenario("mars-attention", "pyodbc + FreeTDS ODBC",
          "pyodbc over FreeTDS ODBC with MARS_Connection=Yes and a 2 s query timeout: SELECT first_table on SMP "
          "session 0 (rows left unread), then on session 1 a SELECT the server delays 6 s; at 2 s FreeTDS sends "
          "ATTENTION on session 1, the server ends the cut-short response (DONE(ERROR)) and acknowledges with "
          "DONE(ATTN) on session 1; the client reads session 0's rows and closes. Plus pyodbc's four "
          "acknowledged ATTENTIONs on session 0 after its sp_datatype_info_100 batches.",
          connections=[conn(S4 + ":1433", "ok", [f("login.ok"), f("login.cleartext"),
                                                  f("request.attention", count=5, acknowledged=True)],
                            smp_sessions=[{"sid": 0, "requests": 5, "attentions": 4},
                                          {"sid": 1, "requests": 1, "attentions": 1}])],
          checks=[chk("smp.flags.syn == 1", 2, 2), chk("smp.sid == 1 && tds.type == 0x06", 1, 1),
                  chk("smp.sid == 1 && tds.done.status.attn == 1", 1, 1), chk("smp.sid == 0 && tds.type == 0x06", 4, 4),
                  chk("smp.sid == 0 && tds.done.status.attn == 1", 4, 4), chk("tcp.flags.reset == 1", 0, 0)])
def sc_mars_attention(lab):
    lab.start_server({"encryption": "off", "mars": True, "query_rules": [{"match": "slow", "delay_s": 6}]})
    lab.start_capture()
    rc, out = odbc_mars(lab, "attention")
    expect(rc == 3 and "cancelled" in out, "pyodbc query timeout: " + out[-300:])
    expect('"while_running": true' in lab.read_log("server.log"), "server saw the attention during the query")


CHATTY_DELAY_MS = 10


@scenario("chatty", "pytds",
          "One pytds connection runs %d tiny SELECTs (1 row each) back to back: one round trip per request. "
          "The router adds %d ms each way (a TUN delay line: this kernel has no netem), so every round trip "
          "costs ~%d ms and latency, not the server, takes most of the connection's time."
          % (CHATTY_COUNT, CHATTY_DELAY_MS, 2 * CHATTY_DELAY_MS),
          connections=[conn(S4 + ":1433", "ok", [f("login.ok"), f("login.cleartext"),
                                                   f("pattern.chatty", requests=CHATTY_COUNT, rtt_ms=2.0 * CHATTY_DELAY_MS)],
                            note="server packets arrive with TTL 62 here: the delay line is a second routing hop")],
          checks=[chk("tds.type == 0x01", CHATTY_COUNT, CHATTY_COUNT), chk("tds.done.donerowcount64 == 1", CHATTY_COUNT, CHATTY_COUNT),
                  chk("tcp.analysis.ack_rtt > 0.018 && tcp.flags.syn == 1 && tcp.flags.ack == 1", 1, 1,
                      note="the SYN-ACK comes back one delayed round trip after the SYN")])
def sc_chatty(lab):
    lab.delay_line(CHATTY_DELAY_MS)
    lab.start_server({"encryption": "off", "query": {"rows": 1}})
    lab.start_capture()
    rc, out = pytds(lab, mode="chatty", count=CHATTY_COUNT)
    expect(rc == 0 and "chatty done" in out, "pytds chatty ok: " + out[-300:])


# --- Kerberos (a real MIT KDC) and DNS over TCP ------------------------------------------------------

REALM = "LAB.TEST"
KRB_USER = "labuser"
# The lab user's Kerberos password (never on the wire: preauthentication sends a timestamp encrypted
# with a key derived from it). Listed in the manifest's passwords all the same.
KRB_PASSWORD = "Lab-Krb-4mW8p2"
SQL_SPN = "MSSQLSvc/sql.lab.test:1433"
MISSING_SPN = "MSSQLSvc/missing.lab.test:1433"


def krb5_conf(lab, tcp):
    """The client's krb5.conf: the KDC by address (no DNS), and udp_preference_limit = 1 to force TCP
    (RFC 4120 7.2.1 lets a client pick; MIT uses UDP below the limit)."""
    path = os.path.join(lab.dir, "krb5-%s.conf" % ("tcp" if tcp else "udp"))
    with open(path, "w") as fh:
        fh.write("[libdefaults]\n default_realm = %s\n dns_lookup_kdc = false\n dns_lookup_realm = false\n"
                 " rdns = false\n forwardable = true\n%s"
                 "[realms]\n %s = {\n  kdc = %s\n }\n[domain_realm]\n .lab.test = %s\n lab.test = %s\n"
                 % (REALM, " udp_preference_limit = 1\n" if tcp else " udp_preference_limit = 65535\n",
                    REALM, S4, REALM, REALM))
    return path


def start_kdc(lab, seconds=60):
    """A throwaway MIT KDC for LAB.TEST in the server namespace: database, stash and log in the scenario
    directory; principals labuser (preauth required) and MSSQLSvc/sql.lab.test:1433 (random key)."""
    d = os.path.join(lab.dir, "kdc")
    os.makedirs(d, exist_ok=True)
    kdc_conf = os.path.join(d, "kdc.conf")
    with open(kdc_conf, "w") as fh:
        fh.write("[kdcdefaults]\n kdc_ports = 88\n kdc_tcp_ports = 88\n[realms]\n %s = {\n"
                 "  database_name = %s/principal\n  key_stash_file = %s/stash\n  acl_file = %s/kadm5.acl\n"
                 "  supported_enctypes = aes256-cts-hmac-sha1-96:normal\n }\n[logging]\n kdc = FILE:%s/kdc.log\n"
                 % (REALM, d, d, d, d))
    open(os.path.join(d, "kadm5.acl"), "w").close()
    env = dict(os.environ, KRB5_CONFIG=krb5_conf(lab, tcp=True), KRB5_KDC_PROFILE=kdc_conf)
    sh_env = lambda cmd: subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    r = sh_env(["kdb5_util", "create", "-s", "-r", REALM, "-P", "lab-master-" + str(os.getpid())])
    if r.returncode != 0:
        raise LabError("kdb5_util create: " + r.stderr[-300:])
    for q in ("addprinc +requires_preauth -pw %s %s" % (KRB_PASSWORD, KRB_USER), "addprinc -randkey " + SQL_SPN):
        r = sh_env(["kadmin.local", "-r", REALM, "-q", q])
        if r.returncode != 0 or "created" not in r.stdout + r.stderr:
            raise LabError("kadmin.local %s: %s" % (q.split()[0], (r.stdout + r.stderr)[-300:]))
    lab.spawn("s", ["krb5kdc", "-n", "-r", REALM], seconds + 5, "kdc.out", env=env)
    for _ in range(100):
        try:
            with open(os.path.join(d, "kdc.log")) as fh:
                if "commencing operation" in fh.read():
                    break
        except FileNotFoundError:
            pass
        time.sleep(0.1)
    else:
        raise LabError("krb5kdc did not start: " + lab.read_log("kdc.out")[-300:])
    lab.notes.append("server: MIT krb5kdc for %s, principals %s (+requires_preauth), %s" % (REALM, KRB_USER, SQL_SPN))


def krb_client(lab, cmd, tcp=True, stdin=None, timeout=20):
    env = dict(os.environ, KRB5_CONFIG=krb5_conf(lab, tcp), KRB5CCNAME="FILE:" + os.path.join(lab.dir, "ccache"))
    r = lab.run("c", cmd, timeout=timeout, env=env, stdin=stdin, check=False)
    out = r.stdout + r.stderr
    with open(os.path.join(lab.dir, "client.log"), "a") as fh:
        fh.write("$ %s\n%s\n" % (" ".join(cmd), out))
    return r.returncode, out


def kinit(lab, password=KRB_PASSWORD, tcp=True):
    return krb_client(lab, ["kinit", KRB_USER], tcp=tcp, stdin=password + "\n")


def hosts_file(lab, names):
    """/etc/netns/<client ns>/hosts: the SQL host names resolve to the server without DNS traffic."""
    d = os.path.join("/etc/netns", lab.ns["c"])
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "hosts"), "w") as fh:
        fh.write("127.0.0.1 localhost\n" + "".join("%s %s\n" % (S4, n) for n in names))
    lab.notes.append("client /etc/hosts: %s -> %s" % (", ".join(names), S4))


def krb_exchange(message, sname, response, error=None, findings=(), transport="tcp", **extra):
    req = {"message": message, "sname": sname, "realm": REALM}
    req.update(extra)
    resp = {"message": response}
    if error:
        resp["error"] = error
    return {"protocol": "kerberos", "transport": transport, "server": S4 + ":88", "request": req,
            "response": resp, "findings": list(findings)}


def kinit_exchanges(transport):
    return [krb_exchange("AS-REQ", "krbtgt/" + REALM, "KRB-ERROR", "KDC_ERR_PREAUTH_REQUIRED (25)",
                         transport=transport, cname=KRB_USER),
            krb_exchange("AS-REQ", "krbtgt/" + REALM, "AS-REP", transport=transport, cname=KRB_USER)]


def kerberos_spn_ok(transport):
    tcp = transport == "tcp"

    def run(lab):
        start_kdc(lab)
        lab.start_capture(bpf="port 88")
        rc, out = kinit(lab, tcp=tcp)
        expect(rc == 0, "kinit: " + out[-300:])
        rc, out = krb_client(lab, ["kvno", SQL_SPN], tcp=tcp)
        expect(rc == 0 and "kvno" in out, "kvno: " + out[-300:])
    return run


for _transport in ("tcp", "udp"):
    scenario("kerberos-%s-spn-ok" % _transport, "MIT kinit + kvno",
             "MIT Kerberos clients against a real MIT KDC (realm %s) over %s%s: kinit %s (AS-REQ, "
             "KDC_ERR_PREAUTH_REQUIRED, AS-REQ with encrypted timestamp, AS-REP), then kvno %s (TGS-REQ, "
             "forwardable, TGS-REP). No SQL connection." % (
                 REALM, _transport.upper(), " (krb5.conf udp_preference_limit = 1)" if _transport == "tcp" else "",
                 KRB_USER, SQL_SPN),
             exchanges=kinit_exchanges(_transport) + [
                 krb_exchange("TGS-REQ", SQL_SPN, "TGS-REP", transport=_transport, forwardable=True)],
             checks=[chk("kerberos.msg_type == 10", 2, 2), chk("kerberos.msg_type == 11", 1, 1),
                     chk("kerberos.msg_type == 12", 1, 1), chk("kerberos.msg_type == 13", 1, 1),
                     chk("kerberos.error_code == 25", 1, 1),
                     chk("tcp.port == 88 && kerberos" if _transport == "tcp" else "udp.port == 88 && kerberos", 6, 6)],
             decode_port=1433)(kerberos_spn_ok(_transport))


@scenario("kerberos-spn-unknown", "MIT kinit + kvno",
          "kinit %s over TCP, then kvno %s: the KDC has no such principal and answers KRB-ERROR "
          "KDC_ERR_S_PRINCIPAL_UNKNOWN (7), the error a SQL Server without its SPN registered gives "
          "integrated logins." % (KRB_USER, MISSING_SPN),
          exchanges=kinit_exchanges("tcp") + [
              krb_exchange("TGS-REQ", MISSING_SPN, "KRB-ERROR", "KDC_ERR_S_PRINCIPAL_UNKNOWN (7)",
                           findings=[f("kerberos.error", krb_error="KDC_ERR_S_PRINCIPAL_UNKNOWN", krb_error_code=7)],
                           forwardable=True)] * 2,
          checks=[chk("kerberos.error_code == 7", 2, 2, note="MIT asks twice: with and without name canonicalization"),
                  chk("kerberos.msg_type == 12", 2, 2), chk("tcp.port == 88 && kerberos", 8, 8)])
def sc_kerberos_spn_unknown(lab):
    start_kdc(lab)
    lab.start_capture(bpf="port 88")
    rc, out = kinit(lab)
    expect(rc == 0, "kinit: " + out[-300:])
    rc, out = krb_client(lab, ["kvno", MISSING_SPN])
    expect(rc != 0 and "not found in Kerberos database" in out, "kvno refused: " + out[-300:])


@scenario("kerberos-preauth-failed", "MIT kinit",
          "kinit %s over TCP with a wrong password: the KDC answers the encrypted timestamp with KRB-ERROR "
          "KDC_ERR_PREAUTH_FAILED (24)." % KRB_USER,
          exchanges=[kinit_exchanges("tcp")[0],
                     krb_exchange("AS-REQ", "krbtgt/" + REALM, "KRB-ERROR", "KDC_ERR_PREAUTH_FAILED (24)",
                                  findings=[f("kerberos.error", krb_error="KDC_ERR_PREAUTH_FAILED",
                                              krb_error_code=24, meaning="the password is wrong")],
                                  cname=KRB_USER)],
          checks=[chk("kerberos.error_code == 24", 1, 1), chk("kerberos.error_code == 25", 1, 1),
                  chk("kerberos.msg_type == 11", 0, 0)])
def sc_kerberos_preauth_failed(lab):
    start_kdc(lab)
    lab.start_capture(bpf="port 88")
    rc, out = kinit(lab, password=WRONG_PASSWORD)
    expect(rc != 0 and "incorrect" in out.lower(), "kinit refused: " + out[-300:])


def tsql_kerberos(lab, host, tcp=True):
    """FreeTDS tsql with no user name: integrated security through GSSAPI (Kerberos, raw krb5 mechanism),
    SPN MSSQLSvc/<host>:1433 from the name in freetds.conf."""
    env = dict(os.environ, FREETDSCONF=freetds_conf(lab, host, 1433, "off"), KRB5_CONFIG=krb5_conf(lab, tcp),
               KRB5CCNAME="FILE:" + os.path.join(lab.dir, "ccache"))
    r = lab.run("c", ["tsql", "-S", "lab"], timeout=25, env=env, stdin="select 1\ngo\nquit\n", check=False)
    out = r.stdout + r.stderr
    with open(os.path.join(lab.dir, "client.log"), "a") as fh:
        fh.write("$ tsql -S lab (%s, kerberos)\n%s\n" % (host, out))
    return r.returncode, out


def kerberos_login_checks():
    """A ticket fetched over TCP, then a LOGIN7 carrying the AP-REQ for the SQL SPN, refused with 18452."""
    return [chk("kerberos.msg_type == 12", 1, 1), chk("kerberos.msg_type == 13", 1, 1),
            chk("tds.type == 0x10", 1, 1), chk("tds.type == 0x10 && kerberos.msg_type == 14", 1, 1),
            chk("tds.type == 0x10 && kerberos.SNameString == \"%s\"" % SQL_SPN.split("/")[1], 1, 1),
            chk("tds.error.number == 18452", 1, 1)]


def kerberos_sql_start(lab, encryption):
    """The KDC, sql.lab.test in the client's hosts file, the SQL server, the capture, then kinit."""
    start_kdc(lab)
    hosts_file(lab, ["sql.lab.test"])
    lab.start_server({"encryption": encryption})
    lab.start_capture()
    rc, out = kinit(lab)
    expect(rc == 0, "kinit: " + out[-300:])


@scenario("kerberos-sql-login-18452", "tsql (FreeTDS, GSSAPI) + MIT kinit",
          "kinit %s, then FreeTDS tsql without a user name (integrated security via GSSAPI) to sql.lab.test "
          "(client /etc/hosts): TGS-REQ for %s over TCP, TGS-REP, LOGIN7 whose SSPI field holds the Kerberos "
          "AP-REQ for that SPN; the lab server refuses integrated logins with ERROR 18452." % (KRB_USER, SQL_SPN),
          connections=[conn(S4 + ":1433", "login_failed",
                            [f("login.sspi_failed", number=18452, spn=SQL_SPN),
                             f("login.failed", number=18452), f("login.cleartext", auth="kerberos")],
                            login={"sspi": {"mechanism": "kerberos", "spn": SQL_SPN, "realm": REALM}})],
          exchanges=kinit_exchanges("tcp") + [krb_exchange("TGS-REQ", SQL_SPN, "TGS-REP", forwardable=True)],
          checks=kerberos_login_checks())
def sc_kerberos_sql_login(lab):
    kerberos_sql_start(lab, "off")
    rc, out = tsql_kerberos(lab, "sql.lab.test")
    expect("[18452, 1]" in lab.read_log("server.log"), "server refused the Kerberos login: " + out[-300:])


@scenario("kerberos-spnego-impacket", "impacket MSSQL kerberosLogin + MIT kinit",
          "kinit %s and kvno %s (MIT, over TCP), then impacket's MSSQL client logs in with Kerberos as "
          "mssqlclient.py -k does (clients/impacket_kerberos_login.py): it takes the service ticket from the MIT "
          "ccache and sends a cleartext LOGIN7 (its TLS set-up switched off) whose SSPI field is a SPNEGO "
          "NegTokenInit wrapping the Kerberos AP-REQ, as Windows clients do; the lab server refuses integrated "
          "logins with ERROR 18452." % (KRB_USER, SQL_SPN),
          connections=[conn(S4 + ":1433", "login_failed",
                            [f("login.sspi_failed", number=18452, spn=SQL_SPN),
                             f("login.failed", number=18452), f("login.cleartext", auth="negotiate")],
                            login={"auth": "negotiate",
                                   "sspi": {"mechanism": "kerberos", "spnego": True, "spn": SQL_SPN, "realm": REALM}})],
          exchanges=kinit_exchanges("tcp") + [krb_exchange("TGS-REQ", SQL_SPN, "TGS-REP", forwardable=True)],
          checks=kerberos_login_checks() + [chk("tds.type == 0x10 && spnego.negTokenInit_element", 1, 1)])
def sc_kerberos_spnego_impacket(lab):
    # NOT_SUP: with impacket's TLS switched off, client OFF against server NOT_SUP is no encryption.
    kerberos_sql_start(lab, "not_sup")
    # The service ticket comes from MIT's kvno: impacket's own TGS-REQ carries a checksum type this
    # aes256-only KDC refuses (KRB_AP_ERR_INAPP_CKSUM); from the ccache it builds the AP-REQ itself.
    rc, out = krb_client(lab, ["kvno", SQL_SPN])
    expect(rc == 0, "kvno: " + out[-300:])
    # impacket reads the MIT ccache by plain path (no "FILE:" prefix).
    env = dict(os.environ, KRB5CCNAME=os.path.join(lab.dir, "ccache"))
    cmd = [sys.executable, os.path.join(HERE, "clients", "impacket_kerberos_login.py"), "--server", "sql.lab.test",
           "--kdc", S4, "--realm", REALM, "--user", KRB_USER]
    r = lab.run("c", cmd, timeout=25, env=env, check=False)
    out = r.stdout + r.stderr
    with open(os.path.join(lab.dir, "client.log"), "a") as fh:
        fh.write("$ impacket_kerberos_login.py (rc %d)\n%s\n" % (r.returncode, out))
    expect("[18452, 1]" in lab.read_log("server.log"), "server refused the SPNEGO Kerberos login: " + out[-400:])


@scenario("kerberos-sql-spn-unknown", "tsql (FreeTDS, GSSAPI) + MIT kinit",
          "kinit %s, then FreeTDS tsql (integrated security) to missing.lab.test, which /etc/hosts maps to the "
          "SQL server but whose SPN %s is not registered: the KDC answers the TGS-REQ with "
          "KDC_ERR_S_PRINCIPAL_UNKNOWN and the client gives up on the connection it had opened, before LOGIN7."
          % (KRB_USER, MISSING_SPN),
          connections=[conn(S4 + ":1433", "login_failed",
                            [f("login.sspi_failed", spn=MISSING_SPN, krb_error="KDC_ERR_S_PRINCIPAL_UNKNOWN")],
                            note="the TGS-REQ comes after PRELOGIN, on the open connection; no LOGIN7 is sent: "
                                 "the refused ticket, not a timeout, ended the login")],
          exchanges=kinit_exchanges("tcp") + [
              krb_exchange("TGS-REQ", MISSING_SPN, "KRB-ERROR", "KDC_ERR_S_PRINCIPAL_UNKNOWN (7)",
                           findings=[f("kerberos.error", krb_error="KDC_ERR_S_PRINCIPAL_UNKNOWN", krb_error_code=7)],
                           forwardable=True)] * 2,
          checks=[chk("kerberos.error_code == 7", 2, 2), chk("tds.type == 0x12", 1, 1), chk("tds.type == 0x10", 0, 0)])
def sc_kerberos_sql_spn_unknown(lab):
    start_kdc(lab)
    hosts_file(lab, ["missing.lab.test"])
    lab.start_server({"encryption": "off"})
    lab.start_capture()
    rc, out = kinit(lab)
    expect(rc == 0, "kinit: " + out[-300:])
    rc, out = tsql_kerberos(lab, "missing.lab.test")
    expect(rc != 0, "tsql failed: " + out[-300:])


@scenario("dns-tcp", "dig +tcp",
          "dig +tcp +keepopen asks the lab's DNS server (UDP and TCP 53) three questions on one TCP connection: "
          "sql.lab.test A, sql.lab.test AAAA, missing.lab.test A (NXDOMAIN). No SQL connection.",
          exchanges=[{"protocol": "dns", "transport": "tcp", "server": S4 + ":53",
                      "request": {"name": DNS_NAME, "types": ["A"]}, "response": {"rcode": 0, "addresses": [S4]},
                      "findings": []},
                     {"protocol": "dns", "transport": "tcp", "server": S4 + ":53",
                      "request": {"name": DNS_NAME, "types": ["AAAA"]}, "response": {"rcode": 0, "addresses": [S6]},
                      "findings": []},
                     {"protocol": "dns", "transport": "tcp", "server": S4 + ":53",
                      "request": {"name": "missing.lab.test", "types": ["A"]}, "response": {"rcode": 3},
                      "findings": [f("dns.error", name="missing.lab.test", rcode=3)]}],
          checks=[chk("tcp.port == 53 && dns.flags.response == 0", 3, 3),
                  chk("tcp.port == 53 && dns.flags.response == 1", 3, 3), chk("dns.flags.rcode == 3", 1, 1),
                  chk("tcp.flags.syn == 1 && tcp.flags.ack == 0", 1, 1), chk("udp.port == 53", 0, 0)])
def sc_dns_tcp(lab):
    lab.start_dns({})
    lab.start_capture()
    r = lab.run("c", ["dig", "+tcp", "+keepopen", "+tries=1", "+time=3", "@" + S4, DNS_NAME, "A", DNS_NAME, "AAAA",
                      "missing.lab.test", "A"], timeout=20, check=False)
    with open(os.path.join(lab.dir, "client.log"), "w") as fh:
        fh.write(r.stdout + r.stderr)
    expect(r.returncode == 0 and "NXDOMAIN" in r.stdout and S4 in r.stdout, "dig answers: " + r.stdout[-400:])


# --- manifest ----------------------------------------------------------------------------------------


# The mixed capture merges the committed captures of its parts: run it after them in a full run.
SCENARIOS["mixed"] = SCENARIOS.pop("mixed")
# Manifest entries of the scenarios run so far in this invocation (saved to the file only at the end).
RUN_ENTRIES = {}


def client_versions():
    v = {}
    r = subprocess.run(["tsql", "-C"], capture_output=True, text=True)
    m = re.search(r"Version:\s*(\S+ \S+)", r.stdout)
    v["tsql"] = "FreeTDS tsql " + (m.group(1) if m else "?")
    r = subprocess.run(["odbcinst", "--version"], capture_output=True, text=True)
    m = re.search(r"(\d+\.\d+\.\d+)", r.stdout)
    r2 = subprocess.run([sys.executable, "-m", "pip", "show", "pyodbc"], capture_output=True, text=True)
    m2 = re.search(r"^Version: (\S+)", r2.stdout, re.M)
    v["FreeTDS ODBC"] = "pyodbc %s, FreeTDS ODBC (libtdsodbc) %s, unixODBC %s" % (
        m2.group(1) if m2 else "?", v["tsql"].split()[-1], m.group(1) if m else "?")
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "krb5-user"], capture_output=True, text=True)
    v["kinit"] = "MIT Kerberos " + (r.stdout.strip() or "?")
    r = subprocess.run(["nmap", "--version"], capture_output=True, text=True)
    m = re.search(r"Nmap version (\S+)", r.stdout)
    v["nmap"] = "Nmap " + (m.group(1) if m else "?")
    r = subprocess.run(["dig", "-v"], capture_output=True, text=True)
    v["dig"] = (r.stdout + r.stderr).strip() or "dig ?"
    for mod, pkg in (("pytds", "python-tds"), ("impacket", "impacket")):
        r = subprocess.run([sys.executable, "-m", "pip", "show", pkg], capture_output=True, text=True)
        m = re.search(r"^Version: (\S+)", r.stdout, re.M)
        v[mod] = "%s %s" % (pkg, m.group(1) if m else "?")
    try:
        with open(os.path.join(HERE, "node", "node_modules", "tedious", "package.json")) as fh:
            v["tedious"] = "tedious %s (node %s)" % (json.load(fh)["version"],
                                                     subprocess.run(["node", "--version"], capture_output=True,
                                                                    text=True).stdout.strip())
    except (OSError, ValueError, KeyError):
        v["tedious"] = "tedious ?"
    return v


SERVER_PORTS = {"1433", "14330"}


def tcp_clients(capture):
    """(client ip:port, server ip:port) of each TCP connection, in order of first appearance: the sender of the first
    SYN, or (capture begun mid-stream) the end whose port is not a lab server port."""
    r = subprocess.run(["tshark", "-n", "-r", capture, "-Y", "tcp && !icmp", "-T", "fields", "-e", "tcp.stream",
                        "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport", "-e", "ip.dst", "-e", "ipv6.dst",
                        "-e", "tcp.dstport"], capture_output=True, text=True)
    seen, out = set(), []
    for line in r.stdout.splitlines():
        stream, v4s, v6s, sport, v4d, v6d, dport = (line.split("\t") + [""] * 7)[:7]
        if stream in seen:
            continue
        seen.add(stream)
        src = "%s:%s" % (v4s, sport) if v4s else "[%s]:%s" % (v6s, sport)
        dst = "%s:%s" % (v4d, dport) if v4d else "[%s]:%s" % (v6d, dport)
        out.append((dst, src) if sport in SERVER_PORTS and dport not in SERVER_PORTS else (src, dst))
    return out


def manifest_entry(name, meta, lab, versions, result):
    conns = []
    streams = tcp_clients(lab.final) if os.path.exists(lab.final) else []
    for c in meta["connections"]:
        # The next connection to the expected server (captures may hold DNS or Kerberos
        # connections before it).
        match = next((i for i, (_, server) in enumerate(streams) if server == c["server"]), None)
        client = streams.pop(match)[0] if match is not None else None
        conns.append({"client": client, **c})
    size = os.path.getsize(lab.final) if os.path.exists(lab.final) else 0
    return {
        "capture": os.path.relpath(lab.final, CAPTURES),
        "bytes": size,
        "client": meta["client"],
        "client_version": next((v for k, v in versions.items() if k in meta["client"]), "?"),
        "what": meta["what"],
        "lab_actions": lab.notes,
        "decode_as": "tcp.port==%d,tds" % meta["decode_port"],
        "tshark_opts": meta["tshark_opts"],
        "connections": conns,
        "exchanges": meta["exchanges"],
        "capture_findings": meta["capture_findings"],
        "copies": meta["copies"],
        "checks": meta["checks"],
        "result": result,
    }


def load_manifest():
    try:
        with open(MANIFEST) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def save_manifest(entries):
    doc = load_manifest()
    doc["schema"] = "tdsscope-lab-manifest/1"
    doc["generated_by"] = "scripts/lab (tests/lab/labrun.py)"
    doc["passwords"] = [PASSWORD, WRONG_PASSWORD, KRB_PASSWORD]
    doc["network"] = {"client": [C4, C6], "router": {"client_side": [R4C, R6C], "server_side": [R4S, R6S]},
                      "server": [S4, S6], "capture_point": "client namespace, interface c0",
                      "ttl": {"server_packets_seen_by_client": 63, "router_generated": 64, "client": 64}}
    sc = doc.get("scenarios", {})
    sc.update(entries)
    doc["scenarios"] = dict(sorted(sc.items()))
    with open(MANIFEST, "w") as fh:
        json.dump(doc, fh, indent=2)
        fh.write("\n")


# --- main -------------------------------------------------------------------------------------------


def make_cert(certdir):
    # CN as in SQL Server's own auto-generated certificate, used when no certificate is configured.
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "3650",
                    "-keyout", os.path.join(certdir, "key.pem"), "-out", os.path.join(certdir, "cert.pem"),
                    "-subj", "/CN=SSL_Self_Signed_Fallback"], check=True, capture_output=True, timeout=60)


def make_lab_ca(certdir):
    """A lab CA and three server certificates it signs: expired (valid 2024-01-01 … 2025-01-01),
    wrongname (for sql-other.lab.test, not the address clients dial) and valid (IP 198.51.100.20,
    2025 … 2035). `openssl ca` because only it sets past validity dates in OpenSSL 3.0
    (`x509 -not_before` arrived in 3.4)."""
    d = os.path.join(certdir, "ca-db")
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "index.txt"), "w").close()
    with open(os.path.join(d, "serial"), "w") as fh:
        fh.write("1000\n")
    conf = os.path.join(d, "ca.cnf")
    with open(conf, "w") as fh:
        fh.write("[ca]\ndefault_ca = lab\n[lab]\ndir = %s\ndatabase = $dir/index.txt\nserial = $dir/serial\n"
                 "new_certs_dir = $dir\ndefault_md = sha256\npolicy = any\nunique_subject = no\n"
                 "copy_extensions = copy\n[any]\ncommonName = supplied\n[srv]\nbasicConstraints = CA:FALSE\n"
                 "keyUsage = digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\n" % d)

    def run(*cmd):
        subprocess.run(list(cmd), check=True, capture_output=True, timeout=60)

    ca, ca_key = os.path.join(certdir, "ca.pem"), os.path.join(certdir, "ca-key.pem")
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "3650",
        "-keyout", ca_key, "-out", ca, "-subj", "/CN=tdsscope lab CA")
    for name, cn, san, start, end in (
            ("expired", S4, "IP:" + S4, "20240101000000Z", "20250101000000Z"),
            ("wrongname", "sql-other.lab.test", "DNS:sql-other.lab.test", "20250101000000Z", "20350101000000Z"),
            ("valid", S4, "IP:" + S4, "20250101000000Z", "20350101000000Z")):
        key, csr, crt = (os.path.join(certdir, "%s-%s.pem" % (name, x)) for x in ("key", "csr", "cert"))
        run("openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
            "-subj", "/CN=" + cn, "-addext", "subjectAltName=" + san)
        run("openssl", "ca", "-batch", "-config", conf, "-extensions", "srv", "-cert", ca, "-keyfile", ca_key,
            "-startdate", start, "-enddate", end, "-notext", "-in", csr, "-out", crt)


def refresh(names):
    """Re-derive the expectations (what, connections' expected outcomes and findings, exchanges,
    capture findings, checks) of committed scenarios from their declarations, without re-running
    them: the captures and what the run recorded (client endpoints, versions, lab actions) stay.
    For when a declaration is corrected after the capture was made."""
    scenarios = load_manifest().get("scenarios", {})
    entries = {}
    for name in names:
        prev, meta = scenarios.get(name), SCENARIOS[name]
        if prev is None or name == "mixed":
            continue
        clients = [c.get("client") for c in prev["connections"]]
        conns = [dict({"client": clients[i] if i < len(clients) else None}, **c)
                 for i, c in enumerate(meta["connections"])]
        entries[name] = dict(prev, what=meta["what"], connections=conns, exchanges=meta["exchanges"],
                             capture_findings=meta["capture_findings"], checks=meta["checks"])
    mixed = scenarios.get("mixed")
    if mixed is not None and ("mixed" in names or entries):
        parts = dict(scenarios, **entries)
        conns = []
        for c in mixed["connections"]:
            part = parts.get(c.get("from"))
            same = [p for p in part["connections"] if p["client"] == c["client"]] if part else []
            conns.append(dict(same[0], **{"from": c["from"]}) if same else c)
        exchanges = [x for x in mixed["exchanges"] if x.get("from") not in parts]
        for src in dict.fromkeys(x.get("from") for x in mixed["exchanges"]):
            if src in parts:
                exchanges += [dict(x, **{"from": src}) for x in parts[src]["exchanges"]]
        entries["mixed"] = dict(mixed, connections=conns, exchanges=exchanges)
    save_manifest(entries)
    return 0


def main(argv):
    if argv[:1] == ["--refresh"]:
        unknown = [n for n in argv[1:] if n not in SCENARIOS]
        if unknown:
            print("unknown scenarios: " + ", ".join(unknown), file=sys.stderr)
            return 2
        return refresh(argv[1:] or list(SCENARIOS))
    if os.geteuid() != 0:
        print("scripts/lab must run as root (it creates network namespaces)", file=sys.stderr)
        return 2
    names = argv or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or "-h" in argv or "--help" in argv:
        print("usage: scripts/lab [SCENARIO…]\nscenarios:\n  " + "\n  ".join(SCENARIOS), file=sys.stderr)
        return 2 if unknown else 0
    os.makedirs(CAPTURES, exist_ok=True)
    run_dir = tempfile.mkdtemp(prefix="tdsscope-lab.")
    certdir = os.path.join(run_dir, "cert")
    os.makedirs(certdir)
    make_cert(certdir)
    make_lab_ca(certdir)
    versions = client_versions()
    current = []

    def on_signal(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)

    signal.signal(signal.SIGTERM, on_signal)
    entries, failed = {}, []
    try:
        for name in names:
            meta = SCENARIOS[name]
            lab = Lab(name, run_dir)
            lab.certdir = certdir
            current[:] = [lab]
            log("%s: start" % name)
            t0 = time.time()
            try:
                if not meta.get("offline"):
                    lab.up()
                meta["fn"](lab)
                result = "ok"
            except (LabError, subprocess.TimeoutExpired) as e:
                result = "failed: %s" % e
                failed.append(name)
            finally:
                if lab.tcpdumps:
                    lab.stop_capture()
                lab.down()
                current[:] = []
            if result == "ok":
                if os.path.exists(lab.capture):
                    shutil.move(lab.capture, lab.final)
                for copy in meta["copies"]:
                    # Same packets in another file format (pcapng, NetMon 2.x) for the capture readers.
                    sh(["editcap", "-F", copy["format"], lab.final, os.path.join(CAPTURES, copy["capture"])])
            log("%s: %s (%.1f s)" % (name, result, time.time() - t0))
            if result != "ok":
                for fname in ("server.log", "client.log", "ssrp.log"):
                    text = lab.read_log(fname)
                    if text:
                        log("--- %s\n%s" % (fname, text[-1500:]))
            entries[name] = manifest_entry(name, meta, lab, versions, result)
            RUN_ENTRIES[name] = entries[name]
    finally:
        for lab in current:
            lab.down()
        if entries:
            save_manifest(entries)
        if os.environ.get("LAB_KEEP"):
            log("logs kept in " + run_dir)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
    check = subprocess.run([sys.executable, os.path.join(HERE, "check_captures.py")] + list(entries),
                           timeout=600)
    if failed:
        log("FAILED: " + ", ".join(failed))
    return 1 if failed or check.returncode else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
