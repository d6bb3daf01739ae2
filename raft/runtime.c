/* raft/runtime: libraft on the node's loop, proposals, barrier, membership.
 *
 * Happy path of a proposal: rft_propose copies the encoded command; on the
 * leader (once its post-election barrier has completed) it goes to
 * raft_apply and the callback gets the FSM's result; on a follower it is
 * forwarded to the leader (fwd.c) and the leader's result comes back.
 *
 * Failure modes, and what the caller sees:
 *  - no leader yet, or leadership moving: the proposal waits in a queue and
 *    is retried with the SAME bytes (so the same req_id) until its deadline,
 *    then OVHA_ENOTLEADER;
 *  - leadership lost after raft_apply accepted it (RAFT_LEADERSHIPLOST):
 *    the entry may or may not commit. It is retried with the same req_id
 *    (the FSM answers a duplicate req_id with the first result), and only
 *    if no retry succeeds before the deadline is the outcome OVHA_EUNKNOWN;
 *  - rft_close: every queued proposal fails with OVHA_ECLOSED.
 *
 * libraft 0.15 appends no entry on election, so a new leader's state may
 * lag what is committed; the runtime issues a barrier on every election
 * and serves proposals only once it has completed (rft_status.ready).
 * libraft has no role-change callback either: a uv_check handle looks at
 * the role after every loop iteration.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <raft.h>
#include <raft/uv.h>

#include "base/base.h"
#include "raft/entry.h"
#include "raft/raft.h"
#include "raft/runtime_int.h"

/* ---- helpers ------------------------------------------------------------- */

static int rft_from_raft(int rv)
{
    switch (rv) {
    case 0:
        return 0;
    case RAFT_NOMEM:
        return -ENOMEM;
    case RAFT_NOTLEADER:
        return OVHA_ENOTLEADER;
    case RAFT_LEADERSHIPLOST:
        return OVHA_EUNKNOWN;
    case RAFT_CANTCHANGE:
        return -EBUSY;
    case RAFT_BADID:
    case RAFT_DUPLICATEID:
    case RAFT_DUPLICATEADDRESS:
    case RAFT_BADROLE:
        return -EINVAL;
    case RAFT_NOCONNECTION:
        return -ENOTCONN;
    case RAFT_CANCELED:
        return OVHA_ECLOSED;
    default:
        return -EIO;
    }
}

static void rft_set_err(struct rft *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void rft_set_err(struct rft *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->errmsg, sizeof(r->errmsg), fmt, ap);
    va_end(ap);
}

const char *rft_errmsg(const struct rft *r)
{
    return r->errmsg;
}

/* ---- proposal queue ------------------------------------------------------ */

static void rft_prop_link(struct rft *r, struct rft_prop *p)
{
    p->next = NULL;
    p->prev = r->wait_tail;
    if (r->wait_tail != NULL) {
        r->wait_tail->next = p;
    } else {
        r->wait_head = p;
    }
    r->wait_tail = p;
    p->queued = true;
}

static void rft_prop_unlink(struct rft *r, struct rft_prop *p)
{
    if (!p->queued) {
        return;
    }
    if (p->prev != NULL) {
        p->prev->next = p->next;
    } else {
        r->wait_head = p->next;
    }
    if (p->next != NULL) {
        p->next->prev = p->prev;
    } else {
        r->wait_tail = p->prev;
    }
    p->prev = p->next = NULL;
    p->queued = false;
}

const uint64_t rft_latency_bounds_ms[RFT_LAT_BUCKETS] = {
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000,
};

