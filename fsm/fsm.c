/* fsm: core — schema, the apply transaction, the req_id window, the audit
 * chain, snapshots and the state hash.
 *
 * One apply is one SQLite transaction. A refusal rolls it back and commits
 * only the clock and the req_id entry in a fresh one, so a command refused
 * halfway (evictions done, then the pool is exhausted) leaves no other
 * trace. A local failure (out of memory) rolls back everything, including
 * the cached meta row.
 *
 * The database uses journal_mode=MEMORY rather than OFF: with OFF SQLite
 * cannot roll back, and refusals need ROLLBACK. synchronous=OFF and a
 * private in-memory database make the journal cost a few memcpys.
 */
#include "fsm/fsm.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "base/base.h"
#include "fsm/fsm_int.h"

/* ---- schema ----------------------------------------------------------- */

/* Integer enums in the tables: gateways.state = proto_gw_state,
 * leases.kind 0 dynamic / 1 reserved, sessions.state = fsm_session_state.
 * leases.expires is NULL while a live session holds the lease. */
/* Version 2 added the MAC map, sessions.groups and the pruned audit
 * chain's base; fsm_restore upgrades a version 1 snapshot (every node does
 * the same, so states stay equal). */
#define FSM_SCHEMA_MACS                                             \
    "CREATE TABLE macs(mac TEXT PRIMARY KEY, cn TEXT NOT NULL,"     \
    " session INTEGER NOT NULL, gateway TEXT NOT NULL,"             \
    " updated INTEGER NOT NULL);"                                   \
    "CREATE INDEX macs_session ON macs(session, mac);"              \
    "CREATE TABLE audit_base(id INTEGER PRIMARY KEY CHECK(id = 1)," \
    " seq INTEGER NOT NULL, hash BLOB NOT NULL);"                   \
    "INSERT INTO audit_base VALUES(1, 0, zeroblob(32));"

static const char fsm_schema[] =
    "CREATE TABLE meta(id INTEGER PRIMARY KEY CHECK(id = 1),"
    " clock INTEGER NOT NULL, next_session INTEGER NOT NULL,"
    " req_seq INTEGER NOT NULL, audit_seq INTEGER NOT NULL,"
    " audit_head BLOB NOT NULL);"
    "CREATE TABLE gateways(id TEXT PRIMARY KEY, addr TEXT NOT NULL,"
    " state INTEGER NOT NULL, last_seen INTEGER NOT NULL,"
    " usage_seq INTEGER NOT NULL);"
    "CREATE TABLE pools(name TEXT PRIMARY KEY, family INTEGER NOT NULL,"
    " cidr TEXT NOT NULL, base BLOB NOT NULL, prefix INTEGER NOT NULL,"
    " lo BLOB NOT NULL, hi BLOB NOT NULL, first INTEGER NOT NULL,"
    " end_off INTEGER NOT NULL, next INTEGER NOT NULL, ttl INTEGER NOT NULL);"
    "CREATE TABLE leases(ip TEXT PRIMARY KEY, pool TEXT NOT NULL,"
    " off INTEGER NOT NULL, cn TEXT NOT NULL, kind INTEGER NOT NULL,"
    " session INTEGER NOT NULL, expires INTEGER, UNIQUE(pool, off));"
    /* Indexes leave out the columns that change on every open/close where
     * they can: each one costs an index update per lease change. */
    "CREATE INDEX leases_cn ON leases(cn, pool, kind, off);"
    "CREATE INDEX leases_session ON leases(session) WHERE session != 0;"
    "CREATE INDEX leases_expiry ON leases(pool, expires, off)"
    " WHERE kind = 0 AND expires IS NOT NULL;"
    "CREATE TABLE sessions(id INTEGER PRIMARY KEY, cn TEXT NOT NULL,"
    " gateway TEXT NOT NULL, cid INTEGER NOT NULL, real_addr TEXT NOT NULL,"
    " ip4 TEXT NOT NULL, ip6 TEXT NOT NULL, started INTEGER NOT NULL,"
    " established INTEGER NOT NULL, last_seen INTEGER NOT NULL,"
    " state INTEGER NOT NULL, groups TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX sessions_cn ON sessions(cn, started, id);"
    "CREATE INDEX sessions_gw ON sessions(gateway, id);"
    "CREATE TABLE usage(cn TEXT NOT NULL, period TEXT NOT NULL,"
    " bytes_in INTEGER NOT NULL, bytes_out INTEGER NOT NULL,"
    " PRIMARY KEY(cn, period)) WITHOUT ROWID;"
    "CREATE TABLE quotas(cn TEXT NOT NULL, period TEXT NOT NULL,"
    " quota_bytes INTEGER NOT NULL, PRIMARY KEY(cn, period)) WITHOUT ROWID;"
    "CREATE TABLE audit(seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL,"
    " kind TEXT NOT NULL, actor TEXT NOT NULL, subject TEXT NOT NULL,"
    " detail TEXT NOT NULL, prev_hash BLOB NOT NULL, hash BLOB NOT NULL);"
    "CREATE TABLE policy(name TEXT PRIMARY KEY, body TEXT NOT NULL,"
    " updated INTEGER NOT NULL);"
    "CREATE TABLE subnets(cidr TEXT PRIMARY KEY, family INTEGER NOT NULL,"
    " lo BLOB NOT NULL, hi BLOB NOT NULL, owner_cn TEXT NOT NULL);"
    "CREATE INDEX subnets_owner ON subnets(owner_cn, cidr);"
    "CREATE TABLE requests(req_id INTEGER PRIMARY KEY,"
    " seq INTEGER NOT NULL UNIQUE, result BLOB NOT NULL);" FSM_SCHEMA_MACS
    "INSERT INTO meta VALUES(1, 0, 1, 0, 0, zeroblob(32));"
    "PRAGMA user_version = 2;";

