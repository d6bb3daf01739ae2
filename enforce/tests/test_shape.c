/* enforce/shape unit tests: validation and convergence on the fake
 * backend (an in-memory device with tc's semantics that matter). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "enforce/shape.h"
#include "enforce/shape_int.h"
#include "enforce/tests/tests.h"

static int enf_ts_setup(void **state)
{
    struct enf_shape_config cfg = { .backend = "fake", .dev = "tun0" };
    struct enf_shape *s = NULL;
    char err[256];
    assert_int_equal(enf_shape_new(&cfg, &s, err, sizeof(err)), 0);
    *state = s;
    return 0;
}

static int enf_ts_teardown(void **state)
{
    enf_shape_free(*state);
    return 0;
}

static struct enf_shape_client enf_ts_client(const char *ip,
                                             uint32_t down,
                                             uint32_t up)
{
    struct enf_shape_client c;
    memset(&c, 0, sizeof(c));
    ovha_strlcpy(c.ip, ip, sizeof(c.ip));
    c.down_kbit = down;
    c.up_kbit = up;
    return c;
}

static uint32_t enf_ts_ip(const char *s)
{
    struct in_addr a;
    assert_int_equal(inet_pton(AF_INET, s, &a), 1);
    return ntohl(a.s_addr);
}

static void enf_ts_apply_ok(struct enf_shape *s,
                            const struct enf_shape_client *c,
                            size_t n)
{
    char err[256];
    int rc = enf_shape_apply(s, c, n, err, sizeof(err));
    if (rc != 0) {
        fail_msg("apply: %d: %s", rc, err);
    }
}

static struct enf_shape_stats enf_ts_stats(struct enf_shape *s)
{
    struct enf_shape_stats st;
    enf_shape_get_stats(s, &st);
    return st;
}

static uint64_t enf_ts_requests(struct enf_shape *s)
{
    uint64_t c[ENF_SHAPE_NOPS];
    assert_int_equal(enf_shape_fake_counts(s, c), 0);
    uint64_t total = 0;
    for (int i = 0; i < ENF_SHAPE_NOPS; i++) {
        total += c[i];
    }
    return total;
}

static uint64_t enf_ts_count(struct enf_shape *s, enum enf_shape_op op)
{
    uint64_t c[ENF_SHAPE_NOPS];
    assert_int_equal(enf_shape_fake_counts(s, c), 0);
    return c[op];
}

/* The listed entry of ip; false if none. */
static bool enf_ts_find(struct enf_shape *s,
                        const char *ip,
                        struct enf_shape_entry *ret)
{
    struct enf_shape_entry *v = NULL;
    size_t n = 0;
    bool found = false;
    assert_int_equal(enf_shape_list(s, &v, &n), 0);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i].ip, ip) == 0) {
            *ret = v[i];
            found = true;
        }
    }
    free(v);
    return found;
}

static size_t enf_ts_nlisted(struct enf_shape *s)
{
    struct enf_shape_entry *v = NULL;
    size_t n = 0;
    assert_int_equal(enf_shape_list(s, &v, &n), 0);
    free(v);
    return n;
}

static void enf_ts_expect(struct enf_shape *s,
                          const char *ip,
                          uint32_t down,
                          uint32_t up)
{
    struct enf_shape_entry e;
    if (!enf_ts_find(s, ip, &e)) {
        fail_msg("%s not listed", ip);
    }
    assert_int_equal(e.down_kbit, down);
    assert_int_equal(e.up_kbit, up);
    if (down != 0) {
        assert_int_equal(e.classid >> 16, 1);
    }
}

static const struct enf_shape_client enf_ts_base[3] = {
    { "100.64.0.2", 4000, 2000 },
    { "100.64.0.3", 1000, 0 },
    { "100.64.1.2", 0, 500 }, /* same bucket as .0.2 */
};

