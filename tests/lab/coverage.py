#!/usr/bin/env python3
"""Which finding codes of the contract (shared/spec/findings.md) the lab's manifest expects, and in
which scenarios. Prints a Markdown table; codes no scenario produces yet are listed last."""
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def findings_md():
    for base in (os.path.join(ROOT, "..", "shared"), "/work/shared"):
        path = os.path.join(base, "spec", "findings.md")
        if os.path.exists(path):
            return path
    sys.exit("findings.md not found")


def main():
    with open(findings_md()) as fh:
        codes = re.findall(r"^\| `([a-z_]+\.[a-z_]+)` \|", fh.read(), re.M)
    with open(os.path.join(ROOT, "tests", "captures", "manifest.json")) as fh:
        scenarios = json.load(fh)["scenarios"]
    where = {c: [] for c in codes}
    for name, sc in sorted(scenarios.items()):
        found = [f["code"] for c in sc["connections"] for f in c["findings"]]
        found += [f["code"] for e in sc["exchanges"] for f in e["findings"]]
        found += [f["code"] for f in sc.get("capture_findings", [])]
        for code in set(found):
            where.setdefault(code, []).append("%s (%s)" % (name, sc["client"]))
    print("| code | scenarios (client) |\n|---|---|")
    for code in codes:
        if where[code]:
            print("| `%s` | %s |" % (code, ", ".join(where[code])))
    missing = [c for c in codes if not where[c]]
    print("\nNot produced yet: " + ", ".join("`%s`" % c for c in missing))
    extra = [c for c in where if c not in codes]
    if extra:
        print("\nCodes in the manifest but not in findings.md: " + ", ".join(extra))


if __name__ == "__main__":
    main()
