/* raft_bench: commit throughput, commit latency and election time of the
 * replication runtime (rft_, raft/raft.h) on a 3-node cluster.
 *
 * 1. Throughput: W proposals kept in flight for S seconds, proposed on the
 *    leader and again through a follower (forwarded to the leader). The
 *    commands are what the product proposes: SessionOpen / SessionClose
 *    pairs for one gateway and one pool (each slot alternates open, close
 *    of the session it opened). Three nodes share this process and its one
 *    uv loop, so one core runs all three replicas plus the load.
 *    Again with snapshots made rare, and with one process per node (the
 *    leader's process runs the load) for several election timings, counting
 *    role changes the load provokes.
 * 2. Latency at a fixed rate (1,000 proposals/s, paced by a uv timer), in
 *    one process and with one process per node.
 * 3. Election time after SIGKILL of the leader: each node is a forked
 *    process; children report role changes over a pipe with their
 *    CLOCK_MONOTONIC timestamps, the parent kills -9 the ready leader and
 *    measures until a survivor reports a ready leader (post-election
 *    barrier done).
 *
 * usage: raft_bench [--tls] [--quick] [--trials N] [--seconds S]
 */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "fsm/fsm.h"
#include "proto/proto.h"
#include "raft/raft.h"

#define RB_NODES   3
#define RB_GW      "gw-1"
#define RB_POOL    "p4"
#define RB_MAX_W   1024
#define RB_RATE_SL 256

struct rb_opts {
    bool tls;
    bool quick;
    unsigned trials;
    unsigned seconds;
};

static struct rb_opts rb_opt = { false, false, 10, 10 };
static char rb_pki[64];

/* ---- small helpers ------------------------------------------------------ */

static uint64_t rb_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void rb_die(const char *what)
{
    fprintf(stderr, "raft_bench: %s\n", what);
    exit(1);
}

static int rb_rm_cb(const char *path,
                    const struct stat *sb,
                    int flag,
                    struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rb_rmtree(const char *dir)
{
    if (dir[0] != '\0') {
        nftw(dir, rb_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    }
}

static void rb_mkdtemp(char *out, size_t len)
{
    snprintf(out, len, "/tmp/raft-bench-XXXXXX");
    if (mkdtemp(out) == NULL) {
        rb_die("mkdtemp");
    }
}

static void rb_cfg_fill(struct rft_config *cfg,
                        uint64_t id,
                        int port,
                        const char *dir,
                        unsigned election_ms,
                        unsigned heartbeat_ms,
                        unsigned snap_threshold)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->id = id;
    snprintf(cfg->address, sizeof(cfg->address), "127.0.0.1:%d", port);
    ovha_strlcpy(cfg->data_dir, dir, sizeof(cfg->data_dir));
    if (rb_opt.tls) {
        snprintf(cfg->ca_file, sizeof(cfg->ca_file), "%s/ca.crt", rb_pki);
        snprintf(cfg->cert_file, sizeof(cfg->cert_file),
                 "%s/node-%" PRIu64 ".crt", rb_pki, id);
        snprintf(cfg->key_file, sizeof(cfg->key_file),
                 "%s/node-%" PRIu64 ".key", rb_pki, id);
    }
    cfg->election_timeout_ms = election_ms;
    cfg->heartbeat_timeout_ms = heartbeat_ms;
    cfg->snapshot_threshold = snap_threshold;
    cfg->snapshot_trailing = snap_threshold;
    cfg->propose_timeout_ms = 10000;
    cfg->bootstrap = id == 1;
}

/* ---- latency samples ---------------------------------------------------- */

struct rb_lat {
    uint32_t *us;
    size_t n, cap;
};

static void rb_lat_add(struct rb_lat *l, uint64_t ns)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 65536;
        uint32_t *p = realloc(l->us, cap * sizeof(*p));
        if (p == NULL) {
            rb_die("out of memory");
        }
        l->us = p;
        l->cap = cap;
    }
    uint64_t us = ns / 1000;
    l->us[l->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static int rb_u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Milliseconds at quantile q of the sorted samples. */
static double rb_lat_q(const struct rb_lat *l, double q)
{
    if (l->n == 0) {
        return 0;
    }
    size_t i = (size_t)(q * (double)l->n);
    if (i >= l->n) {
        i = l->n - 1;
    }
    return l->us[i] / 1000.0;
}

static void rb_lat_sort(struct rb_lat *l)
{
    qsort(l->us, l->n, sizeof(*l->us), rb_u32_cmp);
}

static void rb_lat_free(struct rb_lat *l)
{
    free(l->us);
    memset(l, 0, sizeof(*l));
}

/* ---- an in-process cluster ---------------------------------------------- */

struct rb_node {
    struct fsm *fsm;
    struct rft *r;
    char dir[64];
    bool closed;
};

struct rb_cluster {
    uv_loop_t loop;
    uv_timer_t tick;
    struct rb_node n[RB_NODES + 1]; /* 1-based ids */
    int base_port;
    unsigned election_ms, heartbeat_ms, snap_threshold;
};

static void rb_tick_cb(uv_timer_t *t)
{
    (void)t; /* wakes uv_run(ONCE) so deadlines are checked */
}

static bool rb_run_until(struct rb_cluster *c,
                         bool (*pred)(struct rb_cluster *, void *),
                         void *arg,
                         uint64_t ms)
{
    uint64_t end = ovha_now_mono_ms() + ms;
    while (!pred(c, arg)) {
        if (ovha_now_mono_ms() > end) {
            return false;
        }
        uv_run(&c->loop, UV_RUN_ONCE);
    }
    return true;
}

static int rb_leader(struct rb_cluster *c)
{
    for (int i = 1; i <= RB_NODES; i++) {
        struct rft_status st;
        if (c->n[i].r == NULL) {
            continue;
        }
        rft_get_status(c->n[i].r, &st);
        if (st.role == RFT_STATE_LEADER && st.ready) {
            return i;
        }
    }
    return 0;
}

static int rb_follower(struct rb_cluster *c)
{
    int leader = rb_leader(c);
    for (int i = 1; i <= RB_NODES; i++) {
        if (i != leader && c->n[i].r != NULL) {
            return i;
        }
    }
    return 0;
}

static bool rb_has_leader(struct rb_cluster *c, void *arg)
{
    (void)arg;
    return rb_leader(c) != 0;
}

static void rb_node_start(struct rb_cluster *c, int id)
{
    struct rb_node *n = &c->n[id];
    struct rft_config cfg;
    char err[256];
    rb_mkdtemp(n->dir, sizeof(n->dir));
    rb_cfg_fill(&cfg, (uint64_t)id, c->base_port + 2 * id, n->dir,
                c->election_ms, c->heartbeat_ms, c->snap_threshold);
    if (fsm_new(NULL, &n->fsm) != 0) {
        rb_die("fsm_new");
    }
    if (rft_new(&c->loop, &cfg, n->fsm, &n->r, err, sizeof(err)) != 0) {
        fprintf(stderr, "raft_bench: rft_new: %s\n", err);
        exit(1);
    }
    if (rft_start(n->r) != 0) {
        fprintf(stderr, "raft_bench: rft_start: %s\n", rft_errmsg(n->r));
        exit(1);
    }
}

static void rb_change_cb(void *data, int status)
{
    *(int *)data = status;
}

static bool rb_int_set(struct rb_cluster *c, void *arg)
{
    (void)c;
    return *(int *)arg != 1;
}

static void rb_cluster_open(struct rb_cluster *c,
                            unsigned election_ms,
                            unsigned heartbeat_ms,
                            unsigned snap_threshold)
{
    static int round;
    memset(c, 0, sizeof(*c));
    c->base_port = 30000 + (int)(getpid() % 1000) * 16 + (round++ % 2) * 8;
    c->election_ms = election_ms;
    c->heartbeat_ms = heartbeat_ms;
    c->snap_threshold = snap_threshold;
    uv_loop_init(&c->loop);
    uv_timer_init(&c->loop, &c->tick);
    uv_timer_start(&c->tick, rb_tick_cb, 5, 5);
    rb_node_start(c, 1);
    if (!rb_run_until(c, rb_has_leader, NULL, 10000)) {
        rb_die("no leader after bootstrap");
    }
    for (int id = 2; id <= RB_NODES; id++) {
        char addr[RFT_ADDR_MAX];
        int status = 1;
        rb_node_start(c, id);
        snprintf(addr, sizeof(addr), "127.0.0.1:%d", c->base_port + 2 * id);
        if (rft_add(c->n[1].r, (uint64_t)id, addr, RFT_ROLE_VOTER, rb_change_cb,
                    &status) != 0) {
            fprintf(stderr, "raft_bench: rft_add: %s\n", rft_errmsg(c->n[1].r));
            exit(1);
        }
        if (!rb_run_until(c, rb_int_set, &status, 30000) || status != 0) {
            rb_die("adding a voter failed");
        }
    }
}

static void rb_closed_cb(void *data)
{
    ((struct rb_node *)data)->closed = true;
}

static bool rb_is_closed(struct rb_cluster *c, void *arg)
{
    (void)c;
    return ((struct rb_node *)arg)->closed;
}

static void rb_cluster_close(struct rb_cluster *c)
{
    for (int i = 1; i <= RB_NODES; i++) {
        struct rb_node *n = &c->n[i];
        if (n->r != NULL) {
            rft_close(n->r, rb_closed_cb, n);
            if (!rb_run_until(c, rb_is_closed, n, 10000)) {
                rb_die("rft_close did not finish");
            }
            n->r = NULL;
        }
    }
    uv_close((uv_handle_t *)&c->tick, NULL);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&c->loop) != 0) {
        rb_die("loop still busy");
    }
    for (int i = 1; i <= RB_NODES; i++) {
        fsm_free(c->n[i].fsm);
        rb_rmtree(c->n[i].dir);
    }
}

