# shellcheck shell=bash
# cluster-tests/lib/cluster.sh: several ovhad gateways replicating through
# raft, each with its own openvpn, in the test namespaces. Needs tap.sh,
# netns.sh, pki.sh, openvpn.sh and ovhad.sh.
#
# Gateway N (1..9) is host "gwN" at 198.18.0.N: openvpn on udp 1194, raft
# on 198.18.0.N:7000 (the forwarding RPC on 7001), files under
# $OVT_DIR/gwN/ (state/ovhad.sock, raft/, ovhad.yaml, ovhad.K.log).
#
#   ovt_cluster_pki                  openvpn PKI ($OVT_CLU_PKI: servers
#       gw1..gw6, clients from OVT_CLU_CLIENTS) and the raft PKI made by
#       deploy/pki.sh ($OVT_RAFT_PKI: CA, node-1..node-4, node-6) plus a
#       second, unrelated raft CA ($OVT_ROGUE_PKI: node-5)
#   ovt_gw_host N                    namespace gwN with 198.18.0.N
#   ovt_gw_config N BOOTSTRAP        writes $OVT_DIR/gwN/ovhad.yaml; raft id
#       N unless OVT_GW_RAFT_ID is set, raft material from $OVT_RAFT_PKI
#       node-N unless OVT_GW_RAFT_{CA,CERT,KEY} are set
#   ovt_cluster3_up TIMEOUT_S        gw1..gw3 started (configured first),
#       gw1 bootstrapped and leading, gw2 and gw3 joined as voters
#   ovt_gw_start N                   ovhad in gwN (OVT_GW_PID[N]); each start
#       logs to a new file, ovt_gw_log N is the current one, ovt_gw_logs N
#       lists them all
#   ovt_gw_kill N SIG                signal to ovhad N, reaped when it dies
#   ovt_ctl N ARGS...                ovhactl against gateway N's socket
#   ovt_readyz N / ovt_ready_is N true|false   /readyz of gateway N
#   ovt_wait_healthy N TIMEOUT_S     `ovhactl health` answers
#   ovt_cluster_status N             `cluster status --json` of N (or "")
#   ovt_cs N FIELD                   one field of it (see ovt__cs_jq)
#
# Cluster timers are short (OVT_RAFT_* below) so elections take well under
# a second and a restarted node goes through snapshot install quickly.

OVT_CLU_PKI=""
OVT_RAFT_PKI=""
OVT_ROGUE_PKI=""
OVT_CLU_CLIENTS=${OVT_CLU_CLIENTS:-"alice bob carol dave erin mallory"}
OVT_RAFT_ELECTION_MS=${OVT_RAFT_ELECTION_MS:-300}
OVT_RAFT_HEARTBEAT_MS=${OVT_RAFT_HEARTBEAT_MS:-30}
OVT_RAFT_SNAP_THRESHOLD=${OVT_RAFT_SNAP_THRESHOLD:-64}
OVT_RAFT_SNAP_TRAILING=${OVT_RAFT_SNAP_TRAILING:-64}
OVT_GW_HEARTBEAT_MS=${OVT_GW_HEARTBEAT_MS:-500}
OVT_USAGE_INTERVAL_MS=${OVT_USAGE_INTERVAL_MS:-2000}
# Failover: down after 2.5 s without heartbeats, fenced after 1 s without
# a leader (+ up to two elections of 300 ms: below the lease, as required).
OVT_GW_LEASE_MS=${OVT_GW_LEASE_MS:-2500}
OVT_FENCE_MS=${OVT_FENCE_MS:-1000}
OVT_DEPLOY_PKI=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../deploy" && pwd)/pki.sh
declare -A OVT_GW_PID=()
declare -A OVT_GW_RUN=()

ovt_gw_addr() {
    printf '198.18.0.%d' "$1"
}

ovt_gw_dir() {
    printf '%s/gw%d' "$OVT_DIR" "$1"
}

ovt_gw_sock() {
    printf '%s/gw%d/state/ovhad.sock' "$OVT_DIR" "$1"
}

ovt_gw_host() {
    mkdir -p "$(ovt_gw_dir "$1")"
    ovt_host_add "gw$1" "$(ovt_gw_addr "$1")"
}

ovt__raft_pki_quiet() {
    bash "$OVT_DEPLOY_PKI" "$@" >>"$OVT_DIR/raft-pki.log" 2>&1
}

