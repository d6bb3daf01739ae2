/* ovhactl commands of the node's original API: health, local and
 * replicated sessions, kill, cluster membership, gateways, usage,
 * failover, firewall policy, MACs, leases, the audit head, and the pki.sh
 * wrappers. */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "node/ovhactl.h"
#include "proto/proto.h"

int ovhactl_cmd_health(struct ovhactl *ctl, int argc, char **argv)
{
    json_t *j = NULL, *v;
    const char *key;
    char esc[512];
    int rv;

    (void)argv;
    if (argc != 0) {
        ovhactl_err("health takes no arguments (see 'ovhactl health --help')");
        return OVHACTL_USAGE;
    }
    rv = ovhactl_call(ctl, "GET", "/healthz", NULL, &j);
    if (rv != 0) {
        return rv;
    }
    if (!ctl->json) {
        const char *status = json_string_value(json_object_get(j, "status"));
        printf("status: %s\n",
               status != NULL ? ovhactl_escape(status, true, esc, sizeof(esc))
                              : "(missing)");
        json_object_foreach(j, key, v)
        {
            if (strcmp(key, "status") != 0) {
                ovhactl_print_field("", key, v);
            }
        }
    }
    json_decref(j);
    return OVHACTL_OK;
}

int ovhactl_cmd_upstream(struct ovhactl *ctl, int argc, char **argv)
{
    (void)argv;
    if (argc != 0) {
        ovhactl_err("upstream takes no arguments");
        return OVHACTL_USAGE;
    }
    return ovhactl_show(ctl, "/v1/upstream");
}

struct ovhactl_row {
    char cn[1100], cid[24], vpn_ip[64], real[128], state[64], since[32];
    char in[24], out[24];
};

static void ovhactl_row_fill(json_t *s, struct ovhactl_row *r)
{
    json_t *since = json_object_get(s, "connected_since");
    ovhactl_str_field(s, "cn", true, r->cn, sizeof(r->cn));
    ovhactl_int_field(s, "cid", r->cid, sizeof(r->cid));
    ovhactl_str_field(s, "vpn_ip", true, r->vpn_ip, sizeof(r->vpn_ip));
    ovhactl_str_field(s, "real_address", true, r->real, sizeof(r->real));
    ovhactl_str_field(s, "state", true, r->state, sizeof(r->state));
    ovhactl_int_field(s, "bytes_in", r->in, sizeof(r->in));
    ovhactl_int_field(s, "bytes_out", r->out, sizeof(r->out));
    snprintf(r->since, sizeof(r->since), "-");
    if (json_is_integer(since) && json_integer_value(since) > 0) {
        time_t t = (time_t)json_integer_value(since);
        struct tm tm;
        if (gmtime_r(&t, &tm) != NULL) {
            strftime(r->since, sizeof(r->since), "%Y-%m-%dT%H:%M:%SZ", &tm);
        }
    }
}

static int ovhactl_sessions_cluster(struct ovhactl *ctl, int argc, char **argv);

