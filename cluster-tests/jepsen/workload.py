#!/usr/bin/env python3
"""cluster-tests/jepsen/workload.py: the client and operator workload of a
Jepsen-style run against an ovhad cluster whose openvpn is ovpn_sim.

Processes (threads), every operation one invoke line and one completion
line (ok / fail / info) in the history (JSON lines, see jlib.History):

- wN: workers; each owns the CNs i with i % workers == N, so every CN's
  operations are sequential. connect {cn, gw} (ok: cid, ip, client id),
  disconnect {client}, and "roam" (a connect of a CN on another gateway
  while its old client still runs: the old one must be killed by its
  gateway, the IP must follow the CN).
  A connect answered `allow` is ok; `deny`/`error`/no simulator is fail
  (nothing was admitted); `timeout`/`killed`/no reply is info (unknown:
  a session may have been opened, the client is not running).
- op: an operator: drain a gateway, later activate it (admin API over the
  unix socket of a random node). 200 ok, 4xx fail, 503 / timeout info.
- monitor: every gateway's simulator is dumped (`dump PATH`) in turn; a
  client the workload believes live that is missing from a dump, or whose
  simulator is gone or was restarted, is recorded as `lost` (info) with
  the last time it was seen and the time it was found missing. Each
  client's last_seen is kept, so a checker knows an interval during which
  the client surely ran: [connect ok, last_seen].

After --duration seconds the workers stop and every gateway is activated;
the program writes DIR/ops.done and waits (at most --final-wait s) for the
harness to create DIR/final.go once the cluster has settled, stops the
simulators' byte counters (`bytes 0 0`, so every node's usage is at rest
for the final reads), watches for --settle more seconds, then records a final dump of every simulator as
`final` and exits 0.
"""
import argparse
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jlib  # noqa: E402


class Client:
    def __init__(self, cid_key, cn, gw, cid, ip, t_ok, epoch):
        self.key = cid_key
        self.cn = cn
        self.gw = gw
        self.cid = cid
        self.ip = ip
        self.t_ok = t_ok
        self.last_seen = t_ok
        self.epoch = epoch  # the monitor's epoch of gw at the time
        self.ended = False
        self.disconnecting = False  # the monitor leaves it alone then


class World:
    def __init__(self, args):
        self.a = args
        self.hist = jlib.History(args.history)
        self.lock = threading.Lock()
        self.clients = {}  # key -> Client
        self.by_cn = {}  # cn -> [keys]
        self.next_key = 0
        # Per gateway: an epoch bumped whenever the simulator is seen down
        # or with a new pid; clients admitted in an older epoch are gone.
        self.epoch = {g: 0 for g in range(1, args.nodes + 1)}
        self.sim_pid = {g: None for g in range(1, args.nodes + 1)}
        self.stop_ops = threading.Event()
        self.stop_all = threading.Event()
        self.counts = {"ok": 0, "fail": 0, "info": 0, "lost": 0}

    def ctl(self, gw):
        return self.a.ctl_fmt.format(n=gw)

    def sock(self, gw):
        return self.a.sock_fmt.format(n=gw)

    def count(self, typ):
        with self.lock:
            self.counts[typ] = self.counts.get(typ, 0) + 1

    # ---- clients ---------------------------------------------------------
    def add_client(self, cn, gw, cid, ip, t_ok, epoch):
        with self.lock:
            self.next_key += 1
            key = "k%d" % self.next_key
            c = Client(key, cn, gw, cid, ip, t_ok, epoch)
            self.clients[key] = c
            self.by_cn.setdefault(cn, []).append(key)
            return c

    def live_of_cn(self, cn):
        with self.lock:
            return [self.clients[k] for k in self.by_cn.get(cn, [])
                    if not self.clients[k].ended]

    def end_lost(self, c, t_missing, why):
        """Marks c gone (once) and records `lost`."""
        with self.lock:
            if c.ended:
                return
            c.ended = True
            self.counts["lost"] += 1
            last = c.last_seen
        self.hist.add("info", "lost", "monitor", None,
                      {"client": c.key, "cn": c.cn, "gw": c.gw, "cid": c.cid,
                       "ip": c.ip, "last_seen": round(last, 6),
                       "missing_at": round(t_missing, 6), "why": why},
                      t=t_missing)


