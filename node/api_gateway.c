/* node/api_gateway: draining and activating gateways, and this node's
 * failover view.
 *
 *   POST /v1/gateways/drain     {"gateway", "force"?}  -> DRAINING
 *   POST /v1/gateways/activate  {"gateway"}            -> ACTIVE
 *   POST /v1/gateways/standby   {"gateway"}            -> STANDBY
 *   GET  /v1/failover           fenced?, own state, counters, routes
 *
 * A state change answers once raft committed it (200 {"gateway", "state"}),
 * or failed (503 no leader: retry, 409 refused by the FSM, 404 unknown
 * gateway, 400 bad body). The request's subject is the command's actor,
 * so the audit record names the operator. Draining the last active
 * gateway is refused (409) unless "force" is true: it would leave the
 * clients nowhere to go. The FSM decides that, in log order, so
 * two drains at once cannot both pass. Any gateway can be named from any
 * node; the named gateway acts on its state within a tick.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "node/node.h"
#include "proto/proto.h"

/* One state change waiting for raft. */
struct node_api_gw_change {
    struct node_http_req *req; /* NULL once the server cancelled it */
    char gateway[PROTO_ID_MAX];
    enum proto_gw_state state;
};

static void node_api_gw_error(struct node_http_req *r,
                              unsigned status,
                              const char *msg)
{
    node_http_respond_json(r, status, json_pack("{s:s}", "error", msg));
}

/* The 503 text for a proposal that did not commit: all of them are worth
 * retrying, which the text says. */
static void node_api_gw_unavailable(struct node_http_req *r, int status)
{
    char msg[160];
    if (status == OVHA_ENOTLEADER) {
        snprintf(msg, sizeof(msg), "no raft leader; retry");
    } else if (status == OVHA_EUNKNOWN) {
        snprintf(msg, sizeof(msg),
                 "outcome unknown (raft leadership changed); check the "
                 "state and retry");
    } else {
        snprintf(msg, sizeof(msg), "%s; retry", ovha_strerror(status));
    }
    node_api_gw_error(r, 503, msg);
}

static void node_api_gw_done_cb(void *data,
                                int status,
                                const struct proto_result *res)
{
    struct node_api_gw_change *ch = data;
    struct node_http_req *r = ch->req;
    if (r != NULL) {
        node_http_req_set_cancel(r, NULL, NULL);
        if (status != 0) {
            node_api_gw_unavailable(r, status);
        } else if (res->status != PROTO_STATUS_OK) {
            char msg[300];
            snprintf(msg, sizeof(msg), "%s: %s", proto_reason_name(res->reason),
                     res->detail);
            node_api_gw_error(r, 409, msg);
        } else {
            node_http_respond_json(
                r, 200,
                json_pack("{s:s, s:s}", "gateway", ch->gateway, "state",
                          proto_gw_state_name(ch->state)));
        }
    }
    ovha_free(ch);
}

static void node_api_gw_cancel_cb(struct node_http_req *r, void *data)
{
    struct node_api_gw_change *ch = data;
    (void)r;
    ch->req = NULL; /* the proposal callback still frees ch */
}

static void node_api_gw_propose(struct node *n,
                                struct node_http_req *r,
                                const char *gateway,
                                enum proto_gw_state state,
                                bool force)
{
    struct node_api_gw_change *ch = ovha_calloc(1, sizeof(*ch));
    if (ch == NULL) {
        node_api_gw_error(r, 500, "out of memory");
        return;
    }
    ch->req = r;
    ch->state = state;
    ovha_strlcpy(ch->gateway, gateway, sizeof(ch->gateway));
    node_http_req_set_cancel(r, node_api_gw_cancel_cb, ch);
    int rv = node_repl_set_gateway_state_as(n->repl, gateway, (int)state, force,
                                            node_http_req_subject(r),
                                            node_api_gw_done_cb, ch);
    if (rv != 0) {
        node_http_req_set_cancel(r, NULL, NULL);
        ovha_free(ch);
        node_api_gw_unavailable(r, rv);
    }
}

/* The body {"gateway": known id, "force"?: bool} ("force" only when
 * with_force); answers 4xx and returns NULL on anything else. The caller
 * frees the JSON. */
static json_t *node_api_gw_body(struct node *n,
                                struct node_http_req *r,
                                bool with_force,
                                const char **ret_gw,
                                bool *ret_force)
{
    size_t len = 0;
    const char *body = node_http_req_body(r, &len);
    json_error_t jerr;
    json_t *j = json_loadb(body != NULL ? body : "", len, 0, &jerr);
    int force = 0, rv = -1;
    struct fsm_gateway_info info;
    if (j != NULL) {
        rv = with_force ? json_unpack(j, "{s:s, s?:b !}", "gateway", ret_gw,
                                      "force", &force)
                        : json_unpack(j, "{s:s !}", "gateway", ret_gw);
    }
    if (rv != 0) {
        json_decref(j);
        node_api_gw_error(r, 400,
                          with_force ? "body must be {\"gateway\": string, "
                                       "\"force\"?: boolean}"
                                     : "body must be {\"gateway\": string}");
        return NULL;
    }
    if (fsm_query_gateway(n->fsm, *ret_gw, &info) != 0) {
        json_decref(j);
        node_api_gw_error(r, 404, "unknown gateway");
        return NULL;
    }
    *ret_force = force != 0;
    return j;
}

