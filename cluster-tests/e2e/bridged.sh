#!/usr/bin/env bash
# e2e/bridged.sh: a bridged (dev-type tap) deployment on three gateways
# with real openvpn: the replicated MAC map and each gateway's bridge FDB.
#
# Each gateway's ovhad enslaves openvpn's tap0 to its bridge brv, whose
# other port lan0 leads to one LAN switch shared by all gateways; a LAN
# host on that switch is 100.64.0.1. Clients are bridged: they get their
# address from ovhad (ifconfig-push) and a fixed MAC (lladdr).
#
#   a. the MAC openvpn learns from each client is in the replicated map
#      with its CN and gateway, seen the same from every node
#   b. every gateway's bridge holds a static entry per client MAC: on tap0
#      where the client is, on lan0 everywhere else; the LAN host reaches
#      each client and each client the LAN host
#   c. an entry deleted by hand, an entry moved to the wrong port and tap0
#      taken out of the bridge are all repaired within the reconcile
#      interval
#   d. kill -9 of a client's gateway: the client comes back on a survivor
#      with its address, its MAC moves in the map and in every bridge, and
#      the LAN host reaches it again
#   e. a client claiming another client's MAC is refused by the map, and
#      no bridge moves the MAC to it
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
REPAIR=5 # route_interval_ms is 1 s; a pass plus slack
export OVT_CLIENT_PING_RESTART=4
export OVT_CLIENT_DEV_TYPE=tap
export OVT_GW_BRIDGE=brv:lan0
OVT_CLU_CLIENTS="alice bob carol"
LAN_HOST=100.64.0.1
declare -A MAC=([alice]=02:00:5e:10:00:0a [bob]=02:00:5e:10:00:0b)

ovt_require_netns
for tool in openvpn jq bridge; do
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

gwns() {
    ovt_ns "gw$1"
}

# client NAME MAC GW...: a bridged client with a fixed MAC.
client() {
    local name=$1 mac=$2
    shift 2
    OVT_CLIENT_EXTRA="lladdr $mac" ovt_clu_client "$name" "$@"
}

addr_of() {
    tun_addr "$(cns "$1")" tap0
}

gw_of() {
    local ip
    ip=$(ovt_client_gw "$1")
    printf 'gw%s' "${ip##*.}"
}

# map_of N MAC: "CN@GATEWAY" for MAC in node N's replicated map.
map_of() {
    ovt_ctl "$1" macs --json 2>/dev/null |
        jq -r --arg m "$2" '.macs[] | select(.mac == $m) | "\(.cn)@\(.gateway)"'
}

map_is() {
    [ "$(map_of "$1" "$2")" = "$3" ]
}

map_everywhere() {
    local n
    for n in "${LIVE[@]}"; do
        map_is "$n" "$1" "$2" || return 1
    done
}

# fdb_port N MAC: the port of the static entry for MAC on gateway N's brv.
fdb_port() {
    ip netns exec "$(gwns "$1")" bridge -j fdb show br brv 2>/dev/null |
        jq -r --arg m "$2" \
            '.[] | select(.mac == $m and (.state // "") == "static") | .ifname'
}

fdb_is() {
    [ "$(fdb_port "$1" "$2")" = "$3" ]
}

# fdb_points MAC GW: every live gateway's bridge sends MAC to tap0 on GW
# and to lan0 elsewhere.
fdb_points() {
    local n want
    for n in "${LIVE[@]}"; do
        want=lan0
        [ "gw$n" = "$2" ] && want=tap0
        fdb_is "$n" "$1" "$want" || return 1
    done
}

lan_reaches() {
    ip netns exec "$(ovt_ns lan)" ping -n -q -c 2 -W 2 "$1" >/dev/null 2>&1
}

# back NAME IP NOTGW: NAME has IP again through a gateway other than NOTGW.
back() {
    [ "$(addr_of "$1")" = "$2" ] && [ "$(gw_of "$1")" != "$3" ]
}

# ---- setup: underlay, LAN switch, gateways' bridges -------------------------

ovt_switch_create || exit 1
sw=$(ovt_ns sw)
ip -n "$sw" link add brlan type bridge || exit 1
ip -n "$sw" link set brlan up
for n in 1 2 3; do
    ovt_gw_host "$n" || exit 1
    ns=$(gwns "$n")
    ip -n "$sw" link add "l-gw$n" type veth peer name lan0 netns "$ns" ||
        exit 1
    ip -n "$sw" link set "l-gw$n" master brlan up
    ip -n "$ns" link add brv type bridge || exit 1
    ip -n "$ns" link set lan0 master brv up
    ip -n "$ns" link set brv up
done
ovt__ns_add "$(ovt_ns lan)" || exit 1
ip -n "$sw" link add l-lan type veth peer name eth0 netns "$(ovt_ns lan)" ||
    exit 1
ip -n "$sw" link set l-lan master brlan up
ip -n "$(ovt_ns lan)" addr add "$LAN_HOST/24" dev eth0
ip -n "$(ovt_ns lan)" link set eth0 up
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
ovt_cluster3_up "$STEP" || exit 1
ovt_ok "a bridged 3-gateway cluster"
LIVE=(1 2 3)
for n in 1 2 3; do
    ovt_check "gw$n: ovhad put openvpn's tap0 into brv" \
        ovt_wait_until "$STEP" eval \
        "ip -n $(gwns "$n") -o link show tap0 2>/dev/null | grep -q 'master brv'"