/* Tables and their total order, for the state hash. */
static const char *const fsm_hash_sql[] = {
    "SELECT * FROM meta ORDER BY id",
    "SELECT * FROM gateways ORDER BY id",
    "SELECT * FROM pools ORDER BY name",
    "SELECT * FROM leases ORDER BY ip",
    "SELECT * FROM sessions ORDER BY id",
    "SELECT * FROM usage ORDER BY cn, period",
    "SELECT * FROM quotas ORDER BY cn, period",
    "SELECT * FROM audit ORDER BY seq",
    "SELECT * FROM policy ORDER BY name",
    "SELECT * FROM subnets ORDER BY cidr",
    "SELECT * FROM requests ORDER BY req_id",
    "SELECT * FROM macs ORDER BY mac",
    "SELECT * FROM audit_base",
};

static const char *const fsm_sql[FSM_ST_MAX] = {
    [FSM_ST_BEGIN] = "BEGIN",
    [FSM_ST_COMMIT] = "COMMIT",
    [FSM_ST_ROLLBACK] = "ROLLBACK",
    [FSM_ST_META_PUT] =
        "UPDATE meta SET clock = ?1, next_session = ?2,"
        " req_seq = ?3, audit_seq = ?4, audit_head = ?5"
        " WHERE id = 1",
    [FSM_ST_REQ_GET] = "SELECT result FROM requests WHERE req_id = ?1",
    [FSM_ST_REQ_PUT] =
        "INSERT INTO requests(req_id, seq, result)"
        " VALUES(?1, ?2, ?3)",
    [FSM_ST_REQ_EVICT] = "DELETE FROM requests WHERE seq = ?1",
    [FSM_ST_GW_GET] = "SELECT state, usage_seq FROM gateways WHERE id = ?1",
    [FSM_ST_GW_INSERT] =
        "INSERT INTO gateways(id, addr, state, last_seen,"
        " usage_seq) VALUES(?1, ?2, ?3, ?4, 0)",
    [FSM_ST_GW_HEARTBEAT] =
        "UPDATE gateways SET addr = ?2, last_seen = ?3,"
        " state = ?4 WHERE id = ?1",
    [FSM_ST_GW_SET_STATE] = "UPDATE gateways SET state = ?2 WHERE id = ?1",
    [FSM_ST_SUBNET_OWNER] = "SELECT owner_cn FROM subnets WHERE cidr = ?1",
    [FSM_ST_GW_ACTIVE_OTHERS] =
        "SELECT count(*) FROM gateways WHERE state = 0 AND id <> ?1",
    [FSM_ST_GW_SET_USAGE_SEQ] =
        "UPDATE gateways SET usage_seq = ?2"
        " WHERE id = ?1",
    [FSM_ST_POOL_GET] =
        "SELECT family, base, prefix, end_off, next, ttl,"
        " cidr FROM pools WHERE name = ?1",
    [FSM_ST_POOL_ALL] =
        "SELECT name, family, base, prefix, end_off"
        " FROM pools ORDER BY name",
    [FSM_ST_POOL_PUT] =
        "INSERT OR REPLACE INTO pools(name, family, cidr,"
        " base, prefix, lo, hi, first, end_off, next, ttl)"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,"
        " ?11)",
    [FSM_ST_POOL_SET_NEXT] = "UPDATE pools SET next = ?2 WHERE name = ?1",
    [FSM_ST_POOL_HAS_LEASES] = "SELECT 1 FROM leases WHERE pool = ?1 LIMIT 1",
    [FSM_ST_POOL_OVERLAP] =
        "SELECT name FROM pools WHERE family = ?1"
        " AND lo <= ?3 AND hi >= ?2 AND name != ?4"
        " ORDER BY name LIMIT 1",
    [FSM_ST_LEASE_BY_IP] =
        "SELECT cn, kind, session, expires, pool"
        " FROM leases WHERE ip = ?1",
    [FSM_ST_LEASE_AT] = "SELECT 1 FROM leases WHERE pool = ?1 AND off = ?2",
    [FSM_ST_LEASE_FREE_OF_CN] =
        "SELECT ip FROM leases WHERE cn = ?1"
        " AND pool = ?2 AND session = 0"
        " ORDER BY kind DESC, off LIMIT 1",
    [FSM_ST_LEASE_RECLAIM] =
        "SELECT ip, session FROM leases"
        " WHERE pool = ?1 AND kind = 0"
        " AND expires IS NOT NULL AND expires <= ?2"
        " ORDER BY expires, off LIMIT 1",
    [FSM_ST_LEASE_INSERT] =
        "INSERT INTO leases(ip, pool, off, cn, kind,"
        " session, expires)"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [FSM_ST_LEASE_ASSIGN] =
        "UPDATE leases SET cn = ?2, session = ?3,"
        " expires = NULL WHERE ip = ?1",
    [FSM_ST_LEASE_RESERVE] =
        "UPDATE leases SET cn = ?2, kind = 1,"
        " session = 0, expires = NULL WHERE ip = ?1",
    [FSM_ST_LEASE_PIN] = "UPDATE leases SET kind = 1 WHERE ip = ?1",
    [FSM_ST_LEASE_DELETE] = "DELETE FROM leases WHERE ip = ?1",
    [FSM_ST_LEASE_OF_SESSION] =
        "SELECT ip, pool FROM leases"
        " WHERE session = ?1 AND session != 0 ORDER BY ip",
    [FSM_ST_LEASE_RELEASE_SESSION] =
        "UPDATE leases SET session = 0, expires = ?2 +"
        " (SELECT ttl FROM pools WHERE pools.name = leases.pool)"
        " WHERE session = ?1 AND session != 0",
    [FSM_ST_LEASE_DETACH_SESSION] =
        "UPDATE leases SET session = 0"
        " WHERE session = ?1 AND session != 0",
    [FSM_ST_LEASE_ORPHAN_GW] =
        "UPDATE leases SET expires = ?2 +"
        " (SELECT ttl FROM pools WHERE pools.name = leases.pool)"
        " WHERE expires IS NULL AND session != 0 AND session IN"
        " (SELECT id FROM sessions WHERE gateway = ?1)",
    [FSM_ST_SESS_INSERT] =
        "INSERT INTO sessions(id, cn, gateway, cid,"
        " real_addr, ip4, ip6, started, established,"
        " last_seen, state, groups) VALUES(?1, ?2, ?3, ?4, ?5,"
        " ?6, ?7, ?8, 0, ?8, 0, ?9)",
    [FSM_ST_SESS_GET] =
        "SELECT cn, gateway, state FROM sessions"
        " WHERE id = ?1",
    [FSM_ST_SESS_OF_CN] =
        "SELECT s.id, s.gateway, s.state, g.state"
        " FROM sessions s JOIN gateways g"
        " ON g.id = s.gateway WHERE s.cn = ?1"
        " ORDER BY s.started, s.id",
    [FSM_ST_SESS_DELETE] = "DELETE FROM sessions WHERE id = ?1",
    [FSM_ST_SESS_ESTABLISH] =
        "UPDATE sessions SET state = 1,"
        " established = ?2, last_seen = ?2"
        " WHERE id = ?1",
    [FSM_ST_SESS_LIVE_OF_GW] =
        "SELECT id, cn FROM sessions"
        " WHERE gateway = ?1 AND state != 2"
        " ORDER BY id",
    [FSM_ST_SESS_ORPHAN_GW] =
        "UPDATE sessions SET state = 2"
        " WHERE gateway = ?1 AND state != 2",
    [FSM_ST_SESS_LIVE_OF_CN] =
        "SELECT s.id, s.gateway FROM sessions s"
        " JOIN gateways g ON g.id = s.gateway"
        " WHERE s.cn = ?1 AND s.state != 2"
        " AND g.state != 3 ORDER BY s.id",
    [FSM_ST_USAGE_GET] =
        "SELECT bytes_in, bytes_out FROM usage"
        " WHERE cn = ?1 AND period = ?2",
    [FSM_ST_USAGE_ADD] =
        "INSERT INTO usage(cn, period, bytes_in, bytes_out)"
        " VALUES(?1, ?2, ?3, ?4) ON CONFLICT(cn, period) DO UPDATE SET"
        " bytes_in = min(bytes_in + ?3, 4611686018427387904),"
        " bytes_out = min(bytes_out + ?4, 4611686018427387904)",
    [FSM_ST_QUOTA_GET] =
        "SELECT quota_bytes FROM quotas"
        " WHERE cn = ?1 AND period = ?2",
    [FSM_ST_QUOTA_PUT] =
        "INSERT OR REPLACE INTO quotas(cn, period,"
        " quota_bytes) VALUES(?1, ?2, ?3)",
    [FSM_ST_AUDIT_INSERT] =
        "INSERT INTO audit(seq, ts, kind, actor,"
        " subject, detail, prev_hash, hash)"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [FSM_ST_POLICY_GET] = "SELECT body FROM policy WHERE name = ?1",
    [FSM_ST_POLICY_PUT] =
        "INSERT OR REPLACE INTO policy(name, body,"
        " updated) VALUES(?1, ?2, ?3)",
    [FSM_ST_POLICY_DELETE] = "DELETE FROM policy WHERE name = ?1",
    [FSM_ST_SUBNET_OVERLAP] =
        "SELECT x FROM (SELECT cidr AS x FROM subnets WHERE family = ?1"
        " AND lo <= ?3 AND hi >= ?2 UNION ALL SELECT name FROM pools"
        " WHERE family = ?1 AND lo <= ?3 AND hi >= ?2) ORDER BY x LIMIT 1",
    [FSM_ST_SUBNET_INSERT] =
        "INSERT INTO subnets(cidr, family, lo, hi,"
        " owner_cn) VALUES(?1, ?2, ?3, ?4, ?5)",
    [FSM_ST_SUBNET_DELETE] = "DELETE FROM subnets WHERE cidr = ?1",
    [FSM_ST_MAC_GET] = "SELECT cn, session FROM macs WHERE mac = ?1",
    [FSM_ST_MAC_PUT] =
        "INSERT INTO macs VALUES(?1, ?2, ?3, ?4, ?5)"
        " ON CONFLICT(mac) DO UPDATE SET cn = ?2, session = ?3,"
        " gateway = ?4, updated = ?5",
    [FSM_ST_MAC_COUNT] = "SELECT count(*) FROM macs WHERE session = ?1",
    [FSM_ST_MAC_INHERIT] =
        "UPDATE macs SET session = ?2, gateway = ?3,"
        " updated = ?4 WHERE session = ?1",
    [FSM_ST_MAC_DELETE_SESSION] = "DELETE FROM macs WHERE session = ?1",
    [FSM_ST_AUDIT_HASH_AT] = "SELECT hash FROM audit WHERE seq = ?1",
    [FSM_ST_AUDIT_PRUNE] = "DELETE FROM audit WHERE seq <= ?1",
    [FSM_ST_AUDIT_BASE_PUT] =
        "UPDATE audit_base SET seq = ?1, hash = ?2"
        " WHERE id = 1",
};

