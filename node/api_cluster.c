/* node/api_cluster: the cluster half of the admin API.
 *
 *   GET  /v1/cluster            this node's view of raft (rft_get_status)
 *   POST /v1/cluster/join       rft_add     {"id", "address", "role"?}
 *   POST /v1/cluster/remove     rft_remove  {"id"}
 *   POST /v1/cluster/transfer   rft_transfer {"id"?}
 *   POST /v1/cluster/assign     rft_assign  {"id", "role"}
 *   GET  /v1/leases[?cn=X]      the replicated leases
 *   GET  /v1/cluster/sessions[?cn=X][&gateway=G][&state=S]
 *   GET  /v1/cluster/gateways
 *   GET  /v1/macs               the MAC map (bridged deployments)
 *   GET  /v1/audit/head         chain head, verified
 *   GET  /v1/usage?cn=X[&period=YYYY-MM]  replicated byte usage and quota
 *
 * Membership changes answer only once raft has committed them (or failed):
 * the handler keeps the request and the rft change callback answers it.
 * That callback fires exactly once when rft_* returned 0, also when the
 * runtime closes (OVHA_ECLOSED); if the HTTP server closes first, its
 * cancel callback forgets the request and the change callback then only
 * frees its context. Reads come from this node's applied FSM state, so a
 * follower may lag the leader slightly.
 *
 * A standalone node (n->rft == NULL) answers every route 409.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "node/node.h"

#define NODE_API_CLUSTER_STANDALONE \
    "standalone node: no cluster section in the config"

enum node_api_change_kind {
    NODE_API_JOIN,
    NODE_API_REMOVE,
    NODE_API_TRANSFER,
    NODE_API_ASSIGN,
};

/* One membership change waiting for raft. */
struct node_api_change {
    struct node *n;
    struct node_http_req *req; /* NULL once the server cancelled it */
    enum node_api_change_kind kind;
    uint64_t id;
    int role;
};

static void node_api_cluster_error(struct node_http_req *r,
                                   unsigned status,
                                   const char *msg)
{
    node_http_respond_json(r, status, json_pack("{s:s}", "error", msg));
}

/* Answers 409 and returns false on a standalone node. */
static bool node_api_cluster_check(struct node *n, struct node_http_req *r)
{
    if (n->rft == NULL || n->fsm == NULL) {
        node_api_cluster_error(r, 409, NODE_API_CLUSTER_STANDALONE);
        return false;
    }
    return true;
}

/* A JSON string for text from the state: CNs come from certificates and
 * need not be UTF-8, which jansson refuses; such bytes become '?'. */
static json_t *node_api_cluster_str(const char *s)
{
    json_t *j = json_string(s);
    char buf[512];
    size_t i;

    if (j != NULL) {
        return j;
    }
    for (i = 0; s[i] != '\0' && i + 1 < sizeof(buf); i++) {
        unsigned char ch = (unsigned char)s[i];
        buf[i] = ch < 0x80 ? (char)ch : '?';
    }
    buf[i] = '\0';
    return json_string(buf);
}

static json_t *node_api_cluster_uint(uint64_t v)
{
    return json_integer((json_int_t)v);
}

/* ---- status ------------------------------------------------------------ */

static json_t *node_api_cluster_stats_json(const struct rft_status *rs)
{
    const struct rft_stats *st = &rs->stats;
    json_t *o = json_object();
    json_object_set_new(o, "batches", node_api_cluster_uint(st->batches));
    json_object_set_new(o, "snapshots", node_api_cluster_uint(rs->snapshots));
    json_object_set_new(o, "restores", node_api_cluster_uint(rs->restores));
    json_object_set_new(o, "proposed", node_api_cluster_uint(st->proposed));
    json_object_set_new(o, "committed", node_api_cluster_uint(st->committed));
    json_object_set_new(o, "failed", node_api_cluster_uint(st->failed));
    json_object_set_new(o, "unknown", node_api_cluster_uint(st->unknown));
    json_object_set_new(o, "retries", node_api_cluster_uint(st->retries));
    json_object_set_new(o, "forwarded", node_api_cluster_uint(st->forwarded));
    json_object_set_new(o, "forward_served",
                        node_api_cluster_uint(st->forward_served));
    json_object_set_new(o, "elections_won",
                        node_api_cluster_uint(st->elections_won));
    return o;
}

