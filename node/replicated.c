/* node/replicated: decisions through the replicated state (clustered mode).
 *
 * Happy path of a CONNECT: the rules source (local policy, or the upstream
 * through its cache tiers) says allow, with routes, iroutes, pushes and
 * perhaps a pool, a session limit and a quota -> SessionOpen is proposed
 * through raft (forwarded to the leader from a follower) -> the committed
 * result carries the session id and the address the FSM leased (sticky
 * per CN, cluster-wide) after applying the session limit cluster-wide
 * (evict the oldest session wherever it is, or refuse) -> the connection
 * path sends client-auth. A client with a static IP keeps it; its session
 * is still replicated (pool4 empty). A REAUTH re-asks the rules only.
 *
 * Around it, timers propose what the cluster must know about this gateway:
 * GatewayHeartbeat every gateway_heartbeat_ms, one UsageCharge batch of
 * byte deltas every usage_interval_ms (sequence numbers taken from the
 * real clock, so a restarted node never reuses one), PoolPut of the
 * configured pool at start (every node proposes the same bytes under the
 * same req_id, so it applies once). ESTABLISHED and DISCONNECT become
 * SessionEstablished and SessionClose.
 *
 * Reconciliation (every second): a local client whose replicated session
 * no longer exists (evicted or taken over by a newer session of its CN on
 * another gateway) is killed; a replicated session of this gateway that no
 * local client holds (left over from before a restart) is closed.
 *
 * Failure modes: no leader / lost leadership / deadline -> the CONNECT is
 * denied with "cluster unavailable" (the client retries); a refusal from
 * the FSM (pool exhausted, session limit, gateway not active) -> deny with
 * the FSM's reason; a decision that commits after the connection path gave
 * up on it -> its session is closed again so no lease leaks.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "enforce/fdb.h"
#include "fsm/fsm.h"
#include "node/clients.h"
#include "node/decide.h"
#include "node/failover.h"
#include "node/firewall.h"
#include "node/routes.h"
#include "proto/proto.h"
#include "raft/raft.h"

#define NODE_REPL_RECONCILE_MS 1000
#define NODE_REPL_STALE_MS                     \
    10000 /* a session older than this must be \
             held by a local client */

struct node_repl_usage {
    uint64_t session_id;
    char cn[256];
    uint64_t last_in, last_out; /* cumulative counters already charged */
    uint64_t cur_in, cur_out;   /* newest cumulative counters */
};

struct node_repl {
    const struct node_cfg *cfg;
    struct rft *rft;
    struct fsm *fsm;
    struct node_rules rules;
    struct node_failover *fo;   /* admission gate (NULL = none) */
    struct node_routes *routes; /* kicked when local subnets appear */
    struct node_fw *fw;         /* kicked when a local session opens */
    struct node_clients *clients;
    uint64_t req_base; /* random per process: req_ids never collide */
    uint64_t req_seq;
    uint64_t usage_seq;
    uv_timer_t heartbeat, usage, reconcile;
    struct node_repl_usage *usage_rows;
    size_t nusage, capusage;
    void (*close_cb)(void *data);
    void *close_data;
    int pending_closes;
};

/* One CONNECT being decided: first the rules, then the SessionOpen. */
struct node_repl_call {
    struct node_repl *r;
    node_decide_cb cb;
    void *data;
    bool cancelled;
    bool proposing;  /* the rules answered; SessionOpen is in flight */
    bool rules_done; /* the rules answered */
    bool in_lookup;  /* inside rules.lookup(): decide_op frees */
    void *rules_handle;
    bool reauth;
    uint64_t cid;
    unsigned subnets_pending; /* SubnetRegister proposals out */
    bool subnet_temp;         /* the failure may pass on another try */
    char subnet_err[200];     /* first SubnetRegister failure */
    char cn[PROTO_CN_MAX];
    char real_addr[PROTO_ADDR_MAX];
    struct node_decision d; /* the rules' answer, completed on commit */
};

/* ---- commands ------------------------------------------------------------ */

static uint64_t node_repl_req_id(struct node_repl *r)
{
    return r->req_base + ++r->req_seq;
}

static void node_repl_cmd_init(struct node_repl *r,
                               struct proto_cmd *c,
                               enum proto_cmd_kind kind)
{
    memset(c, 0, sizeof(*c));
    c->version = PROTO_VERSION;
    c->req_id = node_repl_req_id(r);
    ovha_strlcpy(c->gateway, r->cfg->id, sizeof(c->gateway));
    c->ts_ms = ovha_now_real_ms();
    c->kind = kind;
}

static void node_repl_done_cb(void *data,
                              int status,
                              const struct proto_result *res)
{
    (void)data;
    if (status != 0) {
        LOG_DEBUG("repl", "background proposal: %s", ovha_strerror(status));
    } else if (res->status != PROTO_STATUS_OK && !res->replayed) {
        LOG_DEBUG("repl", "background proposal refused: %s %s",
                  proto_reason_name(res->reason), res->detail);
    }
}

/* Encodes and proposes c with the given callback. Clears c. */
static int node_repl_propose(struct node_repl *r,
                             struct proto_cmd *c,
                             rft_propose_cb cb,
                             void *data,
                             uint64_t timeout_ms)
{
    uint8_t *buf;
    size_t len;
    int rv = proto_cmd_encode(c, &buf, &len);
    proto_cmd_clear(c);
    if (rv != 0) {
        return rv;
    }
    rv = rft_propose(r->rft, buf, len, timeout_ms, cb, data);
    ovha_free(buf);
    return rv;
}

