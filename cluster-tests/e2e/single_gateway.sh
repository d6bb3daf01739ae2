#!/usr/bin/env bash
# e2e/single_gateway.sh: one ovhad gateway with real openvpn in network
# namespaces, real 2.6 clients, and the policy of lib/ovhad.sh.
#
#   1. allowed clients get exactly the pushed address and routes, and
#      traffic passes the tunnel
#   2. a denied client gets AUTH_FAILED and no tunnel
#   3. `ovhactl kill CN` drops a live client, which reconnects
#   4. SIGKILL of the openvpn child: the supervisor restarts it, clients
#      come back
#   5. SIGKILL of ovhad, then a new ovhad: no orphan openvpn, no stale
#      socket, clients come back
#   6. a CN with quotes, spaces, a backslash and a single quote is matched
#      exactly, causes no option injection and can be killed by name; a CN
#      that merely starts with an allowed one is denied
#   7. a client renegotiating every 10 s stays connected (REAUTH answered)
#   8. SIGTERM stops ovhad and its openvpn
#
# Binaries from OVHA_BIN (default <repo>/build/bin). Every wait is bounded
# (STEP seconds, RECONNECT for waits that include a client's ping-restart).
# Logs are kept in the printed directory when a check fails (or OVT_KEEP=1).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/tap.sh"
. "$HERE/../lib/netns.sh"
. "$HERE/../lib/pki.sh"
. "$HERE/../lib/openvpn.sh"
. "$HERE/../lib/ovhad.sh"

STEP=30
RECONNECT=45
# The gateway pings every 2 s (keepalive [2, 10] in the config), so a client
# may give up on a dead server after 6 s.
export OVT_CLIENT_PING_RESTART=6

ovt_require_netns
command -v openvpn >/dev/null 2>&1 || ovt_skip_all "openvpn not installed"
ovt_init

if ! ovt_ovhad_bin_check; then
    ovt_not_ok "ovhad and ovhactl found in OVHA_BIN=$OVHA_BIN"
    exit 1
fi

GW=$(ovt_ns gw)
NS_ALICE=$(ovt_ns c1)
NS_BOB=$(ovt_ns c2)
NS_MALLORY=$(ovt_ns c3)
NS_EVIL=$(ovt_ns c4)
NS_FAKE=$(ovt_ns c5)
PKI=$OVT_DIR/pki
STATE=$OVT_DIR/state
CONF=$OVT_DIR/ovhad.yaml
LOG1=$OVT_DIR/ovhad.log
LOG2=$OVT_DIR/ovhad-2.log

# ---- helpers ------------------------------------------------------------

inits() {
    grep -c 'Initialization Sequence Completed' "$(ovt_client_log "$1")" \
        2>/dev/null
}

ovt__inits_above() {
    [ "$(inits "$1")" -gt "$2" ]
}

# wait_reinit NAME OLDCOUNT TIMEOUT: the client completed a new connection.
wait_reinit() {
    ovt_wait_until "$3" ovt__inits_above "$1" "$2"
}

# Lines of FILE after line N match PATTERN (grep -E).
log_since_has() {
    tail -n "+$(($2 + 1))" "$1" 2>/dev/null | grep -E -q -- "$3"
}

ovt__log_since_has() {
    log_since_has "$@"
}

lines() {
    wc -l <"$1" 2>/dev/null || echo 0
}

in_pool() {
    local a=$1
    case $a in
    100.64.0.*) [ "${a##*.}" -ge 128 ] && [ "${a##*.}" -le 254 ] ;;
    *) return 1 ;;
    esac
}

negate() {
    ! "$@"
}

# All IPv4 addresses of tun0 in NS, with prefix, space separated.
tun_cidrs() {
    ip -n "$1" -4 -o addr show dev tun0 2>/dev/null | awk '{print $4}' |
        tr '\n' ' ' | sed 's/ $//'
}

has_some_addr() {
    [ -n "$(tun_addr "$1" tun0)" ]
}

at_most_one_openvpn() {
    [ "$(ovt_ns_openvpn_pids "$GW" | wc -l)" -le 1 ]
}

ns_empty() {
    [ -z "$(ip netns pids "$1" 2>/dev/null)" ]
}

sessions_has() {
    ovhactl sessions 2>/dev/null | grep -F -q -- "$1"
}

sessions_lacks() {
    ! sessions_has "$1"
}

ovhad_child_is_new() {
    local p
    p=$(ovt_ovhad_openvpn_child)
    [ -n "$p" ] && [ "$p" != "$1" ]
}

pid_gone() {
    ! ovt_pid_alive "$1"
}

