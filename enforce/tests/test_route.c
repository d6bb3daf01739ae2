/* enforce/route unit tests: validation and convergence on the fake
 * backend (an in-memory table with the kernel's replace semantics). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "enforce/route.h"
#include "enforce/route_int.h"
#include "enforce/tests/tests.h"

#define PROTO_OURS   ENF_ROUTE_PROTO_DEFAULT
#define PROTO_STATIC 4
#define TABLE_MAIN   ENF_ROUTE_TABLE_DEFAULT

static int enf_t_setup(void **state)
{
    struct enf_route_config cfg = { .backend = "fake" };
    struct enf_route *r = NULL;
    char err[256];
    assert_int_equal(enf_route_new(&cfg, &r, err, sizeof(err)), 0);
    *state = r;
    return 0;
}

static int enf_t_teardown(void **state)
{
    enf_route_free(*state);
    return 0;
}

static struct enf_route_stats enf_t_stats(struct enf_route *r)
{
    struct enf_route_stats st;
    enf_route_get_stats(r, &st);
    return st;
}

static size_t enf_t_fake_size(struct enf_route *r)
{
    uint64_t adds, dels;
    size_t size;
    assert_int_equal(enf_route_fake_counts(r, &adds, &dels, &size), 0);
    return size;
}

static uint64_t enf_t_fake_requests(struct enf_route *r)
{
    uint64_t adds, dels;
    size_t size;
    assert_int_equal(enf_route_fake_counts(r, &adds, &dels, &size), 0);
    return adds + dels;
}

/* The route of ours with dst/prefix, from enf_route_list; false if none. */
static bool enf_t_find(struct enf_route *r,
                       const char *dst,
                       unsigned prefix,
                       struct enf_route_entry *ret)
{
    struct enf_route_entry *v = NULL;
    size_t n = 0;
    bool found = false;
    assert_int_equal(enf_route_list(r, &v, &n), 0);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i].dst, dst) == 0 && v[i].prefix == prefix) {
            *ret = v[i];
            found = true;
        }
    }
    free(v);
    return found;
}

static size_t enf_t_count(struct enf_route *r)
{
    struct enf_route_entry *v = NULL;
    size_t n = 0;
    assert_int_equal(enf_route_list(r, &v, &n), 0);
    free(v);
    return n;
}

static void enf_t_apply_ok(struct enf_route *r,
                           const struct enf_route_entry *d,
                           size_t n)
{
    char err[256];
    int rc = enf_route_apply(r, d, n, err, sizeof(err));
    if (rc != 0) {
        fail_msg("apply: %d: %s", rc, err);
    }
}

/* ---- validation ---------------------------------------------------------- */

static void enf_t_expect_invalid(struct enf_route *r,
                                 struct enf_route_entry bad,
                                 const char *needle)
{
    struct enf_route_entry d[2] = {
        enf_t_via("100.64.1.0", 24, "198.18.0.2", 0),
        bad,
    };
    char err[256];
    uint64_t before = enf_t_fake_requests(r);
    assert_int_equal(enf_route_apply(r, d, 2, err, sizeof(err)), -EINVAL);
    if (strstr(err, needle) == NULL) {
        fail_msg("errbuf \"%s\" lacks \"%s\"", err, needle);
    }
    assert_int_equal(enf_t_fake_requests(r), before);
    assert_int_equal(enf_t_fake_size(r), 0);
}

