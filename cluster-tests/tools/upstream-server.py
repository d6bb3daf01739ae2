#!/usr/bin/env python3
"""upstream-server.py: the reference upstream decision API (docs/upstream.md,
docs/upstream-openapi.yaml) for tests and the demo. python3 stdlib only.

  upstream-server.py --cert CRT --key KEY --listen ADDR:PORT --data FILE
                     [--max-conns N] [--quiet]

- HTTPS only. ADDR must be in 127.0.0.0/8 or 198.18.0.0/15 (test networks);
  PORT 0 picks a free port. Once listening, one line "listening ADDR:PORT"
  goes to stdout.
- --data: a JSON object mapping CN -> answer (the DecideResponse of the
  contract). An answer may also carry "x_password": the request's password
  must then equal it (else deny "bad credentials"); the x_ member is removed
  before answering. Unknown CN -> deny "unknown client". Every answer is
  validated at load time; a bad file is refused at startup and ignored
  (the old data stays) on SIGHUP, which reloads it.
- POST /v1/decide validates the request against the contract: 400 {error}
  on bad input, 411 without Content-Length, 413 over 64 KiB, 415 when the
  Content-Type is not JSON. Passwords are never logged, never echoed.
- Fault injection: POST /control {"mode": M, "delay_ms": D, "count": N,
  "size_bytes": S}. M: normal | slow (sleep D ms, D <= 60000, then answer
  normally) | error500 | garbage (200, non-JSON body) | oversize (200,
  S bytes of JSON, default 1 MiB, at most 64 MiB, streamed) | wrongtypes
  (200, JSON with wrong member types) | close (read the request, close
  without answering). N > 0 applies the mode to the next N decide
  requests only, then back to normal.
- GET /stats: counters (requests, per-CN counts, in flight, maximum in
  flight, mode, reloads); DELETE /stats resets them.
- Bounded: at most --max-conns connections (default 256; more are closed
  at once), 64 KiB request bodies, a 16 MiB data file with at most 65536
  CNs, at most 4096 CNs counted individually in /stats.
"""
import argparse
import hmac
import ipaddress
import json
import re
import signal
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 64 * 1024
MAX_DATA_FILE = 16 * 1024 * 1024
MAX_DATA_ENTRIES = 65536
MAX_STATS_CNS = 4096
MAX_DELAY_MS = 60000
MAX_OVERSIZE = 64 * 1024 * 1024
DEFAULT_OVERSIZE = 1024 * 1024
IO_TIMEOUT_S = 10.0
MODES = ("normal", "slow", "error500", "garbage", "oversize", "wrongtypes",
         "close")

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,63}$")
POOL_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,63}$")
REQID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
PEER_KEY_RE = re.compile(r"^(IV|UV)_[A-Za-z0-9_]{1,61}$")
CTRL_RE = re.compile(r"[\x00-\x1f\x7f]")


class Invalid(Exception):
    """A request or an answer breaks the contract; the message names the
    member, never its value (it could be a password)."""


# ---------------------------------------------------------------------------
# Contract checks (mirror docs/upstream-openapi.yaml; lengths in UTF-8 bytes)


def upstream_check_str(obj, key, maxb, minb=0, ctrl_ok=False, pattern=None):
    v = obj[key]
    if not isinstance(v, str):
        raise Invalid("%s: must be a string" % key)
    n = len(v.encode("utf-8", "surrogatepass"))
    if n < minb or n > maxb:
        raise Invalid("%s: length must be %d..%d bytes" % (key, minb, maxb))
    if "\x00" in v:
        raise Invalid("%s: contains NUL" % key)
    if not ctrl_ok and CTRL_RE.search(v):
        raise Invalid("%s: contains control characters" % key)
    if pattern is not None and not pattern.match(v):
        raise Invalid("%s: bad format" % key)
    return v


def upstream_check_int(obj, key, lo, hi):
    v = obj[key]
    # bool is an int subclass in python; JSON true is not an integer.
    if not isinstance(v, int) or isinstance(v, bool):
        raise Invalid("%s: must be an integer" % key)
    if v < lo or v > hi:
        raise Invalid("%s: must be in %d..%d" % (key, lo, hi))
    return v


def upstream_check_members(obj, what, allowed, required):
    if not isinstance(obj, dict):
        raise Invalid("%s: must be an object" % what)
    for k in obj:
        if k not in allowed:
            raise Invalid("%s: unknown member" % what)
    for k in required:
        if k not in obj:
            raise Invalid("%s: missing member %s" % (what, k))


