/* node/clients: the connection path. See clients.h for the flow. */
#include "node/clients.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

struct node_pending {
    struct node_pending *prev, *next;
    struct node_clients *c;
    uint64_t cid;
    uint32_t kid;
    bool reauth;
    bool push_early; /* the client takes a PUSH_REPLY without a request */
    char cn[256];
    uint64_t deadline; /* monotonic ms */
    uint64_t t0_us;    /* when the event arrived (uv_hrtime), for stats */
    void *handle;      /* the decider's, for cancel */
    bool in_decide;    /* inside decider->decide: do not free yet */
    bool done;
};

struct node_clients {
    uv_loop_t *loop;
    struct mgmt_conn *mgmt;
    struct node_decider decider;
    uint64_t deadline_ms;
    unsigned kick_timeout_s;          /* 0 = no client-pending-auth kick */
    struct node_pending *head, *tail; /* arrival order = deadline order */
    size_t npending;
    uv_timer_t timer;
    uv_timer_t poll; /* tap mode: status 3 for learned MACs */
    int open_handles;
    struct node_session *sessions;
    size_t nsessions, capsessions;
    /* CID -> index + 1 into sessions (0 = empty slot), open addressing
     * with backward-shift deletion. Byte counts arrive per client every
     * interval; a scan per line was most of ovhad's CPU left at 10,000
     * clients (issue 9). cid_cap 0 = no table: scan. */
    uint32_t *cid_slots;
    size_t cid_cap;
    /* Resync generations: a session created after `status 3` was sent is
     * newer than the reply and must survive it. */
    uint64_t gen, resync_gen;
    struct node_clients_stats stats;
    void (*close_cb)(void *data);
    void *close_data;
};

const uint64_t node_decision_lat_bounds_us[NODE_DECISION_LAT_BUCKETS] = {
    250,    500,    1000,   2500,    5000,    10000,   25000,    50000,
    100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};

const char *node_decision_why_name(enum node_decision_why why)
{
    static const char *const names[NODE_WHY_MAX] = {
        [NODE_WHY_ALLOWED] = "allowed",
        [NODE_WHY_REFUSED] = "refused",
        [NODE_WHY_UNAVAILABLE] = "unavailable",
        [NODE_WHY_DEADLINE] = "deadline",
        [NODE_WHY_INVALID_OUTPUT] = "invalid_output",
        [NODE_WHY_NO_CN] = "no_common_name",
        [NODE_WHY_ERROR] = "error",
    };
    return (unsigned)why < NODE_WHY_MAX ? names[why] : "unknown";
}

const char *node_decision_kind_name(enum node_decision_kind kind)
{
    return kind == NODE_DECISION_REAUTH ? "reauth" : "connect";
}

static uint64_t node_clients_now_us(void)
{
    return uv_hrtime() / 1000;
}

/* Counts one answer, handed to the management link now, for the metrics. */
static void node_clients_count(struct node_clients *c,
                               bool reauth,
                               enum node_decision_why why,
                               uint64_t t0_us)
{
    struct node_clients_stats *st = &c->stats;
    uint64_t now = node_clients_now_us();
    uint64_t lat = now > t0_us ? now - t0_us : 0;
    st->decisions[reauth ? NODE_DECISION_REAUTH : NODE_DECISION_CONNECT][why]++;
    for (size_t i = 0; i < NODE_DECISION_LAT_BUCKETS; i++) {
        if (lat <= node_decision_lat_bounds_us[i]) {
            st->latency_le_us[i]++;
        }
    }
    st->latency_count++;
    st->latency_us_sum += lat;
}

/* A refusal the client is told to take elsewhere is temporary. */
static enum node_decision_why node_clients_why(const struct node_decision *d)
{
    return strcmp(d->client_reason, NODE_TEMP_CLIENT_REASON) == 0
               ? NODE_WHY_UNAVAILABLE
               : NODE_WHY_REFUSED;
}

/* Writes cn with '"' and '\\' escaped so log lines stay parseable; the
 * logger itself replaces control bytes. */
static const char *node_clients_q(const char *s, char *out, size_t len)
{
    size_t n = 0;
    for (; *s != '\0' && n + 3 < len; s++) {
        if (*s == '"' || *s == '\\') {
            out[n++] = '\\';
        }
        out[n++] = *s;
    }
    out[n] = '\0';
    return out;
}

/* ---- sending ------------------------------------------------------------ */

static void node_clients_reply_cb(struct mgmt_conn *m,
                                  int status,
                                  const struct mgmt_reply *reply,
                                  void *data)
{
    (void)m;
    const char *what = data;
    if (status != 0) {
        LOG_WARN("clients", "%s: %s%s%s", what, ovha_strerror(status),
                 reply != NULL && reply->text != NULL ? ": " : "",
                 reply != NULL && reply->text != NULL ? reply->text : "");
    }
}

