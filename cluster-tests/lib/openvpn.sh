# shellcheck shell=bash
# cluster-tests/lib/openvpn.sh: openvpn clients (and a plain server) in test
# namespaces, plus bounded-wait assertions. Needs netns.sh and pki.sh.
#
#   ovt_client_start NAME NS PKIDIR BASE REMOTE...   start a client
#       REMOTE is "ADDR" or "ADDR:PORT" (udp, default port 1194); the
#       client's files are $OVT_DIR/NAME.{conf,log,mgmt}; its PID is in
#       OVT_CLIENT_PID[NAME]. Extra config lines: OVT_CLIENT_EXTRA.
#       OVT_CLIENT_DEV_TYPE=tap makes a bridged client (device tap0).
#       OVT_CLIENT_DEV_TYPE=tap makes a bridged client (device tap0).
#   ovt_client_stop NAME
#   ovt_client_log NAME                      path of its log
#   ovt_mgmt_cmd SOCK CMD                     one management command, reply
#   ovt_client_state NAME                     CONNECTING|CONNECTED|... or ""
#   OVT_CLIENT_WATCH=1 ovt_client_start ...   the client starts held;
#       tools/mgmt-watch.py attaches, turns on `state`, releases the hold
#       and logs the management stream to $OVT_DIR/NAME.mgmt.log, for
#       client_mgmt_connected / client_mgmt_auth_failed
#
#   wait_for_tun_addr NS DEV ADDR TIMEOUT_S   IPv4 ADDR appears on DEV
#   wait_for_no_tun NS DEV TIMEOUT_S          DEV has no IPv4 address/absent
#   wait_for_log PATTERN FILE TIMEOUT_S       grep -E PATTERN FILE matches
#   assert_route NS NET [DEV]                 NET (CIDR) is routed [via DEV]
#   ping_through NS ADDR                      2 pings answered (<= 5 s)
#   client_auth_failed NAME [TIMEOUT_S]       the server refused the client
#       (AUTH_FAILED in its log, or >PASSWORD:Verification Failed: 'Auth'
#       on its management stream when watched)
#   tun_addr NS DEV                           prints DEV's IPv4 address
#
# Client timers are short on purpose: connect-retry 1, server-poll-timeout 5,
# ping 1 / ping-restart 15 (OVT_CLIENT_PING_RESTART; the server's pushed
# ping/ping-restart are filtered out), so a dead server is noticed within
# ~15 s and a restarted one is reached within a few seconds more. The
# restart timeout must stay above the server's ping interval (keepalive 10
# by default): an idle server sends nothing else, and the client's own pings
# are not answered.

OVT_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OVT_TOOLS_DIR=$(cd "$OVT_LIB_DIR/../tools" && pwd)
declare -A OVT_CLIENT_PID=()
OVT_CLIENT_EXTRA=${OVT_CLIENT_EXTRA:-}

