/* fsm: read-only queries for the node, and the invariant checker tests use.
 * Queries are not on the apply path, so they prepare their statements on
 * each call instead of growing the cached set. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "base/base.h"
#include "fsm/fsm_int.h"

static int fsm_q_prepare(struct fsm *f, const char *sql, sqlite3_stmt **ret)
{
    int rc = sqlite3_prepare_v2(f->db, sql, -1, ret, NULL);
    if (rc != SQLITE_OK) {
        return rc == SQLITE_NOMEM ? -ENOMEM : -EIO;
    }
    return 0;
}

/* Steps s to the end, calling row(s, cb, data) per row. */
typedef int (*fsm_q_row_fn)(sqlite3_stmt *s, void *cb, void *data);

static int fsm_q_walk(sqlite3_stmt *s, fsm_q_row_fn row, void *cb, void *data)
{
    int rc;
    int rv = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        rv = row(s, cb, data);
        if (rv != 0) {
            break;
        }
    }
    if (rv == 0 && rc != SQLITE_DONE) {
        rv = fsm_sqlite_err(rc) ? fsm_sqlite_err(rc) : -EIO;
    }
    sqlite3_finalize(s);
    return rv;
}

/* ---- leases -------------------------------------------------------------- */

#define FSM_Q_LEASE_COLS \
    "SELECT ip, pool, cn, kind, session, expires FROM leases"

static void fsm_q_lease_row(sqlite3_stmt *s, struct fsm_lease_info *l)
{
    memset(l, 0, sizeof(*l));
    fsm_col_text(s, 0, l->ip, sizeof(l->ip));
    fsm_col_text(s, 1, l->pool, sizeof(l->pool));
    fsm_col_text(s, 2, l->cn, sizeof(l->cn));
    l->reserved = sqlite3_column_int(s, 3) == 1;
    l->session_id = fsm_col_u64(s, 4);
    l->expires_at = fsm_col_u64(s, 5);
}

static int fsm_q_lease_cb(sqlite3_stmt *s, void *cb, void *data)
{
    struct fsm_lease_info l;
    fsm_q_lease_row(s, &l);
    return ((fsm_lease_cb)cb)(&l, data);
}

int fsm_query_leases(struct fsm *f, const char *cn, fsm_lease_cb cb, void *data)
{
    sqlite3_stmt *s = NULL;
    int rv =
        fsm_q_prepare(f,
                      cn != NULL ? FSM_Q_LEASE_COLS " WHERE cn = ?1 ORDER BY ip"
                                 : FSM_Q_LEASE_COLS " ORDER BY ip",
                      &s);
    if (rv != 0) {
        return rv;
    }
    if (cn != NULL) {
        fsm_bind_text(s, 1, cn);
    }
    return fsm_q_walk(s, fsm_q_lease_cb, (void *)cb, data);
}

/* ---- pools --------------------------------------------------------------- */

static int fsm_q_pool_cb(sqlite3_stmt *s, void *cb, void *data)
{
    struct fsm_pool_info p;
    memset(&p, 0, sizeof(p));
    fsm_col_text(s, 0, p.name, sizeof(p.name));
    fsm_col_text(s, 1, p.cidr, sizeof(p.cidr));
    p.family = sqlite3_column_int(s, 2);
    p.lease_ttl_ms = fsm_col_u64(s, 3);
    /* Offsets handed out are [first, end_off). */
    uint64_t first = fsm_col_u64(s, 4), end = fsm_col_u64(s, 5);
    p.size = end > first ? end - first : 0;
    p.leases = fsm_col_u64(s, 6);
    return ((fsm_pool_cb)cb)(&p, data);
}

int fsm_query_pools(struct fsm *f, fsm_pool_cb cb, void *data)
{
    sqlite3_stmt *s = NULL;
    /* The count uses the UNIQUE(pool, off) index of leases. */
    int rv = fsm_q_prepare(f,
                           "SELECT name, cidr, family, ttl, first, end_off,"
                           " (SELECT count(*) FROM leases"
                           " WHERE leases.pool = pools.name)"
                           " FROM pools ORDER BY name",
                           &s);
    if (rv != 0) {
        return rv;
    }
    return fsm_q_walk(s, fsm_q_pool_cb, (void *)cb, data);
}

/* ---- sessions --------------------------------------------------------------
 */

#define FSM_Q_SESS_COLS                                          \
    "SELECT id, cn, gateway, cid, real_addr, ip4, ip6, started," \
    " established, state, groups FROM sessions"

