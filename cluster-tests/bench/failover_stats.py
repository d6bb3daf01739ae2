#!/usr/bin/env python3
"""failover_stats.py OUTDIR: summary tables (markdown) of failover_bench.sh
results: failover-<timing>.tsv and drain.tsv in OUTDIR. All times in ms
after the kill (failover) or the drain command (drain).

failover_stats.py --compare OUTDIR1 OUTDIR2: one failover table per timing
set with the median / max of both runs side by side (docs/benchmarks.md)."""
import os
import statistics
import sys


def kv(s):
    out = {}
    for part in s.split():
        k, _, v = part.partition("=")
        out[k] = v
    return out


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def pct(vals, p):
    vals = sorted(vals)
    if not vals:
        return None
    k = (len(vals) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(vals) - 1)
    return vals[lo] + (vals[hi] - vals[lo]) * (k - lo)


def fmt(v):
    return "-" if v is None else "%.0f" % v


def row(name, vals, what, cols=("median", "max")):
    vals = [v for v in vals if v is not None]
    cells = []
    for c in cols:
        if not vals:
            cells.append("-")
        elif c == "median":
            cells.append(fmt(statistics.median(vals)))
        elif c == "max":
            cells.append(fmt(max(vals)))
        elif c == "min":
            cells.append(fmt(min(vals)))
        elif c == "p90":
            cells.append(fmt(pct(vals, 0.9)))
    print("| %s | %d | %s | %s |" % (name, len(vals), " | ".join(cells), what))


def diff(a, b):
    if a is None or b is None:
        return None
    return a - b


def failover(path, timing):
    rows = []
    with open(path) as f:
        for line in f:
            c = line.rstrip("\n").split("\t")
            if len(c) < 13:
                continue
            p = kv(c[5])
            rows.append({
                "trial": int(c[1]), "kind": c[2], "victim": c[3],
                "client": c[4], "p": p, "backpoll": num(c[6]),
                "allow": num(c[7]), "leader": num(c[8]),
                "markdown": num(c[10]), "downpoll": num(c[11]),
                "addr": c[12],
            })
    for kind in ("leader", "follower"):
        rs = [r for r in rows if r["kind"] == kind]
        if not rs:
            continue
        trials = sorted({r["trial"] for r in rs})
        per_trial = {r["trial"]: r for r in rs}
        ok = sum(1 for r in rs if r["p"].get("init", "NA") != "NA")
        same = sum(1 for r in rs
                   if r["addr"].split("=")[0] == r["addr"].split("=")[1])
        temps = sum(int(r["p"].get("temps", "0")) for r in rs)
        print()
        print("#### %s timings, victim = raft %s (%d trials, %d client "
              "reconnects, %d back, %d with the same address, %d "
              "AUTH_FAILED,TEMP)" % (timing, kind, len(trials), len(rs), ok,
                                      same, temps))
        print()
        print("| part | n | median ms | max ms | what |")
        print("|---|---|---|---|---|")

        def g(r, k):
            return num(r["p"].get(k))

        if kind == "leader":
            row("election", [per_trial[t]["leader"] for t in trials],
                "kill -> a survivor logs the new leader")
        row("gateway marked down (log)",
            [per_trial[t]["markdown"] for t in trials],
            "kill -> leader logs 'marking it down'")
        row("gateway down (polled)",
            [per_trial[t]["downpoll"] for t in trials],
            "kill -> `cluster gateways` shows down (~0.1 s poll)")
        row("client detection", [g(r, "detect") for r in rs],
            "kill -> client's ping-restart fires")
        row("reconnect wait", [diff(g(r, "link"), g(r, "detect")) for r in rs],
            "ping-restart -> client starts the attempt that succeeds")
        row("TLS handshake", [diff(g(r, "tls"), g(r, "link")) for r in rs],
            "attempt start -> 'Peer Connection Initiated'")
        row("admission", [diff(g(r, "push"), g(r, "tls")) for r in rs],
            "TLS done -> PUSH_REPLY (ovhad decides, openvpn pushes)")
        row("admission (server log)",
            [diff(r["allow"], g(r, "tls")) for r in rs],
            "client TLS done -> survivor logs 'decide: allow' (ms)")
        row("tun setup", [diff(g(r, "init"), g(r, "push")) for r in rs],
            "PUSH_REPLY -> 'Initialization Sequence Completed'")
        row("**control-plane share**",
            [diff(g(r, "init"), g(r, "link")) for r in rs],
            "attempt start -> client back (TLS + admission + tun)")
        row("client back", [g(r, "init") for r in rs],
            "kill -> 'Initialization Sequence Completed'")
        row("client back (polled)", [r["backpoll"] for r in rs],
            "kill -> same address on tun0 again (~0.1 s poll)")


