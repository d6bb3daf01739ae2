#!/usr/bin/env bash
# e2e/cluster3.sh: three ovhad gateways (gw1..gw3, 198.18.0.1-3) replicating
# through raft over mTLS, each running its own openvpn, with real clients.
#
#   a. bootstrap gw1, start gw2/gw3 and join them: 3 voters, 1 leader, seen
#      alike by every node
#   b. alice/bob/carol connect to gw1/gw2/gw3: distinct addresses from the
#      replicated pool, visible as leases on every node
#   c. alice moves to gw2: same address (sticky lease), and sessions
#      --cluster shows her on gw2 only
#   d. dave connects to the leader's gateway; kill -9 of the leader's
#      ovhad: new leader within a bound, a new client (erin) is still
#      decided, dave fails over to his second remote with the same address;
#      the killed node restarts and catches up through an InstallSnapshot
#      (thresholds are low and the test writes enough entries)
#   e. membership under client load: join gw4, transfer leadership, remove
#      gw4, while erin reconnects every ~2 s; count undecided attempts
#   f. a node with a certificate from another CA is refused (TLS) and
#      changes nothing; a node whose certificate is for id 6 but is
#      configured as 5 refuses to start
#   g. clean stop and no leftovers
#
# Binaries from OVHA_BIN (default <repo>/build/bin). Logs are kept in the
# printed directory when a check fails (or OVT_KEEP=1).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/tap.sh"
. "$HERE/../lib/netns.sh"
. "$HERE/../lib/pki.sh"
. "$HERE/../lib/openvpn.sh"
. "$HERE/../lib/ovhad.sh"
. "$HERE/../lib/cluster.sh"

STEP=30
# Elections with election_timeout 300 ms: a new leader well within this.
ELECT_BOUND=${ELECT_BOUND:-5}
# Load phase of step e (seconds, at most).
LOAD_MAX=${LOAD_MAX:-90}
export OVT_CLIENT_PING_RESTART=6

ovt_require_netns
command -v openvpn >/dev/null 2>&1 || ovt_skip_all "openvpn not installed"
command -v jq >/dev/null 2>&1 || ovt_skip_all "jq not installed"
ovt_init

if ! ovt_ovhad_bin_check; then
    ovt_not_ok "ovhad and ovhactl found in OVHA_BIN=$OVHA_BIN"
    exit 1
fi

T0=$SECONDS

# ---- helpers ------------------------------------------------------------

negate() {
    ! "$@"
}

has_some_addr() {
    [ -n "$(tun_addr "$1" tun0)" ]
}

in_pool() {
    local a=$1
    case $a in
    100.64.0.*) [ "${a##*.}" -ge 128 ] && [ "${a##*.}" -le 254 ] ;;
    *) return 1 ;;
    esac
}

cns() {
    ovt_ns "c-$1"
}

# client_to NAME GW: (re)starts client NAME against gateway GW only.
client_to() {
    ovt_client_stop "$1"
    ovt_client_start "$1" "$(cns "$1")" "$OVT_CLU_PKI" "$1" \
        "$(ovt_gw_addr "$2")"
}

# client_addr NAME TIMEOUT: waits for an address, prints it.
client_addr() {
    ovt_wait_until "$2" has_some_addr "$(cns "$1")" || return 1
    tun_addr "$(cns "$1")" tun0
}

# The lease table of node N as "cn ip" lines (any JSON layout whose lease
# objects carry cn/owner and ip).
leases_of() {
    ovt_ctl "$1" leases --json 2>/dev/null |
        jq -r '[.. | objects | select((has("cn") or has("owner")) and (has("ip") or has("address")))] | .[] | "\(.cn // .owner) \(.ip // .address)"' 2>/dev/null |
        sort
}

# lease_is N CN IP: node N has a lease CN -> IP.
lease_is() {
    leases_of "$1" | grep -F -x -q -- "$2 $3"
}

# The gateways on which CN has a live session, per node N's view of the
# replicated session table, sorted and comma separated.
cluster_sessions_of() {
    ovt_ctl "$1" sessions --cluster --json 2>/dev/null |
        jq -r --arg cn "$2" '[.. | objects | select(has("cn") and .cn == $cn and (has("gateway") or has("gateway_id") or has("gw"))) | select(((.state // "open") | tostring | ascii_downcase) as $s | ($s != "closed" and $s != "evicted" and $s != "orphaned"))] | map(.gateway // .gateway_id // .gw | tostring) | unique | join(",")' 2>/dev/null
}