static int node_clients_send_n(struct node_clients *c,
                               struct ovha_buf *b,
                               unsigned nreplies,
                               const char *what)
{
    int rv = mgmt_conn_send_n(c->mgmt, b->data, b->len, nreplies,
                              node_clients_reply_cb, (void *)what);
    if (rv != 0) {
        LOG_WARN("clients", "%s: cannot queue: %s", what, ovha_strerror(rv));
    }
    return rv;
}

static int node_clients_send(struct node_clients *c,
                             struct ovha_buf *b,
                             const char *what)
{
    return node_clients_send_n(c, b, 1, what);
}

/* IV_PROTO bit 2 (IV_PROTO_REQUEST_PUSH, 2.5+ clients): the server may push
 * without waiting for the client's PUSH_REQUEST. */
static bool node_clients_push_early(const struct mgmt_env *env)
{
    const char *v = mgmt_env_get(env, "IV_PROTO");
    uint64_t bits = 0;
    return v != NULL && ovha_parse_u64(v, UINT64_MAX, &bits) == 0 &&
           (bits & 4) != 0;
}

/* openvpn 2.6 does not wake a client's instance when client-auth arrives;
 * if the client finished its handshake first, nothing happens until its
 * once-a-second PUSH_REQUEST (docs/benchmarks.md, "Failover and drain").
 * client-pending-auth does wake it, so it goes first in the same write
 * (written separately it can be processed too early or leave the client
 * showing AUTH_PENDING): the PUSH_REPLY then follows the client-auth at
 * once. Returns the number of commands prepended (0 or 1). */
static unsigned node_clients_kick(struct node_clients *c,
                                  const struct node_pending *p,
                                  struct ovha_buf *b)
{
    if (c->kick_timeout_s == 0 || !p->push_early || p->reauth) {
        return 0;
    }
    return mgmt_cmd_client_pending_auth(b, p->cid, p->kid, "",
                                        c->kick_timeout_s) == 0
               ? 1
               : 0;
}

static void node_clients_send_deny(struct node_clients *c,
                                   uint64_t cid,
                                   uint32_t kid,
                                   const char *reason,
                                   const char *client_reason)
{
    struct ovha_buf b;
    ovha_buf_init(&b);
    int rv = mgmt_cmd_client_deny(&b, cid, kid, reason, client_reason);
    if (rv != 0) {
        /* The reason itself was unusable: deny with a fixed text. */
        rv = mgmt_cmd_client_deny(&b, cid, kid, "denied", "Access denied");
    }
    if (rv == 0) {
        node_clients_send(c, &b, "client-deny");
    }
    ovha_buf_free(&b);
}

/* ---- session table ------------------------------------------------------ */

static size_t node_clients_cid_home(const struct node_clients *c, uint64_t cid)
{
    return (size_t)((cid * 0x9e3779b97f4a7c15ull) >> 20) & (c->cid_cap - 1);
}

/* The slot holding session index i (whose CID is cid), or cid_cap. */
static size_t node_clients_cid_slot(const struct node_clients *c,
                                    uint64_t cid,
                                    size_t i)
{
    size_t mask = c->cid_cap - 1;
    for (size_t at = node_clients_cid_home(c, cid); c->cid_slots[at] != 0;
         at = (at + 1) & mask) {
        if (c->cid_slots[at] == i + 1) {
            return at;
        }
    }
    return c->cid_cap;
}

static void node_clients_cid_put(struct node_clients *c, uint64_t cid, size_t i)
{
    size_t mask = c->cid_cap - 1;
    size_t at = node_clients_cid_home(c, cid);
    while (c->cid_slots[at] != 0) {
        at = (at + 1) & mask;
    }
    c->cid_slots[at] = (uint32_t)(i + 1);
}

/* Sizes the table for n sessions; on allocation failure there is none
 * and lookups scan. */
static void node_clients_cid_rebuild(struct node_clients *c, size_t n)
{
    size_t cap = 64;
    while (cap < 2 * n + 2) {
        cap *= 2;
    }
    ovha_free(c->cid_slots);
    c->cid_slots = ovha_calloc(cap, sizeof(*c->cid_slots));
    c->cid_cap = c->cid_slots != NULL ? cap : 0;
    for (size_t i = 0; i < c->nsessions && c->cid_cap != 0; i++) {
        node_clients_cid_put(c, c->sessions[i].cid, i);
    }
}

/* Empties slot at, shifting later entries of the probe run back so no
 * lookup stops early at the hole. */
static void node_clients_cid_delete(struct node_clients *c, size_t at)
{
    size_t mask = c->cid_cap - 1;
    size_t hole = at;
    for (size_t next = (at + 1) & mask; c->cid_slots[next] != 0;
         next = (next + 1) & mask) {
        size_t home =
            node_clients_cid_home(c, c->sessions[c->cid_slots[next] - 1].cid);
        /* Movable when its home is not in (hole, next] cyclically. */
        bool movable = hole <= next ? (home <= hole || home > next)
                                    : (home <= hole && home > next);
        if (movable) {
            c->cid_slots[hole] = c->cid_slots[next];
            hole = next;
        }
    }
    c->cid_slots[hole] = 0;
}

