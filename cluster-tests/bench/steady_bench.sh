#!/usr/bin/env bash
# bench/steady_bench.sh: steady state at scale (issue 9). Each gateway's
# simulator (sim/ovpn_sim, openvpn.binary) brings up and holds
# BENCH_CLIENTS established clients (`populate`), sending
# >BYTECOUNT_CLI for every one of them every 5 s (ovhad's
# management.bytecount_interval; the simulator adds 125,000 bytes in and
# 625,000 out per interval). Then, over a measured window, it reports per
# gateway:
#   - ovhad's CPU, % of one core: utime + stime from /proc/PID/stat over
#     the window (the CPU of the simulator, a separate process, is
#     reported on its own: it is the load generator, not ovhad);
#   - ovhad's VmRSS at the end of the window and VmHWM (the peak since it
#     started, so it includes bringing the clients up);
#   - Raft entries per second: the delta of raft last_index over the
#     window (the same on every node of the cluster);
#   - BYTECOUNT_CLI lines per second ovhad received;
#   - REAUTHs: during the window each simulator also sends REAUTHs of
#     random established clients at BENCH_REAUTH_RATE a second (default
#     clients / 3600, rounded up: openvpn's reneg-sec default of an hour;
#     0 = none), and their decision latency is reported.
# Targets (issue 9): ovhad <= 10 % of one core and <= 150 MB RSS at 10,000
# clients per gateway.
#
# One namespace per gateway, gateway N on 198.18.0.N (bench/simcluster.sh),
# local policy (default allow), pool 100.64.0.0/16.
#
# Knobs: BENCH_SCALE=small (the ctest smoke: 300 clients, a 12 s window,
# about 30 s) or full (default: 10,000 clients per gateway, a 60 s window,
# under 2 minutes on 1 node); BENCH_NODES=1 (default) or 3 (a 3-node
# cluster, BENCH_CLIENTS on every gateway); BENCH_CLIENTS, BENCH_WINDOW
# (seconds) override the scale's; BENCH_POP_CONC (64: connects in flight
# while populating); BENCH_SETTLE (s, default one bytecount interval:
# quiet time between populating and the window); OVHA_BIN (default
# <repo>/build/bin), OVPN_SIM (default $OVHA_BIN/ovpn_sim); OVT_KEEP=1
# keeps the work dir; BENCH_ROUTES=false turns off cluster.routes (the
# per-second route reconciliation) to see its share of the CPU (a
# diagnosis, not a deployment: gateways then route nothing for each other).
#
# Exit 0 when every client came up and stayed up through the window; 1
# otherwise; 77 when it cannot run here (not root). The targets are only
# printed (met / NOT met).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/tap.sh"
. "$HERE/../lib/netns.sh"
. "$HERE/../lib/ovhad.sh"
. "$HERE/../lib/cluster.sh"
OVPN_SIM=${OVPN_SIM:-$OVHA_BIN/ovpn_sim}
SC_ROUTES=${BENCH_ROUTES:-true}
. "$HERE/simcluster.sh"

CMDLINE="$0 $*"
SCALE=${BENCH_SCALE:-full}
NODES=${BENCH_NODES:-1}
case $SCALE in
small) CLIENTS=300 WINDOW=12 ;;
full) CLIENTS=10000 WINDOW=60 ;;
*)
    echo "BENCH_SCALE must be small or full" >&2
    exit 2
    ;;
esac
CLIENTS=${BENCH_CLIENTS:-$CLIENTS}
WINDOW=${BENCH_WINDOW:-$WINDOW}
REAUTH_RATE=${BENCH_REAUTH_RATE:-$(((CLIENTS + 3599) / 3600))}
POP_CONC=${BENCH_POP_CONC:-64}
SETTLE=${BENCH_SETTLE:-$SC_BYTECOUNT}
for v in "$NODES" "$CLIENTS" "$WINDOW" "$POP_CONC" "$SETTLE" "$REAUTH_RATE"; do
    case $v in
    '' | *[!0-9]*)
        echo "BENCH_NODES, BENCH_CLIENTS, BENCH_WINDOW, BENCH_POP_CONC, BENCH_SETTLE, BENCH_REAUTH_RATE: numbers" >&2
        exit 2
        ;;
    esac
done
if [ "$NODES" != 1 ] && [ "$NODES" != 3 ]; then
    echo "BENCH_NODES must be 1 or 3" >&2
    exit 2
fi
TARGET_CPU=10
TARGET_RSS_MB=150

sc_require
OVT_NO_SUMMARY=1
ovt_init
FAILED=0
sc_up "$NODES"
sc_say "up: $NODES node(s), leader gw$SC_LEADER, $CLIENTS clients per gateway, window ${WINDOW}s, scale=$SCALE"

