/* enforce/route linux backend tests, run by `enforce_tests --netns` inside
 * a private network namespace (see netns.c): ovt0 198.18.0.1/24 and
 * fd00:18::1/64, peer ovt1. The kernel state is read back with `ip`, not
 * only through enf_route_list, so the backend does not grade itself.
 * Each test starts from an empty set of our routes and no static ones. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "enforce/route.h"
#include "enforce/tests/netns.h"
#include "enforce/tests/tests.h"

#define ENF_T_PROTO "233"

static struct enf_route *enf_tl_open(uint8_t protocol)
{
    struct enf_route_config cfg = { .backend = "linux", .protocol = protocol };
    struct enf_route *r = NULL;
    char err[256];
    int rc = enf_route_new(&cfg, &r, err, sizeof(err));
    if (rc != 0) {
        fail_msg("enf_route_new: %d: %s", rc, err);
    }
    return r;
}

static void enf_tl_apply_ok(struct enf_route *r,
                            const struct enf_route_entry *d,
                            size_t n)
{
    char err[256];
    int rc = enf_route_apply(r, d, n, err, sizeof(err));
    if (rc != 0) {
        fail_msg("apply: %d: %s", rc, err);
    }
}

static int enf_tl_setup(void **state)
{
    /* Clear what earlier tests left, then start with fresh stats. */
    struct enf_route *r = enf_tl_open(0);
    enf_tl_apply_ok(r, NULL, 0);
    enf_route_free(r);
    r = enf_tl_open(0);
    assert_int_equal(enf_test_sh("ip route flush proto static"), 0);
    assert_int_equal(enf_test_sh("ip -6 route flush proto static"), 0);
    /* Leftovers of a test that failed half-way. */
    (void)enf_test_sh("ip route flush table 100 2>/dev/null");
    (void)enf_test_sh("ip link del ovtmiss0 2>/dev/null");
    *state = r;
    return 0;
}

static int enf_tl_teardown(void **state)
{
    enf_route_free(*state);
    return 0;
}

static struct enf_route_stats enf_tl_stats(struct enf_route *r)
{
    struct enf_route_stats st;
    enf_route_get_stats(r, &st);
    return st;
}

/* `ip [-6] route show <what>` as text (one route per line). */
static const char *enf_tl_ip(const char *family, const char *what)
{
    static char out[8192];
    int rc =
        enf_test_sh_out(out, sizeof(out), "ip %s route show %s", family, what);
    assert_int_equal(rc, 0);
    return out;
}

static void enf_tl_expect(const char *family,
                          const char *what,
                          const char *line)
{
    const char *out = enf_tl_ip(family, what);
    if (strstr(out, line) == NULL) {
        fail_msg("ip %s route show %s:\n%s\nlacks \"%s\"", family, what, out,
                 line);
    }
}

static void enf_tl_expect_none(const char *family, const char *what)
{
    const char *out = enf_tl_ip(family, what);
    if (out[0] != '\0') {
        fail_msg("ip %s route show %s: expected nothing, got:\n%s", family,
                 what, out);
    }
}

static const struct enf_route_entry enf_tl_base[3] = {
    { "100.64.1.0", 24, "198.18.0.2", "", 0 },
    { "100.64.2.0", 24, "", "ovt0", 0 },
    { "100.64.3.7", 32, "198.18.0.3", "", 20 },
};

static void enf_tl_expect_base(void)
{
    enf_tl_expect("-4", "100.64.1.0/24 proto " ENF_T_PROTO,
                  "100.64.1.0/24 via 198.18.0.2 dev ovt0");
    enf_tl_expect("-4", "100.64.2.0/24 proto " ENF_T_PROTO,
                  "100.64.2.0/24 dev ovt0 scope link");
    enf_tl_expect("-4", "100.64.3.7 proto " ENF_T_PROTO,
                  "100.64.3.7 via 198.18.0.3 dev ovt0 metric 20");
}

