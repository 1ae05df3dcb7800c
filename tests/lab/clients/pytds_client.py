#!/usr/bin/env python3
"""python-tds (pytds) client for lab scenarios: a real third-party TDS driver.

Modes:
  query        log in, run one query, close
  sleep_query  log in, sleep --sleep seconds (idle), then run a query
  sleep_close  log in, sleep --sleep seconds (idle), then close without a query
  timeout      log in, run a query with a command timeout (--timeout): pytds sends ATTENTION
  big          log in, send one large SQL batch (--size bytes) so a slow reader's window fills
  loop         --count times: connect, run the query, close (an application without pooling)
  chatty       log in once, then run the query --count times, one round trip each
Exit code 0 when the mode's expected outcome happened; errors are printed, never the password.
"""
import argparse
import sys
import time

import pytds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--port", type=int, default=1433)
    ap.add_argument("--instance", default=None)
    ap.add_argument("--user", default="labuser")
    ap.add_argument("--password", required=True)
    ap.add_argument("--database", default="master")
    ap.add_argument("--mode", default="query")
    ap.add_argument("--sql", default="select id, name from lab_rows")
    ap.add_argument("--sleep", type=float, default=0)
    ap.add_argument("--timeout", type=float, default=None)
    ap.add_argument("--size", type=int, default=200000)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--login-timeout", type=float, default=10)
    # pytds normally re-dials within login_timeout (new SYNs from new ports); some scenarios want one try.
    ap.add_argument("--no-retry", action="store_true")
    a = ap.parse_args()
    kw = dict(server=a.server, database=a.database, user=a.user, password=a.password,
              login_timeout=a.login_timeout, autocommit=True, timeout=a.timeout,
              disable_connect_retry=a.no_retry)
    if a.instance:
        # "host\\INSTANCE" makes pytds ask the SQL Browser (SSRP, UDP 1434) for the port.
        kw["server"] = "%s\\%s" % (a.server, a.instance)
    else:
        kw["port"] = a.port
    if a.mode == "loop":
        for i in range(max(1, min(a.count, 1000))):
            if i and a.sleep:
                time.sleep(a.sleep)
            with pytds.connect(**kw) as conn:
                with conn.cursor() as cur:
                    cur.execute(a.sql)
                    cur.fetchall()
        print("loop done: %d connections" % a.count)
        return 0
    try:
        conn = pytds.connect(**kw)
    except Exception as e:  # the lab wants to see every failure class, printed
        print("connect failed: %s: %s" % (type(e).__name__, e))
        return 2
    print("logged in")
    try:
        if a.mode in ("sleep_query", "sleep_close"):
            time.sleep(a.sleep)
        if a.mode == "sleep_close":
            conn.close()
            print("closed")
            return 0
        if a.mode == "chatty":
            with conn.cursor() as cur:
                for _ in range(max(1, min(a.count, 5000))):
                    cur.execute(a.sql)
                    cur.fetchall()
            conn.close()
            print("chatty done: %d requests" % a.count)
            return 0
        sql = a.sql
        if a.mode == "big":
            pad = "-" * max(0, a.size - len(sql) - 2)
            sql = sql + "\n" + pad
        with conn.cursor() as cur:
            cur.execute(sql)
            rows = cur.fetchall() if cur.description else []
            print("rows: %d" % len(rows))
        conn.close()
    except Exception as e:
        print("query failed: %s: %s" % (type(e).__name__, e))
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
