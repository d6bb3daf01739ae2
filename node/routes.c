/* node/routes: kernel routes (and, bridged, the bridge FDB) derived from
 * the replicated state. See routes.h. Passes are node/job passes: the
 * desired set is built on the loop, netlink runs in the thread pool.
 */
#include "node/routes.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "enforce/fdb.h"
#include "enforce/route.h"
#include "fsm/fsm.h"
#include "node/job.h"

#define ROUTES_MOD     "routes"
#define ROUTES_MAX_GWS 64

struct routes_gw {
    char id[PROTO_ID_MAX];
    char addr[PROTO_ADDR_MAX];
    bool down;
};

/* Where each CN's newest live session is, for its subnets. */
struct routes_home {
    char cn[PROTO_CN_MAX];
    uint64_t session_id;
    const struct routes_gw *gw; /* NULL = this gateway */
};

struct routes_build {
    const struct node_routes *nr;
    struct routes_gw gws[ROUTES_MAX_GWS];
    size_t ngws;
    struct routes_home *homes;
    size_t nhomes, caphomes;
    struct enf_route_entry *out;
    size_t n, cap;
    struct enf_fdb_entry *fdb;
    size_t nfdb, capfdb;
    int err;
};

struct node_routes {
    const struct node_cfg *cfg;
    struct fsm *fsm;
    struct enf_route *er;
    struct enf_fdb *fdb; /* NULL unless bridged */
    struct node_job *job;
    /* The job's input and output (owned by the job while running). */
    struct enf_route_entry *job_routes;
    size_t job_n;
    struct enf_fdb_entry *job_fdb;
    size_t job_nfdb;
    int job_rv;
    char job_err[256];
    /* For stats.repairs: the last clean pass's desired set (a hash). */
    uint64_t job_hash, clean_hash;
    bool clean_known;
    struct node_routes_stats stats;
    void (*close_cb)(void *data);
    void *close_data;
};

/* ---- the desired set
 * --------------------------------------------------------- */

/* Appends e; duplicates are dropped once, by routes_dedupe, at the end of
 * the build (a scan per push was quadratic: 700 ms of loop time per pass
 * at 20,000 routes, enough to lose the raft leader). */
static int routes_push(struct routes_build *b, const struct enf_route_entry *e)
{
    if (b->n == b->cap) {
        size_t cap = b->cap != 0 ? 2 * b->cap : 64;
        void *p = ovha_realloc(b->out, cap * sizeof(*b->out));
        if (p == NULL) {
            return -ENOMEM;
        }
        b->out = p;
        b->cap = cap;
    }
    b->out[b->n++] = *e;
    return 0;
}

/* By dst and prefix, then by position: the first pushed comes first. */
static int routes_idx_cmp(const void *a, const void *b, void *data)
{
    const struct enf_route_entry *out = data;
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    int c = strcmp(out[x].dst, out[y].dst);
    if (c == 0) {
        c = out[x].prefix < out[y].prefix ? -1 : out[x].prefix > out[y].prefix;
    }
    return c != 0 ? c : (x < y ? -1 : x > y);
}

/* Drops every entry whose dst/prefix an earlier one has (the first one
 * wins; the FSM keeps them apart anyway), keeping the order. */
static int routes_dedupe(struct routes_build *b)
{
    if (b->n < 2) {
        return 0;
    }
    size_t *idx = ovha_malloc(b->n * sizeof(*idx));
    bool *drop = ovha_calloc(b->n, sizeof(*drop));
    if (idx == NULL || drop == NULL) {
        ovha_free(idx);
        ovha_free(drop);
        return -ENOMEM;
    }
    for (size_t i = 0; i < b->n; i++) {
        idx[i] = i;
    }
    qsort_r(idx, b->n, sizeof(*idx), routes_idx_cmp, b->out);
    for (size_t i = 1; i < b->n; i++) {
        const struct enf_route_entry *p = &b->out[idx[i - 1]];
        const struct enf_route_entry *q = &b->out[idx[i]];
        drop[idx[i]] = p->prefix == q->prefix && strcmp(p->dst, q->dst) == 0;
    }
    size_t keep = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (!drop[i]) {
            b->out[keep++] = b->out[i];
        }
    }
    b->n = keep;
    ovha_free(idx);
    ovha_free(drop);
    return 0;
}

static const struct routes_gw *routes_gw_find(const struct routes_build *b,
                                              const char *id)
{
    for (size_t i = 0; i < b->ngws; i++) {
        if (strcmp(b->gws[i].id, id) == 0) {
            return &b->gws[i];
        }
    }
    return NULL;
}

