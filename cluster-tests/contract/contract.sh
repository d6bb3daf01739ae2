#!/usr/bin/env bash
# cluster-tests/contract/contract.sh: the admin API against its contract,
# docs/openapi.yaml, on a live 3-gateway cluster (ctest contract_live).
#
#   - gw1..gw3 replicate through raft; each has an api: section: a tokens
#     file (viewer, operator and admin tokens, one client-certificate CN
#     with role operator) and a TLS listener on 198.18.0.N:9443 that
#     accepts client certificates of a test CA
#   - real openvpn clients (alice and carol on gw1, bob on gw2, a
#     site-to-site client "site" with an iroute on gw3), so sessions,
#     leases and a client subnet exist
#   - contract.py live (run inside gw1's namespace) calls every documented
#     operation over the unix sockets with bearer tokens, and some over
#     TLS (tokens, client certificates, nothing), checks every answer's
#     status, headers and body against the document, fails on an
#     undocumented status or an operation never called, and runs the auth
#     matrix of every write: no credentials -> 401, an unknown token ->
#     401, each role below the operation's -> 403 with the state unchanged,
#     the operation's own role -> its answer (never 401/403); and checks
#     that the audit chain names the callers of the writes that passed
#   - then gw2 and gw3 are killed: with no leader, every write that needs
#     raft answers 503 with Retry-After: 1, /readyz is 503, reads answer
#
# Needs root, openvpn, jq, openssl, curl and Debian's python3-yaml and
# python3-jsonschema; exits 77 otherwise. Binaries from OVHA_BIN. About a
# minute.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/tap.sh"
. "$HERE/../lib/netns.sh"
. "$HERE/../lib/pki.sh"
. "$HERE/../lib/openvpn.sh"
. "$HERE/../lib/ovhad.sh"
. "$HERE/../lib/cluster.sh"

STEP=30
PY=/usr/bin/python3
# OVT_CONTRACT_DOC: another document (to see the test fail on a wrong one).
DOC=${OVT_CONTRACT_DOC:-$HERE/../../docs/openapi.yaml}
SITE_NET=100.96.50.0/24
OVT_CLU_CLIENTS="alice bob carol site"
OVT_CLU_POLICY_EXTRA="    - cn: site
      groups: [staff]
      iroutes: [$SITE_NET]"
declare -A TOKEN=()

ovt_require_netns
for tool in openvpn jq openssl sha256sum curl; do
    command -v "$tool" >/dev/null 2>&1 || ovt_skip_all "$tool not installed"
done
if ! "$PY" -c 'import yaml, jsonschema' 2>/dev/null; then
    ovt_skip_all "needs python3-yaml and python3-jsonschema (deploy/deps.sh)"
fi
ovt_init
if ! ovt_ovhad_bin_check; then
    ovt_not_ok "ovhad and ovhactl found in OVHA_BIN=$OVHA_BIN"
    exit 1
fi

# ---- the API's credentials ----------------------------------------------------

API=$OVT_DIR/api

# api_cert NAME CN [IP]: a certificate of the API test CA (EC P-256); a
# server certificate when IP is given (subjectAltName IP), else a client
# certificate.
api_cert() {
    local name=$1 cn=$2 ip=${3:-} ext
    if [ -n "$ip" ]; then
        ext="subjectAltName=IP:$ip
extendedKeyUsage=serverAuth"
    else
        ext="extendedKeyUsage=clientAuth"
    fi
    printf '%s\nbasicConstraints=CA:FALSE\n' "$ext" >"$API/$name.ext"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -nodes -keyout "$API/$name.key" -subj "/CN=$cn" \
        -out "$API/$name.csr" 2>>"$API/openssl.log" &&
        openssl x509 -req -in "$API/$name.csr" -CA "$API/ca.crt" \
            -CAkey "$API/ca.key" -CAcreateserial -days 2 -sha256 \
            -extfile "$API/$name.ext" -out "$API/$name.crt" \
            2>>"$API/openssl.log"
}

