#!/usr/bin/python3
"""Contract checks for docs/openapi.yaml, the ovhad admin API.

    contract.py routes DOC SRCDIR   every route node/*.c (api*.c, metrics.c)
                                    register is documented, every documented
                                    operation is registered, and its
                                    x-ovha-role is node/auth.c's
    contract.py selftest DOC        the checker itself rejects a bad body,
                                    an undocumented status, a missing
                                    header and an operation never called
    contract.py live DOC CONF.json  calls every documented operation on a
                                    live cluster (see contract.sh)
    contract.py noleader DOC CONF   the writes' 503 when gw1 is alone

Output: one line per check, "ok - NAME" or "not ok - NAME # WHY", and
"# ..." diagnostics; the exit status is 1 when a check failed. contract.sh
turns the lines into its TAP report.

Debian's python3-yaml and python3-jsonschema (Draft 2020-12, the dialect
of OpenAPI 3.1 schemas); run with /usr/bin/python3.
"""
import glob
import http.client
import json
import os
import re
import socket
import ssl
import sys
import time
import urllib.parse

import yaml
from jsonschema import Draft202012Validator

METHODS = ("get", "put", "post", "delete", "patch", "head")


# ---- the document ---------------------------------------------------------


class Doc:
    """The OpenAPI document: operations by (METHOD, path), and a checker
    for one answer against the operation's documented responses."""

    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            self.raw = yaml.safe_load(f)
        self.ops = {}
        for p, item in self.raw["paths"].items():
            for m, op in item.items():
                if m in METHODS:
                    self.ops[(m.upper(), p)] = op

    def deref(self, obj):
        """Follows a local $ref ("#/components/...") to its target."""
        seen = 0
        while isinstance(obj, dict) and "$ref" in obj:
            seen += 1
            if seen > 16:
                raise ValueError("$ref loop")
            ref = obj["$ref"]
            if not ref.startswith("#/"):
                raise ValueError("only local $ref: " + ref)
            obj = self.raw
            for part in ref[2:].split("/"):
                obj = obj[part.replace("~1", "/").replace("~0", "~")]
        return obj

    def schema_errors(self, schema, value):
        """JSON Schema 2020-12 errors of value; $refs resolve in the
        document because its components ride along in the root."""
        root = dict(schema)
        root["components"] = self.raw["components"]
        v = Draft202012Validator(root)
        return ["%s: %s" % ("/".join(str(p) for p in e.absolute_path) or "$",
                            e.message) for e in v.iter_errors(value)]

    def check(self, method, path, status, headers, body):
        """Problems of one answer (a list of strings, empty if it
        conforms). headers: dict with lower-case names; body: bytes."""
        op = self.ops.get((method, path))
        if op is None:
            return ["undocumented operation %s %s" % (method, path)]
        resp = op["responses"].get(str(status))
        if resp is None:
            return ["undocumented status %d (documented: %s)" %
                    (status, ", ".join(sorted(op["responses"])))]
        resp = self.deref(resp)
        problems = []
        for name, h in resp.get("headers", {}).items():
            h = self.deref(h)
            got = headers.get(name.lower())
            if got is None:
                if h.get("required"):
                    problems.append("header %s missing" % name)
                continue
            hs = h.get("schema", {})
            val = int(got) if hs.get("type") == "integer" and \
                got.strip().isdigit() else got
            for e in self.schema_errors(hs, val):
                problems.append("header %s: %s" % (name, e))
        content = resp.get("content")
        if not content:
            return problems
        ctype = headers.get("content-type", "").split(";")[0].strip()
        if ctype not in content:
            problems.append("content-type %r, documented %s" %
                            (ctype, ", ".join(content)))
            return problems
        schema = content[ctype].get("schema", {})
        if ctype == "application/json":
            try:
                value = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as e:
                return problems + ["body is not JSON: %s" % e]
        else:
            value = body.decode("utf-8", "replace")
        for e in self.schema_errors(schema, value):
            problems.append("body " + e)
        return problems


# ---- routes in the code ---------------------------------------------------

# node_http_route(h, "GET", "/path", ...) and table rows { "GET", "/path", fn }
ROUTE_CALL = re.compile(r'node_http_route\(\s*[^,()]+,\s*"([A-Z]+)"\s*,'
                        r'\s*"([^"]*)"')
ROUTE_ROW = re.compile(r'\{\s*"(GET|PUT|POST|DELETE|PATCH|HEAD)"\s*,'
                       r'\s*"(/[^"]*)"')
ROUTE_DESIG = re.compile(r'\.method\s*=\s*"([A-Z]+)"\s*,\s*\.path\s*=\s*'
                         r'"(/[^"]*)"')


