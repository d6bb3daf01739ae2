#!/usr/bin/env python3
"""A stand-in for ovhad's admin API, for test_ovhactl.sh.

Serves canned answers on a unix socket, or on HTTPS (198.18.0.0/15 only,
inside the test's network namespace), and enforces the contract's
authentication and roles from a tokens file:

  token <subject> <role> sha256:<hex of SHA-256(token text)>
  cert  <client certificate CN> <role>

Every request is appended to LOG as one JSON line (method, path with
query, Authorization header, body, the subject it authenticated as), so
the test can check what ovhactl sent.

usage: ovhactl_fake_api.py unix PATH TOKENS LOG STATE_DIR
       ovhactl_fake_api.py tls ADDR PORT TOKENS LOG STATE_DIR CERT KEY CA
STATE_DIR/notready and STATE_DIR/broken switch /readyz and
/v1/audit/verify to their failure answers.
"""
import hashlib
import http.server
import json
import os
import socketserver
import ssl
import sys
import urllib.parse

RANK = {"viewer": 1, "operator": 2, "admin": 3}
OPERATOR = {
    ("POST", "/v1/sessions/kill"),
    ("POST", "/v1/gateways/drain"),
    ("POST", "/v1/gateways/activate"),
    ("POST", "/v1/gateways/standby"),
    ("POST", "/v1/leases/reserve"),
    ("POST", "/v1/leases/release"),
}
OPEN = {("GET", "/healthz"), ("GET", "/readyz")}

SESSIONS = {"sessions": [{
    "cn": "alice", "cid": 3, "vpn_ip": "100.64.0.2",
    "real_address": "198.18.0.50:40000", "state": "CONNECTED",
    "connected_since": 1700000000, "bytes_in": 10, "bytes_out": 20}]}
CSESSIONS = {"sessions": [{
    "id": 7, "cn": "alice", "gateway": "gw1", "cid": 3, "ip4": "100.64.0.2",
    "ip6": "", "real_address": "198.18.0.50:40000", "state": "established",
    "started": 1700000000000}]}
POOLS = {"pools": [
    {"name": "main", "cidr": "100.64.0.0/24", "family": 4,
     "lease_ttl_ms": 3600000, "size": 253, "leases": 3},
    {"name": "evil\u001b[31m", "cidr": "100.64.1.0/24", "family": 4,
     "lease_ttl_ms": 1000, "size": 253, "leases": 0}]}
SUBNETS = {"subnets": [{"cidr": "100.64.128.0/25", "owner_cn": "site a"}]}
AUDIT = {"base_seq": 0, "head_seq": 10, "more": True, "records": [
    {"seq": s, "ts_ms": 1700000000000 + s, "kind": "api",
     "actor": "token:alice", "subject": "PUT /v1/pools", "detail": "200",
     "prev_hash": "00" * 32, "hash": "%02x" % s * 32} for s in (1, 2, 3)]}


