#!/usr/bin/env bash
# e2e/harness_selftest.sh: checks the namespace harness itself, without
# ovhad: a plain openvpn server (no management-client-auth) in the gateway
# namespace, one client, tun address + route + ping through the tunnel,
# then teardown and a check that no namespace or process is left.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/tap.sh"
. "$HERE/../lib/netns.sh"
. "$HERE/../lib/pki.sh"
. "$HERE/../lib/openvpn.sh"

ovt_require_netns
command -v openvpn >/dev/null 2>&1 || ovt_skip_all "openvpn not installed"
ovt_init

GW=$(ovt_ns gw)
C1=$(ovt_ns c1)
PKI=$OVT_DIR/pki

ovt_check "switch namespace with a bridge" ovt_switch_create
ovt_check "gateway namespace on the switch" ovt_host_add gw 198.18.0.1
ovt_check "client namespace on the switch" ovt_host_add c1 198.18.0.11
ovt_check "second client namespace on the switch" ovt_host_add c2 198.18.0.12
ovt_check "underlay ping client -> gateway" ping_through "$C1" 198.18.0.1
ovt_check "no test interface in the root namespace" \
    bash -c "! ip -o link show | grep -q -e 'p-gw' -e 'p-c1'"

ovt_check "PKI (CA, server, client, tls-crypt)" \
    bash -c ". '$HERE/../lib/pki.sh' && ovt_pki_init '$PKI' &&
             ovt_pki_server '$PKI' server && ovt_pki_client '$PKI' c1 client-one"
HOSTILE="evil \"quoted\" o'name\\x"
ovt_pki_client "$PKI" evil "$HOSTILE"
if [ "$(ovt_pki_cn "$PKI/evil.crt")" = "$HOSTILE" ]; then
    ovt_ok "hostile CN stored byte for byte"
else
    ovt_not_ok "hostile CN stored byte for byte" "got: $(ovt_pki_cn "$PKI/evil.crt")"
fi

ovt_server_conf "$OVT_DIR/server.conf" "$PKI" server
echo "local 198.18.0.1" >>"$OVT_DIR/server.conf"
ovt_spawn "$GW" "$OVT_DIR/server.log" openvpn --config "$OVT_DIR/server.conf"
SERVER_PID=$OVT_LAST_PID
ovt_check "server initialised" \
    wait_for_log 'Initialization Sequence Completed' "$OVT_DIR/server.log" 30

ovt_client_start c1 "$C1" "$PKI" c1 198.18.0.1
ovt_check "client got a pool address on tun0" \
    wait_for_tun_addr "$C1" tun0 100.64.0.100 30
ovt_check "client log: Initialization Sequence Completed" \
    wait_for_log 'Initialization Sequence Completed' "$(ovt_client_log c1)" 10
ovt_check "route to the tunnel network via tun0" \
    assert_route "$C1" 100.64.0.0/24 tun0
ovt_check "ping through the tunnel to 100.64.0.1" ping_through "$C1" 100.64.0.1
state=$(ovt_client_state c1)
ovt_check "client management state is CONNECTED (got '$state')" \
    test "$state" = CONNECTED
if ping_through "$C1" 100.64.0.77; then
    ovt_not_ok "ping to an unused tunnel address fails"
else
    ovt_ok "ping to an unused tunnel address fails"
fi

# The hostile CN is accepted by openvpn and used as-is (the VERIFY line
# escapes the backslash; the session name in [..] is the raw CN).
C2=$(ovt_ns c2)
ovt_client_start evil "$C2" "$PKI" evil 198.18.0.1
ovt_check "server log shows the hostile CN verbatim" \
    wait_for_log "\\[evil \"quoted\" o'name\\\\x\\] Peer Connection Initiated" \
    "$OVT_DIR/server.log" 30
ovt_check "hostile-CN client got a pool address" \
    wait_for_tun_addr "$C2" tun0 100.64.0.101 30
ovt_client_stop evil

# A second server that refuses everybody (auth script /bin/false with
# auth-user-pass-optional), and a client watched on its management socket.
ovt_server_conf "$OVT_DIR/deny.conf" "$PKI" server
sed -i -e 's/^port 1194/port 1195/' -e 's/^dev tun0/dev tun1/' \
    -e 's/100\.64\.0\./100.64.1./g' "$OVT_DIR/deny.conf"
cat >>"$OVT_DIR/deny.conf" <<EOC
local 198.18.0.1
script-security 2
auth-user-pass-verify /bin/false via-file
auth-user-pass-optional
tmp-dir $OVT_DIR
EOC
ovt_spawn "$GW" "$OVT_DIR/deny.log" openvpn --config "$OVT_DIR/deny.conf"
ovt_check "refusing server initialised" \
    wait_for_log 'Initialization Sequence Completed' "$OVT_DIR/deny.log" 30
OVT_CLIENT_WATCH=1 ovt_client_start refused "$C2" "$PKI" c1 198.18.0.1:1195
ovt_check "refused client: client_auth_failed" client_auth_failed refused 30
ovt_check "refused client: >PASSWORD:Verification Failed on its management" \
    client_mgmt_auth_failed refused 10
ovt_check "refused client: no tunnel address" \
    test -z "$(tun_addr "$C2" tun0)"
OVT_CLIENT_WATCH=1 ovt_client_start watched "$C2" "$PKI" c1 198.18.0.1
ovt_check "watched client: >STATE CONNECTED on its management" \
    client_mgmt_connected watched 30
ovt_client_stop watched

# Server dies: the client notices (ping-restart 6) and tun0 loses its address.
ovt_stop_pid "$SERVER_PID"
ovt_check "client notices a dead server within 25 s" \
    wait_for_log 'Inactivity timeout|SIGUSR1' "$(ovt_client_log c1)" 25

ovt_cleanup
left=$(ovt_leftovers)
ovt_check "teardown leaves no namespace or process${left:+: $left}" \
    test -z "$left"

# A harness killed by SIGTERM half-way still cleans up after itself.
child_out=$OVT_DIR/child.out
bash -c '
    . "$1/../lib/tap.sh"; . "$1/../lib/netns.sh"
    OVT_NO_SUMMARY=1
    ovt_init
    ovt_switch_create && ovt_host_add h1 198.18.0.21 || exit 1
    ovt_spawn "$(ovt_ns h1)" /dev/null sleep 300
    echo "prefix $OVT_P pid $OVT_LAST_PID"
    sleep 300 &
    ovt_track_pid $!
    wait $!
' child "$HERE" >"$child_out" 2>&1 &
child=$!
ovt_wait_until 10 grep -q '^prefix' "$child_out"
read -r _ child_prefix _ child_sleep <"$child_out"
kill -TERM "$child"
ovt_wait_until 15 ovt__pid_dead "$child"
wait "$child" 2>/dev/null
ovt_check "SIGTERM'd harness removed its namespaces" \
    bash -c "! ip netns list | grep -q '^${child_prefix:-none}-'"
ovt_check "SIGTERM'd harness killed its processes" \
    test -n "${child_sleep:-}" -a ! -d "/proc/${child_sleep:-0}"
