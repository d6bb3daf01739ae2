/* enforce/fw: the enforcing object, shared by both backends.
 *
 * apply: build the member model, compile the plan, have the backend
 * replace our table in one transaction, then read the table back once
 * without elements: that skeleton (the kernel's own rendering of what we
 * installed) is the baseline enf_fw_check compares against. The member
 * model (address -> group bits) is what the sets must hold; member
 * add/del turn a change of it into element updates, one transaction per
 * call, and update the model only when the kernel took them.
 *
 * check: read the table with its elements; it is in sync when it exists,
 * its skeleton equals the baseline and every set holds exactly the model's
 * members for it. Anything else (including a failed element update since
 * the last apply) is drift: the reconciler re-applies.
 */
#include "enforce/fw.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/base.h"
#include "enforce/fw_int.h"

struct enf_fw {
    const struct enf_fw_ops *ops;
    void *state;
    char table[ENF_FW_TABLE_LEN];
    char dev[ENF_FW_DEV_LEN];
    bool applied; /* a plan is installed and the model describes it */
    bool broken;  /* an element update failed since the last apply */
    bool drifted; /* the last check found drift */
    size_t ngroups;
    char groups[ENF_FW_MAX_GROUPS][ENF_FW_GROUP_LEN];
    struct enf_fw_memvec members;
    char *skeleton; /* baseline; NULL when reading it failed */
    struct enf_fw_stats stats;
};

/* ---- lifecycle ----------------------------------------------------------- */

static const struct enf_fw_ops *enf_fw_find_ops(const char *name)
{
    if (name == NULL) {
        return NULL;
    }
    if (strcmp(name, enf_fw_linux_ops.name) == 0) {
        return &enf_fw_linux_ops;
    }
    if (strcmp(name, enf_fw_fake_ops.name) == 0) {
        return &enf_fw_fake_ops;
    }
    return NULL;
}

int enf_fw_new(const struct enf_fw_config *cfg,
               struct enf_fw **ret,
               char *errbuf,
               size_t errlen)
{
    const struct enf_fw_ops *ops =
        cfg != NULL ? enf_fw_find_ops(cfg->backend) : NULL;
    if (ops == NULL) {
        enf_fw_errf(errbuf, errlen, "fw: unknown backend \"%s\"",
                    cfg != NULL && cfg->backend ? cfg->backend : "(null)");
        return -EINVAL;
    }
    const char *table = cfg->table ? cfg->table : ENF_FW_TABLE_DEFAULT;
    if (!enf_fw_valid_table(table) || !enf_fw_valid_dev(cfg->dev)) {
        enf_fw_errf(errbuf, errlen, "fw: bad table or device name");
        return -EINVAL;
    }
    struct enf_fw *fw = ovha_calloc(1, sizeof(*fw));
    if (fw == NULL) {
        enf_fw_errf(errbuf, errlen, "fw: out of memory");
        return -ENOMEM;
    }
    ovha_strlcpy(fw->table, table, sizeof(fw->table));
    ovha_strlcpy(fw->dev, cfg->dev, sizeof(fw->dev));
    int err = ops->open(fw->table, &fw->state, errbuf, errlen);
    if (err < 0) {
        ovha_free(fw);
        return err;
    }
    fw->ops = ops;
    *ret = fw;
    return 0;
}

void enf_fw_free(struct enf_fw *fw)
{
    if (fw == NULL) {
        return;
    }
    fw->ops->close(fw->state);
    enf_fw_memvec_free(&fw->members);
    ovha_free(fw->skeleton);
    ovha_free(fw);
}

void *enf_fw_backend(struct enf_fw *fw, const struct enf_fw_ops *ops)
{
    return fw != NULL && fw->ops == ops ? fw->state : NULL;
}

void enf_fw_get_stats(const struct enf_fw *fw, struct enf_fw_stats *ret)
{
    *ret = fw->stats;
    ret->members = fw->members.n;
}

/* ---- apply --------------------------------------------------------------- */