static uint64_t rb_term(struct rb_cluster *c)
{
    uint64_t term = 0;
    for (int i = 1; i <= RB_NODES; i++) {
        struct rft_status st;
        rft_get_status(c->n[i].r, &st);
        term = st.term > term ? st.term : term;
    }
    return term;
}

/* ---- commands ----------------------------------------------------------- */

static uint64_t rb_req_id = 1;

static void rb_env(struct proto_cmd *c, enum proto_cmd_kind kind)
{
    memset(c, 0, sizeof(*c));
    c->version = PROTO_VERSION;
    c->kind = kind;
    c->req_id = rb_req_id++;
    ovha_strlcpy(c->gateway, RB_GW, sizeof(c->gateway));
    c->ts_ms = ovha_now_real_ms();
}

static void rb_encode(const struct proto_cmd *c, uint8_t **buf, size_t *len)
{
    if (proto_cmd_encode(c, buf, len) != 0) {
        rb_die("proto_cmd_encode");
    }
}

static void rb_open_cmd(unsigned slot, uint8_t **buf, size_t *len)
{
    struct proto_cmd c;
    rb_env(&c, PROTO_CMD_SESSION_OPEN);
    snprintf(c.u.session_open.cn, sizeof(c.u.session_open.cn),
             "bench-client-%04u", slot);
    c.u.session_open.cid = slot;
    ovha_strlcpy(c.u.session_open.real_addr, "198.18.200.1:51820",
                 sizeof(c.u.session_open.real_addr));
    ovha_strlcpy(c.u.session_open.pool4, RB_POOL,
                 sizeof(c.u.session_open.pool4));
    rb_encode(&c, buf, len);
}

static void rb_close_cmd(uint64_t sid, uint8_t **buf, size_t *len)
{
    struct proto_cmd c;
    rb_env(&c, PROTO_CMD_SESSION_CLOSE);
    c.u.session_close.session_id = sid;
    ovha_strlcpy(c.u.session_close.reason, "disconnect",
                 sizeof(c.u.session_close.reason));
    rb_encode(&c, buf, len);
}

struct rb_sync {
    int done, status;
    struct proto_result res;
};

static void rb_sync_cb(void *data, int status, const struct proto_result *res)
{
    struct rb_sync *s = data;
    s->status = status;
    if (status == 0) {
        s->res = *res;
    }
    s->done = 1;
}

static bool rb_sync_done(struct rb_cluster *c, void *arg)
{
    (void)c;
    return ((struct rb_sync *)arg)->done;
}