def code_routes(srcdir):
    """{(METHOD, path): file} from every node/*.c that calls
    node_http_route() (api*.c and metrics.c today; http.c, which defines
    it, aside), and the files that call it but yielded no route."""
    routes, unread = {}, []
    for fn in sorted(glob.glob(os.path.join(srcdir, "node", "*.c"))):
        if os.path.basename(fn) == "http.c":
            continue
        with open(fn, encoding="utf-8") as f:
            text = re.sub(r"/\*.*?\*/", " ", f.read(), flags=re.S)
        if "node_http_route" not in text:
            continue
        found = set()
        for rx in (ROUTE_CALL, ROUTE_ROW, ROUTE_DESIG):
            found.update(rx.findall(text))
        if not found:
            unread.append(os.path.relpath(fn, srcdir))
        for m, p in found:
            routes[(m, p)] = os.path.relpath(fn, srcdir)
    return routes, unread


# node/auth.c's role table: { "POST", "/v1/leases/*", NODE_ROLE_OPERATOR }
ROLE_ROW = re.compile(r'\{\s*"([A-Z]+)"\s*,\s*"(/[^"]*)"\s*,'
                      r'\s*NODE_ROLE_([A-Z]+)\s*\}')


def code_role(table, method, path):
    """The role node/auth.c requires: the first table row that matches
    (a path ending in '*' is a prefix), else viewer for GET/HEAD and admin
    for anything else."""
    for m, p, role in table:
        if m == method and (path == p or
                            (p.endswith("*") and path.startswith(p[:-1]))):
            return role.lower()
    return "viewer" if method in ("GET", "HEAD") else "admin"


def role_table(srcdir):
    fn = os.path.join(srcdir, "node", "auth.c")
    if not os.path.exists(fn):
        return None
    with open(fn, encoding="utf-8") as f:
        return ROLE_ROW.findall(f.read())


def cmd_routes(doc, srcdir):
    routes, unread = code_routes(srcdir)
    documented = set(doc.ops)
    out = Out()
    out.check("routes were found in node/*.c",
              len(routes) > 0, "no route found under " + srcdir)
    out.check("every file that registers routes was read",
              not unread, "no route recognised in " + ", ".join(unread))
    undoc = sorted(set(routes) - documented)
    out.check("every registered route is documented (%d routes)" % len(routes),
              not undoc, "; ".join("%s %s (%s)" % (m, p, routes[(m, p)])
                                   for m, p in undoc))
    unreg = sorted(documented - set(routes))
    out.check("every documented operation is registered (%d operations)" %
              len(documented), not unreg,
              "; ".join("%s %s" % k for k in unreg))
    table = role_table(srcdir)
    if out.check("node/auth.c has a role table", table,
                 "no { \"METHOD\", \"/path\", NODE_ROLE_X } rows"):
        wrong = ["%s %s: documented %s, node/auth.c %s" %
                 (m, p, op.get("x-ovha-role"), code_role(table, m, p))
                 for (m, p), op in sorted(doc.ops.items())
                 if op.get("x-ovha-role") != code_role(table, m, p)]
        out.check("every x-ovha-role is the role node/auth.c requires",
                  not wrong, "; ".join(wrong))
    return out.finish()


# ---- output ---------------------------------------------------------------


class Out:
    def __init__(self):
        self.failed = 0
        self.passed = 0

    def ok(self, name):
        self.passed += 1
        print("ok - %s" % name, flush=True)

    def not_ok(self, name, why):
        self.failed += 1
        why = " ".join(str(why).split())[:600]
        print("not ok - %s # %s" % (name, why), flush=True)

    def check(self, name, cond, why=""):
        if cond:
            self.ok(name)
        else:
            self.not_ok(name, why or "failed")
        return bool(cond)

    def diag(self, text):
        print("# %s" % text, flush=True)

    def finish(self):
        return 0 if self.failed == 0 and self.passed > 0 else 1


# ---- the checker's own test -------------------------------------------------


def cmd_selftest(doc):
    out = Out()
    js = {"content-type": "application/json"}
    good = json.dumps({"error": "standalone node"}).encode()
    out.check("selftest: a conforming 409 passes",
              doc.check("GET", "/v1/cluster", 409, js, good) == [],
              doc.check("GET", "/v1/cluster", 409, js, good))
    out.check("selftest: a body of the wrong type fails",
              doc.check("GET", "/v1/cluster", 409, js, b'{"error": 5}'))
    out.check("selftest: an undocumented member fails",
              doc.check("GET", "/v1/cluster", 409, js,
                        b'{"error": "x", "extra": 1}'))
    out.check("selftest: a missing required member fails",
              doc.check("GET", "/healthz", 200, js, b'{"status": "ok"}'))
    out.check("selftest: an undocumented status fails",
              doc.check("GET", "/v1/cluster", 418, js, good))
    out.check("selftest: an undocumented path fails",
              doc.check("GET", "/v1/nope", 200, js, good))
    out.check("selftest: a body that is not JSON fails",
              doc.check("GET", "/v1/cluster", 409, js, b"oops"))
    out.check("selftest: a 503 without Retry-After fails",
              doc.check("POST", "/v1/gateways/drain", 503, js, good))
    out.check("selftest: a 503 with Retry-After: 1 passes",
              doc.check("POST", "/v1/gateways/drain", 503,
                        dict(js, **{"retry-after": "1"}), good) == [])
    out.check("selftest: a 401 without WWW-Authenticate fails",
              doc.check("GET", "/v1/cluster", 401, js, good))
    out.check("selftest: the wrong content type fails",
              doc.check("GET", "/v1/cluster", 409,
                        {"content-type": "text/plain"}, good))
    cov = Coverage(doc)
    for k in list(doc.ops)[1:]:
        cov.record(k, 200)
    out.check("selftest: an operation never called fails the coverage",
              cov.missing() == [list(doc.ops)[0]], cov.missing())
    out.check("every operation has x-ovha-role (%d operations)" % len(doc.ops),
              all(op.get("x-ovha-role") in ("open", "viewer", "operator",
                                            "admin")
                  for op in doc.ops.values()))
    return out.finish()