static json_t *node_api_cluster_servers_json(const struct rft_status *st)
{
    json_t *list = json_array();
    for (size_t i = 0; i < st->nservers; i++) {
        json_array_append_new(
            list, json_pack("{s:o, s:s, s:s}", "id",
                            node_api_cluster_uint(st->servers[i].id), "address",
                            st->servers[i].address, "role",
                            rft_member_role_name(st->servers[i].role)));
    }
    return list;
}

static void node_api_cluster_status(struct node_http_req *r, void *data)
{
    struct node *n = data;
    struct rft_status st;
    json_t *o;

    if (!node_api_cluster_check(n, r)) {
        return;
    }
    rft_get_status(n->rft, &st);
    o = json_object();
    json_object_set_new(o, "id", node_api_cluster_uint(st.id));
    json_object_set_new(o, "address", json_string(st.address));
    json_object_set_new(o, "role", json_string(rft_role_name(st.role)));
    json_object_set_new(o, "term", node_api_cluster_uint(st.term));
    json_object_set_new(o, "leader_id", node_api_cluster_uint(st.leader_id));
    json_object_set_new(o, "leader_address", json_string(st.leader_addr));
    json_object_set_new(o, "commit_index",
                        node_api_cluster_uint(st.commit_index));
    json_object_set_new(o, "last_applied",
                        node_api_cluster_uint(st.last_applied));
    json_object_set_new(o, "last_index", node_api_cluster_uint(st.last_index));
    json_object_set_new(o, "ready", json_boolean(st.ready));
    json_object_set_new(o, "servers", node_api_cluster_servers_json(&st));
    json_object_set_new(o, "stats", node_api_cluster_stats_json(&st));
    node_http_respond_json(r, 200, o);
}

/* ---- membership changes ------------------------------------------------ */

/* Answers a failed change: 503 with the leader when this node is not the
 * leader (the caller should ask there), 503 when the runtime is closing,
 * 409 for everything else (busy, refused by raft, lost connection). */
static void node_api_cluster_fail(struct node *n,
                                  struct node_http_req *r,
                                  int status)
{
    struct rft_status st;
    const char *msg;

    if (status == OVHA_ECLOSED) {
        /* rft_close reports this: n->rft may be on its way out. */
        node_api_cluster_error(r, 503, "the cluster runtime is shutting down");
        return;
    }
    msg = rft_errmsg(n->rft);
    if (msg == NULL || *msg == '\0') {
        msg = ovha_strerror(status);
    }
    if (status == OVHA_ENOTLEADER) {
        rft_get_status(n->rft, &st);
        node_http_respond_json(
            r, 503,
            json_pack("{s:s, s:o, s:s}", "error", msg, "leader_id",
                      node_api_cluster_uint(st.leader_id), "leader_address",
                      st.leader_addr));
        return;
    }
    node_api_cluster_error(r, 409, msg);
}