static void rb_propose_sync(struct rb_cluster *c,
                            int node,
                            const struct proto_cmd *cmd)
{
    struct rb_sync s = { 0 };
    uint8_t *buf;
    size_t len;
    rb_encode(cmd, &buf, &len);
    if (rft_propose(c->n[node].r, buf, len, 0, rb_sync_cb, &s) != 0) {
        rb_die("rft_propose");
    }
    ovha_free(buf);
    if (!rb_run_until(c, rb_sync_done, &s, 10000) || s.status != 0 ||
        s.res.status != PROTO_STATUS_OK) {
        rb_die("setup command failed");
    }
}

static void rb_pool_cmd(struct proto_cmd *cmd)
{
    rb_env(cmd, PROTO_CMD_POOL_PUT);
    ovha_strlcpy(cmd->actor, "bench", sizeof(cmd->actor));
    ovha_strlcpy(cmd->u.pool_put.name, RB_POOL, sizeof(cmd->u.pool_put.name));
    ovha_strlcpy(cmd->u.pool_put.cidr, "100.64.0.0/16",
                 sizeof(cmd->u.pool_put.cidr));
    cmd->u.pool_put.lease_ttl_ms = 3600000;
}

static void rb_heartbeat_cmd(struct proto_cmd *cmd)
{
    rb_env(cmd, PROTO_CMD_GATEWAY_HEARTBEAT);
    ovha_strlcpy(cmd->u.gateway_heartbeat.addr, "198.18.0.1",
                 sizeof(cmd->u.gateway_heartbeat.addr));
}

/* The product's preconditions for SessionOpen: a pool and a live gateway. */
static void rb_setup_state(struct rb_cluster *c)
{
    struct proto_cmd cmd;
    rb_pool_cmd(&cmd);
    rb_propose_sync(c, rb_leader(c), &cmd);
    rb_heartbeat_cmd(&cmd);
    rb_propose_sync(c, rb_leader(c), &cmd);
}

/* A few unmeasured proposals through node: a follower dials (and with
 * --tls handshakes with) the leader's forwarding port on first use. */
static void rb_warmup(struct rb_cluster *c, int node)
{
    struct proto_cmd cmd;
    for (int i = 0; i < 10; i++) {
        rb_heartbeat_cmd(&cmd);
        rb_propose_sync(c, node, &cmd);
    }
}

/* ---- the load: slots alternating SessionOpen / SessionClose ------------- */

struct rb_load;

struct rb_slot {
    struct rb_load *ld;
    unsigned idx;
    bool busy;
    uint64_t sid; /* 0 = next is an open */
    uint64_t t0;
};

struct rb_load {
    struct rft *r;
    bool stop;
    size_t inflight;
    uint64_t end_ns;    /* completions after this are not counted */
    uint64_t in_window; /* committed before end_ns */
    uint64_t ok, refused, failed, submit_errors;
    struct rb_lat lat;
    struct rb_slot slots[RB_MAX_W];
};

static void rb_slot_fire(struct rb_slot *s);

static void rb_slot_cb(void *data, int status, const struct proto_result *res)
{
    struct rb_slot *s = data;
    struct rb_load *ld = s->ld;
    uint64_t now = uv_hrtime();
    rb_lat_add(&ld->lat, now - s->t0);
    if (status == 0) {
        if (now <= ld->end_ns) {
            ld->in_window++;
        }
        if (res->status != PROTO_STATUS_OK) {
            ld->refused++;
            s->sid = 0;
        } else {
            ld->ok++;
            s->sid = s->sid == 0 ? res->session_id : 0;
        }
    } else {
        ld->failed++;
        s->sid = 0;
    }
    s->busy = false;
    ld->inflight--;
    if (!ld->stop) {
        rb_slot_fire(s);
    }
}

static void rb_slot_fire(struct rb_slot *s)
{
    struct rb_load *ld = s->ld;
    uint8_t *buf;
    size_t len;
    if (s->sid == 0) {
        rb_open_cmd(s->idx, &buf, &len);
    } else {
        rb_close_cmd(s->sid, &buf, &len);
    }
    s->t0 = uv_hrtime();
    int rv = rft_propose(ld->r, buf, len, 0, rb_slot_cb, s);
    ovha_free(buf);
    if (rv != 0) {
        ld->submit_errors++;
        return;
    }
    s->busy = true;
    ld->inflight++;
}

static void rb_load_init(struct rb_load *ld, struct rft *r)
{
    memset(ld, 0, sizeof(*ld));
    ld->r = r;
    for (unsigned i = 0; i < RB_MAX_W; i++) {
        ld->slots[i].ld = ld;
        ld->slots[i].idx = i;
    }
}

static bool rb_load_drained(struct rb_cluster *c, void *arg)
{
    (void)c;
    return ((struct rb_load *)arg)->inflight == 0;
}

static bool rb_load_past_end(struct rb_cluster *c, void *arg)
{
    (void)c;
    return uv_hrtime() >= ((struct rb_load *)arg)->end_ns;
}

/* Closes the sessions the slots still hold, so runs start alike. */
static void rb_load_cleanup(struct rb_cluster *c,
                            struct rb_load *ld,
                            unsigned w)
{
    ld->stop = true;
    for (unsigned i = 0; i < w; i++) {
        if (ld->slots[i].sid != 0) {
            rb_slot_fire(&ld->slots[i]);
        }
    }
    rb_run_until(c, rb_load_drained, ld, 20000);
}

static const char *rb_node_kind(struct rb_cluster *c, int node)
{
    return node == rb_leader(c) ? "leader" : "follower";
}

static void rb_throughput_row(struct rb_cluster *c,
                              int node,
                              unsigned w,
                              unsigned seconds)
{
    struct rb_load *ld = calloc(1, sizeof(*ld));
    if (ld == NULL) {
        rb_die("out of memory");
    }
    const char *kind = rb_node_kind(c, node);
    rb_warmup(c, node);
    uint64_t term0 = rb_term(c);
    rb_load_init(ld, c->n[node].r);
    uint64_t t0 = uv_hrtime();
    ld->end_ns = t0 + (uint64_t)seconds * 1000000000ULL;
    for (unsigned i = 0; i < w; i++) {
        rb_slot_fire(&ld->slots[i]);
    }
    rb_run_until(c, rb_load_past_end, ld, (uint64_t)seconds * 1000 + 1000);
    ld->stop = true;
    if (!rb_run_until(c, rb_load_drained, ld, 20000)) {
        rb_die("proposals did not drain");
    }
    rb_lat_sort(&ld->lat);
    printf("| %s | %u | %.0f | %.2f | %.2f | %.1f | %" PRIu64 "/%" PRIu64
           "/%" PRIu64 " | %" PRIu64 " |\n",
           kind, w, (double)ld->in_window / seconds, rb_lat_q(&ld->lat, 0.50),
           rb_lat_q(&ld->lat, 0.99), rb_lat_q(&ld->lat, 1.0), ld->ok,
           ld->refused, ld->failed + ld->submit_errors, rb_term(c) - term0);
    fflush(stdout);
    rb_lat_free(&ld->lat);
    rb_load_cleanup(c, ld, w);
    free(ld);
}