# client_back NAME NS ADDR OLDINITS: reconnected, has ADDR, traffic passes.
client_back() {
    wait_reinit "$1" "$4" "$RECONNECT" &&
        wait_for_tun_addr "$2" tun0 "$3" "$STEP" &&
        ovt_wait_until 10 ping_through "$2" 100.64.0.1
}

# ---- setup --------------------------------------------------------------

ovt_switch_create || exit 1
ovt_host_add gw 198.18.0.1 || exit 1
ovt_host_add c1 198.18.0.11 || exit 1
ovt_host_add c2 198.18.0.12 || exit 1
ovt_host_add c3 198.18.0.13 || exit 1
ovt_host_add c4 198.18.0.14 || exit 1
ovt_host_add c5 198.18.0.15 || exit 1
if ! ovt_ovhad_pki "$PKI"; then
    ovt_not_ok "test PKI" "see $PKI/openssl.log"
    exit 1
fi
ovt_ovhad_config "$CONF" "$PKI" "$STATE"

if ! out=$("$OVHA_BIN/ovhad" -n -c "$CONF" 2>&1); then
    ovt_not_ok "ovhad -n accepts the test config" "$out"
    exit 1
fi
ovt_ok "ovhad -n accepts the test config"

ovt_ovhad_start "$GW" "$CONF" "$LOG1"
OVHAD1=$OVT_OVHAD_PID
if ! ovt_ovhad_wait_healthy "$STEP"; then
    ovt_not_ok "ovhad answers ovhactl health" "log: $(tail -n 5 "$LOG1")"
    exit 1
fi
ovt_ok "ovhad answers ovhactl health"
OVPN1=$(ovt_ovhad_openvpn_child)
ovt_check "ovhad runs one openvpn child (pid ${OVPN1:-none})" \
    test -n "$OVPN1" -a "$(echo "$OVPN1" | wc -w)" = 1

# ---- 1. allowed clients -------------------------------------------------

ovt_client_start alice "$NS_ALICE" "$PKI" alice 198.18.0.1
ovt_client_start bob "$NS_BOB" "$PKI" bob 198.18.0.1

ALICE_OK=0
if wait_for_tun_addr "$NS_ALICE" tun0 100.64.0.50 "$STEP"; then
    ALICE_OK=1
    ovt_ok "1. alice has her static address 100.64.0.50 on tun0"
else
    ovt_not_ok "1. alice has her static address 100.64.0.50 on tun0" \
        "tun0: '$(tun_addr "$NS_ALICE" tun0)'"
fi
ovt_check "1. alice has exactly one IPv4 address on tun0, a /24" \
    test "$(tun_cidrs "$NS_ALICE")" = 100.64.0.50/24
ovt_check "1. alice has the group route 100.96.10.0/24 via tun0" \
    assert_route "$NS_ALICE" 100.96.10.0/24 tun0
ovt_check "1. alice has her own route 100.96.20.0/24 via tun0" \
    assert_route "$NS_ALICE" 100.96.20.0/24 tun0
ovt_check "1. alice pings the gateway's tunnel address 100.64.0.1" \
    ping_through "$NS_ALICE" 100.64.0.1

ovt_wait_until "$STEP" has_some_addr "$NS_BOB"
BOB_IP=$(tun_addr "$NS_BOB" tun0)
ovt_check "1. bob has a pool address (100.64.0.128/25): '${BOB_IP}'" \
    in_pool "$BOB_IP"
ovt_check "1. bob has the group route 100.96.10.0/24 via tun0" \
    assert_route "$NS_BOB" 100.96.10.0/24 tun0
ovt_check "1. bob does not get alice's route 100.96.20.0/24" \
    negate assert_route "$NS_BOB" 100.96.20.0/24
ovt_check "1. bob pings the gateway's tunnel address" \
    ping_through "$NS_BOB" 100.64.0.1
ovt_check "1. ovhactl sessions lists alice" \
    ovt_wait_until 10 sessions_has alice
ovt_check "1. ovhactl sessions lists bob" \
    ovt_wait_until 10 sessions_has bob
ovt_check "1. ovhad logged the allow decision for alice" \
    grep -q 'allow cn="alice"' "$LOG1"
ovt_diag "ovhactl sessions:"
ovhactl sessions 2>&1 | sed 's/^/#   /'

# ---- 2. denied client ---------------------------------------------------

OVT_CLIENT_WATCH=1 ovt_client_start mallory "$NS_MALLORY" "$PKI" mallory 198.18.0.1
ovt_check "2. mallory gets AUTH_FAILED" client_auth_failed mallory "$STEP"
ovt_check "2. mallory's management shows Verification Failed ['go away']" \
    wait_for_log "^>PASSWORD:Verification Failed: 'Auth' \\['go away'\\]" \
    "$OVT_DIR/mallory.mgmt.log" 10