class Coverage:
    def __init__(self, doc):
        self.doc = doc
        self.statuses = {k: set() for k in doc.ops}

    def record(self, key, status):
        if key in self.statuses:
            self.statuses[key].add(status)

    def missing(self):
        return [k for k, v in self.statuses.items() if not v]

    def without_success(self):
        return [k for k, v in self.statuses.items()
                if v and not any(200 <= s < 300 for s in v)]


# ---- HTTP -----------------------------------------------------------------


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class Answer:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except ValueError:
            return None


# ---- the live test ----------------------------------------------------------


class Live:
    """Calls the API of the nodes named in the config, checks every answer
    against the document and records which operations were called."""

    def __init__(self, doc, conf):
        self.doc = doc
        self.conf = conf
        self.out = Out()
        self.cov = Coverage(doc)
        self.calls = 0
        self.conform_fail = 0
        self.writes = []  # (actor, "METHOD PATH", status) that passed auth

    # A token by role name, "bad" (well-formed, unknown) or None.
    def token(self, role):
        if role is None:
            return None
        if role == "bad":
            return "ovha_" + "0" * 64
        return self.conf["tokens"][role]

    def connection(self, node, via, cert):
        n = self.conf["nodes"][str(node)]
        if via == "unix":
            return UnixConnection(n["socket"], 10)
        ctx = ssl.create_default_context(cafile=self.conf["api_ca"])
        if cert is not None:
            c = self.conf["certs"][cert]
            ctx.load_cert_chain(c["cert"], c["key"])
        host, port = n["tcp"].rsplit(":", 1)
        return http.client.HTTPSConnection(host, int(port), timeout=10,
                                           context=ctx)

    def raw(self, node, method, path, body=None, role=None, via="unix",
            cert=None, query=None, raw_body=None):
        """One request; returns an Answer (status 0 when it failed)."""
        headers = {}
        tok = self.token(role)
        if tok is not None:
            headers["Authorization"] = "Bearer " + tok
        data = raw_body
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        url = path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        conn = self.connection(node, via, cert)
        try:
            conn.request(method, url, body=data, headers=headers)
            r = conn.getresponse()
            ans = Answer(r.status, {k.lower(): v for k, v in r.getheaders()},
                         r.read())
        except (OSError, http.client.HTTPException) as e:
            ans = Answer(0, {}, str(e).encode())
        finally:
            conn.close()
        return ans

    def call(self, node, method, path, body=None, role=None, via="unix",
             cert=None, query=None, want=None, name=None, raw_body=None):
        """A request checked against the document; with want (a status or
        a tuple of them) also a named check of the status."""
        a = self.raw(node, method, path, body, role, via, cert, query,
                     raw_body)
        self.calls += 1
        who = cert and ("cert " + cert) or role or "no credentials"
        label = "%s %s%s as %s via %s gw%s" % (
            method, path, query and "?" + urllib.parse.urlencode(query) or "",
            who, via, node)
        if a.status == 0:
            self.out.not_ok(label, "request failed: %s" % a.body.decode())
            return a
        self.cov.record((method, path), a.status)
        if self.doc.ops.get((method, path), {}).get("x-ovha-role") in (
                "operator", "admin") and a.status not in (401, 403):
            if cert:
                actor = "cert:" + self.conf["certs"][cert]["cn"]
            elif role is None and via == "unix":
                actor = "uid:0"  # the test runs as root
            else:
                actor = "token:" + self.conf["subjects"].get(role, "?")
            self.writes.append((actor, "%s %s" % (method, path),
                                str(a.status)))
        problems = self.doc.check(method, path, a.status, a.headers, a.body)
        if problems:
            self.conform_fail += 1
            self.out.not_ok("%s -> %d conforms to the document" %
                            (label, a.status), "; ".join(problems))
        if want is not None:
            wants = want if isinstance(want, tuple) else (want,)
            self.out.check("%s%s -> %s" % (name and name + ": " or "", label,
                                           "|".join(map(str, wants))),
                           a.status in wants, "got %d %s" %
                           (a.status, a.body[:300].decode("utf-8", "replace")))
        return a

    def get(self, node, path, role="viewer", **kw):
        return self.call(node, "GET", path, role=role, **kw)

    def eventually(self, fn, timeout=15):
        end = time.monotonic() + timeout
        while True:
            v = fn()
            if v or time.monotonic() >= end:
                return v
            time.sleep(0.3)


# The least role of each write and the roles below it.
LOWER = {"operator": ["viewer"], "admin": ["viewer", "operator"]}


