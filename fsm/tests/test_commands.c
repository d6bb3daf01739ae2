/* fsm unit tests: every command, its effects and each of its refusals. */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "base/base.h"
#include "fsm/fsm.h"
#include "fsm_test_util.h"

#define T0    1790000000000ULL
#define TTL   60000ULL
#define EVICT PROTO_EXCESS_EVICT_OLDEST

static struct fsm *fsmtc_new(void)
{
    struct fsm *f = NULL;
    assert_int_equal(fsm_new(NULL, &f), 0);
    return f;
}

static void fsmtc_ok(const struct proto_result *r)
{
    if (r->status != PROTO_STATUS_OK) {
        fail_msg("refused: %s (%s)", proto_reason_name(r->reason), r->detail);
    }
}

static void fsmtc_refused(const struct proto_result *r, enum proto_reason why)
{
    assert_int_equal(r->status, PROTO_STATUS_REFUSED);
    if (r->reason != why) {
        fail_msg("reason %s, want %s (%s)", proto_reason_name(r->reason),
                 proto_reason_name(why), r->detail);
    }
}

/* A gateway gw-1 and gw-2, pool p4 = 100.64.0.0/29 (5 addresses) and p6. */
static struct fsm *fsmtc_setup(void)
{
    struct fsm *f = fsmtc_new();
    struct proto_result r;
    assert_int_equal(fsmt_heartbeat(f, "gw-1", T0, &r), 0);
    fsmtc_ok(&r);
    assert_int_equal(fsmt_heartbeat(f, "gw-2", T0, &r), 0);
    fsmtc_ok(&r);
    assert_int_equal(fsmt_pool(f, "p4", "100.64.0.0/29", TTL, T0, &r), 0);
    fsmtc_ok(&r);
    assert_int_equal(fsmt_pool(f, "p6", "fd00:100::/120", TTL, T0, &r), 0);
    fsmtc_ok(&r);
    return f;
}

static uint64_t fsmtc_open(struct fsm *f,
                           const char *gw,
                           const char *cn,
                           uint64_t ts,
                           struct proto_result *r)
{
    assert_int_equal(fsmt_open(f, gw, cn, "p4", "p6", 1, EVICT, ts, r), 0);
    fsmtc_ok(r);
    return r->session_id;
}

static void fsmtc_hash(struct fsm *f, uint8_t h[FSM_HASH_LEN])
{
    assert_int_equal(fsm_state_hash(f, h), 0);
}

static void fsmtc_invariants(struct fsm *f)
{
    char err[256];
    if (fsm_check_invariants(f, err, sizeof(err)) != 0) {
        fail_msg("invariant: %s", err);
    }
}

/* ---- envelope ------------------------------------------------------------ */

static void test_fsm_malformed(void **state)
{
    (void)state;
    struct fsm *f = fsmtc_setup();
    struct proto_result r;
    uint8_t h1[FSM_HASH_LEN], h2[FSM_HASH_LEN];
    fsmtc_hash(f, h1);

    const uint8_t junk[] = { 0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 };
    assert_int_equal(fsm_apply(f, junk, sizeof(junk), &r), 0);
    fsmtc_refused(&r, PROTO_R_MALFORMED);
    assert_int_equal(fsm_apply(f, NULL, 0, &r), 0);
    fsmtc_refused(&r, PROTO_R_MALFORMED);

    struct proto_cmd c;
    fsmt_env(&c, PROTO_CMD_GATEWAY_HEARTBEAT, "gw-1", T0 + 5, 0);
    c.version = 2;
    assert_int_equal(fsmt_apply(f, &c, &r), 0);
    fsmtc_refused(&r, PROTO_R_UNSUPPORTED_VERSION);
    fsmtc_hash(f, h2);
    assert_memory_equal(h1, h2, FSM_HASH_LEN); /* nothing changed */

    fsmt_env(&c, PROTO_CMD_NONE, "gw-1", T0 + 5, 0);
    assert_int_equal(fsmt_apply(f, &c, &r), 0);
    fsmtc_refused(&r, PROTO_R_NO_BODY);
    fsm_free(f);
}

static void test_fsm_clock_is_max(void **state)
{
    (void)state;
    struct fsm *f = fsmtc_new();
    struct proto_result r;
    assert_int_equal(fsmt_heartbeat(f, "gw-1", T0 + 100, &r), 0);
    assert_int_equal(fsm_clock(f), T0 + 100);
    assert_int_equal(fsmt_heartbeat(f, "gw-1", T0 + 50, &r), 0);
    assert_int_equal(fsm_clock(f), T0 + 100);
    struct fsm_gateway_info g;
    assert_int_equal(fsm_query_gateway(f, "gw-1", &g), 0);
    assert_int_equal(g.last_seen, T0 + 100);
    fsm_free(f);
}

/* ---- gateways ------------------------------------------------------------ */

static void test_fsm_gateway_states(void **state)
{
    (void)state;
    struct fsm *f = fsmtc_setup();
    struct proto_result r;

    assert_int_equal(fsmt_open(f, "gw-9", "a", "p4", NULL, 1, EVICT, T0, &r),
                     0);
    fsmtc_refused(&r, PROTO_R_UNKNOWN_GATEWAY);

    assert_int_equal(fsmt_set_state(f, "gw-1", PROTO_GW_DRAINING, T0, &r), 0);
    fsmtc_ok(&r);
    assert_true(r.audit_seq > 0);
    assert_int_equal(fsmt_open(f, "gw-1", "a", "p4", NULL, 1, EVICT, T0, &r),
                     0);
    fsmtc_refused(&r, PROTO_R_GATEWAY_NOT_ACTIVE);
    /* A heartbeat does not end draining. */
    assert_int_equal(fsmt_heartbeat(f, "gw-1", T0 + 1, &r), 0);
    struct fsm_gateway_info g;
    assert_int_equal(fsm_query_gateway(f, "gw-1", &g), 0);
    assert_int_equal(g.state, PROTO_GW_DRAINING);

    assert_int_equal(fsmt_set_state(f, "gw-1", PROTO_GW_DOWN, T0 + 2, &r), 0);
    assert_int_equal(fsmt_heartbeat(f, "gw-1", T0 + 3, &r), 0);
    assert_int_equal(fsm_query_gateway(f, "gw-1", &g), 0);
    assert_int_equal(g.state, PROTO_GW_ACTIVE); /* revived */

    /* Pre-provisioning an unknown gateway as standby. */
    assert_int_equal(fsmt_set_state(f, "gw-3", PROTO_GW_STANDBY, T0, &r), 0);
    fsmtc_ok(&r);
    assert_int_equal(fsm_query_gateway(f, "gw-3", &g), 0);
    assert_int_equal(g.state, PROTO_GW_STANDBY);
    assert_int_equal(fsm_query_gateway(f, "gw-404", &g), -ENOENT);
    fsm_free(f);
}

/* Session ids follow log order: every applied id is below the next one,
 * which is how a gateway tells "not applied here yet" from "gone". */
static void test_fsm_next_session_id(void **state)
{
    (void)state;
    struct fsm *f = fsmtc_setup();
    struct proto_result r;
    uint64_t before = fsm_next_session_id(f);
    uint64_t a = fsmtc_open(f, "gw-1", "a", T0, &r);
    uint64_t b = fsmtc_open(f, "gw-2", "b", T0 + 1, &r);
    assert_int_equal(a, before);
    assert_true(b > a);
    assert_int_equal(fsm_next_session_id(f), b + 1);
    fsm_free(f);
}

/* Draining needs another active gateway to take the clients, unless
 * forced; the check is in the FSM so two racing drains cannot both pass. */
