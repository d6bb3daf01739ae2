/* Local policy decisions: rules, groups, defaults, sticky pool. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base/base.h"
#include "node/config.h"
#include "node/decide.h"
#include "node_tests.h"

static const char *node_test_policy_yaml =
    "node:\n"
    "  id: gw1\n"
    "  state_dir: /tmp/ovha-policy-test\n"
    "openvpn:\n"
    "  ca: /x/ca.crt\n"
    "  cert: /x/s.crt\n"
    "  key: /x/s.key\n"
    "  network: 100.64.0.0/24\n"
    "policy:\n"
    "  default: deny\n"
    "  default_reason: unknown client\n"
    "  pool: 100.64.0.252/30\n"
    "  groups:\n"
    "    - name: staff\n"
    "      routes: [100.64.200.0/24]\n"
    "      down_kbps: 2000\n"
    "      up_kbps: 500\n"
    "  clients:\n"
    "    - cn: alice\n"
    "      groups: [staff]\n"
    "      ip: 100.64.0.10\n"
    "      routes: [100.64.100.0/24]\n"
    "      iroutes: [100.96.1.0/24]\n"
    "      up_kbps: 1000\n"
    "      quota_bytes: 5000000\n"
    "    - cn: bob\n"
    "    - cn: carol\n"
    "    - cn: 'evil \"quoted\" name'\n"
    "    - cn: mallory\n"
    "      action: deny\n"
    "      reason: revoked\n"
    "      client_reason: Access denied\n";

struct node_test_policy_state {
    struct node_cfg *cfg;
    struct node_policy *p;
};

static int node_test_policy_setup(void **state)
{
    static struct node_test_policy_state st;
    char err[512];
    int rv = node_cfg_load_string("policy.yaml", node_test_policy_yaml, &st.cfg,
                                  err, sizeof(err));
    if (rv != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    if (node_policy_new(st.cfg, &st.p) != 0) {
        return -1;
    }
    *state = &st;
    return 0;
}

static int node_test_policy_teardown(void **state)
{
    struct node_test_policy_state *st = *state;
    node_policy_free(st->p);
    node_cfg_free(st->cfg);
    return 0;
}

static void node_test_decide(struct node_policy *p,
                             const char *cn,
                             struct node_decision *d)
{
    struct node_decision_req req = {
        .cid = 1, .kid = 1, .cn = cn, .username = "", .real_ip = ""
    };
    node_policy_decide(p, &req, d);
}

static void test_policy_static_ip_group_and_own_routes(void **state)
{
    struct node_test_policy_state *st = *state;
    struct node_decision d;
    node_test_decide(st->p, "alice", &d);
    assert_true(d.allow);
    assert_string_equal(d.ip, "100.64.0.10");
    assert_string_equal(d.netmask, "255.255.255.0");
    assert_int_equal(d.nroutes, 2);
    assert_string_equal(d.routes[0].addr, "100.64.200.0"); /* group first */
    assert_string_equal(d.routes[1].addr, "100.64.100.0");
    assert_int_equal(d.niroutes, 1);
    assert_string_equal(d.iroutes[0].addr, "100.96.1.0");
    assert_int_equal(d.iroutes[0].prefix, 24);
}

static void node_test_grant_cb(const struct node_grant *g, void *data)
{
    *(struct node_grant *)data = *g;
}

/* The rules source names the client's groups for the replicated session
 * (the firewall's membership); a CN without an entry has none. */
static void test_policy_grant_groups(void **state)
{
    struct node_test_policy_state *st = *state;
    struct node_rules rules;
    struct node_grant g;
    void *h = NULL;
    node_policy_rules(st->p, &rules);
    struct node_decision_req req = {
        .cid = 1, .kid = 1, .cn = "alice", .username = "", .real_ip = ""
    };
    assert_int_equal(
        rules.ops->lookup(rules.impl, &req, node_test_grant_cb, &g, &h), 0);
    assert_string_equal(g.groups, "staff");
    /* Limits: the group's, overridden by the CN's own. */
    assert_int_equal(g.down_kbps, 2000);
    assert_int_equal(g.up_kbps, 1000);
    assert_int_equal(g.quota_bytes, 5000000);
    assert_string_equal(g.quota_period, "month");
    req.cn = "bob";
    assert_int_equal(
        rules.ops->lookup(rules.impl, &req, node_test_grant_cb, &g, &h), 0);
    assert_string_equal(g.groups, "");
    assert_int_equal(g.down_kbps, 0);
    assert_int_equal(g.quota_bytes, 0);

    char names[3][64] = { "a", "b-1", "c.d" };
    node_grant_join_groups(&g, names, 3);
    assert_string_equal(g.groups, "a,b-1,c.d");
}

static void test_policy_deny_rule_and_default(void **state)
{
    struct node_test_policy_state *st = *state;
    struct node_decision d;
    node_test_decide(st->p, "mallory", &d);
    assert_false(d.allow);
    assert_string_equal(d.reason, "revoked");
    assert_string_equal(d.client_reason, "Access denied");
    node_test_decide(st->p, "stranger", &d);
    assert_false(d.allow);
    assert_string_equal(d.reason, "unknown client");
}

