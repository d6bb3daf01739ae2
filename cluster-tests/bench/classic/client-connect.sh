#!/bin/sh
# client-connect.sh: the classic OpenVPN way to give clients a static
# address and routes: `client-connect` runs this for every connecting
# client; it looks the common name up in SQLite and writes the client's
# config to the file named by its last argument, which openvpn then reads.
#
#   server.conf:  script-security 2
#                 setenv CLASSIC_DB /etc/openvpn/clients.db
#                 client-connect /etc/openvpn/client-connect.sh
#
# Tables (classic/make_db.py): clients(cn PRIMARY KEY, ip, mask, enabled),
# routes(cn, net, mask) indexed by cn. Exit 1 refuses the client (unknown
# or disabled CN, or an unsafe CN). One sqlite3 process per connect: the
# lean version of what such scripts usually do.
PATH=/usr/local/bin:/usr/bin:/bin
export PATH
cfg=$1
db=${CLASSIC_DB:-/etc/openvpn/clients.db}
# shellcheck disable=SC2154 # set by openvpn
cn=$common_name
# The CN goes into SQL text: allow only a safe alphabet (no quotes).
case $cn in
'' | *[!A-Za-z0-9._@-]*) exit 1 ;;
esac
out=$(sqlite3 -batch -noheader "$db" \
    "SELECT 'ifconfig-push ' || ip || ' ' || mask FROM clients WHERE cn = '$cn' AND enabled = 1;
     SELECT 'push \"route ' || net || ' ' || mask || '\"' FROM routes WHERE cn = '$cn';") ||
    exit 1
case $out in
'ifconfig-push '*) ;;
*) exit 1 ;;
esac
printf '%s\n' "$out" >"$cfg" || exit 1
exit 0
