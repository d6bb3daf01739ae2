/* fsm: command handlers. Each one decides, writes, appends its audit
 * records and fills the result; fsm.c wraps it in a transaction and rolls it
 * back when the result is a refusal. docs/fsm.md describes every command. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "base/base.h"
#include "fsm/fsm_int.h"

/* Usage deltas above this in one entry are refused as invalid: totals stay
 * far below 2^63 and the saturating sum in SQL never overflows. */
#define FSM_MAX_DELTA (1ULL << 48)
#define FSM_MAX_TTL   (1ULL << 40)

static int fsm_refuse(struct proto_result *r,
                      enum proto_reason reason,
                      const char *fmt,
                      ...) __attribute__((format(printf, 3, 4)));

/* Marks the result refused; returns 0 so handlers can `return fsm_refuse`. */
static int fsm_refuse(struct proto_result *r,
                      enum proto_reason reason,
                      const char *fmt,
                      ...)
{
    va_list ap;
    r->status = PROTO_STATUS_REFUSED;
    r->reason = reason;
    va_start(ap, fmt);
    vsnprintf(r->detail, sizeof(r->detail), fmt, ap);
    va_end(ap);
    return 0;
}

static void fsm_ref_add(struct proto_result *r,
                        enum proto_ref_kind kind,
                        uint64_t session_id,
                        const char *cn,
                        const char *gateway)
{
    r->refs_total++;
    if (r->nrefs >= PROTO_RESULT_MAX_REFS) {
        return;
    }
    struct proto_session_ref *ref = &r->refs[r->nrefs++];
    ref->kind = kind;
    ref->session_id = session_id;
    ovha_strlcpy(ref->cn, cn, sizeof(ref->cn));
    ovha_strlcpy(ref->gateway, gateway, sizeof(ref->gateway));
}

/* ---- gateways ------------------------------------------------------------ */

/* 1 with *ret_state when the gateway exists, 0 when not, <0 on error. */
static int fsm_gw_get(struct fsm *f,
                      const char *id,
                      int *ret_state,
                      uint64_t *ret_usage_seq)
{
    sqlite3_stmt *s = fsm_st(f, FSM_ST_GW_GET);
    fsm_bind_text(s, 1, id);
    int rv = fsm_step(s);
    if (rv == 1) {
        *ret_state = sqlite3_column_int(s, 0);
        if (ret_usage_seq != NULL) {
            *ret_usage_seq = fsm_col_u64(s, 1);
        }
        sqlite3_reset(s);
    }
    return rv;
}

static int fsm_gw_insert(struct fsm *f,
                         const char *id,
                         const char *addr,
                         enum proto_gw_state state)
{
    sqlite3_stmt *s = fsm_st(f, FSM_ST_GW_INSERT);
    fsm_bind_text(s, 1, id);
    fsm_bind_text(s, 2, addr);
    sqlite3_bind_int(s, 3, (int)state);
    fsm_bind_u64(s, 4, f->meta.clock);
    return fsm_exec_st(s);
}

static int fsm_cmd_heartbeat(struct fsm *f,
                             const struct proto_cmd *c,
                             struct proto_result *r)
{
    int state = 0;
    int rv = fsm_gw_get(f, c->gateway, &state, NULL);
    if (rv < 0) {
        return rv;
    }
    if (rv == 0) {
        rv = fsm_gw_insert(f, c->gateway, c->u.gateway_heartbeat.addr,
                           PROTO_GW_ACTIVE);
        if (rv == 0) {
            rv = fsm_audit(f, "gateway_join", c->gateway, "state=active", r);
        }
        return rv;
    }
    /* A gateway marked down that heartbeats again is back; its orphaned
     * sessions stay orphaned (their clients have moved or will). */
    int next = state == PROTO_GW_DOWN ? PROTO_GW_ACTIVE : state;
    sqlite3_stmt *s = fsm_st(f, FSM_ST_GW_HEARTBEAT);
    fsm_bind_text(s, 1, c->gateway);
    fsm_bind_text(s, 2, c->u.gateway_heartbeat.addr);
    fsm_bind_u64(s, 3, f->meta.clock);
    sqlite3_bind_int(s, 4, next);
    rv = fsm_exec_st(s);
    if (rv == 0 && next != state) {
        rv = fsm_audit(f, "gateway_state", c->gateway,
                       "down->active (heartbeat)", r);
    }
    return rv;
}

/* Orphans every live session of a gateway going down: their leases start
 * expiring now and stay with their CNs until then. */
static int fsm_gw_orphan(struct fsm *f, const char *gw, struct proto_result *r)
{
    sqlite3_stmt *s = fsm_st(f, FSM_ST_SESS_LIVE_OF_GW);
    fsm_bind_text(s, 1, gw);
    int rv;
    while ((rv = fsm_step(s)) == 1) {
        char cn[PROTO_CN_MAX];
        fsm_col_text(s, 1, cn, sizeof(cn));
        fsm_ref_add(r, PROTO_REF_ORPHANED, fsm_col_u64(s, 0), cn, gw);
        r->count++;
    }
    if (rv < 0) {
        return rv;
    }
    s = fsm_st(f, FSM_ST_LEASE_ORPHAN_GW);
    fsm_bind_text(s, 1, gw);
    fsm_bind_u64(s, 2, f->meta.clock);
    rv = fsm_exec_st(s);
    if (rv != 0) {
        return rv;
    }
    s = fsm_st(f, FSM_ST_SESS_ORPHAN_GW);
    fsm_bind_text(s, 1, gw);
    return fsm_exec_st(s);
}

static int fsm_cmd_set_state(struct fsm *f,
                             const struct proto_cmd *c,
                             struct proto_result *r)
{
    const struct proto_gateway_set_state *b = &c->u.gateway_set_state;
    int state = 0;
    int rv = fsm_gw_get(f, b->gateway_id, &state, NULL);
    if (rv < 0) {
        return rv;
    }
    if (b->state == PROTO_GW_DRAINING && !b->force) {
        /* Decided here, in log order: two drains racing cannot both pass. */
        sqlite3_stmt *s = fsm_st(f, FSM_ST_GW_ACTIVE_OTHERS);
        fsm_bind_text(s, 1, b->gateway_id);
        int found = fsm_step(s);
        if (found < 0) {
            return found;
        }
        if (found == 1 && fsm_col_u64(s, 0) == 0) {
            return fsm_refuse(r, PROTO_R_LAST_ACTIVE,
                              "no gateway other than %s is active",
                              b->gateway_id);
        }
    }
    if (rv == 0) {
        /* An operator may pre-provision a gateway in any state. */
        rv = fsm_gw_insert(f, b->gateway_id, "", b->state);
        state = (int)b->state;
    } else {
        sqlite3_stmt *s = fsm_st(f, FSM_ST_GW_SET_STATE);
        fsm_bind_text(s, 1, b->gateway_id);
        sqlite3_bind_int(s, 2, (int)b->state);
        rv = fsm_exec_st(s);
    }
    if (rv == 0 && b->state == PROTO_GW_DOWN) {
        rv = fsm_gw_orphan(f, b->gateway_id, r);
    }
    if (rv != 0) {
        return rv;
    }
    char detail[128];
    snprintf(detail, sizeof(detail), "%s->%s orphaned=%" PRIu64,
             proto_gw_state_name((enum proto_gw_state)state),
             proto_gw_state_name(b->state), r->count);
    return fsm_audit(f, "gateway_state", b->gateway_id, detail, r);
}

