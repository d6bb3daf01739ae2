#!/usr/bin/env bash
# cluster-tests/jepsen/run.sh: one Jepsen-style run against an ovhad cluster
# (issue 10; method and results in docs/jepsen.md).
#
# NODES gateways gw1..gwN, each in its own network namespace <P>-gwN with
# 198.18.0.N/24 on a bridge (lib/netns.sh), ovhad driving ovpn_sim (the
# management-interface simulator) as its openvpn. A workload (workload.py)
# connects, roams, disconnects simulated clients and drains/activates
# gateways, recording every operation in history.jsonl; this script is the
# nemesis, on a schedule seeded by SEED, recording its faults in
# nemesis.jsonl. At the end everything is healed, the cluster settles, the
# final state of every node is read (final.py) and checker.py judges.
#
# Knobs (environment):
#   JEPSEN_NODES=3|5         gateways (3)
#   JEPSEN_DURATION=S        seconds of workload (60)
#   JEPSEN_NEMESIS=KIND      partition | kill | pause | clock | member |
#                            mix | none (mix: a random one of the first
#                            four each time; member is not in mix)
#   JEPSEN_SEED=N            the schedule's seed (1)
#   JEPSEN_BUG=no-fence      start every ovhad with OVHA_PLANT_BUG=no-fence
#   JEPSEN_EXPECT=clean|violations   what makes the exit status 0 (clean;
#                            "violations" for the planted-bug run)
#   JEPSEN_OUT=DIR           where history.jsonl, nemesis.jsonl, final.json,
#                            verdict.txt and the node logs are kept
#                            (default: the work dir, kept on failure)
#   JEPSEN_LEASE_TTL_MS      cluster.lease_ttl_ms (6000)
#   JEPSEN_HOLD="MIN MAX"    seconds a fault is held (2 6; pauses 1 3)
#   JEPSEN_CNS, JEPSEN_WORKERS  workload size (40 CNs, 6 workers)
#   OVHA_BIN                 ovhad, ovhactl, ovpn_sim (default build/bin)
# Exit: 0 as expected, 1 not, 77 cannot run here (not root, no tools).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/tap.sh"
. "$HERE/../lib/netns.sh"
. "$HERE/../lib/ovhad.sh"
. "$HERE/../lib/cluster.sh"

NODES=${JEPSEN_NODES:-3}
DURATION=${JEPSEN_DURATION:-60}
NEMESIS=${JEPSEN_NEMESIS:-mix}
SEED=${JEPSEN_SEED:-1}
BUG=${JEPSEN_BUG:-}
EXPECT=${JEPSEN_EXPECT:-clean}
LEASE_TTL_MS=${JEPSEN_LEASE_TTL_MS:-6000}
CNS=${JEPSEN_CNS:-40}
read -r HOLD_MIN HOLD_MAX <<<"${JEPSEN_HOLD:-2 6}"
WORKERS=${JEPSEN_WORKERS:-6}
OVPN_SIM=${OVPN_SIM:-$OVHA_BIN/ovpn_sim}
# Cluster timers as in lib/cluster.sh: fenced within 1 s + 2 elections,
# down after 2.5 s, leases reassigned 6 s after their session ended.
ELECTION_MS=300
FENCE_MS=1000
GW_LEASE_MS=2500
MAX_SKEW_MS=2000
POOL=100.64.0.0/27
OVT_NO_SUMMARY=1

case $NODES in 3 | 5) ;; *)
    echo "JEPSEN_NODES must be 3 or 5" >&2
    exit 2
    ;;
esac
case $NEMESIS in partition | kill | pause | clock | member | mix | none) ;; *)
    echo "JEPSEN_NEMESIS: partition|kill|pause|clock|member|mix|none" >&2
    exit 2
    ;;
esac
case $DURATION in '' | *[!0-9]*)
    echo "JEPSEN_DURATION: whole seconds" >&2
    exit 2
    ;;
esac
if [ "$(id -u)" != 0 ]; then
    echo "skip: needs root (network namespaces)"
    exit 77
fi
for tool in ip nft python3 openssl jq timeout; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "skip: missing tool $tool"
        exit 77
    fi
