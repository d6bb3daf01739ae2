#!/usr/bin/env bash
# bench/classic_bench.sh: ovhad's per-decision cost side by side, in one
# run on one machine, with (a) the classic OpenVPN approach, a
# `client-connect` script that looks the client up in SQLite and writes its
# config (classic/client-connect.sh), and (b) the lower bound, a management
# responder that answers client-auth with no logic (classic_responder).
# Issue 9. Method and caveats: classic/README.md and docs/benchmarks.md.
#
# Part 1, simulator (namespace <P>-sim, 198.18.0.1 on lo): ovpn_sim plays
#   openvpn's management side and times every decision, from the last byte
#   of >CLIENT:ENV,END written to the last byte of the answer read; the same
#   storms (same N, concurrency and paced rates) against
#     noop     classic_responder respond SOCK: `client-auth CID KID` + END
#     script   classic_responder respond SOCK client-connect.sh: the script
#              run per CONNECT as openvpn runs it (fork+exec+wait, the ENV
#              block as environment, the config file argument), its file
#              sent as the client-auth block
#     ovhad    standalone ovhad (no cluster section) supervising ovpn_sim,
#              local policy: the same 10,000 clients with a static address
#              and two routes each
#   The simulator runs on CPU 0 and the controller on CPU 1 (BENCH_PIN), so
#   they never share a core (see README: a controller that preempts the
#   simulator between its write and its clock read looks faster than it
#   is); one row per target is repeated with both cores for both.
#   cpu_us: the controller's CPU time per decision (ovhad: all threads;
#   the responders: their own plus their waited-for children, the scripts).
# Part 1b (BENCH_CLUSTER=1, the default at full scale): the same rows for
#   a 3-node ovhad cluster (raft over mTLS, as bench/decide_bench.sh) on a
#   follower and on the leader, unpinned; cpu_us of the three together.
# Part 2, the script alone: classic_responder spawn-bench times fork +
#   execve + waitpid of client-connect.sh (and .py) with an openvpn-like
#   environment and the temp files, N times, one at a time.
# Part 3, real openvpn 2.6 clients (namespaces <P>-sw switch, <P>-rc
#   198.18.0.1 classic server with client-connect, <P>-rn 198.18.0.2 server
#   with management-client-auth driven by the noop responder, <P>-ro
#   198.18.0.3 ovhad supervising openvpn, <P>-cl 198.18.0.11 the clients):
#   clients user-0.. connect one at a time, round robin over the three
#   servers; each must get its static address and routes (noop: an address
#   from the pool, it pushes nothing); connect time = from the client's
#   "UDP link remote" log line to "Initialization Sequence Completed"
#   (machine-readable-output timestamps, microseconds).
#
# Knobs: BENCH_SCALE=small (the ctest smoke, under 60 s) or full (default,
# about 6 minutes); BENCH_IDS (clients in SQLite and in the policy, default
# 10000); BENCH_RATES (paced rows, default 100 200 500 1000; small: 200);
# BENCH_SECONDS (per paced row, default 5; small: 1); BENCH_REAL=0 skips
# part 3, BENCH_REAL_K sets its clients per server (full 10, small 1);
# BENCH_CLUSTER=0|1 (part 1b, default 1 at full scale, 0 small);
# BENCH_PIN=0 lets every process use both cores everywhere.
# OVHA_BIN (default <repo>/build/bin) with ovhad, ovhactl, ovpn_sim,
# classic_responder. OVT_KEEP=1 keeps the work dir.
#
# Needs root (namespaces), python3, sqlite3, taskset; part 1b jq; part 3
# also openvpn, openssl and /dev/net/tun. Exit 0 when every storm finished with no
# timeout/deny and every real client got its address and routes; 1
# otherwise; 77 when it cannot run here. Targets are reported, not enforced.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CLASSIC=$HERE/classic
. "$HERE/../lib/tap.sh"
. "$HERE/../lib/netns.sh"
. "$HERE/../lib/pki.sh"
. "$HERE/../lib/openvpn.sh"
. "$HERE/../lib/ovhad.sh"
. "$HERE/../lib/cluster.sh"

CMDLINE="$0 $*"
SCALE=${BENCH_SCALE:-full}
OVPN_SIM=${OVPN_SIM:-$OVHA_BIN/ovpn_sim}
RESPONDER=${CLASSIC_RESPONDER:-$OVHA_BIN/classic_responder}
SIMCTL="$REPO/cluster-tests/sim/simctl.py"
SCRIPT_SH=$CLASSIC/client-connect.sh
SCRIPT_PY=$CLASSIC/client-connect.py
# shellcheck disable=SC2034 # read by lib/netns.sh
OVT_NO_SUMMARY=1
P_CONC=256
TARGET_SCRIPT_X=20
TARGET_NOOP_X=3

case $SCALE in
small)
    S1_N=300 SAT_N=2000 WARM_N=300 P_S=1 DEF_RATES="200"
    SC_S1_N=100 SC_SAT_N=200
    SP_SH_N=100 SP_PY_N=20 REAL_K=1 DEF_CLUSTER=0
    ;;
full)
    S1_N=3000 SAT_N=20000 WARM_N=1000 P_S=5 DEF_RATES="100 200 500 1000"
    SC_S1_N=500 SC_SAT_N=2000
    SP_SH_N=1000 SP_PY_N=200 REAL_K=10 DEF_CLUSTER=1
    ;;
*)
    echo "BENCH_SCALE must be small or full" >&2
    exit 2
    ;;
