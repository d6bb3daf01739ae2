/* Tests for the mTLS raft transport (raft/tls.c).
 *
 * Everything runs on one uv loop per test with real TCP on 127.0.0.1. The
 * certificates come from deploy/pki.sh, run once per process into a mkdtemp
 * directory: a cluster CA with nodes 1, 2, 3, and a second, unrelated CA
 * with a node 2. Nothing sleeps: loops run until a condition holds, with a
 * timer as the guard that fails the test instead of hanging it.
 */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "base/base.h"
#include "raft/tls.h"

#ifndef RFT_PKI_SH
/* Source files are compiled with absolute paths (CMake), so the script
 * sits three directories up from this file. */
#define RFT_PKI_SH_FROM_FILE 1
#endif

#define TT_GUARD_MS 20000

static char tt_dir[64];

/* ---- helpers --------------------------------------------------------------
 */

static int tt_rm_cb(const char *path,
                    const struct stat *st,
                    int flag,
                    struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void tt_pki_path(char *out, size_t len)
{
#ifdef RFT_PKI_SH_FROM_FILE
    char src[2048];
    char *slash;

    snprintf(src, sizeof(src), "%s", __FILE__);
    for (int i = 0; i < 3; i++) {
        slash = strrchr(src, '/');
        if (slash == NULL) {
            snprintf(src, sizeof(src), ".");
            break;
        }
        *slash = '\0';
    }
    snprintf(out, len, "%s/deploy/pki.sh", src);
#else
    snprintf(out, len, "%s", RFT_PKI_SH);
#endif
}

static int tt_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int tt_sh(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    return system(cmd);
}

static int tt_group_setup(void **state)
{
    char pki[4096];

    (void)state;
    signal(SIGPIPE, SIG_IGN);
    ovha_log_set_level(OVHA_LOG_WARN);
    snprintf(tt_dir, sizeof(tt_dir), "/tmp/rft-tls-XXXXXX");
    if (mkdtemp(tt_dir) == NULL) {
        return -1;
    }
    tt_pki_path(pki, sizeof(pki));
    if (access(pki, X_OK) != 0) {
        fprintf(stderr, "test_tls: %s not found\n", pki);
        return -1;
    }
    if (tt_sh("set -e; P='%s'; D='%s'; exec 2>/dev/null;"
              "$P init $D/ca; $P init $D/evil;"
              "for i in 1 2 3; do $P issue-node $D/ca $i 127.0.0.1; done;"
              "$P issue-node $D/evil 2 127.0.0.1",
              pki, tt_dir) != 0) {
        fprintf(stderr, "test_tls: pki.sh failed\n");
        return -1;
    }
    return 0;
}

static int tt_group_teardown(void **state)
{
    (void)state;
    if (tt_dir[0] != '\0') {
        nftw(tt_dir, tt_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    }
    return 0;
}

/* A free TCP port on 127.0.0.1 (closed again; the race is harmless here). */
static int tt_free_port(void)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port;

    assert_true(fd >= 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

struct tt_guard {
    uv_timer_t timer;
    bool fired;
};

static void tt_guard_cb(uv_timer_t *t)
{
    struct tt_guard *g = t->data;
    g->fired = true;
}

/* Runs the loop until pred(arg) holds or ms pass. Returns pred's value. */
static bool tt_run_until(uv_loop_t *loop,
                         bool (*pred)(void *),
                         void *arg,
                         unsigned ms)
{
    struct tt_guard g = { .fired = false };
    bool ok;

    uv_timer_init(loop, &g.timer);
    g.timer.data = &g;
    uv_timer_start(&g.timer, tt_guard_cb, ms, 0);
    while (!(ok = pred(arg)) && !g.fired) {
        uv_run(loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&g.timer, NULL);
    uv_run(loop, UV_RUN_NOWAIT); /* completes the close */
    return ok;
}

static bool tt_false(void *arg)
{
    (void)arg;
    return false;
}

/* Drains the loop (after everything was closed) and closes it. */
static void tt_loop_done(uv_loop_t *loop)
{
    for (int i = 0; i < 1000 && uv_loop_alive(loop); i++) {
        uv_run(loop, UV_RUN_NOWAIT);
    }
    assert_int_equal(uv_loop_close(loop), 0);
}

static void tt_cfg(struct rft_tls_config *cfg,
                   char paths[3][256],
                   const char *ca,
                   unsigned cert_id)
{
    snprintf(paths[0], 256, "%s/%s/ca.crt", tt_dir, ca);
    snprintf(paths[1], 256, "%s/%s/node-%u.crt", tt_dir, ca, cert_id);
    snprintf(paths[2], 256, "%s/%s/node-%u.key", tt_dir, ca, cert_id);
    memset(cfg, 0, sizeof(*cfg));
    cfg->ca_file = paths[0];
    cfg->cert_file = paths[1];
    cfg->key_file = paths[2];
}

static void tt_handle_free_cb(uv_handle_t *h)
{
    raft_free(h);
}

/* ---- raft nodes ------------------------------------------------------------
 */

struct tt_node {
    unsigned id;
    char addr[32];
    char dir[128];
    char paths[3][256];
    struct raft_uv_transport tr;
    struct raft_io io;
    struct raft_fsm fsm;
    struct raft raft;
    unsigned applied; /* command entries applied by the trivial FSM */
    bool closed;
};

static int tt_fsm_apply(struct raft_fsm *fsm,
                        const struct raft_buffer *buf,
                        void **result)
{
    struct tt_node *n = fsm->data;

    (void)buf;
    n->applied++;
    *result = NULL;
    return 0;
}

static int tt_fsm_snapshot(struct raft_fsm *fsm,
                           struct raft_buffer *bufs[],
                           unsigned *n_bufs)
{
    (void)fsm;
    (void)bufs;
    (void)n_bufs;
    return RAFT_BUSY; /* never needed: far fewer entries than the threshold */
}

static int tt_fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    (void)fsm;
    raft_free(buf->base);
    return 0;
}

static void tt_node_start(uv_loop_t *loop,
                          struct tt_node *nodes,
                          unsigned count,
                          unsigned i,
                          const char *ca)
{
    struct tt_node *n = &nodes[i];
    struct rft_tls_config cfg;
    struct raft_configuration conf;
    char err[256];
    int rv;

    tt_cfg(&cfg, n->paths, ca, n->id);
    assert_int_equal(
        rft_tls_transport_init(&n->tr, loop, &cfg, err, sizeof(err)), 0);
    snprintf(n->dir, sizeof(n->dir), "%s/raft-XXXXXX", tt_dir);
    assert_non_null(mkdtemp(n->dir));
    assert_int_equal(raft_uv_init(&n->io, loop, n->dir, &n->tr), 0);
    n->fsm = (struct raft_fsm){ .version = 1,
                                .data = n,
                                .apply = tt_fsm_apply,
                                .snapshot = tt_fsm_snapshot,
                                .restore = tt_fsm_restore };
    assert_int_equal(raft_init(&n->raft, &n->io, &n->fsm, n->id, n->addr), 0);
    n->raft.data = n;
    raft_set_election_timeout(&n->raft, 300);
    raft_set_heartbeat_timeout(&n->raft, 30);
    raft_uv_set_connect_retry_delay(&n->io, 100);
    raft_configuration_init(&conf);
    for (unsigned j = 0; j < count; j++) {
        assert_int_equal(raft_configuration_add(&conf, nodes[j].id,
                                                nodes[j].addr, RAFT_VOTER),
                         0);
    }
    rv = raft_bootstrap(&n->raft, &conf);
    raft_configuration_close(&conf);
    assert_int_equal(rv, 0);
    assert_int_equal(raft_start(&n->raft), 0);
}

static void tt_node_close_cb(struct raft *r)
{
    struct tt_node *n = r->data;
    n->closed = true;
}

struct tt_cluster {
    struct tt_node *nodes;
    unsigned count;
    unsigned want; /* entries every node in mask must have applied */
    unsigned mask; /* bit i: node i takes part in the predicate */
};

static bool tt_all_closed(void *arg)
{
    struct tt_cluster *c = arg;
    for (unsigned i = 0; i < c->count; i++) {
        if (!c->nodes[i].closed) {
            return false;
        }
    }
    return true;
}

static void tt_cluster_close(uv_loop_t *loop, struct tt_cluster *c)
{
    for (unsigned i = 0; i < c->count; i++) {
        raft_close(&c->nodes[i].raft, tt_node_close_cb);
    }
    assert_true(tt_run_until(loop, tt_all_closed, c, TT_GUARD_MS));
    for (unsigned i = 0; i < c->count; i++) {
        raft_uv_close(&c->nodes[i].io);
        rft_tls_transport_close(&c->nodes[i].tr);
    }
    tt_loop_done(loop);
}

/* Index of the node that is leader among those in mask, or -1. */
static int tt_leader(struct tt_cluster *c)
{
    for (unsigned i = 0; i < c->count; i++) {
        if ((c->mask & (1u << i)) != 0 &&
            raft_state(&c->nodes[i].raft) == RAFT_LEADER) {
            return (int)i;
        }
    }
    return -1;
}

static bool tt_has_leader(void *arg)
{
    return tt_leader(arg) >= 0;
}

static bool tt_all_applied(void *arg)
{
    struct tt_cluster *c = arg;
    for (unsigned i = 0; i < c->count; i++) {
        if ((c->mask & (1u << i)) != 0 && c->nodes[i].applied < c->want) {
            return false;
        }
    }
    return true;
}

struct tt_apply {
    struct raft_apply req;
    int status;
    bool done;
};

static void tt_apply_cb(struct raft_apply *req, int status, void *result)
{
    struct tt_apply *a = req->data;
    (void)result;
    a->status = status;
    a->done = true;
}

/* Proposes n entries on the current leader; returns how many were accepted
 * for replication (raft_apply returned 0). */
static unsigned tt_propose(struct tt_node *leader,
                           struct tt_apply *a,
                           unsigned n)
{
    unsigned ok = 0;
    for (unsigned i = 0; i < n; i++) {
        struct raft_buffer buf = { .base = raft_malloc(8), .len = 8 };
        assert_non_null(buf.base);
        memset(buf.base, (int)i, 8);
        a[i].req.data = &a[i];
        a[i].done = false;
        if (raft_apply(&leader->raft, &a[i].req, &buf, 1, tt_apply_cb) == 0) {
            ok++;
        } else {
            raft_free(buf.base);
            a[i].done = true;
            a[i].status = -1;
        }
    }
    return ok;
}

static void tt_nodes_init(struct tt_node *nodes, unsigned count)
{
    memset(nodes, 0, sizeof(*nodes) * count);
    for (unsigned i = 0; i < count; i++) {
        nodes[i].id = i + 1;
        snprintf(nodes[i].addr, sizeof(nodes[i].addr), "127.0.0.1:%d",
                 tt_free_port());
    }
}

/* (a) Three nodes elect a leader and commit entries over TLS. */
static void test_tls_cluster_commits(void **state)
{
    struct tt_node nodes[3];
    struct tt_cluster c = { .nodes = nodes, .count = 3, .mask = 7 };
    struct tt_apply a[10];
    struct rft_tls_stats st;
    uv_loop_t loop;
    int leader;

    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    tt_nodes_init(nodes, 3);
    for (unsigned i = 0; i < 3; i++) {
        tt_node_start(&loop, nodes, 3, i, "ca");
    }
    assert_true(tt_run_until(&loop, tt_has_leader, &c, TT_GUARD_MS));
    leader = tt_leader(&c);
    assert_int_equal(tt_propose(&nodes[leader], a, 10), 10);
    c.want = 10;
    assert_true(tt_run_until(&loop, tt_all_applied, &c, TT_GUARD_MS));
    for (unsigned i = 0; i < 10; i++) {
        assert_true(a[i].done);
        assert_int_equal(a[i].status, 0);
    }
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(nodes[i].applied, 10);
        rft_tls_transport_stats(&nodes[i].tr, &st);
        /* Each node dials the other two and is dialled by them. */
        assert_true(st.handshakes_ok >= 2);
        assert_int_equal(st.rejected_tls, 0);
        assert_int_equal(st.rejected_id, 0);
        assert_true(st.bytes_to_peer > 0);
        assert_true(st.bytes_from_peer > 0);
    }
    tt_cluster_close(&loop, &c);
}

/* (b) A node whose certificate comes from another CA never gets in. */
static void test_tls_foreign_ca_rejected(void **state)
{
    struct tt_node nodes[3];
    struct tt_cluster c = { .nodes = nodes, .count = 3, .mask = 5 };
    struct tt_apply a[5];
    struct tt_apply evil_apply;
    struct rft_tls_stats st1, st2, st3;
    struct raft_buffer buf;
    uv_loop_t loop;
    int leader;

    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    tt_nodes_init(nodes, 3);
    tt_node_start(&loop, nodes, 3, 0, "ca");
    tt_node_start(&loop, nodes, 3, 1, "evil");
    tt_node_start(&loop, nodes, 3, 2, "ca");
    assert_true(tt_run_until(&loop, tt_has_leader, &c, TT_GUARD_MS));
    leader = tt_leader(&c);
    assert_int_equal(tt_propose(&nodes[leader], a, 5), 5);
    c.want = 5;
    assert_true(tt_run_until(&loop, tt_all_applied, &c, TT_GUARD_MS));
    /* Let node 2 retry a few more times (retry delay 100 ms). */
    tt_run_until(&loop, tt_false, NULL, 600);

    rft_tls_transport_stats(&nodes[0].tr, &st1);
    rft_tls_transport_stats(&nodes[1].tr, &st2);
    rft_tls_transport_stats(&nodes[2].tr, &st3);
    assert_int_equal(st2.handshakes_ok, 0);
    assert_true(st2.rejected_tls >= 2);
    assert_true(st1.rejected_tls >= 1);
    assert_true(st3.rejected_tls >= 1);
    assert_true(st1.handshakes_ok >= 2); /* 1 <-> 3 works */
    assert_int_equal(st2.bytes_from_peer, 0);
    assert_int_equal(nodes[1].applied, 0);
    assert_int_not_equal(raft_state(&nodes[1].raft), RAFT_LEADER);
    /* Node 2's own proposals go nowhere. */
    buf.base = raft_malloc(8);
    buf.len = 8;
    evil_apply.req.data = &evil_apply;
    assert_int_equal(
        raft_apply(&nodes[1].raft, &evil_apply.req, &buf, 1, tt_apply_cb),
        RAFT_NOTLEADER);
    raft_free(buf.base);
    tt_cluster_close(&loop, &c);
}

/* ---- bare transports (no raft) ----------------------------------------------
 */

struct tt_peer {
    char paths[3][256];
    struct raft_uv_transport tr;
    char addr[32];
    bool close_done;
    unsigned close_calls;
    unsigned accepts;
    raft_id accepted_id;
    char accepted_addr[64];
    uv_stream_t *accepted; /* last accepted stream, kept open */
};

struct tt_conn {
    struct raft_uv_connect req;
    unsigned calls;
    int status;
    uv_stream_t *stream;
};

static void tt_accept_cb(struct raft_uv_transport *t,
                         raft_id id,
                         const char *address,
                         uv_stream_t *stream)
{
    struct tt_peer *p = t->data;

    p->accepts++;
    p->accepted_id = id;
    snprintf(p->accepted_addr, sizeof(p->accepted_addr), "%s", address);
    if (p->accepted != NULL) {
        uv_close((uv_handle_t *)p->accepted, tt_handle_free_cb);
    }
    p->accepted = stream;
}

static void tt_connect_cb(struct raft_uv_connect *req,
                          uv_stream_t *stream,
                          int status)
{
    struct tt_conn *c = req->data;

    c->calls++;
    c->status = status;
    c->stream = stream;
    if (status == 0) {
        assert_non_null(stream);
    } else {
        assert_null(stream);
    }
}

static void tt_peer_init(uv_loop_t *loop,
                         struct tt_peer *p,
                         const char *ca,
                         unsigned cert_id,
                         unsigned raft_id_,
                         bool lie,
                         bool listen)
{
    struct rft_tls_config cfg;
    char err[256];

    memset(p, 0, sizeof(*p));
    tt_cfg(&cfg, p->paths, ca, cert_id);
    cfg.handshake_timeout_ms = 300;
    assert_int_equal(
        rft_tls_transport_init(&p->tr, loop, &cfg, err, sizeof(err)), 0);
    p->tr.data = p;
    if (lie) {
        rft_tls_transport_test_skip_self_check(&p->tr);
    }
    snprintf(p->addr, sizeof(p->addr), "127.0.0.1:%d", tt_free_port());
    assert_int_equal(p->tr.init(&p->tr, raft_id_, p->addr), 0);
    if (listen) {
        assert_int_equal(p->tr.listen(&p->tr, tt_accept_cb), 0);
    }
}

static void tt_peer_close_cb(struct raft_uv_transport *t)
{
    struct tt_peer *p = t->data;
    p->close_calls++;
    p->close_done = true;
}

static bool tt_peer_closed(void *arg)
{
    return ((struct tt_peer *)arg)->close_done;
}

static void tt_peer_close(uv_loop_t *loop, struct tt_peer *p)
{
    if (p->accepted != NULL) {
        uv_close((uv_handle_t *)p->accepted, tt_handle_free_cb);
        p->accepted = NULL;
    }
    p->tr.close(&p->tr, tt_peer_close_cb);
    assert_true(tt_run_until(loop, tt_peer_closed, p, TT_GUARD_MS));
    assert_int_equal(p->close_calls, 1);
    rft_tls_transport_close(&p->tr);
}

static bool tt_conn_done(void *arg)
{
    return ((struct tt_conn *)arg)->calls > 0;
}

static void tt_connect(struct tt_peer *from,
                       struct tt_conn *c,
                       raft_id id,
                       const char *addr)
{
    memset(c, 0, sizeof(*c));
    c->req.data = c;
    assert_int_equal(
        from->tr.connect(&from->tr, &c->req, id, addr, tt_connect_cb), 0);
}

static void tt_conn_release(struct tt_conn *c)
{
    if (c->stream != NULL) {
        uv_close((uv_handle_t *)c->stream, tt_handle_free_cb);
        c->stream = NULL;
    }
}

/* (c) A valid certificate for id 3 that claims id 2 is refused; the same
 * listener accepts an honest node 2 (positive control). */
static void test_tls_claimed_id_mismatch(void **state)
{
    struct tt_peer srv, liar, honest;
    struct tt_conn c1, c2;
    struct rft_tls_stats st;
    struct rft_tls_config cfg;
    struct raft_uv_transport strict;
    char paths[3][256];
    char err[256];
    uv_loop_t loop;

    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    /* Without the test hook, a node cannot even start with a wrong id. */
    tt_cfg(&cfg, paths, "ca", 3);
    assert_int_equal(
        rft_tls_transport_init(&strict, &loop, &cfg, err, sizeof(err)), 0);
    assert_int_equal(strict.init(&strict, 2, "127.0.0.1:1"), RAFT_INVALID);
    rft_tls_transport_close(&strict);

    tt_peer_init(&loop, &srv, "ca", 1, 1, false, true);
    tt_peer_init(&loop, &liar, "ca", 3, 2, true, false);
    tt_peer_init(&loop, &honest, "ca", 2, 2, false, false);

    tt_connect(&liar, &c1, 1, srv.addr);
    assert_true(tt_run_until(&loop, tt_conn_done, &c1, TT_GUARD_MS));
    assert_int_equal(c1.calls, 1);
    assert_int_equal(c1.status, RAFT_NOCONNECTION);
    rft_tls_transport_stats(&srv.tr, &st);
    assert_int_equal(st.rejected_id, 1);
    assert_int_equal(st.handshakes_ok, 0);
    assert_int_equal(srv.accepts, 0);
    rft_tls_transport_stats(&liar.tr, &st);
    assert_int_equal(st.handshakes_ok, 0);
    assert_int_equal(st.connect_failed, 1);

    tt_connect(&honest, &c2, 1, srv.addr);
    assert_true(tt_run_until(&loop, tt_conn_done, &c2, TT_GUARD_MS));
    assert_int_equal(c2.status, 0);
    assert_int_equal(srv.accepts, 1);
    assert_int_equal(srv.accepted_id, 2);
    assert_string_equal(srv.accepted_addr, honest.addr);
    tt_conn_release(&c2);

    tt_peer_close(&loop, &liar);
    tt_peer_close(&loop, &honest);
    tt_peer_close(&loop, &srv);
    tt_loop_done(&loop);
}

/* (d) Dialling id 3 at an address whose certificate says id 1 is dropped. */
static void test_tls_server_id_mismatch(void **state)
{
    struct tt_peer srv, cli;
    struct tt_conn c1;
    struct rft_tls_stats st;
    uv_loop_t loop;

    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    tt_peer_init(&loop, &srv, "ca", 1, 1, false, true);
    tt_peer_init(&loop, &cli, "ca", 2, 2, false, false);

    tt_connect(&cli, &c1, 3, srv.addr);
    assert_true(tt_run_until(&loop, tt_conn_done, &c1, TT_GUARD_MS));
    assert_int_equal(c1.calls, 1);
    assert_int_equal(c1.status, RAFT_NOCONNECTION);
    rft_tls_transport_stats(&cli.tr, &st);
    assert_int_equal(st.rejected_id, 1);
    assert_int_equal(st.handshakes_ok, 0);
    assert_int_equal(st.connect_failed, 1);
    /* The listener never reaches accept_cb: the client hangs up first. */
    tt_run_until(&loop, tt_false, NULL, 50);
    assert_int_equal(srv.accepts, 0);

    tt_peer_close(&loop, &cli);
    tt_peer_close(&loop, &srv);
    tt_loop_done(&loop);
}

/* A TCP listener that accepts and never says anything. */
struct tt_silent {
    uv_tcp_t listener;
    uv_tcp_t conn;
    bool accepted;
    int port;
};

static void tt_silent_cb(uv_stream_t *s, int status)
{
    struct tt_silent *q = s->data;
    assert_int_equal(status, 0);
    assert_false(q->accepted);
    uv_tcp_init(s->loop, &q->conn);
    assert_int_equal(uv_accept(s, (uv_stream_t *)&q->conn), 0);
    q->accepted = true;
}

static bool tt_silent_accepted(void *arg)
{
    return ((struct tt_silent *)arg)->accepted;
}

struct tt_eof {
    uv_stream_t *stream;
    bool eof;
    char buf[256];
};

static void tt_eof_alloc(uv_handle_t *h, size_t n, uv_buf_t *buf)
{
    struct tt_eof *e = h->data;
    (void)n;
    *buf = uv_buf_init(e->buf, sizeof(e->buf));
}

static void tt_eof_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct tt_eof *e = s->data;
    (void)buf;
    if (n < 0) {
        e->eof = true;
        uv_read_stop(s);
    }
}

static bool tt_eof_seen(void *arg)
{
    return ((struct tt_eof *)arg)->eof;
}

/* (e) close() with a connect stuck in the TLS handshake, one still in TCP
 * connect, and one established bridge: both pending requests get
 * RAFT_CANCELED exactly once, the bridge is torn down, close cb once. */
static void test_tls_close_pending(void **state)
{
    struct tt_peer srv, cli;
    struct tt_silent q;
    struct tt_conn c_est, c_hs, c_tcp;
    struct tt_eof eof;
    struct sockaddr_in sa;
    struct rft_tls_stats st;
    char qaddr[32];
    uv_loop_t loop;

    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    tt_peer_init(&loop, &srv, "ca", 1, 1, false, true);
    tt_peer_init(&loop, &cli, "ca", 2, 2, false, false);

    memset(&q, 0, sizeof(q));
    q.port = tt_free_port();
    uv_tcp_init(&loop, &q.listener);
    q.listener.data = &q;
    uv_ip4_addr("127.0.0.1", q.port, &sa);
    assert_int_equal(uv_tcp_bind(&q.listener, (struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&q.listener, 4, tt_silent_cb), 0);
    snprintf(qaddr, sizeof(qaddr), "127.0.0.1:%d", q.port);

    tt_connect(&cli, &c_est, 1, srv.addr);
    assert_true(tt_run_until(&loop, tt_conn_done, &c_est, TT_GUARD_MS));
    assert_int_equal(c_est.status, 0);
    memset(&eof, 0, sizeof(eof));
    c_est.stream->data = &eof;
    assert_int_equal(uv_read_start(c_est.stream, tt_eof_alloc, tt_eof_read), 0);

    tt_connect(&cli, &c_hs, 1, qaddr);
    assert_true(tt_run_until(&loop, tt_silent_accepted, &q, TT_GUARD_MS));
    tt_connect(&cli, &c_tcp, 1, srv.addr); /* loop not run: TCP pending */
    rft_tls_transport_stats(&cli.tr, &st);
    assert_int_equal(st.active, 3);

    cli.tr.close(&cli.tr, tt_peer_close_cb);
    assert_int_equal(c_hs.calls, 0); /* callbacks are asynchronous */
    assert_true(tt_run_until(&loop, tt_peer_closed, &cli, TT_GUARD_MS));
    assert_int_equal(cli.close_calls, 1);
    assert_int_equal(c_hs.calls, 1);
    assert_int_equal(c_hs.status, RAFT_CANCELED);
    assert_int_equal(c_tcp.calls, 1);
    assert_int_equal(c_tcp.status, RAFT_CANCELED);
    assert_int_equal(c_est.calls, 1);
    rft_tls_transport_stats(&cli.tr, &st);
    assert_int_equal(st.active, 0);
    assert_int_equal(st.connect_failed, 0); /* cancels are not failures */
    /* raft's end of the established bridge sees EOF. */
    assert_true(tt_run_until(&loop, tt_eof_seen, &eof, TT_GUARD_MS));
    tt_conn_release(&c_est);
    rft_tls_transport_close(&cli.tr);

    /* Nothing may fire after close: run a little more. */
    tt_run_until(&loop, tt_false, NULL, 50);
    assert_int_equal(c_hs.calls, 1);
    assert_int_equal(c_tcp.calls, 1);

    uv_close((uv_handle_t *)&q.listener, NULL);
    uv_close((uv_handle_t *)&q.conn, NULL);
    tt_peer_close(&loop, &srv);
    tt_loop_done(&loop);
}

/* A raw TCP client that connects and never starts TLS is dropped by the
 * listener when the handshake timer (300 ms here) fires. */
static void tt_raw_connect_cb(uv_connect_t *req, int status)
{
    struct tt_eof *e = req->data;
    assert_int_equal(status, 0);
    assert_int_equal(uv_read_start(e->stream, tt_eof_alloc, tt_eof_read), 0);
}

static void test_tls_handshake_timeout(void **state)
{
    struct tt_peer srv;
    struct tt_eof eof;
    uv_tcp_t raw;
    uv_connect_t creq;
    struct sockaddr_in sa;
    struct rft_tls_stats st;
    uv_loop_t loop;
    int port;

    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    tt_peer_init(&loop, &srv, "ca", 1, 1, false, true);
    memset(&eof, 0, sizeof(eof));
    uv_tcp_init(&loop, &raw);
    raw.data = &eof;
    eof.stream = (uv_stream_t *)&raw;
    creq.data = &eof;
    port = atoi(strchr(srv.addr, ':') + 1);
    uv_ip4_addr("127.0.0.1", port, &sa);
    assert_int_equal(
        uv_tcp_connect(&creq, &raw, (struct sockaddr *)&sa, tt_raw_connect_cb),
        0);
    assert_true(tt_run_until(&loop, tt_eof_seen, &eof, TT_GUARD_MS));
    rft_tls_transport_stats(&srv.tr, &st);
    assert_int_equal(st.rejected_tls, 1);
    assert_int_equal(st.active, 0);
    assert_int_equal(srv.accepts, 0);
    uv_close((uv_handle_t *)&raw, NULL);
    tt_peer_close(&loop, &srv);
    tt_loop_done(&loop);
}

/* The bridge carries a large payload intact in both directions; 8 MiB is
 * twice the backpressure bound, so the pause/resume path runs. */
#define TT_BIG (8u << 20)

struct tt_sink {
    uv_stream_t *stream;
    size_t got;
    bool bad;
    char buf[65536];
};

static void tt_sink_alloc(uv_handle_t *h, size_t n, uv_buf_t *buf)
{
    struct tt_sink *s = h->data;
    (void)n;
    *buf = uv_buf_init(s->buf, sizeof(s->buf));
}

static void tt_sink_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct tt_sink *s = st->data;
    if (n < 0) {
        s->bad = true;
        uv_read_stop(st);
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        if ((uint8_t)buf->base[i] != (uint8_t)((s->got + (size_t)i) * 7)) {
            s->bad = true;
        }
    }
    s->got += (size_t)n;
}

static bool tt_sinks_full(void *arg)
{
    struct tt_sink *s = arg;
    return (s[0].got >= TT_BIG && s[1].got >= TT_BIG) || s[0].bad || s[1].bad;
}

static void tt_write_done(uv_write_t *req, int status)
{
    assert_int_equal(status, 0);
    *(bool *)req->data = true;
}

static bool tt_both_paused(void *arg)
{
    struct raft_uv_transport **t = arg;
    struct rft_tls_stats a, b;

    rft_tls_transport_stats(t[0], &a);
    rft_tls_transport_stats(t[1], &b);
    return a.paused > 0 && b.paused > 0;
}

static void test_tls_bridge_payload(void **state)
{
    struct tt_peer srv, cli;
    struct tt_conn c1;
    struct tt_sink *sinks;
    struct rft_tls_stats st;
    struct raft_uv_transport *pp[2];
    uv_write_t w[2];
    bool wdone[2] = { false, false };
    uv_buf_t b;
    char *payload;
    uv_loop_t loop;

    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    tt_peer_init(&loop, &srv, "ca", 1, 1, false, true);
    tt_peer_init(&loop, &cli, "ca", 2, 2, false, false);
    tt_connect(&cli, &c1, 1, srv.addr);
    assert_true(tt_run_until(&loop, tt_conn_done, &c1, TT_GUARD_MS));
    assert_int_equal(c1.status, 0);
    assert_int_equal(srv.accepts, 1);

    payload = malloc(TT_BIG);
    sinks = calloc(2, sizeof(*sinks));
    assert_non_null(payload);
    assert_non_null(sinks);
    for (size_t i = 0; i < TT_BIG; i++) {
        payload[i] = (char)(uint8_t)(i * 7);
    }
    sinks[0].stream = srv.accepted; /* client -> server */
    sinks[1].stream = c1.stream;    /* server -> client */
    b = uv_buf_init(payload, TT_BIG);
    w[0].data = &wdone[0];
    w[1].data = &wdone[1];
    assert_int_equal(uv_write(&w[0], c1.stream, &b, 1, tt_write_done), 0);
    assert_int_equal(uv_write(&w[1], srv.accepted, &b, 1, tt_write_done), 0);
    /* Nobody reads yet: the receiving bridges fill up and must pause. */
    pp[0] = &srv.tr;
    pp[1] = &cli.tr;
    assert_true(tt_run_until(&loop, tt_both_paused, pp, TT_GUARD_MS));
    for (int i = 0; i < 2; i++) {
        sinks[i].stream->data = &sinks[i];
        assert_int_equal(
            uv_read_start(sinks[i].stream, tt_sink_alloc, tt_sink_read), 0);
    }
    assert_true(tt_run_until(&loop, tt_sinks_full, sinks, TT_GUARD_MS));
    assert_false(sinks[0].bad);
    assert_false(sinks[1].bad);
    assert_int_equal(sinks[0].got, TT_BIG);
    assert_int_equal(sinks[1].got, TT_BIG);
    rft_tls_transport_stats(&cli.tr, &st);
    assert_int_equal(st.bytes_to_peer, TT_BIG);
    assert_int_equal(st.bytes_from_peer, TT_BIG);

    tt_conn_release(&c1);
    tt_peer_close(&loop, &cli);
    tt_peer_close(&loop, &srv);
    tt_loop_done(&loop);
    assert_true(wdone[0] && wdone[1]);
    free(payload);
    free(sinks);
}

/* Allocation failures (ovha_alloc_fail_after) anywhere on the connect and
 * accept paths: the request ends exactly once, nothing leaks (ASan), and
 * once allocations work again the same listener accepts a fresh connect. */
static void test_tls_oom(void **state)
{
    (void)state;
    for (long n = 0; n < 12; n++) {
        struct tt_peer srv, cli;
        struct tt_conn c1, c2;
        uv_loop_t loop;
        int rv;

        assert_int_equal(uv_loop_init(&loop), 0);
        tt_peer_init(&loop, &srv, "ca", 1, 1, false, true);
        tt_peer_init(&loop, &cli, "ca", 2, 2, false, false);
        memset(&c1, 0, sizeof(c1));
        c1.req.data = &c1;
        ovha_alloc_fail_after(n);
        rv = cli.tr.connect(&cli.tr, &c1.req, 1, srv.addr, tt_connect_cb);
        if (rv == 0) {
            assert_true(tt_run_until(&loop, tt_conn_done, &c1, TT_GUARD_MS));
            assert_int_equal(c1.calls, 1);
            assert_true(c1.status == 0 || c1.status == RAFT_NOCONNECTION);
        } else {
            assert_int_equal(rv, RAFT_NOMEM);
        }
        ovha_alloc_fail_after(-1);
        tt_conn_release(&c1);
        tt_connect(&cli, &c2, 1, srv.addr);
        assert_true(tt_run_until(&loop, tt_conn_done, &c2, TT_GUARD_MS));
        assert_int_equal(c2.status, 0);
        tt_conn_release(&c2);
        tt_peer_close(&loop, &cli);
        tt_peer_close(&loop, &srv);
        tt_loop_done(&loop);
    }
}

/* bind_address: listen there, not on raft's address (198.18.0.1 is not
 * configured here, so binding it would fail). */
static void test_tls_bind_address(void **state)
{
    struct tt_peer srv, cli;
    struct rft_tls_config cfg;
    struct tt_conn c1;
    char bind[32];
    char err[256];
    uv_loop_t loop;

    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    memset(&srv, 0, sizeof(srv));
    tt_cfg(&cfg, srv.paths, "ca", 1);
    cfg.bind_address = "127.0.0.1";
    assert_int_equal(
        rft_tls_transport_init(&srv.tr, &loop, &cfg, err, sizeof(err)),
        OVHA_ECONFIG);
    snprintf(bind, sizeof(bind), "127.0.0.1:%d", tt_free_port());
    cfg.bind_address = bind;
    assert_int_equal(
        rft_tls_transport_init(&srv.tr, &loop, &cfg, err, sizeof(err)), 0);
    srv.tr.data = &srv;
    assert_int_equal(srv.tr.init(&srv.tr, 1, "198.18.0.1:7000"), 0);
    assert_int_equal(srv.tr.listen(&srv.tr, tt_accept_cb), 0);
    tt_peer_init(&loop, &cli, "ca", 2, 2, false, false);
    tt_connect(&cli, &c1, 1, bind);
    assert_true(tt_run_until(&loop, tt_conn_done, &c1, TT_GUARD_MS));
    assert_int_equal(c1.status, 0);
    assert_int_equal(srv.accepts, 1);
    tt_conn_release(&c1);
    tt_peer_close(&loop, &cli);
    tt_peer_close(&loop, &srv);
    tt_loop_done(&loop);
}

static void *tt_read_x509(FILE *f)
{
    return PEM_read_X509(f, NULL, NULL, NULL);
}

static void tt_free_x509(void *x)
{
    X509_free(x);
}

/* The id in a certificate is parsed strictly. */
static void test_tls_cert_id_parse(void **state)
{
    (void)state;
    assert_int_equal(tt_sh("set -e; D='%s/x'; mkdir -p $D; cd $D; "
                           "openssl genpkey -algorithm EC -pkeyopt "
                           "ec_paramgen_curve:P-256 -out k 2>/dev/null;"
                           "for s in 'URI:ovha:node:7' 'URI:ovha:node:07' "
                           "'URI:ovha:node:7x' 'URI:ovha:node:0' "
                           "'URI:ovha:node:18446744073709551616' "
                           "'URI:ovha:node:7,URI:ovha:node:7' 'DNS:node-7' "
                           "'URI:ovha:node:18446744073709551615'; do "
                           "i=$((${i:-0}+1)); openssl req -new -x509 -key k "
                           "-subj /CN=node-7 -addext \"subjectAltName=$s\" "
                           "-days 1 -out c$i.pem 2>/dev/null; done",
                           tt_dir),
                     0);
    const struct {
        int rv;
        uint64_t id;
    } want[] = { { 0, 7 },       { -EINVAL, 0 },   { -EINVAL, 0 },
                 { -EINVAL, 0 }, { -EINVAL, 0 },   { -EINVAL, 0 },
                 { -ENOENT, 0 }, { 0, UINT64_MAX } };
    for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        char path[256];
        struct rft_tls_config cfg;
        char err[256];
        struct raft_uv_transport t;
        uint64_t id = 0;
        FILE *f;
        void *x;
        int rv;

        snprintf(path, sizeof(path), "%s/x/c%u.pem", tt_dir, i + 1);
        f = fopen(path, "r");
        assert_non_null(f);
        x = tt_read_x509(f);
        fclose(f);
        assert_non_null(x);
        rv = rft_tls_cert_id(x, &id);
        tt_free_x509(x);
        assert_int_equal(rv, want[i].rv);
        assert_true(id == want[i].id);
        /* A transport refuses a certificate without a valid id. */
        memset(&cfg, 0, sizeof(cfg));
        snprintf(path, sizeof(path), "%s/x/c%u.pem", tt_dir, i + 1);
        cfg.ca_file = path;
        cfg.cert_file = path;
        char key[256];
        snprintf(key, sizeof(key), "%s/x/k", tt_dir);
        cfg.key_file = key;
        rv = rft_tls_transport_init(&t, NULL, &cfg, err, sizeof(err));
        if (want[i].rv == 0) {
            assert_int_equal(rv, 0);
            rft_tls_transport_close(&t);
        } else {
            assert_int_equal(rv, OVHA_ECONFIG);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls_cert_id_parse),
        cmocka_unit_test(test_tls_cluster_commits),
        cmocka_unit_test(test_tls_foreign_ca_rejected),
        cmocka_unit_test(test_tls_claimed_id_mismatch),
        cmocka_unit_test(test_tls_server_id_mismatch),
        cmocka_unit_test(test_tls_close_pending),
        cmocka_unit_test(test_tls_handshake_timeout),
        cmocka_unit_test(test_tls_bridge_payload),
        cmocka_unit_test(test_tls_oom),
        cmocka_unit_test(test_tls_bind_address),
    };
    return cmocka_run_group_tests_name("raft_tls", tests, tt_group_setup,
                                       tt_group_teardown);
}
