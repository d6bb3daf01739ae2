/* enforce/shape_fake: an in-memory device and IFB device with the
 * kernel's tc semantics that matter to the reconciler (a new root qdisc
 * starts empty; a class used by a filter cannot be deleted; a client
 * filter needs its hash table and an existing class; u32 keeps a filter's
 * match on replace; deleting what is absent is -ENOENT), for unit tests
 * of the convergence logic and of the node. It counts the requests it was
 * asked and can be told to fail.
 */
#include <errno.h>
#include <string.h>

#include "base/base.h"
#include "enforce/shape_int.h"

struct enf_sfake {
    bool dev_absent;
    struct enf_shape_kstate k;
    unsigned fail_requests;
    int fail_requests_err;
    uint32_t fail_ip;
    int fail_ip_err;
    uint64_t counts[ENF_SHAPE_NOPS];
};

static int enf_sfake_open(const char *dev,
                          const char *ifb,
                          void **ret_state,
                          char *errbuf,
                          size_t errlen)
{
    (void)dev;
    (void)ifb;
    struct enf_sfake *f = ovha_calloc(1, sizeof(*f));
    if (f == NULL) {
        if (errbuf != NULL && errlen > 0) {
            ovha_strlcpy(errbuf, "shape: out of memory", errlen);
        }
        return -ENOMEM;
    }
    *ret_state = f;
    return 0;
}

static void enf_sfake_close(void *state)
{
    struct enf_sfake *f = state;
    if (f == NULL) {
        return;
    }
    enf_shape_kstate_free(&f->k);
    ovha_free(f);
}

static int enf_sfake_dump(void *state, struct enf_shape_kstate *ret)
{
    struct enf_sfake *f = state;
    if (f->dev_absent) {
        return -ENODEV;
    }
    ret->ifb = f->k.ifb;
    ret->hook = f->k.hook;
    for (int d = 0; d < 2; d++) {
        ret->root_ours[d] = f->k.root_ours[d];
        for (size_t i = 0; i < f->k.classes[d].n; i++) {
            int err =
                enf_shape_kcvec_push(&ret->classes[d], &f->k.classes[d].v[i]);
            if (err < 0) {
                return err;
            }
        }
    }
    for (int d = 0; d < 3; d++) {
        for (size_t i = 0; i < f->k.filters[d].n; i++) {
            int err =
                enf_shape_kfvec_push(&ret->filters[d], &f->k.filters[d].v[i]);
            if (err < 0) {
                return err;
            }
        }
    }
    return 0;
}

static long enf_sfake_find_class(const struct enf_sfake *f,
                                 int dir,
                                 uint16_t minor)
{
    const struct enf_shape_kcvec *cv = &f->k.classes[dir];
    for (size_t i = 0; i < cv->n; i++) {
        if (cv->v[i].minor == minor) {
            return (long)i;
        }
    }
    return -1;
}

static long enf_sfake_find_filter(const struct enf_shape_kfvec *fv,
                                  uint32_t handle)
{
    for (size_t i = 0; i < fv->n; i++) {
        if (enf_shape_is_ours(&fv->v[i]) && fv->v[i].handle == handle &&
            fv->v[i].kind != ENF_SHAPE_F_PROTO) {
            return (long)i;
        }
    }
    return -1;
}

static void enf_sfake_remove_filter(struct enf_shape_kfvec *fv, size_t i)
{
    fv->v[i] = fv->v[fv->n - 1];
    fv->n--;
}

static int enf_sfake_class_set(struct enf_sfake *f,
                               const struct enf_shape_req *req)
{
    if (req->dir > ENF_SHAPE_INGRESS || !f->k.root_ours[req->dir]) {
        return -EINVAL;
    }
    struct enf_shape_kclass c = { .minor = req->minor,
                                  .rate = req->rate,
                                  .ceil = req->rate,
                                  .burst = req->burst,
                                  .cburst = req->burst };
    long i = enf_sfake_find_class(f, req->dir, req->minor);
    if (i >= 0) {
        f->k.classes[req->dir].v[i] = c;
        return 0;
    }
    return enf_shape_kcvec_push(&f->k.classes[req->dir], &c);
}