/* ---- sqlite helpers ------------------------------------------------------ */

int fsm_sqlite_err(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return 0;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_FULL:
    case SQLITE_TOOBIG:
        return -ENOSPC;
    default:
        return -EIO;
    }
}

sqlite3_stmt *fsm_st(struct fsm *f, enum fsm_st id)
{
    sqlite3_stmt *s = f->st[id];
    sqlite3_reset(s);
    return s;
}

int fsm_step(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        return 1;
    }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE) {
        return 0;
    }
    return fsm_sqlite_err(rc);
}

int fsm_exec_st(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_DONE || rc == SQLITE_ROW) {
        return 0;
    }
    return fsm_sqlite_err(rc);
}

void fsm_bind_text(sqlite3_stmt *s, int i, const char *v)
{
    sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
}

/* uint64 values are stored as their int64 bit pattern; every place that
 * compares them (clock, expiry) stays below 2^63 by construction. */
void fsm_bind_u64(sqlite3_stmt *s, int i, uint64_t v)
{
    sqlite3_bind_int64(s, i, (sqlite3_int64)v);
}

uint64_t fsm_col_u64(sqlite3_stmt *s, int i)
{
    return (uint64_t)sqlite3_column_int64(s, i);
}

void fsm_col_text(sqlite3_stmt *s, int i, char *dst, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    ovha_strlcpy(dst, t != NULL ? (const char *)t : "", cap);
}