esac
IDS=${BENCH_IDS:-10000}
RATES=${BENCH_RATES:-$DEF_RATES}
P_S=${BENCH_SECONDS:-$P_S}
REAL=${BENCH_REAL:-1}
CLUSTER=${BENCH_CLUSTER:-$DEF_CLUSTER}
REAL_K=${BENCH_REAL_K:-$REAL_K}
for v in $IDS $RATES $P_S $REAL_K; do
    case $v in
    '' | *[!0-9]*)
        echo "BENCH_IDS, BENCH_RATES, BENCH_SECONDS: positive integers" >&2
        exit 2
        ;;
    esac
done
if [ "$IDS" -lt 50 ] || [ "$IDS" -gt 15000 ]; then
    echo "BENCH_IDS must be 50..15000" >&2
    exit 2
fi
if [ "$REAL_K" -gt "$IDS" ]; then
    REAL_K=$IDS
fi

# ---- can we run? ----------------------------------------------------------
if [ "$(id -u)" != 0 ]; then
    echo "skip: needs root (network namespaces)"
    exit 77
fi
for tool in ip python3 sqlite3 timeout taskset awk; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "skip: missing tool $tool"
        exit 77
    fi
done
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
for f in "$OVHA_BIN/ovhad" "$OVHA_BIN/ovhactl" "$OVPN_SIM" "$RESPONDER"; do
    if [ ! -x "$f" ]; then
        echo "classic_bench: $f not found (build ovhad ovhactl ovpn_sim" \
            "classic_responder)" >&2
        exit 1
    fi
done
REAL_NOTE=""
CLUSTER_NOTE=""
if [ "$CLUSTER" = 1 ] && ! command -v jq >/dev/null 2>&1; then
    CLUSTER=0
    CLUSTER_NOTE="3-node cluster skipped: needs jq"
fi
if [ "$REAL" = 1 ]; then
    if ! command -v openvpn >/dev/null 2>&1 ||
        ! command -v openssl >/dev/null 2>&1 || [ ! -c /dev/net/tun ]; then
        REAL=0
        REAL_NOTE="part 3 skipped: needs openvpn, openssl and /dev/net/tun"
    fi
fi
PIN=${BENCH_PIN:-1}
if [ "$(nproc)" -lt 2 ]; then
    PIN=0
fi
if [ "$PIN" = 1 ]; then
    SIM_PIN=(taskset -c 0)
    CTL_PIN=(taskset -c 1)
else
    SIM_PIN=()
    CTL_PIN=()
fi

ovt_init
FAILED=0
ROWS=()
CLK_TCK=$(getconf CLK_TCK)

say() {
    printf '# %s\n' "$*"
}

die() {
    say "FAILED: $*"
    OVT_KEEP=1
    exit 1
}

field() {
    # field LINE KEY
    local kv
    for kv in $1; do
        if [ "${kv%%=*}" = "$2" ]; then
            printf '%s' "${kv#*=}"
            return 0
        fi
    done
    printf '?'
}

# CPU ticks of PID: utime+stime, plus cutime+cstime (waited-for children)
# with a second argument.
cpu_ticks() {
    local s
    if [ "$1" = cluster ]; then
        cluster_ticks
        return
    fi
    s=$(cat "/proc/$1/stat" 2>/dev/null) || {
        printf '0'
        return
    }
    s=${s##*) }
    # shellcheck disable=SC2086
    set -- $s "${2:-}"
    # Word k here is field k+2 of stat: utime 14, stime 15, cutime 16,
    # cstime 17.
    if [ -n "${18:-}" ]; then
        printf '%s' $((${12} + ${13} + ${14} + ${15}))
    else
        printf '%s' $((${12} + ${13}))
    fi
}

# ---- data: the same clients in SQLite and in ovhad's policy ---------------
"$PY" "$CLASSIC/make_db.py" "$OVT_DIR/clients.db" "$OVT_DIR/policy.yaml" \
    "$IDS" || die "make_db.py"
mkdir -p "$OVT_DIR/tmp"
export CLASSIC_DB=$OVT_DIR/clients.db
: >"$OVT_DIR/dummy.pem"

# ---- part 1: the simulator ------------------------------------------------
NS_SIM=$(ovt_ns sim)
ovt__ns_add "$NS_SIM" || die "cannot create namespace $NS_SIM"
ip -n "$NS_SIM" addr add 198.18.0.1/32 dev lo || die "address 198.18.0.1"

CTL=""     # the current simulator's control socket
CTL_PID="" # the current controller (ovhad or responder)
SIM_PID="" # the current simulator
declare -A P50_1=() SAT=() CPU=() SATBOTH=()

storm() {
    timeout 660 "$PY" "$SIMCTL" "$CTL" storm "$@"
}

sim_ready() {
    timeout 5 "$PY" "$SIMCTL" "$CTL" stats 2>/dev/null |
        grep -q 'mgmt_connected=1 held=0'
}

ROW_FMT='%-11s %-26s %6s %4s %6s %6s %8s %8s %8s %8s %7s %7s'

# run_row TARGET LABEL N CONC [RATE] [children]: one storm over user-0..,
# one table row; sets LAST_LINE, LAST_CPU (us per decision), LAST_RATE.
run_row() {
    local target=$1 label=$2 n=$3 conc=$4 prate=${5:-} kids=${6:-}
    local line k args=("$n" "$IDS" "$conc" user) offer=- capped=- c0 c1 el
    if [ -n "$prate" ]; then
        args+=("rate=$prate")
        offer=$prate
    fi
    c0=$(cpu_ticks "$CTL_PID" $kids)
    line=$(storm "${args[@]}")
    c1=$(cpu_ticks "$CTL_PID" $kids)
    LAST_LINE=$line
    case $line in
    done*) ;;
    *)
        say "$target $label: storm failed: ${line:-no reply}"
        FAILED=1
        ROWS+=("$(printf '%-11s %-26s %6s %4s  FAILED: %s' "$target" "$label" \
            "$n" "$conc" "${line:-no reply}")")
        return 1
        ;;
    esac
    for k in timeout killed skipped deny; do
        if [ "$(field "$line" $k)" != 0 ]; then
            say "$target $label: $k=$(field "$line" $k)"
            FAILED=1
        fi
    done
    if [ -n "$prate" ]; then
        capped=$(field "$line" capped)
    fi
    el=$(field "$line" elapsed_ms)
    LAST_RATE=$((el > 0 ? n * 1000 / el : 0))
    LAST_CPU=$(awk -v a="$c0" -v b="$c1" -v t="$CLK_TCK" -v n="$n" \
        'BEGIN { printf "%.0f", (b - a) * 1e6 / t / n }')
    ROWS+=("$(printf "$ROW_FMT" "$target" "$label" "$n" "$conc" "$offer" \
        "$capped" "$(field "$line" p50_us)" "$(field "$line" p90_us)" \
        "$(field "$line" p99_us)" "$(field "$line" max_us)" "$LAST_RATE" \
        "$LAST_CPU")")
    say "$target $label: $line cpu_us=$LAST_CPU"
}

