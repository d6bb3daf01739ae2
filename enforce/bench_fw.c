/* fw_bench: firewall table timings with the linux backend, in a private
 * network namespace (run as root; exits 77 otherwise).
 *
 *   fw_bench [CLIENTS [RULES [UPDATES]]]   defaults 10000 50 1000
 *
 * The policy has 20 groups and RULES rules (group to group or group to a
 * network, three TCP ports each); every client is in two groups. Times:
 * compile alone, apply (compile + one kernel transaction + reading the
 * skeleton back), a check (reading every set back), and UPDATES member
 * adds then UPDATES member deletes (one element transaction each, three
 * elements: the all-clients set and two groups), as median and p99.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "enforce/fw.h"
#include "enforce/tests/netns.h"

#define ENF_FB_GROUPS 20
#define ENF_FB_RUNS   5

static double enf_fb_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int enf_fb_cmp(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;
    return a < b ? -1 : a > b;
}

/* Sorts v and returns the q-quantile (0..1). */
static double enf_fb_quantile(double *v, size_t n, double q)
{
    qsort(v, n, sizeof(*v), enf_fb_cmp);
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

static char *enf_fb_policy_json(unsigned nrules)
{
    struct ovha_buf b;
    ovha_buf_init(&b);
    int err = ovha_buf_appends(&b,
                               "{\"version\":1,\"default\":\"drop\","
                               "\"isolation\":true,\"groups\":[");
    for (int g = 0; err == 0 && g < ENF_FB_GROUPS; g++) {
        err = ovha_buf_printf(&b, "%s\"g%02d\"", g ? "," : "", g);
    }
    err = err < 0 ? err : ovha_buf_appends(&b, "],\"rules\":[");
    for (unsigned r = 0; err == 0 && r < nrules; r++) {
        char to[64];
        if (r % 2 == 0) {
            snprintf(to, sizeof(to), "{\"group\":\"g%02u\"}",
                     (r + 1) % ENF_FB_GROUPS);
        } else {
            snprintf(to, sizeof(to), "{\"cidr\":\"100.64.%u.0/24\"}",
                     200 + r % 50);
        }
        err = ovha_buf_printf(&b,
                              "%s{\"name\":\"r%u\",\"from\":\"g%02u\","
                              "\"to\":%s,\"proto\":\"tcp\",\"ports\":[22,443,"
                              "\"8000-8080\"],\"action\":\"%s\"}",
                              r ? "," : "", r, r % ENF_FB_GROUPS, to,
                              r % 5 == 4 ? "drop" : "accept");
    }
    /* The throughput run's server network: every rule above is tried
     * (and misses) before this one. */
    err = err < 0 ? err
                  : ovha_buf_printf(&b,
                                    "%s{\"name\":\"tput\",\"from\":\"any\","
                                    "\"to\":{\"cidr\":\"100.64.250.0/24\"},"
                                    "\"proto\":\"tcp\",\"action\":\"accept\"}",
                                    nrules ? "," : "");
    err = err < 0 ? err : ovha_buf_appends(&b, "]}");
    if (err < 0) {
        ovha_buf_free(&b);
        return NULL;
    }
    return b.data;
}

/* Client i: 100.64.0.0/10 from 100.65.0.0 on (clear of the rules'
 * networks), groups i%20 and (7i+3)%20. */
struct enf_fb_clients {
    size_t n;
    char (*ips)[16];
    const char *(*groups)[2];
    struct enf_fw_member *m;
};

static const char *enf_fb_gname[ENF_FB_GROUPS];
static char enf_fb_gbuf[ENF_FB_GROUPS][8];

static void enf_fb_client_ip(size_t i, char *buf, size_t len)
{
    uint32_t a = (100u << 24) | (65u << 16) | (uint32_t)i;
    snprintf(buf, len, "%u.%u.%u.%u", a >> 24, (a >> 16) & 0xff,
             (a >> 8) & 0xff, a & 0xff);
}

static int enf_fb_clients_make(struct enf_fb_clients *c, size_t n)
{
    for (int g = 0; g < ENF_FB_GROUPS; g++) {
        snprintf(enf_fb_gbuf[g], sizeof(enf_fb_gbuf[g]), "g%02d", g);
        enf_fb_gname[g] = enf_fb_gbuf[g];
    }
    c->n = n;
    c->ips = calloc(n ? n : 1, sizeof(*c->ips));
    c->groups = calloc(n ? n : 1, sizeof(*c->groups));
    c->m = calloc(n ? n : 1, sizeof(*c->m));
    if (c->ips == NULL || c->groups == NULL || c->m == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        enf_fb_client_ip(i, c->ips[i], sizeof(c->ips[i]));
        c->groups[i][0] = enf_fb_gname[i % ENF_FB_GROUPS];
        c->groups[i][1] = enf_fb_gname[(7 * i + 3) % ENF_FB_GROUPS];
        c->m[i].ip = c->ips[i];
        c->m[i].groups = c->groups[i];
        c->m[i].ngroups = 2;
    }
    return 0;
}

static void enf_fb_clients_free(struct enf_fb_clients *c)
{
    free(c->ips);
    free(c->groups);
    free(c->m);
}

static void enf_fb_row(const char *what, double ms, const char *note)
{
    printf("| %-34s | %9.3f ms | %s\n", what, ms, note);
}

/* Median of ENF_FB_RUNS compiles and applies. */
static int enf_fb_whole(struct enf_fw *fw,
                        const struct enf_fw_policy *p,
                        const struct enf_fb_clients *c,
                        double *ret_apply)
{
    double tc[ENF_FB_RUNS], ta[ENF_FB_RUNS], tk[ENF_FB_RUNS];
    char err[256];
    size_t script_len = 0;
    for (int r = 0; r < ENF_FB_RUNS; r++) {
        char *text = NULL;
        double t0 = enf_fb_now();
        int rc = enf_fw_compile(p, c->m, c->n, "ovtun0", NULL, &text, err,
                                sizeof(err));
        tc[r] = enf_fb_now() - t0;
        script_len = text != NULL ? strlen(text) : 0;
        free(text);
        t0 = enf_fb_now();
        rc = rc < 0 ? rc : enf_fw_apply(fw, p, c->m, c->n, err, sizeof(err));
        ta[r] = enf_fb_now() - t0;
        bool ok = false;
        t0 = enf_fb_now();
        rc = rc < 0 ? rc : enf_fw_check(fw, &ok, err, sizeof(err));
        tk[r] = enf_fb_now() - t0;
        if (rc < 0 || !ok) {
            fprintf(stderr, "fw_bench: run %d: %d: %s\n", r, rc, err);
            return 1;
        }
    }
    char note[96];
    snprintf(note, sizeof(note), "script %zu bytes", script_len);
    enf_fb_row("compile (median of 5)", enf_fb_quantile(tc, ENF_FB_RUNS, 0.5),
               note);
    *ret_apply = enf_fb_quantile(ta, ENF_FB_RUNS, 0.5);
    enf_fb_row("apply = compile+txn+read (median)", *ret_apply,
               "whole table, one transaction");
    enf_fb_row("apply, slowest of 5",
               ta[ENF_FB_RUNS - 1] > *ret_apply
                   ? enf_fb_quantile(ta, ENF_FB_RUNS, 1)
                   : *ret_apply,
               "");
    enf_fb_row("check (median)", enf_fb_quantile(tk, ENF_FB_RUNS, 0.5),
               "reads every set back");
    return 0;
}

/* UPDATES adds of new members, then their deletes. */
static int enf_fb_updates(struct enf_fw *fw,
                          size_t c_members,
                          size_t base,
                          size_t n,
                          double *ret_p50,
                          double *ret_p99)
{
    double *ta = calloc(n ? n : 1, sizeof(double));
    double *td = calloc(n ? n : 1, sizeof(double));
    char err[256];
    int rc = ta != NULL && td != NULL ? 0 : -ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char ip[16];
        const char *g[2] = { enf_fb_gname[i % ENF_FB_GROUPS],
                             enf_fb_gname[(i + 5) % ENF_FB_GROUPS] };
        enf_fb_client_ip(base + i, ip, sizeof(ip));
        double t0 = enf_fb_now();
        rc = enf_fw_member_add(fw, ip, g, 2, err, sizeof(err));
        ta[i] = enf_fb_now() - t0;
    }
    /* The kernel really holds them: check reads every set back. */
    bool ok = false;
    rc = rc < 0 ? rc : enf_fw_check(fw, &ok, err, sizeof(err));
    if (rc == 0 && !ok) {
        fprintf(stderr, "fw_bench: after the adds: %s\n", err);
        rc = -EIO;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char ip[16];
        enf_fb_client_ip(base + i, ip, sizeof(ip));
        double t0 = enf_fb_now();
        rc = enf_fw_member_del(fw, ip, err, sizeof(err));
        td[i] = enf_fb_now() - t0;
    }
    rc = rc < 0 ? rc : enf_fw_check(fw, &ok, err, sizeof(err));
    if (rc == 0 && !ok) {
        fprintf(stderr, "fw_bench: after the deletes: %s\n", err);
        rc = -EIO;
    }
    struct enf_fw_stats st;
    enf_fw_get_stats(fw, &st);
    if (rc == 0 && st.members != c_members) {
        fprintf(stderr, "fw_bench: %llu members, want %zu\n",
                (unsigned long long)st.members, c_members);
        rc = -EIO;
    }
    if (rc == 0 && n > 0) {
        char note[64];
        snprintf(note, sizeof(note), "%zu updates, 3 elements each", n);
        ret_p50[0] = enf_fb_quantile(ta, n, 0.5);
        ret_p99[0] = enf_fb_quantile(ta, n, 0.99);
        ret_p50[1] = enf_fb_quantile(td, n, 0.5);
        ret_p99[1] = enf_fb_quantile(td, n, 0.99);
        enf_fb_row("member add, median", ret_p50[0], note);
        enf_fb_row("member add, p99", ret_p99[0], "");
        enf_fb_row("member del, median", ret_p50[1], "");
        enf_fb_row("member del, p99", ret_p99[1], "");
    } else if (rc < 0) {
        fprintf(stderr, "fw_bench: update: %d: %s\n", rc, err);
    }
    free(ta);
    free(td);
    return rc == 0 ? 0 : 1;
}

