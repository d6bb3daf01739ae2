/* enforce/fdb: validation and convergence, shared by both backends.
 *
 * One apply: validate and sort the desired set (nothing is touched if an
 * entry is invalid or a MAC appears twice), dump the bridge's FDB once,
 * keep the tap in the bridge and up, then walk the desired entries by MAC.
 * The bridge holds at most one entry per MAC at vlan 0, so each desired
 * entry meets at most one existing one: ours on the desired port (and
 * sticky) is kept; ours elsewhere is replaced in place (the kernel moves
 * it with NLM_F_REPLACE, so the MAC never goes without an entry); a
 * learned one is taken over the same way; a permanent, extern-learned or
 * foreign static one wins and is reported (-EEXIST); no entry means an
 * add. Finally the entries of ours that nothing desired kept are deleted.
 * Failures do not stop the walk; the first one is returned and named.
 */
#include "enforce/fdb.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "enforce/fdb_int.h"

struct enf_fdb {
    const struct enf_fdb_ops *ops;
    void *state;
    char bridge[ENF_FDB_IF_LEN];
    char tap[ENF_FDB_IF_LEN];
    char uplink[ENF_FDB_IF_LEN];
    struct enf_fdb_stats stats;
};

/* State of one enf_fdb_apply call. */
struct enf_fdb_run {
    struct enf_fdb *f;
    struct enf_fdb_vec all; /* the bridge's entries, sorted by MAC */
    bool *kept;             /* per entry of all: ours and still desired */
    size_t installed;
    int first_err;
    size_t nfail;
    char *errbuf;
    size_t errlen;
};

/* ---- entries in binary form ---------------------------------------------- */

int enf_fdb_vec_push(struct enf_fdb_vec *vec, const struct enf_fdb_ent *e)
{
    if (vec->n == vec->cap) {
        size_t cap = vec->cap ? vec->cap * 2 : 64;
        struct enf_fdb_ent *v = ovha_realloc(vec->v, cap * sizeof(*v));
        if (v == NULL) {
            return -ENOMEM;
        }
        vec->v = v;
        vec->cap = cap;
    }
    vec->v[vec->n++] = *e;
    return 0;
}

void enf_fdb_vec_free(struct enf_fdb_vec *vec)
{
    ovha_free(vec->v);
    memset(vec, 0, sizeof(*vec));
}

static int enf_fdb_mac_cmp(const void *pa, const void *pb)
{
    const struct enf_fdb_ent *a = pa;
    const struct enf_fdb_ent *b = pb;
    return memcmp(a->mac, b->mac, sizeof(a->mac));
}

/* qsort wants a non-NULL base even for no elements. */
static void enf_fdb_sort(struct enf_fdb_ent *v, size_t n)
{
    if (n > 1) {
        qsort(v, n, sizeof(*v), enf_fdb_mac_cmp);
    }
}

static int enf_fdb_hex(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

int enf_fdb_mac_parse(const char *in, uint8_t mac[6])
{
    if (in == NULL || strnlen(in, ENF_FDB_MAC_LEN) != ENF_FDB_MAC_LEN - 1) {
        return -EINVAL;
    }
    char sep = in[2];
    if (sep != ':' && sep != '-') {
        return -EINVAL;
    }
    uint8_t m[6];
    for (size_t i = 0; i < 6; i++) {
        int hi = enf_fdb_hex(in[3 * i]);
        int lo = enf_fdb_hex(in[3 * i + 1]);
        if (hi < 0 || lo < 0 || (i < 5 && in[3 * i + 2] != sep)) {
            return -EINVAL;
        }
        m[i] = (uint8_t)(hi << 4 | lo);
    }
    /* The group bit marks multicast and broadcast: no client owns one. */
    static const uint8_t zero[6];
    if ((m[0] & 1) || memcmp(m, zero, sizeof(m)) == 0) {
        return -EINVAL;
    }
    memcpy(mac, m, sizeof(m));
    return 0;
}

void enf_fdb_mac_format(const uint8_t mac[6], char *out)
{
    snprintf(out, ENF_FDB_MAC_LEN, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0],
             mac[1], mac[2], mac[3], mac[4], mac[5]);
}

int enf_fdb_mac_canon(const char *in, char *out)
{
    uint8_t mac[6];
    int err = enf_fdb_mac_parse(in, mac);
    if (err < 0) {
        return err;
    }
    enf_fdb_mac_format(mac, out);
    return 0;
}

/* ---- validation ---------------------------------------------------------- */

