#!/usr/bin/env python3
"""cluster-tests/jepsen/test_checker.py: checker.py against small made-up
histories, so each checker is seen to pass a clean history and to fail
the violation it exists for. No root, no cluster; run by smoke.sh first.
Prints "N passed, N failed"; exit 0 when all passed."""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
T = 1000.0


def ev(typ, f, proc, op, t, value):
    return {"type": typ, "f": f, "process": proc, "op": op, "time": T + t,
            "value": value}


def connect(op, cn, gw, t0, t1, ip, key, cid=1, proc="w0"):
    return [ev("invoke", "connect", proc, op, t0, {"cn": cn, "gw": gw}),
            ev("ok", "connect", proc, op, t1,
               {"cn": cn, "gw": gw, "ip": ip, "client": key, "cid": cid})]


def disconnect(op, key, t0, t1, proc="w0"):
    return [ev("invoke", "disconnect", proc, op, t0, {"client": key}),
            ev("ok", "disconnect", proc, op, t1, {"client": key})]


def lost(key, last, missing):
    return [ev("info", "lost", "monitor", None, missing,
               {"client": key, "last_seen": T + last,
                "missing_at": T + missing, "why": "test"})]


def final_ev(t, live, sims):
    return [ev("info", "final", "monitor", None, t,
               {"live": live, "sims": sims})]


def audit(n, tamper_at=None):
    recs = []
    prev = "0" * 64
    for s in range(1, n + 1):
        h = "%064x" % (s * 7919)
        if tamper_at is not None and s >= tamper_at:
            h = "%064x" % (s * 7919 + 1)
        recs.append({"seq": s, "hash": h, "prev_hash": prev})
        prev = h
    return recs


def node(leases, usage, recs, ok=True):
    return {"leases": {"leases": leases}, "usage": usage, "audit": recs,
            "audit_verify": {"ok": ok, "head_seq": len(recs)},
            "read_at": T + 30, "usage_applied": [7, 7], "errors": []}


def run(hist, fin, nem=()):
    with tempfile.TemporaryDirectory() as d:
        hp, np_, fp = (os.path.join(d, x) for x in ("h", "n", "f"))
        with open(hp, "w") as f:
            for r in hist:
                f.write(json.dumps(r) + "\n")
        with open(np_, "w") as f:
            for r in nem:
                f.write(json.dumps(r) + "\n")
        with open(fp, "w") as f:
            json.dump(fin, f)
        p = subprocess.run(
            [sys.executable, os.path.join(HERE, "checker.py"), "--history",
             hp, "--nemesis", np_, "--final", fp, "--lease-ttl-ms", "6000",
             "--max-skew-ms", "0", "--takeover-ms", "1000",
             "--bytes-in", "100", "--bytes-out", "900", "--bytes-init", "0"],
            capture_output=True, text=True)
        summary = [ln for ln in p.stdout.splitlines()
                   if ln.startswith("violations:")]
        counts = {}
        if summary:
            for kv in summary[0].split()[1:]:
                k, v = kv.split("=")
                counts[k] = v
        return p.returncode, counts, p.stdout


def base_final(ip_lease=None, usage=None, recs=None, recs2=None):
    leases = ip_lease if ip_lease is not None else []
    usage = usage if usage is not None else {"a": {"bytes_in": 0,
                                                   "bytes_out": 0}}
    recs = recs if recs is not None else audit(5)
    return {"nodes": {"gw1": node(leases, usage, recs),
                      "gw2": node(leases, usage,
                                  recs2 if recs2 is not None else recs)}}


def clean_hist():
    # a on .2 then gone; b gets .3; a back on .2 within the TTL (sticky).
    h = [ev("info", "start", "workload", None, 0, {})]
    h += connect(1, "a", 1, 1, 1.1, "100.64.0.2", "k1")
    h += connect(2, "b", 2, 1.2, 1.3, "100.64.0.3", "k2", cid=2)
    h += disconnect(3, "k1", 3, 3.1)
    h += connect(4, "a", 2, 4, 4.1, "100.64.0.2", "k3", cid=3)
    h += disconnect(5, "k2", 5, 5.1)
    h += disconnect(6, "k3", 6, 6.1)
    h += [ev("info", "bytes-off", "workload", None, 9,
             {"gw1": "ok", "gw2": "ok"})]
    h += final_ev(10, [], {"gw1": [], "gw2": []})
    return h


CASES = []


def case(fn):
    CASES.append(fn)
    return fn


@case
def clean_passes():
    rc, c, out = run(clean_hist(), base_final())
    return rc == 0 and c.get("total") == "0", out


@case
def two_cns_on_one_ip_fail_1_and_5():
    h = [ev("info", "start", "workload", None, 0, {})]
    h += connect(1, "a", 1, 1, 1.1, "100.64.0.2", "k1")
    h += connect(2, "b", 2, 2, 2.1, "100.64.0.2", "k2", cid=2)
    h += lost("k1", 3, 3.2)  # a surely ran until 3: overlaps b from 2.1
    h += disconnect(3, "k2", 4, 4.1)
    h += final_ev(10, [], {"gw1": [], "gw2": []})
    rc, c, out = run(h, base_final())
    return rc == 1 and c["c1"] != "0" and c["c5"] != "0", out