def load_tokens(path):
    tokens, certs = {}, {}
    with open(path) as f:
        for line in f:
            w = line.split()
            if not w or w[0].startswith("#"):
                continue
            if w[0] == "token" and len(w) == 4 and w[3].startswith("sha256:"):
                tokens[w[3][7:]] = (w[1], w[2])
            elif w[0] == "cert" and len(w) == 3:
                certs[w[1]] = w[2]
    return tokens, certs


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    cfg = None

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, obj, ctype="application/json", extra=None):
        body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def subject_role(self):
        """(subject, role), or (None, status) when refused."""
        cfg = self.cfg
        auth = self.headers.get("Authorization")
        if auth is not None:
            if not auth.startswith("Bearer "):
                return None, 401
            h = hashlib.sha256(auth[7:].encode()).hexdigest()
            if h not in cfg["tokens"]:
                return None, 401
            sub, role = cfg["tokens"][h]
            return "token:" + sub, role
        if cfg["mode"] == "unix":
            return "uid:0", "admin"
        peer = self.connection.getpeercert()
        if peer:
            cn = dict(x[0] for x in peer["subject"]).get("commonName")
            if cn in cfg["certs"]:
                return "cert:" + cn, cfg["certs"][cn]
        return None, 401

    def handle_any(self, method):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        query = dict(urllib.parse.parse_qsl(url.query))
        key = (method, path)
        subject, role = (None, None)
        if key not in OPEN:
            subject, role = self.subject_role()
        with open(self.cfg["log"], "a") as f:
            f.write(json.dumps({
                "method": method, "path": self.path,
                "auth": self.headers.get("Authorization"),
                "body": raw.decode("utf-8", "replace"),
                "subject": subject}) + "\n")
        if key not in OPEN:
            if subject is None:
                return self.answer(401, {"error": "unauthorized"}, extra={
                    "WWW-Authenticate": 'Bearer realm="ovha"'})
            need = 1 if method == "GET" else 2 if key in OPERATOR else 3
            if RANK.get(role, 0) < need:
                return self.answer(403, {"error": "role too low"})
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return self.answer(400, {"error": "bad JSON"})
        return self.route(method, path, query, body)

    def route(self, method, path, q, b):
        st = self.cfg["state"]
        if (method, path) == ("GET", "/healthz"):
            return self.answer(200, {"status": "ok", "pid": 1})
        if (method, path) == ("GET", "/readyz"):
            if os.path.exists(os.path.join(st, "notready")):
                return self.answer(503, {"ready": False, "reasons": [
                    "raft: no leader", "openvpn: \u001b]0;x"]},
                    extra={"Retry-After": "1"})
            return self.answer(200, {"ready": True, "reasons": []})
        if (method, path) == ("GET", "/metrics"):
            return self.answer(200, b"# TYPE ovha_up gauge\novha_up 1\n",
                               "text/plain; version=0.0.4")
        if (method, path) == ("GET", "/v1/sessions"):
            return self.answer(200, SESSIONS)
        if (method, path) == ("GET", "/v1/cluster/sessions"):
            return self.answer(200, CSESSIONS)
        if (method, path) == ("POST", "/v1/sessions/kill"):
            return self.answer(200, {"killed": 1 if b["cn"] == "alice" else 0})
        if (method, path) == ("POST", "/v1/cluster/join"):
            if b["id"] == 7:
                return self.answer(503, {
                    "error": "not the leader", "leader_id": 2,
                    "leader_address": "198.18.0.2:7000"},
                    extra={"Retry-After": "1"})
            return self.answer(200, {})
        if (method, path) == ("GET", "/v1/pools"):
            return self.answer(200, POOLS)
        if (method, path) == ("PUT", "/v1/pools"):
            if b.get("name") == "noleader":
                return self.answer(503, {"error": "no raft leader; retry"},
                                   extra={"Retry-After": "2"})
            if b.get("cidr") == "bad":
                return self.answer(400, {"error": "body must be ..."})
            return self.answer(200, {
                "name": b["name"], "cidr": b["cidr"],
                "lease_ttl_ms": b.get("lease_ttl_ms", 3600000)})
        if (method, path) in (("POST", "/v1/leases/reserve"),
                              ("POST", "/v1/leases/release")):
            if b["ip"] == "100.64.9.9":
                return self.answer(409, {"error": "OUT_OF_POOL: no pool"})
            return self.answer(200, {"cn": b["cn"], "ip": b["ip"]})
        if (method, path) == ("GET", "/v1/subnets"):
            return self.answer(200, SUBNETS)
        if (method, path) == ("POST", "/v1/subnets/release"):
            if b["cidr"] != "100.64.128.0/25":
                return self.answer(404, {"error": "no such subnet"})
            return self.answer(200, {"cidr": b["cidr"]})
        if (method, path) == ("GET", "/v1/audit"):
            return self.answer(200, AUDIT)
        if (method, path) == ("GET", "/v1/audit/verify"):
            if os.path.exists(os.path.join(st, "broken")):
                return self.answer(409, {
                    "ok": False, "bad_seq": 5, "base_seq": 0, "head_seq": 10,
                    "error": "audit record 5 is missing or does not verify"})
            return self.answer(200, {"ok": True, "base_seq": 0,
                                     "head_seq": 10})
        if (method, path) == ("GET", "/v1/audit/head"):
            return self.answer(200, {"seq": 10, "hash": "ab" * 32,
                                     "verified": True})
        if method == "POST" and path.startswith("/v1/gateways/"):
            verb = path.rsplit("/", 1)[1]
            state = {"drain": "draining", "activate": "active",
                     "standby": "standby"}.get(verb)
            if state is None:
                return self.answer(404, {"error": "not found"})
            return self.answer(200, {"gateway": b["gateway"], "state": state})
        return self.answer(404, {"error": "not found"})

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_DELETE(self):
        self.handle_any("DELETE")


class UnixServer(socketserver.UnixStreamServer):
    def get_request(self):
        sock, _ = super().get_request()
        return sock, ("unix", 0)


def main():
    mode = sys.argv[1]
    if mode == "unix":
        path, tokens, log, state = sys.argv[2:6]
    else:
        addr, port, tokens, log, state, cert, key, ca = sys.argv[2:10]
    toks, certs = load_tokens(tokens)
    Handler.cfg = {"mode": mode, "tokens": toks, "certs": certs, "log": log,
                   "state": state}
    if mode == "unix":
        srv = UnixServer(path, Handler)
    else:
        srv = http.server.HTTPServer((addr, int(port)), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        ctx.load_verify_locations(ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