static void rb_throughput_table(const char *title,
                                unsigned election_ms,
                                unsigned heartbeat_ms,
                                unsigned snap,
                                const unsigned *ws,
                                size_t nws,
                                unsigned seconds)
{
    struct rb_cluster *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        rb_die("out of memory");
    }
    rb_cluster_open(c, election_ms, heartbeat_ms, snap);
    rb_setup_state(c);
    printf("\n%s (timings %u/%u ms, snapshot_threshold %u, %u s per row)\n\n",
           title, election_ms, heartbeat_ms, snap, seconds);
    printf(
        "| proposer | in flight | committed/s | p50 ms | p99 ms | max ms "
        "| ok/refused/failed | term changes |\n");
    printf("|---|---|---|---|---|---|---|---|\n");
    fflush(stdout);
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < nws; i++) {
            int node = pass == 0 ? rb_leader(c) : rb_follower(c);
            if (node == 0) {
                rb_die("lost the leader");
            }
            rb_throughput_row(c, node, ws[i], seconds);
        }
    }
    rb_cluster_close(c);
    free(c);
}

/* ---- latency at a fixed rate -------------------------------------------- */

struct rb_rate {
    struct rb_load ld;
    uv_timer_t timer;
    uint64_t start_ns;
    uint64_t last_ns; /* when the last proposal was issued */
    unsigned rate, count, issued, next_slot, no_slot;
};

static void rb_rate_tick(uv_timer_t *t)
{
    struct rb_rate *rr = t->data;
    uint64_t due = (uv_hrtime() - rr->start_ns) * rr->rate / 1000000000ULL;
    if (due > rr->count) {
        due = rr->count;
    }
    while (rr->issued < due) {
        struct rb_slot *s = NULL;
        for (unsigned k = 0; k < RB_RATE_SL; k++) {
            struct rb_slot *cand =
                &rr->ld.slots[(rr->next_slot + k) % RB_RATE_SL];
            if (!cand->busy) {
                s = cand;
                break;
            }
        }
        if (s == NULL) {
            rr->no_slot++;
            break;
        }
        rr->next_slot = (s->idx + 1) % RB_RATE_SL;
        rb_slot_fire(s);
        rr->issued++;
        rr->last_ns = uv_hrtime();
    }
    if (rr->issued >= rr->count) {
        uv_timer_stop(t);
    }
}

static bool rb_rate_done(struct rb_cluster *c, void *arg)
{
    (void)c;
    struct rb_rate *rr = arg;
    return rr->issued >= rr->count && rr->ld.inflight == 0;
}

static void rb_rate_row(struct rb_cluster *c,
                        int node,
                        unsigned rate,
                        unsigned count)
{
    struct rb_rate *rr = calloc(1, sizeof(*rr));
    if (rr == NULL) {
        rb_die("out of memory");
    }
    const char *kind = rb_node_kind(c, node);
    rb_warmup(c, node);
    rb_load_init(&rr->ld, c->n[node].r);
    rr->ld.stop = true; /* completions do not chain: the timer paces */
    rr->ld.end_ns = UINT64_MAX;
    rr->rate = rate;
    rr->count = count;
    rr->start_ns = uv_hrtime();
    uv_timer_init(&c->loop, &rr->timer);
    rr->timer.data = rr;
    uv_timer_start(&rr->timer, rb_rate_tick, 1, 1);
    uint64_t bound = (uint64_t)count * 1000 / rate + 20000;
    if (!rb_run_until(c, rb_rate_done, rr, bound)) {
        rb_die("fixed-rate run did not finish");
    }
    /* The first proposal is due 1/rate after the start. */
    double secs = (double)(rr->last_ns - rr->start_ns) / 1e9;
    uv_close((uv_handle_t *)&rr->timer, NULL);
    uv_run(&c->loop, UV_RUN_NOWAIT);
    rb_lat_sort(&rr->ld.lat);
    printf("| %s | %u | %.0f | %.2f | %.2f | %.2f | %.1f | %" PRIu64 "/%" PRIu64
           "/%" PRIu64 " |\n",
           kind, count, count / secs, rb_lat_q(&rr->ld.lat, 0.50),
           rb_lat_q(&rr->ld.lat, 0.99), rb_lat_q(&rr->ld.lat, 0.999),
           rb_lat_q(&rr->ld.lat, 1.0), rr->ld.ok, rr->ld.refused,
           rr->ld.failed + rr->ld.submit_errors + rr->no_slot);
    fflush(stdout);
    rb_lat_free(&rr->ld.lat);
    rb_load_cleanup(c, &rr->ld, RB_RATE_SL);
    free(rr);
}

static void rb_rate_table(unsigned rate, unsigned count)
{
    struct rb_cluster *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        rb_die("out of memory");
    }
    rb_cluster_open(c, 1000, 100, 0);
    rb_setup_state(c);
    printf(
        "\nLatency at %u proposals/s, %u proposals per row (timings "
        "1000/100 ms, snapshot_threshold 8192)\n\n",
        rate, count);
    printf(
        "| proposer | proposals | achieved/s | p50 ms | p99 ms | p99.9 ms "
        "| max ms | ok/refused/failed |\n");
    printf("|---|---|---|---|---|---|---|---|\n");
    rb_rate_row(c, rb_leader(c), rate, count);
    rb_rate_row(c, rb_follower(c), rate, count);
    rb_cluster_close(c);
    free(c);
}

/* ---- election time after SIGKILL of the leader (one process per node) --- */

enum rb_msg_kind {
    RB_MSG_STATE = 1,
    RB_MSG_FORMED = 2,
    RB_MSG_ERROR = 3,
    RB_MSG_LOAD = 4, /* a load finished: count and latencies */
};