static struct node_session *node_clients_find(struct node_clients *c,
                                              uint64_t cid)
{
    if (c->cid_cap == 0) {
        for (size_t i = 0; i < c->nsessions; i++) {
            if (c->sessions[i].cid == cid) {
                return &c->sessions[i];
            }
        }
        return NULL;
    }
    size_t mask = c->cid_cap - 1;
    for (size_t at = node_clients_cid_home(c, cid); c->cid_slots[at] != 0;
         at = (at + 1) & mask) {
        struct node_session *s = &c->sessions[c->cid_slots[at] - 1];
        if (s->cid == cid) {
            return s;
        }
    }
    return NULL;
}

static struct node_session *node_clients_add(struct node_clients *c,
                                             uint64_t cid)
{
    struct node_session *s = node_clients_find(c, cid);
    if (s != NULL) {
        return s;
    }
    if (c->nsessions == c->capsessions) {
        size_t cap = c->capsessions ? 2 * c->capsessions : 64;
        void *n = ovha_realloc(c->sessions, cap * sizeof(*c->sessions));
        if (n == NULL) {
            return NULL;
        }
        c->sessions = n;
        c->capsessions = cap;
    }
    s = &c->sessions[c->nsessions++];
    memset(s, 0, sizeof(*s));
    s->cid = cid;
    s->gen = c->gen;
    if (c->cid_cap >= 2 * c->nsessions + 2) {
        node_clients_cid_put(c, cid, c->nsessions - 1);
    } else {
        node_clients_cid_rebuild(c, 2 * c->nsessions);
    }
    return s;
}

/* Removes the session and tells the decider its address is free. The
 * last session moves into its place (and its index slot with it). */
static void node_clients_remove(struct node_clients *c, struct node_session *s)
{
    if (c->decider.ops->session_closed != NULL) {
        c->decider.ops->session_closed(c->decider.impl, s->cn, s->vpn_ip,
                                       s->session_id);
    }
    size_t i = (size_t)(s - c->sessions);
    size_t last = c->nsessions - 1;
    if (c->cid_cap != 0) {
        size_t at = node_clients_cid_slot(c, s->cid, i);
        if (at < c->cid_cap) {
            node_clients_cid_delete(c, at);
        }
        if (i != last) {
            at = node_clients_cid_slot(c, c->sessions[last].cid, last);
            if (at < c->cid_cap) {
                c->cid_slots[at] = (uint32_t)(i + 1);
            }
        }
    }
    *s = c->sessions[last];
    c->nsessions--;
}

/* ---- pending decisions -------------------------------------------------- */

static void node_pending_unlink(struct node_clients *c, struct node_pending *p)
{
    if (p->prev != NULL) {
        p->prev->next = p->next;
    } else {
        c->head = p->next;
    }
    if (p->next != NULL) {
        p->next->prev = p->prev;
    } else {
        c->tail = p->prev;
    }
    p->prev = p->next = NULL;
    c->npending--;
}

static void node_pending_finish(struct node_pending *p)
{
    node_pending_unlink(p->c, p);
    p->done = true;
    if (!p->in_decide) {
        ovha_free(p);
    }
}

static void node_clients_timer_cb(uv_timer_t *t);

static void node_clients_arm(struct node_clients *c)
{
    if (c->head == NULL) {
        uv_timer_stop(&c->timer);
        return;
    }
    uint64_t now = ovha_now_mono_ms();
    uint64_t due = c->head->deadline > now ? c->head->deadline - now : 0;
    uv_timer_start(&c->timer, node_clients_timer_cb, due, 0);
}