/* Fire and forget: the outcome is only logged. */
static void node_repl_background(struct node_repl *r, struct proto_cmd *c)
{
    int rv = node_repl_propose(r, c, node_repl_done_cb, r, 0);
    if (rv != 0) {
        LOG_WARN("repl", "cannot propose %s: %s", proto_cmd_kind_name(c->kind),
                 ovha_strerror(rv));
    }
}

static void node_repl_close_session(struct node_repl *r,
                                    uint64_t session_id,
                                    const char *reason)
{
    struct proto_cmd c;
    node_repl_cmd_init(r, &c, PROTO_CMD_SESSION_CLOSE);
    c.u.session_close.session_id = session_id;
    ovha_strlcpy(c.u.session_close.reason, reason,
                 sizeof(c.u.session_close.reason));
    node_repl_background(r, &c);
}

/* "YYYY-MM" in UTC: the usage and quota period. */
static void node_repl_period(char *out, size_t len)
{
    time_t t = (time_t)(ovha_now_real_ms() / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, len, "%Y-%m", &tm);
}

/* ---- deciding ------------------------------------------------------------ */

static void node_repl_subnets_done(struct node_repl_call *call)
{
    struct node_repl *r = call->r;
    struct node_decision *d = &call->d;
    if (call->cancelled || call->subnet_err[0] != '\0') {
        node_repl_close_session(
            r, d->session_id,
            call->cancelled ? "decision too late" : "subnet not registered");
    }
    if (call->cancelled) {
        ovha_free(call);
        return;
    }
    if (call->subnet_err[0] != '\0') {
        d->allow = false;
        snprintf(d->reason, sizeof(d->reason), "subnet not registered: %s",
                 call->subnet_err);
        ovha_strlcpy(
            d->client_reason,
            call->subnet_temp ? NODE_TEMP_CLIENT_REASON : "Access denied",
            sizeof(d->client_reason));
    } else if (r->routes != NULL) {
        node_routes_kick(r->routes); /* its iroutes need a tun route now */
    }
    call->cb(d, call->data);
    ovha_free(call);
}

/* The first failure is kept; an overlap with another CN's subnet is final,
 * anything else (no leader) may pass on another try. */
static void node_repl_subnet_fail(struct node_repl_call *call,
                                  const char *why,
                                  bool temporary)
{
    if (call->subnet_err[0] == '\0') {
        ovha_strlcpy(call->subnet_err, why, sizeof(call->subnet_err));
        call->subnet_temp = temporary;
    }
}

static void node_repl_subnet_cb(void *data,
                                int status,
                                const struct proto_result *res)
{
    struct node_repl_call *call = data;
    if (status != 0) {
        node_repl_subnet_fail(call, ovha_strerror(status), true);
    } else if (res->status != PROTO_STATUS_OK) {
        char why[200];
        snprintf(why, sizeof(why), "%s %.180s", proto_reason_name(res->reason),
                 res->detail);
        node_repl_subnet_fail(call, why, false);
    }
    if (--call->subnets_pending == 0) {
        node_repl_subnets_done(call);
    }
}

/* A site-to-site client's iroutes become registered subnets, cluster-wide
 * and without overlap, before its client-auth goes out. The last callback
 * (or this function, if every proposal failed at once) finishes the call. */
static void node_repl_register_subnets(struct node_repl_call *call)
{
    struct node_repl *r = call->r;
    const struct node_decision *d = &call->d;
    call->subnets_pending = 1; /* held until every proposal is out */
    for (size_t i = 0; i < d->niroutes; i++) {
        struct proto_cmd c;
        node_repl_cmd_init(r, &c, PROTO_CMD_SUBNET_REGISTER);
        snprintf(c.u.subnet_register.cidr, sizeof(c.u.subnet_register.cidr),
                 "%s/%u", d->iroutes[i].addr, d->iroutes[i].prefix);
        ovha_strlcpy(c.u.subnet_register.owner_cn, call->cn,
                     sizeof(c.u.subnet_register.owner_cn));
        call->subnets_pending++;
        int rv = node_repl_propose(r, &c, node_repl_subnet_cb, call,
                                   r->cfg->decision_deadline_ms);
        if (rv != 0) {
            call->subnets_pending--;
            node_repl_subnet_fail(call, ovha_strerror(rv), true);
        }
    }
    if (--call->subnets_pending == 0) {
        node_repl_subnets_done(call);
    }
}

