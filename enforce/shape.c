/* enforce/shape: validation and convergence, shared by both backends.
 *
 * One apply: validate and sort the desired clients (nothing is touched if
 * one is invalid) and dump the device and its IFB device once. Then per
 * direction (down on the device, up on the IFB device) make sure the
 * skeleton is ours (IFB device, htb root, default class, the u32 hash
 * table and its link filter; foreign filter chains are deleted, an odd
 * chain of ours is rebuilt), converge every client (class and filter
 * created or changed in place) and sweep the filters and classes no
 * client kept; finally make sure the device's ingress hook redirects to
 * the IFB device. Failures do not stop the walk; the first one is
 * returned and named.
 *
 * Class ids (per direction): a client keeps the class its filter points
 * to (read back from the kernel, so it survives restarts); without a
 * filter, the class it had in this object's last apply (a hand-deleted
 * filter); otherwise the lowest minor that is neither claimed nor an
 * existing class. Deletions run after additions, so new filter handles
 * avoid every handle in the dump, and a class is deleted only after the
 * filters that use it.
 */
#include "enforce/shape.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "enforce/shape_int.h"

#define ENF_SHAPE_NMINORS 0x10000u
#define ENF_SHAPE_IFB_PFX "ovup-"

struct enf_shape_mapent {
    uint32_t ip;
    uint16_t minor;
};

struct enf_shape {
    const struct enf_shape_ops *ops;
    void *state;
    char dev[16];
    char ifb[16];
    uint64_t default_rate;
    struct enf_shape_stats stats;
    /* Class per ip of the last apply, per direction, sorted by ip. */
    struct enf_shape_mapent *map[2];
    size_t nmap[2];
};

/* One desired client, rates in bytes/s, by direction. */
struct enf_shape_want {
    uint32_t ip;
    uint64_t rate[2];
    uint16_t minor[2]; /* its class once claimed */
};

/* Per-address bookkeeping for the stats. */
struct enf_shape_rec {
    uint32_t ip;
    bool before;  /* had a filter of ours before the apply */
    bool desired; /* shaped in the desired set */
    bool touched; /* a request was made for it */
    bool failed;  /* a request for it failed */
};

/* Per-direction indexes of one apply. */
struct enf_shape_rdir {
    bool ok;      /* the skeleton is in place */
    bool *keep;   /* per filter in k.filters[dir] */
    size_t *cidx; /* client filters in place, sorted by ip */
    size_t ncidx;
    uint8_t *nodes;     /* bitmap of used (bucket, node) */
    int32_t *class_at;  /* minor -> index in k.classes[dir], or -1 */
    uint8_t *claimed;   /* minor -> claimed by a desired client */
    uint32_t next_free; /* allocation cursor over minors */
};

struct enf_shape_run {
    struct enf_shape *s;
    struct enf_shape_want *want;
    size_t nwant;
    struct enf_shape_kstate k;
    struct enf_shape_rdir d[2];
    struct enf_shape_rec *recs;
    size_t nrecs;
    int first_err;
    size_t nfail;
    char *errbuf;
    size_t errlen;
};

static const char *const enf_shape_dir_names[3] = { "down", "up", "hook" };

/* ---- small helpers ------------------------------------------------------- */

