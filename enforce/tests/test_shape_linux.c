/* enforce/shape linux backend tests, run by `enforce_tests --netns` inside
 * the private network namespace of netns.c, which plays the gateway. A
 * second namespace (ovshp<pid>c, removed in the group teardown and at
 * exit) plays the VPN client, joined by a veth pair standing in for the
 * tun device: shp0 100.64.50.1/24 here, shp1 100.64.50.2/24 there.
 *
 * The kernel state is read back with `tc`, and rates are measured with
 * real TCP transfers (a small python3 sender/receiver): towards the client
 * through the HTB class on shp0, from the client through the HTB class on
 * the IFB device ovup-shp0 that shp0's ingress redirects to. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "enforce/shape.h"
#include "enforce/tests/netns.h"
#include "enforce/tests/tests.h"

#define ENF_TSL_DEV    "shp0"
#define ENF_TSL_IFB    "ovup-shp0"
#define ENF_TSL_GW     "100.64.50.1"
#define ENF_TSL_CLIENT "100.64.50.2"
#define ENF_TSL_SECS   "3"

static char enf_tsl_ns[32];     /* the client namespace */
static char enf_tsl_script[64]; /* the transfer script */

/* A bounded TCP transfer: `recv HOST PORT` prints the kbit/s it received
 * after the first 0.5 s (slow start and the initial burst left out);
 * `send HOST PORT SECS` sends as fast as it can for SECS seconds. */
static const char enf_tsl_py[] =
    "import socket, sys, time\n"
    "mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])\n"
    "if mode == 'recv':\n"
    "    s = socket.socket()\n"
    "    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "    s.bind((host, port)); s.listen(1); s.settimeout(10)\n"
    "    c, _ = s.accept(); c.settimeout(10)\n"
    "    t0 = ts = te = None; n = 0\n"
    "    while True:\n"
    "        b = c.recv(65536)\n"
    "        if not b: break\n"
    "        now = time.monotonic()\n"
    "        if t0 is None: t0 = now\n"
    "        if now - t0 < 0.5: continue\n"
    "        if ts is None: ts = now\n"
    "        else: n += len(b); te = now\n"
    "    print(int(n * 8 / (te - ts) / 1000) if te and te > ts else 0)\n"
    "else:\n"
    "    end = time.monotonic() + float(sys.argv[4]); s = None\n"
    "    for i in range(100):\n"
    "        try:\n"
    "            s = socket.create_connection((host, port), timeout=1); break\n"
    "        except OSError: time.sleep(0.05)\n"
    "    s.settimeout(0.2); buf = b'x' * 65536\n"
    "    while time.monotonic() < end:\n"
    "        try: s.send(buf)\n"
    "        except socket.timeout: pass\n"
    "    s.close()\n";

static void enf_tsl_cleanup(void)
{
    if (enf_tsl_ns[0] != '\0') {
        (void)enf_test_sh("ip netns del %s 2>/dev/null", enf_tsl_ns);
        enf_tsl_ns[0] = '\0';
    }
    if (enf_tsl_script[0] != '\0') {
        unlink(enf_tsl_script);
        enf_tsl_script[0] = '\0';
    }
}

static int enf_tsl_group_setup(void **state)
{
    (void)state;
    if (enf_tsl_ns[0] != '\0') {
        return 0; /* already set up by an earlier test */
    }
    snprintf(enf_tsl_ns, sizeof(enf_tsl_ns), "ovshp%dc", (int)getpid());
    snprintf(enf_tsl_script, sizeof(enf_tsl_script), "/tmp/ovshp%d.py",
             (int)getpid());
    static bool registered;
    if (!registered) {
        atexit(enf_tsl_cleanup);
        registered = true;
    }
    FILE *f = fopen(enf_tsl_script, "w");
    if (f == NULL || fputs(enf_tsl_py, f) < 0) {
        if (f != NULL) {
            fclose(f);
        }
        return -1;
    }
    fclose(f);
    if (enf_test_sh("ip netns add %s", enf_tsl_ns) != 0 ||
        enf_test_sh("ip link add " ENF_TSL_DEV
                    " type veth peer name shp1 netns %s",
                    enf_tsl_ns) != 0) {
        enf_tsl_cleanup();
        return -1;
    }
    static const char *const steps[] = {
        "ip link set lo up",
        "ip addr add " ENF_TSL_CLIENT "/24 dev shp1",
        "ip link set shp1 up",
    };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        if (enf_test_sh("ip netns exec %s %s", enf_tsl_ns, steps[i]) != 0) {
            fprintf(stderr, "shape netns setup failed: %s\n", steps[i]);
            enf_tsl_cleanup();
            return -1;
        }
    }
    if (enf_test_sh("ip addr add " ENF_TSL_GW "/24 dev " ENF_TSL_DEV) != 0 ||
        enf_test_sh("ip link set " ENF_TSL_DEV " up") != 0 ||
        enf_test_sh("ping -c1 -W2 " ENF_TSL_CLIENT " >/dev/null") != 0) {
        enf_tsl_cleanup();
        return -1;
    }
    return 0;
}