/* Completes a proposal: unlinks, calls back once, frees. */
void rft_prop_finish(struct rft_prop *p,
                     int status,
                     const struct proto_result *res)
{
    struct rft *r = p->r;
    rft_prop_unlink(r, p);
    r->inflight--;
    if (status == 0) {
        r->stats.committed++;
    } else if (status == OVHA_EUNKNOWN) {
        r->stats.unknown++;
    } else {
        r->stats.failed++;
    }
    uint64_t lat = ovha_now_mono_ms() - p->started;
    r->stats.latency_ms_sum += lat;
    r->stats.latency_count++;
    for (size_t i = 0; i < RFT_LAT_BUCKETS; i++) {
        if (lat <= rft_latency_bounds_ms[i]) {
            r->stats.latency_le_ms[i]++;
        }
    }
    p->cb(p->data, status, res);
    ovha_free(p->cmd);
    ovha_free(p);
}

/* Proposals travel to libraft in batches: every proposal queued during a
 * loop iteration goes into one raft entry (rft_cmd_buffer's frame with
 * several records), so one append, one fsync and one replication round
 * serve them all, and snapshots (counted in entries) come less often. */
#define RFT_BATCH_MAX   256
#define RFT_BATCH_BYTES (1u << 20)

struct rft_batch {
    struct raft_apply req;
    struct rft *r;
    size_t n;
    struct rft_prop *props[];
};

static void rft_batch_cb(struct raft_apply *req, int status, void *result)
{
    struct rft_batch *b = req->data;
    struct rft *r = b->r;
    const struct rft_entry_results *er = result;
    for (size_t i = 0; i < b->n; i++) {
        struct rft_prop *p = b->props[i];
        p->applying = false;
        if (status == 0 && er != NULL && i < er->n) {
            rft_prop_finish(p, 0, &er->results[i]);
        } else if (r->closing) {
            rft_prop_finish(p, OVHA_ECLOSED, NULL);
        } else {
            /* Leadership lost mid-flight: the entry may still commit.
             * Retry with the same bytes; the FSM returns the first result
             * for a req_id it has seen, so a retry never applies twice. */
            p->maybe_applied = true;
            r->stats.retries++;
            rft_prop_link(r, p);
        }
    }
    ovha_free(b);
}

/* Sizes the batch at the head of the queue: at least one proposal. */
static size_t rft_batch_size(struct rft *r, size_t *ret_bytes)
{
    size_t n = 0;
    size_t payload = 0;
    for (struct rft_prop *p = r->wait_head; p != NULL && n < RFT_BATCH_MAX;
         p = p->next) {
        if (n > 0 &&
            rft_entry_size(payload + p->len, n + 1) > RFT_BATCH_BYTES) {
            break;
        }
        payload += p->len;
        n++;
    }
    *ret_bytes = rft_entry_size(payload, n);
    return n;
}

/* Hands the head of the queue to libraft as one entry. Returns 0, or an
 * error with every proposal still queued. */
static int rft_apply_batch(struct rft *r)
{
    size_t bytes;
    size_t n = rft_batch_size(r, &bytes);
    struct rft_batch *b = ovha_malloc(sizeof(*b) + n * sizeof(b->props[0]));
    uint8_t *buf = raft_malloc(bytes);
    if (b == NULL || buf == NULL) {
        ovha_free(b);
        raft_free(buf);
        return -ENOMEM;
    }
    size_t off = 0;
    struct rft_prop *p = r->wait_head;
    for (size_t i = 0; i < n; i++, p = p->next) {
        off += rft_entry_put(buf + off, p->cmd, p->len);
        b->props[i] = p;
    }
    memset(buf + off, 0, bytes - off);
    b->r = r;
    b->n = n;
    b->req.data = b;
    struct raft_buffer rb = { .base = buf, .len = bytes };
    int rv = raft_apply(&r->raft, &b->req, &rb, 1, rft_batch_cb);
    if (rv != 0) {
        raft_free(buf);
        ovha_free(b);
        return rft_from_raft(rv);
    }
    for (size_t i = 0; i < n; i++) {
        rft_prop_unlink(r, b->props[i]);
        b->props[i]->applying = true;
    }
    r->stats.batches++;
    return 0;
}

