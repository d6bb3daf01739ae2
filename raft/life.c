/* raft/life: creating, starting and closing the replication runtime.
 *
 * Start: transport (mTLS, or plain TCP in unit tests) -> raft_uv I/O ->
 * raft_init with the FSM adapter -> timeouts, pre-vote, snapshot settings
 * -> bootstrap when asked and the data dir is pristine -> raft_start ->
 * the forwarding listener -> the role watch (uv_check + tick timer).
 * Close runs the other way and frees r in the last close callback.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <raft.h>
#include <raft/uv.h>

#include "base/base.h"
#include "raft/runtime_int.h"
#include "raft/tls.h"

static void rft_defaults(struct rft_config *c)
{
    if (c->election_timeout_ms == 0) {
        c->election_timeout_ms = 1000;
    }
    if (c->heartbeat_timeout_ms == 0) {
        c->heartbeat_timeout_ms = 100;
    }
    if (c->snapshot_threshold == 0) {
        c->snapshot_threshold = 8192;
    }
    if (c->snapshot_trailing == 0) {
        c->snapshot_trailing = 8192;
    }
    if (c->propose_timeout_ms == 0) {
        c->propose_timeout_ms = 5000;
    }
    if (c->max_inflight == 0) {
        c->max_inflight = 65536;
    }
}

static int rft_init_transport(struct rft *r, char *errbuf, size_t errlen)
{
    r->tls = r->cfg.ca_file[0] != '\0';
    if (!r->tls) {
        int rv = raft_uv_tcp_init(&r->transport, r->loop);
        if (rv != 0) {
            snprintf(errbuf, errlen, "tcp transport: %s", raft_strerror(rv));
            return -EIO;
        }
        return 0;
    }
    struct rft_tls_config tc = { .ca_file = r->cfg.ca_file,
                                 .cert_file = r->cfg.cert_file,
                                 .key_file = r->cfg.key_file };
    return rft_tls_transport_init(&r->transport, r->loop, &tc, errbuf, errlen);
}

static void rft_close_transport(struct rft *r)
{
    if (r->tls) {
        rft_tls_transport_close(&r->transport);
    } else {
        raft_uv_tcp_close(&r->transport);
    }
}

int rft_new(uv_loop_t *loop,
            const struct rft_config *cfg,
            struct fsm *f,
            struct rft **ret,
            char *errbuf,
            size_t errlen)
{
    if (cfg->id == 0 || cfg->address[0] == '\0' || cfg->data_dir[0] == '\0') {
        snprintf(errbuf, errlen, "raft id, address and data dir are required");
        return -EINVAL;
    }
    struct rft *r = ovha_calloc(1, sizeof(*r));
    if (r == NULL) {
        return -ENOMEM;
    }
    r->loop = loop;
    r->cfg = *cfg;
    r->fsm = f;
    rft_defaults(&r->cfg);
    /* Before libraft's first segment writer: see aio_defer.c. The
     * variable brings back libraft's own behaviour, for side-by-side
     * benchmarks only. */
    int rv =
        getenv("OVHA_RAFT_SYNC_IO_DESTROY") == NULL ? rft_aio_defer_start() : 0;
    if (rv != 0) {
        snprintf(errbuf, errlen, "the AIO helper thread: %s",
                 ovha_strerror(rv));
    } else {
        rv = rft_init_transport(r, errbuf, errlen);
    }
    if (rv != 0) {
        goto err_free;
    }
    rv = raft_uv_init(&r->io, loop, r->cfg.data_dir, &r->transport);
    if (rv != 0) {
        snprintf(errbuf, errlen, "raft storage in %s: %s", r->cfg.data_dir,
                 raft_strerror(rv));
        rv = -EIO;
        goto err_transport;
    }
    /* Never let libraft move a "corrupt" segment aside on its own: that
     * silently drops entries this node acknowledged (it could then vote
     * for, or become, a leader missing committed entries). A node whose
     * log does not load refuses to start and says why. */
    raft_uv_set_auto_recovery(&r->io, false);
    rv = rft_fsm_init(&r->rfsm, f);
    if (rv != 0) {
        goto err_io;
    }
    rv = rft_fwd_new(r, &r->fwd);
    if (rv != 0) {
        snprintf(errbuf, errlen, "forwarding: %s", ovha_strerror(rv));
        goto err_fsm;
    }
    rv = raft_init(&r->raft, &r->io, &r->rfsm, r->cfg.id, r->cfg.address);
    if (rv != 0) {
        snprintf(errbuf, errlen, "raft_init: %s", raft_errmsg(&r->raft));
        rv = -EINVAL;
        goto err_fwd;
    }
    r->raft.data = r;
    raft_set_election_timeout(&r->raft, r->cfg.election_timeout_ms);
    raft_set_heartbeat_timeout(&r->raft, r->cfg.heartbeat_timeout_ms);
    raft_set_pre_vote(&r->raft, true);
    raft_set_snapshot_threshold(&r->raft, r->cfg.snapshot_threshold);
    raft_set_snapshot_trailing(&r->raft, r->cfg.snapshot_trailing);
    uv_check_init(loop, &r->check);
    r->check.data = r;
    uv_prepare_init(loop, &r->prepare);
    r->prepare.data = r;
    uv_timer_init(loop, &r->tick);
    r->tick.data = r;
    r->role = RAFT_UNAVAILABLE;
    *ret = r;
    return 0;

