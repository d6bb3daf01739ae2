/* fsm property tests: seeded random command sequences.
 *
 * Two FSM instances apply the same encoded commands and must agree on every
 * result and on the state hash after every step. Along the way: snapshots
 * restored into the second instance keep the hashes equal, no IP is held by
 * two CNs, retried req_ids replay their first result, and the usage table
 * equals a model that counts each accepted batch once.
 *
 * Reproduce a failure with FSM_PROP_SEED=<seed> (printed on failure).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/base.h"
#include "fsm/fsm.h"
#include "fsm_test_util.h"

#define FSMP_CNS      24
#define FSMP_GWS      3
#define FSMP_SESS_MAX 512
#define FSMP_HIST     64
#define FSMP_TTL      60000ULL

struct fsmp_sess {
    uint64_t id;
    int cn;
    int gw;
};

struct fsmp_hist {
    uint8_t *buf;
    size_t len;
    struct proto_result first;
};

struct fsmp {
    uint64_t seed;
    uint64_t rng;
    uint64_t ts;
    uint64_t req_next;
    struct fsm *a;
    struct fsm *b;
    struct fsmp_sess sess[FSMP_SESS_MAX];
    size_t nsess;
    uint64_t gw_seq[FSMP_GWS];
    uint64_t expect_bytes[FSMP_CNS]; /* model: charged bytes per CN */
    struct fsmp_hist hist[FSMP_HIST];
    size_t nhist;
    unsigned steps_checked;
    unsigned n_ok, n_refused, n_takeover, n_evicted, n_expired, n_dup, n_replay,
        n_over_quota, n_exhausted;
};

static uint64_t fsmp_rand(struct fsmp *p, uint64_t n)
{
    return fsmt_rand(&p->rng) % n;
}

static const char *fsmp_gw(int i)
{
    static const char *const names[FSMP_GWS] = { "gw-0", "gw-1", "gw-2" };
    return names[i];
}

static void fsmp_cn(int i, char *out, size_t cap)
{
    snprintf(out, cap, "cn-%02d", i);
}

static void fsmp_fail(struct fsmp *p, const char *what)
{
    fail_msg("seed %llu step %u: %s", (unsigned long long)p->seed,
             p->steps_checked, what);
}

/* Builds one random command into c; entries (if any) point into ents. */
static void fsmp_gen(struct fsmp *p,
                     struct proto_cmd *c,
                     struct proto_usage_entry *ents)
{
    int gw = (int)fsmp_rand(p, FSMP_GWS);
    p->ts += fsmp_rand(p, 8000);
    /* Sometimes a proposer's clock lags: the FSM keeps the max. */
    uint64_t ts = fsmp_rand(p, 10) == 0 ? p->ts - 5000 : p->ts;
    uint64_t req = fsmp_rand(p, 3) == 0 ? 0 : p->req_next++;
    uint64_t k = fsmp_rand(p, 100);

