#!/usr/bin/env python3
"""cluster-tests/jepsen/checker.py: the checkers of a Jepsen-style run
(python 3, stdlib only). Inputs: the workload's history.jsonl, the
nemesis.jsonl of run.sh and the final state of every node (final.py).
Method and limits: docs/jepsen.md.

Each client the workload admitted is known by the interval during which
it surely ran, [connect ok, last_seen] (last_seen: the last simulator dump
that listed it, or the invoke of the disconnect that removed it), and the
interval during which it may have run, [connect invoke, found missing /
disconnect ok / end].

 1 no IP held by two live clients: no two surely-running intervals on one
   IP overlap for different CNs; for one CN (a roam: the old gateway must
   kill its client) not longer than --takeover-ms. Final state: no IP twice
   among the simulators' clients, every running client's IP leased to its
   CN with a live session on every node, and the nodes' lease tables equal.
 2 sticky IPs: a CN admitted again before its previous lease can have
   expired gets the same IP, and is never refused for an exhausted pool.
 3 usage: every node reports the same bytes per CN, and no CN is charged
   more than its clients can have sent (no charge counted twice); the
   shortfall against what surely was sent is printed, not judged (a charge
   whose outcome is unknown may be lost: at most once).
 4 audit: every node's chain verifies (its own /v1/audit/verify, and the
   records link seq by seq, prev_hash = hash of the one before), and the
   nodes agree on the hash of every seq they both hold.
 5 per-IP linearizability: grants (connect ok) and releases (disconnect,
   client found missing) of one IP, each at some instant within its
   invoke..complete window, must fit a register whose holders all have
   one CN (a small Wing-Gong/Porcupine search with memoisation).

Exit 0 when no checker found a violation, 1 otherwise, 2 on bad input.
"""
import argparse
import collections
import json
import sys

MAX_SHOW = 10
INF = float("inf")


def load_jsonl(path):
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                print("bad JSON at %s:%d" % (path, n))
                sys.exit(2)
    return out


class Client:
    __slots__ = ("key", "cn", "gw", "ip", "t_inv", "t_ok", "def_end",
                 "pos_end", "how", "cid")

    def __init__(self, key, cn, gw, ip, t_inv, t_ok, cid=0):
        self.key, self.cn, self.gw, self.ip = key, cn, gw, ip
        self.cid = cid
        self.t_inv, self.t_ok = t_inv, t_ok
        self.def_end = t_ok  # surely ran until
        self.pos_end = INF  # may have run until
        self.how = "running at the end"


def build(hist):
    """Clients, connect attempts, ops count, run start/end."""
    inv = {}
    clients = {}
    attempts = []  # (cn, t_inv, t_done, outcome, ip/reason)
    n_ops = 0
    t_end = max(r["time"] for r in hist) if hist else 0
    disc_inv = {}
    for r in hist:
        typ, f, v = r["type"], r["f"], r["value"]
        if typ == "invoke":
            n_ops += 1
            inv[(r["process"], r["op"])] = r
            if f == "disconnect":
                disc_inv[v["client"]] = r["time"]
            continue
        if f in ("connect", "roam"):
            i = inv.get((r["process"], r["op"]))
            if i is None:
                continue
            if typ == "ok" and v.get("ip"):
                c = Client(v["client"], v["cn"], v["gw"], v["ip"], i["time"],
                           r["time"], v.get("cid", 0))
                clients[c.key] = c
            attempts.append((i["value"]["cn"], i["time"], r["time"], typ,
                             v.get("ip") or v.get("reply", "")))
        elif f == "disconnect" and typ == "ok":
            c = clients.get(v["client"])
            if c is not None:
                c.def_end = max(c.def_end, disc_inv.get(c.key, c.t_ok))
                c.pos_end = r["time"]
                c.how = "disconnected"
        elif f == "lost":
            c = clients.get(v["client"])
            if c is not None:
                c.def_end = max(c.def_end, v["last_seen"])
                c.pos_end = v["missing_at"]
                c.how = "lost (%s)" % v.get("why", "")
        elif f == "final":
            for lv in v["live"]:
                c = clients.get(lv["client"])
                if c is not None:
                    c.def_end = max(c.def_end, lv["last_seen"])
    return clients, attempts, n_ops, t_end


