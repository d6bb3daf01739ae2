/* raft: replication for ovha (libraft 0.15 behind this header).
 *
 * Only files under raft/ include <raft.h>; this header forward-declares the
 * libraft types it mentions so that node/ can hold them without pulling in
 * libraft. Two parts: the FSM adapter (the glue that lets libraft drive a
 * `struct fsm`, fsm/fsm.h) and the runtime (libraft on the node's loop over
 * the mTLS transport, proposals with forwarding to the leader, the
 * post-election barrier, membership and status).
 */
#ifndef OVHA_RAFT_H
#define OVHA_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct fsm;
struct proto_result;
struct raft_fsm;    /* libraft's FSM vtable */
struct raft_buffer; /* libraft's buffer */

/* Fills *rf (version 2: apply, snapshot, snapshot_finalize, restore) so
 * that libraft applies entries to f. An entry's bytes are an encoded
 * proto_cmd and go to fsm_apply unchanged.
 *
 * The `result` libraft hands to raft_apply's callback is a
 * `struct rft_entry_results *` owned by the adapter: one proto_result per
 * command in the entry, valid until the next entry is applied (libraft
 * 0.15 calls the leader's callback right after fsm->apply), so copy what
 * you need in the callback. Followers' results are dropped by libraft;
 * node/ reads what it needs through fsm queries.
 *
 * An fsm_apply failure that is local (-ENOMEM) is returned to libraft as
 * RAFT_NOMEM: the entry is not marked applied and will be applied again.
 * Snapshots are sqlite3_serialize buffers released by snapshot_finalize;
 * restore copies the buffer into a new database, then frees libraft's.
 *
 * rft_fsm_init returns 0 or -ENOMEM. rft_fsm_close releases the adapter's
 * state (not f) and accepts an rf that was never initialised if zeroed. */
int rft_fsm_init(struct raft_fsm *rf, struct fsm *f);
void rft_fsm_close(struct raft_fsm *rf);

struct rft_entry_results {
    const struct proto_result *results;
    size_t n;
};

/* Counters for tests and /metrics. */
struct rft_fsm_stats {
    uint64_t applied;      /* entries applied (fsm_apply returned 0) */
    uint64_t refused;      /* of those, results with a refusal */
    uint64_t apply_errors; /* local failures returned to libraft */
    uint64_t snapshots;    /* snapshots taken */
    uint64_t restores;     /* snapshots restored */
};
void rft_fsm_stats(const struct raft_fsm *rf, struct rft_fsm_stats *ret);

/* Frames an encoded command as a raft entry, in a buffer allocated with
 * raft_malloc as raft_apply requires (libraft owns it once raft_apply
 * succeeds): u32 little-endian length, the bytes, zero padding to a
 * multiple of 8 (libraft 0.15 corrupts its segments otherwise). Returns 0,
 * -EINVAL (too long) or -ENOMEM. */
int rft_cmd_buffer(const uint8_t *cmd, size_t len, struct raft_buffer *ret);

/* ======================================================================
 * The replication runtime: libraft on the node's loop.
 * ====================================================================== */

#define RFT_ADDR_MAX    64
#define RFT_MAX_SERVERS 32

/* Member roles (libraft's values). */
#define RFT_ROLE_STANDBY      0
#define RFT_ROLE_VOTER        1
#define RFT_ROLE_SPARE        2
/* Node states (libraft's values). */
#define RFT_STATE_UNAVAILABLE 0
#define RFT_STATE_FOLLOWER    1
#define RFT_STATE_CANDIDATE   2
#define RFT_STATE_LEADER      3

struct rft_config {
    uint64_t id;                /* raft id, > 0, bound to the certificate */
    char address[RFT_ADDR_MAX]; /* host:port peers dial */
    char data_dir[256];         /* raft log and snapshots; must exist */
    /* mTLS material (PEM). All empty = plain TCP, for unit tests only. */
    char ca_file[256], cert_file[256], key_file[256];
    unsigned election_timeout_ms;  /* default 1000 */
    unsigned heartbeat_timeout_ms; /* default 100 */
    unsigned snapshot_threshold;   /* default 8192 */
    unsigned snapshot_trailing;    /* default 8192 */
    uint64_t propose_timeout_ms;   /* default 5000 */
    unsigned max_inflight;         /* proposals; default 65536 */
    bool bootstrap; /* a pristine dir becomes a one-voter cluster */
};

