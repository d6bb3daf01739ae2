/* enforce/fw_fake: an in-memory "kernel" holding one table, with the
 * semantics that matter to fw.c: a replace is all or nothing, an element
 * transaction is all or nothing and fails with -ENOENT on a missing set
 * or on deleting an element that is not there (adding one that is there
 * is fine, as with `nft add element`). It records what it was asked and
 * can be told to fail, and test hooks alter it by hand.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "base/base.h"
#include "enforce/fw_int.h"

struct enf_ffake {
    char table[ENF_FW_TABLE_LEN];
    struct enf_fw_kstate k; /* exists, skeleton (the table text), sets */
    char *last_script;
    unsigned fail_count;
    int fail_err;
    uint64_t replaces;
    uint64_t element_txns;
    uint64_t element_ops;
    uint64_t generation;
};

static int enf_ffake_open(const char *table,
                          void **ret_state,
                          char *errbuf,
                          size_t errlen)
{
    struct enf_ffake *f = ovha_calloc(1, sizeof(*f));
    if (f == NULL) {
        enf_fw_errf(errbuf, errlen, "fw: out of memory");
        return -ENOMEM;
    }
    ovha_strlcpy(f->table, table, sizeof(f->table));
    *ret_state = f;
    return 0;
}

static void enf_ffake_close(void *state)
{
    struct enf_ffake *f = state;
    if (f == NULL) {
        return;
    }
    enf_fw_kstate_free(&f->k);
    ovha_free(f->last_script);
    ovha_free(f);
}

static int enf_ffake_injected(struct enf_ffake *f, char *errbuf, size_t errlen)
{
    if (f->fail_count == 0) {
        return 0;
    }
    f->fail_count--;
    enf_fw_errf(errbuf, errlen, "fake: injected failure");
    return f->fail_err;
}

static struct enf_fw_kset *enf_ffake_set(struct enf_ffake *f, const char *name)
{
    for (size_t i = 0; f->k.exists && i < f->k.nsets; i++) {
        if (strcmp(f->k.sets[i].name, name) == 0) {
            return &f->k.sets[i];
        }
    }
    return NULL;
}

static long enf_ffake_find(const struct enf_fw_kset *s,
                           const struct enf_fw_addr *a)
{
    for (size_t i = 0; i < s->nelems; i++) {
        if (enf_fw_addr_cmp(&s->elems[i], a) == 0) {
            return (long)i;
        }
    }
    return -1;
}

/* Copies src (sets with or without their elements) into dst. */
static int enf_ffake_copy(const struct enf_fw_kstate *src,
                          bool with_elements,
                          struct enf_fw_kstate *dst)
{
    dst->exists = src->exists;
    if (!src->exists) {
        return 0;
    }
    dst->skeleton = ovha_strdup(src->skeleton ? src->skeleton : "");
    if (dst->skeleton == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < src->nsets; i++) {
        struct enf_fw_kset *s = enf_fw_kstate_add_set(dst, src->sets[i].name);
        if (s == NULL) {
            return -ENOMEM;
        }
        s->odd = src->sets[i].odd;
        for (size_t j = 0; with_elements && j < src->sets[i].nelems; j++) {
            if (enf_fw_kset_push(s, &src->sets[i].elems[j]) < 0) {
                return -ENOMEM;
            }
        }
    }
    return 0;
}

static int enf_ffake_replace(void *state,
                             const struct enf_fw_plan *plan,
                             char *errbuf,
                             size_t errlen)
{
    struct enf_ffake *f = state;
    f->replaces++;
    int err = enf_ffake_injected(f, errbuf, errlen);
    if (err < 0) {
        return err;
    }
    struct enf_fw_kstate k;
    memset(&k, 0, sizeof(k));
    k.exists = true;
    k.skeleton = ovha_strdup(plan->table_text);
    char *script = ovha_strdup(plan->script);
    err = k.skeleton != NULL && script != NULL ? 0 : -ENOMEM;
    for (size_t i = 0; err == 0 && i < plan->nsets; i++) {
        struct enf_fw_kset *s = enf_fw_kstate_add_set(&k, plan->sets[i].name);
        err = s != NULL ? 0 : -ENOMEM;
        for (size_t j = 0; err == 0 && j < plan->sets[i].nelems; j++) {
            err = enf_fw_kset_push(s, &plan->sets[i].elems[j]);
        }
    }
    if (err < 0) {
        enf_fw_kstate_free(&k);
        ovha_free(script);
        enf_fw_errf(errbuf, errlen, "fake: out of memory");
        return err;
    }
    enf_fw_kstate_free(&f->k);
    f->k = k;
    ovha_free(f->last_script);
    f->last_script = script;
    f->generation++;
    return 0;
}