static void test_policy_pool_sticky_and_exhaustion(void **state)
{
    struct node_test_policy_state *st = *state;
    struct node_decider dec;
    struct node_rules rules;
    node_policy_rules(st->p, &rules);
    node_policy_decider(st->p, rules, &dec);
    struct node_decision d1, d2, d3;
    node_test_decide(st->p, "bob", &d1);
    node_test_decide(st->p, "carol", &d2);
    assert_true(d1.allow);
    assert_true(d2.allow);
    /* The /30 pool has exactly two hosts: .253 and .254. */
    assert_string_equal(d1.ip, "100.64.0.253");
    assert_string_equal(d2.ip, "100.64.0.254");
    node_test_decide(st->p, "bob", &d3); /* sticky */
    assert_string_equal(d3.ip, "100.64.0.253");
    /* Both leases idle: a third CN takes the lowest idle one. */
    node_test_decide(st->p, "evil \"quoted\" name", &d3);
    assert_true(d3.allow);
    assert_string_equal(d3.ip, "100.64.0.253");
}

/* 3000 clients and a pool as large: every CN is found through the CN
 * indexes (clients from the config, leases as they grow past several
 * index rebuilds), gets its own address, keeps it, and a CN that only
 * differs in its last byte is not confused with another. */
static void test_policy_many_clients_indexed(void **state)
{
    (void)state;
    enum { N = 3000 };
    struct ovha_buf y;
    ovha_buf_init(&y);
    assert_int_equal(ovha_buf_printf(&y,
                                     "node: {id: gw1, state_dir: /tmp/x}\n"
                                     "openvpn: {ca: /c, cert: /s, key: /k, "
                                     "network: 100.64.0.0/16}\n"
                                     "policy:\n  default: deny\n"
                                     "  pool: 100.64.16.0/20\n  clients:\n"),
                     0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(ovha_buf_printf(&y, "    - cn: user-%d\n", i), 0);
    }
    assert_int_equal(ovha_buf_printf(&y,
                                     "    - cn: fixed\n"
                                     "      ip: 100.64.1.7\n"),
                     0);
    assert_int_equal(ovha_buf_append(&y, "", 1), 0);
    struct node_cfg *cfg = NULL;
    struct node_policy *p = NULL;
    char err[512];
    assert_int_equal(
        node_cfg_load_string("many.yaml", y.data, &cfg, err, sizeof(err)), 0);
    ovha_buf_free(&y);
    assert_int_equal(node_policy_new(cfg, &p), 0);

    static char ips[N][64];
    struct node_decision d;
    for (int i = 0; i < N; i++) {
        char cn[32];
        snprintf(cn, sizeof(cn), "user-%d", i);
        node_test_decide(p, cn, &d);
        assert_true(d.allow);
        ovha_strlcpy(ips[i], d.ip, sizeof(ips[i]));
        for (int k = 0; k < i; k += 97) { /* sampled: unique addresses */
            assert_string_not_equal(ips[k], ips[i]);
        }
    }
    for (int i = N - 1; i >= 0; i--) {
        char cn[32];
        snprintf(cn, sizeof(cn), "user-%d", i);
        node_test_decide(p, cn, &d);
        assert_string_equal(d.ip, ips[i]);
    }
    node_test_decide(p, "fixed", &d);
    assert_true(d.allow);
    assert_string_equal(d.ip, "100.64.1.7");
    node_test_decide(p, "user-30000", &d);
    assert_false(d.allow);
    node_test_decide(p, "user-", &d);
    assert_false(d.allow);
    node_policy_free(p);
    node_cfg_free(cfg);
}

static void node_test_policy_cb(const struct node_decision *d, void *data)
{
    *(struct node_decision *)data = *d;
}

static void test_policy_live_leases_are_never_shared(void **state)
{
    struct node_test_policy_state *st = *state;
    struct node_decider dec;
    struct node_rules rules;
    node_policy_rules(st->p, &rules);
    node_policy_decider(st->p, rules, &dec);
    struct node_decision a, b, c;
    void *h;
    struct node_decision_req req = {
        .cid = 1, .kid = 1, .cn = "bob", .username = "", .real_ip = ""
    };
    dec.ops->decide(dec.impl, &req, node_test_policy_cb, &a, &h);
    req.cn = "carol";
    dec.ops->decide(dec.impl, &req, node_test_policy_cb, &b, &h);
    assert_true(a.allow);
    assert_true(b.allow);
    assert_string_not_equal(a.ip, b.ip);
    /* Both live and the pool is full: a third client is refused. */
    req.cn = "evil \"quoted\" name";
    dec.ops->decide(dec.impl, &req, node_test_policy_cb, &c, &h);
    assert_false(c.allow);
    assert_string_equal(c.reason, "address pool exhausted");
    /* bob leaves: his address may go to the newcomer. */
    dec.ops->session_closed(dec.impl, "bob", a.ip, 0);
    dec.ops->decide(dec.impl, &req, node_test_policy_cb, &c, &h);
    assert_true(c.allow);
    assert_string_equal(c.ip, a.ip);
}

