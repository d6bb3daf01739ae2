/* node/shaping: local clients shaped on the tun device. See shaping.h. */
#include "node/shaping.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "enforce/shape.h"
#include "node/clients.h"
#include "node/job.h"

#define SHAPING_MOD         "shaping"
#define SHAPING_INTERVAL_MS 1000

struct node_shaping {
    const struct node_cfg *cfg;
    struct node_clients *clients;
    struct enf_shape *shape; /* used by the pass only */
    bool active;             /* pass: our qdiscs may be on the device */
    bool checked;            /* pass: a previous run's classes looked for */
    struct node_job *job;
    /* One pass's input and output. */
    struct enf_shape_client *job_clients;
    size_t job_n;
    int job_rv;
    char job_err[256];
    /* For stats.repairs: the last clean pass's client set (a hash). */
    uint64_t job_hash, clean_hash;
    bool clean_known;
    struct node_shaping_stats stats;
    void (*close_cb)(void *data);
    void *close_data;
};

/* kbps from a decision (0 = unshaped) into enforce/shape's range; a
 * throttled client gets at most the throttle rate. */
static uint32_t shaping_rate(uint64_t kbps, bool throttled, uint64_t cap)
{
    if (throttled && (kbps == 0 || kbps > cap)) {
        kbps = cap;
    }
    if (kbps == 0) {
        return 0;
    }
    if (kbps < ENF_SHAPE_MIN_KBIT) {
        return ENF_SHAPE_MIN_KBIT;
    }
    return kbps > ENF_SHAPE_MAX_KBIT ? ENF_SHAPE_MAX_KBIT : (uint32_t)kbps;
}

static bool shaping_ipv4(const char *ip)
{
    struct in_addr a;
    return inet_pton(AF_INET, ip, &a) == 1;
}

/* The local clients with a rate, from the session table. */
static int shaping_build(void *data)
{
    struct node_shaping *s = data;
    const struct node_session *v;
    size_t n = node_clients_sessions(s->clients, &v);
    uint64_t cap = s->cfg->cluster.quota_throttle_kbps;
    s->job_clients = ovha_calloc(n + 1, sizeof(*s->job_clients));
    if (s->job_clients == NULL) {
        return -1;
    }
    s->job_n = 0;
    for (size_t i = 0; i < n; i++) {
        struct enf_shape_client *c = &s->job_clients[s->job_n];
        c->down_kbit = shaping_rate(v[i].down_kbps, v[i].throttled, cap);
        c->up_kbit = shaping_rate(v[i].up_kbps, v[i].throttled, cap);
        if ((c->down_kbit != 0 || c->up_kbit != 0) &&
            shaping_ipv4(v[i].vpn_ip) &&
            ovha_strlcpy(c->ip, v[i].vpn_ip, sizeof(c->ip)) < sizeof(c->ip)) {
            s->job_n++;
        }
    }
    /* FNV-1a over the set; the array is zeroed, so equal sets hash
     * equal. */
    s->job_hash = 0xcbf29ce484222325ULL;
    const unsigned char *bytes = (const unsigned char *)s->job_clients;
    for (size_t i = 0; i < s->job_n * sizeof(*s->job_clients); i++) {
        s->job_hash = (s->job_hash ^ bytes[i]) * 0x100000001b3ULL;
    }
    s->job_rv = OVHA_ECLOSED; /* until the pass runs */
    snprintf(s->job_err, sizeof(s->job_err), "the pass did not run");
    return 0;
}

/* Nothing to shape yet: is anything of a previous run installed? */
static bool shaping_leftovers(struct node_shaping *s)
{
    struct enf_shape_entry *e = NULL;
    size_t n = 0;
    int rv = enf_shape_list(s->shape, &e, &n);
    free(e);
    s->checked = rv != -ENODEV; /* no device yet: look again later */
    return rv == 0 && n > 0;
}

