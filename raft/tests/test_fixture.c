/* raft fixture tests: libraft 0.15's deterministic in-memory cluster driving
 * the real FSM through the adapter, with 3 and 5 nodes.
 *
 * Scenario per cluster size: bootstrap and elect; replicate setup commands
 * and sessions; depose the leader with entries in flight (their outcome is
 * unknown: LEADERSHIPLOST) and retry them through the new leader with the
 * same req_id; isolate a follower while the log moves on past a snapshot
 * (it catches up by InstallSnapshot -> restore); kill the leader, elect
 * another, revive. Finally every node has applied the same log: the state
 * hashes are equal, leases are unique and every retried open exists once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <raft.h>
#include <raft/fixture.h>

#include "base/base.h"
#include "fsm/fsm.h"
#include "proto/proto.h"
#include "raft/raft.h"

#define FX_MAX_NODES 5
#define FX_MAX_PROPS 1024
#define FX_T0        1790000000000ULL

struct fx;

struct fx_prop {
    struct raft_apply req;
    struct fx *fx;
    uint8_t *enc; /* encoded command, kept for retries */
    size_t len;
    bool done;
    int status;
    struct proto_result res;
    char cn[32]; /* SessionOpen: its CN */
};

struct fx {
    struct raft_fixture f;
    unsigned n;
    struct fsm *fsm[FX_MAX_NODES];
    struct raft_fsm rf[FX_MAX_NODES];
    struct fx_prop props[FX_MAX_PROPS];
    size_t nprops;
    uint64_t req_next;
    uint64_t ts;
    unsigned unknown; /* LEADERSHIPLOST outcomes seen */
    unsigned retried;
};

static void fx_apply_cb(struct raft_apply *req, int status, void *result)
{
    struct fx_prop *p = req->data;
    p->done = true;
    p->status = status;
    if (status == 0 && result != NULL) {
        const struct rft_entry_results *er = result;
        assert_int_equal(er->n, 1);
        memcpy(&p->res, &er->results[0], sizeof(p->res));
    }
    if (status == RAFT_LEADERSHIPLOST) {
        p->fx->unknown++;
    }
}

static void fx_setup(struct fx *x, unsigned n)
{
    memset(x, 0, sizeof(*x)); /* 0.15's initialize leaves f.n unset */
    x->n = n;
    x->req_next = 1;
    x->ts = FX_T0;
    assert_int_equal(raft_fixture_initialize(&x->f), 0);
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(fsm_new(NULL, &x->fsm[i]), 0);
        assert_int_equal(rft_fsm_init(&x->rf[i], x->fsm[i]), 0);
        assert_int_equal(raft_fixture_grow(&x->f, &x->rf[i]), 0);
        struct raft *r = raft_fixture_get(&x->f, i);
        raft_set_pre_vote(r, true);
        /* Small thresholds so snapshots and InstallSnapshot happen. */
        raft_set_snapshot_threshold(r, 64);
        raft_set_snapshot_trailing(r, 16);
    }
    struct raft_configuration conf;
    assert_int_equal(raft_fixture_configuration(&x->f, n, &conf), 0);
    assert_int_equal(raft_fixture_bootstrap(&x->f, &conf), 0);
    raft_configuration_close(&conf);
    assert_int_equal(raft_fixture_start(&x->f), 0);
    raft_fixture_elect(&x->f, 0);
    assert_int_equal(raft_fixture_leader_index(&x->f), 0);
}

static void fx_teardown(struct fx *x)
{
    raft_fixture_close(&x->f);
    for (unsigned i = 0; i < x->n; i++) {
        rft_fsm_close(&x->rf[i]);
        fsm_free(x->fsm[i]);
    }
    for (size_t i = 0; i < x->nprops; i++) {
        ovha_free(x->props[i].enc);
    }
}

/* A killed leader still believes it leads (it no longer ticks), so "has a
 * leader" is not enough: wait for a live one. */
static bool fx_has_live_leader(struct raft_fixture *f, void *arg)
{
    (void)arg;
    unsigned l = raft_fixture_leader_index(f);
    return l < raft_fixture_n(f) && raft_fixture_alive(f, l) &&
           raft_state(raft_fixture_get(f, l)) == RAFT_LEADER;
}

