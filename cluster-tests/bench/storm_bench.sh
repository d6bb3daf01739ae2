#!/usr/bin/env bash
# bench/storm_bench.sh: reconnect storm after a gateway failure (issue 9).
#
# A 3-node cluster on the simulator (bench/simcluster.sh: gateway N at
# 198.18.0.N in its own namespace, local policy, pool 100.64.0.0/16,
# cluster.max_sessions 1 with evict_oldest, ovhad's other defaults).
#   1. BENCH_CLIENTS clients (CNs storm-0 ..) are brought up and held on
#      the victim gateway (`populate`), and the address each got is noted
#      (the simulator's `dump`).
#   2. The victim's ovhad and its simulator are killed with SIGKILL.
#   3. At once, the same CNs reconnect to the two surviving gateways, half
#      each (storm-0 .. on one, the rest on the other), paced so that all
#      of them have started within BENCH_STORM_S seconds (open loop: the
#      simulator's `populate ... rate=R`, up to 4096 waiting per gateway).
# Reported: the time until every client was admitted (from the kill, and
# from the first reconnect), p50/p99/p99.9/max decision latency per
# surviving gateway, timeouts / denials / kills, starts the 4096 cap held
# back, and whether each CN got its old address back.
#
# The victim is the raft leader by default (the worst case: the storm
# starts during the election); BENCH_VICTIM=follower kills a follower.
#
# Knobs: BENCH_SCALE=small (the ctest smoke: 300 clients over 2 s, about
# 30 s) or full (default: 10,000 clients over 10 s, about 1 minute);
# BENCH_CLIENTS, BENCH_STORM_S override the scale's; BENCH_POP_CONC (64:
# in flight while populating the victim); OVHA_BIN (default
# <repo>/build/bin), OVPN_SIM (default $OVHA_BIN/ovpn_sim); OVT_KEEP=1
# keeps the work dir; BENCH_ROUTES=false turns off cluster.routes (a
# diagnosis: its per-second reconciliation walks every session).
#
# Exit 0 when every client was admitted again with no timeout, denial or
# kill; 1 otherwise; 77 when it cannot run here (not root). Address
# changes are reported, not failed on.
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
case $SCALE in
small) CLIENTS=300 STORM_S=2 ;;
full) CLIENTS=10000 STORM_S=10 ;;
*)
    echo "BENCH_SCALE must be small or full" >&2
    exit 2
    ;;
esac
CLIENTS=${BENCH_CLIENTS:-$CLIENTS}
STORM_S=${BENCH_STORM_S:-$STORM_S}
POP_CONC=${BENCH_POP_CONC:-64}
VICTIM_ROLE=${BENCH_VICTIM:-leader}
STORM_CONC=4096
for v in "$CLIENTS" "$STORM_S" "$POP_CONC"; do
    case $v in
    '' | *[!0-9]* | 0)
        echo "BENCH_CLIENTS, BENCH_STORM_S, BENCH_POP_CONC: positive numbers" >&2
        exit 2
        ;;
    esac
done
case $VICTIM_ROLE in
leader | follower) ;;
*)
    echo "BENCH_VICTIM must be leader or follower" >&2
    exit 2
    ;;
esac

sc_require
OVT_NO_SUMMARY=1
ovt_init
FAILED=0
sc_up 3
VICTIM=$SC_LEADER
if [ "$VICTIM_ROLE" = follower ]; then
    VICTIM=1
    [ "$SC_LEADER" = 1 ] && VICTIM=2
fi
SURV=()
for n in 1 2 3; do
    [ "$n" != "$VICTIM" ] && SURV+=("$n")
done
GA=${SURV[0]}
GB=${SURV[1]}
NA=$((CLIENTS / 2))
NB=$((CLIENTS - NA))
# Each survivor's share of the rate, so that both finish starting within
# STORM_S seconds.
RA=$(((NA + STORM_S - 1) / STORM_S))
RB=$(((NB + STORM_S - 1) / STORM_S))
[ "$RA" -ge 1 ] || RA=1
sc_say "up: leader gw$SC_LEADER, victim gw$VICTIM ($VICTIM_ROLE), survivors gw$GA gw$GB, $CLIENTS clients, storm over ${STORM_S}s, scale=$SCALE"

# ---- 1. the clients on the victim --------------------------------------------
POP=$(sc_sim "$VICTIM" populate "$CLIENTS" storm "$POP_CONC")
sc_say "populate gw$VICTIM: $POP"
case $POP in
done*) ;;
*) sc_die "populate on gw$VICTIM failed: $POP" ;;
esac
[ "$(sc_field "$POP" allow)" = "$CLIENTS" ] ||
    sc_die "only $(sc_field "$POP" allow) of $CLIENTS admitted on gw$VICTIM"
# SessionEstablished of the last ones committed everywhere.
sleep 2
BEFORE=$OVT_DIR/before.txt
out=$(sc_sim "$VICTIM" dump "$BEFORE") || sc_die "dump gw$VICTIM: $out"

# ---- 2. kill the victim --------------------------------------------------------
OPID=${OVT_GW_PID[$VICTIM]}
SPID=$(sc_sim_pid "$VICTIM")
case $SPID in
'' | *[!0-9]*) sc_die "no simulator PID for gw$VICTIM" ;;
esac
# The simulator must be ovhad's child (it was started by that ovhad).
[ "$(awk '{ print $4 }' "/proc/$SPID/stat" 2>/dev/null)" = "$OPID" ] ||
    sc_die "simulator $SPID is not the child of ovhad $OPID"
T_KILL=$(date +%s%N)
kill -KILL "$OPID" "$SPID"