sessions_only_on() {
    [ "$(cluster_sessions_of "$1" "$2")" = "$3" ]
}

all_leases_match() {
    # all_leases_match CN IP N...: every node has lease CN -> IP.
    local cn=$1 ip=$2 n
    shift 2
    for n in "$@"; do
        lease_is "$n" "$cn" "$ip" || return 1
    done
}

# commit index of N >= X and N's last_applied >= X.
applied_at_least() {
    local a
    a=$(ovt_cs "$1" last_applied) || return 1
    [ -n "$a" ] && [ "$a" != null ] && [ "$a" -ge "$2" ]
}

commit_at_least() {
    local c
    c=$(ovt_cs "$1" commit) || return 1
    [ -n "$c" ] && [ "$c" != null ] && [ "$c" -ge "$2" ]
}

status_diag() {
    local n
    for n in "$@"; do
        ovt_diag "gw$n: $(ovt_cluster_status "$n" | jq -r '"\(.role) term \(.term) leader \(.leader_id) commit \(.commit_index) applied \(.last_applied) members \([.servers[] | "\(.id):\(.role)"] | join(","))"' 2>/dev/null)"
    done
}

# Prints "rc output" of ovhactl against N.
ctl_rc() {
    local n=$1 out rc
    shift
    out=$(ovt_ctl "$n" "$@" 2>&1)
    rc=$?
    printf '%s %s' "$rc" "$(tr '\n' ' ' <<<"$out")"
}

# The audit chain head of N as "seq hash verified" (JSON answer).
audit_triple() {
    ovt_ctl "$1" audit head --json 2>/dev/null |
        jq -r '"\(.seq) \(.hash) \(.verified)"' 2>/dev/null
}

# Every given node has the same verified audit head; prints it.
audit_agree() {
    local n a first=""
    for n in "$@"; do
        a=$(audit_triple "$n")
        case $a in
        *" true") ;;
        *) return 1 ;;
        esac
        if [ -z "$first" ]; then
            first=$a
        elif [ "$a" != "$first" ]; then
            return 1
        fi
    done
    printf '%s' "$first"
}

audit_agree_q() {
    audit_agree "$@" >/dev/null
}

# No address is leased to two CNs and no CN holds two addresses, per node
# N's lease table; and the live sessions of the cluster table hold
# distinct addresses.
leases_unique() {
    local l s
    l=$(leases_of "$1")
    [ -n "$l" ] || return 1
    [ "$(awk '{print $2}' <<<"$l" | sort | uniq -d)" = "" ] || return 1
    [ "$(awk '{print $1}' <<<"$l" | sort | uniq -d)" = "" ] || return 1
    s=$(ovt_ctl "$1" sessions --cluster --json 2>/dev/null |
        jq -r '.sessions[] | select(.state != "orphaned") | .ip4' 2>/dev/null)
    [ "$(sort <<<"$s" | uniq -d)" = "" ]
}

# The same lease table on every given node.
leases_agree() {
    local n first=""
    first=$(leases_of "$1")
    [ -n "$first" ] || return 1
    shift
    for n in "$@"; do
        [ "$(leases_of "$n")" = "$first" ] || return 1
    done
}

leader_of() {
    ovt_agreed_leader "$@"
}

audit_head() {
    ovt_ctl "$1" audit head --json 2>/dev/null ||
        ovt_ctl "$1" audit head 2>/dev/null
}

# ---- setup --------------------------------------------------------------

ovt_switch_create || exit 1
for n in 1 2 3 4 5; do
    ovt_gw_host "$n" || exit 1
done
i=11
for c in alice bob carol dave erin mallory; do
    ovt_host_add "c-$c" "198.18.0.$i" || exit 1
    i=$((i + 1))
done
if ! ovt_cluster_pki; then
    ovt_not_ok "test PKI" "see $OVT_DIR/pki/openssl.log, $OVT_DIR/raft-pki.log"
    exit 1
fi
ovt_gw_config 1 true
for n in 2 3 4; do
    ovt_gw_config "$n" false
done
if ! out=$("$OVHA_BIN/ovhad" -n -c "$(ovt_gw_dir 1)/ovhad.yaml" 2>&1); then
    ovt_not_ok "ovhad -n accepts the cluster config" "$out"
    exit 1
fi
ovt_ok "ovhad -n accepts the cluster config"

# ---- a. bootstrap and join ------------------------------------------------

