/* enforce/fdb_fake: an in-memory bridge FDB (vlan 0) and tap link state
 * with the kernel semantics that matter to the reconciler: one entry per
 * MAC, an add replaces the entry for its MAC whatever it is, a delete
 * names the port, a tap that leaves the bridge or vanishes loses its
 * entries, and entries can only go on ports of the bridge. It counts what
 * it was asked and can be told to fail.
 */
#include <errno.h>
#include <string.h>

#include "base/base.h"
#include "enforce/fdb_int.h"

struct enf_ffake {
    char tap[ENF_FDB_IF_LEN];
    char uplink[ENF_FDB_IF_LEN];
    struct enf_fdb_vec fdb;
    bool tap_exists;
    bool tap_enslaved;
    bool tap_up;
    unsigned fail_requests;
    int fail_requests_err;
    int fail_dump_err;
    uint64_t adds;
    uint64_t dels;
    uint64_t attaches;
};

static int enf_ffake_open(const struct enf_fdb_config *cfg,
                          void **ret_state,
                          char *errbuf,
                          size_t errlen)
{
    struct enf_ffake *f = ovha_calloc(1, sizeof(*f));
    if (f == NULL) {
        if (errbuf != NULL && errlen > 0) {
            ovha_strlcpy(errbuf, "fdb: out of memory", errlen);
        }
        return -ENOMEM;
    }
    ovha_strlcpy(f->tap, cfg->tap, sizeof(f->tap));
    ovha_strlcpy(f->uplink, cfg->uplink, sizeof(f->uplink));
    /* As openvpn leaves it: created, down, in no bridge. */
    f->tap_exists = true;
    *ret_state = f;
    return 0;
}

static void enf_ffake_close(void *state)
{
    struct enf_ffake *f = state;
    if (f == NULL) {
        return;
    }
    enf_fdb_vec_free(&f->fdb);
    ovha_free(f);
}

static long enf_ffake_find(const struct enf_ffake *f, const uint8_t mac[6])
{
    for (size_t i = 0; i < f->fdb.n; i++) {
        if (memcmp(f->fdb.v[i].mac, mac, 6) == 0) {
            return (long)i;
        }
    }
    return -1;
}

static void enf_ffake_remove_at(struct enf_ffake *f, size_t i)
{
    f->fdb.v[i] = f->fdb.v[f->fdb.n - 1];
    f->fdb.n--;
}

static int enf_ffake_put_ent(struct enf_ffake *f, const struct enf_fdb_ent *e)
{
    long i = enf_ffake_find(f, e->mac);
    if (i >= 0) {
        f->fdb.v[i] = *e;
        return 0;
    }
    return enf_fdb_vec_push(&f->fdb, e);
}

/* What the kernel does to a port's entries when it leaves the bridge. */
static void enf_ffake_flush_port(struct enf_ffake *f, const char *port)
{
    for (size_t i = f->fdb.n; i > 0; i--) {
        if (strcmp(f->fdb.v[i - 1].port, port) == 0) {
            enf_ffake_remove_at(f, i - 1);
        }
    }
}

/* Consumes one injected request failure, if any. */
static int enf_ffake_injected(struct enf_ffake *f)
{
    if (f->fail_requests == 0) {
        return 0;
    }
    f->fail_requests--;
    return f->fail_requests_err;
}

static int enf_ffake_dump(void *state, struct enf_fdb_vec *out)
{
    struct enf_ffake *f = state;
    if (f->fail_dump_err != 0) {
        return f->fail_dump_err;
    }
    for (size_t i = 0; i < f->fdb.n; i++) {
        int err = enf_fdb_vec_push(out, &f->fdb.v[i]);
        if (err < 0) {
            return err;
        }
    }
    return 0;
}

static int enf_ffake_attach(void *state, const char *port, bool *ret_enslaved)
{
    struct enf_ffake *f = state;
    if (strcmp(port, f->tap) != 0 || !f->tap_exists) {
        return -ENODEV;
    }
    if (f->tap_enslaved && f->tap_up) {
        *ret_enslaved = false;
        return 0;
    }
    f->attaches++;
    int err = enf_ffake_injected(f);
    if (err < 0) {
        return err;
    }
    *ret_enslaved = !f->tap_enslaved;
    f->tap_enslaved = true;
    f->tap_up = true;
    return 0;
}

static int enf_ffake_add(void *state, const struct enf_fdb_ent *e)
{
    struct enf_ffake *f = state;
    f->adds++;
    int err = enf_ffake_injected(f);
    if (err < 0) {
        return err;
    }
    bool tap = strcmp(e->port, f->tap) == 0;
    if ((tap && !f->tap_exists) || (!tap && strcmp(e->port, f->uplink) != 0)) {
        return -ENODEV;
    }
    if (tap && !f->tap_enslaved) {
        return -EXDEV;
    }
    struct enf_fdb_ent x = *e;
    x.kind = ENF_FDB_STATIC;
    x.sticky = true;
    return enf_ffake_put_ent(f, &x);
}

