/* proto codec tests: round trips of every body, and the decoder's refusals. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/base.h"
#include "proto/proto.h"

static void test_proto_envelope(struct proto_cmd *c, enum proto_cmd_kind kind)
{
    memset(c, 0, sizeof(*c));
    c->version = PROTO_VERSION;
    c->req_id = 0xdeadbeefcafe;
    strcpy(c->gateway, "gw-1");
    c->ts_ms = 1790000000000ULL;
    strcpy(c->actor, "alice");
    c->kind = kind;
}

/* Encodes, decodes and compares the plain structs byte for byte (they are
 * zeroed first, so padding and unused array tails compare equal too). */
static void test_proto_roundtrip(const struct proto_cmd *c)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    struct proto_cmd d;

    assert_int_equal(proto_cmd_encode(c, &buf, &len), 0);
    assert_int_equal(proto_cmd_decode(buf, len, &d), 0);
    assert_int_equal(d.kind, c->kind);
    assert_int_equal(d.req_id, c->req_id);
    assert_string_equal(d.gateway, c->gateway);
    assert_string_equal(d.actor, c->actor);
    assert_int_equal(d.ts_ms, c->ts_ms);
    if (c->kind == PROTO_CMD_USAGE_CHARGE) {
        const struct proto_usage_charge *a = &c->u.usage_charge;
        const struct proto_usage_charge *b = &d.u.usage_charge;
        assert_int_equal(a->seq, b->seq);
        assert_string_equal(a->period, b->period);
        assert_int_equal(a->nentries, b->nentries);
        for (size_t i = 0; i < a->nentries; i++) {
            assert_memory_equal(&a->entries[i], &b->entries[i],
                                sizeof(a->entries[i]));
        }
    } else if (c->kind == PROTO_CMD_POLICY_PUT) {
        assert_string_equal(c->u.policy_put.name, d.u.policy_put.name);
        assert_string_equal(c->u.policy_put.body, d.u.policy_put.body);
    } else {
        assert_memory_equal(&c->u, &d.u, sizeof(c->u));
    }
    proto_cmd_clear(&d);
    ovha_free(buf);
}

static void test_proto_all_bodies(void **state)
{
    (void)state;
    struct proto_cmd c;

    test_proto_envelope(&c, PROTO_CMD_SESSION_OPEN);
    strcpy(c.u.session_open.cn, "client-1");
    c.u.session_open.cid = 7;
    strcpy(c.u.session_open.real_addr, "198.18.0.9:1194");
    strcpy(c.u.session_open.pool4, "p4");
    strcpy(c.u.session_open.pool6, "p6");
    c.u.session_open.max_sessions = 2;
    c.u.session_open.on_excess = PROTO_EXCESS_REFUSE;
    strcpy(c.u.session_open.period, "2026-11");
    c.u.session_open.quota_bytes = 1000;
    test_proto_roundtrip(&c);

    test_proto_envelope(&c, PROTO_CMD_SESSION_ESTABLISHED);
    c.u.session_established.session_id = 42;
    test_proto_roundtrip(&c);

    test_proto_envelope(&c, PROTO_CMD_SESSION_CLOSE);
    c.u.session_close.session_id = 42;
    strcpy(c.u.session_close.reason, "client disconnected");
    test_proto_roundtrip(&c);

    struct proto_usage_entry ents[3] = { 0 };
    for (int i = 0; i < 3; i++) {
        ents[i].session_id = (uint64_t)i + 1;
        snprintf(ents[i].cn, sizeof(ents[i].cn), "cn-%d", i);
        ents[i].bytes_in = 100u * (unsigned)i;
        ents[i].bytes_out = UINT64_MAX - (unsigned)i;
    }
    test_proto_envelope(&c, PROTO_CMD_USAGE_CHARGE);
    c.u.usage_charge.seq = 9;
    strcpy(c.u.usage_charge.period, "2026-11");
    c.u.usage_charge.entries = ents;
    c.u.usage_charge.nentries = 3;
    test_proto_roundtrip(&c);

    test_proto_envelope(&c, PROTO_CMD_GATEWAY_HEARTBEAT);
    strcpy(c.u.gateway_heartbeat.addr, "198.18.0.1");
    test_proto_roundtrip(&c);

    test_proto_envelope(&c, PROTO_CMD_GATEWAY_SET_STATE);
    strcpy(c.u.gateway_set_state.gateway_id, "gw-2");
    c.u.gateway_set_state.state = PROTO_GW_DRAINING;
    test_proto_roundtrip(&c);

    test_proto_envelope(&c, PROTO_CMD_LEASE_RESERVE);
    strcpy(c.u.lease_reserve.cn, "c");
    strcpy(c.u.lease_reserve.ip, "100.64.0.9");
    test_proto_roundtrip(&c);

    test_proto_envelope(&c, PROTO_CMD_LEASE_RELEASE);
    strcpy(c.u.lease_release.cn, "c");
    strcpy(c.u.lease_release.ip, "100.64.0.9");
    test_proto_roundtrip(&c);

    test_proto_envelope(&c, PROTO_CMD_POOL_PUT);
    strcpy(c.u.pool_put.name, "p4");
    strcpy(c.u.pool_put.cidr, "100.64.0.0/24");
    c.u.pool_put.lease_ttl_ms = 60000;
    test_proto_roundtrip(&c);

    char body[] = "{\"rules\":[]}\n";
    test_proto_envelope(&c, PROTO_CMD_POLICY_PUT);
    strcpy(c.u.policy_put.name, "default");
    c.u.policy_put.body = body;
    test_proto_roundtrip(&c);

    test_proto_envelope(&c, PROTO_CMD_POLICY_DELETE);
    strcpy(c.u.policy_delete.name, "default");
    test_proto_roundtrip(&c);

    test_proto_envelope(&c, PROTO_CMD_SUBNET_REGISTER);
    strcpy(c.u.subnet_register.cidr, "100.100.0.0/24");
    strcpy(c.u.subnet_register.owner_cn, "site-a");
    test_proto_roundtrip(&c);

    test_proto_envelope(&c, PROTO_CMD_SUBNET_RELEASE);
    strcpy(c.u.subnet_release.cidr, "100.100.0.0/24");
    test_proto_roundtrip(&c);

    test_proto_envelope(&c, PROTO_CMD_AUDIT_APPEND);
    strcpy(c.u.audit_append.action, "kill");
    strcpy(c.u.audit_append.subject, "client-1");
    strcpy(c.u.audit_append.detail, "abuse report");
    test_proto_roundtrip(&c);

    test_proto_envelope(&c, PROTO_CMD_NONE);
    test_proto_roundtrip(&c);
}

