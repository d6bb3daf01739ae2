/* enforce/fw linux backend tests, run by `enforce_tests --netns` inside a
 * private network namespace that stands in for the gateway (netns.c).
 *
 * Topology, built once with namespaces named "ovfw<pid>{a,b,s}" (removed
 * at exit, also when a test fails):
 *
 *   client A (100.64.0.2/32) --veth--+
 *                                    +-- bridge "ovtun0" 100.64.0.1/24
 *   client B (100.64.0.3/32) --veth--+   in the gateway: the device
 *                                        clients enter from, like tun0
 *   server S (100.64.200.10/24) --veth-- "ovsrv0" 100.64.200.1/24
 *
 * Clients hold /32 addresses with a default route via 100.64.0.1, so
 * A -> B is routed through the gateway's forward hook (redirects off).
 * B and S listen on TCP 5001 and 5002. Every probe's outcome is also
 * checked against enf_fw_explain, so the compiled table and the
 * reference semantics cannot disagree unnoticed. The kernel is read back
 * with `nft`, not only through the module.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "base/base.h"
#include "enforce/fw.h"
#include "enforce/tests/netns.h"
#include "enforce/tests/tests.h"

#define ENF_TL_PY   "/usr/bin/python3 -S"
#define ENF_TL_A    "100.64.0.2"
#define ENF_TL_B    "100.64.0.3"
#define ENF_TL_S    "100.64.200.10"
#define ENF_TL_DEV  "ovtun0"
#define ENF_TL_PORT 5001 /* allowed by the policies below */
#define ENF_TL_ALT  5002 /* not allowed */

static char enf_tl_prefix[32];
static bool enf_tl_built;
static pid_t enf_tl_listeners[2];

/* ---- topology ------------------------------------------------------------ */

static void enf_tl_cleanup(void)
{
    for (size_t i = 0; i < 2; i++) {
        if (enf_tl_listeners[i] > 0) {
            kill(enf_tl_listeners[i], SIGTERM);
            enf_tl_listeners[i] = 0;
        }
    }
    if (enf_tl_prefix[0] != '\0') {
        (void)enf_test_sh(
            "for n in a b s; do ip netns del %s$n "
            "2>/dev/null; done; true",
            enf_tl_prefix);
    }
}

/* Starts a TCP listener on both ports in namespace ns (bounded to 120 s
 * of life) and waits until it has bound. Returns its pid or -1. */
static pid_t enf_tl_listen(const char *ns)
{
    char ready[64], out[32];
    snprintf(ready, sizeof(ready), "/tmp/%s%s.ready", enf_tl_prefix, ns);
    (void)unlink(ready);
    int rc = enf_test_sh_out(
        out, sizeof(out),
        "ip netns exec %s%s timeout 120 " ENF_TL_PY
        " -c 'import socket,select\n"
        "ls=[]\n"
        "for p in (%d,%d):\n"
        " s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,"
        "socket.SO_REUSEADDR,1); s.bind((\"0.0.0.0\",p)); s.listen(64);"
        " ls.append(s)\n"
        "open(\"%s\",\"w\").close()\n"
        "while True:\n"
        " r,_,_=select.select(ls,[],[])\n"
        " for s in r: s.accept()[0].close()\n"
        "' >/dev/null 2>&1 & echo $!",
        enf_tl_prefix, ns, ENF_TL_PORT, ENF_TL_ALT, ready);
    if (rc != 0) {
        return -1;
    }
    pid_t pid = (pid_t)atoi(out);
    for (int i = 0; i < 200; i++) {
        if (access(ready, F_OK) == 0) {
            (void)unlink(ready);
            return pid;
        }
        usleep(10000);
    }
    return -1;
}