/* ---- pools and leases ---------------------------------------------------- */

struct fsm_pool {
    char name[PROTO_ID_MAX];
    struct fsm_ip base;
    unsigned prefix;
    uint64_t end;
    uint64_t next;
    uint64_t ttl;
};

/* 1 when found, 0 when not, <0 on error. */
static int fsm_pool_get(struct fsm *f, const char *name, struct fsm_pool *p)
{
    sqlite3_stmt *s = fsm_st(f, FSM_ST_POOL_GET);
    fsm_bind_text(s, 1, name);
    int rv = fsm_step(s);
    if (rv != 1) {
        return rv;
    }
    memset(p, 0, sizeof(*p));
    ovha_strlcpy(p->name, name, sizeof(p->name));
    p->base.family = sqlite3_column_int(s, 0);
    if (sqlite3_column_bytes(s, 1) == 16) {
        memcpy(p->base.a, sqlite3_column_blob(s, 1), 16);
    }
    p->prefix = (unsigned)sqlite3_column_int(s, 2);
    p->end = fsm_col_u64(s, 3);
    p->next = fsm_col_u64(s, 4);
    p->ttl = fsm_col_u64(s, 5);
    sqlite3_reset(s);
    return 1;
}

/* Attaches lease ip to session sid of cn (live: no expiry). */
static int fsm_lease_assign(struct fsm *f,
                            const char *ip,
                            const char *cn,
                            uint64_t sid)
{
    sqlite3_stmt *s = fsm_st(f, FSM_ST_LEASE_ASSIGN);
    fsm_bind_text(s, 1, ip);
    fsm_bind_text(s, 2, cn);
    fsm_bind_u64(s, 3, sid);
    return fsm_exec_st(s);
}

/* Detaches the leases of a session that ends: they start expiring. */
static int fsm_lease_release_session(struct fsm *f, uint64_t sid)
{
    sqlite3_stmt *s = fsm_st(f, FSM_ST_LEASE_RELEASE_SESSION);
    fsm_bind_u64(s, 1, sid);
    fsm_bind_u64(s, 2, f->meta.clock);
    return fsm_exec_st(s);
}

/* A session ends: its MACs go with it (a takeover or eviction moved the
 * ones the new session keeps before this). */
static int fsm_session_delete(struct fsm *f, uint64_t sid)
{
    sqlite3_stmt *s = fsm_st(f, FSM_ST_MAC_DELETE_SESSION);
    fsm_bind_u64(s, 1, sid);
    int rv = fsm_exec_st(s);
    if (rv != 0) {
        return rv;
    }
    s = fsm_st(f, FSM_ST_SESS_DELETE);
    fsm_bind_u64(s, 1, sid);
    return fsm_exec_st(s);
}

/* The new session of a reconnecting client keeps the MACs of the session
 * it replaces, now on the new gateway: the bridges point them there before
 * openvpn has learned them again. */
static int fsm_macs_inherit(struct fsm *f,
                            uint64_t donor,
                            uint64_t sid,
                            const char *gateway)
{
    sqlite3_stmt *s = fsm_st(f, FSM_ST_MAC_INHERIT);
    fsm_bind_u64(s, 1, donor);
    fsm_bind_u64(s, 2, sid);
    fsm_bind_text(s, 3, gateway);
    fsm_bind_u64(s, 4, f->meta.clock);
    return fsm_exec_st(s);
}

/* An orphaned session whose lease expired and is being reclaimed ends. */
static int fsm_session_expire(struct fsm *f,
                              uint64_t sid,
                              struct proto_result *r)
{
    char cn[PROTO_CN_MAX] = "";
    char gw[PROTO_ID_MAX] = "";
    sqlite3_stmt *s = fsm_st(f, FSM_ST_SESS_GET);
    fsm_bind_u64(s, 1, sid);
    int rv = fsm_step(s);
    if (rv < 0) {
        return rv;
    }
    if (rv == 1) {
        fsm_col_text(s, 0, cn, sizeof(cn));
        fsm_col_text(s, 1, gw, sizeof(gw));
        sqlite3_reset(s);
    }
    /* Its leases keep the expiry they got when it was orphaned. */
    s = fsm_st(f, FSM_ST_LEASE_DETACH_SESSION);
    fsm_bind_u64(s, 1, sid);
    rv = fsm_exec_st(s);
    if (rv == 0) {
        rv = fsm_session_delete(f, sid);
    }
    if (rv != 0) {
        return rv;
    }
    fsm_ref_add(r, PROTO_REF_EXPIRED, sid, cn, gw);
    char detail[128];
    snprintf(detail, sizeof(detail), "session=%" PRIu64 " gateway=%s", sid, gw);
    return fsm_audit(f, "session_expire", cn, detail, r);
}

/* Hands out an address of pool p to session sid of cn, into ip_out.
 * Order: the CN's own idle lease (reserved first, then lowest), a fresh
 * address at the pool's cursor, then the lease that expired first.
 * Returns 1 on success, 0 when the pool is exhausted, <0 on error. */
static int fsm_lease_alloc(struct fsm *f,
                           struct fsm_pool *p,
                           const char *cn,
                           uint64_t sid,
                           char *ip_out,
                           struct proto_result *r)
{
    sqlite3_stmt *s = fsm_st(f, FSM_ST_LEASE_FREE_OF_CN);
    fsm_bind_text(s, 1, cn);
    fsm_bind_text(s, 2, p->name);
    int rv = fsm_step(s);
    if (rv < 0) {
        return rv;
    }
    if (rv == 1) {
        fsm_col_text(s, 0, ip_out, PROTO_ADDR_MAX);
        sqlite3_reset(s);
        rv = fsm_lease_assign(f, ip_out, cn, sid);
        return rv == 0 ? 1 : rv;
    }

    /* Fresh addresses; reservations may sit ahead of the cursor. */
    while (p->next < p->end) {
        uint64_t off = p->next++;
        s = fsm_st(f, FSM_ST_LEASE_AT);
        fsm_bind_text(s, 1, p->name);
        fsm_bind_u64(s, 2, off);
        rv = fsm_step(s);
        if (rv < 0) {
            return rv;
        }
        if (rv == 1) {
            sqlite3_reset(s);
            continue;
        }
        struct fsm_ip ip;
        fsm_ip_add(&p->base, off, &ip);
        fsm_ip_format(&ip, ip_out, PROTO_ADDR_MAX);
        s = fsm_st(f, FSM_ST_LEASE_INSERT);
        fsm_bind_text(s, 1, ip_out);
        fsm_bind_text(s, 2, p->name);
        fsm_bind_u64(s, 3, off);
        fsm_bind_text(s, 4, cn);
        sqlite3_bind_int(s, 5, 0);
        fsm_bind_u64(s, 6, sid);
        sqlite3_bind_null(s, 7);
        rv = fsm_exec_st(s);
        if (rv == 0) {
            s = fsm_st(f, FSM_ST_POOL_SET_NEXT);
            fsm_bind_text(s, 1, p->name);
            fsm_bind_u64(s, 2, p->next);
            rv = fsm_exec_st(s);
        }
        return rv == 0 ? 1 : rv;
    }