api_pki() {
    local n
    mkdir -p "$API" && chmod 0700 "$API"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -nodes -keyout "$API/ca.key" -out "$API/ca.crt" -days 2 \
        -subj "/CN=ovha contract test API CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        2>>"$API/openssl.log" || return 1
    for n in 1 2 3; do
        api_cert "gw$n" "gw$n" "$(ovt_gw_addr "$n")" || return 1
    done
    api_cert ops ops-cert && api_cert stranger stranger
}

# Tokens as `ovhactl token new` makes them: ovha_ + 64 hex; the file holds
# their SHA-256 only, and must be mode 0600.
api_tokens() {
    local role tok
    umask 077
    {
        echo "# contract test tokens"
        for role in viewer operator admin; do
            tok="ovha_$(openssl rand -hex 32)"
            TOKEN[$role]=$tok
            printf 'token ct-%s %s sha256:%s\n' "$role" "$role" \
                "$(printf '%s' "$tok" | sha256sum | cut -d' ' -f1)"
        done
        echo "cert ops-cert operator"
    } >"$API/tokens"
    umask 022
}

# The api: section of gateway N (cluster.sh calls it through
# OVT_GW_YAML_FN).
api_yaml() {
    local n=$1
    cat <<EOF_API
api:
  tokens_file: $(ovt__yaml_sq "$API/tokens")
  listen: '$(ovt_gw_addr "$n"):9443'
  tls_cert: $(ovt__yaml_sq "$API/gw$n.crt")
  tls_key: $(ovt__yaml_sq "$API/gw$n.key")
  client_ca: $(ovt__yaml_sq "$API/ca.crt")
EOF_API
}
OVT_GW_YAML_FN=api_yaml

# ---- setup ------------------------------------------------------------------

cns() {
    ovt_ns "c-$1"
}

addr_of() {
    tun_addr "$(cns "$1")" tun0
}

ovt_switch_create || exit 1
for n in 1 2 3; do
    ovt_gw_host "$n" || exit 1
done
i=11
for c in $OVT_CLU_CLIENTS; do
    ovt_host_add "c-$c" "198.18.0.$i" || exit 1
    i=$((i + 1))
done
if ! ovt_cluster_pki; then
    ovt_not_ok "test PKI" "see $OVT_DIR/pki/openssl.log, $OVT_DIR/raft-pki.log"
    exit 1
fi
if ! api_pki; then
    ovt_not_ok "API test PKI" "$(tail -n 5 "$API/openssl.log")"
    exit 1
fi
api_tokens
for n in 1 2 3; do
    ovt_gw_config "$n" "$([ "$n" = 1 ] && echo true || echo false)"
done
ovt_cluster3_up "$STEP" || exit 1
ovt_ok "a 3-gateway cluster with the api: section"

ovt_clu_client alice 1 2 3
ovt_clu_client carol 1 2 3
ovt_clu_client bob 2 3 1
ovt_clu_client site 3 1 2
declare -A IP=()
for c in $OVT_CLU_CLIENTS; do
    ovt_check "$c is connected" \
        ovt_wait_until "$STEP" eval "[ -n \"\$(addr_of $c)\" ]"
    IP[$c]=$(addr_of "$c")
done
ovt_diag "alice ${IP[alice]}, carol ${IP[carol]}, bob ${IP[bob]}, site ${IP[site]}"
# The subnet is registered when the site's session is admitted; sessions
# and leases replicate within a heartbeat.
subnet_known() {
    curl -s -m 5 --unix-socket "$(ovt_gw_sock 1)" \
        -H "Authorization: Bearer ${TOKEN[viewer]}" \
        http://localhost/v1/subnets | jq -e --arg c "$SITE_NET" \
        'any(.subnets[]; .cidr == $c)' >/dev/null 2>&1
}
sessions_known() {
    [ "$(curl -s -m 5 --unix-socket "$(ovt_gw_sock 1)" \
        -H "Authorization: Bearer ${TOKEN[viewer]}" \
        'http://localhost/v1/cluster/sessions?state=established' |
        jq '[.sessions[].cn] | unique | length' 2>/dev/null)" = 4 ]
}
ovt_check "the site's subnet is replicated" ovt_wait_until 15 subnet_known
ovt_check "the four sessions are established in the replicated state" \
    ovt_wait_until 15 sessions_known