static void enf_sfake_remove_class(struct enf_shape_kcvec *cv, size_t i)
{
    cv->v[i] = cv->v[cv->n - 1];
    cv->n--;
}

static int enf_sfake_class_del(struct enf_sfake *f,
                               const struct enf_shape_req *req)
{
    if (req->dir > ENF_SHAPE_INGRESS) {
        return -EINVAL;
    }
    long i = enf_sfake_find_class(f, req->dir, req->minor);
    if (i < 0) {
        return -ENOENT;
    }
    const struct enf_shape_kfvec *fv = &f->k.filters[req->dir];
    for (size_t j = 0; j < fv->n; j++) {
        if (fv->v[j].classid == (ENF_SHAPE_MAJOR | req->minor)) {
            return -EBUSY;
        }
    }
    enf_sfake_remove_class(&f->k.classes[req->dir], (size_t)i);
    return 0;
}

static int enf_sfake_proto_del(struct enf_sfake *f,
                               const struct enf_shape_req *req)
{
    struct enf_shape_kfvec *fv = &f->k.filters[req->dir];
    size_t m = 0;
    for (size_t i = 0; i < fv->n; i++) {
        if (fv->v[i].prio != req->prio || fv->v[i].proto != req->proto) {
            fv->v[m++] = fv->v[i];
        }
    }
    int err = m == fv->n ? -ENOENT : 0;
    fv->n = m;
    return err;
}

static bool enf_sfake_has_table(const struct enf_shape_kfvec *fv)
{
    return enf_sfake_find_filter(fv, ENF_SHAPE_HT) >= 0;
}

static int enf_sfake_put(struct enf_shape_kfvec *fv,
                         const struct enf_shape_kfilter *x)
{
    long i = enf_sfake_find_filter(fv, x->handle);
    if (i >= 0) {
        fv->v[i] = *x;
        return 0;
    }
    return enf_shape_kfvec_push(fv, x);
}

static bool enf_sfake_has_qdisc(const struct enf_sfake *f, int dir)
{
    return dir == ENF_SHAPE_HOOK ? f->k.hook : f->k.root_ours[dir];
}

static int enf_sfake_skeleton(struct enf_sfake *f,
                              const struct enf_shape_req *req)
{
    struct enf_shape_kfvec *fv = &f->k.filters[req->dir];
    if (!enf_sfake_has_qdisc(f, req->dir)) {
        return -EINVAL;
    }
    struct enf_shape_kfilter x = { .prio = ENF_SHAPE_PRIO,
                                   .proto = ENF_SHAPE_PROTO_IP,
                                   .handle = ENF_SHAPE_LINK_HANDLE };
    if (req->op == ENF_SHAPE_TABLE_SET) {
        x.kind = ENF_SHAPE_F_TABLE;
        x.handle = ENF_SHAPE_HT;
        x.divisor = ENF_SHAPE_BUCKETS;
    } else if (req->op == ENF_SHAPE_REDIRECT_SET) {
        if (!f->k.ifb) {
            return -ENODEV;
        }
        x.kind = ENF_SHAPE_F_REDIRECT;
    } else {
        if (!enf_sfake_has_table(fv)) {
            return -EINVAL;
        }
        x.kind = ENF_SHAPE_F_LINK;
        x.link = ENF_SHAPE_HT;
    }
    return enf_sfake_put(fv, &x);
}

static int enf_sfake_filter_set(struct enf_sfake *f,
                                const struct enf_shape_req *req)
{
    if (req->dir > ENF_SHAPE_INGRESS) {
        return -EINVAL;
    }
    struct enf_shape_kfvec *fv = &f->k.filters[req->dir];
    if (!enf_sfake_has_table(fv) ||
        (req->handle & 0xfff00000u) != ENF_SHAPE_HT) {
        return -EINVAL;
    }
    long i = enf_sfake_find_filter(fv, req->handle);
    if (i >= 0 && fv->v[i].ip != req->ip) {
        return -EINVAL; /* u32 keeps a filter's match on replace */
    }
    if (enf_sfake_find_class(f, req->dir, req->minor) < 0) {
        return -EINVAL; /* the fake insists on existing classes */
    }
    struct enf_shape_kfilter x = { .prio = ENF_SHAPE_PRIO,
                                   .proto = ENF_SHAPE_PROTO_IP,
                                   .kind = ENF_SHAPE_F_CLIENT,
                                   .handle = req->handle,
                                   .ip = req->ip,
                                   .classid = ENF_SHAPE_MAJOR | req->minor };
    return enf_sfake_put(fv, &x);
}