# The rows every target gets. run_rows TARGET S1_N SAT_N PACED [children]:
# PACED all: every rate of RATES; some: those up to 70% of the saturated
# rate just measured (the script: above that it only queues).
run_rows() {
    local t=$1 s1=$2 sat=$3 paced=$4 kids=${5:-} r pn out maxrate=1000000
    out=$(timeout 15 "$PY" "$SIMCTL" "$CTL" connect user-5) ||
        die "$t: connect user-5: $out"
    case $out in
    "allow "*" 100.64.1.6") ;;
    "allow "*" -")
        # the no-logic responder pushes no address
        [ "$t" = noop ] || die "$t: user-5 got no address: $out"
        ;;
    *) die "$t: user-5: expected 100.64.1.6, got: $out" ;;
    esac
    storm "$WARM_N" "$IDS" 16 user >/dev/null || die "$t: warmup storm"
    if run_row "$t" "1 at a time" "$s1" 1 "" $kids; then
        P50_1[$t]=$(field "$LAST_LINE" p50_us)
    fi
    if run_row "$t" "saturated (16 in flight)" "$sat" 16 "" $kids; then
        SAT[$t]=$LAST_RATE
        CPU[$t]=$LAST_CPU
        if [ "$paced" = some ]; then
            maxrate=$((LAST_RATE * 7 / 10))
        fi
    fi
    for r in $RATES; do
        pn=$((r * P_S))
        if [ "$r" -gt "$maxrate" ]; then
            ROWS+=("$(printf '%-11s %-26s %6s %4s %6s  skipped: above 70%% of its saturated rate' \
                "$t" "paced $r/s" "$pn" "$P_CONC" "$r")")
            continue
        fi
        run_row "$t" "paced $r/s" "$pn" "$P_CONC" "$r" $kids
    done
}

# Both cores for the controller (all its threads) and the simulator.
unpin() {
    if [ "$PIN" = 1 ]; then
        taskset -a -p -c 0-1 "$CTL_PID" >/dev/null 2>&1
        taskset -a -p -c 0-1 "$SIM_PID" >/dev/null 2>&1
    fi
}

row_both() {
    local t=$1 sat=$2 kids=${3:-}
    if [ "$PIN" = 1 ]; then
        unpin
        if run_row "$t" "saturated, both cores" "$sat" 16 "" $kids; then
            SATBOTH[$t]=$LAST_RATE
        fi
    fi
}

stop_target() {
    ovt_stop_pid "$CTL_PID" 10
    if [ -n "$SIM_PID" ]; then
        ovt_stop_pid "$SIM_PID" 5
    fi
    CTL_PID="" SIM_PID=""
}

# responder_target NAME [SCRIPT]: ovpn_sim + classic_responder.
responder_target() {
    local name=$1 script=${2:-} dir=$OVT_DIR/$1
    mkdir -p "$dir"
    CTL=$dir/sim.ctl
    printf 'management %s unix\ndev tun0\nifconfig 100.64.0.1 255.255.192.0\n' \
        "$dir/mgmt.sock" >"$dir/sim.conf"
    ovt_spawn "$NS_SIM" "$dir/sim.log" "${SIM_PIN[@]}" env \
        OVPN_SIM_CTL="$CTL" OVPN_SIM_TIMEOUT_MS=30000 "$OVPN_SIM" \
        --config "$dir/sim.conf"
    SIM_PID=$OVT_LAST_PID
    ovt_spawn "$NS_SIM" "$dir/responder.log" "${CTL_PIN[@]}" env \
        TMPDIR="$OVT_DIR/tmp" "$RESPONDER" respond "$dir/mgmt.sock" $script
    CTL_PID=$OVT_LAST_PID
    ovt_wait_until 30 sim_ready || die "$name: simulator not driven"
}