def parse_allow(reply):
    # allow CID IP
    parts = reply.split()
    return int(parts[1]), (parts[2] if len(parts) > 2 and parts[2] != "-"
                           else None)


def op_connect(w, proc, cn, gw, roam):
    op = w.hist.new_op()
    f = "roam" if roam else "connect"
    w.hist.add("invoke", f, proc, op, {"cn": cn, "gw": gw})
    with w.lock:
        epoch = w.epoch[gw]
    try:
        reply = jlib.sim_cmd(w.ctl(gw), "connect %s" % cn,
                             timeout=w.a.sim_timeout_s + 3)
    except jlib.SimDown as e:
        w.hist.add("fail", f, proc, op, {"cn": cn, "gw": gw,
                                         "error": "simulator down: %s" % e})
        w.count("fail")
        return
    except jlib.SimTimeout as e:
        w.hist.add("info", f, proc, op, {"cn": cn, "gw": gw,
                                         "error": "no reply: %s" % e})
        w.count("info")
        return
    t_ok = time.time()
    word = reply.split(" ", 1)[0]
    if word == "allow":
        cid, ip = parse_allow(reply)
        c = w.add_client(cn, gw, cid, ip, t_ok, epoch)
        w.hist.add("ok", f, proc, op, {"cn": cn, "gw": gw, "cid": cid,
                                       "ip": ip, "client": c.key}, t=t_ok)
        w.count("ok")
    elif word in ("deny", "error"):
        w.hist.add("fail", f, proc, op, {"cn": cn, "gw": gw,
                                         "reply": reply}, t=t_ok)
        w.count("fail")
    else:  # timeout, killed: a session may exist; no client runs
        w.hist.add("info", f, proc, op, {"cn": cn, "gw": gw,
                                         "reply": reply}, t=t_ok)
        w.count("info")


def op_disconnect(w, proc, c):
    op = w.hist.new_op()
    w.hist.add("invoke", "disconnect", proc, op,
               {"client": c.key, "cn": c.cn, "gw": c.gw, "cid": c.cid,
                "ip": c.ip})
    t0 = time.time()
    with w.lock:
        c.disconnecting = True
    try:
        reply = jlib.sim_cmd(w.ctl(c.gw), "disconnect %d" % c.cid, timeout=5)
    except (jlib.SimDown, jlib.SimTimeout) as e:
        with w.lock:
            c.disconnecting = False
        # The simulator is gone (or stuck): the monitor decides about the
        # client; the disconnect itself did nothing we know of.
        w.hist.add("fail", "disconnect", proc, op,
                   {"client": c.key, "error": str(e)})
        w.count("fail")
        return
    t1 = time.time()
    with w.lock:
        already = c.ended
        c.disconnecting = False
        if reply == "ok" and not already:
            c.ended = True
            c.last_seen = max(c.last_seen, t0)
    if reply == "ok" and not already:
        w.hist.add("ok", "disconnect", proc, op, {"client": c.key}, t=t1)
        w.count("ok")
    else:
        # "error no such client": it was killed (fence, drain, takeover)
        # before we got to it; the monitor records it lost.
        w.hist.add("fail", "disconnect", proc, op,
                   {"client": c.key, "reply": reply}, t=t1)
        w.count("fail")
        if reply != "ok":
            w.end_lost(c, t1, "disconnect: " + reply)


def worker(w, idx, rng):
    proc = "w%d" % idx
    cns = [cn for i, cn in enumerate(w.a.cn_list) if i % w.a.workers == idx]
    if not cns:
        return
    n = w.a.nodes
    while not w.stop_ops.is_set():
        cn = rng.choice(cns)
        live = w.live_of_cn(cn)
        if not live:
            op_connect(w, proc, cn, rng.randint(1, n), False)
        elif rng.random() < 0.55:
            op_disconnect(w, proc, live[-1])
        else:
            others = [g for g in range(1, n + 1) if g != live[-1].gw]
            op_connect(w, proc, cn, rng.choice(others), True)
        w.stop_ops.wait(rng.uniform(0.05, w.a.think_s))


