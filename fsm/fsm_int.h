/* fsm internals shared by fsm.c (core, snapshots, audit), fsm_cmd.c
 * (command handlers), fsm_query.c and fsm_ip.c. Not a public header. */
#ifndef OVHA_FSM_INT_H
#define OVHA_FSM_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "fsm/fsm.h"

#define FSM_SCHEMA_VERSION 2

/* Prepared statements, cached per fsm (fsm.c holds their SQL). */
enum fsm_st {
    FSM_ST_BEGIN,
    FSM_ST_COMMIT,
    FSM_ST_ROLLBACK,
    FSM_ST_META_PUT,
    FSM_ST_REQ_GET,
    FSM_ST_REQ_PUT,
    FSM_ST_REQ_EVICT,
    FSM_ST_GW_GET,
    FSM_ST_GW_INSERT,
    FSM_ST_GW_HEARTBEAT,
    FSM_ST_GW_SET_STATE,
    FSM_ST_GW_SET_USAGE_SEQ,
    FSM_ST_GW_ACTIVE_OTHERS,
    FSM_ST_SUBNET_OWNER,
    FSM_ST_POOL_GET,
    FSM_ST_POOL_ALL,
    FSM_ST_POOL_PUT,
    FSM_ST_POOL_SET_NEXT,
    FSM_ST_POOL_HAS_LEASES,
    FSM_ST_POOL_OVERLAP,
    FSM_ST_LEASE_BY_IP,
    FSM_ST_LEASE_AT,
    FSM_ST_LEASE_FREE_OF_CN,
    FSM_ST_LEASE_RECLAIM,
    FSM_ST_LEASE_INSERT,
    FSM_ST_LEASE_ASSIGN,
    FSM_ST_LEASE_RESERVE,
    FSM_ST_LEASE_PIN,
    FSM_ST_LEASE_DELETE,
    FSM_ST_LEASE_OF_SESSION,
    FSM_ST_LEASE_RELEASE_SESSION,
    FSM_ST_LEASE_DETACH_SESSION,
    FSM_ST_LEASE_ORPHAN_GW,
    FSM_ST_SESS_INSERT,
    FSM_ST_SESS_GET,
    FSM_ST_SESS_OF_CN,
    FSM_ST_SESS_DELETE,
    FSM_ST_SESS_ESTABLISH,
    FSM_ST_SESS_LIVE_OF_GW,
    FSM_ST_SESS_ORPHAN_GW,
    FSM_ST_SESS_LIVE_OF_CN,
    FSM_ST_USAGE_GET,
    FSM_ST_USAGE_ADD,
    FSM_ST_QUOTA_GET,
    FSM_ST_QUOTA_PUT,
    FSM_ST_AUDIT_INSERT,
    FSM_ST_POLICY_GET,
    FSM_ST_POLICY_PUT,
    FSM_ST_POLICY_DELETE,
    FSM_ST_SUBNET_OVERLAP,
    FSM_ST_SUBNET_INSERT,
    FSM_ST_SUBNET_DELETE,
    FSM_ST_MAC_GET,
    FSM_ST_MAC_PUT,
    FSM_ST_MAC_COUNT,
    FSM_ST_MAC_INHERIT,
    FSM_ST_MAC_DELETE_SESSION,
    FSM_ST_AUDIT_HASH_AT,
    FSM_ST_AUDIT_PRUNE,
    FSM_ST_AUDIT_BASE_PUT,
    FSM_ST_MAX,
};

/* The singleton meta row, cached in memory and written once per apply. */
struct fsm_meta {
    uint64_t clock;
    uint64_t next_session;
    uint64_t req_seq;
    uint64_t audit_seq;
    uint8_t audit_head[FSM_HASH_LEN];
    uint64_t audit_base; /* audit_base.seq (that table holds it) */
};

struct fsm {
    sqlite3 *db;
    sqlite3_stmt *st[FSM_ST_MAX];
    struct fsm_meta meta;
    uint32_t req_window;
    uint32_t audit_keep;
    struct proto_cmd cmd; /* decoded command being applied */
};

/* ---- sqlite helpers (fsm.c) --------------------------------------------- */

/* The cached statement, reset and with its bindings cleared. */
sqlite3_stmt *fsm_st(struct fsm *f, enum fsm_st id);
/* Steps a statement that returns no row, then resets it. 0 or -errno. */
int fsm_exec_st(sqlite3_stmt *s);
/* Steps once: 1 for a row, 0 for done (and resets), -errno on error. */
int fsm_step(sqlite3_stmt *s);
int fsm_sqlite_err(int rc);
void fsm_bind_text(sqlite3_stmt *s, int i, const char *v);
void fsm_bind_u64(sqlite3_stmt *s, int i, uint64_t v);
uint64_t fsm_col_u64(sqlite3_stmt *s, int i);
/* Copies a text column into a fixed buffer ("" for NULL). */
void fsm_col_text(sqlite3_stmt *s, int i, char *dst, size_t cap);

/* Appends one audit record and chains it; sets r->audit_seq. */
int fsm_audit(struct fsm *f,
              const char *kind,
              const char *subject,
              const char *detail,
              struct proto_result *r);

/* ---- command handlers (fsm_cmd.c) ----------------------------------------
 * Each returns 0 with the decision in *r (a refusal included) or -errno.
 * A refusal rolls back everything the handler wrote. */
int fsm_cmd_dispatch(struct fsm *f,
                     const struct proto_cmd *c,
                     struct proto_result *r);

/* ---- IP arithmetic (fsm_ip.c) -------------------------------------------- */

struct fsm_ip {
    int family;    /* 4 or 6 */
    uint8_t a[16]; /* network order; IPv4 uses a[0..3], the rest is zero */
};

/* 0 or -EINVAL. */
int fsm_ip_parse(const char *s, struct fsm_ip *ret);
/* "a.b.c.d/n" or "x::/n" with no host bits set. 0 or -EINVAL. */
int fsm_cidr_parse(const char *s, struct fsm_ip *ret_base, unsigned *ret_pfx);
void fsm_ip_format(const struct fsm_ip *ip, char *buf, size_t cap);
/* base + off (off below the pool's size, so no carry out of the prefix). */
void fsm_ip_add(const struct fsm_ip *base, uint64_t off, struct fsm_ip *ret);
/* True when ip lies in base/pfx; *ret_off is its offset (saturated). */
bool fsm_ip_offset(const struct fsm_ip *base,
                   unsigned pfx,
                   const struct fsm_ip *ip,
                   uint64_t *ret_off);
/* First and last address of base/pfx as 16-byte big-endian keys. */
void fsm_cidr_range(const struct fsm_ip *base,
                    unsigned pfx,
                    uint8_t lo[16],
                    uint8_t hi[16]);
/* Host offsets a pool hands out: [FSM_POOL_FIRST, *ret_end). 0 or -EINVAL
 * when the prefix leaves too few addresses. */
#define FSM_POOL_FIRST 2
int fsm_pool_bounds(int family, unsigned pfx, uint64_t *ret_end);

#endif
