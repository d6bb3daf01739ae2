#!/usr/bin/env bash
# bench/decide_bench.sh: decision latency of a 3-node ovhad cluster whose
# openvpn is the management-interface simulator (sim/ovpn_sim), issue 5.
#
# One network namespace <P>-bench, addresses on lo:
#   198.18.0.1-3   gw1..gw3: ovhad (raft over mTLS on :7000/:7001), each
#                  running ovpn_sim as openvpn.binary (OVPN_SIM_CTL =
#                  $OVT_DIR/gwN/sim.ctl)
#   198.18.0.50    the reference upstream server (HTTPS :8443)
#   198.18.0.60    redis-server :6379 (the shared cache tier)
#
# Scenarios (latency = from the last byte of >CLIENT:ENV,END written by the
# simulator to the last byte of ovhad's client-auth/client-deny read by it):
#   a. warm cache: one connect per identity first, then a storm over the
#      same identities, on a follower (forwarding included) and the leader;
#      then the same one connect at a time (latency without queueing)
#   b. upstream round trip: every CN new (IDENTITIES = N), then one at a
#      time
#   c. reconnect storm: many connects over few fresh identities at high
#      concurrency; upstream requests per identity (target 1.0)
#
# Knobs: BENCH_SCALE=small (the ctest smoke, ~6 s on 2 cores) or full
# (default, ~25 s); BENCH_UPSTREAM=auto|1|0 (auto: use the upstream when
# ovhad accepts the config; 0: decisions from the local policy, no Redis,
# scenario c then has no upstream count);
# BENCH_UPSTREAM_NAGLE=1 runs the upstream server as is (by default it runs
# through upstream_nodelay.py, which sets TCP_NODELAY: the server writes
# headers and body separately and Nagle + delayed ACK add ~40 ms a request);
# OVHA_BIN (default <repo>/build/bin), OVPN_SIM (default
# $OVHA_BIN/ovpn_sim); OVT_KEEP=1 keeps the work dir.
#
# Needs root (namespaces), python3, openssl, jq; with the upstream also
# redis-server, redis-cli and curl (deploy/deps.sh installs them all).
# Exit 0 when every storm finished with no timeout, kill, skip or deny;
# 1 otherwise; 77 when it cannot run here.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
. "$HERE/../lib/tap.sh"
. "$HERE/../lib/netns.sh"
. "$HERE/../lib/ovhad.sh"
. "$HERE/../lib/cluster.sh"

CMDLINE="$0 $*"
SCALE=${BENCH_SCALE:-full}
USE_UPSTREAM=${BENCH_UPSTREAM:-auto}
UP_NAGLE=${BENCH_UPSTREAM_NAGLE:-0}
OVPN_SIM=${OVPN_SIM:-$OVHA_BIN/ovpn_sim}
SIMCTL="$REPO/cluster-tests/sim/simctl.py"
UPSTREAM_PY="$REPO/cluster-tests/tools/upstream-server.py"
UP_ADDR=198.18.0.50
REDIS_ADDR=198.18.0.60
OVT_NO_SUMMARY=1

case $SCALE in
small)
    A_IDS=200 A_N=2000 A_CONC=16 A1_N=200
    B_N=300 B_CONC=16 B1_N=50
    C_N=1000 C_IDS=50 C_CONC=256
    ;;
full)
    A_IDS=200 A_N=20000 A_CONC=16 A1_N=2000
    B_N=2000 B_CONC=16 B1_N=500
    C_N=5000 C_IDS=50 C_CONC=256
    ;;
*)
    echo "BENCH_SCALE must be small or full" >&2
    exit 2
    ;;
esac

# ---- can we run? ----------------------------------------------------------
if [ "$(id -u)" != 0 ]; then
    echo "skip: needs root (network namespaces)"
    exit 77
fi
for tool in ip python3 openssl jq timeout; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "skip: missing tool $tool"
        exit 77
    fi
