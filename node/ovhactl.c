/* ovhactl: the operator's CLI. It talks HTTP to one ovhad, over the node's
 * unix socket or over HTTPS to its TCP+TLS API listener (--server), with
 * an optional bearer token (--token-file), and prints the answers for
 * people, or raw with --json. The pieces live in ovhactl_*.c; see
 * ovhactl.h.
 *
 * Exit codes: 0 ok, 1 the operation failed or found nothing, 2 usage, 3 the
 * node cannot be reached (no socket, refused, TLS, timeout, not HTTP), 4
 * not authorized (401, 403), 5 unavailable (503: no raft leader).
 */
#include "node/ovhactl.h"

#include <curl/curl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

static const struct ovhactl_cmd ovhactl_cmds[] = {
    { "health", "", "show whether the node is up (GET /healthz)",
      "Asks the node for its health and prints its status (\"ok\" when it\n"
      "is serving) and any other facts it reports.\n"
      "Exit status: 0 healthy, 1 the node answered with an error, 3 the\n"
      "node cannot be reached.\n",
      ovhactl_cmd_health, false },
    { "ready", "", "show whether the node is ready to serve (GET /readyz)",
      "Ready means: openvpn runs, its management link is up, (clustered)\n"
      "raft has a leader and this node applied up to the commit index and\n"
      "admits clients, and the last enforcement passes were clean. Prints\n"
      "'ready', or 'not ready:' and the reasons.\n"
      "Exit status: 0 ready, 1 not ready, 3 the node cannot be reached.\n",
      ovhactl_cmd_ready, false },
    { "metrics", "", "the node's Prometheus metrics (GET /metrics)",
      "Prints the metrics in the Prometheus text format (0.0.4), as the\n"
      "node sent them (--json changes nothing). Needs the viewer role.\n",
      ovhactl_cmd_metrics, false },
    { "sessions", "[CN] | --cluster [CN] [--cn CN] [--gateway G] [--state S]",
      "list client sessions (GET /v1/sessions, /v1/cluster/sessions)",
      "Without --cluster: this gateway's live sessions, as openvpn reports\n"
      "them. With CN, only that client's sessions. One line per session:\n"
      "CN, CID (OpenVPN's client id), VPN IP, REAL ADDRESS, STATE, SINCE\n"
      "(UTC), and bytes IN and OUT.\n"
      "With --cluster: the replicated sessions of every gateway (this\n"
      "node's applied state; a follower may lag slightly): ID, CN, GATEWAY,\n"
      "CID, IP4, IP6, REAL ADDRESS, STATE (connecting, established,\n"
      "orphaned) and STARTED (UTC). Filters, combined with AND:\n"
      "  --cn CN       only CN's sessions (or give CN as the argument)\n"
      "  --gateway G   only gateway G's\n"
      "  --state S     only sessions in state S\n"
      "CNs holding spaces, quotes or control characters are printed quoted,\n"
      "with C-style escapes.\n",
      ovhactl_cmd_sessions, false },
    { "kill", "[-m TEXT] CN",
      "disconnect every session of CN (POST /v1/sessions/kill)",
      "Asks the node to kill every live session of the client whose\n"
      "certificate CN is exactly CN (quote it for the shell; put '--'\n"
      "before a CN that starts with '-').\n"
      "  -m, --message TEXT  tell the client why (OpenVPN's client-kill\n"
      "                      message, e.g. RESTART,... or HALT,...)\n"
      "Exit status: 0 sessions were killed, 1 no live session for CN.\n",
      ovhactl_cmd_kill, false },
    { "cluster status", "",
      "show raft membership and progress (GET /v1/cluster)",
      "Prints the term, the leader (id and raft address), the commit and\n"
      "applied indexes, this node's id and raft role, then one line per\n"
      "member: ID, ADDRESS and ROLE (voter, standby, spare); '*' marks the\n"
      "leader. Any node answers, leader or not.\n"
      "Exit status: 0 ok, 1 standalone node (no cluster section).\n",
      ovhactl_cmd_cluster_status, false },
    { "cluster join", "ID ADDRESS [--role R]",
      "add node ID at ADDRESS (POST /v1/cluster/join)",
      "Adds raft id ID, reachable at ADDRESS (a.b.c.d:port, its\n"
      "cluster.address), to the cluster. Run it against the leader. The\n"
      "node is added as a spare, then given its role; a voter is caught up\n"
      "with the log first, so this waits until the new node runs and\n"
      "answers (start it first, without bootstrap).\n"
      "  --role R  voter (default), standby or spare\n"
      "Exit status: 0 joined, 1 refused (not the leader: the leader's id\n"
      "and address are printed; another change in progress; duplicate id\n"
      "or address; the new node could not be caught up).\n",
      ovhactl_cmd_cluster_join, false },
    { "cluster remove", "ID", "remove node ID (POST /v1/cluster/remove)",
      "Removes raft id ID from the configuration. Run it against the\n"
      "leader. Removing the leader itself makes it step down once the\n"
      "change commits.\n"
      "Exit status: 0 removed, 1 refused or failed.\n",
      ovhactl_cmd_cluster_remove, false },
    { "cluster transfer", "[ID]",
      "hand leadership to ID (POST /v1/cluster/transfer)",
      "Asks the leader to hand over leadership to voter ID, or, without ID\n"
      "(or 0), to the most up-to-date voter, and waits until another node\n"
      "leads. Use it before stopping or removing the leader.\n"
      "Exit status: 0 transferred, 1 refused or not completed in time.\n",
      ovhactl_cmd_cluster_transfer, false },
    { "cluster assign", "ID ROLE",
      "change node ID's role (POST /v1/cluster/assign)",
      "Sets the raft role of member ID to ROLE: voter, standby or spare.\n"
      "A promotion to voter catches the node up first.\n"
      "Exit status: 0 done, 1 refused or failed.\n",
      ovhactl_cmd_cluster_assign, false },
    { "cluster gateways", "",
      "list the gateways the cluster knows (GET /v1/cluster/gateways)",
      "One line per gateway from the replicated state: ID, ADDRESS, STATE\n"
      "(active, standby, draining, down) and LAST SEEN (UTC, the time of\n"
      "its last heartbeat as replicated).\n",
      ovhactl_cmd_cluster_gateways, false },
    { "gateway drain", "G [--force]",
      "drain gateway G (POST /v1/gateways/drain)",
      "Marks gateway G draining through raft: G admits no new client and\n"
      "kills its clients with RESTART,[N], so they reconnect to their next\n"
      "remote and keep their addresses there. Refused when no other gateway\n"
      "is active, unless --force. Undo with 'gateway activate G'.\n",
      ovhactl_cmd_gateway_drain, false },
    { "gateway activate", "G",
      "make gateway G active (POST /v1/gateways/activate)",
      "Marks gateway G active through raft: it admits clients again.\n",
      ovhactl_cmd_gateway_activate, false },
    { "gateway standby", "G",
      "make gateway G a standby (POST /v1/gateways/standby)",
      "Marks gateway G standby through raft: it admits no new client (its\n"
      "connected clients stay) until 'gateway activate G'. A gateway with\n"
      "cluster.role: standby also switches itself between standby and\n"
      "active as others come and go. Needs the operator role.\n",
      ovhactl_cmd_gateway_standby, false },
    { "usage", "CN",
      "the CN's replicated byte usage this month (GET /v1/usage)",
      "Bytes in and out charged to CN in the current calendar month (UTC)\n"
      "across every gateway, and its quota (0 = none), from this node's\n"
      "applied state.\n",
      ovhactl_cmd_cn_usage, false },
    { "failover", "",
      "this node's fencing and failover counters (GET /v1/failover)",
      "Whether this node is fenced (no raft leader for longer than\n"
      "cluster.fence_timeout_ms), why it refuses new clients if it does,\n"
      "and counters: fences, clients killed while fenced or draining,\n"
      "gateways it marked down as leader, standby role changes.\n",
      ovhactl_cmd_failover, false },
    { "policy show", "",
      "the replicated firewall policy (GET /v1/policy/firewall)",
      "Prints the firewall policy document (docs/firewall.md). Exit status\n"
      "1 when there is none (nothing is filtered).\n",
      ovhactl_cmd_policy_show, false },
    { "policy apply", "FILE",
      "replace the firewall policy (PUT /v1/policy/firewall)",
      "Checks FILE (a JSON policy document) and replicates it; every\n"
      "gateway applies it to its live clients without reconnecting them.\n"
      "A bad document is refused with the JSON path of the problem and\n"
      "nothing changes. Exit status: 0 committed, 1 refused or failed.\n",
      ovhactl_cmd_policy_apply, false },
    { "policy delete", "",
      "remove the firewall policy (DELETE /v1/policy/firewall)",
      "Deletes the replicated policy: every gateway removes its table.\n",
      ovhactl_cmd_policy_delete, false },
    { "policy explain", "SRC DST PROTO [PORT]",
      "which rule decides a connection (POST /v1/policy/firewall/explain)",
      "Prints accept or drop for the first packet from SRC to DST (PROTO\n"
      "tcp, udp, icmp or any) and what decides it: 'rule NAME',\n"
      "'isolation', 'default' or 'not from a client'.\n",
      ovhactl_cmd_policy_explain, false },
    { "policy compiled", "",
      "this gateway's nftables table (GET /v1/policy/firewall/compiled)",
      "Prints the table as the kernel listed it after the last change,\n"
      "then the reconciler's counters as '# key: value' lines.\n",
      ovhactl_cmd_policy_compiled, false },
    { "macs", "", "the replicated MAC map of bridged clients (GET /v1/macs)",
      "Every client MAC openvpn learned on a tap gateway, with its CN,\n"
      "session and gateway, from this node's applied state. Each gateway's\n"
      "bridge points these MACs at its tap device or its uplink.\n",
      ovhactl_cmd_macs, false },
    { "upstream", "",
      "show the upstream API and cache tier counters (GET /v1/upstream)",
      "Prints the decision tiers' counters: lookups, hits per tier (memory,\n"
      "redis), upstream requests, answers and failures, malformed answers,\n"
      "deadline cuts, fallback answers (memory, file) and fallback denies,\n"
      "the breaker state, whether Redis is connected, and the upstream\n"
      "latency (sum, count, cumulative buckets). See docs/upstream.md.\n"
      "Exit status: 0, 1 when the node has no upstream configured, 3 when\n"
      "the node cannot be reached.\n",
      ovhactl_cmd_upstream, false },
    { "leases", "[CN]", "list the replicated address leases (GET /v1/leases)",
      "One line per lease, or only CN's: IP, POOL, CN, RESERVED (an\n"
      "operator reservation), SESSION (the session holding it, '-' when\n"
      "idle) and EXPIRES (UTC; '-' while held or reserved). Read from this\n"
      "node's applied state; a follower may lag slightly.\n",
      ovhactl_cmd_leases, false },
    { "lease reserve", "CN IP",
      "reserve address IP for CN (POST /v1/leases/reserve)",
      "Reserves IP (inside a pool) for the client CN through raft: CN gets\n"
      "it at its next connection and nobody else may take it. Needs the\n"
      "operator role.\n"
      "Exit status: 0 reserved, 1 refused (the reason is printed: outside\n"
      "every pool, held by another CN...), 5 no raft leader.\n",
      ovhactl_cmd_lease_reserve, false },
    { "lease release", "CN IP",
      "drop CN's lease or reservation of IP (POST /v1/leases/release)",
      "Releases IP from CN through raft, reservation included; a live\n"
      "session keeps its address until it reconnects. Needs the operator\n"
      "role.\n"
      "Exit status: 0 released, 1 refused, 5 no raft leader.\n",
      ovhactl_cmd_lease_release, false },
    { "pools", "", "list the address pools (GET /v1/pools)",
      "One line per pool: NAME, CIDR, SIZE (addresses), LEASES (held) and\n"
      "LEASE TTL (ms: how long an idle lease is kept for its CN), from\n"
      "this node's applied state.\n",
      ovhactl_cmd_pools, false },
    { "pool put", "NAME CIDR [--ttl-ms N]",
      "create or change a pool (PUT /v1/pools)",
      "Creates pool NAME over CIDR, or changes it, through raft. Needs the\n"
      "admin role.\n"
      "  --ttl-ms N  keep an idle lease N ms for its CN (1 .. 2^40).\n"
      "              Without it the FSM's default applies, also to an\n"
      "              existing pool.\n"
      "Exit status: 0 committed, 1 refused (a bad CIDR, an overlap with\n"
      "another pool, a new range for a pool that has leases), 5 no raft\n"
      "leader.\n",
      ovhactl_cmd_pool_put, false },
    { "subnets", "[CN]", "list the site clients' subnets (GET /v1/subnets)",
      "One line per registered client subnet (iroute), or only CN's: CIDR\n"
      "and OWNER CN, from this node's applied state.\n",
      ovhactl_cmd_subnets, false },
    { "subnet release", "CIDR",
      "release a client subnet (POST /v1/subnets/release)",
      "Drops the claim on CIDR through raft, so another CN may announce\n"
      "it. Needs the admin role.\n"
      "Exit status: 0 released, 1 unknown or refused, 5 no raft leader.\n",
      ovhactl_cmd_subnet_release, false },
    { "audit", "[--after SEQ] [--limit N]",
      "list audit records (GET /v1/audit)",
      "One line per record of the replicated audit chain, oldest first:\n"
      "SEQ, TIME (UTC), KIND, ACTOR (token:NAME, cert:CN, uid:N...),\n"
      "SUBJECT and DETAIL. --json adds each record's hash.\n"
      "  --after SEQ  only records after SEQ (page on from the last seq)\n"
      "  --limit N    at most N records (1..1000, default 100)\n"
      "A last line says how to read on when more records follow.\n"
      "See also 'audit head' and 'audit verify'.\n",
      ovhactl_cmd_audit, false },
    { "audit head", "", "show and verify the audit chain (GET /v1/audit/head)",
      "Prints the sequence number and hash of the last audit record and\n"
      "whether the whole chain verified on this node.\n"
      "Exit status: 0 verified, 1 a record does not verify (its seq is\n"
      "printed) or the request failed.\n",
      ovhactl_cmd_audit_head, false },
    { "audit verify", "", "verify the whole audit chain (GET /v1/audit/verify)",
      "Recomputes the hash chain over every kept record on this node.\n"
      "Exit status: 0 verified (seq range printed), 1 broken (the first\n"
      "bad seq and why are printed; --json prints the node's verdict).\n",
      ovhactl_cmd_audit_verify, false },
    { "pki init", "DIR", "create the cluster CA in DIR (runs pki.sh)",
      "Runs 'pki.sh init DIR': creates ca.key and ca.crt (EC P-256) in DIR,\n"
      "made 0700, and keeps an existing CA. pki.sh is found through\n"
      "$OVHA_PKI_SH, else ../../deploy/pki.sh from ovhactl's directory (a\n"
      "build tree), else /usr/share/ovha/pki.sh. Needs no node.\n"
      "See docs/pki.md.\n",
      ovhactl_cmd_pki_init, true },
    { "pki issue-node", "DIR ID [ADDR]",
      "issue node ID's raft certificate (runs pki.sh)",
      "Runs 'pki.sh issue-node DIR ID [ADDR]': writes node-ID.key and\n"
      "node-ID.crt signed by DIR's CA, with the subjectAltName\n"
      "URI:ovha:node:ID that binds the raft id; ADDR's host is added as an\n"
      "IP or DNS name for humans. Keeps valid existing files.\n"
      "See docs/pki.md.\n",
      ovhactl_cmd_pki_issue, true },
    { "token new", "SUBJECT ROLE",
      "make an API bearer token (local; needs no node)",
      "Makes a token from 32 random bytes (getrandom): 'ovha_' and 64 hex\n"
      "digits. Prints the token on line 1 and, on line 2, the line to add\n"
      "to the node's api.tokens_file, which holds only its SHA-256:\n"
      "  token SUBJECT ROLE sha256:HEX\n"
      "SUBJECT: 1 to 64 of A-Z a-z 0-9 . _ @ - (requests are audited as\n"
      "token:SUBJECT). ROLE: viewer (reads), operator (kill, drain,\n"
      "activate, standby, leases) or admin (everything).\n"
      "Keep the token in a file only you can read (chmod 600) and pass it\n"
      "with --token-file. With --json: {token, subject, role, sha256}.\n",
      ovhactl_cmd_token_new, true },
};

