/* Canonical text form of parser events, shared by tests and fuzzers, so
 * "byte-at-a-time equals whole" is a plain string comparison. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mgmt/tests/mgmt_test.h"

void mgmt_test_rec_init(struct mgmt_test_rec *r)
{
    memset(r, 0, sizeof(*r));
    ovha_buf_init(&r->dump);
}

void mgmt_test_rec_free(struct mgmt_test_rec *r)
{
    ovha_buf_free(&r->dump);
}

static void mgmt_test_str(struct ovha_buf *out, const char *s)
{
    ovha_buf_appends(out, s != NULL ? s : "(null)");
    ovha_buf_append(out, "|", 1);
}

void mgmt_test_dump(const struct mgmt_event *ev, struct ovha_buf *out)
{
    ovha_buf_printf(
        out, "%d|%llu|%u|%llu|%llu|%d|%d|", (int)ev->type,
        (unsigned long long)ev->cid, ev->kid, (unsigned long long)ev->bytes_in,
        (unsigned long long)ev->bytes_out, ev->primary ? 1 : 0, ev->error);
    mgmt_test_str(out, ev->tag);
    mgmt_test_str(out, ev->text);
    mgmt_test_str(out, ev->addr);
    ovha_buf_printf(out, "env%zu|", ev->env.n);
    for (size_t i = 0; i < ev->env.n; i++) {
        mgmt_test_str(out, ev->env.vars[i].key);
        mgmt_test_str(out, ev->env.vars[i].value);
    }
    ovha_buf_printf(out, "lines%zu|", ev->nlines);
    for (size_t i = 0; i < ev->nlines; i++) {
        mgmt_test_str(out, ev->lines[i]);
    }
    ovha_buf_append(out, "\n", 1);
}

void mgmt_test_rec_cb(const struct mgmt_event *ev, void *data)
{
    struct mgmt_test_rec *r = data;
    mgmt_test_dump(ev, &r->dump);
    if ((unsigned)ev->type < MGMT_TEST_NTYPES) {
        r->count[ev->type]++;
    }
    r->nevents++;
    if (r->keep_status && ev->type == MGMT_EV_REPLY_BLOCK) {
        struct mgmt_status st;
        if (mgmt_status_parse(ev->lines, ev->nlines, &st) == 0) {
            ovha_buf_printf(&r->dump, "status %zu %zu\n", st.nclients,
                            st.nroutes);
            mgmt_status_free(&st);
        }
    }
}

int mgmt_test_parse(const char *data,
                    size_t n,
                    size_t chunk,
                    const struct mgmt_limits *lim,
                    struct mgmt_test_rec *r)
{
    struct mgmt_parser *p;
    int rv = mgmt_parser_new(lim, mgmt_test_rec_cb, r, &p);
    if (rv != 0) {
        return rv;
    }
    if (chunk == 0) {
        mgmt_parser_feed(p, data, n);
    } else {
        for (size_t off = 0; off < n; off += chunk) {
            size_t k = n - off < chunk ? n - off : chunk;
            mgmt_parser_feed(p, data + off, k);
        }
    }
    mgmt_parser_free(p);
    return 0;
}

int mgmt_test_load(const char *path, char **ret, size_t *ret_len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return -errno;
    }
    struct ovha_buf b;
    ovha_buf_init(&b);
    char tmp[4096];
    size_t k;
    int rv = 0;
    while ((k = fread(tmp, 1, sizeof(tmp), f)) > 0) {
        rv = ovha_buf_append(&b, tmp, k);
        if (rv != 0) {
            break;
        }
    }
    fclose(f);
    if (rv != 0) {
        ovha_buf_free(&b);
        return rv;
    }
    if (b.data == NULL) {
        rv = ovha_buf_reserve(&b, 1);
        if (rv != 0) {
            return rv;
        }
        b.data[0] = '\0';
    }
    *ret = b.data;
    *ret_len = b.len;
    return 0;
}

bool mgmt_test_is_transcript(const char *name)
{
    size_t n = strlen(name);
    if (n < 4 || strcmp(name + n - 4, ".txt") != 0) {
        return false;
    }
    return !(n >= 13 && strcmp(name + n - 13, ".commands.txt") == 0);
}
