#!/usr/bin/env bash
# cluster-tests/demo.sh: a three-gateway ovha cluster deciding real OpenVPN
# connections, on one machine, in throw-away network namespaces. Needs root,
# openvpn and jq; builds nothing: binaries come from OVHA_BIN (default
# <repo>/build/bin). The single-gateway demo is demo-single.sh.
#
#   sudo OVHA_BIN=build/bin cluster-tests/demo.sh        # until Ctrl-C
#   sudo DEMO_SECONDS=60 cluster-tests/demo.sh           # stop after 60 s
#
# Gateways gw1, gw2, gw3 (198.18.0.1-3) each run ovhad, which runs its own
# openvpn (udp 1194, tunnel 100.64.0.0/24) and replicates through raft over
# mutual TLS (198.18.0.N:7000, node certificates from deploy/pki.sh). gw1
# bootstraps the cluster, gw2 and gw3 are joined with `ovhactl cluster
# join`. Client addresses come from the replicated lease table over the
# pool 100.64.0.128/25, so they are unique cluster-wide and stick to a
# client that moves to another gateway.
#
# The decisions come from an upstream HTTPS API, the reference server
# cluster-tests/tools/upstream-server.py at 198.18.0.20:8443 (its own test
# CA), through the cache tiers: memory, a shared redis-server (also at
# .20) and each gateway's SQLite fallback file (docs/upstream.md). Its
# answers:
#   alice, bob, carol   allowed, route 100.96.10.0/24 (alice also
#                       100.96.20.0/24), answers cached 10 minutes
#   mallory             denied ("go away")
# alice starts on gw1, bob on gw2, carol on gw3, mallory on gw1; halfway
# through, alice moves to gw2 and keeps her address; then the upstream is
# stopped and bob reconnects, answered from the caches. DEMO_UPSTREAM=0
# decides from the local policy in cluster-tests/lib/cluster.sh instead.
# Everything is removed on exit; DEMO_KEEP=1 keeps the logs directory.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
OVT_NO_SUMMARY=1
# Raft timers a little shorter than the defaults, so the demo is snappy.
OVT_RAFT_ELECTION_MS=${OVT_RAFT_ELECTION_MS:-1000}
# Failover timings that suit 1 s elections (see docs/cluster.md).
OVT_GW_LEASE_MS=${OVT_GW_LEASE_MS:-5000}
OVT_FENCE_MS=${OVT_FENCE_MS:-2000}
OVT_RAFT_HEARTBEAT_MS=${OVT_RAFT_HEARTBEAT_MS:-100}
OVT_RAFT_SNAP_THRESHOLD=${OVT_RAFT_SNAP_THRESHOLD:-1024}
OVT_RAFT_SNAP_TRAILING=${OVT_RAFT_SNAP_TRAILING:-1024}
OVT_GW_HEARTBEAT_MS=${OVT_GW_HEARTBEAT_MS:-1000}
OVT_USAGE_INTERVAL_MS=${OVT_USAGE_INTERVAL_MS:-5000}
OVT_CLU_CLIENTS="alice bob carol mallory"
. "$HERE/lib/tap.sh"
. "$HERE/lib/netns.sh"
. "$HERE/lib/pki.sh"
. "$HERE/lib/openvpn.sh"
. "$HERE/lib/ovhad.sh"
. "$HERE/lib/cluster.sh"
. "$HERE/lib/upstream.sh"

DEMO_SECONDS=${DEMO_SECONDS:-0}
DEMO_UPSTREAM=${DEMO_UPSTREAM:-1}
OVT_KEEP=${DEMO_KEEP:-0}
export OVT_CLIENT_PING_RESTART=6
GWS="1 2 3"

say() {
    printf '\n== %s\n' "$*"
}

die() {
    echo "demo.sh: $*" >&2
    exit 1
}

if [ "$(id -u)" != 0 ]; then
    echo "demo.sh: needs root (network namespaces)" >&2
    exit 77
fi
ovt_ovhad_bin_check ||
    die "no ovhad/ovhactl in OVHA_BIN=$OVHA_BIN (build first)"
tools="openvpn jq openssl ip"
if [ "$DEMO_UPSTREAM" = 1 ]; then
    tools="$tools python3 redis-server redis-cli curl"
fi
for tool in $tools; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed"
done

ovt_init
trap 'echo; echo "stopping..."; exit 0' INT TERM

cns() {
    ovt_ns "c-$1"
}