/* Builds and sends client-auth for an allowed CONNECT. */
static void node_clients_send_auth(struct node_clients *c,
                                   struct node_pending *p,
                                   const struct node_decision *d)
{
    const char *push[NODE_CFG_MAX_PUSH];
    struct mgmt_client_config cfg;
    struct ovha_buf b;
    char q[600];
    node_decision_client_config(d, push, &cfg);
    ovha_buf_init(&b);
    unsigned lead = node_clients_kick(c, p, &b);
    int rv = mgmt_cmd_client_auth(&b, p->cid, p->kid, &cfg);
    if (rv != 0) {
        LOG_WARN("decide",
                 "deny cn=\"%s\" cid=%llu: policy output refused "
                 "by the command builder: %s",
                 node_clients_q(p->cn, q, sizeof(q)),
                 (unsigned long long)p->cid, ovha_strerror(rv));
        c->stats.denied++;
        node_clients_send_deny(c, p->cid, p->kid, "invalid policy output",
                               "Access denied");
        node_clients_count(c, false, NODE_WHY_INVALID_OUTPUT, p->t0_us);
        ovha_buf_free(&b);
        return;
    }
    node_clients_send_n(c, &b, 1 + lead, "client-auth");
    ovha_buf_free(&b);
    node_clients_count(c, false, NODE_WHY_ALLOWED, p->t0_us);
    struct node_session *s = node_clients_add(c, p->cid);
    if (s != NULL) {
        ovha_strlcpy(s->cn, p->cn, sizeof(s->cn));
        ovha_strlcpy(s->vpn_ip, d->ip, sizeof(s->vpn_ip));
        s->session_id = d->session_id;
        s->down_kbps = d->down_kbps;
        s->up_kbps = d->up_kbps;
        s->throttled = d->over_quota;
        s->state = NODE_SESSION_AUTHORIZED;
    }
    c->stats.allowed++;
    LOG_INFO("decide",
             "allow cn=\"%s\" cid=%llu kid=%u ip=%s routes=%zu "
             "iroutes=%zu source=%s",
             node_clients_q(p->cn, q, sizeof(q)), (unsigned long long)p->cid,
             p->kid, d->ip, d->nroutes, d->niroutes,
             d->source != NULL ? d->source : "-");
}

/* REAUTH: a client-auth block would be ignored by openvpn, so an allow
 * is client-auth-nt; a deny ends the session. */
static void node_clients_answer_reauth(struct node_clients *c,
                                       struct node_pending *p,
                                       const struct node_decision *d)
{
    char q[600];
    if (!d->allow) {
        c->stats.reauth_denied++;
        LOG_INFO("decide", "deny reauth cn=\"%s\" cid=%llu reason=\"%s\"",
                 node_clients_q(p->cn, q, sizeof(q)),
                 (unsigned long long)p->cid, d->reason);
        node_clients_send_deny(c, p->cid, p->kid, d->reason, d->client_reason);
        node_clients_count(c, true, node_clients_why(d), p->t0_us);
        return;
    }
    struct ovha_buf b;
    ovha_buf_init(&b);
    if (mgmt_cmd_client_auth_nt(&b, p->cid, p->kid) == 0) {
        node_clients_send(c, &b, "client-auth-nt");
    }
    ovha_buf_free(&b);
    node_clients_count(c, true, NODE_WHY_ALLOWED, p->t0_us);
    c->stats.reauth_allowed++;
    LOG_DEBUG("decide", "allow reauth cn=\"%s\" cid=%llu",
              node_clients_q(p->cn, q, sizeof(q)), (unsigned long long)p->cid);
}

static void node_clients_decided_cb(const struct node_decision *d, void *data)
{
    struct node_pending *p = data;
    struct node_clients *c = p->c;
    char q[600];
    if (p->done) {
        return; /* already answered by the deadline */
    }
    if (p->reauth) {
        node_clients_answer_reauth(c, p, d);
    } else if (d->allow) {
        node_clients_send_auth(c, p, d);
    } else {
        c->stats.denied++;
        LOG_INFO(
            "decide", "deny cn=\"%s\" cid=%llu kid=%u reason=\"%s\" source=%s",
            node_clients_q(p->cn, q, sizeof(q)), (unsigned long long)p->cid,
            p->kid, d->reason, d->source != NULL ? d->source : "-");
        node_clients_send_deny(c, p->cid, p->kid, d->reason, d->client_reason);
        node_clients_count(c, false, node_clients_why(d), p->t0_us);
    }
    node_pending_finish(p);
    node_clients_arm(c);
}

static void node_clients_timer_cb(uv_timer_t *t)
{
    struct node_clients *c = t->data;
    uint64_t now = ovha_now_mono_ms();
    char q[600];
    while (c->head != NULL && c->head->deadline <= now) {
        struct node_pending *p = c->head;
        c->decider.ops->cancel(c->decider.impl, p->handle);
        c->stats.deadline_denied++;
        LOG_WARN("decide",
                 "deny cn=\"%s\" cid=%llu kid=%u: no decision "
                 "within %llu ms",
                 node_clients_q(p->cn, q, sizeof(q)),
                 (unsigned long long)p->cid, p->kid,
                 (unsigned long long)c->deadline_ms);
        node_clients_send_deny(c, p->cid, p->kid, "decision deadline exceeded",
                               NODE_TEMP_CLIENT_REASON);
        node_clients_count(c, p->reauth, NODE_WHY_DEADLINE, p->t0_us);
        node_pending_finish(p);
    }
    node_clients_arm(c);
}