done
for f in "$OVHA_BIN/ovhad" "$OVHA_BIN/ovhactl" "$OVPN_SIM"; do
    if [ ! -x "$f" ]; then
        echo "jepsen: $f not found (build ovhad, ovhactl, ovpn_sim)" >&2
        exit 1
    fi
done

ovt_init
OUT=${JEPSEN_OUT:-$OVT_DIR}
mkdir -p "$OUT"
HIST=$OUT/history.jsonl
NEM=$OUT/nemesis.jsonl
: >"$HIST"
: >"$NEM"
RANDOM=$SEED
NFAULTS=0
declare -A NEM_COUNT=()

say() {
    printf '# %s\n' "$*"
}

die() {
    say "FAILED: $*"
    OVT_KEEP=1
    exit 1
}

# rnd A B: uniform integer in [A, B] from the seeded generator.
rnd() {
    echo $(($1 + RANDOM % ($2 - $1 + 1)))
}

# nem TYPE F VALUE_JSON: one nemesis line in nemesis.jsonl.
nem() {
    printf '{"type": "%s", "f": "%s", "process": "nemesis", "op": null, "time": %s, "value": %s}\n' \
        "$1" "$2" "$EPOCHREALTIME" "$3" >>"$NEM"
}

# ---- the cluster -----------------------------------------------------------
ovt_switch_create || die "switch namespace"
for ((n = 1; n <= NODES; n++)); do
    ovt_gw_host "$n" || die "namespace gw$n"
done
OVT_RAFT_PKI=$OVT_DIR/raft-pki
ovt__raft_pki_quiet init "$OVT_RAFT_PKI" || die "raft PKI init"
for ((n = 1; n <= NODES; n++)); do
    ovt__raft_pki_quiet issue-node "$OVT_RAFT_PKI" "$n" \
        "$(ovt_gw_addr "$n"):7000" || die "raft PKI node $n"
done
: >"$OVT_DIR/dummy.pem"

sim_ctl() {
    printf '%s/sim.ctl' "$(ovt_gw_dir "$1")"
}

skew_file() {
    printf '%s/skew' "$(ovt_gw_dir "$1")"
}

gw_config() {
    local n=$1 bootstrap=$2 dir
    dir=$(ovt_gw_dir "$n")
    mkdir -p "$dir/state"
    echo 0 >"$(skew_file "$n")"
    cat >"$dir/ovhad.yaml" <<EOF_CONF
# ovhad config written by cluster-tests/jepsen/run.sh
node:
  id: gw$n
  state_dir: $(ovt__yaml_sq "$dir/state")
  http_socket: $(ovt__yaml_sq "$(ovt_gw_sock "$n")")
log:
  level: info
  format: text
management:
  command_timeout_ms: 5000
  bytecount_interval: 1
decision:
  deadline_ms: 3000
openvpn:
  binary: $(ovt__yaml_sq "$OVPN_SIM")
  dev: tun0
  proto: udp
  local: $(ovt_gw_addr "$n")
  port: 1194
  ca: $(ovt__yaml_sq "$OVT_DIR/dummy.pem")
  cert: $(ovt__yaml_sq "$OVT_DIR/dummy.pem")
  key: $(ovt__yaml_sq "$OVT_DIR/dummy.pem")
  network: $POOL
  hand_window: 10
  restart_backoff_min_ms: 200
  restart_backoff_max_ms: 2000
policy:
  default: allow
  pool: $POOL
cluster:
  raft_id: $n
  address: '$(ovt_gw_addr "$n"):7000'
  data_dir: $(ovt__yaml_sq "$dir/raft")
  bootstrap: $bootstrap
  ca: $(ovt__yaml_sq "$OVT_RAFT_PKI/ca.crt")
  cert: $(ovt__yaml_sq "$OVT_RAFT_PKI/node-$n.crt")
  key: $(ovt__yaml_sq "$OVT_RAFT_PKI/node-$n.key")
  election_timeout_ms: $ELECTION_MS
  heartbeat_timeout_ms: 30
  snapshot_threshold: 256
  snapshot_trailing: 128
  gateway_heartbeat_ms: 500
  usage_interval_ms: 2000
  pool_name: main
  max_sessions: 1
  on_excess: evict_oldest
  gateway_lease_ms: $GW_LEASE_MS
  fence_timeout_ms: $FENCE_MS
  lease_ttl_ms: $LEASE_TTL_MS
EOF_CONF
}