/* Encodes c and expects the decoder to refuse it as malformed. */
static void test_proto_expect_malformed(const struct proto_cmd *c)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    struct proto_cmd d;

    assert_int_equal(proto_cmd_encode(c, &buf, &len), 0);
    assert_int_equal(proto_cmd_decode(buf, len, &d), OVHA_EPROTO);
    ovha_free(buf);
}

static void test_proto_refusals(void **state)
{
    (void)state;
    struct proto_cmd c;
    struct proto_cmd d;

    /* Garbage bytes. */
    const uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff, 0x0f };
    assert_int_equal(proto_cmd_decode(junk, sizeof(junk), &d), OVHA_EPROTO);
    assert_int_equal(proto_cmd_decode(NULL, 0, &d), OVHA_EPROTO);

    /* Control character in a CN (would inject into client-auth). */
    test_proto_envelope(&c, PROTO_CMD_SESSION_OPEN);
    strcpy(c.u.session_open.cn, "evil\nclient-deny");
    test_proto_expect_malformed(&c);

    /* Empty CN. */
    test_proto_envelope(&c, PROTO_CMD_SESSION_OPEN);
    test_proto_expect_malformed(&c);

    /* Gateway id with a space; empty gateway. */
    test_proto_envelope(&c, PROTO_CMD_GATEWAY_HEARTBEAT);
    strcpy(c.gateway, "gw 1");
    test_proto_expect_malformed(&c);
    c.gateway[0] = '\0';
    test_proto_expect_malformed(&c);

    /* Out-of-range enum. */
    test_proto_envelope(&c, PROTO_CMD_GATEWAY_SET_STATE);
    strcpy(c.u.gateway_set_state.gateway_id, "gw-2");
    c.u.gateway_set_state.state = (enum proto_gw_state)9;
    test_proto_expect_malformed(&c);

    /* Quota without a period. */
    test_proto_envelope(&c, PROTO_CMD_SESSION_OPEN);
    strcpy(c.u.session_open.cn, "x");
    c.u.session_open.quota_bytes = 5;
    test_proto_expect_malformed(&c);

    /* Usage charge without a period. */
    test_proto_envelope(&c, PROTO_CMD_USAGE_CHARGE);
    test_proto_expect_malformed(&c);

    /* Encoder refuses an unterminated array. */
    test_proto_envelope(&c, PROTO_CMD_SESSION_OPEN);
    memset(c.u.session_open.cn, 'a', sizeof(c.u.session_open.cn));
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(proto_cmd_encode(&c, &buf, &len), -EINVAL);
}