def bytes_off_time(hist):
    for r in hist:
        if r["f"] == "bytes-off":
            return r["time"]
    return None


def bytes_at_rest(hist):
    for r in hist:
        if r["f"] == "bytes-off":
            return all(v == "ok" for v in r["value"].values())
    return False


def final_event(hist):
    for r in hist:
        if r["f"] == "final":
            return r["value"]
    return None


class Report:
    def __init__(self, num, name):
        self.num, self.name = num, name
        self.violations = []
        self.notes = []

    def bad(self, msg):
        self.violations.append(msg)

    def note(self, msg):
        self.notes.append(msg)

    def show(self):
        verdict = "PASS" if not self.violations else "FAIL"
        print("checker %d %s: %s (%d violations)" % (
            self.num, self.name, verdict, len(self.violations)))
        for m in self.notes:
            print("    note: %s" % m)
        for m in self.violations[:MAX_SHOW]:
            print("    VIOLATION: %s" % m)
        if len(self.violations) > MAX_SHOW:
            print("    ... %d more" % (len(self.violations) - MAX_SHOW))


def fmt_t(t, t0):
    return "%.3f" % (t - t0) if t != INF else "end"


# ---- 1: no IP held by two live clients ------------------------------------
def pause_windows(nem):
    """{gateway number: [(start, stop)]} of the pause nemesis."""
    out = collections.defaultdict(list)
    open_ = {}
    for r in nem:
        if r["f"] == "start-pause":
            for n in r["value"].get("nodes", []):
                open_[n] = r["time"]
        elif r["f"] in ("stop-pause", "heal-all"):
            for n, t in list(open_.items()):
                out[n].append((t, r["time"]))
                del open_[n]
    for n, t in open_.items():
        out[n].append((t, INF))
    return out


def paused_for(pauses, gw, a, b):
    """Seconds gateway gw was paused within [a, b]."""
    return sum(max(0.0, min(b, e) - max(a, s)) for s, e in pauses.get(gw, []))