gw_start() {
    local n=$1
    OVT_GW_RUN[$n]=$((${OVT_GW_RUN[$n]:-0} + 1))
    ovt_spawn "$(ovt_ns "gw$n")" "$(ovt_gw_log "$n")" env \
        OVPN_SIM_CTL="$(sim_ctl "$n")" OVPN_SIM_TIMEOUT_MS=5000 \
        OVHA_CLOCK_SKEW_FILE="$(skew_file "$n")" \
        ${BUG:+OVHA_PLANT_BUG=$BUG} \
        "$OVHA_BIN/ovhad" -c "$(ovt_gw_dir "$n")/ovhad.yaml"
    OVT_GW_PID[$n]=$OVT_LAST_PID
}

sim_ready() {
    timeout 5 python3 "$HERE/../sim/simctl.py" "$(sim_ctl "$1")" stats \
        2>/dev/null | grep -q 'mgmt_connected=1 held=0'
}

ALL=()
for ((n = 1; n <= NODES; n++)); do
    b=false
    [ "$n" = 1 ] && b=true
    gw_config "$n" "$b"
    out=$("$OVHA_BIN/ovhad" -n -c "$(ovt_gw_dir "$n")/ovhad.yaml" 2>&1) ||
        die "ovhad -n gw$n: $out"
    ALL+=("$n")
done
gw_start 1
ovt_wait_healthy 1 30 || die "gw1 not healthy: $(tail -3 "$(ovt_gw_log 1)")"
ovt_wait_until 30 ovt__agreed_leader_q 1 || die "gw1 did not lead"
for ((n = 2; n <= NODES; n++)); do
    gw_start "$n"
done
for ((n = 2; n <= NODES; n++)); do
    ovt_wait_healthy "$n" 30 || die "gw$n not healthy"
    out=$(ovt_ctl 1 cluster join "$n" "$(ovt_gw_addr "$n"):7000" 2>&1) ||
        die "cluster join $n: $out"
done
VOTERS=$(
    IFS=,
    echo "${ALL[*]}"
)
ovt_wait_until 60 ovt_voters_are "$VOTERS" "${ALL[@]}" || die "voters"
ovt_wait_until 30 ovt__agreed_leader_q "${ALL[@]}" || die "no agreed leader"
for n in "${ALL[@]}"; do
    ovt_wait_until 30 sim_ready "$n" || die "simulator of gw$n not driven"
done
say "cluster up: $NODES nodes, leader gw$(ovt_agreed_leader "${ALL[@]}"), nemesis=$NEMESIS seed=$SEED duration=${DURATION}s bug=${BUG:-none}"

# ---- nemesis ---------------------------------------------------------------
# Drops between gateways, inside their namespaces (table inet jepsen).
cut_pair() {
    local a=$1 b=$2 x y ns
    for x in "$a:$b" "$b:$a"; do
        ns=$(ovt_ns "gw${x%%:*}")
        y=$(ovt_gw_addr "${x#*:}")
        ip netns exec "$ns" nft add table inet jepsen
        ip netns exec "$ns" nft add chain inet jepsen in \
            '{ type filter hook input priority 0; }'
        ip netns exec "$ns" nft add chain inet jepsen out \
            '{ type filter hook output priority 0; }'
        ip netns exec "$ns" nft add rule inet jepsen in ip saddr "$y" drop
        ip netns exec "$ns" nft add rule inet jepsen out ip daddr "$y" drop
    done
}

heal_net() {
    local n
    for n in "${ALL[@]}"; do
        ip netns exec "$(ovt_ns "gw$n")" nft delete table inet jepsen \
            2>/dev/null
    done
}

# cut_sets "A B" "C D": every node of the first set from every one of the
# second.
cut_sets() {
    local a b
    for a in $1; do
        for b in $2; do
            cut_pair "$a" "$b"
        done
    done
}