struct rb_msg {
    uint32_t id;
    int32_t kind;
    int32_t role;
    int32_t ready;
    uint64_t term;
    uint64_t t_ns;
    uint64_t count;
    uint32_t p50_us, p99_us, p999_us, max_us, failed, pad;
    double rate; /* fixed-rate loads: proposals/s achieved */
};

/* What one node proposes once the cluster has formed. */
enum rb_load_mode {
    RB_LOAD_NONE = 0,
    RB_LOAD_SATURATE = 1, /* 256 in flight for `seconds` */
    RB_LOAD_RATE = 2,     /* `count` proposals at `rate`/s */
};

struct rb_load_spec {
    enum rb_load_mode mode;
    uint32_t proposer; /* node id that runs the load */
    unsigned seconds, rate, count;
    unsigned snap; /* every node's snapshot_threshold; 0 = default */
};

struct rb_child {
    uv_loop_t loop;
    uv_timer_t poll;
    struct fsm *fsm;
    struct rft *r;
    int fd;
    uint32_t id;
    int port_base;
    int role, ready;
    int stage; /* node 1: 0 wait leader, 1/2 adding node 2/3, 3 formed */
    struct rb_load_spec spec; /* mode NONE unless this node proposes */
    int lstage; /* 0 idle, 1 pool, 2 heartbeat, 3 running, 4 draining,
                   5 reported */
    uv_timer_t load_timer;
    struct rb_rate *rr;
};

static void rb_child_send(struct rb_child *ch,
                          int kind,
                          int role,
                          int ready,
                          uint64_t term)
{
    struct rb_msg m;
    memset(&m, 0, sizeof(m));
    m.id = ch->id;
    m.kind = kind;
    m.role = role;
    m.ready = ready;
    m.term = term;
    m.t_ns = rb_mono_ns();
    /* Smaller than PIPE_BUF: atomic; a dead parent means we are killed. */
    if (write(ch->fd, &m, sizeof(m)) != (ssize_t)sizeof(m)) {
        _exit(3);
    }
}

static void rb_child_fail(struct rb_child *ch)
{
    rb_child_send(ch, RB_MSG_ERROR, 0, 0, 0);
    _exit(4);
}

static void rb_child_load_end(uv_timer_t *t)
{
    struct rb_child *ch = t->data;
    ch->rr->ld.stop = true;
    ch->lstage = 4;
}

static void rb_child_run_load(struct rb_child *ch)
{
    struct rb_rate *rr = ch->rr;
    rb_load_init(&rr->ld, ch->r);
    ch->lstage = 3;
    if (ch->spec.mode == RB_LOAD_SATURATE) {
        rr->ld.end_ns =
            uv_hrtime() + (uint64_t)ch->spec.seconds * 1000000000ULL;
        for (unsigned i = 0; i < 256; i++) {
            rb_slot_fire(&rr->ld.slots[i]);
        }
        uv_timer_init(&ch->loop, &ch->load_timer);
        ch->load_timer.data = ch;
        uv_timer_start(&ch->load_timer, rb_child_load_end,
                       (uint64_t)ch->spec.seconds * 1000, 0);
        return;
    }
    rr->ld.stop = true; /* completions do not chain: the timer paces */
    rr->ld.end_ns = UINT64_MAX;
    rr->rate = ch->spec.rate;
    rr->count = ch->spec.count;
    rr->start_ns = uv_hrtime();
    uv_timer_init(&ch->loop, &ch->load_timer);
    ch->load_timer.data = rr;
    uv_timer_start(&ch->load_timer, rb_rate_tick, 1, 1);
    ch->lstage = 4;
}

static void rb_child_propose(struct rb_child *ch,
                             const struct proto_cmd *cmd,
                             rft_propose_cb cb)
{
    uint8_t *buf;
    size_t len;
    rb_encode(cmd, &buf, &len);
    if (rft_propose(ch->r, buf, len, 0, cb, ch) != 0) {
        rb_child_fail(ch);
    }
    ovha_free(buf);
}

static void rb_child_setup_cb(void *data,
                              int status,
                              const struct proto_result *res)
{
    struct rb_child *ch = data;
    struct proto_cmd cmd;
    if (status != 0 || res->status != PROTO_STATUS_OK) {
        rb_child_fail(ch);
    }
    if (ch->lstage == 1) {
        ch->lstage = 2;
        rb_heartbeat_cmd(&cmd);
        rb_child_propose(ch, &cmd, rb_child_setup_cb);
        return;
    }
    rb_child_run_load(ch);
}

/* The proposer starts once it sees three voters and a leader. */
static bool rb_child_may_load(struct rb_child *ch)
{
    struct rft_status st;
    size_t voters = 0;
    if (ch->spec.mode == RB_LOAD_NONE || ch->lstage != 0) {
        return false;
    }
    if (ch->id == 1) {
        return ch->stage == 3;
    }
    rft_get_status(ch->r, &st);
    for (size_t i = 0; i < st.nservers; i++) {
        voters += st.servers[i].role == RFT_ROLE_VOTER;
    }
    return voters == RB_NODES && st.leader_id != 0;
}

static void rb_child_load_start(struct rb_child *ch)
{
    struct proto_cmd cmd;
    ch->rr = calloc(1, sizeof(*ch->rr));
    if (ch->rr == NULL) {
        rb_child_fail(ch);
    }
    ch->lstage = 1;
    rb_pool_cmd(&cmd);
    rb_child_propose(ch, &cmd, rb_child_setup_cb);
}

static void rb_child_load_report(struct rb_child *ch)
{
    struct rb_rate *rr = ch->rr;
    struct rb_load *ld = &rr->ld;
    struct rb_msg m;
    rb_lat_sort(&ld->lat);
    memset(&m, 0, sizeof(m));
    m.id = ch->id;
    m.kind = RB_MSG_LOAD;
    m.t_ns = rb_mono_ns();
    m.count = ch->spec.mode == RB_LOAD_SATURATE ? ld->in_window : ld->lat.n;
    m.p50_us = (uint32_t)(rb_lat_q(&ld->lat, 0.50) * 1000);
    m.p99_us = (uint32_t)(rb_lat_q(&ld->lat, 0.99) * 1000);
    m.p999_us = (uint32_t)(rb_lat_q(&ld->lat, 0.999) * 1000);
    m.max_us = (uint32_t)(rb_lat_q(&ld->lat, 1.0) * 1000);
    m.failed =
        (uint32_t)(ld->failed + ld->submit_errors + ld->refused + rr->no_slot);
    if (rr->last_ns > rr->start_ns) {
        m.rate = rr->issued / ((double)(rr->last_ns - rr->start_ns) / 1e9);
    }
    if (write(ch->fd, &m, sizeof(m)) != (ssize_t)sizeof(m)) {
        _exit(3);
    }
    ch->lstage = 5;
}