static int enf_tsl_group_teardown(void **state)
{
    (void)state;
    (void)enf_test_sh("ip link del " ENF_TSL_DEV " 2>/dev/null");
    enf_tsl_cleanup();
    return 0;
}

static struct enf_shape *enf_tsl_open(const char *dev)
{
    struct enf_shape_config cfg = { .backend = "linux", .dev = dev };
    struct enf_shape *s = NULL;
    char err[256];
    int rc = enf_shape_new(&cfg, &s, err, sizeof(err));
    if (rc != 0) {
        fail_msg("enf_shape_new: %d: %s", rc, err);
    }
    return s;
}

static void enf_tsl_apply_ok(struct enf_shape *s,
                             const struct enf_shape_client *c,
                             size_t n)
{
    char err[256];
    int rc = enf_shape_apply(s, c, n, err, sizeof(err));
    if (rc != 0) {
        fail_msg("apply: %d: %s", rc, err);
    }
}

/* Each test starts with nothing of ours on the device. */
static int enf_tsl_setup(void **state)
{
    if (enf_tsl_group_setup(NULL) != 0) {
        fail_msg("cannot set up the client namespace");
    }
    (void)enf_test_sh("tc qdisc del dev " ENF_TSL_DEV " root 2>/dev/null");
    (void)enf_test_sh("tc qdisc del dev " ENF_TSL_DEV " ingress 2>/dev/null");
    (void)enf_test_sh("tc qdisc del dev " ENF_TSL_IFB " root 2>/dev/null");
    *state = enf_tsl_open(ENF_TSL_DEV);
    return 0;
}

static int enf_tsl_teardown(void **state)
{
    enf_shape_free(*state);
    return 0;
}

static struct enf_shape_client enf_tsl_client(uint32_t down, uint32_t up)
{
    struct enf_shape_client c;
    memset(&c, 0, sizeof(c));
    ovha_strlcpy(c.ip, ENF_TSL_CLIENT, sizeof(c.ip));
    c.down_kbit = down;
    c.up_kbit = up;
    return c;
}

/* `tc <what>` as text. */
static const char *enf_tsl_tc(const char *what)
{
    static char out[16384];
    int rc = enf_test_sh_out(out, sizeof(out), "tc %s", what);
    assert_int_equal(rc, 0);
    return out;
}

static void enf_tsl_expect(const char *what, const char *needle)
{
    const char *out = enf_tsl_tc(what);
    if (strstr(out, needle) == NULL) {
        fail_msg("tc %s:\n%s\nlacks \"%s\"", what, out, needle);
    }
}

static void enf_tsl_expect_not(const char *what, const char *needle)
{
    const char *out = enf_tsl_tc(what);
    if (strstr(out, needle) != NULL) {
        fail_msg("tc %s:\n%s\nhas \"%s\"", what, out, needle);
    }
}

