#!/usr/bin/env python3
"""mgmt-cmd.py SOCKET COMMAND: send one command to an OpenVPN management
unix socket and print its reply (one SUCCESS:/ERROR: line, or a block up to
END). Asynchronous '>' lines are skipped. Exits 1 on error or after 5 s."""
import socket
import sys
import time


def main():
    if len(sys.argv) != 3:
        sys.stderr.write(__doc__ + "\n")
        return 2
    path, cmd = sys.argv[1], sys.argv[2]
    deadline = time.monotonic() + 5.0
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5.0)
    try:
        s.connect(path)
        s.sendall(cmd.encode() + b"\n")
        buf = b""
        out = []
        while time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            data = s.recv(4096)
            if not data:
                break
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.rstrip(b"\r").decode("utf-8", "replace")
                if text.startswith(">"):
                    continue
                out.append(text)
                if len(out) == 1 and (text.startswith("SUCCESS:")
                                      or text.startswith("ERROR:")):
                    print(text)
                    return 0 if text.startswith("SUCCESS:") else 1
                if text == "END":
                    print("\n".join(out[:-1]))
                    return 0
    except OSError as e:
        sys.stderr.write("mgmt-cmd: %s: %s\n" % (path, e))
        return 1
    finally:
        s.close()
    sys.stderr.write("mgmt-cmd: no complete reply\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
