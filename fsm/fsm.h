/* fsm: ovha's deterministic replicated state machine over in-memory SQLite.
 *
 * Every node applies the same Raft log entries, in the same order, to its own
 * `struct fsm` and reaches the same state: this module uses no wall clock, no
 * randomness, no I/O and no libuv or raft. Time comes from the commands
 * (clock = max(clock, command ts)); every choice (which IP, which session to
 * evict, whether a takeover is allowed) is made inside fsm_apply.
 *
 * Layout. fsm_apply takes the ENCODED command (the raft entry's bytes), so
 * untrusted bytes are decoded here through proto/'s codec (proto_cmd_decode)
 * into proto/'s plain C structs; protobuf-c never shows. The result type is
 * proto/'s `struct proto_result` rather than an fsm_ struct of its own: it is
 * wire vocabulary, so the same struct is stored (encoded) for idempotent
 * replays and travels back to a forwarding follower in FwdResponse without
 * a conversion layer.
 *
 * Threading: an fsm is used from one thread (the loop thread). Nothing here
 * blocks except on memory.
 *
 * The schema, each command's meaning and refusals, the determinism rules and
 * the audit record's canonical form are described in docs/fsm.md.
 */
#ifndef OVHA_FSM_H
#define OVHA_FSM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"

struct fsm;

/* Configuration that shapes replicated state: it must be identical on every
 * node of a cluster (it is not carried in commands). */
struct fsm_config {
    uint32_t req_window; /* remembered req_ids; 0 = FSM_REQ_WINDOW */
    uint32_t audit_keep; /* audit records kept; 0 = FSM_AUDIT_KEEP */
};

#define FSM_REQ_WINDOW           10000
/* The state keeps the newest FSM_AUDIT_KEEP audit records (plus up to a
 * 64th more before a prune): a snapshot, and the stall writing it, do
 * not grow with the cluster's age. Each node archives the records before
 * they go (node/audit.c); the chain stays verifiable from the kept base. */
#define FSM_AUDIT_KEEP           16384
#define FSM_DEFAULT_LEASE_TTL_MS (24ULL * 3600 * 1000)
#define FSM_MAX_SESSIONS_PER_CN  64
#define FSM_HASH_LEN             32

/* Creates an empty state machine. cfg may be NULL for defaults. Returns 0,
 * -ENOMEM or -EIO (sqlite could not open). */
int fsm_new(const struct fsm_config *cfg, struct fsm **ret);
/* Accepts NULL. */
void fsm_free(struct fsm *f);

/* Applies one encoded command and writes what it decided into *ret.
 *
 * Returns 0 whenever the outcome is deterministic, including business
 * refusals and malformed bytes (ret->status = PROTO_STATUS_REFUSED with
 * ret->reason saying why). A malformed command changes no state. A retried
 * req_id still in the window returns the first result with replayed = true
 * and changes no state.
 *
 * Returns a negative errno only for a local failure that another node would
 * not see (-ENOMEM, -EIO): the state is rolled back to before the command
 * and the caller should apply the same entry again. */
int fsm_apply(struct fsm *f,
              const uint8_t *buf,
              size_t len,
              struct proto_result *ret);

/* ---- snapshots and comparison ------------------------------------------ */

/* Serialises the whole database (sqlite3_serialize). *ret_buf is released
 * with fsm_snapshot_free. Returns 0 or -ENOMEM. */
int fsm_snapshot(struct fsm *f, uint8_t **ret_buf, size_t *ret_len);
void fsm_snapshot_free(uint8_t *buf);
/* Replaces the state with a snapshot (copied; the caller keeps buf). The new
 * database is opened and checked first, so on error (-EINVAL for a buffer
 * that is not an ovha FSM snapshot, -ENOMEM) the old state is untouched. */
int fsm_restore(struct fsm *f, const uint8_t *buf, size_t len);
/* SHA-256 over a canonical dump of every table in a fixed order. Two nodes
 * with the same applied log have the same hash. Returns 0 or -EIO/-ENOMEM. */
int fsm_state_hash(struct fsm *f, uint8_t ret[FSM_HASH_LEN]);

/* ---- audit chain -------------------------------------------------------
 * Record n: hash = SHA256(prev_hash || seq || canonical record), prev_hash of
 * record 1 is 32 zero bytes (docs/fsm.md gives the canonical form). */

/* Walks the chain. *ret_bad_seq = 0 when intact, else the first record that
 * does not verify (a missing record is named by the seq expected there).
 * Returns 0, or -EIO/-ENOMEM when it could not read. */
int fsm_audit_verify(struct fsm *f, uint64_t *ret_bad_seq);
/* The last pruned record: the chain kept in the state starts after seq,
 * linked to hash (seq 0 and zeroes when nothing was pruned). */
int fsm_query_audit_base(struct fsm *f,
                         uint64_t *ret_seq,
                         uint8_t ret_hash[FSM_HASH_LEN]);
int fsm_query_chain_head(struct fsm *f,
                         uint64_t *ret_seq,
                         uint8_t ret_hash[FSM_HASH_LEN]);

struct fsm_audit_record {
    uint64_t seq;
    uint64_t ts;
    char kind[PROTO_ID_MAX];
    char actor[PROTO_ID_MAX];
    char subject[PROTO_CN_MAX];
    char detail[512];
    uint8_t prev_hash[FSM_HASH_LEN];
    uint8_t hash[FSM_HASH_LEN];
};

/* ---- read-only queries --------------------------------------------------
 * Iterators call cb once per row in a stable order; a non-zero return from
 * cb stops the walk and is returned. They return 0, or -EIO/-ENOMEM. The
 * structs passed to cb are valid only during the call. */

