# shellcheck shell=bash
# cluster-tests/lib/netns.sh: throw-away network namespaces for e2e tests.
#
# Layout (198.18.0.0/24 underlay, nothing in the root namespace):
#
#   <P>-sw   "switch": bridge br0, one port p-<host> per host
#   <P>-gw   198.18.0.1/24 on eth0      (ovt_host_add gw 198.18.0.1)
#   <P>-c1   198.18.0.11/24 on eth0     (clients from .11 up)
#
# <P> is "ovt<pid>", unique per run. Each veth pair is created from inside
# the switch namespace with its peer placed directly in the host namespace,
# so no interface ever exists in the root namespace. Interface names are
# local to a namespace; the only per-host name is p-<host> (host <= 12
# chars keeps it within IFNAMSIZ-1 = 15).
#
# Usage:
#   . lib/tap.sh; . lib/netns.sh
#   ovt_require_netns          # exit 77 when we cannot
#   ovt_init                   # prefix, work dir, EXIT/INT/TERM trap
#   ovt_switch_create
#   ovt_host_add gw 198.18.0.1
#   ovt_spawn "$(ovt_ns gw)" "$OVT_DIR/x.log" cmd args...   # sets OVT_LAST_PID
#
# Cleanup (trap): SIGTERM every recorded PID, wait <= 5 s, SIGKILL the rest,
# then SIGKILL whatever still runs inside our namespaces (only processes we
# started can be there), then delete the namespaces. The work dir is removed
# when everything passed, kept (and its path printed) otherwise, or always
# with OVT_KEEP=1.

OVT_P=""
OVT_DIR=""
OVT_NSES=()
OVT_PIDS=()
OVT_LAST_PID=""
OVT_CLEANED=0