static void test_shape_add(void **state)
{
    struct enf_shape *s = *state;
    enf_ts_apply_ok(s, enf_ts_base, 3);
    assert_int_equal(enf_ts_nlisted(s), 3);
    enf_ts_expect(s, "100.64.0.2", 4000, 2000);
    enf_ts_expect(s, "100.64.0.3", 1000, 0);
    enf_ts_expect(s, "100.64.1.2", 0, 500);
    struct enf_shape_stats st = enf_ts_stats(s);
    assert_int_equal(st.added, 3);
    assert_int_equal(st.changed, 0);
    assert_int_equal(st.clients, 3);
    assert_int_equal(st.errors, 0);
    /* The skeleton once per direction; per direction a default class
     * plus one class and filter per client shaped that way. */
    assert_int_equal(enf_ts_count(s, ENF_SHAPE_IFB_SET), 1);
    assert_int_equal(enf_ts_count(s, ENF_SHAPE_ROOT_SET), 2);
    assert_int_equal(enf_ts_count(s, ENF_SHAPE_INGRESS_SET), 1);
    assert_int_equal(enf_ts_count(s, ENF_SHAPE_REDIRECT_SET), 1);
    assert_int_equal(enf_ts_count(s, ENF_SHAPE_TABLE_SET), 2);
    assert_int_equal(enf_ts_count(s, ENF_SHAPE_LINK_SET), 2);
    assert_int_equal(enf_ts_count(s, ENF_SHAPE_CLASS_SET), 6);
    assert_int_equal(enf_ts_count(s, ENF_SHAPE_FILTER_SET), 4);
    struct enf_shape_entry e;
    assert_true(enf_ts_find(s, "100.64.0.2", &e));
    assert_int_equal(e.up_classid >> 16, 1);
    assert_true(enf_ts_find(s, "100.64.1.2", &e));
    assert_int_equal(e.classid, 0);
}

static void test_shape_idempotent(void **state)
{
    struct enf_shape *s = *state;
    enf_ts_apply_ok(s, enf_ts_base, 3);
    uint64_t before = enf_ts_requests(s);
    enf_ts_apply_ok(s, enf_ts_base, 3);
    /* Same set in another order: still nothing to do. */
    struct enf_shape_client rev[3] = { enf_ts_base[2], enf_ts_base[0],
                                       enf_ts_base[1] };
    enf_ts_apply_ok(s, rev, 3);
    assert_int_equal(enf_ts_requests(s), before);
    struct enf_shape_stats st = enf_ts_stats(s);
    assert_int_equal(st.applies, 3);
    assert_int_equal(st.added, 3);
    assert_int_equal(st.changed, 0);
    assert_int_equal(st.removed, 0);
}

static void test_shape_change_in_place(void **state)
{
    struct enf_shape *s = *state;
    enf_ts_apply_ok(s, enf_ts_base, 3);
    struct enf_shape_entry e0;
    assert_true(enf_ts_find(s, "100.64.0.2", &e0));
    uint64_t roots = enf_ts_count(s, ENF_SHAPE_ROOT_SET);
    uint64_t classes = enf_ts_count(s, ENF_SHAPE_CLASS_SET);
    uint64_t filters = enf_ts_count(s, ENF_SHAPE_FILTER_SET);
    struct enf_shape_client c[3] = { enf_ts_base[0], enf_ts_base[1],
                                     enf_ts_base[2] };
    c[0].down_kbit = 8000;
    c[0].up_kbit = 3000;
    enf_ts_apply_ok(s, c, 3);
    enf_ts_expect(s, "100.64.0.2", 8000, 3000);
    struct enf_shape_entry e1;
    assert_true(enf_ts_find(s, "100.64.0.2", &e1));
    assert_int_equal(e1.classid, e0.classid);
    assert_int_equal(e1.up_classid, e0.up_classid);
    /* Two class changes; no filter, no rebuild, no delete. */
    assert_int_equal(enf_ts_count(s, ENF_SHAPE_ROOT_SET), roots);
    assert_int_equal(enf_ts_count(s, ENF_SHAPE_CLASS_SET), classes + 2);
    assert_int_equal(enf_ts_count(s, ENF_SHAPE_FILTER_SET), filters);
    assert_int_equal(enf_ts_count(s, ENF_SHAPE_FILTER_DEL), 0);
    assert_int_equal(enf_ts_count(s, ENF_SHAPE_CLASS_DEL), 0);
    struct enf_shape_stats st = enf_ts_stats(s);
    assert_int_equal(st.changed, 1);
    assert_int_equal(st.added, 3);
}

