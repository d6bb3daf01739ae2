#!/usr/bin/env python3
"""test_ovpn_sim.py OVPN_SIM: checks the simulator against the management
protocol of the recorded OpenVPN 2.6.14 transcripts (mgmt/tests/fixtures),
playing ovhad's part by hand, and its control protocol. stdlib only, no
root, unix sockets in a temporary directory; about 5 s. Prints
"N passed, N failed"; exit 0 when nothing failed."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

SIM = sys.argv[1] if len(sys.argv) > 1 else "ovpn_sim"
PASSED = 0
FAILED = 0


def check(name, cond, detail=""):
    global PASSED, FAILED
    if cond:
        PASSED += 1
        print("ok   " + name)
    else:
        FAILED += 1
        print("FAIL %s%s" % (name, ": " + str(detail) if detail else ""))


def wait_for(pred, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


class Mgmt:
    """The controller side of the management socket."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(5)
        self.s.connect(path)
        self.f = self.s.makefile("rb")

    def line(self):
        raw = self.f.readline()
        if not raw.endswith(b"\r\n"):
            raise EOFError("no CRLF line: %r" % raw)
        return raw[:-2].decode()

    def send(self, text):
        self.s.sendall(text.encode())

    def block(self, first):
        """Reads a >CLIENT: header's ENV block: (header, {k: v}, order)."""
        env, order = {}, []
        while True:
            ln = self.line()
            if ln == ">CLIENT:ENV,END":
                return first, env, order
            k, _, v = ln[len(">CLIENT:ENV,"):].partition("=")
            env[k] = v
            order.append(k)

    def close(self):
        self.f.close()
        self.s.close()


def ctl(path, cmd, timeout=15):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    s.sendall((cmd + "\n").encode())
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    s.close()
    return buf.decode().rstrip("\n")


class Async:
    """A control command run in a thread (connect blocks until decided)."""

    def __init__(self, path, cmd):
        self.reply = None
        self.t = threading.Thread(target=self.run, args=(path, cmd))
        self.t.start()

    def run(self, path, cmd):
        self.reply = ctl(path, cmd)

    def get(self):
        self.t.join(15)
        return self.reply


def main():
    tmp = tempfile.mkdtemp(prefix="ovpn-sim-test.")
    mpath = os.path.join(tmp, "mgmt.sock")
    cpath = os.path.join(tmp, "ctl.sock")
    conf = os.path.join(tmp, "server.conf")
    with open(conf, "w") as f:
        f.write("dev tun7\nifconfig 100.64.0.1 255.255.255.0\n"
                "management %s/wrong.sock unix\n" % tmp)
    env = dict(os.environ, OVPN_SIM_CTL=cpath, OVPN_SIM_TIMEOUT_MS="400")
    # As ovhad runs it with an operator config: the command line wins.
    proc = subprocess.Popen([SIM, "--config", conf, "--management", mpath,
                             "unix", "--management-hold"], env=env,
                            stderr=subprocess.DEVNULL)
    try:
        run(mpath, cpath, proc)
        proc = subprocess.Popen([SIM, "--config", conf, "--management", mpath,
                                 "unix"], env=env, stderr=subprocess.DEVNULL)
        up = wait_for(lambda: os.path.exists(cpath))
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        check("exits 0 on SIGTERM", up and proc.returncode == 0 and
              not os.path.exists(cpath), proc.returncode)
        bad = subprocess.run([SIM, "--config", conf], stderr=subprocess.PIPE,
                             env=dict(os.environ, OVPN_SIM_CTL=""))
        check("refuses to run without OVPN_SIM_CTL", bad.returncode == 1 and
              b"OVPN_SIM_CTL" in bad.stderr, bad.stderr)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (PASSED, FAILED))
    return 0 if FAILED == 0 and PASSED > 0 else 1