int ovhactl_cmd_sessions(struct ovhactl *ctl, int argc, char **argv)
{
    static const char *const heads[] = { "CN",           "CID",   "VPN IP",
                                         "REAL ADDRESS", "STATE", "SINCE",
                                         "IN",           "OUT" };
    json_t *j = NULL, *list, *s;
    struct ovhactl_row *rows;
    size_t n, i, w[8];
    int rv;

    char path[1200] = "/v1/sessions";

    if (ctl->cluster) {
        return ovhactl_sessions_cluster(ctl, argc, argv);
    }
    if (ctl->gateway != NULL || ctl->cn != NULL || ctl->state != NULL) {
        ovhactl_err("--gateway, --cn and --state go with --cluster");
        return OVHACTL_USAGE;
    }
    if (argc > 1) {
        ovhactl_err(
            "sessions takes at most one CN (see 'ovhactl sessions "
            "--help')");
        return OVHACTL_USAGE;
    }
    if (argc == 1) {
        char *q = curl_easy_escape(NULL, argv[0], 0);
        if (q == NULL || strlen(q) > 1000) {
            curl_free(q);
            ovhactl_err("CN too long");
            return OVHACTL_USAGE;
        }
        snprintf(path, sizeof(path), "/v1/sessions?cn=%s", q);
        curl_free(q);
    }
    rv = ovhactl_call(ctl, "GET", path, NULL, &j);
    if (rv != 0 || ctl->json) {
        json_decref(j);
        return rv;
    }
    list = json_object_get(j, "sessions");
    if (!json_is_array(list)) {
        ovhactl_err("the node's answer has no \"sessions\" list");
        json_decref(j);
        return OVHACTL_UNREACHABLE;
    }
    n = json_array_size(list);
    rows = calloc(n + 1, sizeof(*rows));
    if (rows == NULL) {
        json_decref(j);
        ovhactl_err("out of memory");
        return OVHACTL_FAILED;
    }
    for (i = 0; i < 8; i++) {
        w[i] = strlen(heads[i]);
    }
    json_array_foreach(list, i, s)
    {
        struct ovhactl_row *r = &rows[i];
        const char *cols[8];
        ovhactl_row_fill(s, r);
        cols[0] = r->cn, cols[1] = r->cid, cols[2] = r->vpn_ip;
        cols[3] = r->real, cols[4] = r->state, cols[5] = r->since;
        cols[6] = r->in, cols[7] = r->out;
        for (size_t c = 0; c < 8; c++) {
            if (strlen(cols[c]) > w[c]) {
                w[c] = strlen(cols[c]);
            }
        }
    }
    printf("%-*s  %*s  %-*s  %-*s  %-*s  %-*s  %*s  %*s\n", (int)w[0], heads[0],
           (int)w[1], heads[1], (int)w[2], heads[2], (int)w[3], heads[3],
           (int)w[4], heads[4], (int)w[5], heads[5], (int)w[6], heads[6],
           (int)w[7], heads[7]);
    for (i = 0; i < n; i++) {
        const struct ovhactl_row *r = &rows[i];
        printf("%-*s  %*s  %-*s  %-*s  %-*s  %-*s  %*s  %*s\n", (int)w[0],
               r->cn, (int)w[1], r->cid, (int)w[2], r->vpn_ip, (int)w[3],
               r->real, (int)w[4], r->state, (int)w[5], r->since, (int)w[6],
               r->in, (int)w[7], r->out);
    }
    free(rows);
    json_decref(j);
    return OVHACTL_OK;
}

int ovhactl_cmd_kill(struct ovhactl *ctl, int argc, char **argv)
{
    json_t *req, *j = NULL;
    char *body, esc[1100];
    json_int_t killed;
    int rv;

    if (argc != 1) {
        ovhactl_err("kill needs exactly one CN (see 'ovhactl kill --help')");
        return OVHACTL_USAGE;
    }
    /* jansson refuses strings that are not UTF-8, as the API would. */
    req = ctl->message != NULL
              ? json_pack("{s:s, s:s}", "cn", argv[0], "message", ctl->message)
              : json_pack("{s:s}", "cn", argv[0]);
    if (req == NULL) {
        ovhactl_err("the CN and the message must be valid UTF-8");
        return OVHACTL_USAGE;
    }
    body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (body == NULL) {
        ovhactl_err("out of memory");
        return OVHACTL_FAILED;
    }
    rv = ovhactl_call(ctl, "POST", "/v1/sessions/kill", body, &j);
    free(body);
    if (rv != 0 || ctl->json) {
        json_decref(j);
        return rv;
    }
    killed = json_integer_value(json_object_get(j, "killed"));
    json_int_t far = json_integer_value(json_object_get(j, "ended_elsewhere"));
    if (far > 0) {
        /* Sessions on other gateways: ended through raft; the gateway
         * holding the client kills it within a reconcile pass. */
        printf("ended %" JSON_INTEGER_FORMAT
               " session%s of %s on other "
               "gateways (their clients are killed there)\n",
               far, far == 1 ? "" : "s",
               ovhactl_escape(argv[0], true, esc, sizeof(esc)));
    } else {
        printf("killed %" JSON_INTEGER_FORMAT " session%s of %s\n", killed,
               killed == 1 ? "" : "s",
               ovhactl_escape(argv[0], true, esc, sizeof(esc)));
    }
    json_decref(j);
    return killed > 0 || far > 0 ? OVHACTL_OK : OVHACTL_FAILED;
}

