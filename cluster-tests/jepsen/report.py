#!/usr/bin/env python3
"""cluster-tests/jepsen/report.py: re-judges kept runs with the current
checker.py and prints a markdown results table (docs/jepsen.md).

  report.py RUN_DIR...

A run dir is run.sh's JEPSEN_OUT (history.jsonl, nemesis.jsonl,
final.json, verdict.txt). The checker's parameters are run.sh's defaults;
seed, nodes, nemesis, duration and bug come from the verdict's `run:` line.
"""
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def judge(d):
    p = subprocess.run(
        [sys.executable, os.path.join(HERE, "checker.py"),
         "--history", os.path.join(d, "history.jsonl"),
         "--nemesis", os.path.join(d, "nemesis.jsonl"),
         "--final", os.path.join(d, "final.json"),
         "--lease-ttl-ms", "6000", "--max-skew-ms", "2000",
         "--takeover-ms", "3100", "--bytes-interval-s", "1",
         "--bytes-in", "125000", "--bytes-out", "625000"],
        capture_output=True, text=True)
    return p.returncode, p.stdout


def main():
    rows = []
    for d in sys.argv[1:]:
        try:
            with open(os.path.join(d, "verdict.txt")) as f:
                label = f.readline()
        except OSError:
            continue
        if not os.path.exists(os.path.join(d, "final.json")):
            continue
        label = label.replace("hold=2 6", "hold=2-6")
        m = re.search(r"hold=(\d+) (\d+)", label)
        if m:
            label = label.replace(m.group(0), "hold=%s-%s" % m.groups())
        kv = dict(re.findall(r"(\w+)=(\S+)", label))
        rc, out = judge(d)
        m = re.search(r"^history: (\d+) operations", out, re.M)
        ops = m.group(1) if m else "?"
        m = re.search(r"^faults: (\d+) \((.*)\)", out, re.M)
        faults = "%s (%s)" % (m.group(1), m.group(2)) if m else "?"
        m = re.search(r"^violations: (.*) total=(\d+)", out, re.M)
        viol = m.group(1) if m else "?"
        m = re.search(r"midpoint estimate of what was sent = ([\d.]+)", out)
        ratio = m.group(1) if m else "-"
        notes = []
        if kv.get("hold", "default") != "default":
            notes.append("holds %s s" % kv["hold"])
        if kv.get("cns", "40") != "40":
            notes.append("%s CNs" % kv["cns"])
        if "usage not compared" in out:
            notes.append("usage not compared across nodes")
        rows.append((int(kv.get("seed", 0)), kv.get("nodes", "?"),
                     kv.get("nemesis", "?"), kv.get("duration", "?"),
                     kv.get("bug", "none"), ops, faults, viol, ratio,
                     "violations" if rc else "clean", "; ".join(notes)))
    rows.sort(key=lambda r: (r[2], r[0]))
    print("| seed | nodes | nemesis | duration | bug | ops | faults | "
          "violations | usage ratio | verdict | note |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %s |" % " | ".join(str(x) for x in r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
