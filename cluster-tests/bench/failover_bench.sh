#!/usr/bin/env bash
# bench/failover_bench.sh: failover time split into its parts, and drain
# time of many clients, on three gateways with real openvpn clients
# (issue 6). Root only; everything runs in throw-away namespaces with a
# per-run prefix (lib/netns.sh), removed on exit; every wait is bounded.
#
#   failover_bench.sh [all|failover|drain]        (default all)
#
# Environment:
#   OVHA_BIN          ovhad/ovhactl (default <repo>/build/bin)
#   FAILOVER_TRIALS   kills per timing set (default 10; odd trials kill the
#                     raft leader's ovhad, even ones a follower's)
#   FAILOVER_TIMINGS  default|fast|both (default both)
#   FAILOVER_CLIENTS  clients whose remote list starts at the victim (6)
#   DRAIN_CLIENTS     clients drained off gw1 (100, at most 120)
#   CLIENT_PING_RESTART  the clients' ping-restart in s (4)
#   CLIENT_POLL_TIMEOUT  the clients' server-poll-timeout in s (2)
#   BENCH_SCALE=small 2 trials, 3 clients, 10 drained clients
#   BENCH_OUT         result directory (default /tmp/failover-bench.<time>)
#
# Timing sets (cluster.*):
#   default  the config defaults: election 300 / heartbeat 30 ms,
#            gateway_heartbeat 1000, gateway_lease 5000, fence 2000 ms
#   fast     election 150 / heartbeat 15, gateway_heartbeat 200,
#            gateway_lease 1000, fence 500 ms (validation needs lease >
#            fence + 2 x election: 1000 > 800)
#
# Clients (lib/openvpn.sh plus machine-readable-output for microsecond log
# timestamps): ping 1, ping-restart $CLIENT_PING_RESTART (the server's
# pushed ping settings are filtered), connect-retry 1 2,
# server-poll-timeout $CLIENT_POLL_TIMEOUT, hand-window 20, no persist-tun.
# The gateways' openvpn has keepalive [2, 10]: an idle gateway pings every
# 2-3 s, so a client notices a dead one about ping-restart - 3 to
# ping-restart + 1 s after the kill.
#
# What is measured (ms after the kill, from logs with ms/us timestamps
# unless noted; see failover_parse.py):
#   election   a survivor logs "rft: leader=N" for a new leader (leader
#              victims only; ovhad JSON log, ms)
#   markdown   the leader logs "marking it down" (ms); downpoll: a survivor's
#              `cluster gateways` shows the victim down (polled, ~0.1 s)
#   detect     the client's "Inactivity timeout (--ping-restart)" (us)
#   link       the client starts the attempt that succeeds ("link remote")
#   tls        TLS done with the survivor ("Peer Connection Initiated")
#   push       PUSH_REPLY received (admission done; the client asks on its
#              own 1 s tick, so this includes up to ~1 s of openvpn wait)
#   init       "Initialization Sequence Completed": the client is back
#   backpoll   tun0 has the same address again (`ip -n NS addr`, ~0.1 s)
#   allow      the survivor's ovhad logs "decide: allow" for the client (ms)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
PARSE="$HERE/failover_parse.py"
STATS="$HERE/failover_stats.py"

FAILOVER_TRIALS=${FAILOVER_TRIALS:-10}
FAILOVER_TIMINGS=${FAILOVER_TIMINGS:-both}
FAILOVER_CLIENTS=${FAILOVER_CLIENTS:-6}
DRAIN_CLIENTS=${DRAIN_CLIENTS:-100}
CLIENT_PING_RESTART=${CLIENT_PING_RESTART:-4}
CLIENT_POLL_TIMEOUT=${CLIENT_POLL_TIMEOUT:-2}
if [ "${BENCH_SCALE:-}" = small ]; then
    FAILOVER_TRIALS=2
    FAILOVER_CLIENTS=3
    DRAIN_CLIENTS=10
fi
# Upper bounds of each phase (s); the whole default run stays below 25 min.
PHASE_FAILOVER_MAX=$((120 + FAILOVER_TRIALS * 60))
PHASE_DRAIN_MAX=$((240 + DRAIN_CLIENTS * 3))

# ---- top level: one sub-process per phase (own namespaces, own cleanup) ----