def auth_matrix(t, node, method, path, body, probe, label):
    """No credentials (TLS) -> 401, a bad token -> 401, each role below
    the operation's -> 403, and the probed state unchanged."""
    role = t.doc.ops[(method, path)]["x-ovha-role"]
    before = probe()
    t.call(node, method, path, body=body, via="tcp", want=401,
           name="auth " + label + ": no credentials")
    t.call(node, method, path, body=body, role="bad", want=401,
           name="auth " + label + ": unknown token")
    for low in LOWER[role]:
        t.call(node, method, path, body=body, role=low, want=403,
               name="auth " + label + ": role " + low)
    after = probe()
    t.out.check("auth %s: the state is unchanged after the refused calls" %
                label, before == after,
                "before %s after %s" % (before, after))


def probe_get(t, node, path, key=None, query=None):
    """A probe: the JSON (or part of it) a GET answers, with its status."""
    def probe():
        a = t.raw(node, "GET", path, role="admin", query=query)
        j = a.json()
        if key is not None and isinstance(j, dict):
            j = key(j)
        return (a.status, j)
    return probe


def members(j):
    return (j.get("leader_id"),
            sorted((s["id"], s["role"]) for s in j.get("servers", [])))


def gw_states(j):
    return sorted((g["id"], g["state"]) for g in j.get("gateways", []))


def session_ids(j):
    return sorted(s["id"] for s in j.get("sessions", []))


def lease_rows(j):
    return sorted((l["ip"], l["cn"], l["reserved"]) for l in j.get("leases",
                                                                    []))


def reads(t):
    """Every GET, as viewer (the least role), and the open ones without
    credentials over both listeners."""
    c = t.conf
    t.get(1, "/healthz", role=None, want=200)
    t.get(2, "/healthz", role=None, via="tcp", want=200,
          name="open over TLS")
    t.get(1, "/readyz", role=None, want=(200, 503))
    t.get(3, "/readyz", role=None, via="tcp", want=(200, 503))
    m = t.get(1, "/metrics", want=200)
    t.out.check("GET /metrics is Prometheus text with # TYPE lines",
                b"# TYPE " in m.body, m.body[:200])
    a = t.get(1, "/v1/sessions", want=200)
    local = [s["cn"] for s in (a.json() or {}).get("sessions", [])]
    t.out.check("GET /v1/sessions on gw1 lists alice", "alice" in local, local)
    a = t.get(1, "/v1/sessions", query={"cn": "alice"}, want=200)
    t.out.check("GET /v1/sessions?cn=alice lists only alice",
                {s["cn"] for s in (a.json() or {}).get("sessions", [])} ==
                {"alice"}, a.body[:300])
    t.get(1, "/v1/upstream", want=409, name="no upstream configured")
    for n in (1, 2, 3):
        t.get(n, "/v1/cluster", want=200)
    a = t.get(2, "/v1/cluster/sessions", want=200)
    ss = (a.json() or {}).get("sessions", [])
    t.out.check("GET /v1/cluster/sessions lists alice, bob and site",
                {"alice", "bob", "site"} <= {s["cn"] for s in ss},
                [s["cn"] for s in ss])
    for q, field, val in (({"cn": "bob"}, "cn", "bob"),
                          ({"gateway": "gw2"}, "gateway", "gw2"),
                          ({"state": "established"}, "state", "established")):
        a = t.get(1, "/v1/cluster/sessions", query=q, want=200)
        got = (a.json() or {}).get("sessions", [])
        t.out.check("GET /v1/cluster/sessions?%s=%s filters" % (field, val),
                    got and all(s[field] == val for s in got),
                    [(s["cn"], s["gateway"], s["state"]) for s in got])
    t.get(1, "/v1/cluster/sessions", query={"state": "bogus"}, want=400)
    t.get(1, "/v1/cluster/gateways", want=200)
    a = t.get(3, "/v1/leases", want=200)
    t.out.check("GET /v1/leases has a lease of alice",
                any(l["cn"] == "alice" for l in
                    (a.json() or {}).get("leases", [])), a.body[:300])
    t.get(1, "/v1/leases", query={"cn": "alice"}, want=200)
    t.get(1, "/v1/macs", want=200)
    t.get(1, "/v1/audit/head", want=200)
    t.get(1, "/v1/audit/verify", want=200)
    a = t.get(1, "/v1/audit", want=200)
    recs = (a.json() or {}).get("records", [])
    t.out.check("GET /v1/audit: at most 100 records by default, in order",
                len(recs) <= 100 and [r["seq"] for r in recs] ==
                sorted(r["seq"] for r in recs), len(recs))
    a = t.get(1, "/v1/audit", query={"after": 1, "limit": 2}, want=200)
    recs = (a.json() or {}).get("records", [])
    t.out.check("GET /v1/audit?after=1&limit=2: two records after seq 1",
                len(recs) <= 2 and all(r["seq"] > 1 for r in recs),
                [r["seq"] for r in recs])
    t.get(1, "/v1/audit", query={"limit": "nope"}, want=400)
    t.get(1, "/v1/usage", query={"cn": "alice"}, want=200)
    t.get(1, "/v1/usage", want=400, name="cn missing")
    t.get(1, "/v1/failover", want=200)
    t.get(1, "/v1/policy/firewall", want=404, name="no policy yet")
    t.get(1, "/v1/policy/firewall/compiled", want=200)
    t.get(1, "/v1/pools", want=200)
    a = t.get(1, "/v1/subnets", want=200)
    t.out.check("GET /v1/subnets has the site's subnet",
                any(s["cidr"] == c["site_net"] and s["owner_cn"] == "site"
                    for s in (a.json() or {}).get("subnets", [])),
                a.body[:300])
    a = t.get(2, "/v1/subnets", query={"cn": "bob"}, want=200)
    t.out.check("GET /v1/subnets?cn=bob: bob has none",
                (a.json() or {}).get("subnets") == [], a.body[:200])
    ex = {"src": c["ips"]["alice"], "dst": c["ips"]["bob"], "proto": "tcp",
          "port": 22}
    a = t.call(1, "POST", "/v1/policy/firewall/explain", body=ex,
               role="viewer", want=200, name="explain is a read")
    t.call(1, "POST", "/v1/policy/firewall/explain", body={"src": "x"},
           role="viewer", want=400)
    t.call(1, "POST", "/v1/policy/firewall/explain", body=ex, via="tcp",
           want=401, name="explain without credentials")