static int fsm_exec_sql(sqlite3 *db, const char *sql)
{
    return fsm_sqlite_err(sqlite3_exec(db, sql, NULL, NULL, NULL));
}

/* ---- open / close -------------------------------------------------------- */

static void fsm_finalize_all(struct fsm *f)
{
    for (int i = 0; i < FSM_ST_MAX; i++) {
        sqlite3_finalize(f->st[i]);
        f->st[i] = NULL;
    }
}

static int fsm_prepare_all(sqlite3 *db, sqlite3_stmt *st[FSM_ST_MAX])
{
    for (int i = 0; i < FSM_ST_MAX; i++) {
        int rc = sqlite3_prepare_v3(db, fsm_sql[i], -1,
                                    SQLITE_PREPARE_PERSISTENT, &st[i], NULL);
        if (rc != SQLITE_OK) {
            for (int j = 0; j <= i; j++) {
                sqlite3_finalize(st[j]);
                st[j] = NULL;
            }
            return rc == SQLITE_NOMEM ? -ENOMEM : -EINVAL;
        }
    }
    return 0;
}

static int fsm_open_db(sqlite3 **ret)
{
    /* SQLite's memory statistics take a global mutex on every allocation
     * (about 10% of an apply). Turning them off only works before SQLite
     * initialises and is process-wide; nothing in ovha reads them. When
     * SQLite is already initialised this fails harmlessly. */
    static bool configured;
    if (!configured) {
        configured = true;
        sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    }
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(":memory:", &db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                 SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_PRIVATECACHE,
                             NULL);
    if (rc != SQLITE_OK) {
        sqlite3_close(db);
        return rc == SQLITE_NOMEM ? -ENOMEM : -EIO;
    }
    /* A larger lookaside arena: most statement-time allocations are small
     * and short-lived. */
    sqlite3_db_config(db, SQLITE_DBCONFIG_LOOKASIDE, NULL, 512, 1024);
    *ret = db;
    return 0;
}

/* Connection settings; they are not part of the serialized state. */
static int fsm_pragmas(sqlite3 *db)
{
    return fsm_exec_sql(db,
                        "PRAGMA journal_mode = MEMORY;"
                        "PRAGMA synchronous = OFF;"
                        "PRAGMA temp_store = MEMORY;"
                        "PRAGMA foreign_keys = OFF;");
}

static int fsm_meta_load(sqlite3 *db, struct fsm_meta *m)
{
    sqlite3_stmt *s = NULL;
    int rv = -EINVAL;
    if (sqlite3_prepare_v2(db,
                           "SELECT clock, next_session, req_seq, audit_seq,"
                           " audit_head FROM meta WHERE id = 1",
                           -1, &s, NULL) != SQLITE_OK) {
        goto out;
    }
    if (sqlite3_step(s) != SQLITE_ROW ||
        sqlite3_column_bytes(s, 4) != FSM_HASH_LEN) {
        goto out;
    }
    m->clock = fsm_col_u64(s, 0);
    m->next_session = fsm_col_u64(s, 1);
    m->req_seq = fsm_col_u64(s, 2);
    m->audit_seq = fsm_col_u64(s, 3);
    memcpy(m->audit_head, sqlite3_column_blob(s, 4), FSM_HASH_LEN);
    sqlite3_finalize(s);
    s = NULL;
    if (sqlite3_prepare_v2(db, "SELECT seq FROM audit_base WHERE id = 1", -1,
                           &s, NULL) != SQLITE_OK ||
        sqlite3_step(s) != SQLITE_ROW) {
        goto out;
    }
    m->audit_base = fsm_col_u64(s, 0);
    rv = 0;
out:
    sqlite3_finalize(s);
    return rv;
}

