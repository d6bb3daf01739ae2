/* raft/runtime internals shared by runtime.c, life.c and fwd.c. */
#ifndef OVHA_RAFT_RUNTIME_INT_H
#define OVHA_RAFT_RUNTIME_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "proto/proto.h"
#include "raft/raft.h"

/* One proposal, from rft_propose until its callback. */
struct rft_prop {
    struct rft_prop *prev, *next; /* wait queue, while queued */
    bool queued;
    bool applying;      /* inside raft_apply */
    bool maybe_applied; /* a lost attempt may have committed */
    struct rft *r;
    uint8_t *cmd; /* encoded proto_cmd; the same bytes on every retry */
    size_t len;
    uint64_t started, deadline;
    uint64_t fwd_seq; /* forwarding: id of the in-flight request */
    rft_propose_cb cb;
    void *data;
};

struct rft_fwd;

struct rft {
    uv_loop_t *loop;
    struct rft_config cfg;
    struct fsm *fsm;
    struct raft raft;
    struct raft_io io;
    struct raft_uv_transport transport;
    bool tls; /* transport is the mTLS one */
    struct raft_fsm rfsm;
    bool started, closing, ready, barrier_pending;
    uint64_t barrier_term;
    struct raft_barrier barrier_req;
    int role;
    uint64_t term;
    uint64_t leader_id;
    char leader_addr[RFT_ADDR_MAX];
    struct rft_prop *wait_head, *wait_tail;
    uint64_t inflight;
    rft_change_cb change_cb;
    void *change_data;
    uint64_t change_id;
    int change_role;
    bool change_rollback; /* remove change_id again if promotion fails */
    int rollback_status;
    bool transfer_waiting; /* transfer done, new leader not yet known */
    uint64_t transfer_deadline;
    struct raft_change change_req;
    struct raft_transfer transfer_req;
    uv_check_t check;     /* after poll: what I/O callbacks proposed */
    uv_prepare_t prepare; /* before poll: what timer callbacks proposed */
    uv_timer_t tick;
    struct rft_fwd *fwd;
    struct rft_stats stats;
    char errmsg[256];
    void (*close_cb)(void *data);
    void *close_data;
    int pending_closes;
};

void rft_prop_finish(struct rft_prop *p,
                     int status,
                     const struct proto_result *res);
void rft_prop_forwarded(struct rft_prop *p,
                        int status,
                        const struct proto_result *res);

/* runtime.c: the role watch, driven from life.c's handles. */
void rft_check_cb(uv_check_t *h);
void rft_prepare_cb(uv_prepare_t *h);
void rft_tick_cb(uv_timer_t *t);

/* fwd.c: the forwarding RPC (follower -> leader). */
int rft_fwd_new(struct rft *r, struct rft_fwd **ret);
/* Frees a forwarder that never listened (synchronous). */
void rft_fwd_free(struct rft_fwd *f);
int rft_fwd_listen(struct rft_fwd *f);
/* Sends p to the current leader; 0, or an error (p stays queued). */
int rft_fwd_send(struct rft_fwd *f, struct rft_prop *p);
void rft_fwd_leader_changed(struct rft_fwd *f,
                            uint64_t leader_id,
                            const char *leader_addr);
void rft_fwd_close(struct rft_fwd *f, void (*cb)(void *data), void *data);

#endif