def check_exclusive(clients, final, fin, takeover_s, t0, pauses):
    rep = Report(1, "no IP held by two live clients")
    extended = 0
    by_ip = collections.defaultdict(list)
    for c in clients.values():
        by_ip[c.ip].append(c)
    windows = 0
    worst = 0.0
    for ip, cs in by_ip.items():
        cs.sort(key=lambda c: c.t_ok)
        for i, a in enumerate(cs):
            for b in cs[i + 1:]:
                if b.t_ok >= a.def_end:
                    continue  # sorted by start: b (and later) after a
                ov = min(a.def_end, b.def_end) - b.t_ok
                if ov <= 0:
                    continue
                desc = "%s: %s %s@gw%d ran %s..%s, %s %s@gw%d ran %s..%s " \
                       "(overlap %.3f s)" % (
                           ip, a.key, a.cn, a.gw, fmt_t(a.t_ok, t0),
                           fmt_t(a.def_end, t0), b.key, b.cn, b.gw,
                           fmt_t(b.t_ok, t0), fmt_t(b.def_end, t0), ov)
                if a.cn != b.cn:
                    rep.bad("two CNs on " + desc)
                else:
                    windows += 1
                    worst = max(worst, ov)
                    # A stopped ovhad cannot kill its client: the time the
                    # older client's gateway was paused during the overlap
                    # adds to the bound.
                    old, new = (a, b) if a.t_ok <= b.t_ok else (b, a)
                    extra = paused_for(pauses, old.gw, new.t_ok,
                                       min(a.def_end, b.def_end))
                    if ov > takeover_s and extra > 0:
                        extended += 1
                    if ov > takeover_s + extra:
                        rep.bad("one CN twice longer than the takeover "
                                "bound%s on %s" % (
                                    " + %.3f s paused" % extra if extra
                                    else "", desc))
    rep.note("%d same-CN takeover windows (roams), longest %.3f s, bound "
             "%.3f s (+ the old gateway's pause within the window; %d "
             "windows needed that)" % (windows, worst, takeover_s, extended))
    # Final state.
    if final is None:
        rep.bad("final: no final observation in the history")
        return rep
    running = {}
    for gw, lst in final["sims"].items():
        if lst is None:
            rep.bad("final: simulator of %s not running at the end" % gw)
            continue
        for cid, cn, ip in lst:
            if ip == "-":
                continue
            if ip in running:
                rep.bad("final: %s runs on both %s (%s) and %s (%s)" % (
                    ip, running[ip][0], running[ip][1], gw, cn))
            running[ip] = (gw, cn)
    tables = {}
    for node, st in fin["nodes"].items():
        if st.get("leases") is None:
            rep.bad("final: %s did not answer /v1/leases" % node)
            continue
        tab = {}
        for le in st["leases"].get("leases", []):
            tab[le["ip"]] = (le["cn"], le["session_id"], le["expires_at"])
        tables[node] = tab
        for ip, (gw, cn) in sorted(running.items()):
            le = tab.get(ip)
            if le is None or le[0] != cn or le[1] == 0:
                rep.bad("final: %s runs %s with %s but %s's lease is %s" % (
                    gw, cn, ip, node, le))
    if tables:
        ref_node = sorted(tables)[0]
        for node, tab in tables.items():
            if tab != tables[ref_node]:
                diff = sorted(set(tab.items()) ^ set(tables[ref_node].items()))
                rep.bad("final: lease tables of %s and %s differ: %s" % (
                    ref_node, node, diff[:4]))
    rep.note("final: %d clients running, lease tables of %d nodes compared"
             % (len(running), len(tables)))
    return rep


# ---- 2: sticky IPs ------------------------------------------------------------
def fault_windows(nem):
    """Per gateway number (0 = every gateway: partitions), fault start
    times: after one the gateway may be marked down and its sessions
    orphaned while its clients still run."""
    starts = collections.defaultdict(list)
    for r in nem:
        f, v = r["f"], r["value"]
        if f == "start-partition":
            starts[0].append(r["time"])
        elif f in ("start-kill", "start-pause"):
            for n in v.get("nodes", []):
                starts[n].append(r["time"])
    return starts


def release_lb(c, starts):
    """The earliest time c's lease can have started expiring."""
    t = c.def_end
    for n in (0, c.gw):
        for s in starts.get(n, []):
            if c.t_ok <= s < t:
                t = s
    return t


def check_sticky(clients, attempts, nem, ttl_s, slack_s, t0):
    rep = Report(2, "sticky IPs")
    starts = fault_windows(nem)
    by_cn = collections.defaultdict(list)
    for c in clients.values():
        by_cn[c.cn].append(c)
    for cs in by_cn.values():
        cs.sort(key=lambda c: c.t_ok)
    checked = 0
    refused = 0
    for cn, t_inv, t_done, typ, what in attempts:
        prev = None
        for c in by_cn.get(cn, []):
            if c.t_ok < t_inv:
                prev = c
        if prev is None:
            continue
        lb = release_lb(prev, starts)
        if t_inv >= lb + ttl_s - slack_s:
            continue  # the lease may have expired
        if typ == "ok" and what and what.startswith("100."):
            checked += 1
            if what != prev.ip:
                rep.bad("%s had %s (client %s, released no earlier than %s), "
                        "asked again at %s (< %.1f s later) and got %s" % (
                            cn, prev.ip, prev.key, fmt_t(lb, t0),
                            fmt_t(t_inv, t0), ttl_s - slack_s, what))
        elif typ == "fail" and "pool_exhausted" in what:
            refused += 1
            rep.bad("%s's lease on %s cannot have expired (released no "
                    "earlier than %s) but its connect at %s was refused: %s"
                    % (cn, prev.ip, fmt_t(lb, t0), fmt_t(t_inv, t0),
                       what[:80]))
    rep.note("%d re-admissions within ttl - slack (%.1f s) checked" % (
        checked, ttl_s - slack_s))
    return rep