static void node_api_cluster_done(struct node_api_change *ch)
{
    struct node_http_req *r = ch->req;
    struct rft_status st;

    switch (ch->kind) {
    case NODE_API_JOIN:
        node_http_respond_json(
            r, 200,
            json_pack("{s:o}", "joined", node_api_cluster_uint(ch->id)));
        break;
    case NODE_API_REMOVE:
        node_http_respond_json(
            r, 200,
            json_pack("{s:o}", "removed", node_api_cluster_uint(ch->id)));
        break;
    case NODE_API_ASSIGN:
        node_http_respond_json(
            r, 200,
            json_pack("{s:o, s:s}", "assigned", node_api_cluster_uint(ch->id),
                      "role", rft_member_role_name(ch->role)));
        break;
    case NODE_API_TRANSFER:
        rft_get_status(ch->n->rft, &st);
        node_http_respond_json(
            r, 200,
            json_pack("{s:b, s:o, s:s}", "transferred", 1, "leader_id",
                      node_api_cluster_uint(st.leader_id), "leader_address",
                      st.leader_addr));
        break;
    }
}

static void node_api_cluster_change_cb(void *data, int status)
{
    struct node_api_change *ch = data;
    if (ch->req != NULL) {
        node_http_req_set_cancel(ch->req, NULL, NULL);
        if (status == 0) {
            node_api_cluster_done(ch);
        } else {
            node_api_cluster_fail(ch->n, ch->req, status);
        }
    }
    ovha_free(ch);
}

static void node_api_cluster_cancel_cb(struct node_http_req *r, void *data)
{
    struct node_api_change *ch = data;
    (void)r;
    ch->req = NULL; /* the change callback still frees ch */
}

static int node_api_cluster_role(const char *name, int *ret_role)
{
    if (name == NULL || strcmp(name, "voter") == 0) {
        *ret_role = RFT_ROLE_VOTER;
    } else if (strcmp(name, "standby") == 0) {
        *ret_role = RFT_ROLE_STANDBY;
    } else if (strcmp(name, "spare") == 0) {
        *ret_role = RFT_ROLE_SPARE;
    } else {
        return -EINVAL;
    }
    return 0;
}

/* "a.b.c.d:port", port 1..65534 (the forwarding listener takes port + 1),
 * as the config's cluster.address. */
static bool node_api_cluster_addr_ok(const char *s)
{
    const char *colon = strrchr(s, ':');
    char host[INET_ADDRSTRLEN];
    struct in_addr a;
    uint64_t port;

    if (colon == NULL || (size_t)(colon - s) >= sizeof(host)) {
        return false;
    }
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    if (inet_pton(AF_INET, host, &a) != 1 || colon[1] == '0') {
        return false;
    }
    return ovha_parse_u64(colon + 1, 65534, &port) == 0 && port >= 1;
}

/* The body as JSON, or NULL (an empty or malformed body). */
static json_t *node_api_cluster_body(struct node_http_req *r)
{
    size_t len = 0;
    const char *body = node_http_req_body(r, &len);
    json_error_t jerr;
    return json_loadb(body != NULL ? body : "", len, 0, &jerr);
}

/* Starts the change, answering at once on a synchronous failure. The
 * cancel callback is set before the call so that a callback fired from
 * inside rft_* finds everything in place. */
static void node_api_cluster_start(struct node *n,
                                   struct node_http_req *r,
                                   enum node_api_change_kind kind,
                                   uint64_t id,
                                   const char *address,
                                   int role)
{
    struct node_api_change *ch = ovha_calloc(1, sizeof(*ch));
    int rv = -EINVAL;

    if (ch == NULL) {
        node_api_cluster_error(r, 500, "out of memory");
        return;
    }
    *ch = (struct node_api_change){
        .n = n, .req = r, .kind = kind, .id = id, .role = role
    };
    node_http_req_set_cancel(r, node_api_cluster_cancel_cb, ch);
    switch (kind) {
    case NODE_API_JOIN:
        rv = rft_add(n->rft, id, address, role, node_api_cluster_change_cb, ch);
        break;
    case NODE_API_REMOVE:
        rv = rft_remove(n->rft, id, node_api_cluster_change_cb, ch);
        break;
    case NODE_API_TRANSFER:
        rv = rft_transfer(n->rft, id, node_api_cluster_change_cb, ch);
        break;
    case NODE_API_ASSIGN:
        rv = rft_assign(n->rft, id, role, node_api_cluster_change_cb, ch);
        break;
    }
    if (rv != 0) {
        /* The callback will not fire: answer now. */
        node_http_req_set_cancel(r, NULL, NULL);
        ovha_free(ch);
        node_api_cluster_fail(n, r, rv);
    }
}

