#!/usr/bin/env bash
# e2e/upstream.sh: decisions from the upstream HTTPS API through the cache
# tiers, on a 3-gateway cluster with real openvpn, a real redis-server and
# the reference upstream (cluster-tests/tools/upstream-server.py).
#
#   1. upstream up: allow with the answer's static IP and routes, a pool
#      address, a deny with the answer's reasons, an unknown CN denied
#   2. caches: a reconnect is answered from memory, another gateway is
#      answered from Redis: the upstream sees one request per identity
#   3. faults (slow, 500, garbage, oversize, wrong types, close, down):
#      every CONNECT is answered; an identity with a cached answer is
#      allowed from the fallback, one without is denied naming the cause;
#      garbage trips the breaker on a gateway with a low threshold
#   4. Redis killed: decisions continue; Redis back: used again
#   5. ovhad restarted while the upstream is down: the SQLite file answers
#   6. max_sessions 1 across two gateways: refuse (carol) and evict the
#      oldest (dave) applied cluster-wide
#   7. secrets: paula's password reaches the upstream (a wrong one is
#      denied) yet is in no log, no file of any gateway and no Redis value
#
# Gateways gw1..gw3 at 198.18.0.1-3 (gw3 only keeps a quorum while gw1
# restarts), the upstream and Redis at 198.18.0.20, clients from .101.
# Binaries from OVHA_BIN. Every wait is bounded.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/tap.sh"
. "$HERE/../lib/netns.sh"
. "$HERE/../lib/pki.sh"
. "$HERE/../lib/openvpn.sh"
. "$HERE/../lib/ovhad.sh"
. "$HERE/../lib/cluster.sh"
. "$HERE/../lib/upstream.sh"

STEP=30
export OVT_CLIENT_PING_RESTART=6
OVT_CLU_CLIENTS="alice bob mallory grace carol dave frank gina hank ivan judy paula"
UP_IP=198.18.0.20

ovt_require_netns
for tool in openvpn redis-server redis-cli python3 openssl curl jq; do
    command -v "$tool" >/dev/null 2>&1 || ovt_skip_all "$tool not installed"
done
ovt_init
if ! ovt_ovhad_bin_check; then
    ovt_not_ok "ovhad and ovhactl found in OVHA_BIN=$OVHA_BIN"
    exit 1
fi

NS_UP=$(ovt_ns up)
OVT_UP_PKI=$OVT_DIR/upstream-pki
OVT_UP_IP=$UP_IP
OVT_REDIS_PW_FILE=$OVT_DIR/redis.pw
OVT_REDIS_PREFIX=ovha-e2e:
DATA=$OVT_DIR/answers.json
# A password that occurs nowhere else, so finding it anywhere is a leak.
PAULA_PW="pw-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')-secret"

# ---- helpers --------------------------------------------------------------

# The upstream's answers. gina and hank have short TTLs so that later
# connects go to the upstream (and, when it fails, to the fallback); frank
# is never cached (ttl 0), so a failing upstream leaves nothing to use.
write_answers() {
    cat >"$DATA" <<'EOF_DATA'
{
  "alice": {"decision": "allow", "ip": "100.64.0.50",
            "routes": ["100.96.20.0/24", "100.96.10.0/24"], "ttl_s": 600},
  "bob": {"decision": "allow", "routes": ["100.96.10.0/24"], "ttl_s": 600},
  "mallory": {"decision": "deny", "reason": "banned upstream",
              "client_reason": "go away", "ttl_s": 600},
  "carol": {"decision": "allow", "max_sessions": 1, "on_excess": "refuse",
            "ttl_s": 600},
  "dave": {"decision": "allow", "max_sessions": 1,
           "on_excess": "evict_oldest", "ttl_s": 600},
  "frank": {"decision": "allow", "ttl_s": 0},
  "gina": {"decision": "allow", "routes": ["100.96.30.0/24"], "ttl_s": 1},
  "hank": {"decision": "allow", "routes": ["100.96.40.0/24"], "ttl_s": 1},
  "ivan": {"decision": "allow", "ttl_s": 600},
  "judy": {"decision": "allow", "ttl_s": 600},
  "paula": {"decision": "allow", "x_password": "PAULA_PW", "ttl_s": 600}
}
EOF_DATA
    sed -i "s/PAULA_PW/$PAULA_PW/" "$DATA"
}

