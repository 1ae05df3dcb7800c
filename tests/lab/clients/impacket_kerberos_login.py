#!/usr/bin/env python3
"""A Kerberos (integrated) SQL Server login with impacket's MSSQL client, the way its
mssqlclient.py -k logs in: the TGT from a ccache (KRB5CCNAME, a plain path), a TGS-REQ to the KDC
for MSSQLSvc/<host>:<port>, and a LOGIN7 whose SSPI field is a SPNEGO NegTokenInit wrapping the
AP-REQ, as Windows clients send it.

    impacket_kerberos_login.py --server sql.lab.test --kdc 198.51.100.20 --realm LAB.TEST --user labuser

impacket wraps the login in TLS whatever the server's PRELOGIN answer (it took the lab server's
NOT_SUP for a request to encrypt); its TLS set-up is switched off here so that the capture shows the
SPNEGO token. Everything else, every byte of the login, is impacket's own.
Exit 0 when logged in, 2 when the server refused the login, 1 on any other failure."""
import argparse
import sys

from impacket import tds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--port", type=int, default=1433)
    ap.add_argument("--kdc", required=True)
    ap.add_argument("--realm", required=True)
    ap.add_argument("--user", required=True)
    a = ap.parse_args()
    tds.MSSQL.set_tls_context = lambda self: None
    ms = tds.MSSQL(a.server, a.port, remoteName=a.server)
    try:
        ms.connect()
        ok = ms.kerberosLogin(None, a.user, domain=a.realm, kdcHost=a.kdc, useCache=True)
    except Exception as e:  # impacket raises its own and socket errors alike
        print("login failed: %s: %s" % (type(e).__name__, e))
        return 1
    finally:
        ms.printReplies()
    print("logged in" if ok else "login refused")
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