sim_gw_config() {
    local dir=$1
    mkdir -p "$dir/state"
    {
        cat <<EOF_CONF
# ovhad config written by cluster-tests/bench/classic_bench.sh
node:
  id: gw1
  state_dir: $(ovt__yaml_sq "$dir/state")
  http_socket: $(ovt__yaml_sq "$dir/state/ovhad.sock")
log:
  level: warn
  format: text
management:
  command_timeout_ms: 5000
  bytecount_interval: 5
decision:
  deadline_ms: 3000
openvpn:
  binary: $(ovt__yaml_sq "$OVPN_SIM")
  dev: tun0
  proto: udp
  local: 198.18.0.1
  port: 1194
  ca: $(ovt__yaml_sq "$OVT_DIR/dummy.pem")
  cert: $(ovt__yaml_sq "$OVT_DIR/dummy.pem")
  key: $(ovt__yaml_sq "$OVT_DIR/dummy.pem")
  network: 100.64.0.0/18
  hand_window: 10
  restart_backoff_min_ms: 200
  restart_backoff_max_ms: 2000
EOF_CONF
        cat "$OVT_DIR/policy.yaml"
    } >"$dir/ovhad.yaml"
}

sim_child() {
    SIM_PID=$(pgrep -P "$CTL_PID" -x ovpn_sim | head -1)
    [ -n "$SIM_PID" ]
}

ovhad_target() {
    local dir=$OVT_DIR/ovhad-sim out
    sim_gw_config "$dir"
    out=$("$OVHA_BIN/ovhad" -n -c "$dir/ovhad.yaml" 2>&1) ||
        die "ovhad -n: $out"
    CTL=$dir/sim.ctl
    ovt_spawn "$NS_SIM" "$dir/ovhad.log" "${CTL_PIN[@]}" env \
        OVPN_SIM_CTL="$CTL" OVPN_SIM_TIMEOUT_MS=30000 "$OVHA_BIN/ovhad" \
        -c "$dir/ovhad.yaml"
    CTL_PID=$OVT_LAST_PID
    ovt_wait_until 30 sim_ready || die "ovhad: simulator not driven" \
        "($(tail -3 "$dir/ovhad.log"))"
    ovt_wait_until 10 sim_child || die "ovhad: no ovpn_sim child"
    # ovhad's child is ours to stop too (ovhad stops it on SIGTERM).
    if [ "$PIN" = 1 ]; then
        taskset -p -c 0 "$SIM_PID" >/dev/null || die "taskset $SIM_PID"
    fi
    SIM_PID=""
}

say "part 1: simulator, $IDS clients, pin=$PIN, scale=$SCALE"
responder_target noop
run_rows noop "$S1_N" "$SAT_N" all

row_both noop "$SAT_N"
stop_target

ovhad_target
run_rows ovhad "$S1_N" "$SAT_N" all
SIM_PID=$(pgrep -P "$CTL_PID" -x ovpn_sim | head -1)
row_both ovhad "$SAT_N"
SIM_PID=""
stop_target

responder_target script "$SCRIPT_SH"
run_rows script "$SC_S1_N" "$SC_SAT_N" some kids
row_both script "$SC_SAT_N" kids
stop_target

# ---- part 1b: the 3-node cluster on the simulator -----------------------------
# As bench/decide_bench.sh sets it up (raft over mTLS on 198.18.0.1-3:7000,
# raft data under the work dir), with this bench's policy and no upstream.
# Three ovhad and three simulators share the two cores: no pinning. cpu_us
# is the CPU time of the three ovhad together per decision.
gw_cluster_config() {
    local n=$1 bootstrap=$2 dir
    dir=$(ovt_gw_dir "$n")
    mkdir -p "$dir/state"
    {
        cat <<EOF_CONF
# ovhad config written by cluster-tests/bench/classic_bench.sh
node:
  id: gw$n
  state_dir: $(ovt__yaml_sq "$dir/state")
  http_socket: $(ovt__yaml_sq "$(ovt_gw_sock "$n")")
log:
  level: warn
  format: text
management:
  command_timeout_ms: 5000
  bytecount_interval: 5
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
  network: 100.64.0.0/18
  hand_window: 10
  restart_backoff_min_ms: 200
  restart_backoff_max_ms: 2000
cluster:
  raft_id: $n
  address: '198.18.0.$n:7000'
  data_dir: $(ovt__yaml_sq "$dir/raft")
  snapshot_threshold: 65536
  bootstrap: $bootstrap
  ca: $(ovt__yaml_sq "$OVT_RAFT_PKI/ca.crt")
  cert: $(ovt__yaml_sq "$OVT_RAFT_PKI/node-$n.crt")
  key: $(ovt__yaml_sq "$OVT_RAFT_PKI/node-$n.key")
  pool_name: main
  max_sessions: 64
  on_excess: evict_oldest
EOF_CONF
        cat "$OVT_DIR/policy.yaml"
    } >"$dir/ovhad.yaml"
}

gw_cluster_start() {
    local n=$1
    OVT_GW_RUN[$n]=$((${OVT_GW_RUN[$n]:-0} + 1))
    ovt_spawn "$NS_SIM" "$(ovt_gw_log "$n")" env \
        OVPN_SIM_CTL="$(ovt_gw_dir "$n")/sim.ctl" OVPN_SIM_TIMEOUT_MS=30000 \
        "$OVHA_BIN/ovhad" -c "$(ovt_gw_dir "$n")/ovhad.yaml"
    OVT_GW_PID[$n]=$OVT_LAST_PID
}

gw_sim_ready() {
    CTL=$(ovt_gw_dir "$1")/sim.ctl
    sim_ready
}

# Sums the CPU ticks of the three ovhad: run_row reads CTL_PID's, so the
# cluster rows use a pseudo PID file below.
cluster_ticks() {
    local n t=0
    for n in 1 2 3; do
        t=$((t + $(cpu_ticks "${OVT_GW_PID[$n]}")))
    done
    printf '%s' "$t"
}