upstream_start() {
    ovt_upstream_start "$NS_UP" "$UP_IP" "$DATA" "$OVT_DIR/upstream.$1.log"
}

up_mode() {
    ovt_up_curl POST /control "{\"mode\": \"$1\"${2:+, $2}}" >/dev/null
}

# Decide requests the upstream received for CN since the last reset.
up_requests() {
    ovt_up_curl GET /stats | jq -r --arg cn "$1" '.by_cn[$cn] // 0'
}

redis_start() {
    ovt_redis_start "$NS_UP" "$UP_IP" "$OVT_REDIS_PW_FILE" \
        "$OVT_DIR/redis.$1.log"
}

redis_has() {
    [ "$(ovt_redis_cli EXISTS "$OVT_REDIS_PREFIX$1" 2>/dev/null)" = 1 ]
}

upstream_field() {
    ovt_ctl "$1" upstream --json 2>/dev/null | jq -r ".$2"
}

upstream_field_is() {
    [ "$(upstream_field "$1" "$2")" = "$3" ]
}

# Client hosts: one namespace per device name, c<i> at 198.18.0.<i>, made
# on first use by client_host (not in a subshell: it records the name),
# from .101 up, clear of the gateways and the upstream.
declare -A CLIENT_NS=()
NEXT_HOST=101
client_host() {
    if [ -z "${CLIENT_NS[$1]:-}" ]; then
        ovt_host_add "c$NEXT_HOST" "198.18.0.$NEXT_HOST" >/dev/null || return 1
        CLIENT_NS[$1]=$(ovt_ns "c$NEXT_HOST")
        NEXT_HOST=$((NEXT_HOST + 1))
    fi
}

client_ns() {
    printf '%s' "${CLIENT_NS[$1]:-none}"
}

# run RUN CERT GW [HOST]: starts openvpn RUN (log $OVT_DIR/RUN.log) with
# CERT's certificate against gateway GW, on device HOST (default CERT).
run() {
    local name=$1 cert=$2 gw=$3 host=${4:-$2}
    client_host "$host" || return 1
    ovt_client_start "$name" "$(client_ns "$host")" "$OVT_CLU_PKI" "$cert" \
        "$(ovt_gw_addr "$gw")"
}

# expect_allow RUN CERT GW [IP [HOST]]: connects and gets IP (or any).
expect_allow() {
    local name=$1 cert=$2 gw=$3 ip=${4:-} host=${5:-$2} ns
    run "$name" "$cert" "$gw" "$host" || return 1
    ns=$(client_ns "$host")
    if [ -n "$ip" ]; then
        wait_for_tun_addr "$ns" tun0 "$ip" "$STEP"
    else
        ovt_wait_until "$STEP" has_addr "$ns"
    fi
}

has_addr() {
    [ -n "$(tun_addr "$1" tun0)" ]
}

# expect_deny RUN CERT GW [HOST]: the server refuses the client.
expect_deny() {
    run "$1" "$2" "$3" "${4:-$2}" || return 1
    client_auth_failed "$1" "$STEP"
}

stop_client() {
    ovt_client_stop "$1"
    wait_for_no_tun "$(client_ns "${2:-$1}")" tun0 10
}

# log_after GW LINE PATTERN: gateway GW's current log has PATTERN after line
# LINE (grep -E).
log_after() {
    tail -n "+$(($2 + 1))" "$(ovt_gw_log "$1")" 2>/dev/null | grep -E -q -- "$3"
}

log_lines() {
    wc -l <"$(ovt_gw_log "$1")" 2>/dev/null || echo 0
}

decision_logged() {
    ovt_wait_until 10 log_after "$@"
}

cluster_sessions_of() {
    ovt_ctl 1 sessions --cluster --json 2>/dev/null |
        jq -r --arg cn "$1" '[.sessions[] | select(.cn == $cn) | .gateway]
            | sort | join(",")'
}

cluster_sessions_are() {
    [ "$(cluster_sessions_of "$1")" = "$2" ]
}

# ---- setup ----------------------------------------------------------------

ovt_switch_create || exit 1
for n in 1 2 3; do
    ovt_gw_host "$n" || exit 1
