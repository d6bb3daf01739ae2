/* enforce/route: kernel routes as desired state.
 *
 * The node derives the routes it wants from the replicated state (a VPN
 * client homed on another gateway is reached via that gateway's underlay
 * address; a site-to-site client's subnets follow the gateway that holds
 * the client) and hands the whole set to enf_route_apply(), which
 * converges the kernel to it: missing routes are added, routes of ours
 * that differ (another gateway, device or metric) are replaced, routes of
 * ours that are not desired are deleted. "Ours" means: in the configured
 * table with the configured routing protocol id; nothing else is ever
 * touched, so routes of openvpn, the operator or a routing daemon are
 * safe. Applying the same set twice changes nothing (idempotent).
 *
 * Calls block on netlink (a dump and a few requests): the node runs them
 * in a uv_queue_work job, never on the loop. One enf_route object is used
 * by one thread at a time.
 *
 * Two backends behind one interface: "linux" (libnl-route-3 in the
 * calling process's network namespace) and "fake" (an in-memory table for
 * unit tests of the node; it records what it was asked).
 */
#ifndef OVHA_ENFORCE_ROUTE_H
#define OVHA_ENFORCE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ENF_ROUTE_PROTO_DEFAULT \
    233 /* rtnetlink protocol id we own; unassigned */
#define ENF_ROUTE_TABLE_DEFAULT 254 /* main */

/* One route. Exactly one of via / dev is set: via = next-hop address
 * (same family as dst), dev = output interface name. */
struct enf_route_entry {
    char dst[46]; /* network address, host bits zero */
    unsigned prefix;
    char via[46];    /* "" when dev is used */
    char dev[16];    /* "" when via is used */
    uint32_t metric; /* 0 = kernel default */
};

struct enf_route_config {
    const char *backend; /* "linux" or "fake" */
    uint8_t protocol;    /* 0 = ENF_ROUTE_PROTO_DEFAULT */
    uint32_t table;      /* 0 = ENF_ROUTE_TABLE_DEFAULT */
};

struct enf_route_stats {
    uint64_t applies;   /* enf_route_apply calls */
    uint64_t added;     /* routes added */
    uint64_t replaced;  /* routes of ours that differed */
    uint64_t removed;   /* routes of ours no longer desired */
    uint64_t errors;    /* netlink requests that failed */
    uint64_t installed; /* routes of ours after the last apply */
};

struct enf_route;

/* Returns 0, -EINVAL (unknown backend), -ENOMEM, or a negative errno from
 * opening the netlink socket. errbuf gets a message on failure. */
int enf_route_new(const struct enf_route_config *cfg,
                  struct enf_route **ret,
                  char *errbuf,
                  size_t errlen);
void enf_route_free(struct enf_route *r);

/* Converges to desired (n entries; duplicates by dst/prefix are an error,
 * -EINVAL, and nothing is changed). Every entry is attempted even if some
 * fail (e.g. a dev that does not exist yet: -ENODEV from the kernel); the
 * return is 0 or the first failure, and errbuf names the failing route.
 * A later apply retries what failed. */
int enf_route_apply(struct enf_route *r,
                    const struct enf_route_entry *desired,
                    size_t n,
                    char *errbuf,
                    size_t errlen);

/* Routes of ours currently in the kernel (or the fake table), for the API
 * and tests. *ret is allocated (free with free()); *ret_n its length. */
int enf_route_list(struct enf_route *r,
                   struct enf_route_entry **ret,
                   size_t *ret_n);

void enf_route_get_stats(const struct enf_route *r,
                         struct enf_route_stats *ret);

#endif
