#!/usr/bin/env bash
# node/tests/test_ovhactl.sh: ovhactl against a fake admin API.
#
#   test_ovhactl.sh [PATH/TO/ovhactl]     (default $OVHA_BIN/ovhactl)
#
# Checks `token new` (format, randomness, the tokens-file line hashes the
# token), the token file rules (mode 0600, first line, whitespace), the
# request every command sends (method, path, query, body, Authorization),
# table and --json output, escaping of hostile strings, and the exit codes
# 0 ok / 1 failed / 2 usage / 3 unreachable / 4 not authorized / 5
# unavailable. ovhactl_fake_api.py plays the node on a unix socket and, in
# a network namespace of our own (unshare -rn, 198.18.0.1 on its lo), on
# HTTPS with a test CA and a client certificate. The HTTPS part is skipped
# (reported) when no namespace can be made. Needs python3, openssl, jq.
# Prints "N passed, N failed"; exit 0 only when nothing failed, 77 when a
# tool is missing.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
CTL=${1:-${OVHA_BIN:-$HERE/../../build/bin}/ovhactl}
FAKE=$HERE/ovhactl_fake_api.py
for tool in python3 openssl jq sha256sum; do
    if ! command -v "$tool" >/dev/null; then
        echo "test_ovhactl: $tool missing: skipped"
        exit 77
    fi
done
if [ ! -x "$CTL" ]; then
    echo "test_ovhactl: no ovhactl at $CTL"
    exit 1