err_fwd:
    rft_fwd_free(r->fwd);
err_fsm:
    rft_fsm_close(&r->rfsm);
err_io:
    raft_uv_close(&r->io);
err_transport:
    rft_close_transport(r);
err_free:
    ovha_free(r);
    return rv;
}

static int rft_bootstrap(struct rft *r)
{
    struct raft_configuration conf;
    raft_configuration_init(&conf);
    int rv =
        raft_configuration_add(&conf, r->cfg.id, r->cfg.address, RAFT_VOTER);
    if (rv == 0) {
        rv = raft_bootstrap(&r->raft, &conf);
    }
    raft_configuration_close(&conf);
    if (rv == RAFT_CANTBOOTSTRAP) {
        return 0; /* the dir already holds state: just start */
    }
    if (rv != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "bootstrap: %s",
                 raft_strerror(rv));
        return -EIO;
    }
    LOG_INFO("rft", "bootstrapped a new cluster with id=%llu at %s",
             (unsigned long long)r->cfg.id, r->cfg.address);
    return 0;
}

int rft_start(struct rft *r)
{
    if (r->cfg.bootstrap) {
        int rv = rft_bootstrap(r);
        if (rv != 0) {
            return rv;
        }
    }
    int rv = raft_start(&r->raft);
    if (rv != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "raft_start: %s",
                 raft_errmsg(&r->raft));
        return -EIO;
    }
    r->started = true;
    rv = rft_fwd_listen(r->fwd);
    if (rv != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "forwarding listener: %s",
                 ovha_strerror(rv));
        return rv;
    }
    uv_check_start(&r->check, rft_check_cb);
    uv_prepare_start(&r->prepare, rft_prepare_cb);
    uv_timer_start(&r->tick, rft_tick_cb, 10, 10);
    LOG_INFO("rft", "started id=%llu address=%s election=%ums heartbeat=%ums",
             (unsigned long long)r->cfg.id, r->cfg.address,
             r->cfg.election_timeout_ms, r->cfg.heartbeat_timeout_ms);
    return 0;
}

/* ---- close --------------------------------------------------------------- */

static void rft_handle_closed(struct rft *r)
{
    if (--r->pending_closes > 0) {
        return;
    }
    rft_fsm_close(&r->rfsm);
    void (*cb)(void *) = r->close_cb;
    void *data = r->close_data;
    ovha_free(r);
    if (cb != NULL) {
        cb(data);
    }
}

static void rft_uv_closed_cb(uv_handle_t *h)
{
    rft_handle_closed(h->data);
}

static void rft_fwd_closed_cb(void *data)
{
    rft_handle_closed(data);
}

static void rft_raft_closed_cb(struct raft *raft)
{
    struct rft *r = raft->data;
    raft_uv_close(&r->io);
    rft_close_transport(r);
    rft_handle_closed(r);
}

void rft_close(struct rft *r, void (*cb)(void *data), void *data)
{
    r->closing = true;
    r->ready = false;
    r->close_cb = cb;
    r->close_data = data;
    while (r->wait_head != NULL) {
        rft_prop_finish(r->wait_head, OVHA_ECLOSED, NULL);
    }
    if (r->change_cb != NULL) {
        rft_change_cb ccb = r->change_cb;
        r->change_cb = NULL;
        ccb(r->change_data, OVHA_ECLOSED);
    }
    r->pending_closes = 5; /* check, prepare, tick, forwarding, raft */
    uv_close((uv_handle_t *)&r->check, rft_uv_closed_cb);
    uv_close((uv_handle_t *)&r->prepare, rft_uv_closed_cb);
    uv_close((uv_handle_t *)&r->tick, rft_uv_closed_cb);
    rft_fwd_close(r->fwd, rft_fwd_closed_cb, r);
    /* Proposals inside raft_apply get their callbacks from raft_close
     * (RAFT_CANCELED or LEADERSHIPLOST), which rft_apply_cb maps to
     * OVHA_ECLOSED since closing is set. */
    raft_close(&r->raft, rft_raft_closed_cb);
}
