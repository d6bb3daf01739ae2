#!/usr/bin/env python3
"""upstream_nodelay.py SERVER_PY ARGS...: runs the reference upstream server
(cluster-tests/tools/upstream-server.py) with TCP_NODELAY on every accepted
connection, for latency benchmarks.

The server writes the response headers and the body in two writes; with
Nagle on, the body waits for the client's delayed ACK, which adds about
40 ms to every keep-alive request (measured: 44 ms vs 0.3 ms per request
on loopback). That is the test server's artefact, not ovhad's, so
decide_bench.sh uses this wrapper unless BENCH_UPSTREAM_NAGLE=1.
"""
import importlib.util
import socket
import sys

if len(sys.argv) < 2:
    sys.exit("usage: upstream_nodelay.py SERVER_PY ARGS...")
spec = importlib.util.spec_from_file_location("upstream_server", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
base_setup = mod.UpstreamHandler.setup


def nodelay_setup(self):
    base_setup(self)
    self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


mod.UpstreamHandler.setup = nodelay_setup
sys.argv = [sys.argv[1]] + sys.argv[2:]
sys.exit(mod.main())