static int enf_sfake_filter_del(struct enf_sfake *f,
                                const struct enf_shape_req *req)
{
    struct enf_shape_kfvec *fv = &f->k.filters[req->dir];
    long i = enf_sfake_find_filter(fv, req->handle);
    if (i < 0) {
        return -ENOENT;
    }
    enf_sfake_remove_filter(fv, (size_t)i);
    return 0;
}

/* An injected failure for this request, or 0. */
static int enf_sfake_injected(struct enf_sfake *f,
                              const struct enf_shape_req *req)
{
    if (f->fail_requests > 0) {
        f->fail_requests--;
        return f->fail_requests_err;
    }
    bool names_ip =
        req->op == ENF_SHAPE_FILTER_SET || req->op == ENF_SHAPE_FILTER_DEL;
    if (f->fail_ip_err != 0 && names_ip && req->ip == f->fail_ip) {
        return f->fail_ip_err;
    }
    return 0;
}

static int enf_sfake_request(void *state, const struct enf_shape_req *req)
{
    struct enf_sfake *f = state;
    if (req->op >= ENF_SHAPE_NOPS || req->dir > ENF_SHAPE_HOOK) {
        return -EINVAL;
    }
    f->counts[req->op]++;
    int err = enf_sfake_injected(f, req);
    if (err < 0) {
        return err;
    }
    if (f->dev_absent) {
        return -ENODEV;
    }
    switch (req->op) {
    case ENF_SHAPE_IFB_SET:
        f->k.ifb = true;
        return 0;
    case ENF_SHAPE_ROOT_SET:
        if (req->dir > ENF_SHAPE_INGRESS ||
            (req->dir == ENF_SHAPE_INGRESS && !f->k.ifb)) {
            return -ENODEV;
        }
        f->k.root_ours[req->dir] = true;
        f->k.classes[req->dir].n = 0;
        f->k.filters[req->dir].n = 0;
        return 0;
    case ENF_SHAPE_INGRESS_SET:
        f->k.hook = true;
        f->k.filters[ENF_SHAPE_HOOK].n = 0;
        return 0;
    case ENF_SHAPE_CLASS_SET:
        return enf_sfake_class_set(f, req);
    case ENF_SHAPE_CLASS_DEL:
        return enf_sfake_class_del(f, req);
    case ENF_SHAPE_PROTO_DEL:
        return enf_sfake_proto_del(f, req);
    case ENF_SHAPE_TABLE_SET:
    case ENF_SHAPE_LINK_SET:
    case ENF_SHAPE_REDIRECT_SET:
        return enf_sfake_skeleton(f, req);
    case ENF_SHAPE_FILTER_SET:
        return enf_sfake_filter_set(f, req);
    default:
        return enf_sfake_filter_del(f, req);
    }
}

const struct enf_shape_ops enf_shape_fake_ops = {
    .name = "fake",
    .open = enf_sfake_open,
    .close = enf_sfake_close,
    .dump = enf_sfake_dump,
    .request = enf_sfake_request,
};

/* ---- test hooks ---------------------------------------------------------- */

static struct enf_sfake *enf_sfake_of(struct enf_shape *s)
{
    return enf_shape_backend(s, &enf_shape_fake_ops);
}

int enf_shape_fake_set_dev(struct enf_shape *s, bool present)
{
    struct enf_sfake *f = enf_sfake_of(s);
    if (f == NULL) {
        return -EINVAL;
    }
    f->dev_absent = !present;
    if (!present) {
        f->k.root_ours[ENF_SHAPE_EGRESS] = false;
        f->k.hook = false;
        f->k.classes[ENF_SHAPE_EGRESS].n = 0;
        f->k.filters[ENF_SHAPE_EGRESS].n = 0;
        f->k.filters[ENF_SHAPE_HOOK].n = 0;
    }
    return 0;
}