declare -A CL_P50=() CL_SAT=() CL_CPU=()
if [ "$CLUSTER" = 1 ]; then
    say "part 1b: 3-node ovhad cluster on the simulator"
    for a in 198.18.0.2 198.18.0.3; do
        ip -n "$NS_SIM" addr add "$a/32" dev lo || die "address $a"
    done
    OVT_RAFT_PKI=$OVT_DIR/raft-pki
    ovt__raft_pki_quiet init "$OVT_RAFT_PKI" || die "raft PKI init"
    for n in 1 2 3; do
        ovt__raft_pki_quiet issue-node "$OVT_RAFT_PKI" "$n" \
            "198.18.0.$n:7000" || die "raft PKI node $n"
        b=false
        [ "$n" = 1 ] && b=true
        gw_cluster_config "$n" "$b"
        out=$("$OVHA_BIN/ovhad" -n -c "$(ovt_gw_dir "$n")/ovhad.yaml" 2>&1) ||
            die "ovhad -n gw$n: $out"
    done
    gw_cluster_start 1
    ovt_wait_healthy 1 30 || die "gw1 not healthy"
    ovt_wait_until 30 ovt__agreed_leader_q 1 || die "gw1 did not lead"
    gw_cluster_start 2
    gw_cluster_start 3
    for n in 2 3; do
        ovt_wait_healthy "$n" 30 || die "gw$n not healthy"
        out=$(ovt_ctl 1 cluster join "$n" "198.18.0.$n:7000" 2>&1) ||
            die "cluster join $n: $out"
    done
    ovt_wait_until 30 ovt_voters_are 1,2,3 1 2 3 || die "voters not 1,2,3"
    ovt_wait_until 30 ovt__agreed_leader_q 1 2 3 || die "no agreed leader"
    for n in 1 2 3; do
        ovt_wait_until 30 gw_sim_ready "$n" || die "simulator of gw$n"
    done
    LEADER=$(ovt_agreed_leader 1 2 3)
    FOLLOWER=1
    [ "$LEADER" = 1 ] && FOLLOWER=2
    for gw in "$FOLLOWER" "$LEADER"; do
        role=follower
        [ "$gw" = "$LEADER" ] && role=leader
        CTL=$(ovt_gw_dir "$gw")/sim.ctl
        CTL_PID=cluster
        run_rows "cl-$role" "$S1_N" "$SAT_N" all
        CL_P50[$role]=${P50_1[cl-$role]:-}
        CL_SAT[$role]=${SAT[cl-$role]:-}
        CL_CPU[$role]=${CPU[cl-$role]:-}
    done
    CTL_PID=""
    for n in 3 2 1; do
        ovt_stop_pid "${OVT_GW_PID[$n]}" 10
    done
fi

# ---- part 2: the script alone, fork + exec + wait ----------------------------
say "part 2: client-connect scripts, fork+exec+wait"
SP_ROWS=()
declare -A SP_P50=() SP_CPU=()
for s in sh:"$SCRIPT_SH":$SP_SH_N py:"$SCRIPT_PY":$SP_PY_N; do
    IFS=: read -r tag path n <<<"$s"
    line=$("${CTL_PIN[@]}" env TMPDIR="$OVT_DIR/tmp" "$RESPONDER" \
        spawn-bench "$path" "$n" "$IDS" "$OVT_DIR/tmp" 2>&1 | tail -1)
    say "client-connect.$tag: $line"
    case $line in
    spawn*) ;;
    *)
        FAILED=1
        SP_ROWS+=("client-connect.$tag  FAILED: $line")
        continue
        ;;
    esac
    if [ "$(field "$line" fail)" != 0 ]; then
        FAILED=1
    fi
    SP_P50[$tag]=$(field "$line" p50_us)
    SP_CPU[$tag]=$(field "$line" cpu_us)
    SP_ROWS+=("$(printf '%-18s %6s %5s %8s %8s %8s %8s %8s %7s %7s' \
        "client-connect.$tag" "$(field "$line" n)" "$(field "$line" fail)" \
        "$(field "$line" p50_us)" "$(field "$line" p90_us)" \
        "$(field "$line" p99_us)" "$(field "$line" max_us)" \
        "$(field "$line" mean_us)" "$(field "$line" rate)" \
        "$(field "$line" cpu_us)")")
done

# ---- part 3: real openvpn ------------------------------------------------------
RL_ROWS=()
declare -A RL_OK=() RL_P50=()
if [ "$REAL" = 1 ]; then
    say "part 3: real openvpn, $REAL_K client(s) per server"
    PKI=$OVT_DIR/pki
    {
        ovt_pki_init "$PKI" && ovt_pki_server "$PKI" server &&
            for ((i = 0; i < REAL_K; i++)); do
                ovt_pki_client "$PKI" "user-$i" "user-$i" || exit 1
            done
    } || die "PKI ($PKI/openssl.log)"
    ovt_switch_create || die "switch namespace"
    ovt_host_add rc 198.18.0.1 || die "host rc"
    ovt_host_add rn 198.18.0.2 || die "host rn"
    ovt_host_add ro 198.18.0.3 || die "host ro"
    ovt_host_add cl 198.18.0.11 || die "host cl"
    NS_CL=$(ovt_ns cl)

    # The server options ovhad writes (node/ovpnconf.c), for the other two.
    real_server_conf() {
        local f=$1 addr=$2
        cat >"$f" <<EOF_OVPN
mode server
tls-server
dev tun0
dev-type tun
topology subnet
proto udp
local $addr
port 1194
ifconfig 100.64.0.1 255.255.192.0
push "topology subnet"
push "route-gateway 100.64.0.1"
ca $PKI/ca.crt
cert $PKI/server.crt
key $PKI/server.key
dh none
tls-crypt $PKI/tc.key
verify-client-cert require
keepalive 2 10
hand-window 10
persist-key
persist-tun
verb 3
machine-readable-output
EOF_OVPN
    }
    # a. classic: client-connect script, SQLite
    real_server_conf "$OVT_DIR/rc.conf" 198.18.0.1
    cat >>"$OVT_DIR/rc.conf" <<EOF_OVPN