# ovt_client_conf NAME PKIDIR BASE REMOTE...: writes $OVT_DIR/NAME.conf.
ovt_client_conf() {
    local name=$1 pki=$2 base=$3
    shift 3
    local conf="$OVT_DIR/$name.conf" r addr port
    {
        echo "client"
        if [ "${OVT_CLIENT_DEV_TYPE:-tun}" = tap ]; then
            echo "dev tap0"
            echo "dev-type tap"
        else
            echo "dev tun0"
            echo "dev-type tun"
        fi
        echo "proto udp"
        for r in "$@"; do
            addr=${r%%:*}
            port=1194
            if [ "$addr" != "$r" ]; then
                port=${r#*:}
            fi
            echo "remote $addr $port"
        done
        echo "nobind"
        echo "ca $pki/ca.crt"
        echo "cert $pki/$base.crt"
        echo "key $pki/$base.key"
        echo "tls-crypt $pki/tc.key"
        echo "remote-cert-tls server"
        echo "auth-nocache"
        echo "connect-retry 1 2"
        echo "server-poll-timeout 5"
        echo "resolv-retry 0"
        echo "hand-window 20"
        echo "ping 1"
        echo "ping-restart ${OVT_CLIENT_PING_RESTART:-15}"
        echo 'pull-filter ignore "ping"'
        echo "management $OVT_DIR/$name.mgmt unix"
        if [ "${OVT_CLIENT_WATCH:-0}" = 1 ]; then
            echo "management-hold"
        fi
        echo "verb 3"
        if [ -n "$OVT_CLIENT_EXTRA" ]; then
            printf '%s\n' "$OVT_CLIENT_EXTRA"
        fi
    } >"$conf"
}

ovt_client_start() {
    local name=$1 ns=$2 pki=$3 base=$4
    shift 4
    ovt_client_conf "$name" "$pki" "$base" "$@" || return 1
    rm -f "$OVT_DIR/$name.mgmt" "$OVT_DIR/$name.mgmt.log"
    ovt_spawn "$ns" "$OVT_DIR/$name.log" \
        openvpn --config "$OVT_DIR/$name.conf"
    OVT_CLIENT_PID[$name]=$OVT_LAST_PID
    if [ "${OVT_CLIENT_WATCH:-0}" = 1 ]; then
        # The socket is a path, so no need to enter the namespace.
        python3 "$OVT_TOOLS_DIR/mgmt-watch.py" "$OVT_DIR/$name.mgmt" \
            "$OVT_DIR/$name.mgmt.log" >>"$OVT_DIR/$name.log" 2>&1 &
        ovt_track_pid $!
    fi
}

ovt_client_stop() {
    local pid=${OVT_CLIENT_PID[$1]:-}
    if [ -n "$pid" ]; then
        ovt_stop_pid "$pid" 5
    fi
}

ovt_client_log() {
    printf '%s' "$OVT_DIR/$1.log"
}

# ovt_mgmt_cmd SOCK CMD: prints the reply lines (without the banner and
# without asynchronous '>' lines). Fails after 5 s.
ovt_mgmt_cmd() {
    python3 "$OVT_TOOLS_DIR/mgmt-cmd.py" "$1" "$2"
}

ovt_client_state() {
    ovt_mgmt_cmd "$OVT_DIR/$1.mgmt" state 2>/dev/null |
        awk -F, 'NR == 1 && NF > 2 {print $2}'
}

tun_addr() {
    ip -n "$1" -4 -o addr show dev "$2" 2>/dev/null |
        awk '{split($4, a, "/"); print a[1]; exit}'
}

ovt__has_addr() {
    [ "$(tun_addr "$1" "$2")" = "$3" ]
}

wait_for_tun_addr() {
    ovt_wait_until "$4" ovt__has_addr "$1" "$2" "$3"
}

ovt__no_addr() {
    [ -z "$(tun_addr "$1" "$2")" ]
}

wait_for_no_tun() {
    ovt_wait_until "$3" ovt__no_addr "$1" "$2"
}

ovt__log_has() {
    grep -E -q -- "$1" "$2" 2>/dev/null
}

wait_for_log() {
    ovt_wait_until "$3" ovt__log_has "$1" "$2"
}

assert_route() {
    local ns=$1 net=$2 dev=${3:-}
    local out
    out=$(ip -n "$ns" -4 route show "$net" 2>/dev/null)
    if [ -z "$out" ]; then
        return 1
    fi
    if [ -n "$dev" ]; then
        grep -q "dev $dev" <<<"$out"
        return
    fi
    return 0
}

ping_through() {
    ip netns exec "$1" ping -n -q -c 2 -i 0.3 -W 2 -w 5 "$2" >/dev/null 2>&1
}

# The server refused the client: its log shows AUTH_FAILED (a 2.6 client
# with the default auth-retry none then exits). The same refusal shows on
# the client's management interface as ">PASSWORD:Verification Failed:
# 'Auth'" when a controller is attached at that moment.
ovt__auth_failed_now() {
    grep -q 'AUTH_FAILED' "$OVT_DIR/$1.log" 2>/dev/null ||
        grep -q "^>PASSWORD:Verification Failed: 'Auth'" \
            "$OVT_DIR/$1.mgmt.log" 2>/dev/null
}

client_auth_failed() {
    ovt_wait_until "${2:-30}" ovt__auth_failed_now "$1"
}

# Watched clients only: the management stream shows the refusal.
client_mgmt_auth_failed() {
    wait_for_log "^>PASSWORD:Verification Failed: 'Auth'" \
        "$OVT_DIR/$1.mgmt.log" "${2:-30}"
}

# Watched clients only: a >STATE notification reached CONNECTED.
client_mgmt_connected() {
    wait_for_log '^>STATE:[0-9]+,CONNECTED,SUCCESS' "$OVT_DIR/$1.mgmt.log" \
        "${2:-30}"
}

# ovt_server_conf FILE PKIDIR SERVERBASE: a plain openvpn server config
# (udp 1194 on all addresses, 100.64.0.0/24, tun0). Callers append lines.
ovt_server_conf() {
    local conf=$1 pki=$2 base=$3
    {
        echo "mode server"
        echo "tls-server"
        echo "dev tun0"
        echo "dev-type tun"
        echo "proto udp"
        echo "port 1194"
        echo "topology subnet"
        echo "ifconfig 100.64.0.1 255.255.255.0"
        echo "ifconfig-pool 100.64.0.100 100.64.0.199 255.255.255.0"
        echo 'push "topology subnet"'
        echo 'push "route-gateway 100.64.0.1"'
        echo "ca $pki/ca.crt"
        echo "cert $pki/$base.crt"
        echo "key $pki/$base.key"
        echo "dh none"
        echo "tls-crypt $pki/tc.key"
        echo "keepalive 10 60"
        echo "verb 3"
    } >"$conf"
}