#define OVHACTL_NCMDS (sizeof(ovhactl_cmds) / sizeof(ovhactl_cmds[0]))

static void ovhactl_usage(FILE *f)
{
    fprintf(f,
            "Usage: ovhactl [OPTIONS] COMMAND [ARGS]\n"
            "       ovhactl help [COMMAND]\n"
            "\n"
            "Talks to one ovhad node over its unix socket, or over HTTPS with\n"
            "--server.\n"
            "\n"
            "Commands:\n");
    for (size_t i = 0; i < OVHACTL_NCMDS; i++) {
        char left[96];
        snprintf(left, sizeof(left), "%s %s", ovhactl_cmds[i].name,
                 ovhactl_cmds[i].args);
        if (strlen(left) > 24) {
            fprintf(f, "  %s\n  %-24s %s\n", left, "", ovhactl_cmds[i].summary);
        } else {
            fprintf(f, "  %-24s %s\n", left, ovhactl_cmds[i].summary);
        }
    }
    fprintf(f,
            "\n"
            "Options:\n"
            "  -s, --socket PATH     the node's socket (default $OVHA_SOCKET, "
            "else\n"
            "                        " OVHACTL_DEFAULT_SOCKET
            ")\n"
            "      --server URL      talk HTTPS to https://HOST:PORT (the "
            "node's\n"
            "                        api.listen) instead of the socket\n"
            "      --token-file F    send the token on F's first line as\n"
            "                        'Authorization: Bearer' (default\n"
            "                        $OVHA_TOKEN_FILE); F must be mode 0600 "
            "or\n"
            "                        stricter\n"
            "      --cacert F        verify the server's certificate with "
            "CA F\n"
            "                        (default: the system's CAs)\n"
            "      --cert F --key F  present this TLS client certificate\n"
            "      --json            print the node's raw JSON answer\n"
            "  -t, --timeout SEC     give up after SEC seconds (default 10)\n"
            "  -h, --help            show this help, or a command's with\n"
            "                        'ovhactl COMMAND --help'\n"
            "\n"
            "Exit status: 0 ok, 1 operation failed or not found, 2 usage "
            "error,\n"
            "3 cannot reach the node, 4 not authorized (HTTP 401/403), 5 "
            "the node\n"
            "is unavailable (HTTP 503: no raft leader; retry later).\n");
}