/* Reads the skeleton of what was just installed as the new baseline. */
static int enf_fw_take_baseline(struct enf_fw *fw, char *errbuf, size_t errlen)
{
    struct enf_fw_kstate ks;
    memset(&ks, 0, sizeof(ks));
    ovha_free(fw->skeleton);
    fw->skeleton = NULL;
    int err = fw->ops->read(fw->state, false, &ks, errbuf, errlen);
    if (err == 0 && !ks.exists) {
        enf_fw_errf(errbuf, errlen, "fw: table %s vanished after apply",
                    fw->table);
        err = -ENOENT;
    }
    if (err == 0) {
        fw->skeleton = ks.skeleton;
        ks.skeleton = NULL;
    }
    enf_fw_kstate_free(&ks);
    return err;
}

int enf_fw_apply(struct enf_fw *fw,
                 const struct enf_fw_policy *p,
                 const struct enf_fw_member *members,
                 size_t nmembers,
                 char *errbuf,
                 size_t errlen)
{
    enf_fw_errf(errbuf, errlen, "%s", "");
    struct enf_fw_memvec mv;
    int err = enf_fw_members_build(members, nmembers, p->groups, p->ngroups,
                                   &mv, errbuf, errlen);
    if (err < 0) {
        return err;
    }
    struct enf_fw_plan plan;
    err = enf_fw_plan_build(p, &mv, fw->dev, fw->table, &plan);
    if (err < 0) {
        enf_fw_errf(errbuf, errlen, "fw: out of memory");
        enf_fw_memvec_free(&mv);
        return err;
    }
    err = fw->ops->replace(fw->state, &plan, errbuf, errlen);
    enf_fw_plan_free(&plan);
    if (err < 0) {
        fw->stats.errors++;
        enf_fw_memvec_free(&mv);
        return err;
    }
    /* The kernel now holds the new table: the model follows it. */
    enf_fw_memvec_free(&fw->members);
    fw->members = mv;
    fw->ngroups = p->ngroups;
    memcpy(fw->groups, p->groups, sizeof(fw->groups));
    fw->applied = true;
    fw->stats.applies++;
    if (fw->drifted || fw->broken) {
        fw->stats.repairs++;
    }
    fw->drifted = false;
    fw->broken = false;
    err = enf_fw_take_baseline(fw, errbuf, errlen);
    if (err < 0) {
        fw->stats.errors++;
    }
    return err;
}

/* ---- members ------------------------------------------------------------- */

/* Appends the element updates that take addr from mask `from` to mask
 * `to` (present: whether it is a member before/after). */
static size_t enf_fw_member_ops(const struct enf_fw *fw,
                                const struct enf_fw_addr *addr,
                                bool was,
                                uint64_t from,
                                bool is,
                                uint64_t to,
                                struct enf_fw_elem_op *ops)
{
    size_t n = 0;
    if (was != is) {
        ops[n].add = is;
        enf_fw_set_name(-1, addr->family, fw->groups, ops[n].set,
                        sizeof(ops[n].set));
        ops[n++].addr = *addr;
    }
    for (size_t g = 0; g < fw->ngroups; g++) {
        uint64_t bit = UINT64_C(1) << g;
        bool in_from = was && (from & bit);
        bool in_to = is && (to & bit);
        if (in_from == in_to) {
            continue;
        }
        ops[n].add = in_to;
        enf_fw_set_name((int)g, addr->family, fw->groups, ops[n].set,
                        sizeof(ops[n].set));
        ops[n++].addr = *addr;
    }
    return n;
}

