#!/usr/bin/env bash
# The whole test suite, as root on Debian 12 (README: "Run the tests").
#
#   1. install dependencies (deploy/deps.sh, idempotent)
#   2. gcc build (-O2, _FORTIFY_SOURCE) + formatting and header checks
#   3. every ctest label on it: unit, netns (real openvpn in namespaces),
#      cluster, fuzz (bounded smoke runs)
#   4. clang ASan+UBSan build: unit and fuzz labels
#   5. clang libFuzzer build: the fuzz label (bounded libFuzzer runs)
#
# Ends with one "N passed, N failed" line over all stages; exit 1 on any
# failure. OVHA_TEST_SKIP_SAN=1 / OVHA_TEST_SKIP_FUZZ=1 skip stages 4/5.
set -uo pipefail
cd "$(dirname "$0")"
root=$(pwd)
jobs=$(nproc 2>/dev/null || echo 2)

passed=0
failed=0
skipped=0
failures=()

note() { printf '\n=== %s ===\n' "$*"; }

check() { # check NAME CMD...: a pass/fail step outside ctest
    local name=$1
    shift
    if "$@"; then
        passed=$((passed + 1))
        echo "check ok: $name"
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "check FAILED: $name"
    fi
}

run_ctest() { # run_ctest BUILD_DIR [ctest args...]: adds to the totals
    local dir=$1
    shift
    local log
    log=$(mktemp)
    ctest --test-dir "$dir" --output-on-failure --no-tests=ignore "$@" \
        2>&1 | tee "$log"
    local line total nfail nskip
    line=$(grep -E 'tests failed out of [0-9]+' "$log" | tail -n 1)
    if [ -n "$line" ]; then
        nfail=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/' <<<"$line")
        total=$(sed -E 's/.* tests failed out of ([0-9]+).*/\1/' <<<"$line")
        nskip=$(grep -cE '\*\*\*Skipped|Not Run' "$log" || true)
        passed=$((passed + total - nfail - nskip))
        failed=$((failed + nfail))
        skipped=$((skipped + nskip))
        if [ "$nfail" -gt 0 ]; then
            failures+=("ctest in $dir $*")
        fi
    fi
    rm -f "$log"
}

build() { # build DIR [cmake args...]
    local dir=$1
    shift
    cmake -S "$root" -B "$dir" "$@" >/dev/null &&
        cmake --build "$dir" -j"$jobs"
}

headers_standalone() {
    local ok=0 h
    for h in base/base.h mgmt/mgmt.h fsm/fsm.h proto/proto.h raft/raft.h \
        node/node.h node/config.h node/http.h; do
        [ -f "$h" ] || continue
        printf '#include "%s"\n' "$h" |
            gcc -std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror -I. \
                -Ibuild/proto -x c -fsyntax-only - || { echo "not standalone: $h"; ok=1; }
    done
    return $ok
}

note "dependencies"
if ! ./deploy/deps.sh; then
    echo "deps.sh failed" >&2
    echo "0 passed, 1 failed"
    exit 1
fi

note "gcc build"
if build build -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_FLAGS="-O2 -D_FORTIFY_SOURCE=2"; then
    passed=$((passed + 1))
    check "clang-format" cmake --build build --target format-check
    check "headers compile standalone" headers_standalone
    note "tests (gcc build): unit, netns, cluster, fuzz smoke"
    run_ctest build
else
    failed=$((failed + 1))
    failures+=("gcc build")
fi

if [ "${OVHA_TEST_SKIP_SAN:-0}" != 1 ]; then
    note "clang ASan+UBSan build: unit and fuzz smoke"
    if CC=clang build build-asan -DOVHA_SANITIZE=ON \
        -DCMAKE_BUILD_TYPE=Debug; then
        passed=$((passed + 1))
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
            run_ctest build-asan -L 'unit|fuzz'
    else
        failed=$((failed + 1))
        failures+=("asan build")
    fi
fi

if [ "${OVHA_TEST_SKIP_FUZZ:-0}" != 1 ]; then
    note "clang libFuzzer build: bounded fuzz runs"
    if CC=clang build build-fuzz -DOVHA_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug; then
        passed=$((passed + 1))
        run_ctest build-fuzz -L fuzz
    else
        failed=$((failed + 1))
        failures+=("fuzz build")
    fi
fi

note "summary"
for f in "${failures[@]+"${failures[@]}"}"; do
    echo "failed: $f"
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