static int fsm_meta_store(struct fsm *f)
{
    sqlite3_stmt *s = fsm_st(f, FSM_ST_META_PUT);
    fsm_bind_u64(s, 1, f->meta.clock);
    fsm_bind_u64(s, 2, f->meta.next_session);
    fsm_bind_u64(s, 3, f->meta.req_seq);
    fsm_bind_u64(s, 4, f->meta.audit_seq);
    sqlite3_bind_blob(s, 5, f->meta.audit_head, FSM_HASH_LEN, SQLITE_STATIC);
    return fsm_exec_st(s);
}

int fsm_new(const struct fsm_config *cfg, struct fsm **ret)
{
    struct fsm *f = ovha_calloc(1, sizeof(*f));
    if (f == NULL) {
        return -ENOMEM;
    }
    f->req_window =
        cfg != NULL && cfg->req_window != 0 ? cfg->req_window : FSM_REQ_WINDOW;
    f->audit_keep =
        cfg != NULL && cfg->audit_keep != 0 ? cfg->audit_keep : FSM_AUDIT_KEEP;
    int rv = fsm_open_db(&f->db);
    if (rv != 0) {
        goto err_free;
    }
    rv = fsm_pragmas(f->db);
    if (rv == 0) {
        rv = fsm_exec_sql(f->db, fsm_schema);
    }
    if (rv == 0) {
        rv = fsm_prepare_all(f->db, f->st);
    }
    if (rv == 0) {
        rv = fsm_meta_load(f->db, &f->meta);
    }
    if (rv != 0) {
        goto err_close;
    }
    *ret = f;
    return 0;

err_close:
    fsm_finalize_all(f);
    sqlite3_close(f->db);
err_free:
    ovha_free(f);
    return rv;
}

void fsm_free(struct fsm *f)
{
    if (f == NULL) {
        return;
    }
    fsm_finalize_all(f);
    sqlite3_close(f->db);
    ovha_free(f);
}

uint64_t fsm_clock(const struct fsm *f)
{
    return f->meta.clock;
}

uint64_t fsm_next_session_id(const struct fsm *f)
{
    return f->meta.next_session;
}

/* ---- audit chain --------------------------------------------------------- */

static size_t fsm_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[7 - i] = (uint8_t)(v >> (8 * i));
    }
    return 8;
}

static size_t fsm_put_str(uint8_t *p, const char *s, size_t n)
{
    p[0] = (uint8_t)(n >> 24);
    p[1] = (uint8_t)(n >> 16);
    p[2] = (uint8_t)(n >> 8);
    p[3] = (uint8_t)n;
    memcpy(p + 4, s, n);
    return 4 + n;
}

#define FSM_AUDIT_DETAIL_MAX 512

/* hash = SHA256(prev_hash || seq(u64 BE) || canonical record) where the
 * canonical record is ts(u64 BE) then kind, actor, subject, detail, each as
 * u32 BE length and bytes. Fields longer than their column limit are cut
 * at the limit before hashing and storing, so both agree. */
static void fsm_audit_hash(const uint8_t prev[FSM_HASH_LEN],
                           uint64_t seq,
                           uint64_t ts,
                           const char *kind,
                           const char *actor,
                           const char *subject,
                           const char *detail,
                           uint8_t out[FSM_HASH_LEN])
{
    uint8_t buf[FSM_HASH_LEN + 16 + 16 + PROTO_ID_MAX * 2 + PROTO_CN_MAX +
                FSM_AUDIT_DETAIL_MAX];
    size_t n = 0;
    memcpy(buf, prev, FSM_HASH_LEN);
    n += FSM_HASH_LEN;
    n += fsm_put_u64(buf + n, seq);
    n += fsm_put_u64(buf + n, ts);
    n += fsm_put_str(buf + n, kind, strnlen(kind, PROTO_ID_MAX - 1));
    n += fsm_put_str(buf + n, actor, strnlen(actor, PROTO_ID_MAX - 1));
    n += fsm_put_str(buf + n, subject, strnlen(subject, PROTO_CN_MAX - 1));
    n +=
        fsm_put_str(buf + n, detail, strnlen(detail, FSM_AUDIT_DETAIL_MAX - 1));
    ovha_sha256(buf, n, out);
}

/* Drops the records up to and including seq; the base keeps their last
 * hash so the rest still verifies. Runs in the apply transaction (a
 * refused command rolls it back with the rest). */
static int fsm_audit_prune(struct fsm *f, uint64_t seq)
{
    uint8_t hash[FSM_HASH_LEN];
    sqlite3_stmt *s = fsm_st(f, FSM_ST_AUDIT_HASH_AT);
    fsm_bind_u64(s, 1, seq);
    int rv = fsm_step(s);
    if (rv != 1 || sqlite3_column_bytes(s, 0) != FSM_HASH_LEN) {
        sqlite3_reset(s);
        return rv < 0 ? rv : -EIO;
    }
    memcpy(hash, sqlite3_column_blob(s, 0), FSM_HASH_LEN);
    sqlite3_reset(s);
    s = fsm_st(f, FSM_ST_AUDIT_PRUNE);
    fsm_bind_u64(s, 1, seq);
    rv = fsm_exec_st(s);
    if (rv == 0) {
        s = fsm_st(f, FSM_ST_AUDIT_BASE_PUT);
        fsm_bind_u64(s, 1, seq);
        sqlite3_bind_blob(s, 2, hash, FSM_HASH_LEN, SQLITE_TRANSIENT);
        rv = fsm_exec_st(s);
    }
    if (rv == 0) {
        f->meta.audit_base = seq;
    }
    return rv;
}

