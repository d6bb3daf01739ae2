/* node/api: HTTP handlers for /healthz and the /v1 admin API.
 *
 * Handlers read node state and answer at once; none blocks. Bodies are
 * JSON (jansson). */
#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "base/base.h"
#include "node/node.h"
#include "proto/proto.h"

static const char *node_api_session_state(enum node_session_state st)
{
    return st == NODE_SESSION_ESTABLISHED ? "established" : "authorized";
}

static void node_api_error(struct node_http_req *r,
                           unsigned status,
                           const char *msg)
{
    node_http_respond_json(r, status, json_pack("{s:s}", "error", msg));
}

static void node_api_healthz(struct node_http_req *r, void *data)
{
    struct node *n = data;
    struct node_clients_stats st;
    const struct node_session *s;
    size_t live = node_clients_sessions(n->clients, &s);
    node_clients_get_stats(n->clients, &st);
    json_t *body = json_pack(
        "{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:{s:I, s:I, s:I}, s:I}", "status",
        "ok", "gateway", n->cfg->id, "openvpn",
        node_sup_state_name(node_sup_state(n->sup)), "management",
        n->mgmt_up ? "up" : "down", "sessions", (json_int_t)live, "pending",
        (json_int_t)node_clients_pending(n->clients), "uptime_ms",
        (json_int_t)(ovha_now_mono_ms() - n->started_ms), "decisions",
        "allowed", (json_int_t)st.allowed, "denied", (json_int_t)st.denied,
        "deadline_denied", (json_int_t)st.deadline_denied,
        "bandwidth_anomalies", (json_int_t)st.anomalies);
    node_http_respond_json(r, 200, body);
}

static json_t *node_api_session_json(const struct node_session *s)
{
    return json_pack(
        "{s:I, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:b}", "cid",
        (json_int_t)s->cid, "cn", s->cn, "real_address", s->real_addr, "vpn_ip",
        s->vpn_ip, "state", node_api_session_state(s->state), "connected_since",
        (json_int_t)s->since, "bytes_in", (json_int_t)s->bytes_in, "bytes_out",
        (json_int_t)s->bytes_out, "anomalies",
        (json_int_t)s->baseline.anomalies, "throttled", s->throttled);
}

static void node_api_sessions(struct node_http_req *r, void *data)
{
    struct node *n = data;
    const struct node_session *s;
    size_t count = node_clients_sessions(n->clients, &s);
    const char *cn = node_http_req_query(r, "cn");
    json_t *list = json_array();
    for (size_t i = 0; list != NULL && i < count; i++) {
        if (cn == NULL || strcmp(cn, s[i].cn) == 0) {
            json_array_append_new(list, node_api_session_json(&s[i]));
        }
    }
    node_http_respond_json(r, 200, json_pack("{s:o}", "sessions", list));
}

/* A kill of sessions held by other gateways: each is ended through raft
 * (SessionClose, the operator as actor) and the gateway holding the
 * client kills it at its next reconcile pass. Answered once every
 * proposal has finished. */
struct node_api_kill_far {
    struct node_http_req *req; /* NULL once the server cancelled it */
    size_t pending, ended, failed;
    json_t *gateways;
};

static void node_api_kill_far_finish(struct node_api_kill_far *k)
{
    struct node_http_req *r = k->req;
    if (r != NULL) {
        node_http_req_set_cancel(r, NULL, NULL);
        if (k->ended > 0) {
            node_http_respond_json(
                r, 200,
                json_pack("{s:I, s:I, s:O}", "killed", (json_int_t)0,
                          "ended_elsewhere", (json_int_t)k->ended, "gateways",
                          k->gateways));
        } else {
            node_api_error(r, 503, "no raft leader; retry");
        }
    }
    json_decref(k->gateways);
    ovha_free(k);
}

static void node_api_kill_far_cb(void *data,
                                 int status,
                                 const struct proto_result *res)
{
    struct node_api_kill_far *k = data;
    if (status == 0 && res->status == PROTO_STATUS_OK) {
        k->ended++;
    } else {
        k->failed++;
    }
    if (--k->pending == 0) {
        node_api_kill_far_finish(k);
    }
}

static void node_api_kill_far_cancel(struct node_http_req *r, void *data)
{
    struct node_api_kill_far *k = data;
    (void)r;
    k->req = NULL; /* the last proposal callback frees k */
}

struct node_api_kill_walk {
    struct node *n;
    uint64_t ids[16];
    char gw[16][PROTO_ID_MAX];
    size_t count;
};