static int enf_tl_build(void)
{
    snprintf(enf_tl_prefix, sizeof(enf_tl_prefix), "ovfw%d", (int)getpid());
    atexit(enf_tl_cleanup);
    const char *p = enf_tl_prefix;
    char cmd[8][512];
    snprintf(cmd[0], sizeof(cmd[0]),
             "ip netns add %sa && ip netns add %sb && ip netns add %ss", p, p,
             p);
    snprintf(cmd[1], sizeof(cmd[1]),
             "sysctl -qw net.ipv4.ip_forward=1 "
             "net.ipv4.conf.all.send_redirects=0 "
             "net.ipv4.conf.default.send_redirects=0 && "
             "ip link add " ENF_TL_DEV
             " type bridge && "
             "ip addr add 100.64.0.1/24 dev " ENF_TL_DEV
             " && "
             "ip link set " ENF_TL_DEV " up");
    snprintf(cmd[2], sizeof(cmd[2]),
             "ip link add ovsrv0 type veth peer name eth0 netns %ss && "
             "ip addr add 100.64.200.1/24 dev ovsrv0 && ip link set ovsrv0 up",
             p);
    snprintf(cmd[3], sizeof(cmd[3]),
             "ip -n %ss link set lo up && ip -n %ss link set eth0 up && "
             "ip -n %ss addr add " ENF_TL_S
             "/24 dev eth0 && "
             "ip -n %ss route add default via 100.64.200.1",
             p, p, p, p);
    int n = 4;
    static const char *const clients[2][2] = { { "a", ENF_TL_A },
                                               { "b", ENF_TL_B } };
    for (size_t i = 0; i < 2; i++) {
        const char *c = clients[i][0];
        snprintf(cmd[n++], sizeof(cmd[0]),
                 "ip link add ovcl%s type veth peer name eth0 netns %s%s && "
                 "ip link set ovcl%s master " ENF_TL_DEV " up",
                 c, p, c, c);
        snprintf(cmd[n++], sizeof(cmd[0]),
                 "ip netns exec %s%s sh -c 'sysctl -qw "
                 "net.ipv4.conf.all.accept_redirects=0; ip link set lo up; "
                 "ip link set eth0 up; ip addr add %s/32 dev eth0; "
                 "ip route add 100.64.0.1/32 dev eth0; "
                 "ip route add default via 100.64.0.1'",
                 p, c, clients[i][1]);
    }
    for (int i = 0; i < n; i++) {
        if (enf_test_sh("%s", cmd[i]) != 0) {
            fprintf(stderr, "fw netns setup failed: %s\n", cmd[i]);
            return -1;
        }
    }
    enf_tl_listeners[0] = enf_tl_listen("b");
    enf_tl_listeners[1] = enf_tl_listen("s");
    if (enf_tl_listeners[0] < 0 || enf_tl_listeners[1] < 0) {
        fprintf(stderr, "fw netns: listeners did not start\n");
        return -1;
    }
    enf_tl_built = true;
    return 0;
}

/* Whether a TCP connection from namespace ns to dst:port succeeds within
 * 0.4 s (a dropped SYN times out). */
static bool enf_tl_connects(const char *ns, const char *dst, int port)
{
    int rc = enf_test_sh(
        "ip netns exec %s%s " ENF_TL_PY
        " -c 'import socket,sys\n"
        "try: socket.create_connection((\"%s\",%d),timeout=0.4).close()\n"
        "except OSError: sys.exit(1)' 2>/dev/null",
        enf_tl_prefix, ns, dst, port);
    return rc == 0;
}

/* ---- fixture ------------------------------------------------------------- */

struct enf_tl_ctx {
    struct enf_fw *fw;
    struct enf_fw_policy *p;
    struct enf_fw_member members[4];
    size_t nmembers;
};

static int enf_tl_setup(void **state)
{
    if (!enf_tl_built && enf_tl_build() != 0) {
        fail_msg("cannot build the test topology");
    }
    (void)enf_test_sh("nft delete table inet " ENF_FW_TABLE_DEFAULT
                      " 2>/dev/null");
    struct enf_tl_ctx *c = calloc(1, sizeof(*c));
    struct enf_fw_config cfg = { .backend = "linux", .dev = ENF_TL_DEV };
    char err[256] = "";
    int rc = enf_fw_new(&cfg, &c->fw, err, sizeof(err));
    if (rc != 0) {
        fail_msg("enf_fw_new: %d: %s", rc, err);
    }
    *state = c;
    return 0;
}

static int enf_tl_teardown(void **state)
{
    struct enf_tl_ctx *c = *state;
    enf_fw_free(c->fw);
    enf_fw_policy_free(c->p);
    free(c);
    (void)enf_test_sh("nft delete table inet " ENF_FW_TABLE_DEFAULT
                      " 2>/dev/null");
    return 0;
}

