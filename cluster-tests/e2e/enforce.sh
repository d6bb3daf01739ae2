#!/usr/bin/env bash
# e2e/enforce.sh: enforcement on the wire with real openvpn clients on a
# 3-gateway cluster: the replicated firewall policy compiled to nftables.
#
#   a. without a policy nothing is filtered
#   b. isolation: a client cannot reach another client, on its own gateway
#      or on another one
#   c. a policy change allowing staff -> web on one TCP port reaches the
#      gateways and applies to the live clients without reconnecting them:
#      that port works, another does not; explain names the deciding rule
#   d. a group rule to a host behind the gateway: the allowed port works,
#      another port does not (default drop)
#   e. the table altered by hand (deleted, a set flushed) is restored
#   f. a bad document is refused with its JSON path and changes nothing;
#      deleting the policy removes the table
#   g. shaping (tc on the tun device): a bounded transfer to and from a
#      client with down_kbps 4000 / up_kbps 2000 measures within 20 % of
#      those rates; an unshaped client is not limited
#   h. quota: a client that crosses its monthly quota is killed with
#      "HALT,quota-exceeded", and refused when it reconnects to another
#      gateway
#   i. bandwidth baseline: a burst far above a long-idle client's baseline
#      is logged as an anomaly and counted
#   j. quota_action throttle (the gateways restarted with it): a client
#      over its quota stays connected at the throttle rate, and when it
#      reconnects to another gateway it is admitted and throttled there
#   k. every gateway's audit archive is the chain in order, each record
#      linked to the one before, up to the replicated head
#
# Gateways at 198.18.0.1-3, clients from 198.18.0.11, a server host at
# 100.96.10.100 behind gw1 (on a link of its own; clients in the staff
# group get a route to 100.96.10.0/24 through the tunnel). Binaries from
# OVHA_BIN. Every wait is bounded.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/tap.sh"
. "$HERE/../lib/netns.sh"
. "$HERE/../lib/pki.sh"
. "$HERE/../lib/openvpn.sh"
. "$HERE/../lib/ovhad.sh"
. "$HERE/../lib/cluster.sh"

STEP=30
APPLY=10 # a pass every route_interval_ms (1 s) and on change
REPAIR=20 # a check every 5 passes, then the next pass repairs
SRV=100.96.10.100
OVT_CLU_CLIENTS="alice bob webby quotaq quotat"
OVT_CLU_GROUPS_EXTRA="    - name: web"
OVT_CLU_POLICY_EXTRA="    - cn: webby
      groups: [staff, web]
      down_kbps: 4000
      up_kbps: 2000
    - cn: quotaq
      groups: [staff]
      quota_bytes: 300000
    - cn: quotat
      groups: [staff]
      quota_bytes: 300000"

ovt_require_netns
for tool in openvpn nft jq python3; do
    command -v "$tool" >/dev/null 2>&1 || ovt_skip_all "$tool not installed"
done
ovt_init
if ! ovt_ovhad_bin_check; then
    ovt_not_ok "ovhad and ovhactl found in OVHA_BIN=$OVHA_BIN"
    exit 1
fi

# ---- helpers ----------------------------------------------------------------

cns() {
    ovt_ns "c-$1"
}

addr_of() {
    tun_addr "$(cns "$1")" tun0
}

inits() {
    grep -c 'Initialization Sequence Completed' "$(ovt_client_log "$1")" \
        2>/dev/null
}

# listen NS PORT...: a TCP listener on each port for at most 10 minutes.
listen() {
    local ns=$1
    shift
    ip netns exec "$ns" timeout 600 python3 -c '
import select, socket, sys
socks = []
for p in sys.argv[1:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(p)))
    s.listen(16)
    socks.append(s)
while True:
    for s in select.select(socks, [], [])[0]:
        c, _ = s.accept()
        c.close()
' "$@" >/dev/null 2>&1 &
    ovt_track_pid $!
}

# connects FROM_NS IP PORT: a TCP connection is accepted within 2 s.
connects() {
    ip netns exec "$1" timeout 4 python3 -c '
import socket, sys
socket.create_connection((sys.argv[1], int(sys.argv[2])), 2).close()
' "$2" "$3" >/dev/null 2>&1
}

blocked() {
    ! connects "$@"
}

# Polls until the connection works / is blocked (a pass may be pending).
becomes_open() {
    ovt_wait_until "$APPLY" connects "$@"
}

