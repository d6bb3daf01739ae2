/* raft: the adapter between libraft's struct raft_fsm and fsm/.
 *
 * Happy path: libraft calls rft_fsm_apply for each committed entry in
 * order; the adapter decodes nothing itself and hands the bytes to
 * fsm_apply, which never fails for a bad command (a refusal is a result).
 * Failure modes: a local error (out of memory) is returned to libraft so
 * the entry is re-applied; a snapshot that cannot be serialised is
 * reported as RAFT_NOMEM (libraft retries at the next threshold); a
 * snapshot that does not restore is RAFT_CORRUPT and the old state stays.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include <raft.h>

#include "base/base.h"
#include "fsm/fsm.h"
#include "proto/proto.h"
#include "raft/entry.h"
#include "raft/raft.h"

struct rft_fsm_ctx {
    struct fsm *fsm;
    /* Results of the newest entry, one per command in it. */
    struct proto_result *results;
    size_t cap;
    struct rft_entry_results out;
    struct rft_fsm_stats stats;
};

/* An entry holds one or more commands, each a u32 little-endian length
 * and its encoded bytes, then zero bytes up to a multiple of 8 (a zero
 * length ends the list): libraft 0.15 writes entry buffers into its
 * segments unpadded and corrupts the segment when a length is not a
 * multiple of 8 (later libraft rejects such buffers, canonical/raft
 * cd3bd28). Several commands per entry is how proposals are batched.
 *
 * Counts the records; 0 when buf is not such a frame. A malformed frame
 * goes to fsm_apply whole, which refuses it on every node alike. */
static size_t rft_entry_count(const struct raft_buffer *buf)
{
    const uint8_t *p = buf->base;
    size_t off = 0;
    size_t n = 0;
    if (buf->len < 4 || buf->len % 8 != 0) {
        return 0;
    }
    while (buf->len - off >= 4) {
        uint32_t len = rft_entry_len(p + off);
        if (len == 0) {
            break; /* padding */
        }
        if (len > buf->len - off - 4) {
            return 0;
        }
        off += 4 + len;
        n++;
    }
    /* What follows the last record is padding only. */
    return buf->len - off < 8 ? n : 0;
}

static int rft_fsm_reserve(struct rft_fsm_ctx *x, size_t n)
{
    if (n <= x->cap) {
        return 0;
    }
    void *r = ovha_realloc(x->results, n * sizeof(*x->results));
    if (r == NULL) {
        return -ENOMEM;
    }
    x->results = r;
    x->cap = n;
    return 0;
}

static int rft_fsm_apply_one(struct rft_fsm_ctx *x,
                             const uint8_t *cmd,
                             size_t len,
                             struct proto_result *res)
{
    int rv = fsm_apply(x->fsm, cmd, len, res);
    if (rv != 0) {
        x->stats.apply_errors++;
        return rv == -ENOMEM ? RAFT_NOMEM : RAFT_IOERR;
    }
    x->stats.applied++;
    x->stats.refused += res->status != PROTO_STATUS_OK;
    return 0;
}

/* A local failure part-way returns an error and libraft applies the
 * entry again: the commands before it replay their first result (every
 * node command carries a req_id), so nothing is applied twice. */
static int rft_fsm_apply(struct raft_fsm *rf,
                         const struct raft_buffer *buf,
                         void **result)
{
    struct rft_fsm_ctx *x = rf->data;
    size_t n = rft_entry_count(buf);
    if (rft_fsm_reserve(x, n == 0 ? 1 : n) != 0) {
        return RAFT_NOMEM;
    }
    if (n == 0) {
        int rv = rft_fsm_apply_one(x, buf->base, buf->len, &x->results[0]);
        if (rv != 0) {
            return rv;
        }
        n = 1;
    } else {
        const uint8_t *p = buf->base;
        size_t off = 0;
        for (size_t i = 0; i < n; i++) {
            uint32_t len = rft_entry_len(p + off);
            int rv = rft_fsm_apply_one(x, p + off + 4, len, &x->results[i]);
            if (rv != 0) {
                return rv;
            }
            off += 4 + len;
        }
    }
    x->out.results = x->results;
    x->out.n = n;
    *result = &x->out;
    return 0;
}