# ---- 3: usage --------------------------------------------------------------------
def usage_estimate(clients, t_end, stop, per_s):
    """Bytes sent by every client over its life, each end taken at the
    middle of its uncertainty window, counters stopped at `stop`."""
    est = 0.0
    stop = stop if stop is not None else t_end
    for c in clients.values():
        start = (c.t_inv + c.t_ok) / 2
        if c.pos_end == INF:
            end = stop
        else:
            end = min(stop, (c.def_end + c.pos_end) / 2)
        est += max(0.0, end - start) * per_s
    return est


def check_usage(clients, fin, t_end, interval_s, b_in, b_out, init,
                at_rest, bytes_off_time):
    rep = Report(3, "usage charged at most once")
    per_node = {}
    for node, st in fin["nodes"].items():
        u = {}
        for cn, ans in (st.get("usage") or {}).items():
            if ans is None:
                rep.bad("%s: no /v1/usage answer for %s" % (node, cn))
                continue
            u[cn] = (ans.get("bytes_in", 0), ans.get("bytes_out", 0))
        per_node[node] = u
    nodes = sorted(per_node)
    # Nodes are compared once the simulators' counters were stopped before
    # the final reads (the workload's `bytes-off`): usage is at rest then,
    # whatever index each node was read at. Otherwise a batch applied
    # between two nodes' reads would look like divergence.
    if at_rest:
        for node in nodes[1:]:
            if per_node[node] != per_node[nodes[0]]:
                diff = [cn for cn in per_node[node] if per_node[node].get(cn)
                        != per_node[nodes[0]].get(cn)]
                rep.bad("usage of %s and %s differ for %s, counters stopped"
                        % (nodes[0], node, diff[:5]))
    else:
        rep.note("usage not compared across nodes: the byte counters were "
                 "not stopped before the final reads")
    if not nodes:
        return rep
    usage = per_node[nodes[0]]
    # Clients still running keep being charged until the usage was read.
    t_end = max([t_end] + [st.get("read_at", 0)
                           for st in fin["nodes"].values()])
    hi = collections.defaultdict(int)
    lo = collections.defaultdict(int)
    rounds = collections.defaultdict(int)
    per = b_in + b_out
    for c in clients.values():
        end = c.pos_end if c.pos_end != INF else t_end
        # Rounds: one per interval of life, +2 for the phase of the
        # simulator's round and the last partial one. The simulator starts
        # a client's counters at init + cid in each direction.
        r = int((end - c.t_inv) / interval_s) + 2
        rounds[c.cn] += r
        hi[c.cn] += r * per + init + 2 * c.cid
        lo[c.cn] += max(0, int((c.def_end - c.t_ok) / interval_s) - 1) * per
    tot_u = tot_hi = tot_lo = 0
    for cn, (ui, uo) in sorted(usage.items()):
        tot_u += ui + uo
        tot_hi += hi[cn]
        tot_lo += lo[cn]
        # Which direction ovhad calls in/out does not matter for a bound
        # on the sum.
        if ui + uo > hi[cn]:
            rep.bad("%s charged %d bytes, its clients can have sent at most "
                    "%d (%d rounds)" % (cn, ui + uo, hi[cn], rounds[cn]))
    rep.note("charged %d bytes in all; upper bound %d; surely sent %d "
             "(charged/surely sent = %.2f; below 1 is allowed: at most once)"
             % (tot_u, tot_hi, tot_lo,
                tot_u / tot_lo if tot_lo else 0.0))
    est = usage_estimate(clients, t_end, bytes_off_time, per / interval_s)
    if est > 0:
        rep.note("charged / midpoint estimate of what was sent = %.3f "
                 "(an estimate from the observed lifetimes: information, "
                 "not judged)" % (tot_u / est))
    rep.note("acknowledgements of single charges are internal to ovhad: "
             "exactly-once per acknowledged charge is not observable here")
    return rep