# ---- the contract -------------------------------------------------------------

CONF=$OVT_DIR/contract.json
jq -n \
    --arg v "${TOKEN[viewer]}" --arg o "${TOKEN[operator]}" \
    --arg a "${TOKEN[admin]}" --arg api "$API" \
    --arg s1 "$(ovt_gw_sock 1)" --arg s2 "$(ovt_gw_sock 2)" \
    --arg s3 "$(ovt_gw_sock 3)" \
    --arg alice "${IP[alice]}" --arg bob "${IP[bob]}" \
    --arg carol "${IP[carol]}" --arg site "${IP[site]}" \
    --arg net "$SITE_NET" '{
    tokens: {viewer: $v, operator: $o, admin: $a},
    subjects: {viewer: "ct-viewer", operator: "ct-operator",
               admin: "ct-admin"},
    api_ca: ($api + "/ca.crt"),
    certs: {operator: {cert: ($api + "/ops.crt"), key: ($api + "/ops.key"),
                       cn: "ops-cert"},
            stranger: {cert: ($api + "/stranger.crt"),
                       key: ($api + "/stranger.key"), cn: "stranger"}},
    nodes: {"1": {socket: $s1, tcp: "198.18.0.1:9443"},
            "2": {socket: $s2, tcp: "198.18.0.2:9443"},
            "3": {socket: $s3, tcp: "198.18.0.3:9443"}},
    ips: {alice: $alice, bob: $bob, carol: $carol, site: $site},
    site_net: $net, free_net: "100.96.99.0/24",
    extra_pool: "100.64.2.0/24", reserve_ip: "100.64.0.200",
    spare_address: "198.18.0.4:7000"}' >"$CONF"

# contract.py MODE: its "ok - ..." / "not ok - ... # why" lines become
# this script's checks, "# ..." lines pass through.
contract() {
    local line
    while IFS= read -r line; do
        case $line in
        "ok - "*) ovt_ok "${line#ok - }" ;;
        "not ok - "*)
            line=${line#not ok - }
            ovt_not_ok "${line%% # *}" "${line#* # }"
            ;;
        *) printf '%s\n' "$line" ;;
        esac
    done < <(ip netns exec "$(ovt_ns gw1)" timeout 150 \
        "$PY" "$HERE/contract.py" "$1" "$DOC" "$CONF" 2>&1)
}

contract live
for n in 1 2 3; do
    ovt_check "gw$n is still running" ovt_gw_alive "$n"
done

# ---- no leader: gw1 alone ----------------------------------------------------

ovt_gw_kill 2 KILL
ovt_gw_kill 3 KILL
contract noleader
ovt_check "gw1 is still running" ovt_gw_alive 1

# ---- secrets ------------------------------------------------------------------

# Every token was sent many times (and refused ones logged); none may
# appear in any gateway's logs or files.
tokens_nowhere() {
    local role n
    for role in "${!TOKEN[@]}"; do
        for n in 1 2 3; do
            if grep -r -a -q -F -- "${TOKEN[$role]}" "$(ovt_gw_dir "$n")"; then
                ovt_diag "the $role token is in $(grep -r -a -l -F -- \
                    "${TOKEN[$role]}" "$(ovt_gw_dir "$n")")"
                return 1
            fi
        done
    done
}
ovt_check "no bearer token is in any gateway's logs or files" tokens_nowhere
