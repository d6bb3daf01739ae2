/* node/audit: this node's archive of the replicated audit chain
 * (clustered mode).
 *
 * The replicated state keeps only the newest FSM_AUDIT_KEEP records (so
 * snapshots do not grow with the cluster's age); every node appends each
 * record, in order, to its own archive file before it is pruned: one JSON
 * object per line, {"seq", "ts", "kind", "actor", "subject", "detail",
 * "prev_hash", "hash"} (hashes in hex), so the file re-verifies with the
 * chain's own rule (docs/fsm.md). A node that lagged past the prune (it
 * was down, or it installed a snapshot) writes {"gap_from", "gap_to"} and
 * goes on from the first record it still has; another node's archive
 * holds the missing ones. At start it resumes after the file's last
 * record. Writes run in the thread pool (node/job); fdatasync at most
 * every 10 s and at close.
 */
#ifndef OVHA_NODE_AUDIT_H
#define OVHA_NODE_AUDIT_H

#include <stdint.h>

#include <uv.h>

#include "node/config.h"

struct fsm;
struct node_audit;

struct node_audit_stats {
    uint64_t archived; /* records appended */
    uint64_t next_seq; /* the next record to archive */
    uint64_t gaps;     /* gap lines written */
    uint64_t failures; /* passes that could not write */
    char path[512];
    char last_error[256];
};

/* Opens (creates, 0600) the archive at cfg's path and reads where it
 * ended. Returns 0 or a negative errno (logged). */
int node_audit_new(uv_loop_t *loop,
                   const struct node_cfg *cfg,
                   struct fsm *fsm,
                   struct node_audit **ret);
void node_audit_start(struct node_audit *a);
/* A pass soon (tests; passes also run every second once started). */
void node_audit_kick(struct node_audit *a);
void node_audit_get_stats(const struct node_audit *a,
                          struct node_audit_stats *ret);
void node_audit_close(struct node_audit *a, void (*cb)(void *data), void *data);

#endif