int enf_shape_fake_fail_requests(struct enf_shape *s, unsigned count, int err)
{
    struct enf_sfake *f = enf_sfake_of(s);
    if (f == NULL) {
        return -EINVAL;
    }
    f->fail_requests = count;
    f->fail_requests_err = err;
    return 0;
}

int enf_shape_fake_fail_ip(struct enf_shape *s, uint32_t ip, int err)
{
    struct enf_sfake *f = enf_sfake_of(s);
    if (f == NULL) {
        return -EINVAL;
    }
    f->fail_ip = ip;
    f->fail_ip_err = err;
    return 0;
}

int enf_shape_fake_drop_class(struct enf_shape *s, int dir, uint16_t minor)
{
    struct enf_sfake *f = enf_sfake_of(s);
    if (f == NULL || dir < 0 || dir > 1) {
        return -EINVAL;
    }
    long i = enf_sfake_find_class(f, dir, minor);
    if (i < 0) {
        return -ENOENT;
    }
    /* By hand the kernel would refuse while a filter uses it; tests want
     * the state a forced cleanup leaves, so the filter stays dangling. */
    enf_sfake_remove_class(&f->k.classes[dir], (size_t)i);
    return 0;
}

int enf_shape_fake_drop_filter(struct enf_shape *s, int dir, uint32_t ip)
{
    struct enf_sfake *f = enf_sfake_of(s);
    if (f == NULL || dir < 0 || dir > 2) {
        return -EINVAL;
    }
    struct enf_shape_kfvec *fv = &f->k.filters[dir];
    for (size_t i = 0; i < fv->n; i++) {
        bool hit =
            dir == ENF_SHAPE_HOOK
                ? fv->v[i].kind == ENF_SHAPE_F_REDIRECT
                : fv->v[i].kind == ENF_SHAPE_F_CLIENT && fv->v[i].ip == ip;
        if (hit) {
            enf_sfake_remove_filter(fv, i);
            return 0;
        }
    }
    return -ENOENT;
}

int enf_shape_fake_foreign_root(struct enf_shape *s, int dir)
{
    struct enf_sfake *f = enf_sfake_of(s);
    if (f == NULL || dir < 0 || dir > 1) {
        return -EINVAL;
    }
    f->k.root_ours[dir] = false;
    f->k.classes[dir].n = 0;
    f->k.filters[dir].n = 0;
    return 0;
}

int enf_shape_fake_drop_ifb(struct enf_shape *s)
{
    struct enf_sfake *f = enf_sfake_of(s);
    if (f == NULL) {
        return -EINVAL;
    }
    f->k.ifb = false;
    f->k.root_ours[ENF_SHAPE_INGRESS] = false;
    f->k.classes[ENF_SHAPE_INGRESS].n = 0;
    f->k.filters[ENF_SHAPE_INGRESS].n = 0;
    /* The kernel drops a mirred action's target with the device; the
     * filter stays and redirects nowhere. The fake drops the filter. */
    f->k.filters[ENF_SHAPE_HOOK].n = 0;
    return 0;
}

int enf_shape_fake_put_stray(struct enf_shape *s, int dir, uint16_t prio)
{
    struct enf_sfake *f = enf_sfake_of(s);
    if (f == NULL || dir < 0 || dir > 2 || prio == ENF_SHAPE_PRIO) {
        return -EINVAL;
    }
    struct enf_shape_kfilter x = { .prio = prio,
                                   .proto = ENF_SHAPE_PROTO_IP,
                                   .kind = ENF_SHAPE_F_OTHER,
                                   .handle = 0x80000800u };
    return enf_shape_kfvec_push(&f->k.filters[dir], &x);
}

int enf_shape_fake_counts(struct enf_shape *s,
                          uint64_t ret_counts[ENF_SHAPE_NOPS])
{
    struct enf_sfake *f = enf_sfake_of(s);
    if (f == NULL) {
        return -EINVAL;
    }
    memcpy(ret_counts, f->counts, sizeof(f->counts));
    return 0;
}