static void ovhactl_cmd_usage(const struct ovhactl_cmd *c)
{
    printf("Usage: ovhactl [OPTIONS] %s%s%s\n\n%s\n%s\n", c->name,
           *c->args ? " " : "", c->args, c->summary, c->help);
    if (c->local) {
        return;
    }
    printf(
        "Options: -s/--socket PATH or --server URL, --token-file F, "
        "--json,\n-t/--timeout SEC (see 'ovhactl --help').\n");
    /* Commands that explain their own exit status only get the rest. */
    printf("%s", strstr(c->help, "Exit status") != NULL
                     ? "Also: 2 usage, 3 unreachable, 4 not authorized, 5 "
                       "unavailable (no raft leader).\n"
                     : "Exit status: 0 ok, 1 failed, 2 usage, 3 unreachable, "
                       "4 not authorized,\n5 unavailable (no raft "
                       "leader).\n");
}

/* Matches two words ("audit head") first, then one ("audit"); *ret_words
 * says how many arguments the name took. */
static const struct ovhactl_cmd *ovhactl_find(int argc,
                                              char **argv,
                                              int *ret_words)
{
    for (size_t i = 0; i < OVHACTL_NCMDS && argc >= 2; i++) {
        const char *name = ovhactl_cmds[i].name;
        const char *sp = strchr(name, ' ');
        if (sp != NULL && strncmp(name, argv[0], (size_t)(sp - name)) == 0 &&
            argv[0][sp - name] == '\0' && strcmp(sp + 1, argv[1]) == 0) {
            *ret_words = 2;
            return &ovhactl_cmds[i];
        }
    }
    for (size_t i = 0; i < OVHACTL_NCMDS; i++) {
        if (strcmp(ovhactl_cmds[i].name, argv[0]) == 0) {
            *ret_words = 1;
            return &ovhactl_cmds[i];
        }
    }
    return NULL;
}