ovt_gw_start 1
if ! ovt_wait_healthy 1 "$STEP"; then
    ovt_not_ok "a. gw1 answers health" "log: $(tail -n 5 "$(ovt_gw_log 1)")"
    exit 1
fi
ovt_check "a. gw1 (bootstrap) becomes leader of a one-voter cluster" \
    ovt_wait_until "$STEP" ovt__agreed_leader_q 1
ovt_gw_start 2
ovt_gw_start 3
ovt_check "a. gw2 and gw3 answer health" \
    ovt_wait_until "$STEP" eval 'ovt__ctl_ok 2 health && ovt__ctl_ok 3 health'
for n in 2 3; do
    r=$(ctl_rc 1 cluster join "$n" "$(ovt_gw_addr "$n"):7000")
    ovt_check "a. cluster join $n on gw1 succeeds (${r})" test "${r%% *}" = 0
done
ovt_check "a. every node reports voters 1,2,3" \
    ovt_wait_until "$STEP" ovt_voters_are 1,2,3 1 2 3
ovt_check "a. every node names the same single leader" \
    ovt_wait_until "$STEP" ovt__agreed_leader_q 1 2 3
LEADER=$(leader_of 1 2 3)
ovt_diag "leader: ${LEADER:-none}"
status_diag 1 2 3
if [ -n "$LEADER" ] && [ "$LEADER" != 1 ]; then
    ovt_diag "leader moved away from the bootstrap node already"
fi
# A follower refuses membership changes and names the leader.
for n in 1 2 3; do
    if [ "$n" != "${LEADER:-0}" ]; then
        r=$(ctl_rc "$n" cluster join 7 198.18.0.7:7000)
        ovt_check "a. join on follower gw$n fails and names the leader ($r)" \
            eval '[ "${r%% *}" = 1 ] && grep -q "leader is $LEADER" <<<"$r"'
        break
    fi
done

# ---- b. three clients on three gateways -----------------------------------

client_to alice 1
client_to bob 2
client_to carol 3
declare -A IP=()
for c in alice bob carol; do
    IP[$c]=$(client_addr "$c" "$STEP")
    ovt_check "b. $c has a pool address: '${IP[$c]}'" in_pool "${IP[$c]}"
done
ovt_check "b. the three addresses are distinct" \
    test "$(printf '%s\n' "${IP[alice]}" "${IP[bob]}" "${IP[carol]}" |
        sort -u | grep -c .)" = 3
ovt_check "b. alice pings gw1's tunnel address" \
    ovt_wait_until 10 ping_through "$(cns alice)" 100.64.0.1
ovt_check "b. carol pings gw3's tunnel address" \
    ovt_wait_until 10 ping_through "$(cns carol)" 100.64.0.1
for n in 1 2 3; do
    ovt_check "b. gw$n's leases show alice, bob and carol with their addresses" \
        ovt_wait_until 10 eval "all_leases_match alice '${IP[alice]}' $n &&
            all_leases_match bob '${IP[bob]}' $n &&
            all_leases_match carol '${IP[carol]}' $n"
done
ovt_diag "leases (gw2):"
ovt_ctl 2 leases 2>&1 | sed 's/^/#   /'

OVT_CLIENT_WATCH=1 ovt_client_start mallory "$(cns mallory)" "$OVT_CLU_PKI" \
    mallory "$(ovt_gw_addr 3)"
ovt_check "b. mallory (denied by policy) gets AUTH_FAILED from gw3" \
    client_auth_failed mallory "$STEP"
ovt_check "b. mallory has no lease" \
    negate eval 'leases_of 1 | grep -q "^mallory "'

# ---- c. alice moves to gw2 --------------------------------------------------

client_to alice 2
A2=$(client_addr alice "$STEP")
ovt_check "c. alice on gw2 gets the same address ${IP[alice]} (got '$A2')" \
    test "$A2" = "${IP[alice]}"
ovt_check "c. alice pings gw2's tunnel address" \
    ovt_wait_until 10 ping_through "$(cns alice)" 100.64.0.1
for n in 1 2 3; do
    ovt_check "c. gw$n: sessions --cluster shows alice on gw2 only" \
        ovt_wait_until "$STEP" sessions_only_on "$n" alice gw2
done
ovt_check "c. gw1 kills alice's old session (evicted by the one on gw2)" \
    wait_for_log 'elsewhere.*killing the local client' "$(ovt_gw_log 1)" 10
ovt_check "c. gw1's local sessions no longer list alice" \
    ovt_wait_until "$STEP" negate eval 'ovt_ctl 1 sessions 2>/dev/null | grep -q "^alice "'
