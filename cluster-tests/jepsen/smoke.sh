#!/usr/bin/env bash
# cluster-tests/jepsen/smoke.sh: the ctest `jepsen_smoke` (label cluster,
# about 2 minutes on 2 cores): checker.py's self-test (test_checker.py,
# made-up histories, a second), then two seeded runs of run.sh.
#   1. 3 nodes, mixed nemesis (partitions, kill -9, pauses, clock skew),
#      45 s of workload, seed 1: every checker must pass.
#   2. the same cluster with the planted bug OVHA_PLANT_BUG=no-fence,
#      partitions held 14 s, 100 CNs on a 30-address pool, 40 s, seed 7:
#      the checkers must report violations (they can fail).
# Exit 0 when both behave, 1 otherwise, 77 when run.sh cannot run here.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
rc=0
python3 "$HERE/test_checker.py" || rc=1
JEPSEN_NODES=3 JEPSEN_NEMESIS=mix JEPSEN_DURATION=45 JEPSEN_SEED=1 \
    JEPSEN_EXPECT=clean bash "$HERE/run.sh"
r=$?
[ "$r" = 77 ] && exit 77
[ "$r" = 0 ] || rc=1
JEPSEN_NODES=3 JEPSEN_NEMESIS=partition JEPSEN_DURATION=40 JEPSEN_SEED=7 \
    JEPSEN_BUG=no-fence JEPSEN_HOLD="14 14" JEPSEN_CNS=100 \
    JEPSEN_EXPECT=violations bash "$HERE/run.sh"
r=$?
[ "$r" = 77 ] && exit 77
[ "$r" = 0 ] || rc=1
if [ "$rc" = 0 ]; then
    echo "jepsen smoke: clean run passed, planted bug caught"
else
    echo "jepsen smoke: FAILED"
fi
exit "$rc"
