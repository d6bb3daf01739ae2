#!/usr/bin/env python3
"""Record real OpenVPN management-interface transcripts (server side).

Acts as the management controller on a server's unix management socket,
runs one scenario, and writes:

  OUTDIR/<scenario>.txt           every byte the daemon sent, as received
                                  (\\r\\n kept, nothing added or removed)
  OUTDIR/<scenario>.commands.txt  every byte this controller wrote, in order

python3 standard library only. Normally driven by record-fixtures.sh, which
builds the namespaces, PKI and configs; see tools/README.md.

Usage:
  record-transcript.py --scenario NAME --socket PATH --outdir DIR
      --server "CMD" [--client NAME="CMD"]... [--logdir DIR]

--server and --client commands are shell-split and started by this script
(e.g. "ip netns exec ovt1-gw openvpn --config /tmp/x/server.conf"); it
stops every process it started (SIGTERM, then SIGKILL after 5 s) by PID.
The server must use `management PATH unix`, `management-hold`,
`management-client-auth` and `auth-user-pass-optional`.

Scenarios: connect-auth-established deny reauth two-clients status3-waiting
hostile-cn env-filter kill-restart controller-reconnect (or "all").
"""
import argparse
import os
import re
import select
import shlex
import socket
import subprocess
import sys
import time

STEP_TIMEOUT = 40.0


class ScenarioError(Exception):
    pass


class Controller:
    """One management connection. Keeps the raw bytes and a cursor over
    the complete lines for replies (lines not starting with '>'); '>' lines
    are matched by pattern and marked consumed, so a wait never misses a
    notification that arrived while waiting for something else."""

    def __init__(self, path, raw_fp, cmd_fp, verbose, connect=True):
        self.raw_fp = raw_fp
        self.cmd_fp = cmd_fp
        self.verbose = verbose
        self.buf = b""
        self.lines = []
        self.reply_pos = 0
        self.consumed = set()
        self.sock = None
        if connect:
            self.connect(path)

    def connect(self, path):
        deadline = time.monotonic() + 15
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise ScenarioError("cannot connect to %s" % path)
                time.sleep(0.1)

    def close(self):
        if self.sock is not None:
            self.sock.close()

    def _pump(self, timeout):
        r, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not r:
            return
        data = self.sock.recv(65536)
        if not data:
            raise ScenarioError("management socket closed by the daemon")
        self.raw_fp.write(data)
        self.raw_fp.flush()
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            text = line.rstrip(b"\r").decode("utf-8", "replace")
            if self.verbose:
                sys.stderr.write("<< %s\n" % text)
            self.lines.append(text)

    def drain(self, seconds):
        """Receive whatever arrives for `seconds`."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._pump(end - time.monotonic())

    def send(self, text):
        data = text.encode()
        if self.verbose:
            for line in text.splitlines():
                sys.stderr.write(">> %s\n" % line)
        self.cmd_fp.write(data)
        self.cmd_fp.flush()
        self.sock.sendall(data)

    def _next_reply_line(self, deadline):
        while True:
            while self.reply_pos < len(self.lines):
                text = self.lines[self.reply_pos]
                self.reply_pos += 1
                if not text.startswith(">"):
                    return text
            if time.monotonic() > deadline:
                raise ScenarioError("timeout waiting for a reply")
            self._pump(deadline - time.monotonic())

    def command(self, cmd, block=False, expect_ok=True):
        """Send one command line, wait for its reply. block: the reply is
        a block ending in END. Returns the reply lines."""
        self.send(cmd + "\n")
        return self.reply(block, expect_ok, cmd)

    def reply(self, block=False, expect_ok=True, what=""):
        deadline = time.monotonic() + STEP_TIMEOUT
        first = self._next_reply_line(deadline)
        if not block or first.startswith("ERROR:"):
            if expect_ok and not first.startswith("SUCCESS:"):
                raise ScenarioError("%r failed: %s" % (what, first))
            return [first]
        out = [first]
        while out[-1] != "END":
            out.append(self._next_reply_line(deadline))
        return out

    def _line_at(self, i, deadline):
        while i >= len(self.lines):
            if time.monotonic() > deadline:
                raise ScenarioError("timeout inside a >CLIENT: block")
            self._pump(deadline - time.monotonic())
        return self.lines[i]

    def wait_event_at(self, pattern, timeout=STEP_TIMEOUT):
        """Wait for the first not yet consumed '>' line matching regex
        `pattern`; marks it consumed. Returns (index, match)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        i = 0
        while True:
            while i < len(self.lines):
                text = self.lines[i]
                if text.startswith(">") and i not in self.consumed:
                    m = rx.match(text)
                    if m:
                        self.consumed.add(i)
                        return i, m
                i += 1
            if time.monotonic() > deadline:
                raise ScenarioError("timeout waiting for %s" % pattern)
            self._pump(deadline - time.monotonic())

    def wait_event(self, pattern, timeout=STEP_TIMEOUT):
        return self.wait_event_at(pattern, timeout)[1]

    def wait_client(self, kind, timeout=STEP_TIMEOUT):
        """Wait for >CLIENT:KIND,... and read its ENV block (the lines right
        after it: the daemon never interleaves a block). Returns
        (numbers, env dict)."""
        i, m = self.wait_event_at(r">CLIENT:%s,([0-9,]+)$" % kind, timeout)
        nums = [int(x) for x in m.group(1).split(",")]
        env = {}
        deadline = time.monotonic() + timeout
        while True:
            i += 1
            text = self._line_at(i, deadline)
            self.consumed.add(i)
            if not text.startswith(">CLIENT:ENV,"):
                raise ScenarioError("unexpected line in block: %r" % text)
            kv = text[len(">CLIENT:ENV,"):]
            if kv == "END":
                return nums, env
            k, _, v = kv.partition("=")
            env[k] = v