static int enf_ffake_del(void *state, const struct enf_fdb_ent *e)
{
    struct enf_ffake *f = state;
    f->dels++;
    int err = enf_ffake_injected(f);
    if (err < 0) {
        return err;
    }
    long i = enf_ffake_find(f, e->mac);
    if (i < 0 || strcmp(f->fdb.v[i].port, e->port) != 0) {
        return -ENOENT;
    }
    enf_ffake_remove_at(f, (size_t)i);
    return 0;
}

const struct enf_fdb_ops enf_fdb_fake_ops = {
    .name = "fake",
    .open = enf_ffake_open,
    .close = enf_ffake_close,
    .dump = enf_ffake_dump,
    .attach = enf_ffake_attach,
    .add = enf_ffake_add,
    .del = enf_ffake_del,
};

/* ---- test hooks ---------------------------------------------------------- */

int enf_fdb_fake_put(struct enf_fdb *fdb,
                     const char *mac,
                     const char *port,
                     enum enf_fdb_kind kind,
                     bool sticky)
{
    struct enf_ffake *f = enf_fdb_backend(fdb, &enf_fdb_fake_ops);
    struct enf_fdb_ent e;
    memset(&e, 0, sizeof(e));
    if (f == NULL || port == NULL || kind > ENF_FDB_EXTERN ||
        enf_fdb_mac_parse(mac, e.mac) < 0 ||
        ovha_strlcpy(e.port, port, sizeof(e.port)) >= sizeof(e.port)) {
        return -EINVAL;
    }
    e.kind = (uint8_t)kind;
    e.sticky = sticky;
    return enf_ffake_put_ent(f, &e);
}

int enf_fdb_fake_drop(struct enf_fdb *fdb, const char *mac)
{
    struct enf_ffake *f = enf_fdb_backend(fdb, &enf_fdb_fake_ops);
    uint8_t m[6];
    if (f == NULL || enf_fdb_mac_parse(mac, m) < 0) {
        return -EINVAL;
    }
    long i = enf_ffake_find(f, m);
    if (i < 0) {
        return -ENOENT;
    }
    enf_ffake_remove_at(f, (size_t)i);
    return 0;
}

int enf_fdb_fake_get(struct enf_fdb *fdb,
                     const char *mac,
                     struct enf_fdb_ent *ret)
{
    struct enf_ffake *f = enf_fdb_backend(fdb, &enf_fdb_fake_ops);
    uint8_t m[6];
    if (f == NULL || enf_fdb_mac_parse(mac, m) < 0) {
        return -EINVAL;
    }
    long i = enf_ffake_find(f, m);
    if (i < 0) {
        return -ENOENT;
    }
    *ret = f->fdb.v[i];
    return 0;
}

int enf_fdb_fake_set_tap(struct enf_fdb *fdb,
                         bool exists,
                         bool enslaved,
                         bool up)
{
    struct enf_ffake *f = enf_fdb_backend(fdb, &enf_fdb_fake_ops);
    if (f == NULL || (!exists && (enslaved || up))) {
        return -EINVAL;
    }
    if (!exists || !enslaved) {
        enf_ffake_flush_port(f, f->tap);
    }
    f->tap_exists = exists;
    f->tap_enslaved = enslaved;
    f->tap_up = up;
    return 0;
}

int enf_fdb_fake_get_tap(struct enf_fdb *fdb,
                         bool *ret_exists,
                         bool *ret_enslaved,
                         bool *ret_up)
{
    struct enf_ffake *f = enf_fdb_backend(fdb, &enf_fdb_fake_ops);
    if (f == NULL) {
        return -EINVAL;
    }
    *ret_exists = f->tap_exists;
    *ret_enslaved = f->tap_enslaved;
    *ret_up = f->tap_up;
    return 0;
}

int enf_fdb_fake_fail_requests(struct enf_fdb *fdb, unsigned count, int err)
{
    struct enf_ffake *f = enf_fdb_backend(fdb, &enf_fdb_fake_ops);
    if (f == NULL) {
        return -EINVAL;
    }
    f->fail_requests = count;
    f->fail_requests_err = err;
    return 0;
}

int enf_fdb_fake_fail_dump(struct enf_fdb *fdb, int err)
{
    struct enf_ffake *f = enf_fdb_backend(fdb, &enf_fdb_fake_ops);
    if (f == NULL) {
        return -EINVAL;
    }
    f->fail_dump_err = err;
    return 0;
}

int enf_fdb_fake_counts(struct enf_fdb *fdb,
                        uint64_t *ret_adds,
                        uint64_t *ret_dels,
                        uint64_t *ret_attaches,
                        size_t *ret_size)
{
    struct enf_ffake *f = enf_fdb_backend(fdb, &enf_fdb_fake_ops);
    if (f == NULL) {
        return -EINVAL;
    }
    *ret_adds = f->adds;
    *ret_dels = f->dels;
    *ret_attaches = f->attaches;
    *ret_size = f->fdb.n;
    return 0;
}
