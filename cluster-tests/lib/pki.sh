# shellcheck shell=bash
# cluster-tests/lib/pki.sh: a throw-away test PKI made with the openssl CLI.
#
#   ovt_pki_init DIR            CA (ca.crt/ca.key) and tls-crypt key (tc.key)
#   ovt_pki_server DIR NAME     NAME.crt/NAME.key, EKU serverAuth, CN=NAME
#   ovt_pki_client DIR BASE CN  BASE.crt/BASE.key, EKU clientAuth, CN exactly
#                               as given (any bytes openssl accepts)
#
# Keys are EC prime256v1 (fast), certificates valid for 2 days.
#
# Hostile common names: the CN is passed to `openssl req -subj`, where '\'
# escapes the next character and '/' separates RDNs, so both are escaped
# here (and '+', which OpenSSL 3 takes as a multi-valued RDN); the certificate then holds the exact bytes (a UTF8String). Observed
# with OpenVPN 2.6.14 for CN `evil "quoted" o'name\x`: the server keeps it
# byte for byte (double quotes, single quote, spaces, backslash) in
# common_name / X509_0_CN of >CLIENT:ENV and in `status 3`; see
# cluster-tests/tools/README.md ("CN mangling") for the full rules.

OVT_PKI_DAYS=2

ovt__pki_subj_escape() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\//\\/}
    s=${s//+/\\+}
    printf '%s' "$s"
}

ovt_pki_init() {
    local dir=$1
    mkdir -p "$dir" || return 1
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -nodes -keyout "$dir/ca.key" -out "$dir/ca.crt" \
        -days "$OVT_PKI_DAYS" -subj "/CN=ovha test CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        >"$dir/openssl.log" 2>&1 || return 1
    openvpn --genkey tls-crypt "$dir/tc.key" >>"$dir/openssl.log" 2>&1 ||
        return 1
    chmod 0600 "$dir"/*.key
}

# ovt__pki_issue DIR BASE CN EKU
ovt__pki_issue() {
    local dir=$1 base=$2 cn=$3 eku=$4
    local subj ext
    subj="/CN=$(ovt__pki_subj_escape "$cn")"
    ext="$dir/$base.ext"
    {
        echo "basicConstraints=CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyAgreement"
        echo "extendedKeyUsage=$eku"
        echo "subjectKeyIdentifier=hash"
        echo "authorityKeyIdentifier=keyid"
    } >"$ext"
    openssl req -new -utf8 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -nodes -keyout "$dir/$base.key" -out "$dir/$base.csr" \
        -subj "$subj" >>"$dir/openssl.log" 2>&1 || return 1
    openssl x509 -req -in "$dir/$base.csr" -CA "$dir/ca.crt" \
        -CAkey "$dir/ca.key" -CAcreateserial -CAserial "$dir/ca.srl" \
        -days "$OVT_PKI_DAYS" -extfile "$ext" -out "$dir/$base.crt" \
        >>"$dir/openssl.log" 2>&1 || return 1
    chmod 0600 "$dir/$base.key"
    rm -f "$dir/$base.csr" "$ext"
}

ovt_pki_server() {
    ovt__pki_issue "$1" "$2" "$2" serverAuth
}

ovt_pki_client() {
    ovt__pki_issue "$1" "$2" "$3" clientAuth
}

# Prints the CN stored in a certificate, raw (no RFC 2253 escaping).
ovt_pki_cn() {
    openssl x509 -in "$1" -noout -subject \
        -nameopt sep_multiline,utf8,-esc_msb,-esc_2253,-esc_2254,-esc_ctrl,sname |
        sed -n 's/^ *CN=//p'
}