static void node_api_cluster_join(struct node_http_req *r, void *data)
{
    static const char usage[] =
        "body must be {\"id\": integer > 0, \"address\": \"a.b.c.d:port\", "
        "\"role\"?: \"voter\"|\"standby\"|\"spare\"}";
    struct node *n = data;
    const char *address = NULL, *rname = NULL;
    json_int_t id = 0;
    json_t *j;
    int role;

    if (!node_api_cluster_check(n, r)) {
        return;
    }
    /* '!': unknown keys are refused, so a typo is not silently ignored. */
    j = node_api_cluster_body(r);
    if (j == NULL ||
        json_unpack(j, "{s:I, s:s, s?:s!}", "id", &id, "address", &address,
                    "role", &rname) != 0 ||
        id <= 0 || !node_api_cluster_addr_ok(address) ||
        node_api_cluster_role(rname, &role) != 0) {
        json_decref(j);
        node_api_cluster_error(r, 400, usage);
        return;
    }
    node_api_cluster_start(n, r, NODE_API_JOIN, (uint64_t)id, address, role);
    json_decref(j);
}

static void node_api_cluster_remove(struct node_http_req *r, void *data)
{
    static const char usage[] = "body must be {\"id\": integer > 0}";
    struct node *n = data;
    json_int_t id = 0;
    json_t *j;
    int rv = -1;

    if (!node_api_cluster_check(n, r)) {
        return;
    }
    j = node_api_cluster_body(r);
    if (j != NULL) {
        rv = json_unpack(j, "{s:I!}", "id", &id);
    }
    json_decref(j);
    if (rv != 0 || id <= 0) {
        node_api_cluster_error(r, 400, usage);
        return;
    }
    node_api_cluster_start(n, r, NODE_API_REMOVE, (uint64_t)id, NULL, 0);
}

static void node_api_cluster_transfer(struct node_http_req *r, void *data)
{
    static const char usage[] =
        "body must be {\"id\"?: integer >= 0} (0 or none: any voter)";
    struct node *n = data;
    json_int_t id = 0;
    size_t len = 0;
    json_t *j;
    int rv = -1;

    if (!node_api_cluster_check(n, r)) {
        return;
    }
    /* An empty body means "any voter". */
    node_http_req_body(r, &len);
    if (len > 0) {
        j = node_api_cluster_body(r);
        if (j != NULL) {
            rv = json_unpack(j, "{s?:I!}", "id", &id);
        }
        json_decref(j);
        if (rv != 0 || id < 0) {
            node_api_cluster_error(r, 400, usage);
            return;
        }
    }
    node_api_cluster_start(n, r, NODE_API_TRANSFER, (uint64_t)id, NULL, 0);
}

static void node_api_cluster_assign(struct node_http_req *r, void *data)
{
    static const char usage[] =
        "body must be {\"id\": integer > 0, \"role\": "
        "\"voter\"|\"standby\"|\"spare\"}";
    struct node *n = data;
    const char *rname = NULL;
    json_int_t id = 0;
    json_t *j;
    int role, rv = -1;

    if (!node_api_cluster_check(n, r)) {
        return;
    }
    j = node_api_cluster_body(r);
    if (j != NULL) {
        rv = json_unpack(j, "{s:I, s:s!}", "id", &id, "role", &rname);
    }
    if (rv != 0 || id <= 0 || node_api_cluster_role(rname, &role) != 0) {
        json_decref(j);
        node_api_cluster_error(r, 400, usage);
        return;
    }
    json_decref(j);
    node_api_cluster_start(n, r, NODE_API_ASSIGN, (uint64_t)id, NULL, role);
}