static void node_repl_decided_cb(void *data,
                                 int status,
                                 const struct proto_result *res)
{
    struct node_repl_call *call = data;
    struct node_repl *r = call->r;
    struct node_decision *d = &call->d;
    bool ok = status == 0 && res->status == PROTO_STATUS_OK;
    if (call->cancelled) {
        /* The connection path already denied this client. */
        if (ok) {
            node_repl_close_session(r, res->session_id, "decision too late");
        }
        ovha_free(call);
        return;
    }
    if (status != 0) {
        d->allow = false;
        snprintf(d->reason, sizeof(d->reason), "cluster unavailable: %s",
                 ovha_strerror(status));
        ovha_strlcpy(d->client_reason, NODE_TEMP_CLIENT_REASON,
                     sizeof(d->client_reason));
    } else if (!ok) {
        d->allow = false;
        /* The detail may be cut to fit: the reason name comes first. */
        size_t n = ovha_strlcpy(d->reason, proto_reason_name(res->reason),
                                sizeof(d->reason));
        if (res->detail[0] != '\0' && n + 2 < sizeof(d->reason)) {
            ovha_strlcpy(d->reason + n, ": ", sizeof(d->reason) - n);
            ovha_strlcpy(d->reason + n + 2, res->detail,
                         sizeof(d->reason) - n - 2);
        }
        /* This gateway may not admit now; another one can. */
        bool transient = res->reason == PROTO_R_GATEWAY_NOT_ACTIVE ||
                         res->reason == PROTO_R_UNKNOWN_GATEWAY;
        ovha_strlcpy(d->client_reason,
                     transient ? NODE_TEMP_CLIENT_REASON : "Access denied",
                     sizeof(d->client_reason));
    } else {
        d->session_id = res->session_id;
        d->over_quota = res->over_quota;
        if (res->over_quota) {
            LOG_INFO("repl",
                     "session %" PRIu64
                     " over quota: admitted, "
                     "throttled",
                     res->session_id);
        }
        node_fw_kick(r->fw); /* its address joins its groups' sets */
        if (d->ip[0] == '\0') {
            ovha_strlcpy(d->ip, res->ip4, sizeof(d->ip));
        }
        if (res->takeover) {
            LOG_INFO("repl",
                     "session %llu took over session %llu of "
                     "gateway %s",
                     (unsigned long long)res->session_id,
                     (unsigned long long)res->old_session_id, res->old_gateway);
        }
        if (d->niroutes > 0) {
            node_repl_register_subnets(call); /* it answers */
            return;
        }
    }
    call->cb(d, call->data);
    ovha_free(call);
}

/* The upstream contract's default is refuse when it names max_sessions;
 * a limit from the config comes with the config's on_excess. */
static enum proto_on_excess node_repl_excess(const struct node_repl *r,
                                             const struct node_grant *g)
{
    enum node_excess e = g->on_excess;
    if (e == NODE_EXCESS_DEFAULT && g->max_sessions != 0) {
        e = NODE_EXCESS_REFUSE;
    }
    if (e == NODE_EXCESS_DEFAULT) {
        return r->cfg->cluster.refuse_excess ? PROTO_EXCESS_REFUSE
                                             : PROTO_EXCESS_EVICT_OLDEST;
    }
    return e == NODE_EXCESS_REFUSE ? PROTO_EXCESS_REFUSE
                                   : PROTO_EXCESS_EVICT_OLDEST;
}

/* The rules allowed: lease an address and apply the cluster-wide session
 * limit in one SessionOpen. Returns 0 or a negative error. */
static int node_repl_open(struct node_repl_call *call,
                          const struct node_grant *g)
{
    struct node_repl *r = call->r;
    struct proto_cmd c;
    node_repl_cmd_init(r, &c, PROTO_CMD_SESSION_OPEN);
    struct proto_session_open *o = &c.u.session_open;
    ovha_strlcpy(o->cn, call->cn, sizeof(o->cn));
    o->cid = call->cid;
    ovha_strlcpy(o->real_addr, call->real_addr, sizeof(o->real_addr));
    if (call->d.ip[0] == '\0') {
        ovha_strlcpy(o->pool4,
                     g->pool[0] != '\0' ? g->pool : r->cfg->cluster.pool_name,
                     sizeof(o->pool4));
    }
    o->max_sessions =
        g->max_sessions != 0 ? g->max_sessions : r->cfg->cluster.max_sessions;
    o->on_excess = node_repl_excess(r, g);
    o->quota_admit = r->cfg->cluster.quota_throttle;
    ovha_strlcpy(o->groups, g->groups, sizeof(o->groups));
    /* Usage is accounted per calendar month (UsageCharge periods); other
     * quota periods need per-period accounting (issue 7). */
    if (strcmp(g->quota_period, "month") == 0) {
        o->quota_bytes = g->quota_bytes;
    } else if (g->quota_bytes != 0) {
        LOG_WARN("repl", "cn=\"%s\": quota period %s not enforced yet",
                 call->cn, g->quota_period);
    }
    node_repl_period(o->period, sizeof(o->period));
    call->proposing = true;
    /* Leave the connection path's deadline the last word. */
    uint64_t timeout = r->cfg->decision_deadline_ms;
    return node_repl_propose(r, &c, node_repl_decided_cb, call, timeout);
}

static void node_repl_grant_cb(const struct node_grant *g, void *data)
{
    struct node_repl_call *call = data;
    call->rules_done = true;
    call->rules_handle = NULL;
    call->d = g->d;
    call->d.source = g->source;
    call->d.down_kbps = g->down_kbps;
    call->d.up_kbps = g->up_kbps;
    if (call->d.allow && !call->reauth) {
        int rv = node_repl_open(call, g);
        if (rv == 0) {
            return;
        }
        call->d.allow = false;
        snprintf(call->d.reason, sizeof(call->d.reason),
                 "cluster unavailable: %s", ovha_strerror(rv));
        ovha_strlcpy(call->d.client_reason, NODE_TEMP_CLIENT_REASON,
                     sizeof(call->d.client_reason));
    }
    /* A deny, a REAUTH (its session and address stand) or a failure. */
    call->cb(&call->d, call->data);
    if (!call->in_lookup) {
        ovha_free(call); /* the caller forgot the handle when cb fired */
    }
}

/* This gateway does not admit now (fenced, draining, standby): the client
 * is told to try its next remote. */
static void node_repl_refuse(const char *why, node_decide_cb cb, void *data)
{
    struct node_decision d;
    memset(&d, 0, sizeof(d));
    ovha_strlcpy(d.reason, why, sizeof(d.reason));
    ovha_strlcpy(d.client_reason, NODE_TEMP_CLIENT_REASON,
                 sizeof(d.client_reason));
    d.source = "failover";
    cb(&d, data);
}

