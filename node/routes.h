/* node/routes: kernel routes derived from the replicated state (clustered
 * mode, cluster.routes).
 *
 * Desired routes, rebuilt from the FSM every cluster.route_interval_ms and
 * whenever node_routes_kick() is called:
 *   - a live session on another gateway: its address /32 via that
 *     gateway's underlay address (so traffic for it that reaches this
 *     gateway, e.g. from a site behind a local client, goes there);
 *   - a registered site subnet whose owner CN has a live session on
 *     another gateway: the subnet via that gateway; on this gateway: the
 *     subnet via the tun device (openvpn's iroute picks the client).
 * enforce/route converges the kernel to them in a worker job (netlink
 * blocks), touching only routes of cluster.route_protocol in
 * cluster.route_table; a route deleted or changed by hand comes back at
 * the next pass. Gateways that are down contribute nothing: their clients
 * are moving.
 *
 * Bridged mode (bridge: section, openvpn.dev_type tap) has no client
 * routes (the clients are on the LAN's layer 2); instead the same pass
 * converges bridge.name's forwarding database to the replicated MAC map
 * (enforce/fdb): a MAC of a client here points at openvpn's tap device, a
 * MAC of a client elsewhere at bridge.uplink, and the tap device is kept
 * in the bridge.
 */
#ifndef OVHA_NODE_ROUTES_H
#define OVHA_NODE_ROUTES_H

#include <stdint.h>

#include <uv.h>

#include "node/config.h"

struct fsm;
struct node_routes;

struct node_routes_stats {
    uint64_t passes;                   /* reconcile jobs run */
    uint64_t failures;                 /* passes that reported an error */
    uint64_t desired;                  /* routes in the last desired set */
    uint64_t added, replaced, removed; /* cumulative, from enforce */
    char last_error[256];              /* the last pass's; "" if clean */
    /* Changes (routes and MACs added, replaced, removed, tap re-attached)
     * made by clean passes whose desired set was the same as the previous
     * clean pass's: the kernel had drifted (a change by hand, a device
     * recreated) and the pass repaired it. */
    uint64_t repairs;
    bool bridged; /* the fdb part below is in use */
    struct {
        uint64_t desired;                  /* MACs in the last desired set */
        uint64_t added, replaced, removed; /* cumulative, from enforce */
        uint64_t attached;                 /* tap (re)enslaved */
    } fdb;
};

/* Opens the netlink backend. Returns 0, or a negative errno (logged). */
int node_routes_new(uv_loop_t *loop,
                    const struct node_cfg *cfg,
                    struct fsm *fsm,
                    struct node_routes **ret);
void node_routes_start(struct node_routes *nr);
/* The replicated state changed: reconcile soon (coalesced). */
void node_routes_kick(struct node_routes *nr);
void node_routes_get_stats(const struct node_routes *nr,
                           struct node_routes_stats *ret);
/* Waits for a running job; cb(data) when freed. Routes stay installed (a
 * restarted node reconciles them; a removed node's routes are the
 * operator's to clear, `ip route flush proto 233`). */
void node_routes_close(struct node_routes *nr,
                       void (*cb)(void *data),
                       void *data);

#endif
