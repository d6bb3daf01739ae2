"""cluster-tests/jepsen/jlib.py: small helpers shared by the Jepsen-style
workload and the final-state reader (python 3, stdlib only).

- sim_cmd(path, line, timeout): one command on an ovpn_sim control socket,
  returns the reply line; raises SimDown when nothing listens there (the
  simulator died with its ovhad) and SimTimeout when no reply came in time.
- api(sock, method, path, body, timeout): one HTTP/1.1 request to ovhad's
  admin API over its unix socket, returns (status, parsed JSON or text).
- History: an append-only JSON-lines writer, one line per event, flushed
  per line, shared by threads.
"""
import http.client
import json
import socket
import threading
import time


class SimDown(Exception):
    pass


class SimTimeout(Exception):
    pass


def sim_cmd(path, line, timeout=8.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise SimDown(str(e))
        except socket.timeout:
            raise SimTimeout("connect")
        s.sendall((line + "\n").encode())
        buf = b""
        deadline = time.time() + timeout
        while b"\n" not in buf:
            if time.time() > deadline:
                raise SimTimeout("reply")
            try:
                chunk = s.recv(4096)
            except socket.timeout:
                raise SimTimeout("reply")
            except ConnectionResetError as e:
                raise SimDown(str(e))
            if not chunk:
                raise SimDown("closed without a reply")
            buf += chunk
        return buf.split(b"\n", 1)[0].decode(errors="replace").strip()
    finally:
        s.close()


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


def api(sock, method, path, body=None, timeout=5.0):
    conn = _UnixHTTPConnection(sock, timeout)
    try:
        data = None
        headers = {}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        raw = r.read().decode(errors="replace")
        try:
            return r.status, json.loads(raw)
        except ValueError:
            return r.status, raw
    finally:
        conn.close()


class History:
    """JSON lines: {"type", "f", "process", "op", "time", "value"}; time in
    seconds on the wall clock (CLOCK_REALTIME of the test host, which no
    nemesis touches: skew is injected inside ovhad only)."""

    def __init__(self, path):
        self._f = open(path, "a", buffering=1)
        self._lock = threading.Lock()
        self._next = 0

    def new_op(self):
        with self._lock:
            self._next += 1
            return self._next

    def add(self, typ, f, process, op, value, t=None):
        rec = {"type": typ, "f": f, "process": process, "op": op,
               "time": round(time.time() if t is None else t, 6),
               "value": value}
        line = json.dumps(rec, sort_keys=True)
        with self._lock:
            self._f.write(line + "\n")
        return rec

    def close(self):
        self._f.close()