/* Is word the first half of a two-word command ("cluster")? */
static bool ovhactl_is_group(const char *word)
{
    size_t n = strlen(word);
    for (size_t i = 0; i < OVHACTL_NCMDS; i++) {
        const char *name = ovhactl_cmds[i].name;
        if (strncmp(name, word, n) == 0 && name[n] == ' ') {
            return true;
        }
    }
    return false;
}

/* "ovhactl cluster --help": the group's commands. */
static void ovhactl_group_usage(FILE *f, const char *word)
{
    size_t n = strlen(word);
    fprintf(f, "Commands of '%s' (see 'ovhactl help %s SUBCOMMAND'):\n", word,
            word);
    for (size_t i = 0; i < OVHACTL_NCMDS; i++) {
        const char *name = ovhactl_cmds[i].name;
        if (strncmp(name, word, n) == 0 && (name[n] == ' ' || name[n] == 0)) {
            fprintf(f, "  %s%s%s\n      %s\n", name,
                    *ovhactl_cmds[i].args != '\0' ? " " : "",
                    ovhactl_cmds[i].args, ovhactl_cmds[i].summary);
        }
    }
}

/* Reports a command that is not in the table. */
static int ovhactl_unknown(int argc, char **argv)
{
    char esc[256], esc2[256];
    if (ovhactl_is_group(argv[0])) {
        ovhactl_err(
            "unknown or missing subcommand %s %s (see 'ovhactl %s --help')",
            ovhactl_escape(argv[0], true, esc, sizeof(esc)),
            argc > 1 ? ovhactl_escape(argv[1], true, esc2, sizeof(esc2)) : "",
            esc);
    } else {
        ovhactl_err("unknown command %s (see 'ovhactl --help')",
                    ovhactl_escape(argv[0], true, esc, sizeof(esc)));
    }
    return OVHACTL_USAGE;
}