    /* Reclaim: only a dynamic lease whose expiry has passed. */
    s = fsm_st(f, FSM_ST_LEASE_RECLAIM);
    fsm_bind_text(s, 1, p->name);
    fsm_bind_u64(s, 2, f->meta.clock);
    rv = fsm_step(s);
    if (rv <= 0) {
        return rv;
    }
    fsm_col_text(s, 0, ip_out, PROTO_ADDR_MAX);
    uint64_t old_sid = fsm_col_u64(s, 1);
    sqlite3_reset(s);
    if (old_sid != 0) {
        rv = fsm_session_expire(f, old_sid, r);
        if (rv != 0) {
            return rv;
        }
    }
    rv = fsm_lease_assign(f, ip_out, cn, sid);
    return rv == 0 ? 1 : rv;
}

/* Which pool contains ip: 1 with *p and *ret_off, 0 when none, <0. */
static int fsm_pool_of_ip(struct fsm *f,
                          const struct fsm_ip *ip,
                          struct fsm_pool *p,
                          uint64_t *ret_off)
{
    sqlite3_stmt *s = fsm_st(f, FSM_ST_POOL_ALL);
    int rv;
    while ((rv = fsm_step(s)) == 1) {
        struct fsm_ip base;
        memset(&base, 0, sizeof(base));
        base.family = sqlite3_column_int(s, 1);
        if (sqlite3_column_bytes(s, 2) == 16) {
            memcpy(base.a, sqlite3_column_blob(s, 2), 16);
        }
        unsigned pfx = (unsigned)sqlite3_column_int(s, 3);
        uint64_t end = fsm_col_u64(s, 4);
        uint64_t off = 0;
        if (fsm_ip_offset(&base, pfx, ip, &off) && off >= FSM_POOL_FIRST &&
            off < end) {
            char name[PROTO_ID_MAX];
            fsm_col_text(s, 0, name, sizeof(name));
            sqlite3_reset(s);
            *ret_off = off;
            return fsm_pool_get(f, name, p);
        }
    }
    return rv;
}

struct fsm_lease_row {
    char cn[PROTO_CN_MAX];
    int kind;
    uint64_t session;
    bool has_expiry;
    uint64_t expires;
};

static int fsm_lease_by_ip(struct fsm *f,
                           const char *ip,
                           struct fsm_lease_row *l)
{
    sqlite3_stmt *s = fsm_st(f, FSM_ST_LEASE_BY_IP);
    fsm_bind_text(s, 1, ip);
    int rv = fsm_step(s);
    if (rv != 1) {
        return rv;
    }
    fsm_col_text(s, 0, l->cn, sizeof(l->cn));
    l->kind = sqlite3_column_int(s, 1);
    l->session = fsm_col_u64(s, 2);
    l->has_expiry = sqlite3_column_type(s, 3) != SQLITE_NULL;
    l->expires = fsm_col_u64(s, 3);
    sqlite3_reset(s);
    return 1;
}

static int fsm_cmd_lease_reserve(struct fsm *f,
                                 const struct proto_cmd *c,
                                 struct proto_result *r)
{
    const struct proto_lease *b = &c->u.lease_reserve;
    struct fsm_ip ip;
    struct fsm_pool p;
    uint64_t off = 0;
    char text[PROTO_ADDR_MAX];
    struct fsm_lease_row l;

    if (fsm_ip_parse(b->ip, &ip) != 0) {
        return fsm_refuse(r, PROTO_R_INVALID, "not an IP address");
    }
    fsm_ip_format(&ip, text, sizeof(text));
    int rv = fsm_pool_of_ip(f, &ip, &p, &off);
    if (rv <= 0) {
        return rv < 0 ? rv
                      : fsm_refuse(r, PROTO_R_IP_NOT_IN_POOL,
                                   "%s is in no pool's range", text);
    }
    rv = fsm_lease_by_ip(f, text, &l);
    if (rv < 0) {
        return rv;
    }
    if (rv == 0) {
        sqlite3_stmt *s = fsm_st(f, FSM_ST_LEASE_INSERT);
        fsm_bind_text(s, 1, text);
        fsm_bind_text(s, 2, p.name);
        fsm_bind_u64(s, 3, off);
        fsm_bind_text(s, 4, b->cn);
        sqlite3_bind_int(s, 5, 1);
        fsm_bind_u64(s, 6, 0);
        sqlite3_bind_null(s, 7);
        rv = fsm_exec_st(s);
    } else if (strcmp(l.cn, b->cn) == 0) {
        /* Already the CN's: pin it, keeping any live session on it. */
        sqlite3_stmt *s = fsm_st(f, FSM_ST_LEASE_PIN);
        fsm_bind_text(s, 1, text);
        rv = fsm_exec_st(s);
    } else {
        bool expired =
            l.kind == 0 && l.has_expiry && l.expires <= f->meta.clock;
        if (!expired) {
            return fsm_refuse(r, PROTO_R_IP_TAKEN, "%s is leased to %s", text,
                              l.cn);
        }
        if (l.session != 0) {
            rv = fsm_session_expire(f, l.session, r);
            if (rv != 0) {
                return rv;
            }
        }
        sqlite3_stmt *s = fsm_st(f, FSM_ST_LEASE_RESERVE);
        fsm_bind_text(s, 1, text);
        fsm_bind_text(s, 2, b->cn);
        rv = fsm_exec_st(s);
    }
    if (rv != 0) {
        return rv;
    }
    char detail[192];
    snprintf(detail, sizeof(detail), "ip=%s pool=%s", text, p.name);
    return fsm_audit(f, "lease_reserve", b->cn, detail, r);
}

static int fsm_cmd_lease_release(struct fsm *f,
                                 const struct proto_cmd *c,
                                 struct proto_result *r)
{
    const struct proto_lease *b = &c->u.lease_release;
    struct fsm_ip ip;
    char text[PROTO_ADDR_MAX];
    struct fsm_lease_row l;

    if (fsm_ip_parse(b->ip, &ip) != 0) {
        return fsm_refuse(r, PROTO_R_INVALID, "not an IP address");
    }
    fsm_ip_format(&ip, text, sizeof(text));
    int rv = fsm_lease_by_ip(f, text, &l);
    if (rv < 0) {
        return rv;
    }
    if (rv == 0 || strcmp(l.cn, b->cn) != 0) {
        return fsm_refuse(r, PROTO_R_NOT_FOUND, "%s is not leased to %s", text,
                          b->cn);
    }
    if (l.session != 0) {
        return fsm_refuse(r, PROTO_R_IN_USE, "%s is used by session %" PRIu64,
                          text, l.session);
    }
    sqlite3_stmt *s = fsm_st(f, FSM_ST_LEASE_DELETE);
    fsm_bind_text(s, 1, text);
    rv = fsm_exec_st(s);
    if (rv != 0) {
        return rv;
    }
    char detail[128];
    snprintf(detail, sizeof(detail), "ip=%s", text);
    return fsm_audit(f, "lease_release", b->cn, detail, r);
}

static int fsm_cmd_pool_put(struct fsm *f,
                            const struct proto_cmd *c,
                            struct proto_result *r)
{
    const struct proto_pool_put *b = &c->u.pool_put;
    struct fsm_ip base;
    unsigned pfx = 0;
    uint64_t end = 0;
    uint8_t lo[16], hi[16];
    struct fsm_pool old;