/* Upper bounds (ms) of the proposal latency buckets. */
#define RFT_LAT_BUCKETS 12
extern const uint64_t rft_latency_bounds_ms[RFT_LAT_BUCKETS];

struct rft_stats {
    uint64_t proposed, committed, failed, unknown, retries;
    uint64_t batches; /* raft entries the proposals went out in */
    uint64_t forwarded, forward_served;
    uint64_t elections_won;
    uint64_t latency_ms_sum; /* over finished proposals */
    /* Proposal latency (propose to callback) of finished proposals:
     * latency_le_ms[i] counts those within rft_latency_bounds_ms[i]
     * (cumulative, as Prometheus buckets); latency_count counts all. */
    uint64_t latency_le_ms[RFT_LAT_BUCKETS];
    uint64_t latency_count;
};

struct rft_status {
    uint64_t id;
    char address[RFT_ADDR_MAX];
    int role; /* RFT_STATE_* */
    uint64_t term;
    uint64_t leader_id;
    char leader_addr[RFT_ADDR_MAX];
    uint64_t commit_index, last_applied, last_index;
    bool ready; /* leader whose post-election barrier completed */
    uint64_t snapshots, restores; /* taken / installed by this node */
    struct {
        uint64_t id;
        char address[RFT_ADDR_MAX];
        int role; /* RFT_ROLE_* */
    } servers[RFT_MAX_SERVERS];
    size_t nservers;
    struct rft_stats stats;
};

struct rft;

/* status: 0 = committed, and res is what the FSM decided (which may be a
 * refusal: res->status); OVHA_ENOTLEADER = no leader accepted it before the
 * deadline (it was never applied); OVHA_EUNKNOWN = an attempt was lost
 * mid-flight and no retry confirmed it (it may have been applied, at most
 * once thanks to the req_id); OVHA_ECLOSED = the runtime closed; -errno.
 * res is valid only during the call. */
typedef void (*rft_propose_cb)(void *data,
                               int status,
                               const struct proto_result *res);
typedef void (*rft_change_cb)(void *data, int status);

/* Creates the runtime over f (borrowed; must outlive r). Returns 0,
 * -ENOMEM, -EINVAL (bad config; rft_errmsg-like text in errbuf). */
int rft_new(uv_loop_t *loop,
            const struct rft_config *cfg,
            struct fsm *f,
            struct rft **ret,
            char *errbuf,
            size_t errlen);
/* Bootstraps if asked and the dir is pristine, then starts raft and the
 * forwarding listener. Errors are in rft_errmsg. */
int rft_start(struct rft *r);
/* Fails queued proposals with OVHA_ECLOSED, closes raft, its I/O and the
 * transport; cb fires once everything is released, then r is freed. */
void rft_close(struct rft *r, void (*cb)(void *data), void *data);

/* Proposes an encoded proto_cmd (copied). timeout_ms 0 = the configured
 * default. cb fires exactly once unless this returns an error:
 * OVHA_ECLOSED, OVHA_ELIMIT (too many in flight), -ENOMEM. */
int rft_propose(struct rft *r,
                const uint8_t *cmd,
                size_t len,
                uint64_t timeout_ms,
                rft_propose_cb cb,
                void *data);

/* Membership, on the leader only (OVHA_ENOTLEADER otherwise), one change
 * at a time (-EBUSY). rft_add adds id as a spare, then assigns role (a
 * voter is caught up first); if that promotion fails the server is removed
 * again, so a failed join leaves no member behind. rft_transfer answers
 * once another node is known to lead. Failures leave text in
 * rft_errmsg. */
int rft_add(struct rft *r,
            uint64_t id,
            const char *address,
            int role,
            rft_change_cb cb,
            void *data);
int rft_assign(struct rft *r,
               uint64_t id,
               int role,
               rft_change_cb cb,
               void *data);
int rft_remove(struct rft *r, uint64_t id, rft_change_cb cb, void *data);
/* id 0 = let libraft pick the most up-to-date voter. */
int rft_transfer(struct rft *r, uint64_t id, rft_change_cb cb, void *data);

void rft_get_status(struct rft *r, struct rft_status *ret);
/* Starts the thread that takes libraft's io_destroy(2) calls off the loop
 * (aio_defer.c); called by rft_new. Returns 0 or a negative errno. */
int rft_aio_defer_start(void);
const char *rft_errmsg(const struct rft *r);
const char *rft_role_name(int state);
const char *rft_member_role_name(int role);

#endif