done
if [ "$USE_UPSTREAM" != 0 ]; then
    for tool in curl redis-server redis-cli; do
        if command -v "$tool" >/dev/null 2>&1; then
            continue
        fi
        if [ "$USE_UPSTREAM" = 1 ]; then
            echo "skip: missing tool $tool (needed with BENCH_UPSTREAM=1)"
            exit 77
        fi
        echo "# $tool missing: local policy only (BENCH_UPSTREAM=0)"
        USE_UPSTREAM=0
    done
fi
for f in "$OVHA_BIN/ovhad" "$OVHA_BIN/ovhactl" "$OVPN_SIM"; do
    if [ ! -x "$f" ]; then
        echo "decide_bench: $f not found (build ovhad, ovhactl, ovpn_sim)" >&2
        exit 1
    fi
done

ovt_init
NS=$(ovt_ns bench)
FAILED=0
ROWS=()

say() {
    printf '# %s\n' "$*"
}

die() {
    say "FAILED: $*"
    OVT_KEEP=1
    exit 1
}

nsx() {
    ip netns exec "$NS" "$@"
}

# ---- namespace ------------------------------------------------------------
ovt__ns_add "$NS" || die "cannot create namespace $NS"
for a in 198.18.0.1 198.18.0.2 198.18.0.3 $UP_ADDR $REDIS_ADDR; do
    ip -n "$NS" addr add "$a/32" dev lo || die "address $a"
done

# ---- PKI: raft mTLS (deploy/pki.sh) and the upstream's server cert ----------
OVT_RAFT_PKI=$OVT_DIR/raft-pki
ovt__raft_pki_quiet init "$OVT_RAFT_PKI" || die "raft PKI init"
for n in 1 2 3; do
    ovt__raft_pki_quiet issue-node "$OVT_RAFT_PKI" "$n" "198.18.0.$n:7000" ||
        die "raft PKI node $n"
done
UP_PKI=$OVT_DIR/up-pki
mkdir -p "$UP_PKI"
up_pki() {
    openssl ecparam -name prime256v1 -genkey -noout -out "$UP_PKI/ca.key" &&
        openssl req -x509 -new -key "$UP_PKI/ca.key" -sha256 -days 1 \
            -subj "/CN=ovha bench upstream CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -out "$UP_PKI/ca.crt" &&
        openssl ecparam -name prime256v1 -genkey -noout -out "$UP_PKI/srv.key" &&
        openssl req -new -key "$UP_PKI/srv.key" -subj "/CN=$UP_ADDR" \
            -out "$UP_PKI/srv.csr" &&
        printf '%s\n' "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature" \
            "extendedKeyUsage=serverAuth" \
            "subjectAltName=IP:$UP_ADDR" >"$UP_PKI/ext.cnf" &&
        openssl x509 -req -in "$UP_PKI/srv.csr" -CA "$UP_PKI/ca.crt" \
            -CAkey "$UP_PKI/ca.key" -CAcreateserial -days 1 -sha256 \
            -extfile "$UP_PKI/ext.cnf" -out "$UP_PKI/srv.crt"
}
up_pki >"$OVT_DIR/up-pki.log" 2>&1 || die "upstream PKI ($OVT_DIR/up-pki.log)"
# The simulator reads no certificate; ovhad only needs the paths to exist.
: >"$OVT_DIR/dummy.pem"

# ---- the upstream's answers: allow, ttl 300, for every bench identity -----
python3 - "$OVT_DIR/answers.json" "$A_IDS" "$B_N" "$C_IDS" "$B1_N" <<'EOF_PY'
import json, sys
out, a, b, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
b1 = int(sys.argv[5])
allow = {"decision": "allow", "reason": "bench", "ttl_s": 300}
data = {}
for i in range(a):
    data["bench-a-%d" % i] = allow
for g in (1, 2, 3):
    for i in range(b):
        data["bench-b%d-%d" % (g, i)] = allow
    for i in range(b1):
        data["bench-s%d-%d" % (g, i)] = allow
for i in range(c):
    data["bench-c-%d" % i] = allow
