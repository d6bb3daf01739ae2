/* node/policy: decisions from local policy data.
 *
 * Rules: a client entry matching the CN exactly, its groups applied in
 * order, then the entry's own fields (a set field overrides, lists
 * append). Unknown CNs get policy.default. Addresses: a static IP from the
 * rules, else the lowest free address of policy.pool, sticky per CN for
 * the life of the process. A CN's address is reused for another CN only
 * when the pool is otherwise exhausted and the CN has no live session.
 *
 * This is the node-local stand-in for the replicated lease table; it keeps
 * the same observable rules (sticky, never two live holders).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "node/decide.h"

#define NODE_POLICY_MAX_POOL (1u << 22) /* addresses tracked in a pool */

struct node_policy_lease {
    char cn[256];
    uint32_t ip; /* host order */
    unsigned live;
};

/* CN -> array index, open addressing (slot = index + 1, 0 = empty). The
 * arrays stay the truth; an index is rebuilt whenever its array is
 * reshaped, so a decision costs O(1) in the number of clients and leases
 * instead of a strcmp per entry (issue 9: 60% of ovhad's CPU at 10,000
 * clients went to those scans). */
struct node_policy_index {
    uint32_t *slots;
    size_t cap; /* a power of two, at least twice the entries */
};

struct node_policy {
    const struct node_cfg *cfg;
    struct node_policy_index by_client; /* into cfg->policy.clients */
    struct node_policy_index by_lease;  /* into leases */
    uint32_t pool_base;                 /* first usable address, host order */
    uint32_t pool_size;
    uint8_t *used; /* bitmap over the pool */
    struct node_policy_lease *leases;
    size_t nleases, capleases;
    struct node_rules rules; /* where the standalone decider asks */
};

static int node_policy_v4(const char *s, uint32_t *ret)
{
    struct in_addr a;
    if (inet_pton(AF_INET, s, &a) != 1) {
        return -EINVAL;
    }
    *ret = ntohl(a.s_addr);
    return 0;
}

static void node_policy_ntop(uint32_t ip, char *out, size_t len)
{
    struct in_addr a = { .s_addr = htonl(ip) };
    inet_ntop(AF_INET, &a, out, (socklen_t)len);
}

static bool node_policy_bit(const struct node_policy *p, uint32_t ip)
{
    uint32_t i = ip - p->pool_base;
    return i < p->pool_size && (p->used[i / 8] & (1u << (i % 8))) != 0;
}

static void node_policy_set_bit(struct node_policy *p, uint32_t ip, bool on)
{
    uint32_t i = ip - p->pool_base;
    if (i >= p->pool_size) {
        return;
    }
    if (on) {
        p->used[i / 8] |= (uint8_t)(1u << (i % 8));
    } else {
        p->used[i / 8] &= (uint8_t) ~(1u << (i % 8));
    }
}

/* Marks the server's own address and every static IP of the rules as
 * taken, so the pool never hands them out. */
static void node_policy_reserve_statics(struct node_policy *p)
{
    const struct node_cfg_policy *pol = &p->cfg->policy;
    uint32_t ip;
    if (node_policy_v4(p->cfg->openvpn.network.addr, &ip) == 0) {
        node_policy_set_bit(p, ip + 1, true);
    }
    for (size_t i = 0; i < pol->nclients; i++) {
        if (node_policy_v4(pol->clients[i].grant.ip, &ip) == 0) {
            node_policy_set_bit(p, ip, true);
        }
    }
    for (size_t i = 0; i < pol->ngroups; i++) {
        if (node_policy_v4(pol->groups[i].grant.ip, &ip) == 0) {
            node_policy_set_bit(p, ip, true);
        }
    }
    for (size_t i = 0; i < p->nleases; i++) {
        node_policy_set_bit(p, p->leases[i].ip, true);
    }
}

static uint64_t node_policy_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s != '\0'; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    }
    return h;
}

/* The CN of entry i of the indexed array. */
typedef const char *(*node_policy_name_fn)(const struct node_policy *p,
                                           size_t i);

static const char *node_policy_client_name(const struct node_policy *p,
                                           size_t i)
{
    return p->cfg->policy.clients[i].cn;
}

static const char *node_policy_lease_name(const struct node_policy *p, size_t i)
{
    return p->leases[i].cn;
}

static void node_policy_index_put(struct node_policy_index *x,
                                  const char *cn,
                                  size_t i)
{
    size_t mask = x->cap - 1;
    size_t at = (size_t)node_policy_hash(cn) & mask;
    while (x->slots[at] != 0) {
        at = (at + 1) & mask;
    }
    x->slots[at] = (uint32_t)(i + 1);
}

