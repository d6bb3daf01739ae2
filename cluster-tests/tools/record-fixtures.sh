#!/usr/bin/env bash
# tools/record-fixtures.sh [SCENARIO...]: re-records the OpenVPN management
# transcripts in mgmt/tests/fixtures/ with the openvpn installed here
# (fixtures were made with 2.6.14). Needs root. Builds throw-away
# namespaces (gateway 198.18.0.1, clients .11-.14), a test PKI and configs,
# then runs record-transcript.py once per scenario against a fresh server.
# OUTDIR overrides the destination. -v shows the dialogue on stderr.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUTDIR=${OUTDIR:-$REPO/mgmt/tests/fixtures}
# shellcheck disable=SC2034 # read by lib/netns.sh
OVT_NO_SUMMARY=1
. "$HERE/../lib/tap.sh"
. "$HERE/../lib/netns.sh"
. "$HERE/../lib/pki.sh"
. "$HERE/../lib/openvpn.sh"

VERBOSE=()
if [ "${1:-}" = "-v" ]; then
    VERBOSE=(-v)
    shift
fi
SCENARIOS=("$@")
if [ ${#SCENARIOS[@]} -eq 0 ]; then
    SCENARIOS=(connect-auth-established deny reauth two-clients
        status3-waiting hostile-cn env-filter kill-restart
        controller-reconnect)
fi

# The hostile CN (scenario hostile-cn); EVIL_CN overrides it.
DEFAULT_EVIL_CN="evil \"quoted\" o'name\\x"
EVIL_CN=${EVIL_CN:-$DEFAULT_EVIL_CN}

ovt_require_netns
ovt_init
mkdir -p "$OUTDIR"
PKI=$OVT_DIR/pki
ovt_switch_create || exit 1
ovt_host_add gw 198.18.0.1 || exit 1
ovt_host_add c1 198.18.0.11 || exit 1
ovt_host_add c2 198.18.0.12 || exit 1
ovt_host_add c3 198.18.0.13 || exit 1
ovt_host_add c4 198.18.0.14 || exit 1
ovt_pki_init "$PKI" && ovt_pki_server "$PKI" server &&
    ovt_pki_client "$PKI" alice alice && ovt_pki_client "$PKI" bob bob &&
    ovt_pki_client "$PKI" mallory mallory &&
    ovt_pki_client "$PKI" evil "$EVIL_CN" || exit 1

SOCK=$OVT_DIR/server.mgmt
ovt_server_conf "$OVT_DIR/server.conf" "$PKI" server
cat >>"$OVT_DIR/server.conf" <<EOC
local 198.18.0.1
hand-window 20
management $SOCK unix
management-hold
management-client-auth
auth-user-pass-optional
EOC

ovt_client_conf alice "$PKI" alice 198.18.0.1
ovt_client_conf bob "$PKI" bob 198.18.0.1
ovt_client_conf mallory "$PKI" mallory 198.18.0.1
ovt_client_conf evil "$PKI" evil 198.18.0.1
OVT_CLIENT_EXTRA="reneg-sec 10" ovt_client_conf alice-reneg "$PKI" alice 198.18.0.1

ovpn() {
    printf 'ip netns exec %s openvpn --config %s' "$(ovt_ns "$1")" "$OVT_DIR/$2.conf"
}

rc=0
for sc in "${SCENARIOS[@]}"; do
    python3 "$HERE/record-transcript.py" "${VERBOSE[@]}" --scenario "$sc" \
        --socket "$SOCK" --outdir "$OUTDIR" --logdir "$OVT_DIR" \
        --server "$(ovpn gw server)" \
        --client "alice=$(ovpn c1 alice)" \
        --client "alice-reneg=$(ovpn c1 alice-reneg)" \
        --client "bob=$(ovpn c2 bob)" \
        --client "mallory=$(ovpn c3 mallory)" \
        --client "evil=$(ovpn c4 evil)" || rc=1
done
if [ "$rc" != 0 ]; then
    # shellcheck disable=SC2034 # read by lib/netns.sh
    OVT_KEEP=1
    echo "some scenario failed; logs in $OVT_DIR" >&2
fi
exit "$rc"