static int node_api_kill_walk_cb(const struct fsm_session_info *s, void *data)
{
    struct node_api_kill_walk *w = data;
    if (strcmp(s->gateway, w->n->cfg->id) != 0 && w->count < 16) {
        w->ids[w->count] = s->id;
        ovha_strlcpy(w->gw[w->count], s->gateway, sizeof(w->gw[0]));
        w->count++;
    }
    return 0;
}

/* No local client: end the CN's sessions on other gateways, if any. */
static void node_api_kill_far(struct node *n,
                              struct node_http_req *r,
                              const char *cn)
{
    struct node_api_kill_walk w = { .n = n };
    struct node_api_kill_far *k = NULL;
    if (fsm_query_cn_sessions(n->fsm, cn, node_api_kill_walk_cb, &w) != 0 ||
        w.count == 0) {
        node_api_error(r, 404, "no live session for cn");
        return;
    }
    k = ovha_calloc(1, sizeof(*k));
    if (k == NULL || (k->gateways = json_array()) == NULL) {
        ovha_free(k);
        node_api_error(r, 500, "out of memory");
        return;
    }
    k->req = r;
    k->pending = 1; /* held until every proposal is out */
    for (size_t i = 0; i < w.count; i++) {
        json_array_append_new(k->gateways, json_string(w.gw[i]));
        k->pending++;
        if (node_repl_session_end(n->repl, w.ids[i], "killed by an operator",
                                  node_http_req_subject(r),
                                  node_api_kill_far_cb, k) != 0) {
            k->pending--;
            k->failed++;
        }
    }
    node_http_req_set_cancel(r, node_api_kill_far_cancel, k);
    if (--k->pending == 0) {
        node_api_kill_far_finish(k);
    }
}

static void node_api_kill(struct node_http_req *r, void *data)
{
    struct node *n = data;
    size_t len = 0;
    const char *body = node_http_req_body(r, &len);
    json_error_t jerr;
    json_t *req = json_loadb(body != NULL ? body : "", len, 0, &jerr);
    const char *cn = NULL;
    const char *msg = NULL;
    if (req == NULL ||
        json_unpack(req, "{s:s, s?:s}", "cn", &cn, "message", &msg) != 0) {
        json_decref(req);
        node_api_error(r, 400,
                       "body must be {\"cn\": string, "
                       "\"message\"?: string}");
        return;
    }
    /* The message goes to openvpn as one unquoted token: check it with
     * the builder itself, so a refusal is a 400 here and never a kill
     * that silently fails. */
    struct ovha_buf probe;
    ovha_buf_init(&probe);
    int rv = msg != NULL ? mgmt_cmd_client_kill(&probe, 0, msg) : 0;
    ovha_buf_free(&probe);
    if (rv != 0) {
        json_decref(req);
        node_api_error(r, 400,
                       "message must be one token without spaces, "
                       "quotes or control characters (e.g. HALT, "
                       "RESTART)");
        return;
    }
    size_t killed = node_clients_kill_cn(n->clients, cn, msg);
    if (killed == 0 && n->repl != NULL) {
        node_api_kill_far(n, r, cn);
    } else if (killed == 0) {
        node_api_error(r, 404, "no live session for cn");
    } else {
        node_http_respond_json(
            r, 200,
            json_pack("{s:I, s:I, s:[]}", "killed", (json_int_t)killed,
                      "ended_elsewhere", (json_int_t)0, "gateways"));
    }
    json_decref(req);
}

static void node_api_put(json_t *o, const char *key, uint64_t v)
{
    json_object_set_new(o, key, json_integer((json_int_t)v));
}

static json_t *node_api_upstream_json(const struct node_tiers_stats *st)
{
    static const char *const breaker[] = { "closed", "open", "half-open" };
    static const char *const le[] = { "le_5ms",   "le_25ms",   "le_100ms",
                                      "le_500ms", "le_2500ms", "all" };
    json_t *o = json_object();
    json_t *lat = json_object();
    if (o == NULL || lat == NULL) {
        json_decref(o);
        json_decref(lat);
        return NULL;
    }
    node_api_put(o, "lookups", st->lookups);
    node_api_put(o, "hits_memory", st->hits_memory);
    node_api_put(o, "hits_redis", st->hits_redis);
    node_api_put(o, "shared", st->shared);
    node_api_put(o, "upstream_requests", st->upstream_requests);
    node_api_put(o, "upstream_answers", st->upstream_answers);
    node_api_put(o, "upstream_failures", st->upstream_failures);
    node_api_put(o, "malformed", st->malformed);
    node_api_put(o, "deadline", st->deadline);
    node_api_put(o, "fallback_memory", st->fallback_memory);
    node_api_put(o, "fallback_file", st->fallback_file);
    node_api_put(o, "fallback_denied", st->fallback_denied);
    node_api_put(o, "file_errors", st->file_errors);
    node_api_put(o, "memory_entries", st->memory_entries);
    node_api_put(o, "breaker_opens", st->breaker_opens);
    json_object_set_new(o, "breaker",
                        json_string(breaker[st->breaker_state % 3]));
    json_object_set_new(o, "redis",
                        json_string(!st->redis_enabled    ? "disabled"
                                    : st->redis_connected ? "connected"
                                                          : "disconnected"));
    node_api_put(lat, "sum_ms", st->latency_ms_sum);
    node_api_put(lat, "count", st->latency_count);
    for (size_t i = 0; i < 6; i++) {
        node_api_put(lat, le[i], st->latency_le_ms[i]);
    }
    json_object_set_new(o, "latency", lat);
    return o;
}

