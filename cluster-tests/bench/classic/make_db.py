#!/usr/bin/python3
"""make_db.py DB POLICY N: the client table of the classic bench, twice.

DB: the SQLite database the client-connect scripts read; POLICY: the same
clients as an ovhad `policy:` section (YAML, appended to ovhad.yaml). N
clients user-0 .. user-<N-1> (N <= 15000), all allowed, each with:
  - a static address 100.64.<1 + i / 250>.<1 + i % 250> in the tunnel
    network 100.64.0.0/18 (netmask 255.255.192.0);
  - a group route 100.100.<i % 50>.0/24 (group g<i % 50>; in SQLite simply
    a row of the routes table) and an own route, a /28 in 100.96.0.0/14.
Dynamic addresses (unused here) come from 100.64.48.0/20."""
import sqlite3
import sys

MASK = "255.255.192.0"
GROUPS = 50


def client(i):
    ip = "100.64.%d.%d" % (1 + i // 250, 1 + i % 250)
    grp = "100.100.%d.0" % (i % GROUPS)
    own = "100.%d.%d.%d" % (96 + i // 4096, (i // 16) % 256, (i % 16) * 16)
    return ip, grp, own


def main():
    db, policy, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if not 1 <= n <= 15000:
        sys.exit("N must be 1..15000")
    con = sqlite3.connect(db)
    con.executescript(
        """
        CREATE TABLE clients (cn TEXT PRIMARY KEY, ip TEXT NOT NULL,
                              mask TEXT NOT NULL, enabled INTEGER NOT NULL);
        CREATE TABLE routes (cn TEXT NOT NULL, net TEXT NOT NULL,
                             mask TEXT NOT NULL);
        CREATE INDEX routes_cn ON routes (cn);
        """
    )
    rows, routes = [], []
    for i in range(n):
        ip, grp, own = client(i)
        cn = "user-%d" % i
        rows.append((cn, ip, MASK, 1))
        routes.append((cn, grp, "255.255.255.0"))
        routes.append((cn, own, "255.255.255.240"))
    con.executemany("INSERT INTO clients VALUES (?, ?, ?, ?)", rows)
    con.executemany("INSERT INTO routes VALUES (?, ?, ?)", routes)
    con.commit()
    con.close()
    with open(policy, "w") as f:
        f.write("policy:\n  default: deny\n  default_reason: unknown client\n")
        f.write("  pool: 100.64.48.0/20\n  groups:\n")
        for g in range(GROUPS):
            f.write("    - name: g%d\n      routes: [100.100.%d.0/24]\n" % (g, g))
        f.write("  clients:\n")
        for i in range(n):
            ip, _, own = client(i)
            f.write(
                "    - cn: user-%d\n      groups: [g%d]\n      ip: %s\n"
                "      routes: [%s/28]\n" % (i, i % GROUPS, ip, own)
            )


if __name__ == "__main__":
    main()