json.dump(data, open(out, "w"))
EOF_PY

# ---- ovhad configs ----------------------------------------------------------
gw_config() {
    local n=$1 bootstrap=$2 up=$3 dir
    dir=$(ovt_gw_dir "$n")
    mkdir -p "$dir"
    cat >"$dir/ovhad.yaml" <<EOF_CONF
# ovhad config written by cluster-tests/bench/decide_bench.sh
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
policy:
  default: allow
  pool: 100.64.0.0/18
cluster:
  raft_id: $n
  address: '198.18.0.$n:7000'
  data_dir: $(ovt__yaml_sq "$dir/raft")
  bootstrap: $bootstrap
  ca: $(ovt__yaml_sq "$OVT_RAFT_PKI/ca.crt")
  cert: $(ovt__yaml_sq "$OVT_RAFT_PKI/node-$n.crt")
  key: $(ovt__yaml_sq "$OVT_RAFT_PKI/node-$n.key")
  pool_name: main
  max_sessions: 64
  on_excess: evict_oldest
EOF_CONF
    if [ "$up" = 1 ]; then
        cat >>"$dir/ovhad.yaml" <<EOF_CONF
upstream:
  url: https://$UP_ADDR:8443/v1/decide
  ca: $(ovt__yaml_sq "$UP_PKI/ca.crt")
  deadline_ms: 2000
  max_concurrency: 16
cache:
  memory_entries: 100000
  file: $(ovt__yaml_sq "$dir/state/answers.db")
  max_stale_s: 86400
redis:
  host: $REDIS_ADDR
  port: 6379
  key_prefix: '$OVT_P:'
  timeout_ms: 100
EOF_CONF
    fi
}

if [ "$USE_UPSTREAM" = auto ]; then
    gw_config 1 true 1
    if out=$("$OVHA_BIN/ovhad" -n -c "$(ovt_gw_dir 1)/ovhad.yaml" 2>&1); then
        USE_UPSTREAM=1
    else
        say "ovhad refuses the upstream config, local policy only: $out"
        USE_UPSTREAM=0
    fi
fi
for n in 1 2 3; do
    b=false
    [ "$n" = 1 ] && b=true
    gw_config "$n" "$b" "$USE_UPSTREAM"
    out=$("$OVHA_BIN/ovhad" -n -c "$(ovt_gw_dir "$n")/ovhad.yaml" 2>&1) ||
        die "ovhad -n gw$n: $out"
done

# ---- services -----------------------------------------------------------------
up_curl() {
    nsx curl -sS --max-time 10 --cacert "$UP_PKI/ca.crt" "$@"
}

if [ "$USE_UPSTREAM" = 1 ]; then
    ovt_spawn "$NS" "$OVT_DIR/redis.log" redis-server --bind "$REDIS_ADDR" \
        --port 6379 --protected-mode no --save '' --appendonly no --daemonize no \
        --dir "$OVT_DIR"
    up_cmd=(python3 "$HERE/upstream_nodelay.py" "$UPSTREAM_PY")
    if [ "$UP_NAGLE" = 1 ]; then
        up_cmd=(python3 "$UPSTREAM_PY")
    fi
    ovt_spawn "$NS" "$OVT_DIR/upstream.log" "${up_cmd[@]}" \
        --cert "$UP_PKI/srv.crt" --key "$UP_PKI/srv.key" \
        --listen "$UP_ADDR:8443" --data "$OVT_DIR/answers.json" --quiet
    up_ready() {
        grep -q '^listening' "$OVT_DIR/upstream.log" 2>/dev/null
    }
    redis_ready() {
        nsx redis-cli -h "$REDIS_ADDR" -p 6379 ping 2>/dev/null | grep -q PONG
    }
    ovt_wait_until 20 up_ready || die "upstream server did not start"
    ovt_wait_until 20 redis_ready || die "redis-server did not start"
fi

sim_ctl() {
    printf '%s/sim.ctl' "$(ovt_gw_dir "$1")"
}