/* kbit/s of a 3 s TCP transfer; down = gateway -> client. */
static long enf_tsl_measure(bool down)
{
    char out[256];
    int port = 20000 + (int)(getpid() % 20000);
    int rc;
    if (down) {
        rc = enf_test_sh_out(
            out, sizeof(out),
            "(timeout 15 python3 %s send " ENF_TSL_CLIENT " %d " ENF_TSL_SECS
            " &) ; ip netns exec %s timeout 15 python3 %s recv " ENF_TSL_CLIENT
            " %d",
            enf_tsl_script, port, enf_tsl_ns, enf_tsl_script, port);
    } else {
        rc = enf_test_sh_out(
            out, sizeof(out),
            "(ip netns exec %s timeout 15 python3 %s send " ENF_TSL_GW
            " %d " ENF_TSL_SECS " &) ; timeout 15 python3 %s recv " ENF_TSL_GW
            " %d",
            enf_tsl_ns, enf_tsl_script, port, enf_tsl_script, port);
    }
    assert_int_equal(rc, 0);
    long kbit = strtol(out, NULL, 10);
    printf("# shape: %s measured %ld kbit/s\n", down ? "down" : "up", kbit);
    return kbit;
}

static void enf_tsl_assert_near(long got, long want)
{
    if (got < want * 8 / 10 || got > want * 12 / 10) {
        fail_msg("measured %ld kbit/s, configured %ld (+-20%%)", got, want);
    }
}

static void test_shape_linux_installs(void **state)
{
    struct enf_shape *s = *state;
    struct enf_shape_client c = enf_tsl_client(4000, 2000);
    enf_tsl_apply_ok(s, &c, 1);
    enf_tsl_expect("qdisc show dev " ENF_TSL_DEV, "qdisc htb 1: root");
    enf_tsl_expect("qdisc show dev " ENF_TSL_DEV, "default 0xffff");
    enf_tsl_expect("qdisc show dev " ENF_TSL_DEV, "qdisc ingress ffff:");
    enf_tsl_expect("class show dev " ENF_TSL_DEV,
                   "class htb 1:1 root prio 0 rate 4Mbit ceil 4Mbit");
    enf_tsl_expect("class show dev " ENF_TSL_DEV, "class htb 1:ffff root");
    enf_tsl_expect("filter show dev " ENF_TSL_DEV " parent 1:",
                   "fh 100:2:1 order 1 key ht 100 bkt 2 *flowid 1:1");
    enf_tsl_expect("filter show dev " ENF_TSL_DEV " parent 1:",
                   "match 64403202/ffffffff at 16");
    enf_tsl_expect("filter show dev " ENF_TSL_DEV " parent 1:", "link 100:");
    enf_tsl_expect("filter show dev " ENF_TSL_DEV " ingress",
                   "mirred (Egress Redirect to device " ENF_TSL_IFB ") stolen");
    enf_tsl_expect("qdisc show dev " ENF_TSL_IFB, "qdisc htb 1: root");
    enf_tsl_expect("class show dev " ENF_TSL_IFB,
                   "class htb 1:1 root prio 0 rate 2Mbit ceil 2Mbit");
    enf_tsl_expect("filter show dev " ENF_TSL_IFB " parent 1:",
                   "fh 100:2:1 order 1 key ht 100 bkt 2 *flowid 1:1");
    enf_tsl_expect("filter show dev " ENF_TSL_IFB " parent 1:",
                   "match 64403202/ffffffff at 12");
    struct enf_shape_entry *v = NULL;
    size_t n = 0;
    assert_int_equal(enf_shape_list(s, &v, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].ip, ENF_TSL_CLIENT);
    assert_int_equal(v[0].down_kbit, 4000);
    assert_int_equal(v[0].up_kbit, 2000);
    assert_int_equal(v[0].classid, 0x10001);
    assert_int_equal(v[0].up_classid, 0x10001);
    free(v);
    /* Idempotent: the second apply changes nothing. */
    struct enf_shape_stats a, b;
    enf_shape_get_stats(s, &a);
    enf_tsl_apply_ok(s, &c, 1);
    enf_shape_get_stats(s, &b);
    assert_int_equal(b.added + b.changed + b.removed,
                     a.added + a.changed + a.removed);
    assert_int_equal(b.errors, 0);
    /* A new object (ovhad restarted) reads the same class back and has
     * nothing to do either. */
    struct enf_shape *t = enf_tsl_open(ENF_TSL_DEV);
    struct enf_shape_client c2[2] = { enf_tsl_client(1000, 0), c };
    ovha_strlcpy(c2[0].ip, "100.64.50.9", sizeof(c2[0].ip));
    enf_tsl_apply_ok(t, c2, 2);
    enf_shape_get_stats(t, &b);
    assert_int_equal(b.added, 1);
    assert_int_equal(b.changed, 0);
    enf_tsl_expect("filter show dev " ENF_TSL_DEV " parent 1:", "flowid 1:1");
    enf_tsl_expect("filter show dev " ENF_TSL_DEV " parent 1:",
                   "fh 100:9:1 order 1 key ht 100 bkt 9 *flowid 1:2");
    enf_tsl_apply_ok(t, NULL, 0);
    enf_tsl_expect_not("class show dev " ENF_TSL_DEV, "class htb 1:1 ");
    enf_tsl_expect_not("class show dev " ENF_TSL_IFB, "class htb 1:1 ");
    enf_tsl_expect_not("filter show dev " ENF_TSL_IFB " parent 1:", "flowid");
    enf_shape_free(t);
}