    if (k < 35) {
        fsmt_env(c, PROTO_CMD_SESSION_OPEN, fsmp_gw(gw), ts, req);
        struct proto_session_open *o = &c->u.session_open;
        fsmp_cn((int)fsmp_rand(p, FSMP_CNS), o->cn, sizeof(o->cn));
        strcpy(o->pool4, "p4");
        if (fsmp_rand(p, 2) == 0) {
            strcpy(o->pool6, "p6");
        }
        o->max_sessions = (uint32_t)fsmp_rand(p, 3);
        o->on_excess = fsmp_rand(p, 3) == 0 ? PROTO_EXCESS_REFUSE
                                            : PROTO_EXCESS_EVICT_OLDEST;
        if (fsmp_rand(p, 4) == 0) {
            strcpy(o->period, "2026-11");
            o->quota_bytes = 50000 + fsmp_rand(p, 200000);
        }
    } else if (k < 60 && p->nsess > 0) {
        struct fsmp_sess *s = &p->sess[fsmp_rand(p, p->nsess)];
        bool est = fsmp_rand(p, 3) == 0;
        fsmt_env(c,
                 est ? PROTO_CMD_SESSION_ESTABLISHED : PROTO_CMD_SESSION_CLOSE,
                 fsmp_gw(fsmp_rand(p, 5) == 0 ? gw : s->gw), ts, req);
        c->u.session_close.session_id = s->id; /* same offset in both */
    } else if (k < 78) {
        fsmt_env(c, PROTO_CMD_USAGE_CHARGE, fsmp_gw(gw), ts, req);
        struct proto_usage_charge *u = &c->u.usage_charge;
        /* Mostly the next seq, sometimes a repeat or a gap. */
        uint64_t r = fsmp_rand(p, 10);
        u->seq = r == 0 ? p->gw_seq[gw] : p->gw_seq[gw] + 1 + (r == 1);
        strcpy(u->period, "2026-11");
        u->nentries = (size_t)fsmp_rand(p, 6);
        u->entries = ents;
        for (size_t i = 0; i < u->nentries; i++) {
            memset(&ents[i], 0, sizeof(ents[i]));
            if (p->nsess > 0 && fsmp_rand(p, 4) != 0) {
                struct fsmp_sess *s = &p->sess[fsmp_rand(p, p->nsess)];
                ents[i].session_id = s->id;
                fsmp_cn(s->cn, ents[i].cn, sizeof(ents[i].cn));
            } else {
                fsmp_cn((int)fsmp_rand(p, FSMP_CNS), ents[i].cn,
                        sizeof(ents[i].cn));
            }
            ents[i].bytes_in = fsmp_rand(p, 40000);
            ents[i].bytes_out = fsmp_rand(p, 40000);
        }
    } else if (k < 84) {
        fsmt_env(c, PROTO_CMD_GATEWAY_HEARTBEAT, fsmp_gw(gw), ts, req);
        strcpy(c->u.gateway_heartbeat.addr, "198.18.0.1");
    } else if (k < 88) {
        fsmt_env(c, PROTO_CMD_GATEWAY_SET_STATE, "leader", ts, req);
        strcpy(c->actor, "op");
        strcpy(c->u.gateway_set_state.gateway_id, fsmp_gw(gw));
        c->u.gateway_set_state.state = (enum proto_gw_state)fsmp_rand(p, 4);
    } else if (k < 95) {
        bool reserve = fsmp_rand(p, 2) == 0;
        fsmt_env(c, reserve ? PROTO_CMD_LEASE_RESERVE : PROTO_CMD_LEASE_RELEASE,
                 "leader", ts, req);
        strcpy(c->actor, "op");
        fsmp_cn((int)fsmp_rand(p, FSMP_CNS), c->u.lease_reserve.cn,
                sizeof(c->u.lease_reserve.cn));
        snprintf(c->u.lease_reserve.ip, sizeof(c->u.lease_reserve.ip),
                 "100.64.0.%u", (unsigned)fsmp_rand(p, 34));
    } else {
        fsmt_env(c, PROTO_CMD_AUDIT_APPEND, "leader", ts, req);
        strcpy(c->actor, "op");
        strcpy(c->u.audit_append.action, "note");
        snprintf(c->u.audit_append.detail, sizeof(c->u.audit_append.detail),
                 "n=%llu", (unsigned long long)fsmp_rand(p, 1000));
    }
}

/* Applies bytes to both instances and checks they agree. */
static void fsmp_apply_both(struct fsmp *p,
                            const uint8_t *buf,
                            size_t len,
                            struct proto_result *ra)
{
    struct proto_result rb;
    int rva = fsm_apply(p->a, buf, len, ra);
    int rvb = fsm_apply(p->b, buf, len, &rb);
    if (rva != 0 || rvb != 0) {
        char msg[64];
        snprintf(msg, sizeof(msg), "apply failed: %d %d", rva, rvb);
        fsmp_fail(p, msg);
    }
    if (memcmp(ra, &rb, sizeof(rb)) != 0) {
        fsmp_fail(p, "results differ");
    }
}

/* Updates the model from a result. */
static void fsmp_count(struct fsmp *p, const struct proto_result *r)
{
    p->n_ok += r->status == PROTO_STATUS_OK;
    p->n_refused += r->status != PROTO_STATUS_OK;
    p->n_takeover += r->takeover;
    p->n_dup += r->duplicate;
    p->n_replay += r->replayed;
    p->n_exhausted += r->reason == PROTO_R_POOL_EXHAUSTED;
    for (size_t i = 0; i < r->nrefs; i++) {
        p->n_evicted += r->refs[i].kind == PROTO_REF_EVICTED;
        p->n_expired += r->refs[i].kind == PROTO_REF_EXPIRED;
        p->n_over_quota += r->refs[i].kind == PROTO_REF_OVER_QUOTA;
    }
}

