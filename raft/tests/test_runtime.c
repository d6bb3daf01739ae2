/* The replication runtime with real libraft I/O: three nodes in one loop
 * over loopback TCP (the mTLS transport has its own tests). Election and
 * the post-election barrier, proposals on the leader and forwarded from a
 * follower, idempotent retries, leader loss, membership and transfer. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/base.h"
#include "fsm/fsm.h"
#include "proto/proto.h"
#include "raft/raft.h"

#define RT_NODES 3

struct rt_node {
    struct fsm *fsm;
    struct rft *r;
    char dir[64];
    bool closed;
};

struct rt_env {
    uv_loop_t loop;
    uv_timer_t tick;
    struct rt_node n[RT_NODES + 1]; /* 1-based ids */
    int base_port;
    int done, ok, refused, failed;
    int last_status;
    struct proto_result last;
};

static void rt_tick_cb(uv_timer_t *t)
{
    (void)t;
}

static bool rt_run_until(struct rt_env *e,
                         bool (*pred)(struct rt_env *, void *),
                         void *arg,
                         uint64_t ms)
{
    uint64_t end = ovha_now_mono_ms() + ms;
    while (!pred(e, arg)) {
        if (ovha_now_mono_ms() > end) {
            return false;
        }
        uv_run(&e->loop, UV_RUN_ONCE);
    }
    return true;
}

static void rt_addr(struct rt_env *e, int id, char *out, size_t len)
{
    snprintf(out, len, "127.0.0.1:%d", e->base_port + 2 * id);
}

static void rt_node_start(struct rt_env *e, int id, bool bootstrap)
{
    struct rt_node *n = &e->n[id];
    struct rft_config cfg;
    char err[256];
    memset(&cfg, 0, sizeof(cfg));
    cfg.id = (uint64_t)id;
    rt_addr(e, id, cfg.address, sizeof(cfg.address));
    if (n->dir[0] == '\0') {
        strcpy(n->dir, "/tmp/ovha-rt-XXXXXX");
        assert_non_null(mkdtemp(n->dir));
    }
    ovha_strlcpy(cfg.data_dir, n->dir, sizeof(cfg.data_dir));
    cfg.election_timeout_ms = 200;
    cfg.heartbeat_timeout_ms = 20;
    cfg.propose_timeout_ms = 3000;
    cfg.bootstrap = bootstrap;
    if (n->fsm == NULL) {
        assert_int_equal(fsm_new(NULL, &n->fsm), 0);
    }
    int rv = rft_new(&e->loop, &cfg, n->fsm, &n->r, err, sizeof(err));
    if (rv != 0) {
        fail_msg("rft_new: %s", err);
    }
    rv = rft_start(n->r);
    if (rv != 0) {
        fail_msg("rft_start: %s", rft_errmsg(n->r));
    }
    n->closed = false;
}

static void rt_closed_cb(void *data)
{
    ((struct rt_node *)data)->closed = true;
}

static bool rt_is_closed(struct rt_env *e, void *arg)
{
    (void)e;
    return ((struct rt_node *)arg)->closed;
}

static void rt_node_stop(struct rt_env *e, int id)
{
    struct rt_node *n = &e->n[id];
    if (n->r == NULL) {
        return;
    }
    rft_close(n->r, rt_closed_cb, n);
    assert_true(rt_run_until(e, rt_is_closed, n, 5000));
    n->r = NULL;
    /* A restarted node rebuilds its state from the log and snapshots. */
    fsm_free(n->fsm);
    n->fsm = NULL;
}

static int rt_leader(struct rt_env *e)
{
    for (int i = 1; i <= RT_NODES; i++) {
        if (e->n[i].r == NULL) {
            continue;
        }
        struct rft_status st;
        rft_get_status(e->n[i].r, &st);
        if (st.role == RFT_STATE_LEADER && st.ready) {
            return i;
        }
    }
    return 0;
}

static bool rt_has_leader(struct rt_env *e, void *arg)
{
    (void)arg;
    return rt_leader(e) != 0;
}

static void rt_change_cb(void *data, int status)
{
    *(int *)data = status;
}

static bool rt_int_set(struct rt_env *e, void *arg)
{
    (void)e;
    return *(int *)arg != 1;
}

static void rt_add_voter(struct rt_env *e, int leader, int id)
{
    char addr[64];
    int status = 1;
    rt_addr(e, id, addr, sizeof(addr));
    rt_node_start(e, id, false);
    int rv = rft_add(e->n[leader].r, (uint64_t)id, addr, RFT_ROLE_VOTER,
                     rt_change_cb, &status);
    if (rv != 0) {
        fail_msg("rft_add: %s", rft_errmsg(e->n[leader].r));
    }
    assert_true(rt_run_until(e, rt_int_set, &status, 15000));
    assert_int_equal(status, 0);
}

