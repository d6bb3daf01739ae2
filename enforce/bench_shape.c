/* shape_bench: shaping convergence timings with the linux backend, in a
 * private network namespace on a veth (run as root; exits 77 otherwise).
 *
 *   shape_bench [N [R]]   N clients (default 10000) in 100.64.0.0/10, each
 *                         shaped both ways (a class and a filter on the
 *                         veth and on its IFB device): apply all, reapply
 *                         unchanged, list, then R rounds (default 300) of
 *                         one client's rate change and of one add + one
 *                         remove, timed per apply (median and p99);
 *                         finally remove all.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "enforce/shape.h"
#include "enforce/tests/netns.h"

static double enf_sbench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void enf_sbench_client(struct enf_shape_client *c, uint32_t i)
{
    /* 100.64.0.0/10 from 100.64.0.1 upwards. */
    uint32_t a = (100u << 24) | (64u << 16) | (i + 1);
    memset(c, 0, sizeof(*c));
    snprintf(c->ip, sizeof(c->ip), "%u.%u.%u.%u", a >> 24, (a >> 16) & 0xff,
             (a >> 8) & 0xff, a & 0xff);
    c->down_kbit = 1000 + (i % 1000) * 10;
    c->up_kbit = 500 + (i % 500) * 10;
}

/* One timed apply; returns its ms or a negative value on failure. */
static double enf_sbench_apply(struct enf_shape *s,
                               const struct enf_shape_client *c,
                               size_t n)
{
    char err[256];
    double t0 = enf_sbench_now();
    int rc = enf_shape_apply(s, c, n, err, sizeof(err));
    double dt = enf_sbench_now() - t0;
    if (rc != 0) {
        fprintf(stderr, "shape_bench: apply: %d: %s\n", rc, err);
        return -1;
    }
    return dt;
}

static int enf_sbench_cmp(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;
    return a < b ? -1 : a > b;
}

static void enf_sbench_row(const char *name, double *ms, size_t n)
{
    qsort(ms, n, sizeof(*ms), enf_sbench_cmp);
    size_t p99 = (n * 99) / 100;
    printf("| %-28s | %5zu | %9.2f | %9.2f |\n", name, n, ms[n / 2],
           ms[p99 < n ? p99 : n - 1]);
}

static int enf_sbench_rounds(struct enf_shape *s,
                             struct enf_shape_client *c,
                             size_t n,
                             size_t rounds)
{
    double *chg = calloc(rounds, sizeof(double));
    double *addrm = calloc(rounds, sizeof(double));
    int rc = chg == NULL || addrm == NULL ? 1 : 0;
    for (size_t r = 0; r < rounds && rc == 0; r++) {
        size_t i = (r * 7919) % n;
        c[i].down_kbit = c[i].down_kbit == 5000 ? 6000 : 5000;
        chg[r] = enf_sbench_apply(s, c, n);
        /* Swap client i out for a new address (one add, one remove). */
        struct enf_shape_client old = c[i];
        enf_sbench_client(&c[i], (uint32_t)(n + r));
        addrm[r] = enf_sbench_apply(s, c, n);
        c[i] = old;
        if (chg[r] < 0 || addrm[r] < 0) {
            rc = 1;
        }
        /* Put client i back outside the timing. */
        if (rc == 0 && enf_sbench_apply(s, c, n) < 0) {
            rc = 1;
        }
    }
    if (rc == 0) {
        printf("| %-28s | %5s | %9s | %9s |\n", "step", "runs", "median ms",
               "p99 ms");
        printf(
            "|------------------------------|-------|-----------|"
            "-----------|\n");
        enf_sbench_row("one client's rate change", chg, rounds);
        enf_sbench_row("one add + one remove", addrm, rounds);
    }
    free(chg);
    free(addrm);
    return rc;
}

int main(int argc, char **argv)
{
    uint64_t n = 10000, rounds = 300;
    if ((argc > 1 && ovha_parse_u64(argv[1], 60000, &n) < 0) ||
        (argc > 2 && ovha_parse_u64(argv[2], 100000, &rounds) < 0) || n == 0 ||
        rounds == 0) {
        fprintf(stderr, "usage: shape_bench [clients <= 60000 [rounds]]\n");
        return 2;
    }
    int err = enf_test_netns_enter();
    if (err != 0) {
        fprintf(stderr, "shape_bench: needs root (a private netns)\n");
        return err == ENF_TEST_SKIP ? ENF_TEST_SKIP : 1;
    }
    struct enf_shape_client *c = calloc(n, sizeof(*c));
    struct enf_shape_config cfg = { .backend = "linux", .dev = "ovt0" };
    struct enf_shape *s = NULL;
    char msg[256];
    if (c == NULL || enf_shape_new(&cfg, &s, msg, sizeof(msg)) < 0) {
        fprintf(stderr, "shape_bench: setup failed\n");
        free(c);
        return 1;
    }
    for (uint32_t i = 0; i < n; i++) {
        enf_sbench_client(&c[i], i);
    }
    printf(
        "shape_bench: %llu clients (a class and a filter each on the veth "
        "and on its IFB device), linux backend, private netns\n",
        (unsigned long long)n);
    double t_add = enf_sbench_apply(s, c, n);
    double t_same = enf_sbench_apply(s, c, n);
    struct enf_shape_entry *v = NULL;
    size_t got = 0;
    double t0 = enf_sbench_now();
    int rc = enf_shape_list(s, &v, &got);
    double t_list = enf_sbench_now() - t0;
    free(v);
    printf("apply %llu new clients:  %9.1f ms\n", (unsigned long long)n, t_add);
    printf("reapply unchanged:       %9.1f ms\n", t_same);
    printf("list (dump):             %9.1f ms  (%zu clients)\n", t_list, got);
    if (t_add < 0 || t_same < 0 || rc != 0 || got != n) {
        rc = 1;
    } else {
        rc = enf_sbench_rounds(s, c, n, rounds);
    }
    double t_rm = enf_sbench_apply(s, NULL, 0);
    printf("remove all:              %9.1f ms\n", t_rm);
    enf_shape_free(s);
    free(c);
    return rc == 0 && t_rm >= 0 ? 0 : 1;
}