script-security 2
tmp-dir $OVT_DIR/tmp
setenv CLASSIC_DB $CLASSIC_DB
client-connect $SCRIPT_SH
EOF_OVPN
    ovt_spawn "$(ovt_ns rc)" "$OVT_DIR/rc.log" openvpn --config \
        "$OVT_DIR/rc.conf"
    # b. noop: management-client-auth, the responder answers
    real_server_conf "$OVT_DIR/rn.conf" 198.18.0.2
    cat >>"$OVT_DIR/rn.conf" <<EOF_OVPN
ifconfig-pool 100.64.48.1 100.64.63.250 255.255.192.0
management $OVT_DIR/rn.mgmt unix
management-client-auth
management-hold
auth-user-pass-optional
EOF_OVPN
    ovt_spawn "$(ovt_ns rn)" "$OVT_DIR/rn.log" openvpn --config \
        "$OVT_DIR/rn.conf"
    ovt_spawn "$(ovt_ns rn)" "$OVT_DIR/rn-responder.log" "$RESPONDER" \
        respond "$OVT_DIR/rn.mgmt"
    # c. ovhad supervising openvpn
    RO=$OVT_DIR/ro
    mkdir -p "$RO/state"
    {
        cat <<EOF_CONF
# ovhad config written by cluster-tests/bench/classic_bench.sh
node:
  id: gw1
  state_dir: $(ovt__yaml_sq "$RO/state")
  http_socket: $(ovt__yaml_sq "$RO/state/ovhad.sock")
log:
  level: warn
  format: text
management:
  command_timeout_ms: 5000
  bytecount_interval: 5
decision:
  deadline_ms: 3000
openvpn:
  binary: /usr/sbin/openvpn
  dev: tun0
  proto: udp
  local: 198.18.0.3
  port: 1194
  ca: $(ovt__yaml_sq "$PKI/ca.crt")
  cert: $(ovt__yaml_sq "$PKI/server.crt")
  key: $(ovt__yaml_sq "$PKI/server.key")
  tls_crypt: $(ovt__yaml_sq "$PKI/tc.key")
  network: 100.64.0.0/18
  keepalive: [2, 10]
  hand_window: 10
  verb: 3
  restart_backoff_min_ms: 200
  restart_backoff_max_ms: 2000
EOF_CONF
        cat "$OVT_DIR/policy.yaml"
    } >"$RO/ovhad.yaml"
    out=$("$OVHA_BIN/ovhad" -n -c "$RO/ovhad.yaml" 2>&1) ||
        die "ovhad -n (real): $out"
    ovt_spawn "$(ovt_ns ro)" "$RO/ovhad.log" "$OVHA_BIN/ovhad" -c \
        "$RO/ovhad.yaml"

    udp_listening() {
        ip netns exec "$1" ss -Hlun 2>/dev/null | grep -q "$2:1194"
    }
    for s in rc:198.18.0.1 rn:198.18.0.2 ro:198.18.0.3; do
        ovt_wait_until 30 udp_listening "$(ovt_ns "${s%%:*}")" "${s#*:}" ||
            die "server ${s%%:*} not listening on ${s#*:}:1194"
    done
    # openvpn is up once its UDP socket is bound; the tun and the
    # management hold come before that.
    sleep 0.5

    # ts_of LOG PATTERN: the first machine-readable timestamp of a line
    # matching PATTERN.
    ts_of() {
        awk -v p="$2" '$0 ~ p { print $1; exit }' "$1" 2>/dev/null
    }

    client_done() {
        grep -q 'Initialization Sequence Completed' "$1" 2>/dev/null
    }

    # real_check KIND I: the client's address and routes.
    real_check() {
        local kind=$1 i=$2 a want g own
        a=$(tun_addr "$NS_CL" tun0)
        if [ "$kind" = noop ]; then
            case $a in
            100.64.4[89].* | 100.64.5[0-9].* | 100.64.6[0-3].*) return 0 ;;
            esac
            say "noop user-$i: address '$a' not from the pool"
            return 1
        fi
        want="100.64.$((1 + i / 250)).$((1 + i % 250))"
        g="100.100.$((i % 50)).0/24"
        own="100.$((96 + i / 4096)).$(((i / 16) % 256)).$(((i % 16) * 16))/28"
        if [ "$a" != "$want" ]; then
            say "$kind user-$i: address '$a', want $want"
            return 1
        fi
        if ! assert_route "$NS_CL" "$g" tun0 ||
            ! assert_route "$NS_CL" "$own" tun0; then
            say "$kind user-$i: routes $g and $own not both via tun0:" \
                "$(ip -n "$NS_CL" -4 route show dev tun0 | tr '\n' ';')"
            return 1
        fi
        return 0
    }

    declare -A RL_TIMES=()
    RL_N=0
    for ((i = 0; i < REAL_K; i++)); do
        for s in classic:198.18.0.1 noop:198.18.0.2 ovhad:198.18.0.3; do
            kind=${s%%:*}
            name=$kind-$i
            # A fresh source port per connect: a stopped UDP client's
            # instance stays on the server until its keepalive expires,
            # and a new client the kernel happened to give the same port
            # would be taken for it ("TLS object CN attempted to change").
            # So the lib's config with `lport` instead of `nobind`.
            lport=$((30000 + RL_N))
            RL_N=$((RL_N + 1))
            OVT_CLIENT_EXTRA=machine-readable-output ovt_client_conf \
                "$name" "$PKI" "user-$i" "${s#*:}" || die "client conf"
            sed -i "s/^nobind\$/lport $lport/" "$OVT_DIR/$name.conf"
            ovt_spawn "$NS_CL" "$OVT_DIR/$name.log" openvpn --config \
                "$OVT_DIR/$name.conf"
            # shellcheck disable=SC2034 # read by ovt_client_stop
            OVT_CLIENT_PID[$name]=$OVT_LAST_PID
            log=$(ovt_client_log "$name")
            if ovt_wait_until 30 client_done "$log" &&
                real_check "$kind" "$i"; then
                t0=$(ts_of "$log" 'UDPv4 link remote')
                t1=$(ts_of "$log" 'Initialization Sequence Completed')
                ms=$(awk -v a="$t0" -v b="$t1" \
                    'BEGIN { printf "%.1f", (b - a) * 1000 }')
                RL_TIMES[$kind]="${RL_TIMES[$kind]:-} $ms"
                RL_OK[$kind]=$((${RL_OK[$kind]:-0} + 1))
            else
                say "$name: no tunnel with the expected address/routes" \
                    "($log)"
                FAILED=1
            fi
            ovt_client_stop "$name"
            wait_for_no_tun "$NS_CL" tun0 10 || die "tun0 of $name stays"
        done
    done
    for kind in classic noop ovhad; do
        stats=$(printf '%s\n' ${RL_TIMES[$kind]:-} | sort -n | awk '
            NF { v[++n] = $1; s += $1 }
            END {
                if (n == 0) { print "- - - -"; exit }
                printf "%.1f %.1f %.1f %.1f", v[int((n + 1) / 2)], s / n,
                    v[1], v[n]
            }')
        read -r p50 mean mn mx <<<"$stats"
        RL_P50[$kind]=$p50
        RL_ROWS+=("$(printf '%-8s %4s %4s %9s %9s %9s %9s' "$kind" \
            "$REAL_K" "${RL_OK[$kind]:-0}" "$p50" "$mean" "$mn" "$mx")")
    done
fi

# ---- report ---------------------------------------------------------------------
ratio() {
    # ratio A B: A / B with 1 decimal, '?' when either is missing or 0
    awk -v a="${1:-}" -v b="${2:-}" 'BEGIN {
        if (a == "" || b == "" || a == "?" || b == "?" || b + 0 == 0) {
            print "?"; exit
        }
        printf "%.1f", a / b }'
}

