# shellcheck shell=bash
# cluster-tests/lib/upstream.sh: the upstream decision API and Redis for
# tests, benchmarks and the demo. Needs tap.sh, netns.sh and cluster.sh.
#
#   ovt_upstream_pki DIR IP          a throwaway CA (DIR/ca.crt) and a server
#       certificate for IP (DIR/srv.crt, DIR/srv.key), EC P-256
#   ovt_upstream_start NS IP DATA LOG  the reference upstream
#       (tools/upstream-server.py) on IP:8443 in NS with the answers in
#       DATA; waits until it listens; OVT_UP_PID
#   ovt_upstream_stop                stops it
#   ovt_up_curl METHOD PATH [JSON]   a request to it (its /control and
#       /stats test hooks), verified against the CA
#   ovt_redis_start NS IP PWFILE LOG redis-server on IP:6379 in NS, no
#       persistence, requirepass from PWFILE; waits for PING; OVT_REDIS_PID
#   ovt_redis_cli ARGS...            redis-cli against it
#   ovt_gw_upstream_config N [FAILURES [OPEN_MS]]  appends the upstream,
#       cache and redis sections to gateway N's config (breaker threshold
#       FAILURES, default 5, open for OPEN_MS, default 5000)
#
# Set OVT_UP_PKI (the DIR), OVT_UP_IP and OVT_REDIS_PW_FILE before use.

OVT_UP_PKI=${OVT_UP_PKI:-}
OVT_UP_IP=${OVT_UP_IP:-198.18.0.20}
OVT_UP_NS=""
OVT_UP_PID=""
OVT_REDIS_PID=""
OVT_REDIS_PW_FILE=${OVT_REDIS_PW_FILE:-}
OVT_REDIS_PREFIX=${OVT_REDIS_PREFIX:-ovha-test:}

ovt_upstream_pki() {
    local dir=$1 ip=$2
    mkdir -p "$dir" &&
        openssl ecparam -name prime256v1 -genkey -noout -out "$dir/ca.key" &&
        openssl req -x509 -new -key "$dir/ca.key" -sha256 -days 1 \
            -subj "/CN=ovha test upstream CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -out "$dir/ca.crt" &&
        openssl ecparam -name prime256v1 -genkey -noout -out "$dir/srv.key" &&
        openssl req -new -key "$dir/srv.key" -subj "/CN=$ip" \
            -out "$dir/srv.csr" &&
        printf '%s\n' "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature" \
            "extendedKeyUsage=serverAuth" \
            "subjectAltName=IP:$ip" >"$dir/ext.cnf" &&
        openssl x509 -req -in "$dir/srv.csr" -CA "$dir/ca.crt" \
            -CAkey "$dir/ca.key" -CAcreateserial -days 1 -sha256 \
            -extfile "$dir/ext.cnf" -out "$dir/srv.crt"
}

ovt_upstream_start() {
    local ns=$1 ip=$2 data=$3 log=$4
    OVT_UP_NS=$ns
    ovt_spawn "$ns" "$log" python3 "$OVT_TOOLS_DIR/upstream-server.py" \
        --cert "$OVT_UP_PKI/srv.crt" --key "$OVT_UP_PKI/srv.key" \
        --listen "$ip:8443" --data "$data"
    OVT_UP_PID=$OVT_LAST_PID
    wait_for_log '^listening' "$log" 15
}

ovt_upstream_stop() {
    if [ -n "$OVT_UP_PID" ]; then
        ovt_stop_pid "$OVT_UP_PID" 5
        OVT_UP_PID=""
    fi
}

ovt_up_curl() {
    ip netns exec "$OVT_UP_NS" curl -s --max-time 10 \
        --cacert "$OVT_UP_PKI/ca.crt" -X "$1" \
        -H 'Content-Type: application/json' ${3:+--data "$3"} \
        "https://$OVT_UP_IP:8443$2"
}

ovt_redis_start() {
    local ns=$1 ip=$2 pwfile=$3 log=$4
    OVT_REDIS_PW_FILE=$pwfile
    OVT_UP_NS=${OVT_UP_NS:-$ns}
    ovt_spawn "$ns" "$log" redis-server --bind "$ip" --port 6379 \
        --save '' --appendonly no --dir "$OVT_DIR" \
        --requirepass "$(cat "$pwfile")"
    OVT_REDIS_PID=$OVT_LAST_PID
    ovt_wait_until 15 ovt__redis_up
}

ovt_redis_cli() {
    ip netns exec "$OVT_UP_NS" timeout 5 redis-cli -h "$OVT_UP_IP" -p 6379 \
        -a "$(cat "$OVT_REDIS_PW_FILE")" --no-auth-warning "$@"
}

ovt__redis_up() {
    [ "$(ovt_redis_cli PING 2>/dev/null)" = PONG ]
}

ovt_gw_upstream_config() {
    local n=$1 failures=${2:-5} open_ms=${3:-5000}
    cat >>"$(ovt_gw_dir "$n")/ovhad.yaml" <<EOF_UP
upstream:
  url: 'https://$OVT_UP_IP:8443/v1/decide'
  ca: '$OVT_UP_PKI/ca.crt'
  connect_timeout_ms: 500
  timeout_ms: 1000
  deadline_ms: 2000
  breaker_failures: $failures
  breaker_open_ms: $open_ms
cache:
  max_stale_s: 3600
redis:
  host: $OVT_UP_IP
  port: 6379
  password_file: '$OVT_REDIS_PW_FILE'
  key_prefix: '$OVT_REDIS_PREFIX'
  timeout_ms: 200
EOF_UP
}
