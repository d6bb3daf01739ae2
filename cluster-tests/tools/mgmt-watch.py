#!/usr/bin/env python3
"""mgmt-watch.py SOCKET OUTFILE: attach to an openvpn CLIENT's management
socket (started with management-hold), turn on state notifications,
release the hold, and append every line received to OUTFILE (\\r dropped)
until the socket closes. Gives up if it cannot connect within 15 s.

Used by lib/openvpn.sh (OVT_CLIENT_WATCH=1) so tests can see
">STATE:...,CONNECTED,..." and ">PASSWORD:Verification Failed: 'Auth'"."""
import socket
import sys
import time


def main():
    if len(sys.argv) != 3:
        sys.stderr.write(__doc__ + "\n")
        return 2
    path, out = sys.argv[1], sys.argv[2]
    deadline = time.monotonic() + 15
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            break
        except OSError:
            s.close()
            if time.monotonic() > deadline:
                sys.stderr.write("mgmt-watch: cannot connect to %s\n" % path)
                return 1
            time.sleep(0.1)
    with open(out, "ab", buffering=0) as f:
        s.sendall(b"state on\nhold release\n")
        buf = b""
        while True:
            try:
                data = s.recv(4096)
            except OSError:
                break
            if not data:
                break
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                f.write(line.rstrip(b"\r") + b"\n")
    s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
