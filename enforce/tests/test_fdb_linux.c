/* enforce/fdb linux backend tests, inside the private network namespace
 * test_main.c enters with --netns. Each test builds its own topology:
 *
 *   ovfbr0 (bridge): ovfup0 (veth to ovfup1, the uplink), ovfx0 (veth to
 *                    ovfx1, a port we do not manage), ovftap0 (tuntap,
 *                    created but not enslaved, as openvpn leaves it)
 *   ovfbr1 (bridge): ovfo0 (veth to ovfo1), another bridge's FDB
 *
 * and reads the result back with `bridge -j fdb show` and `ip -j link`,
 * so the flags we use are checked against what iproute2 reports for
 * entries made by hand.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "enforce/fdb.h"
#include "enforce/tests/netns.h"
#include "enforce/tests/tests.h"

#define BR     "ovfbr0"
#define BR2    "ovfbr1"
#define TAP    "ovftap0"
#define UPLINK "ovfup0"
#define OTHER  "ovfx0"

#define MAC_A "02:00:5e:64:00:0a"
#define MAC_B "02:00:5e:64:00:0b"
#define MAC_C "02:00:5e:64:00:0c"
#define MAC_D "02:00:5e:64:00:0d"
#define MAC_L "02:00:5e:64:01:02" /* learned */
#define MAC_S "02:00:5e:64:01:03" /* static on an unmanaged port */

static void enf_tfl_sh_ok(const char *cmd)
{
    int rc = enf_test_sh("%s", cmd);
    if (rc != 0) {
        fail_msg("`%s` exited %d", cmd, rc);
    }
}

static void enf_tfl_remove_topology(void)
{
    (void)enf_test_sh("for d in " BR " " BR2 " " UPLINK " " OTHER " ovfo0 " TAP
                      "; do ip link del $d 2>/dev/null; done; true");
}

static struct enf_fdb *enf_tfl_open(const char *bridge)
{
    struct enf_fdb_config cfg = {
        .backend = "linux", .bridge = bridge, .tap = TAP, .uplink = UPLINK
    };
    struct enf_fdb *f = NULL;
    char err[256];
    int rc = enf_fdb_new(&cfg, &f, err, sizeof(err));
    if (rc != 0) {
        fail_msg("enf_fdb_new: %d: %s", rc, err);
    }
    return f;
}

static int enf_tfl_setup(void **state)
{
    enf_tfl_remove_topology();
    enf_tfl_sh_ok("ip link add " BR " type bridge && ip link add " BR2
                  " type bridge && "
                  "ip link add " UPLINK
                  " type veth peer name ovfup1 && "
                  "ip link add " OTHER
                  " type veth peer name ovfx1 && "
                  "ip link add ovfo0 type veth peer name ovfo1 && "
                  "ip link set " UPLINK " master " BR " && ip link set " OTHER
                  " master " BR " && ip link set ovfo0 master " BR2
                  " && "
                  "ip tuntap add dev " TAP
                  " mode tap && "
                  "for d in " BR " " BR2 " " UPLINK " ovfup1 " OTHER
                  " ovfx1 ovfo0 ovfo1; do ip link set $d up || exit 1; done");
    *state = enf_tfl_open(BR);
    return 0;
}

static int enf_tfl_teardown(void **state)
{
    enf_fdb_free(*state);
    enf_tfl_remove_topology();
    return 0;
}

static struct enf_fdb_stats enf_tfl_stats(struct enf_fdb *f)
{
    struct enf_fdb_stats st;
    enf_fdb_get_stats(f, &st);
    return st;
}

static struct enf_fdb_entry enf_tfl_e(const char *mac, const char *port)
{
    struct enf_fdb_entry e;
    memset(&e, 0, sizeof(e));
    ovha_strlcpy(e.mac, mac, sizeof(e.mac));
    ovha_strlcpy(e.port, port, sizeof(e.port));
    return e;
}

static void enf_tfl_apply_ok(struct enf_fdb *f,
                             const struct enf_fdb_entry *d,
                             size_t n)
{
    char err[256];
    int rc = enf_fdb_apply(f, d, n, err, sizeof(err));
    if (rc != 0) {
        fail_msg("apply: %d: %s", rc, err);
    }
}

/* ---- reading the kernel back --------------------------------------------- */