static void test_shape_remove(void **state)
{
    struct enf_shape *s = *state;
    enf_ts_apply_ok(s, enf_ts_base, 3);
    /* .0.3 leaves; .0.2 loses its upload limit; .1.2 goes to 0/0. */
    struct enf_shape_client c[2] = { enf_ts_base[0],
                                     enf_ts_client("100.64.1.2", 0, 0) };
    c[0].up_kbit = 0;
    enf_ts_apply_ok(s, c, 2);
    assert_int_equal(enf_ts_nlisted(s), 1);
    enf_ts_expect(s, "100.64.0.2", 4000, 0);
    struct enf_shape_entry e;
    assert_false(enf_ts_find(s, "100.64.0.3", &e));
    /* Down: one filter and class deleted. Up: nobody left, so a fresh
     * root qdisc instead of deletions. */
    assert_int_equal(enf_ts_count(s, ENF_SHAPE_FILTER_DEL), 1);
    assert_int_equal(enf_ts_count(s, ENF_SHAPE_CLASS_DEL), 1);
    assert_int_equal(enf_ts_count(s, ENF_SHAPE_ROOT_SET), 3);
    struct enf_shape_stats st = enf_ts_stats(s);
    assert_int_equal(st.removed, 2);
    assert_int_equal(st.changed, 1);
    assert_int_equal(st.clients, 1);
    enf_ts_apply_ok(s, NULL, 0);
    assert_int_equal(enf_ts_nlisted(s), 0);
    assert_int_equal(enf_ts_stats(s).clients, 0);
}

static void test_shape_stable_classids(void **state)
{
    struct enf_shape *s = *state;
    enf_ts_apply_ok(s, enf_ts_base, 3);
    struct enf_shape_entry a, b;
    assert_true(enf_ts_find(s, "100.64.0.3", &a));
    /* A new client sorted before .0.3 does not shift its class. */
    struct enf_shape_client c[4] = { enf_ts_client("100.64.0.1", 100, 0),
                                     enf_ts_base[0], enf_ts_base[1],
                                     enf_ts_base[2] };
    enf_ts_apply_ok(s, c, 4);
    assert_true(enf_ts_find(s, "100.64.0.3", &b));
    assert_int_equal(a.classid, b.classid);
    /* A restart (new object, same kernel) re-reads the class ids; the fake
     * stands in for the kernel only within one object, so re-derive from
     * its list instead: every listed class id is distinct. */
    struct enf_shape_entry *v = NULL;
    size_t n = 0;
    assert_int_equal(enf_shape_list(s, &v, &n), 0);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i + 1; j < n; j++) {
            if (v[i].classid != 0) {
                assert_int_not_equal(v[i].classid, v[j].classid);
            }
        }
    }
    free(v);
    /* A removed client's minor is not handed to a newcomer in the same
     * apply: the newcomer gets a fresh one, the old class is deleted. */
    struct enf_shape_client d[4] = { c[0], c[1], c[3],
                                     enf_ts_client("100.64.0.9", 100, 0) };
    enf_ts_apply_ok(s, d, 4);
    struct enf_shape_entry x;
    assert_true(enf_ts_find(s, "100.64.0.9", &x));
    assert_int_not_equal(x.classid, a.classid);
}

