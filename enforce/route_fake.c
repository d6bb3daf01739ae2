/* enforce/route_fake: an in-memory routing table with the kernel's
 * semantics that matter to the reconciler (an add replaces the route with
 * the same table/dst/prefix/metric, whoever owns it; a delete names the
 * protocol and metric), for unit tests of the convergence logic and of the
 * node. It counts what it was asked and can be told to fail.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "base/base.h"
#include "enforce/route_int.h"

struct enf_rfake_route {
    struct enf_route_rt rt;
    uint32_t table;
};

struct enf_rfake {
    uint8_t protocol;
    uint32_t table;
    struct enf_rfake_route *v;
    size_t n;
    size_t cap;
    char fail_dev[16];
    int fail_dev_err;
    unsigned fail_requests;
    int fail_requests_err;
    int fail_dump_err;
    uint64_t adds;
    uint64_t dels;
};

static int enf_rfake_open(uint8_t protocol,
                          uint32_t table,
                          void **ret_state,
                          char *errbuf,
                          size_t errlen)
{
    struct enf_rfake *f = ovha_calloc(1, sizeof(*f));
    if (f == NULL) {
        if (errbuf != NULL && errlen > 0) {
            ovha_strlcpy(errbuf, "route: out of memory", errlen);
        }
        return -ENOMEM;
    }
    f->protocol = protocol;
    f->table = table;
    *ret_state = f;
    return 0;
}

static void enf_rfake_close(void *state)
{
    struct enf_rfake *f = state;
    if (f == NULL) {
        return;
    }
    ovha_free(f->v);
    ovha_free(f);
}

/* Index of the route in `table` with rt's key and metric, or -1. */
static long enf_rfake_find(const struct enf_rfake *f,
                           const struct enf_route_rt *rt,
                           uint32_t table)
{
    for (size_t i = 0; i < f->n; i++) {
        const struct enf_rfake_route *x = &f->v[i];
        if (x->table == table && x->rt.metric == rt->metric &&
            enf_route_same_key(&x->rt, rt)) {
            return (long)i;
        }
    }
    return -1;
}

/* Kernel semantics of NLM_F_CREATE|NLM_F_REPLACE. */
static int enf_rfake_put_rt(struct enf_rfake *f,
                            const struct enf_route_rt *rt,
                            uint32_t table)
{
    long i = enf_rfake_find(f, rt, table);
    if (i >= 0) {
        f->v[i].rt = *rt;
        return 0;
    }
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        struct enf_rfake_route *v = ovha_realloc(f->v, cap * sizeof(*v));
        if (v == NULL) {
            return -ENOMEM;
        }
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n].rt = *rt;
    f->v[f->n].table = table;
    f->n++;
    return 0;
}

static int enf_rfake_drop_rt(struct enf_rfake *f,
                             const struct enf_route_rt *rt,
                             uint32_t table)
{
    long i = enf_rfake_find(f, rt, table);
    if (i < 0 || f->v[i].rt.protocol != rt->protocol) {
        return -ESRCH;
    }
    f->v[i] = f->v[f->n - 1];
    f->n--;
    return 0;
}

/* Consumes one injected request failure, if any. */
static int enf_rfake_injected(struct enf_rfake *f)
{
    if (f->fail_requests == 0) {
        return 0;
    }
    f->fail_requests--;
    return f->fail_requests_err;
}

static int enf_rfake_dump(void *state,
                          struct enf_route_vec *ours,
                          struct enf_route_vec *foreign)
{
    struct enf_rfake *f = state;
    if (f->fail_dump_err != 0) {
        return f->fail_dump_err;
    }
    for (size_t i = 0; i < f->n; i++) {
        const struct enf_rfake_route *x = &f->v[i];
        if (x->table != f->table) {
            continue;
        }
        int err = enf_route_vec_push(
            x->rt.protocol == f->protocol ? ours : foreign, &x->rt);
        if (err < 0) {
            return err;
        }
    }
    return 0;
}