static void test_fsm_drain_last_active(void **state)
{
    (void)state;
    struct fsm *f = fsmtc_setup(); /* gw-1 and gw-2 active */
    struct proto_result r;
    struct proto_cmd c;
    struct fsm_gateway_info g;

    assert_int_equal(fsmt_set_state(f, "gw-1", PROTO_GW_DRAINING, T0, &r), 0);
    fsmtc_ok(&r);
    assert_int_equal(fsmt_set_state(f, "gw-2", PROTO_GW_DRAINING, T0, &r), 0);
    fsmtc_refused(&r, PROTO_R_LAST_ACTIVE);
    assert_int_equal(fsm_query_gateway(f, "gw-2", &g), 0);
    assert_int_equal(g.state, PROTO_GW_ACTIVE);
    /* Down, standby and active are never refused this way. */
    assert_int_equal(fsmt_set_state(f, "gw-2", PROTO_GW_STANDBY, T0, &r), 0);
    fsmtc_ok(&r);
    assert_int_equal(fsmt_set_state(f, "gw-2", PROTO_GW_ACTIVE, T0, &r), 0);
    fsmtc_ok(&r);
    /* Forced: accepted, and the force flag survives encoding. */
    fsmt_env(&c, PROTO_CMD_GATEWAY_SET_STATE, "leader", T0 + 1, 0);
    ovha_strlcpy(c.u.gateway_set_state.gateway_id, "gw-2",
                 sizeof(c.u.gateway_set_state.gateway_id));
    c.u.gateway_set_state.state = PROTO_GW_DRAINING;
    c.u.gateway_set_state.force = true;
    assert_int_equal(fsmt_apply(f, &c, &r), 0);
    fsmtc_ok(&r);
    assert_int_equal(fsm_query_gateway(f, "gw-2", &g), 0);
    assert_int_equal(g.state, PROTO_GW_DRAINING);
    fsm_free(f);
}

/* ---- pools --------------------------------------------------------------- */

static void test_fsm_pool_put(void **state)
{
    (void)state;
    struct fsm *f = fsmtc_setup();
    struct proto_result r;

    assert_int_equal(fsmt_pool(f, "x", "100.64.0.1/29", 0, T0, &r), 0);
    fsmtc_refused(&r, PROTO_R_INVALID); /* host bits set */
    assert_int_equal(fsmt_pool(f, "x", "100.64.9.0/31", 0, T0, &r), 0);
    fsmtc_refused(&r, PROTO_R_INVALID); /* nothing to hand out */
    assert_int_equal(fsmt_pool(f, "x", "bogus", 0, T0, &r), 0);
    fsmtc_refused(&r, PROTO_R_INVALID);
    assert_int_equal(fsmt_pool(f, "x", "100.64.0.0/24", 0, T0, &r), 0);
    fsmtc_refused(&r, PROTO_R_OVERLAP);
    assert_int_equal(fsmt_pool(f, "x", "100.64.9.0/24", 1ULL << 41, T0, &r), 0);
    fsmtc_refused(&r, PROTO_R_INVALID); /* ttl */
    assert_int_equal(fsmt_pool(f, "x", "100.64.9.0/24", 0, T0, &r), 0);
    fsmtc_ok(&r);

    /* A pool with leases cannot move; the same range may be re-put. */
    fsmtc_open(f, "gw-1", "a", T0, &r);
    assert_int_equal(fsmt_pool(f, "p4", "100.64.1.0/29", TTL, T0, &r), 0);
    fsmtc_refused(&r, PROTO_R_IN_USE);
    assert_int_equal(fsmt_pool(f, "p4", "100.64.0.0/29", 2 * TTL, T0, &r), 0);
    fsmtc_ok(&r);
    /* The cursor survived: the next CN gets the next address. */
    fsmtc_open(f, "gw-1", "b", T0, &r);
    assert_string_equal(r.ip4, "100.64.0.3");
    fsm_free(f);
}

/* ---- sessions and leases ------------------------------------------------- */

static void test_fsm_open_allocates(void **state)
{
    (void)state;
    struct fsm *f = fsmtc_setup();
    struct proto_result r;
    char cn[16];

    for (int i = 0; i < 5; i++) {
        snprintf(cn, sizeof(cn), "c%d", i);
        fsmtc_open(f, "gw-1", cn, T0 + (uint64_t)i, &r);
        char want[32];
        snprintf(want, sizeof(want), "100.64.0.%d", i + 2);
        assert_string_equal(r.ip4, want);
        snprintf(want, sizeof(want), "fd00:100::%d", i + 2);
        assert_string_equal(r.ip6, want);
        assert_true(r.audit_seq > 0);
    }
    assert_int_equal(fsmt_open(f, "gw-1", "c9", "p4", NULL, 1, EVICT, T0, &r),
                     0);
    fsmtc_refused(&r, PROTO_R_POOL_EXHAUSTED);
    assert_int_equal(fsmt_open(f, "gw-1", "c9", "nope", NULL, 1, EVICT, T0, &r),
                     0);
    fsmtc_refused(&r, PROTO_R_NO_POOL);
    assert_int_equal(fsmt_open(f, "gw-1", "c9", "p6", NULL, 1, EVICT, T0, &r),
                     0);
    fsmtc_refused(&r, PROTO_R_NO_POOL); /* wrong family */
    fsmtc_invariants(f);
    fsm_free(f);
}

static void test_fsm_sticky_and_expiry(void **state)
{
    (void)state;
    struct fsm *f = fsmtc_new();
    struct proto_result r;
    assert_int_equal(fsmt_heartbeat(f, "gw-1", T0, &r), 0);
    /* A /30 hands out exactly one address: 100.64.0.2. */
    assert_int_equal(fsmt_pool(f, "p4", "100.64.0.0/30", TTL, T0, &r), 0);
    fsmtc_ok(&r);

    assert_int_equal(fsmt_open(f, "gw-1", "a", "p4", "", 1, EVICT, T0, &r), 0);
    fsmtc_ok(&r);
    assert_string_equal(r.ip4, "100.64.0.2");
    uint64_t s1 = r.session_id;
    assert_int_equal(fsmt_close(f, "gw-1", s1, T0 + 1000, &r), 0);
    fsmtc_ok(&r);

    /* Unexpired: nobody else gets it. */
    assert_int_equal(
        fsmt_open(f, "gw-1", "b", "p4", "", 1, EVICT, T0 + 1000 + TTL - 1, &r),
        0);
    fsmtc_refused(&r, PROTO_R_POOL_EXHAUSTED);
    /* Sticky: a gets it back. */
    assert_int_equal(
        fsmt_open(f, "gw-1", "a", "p4", "", 1, EVICT, T0 + 2000, &r), 0);
    fsmtc_ok(&r);
    assert_string_equal(r.ip4, "100.64.0.2");
    assert_int_equal(fsmt_close(f, "gw-1", r.session_id, T0 + 3000, &r), 0);

    /* A live session's lease never expires: reopen, wait far past ttl. */
    assert_int_equal(
        fsmt_open(f, "gw-1", "a", "p4", "", 1, EVICT, T0 + 4000, &r), 0);
    uint64_t s3 = r.session_id;
    assert_int_equal(
        fsmt_open(f, "gw-1", "b", "p4", "", 1, EVICT, T0 + 100 * TTL, &r), 0);
    fsmtc_refused(&r, PROTO_R_POOL_EXHAUSTED);
    assert_int_equal(fsmt_close(f, "gw-1", s3, T0 + 100 * TTL, &r), 0);

    /* After expiry it goes to b; then a is out of luck. */
    assert_int_equal(
        fsmt_open(f, "gw-1", "b", "p4", "", 1, EVICT, T0 + 101 * TTL, &r), 0);
    fsmtc_ok(&r);
    assert_string_equal(r.ip4, "100.64.0.2");
    assert_int_equal(
        fsmt_open(f, "gw-1", "a", "p4", "", 1, EVICT, T0 + 101 * TTL, &r), 0);
    fsmtc_refused(&r, PROTO_R_POOL_EXHAUSTED);

    fsmtc_invariants(f);
    fsm_free(f);
}

static int fsmtc_count_lease(const struct fsm_lease_info *l, void *data)
{
    struct fsm_lease_info *out = data; /* keeps the first (lowest IP) */
    if (out->ip[0] == '\0') {
        *out = *l;
    }
    return 0;
}