static void test_validation(void **state)
{
    struct enf_route *r = *state;
    struct enf_route_entry e;

    enf_t_expect_invalid(r, enf_t_via("100.64.x.0", 24, "198.18.0.2", 0),
                         "route 1: dst");
    enf_t_expect_invalid(r, enf_t_via("100.64.2.1", 24, "198.18.0.2", 0),
                         "host bits");
    enf_t_expect_invalid(r, enf_t_via("100.64.2.0", 33, "198.18.0.2", 0),
                         "prefix 33");
    enf_t_expect_invalid(r, enf_t_via("fd00:64::", 129, "fd00:18::2", 0),
                         "prefix 129");
    enf_t_expect_invalid(r, enf_t_via("fd00:64::1", 64, "fd00:18::2", 0),
                         "host bits");
    enf_t_expect_invalid(r, enf_t_via("100.64.2.0", 24, "fd00:18::2", 0),
                         "not an IPv4");
    enf_t_expect_invalid(r, enf_t_via("fd00:64::", 64, "198.18.0.2", 0),
                         "not an IPv6");
    e = enf_t_via("100.64.2.0", 24, "198.18.0.2", 0);
    ovha_strlcpy(e.dev, "ovt0", sizeof(e.dev));
    enf_t_expect_invalid(r, e, "exactly one");
    e = enf_t_via("100.64.2.0", 24, "", 0);
    enf_t_expect_invalid(r, e, "exactly one");
    e = enf_t_dev("100.64.2.0", 24, "x", 0);
    memset(e.dev, 'a', sizeof(e.dev)); /* 16 bytes, no terminator */
    enf_t_expect_invalid(r, e, "dev longer than 15");
    e = enf_t_dev("100.64.2.0", 24, "x", 0);
    memset(e.dst, '1', sizeof(e.dst));
    enf_t_expect_invalid(r, e, "not terminated");

    /* The limits themselves are fine. */
    struct enf_route_entry ok[3] = {
        enf_t_dev("0.0.0.0", 0, "abcdefghijklmno", 0), /* 15 bytes */
        enf_t_via("100.64.0.1", 32, "198.18.0.2", 0),
        enf_t_dev("fd00:64::1", 128, "ovt0", 0),
    };
    enf_t_apply_ok(r, ok, 3);
    assert_int_equal(enf_t_count(r), 3);
}

static void test_duplicates_change_nothing(void **state)
{
    struct enf_route *r = *state;
    struct enf_route_entry one = enf_t_via("100.64.1.0", 24, "198.18.0.2", 0);
    enf_t_apply_ok(r, &one, 1);
    uint64_t before = enf_t_fake_requests(r);

    struct enf_route_entry d[3] = {
        enf_t_via("100.64.2.0", 24, "198.18.0.2", 0),
        enf_t_via("100.64.3.0", 24, "198.18.0.2", 0),
        enf_t_dev("100.64.2.0", 24, "ovt0", 7), /* same dst/prefix */
    };
    char err[256];
    assert_int_equal(enf_route_apply(r, d, 3, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "100.64.2.0/24: desired twice"));
    assert_int_equal(enf_t_fake_requests(r), before);
    struct enf_route_entry got;
    assert_true(enf_t_find(r, "100.64.1.0", 24, &got));
    assert_int_equal(enf_t_count(r), 1);

    /* Same address, other prefix: two routes. */
    d[2] = enf_t_via("100.64.2.0", 25, "198.18.0.2", 0);
    enf_t_apply_ok(r, d, 3);
    assert_int_equal(enf_t_count(r), 3);
}

static void test_new_errors(void **state)
{
    (void)state;
    struct enf_route *r = NULL;
    char err[256];
    struct enf_route_config cfg = { .backend = "bsd" };
    assert_int_equal(enf_route_new(&cfg, &r, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "unknown backend \"bsd\""));
    cfg.backend = NULL;
    assert_int_equal(enf_route_new(&cfg, &r, err, sizeof(err)), -EINVAL);
    assert_int_equal(enf_route_new(NULL, &r, err, sizeof(err)), -EINVAL);
    assert_null(r);
    enf_route_free(NULL);
}

/* ---- convergence --------------------------------------------------------- */

static void test_add_and_idempotent(void **state)
{
    struct enf_route *r = *state;
    struct enf_route_entry d[3] = {
        enf_t_via("100.64.1.0", 24, "198.18.0.2", 0),
        enf_t_dev("100.64.2.0", 24, "ovt0", 0),
        enf_t_via("100.64.3.7", 32, "198.18.0.3", 20),
    };
    enf_t_apply_ok(r, d, 3);
    struct enf_route_stats st = enf_t_stats(r);
    assert_int_equal(st.applies, 1);
    assert_int_equal(st.added, 3);
    assert_int_equal(st.replaced + st.removed + st.errors, 0);
    assert_int_equal(st.installed, 3);

    struct enf_route_entry got;
    assert_true(enf_t_find(r, "100.64.3.7", 32, &got));
    assert_string_equal(got.via, "198.18.0.3");
    assert_string_equal(got.dev, "");
    assert_int_equal(got.metric, 20);
    assert_true(enf_t_find(r, "100.64.2.0", 24, &got));
    assert_string_equal(got.dev, "ovt0");
    assert_string_equal(got.via, "");

    uint64_t before = enf_t_fake_requests(r);
    enf_t_apply_ok(r, d, 3);
    st = enf_t_stats(r);
    assert_int_equal(st.applies, 2);
    assert_int_equal(st.added, 3);
    assert_int_equal(st.replaced + st.removed + st.errors, 0);
    assert_int_equal(st.installed, 3);
    assert_int_equal(enf_t_fake_requests(r), before);
}