def upstream_check_cidr(v, what):
    if not isinstance(v, str) or len(v) > 49 or "/" not in v:
        raise Invalid("%s: must be a CIDR string" % what)
    try:
        ipaddress.ip_network(v, strict=True)
    except ValueError:
        raise Invalid("%s: bad CIDR (host bits must be zero)" % what)


def upstream_check_cidr_list(obj, key):
    v = obj[key]
    if not isinstance(v, list) or len(v) > 64:
        raise Invalid("%s: must be an array of at most 64 CIDRs" % key)
    for item in v:
        upstream_check_cidr(item, key)
    if len(set(v)) != len(v):
        raise Invalid("%s: duplicate items" % key)


def upstream_check_request(req):
    upstream_check_members(
        req, "request",
        ("cn", "username", "password", "real_address", "peer_info",
         "gateway", "request_id"),
        ("cn", "real_address", "peer_info", "gateway", "request_id"))
    upstream_check_str(req, "cn", 255, minb=1)
    if "username" in req:
        upstream_check_str(req, "username", 255)
    if "password" in req:
        # Control characters are allowed in a password; NUL is not.
        upstream_check_str(req, "password", 4096, ctrl_ok=True)
    ra = req["real_address"]
    upstream_check_members(ra, "real_address", ("ip", "port"),
                           ("ip", "port"))
    if not isinstance(ra["ip"], str) or len(ra["ip"]) > 45:
        raise Invalid("real_address.ip: must be an IP address string")
    try:
        ipaddress.ip_address(ra["ip"])
    except ValueError:
        raise Invalid("real_address.ip: not an IP address")
    upstream_check_int(ra, "port", 0, 65535)
    pi = req["peer_info"]
    if not isinstance(pi, dict) or len(pi) > 64:
        raise Invalid("peer_info: must be an object of at most 64 members")
    for k in pi:
        if not PEER_KEY_RE.match(k):
            raise Invalid("peer_info: member names must be IV_* or UV_*")
        upstream_check_str(pi, k, 255)
    upstream_check_str(req, "gateway", 63, minb=1, pattern=NAME_RE)
    upstream_check_str(req, "request_id", 64, minb=1, pattern=REQID_RE)


ANSWER_MEMBERS = ("decision", "reason", "client_reason", "groups", "ip",
                  "pool", "routes", "iroutes", "quota", "bandwidth",
                  "max_sessions", "on_excess", "ttl_s")


def upstream_check_answer(ans):
    upstream_check_members(ans, "answer", ANSWER_MEMBERS,
                           ("decision", "ttl_s"))
    if ans["decision"] not in ("allow", "deny"):
        raise Invalid("decision: must be allow or deny")
    for k in ("reason", "client_reason"):
        if k in ans:
            upstream_check_str(ans, k, 255)
    if "groups" in ans:
        g = ans["groups"]
        if not isinstance(g, list) or len(g) > 32:
            raise Invalid("groups: must be an array of at most 32 names")
        for i in range(len(g)):
            try:
                upstream_check_str(g, i, 63, minb=1, pattern=NAME_RE)
            except Invalid as e:
                raise Invalid("groups[%s" % str(e).replace(":", "]:", 1))
        if len(set(g)) != len(g):
            raise Invalid("groups: duplicate items")
    if "ip" in ans and "pool" in ans:
        raise Invalid("answer: ip and pool are mutually exclusive")
    if "ip" in ans:
        v = ans["ip"]
        if not isinstance(v, str) or len(v) > 15:
            raise Invalid("ip: must be an IPv4 address string")
        try:
            ipaddress.IPv4Address(v)
        except ValueError:
            raise Invalid("ip: not an IPv4 address")
    if "pool" in ans:
        upstream_check_str(ans, "pool", 63, minb=1, pattern=POOL_RE)
    for k in ("routes", "iroutes"):
        if k in ans:
            upstream_check_cidr_list(ans, k)
    if "quota" in ans:
        q = ans["quota"]
        upstream_check_members(q, "quota", ("bytes", "period"),
                               ("bytes", "period"))
        upstream_check_int(q, "bytes", 1, 2**53 - 1)
        if q["period"] not in ("session", "day", "week", "month"):
            raise Invalid("quota.period: must be session|day|week|month")
    if "bandwidth" in ans:
        b = ans["bandwidth"]
        upstream_check_members(b, "bandwidth", ("down_kbps", "up_kbps"), ())
        if not b:
            raise Invalid("bandwidth: needs down_kbps or up_kbps")
        for k in b:
            upstream_check_int(b, k, 1, 100000000)
    if "max_sessions" in ans:
        upstream_check_int(ans, "max_sessions", 1, 64)
    if "on_excess" in ans and ans["on_excess"] not in ("evict_oldest",
                                                       "refuse"):
        raise Invalid("on_excess: must be evict_oldest or refuse")
    upstream_check_int(ans, "ttl_s", 0, 86400)