# ---- 4: audit ---------------------------------------------------------------------
def check_audit(fin):
    rep = Report(4, "audit chains verify and share a prefix")
    chains = {}
    for node, st in sorted(fin["nodes"].items()):
        v = st.get("audit_verify")
        if v is None:
            rep.bad("%s: no /v1/audit/verify answer" % node)
        elif not v.get("ok"):
            rep.bad("%s: /v1/audit/verify says %s" % (node, v))
        recs = st.get("audit") or []
        prev = None
        for r in recs:
            if prev is not None:
                if r["seq"] != prev["seq"] + 1:
                    rep.bad("%s: seq %d follows %d" % (node, r["seq"],
                                                       prev["seq"]))
                elif r["prev_hash"] != prev["hash"]:
                    rep.bad("%s: seq %d prev_hash does not link to seq %d"
                            % (node, r["seq"], prev["seq"]))
            prev = r
        chains[node] = {r["seq"]: r["hash"] for r in recs}
        if v is not None and recs and v.get("head_seq") != recs[-1]["seq"]:
            rep.note("%s: verify head %s, records up to %d" % (
                node, v.get("head_seq"), recs[-1]["seq"]))
    nodes = sorted(chains)
    heads = {n: max(chains[n]) if chains[n] else 0 for n in nodes}
    for i, a in enumerate(nodes):
        for b in nodes[i + 1:]:
            common = set(chains[a]) & set(chains[b])
            bad = sorted(s for s in common if chains[a][s] != chains[b][s])
            if bad:
                rep.bad("%s and %s disagree from seq %d (%d seqs differ)" % (
                    a, b, bad[0], len(bad)))
    rep.note("heads: %s" % ", ".join("%s=%d" % (n, heads[n]) for n in nodes))
    if len(set(heads.values())) > 1:
        rep.note("heads differ after settle (a node lagging, not judged)")
    return rep


# ---- 5: per-IP linearizability ---------------------------------------------------
def ip_ops(clients):
    by_ip = collections.defaultdict(list)
    for c in clients.values():
        by_ip[c.ip].append((c.t_inv, c.t_ok, "grant", c.key, c.cn))
        if c.pos_end != INF:
            # released at some instant between surely running and gone
            by_ip[c.ip].append((c.def_end, c.pos_end, "release", c.key, c.cn))
    for ops in by_ip.values():
        ops.sort()
    return by_ip


def step(state, op):
    _, _, kind, key, cn = op
    if kind == "grant":
        if any(h_cn != cn for _, h_cn in state):
            return None
        return state | frozenset([(key, cn)])
    if (key, cn) not in state:
        return None
    return state - frozenset([(key, cn)])


def linearizable(ops, budget):
    """(True, None) / (False, deepest prefix) / (None, 'budget')."""
    n = len(ops)
    full = (1 << n) - 1
    seen = set()
    best = [0, []]
    steps = [0]
    sys.setrecursionlimit(max(10000, 4 * n + 100))

    def dfs(done, state, path):
        if done == full:
            return True
        if (done, state) in seen:
            return False
        steps[0] += 1
        if steps[0] > budget:
            raise TimeoutError
        if len(path) > best[0]:
            best[0], best[1] = len(path), list(path)
        # Ops not yet linearized; one may go next if it was invoked before
        # every other pending op completed.
        pend = [i for i in range(n) if not done >> i & 1]
        min_comp = min(ops[i][1] for i in pend)
        for i in pend:
            if ops[i][0] > min_comp:
                break  # sorted by invoke: the rest are later still
            nxt = step(state, ops[i])
            if nxt is None:
                continue
            path.append(i)
            if dfs(done | 1 << i, nxt, path):
                return True
            path.pop()
        seen.add((done, state))
        return False

    try:
        ok = dfs(0, frozenset(), [])
    except TimeoutError:
        return None, "budget"
    return ok, best[1]