static void node_clients_on_auth_request(struct node_clients *c,
                                         const struct mgmt_event *ev,
                                         bool reauth)
{
    const char *cn = mgmt_env_get(&ev->env, "common_name");
    const char *user = mgmt_env_get(&ev->env, "username");
    const char *ip = mgmt_env_get(&ev->env, "untrusted_ip");
    const char *port = mgmt_env_get(&ev->env, "untrusted_port");
    uint64_t t0_us = node_clients_now_us();
    if (cn == NULL || cn[0] == '\0') {
        c->stats.denied++;
        LOG_INFO("decide", "deny cid=%llu kid=%u: no common name",
                 (unsigned long long)ev->cid, ev->kid);
        node_clients_send_deny(c, ev->cid, ev->kid, "no common name",
                               "Access denied");
        node_clients_count(c, reauth, NODE_WHY_NO_CN, t0_us);
        return;
    }
    struct node_pending *p = ovha_calloc(1, sizeof(*p));
    if (p == NULL) {
        node_clients_send_deny(c, ev->cid, ev->kid, "out of memory",
                               NODE_TEMP_CLIENT_REASON);
        node_clients_count(c, reauth, NODE_WHY_ERROR, t0_us);
        return;
    }
    p->c = c;
    p->cid = ev->cid;
    p->kid = ev->kid;
    p->t0_us = t0_us;
    p->reauth = reauth;
    p->push_early = node_clients_push_early(&ev->env);
    ovha_strlcpy(p->cn, cn, sizeof(p->cn));
    p->deadline = ovha_now_mono_ms() + c->deadline_ms;
    p->prev = c->tail;
    if (c->tail != NULL) {
        c->tail->next = p;
    } else {
        c->head = p;
    }
    c->tail = p;
    c->npending++;
    struct node_decision_req req = {
        .cid = ev->cid,
        .kid = ev->kid,
        .reauth = reauth,
        .cn = cn,
        .username = user != NULL ? user : "",
        .real_ip = ip != NULL ? ip : "",
        .real_port = port != NULL ? port : "",
        .password = mgmt_env_get(&ev->env, "password"),
        .env = &ev->env,
    };
    p->in_decide = true;
    int rv = c->decider.ops->decide(c->decider.impl, &req,
                                    node_clients_decided_cb, p, &p->handle);
    if (rv != 0 && !p->done) {
        c->stats.denied++;
        node_clients_send_deny(c, p->cid, p->kid, "decision failed",
                               NODE_TEMP_CLIENT_REASON);
        node_clients_count(c, reauth, NODE_WHY_ERROR, p->t0_us);
        /* Still in_decide: finish must not free p, the line below does
         * (freed twice before). */
        node_pending_finish(p);
    }
    p->in_decide = false;
    if (p->done) {
        ovha_free(p);
    }
    node_clients_arm(c);
}

/* A DISCONNECT while the decision is pending: nobody to answer. */
static void node_clients_drop_pending_cid(struct node_clients *c, uint64_t cid)
{
    struct node_pending *p = c->head;
    while (p != NULL) {
        struct node_pending *next = p->next;
        if (p->cid == cid) {
            c->decider.ops->cancel(c->decider.impl, p->handle);
            node_pending_finish(p);
        }
        p = next;
    }
}

static void node_clients_on_established(struct node_clients *c,
                                        const struct mgmt_event *ev)
{
    struct node_session *s = node_clients_add(c, ev->cid);
    if (s == NULL) {
        return;
    }
    const char *cn = mgmt_env_get(&ev->env, "common_name");
    const char *vip = mgmt_env_get(&ev->env, "ifconfig_pool_remote_ip");
    const char *ip = mgmt_env_get(&ev->env, "trusted_ip");
    const char *port = mgmt_env_get(&ev->env, "trusted_port");
    const char *t = mgmt_env_get(&ev->env, "time_unix");
    uint64_t since = 0;
    if (cn != NULL) {
        ovha_strlcpy(s->cn, cn, sizeof(s->cn));
    }
    if (vip != NULL) {
        ovha_strlcpy(s->vpn_ip, vip, sizeof(s->vpn_ip));
    }
    if (ip != NULL) {
        snprintf(s->real_addr, sizeof(s->real_addr), "%s:%s", ip,
                 port != NULL ? port : "0");
    }
    if (t != NULL && ovha_parse_u64(t, UINT64_MAX, &since) == 0) {
        s->since = since;
    }
    s->state = NODE_SESSION_ESTABLISHED;
    if (s->session_id != 0 && c->decider.ops->session_established != NULL) {
        c->decider.ops->session_established(c->decider.impl, s->session_id);
    }
}

static void node_clients_on_disconnect(struct node_clients *c,
                                       const struct mgmt_event *ev)
{
    node_clients_drop_pending_cid(c, ev->cid);
    struct node_session *s = node_clients_find(c, ev->cid);
    if (s != NULL) {
        char q[600];
        LOG_INFO("clients", "disconnect cn=\"%s\" cid=%llu ip=%s",
                 node_clients_q(s->cn, q, sizeof(q)),
                 (unsigned long long)s->cid, s->vpn_ip);
        node_clients_remove(c, s);
    }
    node_clients_arm(c);
}