/* Moves addr from its current state to (is, to) in kernel and model. */
static int enf_fw_member_change(struct enf_fw *fw,
                                const struct enf_fw_addr *addr,
                                bool is,
                                uint64_t to,
                                char *errbuf,
                                size_t errlen)
{
    if (!fw->applied) {
        enf_fw_errf(errbuf, errlen, "fw: no policy applied yet");
        return -EAGAIN;
    }
    long i = enf_fw_memvec_find(&fw->members, addr);
    bool was = i >= 0;
    uint64_t from = was ? fw->members.v[i].mask : 0;
    struct enf_fw_elem_op ops[1 + ENF_FW_MAX_GROUPS];
    size_t n = enf_fw_member_ops(fw, addr, was, from, is, to, ops);
    if (n == 0) {
        return 0;
    }
    int err = fw->ops->elements(fw->state, ops, n, errbuf, errlen);
    if (err < 0) {
        fw->stats.errors++;
        fw->broken = true;
        return err;
    }
    fw->stats.element_txns++;
    fw->stats.element_updates += n;
    if (!is) {
        enf_fw_memvec_remove(&fw->members, (size_t)i);
        return 0;
    }
    err = enf_fw_memvec_put(&fw->members, addr, to);
    if (err < 0) {
        /* The kernel has it, the model cannot say so: out of sync. */
        fw->broken = true;
        enf_fw_errf(errbuf, errlen, "fw: out of memory");
    }
    return err;
}

int enf_fw_member_add(struct enf_fw *fw,
                      const char *ip,
                      const char *const *groups,
                      size_t ngroups,
                      char *errbuf,
                      size_t errlen)
{
    struct enf_fw_addr addr;
    if (enf_fw_addr_parse_host(ip, &addr) < 0) {
        enf_fw_errf(errbuf, errlen, "fw: \"%s\" is not an address",
                    ip ? ip : "(null)");
        return -EINVAL;
    }
    uint64_t mask = enf_fw_group_mask(groups, ngroups, fw->groups, fw->ngroups);
    return enf_fw_member_change(fw, &addr, true, mask, errbuf, errlen);
}

int enf_fw_member_del(struct enf_fw *fw,
                      const char *ip,
                      char *errbuf,
                      size_t errlen)
{
    struct enf_fw_addr addr;
    if (enf_fw_addr_parse_host(ip, &addr) < 0) {
        enf_fw_errf(errbuf, errlen, "fw: \"%s\" is not an address",
                    ip ? ip : "(null)");
        return -EINVAL;
    }
    return enf_fw_member_change(fw, &addr, false, 0, errbuf, errlen);
}

/* ---- check --------------------------------------------------------------- */

/* The model's bit for a set name, -1 for the all-clients sets, or -2 for
 * a set we do not know. */
static int enf_fw_set_group(const struct enf_fw *fw,
                            const char *name,
                            uint8_t *ret_family)
{
    for (int g = -1; g < (int)fw->ngroups; g++) {
        static const uint8_t fams[] = { AF_INET, AF_INET6 };
        for (size_t f = 0; f < 2; f++) {
            char want[ENF_FW_SET_LEN];
            enf_fw_set_name(g, fams[f], fw->groups, want, sizeof(want));
            if (strcmp(want, name) == 0) {
                *ret_family = fams[f];
                return g;
            }
        }
    }
    return -2;
}

/* Whether kernel set s holds exactly the model's members for it. */
static bool enf_fw_set_in_sync(const struct enf_fw *fw,
                               const struct enf_fw_kset *s,
                               char *why,
                               size_t whylen)
{
    uint8_t family = 0;
    int g = enf_fw_set_group(fw, s->name, &family);
    if (g == -2) {
        enf_fw_errf(why, whylen, "set %s is not ours", s->name);
        return false;
    }
    if (s->odd > 0) {
        enf_fw_errf(why, whylen, "set %s: %zu elements we did not put there",
                    s->name, s->odd);
        return false;
    }
    size_t want = 0;
    for (size_t i = 0; i < fw->members.n; i++) {
        const struct enf_fw_mem *m = &fw->members.v[i];
        if (m->addr.family == family &&
            (g < 0 || (m->mask & (UINT64_C(1) << g)))) {
            want++;
        }
    }
    for (size_t i = 0; i < s->nelems; i++) {
        long m = enf_fw_memvec_find(&fw->members, &s->elems[i]);
        if (m < 0 ||
            (g >= 0 && !(fw->members.v[m].mask & (UINT64_C(1) << g)))) {
            char a[64];
            enf_fw_addr_format(&s->elems[i], a, sizeof(a));
            enf_fw_errf(why, whylen, "set %s: unexpected element %s", s->name,
                        a);
            return false;
        }
    }
    /* Set elements are unique, so equal counts mean equal sets. */
    if (s->nelems != want) {
        enf_fw_errf(why, whylen, "set %s: %zu elements, want %zu", s->name,
                    s->nelems, want);
        return false;
    }
    return true;
}

