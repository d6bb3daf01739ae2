#!/usr/bin/env bash
# cluster-tests/jepsen/long.sh: the long mode of the Jepsen-style tests.
#
#   long.sh RUNS DURATION_S NEMESIS FIRST_SEED [NODES] [OUTDIR]
#
# RUNS seeded runs of run.sh (seeds FIRST_SEED, FIRST_SEED+1, ...) with
# NEMESIS (partition | kill | pause | clock | mix | none) on NODES (3 or
# 5, default 3) gateways, DURATION_S seconds of workload each. Every run
# keeps its history, nemesis log, final state, verdict and node logs in
# OUTDIR/<nemesis>-n<nodes>-s<seed>/ (OUTDIR default /tmp/ovha-jepsen);
# one line per run is appended to OUTDIR/results.tsv:
#   seed nodes nemesis duration ops faults c1 c2 c3 c4 c5 result
# Environment knobs of run.sh (JEPSEN_BUG, JEPSEN_HOLD, JEPSEN_CNS, ...)
# pass through. Exit 0 when every run passed (as JEPSEN_EXPECT says).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
if [ $# -lt 4 ]; then
    sed -n '2,16p' "$0"
    exit 2
fi
RUNS=$1 DUR=$2 KIND=$3 SEED0=$4 NODES=${5:-3} OUTDIR=${6:-/tmp/ovha-jepsen}
mkdir -p "$OUTDIR"
RES=$OUTDIR/results.tsv
[ -s "$RES" ] || printf 'seed\tnodes\tnemesis\tduration\tops\tfaults\tc1\tc2\tc3\tc4\tc5\tresult\n' >"$RES"
failed=0
for ((i = 0; i < RUNS && i < 1000; i++)); do
    seed=$((SEED0 + i))
    out=$OUTDIR/$KIND-n$NODES-s$seed
    rm -rf "$out"
    JEPSEN_NODES=$NODES JEPSEN_NEMESIS=$KIND JEPSEN_DURATION=$DUR \
        JEPSEN_SEED=$seed JEPSEN_OUT=$out bash "$HERE/run.sh" \
        >"$OUTDIR/$KIND-n$NODES-s$seed.log" 2>&1
    r=$?
    result=ok
    [ "$r" = 0 ] || {
        result="FAILED($r)"
        failed=$((failed + 1))
    }
    v=$out/verdict.txt
    ops=$(sed -n 's/^history: \([0-9]*\) operations.*/\1/p' "$v" 2>/dev/null)
    faults=$(sed -n 's/^faults: \([0-9]*\).*/\1/p' "$v" 2>/dev/null)
    cs=$(sed -n 's/^violations: \(.*\) total=.*/\1/p' "$v" 2>/dev/null |
        sed 's/c[0-9]=//g')
    [ -n "$cs" ] || cs="- - - - -"
    # shellcheck disable=SC2086
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$seed" \
        "$NODES" "$KIND" "$DUR" "${ops:--}" "${faults:--}" $cs "$result" |
        tee -a "$RES"
done
echo "long: $RUNS runs, $failed failed; results in $RES"
[ "$failed" = 0 ]