ovt_check "2. mallory sees the client reason 'go away'" \
    grep -q 'AUTH_FAILED,go away' "$(ovt_client_log mallory)"
ovt_check "2. mallory's openvpn gives up (auth-retry none)" \
    ovt_wait_until 10 pid_gone "${OVT_CLIENT_PID[mallory]}"
ovt_check "2. mallory has no tunnel address" \
    test -z "$(tun_addr "$NS_MALLORY" tun0)"
ovt_check "2. ovhad logged the deny decision for mallory" \
    grep -q 'deny cn="mallory"' "$LOG1"
ovt_check "2. mallory is not in ovhactl sessions" sessions_lacks mallory

# ---- 3. ovhactl kill ------------------------------------------------------

if [ "$ALICE_OK" = 1 ]; then
    alice_inits=$(inits alice)
    alice_lines=$(lines "$(ovt_client_log alice)")
    bob_inits=$(inits bob)
    out=$(ovhactl kill alice 2>&1)
    rc=$?
    ovt_check "3. ovhactl kill alice succeeds (rc $rc: $out)" test "$rc" = 0
    ovt_check "3. alice sees the session end" \
        ovt_wait_until "$RECONNECT" ovt__log_since_has \
        "$(ovt_client_log alice)" "$alice_lines" \
        'SIGUSR1|RESTART|Inactivity timeout|SIGTERM'
    ovt_check "3. alice reconnects and gets 100.64.0.50 again" \
        client_back alice "$NS_ALICE" 100.64.0.50 "$alice_inits"
    ovt_check "3. bob was not disturbed" test "$(inits bob)" = "$bob_inits"
    ovt_check "3. ovhactl kill of an unknown CN fails" \
        negate ovt__ovhactl_ok kill nobody
else
    ovt_not_ok "3. ovhactl kill" "skipped: alice never connected"
fi

# ---- 4. openvpn child SIGKILL -------------------------------------------

OVPN1=$(ovt_ovhad_openvpn_child)
if [ -n "$OVPN1" ] && [ "$ALICE_OK" = 1 ]; then
    alice_inits=$(inits alice)
    bob_inits=$(inits bob)
    kill -KILL "$OVPN1"
    ovt_check "4. ovhad starts a new openvpn after SIGKILL of $OVPN1" \
        ovt_wait_until "$STEP" ovhad_child_is_new "$OVPN1"
    ovt_check "4. ovhad itself is still running" ovt_pid_alive "$OVHAD1"
    ovt_check "4. alice comes back with 100.64.0.50" \
        client_back alice "$NS_ALICE" 100.64.0.50 "$alice_inits"
    ovt_check "4. bob reconnects" wait_reinit bob "$bob_inits" "$RECONNECT"
    ovt_check "4. bob pings through the tunnel" \
        ovt_wait_until 10 ping_through "$NS_BOB" 100.64.0.1
    ovt_check "4. ovhactl sessions lists alice again" \
        ovt_wait_until 10 sessions_has alice
else
    ovt_not_ok "4. openvpn restart" "skipped: no openvpn child or alice down"
fi

# ---- 5. ovhad SIGKILL and restart ---------------------------------------

OVPN2=$(ovt_ovhad_openvpn_child)
if ovt_pid_alive "$OVHAD1"; then
    alice_inits=$(inits alice)
    kill -KILL "$OVHAD1"
    wait "$OVHAD1" 2>/dev/null
    ovt_ovhad_start "$GW" "$CONF" "$LOG2"

    ovt_check "5. the new ovhad answers health (no stale socket problem)" \
        ovt_ovhad_wait_healthy "$STEP"
    if [ -n "$OVPN2" ]; then
        ovt_check "5. the first run's openvpn ($OVPN2) is gone" \
            ovt_wait_until "$STEP" pid_gone "$OVPN2"
    else
        ovt_not_ok "5. the first run's openvpn is gone" "no pid recorded"
    fi
    ovt_check "5. the new ovhad runs its own openvpn" \
        ovt_wait_until "$STEP" ovhad_child_is_new none
    # Bounded: the old one may take a moment to be reaped.
    ovt_wait_until 10 at_most_one_openvpn
    left=$(ovt_ns_openvpn_pids "$GW" | tr '\n' ' ')
    ovt_check "5. exactly one openvpn in the gateway namespace: $left" \
        test "$(echo "$left" | wc -w)" = 1
    ovt_check "5. alice comes back with 100.64.0.50" \
        client_back alice "$NS_ALICE" 100.64.0.50 "$alice_inits"
    ovt_check "5. bob pings through the tunnel" \
        ovt_wait_until "$RECONNECT" ping_through "$NS_BOB" 100.64.0.1
    ovt_check "5. ovhactl sessions lists alice" \
        ovt_wait_until 10 sessions_has alice