static int node_repl_decide_op(void *impl,
                               const struct node_decision_req *req,
                               node_decide_cb cb,
                               void *data,
                               void **ret_handle)
{
    struct node_repl *r = impl;
    const char *refusal =
        r->fo != NULL && !req->reauth ? node_failover_refusal(r->fo) : NULL;
    if (refusal != NULL) {
        node_repl_refuse(refusal, cb, data);
        *ret_handle = NULL;
        return 0;
    }
    struct node_repl_call *call = ovha_calloc(1, sizeof(*call));
    if (call == NULL) {
        return -ENOMEM;
    }
    call->r = r;
    call->cb = cb;
    call->data = data;
    call->reauth = req->reauth;
    call->cid = req->cid;
    ovha_strlcpy(call->cn, req->cn, sizeof(call->cn));
    ovha_strlcpy(call->real_addr, req->real_ip, sizeof(call->real_addr));
    call->in_lookup = true;
    int rv = r->rules.ops->lookup(r->rules.impl, req, node_repl_grant_cb, call,
                                  &call->rules_handle);
    call->in_lookup = false;
    if (rv != 0) {
        ovha_free(call);
        return rv;
    }
    if (call->rules_done && !call->proposing) {
        /* Answered synchronously, without a proposal. */
        ovha_free(call);
        *ret_handle = NULL;
        return 0;
    }
    *ret_handle = call;
    return 0;
}

/* Waiting for the rules: stop asking and free. Waiting for the commit:
 * the proposal callback frees it (and closes a session that commits). */
static void node_repl_cancel_op(void *impl, void *handle)
{
    struct node_repl *r = impl;
    struct node_repl_call *call = handle;
    if (call == NULL) {
        return;
    }
    if (!call->rules_done) {
        r->rules.ops->cancel(r->rules.impl, call->rules_handle);
        ovha_free(call);
        return;
    }
    call->cancelled = true;
}

/* ---- session events ------------------------------------------------------ */

/* usage_rows is kept sorted by session id: a byte count per client every
 * interval looks its row up by bisection (issue 9). */