becomes_blocked() {
    ovt_wait_until "$APPLY" blocked "$@"
}

# rate_kbps FROM_NS TO_NS TO_IP PORT: a 3 s TCP transfer from FROM_NS to a
# receiver in TO_NS; prints the rate the receiver measured (kbit/s) from
# its first to its last byte.
rate_kbps() {
    local out="$OVT_DIR/rate.$4"
    rm -f "$out"
    ip netns exec "$2" timeout 15 python3 -c '
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(1)
s.settimeout(10)
c, _ = s.accept()
c.settimeout(5)
n, t0, t1 = 0, None, None
while True:
    try:
        b = c.recv(65536)
    except socket.timeout:
        break
    if not b:
        break
    now = time.monotonic()
    t0 = t0 or now
    t1 = now
    n += len(b)
with open(sys.argv[2], "w") as f:
    f.write("%d\n" % (n * 8 / 1000 / max(t1 - t0, 0.001)) if t0 else "0\n")
' "$4" "$out" &
    local rpid=$!
    sleep 0.3
    ip netns exec "$1" timeout 10 python3 -c '
import socket, sys, time
# A small send buffer: what is queued when the 3 s are up drains in well
# under a second even at a throttled rate.
c = socket.socket()
c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
c.settimeout(3)
c.connect((sys.argv[1], int(sys.argv[2])))
buf = b"x" * 4096
end = time.monotonic() + 3
while time.monotonic() < end:
    c.sendall(buf)
c.close()
' "$3" "$4" >/dev/null 2>&1
    wait "$rpid" 2>/dev/null
    cat "$out" 2>/dev/null || echo 0
}

# within VALUE TARGET: VALUE is within 20 % of TARGET.
within() {
    [ "$1" -ge $(($2 * 8 / 10)) ] && [ "$1" -le $(($2 * 12 / 10)) ]
}

policy_apply() {
    local f="$OVT_DIR/policy.json"
    printf '%s\n' "$1" >"$f"
    ovt_ctl 2 policy apply "$f" >"$OVT_DIR/policy.out" 2>&1
}

explains() {
    [ "$(ovt_ctl 1 policy explain "$1" "$2" tcp "$3" 2>/dev/null)" = "$4" ]
}

has_table() {
    ip netns exec "$(ovt_ns "gw$1")" nft list table inet ovha >/dev/null 2>&1
}

# ---- setup --------------------------------------------------------------------

ovt_switch_create || exit 1
for n in 1 2 3; do
    ovt_gw_host "$n" || exit 1
done
i=11
for c in $OVT_CLU_CLIENTS; do
    ovt_host_add "c-$c" "198.18.0.$i" || exit 1
    i=$((i + 1))
done
ovt__ns_add "$(ovt_ns srv)" || exit 1
ip -n "$(ovt_ns gw1)" link add lan0 type veth peer name eth0 \
    netns "$(ovt_ns srv)" || exit 1
ip -n "$(ovt_ns gw1)" addr add 100.96.10.1/24 dev lan0
ip -n "$(ovt_ns gw1)" link set lan0 up
ip -n "$(ovt_ns srv)" addr add "$SRV/24" dev eth0
ip -n "$(ovt_ns srv)" link set eth0 up
ip -n "$(ovt_ns srv)" route add default via 100.96.10.1
# The server's network is behind gw1; the other gateways reach it there.
for n in 2 3; do
    ip -n "$(ovt_ns "gw$n")" route add 100.96.10.0/24 via 198.18.0.1
done
if ! ovt_cluster_pki; then
    ovt_not_ok "test PKI" "see $OVT_DIR/pki/openssl.log, $OVT_DIR/raft-pki.log"
    exit 1
fi
for n in 1 2 3; do
    ovt_gw_config "$n" "$([ "$n" = 1 ] && echo true || echo false)"
    ip netns exec "$(ovt_ns "gw$n")" sysctl -qw net.ipv4.ip_forward=1
done
ovt_cluster3_up "$STEP" || exit 1
ovt_ok "a 3-gateway cluster"

ovt_clu_client alice 1 2 3
ovt_clu_client webby 1 2 3
ovt_clu_client bob 2 3 1
declare -A IP=()
for c in alice webby bob; do
    ovt_check "$c is connected" \
        ovt_wait_until "$STEP" eval "[ -n \"\$(addr_of $c)\" ]"
    IP[$c]=$(addr_of "$c")
