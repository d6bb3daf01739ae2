#!/usr/bin/env bash
# cluster-tests/demo-single.sh: one standalone ovhad deciding real OpenVPN
# connections, on one machine, in throw-away network namespaces. Needs root
# and openvpn; builds nothing: binaries come from OVHA_BIN (default
# <repo>/build/bin). The cluster demo is demo.sh.
#
#   sudo OVHA_BIN=build/bin cluster-tests/demo-single.sh # until Ctrl-C
#   sudo DEMO_SECONDS=60 cluster-tests/demo-single.sh    # stop after 60 s
#
# Gateway namespace 198.18.0.1 runs ovhad, which runs openvpn (udp 1194,
# tunnel 100.64.0.0/24). Policy (cluster-tests/lib/ovhad.sh):
#   alice    allowed, static 100.64.0.50, routes 100.96.10.0/24 100.96.20.0/24
#   bob      allowed, address from the pool 100.64.0.128/25
#   mallory  denied ("go away")
# Each client runs in its own namespace (198.18.0.11-13). Everything is
# removed on exit; DEMO_KEEP=1 keeps the logs directory.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
OVT_NO_SUMMARY=1
. "$HERE/lib/tap.sh"
. "$HERE/lib/netns.sh"
. "$HERE/lib/pki.sh"
. "$HERE/lib/openvpn.sh"
. "$HERE/lib/ovhad.sh"

DEMO_SECONDS=${DEMO_SECONDS:-0}
OVT_KEEP=${DEMO_KEEP:-0}
export OVT_CLIENT_PING_RESTART=6

say() {
    printf '\n== %s\n' "$*"
}

if [ "$(id -u)" != 0 ]; then
    echo "demo-single.sh: needs root (network namespaces)" >&2
    exit 77
fi
if ! ovt_ovhad_bin_check; then
    echo "demo-single.sh: no ovhad/ovhactl in OVHA_BIN=$OVHA_BIN (build first)" >&2
    exit 1
fi
command -v openvpn >/dev/null 2>&1 || {
    echo "demo-single.sh: openvpn is not installed" >&2
    exit 1
}

ovt_init
trap 'echo; echo "stopping..."; exit 0' INT TERM

say "namespaces (prefix $OVT_P), PKI and config in $OVT_DIR"
ovt_switch_create && ovt_host_add gw 198.18.0.1 &&
    ovt_host_add alice 198.18.0.11 && ovt_host_add bob 198.18.0.12 &&
    ovt_host_add mallory 198.18.0.13 || exit 1
ovt_ovhad_pki "$OVT_DIR/pki" || exit 1
ovt_ovhad_config "$OVT_DIR/ovhad.yaml" "$OVT_DIR/pki" "$OVT_DIR/state"
sed -n '/^policy:/,$p' "$OVT_DIR/ovhad.yaml"

say "starting ovhad in $(ovt_ns gw)"
ovt_ovhad_start "$(ovt_ns gw)" "$OVT_DIR/ovhad.yaml" "$OVT_DIR/ovhad.log"
if ! ovt_ovhad_wait_healthy 30; then
    echo "ovhad did not come up; its log:" >&2
    tail -n 20 "$OVT_DIR/ovhad.log" >&2
    exit 1
fi
ovhactl health

say "starting clients alice, bob, mallory"
for c in alice bob mallory; do
    ovt_client_start "$c" "$(ovt_ns "$c")" "$OVT_DIR/pki" "$c" 198.18.0.1
done
wait_for_tun_addr "$(ovt_ns alice)" tun0 100.64.0.50 30
ovt_wait_until 30 bash -c "ip -n '$(ovt_ns bob)' -4 -o addr show dev tun0 2>/dev/null | grep -q inet"
client_auth_failed mallory 30

for c in alice bob mallory; do
    addr=$(tun_addr "$(ovt_ns "$c")" tun0)
    if [ -n "$addr" ]; then
        if ping_through "$(ovt_ns "$c")" 100.64.0.1; then
            echo "$c: tunnel address $addr, ping 100.64.0.1 ok"
        else
            echo "$c: tunnel address $addr, ping 100.64.0.1 FAILED"
        fi
    elif grep -q AUTH_FAILED "$(ovt_client_log "$c")"; then
        echo "$c: refused: $(grep -o 'AUTH_FAILED.*' "$(ovt_client_log "$c")" | head -n 1)"
    else
        echo "$c: no tunnel (yet)"
    fi
done

say "decisions (ovhad log)"
grep -E 'decide|kill cn=' "$OVT_DIR/ovhad.log"
seen=$(wc -l <"$OVT_DIR/ovhad.log")

say "ovhactl sessions"
ovhactl sessions

if [ "$DEMO_SECONDS" -gt 0 ]; then
    say "running for $DEMO_SECONDS s; new decisions appear below"
else
    say "running until Ctrl-C; new decisions appear below"
fi
start=$SECONDS
while [ "$DEMO_SECONDS" -le 0 ] || [ $((SECONDS - start)) -lt "$DEMO_SECONDS" ]; do
    sleep 1
    now=$(wc -l <"$OVT_DIR/ovhad.log")
    if [ "$now" -gt "$seen" ]; then
        sed -n "$((seen + 1)),${now}p" "$OVT_DIR/ovhad.log" |
            grep -E 'decide|kill cn=|supervisor' || true
        seen=$now
    fi
    if ! ovt_pid_alive "$OVT_OVHAD_PID"; then
        echo "ovhad exited; last lines of its log:"
        tail -n 10 "$OVT_DIR/ovhad.log"
        exit 1
    fi
done
say "ovhactl sessions"
ovhactl sessions
exit 0