static size_t node_repl_usage_pos(const struct node_repl *r,
                                  uint64_t session_id)
{
    size_t lo = 0, hi = r->nusage;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->usage_rows[mid].session_id < session_id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static struct node_repl_usage *node_repl_usage_find(struct node_repl *r,
                                                    uint64_t session_id)
{
    size_t i = node_repl_usage_pos(r, session_id);
    return i < r->nusage && r->usage_rows[i].session_id == session_id
               ? &r->usage_rows[i]
               : NULL;
}

static void node_repl_closed_op(void *impl,
                                const char *cn,
                                const char *ip,
                                uint64_t session_id)
{
    struct node_repl *r = impl;
    (void)cn;
    (void)ip;
    if (session_id == 0) {
        return;
    }
    /* Keep its last byte delta: the next batch charges it, then drops it. */
    node_repl_close_session(r, session_id, "disconnect");
}

static void node_repl_established_op(void *impl, uint64_t session_id)
{
    struct node_repl *r = impl;
    struct proto_cmd c;
    node_repl_cmd_init(r, &c, PROTO_CMD_SESSION_ESTABLISHED);
    c.u.session_established.session_id = session_id;
    node_repl_background(r, &c);
}

/* A refused MAC (another client's, or over the per-session cap) is worth
 * a warning: it is a collision or a client forging source addresses. */
static void node_repl_mac_cb(void *data,
                             int status,
                             const struct proto_result *res)
{
    struct node_repl *r = data;
    if (status == 0 && res->status == PROTO_STATUS_OK) {
        if (r->routes != NULL) {
            node_routes_kick(r->routes); /* point the bridge at it now */
        }
        return;
    }
    if (status != 0) {
        LOG_WARN("repl", "MAC not registered: %s", ovha_strerror(status));
    } else if (!res->replayed) {
        LOG_WARN("repl", "MAC refused: %s: %s", proto_reason_name(res->reason),
                 res->detail);
    }
}

/* In tap mode each source MAC openvpn learned from a client (clients.c
 * finds them) goes into the replicated MAC map. */
static void node_repl_address_op(void *impl,
                                 uint64_t session_id,
                                 const char *cn,
                                 const char *addr)
{
    struct node_repl *r = impl;
    (void)cn; /* the FSM names it in the audit record */
    if (!r->cfg->openvpn.tap) {
        return;
    }
    struct proto_cmd c;
    node_repl_cmd_init(r, &c, PROTO_CMD_MAC_REGISTER);
    if (enf_fdb_mac_canon(addr, c.u.mac_register.mac) != 0) {
        LOG_WARN("repl",
                 "session=%" PRIu64 ": ignoring address %s (not a unicast MAC)",
                 session_id, addr);
        return;
    }
    c.u.mac_register.session_id = session_id;
    LOG_INFO("repl", "session=%" PRIu64 " mac=%s", session_id,
             c.u.mac_register.mac);
    int rv = node_repl_propose(r, &c, node_repl_mac_cb, r, 0);
    if (rv != 0) {
        LOG_WARN("repl", "cannot propose mac_register: %s", ovha_strerror(rv));
    }
}

static void node_repl_bytes_op(void *impl,
                               uint64_t session_id,
                               const char *cn,
                               uint64_t bytes_in,
                               uint64_t bytes_out)
{
    struct node_repl *r = impl;
    struct node_repl_usage *u = node_repl_usage_find(r, session_id);
    if (u == NULL) {
        if (r->nusage == r->capusage) {
            size_t cap = r->capusage ? 2 * r->capusage : 64;
            void *n = ovha_realloc(r->usage_rows, cap * sizeof(*u));
            if (n == NULL) {
                return;
            }
            r->usage_rows = n;
            r->capusage = cap;
        }
        /* Ids grow, so this is almost always the end. */
        size_t at = node_repl_usage_pos(r, session_id);
        memmove(&r->usage_rows[at + 1], &r->usage_rows[at],
                (r->nusage - at) * sizeof(*u));
        r->nusage++;
        u = &r->usage_rows[at];
        memset(u, 0, sizeof(*u));
        u->session_id = session_id;
        ovha_strlcpy(u->cn, cn, sizeof(u->cn));
    }
    u->cur_in = bytes_in;
    u->cur_out = bytes_out;
}

/* ---- timers -------------------------------------------------------------- */

static void node_repl_heartbeat_cb(uv_timer_t *t)
{
    struct node_repl *r = t->data;
    struct proto_cmd c;
    node_repl_cmd_init(r, &c, PROTO_CMD_GATEWAY_HEARTBEAT);
    ovha_strlcpy(c.u.gateway_heartbeat.addr, r->cfg->cluster.address,
                 sizeof(c.u.gateway_heartbeat.addr));
    char *colon = strrchr(c.u.gateway_heartbeat.addr, ':');
    if (colon != NULL) {
        *colon = '\0'; /* the underlay address, without the raft port */
    }
    node_repl_background(r, &c);
}

/* The charge pushed these CNs over their quota: act on the sessions that
 * are here (the FSM names the gateway of each; every gateway charges its
 * own clients, so each acts on its own). */
static void node_repl_usage_done_cb(void *data,
                                    int status,
                                    const struct proto_result *res)
{
    struct node_repl *r = data;
    node_repl_done_cb(data, status, res);
    if (status != 0 || res->status != PROTO_STATUS_OK || r->clients == NULL) {
        return;
    }
    for (size_t i = 0; i < res->nrefs; i++) {
        const struct proto_session_ref *ref = &res->refs[i];
        if (ref->kind != PROTO_REF_OVER_QUOTA ||
            strcmp(ref->gateway, r->cfg->id) != 0) {
            continue;
        }
        if (r->cfg->cluster.quota_throttle) {
            if (node_clients_throttle_session(r->clients, ref->session_id)) {
                /* node/shaping applies it at its next pass (1 s). */
                LOG_INFO("repl", "session %" PRIu64 " over quota: throttled",
                         ref->session_id);
            }
        } else if (node_clients_kill_session(r->clients, ref->session_id,
                                             NODE_QUOTA_KILL_MSG,
                                             "is over its quota")) {
            LOG_INFO("repl", "session %" PRIu64 " over quota: killed",
                     ref->session_id);
        }
    }
}

/* Sends one UsageCharge with every session's delta since the last batch.
 * A delta is counted as charged once proposed: a batch whose outcome is
 * unknown may be lost, never doubled (the FSM drops a repeated seq). */
static void node_repl_usage_cb(uv_timer_t *t)
{
    struct node_repl *r = t->data;
    size_t n = 0;
    struct proto_usage_entry *e = ovha_calloc(r->nusage + 1, sizeof(*e));
    if (e == NULL) {
        return;
    }
    for (size_t i = 0; i < r->nusage && n < PROTO_USAGE_MAX; i++) {
        struct node_repl_usage *u = &r->usage_rows[i];
        if (u->cur_in == u->last_in && u->cur_out == u->last_out) {
            continue;
        }
        e[n].session_id = u->session_id;
        ovha_strlcpy(e[n].cn, u->cn, sizeof(e[n].cn));
        e[n].bytes_in = u->cur_in - u->last_in;
        e[n].bytes_out = u->cur_out - u->last_out;
        u->last_in = u->cur_in;
        u->last_out = u->cur_out;
        n++;
    }
    if (n == 0) {
        ovha_free(e);
        return;
    }
    struct proto_cmd c;
    node_repl_cmd_init(r, &c, PROTO_CMD_USAGE_CHARGE);
    uint64_t now = ovha_now_real_ms();
    r->usage_seq = now > r->usage_seq ? now : r->usage_seq + 1;
    c.u.usage_charge.seq = r->usage_seq;
    node_repl_period(c.u.usage_charge.period, sizeof(c.u.usage_charge.period));
    c.u.usage_charge.entries = e; /* proto_cmd_clear frees it */
    c.u.usage_charge.nentries = n;
    int rv = node_repl_propose(r, &c, node_repl_usage_done_cb, r, 0);
    if (rv != 0) {
        LOG_WARN("repl", "cannot propose usage_charge: %s", ovha_strerror(rv));
    }
}

/* One pass compares the local session table with this gateway's
 * sessions in the replicated state. Both sides are sorted id arrays
 * searched by bisection: the pass runs every second, and a scan of one
 * table per entry of the other (as before) was a third of ovhad's CPU at
 * 10,000 clients (issue 9). */
struct node_repl_own {
    uint64_t id;
    uint64_t started;
    bool orphaned;
};

struct node_repl_walk {
    struct node_repl_own *own;
    size_t n, cap;
    int err;
};

static int node_repl_own_cb(const struct fsm_session_info *s, void *data)
{
    struct node_repl_walk *w = data;
    if (w->n == w->cap) {
        size_t cap = w->cap != 0 ? 2 * w->cap : 256;
        void *p = ovha_realloc(w->own, cap * sizeof(*w->own));
        if (p == NULL) {
            w->err = -ENOMEM;
            return -ENOMEM;
        }
        w->own = p;
        w->cap = cap;
    }
    w->own[w->n++] = (struct node_repl_own){
        .id = s->id,
        .started = s->started,
        .orphaned = s->state == FSM_SESSION_ORPHANED,
    };
    return 0;
}

static int node_repl_u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int node_repl_own_cmp(const void *a, const void *b)
{
    return node_repl_u64_cmp(&((const struct node_repl_own *)a)->id,
                             &((const struct node_repl_own *)b)->id);
}

/* The local clients' session ids, sorted; NULL on allocation failure. */
static uint64_t *node_repl_local_ids(const struct node_session *local, size_t n)
{
    uint64_t *ids = ovha_malloc((n != 0 ? n : 1) * sizeof(*ids));
    if (ids == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        ids[i] = local[i].session_id;
    }
    qsort(ids, n, sizeof(*ids), node_repl_u64_cmp);
    return ids;
}

static bool node_repl_has_id(const uint64_t *ids, size_t n, uint64_t id)
{
    return bsearch(&id, ids, n, sizeof(*ids), node_repl_u64_cmp) != NULL;
}

/* Local clients whose session is gone from the replicated state (or was
 * orphaned: this gateway was declared down meanwhile, e.g. while
 * partitioned; the client belongs elsewhere now): killed. */
static void node_repl_kill_gone(struct node_repl *r,
                                const struct node_session *local,
                                size_t n,
                                const struct node_repl_walk *w)
{
    uint64_t gone[64];
    size_t ngone = 0;
    for (size_t i = 0; i < n && ngone < 64; i++) {
        /* A session this node learnt from the leader's answer before
         * applying its entry is not gone: it is not here yet. */
        if (local[i].session_id == 0 ||
            local[i].session_id >= fsm_next_session_id(r->fsm)) {
            continue;
        }
        struct node_repl_own key = { .id = local[i].session_id };
        const struct node_repl_own *o =
            bsearch(&key, w->own, w->n, sizeof(*w->own), node_repl_own_cmp);
        if (o == NULL || o->orphaned) {
            gone[ngone++] = local[i].session_id;
        }
    }
    for (size_t i = 0; i < ngone; i++) {
        LOG_INFO("repl",
                 "session %llu ended or was orphaned elsewhere (taken "
                 "over, evicted, gateway declared down): killing the "
                 "local client",
                 (unsigned long long)gone[i]);
        node_clients_kill_session(r->clients, gone[i], NODE_FAILOVER_KILL_MSG,
                                  "ended elsewhere (taken over or evicted)");
    }
}

/* This gateway's replicated sessions that no local client holds (past a
 * grace time) are closed, at most 64 a pass. */
static void node_repl_close_stale(struct node_repl *r,
                                  const uint64_t *ids,
                                  size_t n,
                                  const struct node_repl_walk *w)
{
    uint64_t now = ovha_now_real_ms();
    size_t closed = 0;
    for (size_t i = 0; i < w->n && closed < 64; i++) {
        const struct node_repl_own *o = &w->own[i];
        if (!o->orphaned && o->started + NODE_REPL_STALE_MS < now &&
            !node_repl_has_id(ids, n, o->id)) {
            node_repl_close_session(r, o->id, "no local client");
            closed++;
        }
    }
}

/* Usage rows of sessions that are gone locally and already charged. */
static void node_repl_prune_usage(struct node_repl *r,
                                  const uint64_t *ids,
                                  size_t n)
{
    size_t keep = 0;
    for (size_t i = 0; i < r->nusage; i++) {
        struct node_repl_usage *u = &r->usage_rows[i];
        if (node_repl_has_id(ids, n, u->session_id) ||
            u->cur_in != u->last_in || u->cur_out != u->last_out) {
            r->usage_rows[keep++] = *u;
        }
    }
    r->nusage = keep;
}

static void node_repl_reconcile_cb(uv_timer_t *t)
{
    struct node_repl *r = t->data;
    struct rft_status st;
    if (r->clients == NULL) {
        return;
    }
    rft_get_status(r->rft, &st);
    if (st.leader_id == 0 || st.last_applied < st.commit_index) {
        return; /* our view may be behind: decide nothing from it */
    }
    const struct node_session *local;
    size_t n = node_clients_sessions(r->clients, &local);
    struct node_repl_walk w = { 0 };
    uint64_t *ids = node_repl_local_ids(local, n);
    int rv = ids != NULL
                 ? fsm_query_sessions(r->fsm, r->cfg->id, node_repl_own_cb, &w)
                 : -ENOMEM;
    if (rv != 0 || w.err != 0) {
        LOG_WARN("repl", "reconcile pass skipped: %s",
                 ovha_strerror(w.err != 0 ? w.err : rv));
    } else {
        qsort(w.own, w.n, sizeof(*w.own), node_repl_own_cmp);
        node_repl_kill_gone(r, local, n, &w);
        node_repl_close_stale(r, ids, n, &w);
        node_repl_prune_usage(r, ids, n);
    }
    ovha_free(w.own);
    ovha_free(ids);
}

/* ---- lifecycle ----------------------------------------------------------- */

static uint64_t node_repl_random64(void)
{
    uint64_t v = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &v, sizeof(v)) != (ssize_t)sizeof(v)) {
            v = 0;
        }
        close(fd);
    }
    if (v == 0) {
        v = ovha_now_real_ms() ^ ((uint64_t)getpid() << 40);
    }
    return v & ~(uint64_t)0xffffffff; /* low half counts up */
}