int fsm_audit(struct fsm *f,
              const char *kind,
              const char *subject,
              const char *detail,
              struct proto_result *r)
{
    const struct proto_cmd *c = &f->cmd;
    const char *actor = c->actor[0] != '\0' ? c->actor : c->gateway;
    uint64_t seq = f->meta.audit_seq + 1;
    uint8_t hash[FSM_HASH_LEN];

    fsm_audit_hash(f->meta.audit_head, seq, f->meta.clock, kind, actor, subject,
                   detail, hash);
    sqlite3_stmt *s = fsm_st(f, FSM_ST_AUDIT_INSERT);
    fsm_bind_u64(s, 1, seq);
    fsm_bind_u64(s, 2, f->meta.clock);
    sqlite3_bind_text(s, 3, kind, (int)strnlen(kind, PROTO_ID_MAX - 1),
                      SQLITE_STATIC);
    sqlite3_bind_text(s, 4, actor, (int)strnlen(actor, PROTO_ID_MAX - 1),
                      SQLITE_STATIC);
    sqlite3_bind_text(s, 5, subject, (int)strnlen(subject, PROTO_CN_MAX - 1),
                      SQLITE_STATIC);
    sqlite3_bind_text(s, 6, detail,
                      (int)strnlen(detail, FSM_AUDIT_DETAIL_MAX - 1),
                      SQLITE_STATIC);
    sqlite3_bind_blob(s, 7, f->meta.audit_head, FSM_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_blob(s, 8, hash, FSM_HASH_LEN, SQLITE_STATIC);
    int rv = fsm_exec_st(s);
    if (rv != 0) {
        return rv;
    }
    f->meta.audit_seq = seq;
    memcpy(f->meta.audit_head, hash, FSM_HASH_LEN);
    r->audit_seq = seq;
    /* Small batches: a prune is a short DELETE, not a stall. */
    if (seq - f->meta.audit_base > f->audit_keep + f->audit_keep / 64 + 1) {
        return fsm_audit_prune(f, seq - f->audit_keep);
    }
    return 0;
}

static bool fsm_blob_is(sqlite3_stmt *s, int col, const uint8_t *want)
{
    return sqlite3_column_bytes(s, col) == FSM_HASH_LEN &&
           memcmp(sqlite3_column_blob(s, col), want, FSM_HASH_LEN) == 0;
}

int fsm_audit_verify(struct fsm *f, uint64_t *ret_bad_seq)
{
    sqlite3_stmt *s = NULL;
    uint8_t head[FSM_HASH_LEN] = { 0 };
    uint64_t expect = 1;
    uint64_t bad = 0;
    int rc = fsm_query_audit_base(f, &expect, head);
    if (rc != 0) {
        return rc;
    }
    expect++; /* the first kept record follows the base */
    rc = sqlite3_prepare_v2(f->db,
                            "SELECT seq, ts, kind, actor, subject, detail,"
                            " prev_hash, hash FROM audit ORDER BY seq",
                            -1, &s, NULL);
    if (rc != SQLITE_OK) {
        return fsm_sqlite_err(rc) ? fsm_sqlite_err(rc) : -EIO;
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        uint64_t seq = fsm_col_u64(s, 0);
        const char *t[4];
        for (int i = 0; i < 4; i++) {
            t[i] = (const char *)sqlite3_column_text(s, 2 + i);
            t[i] = t[i] != NULL ? t[i] : "";
        }
        uint8_t h[FSM_HASH_LEN];
        fsm_audit_hash(head, seq, fsm_col_u64(s, 1), t[0], t[1], t[2], t[3], h);
        if (seq != expect) {
            bad = expect;
            break;
        }
        if (!fsm_blob_is(s, 6, head) || !fsm_blob_is(s, 7, h)) {
            bad = seq;
            break;
        }
        memcpy(head, h, FSM_HASH_LEN);
        expect++;
    }
    int err = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? 0 : fsm_sqlite_err(rc);
    sqlite3_finalize(s);
    if (err != 0) {
        return err;
    }
    /* Records cut off the end: the meta row still names the real head. */
    if (bad == 0 && (expect - 1 != f->meta.audit_seq ||
                     memcmp(head, f->meta.audit_head, FSM_HASH_LEN) != 0)) {
        bad = expect;
    }
    *ret_bad_seq = bad;
    return 0;
}

int fsm_query_audit_base(struct fsm *f,
                         uint64_t *ret_seq,
                         uint8_t ret_hash[FSM_HASH_LEN])
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(
        f->db, "SELECT seq, hash FROM audit_base WHERE id = 1", -1, &s, NULL);
    int rv = -EIO;
    if (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW &&
        sqlite3_column_bytes(s, 1) == FSM_HASH_LEN) {
        *ret_seq = fsm_col_u64(s, 0);
        memcpy(ret_hash, sqlite3_column_blob(s, 1), FSM_HASH_LEN);
        rv = 0;
    }
    sqlite3_finalize(s);
    return rv;
}

int fsm_query_chain_head(struct fsm *f,
                         uint64_t *ret_seq,
                         uint8_t ret_hash[FSM_HASH_LEN])
{
    *ret_seq = f->meta.audit_seq;
    memcpy(ret_hash, f->meta.audit_head, FSM_HASH_LEN);
    return 0;
}

/* ---- apply --------------------------------------------------------------- */

static void fsm_result_refuse(struct proto_result *r,
                              enum proto_reason reason,
                              const char *detail)
{
    memset(r, 0, sizeof(*r));
    r->status = PROTO_STATUS_REFUSED;
    r->reason = reason;
    ovha_strlcpy(r->detail, detail, sizeof(r->detail));
}

