#!/usr/bin/python3
"""client-connect.py: the same lookup as client-connect.sh in Python, the
other usual way to write it (sqlite3 module, parameterised query).

Reads common_name and CLASSIC_DB from the environment, writes
`ifconfig-push IP MASK` and one `push "route NET MASK"` per route to the
file named by the last argument; exit 1 refuses the client."""
import os
import sqlite3
import sys


def main():
    cn = os.environ.get("common_name", "")
    db = os.environ.get("CLASSIC_DB", "/etc/openvpn/clients.db")
    if not cn:
        return 1
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    row = con.execute(
        "SELECT ip, mask FROM clients WHERE cn = ? AND enabled = 1", (cn,)
    ).fetchone()
    if row is None:
        return 1
    lines = ["ifconfig-push %s %s" % row]
    for net, mask in con.execute(
        "SELECT net, mask FROM routes WHERE cn = ?", (cn,)
    ):
        lines.append('push "route %s %s"' % (net, mask))
    con.close()
    with open(sys.argv[-1], "w") as f:
        f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