/* "ovhactl help [COMMAND]", or "ovhactl [COMMAND] --help". */
static int ovhactl_help(int argc, char **argv)
{
    const struct ovhactl_cmd *cmd;
    int words = 0;

    if (argc == 0) {
        ovhactl_usage(stdout);
        return OVHACTL_OK;
    }
    cmd = ovhactl_find(argc, argv, &words);
    if (cmd != NULL &&
        (words == 2 || argc == 1 || !ovhactl_is_group(argv[0]))) {
        ovhactl_cmd_usage(cmd);
        return OVHACTL_OK;
    }
    if (ovhactl_is_group(argv[0]) && argc == 1) {
        ovhactl_group_usage(stdout, argv[0]);
        return OVHACTL_OK;
    }
    return ovhactl_unknown(argc, argv);
}

/* Options that belong to some commands only. */
static int ovhactl_check_opts(const struct ovhactl *ctl,
                              const struct ovhactl_cmd *cmd)
{
    static const struct {
        const char *what, *cmds;
        bool given;
    } only[] = {
        { "--role", "|cluster join|", false },
        { "--cluster, --cn, --gateway and --state", "|sessions|", false },
        { "--message", "|kill|", false },
        { "--force", "|gateway drain|", false },
        { "--ttl-ms", "|pool put|", false },
        { "--after and --limit", "|audit|", false },
    };
    bool given[] = {
        ctl->role != NULL,
        ctl->cluster || ctl->gateway != NULL || ctl->cn != NULL ||
            ctl->state != NULL,
        ctl->message != NULL,
        ctl->force,
        ctl->ttl_ms >= 0,
        ctl->after >= 0 || ctl->limit >= 0,
    };
    char bar[64];

    snprintf(bar, sizeof(bar), "|%s|", cmd->name);
    for (size_t i = 0; i < sizeof(only) / sizeof(only[0]); i++) {
        if (given[i] && strstr(only[i].cmds, bar) == NULL) {
            ovhactl_err("%s only go%s with '%.*s'", only[i].what,
                        strchr(only[i].what, ' ') != NULL ? "" : "es",
                        (int)strlen(only[i].cmds) - 2, only[i].cmds + 1);
            return OVHACTL_USAGE;
        }
    }
    return 0;
}