static void test_linux_add_via_and_dev(void **state)
{
    struct enf_route *r = *state;
    enf_tl_apply_ok(r, enf_tl_base, 3);
    enf_tl_expect_base();
    struct enf_route_stats st = enf_tl_stats(r);
    assert_int_equal(st.added, 3);
    assert_int_equal(st.replaced + st.removed + st.errors, 0);
    assert_int_equal(st.installed, 3);

    struct enf_route_entry *v = NULL;
    size_t n = 0;
    assert_int_equal(enf_route_list(r, &v, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(v[0].dst, "100.64.1.0");
    assert_string_equal(v[0].via, "198.18.0.2");
    assert_string_equal(v[1].dst, "100.64.2.0");
    assert_string_equal(v[1].dev, "ovt0");
    assert_string_equal(v[1].via, "");
    assert_string_equal(v[2].dst, "100.64.3.7");
    assert_int_equal(v[2].prefix, 32);
    assert_int_equal(v[2].metric, 20);
    free(v);
}

static void test_linux_idempotent(void **state)
{
    struct enf_route *r = *state;
    enf_tl_apply_ok(r, enf_tl_base, 3);
    enf_tl_apply_ok(r, enf_tl_base, 3);
    struct enf_route_stats st = enf_tl_stats(r);
    assert_int_equal(st.applies, 2);
    assert_int_equal(st.added, 3);
    assert_int_equal(st.replaced + st.removed + st.errors, 0);
    assert_int_equal(st.installed, 3);
    enf_tl_expect_base();
}

static void test_linux_restores_hand_deleted(void **state)
{
    struct enf_route *r = *state;
    enf_tl_apply_ok(r, enf_tl_base, 3);
    assert_int_equal(
        enf_test_sh("ip route del 100.64.1.0/24 proto " ENF_T_PROTO), 0);
    enf_tl_expect_none("-4", "100.64.1.0/24");
    enf_tl_apply_ok(r, enf_tl_base, 3);
    struct enf_route_stats st = enf_tl_stats(r);
    assert_int_equal(st.added, 4);
    assert_int_equal(st.replaced + st.removed, 0);
    enf_tl_expect_base();
}

static void test_linux_replaces_hand_altered(void **state)
{
    struct enf_route *r = *state;
    enf_tl_apply_ok(r, enf_tl_base, 3);
    assert_int_equal(enf_test_sh("ip route replace 100.64.1.0/24 via "
                                 "198.18.0.9 proto " ENF_T_PROTO),
                     0);
    assert_int_equal(enf_test_sh("ip route replace 100.64.2.0/24 via "
                                 "198.18.0.9 proto " ENF_T_PROTO),
                     0);
    enf_tl_expect("-4", "100.64.1.0/24", "via 198.18.0.9");
    enf_tl_apply_ok(r, enf_tl_base, 3);
    struct enf_route_stats st = enf_tl_stats(r);
    assert_int_equal(st.replaced, 2);
    assert_int_equal(st.added, 3);
    assert_int_equal(st.removed, 0);
    assert_int_equal(st.installed, 3);
    enf_tl_expect_base();
    const char *out = enf_tl_ip("-4", "proto " ENF_T_PROTO);
    assert_null(strstr(out, "198.18.0.9"));
}

static void test_linux_metric_change(void **state)
{
    struct enf_route *r = *state;
    struct enf_route_entry d = enf_t_via("100.64.1.0", 24, "198.18.0.2", 5);
    enf_tl_apply_ok(r, &d, 1);
    d.metric = 9;
    enf_tl_apply_ok(r, &d, 1);
    struct enf_route_stats st = enf_tl_stats(r);
    assert_int_equal(st.replaced, 1);
    assert_int_equal(st.removed, 0);
    assert_int_equal(st.installed, 1);
    enf_tl_expect("-4", "100.64.1.0/24", "metric 9");
    const char *out = enf_tl_ip("-4", "100.64.1.0/24");
    assert_null(strstr(out, "metric 5"));
}

static void test_linux_foreign_untouched(void **state)
{
    struct enf_route *r = *state;
    assert_int_equal(enf_test_sh("ip route add 100.64.9.0/24 via 198.18.0.5 "
                                 "proto static"),
                     0);
    assert_int_equal(enf_test_sh("ip route add 100.64.4.0/24 via 198.18.0.6 "
                                 "proto static"),
                     0);
    /* Our protocol id, but another table. */
    assert_int_equal(enf_test_sh("ip route add 100.64.1.0/24 via 198.18.0.7 "
                                 "table 100 proto " ENF_T_PROTO),
                     0);
    struct enf_route_entry d[3] = {
        enf_tl_base[0],
        enf_tl_base[1],
        enf_t_via("100.64.4.0", 24, "198.18.0.2", 0),
    };
    char err[256];
    assert_int_equal(enf_route_apply(r, d, 3, err, sizeof(err)), -EEXIST);
    assert_string_equal(
        err, "route 100.64.4.0/24 metric 0: held by protocol static");
    struct enf_route_stats st = enf_tl_stats(r);
    assert_int_equal(st.added, 2);
    assert_int_equal(st.errors, 1);
    assert_int_equal(st.installed, 2);
    enf_tl_expect("-4", "100.64.4.0/24",
                  "via 198.18.0.6 dev ovt0 proto static");
    enf_tl_expect("-4", "100.64.1.0/24 proto " ENF_T_PROTO, "via 198.18.0.2");

    /* Another metric may sit beside the static route. */
    d[2].metric = 50;
    enf_tl_apply_ok(r, d, 3);
    enf_tl_expect("-4", "100.64.4.0/24 proto " ENF_T_PROTO,
                  "via 198.18.0.2 dev ovt0 metric 50");

    /* Removing everything of ours leaves the others alone. */
    enf_tl_apply_ok(r, NULL, 0);
    enf_tl_expect_none("-4", "proto " ENF_T_PROTO);
    enf_tl_expect("-4", "100.64.9.0/24",
                  "via 198.18.0.5 dev ovt0 proto static");
    enf_tl_expect("-4", "100.64.4.0/24",
                  "via 198.18.0.6 dev ovt0 proto static");
    enf_tl_expect("-4", "table 100", "100.64.1.0/24 via 198.18.0.7");
    assert_int_equal(enf_test_sh("ip route flush table 100"), 0);
}

static void test_linux_other_protocol_instance(void **state)
{
    struct enf_route *r = *state;
    enf_tl_apply_ok(r, enf_tl_base, 3);
    /* A second reconciler with another protocol id sees none of ours. */
    struct enf_route *r2 = enf_tl_open(201);
    struct enf_route_entry d = enf_t_via("100.64.7.0", 24, "198.18.0.2", 0);
    enf_tl_apply_ok(r2, &d, 1);
    enf_tl_apply_ok(r2, NULL, 0);
    assert_int_equal(enf_tl_stats(r2).removed, 1);
    enf_route_free(r2);
    enf_tl_expect_base();
}

static void test_linux_removes_undesired(void **state)
{
    struct enf_route *r = *state;
    enf_tl_apply_ok(r, enf_tl_base, 3);
    enf_tl_apply_ok(r, &enf_tl_base[2], 1);
    struct enf_route_stats st = enf_tl_stats(r);
    assert_int_equal(st.removed, 2);
    assert_int_equal(st.installed, 1);
    enf_tl_expect_none("-4", "100.64.1.0/24");
    enf_tl_expect_none("-4", "100.64.2.0/24");
    enf_tl_expect("-4", "100.64.3.7", "via 198.18.0.3");
}

static void test_linux_ipv6(void **state)
{
    struct enf_route *r = *state;
    struct enf_route_entry d[2] = {
        enf_t_dev("fd00:64::", 64, "ovt0", 0),
        enf_t_via("fd00:65::", 48, "fd00:18::2", 0),
    };
    enf_tl_apply_ok(r, d, 2);
    enf_tl_expect("-6", "proto " ENF_T_PROTO,
                  "fd00:64::/64 dev ovt0 metric 1024");
    enf_tl_expect("-6", "proto " ENF_T_PROTO,
                  "fd00:65::/48 via fd00:18::2 dev ovt0 metric 1024");
    enf_tl_apply_ok(r, d, 2);
    struct enf_route_stats st = enf_tl_stats(r);
    assert_int_equal(st.added, 2);
    assert_int_equal(st.replaced + st.removed + st.errors, 0);
    assert_int_equal(st.installed, 2);

    /* Altered by hand, then removed. */
    assert_int_equal(enf_test_sh("ip -6 route replace fd00:65::/48 via "
                                 "fd00:18::9 proto " ENF_T_PROTO),
                     0);
    enf_tl_apply_ok(r, d, 2);
    assert_int_equal(enf_tl_stats(r).replaced, 1);
    enf_tl_expect("-6", "fd00:65::/48", "via fd00:18::2");

    /* A static IPv6 route (metric 1024 too) is not clobbered. */
    assert_int_equal(enf_test_sh("ip -6 route add fd00:67::/64 via "
                                 "fd00:18::6 proto static"),
                     0);
    struct enf_route_entry d3[3] = {
        d[0], d[1], enf_t_via("fd00:67::", 64, "fd00:18::2", 0)
    };
    char err[256];
    assert_int_equal(enf_route_apply(r, d3, 3, err, sizeof(err)), -EEXIST);
    assert_string_equal(
        err, "route fd00:67::/64 metric 1024: held by protocol static");
    enf_tl_expect("-6", "fd00:67::/64", "via fd00:18::6 dev ovt0 proto static");

    enf_tl_apply_ok(r, NULL, 0);
    enf_tl_expect_none("-6", "proto " ENF_T_PROTO);
    enf_tl_expect("-6", "fd00:67::/64", "proto static");
}

static void test_linux_missing_dev(void **state)
{
    struct enf_route *r = *state;
    struct enf_route_entry d[4] = {
        enf_tl_base[0],
        enf_t_dev("100.64.5.0", 24, "ovtmiss0", 0),
        enf_tl_base[1],
        enf_t_dev("fd00:66::", 64, "ovtmiss0", 0),
    };
    char err[256];
    assert_int_equal(enf_route_apply(r, d, 4, err, sizeof(err)), -ENODEV);
    assert_non_null(strstr(err, "route 100.64.5.0/24: "));
    assert_non_null(strstr(err, "(and 1 more failures)"));
    struct enf_route_stats st = enf_tl_stats(r);
    assert_int_equal(st.added, 2);
    assert_int_equal(st.errors, 2);
    assert_int_equal(st.installed, 2);
    enf_tl_expect("-4", "100.64.1.0/24", "via 198.18.0.2");
    enf_tl_expect("-4", "100.64.2.0/24", "dev ovt0");
    enf_tl_expect_none("-4", "100.64.5.0/24");

    /* The device appears (as a tun would): the next apply installs. */
    assert_int_equal(enf_test_sh("ip link add ovtmiss0 type veth peer name "
                                 "ovtmiss1 && ip link set ovtmiss0 up && "
                                 "ip link set ovtmiss1 up"),
                     0);
    enf_tl_apply_ok(r, d, 4);
    enf_tl_expect("-4", "100.64.5.0/24", "dev ovtmiss0");
    enf_tl_expect("-6", "fd00:66::/64", "dev ovtmiss0");
    assert_int_equal(enf_tl_stats(r).installed, 4);
    enf_tl_apply_ok(r, NULL, 0);
    assert_int_equal(enf_test_sh("ip link del ovtmiss0"), 0);
}

static void test_linux_default_route(void **state)
{
    struct enf_route *r = *state;
    struct enf_route_entry d = enf_t_via("0.0.0.0", 0, "198.18.0.2", 0);
    enf_tl_apply_ok(r, &d, 1);
    enf_tl_expect("-4", "proto " ENF_T_PROTO, "default via 198.18.0.2");
    enf_tl_apply_ok(r, &d, 1);
    struct enf_route_stats st = enf_tl_stats(r);
    assert_int_equal(st.added, 1);
    assert_int_equal(st.replaced + st.errors, 0);
    struct enf_route_entry *v = NULL;
    size_t n = 0;
    assert_int_equal(enf_route_list(r, &v, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].dst, "0.0.0.0");
    assert_int_equal(v[0].prefix, 0);
    free(v);
}

/* Routes of ours in shapes we never add (blackhole, multipath): replaced
 * when their dst is desired, deleted when not. */
static void test_linux_odd_shapes(void **state)
{
    struct enf_route *r = *state;
    assert_int_equal(
        enf_test_sh("ip route add blackhole 100.64.8.0/24 "
                    "proto " ENF_T_PROTO " && "
                    "ip route add blackhole 100.64.9.0/24 "
                    "proto " ENF_T_PROTO " && "
                    "ip route add 100.64.10.0/24 proto " ENF_T_PROTO
                    " nexthop via 198.18.0.2 nexthop via "
                    "198.18.0.3"),
        0);
    struct enf_route_entry d = enf_t_via("100.64.8.0", 24, "198.18.0.2", 0);
    enf_tl_apply_ok(r, &d, 1);
    struct enf_route_stats st = enf_tl_stats(r);
    assert_int_equal(st.replaced, 1);
    assert_int_equal(st.removed, 2);
    assert_int_equal(st.installed, 1);
    const char *out = enf_tl_ip("-4", "proto " ENF_T_PROTO);
    assert_string_equal(out, "100.64.8.0/24 via 198.18.0.2 dev ovt0 \n");
}

#define ENF_TL(fn) \
    cmocka_unit_test_setup_teardown(fn, enf_tl_setup, enf_tl_teardown)

const struct CMUnitTest enf_route_linux_tests[] = {
    ENF_TL(test_linux_add_via_and_dev),
    ENF_TL(test_linux_idempotent),
    ENF_TL(test_linux_restores_hand_deleted),
    ENF_TL(test_linux_replaces_hand_altered),
    ENF_TL(test_linux_metric_change),
    ENF_TL(test_linux_foreign_untouched),
    ENF_TL(test_linux_other_protocol_instance),
    ENF_TL(test_linux_removes_undesired),
    ENF_TL(test_linux_ipv6),
    ENF_TL(test_linux_missing_dev),
    ENF_TL(test_linux_default_route),
    ENF_TL(test_linux_odd_shapes),
};
const size_t enf_route_linux_ntests =
    sizeof(enf_route_linux_tests) / sizeof(enf_route_linux_tests[0]);
