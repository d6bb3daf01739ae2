#!/usr/bin/env bash
# e2e/failover.sh: soft failover, drain and fencing on three gateways with
# real openvpn; every client has all three gateways in its remote list.
#
#   a. kill -9 of a gateway's ovhad: its clients come back on a survivor
#      with the same address and pass traffic; the leader marks the dead
#      gateway down; the usage charged before the failure is still there
#   b. the killed gateway restarts and is active again
#   c. drain moves every client of a gateway, with its address, and the
#      drained gateway sends newcomers on to their next remote; activate
#      brings it back; draining the last active gateway is refused unless
#      forced
#   d. a gateway cut off from the others by nftables fences itself, its
#      clients land elsewhere with their addresses, and no address is ever
#      held by two clients (checked from the clients and from ovhactl);
#      healed, it takes none of them back
#   e. routes: a site-to-site client's subnet (its iroute) is reachable
#      from a client on another gateway, through the routes each gateway's
#      reconciler installs; a route deleted by hand comes back within the
#      reconcile interval; after the site client fails over, the subnet is
#      reachable again
#   f. standby: gw3 restarted as a standby (standby_min_active 2) stands
#      by while gw1 and gw2 are active, sends newcomers on, and takes over
#      when gw1 dies
#
# Gateways at 198.18.0.1-3 (short raft and failover timers, lib/cluster.sh),
# clients from 198.18.0.11. Binaries from OVHA_BIN. Every wait is bounded.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/tap.sh"
. "$HERE/../lib/netns.sh"
. "$HERE/../lib/pki.sh"
. "$HERE/../lib/openvpn.sh"
. "$HERE/../lib/ovhad.sh"
. "$HERE/../lib/cluster.sh"

STEP=30
# A client notices a dead gateway after 4 s without pings, then tries its
# next remote.
export OVT_CLIENT_PING_RESTART=4
OVT_CLU_CLIENTS="alice bob carol dave erin site"
SITE_NET=100.96.50.0/24
SITE_HOST=100.96.50.1
OVT_CLU_POLICY_EXTRA="    - cn: site
      iroutes: [$SITE_NET]"
CLIENTS="alice bob carol dave"

ovt_require_netns
for tool in openvpn nft jq; do
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

client() {
    ovt_clu_client "$@"
}

addr_of() {
    tun_addr "$(cns "$1")" tun0
}

has_addr() {
    [ -n "$(addr_of "$1")" ]
}

# The gateway a client's tunnel goes to ("gwN").
gw_of() {
    local ip
    ip=$(ovt_client_gw "$1")
    printf 'gw%s' "${ip##*.}"
}

# back NAME IP NOTGW: NAME has IP again, through a gateway other than NOTGW,
# and pings its gateway's tunnel address.
back() {
    [ "$(addr_of "$1")" = "$2" ] && [ "$(gw_of "$1")" != "$3" ] &&
        ping_through "$(cns "$1")" 100.64.0.1
}

inits() {
    grep -c 'Initialization Sequence Completed' "$(ovt_client_log "$1")" \
        2>/dev/null
}

gw_state_is() {
    ovt_gw_state_is "$@"
}

# Live sessions in gateway N's own table (openvpn's view).
local_sessions() {
    ovt_ctl "$1" sessions --json 2>/dev/null | jq -r '.sessions | length'
}

no_local_sessions() {
    [ "$(local_sessions "$1")" = 0 ]
}

usage_in() {
    ovt_ctl "$1" usage "$2" --json 2>/dev/null | jq -r '.bytes_in + .bytes_out'
}

usage_above() {
    [ "$(usage_in "$1" "$2")" -gt "$3" ] 2>/dev/null
}

# No address on two clients (their tun0s) and none in two live sessions
# of node N's replicated table. Prints the offender.
all_connected() {
    local c
    for c in $CLIENTS; do
        has_addr "$c" || return 1
    done
}

# Every client is connected through gateway G (any when G is "") with
# the address recorded in IP[].
all_on() {
    local c
    for c in $CLIENTS; do
        [ "$(addr_of "$c")" = "${IP[$c]}" ] || return 1
        [ -z "$1" ] || [ "$(gw_of "$c")" = "$1" ] || return 1
    done
}