/* --server, --cacert, --cert, --key go together; --socket does not. */
static int ovhactl_check_transport(struct ovhactl *ctl, bool socket_given)
{
    if (ctl->server == NULL) {
        if (ctl->cacert != NULL || ctl->cert != NULL || ctl->key != NULL) {
            ovhactl_err("--cacert, --cert and --key go with --server");
            return OVHACTL_USAGE;
        }
        return 0;
    }
    if (socket_given) {
        ovhactl_err("--socket and --server exclude each other");
        return OVHACTL_USAGE;
    }
    if ((ctl->cert == NULL) != (ctl->key == NULL)) {
        ovhactl_err("--cert and --key go together");
        return OVHACTL_USAGE;
    }
    return ovhactl_server_url(ctl->server, &ctl->server);
}

/* Parses a number option into *ret (min..max). */
static int ovhactl_opt_num(const char *name,
                           const char *arg,
                           uint64_t min,
                           uint64_t max,
                           int64_t *ret)
{
    uint64_t v;
    if (ovha_parse_u64(arg, max, &v) != 0 || v < min) {
        char esc[128];
        ovhactl_err("--%s wants %" PRIu64 "..%" PRIu64 ", not %s", name, min,
                    max, ovhactl_escape(arg, true, esc, sizeof(esc)));
        return OVHACTL_USAGE;
    }
    *ret = (int64_t)v;
    return 0;
}

