/* node/upstream: the HTTPS client for the upstream decision API.
 *
 * libcurl's multi interface driven by the node's libuv loop: every curl
 * socket gets a uv_poll, curl's timer is one uv_timer, and completions are
 * read from curl's info queue. Nothing blocks the loop.
 *
 * Per request: a bounded number of attempts with jittered exponential
 * backoff (on 5xx, timeouts, connect errors and dropped connections; never
 * on 4xx nor on TLS verification failures), a response size limit, and a
 * cap on the number of requests in flight (the rest wait in a FIFO).
 *
 * A circuit breaker sits in front: breaker_failures consecutive failed
 * attempts open it; while open, requests fail fast with -EAGAIN without
 * being sent; after breaker_open_ms one probe request is sent (half-open):
 * its success closes the breaker, its failure re-opens it.
 *
 * Callbacks always run from the loop, never from inside
 * node_upstream_post_json(). Only the loop thread may call these functions.
 */
#ifndef OVHA_NODE_UPSTREAM_H
#define OVHA_NODE_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

/* A zero field takes the default in brackets (max_retries 0 means none). */
struct node_upstream_config {
    const char *url;     /* https://host:port/v1/decide; https only */
    const char *ca_file; /* verify the server against this CA (required) */
    const char *client_cert, *client_key; /* optional client TLS identity */
    uint64_t connect_timeout_ms;          /* per attempt [500] */
    uint64_t total_timeout_ms;            /* per attempt [1500] */
    unsigned max_retries;                 /* extra attempts [0] */
    uint64_t backoff_ms;                  /* base of the backoff [50] */
    unsigned max_concurrency;             /* requests in flight [16] */
    unsigned breaker_failures;            /* to open the circuit [5] */
    uint64_t breaker_open_ms;             /* before the probe [5000] */
    size_t max_body;                      /* response bytes [1 MiB] */
    /* Optional judge of a 200 answer's body: nonzero (with a short reason
     * in err) makes the attempt a failure, -EBADMSG, that counts for the
     * breaker (an upstream returning garbage trips it like one returning
     * 500) and is not retried. */
    int (*accept)(const char *body, size_t len, char *err, size_t errlen);
};

struct node_upstream;

/* status 0: the server answered; http_code and body (NUL-terminated, len
 * bytes) are valid. That includes 4xx answers, which are never retried.
 * Otherwise status is negative:
 *   OVHA_ETIMEDOUT  an attempt's connect or total timeout passed
 *   -ECONNREFUSED   the server could not be reached
 *   -EPROTO         TLS failure (e.g. verification), an unparsable reply, a
 *                   dropped connection, or a 5xx after the last retry; for a
 *                   5xx http_code and body are those of the last answer
 *   OVHA_ELIMIT     the response body exceeded max_body
 *   -EBADMSG        cfg.accept refused a 200 answer; http_code and body
 *                   are valid, err holds accept's reason
 *   -EAGAIN         the breaker is open: the request was not sent
 *   OVHA_ECLOSED    node_upstream_close() ran before the request finished
 *   -ENOMEM
 * body is NULL (len 0) unless an answer was received. err is a short text,
 * never NULL. Pointers are valid only during the call. */
typedef void (*node_upstream_cb)(void *data,
                                 int status,
                                 long http_code,
                                 const char *body,
                                 size_t len,
                                 const char *err);

/* Returns 0, OVHA_ECONFIG (bad url or missing ca_file) or -ENOMEM. */
int node_upstream_new(uv_loop_t *loop,
                      const struct node_upstream_config *cfg,
                      struct node_upstream **ret);

/* Queues a POST of json (copied) with Content-Type application/json. cb
 * fires exactly once, later, unless the request is cancelled. ret_id (may
 * be NULL) receives an id for node_upstream_cancel(). Returns 0,
 * OVHA_ECLOSED or -ENOMEM (then cb never fires). */
int node_upstream_post_json(struct node_upstream *u,
                            const char *json,
                            node_upstream_cb cb,
                            void *data,
                            uint64_t *ret_id);

/* Abandons a request: its cb will not fire. Unknown or finished ids are
 * ignored. */
void node_upstream_cancel(struct node_upstream *u, uint64_t id);

/* Every unfinished request's cb fires with OVHA_ECLOSED before this
 * returns (callbacks must not post new requests: they would get
 * OVHA_ECLOSED); then handles close and cb(data) fires from the loop once
 * the object is freed. cb may be NULL. */
void node_upstream_close(struct node_upstream *u,
                         void (*cb)(void *),
                         void *data);

struct node_upstream_stats {
    uint64_t requests;      /* accepted by post_json */
    uint64_t ok;            /* finished with status 0 */
    uint64_t failures;      /* finished with a negative status */
    uint64_t retries;       /* extra attempts started */
    uint64_t timeouts;      /* attempts that timed out */
    uint64_t breaker_opens; /* closed/half-open -> open transitions */
    uint64_t breaker_state; /* 0 closed 1 open 2 half-open */
    uint64_t latency_ms_sum, latency_count; /* sent requests, submit->end */
};
void node_upstream_get_stats(const struct node_upstream *u,
                             struct node_upstream_stats *ret);

#endif