# ---- populate: every gateway at once --------------------------------------
declare -A POP_LINE=() POP_FILE=()
POP_PIDS=()
POP_T0=$(date +%s%N)
for ((n = 1; n <= NODES; n++)); do
    POP_FILE[$n]=$OVT_DIR/populate.$n
    sc_sim "$n" populate "$CLIENTS" "steady-g$n" "$POP_CONC" >"${POP_FILE[$n]}" 2>&1 &
    POP_PIDS+=($!)
done
wait "${POP_PIDS[@]}"
POP_MS=$((($(date +%s%N) - POP_T0) / 1000000))
for ((n = 1; n <= NODES; n++)); do
    POP_LINE[$n]=$(cat "${POP_FILE[$n]}")
    sc_say "populate gw$n: ${POP_LINE[$n]}"
    case ${POP_LINE[$n]} in
    done*) ;;
    *) sc_die "populate on gw$n failed: ${POP_LINE[$n]}" ;;
    esac
    if [ "$(sc_field "${POP_LINE[$n]}" allow)" != "$CLIENTS" ]; then
        sc_say "gw$n: only $(sc_field "${POP_LINE[$n]}" allow) of $CLIENTS admitted"
        FAILED=1
    fi
done

# ---- the measured window ---------------------------------------------------
sleep "$SETTLE"
declare -A O_PID=() S_PID=() O_T0=() S_T0=() BC0=() ST0=()
for ((n = 1; n <= NODES; n++)); do
    O_PID[$n]=${OVT_GW_PID[$n]}
    S_PID[$n]=$(sc_sim_pid "$n")
    case ${S_PID[$n]} in
    '' | *[!0-9]*) sc_die "no simulator PID for gw$n" ;;
    esac
done
IDX0=$(sc_last_index "$SC_LEADER")
T0=$(date +%s%N)
for ((n = 1; n <= NODES; n++)); do
    O_T0[$n]=$(sc_cpu_ticks "${O_PID[$n]}")
    S_T0[$n]=$(sc_cpu_ticks "${S_PID[$n]}")
    ST0[$n]=$(sc_sim "$n" stats)
    BC0[$n]=$(sc_field "${ST0[$n]}" bytecounts)
done
declare -A RA_FILE=()
RA_PIDS=()
if [ "$REAUTH_RATE" -gt 0 ]; then
    # Ends about when the window does: N / rate seconds.
    RA_N=$((REAUTH_RATE * WINDOW - 1))
    [ "$RA_N" -ge 1 ] || RA_N=1
    for ((n = 1; n <= NODES; n++)); do
        RA_FILE[$n]=$OVT_DIR/reauth.$n
        sc_sim "$n" reauth random "$RA_N" 64 "rate=$REAUTH_RATE" \
            >"${RA_FILE[$n]}" 2>&1 &
        RA_PIDS+=($!)
    done
fi
sleep "$WINDOW"
declare -A O_T1=() S_T1=() ST1=() RSS=() HWM=() SRSS=()
for ((n = 1; n <= NODES; n++)); do
    O_T1[$n]=$(sc_cpu_ticks "${O_PID[$n]}")
    S_T1[$n]=$(sc_cpu_ticks "${S_PID[$n]}")
    ST1[$n]=$(sc_sim "$n" stats)
done
T1=$(date +%s%N)
IDX1=$(sc_last_index "$SC_LEADER")
for ((n = 1; n <= NODES; n++)); do
    RSS[$n]=$(sc_status_kb "${O_PID[$n]}" VmRSS)
    HWM[$n]=$(sc_status_kb "${O_PID[$n]}" VmHWM)
    SRSS[$n]=$(sc_status_kb "${S_PID[$n]}" VmRSS)
done
DT_MS=$(((T1 - T0) / 1000000))
declare -A RA_LINE=()
if [ "${#RA_PIDS[@]}" -gt 0 ]; then
    wait "${RA_PIDS[@]}"
    for ((n = 1; n <= NODES; n++)); do
        RA_LINE[$n]=$(cat "${RA_FILE[$n]}")
        sc_say "reauth gw$n: ${RA_LINE[$n]}"
        case ${RA_LINE[$n]} in
        done*)
            for k in deny timeout killed; do
                if [ "$(sc_field "${RA_LINE[$n]}" $k)" != 0 ]; then
                    sc_say "gw$n: REAUTH $k=$(sc_field "${RA_LINE[$n]}" $k)"
                    FAILED=1
                fi
            done
            ;;
        *)
            sc_say "gw$n: the REAUTH batch failed"
            FAILED=1
            ;;
        esac
    done
fi

# Clients must have stayed: no disconnect, kill or timeout in the window.
for ((n = 1; n <= NODES; n++)); do
    for k in disconnects killed timeout; do
        if [ "$(sc_field "${ST0[$n]}" $k)" != "$(sc_field "${ST1[$n]}" $k)" ]; then
            sc_say "gw$n: $k went from $(sc_field "${ST0[$n]}" $k) to $(sc_field "${ST1[$n]}" $k) during the window"
            FAILED=1
        fi
    done
    est=$(sc_field "${ST1[$n]}" established)
    if [ "$est" != "$CLIENTS" ]; then
        sc_say "gw$n: $est clients established at the end, not $CLIENTS"
        FAILED=1
    fi