/* A raft id argument: 1 .. 2^63-1 (what the API's JSON carries). */
static int ovhactl_parse_id(const char *s, bool zero_ok, uint64_t *ret)
{
    uint64_t v;
    if (ovha_parse_u64(s, INT64_MAX, &v) != 0 || (v == 0 && !zero_ok)) {
        char esc[64];
        ovhactl_err("'%s' is not a raft id (1 .. 9223372036854775807)",
                    ovhactl_escape(s, false, esc, sizeof(esc)));
        return OVHACTL_USAGE;
    }
    *ret = v;
    return 0;
}

static bool ovhactl_role_ok(const char *role)
{
    return strcmp(role, "voter") == 0 || strcmp(role, "standby") == 0 ||
           strcmp(role, "spare") == 0;
}

/* ---- cluster commands ---------------------------------------------------- */

int ovhactl_cmd_cluster_status(struct ovhactl *ctl, int argc, char **argv)
{
    static const char *const heads[] = { "", "ID", "ADDRESS", "ROLE" };
    struct ovhactl_table t = { .ncols = 4, .heads = heads, .align = "lrll" };
    char leader[24], term[24], commit[24], applied[24], addr[128];
    char laddr[128], role[64], sid[24], srole[64], self[24];
    json_t *j = NULL, *list, *srv;
    json_int_t lid;
    size_t i;
    int rv;

    (void)argv;
    if (argc != 0) {
        ovhactl_err("cluster status takes no arguments");
        return OVHACTL_USAGE;
    }
    rv = ovhactl_call(ctl, "GET", "/v1/cluster", NULL, &j);
    if (rv != 0 || ctl->json) {
        json_decref(j);
        return rv;
    }
    list = ovhactl_list(j, "servers");
    if (list == NULL) {
        json_decref(j);
        return OVHACTL_UNREACHABLE;
    }
    lid = json_integer_value(json_object_get(j, "leader_id"));
    ovhactl_int_field(j, "id", self, sizeof(self));
    ovhactl_str_field(j, "role", true, role, sizeof(role));
    ovhactl_int_field(j, "term", term, sizeof(term));
    ovhactl_int_field(j, "leader_id", leader, sizeof(leader));
    ovhactl_str_field(j, "leader_address", true, laddr, sizeof(laddr));
    ovhactl_int_field(j, "commit_index", commit, sizeof(commit));
    ovhactl_int_field(j, "last_applied", applied, sizeof(applied));
    if (lid > 0) {
        printf("term %s  leader %s (%s)  commit %s  applied %s\n", term, leader,
               laddr, commit, applied);
    } else {
        printf("term %s  leader none  commit %s  applied %s\n", term, commit,
               applied);
    }
    printf("this node: %s, %s%s\n", self, role,
           json_is_true(json_object_get(j, "ready")) ? ", ready" : "");
    json_array_foreach(list, i, srv)
    {
        json_int_t sidv = json_integer_value(json_object_get(srv, "id"));
        const char *cols[4] = { lid > 0 && sidv == lid ? "*" : "", sid, addr,
                                srole };
        ovhactl_int_field(srv, "id", sid, sizeof(sid));
        ovhactl_str_field(srv, "address", true, addr, sizeof(addr));
        ovhactl_str_field(srv, "role", true, srole, sizeof(srole));
        if (ovhactl_table_add(&t, cols) != 0) {
            ovhactl_table_free(&t);
            json_decref(j);
            ovhactl_err("out of memory");
            return OVHACTL_FAILED;
        }
    }
    ovhactl_table_print(&t);
    printf("(* = leader)\n");
    ovhactl_table_free(&t);
    json_decref(j);
    return OVHACTL_OK;
}

