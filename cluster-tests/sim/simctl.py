#!/usr/bin/env python3
"""simctl.py CTL_PATH COMMAND...: sends one command to ovpn_sim's control
socket and prints the one-line reply (waits up to 660 s, for storms)."""
import socket
import sys

if len(sys.argv) < 3:
    sys.exit("usage: simctl.py CTL_PATH COMMAND...")
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(660)
s.connect(sys.argv[1])
s.sendall((" ".join(sys.argv[2:]) + "\n").encode())
buf = b""
while not buf.endswith(b"\n"):
    chunk = s.recv(4096)
    if not chunk:
        break
    buf += chunk
print(buf.decode(errors="replace").rstrip("\n"))
sys.exit(0 if buf and not buf.startswith(b"error") else 1)