static void enf_tl_policy(struct enf_tl_ctx *c, const char *json)
{
    char err[256] = "";
    enf_fw_policy_free(c->p);
    c->p = NULL;
    int rc = enf_fw_policy_parse(json, strlen(json), &c->p, err, sizeof(err));
    if (rc != 0) {
        fail_msg("parse: %d: %s", rc, err);
    }
}

static void enf_tl_apply(struct enf_tl_ctx *c)
{
    char err[256] = "";
    int rc =
        enf_fw_apply(c->fw, c->p, c->members, c->nmembers, err, sizeof(err));
    if (rc != 0) {
        fail_msg("apply: %d: %s", rc, err);
    }
}

static void enf_tl_set_member(struct enf_tl_ctx *c,
                              size_t i,
                              const char *ip,
                              const char *const *groups,
                              size_t ngroups)
{
    c->members[i] = (struct enf_fw_member){ ip, groups, ngroups };
    if (i >= c->nmembers) {
        c->nmembers = i + 1;
    }
}

/* Probes src_ns -> dst:port and checks the outcome, and that explain
 * predicts it with the given reason. */
static void enf_tl_probe(struct enf_tl_ctx *c,
                         const char *src_ns,
                         const char *src_ip,
                         const char *dst,
                         int port,
                         bool want,
                         const char *reason)
{
    bool got = enf_tl_connects(src_ns, dst, port);
    if (got != want) {
        fail_msg("%s -> %s:%d %s, want %s", src_ip, dst, port,
                 got ? "connected" : "blocked", want ? "connected" : "blocked");
    }
    struct enf_fw_explanation ex;
    char err[256] = "";
    assert_int_equal(
        enf_fw_explain(c->p, c->members, c->nmembers, src_ip, dst,
                       ENF_FW_PROTO_TCP, (uint16_t)port, &ex, err, sizeof(err)),
        0);
    if ((ex.verdict == ENF_FW_ACCEPT) != want ||
        strcmp(ex.reason, reason) != 0) {
        fail_msg("explain %s -> %s:%d: %s \"%s\", want \"%s\"", src_ip, dst,
                 port, ex.verdict == ENF_FW_ACCEPT ? "accept" : "drop",
                 ex.reason, reason);
    }
}

static void enf_tl_in_sync(struct enf_fw *fw, bool want)
{
    bool ok = !want;
    char why[256] = "";
    int rc = enf_fw_check(fw, &ok, why, sizeof(why));
    if (rc != 0) {
        fail_msg("check: %d: %s", rc, why);
    }
    if (ok != want) {
        fail_msg("check: in sync %d, want %d (%s)", ok, want, why);
    }
}

/* Our table's kernel handle (changes only when it is re-created). */
static long enf_tl_table_handle(void)
{
    char out[64];
    (void)enf_test_sh_out(out, sizeof(out),
                          "nft -a list table inet " ENF_FW_TABLE_DEFAULT
                          " 2>/dev/null | sed -n '1s/.*# handle //p'");
    return out[0] != '\0' ? atol(out) : -1;
}

static struct enf_fw_stats enf_tl_stats(struct enf_fw *fw)
{
    struct enf_fw_stats st;
    enf_fw_get_stats(fw, &st);
    return st;
}

/* ---- tests --------------------------------------------------------------- */

static const char *const enf_tl_ga[] = { "a" };
static const char *const enf_tl_gb[] = { "b" };

/* Isolation; then a rule allowing A -> B on one port, which takes effect
 * when B joins group b by an element update, without a new table. */
