/* node/metrics: GET /metrics, the node's counters in the Prometheus text
 * exposition format 0.0.4 (docs/metrics.md lists every metric).
 *
 * The body is built on the loop thread at each scrape from the modules'
 * own counters (their *_get_stats) and, in cluster mode, a walk of the
 * replicated leases and sessions: no metric is kept here, and nothing
 * blocks. A label value is escaped as the format requires (backslash,
 * double quote, newline) and bytes that are not UTF-8 become '?', so a
 * hostile common name cannot break the exposition.
 *
 * The writers below are public for the unit tests. They append to o->buf;
 * the first allocation failure is kept in o->err and makes every later
 * write a no-op, so a caller checks o->err once at the end.
 */
#ifndef OVHA_NODE_METRICS_H
#define OVHA_NODE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

struct node;
struct node_session;

#define NODE_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* ovha_client_bytes_total has one series per direction for this many
 * common names (the biggest by total bytes) plus cn="_other" for the
 * rest. */
#define NODE_METRICS_TOP_CLIENTS 100

/* The label value every other common name is summed into. */
#define NODE_METRICS_OTHER_CN "_other"

struct node_metrics_out {
    struct ovha_buf buf;
    int err; /* the first error (-ENOMEM); 0 while all is well */
};

void node_metrics_out_init(struct node_metrics_out *o);
void node_metrics_out_free(struct node_metrics_out *o);

/* Appends s as the inside of a quoted label value: '\' -> "\\", '"' ->
 * "\"", newline -> "\n"; a byte that is not part of valid UTF-8 -> '?'. */
void node_metrics_label_value(struct node_metrics_out *o, const char *s);

/* The "# HELP" and "# TYPE" lines of a family (type "counter", "gauge" or
 * "histogram"). help is escaped ('\' and newline). */
void node_metrics_family(struct node_metrics_out *o,
                         const char *name,
                         const char *type,
                         const char *help);

/* One sample line: name{k1="v1",k2="v2"} value. labels is NULL or an
 * array of name, value pairs ended by NULL. */
void node_metrics_sample(struct node_metrics_out *o,
                         const char *name,
                         const char *const *labels,
                         uint64_t value);

/* The samples of a histogram in a base unit (seconds) from integer
 * measurements in a smaller one: scale is the number of small units per
 * base unit (1000 for milliseconds, 1000000 for microseconds). bounds[i]
 * is the upper bound of bucket i and cumulative[i] the number of
 * observations within it (nondecreasing); count (the +Inf bucket and
 * name_count) and sum (name_sum) are over all observations. */
void node_metrics_histogram(struct node_metrics_out *o,
                            const char *name,
                            const char *const *labels,
                            const uint64_t *bounds,
                            const uint64_t *cumulative,
                            size_t nbounds,
                            uint64_t count,
                            uint64_t sum,
                            uint64_t scale);

/* The samples (no family lines) of ovha_client_bytes_total for the
 * sessions s[0..n): bytes summed per common name, one series per
 * direction ("in": from the client, "out": to it) for the top names by
 * total bytes (ties: by name), and cn="_other" for everything else (always
 * present, also holding a client whose name is "_other" itself). */
void node_metrics_client_bytes(struct node_metrics_out *o,
                               const struct node_session *s,
                               size_t n,
                               size_t top);

/* The whole exposition for n. */
void node_metrics_render(struct node *n, struct node_metrics_out *o);

#endif