static void rb_child_add_cb(void *data, int status)
{
    struct rb_child *ch = data;
    if (status != 0) {
        rb_child_fail(ch);
    }
    ch->stage++;
    if (ch->stage == 2) {
        char addr[RFT_ADDR_MAX];
        snprintf(addr, sizeof(addr), "127.0.0.1:%d", ch->port_base + 6);
        if (rft_add(ch->r, 3, addr, RFT_ROLE_VOTER, rb_child_add_cb, ch) != 0) {
            rb_child_fail(ch);
        }
    } else if (ch->stage == 3) {
        rb_child_send(ch, RB_MSG_FORMED, 0, 0, 0);
    }
}

static bool rb_child_drained(struct rb_child *ch)
{
    struct rb_rate *rr = ch->rr;
    if (ch->lstage != 4 || rr->ld.inflight != 0) {
        return false;
    }
    return ch->spec.mode == RB_LOAD_SATURATE || rr->issued >= rr->count;
}

static void rb_child_poll(uv_timer_t *t)
{
    struct rb_child *ch = t->data;
    struct rft_status st;
    rft_get_status(ch->r, &st);
    if (st.role != ch->role || (int)st.ready != ch->ready) {
        ch->role = st.role;
        ch->ready = st.ready;
        rb_child_send(ch, RB_MSG_STATE, st.role, st.ready, st.term);
    }
    if (ch->id == 1 && ch->stage == 0 && st.role == RFT_STATE_LEADER &&
        st.ready) {
        char addr[RFT_ADDR_MAX];
        snprintf(addr, sizeof(addr), "127.0.0.1:%d", ch->port_base + 4);
        ch->stage = 1;
        if (rft_add(ch->r, 2, addr, RFT_ROLE_VOTER, rb_child_add_cb, ch) != 0) {
            rb_child_fail(ch);
        }
    }
    if (rb_child_may_load(ch)) {
        rb_child_load_start(ch);
    }
    if (rb_child_drained(ch)) {
        rb_child_load_report(ch);
    }
}

static void rb_child_main(uint32_t id,
                          int fd,
                          int port_base,
                          const char *dir,
                          unsigned election_ms,
                          unsigned heartbeat_ms,
                          const struct rb_load_spec *spec)
{
    struct rb_child ch;
    struct rft_config cfg;
    char err[256];
    memset(&ch, 0, sizeof(ch));
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    alarm(180); /* bound, should the parent lose track of us */
    ch.fd = fd;
    ch.id = id;
    ch.port_base = port_base;
    ch.role = -1;
    ch.ready = -1;
    if (spec->mode != RB_LOAD_NONE && spec->proposer == id) {
        ch.spec = *spec;
    }
    rb_cfg_fill(&cfg, id, port_base + 2 * (int)id, dir, election_ms,
                heartbeat_ms, spec->snap);
    if (uv_loop_init(&ch.loop) != 0 || fsm_new(NULL, &ch.fsm) != 0 ||
        rft_new(&ch.loop, &cfg, ch.fsm, &ch.r, err, sizeof(err)) != 0 ||
        rft_start(ch.r) != 0) {
        rb_child_fail(&ch);
    }
    uv_timer_init(&ch.loop, &ch.poll);
    ch.poll.data = &ch;
    uv_timer_start(&ch.poll, rb_child_poll, 1, 1);
    uv_run(&ch.loop, UV_RUN_DEFAULT);
    _exit(0);
}

struct rb_trial {
    pid_t pid[RB_NODES + 1];
    char dir[RB_NODES + 1][64];
    int role[RB_NODES + 1], ready[RB_NODES + 1];
    bool formed, error, loaded;
    unsigned disruptions; /* role changes after the cluster formed */
    struct rb_msg load;
    int fd;
};

/* Reads one message if one arrives within ms; updates the trial. */
static bool rb_trial_read(struct rb_trial *tr, int ms, struct rb_msg *ret)
{
    struct pollfd p = { tr->fd, POLLIN, 0 };
    if (poll(&p, 1, ms) <= 0) {
        return false;
    }
    ssize_t n = read(tr->fd, ret, sizeof(*ret));
    if (n != (ssize_t)sizeof(*ret) || ret->id < 1 || ret->id > RB_NODES) {
        tr->error = true;
        return false;
    }
    if (ret->kind == RB_MSG_STATE) {
        tr->role[ret->id] = ret->role;
        tr->ready[ret->id] = ret->ready;
        /* Node 1 leads from bootstrap on; anything else is an election. */
        if (tr->formed && (ret->role == RFT_STATE_CANDIDATE ||
                           (ret->role == RFT_STATE_LEADER) != (ret->id == 1))) {
            tr->disruptions++;
        }
    } else if (ret->kind == RB_MSG_FORMED) {
        tr->formed = true;
    } else if (ret->kind == RB_MSG_LOAD) {
        tr->load = *ret;
        tr->loaded = true;
    } else {
        tr->error = true;
    }
    return true;
}

static void rb_trial_end(struct rb_trial *tr)
{
    for (int i = 1; i <= RB_NODES; i++) {
        if (tr->pid[i] > 0) {
            kill(tr->pid[i], SIGKILL);
            waitpid(tr->pid[i], NULL, 0);
            tr->pid[i] = 0;
        }
        rb_rmtree(tr->dir[i]);
    }
    close(tr->fd);
}

/* Forks the three nodes of a fresh cluster and waits until node 1 has
 * added the other two. Returns 0 or -1 (tr ended). */