POLICY = {"version": 1, "default": "accept", "isolation": False,
          "groups": ["staff"],
          "rules": [{"name": "no-ssh", "from": "staff",
                     "to": {"group": "staff"}, "proto": "tcp",
                     "ports": [22], "action": "drop"}]}


def writes_policy(t):
    probe = probe_get(t, 1, "/v1/policy/firewall")
    auth_matrix(t, 1, "PUT", "/v1/policy/firewall", POLICY, probe,
                "PUT /v1/policy/firewall")
    t.call(1, "PUT", "/v1/policy/firewall", body=POLICY, role="admin",
           want=200)
    a = t.get(1, "/v1/policy/firewall", want=200)
    t.out.check("GET /v1/policy/firewall gives back the document",
                (a.json() or {}).get("policy") == POLICY, a.body[:300])
    c = t.conf
    ex = {"src": c["ips"]["alice"], "dst": c["ips"]["bob"], "proto": "tcp",
          "port": 22}
    a = t.call(1, "POST", "/v1/policy/firewall/explain", body=ex,
               role="viewer", want=200)
    t.out.check("explain names the rule", (a.json() or {}).get("reason") ==
                "rule no-ssh", a.body[:200])
    bad = dict(POLICY, rules=[{"name": "x", "from": "nope", "to": "any",
                               "action": "accept"}])
    t.call(1, "PUT", "/v1/policy/firewall", body=bad, role="admin", want=400,
           name="unknown group")
    auth_matrix(t, 1, "DELETE", "/v1/policy/firewall", None, probe,
                "DELETE /v1/policy/firewall")
    t.call(1, "DELETE", "/v1/policy/firewall", role="admin", want=200)
    t.call(1, "DELETE", "/v1/policy/firewall", role="admin", want=404,
           name="nothing left to delete")


def writes_pools(t):
    c = t.conf
    pool = {"name": "extra", "cidr": c["extra_pool"], "lease_ttl_ms": 60000}
    probe = probe_get(t, 1, "/v1/pools")
    auth_matrix(t, 1, "PUT", "/v1/pools", pool, probe, "PUT /v1/pools")
    a = t.call(1, "PUT", "/v1/pools", body=pool, role="admin", want=200)
    t.out.check("PUT /v1/pools answers the pool", a.json() == pool,
                a.body[:200])
    a = t.get(1, "/v1/pools", want=200)
    t.out.check("GET /v1/pools lists the new pool",
                any({k: p.get(k) for k in pool} == pool
                    for p in (a.json() or {}).get("pools", [])),
                a.body[:300])
    t.call(1, "PUT", "/v1/pools", body={"name": "extra"}, role="admin",
           want=400, name="cidr missing")


def writes_leases(t):
    c = t.conf
    res = {"cn": "dave", "ip": c["reserve_ip"]}
    probe = probe_get(t, 1, "/v1/leases", key=lease_rows)
    auth_matrix(t, 1, "POST", "/v1/leases/reserve", res, probe,
                "POST /v1/leases/reserve")
    a = t.call(1, "POST", "/v1/leases/reserve", body=res, role="operator",
               want=200)
    t.out.check("reserve answers {cn, ip}", a.json() == res, a.body[:200])
    a = t.get(1, "/v1/leases", query={"cn": "dave"}, want=200)
    t.out.check("the reservation is a reserved lease of dave",
                any(l["ip"] == res["ip"] and l["reserved"]
                    for l in (a.json() or {}).get("leases", [])),
                a.body[:300])
    t.call(1, "POST", "/v1/leases/reserve",
           body={"cn": "dave", "ip": c["ips"]["alice"]}, role="operator",
           want=409, name="alice's address")
    t.call(1, "POST", "/v1/leases/reserve", body={"cn": "dave"},
           role="operator", want=400, name="ip missing")
    auth_matrix(t, 1, "POST", "/v1/leases/release", res, probe,
                "POST /v1/leases/release")
    t.call(1, "POST", "/v1/leases/release", body=res, role="operator",
           want=200)
    a = t.get(1, "/v1/leases", query={"cn": "dave"}, want=200)
    t.out.check("the released lease is gone",
                not any(l["ip"] == res["ip"]
                        for l in (a.json() or {}).get("leases", [])),
                a.body[:300])