static void node_clients_session_mac(struct node_clients *c,
                                     struct node_session *s,
                                     const char *addr);

/* The client's rate against its own baseline: a jump is logged and
 * counted (the risk score reads the count later). */
static void node_clients_baseline(struct node_clients *c,
                                  struct node_session *s)
{
    static const char *const dirs[] = { "from", "to" };
    struct node_baseline_event ev;
    struct node_baseline_cfg cfg = node_baseline_cfg_default();
    if (node_baseline_sample(&s->baseline, &cfg, ovha_now_mono_ms(),
                             s->bytes_in, s->bytes_out, &ev) != 1) {
        return;
    }
    char q[600];
    for (int d = 0; d < NODE_BASELINE_NDIRS; d++) {
        if ((ev.started & (1u << d)) == 0) {
            continue;
        }
        c->stats.anomalies++;
        LOG_WARN("clients",
                 "bandwidth anomaly cn=\"%s\" cid=%llu: %.0f B/s %s the "
                 "client, baseline %.0f +- %.0f B/s",
                 node_clients_q(s->cn, q, sizeof(q)),
                 (unsigned long long)s->cid, ev.dir[d].rate, dirs[d],
                 ev.dir[d].mean, ev.dir[d].stddev);
    }
}

void node_clients_on_event(struct node_clients *c, const struct mgmt_event *ev)
{
    struct node_session *s;
    switch (ev->type) {
    case MGMT_EV_CLIENT_CONNECT:
        node_clients_on_auth_request(c, ev, false);
        break;
    case MGMT_EV_CLIENT_REAUTH:
        node_clients_on_auth_request(c, ev, true);
        break;
    case MGMT_EV_CLIENT_ESTABLISHED:
        node_clients_on_established(c, ev);
        break;
    case MGMT_EV_CLIENT_DISCONNECT:
        node_clients_on_disconnect(c, ev);
        break;
    case MGMT_EV_BYTECOUNT_CLI:
        s = node_clients_find(c, ev->cid);
        if (s != NULL) {
            s->bytes_in = ev->bytes_in;
            s->bytes_out = ev->bytes_out;
            node_clients_baseline(c, s);
            if (s->session_id != 0 && c->decider.ops->session_bytes != NULL) {
                c->decider.ops->session_bytes(c->decider.impl, s->session_id,
                                              s->cn, s->bytes_in, s->bytes_out);
            }
        }
        break;
    case MGMT_EV_CLIENT_ADDRESS:
        s = node_clients_find(c, ev->cid);
        if (s != NULL && ev->addr != NULL) {
            node_clients_session_mac(c, s, ev->addr);
        }
        break;
    case MGMT_EV_PARSE_ERROR:
        LOG_WARN("clients", "management input dropped: %s: %s",
                 ovha_strerror(ev->error), ev->text != NULL ? ev->text : "");
        break;
    default:
        break;
    }
}

/* ---- resynchronisation -------------------------------------------------- */

/* Rebuilds the table from `status 3`: sessions openvpn no longer has
 * (it restarted) are closed, established ones we missed are added. */
static void node_clients_resync(struct node_clients *c,
                                const struct mgmt_status *st)
{
    size_t i = 0;
    while (i < c->nsessions) {
        bool found = c->sessions[i].gen >= c->resync_gen;
        for (size_t j = 0; j < st->nclients && !found; j++) {
            found = st->clients[j].cid == c->sessions[i].cid &&
                    st->clients[j].vaddr[0] != '\0';
        }
        if (found) {
            i++;
        } else {
            node_clients_remove(c, &c->sessions[i]);
        }
    }
    for (size_t j = 0; j < st->nclients; j++) {
        const struct mgmt_status_client *r = &st->clients[j];
        if (r->vaddr[0] == '\0') {
            continue; /* still waiting for auth: recovery kills it */
        }
        struct node_session *s = node_clients_add(c, r->cid);
        if (s == NULL) {
            return;
        }
        ovha_strlcpy(s->cn, r->cn, sizeof(s->cn));
        ovha_strlcpy(s->real_addr, r->real_addr, sizeof(s->real_addr));
        ovha_strlcpy(s->vpn_ip, r->vaddr, sizeof(s->vpn_ip));
        s->since = r->connected_since;
        s->bytes_in = r->bytes_in;
        s->bytes_out = r->bytes_out;
        s->state = NODE_SESSION_ESTABLISHED;
    }
}

static void node_clients_status_cb(struct mgmt_conn *m,
                                   int status,
                                   const struct mgmt_reply *reply,
                                   void *data)
{
    (void)m;
    struct node_clients *c = data;
    struct mgmt_status st;
    if (status != 0 || c->close_cb != NULL) {
        return;
    }
    int rv = mgmt_status_parse(reply->lines, reply->nlines, &st);
    if (rv != 0) {
        LOG_WARN("clients", "status 3 reply unusable: %s", ovha_strerror(rv));
        return;
    }
    node_clients_resync(c, &st);
    LOG_INFO("clients", "session table resynchronised: %zu live", c->nsessions);
    mgmt_status_free(&st);
}