static void test_shape_linux_rates(void **state)
{
    struct enf_shape *s = *state;
    struct enf_shape_client c = enf_tsl_client(4000, 2000);
    enf_tsl_apply_ok(s, &c, 1);
    enf_tsl_assert_near(enf_tsl_measure(true), 4000);
    enf_tsl_assert_near(enf_tsl_measure(false), 2000);
    /* A live change: the class and filter change in place. */
    c.down_kbit = 8000;
    c.up_kbit = 4000;
    enf_tsl_apply_ok(s, &c, 1);
    struct enf_shape_stats st;
    enf_shape_get_stats(s, &st);
    assert_int_equal(st.changed, 1);
    assert_int_equal(st.removed, 0);
    enf_tsl_expect("filter show dev " ENF_TSL_DEV " parent 1:", "flowid 1:1");
    enf_tsl_assert_near(enf_tsl_measure(true), 8000);
    enf_tsl_assert_near(enf_tsl_measure(false), 4000);
}

static void test_shape_linux_unshaped(void **state)
{
    struct enf_shape *s = *state;
    /* Another client is shaped; ours is not, so it is not limited. */
    struct enf_shape_client other = enf_tsl_client(1000, 1000);
    ovha_strlcpy(other.ip, "100.64.50.3", sizeof(other.ip));
    enf_tsl_apply_ok(s, &other, 1);
    long down = enf_tsl_measure(true);
    long up = enf_tsl_measure(false);
    if (down < 40000 || up < 40000) {
        fail_msg("unshaped client measured %ld/%ld kbit/s", down, up);
    }
}

static void test_shape_linux_restores(void **state)
{
    struct enf_shape *s = *state;
    struct enf_shape_client c = enf_tsl_client(4000, 2000);
    enf_tsl_apply_ok(s, &c, 1);
    assert_int_equal(enf_test_sh("tc filter del dev " ENF_TSL_DEV
                                 " parent 1: prio 10 handle 100:2:1 u32"),
                     0);
    assert_int_equal(
        enf_test_sh("tc class del dev " ENF_TSL_DEV " classid 1:1"), 0);
    assert_int_equal(enf_test_sh("tc filter del dev " ENF_TSL_IFB
                                 " parent 1: prio 10 handle 100:2:1 u32"),
                     0);
    assert_int_equal(enf_test_sh("tc filter del dev " ENF_TSL_DEV
                                 " parent ffff: prio 10 handle 800::1 u32"),
                     0);
    enf_tsl_expect_not("filter show dev " ENF_TSL_DEV " ingress", "mirred");
    enf_tsl_apply_ok(s, &c, 1);
    enf_tsl_expect("class show dev " ENF_TSL_DEV,
                   "class htb 1:1 root prio 0 rate 4Mbit ceil 4Mbit");
    enf_tsl_expect("filter show dev " ENF_TSL_DEV " parent 1:", "flowid 1:1");
    enf_tsl_expect("filter show dev " ENF_TSL_IFB " parent 1:", "flowid 1:1");
    enf_tsl_expect("filter show dev " ENF_TSL_DEV " ingress", "mirred");
    /* A foreign root qdisc is replaced by ours. */
    assert_int_equal(
        enf_test_sh("tc qdisc replace dev " ENF_TSL_DEV " root pfifo"), 0);
    enf_tsl_apply_ok(s, &c, 1);
    enf_tsl_expect("qdisc show dev " ENF_TSL_DEV, "qdisc htb 1: root");
    enf_tsl_expect("filter show dev " ENF_TSL_DEV " parent 1:", "flowid 1:1");
    /* A stray filter chain on our ingress goes. */
    assert_int_equal(enf_test_sh("tc filter add dev " ENF_TSL_DEV
                                 " parent ffff: prio 49 protocol ip u32 match "
                                 "u32 0 0 classid ffff:1"),
                     0);
    enf_tsl_apply_ok(s, &c, 1);
    enf_tsl_expect_not("filter show dev " ENF_TSL_DEV " ingress", "pref 49");
    /* The IFB device was deleted: recreated, redirect pointed at it. */
    assert_int_equal(enf_test_sh("ip link del " ENF_TSL_IFB), 0);
    enf_tsl_apply_ok(s, &c, 1);
    enf_tsl_expect("class show dev " ENF_TSL_IFB,
                   "class htb 1:1 root prio 0 rate 2Mbit ceil 2Mbit");
    enf_tsl_expect("filter show dev " ENF_TSL_DEV " ingress",
                   "mirred (Egress Redirect to device " ENF_TSL_IFB ") stolen");
    enf_tsl_assert_near(enf_tsl_measure(true), 4000);
    enf_tsl_assert_near(enf_tsl_measure(false), 2000);
}