/* Expires what is past its deadline, then sends the rest: in batches on
 * a ready leader, one by one to the leader from a follower. */
static void rft_dispatch(struct rft *r)
{
    uint64_t now = ovha_now_mono_ms();
    struct rft_prop *p = r->wait_head;
    while (p != NULL) {
        struct rft_prop *next = p->next;
        if (now >= p->deadline) {
            rft_prop_finish(
                p, p->maybe_applied ? OVHA_EUNKNOWN : OVHA_ENOTLEADER, NULL);
        }
        p = next;
    }
    if (r->ready) {
        while (r->wait_head != NULL && rft_apply_batch(r) == 0) {
        }
        return;
    }
    if (r->role == RAFT_LEADER || r->leader_id == 0 || r->fwd == NULL) {
        return;
    }
    while (r->wait_head != NULL) {
        p = r->wait_head;
        if (rft_fwd_send(r->fwd, p) != 0) {
            break; /* no link to the leader yet: try next tick */
        }
        rft_prop_unlink(r, p);
    }
}

int rft_propose(struct rft *r,
                const uint8_t *cmd,
                size_t len,
                uint64_t timeout_ms,
                rft_propose_cb cb,
                void *data)
{
    if (r->closing) {
        return OVHA_ECLOSED;
    }
    if (r->inflight >= r->cfg.max_inflight) {
        return OVHA_ELIMIT;
    }
    struct rft_prop *p = ovha_calloc(1, sizeof(*p));
    uint8_t *copy = ovha_malloc(len);
    if (p == NULL || copy == NULL) {
        ovha_free(p);
        ovha_free(copy);
        return -ENOMEM;
    }
    memcpy(copy, cmd, len);
    p->r = r;
    p->cmd = copy;
    p->len = len;
    p->cb = cb;
    p->data = data;
    p->started = ovha_now_mono_ms();
    p->deadline =
        p->started + (timeout_ms != 0 ? timeout_ms : r->cfg.propose_timeout_ms);
    r->inflight++;
    r->stats.proposed++;
    /* Queued only: the uv_check at the end of this loop iteration sends
     * everything proposed in it as one batch. */
    rft_prop_link(r, p);
    return 0;
}

/* Called by fwd.c when the leader answered, or the link failed. */
void rft_prop_forwarded(struct rft_prop *p,
                        int status,
                        const struct proto_result *res)
{
    struct rft *r = p->r;
    if (status == 0) {
        rft_prop_finish(p, 0, res);
        return;
    }
    if (status == OVHA_EUNKNOWN) {
        p->maybe_applied = true;
    }
    if (r->closing) {
        rft_prop_finish(p, OVHA_ECLOSED, NULL);
        return;
    }
    r->stats.retries++;
    rft_prop_link(r, p); /* retried on the next dispatch */
}

/* ---- leadership watch ---------------------------------------------------- */

static void rft_barrier_cb(struct raft_barrier *req, int status)
{
    struct rft *r = req->data;
    r->barrier_pending = false;
    if (r->closing) {
        return;
    }
    if (status == 0 && raft_state(&r->raft) == RAFT_LEADER &&
        r->raft.current_term == r->barrier_term) {
        r->ready = true;
        LOG_INFO("rft", "leader ready: term=%llu applied=%llu",
                 (unsigned long long)r->barrier_term,
                 (unsigned long long)raft_last_applied(&r->raft));
        rft_dispatch(r);
    }
}

static void rft_start_barrier(struct rft *r)
{
    if (r->barrier_pending) {
        return;
    }
    r->barrier_req.data = r;
    r->barrier_term = r->raft.current_term;
    int rv = raft_barrier(&r->raft, &r->barrier_req, rft_barrier_cb);
    if (rv == 0) {
        r->barrier_pending = true;
    }
}

static void rft_transfer_settle(struct rft *r);