/* A routing-table address of a tap client: "aa:bb:cc:dd:ee:ff@vid". */
static bool node_clients_is_mac(const char *a)
{
    size_t colons = 0;
    for (; *a != '\0' && *a != '@'; a++) {
        colons += *a == ':';
    }
    return colons == 5;
}

static bool node_clients_mac_known(const struct node_session *s,
                                   const char *mac)
{
    for (size_t i = 0; i < s->nmacs; i++) {
        if (strcmp(s->macs[i], mac) == 0) {
            return true;
        }
    }
    return false;
}

/* A MAC openvpn learned for session s ("aa:bb:cc:dd:ee:ff@vid"): handed
 * to the decider once per session. Other addresses (IPs) are ignored. */
static void node_clients_session_mac(struct node_clients *c,
                                     struct node_session *s,
                                     const char *addr)
{
    char mac[18];
    size_t n = strcspn(addr, "@");
    if (!node_clients_is_mac(addr) || n >= sizeof(mac) || s->session_id == 0 ||
        c->decider.ops->session_address == NULL) {
        return;
    }
    memcpy(mac, addr, n);
    mac[n] = '\0';
    if (node_clients_mac_known(s, mac) || s->nmacs == NODE_SESSION_MACS) {
        return;
    }
    ovha_strlcpy(s->macs[s->nmacs++], mac, sizeof(s->macs[0]));
    c->decider.ops->session_address(c->decider.impl, s->session_id, s->cn, mac);
}

/* One routing-table row: the MAC's client is the CLIENT_LIST row with the
 * same CN and real address (status 3 gives no CID per route). */
static void node_clients_route_mac(struct node_clients *c,
                                   const struct mgmt_status *st,
                                   const struct mgmt_status_route *rt)
{
    for (size_t j = 0; j < st->nclients; j++) {
        const struct mgmt_status_client *cl = &st->clients[j];
        if (strcmp(cl->cn, rt->cn) != 0 ||
            strcmp(cl->real_addr, rt->real_addr) != 0) {
            continue;
        }
        struct node_session *s = node_clients_find(c, cl->cid);
        if (s != NULL) {
            node_clients_session_mac(c, s, rt->vaddr);
        }
        return;
    }
}

static void node_clients_poll_cb(struct mgmt_conn *m,
                                 int status,
                                 const struct mgmt_reply *reply,
                                 void *data)
{
    (void)m;
    struct node_clients *c = data;
    struct mgmt_status st;
    if (status != 0 || c->close_cb != NULL ||
        c->decider.ops->session_address == NULL ||
        mgmt_status_parse(reply->lines, reply->nlines, &st) != 0) {
        return;
    }
    for (size_t i = 0; i < st.nroutes; i++) {
        node_clients_route_mac(c, &st, &st.routes[i]);
    }
    mgmt_status_free(&st);
}

static void node_clients_poll_timer_cb(uv_timer_t *t)
{
    struct node_clients *c = t->data;
    struct ovha_buf b;
    ovha_buf_init(&b);
    if (mgmt_cmd_status(&b, 3) == 0) {
        mgmt_conn_send(c->mgmt, b.data, b.len, node_clients_poll_cb, c);
    }
    ovha_buf_free(&b);
}

void node_clients_poll_addresses(struct node_clients *c, uint64_t interval_ms)
{
    uv_timer_start(&c->poll, node_clients_poll_timer_cb, interval_ms,
                   interval_ms);
}

void node_clients_on_link(struct node_clients *c, bool up)
{
    if (!up) {
        /* No answer can reach openvpn now; recovery on reconnect kills
         * every client still waiting so it comes back with a CONNECT. */
        while (c->head != NULL) {
            c->decider.ops->cancel(c->decider.impl, c->head->handle);
            node_pending_finish(c->head);
        }
        node_clients_arm(c);
        return;
    }
    struct ovha_buf b;
    ovha_buf_init(&b);
    c->resync_gen = ++c->gen;
    if (mgmt_cmd_status(&b, 3) == 0) {
        mgmt_conn_send(c->mgmt, b.data, b.len, node_clients_status_cb, c);
    }
    ovha_buf_free(&b);
}

/* ---- API-facing --------------------------------------------------------- */

int node_clients_new(uv_loop_t *loop,
                     struct mgmt_conn *mgmt,
                     struct node_decider decider,
                     uint64_t deadline_ms,
                     struct node_clients **ret)
{
    struct node_clients *c = ovha_calloc(1, sizeof(*c));
    if (c == NULL) {
        return -ENOMEM;
    }
    c->loop = loop;
    c->mgmt = mgmt;
    c->decider = decider;
    c->deadline_ms = deadline_ms;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    uv_timer_init(loop, &c->poll);
    c->poll.data = c;
    c->open_handles = 2;
    *ret = c;
    return 0;
}