has_addr() {
    [ -n "$(tun_addr "$(cns "$1")" tun0)" ]
}

client() {
    ovt_clu_client "$@"
}

show_clients() {
    local c addr gw
    for c in alice bob carol mallory; do
        addr=$(tun_addr "$(cns "$c")" tun0)
        if [ -n "$addr" ]; then
            gw=$(ovt_client_gw "$c")
            gw="gw${gw##*.} ($gw)"
            if ping_through "$(cns "$c")" 100.64.0.1; then
                echo "$c: $addr via ${gw:-?}, ping 100.64.0.1 ok"
            else
                echo "$c: $addr via ${gw:-?}, ping 100.64.0.1 FAILED"
            fi
        elif grep -q AUTH_FAILED "$(ovt_client_log "$c")" 2>/dev/null; then
            echo "$c: refused: $(grep -o 'AUTH_FAILED.*' "$(ovt_client_log "$c")" | head -n 1)"
        else
            echo "$c: no tunnel (yet)"
        fi
    done
}

# ctl N ARGS: shows and runs ovhactl against gateway N.
# The upstream's answers (a DecideResponse per CN, docs/upstream.md).
write_answers() {
    cat >"$1" <<'EOF_DATA'
{
  "alice": {"decision": "allow", "routes": ["100.96.10.0/24", "100.96.20.0/24"],
            "groups": ["staff"], "ttl_s": 600},
  "bob": {"decision": "allow", "routes": ["100.96.10.0/24"],
          "groups": ["staff"], "ttl_s": 600},
  "carol": {"decision": "allow", "routes": ["100.96.10.0/24"],
            "groups": ["staff"], "ttl_s": 600},
  "mallory": {"decision": "deny", "reason": "banned in demo",
              "client_reason": "go away", "ttl_s": 600}
}
EOF_DATA
}

# The reference upstream and redis-server at .20, and the upstream
# sections in every gateway's config.
start_upstream() {
    local ns n
    ovt_host_add up "$OVT_UP_IP" || exit 1
    ns=$(ovt_ns up)
    OVT_UP_PKI=$OVT_DIR/upstream-pki
    OVT_REDIS_PW_FILE=$OVT_DIR/redis.pw
    OVT_REDIS_PREFIX=ovha-demo:
    ovt_upstream_pki "$OVT_UP_PKI" "$OVT_UP_IP" >"$OVT_DIR/upstream-pki.log" 2>&1 ||
        die "upstream PKI failed; see $OVT_DIR/upstream-pki.log"
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$OVT_REDIS_PW_FILE"
    chmod 0600 "$OVT_REDIS_PW_FILE"
    write_answers "$OVT_DIR/answers.json"
    ovt_upstream_start "$ns" "$OVT_UP_IP" "$OVT_DIR/answers.json" \
        "$OVT_DIR/upstream.log" || die "the upstream did not start"
    ovt_redis_start "$ns" "$OVT_UP_IP" "$OVT_REDIS_PW_FILE" \
        "$OVT_DIR/redis.log" || die "redis-server did not start"
    for n in $GWS; do
        ovt_gw_upstream_config "$n"
    done
    echo "upstream https://$OVT_UP_IP:8443/v1/decide and redis $OVT_UP_IP:6379 up"
    sed -n '/^upstream:/,/^[a-z]/p' "$(ovt_gw_dir 1)/ovhad.yaml" | sed '$d'
}

ctl() {
    local n=$1
    shift
    echo "gw$n\$ ovhactl $*"
    ovt_ctl "$n" "$@"
}

show_cluster() {
    say "cluster state, asked on different gateways"
    ctl 1 cluster status
    echo
    ctl 3 leases
    echo
    ctl 2 sessions --cluster
    echo
    ctl 1 cluster gateways
}

# Collapses runs of identical lines into one line with "(xN)".
ovt__demo_squeeze() {
    awk 'function out() { if (n > 1) { print prev " (x" n ")" } else if (n) { print prev } }
         $0 == prev { n++; next } { out(); prev = $0; n = 1 } END { out() }'
}

# Prints new decision lines of every gateway's log, prefixed with the
# gateway. SEEN[n] is the number of lines already shown.
declare -A SEEN=()
show_new_decisions() {
    local n log now
    for n in $GWS; do
        log=$(ovt_gw_log "$n")
        now=$(wc -l <"$log" 2>/dev/null || echo 0)
        if [ "$now" -gt "${SEEN[$n]:-0}" ]; then
            sed -n "$((${SEEN[$n]:-0} + 1)),${now}p" "$log" |
                grep -E 'decide|tiers:|kill cn=|elsewhere|evict|takeover|leader|supervisor' |
                ovt__demo_squeeze | sed "s/^/gw$n| /"
            SEEN[$n]=$now
        fi
    done
}

