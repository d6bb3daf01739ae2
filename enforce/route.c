/* enforce/route: validation and convergence, shared by both backends.
 *
 * One apply: validate and sort the desired set (nothing is touched if any
 * entry is invalid or two share a dst/prefix), dump our table once, then
 * walk the desired routes: an identical route of ours is kept, a route of
 * ours with the same dst/prefix/metric but another next hop is replaced in
 * place, a route of ours with another metric is superseded (the new one is
 * added first, the old one deleted afterwards, so traffic never loses its
 * route), and a missing one is added. Before any add or replace, a route of
 * another protocol with the same dst/prefix/metric in our table wins: the
 * kernel would let NLM_F_REPLACE overwrite it, so we refuse and report.
 * Finally the routes of ours that nothing desired matched are deleted.
 * Failures do not stop the walk; the first one is returned and named.
 */
#include "enforce/route.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/base.h"
#include "enforce/route_int.h"

struct enf_route {
    const struct enf_route_ops *ops;
    void *state;
    struct enf_route_stats stats;
};

/* What the sweep does with a route of ours found in the dump. */
enum enf_route_mark {
    ENF_ROUTE_UNMATCHED = 0, /* not desired: delete, count as removed */
    ENF_ROUTE_KEPT,          /* desired as is, or replaced in place */
    ENF_ROUTE_SUPERSEDED,    /* a desired route with another metric was
                                added: delete, counted as replaced */
};

/* State of one enf_route_apply call. */
struct enf_route_run {
    struct enf_route *r;
    struct enf_route_vec ours;
    struct enf_route_vec foreign;
    uint8_t *mark; /* enum enf_route_mark per ours entry */
    size_t installed;
    int first_err;
    size_t nfail;
    char *errbuf;
    size_t errlen;
};

/* ---- routes in binary form ---------------------------------------------- */

int enf_route_vec_push(struct enf_route_vec *vec, const struct enf_route_rt *rt)
{
    if (vec->n == vec->cap) {
        size_t cap = vec->cap ? vec->cap * 2 : 64;
        struct enf_route_rt *v = ovha_realloc(vec->v, cap * sizeof(*v));
        if (v == NULL) {
            return -ENOMEM;
        }
        vec->v = v;
        vec->cap = cap;
    }
    vec->v[vec->n++] = *rt;
    return 0;
}

void enf_route_vec_free(struct enf_route_vec *vec)
{
    ovha_free(vec->v);
    memset(vec, 0, sizeof(*vec));
}

static size_t enf_route_addr_len(uint8_t family)
{
    return family == AF_INET ? 4 : 16;
}

bool enf_route_same_key(const struct enf_route_rt *a,
                        const struct enf_route_rt *b)
{
    return a->family == b->family && a->prefix == b->prefix &&
           memcmp(a->dst, b->dst, enf_route_addr_len(a->family)) == 0;
}

/* Orders by family, prefix, dst: routes with one key are adjacent. */
static int enf_route_key_cmp(const void *pa, const void *pb)
{
    const struct enf_route_rt *a = pa;
    const struct enf_route_rt *b = pb;
    if (a->family != b->family) {
        return a->family < b->family ? -1 : 1;
    }
    if (a->prefix != b->prefix) {
        return a->prefix < b->prefix ? -1 : 1;
    }
    return memcmp(a->dst, b->dst, enf_route_addr_len(a->family));
}

/* qsort wants a non-NULL base even for no elements. */
static void enf_route_vec_sort(struct enf_route_vec *vec)
{
    if (vec->n > 1) {
        qsort(vec->v, vec->n, sizeof(*vec->v), enf_route_key_cmp);
    }
}

/* Same next hop and metric (the key is compared by the caller). */
static bool enf_route_same_target(const struct enf_route_rt *a,
                                  const struct enf_route_rt *b)
{
    if (a->odd || b->odd || a->metric != b->metric || a->tos != b->tos ||
        a->has_via != b->has_via) {
        return false;
    }
    if (a->has_via) {
        return memcmp(a->via, b->via, enf_route_addr_len(a->family)) == 0;
    }
    return strcmp(a->dev, b->dev) == 0;
}