static unsigned fx_leader(struct fx *x)
{
    assert_true(
        raft_fixture_step_until(&x->f, fx_has_live_leader, NULL, 30000));
    return raft_fixture_leader_index(&x->f);
}

/* Sends prop p's bytes through the current leader. Returns raft_apply's
 * value (RAFT_NOTLEADER during a transition; the caller retries). */
static int fx_send(struct fx *x, struct fx_prop *p, unsigned leader)
{
    struct raft_buffer buf;
    assert_int_equal(rft_cmd_buffer(p->enc, p->len, &buf), 0);
    p->done = false;
    p->status = -1;
    p->req.data = p;
    int rv = raft_apply(raft_fixture_get(&x->f, leader), &p->req, &buf, 1,
                        fx_apply_cb);
    if (rv != 0) {
        raft_free(buf.base);
    }
    return rv;
}

/* Encodes c as a new proposal (fresh req_id, advancing time) and sends it. */
static struct fx_prop *fx_propose(struct fx *x, struct proto_cmd *c)
{
    assert_true(x->nprops < FX_MAX_PROPS);
    struct fx_prop *p = &x->props[x->nprops++];
    memset(p, 0, sizeof(*p));
    p->fx = x;
    c->version = PROTO_VERSION;
    c->req_id = x->req_next++;
    x->ts += 100;
    c->ts_ms = x->ts;
    if (c->kind == PROTO_CMD_SESSION_OPEN) {
        ovha_strlcpy(p->cn, c->u.session_open.cn, sizeof(p->cn));
    }
    assert_int_equal(proto_cmd_encode(c, &p->enc, &p->len), 0);
    assert_int_equal(fx_send(x, p, fx_leader(x)), 0);
    return p;
}

static void fx_cmd(struct proto_cmd *c,
                   enum proto_cmd_kind kind,
                   const char *gw)
{
    memset(c, 0, sizeof(*c));
    c->kind = kind;
    ovha_strlcpy(c->gateway, gw, sizeof(c->gateway));
}

static void fx_propose_open(struct fx *x, const char *gw, const char *cn)
{
    struct proto_cmd c;
    fx_cmd(&c, PROTO_CMD_SESSION_OPEN, gw);
    ovha_strlcpy(c.u.session_open.cn, cn, sizeof(c.u.session_open.cn));
    strcpy(c.u.session_open.pool4, "p4");
    strcpy(c.u.session_open.pool6, "p6");
    fx_propose(x, &c);
}

static void fx_propose_setup(struct fx *x)
{
    struct proto_cmd c;
    for (int g = 0; g < 3; g++) {
        char gw[16];
        snprintf(gw, sizeof(gw), "gw-%d", g);
        fx_cmd(&c, PROTO_CMD_GATEWAY_HEARTBEAT, gw);
        strcpy(c.u.gateway_heartbeat.addr, "198.18.0.1");
        fx_propose(x, &c);
    }
    fx_cmd(&c, PROTO_CMD_POOL_PUT, "gw-0");
    strcpy(c.actor, "op");
    strcpy(c.u.pool_put.name, "p4");
    strcpy(c.u.pool_put.cidr, "100.64.0.0/22");
    c.u.pool_put.lease_ttl_ms = 60000;
    fx_propose(x, &c);
    fx_cmd(&c, PROTO_CMD_POOL_PUT, "gw-0");
    strcpy(c.actor, "op");
    strcpy(c.u.pool_put.name, "p6");
    strcpy(c.u.pool_put.cidr, "fd00:64::/112");
    fx_propose(x, &c);
}

/* Steps until every live node has applied the leader's last index. */
static void fx_converge(struct fx *x)
{
    unsigned l = fx_leader(x);
    raft_index idx = raft_last_index(raft_fixture_get(&x->f, l));
    for (unsigned i = 0; i < x->n; i++) {
        if (!raft_fixture_alive(&x->f, i)) {
            continue;
        }
        if (!raft_fixture_step_until_applied(&x->f, i, idx, 30000)) {
            fail_msg("node %u did not apply index %llu (has %llu)", i,
                     (unsigned long long)idx,
                     (unsigned long long)raft_last_applied(
                         raft_fixture_get(&x->f, i)));
        }
    }
}

