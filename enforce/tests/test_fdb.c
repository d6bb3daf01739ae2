/* enforce/fdb unit tests: MAC canonicalisation, validation and
 * convergence on the fake backend (an in-memory bridge FDB with the
 * kernel's one-entry-per-MAC and replace semantics, and a tap link). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "enforce/fdb.h"
#include "enforce/fdb_int.h"
#include "enforce/tests/tests.h"

#define TAP    "ovtap0"
#define UPLINK "ovup0"

#define MAC_A "02:00:5e:64:00:0a"
#define MAC_B "02:00:5e:64:00:0b"
#define MAC_C "02:00:5e:64:00:0c"
#define MAC_D "02:00:5e:64:00:0d"

static struct enf_fdb_config enf_tf_cfg(void)
{
    struct enf_fdb_config cfg = {
        .backend = "fake", .bridge = "ovbr0", .tap = TAP, .uplink = UPLINK
    };
    return cfg;
}

static int enf_tf_setup(void **state)
{
    struct enf_fdb_config cfg = enf_tf_cfg();
    struct enf_fdb *f = NULL;
    char err[256];
    assert_int_equal(enf_fdb_new(&cfg, &f, err, sizeof(err)), 0);
    *state = f;
    return 0;
}

static int enf_tf_teardown(void **state)
{
    enf_fdb_free(*state);
    return 0;
}

static struct enf_fdb_entry enf_tf_e(const char *mac, const char *port)
{
    struct enf_fdb_entry e;
    memset(&e, 0, sizeof(e));
    ovha_strlcpy(e.mac, mac, sizeof(e.mac));
    ovha_strlcpy(e.port, port, sizeof(e.port));
    return e;
}

static struct enf_fdb_stats enf_tf_stats(struct enf_fdb *f)
{
    struct enf_fdb_stats st;
    enf_fdb_get_stats(f, &st);
    return st;
}

/* adds + dels + attaches the fake was asked. */
static uint64_t enf_tf_requests(struct enf_fdb *f)
{
    uint64_t adds, dels, attaches;
    size_t size;
    assert_int_equal(enf_fdb_fake_counts(f, &adds, &dels, &attaches, &size), 0);
    return adds + dels + attaches;
}

static size_t enf_tf_size(struct enf_fdb *f)
{
    uint64_t adds, dels, attaches;
    size_t size;
    assert_int_equal(enf_fdb_fake_counts(f, &adds, &dels, &attaches, &size), 0);
    return size;
}

static void enf_tf_apply_ok(struct enf_fdb *f,
                            const struct enf_fdb_entry *d,
                            size_t n)
{
    char err[256];
    int rc = enf_fdb_apply(f, d, n, err, sizeof(err));
    if (rc != 0) {
        fail_msg("apply: %d: %s", rc, err);
    }
}

/* The fake's entry for mac must be exactly this. */
static void enf_tf_expect(struct enf_fdb *f,
                          const char *mac,
                          const char *port,
                          enum enf_fdb_kind kind,
                          bool sticky)
{
    struct enf_fdb_ent e;
    int rc = enf_fdb_fake_get(f, mac, &e);
    if (rc != 0) {
        fail_msg("%s: no entry (%d)", mac, rc);
    }
    if (strcmp(e.port, port) != 0 || e.kind != kind || e.sticky != sticky) {
        fail_msg("%s: port %s kind %u sticky %d, want %s %u %d", mac, e.port,
                 e.kind, e.sticky, port, kind, sticky);
    }
}

static void enf_tf_expect_none(struct enf_fdb *f, const char *mac)
{
    struct enf_fdb_ent e;
    assert_int_equal(enf_fdb_fake_get(f, mac, &e), -ENOENT);
}

static void enf_tf_expect_tap(struct enf_fdb *f, bool enslaved, bool up)
{
    bool ex, sl, u;
    assert_int_equal(enf_fdb_fake_get_tap(f, &ex, &sl, &u), 0);
    assert_true(ex);
    assert_int_equal(sl, enslaved);
    assert_int_equal(u, up);
}

static size_t enf_tf_count(struct enf_fdb *f)
{
    struct enf_fdb_entry *v = NULL;
    size_t n = 0;
    assert_int_equal(enf_fdb_list(f, &v, &n), 0);
    free(v);
    return n;
}

/* ---- MAC canonicalisation ------------------------------------------------ */