    if (fsm_cidr_parse(b->cidr, &base, &pfx) != 0 ||
        fsm_pool_bounds(base.family, pfx, &end) != 0) {
        return fsm_refuse(r, PROTO_R_INVALID,
                          "not a CIDR with host bits clear and >= 1 address");
    }
    if (b->lease_ttl_ms > FSM_MAX_TTL) {
        return fsm_refuse(r, PROTO_R_INVALID, "lease ttl too large");
    }
    uint64_t ttl =
        b->lease_ttl_ms != 0 ? b->lease_ttl_ms : FSM_DEFAULT_LEASE_TTL_MS;
    char cidr[PROTO_ADDR_MAX];
    char ipt[48]; /* INET6_ADDRSTRLEN */
    fsm_ip_format(&base, ipt, sizeof(ipt));
    snprintf(cidr, sizeof(cidr), "%s/%u", ipt, pfx);
    fsm_cidr_range(&base, pfx, lo, hi);

    sqlite3_stmt *s = fsm_st(f, FSM_ST_POOL_OVERLAP);
    sqlite3_bind_int(s, 1, base.family);
    sqlite3_bind_blob(s, 2, lo, 16, SQLITE_STATIC);
    sqlite3_bind_blob(s, 3, hi, 16, SQLITE_STATIC);
    fsm_bind_text(s, 4, b->name);
    int rv = fsm_step(s);
    if (rv < 0) {
        return rv;
    }
    if (rv == 1) {
        char other[PROTO_ID_MAX];
        fsm_col_text(s, 0, other, sizeof(other));
        sqlite3_reset(s);
        return fsm_refuse(r, PROTO_R_OVERLAP, "overlaps pool %s", other);
    }
    uint64_t next = FSM_POOL_FIRST;
    rv = fsm_pool_get(f, b->name, &old);
    if (rv < 0) {
        return rv;
    }
    if (rv == 1) {
        bool same = old.base.family == base.family && old.prefix == pfx &&
                    memcmp(old.base.a, base.a, 16) == 0;
        if (same) {
            next = old.next;
        } else {
            s = fsm_st(f, FSM_ST_POOL_HAS_LEASES);
            fsm_bind_text(s, 1, b->name);
            rv = fsm_step(s);
            if (rv < 0) {
                return rv;
            }
            if (rv == 1) {
                sqlite3_reset(s);
                return fsm_refuse(r, PROTO_R_IN_USE,
                                  "pool %s has leases; its range is fixed",
                                  b->name);
            }
        }
    }
    s = fsm_st(f, FSM_ST_POOL_PUT);
    fsm_bind_text(s, 1, b->name);
    sqlite3_bind_int(s, 2, base.family);
    fsm_bind_text(s, 3, cidr);
    sqlite3_bind_blob(s, 4, base.a, 16, SQLITE_STATIC);
    sqlite3_bind_int(s, 5, (int)pfx);
    sqlite3_bind_blob(s, 6, lo, 16, SQLITE_STATIC);
    sqlite3_bind_blob(s, 7, hi, 16, SQLITE_STATIC);
    fsm_bind_u64(s, 8, FSM_POOL_FIRST);
    fsm_bind_u64(s, 9, end);
    fsm_bind_u64(s, 10, next);
    fsm_bind_u64(s, 11, ttl);
    rv = fsm_exec_st(s);
    if (rv != 0) {
        return rv;
    }
    char detail[160];
    snprintf(detail, sizeof(detail), "cidr=%s ttl_ms=%" PRIu64, cidr, ttl);
    return fsm_audit(f, "pool_put", b->name, detail, r);
}

/* ---- sessions ------------------------------------------------------------ */

struct fsm_cn_sessions {
    uint64_t live[FSM_MAX_SESSIONS_PER_CN];
    char live_gw[FSM_MAX_SESSIONS_PER_CN][PROTO_ID_MAX];
    size_t nlive; /* stored, oldest first */
    size_t total; /* live sessions counted */
    uint64_t orphan;
    char orphan_gw[PROTO_ID_MAX];
};

/* Splits the CN's sessions into live ones (oldest first) and the newest
 * orphan (its session orphaned, or its gateway down). */
static int fsm_cn_sessions(struct fsm *f,
                           const char *cn,
                           struct fsm_cn_sessions *o)
{
    memset(o, 0, sizeof(*o));
    sqlite3_stmt *s = fsm_st(f, FSM_ST_SESS_OF_CN);
    fsm_bind_text(s, 1, cn);
    int rv;
    while ((rv = fsm_step(s)) == 1) {
        uint64_t id = fsm_col_u64(s, 0);
        int st = sqlite3_column_int(s, 2);
        int gw_state = sqlite3_column_int(s, 3);
        if (st == FSM_SESSION_ORPHANED || gw_state == PROTO_GW_DOWN) {
            if (id > o->orphan) {
                o->orphan = id;
                fsm_col_text(s, 1, o->orphan_gw, sizeof(o->orphan_gw));
            }
            continue;
        }
        if (o->nlive < FSM_MAX_SESSIONS_PER_CN) {
            o->live[o->nlive] = id;
            fsm_col_text(s, 1, o->live_gw[o->nlive], PROTO_ID_MAX);
            o->nlive++;
        }
        o->total++;
    }
    return rv;
}

/* Moves the donor session's leases to the new session when they belong to
 * the requested pools (sticky IP), and frees the rest to expire. */
static int fsm_inherit_leases(struct fsm *f,
                              uint64_t donor,
                              uint64_t sid,
                              const char *cn,
                              const struct proto_session_open *o,
                              struct proto_result *r)
{
    char ips[4][PROTO_ADDR_MAX];
    char pools[4][PROTO_ID_MAX];
    size_t n = 0;
    sqlite3_stmt *s = fsm_st(f, FSM_ST_LEASE_OF_SESSION);
    fsm_bind_u64(s, 1, donor);
    int rv;
    while ((rv = fsm_step(s)) == 1) {
        if (n < 4) {
            fsm_col_text(s, 0, ips[n], PROTO_ADDR_MAX);
            fsm_col_text(s, 1, pools[n], PROTO_ID_MAX);
            n++;
        }
    }
    if (rv < 0) {
        return rv;
    }
    rv = fsm_lease_release_session(f, donor);
    for (size_t i = 0; i < n && rv == 0; i++) {
        char *slot = NULL;
        if (o->pool4[0] != '\0' && strcmp(pools[i], o->pool4) == 0) {
            slot = r->ip4;
        } else if (o->pool6[0] != '\0' && strcmp(pools[i], o->pool6) == 0) {
            slot = r->ip6;
        }
        if (slot != NULL && slot[0] == '\0') {
            ovha_strlcpy(slot, ips[i], PROTO_ADDR_MAX);
            rv = fsm_lease_assign(f, ips[i], cn, sid);
        }
    }
    return rv;
}

static int fsm_open_audit(struct fsm *f,
                          const char *kind,
                          const char *cn,
                          uint64_t old_sid,
                          const char *old_gw,
                          uint64_t new_sid,
                          struct proto_result *r)
{
    char detail[256];
    snprintf(detail, sizeof(detail),
             "session=%" PRIu64 " gateway=%s new_session=%" PRIu64
             " new_gateway=%s",
             old_sid, old_gw, new_sid, f->cmd.gateway);
    return fsm_audit(f, kind, cn, detail, r);
}