done
ovt_host_add up "$UP_IP" || exit 1
if ! ovt_cluster_pki; then
    ovt_not_ok "test PKI" "see $OVT_DIR/pki/openssl.log, $OVT_DIR/raft-pki.log"
    exit 1
fi
if ! ovt_upstream_pki "$OVT_UP_PKI" "$UP_IP" >"$OVT_DIR/upstream-pki.log" 2>&1; then
    ovt_not_ok "upstream test PKI" "see $OVT_DIR/upstream-pki.log"
    exit 1
fi
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$OVT_REDIS_PW_FILE"
chmod 0600 "$OVT_REDIS_PW_FILE"
write_answers
for n in 1 2 3; do
    if [ "$n" = 1 ]; then
        ovt_gw_config "$n" true
    else
        ovt_gw_config "$n" false
    fi
    # gw2 opens its breaker after 3 failures (test 3), the others never.
    if [ "$n" = 2 ]; then
        ovt_gw_upstream_config "$n" 3 5000
    else
        ovt_gw_upstream_config "$n" 1000 60000
    fi
done
if ! out=$("$OVHA_BIN/ovhad" -n -c "$(ovt_gw_dir 1)/ovhad.yaml" 2>&1); then
    ovt_not_ok "ovhad -n accepts the upstream config" "$out"
    exit 1
fi
ovt_ok "ovhad -n accepts the upstream config"
if ! upstream_start 1; then
    ovt_not_ok "the reference upstream starts" "$(tail -n 5 "$OVT_DIR/upstream.1.log")"
    exit 1
fi
if ! redis_start 1; then
    ovt_not_ok "redis-server starts" "$(tail -n 5 "$OVT_DIR/redis.1.log")"
    exit 1
fi
ovt_ok "the reference upstream and redis-server run at $UP_IP"

ovt_cluster3_up "$STEP" || exit 1
ovt_ok "a 3-gateway cluster with the upstream configured"
ovt_check "redis is connected on gw1" \
    ovt_wait_until 10 upstream_field_is 1 redis connected

# ---- 1. upstream up ----------------------------------------------------------

ovt_up_curl DELETE /stats >/dev/null
for c in alice bob mallory grace carol carol-2 dave dave-2 frank gina hank ivan judy; do
    client_host "$c" || exit 1
done
ovt_check "1. alice gets the answer's static IP 100.64.0.50 on gw1" \
    expect_allow alice alice 1 100.64.0.50
NS_ALICE=$(client_ns alice)
ovt_check "1. alice has the answer's route 100.96.20.0/24" \
    assert_route "$NS_ALICE" 100.96.20.0/24 tun0
ovt_check "1. alice has the answer's route 100.96.10.0/24" \
    assert_route "$NS_ALICE" 100.96.10.0/24 tun0
ovt_check "1. alice pings the gateway through the tunnel" \
    ovt_wait_until 10 ping_through "$NS_ALICE" 100.64.0.1
ovt_check "1. bob gets a pool address on gw1" expect_allow bob bob 1
BOB_IP=$(tun_addr "$(client_ns bob)" tun0)
ovt_check "1. bob's address $BOB_IP is in the pool 100.64.0.128/25" \
    test "${BOB_IP%.*}" = 100.64.0 -a "${BOB_IP##*.}" -ge 128
l=$(log_lines 1)
ovt_check "1. mallory is refused (the answer's deny)" expect_deny mallory mallory 1
ovt_check "1. mallory sees the answer's client reason 'go away'" \
    grep -q 'AUTH_FAILED,go away' "$(ovt_client_log mallory)"
ovt_check "1. gw1 logged the upstream's operator reason" \
    decision_logged 1 "$l" 'deny cn="mallory".*banned upstream'
ovt_check "1. grace (unknown to the upstream) is refused" \
    expect_deny grace grace 1
ovt_check "1. the upstream saw one request for alice" \
    test "$(up_requests alice)" = 1

# ---- 2. caches ------------------------------------------------------------------

inits() {
    grep -c 'Initialization Sequence Completed' "$(ovt_client_log "$1")" \
        2>/dev/null
}

inits_above() {
    [ "$(inits "$1")" -gt "$2" ]
}

hits=$(upstream_field 1 hits_memory)
bob_inits=$(inits bob)
ovt_ctl 1 kill bob >/dev/null 2>&1
ovt_check "2. bob, killed, reconnects" \
    ovt_wait_until 45 inits_above bob "$bob_inits"