static int rb_trial_spawn(struct rb_trial *tr,
                          int trial,
                          unsigned election_ms,
                          unsigned heartbeat_ms,
                          const struct rb_load_spec *spec)
{
    int fds[2];
    int port_base = 40000 + (int)(getpid() % 500) * 40 + (trial % 4) * 8;
    memset(tr, 0, sizeof(*tr));
    if (pipe(fds) != 0) {
        rb_die("pipe");
    }
    tr->fd = fds[0];
    fflush(stdout);
    fflush(stderr);
    for (int i = 1; i <= RB_NODES; i++) {
        rb_mkdtemp(tr->dir[i], sizeof(tr->dir[i]));
        tr->pid[i] = fork();
        if (tr->pid[i] < 0) {
            rb_die("fork");
        }
        if (tr->pid[i] == 0) {
            close(fds[0]);
            rb_child_main((uint32_t)i, fds[1], port_base, tr->dir[i],
                          election_ms, heartbeat_ms, spec);
        }
    }
    close(fds[1]);
    struct rb_msg m;
    uint64_t limit = rb_mono_ns() + 30000000000ULL;
    while (!tr->formed && !tr->error && rb_mono_ns() < limit) {
        rb_trial_read(tr, 100, &m);
    }
    if (!tr->formed || tr->error) {
        rb_trial_end(tr);
        return -1;
    }
    return 0;
}

/* One trial: returns 0 and the times (ms) from the kill to the first
 * survivor leader and to its barrier being done, or -1. */
static int rb_trial_run(int trial,
                        unsigned election_ms,
                        unsigned heartbeat_ms,
                        double *ret_elected,
                        double *ret_ready)
{
    struct rb_trial tr;
    struct rb_msg m;
    uint64_t limit;
    struct rb_load_spec none = { RB_LOAD_NONE, 0, 0, 0, 0, 0 };
    if (rb_trial_spawn(&tr, trial, election_ms, heartbeat_ms, &none) != 0) {
        return -1;
    }
    /* Let the followers settle on the leader's heartbeats first. */
    uint64_t settle = rb_mono_ns() + (uint64_t)election_ms * 1000000ULL;
    while (!tr.error && rb_mono_ns() < settle) {
        rb_trial_read(&tr, 10, &m);
    }
    int leader = 0;
    for (int i = 1; i <= RB_NODES; i++) {
        if (tr.role[i] == RFT_STATE_LEADER && tr.ready[i]) {
            leader = i;
        }
    }
    if (!tr.formed || tr.error || leader == 0) {
        rb_trial_end(&tr);
        return -1;
    }
    uint64_t t_kill = rb_mono_ns();
    kill(tr.pid[leader], SIGKILL);
    waitpid(tr.pid[leader], NULL, 0);
    tr.pid[leader] = 0;
    uint64_t t_elected = 0, t_ready = 0;
    limit = t_kill + 30000000000ULL;
    while (t_ready == 0 && !tr.error && rb_mono_ns() < limit) {
        if (!rb_trial_read(&tr, 100, &m) || m.kind != RB_MSG_STATE ||
            (int)m.id == leader || m.role != RFT_STATE_LEADER) {
            continue;
        }
        if (t_elected == 0) {
            t_elected = m.t_ns;
        }
        if (m.ready) {
            t_ready = m.t_ns;
        }
    }
    rb_trial_end(&tr);
    if (t_ready == 0) {
        return -1;
    }
    *ret_elected = (double)(t_elected - t_kill) / 1e6;
    *ret_ready = (double)(t_ready - t_kill) / 1e6;
    return 0;
}

/* The leader (node 1, its own process) keeps 256 proposals in flight
 * for `seconds`; the followers are separate processes. Prints committed/s
 * and latencies, and how many role changes the load provoked. */
static void rb_load_row(unsigned election_ms,
                        unsigned heartbeat_ms,
                        unsigned snap,
                        unsigned seconds)
{
    struct rb_trial tr;
    struct rb_msg m;
    struct rb_load_spec spec = { RB_LOAD_SATURATE, 1, seconds, 0, 0, snap };
    if (rb_trial_spawn(&tr, 0, election_ms, heartbeat_ms, &spec) != 0) {
        printf("| %u/%u | %u | cluster did not form | | | | | |\n", election_ms,
               heartbeat_ms, snap);
        return;
    }
    uint64_t limit = rb_mono_ns() + ((uint64_t)seconds + 60) * 1000000000ULL;
    while (!tr.loaded && !tr.error && rb_mono_ns() < limit) {
        rb_trial_read(&tr, 100, &m);
    }
    rb_trial_end(&tr);
    if (!tr.loaded) {
        printf("| %u/%u | %u | load did not finish | | | | | %u |\n",
               election_ms, heartbeat_ms, snap, tr.disruptions);
        return;
    }
    printf("| %u/%u | %u | %.0f | %.2f | %.2f | %.1f | %u | %u |\n",
           election_ms, heartbeat_ms, snap, (double)tr.load.count / seconds,
           tr.load.p50_us / 1000.0, tr.load.p99_us / 1000.0,
           tr.load.max_us / 1000.0, tr.load.failed, tr.disruptions);
    fflush(stdout);
}

static void rb_load_table(unsigned seconds)
{
    static const unsigned rows[][3] = { { 1000, 100, 8192 },
                                        { 300, 30, 8192 },
                                        { 150, 15, 8192 },
                                        { 100, 10, 8192 },
                                        { 1000, 100, 1000000 } };
    printf(
        "\nOne process per node: 256 in flight on the leader, %u s per "
        "row\n\n",
        seconds);
    printf(
        "| election/heartbeat ms | snapshot_threshold | committed/s "
        "| p50 ms | p99 ms | max ms | refused+failed "
        "| role changes during load |\n");
    printf("|---|---|---|---|---|---|---|---|\n");
    fflush(stdout);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        rb_load_row(rows[i][0], rows[i][1], rows[i][2], seconds);
    }
}

/* Fixed-rate latency with one process per node: node `proposer` (1 =
 * the leader, 2 = a follower, forwarded) paces count proposals. */