static void fsmp_learn(struct fsmp *p,
                       const struct proto_cmd *c,
                       const struct proto_result *r)
{
    fsmp_count(p, r);
    if (r->replayed || r->status != PROTO_STATUS_OK) {
        return;
    }
    if (c->kind == PROTO_CMD_SESSION_OPEN && p->nsess < FSMP_SESS_MAX) {
        struct fsmp_sess *s = &p->sess[p->nsess++];
        s->id = r->session_id;
        s->cn = atoi(c->u.session_open.cn + 3);
        for (int i = 0; i < FSMP_GWS; i++) {
            if (strcmp(c->gateway, fsmp_gw(i)) == 0) {
                s->gw = i;
            }
        }
    }
    if (c->kind == PROTO_CMD_USAGE_CHARGE) {
        int gw = c->gateway[3] - '0';
        const struct proto_usage_charge *u = &c->u.usage_charge;
        if (u->seq <= p->gw_seq[gw]) {
            if (!r->duplicate) {
                fsmp_fail(p, "old seq not a duplicate");
            }
            return;
        }
        if (r->duplicate) {
            fsmp_fail(p, "new seq called a duplicate");
        }
        p->gw_seq[gw] = u->seq;
        if (r->count != u->nentries) {
            fsmp_fail(p, "not every entry charged");
        }
        for (size_t i = 0; i < u->nentries; i++) {
            int cn = atoi(u->entries[i].cn + 3);
            p->expect_bytes[cn] +=
                u->entries[i].bytes_in + u->entries[i].bytes_out;
        }
    }
}

static void fsmp_check(struct fsmp *p)
{
    uint8_t ha[FSM_HASH_LEN], hb[FSM_HASH_LEN];
    char err[256];
    if (fsm_state_hash(p->a, ha) != 0 || fsm_state_hash(p->b, hb) != 0 ||
        memcmp(ha, hb, FSM_HASH_LEN) != 0) {
        fsmp_fail(p, "state hashes differ");
    }
    if (fsm_check_invariants(p->a, err, sizeof(err)) != 0) {
        fsmp_fail(p, err);
    }
    for (int i = 0; i < FSMP_CNS; i++) {
        char cn[16];
        struct fsm_usage_info u;
        fsmp_cn(i, cn, sizeof(cn));
        if (fsm_query_usage(p->a, cn, "2026-11", &u) != 0 ||
            u.bytes_in + u.bytes_out != p->expect_bytes[i]) {
            fsmp_fail(p, "usage differs from the charge model");
        }
    }
}

/* Restores a snapshot of a into b: hashes must still match. */
static void fsmp_snapshot_swap(struct fsmp *p)
{
    uint8_t *snap = NULL;
    size_t len = 0;
    if (fsm_snapshot(p->a, &snap, &len) != 0 ||
        fsm_restore(p->b, snap, len) != 0) {
        fsmp_fail(p, "snapshot/restore failed");
    }
    fsm_snapshot_free(snap);
    fsmp_check(p);
}

static void fsmp_setup(struct fsmp *p, uint64_t seed)
{
    memset(p, 0, sizeof(*p));
    p->seed = seed;
    p->rng = seed * 0x9E3779B97F4A7C15ULL + 1;
    p->ts = 1790000000000ULL;
    p->req_next = 1;
    assert_int_equal(fsm_new(NULL, &p->a), 0);
    assert_int_equal(fsm_new(NULL, &p->b), 0);
    struct proto_result r;
    for (int i = 0; i < FSMP_GWS; i++) {
        assert_int_equal(fsmt_heartbeat(p->a, fsmp_gw(i), p->ts, &r), 0);
        assert_int_equal(fsmt_heartbeat(p->b, fsmp_gw(i), p->ts, &r), 0);
    }
    /* p4 has 29 addresses for 24 CNs with up to 2 sessions: exhaustion,
     * expiry and reclaim all happen. */
    assert_int_equal(
        fsmt_pool(p->a, "p4", "100.64.0.0/27", FSMP_TTL, p->ts, &r), 0);
    assert_int_equal(
        fsmt_pool(p->b, "p4", "100.64.0.0/27", FSMP_TTL, p->ts, &r), 0);
    assert_int_equal(
        fsmt_pool(p->a, "p6", "fd00:64::/124", FSMP_TTL, p->ts, &r), 0);
    assert_int_equal(
        fsmt_pool(p->b, "p6", "fd00:64::/124", FSMP_TTL, p->ts, &r), 0);
}