static void enf_fdb_errf(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void enf_fdb_errf(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (errbuf == NULL || errlen == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

/* Ours: static, on one of the configured ports. */
static bool enf_fdb_is_ours(const struct enf_fdb *f,
                            const struct enf_fdb_ent *e)
{
    return e->kind == ENF_FDB_STATIC &&
           (strcmp(e->port, f->tap) == 0 || strcmp(e->port, f->uplink) == 0);
}

static int enf_fdb_parse_entry(const struct enf_fdb *f,
                               const struct enf_fdb_entry *in,
                               struct enf_fdb_ent *ret,
                               char *why,
                               size_t whylen)
{
    if (memchr(in->mac, '\0', sizeof(in->mac)) == NULL) {
        snprintf(why, whylen, "mac is not terminated");
        return -EINVAL;
    }
    if (memchr(in->port, '\0', sizeof(in->port)) == NULL) {
        snprintf(why, whylen, "port longer than %zu bytes",
                 sizeof(in->port) - 1);
        return -EINVAL;
    }
    memset(ret, 0, sizeof(*ret));
    if (enf_fdb_mac_parse(in->mac, ret->mac) < 0) {
        snprintf(why, whylen, "mac \"%s\" is not a unicast MAC", in->mac);
        return -EINVAL;
    }
    if (strcmp(in->port, f->tap) != 0 && strcmp(in->port, f->uplink) != 0) {
        snprintf(why, whylen, "port \"%s\" is neither tap %s nor uplink %s",
                 in->port, f->tap, f->uplink);
        return -EINVAL;
    }
    ovha_strlcpy(ret->port, in->port, sizeof(ret->port));
    ret->kind = ENF_FDB_STATIC;
    ret->sticky = true;
    return 0;
}

/* Parses every desired entry into *ret (sorted by MAC) and rejects a MAC
 * desired twice. On failure nothing is allocated. */
static int enf_fdb_parse_desired(const struct enf_fdb *f,
                                 const struct enf_fdb_entry *desired,
                                 size_t n,
                                 struct enf_fdb_ent **ret,
                                 char *errbuf,
                                 size_t errlen)
{
    struct enf_fdb_ent *v = ovha_calloc(n ? n : 1, sizeof(*v));
    if (v == NULL) {
        enf_fdb_errf(errbuf, errlen, "fdb: out of memory");
        return -ENOMEM;
    }
    char why[160];
    for (size_t i = 0; i < n; i++) {
        if (enf_fdb_parse_entry(f, &desired[i], &v[i], why, sizeof(why)) < 0) {
            enf_fdb_errf(errbuf, errlen, "fdb entry %zu: %s", i, why);
            ovha_free(v);
            return -EINVAL;
        }
    }
    enf_fdb_sort(v, n);
    for (size_t i = 1; i < n; i++) {
        if (enf_fdb_mac_cmp(&v[i - 1], &v[i]) == 0) {
            char mac[ENF_FDB_MAC_LEN];
            enf_fdb_mac_format(v[i].mac, mac);
            enf_fdb_errf(errbuf, errlen, "fdb %s: desired twice", mac);
            ovha_free(v);
            return -EINVAL;
        }
    }
    *ret = v;
    return 0;
}

/* ---- lifecycle ----------------------------------------------------------- */

static const struct enf_fdb_ops *enf_fdb_find_ops(const char *name)
{
    if (name == NULL) {
        return NULL;
    }
    if (strcmp(name, enf_fdb_linux_ops.name) == 0) {
        return &enf_fdb_linux_ops;
    }
    if (strcmp(name, enf_fdb_fake_ops.name) == 0) {
        return &enf_fdb_fake_ops;
    }
    return NULL;
}

/* A device name the kernel would accept in length. */
static int enf_fdb_check_name(const char *what,
                              const char *name,
                              char *errbuf,
                              size_t errlen)
{
    if (name == NULL || name[0] == '\0') {
        enf_fdb_errf(errbuf, errlen, "fdb: %s name is empty", what);
        return -EINVAL;
    }
    if (strnlen(name, ENF_FDB_IF_LEN) >= ENF_FDB_IF_LEN) {
        enf_fdb_errf(errbuf, errlen, "fdb: %s name longer than %d bytes", what,
                     ENF_FDB_IF_LEN - 1);
        return -EINVAL;
    }
    return 0;
}

static int enf_fdb_check_config(const struct enf_fdb_config *cfg,
                                char *errbuf,
                                size_t errlen)
{
    int err = enf_fdb_check_name("bridge", cfg->bridge, errbuf, errlen);
    if (err == 0) {
        err = enf_fdb_check_name("tap", cfg->tap, errbuf, errlen);
    }
    if (err == 0) {
        err = enf_fdb_check_name("uplink", cfg->uplink, errbuf, errlen);
    }
    if (err < 0) {
        return err;
    }
    if (strcmp(cfg->bridge, cfg->tap) == 0 ||
        strcmp(cfg->bridge, cfg->uplink) == 0 ||
        strcmp(cfg->tap, cfg->uplink) == 0) {
        enf_fdb_errf(errbuf, errlen,
                     "fdb: bridge, tap and uplink must be three devices");
        return -EINVAL;
    }
    return 0;
}

int enf_fdb_new(const struct enf_fdb_config *cfg,
                struct enf_fdb **ret,
                char *errbuf,
                size_t errlen)
{
    const struct enf_fdb_ops *ops =
        cfg != NULL ? enf_fdb_find_ops(cfg->backend) : NULL;
    if (ops == NULL) {
        enf_fdb_errf(errbuf, errlen, "fdb: unknown backend \"%s\"",
                     cfg != NULL && cfg->backend ? cfg->backend : "(null)");
        return -EINVAL;
    }
    int err = enf_fdb_check_config(cfg, errbuf, errlen);
    if (err < 0) {
        return err;
    }
    struct enf_fdb *f = ovha_calloc(1, sizeof(*f));
    if (f == NULL) {
        enf_fdb_errf(errbuf, errlen, "fdb: out of memory");
        return -ENOMEM;
    }
    ovha_strlcpy(f->bridge, cfg->bridge, sizeof(f->bridge));
    ovha_strlcpy(f->tap, cfg->tap, sizeof(f->tap));
    ovha_strlcpy(f->uplink, cfg->uplink, sizeof(f->uplink));
    err = ops->open(cfg, &f->state, errbuf, errlen);
    if (err < 0) {
        ovha_free(f);
        return err;
    }
    f->ops = ops;
    *ret = f;
    return 0;
}

void enf_fdb_free(struct enf_fdb *f)
{
    if (f == NULL) {
        return;
    }
    f->ops->close(f->state);
    ovha_free(f);
}

void *enf_fdb_backend(struct enf_fdb *f, const struct enf_fdb_ops *ops)
{
    return f != NULL && f->ops == ops ? f->state : NULL;
}

void enf_fdb_get_stats(const struct enf_fdb *f, struct enf_fdb_stats *ret)
{
    *ret = f->stats;
}

/* ---- convergence --------------------------------------------------------- */

static void enf_fdb_run_fail(struct enf_fdb_run *run,
                             int err,
                             const char *fmt,
                             ...) __attribute__((format(printf, 3, 4)));

/* Records a failure; the first one is returned and described. */
static void enf_fdb_run_fail(struct enf_fdb_run *run,
                             int err,
                             const char *fmt,
                             ...)
{
    run->f->stats.errors++;
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

/* The existing entry for d's MAC (at most one), or NULL. */
static struct enf_fdb_ent *enf_fdb_find(struct enf_fdb_run *run,
                                        const struct enf_fdb_ent *d,
                                        size_t *ret_i)
{
    size_t lo = 0, hi = run->all.n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = enf_fdb_mac_cmp(&run->all.v[mid], d);
        if (c == 0) {
            *ret_i = mid;
            return &run->all.v[mid];
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

/* Asks the backend to add (or replace with) d; counts it under *counter.
 * Returns whether d is now installed. */
static bool enf_fdb_run_add(struct enf_fdb_run *run,
                            const struct enf_fdb_ent *d,
                            uint64_t *counter,
                            bool grows)
{
    int err = run->f->ops->add(run->f->state, d);
    if (err < 0) {
        char mac[ENF_FDB_MAC_LEN];
        enf_fdb_mac_format(d->mac, mac);
        if (err == -EXDEV) {
            enf_fdb_run_fail(run, err, "fdb %s: port %s is not in bridge %s",
                             mac, d->port, run->f->bridge);
        } else {
            enf_fdb_run_fail(run, err, "fdb %s on %s: %s", mac, d->port,
                             ovha_strerror(err));
        }
        return false;
    }
    (*counter)++;
    if (grows) {
        run->installed++;
    }
    return true;
}

static const char *enf_fdb_kind_name(uint8_t kind)
{
    switch (kind) {
    case ENF_FDB_STATIC:
        return "a static";
    case ENF_FDB_PERMANENT:
        return "a permanent";
    case ENF_FDB_LEARNED:
        return "a learned";
    default:
        return "an extern-learned";
    }
}

/* Converges one desired entry against the bridge's entry for its MAC. */
static void enf_fdb_converge_one(struct enf_fdb_run *run,
                                 const struct enf_fdb_ent *d)
{
    struct enf_fdb_stats *st = &run->f->stats;
    size_t i = 0;
    const struct enf_fdb_ent *e = enf_fdb_find(run, d, &i);
    if (e == NULL) {
        enf_fdb_run_add(run, d, &st->added, true);
        return;
    }
    if (enf_fdb_is_ours(run->f, e)) {
        if ((strcmp(e->port, d->port) == 0 && e->sticky) ||
            enf_fdb_run_add(run, d, &st->replaced, false)) {
            run->kept[i] = true;
        }
        return;
    }
    if (e->kind == ENF_FDB_LEARNED) {
        /* Learning put the MAC somewhere: our static entry overrides it,
         * which is the point of the MAC map. */
        enf_fdb_run_add(run, d, &st->added, true);
        return;
    }
    char mac[ENF_FDB_MAC_LEN];
    enf_fdb_mac_format(d->mac, mac);
    enf_fdb_run_fail(run, -EEXIST, "fdb %s: held by %s entry on %s", mac,
                     enf_fdb_kind_name(e->kind),
                     e->port[0] != '\0' ? e->port : "a vanished port");
}

/* Deletes the entries of ours that no desired entry kept. */
static void enf_fdb_sweep(struct enf_fdb_run *run)
{
    for (size_t i = 0; i < run->all.n; i++) {
        const struct enf_fdb_ent *e = &run->all.v[i];
        if (run->kept[i] || !enf_fdb_is_ours(run->f, e)) {
            continue;
        }
        int err = run->f->ops->del(run->f->state, e);
        if (err == -ENOENT) {
            /* Gone since the dump (deleted by hand): converged anyway. */
            run->installed--;
            continue;
        }
        if (err < 0) {
            char mac[ENF_FDB_MAC_LEN];
            enf_fdb_mac_format(e->mac, mac);
            enf_fdb_run_fail(run, err, "fdb %s on %s: delete: %s", mac, e->port,
                             ovha_strerror(err));
            continue;
        }
        run->installed--;
        run->f->stats.removed++;
    }
}

/* Dumps the bridge's FDB and sorts it by MAC. */
static int enf_fdb_run_dump(struct enf_fdb_run *run)
{
    int err = run->f->ops->dump(run->f->state, &run->all);
    if (err < 0) {
        return err;
    }
    enf_fdb_sort(run->all.v, run->all.n);
    run->kept = ovha_calloc(run->all.n ? run->all.n : 1, sizeof(bool));
    if (run->kept == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < run->all.n; i++) {
        run->installed += enf_fdb_is_ours(run->f, &run->all.v[i]);
    }
    return 0;
}

/* Keeps the tap in the bridge and up. */
static void enf_fdb_run_attach(struct enf_fdb_run *run)
{
    bool enslaved = false;
    int err = run->f->ops->attach(run->f->state, run->f->tap, &enslaved);
    if (err < 0) {
        enf_fdb_run_fail(run, err, "fdb: tap %s: %s", run->f->tap,
                         ovha_strerror(err));
        return;
    }
    if (enslaved) {
        run->f->stats.attached++;
    }
}

/* Tells how many failures the message does not name. */
static void enf_fdb_run_summary(struct enf_fdb_run *run)
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

int enf_fdb_apply(struct enf_fdb *f,
                  const struct enf_fdb_entry *desired,
                  size_t n,
                  char *errbuf,
                  size_t errlen)
{
    f->stats.applies++;
    if (errbuf != NULL && errlen > 0) {
        errbuf[0] = '\0';
    }
    struct enf_fdb_ent *want = NULL;
    int err = enf_fdb_parse_desired(f, desired, n, &want, errbuf, errlen);
    if (err < 0) {
        return err;
    }
    struct enf_fdb_run run = { .f = f, .errbuf = errbuf, .errlen = errlen };
    err = enf_fdb_run_dump(&run);
    if (err < 0) {
        f->stats.errors++;
        enf_fdb_errf(errbuf, errlen, "fdb: bridge %s: dump: %s", f->bridge,
                     ovha_strerror(err));
        goto out;
    }
    enf_fdb_run_attach(&run);
    for (size_t i = 0; i < n; i++) {
        enf_fdb_converge_one(&run, &want[i]);
    }
    enf_fdb_sweep(&run);
    f->stats.installed = run.installed;
    enf_fdb_run_summary(&run);
    err = run.first_err;
out:
    enf_fdb_vec_free(&run.all);
    ovha_free(run.kept);
    ovha_free(want);
    return err;
}

int enf_fdb_list(struct enf_fdb *f, struct enf_fdb_entry **ret, size_t *ret_n)
{
    struct enf_fdb_vec all = { 0 };
    int err = f->ops->dump(f->state, &all);
    if (err < 0) {
        goto out;
    }
    enf_fdb_sort(all.v, all.n);
    struct enf_fdb_entry *v = ovha_calloc(all.n ? all.n : 1, sizeof(*v));
    if (v == NULL) {
        err = -ENOMEM;
        goto out;
    }
    size_t n = 0;
    for (size_t i = 0; i < all.n; i++) {
        if (enf_fdb_is_ours(f, &all.v[i])) {
            enf_fdb_mac_format(all.v[i].mac, v[n].mac);
            ovha_strlcpy(v[n].port, all.v[i].port, sizeof(v[n].port));
            n++;
        }
    }
    *ret = v;
    *ret_n = n;
out:
    enf_fdb_vec_free(&all);
    return err;
}