static void enf_tf_canon_ok(const char *in, const char *want)
{
    char out[ENF_FDB_MAC_LEN];
    memset(out, 'x', sizeof(out));
    int rc = enf_fdb_mac_canon(in, out);
    if (rc != 0 || strcmp(out, want) != 0) {
        fail_msg("canon(\"%s\") = %d \"%.17s\", want \"%s\"", in, rc, out,
                 want);
    }
}

static void enf_tf_canon_bad(const char *in)
{
    char out[ENF_FDB_MAC_LEN] = "untouched";
    int rc = enf_fdb_mac_canon(in, out);
    if (rc != -EINVAL || strcmp(out, "untouched") != 0) {
        fail_msg("canon(\"%s\") = %d \"%s\", want -EINVAL", in ? in : "NULL",
                 rc, out);
    }
}

static void test_mac_canon(void **state)
{
    (void)state;
    enf_tf_canon_ok("02:00:5e:64:00:0a", "02:00:5e:64:00:0a");
    enf_tf_canon_ok("AA:BB:CC:DD:EE:FF", "aa:bb:cc:dd:ee:ff");
    enf_tf_canon_ok("aa-bb-cc-dd-ee-ff", "aa:bb:cc:dd:ee:ff");
    enf_tf_canon_ok("0A-0b-Cc-dD-E0-f1", "0a:0b:cc:dd:e0:f1");
    enf_tf_canon_ok("00:00:00:00:00:01", "00:00:00:00:00:01");
    enf_tf_canon_ok("fe:ff:ff:ff:ff:ff", "fe:ff:ff:ff:ff:ff");

    enf_tf_canon_bad(NULL);
    enf_tf_canon_bad("");
    enf_tf_canon_bad("aa:bb:cc:dd:ee");
    enf_tf_canon_bad("aa:bb:cc:dd:ee:f");
    enf_tf_canon_bad("aa:bb:cc:dd:ee:ff:");
    enf_tf_canon_bad("aa:bb:cc:dd:ee:ff:00");
    enf_tf_canon_bad(" aa:bb:cc:dd:ee:f");
    enf_tf_canon_bad("aa:bb-cc:dd:ee:ff"); /* mixed separators */
    enf_tf_canon_bad("aa.bb.cc.dd.ee.ff");
    enf_tf_canon_bad("aabb.ccdd.eeff");
    enf_tf_canon_bad("aabbccddeeff");
    enf_tf_canon_bad("ga:bb:cc:dd:ee:ff");
    enf_tf_canon_bad("a:bbb:cc:dd:ee:ff");
    enf_tf_canon_bad("+a:bb:cc:dd:ee:ff");
    /* Group bit: multicast, broadcast; and all zero. */
    enf_tf_canon_bad("01:00:5e:00:00:01");
    enf_tf_canon_bad("33:33:00:00:00:01");
    enf_tf_canon_bad("03:00:00:00:00:00");
    enf_tf_canon_bad("ff:ff:ff:ff:ff:ff");
    enf_tf_canon_bad("FF-FF-FF-FF-FF-FF");
    enf_tf_canon_bad("00:00:00:00:00:00");
    enf_tf_canon_bad("00-00-00-00-00-00");
}

/* ---- configuration and validation ---------------------------------------- */

static void enf_tf_new_bad(const struct enf_fdb_config *cfg, const char *needle)
{
    struct enf_fdb *f = NULL;
    char err[256] = "";
    assert_int_equal(enf_fdb_new(cfg, &f, err, sizeof(err)), -EINVAL);
    assert_null(f);
    if (needle != NULL && strstr(err, needle) == NULL) {
        fail_msg("errbuf \"%s\" lacks \"%s\"", err, needle);
    }
}

static void test_new_errors(void **state)
{
    (void)state;
    enf_tf_new_bad(NULL, NULL);
    struct enf_fdb_config cfg = enf_tf_cfg();
    cfg.backend = "bsd";
    enf_tf_new_bad(&cfg, "unknown backend \"bsd\"");
    cfg.backend = NULL;
    enf_tf_new_bad(&cfg, "unknown backend");
    cfg = enf_tf_cfg();
    cfg.bridge = "";
    enf_tf_new_bad(&cfg, "bridge name is empty");
    cfg = enf_tf_cfg();
    cfg.uplink = NULL;
    enf_tf_new_bad(&cfg, "uplink name is empty");
    cfg = enf_tf_cfg();
    cfg.tap = "abcdefghijklmnop"; /* 16 bytes */
    enf_tf_new_bad(&cfg, "tap name longer than 15");
    cfg = enf_tf_cfg();
    cfg.uplink = TAP;
    enf_tf_new_bad(&cfg, "three devices");
    cfg = enf_tf_cfg();
    cfg.tap = "ovbr0";
    enf_tf_new_bad(&cfg, "three devices");

    /* 15 bytes is fine. */
    cfg = enf_tf_cfg();
    cfg.tap = "abcdefghijklmno";
    struct enf_fdb *f = NULL;
    char err[256];
    assert_int_equal(enf_fdb_new(&cfg, &f, err, sizeof(err)), 0);
    struct enf_fdb_entry e = enf_tf_e(MAC_A, "abcdefghijklmno");
    enf_tf_apply_ok(f, &e, 1);
    enf_fdb_free(f);
    enf_fdb_free(NULL);
}