/* `bridge -j fdb show br <br>` parsed; the caller json_decref()s. */
static json_t *enf_tfl_fdb_json(const char *br)
{
    static char out[1 << 16];
    int rc = enf_test_sh_out(out, sizeof(out), "bridge -j fdb show br %s", br);
    assert_int_equal(rc, 0);
    json_error_t jerr;
    json_t *j = json_loads(out, 0, &jerr);
    if (j == NULL || !json_is_array(j)) {
        fail_msg("bridge -j fdb show br %s: not a JSON array: %s", br,
                 jerr.text);
    }
    return j;
}

static bool enf_tfl_has_flag(json_t *ent, const char *flag)
{
    json_t *flags = json_object_get(ent, "flags");
    size_t i;
    json_t *v;
    json_array_foreach(flags, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), flag) == 0) {
            return true;
        }
    }
    return false;
}

/* One master entry of br for mac, as iproute2 reports it. */
struct enf_tfl_ent {
    int count; /* master entries of br with that MAC (any vlan) */
    char ifname[16];
    char state[16]; /* "static", "permanent", "" (learned) */
    bool sticky;
    bool extern_learn;
    bool has_vlan;
};

static struct enf_tfl_ent enf_tfl_get(const char *br, const char *mac)
{
    struct enf_tfl_ent r;
    memset(&r, 0, sizeof(r));
    json_t *j = enf_tfl_fdb_json(br);
    size_t i;
    json_t *ent;
    json_array_foreach(j, i, ent)
    {
        const char *m = json_string_value(json_object_get(ent, "mac"));
        const char *master = json_string_value(json_object_get(ent, "master"));
        if (m == NULL || master == NULL || strcmp(m, mac) != 0 ||
            strcmp(master, br) != 0) {
            continue;
        }
        r.count++;
        const char *ifname = json_string_value(json_object_get(ent, "ifname"));
        const char *st = json_string_value(json_object_get(ent, "state"));
        ovha_strlcpy(r.ifname, ifname ? ifname : "?", sizeof(r.ifname));
        ovha_strlcpy(r.state, st ? st : "", sizeof(r.state));
        r.sticky = enf_tfl_has_flag(ent, "sticky");
        r.extern_learn = enf_tfl_has_flag(ent, "extern_learn");
        r.has_vlan = json_object_get(ent, "vlan") != NULL;
    }
    json_decref(j);
    return r;
}

/* mac is exactly one entry of br on port in state (sticky or not). */
static void enf_tfl_expect(const char *br,
                           const char *mac,
                           const char *port,
                           const char *state,
                           bool sticky)
{
    struct enf_tfl_ent e = enf_tfl_get(br, mac);
    if (e.count != 1 || strcmp(e.ifname, port) != 0 ||
        strcmp(e.state, state) != 0 || e.sticky != sticky || e.has_vlan) {
        fail_msg(
            "%s in %s: %d entries, last on %s state \"%s\" sticky %d "
            "vlan %d; want one on %s state \"%s\" sticky %d",
            mac, br, e.count, e.ifname, e.state, e.sticky, e.has_vlan, port,
            state, sticky);
    }
}

#define enf_tfl_expect_ours(mac, port) \
    enf_tfl_expect(BR, mac, port, "static", true)

static void enf_tfl_expect_none(const char *br, const char *mac)
{
    struct enf_tfl_ent e = enf_tfl_get(br, mac);
    if (e.count != 0) {
        fail_msg("%s in %s: expected none, found on %s state \"%s\"", mac, br,
                 e.ifname, e.state);
    }
}

/* `ip -j link show dev` parsed (the one object). */
static json_t *enf_tfl_link(const char *dev)
{
    static char out[8192];
    int rc = enf_test_sh_out(out, sizeof(out), "ip -j link show dev %s", dev);
    assert_int_equal(rc, 0);
    json_t *j = json_loads(out, 0, NULL);
    if (j == NULL || json_array_size(j) != 1) {
        fail_msg("ip -j link show dev %s: %s", dev, out);
    }
    json_t *o = json_incref(json_array_get(j, 0));
    json_decref(j);
    return o;
}

static void enf_tfl_expect_tap(const char *master, bool up)
{
    json_t *l = enf_tfl_link(TAP);
    const char *m = json_string_value(json_object_get(l, "master"));
    bool is_up = enf_tfl_has_flag(l, "UP");
    if (strcmp(m != NULL ? m : "(none)", master) != 0 || is_up != up) {
        fail_msg(TAP ": master %s up %d, want %s %d", m ? m : "(none)", is_up,
                 master, up);
    }
    json_decref(l);
}