int ovhactl_cmd_cluster_join(struct ovhactl *ctl, int argc, char **argv)
{
    const char *role = ctl->role != NULL ? ctl->role : "voter";
    char esc[128];
    uint64_t id;
    json_t *j = NULL;
    int rv;

    if (argc != 2) {
        ovhactl_err(
            "cluster join needs ID and ADDRESS (see 'ovhactl cluster "
            "join --help')");
        return OVHACTL_USAGE;
    }
    rv = ovhactl_parse_id(argv[0], false, &id);
    if (rv != 0) {
        return rv;
    }
    if (!ovhactl_role_ok(role)) {
        ovhactl_err("--role wants voter, standby or spare, not '%s'",
                    ovhactl_escape(role, false, esc, sizeof(esc)));
        return OVHACTL_USAGE;
    }
    rv = ovhactl_post(ctl, "/v1/cluster/join",
                      json_pack("{s:I, s:s, s:s}", "id", (json_int_t)id,
                                "address", argv[1], "role", role),
                      &j);
    if (rv == 0 && !ctl->json) {
        printf("node %" PRIu64 " joined as %s\n", id, role);
    }
    json_decref(j);
    return rv;
}

int ovhactl_cmd_cluster_remove(struct ovhactl *ctl, int argc, char **argv)
{
    uint64_t id;
    json_t *j = NULL;
    int rv;

    if (argc != 1) {
        ovhactl_err("cluster remove needs exactly one ID");
        return OVHACTL_USAGE;
    }
    rv = ovhactl_parse_id(argv[0], false, &id);
    if (rv != 0) {
        return rv;
    }
    rv = ovhactl_post(ctl, "/v1/cluster/remove",
                      json_pack("{s:I}", "id", (json_int_t)id), &j);
    if (rv == 0 && !ctl->json) {
        printf("node %" PRIu64 " removed\n", id);
    }
    json_decref(j);
    return rv;
}

/* gateway drain|activate|standby G: one GatewaySetState through raft. */
static int ovhactl_gateway_state(struct ovhactl *ctl,
                                 int argc,
                                 char **argv,
                                 const char *verb)
{
    bool drain = strcmp(verb, "drain") == 0;
    char path[64], esc[512];
    json_t *j = NULL;
    int rv;

    if (argc != 1) {
        ovhactl_err("gateway %s needs exactly one gateway id", verb);
        return OVHACTL_USAGE;
    }
    if (ctl->force && !drain) {
        ovhactl_err("--force only goes with 'gateway drain'");
        return OVHACTL_USAGE;
    }
    snprintf(path, sizeof(path), "/v1/gateways/%s", verb);
    rv = ovhactl_post(
        ctl, path,
        drain ? json_pack("{s:s, s:b}", "gateway", argv[0], "force", ctl->force)
              : json_pack("{s:s}", "gateway", argv[0]),
        &j);
    if (rv == 0 && !ctl->json) {
        ovhactl_escape(argv[0], true, esc, sizeof(esc));
        if (drain) {
            printf(
                "gateway %s: draining (its clients move to their next "
                "remote)\n",
                esc);
        } else if (strcmp(verb, "activate") == 0) {
            printf("gateway %s: active\n", esc);
        } else {
            printf("gateway %s: standby (admits no new client)\n", esc);
        }
    }
    json_decref(j);
    return rv;
}

int ovhactl_cmd_gateway_drain(struct ovhactl *ctl, int argc, char **argv)
{
    return ovhactl_gateway_state(ctl, argc, argv, "drain");
}

int ovhactl_cmd_gateway_activate(struct ovhactl *ctl, int argc, char **argv)
{
    return ovhactl_gateway_state(ctl, argc, argv, "activate");
}

int ovhactl_cmd_gateway_standby(struct ovhactl *ctl, int argc, char **argv)
{
    return ovhactl_gateway_state(ctl, argc, argv, "standby");
}

int ovhactl_cmd_cn_usage(struct ovhactl *ctl, int argc, char **argv)
{
    char path[1024];

    if (argc != 1) {
        ovhactl_err("usage needs exactly one CN");
        return OVHACTL_USAGE;
    }
    snprintf(path, sizeof(path), "/v1/usage");
    if (ovhactl_query(path, sizeof(path), "cn", argv[0]) != 0) {
        ovhactl_err("CN too long");
        return OVHACTL_USAGE;
    }
    return ovhactl_show(ctl, path);
}