static int routes_gw_cb(const struct fsm_gateway_info *g, void *data)
{
    struct routes_build *b = data;
    if (b->ngws < ROUTES_MAX_GWS) {
        struct routes_gw *w = &b->gws[b->ngws++];
        ovha_strlcpy(w->id, g->id, sizeof(w->id));
        ovha_strlcpy(w->addr, g->addr, sizeof(w->addr));
        w->down = g->state == PROTO_GW_DOWN;
    }
    return 0;
}

/* Notes where s's CN lives. Every session is appended; routes_homes_sort
 * then keeps each CN's newest, so a pass is O(n log n) in sessions, not
 * a scan of the table per session (issue 9: that scan was 36% of ovhad's
 * CPU at 10,000 clients and stalled the loop at 3 x 10,000). */
static int routes_home_set(struct routes_build *b,
                           const struct fsm_session_info *s,
                           const struct routes_gw *gw)
{
    if (b->nhomes == b->caphomes) {
        size_t cap = b->caphomes != 0 ? 2 * b->caphomes : 64;
        void *p = ovha_realloc(b->homes, cap * sizeof(*b->homes));
        if (p == NULL) {
            return -ENOMEM;
        }
        b->homes = p;
        b->caphomes = cap;
    }
    struct routes_home *h = &b->homes[b->nhomes++];
    ovha_strlcpy(h->cn, s->cn, sizeof(h->cn));
    h->session_id = s->id;
    h->gw = gw;
    return 0;
}

/* By CN, and the newest session first within a CN. */
static int routes_home_cmp(const void *a, const void *b)
{
    const struct routes_home *x = a, *y = b;
    int c = strcmp(x->cn, y->cn);
    if (c != 0) {
        return c;
    }
    return x->session_id > y->session_id ? -1 : x->session_id < y->session_id;
}

/* Sorts the homes and keeps the newest session of each CN. */
static void routes_homes_sort(struct routes_build *b)
{
    size_t keep = 0;
    qsort(b->homes, b->nhomes, sizeof(*b->homes), routes_home_cmp);
    for (size_t i = 0; i < b->nhomes; i++) {
        if (keep == 0 || strcmp(b->homes[keep - 1].cn, b->homes[i].cn) != 0) {
            b->homes[keep++] = b->homes[i];
        }
    }
    b->nhomes = keep;
}

static int routes_home_key_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const struct routes_home *)elem)->cn);
}

/* A live session elsewhere: its address via its gateway. */
static int routes_session_cb(const struct fsm_session_info *s, void *data)
{
    struct routes_build *b = data;
    bool own = strcmp(s->gateway, b->nr->cfg->id) == 0;
    const struct routes_gw *gw = own ? NULL : routes_gw_find(b, s->gateway);
    if (s->state == FSM_SESSION_ORPHANED ||
        (!own && (gw == NULL || gw->down))) {
        return 0;
    }
    int rv = routes_home_set(b, s, gw);
    if (rv != 0 || own || s->ip4[0] == '\0' || gw->addr[0] == '\0' ||
        b->nr->cfg->openvpn.tap) {
        return rv;
    }
    struct enf_route_entry e;
    memset(&e, 0, sizeof(e));
    ovha_strlcpy(e.dst, s->ip4, sizeof(e.dst));
    e.prefix = 32;
    ovha_strlcpy(e.via, gw->addr, sizeof(e.via));
    return routes_push(b, &e);
}

/* A site subnet: via the gateway that holds its owner, or into the tun
 * device when that is this one. IPv6 subnets go only into the tun: the
 * underlay is IPv4. */
static int routes_subnet_cb(const struct fsm_subnet_info *sn, void *data)
{
    struct routes_build *b = data;
    const struct routes_home *h =
        bsearch(sn->owner_cn, b->homes, b->nhomes, sizeof(*b->homes),
                routes_home_key_cmp);
    if (h == NULL) {
        return 0; /* owner offline: no route */
    }
    struct enf_route_entry e;
    memset(&e, 0, sizeof(e));
    const char *slash = strchr(sn->cidr, '/');
    uint64_t prefix;
    if (slash == NULL || (size_t)(slash - sn->cidr) >= sizeof(e.dst) ||
        ovha_parse_u64(slash + 1, 128, &prefix) != 0) {
        return 0;
    }
    memcpy(e.dst, sn->cidr, (size_t)(slash - sn->cidr));
    e.prefix = (unsigned)prefix;
    bool v6 = strchr(e.dst, ':') != NULL;
    if (h->gw == NULL) {
        ovha_strlcpy(e.dev, b->nr->cfg->openvpn.dev, sizeof(e.dev));
    } else if (!v6) {
        ovha_strlcpy(e.via, h->gw->addr, sizeof(e.via));
    } else {
        return 0;
    }
    return routes_push(b, &e);
}