static void fsm_q_sess_row(sqlite3_stmt *s, struct fsm_session_info *o)
{
    memset(o, 0, sizeof(*o));
    o->id = fsm_col_u64(s, 0);
    fsm_col_text(s, 1, o->cn, sizeof(o->cn));
    fsm_col_text(s, 2, o->gateway, sizeof(o->gateway));
    o->cid = fsm_col_u64(s, 3);
    fsm_col_text(s, 4, o->real_addr, sizeof(o->real_addr));
    fsm_col_text(s, 5, o->ip4, sizeof(o->ip4));
    fsm_col_text(s, 6, o->ip6, sizeof(o->ip6));
    o->started = fsm_col_u64(s, 7);
    o->established = fsm_col_u64(s, 8);
    o->state = (enum fsm_session_state)sqlite3_column_int(s, 9);
    fsm_col_text(s, 10, o->groups, sizeof(o->groups));
}

static int fsm_q_sess_cb(sqlite3_stmt *s, void *cb, void *data)
{
    struct fsm_session_info o;
    fsm_q_sess_row(s, &o);
    return ((fsm_session_cb)cb)(&o, data);
}

int fsm_query_session(struct fsm *f, uint64_t id, struct fsm_session_info *ret)
{
    sqlite3_stmt *s = NULL;
    int rv = fsm_q_prepare(f, FSM_Q_SESS_COLS " WHERE id = ?1", &s);
    if (rv != 0) {
        return rv;
    }
    fsm_bind_u64(s, 1, id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        fsm_q_sess_row(s, ret);
    } else {
        rv = rc == SQLITE_DONE ? -ENOENT : -EIO;
    }
    sqlite3_finalize(s);
    return rv;
}

int fsm_query_sessions(struct fsm *f,
                       const char *gateway,
                       fsm_session_cb cb,
                       void *data)
{
    sqlite3_stmt *s = NULL;
    int rv = fsm_q_prepare(f,
                           gateway != NULL ? FSM_Q_SESS_COLS
                               " WHERE gateway = ?1"
                               " ORDER BY id"
                                           : FSM_Q_SESS_COLS " ORDER BY id",
                           &s);
    if (rv != 0) {
        return rv;
    }
    if (gateway != NULL) {
        fsm_bind_text(s, 1, gateway);
    }
    return fsm_q_walk(s, fsm_q_sess_cb, (void *)cb, data);
}

int fsm_query_cn_sessions(struct fsm *f,
                          const char *cn,
                          fsm_session_cb cb,
                          void *data)
{
    sqlite3_stmt *s = NULL;
    int rv = fsm_q_prepare(f, FSM_Q_SESS_COLS " WHERE cn = ?1 ORDER BY id", &s);
    if (rv != 0) {
        return rv;
    }
    fsm_bind_text(s, 1, cn);
    return fsm_q_walk(s, fsm_q_sess_cb, (void *)cb, data);
}

/* ---- gateways ------------------------------------------------------------ */

#define FSM_Q_GW_COLS \
    "SELECT id, addr, state, last_seen, usage_seq FROM gateways"

static void fsm_q_gw_row(sqlite3_stmt *s, struct fsm_gateway_info *g)
{
    memset(g, 0, sizeof(*g));
    fsm_col_text(s, 0, g->id, sizeof(g->id));
    fsm_col_text(s, 1, g->addr, sizeof(g->addr));
    g->state = (enum proto_gw_state)sqlite3_column_int(s, 2);
    g->last_seen = fsm_col_u64(s, 3);
    g->usage_seq = fsm_col_u64(s, 4);
}

static int fsm_q_gw_cb(sqlite3_stmt *s, void *cb, void *data)
{
    struct fsm_gateway_info g;
    fsm_q_gw_row(s, &g);
    return ((fsm_gateway_cb)cb)(&g, data);
}

int fsm_query_gateway(struct fsm *f,
                      const char *id,
                      struct fsm_gateway_info *ret)
{
    sqlite3_stmt *s = NULL;
    int rv = fsm_q_prepare(f, FSM_Q_GW_COLS " WHERE id = ?1", &s);
    if (rv != 0) {
        return rv;
    }
    fsm_bind_text(s, 1, id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        fsm_q_gw_row(s, ret);
    } else {
        rv = rc == SQLITE_DONE ? -ENOENT : -EIO;
    }
    sqlite3_finalize(s);
    return rv;
}