/* Retries every proposal whose outcome is unknown (or that was refused as
 * not-leader), with the same bytes and req_id, until each one is done. */
static void fx_retry_unknown(struct fx *x)
{
    for (int round = 0; round < 20; round++) {
        bool pending = false;
        for (size_t i = 0; i < x->nprops; i++) {
            struct fx_prop *p = &x->props[i];
            if (p->done && p->status == 0) {
                continue;
            }
            if (!p->done) {
                pending = true;
                continue;
            }
            unsigned l = fx_leader(x);
            if (fx_send(x, p, l) == 0) {
                x->retried++;
            }
            pending = true;
        }
        if (!pending) {
            return;
        }
        fx_converge(x);
    }
    fail_msg("proposals still unresolved after 20 rounds");
}

static int fx_count_sess(const struct fsm_session_info *s, void *data)
{
    (void)s;
    (*(int *)data)++;
    return 0;
}

/* All live nodes: same state hash, invariants hold, audit chain intact. */
static void fx_check_same(struct fx *x)
{
    uint8_t h0[FSM_HASH_LEN];
    bool have = false;
    char err[256];
    for (unsigned i = 0; i < x->n; i++) {
        if (!raft_fixture_alive(&x->f, i)) {
            continue;
        }
        uint8_t h[FSM_HASH_LEN];
        assert_int_equal(fsm_state_hash(x->fsm[i], h), 0);
        if (!have) {
            memcpy(h0, h, sizeof(h0));
            have = true;
        } else if (memcmp(h, h0, sizeof(h)) != 0) {
            fail_msg("node %u's state hash differs", i);
        }
        if (fsm_check_invariants(x->fsm[i], err, sizeof(err)) != 0) {
            fail_msg("node %u: %s", i, err);
        }
        uint64_t bad = 1;
        assert_int_equal(fsm_audit_verify(x->fsm[i], &bad), 0);
        assert_int_equal(bad, 0);
    }
}