def writes_subnets(t):
    c = t.conf
    probe = probe_get(t, 1, "/v1/subnets")
    body = {"cidr": c["site_net"]}
    auth_matrix(t, 1, "POST", "/v1/subnets/release", body, probe,
                "POST /v1/subnets/release")
    t.call(1, "POST", "/v1/subnets/release", body={"cidr": c["free_net"]},
           role="admin", want=(404, 409), name="a subnet nobody owns")
    t.call(1, "POST", "/v1/subnets/release", body={}, role="admin", want=400)
    t.call(1, "POST", "/v1/subnets/release", body=body, role="admin",
           want=(200, 409), name="the site's subnet")


def writes_gateways(t):
    probe = probe_get(t, 1, "/v1/cluster/gateways", key=gw_states)
    gw = {"gateway": "gw3"}
    for op in ("standby", "activate", "drain"):
        auth_matrix(t, 1, "POST", "/v1/gateways/" + op, gw, probe,
                    "POST /v1/gateways/" + op)
    # Over TLS with the operator's client certificate.
    a = t.call(2, "POST", "/v1/gateways/standby", body=gw, via="tcp",
               cert="operator", want=200, name="mutual TLS operator")
    t.out.check("standby answers gw3 standby", a.json() ==
                {"gateway": "gw3", "state": "standby"}, a.body[:200])
    t.call(1, "POST", "/v1/gateways/activate", body=gw, role="operator",
           want=200)
    t.call(1, "POST", "/v1/gateways/drain", body=gw, role="operator",
           want=200)
    t.call(1, "POST", "/v1/gateways/activate", body=gw, role="operator",
           want=200)
    t.call(1, "POST", "/v1/gateways/drain", body={"gateway": "gw9"},
           role="operator", want=404, name="unknown gateway")
    t.call(1, "POST", "/v1/gateways/standby", body={"gw": "gw3"},
           role="operator", want=400, name="bad body")
    a = t.get(1, "/v1/cluster/gateways", want=200)
    t.out.check("gw3 is active again", ["gw3", "active"] in
                [[g["id"], g["state"]] for g in
                 (a.json() or {}).get("gateways", [])], a.body[:300])


def writes_sessions(t):
    probe = probe_get(t, 1, "/v1/cluster/sessions", key=session_ids,
                      query={"cn": "carol"})
    body = {"cn": "carol"}
    auth_matrix(t, 1, "POST", "/v1/sessions/kill", body, probe,
                "POST /v1/sessions/kill")
    t.call(1, "POST", "/v1/sessions/kill", body={"cn": "nobody"},
           role="operator", want=404)
    t.call(1, "POST", "/v1/sessions/kill", body={"message": "HALT"},
           role="operator", want=400)
    a = t.call(1, "POST", "/v1/sessions/kill", body=body, role="operator",
               want=200, name="carol, on this gateway")
    j = a.json() or {}
    t.out.check("kill answers killed >= 1, nothing elsewhere",
                j.get("killed", 0) >= 1 and j.get("ended_elsewhere") == 0,
                a.body[:200])
    a = t.call(1, "POST", "/v1/sessions/kill", body={"cn": "bob"},
               role="operator", want=200, name="bob, on gw2")
    j = a.json() or {}
    t.out.check("kill of bob from gw1 ends his session on gw2",
                j.get("killed") == 0 and j.get("ended_elsewhere", 0) >= 1 and
                j.get("gateways") == ["gw2"] * j.get("ended_elsewhere", 0),
                a.body[:200])


def leader_of(t):
    a = t.raw(1, "GET", "/v1/cluster", role="admin")
    return (a.json() or {}).get("leader_id", 0)