gw_start() {
    local n=$1
    OVT_GW_RUN[$n]=$((${OVT_GW_RUN[$n]:-0} + 1))
    ovt_spawn "$NS" "$(ovt_gw_log "$n")" env OVPN_SIM_CTL="$(sim_ctl "$n")" \
        "$OVHA_BIN/ovhad" -c "$(ovt_gw_dir "$n")/ovhad.yaml"
    OVT_GW_PID[$n]=$OVT_LAST_PID
}

# The simulator of gateway N has its controller and the hold is released.
sim_ready() {
    timeout 5 python3 "$SIMCTL" "$(sim_ctl "$1")" stats 2>/dev/null |
        grep -q 'mgmt_connected=1 held=0'
}

gw_start 1
ovt_wait_healthy 1 30 || die "gw1 not healthy ($(tail -3 "$(ovt_gw_log 1)"))"
ovt_wait_until 30 ovt__agreed_leader_q 1 || die "gw1 did not become leader"
gw_start 2
gw_start 3
for n in 2 3; do
    ovt_wait_healthy "$n" 30 || die "gw$n not healthy"
    out=$(ovt_ctl 1 cluster join "$n" "198.18.0.$n:7000" 2>&1) ||
        die "cluster join $n: $out"
done
ovt_wait_until 30 ovt_voters_are 1,2,3 1 2 3 || die "voters are not 1,2,3"
ovt_wait_until 30 ovt__agreed_leader_q 1 2 3 || die "no agreed leader"
for n in 1 2 3; do
    ovt_wait_until 30 sim_ready "$n" || die "simulator of gw$n not driven"
done
LEADER=$(ovt_agreed_leader 1 2 3)
FOLLOWER=1
[ "$LEADER" = 1 ] && FOLLOWER=2
say "cluster up: leader gw$LEADER, follower used gw$FOLLOWER, upstream=$USE_UPSTREAM scale=$SCALE"

# ---- storms -------------------------------------------------------------------
# storm GW N IDS CONC PREFIX: runs it, prints the simulator's `done` line.
storm() {
    timeout 660 python3 "$SIMCTL" "$(sim_ctl "$1")" storm "$2" "$3" "$4" "$5"
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

# run_row LABEL GW N IDS CONC PREFIX: a storm and one table row; with the
# upstream, its /stats are reset before and kept in LAST_STATS after.
run_row() {
    local label=$1 gw=$2 n=$3 ids=$4 conc=$5 prefix=$6 line rate
    local el upreq=-
    LAST_STATS=""
    if [ "$USE_UPSTREAM" = 1 ]; then
        up_curl -X DELETE "https://$UP_ADDR:8443/stats" >/dev/null ||
            die "DELETE /stats"
    fi
    line=$(storm "$gw" "$n" "$ids" "$conc" "$prefix")
    if [ "$USE_UPSTREAM" = 1 ]; then
        LAST_STATS=$(up_curl "https://$UP_ADDR:8443/stats") || die "GET /stats"
        upreq=$(jq -r '.requests' <<<"$LAST_STATS")
    fi
    case $line in
    done*) ;;
    *)
        say "storm on gw$gw failed: ${line:-no reply}"
        FAILED=1
        ROWS+=("$(printf '%-24s %-7s %6s %5s %4s  FAILED: %s' "$label" \
            "gw$gw" "$n" "$ids" "$conc" "${line:-no reply}")")
        return 1
        ;;
    esac
    for k in timeout killed skipped deny; do
        if [ "$(field "$line" $k)" != 0 ]; then
            say "gw$gw $label: $k=$(field "$line" $k)"
            FAILED=1
        fi
    done
    el=$(field "$line" elapsed_ms)
    rate=$((el > 0 ? n * 1000 / el : 0))
    ROWS+=("$(printf '%-24s %-7s %6s %5s %4s %6s %4s %4s %7s %7s %7s %8s %7s %6s %6s' \
        "$label" "gw$gw" "$n" "$ids" "$conc" "$(field "$line" allow)" \
        "$(field "$line" deny)" "$(field "$line" timeout)" \
        "$(field "$line" p50_us)" "$(field "$line" p90_us)" \
        "$(field "$line" p99_us)" "$(field "$line" max_us)" "$el" "$rate" \
        "$upreq")")
    say "$label gw$gw: $line"
}