static void test_restores_hand_deleted(void **state)
{
    struct enf_route *r = *state;
    struct enf_route_entry d[2] = {
        enf_t_via("100.64.1.0", 24, "198.18.0.2", 0),
        enf_t_via("100.64.2.0", 24, "198.18.0.2", 0),
    };
    enf_t_apply_ok(r, d, 2);
    assert_int_equal(enf_route_fake_drop(r, &d[1], PROTO_OURS, TABLE_MAIN), 0);
    assert_int_equal(enf_t_count(r), 1);
    enf_t_apply_ok(r, d, 2);
    struct enf_route_stats st = enf_t_stats(r);
    assert_int_equal(st.added, 3);
    assert_int_equal(st.installed, 2);
    assert_int_equal(enf_t_count(r), 2);
}

static void test_replaces_hand_altered(void **state)
{
    struct enf_route *r = *state;
    struct enf_route_entry d[2] = {
        enf_t_via("100.64.1.0", 24, "198.18.0.2", 0),
        enf_t_via("fd00:64::", 64, "fd00:18::2", 0),
    };
    enf_t_apply_ok(r, d, 2);
    struct enf_route_entry alt = enf_t_dev("100.64.1.0", 24, "ovt1", 0);
    assert_int_equal(enf_route_fake_put(r, &alt, PROTO_OURS, TABLE_MAIN), 0);
    alt = enf_t_via("fd00:64::", 64, "fd00:18::9", 0);
    assert_int_equal(enf_route_fake_put(r, &alt, PROTO_OURS, TABLE_MAIN), 0);
    assert_int_equal(enf_t_fake_size(r), 2);

    enf_t_apply_ok(r, d, 2);
    struct enf_route_stats st = enf_t_stats(r);
    assert_int_equal(st.replaced, 2);
    assert_int_equal(st.removed, 0);
    assert_int_equal(st.installed, 2);
    struct enf_route_entry got;
    assert_true(enf_t_find(r, "100.64.1.0", 24, &got));
    assert_string_equal(got.via, "198.18.0.2");
    assert_true(enf_t_find(r, "fd00:64::", 64, &got));
    assert_string_equal(got.via, "fd00:18::2");
    assert_int_equal(enf_t_fake_size(r), 2);
}

static void test_metric_change_supersedes(void **state)
{
    struct enf_route *r = *state;
    struct enf_route_entry d = enf_t_via("100.64.1.0", 24, "198.18.0.2", 5);
    enf_t_apply_ok(r, &d, 1);
    d.metric = 9;
    enf_t_apply_ok(r, &d, 1);
    struct enf_route_stats st = enf_t_stats(r);
    assert_int_equal(st.added, 1);
    assert_int_equal(st.replaced, 1);
    assert_int_equal(st.removed, 0);
    assert_int_equal(st.installed, 1);
    assert_int_equal(enf_t_fake_size(r), 1);
    struct enf_route_entry got;
    assert_true(enf_t_find(r, "100.64.1.0", 24, &got));
    assert_int_equal(got.metric, 9);
}

static void test_removes_undesired(void **state)
{
    struct enf_route *r = *state;
    struct enf_route_entry d[3] = {
        enf_t_via("100.64.1.0", 24, "198.18.0.2", 0),
        enf_t_via("100.64.2.0", 24, "198.18.0.2", 0),
        enf_t_via("100.64.3.0", 24, "198.18.0.2", 0),
    };
    enf_t_apply_ok(r, d, 3);
    enf_t_apply_ok(r, &d[1], 1);
    struct enf_route_stats st = enf_t_stats(r);
    assert_int_equal(st.removed, 2);
    assert_int_equal(st.installed, 1);
    enf_t_apply_ok(r, NULL, 0);
    st = enf_t_stats(r);
    assert_int_equal(st.removed, 3);
    assert_int_equal(st.installed, 0);
    assert_int_equal(enf_t_fake_size(r), 0);
}