bench_main() {
    local what=${1:-all} out rc=0 t timings
    out=${BENCH_OUT:-/tmp/failover-bench.$(date -u +%Y%m%dT%H%M%S)}
    mkdir -p "$out" || exit 1
    case $FAILOVER_TIMINGS in
    both) timings="default fast" ;;
    default | fast) timings=$FAILOVER_TIMINGS ;;
    *)
        echo "FAILOVER_TIMINGS must be default, fast or both" >&2
        exit 2
        ;;
    esac
    echo "# results in $out (ovhad from ${OVHA_BIN:-<repo>/build/bin})"
    if [ "$what" = all ] || [ "$what" = failover ]; then
        for t in $timings; do
            timeout -k 10 "$PHASE_FAILOVER_MAX" bash "$0" --phase failover \
                "$t" "$out" || rc=1
        done
    fi
    if [ "$what" = all ] || [ "$what" = drain ]; then
        timeout -k 10 "$PHASE_DRAIN_MAX" bash "$0" --phase drain default \
            "$out" || rc=1
    fi
    python3 "$STATS" "$out"
    return "$rc"
}

if [ "${1:-}" != --phase ]; then
    bench_main "$@"
    exit $?
fi

# ---- a phase: --phase failover|drain TIMING OUTDIR ----

PHASE=$2
TIMING=$3
OUT=$4

case $TIMING in
default)
    export OVT_RAFT_ELECTION_MS=300 OVT_RAFT_HEARTBEAT_MS=30
    export OVT_GW_HEARTBEAT_MS=1000 OVT_GW_LEASE_MS=5000 OVT_FENCE_MS=2000
    ;;
fast)
    export OVT_RAFT_ELECTION_MS=150 OVT_RAFT_HEARTBEAT_MS=15
    export OVT_GW_HEARTBEAT_MS=200 OVT_GW_LEASE_MS=1000 OVT_FENCE_MS=500
    ;;
*)
    echo "unknown timing $TIMING" >&2
    exit 2
    ;;
esac
export OVT_USAGE_INTERVAL_MS=5000
export OVT_CLIENT_PING_RESTART=$CLIENT_PING_RESTART
# Appended after the lib's lines, so server-poll-timeout overrides its 5.
export OVT_CLIENT_EXTRA="machine-readable-output
server-poll-timeout $CLIENT_POLL_TIMEOUT"
export OVT_NO_SUMMARY=1
if [ "$PHASE" = failover ]; then
    NCLIENTS=$FAILOVER_CLIENTS
    CPFX=f
else
    NCLIENTS=$DRAIN_CLIENTS
    CPFX=d
fi
if [ "$NCLIENTS" -gt 120 ] || [ "$NCLIENTS" -lt 1 ]; then
    echo "client count must be 1..120 (hosts 198.18.0.11-130)" >&2
    exit 2
fi
names=""
for ((i = 1; i <= NCLIENTS; i++)); do
    names="$names ${CPFX}c$i"