/* Quota check for SessionOpen: records the quota the command carries and
 * refuses when the CN has already used it up, or, with quota_admit (the
 * quota action is throttling), admits it flagged over_quota. */
static int fsm_open_quota(struct fsm *f,
                          const struct proto_session_open *o,
                          struct proto_result *r)
{
    if (o->period[0] == '\0') {
        return 0;
    }
    sqlite3_stmt *s;
    int rv;
    uint64_t quota = o->quota_bytes;
    if (quota != 0) {
        s = fsm_st(f, FSM_ST_QUOTA_PUT);
        fsm_bind_text(s, 1, o->cn);
        fsm_bind_text(s, 2, o->period);
        fsm_bind_u64(s, 3, quota);
        rv = fsm_exec_st(s);
        if (rv != 0) {
            return rv;
        }
    } else {
        s = fsm_st(f, FSM_ST_QUOTA_GET);
        fsm_bind_text(s, 1, o->cn);
        fsm_bind_text(s, 2, o->period);
        rv = fsm_step(s);
        if (rv <= 0) {
            return rv;
        }
        quota = fsm_col_u64(s, 0);
        sqlite3_reset(s);
    }
    s = fsm_st(f, FSM_ST_USAGE_GET);
    fsm_bind_text(s, 1, o->cn);
    fsm_bind_text(s, 2, o->period);
    rv = fsm_step(s);
    if (rv <= 0) {
        return rv;
    }
    uint64_t used = fsm_col_u64(s, 0) + fsm_col_u64(s, 1);
    sqlite3_reset(s);
    if (used >= quota && o->quota_admit) {
        r->over_quota = true; /* the proposer throttles it */
        return 0;
    }
    if (used >= quota) {
        return fsm_refuse(r, PROTO_R_QUOTA_EXCEEDED,
                          "used %" PRIu64 " of %" PRIu64 " bytes in %s", used,
                          quota, o->period);
    }
    return 0;
}

/* Checks the requested pools exist with the right family. */
static int fsm_open_pools(struct fsm *f,
                          const struct proto_session_open *o,
                          struct fsm_pool *p4,
                          struct fsm_pool *p6,
                          struct proto_result *r)
{
    const char *names[2] = { o->pool4, o->pool6 };
    struct fsm_pool *pools[2] = { p4, p6 };
    int fams[2] = { 4, 6 };
    for (int i = 0; i < 2; i++) {
        if (names[i][0] == '\0') {
            continue;
        }
        int rv = fsm_pool_get(f, names[i], pools[i]);
        if (rv < 0) {
            return rv;
        }
        if (rv == 0 || pools[i]->base.family != fams[i]) {
            return fsm_refuse(r, PROTO_R_NO_POOL, "no IPv%d pool %s", fams[i],
                              names[i]);
        }
    }
    return 0;
}

static int fsm_open_evict(struct fsm *f,
                          const struct fsm_cn_sessions *cs,
                          size_t nevict,
                          uint64_t donor,
                          uint64_t sid,
                          const char *cn,
                          struct proto_result *r)
{
    for (size_t i = 0; i < nevict; i++) {
        uint64_t victim = cs->live[i];
        int rv = 0;
        if (victim != donor) {
            rv = fsm_lease_release_session(f, victim);
        }
        if (rv == 0) {
            rv = fsm_session_delete(f, victim);
        }
        if (rv == 0) {
            rv = fsm_open_audit(f, "session_evict", cn, victim, cs->live_gw[i],
                                sid, r);
        }
        if (rv != 0) {
            return rv;
        }
        fsm_ref_add(r, PROTO_REF_EVICTED, victim, cn, cs->live_gw[i]);
    }
    return 0;
}

static int fsm_cmd_session_open(struct fsm *f,
                                const struct proto_cmd *c,
                                struct proto_result *r)
{
    const struct proto_session_open *o = &c->u.session_open;
    struct fsm_pool p4, p6;
    struct fsm_cn_sessions cs;
    int gw_state = 0;

    int rv = fsm_gw_get(f, c->gateway, &gw_state, NULL);
    if (rv <= 0) {
        return rv < 0 ? rv
                      : fsm_refuse(r, PROTO_R_UNKNOWN_GATEWAY,
                                   "gateway %s never heartbeated", c->gateway);
    }
    if (gw_state != PROTO_GW_ACTIVE) {
        return fsm_refuse(r, PROTO_R_GATEWAY_NOT_ACTIVE, "gateway %s is %s",
                          c->gateway,
                          proto_gw_state_name((enum proto_gw_state)gw_state));
    }
    rv = fsm_open_pools(f, o, &p4, &p6, r);
    if (rv == 0 && r->status == PROTO_STATUS_OK) {
        rv = fsm_open_quota(f, o, r);
    }
    if (rv == 0 && r->status == PROTO_STATUS_OK) {
        rv = fsm_cn_sessions(f, o->cn, &cs);
    }
    if (rv != 0 || r->status != PROTO_STATUS_OK) {
        return rv;
    }
    size_t max = o->max_sessions == 0 ? 1 : o->max_sessions;
    if (max > FSM_MAX_SESSIONS_PER_CN) {
        max = FSM_MAX_SESSIONS_PER_CN;
    }
    size_t nevict = cs.total >= max ? cs.total - max + 1 : 0;
    if (nevict > cs.nlive) {
        nevict = cs.nlive;
    }
    if (nevict > 0 && o->on_excess == PROTO_EXCESS_REFUSE) {
        return fsm_refuse(r, PROTO_R_SESSION_LIMIT,
                          "%zu live sessions, at most %zu", cs.total, max);
    }

    uint64_t sid = f->meta.next_session++;
    /* The IP comes from an orphaned session (takeover), else from the
     * oldest evicted one: a reconnecting client keeps its address. */
    uint64_t donor = cs.orphan != 0 ? cs.orphan : (nevict > 0 ? cs.live[0] : 0);
    rv = donor != 0 ? fsm_macs_inherit(f, donor, sid, c->gateway) : 0;
    if (rv == 0) {
        rv = fsm_open_evict(f, &cs, nevict, donor, sid, o->cn, r);
    }
    if (rv == 0 && donor != 0) {
        rv = fsm_inherit_leases(f, donor, sid, o->cn, o, r);
    }
    if (rv == 0 && cs.orphan != 0) {
        r->takeover = true;
        r->old_session_id = cs.orphan;
        ovha_strlcpy(r->old_gateway, cs.orphan_gw, sizeof(r->old_gateway));
        rv = fsm_session_delete(f, cs.orphan);
        if (rv == 0) {
            rv = fsm_open_audit(f, "session_takeover", o->cn, cs.orphan,
                                cs.orphan_gw, sid, r);
        }
    }
    struct fsm_pool *pools[2] = { &p4, &p6 };
    char *slots[2] = { r->ip4, r->ip6 };
    const char *names[2] = { o->pool4, o->pool6 };
    for (int i = 0; i < 2 && rv == 0; i++) {
        if (names[i][0] == '\0' || slots[i][0] != '\0') {
            continue;
        }
        rv = fsm_lease_alloc(f, pools[i], o->cn, sid, slots[i], r);
        if (rv == 0) {
            return fsm_refuse(r, PROTO_R_POOL_EXHAUSTED,
                              "pool %s has no free or expired address",
                              names[i]);
        }
        rv = rv > 0 ? 0 : rv;
    }
    if (rv != 0) {
        return rv;
    }
    sqlite3_stmt *s = fsm_st(f, FSM_ST_SESS_INSERT);
    fsm_bind_u64(s, 1, sid);
    fsm_bind_text(s, 2, o->cn);
    fsm_bind_text(s, 3, c->gateway);
    fsm_bind_u64(s, 4, o->cid);
    fsm_bind_text(s, 5, o->real_addr);
    fsm_bind_text(s, 6, r->ip4);
    fsm_bind_text(s, 7, r->ip6);
    fsm_bind_u64(s, 8, f->meta.clock);
    fsm_bind_text(s, 9, o->groups);
    rv = fsm_exec_st(s);
    if (rv != 0) {
        return rv;
    }
    r->session_id = sid;
    char detail[256];
    snprintf(detail, sizeof(detail),
             "session=%" PRIu64 " gateway=%s ip4=%s ip6=%s", sid, c->gateway,
             r->ip4, r->ip6);
    return fsm_audit(f, "session_open", o->cn, detail, r);
}