def gw_api(w, rng, method, path, body):
    """One admin call through a random node; (type, value)."""
    via = rng.randint(1, w.a.nodes)
    try:
        st, js = jlib.api(w.sock(via), method, path, body, timeout=5)
    except FileNotFoundError as e:
        return "fail", {"via": via, "error": str(e)}
    except ConnectionRefusedError as e:
        return "fail", {"via": via, "error": str(e)}
    except OSError as e:  # timeout (a paused node), reset
        return "info", {"via": via, "error": str(e)}
    if st == 200:
        return "ok", {"via": via, "status": st, "body": js}
    if st == 503:
        return "info", {"via": via, "status": st, "body": js}
    return "fail", {"via": via, "status": st, "body": js}


def operator(w, rng):
    proc = "op"
    while not w.stop_ops.wait(rng.uniform(5, 10)):
        g = rng.randint(1, w.a.nodes)
        for f, path in (("drain", "/v1/gateways/drain"),
                        ("activate", "/v1/gateways/activate")):
            op = w.hist.new_op()
            w.hist.add("invoke", f, proc, op, {"gateway": "gw%d" % g})
            typ, val = gw_api(w, rng, "POST", path, {"gateway": "gw%d" % g})
            val["gateway"] = "gw%d" % g
            w.hist.add(typ, f, proc, op, val)
            w.count(typ)
            if f == "drain":
                if w.stop_ops.wait(rng.uniform(2, 4)):
                    break
    activate_all(w, rng)


def activate_all(w, rng):
    """Leaves every gateway active for the final reads (retried: the
    cluster may be settling after the last heal)."""
    for g in range(1, w.a.nodes + 1):
        for _ in range(20):
            op = w.hist.new_op()
            w.hist.add("invoke", "activate", "op", op, {"gateway": "gw%d" % g})
            typ, val = gw_api(w, rng, "POST", "/v1/gateways/activate",
                              {"gateway": "gw%d" % g})
            val["gateway"] = "gw%d" % g
            w.hist.add(typ, "activate", "op", op, val)
            w.count(typ)
            if typ == "ok":
                break
            time.sleep(0.5)


def dump_gw(w, g, path):
    """One observation of gateway g's simulator: (t_sent, t_done, set of
    (cid, cn, ip) established) or (t_sent, t_done, None) when it is down,
    or None when it did not answer (unknown: nothing is concluded)."""
    t0 = time.time()
    try:
        st = jlib.sim_cmd(w.ctl(g), "stats", timeout=3)
        pid = None
        for kv in st.split():
            if kv.startswith("pid="):
                pid = kv[4:]
        rep = jlib.sim_cmd(w.ctl(g), "dump %s" % path, timeout=3)
    except jlib.SimDown:
        return t0, time.time(), None, None
    except jlib.SimTimeout:
        return None
    if not rep.startswith("ok"):
        return None
    seen = set()
    try:
        with open(path) as f:
            for line in f:
                p = line.split()
                if len(p) >= 4 and p[3] in ("established", "reauth"):
                    seen.add((int(p[0]), p[1], p[2]))
    except OSError:
        return None
    return t0, time.time(), seen, pid


def observe_gw(w, g, path):
    r = dump_gw(w, g, path)
    if r is None:
        return None
    t0, t1, seen, pid = r
    with w.lock:
        if seen is None or (w.sim_pid[g] is not None and pid != w.sim_pid[g]):
            w.epoch[g] += 1
        w.sim_pid[g] = pid if seen is not None else None
        epoch = w.epoch[g]
        cands = [c for c in w.clients.values()
                 if c.gw == g and not c.ended and not c.disconnecting
                 and c.t_ok < t0]
    for c in cands:
        if c.epoch != epoch:
            w.end_lost(c, t1, "simulator down or restarted")
        elif (c.cid, c.cn, c.ip or "-") in seen:
            with w.lock:
                c.last_seen = max(c.last_seen, t0)
        else:
            w.end_lost(c, t1, "not in the simulator's dump")
    return seen