ovt_diag "sessions --cluster (gw3): "
ovt_ctl 3 sessions --cluster 2>&1 | sed 's/^/#   /'
ovt_check "c. bob and carol kept their addresses" \
    eval '[ "$(tun_addr "$(cns bob)" tun0)" = "${IP[bob]}" ] &&
        [ "$(tun_addr "$(cns carol)" tun0)" = "${IP[carol]}" ]'

# An operator's kill on a gateway that does not hold the client: the
# session is ended through raft and gw3, which holds carol, kills her; she
# reconnects (RESTART) with her address.
ovt_check "c. 'kill carol' on gw1 ends her session on gw3" \
    eval 'ovt_ctl 1 kill carol | grep -q "^ended 1 session of carol on other gateways"'
ovt_check "c. gw3 kills carol's client" \
    wait_for_log 'ended or was orphaned elsewhere.*killing the local client' \
    "$(ovt_gw_log 3)" 10
ovt_check "c. the audit chain names the operator who ended it" \
    ovt_wait_until 10 eval 'ovt_ctl 2 audit --json --limit 1000 |
        jq -e "[.records[] | select(.kind == \"session_close\" and
            .actor == \"uid:0\")] | length >= 1" >/dev/null'
ovt_check "c. carol is back on gw3 with ${IP[carol]}" \
    ovt_wait_until "$STEP" eval '[ "$(tun_addr "$(cns carol)" tun0)" = "${IP[carol]}" ] &&
        sessions_only_on 1 carol gw3'

# ---- d. kill -9 of the leader ---------------------------------------------

LEADER=$(leader_of 1 2 3)
if [ -z "$LEADER" ]; then
    ovt_not_ok "d. a leader to kill" "no agreed leader"
    status_diag 1 2 3