/* Looks up a remembered req_id. 1 = found (result in *r), 0 = not, <0. */
static int fsm_req_lookup(struct fsm *f,
                          uint64_t req_id,
                          struct proto_result *r)
{
    sqlite3_stmt *s = fsm_st(f, FSM_ST_REQ_GET);
    fsm_bind_u64(s, 1, req_id);
    int rv = fsm_step(s);
    if (rv <= 0) {
        return rv;
    }
    const void *blob = sqlite3_column_blob(s, 0);
    int n = sqlite3_column_bytes(s, 0);
    rv = proto_result_decode(blob, (size_t)n, r);
    sqlite3_reset(s);
    if (rv != 0) {
        return rv == -ENOMEM ? -ENOMEM : -EIO;
    }
    r->replayed = true;
    return 1;
}

/* Remembers req_id's result and forgets the one that left the window. */
static int fsm_req_store(struct fsm *f,
                         uint64_t req_id,
                         const struct proto_result *r)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rv = proto_result_encode(r, &buf, &len);
    if (rv != 0) {
        return rv == -ENOMEM ? -ENOMEM : -EIO;
    }
    uint64_t seq = f->meta.req_seq + 1;
    sqlite3_stmt *s = fsm_st(f, FSM_ST_REQ_PUT);
    fsm_bind_u64(s, 1, req_id);
    fsm_bind_u64(s, 2, seq);
    sqlite3_bind_blob(s, 3, buf, (int)len, SQLITE_STATIC);
    rv = fsm_exec_st(s);
    ovha_free(buf);
    if (rv != 0) {
        return rv;
    }
    f->meta.req_seq = seq;
    if (seq > f->req_window) {
        s = fsm_st(f, FSM_ST_REQ_EVICT);
        fsm_bind_u64(s, 1, seq - f->req_window);
        rv = fsm_exec_st(s);
    }
    return rv;
}

static int fsm_run(struct fsm *f, enum fsm_st id)
{
    return fsm_exec_st(fsm_st(f, id));
}

/* Runs the handler inside the transaction; see the file comment. A refusal
 * rolls the whole transaction back and opens a fresh one for the clock and
 * the req_id entry: refusals are rare, and the success path then needs no
 * savepoint statements. */
static int fsm_apply_txn(struct fsm *f, struct proto_result *r)
{
    const struct proto_cmd *c = &f->cmd;
    struct fsm_meta saved = f->meta;
    int rv = fsm_run(f, FSM_ST_BEGIN);
    if (rv != 0) {
        return rv;
    }
    if (c->ts_ms > f->meta.clock && c->ts_ms < (1ULL << 62)) {
        f->meta.clock = c->ts_ms;
    }
    struct fsm_meta before_body = f->meta;
    rv = fsm_cmd_dispatch(f, c, r);
    if (rv == 0 && r->status != PROTO_STATUS_OK) {
        /* Nothing the handler did stands, so the result names nothing it
         * did either (no evictions, no takeover): only why it refused. */
        enum proto_reason why = r->reason;
        char detail[sizeof(r->detail)];
        memcpy(detail, r->detail, sizeof(detail));
        fsm_result_refuse(r, why, detail);
        rv = fsm_run(f, FSM_ST_ROLLBACK);
        if (rv == 0) {
            rv = fsm_run(f, FSM_ST_BEGIN);
        }
        f->meta = before_body;
    }
    if (rv == 0 && c->req_id != 0) {
        rv = fsm_req_store(f, c->req_id, r);
    }
    if (rv == 0) {
        rv = fsm_meta_store(f);
    }
    if (rv == 0) {
        rv = fsm_run(f, FSM_ST_COMMIT);
    }
    if (rv != 0) {
        if (sqlite3_get_autocommit(f->db) == 0) {
            fsm_run(f, FSM_ST_ROLLBACK);
        }
        f->meta = saved;
    }
    return rv;
}

int fsm_apply(struct fsm *f,
              const uint8_t *buf,
              size_t len,
              struct proto_result *ret)
{
    memset(ret, 0, sizeof(*ret));
    int rv = proto_cmd_decode(buf, len, &f->cmd);
    if (rv == -ENOMEM) {
        return rv;
    }
    if (rv != 0) {
        fsm_result_refuse(ret, PROTO_R_MALFORMED, "command does not decode");
        return 0;
    }
    if (f->cmd.version != PROTO_VERSION) {
        fsm_result_refuse(ret, PROTO_R_UNSUPPORTED_VERSION,
                          "unsupported command version");
        goto out;
    }
    if (f->cmd.req_id != 0) {
        rv = fsm_req_lookup(f, f->cmd.req_id, ret);
        if (rv != 0) {
            rv = rv > 0 ? 0 : rv;
            goto out;
        }
    }
    rv = fsm_apply_txn(f, ret);
    if (rv != 0) {
        memset(ret, 0, sizeof(*ret));
    }
out:
    proto_cmd_clear(&f->cmd);
    return rv;
}

/* ---- snapshots ----------------------------------------------------------- */

int fsm_snapshot(struct fsm *f, uint8_t **ret_buf, size_t *ret_len)
{
    sqlite3_int64 size = 0;
    unsigned char *p = sqlite3_serialize(f->db, "main", &size, 0);
    if (p == NULL) {
        return -ENOMEM;
    }
    *ret_buf = p;
    *ret_len = (size_t)size;
    return 0;
}

void fsm_snapshot_free(uint8_t *buf)
{
    sqlite3_free(buf);
}

/* Accepts a snapshot of this schema version, or of version 1 after adding
 * the MAC map. Returns 0 or -EINVAL (another version, not an FSM). */
