#!/usr/bin/env python3
"""pyodbc over FreeTDS's ODBC driver (libtdsodbc) with MARS_Connection=Yes, for the MARS scenarios.

FreeTDS opens one SMP session per ODBC statement that has a pending result [MC-SMP], so two cursors
with results open at once put their requests on two SMP sessions of one TCP connection.

    odbc_mars_client.py --server 198.51.100.20 --port 1433 --password … --mode two-sessions|interleaved|attention|error

interleaved: the first SELECT's result is larger than the 4-packet SMP window FreeTDS grants, so the
server has to wait for the client's ACKs; the second SELECT on another session runs meanwhile.
error: as two-sessions, but the server answers the second SELECT (on session 1) with rows and an ERROR.
Exit codes: 0 done, 1 connect failed, 3 the attention mode saw its timeout (expected), 4 other error,
5 the error mode saw the server's error (expected).
"""
import argparse
import sys
import time

import pyodbc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--port", type=int, default=1433)
    ap.add_argument("--user", default="labuser")
    ap.add_argument("--password", required=True)
    ap.add_argument("--mode", choices=("two-sessions", "interleaved", "attention", "error"), default="two-sessions")
    ap.add_argument("--timeout", type=int, default=2)
    a = ap.parse_args()
    cs = ("DRIVER={FreeTDS};SERVER=%s;PORT=%d;UID=%s;PWD=%s;DATABASE=master;TDS_Version=7.4;"
          "MARS_Connection=Yes;Encryption=off" % (a.server, a.port, a.user, a.password))
    try:
        conn = pyodbc.connect(cs, autocommit=True, timeout=10)
    except pyodbc.Error as e:
        print("connect failed:", e)
        return 1
    if a.mode == "attention":
        # pyodbc applies the query timeout (SQL_ATTR_QUERY_TIMEOUT) to the cursors created after it.
        conn.timeout = a.timeout
    first, second = conn.cursor(), conn.cursor()
    # The first statement's rows stay unread while the second runs: FreeTDS needs a second session.
    first.execute("select id, name from %s" % ("big_table" if a.mode == "interleaved" else "first_table"))
    if a.mode == "interleaved":
        second.execute("select id, name from second_table")
        print("second:", second.fetchall())
        rows = first.fetchall()
        print("first: %d rows, last %r" % (len(rows), rows[-1] if rows else None))
        conn.close()
        print("interleaved done")
        return 0
    if a.mode == "error":
        code = 4
        try:
            second.execute("select id, name from second_table")
            print("second:", second.fetchall())
        except pyodbc.Error as e:
            print("second failed: %s" % e)
            code = 5
        print("first:", first.fetchall())
        conn.close()
        return code
    if a.mode == "two-sessions":
        second.execute("select id, name from second_table")
        print("second:", second.fetchall())
        print("first:", first.fetchall())
        conn.close()
        print("two-sessions done")
        return 0
    # When the query timeout expires FreeTDS sends ATTENTION on the statement's own SMP session.
    t0 = time.time()
    try:
        second.execute("select id, name from slow_table")
        print("slow query unexpectedly finished")
        code = 4
    except pyodbc.Error as e:
        print("slow query cancelled after %.1f s: %s" % (time.time() - t0, e))
        code = 3
    print("first:", first.fetchall())
    conn.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