ovt_cluster_pki() {
    local c n
    OVT_CLU_PKI=$OVT_DIR/pki
    OVT_RAFT_PKI=$OVT_DIR/raft-pki
    OVT_ROGUE_PKI=$OVT_DIR/rogue-pki
    ovt_pki_init "$OVT_CLU_PKI" || return 1
    for n in 1 2 3 4 5 6; do
        ovt_pki_server "$OVT_CLU_PKI" "gw$n" || return 1
    done
    for c in $OVT_CLU_CLIENTS; do
        ovt_pki_client "$OVT_CLU_PKI" "$c" "$c" || return 1
    done
    ovt__raft_pki_quiet init "$OVT_RAFT_PKI" || return 1
    for n in 1 2 3 4 6; do
        ovt__raft_pki_quiet issue-node "$OVT_RAFT_PKI" "$n" \
            "$(ovt_gw_addr "$n"):7000" || return 1
    done
    ovt__raft_pki_quiet init "$OVT_ROGUE_PKI" || return 1
    ovt__raft_pki_quiet issue-node "$OVT_ROGUE_PKI" 5 \
        "$(ovt_gw_addr 5):7000" || return 1
    # ovhad runs as root here, but keep the directories readable for the
    # work dir listing.
    chmod 0755 "$OVT_RAFT_PKI" "$OVT_ROGUE_PKI"
}

# The cluster policy, identical on every gateway: everyone allowed takes
# an address from the replicated pool (so stickiness is the lease table's
# doing, not a static ip), mallory is denied.
ovt__cluster_policy() {
    cat <<'EOF_POL'
policy:
  default: deny
  default_reason: unknown client
  pool: 100.64.0.128/25
  groups:
    - name: staff
      routes: [100.96.10.0/24]
EOF_POL
    # More groups (YAML list items) for OVT_CLU_POLICY_EXTRA's clients.
    if [ -n "${OVT_CLU_GROUPS_EXTRA:-}" ]; then
        printf '%s\n' "$OVT_CLU_GROUPS_EXTRA"
    fi
    cat <<'EOF_POL'
  clients:
    - cn: alice
      groups: [staff]
      routes: [100.96.20.0/24]
    - cn: bob
      groups: [staff]
    - cn: carol
      groups: [staff]
    - cn: dave
      groups: [staff]
    - cn: erin
      groups: [staff]
    - cn: mallory
      action: deny
      reason: banned in test
      client_reason: go away
EOF_POL
}

# ovt_gw_config N BOOTSTRAP: BOOTSTRAP is true or false. OVT_GW_STANDALONE=1
# leaves the cluster section out (plain standalone ovhad, for the harness).
# OVT_GW_BRIDGE=NAME:UPLINK makes a bridged gateway: openvpn on tap0
# (dev_type tap) and a bridge: section; the test creates NAME and UPLINK.
ovt_gw_config() {
    local n=$1 bootstrap=$2
    local dir addr rid ca cert key
    dir=$(ovt_gw_dir "$n")
    addr=$(ovt_gw_addr "$n")
    rid=${OVT_GW_RAFT_ID:-$n}
    ca=${OVT_GW_RAFT_CA:-$OVT_RAFT_PKI/ca.crt}
    cert=${OVT_GW_RAFT_CERT:-$OVT_RAFT_PKI/node-$n.crt}
    key=${OVT_GW_RAFT_KEY:-$OVT_RAFT_PKI/node-$n.key}
    mkdir -p "$dir"
    {
        cat <<EOF_CONF
# ovhad config written by cluster-tests/lib/cluster.sh
node:
  id: gw$n
  state_dir: $(ovt__yaml_sq "$dir/state")
  http_socket: $(ovt__yaml_sq "$(ovt_gw_sock "$n")")
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
  dev: $([ -n "${OVT_GW_BRIDGE:-}" ] && echo tap0 || echo tun0)
  dev_type: $([ -n "${OVT_GW_BRIDGE:-}" ] && echo tap || echo tun)
  proto: udp
  local: $addr
  port: 1194
  ca: $(ovt__yaml_sq "$OVT_CLU_PKI/ca.crt")
  cert: $(ovt__yaml_sq "$OVT_CLU_PKI/gw$n.crt")
  key: $(ovt__yaml_sq "$OVT_CLU_PKI/gw$n.key")
  tls_crypt: $(ovt__yaml_sq "$OVT_CLU_PKI/tc.key")
  network: 100.64.0.0/24
  keepalive: [2, 10]
  hand_window: 10
  verb: 3
  restart_backoff_min_ms: 200
  restart_backoff_max_ms: 2000
EOF_CONF
        if [ "${OVT_GW_STANDALONE:-0}" != 1 ]; then
            cat <<EOF_CONF
cluster:
  raft_id: $rid
  address: '$addr:7000'
  data_dir: $(ovt__yaml_sq "$dir/raft")
  bootstrap: $bootstrap
  ca: $(ovt__yaml_sq "$ca")
  cert: $(ovt__yaml_sq "$cert")
  key: $(ovt__yaml_sq "$key")
  election_timeout_ms: $OVT_RAFT_ELECTION_MS
  heartbeat_timeout_ms: $OVT_RAFT_HEARTBEAT_MS
  snapshot_threshold: $OVT_RAFT_SNAP_THRESHOLD
  snapshot_trailing: $OVT_RAFT_SNAP_TRAILING
  gateway_heartbeat_ms: $OVT_GW_HEARTBEAT_MS
  usage_interval_ms: $OVT_USAGE_INTERVAL_MS
  pool_name: main
  max_sessions: 1
  on_excess: evict_oldest
  gateway_lease_ms: $OVT_GW_LEASE_MS
  fence_timeout_ms: $OVT_FENCE_MS
  quota_action: ${OVT_QUOTA_ACTION:-kill}
  quota_throttle_kbps: ${OVT_QUOTA_THROTTLE_KBPS:-256}
EOF_CONF
        fi
        if [ -n "${OVT_GW_BRIDGE:-}" ]; then
            printf 'bridge:\n  name: %s\n  uplink: %s\n' \
                "${OVT_GW_BRIDGE%%:*}" "${OVT_GW_BRIDGE#*:}"
        fi
        ovt__cluster_policy
        # More client entries (YAML list items), e.g. a site-to-site CN.
        if [ -n "${OVT_CLU_POLICY_EXTRA:-}" ]; then
            printf '%s\n' "$OVT_CLU_POLICY_EXTRA"
        fi
        # More top-level sections for gateway n (e.g. api:), printed by a
        # function the test defines.
        if [ -n "${OVT_GW_YAML_FN:-}" ]; then
            "$OVT_GW_YAML_FN" "$n"
        fi
    } >"$dir/ovhad.yaml"
}