else
    SURV=()
    for n in 1 2 3; do
        [ "$n" != "$LEADER" ] && SURV+=("$n")
    done
    # dave connects to the leader's gateway, with a survivor as his second
    # remote: when the whole gateway dies he must move there, keeping his
    # address.
    OVT_CLIENT_PING_RESTART=6 ovt_client_start dave "$(cns dave)" \
        "$OVT_CLU_PKI" dave "$(ovt_gw_addr "$LEADER")" \
        "$(ovt_gw_addr "${SURV[0]}")"
    DIP=$(client_addr dave "$STEP")
    ovt_check "d. dave on the leader's gateway gw$LEADER: address '$DIP'" \
        in_pool "$DIP"
    ovt_check "d. dave's address is not alice's, bob's or carol's" \
        negate eval 'printf "%s\n" "${IP[@]}" | grep -F -x -q -- "$DIP"'
    ovt_wait_until 10 eval 'ovt_ctl "$LEADER" sessions 2>/dev/null | grep -q "^dave "'
    dave_inits=$(grep -c 'Initialization Sequence Completed' "$(ovt_client_log dave)")

    KILLED_AT=$(ovt_cs "$LEADER" last_index)
    t_kill=$(date +%s.%N)
    t_kill_s=$SECONDS
    ovt_gw_kill "$LEADER" KILL
    ovt__dead_diag() {
        ovt_diag "cluster gateways (gw${SURV[0]}) $1 the kill:"
        ovt_ctl "${SURV[0]}" cluster gateways 2>&1 | sed 's/^/#   /'
    }
    ovt_ok "d. killed gw$LEADER's ovhad (leader, last index $KILLED_AT)"
    orphan=$(ovt_ns_openvpn_pids "$(ovt_ns "gw$LEADER")" | tr '\n' ' ')
    ovt_diag "openvpn left running in gw$LEADER after its ovhad died: ${orphan:-none}"
    if ovt_wait_until 30 eval 'nl=$(ovt_agreed_leader "${SURV[@]}") && [ "$nl" != "$LEADER" ]'; then
        t_new=$(date +%s.%N)
        NEWL=$(ovt_agreed_leader "${SURV[@]}")
        el=$(awk -v a="$t_kill" -v b="$t_new" 'BEGIN {printf "%.2f", b - a}')
        ovt_check "d. new leader gw$NEWL elected in ${el} s (bound ${ELECT_BOUND} s)" \
            awk -v e="$el" -v b="$ELECT_BOUND" 'BEGIN {exit !(e <= b)}'
    else
        ovt_not_ok "d. a new leader among gw${SURV[0]}, gw${SURV[1]}" "none in 30 s"
        status_diag "${SURV[@]}"
        NEWL=${SURV[0]}
    fi
    client_to erin "${SURV[1]}"
    EIP=$(client_addr erin "$STEP")
    ovt_check "d. a new client, erin on gw${SURV[1]}, is decided: '$EIP'" \
        in_pool "$EIP"
    ovt_check "d. erin's address is not alice's, bob's, carol's or dave's" \
        negate eval 'printf "%s\n" "${IP[@]}" "$DIP" | grep -F -x -q -- "$EIP"'

    # The whole gateway goes: its openvpn too, should it have outlived its
    # ovhad (it has not so far). dave's client notices (ping-restart 6 s)
    # and moves to his second remote.
    for p in $orphan; do
        kill -KILL "$p" 2>/dev/null
    done
    ovt_check "d. dave fails over to gw${SURV[0]}" \
        ovt_wait_until 45 eval '[ "$(grep -c "Initialization Sequence Completed" "$(ovt_client_log dave)")" -gt "$dave_inits" ]'
    ovt_check "d. dave keeps his address $DIP on gw${SURV[0]}" \
        ovt_wait_until 10 eval '[ "$(tun_addr "$(cns dave)" tun0)" = "$DIP" ]'
    ovt_check "d. dave pings gw${SURV[0]}'s tunnel address" \
        ovt_wait_until 10 ping_through "$(cns dave)" 100.64.0.1
    ovt_check "d. sessions --cluster shows dave on gw${SURV[0]} only" \
        ovt_wait_until 10 sessions_only_on "$NEWL" dave "gw${SURV[0]}"

    # The data plane of the surviving gateways does not depend on the
    # control plane's leader.
    for c in alice:2 bob:2 carol:3; do
        if [ "${c#*:}" != "$LEADER" ]; then
            ovt_check "d. ${c%%:*} (on gw${c#*:}) still pings through the tunnel" \
                ovt_wait_until 10 ping_through "$(cns "${c%%:*}")" 100.64.0.1
        fi
    done

    # Write enough entries while gw$LEADER is down that the others snapshot
    # past its log: reconnects of erin between the survivors.
    need=$((KILLED_AT + 2 * OVT_RAFT_SNAP_THRESHOLD + OVT_RAFT_SNAP_TRAILING + 16))
    reconnects=0
    fails=0
    deadline=$((SECONDS + 60))
    while ! commit_at_least "$NEWL" "$need" && [ "$SECONDS" -lt "$deadline" ]; do
        g=${SURV[$((reconnects % 2))]}
        client_to erin "$g"
        if ! client_addr erin 15 >/dev/null; then
            fails=$((fails + 1))
        fi
        reconnects=$((reconnects + 1))
    done
    ovt_check "d. $reconnects erin reconnects while gw$LEADER is down, all decided ($fails undecided)" \
        test "$fails" = 0
    ovt__dead_diag "$((SECONDS - t_kill_s)) s after"
    ovt_check "d. commit index reached $need (gw$LEADER's log plus two snapshots): $(ovt_cs "$NEWL" commit)" \
        commit_at_least "$NEWL" "$need"
    ovt_client_stop erin

    # libraft's own trace (stderr, so in the log) shows the snapshot
    # install; only for this run of the node, it is verbose.
    LIBRAFT_TRACE=1 ovt_gw_start "$LEADER"
    ovt_check "d. gw$LEADER's ovhad restarts and answers health" \
        ovt_wait_healthy "$LEADER" "$STEP"
    target=$(ovt_cs "$NEWL" commit)
    t_up=$SECONDS
    ovt_check "d. gw$LEADER catches up: last_applied >= leader's commit $target" \
        ovt_wait_until "$STEP" applied_at_least "$LEADER" "$target"
    ovt_diag "caught up in $((SECONDS - t_up)) s"
    # "recv_install_snapshot.c:NN self:1 from:2@... last_index:256" is
    # libraft receiving an InstallSnapshot; "restore snapshot" alone is also
    # printed at start for the node's own snapshot, so it is not proof.
    snapline=$(grep -m1 'recv_install_snapshot' "$(ovt_gw_log "$LEADER")" |
        sed 's/^LIBRAFT *[0-9]* //' | cut -c1-140)
    ovt_check "d. gw$LEADER received a snapshot from the leader: ${snapline:-none}" \
        test -n "$snapline"
    snaps=""
    for f in "$(ovt_gw_dir "$LEADER")"/raft/snapshot-*; do
        case $f in
        *.meta) ;;
        *) snaps+="${f##*/} " ;;
        esac
    done
    ovt_diag "gw$LEADER's snapshots now: $snaps"
    ovt_check "d. gw$LEADER sees the lease of dave" \
        ovt_wait_until 10 lease_is "$LEADER" dave "$DIP"
    ovt_check "d. gw1-gw3 have the same lease table" \
        ovt_wait_until 10 leases_agree 1 2 3
    ovt_check "d. gw1-gw3 have the same verified audit head ($(audit_agree 1 2 3))" \
        ovt_wait_until 10 audit_agree_q 1 2 3
    ovt_diag "cluster gateways (gw$NEWL):"
    ovt_ctl "$NEWL" cluster gateways 2>&1 | sed 's/^/#   /'
    ovt_check "d. every node names the same leader again" \
        ovt_wait_until "$STEP" ovt__agreed_leader_q 1 2 3
    ovt_check "d. gw$LEADER runs openvpn again" \
        ovt_wait_until "$STEP" eval '[ -n "$(ovt_ns_openvpn_pids "$(ovt_ns gw$LEADER)")" ]'