/* Rebuilds x over n entries. The first of equal CNs wins, as the linear
 * scan it replaces did. On allocation failure x is emptied and lookups
 * fall back to scanning (see node_policy_index_get). */
static int node_policy_index_build(const struct node_policy *p,
                                   struct node_policy_index *x,
                                   node_policy_name_fn name,
                                   size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n + 2) {
        cap *= 2;
    }
    uint32_t *slots = ovha_calloc(cap, sizeof(*slots));
    ovha_free(x->slots);
    x->slots = NULL;
    x->cap = 0;
    if (slots == NULL) {
        return -ENOMEM;
    }
    x->slots = slots;
    x->cap = cap;
    for (size_t i = n; i-- > 0;) {
        node_policy_index_put(x, name(p, i), i);
    }
    return 0;
}

/* Entry of cn among n, or SIZE_MAX. Equal CNs: the lowest index. */
static size_t node_policy_index_get(const struct node_policy *p,
                                    const struct node_policy_index *x,
                                    node_policy_name_fn name,
                                    size_t n,
                                    const char *cn)
{
    if (x->cap < 2 * n + 2) { /* no table for this many: scan */
        for (size_t i = 0; i < n; i++) {
            if (strcmp(name(p, i), cn) == 0) {
                return i;
            }
        }
        return SIZE_MAX;
    }
    size_t best = SIZE_MAX, mask = x->cap - 1;
    for (size_t at = (size_t)node_policy_hash(cn) & mask; x->slots[at] != 0;
         at = (at + 1) & mask) {
        size_t i = x->slots[at] - 1;
        if (i < n && i < best && strcmp(name(p, i), cn) == 0) {
            best = i;
        }
    }
    return best;
}

/* (Re)builds the pool bitmap for the current config. Leases outside the
 * new pool are dropped unless live. */
static int node_policy_build_pool(struct node_policy *p)
{
    const struct node_cfg_net *pool = &p->cfg->policy.pool;
    uint32_t base = 0;
    uint32_t size = 0;
    if (pool->addr[0] != '\0' && !pool->v6 &&
        node_policy_v4(pool->addr, &base) == 0 && pool->prefix <= 30) {
        uint32_t mask = pool->prefix == 0 ? 0 : ~0u << (32 - pool->prefix);
        base = (base & mask) + 1; /* skip the network */
        size = (~mask) - 1;       /* and the broadcast */
        if (size > NODE_POLICY_MAX_POOL) {
            size = NODE_POLICY_MAX_POOL;
        }
    }
    uint8_t *used = ovha_calloc(size / 8 + 1, 1);
    if (used == NULL) {
        return -ENOMEM;
    }
    ovha_free(p->used);
    p->used = used;
    p->pool_base = base;
    p->pool_size = size;
    size_t keep = 0;
    for (size_t i = 0; i < p->nleases; i++) {
        struct node_policy_lease *l = &p->leases[i];
        if (l->live > 0 || l->ip - base < size) {
            p->leases[keep++] = *l;
        }
    }
    p->nleases = keep;
    node_policy_reserve_statics(p);
    node_policy_index_build(p, &p->by_client, node_policy_client_name,
                            p->cfg->policy.nclients);
    node_policy_index_build(p, &p->by_lease, node_policy_lease_name,
                            p->nleases);
    return 0;
}

int node_policy_new(const struct node_cfg *cfg, struct node_policy **ret)
{
    struct node_policy *p = ovha_calloc(1, sizeof(*p));
    if (p == NULL) {
        return -ENOMEM;
    }
    p->cfg = cfg;
    int rv = node_policy_build_pool(p);
    if (rv != 0) {
        ovha_free(p);
        return rv;
    }
    *ret = p;
    return 0;
}

void node_policy_free(struct node_policy *p)
{
    if (p == NULL) {
        return;
    }
    ovha_free(p->used);
    ovha_free(p->leases);
    ovha_free(p->by_client.slots);
    ovha_free(p->by_lease.slots);
    ovha_free(p);
}

void node_policy_set_cfg(struct node_policy *p, const struct node_cfg *cfg)
{
    p->cfg = cfg;
    if (node_policy_build_pool(p) != 0) {
        LOG_WARN("policy",
                 "rebuilding the pool: out of memory; keeping "
                 "the old pool map");
    }
}

static struct node_policy_lease *node_policy_find(struct node_policy *p,
                                                  const char *cn)
{
    size_t i = node_policy_index_get(p, &p->by_lease, node_policy_lease_name,
                                     p->nleases, cn);
    return i == SIZE_MAX ? NULL : &p->leases[i];
}

