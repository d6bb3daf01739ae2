#!/bin/bash
# test_upstream_server.sh: checks cluster-tests/tools/upstream-server.py over
# real HTTPS on 127.0.0.1 with a throwaway EC P-256 CA made by the openssl
# CLI. Needs python3, openssl, curl, jq. Prints "N passed, N failed"; exit
# 0 when nothing failed, 1 otherwise.
set -u

here=$(cd "$(dirname "$0")" && pwd)
server="$here/upstream-server.py"
tmp=$(mktemp -d /tmp/ovha-upstream-test.XXXXXX)
pid=""
passed=0
failed=0

pid2=""
cleanup() {
    if [ -n "$pid2" ] && kill -0 "$pid2" 2>/dev/null; then
        kill "$pid2" 2>/dev/null
        wait "$pid2" 2>/dev/null
    fi
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

for tool in python3 openssl curl jq; do
    if ! command -v "$tool" >/dev/null; then
        echo "skip: $tool missing"
        exit 77
    fi
done

ok() {
    passed=$((passed + 1))
    echo "ok   $1"
}
fail() {
    failed=$((failed + 1))
    echo "FAIL $1${2:+: $2}"
}
# check NAME EXPECTED ACTUAL
check() {
    if [ "$2" = "$3" ]; then ok "$1"; else fail "$1" "expected '$2', got '$3'"; fi
}

# --- PKI: a CA and a server certificate for 127.0.0.1 ----------------------
pki() {
    openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/ca.key" &&
        openssl req -x509 -new -key "$tmp/ca.key" -sha256 -days 1 \
            -subj "/CN=ovha upstream test CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -out "$tmp/ca.crt" &&
        openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/srv.key" &&
        openssl req -new -key "$tmp/srv.key" -subj "/CN=127.0.0.1" \
            -out "$tmp/srv.csr" &&
        printf '%s\n' "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature" \
            "extendedKeyUsage=serverAuth" \
            "subjectAltName=IP:127.0.0.1" >"$tmp/ext.cnf" &&
        openssl x509 -req -in "$tmp/srv.csr" -CA "$tmp/ca.crt" \
            -CAkey "$tmp/ca.key" -CAcreateserial -days 1 -sha256 \
            -extfile "$tmp/ext.cnf" -out "$tmp/srv.crt"
}
if ! pki >"$tmp/pki.log" 2>&1; then
    cat "$tmp/pki.log"
    echo "0 passed, 1 failed"
    exit 1
fi

pw_secret='s3cr3t-Pa55-word-XYZ'
cat >"$tmp/data.json" <<EOF
{
  "alice": {"decision": "allow", "reason": "staff", "groups": ["staff"],
            "ip": "100.64.0.10", "routes": ["100.64.100.0/24"],
            "iroutes": ["100.96.1.0/24"],
            "quota": {"bytes": 1000000000, "period": "day"},
            "bandwidth": {"down_kbps": 10000, "up_kbps": 2000},
            "max_sessions": 2, "on_excess": "evict_oldest", "ttl_s": 60},
  "bob": {"decision": "deny", "reason": "contract ended",
          "client_reason": "access revoked", "ttl_s": 30},
  "carol": {"decision": "allow", "pool": "main", "ttl_s": 10,
            "x_password": "$pw_secret"}
}
EOF

# --- start ------------------------------------------------------------------
python3 "$server" --cert "$tmp/srv.crt" --key "$tmp/srv.key" \
    --listen 127.0.0.1:0 --data "$tmp/data.json" \
    >"$tmp/server.out" 2>"$tmp/server.log" &
pid=$!
port=""
for _ in $(seq 1 100); do
    port=$(sed -n 's/^listening 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/server.out")
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$port" ]; then
    cat "$tmp/server.log"
    echo "0 passed, 1 failed"
    exit 1
fi
ok "server listening on 127.0.0.1:$port"
base="https://127.0.0.1:$port"

# post PATH JSON [extra curl args]: prints the body, then the status on the
# last line. The body comes from a file so a password never shows in ps.
post() {
    local path=$1 body=$2 f rc
    shift 2
    f=$(mktemp "$tmp/req.XXXXXX")
    printf '%s' "$body" >"$f"
    curl -sS --cacert "$tmp/ca.crt" --max-time 5 -X POST \
        -H 'Content-Type: application/json' --data-binary "@$f" \
        -w '\n%{http_code}' "$@" "$base$path"
    rc=$?
    rm -f "$f"
    return $rc
}
status_of() { tail -n 1 <<<"$1"; }
body_of() { sed '$d' <<<"$1"; }
# req CN [extra JSON members]
req() {
    printf '{"cn":"%s","real_address":{"ip":"198.18.0.11","port":51000},"peer_info":{"IV_VER":"2.6.14","IV_PLAT":"linux"},"gateway":"gw1","request_id":"gw1-1-1-ab12"%s}' "$1" "${2:-}"
}
control() { post /control "$1" >/dev/null; }
stats() { curl -sS --cacert "$tmp/ca.crt" --max-time 5 "$base/stats"; }

# --- TLS is real --------------------------------------------------------------
if curl -sS --max-time 5 "$base/stats" >/dev/null 2>&1; then
    fail "untrusted CA refused"
else
    ok "untrusted CA refused"
fi
if curl -sS --max-time 5 "http://127.0.0.1:$port/stats" >/dev/null 2>&1; then
    fail "plain HTTP refused"
else
    ok "plain HTTP refused"
fi

# --- decisions ----------------------------------------------------------------
r=$(post /v1/decide "$(req alice)")
check "allow: status" 200 "$(status_of "$r")"
b=$(body_of "$r")
check "allow: decision" allow "$(jq -r .decision <<<"$b")"
check "allow: ip" 100.64.0.10 "$(jq -r .ip <<<"$b")"
check "allow: routes" '["100.64.100.0/24"]' "$(jq -c .routes <<<"$b")"
check "allow: quota" '{"bytes":1000000000,"period":"day"}' "$(jq -c .quota <<<"$b")"
check "allow: ttl_s" 60 "$(jq -r .ttl_s <<<"$b")"

r=$(post /v1/decide "$(req bob)")
b=$(body_of "$r")
check "deny listed: decision" deny "$(jq -r .decision <<<"$b")"
check "deny listed: reasons" "contract ended|access revoked" \
    "$(jq -r '.reason + "|" + .client_reason' <<<"$b")"

r=$(post /v1/decide "$(req mallory ',"username":"m"')")
check "unknown: status" 200 "$(status_of "$r")"
check "unknown: deny reason" "deny|unknown client" \
    "$(body_of "$r" | jq -r '.decision + "|" + .reason')"

r=$(post /v1/decide "$(req carol ",\"username\":\"carol\",\"password\":\"$pw_secret\"")")
b=$(body_of "$r")
check "password right: allow, x_password stripped" "allow|main|null" \
    "$(jq -r '.decision + "|" + .pool + "|" + (.x_password|tostring)' <<<"$b")"
r=$(post /v1/decide "$(req carol ',"username":"carol","password":"nope"')")
check "password wrong: deny" "deny|bad credentials" \
    "$(body_of "$r" | jq -r '.decision + "|" + .reason')"
r=$(post /v1/decide "$(req carol)")
check "password missing: deny" deny "$(body_of "$r" | jq -r .decision)"

# --- bad requests ---------------------------------------------------------------
bad() { # NAME BODY [EXPECTED_STATUS]
    local r
    r=$(post /v1/decide "$2")
    local st
    st=$(status_of "$r")
    local err
    err=$(body_of "$r" | jq -r '.error // empty' 2>/dev/null)
    if [ "$st" = "${3:-400}" ] && [ -n "$err" ]; then
        ok "$1 -> $st ($err)"
    else
        fail "$1" "status $st, body $(body_of "$r" | head -c 200)"
    fi
}
bad "not JSON" '{"cn": "alice",'
bad "not an object" '[1,2]'
bad "missing cn" '{"real_address":{"ip":"198.18.0.11","port":1},"peer_info":{},"gateway":"gw1","request_id":"r1"}'
bad "empty cn" "$(req '')"
bad "cn too long" "$(req "$(printf 'a%.0s' $(seq 1 256))")"
bad "cn wrong type" '{"cn":5,"real_address":{"ip":"198.18.0.11","port":1},"peer_info":{},"gateway":"gw1","request_id":"r1"}'
bad "unknown member" "$(req alice ',"admin":true')"
bad "bad real_address.ip" '{"cn":"a","real_address":{"ip":"198.18.0.300","port":1},"peer_info":{},"gateway":"gw1","request_id":"r1"}'
bad "port out of range" '{"cn":"a","real_address":{"ip":"198.18.0.1","port":70000},"peer_info":{},"gateway":"gw1","request_id":"r1"}'
bad "port is a bool" '{"cn":"a","real_address":{"ip":"198.18.0.1","port":true},"peer_info":{},"gateway":"gw1","request_id":"r1"}'
bad "peer_info bad key" '{"cn":"a","real_address":{"ip":"198.18.0.1","port":1},"peer_info":{"PATH":"/bin"},"gateway":"gw1","request_id":"r1"}'
bad "peer_info value not string" '{"cn":"a","real_address":{"ip":"198.18.0.1","port":1},"peer_info":{"IV_VER":1},"gateway":"gw1","request_id":"r1"}'
bad "gateway bad chars" '{"cn":"a","real_address":{"ip":"198.18.0.1","port":1},"peer_info":{},"gateway":"gw 1","request_id":"r1"}'
bad "password wrong type" "$(req carol ',"password":12345')"
r=$(post /v1/decide "$(req carol ",\"password\":\"$pw_secret\",\"oops\":1")")
if body_of "$r" | grep -q "$pw_secret"; then
    fail "400 never echoes the password"
else
    ok "400 never echoes the password"
fi
big=$(head -c 70000 /dev/zero | tr '\0' 'a')
bad "body over 64 KiB" "$(req alice ",\"username\":\"$big\"")" 413
r=$(curl -sS --cacert "$tmp/ca.crt" --max-time 5 -X POST -H 'Content-Type: text/plain' \
    --data-binary "$(req alice)" -w '\n%{http_code}' "$base/v1/decide")
check "wrong Content-Type -> 415" 415 "$(status_of "$r")"
r=$(curl -sS --cacert "$tmp/ca.crt" --max-time 5 -w '\n%{http_code}' "$base/v1/nothing")
check "unknown path -> 404" 404 "$(status_of "$r")"

printf '%s' "$(req alice)" >"$tmp/req.json"
r=$(curl -sS --cacert "$tmp/ca.crt" --max-time 5 -X POST -H 'Content-Type: application/json' \
    -H 'Transfer-Encoding: chunked' --data-binary "@$tmp/req.json" -w '\n%{http_code}' "$base/v1/decide")
check "chunked body -> 411" 411 "$(status_of "$r")"

# --- /stats counts ----------------------------------------------------------------
curl -sS --cacert "$tmp/ca.crt" --max-time 5 -X DELETE "$base/stats" >/dev/null
for _ in 1 2 3; do
    post /v1/decide "$(req alice)" >/dev/null &
done
post /v1/decide "$(req bob)" >/dev/null &
wait_bg() { # waits for the curl jobs of this shell (not the server)
    local j
    for j in $(jobs -p); do
        [ "$j" = "$pid" ] || wait "$j"
    done
}
wait_bg
s=$(stats)
check "stats: requests" 4 "$(jq -r .requests <<<"$s")"
check "stats: by_cn" '{"alice":3,"bob":1}' "$(jq -cS '.by_cn' <<<"$s")"
check "stats: decisions" '{"allow":3,"deny":1}' "$(jq -cS '.decisions' <<<"$s")"

# --- faults -------------------------------------------------------------------------
bad_control() {
    local r
    r=$(post /control "$2")
    check "control rejects $1" 400 "$(status_of "$r")"
}
bad_control "delay_ms 60001" '{"mode":"slow","delay_ms":60001}'
bad_control "unknown mode" '{"mode":"explode"}'
bad_control "missing mode" '{"delay_ms":5}'

curl -sS --cacert "$tmp/ca.crt" --max-time 5 -X DELETE "$base/stats" >/dev/null
control '{"mode":"slow","delay_ms":1500}'
r=$(post /v1/decide "$(req alice)" --max-time 0.5 2>/dev/null)
rc=$?
check "slow: client timeout (curl 28)" 28 "$rc"
t0=$(date +%s%N)
r=$(post /v1/decide "$(req alice)")
t1=$(date +%s%N)
ms=$(((t1 - t0) / 1000000))
check "slow: then answers allow" "200|allow" \
    "$(status_of "$r")|$(body_of "$r" | jq -r .decision)"
if [ "$ms" -ge 1400 ] && [ "$ms" -lt 6000 ]; then ok "slow: delayed (${ms} ms)"; else fail "slow: delayed" "$ms ms"; fi
for _ in 1 2 3 4 5; do
    post /v1/decide "$(req alice)" >/dev/null &
done
wait_bg
check "slow: 5 concurrent in flight" 5 "$(stats | jq -r .max_in_flight)"

control '{"mode":"error500"}'
r=$(post /v1/decide "$(req alice)")
check "error500: status + error" "500|injected fault" \
    "$(status_of "$r")|$(body_of "$r" | jq -r .error)"

control '{"mode":"garbage"}'
printf '%s' "$(req alice)" >"$tmp/req.json"
st=$(curl -sS --cacert "$tmp/ca.crt" --max-time 5 -X POST -H 'Content-Type: application/json' \
    --data-binary "@$tmp/req.json" -o "$tmp/garbage.out" -w '%{http_code}' "$base/v1/decide")
if [ "$st" = 200 ] && [ -s "$tmp/garbage.out" ] && ! python3 -c 'import json, sys; json.load(open(sys.argv[1], "rb"))' "$tmp/garbage.out" 2>/dev/null; then
    ok "garbage: 200 with a non-JSON body"
else
    fail "garbage"
fi

control '{"mode":"oversize","size_bytes":2000000}'
printf '%s' "$(req alice)" >"$tmp/req.json"
st=$(curl -sS --cacert "$tmp/ca.crt" --max-time 10 -X POST -H 'Content-Type: application/json' \
    --data-binary "@$tmp/req.json" -o "$tmp/big.out" -w '%{http_code}' "$base/v1/decide")
sz=$(stat -c %s "$tmp/big.out")
check "oversize: 200 with 2000000 bytes" "200|2000000" "$st|$sz"
check "oversize: still JSON" allow "$(jq -r .decision "$tmp/big.out")"

control '{"mode":"wrongtypes"}'
r=$(post /v1/decide "$(req alice)")
check "wrongtypes: JSON, decision boolean, ip number, groups string" "boolean|number|string" \
    "$(body_of "$r" | jq -r '[(.decision|type),(.ip|type),(.groups|type)]|join("|")')"

control '{"mode":"close"}'
r=$(post /v1/decide "$(req alice)" 2>/dev/null)
rc=$?
if [ "$rc" = 52 ] || [ "$rc" = 56 ] || [ "$rc" = 35 ]; then
    ok "close: no answer (curl $rc)"
else
    fail "close" "curl exit $rc, got '$r'"
fi

control '{"mode":"error500","count":2}'
s1=$(status_of "$(post /v1/decide "$(req alice)")")
s2=$(status_of "$(post /v1/decide "$(req alice)")")
s3=$(status_of "$(post /v1/decide "$(req alice)")")
check "count=2: two faults then normal" "500 500 200" "$s1 $s2 $s3"
check "count=2: mode back to normal" normal "$(stats | jq -r .mode)"

control '{"mode":"normal"}'
r=$(post /v1/decide "$(req alice)")
check "normal again" allow "$(body_of "$r" | jq -r .decision)"

# --- SIGHUP reload ----------------------------------------------------------------------
wait_reload() { # FIELD WANT
    local _
    for _ in $(seq 1 50); do
        [ "$(stats | jq -r ".$1")" = "$2" ] && return 0
        sleep 0.1
    done
    return 1
}
jq '. + {"dave": {"decision":"allow","ip":"100.64.0.20","ttl_s":5}}' \
    "$tmp/data.json" >"$tmp/data.new" && mv "$tmp/data.new" "$tmp/data.json"
kill -HUP "$pid"
if wait_reload reloads 1; then ok "SIGHUP: reloaded"; else fail "SIGHUP: reloaded"; fi
r=$(post /v1/decide "$(req dave)")
check "SIGHUP: new CN allowed" "allow|100.64.0.20" \
    "$(body_of "$r" | jq -r '.decision + "|" + .ip')"
echo '{"eve": {"decision":"allow","ip":"100.64.0.300","ttl_s":5}}' >"$tmp/data.json"
kill -HUP "$pid"
if wait_reload reload_errors 1; then ok "SIGHUP: invalid file refused"; else fail "SIGHUP: invalid file refused"; fi
r=$(post /v1/decide "$(req dave)")
check "SIGHUP: old data kept" allow "$(body_of "$r" | jq -r .decision)"

# --- secrets never logged -------------------------------------------------------------------
if grep -q "$pw_secret" "$tmp/server.log" "$tmp/server.out"; then
    fail "password never in the server log"
else
    ok "password never in the server log"
fi

# --- listen address bound to test networks ----------------------------------------------------
if python3 "$server" --cert "$tmp/srv.crt" --key "$tmp/srv.key" \
    --listen 0.0.0.0:0 --data "$tmp/data.json" >/dev/null 2>&1; then
    fail "refuses --listen 0.0.0.0"
else
    ok "refuses --listen 0.0.0.0"
fi

# --- connection cap: a second server with --max-conns 1 -----------------------------------
echo '{"dave": {"decision":"allow","ip":"100.64.0.20","ttl_s":5}}' >"$tmp/data2.json"
python3 "$server" --cert "$tmp/srv.crt" --key "$tmp/srv.key" --quiet \
    --listen 127.0.0.1:0 --data "$tmp/data2.json" --max-conns 1 \
    >"$tmp/server2.out" 2>"$tmp/server2.log" &
pid2=$!
port2=""
for _ in $(seq 1 100); do
    port2=$(sed -n 's/^listening 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/server2.out")
    [ -n "$port2" ] && break
    kill -0 "$pid2" 2>/dev/null || break
    sleep 0.1
done
base_saved=$base
base="https://127.0.0.1:$port2"
control '{"mode":"slow","delay_ms":1500}'
post /v1/decide "$(req dave)" >"$tmp/first.out" 2>&1 &
first=$!
sleep 0.5
post /v1/decide "$(req dave)" >/dev/null 2>&1
rc=$?
wait "$first"
if [ "$rc" != 0 ] && [ "$(tail -n 1 "$tmp/first.out")" = 200 ]; then
    ok "max-conns 1: second connection refused (curl $rc), first answered"
else
    fail "max-conns 1" "second curl rc $rc, first: $(tail -n 1 "$tmp/first.out")"
fi
kill "$pid2" 2>/dev/null
wait "$pid2" 2>/dev/null
pid2=""

base=$base_saved

# --- SIGTERM: exits promptly even with a slow request pending ----------------------------------
control '{"mode":"slow","delay_ms":60000}'
post /v1/decide "$(req alice)" --max-time 20 >/dev/null 2>&1 &
sleep 0.3
kill -TERM "$pid"
gone=0
for _ in $(seq 1 50); do
    if ! kill -0 "$pid" 2>/dev/null; then
        gone=1
        break
    fi
    sleep 0.1
done
if [ "$gone" = 1 ]; then ok "SIGTERM: exits within 5 s"; else fail "SIGTERM: exits within 5 s"; fi
wait "$pid" 2>/dev/null
pid=""
wait_bg

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
