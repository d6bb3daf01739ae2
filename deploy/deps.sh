#!/usr/bin/env bash
# Install every build, run and test dependency of ovha from Debian 12 packages.
# Idempotent: packages already present are left alone, so a second run is a
# no-op apart from apt's own checks.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "deps.sh: must run as root (apt-get install)" >&2
    exit 1
fi

pkgs=(
    # toolchain
    build-essential cmake pkg-config git clang clang-format clang-tidy
    libclang-rt-14-dev llvm
    # libraries of shared/DESIGN.md section 2
    libuv1-dev libraft-dev liblz4-dev libsqlite3-dev sqlite3
    libhiredis-dev libcurl4-openssl-dev libjansson-dev
    libmaxminddb-dev libmaxmind-db-writer-perl
    libnftnl-dev libmnl-dev libnftables-dev
    libnl-3-dev libnl-route-3-dev libpcap-dev
    libprotobuf-c-dev protobuf-c-compiler
    libcmocka-dev libmicrohttpd-dev libyaml-dev libssl-dev openssl
    # real components the tests and the demo start
    openvpn redis-server nftables iproute2 iputils-ping procps psmisc
    python3 ca-certificates jq curl redis-tools prometheus
    # the admin API contract test (cluster-tests/contract/): schema checks
    python3-yaml python3-jsonschema
)

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
        || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "deps.sh: all ${#pkgs[@]} packages present"
    exit 0
fi

echo "deps.sh: installing ${#missing[@]} packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"

# The Debian openvpn, redis and prometheus packages enable system services;
# ovha (and its tests) start their own instances, so keep the packaged ones
# from holding ports or sockets.
for svc in openvpn redis-server prometheus; do
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
done
echo "deps.sh: done"