static void enf_tl_isolation(void **state)
{
    struct enf_tl_ctx *c = *state;
    enf_tl_policy(c,
                  "{\"version\":1,\"default\":\"accept\",\"isolation\":true}");
    enf_tl_set_member(c, 0, ENF_TL_A, NULL, 0);
    enf_tl_set_member(c, 1, ENF_TL_B, NULL, 0);
    /* Before any table: A reaches B (the topology works). */
    assert_true(enf_tl_connects("a", ENF_TL_B, ENF_TL_PORT));
    enf_tl_apply(c);
    enf_tl_probe(c, "a", ENF_TL_A, ENF_TL_B, ENF_TL_PORT, false, "isolation");
    enf_tl_probe(c, "b", ENF_TL_B, ENF_TL_A, ENF_TL_PORT, false, "isolation");
    enf_tl_probe(c, "a", ENF_TL_A, ENF_TL_S, ENF_TL_PORT, true, "default");
    enf_tl_in_sync(c->fw, true);

    enf_tl_policy(c,
                  "{\"version\":1,\"default\":\"accept\","
                  "\"groups\":[\"a\",\"b\"],\"rules\":[{\"name\":\"a-to-b\","
                  "\"from\":\"a\",\"to\":{\"group\":\"b\"},\"proto\":\"tcp\","
                  "\"ports\":[5001],\"action\":\"accept\"}]}");
    enf_tl_set_member(c, 0, ENF_TL_A, enf_tl_ga, 1);
    enf_tl_apply(c);
    enf_tl_probe(c, "a", ENF_TL_A, ENF_TL_B, ENF_TL_PORT, false, "isolation");
    long handle = enf_tl_table_handle();
    assert_true(handle > 0);

    char err[256] = "";
    assert_int_equal(
        enf_fw_member_add(c->fw, ENF_TL_B, enf_tl_gb, 1, err, sizeof(err)), 0);
    enf_tl_set_member(c, 1, ENF_TL_B, enf_tl_gb, 1);
    enf_tl_probe(c, "a", ENF_TL_A, ENF_TL_B, ENF_TL_PORT, true, "rule a-to-b");
    enf_tl_probe(c, "a", ENF_TL_A, ENF_TL_B, ENF_TL_ALT, false, "isolation");
    enf_tl_probe(c, "b", ENF_TL_B, ENF_TL_A, ENF_TL_PORT, false, "isolation");
    assert_int_equal(enf_tl_table_handle(), handle);
    enf_tl_in_sync(c->fw, true);

    /* B leaves the group: blocked again, still the same table. */
    assert_int_equal(
        enf_fw_member_add(c->fw, ENF_TL_B, NULL, 0, err, sizeof(err)), 0);
    enf_tl_set_member(c, 1, ENF_TL_B, NULL, 0);
    enf_tl_probe(c, "a", ENF_TL_A, ENF_TL_B, ENF_TL_PORT, false, "isolation");
    /* B disconnects: no longer a client address, so not isolated. */
    assert_int_equal(enf_fw_member_del(c->fw, ENF_TL_B, err, sizeof(err)), 0);
    c->nmembers = 1;
    enf_tl_probe(c, "a", ENF_TL_A, ENF_TL_B, ENF_TL_ALT, true, "default");
    assert_int_equal(enf_tl_table_handle(), handle);
    enf_tl_in_sync(c->fw, true);
    struct enf_fw_stats st = enf_tl_stats(c->fw);
    assert_int_equal(st.applies, 2);
    assert_int_equal(st.element_txns, 3);
    assert_int_equal(st.element_updates, 1 + 1 + 1); /* g4_b+, g4_b-, c4- */
    assert_int_equal(st.errors, 0);
}

/* A group rule to the server subnet with a default drop. */
static void enf_tl_group_to_server(void **state)
{
    struct enf_tl_ctx *c = *state;
    enf_tl_policy(c,
                  "{\"version\":1,\"default\":\"drop\","
                  "\"groups\":[\"a\"],\"rules\":[{\"name\":\"a-srv\","
                  "\"from\":\"a\",\"to\":{\"cidr\":\"100.64.200.0/24\"},"
                  "\"proto\":\"tcp\",\"ports\":[\"5000-5001\"],"
                  "\"action\":\"accept\"}]}");
    enf_tl_set_member(c, 0, ENF_TL_A, enf_tl_ga, 1);
    enf_tl_set_member(c, 1, ENF_TL_B, NULL, 0);
    enf_tl_apply(c);
    enf_tl_probe(c, "a", ENF_TL_A, ENF_TL_S, ENF_TL_PORT, true, "rule a-srv");
    enf_tl_probe(c, "a", ENF_TL_A, ENF_TL_S, ENF_TL_ALT, false, "default");
    enf_tl_probe(c, "b", ENF_TL_B, ENF_TL_S, ENF_TL_PORT, false, "default");
    /* The server's own connections to a client are not from a client. */
    enf_tl_probe(c, "s", ENF_TL_S, ENF_TL_B, ENF_TL_ALT, true,
                 "not from a client");
    /* B joins a: allowed at once. */
    char err[256] = "";
    assert_int_equal(
        enf_fw_member_add(c->fw, ENF_TL_B, enf_tl_ga, 1, err, sizeof(err)), 0);
    enf_tl_set_member(c, 1, ENF_TL_B, enf_tl_ga, 1);
    enf_tl_probe(c, "b", ENF_TL_B, ENF_TL_S, ENF_TL_PORT, true, "rule a-srv");
    enf_tl_in_sync(c->fw, true);
}