/* A rules source that answers only when the test says so: the standalone
 * decider with an asynchronous source (the upstream tiers, in ovhad). */
struct node_test_async_rules {
    node_rules_cb cb;
    void *data;
    int lookups, cancels;
    int handle; /* its address is the handle */
};

static int node_test_async_lookup(void *impl,
                                  const struct node_decision_req *req,
                                  node_rules_cb cb,
                                  void *data,
                                  void **ret_handle)
{
    struct node_test_async_rules *ar = impl;
    (void)req;
    ar->cb = cb;
    ar->data = data;
    ar->lookups++;
    *ret_handle = &ar->handle;
    return 0;
}

static void node_test_async_cancel(void *impl, void *handle)
{
    struct node_test_async_rules *ar = impl;
    assert_ptr_equal(handle, &ar->handle);
    ar->cancels++;
    ar->cb = NULL;
}

static const struct node_rules_ops node_test_async_ops = {
    .lookup = node_test_async_lookup,
    .cancel = node_test_async_cancel,
};

static void node_test_async_answer(struct node_test_async_rules *ar,
                                   bool allow,
                                   const char *pool)
{
    struct node_grant g;
    memset(&g, 0, sizeof(g));
    g.d.allow = allow;
    ovha_strlcpy(g.d.netmask, "255.255.255.0", sizeof(g.d.netmask));
    ovha_strlcpy(g.pool, pool, sizeof(g.pool));
    if (!allow) {
        ovha_strlcpy(g.d.reason, "no", sizeof(g.d.reason));
    }
    g.source = "upstream";
    node_rules_cb cb = ar->cb;
    ar->cb = NULL;
    cb(&g, ar->data);
}

static void test_policy_async_rules_source(void **state)
{
    struct node_test_policy_state *st = *state;
    struct node_test_async_rules ar;
    memset(&ar, 0, sizeof(ar));
    struct node_rules rules = { .ops = &node_test_async_ops, .impl = &ar };
    struct node_decider dec;
    node_policy_decider(st->p, rules, &dec);
    struct node_decision d;
    memset(&d, 0, sizeof(d));
    void *h = NULL;
    struct node_decision_req req = {
        .cid = 1, .kid = 1, .cn = "anyone", .username = "", .real_ip = ""
    };
    /* Pending until the source answers; then a pool address is added. */
    assert_int_equal(
        dec.ops->decide(dec.impl, &req, node_test_policy_cb, &d, &h), 0);
    assert_non_null(h);
    assert_int_equal(ar.lookups, 1);
    assert_string_equal(d.ip, "");
    node_test_async_answer(&ar, true, "");
    assert_true(d.allow);
    assert_string_equal(d.ip, "100.64.0.253");
    assert_string_equal(d.source, "upstream");
    /* A named pool other than the default cannot be served standalone. */
    req.cn = "other";
    dec.ops->decide(dec.impl, &req, node_test_policy_cb, &d, &h);
    node_test_async_answer(&ar, true, "vip");
    assert_false(d.allow);
    assert_string_equal(d.reason, "upstream grant invalid: unknown pool");
    /* Cancelled before the answer: the source is told, no callback. */
    memset(&d, 0, sizeof(d));
    req.cn = "third";
    dec.ops->decide(dec.impl, &req, node_test_policy_cb, &d, &h);
    dec.ops->cancel(dec.impl, h);
    assert_int_equal(ar.cancels, 1);
    assert_null(ar.cb);
    assert_string_equal(d.ip, "");
    /* A deny passes through without touching the pool. */
    req.cn = "fourth";
    dec.ops->decide(dec.impl, &req, node_test_policy_cb, &d, &h);
    node_test_async_answer(&ar, false, "");
    assert_false(d.allow);
    assert_string_equal(d.reason, "no");
    assert_string_equal(d.ip, "");
}

int node_test_policy(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_policy_static_ip_group_and_own_routes, node_test_policy_setup,
            node_test_policy_teardown),
        cmocka_unit_test_setup_teardown(test_policy_deny_rule_and_default,
                                        node_test_policy_setup,
                                        node_test_policy_teardown),
        cmocka_unit_test_setup_teardown(test_policy_grant_groups,
                                        node_test_policy_setup,
                                        node_test_policy_teardown),
        cmocka_unit_test(test_policy_many_clients_indexed),
        cmocka_unit_test_setup_teardown(test_policy_pool_sticky_and_exhaustion,
                                        node_test_policy_setup,
                                        node_test_policy_teardown),
        cmocka_unit_test_setup_teardown(
            test_policy_live_leases_are_never_shared, node_test_policy_setup,
            node_test_policy_teardown),
        cmocka_unit_test_setup_teardown(test_policy_async_rules_source,
                                        node_test_policy_setup,
                                        node_test_policy_teardown),
    };
    return cmocka_run_group_tests_name("policy", tests, NULL, NULL);
}