struct fsm_sess_row {
    char cn[PROTO_CN_MAX];
    char gateway[PROTO_ID_MAX];
    int state;
};

/* Finds a session and checks it belongs to the proposing gateway (an
 * operator, named by actor, may act on any). 1 = usable, 0 = refused. */
static int fsm_sess_for(struct fsm *f,
                        const struct proto_cmd *c,
                        uint64_t sid,
                        struct fsm_sess_row *row,
                        struct proto_result *r)
{
    sqlite3_stmt *s = fsm_st(f, FSM_ST_SESS_GET);
    fsm_bind_u64(s, 1, sid);
    int rv = fsm_step(s);
    if (rv < 0) {
        return rv;
    }
    if (rv == 0) {
        fsm_refuse(r, PROTO_R_UNKNOWN_SESSION, "no session %" PRIu64, sid);
        return 0;
    }
    fsm_col_text(s, 0, row->cn, sizeof(row->cn));
    fsm_col_text(s, 1, row->gateway, sizeof(row->gateway));
    row->state = sqlite3_column_int(s, 2);
    sqlite3_reset(s);
    if (c->actor[0] == '\0' && strcmp(row->gateway, c->gateway) != 0) {
        fsm_refuse(r, PROTO_R_WRONG_GATEWAY, "session %" PRIu64 " is on %s",
                   sid, row->gateway);
        return 0;
    }
    return 1;
}

static int fsm_cmd_session_established(struct fsm *f,
                                       const struct proto_cmd *c,
                                       struct proto_result *r)
{
    uint64_t sid = c->u.session_established.session_id;
    struct fsm_sess_row row;
    int rv = fsm_sess_for(f, c, sid, &row, r);
    if (rv <= 0) {
        return rv;
    }
    if (row.state == FSM_SESSION_ORPHANED) {
        return fsm_refuse(r, PROTO_R_SESSION_ORPHANED,
                          "session %" PRIu64 " was orphaned", sid);
    }
    sqlite3_stmt *s = fsm_st(f, FSM_ST_SESS_ESTABLISH);
    fsm_bind_u64(s, 1, sid);
    fsm_bind_u64(s, 2, f->meta.clock);
    r->session_id = sid;
    return fsm_exec_st(s);
}

static int fsm_cmd_session_close(struct fsm *f,
                                 const struct proto_cmd *c,
                                 struct proto_result *r)
{
    const struct proto_session_close *b = &c->u.session_close;
    struct fsm_sess_row row;
    int rv = fsm_sess_for(f, c, b->session_id, &row, r);
    if (rv <= 0) {
        return rv;
    }
    rv = fsm_lease_release_session(f, b->session_id);
    if (rv == 0) {
        rv = fsm_session_delete(f, b->session_id);
    }
    if (rv != 0) {
        return rv;
    }
    r->session_id = b->session_id;
    char detail[PROTO_TEXT_MAX + 96];
    snprintf(detail, sizeof(detail), "session=%" PRIu64 " gateway=%s reason=%s",
             b->session_id, row.gateway, b->reason);
    return fsm_audit(f, "session_close", row.cn, detail, r);
}

/* ---- usage ----------------------------------------------------------------
 */

/* Adds the live sessions of a CN over its quota to the result, once per CN
 * per batch (seen[] remembers the CNs already reported). */
#define FSM_QUOTA_SEEN 256
struct fsm_quota_seen {
    const char *cn[FSM_QUOTA_SEEN];
    size_t n;
};

static int fsm_usage_quota(struct fsm *f,
                           const char *cn,
                           const char *period,
                           struct fsm_quota_seen *seen,
                           struct proto_result *r)
{
    for (size_t i = 0; i < seen->n; i++) {
        if (strcmp(seen->cn[i], cn) == 0) {
            return 0;
        }
    }
    sqlite3_stmt *s = fsm_st(f, FSM_ST_QUOTA_GET);
    fsm_bind_text(s, 1, cn);
    fsm_bind_text(s, 2, period);
    int rv = fsm_step(s);
    if (rv <= 0) {
        return rv;
    }
    uint64_t quota = fsm_col_u64(s, 0);
    sqlite3_reset(s);
    s = fsm_st(f, FSM_ST_USAGE_GET);
    fsm_bind_text(s, 1, cn);
    fsm_bind_text(s, 2, period);
    rv = fsm_step(s);
    if (rv <= 0) {
        return rv;
    }
    uint64_t used = fsm_col_u64(s, 0) + fsm_col_u64(s, 1);
    sqlite3_reset(s);
    if (used < quota) {
        return 0;
    }
    if (seen->n < FSM_QUOTA_SEEN) {
        seen->cn[seen->n++] = cn;
    }
    s = fsm_st(f, FSM_ST_SESS_LIVE_OF_CN);
    fsm_bind_text(s, 1, cn);
    while ((rv = fsm_step(s)) == 1) {
        char gw[PROTO_ID_MAX];
        fsm_col_text(s, 1, gw, sizeof(gw));
        fsm_ref_add(r, PROTO_REF_OVER_QUOTA, fsm_col_u64(s, 0), cn, gw);
    }
    return rv;
}

/* Charges one entry. An entry naming a live session of another CN is
 * skipped (returns 0 with *charged false). */
static int fsm_usage_entry(struct fsm *f,
                           const struct proto_usage_entry *e,
                           const char *period,
                           bool *charged)
{
    *charged = false;
    if (e->session_id != 0) {
        sqlite3_stmt *s = fsm_st(f, FSM_ST_SESS_GET);
        fsm_bind_u64(s, 1, e->session_id);
        int rv = fsm_step(s);
        if (rv < 0) {
            return rv;
        }
        if (rv == 1) {
            const unsigned char *cn = sqlite3_column_text(s, 0);
            bool same = cn != NULL && strcmp((const char *)cn, e->cn) == 0;
            sqlite3_reset(s);
            if (!same) {
                return 0;
            }
        }
    }
    sqlite3_stmt *s = fsm_st(f, FSM_ST_USAGE_ADD);
    fsm_bind_text(s, 1, e->cn);
    fsm_bind_text(s, 2, period);
    fsm_bind_u64(s, 3, e->bytes_in);
    fsm_bind_u64(s, 4, e->bytes_out);
    int rv = fsm_exec_st(s);
    *charged = rv == 0;
    return rv;
}