shuffled() {
    local arr=("${ALL[@]}") i j t
    for ((i = ${#arr[@]} - 1; i > 0; i--)); do
        j=$((RANDOM % (i + 1)))
        t=${arr[$i]}
        arr[$i]=${arr[$j]}
        arr[$j]=$t
    done
    echo "${arr[@]}"
}

# The leader most nodes name (a paused or cut node may say otherwise).
current_leader() {
    local n l
    for n in "${ALL[@]}"; do
        if ! ovt_gw_alive "$n" || [[ " ${PAUSED[*]} " == *" $n "* ]]; then
            continue
        fi
        l=$(timeout 3 "$OVHA_BIN/ovhactl" -s "$(ovt_gw_sock "$n")" \
            cluster status --json 2>/dev/null | jq -r "$(ovt__cs_jq leader)" \
            2>/dev/null)
        if [ -n "$l" ] && [ "$l" != 0 ] && [ "$l" != null ]; then
            echo "$l"
            return 0
        fi
    done
    echo "${ALL[$((RANDOM % NODES))]}"
}

others_of() {
    local n out=()
    for n in "${ALL[@]}"; do
        [ "$n" != "$1" ] && out+=("$n")
    done
    echo "${out[@]}"
}

PAUSED=()
KILLED=()

fault_partition() {
    local kind s l a b c
    kind=$(rnd 0 3)
    read -r -a s <<<"$(shuffled)"
    case $kind in
    0) # majority / minority halves
        local k=$((NODES / 2))
        a="${s[*]:0:k}"
        b="${s[*]:k}"
        cut_sets "$a" "$b"
        nem info start-partition "{\"kind\": \"halves\", \"minority\": [${a// /, }], \"majority\": [${b// /, }]}"
        ;;
    1) # the leader alone
        l=$(current_leader)
        cut_sets "$l" "$(others_of "$l")"
        nem info start-partition "{\"kind\": \"isolate-leader\", \"isolated\": [$l]}"
        ;;
    2) # bridge: two sides that only the middle node reaches
        if [ "$NODES" = 3 ]; then
            a=${s[0]} c=${s[1]} b=${s[2]}
        else
            a="${s[0]} ${s[1]}" c=${s[2]} b="${s[3]} ${s[4]}"
        fi
        cut_sets "$a" "$b"
        nem info start-partition "{\"kind\": \"bridge\", \"bridge\": $c, \"sides\": [[${a// /, }], [${b// /, }]]}"
        ;;
    3) # one random node alone
        cut_sets "${s[0]}" "${s[*]:1}"
        nem info start-partition "{\"kind\": \"isolate-one\", \"isolated\": [${s[0]}]}"
        ;;
    esac
}

heal_partition() {
    heal_net
    nem info stop-partition '{}'
}

fault_kill() {
    local victims n
    if [ $((RANDOM % 2)) = 0 ]; then
        victims=$(current_leader)
    else
        read -r -a s <<<"$(shuffled)"
        victims=${s[0]}
        if [ "$NODES" = 5 ] && [ $((RANDOM % 2)) = 0 ]; then
            victims="${s[0]} ${s[1]}"
        fi
    fi
    for n in $victims; do
        if ovt_gw_alive "$n"; then
            kill -KILL "${OVT_GW_PID[$n]}" 2>/dev/null
            wait "${OVT_GW_PID[$n]}" 2>/dev/null
            KILLED+=("$n")
        fi
    done
    nem info start-kill "{\"nodes\": [${victims// /, }]}"
}

heal_kill() {
    local n
    for n in "${KILLED[@]}"; do
        gw_start "$n"
    done
    nem info stop-kill "{\"restarted\": [$(
        IFS=,
        echo "${KILLED[*]}"
    )]}"
    KILLED=()
}

fault_pause() {
    local n
    if [ $((RANDOM % 2)) = 0 ]; then
        n=$(current_leader)
    else
        n=${ALL[$((RANDOM % NODES))]}
    fi
    if ovt_gw_alive "$n"; then
        kill -STOP "${OVT_GW_PID[$n]}"
        PAUSED+=("$n")
    fi
    nem info start-pause "{\"nodes\": [$n]}"
}