else
    ovt_not_ok "5. ovhad restart" "skipped: ovhad not running"
fi

# ---- 6. hostile CN --------------------------------------------------------

ovt_client_start evil "$NS_EVIL" "$PKI" evil 198.18.0.1
ovt_check "6. the hostile-CN client gets its static 100.64.0.66" \
    wait_for_tun_addr "$NS_EVIL" tun0 100.64.0.66 "$STEP"
ovt_check "6. the hostile-CN client pings through the tunnel" \
    ping_through "$NS_EVIL" 100.64.0.1
ovt_check "6. ovhad logged an allow for the hostile CN" \
    grep -h -q 'allow cn="evil' "$LOG1" "$LOG2"
ovt_check "6. ovhactl sessions lists the hostile-CN client" \
    ovt_wait_until 10 sessions_has evil
ovt_check "6. no 'Options error' from openvpn in ovhad's logs" \
    negate grep -r -q 'Options error' "$LOG1" "$LOG2" "$STATE"
evil_inits=$(inits evil)
out=$(ovhactl kill "$OVT_EVIL_CN" 2>&1)
rc=$?
ovt_check "6. ovhactl kill of the hostile CN succeeds (rc $rc: $out)" \
    test "$rc" = 0
ovt_check "6. the hostile-CN client reconnects with 100.64.0.66" \
    client_back evil "$NS_EVIL" 100.64.0.66 "$evil_inits"
ovt_client_start fakealice "$NS_FAKE" "$PKI" fakealice 198.18.0.1
ovt_check "6. CN 'alice \"' (not in the policy) is denied" \
    client_auth_failed fakealice "$STEP"
ovt_check "6. CN 'alice \"' has no tunnel address" \
    test -z "$(tun_addr "$NS_FAKE" tun0)"
ovt_check "6. alice still passes traffic" ping_through "$NS_ALICE" 100.64.0.1
ovt_check "6. bob still passes traffic" ping_through "$NS_BOB" 100.64.0.1

# ---- 7. renegotiation ----------------------------------------------------

# bob again, now renegotiating every 10 s: each REAUTH must be answered
# (allowed) or openvpn drops the key after hand-window.
ovt_client_stop bob
OVT_CLIENT_EXTRA="reneg-sec 10" ovt_client_start bob "$NS_BOB" "$PKI" bob 198.18.0.1
ovt_check "7. bob (reneg-sec 10) connects" wait_reinit bob 0 "$STEP"
bob_inits=$(inits bob)
bob_lines=$(lines "$(ovt_client_log bob)")
ovt_check "7. bob renegotiates (client log)" \
    ovt_wait_until "$STEP" ovt__log_since_has "$(ovt_client_log bob)" \
    "$bob_lines" 'TLS: soft reset|Renegotiat'
# An unanswered REAUTH fails the key hand_window (10 s in the test config)
# after the soft reset, and the client then gets AUTH_FAILED.
sleep 15
ovt_check "7. no AUTH_FAILED for bob after the renegotiation" \
    negate grep -q AUTH_FAILED "$(ovt_client_log bob)"
ovt_check "7. bob did not reconnect across the renegotiation" \
    test "$(inits bob)" = "$bob_inits"
ovt_check "7. ovhad allowed the REAUTH (debug log)" \
    grep -h -q 'allow reauth cn="bob"' "$LOG1" "$LOG2"
ovt_check "7. bob still passes traffic" ping_through "$NS_BOB" 100.64.0.1
ovt_check "7. ovhad saw no AUTH failure for bob" \
    negate grep -h -q 'deny reauth cn="bob"' "$LOG1" "$LOG2"

# ---- 8. clean stop ---------------------------------------------------------

OVPN3=$(ovt_ovhad_openvpn_child)
kill -TERM "$OVT_OVHAD_PID"
ovt_check "8. ovhad exits within 15 s of SIGTERM" \
    ovt_wait_until 15 pid_gone "$OVT_OVHAD_PID"
ovt_check "8. no process left in the gateway namespace" \
    ovt_wait_until 5 ns_empty "$GW"
if [ -n "$OVPN3" ]; then
    ovt_check "8. its openvpn ($OVPN3) is gone" pid_gone "$OVPN3"
fi