static void enf_tf_expect_invalid(struct enf_fdb *f,
                                  struct enf_fdb_entry bad,
                                  const char *needle)
{
    struct enf_fdb_entry d[3] = {
        enf_tf_e(MAC_A, TAP),
        enf_tf_e(MAC_B, UPLINK),
        bad,
    };
    char err[256];
    uint64_t before = enf_tf_requests(f);
    assert_int_equal(enf_fdb_apply(f, d, 3, err, sizeof(err)), -EINVAL);
    if (strstr(err, needle) == NULL) {
        fail_msg("errbuf \"%s\" lacks \"%s\"", err, needle);
    }
    /* Nothing changed: no request at all, the tap not even attached. */
    assert_int_equal(enf_tf_requests(f), before);
    assert_int_equal(enf_tf_size(f), 0);
    enf_tf_expect_tap(f, false, false);
}

static void test_validation(void **state)
{
    struct enf_fdb *f = *state;
    struct enf_fdb_entry e;

    enf_tf_expect_invalid(f, enf_tf_e("02:00:5e:64:00", TAP),
                          "fdb entry 2: mac \"02:00:5e:64:00\"");
    enf_tf_expect_invalid(f, enf_tf_e("01:00:5e:00:00:01", TAP), "unicast");
    enf_tf_expect_invalid(f, enf_tf_e("ff:ff:ff:ff:ff:ff", UPLINK), "unicast");
    enf_tf_expect_invalid(f, enf_tf_e(MAC_C, "ovt9"),
                          "port \"ovt9\" is neither tap ovtap0 nor uplink "
                          "ovup0");
    enf_tf_expect_invalid(f, enf_tf_e(MAC_C, ""), "port \"\"");
    enf_tf_expect_invalid(f, enf_tf_e(MAC_C, "ovbr0"), "port \"ovbr0\"");
    e = enf_tf_e(MAC_C, TAP);
    memset(e.port, 'a', sizeof(e.port));
    enf_tf_expect_invalid(f, e, "port longer than 15");
    e = enf_tf_e(MAC_C, TAP);
    memset(e.mac, 'a', sizeof(e.mac));
    enf_tf_expect_invalid(f, e, "mac is not terminated");
}