/* A MAC of the map: at the tap port when its client is here, else at the
 * uplink (the bridge there holds it; when that gateway is down the client
 * is moving, and the uplink is still the way out of this one). */
static int routes_mac_cb(const struct fsm_mac_info *m, void *data)
{
    struct routes_build *b = data;
    const struct node_cfg *cfg = b->nr->cfg;
    if (b->nfdb == b->capfdb) {
        size_t cap = b->capfdb != 0 ? 2 * b->capfdb : 64;
        void *p = ovha_realloc(b->fdb, cap * sizeof(*b->fdb));
        if (p == NULL) {
            return -ENOMEM;
        }
        b->fdb = p;
        b->capfdb = cap;
    }
    struct enf_fdb_entry *e = &b->fdb[b->nfdb++];
    memset(e, 0, sizeof(*e));
    ovha_strlcpy(e->mac, m->mac, sizeof(e->mac));
    bool own = strcmp(m->gateway, cfg->id) == 0;
    ovha_strlcpy(e->port, own ? cfg->openvpn.dev : cfg->bridge.uplink,
                 sizeof(e->port));
    return 0;
}

static int routes_build(struct node_routes *nr, struct routes_build *b)
{
    memset(b, 0, sizeof(*b));
    b->nr = nr;
    int rv = 0;
    if (nr->er != NULL) {
        rv = fsm_query_gateways(nr->fsm, routes_gw_cb, b);
        if (rv == 0) {
            rv = fsm_query_sessions(nr->fsm, NULL, routes_session_cb, b);
        }
        if (rv == 0 && !nr->cfg->openvpn.tap) {
            routes_homes_sort(b);
            rv = fsm_query_subnets(nr->fsm, NULL, routes_subnet_cb, b);
        }
    }
    if (rv == 0) {
        rv = routes_dedupe(b);
    }
    if (rv == 0 && nr->fdb != NULL) {
        rv = fsm_query_macs(nr->fsm, routes_mac_cb, b);
    }
    ovha_free(b->homes);
    b->homes = NULL;
    if (rv != 0) {
        ovha_free(b->out);
        b->out = NULL;
        ovha_free(b->fdb);
        b->fdb = NULL;
    }
    return rv;
}

/* ---- the job
 * ------------------------------------------------------------------- */

static void routes_work(void *data)
{
    struct node_routes *nr = data;
    int rv = 0;
    nr->job_err[0] = '\0';
    if (nr->er != NULL) {
        rv = enf_route_apply(nr->er, nr->job_routes, nr->job_n, nr->job_err,
                             sizeof(nr->job_err));
    }
    if (nr->fdb != NULL) {
        char err[sizeof(nr->job_err)] = "";
        int frv =
            enf_fdb_apply(nr->fdb, nr->job_fdb, nr->job_nfdb, err, sizeof(err));
        if (rv == 0 && frv != 0) {
            rv = frv;
            ovha_strlcpy(nr->job_err, err, sizeof(nr->job_err));
        }
    }
    nr->job_rv = rv;
}

/* FNV-1a over the desired set (its entries are zeroed before they are
 * filled, so equal sets hash equal). */
static uint64_t routes_hash(const void *p, size_t len, uint64_t h)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ b[i]) * 0x100000001b3ULL;
    }
    return h;
}

static uint64_t routes_changes(const struct node_routes_stats *st)
{
    return st->added + st->replaced + st->removed + st->fdb.added +
           st->fdb.replaced + st->fdb.removed + st->fdb.attached;
}

static void routes_copy_stats(struct node_routes *nr)
{
    if (nr->er != NULL) {
        struct enf_route_stats es;
        enf_route_get_stats(nr->er, &es);
        nr->stats.added = es.added;
        nr->stats.replaced = es.replaced;
        nr->stats.removed = es.removed;
    }
    if (nr->fdb != NULL) {
        struct enf_fdb_stats fs;
        enf_fdb_get_stats(nr->fdb, &fs);
        nr->stats.fdb.added = fs.added;
        nr->stats.fdb.replaced = fs.replaced;
        nr->stats.fdb.removed = fs.removed;
        nr->stats.fdb.attached = fs.attached;
    }
}

