/* enforce/route internals: the backend interface between the common
 * convergence logic (route.c) and the two backends (route_linux.c,
 * route_fake.c), plus the fake backend's test hooks.
 *
 * The interface is message-shaped on purpose: a dump of the table and two
 * requests (add-or-replace, exact delete) carrying plain structs, so it
 * could later move behind a privileged helper. Backends never decide what
 * to change; route.c does.
 */
#ifndef OVHA_ENFORCE_ROUTE_INT_H
#define OVHA_ENFORCE_ROUTE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "enforce/route.h"

/* rtnetlink's RTN_UNICAST; spelled here so the fake backend and route.c
 * need no netlink header (route_linux.c checks that they agree). */
#define ENF_ROUTE_TYPE_UNICAST    1
/* The metric the kernel gives an IPv6 route added with metric 0
 * (IP6_RT_PRIO_USER): desired IPv6 metrics are normalised to it so a
 * route read back compares equal. */
#define ENF_ROUTE_METRIC6_DEFAULT 1024

/* One route in binary form. Routes of other protocols in our table are
 * dumped too ("foreign"), only so we never clobber them. */
struct enf_route_rt {
    uint8_t family; /* AF_INET or AF_INET6 */
    uint8_t prefix;
    uint8_t protocol;
    uint8_t tos;
    uint8_t type; /* ENF_ROUTE_TYPE_UNICAST for every route we add */
    bool has_via;
    /* A kernel route our model cannot express (multipath, a nexthop
     * object, another type, a device that vanished): it never equals a
     * desired route, so a route of ours in that shape gets replaced. */
    bool odd;
    uint32_t metric;
    uint8_t dst[16];
    uint8_t via[16]; /* when has_via */
    char dev[16];    /* when !has_via */
};

/* A growable array of routes. */
struct enf_route_vec {
    struct enf_route_rt *v;
    size_t n;
    size_t cap;
};

int enf_route_vec_push(struct enf_route_vec *vec,
                       const struct enf_route_rt *rt);
void enf_route_vec_free(struct enf_route_vec *vec);

struct enf_route_ops {
    const char *name;
    /* Opens the backend for routes of `protocol` in `table`. */
    int (*open)(uint8_t protocol,
                uint32_t table,
                void **ret_state,
                char *errbuf,
                size_t errlen);
    void (*close)(void *state);
    /* Appends the routes of our table: ours (our protocol) to *ours, the
     * others to *foreign. Returns 0 or a negative errno. */
    int (*dump)(void *state,
                struct enf_route_vec *ours,
                struct enf_route_vec *foreign);
    /* Creates rt with our protocol, replacing a route with the same
     * dst/prefix/metric (whoever owns it: the caller checks). */
    int (*add)(void *state, const struct enf_route_rt *rt);
    /* Deletes exactly the route of ours with rt's dst/prefix/metric. */
    int (*del)(void *state, const struct enf_route_rt *rt);
};

extern const struct enf_route_ops enf_route_linux_ops;
extern const struct enf_route_ops enf_route_fake_ops;

/* Validates e and converts it. why gets the reason on -EINVAL. */
int enf_route_parse_entry(const struct enf_route_entry *e,
                          struct enf_route_rt *ret,
                          char *why,
                          size_t whylen);
/* The public form of rt (addresses as text). */
void enf_route_to_entry(const struct enf_route_rt *rt,
                        struct enf_route_entry *ret);
/* "dst/prefix" of rt into buf. */
void enf_route_format_dst(const struct enf_route_rt *rt, char *buf, size_t len);
/* Same family, dst and prefix. */
bool enf_route_same_key(const struct enf_route_rt *a,
                        const struct enf_route_rt *b);

/* The backend state of r if r uses ops, else NULL. */
void *enf_route_backend(struct enf_route *r, const struct enf_route_ops *ops);

/* ---- fake backend test hooks ---------------------------------------------
 * All return -EINVAL when r does not use the fake backend. */

/* Puts a route into the fake table as if someone else (an operator, a
 * routing daemon, a hand edit of ours) had: with any protocol and table,
 * replacing one with the same dst/prefix/metric in that table. */
int enf_route_fake_put(struct enf_route *r,
                       const struct enf_route_entry *e,
                       uint8_t protocol,
                       uint32_t table);
/* Removes the route with e's dst/prefix/metric, protocol and table.
 * Returns 0 or -ESRCH. */
int enf_route_fake_drop(struct enf_route *r,
                        const struct enf_route_entry *e,
                        uint8_t protocol,
                        uint32_t table);
/* Routes whose dev is `dev` fail to be added with err (as the kernel does
 * with -ENODEV for a device that does not exist). dev NULL clears it. */
int enf_route_fake_fail_dev(struct enf_route *r, const char *dev, int err);
/* The next `count` add/del requests fail with err. */
int enf_route_fake_fail_requests(struct enf_route *r, unsigned count, int err);
/* The dump fails with err (0 clears it). */
int enf_route_fake_fail_dump(struct enf_route *r, int err);
/* How many add and del requests the fake was asked (failed ones too), and
 * how many routes (all protocols and tables) it holds. */
int enf_route_fake_counts(struct enf_route *r,
                          uint64_t *ret_adds,
                          uint64_t *ret_dels,
                          size_t *ret_size);

#endif
