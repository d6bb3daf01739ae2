# shellcheck shell=bash
# bench/simcluster.sh: 1 or 3 ovhad gateways whose openvpn is the
# management-interface simulator (sim/ovpn_sim), for the scale benchmarks
# (steady_bench.sh, storm_bench.sh; issue 9). Like decide_bench.sh without
# the upstream, except that each gateway has its own namespace: <P>-gwN
# with 198.18.0.N/24 on eth0, on the bridge of <P>-sw (lib/netns.sh), raft
# over mTLS on :7000/:7001. Own namespaces matter with cluster.routes on:
# each gateway installs a /32 route for every client of the others, and
# gateways sharing one routing table would undo each other's routes.
# Decisions from the local policy (default allow) and the replicated pool.
#
# Needs lib/tap.sh, netns.sh, ovhad.sh, cluster.sh sourced and ovt_init
# run. Knobs (set before sc_up): SC_POOL (openvpn.network and policy.pool,
# default 100.64.0.0/16), SC_MAX_SESSIONS (cluster.max_sessions, 1),
# SC_SNAPSHOT_THRESHOLD (65536), SC_BYTECOUNT (management.bytecount_interval,
# 5), SC_ROUTES (cluster.routes, true), SC_LOG_LEVEL (warn).
#
#   sc_up NODES            the namespaces, PKI, configs; gw1 bootstrapped
#                          and leading, the others joined; every simulator
#                          driven; sets SC_LEADER
#   sc_sim N CMD...        one control command to gateway N's simulator,
#                          prints the reply line (exit 1 on `error`)
#   sc_field LINE KEY      KEY=value from a `done`/`stats` line ('?' if none)
#   sc_sim_pid N           the simulator's PID (from its `stats`)
#   sc_cpu_ticks PID       utime + stime of PID in clock ticks
#   sc_status_kb PID KEY   VmRSS / VmHWM of PID in kB
#   sc_last_index N        raft last_index of gateway N

SC_POOL=${SC_POOL:-100.64.0.0/16}
SC_MAX_SESSIONS=${SC_MAX_SESSIONS:-1}
SC_SNAPSHOT_THRESHOLD=${SC_SNAPSHOT_THRESHOLD:-65536}
SC_BYTECOUNT=${SC_BYTECOUNT:-5}
SC_LOG_LEVEL=${SC_LOG_LEVEL:-warn}
SC_ROUTES=${SC_ROUTES:-true}
SC_SIMCTL=$(cd "$(dirname "${BASH_SOURCE[0]}")/../sim" && pwd)/simctl.py
SC_LEADER=""
SC_CLK_TCK=$(getconf CLK_TCK)

sc_say() {
    printf '# %s\n' "$*"
}

sc_die() {
    sc_say "FAILED: $*"
    OVT_KEEP=1
    exit 1
}

# Exit 77 unless root, the tools and the binaries are there.
sc_require() {
    local tool f
    if [ "$(id -u)" != 0 ]; then
        echo "skip: needs root (network namespaces)"
        exit 77
    fi
    for tool in ip python3 openssl jq timeout getconf; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            echo "skip: missing tool $tool"
            exit 77
        fi
    done
    for f in "$OVHA_BIN/ovhad" "$OVHA_BIN/ovhactl" "$OVPN_SIM"; do
        if [ ! -x "$f" ]; then
            echo "$0: $f not found (build ovhad, ovhactl, ovpn_sim)" >&2
            exit 1
        fi
    done
}

sc_sim_ctl() {
    printf '%s/sim.ctl' "$(ovt_gw_dir "$1")"
}

sc_sim() {
    local n=$1
    shift
    timeout 660 python3 "$SC_SIMCTL" "$(sc_sim_ctl "$n")" "$@"
}

sc_field() {
    local kv
    for kv in $1; do
        if [ "${kv%%=*}" = "$2" ]; then
            printf '%s' "${kv#*=}"
            return 0
        fi
    done
    printf '?'
}

sc_sim_pid() {
    sc_field "$(sc_sim "$1" stats 2>/dev/null)" pid
}

sc_cpu_ticks() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    # fields after the command: state is 1, utime 12, stime 13
    awk '{ print $12 + $13 }' <<<"$stat"
}

sc_status_kb() {
    awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null
}

sc_last_index() {
    ovt_cs "$1" last_index
}

