# shellcheck shell=bash
# cluster-tests/lib/tap.sh: a tiny TAP-like reporter for the e2e scripts.
#
#   ovt_ok "name"            record a pass        -> "ok N - name"
#   ovt_not_ok "name" [why]  record a failure     -> "not ok N - name # why"
#   ovt_check "name" cmd...  run cmd, ok if it exits 0
#   ovt_skip_all "why"       print "1..0 # SKIP why" and exit 77
#   ovt_summary              print "N passed, N failed" (called from the
#                            EXIT trap set by netns.sh); returns 0 or 1
#
# Exit codes of a script using it: 0 all passed, 1 something failed (or no
# check ran at all), 77 skipped (not root, no CAP_NET_ADMIN, no tun).

OVT_PASS=0
OVT_FAIL=0
OVT_N=0
OVT_SUMMARY_DONE=0

ovt_ok() {
    OVT_N=$((OVT_N + 1))
    OVT_PASS=$((OVT_PASS + 1))
    printf 'ok %d - %s\n' "$OVT_N" "$1"
}

ovt_not_ok() {
    OVT_N=$((OVT_N + 1))
    OVT_FAIL=$((OVT_FAIL + 1))
    if [ -n "${2:-}" ]; then
        printf 'not ok %d - %s # %s\n' "$OVT_N" "$1" "$2"
    else
        printf 'not ok %d - %s\n' "$OVT_N" "$1"
    fi
}

# ovt_check NAME CMD...: the check passes when CMD exits 0.
ovt_check() {
    local name=$1
    shift
    if "$@"; then
        ovt_ok "$name"
        return 0
    fi
    ovt_not_ok "$name" "failed: $*"
    return 1
}

# Diagnostics never count as results; TAP consumers ignore '#' lines.
ovt_diag() {
    printf '# %s\n' "$*"
}

ovt_skip_all() {
    printf '1..0 # SKIP %s\n' "$1"
    OVT_SUMMARY_DONE=1
    exit 77
}

# Prints the plan and the counts once; returns 0 when every check passed
# (and at least one ran), however often it is called.
ovt_summary() {
    if [ "$OVT_SUMMARY_DONE" != 1 ]; then
        OVT_SUMMARY_DONE=1
        printf '1..%d\n' "$OVT_N"
        printf '%d passed, %d failed\n' "$OVT_PASS" "$OVT_FAIL"
    fi
    [ "$OVT_FAIL" -eq 0 ] && [ "$OVT_PASS" -gt 0 ]
}

# Skips (exit 77) unless we can make namespaces and tun devices.
ovt_require_netns() {
    if [ "$(id -u)" != 0 ]; then
        ovt_skip_all "needs root"
    fi
    local capeff
    capeff=$(awk '/^CapEff:/ {print $2}' /proc/self/status)
    # CAP_NET_ADMIN is bit 12, CAP_SYS_ADMIN (setns/mount for netns) bit 21.
    if [ -z "$capeff" ] || ((((0x$capeff >> 12) & 1) == 0)) ||
        ((((0x$capeff >> 21) & 1) == 0)); then
        ovt_skip_all "needs CAP_NET_ADMIN and CAP_SYS_ADMIN"
    fi
    if [ ! -c /dev/net/tun ]; then
        ovt_skip_all "no /dev/net/tun"
    fi
    local tool
    for tool in ip openssl python3 pgrep timeout; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            ovt_skip_all "missing tool: $tool"
        fi
    done
}