static void test_foreign_untouched(void **state)
{
    struct enf_route *r = *state;
    /* Another protocol in our table, ours in another table. */
    struct enf_route_entry s1 = enf_t_via("100.64.9.0", 24, "198.18.0.5", 0);
    struct enf_route_entry s2 = enf_t_via("100.64.1.0", 24, "198.18.0.5", 0);
    assert_int_equal(enf_route_fake_put(r, &s1, PROTO_STATIC, TABLE_MAIN), 0);
    assert_int_equal(enf_route_fake_put(r, &s2, PROTO_OURS, 100), 0);

    struct enf_route_entry d = enf_t_via("100.64.1.0", 24, "198.18.0.2", 0);
    enf_t_apply_ok(r, &d, 1);
    enf_t_apply_ok(r, NULL, 0);
    struct enf_route_stats st = enf_t_stats(r);
    assert_int_equal(st.added, 1);
    assert_int_equal(st.removed, 1);
    assert_int_equal(st.errors, 0);
    /* Both others survive; drop them to prove they were there. */
    assert_int_equal(enf_route_fake_drop(r, &s1, PROTO_STATIC, TABLE_MAIN), 0);
    assert_int_equal(enf_route_fake_drop(r, &s2, PROTO_OURS, 100), 0);
}

static void test_foreign_same_dst_not_clobbered(void **state)
{
    struct enf_route *r = *state;
    struct enf_route_entry s = enf_t_via("100.64.4.0", 24, "198.18.0.6", 0);
    assert_int_equal(enf_route_fake_put(r, &s, PROTO_STATIC, TABLE_MAIN), 0);

    struct enf_route_entry d[2] = {
        enf_t_via("100.64.1.0", 24, "198.18.0.2", 0),
        enf_t_via("100.64.4.0", 24, "198.18.0.2", 0),
    };
    char err[256];
    assert_int_equal(enf_route_apply(r, d, 2, err, sizeof(err)), -EEXIST);
    assert_string_equal(
        err, "route 100.64.4.0/24 metric 0: held by protocol static");
    struct enf_route_stats st = enf_t_stats(r);
    assert_int_equal(st.added, 1);
    assert_int_equal(st.errors, 1);
    assert_int_equal(st.installed, 1);
    /* The static route is intact (it would be gone if we had replaced it). */
    assert_int_equal(enf_route_fake_drop(r, &s, PROTO_STATIC, TABLE_MAIN), 0);
    assert_int_equal(enf_route_fake_put(r, &s, PROTO_STATIC, TABLE_MAIN), 0);

    /* With another metric both routes can live side by side. */
    d[1].metric = 50;
    enf_t_apply_ok(r, d, 2);
    st = enf_t_stats(r);
    assert_int_equal(st.added, 2);
    assert_int_equal(st.installed, 2);
    assert_int_equal(enf_t_fake_size(r), 3);
}

static void test_ipv6_default_metric(void **state)
{
    struct enf_route *r = *state;
    struct enf_route_entry d[2] = {
        enf_t_dev("fd00:64::", 64, "ovt0", 0),
        enf_t_via("fd00:65::", 48, "fd00:18::2", 0),
    };
    enf_t_apply_ok(r, d, 2);
    struct enf_route_entry got;
    assert_true(enf_t_find(r, "fd00:64::", 64, &got));
    assert_int_equal(got.metric, ENF_ROUTE_METRIC6_DEFAULT);
    assert_string_equal(got.dev, "ovt0");
    /* The kernel reports 1024 for metric 0: still idempotent. */
    uint64_t before = enf_t_fake_requests(r);
    enf_t_apply_ok(r, d, 2);
    assert_int_equal(enf_t_fake_requests(r), before);
    assert_int_equal(enf_t_stats(r).replaced, 0);
}

static void test_missing_dev_others_applied(void **state)
{
    struct enf_route *r = *state;
    assert_int_equal(enf_route_fake_fail_dev(r, "tun9", -ENODEV), 0);
    struct enf_route_entry d[3] = {
        enf_t_via("100.64.1.0", 24, "198.18.0.2", 0),
        enf_t_dev("100.64.5.0", 24, "tun9", 0),
        enf_t_dev("100.64.6.0", 24, "ovt0", 0),
    };
    char err[256];
    assert_int_equal(enf_route_apply(r, d, 3, err, sizeof(err)), -ENODEV);
    assert_non_null(strstr(err, "route 100.64.5.0/24: "));
    assert_non_null(strstr(err, ovha_strerror(-ENODEV)));
    assert_null(strstr(err, "more failures"));
    struct enf_route_stats st = enf_t_stats(r);
    assert_int_equal(st.added, 2);
    assert_int_equal(st.errors, 1);
    assert_int_equal(st.installed, 2);

    /* The device appears: the next apply retries. */
    assert_int_equal(enf_route_fake_fail_dev(r, NULL, 0), 0);
    enf_t_apply_ok(r, d, 3);
    st = enf_t_stats(r);
    assert_int_equal(st.added, 3);
    assert_int_equal(st.installed, 3);
}

