/* enforce_bench: route convergence timings with the linux backend, in a
 * private network namespace (run as root; exits 77 otherwise).
 *
 *   enforce_bench [N]   N /32 routes (default 10000) in 100.64.0.0/10 via
 *                       198.18.0.2: add all, reapply unchanged, move 1% to
 *                       another next hop, remove all.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "enforce/route.h"
#include "enforce/tests/netns.h"

static double enf_bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void enf_bench_fill(struct enf_route_entry *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        /* 100.64.0.0/10 holds 4M addresses; i < 2^22. */
        uint32_t a = (100u << 24) | (64u << 16) | (uint32_t)i;
        memset(&d[i], 0, sizeof(d[i]));
        snprintf(d[i].dst, sizeof(d[i].dst), "%u.%u.%u.%u", a >> 24,
                 (a >> 16) & 0xff, (a >> 8) & 0xff, a & 0xff);
        d[i].prefix = 32;
        ovha_strlcpy(d[i].via, "198.18.0.2", sizeof(d[i].via));
    }
}

static int enf_bench_step(struct enf_route *r,
                          const char *name,
                          const struct enf_route_entry *d,
                          size_t n)
{
    struct enf_route_stats before, after;
    char err[256];
    enf_route_get_stats(r, &before);
    double t0 = enf_bench_now();
    int rc = enf_route_apply(r, d, n, err, sizeof(err));
    double dt = enf_bench_now() - t0;
    enf_route_get_stats(r, &after);
    printf(
        "%-18s %8.1f ms  added=%llu replaced=%llu removed=%llu "
        "errors=%llu installed=%llu\n",
        name, dt * 1e3, (unsigned long long)(after.added - before.added),
        (unsigned long long)(after.replaced - before.replaced),
        (unsigned long long)(after.removed - before.removed),
        (unsigned long long)(after.errors - before.errors),
        (unsigned long long)after.installed);
    if (rc != 0) {
        fprintf(stderr, "%s: %d: %s\n", name, rc, err);
    }
    return rc;
}

/* Times a dump of our routes and checks the kernel holds all n. */
static int enf_bench_list(struct enf_route *r, size_t n)
{
    struct enf_route_entry *v = NULL;
    size_t got = 0;
    double t0 = enf_bench_now();
    int rc = enf_route_list(r, &v, &got);
    double dt = enf_bench_now() - t0;
    free(v);
    printf("%-18s %8.1f ms  routes of ours in the kernel=%zu\n", "list (dump)",
           dt * 1e3, got);
    return rc == 0 && got == n ? 0 : 1;
}

int main(int argc, char **argv)
{
    uint64_t n = 10000;
    if (argc > 1 && ovha_parse_u64(argv[1], 1u << 22, &n) < 0) {
        fprintf(stderr, "usage: enforce_bench [routes <= 4194304]\n");
        return 2;
    }
    int err = enf_test_netns_enter();
    if (err != 0) {
        fprintf(stderr, "enforce_bench: needs root (a private netns)\n");
        return err == ENF_TEST_SKIP ? ENF_TEST_SKIP : 1;
    }
    struct enf_route_entry *d = calloc(n, sizeof(*d));
    struct enf_route_config cfg = { .backend = "linux" };
    struct enf_route *r = NULL;
    char msg[256];
    if (d == NULL || enf_route_new(&cfg, &r, msg, sizeof(msg)) < 0) {
        fprintf(stderr, "enforce_bench: setup failed\n");
        free(d);
        return 1;
    }
    enf_bench_fill(d, n);
    printf("enforce_bench: %llu /32 routes, linux backend, private netns\n",
           (unsigned long long)n);
    int rc = enf_bench_step(r, "add all", d, n);
    rc |= enf_bench_list(r, n);
    rc |= enf_bench_step(r, "reapply unchanged", d, n);
    for (size_t i = 0; i < n; i += 100) {
        ovha_strlcpy(d[i].via, "198.18.0.3", sizeof(d[i].via));
    }
    rc |= enf_bench_step(r, "change 1%", d, n);
    rc |= enf_bench_step(r, "remove all", NULL, 0);
    enf_route_free(r);
    free(d);
    return rc == 0 ? 0 : 1;
}