/* ---- throughput --------------------------------------------------------- */

static char enf_fb_ns[32];

static void enf_fb_ns_cleanup(void)
{
    if (enf_fb_ns[0] != '\0') {
        (void)enf_test_sh(
            "ip netns del %sc 2>/dev/null; "
            "ip netns del %ss 2>/dev/null; true",
            enf_fb_ns, enf_fb_ns);
    }
}

/* Client namespace (100.65.0.1, client 1 of the table, entering through
 * "ovtun0") and server namespace (100.64.250.10) around this namespace,
 * which forwards between them. */
static int enf_fb_topology(void)
{
    snprintf(enf_fb_ns, sizeof(enf_fb_ns), "ovfwb%d", (int)getpid());
    atexit(enf_fb_ns_cleanup);
    const char *p = enf_fb_ns;
    int rc = enf_test_sh(
        "ip netns add %sc && ip netns add %ss && "
        "sysctl -qw net.ipv4.ip_forward=1",
        p, p);
    rc = rc ? rc
            : enf_test_sh(
                  "ip link add ovtun0 type veth peer name eth0 "
                  "netns %sc && ip addr add 100.64.0.1/32 dev ovtun0 "
                  "&& ip link set ovtun0 up && "
                  "ip route add 100.65.0.1/32 dev ovtun0",
                  p);
    rc = rc ? rc
            : enf_test_sh(
                  "ip link add ovsrv0 type veth peer name eth0 "
                  "netns %ss && ip addr add 100.64.250.1/24 dev ovsrv0 "
                  "&& ip link set ovsrv0 up",
                  p);
    rc = rc ? rc
            : enf_test_sh(
                  "ip netns exec %sc sh -c 'ip link set lo up && "
                  "ip link set eth0 up && "
                  "ip addr add 100.65.0.1/32 dev eth0 && "
                  "ip route add 100.64.0.1/32 dev eth0 && "
                  "ip route add default via 100.64.0.1'",
                  p);
    rc = rc ? rc
            : enf_test_sh(
                  "ip netns exec %ss sh -c 'ip link set lo up && "
                  "ip link set eth0 up && "
                  "ip addr add 100.64.250.10/24 dev eth0 && "
                  "ip route add default via 100.64.250.1'",
                  p);
    return rc;
}

