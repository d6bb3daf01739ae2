/* node/shaping: this gateway's clients shaped on its tun device
 * (enforce/shape).
 *
 * Rates come with each client's decision (the upstream answer's
 * bandwidth, or the local policy's down_kbps / up_kbps); a client over its
 * quota with cluster.quota_action throttle gets at most
 * cluster.quota_throttle_kbps both ways. Every pass (node/job, once a
 * second) hands the whole set of local clients to enforce/shape, which
 * converges the kernel: a new client is shaped within a second of its
 * connect, a rate change is a class change, a client that left loses its
 * class, and a class or filter deleted by hand comes back. IPv4 clients
 * only; bridged (tap) gateways are not shaped. Until the first client with
 * a rate, the device is left alone (no qdiscs, no IFB redirect); after
 * that the layout stays, with the default class unshaped.
 */
#ifndef OVHA_NODE_SHAPING_H
#define OVHA_NODE_SHAPING_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "node/config.h"

struct node_clients;
struct node_shaping;

struct node_shaping_stats {
    uint64_t passes, failures;
    uint64_t clients;                 /* shaped after the last pass */
    uint64_t added, changed, removed; /* cumulative, from enforce */
    /* Changes made by clean passes whose client set was the same as the
     * previous clean pass's: a class or filter was altered by hand (or the
     * device recreated) and the pass put it back. */
    uint64_t repairs;
    char last_error[256];
};

/* clients is borrowed and must outlive s. Returns 0 or a negative errno
 * (logged). */
int node_shaping_new(uv_loop_t *loop,
                     const struct node_cfg *cfg,
                     struct node_clients *clients,
                     struct node_shaping **ret);
void node_shaping_start(struct node_shaping *s);
void node_shaping_get_stats(const struct node_shaping *s,
                            struct node_shaping_stats *ret);
/* Waits for a running pass; the classes stay (a restarted node takes them
 * over); cb(data) when freed. */
void node_shaping_close(struct node_shaping *s,
                        void (*cb)(void *data),
                        void *data);

#endif
