/* node/api_policy: the firewall policy through the admin API.
 *
 *   GET    /v1/policy/firewall           {"policy": document} or 404
 *   PUT    /v1/policy/firewall           body = document -> replicated
 *   DELETE /v1/policy/firewall           no policy: nothing filtered
 *   POST   /v1/policy/firewall/explain   {"src", "dst", "proto", "port"?}
 *   GET    /v1/policy/firewall/compiled  this gateway's table and counters
 *
 * A document is checked (enforce/fw's strict parser) before it is
 * proposed: 400 names the JSON path of the first problem and nothing is
 * proposed. Writes answer once raft committed them (200), or 503 (no
 * leader, shutting down). Every gateway applies the new policy within
 * cluster.route_interval_ms, to live clients, without reconnecting them.
 * Explain answers from this node's applied state: the policy row and the
 * live sessions' addresses and groups.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "enforce/fw.h"
#include "fsm/fsm.h"
#include "node/node.h"

/* One write waiting for raft. */
struct node_api_pol_write {
    struct node_http_req *req; /* NULL once the server cancelled it */
    struct node *n;
    bool deleted;
};

static void node_api_pol_error(struct node_http_req *r,
                               unsigned status,
                               const char *msg)
{
    node_http_respond_json(r, status, json_pack("{s:s}", "error", msg));
}

/* Answers 409 and returns false where there is no firewall. */
static bool node_api_pol_ready(struct node *n, struct node_http_req *r)
{
    if (n->repl == NULL || n->fsm == NULL) {
        node_api_pol_error(r, 409,
                           "standalone node: no cluster section in the config");
        return false;
    }
    if (n->fw == NULL) {
        node_api_pol_error(r, 409,
                           "bridged gateway (openvpn.dev_type tap): the "
                           "firewall filters tun devices only");
        return false;
    }
    return true;
}

static void node_api_pol_done_cb(void *data,
                                 int status,
                                 const struct proto_result *res)
{
    struct node_api_pol_write *w = data;
    struct node_http_req *r = w->req;
    if (r != NULL) {
        node_http_req_set_cancel(r, NULL, NULL);
        if (status != 0) {
            node_api_pol_error(r, 503, ovha_strerror(status));
        } else if (res->status != PROTO_STATUS_OK) {
            char msg[300];
            snprintf(msg, sizeof(msg), "%s: %s", proto_reason_name(res->reason),
                     res->detail);
            node_api_pol_error(r, w->deleted ? 404 : 409, msg);
        } else {
            node_fw_kick(w->n->fw);
            node_http_respond_json(
                r, 200,
                json_pack("{s:s, s:s}", "policy", NODE_FW_POLICY_NAME, "state",
                          w->deleted ? "deleted" : "committed"));
        }
    }
    ovha_free(w);
}

static void node_api_pol_cancel_cb(struct node_http_req *r, void *data)
{
    struct node_api_pol_write *w = data;
    (void)r;
    w->req = NULL; /* the proposal callback still frees w */
}

static void node_api_pol_propose(struct node *n,
                                 struct node_http_req *r,
                                 const char *body)
{
    struct node_api_pol_write *w = ovha_calloc(1, sizeof(*w));
    if (w == NULL) {
        node_api_pol_error(r, 500, "out of memory");
        return;
    }
    w->req = r;
    w->n = n;
    w->deleted = body == NULL;
    node_http_req_set_cancel(r, node_api_pol_cancel_cb, w);
    int rv =
        node_repl_policy_put(n->repl, NODE_FW_POLICY_NAME, body,
                             node_http_req_subject(r), node_api_pol_done_cb, w);
    if (rv != 0) {
        node_http_req_set_cancel(r, NULL, NULL);
        ovha_free(w);
        node_api_pol_error(r, 503, ovha_strerror(rv));
    }
}

static void node_api_pol_get(struct node_http_req *r, void *data)
{
    struct node *n = data;
    char *body = NULL;
    if (!node_api_pol_ready(n, r)) {
        return;
    }
    int rv = fsm_query_policy(n->fsm, NODE_FW_POLICY_NAME, &body);
    if (rv == -ENOENT) {
        node_api_pol_error(r, 404, "no firewall policy: nothing is filtered");
        return;
    }
    json_t *doc = rv == 0 ? json_loads(body, 0, NULL) : NULL;
    ovha_free(body);
    if (doc == NULL) {
        node_api_pol_error(r, 500, "reading the replicated policy failed");
        return;
    }
    node_http_respond_json(r, 200, json_pack("{s:o}", "policy", doc));
}