/* Looks at role, term and leader after every loop iteration. */
static void rft_watch(struct rft *r)
{
    if (r->closing || !r->started) {
        return;
    }
    int role = raft_state(&r->raft);
    uint64_t term = r->raft.current_term;
    raft_id lid = 0;
    const char *laddr = NULL;
    raft_leader(&r->raft, &lid, &laddr);
    if (role != r->role || term != r->term || lid != r->leader_id) {
        if (r->ready && (role != RAFT_LEADER || term != r->term)) {
            r->ready = false;
        }
        if (lid != r->leader_id) {
            LOG_INFO("rft", "leader=%llu (%s) term=%llu role=%s",
                     (unsigned long long)lid, laddr != NULL ? laddr : "-",
                     (unsigned long long)term, rft_role_name(role));
        }
        r->role = role;
        r->term = term;
        r->leader_id = lid;
        ovha_strlcpy(r->leader_addr, laddr != NULL ? laddr : "",
                     sizeof(r->leader_addr));
        if (role == RAFT_LEADER) {
            r->stats.elections_won++;
        }
        if (r->fwd != NULL) {
            rft_fwd_leader_changed(r->fwd, lid, r->leader_addr);
        }
    }
    if (role == RAFT_LEADER && !r->ready && !r->barrier_pending) {
        rft_start_barrier(r);
    }
    rft_transfer_settle(r);
    if (r->wait_head != NULL) {
        rft_dispatch(r);
    }
}

void rft_check_cb(uv_check_t *h)
{
    rft_watch(h->data);
}

void rft_prepare_cb(uv_prepare_t *h)
{
    rft_watch(h->data);
}

void rft_tick_cb(uv_timer_t *t)
{
    rft_watch(t->data); /* also expires deadlines on an idle loop */
}

const char *rft_role_name(int role)
{
    switch (role) {
    case RAFT_FOLLOWER:
        return "follower";
    case RAFT_CANDIDATE:
        return "candidate";
    case RAFT_LEADER:
        return "leader";
    default:
        return "unavailable";
    }
}

/* ---- membership ---------------------------------------------------------- */

static void rft_change_done(struct rft *r, int status)
{
    rft_change_cb cb = r->change_cb;
    void *data = r->change_data;
    r->change_cb = NULL;
    if (cb == NULL) {
        return; /* rft_close already answered it with OVHA_ECLOSED */
    }
    if (status != 0 && r->errmsg[0] == '\0') {
        rft_set_err(r, "%s", ovha_strerror(status));
    }
    cb(data, status);
}

static void rft_rollback_cb(struct raft_change *req, int status)
{
    struct rft *r = req->data;
    size_t n = strlen(r->errmsg);
    if (status == 0) {
        snprintf(r->errmsg + n, sizeof(r->errmsg) - n,
                 "; it was removed again");
    } else {
        snprintf(r->errmsg + n, sizeof(r->errmsg) - n,
                 "; removing it again failed too (%s): run `cluster remove "
                 "%llu`",
                 raft_strerror(status), (unsigned long long)r->change_id);
    }
    rft_change_done(r, r->rollback_status);
}

static void rft_assign_cb(struct raft_change *req, int status)
{
    struct rft *r = req->data;
    if (status != 0) {
        rft_set_err(r, "assign role to %llu: %s",
                    (unsigned long long)r->change_id, raft_strerror(status));
    }
    if (status != 0 && r->change_rollback && !r->closing) {
        /* A join whose promotion failed (the server never caught up, e.g.
         * its certificate is refused) must not leave a spare behind. */
        r->change_rollback = false;
        r->rollback_status = rft_from_raft(status);
        int rv = raft_remove(&r->raft, &r->change_req, r->change_id,
                             rft_rollback_cb);
        if (rv != 0) {
            rft_rollback_cb(req, rv);
        }
        return;
    }
    rft_change_done(r, rft_from_raft(status));
}