/* Runs an nft command that alters our table by hand. */
static void enf_tl_nft(const char *cmd)
{
    if (enf_test_sh("nft %s", cmd) != 0) {
        fail_msg("nft %s failed", cmd);
    }
}

/* Hand alterations are detected and the next apply restores the table. */
static void enf_tl_drift(void **state)
{
    struct enf_tl_ctx *c = *state;
    enf_tl_policy(c,
                  "{\"version\":1,\"default\":\"accept\","
                  "\"groups\":[\"a\"],\"rules\":[{\"name\":\"a-srv\","
                  "\"from\":\"a\",\"to\":{\"cidr\":\"100.64.200.0/24\"},"
                  "\"proto\":\"tcp\",\"ports\":[5002],"
                  "\"action\":\"drop\"}]}");
    enf_tl_set_member(c, 0, ENF_TL_A, enf_tl_ga, 1);
    enf_tl_set_member(c, 1, ENF_TL_B, NULL, 0);
    enf_tl_set_member(c, 2, "fd00:64::2", enf_tl_ga, 1);
    enf_tl_apply(c);
    enf_tl_in_sync(c->fw, true);
    enf_tl_probe(c, "a", ENF_TL_A, ENF_TL_S, ENF_TL_ALT, false, "rule a-srv");

    /* Delete the rule by its handle: traffic passes, drift is seen. */
    char out[64];
    assert_int_equal(
        enf_test_sh_out(out, sizeof(out),
                        "nft -a list chain inet " ENF_FW_TABLE_DEFAULT
                        " from_clients | sed -n 's/.*rule a-srv.*# handle "
                        "\\([0-9]*\\)$/\\1/p' | head -1"),
        0);
    assert_true(atoi(out) > 0);
    char cmd[128];
    snprintf(cmd, sizeof(cmd),
             "delete rule inet " ENF_FW_TABLE_DEFAULT " from_clients handle %d",
             atoi(out));
    enf_tl_nft(cmd);
    assert_true(enf_tl_connects("a", ENF_TL_S, ENF_TL_ALT));
    enf_tl_in_sync(c->fw, false);
    enf_tl_apply(c);
    enf_tl_in_sync(c->fw, true);
    enf_tl_probe(c, "a", ENF_TL_A, ENF_TL_S, ENF_TL_ALT, false, "rule a-srv");

    enf_tl_nft("add rule inet " ENF_FW_TABLE_DEFAULT " from_clients counter");
    enf_tl_in_sync(c->fw, false);
    enf_tl_apply(c);
    enf_tl_in_sync(c->fw, true);

    enf_tl_nft("flush set inet " ENF_FW_TABLE_DEFAULT " g4_a");
    enf_tl_in_sync(c->fw, false);
    enf_tl_apply(c);
    enf_tl_in_sync(c->fw, true);

    enf_tl_nft("add element inet " ENF_FW_TABLE_DEFAULT " g4_a { " ENF_TL_B
               " }");
    enf_tl_in_sync(c->fw, false);
    enf_tl_apply(c);
    enf_tl_in_sync(c->fw, true);

    enf_tl_nft("delete element inet " ENF_FW_TABLE_DEFAULT
               " g6_a { fd00:64::2 }");
    enf_tl_in_sync(c->fw, false);
    enf_tl_apply(c);
    enf_tl_in_sync(c->fw, true);

    enf_tl_nft("delete table inet " ENF_FW_TABLE_DEFAULT);
    enf_tl_in_sync(c->fw, false);
    assert_true(enf_tl_connects("a", ENF_TL_S, ENF_TL_ALT));
    enf_tl_apply(c);
    enf_tl_in_sync(c->fw, true);
    enf_tl_probe(c, "a", ENF_TL_A, ENF_TL_S, ENF_TL_ALT, false, "rule a-srv");

    struct enf_fw_stats st = enf_tl_stats(c->fw);
    assert_int_equal(st.drifts, 6);
    assert_int_equal(st.repairs, 6);
    assert_int_equal(st.errors, 0);

    /* A member update into a set someone flushed fails (the kernel has no
     * such element to delete); check says so; apply repairs. */
    enf_tl_nft("flush set inet " ENF_FW_TABLE_DEFAULT " clients4");
    char err[256] = "";
    assert_int_equal(enf_fw_member_del(c->fw, ENF_TL_B, err, sizeof(err)),
                     -ENOENT);
    enf_tl_in_sync(c->fw, false);
    enf_tl_apply(c);
    enf_tl_in_sync(c->fw, true);

    /* Adding an element someone already added is fine (no EXCL). */
    enf_tl_nft("add element inet " ENF_FW_TABLE_DEFAULT " g4_a { " ENF_TL_B
               " }");
    assert_int_equal(
        enf_fw_member_add(c->fw, ENF_TL_B, enf_tl_ga, 1, err, sizeof(err)), 0);
    enf_tl_in_sync(c->fw, true);
    /* Updates into a deleted table fail; the next apply repairs. */
    enf_tl_nft("delete table inet " ENF_FW_TABLE_DEFAULT);
    assert_int_equal(
        enf_fw_member_add(c->fw, "100.64.0.77", NULL, 0, err, sizeof(err)),
        -ENOENT);
    enf_tl_in_sync(c->fw, false);
    enf_tl_apply(c);
    enf_tl_in_sync(c->fw, true);
    assert_true(enf_tl_stats(c->fw).errors >= 2);
}