addresses_unique() {
    local n=$1 dup
    dup=$(for c in $CLIENTS; do addr_of "$c"; echo; done | grep . | sort |
        uniq -d)
    if [ -n "$dup" ]; then
        echo "client tun0 $dup twice"
        return 1
    fi
    dup=$(ovt_ctl "$n" sessions --cluster --json 2>/dev/null |
        jq -r '.sessions[] | select(.state != "orphaned") | .ip4' |
        grep . | sort | uniq -d)
    if [ -n "$dup" ]; then
        echo "cluster table: $dup twice"
        return 1
    fi
}

# partition N on|off: drop everything between gateway N and the other
# gateways (clients still reach it).
partition() {
    local ns
    ns=$(ovt_ns "gw$1")
    if [ "$2" = on ]; then
        ip netns exec "$ns" nft -f - <<EOF_NFT
table inet ovt_part {
    chain in {
        type filter hook input priority -10; policy accept;
        ip saddr { 198.18.0.1-198.18.0.9 } drop
    }
    chain out {
        type filter hook output priority -10; policy accept;
        ip daddr { 198.18.0.1-198.18.0.9 } drop
    }
}
EOF_NFT
    else
        ip netns exec "$ns" nft delete table inet ovt_part
    fi
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
if ! ovt_cluster_pki; then
    ovt_not_ok "test PKI" "see $OVT_DIR/pki/openssl.log, $OVT_DIR/raft-pki.log"
    exit 1
fi
ovt_gw_config 1 true
ovt_gw_config 2 false
ovt_gw_config 3 false
for n in 1 2 3; do
    # Gateways forward between their tunnels and the underlay.
    ip netns exec "$(ovt_ns "gw$n")" sysctl -qw net.ipv4.ip_forward=1
done
ovt_cluster3_up "$STEP" || exit 1
ovt_ok "a 3-gateway cluster"

client alice 1 2 3
client bob 1 2 3
client carol 2 3 1
client dave 3 1 2
for c in $CLIENTS; do
    ovt_check "$c is connected" ovt_wait_until "$STEP" has_addr "$c"
done
declare -A IP=()
for c in $CLIENTS; do
    IP[$c]=$(addr_of "$c")
done
ovt_diag "addresses: alice ${IP[alice]} bob ${IP[bob]} carol ${IP[carol]} dave ${IP[dave]}"

# ---- a. kill -9 of gw1 ------------------------------------------------------------

ip netns exec "$(cns alice)" ping -n -q -c 20 -i 0.05 -s 1000 100.64.0.1 \
    >/dev/null 2>&1
ovt_check "a. alice's traffic is charged to the replicated usage" \
    ovt_wait_until 15 usage_above 2 alice 10000
used=$(usage_in 2 alice)
t0=$SECONDS
ovt_gw_kill 1 KILL
for c in alice bob; do
    ovt_check "a. $c is back on a survivor with ${IP[$c]}" \
        ovt_wait_until 45 back "$c" "${IP[$c]}" gw1
done
ovt_diag "a. clients back $((SECONDS - t0)) s after the kill (ping-restart 4 s)"
ovt_check "a. the cluster marks gw1 down" \
    ovt_wait_until "$STEP" gw_state_is 2 gw1 down
ovt_check "a. alice's usage before the failure is still there ($used bytes)" \
    eval '[ "$(usage_in 2 alice)" -ge "$used" ]'
ovt_check "a. carol and dave were not disturbed" \
    eval '[ "$(addr_of carol)" = "${IP[carol]}" ] && [ "$(addr_of dave)" = "${IP[dave]}" ]'
ovt_check "a. no address is held twice" addresses_unique 2

# ---- b. gw1 comes back ---------------------------------------------------------------

ovt_gw_start 1
ovt_check "b. gw1 restarts and answers health" ovt_wait_healthy 1 "$STEP"
ovt_check "b. gw1 is active again" \
    ovt_wait_until "$STEP" gw_state_is 2 gw1 active

# ---- c. drain ---------------------------------------------------------------------------

on_gw2=""
for c in $CLIENTS; do
    if [ "$(gw_of "$c")" = gw2 ]; then
        on_gw2="$on_gw2 $c"
    fi
done
ovt_diag "c. clients on gw2:$on_gw2"
ovt_check "c. some clients are on gw2" test -n "$on_gw2"
out=$(ovt_ctl 3 gateway drain gw2 2>&1)
ovt_check "c. ovhactl gateway drain gw2 succeeds ($out)" test $? = 0
t0=$SECONDS
for c in $on_gw2; do
    ovt_check "c. $c moved off gw2 with ${IP[$c]}" \
        ovt_wait_until 45 back "$c" "${IP[$c]}" gw2
done
ovt_diag "c. drain moved$on_gw2 in $((SECONDS - t0)) s"
ovt_check "c. gw2 holds no session" ovt_wait_until 15 no_local_sessions 2
ovt_check "c. gw2 says it is draining" \
    eval 'ovt_ctl 2 failover --json | jq -e ".refusing == \"gateway draining\"" >/dev/null'
client erin 2 1 3
ovt_check "c. erin (gw2 first) is sent on and lands on another gateway" \
    ovt_wait_until "$STEP" has_addr erin
ovt_check "c. ... not on gw2" test "$(gw_of erin)" != gw2
ovt_check "c. ... told it was temporary" \
    grep -q 'AUTH_FAILED,TEMP' "$(ovt_client_log erin)"
ovt_client_stop erin
out=$(ovt_ctl 1 gateway drain gw3 2>&1)
ovt_check "c. draining gw3 too is accepted (gw1 stays) ($out)" test $? = 0
out=$(ovt_ctl 2 gateway drain gw1 2>&1)
ovt_check "c. draining the last active gateway is refused ($out)" test $? != 0
ovt_check "c. gw1 is still active" gw_state_is 1 gw1 active
out=$(ovt_ctl 2 gateway drain gw1 --force 2>&1)
ovt_check "c. ... unless forced ($out)" test $? = 0
out=$(ovt_ctl 2 gateway activate gw1 2>&1)
ovt_check "c. gateway activate gw1 ($out)" test $? = 0
for g in 2 3; do
    out=$(ovt_ctl 1 gateway activate "gw$g" 2>&1)
    ovt_check "c. gateway activate gw$g ($out)" test $? = 0
done
ovt_check "c. gw2 is active again" ovt_wait_until 10 gw_state_is 1 gw2 active
client erin 2
ovt_check "c. a client of gw2 only is admitted there again" \
    eval 'ovt_wait_until "$STEP" has_addr erin && [ "$(gw_of erin)" = gw2 ]'
ovt_client_stop erin
# Drains moved clients around: wait until everyone is settled again.
ovt_wait_until "$STEP" all_connected
for c in $CLIENTS; do
    IP[$c]=$(addr_of "$c")
done

# ---- d. partition -----------------------------------------------------------------------

# Move everyone to gw3 first (their remote lists start there now).
for c in $CLIENTS; do
    client "$c" 3 1 2
done
ovt_check "d. every client is on gw3 with its address" \
    ovt_wait_until "$STEP" all_on gw3
partition 3 on
t0=$SECONDS
dups=""
deadline=$((SECONDS + 45))
moved=0
while [ "$SECONDS" -lt "$deadline" ]; do
    if ! msg=$(addresses_unique 1); then
        dups="$dups; $msg"
    fi
    moved=0
    for c in $CLIENTS; do
        if [ "$(gw_of "$c")" != gw3 ] && [ "$(addr_of "$c")" = "${IP[$c]}" ]; then
            moved=$((moved + 1))
        fi
    done
    [ "$moved" = 4 ] && break
    sleep 0.2
done
ovt_diag "d. $moved clients moved off the partitioned gw3 in $((SECONDS - t0)) s"
ovt_check "d. gw3 fenced itself" \
    eval 'ovt_ctl 3 failover --json | jq -e ".fences >= 1" >/dev/null'
ovt_check "d. gw3's /readyz says not ready, naming raft or admission" \
    eval 'ovt_ready_is 3 false && ovt_readyz 3 | grep -Eq "raft|admission"'
ovt_check "d. every client of gw3 moved with its address" test "$moved" = 4
ovt_check "d. no address was ever held twice${dups:+ ($dups)}" test -z "$dups"
ovt_check "d. the majority marks gw3 down" \
    ovt_wait_until "$STEP" gw_state_is 1 gw3 down
ovt_check "d. gw3 holds no session while cut off" \
    ovt_wait_until 15 no_local_sessions 3
partition 3 off
ovt_check "d. healed, gw3 is active again" \
    ovt_wait_until "$STEP" gw_state_is 1 gw3 active
ovt_check "d. ... and ready again (/readyz)" \
    ovt_wait_until "$STEP" ovt_ready_is 3 true
sleep 3
ovt_check "d. healed, gw3 took no client back" no_local_sessions 3
ovt_check "d. every client still has its address" all_on ""
ovt_check "d. no address is held twice" addresses_unique 1

# ---- e. routes to a site behind a client -------------------------------------

# route_of N: gateway N's reconciled route to the site network.
route_of() {
    ip -n "$(ovt_ns "gw$1")" -4 route show "$SITE_NET" proto 233 2>/dev/null
}

# alice reaches the site host through her tunnel.
site_reachable() {
    ip -n "$(cns alice)" route replace "$SITE_NET" dev tun0 2>/dev/null &&
        ping_through "$(cns alice)" "$SITE_HOST"
}

client site 1 2 3
client alice 2 3 1
ovt_check "e. the site client connects to gw1" \
    ovt_wait_until "$STEP" eval 'has_addr site && [ "$(gw_of site)" = gw1 ]'
ip -n "$(cns site)" addr add "$SITE_HOST/32" dev lo
ovt_check "e. alice connects to gw2" \
    ovt_wait_until "$STEP" eval 'has_addr alice && [ "$(gw_of alice)" = gw2 ]'
ovt_check "e. gw1 routes the site network into its tunnel" \
    ovt_wait_until 10 eval '[[ "$(route_of 1)" == *"dev tun0"* ]]'
ovt_check "e. gw2 routes the site network via gw1" \
    ovt_wait_until 10 eval '[[ "$(route_of 2)" == *"via 198.18.0.1"* ]]'
ovt_check "e. alice (gw2) reaches the site host $SITE_HOST (gw1)" \
    ovt_wait_until 15 site_reachable
ip -n "$(ovt_ns gw2)" route del "$SITE_NET" proto 233
t0=$SECONDS
ovt_check "e. a route deleted by hand on gw2 is restored" \
    ovt_wait_until 10 eval '[[ "$(route_of 2)" == *"via 198.18.0.1"* ]]'
ovt_diag "e. restored within $((SECONDS - t0)) s (interval 1 s)"
ovt_gw_kill 1 KILL
ovt_check "e. the site client fails over off gw1" \
    ovt_wait_until 45 eval 'has_addr site && [ "$(gw_of site)" != gw1 ]'
ip -n "$(cns site)" addr replace "$SITE_HOST/32" dev lo
ovt_check "e. alice reaches the site host again after its failover" \
    ovt_wait_until 20 site_reachable

# ---- f. standby ------------------------------------------------------------------

sed -i 's/^  fence_timeout_ms: .*/&\n  role: standby\n  standby_min_active: 2/' \
    "$(ovt_gw_dir 3)/ovhad.yaml"
ovt_gw_kill 3 TERM
ovt_gw_start 3
ovt_gw_start 1
ovt_check "f. gw1 and the standby gw3 are back" \
    ovt_wait_until "$STEP" eval 'ovt__ctl_ok 1 health && ovt__ctl_ok 3 health'
ovt_check "f. with gw1 and gw2 active, gw3 stands by" \
    ovt_wait_until "$STEP" gw_state_is 2 gw3 standby
client erin 3 2 1
ovt_check "f. erin (gw3 first) is sent on to an active gateway" \
    eval 'ovt_wait_until "$STEP" has_addr erin && [ "$(gw_of erin)" != gw3 ]'
ovt_client_stop erin
ovt_gw_kill 1 KILL
ovt_check "f. gw1 dies: the standby gw3 becomes active" \
    ovt_wait_until "$STEP" gw_state_is 2 gw3 active
client erin 3 2 1
ovt_check "f. ... and admits erin" \
    eval 'ovt_wait_until "$STEP" has_addr erin && [ "$(gw_of erin)" = gw3 ]'

for c in $CLIENTS site erin; do
    ovt_client_stop "$c"
done