def writes_cluster(t):
    c = t.conf
    lead = t.eventually(lambda: leader_of(t))
    follower = 2 if lead != 2 else 3
    probe = probe_get(t, lead, "/v1/cluster", key=members)
    spare = {"id": 4, "address": c["spare_address"], "role": "spare"}
    for op, body in (("join", spare), ("assign", {"id": 4, "role": "standby"}),
                     ("remove", {"id": 4}), ("transfer", {})):
        auth_matrix(t, lead, "POST", "/v1/cluster/" + op, body, probe,
                    "POST /v1/cluster/" + op)
    t.call(lead, "POST", "/v1/cluster/join", body=dict(spare, address="x"),
           role="admin", want=400)
    t.call(follower, "POST", "/v1/cluster/join", body=spare, role="admin",
           want=503, name="a follower names the leader")
    a = t.call(lead, "POST", "/v1/cluster/join", body=spare, role="admin",
               want=200)
    t.out.check("join answers joined 4", a.json() == {"joined": 4},
                a.body[:200])
    t.call(lead, "POST", "/v1/cluster/assign",
           body={"id": 4, "role": "standby"}, role="admin", want=200)
    t.call(lead, "POST", "/v1/cluster/assign",
           body={"id": 4, "role": "boss"}, role="admin", want=400)
    t.call(lead, "POST", "/v1/cluster/remove", body={"id": 4}, role="admin",
           want=200)
    t.call(lead, "POST", "/v1/cluster/remove", body={"id": 99},
           role="admin", want=409, name="not a member")
    # Over TLS: the operator's certificate is below admin.
    t.call(lead, "POST", "/v1/cluster/remove", body={"id": 4}, via="tcp",
           cert="operator", want=403, name="mutual TLS operator")
    a = t.call(lead, "POST", "/v1/cluster/transfer", role="admin", want=200,
               raw_body=b"")
    new = (a.json() or {}).get("leader_id")
    t.out.check("transfer moved leadership away from %s" % lead,
                new not in (None, 0, lead), a.body[:200])


def viewer_ops_need_credentials(t):
    """Every viewer operation: nothing over TLS -> 401; and the local
    root on the unix socket, without a token, is admin (uid:0)."""
    ex = {"src": t.conf["ips"]["alice"], "dst": t.conf["ips"]["bob"],
          "proto": "any"}
    for (m, p), op in sorted(t.doc.ops.items()):
        if op["x-ovha-role"] != "viewer":
            continue
        body = ex if m == "POST" else None
        t.call(2, m, p, body=body, via="tcp", want=401,
               name="viewer operation without credentials")
    t.get(3, "/v1/leases", role=None, want=200,
          name="root on the unix socket without a token")
    t.call(1, "POST", "/v1/leases/release", role=None,
           body={"cn": "nobody", "ip": t.conf["reserve_ip"]}, want=404,
           name="root on the unix socket may write (admin)")


def tls_checks(t):
    t.get(1, "/v1/cluster", role=None, via="tcp", want=401,
          name="TLS without credentials")
    t.get(1, "/v1/cluster", role="bad", via="tcp", want=401,
          name="TLS with an unknown token")
    t.get(1, "/v1/cluster", role="viewer", via="tcp", want=200,
          name="TLS with a viewer token")
    t.get(2, "/v1/leases", role=None, via="tcp", cert="operator", want=200,
          name="TLS with the operator's certificate")
    t.get(3, "/metrics", role=None, via="tcp", cert="stranger", want=401,
          name="TLS with a certificate that has no cert line")


def unrecorded(writes, recs):
    """The writes (actor, "METHOD PATH", status) without a record."""
    left = list(writes)
    for r in recs:
        key = (r["actor"], r["subject"], r["detail"])
        if key in left:
            left.remove(key)
    return left


def audit_checks(t, after):
    """Every write that passed auth is in the chain (kind "op:api", the
    caller as actor, "METHOD PATH" as subject, the status as detail); the
    refused ones are not. The records are proposed after the answers, so
    this polls a little."""
    viewer = "token:" + t.conf["subjects"]["viewer"]

    def records():
        a = t.raw(1, "GET", "/v1/audit", role="viewer",
                  query={"after": after, "limit": 1000})
        return (a.json() or {}).get("records", [])

    def api_records():
        return [r for r in records() if r["kind"] == "op:api"]

    t.eventually(lambda: not unrecorded(t.writes, api_records()), timeout=8)
    every = records()
    recs = [r for r in every if r["kind"] == "op:api"]
    own = {(r["kind"], r["actor"]) for r in every if r["kind"] != "op:api"}
    want = {"token:" + t.conf["subjects"][x] for x in ("admin", "operator")}
    t.out.check("audit: the replicated writes' own records name the caller "
                "(admin and operator tokens)",
                want <= {a for _, a in own}, sorted(own)[:20])
    t.get(1, "/v1/audit", query={"after": after, "limit": 1000}, want=200)
    t.out.diag("%d api audit records since seq %d, %d writes passed auth" %
               (len(recs), after, len(t.writes)))
    # The transfer is answered the moment leadership moves, when this node
    # knows no leader to propose its audit record to: checked on its own.
    transfer = [w for w in t.writes if w[1] == "POST /v1/cluster/transfer"]
    others = [w for w in t.writes if w not in transfer]
    t.out.check("audit: the writes were made as token:, cert: and uid:",
                {w[0].split(":")[0] for w in t.writes} ==
                {"token", "cert", "uid"}, t.writes[:5])
    missing = unrecorded(others, recs)
    t.out.check("audit: every write that passed auth is recorded (%d)" %
                len(others), not missing, "not recorded: %s" % missing)
    missing = unrecorded(transfer, recs)
    t.out.check("audit: the leadership transfer is recorded", not missing,
                "not recorded: %s (answered when this node knows no leader; "
                "the audit proposal is not retried)" % missing)
    refused = [(r["actor"], r["subject"], r["detail"]) for r in recs
               if r["actor"] == viewer or r["detail"] in ("401", "403")]
    t.out.check("audit: no refused (401/403) call was recorded",
                not refused, refused[:10])