done
export OVT_CLU_CLIENTS=${names# }

. "$HERE/../lib/tap.sh"
. "$HERE/../lib/netns.sh"
. "$HERE/../lib/pki.sh"
. "$HERE/../lib/openvpn.sh"
. "$HERE/../lib/ovhad.sh"
. "$HERE/../lib/cluster.sh"

STEP=30
CLIENTS=$OVT_CLU_CLIENTS

ovt_require_netns
for tool in openvpn jq python3; do
    command -v "$tool" >/dev/null 2>&1 || ovt_skip_all "$tool not installed"
done
ovt_init
if ! ovt_ovhad_bin_check; then
    echo "ovhad and ovhactl not found in OVHA_BIN=$OVHA_BIN" >&2
    exit 1
fi

say() {
    printf '# [%s %s %s] %s\n' "$(date -u +%H:%M:%S)" "$PHASE" "$TIMING" "$*"
}

die() {
    say "FAILED: $*"
    # shellcheck disable=SC2034 # read by lib/netns.sh's exit trap
    OVT_KEEP=1
    exit 1
}

now_ns() {
    date +%s%N
}

cns() {
    ovt_ns "$1"
}

addr_of() {
    tun_addr "$(cns "$1")" tun0
}

# The gateway number of a client's last tunnel, from its log.
gw_of() {
    local ip
    ip=$(ovt_client_gw "$1")
    printf '%s' "${ip##*.}"
}

gw_state_is() {
    ovt_gw_state_is "$@"
}

# Bench config: the lib's gateway config with JSON logs (ms timestamps),
# info level, and a policy that allows every CN with a pool address.
gw_config() {
    local n=$1 boot=$2 f
    ovt_gw_config "$n" "$boot"
    f="$(ovt_gw_dir "$n")/ovhad.yaml"
    sed -i -e 's/^  level: debug$/  level: info/' \
        -e 's/^  format: text$/  format: json/' -e '/^policy:/,$d' "$f"
    cat >>"$f" <<'EOF_POL'
policy:
  default: allow
  pool: 100.64.0.128/25
EOF_POL
}

agreed_leader() {
    local i l
    for ((i = 0; i < 150; i++)); do
        if l=$(ovt_agreed_leader "$@"); then
            printf '%s' "$l"
            return 0
        fi
        sleep 0.2
    done
    return 1
}

cluster_up() {
    local n
    for n in 1 2 3; do
        ovt_gw_host "$n" || die "gateway host $n"
    done
    say "PKI for $NCLIENTS clients"
    ovt_cluster_pki || die "PKI (see $OVT_DIR/pki/openssl.log)"
    gw_config 1 true
    gw_config 2 false
    gw_config 3 false
    if ! out=$("$OVHA_BIN/ovhad" -n -c "$(ovt_gw_dir 1)/ovhad.yaml" 2>&1); then
        die "ovhad -n refuses the $TIMING timings: $out"
    fi
    say "ovhad -n accepts: election ${OVT_RAFT_ELECTION_MS}/${OVT_RAFT_HEARTBEAT_MS} gw_heartbeat $OVT_GW_HEARTBEAT_MS lease $OVT_GW_LEASE_MS fence $OVT_FENCE_MS"
    ovt_gw_start 1
    if ! ovt_wait_healthy 1 "$STEP" ||
        ! ovt_wait_until "$STEP" ovt__agreed_leader_q 1; then
        die "gw1 healthy and leading: $(tail -n 5 "$(ovt_gw_log 1)")"
    fi
    ovt_gw_start 2
    ovt_gw_start 3
    ovt_wait_until "$STEP" eval 'ovt__ctl_ok 2 health && ovt__ctl_ok 3 health'
    for n in 2 3; do
        ovt_ctl 1 cluster join "$n" "$(ovt_gw_addr "$n"):7000" >/dev/null 2>&1
    done
    ovt_wait_until "$STEP" ovt_voters_are 1,2,3 1 2 3 ||
        die "three voters: $(ovt_cluster_status 1)"
    for n in 1 2 3; do
        ovt_wait_until "$STEP" gw_state_is 1 "gw$n" active ||
            die "gw$n active"
    done
    say "3-gateway cluster up"
}

hosts_up() {
    local i=11 c
    ovt_switch_create || die "switch"
    for c in $CLIENTS; do
        ovt_host_add "$c" "198.18.0.$i" || die "host $c"
        i=$((i + 1))
    done
}

# client_start NAME G1 G2 G3
client_start() {
    local name=$1 remotes=() g
    shift
    for g in "$@"; do
        remotes+=("$(ovt_gw_addr "$g")")
    done
    ovt_client_stop "$name"
    ovt_client_start "$name" "$(cns "$name")" "$OVT_CLU_PKI" "$name" \
        "${remotes[@]}"
}

# All clients have an address through gateway G.
all_on() {
    local c
    for c in $CLIENTS; do
        [ -n "$(addr_of "$c")" ] || return 1
        [ "$(gw_of "$c")" = "$1" ] || return 1
    done
}

log_size() {
    stat -c %s "$1" 2>/dev/null || echo 0
}

# ---- failover -----------------------------------------------------------------

FO_TSV="$OUT/failover-$TIMING.tsv"

failover_trial() {
    local t=$1 kind leader victim s1 s2 i c t0 deadline now
    local down_ms=NA ip a pending
    declare -A IP=() OFF=() GONE=() BACK=()
    if ((t % 2 == 1)); then
        kind=leader
    else
        kind=follower
    fi
    leader=$(agreed_leader 1 2 3) || die "no agreed leader before trial $t"
    if [ "$kind" = leader ]; then
        victim=$leader
    else
        victim=$(((leader + (t / 2) % 2) % 3 + 1))
    fi
    s1=$((victim % 3 + 1))
    s2=$(((victim + 1) % 3 + 1))
    i=0
    for c in $CLIENTS; do
        i=$((i + 1))
        if ((i % 2 == 1)); then
            client_start "$c" "$victim" "$s1" "$s2"
        else
            client_start "$c" "$victim" "$s2" "$s1"
        fi
    done
    # A client can be moved off the victim right after its admission (see
    # count_spurious_kills): start the strays again, a few rounds.
    local round=0
    while ! ovt_wait_until 20 all_on "$victim"; do
        round=$((round + 1))
        if [ "$round" -gt 3 ]; then
            say "trial $t: clients did not all connect to gw$victim; skipped"
            return 1
        fi
        i=0
        for c in $CLIENTS; do
            i=$((i + 1))
            if [ "$(gw_of "$c")" != "$victim" ]; then
                say "trial $t: $c is on gw$(gw_of "$c"), not gw$victim: restarting it"
                client_start "$c" "$victim" "$s1" "$s2"
            fi
        done
    done
    for c in $CLIENTS; do
        IP[$c]=$(addr_of "$c")
        OFF[$c]=$(log_size "$(ovt_client_log "$c")")
    done
    sleep 1.5
    t0=$(now_ns)
    kill -KILL "${OVT_GW_PID[$victim]}"
    deadline=$((t0 + 45000000000))
    while true; do
        now=$(now_ns)
        pending=0
        for c in $CLIENTS; do
            if [ -n "${BACK[$c]:-}" ]; then
                continue
            fi
            a=$(addr_of "$c")
            if [ -z "$a" ]; then
                GONE[$c]=1
            elif [ -n "${GONE[$c]:-}" ] && [ "$a" = "${IP[$c]}" ]; then
                BACK[$c]=$((($(now_ns) - t0) / 1000000))
                continue
            fi
            pending=$((pending + 1))
        done
        if [ "$down_ms" = NA ] && gw_state_is "$s1" "gw$victim" down; then
            down_ms=$((($(now_ns) - t0) / 1000000))
        fi
        if [ "$pending" = 0 ] && [ "$down_ms" != NA ]; then
            break
        fi
        if [ "$now" -gt "$deadline" ]; then
            say "trial $t: bounded wait over ($pending clients not back, down=$down_ms)"
            break
        fi
        sleep 0.05
    done
    wait "${OVT_GW_PID[$victim]}" 2>/dev/null
    # Server-side events on the survivors.
    local ev leader_ms=NA new_leader=NA markdown=NA
    ev=$(python3 "$PARSE" ovhad "$t0" "$(ovt_gw_log "$s1")" "$(ovt_gw_log "$s2")")
    if [ "$kind" = leader ]; then
        local l
        l=$(grep '^leader=' <<<"$ev" | cut -d= -f2 | grep -v ":$victim\$" |
            sort -t: -k1,1n | head -n 1)
        if [ -n "$l" ]; then
            leader_ms=${l%%:*}
            new_leader=${l#*:}
        fi
    fi
    markdown=$(grep '^markdown=' <<<"$ev" | head -n 1 | cut -d= -f2)
    markdown=${markdown:-NA}
    for c in $CLIENTS; do
        local p allow
        p=$(python3 "$PARSE" client "$t0" "${OFF[$c]}" "$(ovt_client_log "$c")")
        allow=$(grep "^allow=$c:" <<<"$ev" | cut -d: -f2 | sort -n | head -n 1)
        printf '%s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
            "$TIMING" "$t" "$kind" "$victim" "$c" "$p" "${BACK[$c]:-NA}" \
            "${allow:-NA}" "$leader_ms" "$new_leader" "$markdown" \
            "$down_ms" "$(addr_of "$c")=${IP[$c]}" >>"$FO_TSV"
    done
    # Each trial restarts the clients (their logs start afresh): keep this
    # trial's client logs for a later look (OVT_KEEP=1 keeps OVT_DIR).
    mkdir -p "$OVT_DIR/trial-$t"
    for c in $CLIENTS; do
        cp "$(ovt_client_log "$c")" "$OVT_DIR/trial-$t/" 2>/dev/null
    done
    say "trial $t ($kind gw$victim): leader ${leader_ms} ms, markdown $markdown ms, down(poll) $down_ms ms, back(poll) $(for c in $CLIENTS; do printf '%s ' "${BACK[$c]:-NA}"; done)"
    # The victim comes back for the next trial.
    ovt_gw_start "$victim"
    ovt_wait_healthy "$victim" "$STEP" || die "gw$victim restarts"
    ovt_wait_until "$STEP" gw_state_is "$s1" "gw$victim" active ||
        die "gw$victim active again"
    return 0
}

failover_phase() {
    local t
    : >"$FO_TSV.tmp"
    rm -f "$FO_TSV"
    hosts_up
    cluster_up
    for ((t = 1; t <= FAILOVER_TRIALS; t++)); do
        failover_trial "$t"
    done
    for c in $CLIENTS; do
        ovt_client_stop "$c"
    done
    rm -f "$FO_TSV.tmp"
}

# ---- drain ----------------------------------------------------------------------

DR_TSV="$OUT/drain.tsv"

drain_phase() {
    local c n t0 t1 out deadline done_n now
    declare -A IP=() OFF=() BACKAT=()
    rm -f "$DR_TSV"
    hosts_up
    cluster_up
    say "starting $NCLIENTS clients on gw1 (remotes gw1 gw2 gw3)"
    n=0
    for c in $CLIENTS; do
        client_start "$c" 1 2 3
        n=$((n + 1))
        # Small batches: 100 simultaneous TLS handshakes on 2 cores would
        # only measure the setup, not the drain.
        if ((n % 10 == 0)); then
            sleep 1
        fi
    done
    ovt_wait_until 180 all_on 1 || die "all $NCLIENTS clients on gw1"
    for c in $CLIENTS; do
        IP[$c]=$(addr_of "$c")
        OFF[$c]=$(log_size "$(ovt_client_log "$c")")
    done
    say "all $NCLIENTS clients connected to gw1; draining it"
    sleep 2
    t0=$(now_ns)
    out=$(ovt_ctl 2 gateway drain gw1 2>&1) || die "drain gw1: $out"
    t1=$(now_ns)
    deadline=$((t0 + 180000000000))
    done_n=0
    while [ "$done_n" -lt "$NCLIENTS" ]; do
        now=$(now_ns)
        if [ "$now" -gt "$deadline" ]; then
            say "bounded wait over: $done_n of $NCLIENTS back"
            break
        fi
        for c in $CLIENTS; do
            if [ -n "${BACKAT[$c]:-}" ]; then
                continue
            fi
            if tail -c +$((OFF[$c] + 1)) "$(ovt_client_log "$c")" |
                grep -q 'Initialization Sequence Completed' &&
                [ "$(addr_of "$c")" = "${IP[$c]}" ]; then
                BACKAT[$c]=$((($(now_ns) - t0) / 1000000))
                done_n=$((done_n + 1))
            fi
        done
        sleep 0.25
    done
    local ev
    ev=$(python3 "$PARSE" ovhad "$t0" "$(ovt_gw_log 2)" "$(ovt_gw_log 3)")
    for c in $CLIENTS; do
        local p allow
        p=$(python3 "$PARSE" client "$t0" "${OFF[$c]}" "$(ovt_client_log "$c")")
        allow=$(grep "^allow=$c:" <<<"$ev" | cut -d: -f2 | sort -n | head -n 1)
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$p" "${BACKAT[$c]:-NA}" \
            "${allow:-NA}" "$(((t1 - t0) / 1000000))" \
            "$(addr_of "$c")=${IP[$c]}" >>"$DR_TSV"
    done
    # gw1's own table empties when openvpn drops the killed instances.
    local empty=NA
    if ovt_wait_until 30 eval '[ "$(ovt_ctl 1 sessions --json 2>/dev/null | jq -r ".sessions | length")" = 0 ]'; then
        empty=$((($(now_ns) - t0) / 1000000))
    fi
    say "drain: $done_n of $NCLIENTS back with their address; gw1 holds no session $empty ms after the drain command"
    # The EXIT trap stops the clients (all at once, not one by one).
}

# Clients killed by a gateway because their just-admitted session was not
# in its replicated state yet (see docs/benchmarks.md, "Failover and
# drain"): "kill cn=... its session N ended elsewhere".
count_spurious_kills() {
    local out total logs=()
    mapfile -t logs < <(ovt_gw_logs 1; ovt_gw_logs 2; ovt_gw_logs 3)
    out=$(python3 "$PARSE" spurious "${logs[@]}")
    total=$(grep '^total=' <<<"$out" | cut -d= -f2)
    grep '^spurious' <<<"$out" >>"$OUT/spurious-kills.log"
    printf '%s\t%s\t%s\n' "$PHASE-$TIMING" "${total:-NA}" \
        "$(cat "${logs[@]}" | grep -c '"decide".*allow cn=')" \
        >>"$OUT/kills.tsv"
    say "clients killed < 200 ms after their admission by the admitting gateway: ${total:-NA}"
}

case $PHASE in
failover) failover_phase ;;
drain) drain_phase ;;
*) die "unknown phase $PHASE" ;;
esac
count_spurious_kills
exit 0