fi

# ---- e. membership under load ---------------------------------------------

LOADLOG=$OVT_DIR/load.log
STOPFILE=$OVT_DIR/load.stop
: >"$LOADLOG"
# The loop runs in a subshell: its clients are recorded there, so it stops
# each one itself; cleanup also kills whatever remains in c-erin.
(
    it=0
    end=$((SECONDS + LOAD_MAX))
    while [ ! -e "$STOPFILE" ] && [ "$SECONDS" -lt "$end" ]; do
        g=$((it % 3 + 1))
        t=$SECONDS
        client_to erin "$g"
        if a=$(client_addr erin 15); then
            echo "ok $it gw$g $a $((SECONDS - t))s" >>"$LOADLOG"
        else
            echo "fail $it gw$g $((SECONDS - t))s" >>"$LOADLOG"
        fi
        sleep 1
        it=$((it + 1))
    done
    ovt_client_stop erin
) &
LOADPID=$!
ovt_track_pid "$LOADPID"

ovt_gw_start 4
ovt_check "e. gw4 answers health" ovt_wait_healthy 4 "$STEP"
LEADER=$(leader_of 1 2 3)
r=$(ctl_rc "${LEADER:-1}" cluster join 4 198.18.0.4:7000)
ovt_check "e. cluster join 4 on the leader gw$LEADER ($r)" test "${r%% *}" = 0
ovt_check "e. every node (gw1-gw4) reports voters 1,2,3,4" \
    ovt_wait_until "$STEP" ovt_voters_are 1,2,3,4 1 2 3 4
ovt_check "e. gw1-gw4 agree on one leader" \
    ovt_wait_until "$STEP" ovt__agreed_leader_q 1 2 3 4
sleep 3
LEADER=$(leader_of 1 2 3 4)
TARGET=""
for n in 3 2 1; do
    if [ "$n" != "$LEADER" ]; then
        TARGET=$n
        break
    fi
done
r=$(ctl_rc "${LEADER:-1}" cluster transfer "$TARGET")
ovt_check "e. cluster transfer $TARGET on gw$LEADER ($r)" test "${r%% *}" = 0
ovt_check "e. gw$TARGET is the leader on gw1-gw4, voters still 1,2,3,4" \
    ovt_wait_until "$STEP" eval '[ "$(ovt_agreed_leader 1 2 3 4)" = "$TARGET" ] &&
        ovt_voters_are 1,2,3,4 1 2 3 4'
sleep 3
r=$(ctl_rc "$TARGET" cluster remove 4)
ovt_check "e. cluster remove 4 on gw$TARGET ($r)" test "${r%% *}" = 0
ovt_check "e. gw1-gw3 report voters 1,2,3" \
    ovt_wait_until "$STEP" ovt_voters_are 1,2,3 1 2 3
ovt_check "e. gw1-gw3 agree on the members and one leader" \
    ovt_wait_until "$STEP" eval 'ovt_members_agree 1 2 3 >/dev/null &&
        ovt__agreed_leader_q 1 2 3'