ovt_check "2. bob got $BOB_IP again" \
    wait_for_tun_addr "$(client_ns bob)" tun0 "$BOB_IP" "$STEP"
ovt_check "2. gw1 answered bob's reconnect from memory" \
    ovt_wait_until 10 eval '[ "$(upstream_field 1 hits_memory)" -gt "$hits" ]'
stop_client alice
ovt_check "2. alice on gw2 keeps 100.64.0.50" \
    expect_allow alice-gw2 alice 2 100.64.0.50 alice
ovt_check "2. gw2 answered alice from Redis" \
    upstream_field_is 2 hits_redis 1
ovt_check "2. the upstream still saw one request for alice and bob" \
    test "$(up_requests alice),$(up_requests bob)" = 1,1
ovt_check "2. Redis holds alice's answer under the key prefix" \
    redis_has cn:alice
stop_client alice-gw2 alice
stop_client bob

# ---- 3. faults --------------------------------------------------------------------

# gina is cached (ttl 1 s: stale at once, so the upstream is asked every
# time); frank never is.
ovt_check "3. gina is allowed while the upstream is up (warms the caches)" \
    expect_allow gina gina 1
stop_client gina
sleep 1.2
fault_case() {
    local mode=$1 extra=$2 cause=$3 l
    up_mode "$mode" "$extra"
    l=$(log_lines 1)
    ovt_check "3. $mode: gina is allowed from the fallback" \
        expect_allow "gina-$mode" gina 1 "" gina
    ovt_check "3. $mode: gw1 logged the fallback with '$cause'" \
        decision_logged 1 "$l" "$cause.*answered from the memory fallback"
    stop_client "gina-$mode" gina
    ovt_check "3. $mode: frank (nothing cached) is refused" \
        expect_deny "frank-$mode" frank 1
    ovt_check "3. $mode: gw1 logged why" decision_logged 1 "$l" \
        "deny cn=\"frank\".*upstream unavailable \\($cause.*max staleness"
}
fault_case slow '"delay_ms": 5000' 'upstream (timeout|deadline)'
fault_case error500 '' 'upstream HTTP 500'
fault_case garbage '' 'upstream answer malformed'
fault_case oversize '"size_bytes": 1048576' 'upstream answer too large'
fault_case wrongtypes '' 'upstream answer malformed'
fault_case close '' 'upstream failure'
up_mode normal
ovt_upstream_stop
fault_case down '' 'upstream unreachable'
ovt_check "3. gw1 counted malformed answers" \
    test "$(upstream_field 1 malformed)" -ge 2
ovt_check "3. ovhad gw1 survived every fault" ovt_gw_alive 1
upstream_start 2 || ovt_not_ok "3. the upstream restarts"

# gw2 opens its breaker after 3 failures: garbage answers count.
up_mode garbage
for i in 1 2 3; do
    expect_deny "frank-g$i" frank 2 >/dev/null
done
ovt_check "3. garbage answers opened gw2's breaker" \
    upstream_field_is 2 breaker open
up_mode normal

# ---- 4. Redis killed ------------------------------------------------------------

kill -KILL "$OVT_REDIS_PID"
{ wait "$OVT_REDIS_PID"; } 2>/dev/null # reaped here, without bash's notice
ovt_check "4. gw1 sees Redis disconnected" \
    ovt_wait_until 15 upstream_field_is 1 redis disconnected
ovt_check "4. ivan is allowed with Redis down (upstream)" \
    expect_allow ivan ivan 1
stop_client ivan
ovt_check "4. alice is allowed with Redis down" \
    expect_allow alice-r alice 1 100.64.0.50 alice
stop_client alice-r alice
redis_start 2 || ovt_not_ok "4. redis-server restarts"
ovt_check "4. gw1 reconnects to Redis by itself" \
    ovt_wait_until 20 upstream_field_is 1 redis connected
ovt_check "4. judy is allowed with Redis back" expect_allow judy judy 1
ovt_check "4. her answer is written to Redis again" \
    ovt_wait_until 5 redis_has cn:judy
stop_client judy

# ---- 5. restart while the upstream is down --------------------------------------