@case
def one_cn_twice_too_long_fails_1_only():
    h = [ev("info", "start", "workload", None, 0, {})]
    h += connect(1, "a", 1, 1, 1.1, "100.64.0.2", "k1")
    h += connect(2, "a", 2, 2, 2.1, "100.64.0.2", "k2", cid=2)
    h += lost("k1", 5, 5.2)  # 2.9 s > the 1 s takeover bound
    h += disconnect(3, "k2", 6, 6.1)
    h += final_ev(10, [], {"gw1": [], "gw2": []})
    rc, c, out = run(h, base_final())
    return rc == 1 and c["c1"] != "0" and c["c5"] == "0", out


@case
def one_cn_twice_while_old_gateway_paused_passes():
    h = [ev("info", "start", "workload", None, 0, {})]
    h += connect(1, "a", 1, 1, 1.1, "100.64.0.2", "k1")
    h += connect(2, "a", 2, 2, 2.1, "100.64.0.2", "k2", cid=2)
    h += lost("k1", 5, 5.2)  # gw1 was stopped 1.5..4.5: it could not kill
    h += disconnect(3, "k2", 6, 6.1)
    h += final_ev(10, [], {"gw1": [], "gw2": []})
    nem = [ev("info", "start-pause", "nemesis", None, 1.5, {"nodes": [1]}),
           ev("info", "stop-pause", "nemesis", None, 4.5, {"nodes": [1]})]
    rc, c, out = run(h, base_final(), nem)
    return rc == 0, out


@case
def sticky_broken_fails_2():
    h = [ev("info", "start", "workload", None, 0, {})]
    h += connect(1, "a", 1, 1, 1.1, "100.64.0.2", "k1")
    h += disconnect(2, "k1", 2, 2.1)
    h += connect(3, "a", 2, 3, 3.1, "100.64.0.9", "k2", cid=2)
    h += disconnect(4, "k2", 4, 4.1)
    h += final_ev(10, [], {"gw1": [], "gw2": []})
    rc, c, out = run(h, base_final())
    return rc == 1 and c["c2"] != "0", out


@case
def sticky_after_ttl_is_free():
    h = [ev("info", "start", "workload", None, 0, {})]
    h += connect(1, "a", 1, 1, 1.1, "100.64.0.2", "k1")
    h += disconnect(2, "k1", 2, 2.1)
    h += connect(3, "a", 2, 9, 9.1, "100.64.0.9", "k2", cid=2)
    h += disconnect(4, "k2", 10, 10.1)
    h += final_ev(12, [], {"gw1": [], "gw2": []})
    rc, c, out = run(h, base_final())
    return rc == 0, out


@case
def usage_doubled_fails_3():
    # a ran ~2 s: at most (2 + 2) rounds x 1000 bytes; 9000 charged.
    fin = base_final(usage={"a": {"bytes_in": 1000, "bytes_out": 8000},
                            "b": {"bytes_in": 0, "bytes_out": 0}})
    for n in fin["nodes"].values():
        n["read_at"] = T + 6.2  # read right after the run
    rc, c, out = run(clean_hist(), fin)
    return rc == 1 and c["c3"] != "0", out


@case
def usage_differs_between_nodes_fails_3():
    fin = base_final()
    fin["nodes"]["gw2"]["usage"] = {"a": {"bytes_in": 1, "bytes_out": 0}}
    rc, c, out = run(clean_hist(), fin)
    return rc == 1 and c["c3"] != "0", out


@case
def audit_fork_fails_4():
    rc, c, out = run(clean_hist(), base_final(recs=audit(6),
                                              recs2=audit(6, tamper_at=4)))
    return rc == 1 and c["c4"] != "0", out


@case
def audit_unverified_fails_4():
    fin = base_final()
    fin["nodes"]["gw1"]["audit_verify"]["ok"] = False
    rc, c, out = run(clean_hist(), fin)
    return rc == 1 and c["c4"] != "0", out


@case
def audit_lagging_prefix_passes():
    rc, c, out = run(clean_hist(), base_final(recs=audit(6),
                                              recs2=audit(4)))
    return rc == 0, out


@case
def final_double_ip_fails_1():
    h = clean_hist()[:-1]
    h += final_ev(10, [], {"gw1": [[1, "a", "100.64.0.2"]],
                           "gw2": [[2, "b", "100.64.0.2"]]})
    rc, c, out = run(h, base_final())
    return rc == 1 and c["c1"] != "0", out


def main():
    passed = failed = 0
    for fn in CASES:
        ok, out = fn()
        if ok:
            passed += 1
            print("ok - %s" % fn.__name__)
        else:
            failed += 1
            print("not ok - %s\n%s" % (fn.__name__, out))
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