static int rt_setup(void **state)
{
    struct rt_env *e = calloc(1, sizeof(*e));
    /* Below the ephemeral range (32768+), where outgoing connections of
     * other tests could hold a port. */
    e->base_port = 21000 + (int)(getpid() % 1400) * 8;
    uv_loop_init(&e->loop);
    uv_timer_init(&e->loop, &e->tick);
    uv_timer_start(&e->tick, rt_tick_cb, 5, 5);
    rt_node_start(e, 1, true);
    assert_true(rt_run_until(e, rt_has_leader, NULL, 5000));
    rt_add_voter(e, 1, 2);
    rt_add_voter(e, 1, 3);
    *state = e;
    return 0;
}

static int rt_teardown(void **state)
{
    struct rt_env *e = *state;
    for (int i = 1; i <= RT_NODES; i++) {
        rt_node_stop(e, i);
    }
    uv_close((uv_handle_t *)&e->tick, NULL);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    for (int i = 1; i <= RT_NODES; i++) {
        fsm_free(e->n[i].fsm);
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", e->n[i].dir);
        if (e->n[i].dir[0] != '\0' && system(cmd) != 0) {
            return -1;
        }
    }
    free(e);
    return 0;
}

/* An operator audit record: valid on any cluster state. */
static void rt_cmd(uint64_t req_id, uint8_t **buf, size_t *len)
{
    struct proto_cmd c;
    memset(&c, 0, sizeof(c));
    c.version = PROTO_VERSION;
    c.req_id = req_id;
    strcpy(c.gateway, "gw1");
    c.ts_ms = 1795556867000ull + req_id;
    strcpy(c.actor, "test");
    c.kind = PROTO_CMD_AUDIT_APPEND;
    strcpy(c.u.audit_append.action, "test");
    snprintf(c.u.audit_append.subject, sizeof(c.u.audit_append.subject),
             "entry %llu", (unsigned long long)req_id);
    assert_int_equal(proto_cmd_encode(&c, buf, len), 0);
}

static void rt_propose_cb(void *data,
                          int status,
                          const struct proto_result *res)
{
    struct rt_env *e = data;
    e->done++;
    e->last_status = status;
    if (status == 0) {
        e->last = *res;
        if (res->status == PROTO_STATUS_OK) {
            e->ok++;
        } else {
            e->refused++;
        }
    } else {
        e->failed++;
    }
}

static bool rt_done_is(struct rt_env *e, void *arg)
{
    return e->done >= *(int *)arg;
}

static void rt_propose_n(struct rt_env *e, int node, uint64_t first, int n)
{
    int target = e->done + n;
    for (int i = 0; i < n; i++) {
        uint8_t *buf;
        size_t len;
        rt_cmd(first + (uint64_t)i, &buf, &len);
        assert_int_equal(
            rft_propose(e->n[node].r, buf, len, 0, rt_propose_cb, e), 0);
        ovha_free(buf);
    }
    assert_true(rt_run_until(e, rt_done_is, &target, 10000));
}

static bool rt_converged(struct rt_env *e, void *arg)
{
    (void)arg;
    uint64_t applied = 0;
    for (int i = 1; i <= RT_NODES; i++) {
        if (e->n[i].r == NULL) {
            continue;
        }
        struct rft_status st;
        rft_get_status(e->n[i].r, &st);
        if (applied != 0 && st.last_applied != applied) {
            return false;
        }
        applied = st.last_applied;
    }
    return true;
}

static void rt_assert_same_state(struct rt_env *e)
{
    assert_true(rt_run_until(e, rt_converged, NULL, 10000));
    uint8_t ref[FSM_HASH_LEN];
    bool have = false;
    for (int i = 1; i <= RT_NODES; i++) {
        if (e->n[i].r == NULL) {
            continue;
        }
        uint8_t h[FSM_HASH_LEN];
        assert_int_equal(fsm_state_hash(e->n[i].fsm, h), 0);
        if (have) {
            assert_memory_equal(ref, h, FSM_HASH_LEN);
        }
        memcpy(ref, h, FSM_HASH_LEN);
        have = true;
    }
}

static int rt_follower(struct rt_env *e)
{
    int leader = rt_leader(e);
    for (int i = 1; i <= RT_NODES; i++) {
        if (i != leader && e->n[i].r != NULL) {
            return i;
        }
    }
    return 0;
}