/* One bounded TCP bulk transfer client -> server; returns Gbit/s or -1. */
static double enf_fb_transfer(double seconds)
{
    char ready[64], out[64];
    snprintf(ready, sizeof(ready), "/tmp/%s.ready", enf_fb_ns);
    (void)unlink(ready);
    if (enf_test_sh("ip netns exec %ss timeout 30 /usr/bin/python3 -S -c '"
                    "import socket\n"
                    "l=socket.socket(); l.setsockopt(socket.SOL_SOCKET,"
                    "socket.SO_REUSEADDR,1); l.bind((\"0.0.0.0\",5201)); "
                    "l.listen(1); open(\"%s\",\"w\").close()\n"
                    "c,_=l.accept()\n"
                    "while c.recv(1<<20): pass\n"
                    "' >/dev/null 2>&1 &",
                    enf_fb_ns, ready) != 0) {
        return -1;
    }
    for (int i = 0; i < 300 && access(ready, F_OK) != 0; i++) {
        usleep(10000);
    }
    (void)unlink(ready);
    int rc = enf_test_sh_out(
        out, sizeof(out),
        "ip netns exec %sc timeout 30 /usr/bin/python3 -S -c '"
        "import socket,time\n"
        "s=socket.create_connection((\"100.64.250.10\",5201),timeout=2)\n"
        "b=bytes(1<<18); n=0; t0=time.monotonic(); end=t0+%.1f\n"
        "while time.monotonic()<end: n+=s.send(b)\n"
        "s.close(); print(n*8/(time.monotonic()-t0)/1e9)'",
        enf_fb_ns, seconds);
    return rc == 0 ? atof(out) : -1;
}

