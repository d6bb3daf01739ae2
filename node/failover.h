/* node/failover: gateway liveness, self-fencing, drain and standby
 * (clustered mode; DESIGN.md §5, docs/cluster.md).
 *
 * Every tick (250 ms):
 * - Leader only: a gateway whose heartbeat (its row's last_seen in the
 *   FSM) has not changed for cluster.gateway_lease_ms is proposed DOWN;
 *   the FSM orphans its sessions, whose addresses stay with their CNs so
 *   the clients take them over on another gateway. A new leader first
 *   watches for a whole lease: it has not seen the older heartbeats.
 * - Every node: with no known leader for cluster.fence_timeout_ms it is
 *   *fenced*: it admits nobody and kills its clients ("RESTART,[N]": they
 *   move to their next remote). Config validation guarantees it fences
 *   before the leader can declare it down.
 * - Every node: while its own gateway is DRAINING it admits nobody and
 *   kills its clients the same way; a standby (cluster.role) moves itself
 *   to ACTIVE when fewer than cluster.standby_min_active other gateways
 *   are active, and back to STANDBY when enough are (keeping its clients).
 *
 * Clients of a local session that the cluster orphaned or gave to another
 * gateway are killed by replicated.c's reconciliation.
 */
#ifndef OVHA_NODE_FAILOVER_H
#define OVHA_NODE_FAILOVER_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "node/config.h"

struct rft;
struct fsm;
struct node_clients;
struct node_failover;

/* The message drained and fenced clients get: restart, next remote. */
#define NODE_FAILOVER_KILL_MSG "RESTART,[N]"

struct node_failover_stats {
    bool fenced;
    uint64_t fences;       /* times this node fenced itself */
    uint64_t fence_kills;  /* clients killed while fenced */
    uint64_t drain_kills;  /* clients killed while draining */
    uint64_t marked_down;  /* gateways this node (as leader) marked down */
    uint64_t role_changes; /* standby <-> active proposals */
};

struct node_repl;

/* rft, fsm and repl (which proposes the state changes) are borrowed. */
int node_failover_new(uv_loop_t *loop,
                      const struct node_cfg *cfg,
                      struct rft *rft,
                      struct fsm *fsm,
                      struct node_repl *repl,
                      struct node_failover **ret);
void node_failover_start(struct node_failover *fo,
                         struct node_clients *clients);
/* NULL when this gateway may admit a client now, else why not (static
 * text: "fenced: no raft majority", "gateway draining", ...). */
const char *node_failover_refusal(struct node_failover *fo);
void node_failover_get_stats(const struct node_failover *fo,
                             struct node_failover_stats *ret);
/* After rft_close (no proposal callback is due); cb(data) once freed. */
void node_failover_close(struct node_failover *fo,
                         void (*cb)(void *data),
                         void *data);

#endif