done

# ---- a, b: the map and the bridges ----------------------------------------

client alice "${MAC[alice]}" 1 2 3
client bob "${MAC[bob]}" 2 3 1
declare -A IP=()
for c in alice bob; do
    ovt_check "$c is connected" ovt_wait_until "$STEP" eval "[ -n \"\$(addr_of $c)\" ]"
    IP[$c]=$(addr_of "$c")
    # The client's first frames (ARP for the LAN host) teach openvpn its MAC.
    ovt_check "$c reaches the LAN host" \
        ovt_wait_until 15 ping_through "$(cns "$c")" "$LAN_HOST"
done
ovt_diag "alice ${IP[alice]} via $(gw_of alice), bob ${IP[bob]} via $(gw_of bob)"
ovt_check "a. alice's MAC is in the map on gw1, seen by all nodes" \
    ovt_wait_until 10 map_everywhere "${MAC[alice]}" alice@gw1
ovt_check "a. bob's MAC is in the map on gw2, seen by all nodes" \
    ovt_wait_until 10 map_everywhere "${MAC[bob]}" bob@gw2
ovt_check "b. every bridge points alice's MAC at gw1" \
    ovt_wait_until "$REPAIR" fdb_points "${MAC[alice]}" gw1
ovt_check "b. every bridge points bob's MAC at gw2" \
    ovt_wait_until "$REPAIR" fdb_points "${MAC[bob]}" gw2
for c in alice bob; do
    ovt_check "b. the LAN host reaches $c (${IP[$c]})" lan_reaches "${IP[$c]}"
done
ovt_check "b. the failover view counts the bridge's entries" \
    eval '[ "$(ovt_ctl 3 failover --json | jq -r .fdb.desired)" = 2 ]'

# ---- c. repairs ------------------------------------------------------------------

ip netns exec "$(gwns 1)" bridge fdb del "${MAC[alice]}" dev tap0 master static
ovt_check "c. an entry deleted by hand on gw1 comes back" \
    ovt_wait_until "$REPAIR" fdb_is 1 "${MAC[alice]}" tap0
ip netns exec "$(gwns 3)" bridge fdb del "${MAC[bob]}" dev lan0 master static
ip netns exec "$(gwns 3)" bridge fdb add "${MAC[bob]}" dev tap0 master static
ovt_check "c. an entry moved to the wrong port on gw3 is moved back" \
    ovt_wait_until "$REPAIR" fdb_is 3 "${MAC[bob]}" lan0
ip -n "$(gwns 2)" link set tap0 nomaster
ovt_check "c. tap0 taken out of gw2's bridge is put back" \
    ovt_wait_until "$REPAIR" eval \
    "ip -n $(gwns 2) -o link show tap0 | grep -q 'master brv'"
ovt_check "c. ... with bob's entry, and bob reaches the LAN again" \
    eval 'ovt_wait_until "$REPAIR" fdb_is 2 "${MAC[bob]}" tap0 &&
          ovt_wait_until 15 ping_through "$(cns bob)" "$LAN_HOST"'

# ---- d. failover -----------------------------------------------------------------

ovt_gw_kill 1 KILL
LIVE=(2 3)
ovt_check "d. alice is back on a survivor with ${IP[alice]}" \
    ovt_wait_until 45 back alice "${IP[alice]}" gw1
to=$(gw_of alice)
ovt_diag "d. alice moved to $to"
ovt_check "d. alice's MAC follows her to $to in the map" \
    ovt_wait_until 10 map_everywhere "${MAC[alice]}" "alice@$to"
ovt_check "d. every surviving bridge points alice's MAC at $to" \
    ovt_wait_until "$REPAIR" fdb_points "${MAC[alice]}" "$to"
ovt_check "d. alice reaches the LAN host, and the LAN host reaches her" \
    eval 'ovt_wait_until 15 ping_through "$(cns alice)" "$LAN_HOST" &&
          lan_reaches "${IP[alice]}"'
ovt_check "d. bob was not disturbed" \
    eval '[ "$(addr_of bob)" = "${IP[bob]}" ] && fdb_points "${MAC[bob]}" gw2'

# ---- e. a client claiming bob's MAC ------------------------------------------------

client carol "${MAC[bob]}" 3 2
ovt_check "e. carol is connected on gw3" \
    eval 'ovt_wait_until "$STEP" eval "[ -n \"\$(addr_of carol)\" ]" &&
          [ "$(gw_of carol)" = gw3 ]'
ip netns exec "$(cns carol)" ping -n -q -c 3 -W 1 "$LAN_HOST" >/dev/null 2>&1
ovt_check "e. gw3 refuses bob's MAC for carol" \
    wait_for_log "MAC refused: in_use" "$(ovt_gw_log 3)" 10
ovt_check "e. the map still has bob's MAC on gw2" \
    map_everywhere "${MAC[bob]}" bob@gw2
ovt_check "e. gw3's bridge still sends bob's MAC to lan0" \
    fdb_is 3 "${MAC[bob]}" lan0

for c in alice bob carol; do
    ovt_client_stop "$c"
done