ovt_init() {
    OVT_P="ovt$$"
    OVT_DIR=$(mktemp -d "/tmp/${OVT_P}.XXXXXX")
    chmod 0755 "$OVT_DIR"
    trap 'ovt__on_exit' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# Name of the namespace for host $1.
ovt_ns() {
    printf '%s-%s' "$OVT_P" "$1"
}

ovt__ns_add() {
    local ns=$1
    ip netns add "$ns" || return 1
    OVT_NSES+=("$ns")
    ip -n "$ns" link set lo up
}

ovt_switch_create() {
    local sw
    sw=$(ovt_ns sw)
    ovt__ns_add "$sw" || return 1
    ip -n "$sw" link add br0 type bridge || return 1
    ip -n "$sw" link set br0 up
}

# ovt_host_add NAME ADDR: namespace <P>-NAME with eth0 = ADDR/24 on the
# switch. Extra addresses: ip -n "$(ovt_ns NAME)" addr add ... dev eth0.
ovt_host_add() {
    local name=$1 addr=$2
    local sw ns port
    sw=$(ovt_ns sw)
    ns=$(ovt_ns "$name")
    port="p-$name"
    if [ ${#port} -gt 15 ]; then
        echo "ovt_host_add: host name '$name' too long" >&2
        return 1
    fi
    ovt__ns_add "$ns" || return 1
    ip -n "$sw" link add "$port" type veth peer name eth0 netns "$ns" ||
        return 1
    ip -n "$sw" link set "$port" master br0 || return 1
    ip -n "$sw" link set "$port" up || return 1
    ip -n "$ns" addr add "$addr/24" dev eth0 || return 1
    ip -n "$ns" link set eth0 up
}

# ovt_spawn NS LOG CMD...: runs CMD in NS in the background (stdout and
# stderr to LOG), records its PID (ip netns exec execs CMD, so the PID is
# CMD's) and leaves it in OVT_LAST_PID.
ovt_spawn() {
    local ns=$1 log=$2
    shift 2
    ip netns exec "$ns" "$@" >"$log" 2>&1 </dev/null &
    OVT_LAST_PID=$!
    OVT_PIDS+=("$OVT_LAST_PID")
}

# Records a PID started some other way so that cleanup kills it.
ovt_track_pid() {
    OVT_PIDS+=("$1")
}

# True while PID runs. A zombie (exited, not yet reaped: our own children
# until `wait`) counts as dead.
ovt_pid_alive() {
    local stat
    kill -0 "$1" 2>/dev/null || return 1
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

# ovt_wait_until TIMEOUT_S CMD...: polls CMD every 0.2 s until it exits 0
# (return 0) or TIMEOUT_S passes (return 1).
ovt_wait_until() {
    local timeout=$1
    shift
    local deadline=$((SECONDS + timeout))
    while true; do
        if "$@"; then
            return 0
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            return 1
        fi
        sleep 0.2
    done
}

ovt__pid_dead() {
    ! ovt_pid_alive "$1"
}

# ovt_stop_pid PID [TIMEOUT_S]: SIGTERM, wait, then SIGKILL. Reaps it when
# it is our child.
ovt_stop_pid() {
    local pid=$1 timeout=${2:-5}
    if ! ovt_pid_alive "$pid"; then
        wait "$pid" 2>/dev/null
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null
    if ! ovt_wait_until "$timeout" ovt__pid_dead "$pid"; then
        kill -KILL "$pid" 2>/dev/null
        ovt_wait_until 5 ovt__pid_dead "$pid"
    fi
    wait "$pid" 2>/dev/null
    return 0
}

# Prints what this run left behind: namespaces with our prefix and live
# recorded PIDs. Empty output means clean.
ovt_leftovers() {
    local pid ns
    for ns in $(ip netns list | awk '{print $1}'); do
        case $ns in
        "$OVT_P"-*) echo "namespace $ns" ;;
        esac
    done
    for pid in "${OVT_PIDS[@]}"; do
        if ovt_pid_alive "$pid"; then
            echo "pid $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null))"
        fi
    done
}

ovt_cleanup() {
    local pid ns i
    if [ "$OVT_CLEANED" = 1 ]; then
        return 0
    fi
    OVT_CLEANED=1
    for pid in "${OVT_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${OVT_PIDS[@]}"; do
        if ! ovt_wait_until 5 ovt__pid_dead "$pid"; then
            kill -KILL "$pid" 2>/dev/null
        fi
    done
    # Anything still inside our namespaces (children of ours, e.g. an
    # openvpn a killed supervisor left behind) is ours too.
    for ns in "${OVT_NSES[@]}"; do
        for i in 1 2 3; do
            pid=$(ip netns pids "$ns" 2>/dev/null)
            if [ -z "$pid" ]; then
                break
            fi
            # shellcheck disable=SC2086
            kill -KILL $pid 2>/dev/null
            sleep 0.2
        done
    done
    for pid in "${OVT_PIDS[@]}"; do
        wait "$pid" 2>/dev/null
    done
    # Hosts first, the switch last: deleting a namespace deletes its veth
    # end, which deletes the peer.
    for ((i = ${#OVT_NSES[@]} - 1; i >= 0; i--)); do
        ip netns del "${OVT_NSES[$i]}" 2>/dev/null
    done
    OVT_NSES=()
}

ovt__on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    ovt_cleanup
    # Nothing worth keeping in an empty work dir.
    if [ -n "$OVT_DIR" ] && rmdir "$OVT_DIR" 2>/dev/null; then
        OVT_DIR=""
    fi
    if [ "$rc" = 77 ]; then
        exit 77
    fi
    if [ "${OVT_NO_SUMMARY:-0}" = 1 ]; then
        if [ -n "$OVT_DIR" ]; then
            if [ "$rc" = 0 ] && [ "${OVT_KEEP:-0}" != 1 ]; then
                rm -rf "$OVT_DIR"
            else
                echo "# logs kept in $OVT_DIR" >&2
            fi
        fi
        exit "$rc"
    fi
    if [ "$rc" != 0 ] && [ "$OVT_FAIL" = 0 ]; then
        ovt_not_ok "script ended early with status $rc"
    fi
    if ovt_summary; then
        rc=0
    else
        rc=1
    fi
    if [ -n "$OVT_DIR" ]; then
        if [ "$rc" = 0 ] && [ "${OVT_KEEP:-0}" != 1 ]; then
            rm -rf "$OVT_DIR"
        else
            echo "# logs kept in $OVT_DIR"
        fi
    fi
    exit "$rc"
}