static uint64_t rft_fsm_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int rft_fsm_snapshot(struct raft_fsm *rf,
                            struct raft_buffer *bufs[],
                            unsigned *n_bufs)
{
    struct rft_fsm_ctx *x = rf->data;
    uint8_t *p = NULL;
    size_t len = 0;
    struct raft_buffer *b = raft_malloc(sizeof(*b));
    if (b == NULL) {
        return RAFT_NOMEM;
    }
    /* Serialising runs on the loop: its time is a stall every decision
     * in flight sees, so it is logged. */
    uint64_t t0 = rft_fsm_now_us();
    if (fsm_snapshot(x->fsm, &p, &len) != 0) {
        raft_free(b);
        return RAFT_NOMEM;
    }
    b->base = p;
    b->len = len;
    *bufs = b;
    *n_bufs = 1;
    x->stats.snapshots++;
    LOG_INFO("rft", "snapshot: %zu bytes serialised in %llu us", len,
             (unsigned long long)(rft_fsm_now_us() - t0));
    return 0;
}

/* Version 2: the FSM frees what it allocated (sqlite memory). */
static int rft_fsm_snapshot_finalize(struct raft_fsm *rf,
                                     struct raft_buffer *bufs[],
                                     unsigned *n_bufs)
{
    (void)rf;
    if (*bufs != NULL) {
        for (unsigned i = 0; i < *n_bufs; i++) {
            fsm_snapshot_free((*bufs)[i].base);
        }
        raft_free(*bufs);
    }
    *bufs = NULL;
    *n_bufs = 0;
    return 0;
}

static int rft_fsm_restore(struct raft_fsm *rf, struct raft_buffer *buf)
{
    struct rft_fsm_ctx *x = rf->data;
    int rv = fsm_restore(x->fsm, buf->base, buf->len);
    if (rv != 0) {
        return rv == -ENOMEM ? RAFT_NOMEM : RAFT_CORRUPT;
    }
    /* Rare and worth an operator's attention: this node was too far
     * behind for the log alone (or restarted from a snapshot). */
    LOG_INFO("rft", "installed a snapshot of %zu bytes", buf->len);
    raft_free(buf->base); /* ours on success */
    x->stats.restores++;
    return 0;
}

int rft_fsm_init(struct raft_fsm *rf, struct fsm *f)
{
    struct rft_fsm_ctx *x = ovha_calloc(1, sizeof(*x));
    if (x == NULL) {
        return -ENOMEM;
    }
    x->fsm = f;
    memset(rf, 0, sizeof(*rf));
    rf->version = 2;
    rf->data = x;
    rf->apply = rft_fsm_apply;
    rf->snapshot = rft_fsm_snapshot;
    rf->snapshot_finalize = rft_fsm_snapshot_finalize;
    rf->restore = rft_fsm_restore;
    return 0;
}

void rft_fsm_close(struct raft_fsm *rf)
{
    if (rf == NULL || rf->data == NULL) {
        return;
    }
    struct rft_fsm_ctx *x = rf->data;
    ovha_free(x->results);
    ovha_free(x);
    rf->data = NULL;
}

void rft_fsm_stats(const struct raft_fsm *rf, struct rft_fsm_stats *ret)
{
    const struct rft_fsm_ctx *x = rf->data;
    *ret = x->stats;
}

int rft_cmd_buffer(const uint8_t *cmd, size_t len, struct raft_buffer *ret)
{
    if (len > UINT32_MAX - 12) {
        return -EINVAL;
    }
    size_t total = rft_entry_size(len, 1);
    uint8_t *p = raft_malloc(total);
    if (p == NULL) {
        return -ENOMEM;
    }
    size_t used = rft_entry_put(p, cmd, len);
    memset(p + used, 0, total - used);
    ret->base = p;
    ret->len = total;
    return 0;
}