/* ---- replicated state -------------------------------------------------- */

static int node_api_cluster_lease_cb(const struct fsm_lease_info *l, void *data)
{
    json_t *o = json_object();
    json_object_set_new(o, "ip", json_string(l->ip));
    json_object_set_new(o, "pool", node_api_cluster_str(l->pool));
    json_object_set_new(o, "cn", node_api_cluster_str(l->cn));
    json_object_set_new(o, "reserved", json_boolean(l->reserved));
    json_object_set_new(o, "session_id", node_api_cluster_uint(l->session_id));
    json_object_set_new(o, "expires_at", node_api_cluster_uint(l->expires_at));
    return json_array_append_new(data, o) == 0 ? 0 : -ENOMEM;
}

static const char *node_api_cluster_session_state(enum fsm_session_state s)
{
    switch (s) {
    case FSM_SESSION_CONNECTING:
        return "connecting";
    case FSM_SESSION_ESTABLISHED:
        return "established";
    case FSM_SESSION_ORPHANED:
        return "orphaned";
    }
    return "unknown";
}

static int node_api_cluster_session_cb(const struct fsm_session_info *s,
                                       void *data)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", node_api_cluster_uint(s->id));
    json_object_set_new(o, "cn", node_api_cluster_str(s->cn));
    json_object_set_new(o, "gateway", node_api_cluster_str(s->gateway));
    json_object_set_new(o, "cid", node_api_cluster_uint(s->cid));
    json_object_set_new(o, "real_address", node_api_cluster_str(s->real_addr));
    json_object_set_new(o, "ip4", node_api_cluster_str(s->ip4));
    json_object_set_new(o, "ip6", node_api_cluster_str(s->ip6));
    json_object_set_new(o, "started", node_api_cluster_uint(s->started));
    json_object_set_new(o, "established",
                        node_api_cluster_uint(s->established));
    json_object_set_new(o, "state",
                        json_string(node_api_cluster_session_state(s->state)));
    return json_array_append_new(data, o) == 0 ? 0 : -ENOMEM;
}

static int node_api_cluster_gateway_cb(const struct fsm_gateway_info *g,
                                       void *data)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", node_api_cluster_str(g->id));
    json_object_set_new(o, "address", node_api_cluster_str(g->addr));
    json_object_set_new(o, "state", json_string(proto_gw_state_name(g->state)));
    json_object_set_new(o, "last_seen", node_api_cluster_uint(g->last_seen));
    return json_array_append_new(data, o) == 0 ? 0 : -ENOMEM;
}

static int node_api_cluster_mac_cb(const struct fsm_mac_info *m, void *data)
{
    json_t *o = json_object();
    json_object_set_new(o, "mac", node_api_cluster_str(m->mac));
    json_object_set_new(o, "cn", node_api_cluster_str(m->cn));
    json_object_set_new(o, "session_id", node_api_cluster_uint(m->session_id));
    json_object_set_new(o, "gateway", node_api_cluster_str(m->gateway));
    return json_array_append_new(data, o) == 0 ? 0 : -ENOMEM;
}

/* Answers {key: list} or 500 when the query failed. Steals list. */
static void node_api_cluster_list(struct node_http_req *r,
                                  const char *key,
                                  json_t *list,
                                  int rv)
{
    char msg[128];
    if (rv != 0 || list == NULL) {
        json_decref(list);
        snprintf(msg, sizeof(msg), "reading the replicated state: %s",
                 ovha_strerror(rv != 0 ? rv : -ENOMEM));
        node_api_cluster_error(r, 500, msg);
        return;
    }
    node_http_respond_json(r, 200, json_pack("{s:o}", key, list));
}