ovt_check "5. hank is allowed (caches warmed, ttl 1 s)" expect_allow hank hank 1
stop_client hank
sleep 1.5
ovt_upstream_stop
ovt_gw_kill 1 TERM
ovt_gw_start 1
ovt_check "5. gw1 is back" ovt_wait_healthy 1 "$STEP"
ovt_check "5. the cluster has a leader again" \
    ovt_wait_until "$STEP" ovt__agreed_leader_q 1 2 3
l=$(log_lines 1)
ovt_check "5. hank is allowed by the restarted gw1 with the upstream down" \
    expect_allow hank-2 hank 1 "" hank
ovt_check "5. ... from the SQLite file" \
    decision_logged 1 "$l" 'answered from the file fallback'
ovt_check "5. hank has the cached route 100.96.40.0/24" \
    assert_route "$(client_ns hank)" 100.96.40.0/24 tun0
stop_client hank-2 hank
ovt_check "5. frank (never cached) is refused" expect_deny frank-5 frank 1
upstream_start 3 || ovt_not_ok "5. the upstream restarts"

# ---- 6. cluster-wide session limits -------------------------------------------------

ovt_check "6. carol connects on gw1" expect_allow carol carol 1
l=$(log_lines 2)
ovt_check "6. a second carol on gw2 is refused (max_sessions 1, refuse)" \
    expect_deny carol-2 carol 2 carol-2
ovt_check "6. gw2 logged the session limit" \
    decision_logged 2 "$l" 'deny cn="carol".*session_limit'
ovt_check "6. carol's first session on gw1 stands" \
    eval 'cluster_sessions_are carol gw1 && has_addr "$(client_ns carol)"'
# dave's first device exits when it is killed instead of reconnecting (and
# evicting the second one in turn).
OVT_CLIENT_EXTRA="remap-usr1 SIGTERM" ovt_check "6. dave connects on gw1" \
    expect_allow dave dave 1
ovt_check "6. a second dave on gw2 is allowed (evict_oldest)" \
    expect_allow dave-2 dave 2 "" dave-2
ovt_check "6. the first dave (gw1) is killed" \
    ovt_wait_until "$STEP" eval '! ovt_pid_alive "${OVT_CLIENT_PID[dave]}"'
ovt_check "6. the cluster holds dave only on gw2" \
    ovt_wait_until "$STEP" cluster_sessions_are dave gw2
stop_client carol
stop_client dave-2

# ---- 7. secrets -----------------------------------------------------------

# auth_file RUN PASSWORD: a username/password file for openvpn RUN.
auth_file() {
    printf 'paula\n%s\n' "$2" >"$OVT_DIR/$1.up"
    chmod 600 "$OVT_DIR/$1.up"
}

# Every place a gateway writes, plus Redis values: none holds the text.
secret_nowhere() {
    local n key
    for n in 1 2 3; do
        if grep -r -a -q -F -- "$1" "$(ovt_gw_dir "$n")" \
            "$(ovt_gw_log "$n")" 2>/dev/null; then
            ovt_diag "found in gw$n: $(grep -r -a -l -F -- "$1" \
                "$(ovt_gw_dir "$n")" "$(ovt_gw_log "$n")" 2>/dev/null)"
            return 1
        fi
    done
    for key in $(ovt_redis_cli --scan --pattern "$OVT_REDIS_PREFIX*" \
        2>/dev/null); do
        if ovt_redis_cli GET "$key" 2>/dev/null | grep -a -q -F -- "$1"; then
            ovt_diag "found in Redis key $key"
            return 1
        fi
    done
}

auth_file paula "$PAULA_PW"
OVT_CLIENT_EXTRA="auth-user-pass $OVT_DIR/paula.up" ovt_check \
    "7. paula with the right password is allowed" expect_allow paula paula 1
stop_client paula
auth_file paula-bad "$PAULA_PW-wrong"
OVT_CLIENT_EXTRA="auth-user-pass $OVT_DIR/paula-bad.up" ovt_check \
    "7. paula with a wrong password is denied" \
    expect_deny paula-bad paula 2 paula
ovt_check "7. neither password is in a log, a gateway file or Redis" \
    eval 'secret_nowhere "$PAULA_PW"'

ovt_diag "gw1 upstream counters: $(ovt_ctl 1 upstream --json 2>/dev/null | jq -c .)"