int fsm_query_gateways(struct fsm *f, fsm_gateway_cb cb, void *data)
{
    sqlite3_stmt *s = NULL;
    int rv = fsm_q_prepare(f, FSM_Q_GW_COLS " ORDER BY id", &s);
    if (rv != 0) {
        return rv;
    }
    return fsm_q_walk(s, fsm_q_gw_cb, (void *)cb, data);
}

/* ---- usage -----------------------------------------------------------------
 */

int fsm_query_usage(struct fsm *f,
                    const char *cn,
                    const char *period,
                    struct fsm_usage_info *ret)
{
    sqlite3_stmt *s = NULL;
    memset(ret, 0, sizeof(*ret));
    int rv = fsm_q_prepare(f,
                           "SELECT (SELECT bytes_in FROM usage"
                           " WHERE cn = ?1 AND period = ?2),"
                           " (SELECT bytes_out FROM usage"
                           " WHERE cn = ?1 AND period = ?2),"
                           " (SELECT quota_bytes FROM quotas"
                           " WHERE cn = ?1 AND period = ?2)",
                           &s);
    if (rv != 0) {
        return rv;
    }
    fsm_bind_text(s, 1, cn);
    fsm_bind_text(s, 2, period);
    if (sqlite3_step(s) == SQLITE_ROW) {
        ret->bytes_in = fsm_col_u64(s, 0);
        ret->bytes_out = fsm_col_u64(s, 1);
        ret->quota_bytes = fsm_col_u64(s, 2);
    } else {
        rv = -EIO;
    }
    sqlite3_finalize(s);
    return rv;
}

/* ---- audit ------------------------------------------------------------------
 */

static void fsm_q_blob(sqlite3_stmt *s, int i, uint8_t out[FSM_HASH_LEN])
{
    memset(out, 0, FSM_HASH_LEN);
    if (sqlite3_column_bytes(s, i) == FSM_HASH_LEN) {
        memcpy(out, sqlite3_column_blob(s, i), FSM_HASH_LEN);
    }
}

static int fsm_q_audit_cb(sqlite3_stmt *s, void *cb, void *data)
{
    struct fsm_audit_record a;
    memset(&a, 0, sizeof(a));
    a.seq = fsm_col_u64(s, 0);
    a.ts = fsm_col_u64(s, 1);
    fsm_col_text(s, 2, a.kind, sizeof(a.kind));
    fsm_col_text(s, 3, a.actor, sizeof(a.actor));
    fsm_col_text(s, 4, a.subject, sizeof(a.subject));
    fsm_col_text(s, 5, a.detail, sizeof(a.detail));
    fsm_q_blob(s, 6, a.prev_hash);
    fsm_q_blob(s, 7, a.hash);
    return ((fsm_audit_cb)cb)(&a, data);
}

int fsm_query_audit(struct fsm *f,
                    uint64_t from_seq,
                    fsm_audit_cb cb,
                    void *data)
{
    sqlite3_stmt *s = NULL;
    int rv = fsm_q_prepare(f,
                           "SELECT seq, ts, kind, actor, subject, detail,"
                           " prev_hash, hash FROM audit WHERE seq >= ?1"
                           " ORDER BY seq",
                           &s);
    if (rv != 0) {
        return rv;
    }
    fsm_bind_u64(s, 1, from_seq);
    return fsm_q_walk(s, fsm_q_audit_cb, (void *)cb, data);
}

/* ---- subnets and policy
 * ------------------------------------------------------ */

static int fsm_q_subnet_cb(sqlite3_stmt *s, void *cb, void *data)
{
    struct fsm_subnet_info n;
    memset(&n, 0, sizeof(n));
    fsm_col_text(s, 0, n.cidr, sizeof(n.cidr));
    fsm_col_text(s, 1, n.owner_cn, sizeof(n.owner_cn));
    return ((fsm_subnet_cb)cb)(&n, data);
}

int fsm_query_subnets(struct fsm *f,
                      const char *cn,
                      fsm_subnet_cb cb,
                      void *data)
{
    sqlite3_stmt *s = NULL;
    int rv = fsm_q_prepare(f,
                           cn != NULL ? "SELECT cidr, owner_cn FROM subnets"
                                        " WHERE owner_cn = ?1 ORDER BY cidr"
                                      : "SELECT cidr, owner_cn FROM subnets"
                                        " ORDER BY cidr",
                           &s);
    if (rv != 0) {
        return rv;
    }
    if (cn != NULL) {
        fsm_bind_text(s, 1, cn);
    }
    return fsm_q_walk(s, fsm_q_subnet_cb, (void *)cb, data);
}