def drain(path):
    rs = []
    with open(path) as f:
        for line in f:
            c = line.rstrip("\n").split("\t")
            if len(c) < 6:
                continue
            rs.append({"client": c[0], "p": kv(c[1]), "poll": num(c[2]),
                       "allow": num(c[3]), "cmd": num(c[4]), "addr": c[5]})
    if not rs:
        return

    def g(r, k):
        return num(r["p"].get(k))

    back = [r for r in rs if g(r, "init") is not None]
    same = sum(1 for r in rs
               if r["addr"].split("=")[0] == r["addr"].split("=")[1])
    off = sum(1 for r in back if not r["p"].get("peer", "").endswith(".1"))
    temps = sum(int(r["p"].get("temps", "0")) for r in rs)
    inits = [g(r, "init") for r in back]
    print()
    print("#### drain of %d clients off gw1: %d back (%d on another gateway, "
          "%d with the same address), %d AUTH_FAILED,TEMP; total %s ms "
          "(last client back), drain command returned after %s ms" %
          (len(rs), len(back), off, same, temps,
           fmt(max(inits) if inits else None), fmt(rs[0]["cmd"])))
    print()
    print("| part | n | median ms | p90 ms | max ms | what |")
    print("|---|---|---|---|---|---|")
    cols = ("median", "p90", "max")
    row("client told to restart", [g(r, "detect") for r in rs],
        "drain -> client gets RESTART", cols)
    row("reconnect wait", [diff(g(r, "link"), g(r, "detect")) for r in rs],
        "RESTART -> attempt that succeeds starts", cols)
    row("TLS handshake", [diff(g(r, "tls"), g(r, "link")) for r in rs],
        "attempt start -> 'Peer Connection Initiated'", cols)
    row("admission", [diff(g(r, "push"), g(r, "tls")) for r in rs],
        "TLS done -> PUSH_REPLY", cols)
    row("tun setup", [diff(g(r, "init"), g(r, "push")) for r in rs],
        "PUSH_REPLY -> 'Initialization Sequence Completed'", cols)
    row("client back", inits, "drain -> 'Initialization Sequence Completed'",
        cols)
    row("client back (polled)", [r["poll"] for r in rs],
        "drain -> same address + new init seen (~0.3-1 s poll)", cols)


def load_failover(path):
    rows = []
    with open(path) as f:
        for line in f:
            c = line.rstrip("\n").split("\t")
            if len(c) < 13:
                continue
            rows.append({"trial": int(c[1]), "kind": c[2], "p": kv(c[5]),
                         "poll": num(c[6]), "allow": num(c[7]),
                         "leader": num(c[8]), "md": num(c[10]),
                         "dp": num(c[11])})
    return rows


def compare(dirs):
    def d(r, a, b):
        return diff(num(r["p"].get(a)), num(r["p"].get(b)))

    parts = [
        ("election (leader victims only)", True, lambda r: r["leader"]),
        ("gateway marked down (leader's log)", True, lambda r: r["md"]),
        ("gateway down in `cluster gateways` (polled)", True,
         lambda r: r["dp"]),
        ("client detection (ping-restart fires)", False,
         lambda r: num(r["p"].get("detect"))),
        ("reconnect wait (restart pause, dead-remote retry)", False,
         lambda r: d(r, "link", "detect")),
        ("TLS handshake with the survivor", False,
         lambda r: d(r, "tls", "link")),
        ("ovhad decision (TLS done -> `decide: allow`)", False,
         lambda r: diff(r["allow"], num(r["p"].get("tls")))),
        ("admission (TLS done -> PUSH_REPLY)", False,
         lambda r: d(r, "push", "tls")),
        ("tun setup (PUSH_REPLY -> init)", False,
         lambda r: d(r, "init", "push")),
        ("**control-plane share** (attempt start -> back)", False,
         lambda r: d(r, "init", "link")),
        ("**client back** (kill -> init)", False,
         lambda r: num(r["p"].get("init"))),
        ("client back, polled tun0 address", False, lambda r: r["poll"]),
    ]

    def cell(vals):
        vals = [v for v in vals if v is not None]
        if not vals:
            return "-"
        return "%.0f / %.0f" % (statistics.median(vals), max(vals))

    for timing in ("default", "fast"):
        runs = []
        for dd in dirs:
            p = os.path.join(dd, "failover-%s.tsv" % timing)
            runs.append(load_failover(p) if os.path.exists(p) else [])
        if not any(runs):
            continue
        print()
        print("#### %s timings (ms after the kill, median / max)" % timing)
        print()
        hdr = []
        for k in ("leader", "follower"):
            for i in range(len(runs)):
                hdr.append("%s victim, run %d" % (k, i + 1))
        print("| part | %s |" % " | ".join(hdr))
        print("|---|%s" % ("---|" * len(hdr)))
        for name, per_trial, f in parts:
            cells = []
            for k in ("leader", "follower"):
                for rows in runs:
                    rs = [r for r in rows if r["kind"] == k]
                    if per_trial:
                        seen = {}
                        for r in rs:
                            seen.setdefault(r["trial"], r)
                        rs = list(seen.values())
                    if name.startswith("election") and k == "follower":
                        cells.append("-")
                        continue
                    cells.append(cell([f(r) for r in rs]))
            print("| %s | %s |" % (name, " | ".join(cells)))
        counts = []
        for i, rows in enumerate(runs):
            counts.append("run %d: %d trials, %d reconnects" % (
                i + 1, len({r["trial"] for r in rows}), len(rows)))
        print()
        print("(%s)" % "; ".join(counts))


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "--compare":
        compare(sys.argv[2:])
        return
    out = sys.argv[1]
    for timing in ("default", "fast"):
        p = os.path.join(out, "failover-%s.tsv" % timing)
        if os.path.exists(p):
            failover(p, timing)
    p = os.path.join(out, "drain.tsv")
    if os.path.exists(p):
        drain(p)
    p = os.path.join(out, "kills.tsv")
    if os.path.exists(p):
        print()
        print("| phase | clients killed < 200 ms after admission "
              "by the admitting gateway | admissions |")
        print("|---|---|---|")
        with open(p) as f:
            for line in f:
                c = line.rstrip("\n").split("\t")
                print("| %s |" % " | ".join(c))


if __name__ == "__main__":
    main()
