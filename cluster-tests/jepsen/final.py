#!/usr/bin/env python3
"""cluster-tests/jepsen/final.py: reads the final state of every node of a
Jepsen-style run after heal and settle, into one JSON file for checker.py:

  {"nodes": {"gwN": {"cluster", "leases", "sessions", "gateways",
                      "audit": [records...], "audit_verify", "usage":
                      {cn: answer}, "errors": [...]}}}

Every answer is kept as the node gave it (status and body); a node that
does not answer gets its errors listed, and the checkers say so.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jlib  # noqa: E402


def get(sock, path, errors):
    try:
        st, js = jlib.api(sock, "GET", path, timeout=10)
    except OSError as e:
        errors.append("%s: %s" % (path, e))
        return None
    if st != 200:
        errors.append("%s: HTTP %d %s" % (path, st, str(js)[:200]))
        return None
    return js


def audit_all(sock, errors):
    """Every kept audit record, paged with ?after=S&limit=1000."""
    out = []
    after = 0
    for _ in range(1000):
        js = get(sock, "/v1/audit?after=%d&limit=1000" % after, errors)
        if js is None:
            return out
        recs = js.get("records", js.get("audit", [])) if isinstance(
            js, dict) else js
        if not recs:
            return out
        out.extend(recs)
        last = recs[-1].get("seq")
        if last is None or last <= after:
            errors.append("audit paging stuck at %s" % after)
            return out
        after = last
    errors.append("audit: more than 1000 pages")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, required=True)
    ap.add_argument("--cns", type=int, required=True)
    ap.add_argument("--sock-fmt", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    res = {"nodes": {}}
    for n in range(1, a.nodes + 1):
        sock = a.sock_fmt.format(n=n)
        errs = []
        node = {
            "cluster": get(sock, "/v1/cluster", errs),
            "leases": get(sock, "/v1/leases", errs),
            "sessions": get(sock, "/v1/cluster/sessions", errs),
            "gateways": get(sock, "/v1/cluster/gateways", errs),
            "audit": audit_all(sock, errs),
            "audit_verify": get(sock, "/v1/audit/verify", errs),
            "usage": {},
        }
        # The applied index around the usage reads: nodes are compared
        # only when they were read at one index that did not move.
        before = get(sock, "/v1/cluster", errs) or {}
        for i in range(a.cns):
            cn = "c%03d" % i
            node["usage"][cn] = get(sock, "/v1/usage?cn=%s" % cn, errs)
        after = get(sock, "/v1/cluster", errs) or {}
        node["usage_applied"] = [before.get("last_applied"),
                                 after.get("last_applied")]
        node["errors"] = errs
        node["read_at"] = time.time()
        res["nodes"]["gw%d" % n] = node
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1, sort_keys=True)
    bad = sum(len(v["errors"]) for v in res["nodes"].values())
    print("final: %d nodes read, %d errors" % (a.nodes, bad))
    return 0


if __name__ == "__main__":
    sys.exit(main())