class Procs:
    def __init__(self, logdir):
        self.logdir = logdir
        self.procs = {}

    def start(self, name, cmd):
        log = open(os.path.join(self.logdir, "rec-%s.log" % name), "ab")
        self.procs[name] = subprocess.Popen(
            shlex.split(cmd), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
        log.close()

    def stop(self, name):
        p = self.procs.pop(name, None)
        if p is None:
            return
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def stop_all(self):
        for name in list(self.procs):
            self.stop(name)


def allow_block(cid, kid, lines):
    body = "".join(line + "\n" for line in lines)
    return "client-auth %d %d\n%sEND\n" % (cid, kid, body)


def setup(ctl):
    """What every scenario does first: banner + hold, then the commands a
    controller sends on connect, then release the hold."""
    ctl.wait_event(r">INFO:OpenVPN Management Interface")
    ctl.wait_event(r">HOLD:")
    ctl.command("version", block=True)
    ctl.command("env-filter 0")
    ctl.command("bytecount 1")
    ctl.command("hold release")


def sc_connect_auth_established(ctl, procs, clients):
    setup(ctl)
    procs.start("alice", clients["alice"])
    (cid, kid), env = ctl.wait_client("CONNECT")
    ctl.send(allow_block(cid, kid, [
        "ifconfig-push 100.64.0.50 255.255.255.0",
        'push "route 100.96.10.0 255.255.255.0"',
        "iroute 100.96.77.0 255.255.255.0",
    ]))
    ctl.reply(what="client-auth")
    ctl.wait_event(r">CLIENT:ADDRESS,%d,100\.96\.77\.0/" % cid)
    ctl.wait_client("ESTABLISHED")
    ctl.wait_event(r">BYTECOUNT_CLI:%d," % cid)
    ctl.command("status 3", block=True)
    # HALT makes the client exit instead of reconnecting, so the transcript
    # ends with this client's DISCONNECT.
    ctl.command("client-kill %d HALT" % cid)
    ctl.wait_client("DISCONNECT")
    ctl.drain(0.5)


def sc_deny(ctl, procs, clients):
    setup(ctl)
    procs.start("mallory", clients["mallory"])
    (cid, kid), env = ctl.wait_client("CONNECT")
    ctl.command('client-deny %d %d "denied by policy" "Access denied"'
                % (cid, kid))
    ctl.wait_client("DISCONNECT")
    ctl.drain(0.5)


def sc_reauth(ctl, procs, clients):
    setup(ctl)
    procs.start("alice", clients["alice-reneg"])
    (cid, kid), env = ctl.wait_client("CONNECT")
    ctl.send(allow_block(cid, kid, ["ifconfig-push 100.64.0.50 255.255.255.0"]))
    ctl.reply(what="client-auth")
    ctl.wait_client("ESTABLISHED")
    # First renegotiation (client reneg-sec 10): allowed again.
    (rcid, rkid), env = ctl.wait_client("REAUTH", timeout=40)
    ctl.send(allow_block(rcid, rkid, []))
    ctl.reply(what="client-auth on REAUTH")
    # Second one: denied, which tears the session down.
    (rcid, rkid), env = ctl.wait_client("REAUTH", timeout=40)
    ctl.command('client-deny %d %d "revoked" "Access revoked"' % (rcid, rkid))
    ctl.wait_client("DISCONNECT")
    ctl.drain(0.5)


def sc_two_clients(ctl, procs, clients):
    setup(ctl)
    procs.start("alice", clients["alice"])
    procs.start("bob", clients["bob"])
    allowed = 0
    cids = []
    while allowed < 2:
        (cid, kid), env = ctl.wait_client("CONNECT")
        if env.get("common_name") == "alice":
            lines = ["ifconfig-push 100.64.0.50 255.255.255.0",
                     'push "route 100.96.10.0 255.255.255.0"']
        else:
            lines = []  # from the pool
        ctl.send(allow_block(cid, kid, lines))
        ctl.reply(what="client-auth")
        cids.append(cid)
        allowed += 1
    ctl.wait_client("ESTABLISHED")
    ctl.wait_client("ESTABLISHED")
    ctl.command("status 3", block=True)
    ctl.command("load-stats")
    for cid in cids:
        ctl.command("client-kill %d HALT" % cid)
    ctl.wait_client("DISCONNECT")
    ctl.wait_client("DISCONNECT")
    ctl.drain(0.5)


def sc_status3_waiting(ctl, procs, clients):
    setup(ctl)
    procs.start("bob", clients["bob"])
    (cid, kid), env = ctl.wait_client("CONNECT")
    ctl.drain(0.5)
    ctl.command("status 3", block=True)
    ctl.command('client-deny %d %d "too slow" "Access denied"' % (cid, kid))
    ctl.wait_client("DISCONNECT")
    ctl.drain(0.5)


def sc_hostile_cn(ctl, procs, clients):
    setup(ctl)
    procs.start("evil", clients["evil"])
    (cid, kid), env = ctl.wait_client("CONNECT")
    ctl.send(allow_block(cid, kid, ["ifconfig-push 100.64.0.66 255.255.255.0"]))
    ctl.reply(what="client-auth")
    ctl.wait_client("ESTABLISHED")
    ctl.command("status 3", block=True)
    # kill by CN: the management parser takes "..." with \" and \\ escapes.
    cn = env.get("common_name", "")
    quoted = '"' + cn.replace("\\", "\\\\").replace('"', '\\"') + '"'
    ctl.command("kill %s" % quoted, expect_ok=False)
    ctl.wait_client("DISCONNECT")
    ctl.drain(0.5)


def sc_env_filter(ctl, procs, clients):
    setup(ctl)
    ctl.command("env-filter 2")
    procs.start("alice", clients["alice"])
    (cid, kid), env = ctl.wait_client("CONNECT")
    ctl.command('client-deny %d %d "denied by policy" "Access denied"'
                % (cid, kid))
    ctl.wait_client("DISCONNECT")
    ctl.command("env-filter 0")
    ctl.drain(0.5)


def sc_kill_restart(ctl, procs, clients):
    """client-kill without a message (RESTART): the client reconnects, so a
    new CONNECT (next CID) races the old CID's DISCONNECT."""
    setup(ctl)
    procs.start("alice", clients["alice"])
    (cid, kid), env = ctl.wait_client("CONNECT")
    ctl.send(allow_block(cid, kid, ["ifconfig-push 100.64.0.50 255.255.255.0"]))
    ctl.reply(what="client-auth")
    ctl.wait_client("ESTABLISHED")
    ctl.command("client-kill %d" % cid)
    (cid2, kid2), env = ctl.wait_client("CONNECT")
    ctl.send(allow_block(cid2, kid2,
                         ["ifconfig-push 100.64.0.50 255.255.255.0"]))
    ctl.reply(what="client-auth")
    ctl.wait_client("ESTABLISHED")
    ctl.wait_event(r">CLIENT:DISCONNECT,%d$" % cid)
    ctl.command("status 3", block=True)
    ctl.command("client-kill %d HALT" % cid2)
    ctl.wait_event(r">CLIENT:DISCONNECT,%d$" % cid2)
    ctl.drain(0.5)


def sc_controller_reconnect(ctl, procs, clients, path):
    """The controller goes away while a CONNECT is pending. Only the second
    connection is recorded: banner (no HOLD: already released), nothing
    replayed; status 3 shows the waiting client; client-kill makes it
    reconnect and CONNECT again."""
    with open(os.devnull, "wb") as null:
        first = Controller(path, null, null, ctl.verbose)
        try:
            setup(first)
            procs.start("bob", clients["bob"])
            first.wait_client("CONNECT")
        finally:
            first.close()
    ctl.connect(path)
    ctl.wait_event(r">INFO:OpenVPN Management Interface")
    ctl.drain(1.0)
    ctl.command("env-filter 0")
    ctl.command("bytecount 1")
    rows = ctl.command("status 3", block=True)
    cid = None
    for row in rows:
        f = row.split("\t")
        if f[0] == "CLIENT_LIST" and f[3] == "":
            cid = int(f[10])
    if cid is None:
        raise ScenarioError("no waiting client in status 3")
    ctl.command("client-kill %d" % cid)
    (cid2, kid2), env = ctl.wait_client("CONNECT")
    ctl.command('client-deny %d %d "denied by policy" "Access denied"'
                % (cid2, kid2))
    ctl.wait_event(r">CLIENT:DISCONNECT,%d$" % cid2)
    ctl.drain(0.5)


SCENARIOS = {
    "connect-auth-established": sc_connect_auth_established,
    "deny": sc_deny,
    "reauth": sc_reauth,
    "two-clients": sc_two_clients,
    "status3-waiting": sc_status3_waiting,
    "hostile-cn": sc_hostile_cn,
    "env-filter": sc_env_filter,
    "kill-restart": sc_kill_restart,
    "controller-reconnect": sc_controller_reconnect,
}


def run(name, args, clients):
    procs = Procs(args.logdir)
    raw_path = os.path.join(args.outdir, name + ".txt")
    cmd_path = os.path.join(args.outdir, name + ".commands.txt")
    try:
        os.unlink(args.socket)
    except FileNotFoundError:
        pass
    ok = False
    with open(raw_path + ".tmp", "wb") as raw_fp, \
            open(cmd_path + ".tmp", "wb") as cmd_fp:
        procs.start("server", args.server)
        try:
            lazy = name == "controller-reconnect"
            ctl = Controller(args.socket, raw_fp, cmd_fp, args.verbose,
                             connect=not lazy)
            try:
                if lazy:
                    SCENARIOS[name](ctl, procs, clients, args.socket)
                else:
                    SCENARIOS[name](ctl, procs, clients)
                ok = True
            finally:
                ctl.close()
        except ScenarioError as e:
            sys.stderr.write("%s: %s\n" % (name, e))
        finally:
            procs.stop_all()
    if ok:
        os.replace(raw_path + ".tmp", raw_path)
        os.replace(cmd_path + ".tmp", cmd_path)
        print("recorded %s (%d bytes)" % (raw_path, os.path.getsize(raw_path)))
    else:
        os.unlink(raw_path + ".tmp")
        os.unlink(cmd_path + ".tmp")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--socket", required=True)
    ap.add_argument("--outdir", required=True)
    ap.add_argument("--server", required=True)
    ap.add_argument("--client", action="append", default=[])
    ap.add_argument("--logdir", default=".")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    clients = {}
    for c in args.client:
        k, _, v = c.partition("=")
        clients[k] = v
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    failed = 0
    for name in names:
        if name not in SCENARIOS:
            sys.stderr.write("unknown scenario %s\n" % name)
            return 2
        if not run(name, args, clients):
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