static void test_fsm_takeover(void **state)
{
    (void)state;
    struct fsm *f = fsmtc_setup();
    struct proto_result r;

    uint64_t s1 = fsmtc_open(f, "gw-1", "a", T0, &r);
    char ip4[64];
    strcpy(ip4, r.ip4);
    fsmtc_open(f, "gw-1", "b", T0, &r);

    assert_int_equal(fsmt_set_state(f, "gw-1", PROTO_GW_DOWN, T0 + 10, &r), 0);
    fsmtc_ok(&r);
    assert_int_equal(r.count, 2);
    assert_int_equal(r.nrefs, 2);
    assert_int_equal(r.refs[0].kind, PROTO_REF_ORPHANED);
    assert_int_equal(r.refs[0].session_id, s1);
    assert_string_equal(r.refs[0].cn, "a");

    struct fsm_session_info si;
    assert_int_equal(fsm_query_session(f, s1, &si), 0);
    assert_int_equal(si.state, FSM_SESSION_ORPHANED);
    struct fsm_lease_info li;
    memset(&li, 0, sizeof(li));
    assert_int_equal(fsm_query_leases(f, "a", fsmtc_count_lease, &li), 0);
    assert_int_equal(li.expires_at, T0 + 10 + TTL); /* expiry counts now */

    /* The session on a down gateway cannot be established any more. */
    struct proto_cmd c;
    fsmt_env(&c, PROTO_CMD_SESSION_ESTABLISHED, "gw-1", T0 + 11, 0);
    c.u.session_established.session_id = s1;
    assert_int_equal(fsmt_apply(f, &c, &r), 0);
    fsmtc_refused(&r, PROTO_R_SESSION_ORPHANED);

    /* a reconnects to gw-2: takeover, same IP, old session named. */
    assert_int_equal(
        fsmt_open(f, "gw-2", "a", "p4", "p6", 1, EVICT, T0 + 20, &r), 0);
    fsmtc_ok(&r);
    assert_true(r.takeover);
    assert_int_equal(r.old_session_id, s1);
    assert_string_equal(r.old_gateway, "gw-1");
    assert_string_equal(r.ip4, ip4);
    assert_int_equal(r.nrefs, 0);
    assert_int_equal(fsm_query_session(f, s1, &si), -ENOENT);
    memset(&li, 0, sizeof(li));
    assert_int_equal(fsm_query_leases(f, "a", fsmtc_count_lease, &li), 0);
    assert_int_equal(li.expires_at, 0); /* live again */
    fsmtc_invariants(f);
    fsm_free(f);
}

static void test_fsm_orphan_expiry(void **state)
{
    (void)state;
    struct fsm *f = fsmtc_new();
    struct proto_result r;
    assert_int_equal(fsmt_heartbeat(f, "gw-1", T0, &r), 0);
    assert_int_equal(fsmt_heartbeat(f, "gw-2", T0, &r), 0);
    assert_int_equal(fsmt_pool(f, "p4", "100.64.0.0/30", TTL, T0, &r), 0);
    assert_int_equal(fsmt_pool(f, "p6", "fd00::/120", TTL, T0, &r), 0);
    assert_int_equal(fsmt_open(f, "gw-1", "a", "p4", "p6", 1, EVICT, T0, &r),
                     0);
    uint64_t s1 = r.session_id;
    assert_int_equal(fsmt_set_state(f, "gw-1", PROTO_GW_DOWN, T0, &r), 0);
    /* Orphaned but unexpired: b cannot have it. */
    assert_int_equal(fsmt_open(f, "gw-2", "b", "p4", "", 1, EVICT, T0 + 10, &r),
                     0);
    fsmtc_refused(&r, PROTO_R_POOL_EXHAUSTED);
    /* Expired: b gets it and the orphan is dropped (named EXPIRED). */
    assert_int_equal(
        fsmt_open(f, "gw-2", "b", "p4", "", 1, EVICT, T0 + TTL, &r), 0);
    fsmtc_ok(&r);
    assert_string_equal(r.ip4, "100.64.0.2");
    assert_int_equal(r.nrefs, 1);
    assert_int_equal(r.refs[0].kind, PROTO_REF_EXPIRED);
    assert_int_equal(r.refs[0].session_id, s1);
    struct fsm_session_info si;
    assert_int_equal(fsm_query_session(f, s1, &si), -ENOENT);
    /* a's IPv6 lease is idle now but keeps its orphan-time expiry. */
    struct fsm_lease_info li;
    memset(&li, 0, sizeof(li));
    assert_int_equal(fsm_query_leases(f, "a", fsmtc_count_lease, &li), 0);
    assert_string_equal(li.ip, "fd00::2");
    assert_int_equal(li.session_id, 0);
    assert_int_equal(li.expires_at, T0 + TTL);
    fsmtc_invariants(f);
    fsm_free(f);
}

static void test_fsm_concurrent_policy(void **state)
{
    (void)state;
    struct fsm *f = fsmtc_setup();
    struct proto_result r;

    uint64_t s1 = fsmtc_open(f, "gw-1", "a", T0, &r);
    char ip4[64];
    strcpy(ip4, r.ip4);

    /* refuse */
    assert_int_equal(fsmt_open(f, "gw-2", "a", "p4", "p6", 1,
                               PROTO_EXCESS_REFUSE, T0 + 1, &r),
                     0);
    fsmtc_refused(&r, PROTO_R_SESSION_LIMIT);

    /* max 2: a second session with its own address */
    assert_int_equal(fsmt_open(f, "gw-2", "a", "p4", "p6", 2,
                               PROTO_EXCESS_REFUSE, T0 + 2, &r),
                     0);
    fsmtc_ok(&r);
    uint64_t s2 = r.session_id;
    assert_string_not_equal(r.ip4, ip4);
    assert_int_equal(r.nrefs, 0);

    /* max 2 again, evict: the oldest (s1 on gw-1) goes, its IP moves. */
    assert_int_equal(
        fsmt_open(f, "gw-2", "a", "p4", "p6", 2, EVICT, T0 + 3, &r), 0);
    fsmtc_ok(&r);
    assert_false(r.takeover);
    assert_int_equal(r.nrefs, 1);
    assert_int_equal(r.refs[0].kind, PROTO_REF_EVICTED);
    assert_int_equal(r.refs[0].session_id, s1);
    assert_string_equal(r.refs[0].gateway, "gw-1");
    assert_string_equal(r.ip4, ip4);
    struct fsm_session_info si;
    assert_int_equal(fsm_query_session(f, s1, &si), -ENOENT);
    assert_int_equal(fsm_query_session(f, s2, &si), 0);
    fsmtc_invariants(f);
    fsm_free(f);
}

static void test_fsm_refusal_rolls_back(void **state)
{
    (void)state;
    struct fsm *f = fsmtc_new();
    struct proto_result r;
    assert_int_equal(fsmt_heartbeat(f, "gw-1", T0, &r), 0);
    assert_int_equal(fsmt_heartbeat(f, "gw-2", T0, &r), 0);
    assert_int_equal(fsmt_pool(f, "p4", "100.64.0.0/29", TTL, T0, &r), 0);
    assert_int_equal(fsmt_pool(f, "p6", "fd00::/126", TTL, T0, &r), 0);
    /* p6 holds one address; x takes it. */
    assert_int_equal(fsmt_open(f, "gw-1", "x", "", "p6", 1, EVICT, T0, &r), 0);
    fsmtc_ok(&r);
    assert_int_equal(fsmt_open(f, "gw-1", "a", "p4", "", 1, EVICT, T0, &r), 0);
    uint64_t s1 = r.session_id;
    uint8_t h1[FSM_HASH_LEN], h2[FSM_HASH_LEN];
    uint64_t seq1 = 0, seq2 = 0;
    uint8_t head[FSM_HASH_LEN];
    assert_int_equal(fsm_query_chain_head(f, &seq1, head), 0);
    /* Evicts s1, then finds p6 exhausted: everything is undone. */
    assert_int_equal(fsmt_open(f, "gw-2", "a", "p4", "p6", 1, EVICT, T0, &r),
                     0);
    fsmtc_refused(&r, PROTO_R_POOL_EXHAUSTED);
    assert_int_equal(r.nrefs, 0); /* names nothing it did not do */
    assert_false(r.takeover);
    struct fsm_session_info si;
    assert_int_equal(fsm_query_session(f, s1, &si), 0);
    assert_int_equal(fsm_query_chain_head(f, &seq2, head), 0);
    assert_int_equal(seq1, seq2);
    fsmtc_hash(f, h1);
    /* And the next session id was not consumed: both nodes agree anyway,
     * but a refused command leaves the counters alone. */
    assert_int_equal(fsmt_open(f, "gw-2", "b", "p4", "", 1, EVICT, T0, &r), 0);
    assert_int_equal(r.session_id, s1 + 1);
    fsmtc_hash(f, h2);
    assert_memory_not_equal(h1, h2, FSM_HASH_LEN);
    fsmtc_invariants(f);
    fsm_free(f);
}