static void node_api_cluster_leases(struct node_http_req *r, void *data)
{
    struct node *n = data;
    json_t *list;
    int rv = -ENOMEM;

    if (!node_api_cluster_check(n, r)) {
        return;
    }
    list = json_array();
    if (list != NULL) {
        rv = fsm_query_leases(n->fsm, node_http_req_query(r, "cn"),
                              node_api_cluster_lease_cb, list);
    }
    node_api_cluster_list(r, "leases", list, rv);
}

/* The filters of GET /v1/cluster/sessions; NULL / -1 = any. */
struct node_api_sess_filter {
    json_t *list;
    const char *gateway;
    int state; /* an enum fsm_session_state, or -1 */
};

static int node_api_cluster_filter_cb(const struct fsm_session_info *s,
                                      void *data)
{
    struct node_api_sess_filter *f = data;
    if ((f->gateway != NULL && strcmp(s->gateway, f->gateway) != 0) ||
        (f->state >= 0 && (int)s->state != f->state)) {
        return 0;
    }
    return node_api_cluster_session_cb(s, f->list);
}

/* A query argument, NULL when absent or empty ("?cn=" filters nothing). */
static const char *node_api_cluster_arg(struct node_http_req *r,
                                        const char *key)
{
    const char *v = node_http_req_query(r, key);
    return v != NULL && *v != '\0' ? v : NULL;
}

static void node_api_cluster_sessions(struct node_http_req *r, void *data)
{
    struct node *n = data;
    struct node_api_sess_filter f = { .state = -1 };
    const char *cn, *state;
    int rv = -ENOMEM;

    if (!node_api_cluster_check(n, r)) {
        return;
    }
    cn = node_api_cluster_arg(r, "cn");
    f.gateway = node_api_cluster_arg(r, "gateway");
    state = node_api_cluster_arg(r, "state");
    if (state != NULL) {
        for (int s = FSM_SESSION_CONNECTING; s <= FSM_SESSION_ORPHANED; s++) {
            if (strcmp(state, node_api_cluster_session_state(
                                  (enum fsm_session_state)s)) == 0) {
                f.state = s;
            }
        }
        if (f.state < 0) {
            node_api_cluster_error(
                r, 400, "state must be connecting, established or orphaned");
            return;
        }
    }
    f.list = json_array();
    if (f.list != NULL) {
        /* The narrower index first: a CN has few sessions. */
        rv = cn != NULL ? fsm_query_cn_sessions(n->fsm, cn,
                                                node_api_cluster_filter_cb, &f)
                        : fsm_query_sessions(n->fsm, f.gateway,
                                             node_api_cluster_filter_cb, &f);
    }
    node_api_cluster_list(r, "sessions", f.list, rv);
}

static void node_api_cluster_macs(struct node_http_req *r, void *data)
{
    struct node *n = data;
    json_t *list;
    int rv = -ENOMEM;

    if (!node_api_cluster_check(n, r)) {
        return;
    }
    list = json_array();
    if (list != NULL) {
        rv = fsm_query_macs(n->fsm, node_api_cluster_mac_cb, list);
    }
    node_api_cluster_list(r, "macs", list, rv);
}

static void node_api_cluster_gateways(struct node_http_req *r, void *data)
{
    struct node *n = data;
    json_t *list;
    int rv = -ENOMEM;

    if (!node_api_cluster_check(n, r)) {
        return;
    }
    list = json_array();
    if (list != NULL) {
        rv = fsm_query_gateways(n->fsm, node_api_cluster_gateway_cb, list);
    }
    node_api_cluster_list(r, "gateways", list, rv);
}

/* The head of the audit chain and a full verification of it. The walk
 * is linear in the chain's length and runs on the loop thread. */