static void enf_shape_errf(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void enf_shape_errf(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (errbuf == NULL || errlen == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

static void enf_shape_ip_str(uint32_t ip, char *buf, size_t len)
{
    struct in_addr a = { .s_addr = htonl(ip) };
    if (inet_ntop(AF_INET, &a, buf, (socklen_t)len) == NULL) {
        ovha_strlcpy(buf, "?", len);
    }
}

int enf_shape_kfvec_push(struct enf_shape_kfvec *vec,
                         const struct enf_shape_kfilter *f)
{
    if (vec->n == vec->cap) {
        size_t cap = vec->cap ? vec->cap * 2 : 64;
        struct enf_shape_kfilter *v = ovha_realloc(vec->v, cap * sizeof(*v));
        if (v == NULL) {
            return -ENOMEM;
        }
        vec->v = v;
        vec->cap = cap;
    }
    vec->v[vec->n++] = *f;
    return 0;
}

int enf_shape_kcvec_push(struct enf_shape_kcvec *vec,
                         const struct enf_shape_kclass *c)
{
    if (vec->n == vec->cap) {
        size_t cap = vec->cap ? vec->cap * 2 : 64;
        struct enf_shape_kclass *v = ovha_realloc(vec->v, cap * sizeof(*v));
        if (v == NULL) {
            return -ENOMEM;
        }
        vec->v = v;
        vec->cap = cap;
    }
    vec->v[vec->n++] = *c;
    return 0;
}

void enf_shape_kstate_free(struct enf_shape_kstate *k)
{
    for (int d = 0; d < 2; d++) {
        ovha_free(k->classes[d].v);
    }
    for (int d = 0; d < 3; d++) {
        ovha_free(k->filters[d].v);
    }
    memset(k, 0, sizeof(*k));
}

static uint64_t enf_shape_kbit_rate(uint32_t kbit)
{
    return (uint64_t)kbit * 125u; /* 1000 bit / 8 */
}

/* 10 ms worth of rate, at least ten full-size packets, so a class can
 * send a few back-to-back packets without stalling. */
uint32_t enf_shape_class_burst(uint64_t rate)
{
    uint64_t b = rate / 100;
    if (b < 10 * 1514) {
        b = 10 * 1514;
    }
    return b > UINT32_MAX ? UINT32_MAX : (uint32_t)b;
}

/* Bursts travel to the kernel as a time in 64 ns ticks; reading them back
 * rounds by up to one tick's worth of bytes. */
static bool enf_shape_burst_close(uint32_t a, uint32_t b, uint64_t rate)
{
    uint64_t d = a > b ? a - b : b - a;
    return d <= rate / 10000000u + 2;
}

bool enf_shape_is_ours(const struct enf_shape_kfilter *f)
{
    return f->prio == ENF_SHAPE_PRIO && f->proto == ENF_SHAPE_PROTO_IP;
}

/* A client filter of ours at the place its address hashes to. */
static bool enf_shape_in_place(const struct enf_shape_kfilter *f)
{
    return enf_shape_is_ours(f) && f->kind == ENF_SHAPE_F_CLIENT &&
           (f->handle & 0xfff00000u) == ENF_SHAPE_HT &&
           ((f->handle >> 12) & 0xffu) == (f->ip & 0xffu) &&
           (f->handle & 0xfffu) != 0;
}

/* ---- validation ---------------------------------------------------------- */

static int enf_shape_rate_ok(uint32_t kbit)
{
    return kbit == 0 ||
           (kbit >= ENF_SHAPE_MIN_KBIT && kbit <= ENF_SHAPE_MAX_KBIT);
}

static int enf_shape_parse_client(const struct enf_shape_client *c,
                                  struct enf_shape_want *w,
                                  char *why,
                                  size_t whylen)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (memchr(c->ip, '\0', sizeof(c->ip)) == NULL) {
        snprintf(why, whylen, "ip is not terminated");
        return -EINVAL;
    }
    if (inet_pton(AF_INET, c->ip, &a4) != 1) {
        snprintf(why, whylen,
                 inet_pton(AF_INET6, c->ip, &a6) == 1
                     ? "%s: IPv6 clients are not shaped"
                     : "\"%s\" is not an IPv4 address",
                 c->ip);
        return -EINVAL;
    }
    if (!enf_shape_rate_ok(c->down_kbit) || !enf_shape_rate_ok(c->up_kbit)) {
        snprintf(why, whylen, "%s: rate out of range (0 or %u..%u kbit)", c->ip,
                 ENF_SHAPE_MIN_KBIT, ENF_SHAPE_MAX_KBIT);
        return -EINVAL;
    }
    memset(w, 0, sizeof(*w));
    w->ip = ntohl(a4.s_addr);
    w->rate[ENF_SHAPE_EGRESS] = enf_shape_kbit_rate(c->down_kbit);
    w->rate[ENF_SHAPE_INGRESS] = enf_shape_kbit_rate(c->up_kbit);
    return 0;
}

static int enf_shape_want_cmp(const void *pa, const void *pb)
{
    const struct enf_shape_want *a = pa;
    const struct enf_shape_want *b = pb;
    return a->ip < b->ip ? -1 : a->ip > b->ip;
}

/* Parses the shaped clients into *ret (sorted by ip), rejecting bad ones
 * and duplicates. Clients with both rates 0 are left out. */
static int enf_shape_parse_desired(const struct enf_shape_client *clients,
                                   size_t n,
                                   struct enf_shape_want **ret,
                                   size_t *ret_n,
                                   char *errbuf,
                                   size_t errlen)
{
    struct enf_shape_want *v = ovha_calloc(n ? n : 1, sizeof(*v));
    if (v == NULL) {
        enf_shape_errf(errbuf, errlen, "shape: out of memory");
        return -ENOMEM;
    }
    char why[128];
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (enf_shape_parse_client(&clients[i], &v[m], why, sizeof(why)) < 0) {
            enf_shape_errf(errbuf, errlen, "shape: client %zu: %s", i, why);
            ovha_free(v);
            return -EINVAL;
        }
        if (clients[i].down_kbit != 0 || clients[i].up_kbit != 0) {
            m++;
        }
    }
    if (m > 1) {
        qsort(v, m, sizeof(*v), enf_shape_want_cmp);
    }
    for (size_t i = 1; i < m; i++) {
        if (v[i - 1].ip == v[i].ip) {
            char ip[INET_ADDRSTRLEN];
            enf_shape_ip_str(v[i].ip, ip, sizeof(ip));
            enf_shape_errf(errbuf, errlen, "shape: client %s: desired twice",
                           ip);
            ovha_free(v);
            return -EINVAL;
        }
    }
    *ret = v;
    *ret_n = m;
    return 0;
}

/* ---- lifecycle ----------------------------------------------------------- */

static const struct enf_shape_ops *enf_shape_find_ops(const char *name)
{
    if (name == NULL) {
        return NULL;
    }
    if (strcmp(name, enf_shape_linux_ops.name) == 0) {
        return &enf_shape_linux_ops;
    }
    if (strcmp(name, enf_shape_fake_ops.name) == 0) {
        return &enf_shape_fake_ops;
    }
    return NULL;
}

static bool enf_shape_name_ok(const char *name)
{
    return name != NULL && name[0] != '\0' && strlen(name) <= 15 &&
           strchr(name, '/') == NULL;
}

/* Checks cfg and writes the IFB device's name into ifb[16]. */
static int enf_shape_check_config(const struct enf_shape_config *cfg,
                                  char *ifb,
                                  char *errbuf,
                                  size_t errlen)
{
    if (cfg == NULL || enf_shape_find_ops(cfg->backend) == NULL) {
        enf_shape_errf(errbuf, errlen, "shape: unknown backend \"%s\"",
                       cfg != NULL && cfg->backend ? cfg->backend : "(null)");
        return -EINVAL;
    }
    if (!enf_shape_name_ok(cfg->dev)) {
        enf_shape_errf(errbuf, errlen, "shape: bad device name");
        return -EINVAL;
    }
    if (cfg->ifb_dev != NULL) {
        ovha_strlcpy(ifb, cfg->ifb_dev, 16);
    } else {
        snprintf(ifb, 16, "%.10s", cfg->dev);
        if (strlen(cfg->dev) > 10) {
            enf_shape_errf(errbuf, errlen,
                           "shape: device name too long to derive the IFB "
                           "device's: set ifb_dev");
            return -EINVAL;
        }
        snprintf(ifb, 16, ENF_SHAPE_IFB_PFX "%.10s", cfg->dev);
    }
    if (!enf_shape_name_ok(cfg->ifb_dev != NULL ? cfg->ifb_dev : ifb) ||
        strcmp(ifb, cfg->dev) == 0) {
        enf_shape_errf(errbuf, errlen, "shape: bad IFB device name");
        return -EINVAL;
    }
    if (cfg->default_kbit != 0 && (cfg->default_kbit < ENF_SHAPE_MIN_KBIT ||
                                   cfg->default_kbit > ENF_SHAPE_MAX_KBIT)) {
        enf_shape_errf(errbuf, errlen, "shape: default_kbit out of range");
        return -EINVAL;
    }
    return 0;
}

int enf_shape_new(const struct enf_shape_config *cfg,
                  struct enf_shape **ret,
                  char *errbuf,
                  size_t errlen)
{
    char ifb[16];
    int err = enf_shape_check_config(cfg, ifb, errbuf, errlen);
    if (err < 0) {
        return err;
    }
    struct enf_shape *s = ovha_calloc(1, sizeof(*s));
    if (s == NULL) {
        enf_shape_errf(errbuf, errlen, "shape: out of memory");
        return -ENOMEM;
    }
    s->ops = enf_shape_find_ops(cfg->backend);
    ovha_strlcpy(s->dev, cfg->dev, sizeof(s->dev));
    ovha_strlcpy(s->ifb, ifb, sizeof(s->ifb));
    s->default_rate = enf_shape_kbit_rate(
        cfg->default_kbit ? cfg->default_kbit : ENF_SHAPE_DEFAULT_KBIT);
    err = s->ops->open(s->dev, s->ifb, &s->state, errbuf, errlen);
    if (err < 0) {
        ovha_free(s);
        return err;
    }
    *ret = s;
    return 0;
}

void enf_shape_free(struct enf_shape *s)
{
    if (s == NULL) {
        return;
    }
    s->ops->close(s->state);
    ovha_free(s->map[0]);
    ovha_free(s->map[1]);
    ovha_free(s);
}

void *enf_shape_backend(struct enf_shape *s, const struct enf_shape_ops *ops)
{
    return s != NULL && s->ops == ops ? s->state : NULL;
}

void enf_shape_get_stats(const struct enf_shape *s, struct enf_shape_stats *ret)
{
    *ret = s->stats;
}

/* ---- bookkeeping --------------------------------------------------------- */

static int enf_shape_rec_cmp(const void *pa, const void *pb)
{
    const struct enf_shape_rec *a = pa;
    const struct enf_shape_rec *b = pb;
    return a->ip < b->ip ? -1 : a->ip > b->ip;
}

static struct enf_shape_rec *enf_shape_rec_find(struct enf_shape_run *run,
                                                uint32_t ip)
{
    struct enf_shape_rec key = { .ip = ip };
    return bsearch(&key, run->recs, run->nrecs, sizeof(key), enf_shape_rec_cmp);
}

/* One record per address desired or found with a filter of ours. */
static int enf_shape_recs_build(struct enf_shape_run *run)
{
    size_t cap = run->nwant + run->k.filters[0].n + run->k.filters[1].n;
    run->recs = ovha_calloc(cap ? cap : 1, sizeof(*run->recs));
    if (run->recs == NULL) {
        return -ENOMEM;
    }
    size_t n = 0;
    for (size_t i = 0; i < run->nwant; i++) {
        run->recs[n++] =
            (struct enf_shape_rec){ .ip = run->want[i].ip, .desired = true };
    }
    for (int d = 0; d < 2; d++) {
        for (size_t i = 0; i < run->k.filters[d].n; i++) {
            const struct enf_shape_kfilter *f = &run->k.filters[d].v[i];
            if (enf_shape_is_ours(f) && f->kind == ENF_SHAPE_F_CLIENT) {
                run->recs[n++] =
                    (struct enf_shape_rec){ .ip = f->ip, .before = true };
            }
        }
    }
    if (n > 1) {
        qsort(run->recs, n, sizeof(*run->recs), enf_shape_rec_cmp);
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (m > 0 && run->recs[m - 1].ip == run->recs[i].ip) {
            run->recs[m - 1].before |= run->recs[i].before;
            run->recs[m - 1].desired |= run->recs[i].desired;
            continue;
        }
        run->recs[m++] = run->recs[i];
    }
    run->nrecs = m;
    return 0;
}

static void enf_shape_recs_count(struct enf_shape_run *run)
{
    struct enf_shape_stats *st = &run->s->stats;
    st->clients = 0;
    for (size_t i = 0; i < run->nrecs; i++) {
        const struct enf_shape_rec *r = &run->recs[i];
        if (r->desired) {
            if (r->touched && !r->failed) {
                if (r->before) {
                    st->changed++;
                } else {
                    st->added++;
                }
            }
            if (r->before || !r->failed) {
                st->clients++;
            }
        } else if (r->before) {
            if (r->failed) {
                st->clients++;
            } else {
                st->removed++;
            }
        }
    }
}

/* ---- requests ------------------------------------------------------------ */

static const char *const enf_shape_op_names[ENF_SHAPE_NOPS] = {
    [ENF_SHAPE_IFB_SET] = "IFB device",
    [ENF_SHAPE_ROOT_SET] = "root qdisc",
    [ENF_SHAPE_INGRESS_SET] = "ingress qdisc",
    [ENF_SHAPE_REDIRECT_SET] = "redirect filter",
    [ENF_SHAPE_CLASS_SET] = "class",
    [ENF_SHAPE_CLASS_DEL] = "class delete",
    [ENF_SHAPE_PROTO_DEL] = "filter chain delete",
    [ENF_SHAPE_TABLE_SET] = "u32 hash table",
    [ENF_SHAPE_LINK_SET] = "u32 link filter",
    [ENF_SHAPE_FILTER_SET] = "filter",
    [ENF_SHAPE_FILTER_DEL] = "filter delete",
};

static void enf_shape_run_fail(struct enf_shape_run *run,
                               int err,
                               const char *fmt,
                               ...) __attribute__((format(printf, 3, 4)));

/* Counts a failure; the first one is returned and described. */
static void enf_shape_run_fail(struct enf_shape_run *run,
                               int err,
                               const char *fmt,
                               ...)
{
    run->s->stats.errors++;
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

/* Sends req; a failure is counted, recorded against the address it is
 * for (has_ip) and, if it is the first, described. Deleting what is gone
 * is success. */
static int enf_shape_send(struct enf_shape_run *run,
                          const struct enf_shape_req *req,
                          uint32_t for_ip,
                          bool has_ip)
{
    int err = run->s->ops->request(run->s->state, req);
    if (err == -ENOENT &&
        (req->op == ENF_SHAPE_CLASS_DEL || req->op == ENF_SHAPE_FILTER_DEL ||
         req->op == ENF_SHAPE_PROTO_DEL)) {
        err = 0;
    }
    struct enf_shape_rec *rec = has_ip ? enf_shape_rec_find(run, for_ip) : NULL;
    if (rec != NULL) {
        rec->touched = true;
        rec->failed |= err < 0;
    }
    if (err == 0) {
        return 0;
    }
    char what[64] = "";
    if (req->op == ENF_SHAPE_CLASS_SET || req->op == ENF_SHAPE_CLASS_DEL) {
        snprintf(what, sizeof(what), " 1:%x", (unsigned)req->minor);
    }
    if (has_ip) {
        char ip[INET_ADDRSTRLEN];
        enf_shape_ip_str(for_ip, ip, sizeof(ip));
        size_t used = strlen(what);
        snprintf(what + used, sizeof(what) - used, " for %s", ip);
    }
    enf_shape_run_fail(
        run, err, "shape: %s: %s %s%s: %s",
        req->dir == ENF_SHAPE_INGRESS ? run->s->ifb : run->s->dev,
        enf_shape_dir_names[req->dir], enf_shape_op_names[req->op], what,
        ovha_strerror(err));
    return err;
}

static int enf_shape_send_dir(struct enf_shape_run *run, int dir, uint8_t op)
{
    struct enf_shape_req req = { .op = op,
                                 .dir = (uint8_t)dir,
                                 .prio = ENF_SHAPE_PRIO,
                                 .proto = ENF_SHAPE_PROTO_IP };
    return enf_shape_send(run, &req, 0, false);
}

/* ---- skeleton: device, qdisc, stray chains, hash table, link ------------- */

/* Deletes the filter chains in dir that are not ours (once each). */
static void enf_shape_drop_strays(struct enf_shape_run *run, int dir)
{
    const struct enf_shape_kfvec *fv = &run->k.filters[dir];
    for (size_t i = 0; i < fv->n; i++) {
        const struct enf_shape_kfilter *f = &fv->v[i];
        bool seen = enf_shape_is_ours(f);
        for (size_t j = 0; j < i && !seen; j++) {
            seen = fv->v[j].prio == f->prio && fv->v[j].proto == f->proto;
        }
        if (!seen) {
            struct enf_shape_req req = { .op = ENF_SHAPE_PROTO_DEL,
                                         .dir = (uint8_t)dir,
                                         .prio = f->prio,
                                         .proto = f->proto };
            (void)enf_shape_send(run, &req, 0, false);
        }
    }
}

/* Whether our chain in dir has the table and the link (the redirect for
 * the hook), and nothing odd. */
static void enf_shape_scan_chain(const struct enf_shape_kfvec *fv,
                                 int dir,
                                 bool *table,
                                 bool *link,
                                 bool *odd)
{
    *table = dir == ENF_SHAPE_HOOK; /* the hook needs no table */
    *link = *odd = false;
    uint8_t link_kind =
        dir == ENF_SHAPE_HOOK ? ENF_SHAPE_F_REDIRECT : ENF_SHAPE_F_LINK;
    for (size_t i = 0; i < fv->n; i++) {
        const struct enf_shape_kfilter *f = &fv->v[i];
        if (!enf_shape_is_ours(f) || f->kind == ENF_SHAPE_F_PROTO ||
            (f->kind == ENF_SHAPE_F_CLIENT && dir != ENF_SHAPE_HOOK)) {
            continue;
        }
        if (f->kind == ENF_SHAPE_F_TABLE && f->handle == ENF_SHAPE_HT_ROOT) {
            continue;
        }
        if (f->kind == ENF_SHAPE_F_TABLE && f->handle == ENF_SHAPE_HT &&
            f->divisor == ENF_SHAPE_BUCKETS && dir != ENF_SHAPE_HOOK) {
            *table = true;
        } else if (f->kind == link_kind && f->handle == ENF_SHAPE_LINK_HANDLE &&
                   !*link &&
                   (dir == ENF_SHAPE_HOOK || f->link == ENF_SHAPE_HT)) {
            *link = true;
        } else {
            *odd = true;
        }
    }
}

/* Forgets the filters of our chain (after it was deleted). */
static void enf_shape_forget_chain(struct enf_shape_kfvec *fv)
{
    size_t m = 0;
    for (size_t i = 0; i < fv->n; i++) {
        if (!enf_shape_is_ours(&fv->v[i])) {
            fv->v[m++] = fv->v[i];
        }
    }
    fv->n = m;
}

/* Makes dir's filter chain exactly ours: strays go, an odd chain is
 * rebuilt, the table and link (or the hook's redirect) are added. */
static bool enf_shape_chain(struct enf_shape_run *run, int dir)
{
    struct enf_shape_kfvec *fv = &run->k.filters[dir];
    enf_shape_drop_strays(run, dir);
    bool table, link, odd;
    enf_shape_scan_chain(fv, dir, &table, &link, &odd);
    if (odd) {
        if (enf_shape_send_dir(run, dir, ENF_SHAPE_PROTO_DEL) < 0) {
            return false;
        }
        enf_shape_forget_chain(fv);
        table = dir == ENF_SHAPE_HOOK;
        link = false;
    }
    if (!table && enf_shape_send_dir(run, dir, ENF_SHAPE_TABLE_SET) < 0) {
        return false;
    }
    uint8_t op =
        dir == ENF_SHAPE_HOOK ? ENF_SHAPE_REDIRECT_SET : ENF_SHAPE_LINK_SET;
    return link || enf_shape_send_dir(run, dir, op) == 0;
}

/* Makes the device (IFB for up), root qdisc, table and link of dir ours;
 * false if it failed. */
static bool enf_shape_skeleton(struct enf_shape_run *run, int dir)
{
    if (dir == ENF_SHAPE_INGRESS && !run->k.ifb) {
        if (enf_shape_send_dir(run, dir, ENF_SHAPE_IFB_SET) < 0) {
            return false;
        }
        run->k.ifb = true;
    }
    if (!run->k.root_ours[dir]) {
        if (enf_shape_send_dir(run, dir, ENF_SHAPE_ROOT_SET) < 0) {
            return false;
        }
        /* A new qdisc starts empty. */
        run->k.filters[dir].n = 0;
        run->k.classes[dir].n = 0;
        run->k.root_ours[dir] = true;
    }
    return enf_shape_chain(run, dir);
}

/* The device's ingress hook: its qdisc and the redirect to the IFB. */
static void enf_shape_hook(struct enf_shape_run *run)
{
    if (!run->k.hook) {
        if (enf_shape_send_dir(run, ENF_SHAPE_HOOK, ENF_SHAPE_INGRESS_SET) <
            0) {
            return;
        }
        run->k.filters[ENF_SHAPE_HOOK].n = 0;
    }
    (void)enf_shape_chain(run, ENF_SHAPE_HOOK);
}

/* ---- indexes ------------------------------------------------------------- */

/* Orders indexes into the filter vector (qsort_r context) by ip. */
static int enf_shape_cidx_cmp(const void *pa, const void *pb, void *ctx)
{
    const struct enf_shape_kfvec *fv = ctx;
    const struct enf_shape_kfilter *a = &fv->v[*(const size_t *)pa];
    const struct enf_shape_kfilter *b = &fv->v[*(const size_t *)pb];
    if (a->ip != b->ip) {
        return a->ip < b->ip ? -1 : 1;
    }
    return a->handle < b->handle ? -1 : a->handle > b->handle;
}

/* Indexes dir's client filters in place by ip, marks used handles and
 * maps class minors to classes. */
static int enf_shape_index_dir(struct enf_shape_run *run, int dir)
{
    const struct enf_shape_kfvec *fv = &run->k.filters[dir];
    struct enf_shape_rdir *rd = &run->d[dir];
    rd->keep = ovha_calloc(fv->n ? fv->n : 1, sizeof(bool));
    rd->cidx = ovha_calloc(fv->n ? fv->n : 1, sizeof(size_t));
    rd->nodes = ovha_calloc(ENF_SHAPE_BUCKETS * 512, 1);
    rd->class_at = ovha_malloc(ENF_SHAPE_NMINORS * sizeof(int32_t));
    rd->claimed = ovha_calloc(ENF_SHAPE_NMINORS, 1);
    if (rd->keep == NULL || rd->cidx == NULL || rd->nodes == NULL ||
        rd->class_at == NULL || rd->claimed == NULL) {
        return -ENOMEM;
    }
    size_t n = 0;
    for (size_t i = 0; i < fv->n; i++) {
        const struct enf_shape_kfilter *f = &fv->v[i];
        if (enf_shape_is_ours(f) && (f->handle & 0xfff00000u) == ENF_SHAPE_HT) {
            uint32_t slot = f->handle & 0xfffffu; /* bucket:node */
            rd->nodes[slot / 8] |= (uint8_t)(1u << (slot % 8));
        }
        if (enf_shape_in_place(f)) {
            rd->cidx[n++] = i;
        }
    }
    if (n > 1) {
        qsort_r(rd->cidx, n, sizeof(size_t), enf_shape_cidx_cmp, (void *)fv);
    }
    rd->ncidx = n;
    for (size_t i = 0; i < ENF_SHAPE_NMINORS; i++) {
        rd->class_at[i] = -1;
    }
    for (size_t i = 0; i < run->k.classes[dir].n; i++) {
        rd->class_at[run->k.classes[dir].v[i].minor] = (int32_t)i;
    }
    rd->next_free = 1;
    return 0;
}

/* The first client filter in place for ip in dir, or NULL. */
static struct enf_shape_kfilter *enf_shape_find_filter(
    struct enf_shape_run *run,
    int dir,
    uint32_t ip,
    size_t *ret_index)
{
    const struct enf_shape_rdir *rd = &run->d[dir];
    struct enf_shape_kfvec *fv = &run->k.filters[dir];
    size_t lo = 0, hi = rd->ncidx;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (fv->v[rd->cidx[mid]].ip < ip) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo < rd->ncidx && fv->v[rd->cidx[lo]].ip == ip) {
        *ret_index = rd->cidx[lo];
        return &fv->v[*ret_index];
    }
    return NULL;
}

/* A free node in ip's bucket, marked used; 0 if the bucket is full. */
static uint32_t enf_shape_alloc_handle(struct enf_shape_run *run,
                                       int dir,
                                       uint32_t ip)
{
    uint8_t *nodes = run->d[dir].nodes;
    uint32_t bucket = ip & 0xffu;
    for (uint32_t node = 1; node <= ENF_SHAPE_MAX_NODE; node++) {
        uint32_t slot = (bucket << 12) | node;
        uint8_t bit = (uint8_t)(1u << (slot % 8));
        if ((nodes[slot / 8] & bit) == 0) {
            nodes[slot / 8] |= bit;
            return enf_shape_handle(bucket, node);
        }
    }
    return 0;
}

/* ---- classes ------------------------------------------------------------- */

static bool enf_shape_class_ok(const struct enf_shape_run *run,
                               int dir,
                               uint16_t minor,
                               uint64_t rate,
                               uint32_t burst)
{
    int32_t i = run->d[dir].class_at[minor];
    if (i < 0) {
        return false;
    }
    const struct enf_shape_kclass *c = &run->k.classes[dir].v[i];
    return c->rate == rate && c->ceil == rate &&
           enf_shape_burst_close(c->burst, burst, rate) &&
           enf_shape_burst_close(c->cburst, burst, rate);
}

/* Makes class 1:minor of dir what rate asks; false if that failed. */
static bool enf_shape_class_set(struct enf_shape_run *run,
                                int dir,
                                uint16_t minor,
                                uint64_t rate,
                                const uint32_t *for_ip)
{
    uint32_t burst = enf_shape_class_burst(rate);
    if (enf_shape_class_ok(run, dir, minor, rate, burst)) {
        return true;
    }
    struct enf_shape_req req = { .op = ENF_SHAPE_CLASS_SET,
                                 .dir = (uint8_t)dir,
                                 .minor = minor,
                                 .rate = rate,
                                 .burst = burst };
    return enf_shape_send(run, &req, for_ip ? *for_ip : 0, for_ip != NULL) == 0;
}

static uint16_t enf_shape_map_get(const struct enf_shape *s,
                                  int dir,
                                  uint32_t ip)
{
    const struct enf_shape_mapent *map = s->map[dir];
    size_t lo = 0, hi = s->nmap[dir];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (map[mid].ip < ip) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < s->nmap[dir] && map[lo].ip == ip ? map[lo].minor : 0;
}

static void enf_shape_claim(struct enf_shape_rdir *rd,
                            struct enf_shape_want *w,
                            int dir,
                            uint32_t minor)
{
    w->minor[dir] = (uint16_t)minor;
    rd->claimed[minor] = 1;
}

/* Gives every desired client of dir its class minor (see the top). */
static void enf_shape_claim_minors(struct enf_shape_run *run, int dir)
{
    struct enf_shape_rdir *rd = &run->d[dir];
    rd->claimed[ENF_SHAPE_DEFAULT_MINOR] = 1;
    for (size_t i = 0; i < run->nwant; i++) {
        struct enf_shape_want *w = &run->want[i];
        size_t fi;
        const struct enf_shape_kfilter *f =
            w->rate[dir] ? enf_shape_find_filter(run, dir, w->ip, &fi) : NULL;
        uint32_t minor = f != NULL ? f->classid & 0xffffu : 0;
        if (f != NULL && (f->classid & 0xffff0000u) == ENF_SHAPE_MAJOR &&
            minor >= 1 && minor <= ENF_SHAPE_MAX_MINOR && !rd->claimed[minor]) {
            enf_shape_claim(rd, w, dir, minor);
        }
    }
    for (size_t i = 0; i < run->nwant; i++) {
        struct enf_shape_want *w = &run->want[i];
        uint16_t minor = enf_shape_map_get(run->s, dir, w->ip);
        if (w->rate[dir] && w->minor[dir] == 0 && minor != 0 &&
            !rd->claimed[minor]) {
            enf_shape_claim(rd, w, dir, minor);
        }
    }
    for (size_t i = 0; i < run->nwant; i++) {
        struct enf_shape_want *w = &run->want[i];
        if (w->rate[dir] == 0 || w->minor[dir] != 0) {
            continue;
        }
        while (
            rd->next_free <= ENF_SHAPE_MAX_MINOR &&
            (rd->claimed[rd->next_free] || rd->class_at[rd->next_free] >= 0)) {
            rd->next_free++;
        }
        if (rd->next_free <= ENF_SHAPE_MAX_MINOR) {
            enf_shape_claim(rd, w, dir, rd->next_free);
        }
    }
}

/* ---- clients ------------------------------------------------------------- */

/* Fails the client without a request (no class or handle left). */
static void enf_shape_fail_client(struct enf_shape_run *run,
                                  int dir,
                                  uint32_t ip,
                                  const char *what)
{
    struct enf_shape_rec *rec = enf_shape_rec_find(run, ip);
    if (rec != NULL) {
        rec->failed = true;
    }
    char ips[INET_ADDRSTRLEN];
    enf_shape_ip_str(ip, ips, sizeof(ips));
    enf_shape_run_fail(run, -ENOSPC, "shape: %s: %s %s for %s: %s", run->s->dev,
                       enf_shape_dir_names[dir], what, ips,
                       ovha_strerror(-ENOSPC));
}

/* The class and filter of one desired client in dir. */
static void enf_shape_client_one(struct enf_shape_run *run,
                                 int dir,
                                 const struct enf_shape_want *w)
{
    uint16_t minor = w->minor[dir];
    if (minor == 0) {
        enf_shape_fail_client(run, dir, w->ip, "class");
        return;
    }
    if (!enf_shape_class_set(run, dir, minor, w->rate[dir], &w->ip)) {
        return;
    }
    size_t fi = 0;
    const struct enf_shape_kfilter *f =
        enf_shape_find_filter(run, dir, w->ip, &fi);
    uint32_t classid = ENF_SHAPE_MAJOR | minor;
    if (f != NULL) {
        run->d[dir].keep[fi] = true;
        if (f->classid == classid) {
            return;
        }
    }
    struct enf_shape_req req = {
        .op = ENF_SHAPE_FILTER_SET,
        .dir = (uint8_t)dir,
        .minor = minor,
        .ip = w->ip,
        .handle =
            f != NULL ? f->handle : enf_shape_alloc_handle(run, dir, w->ip),
    };
    if (req.handle == 0) {
        enf_shape_fail_client(run, dir, w->ip, "filter");
        return;
    }
    (void)enf_shape_send(run, &req, w->ip, true);
}

/* ---- sweep --------------------------------------------------------------- */

/* Deletes the client filters of ours in dir that no desired client kept. */
static void enf_shape_sweep_filters(struct enf_shape_run *run, int dir)
{
    const struct enf_shape_kfvec *fv = &run->k.filters[dir];
    for (size_t i = 0; i < fv->n; i++) {
        const struct enf_shape_kfilter *f = &fv->v[i];
        if (!enf_shape_is_ours(f) || f->kind != ENF_SHAPE_F_CLIENT ||
            run->d[dir].keep[i]) {
            continue;
        }
        struct enf_shape_req req = { .op = ENF_SHAPE_FILTER_DEL,
                                     .dir = (uint8_t)dir,
                                     .prio = ENF_SHAPE_PRIO,
                                     .proto = ENF_SHAPE_PROTO_IP,
                                     .ip = f->ip,
                                     .handle = f->handle };
        (void)enf_shape_send(run, &req, f->ip, true);
    }
}

static void enf_shape_sweep_classes(struct enf_shape_run *run, int dir)
{
    const struct enf_shape_kcvec *cv = &run->k.classes[dir];
    for (size_t i = 0; i < cv->n; i++) {
        uint16_t minor = cv->v[i].minor;
        if (run->d[dir].claimed[minor]) {
            continue;
        }
        struct enf_shape_req req = { .op = ENF_SHAPE_CLASS_DEL,
                                     .dir = (uint8_t)dir,
                                     .minor = minor };
        (void)enf_shape_send(run, &req, 0, false);
    }
}

/* ---- apply --------------------------------------------------------------- */

static void enf_shape_run_done(struct enf_shape_run *run)
{
    enf_shape_kstate_free(&run->k);
    for (int d = 0; d < 2; d++) {
        ovha_free(run->d[d].keep);
        ovha_free(run->d[d].cidx);
        ovha_free(run->d[d].nodes);
        ovha_free(run->d[d].class_at);
        ovha_free(run->d[d].claimed);
    }
    ovha_free(run->recs);
}

/* Remembers each desired client's class in dir for the next apply. */
static void enf_shape_save_map(struct enf_shape_run *run, int dir)
{
    struct enf_shape_mapent *map =
        ovha_calloc(run->nwant ? run->nwant : 1, sizeof(*map));
    if (map == NULL) {
        return; /* the kernel still holds the mapping through filters */
    }
    size_t n = 0;
    for (size_t i = 0; i < run->nwant; i++) {
        if (run->want[i].minor[dir] != 0) {
            map[n++] = (struct enf_shape_mapent){ run->want[i].ip,
                                                  run->want[i].minor[dir] };
        }
    }
    ovha_free(run->s->map[dir]);
    run->s->map[dir] = map;
    run->s->nmap[dir] = n;
}

static int enf_shape_run_prepare(struct enf_shape_run *run)
{
    int err = run->s->ops->dump(run->s->state, &run->k);
    if (err < 0) {
        run->s->stats.errors++;
        enf_shape_errf(run->errbuf, run->errlen, "shape: %s: %s", run->s->dev,
                       err == -ENODEV ? "no such device" : ovha_strerror(err));
        return err;
    }
    err = enf_shape_recs_build(run);
    if (err < 0) {
        enf_shape_errf(run->errbuf, run->errlen, "shape: out of memory");
    }
    return err;
}

/* Marks the clients a failed skeleton of dir leaves unconverged. */
static void enf_shape_fail_dir(struct enf_shape_run *run, int dir)
{
    for (size_t i = 0; i < run->nwant; i++) {
        if (run->want[i].rate[dir] != 0) {
            struct enf_shape_rec *rec =
                enf_shape_rec_find(run, run->want[i].ip);
            if (rec != NULL) {
                rec->failed = true;
            }
        }
    }
}

/* Whether no desired client is shaped in dir while some class or client
 * filter of ours is still there. */
static bool enf_shape_all_gone(const struct enf_shape_run *run, int dir)
{
    for (size_t i = 0; i < run->nwant; i++) {
        if (run->want[i].rate[dir] != 0) {
            return false;
        }
    }
    const struct enf_shape_kfvec *fv = &run->k.filters[dir];
    for (size_t i = 0; i < fv->n; i++) {
        if (fv->v[i].kind == ENF_SHAPE_F_CLIENT) {
            return true;
        }
    }
    return run->k.classes[dir].n > 1;
}

/* Records that the clients with filters in dir were dropped together
 * with the old root qdisc (or that this failed). */
static void enf_shape_mark_flushed(struct enf_shape_run *run,
                                   int dir,
                                   bool failed)
{
    const struct enf_shape_kfvec *fv = &run->k.filters[dir];
    for (size_t i = 0; i < fv->n; i++) {
        struct enf_shape_rec *rec = fv->v[i].kind == ENF_SHAPE_F_CLIENT
                                        ? enf_shape_rec_find(run, fv->v[i].ip)
                                        : NULL;
        if (rec != NULL) {
            rec->touched = true;
            rec->failed |= failed;
        }
    }
}

static int enf_shape_converge(struct enf_shape_run *run)
{
    for (int d = 0; d < 2; d++) {
        /* Nobody left to shape: a fresh root qdisc is one request, where
         * deleting n classes costs the kernel O(n) each (every class
         * create or delete walks all classes to rebind filters). */
        bool flush = run->k.root_ours[d] && enf_shape_all_gone(run, d);
        if (flush) {
            enf_shape_mark_flushed(run, d, false);
            run->k.root_ours[d] = false;
        }
        run->d[d].ok = enf_shape_skeleton(run, d);
        if (flush && !run->d[d].ok) {
            enf_shape_mark_flushed(run, d, true);
        }
        int err = enf_shape_index_dir(run, d);
        if (err < 0) {
            return err;
        }
        if (!run->d[d].ok) {
            enf_shape_fail_dir(run, d);
            continue;
        }
        (void)enf_shape_class_set(run, d, ENF_SHAPE_DEFAULT_MINOR,
                                  run->s->default_rate, NULL);
        enf_shape_claim_minors(run, d);
        for (size_t i = 0; i < run->nwant; i++) {
            if (run->want[i].rate[d] != 0) {
                enf_shape_client_one(run, d, &run->want[i]);
            }
        }
        enf_shape_sweep_filters(run, d);
        enf_shape_sweep_classes(run, d);
        enf_shape_save_map(run, d);
    }
    if (run->d[ENF_SHAPE_INGRESS].ok) {
        enf_shape_hook(run);
    }
    return 0;
}

static void enf_shape_summary(struct enf_shape_run *run)
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

int enf_shape_apply(struct enf_shape *s,
                    const struct enf_shape_client *clients,
                    size_t n,
                    char *errbuf,
                    size_t errlen)
{
    s->stats.applies++;
    if (errbuf != NULL && errlen > 0) {
        errbuf[0] = '\0';
    }
    struct enf_shape_run run = { .s = s, .errbuf = errbuf, .errlen = errlen };
    int err = enf_shape_parse_desired(clients, n, &run.want, &run.nwant, errbuf,
                                      errlen);
    if (err < 0) {
        return err;
    }
    err = enf_shape_run_prepare(&run);
    if (err == 0) {
        err = enf_shape_converge(&run);
        if (err < 0) {
            enf_shape_errf(errbuf, errlen, "shape: out of memory");
        }
    }
    if (err == 0) {
        enf_shape_recs_count(&run);
        enf_shape_summary(&run);
        err = run.first_err;
    }
    enf_shape_run_done(&run);
    ovha_free(run.want);
    return err;
}

/* ---- list ---------------------------------------------------------------- */

/* One client filter found by enf_shape_list. */
struct enf_shape_found {
    uint32_t ip;
    int dir;
    uint32_t kbit;
    uint32_t classid;
};

static int enf_shape_found_cmp(const void *pa, const void *pb)
{
    const struct enf_shape_found *a = pa;
    const struct enf_shape_found *b = pb;
    return a->ip < b->ip ? -1 : a->ip > b->ip;
}

static uint32_t enf_shape_rate_kbit(uint64_t rate)
{
    uint64_t kbit = rate / 125u;
    return kbit > UINT32_MAX ? UINT32_MAX : (uint32_t)kbit;
}

/* What one client filter in place says about its client. */
static struct enf_shape_found enf_shape_found_of(
    const struct enf_shape_run *run,
    int dir,
    const struct enf_shape_kfilter *f)
{
    struct enf_shape_found x = { .ip = f->ip,
                                 .dir = dir,
                                 .classid = f->classid };
    int32_t c = (f->classid & 0xffff0000u) == ENF_SHAPE_MAJOR
                    ? run->d[dir].class_at[f->classid & 0xffffu]
                    : -1;
    x.kbit = c >= 0 ? enf_shape_rate_kbit(run->k.classes[dir].v[c].rate) : 0;
    return x;
}

/* Merges the sorted findings of one address into entries. */
static size_t enf_shape_found_merge(const struct enf_shape_found *x,
                                    size_t n,
                                    struct enf_shape_entry *v)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (m == 0 || x[i - 1].ip != x[i].ip) {
            memset(&v[m], 0, sizeof(v[m]));
            enf_shape_ip_str(x[i].ip, v[m].ip, sizeof(v[m].ip));
            m++;
        }
        struct enf_shape_entry *e = &v[m - 1];
        if (x[i].dir == ENF_SHAPE_EGRESS) {
            e->down_kbit = x[i].kbit;
            e->classid = x[i].classid;
        } else {
            e->up_kbit = x[i].kbit;
            e->up_classid = x[i].classid;
        }
    }
    return m;
}