static int fsm_cmd_usage_charge(struct fsm *f,
                                const struct proto_cmd *c,
                                struct proto_result *r)
{
    const struct proto_usage_charge *b = &c->u.usage_charge;
    int gw_state = 0;
    uint64_t last = 0;
    int rv = fsm_gw_get(f, c->gateway, &gw_state, &last);
    if (rv <= 0) {
        return rv < 0 ? rv
                      : fsm_refuse(r, PROTO_R_UNKNOWN_GATEWAY,
                                   "gateway %s never heartbeated", c->gateway);
    }
    for (size_t i = 0; i < b->nentries; i++) {
        if (b->entries[i].bytes_in > FSM_MAX_DELTA ||
            b->entries[i].bytes_out > FSM_MAX_DELTA) {
            return fsm_refuse(r, PROTO_R_INVALID,
                              "entry %zu: delta above 2^48 bytes", i);
        }
    }
    if (b->seq <= last) {
        r->duplicate = true; /* charged already: count nothing twice */
        return 0;
    }
    sqlite3_stmt *s = fsm_st(f, FSM_ST_GW_SET_USAGE_SEQ);
    fsm_bind_text(s, 1, c->gateway);
    fsm_bind_u64(s, 2, b->seq);
    rv = fsm_exec_st(s);
    struct fsm_quota_seen seen = { .n = 0 };
    for (size_t i = 0; i < b->nentries && rv == 0; i++) {
        bool charged = false;
        rv = fsm_usage_entry(f, &b->entries[i], b->period, &charged);
        if (rv == 0 && charged) {
            r->count++;
            rv = fsm_usage_quota(f, b->entries[i].cn, b->period, &seen, r);
        }
    }
    return rv;
}

/* ---- policy, subnets, audit ---------------------------------------------- */

static int fsm_cmd_policy_put(struct fsm *f,
                              const struct proto_cmd *c,
                              struct proto_result *r)
{
    const struct proto_policy_put *b = &c->u.policy_put;
    sqlite3_stmt *s = fsm_st(f, FSM_ST_POLICY_PUT);
    fsm_bind_text(s, 1, b->name);
    fsm_bind_text(s, 2, b->body != NULL ? b->body : "");
    fsm_bind_u64(s, 3, f->meta.clock);
    int rv = fsm_exec_st(s);
    if (rv != 0) {
        return rv;
    }
    /* The audit record carries a digest of the body, not the body. */
    uint8_t h[32];
    char hex[65];
    char detail[96];
    const char *body = b->body != NULL ? b->body : "";
    ovha_sha256(body, strlen(body), h);
    ovha_hex(h, sizeof(h), hex);
    snprintf(detail, sizeof(detail), "sha256=%s", hex);
    return fsm_audit(f, "policy_put", b->name, detail, r);
}

static int fsm_cmd_policy_delete(struct fsm *f,
                                 const struct proto_cmd *c,
                                 struct proto_result *r)
{
    const char *name = c->u.policy_delete.name;
    sqlite3_stmt *s = fsm_st(f, FSM_ST_POLICY_DELETE);
    fsm_bind_text(s, 1, name);
    int rv = fsm_exec_st(s);
    if (rv != 0) {
        return rv;
    }
    if (sqlite3_changes(f->db) == 0) {
        return fsm_refuse(r, PROTO_R_NOT_FOUND, "no policy %s", name);
    }
    return fsm_audit(f, "policy_delete", name, "", r);
}

/* Normalises a CIDR: 0, or a refusal already written into r (returns 1). */
static int fsm_subnet_cidr(const char *in,
                           char *out,
                           struct fsm_ip *base,
                           unsigned *pfx,
                           struct proto_result *r)
{
    if (fsm_cidr_parse(in, base, pfx) != 0) {
        fsm_refuse(r, PROTO_R_INVALID, "not a CIDR with host bits clear");
        return 1;
    }
    char ipt[48]; /* INET6_ADDRSTRLEN */
    fsm_ip_format(base, ipt, sizeof(ipt));
    snprintf(out, PROTO_ADDR_MAX, "%s/%u", ipt, *pfx);
    return 0;
}

static int fsm_cmd_subnet_register(struct fsm *f,
                                   const struct proto_cmd *c,
                                   struct proto_result *r)
{
    const struct proto_subnet *b = &c->u.subnet_register;
    struct fsm_ip base;
    unsigned pfx = 0;
    char cidr[PROTO_ADDR_MAX];
    uint8_t lo[16], hi[16];

    if (fsm_subnet_cidr(b->cidr, cidr, &base, &pfx, r) != 0) {
        return 0;
    }
    /* The same CN registering its subnet again (it reconnected, maybe on
     * another gateway) changes nothing. */
    sqlite3_stmt *o = fsm_st(f, FSM_ST_SUBNET_OWNER);
    fsm_bind_text(o, 1, cidr);
    int found = fsm_step(o);
    if (found < 0) {
        return found;
    }
    if (found == 1) {
        char owner[PROTO_CN_MAX];
        fsm_col_text(o, 0, owner, sizeof(owner));
        sqlite3_reset(o);
        if (strcmp(owner, b->owner_cn) == 0) {
            return 0;
        }
    }
    fsm_cidr_range(&base, pfx, lo, hi);
    sqlite3_stmt *s = fsm_st(f, FSM_ST_SUBNET_OVERLAP);
    sqlite3_bind_int(s, 1, base.family);
    sqlite3_bind_blob(s, 2, lo, 16, SQLITE_STATIC);
    sqlite3_bind_blob(s, 3, hi, 16, SQLITE_STATIC);
    int rv = fsm_step(s);
    if (rv < 0) {
        return rv;
    }
    if (rv == 1) {
        char other[PROTO_ADDR_MAX];
        fsm_col_text(s, 0, other, sizeof(other));
        sqlite3_reset(s);
        return fsm_refuse(r, PROTO_R_OVERLAP, "overlaps %s", other);
    }
    s = fsm_st(f, FSM_ST_SUBNET_INSERT);
    fsm_bind_text(s, 1, cidr);
    sqlite3_bind_int(s, 2, base.family);
    sqlite3_bind_blob(s, 3, lo, 16, SQLITE_STATIC);
    sqlite3_bind_blob(s, 4, hi, 16, SQLITE_STATIC);
    fsm_bind_text(s, 5, b->owner_cn);
    rv = fsm_exec_st(s);
    if (rv != 0) {
        return rv;
    }
    char detail[PROTO_CN_MAX + 16];
    snprintf(detail, sizeof(detail), "owner=%s", b->owner_cn);
    return fsm_audit(f, "subnet_register", cidr, detail, r);
}

