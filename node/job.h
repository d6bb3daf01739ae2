/* node/job: the pass scheduler shared by the reconcilers (routes and bridge
 * FDB, firewall, shaping).
 *
 * A pass has three steps: build (on the loop: read the replicated state
 * into the owner's job input; FSM queries are in-memory SQLite reads),
 * work (in libuv's thread pool: the kernel calls, which block on netlink)
 * and after (on the loop again: take the job's output, free its input).
 * Passes run every interval_ms and when kicked; one runs at a time, and a
 * kick during a pass schedules exactly one more. Work never touches the
 * loop or the FSM; build and after never block.
 */
#ifndef OVHA_NODE_JOB_H
#define OVHA_NODE_JOB_H

#include <stdint.h>

#include <uv.h>

struct node_job_ops {
    /* Fills the owner's job input. Nonzero: no pass this time (logged by
     * the owner); the next tick or kick tries again. */
    int (*build)(void *data);
    void (*work)(void *data);
    void (*after)(void *data);
};

struct node_job;

/* ops and data must outlive the job. Returns 0 or -ENOMEM. */
int node_job_new(uv_loop_t *loop,
                 const struct node_job_ops *ops,
                 void *data,
                 struct node_job **ret);
/* Periodic passes from now on (the first after interval_ms). */
void node_job_start(struct node_job *j, uint64_t interval_ms);
/* A pass soon (coalesced with one already waiting). */
void node_job_kick(struct node_job *j);
/* Stops the timer, waits for a running pass (its after step still runs),
 * frees the job, then cb(cb_data). No pass starts after this call. */
void node_job_close(struct node_job *j, void (*cb)(void *data), void *cb_data);

#endif