/* The pool is proposed by every node with one req_id derived from its
 * definition, so it is applied once however many nodes start. */
static void node_repl_put_pool(struct node_repl *r)
{
    const struct node_cfg_net *pool = &r->cfg->policy.pool;
    struct proto_cmd c;
    node_repl_cmd_init(r, &c, PROTO_CMD_POOL_PUT);
    struct proto_pool_put *p = &c.u.pool_put;
    ovha_strlcpy(p->name, r->cfg->cluster.pool_name, sizeof(p->name));
    snprintf(p->cidr, sizeof(p->cidr), "%s/%u", pool->addr, pool->prefix);
    p->lease_ttl_ms = r->cfg->cluster.lease_ttl_ms;
    uint8_t h[OVHA_SHA256_LEN];
    char key[256];
    snprintf(key, sizeof(key), "pool|%s|%s|%llu", p->name, p->cidr,
             (unsigned long long)p->lease_ttl_ms);
    ovha_sha256(key, strlen(key), h);
    memcpy(&c.req_id, h, sizeof(c.req_id));
    node_repl_background(r, &c);
}

int node_repl_new(uv_loop_t *loop,
                  const struct node_cfg *cfg,
                  struct rft *rft,
                  struct fsm *fsm,
                  struct node_rules rules,
                  struct node_repl **ret)
{
    struct node_repl *r = ovha_calloc(1, sizeof(*r));
    if (r == NULL) {
        return -ENOMEM;
    }
    r->cfg = cfg;
    r->rft = rft;
    r->fsm = fsm;
    r->rules = rules;
    r->req_base = node_repl_random64();
    uv_timer_t *timers[] = { &r->heartbeat, &r->usage, &r->reconcile };
    for (int i = 0; i < 3; i++) {
        uv_timer_init(loop, timers[i]);
        timers[i]->data = r;
    }
    *ret = r;
    return 0;
}