static int fsm_restore_upgrade(sqlite3 *db)
{
    sqlite3_stmt *s = NULL;
    int version = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL) ==
            SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
        version = sqlite3_column_int(s, 0);
    }
    sqlite3_finalize(s);
    if (version == 1) {
        if (sqlite3_exec(db,
                         FSM_SCHEMA_MACS
                         "ALTER TABLE sessions ADD COLUMN groups TEXT NOT NULL"
                         " DEFAULT '';"
                         "PRAGMA user_version = 2;",
                         NULL, NULL, NULL) != SQLITE_OK) {
            return -EINVAL;
        }
        version = 2;
    }
    return version == FSM_SCHEMA_VERSION ? 0 : -EINVAL;
}

/* Opens a second connection over a copy of buf and checks that it is an
 * ovha FSM database of our schema version before anything is swapped. */
static int fsm_restore_open(const uint8_t *buf, size_t len, sqlite3 **ret)
{
    sqlite3 *db = NULL;
    int rv = fsm_open_db(&db);
    if (rv != 0) {
        return rv;
    }
    unsigned char *copy = sqlite3_malloc64(len == 0 ? 1 : len);
    if (copy == NULL) {
        sqlite3_close(db);
        return -ENOMEM;
    }
    memcpy(copy, buf, len);
    int rc = sqlite3_deserialize(
        db, "main", copy, (sqlite3_int64)len, (sqlite3_int64)len,
        SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_RESIZEABLE);
    if (rc != SQLITE_OK) {
        sqlite3_close(db);
        return rc == SQLITE_NOMEM ? -ENOMEM : -EINVAL;
    }
    rv = fsm_restore_upgrade(db);
    if (rv == 0) {
        rv = fsm_pragmas(db) != 0 ? -EINVAL : 0;
    }
    if (rv != 0) {
        sqlite3_close(db);
        return rv;
    }
    *ret = db;
    return 0;
}

int fsm_restore(struct fsm *f, const uint8_t *buf, size_t len)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st[FSM_ST_MAX] = { 0 };
    struct fsm_meta meta;

    int rv = fsm_restore_open(buf, len, &db);
    if (rv != 0) {
        return rv;
    }
    rv = fsm_prepare_all(db, st);
    if (rv == 0) {
        rv = fsm_meta_load(db, &meta);
    }
    if (rv != 0) {
        for (int i = 0; i < FSM_ST_MAX; i++) {
            sqlite3_finalize(st[i]);
        }
        sqlite3_close(db);
        return rv == -ENOMEM ? rv : -EINVAL;
    }
    fsm_finalize_all(f);
    sqlite3_close(f->db);
    f->db = db;
    memcpy(f->st, st, sizeof(st));
    f->meta = meta;
    return 0;
}

/* ---- state hash ---------------------------------------------------------- */

/* Feeds one value with a type tag so that 1, '1' and x'01' differ. */
static void fsm_hash_value(struct ovha_sha256_ctx *h, sqlite3_stmt *s, int i)
{
    uint8_t tag = (uint8_t)sqlite3_column_type(s, i);
    uint8_t b[8];
    ovha_sha256_update(h, &tag, 1);
    switch (tag) {
    case SQLITE_INTEGER:
        fsm_put_u64(b, (uint64_t)sqlite3_column_int64(s, i));
        ovha_sha256_update(h, b, 8);
        break;
    case SQLITE_FLOAT: {
        double d = sqlite3_column_double(s, i);
        uint64_t u;
        memcpy(&u, &d, sizeof(u));
        fsm_put_u64(b, u);
        ovha_sha256_update(h, b, 8);
        break;
    }
    case SQLITE_TEXT:
    case SQLITE_BLOB: {
        const void *p = tag == SQLITE_TEXT
                            ? (const void *)sqlite3_column_text(s, i)
                            : sqlite3_column_blob(s, i);
        int n = sqlite3_column_bytes(s, i);
        fsm_put_u64(b, (uint64_t)n);
        ovha_sha256_update(h, b, 8);
        if (n > 0) {
            ovha_sha256_update(h, p, (size_t)n);
        }
        break;
    }
    default: /* NULL: the tag alone */
        break;
    }
}

int fsm_state_hash(struct fsm *f, uint8_t ret[FSM_HASH_LEN])
{
    struct ovha_sha256_ctx *h = ovha_sha256_begin();
    int rv = 0;
    if (h == NULL) {
        return -ENOMEM;
    }
    size_t ntables = sizeof(fsm_hash_sql) / sizeof(fsm_hash_sql[0]);
    for (size_t t = 0; t < ntables && rv == 0; t++) {
        sqlite3_stmt *s = NULL;
        int rc = sqlite3_prepare_v2(f->db, fsm_hash_sql[t], -1, &s, NULL);
        if (rc != SQLITE_OK) {
            rv = fsm_sqlite_err(rc) ? fsm_sqlite_err(rc) : -EIO;
            break;
        }
        ovha_sha256_update(h, fsm_hash_sql[t], strlen(fsm_hash_sql[t]));
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            int ncol = sqlite3_column_count(s);
            for (int i = 0; i < ncol; i++) {
                fsm_hash_value(h, s, i);
            }
        }
        if (rc != SQLITE_DONE) {
            rv = fsm_sqlite_err(rc) ? fsm_sqlite_err(rc) : -EIO;
        }
        sqlite3_finalize(s);
    }
    ovha_sha256_end(h, ret);
    return rv;
}

int fsm_debug_exec(struct fsm *f, const char *sql)
{
    return fsm_exec_sql(f->db, sql);
}