static void node_api_pol_put(struct node_http_req *r, void *data)
{
    struct node *n = data;
    size_t len = 0;
    const char *body = node_http_req_body(r, &len);
    struct enf_fw_policy *p = NULL;
    char err[300];
    if (!node_api_pol_ready(n, r)) {
        return;
    }
    if (body == NULL || len == 0 || len >= PROTO_POLICY_MAX ||
        memchr(body, '\0', len) != NULL) {
        node_api_pol_error(r, 400,
                           "the body must be a policy document "
                           "(JSON, at most 65535 bytes)");
        return;
    }
    if (enf_fw_policy_parse(body, len, &p, err, sizeof(err)) != 0) {
        node_api_pol_error(r, 400, err);
        return;
    }
    enf_fw_policy_free(p);
    char *copy = ovha_malloc(len + 1);
    if (copy == NULL) {
        node_api_pol_error(r, 500, "out of memory");
        return;
    }
    memcpy(copy, body, len);
    copy[len] = '\0';
    LOG_INFO("api", "firewall policy put (%zu bytes)", len);
    node_api_pol_propose(n, r, copy);
    ovha_free(copy);
}

static void node_api_pol_delete(struct node_http_req *r, void *data)
{
    struct node *n = data;
    if (node_api_pol_ready(n, r)) {
        LOG_INFO("api", "firewall policy delete");
        node_api_pol_propose(n, r, NULL);
    }
}

/* ---- explain
 * ------------------------------------------------------------------- */

struct node_api_pol_members {
    struct enf_fw_member *v;
    char (*ips)[PROTO_ADDR_MAX];
    char (*bufs)[PROTO_GROUPS_MAX];
    const char *(*names)[32];
    size_t n, cap;
    int err;
};

static int node_api_pol_add(struct node_api_pol_members *m,
                            const char *ip,
                            const char *groups)
{
    if (m->n == m->cap) {
        return -ENOSPC; /* counted first, on the same loop turn */
    }
    size_t i = m->n++;
    ovha_strlcpy(m->ips[i], ip, sizeof(m->ips[i]));
    ovha_strlcpy(m->bufs[i], groups, sizeof(m->bufs[i]));
    size_t k = 0;
    for (char *save = NULL, *t = strtok_r(m->bufs[i], ",", &save);
         t != NULL && k < 32; t = strtok_r(NULL, ",", &save)) {
        m->names[i][k++] = t;
    }
    m->v[i] = (struct enf_fw_member){ .ip = m->ips[i],
                                      .groups = m->names[i],
                                      .ngroups = k };
    return 0;
}

static int node_api_pol_count_cb(const struct fsm_session_info *s, void *data)
{
    (void)s;
    *(size_t *)data += 2; /* at most an IPv4 and an IPv6 address */
    return 0;
}

/* Sizes the arrays for the sessions there are now. */
static int node_api_pol_alloc(struct node *n, struct node_api_pol_members *m)
{
    size_t cap = 0;
    int rv = fsm_query_sessions(n->fsm, NULL, node_api_pol_count_cb, &cap);
    if (rv != 0) {
        return rv;
    }
    m->cap = cap;
    m->v = ovha_calloc(cap + 1, sizeof(*m->v));
    m->ips = ovha_calloc(cap + 1, sizeof(*m->ips));
    m->bufs = ovha_calloc(cap + 1, sizeof(*m->bufs));
    m->names = ovha_calloc(cap + 1, sizeof(*m->names));
    return m->v != NULL && m->ips != NULL && m->bufs != NULL && m->names != NULL
               ? 0
               : -ENOMEM;
}

static int node_api_pol_session_cb(const struct fsm_session_info *s, void *data)
{
    struct node_api_pol_members *m = data;
    if (s->state == FSM_SESSION_ORPHANED) {
        return 0;
    }
    int rv = s->ip4[0] != '\0' ? node_api_pol_add(m, s->ip4, s->groups) : 0;
    if (rv == 0 && s->ip6[0] != '\0') {
        rv = node_api_pol_add(m, s->ip6, s->groups);
    }
    return rv;
}

static void node_api_pol_members_free(struct node_api_pol_members *m)
{
    ovha_free(m->v);
    ovha_free(m->ips);
    ovha_free(m->bufs);
    ovha_free(m->names);
}

static int node_api_pol_proto(const char *s, enum enf_fw_proto *ret)
{
    static const char *const names[] = { "any", "tcp", "udp", "icmp" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(s, names[i]) == 0) {
            *ret = (enum enf_fw_proto)i;
            return 0;
        }
    }
    return -EINVAL;
}