static int fsm_q_mac_cb(sqlite3_stmt *s, void *cb, void *data)
{
    struct fsm_mac_info m;
    memset(&m, 0, sizeof(m));
    fsm_col_text(s, 0, m.mac, sizeof(m.mac));
    fsm_col_text(s, 1, m.cn, sizeof(m.cn));
    m.session_id = fsm_col_u64(s, 2);
    fsm_col_text(s, 3, m.gateway, sizeof(m.gateway));
    return ((fsm_mac_cb)cb)(&m, data);
}

int fsm_query_macs(struct fsm *f, fsm_mac_cb cb, void *data)
{
    sqlite3_stmt *s = NULL;
    int rv = fsm_q_prepare(f,
                           "SELECT mac, cn, session, gateway FROM macs"
                           " ORDER BY mac",
                           &s);
    if (rv != 0) {
        return rv;
    }
    return fsm_q_walk(s, fsm_q_mac_cb, (void *)cb, data);
}

int fsm_query_policy(struct fsm *f, const char *name, char **ret_body)
{
    sqlite3_stmt *s = NULL;
    int rv = fsm_q_prepare(f, "SELECT body FROM policy WHERE name = ?1", &s);
    if (rv != 0) {
        return rv;
    }
    fsm_bind_text(s, 1, name);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(s, 0);
        *ret_body = ovha_strdup(t != NULL ? (const char *)t : "");
        rv = *ret_body == NULL ? -ENOMEM : 0;
    } else {
        rv = rc == SQLITE_DONE ? -ENOENT : -EIO;
    }
    sqlite3_finalize(s);
    return rv;
}

/* ---- invariants -----------------------------------------------------------
 */

/* Each query names rows that break one invariant; none may return a row. */
static const char *const fsm_invariant_sql[][2] = {
    { "a live session's IPv4 is not a lease of its CN held by it",
      "SELECT s.id FROM sessions s WHERE s.ip4 != '' AND NOT EXISTS"
      " (SELECT 1 FROM leases l WHERE l.ip = s.ip4 AND l.cn = s.cn"
      " AND l.session = s.id)" },
    { "a live session's IPv6 is not a lease of its CN held by it",
      "SELECT s.id FROM sessions s WHERE s.ip6 != '' AND NOT EXISTS"
      " (SELECT 1 FROM leases l WHERE l.ip = s.ip6 AND l.cn = s.cn"
      " AND l.session = s.id)" },
    { "a lease points at a session of another CN or a missing session",
      "SELECT l.ip FROM leases l WHERE l.session != 0 AND NOT EXISTS"
      " (SELECT 1 FROM sessions s WHERE s.id = l.session AND s.cn = l.cn)" },
    { "a live session's lease has an expiry",
      "SELECT l.ip FROM leases l JOIN sessions s ON s.id = l.session"
      " WHERE s.state != 2 AND l.expires IS NOT NULL" },
    { "two sessions of different CNs share an IP",
      "SELECT a.id FROM sessions a JOIN sessions b ON a.id < b.id"
      " AND a.cn != b.cn AND ((a.ip4 != '' AND a.ip4 = b.ip4)"
      " OR (a.ip6 != '' AND a.ip6 = b.ip6))" },
    { "a lease lies outside its pool",
      "SELECT l.ip FROM leases l LEFT JOIN pools p ON p.name = l.pool"
      " WHERE p.name IS NULL OR l.off < p.first OR l.off >= p.end_off" },
    { "the audit sequence has a gap",
      "SELECT 1 FROM meta m WHERE m.audit_seq !="
      " (SELECT count(*) FROM audit)" },
};

int fsm_check_invariants(struct fsm *f, char *err, size_t errlen)
{
    size_t n = sizeof(fsm_invariant_sql) / sizeof(fsm_invariant_sql[0]);
    for (size_t i = 0; i < n; i++) {
        sqlite3_stmt *s = NULL;
        int rv = fsm_q_prepare(f, fsm_invariant_sql[i][1], &s);
        if (rv != 0) {
            snprintf(err, errlen, "invariant %zu: prepare failed", i);
            return rv;
        }
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            const unsigned char *t = sqlite3_column_text(s, 0);
            snprintf(err, errlen, "%s (%s)", fsm_invariant_sql[i][0],
                     t != NULL ? (const char *)t : "?");
            sqlite3_finalize(s);
            return -EPROTO;
        }
        sqlite3_finalize(s);
        if (rc != SQLITE_DONE) {
            snprintf(err, errlen, "invariant %zu: step failed", i);
            return -EIO;
        }
    }
    return 0;
}