static void test_proto_oom(void **state)
{
    (void)state;
    struct proto_cmd c;
    struct proto_cmd d;
    uint8_t *buf = NULL;
    size_t len = 0;

    test_proto_envelope(&c, PROTO_CMD_AUDIT_APPEND);
    strcpy(c.u.audit_append.action, "kill");
    assert_int_equal(proto_cmd_encode(&c, &buf, &len), 0);
    /* Every allocation point fails in turn: never EPROTO, never a leak. */
    int oom = 0;
    for (long n = 0; n < 20; n++) {
        ovha_alloc_fail_after(n);
        int rv = proto_cmd_decode(buf, len, &d);
        ovha_alloc_fail_after(-1);
        if (rv == 0) {
            proto_cmd_clear(&d);
            break;
        }
        assert_int_equal(rv, -ENOMEM);
        oom++;
    }
    assert_true(oom > 0);
    ovha_free(buf);
}

static void test_proto_result_and_fwd(void **state)
{
    (void)state;
    struct proto_result r;
    memset(&r, 0, sizeof(r));
    r.status = PROTO_STATUS_REFUSED;
    r.reason = PROTO_R_SESSION_LIMIT;
    strcpy(r.detail, "2 live sessions");
    r.session_id = 5;
    strcpy(r.ip4, "100.64.0.2");
    r.takeover = true;
    r.old_session_id = 4;
    strcpy(r.old_gateway, "gw-3");
    r.nrefs = 2;
    r.refs_total = 3;
    r.refs[0].kind = PROTO_REF_EVICTED;
    r.refs[0].session_id = 1;
    strcpy(r.refs[0].cn, "a");
    strcpy(r.refs[0].gateway, "gw-1");
    r.refs[1].kind = PROTO_REF_OVER_QUOTA;
    r.refs[1].session_id = 2;

    uint8_t *buf = NULL;
    size_t len = 0;
    struct proto_result r2;
    assert_int_equal(proto_result_encode(&r, &buf, &len), 0);
    assert_int_equal(proto_result_decode(buf, len, &r2), 0);
    assert_memory_equal(&r, &r2, sizeof(r));
    ovha_free(buf);

    struct proto_fwd_req q = { .req_id = 77, .cmd_len = 3 };
    uint8_t cmd[3] = { 1, 2, 3 };
    q.cmd = cmd;
    strcpy(q.from, "gw-2");
    struct proto_fwd_req q2;
    assert_int_equal(proto_fwd_req_encode(&q, &buf, &len), 0);
    assert_int_equal(proto_fwd_req_decode(buf, len, &q2), 0);
    assert_int_equal(q2.req_id, 77);
    assert_string_equal(q2.from, "gw-2");
    assert_int_equal(q2.cmd_len, 3);
    assert_memory_equal(q2.cmd, cmd, 3);
    proto_fwd_req_clear(&q2);
    ovha_free(buf);

    struct proto_fwd_resp p;
    memset(&p, 0, sizeof(p));
    p.req_id = 77;
    p.status = OVHA_ENOTLEADER;
    strcpy(p.leader_hint, "198.18.0.2:7000");
    p.has_result = true;
    p.result = r;
    struct proto_fwd_resp p2;
    assert_int_equal(proto_fwd_resp_encode(&p, &buf, &len), 0);
    assert_int_equal(proto_fwd_resp_decode(buf, len, &p2), 0);
    assert_memory_equal(&p, &p2, sizeof(p));
    ovha_free(buf);
}

static void test_proto_names(void **state)
{
    (void)state;
    assert_string_equal(proto_cmd_kind_name(PROTO_CMD_SESSION_OPEN),
                        "session_open");
    assert_string_equal(proto_cmd_kind_name((enum proto_cmd_kind)99),
                        "unknown");
    assert_string_equal(proto_reason_name(PROTO_R_POOL_EXHAUSTED),
                        "pool_exhausted");
    for (int i = 0; i < PROTO_R_MAX; i++) {
        assert_non_null(proto_reason_name((enum proto_reason)i));
    }
    assert_true(proto_id_valid("gw-1.a:b_c"));
    assert_false(proto_id_valid(""));
    assert_false(proto_id_valid("a b"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proto_all_bodies),
        cmocka_unit_test(test_proto_refusals),
        cmocka_unit_test(test_proto_oom),
        cmocka_unit_test(test_proto_result_and_fwd),
        cmocka_unit_test(test_proto_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