# The removed gw4 still runs and, never told of its removal, may start
# elections; it must not disturb the cluster (no new term, same leader).
L_RM=$(leader_of 1 2 3)
T_RM=$(ovt_cs "${L_RM:-1}" term)
sleep 4
ovt_check "e. the removed (still running) gw4 does not disturb gw1-gw3: leader gw$L_RM, term $T_RM -> $(ovt_cs "${L_RM:-1}" term)" \
    eval '[ "$(leader_of 1 2 3)" = "$L_RM" ] && [ "$(ovt_cs "$L_RM" term)" = "$T_RM" ]'
ovt_diag "gw4's own view: term $(ovt_cs 4 term), role $(ovt_cs 4 role), members $(ovt_cs 4 members)"
# Let the load run a little past the last change, and for at least 10
# reconnects in all.
ovt_wait_until "$LOAD_MAX" eval '[ "$(grep -c . "$LOADLOG")" -ge 10 ]'
touch "$STOPFILE"
ovt_wait_until 30 ovt__pid_dead "$LOADPID"
wait "$LOADPID" 2>/dev/null
ovt_gw_kill 4 TERM
nok=$(grep -c '^ok' "$LOADLOG")
nfail=$(grep -c '^fail' "$LOADLOG")
ovt_diag "load: $nok decided, $nfail undecided"
grep '^fail' "$LOADLOG" | sed 's/^/#   /'
ovt_check "e. the load loop ran ($nok reconnects decided)" test "$nok" -ge 5
ovt_check "e. no address leased twice, no CN with two leases, no two live sessions on one address" \
    leases_unique "$(leader_of 1 2 3)"
ovt_check "e. gw1-gw3 have the same lease table" \
    ovt_wait_until 10 leases_agree 1 2 3
ovt_check "e. gw1-gw3 have the same verified audit head" \
    ovt_wait_until 10 audit_agree_q 1 2 3
ovt_check "e. no reconnect under membership changes went undecided ($nfail)" \
    test "$nfail" = 0

# ---- f. a foreign certificate, a mismatched id ----------------------------

LEADER=$(leader_of 1 2 3)
LEASES_BEFORE=$(leases_of "${LEADER:-1}")
AUDIT_BEFORE=$(audit_head "${LEADER:-1}")
declare -A LINES=()
for n in 1 2 3; do
    LINES[$n]=$(wc -l <"$(ovt_gw_log "$n")")
done
OVT_GW_RAFT_ID=5 OVT_GW_RAFT_CA=$OVT_ROGUE_PKI/ca.crt \
    OVT_GW_RAFT_CERT=$OVT_ROGUE_PKI/node-5.crt \
    OVT_GW_RAFT_KEY=$OVT_ROGUE_PKI/node-5.key ovt_gw_config 5 false
ovt_gw_start 5
ovt_check "f. the foreign-CA node gw5 runs" ovt_wait_healthy 5 "$STEP"
r=$(timeout 60 "$OVHA_BIN/ovhactl" -t 50 -s "$(ovt_gw_sock "${LEADER:-1}")" \
    cluster join 5 198.18.0.5:7000 2>&1)
jrc=$?
ovt_diag "cluster join 5: rc $jrc: $(tr '\n' ' ' <<<"$r")"
sleep 3
a5=$(ovt_cs 5 last_applied)
tgt=$(ovt_cs "${LEADER:-1}" commit)
ovt_check "f. the join fails (rc $jrc) or gw5 never catches up (applied ${a5:-?} of $tgt)" \
    eval '[ "$jrc" != 0 ] || ! applied_at_least 5 "$tgt"'
ovt_check "f. gw5 never has the leases" \
    negate eval 'leases_of 5 | grep -q "^alice "'
rft_lines=""
for n in 1 2 3; do
    rft_lines+=$(tail -n "+$((LINES[$n] + 1))" "$(ovt_gw_log "$n")" |
        grep -E 'rft:.*(TLS|certificate|refused|unknown ca|198\.18\.0\.5)' |
        head -n 2)
done
ovt_check "f. the legit nodes log the TLS refusal (rft: lines)" test -n "$rft_lines"
printf '%s\n' "$rft_lines" | head -n 4 | cut -c1-200 | sed 's/^/#   /'
ovt_check "f. gw5 logs that the legit nodes refuse its CA" \
    grep -E -q 'rft: TLS handshake with .* failed: .*(unknown ca|certificate)' \
    "$(ovt_gw_log 5)"
# ovhad rolls a join back when the promotion fails: no spare is left.
m5=$(ovt_cs "${LEADER:-1}" members)
ovt_check "f. the failed join left no member 5 behind ($m5)" \
    negate grep -q '5:' <<<"$m5"
