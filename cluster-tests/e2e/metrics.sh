#!/usr/bin/env bash
# e2e/metrics.sh: GET /metrics (Prometheus text format 0.0.4) on a
# 3-gateway cluster with real openvpn clients, checked by promtool and
# scraped by a real Prometheus.
#
#   a. the cluster is up; alice, a shaped client and a client with a
#      hostile common name (quotes, a backslash) connect to gw1, mallory is
#      refused there
#   b. /metrics over the unix socket: the content type, `promtool check
#      metrics` reports nothing, every family has HELP and TYPE
#   c. plausible values: decisions allowed and refused on gw1, a decision
#      latency observed, one raft leader, commit/applied indexes > 0 on
#      every gateway, proposals committed with their latency, the replicated
#      sessions and leases seen on every gateway, openvpn and the management
#      link up, alice's bytes counted and the hostile name escaped; a
#      route (gw2), the shaping qdisc and the firewall table (gw1) deleted
#      by hand are each counted as a drift repair
#   d. over the TLS listener (api.listen): no token is 401, the viewer
#      token is 200 with the same exposition
#   e. a Prometheus (own namespace at 198.18.0.20, own storage, killed on
#      exit) scrapes the three gateways over HTTPS with the viewer token:
#      up == 1 for each, ovha metrics queryable, and the hostile CN comes
#      back from its API byte for byte
#
# Binaries from OVHA_BIN. Every wait is bounded; the whole run takes about
# 20 s.
# shellcheck disable=SC2016 # eval strings expand when the check runs
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/tap.sh"
. "$HERE/../lib/netns.sh"
. "$HERE/../lib/pki.sh"
. "$HERE/../lib/openvpn.sh"
. "$HERE/../lib/ovhad.sh"
. "$HERE/../lib/cluster.sh"

STEP=30
PROM_ADDR=198.18.0.20
API_PORT=9443
OVT_CLU_CLIENTS="alice mallory shaped"
OVT_CLU_POLICY_EXTRA="    - cn: $(ovt__yaml_sq "$OVT_EVIL_CN")
      groups: [staff]
    - cn: shaped
      groups: [staff]
      down_kbps: 4000
      up_kbps: 2000"

ovt_require_netns
for tool in openvpn jq curl promtool prometheus; do
    command -v "$tool" >/dev/null 2>&1 || ovt_skip_all "$tool not installed"
done
ovt_init
if ! ovt_ovhad_bin_check; then
    ovt_not_ok "ovhad and ovhactl found in OVHA_BIN=$OVHA_BIN"
    exit 1
fi
T0=$SECONDS

# ---- helpers ----------------------------------------------------------------

cns() {
    ovt_ns "c-$1"
}

addr_of() {
    tun_addr "$(cns "$1")" tun0
}

# The api: section of gateway N (OVT_GW_YAML_FN): the TLS listener on its
# underlay address with its raft certificate (IP SAN 198.18.0.N).
api_yaml() {
    cat <<EOF_API
api:
  tokens_file: $(ovt__yaml_sq "$OVT_DIR/tokens")
  listen: '$(ovt_gw_addr "$1"):$API_PORT'
  tls_cert: $(ovt__yaml_sq "$OVT_RAFT_PKI/node-$1.crt")
  tls_key: $(ovt__yaml_sq "$OVT_RAFT_PKI/node-$1.key")
EOF_API
}

# scrape N [OUT]: /metrics of gateway N over its unix socket into OUT
# (default $OVT_DIR/metrics.N), headers into OUT.h.
scrape() {
    local out=${2:-$OVT_DIR/metrics.$1}
    curl -s -m 5 -D "$out.h" -o "$out" --unix-socket "$(ovt_gw_sock "$1")" \
        http://localhost/metrics
}