static void test_shape_hand_deleted_restored(void **state)
{
    struct enf_shape *s = *state;
    enf_ts_apply_ok(s, enf_ts_base, 3);
    struct enf_shape_entry e0, e1;
    assert_true(enf_ts_find(s, "100.64.0.2", &e0));
    /* The egress filter goes: its class would be an orphan, but the
     * object remembers it and reuses it. */
    assert_int_equal(enf_shape_fake_drop_filter(s, ENF_SHAPE_EGRESS,
                                                enf_ts_ip("100.64.0.2")),
                     0);
    assert_int_equal(enf_shape_fake_drop_filter(s, ENF_SHAPE_INGRESS,
                                                enf_ts_ip("100.64.1.2")),
                     0);
    enf_ts_apply_ok(s, enf_ts_base, 3);
    assert_true(enf_ts_find(s, "100.64.0.2", &e1));
    assert_int_equal(e1.classid, e0.classid);
    enf_ts_expect(s, "100.64.0.2", 4000, 2000);
    enf_ts_expect(s, "100.64.1.2", 0, 500);
    assert_int_equal(enf_ts_count(s, ENF_SHAPE_CLASS_DEL), 0);
    /* .0.2 kept its ingress filter: repaired, a change. .1.2 had nothing
     * left in the kernel: shaped anew, an add. */
    assert_int_equal(enf_ts_stats(s).changed, 1);
    assert_int_equal(enf_ts_stats(s).added, 4);
    /* The class goes: recreated with the same id. */
    assert_int_equal(
        enf_shape_fake_drop_class(s, ENF_SHAPE_EGRESS, (uint16_t)e0.classid),
        0);
    enf_ts_apply_ok(s, enf_ts_base, 3);
    assert_true(enf_ts_find(s, "100.64.0.2", &e1));
    assert_int_equal(e1.classid, e0.classid);
    enf_ts_expect(s, "100.64.0.2", 4000, 2000);
}

static void test_shape_foreign_root_and_strays(void **state)
{
    struct enf_shape *s = *state;
    enf_ts_apply_ok(s, enf_ts_base, 3);
    assert_int_equal(enf_shape_fake_put_stray(s, ENF_SHAPE_HOOK, 49), 0);
    assert_int_equal(enf_shape_fake_put_stray(s, ENF_SHAPE_EGRESS, 3), 0);
    enf_ts_apply_ok(s, enf_ts_base, 3);
    assert_int_equal(enf_ts_count(s, ENF_SHAPE_PROTO_DEL), 2);
    assert_int_equal(enf_ts_count(s, ENF_SHAPE_ROOT_SET), 2);
    /* Someone replaced the root qdisc: rebuilt, everything back. */
    assert_int_equal(enf_shape_fake_foreign_root(s, ENF_SHAPE_EGRESS), 0);
    enf_ts_apply_ok(s, enf_ts_base, 3);
    assert_int_equal(enf_ts_count(s, ENF_SHAPE_ROOT_SET), 3);
    enf_ts_expect(s, "100.64.0.2", 4000, 2000);
    enf_ts_expect(s, "100.64.0.3", 1000, 0);
    /* The IFB device went away (and with it the redirect). */
    assert_int_equal(enf_shape_fake_drop_ifb(s), 0);
    enf_ts_apply_ok(s, enf_ts_base, 3);
    assert_int_equal(enf_ts_count(s, ENF_SHAPE_IFB_SET), 2);
    assert_int_equal(enf_ts_count(s, ENF_SHAPE_REDIRECT_SET), 2);
    enf_ts_expect(s, "100.64.1.2", 0, 500);
    /* The redirect alone was deleted by hand. */
    assert_int_equal(enf_shape_fake_drop_filter(s, ENF_SHAPE_HOOK, 0), 0);
    enf_ts_apply_ok(s, enf_ts_base, 3);
    assert_int_equal(enf_ts_count(s, ENF_SHAPE_REDIRECT_SET), 3);
    uint64_t before = enf_ts_requests(s);
    enf_ts_apply_ok(s, enf_ts_base, 3);
    assert_int_equal(enf_ts_requests(s), before);
}