verdict() {
    # verdict X OP LIMIT
    awk -v x="$1" -v op="$2" -v l="$3" 'BEGIN {
        if (x == "?") { print "n/a"; exit }
        ok = (op == ">=") ? (x + 0 >= l) : (x + 0 <= l)
        print ok ? "met" : "NOT met" }'
}

echo
echo "classic_bench: ovhad vs the classic client-connect script vs a no-logic responder"
echo "machine: $(nproc) cores, $(uname -r); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "command: BENCH_SCALE=$SCALE BENCH_IDS=$IDS BENCH_RATES='$RATES' BENCH_SECONDS=$P_S BENCH_PIN=$PIN BENCH_REAL=$REAL BENCH_CLUSTER=$CLUSTER $CMDLINE"
echo
echo "1. decisions through ovpn_sim ($IDS clients; sim on CPU 0, controller on CPU 1 unless 'both cores';"
echo "   cl-*: 3-node ovhad cluster, storms on a follower / the leader, no pinning, cpu_us of all 3 nodes)"
[ -z "$CLUSTER_NOTE" ] || echo "   $CLUSTER_NOTE"
printf "$ROW_FMT\n" target row n conc offer/s capped p50_us p90_us p99_us \
    max_us done/s cpu_us
for r in "${ROWS[@]}"; do
    echo "$r"
done
echo "latency: last byte of >CLIENT:ENV,END written -> last byte of the answer"
echo "read, by ovpn_sim; cpu_us: controller CPU per decision (script: with"
echo "its children); done/s: n / elapsed of the storm."
echo
echo "2. the client-connect script alone: fork + execve + waitpid, one at a time ($IDS rows in SQLite)"
printf '%-18s %6s %5s %8s %8s %8s %8s %8s %7s %7s\n' script n fail p50_us \
    p90_us p99_us max_us mean_us rate/s cpu_us
for r in "${SP_ROWS[@]}"; do
    echo "$r"
done
echo
if [ "$REAL" = 1 ]; then
    echo "3. real openvpn 2.6 clients, one at a time: UDP link remote -> Initialization Sequence Completed (ms)"
    printf '%-8s %4s %4s %9s %9s %9s %9s\n' server n ok p50 mean min max
    for r in "${RL_ROWS[@]}"; do
        echo "$r"
    done
else
    echo "3. ${REAL_NOTE:-part 3 skipped (BENCH_REAL=0)}"