static void node_api_cluster_audit_head(struct node_http_req *r, void *data)
{
    struct node *n = data;
    uint8_t hash[FSM_HASH_LEN];
    char hex[2 * FSM_HASH_LEN + 1], msg[128];
    uint64_t seq = 0, bad = 0;
    int rv;

    if (!node_api_cluster_check(n, r)) {
        return;
    }
    rv = fsm_query_chain_head(n->fsm, &seq, hash);
    if (rv == 0) {
        rv = fsm_audit_verify(n->fsm, &bad);
    }
    if (rv != 0) {
        snprintf(msg, sizeof(msg), "reading the audit chain: %s",
                 ovha_strerror(rv));
        node_api_cluster_error(r, 500, msg);
        return;
    }
    ovha_hex(hash, sizeof(hash), hex);
    uint64_t base = 0;
    uint8_t base_hash[FSM_HASH_LEN];
    fsm_query_audit_base(n->fsm, &base, base_hash);
    json_t *o = json_pack("{s:o, s:s, s:b, s:o, s:o}", "seq",
                          node_api_cluster_uint(seq), "hash", hex, "verified",
                          bad == 0, "first_bad_seq", node_api_cluster_uint(bad),
                          "base_seq", node_api_cluster_uint(base));
    if (o != NULL && n->audit != NULL) {
        struct node_audit_stats as;
        node_audit_get_stats(n->audit, &as);
        json_object_set_new(
            o, "archive",
            json_pack("{s:s, s:o, s:o, s:o, s:o, s:s}", "path", as.path,
                      "archived", node_api_cluster_uint(as.archived),
                      "next_seq", node_api_cluster_uint(as.next_seq), "gaps",
                      node_api_cluster_uint(as.gaps), "failures",
                      node_api_cluster_uint(as.failures), "last_error",
                      as.last_error));
    }
    node_http_respond_json(r, 200, o);
}

/* Usage is charged per calendar month (UTC), the period's id "YYYY-MM". */
static void node_api_cluster_usage(struct node_http_req *r, void *data)
{
    struct node *n = data;
    const char *cn = node_http_req_query(r, "cn");
    const char *period = node_http_req_query(r, "period");
    char now[16];
    struct fsm_usage_info u;
    if (!node_api_cluster_check(n, r)) {
        return;
    }
    if (cn == NULL || *cn == '\0') {
        node_api_cluster_error(r, 400, "query must name ?cn=");
        return;
    }
    if (period == NULL) {
        time_t t = (time_t)(ovha_now_real_ms() / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(now, sizeof(now), "%Y-%m", &tm);
        period = now;
    }
    int rv = fsm_query_usage(n->fsm, cn, period, &u);
    if (rv != 0) {
        node_api_cluster_error(r, 500, ovha_strerror(rv));
        return;
    }
    node_http_respond_json(
        r, 200,
        json_pack("{s:o, s:s, s:I, s:I, s:I}", "cn", node_api_cluster_str(cn),
                  "period", period, "bytes_in", (json_int_t)u.bytes_in,
                  "bytes_out", (json_int_t)u.bytes_out, "quota_bytes",
                  (json_int_t)u.quota_bytes));
}

int node_api_cluster_register(struct node *n)
{
    static const struct {
        const char *method, *path;
        node_http_handler_fn fn;
    } routes[] = {
        { "GET", "/v1/cluster", node_api_cluster_status },
        { "POST", "/v1/cluster/join", node_api_cluster_join },
        { "POST", "/v1/cluster/remove", node_api_cluster_remove },
        { "POST", "/v1/cluster/transfer", node_api_cluster_transfer },
        { "POST", "/v1/cluster/assign", node_api_cluster_assign },
        { "GET", "/v1/cluster/sessions", node_api_cluster_sessions },
        { "GET", "/v1/cluster/gateways", node_api_cluster_gateways },
        { "GET", "/v1/leases", node_api_cluster_leases },
        { "GET", "/v1/macs", node_api_cluster_macs },
        { "GET", "/v1/audit/head", node_api_cluster_audit_head },
        { "GET", "/v1/usage", node_api_cluster_usage },
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        int rv = node_http_route(n->http, routes[i].method, routes[i].path,
                                 routes[i].fn, n);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}