fi
# The HTTPS part runs in another directory.
case $CTL in
/*) ;;
*) CTL=$PWD/$CTL ;;
esac

T=$(mktemp -d /tmp/ovhactl-test.XXXXXX)
FAKE_PID=""
cleanup() {
    if [ -n "$FAKE_PID" ]; then
        kill "$FAKE_PID" 2>/dev/null
        wait "$FAKE_PID" 2>/dev/null
    fi
    rm -rf "$T"
}
trap cleanup EXIT
umask 077

PASS=0
FAIL=0
ok() {
    PASS=$((PASS + 1))
    echo "ok - $1"
}
not_ok() {
    FAIL=$((FAIL + 1))
    echo "not ok - $1"
    shift
    for l in "$@"; do
        echo "#   $l"
    done
}
# check NAME CMD...: passes when CMD succeeds.
check() {
    local name=$1
    shift
    if "$@"; then
        ok "$name"
    else
        not_ok "$name" "failed: $*" "rc=$RC out=$(head -c 600 "$T/out") err=$(head -c 600 "$T/err")"
    fi
}
# run ARGS...: runs ovhactl against the fake socket; sets RC, $T/out, $T/err.
run() {
    "$CTL" -s "$T/api.sock" "$@" >"$T/out" 2>"$T/err"
    RC=$?
}
rc_is() { [ "$RC" = "$1" ]; }
out_has() { grep -q -F -- "$1" "$T/out"; }
err_has() { grep -q -F -- "$1" "$T/err"; }
out_is() { [ "$(cat "$T/out")" = "$1" ]; }
# last_req FIELD: a field of the last request the fake saw.
last_req() { tail -n 1 "$T/log" | jq -r ".$1"; }

# ---- token new ------------------------------------------------------------

"$CTL" token new alice admin >"$T/out" 2>"$T/err"
RC=$?
TOK_ADMIN=$(sed -n 1p "$T/out")
LINE_ADMIN=$(sed -n 2p "$T/out")
check "token new: exit 0" rc_is 0
check "token new: line 1 is ovha_ and 64 hex" \
    eval '[[ $TOK_ADMIN =~ ^ovha_[0-9a-f]{64}$ ]]'
# shellcheck disable=SC2034 # used inside eval
HASH=$(printf '%s' "$TOK_ADMIN" | sha256sum | cut -d' ' -f1)
check "token new: line 2 is the tokens-file line with SHA-256(token)" \
    eval '[ "$LINE_ADMIN" = "token alice admin sha256:$HASH" ]'
check "token new: exactly two lines" eval '[ "$(wc -l <"$T/out")" = 2 ]'
"$CTL" token new alice admin >"$T/out2" 2>/dev/null
check "token new: two tokens differ" \
    eval '[ "$(sed -n 1p "$T/out2")" != "$TOK_ADMIN" ]'
"$CTL" --json token new bob.ops@site-1 viewer >"$T/out" 2>"$T/err"
RC=$?
check "token new --json: subject, role, sha256 of the token" \
    eval '[ "$(jq -r .subject "$T/out")" = bob.ops@site-1 ] &&
          [ "$(jq -r .role "$T/out")" = viewer ] &&
          [ "$(jq -r .token "$T/out" | tr -d "\n" | sha256sum | cut -d" " -f1)" = "$(jq -r .sha256 "$T/out")" ]'
for bad in "a b" "" "x/y" "$(printf 'a%.0s' {1..65})" "é"; do
    "$CTL" token new "$bad" admin >"$T/out" 2>"$T/err"
    RC=$?
    check "token new refuses subject '$bad' (usage)" \
        eval 'rc_is 2 && [ ! -s "$T/out" ]'
done
"$CTL" token new alice root >"$T/out" 2>"$T/err"
RC=$?
check "token new refuses role root (usage)" rc_is 2
"$CTL" token new "$(printf 'a%.0s' {1..64})" operator >"$T/out" 2>"$T/err"
RC=$?
check "token new takes a 64-character subject" rc_is 0
"$CTL" token new carol operator >"$T/tok_op.out"
"$CTL" token new vic viewer >"$T/tok_view.out"

# The tokens file of the fake node, and the operator's token files.
{
    echo "# test tokens"
    echo "$LINE_ADMIN"
    sed -n 2p "$T/tok_op.out"
    sed -n 2p "$T/tok_view.out"
    echo "cert ops-1 viewer"
} >"$T/tokens"
printf '%s\n' "$TOK_ADMIN" >"$T/admin.tok"
sed -n 1p "$T/tok_op.out" >"$T/op.tok"
sed -n 1p "$T/tok_view.out" >"$T/view.tok"
printf '  %s \r\n# a comment line\n' "$TOK_ADMIN" >"$T/spaced.tok"
echo "ovha_$(printf '0%.0s' {1..64})" >"$T/wrong.tok"
chmod 600 "$T"/*.tok

# ---- token file rules -------------------------------------------------------

: >"$T/log"
cp "$T/admin.tok" "$T/open.tok"
chmod 644 "$T/open.tok"
run --token-file "$T/open.tok" health
check "a token file readable by others is refused (usage)" \
    eval 'rc_is 2 && err_has "too open" && err_has "chmod 600"'
chmod 640 "$T/open.tok"
run --token-file "$T/open.tok" health
check "a token file readable by the group is refused" rc_is 2
chmod 600 "$T/open.tok"
OVHA_TOKEN_FILE=$T/open.tok "$CTL" -s "$T/api.sock" --token-file "$T/nope" \
    health >"$T/out" 2>"$T/err"
RC=$?
check "a missing token file is refused (usage), --token-file beats the env" \
    eval 'rc_is 2 && err_has "$T/nope"'
: >"$T/empty.tok"
chmod 600 "$T/empty.tok"
run --token-file "$T/empty.tok" health
check "an empty token file is refused" rc_is 2
printf 'ovha_a b\n' >"$T/space.tok"
chmod 600 "$T/space.tok"
run --token-file "$T/space.tok" health
check "a token with a space inside is refused" rc_is 2
run --token-file "$T" health
check "a directory as token file is refused" rc_is 2
check "the refused token files sent nothing" eval '[ ! -s "$T/log" ]'
run token new dave viewer --token-file "$T/open.tok"
check "token new needs no token file and no node" rc_is 0

# ---- the fake node on a unix socket -----------------------------------------

mkdir "$T/state"
python3 "$FAKE" unix "$T/api.sock" "$T/tokens" "$T/log" "$T/state" \
    2>"$T/fake.err" &
FAKE_PID=$!
for _ in $(seq 1 100); do
    [ -S "$T/api.sock" ] && break
    sleep 0.05
done
if [ ! -S "$T/api.sock" ]; then
    not_ok "the fake API starts" "$(cat "$T/fake.err")"
    echo "$PASS passed, $FAIL failed"
    exit 1
fi

run health
check "health: exit 0, status ok, no Authorization without a token" \
    eval 'rc_is 0 && out_has "status: ok" && [ "$(last_req auth)" = null ]'
run --token-file "$T/spaced.tok" health
check "the token is its file's first line, whitespace stripped" \
    eval 'rc_is 0 && [ "$(last_req auth)" = "Bearer $TOK_ADMIN" ]'
OVHA_TOKEN_FILE=$T/view.tok "$CTL" -s "$T/api.sock" pools >"$T/out" 2>"$T/err"
RC=$?
check "OVHA_TOKEN_FILE is read; a viewer lists pools" \
    eval 'rc_is 0 && [ "$(last_req subject)" = token:vic ]'

run ready
check "ready: exit 0, prints ready" eval 'rc_is 0 && out_is ready'
touch "$T/state/notready"
run ready
check "not ready: exit 1, the reasons, escaped" \
    eval 'rc_is 1 && out_has "not ready:" && out_has "raft: no leader" &&
          out_has "\\x1b]0;x" && ! grep -q $'"'"'\x1b'"'"' "$T/out"'
run ready --json
check "not ready --json: the raw answer" \
    eval 'rc_is 1 && [ "$(jq -r .ready "$T/out")" = false ]'
rm "$T/state/notready"
run metrics
check "metrics: the Prometheus text as sent" \
    eval 'rc_is 0 && out_has "ovha_up 1"'

run sessions
check "sessions: the table the e2e tests grep (^alice )" \
    eval 'rc_is 0 && head -n 1 "$T/out" | grep -q "^CN  *CID  *VPN IP" &&
          grep -q "^alice " "$T/out"'
run sessions --json
check "sessions --json: the raw answer" \
    eval 'rc_is 0 && [ "$(jq -r ".sessions | length" "$T/out")" = 1 ]'
run sessions --cluster --cn 'a&b' --gateway gw1 --state established
check "sessions --cluster filters: ?cn=&gateway=&state=, escaped" \
    eval 'rc_is 0 && [ "$(last_req path)" = "/v1/cluster/sessions?cn=a%26b&gateway=gw1&state=established" ] &&
          head -n 1 "$T/out" | grep -q "^ID  *CN  *GATEWAY"'
run sessions --cluster bob
check "sessions --cluster CN is --cn CN" \
    eval 'rc_is 0 && [ "$(last_req path)" = "/v1/cluster/sessions?cn=bob" ]'
run sessions --state established
check "sessions --state without --cluster: usage" rc_is 2
run sessions --cluster a --cn b
check "sessions --cluster with CN and --cn: usage" rc_is 2

run kill alice
check "kill alice: exit 0, message" \
    eval 'rc_is 0 && out_is "killed 1 session of alice"'
run kill nobody
check "kill of a CN without sessions: exit 1" rc_is 1

run pools
check "pools: table with NAME CIDR SIZE LEASES LEASE TTL" \
    eval 'rc_is 0 && head -n 1 "$T/out" | grep -q "^NAME  *CIDR  *SIZE  *LEASES  *LEASE TTL (ms)$" &&
          grep -q "^main  *100.64.0.0/24  *253  *3  *3600000$" "$T/out"'
check "pools: a hostile pool name is escaped, no raw ESC" \
    eval 'out_has "\"evil\\x1b[31m\"" && ! grep -q $'"'"'\x1b'"'"' "$T/out"'
run pools --json
check "pools --json: the raw answer" \
    eval 'rc_is 0 && [ "$(jq -r ".pools[0].name" "$T/out")" = main ]'

run --token-file "$T/admin.tok" pool put lab 100.64.2.0/24 --ttl-ms 60000
check "pool put: PUT /v1/pools with the body, bearer token" \
    eval 'rc_is 0 && [ "$(last_req method)" = PUT ] &&
          [ "$(last_req body | jq -c .)" = "{\"name\":\"lab\",\"cidr\":\"100.64.2.0/24\",\"lease_ttl_ms\":60000}" ] &&
          [ "$(last_req auth)" = "Bearer $TOK_ADMIN" ] &&
          out_is "pool lab: 100.64.2.0/24, lease ttl 60000 ms"'
run pool put lab 100.64.2.0/24
check "pool put without --ttl-ms sends no lease_ttl_ms" \
    eval 'rc_is 0 && [ "$(last_req body | jq -c .)" = "{\"name\":\"lab\",\"cidr\":\"100.64.2.0/24\"}" ]'
run pool put lab 100.64.2.0/24 --ttl-ms 0
check "pool put --ttl-ms 0: usage" rc_is 2
run pool put lab
check "pool put without CIDR: usage" rc_is 2
run pool put lab bad
check "pool put refused (400): exit 1 with the error" \
    eval 'rc_is 1 && err_has "body must be"'
run pool put noleader 100.64.3.0/24
check "no raft leader (503): exit 5 with the Retry-After hint" \
    eval 'rc_is 5 && err_has "no raft leader; retry" && err_has "retry in 2 s"'
run cluster join 7 198.18.0.7:7000
check "join on a follower (503 naming the leader): exit 1, leader is 2" \
    eval 'rc_is 1 && err_has "leader is 2 at 198.18.0.2:7000"'

run --token-file "$T/view.tok" pool put lab 100.64.2.0/24
check "a viewer's write (403): exit 4" \
    eval 'rc_is 4 && err_has "role too low" && err_has "higher role"'
run --token-file "$T/op.tok" pool put lab 100.64.2.0/24
check "an operator's admin write (403): exit 4" rc_is 4
run --token-file "$T/op.tok" lease reserve alice 100.64.0.9
check "lease reserve: operator allowed, body {cn, ip}" \
    eval 'rc_is 0 && [ "$(last_req path)" = /v1/leases/reserve ] &&
          [ "$(last_req body | jq -c .)" = "{\"cn\":\"alice\",\"ip\":\"100.64.0.9\"}" ] &&
          out_is "100.64.0.9 reserved for alice"'
run lease reserve alice 100.64.9.9
check "lease reserve refused (409): exit 1 with the reason" \
    eval 'rc_is 1 && err_has "OUT_OF_POOL"'
run lease release alice 100.64.0.9
check "lease release: POST /v1/leases/release" \
    eval 'rc_is 0 && [ "$(last_req path)" = /v1/leases/release ] &&
          out_is "100.64.0.9 released from alice"'
run --token-file "$T/wrong.tok" pools
check "an unknown token (401): exit 4, names the token file" \
    eval 'rc_is 4 && err_has "unauthorized" && err_has "token in $T/wrong.tok"'
run --token-file "$T/wrong.tok" health
check "open routes work even with an unknown token" rc_is 0

run subnets
check "subnets: CIDR and OWNER CN (quoted when it has a space)" \
    eval 'rc_is 0 && grep -q "^100.64.128.0/25  \"site a\"$" "$T/out"'
run subnets site-a
check "subnets CN: ?cn=" \
    eval 'rc_is 0 && [ "$(last_req path)" = "/v1/subnets?cn=site-a" ]'
run subnet release 100.64.128.0/25
check "subnet release: body {cidr}" \
    eval 'rc_is 0 && [ "$(last_req body | jq -c .)" = "{\"cidr\":\"100.64.128.0/25\"}" ] &&
          out_is "subnet 100.64.128.0/25 released"'
run subnet release 100.64.200.0/25
check "subnet release of an unknown subnet (404): exit 1" rc_is 1

run audit --after 5 --limit 3
check "audit --after --limit: the query, the table, the next page" \
    eval 'rc_is 0 && [ "$(last_req path)" = "/v1/audit?after=5&limit=3" ] &&
          head -n 1 "$T/out" | grep -q "^SEQ  *TIME  *KIND  *ACTOR  *SUBJECT  *DETAIL$" &&
          grep -q "^  1  2023-11-14T22:13:20Z  api  *token:alice  *\"PUT /v1/pools\"  *200$" "$T/out" &&
          out_has "ovhactl audit --after 3"'
run audit --limit 1001
check "audit --limit 1001: usage" rc_is 2
run audit --json
check "audit --json: records with their hashes" \
    eval 'rc_is 0 && [ "$(jq -r ".records[0].hash | length" "$T/out")" = 64 ]'
run audit head
check "audit head still works (two words win over 'audit')" \
    eval 'rc_is 0 && [ "$(last_req path)" = /v1/audit/head ] && out_has "verified: yes"'
run audit verify
check "audit verify: exit 0" \
    eval 'rc_is 0 && out_is "audit chain verified: seq 0 .. 10"'
touch "$T/state/broken"
run audit verify
check "audit verify of a broken chain: exit 1, the bad seq" \
    eval 'rc_is 1 && out_has "BROKEN at seq 5"'
run audit verify --json
check "audit verify --json of a broken chain: the verdict on stdout" \
    eval 'rc_is 1 && [ "$(jq -r .bad_seq "$T/out")" = 5 ]'
rm "$T/state/broken"
run audit bogus
check "audit bogus: usage" rc_is 2

run gateway standby gw2
check "gateway standby: POST /v1/gateways/standby {gateway}" \
    eval 'rc_is 0 && [ "$(last_req path)" = /v1/gateways/standby ] &&
          [ "$(last_req body | jq -c .)" = "{\"gateway\":\"gw2\"}" ]'
run gateway drain gw2 --force
check "gateway drain --force still sends force" \
    eval 'rc_is 0 && [ "$(last_req body | jq -c .)" = "{\"gateway\":\"gw2\",\"force\":true}" ]'
run gateway standby gw2 --force
check "gateway standby --force: usage" rc_is 2

# ---- usage and help -----------------------------------------------------------

run --ttl-ms 5 pools
check "an option of another command: usage" rc_is 2
run --server https://198.18.0.1:9443 pools
check "--socket and --server together: usage" rc_is 2
"$CTL" --server http://198.18.0.1:9443 pools >"$T/out" 2>"$T/err"
RC=$?
check "--server http://: usage (TLS only)" rc_is 2
"$CTL" --cert a pools >"$T/out" 2>"$T/err"
RC=$?
check "--cert without --server: usage" rc_is 2
run help
check "ovhactl help: exit 0, lists token new" \
    eval 'rc_is 0 && out_has "token new SUBJECT ROLE"'
# The command names: "  name [sub] ARGS..." lines of the command list.
NAMES=$("$CTL" --help | sed -n 's/^  \([a-z][a-z-]*\( [a-z][a-z-]*\)\?\)\( .*\)\?$/\1/p' |
    sort -u)
bad=""
n=0
while read -r c; do
    [ -z "$c" ] && continue
    n=$((n + 1))
    # shellcheck disable=SC2086
    if ! "$CTL" $c --help >/dev/null 2>&1 || ! "$CTL" help $c >/dev/null 2>&1; then
        bad="$bad [$c]"
    fi
done <<<"$NAMES"
check "every command ($n) answers --help and help CMD" \
    eval '[ -z "$bad" ] && [ "$n" -ge 35 ]'
run cluster --help
check "a group's --help lists its commands" \
    eval 'rc_is 0 && out_has "cluster join ID ADDRESS"'
run frobnicate
check "an unknown command: usage" rc_is 2

kill "$FAKE_PID" 2>/dev/null
wait "$FAKE_PID" 2>/dev/null
FAKE_PID=""
run health
check "no node on the socket: exit 3" \
    eval 'rc_is 3 && err_has "cannot reach the node at $T/api.sock"'

# ---- HTTPS in a namespace of our own ---------------------------------------------

tls_part() {
    # Runs inside unshare -rn: a fresh network namespace, only lo.
    set -u
    ip link set lo up && ip addr add 198.18.0.1/32 dev lo || return 1
    cd "$T" || return 1
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout ca.key -out ca.crt -days 2 -subj /CN=ovha-test-ca \
        >/dev/null 2>&1 || return 1
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout srv.key -out srv.csr -subj /CN=api >/dev/null 2>&1 &&
        printf 'subjectAltName=IP:198.18.0.1\n' >srv.ext &&
        openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key \
            -CAcreateserial -out srv.crt -days 2 -extfile srv.ext \
            >/dev/null 2>&1 || return 1
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout cli.key -out cli.csr -subj /CN=ops-1 >/dev/null 2>&1 &&
        openssl x509 -req -in cli.csr -CA ca.crt -CAkey ca.key \
            -CAcreateserial -out cli.crt -days 2 >/dev/null 2>&1 || return 1
    : >"$T/log"
    python3 "$FAKE" tls 198.18.0.1 9443 "$T/tokens" "$T/log" "$T/state" \
        srv.crt srv.key ca.crt 2>"$T/fake-tls.err" &
    local pid=$!
    # shellcheck disable=SC2064 # pid is known now
    trap "kill $pid 2>/dev/null" EXIT
    for _ in $(seq 1 100); do
        if python3 -c 'import socket; socket.create_connection(("198.18.0.1", 9443), 1)' 2>/dev/null; then
            break
        fi
        sleep 0.05
    done
    local S=(--server https://198.18.0.1:9443 --cacert ca.crt)
    "$CTL" "${S[@]}" --token-file admin.tok pools >out 2>err
    echo "pools-admin $? $(tail -n 1 log | jq -r '.auth + " " + .subject')"
    "$CTL" --server 198.18.0.1:9443/ --cacert ca.crt --token-file admin.tok \
        health >out 2>err
    echo "bare-host $?"
    "$CTL" "${S[@]}" pools >out 2>err
    echo "no-credentials $? $(grep -c -- --cert err)"
    "$CTL" "${S[@]}" --token-file wrong.tok pools >out 2>err
    echo "wrong-token $?"
    "$CTL" "${S[@]}" --cert cli.crt --key cli.key pools >out 2>err
    echo "cert-viewer-read $? $(tail -n 1 log | jq -r .subject)"
    "$CTL" "${S[@]}" --cert cli.crt --key cli.key pool put a 100.64.5.0/24 \
        >out 2>err
    echo "cert-viewer-write $?"
    "$CTL" "${S[@]}" --token-file admin.tok pool put noleader 100.64.5.0/24 \
        >out 2>err
    echo "noleader $?"
    "$CTL" --server https://198.18.0.1:9443 --token-file admin.tok pools \
        >out 2>err
    echo "unknown-ca $? $(grep -c -i certificate err)"
    "$CTL" --server https://198.18.0.1:9444 --cacert ca.crt pools >out 2>err
    echo "no-listener $?"
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}
export -f tls_part
export T CTL FAKE
if unshare -rn true 2>/dev/null; then
    unshare -rn bash -c tls_part >"$T/tls.res" 2>"$T/tls.err"
    TRC=$?
    tls() { grep "^$1 " "$T/tls.res" | cut -d' ' -f2-; }
    if [ "$TRC" != 0 ] || [ ! -s "$T/tls.res" ]; then
        not_ok "HTTPS: the namespace and certificates are set up" \
            "$(cat "$T/tls.err" "$T/fake-tls.err" 2>/dev/null | head -c 600)"
    else
        check "HTTPS + bearer token: exit 0, the header arrives" \
            eval '[ "$(tls pools-admin)" = "0 Bearer $TOK_ADMIN token:alice" ]'
        check "HTTPS: --server HOST:PORT/ means https://HOST:PORT" \
            eval '[ "$(tls bare-host)" = 0 ]'
        check "HTTPS without token or certificate (401): exit 4, --cert hint" \
            eval '[ "$(tls no-credentials)" = "4 1" ]'
        check "HTTPS with an unknown token: exit 4" \
            eval '[ "$(tls wrong-token)" = 4 ]'
        check "HTTPS client certificate with a cert line: its role reads" \
            eval '[ "$(tls cert-viewer-read)" = "0 cert:ops-1" ]'
        check "HTTPS client certificate, viewer writing: exit 4" \
            eval '[ "$(tls cert-viewer-write)" = 4 ]'
        check "HTTPS 503: exit 5" eval '[ "$(tls noleader)" = 5 ]'
        check "HTTPS server not verifiable without --cacert: exit 3" \
            eval '[ "$(tls unknown-ca)" = "3 1" ]'
        check "HTTPS nothing listening: exit 3" \
            eval '[ "$(tls no-listener)" = 3 ]'
    fi
else
    echo "# skipped the HTTPS part: cannot unshare a network namespace"
fi

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