static void test_fsm_session_refusals(void **state)
{
    (void)state;
    struct fsm *f = fsmtc_setup();
    struct proto_result r;
    uint64_t s1 = fsmtc_open(f, "gw-1", "a", T0, &r);

    assert_int_equal(fsmt_close(f, "gw-1", 999, T0, &r), 0);
    fsmtc_refused(&r, PROTO_R_UNKNOWN_SESSION);
    assert_int_equal(fsmt_close(f, "gw-2", s1, T0, &r), 0);
    fsmtc_refused(&r, PROTO_R_WRONG_GATEWAY);

    struct proto_cmd c;
    fsmt_env(&c, PROTO_CMD_SESSION_ESTABLISHED, "gw-2", T0 + 5, 0);
    c.u.session_established.session_id = s1;
    assert_int_equal(fsmt_apply(f, &c, &r), 0);
    fsmtc_refused(&r, PROTO_R_WRONG_GATEWAY);
    c.u.session_established.session_id = 12345;
    assert_int_equal(fsmt_apply(f, &c, &r), 0);
    fsmtc_refused(&r, PROTO_R_UNKNOWN_SESSION);
    fsmt_env(&c, PROTO_CMD_SESSION_ESTABLISHED, "gw-1", T0 + 5, 0);
    c.u.session_established.session_id = s1;
    assert_int_equal(fsmt_apply(f, &c, &r), 0);
    fsmtc_ok(&r);
    struct fsm_session_info si;
    assert_int_equal(fsm_query_session(f, s1, &si), 0);
    assert_int_equal(si.state, FSM_SESSION_ESTABLISHED);
    assert_int_equal(si.established, T0 + 5);

    /* An operator (actor set) may close a session from anywhere. */
    fsmt_env(&c, PROTO_CMD_SESSION_CLOSE, "gw-2", T0 + 6, 0);
    strcpy(c.actor, "admin");
    c.u.session_close.session_id = s1;
    assert_int_equal(fsmt_apply(f, &c, &r), 0);
    fsmtc_ok(&r);
    assert_int_equal(fsm_query_session(f, s1, &si), -ENOENT);
    fsm_free(f);
}

/* ---- usage and quotas ------------------------------------------------------
 */

static void test_fsm_usage_exactly_once(void **state)
{
    (void)state;
    struct fsm *f = fsmtc_setup();
    struct proto_result r;
    uint64_t sa = fsmtc_open(f, "gw-1", "a", T0, &r);
    uint64_t sb = fsmtc_open(f, "gw-1", "b", T0, &r);
    struct proto_usage_entry e[2] = { 0 };
    e[0].session_id = sa;
    strcpy(e[0].cn, "a");
    e[0].bytes_in = 100;
    e[0].bytes_out = 10;
    e[1].session_id = sb;
    strcpy(e[1].cn, "a"); /* names b's session: skipped */
    e[1].bytes_in = 7;

    assert_int_equal(fsmt_charge(f, "gw-1", 1, "2026-11", e, 2, T0, &r), 0);
    fsmtc_ok(&r);
    assert_false(r.duplicate);
    assert_int_equal(r.count, 1);
    struct fsm_usage_info u;
    assert_int_equal(fsm_query_usage(f, "a", "2026-11", &u), 0);
    assert_int_equal(u.bytes_in, 100);
    assert_int_equal(u.bytes_out, 10);

    /* Same seq again, and an older one: duplicates, nothing counted. */
    assert_int_equal(fsmt_charge(f, "gw-1", 1, "2026-11", e, 1, T0, &r), 0);
    fsmtc_ok(&r);
    assert_true(r.duplicate);
    assert_int_equal(fsmt_charge(f, "gw-1", 3, "2026-11", e, 1, T0, &r), 0);
    assert_false(r.duplicate);
    assert_int_equal(fsmt_charge(f, "gw-1", 2, "2026-11", e, 1, T0, &r), 0);
    assert_true(r.duplicate);
    assert_int_equal(fsm_query_usage(f, "a", "2026-11", &u), 0);
    assert_int_equal(u.bytes_in, 200);
    /* Per-gateway sequences are independent. */
    assert_int_equal(fsmt_charge(f, "gw-2", 1, "2026-11", e, 1, T0, &r), 0);
    assert_false(r.duplicate);
    /* A closed session's final bytes still count for its CN. */
    e[0].session_id = 777777;
    assert_int_equal(fsmt_charge(f, "gw-2", 2, "2026-11", e, 1, T0, &r), 0);
    assert_int_equal(r.count, 1);
    assert_int_equal(fsm_query_usage(f, "a", "2026-11", &u), 0);
    assert_int_equal(u.bytes_in, 400);

    assert_int_equal(fsmt_charge(f, "gw-9", 1, "2026-11", e, 1, T0, &r), 0);
    fsmtc_refused(&r, PROTO_R_UNKNOWN_GATEWAY);
    e[0].bytes_in = (1ULL << 48) + 1;
    assert_int_equal(fsmt_charge(f, "gw-1", 9, "2026-11", e, 1, T0, &r), 0);
    fsmtc_refused(&r, PROTO_R_INVALID);
    /* The refused batch did not consume seq 9. */
    e[0].bytes_in = 1;
    assert_int_equal(fsmt_charge(f, "gw-1", 9, "2026-11", e, 1, T0, &r), 0);
    assert_false(r.duplicate);
    fsm_free(f);
}

static void test_fsm_quota(void **state)
{
    (void)state;
    struct fsm *f = fsmtc_setup();
    struct proto_result r;
    struct proto_cmd c;
    fsmt_env(&c, PROTO_CMD_SESSION_OPEN, "gw-1", T0, 0);
    strcpy(c.u.session_open.cn, "a");
    strcpy(c.u.session_open.pool4, "p4");
    strcpy(c.u.session_open.period, "2026-11");
    c.u.session_open.quota_bytes = 1000;
    assert_int_equal(fsmt_apply(f, &c, &r), 0);
    fsmtc_ok(&r);
    uint64_t sa = r.session_id;

    struct proto_usage_entry e = { .session_id = sa, .bytes_in = 600 };
    strcpy(e.cn, "a");
    assert_int_equal(fsmt_charge(f, "gw-1", 1, "2026-11", &e, 1, T0, &r), 0);
    assert_int_equal(r.nrefs, 0);
    e.bytes_in = 300;
    e.bytes_out = 100;
    assert_int_equal(fsmt_charge(f, "gw-1", 2, "2026-11", &e, 1, T0, &r), 0);
    assert_int_equal(r.nrefs, 1);
    assert_int_equal(r.refs[0].kind, PROTO_REF_OVER_QUOTA);
    assert_int_equal(r.refs[0].session_id, sa);
    assert_string_equal(r.refs[0].gateway, "gw-1");
    /* Other periods are unaffected. */
    assert_int_equal(fsmt_charge(f, "gw-1", 3, "2026-12", &e, 1, T0, &r), 0);
    assert_int_equal(r.nrefs, 0);

    struct fsm_usage_info u;
    assert_int_equal(fsm_query_usage(f, "a", "2026-11", &u), 0);
    assert_int_equal(u.quota_bytes, 1000);
    /* A new session in the exhausted period is refused (quota remembered
     * even when the command does not repeat it). */
    c.u.session_open.quota_bytes = 0;
    c.ts_ms = T0 + 1;
    assert_int_equal(fsmt_apply(f, &c, &r), 0);
    fsmtc_refused(&r, PROTO_R_QUOTA_EXCEEDED);
    assert_false(r.over_quota);
    /* With quota_admit (the throttle action) it is admitted, flagged. */
    c.u.session_open.quota_admit = true;
    c.ts_ms = T0 + 2;
    assert_int_equal(fsmt_apply(f, &c, &r), 0);
    fsmtc_ok(&r);
    assert_true(r.over_quota);
    assert_true(r.session_id != 0);
    fsm_free(f);
}

/* ---- operator commands ------------------------------------------------------
 */

static int fsmtc_lease_cmd(struct fsm *f,
                           enum proto_cmd_kind kind,
                           const char *cn,
                           const char *ip,
                           uint64_t ts,
                           struct proto_result *r)
{
    struct proto_cmd c;
    fsmt_env(&c, kind, "gw-1", ts, 0);
    strcpy(c.actor, "admin");
    strcpy(c.u.lease_reserve.cn, cn);
    strcpy(c.u.lease_reserve.ip, ip);
    return fsmt_apply(f, &c, r);
}