fi
echo
echo "ratios (same run):"
x_lat_s=$(ratio "${P50_1[script]:-}" "${P50_1[ovhad]:-}")
x_sat_s=$(ratio "${SAT[ovhad]:-}" "${SAT[script]:-}")
x_cpu_s=$(ratio "${CPU[script]:-}" "${CPU[ovhad]:-}")
x_lat_n=$(ratio "${P50_1[ovhad]:-}" "${P50_1[noop]:-}")
x_sat_n=$(ratio "${SAT[noop]:-}" "${SAT[ovhad]:-}")
x_cpu_n=$(ratio "${CPU[ovhad]:-}" "${CPU[noop]:-}")
x_sp=$(ratio "${SP_P50[sh]:-}" "${P50_1[ovhad]:-}")
x_spc=$(ratio "${SP_CPU[sh]:-}" "${CPU[ovhad]:-}")
x_both_n=$(ratio "${SATBOTH[noop]:-}" "${SATBOTH[ovhad]:-}")
x_both_s=$(ratio "${SATBOTH[ovhad]:-}" "${SATBOTH[script]:-}")
printf '  %-44s %7s  target >= %sx: %s\n' \
    "script p50 / ovhad p50 (1 at a time)" "${x_lat_s}x" "$TARGET_SCRIPT_X" \
    "$(verdict "$x_lat_s" '>=' "$TARGET_SCRIPT_X")"
printf '  %-44s %7s  target >= %sx: %s\n' \
    "script alone (part 2) p50 / ovhad p50" "${x_sp}x" "$TARGET_SCRIPT_X" \
    "$(verdict "$x_sp" '>=' "$TARGET_SCRIPT_X")"
printf '  %-44s %7s  target >= %sx: %s\n' \
    "ovhad / script throughput (saturated)" "${x_sat_s}x" "$TARGET_SCRIPT_X" \
    "$(verdict "$x_sat_s" '>=' "$TARGET_SCRIPT_X")"
printf '  %-44s %7s  target >= %sx: %s\n' \
    "script CPU / ovhad CPU per decision" "${x_cpu_s}x" "$TARGET_SCRIPT_X" \
    "$(verdict "$x_cpu_s" '>=' "$TARGET_SCRIPT_X")"
printf '  %-44s %7s  target >= %sx: %s\n' \
    "script alone CPU / ovhad CPU per decision" "${x_spc}x" \
    "$TARGET_SCRIPT_X" "$(verdict "$x_spc" '>=' "$TARGET_SCRIPT_X")"
if [ "$PIN" = 1 ]; then
    printf '  %-44s %7s  target >= %sx: %s\n' \
        "ovhad / script throughput, both cores" "${x_both_s}x" \
        "$TARGET_SCRIPT_X" "$(verdict "$x_both_s" '>=' "$TARGET_SCRIPT_X")"
fi
printf '  %-44s %7s  target <= %sx: %s\n' \
    "ovhad p50 / no-logic p50 (1 at a time)" "${x_lat_n}x" "$TARGET_NOOP_X" \
    "$(verdict "$x_lat_n" '<=' "$TARGET_NOOP_X")"
printf '  %-44s %7s  target <= %sx: %s\n' \
    "no-logic / ovhad throughput (saturated)" "${x_sat_n}x" "$TARGET_NOOP_X" \
    "$(verdict "$x_sat_n" '<=' "$TARGET_NOOP_X")"
printf '  %-44s %7s  target <= %sx: %s\n' \
    "ovhad CPU / no-logic CPU per decision" "${x_cpu_n}x" "$TARGET_NOOP_X" \
    "$(verdict "$x_cpu_n" '<=' "$TARGET_NOOP_X")"
if [ "$PIN" = 1 ]; then
    printf '  %-44s %7s  target <= %sx: %s\n' \
        "no-logic / ovhad throughput, both cores" "${x_both_n}x" \
        "$TARGET_NOOP_X" "$(verdict "$x_both_n" '<=' "$TARGET_NOOP_X")"
fi
if [ "$CLUSTER" = 1 ]; then
    for role in follower leader; do
        printf '  %-44s %7s  (target <= %sx for ovhad: %s)\n' \
            "3 nodes ($role): ovhad p50 / no-logic p50" \
            "$(ratio "${CL_P50[$role]:-}" "${P50_1[noop]:-}")x" \
            "$TARGET_NOOP_X" "$(verdict "$(ratio "${CL_P50[$role]:-}" \
                "${P50_1[noop]:-}")" '<=' "$TARGET_NOOP_X")"
        printf '  %-44s %7s  (target <= %sx for ovhad: %s)\n' \
            "3 nodes ($role): no-logic / ovhad throughput" \
            "$(ratio "${SAT[noop]:-}" "${CL_SAT[$role]:-}")x" \
            "$TARGET_NOOP_X" "$(verdict "$(ratio "${SAT[noop]:-}" \
                "${CL_SAT[$role]:-}")" '<=' "$TARGET_NOOP_X")"
        printf '  %-44s %7s  (target >= %sx for ovhad: %s)\n' \
            "3 nodes ($role): script p50 / ovhad p50" \
            "$(ratio "${P50_1[script]:-}" "${CL_P50[$role]:-}")x" \
            "$TARGET_SCRIPT_X" "$(verdict "$(ratio "${P50_1[script]:-}" \
                "${CL_P50[$role]:-}")" '>=' "$TARGET_SCRIPT_X")"
        printf '  %-44s %7s\n' \
            "3 nodes ($role): CPU of 3 ovhad / no-logic" \
            "$(ratio "${CL_CPU[$role]:-}" "${CPU[noop]:-}")x"
    done
fi
if [ "$REAL" = 1 ]; then
    printf '  real clients, connect p50 (ms): classic %s, noop %s, ovhad %s\n' \
        "${RL_P50[classic]:-?}" "${RL_P50[noop]:-?}" "${RL_P50[ovhad]:-?}"
fi
if [ "$FAILED" != 0 ]; then
    OVT_KEEP=1
    echo "RESULT: FAILED (a storm, a script run or a real client failed; see above)"
    exit 1
fi
echo "RESULT: ok"
exit 0