enum {
    OVHACTL_OPT_SERVER = 256,
    OVHACTL_OPT_TOKEN_FILE,
    OVHACTL_OPT_CACERT,
    OVHACTL_OPT_CERT,
    OVHACTL_OPT_KEY,
    OVHACTL_OPT_TTL_MS,
    OVHACTL_OPT_AFTER,
    OVHACTL_OPT_LIMIT,
    OVHACTL_OPT_CN,
    OVHACTL_OPT_STATE,
};

/* Options may come before or after the command (GNU permutation). Returns
 * 0, or the exit code after printing why. */
static int ovhactl_parse_opts(struct ovhactl *ctl,
                              int argc,
                              char **argv,
                              bool *ret_help,
                              bool *ret_socket_given)
{
    static const struct option opts[] = {
        { "socket", required_argument, NULL, 's' },
        { "json", no_argument, NULL, 'j' },
        { "timeout", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { "message", required_argument, NULL, 'm' },
        { "role", required_argument, NULL, 'r' },
        { "cluster", no_argument, NULL, 'c' },
        { "gateway", required_argument, NULL, 'g' },
        { "force", no_argument, NULL, 'f' },
        { "server", required_argument, NULL, OVHACTL_OPT_SERVER },
        { "token-file", required_argument, NULL, OVHACTL_OPT_TOKEN_FILE },
        { "cacert", required_argument, NULL, OVHACTL_OPT_CACERT },
        { "cert", required_argument, NULL, OVHACTL_OPT_CERT },
        { "key", required_argument, NULL, OVHACTL_OPT_KEY },
        { "ttl-ms", required_argument, NULL, OVHACTL_OPT_TTL_MS },
        { "after", required_argument, NULL, OVHACTL_OPT_AFTER },
        { "limit", required_argument, NULL, OVHACTL_OPT_LIMIT },
        { "cn", required_argument, NULL, OVHACTL_OPT_CN },
        { "state", required_argument, NULL, OVHACTL_OPT_STATE },
        { NULL, 0, NULL, 0 },
    };
    int64_t secs;
    int opt, rv = 0;

    opterr = 0;
    while (rv == 0 &&
           (opt = getopt_long(argc, argv, "s:t:hm:r:cg:f", opts, NULL)) != -1) {
        switch (opt) {
        case 's':
            ctl->socket = optarg;
            *ret_socket_given = true;
            break;
        case 'j':
            ctl->json = true;
            break;
        case 't':
            rv = ovhactl_opt_num("timeout", optarg, 1, 3600, &secs);
            if (rv == 0) {
                ctl->timeout_ms = (long)secs * 1000;
            }
            break;
        case 'h':
            *ret_help = true;
            break;
        case 'm':
            ctl->message = optarg;
            break;
        case 'r':
            ctl->role = optarg;
            break;
        case 'c':
            ctl->cluster = true;
            break;
        case 'g':
            ctl->gateway = optarg;
            break;
        case 'f':
            ctl->force = true;
            break;
        case OVHACTL_OPT_SERVER:
            ctl->server = optarg;
            break;
        case OVHACTL_OPT_TOKEN_FILE:
            ctl->token_file = optarg;
            break;
        case OVHACTL_OPT_CACERT:
            ctl->cacert = optarg;
            break;
        case OVHACTL_OPT_CERT:
            ctl->cert = optarg;
            break;
        case OVHACTL_OPT_KEY:
            ctl->key = optarg;
            break;
        case OVHACTL_OPT_TTL_MS:
            rv = ovhactl_opt_num("ttl-ms", optarg, 1, UINT64_C(1) << 40,
                                 &ctl->ttl_ms);
            break;
        case OVHACTL_OPT_AFTER:
            rv = ovhactl_opt_num("after", optarg, 0, INT64_MAX, &ctl->after);
            break;
        case OVHACTL_OPT_LIMIT:
            rv = ovhactl_opt_num("limit", optarg, 1, 1000, &ctl->limit);
            break;
        case OVHACTL_OPT_CN:
            ctl->cn = optarg;
            break;
        case OVHACTL_OPT_STATE:
            ctl->state = optarg;
            break;
        default:
            ovhactl_err(
                "unknown or incomplete option '%s' (see 'ovhactl "
                "--help')",
                argv[optind - 1]);
            rv = OVHACTL_USAGE;
        }
    }
    return rv;
}

/* Reads the token, when one is configured, for a command that talks to
 * the node. */
static int ovhactl_load_token(struct ovhactl *ctl)
{
    if (ctl->token_file == NULL || *ctl->token_file == '\0') {
        return 0;
    }
    return ovhactl_token_load(ctl->token_file, &ctl->token);
}

int main(int argc, char **argv)
{
    struct ovhactl ctl = { .socket = getenv("OVHA_SOCKET"),
                           .token_file = getenv("OVHA_TOKEN_FILE"),
                           .timeout_ms = 10000,
                           .ttl_ms = -1,
                           .after = -1,
                           .limit = -1 };
    const struct ovhactl_cmd *cmd;
    bool help = false, socket_given = false;
    int rv, words = 1;

    if (ctl.socket == NULL || *ctl.socket == '\0') {
        ctl.socket = OVHACTL_DEFAULT_SOCKET;
    }
    rv = ovhactl_parse_opts(&ctl, argc, argv, &help, &socket_given);
    if (rv != 0) {
        return rv;
    }
    if (optind >= argc) {
        if (help) {
            ovhactl_usage(stdout);
            return OVHACTL_OK;
        }
        ovhactl_usage(stderr);
        return OVHACTL_USAGE;
    }
    if (strcmp(argv[optind], "help") == 0) {
        return ovhactl_help(argc - optind - 1, argv + optind + 1);
    }
    if (help) {
        return ovhactl_help(argc - optind, argv + optind);
    }
    cmd = ovhactl_find(argc - optind, argv + optind, &words);
    if (cmd == NULL) {
        return ovhactl_unknown(argc - optind, argv + optind);
    }
    rv = ovhactl_check_opts(&ctl, cmd);
    if (rv == 0 && !cmd->local) {
        rv = ovhactl_check_transport(&ctl, socket_given);
    }
    if (rv == 0 && !cmd->local) {
        rv = ovhactl_load_token(&ctl);
    }
    if (rv != 0) {
        return rv;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        ovhactl_err("cannot initialise libcurl");
        ovhactl_token_free(ctl.token);
        return OVHACTL_UNREACHABLE;
    }
    rv = cmd->run(&ctl, argc - optind - words, argv + optind + words);
    curl_global_cleanup();
    ovhactl_token_free(ctl.token);
    fflush(stdout);
    return rv;
}