int ovhactl_cmd_failover(struct ovhactl *ctl, int argc, char **argv)
{
    (void)argv;
    if (argc != 0) {
        ovhactl_err("failover takes no arguments");
        return OVHACTL_USAGE;
    }
    return ovhactl_show(ctl, "/v1/failover");
}

/* ---- firewall policy ----------------------------------------------------
 */

#define OVHACTL_POLICY_PATH "/v1/policy/firewall"

int ovhactl_cmd_policy_show(struct ovhactl *ctl, int argc, char **argv)
{
    json_t *j = NULL;
    (void)argv;
    if (argc != 0) {
        ovhactl_err("policy show takes no arguments");
        return OVHACTL_USAGE;
    }
    int rv = ovhactl_call(ctl, "GET", OVHACTL_POLICY_PATH, NULL, &j);
    if (rv == 0 && !ctl->json) {
        char *doc = json_dumps(json_object_get(j, "policy"), JSON_INDENT(2));
        printf("%s\n", doc != NULL ? doc : "");
        free(doc);
    }
    json_decref(j);
    return rv;
}

/* Reads a policy file whole (at most 64 KiB). NULL after printing why. */
static char *ovhactl_read_policy(const char *path)
{
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        ovhactl_err("%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = ovha_malloc(PROTO_POLICY_MAX + 1);
    size_t n = buf != NULL ? fread(buf, 1, PROTO_POLICY_MAX + 1, f) : 0;
    bool bad = ferror(f) != 0;
    fclose(f);
    if (buf == NULL || bad || n == 0 || n > PROTO_POLICY_MAX - 1) {
        ovhactl_err("%s: %s", path,
                    buf == NULL ? "out of memory"
                    : bad       ? "read error"
                                : "empty or larger than 65535 bytes");
        ovha_free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

int ovhactl_cmd_policy_apply(struct ovhactl *ctl, int argc, char **argv)
{
    json_t *j = NULL;
    if (argc != 1) {
        ovhactl_err("policy apply needs exactly one FILE");
        return OVHACTL_USAGE;
    }
    char *body = ovhactl_read_policy(argv[0]);
    if (body == NULL) {
        return OVHACTL_USAGE;
    }
    int rv = ovhactl_call(ctl, "PUT", OVHACTL_POLICY_PATH, body, &j);
    ovha_free(body);
    if (rv == 0 && !ctl->json) {
        printf(
            "firewall policy committed; every gateway applies it within "
            "its reconcile interval\n");
    }
    json_decref(j);
    return rv;
}

int ovhactl_cmd_policy_delete(struct ovhactl *ctl, int argc, char **argv)
{
    json_t *j = NULL;
    (void)argv;
    if (argc != 0) {
        ovhactl_err("policy delete takes no arguments");
        return OVHACTL_USAGE;
    }
    int rv = ovhactl_call(ctl, "DELETE", OVHACTL_POLICY_PATH, NULL, &j);
    if (rv == 0 && !ctl->json) {
        printf("firewall policy deleted: nothing is filtered\n");
    }
    json_decref(j);
    return rv;
}

int ovhactl_cmd_policy_explain(struct ovhactl *ctl, int argc, char **argv)
{
    json_t *j = NULL;
    uint64_t port = 0;
    if (argc < 3 || argc > 4 ||
        (argc == 4 && ovha_parse_u64(argv[3], 65535, &port) != 0)) {
        ovhactl_err("policy explain needs SRC DST PROTO [PORT]");
        return OVHACTL_USAGE;
    }
    int rv = ovhactl_post(
        ctl, OVHACTL_POLICY_PATH "/explain",
        json_pack("{s:s, s:s, s:s, s:I}", "src", argv[0], "dst", argv[1],
                  "proto", argv[2], "port", (json_int_t)port),
        &j);
    if (rv == 0 && !ctl->json) {
        printf("%s (%s)\n", json_string_value(json_object_get(j, "verdict")),
               json_string_value(json_object_get(j, "reason")));
    }
    json_decref(j);
    return rv;
}

int ovhactl_cmd_policy_compiled(struct ovhactl *ctl, int argc, char **argv)
{
    json_t *j = NULL, *v;
    const char *key;
    (void)argv;
    if (argc != 0) {
        ovhactl_err("policy compiled takes no arguments");
        return OVHACTL_USAGE;
    }
    int rv =
        ovhactl_call(ctl, "GET", OVHACTL_POLICY_PATH "/compiled", NULL, &j);
    if (rv == 0 && !ctl->json) {
        const char *table = json_string_value(json_object_get(j, "table"));
        printf("%s", table != NULL ? table : "no table: no policy applied\n");
        json_object_foreach(json_object_get(j, "stats"), key, v)
        {
            ovhactl_print_field("# ", key, v);
        }
    }
    json_decref(j);
    return rv;
}

int ovhactl_cmd_macs(struct ovhactl *ctl, int argc, char **argv)
{
    (void)argv;
    if (argc != 0) {
        ovhactl_err("macs takes no arguments");
        return OVHACTL_USAGE;
    }
    return ovhactl_show(ctl, "/v1/macs");
}

int ovhactl_cmd_cluster_transfer(struct ovhactl *ctl, int argc, char **argv)
{
    uint64_t id = 0;
    char leader[24], laddr[128];
    json_t *j = NULL;
    int rv;

    if (argc > 1) {
        ovhactl_err("cluster transfer takes at most one ID");
        return OVHACTL_USAGE;
    }
    if (argc == 1) {
        rv = ovhactl_parse_id(argv[0], true, &id);
        if (rv != 0) {
            return rv;
        }
    }
    rv = ovhactl_post(ctl, "/v1/cluster/transfer",
                      json_pack("{s:I}", "id", (json_int_t)id), &j);
    if (rv == 0 && !ctl->json) {
        ovhactl_int_field(j, "leader_id", leader, sizeof(leader));
        ovhactl_str_field(j, "leader_address", true, laddr, sizeof(laddr));
        printf("leadership transferred: leader is %s at %s\n", leader, laddr);
    }
    json_decref(j);
    return rv;
}

int ovhactl_cmd_cluster_assign(struct ovhactl *ctl, int argc, char **argv)
{
    char esc[128];
    uint64_t id;
    json_t *j = NULL;
    int rv;

    if (argc != 2) {
        ovhactl_err("cluster assign needs ID and ROLE");
        return OVHACTL_USAGE;
    }
    rv = ovhactl_parse_id(argv[0], false, &id);
    if (rv != 0) {
        return rv;
    }
    if (!ovhactl_role_ok(argv[1])) {
        ovhactl_err("ROLE must be voter, standby or spare, not '%s'",
                    ovhactl_escape(argv[1], false, esc, sizeof(esc)));
        return OVHACTL_USAGE;
    }
    rv = ovhactl_post(
        ctl, "/v1/cluster/assign",
        json_pack("{s:I, s:s}", "id", (json_int_t)id, "role", argv[1]), &j);
    if (rv == 0 && !ctl->json) {
        printf("node %" PRIu64 " is now %s\n", id, argv[1]);
    }
    json_decref(j);
    return rv;
}

static void ovhactl_gateway_fill(json_t *g, char **c)
{
    ovhactl_str_field(g, "id", true, c[0], OVHACTL_CELL);
    ovhactl_str_field(g, "address", true, c[1], OVHACTL_CELL);
    ovhactl_str_field(g, "state", true, c[2], OVHACTL_CELL);
    ovhactl_ms_field(g, "last_seen", c[3], OVHACTL_CELL);
}

int ovhactl_cmd_cluster_gateways(struct ovhactl *ctl, int argc, char **argv)
{
    static const char *const heads[] = { "ID", "ADDRESS", "STATE",
                                         "LAST SEEN" };
    struct ovhactl_table t = { .ncols = 4, .heads = heads, .align = "llll" };
    (void)argv;
    if (argc != 0) {
        ovhactl_err("cluster gateways takes no arguments");
        return OVHACTL_USAGE;
    }
    return ovhactl_list_cmd(ctl, "/v1/cluster/gateways", "gateways", &t,
                            ovhactl_gateway_fill);
}

static void ovhactl_lease_fill(json_t *l, char **c)
{
    ovhactl_str_field(l, "ip", true, c[0], OVHACTL_CELL);
    ovhactl_str_field(l, "pool", true, c[1], OVHACTL_CELL);
    ovhactl_str_field(l, "cn", true, c[2], OVHACTL_CELL);
    snprintf(c[3], OVHACTL_CELL, "%s",
             json_is_true(json_object_get(l, "reserved")) ? "yes" : "no");
    ovhactl_int_field(l, "session_id", c[4], OVHACTL_CELL);
    if (strcmp(c[4], "0") == 0) {
        snprintf(c[4], OVHACTL_CELL, "-");
    }
    ovhactl_ms_field(l, "expires_at", c[5], OVHACTL_CELL);
}

int ovhactl_cmd_leases(struct ovhactl *ctl, int argc, char **argv)
{
    static const char *const heads[] = { "IP",       "POOL",    "CN",
                                         "RESERVED", "SESSION", "EXPIRES" };
    struct ovhactl_table t = { .ncols = 6, .heads = heads, .align = "llllrl" };
    char path[1200] = "/v1/leases";

    if (argc > 1) {
        ovhactl_err("leases takes at most one CN");
        return OVHACTL_USAGE;
    }
    if (argc == 1 && ovhactl_query(path, sizeof(path), "cn", argv[0]) != 0) {
        ovhactl_err("CN too long");
        return OVHACTL_USAGE;
    }
    return ovhactl_list_cmd(ctl, path, "leases", &t, ovhactl_lease_fill);
}

static void ovhactl_csession_fill(json_t *s, char **c)
{
    ovhactl_int_field(s, "id", c[0], OVHACTL_CELL);
    ovhactl_str_field(s, "cn", true, c[1], OVHACTL_CELL);
    ovhactl_str_field(s, "gateway", true, c[2], OVHACTL_CELL);
    ovhactl_int_field(s, "cid", c[3], OVHACTL_CELL);
    ovhactl_str_field(s, "ip4", true, c[4], OVHACTL_CELL);
    ovhactl_str_field(s, "ip6", true, c[5], OVHACTL_CELL);
    ovhactl_str_field(s, "real_address", true, c[6], OVHACTL_CELL);
    ovhactl_str_field(s, "state", true, c[7], OVHACTL_CELL);
    ovhactl_ms_field(s, "started", c[8], OVHACTL_CELL);
    for (int i = 4; i <= 5; i++) {
        if (strcmp(c[i], "\"\"") == 0) {
            snprintf(c[i], OVHACTL_CELL, "-");
        }
    }
}

/* Adds one filter of the replicated session list to the query. */
static int ovhactl_sessions_filter(char *path,
                                   size_t size,
                                   const char *key,
                                   const char *value)
{
    if (value != NULL && ovhactl_query(path, size, key, value) != 0) {
        ovhactl_err("--%s value too long", key);
        return OVHACTL_USAGE;
    }
    return 0;
}

static int ovhactl_sessions_cluster(struct ovhactl *ctl, int argc, char **argv)
{
    static const char *const heads[] = { "ID",           "CN",    "GATEWAY",
                                         "CID",          "IP4",   "IP6",
                                         "REAL ADDRESS", "STATE", "STARTED" };
    struct ovhactl_table t = { .ncols = 9,
                               .heads = heads,
                               .align = "rllrlllll" };
    char path[4096] = "/v1/cluster/sessions";
    const char *cn = ctl->cn;
    int rv;

    /* "sessions --cluster CN" reads like "sessions CN": the same filter. */
    if (argc > 1 || (argc == 1 && cn != NULL)) {
        ovhactl_err(
            "sessions --cluster takes at most one CN (or --cn CN); narrow "
            "it with --gateway G and --state S");
        return OVHACTL_USAGE;
    }
    if (argc == 1) {
        cn = argv[0];
    }
    rv = ovhactl_sessions_filter(path, sizeof(path), "cn", cn);
    if (rv == 0) {
        rv = ovhactl_sessions_filter(path, sizeof(path), "gateway",
                                     ctl->gateway);
    }
    if (rv == 0) {
        rv = ovhactl_sessions_filter(path, sizeof(path), "state", ctl->state);
    }
    if (rv != 0) {
        return rv;
    }
    return ovhactl_list_cmd(ctl, path, "sessions", &t, ovhactl_csession_fill);
}

int ovhactl_cmd_audit_head(struct ovhactl *ctl, int argc, char **argv)
{
    char seq[24], hash[160], bad[24];
    json_t *j = NULL;
    bool ok;
    int rv;

    (void)argv;
    if (argc != 0) {
        ovhactl_err("audit head takes no arguments");
        return OVHACTL_USAGE;
    }
    rv = ovhactl_call(ctl, "GET", "/v1/audit/head", NULL, &j);
    if (rv != 0) {
        return rv;
    }
    ok = json_is_true(json_object_get(j, "verified"));
    if (!ctl->json) {
        ovhactl_int_field(j, "seq", seq, sizeof(seq));
        ovhactl_str_field(j, "hash", true, hash, sizeof(hash));
        ovhactl_int_field(j, "first_bad_seq", bad, sizeof(bad));
        printf("seq: %s\nhash: %s\nverified: %s\n", seq, hash,
               ok ? "yes" : "NO");
        if (!ok) {
            printf("first bad record: %s\n", bad);
        }
    }
    json_decref(j);
    return ok ? OVHACTL_OK : OVHACTL_FAILED;
}

/* ---- pki ----------------------------------------------------------------- */

/* Where pki.sh is: $OVHA_PKI_SH, else the repository's deploy/pki.sh seen
 * from <build>/bin/ovhactl, else the installed copy. */
static int ovhactl_find_pki(char *out, size_t size)
{
    const char *env = getenv("OVHA_PKI_SH");
    char exe[4096];
    ssize_t n;

    if (env != NULL && *env != '\0') {
        if (access(env, R_OK) != 0) {
            ovhactl_err("OVHA_PKI_SH=%s: %s", env, strerror(errno));
            return OVHACTL_FAILED;
        }
        ovha_strlcpy(out, env, size);
        return 0;
    }
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        char *slash;
        exe[n] = '\0';
        slash = strrchr(exe, '/');
        if (slash != NULL) {
            *slash = '\0';
            int m = snprintf(out, size, "%s/../../deploy/pki.sh", exe);
            if (m > 0 && (size_t)m < size && access(out, R_OK) == 0) {
                return 0;
            }
        }
    }
    ovha_strlcpy(out, "/usr/share/ovha/pki.sh", size);
    if (access(out, R_OK) == 0) {
        return 0;
    }
    ovhactl_err(
        "cannot find pki.sh: set OVHA_PKI_SH, or install it as "
        "/usr/share/ovha/pki.sh");
    return OVHACTL_FAILED;
}

/* Replaces ovhactl with "bash pki.sh SUBCMD ARGS..."; returns only on
 * failure. pki.sh's own exit status (1 failed, 2 usage) becomes ours. */
static int ovhactl_exec_pki(const char *sub, int argc, char **argv)
{
    char path[4096];
    char *args[8];
    int rv = ovhactl_find_pki(path, sizeof(path));
    int k = 0;

    if (rv != 0) {
        return rv;
    }
    args[k++] = "bash";
    args[k++] = path;
    args[k++] = (char *)sub;
    for (int i = 0; i < argc && k < 7; i++) {
        args[k++] = argv[i];
    }
    args[k] = NULL;
    fflush(stdout);
    execvp("bash", args);
    ovhactl_err("cannot run bash %s: %s", path, strerror(errno));
    return OVHACTL_FAILED;
}

int ovhactl_cmd_pki_init(struct ovhactl *ctl, int argc, char **argv)
{
    (void)ctl;
    if (argc != 1) {
        ovhactl_err("pki init needs exactly one DIR");
        return OVHACTL_USAGE;
    }
    return ovhactl_exec_pki("init", argc, argv);
}

int ovhactl_cmd_pki_issue(struct ovhactl *ctl, int argc, char **argv)
{
    uint64_t id;
    int rv;
    (void)ctl;
    if (argc < 2 || argc > 3) {
        ovhactl_err("pki issue-node needs DIR ID [ADDR]");
        return OVHACTL_USAGE;
    }
    rv = ovhactl_parse_id(argv[1], false, &id);
    if (rv != 0) {
        return rv;
    }
    return ovhactl_exec_pki("issue-node", argc, argv);
}