int enf_shape_list(struct enf_shape *s,
                   struct enf_shape_entry **ret,
                   size_t *ret_n)
{
    struct enf_shape_run run = { .s = s };
    struct enf_shape_found *x = NULL;
    int err = s->ops->dump(s->state, &run.k);
    if (err < 0) {
        goto out;
    }
    for (int d = 0; d < 2 && err == 0; d++) {
        err = enf_shape_index_dir(&run, d);
    }
    size_t cap = run.k.filters[0].n + run.k.filters[1].n;
    x = ovha_calloc(cap ? cap : 1, sizeof(*x));
    struct enf_shape_entry *v = ovha_calloc(cap ? cap : 1, sizeof(*v));
    if (err < 0 || x == NULL || v == NULL) {
        ovha_free(v);
        err = -ENOMEM;
        goto out;
    }
    size_t n = 0;
    for (int d = 0; d < 2; d++) {
        for (size_t i = 0; i < run.k.filters[d].n; i++) {
            const struct enf_shape_kfilter *f = &run.k.filters[d].v[i];
            if (enf_shape_in_place(f)) {
                x[n++] = enf_shape_found_of(&run, d, f);
            }
        }
    }
    if (n > 1) {
        qsort(x, n, sizeof(*x), enf_shape_found_cmp);
    }
    *ret_n = enf_shape_found_merge(x, n, v);
    *ret = v;
out:
    ovha_free(x);
    enf_shape_run_done(&run);
    return err;
}
