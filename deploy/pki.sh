#!/usr/bin/env bash
# pki.sh: the cluster PKI for ovha's raft mTLS transport (see docs/pki.md).
#
#   deploy/pki.sh init DIR                  cluster CA (EC P-256, 10 years)
#   deploy/pki.sh issue-node DIR ID [ADDR]  node cert + key (2 years)
#   deploy/pki.sh renew-node DIR ID [ADDR]  same, replacing existing files
#   deploy/pki.sh show DIR ID               print the raft id bound in a cert
#
# The raft id is bound to a certificate by exactly one subjectAltName URI
# "ovha:node:<id>" (decimal, > 0, no leading zeros). The subject CN
# "node-<id>" is for humans only; the transport ignores it.
#
# init and issue-node are idempotent: existing files are kept (issue-node
# checks that they still verify against the CA and carry the right id).
# Keys are written 0600, certificates 0644.
set -euo pipefail

PKI_CA_DAYS=3650
PKI_NODE_DAYS=730

pki_die() {
    echo "pki.sh: $*" >&2
    exit 1
}

pki_usage() {
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# Strict id check: decimal, no sign, no leading zero, fits in 64 bits.
pki_check_id() {
    local id=$1
    [[ $id =~ ^[1-9][0-9]{0,19}$ ]] || pki_die "bad node id '$id'"
    # Same length, so the string comparison is the numeric one.
    # shellcheck disable=SC2071
    if ((${#id} == 20)) && [[ $id > 18446744073709551615 ]]; then
        pki_die "node id '$id' does not fit in 64 bits"
    fi
}

pki_init() {
    local dir=$1
    mkdir -p "$dir"
    chmod 0700 "$dir"
    if [[ -s $dir/ca.key && -s $dir/ca.crt ]]; then
        echo "pki.sh: CA already present in $dir, keeping it" >&2
        return 0
    fi
    [[ -e $dir/ca.key || -e $dir/ca.crt ]] &&
        pki_die "$dir has a partial CA (ca.key or ca.crt missing); refusing"
    (umask 077 && openssl genpkey -algorithm EC \
        -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca.key.tmp")
    openssl req -new -x509 -key "$dir/ca.key.tmp" -sha256 \
        -days "$PKI_CA_DAYS" -subj "/O=ovha/CN=ovha cluster CA" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" \
        -out "$dir/ca.crt.tmp"
    chmod 0600 "$dir/ca.key.tmp"
    chmod 0644 "$dir/ca.crt.tmp"
    mv "$dir/ca.key.tmp" "$dir/ca.key"
    mv "$dir/ca.crt.tmp" "$dir/ca.crt"
    echo "pki.sh: created CA in $dir" >&2
}

# Prints the raft id(s) found in a certificate's SAN URIs, one per line.
pki_cert_ids() {
    openssl x509 -in "$1" -noout -ext subjectAltName 2>/dev/null |
        grep -o 'URI:ovha:node:[^,[:space:]]*' | sed 's/^URI:ovha:node://'
}

# True when DIR/node-ID.crt verifies against the CA and carries exactly id ID.
pki_node_ok() {
    local dir=$1 id=$2
    local crt=$dir/node-$id.crt
    [[ -s $crt && -s $dir/node-$id.key ]] || return 1
    openssl verify -CAfile "$dir/ca.crt" "$crt" >/dev/null 2>&1 || return 1
    [[ "$(pki_cert_ids "$crt")" == "$id" ]] || return 1
    # The key must match the certificate.
    [[ "$(openssl pkey -in "$dir/node-$id.key" -pubout 2>/dev/null)" == \
        "$(openssl x509 -in "$crt" -noout -pubkey 2>/dev/null)" ]]
}

pki_issue() {
    local dir=$1 id=$2 addr=${3:-} force=${4:-0}
    local key=$dir/node-$id.key crt=$dir/node-$id.crt
    local san host tmp
    pki_check_id "$id"
    [[ -s $dir/ca.key && -s $dir/ca.crt ]] ||
        pki_die "no CA in $dir (run: pki.sh init $dir)"
    if [[ $force == 0 ]] && pki_node_ok "$dir" "$id"; then
        echo "pki.sh: node $id already has a valid certificate, keeping it" >&2
        return 0
    fi
    if [[ $force == 0 && (-e $key || -e $crt) ]]; then
        pki_die "node $id files exist but do not verify; use renew-node"
    fi
    san="URI:ovha:node:$id"
    if [[ -n $addr ]]; then
        # Accept "host", "host:port" or "[v6]:port"; the port is not bound.
        host=$addr
        if [[ $host =~ ^\[(.*)\](:[0-9]+)?$ ]]; then
            host=${BASH_REMATCH[1]}
        elif [[ $host =~ ^([^:]+):[0-9]+$ ]]; then
            host=${BASH_REMATCH[1]}
        fi
        [[ $host =~ ^[A-Za-z0-9.:-]+$ ]] || pki_die "bad address '$addr'"
        if [[ $host =~ ^[0-9.]+$ || $host == *:* ]]; then
            san="$san,IP:$host"
        else
            san="$san,DNS:$host"
        fi
    fi
    tmp=$(mktemp -d "$dir/.issue.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" EXIT
    (umask 077 && openssl genpkey -algorithm EC \
        -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/node.key")
    openssl req -new -key "$tmp/node.key" -subj "/O=ovha/CN=node-$id" \
        -out "$tmp/node.csr"
    cat >"$tmp/ext.cnf" <<EOF
[node]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = $san
EOF
    openssl x509 -req -in "$tmp/node.csr" -CA "$dir/ca.crt" \
        -CAkey "$dir/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
        -sha256 -days "$PKI_NODE_DAYS" -extfile "$tmp/ext.cnf" \
        -extensions node -out "$tmp/node.crt" 2>/dev/null
    chmod 0600 "$tmp/node.key"
    chmod 0644 "$tmp/node.crt"
    if [[ $force != 0 && -e $crt ]]; then
        local stamp
        stamp=$(date -u +%Y%m%dT%H%M%SZ)
        mv "$crt" "$crt.$stamp.old"
        [[ -e $key ]] && mv "$key" "$key.$stamp.old"
    fi
    mv "$tmp/node.key" "$key"
    mv "$tmp/node.crt" "$crt"
    rm -rf "$tmp"
    trap - EXIT
    echo "pki.sh: issued $crt ($san)" >&2
}

[[ $# -ge 1 ]] || pki_usage
command -v openssl >/dev/null || pki_die "openssl CLI not found"
cmd=$1
shift
case $cmd in
init)
    [[ $# -eq 1 ]] || pki_usage
    pki_init "$1"
    ;;
issue-node)
    [[ $# -ge 2 && $# -le 3 ]] || pki_usage
    pki_issue "$1" "$2" "${3:-}" 0
    ;;
renew-node)
    [[ $# -ge 2 && $# -le 3 ]] || pki_usage
    pki_issue "$1" "$2" "${3:-}" 1
    ;;
show)
    [[ $# -eq 2 ]] || pki_usage
    pki_check_id "$2"
    pki_cert_ids "$1/node-$2.crt"
    ;;
*)
    pki_usage
    ;;
esac
