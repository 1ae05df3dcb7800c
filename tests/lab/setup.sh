#!/usr/bin/env bash
# Installs the real third-party clients the scenario lab drives. Idempotent: each step is skipped
# when its tool is already there. Everything comes from package registries by package name.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

need_apt=()
command -v tsql >/dev/null || need_apt+=(freetds-bin)
command -v nmap >/dev/null || need_apt+=(nmap)
command -v tcpdump >/dev/null || need_apt+=(tcpdump)
command -v tshark >/dev/null || need_apt+=(tshark)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v iptables >/dev/null || need_apt+=(iptables)
command -v ethtool >/dev/null || need_apt+=(ethtool)
command -v node >/dev/null || need_apt+=(nodejs npm)
# FreeTDS's ODBC driver (built with MARS) and the driver manager, for the MARS scenarios.
[ -e /usr/lib/x86_64-linux-gnu/odbc/libtdsodbc.so ] || need_apt+=(tdsodbc unixodbc)
# A real MIT Kerberos KDC and its clients (kinit, kvno), and dig for DNS over TCP.
command -v krb5kdc >/dev/null || need_apt+=(krb5-kdc)
command -v kadmin.local >/dev/null || need_apt+=(krb5-admin-server)
command -v kvno >/dev/null || need_apt+=(krb5-user)
command -v dig >/dev/null || need_apt+=(bind9-dnsutils)
if ((${#need_apt[@]})); then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}"
fi

# python-tds (module pytds) and impacket (mssqlclient / mssqlinstance); version-pinned loosely so
# the captures stay reproducible across sessions.
python3 -c 'import pytds' 2>/dev/null || python3 -m pip install -q 'python-tds>=1.16'
python3 -c 'import impacket' 2>/dev/null || python3 -m pip install -q 'impacket>=0.12'
python3 -c 'import pyodbc' 2>/dev/null || python3 -m pip install -q 'pyodbc>=5'

if [ ! -d "$here/node/node_modules/tedious" ]; then
    (cd "$here/node" && npm install --no-audit --no-fund --loglevel=error)
fi
echo "lab setup: ok"