/* Checks a transaction as the kernel would before committing any of it
 * (an element added and deleted in one transaction is not modelled). */
static int enf_ffake_validate(struct enf_ffake *f,
                              const struct enf_fw_elem_op *ops,
                              size_t n,
                              char *errbuf,
                              size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        struct enf_fw_kset *s = enf_ffake_set(f, ops[i].set);
        if (s == NULL) {
            enf_fw_errf(errbuf, errlen, "fake: no set %s", ops[i].set);
            return -ENOENT;
        }
        if (!ops[i].add && enf_ffake_find(s, &ops[i].addr) < 0) {
            enf_fw_errf(errbuf, errlen, "fake: set %s: no such element",
                        ops[i].set);
            return -ENOENT;
        }
    }
    return 0;
}

static int enf_ffake_elements(void *state,
                              const struct enf_fw_elem_op *ops,
                              size_t n,
                              char *errbuf,
                              size_t errlen)
{
    struct enf_ffake *f = state;
    f->element_txns++;
    f->element_ops += n;
    int err = enf_ffake_injected(f, errbuf, errlen);
    err = err < 0 ? err : enf_ffake_validate(f, ops, n, errbuf, errlen);
    for (size_t i = 0; err == 0 && i < n; i++) {
        struct enf_fw_kset *s = enf_ffake_set(f, ops[i].set);
        long at = enf_ffake_find(s, &ops[i].addr);
        if (ops[i].add && at < 0) {
            err = enf_fw_kset_push(s, &ops[i].addr);
        } else if (!ops[i].add) {
            s->elems[at] = s->elems[s->nelems - 1];
            s->nelems--;
        }
    }
    return err;
}

static int enf_ffake_read(void *state,
                          bool with_elements,
                          struct enf_fw_kstate *ret,
                          char *errbuf,
                          size_t errlen)
{
    struct enf_ffake *f = state;
    int err = enf_ffake_copy(&f->k, with_elements, ret);
    if (err < 0) {
        enf_fw_errf(errbuf, errlen, "fake: out of memory");
    }
    return err;
}

static int enf_ffake_text(void *state, char **ret_text)
{
    struct enf_ffake *f = state;
    if (!f->k.exists) {
        return -ENOENT;
    }
    struct ovha_buf b;
    ovha_buf_init(&b);
    int err = ovha_buf_appends(&b, f->k.skeleton);
    for (size_t i = 0; err == 0 && i < f->k.nsets; i++) {
        const struct enf_fw_kset *s = &f->k.sets[i];
        err = ovha_buf_printf(&b, "# set %s:", s->name);
        for (size_t j = 0; err == 0 && j < s->nelems; j++) {
            char a[64];
            enf_fw_addr_format(&s->elems[j], a, sizeof(a));
            err = ovha_buf_printf(&b, " %s", a);
        }
        err = err < 0 ? err : ovha_buf_appends(&b, "\n");
    }
    if (err < 0) {
        ovha_buf_free(&b);
        return err;
    }
    *ret_text = b.data;
    return 0;
}

static int enf_ffake_remove(void *state, char *errbuf, size_t errlen)
{
    struct enf_ffake *f = state;
    int err = enf_ffake_injected(f, errbuf, errlen);
    if (err < 0) {
        return err;
    }
    enf_fw_kstate_free(&f->k);
    return 0;
}