static void node_api_pol_explain_with(struct node *n,
                                      struct node_http_req *r,
                                      const struct enf_fw_policy *p,
                                      const char *src,
                                      const char *dst,
                                      enum enf_fw_proto proto,
                                      json_int_t port)
{
    struct node_api_pol_members m = { 0 };
    struct enf_fw_explanation ex;
    char err[256];
    int rv = node_api_pol_alloc(n, &m);
    if (rv == 0) {
        rv = fsm_query_sessions(n->fsm, NULL, node_api_pol_session_cb, &m);
    }
    if (rv == 0) {
        rv = enf_fw_explain(p, m.v, m.n, src, dst, proto, (uint16_t)port, &ex,
                            err, sizeof(err));
    } else {
        snprintf(err, sizeof(err), "reading the replicated state: %s",
                 ovha_strerror(rv));
    }
    node_api_pol_members_free(&m);
    if (rv != 0) {
        node_api_pol_error(r, rv == -EINVAL ? 400 : 500, err);
        return;
    }
    node_http_respond_json(
        r, 200,
        json_pack("{s:s, s:s}", "verdict",
                  ex.verdict == ENF_FW_ACCEPT ? "accept" : "drop", "reason",
                  ex.reason));
}

static void node_api_pol_explain(struct node_http_req *r, void *data)
{
    struct node *n = data;
    size_t len = 0;
    const char *body = node_http_req_body(r, &len);
    const char *src = NULL, *dst = NULL, *ps = NULL;
    json_int_t port = 0;
    enum enf_fw_proto proto;
    if (!node_api_pol_ready(n, r)) {
        return;
    }
    json_t *j = json_loadb(body != NULL ? body : "", len, 0, NULL);
    if (j == NULL ||
        json_unpack(j, "{s:s, s:s, s:s, s?:I !}", "src", &src, "dst", &dst,
                    "proto", &ps, "port", &port) != 0 ||
        node_api_pol_proto(ps, &proto) != 0 || port < 0 || port > 65535) {
        json_decref(j);
        node_api_pol_error(r, 400,
                           "body must be {\"src\": IP, \"dst\": IP, \"proto\": "
                           "tcp|udp|icmp|any, \"port\"?: 0..65535}");
        return;
    }
    char *doc = NULL;
    struct enf_fw_policy *p = NULL;
    char err[300];
    int rv = fsm_query_policy(n->fsm, NODE_FW_POLICY_NAME, &doc);
    if (rv == -ENOENT) {
        node_http_respond_json(r, 200,
                               json_pack("{s:s, s:s}", "verdict", "accept",
                                         "reason", "no firewall policy"));
    } else if (rv != 0 || enf_fw_policy_parse(doc, strlen(doc), &p, err,
                                              sizeof(err)) != 0) {
        node_api_pol_error(r, 500, "the replicated policy is not usable");
    } else {
        node_api_pol_explain_with(n, r, p, src, dst, proto, port);
    }
    enf_fw_policy_free(p);
    ovha_free(doc);
    json_decref(j);
}

static void node_api_pol_compiled(struct node_http_req *r, void *data)
{
    struct node *n = data;
    struct node_fw_stats st;
    if (!node_api_pol_ready(n, r)) {
        return;
    }
    node_fw_get_stats(n->fw, &st);
    char *text = node_fw_compiled(n->fw);
    json_t *o = json_pack(
        "{s:b, s:s?, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:s}}", "enforcing",
        st.enforcing, "table", text, "stats", "passes", (json_int_t)st.passes,
        "failures", (json_int_t)st.failures, "applies", (json_int_t)st.applies,
        "updates", (json_int_t)st.updates, "drifts", (json_int_t)st.drifts,
        "members", (json_int_t)st.members, "last_error", st.last_error);
    free(text);
    node_http_respond_json(r, 200, o);
}

int node_api_policy_register(struct node *n)
{
    static const struct {
        const char *method, *path;
        node_http_handler_fn fn;
    } routes[] = {
        { "GET", "/v1/policy/firewall", node_api_pol_get },
        { "PUT", "/v1/policy/firewall", node_api_pol_put },
        { "DELETE", "/v1/policy/firewall", node_api_pol_delete },
        { "POST", "/v1/policy/firewall/explain", node_api_pol_explain },
        { "GET", "/v1/policy/firewall/compiled", node_api_pol_compiled },
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