static void test_fsm_lease_reserve_release(void **state)
{
    (void)state;
    struct fsm *f = fsmtc_setup();
    struct proto_result r;
    struct fsm_lease_info li;

    assert_int_equal(
        fsmtc_lease_cmd(f, PROTO_CMD_LEASE_RESERVE, "a", "bad", T0, &r), 0);
    fsmtc_refused(&r, PROTO_R_INVALID);
    assert_int_equal(
        fsmtc_lease_cmd(f, PROTO_CMD_LEASE_RESERVE, "a", "100.65.0.1", T0, &r),
        0);
    fsmtc_refused(&r, PROTO_R_IP_NOT_IN_POOL);
    assert_int_equal(
        fsmtc_lease_cmd(f, PROTO_CMD_LEASE_RESERVE, "a", "100.64.0.1", T0, &r),
        0);
    fsmtc_refused(&r, PROTO_R_IP_NOT_IN_POOL); /* gateway's own address */

    assert_int_equal(
        fsmtc_lease_cmd(f, PROTO_CMD_LEASE_RESERVE, "a", "100.64.0.2", T0, &r),
        0);
    fsmtc_ok(&r);
    assert_int_equal(
        fsmtc_lease_cmd(f, PROTO_CMD_LEASE_RESERVE, "b", "100.64.0.2", T0, &r),
        0);
    fsmtc_refused(&r, PROTO_R_IP_TAKEN);
    /* b's allocation skips the reserved address. */
    fsmtc_open(f, "gw-1", "b", T0, &r);
    assert_string_equal(r.ip4, "100.64.0.3");
    fsmtc_open(f, "gw-1", "a", T0, &r);
    assert_string_equal(r.ip4, "100.64.0.2");
    uint64_t sa = r.session_id;

    /* Release: wrong CN, in use, then fine after close. */
    assert_int_equal(
        fsmtc_lease_cmd(f, PROTO_CMD_LEASE_RELEASE, "b", "100.64.0.2", T0, &r),
        0);
    fsmtc_refused(&r, PROTO_R_NOT_FOUND);
    assert_int_equal(
        fsmtc_lease_cmd(f, PROTO_CMD_LEASE_RELEASE, "a", "100.64.0.2", T0, &r),
        0);
    fsmtc_refused(&r, PROTO_R_IN_USE);
    assert_int_equal(
        fsmtc_lease_cmd(f, PROTO_CMD_LEASE_RELEASE, "a", "x", T0, &r), 0);
    fsmtc_refused(&r, PROTO_R_INVALID);
    assert_int_equal(fsmt_close(f, "gw-1", sa, T0, &r), 0);
    /* A reserved lease never expires. */
    memset(&li, 0, sizeof(li));
    assert_int_equal(fsm_query_leases(f, "a", fsmtc_count_lease, &li), 0);
    assert_true(li.reserved);
    assert_int_equal(fsmtc_lease_cmd(f, PROTO_CMD_LEASE_RESERVE, "c",
                                     "100.64.0.2", T0 + 100 * TTL, &r),
                     0);
    fsmtc_refused(&r, PROTO_R_IP_TAKEN);
    assert_int_equal(
        fsmtc_lease_cmd(f, PROTO_CMD_LEASE_RELEASE, "a", "100.64.0.2", T0, &r),
        0);
    fsmtc_ok(&r);
    memset(&li, 0, sizeof(li));
    assert_int_equal(fsm_query_leases(f, "a", fsmtc_count_lease, &li), 0);
    assert_string_equal(li.ip, "fd00:100::3"); /* only the v6 lease left */

    /* Reserving an expired dynamic lease of another CN takes it over. */
    assert_int_equal(fsmtc_lease_cmd(f, PROTO_CMD_LEASE_RESERVE, "c",
                                     "fd00:100::3", T0 + 100 * TTL, &r),
                     0);
    fsmtc_ok(&r);
    fsmtc_invariants(f);
    fsm_free(f);
}

/* Collects up to four pools; stops the walk with 7 when asked to. */
struct fsmtc_pools {
    struct fsm_pool_info v[4];
    size_t n;
    size_t stop_after; /* 0 = never */
};

static int fsmtc_pool_cb(const struct fsm_pool_info *p, void *data)
{
    struct fsmtc_pools *ps = data;
    assert_true(ps->n < 4);
    ps->v[ps->n++] = *p;
    return ps->stop_after != 0 && ps->n == ps->stop_after ? 7 : 0;
}

static void test_fsm_query_pools(void **state)
{
    (void)state;
    struct fsm *f = fsmtc_new();
    struct proto_result r;
    struct fsmtc_pools ps = { 0 };

    assert_int_equal(fsm_query_pools(f, fsmtc_pool_cb, &ps), 0);
    assert_int_equal(ps.n, 0);
    fsm_free(f);

    f = fsmtc_setup();
    /* ttl 0 means the default; a refused put adds nothing. */
    assert_int_equal(fsmt_pool(f, "big", "100.64.16.0/20", 0, T0, &r), 0);
    fsmtc_ok(&r);
    assert_int_equal(fsmt_pool(f, "bad", "100.64.16.0/24", 0, T0, &r), 0);
    fsmtc_refused(&r, PROTO_R_OVERLAP);
    fsmtc_open(f, "gw-1", "a", T0, &r);
    assert_int_equal(
        fsmtc_lease_cmd(f, PROTO_CMD_LEASE_RESERVE, "b", "100.64.0.5", T0, &r),
        0);
    fsmtc_ok(&r);

    assert_int_equal(fsm_query_pools(f, fsmtc_pool_cb, &ps), 0);
    assert_int_equal(ps.n, 3);
    /* By name: big, p4, p6. */
    assert_string_equal(ps.v[0].name, "big");
    assert_string_equal(ps.v[0].cidr, "100.64.16.0/20");
    assert_int_equal(ps.v[0].family, 4);
    assert_int_equal(ps.v[0].lease_ttl_ms, FSM_DEFAULT_LEASE_TTL_MS);
    assert_int_equal(ps.v[0].size, 4096 - 3);
    assert_int_equal(ps.v[0].leases, 0);
    assert_string_equal(ps.v[1].name, "p4");
    assert_string_equal(ps.v[1].cidr, "100.64.0.0/29");
    assert_int_equal(ps.v[1].family, 4);
    assert_int_equal(ps.v[1].lease_ttl_ms, TTL);
    assert_int_equal(ps.v[1].size, 5);
    assert_int_equal(ps.v[1].leases, 2); /* a's live one, b's reserved one */
    assert_string_equal(ps.v[2].name, "p6");
    assert_string_equal(ps.v[2].cidr, "fd00:100::/120");
    assert_int_equal(ps.v[2].family, 6);
    assert_int_equal(ps.v[2].size, 253);
    assert_int_equal(ps.v[2].leases, 1);

    /* A non-zero return from the callback stops the walk and comes back. */
    memset(&ps, 0, sizeof(ps));
    ps.stop_after = 2;
    assert_int_equal(fsm_query_pools(f, fsmtc_pool_cb, &ps), 7);
    assert_int_equal(ps.n, 2);

    /* The query is read-only: the state hash does not move. */
    uint8_t h1[FSM_HASH_LEN], h2[FSM_HASH_LEN];
    fsmtc_hash(f, h1);
    memset(&ps, 0, sizeof(ps));
    assert_int_equal(fsm_query_pools(f, fsmtc_pool_cb, &ps), 0);
    fsmtc_hash(f, h2);
    assert_memory_equal(h1, h2, FSM_HASH_LEN);
    fsm_free(f);
}

static void test_fsm_policy(void **state)
{
    (void)state;
    struct fsm *f = fsmtc_setup();
    struct proto_result r;
    struct proto_cmd c;
    char body[] = "{\"allow\":[\"100.64.0.0/10\"]}";

    fsmt_env(&c, PROTO_CMD_POLICY_PUT, "gw-1", T0, 0);
    strcpy(c.actor, "admin");
    strcpy(c.u.policy_put.name, "base");
    c.u.policy_put.body = body;
    assert_int_equal(fsmt_apply(f, &c, &r), 0);
    fsmtc_ok(&r);
    char *got = NULL;
    assert_int_equal(fsm_query_policy(f, "base", &got), 0);
    assert_string_equal(got, body);
    ovha_free(got);

    fsmt_env(&c, PROTO_CMD_POLICY_DELETE, "gw-1", T0, 0);
    strcpy(c.u.policy_delete.name, "base");
    assert_int_equal(fsmt_apply(f, &c, &r), 0);
    fsmtc_ok(&r);
    assert_int_equal(fsm_query_policy(f, "base", &got), -ENOENT);
    assert_int_equal(fsmt_apply(f, &c, &r), 0);
    fsmtc_refused(&r, PROTO_R_NOT_FOUND);
    fsm_free(f);
}