heal_pause() {
    local n
    for n in "${PAUSED[@]}"; do
        kill -CONT "${OVT_GW_PID[$n]}" 2>/dev/null
    done
    nem info stop-pause "{\"nodes\": [$(
        IFS=,
        echo "${PAUSED[*]}"
    )]}"
    PAUSED=()
}

fault_clock() {
    local n v parts=() must
    # Each node with probability 1/2, and at least one.
    must=${ALL[$((RANDOM % NODES))]}
    for n in "${ALL[@]}"; do
        if [ "$n" != "$must" ] && [ $((RANDOM % 2)) = 0 ]; then
            continue
        fi
        v=$(rnd 200 "$MAX_SKEW_MS")
        [ $((RANDOM % 2)) = 0 ] && v=$((-v))
        echo "$v" >"$(skew_file "$n")"
        parts+=("\"gw$n\": $v")
    done
    nem info start-clock "{$(
        IFS=,
        echo "${parts[*]}"
    )}"
}

heal_clock() {
    local n
    for n in "${ALL[@]}"; do
        echo 0 >"$(skew_file "$n")"
    done
    nem info stop-clock '{}'
}

# member: the leader removes a random follower from the raft
# configuration; the node is then killed and its raft data wiped (only
# when the removal committed: wiping a voter's log would be unsafe). At
# heal it starts empty (bootstrap false) and the leader joins it again,
# as an operator replaces a member. A removal that did not commit leaves
# a plain kill -9, restarted at heal.
MEMBER=""
MEMBER_WIPED=0