def check_linear(clients, budget, t0):
    rep = Report(5, "per-IP lease history linearizable")
    by_ip = ip_ops(clients)
    unknown = 0
    nops = 0
    for ip in sorted(by_ip):
        ops = by_ip[ip]
        nops += len(ops)
        ok, info = linearizable(ops, budget)
        if ok is None:
            unknown += 1
            rep.note("%s: search budget exhausted (%d ops): unknown" % (
                ip, len(ops)))
        elif not ok:
            done = set(info)
            first = next(i for i in range(len(ops)) if i not in done)
            o = ops[first]
            tail = [ops[i] for i in info[-3:]]
            rep.bad("%s: not linearizable (%d ops); after %s nothing fits, "
                    "e.g. %s %s (%s) in %s..%s" % (
                        ip, len(ops),
                        ["%s %s(%s)" % (x[2], x[3], x[4]) for x in tail],
                        o[2], o[3], o[4], fmt_t(o[0], t0), fmt_t(o[1], t0)))
    rep.note("%d IPs, %d grant/release ops, %d unknown (budget)" % (
        len(by_ip), nops, unknown))
    return rep


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--history", required=True)
    ap.add_argument("--nemesis", required=True)
    ap.add_argument("--final", required=True)
    ap.add_argument("--lease-ttl-ms", type=float, required=True)
    ap.add_argument("--max-skew-ms", type=float, default=0)
    ap.add_argument("--takeover-ms", type=float, required=True)
    ap.add_argument("--bytes-interval-s", type=float, default=1)
    ap.add_argument("--bytes-in", type=int, default=0)
    ap.add_argument("--bytes-out", type=int, default=0)
    ap.add_argument("--bytes-init", type=int, default=4100,
                    help="a new simulated client's counters, in + out, "
                    "before cid is added to each (ovpn_sim: 2100 + 2000)")
    ap.add_argument("--budget", type=int, default=200000)
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    hist = load_jsonl(a.history)
    nem = load_jsonl(a.nemesis)
    with open(a.final) as f:
        fin = json.load(f)
    if not hist:
        print("empty history")
        return 2
    t0 = hist[0]["time"]
    clients, attempts, n_ops, t_end = build(hist)
    final = final_event(hist)
    faults = collections.Counter(r["f"][6:] for r in nem
                                 if r["f"].startswith("start-"))
    ttl_s = a.lease_ttl_ms / 1000.0
    slack_s = (a.max_skew_ms + 1000) / 1000.0
    reps = [
        check_exclusive(clients, final, fin, a.takeover_ms / 1000.0, t0,
                        pause_windows(nem)),
        check_sticky(clients, attempts, nem, ttl_s, slack_s, t0),
        check_usage(clients, fin, t_end, a.bytes_interval_s, a.bytes_in,
                    a.bytes_out, a.bytes_init, bytes_at_rest(hist),
                    bytes_off_time(hist)) if a.bytes_in + a.bytes_out > 0 else None,
        check_audit(fin),
        check_linear(clients, a.budget, t0),
    ]
    types = collections.Counter(r["type"] for r in hist if r["op"] is not None)
    print("run: %s" % a.label)
    print("history: %d operations (%s), %d clients admitted, %d lost, "
          "%.0f s" % (n_ops, ", ".join("%s=%d" % kv for kv in
                                       sorted(types.items())
                                       if kv[0] != "invoke"),
                      len(clients),
                      sum(1 for r in hist if r["f"] == "lost"),
                      t_end - t0))
    print("faults: %d (%s)" % (sum(faults.values()), ", ".join(
        "%s=%d" % kv for kv in sorted(faults.items())) or "none"))
    total = 0
    summary = []
    for r in reps:
        if r is None:
            print("checker 3 usage: SKIPPED (no byte counts)")
            summary.append("c3=skipped")
            continue
        r.show()
        total += len(r.violations)
        summary.append("c%d=%d" % (r.num, len(r.violations)))
    print("violations: %s total=%d" % (" ".join(summary), total))
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