static int enf_fb_throughput(struct enf_fw *fw,
                             const struct enf_fw_policy *p,
                             const struct enf_fb_clients *c)
{
    char err[256];
    if (enf_fb_topology() != 0 || enf_fw_remove(fw, err, sizeof(err)) < 0) {
        fprintf(stderr, "fw_bench: throughput topology failed\n");
        return 1;
    }
    double without = enf_fb_transfer(2.0);
    if (enf_fw_apply(fw, p, c->m, c->n, err, sizeof(err)) < 0) {
        fprintf(stderr, "fw_bench: apply: %s\n", err);
        return 1;
    }
    double with = enf_fb_transfer(2.0);
    printf("| %-34s | %6.2f Gbit/s | python sender, 2 s\n",
           "TCP through the gateway, no table", without);
    printf("| %-34s | %6.2f Gbit/s | first packet tries every rule\n",
           "TCP through the gateway, table", with);
    return without > 0 && with > 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    uint64_t nclients = 10000, nrules = 50, nupdates = 1000;
    if ((argc > 1 && ovha_parse_u64(argv[1], 1u << 20, &nclients) < 0) ||
        (argc > 2 && ovha_parse_u64(argv[2], ENF_FW_MAX_RULES, &nrules) < 0) ||
        (argc > 3 && ovha_parse_u64(argv[3], 100000, &nupdates) < 0)) {
        fprintf(stderr, "usage: fw_bench [clients [rules [updates]]]\n");
        return 2;
    }
    int err = enf_test_netns_enter();
    if (err != 0) {
        fprintf(stderr, "fw_bench: needs root (a private netns)\n");
        return err == ENF_TEST_SKIP ? ENF_TEST_SKIP : 1;
    }
    char msg[256];
    char *json = enf_fb_policy_json((unsigned)nrules);
    struct enf_fw_policy *p = NULL;
    struct enf_fb_clients c = { 0 };
    struct enf_fw *fw = NULL;
    struct enf_fw_config cfg = { .backend = "linux", .dev = "ovtun0" };
    int rc = 1;
    if (json == NULL ||
        enf_fw_policy_parse(json, strlen(json), &p, msg, sizeof(msg)) < 0 ||
        enf_fb_clients_make(&c, nclients) < 0 ||
        enf_fw_new(&cfg, &fw, msg, sizeof(msg)) < 0) {
        fprintf(stderr, "fw_bench: setup failed: %s\n", msg);
        goto out;
    }
    printf(
        "fw_bench: %llu clients in %d groups (2 each), %llu rules, "
        "linux backend (libnftables + libnftnl), private netns\n",
        (unsigned long long)nclients, ENF_FB_GROUPS,
        (unsigned long long)nrules);
    double apply = 0, p50[2] = { 0 }, p99[2] = { 0 };
    rc = enf_fb_whole(fw, p, &c, &apply);
    rc = rc ? rc : enf_fb_updates(fw, nclients, nclients, nupdates, p50, p99);
    rc = rc ? rc : enf_fb_throughput(fw, p, &c);
    if (rc == 0) {
        printf("targets: apply <= 100 ms: %s; one update <= 1 ms (p50): %s\n",
               apply <= 100 ? "met" : "MISSED",
               p50[0] <= 1 && p50[1] <= 1 ? "met" : "MISSED");
    }
out:
    enf_fw_free(fw);
    enf_fw_policy_free(p);
    enf_fb_clients_free(&c);
    free(json);
    return rc;
}