static int fsm_cmd_subnet_release(struct fsm *f,
                                  const struct proto_cmd *c,
                                  struct proto_result *r)
{
    struct fsm_ip base;
    unsigned pfx = 0;
    char cidr[PROTO_ADDR_MAX];
    if (fsm_subnet_cidr(c->u.subnet_release.cidr, cidr, &base, &pfx, r) != 0) {
        return 0;
    }
    sqlite3_stmt *s = fsm_st(f, FSM_ST_SUBNET_DELETE);
    fsm_bind_text(s, 1, cidr);
    int rv = fsm_exec_st(s);
    if (rv != 0) {
        return rv;
    }
    if (sqlite3_changes(f->db) == 0) {
        return fsm_refuse(r, PROTO_R_NOT_FOUND, "no subnet %s", cidr);
    }
    return fsm_audit(f, "subnet_release", cidr, "", r);
}

/* ---- MAC map
 * -------------------------------------------------------------- */

static bool fsm_mac_hex(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
}

/* Only the canonical form is stored, so one MAC is one row: lowercase
 * hex pairs separated by colons, unicast (group bit clear), not zero. The
 * node canonicalises what openvpn reports. */
static bool fsm_mac_valid(const char *m)
{
    if (strlen(m) != PROTO_MAC_MAX - 1) {
        return false;
    }
    for (size_t i = 0; i < PROTO_MAC_MAX - 1; i++) {
        bool sep = i % 3 == 2;
        if (sep ? m[i] != ':' : !fsm_mac_hex(m[i])) {
            return false;
        }
    }
    unsigned first = (unsigned)strtoul(m, NULL, 16);
    return (first & 1u) == 0 && strcmp(m, "00:00:00:00:00:00") != 0;
}

/* Who holds a MAC now: 1 (cn and session filled), 0 none, or < 0. */
static int fsm_mac_owner(struct fsm *f,
                         const char *mac,
                         char *cn,
                         uint64_t *session)
{
    sqlite3_stmt *s = fsm_st(f, FSM_ST_MAC_GET);
    fsm_bind_text(s, 1, mac);
    int rv = fsm_step(s);
    if (rv == 1) {
        fsm_col_text(s, 0, cn, PROTO_CN_MAX);
        *session = fsm_col_u64(s, 1);
        sqlite3_reset(s);
    }
    return rv;
}

static int fsm_mac_count(struct fsm *f, uint64_t sid, uint64_t *ret)
{
    sqlite3_stmt *s = fsm_st(f, FSM_ST_MAC_COUNT);
    fsm_bind_u64(s, 1, sid);
    int rv = fsm_step(s);
    if (rv == 1) {
        *ret = fsm_col_u64(s, 0);
        sqlite3_reset(s);
        return 0;
    }
    return rv < 0 ? rv : -EIO;
}

/* Registers a MAC for a live session on the proposing gateway. Another
 * CN's MAC (live or orphaned session) is refused: that is a collision or
 * spoofing, and the owner keeps it. The same MAC again for the same
 * session changes nothing. */
static int fsm_cmd_mac_register(struct fsm *f,
                                const struct proto_cmd *c,
                                struct proto_result *r)
{
    const struct proto_mac_register *b = &c->u.mac_register;
    if (!fsm_mac_valid(b->mac)) {
        return fsm_refuse(r, PROTO_R_INVALID, "not a unicast MAC address");
    }
    struct fsm_sess_row row;
    int rv = fsm_sess_for(f, c, b->session_id, &row, r);
    if (rv <= 0) {
        return rv;
    }
    if (row.state == FSM_SESSION_ORPHANED) {
        return fsm_refuse(r, PROTO_R_SESSION_ORPHANED,
                          "session %" PRIu64 " was orphaned", b->session_id);
    }
    r->session_id = b->session_id;
    char owner[PROTO_CN_MAX] = "";
    uint64_t owner_sid = 0;
    rv = fsm_mac_owner(f, b->mac, owner, &owner_sid);
    if (rv < 0) {
        return rv;
    }
    if (rv == 1 && owner_sid == b->session_id) {
        return 0;
    }
    if (rv == 1 && strcmp(owner, row.cn) != 0) {
        return fsm_refuse(r, PROTO_R_IN_USE, "%s belongs to another client",
                          b->mac);
    }
    uint64_t n = 0;
    rv = fsm_mac_count(f, b->session_id, &n);
    if (rv != 0) {
        return rv;
    }
    if (n >= FSM_MACS_PER_SESSION) {
        return fsm_refuse(r, PROTO_R_TOO_MANY, "session has %d MACs already",
                          FSM_MACS_PER_SESSION);
    }
    sqlite3_stmt *s = fsm_st(f, FSM_ST_MAC_PUT);
    fsm_bind_text(s, 1, b->mac);
    fsm_bind_text(s, 2, row.cn);
    fsm_bind_u64(s, 3, b->session_id);
    fsm_bind_text(s, 4, row.gateway);
    fsm_bind_u64(s, 5, f->meta.clock);
    rv = fsm_exec_st(s);
    if (rv != 0) {
        return rv;
    }
    char detail[PROTO_ID_MAX + 64];
    snprintf(detail, sizeof(detail), "mac=%s session=%" PRIu64 " gateway=%s",
             b->mac, b->session_id, row.gateway);
    return fsm_audit(f, "mac_register", row.cn, detail, r);
}

static int fsm_cmd_audit_append(struct fsm *f,
                                const struct proto_cmd *c,
                                struct proto_result *r)
{
    const struct proto_audit_append *b = &c->u.audit_append;
    char kind[PROTO_ID_MAX + 4]; /* cut to the column's limit by fsm_audit */
    snprintf(kind, sizeof(kind), "op:%s", b->action);
    return fsm_audit(f, kind, b->subject, b->detail, r);
}

int fsm_cmd_dispatch(struct fsm *f,
                     const struct proto_cmd *c,
                     struct proto_result *r)
{
    switch (c->kind) {
    case PROTO_CMD_SESSION_OPEN:
        return fsm_cmd_session_open(f, c, r);
    case PROTO_CMD_SESSION_ESTABLISHED:
        return fsm_cmd_session_established(f, c, r);
    case PROTO_CMD_SESSION_CLOSE:
        return fsm_cmd_session_close(f, c, r);
    case PROTO_CMD_USAGE_CHARGE:
        return fsm_cmd_usage_charge(f, c, r);
    case PROTO_CMD_GATEWAY_HEARTBEAT:
        return fsm_cmd_heartbeat(f, c, r);
    case PROTO_CMD_GATEWAY_SET_STATE:
        return fsm_cmd_set_state(f, c, r);
    case PROTO_CMD_LEASE_RESERVE:
        return fsm_cmd_lease_reserve(f, c, r);
    case PROTO_CMD_LEASE_RELEASE:
        return fsm_cmd_lease_release(f, c, r);
    case PROTO_CMD_POOL_PUT:
        return fsm_cmd_pool_put(f, c, r);
    case PROTO_CMD_POLICY_PUT:
        return fsm_cmd_policy_put(f, c, r);
    case PROTO_CMD_POLICY_DELETE:
        return fsm_cmd_policy_delete(f, c, r);
    case PROTO_CMD_SUBNET_REGISTER:
        return fsm_cmd_subnet_register(f, c, r);
    case PROTO_CMD_SUBNET_RELEASE:
        return fsm_cmd_subnet_release(f, c, r);
    case PROTO_CMD_AUDIT_APPEND:
        return fsm_cmd_audit_append(f, c, r);
    case PROTO_CMD_MAC_REGISTER:
        return fsm_cmd_mac_register(f, c, r);
    default:
        return fsm_refuse(r, PROTO_R_NO_BODY, "command has no body");
    }
}