# val N SERIES: the value of one exact series (name{labels} as printed)
# in gateway N's last scrape.
val() {
    # Through the environment: awk -v would undo the label escapes.
    S="$2" awk 'substr($0, 1, length(ENVIRON["S"]) + 1) == ENVIRON["S"] " " {
        print substr($0, length(ENVIRON["S"]) + 2); exit }' "$OVT_DIR/metrics.$1"
}

# ge N SERIES MIN: a fresh scrape of N has SERIES >= MIN.
ge() {
    local v
    scrape "$1" || return 1
    v=$(val "$1" "$2")
    [ -n "$v" ] && awk -v v="$v" -v m="$3" 'BEGIN { exit !(v + 0 >= m + 0) }'
}

eq() {
    local v
    scrape "$1" || return 1
    v=$(val "$1" "$2")
    [ "$v" = "$3" ]
}

# Every sample's family has a HELP and a TYPE line before it.
families_ok() {
    awk '
        /^# HELP / { help[$3] = 1; next }
        /^# TYPE / { type[$3] = $4; next }
        /^#/ { next }
        {
            n = $0; sub(/[{ ].*/, "", n); f = n
            if (!(f in type)) { sub(/_(bucket|sum|count)$/, "", f) }
            if (!(f in type) || !(f in help)) { print "no HELP/TYPE: " n; bad = 1 }
        }
        END { exit bad }' "$1"
}

# promtool_clean FILE: promtool prints nothing and exits 0.
promtool_clean() {
    local out rc
    out=$(promtool check metrics <"$1" 2>&1)
    rc=$?
    if [ "$rc" != 0 ] || [ -n "$out" ]; then
        ovt_diag "promtool (rc $rc): $(head -n 5 <<<"$out" | tr '\n' ' ')"
        return 1
    fi
}

# tls_status N [TOKEN]: HTTP status of /metrics on gateway N's TLS
# listener, asked from the prometheus namespace.
tls_status() {
    local auth=()
    if [ -n "${2:-}" ]; then
        auth=(-H "Authorization: Bearer $2")
    fi
    ip netns exec "$(ovt_ns prom)" curl -s -m 5 -o "$OVT_DIR/tls.$1" \
        -w '%{http_code}' --cacert "$OVT_RAFT_PKI/ca.crt" "${auth[@]}" \
        "https://$(ovt_gw_addr "$1"):$API_PORT/metrics"
}

# promq EXPR: the result array of an instant query (JSON).
promq() {
    ip netns exec "$(ovt_ns prom)" curl -s -m 5 -G \
        --data-urlencode "query=$1" \
        "http://$PROM_ADDR:9090/api/v1/query" | jq -c '.data.result' 2>/dev/null
}

# Prometheus sees the three gateways up and scrapes ovha metrics there.
prom_all_up() {
    [ "$(promq 'up{job="ovha"} == 1' | jq length)" = 3 ] &&
        [ "$(promq 'ovha_raft_commit_index > 0' | jq length)" = 3 ]
}

prom_evil_cn() {
    [ "$(promq 'ovha_client_bytes_total{direction="in",cn!="_other",cn!="alice"}' |
        jq -r '.[0].metric.cn')" = "$OVT_EVIL_CN" ]
}

# ---- a. cluster and clients -------------------------------------------------

ovt_switch_create || exit 1
for n in 1 2 3; do
    ovt_gw_host "$n" || exit 1
done
ovt_host_add "c-alice" 198.18.0.11 || exit 1
ovt_host_add "c-mallory" 198.18.0.12 || exit 1
ovt_host_add "c-evil" 198.18.0.13 || exit 1
ovt_host_add "c-shaped" 198.18.0.14 || exit 1
ovt_host_add prom "$PROM_ADDR" || exit 1
if ! ovt_cluster_pki || ! ovt_pki_client "$OVT_CLU_PKI" evil "$OVT_EVIL_CN"; then
    ovt_not_ok "test PKI" "see $OVT_DIR/pki/openssl.log, $OVT_DIR/raft-pki.log"
    exit 1
fi
# A viewer token for Prometheus: the node keeps only its SHA-256.
TOKEN="ovha_$(openssl rand -hex 32)"
printf '%s' "$TOKEN" >"$OVT_DIR/prom.token"
chmod 0600 "$OVT_DIR/prom.token"
printf 'token prometheus viewer sha256:%s\n' \
    "$(printf '%s' "$TOKEN" | sha256sum | cut -d' ' -f1)" >"$OVT_DIR/tokens"
chmod 0600 "$OVT_DIR/tokens"
OVT_GW_YAML_FN=api_yaml
for n in 1 2 3; do
    ovt_gw_config "$n" "$([ "$n" = 1 ] && echo true || echo false)"
done
ovt_cluster3_up "$STEP" || exit 1
ovt_ok "a. a 3-gateway cluster with the TLS listener configured"

ovt_clu_client alice 1
ovt_clu_client evil 1
ovt_clu_client shaped 1
ovt_check "a. alice is connected to gw1" \
    ovt_wait_until "$STEP" eval '[ -n "$(addr_of alice)" ]'
ovt_check "a. the hostile CN is connected to gw1" \
    ovt_wait_until "$STEP" eval '[ -n "$(addr_of evil)" ]'
ovt_check "a. a shaped client is connected to gw1" \
    ovt_wait_until "$STEP" eval '[ -n "$(addr_of shaped)" ]'
ovt_clu_client mallory 1
# Traffic through the tunnel, for the byte counters.
ip netns exec "$(cns alice)" ping -c 5 -i 0.2 -W 1 100.64.0.1 >/dev/null 2>&1
ip netns exec "$(cns evil)" ping -c 3 -i 0.2 -W 1 100.64.0.1 >/dev/null 2>&1
ovt_check "a. mallory is refused on gw1 (counted)" ovt_wait_until "$STEP" \
    ge 1 'ovha_decisions_total{kind="connect",outcome="deny",reason="refused"}' 1
ovt_client_stop mallory

# ---- b. the exposition --------------------------------------------------------

for n in 1 2 3; do
    ovt_check "b. gw$n: /metrics answers" scrape "$n"
done
ovt_check "b. content type text/plain; version=0.0.4; charset=utf-8" \
    grep -qi '^content-type: text/plain; version=0.0.4; charset=utf-8' \
    "$OVT_DIR/metrics.1.h"
for n in 1 2 3; do
    ovt_check "b. gw$n: promtool check metrics finds nothing" \
        promtool_clean "$OVT_DIR/metrics.$n"
    ovt_check "b. gw$n: every family has HELP and TYPE" \
        families_ok "$OVT_DIR/metrics.$n"
done
ovt_diag "gw1: $(grep -vc '^#' "$OVT_DIR/metrics.1") series," \
    "$(wc -c <"$OVT_DIR/metrics.1") bytes"

# ---- c. values ------------------------------------------------------------------

ovt_check "c. gw1: decisions allowed >= 3" ge 1 \
    'ovha_decisions_total{kind="connect",outcome="allow",reason="allowed"}' 3
ovt_check "c. gw1: decision latency observed" ge 1 \
    'ovha_decision_duration_seconds_count' 4
ovt_check "c. gw1: the +Inf bucket equals the count" eval \
    '[ "$(val 1 "ovha_decision_duration_seconds_bucket{le=\"+Inf\"}")" = "$(val 1 ovha_decision_duration_seconds_count)" ]'
ovt_check "c. gw1: 3 established sessions" ge 1 \
    'ovha_sessions{state="established"}' 3
ovt_check "c. gw1: openvpn up, management link up" eval \
    'eq 1 ovha_openvpn_up 1 && eq 1 ovha_management_link_up 1'
ovt_check "c. gw1: openvpn never restarted" eq 1 ovha_openvpn_restarts_total 0
leaders=0
for n in 1 2 3; do
    scrape "$n"
    [ "$(val "$n" 'ovha_raft_role{role="leader"}')" = 1 ] &&
        leaders=$((leaders + 1))
    ovt_check "c. gw$n: raft commit and applied index > 0, leader known" \
        eval "ge $n ovha_raft_commit_index 1 && ge $n ovha_raft_applied_index 1 &&
              eq $n ovha_raft_leader_known 1"
    ovt_check "c. gw$n: the replicated sessions (3 established)" \
        ovt_wait_until 10 ge "$n" 'ovha_cluster_sessions{state="established"}' 3
    ovt_check "c. gw$n: the replicated leases (3 live)" \
        ge "$n" 'ovha_leases{state="live"}' 3
done
ovt_check "c. exactly one gateway has role leader ($leaders)" [ "$leaders" = 1 ]
ovt_check "c. gw1: proposals committed, with their latency" eval \
    'ge 1 "ovha_raft_proposals_total{outcome=\"committed\"}" 1 &&
     ge 1 ovha_raft_proposal_duration_seconds_count 1'
ovt_check "c. gw1: alice's bytes counted, both ways" ovt_wait_until 10 eval \
    'ge 1 "ovha_client_bytes_total{cn=\"alice\",direction=\"in\"}" 1 &&
     ge 1 "ovha_client_bytes_total{cn=\"alice\",direction=\"out\"}" 1'
EVIL_LABEL=$(printf '%s' "$OVT_EVIL_CN" | sed 's/\\/\\\\/g; s/"/\\"/g')
ovt_check "c. gw1: the hostile CN's series, escaped" \
    ge 1 "ovha_client_bytes_total{cn=\"$EVIL_LABEL\",direction=\"in\"}" 1
ovt_check "c. gw1: the _other series is there (bounded family)" \
    ge 1 'ovha_client_bytes_total{cn="_other",direction="in"}' 0
ovt_check "c. gw1: reconcile passes counted (routes, shaping)" eval \
    'ge 1 "ovha_reconcile_passes_total{reconciler=\"routes\"}" 1 &&
     ge 1 "ovha_reconcile_passes_total{reconciler=\"shaping\"}" 1'
# A route of gw2 (alice's address via gw1) deleted by hand: the next pass
# puts it back and counts a drift repair.
ROUTE=$(ip -n "$(ovt_ns gw2)" -o route show table all proto 233 | head -n 1)
if [ -n "$ROUTE" ]; then
    # shellcheck disable=SC2086 # the route spec is words
    ip -n "$(ovt_ns gw2)" route del $ROUTE
    ovt_check "c. gw2: a route deleted by hand counts as a drift repair" \
        ovt_wait_until 10 ge 2 \
        'ovha_reconcile_drift_repairs_total{reconciler="routes"}' 1
else
    ovt_not_ok "c. gw2 has a cluster route to delete" \
        "$(ip -n "$(ovt_ns gw2)" -o route show table all | head -n 5)"
fi

# The shaping layout removed by hand on gw1: put back, counted.
ovt_check "c. gw1: the shaped client's class is installed" ovt_wait_until 10 \
    eval 'tc -n "$(ovt_ns gw1)" class show dev tun0 | grep -q "rate 4Mbit"'
# One more pass with the same client set, so the next change is drift.
scrape 1
P0=$(val 1 'ovha_reconcile_passes_total{reconciler="shaping"}')
ovt_wait_until 10 ge 1 'ovha_reconcile_passes_total{reconciler="shaping"}' \
    $((${P0:-0} + 1))
tc -n "$(ovt_ns gw1)" qdisc del dev tun0 root
ovt_check "c. gw1: shaping deleted by hand counts as a drift repair" \
    ovt_wait_until 10 ge 1 \
    'ovha_reconcile_drift_repairs_total{reconciler="shaping"}' 1
# A firewall policy, then its table deleted by hand on gw1: the periodic
# check finds it, the next pass re-applies it.
printf '%s\n' '{"version": 1, "default": "accept", "isolation": false,
    "groups": ["staff"], "rules": []}' >"$OVT_DIR/policy.json"