void node_repl_start(struct node_repl *r, struct node_clients *clients)
{
    const struct node_cfg_cluster *cc = &r->cfg->cluster;
    r->clients = clients;
    node_repl_put_pool(r);
    node_repl_heartbeat_cb(&r->heartbeat);
    uv_timer_start(&r->heartbeat, node_repl_heartbeat_cb,
                   cc->gateway_heartbeat_ms, cc->gateway_heartbeat_ms);
    uv_timer_start(&r->usage, node_repl_usage_cb, cc->usage_interval_ms,
                   cc->usage_interval_ms);
    uv_timer_start(&r->reconcile, node_repl_reconcile_cb,
                   NODE_REPL_RECONCILE_MS, NODE_REPL_RECONCILE_MS);
}

void node_repl_set_cfg(struct node_repl *r, const struct node_cfg *cfg)
{
    r->cfg = cfg; /* policy only: the cluster section never reloads */
}

static const struct node_decider_ops node_repl_ops = {
    .decide = node_repl_decide_op,
    .cancel = node_repl_cancel_op,
    .session_closed = node_repl_closed_op,
    .session_established = node_repl_established_op,
    .session_bytes = node_repl_bytes_op,
    .session_address = node_repl_address_op,
};

void node_repl_set_failover(struct node_repl *r, struct node_failover *fo)
{
    r->fo = fo;
}

void node_repl_set_routes(struct node_repl *r, struct node_routes *routes)
{
    r->routes = routes;
}

void node_repl_set_fw(struct node_repl *r, struct node_fw *fw)
{
    r->fw = fw;
}

/* Copies an operator's name into the command's actor. The wire allows
 * [A-Za-z0-9_.:-] and fewer than PROTO_ID_MAX bytes (anything else makes
 * the command malformed), while subjects may hold other bytes ("cert:ops
 * team"): those become '_' and a long name is cut, so the write still
 * goes through and the audit record still names who made it. */