def monitor(w):
    path = os.path.join(w.a.dir, "dump.%d" % os.getpid())
    while not w.stop_all.is_set():
        for g in range(1, w.a.nodes + 1):
            observe_gw(w, g, path)
        w.stop_all.wait(0.1)


def bytes_off(w):
    """Stops the simulators' byte counters (`bytes 0 0`) so the usage
    every node reports stops moving before the final reads: the nodes
    are then compared at rest, not racing a batch in flight."""
    res = {}
    for g in range(1, w.a.nodes + 1):
        try:
            res["gw%d" % g] = jlib.sim_cmd(w.ctl(g), "bytes 0 0", timeout=3)
        except (jlib.SimDown, jlib.SimTimeout) as e:
            res["gw%d" % g] = "error %s" % e
    w.hist.add("info", "bytes-off", "workload", None, res)


def final(w):
    """The final observation: every simulator's clients, and which of ours
    still run (with their last_seen)."""
    path = os.path.join(w.a.dir, "dump.final")
    gws = {}
    for g in range(1, w.a.nodes + 1):
        seen = observe_gw(w, g, path)
        gws["gw%d" % g] = (None if seen is None else
                           sorted([cid, cn, ip] for cid, cn, ip in seen))
    with w.lock:
        live = [{"client": c.key, "cn": c.cn, "gw": c.gw, "cid": c.cid,
                 "ip": c.ip, "t_ok": c.t_ok, "last_seen": c.last_seen}
                for c in w.clients.values() if not c.ended]
    w.hist.add("info", "final", "monitor", None,
               {"live": live, "sims": gws})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--nodes", type=int, required=True)
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--settle", type=float, default=5)
    ap.add_argument("--final-wait", type=float, default=150)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--history", required=True)
    ap.add_argument("--cns", type=int, default=40)
    ap.add_argument("--workers", type=int, default=6)
    ap.add_argument("--think-s", type=float, default=0.4)
    ap.add_argument("--sim-timeout-s", type=float, default=5)
    ap.add_argument("--ctl-fmt", required=True)
    ap.add_argument("--sock-fmt", required=True)
    ap.add_argument("--no-operator", action="store_true")
    a = ap.parse_args()
    a.cn_list = ["c%03d" % i for i in range(a.cns)]
    w = World(a)
    rng = random.Random(a.seed)
    w.hist.add("info", "start", "workload", None,
               {"seed": a.seed, "nodes": a.nodes, "cns": a.cns,
                "workers": a.workers, "duration": a.duration})
    mon = threading.Thread(target=monitor, args=(w,), daemon=True)
    mon.start()
    ths = []
    for i in range(a.workers):
        t = threading.Thread(target=worker,
                             args=(w, i, random.Random(rng.random())),
                             daemon=True)
        t.start()
        ths.append(t)
    if not a.no_operator:
        t = threading.Thread(target=operator,
                             args=(w, random.Random(rng.random())),
                             daemon=True)
        t.start()
        ths.append(t)
    w.stop_ops.wait(a.duration)
    w.stop_ops.set()
    for t in ths:
        t.join(timeout=60)
    if a.no_operator:
        activate_all(w, rng)
    # The harness lets the cluster settle, then says go for the final dump
    # (bounded: without it the dump is taken after --final-wait seconds).
    open(os.path.join(a.dir, "ops.done"), "w").close()
    go = os.path.join(a.dir, "final.go")
    deadline = time.time() + a.final_wait
    while not os.path.exists(go) and time.time() < deadline:
        time.sleep(0.2)
    bytes_off(w)
    time.sleep(a.settle)
    w.stop_all.set()
    mon.join(timeout=30)
    final(w)
    w.hist.add("info", "end", "workload", None, dict(w.counts))
    print("workload: %s" % " ".join("%s=%d" % kv for kv in
                                    sorted(w.counts.items())))
    w.hist.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