static void routes_after(void *data)
{
    struct node_routes *nr = data;
    ovha_free(nr->job_routes);
    nr->job_routes = NULL;
    ovha_free(nr->job_fdb);
    nr->job_fdb = NULL;
    nr->stats.passes++;
    uint64_t before = routes_changes(&nr->stats);
    if (nr->job_rv != 0) {
        nr->stats.failures++;
        ovha_strlcpy(nr->stats.last_error, nr->job_err,
                     sizeof(nr->stats.last_error));
        LOG_WARN(ROUTES_MOD, "reconcile: %s", nr->job_err);
    } else {
        nr->stats.last_error[0] = '\0';
    }
    routes_copy_stats(nr);
    if (nr->job_rv == 0 && nr->clean_known && nr->job_hash == nr->clean_hash) {
        nr->stats.repairs += routes_changes(&nr->stats) - before;
    }
    nr->clean_known = nr->job_rv == 0;
    nr->clean_hash = nr->job_hash;
}

static int routes_build_job(void *data)
{
    struct node_routes *nr = data;
    struct routes_build b;
    if (routes_build(nr, &b) != 0) {
        LOG_WARN(ROUTES_MOD, "reading the replicated state failed");
        return -1;
    }
    nr->job_routes = b.out;
    nr->job_n = b.n;
    nr->job_fdb = b.fdb;
    nr->job_nfdb = b.nfdb;
    nr->job_rv = OVHA_ECLOSED; /* until work runs */
    snprintf(nr->job_err, sizeof(nr->job_err), "the pass did not run");
    nr->stats.desired = b.n;
    nr->stats.fdb.desired = b.nfdb;
    nr->job_hash =
        routes_hash(b.out, b.n * sizeof(*b.out), 0xcbf29ce484222325ULL);
    nr->job_hash = routes_hash(b.fdb, b.nfdb * sizeof(*b.fdb), nr->job_hash);
    return 0;
}

static void routes_free(struct node_routes *nr)
{
    enf_route_free(nr->er);
    enf_fdb_free(nr->fdb);
    ovha_free(nr);
}

static const struct node_job_ops routes_job_ops = {
    .build = routes_build_job,
    .work = routes_work,
    .after = routes_after,
};

/* ---- public
 * -------------------------------------------------------------------- */

int node_routes_new(uv_loop_t *loop,
                    const struct node_cfg *cfg,
                    struct fsm *fsm,
                    struct node_routes **ret)
{
    struct node_routes *nr = ovha_calloc(1, sizeof(*nr));
    char err[256] = "out of memory";
    if (nr == NULL) {
        return -ENOMEM;
    }
    nr->cfg = cfg;
    nr->fsm = fsm;
    int rv = node_job_new(loop, &routes_job_ops, nr, &nr->job);
    if (rv == 0 && cfg->cluster.routes) {
        struct enf_route_config ec = {
            .backend = "linux",
            .protocol = (uint8_t)cfg->cluster.route_protocol,
            .table = cfg->cluster.route_table,
        };
        rv = enf_route_new(&ec, &nr->er, err, sizeof(err));
    }
    if (rv == 0 && cfg->bridge.enabled) {
        struct enf_fdb_config fc = {
            .backend = "linux",
            .bridge = cfg->bridge.name,
            .tap = cfg->openvpn.dev,
            .uplink = cfg->bridge.uplink,
        };
        rv = enf_fdb_new(&fc, &nr->fdb, err, sizeof(err));
        nr->stats.bridged = rv == 0;
    }
    if (rv != 0) {
        LOG_ERR(ROUTES_MOD, "route reconciler: %s", err);
        if (nr->job != NULL) {
            node_job_close(nr->job, NULL, NULL);
        }
        routes_free(nr);
        return rv;
    }
    *ret = nr;
    return 0;
}

void node_routes_start(struct node_routes *nr)
{
    node_job_start(nr->job, nr->cfg->cluster.route_interval_ms);
}

void node_routes_kick(struct node_routes *nr)
{
    if (nr != NULL) {
        node_job_kick(nr->job);
    }
}

void node_routes_get_stats(const struct node_routes *nr,
                           struct node_routes_stats *ret)
{
    *ret = nr->stats;
}

static void routes_job_closed_cb(void *data)
{
    struct node_routes *nr = data;
    void (*cb)(void *) = nr->close_cb;
    void *cb_data = nr->close_data;
    routes_free(nr);
    if (cb != NULL) {
        cb(cb_data);
    }
}

void node_routes_close(struct node_routes *nr,
                       void (*cb)(void *data),
                       void *data)
{
    nr->close_cb = cb;
    nr->close_data = data;
    node_job_close(nr->job, routes_job_closed_cb, nr);
}