def run(mpath, cpath, proc):
    check("listens on --management PATH (command line wins)",
          wait_for(lambda: os.path.exists(mpath) and os.path.exists(cpath)))
    r = ctl(cpath, "connect early")
    check("connect before a controller is refused", r.startswith("error"), r)

    m = Mgmt(mpath)
    check("banner", m.line() == ">INFO:OpenVPN Management Interface Version "
          "5 -- type 'help' for more info")
    check("held at start", m.line() == ">HOLD:Waiting for hold release:0")
    m.send("version 3\nbytecount 1\nenv-filter 0\nstate on\nhold release\n")
    got = [m.line() for _ in range(4)]
    check("setup replies (version N has none)", got == [
        "SUCCESS: bytecount interval changed",
        "SUCCESS: env_filter_level=0",
        "SUCCESS: real-time state notification set to ON",
        "SUCCESS: hold release succeeded"], got)

    # allow
    a = Async(cpath, "connect alice")
    hdr, env, order = m.block(m.line())
    check("CONNECT header", hdr == ">CLIENT:CONNECT,0,1", hdr)
    check("CONNECT env", env.get("common_name") == "alice" and
          env.get("untrusted_ip", "").startswith("198.18.") and
          env.get("IV_VER") == "2.6.14" and env.get("IV_PROTO") == "990" and
          env.get("password") == "" and env.get("dev") == "tun7", env)
    check("CONNECT env order as recorded", order[:6] == [
        "n_clients", "password", "untrusted_port", "untrusted_ip",
        "common_name", "username"] and order[6] == "IV_COMP_STUBv2", order)
    m.send("client-auth 0 1\nifconfig-push 100.64.0.50 255.255.255.0\n"
           "iroute 100.96.77.0 255.255.255.0\nEND\n")
    check("client-auth SUCCESS",
          m.line() == "SUCCESS: client-auth command succeeded")
    check("ADDRESS primary", m.line() == ">CLIENT:ADDRESS,0,100.64.0.50,1")
    check("ADDRESS iroute",
          m.line() == ">CLIENT:ADDRESS,0,100.96.77.0/255.255.255.0,0")
    hdr, env, _ = m.block(m.line())
    check("ESTABLISHED", hdr == ">CLIENT:ESTABLISHED,0" and
          env.get("ifconfig_pool_remote_ip") == "100.64.0.50" and
          env.get("trusted_ip", "").startswith("198.18."), (hdr, env))
    check("ctl allow reply", a.get() == "allow 0 100.64.0.50", a.reply)

    # deny, with quotes in the reasons
    d = Async(cpath, "connect mallory bob s3cret")
    hdr, env, _ = m.block(m.line())
    check("username/password in ENV", env.get("username") == "bob" and
          env.get("password") == "s3cret", env)
    m.send('client-deny 1 1 "banned \\"x\\"" "go away"\n')
    check("client-deny SUCCESS",
          m.line() == "SUCCESS: client-deny command succeeded")
    hdr, env, _ = m.block(m.line())
    check("DISCONNECT after deny, empty env",
          hdr == ">CLIENT:DISCONNECT,1" and env == {}, (hdr, env))
    check("ctl deny reply", d.get() == 'deny 1 "banned \\"x\\"" "go away"',
          d.reply)

    # status 3
    m.send("status 3\n")
    rows = []
    while True:
        ln = m.line()
        rows.append(ln)
        if ln == "END":
            break
    cl = [r.split("\t") for r in rows if r.startswith("CLIENT_LIST\t")]
    check("status 3 lists alice", len(cl) == 1 and len(cl[0]) == 13 and
          cl[0][1] == "alice" and cl[0][3] == "100.64.0.50" and
          cl[0][9] == "UNDEF" and cl[0][10] == "0" and
          cl[0][12] == "AES-256-GCM", cl)
    check("status 3 header and routing", rows[0].startswith(
        "TITLE\tOpenVPN 2.6.14 ") and any(
        r.startswith("ROUTING_TABLE\t100.64.0.50\talice\t") for r in rows) and
        rows[-3] == "GLOBAL_STATS\tMax bcast/mcast queue length\t0", rows)

    # errors
    m.send("client-auth 77 1\npush \"route 100.96.0.0 255.255.0.0\"\nEND\n")
    check("client-auth unknown CID fails after END",
          m.line() == "ERROR: client-auth command failed")
    m.send("frobnicate\n")
    check("unknown command", m.line() ==
          "ERROR: unknown command, enter 'help' for more options")
    m.send("client-kill 77\n")
    check("client-kill unknown CID",
          m.line() == "ERROR: client-kill command failed")

    # disconnect from the control side
    r = ctl(cpath, "disconnect 0")
    hdr, env, _ = m.block(m.line())
    check("ctl disconnect", r == "ok" and hdr == ">CLIENT:DISCONNECT,0" and
          "bytes_sent" in env and env.get("common_name") == "alice",
          (r, hdr, env))
    check("ctl disconnect unknown", ctl(cpath, "disconnect 0").startswith(
        "error"))

    # pending client, controller goes away and comes back
    b = Async(cpath, "connect bob")
    hdr, env, _ = m.block(m.line())
    r = ctl(cpath, "drop")
    try:
        eof = m.f.readline() == b""
    except OSError:
        eof = True
    check("drop cuts the controller", r == "ok" and eof, r)
    m.close()
    m = Mgmt(mpath)
    check("re-greeting without HOLD", m.line().startswith(
        ">INFO:OpenVPN Management Interface Version 5"))
    m.send("status 3\n")
    rows = []
    while True:
        ln = m.line()
        rows.append(ln)
        if ln == "END":
            break
    cl = [r.split("\t") for r in rows if r.startswith("CLIENT_LIST\t")]
    check("status 3 shows the waiting client", len(cl) == 1 and
          cl[0][1] == "bob" and cl[0][3] == "" and cl[0][12] == "BF-CBC", cl)
    m.send("client-kill %s\n" % cl[0][10] if cl else "client-kill 2\n")
    check("client-kill SUCCESS",
          m.line() == "SUCCESS: client-kill command succeeded")
    hdr, env, _ = m.block(m.line())
    check("DISCONNECT of the killed waiting client, empty env",
          hdr == ">CLIENT:DISCONNECT,2" and env == {}, (hdr, env))
    check("ctl killed reply", b.get() == "killed 2", b.reply)

    # no answer: timeout (400 ms here)
    t = Async(cpath, "connect carol")
    m.block(m.line())
    check("ctl timeout reply", t.get() == "timeout 3", t.reply)
    hdr, env, _ = m.block(m.line())
    check("DISCONNECT after timeout", hdr == ">CLIENT:DISCONNECT,3", hdr)

    # storm with an auto-answering controller; with pace["delay"] > 0 each
    # answer goes out that many seconds after its CONNECT arrived
    seen = set()
    pace = {"delay": 0.0, "arrivals": []}
    send_lock = threading.Lock()
    # REAUTHs seen (cid, kid, cn) and their answers by CN: deny / silent
    reauths = []
    reauth_mode = {}
    bytecounts = []  # (time, cid, in, out)

    def reply(cid, cn):
        with send_lock:
            if cn == "st-4":
                m.send('client-deny %s 1 "no" "no"\n' % cid)
            else:
                m.send("client-auth %s 1\nifconfig-push 100.64.1.%d "
                       "255.255.0.0\nEND\n" % (cid, int(cid) % 200 + 2))

    def answer():
        while True:
            try:
                ln = m.line()
            except (EOFError, OSError):
                return
            if ln.startswith(">CLIENT:CONNECT,"):
                cid = ln.split(",")[1]
                _, env, _ = m.block(ln)
                seen.add(env["common_name"])
                pace["arrivals"].append(time.monotonic())
                if pace["delay"] > 0:
                    threading.Timer(pace["delay"], reply,
                                    (cid, env["common_name"])).start()
                else:
                    reply(cid, env["common_name"])
            elif ln.startswith(">CLIENT:REAUTH,"):
                _, cid, kid = ln.split(",")
                _, env, _ = m.block(ln)
                cn = env["common_name"]
                reauths.append((cid, kid, cn))
                mode = reauth_mode.get(cn, "allow")
                with send_lock:
                    if mode == "deny":
                        m.send('client-deny %s %s "re" "again"\n' % (cid, kid))
                    elif mode == "block":
                        # openvpn drops a block's lines on REAUTH
                        m.send("client-auth %s %s\nifconfig-push 100.64.9.9 "
                               "255.255.0.0\nEND\n" % (cid, kid))
                    elif mode == "allow":
                        m.send("client-auth-nt %s %s\n" % (cid, kid))
            elif ln.startswith(">BYTECOUNT_CLI:"):
                cid, bin_, bout = ln[len(">BYTECOUNT_CLI:"):].split(",")
                bytecounts.append((time.monotonic(), cid, int(bin_),
                                   int(bout)))
            elif ln.startswith(">CLIENT:") and not ln.startswith(
                    ">CLIENT:ADDRESS"):
                m.block(ln)  # ESTABLISHED, DISCONNECT

    th = threading.Thread(target=answer, daemon=True)
    th.start()
    r = ctl(cpath, "storm 50 5 4 st")
    kv = dict(x.split("=") for x in r.split()[1:])
    check("storm result", r.startswith("done") and kv["n"] == "50" and
          kv["allow"] == "40" and kv["deny"] == "10" and
          kv["timeout"] == "0" and int(kv["p99_us"]) >= int(kv["p50_us"]),
          r)
    check("storm identities", seen == {"st-%d" % i for i in range(5)}, seen)
    r = ctl(cpath, "stats")
    check("storm leaves no session behind", "clients=0 " in r, r)
    check("storm bounds", ctl(cpath, "storm 1000001 1 1 x").startswith(
        "error") and ctl(cpath, "storm 5 1 0 x").startswith("error"))

    # paced storm: 200 starts a second, open loop: answers that take 50 ms
    # do not hold the schedule back while CONCURRENCY allows
    pace["delay"] = 0.05
    pace["arrivals"] = []
    t0 = time.monotonic()
    r = ctl(cpath, "storm 20 5 64 pa rate=200")
    took = time.monotonic() - t0
    kv = dict(x.split("=") for x in r.split()[1:])
    arr = pace["arrivals"]
    span = arr[-1] - arr[0] if len(arr) == 20 else -1
    check("paced storm result", r.startswith("done") and kv["allow"] == "20"
          and kv["rate"] == "200" and kv["capped"] == "0" and
          int(kv["p50_us"]) >= 50000, r)
    # 19 intervals of 5 ms (95 ms; less if this reader was held up), not
    # all at once as a closed loop with 64 allowed would send them
    check("paced storm keeps its schedule", 0.06 <= span < 0.5 and
          took < 2, "span %.3f s, took %.3f s" % (span, took))
    # the cap: one in flight, 1000/s asked, 200 ms answers: every start
    # after the first finds the cap full
    pace["delay"] = 0.2
    r = ctl(cpath, "storm 5 5 1 pa rate=1000")
    kv = dict(x.split("=") for x in r.split()[1:])
    check("paced storm counts starts the cap delayed",
          r.startswith("done") and kv["allow"] == "5" and
          kv["capped"] == "4" and int(kv["elapsed_ms"]) >= 800 and
          int(kv["lag_max_us"]) >= 700000, r)
    pace["delay"] = 0.0
    check("closed-loop storm reports rate=0 capped=0",
          " rate=0 capped=0 " in ctl(cpath, "storm 10 5 4 pa"))
    check("storm password and rate in either order",
          ctl(cpath, "storm 5 5 4 pb rate=1000 pw").startswith("done") and
          ctl(cpath, "storm 5 5 4 pb pw rate=1000").startswith("done"))
    check("storm rate bounds", all(ctl(cpath, c).startswith("error") for c in (
        "storm 5 1 1 x rate=0", "storm 5 1 1 x rate=100001",
        "storm 5 1 1 x rate=abc", "storm 5 1 1 x pw extra")))

    check("storm reports p99.9", " p999_us=" in ctl(cpath, "storm 10 5 4 pq"))

    populate_reauth_bytecount(cpath, m, send_lock, reauths, reauth_mode,
                              bytecounts)

    m.send("exit\n")
    th.join(3)
    r = ctl(cpath, "stats")
    check("exit closes the controller", not th.is_alive() and
          "mgmt_connected=0 " in r, r)

    check("quit", ctl(cpath, "quit") == "bye")
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass
    check("exits 0 on quit and removes its sockets", proc.returncode == 0 and
          not os.path.exists(mpath) and not os.path.exists(cpath),
          proc.returncode)
    m.close()