static int fsmtc_mac(struct fsm *f,
                     const char *gw,
                     uint64_t sid,
                     const char *mac,
                     struct proto_result *r)
{
    struct proto_cmd c;
    fsmt_env(&c, PROTO_CMD_MAC_REGISTER, gw, T0 + 5, 0);
    c.u.mac_register.session_id = sid;
    ovha_strlcpy(c.u.mac_register.mac, mac, sizeof(c.u.mac_register.mac));
    return fsmt_apply(f, &c, r);
}

/* The MAC map as "mac=cn/session@gw;..." for compact assertions. */
static int fsmtc_mac_row(const struct fsm_mac_info *m, void *data)
{
    char *out = data;
    size_t len = strlen(out);
    snprintf(out + len, 512 - len, "%s=%s/%" PRIu64 "@%s;", m->mac, m->cn,
             m->session_id, m->gateway);
    return 0;
}

static const char *fsmtc_macs(struct fsm *f, char *buf)
{
    buf[0] = '\0';
    assert_int_equal(fsm_query_macs(f, fsmtc_mac_row, buf), 0);
    return buf;
}

static void test_fsm_macs(void **state)
{
    (void)state;
    struct fsm *f = fsmtc_setup();
    struct proto_result r;
    char got[512], want[512];
    uint64_t sa = fsmtc_open(f, "gw-1", "a", T0, &r);
    uint64_t sb = fsmtc_open(f, "gw-1", "b", T0, &r);

    assert_int_equal(fsmtc_mac(f, "gw-1", sa, "02:00:00:00:00:0a", &r), 0);
    fsmtc_ok(&r);
    uint64_t seq = r.audit_seq;
    assert_int_equal(fsmtc_mac(f, "gw-1", sa, "02:00:00:00:00:0a", &r), 0);
    fsmtc_ok(&r);
    assert_int_equal(r.audit_seq, 0); /* again: no change, no record */
    assert_true(seq > 0);
    /* b cannot take a's MAC; bad forms and group addresses are refused. */
    assert_int_equal(fsmtc_mac(f, "gw-1", sb, "02:00:00:00:00:0a", &r), 0);
    fsmtc_refused(&r, PROTO_R_IN_USE);
    const char *bad[] = { "02:00:00:00:00:0A", "02-00-00-00-00-0b",
                          "01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff",
                          "00:00:00:00:00:00", "02:00:00:00:00:0",
                          "02:00:00:00:00:0g", "" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(fsmtc_mac(f, "gw-1", sb, bad[i], &r), 0);
        assert_int_equal(r.status, PROTO_STATUS_REFUSED);
    }
    /* Only the session's own gateway registers for it. */
    assert_int_equal(fsmtc_mac(f, "gw-2", sb, "02:00:00:00:00:0b", &r), 0);
    fsmtc_refused(&r, PROTO_R_WRONG_GATEWAY);
    assert_int_equal(fsmtc_mac(f, "gw-1", 999, "02:00:00:00:00:0b", &r), 0);
    fsmtc_refused(&r, PROTO_R_UNKNOWN_SESSION);
    /* A cap per session. */
    for (int i = 0; i < FSM_MACS_PER_SESSION; i++) {
        char mac[18];
        snprintf(mac, sizeof(mac), "06:00:00:00:01:%02x", i);
        assert_int_equal(fsmtc_mac(f, "gw-1", sb, mac, &r), 0);
        fsmtc_ok(&r);
    }
    assert_int_equal(fsmtc_mac(f, "gw-1", sb, "06:00:00:00:02:00", &r), 0);
    fsmtc_refused(&r, PROTO_R_TOO_MANY);
    /* b's session closes: its MACs go. */
    assert_int_equal(fsmt_close(f, "gw-1", sb, T0 + 6, &r), 0);
    fsmtc_ok(&r);
    snprintf(want, sizeof(want), "02:00:00:00:00:0a=a/%" PRIu64 "@gw-1;", sa);
    assert_string_equal(fsmtc_macs(f, got), want);

    /* gw-1 goes down; a reconnects on gw-2 (takeover): its MAC follows the
     * new session to gw-2 before openvpn there learns it. */
    assert_int_equal(fsmt_set_state(f, "gw-1", PROTO_GW_DOWN, T0 + 10, &r), 0);
    assert_int_equal(fsmtc_mac(f, "gw-1", sa, "02:00:00:00:00:0c", &r), 0);
    assert_int_equal(r.status, PROTO_STATUS_REFUSED);
    assert_int_equal(
        fsmt_open(f, "gw-2", "a", "p4", "p6", 1, EVICT, T0 + 20, &r), 0);
    fsmtc_ok(&r);
    assert_true(r.takeover);
    uint64_t sa2 = r.session_id;
    snprintf(want, sizeof(want), "02:00:00:00:00:0a=a/%" PRIu64 "@gw-2;", sa2);
    assert_string_equal(fsmtc_macs(f, got), want);
    /* a reconnects again on gw-2 (evicting its live session): same. */
    assert_int_equal(
        fsmt_open(f, "gw-2", "a", "p4", "p6", 1, EVICT, T0 + 30, &r), 0);
    fsmtc_ok(&r);
    uint64_t sa3 = r.session_id;
    snprintf(want, sizeof(want), "02:00:00:00:00:0a=a/%" PRIu64 "@gw-2;", sa3);
    assert_string_equal(fsmtc_macs(f, got), want);
    fsmtc_invariants(f);
    fsm_free(f);
}

/* A snapshot written before the MAC map and session groups existed
 * (schema version 1) restores: both are added and work. */