static const char enf_tl_foreign[] =
    "table inet ovfw_foreign {\n"
    "\tset fs {\n\t\ttype ipv4_addr\n"
    "\t\telements = { 100.64.99.1, 100.64.99.2 }\n\t}\n"
    "\tchain c {\n\t\ttype filter hook forward priority 10; policy accept;\n"
    "\t\tip daddr 100.64.99.0/24 drop\n\t}\n}\n"
    "table ip " ENF_FW_TABLE_DEFAULT
    " {\n"
    "\tset clients4 {\n\t\ttype ipv4_addr\n"
    "\t\telements = { 100.64.98.1 }\n\t}\n}\n";

/* Tables that are not ours (another name; our name in another family)
 * stay exactly as they were through apply, updates, check and remove. */
static void enf_tl_foreign_untouched(void **state)
{
    struct enf_tl_ctx *c = *state;
    char path[64];
    snprintf(path, sizeof(path), "/tmp/%sforeign.nft", enf_tl_prefix);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(enf_tl_foreign, f);
    fclose(f);
    (void)enf_test_sh(
        "nft delete table inet ovfw_foreign 2>/dev/null; "
        "nft delete table ip " ENF_FW_TABLE_DEFAULT " 2>/dev/null");
    int rc = enf_test_sh("nft -f %s", path);
    (void)unlink(path);
    assert_int_equal(rc, 0);
    static char before[4096], after[4096];
    const char *list =
        "nft -a list table inet ovfw_foreign; "
        "nft -a list table ip " ENF_FW_TABLE_DEFAULT;
    assert_int_equal(enf_test_sh_out(before, sizeof(before), "%s", list), 0);
    assert_non_null(strstr(before, "100.64.99.2"));

    enf_tl_policy(c,
                  "{\"version\":1,\"default\":\"drop\","
                  "\"groups\":[\"a\"]}");
    enf_tl_set_member(c, 0, ENF_TL_A, enf_tl_ga, 1);
    enf_tl_apply(c);
    char err[256] = "";
    assert_int_equal(
        enf_fw_member_add(c->fw, ENF_TL_B, enf_tl_ga, 1, err, sizeof(err)), 0);
    assert_int_equal(enf_fw_member_del(c->fw, ENF_TL_B, err, sizeof(err)), 0);
    enf_tl_in_sync(c->fw, true);
    enf_tl_apply(c);
    char *text = NULL;
    assert_int_equal(enf_fw_compiled(c->fw, &text), 0);
    assert_non_null(strstr(text, "table inet " ENF_FW_TABLE_DEFAULT " {"));
    assert_null(strstr(text, "ovfw_foreign"));
    assert_null(strstr(text, "100.64.98.1"));
    free(text);
    assert_int_equal(enf_fw_remove(c->fw, err, sizeof(err)), 0);
    assert_int_equal(enf_fw_remove(c->fw, err, sizeof(err)), 0);
    assert_int_equal(enf_tl_table_handle(), -1);
    assert_int_equal(enf_fw_compiled(c->fw, &text), -ENOENT);

    assert_int_equal(enf_test_sh_out(after, sizeof(after), "%s", list), 0);
    assert_string_equal(before, after);
    (void)enf_test_sh(
        "nft delete table inet ovfw_foreign; "
        "nft delete table ip " ENF_FW_TABLE_DEFAULT);
}

