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

#include <raft.h>

#include "base/base.h"
#include "fsm/fsm.h"
#include "proto/proto.h"
#include "raft/raft.h"

struct rft_fsm_ctx {
    struct fsm *fsm;
    struct proto_result last; /* result of the newest entry */
    struct rft_fsm_stats stats;
};

/* An entry is a u32 little-endian length, the encoded command, then zero
 * bytes up to a multiple of 8: libraft 0.15 writes entry buffers to its
 * segments unpadded and corrupts the segment when a length is not a
 * multiple of 8 (later libraft rejects such buffers, canonical/raft
 * cd3bd28). An entry that does not parse this way goes to fsm_apply whole,
 * which refuses it as malformed on every node alike. */
static void rft_entry_payload(const struct raft_buffer *buf,
                              const uint8_t **ret,
                              size_t *ret_len)
{
    const uint8_t *p = buf->base;
    *ret = p;
    *ret_len = buf->len;
    if (buf->len < 4 || buf->len % 8 != 0) {
        return;
    }
    uint32_t n = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                 (uint32_t)p[3] << 24;
    if (n <= buf->len - 4 && buf->len - 4 - n < 8) {
        *ret = p + 4;
        *ret_len = n;
    }
}

static int rft_fsm_apply(struct raft_fsm *rf,
                         const struct raft_buffer *buf,
                         void **result)
{
    struct rft_fsm_ctx *x = rf->data;
    const uint8_t *cmd;
    size_t len;
    rft_entry_payload(buf, &cmd, &len);
    int rv = fsm_apply(x->fsm, cmd, len, &x->last);
    if (rv != 0) {
        x->stats.apply_errors++;
        return rv == -ENOMEM ? RAFT_NOMEM : RAFT_IOERR;
    }
    x->stats.applied++;
    x->stats.refused += x->last.status != PROTO_STATUS_OK;
    *result = &x->last;
    return 0;
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
    if (fsm_snapshot(x->fsm, &p, &len) != 0) {
        raft_free(b);
        return RAFT_NOMEM;
    }
    b->base = p;
    b->len = len;
    *bufs = b;
    *n_bufs = 1;
    x->stats.snapshots++;
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
    if (rf == NULL) {
        return;
    }
    ovha_free(rf->data);
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
    size_t total = (4 + len + 7) & ~(size_t)7; /* see rft_entry_payload */
    uint8_t *p = raft_malloc(total);
    if (p == NULL) {
        return -ENOMEM;
    }
    p[0] = (uint8_t)len;
    p[1] = (uint8_t)(len >> 8);
    p[2] = (uint8_t)(len >> 16);
    p[3] = (uint8_t)(len >> 24);
    memcpy(p + 4, cmd, len);
    memset(p + 4 + len, 0, total - 4 - len);
    ret->base = p;
    ret->len = total;
    return 0;
}
