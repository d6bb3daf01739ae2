/* node/firewall: the replicated firewall policy enforced on this gateway
 * (clustered mode, tun devices; docs/firewall.md).
 *
 * The policy is the FSM's policy row "firewall" (a JSON document that
 * enforce/fw parses; written through PUT /v1/policy/firewall). Members
 * are the live sessions of the whole cluster with their addresses and
 * groups: a rule naming a group must match a client on any gateway, as a
 * destination too. Each pass (node/job, every cluster.route_interval_ms
 * and on change):
 *   - no policy row: our table is removed (nothing is filtered);
 *   - the policy changed, nothing applied yet, or the table was found
 *     altered: the whole table is applied in one transaction;
 *   - otherwise clients that came, went or changed groups are set
 *     element updates only;
 *   - every NODE_FW_CHECK_PASSES passes the kernel table is compared with
 *     what was applied; a hand alteration is repaired in the next pass.
 */
#ifndef OVHA_NODE_FIREWALL_H
#define OVHA_NODE_FIREWALL_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "node/config.h"

#define NODE_FW_POLICY_NAME  "firewall" /* the FSM policy row */
#define NODE_FW_CHECK_PASSES 5

struct fsm;
struct node_fw;

struct node_fw_stats {
    bool enforcing;       /* a policy is applied now */
    uint64_t passes;      /* reconcile passes run */
    uint64_t failures;    /* passes that reported an error */
    uint64_t applies;     /* whole-table applies */
    uint64_t updates;     /* member element transactions */
    uint64_t drifts;      /* checks that found the table altered */
    uint64_t members;     /* clients in the table */
    char last_error[256]; /* "" after a clean pass */
};

/* Returns 0, or a negative errno (logged). */
int node_fw_new(uv_loop_t *loop,
                const struct node_cfg *cfg,
                struct fsm *fsm,
                struct node_fw **ret);
void node_fw_start(struct node_fw *f);
/* The replicated state changed: reconcile soon (coalesced). */
void node_fw_kick(struct node_fw *f);
void node_fw_get_stats(const struct node_fw *f, struct node_fw_stats *ret);
/* Our table as the kernel listed it after the last pass that changed it
 * (a copy, free() it), or NULL when none was applied. */
char *node_fw_compiled(const struct node_fw *f);
/* Waits for a running pass; the table stays (a restarted node takes it
 * over); cb(data) when freed. */
void node_fw_close(struct node_fw *f, void (*cb)(void *data), void *data);

#endif