static void test_duplicates_change_nothing(void **state)
{
    struct enf_fdb *f = *state;
    struct enf_fdb_entry one = enf_tf_e(MAC_D, UPLINK);
    enf_tf_apply_ok(f, &one, 1);
    uint64_t before = enf_tf_requests(f);

    /* The same MAC in another spelling, on the other port. */
    struct enf_fdb_entry d[3] = {
        enf_tf_e(MAC_A, TAP),
        enf_tf_e(MAC_B, UPLINK),
        enf_tf_e("02-00-5E-64-00-0A", UPLINK),
    };
    char err[256];
    assert_int_equal(enf_fdb_apply(f, d, 3, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "fdb 02:00:5e:64:00:0a: desired twice");
    assert_int_equal(enf_tf_requests(f), before);
    enf_tf_expect(f, MAC_D, UPLINK, ENF_FDB_STATIC, true);
    assert_int_equal(enf_tf_size(f), 1);
    assert_int_equal(enf_tf_stats(f).installed, 1);
}

/* ---- convergence --------------------------------------------------------- */

static void test_add_and_idempotent(void **state)
{
    struct enf_fdb *f = *state;
    struct enf_fdb_entry d[3] = {
        enf_tf_e("02:00:5E:64:00:0C", TAP),
        enf_tf_e(MAC_A, UPLINK),
        enf_tf_e("02-00-5e-64-00-0b", TAP),
    };
    enf_tf_apply_ok(f, d, 3);
    struct enf_fdb_stats st = enf_tf_stats(f);
    assert_int_equal(st.applies, 1);
    assert_int_equal(st.added, 3);
    assert_int_equal(st.attached, 1);
    assert_int_equal(st.replaced + st.removed + st.errors, 0);
    assert_int_equal(st.installed, 3);
    enf_tf_expect_tap(f, true, true);
    enf_tf_expect(f, MAC_A, UPLINK, ENF_FDB_STATIC, true);
    enf_tf_expect(f, MAC_B, TAP, ENF_FDB_STATIC, true);
    enf_tf_expect(f, MAC_C, TAP, ENF_FDB_STATIC, true);

    /* Listed sorted by MAC, in canonical form. */
    struct enf_fdb_entry *v = NULL;
    size_t n = 0;
    assert_int_equal(enf_fdb_list(f, &v, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(v[0].mac, MAC_A);
    assert_string_equal(v[0].port, UPLINK);
    assert_string_equal(v[1].mac, MAC_B);
    assert_string_equal(v[1].port, TAP);
    assert_string_equal(v[2].mac, MAC_C);
    assert_string_equal(v[2].port, TAP);
    free(v);

    uint64_t before = enf_tf_requests(f);
    enf_tf_apply_ok(f, d, 3);
    st = enf_tf_stats(f);
    assert_int_equal(st.applies, 2);
    assert_int_equal(st.added, 3);
    assert_int_equal(st.attached, 1);
    assert_int_equal(st.replaced + st.removed + st.errors, 0);
    assert_int_equal(st.installed, 3);
    assert_int_equal(enf_tf_requests(f), before);
}

static void test_failover_replaces(void **state)
{
    struct enf_fdb *f = *state;
    struct enf_fdb_entry d[2] = {
        enf_tf_e(MAC_A, TAP),
        enf_tf_e(MAC_B, UPLINK),
    };
    enf_tf_apply_ok(f, d, 2);
    /* The clients swap gateways. */
    d[0] = enf_tf_e(MAC_A, UPLINK);
    d[1] = enf_tf_e(MAC_B, TAP);
    enf_tf_apply_ok(f, d, 2);
    struct enf_fdb_stats st = enf_tf_stats(f);
    assert_int_equal(st.added, 2);
    assert_int_equal(st.replaced, 2);
    assert_int_equal(st.removed, 0);
    assert_int_equal(st.installed, 2);
    enf_tf_expect(f, MAC_A, UPLINK, ENF_FDB_STATIC, true);
    enf_tf_expect(f, MAC_B, TAP, ENF_FDB_STATIC, true);
    assert_int_equal(enf_tf_size(f), 2);
}

static void test_removes_undesired(void **state)
{
    struct enf_fdb *f = *state;
    struct enf_fdb_entry d[3] = {
        enf_tf_e(MAC_A, TAP),
        enf_tf_e(MAC_B, UPLINK),
        enf_tf_e(MAC_C, TAP),
    };
    enf_tf_apply_ok(f, d, 3);
    enf_tf_apply_ok(f, &d[1], 1);
    struct enf_fdb_stats st = enf_tf_stats(f);
    assert_int_equal(st.removed, 2);
    assert_int_equal(st.installed, 1);
    enf_tf_expect_none(f, MAC_A);
    enf_tf_expect(f, MAC_B, UPLINK, ENF_FDB_STATIC, true);
    enf_tf_apply_ok(f, NULL, 0);
    st = enf_tf_stats(f);
    assert_int_equal(st.removed, 3);
    assert_int_equal(st.installed, 0);
    assert_int_equal(enf_tf_size(f), 0);
    /* The tap stays in the bridge with nothing on it. */
    enf_tf_expect_tap(f, true, true);
}

/* Learned, permanent, extern-learned entries and static entries on other
 * ports: never deleted or changed. */
static void enf_tf_put_foreign(struct enf_fdb *f)
{
    assert_int_equal(enf_fdb_fake_put(f, "02:00:5e:64:01:01", UPLINK,
                                      ENF_FDB_PERMANENT, false),
                     0);
    assert_int_equal(enf_fdb_fake_put(f, "02:00:5e:64:01:02", UPLINK,
                                      ENF_FDB_LEARNED, false),
                     0);
    assert_int_equal(
        enf_fdb_fake_put(f, "02:00:5e:64:01:03", "ovx0", ENF_FDB_STATIC, false),
        0);
    assert_int_equal(
        enf_fdb_fake_put(f, "02:00:5e:64:01:04", UPLINK, ENF_FDB_EXTERN, false),
        0);
    assert_int_equal(enf_fdb_fake_put(f, "02:00:5e:64:01:05", "ovx0",
                                      ENF_FDB_LEARNED, false),
                     0);
}

static void enf_tf_expect_foreign(struct enf_fdb *f)
{
    enf_tf_expect(f, "02:00:5e:64:01:01", UPLINK, ENF_FDB_PERMANENT, false);
    enf_tf_expect(f, "02:00:5e:64:01:02", UPLINK, ENF_FDB_LEARNED, false);
    enf_tf_expect(f, "02:00:5e:64:01:03", "ovx0", ENF_FDB_STATIC, false);
    enf_tf_expect(f, "02:00:5e:64:01:04", UPLINK, ENF_FDB_EXTERN, false);
    enf_tf_expect(f, "02:00:5e:64:01:05", "ovx0", ENF_FDB_LEARNED, false);
}

static void test_foreign_untouched(void **state)
{
    struct enf_fdb *f = *state;
    enf_tf_put_foreign(f);
    struct enf_fdb_entry d[2] = {
        enf_tf_e(MAC_A, TAP),
        enf_tf_e(MAC_B, UPLINK),
    };
    enf_tf_apply_ok(f, d, 2);
    assert_int_equal(enf_tf_count(f), 2);
    assert_int_equal(enf_tf_stats(f).installed, 2);
    enf_tf_apply_ok(f, NULL, 0);
    struct enf_fdb_stats st = enf_tf_stats(f);
    assert_int_equal(st.added, 2);
    assert_int_equal(st.removed, 2);
    assert_int_equal(st.errors + st.replaced, 0);
    assert_int_equal(st.installed, 0);
    enf_tf_expect_foreign(f);
    assert_int_equal(enf_tf_size(f), 5);
    assert_int_equal(enf_tf_count(f), 0);
}

static void test_foreign_holder_reported(void **state)
{
    struct enf_fdb *f = *state;
    enf_tf_put_foreign(f);
    struct enf_fdb_entry d[5] = {
        enf_tf_e(MAC_A, TAP),
        enf_tf_e("02:00:5e:64:01:01", TAP),    /* permanent */
        enf_tf_e("02:00:5e:64:01:03", UPLINK), /* static on ovx0 */
        enf_tf_e("02:00:5e:64:01:04", TAP),    /* extern-learned */
        enf_tf_e(MAC_B, UPLINK),
    };
    char err[256];
    assert_int_equal(enf_fdb_apply(f, d, 5, err, sizeof(err)), -EEXIST);
    assert_string_equal(err,
                        "fdb 02:00:5e:64:01:01: held by a permanent entry on "
                        "ovup0 (and 2 more failures)");
    struct enf_fdb_stats st = enf_tf_stats(f);
    assert_int_equal(st.added, 2);
    assert_int_equal(st.errors, 3);
    assert_int_equal(st.installed, 2);
    enf_tf_expect_foreign(f);

    d[1] = enf_tf_e("02:00:5e:64:01:03", UPLINK);
    assert_int_equal(enf_fdb_apply(f, d, 2, err, sizeof(err)), -EEXIST);
    assert_string_equal(
        err, "fdb 02:00:5e:64:01:03: held by a static entry on ovx0");
    d[1] = enf_tf_e("02:00:5e:64:01:04", UPLINK);
    assert_int_equal(enf_fdb_apply(f, d, 2, err, sizeof(err)), -EEXIST);
    assert_string_equal(
        err, "fdb 02:00:5e:64:01:04: held by an extern-learned entry on ovup0");
    enf_tf_expect_foreign(f);
}

static void test_learned_taken_over(void **state)
{
    struct enf_fdb *f = *state;
    /* The bridge learned the client's MAC from the LAN (its old gateway
     * still had it) and on an unmanaged port. */
    assert_int_equal(enf_fdb_fake_put(f, MAC_A, UPLINK, ENF_FDB_LEARNED, false),
                     0);
    assert_int_equal(enf_fdb_fake_put(f, MAC_B, "ovx0", ENF_FDB_LEARNED, false),
                     0);
    struct enf_fdb_entry d[2] = {
        enf_tf_e(MAC_A, TAP),
        enf_tf_e(MAC_B, UPLINK),
    };
    enf_tf_apply_ok(f, d, 2);
    struct enf_fdb_stats st = enf_tf_stats(f);
    assert_int_equal(st.added, 2);
    assert_int_equal(st.installed, 2);
    enf_tf_expect(f, MAC_A, TAP, ENF_FDB_STATIC, true);
    enf_tf_expect(f, MAC_B, UPLINK, ENF_FDB_STATIC, true);
    assert_int_equal(enf_tf_size(f), 2);
}

static void test_hand_edits_restored(void **state)
{
    struct enf_fdb *f = *state;
    struct enf_fdb_entry d[3] = {
        enf_tf_e(MAC_A, TAP),
        enf_tf_e(MAC_B, TAP),
        enf_tf_e(MAC_C, UPLINK),
    };
    enf_tf_apply_ok(f, d, 3);
    /* Deleted, moved to the other port, made non-sticky in place. */
    assert_int_equal(enf_fdb_fake_drop(f, MAC_A), 0);
    assert_int_equal(enf_fdb_fake_put(f, MAC_B, UPLINK, ENF_FDB_STATIC, false),
                     0);
    assert_int_equal(enf_fdb_fake_put(f, MAC_C, UPLINK, ENF_FDB_STATIC, false),
                     0);
    assert_int_equal(enf_tf_count(f), 2);
    enf_tf_apply_ok(f, d, 3);
    struct enf_fdb_stats st = enf_tf_stats(f);
    assert_int_equal(st.added, 4);
    assert_int_equal(st.replaced, 2);
    assert_int_equal(st.removed + st.errors, 0);
    assert_int_equal(st.installed, 3);
    enf_tf_expect(f, MAC_A, TAP, ENF_FDB_STATIC, true);
    enf_tf_expect(f, MAC_B, TAP, ENF_FDB_STATIC, true);
    enf_tf_expect(f, MAC_C, UPLINK, ENF_FDB_STATIC, true);

    /* A hand-added entry of ours (static on a managed port) that nobody
     * desires goes. */
    assert_int_equal(enf_fdb_fake_put(f, MAC_D, TAP, ENF_FDB_STATIC, false), 0);
    enf_tf_apply_ok(f, d, 3);
    assert_int_equal(enf_tf_stats(f).removed, 1);
    enf_tf_expect_none(f, MAC_D);
}

static void test_tap_missing_then_created(void **state)
{
    struct enf_fdb *f = *state;
    assert_int_equal(enf_fdb_fake_set_tap(f, false, false, false), 0);
    struct enf_fdb_entry d[3] = {
        enf_tf_e(MAC_A, TAP),
        enf_tf_e(MAC_B, UPLINK),
        enf_tf_e(MAC_C, TAP),
    };
    char err[256];
    assert_int_equal(enf_fdb_apply(f, d, 3, err, sizeof(err)), -ENODEV);
    char want[160];
    snprintf(want, sizeof(want), "fdb: tap ovtap0: %s (and 2 more failures)",
             ovha_strerror(-ENODEV));
    assert_string_equal(err, want);
    struct enf_fdb_stats st = enf_tf_stats(f);
    assert_int_equal(st.added, 1);
    assert_int_equal(st.attached, 0);
    assert_int_equal(st.errors, 3);
    assert_int_equal(st.installed, 1);
    enf_tf_expect(f, MAC_B, UPLINK, ENF_FDB_STATIC, true);

    /* openvpn starts and creates the tap. */
    assert_int_equal(enf_fdb_fake_set_tap(f, true, false, false), 0);
    enf_tf_apply_ok(f, d, 3);
    st = enf_tf_stats(f);
    assert_int_equal(st.added, 3);
    assert_int_equal(st.attached, 1);
    assert_int_equal(st.installed, 3);
    enf_tf_expect_tap(f, true, true);
    enf_tf_expect(f, MAC_A, TAP, ENF_FDB_STATIC, true);
    enf_tf_expect(f, MAC_C, TAP, ENF_FDB_STATIC, true);
}

static void test_tap_reattached(void **state)
{
    struct enf_fdb *f = *state;
    struct enf_fdb_entry d[2] = {
        enf_tf_e(MAC_A, TAP),
        enf_tf_e(MAC_B, UPLINK),
    };
    enf_tf_apply_ok(f, d, 2);
    /* Taken out of the bridge (its entries go with it). */
    assert_int_equal(enf_fdb_fake_set_tap(f, true, false, true), 0);
    enf_tf_expect_none(f, MAC_A);
    enf_tf_apply_ok(f, d, 2);
    struct enf_fdb_stats st = enf_tf_stats(f);
    assert_int_equal(st.attached, 2);
    assert_int_equal(st.added, 3);
    assert_int_equal(st.installed, 2);
    enf_tf_expect(f, MAC_A, TAP, ENF_FDB_STATIC, true);

    /* Only set down: brought up, not counted as an enslavement. */
    assert_int_equal(enf_fdb_fake_set_tap(f, true, true, false), 0);
    enf_tf_apply_ok(f, d, 2);
    st = enf_tf_stats(f);
    assert_int_equal(st.attached, 2);
    assert_int_equal(st.added, 3);
    enf_tf_expect_tap(f, true, true);

    /* openvpn restarts: the tap vanishes and comes back, out of the
     * bridge. */
    assert_int_equal(enf_fdb_fake_set_tap(f, false, false, false), 0);
    assert_int_equal(enf_fdb_fake_set_tap(f, true, false, false), 0);
    enf_tf_apply_ok(f, d, 2);
    st = enf_tf_stats(f);
    assert_int_equal(st.attached, 3);
    assert_int_equal(st.added, 4);
    enf_tf_expect(f, MAC_A, TAP, ENF_FDB_STATIC, true);
}

static void test_partial_failure_retried(void **state)
{
    struct enf_fdb *f = *state;
    enf_tf_apply_ok(f, NULL, 0); /* the tap is attached */
    struct enf_fdb_entry d[3] = {
        enf_tf_e(MAC_A, TAP),
        enf_tf_e(MAC_B, UPLINK),
        enf_tf_e(MAC_C, TAP),
    };
    assert_int_equal(enf_fdb_fake_fail_requests(f, 2, -ENOBUFS), 0);
    char err[256];
    assert_int_equal(enf_fdb_apply(f, d, 3, err, sizeof(err)), -ENOBUFS);
    assert_non_null(strstr(err, "fdb 02:00:5e:64:00:0a on ovtap0: "));
    assert_non_null(strstr(err, "(and 1 more failures)"));
    struct enf_fdb_stats st = enf_tf_stats(f);
    assert_int_equal(st.errors, 2);
    assert_int_equal(st.added, 1);
    assert_int_equal(st.installed, 1);
    enf_tf_expect(f, MAC_C, TAP, ENF_FDB_STATIC, true);

    enf_tf_apply_ok(f, d, 3);
    st = enf_tf_stats(f);
    assert_int_equal(st.added, 3);
    assert_int_equal(st.installed, 3);

    /* A failed delete leaves the entry; the next apply removes it. */
    assert_int_equal(enf_fdb_fake_fail_requests(f, 1, -EBUSY), 0);
    assert_int_equal(enf_fdb_apply(f, &d[1], 1, err, sizeof(err)), -EBUSY);
    assert_non_null(strstr(err, "on ovtap0: delete: "));
    assert_int_equal(enf_tf_stats(f).installed, 2);
    assert_int_equal(enf_tf_stats(f).removed, 1);
    enf_tf_apply_ok(f, &d[1], 1);
    assert_int_equal(enf_tf_stats(f).installed, 1);
    assert_int_equal(enf_tf_stats(f).removed, 2);
    assert_int_equal(enf_tf_size(f), 1);

    /* A failed replace keeps nothing stale: the entry on the old port is
     * swept, the next apply installs the new one. */
    d[1] = enf_tf_e(MAC_B, TAP);
    assert_int_equal(enf_fdb_fake_fail_requests(f, 1, -ENOBUFS), 0);
    assert_int_equal(enf_fdb_apply(f, &d[1], 1, err, sizeof(err)), -ENOBUFS);
    enf_tf_expect_none(f, MAC_B);
    enf_tf_apply_ok(f, &d[1], 1);
    enf_tf_expect(f, MAC_B, TAP, ENF_FDB_STATIC, true);
}

static void test_attach_failure(void **state)
{
    struct enf_fdb *f = *state;
    struct enf_fdb_entry d[2] = {
        enf_tf_e(MAC_A, TAP),
        enf_tf_e(MAC_B, UPLINK),
    };
    assert_int_equal(enf_fdb_fake_fail_requests(f, 1, -EBUSY), 0);
    char err[256];
    assert_int_equal(enf_fdb_apply(f, d, 2, err, sizeof(err)), -EBUSY);
    assert_non_null(strstr(err, "fdb: tap ovtap0: "));
    /* The tap is not a port: its entry fails, the uplink's is added. */
    assert_non_null(strstr(err, "(and 1 more failures)"));
    enf_tf_expect_none(f, MAC_A);
    enf_tf_expect(f, MAC_B, UPLINK, ENF_FDB_STATIC, true);
    enf_tf_expect_tap(f, false, false);
    enf_tf_apply_ok(f, d, 2);
    enf_tf_expect(f, MAC_A, TAP, ENF_FDB_STATIC, true);
    assert_int_equal(enf_tf_stats(f).attached, 1);
}

static void test_delete_of_vanished_entry(void **state)
{
    struct enf_fdb *f = *state;
    struct enf_fdb_entry d = enf_tf_e(MAC_A, TAP);
    enf_tf_apply_ok(f, &d, 1);
    /* The entry disappears between the dump and the delete. */
    assert_int_equal(enf_fdb_fake_fail_requests(f, 1, -ENOENT), 0);
    enf_tf_apply_ok(f, NULL, 0);
    struct enf_fdb_stats st = enf_tf_stats(f);
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.removed, 0);
    assert_int_equal(st.installed, 0);
}

static void test_dump_failure(void **state)
{
    struct enf_fdb *f = *state;
    struct enf_fdb_entry d = enf_tf_e(MAC_A, TAP);
    assert_int_equal(enf_fdb_fake_fail_dump(f, -EIO), 0);
    char err[256];
    assert_int_equal(enf_fdb_apply(f, &d, 1, err, sizeof(err)), -EIO);
    assert_non_null(strstr(err, "fdb: bridge ovbr0: dump: "));
    assert_int_equal(enf_tf_requests(f), 0);
    enf_tf_expect_tap(f, false, false);
    struct enf_fdb_entry *v = NULL;
    size_t n = 0;
    assert_int_equal(enf_fdb_list(f, &v, &n), -EIO);
    assert_int_equal(enf_tf_stats(f).errors, 1);
    assert_int_equal(enf_fdb_fake_fail_dump(f, 0), 0);
    enf_tf_apply_ok(f, &d, 1);
}

/* The hooks refuse what they cannot express, and other backends. */
static void test_fake_hooks(void **state)
{
    struct enf_fdb *f = *state;
    assert_int_equal(enf_fdb_fake_put(f, "nope", TAP, ENF_FDB_STATIC, true),
                     -EINVAL);
    assert_int_equal(
        enf_fdb_fake_put(f, MAC_A, "abcdefghijklmnop", ENF_FDB_STATIC, true),
        -EINVAL);
    assert_int_equal(enf_fdb_fake_drop(f, MAC_A), -ENOENT);
    assert_int_equal(enf_fdb_fake_set_tap(f, false, true, false), -EINVAL);
    assert_int_equal(enf_fdb_fake_drop(NULL, MAC_A), -EINVAL);
}

/* Every allocation failure point: no crash, no leak (ASan), and either
 * success or -ENOMEM. */
static void test_alloc_failures(void **state)
{
    (void)state;
    struct enf_fdb_entry d[3] = {
        enf_tf_e(MAC_A, TAP),
        enf_tf_e(MAC_B, UPLINK),
        enf_tf_e(MAC_C, TAP),
    };
    bool succeeded = false;
    for (long k = 0; k < 64 && !succeeded; k++) {
        struct enf_fdb_config cfg = enf_tf_cfg();
        struct enf_fdb *f = NULL;
        char err[256];
        ovha_alloc_fail_after(k);
        int rc = enf_fdb_new(&cfg, &f, err, sizeof(err));
        if (rc == 0) {
            rc = enf_fdb_apply(f, d, 3, err, sizeof(err));
        }
        if (rc == 0) {
            struct enf_fdb_entry *v = NULL;
            size_t n = 0;
            rc = enf_fdb_list(f, &v, &n);
            free(v);
            succeeded = rc == 0;
        }
        ovha_alloc_fail_after(-1);
        assert_true(rc == 0 || rc == -ENOMEM);
        enf_fdb_free(f);
    }
    assert_true(succeeded);
}

#define ENF_TF(fn) \
    cmocka_unit_test_setup_teardown(fn, enf_tf_setup, enf_tf_teardown)

const struct CMUnitTest enf_fdb_tests[] = {
    cmocka_unit_test(test_mac_canon),
    cmocka_unit_test(test_new_errors),
    ENF_TF(test_validation),
    ENF_TF(test_duplicates_change_nothing),
    ENF_TF(test_add_and_idempotent),
    ENF_TF(test_failover_replaces),
    ENF_TF(test_removes_undesired),
    ENF_TF(test_foreign_untouched),
    ENF_TF(test_foreign_holder_reported),
    ENF_TF(test_learned_taken_over),
    ENF_TF(test_hand_edits_restored),
    ENF_TF(test_tap_missing_then_created),
    ENF_TF(test_tap_reattached),
    ENF_TF(test_partial_failure_retried),
    ENF_TF(test_attach_failure),
    ENF_TF(test_delete_of_vanished_entry),
    ENF_TF(test_dump_failure),
    ENF_TF(test_fake_hooks),
    cmocka_unit_test(test_alloc_failures),
};
const size_t enf_fdb_ntests = sizeof(enf_fdb_tests) / sizeof(enf_fdb_tests[0]);