static void test_first_failure_returned(void **state)
{
    struct enf_route *r = *state;
    struct enf_route_entry d[3] = {
        enf_t_via("100.64.1.0", 24, "198.18.0.2", 0),
        enf_t_via("100.64.2.0", 24, "198.18.0.2", 0),
        enf_t_via("100.64.3.0", 24, "198.18.0.2", 0),
    };
    assert_int_equal(enf_route_fake_fail_requests(r, 2, -ENOBUFS), 0);
    char err[256];
    assert_int_equal(enf_route_apply(r, d, 3, err, sizeof(err)), -ENOBUFS);
    assert_non_null(strstr(err, "(and 1 more failures)"));
    struct enf_route_stats st = enf_t_stats(r);
    assert_int_equal(st.errors, 2);
    assert_int_equal(st.added, 1);
    assert_int_equal(st.installed, 1);

    /* A failed delete leaves the route; the next apply removes it. */
    assert_int_equal(enf_route_fake_fail_requests(r, 1, -EBUSY), 0);
    assert_int_equal(enf_route_apply(r, NULL, 0, err, sizeof(err)), -EBUSY);
    assert_non_null(strstr(err, "delete"));
    assert_int_equal(enf_t_stats(r).installed, 1);
    enf_t_apply_ok(r, NULL, 0);
    assert_int_equal(enf_t_stats(r).installed, 0);
    assert_int_equal(enf_t_fake_size(r), 0);
}

static void test_delete_of_vanished_route(void **state)
{
    struct enf_route *r = *state;
    struct enf_route_entry d = enf_t_via("100.64.1.0", 24, "198.18.0.2", 0);
    enf_t_apply_ok(r, &d, 1);
    /* The route disappears between the dump and the delete. */
    assert_int_equal(enf_route_fake_fail_requests(r, 1, -ESRCH), 0);
    enf_t_apply_ok(r, NULL, 0);
    struct enf_route_stats st = enf_t_stats(r);
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.removed, 0);
    assert_int_equal(st.installed, 0);
}

static void test_dump_failure(void **state)
{
    struct enf_route *r = *state;
    struct enf_route_entry d = enf_t_via("100.64.1.0", 24, "198.18.0.2", 0);
    assert_int_equal(enf_route_fake_fail_dump(r, -EIO), 0);
    char err[256];
    assert_int_equal(enf_route_apply(r, &d, 1, err, sizeof(err)), -EIO);
    assert_non_null(strstr(err, "dump"));
    assert_int_equal(enf_t_fake_requests(r), 0);
    struct enf_route_entry *v = NULL;
    size_t n = 0;
    assert_int_equal(enf_route_list(r, &v, &n), -EIO);
    assert_int_equal(enf_t_stats(r).errors, 1);
}

static void test_protocol_and_table_config(void **state)
{
    (void)state;
    struct enf_route_config cfg = { .backend = "fake",
                                    .protocol = 200,
                                    .table = 100 };
    struct enf_route *r = NULL;
    char err[256];
    assert_int_equal(enf_route_new(&cfg, &r, err, sizeof(err)), 0);
    struct enf_route_entry d = enf_t_via("100.64.1.0", 24, "198.18.0.2", 0);
    /* A route with the default protocol in table 100 is foreign here. */
    assert_int_equal(enf_route_fake_put(r, &d, PROTO_OURS, 100), 0);
    assert_int_equal(enf_route_apply(r, &d, 1, err, sizeof(err)), -EEXIST);
    assert_non_null(strstr(err, "held by protocol 233"));
    d.metric = 1;
    enf_t_apply_ok(r, &d, 1);
    enf_t_apply_ok(r, NULL, 0);
    assert_int_equal(enf_t_fake_size(r), 1);
    enf_route_free(r);
}