# ovt_cluster3_up TIMEOUT_S: starts the configured gw1 (bootstrap), waits
# until it leads, starts gw2 and gw3 and joins them as voters. Reports a
# failed step (ovt_not_ok) and returns 1.
ovt_cluster3_up() {
    local t=$1 n
    ovt_gw_start 1
    if ! ovt_wait_healthy 1 "$t" ||
        ! ovt_wait_until "$t" ovt__agreed_leader_q 1; then
        ovt_not_ok "gw1 answers health and leads" \
            "$(tail -n 5 "$(ovt_gw_log 1)")"
        return 1
    fi
    ovt_gw_start 2
    ovt_gw_start 3
    ovt_wait_until "$t" eval 'ovt__ctl_ok 2 health && ovt__ctl_ok 3 health'
    for n in 2 3; do
        ovt_ctl 1 cluster join "$n" "$(ovt_gw_addr "$n"):7000" >/dev/null 2>&1
    done
    if ! ovt_wait_until "$t" ovt_voters_are 1,2,3 1 2 3; then
        ovt_not_ok "three voters" "$(ovt_cluster_status 1)"
        return 1
    fi
}

ovt_gw_log() {
    printf '%s/ovhad.%d.log' "$(ovt_gw_dir "$1")" "${OVT_GW_RUN[$1]:-1}"
}

ovt_gw_logs() {
    ls "$(ovt_gw_dir "$1")"/ovhad.*.log 2>/dev/null
}

ovt_gw_start() {
    local n=$1
    OVT_GW_RUN[$n]=$((${OVT_GW_RUN[$n]:-0} + 1))
    ovt_spawn "$(ovt_ns "gw$n")" "$(ovt_gw_log "$n")" \
        "$OVHA_BIN/ovhad" -c "$(ovt_gw_dir "$n")/ovhad.yaml"
    OVT_GW_PID[$n]=$OVT_LAST_PID
}

ovt_gw_kill() {
    local n=$1 sig=$2 pid=${OVT_GW_PID[$1]:-}
    if [ -z "$pid" ]; then
        return 1
    fi
    kill "-$sig" "$pid" 2>/dev/null
    ovt_wait_until 15 ovt__pid_dead "$pid"
    wait "$pid" 2>/dev/null
    return 0
}

ovt_gw_alive() {
    local pid=${OVT_GW_PID[$1]:-}
    [ -n "$pid" ] && ovt_pid_alive "$pid"
}

ovt_ctl() {
    local n=$1
    shift
    timeout 10 "$OVHA_BIN/ovhactl" -s "$(ovt_gw_sock "$n")" "$@"
}

# ovt_readyz N: gateway N's /readyz answer (JSON), whatever its status.
ovt_readyz() {
    curl -s -m 5 --unix-socket "$(ovt_gw_sock "$1")" http://localhost/readyz
}

# ovt_ready_is N true|false: /readyz of gateway N says ready (or not).
ovt_ready_is() {
    [ "$(ovt_readyz "$1" | jq -r .ready 2>/dev/null)" = "$2" ]
}

ovt__ctl_ok() {
    ovt_ctl "$@" >/dev/null 2>&1
}

ovt_wait_healthy() {
    ovt_wait_until "$2" ovt__ctl_ok "$1" health
}