ovt_check "c. a firewall policy applied" eval \
    'ovt_ctl 1 policy apply "$OVT_DIR/policy.json" >"$OVT_DIR/policy.out" 2>&1'
has_table() {
    ip netns exec "$(ovt_ns gw1)" nft list table inet ovha >/dev/null 2>&1
}
ovt_check "c. gw1: the firewall table is there" ovt_wait_until 10 has_table
ip netns exec "$(ovt_ns gw1)" nft delete table inet ovha
ovt_check "c. gw1: the table deleted by hand counts as a drift repair" \
    ovt_wait_until 20 ge 1 \
    'ovha_reconcile_drift_repairs_total{reconciler="firewall"}' 1
ovt_check "c. gw1: firewall passes counted" ge 1 \
    'ovha_reconcile_passes_total{reconciler="firewall"}' 1

# ---- d. the TLS listener ------------------------------------------------------------

ovt_check "d. gw1 over TLS without a token: 401" \
    ovt_wait_until 10 eval '[ "$(tls_status 1)" = 401 ]'
ovt_check "d. gw1 over TLS with the viewer token: 200" \
    eval '[ "$(tls_status 1 "$TOKEN")" = 200 ]'
ovt_check "d. the TLS answer is the exposition" \
    grep -q '^# TYPE ovha_raft_term gauge$' "$OVT_DIR/tls.1"