/* Counters of the upstream and its cache tiers. */
static void node_api_upstream(struct node_http_req *r, void *data)
{
    struct node *n = data;
    struct node_tiers_stats st;
    if (n->tiers == NULL) {
        node_api_error(r, 409, "no upstream configured");
        return;
    }
    node_tiers_get_stats(n->tiers, &st);
    node_http_respond_json(r, 200, node_api_upstream_json(&st));
}

/* Why this node should not get clients now; each reason names a part. */
static void node_api_ready_cluster(struct node *n, json_t *why)
{
    struct rft_status st;
    rft_get_status(n->rft, &st);
    if (st.leader_id == 0) {
        json_array_append_new(why, json_string("raft: no leader known"));
    } else if (st.last_applied < st.commit_index) {
        json_array_append_new(
            why, json_sprintf("raft: applied %llu of commit index %llu",
                              (unsigned long long)st.last_applied,
                              (unsigned long long)st.commit_index));
    }
    const char *refusal =
        n->failover != NULL ? node_failover_refusal(n->failover) : NULL;
    if (refusal != NULL) {
        json_array_append_new(why, json_sprintf("admission: %s", refusal));
    }
}

static void node_api_ready_enforce(struct node *n, json_t *why)
{
    if (n->routes != NULL) {
        struct node_routes_stats rs;
        node_routes_get_stats(n->routes, &rs);
        if (rs.last_error[0] != '\0') {
            json_array_append_new(why,
                                  json_sprintf("routes: %s", rs.last_error));
        }
    }
    if (n->fw != NULL) {
        struct node_fw_stats fs;
        node_fw_get_stats(n->fw, &fs);
        if (fs.last_error[0] != '\0') {
            json_array_append_new(why,
                                  json_sprintf("firewall: %s", fs.last_error));
        }
    }
    if (n->shaping != NULL) {
        struct node_shaping_stats ss;
        node_shaping_get_stats(n->shaping, &ss);
        if (ss.last_error[0] != '\0') {
            json_array_append_new(why,
                                  json_sprintf("shaping: %s", ss.last_error));
        }
    }
}

/* 200 when openvpn runs, its management link is up, (clustered) raft has
 * a leader and this node applied up to the commit index and admits
 * clients, and the last enforcement passes were clean; else 503 with the
 * reasons. /healthz only says the process is alive. */
static void node_api_readyz(struct node_http_req *r, void *data)
{
    struct node *n = data;
    json_t *why = json_array();
    if (why == NULL) {
        node_api_error(r, 500, "out of memory");
        return;
    }
    enum node_sup_state sup = node_sup_state(n->sup);
    if (sup != NODE_SUP_RUNNING) {
        json_array_append_new(
            why, json_sprintf("openvpn: %s", node_sup_state_name(sup)));
    }
    if (!n->mgmt_up) {
        json_array_append_new(why, json_string("management: link down"));
    }
    if (n->rft != NULL) {
        node_api_ready_cluster(n, why);
    }
    node_api_ready_enforce(n, why);
    bool ready = json_array_size(why) == 0;
    node_http_respond_json(
        r, ready ? 200 : 503,
        json_pack("{s:b, s:o}", "ready", ready, "reasons", why));
}

int node_api_register(struct node *n)
{
    int rv = node_http_route(n->http, "GET", "/healthz", node_api_healthz, n);
    if (rv == 0) {
        rv = node_http_route(n->http, "GET", "/readyz", node_api_readyz, n);
    }
    if (rv == 0) {
        rv = node_http_route(n->http, "GET", "/v1/sessions", node_api_sessions,
                             n);
    }
    if (rv == 0) {
        rv = node_http_route(n->http, "POST", "/v1/sessions/kill",
                             node_api_kill, n);
    }
    if (rv == 0) {
        rv = node_http_route(n->http, "GET", "/v1/upstream", node_api_upstream,
                             n);
    }
    return rv;
}