static bool node_api_gw_clustered(struct node *n, struct node_http_req *r)
{
    if (n->rft == NULL || n->repl == NULL || n->fsm == NULL) {
        node_api_gw_error(r, 409,
                          "standalone node: no cluster section in the config");
        return false;
    }
    return true;
}

static void node_api_gw_drain(struct node_http_req *r, void *data)
{
    struct node *n = data;
    const char *gw = NULL;
    bool force = false;
    if (!node_api_gw_clustered(n, r)) {
        return;
    }
    json_t *j = node_api_gw_body(n, r, true, &gw, &force);
    if (j == NULL) {
        return;
    }
    LOG_INFO("api", "drain of gateway %s requested by %s%s", gw,
             node_http_req_subject(r), force ? " (forced)" : "");
    node_api_gw_propose(n, r, gw, PROTO_GW_DRAINING, force);
    json_decref(j);
}

static void node_api_gw_activate(struct node_http_req *r, void *data)
{
    struct node *n = data;
    const char *gw = NULL;
    bool force = false;
    if (!node_api_gw_clustered(n, r)) {
        return;
    }
    /* "force" is accepted and ignored, as before standby existed. */
    json_t *j = node_api_gw_body(n, r, true, &gw, &force);
    if (j == NULL) {
        return;
    }
    LOG_INFO("api", "activation of gateway %s requested by %s", gw,
             node_http_req_subject(r));
    node_api_gw_propose(n, r, gw, PROTO_GW_ACTIVE, false);
    json_decref(j);
}

/* STANDBY: the gateway stays up and known but admits no new client
 * (node_failover_refusal); its sessions are left alone (a drain moves
 * them). The FSM does not refuse it for the last active gateway, and a
 * gateway with cluster.standby set may promote itself again when too few
 * others are active. */
static void node_api_gw_standby(struct node_http_req *r, void *data)
{
    struct node *n = data;
    const char *gw = NULL;
    bool force = false;
    if (!node_api_gw_clustered(n, r)) {
        return;
    }
    json_t *j = node_api_gw_body(n, r, false, &gw, &force);
    if (j == NULL) {
        return;
    }
    LOG_INFO("api", "standby of gateway %s requested by %s", gw,
             node_http_req_subject(r));
    node_api_gw_propose(n, r, gw, PROTO_GW_STANDBY, false);
    json_decref(j);
}

/* The bridge's side of the reconciler, when bridged. */
static void node_api_gw_fdb(json_t *o, struct node_routes *nr)
{
    struct node_routes_stats rs;
    node_routes_get_stats(nr, &rs);
    if (!rs.bridged) {
        return;
    }
    json_object_set_new(
        o, "fdb",
        json_pack("{s:I, s:I, s:I, s:I, s:I}", "desired",
                  (json_int_t)rs.fdb.desired, "added", (json_int_t)rs.fdb.added,
                  "replaced", (json_int_t)rs.fdb.replaced, "removed",
                  (json_int_t)rs.fdb.removed, "attached",
                  (json_int_t)rs.fdb.attached));
}

static void node_api_gw_failover(struct node_http_req *r, void *data)
{
    struct node *n = data;
    struct node_failover_stats st;
    if (n->failover == NULL) {
        node_api_gw_error(r, 409,
                          "standalone node: no cluster section in the config");
        return;
    }
    node_failover_get_stats(n->failover, &st);
    const char *refusal = node_failover_refusal(n->failover);
    json_t *o = json_pack(
        "{s:b, s:s?, s:I, s:I, s:I, s:I, s:I}", "fenced", st.fenced, "refusing",
        refusal, "fences", (json_int_t)st.fences, "fence_kills",
        (json_int_t)st.fence_kills, "drain_kills", (json_int_t)st.drain_kills,
        "marked_down", (json_int_t)st.marked_down, "role_changes",
        (json_int_t)st.role_changes);
    if (o != NULL && n->routes != NULL) {
        struct node_routes_stats rs;
        node_routes_get_stats(n->routes, &rs);
        json_object_set_new(
            o, "routes",
            json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:s}", "passes",
                      (json_int_t)rs.passes, "failures",
                      (json_int_t)rs.failures, "desired",
                      (json_int_t)rs.desired, "added", (json_int_t)rs.added,
                      "replaced", (json_int_t)rs.replaced, "removed",
                      (json_int_t)rs.removed, "last_error", rs.last_error));
    }
    if (o != NULL && n->routes != NULL) {
        node_api_gw_fdb(o, n->routes);
    }
    node_http_respond_json(r, 200, o);
}

int node_api_gateway_register(struct node *n)
{
    int rv = node_http_route(n->http, "POST", "/v1/gateways/drain",
                             node_api_gw_drain, n);
    if (rv == 0) {
        rv = node_http_route(n->http, "POST", "/v1/gateways/activate",
                             node_api_gw_activate, n);
    }
    if (rv == 0) {
        rv = node_http_route(n->http, "POST", "/v1/gateways/standby",
                             node_api_gw_standby, n);
    }
    if (rv == 0) {
        rv = node_http_route(n->http, "GET", "/v1/failover",
                             node_api_gw_failover, n);
    }
    return rv;
}