ovt_cluster_status() {
    ovt_ctl "$1" cluster status --json 2>/dev/null
}

# The status JSON mirrors struct rft_status; these filters accept the
# plausible spellings (a top-level object, or one under "raft"/"cluster").
OVT_CS_ROOT='(if type == "object" and has("raft") then .raft elif type == "object" and has("cluster") and (.cluster|type) == "object" then .cluster else . end)'

# ovt_cs N FIELD: FIELD is one of
#   role          leader|follower|candidate|...
#   leader        the leader's raft id (0/empty if none)
#   term commit last_applied last_index
#   voters        sorted voter ids, comma separated
#   members       sorted "id:role" of every member, comma separated
ovt__cs_jq() {
    case $1 in
    role) echo "$OVT_CS_ROOT | (.state // .role) | tostring | ascii_downcase" ;;
    leader) echo "$OVT_CS_ROOT | (.leader_id // .leader.id // .leader // 0)" ;;
    term) echo "$OVT_CS_ROOT | .term" ;;
    commit) echo "$OVT_CS_ROOT | (.commit_index // .commit)" ;;
    last_applied) echo "$OVT_CS_ROOT | .last_applied" ;;
    last_index) echo "$OVT_CS_ROOT | .last_index" ;;
    voters) echo "$OVT_CS_ROOT | [(.servers // .members // .configuration)[] | select(((.role // .suffrage) | tostring | ascii_downcase) == \"voter\" or .role == 1) | .id] | sort | map(tostring) | join(\",\")" ;;
    members) echo "$OVT_CS_ROOT | [(.servers // .members // .configuration)[] | \"\(.id):\((.role // .suffrage) | tostring | ascii_downcase)\"] | sort | join(\",\")" ;;
    *) return 1 ;;
    esac
}

ovt_cs() {
    local js filter
    js=$(ovt_cluster_status "$1") || return 1
    filter=$(ovt__cs_jq "$2") || return 1
    jq -r "$filter" <<<"$js" 2>/dev/null
}

# Prints the leader id when N gateways (the ids given) all name the same
# leader and exactly one of them is that leader; fails otherwise.
ovt_agreed_leader() {
    local n l first="" leaders=0
    for n in "$@"; do
        l=$(ovt_cs "$n" leader) || return 1
        if [ -z "$l" ] || [ "$l" = 0 ] || [ "$l" = null ]; then
            return 1
        fi
        if [ -z "$first" ]; then
            first=$l
        elif [ "$l" != "$first" ]; then
            return 1
        fi
        if [ "$(ovt_cs "$n" role)" = leader ]; then
            leaders=$((leaders + 1))
        fi
    done
    [ "$leaders" = 1 ] || return 1
    printf '%s' "$first"
}

ovt__agreed_leader_q() {
    ovt_agreed_leader "$@" >/dev/null
}

# ovt_voters_are "1,2,3" N...: every given node reports exactly these voters.
ovt_voters_are() {
    local want=$1 n
    shift
    for n in "$@"; do
        [ "$(ovt_cs "$n" voters)" = "$want" ] || return 1
    done
}

# The members (id:role) agree on every given node; prints them.
ovt_members_agree() {
    local n m first=""
    for n in "$@"; do
        m=$(ovt_cs "$n" members) || return 1
        [ -n "$m" ] || return 1
        if [ -z "$first" ]; then
            first=$m
        elif [ "$m" != "$first" ]; then
            return 1
        fi
    done
    printf '%s' "$first"
}

# ovt_clu_client NAME GW...: (re)starts client NAME (certificate NAME, host
# c-NAME) with the given gateways as its remote list, first one preferred.
ovt_clu_client() {
    local name=$1 g remotes=()
    shift
    for g in "$@"; do
        remotes+=("$(ovt_gw_addr "$g")")
    done
    ovt_client_stop "$name"
    ovt_client_start "$name" "$(ovt_ns "c-$name")" "$OVT_CLU_PKI" "$name" \
        "${remotes[@]}"
}

# ovt_client_gw NAME: the underlay address of the gateway client NAME last
# connected to, from its openvpn log ("" before the first connection).
ovt_client_gw() {
    grep -o 'Peer Connection Initiated with \[AF_INET\][0-9.]*' \
        "$(ovt_client_log "$1")" 2>/dev/null | tail -n 1 | grep -o '[0-9.]*$'
}

# ovt_gw_state N G: gateway G's replicated state (active, standby,
# draining, down) as node N sees it.
ovt_gw_state() {
    ovt_ctl "$1" cluster gateways --json 2>/dev/null |
        jq -r --arg g "$2" '.gateways[] | select(.id == $g) | .state'
}

ovt_gw_state_is() {
    [ "$(ovt_gw_state "$1" "$2")" = "$3" ]
}