static void rft_add_cb(struct raft_change *req, int status)
{
    struct rft *r = req->data;
    if (status != 0) {
        rft_set_err(r, "add %llu: %s", (unsigned long long)r->change_id,
                    raft_strerror(status));
        rft_change_done(r, rft_from_raft(status));
        return;
    }
    if (r->change_role == RAFT_SPARE) {
        rft_change_done(r, 0);
        return;
    }
    /* Promotion catches the new server up first; libraft fails it with
     * RAFT_NOCONNECTION if the server cannot keep up. */
    r->change_rollback = true;
    int rv = raft_assign(&r->raft, &r->change_req, r->change_id, r->change_role,
                         rft_assign_cb);
    if (rv != 0) {
        rft_set_err(r, "assign role to %llu: %s",
                    (unsigned long long)r->change_id, raft_strerror(rv));
        rft_change_done(r, rft_from_raft(rv));
    }
}

static int rft_change_begin(struct rft *r,
                            uint64_t id,
                            int role,
                            rft_change_cb cb,
                            void *data)
{
    r->errmsg[0] = '\0';
    if (r->change_cb != NULL) {
        rft_set_err(r, "another membership change is in progress");
        return -EBUSY;
    }
    if (!r->ready) {
        rft_set_err(r, "not the leader (leader is %llu at %s)",
                    (unsigned long long)r->leader_id,
                    r->leader_addr[0] ? r->leader_addr : "unknown");
        return OVHA_ENOTLEADER;
    }
    r->change_cb = cb;
    r->change_data = data;
    r->change_id = id;
    r->change_role = role;
    r->change_rollback = false;
    r->transfer_waiting = false;
    r->change_req.data = r;
    return 0;
}

int rft_add(struct rft *r,
            uint64_t id,
            const char *address,
            int role,
            rft_change_cb cb,
            void *data)
{
    int rv = rft_change_begin(r, id, role, cb, data);
    if (rv != 0) {
        return rv;
    }
    rv = raft_add(&r->raft, &r->change_req, id, address, rft_add_cb);
    if (rv != 0) {
        rft_set_err(r, "add %llu at %s: %s", (unsigned long long)id, address,
                    raft_strerror(rv));
        r->change_cb = NULL;
        return rft_from_raft(rv);
    }
    return 0;
}

int rft_assign(struct rft *r,
               uint64_t id,
               int role,
               rft_change_cb cb,
               void *data)
{
    int rv = rft_change_begin(r, id, role, cb, data);
    if (rv != 0) {
        return rv;
    }
    rv = raft_assign(&r->raft, &r->change_req, id, role, rft_assign_cb);
    if (rv != 0) {
        rft_set_err(r, "assign role to %llu: %s", (unsigned long long)id,
                    raft_strerror(rv));
        r->change_cb = NULL;
        return rft_from_raft(rv);
    }
    return 0;
}

static void rft_remove_cb(struct raft_change *req, int status)
{
    struct rft *r = req->data;
    if (status != 0) {
        rft_set_err(r, "remove %llu: %s", (unsigned long long)r->change_id,
                    raft_strerror(status));
    }
    rft_change_done(r, rft_from_raft(status));
}

int rft_remove(struct rft *r, uint64_t id, rft_change_cb cb, void *data)
{
    int rv = rft_change_begin(r, id, 0, cb, data);
    if (rv != 0) {
        return rv;
    }
    rv = raft_remove(&r->raft, &r->change_req, id, rft_remove_cb);
    if (rv != 0) {
        rft_set_err(r, "remove %llu: %s", (unsigned long long)id,
                    raft_strerror(rv));
        r->change_cb = NULL;
        return rft_from_raft(rv);
    }
    return 0;
}