static void fx_scenario(unsigned n)
{
    struct fx *x = ovha_calloc(1, sizeof(*x));
    assert_non_null(x);
    fx_setup(x, n);
    char cn[32];

    /* 1. Setup and a first wave of sessions. */
    fx_propose_setup(x);
    for (int i = 0; i < 40; i++) {
        snprintf(cn, sizeof(cn), "a-%d", i);
        fx_propose_open(x, i % 2 ? "gw-1" : "gw-0", cn);
    }
    fx_converge(x);
    fx_check_same(x);
    for (size_t i = 0; i < x->nprops; i++) {
        assert_true(x->props[i].done);
        assert_int_equal(x->props[i].status, 0);
        assert_int_equal(x->props[i].res.status, PROTO_STATUS_OK);
    }

    /* 2. Depose the leader with entries in flight: unknown outcomes. */
    size_t first_wave2 = x->nprops;
    for (int i = 0; i < 20; i++) {
        snprintf(cn, sizeof(cn), "b-%d", i);
        fx_propose_open(x, "gw-2", cn);
    }
    raft_fixture_depose(&x->f);
    fx_retry_unknown(x);
    fx_converge(x);
    fx_check_same(x);
    for (size_t i = first_wave2; i < x->nprops; i++) {
        int count = 0;
        assert_int_equal(fsm_query_cn_sessions(x->fsm[0], x->props[i].cn,
                                               fx_count_sess, &count),
                         0);
        assert_int_equal(count, 1); /* committed once, retries replayed */
    }

    /* 3. Isolate a follower while the log moves past a snapshot. */
    unsigned l = fx_leader(x);
    unsigned iso = (l + 1) % n;
    for (unsigned j = 0; j < n; j++) {
        if (j != iso) {
            raft_fixture_disconnect(&x->f, iso, j);
            raft_fixture_disconnect(&x->f, j, iso);
        }
    }
    for (int i = 0; i < 100; i++) {
        struct proto_cmd c;
        if (i % 6 == 2) {
            /* Close an even one of the first wave's sessions (a-0, a-2,
             * ...) from its gateway; the odd ones on gw-1 stay for step 4. */
            const struct fx_prop *o = &x->props[5 + 2 * (i / 6)];
            struct fsm_session_info si;
            assert_int_equal(
                fsm_query_session(x->fsm[l], o->res.session_id, &si), 0);
            fx_cmd(&c, PROTO_CMD_SESSION_CLOSE, si.gateway);
            c.u.session_close.session_id = o->res.session_id;
        } else {
            snprintf(cn, sizeof(cn), "c-%d", i);
            fx_cmd(&c, PROTO_CMD_SESSION_OPEN, "gw-1");
            ovha_strlcpy(c.u.session_open.cn, cn, sizeof(c.u.session_open.cn));
            strcpy(c.u.session_open.pool4, "p4");
        }
        fx_propose(x, &c);
    }
    l = fx_leader(x);
    raft_index idx = raft_last_index(raft_fixture_get(&x->f, l));
    for (unsigned j = 0; j < n; j++) {
        if (j != iso) {
            assert_true(raft_fixture_step_until_applied(&x->f, j, idx, 30000));
        }
    }
    assert_true(raft_last_applied(raft_fixture_get(&x->f, iso)) < idx);
    for (unsigned j = 0; j < n; j++) {
        if (j != iso) {
            raft_fixture_reconnect(&x->f, iso, j);
            raft_fixture_reconnect(&x->f, j, iso);
        }
    }
    fx_retry_unknown(x);
    fx_converge(x);
    fx_check_same(x);

    /* 4. Kill the leader, elect another, mark its gateway down (takeover
     * of its sessions elsewhere), revive it. */
    l = fx_leader(x);
    raft_fixture_kill(&x->f, l);
    assert_int_not_equal(fx_leader(x), l);
    struct proto_cmd c;
    fx_cmd(&c, PROTO_CMD_GATEWAY_SET_STATE, "gw-0");
    strcpy(c.actor, "op");
    strcpy(c.u.gateway_set_state.gateway_id, "gw-1");
    c.u.gateway_set_state.state = PROTO_GW_DOWN;
    fx_propose(x, &c);
    for (int i = 0; i < 10; i++) {
        snprintf(cn, sizeof(cn), "a-%d", 2 * i + 1); /* were on gw-1 */
        fx_propose_open(x, "gw-2", cn);
    }
    fx_retry_unknown(x);
    fx_converge(x);
    unsigned takeovers = 0;
    for (size_t i = x->nprops - 10; i < x->nprops; i++) {
        takeovers += x->props[i].res.takeover;
    }
    assert_true(takeovers > 0);
    raft_fixture_revive(&x->f, l);
    fx_converge(x);
    fx_check_same(x);

    unsigned replayed = 0;
    for (size_t i = 0; i < x->nprops; i++) {
        replayed += x->props[i].res.replayed;
    }
    struct rft_fsm_stats st;
    uint64_t restores = 0;
    for (unsigned i = 0; i < n; i++) {
        rft_fsm_stats(&x->rf[i], &st);
        restores += st.restores;
        assert_int_equal(st.apply_errors, 0);
    }
    printf(
        "raft fixture %u nodes: %zu proposals, %u unknown outcomes, "
        "%u retries (%u replayed a committed first try), %u takeovers, "
        "%llu snapshot restores, t=%llu ms\n",
        n, x->nprops, x->unknown, x->retried, replayed, takeovers,
        (unsigned long long)restores,
        (unsigned long long)raft_fixture_time(&x->f));
    assert_true(restores > 0); /* the isolated node caught up by snapshot */
    fx_teardown(x);
    ovha_free(x);
}

static void test_raft_fixture_3(void **state)
{
    (void)state;
    fx_scenario(3);
}

static void test_raft_fixture_5(void **state)
{
    (void)state;
    fx_scenario(5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_raft_fixture_3),
        cmocka_unit_test(test_raft_fixture_5),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