static void test_runtime_leader_and_forwarded_proposals(void **state)
{
    struct rt_env *e = *state;
    int leader = rt_leader(e);
    assert_int_not_equal(leader, 0);
    struct rft_status before;
    rft_get_status(e->n[leader].r, &before);
    rt_propose_n(e, leader, 1, 100);
    assert_int_equal(e->ok, 100);
    /* Proposed in one loop iteration, they went out as one raft entry. */
    struct rft_status after;
    rft_get_status(e->n[leader].r, &after);
    assert_int_equal(after.stats.batches - before.stats.batches, 1);
    /* Each finished proposal is one latency observation, in cumulative
     * buckets. */
    assert_int_equal(after.stats.latency_count - before.stats.latency_count,
                     100);
    for (int i = 1; i < RFT_LAT_BUCKETS; i++) {
        assert_true(after.stats.latency_le_ms[i] >=
                    after.stats.latency_le_ms[i - 1]);
    }
    assert_true(after.stats.latency_le_ms[RFT_LAT_BUCKETS - 1] <=
                after.stats.latency_count);
    assert_true(after.stats.latency_le_ms[RFT_LAT_BUCKETS - 1] -
                    before.stats.latency_le_ms[RFT_LAT_BUCKETS - 1] ==
                100); /* 100 proposals in one entry: well within 5 s */
    int f = rt_follower(e);
    rt_propose_n(e, f, 1001, 100); /* forwarded to the leader */
    assert_int_equal(e->ok, 200);
    assert_int_equal(e->failed, 0);
    struct rft_status st;
    rft_get_status(e->n[f].r, &st);
    assert_int_equal(st.stats.forwarded, 100);
    assert_int_equal(st.nservers, 3);
    rt_assert_same_state(e);
    uint64_t seq;
    uint8_t head[FSM_HASH_LEN];
    assert_int_equal(fsm_query_chain_head(e->n[f].fsm, &seq, head), 0);
    assert_int_equal(seq, 200);
}

static void test_runtime_retry_is_idempotent(void **state)
{
    struct rt_env *e = *state;
    int leader = rt_leader(e);
    rt_propose_n(e, leader, 7, 1);
    assert_false(e->last.replayed);
    uint64_t first_seq = e->last.audit_seq;
    rt_propose_n(e, rt_follower(e), 7, 1); /* same req_id, via forwarding */
    assert_true(e->last.replayed);
    assert_int_equal(e->last.audit_seq, first_seq);
    rt_assert_same_state(e);
}

static void test_runtime_survives_leader_loss(void **state)
{
    struct rt_env *e = *state;
    int old = rt_leader(e);
    rt_propose_n(e, old, 1, 20);
    rt_node_stop(e, old);
    assert_true(rt_run_until(e, rt_has_leader, NULL, 10000));
    int leader = rt_leader(e);
    assert_int_not_equal(leader, old);
    rt_propose_n(e, rt_follower(e), 100, 20);
    assert_int_equal(e->ok, 40);
    rt_assert_same_state(e);
    /* The old leader comes back and catches up. */
    rt_node_start(e, old, false);
    /* Its log loaded whole: it knows all three members (libraft 0.15
     * corrupted segments of unpadded entries, and the node came back as
     * a one-voter cluster; see rft_cmd_buffer). */
    struct rft_status st;
    rft_get_status(e->n[old].r, &st);
    assert_int_equal(st.nservers, 3);
    assert_true(st.last_index >= 5); /* bootstrap, 2 x (add, assign) */
    rt_propose_n(e, leader, 200, 5);
    rt_assert_same_state(e);
}

static bool rt_leader_is(struct rt_env *e, void *arg)
{
    return rt_leader(e) == *(int *)arg;
}

static void test_runtime_transfer_and_remove(void **state)
{
    struct rt_env *e = *state;
    int leader = rt_leader(e);
    int target = rt_follower(e);
    int status = 1;
    assert_int_equal(
        rft_transfer(e->n[leader].r, (uint64_t)target, rt_change_cb, &status),
        0);
    assert_true(rt_run_until(e, rt_int_set, &status, 10000));
    assert_int_equal(status, 0);
    assert_true(rt_run_until(e, rt_leader_is, &target, 10000));
    /* A follower refuses membership changes, naming the leader. */
    status = 1;
    assert_int_equal(
        rft_remove(e->n[leader].r, (uint64_t)leader, rt_change_cb, &status),
        OVHA_ENOTLEADER);
    assert_non_null(strstr(rft_errmsg(e->n[leader].r), "not the leader"));
    assert_int_equal(
        rft_remove(e->n[target].r, (uint64_t)leader, rt_change_cb, &status), 0);
    assert_true(rt_run_until(e, rt_int_set, &status, 10000));
    assert_int_equal(status, 0);
    struct rft_status st;
    rft_get_status(e->n[target].r, &st);
    assert_int_equal(st.nservers, 2);
    rt_node_stop(e, leader);
    rt_propose_n(e, target, 300, 10);
    assert_int_equal(e->ok, 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_runtime_leader_and_forwarded_proposals, rt_setup, rt_teardown),
        cmocka_unit_test_setup_teardown(test_runtime_retry_is_idempotent,
                                        rt_setup, rt_teardown),
        cmocka_unit_test_setup_teardown(test_runtime_survives_leader_loss,
                                        rt_setup, rt_teardown),
        cmocka_unit_test_setup_teardown(test_runtime_transfer_and_remove,
                                        rt_setup, rt_teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests_name("raft runtime", tests, NULL, NULL);
}