done

# ---- report -------------------------------------------------------------------
pct() {
    # pct TICKS MS: % of one core
    awk -v t="$1" -v ms="$2" -v hz="$SC_CLK_TCK" 'BEGIN { printf "%.1f", t / hz * 100000 / ms }'
}
mb() {
    awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'
}
per_s() {
    awk -v d="$1" -v ms="$2" 'BEGIN { printf "%.1f", d * 1000 / ms }'
}

echo
echo "steady state, ovhad on ovpn_sim ($(nproc) cores), $NODES node(s), $CLIENTS clients per gateway, bytecount every ${SC_BYTECOUNT}s, window $(awk -v m="$DT_MS" 'BEGIN { printf "%.1f", m / 1000 }') s, scale=$SCALE"
echo "command: BENCH_SCALE=$SCALE BENCH_NODES=$NODES BENCH_CLIENTS=$CLIENTS BENCH_WINDOW=$WINDOW BENCH_POP_CONC=$POP_CONC BENCH_REAUTH_RATE=$REAUTH_RATE BENCH_ROUTES=$SC_ROUTES $CMDLINE"
FMT='%-4s %-8s %8s %6s %6s %6s %8s %8s %8s %8s %9s %8s %6s %8s %8s\n'
printf "$FMT" gw role clients pop_s pop_p50 pop_p99 ovhad_cpu rss_MB hwm_MB sim_cpu sim_rss_MB bc_lines/s reauth re_p50 re_p99
VERDICT_CPU=met
VERDICT_RSS=met
for ((n = 1; n <= NODES; n++)); do
    role=follower
    [ "$n" = "$SC_LEADER" ] && role=leader
    cpu=$(pct $((O_T1[$n] - O_T0[$n])) "$DT_MS")
    scpu=$(pct $((S_T1[$n] - S_T0[$n])) "$DT_MS")
    bcs=$(per_s $(($(sc_field "${ST1[$n]}" bytecounts) - BC0[$n])) "$DT_MS")
    pl=${POP_LINE[$n]}
    printf "$FMT" "gw$n" "$role" "$(sc_field "${ST1[$n]}" established)" \
        "$(awk -v m="$(sc_field "$pl" elapsed_ms)" 'BEGIN { printf "%.1f", m / 1000 }')" \
        "$(awk -v u="$(sc_field "$pl" p50_us)" 'BEGIN { printf "%.1f", u / 1000 }')" \
        "$(awk -v u="$(sc_field "$pl" p99_us)" 'BEGIN { printf "%.1f", u / 1000 }')" \
        "$cpu%" "$(mb "${RSS[$n]}")" "$(mb "${HWM[$n]}")" "$scpu%" \
        "$(mb "${SRSS[$n]}")" "$bcs" "$(sc_field "${RA_LINE[$n]:-}" allow)" \
        "$(awk -v u="$(sc_field "${RA_LINE[$n]:-}" p50_us)" 'BEGIN { printf "%.1f", u / 1000 }')" \
        "$(awk -v u="$(sc_field "${RA_LINE[$n]:-}" p99_us)" 'BEGIN { printf "%.1f", u / 1000 }')"
    if awk -v c="$cpu" -v t="$TARGET_CPU" 'BEGIN { exit !(c > t) }'; then
        VERDICT_CPU="NOT met"
    fi
    if [ "${RSS[$n]}" -gt $((TARGET_RSS_MB * 1024)) ]; then
        VERDICT_RSS="NOT met"
    fi
done
echo "raft: last_index $IDX0 -> $IDX1 over the window: $(per_s $((IDX1 - IDX0)) "$DT_MS") entries/s"
echo "pop_s, pop_p50/p99 (ms): bringing the clients up ($POP_CONC in flight, all gateways at once, ${POP_MS} ms in all);"
echo "ovhad_cpu, sim_cpu: % of one core over the window (/proc/PID/stat utime+stime);"
echo "rss_MB: VmRSS at the end of the window; hwm_MB: VmHWM, the peak since start;"
echo "bc_lines/s: >BYTECOUNT_CLI lines the simulator sent in the window;"
echo "reauth, re_p50/p99 (ms): REAUTHs allowed in the window ($REAUTH_RATE/s per gateway) and their latency."
echo "target ovhad <= $TARGET_CPU% of one core: $VERDICT_CPU; RSS <= $TARGET_RSS_MB MB: $VERDICT_RSS"
for ((n = 1; n <= NODES; n++)); do
    errs=$(grep -c '^<[0-3]>' "$(ovt_gw_log "$n")" 2>/dev/null)
    sc_say "gw$n log: ${errs:-0} error lines ($(ovt_gw_log "$n"))"
done
if [ "$FAILED" != 0 ]; then
    OVT_KEEP=1
    echo "RESULT: FAILED (clients not admitted or not held; see above)"
    exit 1
fi
echo "RESULT: ok"
exit 0
