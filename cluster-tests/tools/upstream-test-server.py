#!/usr/bin/env python3
"""Minimal HTTPS server for node/upstream unit tests (test-only).

Usage: upstream-test-server.py --cert C --key K [--client-ca CA]
                               [--host 127.0.0.1] [--port 0]
Prints "PORT <n>" on stdout once listening. Behaviour by request path
(any method):
  /ok        200 {"ok":true,"len":<request body length>}
  /404       404 {"error":"not found"}
  /500       500 {"error":"boom"}
  /slow      sleeps 5 s, then 200
  /hold      sleeps 0.3 s, then 200 (in-flight counting)
  /garbage   raw non-HTTP bytes, then close
  /big       200 with a 256 KiB body
  /close     closes the connection without answering
  /dyn       behaves like the current mode ("ok" or "500")
  /whoami    200 {"cn": <client certificate CN or null>} (with --client-ca,
             client certificates are optional but verified when sent)
Control:
  /control/mode/<ok|500>  sets the /dyn mode
  /control/stats          {"hits":{path:n},"max_inflight":{path:n},
                           "inflight":{path:n},"mode":m}
  /control/reset          clears the counters
"""
import argparse
import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
# Counters are per path, so requests still sleeping from an earlier test
# (e.g. /slow) do not disturb another path's in-flight count.
STATE = {"hits": {}, "inflight": {}, "max_inflight": {}, "mode": "ok"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def _send(self, code, obj):
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n > 0 else b""
        path = self.path
        if path.startswith("/control/"):
            return self._control(path)
        with LOCK:
            STATE["hits"][path] = STATE["hits"].get(path, 0) + 1
            cur = STATE["inflight"].get(path, 0) + 1
            STATE["inflight"][path] = cur
            STATE["max_inflight"][path] = max(
                STATE["max_inflight"].get(path, 0), cur)
        try:
            self._behave(path, body)
        finally:
            with LOCK:
                STATE["inflight"][path] -= 1

    def _behave(self, path, body):
        if path == "/dyn":
            with LOCK:
                path = "/ok" if STATE["mode"] == "ok" else "/500"
        if path == "/ok":
            self._send(200, {"ok": True, "len": len(body)})
        elif path == "/whoami":
            cn = None
            peer = self.connection.getpeercert()
            for rdn in (peer or {}).get("subject", ()):
                for k, v in rdn:
                    if k == "commonName":
                        cn = v
            self._send(200, {"cn": cn})
        elif path == "/404":
            self._send(404, {"error": "not found"})
        elif path == "/500":
            self._send(500, {"error": "boom"})
        elif path == "/slow":
            time.sleep(5)
            self._send(200, {"ok": True})
        elif path == "/hold":
            time.sleep(0.3)
            self._send(200, {"ok": True})
        elif path == "/garbage":
            self.wfile.write(b"\x00\xff\xfe garbage \x01\x02\r\n\r\n")
            self.close_connection = True
        elif path == "/big":
            self._send(200, b"x" * (256 * 1024))
        elif path == "/close":
            self.close_connection = True
        else:
            self._send(404, {"error": "unknown path"})

    def _control(self, path):
        with LOCK:
            if path.startswith("/control/mode/"):
                STATE["mode"] = path[len("/control/mode/"):]
                out = {"mode": STATE["mode"]}
            elif path == "/control/reset":
                STATE["hits"] = {}
                STATE["max_inflight"] = {}
                out = {"reset": True}
            else:
                out = {"hits": STATE["hits"],
                       "max_inflight": STATE["max_inflight"],
                       "inflight": STATE["inflight"], "mode": STATE["mode"]}
        self._send(200, out)

    def do_POST(self):
        try:
            self._handle()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    do_GET = do_POST


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # failed handshakes and dropped clients are expected


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--client-ca")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    srv = Server((a.host, a.port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    if a.client_ca:
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(a.client_ca)
    # Handshake in the handler thread, not in accept().
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True,
                                 do_handshake_on_connect=False)
    print("PORT %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