/* The port's own address (its permanent entry in the bridge). */
static void enf_tfl_own_mac(const char *dev, char *out)
{
    json_t *l = enf_tfl_link(dev);
    const char *a = json_string_value(json_object_get(l, "address"));
    assert_non_null(a);
    ovha_strlcpy(out, a, ENF_FDB_MAC_LEN);
    json_decref(l);
}

/* ---- tests --------------------------------------------------------------- */

static const struct enf_fdb_entry enf_tfl_base[3] = {
    { MAC_A, TAP },
    { MAC_B, UPLINK },
    { MAC_C, TAP },
};

static void enf_tfl_expect_base(void)
{
    enf_tfl_expect_ours(MAC_A, TAP);
    enf_tfl_expect_ours(MAC_B, UPLINK);
    enf_tfl_expect_ours(MAC_C, TAP);
}

static void test_fdb_linux_add_and_idempotent(void **state)
{
    struct enf_fdb *f = *state;
    enf_tfl_expect_tap("(none)", false);
    enf_tfl_apply_ok(f, enf_tfl_base, 3);
    enf_tfl_expect_base();
    enf_tfl_expect_tap(BR, true);
    struct enf_fdb_stats st = enf_tfl_stats(f);
    assert_int_equal(st.added, 3);
    assert_int_equal(st.attached, 1);
    assert_int_equal(st.replaced + st.removed + st.errors, 0);
    assert_int_equal(st.installed, 3);

    /* Exactly what `bridge fdb add ... master static sticky` makes. */
    enf_tfl_sh_ok("bridge fdb add " MAC_D " dev " UPLINK
                  " master static sticky");
    static char ours[512], hand[512];
    assert_int_equal(enf_test_sh_out(ours, sizeof(ours),
                                     "bridge fdb show br " BR " | grep " MAC_B
                                     " | cut -d' ' -f2-"),
                     0);
    assert_int_equal(enf_test_sh_out(hand, sizeof(hand),
                                     "bridge fdb show br " BR " | grep " MAC_D
                                     " | cut -d' ' -f2-"),
                     0);
    assert_string_equal(ours, hand);
    assert_string_equal(ours, "dev " UPLINK " sticky master " BR " static\n");
    /* The hand-made one is static on a managed port: ours, not desired. */
    enf_tfl_apply_ok(f, enf_tfl_base, 3);
    enf_tfl_expect_none(BR, MAC_D);

    struct enf_fdb_entry *v = NULL;
    size_t n = 0;
    assert_int_equal(enf_fdb_list(f, &v, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(v[0].mac, MAC_A);
    assert_string_equal(v[0].port, TAP);
    assert_string_equal(v[1].mac, MAC_B);
    assert_string_equal(v[1].port, UPLINK);
    assert_string_equal(v[2].mac, MAC_C);
    free(v);

    enf_tfl_apply_ok(f, enf_tfl_base, 3);
    st = enf_tfl_stats(f);
    assert_int_equal(st.applies, 3);
    assert_int_equal(st.added, 3);
    assert_int_equal(st.attached, 1);
    assert_int_equal(st.removed, 1);
    assert_int_equal(st.replaced + st.errors, 0);
    assert_int_equal(st.installed, 3);
    enf_tfl_expect_base();
}

static void test_fdb_linux_removes_and_failover(void **state)
{
    struct enf_fdb *f = *state;
    enf_tfl_apply_ok(f, enf_tfl_base, 3);
    /* A moves to another gateway, C is gone, B comes here. */
    struct enf_fdb_entry d[2] = {
        enf_tfl_e(MAC_A, UPLINK),
        enf_tfl_e(MAC_B, TAP),
    };
    enf_tfl_apply_ok(f, d, 2);
    struct enf_fdb_stats st = enf_tfl_stats(f);
    assert_int_equal(st.replaced, 2);
    assert_int_equal(st.removed, 1);
    assert_int_equal(st.installed, 2);
    enf_tfl_expect_ours(MAC_A, UPLINK);
    enf_tfl_expect_ours(MAC_B, TAP);
    enf_tfl_expect_none(BR, MAC_C);
    enf_tfl_apply_ok(f, NULL, 0);
    assert_int_equal(enf_tfl_stats(f).installed, 0);
    enf_tfl_expect_none(BR, MAC_A);
    enf_tfl_expect_none(BR, MAC_B);
}

/* Learned, permanent, static on an unmanaged port, another bridge. */
static void enf_tfl_put_foreign(char *own)
{
    enf_tfl_own_mac(UPLINK, own);
    enf_tfl_sh_ok("bridge fdb add " MAC_L " dev " UPLINK
                  " master dynamic && "
                  "bridge fdb add " MAC_S " dev " OTHER
                  " master static && "
                  "bridge fdb add " MAC_A
                  " dev ovfo0 master static && "
                  "bridge fdb add " MAC_D " dev ovfo0 master static sticky");
}

static void enf_tfl_expect_foreign(const char *own)
{
    enf_tfl_expect(BR, own, UPLINK, "permanent", false);
    enf_tfl_expect(BR, MAC_L, UPLINK, "", false);
    enf_tfl_expect(BR, MAC_S, OTHER, "static", false);
    enf_tfl_expect(BR2, MAC_A, "ovfo0", "static", false);
    enf_tfl_expect(BR2, MAC_D, "ovfo0", "static", true);
}

static void test_fdb_linux_foreign_untouched(void **state)
{
    struct enf_fdb *f = *state;
    char own[ENF_FDB_MAC_LEN];
    enf_tfl_put_foreign(own);
    enf_tfl_apply_ok(f, enf_tfl_base, 3);
    enf_tfl_expect_base();
    enf_tfl_expect_foreign(own);
    enf_tfl_apply_ok(f, NULL, 0);
    struct enf_fdb_stats st = enf_tfl_stats(f);
    assert_int_equal(st.removed, 3);
    assert_int_equal(st.installed, 0);
    enf_tfl_expect_none(BR, MAC_A);
    enf_tfl_expect_foreign(own);
    struct enf_fdb_entry *v = NULL;
    size_t n = 0;
    assert_int_equal(enf_fdb_list(f, &v, &n), 0);
    assert_int_equal(n, 0);
    free(v);
}

static void test_fdb_linux_foreign_holder(void **state)
{
    struct enf_fdb *f = *state;
    char own[ENF_FDB_MAC_LEN];
    enf_tfl_put_foreign(own);
    struct enf_fdb_entry d[2] = {
        enf_tfl_e(own, TAP),
        enf_tfl_e(MAC_C, TAP),
    };
    char err[256], want[256];
    assert_int_equal(enf_fdb_apply(f, d, 2, err, sizeof(err)), -EEXIST);
    snprintf(want, sizeof(want), "fdb %s: held by a permanent entry on " UPLINK,
             own);
    assert_string_equal(err, want);
    d[0] = enf_tfl_e(MAC_S, UPLINK);
    assert_int_equal(enf_fdb_apply(f, d, 2, err, sizeof(err)), -EEXIST);
    assert_string_equal(err, "fdb " MAC_S ": held by a static entry on " OTHER);
    enf_tfl_expect_ours(MAC_C, TAP);
    enf_tfl_expect_foreign(own);
    assert_int_equal(enf_tfl_stats(f).installed, 1);
}

static void test_fdb_linux_learned_taken_over(void **state)
{
    struct enf_fdb *f = *state;
    enf_tfl_sh_ok("bridge fdb add " MAC_A " dev " UPLINK " master dynamic");
    enf_tfl_expect(BR, MAC_A, UPLINK, "", false);
    enf_tfl_apply_ok(f, enf_tfl_base, 3);
    enf_tfl_expect_base();
    assert_int_equal(enf_tfl_stats(f).added, 3);
    assert_int_equal(enf_tfl_stats(f).installed, 3);
}

/* One broadcast frame with source mac out of dev (into the bridge port at
 * the other end of the veth), so the bridge learns mac there. */
static void enf_tfl_send_from(const char *dev, const char *mac)
{
    unsigned char frame[60];
    memset(frame, 0, sizeof(frame));
    memset(frame, 0xff, 6);
    unsigned v[6];
    assert_int_equal(sscanf(mac, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2],
                            &v[3], &v[4], &v[5]),
                     6);
    for (int i = 0; i < 6; i++) {
        frame[6 + i] = (unsigned char)v[i];
    }
    frame[12] = 0x88; /* local experimental ethertype 0x88b5 */
    frame[13] = 0xb5;
    int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    assert_true(fd >= 0);
    struct sockaddr_ll sll;
    memset(&sll, 0, sizeof(sll));
    sll.sll_family = AF_PACKET;
    sll.sll_ifindex = (int)if_nametoindex(dev);
    sll.sll_halen = 6;
    memset(sll.sll_addr, 0xff, 6);
    assert_true(sll.sll_ifindex > 0);
    ssize_t n = sendto(fd, frame, sizeof(frame), 0, (struct sockaddr *)&sll,
                       sizeof(sll));
    close(fd);
    assert_int_equal(n, (ssize_t)sizeof(frame));
}

/* Why our entries are sticky: the bridge's learning moves a plain static
 * entry to the port a frame with that source came in on, not ours. */
static void test_fdb_linux_sticky_survives_learning(void **state)
{
    struct enf_fdb *f = *state;
    enf_tfl_apply_ok(f, enf_tfl_base, 3);
    enf_tfl_sh_ok("bridge fdb add " MAC_D " dev " TAP " master static");
    /* A (ours) first, then D: frames are handled in order, so once D has
     * moved, A has been seen too. */
    enf_tfl_send_from("ovfup1", MAC_A);
    enf_tfl_send_from("ovfup1", MAC_D);
    bool moved = false;
    for (int i = 0; i < 200 && !moved; i++) {
        moved = strcmp(enf_tfl_get(BR, MAC_D).ifname, UPLINK) == 0;
        if (!moved) {
            struct timespec ts = { 0, 10 * 1000 * 1000 };
            nanosleep(&ts, NULL);
        }
    }
    if (!moved) {
        fail_msg(
            "a plain static entry did not follow learning; the "
            "kernel changed, revisit why we add sticky entries");
    }
    enf_tfl_expect(BR, MAC_D, UPLINK, "static", false);
    enf_tfl_expect_ours(MAC_A, TAP);
}

static void test_fdb_linux_hand_edits_restored(void **state)
{
    struct enf_fdb *f = *state;
    enf_tfl_apply_ok(f, enf_tfl_base, 3);
    enf_tfl_sh_ok("bridge fdb del " MAC_A " dev " TAP
                  " master && "
                  "bridge fdb replace " MAC_B " dev " TAP
                  " master static && "
                  "bridge fdb replace " MAC_C " dev " UPLINK
                  " master static sticky");
    enf_tfl_expect_none(BR, MAC_A);
    enf_tfl_expect(BR, MAC_B, TAP, "static", false);
    enf_tfl_expect_ours(MAC_C, UPLINK);
    enf_tfl_apply_ok(f, enf_tfl_base, 3);
    struct enf_fdb_stats st = enf_tfl_stats(f);
    assert_int_equal(st.added, 4);
    assert_int_equal(st.replaced, 2);
    assert_int_equal(st.removed + st.errors, 0);
    assert_int_equal(st.installed, 3);
    enf_tfl_expect_base();

    /* Moved to a port we do not manage: someone else's now, reported. */
    enf_tfl_sh_ok("bridge fdb replace " MAC_B " dev " OTHER " master static");
    char err[256];
    assert_int_equal(enf_fdb_apply(f, enf_tfl_base, 3, err, sizeof(err)),
                     -EEXIST);
    assert_string_equal(err, "fdb " MAC_B ": held by a static entry on " OTHER);
    enf_tfl_expect(BR, MAC_B, OTHER, "static", false);
}

static void test_fdb_linux_tap_missing(void **state)
{
    struct enf_fdb *f = *state;
    enf_tfl_sh_ok("ip link del " TAP);
    char err[256], want[128];
    assert_int_equal(enf_fdb_apply(f, enf_tfl_base, 3, err, sizeof(err)),
                     -ENODEV);
    snprintf(want, sizeof(want), "fdb: tap " TAP ": %s (and 2 more failures)",
             ovha_strerror(-ENODEV));
    assert_string_equal(err, want);
    struct enf_fdb_stats st = enf_tfl_stats(f);
    assert_int_equal(st.added, 1);
    assert_int_equal(st.errors, 3);
    assert_int_equal(st.attached, 0);
    assert_int_equal(st.installed, 1);
    enf_tfl_expect_ours(MAC_B, UPLINK);
    enf_tfl_expect_none(BR, MAC_A);

    /* openvpn starts and creates its tap. */
    enf_tfl_sh_ok("ip tuntap add dev " TAP " mode tap");
    enf_tfl_apply_ok(f, enf_tfl_base, 3);
    enf_tfl_expect_tap(BR, true);
    enf_tfl_expect_base();
    st = enf_tfl_stats(f);
    assert_int_equal(st.attached, 1);
    assert_int_equal(st.installed, 3);
}

static void test_fdb_linux_tap_reenslaved(void **state)
{
    struct enf_fdb *f = *state;
    enf_tfl_apply_ok(f, enf_tfl_base, 3);
    enf_tfl_sh_ok("ip link set " TAP " nomaster");
    enf_tfl_expect_none(BR, MAC_A); /* the kernel flushed the port */
    enf_tfl_apply_ok(f, enf_tfl_base, 3);
    enf_tfl_expect_tap(BR, true);
    enf_tfl_expect_base();
    assert_int_equal(enf_tfl_stats(f).attached, 2);

    /* Into another bridge: taken back, nothing of ours left there. */
    enf_tfl_sh_ok("ip link set " TAP " master " BR2);
    enf_tfl_apply_ok(f, enf_tfl_base, 3);
    enf_tfl_expect_tap(BR, true);
    enf_tfl_expect_base();
    enf_tfl_expect_none(BR2, MAC_A);
    assert_int_equal(enf_tfl_stats(f).attached, 3);

    /* Only set down: brought up, not an enslavement. */
    enf_tfl_sh_ok("ip link set " TAP " down");
    enf_tfl_expect_tap(BR, false);
    enf_tfl_apply_ok(f, enf_tfl_base, 3);
    enf_tfl_expect_tap(BR, true);
    struct enf_fdb_stats st = enf_tfl_stats(f);
    assert_int_equal(st.attached, 3);
    assert_int_equal(st.added, 7);
    assert_int_equal(st.errors, 0);
}

static void test_fdb_linux_uplink_elsewhere(void **state)
{
    struct enf_fdb *f = *state;
    enf_tfl_sh_ok("ip link set " UPLINK " master " BR2);
    char err[256];
    assert_int_equal(enf_fdb_apply(f, enf_tfl_base, 3, err, sizeof(err)),
                     -EXDEV);
    assert_string_equal(err,
                        "fdb " MAC_B ": port " UPLINK " is not in bridge " BR);
    enf_tfl_expect_none(BR2, MAC_B);
    enf_tfl_expect_none(BR, MAC_B);
    enf_tfl_expect_ours(MAC_A, TAP);
    assert_int_equal(enf_tfl_stats(f).installed, 2);

    enf_tfl_sh_ok("ip link set " UPLINK " master " BR);
    enf_tfl_apply_ok(f, enf_tfl_base, 3);
    enf_tfl_expect_base();
}

static void test_fdb_linux_bridge_missing(void **state)
{
    (void)state;
    char err[256];
    struct enf_fdb *g = enf_tfl_open("ovfnone0");
    assert_int_equal(enf_fdb_apply(g, enf_tfl_base, 3, err, sizeof(err)),
                     -ENODEV);
    assert_non_null(strstr(err, "fdb: bridge ovfnone0: dump: "));
    struct enf_fdb_entry *v = NULL;
    size_t n = 0;
    assert_int_equal(enf_fdb_list(g, &v, &n), -ENODEV);
    enf_fdb_free(g);

    /* A device that is no bridge. */
    g = enf_tfl_open("ovfx1");
    assert_int_equal(enf_fdb_apply(g, enf_tfl_base, 3, err, sizeof(err)),
                     -EOPNOTSUPP);
    enf_fdb_free(g);
    enf_tfl_expect_tap("(none)", false);
    enf_tfl_expect_none(BR, MAC_B);
}

#define ENF_TFL(fn) \
    cmocka_unit_test_setup_teardown(fn, enf_tfl_setup, enf_tfl_teardown)

const struct CMUnitTest enf_fdb_linux_tests[] = {
    ENF_TFL(test_fdb_linux_add_and_idempotent),
    ENF_TFL(test_fdb_linux_removes_and_failover),
    ENF_TFL(test_fdb_linux_foreign_untouched),
    ENF_TFL(test_fdb_linux_foreign_holder),
    ENF_TFL(test_fdb_linux_learned_taken_over),
    ENF_TFL(test_fdb_linux_sticky_survives_learning),
    ENF_TFL(test_fdb_linux_hand_edits_restored),
    ENF_TFL(test_fdb_linux_tap_missing),
    ENF_TFL(test_fdb_linux_tap_reenslaved),
    ENF_TFL(test_fdb_linux_uplink_elsewhere),
    ENF_TFL(test_fdb_linux_bridge_missing),
};
const size_t enf_fdb_linux_ntests =
    sizeof(enf_fdb_linux_tests) / sizeof(enf_fdb_linux_tests[0]);
