# shellcheck shell=bash
# cluster-tests/lib/ovhad.sh: run ovhad (and ovhactl) in the test namespaces.
# Needs netns.sh, pki.sh, openvpn.sh.
#
#   ovt_ovhad_bin_check              OVHA_BIN has ovhad and ovhactl (0/1)
#   ovt_ovhad_config OUT PKI STATE   the standard single-gateway config:
#       gateway 198.18.0.1 udp 1194, tunnel 100.64.0.0/24 (server .1),
#       pool 100.64.0.128/25, keepalive [2, 10], hand_window 10, and the policy
#         alice    allow, static 100.64.0.50, routes 100.96.10.0/24 (group
#                  staff) + 100.96.20.0/24 (own)
#         bob      allow, group staff, address from the pool
#         mallory  deny ("banned in test" / to the client "go away")
#         OVT_EVIL_CN  allow, static 100.64.0.66
#         anything else: denied (policy.default)
#   ovt_ovhad_start NS CONF LOG      start ovhad -c CONF in NS (OVT_OVHAD_PID)
#   ovhactl ARGS...                  $OVHA_BIN/ovhactl -s $OVT_OVHAD_SOCK ARGS
#   ovt_ovhad_openvpn_child          PID(s) of ovhad's openvpn child
#   ovt_ns_openvpn_pids NS           every openvpn process inside NS

OVHA_BIN=${OVHA_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build/bin}
OVT_OVHAD_PID=""
OVT_OVHAD_SOCK=""
# The hostile CN: double quotes, spaces, a single quote and a backslash.
# OpenVPN 2.6.14 passes it through unchanged (tools/README.md).
OVT_EVIL_CN="evil \"quoted\" o'name\\x"
# Not in the policy; alice's CN plus a space and a double quote, so a
# prefix or trimming match would wrongly allow it.
OVT_FAKE_ALICE_CN='alice "'

ovt_ovhad_bin_check() {
    [ -x "$OVHA_BIN/ovhad" ] && [ -x "$OVHA_BIN/ovhactl" ]
}

# YAML single-quoted scalar: only ' needs escaping (doubled).
ovt__yaml_sq() {
    local s=${1//\'/\'\'}
    printf "'%s'" "$s"
}

ovt_ovhad_config() {
    local out=$1 pki=$2 state=$3
    OVT_OVHAD_SOCK="$state/ovhad.sock"
    cat >"$out" <<EOF_CONF
# ovhad config written by cluster-tests/lib/ovhad.sh
node:
  id: gw1
  state_dir: $(ovt__yaml_sq "$state")
  http_socket: $(ovt__yaml_sq "$OVT_OVHAD_SOCK")
log:
  level: debug
  format: text
management:
  command_timeout_ms: 5000
  bytecount_interval: 1
decision:
  deadline_ms: 3000
openvpn:
  binary: /usr/sbin/openvpn
  dev: tun0
  proto: udp
  local: 198.18.0.1
  port: 1194
  ca: $(ovt__yaml_sq "$pki/ca.crt")
  cert: $(ovt__yaml_sq "$pki/gw1.crt")
  key: $(ovt__yaml_sq "$pki/gw1.key")
  tls_crypt: $(ovt__yaml_sq "$pki/tc.key")
  network: 100.64.0.0/24
  keepalive: [2, 10]
  hand_window: 10
  verb: 3
  restart_backoff_min_ms: 200
  restart_backoff_max_ms: 2000
policy:
  default: deny
  default_reason: unknown client
  pool: 100.64.0.128/25
  groups:
    - name: staff
      routes: [100.96.10.0/24]
  clients:
    - cn: alice
      groups: [staff]
      ip: 100.64.0.50
      routes: [100.96.20.0/24]
    - cn: bob
      groups: [staff]
    - cn: mallory
      action: deny
      reason: banned in test
      client_reason: go away
    - cn: $(ovt__yaml_sq "$OVT_EVIL_CN")
      ip: 100.64.0.66
EOF_CONF
}

# The standard PKI for ovt_ovhad_config: server gw1, clients alice, bob,
# mallory, evil (CN = OVT_EVIL_CN), fakealice (CN = OVT_FAKE_ALICE_CN).
ovt_ovhad_pki() {
    local pki=$1
    ovt_pki_init "$pki" && ovt_pki_server "$pki" gw1 &&
        ovt_pki_client "$pki" alice alice &&
        ovt_pki_client "$pki" bob bob &&
        ovt_pki_client "$pki" mallory mallory &&
        ovt_pki_client "$pki" evil "$OVT_EVIL_CN" &&
        ovt_pki_client "$pki" fakealice "$OVT_FAKE_ALICE_CN"
}

ovt_ovhad_start() {
    local ns=$1 conf=$2 log=$3
    ovt_spawn "$ns" "$log" "$OVHA_BIN/ovhad" -c "$conf"
    OVT_OVHAD_PID=$OVT_LAST_PID
}

ovhactl() {
    timeout 10 "$OVHA_BIN/ovhactl" -s "$OVT_OVHAD_SOCK" "$@"
}

ovt__ovhactl_ok() {
    ovhactl "$@" >/dev/null 2>&1
}

# Waits until `ovhactl health` succeeds.
ovt_ovhad_wait_healthy() {
    ovt_wait_until "${1:-30}" ovt__ovhactl_ok health
}

ovt_ovhad_openvpn_child() {
    pgrep -P "$OVT_OVHAD_PID" -x openvpn
}

ovt_ns_openvpn_pids() {
    local p
    for p in $(ip netns pids "$1" 2>/dev/null); do
        if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = openvpn ]; then
            echo "$p"
        fi
    done
}