const struct enf_fw_ops enf_fw_fake_ops = {
    .name = "fake",
    .open = enf_ffake_open,
    .close = enf_ffake_close,
    .replace = enf_ffake_replace,
    .elements = enf_ffake_elements,
    .read = enf_ffake_read,
    .text = enf_ffake_text,
    .remove = enf_ffake_remove,
};

/* ---- test hooks ---------------------------------------------------------- */

int enf_fw_fake_delete_table(struct enf_fw *fw)
{
    struct enf_ffake *f = enf_fw_backend(fw, &enf_fw_fake_ops);
    if (f == NULL) {
        return -EINVAL;
    }
    enf_fw_kstate_free(&f->k);
    return 0;
}

int enf_fw_fake_add_rule(struct enf_fw *fw, const char *line)
{
    struct enf_ffake *f = enf_fw_backend(fw, &enf_fw_fake_ops);
    if (f == NULL) {
        return -EINVAL;
    }
    if (!f->k.exists) {
        return -ENOENT;
    }
    struct ovha_buf b;
    ovha_buf_init(&b);
    if (ovha_buf_printf(&b, "%s%s\n", f->k.skeleton, line) < 0) {
        ovha_buf_free(&b);
        return -ENOMEM;
    }
    ovha_free(f->k.skeleton);
    f->k.skeleton = b.data;
    return 0;
}

int enf_fw_fake_flush_set(struct enf_fw *fw, const char *set)
{
    struct enf_ffake *f = enf_fw_backend(fw, &enf_fw_fake_ops);
    if (f == NULL) {
        return -EINVAL;
    }
    struct enf_fw_kset *s = enf_ffake_set(f, set);
    if (s == NULL) {
        return -ENOENT;
    }
    s->nelems = 0;
    return 0;
}

int enf_fw_fake_put_element(struct enf_fw *fw, const char *set, const char *ip)
{
    struct enf_ffake *f = enf_fw_backend(fw, &enf_fw_fake_ops);
    struct enf_fw_addr a;
    if (f == NULL || enf_fw_addr_parse_host(ip, &a) < 0) {
        return -EINVAL;
    }
    struct enf_fw_kset *s = enf_ffake_set(f, set);
    if (s == NULL) {
        return -ENOENT;
    }
    return enf_ffake_find(s, &a) >= 0 ? 0 : enf_fw_kset_push(s, &a);
}

int enf_fw_fake_fail(struct enf_fw *fw, unsigned count, int err)
{
    struct enf_ffake *f = enf_fw_backend(fw, &enf_fw_fake_ops);
    if (f == NULL) {
        return -EINVAL;
    }
    f->fail_count = count;
    f->fail_err = err;
    return 0;
}

int enf_fw_fake_get_counts(struct enf_fw *fw, struct enf_fw_fake_counts *ret)
{
    struct enf_ffake *f = enf_fw_backend(fw, &enf_fw_fake_ops);
    if (f == NULL) {
        return -EINVAL;
    }
    ret->replaces = f->replaces;
    ret->element_txns = f->element_txns;
    ret->element_ops = f->element_ops;
    ret->generation = f->generation;
    ret->last_script = f->last_script;
    return 0;
}

int enf_fw_fake_set_size(struct enf_fw *fw, const char *set, size_t *ret_n)
{
    struct enf_ffake *f = enf_fw_backend(fw, &enf_fw_fake_ops);
    if (f == NULL) {
        return -EINVAL;
    }
    struct enf_fw_kset *s = enf_ffake_set(f, set);
    if (s == NULL) {
        return -ENOENT;
    }
    *ret_n = s->nelems;
    return 0;
}

bool enf_fw_fake_has(struct enf_fw *fw, const char *set, const char *ip)
{
    struct enf_ffake *f = enf_fw_backend(fw, &enf_fw_fake_ops);
    struct enf_fw_addr a;
    if (f == NULL || enf_fw_addr_parse_host(ip, &a) < 0) {
        return false;
    }
    struct enf_fw_kset *s = enf_ffake_set(f, set);
    return s != NULL && enf_ffake_find(s, &a) >= 0;
}
