#!/usr/bin/env python3
"""Re-reads tests/captures/manifest.json against tshark: every scenario's capture exists, is under
1 MiB, and each of its checks (a display filter with a frame-count range) holds. No root needed.

    tests/lab/check_captures.py [SCENARIO…]
Prints one line per check and a closing 'N passed, N failed' line.
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CAPTURES = os.path.join(os.path.dirname(HERE), "captures")
LIMIT = 1024 * 1024


def count(capture, decode_as, display_filter, opts=()):
    r = subprocess.run(["tshark", "-n", "-r", capture, "-d", decode_as] + list(opts) + ["-Y", display_filter, "-T", "fields",
                        "-e", "frame.number"], capture_output=True, text=True, timeout=120)
    # A deliberately truncated file makes tshark exit non-zero after reading every whole frame.
    if r.returncode != 0 and "cut short" not in r.stderr:
        raise RuntimeError(r.stderr.strip()[:300])
    return len([x for x in r.stdout.splitlines() if x.strip()])


def main(names):
    with open(os.path.join(CAPTURES, "manifest.json")) as fh:
        manifest = json.load(fh)
    scenarios = manifest["scenarios"]
    passed = failed = 0
    for name in names or sorted(scenarios):
        sc = scenarios[name]
        capture = os.path.join(CAPTURES, sc["capture"])
        ok = os.path.exists(capture) and os.path.getsize(capture) < LIMIT
        print("%-4s %s: capture %s (%s bytes)" % ("ok" if ok else "FAIL", name, sc["capture"],
                                                   os.path.getsize(capture) if os.path.exists(capture) else "missing"))
        passed, failed = passed + ok, failed + (not ok)
        if not ok:
            continue
        files = [capture] + [os.path.join(CAPTURES, c["capture"]) for c in sc.get("copies", [])]
        for path in files[1:]:
            good = os.path.exists(path) and os.path.getsize(path) < LIMIT
            print("%-4s %s: copy %s" % ("ok" if good else "FAIL", name, os.path.basename(path)))
            passed, failed = passed + good, failed + (not good)
        for c in [dict(c, file=path) for path in files if os.path.exists(path) for c in sc["checks"]]:
            capture = c["file"]
            try:
                n = count(capture, sc["decode_as"], c["filter"], sc.get("tshark_opts", []))
                good = n >= c["min"] and (c["max"] is None or n <= c["max"])
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                n, good = "error: %s" % e, False
            rng = "%s..%s" % (c["min"], "" if c["max"] is None else c["max"])
            print("%-4s %s [%s]: %s -> %s frames (want %s)" % ("ok" if good else "FAIL", name,
                                                                os.path.basename(capture), c["filter"], n, rng))
            passed, failed = passed + good, failed + (not good)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