static void test_shape_bad_input(void **state)
{
    struct enf_shape *s = *state;
    enf_ts_apply_ok(s, enf_ts_base, 3);
    uint64_t before = enf_ts_requests(s);
    static const struct {
        struct enf_shape_client c;
        const char *why;
    } bad[] = {
        { { "100.64.0.300", 100, 0 }, "not an IPv4" },
        { { "fd00::1", 100, 0 }, "IPv6" },
        { { "100.64.0.5", 8, 0 }, "out of range" },
        { { "100.64.0.5", 0, ENF_SHAPE_MAX_KBIT + 1 }, "out of range" },
        { { "", 100, 0 }, "not an IPv4" },
    };
    char err[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct enf_shape_client c[2] = { enf_ts_base[0], bad[i].c };
        assert_int_equal(enf_shape_apply(s, c, 2, err, sizeof(err)), -EINVAL);
        if (strstr(err, bad[i].why) == NULL) {
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, bad[i].why);
        }
    }
    struct enf_shape_client dup[2] = { enf_ts_base[0], enf_ts_base[0] };
    dup[1].down_kbit = 100;
    assert_int_equal(enf_shape_apply(s, dup, 2, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "desired twice"));
    /* Unterminated address. */
    struct enf_shape_client un;
    memset(&un, 'x', sizeof(un.ip));
    un.down_kbit = un.up_kbit = 100;
    assert_int_equal(enf_shape_apply(s, &un, 1, err, sizeof(err)), -EINVAL);
    /* Nothing was asked of the backend; the state is untouched. */
    assert_int_equal(enf_ts_requests(s), before);
    assert_int_equal(enf_ts_nlisted(s), 3);
    /* A bad config. */
    struct enf_shape *t = NULL;
    struct enf_shape_config cfg = { .backend = "nope", .dev = "tun0" };
    assert_int_equal(enf_shape_new(&cfg, &t, err, sizeof(err)), -EINVAL);
    cfg.backend = "fake";
    cfg.dev = "a-name-longer-than-15";
    assert_int_equal(enf_shape_new(&cfg, &t, err, sizeof(err)), -EINVAL);
    cfg.dev = NULL;
    assert_int_equal(enf_shape_new(&cfg, &t, err, sizeof(err)), -EINVAL);
}

static void test_shape_partial_failure_retried(void **state)
{
    struct enf_shape *s = *state;
    char err[256];
    assert_int_equal(enf_shape_fake_fail_ip(s, enf_ts_ip("100.64.0.3"), -EIO),
                     0);
    assert_int_equal(enf_shape_apply(s, enf_ts_base, 3, err, sizeof(err)),
                     -EIO);
    assert_non_null(strstr(err, "100.64.0.3"));
    /* The others are in place. */
    enf_ts_expect(s, "100.64.0.2", 4000, 2000);
    enf_ts_expect(s, "100.64.1.2", 0, 500);
    struct enf_shape_entry e;
    assert_false(enf_ts_find(s, "100.64.0.3", &e));
    struct enf_shape_stats st = enf_ts_stats(s);
    assert_int_equal(st.added, 2);
    assert_int_equal(st.errors, 1);
    assert_int_equal(st.clients, 2);
    /* Retried on the next apply. */
    assert_int_equal(enf_shape_fake_fail_ip(s, 0, 0), 0);
    enf_ts_apply_ok(s, enf_ts_base, 3);
    enf_ts_expect(s, "100.64.0.3", 1000, 0);
    st = enf_ts_stats(s);
    assert_int_equal(st.added, 3);
    assert_int_equal(st.clients, 3);
    /* A failure in the skeleton (first request) stops that direction
     * only; it is named and retried. */
    enf_ts_apply_ok(s, NULL, 0);
    assert_int_equal(enf_shape_fake_foreign_root(s, ENF_SHAPE_EGRESS), 0);
    assert_int_equal(enf_shape_fake_fail_requests(s, 1, -ENOMEM), 0);
    assert_int_equal(enf_shape_apply(s, enf_ts_base, 3, err, sizeof(err)),
                     -ENOMEM);
    assert_non_null(strstr(err, "root qdisc"));
    enf_ts_expect(s, "100.64.1.2", 0, 500);
    enf_ts_apply_ok(s, enf_ts_base, 3);
    enf_ts_expect(s, "100.64.0.2", 4000, 2000);
}