static void rb_prate_row(uint32_t proposer, unsigned rate, unsigned count)
{
    struct rb_trial tr;
    struct rb_msg m;
    struct rb_load_spec spec = { RB_LOAD_RATE, proposer, 0, rate, count, 0 };
    const char *kind = proposer == 1 ? "leader" : "follower";
    if (rb_trial_spawn(&tr, 1, 1000, 100, &spec) != 0) {
        printf("| %s | cluster did not form | | | | | | |\n", kind);
        return;
    }
    uint64_t limit =
        rb_mono_ns() + ((uint64_t)count / rate + 60) * 1000000000ULL;
    while (!tr.loaded && !tr.error && rb_mono_ns() < limit) {
        rb_trial_read(&tr, 100, &m);
    }
    rb_trial_end(&tr);
    if (!tr.loaded) {
        printf("| %s | load did not finish | | | | | | %u |\n", kind,
               tr.disruptions);
        return;
    }
    printf("| %s | %" PRIu64
           " | %.0f | %.2f | %.2f | %.2f | %.1f | %u | %u |\n",
           kind, tr.load.count, tr.load.rate, tr.load.p50_us / 1000.0,
           tr.load.p99_us / 1000.0, tr.load.p999_us / 1000.0,
           tr.load.max_us / 1000.0, tr.load.failed, tr.disruptions);
    fflush(stdout);
}

static void rb_prate_table(unsigned rate, unsigned count)
{
    printf(
        "\nOne process per node: latency at %u proposals/s, %u proposals "
        "per row (timings 1000/100 ms, snapshot_threshold 8192)\n\n",
        rate, count);
    printf(
        "| proposer | proposals | achieved/s | p50 ms | p99 ms | p99.9 ms "
        "| max ms | refused+failed | role changes |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    fflush(stdout);
    rb_prate_row(1, rate, count);
    rb_prate_row(2, rate, count);
}

static int rb_dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of sorted v[0..n-1]: the mean of the middle two when n is even. */
static double rb_median(const double *v, unsigned n)
{
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void rb_election_row(unsigned election_ms,
                            unsigned heartbeat_ms,
                            unsigned trials)
{
    double el[64], rd[64];
    unsigned ok = 0;
    for (unsigned t = 0; t < trials && t < 64; t++) {
        if (rb_trial_run((int)t, election_ms, heartbeat_ms, &el[ok], &rd[ok]) ==
            0) {
            ok++;
        }
    }
    if (ok == 0) {
        printf("| %u/%u | 0/%u | - | - | - | - | - |\n", election_ms,
               heartbeat_ms, trials);
        return;
    }
    qsort(el, ok, sizeof(double), rb_dbl_cmp);
    qsort(rd, ok, sizeof(double), rb_dbl_cmp);
    printf("| %u/%u | %u/%u | %.0f | %.0f | %.0f | %.0f | %.0f |\n",
           election_ms, heartbeat_ms, ok, trials, rb_median(el, ok), rd[0],
           rb_median(rd, ok), rd[ok - 1], el[ok - 1]);
    fflush(stdout);
}

static void rb_election_table(unsigned trials)
{
    static const unsigned timings[][2] = { { 1000, 100 },
                                           { 300, 30 },
                                           { 150, 15 } };
    printf(
        "\nElection time after SIGKILL of the leader (one process per "
        "node, pre-vote on, %u trials per row)\n\n",
        trials);
    printf(
        "| election/heartbeat ms | trials ok | elected p50 ms "
        "| ready min ms | ready median ms | ready max ms "
        "| elected max ms |\n");
    printf("|---|---|---|---|---|---|---|\n");
    fflush(stdout);
    for (size_t i = 0; i < sizeof(timings) / sizeof(timings[0]); i++) {
        rb_election_row(timings[i][0], timings[i][1], trials);
    }
}

/* ---- main --------------------------------------------------------------- */

static void rb_pki_make(void)
{
    char cmd[512];
    rb_mkdtemp(rb_pki, sizeof(rb_pki));
    snprintf(cmd, sizeof(cmd),
             "set -e; P='%s'; D='%s'; exec 2>/dev/null; $P init $D;"
             "for i in 1 2 3; do $P issue-node $D $i 127.0.0.1; done",
             RFT_PKI_SH, rb_pki);
    if (system(cmd) != 0) {
        rb_rmtree(rb_pki);
        rb_die("deploy/pki.sh failed");
    }
}

static void rb_usage(void)
{
    fprintf(stderr,
            "usage: raft_bench [--tls] [--quick] [--trials N] [--seconds S]\n");
    exit(2);
}

static void rb_parse(int argc, char **argv)
{
    bool trials_set = false, seconds_set = false;
    for (int i = 1; i < argc; i++) {
        uint64_t v;
        if (strcmp(argv[i], "--tls") == 0) {
            rb_opt.tls = true;
        } else if (strcmp(argv[i], "--quick") == 0) {
            rb_opt.quick = true;
        } else if (strcmp(argv[i], "--trials") == 0 && i + 1 < argc &&
                   ovha_parse_u64(argv[i + 1], 64, &v) == 0 && v > 0) {
            rb_opt.trials = (unsigned)v;
            trials_set = true;
            i++;
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc &&
                   ovha_parse_u64(argv[i + 1], 60, &v) == 0 && v > 0) {
            rb_opt.seconds = (unsigned)v;
            seconds_set = true;
            i++;
        } else {
            rb_usage();
        }
    }
    if (rb_opt.quick) {
        rb_opt.trials = trials_set ? rb_opt.trials : 2;
        rb_opt.seconds = seconds_set ? rb_opt.seconds : 1;
    }
}

int main(int argc, char **argv)
{
    static const unsigned ws[] = { 1, 64, 256 };
    static const unsigned ws_big[] = { 256 };
    rb_parse(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    ovha_log_set_level(OVHA_LOG_ERR);
    if (rb_opt.tls) {
        rb_pki_make();
    }
    printf(
        "raft_bench: 3 nodes on 127.0.0.1, %s, commands SessionOpen/"
        "SessionClose pairs (pool %s, gateway %s)\n",
        rb_opt.tls ? "mTLS" : "plain TCP", RB_POOL, RB_GW);
    rb_throughput_table("Commit throughput", 1000, 100, 8192, ws, 3,
                        rb_opt.seconds);
    rb_throughput_table("Commit throughput, snapshots rarer", 1000, 100,
                        1000000, ws_big, 1, rb_opt.seconds);
    rb_load_table(rb_opt.seconds);
    rb_rate_table(1000, rb_opt.quick ? 1000 : 5000);
    rb_prate_table(1000, rb_opt.quick ? 1000 : 5000);
    rb_election_table(rb_opt.trials);
    if (rb_opt.tls) {
        rb_rmtree(rb_pki);
    }
    return 0;
}