/* IPv6 members; two objects on two tables. */
static void enf_tl_errors(void **state)
{
    struct enf_tl_ctx *c = *state;
    enf_tl_policy(c,
                  "{\"version\":1,\"default\":\"accept\","
                  "\"groups\":[\"a\"],\"rules\":[{\"name\":\"ping6\","
                  "\"from\":\"a\",\"to\":\"any\",\"proto\":\"icmp\","
                  "\"action\":\"accept\"}]}");
    enf_tl_set_member(c, 0, "fd00:64::2", enf_tl_ga, 1);
    enf_tl_set_member(c, 1, ENF_TL_A, enf_tl_ga, 1);
    enf_tl_apply(c);
    enf_tl_in_sync(c->fw, true);
    char err[256] = "";
    assert_int_equal(
        enf_fw_member_add(c->fw, "fd00:64::3", enf_tl_ga, 1, err, sizeof(err)),
        0);
    enf_tl_in_sync(c->fw, true);
    char out[512];
    assert_int_equal(
        enf_test_sh_out(out, sizeof(out),
                        "nft list set inet " ENF_FW_TABLE_DEFAULT " g6_a"),
        0);
    assert_non_null(strstr(out, "fd00:64::3"));
    /* A second object on another table: each only ever touches its own. */
    struct enf_fw *fw2 = NULL;
    struct enf_fw_config cfg = { .backend = "linux",
                                 .table = "ovha_b",
                                 .dev = ENF_TL_DEV };
    assert_int_equal(enf_fw_new(&cfg, &fw2, err, sizeof(err)), 0);
    assert_int_equal(enf_fw_apply(fw2, c->p, c->members, 1, err, sizeof(err)),
                     0);
    long handle = enf_tl_table_handle();
    enf_tl_in_sync(fw2, true);
    enf_tl_in_sync(c->fw, true);
    assert_int_equal(enf_fw_remove(fw2, err, sizeof(err)), 0);
    assert_int_equal(enf_test_sh("nft list table inet ovha_b 2>/dev/null"), 1);
    assert_int_equal(enf_tl_table_handle(), handle);
    enf_tl_in_sync(c->fw, true);
    enf_fw_free(fw2);
    /* IPv6 elements as the kernel prints them compare equal to ours. */
    assert_int_equal(
        enf_fw_member_add(c->fw, "fd00:64:0:0::4", NULL, 0, err, sizeof(err)),
        0);
    enf_tl_in_sync(c->fw, true);
}

const struct CMUnitTest enf_fw_linux_tests[] = {
    cmocka_unit_test_setup_teardown(enf_tl_isolation,
                                    enf_tl_setup,
                                    enf_tl_teardown),
    cmocka_unit_test_setup_teardown(enf_tl_group_to_server,
                                    enf_tl_setup,
                                    enf_tl_teardown),
    cmocka_unit_test_setup_teardown(enf_tl_drift,
                                    enf_tl_setup,
                                    enf_tl_teardown),
    cmocka_unit_test_setup_teardown(enf_tl_foreign_untouched,
                                    enf_tl_setup,
                                    enf_tl_teardown),
    cmocka_unit_test_setup_teardown(enf_tl_errors,
                                    enf_tl_setup,
                                    enf_tl_teardown),
};
const size_t enf_fw_linux_ntests =
    sizeof(enf_fw_linux_tests) / sizeof(enf_fw_linux_tests[0]);