static void test_shape_no_device(void **state)
{
    struct enf_shape *s = *state;
    char err[256];
    assert_int_equal(enf_shape_fake_set_dev(s, false), 0);
    assert_int_equal(enf_shape_apply(s, enf_ts_base, 3, err, sizeof(err)),
                     -ENODEV);
    assert_non_null(strstr(err, "tun0"));
    struct enf_shape_entry *v = NULL;
    size_t n = 0;
    assert_int_equal(enf_shape_list(s, &v, &n), -ENODEV);
    assert_int_equal(enf_shape_fake_set_dev(s, true), 0);
    enf_ts_apply_ok(s, enf_ts_base, 3);
    assert_int_equal(enf_ts_nlisted(s), 3);
    /* openvpn restarts: the device goes and comes back empty. */
    assert_int_equal(enf_shape_fake_set_dev(s, false), 0);
    assert_int_equal(enf_shape_fake_set_dev(s, true), 0);
    enf_ts_apply_ok(s, enf_ts_base, 3);
    enf_ts_expect(s, "100.64.0.2", 4000, 2000);
    /* The device's root was rebuilt; the IFB device's was not. */
    assert_int_equal(enf_ts_count(s, ENF_SHAPE_ROOT_SET), 3);
    assert_int_equal(enf_ts_count(s, ENF_SHAPE_IFB_SET), 1);
}

static void test_shape_many_in_one_bucket(void **state)
{
    struct enf_shape *s = *state;
    /* 300 clients whose last octet is 7: one hash bucket, 300 nodes. */
    enum { N = 300 };
    struct enf_shape_client *c = calloc(N, sizeof(*c));
    assert_non_null(c);
    for (int i = 0; i < N; i++) {
        snprintf(c[i].ip, sizeof(c[i].ip), "100.%d.%d.7", 64 + i / 256,
                 i % 256);
        c[i].down_kbit = 100 + (uint32_t)i;
        c[i].up_kbit = 50;
    }
    enf_ts_apply_ok(s, c, N);
    assert_int_equal(enf_ts_nlisted(s), N);
    enf_ts_expect(s, "100.64.200.7", 300, 50);
    enf_ts_expect(s, "100.65.43.7", 399, 50);
    uint64_t before = enf_ts_requests(s);
    enf_ts_apply_ok(s, c, N);
    assert_int_equal(enf_ts_requests(s), before);
    free(c);
}

static void test_shape_default_rate(void **state)
{
    (void)state;
    struct enf_shape_config cfg = { .backend = "fake",
                                    .dev = "tun1",
                                    .default_kbit = 100000 };
    struct enf_shape *s = NULL;
    char err[256];
    assert_int_equal(enf_shape_new(&cfg, &s, err, sizeof(err)), 0);
    enf_ts_apply_ok(s, NULL, 0);
    /* Skeleton plus the default classes only. */
    assert_int_equal(enf_ts_count(s, ENF_SHAPE_CLASS_SET), 2);
    assert_int_equal(enf_ts_nlisted(s), 0);
    assert_int_equal(enf_shape_class_burst(12500), 10 * 1514);
    assert_int_equal(enf_shape_class_burst(125000000), 1250000);
    /* The IFB name: derived, or given; too long or equal to dev fails. */
    struct enf_shape *t = NULL;
    cfg.dev = "tun-long-name";
    assert_int_equal(enf_shape_new(&cfg, &t, err, sizeof(err)), -EINVAL);
    cfg.ifb_dev = "ovupx";
    assert_int_equal(enf_shape_new(&cfg, &t, err, sizeof(err)), 0);
    enf_shape_free(t);
    cfg.ifb_dev = "tun-long-name";
    assert_int_equal(enf_shape_new(&cfg, &t, err, sizeof(err)), -EINVAL);
    enf_shape_free(s);
    enf_shape_free(NULL);
}

#define ENF_TS(f) \
    cmocka_unit_test_setup_teardown(f, enf_ts_setup, enf_ts_teardown)

const struct CMUnitTest enf_shape_tests[] = {
    ENF_TS(test_shape_add),
    ENF_TS(test_shape_idempotent),
    ENF_TS(test_shape_change_in_place),
    ENF_TS(test_shape_remove),
    ENF_TS(test_shape_stable_classids),
    ENF_TS(test_shape_hand_deleted_restored),
    ENF_TS(test_shape_foreign_root_and_strays),
    ENF_TS(test_shape_bad_input),
    ENF_TS(test_shape_partial_failure_retried),
    ENF_TS(test_shape_no_device),
    ENF_TS(test_shape_many_in_one_bucket),
    cmocka_unit_test(test_shape_default_rate),
};
const size_t enf_shape_ntests =
    sizeof(enf_shape_tests) / sizeof(enf_shape_tests[0]);