role() {
    [ "$1" = "$LEADER" ] && printf 'leader' || printf 'follower'
}

# a. warm cache
for gw in "$FOLLOWER" "$LEADER"; do
    run_row "a warmup ($(role "$gw"))" "$gw" "$A_IDS" "$A_IDS" "$A_CONC" \
        bench-a
    run_row "a warm ($(role "$gw"))" "$gw" "$A_N" "$A_IDS" "$A_CONC" bench-a
    run_row "a warm, 1 at a time" "$gw" "$A1_N" "$A_IDS" 1 bench-a
done

# b. every identity new
for gw in "$FOLLOWER" "$LEADER"; do
    run_row "b new CNs ($(role "$gw"))" "$gw" "$B_N" "$B_N" "$B_CONC" \
        "bench-b$gw"
    run_row "b new, 1 at a time" "$gw" "$B1_N" "$B1_N" 1 "bench-s$gw"
done

# c. reconnect storm, single flight
C_NOTE="upstream not used"
if [ "$USE_UPSTREAM" = 1 ]; then
    if run_row "c reconnect storm" "$FOLLOWER" "$C_N" "$C_IDS" "$C_CONC" \
        bench-c; then
        js=$LAST_STATS
        reqs=$(jq -r '.requests' <<<"$js")
        maxcn=$(jq -r '[.by_cn | to_entries[] | select(.key | startswith("bench-c-")) | .value] | max // 0' <<<"$js")
        ncn=$(jq -r '[.by_cn | to_entries[] | select(.key | startswith("bench-c-"))] | length' <<<"$js")
        per=$(awk -v r="$reqs" -v i="$C_IDS" 'BEGIN { printf "%.2f", r / i }')
        C_NOTE="upstream requests=$reqs over $ncn identities: $per per identity (max $maxcn for one CN; target 1.00)"
        say "c: $C_NOTE"
    fi
else
    run_row "c reconnect storm" "$FOLLOWER" "$C_N" "$C_IDS" "$C_CONC" bench-c
fi

# ---- report ---------------------------------------------------------------------
echo
echo "decision latency, ovhad 3-node cluster + ovpn_sim ($(nproc) cores), upstream=$USE_UPSTREAM, scale=$SCALE"
echo "command: BENCH_SCALE=$SCALE BENCH_UPSTREAM=${BENCH_UPSTREAM:-auto} BENCH_UPSTREAM_NAGLE=$UP_NAGLE $CMDLINE"
printf '%-24s %-7s %6s %5s %4s %6s %4s %4s %7s %7s %7s %8s %7s %6s %6s\n' \
    scenario gateway n ids conc allow deny tmo p50_us p90_us p99_us max_us \
    ms rate/s upreq
for r in "${ROWS[@]}"; do
    echo "$r"
done
echo "c: $C_NOTE"
echo "latency: last byte of the CONNECT's ENV block written by ovpn_sim -> last"
echo "byte of ovhad's client-auth block / client-deny read (CLOCK_MONOTONIC);"
if [ "$USE_UPSTREAM" = 1 ]; then
    echo "upreq: decide requests the upstream received during that storm; the"
    echo "leader's warmup is answered by redis, which the follower's warmup filled."
fi
for n in 1 2 3; do
    errs=$(grep -c '^<[0-3]>' "$(ovt_gw_log "$n")" 2>/dev/null)
    say "gw$n log: ${errs:-0} error lines ($(ovt_gw_log "$n"))"
done
if [ "$FAILED" != 0 ]; then
    OVT_KEEP=1
    echo "RESULT: FAILED (timeouts, kills, denials or a failed storm; see above)"
    exit 1
fi
echo "RESULT: ok"
exit 0