static void fsmp_teardown(struct fsmp *p)
{
    for (size_t i = 0; i < p->nhist; i++) {
        ovha_free(p->hist[i].buf);
    }
    fsm_free(p->a);
    fsm_free(p->b);
}

/* Either retries an earlier command (same bytes, must replay its first
 * result) or generates, applies and remembers a new one. */
static void fsmp_step(struct fsmp *p)
{
    struct proto_result r;
    if (p->nhist > 0 && fsmp_rand(p, 20) == 0) {
        struct fsmp_hist *h = &p->hist[fsmp_rand(p, p->nhist)];
        fsmp_apply_both(p, h->buf, h->len, &r);
        struct proto_result want = h->first;
        want.replayed = true;
        if (!r.replayed || memcmp(&r, &want, sizeof(r)) != 0) {
            fsmp_fail(p, "retry did not replay the first result");
        }
        fsmp_count(p, &r);
        return;
    }
    struct proto_cmd c;
    struct proto_usage_entry ents[8];
    fsmp_gen(p, &c, ents);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (fsmt_encode(&c, &buf, &len) != 0) {
        fsmp_fail(p, "encode");
    }
    fsmp_apply_both(p, buf, len, &r);
    fsmp_learn(p, &c, &r);
    if (c.req_id != 0 && !r.replayed) {
        struct fsmp_hist *h = p->nhist < FSMP_HIST
                                  ? &p->hist[p->nhist++]
                                  : &p->hist[fsmp_rand(p, FSMP_HIST)];
        ovha_free(h->buf);
        h->buf = buf;
        h->len = len;
        h->first = r;
        buf = NULL;
    }
    ovha_free(buf);
}

static void fsmp_run(uint64_t seed, unsigned steps)
{
    struct fsmp *p = ovha_calloc(1, sizeof(*p));
    assert_non_null(p);
    fsmp_setup(p, seed);
    for (unsigned i = 0; i < steps; i++) {
        p->steps_checked = i;
        fsmp_step(p);
        fsmp_check(p);
        if (i % 250 == 249) {
            fsmp_snapshot_swap(p);
        }
    }
    uint64_t bad = 1;
    assert_int_equal(fsm_audit_verify(p->a, &bad), 0);
    assert_int_equal(bad, 0);
    printf(
        "seed %llu: %u steps, ok %u refused %u (exhausted %u), takeover %u,"
        " evicted %u, expired %u, dup charge %u, replay %u, over quota %u\n",
        (unsigned long long)seed, steps, p->n_ok, p->n_refused, p->n_exhausted,
        p->n_takeover, p->n_evicted, p->n_expired, p->n_dup, p->n_replay,
        p->n_over_quota);
    fsmp_teardown(p);
    ovha_free(p);
}

static void test_fsm_property_random(void **state)
{
    (void)state;
    const char *env = getenv("FSM_PROP_SEED");
    if (env != NULL) {
        fsmp_run(strtoull(env, NULL, 10), 3000);
        return;
    }
    for (uint64_t seed = 1; seed <= 6; seed++) {
        fsmp_run(seed, 1000);
    }
}

/* The same seed gives the same final state: the generator and the FSM are
 * both deterministic, so failures reproduce. */
static void test_fsm_property_reproducible(void **state)
{
    (void)state;
    uint8_t h[2][FSM_HASH_LEN];
    for (int run = 0; run < 2; run++) {
        struct fsmp *p = ovha_calloc(1, sizeof(*p));
        assert_non_null(p);
        fsmp_setup(p, 42);
        for (unsigned i = 0; i < 500; i++) {
            p->steps_checked = i;
            fsmp_step(p);
        }
        assert_int_equal(fsm_state_hash(p->a, h[run]), 0);
        fsmp_teardown(p);
        ovha_free(p);
    }
    assert_memory_equal(h[0], h[1], FSM_HASH_LEN);
}

int fsm_test_property(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fsm_property_random),
        cmocka_unit_test(test_fsm_property_reproducible),
    };
    return cmocka_run_group_tests_name("fsm_property", tests, NULL, NULL);
}