static int enf_rfake_add(void *state, const struct enf_route_rt *rt)
{
    struct enf_rfake *f = state;
    f->adds++;
    int err = enf_rfake_injected(f);
    if (err < 0) {
        return err;
    }
    if (!rt->has_via && f->fail_dev_err != 0 &&
        strcmp(rt->dev, f->fail_dev) == 0) {
        return f->fail_dev_err;
    }
    struct enf_route_rt x = *rt;
    x.protocol = f->protocol;
    return enf_rfake_put_rt(f, &x, f->table);
}

static int enf_rfake_del(void *state, const struct enf_route_rt *rt)
{
    struct enf_rfake *f = state;
    f->dels++;
    int err = enf_rfake_injected(f);
    if (err < 0) {
        return err;
    }
    struct enf_route_rt x = *rt;
    x.protocol = f->protocol;
    return enf_rfake_drop_rt(f, &x, f->table);
}

const struct enf_route_ops enf_route_fake_ops = {
    .name = "fake",
    .open = enf_rfake_open,
    .close = enf_rfake_close,
    .dump = enf_rfake_dump,
    .add = enf_rfake_add,
    .del = enf_rfake_del,
};

/* ---- test hooks ---------------------------------------------------------- */

static int enf_rfake_entry(const struct enf_route_entry *e,
                           uint8_t protocol,
                           struct enf_route_rt *ret)
{
    char why[160];
    int err = enf_route_parse_entry(e, ret, why, sizeof(why));
    if (err < 0) {
        return err;
    }
    ret->protocol = protocol;
    return 0;
}

int enf_route_fake_put(struct enf_route *r,
                       const struct enf_route_entry *e,
                       uint8_t protocol,
                       uint32_t table)
{
    struct enf_rfake *f = enf_route_backend(r, &enf_route_fake_ops);
    struct enf_route_rt rt;
    if (f == NULL || enf_rfake_entry(e, protocol, &rt) < 0) {
        return -EINVAL;
    }
    return enf_rfake_put_rt(f, &rt, table);
}

int enf_route_fake_drop(struct enf_route *r,
                        const struct enf_route_entry *e,
                        uint8_t protocol,
                        uint32_t table)
{
    struct enf_rfake *f = enf_route_backend(r, &enf_route_fake_ops);
    struct enf_route_rt rt;
    if (f == NULL || enf_rfake_entry(e, protocol, &rt) < 0) {
        return -EINVAL;
    }
    return enf_rfake_drop_rt(f, &rt, table);
}

int enf_route_fake_fail_dev(struct enf_route *r, const char *dev, int err)
{
    struct enf_rfake *f = enf_route_backend(r, &enf_route_fake_ops);
    if (f == NULL) {
        return -EINVAL;
    }
    f->fail_dev_err = dev != NULL ? err : 0;
    ovha_strlcpy(f->fail_dev, dev != NULL ? dev : "", sizeof(f->fail_dev));
    return 0;
}

int enf_route_fake_fail_requests(struct enf_route *r, unsigned count, int err)
{
    struct enf_rfake *f = enf_route_backend(r, &enf_route_fake_ops);
    if (f == NULL) {
        return -EINVAL;
    }
    f->fail_requests = count;
    f->fail_requests_err = err;
    return 0;
}

int enf_route_fake_fail_dump(struct enf_route *r, int err)
{
    struct enf_rfake *f = enf_route_backend(r, &enf_route_fake_ops);
    if (f == NULL) {
        return -EINVAL;
    }
    f->fail_dump_err = err;
    return 0;
}

int enf_route_fake_counts(struct enf_route *r,
                          uint64_t *ret_adds,
                          uint64_t *ret_dels,
                          size_t *ret_size)
{
    struct enf_rfake *f = enf_route_backend(r, &enf_route_fake_ops);
    if (f == NULL) {
        return -EINVAL;
    }
    *ret_adds = f->adds;
    *ret_dels = f->dels;
    *ret_size = f->n;
    return 0;
}