# ---- e. Prometheus ---------------------------------------------------------------------

mkdir -p "$OVT_DIR/prom/data"
cat >"$OVT_DIR/prom/prometheus.yml" <<EOF_PROM
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: ovha
    scheme: https
    tls_config:
      ca_file: $OVT_RAFT_PKI/ca.crt
    authorization:
      type: Bearer
      credentials_file: $OVT_DIR/prom.token
    static_configs:
      - targets:
          - $(ovt_gw_addr 1):$API_PORT
          - $(ovt_gw_addr 2):$API_PORT
          - $(ovt_gw_addr 3):$API_PORT
EOF_PROM
ovt_check "e. promtool accepts the scrape config" eval \
    'promtool check config "$OVT_DIR/prom/prometheus.yml" >"$OVT_DIR/prom/check.log" 2>&1'
ovt_spawn "$(ovt_ns prom)" "$OVT_DIR/prom/prometheus.log" \
    prometheus --config.file="$OVT_DIR/prom/prometheus.yml" \
    --storage.tsdb.path="$OVT_DIR/prom/data" \
    --web.listen-address="$PROM_ADDR:9090" --log.level=warn
PROM_PID=$OVT_LAST_PID
if ovt_wait_until "$STEP" prom_all_up; then
    ovt_ok "e. prometheus: up == 1 for the 3 gateways, ovha metrics stored"
else
    ovt_not_ok "e. prometheus: up == 1 for the 3 gateways" \
        "$(promq up | head -c 400) $(tail -n 3 "$OVT_DIR/prom/prometheus.log" | tr '\n' ' ')"
fi
ovt_check "e. prometheus: one leader among the targets" \
    eval '[ "$(promq "sum(ovha_raft_role{role=\"leader\"})" | jq -r ".[0].value[1]")" = 1 ]'
ovt_check "e. prometheus: the hostile CN comes back byte for byte" \
    ovt_wait_until 10 prom_evil_cn
ovt_check "e. prometheus: decision latency quantile computable" \
    eval '[ "$(promq "histogram_quantile(0.99, ovha_decision_duration_seconds_bucket{instance=\"$(ovt_gw_addr 1):$API_PORT\"})" | jq -r ".[0].value[1]")" != null ]'
ovt_stop_pid "$PROM_PID" 10
ovt_check "e. prometheus stopped" eval '! ovt_pid_alive $PROM_PID'

ovt_client_stop alice
ovt_client_stop evil
ovt_client_stop shaped
ovt_diag "elapsed $((SECONDS - T0)) s"