static void test_shape_linux_other_devices(void **state)
{
    struct enf_shape *s = *state;
    assert_int_equal(enf_test_sh("tc qdisc replace dev ovt0 root handle 7: "
                                 "tbf rate 1mbit burst 10kb latency 50ms"),
                     0);
    assert_int_equal(enf_test_sh("tc qdisc add dev ovt0 ingress"), 0);
    assert_int_equal(enf_test_sh("tc filter add dev ovt0 parent ffff: prio 10 "
                                 "protocol ip u32 match ip src 198.18.0.9/32 "
                                 "classid ffff:1"),
                     0);
    struct enf_shape_client c = enf_tsl_client(4000, 2000);
    enf_tsl_apply_ok(s, &c, 1);
    enf_tsl_apply_ok(s, NULL, 0);
    enf_tsl_expect("qdisc show dev ovt0", "qdisc tbf 7: root");
    enf_tsl_expect("filter show dev ovt0 ingress", "match c6120009/ffffffff");
    (void)enf_test_sh("tc qdisc del dev ovt0 root");
    (void)enf_test_sh("tc qdisc del dev ovt0 ingress");
}

static void test_shape_linux_no_device(void **state)
{
    (void)state;
    struct enf_shape *s = enf_tsl_open("shpmiss0");
    struct enf_shape_client c = enf_tsl_client(4000, 2000);
    char err[256];
    assert_int_equal(enf_shape_apply(s, &c, 1, err, sizeof(err)), -ENODEV);
    assert_non_null(strstr(err, "shpmiss0"));
    /* The tun appears: the next apply installs. */
    assert_int_equal(
        enf_test_sh("ip link add shpmiss0 type veth peer name shpmiss1"), 0);
    enf_tsl_apply_ok(s, &c, 1);
    enf_tsl_expect("class show dev shpmiss0", "rate 4Mbit");
    (void)enf_test_sh("ip link del shpmiss0");
    enf_shape_free(s);
}

#define ENF_TSL(f) \
    cmocka_unit_test_setup_teardown(f, enf_tsl_setup, enf_tsl_teardown)

/* The last test removes the client namespace (atexit does too, for a
 * run that stops early). */
static void test_shape_linux_cleanup(void **state)
{
    (void)state;
    (void)enf_tsl_group_teardown(NULL);
    assert_int_equal(
        enf_test_sh("ip netns list | grep -q ovshp%dc", (int)getpid()), 1);
}

const struct CMUnitTest enf_shape_linux_tests[] = {
    ENF_TSL(test_shape_linux_installs),
    ENF_TSL(test_shape_linux_rates),
    ENF_TSL(test_shape_linux_unshaped),
    ENF_TSL(test_shape_linux_restores),
    ENF_TSL(test_shape_linux_other_devices),
    ENF_TSL(test_shape_linux_no_device),
    cmocka_unit_test(test_shape_linux_cleanup),
};
const size_t enf_shape_linux_ntests =
    sizeof(enf_shape_linux_tests) / sizeof(enf_shape_linux_tests[0]);