say "namespaces (prefix $OVT_P), PKI and configs in $OVT_DIR"
ovt_switch_create || exit 1
for n in $GWS; do
    ovt_gw_host "$n" || exit 1
done
i=11
for c in alice bob carol mallory; do
    ovt_host_add "c-$c" "198.18.0.$i" || exit 1
    i=$((i + 1))
done
ovt_cluster_pki || die "PKI failed; see $OVT_DIR/raft-pki.log"
ovt_gw_config 1 true
ovt_gw_config 2 false
ovt_gw_config 3 false
if [ "$DEMO_UPSTREAM" = 1 ]; then
    start_upstream
fi
echo "raft node certificates (deploy/pki.sh):"
for n in $GWS; do
    echo "  node-$n: $(openssl x509 -in "$OVT_RAFT_PKI/node-$n.crt" -noout \
        -ext subjectAltName | tail -n 1 | sed 's/^ *//')"
done
sed -n '/^cluster:/,$p' "$(ovt_gw_dir 1)/ovhad.yaml"

say "starting ovhad on gw1 (bootstrap), gw2, gw3"
for n in $GWS; do
    ovt_gw_start "$n"
done
for n in $GWS; do
    if ! ovt_wait_healthy "$n" 30; then
        echo "ovhad on gw$n did not come up; its log:" >&2
        tail -n 20 "$(ovt_gw_log "$n")" >&2
        exit 1
    fi
done
ovt_wait_until 30 ovt__agreed_leader_q 1 || die "gw1 did not become leader"
for n in 2 3; do
    ctl 1 cluster join "$n" "$(ovt_gw_addr "$n"):7000" ||
        die "join of gw$n failed"
done
ovt_wait_until 30 ovt_voters_are 1,2,3 1 2 3 ||
    echo "warning: not every node reports 3 voters yet"
ovt_wait_until 30 ovt__agreed_leader_q 1 2 3 ||
    echo "warning: the nodes do not agree on a leader yet"
ctl 2 cluster status

say "starting clients: alice -> gw1, bob -> gw2, carol -> gw3, mallory -> gw1"
client alice 1 2 3
client bob 2 3 1
client carol 3 1 2
client mallory 1 2 3
for c in alice bob carol; do
    ovt_wait_until 30 has_addr "$c"
done
client_auth_failed mallory 30
show_clients

say "decisions (ovhad logs)"
show_new_decisions
show_cluster

say "alice moves to gw2 (her client restarts with gw2 first)"
before=$(tun_addr "$(cns alice)" tun0)
client alice 2 3 1
ovt_wait_until 30 has_addr alice
after=$(tun_addr "$(cns alice)" tun0)
echo "alice: before $before, after $after$([ "$before" = "$after" ] && echo ' (same address: sticky lease)')"
# Her old session on gw1 ends when gw1 evicts it or its keepalive expires.
sleep 3
show_new_decisions
show_cluster

if [ "$DEMO_UPSTREAM" = 1 ]; then
    say "the upstream API goes down; bob reconnects and is answered from the caches"
    ovt_upstream_stop
    before=$(tun_addr "$(cns bob)" tun0)
    ctl 2 kill bob
    sleep 2
    ovt_wait_until 45 has_addr bob
    echo "bob: before $before, after $(tun_addr "$(cns bob)" tun0)"
    show_new_decisions
    ctl 2 upstream
fi

if [ "$DEMO_SECONDS" -gt 0 ]; then
    say "running for $DEMO_SECONDS s; new decisions appear below"
else
    say "running until Ctrl-C; new decisions appear below"
fi
start=$SECONDS
while [ "$DEMO_SECONDS" -le 0 ] || [ $((SECONDS - start)) -lt "$DEMO_SECONDS" ]; do
    sleep 1
    show_new_decisions
    for n in $GWS; do
        if ! ovt_gw_alive "$n"; then
            echo "ovhad on gw$n exited; last lines of its log:"
            tail -n 10 "$(ovt_gw_log "$n")"
            exit 1
        fi
    done
done
show_clients
show_cluster
exit 0