void node_clients_set_kick(struct node_clients *c, unsigned timeout_s)
{
    c->kick_timeout_s = timeout_s;
}

void node_clients_set_deadline(struct node_clients *c, uint64_t deadline_ms)
{
    c->deadline_ms = deadline_ms;
}

size_t node_clients_sessions(const struct node_clients *c,
                             const struct node_session **ret)
{
    *ret = c->sessions;
    return c->nsessions;
}

/* openvpn needs a few seconds to drop a killed client: automatic kills
 * (reconciliation, drain, fencing) are not repeated within this time. */
#define NODE_CLIENTS_KILL_REPEAT_MS 10000

static bool node_clients_killed_lately(const struct node_session *s,
                                       uint64_t now)
{
    return s->kill_sent != 0 &&
           now - s->kill_sent < NODE_CLIENTS_KILL_REPEAT_MS;
}

static bool node_clients_kill_one(struct node_clients *c,
                                  struct node_session *s,
                                  const char *msg)
{
    struct ovha_buf b;
    ovha_buf_init(&b);
    int rv = mgmt_cmd_client_kill(&b, s->cid, msg);
    if (rv == 0) {
        rv = node_clients_send(c, &b, "client-kill");
    }
    ovha_buf_free(&b);
    if (rv == 0) {
        c->stats.kills++;
        s->kill_sent = ovha_now_mono_ms();
    } else {
        LOG_WARN("clients", "client-kill %llu not sent: %s",
                 (unsigned long long)s->cid, ovha_strerror(rv));
    }
    return rv == 0;
}

size_t node_clients_kill_cn(struct node_clients *c,
                            const char *cn,
                            const char *msg)
{
    size_t n = 0;
    char q[600];
    for (size_t i = 0; i < c->nsessions; i++) {
        if (strcmp(c->sessions[i].cn, cn) == 0 &&
            node_clients_kill_one(c, &c->sessions[i], msg)) {
            n++;
        }
    }
    LOG_INFO("clients", "kill cn=\"%s\": %zu session(s)",
             node_clients_q(cn, q, sizeof(q)), n);
    return n;
}

bool node_clients_throttle_session(struct node_clients *c, uint64_t session_id)
{
    for (size_t i = 0; i < c->nsessions; i++) {
        struct node_session *s = &c->sessions[i];
        if (s->session_id == session_id && !s->throttled) {
            s->throttled = true;
            return true;
        }
    }
    return false;
}

bool node_clients_kill_session(struct node_clients *c,
                               uint64_t session_id,
                               const char *msg,
                               const char *why)
{
    uint64_t now = ovha_now_mono_ms();
    for (size_t i = 0; i < c->nsessions; i++) {
        struct node_session *s = &c->sessions[i];
        if (s->session_id != session_id) {
            continue;
        }
        if (node_clients_killed_lately(s, now)) {
            return true;
        }
        char q[600];
        LOG_INFO("clients", "kill cn=\"%s\" cid=%llu: its session %llu %s",
                 node_clients_q(s->cn, q, sizeof(q)),
                 (unsigned long long)s->cid, (unsigned long long)session_id,
                 why);
        return node_clients_kill_one(c, s, msg);
    }
    return false;
}

size_t node_clients_kill_all(struct node_clients *c, const char *msg)
{
    uint64_t now = ovha_now_mono_ms();
    size_t n = 0;
    for (size_t i = 0; i < c->nsessions; i++) {
        struct node_session *s = &c->sessions[i];
        if (!node_clients_killed_lately(s, now)) {
            n += node_clients_kill_one(c, s, msg) ? 1 : 0;
        }
    }
    return n;
}

size_t node_clients_pending(const struct node_clients *c)
{
    return c->npending;
}

void node_clients_get_stats(const struct node_clients *c,
                            struct node_clients_stats *ret)
{
    *ret = c->stats;
}

static void node_clients_timer_close_cb(uv_handle_t *h)
{
    struct node_clients *c = h->data;
    if (--c->open_handles > 0) {
        return;
    }
    void (*cb)(void *) = c->close_cb;
    void *data = c->close_data;
    ovha_free(c->sessions);
    ovha_free(c->cid_slots);
    ovha_free(c);
    if (cb != NULL) {
        cb(data);
    }
}

void node_clients_close(struct node_clients *c,
                        void (*cb)(void *data),
                        void *data)
{
    while (c->head != NULL) {
        c->decider.ops->cancel(c->decider.impl, c->head->handle);
        node_pending_finish(c->head);
    }
    c->close_cb = cb;
    c->close_data = data;
    uv_close((uv_handle_t *)&c->timer, node_clients_timer_close_cb);
    uv_close((uv_handle_t *)&c->poll, node_clients_timer_close_cb);
}