static void node_repl_actor(struct proto_cmd *c, const char *actor)
{
    size_t i = 0;
    for (; actor != NULL && actor[i] != '\0' && i + 1 < sizeof(c->actor); i++) {
        char ch = actor[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' ||
                  ch == '-' || ch == ':';
        c->actor[i] = ok ? ch : '_';
    }
    c->actor[i] = '\0';
}

int node_repl_policy_put(struct node_repl *r,
                         const char *name,
                         const char *body,
                         const char *actor,
                         rft_propose_cb cb,
                         void *data)
{
    struct proto_cmd c;
    if (body != NULL) {
        node_repl_cmd_init(r, &c, PROTO_CMD_POLICY_PUT);
        ovha_strlcpy(c.u.policy_put.name, name, sizeof(c.u.policy_put.name));
        c.u.policy_put.body = ovha_strdup(body); /* proto_cmd_clear frees */
        if (c.u.policy_put.body == NULL) {
            return -ENOMEM;
        }
    } else {
        node_repl_cmd_init(r, &c, PROTO_CMD_POLICY_DELETE);
        ovha_strlcpy(c.u.policy_delete.name, name,
                     sizeof(c.u.policy_delete.name));
    }
    node_repl_actor(&c, actor);
    return node_repl_propose(r, &c, cb, data, 0);
}

int node_repl_audit_append(struct node_repl *r,
                           const char *action,
                           const char *subject,
                           const char *detail,
                           const char *actor)
{
    struct proto_cmd c;
    node_repl_cmd_init(r, &c, PROTO_CMD_AUDIT_APPEND);
    ovha_strlcpy(c.u.audit_append.action, action,
                 sizeof(c.u.audit_append.action));
    ovha_strlcpy(c.u.audit_append.subject, subject,
                 sizeof(c.u.audit_append.subject));
    ovha_strlcpy(c.u.audit_append.detail, detail,
                 sizeof(c.u.audit_append.detail));
    node_repl_actor(&c, actor);
    return node_repl_propose(r, &c, node_repl_done_cb, r, 0);
}

int node_repl_set_gateway_state(struct node_repl *r,
                                const char *gateway,
                                int state,
                                bool force,
                                rft_propose_cb cb,
                                void *data)
{
    return node_repl_set_gateway_state_as(r, gateway, state, force, "", cb,
                                          data);
}

int node_repl_set_gateway_state_as(struct node_repl *r,
                                   const char *gateway,
                                   int state,
                                   bool force,
                                   const char *actor,
                                   rft_propose_cb cb,
                                   void *data)
{
    struct proto_cmd c;
    node_repl_cmd_init(r, &c, PROTO_CMD_GATEWAY_SET_STATE);
    ovha_strlcpy(c.u.gateway_set_state.gateway_id, gateway,
                 sizeof(c.u.gateway_set_state.gateway_id));
    c.u.gateway_set_state.state = (enum proto_gw_state)state;
    c.u.gateway_set_state.force = force;
    node_repl_actor(&c, actor);
    if (cb == NULL) {
        cb = node_repl_done_cb;
        data = r;
    }
    return node_repl_propose(r, &c, cb, data, 0);
}

int node_repl_lease(struct node_repl *r,
                    bool reserve,
                    const char *cn,
                    const char *ip,
                    const char *actor,
                    rft_propose_cb cb,
                    void *data)
{
    struct proto_cmd c;
    struct proto_lease *l;
    if (reserve) {
        node_repl_cmd_init(r, &c, PROTO_CMD_LEASE_RESERVE);
        l = &c.u.lease_reserve;
    } else {
        node_repl_cmd_init(r, &c, PROTO_CMD_LEASE_RELEASE);
        l = &c.u.lease_release;
    }
    if (ovha_strlcpy(l->cn, cn, sizeof(l->cn)) >= sizeof(l->cn) ||
        ovha_strlcpy(l->ip, ip, sizeof(l->ip)) >= sizeof(l->ip)) {
        return -EINVAL;
    }
    node_repl_actor(&c, actor);
    return node_repl_propose(r, &c, cb, data, 0);
}

int node_repl_session_end(struct node_repl *r,
                          uint64_t session_id,
                          const char *reason,
                          const char *actor,
                          rft_propose_cb cb,
                          void *data)
{
    struct proto_cmd c;
    node_repl_cmd_init(r, &c, PROTO_CMD_SESSION_CLOSE);
    c.u.session_close.session_id = session_id;
    ovha_strlcpy(c.u.session_close.reason, reason,
                 sizeof(c.u.session_close.reason));
    node_repl_actor(&c, actor);
    return node_repl_propose(r, &c, cb, data, 0);
}

int node_repl_pool_put(struct node_repl *r,
                       const char *name,
                       const char *cidr,
                       uint64_t lease_ttl_ms,
                       const char *actor,
                       rft_propose_cb cb,
                       void *data)
{
    struct proto_cmd c;
    struct proto_pool_put *p = &c.u.pool_put;
    node_repl_cmd_init(r, &c, PROTO_CMD_POOL_PUT);
    if (ovha_strlcpy(p->name, name, sizeof(p->name)) >= sizeof(p->name) ||
        ovha_strlcpy(p->cidr, cidr, sizeof(p->cidr)) >= sizeof(p->cidr)) {
        return -EINVAL;
    }
    p->lease_ttl_ms = lease_ttl_ms;
    node_repl_actor(&c, actor);
    return node_repl_propose(r, &c, cb, data, 0);
}

int node_repl_subnet_release(struct node_repl *r,
                             const char *cidr,
                             const char *actor,
                             rft_propose_cb cb,
                             void *data)
{
    struct proto_cmd c;
    struct proto_subnet *sn = &c.u.subnet_release;
    node_repl_cmd_init(r, &c, PROTO_CMD_SUBNET_RELEASE);
    if (ovha_strlcpy(sn->cidr, cidr, sizeof(sn->cidr)) >= sizeof(sn->cidr)) {
        return -EINVAL;
    }
    node_repl_actor(&c, actor);
    return node_repl_propose(r, &c, cb, data, 0);
}

void node_repl_decider(struct node_repl *r, struct node_decider *ret)
{
    ret->ops = &node_repl_ops;
    ret->impl = r;
}

static void node_repl_timer_closed_cb(uv_handle_t *h)
{
    struct node_repl *r = h->data;
    if (--r->pending_closes > 0) {
        return;
    }
    void (*cb)(void *) = r->close_cb;
    void *data = r->close_data;
    ovha_free(r->usage_rows);
    ovha_free(r);
    cb(data);
}

/* Call after the runtime closed: every proposal callback has fired. */
void node_repl_close(struct node_repl *r, void (*cb)(void *data), void *data)
{
    r->close_cb = cb;
    r->close_data = data;
    r->pending_closes = 3;
    uv_close((uv_handle_t *)&r->heartbeat, node_repl_timer_closed_cb);
    uv_close((uv_handle_t *)&r->usage, node_repl_timer_closed_cb);
    uv_close((uv_handle_t *)&r->reconcile, node_repl_timer_closed_cb);
}