fault_member() {
    local l n out rc
    l=$(current_leader)
    read -r -a s <<<"$(others_of "$l")"
    n=${s[$((RANDOM % ${#s[@]}))]}
    out=$(ovt_ctl "$l" cluster remove "$n" 2>&1)
    rc=$?
    kill -KILL "${OVT_GW_PID[$n]}" 2>/dev/null
    wait "${OVT_GW_PID[$n]}" 2>/dev/null
    MEMBER=$n
    MEMBER_WIPED=0
    if [ "$rc" = 0 ]; then
        rm -rf "$(ovt_gw_dir "$n")/raft"
        MEMBER_WIPED=1
    fi
    nem info start-member "{\"removed\": $n, \"via\": $l, \"committed\": $([ "$rc" = 0 ] && echo true || echo false)}"
}

member_joined() {
    local l
    l=$(current_leader)
    if ovt_cs "$l" voters | tr , '\n' | grep -qx "$MEMBER"; then
        return 0
    fi
    ovt_ctl "$l" cluster join "$MEMBER" "$(ovt_gw_addr "$MEMBER"):7000" \
        >/dev/null 2>&1
}

heal_member() {
    local ok=true
    if [ -z "$MEMBER" ]; then
        nem info stop-member '{}'
        return 0
    fi
    if [ "$MEMBER_WIPED" = 1 ]; then
        gw_config "$MEMBER" false
    fi
    gw_start "$MEMBER"
    if [ "$MEMBER_WIPED" = 1 ]; then
        ovt_wait_healthy "$MEMBER" 30 || ok=false
        if [ "$ok" = true ] && ! ovt_wait_until 30 member_joined; then
            ok=false
        fi
    fi
    nem info stop-member "{\"node\": $MEMBER, \"rejoined\": $ok, \"wiped\": $MEMBER_WIPED}"
    MEMBER=""
}

heal_all() {
    heal_net
    heal_pause >/dev/null
    heal_kill >/dev/null
    heal_clock >/dev/null
    heal_member >/dev/null
}

run_nemesis() {
    local end=$((SECONDS + DURATION - 10)) kind hold
    local kinds=(partition kill pause clock)
    sleep 3
    while [ "$SECONDS" -lt "$end" ]; do
        kind=$NEMESIS
        if [ "$kind" = mix ]; then
            kind=${kinds[$((RANDOM % 4))]}
        fi
        hold=$(rnd "$HOLD_MIN" "$HOLD_MAX")
        # Pauses stay short unless JEPSEN_HOLD says otherwise (docs).
        if [ "$kind" = pause ] && [ -z "${JEPSEN_HOLD:-}" ]; then
            hold=$(rnd 1 3)
        fi
        "fault_$kind"
        NFAULTS=$((NFAULTS + 1))
        NEM_COUNT[$kind]=$((${NEM_COUNT[$kind]:-0} + 1))
        sleep "$hold"
        "heal_$kind"
        sleep "$(rnd 2 5)"
    done
}

# ---- the run ---------------------------------------------------------------
python3 "$HERE/workload.py" --dir "$OVT_DIR" --nodes "$NODES" \
    --duration "$DURATION" --seed "$SEED" --history "$HIST" --cns "$CNS" \
    --workers "$WORKERS" --ctl-fmt "$OVT_DIR/gw{n}/sim.ctl" \
    --sock-fmt "$OVT_DIR/gw{n}/state/ovhad.sock" >"$OUT/workload.log" 2>&1 &
WL_PID=$!
ovt_track_pid "$WL_PID"
if [ "$NEMESIS" != none ]; then
    run_nemesis
fi
heal_all
nem info heal-all '{}'
ovt_wait_until $((DURATION + 120)) test -e "$OVT_DIR/ops.done" ||
    die "workload did not stop its operations"

# Settled: one leader everyone names, the same applied index everywhere.
settled() {
    local n a first=""
    ovt__agreed_leader_q "${ALL[@]}" || return 1
    for n in "${ALL[@]}"; do
        a=$(ovt_cs "$n" last_applied) || return 1
        if [ -z "$first" ]; then
            first=$a
        elif [ "$a" != "$first" ]; then
            return 1
        fi
    done
}
if ! ovt_wait_until 60 settled; then
    say "cluster did not settle within 60 s (final reads go ahead)"
    nem info settle-timeout '{}'
fi
# Reconciliation runs every second: let it act on the settled state.
sleep 3
touch "$OVT_DIR/final.go"
if ! ovt_wait_until 200 ovt__pid_dead "$WL_PID"; then
    die "workload did not finish"
fi
wait "$WL_PID"
wl_rc=$?
[ "$wl_rc" = 0 ] || die "workload exited $wl_rc: $(tail -5 "$OUT/workload.log")"
cat "$OUT/workload.log"
python3 "$HERE/final.py" --nodes "$NODES" --cns "$CNS" \
    --sock-fmt "$OVT_DIR/gw{n}/state/ovhad.sock" --out "$OUT/final.json" ||
    die "final reads"

faults=""
for k in "${!NEM_COUNT[@]}"; do
    faults+="$k=${NEM_COUNT[$k]} "
done
python3 "$HERE/checker.py" --history "$HIST" --nemesis "$NEM" \
    --final "$OUT/final.json" --lease-ttl-ms "$LEASE_TTL_MS" \
    --max-skew-ms "$MAX_SKEW_MS" \
    --takeover-ms $((FENCE_MS + 2 * ELECTION_MS + 1500)) \
    --bytes-interval-s 1 --bytes-in 125000 --bytes-out 625000 \
    --label "seed=$SEED nodes=$NODES nemesis=$NEMESIS duration=${DURATION}s bug=${BUG:-none} hold=${JEPSEN_HOLD:-default} cns=$CNS faults=${NFAULTS} (${faults% })" |
    tee "$OUT/verdict.txt"
rc=${PIPESTATUS[0]}
for n in "${ALL[@]}"; do
    for f in "$(ovt_gw_dir "$n")"/ovhad.*.log; do
        cp "$f" "$OUT/gw$n.$(basename "$f")" 2>/dev/null
    done
done
if [ -n "${JEPSEN_OUT:-}" ]; then
    say "history kept in $OUT"
else
    say "history in $OUT (kept only on failure, or set JEPSEN_OUT)"
fi
case $EXPECT:$rc in
clean:0)
    say "RESULT: ok (no violation)"
    exit 0
    ;;
violations:1)
    say "RESULT: ok (the checkers found the violations expected)"
    exit 0
    ;;
*)
    say "RESULT: FAILED (expected $EXPECT, checker exit $rc)"
    OVT_KEEP=1
    exit 1
    ;;
esac