/* Takes the idle lease with the lowest address from its CN (pool
 * exhausted). Returns NULL if every lease is live. */
static struct node_policy_lease *node_policy_steal(struct node_policy *p)
{
    struct node_policy_lease *best = NULL;
    for (size_t i = 0; i < p->nleases; i++) {
        struct node_policy_lease *l = &p->leases[i];
        if (l->live == 0 && l->ip - p->pool_base < p->pool_size &&
            (best == NULL || l->ip < best->ip)) {
            best = l;
        }
    }
    return best;
}

static struct node_policy_lease *node_policy_new_lease(struct node_policy *p,
                                                       const char *cn)
{
    for (uint32_t i = 0; i < p->pool_size; i++) {
        if (!node_policy_bit(p, p->pool_base + i)) {
            if (p->nleases == p->capleases) {
                size_t cap = p->capleases ? 2 * p->capleases : 64;
                void *n = ovha_realloc(p->leases, cap * sizeof(*p->leases));
                if (n == NULL) {
                    return NULL;
                }
                p->leases = n;
                p->capleases = cap;
            }
            struct node_policy_lease *l = &p->leases[p->nleases++];
            ovha_strlcpy(l->cn, cn, sizeof(l->cn));
            l->ip = p->pool_base + i;
            l->live = 0;
            node_policy_set_bit(p, l->ip, true);
            if (p->by_lease.cap >= 2 * p->nleases + 2) {
                node_policy_index_put(&p->by_lease, l->cn, p->nleases - 1);
            } else {
                node_policy_index_build(p, &p->by_lease, node_policy_lease_name,
                                        p->nleases);
            }
            return l;
        }
    }
    struct node_policy_lease *l = node_policy_steal(p);
    if (l != NULL) {
        ovha_strlcpy(l->cn, cn, sizeof(l->cn));
        node_policy_index_build(p, &p->by_lease, node_policy_lease_name,
                                p->nleases);
    }
    return l;
}

/* Applies one grant on top of the decision: set fields override, lists
 * append (bounded by the arrays). */
static void node_policy_merge(struct node_decision *d,
                              const struct node_cfg_grant *g)
{
    if (g->action_set) {
        d->allow = g->action == NODE_CFG_ALLOW;
        ovha_strlcpy(d->reason, g->reason, sizeof(d->reason));
        ovha_strlcpy(d->client_reason, g->client_reason,
                     sizeof(d->client_reason));
    }
    if (g->ip[0] != '\0') {
        ovha_strlcpy(d->ip, g->ip, sizeof(d->ip));
    }
    for (size_t i = 0; i < g->nroutes &&
                       d->nroutes < sizeof(d->routes) / sizeof(d->routes[0]);
         i++) {
        struct mgmt_net *r = &d->routes[d->nroutes++];
        ovha_strlcpy(r->addr, g->routes[i].addr, sizeof(r->addr));
        r->prefix = g->routes[i].prefix;
    }
    for (size_t i = 0; i < g->niroutes && d->niroutes < NODE_CFG_MAX_ROUTES;
         i++) {
        struct mgmt_net *r = &d->iroutes[d->niroutes++];
        ovha_strlcpy(r->addr, g->iroutes[i].addr, sizeof(r->addr));
        r->prefix = g->iroutes[i].prefix;
    }
    for (size_t i = 0; i < g->npush && d->npush < NODE_CFG_MAX_PUSH; i++) {
        ovha_strlcpy(d->push[d->npush++], g->push[i], sizeof(d->push[0]));
    }
}

static const struct node_cfg_group *node_policy_group(
    const struct node_cfg_policy *pol,
    const char *name)
{
    for (size_t i = 0; i < pol->ngroups; i++) {
        if (strcmp(pol->groups[i].name, name) == 0) {
            return &pol->groups[i];
        }
    }
    return NULL;
}

static const struct node_cfg_client *node_policy_client(
    const struct node_policy *p,
    const char *cn)
{
    const struct node_cfg_policy *pol = &p->cfg->policy;
    size_t i = node_policy_index_get(p, &p->by_client, node_policy_client_name,
                                     pol->nclients, cn);
    return i == SIZE_MAX ? NULL : &pol->clients[i];
}

static void node_policy_deny(struct node_decision *d,
                             const char *reason,
                             const char *client_reason)
{
    d->allow = false;
    ovha_strlcpy(d->reason, reason, sizeof(d->reason));
    ovha_strlcpy(d->client_reason, client_reason, sizeof(d->client_reason));
}