void enf_route_format_dst(const struct enf_route_rt *rt, char *buf, size_t len)
{
    char addr[INET6_ADDRSTRLEN];
    if (inet_ntop(rt->family, rt->dst, addr, sizeof(addr)) == NULL) {
        ovha_strlcpy(addr, "?", sizeof(addr));
    }
    snprintf(buf, len, "%s/%u", addr, (unsigned)rt->prefix);
}

void enf_route_to_entry(const struct enf_route_rt *rt,
                        struct enf_route_entry *ret)
{
    memset(ret, 0, sizeof(*ret));
    if (inet_ntop(rt->family, rt->dst, ret->dst, sizeof(ret->dst)) == NULL) {
        ret->dst[0] = '\0';
    }
    ret->prefix = rt->prefix;
    ret->metric = rt->metric;
    if (rt->has_via) {
        if (inet_ntop(rt->family, rt->via, ret->via, sizeof(ret->via)) ==
            NULL) {
            ret->via[0] = '\0';
        }
    } else {
        ovha_strlcpy(ret->dev, rt->dev, sizeof(ret->dev));
    }
}

/* ---- validation ---------------------------------------------------------- */

/* A fixed-size field the caller filled must hold a terminated string. */
static bool enf_route_terminated(const char *s, size_t size)
{
    return memchr(s, '\0', size) != NULL;
}

static int enf_route_parse_dst(const struct enf_route_entry *e,
                               struct enf_route_rt *rt,
                               char *why,
                               size_t whylen)
{
    if (!enf_route_terminated(e->dst, sizeof(e->dst))) {
        snprintf(why, whylen, "dst is not terminated");
        return -EINVAL;
    }
    if (inet_pton(AF_INET, e->dst, rt->dst) == 1) {
        rt->family = AF_INET;
    } else if (inet_pton(AF_INET6, e->dst, rt->dst) == 1) {
        rt->family = AF_INET6;
    } else {
        snprintf(why, whylen, "dst \"%s\" is not an address", e->dst);
        return -EINVAL;
    }
    unsigned bits = (unsigned)enf_route_addr_len(rt->family) * 8;
    if (e->prefix > bits) {
        snprintf(why, whylen, "prefix %u out of range", e->prefix);
        return -EINVAL;
    }
    rt->prefix = (uint8_t)e->prefix;
    for (unsigned i = rt->prefix; i < bits; i++) {
        if (rt->dst[i / 8] & (0x80u >> (i % 8))) {
            snprintf(why, whylen, "%s/%u has host bits set", e->dst, e->prefix);
            return -EINVAL;
        }
    }
    return 0;
}

static int enf_route_parse_nexthop(const struct enf_route_entry *e,
                                   struct enf_route_rt *rt,
                                   char *why,
                                   size_t whylen)
{
    if (!enf_route_terminated(e->via, sizeof(e->via))) {
        snprintf(why, whylen, "via is not terminated");
        return -EINVAL;
    }
    if (!enf_route_terminated(e->dev, sizeof(e->dev))) {
        snprintf(why, whylen, "dev longer than %zu bytes", sizeof(e->dev) - 1);
        return -EINVAL;
    }
    if ((e->via[0] != '\0') == (e->dev[0] != '\0')) {
        snprintf(why, whylen, "exactly one of via and dev must be set");
        return -EINVAL;
    }
    if (e->dev[0] != '\0') {
        ovha_strlcpy(rt->dev, e->dev, sizeof(rt->dev));
        return 0;
    }
    if (inet_pton(rt->family, e->via, rt->via) != 1) {
        snprintf(why, whylen, "via \"%s\" is not an %s address", e->via,
                 rt->family == AF_INET ? "IPv4" : "IPv6");
        return -EINVAL;
    }
    rt->has_via = true;
    return 0;
}