done
ovt_diag "alice ${IP[alice]} (gw1), webby ${IP[webby]} (gw1), bob ${IP[bob]} (gw2)"
for n in 1 2 3; do
    ovt_check "gw$n is ready (/readyz)" ovt_wait_until 10 ovt_ready_is "$n" true
done
listen "$(cns webby)" 5001 5002
listen "$(cns bob)" 5001
listen "$(ovt_ns srv)" 8080 8081
A=$(cns alice)

# ---- a. no policy ------------------------------------------------------------------

ovt_check "a. no policy: alice reaches webby:5001 (same gateway)" \
    becomes_open "$A" "${IP[webby]}" 5001
ovt_check "a. no policy: alice reaches bob:5001 (on gw2)" \
    becomes_open "$A" "${IP[bob]}" 5001
ovt_check "a. no policy: no table on gw1" eval '! has_table 1'

# ---- b. isolation ----------------------------------------------------------------------

P1='{"version": 1, "default": "accept", "isolation": true,
     "groups": ["staff", "web"], "rules": []}'
ovt_check "b. policy with isolation and no rules applied" policy_apply "$P1"
ovt_check "b. alice cannot reach webby:5001 (same gateway)" \
    becomes_blocked "$A" "${IP[webby]}" 5001
ovt_check "b. alice cannot reach bob:5001 (another gateway)" \
    becomes_blocked "$A" "${IP[bob]}" 5001
ovt_check "b. alice still reaches the server (default accept)" \
    connects "$A" "$SRV" 8081
ovt_check "b. every gateway has the table" \
    ovt_wait_until "$APPLY" eval 'has_table 1 && has_table 2 && has_table 3'

# ---- c. a rule allowing staff -> web on 5001, live ---------------------------------

before_a=$(inits alice)
before_w=$(inits webby)
P2='{"version": 1, "default": "accept", "isolation": true,
     "groups": ["staff", "web"],
     "rules": [{"name": "staff-web-5001", "from": "staff",
                "to": {"group": "web"}, "proto": "tcp", "ports": [5001],
                "action": "accept"}]}'
ovt_check "c. the rule staff -> web tcp 5001 applied" policy_apply "$P2"
ovt_check "c. alice reaches webby:5001" becomes_open "$A" "${IP[webby]}" 5001
ovt_check "c. ... but not webby:5002" blocked "$A" "${IP[webby]}" 5002
ovt_check "c. ... nor bob:5001 (bob is not in web)" blocked "$A" "${IP[bob]}" 5001
ovt_check "c. webby cannot reach bob:5001 (staff -> web only)" \
    blocked "$(cns webby)" "${IP[bob]}" 5001
ovt_check "c. no client reconnected for the change" \
    eval '[ "$(inits alice)" = "$before_a" ] && [ "$(inits webby)" = "$before_w" ]'
ovt_check "c. explain names the rule for 5001" \
    explains "${IP[alice]}" "${IP[webby]}" 5001 "accept (rule staff-web-5001)"
ovt_check "c. explain names isolation for 5002" \
    explains "${IP[alice]}" "${IP[webby]}" 5002 "drop (isolation)"

# ---- d. a group rule to the server, default drop ---------------------------------------

P3='{"version": 1, "default": "drop", "isolation": true,
     "groups": ["staff", "web"],
     "rules": [{"name": "staff-web-5001", "from": "staff",
                "to": {"group": "web"}, "proto": "tcp", "ports": [5001],
                "action": "accept"},
               {"name": "staff-srv", "from": "staff",
                "to": {"cidr": "100.96.10.100/32"}, "proto": "tcp",
                "ports": [8080], "action": "accept"}]}'
ovt_check "d. default drop with a staff -> server:8080 rule applied" \
    policy_apply "$P3"
ovt_check "d. alice cannot reach server:8081" becomes_blocked "$A" "$SRV" 8081
ovt_check "d. alice reaches server:8080" connects "$A" "$SRV" 8080
ovt_check "d. explain: server:8081 falls to the default" \
    explains "${IP[alice]}" "$SRV" 8081 "drop (default)"
ovt_check "d. policy compiled shows gw1's table" \
    eval 'ovt_ctl 1 policy compiled | grep -q "table inet ovha"'

# ---- e. hand alterations ------------------------------------------------------------------

ip netns exec "$(ovt_ns gw1)" nft delete table inet ovha
ovt_check "e. gw1's table deleted by hand: server:8081 open meanwhile" \
    connects "$A" "$SRV" 8081
