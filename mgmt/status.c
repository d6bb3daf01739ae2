/* Parser for the rows of a `status 3` reply (tab separated).
 *
 * Two passes: count the CLIENT_LIST and ROUTING_TABLE rows, allocate the
 * arrays once, then fill them. Fields are cut with memchr and copied into
 * the fixed-size members; a field that does not fit is a protocol error
 * rather than a silent truncation (a truncated CN would name someone else).
 */
#include <errno.h>
#include <string.h>

#include "mgmt/mgmt.h"

#define MGMT_STATUS_MAX_FIELDS 16

struct mgmt_status_row {
    const char *f[MGMT_STATUS_MAX_FIELDS];
    size_t n[MGMT_STATUS_MAX_FIELDS];
    size_t nf;
};

/* Splits one line on tabs; fields past the maximum are ignored. */
static void mgmt_status_split(const char *line, struct mgmt_status_row *r)
{
    const char *s = line;
    size_t len = strlen(line);
    const char *end = line + len;
    r->nf = 0;
    while (r->nf < MGMT_STATUS_MAX_FIELDS) {
        const char *t = memchr(s, '\t', (size_t)(end - s));
        const char *fe = t != NULL ? t : end;
        r->f[r->nf] = s;
        r->n[r->nf] = (size_t)(fe - s);
        r->nf++;
        if (t == NULL) {
            break;
        }
        s = t + 1;
    }
}

static bool mgmt_status_is(const struct mgmt_status_row *r, const char *kind)
{
    size_t kl = strlen(kind);
    return r->nf > 0 && r->n[0] == kl && memcmp(r->f[0], kind, kl) == 0;
}

static int mgmt_status_copy(char *dst, size_t size, const char *s, size_t n)
{
    if (n >= size) {
        return -EPROTO;
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

static int mgmt_status_u64(const char *s, size_t n, uint64_t *ret)
{
    uint64_t v = 0;
    if (n == 0 || n > 20) {
        return -EPROTO;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9 || v > (UINT64_MAX - d) / 10) {
            return -EPROTO;
        }
        v = v * 10 + d;
    }
    *ret = v;
    return 0;
}

/* CLIENT_LIST CN Real Virtual Virtual6 BytesRecv BytesSent Since Since_t
 * Username CID [PeerID [Cipher]] */
static int mgmt_status_client(const struct mgmt_status_row *r,
                              struct mgmt_status_client *c)
{
    uint64_t v;
    int rv = 0;
    if (r->nf < 11) {
        return -EPROTO;
    }
    rv |= mgmt_status_copy(c->cn, sizeof(c->cn), r->f[1], r->n[1]);
    rv |=
        mgmt_status_copy(c->real_addr, sizeof(c->real_addr), r->f[2], r->n[2]);
    rv |= mgmt_status_copy(c->vaddr, sizeof(c->vaddr), r->f[3], r->n[3]);
    rv |= mgmt_status_copy(c->vaddr6, sizeof(c->vaddr6), r->f[4], r->n[4]);
    rv |= mgmt_status_u64(r->f[5], r->n[5], &c->bytes_in);
    rv |= mgmt_status_u64(r->f[6], r->n[6], &c->bytes_out);
    rv |= mgmt_status_u64(r->f[8], r->n[8], &c->connected_since);
    rv |= mgmt_status_copy(c->username, sizeof(c->username), r->f[9], r->n[9]);
    rv |= mgmt_status_u64(r->f[10], r->n[10], &c->cid);
    if (rv != 0) {
        return -EPROTO;
    }
    c->peer_id = -1;
    if (r->nf > 11 && r->n[11] > 0 &&
        !(r->n[11] == 5 && memcmp(r->f[11], "UNDEF", 5) == 0)) {
        if (mgmt_status_u64(r->f[11], r->n[11], &v) != 0 || v > INT64_MAX) {
            return -EPROTO;
        }
        c->peer_id = (int64_t)v;
    }
    c->cipher[0] = '\0';
    if (r->nf > 12 && mgmt_status_copy(c->cipher, sizeof(c->cipher), r->f[12],
                                       r->n[12]) != 0) {
        return -EPROTO;
    }
    return 0;
}

/* ROUTING_TABLE Virtual CN Real LastRef LastRef_t */
static int mgmt_status_route(const struct mgmt_status_row *r,
                             struct mgmt_status_route *rt)
{
    int rv = 0;
    if (r->nf < 6) {
        return -EPROTO;
    }
    rv |= mgmt_status_copy(rt->vaddr, sizeof(rt->vaddr), r->f[1], r->n[1]);
    rv |= mgmt_status_copy(rt->cn, sizeof(rt->cn), r->f[2], r->n[2]);
    rv |= mgmt_status_copy(rt->real_addr, sizeof(rt->real_addr), r->f[3],
                           r->n[3]);
    rv |= mgmt_status_u64(r->f[5], r->n[5], &rt->last_ref);
    return rv != 0 ? -EPROTO : 0;
}

int mgmt_status_parse(const char *const *lines,
                      size_t nlines,
                      struct mgmt_status *ret)
{
    struct mgmt_status s = { 0 };
    struct mgmt_status_row r;
    size_t nc = 0, nr = 0;
    int rv = 0;

    for (size_t i = 0; i < nlines; i++) {
        mgmt_status_split(lines[i], &r);
        nc += mgmt_status_is(&r, "CLIENT_LIST");
        nr += mgmt_status_is(&r, "ROUTING_TABLE");
    }
    if (nc > 0) {
        s.clients = ovha_calloc(nc, sizeof(*s.clients));
        if (s.clients == NULL) {
            rv = -ENOMEM;
            goto err;
        }
    }
    if (nr > 0) {
        s.routes = ovha_calloc(nr, sizeof(*s.routes));
        if (s.routes == NULL) {
            rv = -ENOMEM;
            goto err;
        }
    }
    for (size_t i = 0; i < nlines; i++) {
        mgmt_status_split(lines[i], &r);
        if (mgmt_status_is(&r, "CLIENT_LIST")) {
            rv = mgmt_status_client(&r, &s.clients[s.nclients]);
            if (rv != 0) {
                goto err;
            }
            s.nclients++;
        } else if (mgmt_status_is(&r, "ROUTING_TABLE")) {
            rv = mgmt_status_route(&r, &s.routes[s.nroutes]);
            if (rv != 0) {
                goto err;
            }
            s.nroutes++;
        }
    }
    *ret = s;
    return 0;
err:
    mgmt_status_free(&s);
    return rv;
}

void mgmt_status_free(struct mgmt_status *s)
{
    if (s == NULL) {
        return;
    }
    ovha_free(s->clients);
    ovha_free(s->routes);
    s->clients = NULL;
    s->routes = NULL;
    s->nclients = 0;
    s->nroutes = 0;
}