int enf_route_parse_entry(const struct enf_route_entry *e,
                          struct enf_route_rt *ret,
                          char *why,
                          size_t whylen)
{
    struct enf_route_rt rt;
    memset(&rt, 0, sizeof(rt));
    int err = enf_route_parse_dst(e, &rt, why, whylen);
    if (err == 0) {
        err = enf_route_parse_nexthop(e, &rt, why, whylen);
    }
    if (err < 0) {
        return err;
    }
    rt.type = ENF_ROUTE_TYPE_UNICAST;
    rt.metric = e->metric;
    if (rt.family == AF_INET6 && rt.metric == 0) {
        rt.metric = ENF_ROUTE_METRIC6_DEFAULT;
    }
    *ret = rt;
    return 0;
}

static void enf_route_errf(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void enf_route_errf(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (errbuf == NULL || errlen == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

/* Parses every desired entry into *ret (sorted by key) and rejects
 * duplicates. On failure nothing is allocated. */
static int enf_route_parse_desired(const struct enf_route_entry *desired,
                                   size_t n,
                                   struct enf_route_rt **ret,
                                   char *errbuf,
                                   size_t errlen)
{
    struct enf_route_rt *v = ovha_calloc(n ? n : 1, sizeof(*v));
    if (v == NULL) {
        return -ENOMEM;
    }
    char why[160];
    for (size_t i = 0; i < n; i++) {
        if (enf_route_parse_entry(&desired[i], &v[i], why, sizeof(why)) < 0) {
            enf_route_errf(errbuf, errlen, "route %zu: %s", i, why);
            ovha_free(v);
            return -EINVAL;
        }
    }
    if (n > 1) {
        qsort(v, n, sizeof(*v), enf_route_key_cmp);
    }
    for (size_t i = 1; i < n; i++) {
        if (enf_route_same_key(&v[i - 1], &v[i])) {
            char dst[64];
            enf_route_format_dst(&v[i], dst, sizeof(dst));
            enf_route_errf(errbuf, errlen, "route %s: desired twice", dst);
            ovha_free(v);
            return -EINVAL;
        }
    }
    *ret = v;
    return 0;
}

/* ---- lifecycle ----------------------------------------------------------- */

static const struct enf_route_ops *enf_route_find_ops(const char *name)
{
    if (name == NULL) {
        return NULL;
    }
    if (strcmp(name, enf_route_linux_ops.name) == 0) {
        return &enf_route_linux_ops;
    }
    if (strcmp(name, enf_route_fake_ops.name) == 0) {
        return &enf_route_fake_ops;
    }
    return NULL;
}

int enf_route_new(const struct enf_route_config *cfg,
                  struct enf_route **ret,
                  char *errbuf,
                  size_t errlen)
{
    const struct enf_route_ops *ops =
        cfg != NULL ? enf_route_find_ops(cfg->backend) : NULL;
    if (ops == NULL) {
        enf_route_errf(errbuf, errlen, "route: unknown backend \"%s\"",
                       cfg != NULL && cfg->backend ? cfg->backend : "(null)");
        return -EINVAL;
    }
    struct enf_route *r = ovha_calloc(1, sizeof(*r));
    if (r == NULL) {
        enf_route_errf(errbuf, errlen, "route: out of memory");
        return -ENOMEM;
    }
    uint8_t protocol = cfg->protocol ? cfg->protocol : ENF_ROUTE_PROTO_DEFAULT;
    uint32_t table = cfg->table ? cfg->table : ENF_ROUTE_TABLE_DEFAULT;
    int err = ops->open(protocol, table, &r->state, errbuf, errlen);
    if (err < 0) {
        ovha_free(r);
        return err;
    }
    r->ops = ops;
    *ret = r;
    return 0;
}

void enf_route_free(struct enf_route *r)
{
    if (r == NULL) {
        return;
    }
    r->ops->close(r->state);
    ovha_free(r);
}

void *enf_route_backend(struct enf_route *r, const struct enf_route_ops *ops)
{
    return r != NULL && r->ops == ops ? r->state : NULL;
}

void enf_route_get_stats(const struct enf_route *r, struct enf_route_stats *ret)
{
    *ret = r->stats;
}

/* ---- convergence --------------------------------------------------------- */

static void enf_route_run_fail(struct enf_route_run *run,
                               int err,
                               const char *fmt,
                               ...) __attribute__((format(printf, 3, 4)));

/* Records a failure; the first one is returned and described. */
static void enf_route_run_fail(struct enf_route_run *run,
                               int err,
                               const char *fmt,
                               ...)
{
    run->r->stats.errors++;
    if (run->nfail++ > 0) {
        return;
    }
    run->first_err = err;
    if (run->errbuf != NULL && run->errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(run->errbuf, run->errlen, fmt, ap);
        va_end(ap);
    }
}

/* Index of the first route with rt's key in the sorted vec, or vec->n. */
static size_t enf_route_lower_bound(const struct enf_route_vec *vec,
                                    const struct enf_route_rt *rt)
{
    size_t lo = 0, hi = vec->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (enf_route_key_cmp(&vec->v[mid], rt) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static const char *enf_route_proto_name(uint8_t proto, char *buf, size_t len)
{
    static const struct {
        uint8_t id;
        const char *name;
    } names[] = {
        { 1, "redirect" }, { 2, "kernel" }, { 3, "boot" },  { 4, "static" },
        { 9, "ra" },       { 11, "zebra" }, { 16, "dhcp" }, { 186, "bgp" },
        { 187, "isis" },   { 188, "ospf" },
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (names[i].id == proto) {
            return names[i].name;
        }
    }
    snprintf(buf, len, "%u", (unsigned)proto);
    return buf;
}

/* A route of another protocol that an add of d would overwrite: same
 * dst/prefix/metric (and TOS 0, the only TOS we add) in our table. */
static const struct enf_route_rt *enf_route_foreign_holder(
    const struct enf_route_run *run,
    const struct enf_route_rt *d)
{
    for (size_t i = enf_route_lower_bound(&run->foreign, d);
         i < run->foreign.n && enf_route_same_key(&run->foreign.v[i], d); i++) {
        const struct enf_route_rt *f = &run->foreign.v[i];
        if (f->metric == d->metric && f->tos == 0) {
            return f;
        }
    }
    return NULL;
}

/* Asks the backend to add (or replace) d; counts it under *counter.
 * Returns whether d is now installed. */
static bool enf_route_run_add(struct enf_route_run *run,
                              const struct enf_route_rt *d,
                              uint64_t *counter,
                              bool grows)
{
    char dst[64];
    const struct enf_route_rt *f = enf_route_foreign_holder(run, d);
    if (f != NULL) {
        char pbuf[8];
        enf_route_format_dst(d, dst, sizeof(dst));
        enf_route_run_fail(
            run, -EEXIST, "route %s metric %u: held by protocol %s", dst,
            d->metric, enf_route_proto_name(f->protocol, pbuf, sizeof(pbuf)));
        return false;
    }
    int err = run->r->ops->add(run->r->state, d);
    if (err < 0) {
        enf_route_format_dst(d, dst, sizeof(dst));
        enf_route_run_fail(run, err, "route %s: %s", dst, ovha_strerror(err));
        return false;
    }
    (*counter)++;
    if (grows) {
        run->installed++;
    }
    return true;
}

/* Converges one desired route against the routes of ours with its key.
 * A route of ours stays only if it is (or became) the desired one; when
 * the desired route cannot be installed the old one is swept too, so
 * after an apply every route of ours is desired or a failure was named. */
static void enf_route_converge_one(struct enf_route_run *run,
                                   const struct enf_route_rt *d)
{
    size_t first = enf_route_lower_bound(&run->ours, d);
    size_t end = first;
    while (end < run->ours.n && enf_route_same_key(&run->ours.v[end], d)) {
        end++;
    }
    for (size_t i = first; i < end; i++) {
        if (enf_route_same_target(&run->ours.v[i], d)) {
            run->mark[i] = ENF_ROUTE_KEPT;
            return;
        }
    }
    for (size_t i = first; i < end; i++) {
        if (run->ours.v[i].metric == d->metric && run->ours.v[i].tos == 0) {
            /* Same dst/prefix/metric: NLM_F_REPLACE swaps it in place. */
            if (enf_route_run_add(run, d, &run->r->stats.replaced, false)) {
                run->mark[i] = ENF_ROUTE_KEPT;
            }
            return;
        }
    }
    if (first < end) {
        /* Another metric: add the new route first, then the sweep
         * deletes the old one, so the dst never goes without a route. */
        if (enf_route_run_add(run, d, &run->r->stats.replaced, true)) {
            run->mark[first] = ENF_ROUTE_SUPERSEDED;
        }
        return;
    }
    enf_route_run_add(run, d, &run->r->stats.added, true);
}

/* Deletes the routes of ours that no desired route kept. */
static void enf_route_sweep(struct enf_route_run *run)
{
    for (size_t i = 0; i < run->ours.n; i++) {
        if (run->mark[i] == ENF_ROUTE_KEPT) {
            continue;
        }
        const struct enf_route_rt *o = &run->ours.v[i];
        int err = run->r->ops->del(run->r->state, o);
        if (err == -ESRCH) {
            /* Gone since the dump (deleted by hand): converged anyway. */
            run->installed--;
            continue;
        }
        if (err < 0) {
            char dst[64];
            enf_route_format_dst(o, dst, sizeof(dst));
            enf_route_run_fail(run, err, "route %s: delete: %s", dst,
                               ovha_strerror(err));
            continue;
        }
        run->installed--;
        if (run->mark[i] == ENF_ROUTE_UNMATCHED) {
            run->r->stats.removed++;
        }
    }
}

/* Dumps our table and sorts both halves by key. */
static int enf_route_run_dump(struct enf_route_run *run)
{
    int err = run->r->ops->dump(run->r->state, &run->ours, &run->foreign);
    if (err < 0) {
        return err;
    }
    enf_route_vec_sort(&run->ours);
    enf_route_vec_sort(&run->foreign);
    run->mark = ovha_calloc(run->ours.n ? run->ours.n : 1, 1);
    if (run->mark == NULL) {
        return -ENOMEM;
    }
    run->installed = run->ours.n;
    return 0;
}

static void enf_route_run_done(struct enf_route_run *run)
{
    enf_route_vec_free(&run->ours);
    enf_route_vec_free(&run->foreign);
    ovha_free(run->mark);
}

/* Tells how many failures the message does not name. */
static void enf_route_run_summary(struct enf_route_run *run)
{
    if (run->nfail < 2 || run->errbuf == NULL || run->errlen == 0) {
        return;
    }
    size_t used = strlen(run->errbuf);
    if (used + 1 < run->errlen) {
        snprintf(run->errbuf + used, run->errlen - used,
                 " (and %zu more failures)", run->nfail - 1);
    }
}

int enf_route_apply(struct enf_route *r,
                    const struct enf_route_entry *desired,
                    size_t n,
                    char *errbuf,
                    size_t errlen)
{
    r->stats.applies++;
    if (errbuf != NULL && errlen > 0) {
        errbuf[0] = '\0';
    }
    struct enf_route_rt *want = NULL;
    int err = enf_route_parse_desired(desired, n, &want, errbuf, errlen);
    if (err < 0) {
        return err;
    }
    struct enf_route_run run = { .r = r, .errbuf = errbuf, .errlen = errlen };
    err = enf_route_run_dump(&run);
    if (err < 0) {
        r->stats.errors++;
        enf_route_errf(errbuf, errlen, "route: dump: %s", ovha_strerror(err));
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        enf_route_converge_one(&run, &want[i]);
    }
    enf_route_sweep(&run);
    r->stats.installed = run.installed;
    enf_route_run_summary(&run);
    err = run.first_err;
out:
    enf_route_run_done(&run);
    ovha_free(want);
    return err;
}

int enf_route_list(struct enf_route *r,
                   struct enf_route_entry **ret,
                   size_t *ret_n)
{
    struct enf_route_vec ours = { 0 }, foreign = { 0 };
    int err = r->ops->dump(r->state, &ours, &foreign);
    if (err < 0) {
        goto out;
    }
    enf_route_vec_sort(&ours);
    struct enf_route_entry *v = ovha_calloc(ours.n ? ours.n : 1, sizeof(*v));
    if (v == NULL) {
        err = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < ours.n; i++) {
        enf_route_to_entry(&ours.v[i], &v[i]);
    }
    *ret = v;
    *ret_n = ours.n;
out:
    enf_route_vec_free(&ours);
    enf_route_vec_free(&foreign);
    return err;
}
