#!/usr/bin/env python3
"""failover_parse.py: event times of one failover/drain trial, from logs.

Used by failover_bench.sh. Times are milliseconds after T0 (the kill or the
drain command, date +%s%N in the script).

  failover_parse.py client T0_NS OFFSET LOG
      One openvpn client log (written with `machine-readable-output`: each
      line starts with "SECONDS.MICROSECONDS FLAGS "), read from byte
      OFFSET. Prints one line of key=value:
        detect  the client gives up on its gateway: "Inactivity timeout
                (--ping-restart)" or a server-pushed RESTART (drain)
        link1   first "link remote" after detect (first reconnect attempt)
        link    the "link remote" of the attempt that succeeded
        tls     "Peer Connection Initiated with" (TLS done on that attempt)
        push    "PUSH: Received control message: 'PUSH_REPLY" (the gateway
                answered the client's PUSH_REQUEST: admission done)
        init    "Initialization Sequence Completed" (tun configured)
        peer    the gateway address of the successful attempt
        temps   AUTH_FAILED,TEMP refusals seen after detect
        attempts  "link remote" lines after detect

  failover_parse.py ovhad T0_NS LOG...
      ovhad JSON logs (log.format json, "ts" in ms). Prints
        leader=<ms>:<id>  first "rft: leader=N" (N != 0) after T0, per log
        markdown=<ms>     first "marking it down" after T0 (leader proposes)
        allow=<cn>:<ms>   every "decide: allow cn=..." after T0

  failover_parse.py spurious LOG...
      Kills "its session N ended elsewhere" of a client (cn, cid) less than
      200 ms after the same gateway allowed it (nothing legitimate ends a
      session that fast: the observed cases took 2-47 ms); prints each and
      total=N.
"""
import json
import re
import sys

LINE = re.compile(r"^(\d+)\.(\d{6}) [0-9a-fA-F]+ (.*)$")


def client(t0_ns, offset, path):
    t0 = t0_ns / 1e6
    ev = {}
    attempts = 0
    temps = 0
    last_link = None
    last_link_t = None
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read().decode("utf-8", "replace")
    for raw in data.splitlines():
        m = LINE.match(raw)
        if not m:
            continue
        t = int(m.group(1)) * 1000.0 + int(m.group(2)) / 1000.0 - t0
        msg = m.group(3)
        if t < 0:
            continue
        if "detect" not in ev:
            if ("Inactivity timeout" in msg or
                    "server-pushed-connection-reset" in msg or
                    "Received control message: 'RESTART" in msg or
                    "SIGUSR1[" in msg):
                ev["detect"] = t
            continue
        mm = re.search(r"link remote: \[AF_INET\]([0-9.]+)", msg)
        if mm and "init" not in ev:
            attempts += 1
            ev.setdefault("link1", t)
            last_link = mm.group(1)
            last_link_t = t
            continue
        if "AUTH_FAILED,TEMP" in msg and "init" not in ev:
            temps += 1
        if "Peer Connection Initiated with" in msg and "tls" not in ev:
            mm = re.search(r"\[AF_INET\]([0-9.]+)", msg)
            ev["tls"] = t
            ev["peer"] = mm.group(1) if mm else last_link
            ev["link"] = last_link_t if last_link_t is not None else t
            continue
        if ("PUSH: Received control message: 'PUSH_REPLY" in msg and
                "tls" in ev and "push" not in ev):
            ev["push"] = t
            continue
        if ("Initialization Sequence Completed" in msg and "tls" in ev and
                "init" not in ev):
            ev["init"] = t
    out = []
    for k in ("detect", "link1", "link", "tls", "push", "init"):
        out.append("%s=%s" % (k, ("%.1f" % ev[k]) if k in ev else "NA"))
    out.append("peer=%s" % ev.get("peer", "NA"))
    out.append("temps=%d" % temps)
    out.append("attempts=%d" % attempts)
    print(" ".join(out))


def ovhad(t0_ns, paths):
    t0 = t0_ns / 1e6
    for path in paths:
        leader = None
        try:
            f = open(path, "r", errors="replace")
        except OSError:
            continue
        with f:
            for raw in f:
                if not raw.startswith("{"):
                    continue
                try:
                    j = json.loads(raw)
                except ValueError:
                    continue
                t = j.get("ts", 0) - t0
                if t < 0:
                    continue
                msg = j.get("msg", "")
                mod = j.get("module", "")
                if mod == "rft" and leader is None:
                    mm = re.match(r"leader=(\d+) ", msg)
                    if mm and mm.group(1) != "0":
                        leader = (t, mm.group(1))
                        print("leader=%.0f:%s" % leader)
                elif "marking it down" in msg:
                    print("markdown=%.0f" % t)
                elif mod == "decide" and msg.startswith("allow cn="):
                    mm = re.match(r'allow cn="([^"]*)"', msg)
                    if mm:
                        print("allow=%s:%.0f" % (mm.group(1), t))


def spurious(paths):
    """Kills of a client by the gateway that admitted it less than 200 ms
    before, naming a session that 'ended elsewhere': the gateway's own
    replicated state did not have the new session yet."""
    total = 0
    for path in paths:
        allowed = {}
        with open(path, "r", errors="replace") as f:
            for raw in f:
                if not raw.startswith("{"):
                    continue
                try:
                    j = json.loads(raw)
                except ValueError:
                    continue
                msg = j.get("msg", "")
                mm = re.match(r'allow cn="([^"]*)" cid=(\d+)', msg)
                if mm and j.get("module") == "decide":
                    allowed[(mm.group(1), mm.group(2))] = j.get("ts", 0)
                    continue
                mm = re.match(r'kill cn="([^"]*)" cid=(\d+): its session '
                              r'(\d+) ended elsewhere', msg)
                if mm:
                    t = allowed.get((mm.group(1), mm.group(2)))
                    if t is not None and j.get("ts", 0) - t < 200:
                        total += 1
                        print("spurious %s %s cid=%s session=%s after %d ms" %
                              (path, mm.group(1), mm.group(2), mm.group(3),
                               j.get("ts", 0) - t))
    print("total=%d" % total)


def main():
    if len(sys.argv) >= 5 and sys.argv[1] == "client":
        client(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    elif len(sys.argv) >= 2 and sys.argv[1] == "spurious":
        spurious(sys.argv[2:])
    elif len(sys.argv) >= 4 and sys.argv[1] == "ovhad":
        ovhad(int(sys.argv[2]), sys.argv[3:])
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