sc__gw_config() {
    local n=$1 bootstrap=$2 dir
    dir=$(ovt_gw_dir "$n")
    mkdir -p "$dir/state"
    cat >"$dir/ovhad.yaml" <<EOF_CONF
# ovhad config written by cluster-tests/bench/simcluster.sh
node:
  id: gw$n
  state_dir: $(ovt__yaml_sq "$dir/state")
  http_socket: $(ovt__yaml_sq "$(ovt_gw_sock "$n")")
log:
  level: $SC_LOG_LEVEL
  format: text
management:
  command_timeout_ms: 5000
  bytecount_interval: $SC_BYTECOUNT
decision:
  deadline_ms: 3000
openvpn:
  binary: $(ovt__yaml_sq "$OVPN_SIM")
  dev: tun0
  proto: udp
  local: 198.18.0.$n
  port: 1194
  ca: $(ovt__yaml_sq "$OVT_DIR/dummy.pem")
  cert: $(ovt__yaml_sq "$OVT_DIR/dummy.pem")
  key: $(ovt__yaml_sq "$OVT_DIR/dummy.pem")
  network: $SC_POOL
  hand_window: 10
  restart_backoff_min_ms: 200
  restart_backoff_max_ms: 2000
policy:
  default: allow
  pool: $SC_POOL
cluster:
  raft_id: $n
  address: '198.18.0.$n:7000'
  data_dir: $(ovt__yaml_sq "$dir/raft")
  snapshot_threshold: $SC_SNAPSHOT_THRESHOLD
  bootstrap: $bootstrap
  ca: $(ovt__yaml_sq "$OVT_RAFT_PKI/ca.crt")
  cert: $(ovt__yaml_sq "$OVT_RAFT_PKI/node-$n.crt")
  key: $(ovt__yaml_sq "$OVT_RAFT_PKI/node-$n.key")
  pool_name: main
  max_sessions: $SC_MAX_SESSIONS
  on_excess: evict_oldest
  routes: $SC_ROUTES
EOF_CONF
}

sc_gw_start() {
    local n=$1
    OVT_GW_RUN[$n]=$((${OVT_GW_RUN[$n]:-0} + 1))
    ovt_spawn "$(ovt_ns "gw$n")" "$(ovt_gw_log "$n")" env OVPN_SIM_CTL="$(sc_sim_ctl "$n")" \
        "$OVHA_BIN/ovhad" -c "$(ovt_gw_dir "$n")/ovhad.yaml"
    OVT_GW_PID[$n]=$OVT_LAST_PID
}

# The simulator of gateway N has its controller and the hold is released.
sc_sim_ready() {
    timeout 5 python3 "$SC_SIMCTL" "$(sc_sim_ctl "$1")" stats 2>/dev/null |
        grep -q 'mgmt_connected=1 held=0'
}

sc_up() {
    local nodes=$1 n b out all=()
    ovt_switch_create || sc_die "cannot create the switch namespace"
    for ((n = 1; n <= nodes; n++)); do
        ovt_host_add "gw$n" "198.18.0.$n" || sc_die "namespace of gw$n"
        all+=("$n")
    done
    OVT_RAFT_PKI=$OVT_DIR/raft-pki
    ovt__raft_pki_quiet init "$OVT_RAFT_PKI" || sc_die "raft PKI init"
    for ((n = 1; n <= nodes; n++)); do
        ovt__raft_pki_quiet issue-node "$OVT_RAFT_PKI" "$n" "198.18.0.$n:7000" ||
            sc_die "raft PKI node $n"
    done
    # The simulator reads no certificate; ovhad only needs the paths.
    : >"$OVT_DIR/dummy.pem"
    for ((n = 1; n <= nodes; n++)); do
        b=false
        [ "$n" = 1 ] && b=true
        sc__gw_config "$n" "$b"
        out=$("$OVHA_BIN/ovhad" -n -c "$(ovt_gw_dir "$n")/ovhad.yaml" 2>&1) ||
            sc_die "ovhad -n gw$n: $out"
    done
    sc_gw_start 1
    ovt_wait_healthy 1 30 || sc_die "gw1 not healthy ($(tail -3 "$(ovt_gw_log 1)"))"
    ovt_wait_until 30 ovt__agreed_leader_q 1 || sc_die "gw1 did not become leader"
    for ((n = 2; n <= nodes; n++)); do
        sc_gw_start "$n"
    done
    for ((n = 2; n <= nodes; n++)); do
        ovt_wait_healthy "$n" 30 || sc_die "gw$n not healthy"
        out=$(ovt_ctl 1 cluster join "$n" "198.18.0.$n:7000" 2>&1) ||
            sc_die "cluster join $n: $out"
    done
    if [ "$nodes" -gt 1 ]; then
        ovt_wait_until 30 ovt_voters_are "$(
            IFS=,
            echo "${all[*]}"
        )" "${all[@]}" || sc_die "voters"
    fi
    ovt_wait_until 30 ovt__agreed_leader_q "${all[@]}" || sc_die "no agreed leader"
    for n in "${all[@]}"; do
        ovt_wait_until 30 sc_sim_ready "$n" || sc_die "simulator of gw$n not driven"
    done
    SC_LEADER=$(ovt_agreed_leader "${all[@]}")
}