ovt_check "e. ... and restored" ovt_wait_until "$REPAIR" blocked "$A" "$SRV" 8081
set_name=$(ip netns exec "$(ovt_ns gw1)" nft list table inet ovha 2>/dev/null |
    awk '$1 == "set" && $2 ~ /web/ { print $2; exit }')
ovt_diag "e. flushing set $set_name on gw1"
ip netns exec "$(ovt_ns gw1)" nft flush set inet ovha "$set_name"
ovt_check "e. a flushed set is refilled: alice reaches webby:5001 again" \
    ovt_wait_until "$REPAIR" connects "$A" "${IP[webby]}" 5001
ovt_check "e. the repairs are counted" \
    eval '[ "$(ovt_ctl 1 policy compiled --json | jq -r .stats.drifts)" -ge 2 ]'

# ---- f. a bad document, then delete ------------------------------------------------------

ovt_check "f. a rule naming an undeclared group is refused" \
    eval '! policy_apply "{\"version\": 1, \"default\": \"accept\",
          \"isolation\": true, \"groups\": [\"staff\"], \"rules\": [{\"name\":
          \"x\", \"from\": \"nope\", \"to\": \"any\", \"proto\": \"any\",
          \"action\": \"accept\"}]}" &&
          grep -q "rules\[0\].from" "$OVT_DIR/policy.out"'
ovt_check "f. ... and the policy in force is unchanged" \
    eval 'ovt_ctl 1 policy show --json | jq -e ".policy.default == \"drop\"" >/dev/null'
ovt_check "f. policy delete" eval 'ovt_ctl 3 policy delete >/dev/null'
ovt_check "f. every gateway removes its table" \
    ovt_wait_until "$APPLY" eval '! has_table 1 && ! has_table 2 && ! has_table 3'
ovt_check "f. alice reaches server:8081 and bob:5001 again" \
    eval 'connects "$A" "$SRV" 8081 && connects "$A" "${IP[bob]}" 5001'

# ---- g. shaping ----------------------------------------------------------------------

W=$(cns webby)
S=$(ovt_ns srv)
ovt_check "g. webby's classes are on gw1's tun0" ovt_wait_until "$APPLY" eval \
    "ip netns exec $(ovt_ns gw1) tc class show dev tun0 | grep -q 'rate 4Mbit'"
down=$(rate_kbps "$S" "$W" "${IP[webby]}" 5003)
ovt_diag "g. server -> webby: $down kbit/s (down_kbps 4000)"
ovt_check "g. to webby within 20 % of 4000 kbit/s ($down)" within "$down" 4000
up=$(rate_kbps "$W" "$S" "$SRV" 8083)
ovt_diag "g. webby -> server: $up kbit/s (up_kbps 2000)"
ovt_check "g. from webby within 20 % of 2000 kbit/s ($up)" within "$up" 2000
free_rate=$(rate_kbps "$S" "$A" "${IP[alice]}" 5004)
ovt_diag "g. server -> alice (unshaped): $free_rate kbit/s"
ovt_check "g. alice is not shaped (above 20000 kbit/s)" \
    eval '[ "$free_rate" -gt 20000 ]'
ovt_check "g. gw3, which shapes nobody, has no qdisc of ours on tun0" \
    eval '! ip netns exec "$(ovt_ns gw3)" tc qdisc show dev tun0 | grep -q htb'

# ---- h. quota ---------------------------------------------------------------------------

ovt_clu_client quotaq 1 2 3
ovt_check "h. quotaq is connected on gw1" ovt_wait_until "$STEP" eval \
    "[ -n \"\$(addr_of quotaq)\" ]"
ip netns exec "$(cns quotaq)" ping -n -q -c 400 -i 0.005 -s 1000 -W 1 \
    100.64.0.1 >/dev/null 2>&1
ovt_check "h. quotaq is killed with HALT once over its quota" \
    wait_for_log "quota-exceeded" "$(ovt_client_log quotaq)" 20
ovt_check "h. the cluster counted more than the quota" eval \
    '[ "$(ovt_ctl 2 usage quotaq --json | jq -r ".bytes_in + .bytes_out")" -ge 300000 ]'
ovt_clu_client quotaq 2 3
ovt_check "h. quotaq is refused when it reconnects to gw2" \
    client_auth_failed quotaq 20
ovt_check "h. ... with the quota named in gw2's log" \
    wait_for_log "quota_exceeded" "$(ovt_gw_log 2)" 5