static void test_fsm_restore_v1(void **state)
{
    (void)state;
    struct fsm *f = fsmtc_setup();
    struct proto_result r;
    uint64_t sa = fsmtc_open(f, "gw-1", "a", T0, &r);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(fsm_snapshot(f, &buf, &len), 0);

    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    unsigned char *copy = sqlite3_malloc64(len);
    assert_non_null(copy);
    memcpy(copy, buf, len);
    fsm_snapshot_free(buf);
    assert_int_equal(
        sqlite3_deserialize(
            db, "main", copy, (sqlite3_int64)len, (sqlite3_int64)len,
            SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_RESIZEABLE),
        SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "DROP TABLE macs; DROP TABLE audit_base;"
                                  "ALTER TABLE sessions DROP COLUMN groups;"
                                  "PRAGMA user_version = 1;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_int64 v1len = 0;
    unsigned char *v1 = sqlite3_serialize(db, "main", &v1len, 0);
    assert_non_null(v1);
    sqlite3_close(db);

    struct fsm *g = fsmtc_new();
    assert_int_equal(fsm_restore(g, v1, (size_t)v1len), 0);
    sqlite3_free(v1);
    assert_int_equal(fsmtc_mac(g, "gw-1", sa, "02:00:00:00:00:0a", &r), 0);
    fsmtc_ok(&r);
    char got[512];
    assert_non_null(strstr(fsmtc_macs(g, got), "02:00:00:00:00:0a=a/"));
    /* Groups are kept with the session; malformed lists do not decode. */
    struct proto_cmd c;
    fsmt_env(&c, PROTO_CMD_SESSION_OPEN, "gw-2", T0 + 9, 0);
    strcpy(c.u.session_open.cn, "g");
    strcpy(c.u.session_open.pool4, "p4");
    strcpy(c.u.session_open.groups, "ops,staff-1");
    assert_int_equal(fsmt_apply(g, &c, &r), 0);
    fsmtc_ok(&r);
    struct fsm_session_info si;
    assert_int_equal(fsm_query_session(g, r.session_id, &si), 0);
    assert_string_equal(si.groups, "ops,staff-1");
    const char *bad[] = { ",ops", "ops,", "ops,,x", "o p", "a:b" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fsmt_env(&c, PROTO_CMD_SESSION_OPEN, "gw-2", T0 + 9, 0);
        strcpy(c.u.session_open.cn, "h");
        strcpy(c.u.session_open.pool4, "p4");
        strcpy(c.u.session_open.groups, bad[i]);
        assert_int_equal(fsmt_apply(g, &c, &r), 0);
        fsmtc_refused(&r, PROTO_R_MALFORMED);
    }
    fsm_free(g);
    fsm_free(f);
}

static int fsmtc_count_subnet(const struct fsm_subnet_info *s, void *data)
{
    (void)s;
    (*(int *)data)++;
    return 0;
}

static int fsmtc_subnet(struct fsm *f,
                        enum proto_cmd_kind kind,
                        const char *cidr,
                        const char *owner,
                        struct proto_result *r)
{
    struct proto_cmd c;
    fsmt_env(&c, kind, "gw-1", T0, 0);
    strcpy(c.u.subnet_register.cidr, cidr);
    strcpy(c.u.subnet_register.owner_cn, owner);
    return fsmt_apply(f, &c, r);
}

static void test_fsm_subnets(void **state)
{
    (void)state;
    struct fsm *f = fsmtc_setup();
    struct proto_result r;

    assert_int_equal(fsmtc_subnet(f, PROTO_CMD_SUBNET_REGISTER,
                                  "100.100.0.0/24", "site-a", &r),
                     0);
    fsmtc_ok(&r);
    /* The owner registering it again (a reconnect) is a no-op; another CN
     * is refused, even for the very same CIDR. */
    assert_int_equal(fsmtc_subnet(f, PROTO_CMD_SUBNET_REGISTER,
                                  "100.100.0.0/24", "site-a", &r),
                     0);
    fsmtc_ok(&r);
    assert_int_equal(fsmtc_subnet(f, PROTO_CMD_SUBNET_REGISTER,
                                  "100.100.0.0/24", "site-b", &r),
                     0);
    fsmtc_refused(&r, PROTO_R_OVERLAP);
    assert_int_equal(fsmtc_subnet(f, PROTO_CMD_SUBNET_REGISTER,
                                  "100.100.0.128/25", "site-b", &r),
                     0);
    fsmtc_refused(&r, PROTO_R_OVERLAP);
    assert_int_equal(fsmtc_subnet(f, PROTO_CMD_SUBNET_REGISTER, "100.64.0.0/28",
                                  "site-b", &r),
                     0);
    fsmtc_refused(&r, PROTO_R_OVERLAP); /* a VPN pool */
    assert_int_equal(fsmtc_subnet(f, PROTO_CMD_SUBNET_REGISTER,
                                  "100.100.1.1/24", "site-b", &r),
                     0);
    fsmtc_refused(&r, PROTO_R_INVALID);
    assert_int_equal(fsmtc_subnet(f, PROTO_CMD_SUBNET_REGISTER, "fd00:200::/64",
                                  "site-b", &r),
                     0);
    fsmtc_ok(&r);
    int n = 0;
    assert_int_equal(fsm_query_subnets(f, "site-a", fsmtc_count_subnet, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(
        fsmtc_subnet(f, PROTO_CMD_SUBNET_RELEASE, "100.100.0.0/24", "", &r), 0);
    fsmtc_ok(&r);
    assert_int_equal(
        fsmtc_subnet(f, PROTO_CMD_SUBNET_RELEASE, "100.100.0.0/24", "", &r), 0);
    fsmtc_refused(&r, PROTO_R_NOT_FOUND);
    n = 0;
    assert_int_equal(fsm_query_subnets(f, NULL, fsmtc_count_subnet, &n), 0);
    assert_int_equal(n, 1);
    fsm_free(f);
}

/* ---- audit chain
 * -------------------------------------------------------------- */

struct fsmtc_audit_seen {
    int n;
    char last_kind[64];
    char last_actor[64];
};

static int fsmtc_audit_cb(const struct fsm_audit_record *a, void *data)
{
    struct fsmtc_audit_seen *s = data;
    s->n++;
    strcpy(s->last_kind, a->kind);
    strcpy(s->last_actor, a->actor);
    return 0;
}

static void test_fsm_audit_chain(void **state)
{
    (void)state;
    struct fsm *f = fsmtc_setup();
    struct proto_result r;
    uint64_t sid = fsmtc_open(f, "gw-1", "a", T0, &r);
    assert_int_equal(fsmt_close(f, "gw-1", sid, T0 + 1, &r), 0);
    struct proto_cmd c;
    fsmt_env(&c, PROTO_CMD_AUDIT_APPEND, "gw-1", T0 + 2, 0);
    strcpy(c.actor, "alice");
    strcpy(c.u.audit_append.action, "kill");
    strcpy(c.u.audit_append.subject, "a");
    strcpy(c.u.audit_append.detail, "abuse");
    assert_int_equal(fsmt_apply(f, &c, &r), 0);
    fsmtc_ok(&r);
    uint64_t last = r.audit_seq;

    uint64_t bad = 99;
    assert_int_equal(fsm_audit_verify(f, &bad), 0);
    assert_int_equal(bad, 0);
    struct fsmtc_audit_seen seen = { 0 };
    assert_int_equal(fsm_query_audit(f, 1, fsmtc_audit_cb, &seen), 0);
    assert_int_equal((uint64_t)seen.n, last);
    assert_string_equal(seen.last_kind, "op:kill");
    assert_string_equal(seen.last_actor, "alice");
    uint64_t head_seq = 0;
    uint8_t head[FSM_HASH_LEN];
    assert_int_equal(fsm_query_chain_head(f, &head_seq, head), 0);
    assert_int_equal(head_seq, last);

    /* Tamper with record 3: it is named, not a later one. */
    assert_int_equal(
        fsm_debug_exec(f, "UPDATE audit SET detail = 'x' WHERE seq = 3"), 0);
    assert_int_equal(fsm_audit_verify(f, &bad), 0);
    assert_int_equal(bad, 3);
    fsm_free(f);

    /* A record cut off the end is noticed through the head. */
    f = fsmtc_setup();
    fsmtc_open(f, "gw-1", "a", T0, &r);
    last = r.audit_seq;
    char sql[80];
    snprintf(sql, sizeof(sql), "DELETE FROM audit WHERE seq = %lu",
             (unsigned long)last);
    assert_int_equal(fsm_debug_exec(f, sql), 0);
    assert_int_equal(fsm_audit_verify(f, &bad), 0);
    assert_int_equal(bad, last);
    fsm_free(f);

    /* A record removed from the middle is named. */
    f = fsmtc_setup();
    fsmtc_open(f, "gw-1", "a", T0, &r);
    assert_int_equal(fsm_debug_exec(f, "DELETE FROM audit WHERE seq = 2"), 0);
    assert_int_equal(fsm_audit_verify(f, &bad), 0);
    assert_int_equal(bad, 2);
    fsm_free(f);
}

/* The state keeps the newest audit_keep records; the chain still verifies
 * from the base, the same on every replica, and across a snapshot. */
static void test_fsm_audit_pruned(void **state)
{
    (void)state;
    struct fsm_config cfg = { .audit_keep = 8 };
    struct fsm *f[2] = { NULL, NULL };
    struct proto_result r;
    struct proto_cmd c;
    for (int k = 0; k < 2; k++) {
        assert_int_equal(fsm_new(&cfg, &f[k]), 0);
        for (int i = 0; i < 50; i++) {
            fsmt_env(&c, PROTO_CMD_AUDIT_APPEND, "gw-1", T0 + (uint64_t)i, 0);
            strcpy(c.u.audit_append.action, "note");
            snprintf(c.u.audit_append.detail, sizeof(c.u.audit_append.detail),
                     "n=%d", i);
            assert_int_equal(fsmt_apply(f[k], &c, &r), 0);
            fsmtc_ok(&r);
        }
    }
    uint64_t base = 0, bad = 99, head_seq = 0;
    uint8_t hash[FSM_HASH_LEN], head[FSM_HASH_LEN];
    assert_int_equal(fsm_query_audit_base(f[0], &base, hash), 0);
    assert_int_equal(fsm_query_chain_head(f[0], &head_seq, head), 0);
    assert_int_equal(head_seq, 50);
    assert_true(base > 0);
    assert_true(head_seq - base >= 8 && head_seq - base <= 9);
    struct fsmtc_audit_seen seen = { 0 };
    assert_int_equal(fsm_query_audit(f[0], 1, fsmtc_audit_cb, &seen), 0);
    assert_int_equal((uint64_t)seen.n, head_seq - base);
    assert_int_equal(fsm_audit_verify(f[0], &bad), 0);
    assert_int_equal(bad, 0);
    uint8_t h0[FSM_HASH_LEN], h1[FSM_HASH_LEN];
    fsmtc_hash(f[0], h0);
    fsmtc_hash(f[1], h1);
    assert_memory_equal(h0, h1, FSM_HASH_LEN);

    /* A snapshot carries the base; the restored chain verifies. */
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(fsm_snapshot(f[0], &buf, &len), 0);
    assert_int_equal(fsm_restore(f[1], buf, len), 0);
    fsm_snapshot_free(buf);
    assert_int_equal(fsm_audit_verify(f[1], &bad), 0);
    assert_int_equal(bad, 0);
    /* Tampering with the base (or a kept record) is named. */
    char sql[96];
    snprintf(sql, sizeof(sql), "UPDATE audit SET detail = 'x' WHERE seq = %lu",
             (unsigned long)(base + 1));
    assert_int_equal(fsm_debug_exec(f[0], sql), 0);
    assert_int_equal(fsm_audit_verify(f[0], &bad), 0);
    assert_int_equal(bad, base + 1);
    assert_int_equal(
        fsm_debug_exec(f[1], "UPDATE audit_base SET hash = zeroblob(32)"), 0);
    assert_int_equal(fsm_audit_verify(f[1], &bad), 0);
    assert_int_equal(bad, base + 1);
    fsm_free(f[0]);
    fsm_free(f[1]);
}

/* ---- idempotence ------------------------------------------------------------
 */

static void test_fsm_idempotence(void **state)
{
    (void)state;
    struct fsm_config cfg = { .req_window = 3 };
    struct fsm *f = NULL;
    assert_int_equal(fsm_new(&cfg, &f), 0);
    struct proto_result r, r2;
    assert_int_equal(fsmt_heartbeat(f, "gw-1", T0, &r), 0);
    assert_int_equal(fsmt_pool(f, "p4", "100.64.0.0/24", TTL, T0, &r), 0);

    struct proto_cmd c;
    fsmt_env(&c, PROTO_CMD_SESSION_OPEN, "gw-1", T0, 1001);
    strcpy(c.u.session_open.cn, "a");
    strcpy(c.u.session_open.pool4, "p4");
    c.u.session_open.max_sessions = 10;
    assert_int_equal(fsmt_apply(f, &c, &r), 0);
    fsmtc_ok(&r);
    assert_false(r.replayed);
    uint8_t h1[FSM_HASH_LEN], h2[FSM_HASH_LEN];
    fsmtc_hash(f, h1);
    assert_int_equal(fsmt_apply(f, &c, &r2), 0);
    assert_true(r2.replayed);
    assert_int_equal(r2.session_id, r.session_id);
    assert_string_equal(r2.ip4, r.ip4);
    assert_int_equal(r2.audit_seq, r.audit_seq);
    fsmtc_hash(f, h2);
    assert_memory_equal(h1, h2, FSM_HASH_LEN);

    /* A refusal is remembered too. */
    struct proto_cmd d;
    fsmt_env(&d, PROTO_CMD_SESSION_CLOSE, "gw-1", T0, 2002);
    d.u.session_close.session_id = 4242;
    assert_int_equal(fsmt_apply(f, &d, &r2), 0);
    fsmtc_refused(&r2, PROTO_R_UNKNOWN_SESSION);
    assert_int_equal(fsmt_apply(f, &d, &r2), 0);
    assert_true(r2.replayed);
    fsmtc_refused(&r2, PROTO_R_UNKNOWN_SESSION);

    /* Three more req_ids push 1001 out of the window: it applies anew. */
    for (uint64_t id = 3003; id < 3006; id++) {
        fsmt_env(&d, PROTO_CMD_GATEWAY_HEARTBEAT, "gw-1", T0, id);
        assert_int_equal(fsmt_apply(f, &d, &r2), 0);
    }
    assert_int_equal(fsmt_apply(f, &c, &r2), 0);
    assert_false(r2.replayed);
    assert_int_not_equal(r2.session_id, r.session_id);
    fsm_free(f);
}

/* ---- snapshots --------------------------------------------------------------
 */

static void test_fsm_snapshot_restore(void **state)
{
    (void)state;
    struct fsm *f = fsmtc_setup();
    struct proto_result r;
    for (int i = 0; i < 4; i++) {
        char cn[8];
        snprintf(cn, sizeof(cn), "c%d", i);
        fsmtc_open(f, "gw-1", cn, T0 + (uint64_t)i, &r);
    }
    uint8_t *snap = NULL;
    size_t len = 0;
    assert_int_equal(fsm_snapshot(f, &snap, &len), 0);
    assert_true(len > 0);

    struct fsm *g = fsmtc_new();
    assert_int_equal(fsm_restore(g, snap, len), 0);
    uint8_t h1[FSM_HASH_LEN], h2[FSM_HASH_LEN];
    fsmtc_hash(f, h1);
    fsmtc_hash(g, h2);
    assert_memory_equal(h1, h2, FSM_HASH_LEN);
    assert_int_equal(fsm_clock(g), fsm_clock(f));

    /* Both continue identically. */
    struct proto_result rf, rg;
    fsmtc_open(f, "gw-2", "z", T0 + 9, &rf);
    fsmtc_open(g, "gw-2", "z", T0 + 9, &rg);
    assert_int_equal(rf.session_id, rg.session_id);
    assert_string_equal(rf.ip4, rg.ip4);
    fsmtc_hash(f, h1);
    fsmtc_hash(g, h2);
    assert_memory_equal(h1, h2, FSM_HASH_LEN);
    uint64_t bad = 1;
    assert_int_equal(fsm_audit_verify(g, &bad), 0);
    assert_int_equal(bad, 0);

    /* Garbage leaves the old state alone. */
    uint8_t junk[512];
    memset(junk, 0x5a, sizeof(junk));
    assert_int_equal(fsm_restore(g, junk, sizeof(junk)), -EINVAL);
    fsmtc_hash(g, h2);
    assert_memory_equal(h1, h2, FSM_HASH_LEN);
    fsm_snapshot_free(snap);
    fsm_free(f);
    fsm_free(g);
}

static void test_fsm_oom_is_local(void **state)
{
    (void)state;
    struct fsm *f = fsmtc_setup();
    struct proto_result r;
    uint8_t h1[FSM_HASH_LEN], h2[FSM_HASH_LEN];
    struct proto_cmd c;
    fsmt_env(&c, PROTO_CMD_SESSION_OPEN, "gw-1", T0, 77);
    strcpy(c.u.session_open.cn, "a");
    strcpy(c.u.session_open.pool4, "p4");
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(fsmt_encode(&c, &buf, &len), 0);
    fsmtc_hash(f, h1);
    /* Decoding allocates through ovha_malloc: a failure there is -ENOMEM,
     * never a "malformed" refusal, and leaves the state alone. */
    ovha_alloc_fail_after(0);
    int rv = fsm_apply(f, buf, len, &r);
    ovha_alloc_fail_after(-1);
    assert_int_equal(rv, -ENOMEM);
    fsmtc_hash(f, h2);
    assert_memory_equal(h1, h2, FSM_HASH_LEN);
    assert_int_equal(fsm_apply(f, buf, len, &r), 0);
    fsmtc_ok(&r);
    ovha_free(buf);
    fsm_free(f);
}

int fsm_test_commands(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fsm_malformed),
        cmocka_unit_test(test_fsm_clock_is_max),
        cmocka_unit_test(test_fsm_gateway_states),
        cmocka_unit_test(test_fsm_drain_last_active),
        cmocka_unit_test(test_fsm_next_session_id),
        cmocka_unit_test(test_fsm_pool_put),
        cmocka_unit_test(test_fsm_open_allocates),
        cmocka_unit_test(test_fsm_sticky_and_expiry),
        cmocka_unit_test(test_fsm_takeover),
        cmocka_unit_test(test_fsm_macs),
        cmocka_unit_test(test_fsm_restore_v1),
        cmocka_unit_test(test_fsm_orphan_expiry),
        cmocka_unit_test(test_fsm_concurrent_policy),
        cmocka_unit_test(test_fsm_refusal_rolls_back),
        cmocka_unit_test(test_fsm_session_refusals),
        cmocka_unit_test(test_fsm_usage_exactly_once),
        cmocka_unit_test(test_fsm_quota),
        cmocka_unit_test(test_fsm_lease_reserve_release),
        cmocka_unit_test(test_fsm_query_pools),
        cmocka_unit_test(test_fsm_policy),
        cmocka_unit_test(test_fsm_subnets),
        cmocka_unit_test(test_fsm_audit_chain),
        cmocka_unit_test(test_fsm_audit_pruned),
        cmocka_unit_test(test_fsm_idempotence),
        cmocka_unit_test(test_fsm_snapshot_restore),
        cmocka_unit_test(test_fsm_oom_is_local),
    };
    return cmocka_run_group_tests_name("fsm_commands", tests, NULL, NULL);
}