static void rft_transfer_cb(struct raft_transfer *req)
{
    struct rft *r = req->data;
    raft_id lid = 0;
    const char *laddr = NULL;
    raft_leader(&r->raft, &lid, &laddr);
    /* The callback carries no status: success means someone else leads.
     * It often fires before the new leader is known; the role watch then
     * finishes the change once one is (rft_transfer_settle). */
    if (lid == 0 && !r->closing) {
        r->transfer_waiting = true;
        r->transfer_deadline =
            ovha_now_mono_ms() + 2 * (uint64_t)r->cfg.election_timeout_ms;
        return;
    }
    if (lid == r->cfg.id) {
        rft_set_err(r, "leadership transfer did not complete in time");
        rft_change_done(r, OVHA_ETIMEDOUT);
        return;
    }
    rft_change_done(r, 0);
}

/* Finishes a transfer whose callback came before a leader was known. */
static void rft_transfer_settle(struct rft *r)
{
    if (!r->transfer_waiting || r->change_cb == NULL) {
        return;
    }
    if (r->leader_id != 0) {
        r->transfer_waiting = false;
        if (r->leader_id == r->cfg.id) {
            rft_set_err(r, "leadership came back to this node");
            rft_change_done(r, OVHA_ETIMEDOUT);
        } else {
            rft_change_done(r, 0);
        }
    } else if (ovha_now_mono_ms() > r->transfer_deadline) {
        r->transfer_waiting = false;
        rft_set_err(r, "no leader after the transfer");
        rft_change_done(r, OVHA_ETIMEDOUT);
    }
}

int rft_transfer(struct rft *r, uint64_t id, rft_change_cb cb, void *data)
{
    int rv = rft_change_begin(r, id, 0, cb, data);
    if (rv != 0) {
        return rv;
    }
    r->transfer_req.data = r;
    rv = raft_transfer(&r->raft, &r->transfer_req, id, rft_transfer_cb);
    if (rv != 0) {
        rft_set_err(r, "transfer to %llu: %s", (unsigned long long)id,
                    raft_strerror(rv));
        r->change_cb = NULL;
        return rft_from_raft(rv);
    }
    return 0;
}

/* ---- status ---------------------------------------------------------------
 */

void rft_get_status(struct rft *r, struct rft_status *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->id = r->cfg.id;
    ovha_strlcpy(ret->address, r->cfg.address, sizeof(ret->address));
    ret->role = r->started ? raft_state(&r->raft) : RAFT_UNAVAILABLE;
    ret->term = r->raft.current_term;
    /* From libraft itself: the role watch's copy lags by a loop turn, and
     * a transfer's callback reads this right after the change. */
    raft_id lid = 0;
    const char *laddr = NULL;
    if (r->started) {
        raft_leader(&r->raft, &lid, &laddr);
    }
    ret->leader_id = lid;
    ovha_strlcpy(ret->leader_addr, laddr != NULL ? laddr : "",
                 sizeof(ret->leader_addr));
    ret->commit_index = r->raft.commit_index;
    ret->last_applied = r->started ? raft_last_applied(&r->raft) : 0;
    ret->last_index = r->started ? raft_last_index(&r->raft) : 0;
    ret->ready = r->ready;
    const struct raft_configuration *c = &r->raft.configuration;
    for (unsigned i = 0; i < c->n && i < RFT_MAX_SERVERS; i++) {
        ret->servers[i].id = c->servers[i].id;
        ovha_strlcpy(ret->servers[i].address, c->servers[i].address,
                     sizeof(ret->servers[i].address));
        ret->servers[i].role = c->servers[i].role;
        ret->nservers++;
    }
    ret->stats = r->stats;
    struct rft_fsm_stats fs;
    rft_fsm_stats(&r->rfsm, &fs);
    ret->snapshots = fs.snapshots;
    ret->restores = fs.restores;
}

const char *rft_member_role_name(int role)
{
    switch (role) {
    case RAFT_VOTER:
        return "voter";
    case RAFT_STANDBY:
        return "standby";
    case RAFT_SPARE:
        return "spare";
    default:
        return "unknown";
    }
}