def dump(cpath):
    """The simulator's client list: {cid: (cn, ip, state)}."""
    fd, path = tempfile.mkstemp(prefix="ovpn-sim-dump.")
    os.close(fd)
    try:
        r = ctl(cpath, "dump %s" % path)
        rows = {}
        with open(path) as f:
            for ln in f:
                cid, cn, ip, state = ln.split()
                rows[cid] = (cn, ip, state)
        return r, rows
    finally:
        os.unlink(path)


def populate_reauth_bytecount(cpath, m, send_lock, reauths, reauth_mode,
                              bytecounts):
    # populate: clients that stay, CNs from first=
    r = ctl(cpath, "populate 20 pop 8 first=100")
    kv = dict(x.split("=") for x in r.split()[1:])
    check("populate result", r.startswith("done") and kv["n"] == "20" and
          kv["allow"] == "20" and kv["established"] == "20" and
          "p999_us" in kv, r)
    r, rows = dump(cpath)
    cns = sorted(v[0] for v in rows.values())
    check("populate keeps its clients (dump)", r == "ok n=20" and
          cns == sorted("pop-%d" % i for i in range(100, 120)) and
          all(v[2] == "established" and v[1].startswith("100.64.1.")
              for v in rows.values()), (r, rows))
    st = ctl(cpath, "stats")
    check("stats counts established", " established=20 waiting=0 " in st and
          int(st.split(" pid=")[1]) > 1, st)
    check("populate bounds", all(ctl(cpath, c).startswith("error") for c in (
        "populate 0 x 1", "populate 5 x 0", "populate 5 x 1 first=-1",
        "populate 5 x 1 rate=0")))

    # reauth CID: REAUTH with KID 3 (then 5), answered with client-auth-nt
    cids = sorted(rows, key=int)
    c0, c1, c2, c3 = cids[0], cids[1], cids[2], cids[3]
    ip0 = rows[c0][1]
    r = ctl(cpath, "reauth %s" % c0)
    check("reauth allow", r == "allow %s %s" % (c0, ip0) and
          reauths[-1] == (c0, "3", rows[c0][0]), (r, reauths[-1:]))
    reauth_mode[rows[c0][0]] = "block"
    r = ctl(cpath, "reauth %s" % c0)
    _, rows2 = dump(cpath)
    check("reauth: client-auth block accepted, its lines dropped",
          r == "allow %s %s" % (c0, ip0) and reauths[-1][1] == "5" and
          rows2[c0] == (rows[c0][0], ip0, "established"), (r, rows2.get(c0)))
    check("reauth of unknown CID", ctl(cpath, "reauth 99999").startswith(
        "error"))
    # deny: the session ends, DISCONNECT with full env
    reauth_mode[rows[c1][0]] = "deny"
    r = ctl(cpath, "reauth %s" % c1)
    check("reauth deny ends the session", r == 'deny %s "re" "again"' % c1 and
          " established=19 " in ctl(cpath, "stats"), r)
    # no answer: timeout (400 ms), the session ends
    reauth_mode[rows[c2][0]] = "silent"
    r = ctl(cpath, "reauth %s" % c2)
    check("reauth timeout ends the session", r == "timeout %s" % c2 and
          " established=18 " in ctl(cpath, "stats"), r)
    # random picks: distinct, established only, at most the idle ones
    n0 = len(reauths)
    r = ctl(cpath, "reauth random 10 4")
    kv = dict(x.split("=") for x in r.split()[1:])
    picked = [x[0] for x in reauths[n0:]]
    check("reauth random 10", r.startswith("done") and kv["n"] == "10" and
          kv["allow"] == "10" and len(set(picked)) == 10 and
          set(picked) <= set(cids) - {c1, c2}, (r, picked))
    r = ctl(cpath, "reauth random 100 rate=1000")
    kv = dict(x.split("=") for x in r.split()[1:])
    check("reauth random N above the established count",
          r.startswith("done") and kv["n"] == "18" and kv["allow"] == "18" and
          kv["rate"] == "1000", r)
    check("reauth bounds", all(ctl(cpath, c).startswith("error") for c in (
        "reauth", "reauth random 0", "reauth random 5 0",
        "reauth random 5 4 rate=0", "reauth random 5 4 x")))

    # BYTECOUNT_CLI: every established client once a second, counters
    # growing by what `bytes` says; `bytecount 0` stops them
    check("bytes", ctl(cpath, "bytes 1000 5000") == "ok" and
          ctl(cpath, "bytes 1 x").startswith("error"))
    del bytecounts[:]
    with send_lock:
        m.send("bytecount 1\n")
    time.sleep(2.3)
    with send_lock:
        m.send("bytecount 0\n")
    time.sleep(0.3)
    got = list(bytecounts)
    live = set(dump(cpath)[1])
    per = {}
    for _, cid, bi, bo in got:
        per.setdefault(cid, []).append((bi, bo))
    steps = [(b[0] - a[0], b[1] - a[1]) for v in per.values()
             for a, b in zip(v, v[1:])]
    check("BYTECOUNT_CLI for every established client, each interval",
          set(per) == live and len(live) == 18 and
          all(2 <= len(v) <= 3 for v in per.values()), {
              k: len(v) for k, v in per.items()})
    check("BYTECOUNT_CLI counters grow by the configured bytes",
          steps and all(x == (1000, 5000) for x in steps), steps[:5])
    # spread over the interval, not one burst
    ts = sorted(t for t, _, _, _ in got)
    check("BYTECOUNT_CLI spread over the interval",
          len(ts) > 2 and ts[-1] - ts[0] > 1.0, ts[-1] - ts[0] if ts else 0)
    time.sleep(0.3)
    check("bytecount 0 stops them", len(bytecounts) == len(got),
          len(bytecounts) - len(got))
    st = ctl(cpath, "stats")
    kv = dict(x.split("=") for x in st.split()[1:])
    check("stats counts reauths and byte counts", int(kv["reauths"]) == 32 and
          int(kv["bytecounts"]) == len(got) and kv["bytecount_s"] == "0", st)


if __name__ == "__main__":
    signal.alarm(60)
    sys.exit(main())
