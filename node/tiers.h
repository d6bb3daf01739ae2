/* node/tiers: rules from the upstream decision API through cache tiers.
 *
 * A rules source (decide.h). Lookup order for one request, by identity
 * key "cn:<cn>" or "cn:<cn>|user:<username>":
 *   1. memory: an in-process LRU; a fresh entry answers at once;
 *   2. Redis (optional, shared by the gateways): a fresh entry answers
 *      and is copied to memory; Redis down or slow = skipped;
 *   3. the upstream over HTTPS: a valid answer is used and written to
 *      memory, Redis and the SQLite file (unless ttl_s is 0, or it is a
 *      deny of a request that carried a password);
 *   4. fallback, only when step 3 failed or passed upstream.deadline_ms:
 *      the newest answer from memory or the SQLite file if at most
 *      cache.max_stale_s old, else deny ("upstream unavailable (<cause>),
 *      no answer within max staleness").
 * Concurrent lookups of one identity (and one password) share one
 * upstream request: single flight. A password-dependent answer is cached
 * with a salted verifier only and answers only a matching password.
 *
 * Failure modes: an answer that fails validation counts as an upstream
 * failure (it goes to the fallback and trips the breaker like a 500); a
 * CN that is not valid UTF-8 is denied without asking; the SQLite file
 * failing (disk full) is logged and counted, decisions continue.
 */
#ifndef OVHA_NODE_TIERS_H
#define OVHA_NODE_TIERS_H

#include <stdint.h>

#include <uv.h>

#include "node/config.h"
#include "node/decide.h"

struct node_tiers;

/* Counters for /v1/upstream and, later, Prometheus. */
struct node_tiers_stats {
    uint64_t lookups;
    uint64_t hits_memory, hits_redis; /* fresh answers from a cache */
    uint64_t upstream_requests;       /* flights that went to the upstream */
    uint64_t upstream_answers;        /* valid answers received */
    uint64_t upstream_failures;       /* errors, timeouts, malformed */
    uint64_t malformed;               /* of which: answers failing checks */
    uint64_t deadline;                /* flights cut by upstream.deadline_ms */
    uint64_t shared;                  /* lookups that joined a flight */
    uint64_t fallback_memory, fallback_file; /* stale answers used */
    uint64_t fallback_denied;                /* nothing within max staleness */
    uint64_t file_errors;    /* SQLite writes/reads that failed */
    uint64_t memory_entries; /* entries in the LRU now */
    /* Upstream latency of answered requests, submit to answer. */
    uint64_t latency_ms_sum, latency_count;
    uint64_t latency_le_ms[6]; /* cumulative: ≤5 ≤25 ≤100 ≤500 ≤2500 ms,
                                  and the last one counts all */
    uint64_t breaker_state;    /* 0 closed 1 open 2 half-open */
    uint64_t breaker_opens;
    bool redis_enabled, redis_connected;
};

/* Reads redis.password_file (blocking: call before the loop runs), opens
 * the SQLite file and connects Redis in the background. cfg is borrowed
 * for the life of t. Returns 0, OVHA_ECONFIG (message logged) or -ENOMEM. */
int node_tiers_new(uv_loop_t *loop,
                   const struct node_cfg *cfg,
                   struct node_tiers **ret);
void node_tiers_rules(struct node_tiers *t, struct node_rules *ret);
void node_tiers_get_stats(const struct node_tiers *t,
                          struct node_tiers_stats *ret);
/* Pending lookups are answered with a deny ("shutting down"), then the
 * upstream client, Redis and the file close; cb(data) runs when all is
 * freed. */
void node_tiers_close(struct node_tiers *t, void (*cb)(void *), void *data);

#endif