def cmd_noleader(doc, conf_path):
    """gw2 and gw3 are gone: gw1 has no quorum and, after an election
    timeout, no leader. Writes that need raft answer 503 with Retry-After
    (the document's Unavailable / NotLeader), readiness is 503 with the
    reason, reads still answer from the applied state, and the auth checks
    come first as always."""
    with open(conf_path, encoding="utf-8") as f:
        conf = json.load(f)
    t = Live(doc, conf)

    def no_leader():
        a = t.raw(1, "GET", "/v1/cluster", role="viewer")
        return a.status == 200 and (a.json() or {}).get("leader_id") == 0

    if not t.out.check("gw1 alone knows no leader", t.eventually(no_leader,
                                                                 20)):
        return t.out.finish()
    a = t.get(1, "/readyz", role=None, want=503)
    t.out.check("readyz names raft", any(
        x.startswith("raft:") for x in (a.json() or {}).get("reasons", [])),
        a.body[:200])
    t.get(1, "/v1/leases", want=200, name="reads still answer")
    t.call(1, "PUT", "/v1/pools", role="viewer", want=403,
           body={"name": "late", "cidr": "100.64.3.0/24"},
           name="auth before raft")
    for m, p, role, body in (
            ("PUT", "/v1/pools", "admin",
             {"name": "late", "cidr": "100.64.3.0/24"}),
            ("PUT", "/v1/policy/firewall", "admin", POLICY),
            ("DELETE", "/v1/policy/firewall", "admin", None),
            ("POST", "/v1/leases/reserve", "operator",
             {"cn": "dave", "ip": conf["reserve_ip"]}),
            ("POST", "/v1/leases/release", "operator",
             {"cn": "dave", "ip": conf["reserve_ip"]}),
            ("POST", "/v1/subnets/release", "admin",
             {"cidr": conf["free_net"]}),
            ("POST", "/v1/gateways/standby", "operator", {"gateway": "gw2"}),
            ("POST", "/v1/gateways/drain", "operator", {"gateway": "gw2"}),
            ("POST", "/v1/gateways/activate", "operator",
             {"gateway": "gw2"}),
            ("POST", "/v1/cluster/join", "admin",
             {"id": 4, "address": conf["spare_address"]}),
            ("POST", "/v1/cluster/remove", "admin", {"id": 3}),
            ("POST", "/v1/cluster/assign", "admin",
             {"id": 3, "role": "spare"}),
            ("POST", "/v1/cluster/transfer", "admin", {})):
        t.call(1, m, p, body=body, role=role, want=503, name="no leader")
    t.out.check("every answer conformed to the document (%d calls)" %
                t.calls, t.conform_fail == 0,
                "%d answers did not conform (see above)" % t.conform_fail)
    return t.out.finish()


def cmd_live(doc, conf_path):
    with open(conf_path, encoding="utf-8") as f:
        conf = json.load(f)
    t = Live(doc, conf)
    start = time.monotonic()
    head = t.raw(1, "GET", "/v1/audit/head", role="admin").json() or {}
    after = head.get("seq", 0)
    for step in (reads, viewer_ops_need_credentials, tls_checks,
                 writes_policy, writes_pools,
                 writes_leases, writes_subnets, writes_gateways,
                 writes_sessions, writes_cluster):
        try:
            step(t)
        except Exception as e:  # a crash in one step must not hide the rest
            t.out.not_ok("step %s ran" % step.__name__, repr(e))
    audit_checks(t, after)
    missing = t.cov.missing()
    t.out.check("every documented operation was called (%d of %d)" %
                (len(doc.ops) - len(missing), len(doc.ops)), not missing,
                "never called: " + "; ".join("%s %s" % k for k in missing))
    # /v1/upstream is 409 without an upstream: the only operation that
    # cannot succeed in this cluster.
    nosucc = [k for k in t.cov.without_success()
              if k != ("GET", "/v1/upstream")]
    t.out.check("every documented operation answered 2xx at least once",
                not nosucc, "; ".join("%s %s %s" % (k[0], k[1],
                                                    sorted(t.cov.statuses[k]))
                                      for k in nosucc))
    t.out.check("every answer conformed to the document (%d calls)" %
                t.calls, t.conform_fail == 0,
                "%d answers did not conform (see above)" % t.conform_fail)
    for k in sorted(t.cov.statuses):
        t.out.diag("%-7s %-32s %s" % (k[0], k[1], " ".join(
            str(s) for s in sorted(t.cov.statuses[k]))))
    t.out.diag("%d calls in %.1f s" % (t.calls, time.monotonic() - start))
    return t.out.finish()


def main(argv):
    if len(argv) < 3 or argv[1] not in ("routes", "selftest", "live",
                                        "noleader"):
        print(__doc__, file=sys.stderr)
        return 2
    doc = Doc(argv[2])
    if argv[1] == "routes":
        return cmd_routes(doc, argv[3])
    if argv[1] == "selftest":
        return cmd_selftest(doc)
    if argv[1] == "noleader":
        return cmd_noleader(doc, argv[3])
    return cmd_live(doc, argv[3])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