static bool enf_fw_kstate_in_sync(const struct enf_fw *fw,
                                  const struct enf_fw_kstate *ks,
                                  char *why,
                                  size_t whylen)
{
    if (!ks->exists) {
        enf_fw_errf(why, whylen, "table inet %s is missing", fw->table);
        return false;
    }
    if (fw->skeleton == NULL || ks->skeleton == NULL ||
        strcmp(fw->skeleton, ks->skeleton) != 0) {
        enf_fw_errf(why, whylen,
                    "table inet %s: chains, rules or sets differ from the "
                    "last apply",
                    fw->table);
        return false;
    }
    for (size_t i = 0; i < ks->nsets; i++) {
        if (!enf_fw_set_in_sync(fw, &ks->sets[i], why, whylen)) {
            return false;
        }
    }
    return true;
}

int enf_fw_check(struct enf_fw *fw, bool *ret_in_sync, char *why, size_t whylen)
{
    enf_fw_errf(why, whylen, "%s", "");
    if (!fw->applied) {
        enf_fw_errf(why, whylen, "nothing applied yet");
        *ret_in_sync = false;
        return 0;
    }
    struct enf_fw_kstate ks;
    memset(&ks, 0, sizeof(ks));
    int err = fw->ops->read(fw->state, true, &ks, why, whylen);
    if (err < 0) {
        fw->stats.errors++;
        enf_fw_kstate_free(&ks);
        return err;
    }
    fw->stats.checks++;
    bool ok = enf_fw_kstate_in_sync(fw, &ks, why, whylen);
    if (ok && fw->broken) {
        enf_fw_errf(why, whylen,
                    "an element update failed since the last "
                    "apply");
        ok = false;
    }
    enf_fw_kstate_free(&ks);
    if (!ok) {
        fw->stats.drifts++;
        fw->drifted = true;
    }
    *ret_in_sync = ok;
    return 0;
}

int enf_fw_compiled(struct enf_fw *fw, char **ret_text)
{
    return fw->ops->text(fw->state, ret_text);
}

int enf_fw_remove(struct enf_fw *fw, char *errbuf, size_t errlen)
{
    int err = fw->ops->remove(fw->state, errbuf, errlen);
    if (err < 0) {
        fw->stats.errors++;
        return err;
    }
    fw->applied = false;
    enf_fw_memvec_free(&fw->members);
    ovha_free(fw->skeleton);
    fw->skeleton = NULL;
    return 0;
}

/* ---- kernel state helpers (for the backends) ----------------------------- */

void enf_fw_kstate_free(struct enf_fw_kstate *ks)
{
    for (size_t i = 0; ks->sets != NULL && i < ks->nsets; i++) {
        ovha_free(ks->sets[i].elems);
    }
    ovha_free(ks->sets);
    ovha_free(ks->skeleton);
    memset(ks, 0, sizeof(*ks));
}

struct enf_fw_kset *enf_fw_kstate_add_set(struct enf_fw_kstate *ks,
                                          const char *name)
{
    if (ks->nsets == ks->cap) {
        size_t cap = ks->cap ? ks->cap * 2 : 16;
        struct enf_fw_kset *v = ovha_realloc(ks->sets, cap * sizeof(*v));
        if (v == NULL) {
            return NULL;
        }
        ks->sets = v;
        ks->cap = cap;
    }
    struct enf_fw_kset *s = &ks->sets[ks->nsets++];
    memset(s, 0, sizeof(*s));
    ovha_strlcpy(s->name, name, sizeof(s->name));
    return s;
}

int enf_fw_kset_push(struct enf_fw_kset *s, const struct enf_fw_addr *a)
{
    if (s->nelems == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        struct enf_fw_addr *v = ovha_realloc(s->elems, cap * sizeof(*v));
        if (v == NULL) {
            return -ENOMEM;
        }
        s->elems = v;
        s->cap = cap;
    }
    s->elems[s->nelems++] = *a;
    return 0;
}