# ---- 3. the storm on the survivors -------------------------------------------
FA=$OVT_DIR/storm.$GA
FB=$OVT_DIR/storm.$GB
sc_sim "$GA" populate "$NA" storm "$STORM_CONC" first=0 "rate=$RA" >"$FA" 2>&1 &
PA=$!
sc_sim "$GB" populate "$NB" storm "$STORM_CONC" first="$NA" "rate=$RB" >"$FB" 2>&1 &
PB=$!
wait "$PA" "$PB" 2>/dev/null # (bash reports the killed ovhad here)
T_DONE=$(date +%s%N)
wait "$OPID" 2>/dev/null
LA=$(cat "$FA")
LB=$(cat "$FB")
sc_say "storm gw$GA: $LA"
sc_say "storm gw$GB: $LB"
for l in "$LA" "$LB"; do
    case $l in
    done*) ;;
    *) sc_die "a storm failed: $l" ;;
    esac
done

# ---- addresses: before vs after ----------------------------------------------
AFTER=$OVT_DIR/after.txt
: >"$AFTER"
for g in "$GA" "$GB"; do
    out=$(sc_sim "$g" dump "$OVT_DIR/after.$g") || sc_die "dump gw$g: $out"
    cat "$OVT_DIR/after.$g" >>"$AFTER"
done
# fields: CID CN IP STATE
read -r SAME MOVED MISSING <<<"$(awk '
    FNR == NR { ip[$2] = $3; next }
    { now[$2] = $3 }
    END {
        same = 0; moved = 0; missing = 0
        for (cn in ip) {
            if (!(cn in now) || now[cn] == "-") { missing++ }
            else if (now[cn] == ip[cn]) { same++ }
            else { moved++ }
        }
        print same, moved, missing
    }' "$BEFORE" "$AFTER")"

# ---- report -------------------------------------------------------------------
ms() {
    awk -v u="$1" 'BEGIN { printf "%.1f", u / 1000 }'
}
ALL_MS=$(((T_DONE - T_KILL) / 1000000))
EA=$(sc_field "$LA" elapsed_ms)
EB=$(sc_field "$LB" elapsed_ms)
ELAPSED=$((EA > EB ? EA : EB))
echo
echo "reconnect storm after a gateway failure, ovhad 3-node cluster on ovpn_sim ($(nproc) cores), scale=$SCALE"
echo "command: BENCH_SCALE=$SCALE BENCH_CLIENTS=$CLIENTS BENCH_STORM_S=$STORM_S BENCH_VICTIM=$VICTIM_ROLE BENCH_ROUTES=$SC_ROUTES $CMDLINE"
echo "victim gw$VICTIM ($VICTIM_ROLE) held $CLIENTS clients (populated in $(sc_field "$POP" elapsed_ms) ms, p99 $(ms "$(sc_field "$POP" p99_us)") ms); ovhad and its simulator killed (SIGKILL)"
FMT='%-4s %-6s %6s %7s %6s %6s %5s %6s %7s %8s %8s %8s %8s %8s\n'
printf "$FMT" gw first n offer/s allow deny tmo killed capped p50_ms p99_ms p999_ms max_ms done_ms
for pair in "$GA:0:$LA" "$GB:$NA:$LB"; do
    g=${pair%%:*}
    rest=${pair#*:}
    first=${rest%%:*}
    l=${rest#*:}
    printf "$FMT" "gw$g" "$first" "$(sc_field "$l" n)" "$(sc_field "$l" rate)" \
        "$(sc_field "$l" allow)" "$(sc_field "$l" deny)" \
        "$(sc_field "$l" timeout)" "$(sc_field "$l" killed)" \
        "$(sc_field "$l" capped)" "$(ms "$(sc_field "$l" p50_us)")" \
        "$(ms "$(sc_field "$l" p99_us)")" "$(ms "$(sc_field "$l" p999_us)")" \
        "$(ms "$(sc_field "$l" max_us)")" "$(sc_field "$l" elapsed_ms)"
    for k in deny timeout killed skipped; do
        if [ "$(sc_field "$l" $k)" != 0 ]; then
            sc_say "gw$g: $k=$(sc_field "$l" $k)"
            FAILED=1
        fi
    done
done
ADMITTED=$(($(sc_field "$LA" allow) + $(sc_field "$LB" allow)))
echo "admitted again: $ADMITTED of $CLIENTS; all admitted ${ELAPSED} ms after the first reconnect, ${ALL_MS} ms after the kill (schedule: ${STORM_S} s)"
echo "old address back: $SAME; another address: $MOVED; none: $MISSING"
echo "done_ms: first reconnect to last answer on that gateway (the storm's own clock);"
echo "latency: >CLIENT:ENV,END written -> client-auth/deny read, per gateway;"
echo "capped: starts held back because $STORM_CONC were waiting on that gateway."
if [ "$ADMITTED" != "$CLIENTS" ]; then
    FAILED=1
fi
# The last start is due (n-1)/rate s after the first on each survivor:
# what comes after that is the tail the cluster adds to the clients' own
# spread.
LAST_DUE=$(((NA - 1) * 1000 / RA))
v=$(((NB - 1) * 1000 / RB))
[ "$v" -gt "$LAST_DUE" ] && LAST_DUE=$v
echo "tail: the last client admitted $((ELAPSED - LAST_DUE)) ms after the last reconnect started (${LAST_DUE} ms into the storm)"
for n in 1 2 3; do
    errs=$(grep -c '^<[0-3]>' "$(ovt_gw_log "$n")" 2>/dev/null)
    sc_say "gw$n log: ${errs:-0} error lines ($(ovt_gw_log "$n"))"
done
if [ "$FAILED" != 0 ]; then
    OVT_KEEP=1
    echo "RESULT: FAILED (clients not admitted again; see above)"
    exit 1
fi
echo "RESULT: ok"
exit 0