/* Picks the address: the rule's static IP or the CN's sticky pool lease. */
static void node_policy_address(struct node_policy *p,
                                const char *cn,
                                struct node_decision *d)
{
    if (d->ip[0] != '\0') {
        return;
    }
    struct node_policy_lease *l = node_policy_find(p, cn);
    if (l == NULL) {
        l = node_policy_new_lease(p, cn);
    }
    if (l == NULL) {
        node_policy_deny(d, "address pool exhausted", "No address available");
        return;
    }
    node_policy_ntop(l->ip, d->ip, sizeof(d->ip));
}

static void node_policy_netmask(const struct node_cfg *cfg,
                                struct node_decision *d)
{
    unsigned prefix = cfg->openvpn.network.prefix;
    uint32_t m = prefix == 0 ? 0 : ~0u << (32 - prefix);
    node_policy_ntop(m, d->netmask, sizeof(d->netmask));
}

void node_policy_decide_rules(struct node_policy *p,
                              const struct node_decision_req *req,
                              struct node_decision *d)
{
    const struct node_cfg_policy *pol = &p->cfg->policy;
    memset(d, 0, sizeof(*d));
    const struct node_cfg_client *c = node_policy_client(p, req->cn);
    if (c == NULL) {
        d->allow = pol->default_action == NODE_CFG_ALLOW;
        ovha_strlcpy(d->reason, pol->default_reason, sizeof(d->reason));
        ovha_strlcpy(d->client_reason, "Access denied",
                     sizeof(d->client_reason));
    } else {
        d->allow = true;
        for (size_t i = 0; i < c->ngroups; i++) {
            const struct node_cfg_group *g =
                node_policy_group(pol, c->groups[i]);
            if (g != NULL) {
                node_policy_merge(d, &g->grant);
            }
        }
        node_policy_merge(d, &c->grant);
    }
    if (!d->allow) {
        if (d->reason[0] == '\0') {
            ovha_strlcpy(d->reason, "denied by policy", sizeof(d->reason));
        }
        if (d->client_reason[0] == '\0') {
            ovha_strlcpy(d->client_reason, "Access denied",
                         sizeof(d->client_reason));
        }
        return;
    }
    d->reason[0] = '\0';
    node_policy_netmask(p->cfg, d);
}

void node_policy_decide(struct node_policy *p,
                        const struct node_decision_req *req,
                        struct node_decision *d)
{
    node_policy_decide_rules(p, req, d);
    if (d->allow) {
        node_policy_address(p, req->cn, d);
    }
}

/* ---- as a rules source ------------------------------------------------- */

static void node_policy_limit(const struct node_cfg_grant *from,
                              struct node_grant *g)
{
    g->down_kbps = from->down_kbps != 0 ? from->down_kbps : g->down_kbps;
    g->up_kbps = from->up_kbps != 0 ? from->up_kbps : g->up_kbps;
    if (from->quota_bytes != 0) {
        g->quota_bytes = from->quota_bytes;
        ovha_strlcpy(g->quota_period, "month", sizeof(g->quota_period));
    }
}

/* Rates and quota: the groups' in order, then the client's own. */
static void node_policy_limits(const struct node_cfg_policy *pol,
                               const struct node_cfg_client *c,
                               struct node_grant *g)
{
    for (size_t i = 0; i < c->ngroups; i++) {
        const struct node_cfg_group *grp = node_policy_group(pol, c->groups[i]);
        if (grp != NULL) {
            node_policy_limit(&grp->grant, g);
        }
    }
    node_policy_limit(&c->grant, g);
}

void node_grant_join_groups(struct node_grant *g,
                            const char (*names)[64],
                            size_t n)
{
    size_t len = 0;
    g->groups[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t need = strlen(names[i]) + (len > 0 ? 1 : 0);
        if (len + need >= sizeof(g->groups)) {
            LOG_WARN("policy", "group %s left out: too many groups", names[i]);
            continue;
        }
        snprintf(g->groups + len, sizeof(g->groups) - len, "%s%s",
                 len > 0 ? "," : "", names[i]);
        len += need;
    }
}

static int node_policy_lookup_op(void *impl,
                                 const struct node_decision_req *req,
                                 node_rules_cb cb,
                                 void *data,
                                 void **ret_handle)
{
    struct node_grant g;
    memset(&g, 0, sizeof(g));
    struct node_policy *p = impl;
    node_policy_decide_rules(p, req, &g.d);
    const struct node_cfg_client *c = node_policy_client(p, req->cn);
    if (c != NULL && g.d.allow) {
        node_grant_join_groups(&g, c->groups, c->ngroups);
        node_policy_limits(&p->cfg->policy, c, &g);
    }
    g.source = "policy";
    *ret_handle = NULL;
    cb(&g, data);
    return 0;
}