enum fsm_session_state {
    FSM_SESSION_CONNECTING = 0,
    FSM_SESSION_ESTABLISHED = 1,
    FSM_SESSION_ORPHANED = 2,
};

struct fsm_lease_info {
    char ip[PROTO_ADDR_MAX];
    char pool[PROTO_ID_MAX];
    char cn[PROTO_CN_MAX];
    bool reserved;       /* operator reservation: never reassigned */
    uint64_t session_id; /* 0 = idle */
    uint64_t expires_at; /* 0 = held by a live session (or reserved) */
};

struct fsm_session_info {
    uint64_t id;
    char cn[PROTO_CN_MAX];
    char gateway[PROTO_ID_MAX];
    uint64_t cid;
    char real_addr[PROTO_ADDR_MAX];
    char ip4[PROTO_ADDR_MAX];
    char ip6[PROTO_ADDR_MAX];
    uint64_t started;
    uint64_t established; /* 0 until SessionEstablished */
    enum fsm_session_state state;
    char groups[PROTO_GROUPS_MAX]; /* "a,b" as the SessionOpen gave them */
};

struct fsm_gateway_info {
    char id[PROTO_ID_MAX];
    char addr[PROTO_ADDR_MAX];
    enum proto_gw_state state;
    uint64_t last_seen;
    uint64_t usage_seq; /* last UsageCharge seq charged */
};

struct fsm_usage_info {
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t quota_bytes; /* 0 = no quota */
};

struct fsm_subnet_info {
    char cidr[PROTO_ADDR_MAX];
    char owner_cn[PROTO_CN_MAX];
};

/* MACs one session may register (a bridged client flooding made-up
 * source addresses must not grow the replicated state without bound). */
#define FSM_MACS_PER_SESSION 16

/* One entry of the MAC map (bridged deployments). */
struct fsm_mac_info {
    char mac[PROTO_MAC_MAX];
    char cn[PROTO_CN_MAX];
    uint64_t session_id;
    char gateway[PROTO_ID_MAX];
};

/* One address pool. */
struct fsm_pool_info {
    char name[PROTO_ID_MAX];
    char cidr[PROTO_ADDR_MAX]; /* canonical, as PoolPut stored it */
    int family;                /* 4 or 6 */
    uint64_t lease_ttl_ms;     /* how long an idle lease is kept */
    uint64_t size;             /* addresses it hands out */
    uint64_t leases;           /* its leases now: live, idle or reserved */
};

typedef int (*fsm_mac_cb)(const struct fsm_mac_info *m, void *data);
typedef int (*fsm_pool_cb)(const struct fsm_pool_info *p, void *data);
typedef int (*fsm_lease_cb)(const struct fsm_lease_info *l, void *data);
typedef int (*fsm_session_cb)(const struct fsm_session_info *s, void *data);
typedef int (*fsm_gateway_cb)(const struct fsm_gateway_info *g, void *data);
typedef int (*fsm_audit_cb)(const struct fsm_audit_record *a, void *data);
typedef int (*fsm_subnet_cb)(const struct fsm_subnet_info *s, void *data);

/* The leases of one CN (cn != NULL) or all leases (cn == NULL), by IP. */
int fsm_query_leases(struct fsm *f,
                     const char *cn,
                     fsm_lease_cb cb,
                     void *data);
/* Returns -ENOENT when there is no such session. */
int fsm_query_session(struct fsm *f, uint64_t id, struct fsm_session_info *ret);
/* Sessions on one gateway (gateway != NULL) or all, by id. */
int fsm_query_sessions(struct fsm *f,
                       const char *gateway,
                       fsm_session_cb cb,
                       void *data);
int fsm_query_cn_sessions(struct fsm *f,
                          const char *cn,
                          fsm_session_cb cb,
                          void *data);
/* Returns -ENOENT for an unknown gateway. */
int fsm_query_gateway(struct fsm *f,
                      const char *id,
                      struct fsm_gateway_info *ret);
int fsm_query_gateways(struct fsm *f, fsm_gateway_cb cb, void *data);
/* Zeroes when the CN has no usage for the period. */
int fsm_query_usage(struct fsm *f,
                    const char *cn,
                    const char *period,
                    struct fsm_usage_info *ret);
/* Records with seq >= from_seq, in order. */
int fsm_query_audit(struct fsm *f,
                    uint64_t from_seq,
                    fsm_audit_cb cb,
                    void *data);
/* Subnets owned by cn (the client's iroutes), or all when cn is NULL. */
int fsm_query_subnets(struct fsm *f,
                      const char *cn,
                      fsm_subnet_cb cb,
                      void *data);
/* Every pool, by name. */
int fsm_query_pools(struct fsm *f, fsm_pool_cb cb, void *data);
/* The MAC map, by MAC. */
int fsm_query_macs(struct fsm *f, fsm_mac_cb cb, void *data);
/* *ret_body is ovha_malloc'ed (caller frees); -ENOENT if absent. */
int fsm_query_policy(struct fsm *f, const char *name, char **ret_body);
/* The FSM's clock: the largest command timestamp applied so far. */
uint64_t fsm_clock(const struct fsm *f);
/* The id the next SessionOpen will get. Ids are given in log order, so a
 * session id at or above it was committed elsewhere but not yet applied
 * here. */
uint64_t fsm_next_session_id(const struct fsm *f);

/* ---- for tests ---------------------------------------------------------- */

/* Checks structural invariants: each live session's IPs are leases of its
 * CN attached to it, no session holds an IP another CN leases, every lease
 * lies in its pool. Returns 0 or -EPROTO with a message in err. */
int fsm_check_invariants(struct fsm *f, char *err, size_t errlen);
/* Runs raw SQL against the state (tests tamper with the audit chain). */
int fsm_debug_exec(struct fsm *f, const char *sql);

#endif