static void shaping_work(void *data)
{
    struct node_shaping *s = data;
    s->job_err[0] = '\0';
    s->job_rv = 0;
    /* enforce/shape installs its qdiscs (and the IFB redirect every packet
     * then takes) on the first apply, even an empty one: a gateway that
     * never shapes anyone keeps its device untouched. */
    if (s->job_n == 0 && !s->active && (s->checked || !shaping_leftovers(s))) {
        return;
    }
    s->active = true;
    s->job_rv = enf_shape_apply(s->shape, s->job_clients, s->job_n, s->job_err,
                                sizeof(s->job_err));
}

static void shaping_after(void *data)
{
    struct node_shaping *s = data;
    struct enf_shape_stats es;
    ovha_free(s->job_clients);
    s->job_clients = NULL;
    s->stats.passes++;
    if (s->job_rv == -ENODEV) {
        /* openvpn has not created its device yet, or is restarting. */
        LOG_DEBUG(SHAPING_MOD, "no device yet: %s", s->job_err);
    } else if (s->job_rv != 0) {
        s->stats.failures++;
        ovha_strlcpy(s->stats.last_error, s->job_err,
                     sizeof(s->stats.last_error));
        LOG_WARN(SHAPING_MOD, "reconcile: %s", s->job_err);
    } else {
        s->stats.last_error[0] = '\0';
    }
    enf_shape_get_stats(s->shape, &es);
    uint64_t before = s->stats.added + s->stats.changed + s->stats.removed;
    s->stats.clients = es.clients;
    s->stats.added = es.added;
    s->stats.changed = es.changed;
    s->stats.removed = es.removed;
    uint64_t after = s->stats.added + s->stats.changed + s->stats.removed;
    if (s->job_rv == 0 && s->clean_known && s->job_hash == s->clean_hash &&
        after > before) {
        s->stats.repairs += after - before;
    }
    s->clean_known = s->job_rv == 0;
    s->clean_hash = s->job_hash;
}

static const struct node_job_ops shaping_job_ops = {
    .build = shaping_build,
    .work = shaping_work,
    .after = shaping_after,
};

static void shaping_free(struct node_shaping *s)
{
    enf_shape_free(s->shape);
    ovha_free(s);
}

int node_shaping_new(uv_loop_t *loop,
                     const struct node_cfg *cfg,
                     struct node_clients *clients,
                     struct node_shaping **ret)
{
    struct node_shaping *s = ovha_calloc(1, sizeof(*s));
    char err[256] = "out of memory";
    if (s == NULL) {
        return -ENOMEM;
    }
    s->cfg = cfg;
    s->clients = clients;
    struct enf_shape_config ec = { .backend = "linux",
                                   .dev = cfg->openvpn.dev };
    int rv = enf_shape_new(&ec, &s->shape, err, sizeof(err));
    if (rv == 0) {
        rv = node_job_new(loop, &shaping_job_ops, s, &s->job);
    }
    if (rv != 0) {
        LOG_ERR(SHAPING_MOD, "shaping: %s", err);
        shaping_free(s);
        return rv;
    }
    *ret = s;
    return 0;
}

void node_shaping_start(struct node_shaping *s)
{
    node_job_start(s->job, SHAPING_INTERVAL_MS);
}

void node_shaping_get_stats(const struct node_shaping *s,
                            struct node_shaping_stats *ret)
{
    *ret = s->stats;
}

static void shaping_job_closed_cb(void *data)
{
    struct node_shaping *s = data;
    void (*cb)(void *) = s->close_cb;
    void *cb_data = s->close_data;
    shaping_free(s);
    if (cb != NULL) {
        cb(cb_data);
    }
}

void node_shaping_close(struct node_shaping *s,
                        void (*cb)(void *data),
                        void *data)
{
    s->close_cb = cb;
    s->close_data = data;
    node_job_close(s->job, shaping_job_closed_cb, s);
}