static void node_policy_lookup_cancel_op(void *impl, void *handle)
{
    (void)impl;
    (void)handle; /* lookups are synchronous: nothing in flight */
}

static const struct node_rules_ops node_policy_rules_ops = {
    .lookup = node_policy_lookup_op,
    .cancel = node_policy_lookup_cancel_op,
};

void node_policy_rules(struct node_policy *p, struct node_rules *ret)
{
    ret->ops = &node_policy_rules_ops;
    ret->impl = p;
}

/* ---- the standalone decider --------------------------------------------- */

/* One decision waiting for its rules. */
struct node_policy_call {
    struct node_policy *p;
    node_decide_cb cb;
    void *data;
    void *handle; /* the rules source's */
    bool reauth;
    bool done;      /* the rules answered */
    bool in_lookup; /* inside rules.lookup(): decide_op frees */
    char cn[256];
};

static void node_policy_grant_cb(const struct node_grant *g, void *data)
{
    struct node_policy_call *call = data;
    struct node_policy *p = call->p;
    struct node_decision d = g->d;
    call->done = true;
    d.source = g->source;
    d.down_kbps = g->down_kbps;
    d.up_kbps = g->up_kbps;
    if (d.allow && g->pool[0] != '\0' &&
        strcmp(g->pool, p->cfg->cluster.pool_name) != 0) {
        node_policy_deny(&d, "upstream grant invalid: unknown pool",
                         "Access denied");
    }
    if (d.allow) {
        node_policy_address(p, call->cn, &d);
    }
    if (d.allow && !call->reauth) {
        struct node_policy_lease *l = node_policy_find(p, call->cn);
        if (l != NULL) {
            l->live++;
        }
    }
    call->cb(&d, call->data);
    if (!call->in_lookup) {
        ovha_free(call); /* the caller forgot the handle when cb fired */
    }
}

static int node_policy_decide_op(void *impl,
                                 const struct node_decision_req *req,
                                 node_decide_cb cb,
                                 void *data,
                                 void **ret_handle)
{
    struct node_policy *p = impl;
    struct node_policy_call *call = ovha_calloc(1, sizeof(*call));
    if (call == NULL) {
        return -ENOMEM;
    }
    call->p = p;
    call->cb = cb;
    call->data = data;
    call->reauth = req->reauth;
    ovha_strlcpy(call->cn, req->cn, sizeof(call->cn));
    call->in_lookup = true;
    int rv = p->rules.ops->lookup(p->rules.impl, req, node_policy_grant_cb,
                                  call, &call->handle);
    call->in_lookup = false;
    if (rv != 0 || call->done) {
        ovha_free(call);
        *ret_handle = NULL;
        return rv;
    }
    *ret_handle = call;
    return 0;
}

static void node_policy_cancel_op(void *impl, void *handle)
{
    struct node_policy *p = impl;
    struct node_policy_call *call = handle;
    if (call == NULL) {
        return;
    }
    p->rules.ops->cancel(p->rules.impl, call->handle);
    ovha_free(call);
}

static void node_policy_closed_op(void *impl,
                                  const char *cn,
                                  const char *ip,
                                  uint64_t session_id)
{
    (void)ip;
    (void)session_id;
    struct node_policy_lease *l = node_policy_find(impl, cn);
    if (l != NULL && l->live > 0) {
        l->live--;
    }
}

static const struct node_decider_ops node_policy_ops = {
    .decide = node_policy_decide_op,
    .cancel = node_policy_cancel_op,
    .session_closed = node_policy_closed_op,
};

void node_policy_decider(struct node_policy *p,
                         struct node_rules rules,
                         struct node_decider *ret)
{
    p->rules = rules;
    ret->ops = &node_policy_ops;
    ret->impl = p;
}

void node_decision_client_config(const struct node_decision *d,
                                 const char **push_ptrs,
                                 struct mgmt_client_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    ovha_strlcpy(cfg->ifconfig_local, d->ip, sizeof(cfg->ifconfig_local));
    ovha_strlcpy(cfg->ifconfig_netmask, d->netmask,
                 sizeof(cfg->ifconfig_netmask));
    cfg->routes = d->routes;
    cfg->nroutes = d->nroutes;
    cfg->iroutes = d->iroutes;
    cfg->niroutes = d->niroutes;
    for (size_t i = 0; i < d->npush; i++) {
        push_ptrs[i] = d->push[i];
    }
    cfg->push = push_ptrs;
    cfg->npush = d->npush;
}