static void test_default_route_and_list_order(void **state)
{
    struct enf_route *r = *state;
    struct enf_route_entry d[3] = {
        enf_t_via("100.64.9.0", 24, "198.18.0.2", 0),
        enf_t_via("0.0.0.0", 0, "198.18.0.2", 0),
        enf_t_via("100.64.1.0", 24, "198.18.0.2", 0),
    };
    enf_t_apply_ok(r, d, 3);
    struct enf_route_entry *v = NULL;
    size_t n = 0;
    assert_int_equal(enf_route_list(r, &v, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(v[0].dst, "0.0.0.0");
    assert_int_equal(v[0].prefix, 0);
    assert_string_equal(v[1].dst, "100.64.1.0");
    assert_string_equal(v[2].dst, "100.64.9.0");
    free(v);
}

/* Every allocation failure point: no crash, no leak (ASan), and either
 * success or -ENOMEM. */
static void test_alloc_failures(void **state)
{
    (void)state;
    struct enf_route_entry d[3] = {
        enf_t_via("100.64.1.0", 24, "198.18.0.2", 0),
        enf_t_via("100.64.2.0", 24, "198.18.0.2", 0),
        enf_t_dev("fd00:64::", 64, "ovt0", 0),
    };
    bool succeeded = false;
    for (long k = 0; k < 64 && !succeeded; k++) {
        struct enf_route_config cfg = { .backend = "fake" };
        struct enf_route *r = NULL;
        char err[256];
        ovha_alloc_fail_after(k);
        int rc = enf_route_new(&cfg, &r, err, sizeof(err));
        if (rc == 0) {
            rc = enf_route_apply(r, d, 3, err, sizeof(err));
            succeeded = rc == 0;
        }
        ovha_alloc_fail_after(-1);
        assert_true(rc == 0 || rc == -ENOMEM);
        enf_route_free(r);
    }
    assert_true(succeeded);
}

const struct CMUnitTest enf_route_tests[] = {
    cmocka_unit_test_setup_teardown(test_validation,
                                    enf_t_setup,
                                    enf_t_teardown),
    cmocka_unit_test_setup_teardown(test_duplicates_change_nothing,
                                    enf_t_setup,
                                    enf_t_teardown),
    cmocka_unit_test(test_new_errors),
    cmocka_unit_test_setup_teardown(test_add_and_idempotent,
                                    enf_t_setup,
                                    enf_t_teardown),
    cmocka_unit_test_setup_teardown(test_restores_hand_deleted,
                                    enf_t_setup,
                                    enf_t_teardown),
    cmocka_unit_test_setup_teardown(test_replaces_hand_altered,
                                    enf_t_setup,
                                    enf_t_teardown),
    cmocka_unit_test_setup_teardown(test_metric_change_supersedes,
                                    enf_t_setup,
                                    enf_t_teardown),
    cmocka_unit_test_setup_teardown(test_removes_undesired,
                                    enf_t_setup,
                                    enf_t_teardown),
    cmocka_unit_test_setup_teardown(test_foreign_untouched,
                                    enf_t_setup,
                                    enf_t_teardown),
    cmocka_unit_test_setup_teardown(test_foreign_same_dst_not_clobbered,
                                    enf_t_setup,
                                    enf_t_teardown),
    cmocka_unit_test_setup_teardown(test_ipv6_default_metric,
                                    enf_t_setup,
                                    enf_t_teardown),
    cmocka_unit_test_setup_teardown(test_missing_dev_others_applied,
                                    enf_t_setup,
                                    enf_t_teardown),
    cmocka_unit_test_setup_teardown(test_first_failure_returned,
                                    enf_t_setup,
                                    enf_t_teardown),
    cmocka_unit_test_setup_teardown(test_delete_of_vanished_route,
                                    enf_t_setup,
                                    enf_t_teardown),
    cmocka_unit_test_setup_teardown(test_dump_failure,
                                    enf_t_setup,
                                    enf_t_teardown),
    cmocka_unit_test(test_protocol_and_table_config),
    cmocka_unit_test_setup_teardown(test_default_route_and_list_order,
                                    enf_t_setup,
                                    enf_t_teardown),
    cmocka_unit_test(test_alloc_failures),
};
const size_t enf_route_ntests =
    sizeof(enf_route_tests) / sizeof(enf_route_tests[0]);