# ---------------------------------------------------------------------------
# State shared by handler threads (one lock; every structure is bounded)


class UpstreamState:
    def __init__(self, data_path):
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.data_path = data_path
        self.data = {}
        self.mode = "normal"
        self.delay_ms = 0
        self.count = 0  # 0 = the mode stays until changed
        self.size_bytes = DEFAULT_OVERSIZE
        self.reloads = 0
        self.reload_errors = 0
        self.upstream_stats_reset()

    def upstream_stats_reset(self):
        self.requests = 0
        self.bad_requests = 0
        self.by_cn = {}
        self.by_cn_other = 0
        self.decisions = {"allow": 0, "deny": 0}
        self.faults = 0
        self.in_flight = 0
        self.max_in_flight = 0


def upstream_load_data(path):
    """Returns {cn: (answer, password or None)} or raises ValueError."""
    with open(path, "rb") as f:
        raw = f.read(MAX_DATA_FILE + 1)
    if len(raw) > MAX_DATA_FILE:
        raise ValueError("data file larger than %d bytes" % MAX_DATA_FILE)
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ValueError("data file is not JSON: %s" % e)
    if not isinstance(doc, dict) or len(doc) > MAX_DATA_ENTRIES:
        raise ValueError("data file must be an object of at most %d CNs" %
                         MAX_DATA_ENTRIES)
    out = {}
    for cn, entry in doc.items():
        if not cn or len(cn.encode("utf-8", "surrogatepass")) > 255:
            raise ValueError("data file: bad CN length")
        if not isinstance(entry, dict):
            raise ValueError("data file: answer of %r is not an object" % cn)
        entry = dict(entry)
        pw = entry.pop("x_password", None)
        if pw is not None and not isinstance(pw, str):
            raise ValueError("data file: x_password of %r is not a string" %
                             cn)
        try:
            upstream_check_answer(entry)
        except Invalid as e:
            raise ValueError("data file: answer of %r: %s" % (cn, e))
        out[cn] = (entry, pw)
    return out


def upstream_log(msg):
    sys.stderr.write("upstream-server: %s\n" % msg)
    sys.stderr.flush()


def upstream_safe(s):
    """A CN for a log line: printable, bounded, quoted."""
    return ascii(s[:80])


# ---------------------------------------------------------------------------
# HTTP


class UpstreamHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ovha-upstream-test/1"
    sys_version = ""
    timeout = IO_TIMEOUT_S

    # The default log line carries the request line only (no body, so no
    # password); it is replaced anyway so nothing unexpected gets in.
    def log_message(self, fmt, *args):
        if not self.server.quiet:
            upstream_log("%s %s" % (self.address_string(),
                                    ascii(fmt % args)[:300]))

    def upstream_send(self, status, body, ctype="application/json"):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def upstream_error(self, status, msg):
        self.upstream_send(status, {"error": msg})

    def upstream_read_body(self):
        """Returns the body bytes, or None after answering an error. The
        body is read only when it is within the bound."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self.upstream_error(411, "chunked bodies are not accepted")
            return None
        cl = self.headers.get("Content-Length")
        if cl is None or not cl.isdigit():
            self.close_connection = True
            self.upstream_error(411, "Content-Length required")
            return None
        n = int(cl)
        if n > MAX_BODY:
            self.close_connection = True
            self.upstream_error(413, "body larger than %d bytes" % MAX_BODY)
            return None
        body = self.rfile.read(n)
        if len(body) != n:
            self.close_connection = True
            return None
        return body

    def upstream_parse_json(self, body):
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return Invalid

    def do_GET(self):
        if self.path != "/stats":
            self.upstream_error(404, "not found")
            return
        st = self.server.state
        with st.lock:
            doc = {
                "requests": st.requests,
                "bad_requests": st.bad_requests,
                "by_cn": dict(st.by_cn),
                "by_cn_other": st.by_cn_other,
                "decisions": dict(st.decisions),
                "faults": st.faults,
                "in_flight": st.in_flight,
                "max_in_flight": st.max_in_flight,
                "mode": st.mode,
                "delay_ms": st.delay_ms,
                "count": st.count,
                "entries": len(st.data),
                "reloads": st.reloads,
                "reload_errors": st.reload_errors,
            }
        self.upstream_send(200, doc)

    def do_DELETE(self):
        if self.path != "/stats":
            self.upstream_error(404, "not found")
            return
        st = self.server.state
        with st.lock:
            st.upstream_stats_reset()
        self.upstream_send(200, {"ok": True})

    def do_PUT(self):
        self.upstream_error(405, "method not allowed")

    def do_POST(self):
        if self.path == "/v1/decide":
            self.upstream_decide()
        elif self.path == "/control":
            self.upstream_control()
        else:
            self.upstream_error(404, "not found")

    def upstream_control(self):
        body = self.upstream_read_body()
        if body is None:
            return
        doc = self.upstream_parse_json(body)
        try:
            upstream_check_members(doc, "control",
                                   ("mode", "delay_ms", "count",
                                    "size_bytes"), ("mode",))
            if doc["mode"] not in MODES:
                raise Invalid("mode: must be one of " + "|".join(MODES))
            delay = 0
            if "delay_ms" in doc:
                delay = upstream_check_int(doc, "delay_ms", 0, MAX_DELAY_MS)
            count = 0
            if "count" in doc:
                count = upstream_check_int(doc, "count", 0, 1000000)
            size = DEFAULT_OVERSIZE
            if "size_bytes" in doc:
                size = upstream_check_int(doc, "size_bytes", 1, MAX_OVERSIZE)
        except Invalid as e:
            self.upstream_error(400, str(e))
            return
        st = self.server.state
        with st.lock:
            st.mode, st.delay_ms = doc["mode"], delay
            st.count, st.size_bytes = count, size
        upstream_log("control: mode=%s delay_ms=%d count=%d" %
                     (doc["mode"], delay, count))
        self.upstream_send(200, {"ok": True, "mode": doc["mode"]})

    def upstream_decide(self):
        st = self.server.state
        ctype = self.headers.get("Content-Type", "")
        body = self.upstream_read_body()
        if body is None:
            with st.lock:
                st.bad_requests += 1
            return
        with st.lock:
            st.requests += 1
            st.in_flight += 1
            st.max_in_flight = max(st.max_in_flight, st.in_flight)
        try:
            self.upstream_decide_counted(ctype, body)
        finally:
            with st.lock:
                st.in_flight -= 1

    def upstream_take_mode(self):
        st = self.server.state
        with st.lock:
            mode, delay, size = st.mode, st.delay_ms, st.size_bytes
            if mode != "normal":
                st.faults += 1
                if st.count > 0:
                    st.count -= 1
                    if st.count == 0:
                        st.mode = "normal"
        return mode, delay, size

    def upstream_decide_counted(self, ctype, body):
        st = self.server.state
        # The fault is chosen before validation, so a test can inject it
        # whatever ovhad sends; "slow" then answers like "normal".
        mode, delay, size = self.upstream_take_mode()
        if mode == "slow":
            st.stopping.wait(delay / 1000.0)
        elif mode == "error500":
            self.upstream_error(500, "injected fault")
            return
        elif mode == "garbage":
            self.upstream_send(200, b"\x00\xff<html>not json{{\"decision\"")
            return
        elif mode == "oversize":
            self.upstream_send_oversize(size)
            return
        elif mode == "wrongtypes":
            self.upstream_send(200, {
                "decision": True, "reason": 7, "groups": "staff",
                "ip": 16843009, "routes": "100.64.0.0/24",
                "quota": [1, "day"], "max_sessions": "2", "ttl_s": -1
            })
            return
        elif mode == "close":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return

        if ctype.split(";")[0].strip().lower() != "application/json":
            self.upstream_bad(415, "Content-Type must be application/json")
            return
        req = self.upstream_parse_json(body)
        if req is Invalid:
            self.upstream_bad(400, "body is not UTF-8 JSON")
            return
        try:
            upstream_check_request(req)
        except Invalid as e:
            self.upstream_bad(400, str(e))
            return
        ans = self.upstream_answer(req)
        upstream_log("decide request_id=%s cn=%s gateway=%s -> %s" %
                     (req["request_id"], upstream_safe(req["cn"]),
                      req["gateway"], ans["decision"]))
        self.upstream_send(200, ans)

    def upstream_bad(self, status, msg):
        with self.server.state.lock:
            self.server.state.bad_requests += 1
        self.upstream_error(status, msg)

    def upstream_answer(self, req):
        st = self.server.state
        cn = req["cn"]
        with st.lock:
            entry = st.data.get(cn)
            if cn in st.by_cn:
                st.by_cn[cn] += 1
            elif len(st.by_cn) < MAX_STATS_CNS:
                st.by_cn[cn] = 1
            else:
                st.by_cn_other += 1
        if entry is None:
            ans = {"decision": "deny", "reason": "unknown client",
                   "client_reason": "unknown client", "ttl_s": 0}
        else:
            ans, pw = entry
            if pw is not None:
                given = req.get("password", "")
                if not hmac.compare_digest(given.encode("utf-8",
                                                        "surrogatepass"),
                                           pw.encode("utf-8")):
                    ans = {"decision": "deny", "reason": "bad credentials",
                           "client_reason": "authentication failed",
                           "ttl_s": 0}
        with st.lock:
            st.decisions[ans["decision"]] += 1
        return ans

    def upstream_send_oversize(self, size):
        # Valid JSON padded with spaces, streamed in 64 KiB chunks so the
        # server never holds it.
        head = b'{"decision":"allow","reason":"oversize","ttl_s":60,"x":"'
        tail = b'"}'
        pad = max(0, size - len(head) - len(tail))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(head) + pad + len(tail)))
        self.end_headers()
        self.wfile.write(head)
        chunk = b" " * 65536
        while pad > 0 and not self.server.state.stopping.is_set():
            n = min(pad, len(chunk))
            self.wfile.write(chunk[:n])
            pad -= n
        self.wfile.write(tail)


class UpstreamServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # Listen backlog: connections beyond --max-conns are closed, not queued.
    request_queue_size = 64

    def __init__(self, addr, ctx, state, max_conns, quiet):
        self.ctx = ctx
        self.state = state
        self.quiet = quiet
        self.slots = threading.BoundedSemaphore(max_conns)
        super().__init__(addr, UpstreamHandler)

    def process_request(self, request, client_address):
        # One thread per connection, at most max_conns of them.
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        # The TLS handshake runs here, in the connection's thread, so a slow
        # client never blocks accept().
        try:
            request.settimeout(IO_TIMEOUT_S)
            # Headers and body go out in two writes: with Nagle the body
            # would wait for the client's delayed ACK (~40 ms per request).
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                tls = self.ctx.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                self.shutdown_request(request)
                return
            super().process_request_thread(tls, client_address)
        finally:
            self.slots.release()


def upstream_parse_listen(s):
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError("--listen must be ADDR:PORT")
    addr = ipaddress.IPv4Address(host)
    if not (addr in ipaddress.IPv4Network("127.0.0.0/8") or
            addr in ipaddress.IPv4Network("198.18.0.0/15")):
        raise ValueError("--listen address must be in 127.0.0.0/8 or "
                         "198.18.0.0/15")
    return host, int(port)


def main():
    ap = argparse.ArgumentParser(description="reference upstream API server")
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--listen", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--max-conns", type=int, default=256)
    ap.add_argument("--quiet", action="store_true",
                    help="no per-request HTTP log lines")
    args = ap.parse_args()
    try:
        addr = upstream_parse_listen(args.listen)
    except ValueError as e:
        upstream_log(str(e))
        return 2
    if not 1 <= args.max_conns <= 4096:
        upstream_log("--max-conns must be 1..4096")
        return 2
    state = UpstreamState(args.data)
    try:
        state.data = upstream_load_data(args.data)
    except (OSError, ValueError) as e:
        upstream_log("cannot load %s: %s" % (args.data, e))
        return 2
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(args.cert, args.key)
    except (OSError, ssl.SSLError) as e:
        upstream_log("cannot load certificate/key: %s" % e)
        return 2
    try:
        srv = UpstreamServer(addr, ctx, state, args.max_conns, args.quiet)
    except OSError as e:
        upstream_log("cannot listen on %s: %s" % (args.listen, e))
        return 2

    def upstream_on_hup(signum, frame):
        try:
            data = upstream_load_data(state.data_path)
        except (OSError, ValueError) as e:
            with state.lock:
                state.reload_errors += 1
            upstream_log("reload failed, keeping old data: %s" % e)
            return
        with state.lock:
            state.data = data
            state.reloads += 1
        upstream_log("reloaded %d entries" % len(data))

    def upstream_on_term(signum, frame):
        state.stopping.set()
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGHUP, upstream_on_hup)
    signal.signal(signal.SIGTERM, upstream_on_term)
    signal.signal(signal.SIGINT, upstream_on_term)
    host, port = srv.server_address[:2]
    print("listening %s:%d" % (host, port), flush=True)
    upstream_log("listening on %s:%d, %d entries" %
                 (host, port, len(state.data)))
    srv.serve_forever(poll_interval=0.2)
    srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
