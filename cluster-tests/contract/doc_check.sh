#!/usr/bin/env bash
# cluster-tests/contract/doc_check.sh: the static half of the contract
# test (ctest contract_doc, no root, a few seconds):
#   1. docs/openapi.yaml passes @redocly/cli lint (pinned in
#      package-lock.json, installed by setup.sh; rules in redocly.yaml)
#   2. every route node/*.c register (api*.c, metrics.c) is documented
#      and every documented operation is registered
#   3. every operation's x-ovha-role is the role node/auth.c requires
#   4. the checker rejects what it must (contract.py selftest)
# Prints "N passed, N failed"; exit 1 on a failure, 77 when node, npm or
# Debian's python3-jsonschema / python3-yaml are missing.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DOC=$ROOT/docs/openapi.yaml
PY=/usr/bin/python3
passed=0
failed=0

report() { # report NAME STATUS [OUTPUT]
    if [ "$2" = 0 ]; then
        passed=$((passed + 1))
        echo "ok - $1"
    else
        failed=$((failed + 1))
        echo "not ok - $1"
        [ -n "${3:-}" ] && printf '%s\n' "$3" | sed 's/^/#   /'
    fi
}

# Turns contract.py's "ok - / not ok - " lines into counts.
count_lines() {
    local line
    while IFS= read -r line; do
        echo "$line"
        case $line in
        "ok - "*) passed=$((passed + 1)) ;;
        "not ok - "*) failed=$((failed + 1)) ;;
        esac
    done
}

if ! "$PY" -c 'import yaml, jsonschema' 2>/dev/null; then
    echo "1..0 # SKIP needs python3-yaml and python3-jsonschema (deploy/deps.sh)"
    exit 77
fi
rc=0
out=$(bash "$HERE/setup.sh" 2>&1) || rc=$?
if [ "$rc" = 77 ]; then
    echo "1..0 # SKIP $out"
    exit 77
fi
report "npm ci installed the pinned linter" "$rc" "$out"

if [ "$rc" = 0 ]; then
    rc=0
    out=$(cd "$HERE" && REDOCLY_TELEMETRY=off \
        REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
        ./node_modules/.bin/redocly lint --config redocly.yaml \
        --format stylish "$DOC" 2>&1) || rc=$?
    report "redocly lint docs/openapi.yaml" "$rc" "$out"
fi
count_lines < <("$PY" "$HERE/contract.py" routes "$DOC" "$ROOT" 2>&1)
count_lines < <("$PY" "$HERE/contract.py" selftest "$DOC" 2>&1)
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