# ---- i. bandwidth baseline ------------------------------------------------------------------

# bob has been connected and nearly idle for a minute (byte counts every
# second): far past the 12-sample warm-up.
burst=$(rate_kbps "$(cns bob)" "$A" "${IP[alice]}" 5005)
ovt_diag "i. bob -> alice burst: $burst kbit/s"
ovt_check "i. gw2 logs a bandwidth anomaly for bob" \
    wait_for_log 'bandwidth anomaly cn="bob"' "$(ovt_gw_log 2)" 10
ovt_check "i. ... and counts it" eval \
    '[ "$(ovt_ctl 2 health --json | jq -r .bandwidth_anomalies)" -ge 1 ]'

# ---- j. quota_action throttle ----------------------------------------------------------

for c in alice webby bob quotaq; do
    ovt_client_stop "$c"
done
export OVT_QUOTA_ACTION=throttle OVT_QUOTA_THROTTLE_KBPS=256
for n in 1 2 3; do
    ovt_gw_kill "$n" TERM
    ovt_gw_config "$n" false
done
for n in 1 2 3; do
    ovt_gw_start "$n"
done
ovt_check "j. the gateways are back with quota_action throttle" \
    ovt_wait_until 60 eval 'ovt__ctl_ok 1 health && ovt__ctl_ok 2 health &&
        ovt__ctl_ok 3 health && ovt__agreed_leader_q 1 2 3'
ovt_clu_client quotat 1 2 3
ovt_check "j. quotat is connected on gw1" ovt_wait_until "$STEP" eval \
    "[ -n \"\$(addr_of quotat)\" ]"
IP[quotat]=$(addr_of quotat)
ip netns exec "$(cns quotat)" ping -n -q -c 400 -i 0.005 -s 1000 -W 1 \
    100.64.0.1 >/dev/null 2>&1
ovt_check "j. gw1 throttles quotat once over its quota" \
    wait_for_log "over quota: throttled" "$(ovt_gw_log 1)" 20
ovt_check "j. ... and keeps it connected" eval '[ -n "$(addr_of quotat)" ]'
sleep 2 # the shaping pass (1 s) installs its class
# The flood's replies queue at 256 kbit/s behind the new class: wait until
# a ping gets through again.
ovt_check "j. quotat's queue drains" \
    ovt_wait_until 60 ping_through "$(cns quotat)" 100.64.0.1
t1=$(rate_kbps "$S" "$(cns quotat)" "${IP[quotat]}" 5006)
ovt_diag "j. server -> quotat on gw1, throttled: $t1 kbit/s (256)"
ovt_check "j. within 20 % of 256 kbit/s ($t1)" within "$t1" 256
ovt_clu_client quotat 2 3
ovt_check "j. quotat reconnects to gw2 and is admitted" \
    ovt_wait_until "$STEP" eval '[ "$(addr_of quotat)" = "${IP[quotat]}" ]'
ovt_check "j. ... and is throttled there (gw2's log)" \
    wait_for_log "over quota: admitted, throttled" "$(ovt_gw_log 2)" 10
sleep 2 # the shaping pass (1 s)
t2=$(rate_kbps "$S" "$(cns quotat)" "${IP[quotat]}" 5007)
ovt_diag "j. server -> quotat on gw2, throttled: $t2 kbit/s (256)"
ovt_check "j. throttled on gw2 too ($t2)" within "$t2" 256

for c in quotat; do
    ovt_client_stop "$c"
done

# ---- k. the audit archive --------------------------------------------------------------

# archive_ok N: gwN's archive has records 1..K in order, each linked to the
# one before, and K reaches the replicated head as gwN reported it.
archive_ok() {
    local head
    head=$(ovt_ctl "$1" audit head --json | jq -r .seq)
    python3 - "$(ovt_gw_dir "$1")/raft-audit.jsonl" "$head" <<'EOF_PY'
import json, sys
prev, seq = "0" * 64, 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "gap_from" in r or r["seq"] != seq + 1 or r["prev_hash"] != prev:
        sys.exit("bad at %s" % line.strip()[:80])
    prev, seq = r["hash"], r["seq"]
sys.exit(0 if seq >= int(sys.argv[2]) > 0 else "only %d" % seq)
EOF_PY
}
for n in 1 2 3; do
    ovt_check "k. gw$n's audit archive is the chain, linked, up to the head" \
        ovt_wait_until 10 archive_ok "$n"
done