ovt_check "f. the join error says the member was removed again" \
    grep -q 'removed again' <<<"$r"
ovt_gw_kill 5 TERM
ovt_check "f. gw1-gw3 report exactly the members 1,2,3 (voters) and one leader" \
    ovt_wait_until "$STEP" eval '[ "$(ovt_members_agree 1 2 3)" = "1:voter,2:voter,3:voter" ] &&
        ovt__agreed_leader_q 1 2 3'
LEADER=$(leader_of 1 2 3)
ovt_check "f. the lease table is unchanged on every legit node" \
    eval '[ "$(leases_of 1)" = "$LEASES_BEFORE" ] &&
        [ "$(leases_of 2)" = "$LEASES_BEFORE" ] &&
        [ "$(leases_of 3)" = "$LEASES_BEFORE" ]'
# The operator's join attempt is itself audited (kind op:api, naming
# uid:0); nothing else may have been recorded meanwhile.
AUDIT_AFTER=$(audit_head "${LEADER:-1}")
SEQ_BEFORE=$(jq -r .seq <<<"$AUDIT_BEFORE" 2>/dev/null)
AUDIT_NEW=$(ovt_ctl "${LEADER:-1}" audit --json --after "${SEQ_BEFORE:-0}" \
    --limit 1000 2>/dev/null | jq -r '.records[] | "\(.kind) \(.actor) \(.subject)"')
if [ -n "$SEQ_BEFORE" ] && ! grep -v -q '^op:api uid:0 POST /v1/cluster/join$' \
    <<<"$AUDIT_NEW"; then
    ovt_ok "f. the audit chain gained only the operator's join attempt"
else
    ovt_diag "audit head before: $(tr '\n' ' ' <<<"$AUDIT_BEFORE")"
    ovt_diag "audit head after:  $(tr '\n' ' ' <<<"$AUDIT_AFTER")"
    ovt_diag "records since: $(tr '\n' ';' <<<"$AUDIT_NEW")"
    ovt_not_ok "f. the audit chain gained only the operator's join attempt"
fi

# Certificate for id 6, configured as raft id 5: refuses to start.
rm -rf "$(ovt_gw_dir 5)/raft" "$(ovt_gw_dir 5)/state"
OVT_GW_RAFT_ID=5 OVT_GW_RAFT_CERT=$OVT_RAFT_PKI/node-6.crt \
    OVT_GW_RAFT_KEY=$OVT_RAFT_PKI/node-6.key ovt_gw_config 5 false
MISLOG=$(ovt_gw_dir 5)/ovhad-mismatch.log
ip netns exec "$(ovt_ns gw5)" timeout 20 "$OVHA_BIN/ovhad" \
    -c "$(ovt_gw_dir 5)/ovhad.yaml" >"$MISLOG" 2>&1 </dev/null
mrc=$?
ovt_check "f. ovhad with a certificate for id 6 as raft id 5 exits non-zero (rc $mrc)" \
    eval '[ "$mrc" != 0 ] && [ "$mrc" != 124 ]'
ovt_check "f. ... saying 'certificate is for raft id 6, not 5'" \
    grep -q 'certificate is for raft id 6, not 5' "$MISLOG"
if ! grep -q 'certificate is for raft id 6, not 5' "$MISLOG"; then
    tail -n 5 "$MISLOG" | sed 's/^/#   /'
fi
ovt_check "f. ... and leaves no process in gw5" \
    ovt_wait_until 10 eval '[ -z "$(ip netns pids "$(ovt_ns gw5)")" ]'

# ---- g. clean stop -----------------------------------------------------------

for c in alice bob carol dave erin mallory; do
    ovt_client_stop "$c"
done
for n in 1 2 3; do
    ovt_gw_kill "$n" TERM
done
gone=1
for n in 1 2 3 4 5; do
    if ovt_gw_alive "$n"; then
        gone=0
    fi
done
ovt_check "g. every ovhad exited after SIGTERM" test "$gone" = 1
busy=""
for n in 1 2 3 4 5; do
    if ! ovt_wait_until 10 eval '[ -z "$(ip netns pids "$(ovt_ns gw'"$n"')")" ]'; then
        busy+=" gw$n"
    fi
done
ovt_check "g. no process left in any gateway namespace:${busy:- none}" \
    test -z "$busy"
ovt_cleanup
left=$(ovt_leftovers)
ovt_check "g. no namespace or process left after cleanup${left:+: $left}" \
    test -z "$left"
ovt_diag "runtime $((SECONDS - T0)) s"
