/* fdb_bench: bridge FDB convergence timings with the linux backend, in a
 * private network namespace (run as root; exits 77 otherwise).
 *
 *   fdb_bench [N]   N MACs (default 10000), alternately on the tap and the
 *                   uplink of a fresh bridge: add all, reapply unchanged,
 *                   move one MAC to the other port, remove all.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "enforce/fdb.h"
#include "enforce/tests/netns.h"

#define BENCH_BR     "ovfbbr0"
#define BENCH_TAP    "ovfbtap0"
#define BENCH_UPLINK "ovfbup0"

static double enf_fdb_bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void enf_fdb_bench_fill(struct enf_fdb_entry *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        /* 02:00:5e:xx:xx:xx, locally administered unicast; i < 2^24. */
        memset(&d[i], 0, sizeof(d[i]));
        snprintf(d[i].mac, sizeof(d[i].mac), "02:00:5e:%02x:%02x:%02x",
                 (unsigned)(i >> 16) & 0xff, (unsigned)(i >> 8) & 0xff,
                 (unsigned)i & 0xff);
        ovha_strlcpy(d[i].port, i % 2 ? BENCH_UPLINK : BENCH_TAP,
                     sizeof(d[i].port));
    }
}

static int enf_fdb_bench_step(struct enf_fdb *f,
                              const char *name,
                              const struct enf_fdb_entry *d,
                              size_t n)
{
    struct enf_fdb_stats before, after;
    char err[256];
    enf_fdb_get_stats(f, &before);
    double t0 = enf_fdb_bench_now();
    int rc = enf_fdb_apply(f, d, n, err, sizeof(err));
    double dt = enf_fdb_bench_now() - t0;
    enf_fdb_get_stats(f, &after);
    printf(
        "%-18s %8.1f ms  added=%llu replaced=%llu removed=%llu "
        "attached=%llu errors=%llu installed=%llu\n",
        name, dt * 1e3, (unsigned long long)(after.added - before.added),
        (unsigned long long)(after.replaced - before.replaced),
        (unsigned long long)(after.removed - before.removed),
        (unsigned long long)(after.attached - before.attached),
        (unsigned long long)(after.errors - before.errors),
        (unsigned long long)after.installed);
    if (rc != 0) {
        fprintf(stderr, "%s: %d: %s\n", name, rc, err);
    }
    return rc;
}

/* Times a dump of our entries and checks the kernel holds all n. */
static int enf_fdb_bench_list(struct enf_fdb *f, size_t n)
{
    struct enf_fdb_entry *v = NULL;
    size_t got = 0;
    double t0 = enf_fdb_bench_now();
    int rc = enf_fdb_list(f, &v, &got);
    double dt = enf_fdb_bench_now() - t0;
    free(v);
    printf("%-18s %8.1f ms  entries of ours in the kernel=%zu\n", "list (dump)",
           dt * 1e3, got);
    return rc == 0 && got == n ? 0 : 1;
}

int main(int argc, char **argv)
{
    uint64_t n = 10000;
    if (argc > 1 && ovha_parse_u64(argv[1], 1u << 24, &n) < 0) {
        fprintf(stderr, "usage: fdb_bench [entries <= 16777216]\n");
        return 2;
    }
    int err = enf_test_netns_enter();
    if (err != 0) {
        fprintf(stderr, "fdb_bench: needs root (a private netns)\n");
        return err == ENF_TEST_SKIP ? ENF_TEST_SKIP : 1;
    }
    if (enf_test_sh("ip link add " BENCH_BR " type bridge && "
                    "ip link add " BENCH_UPLINK " type veth peer name "
                    "ovfbup1 && ip link set " BENCH_UPLINK " master " BENCH_BR
                    " && ip tuntap add dev " BENCH_TAP
                    " mode tap && ip link set " BENCH_BR " up && "
                    "ip link set " BENCH_UPLINK " up") != 0) {
        fprintf(stderr, "fdb_bench: topology setup failed\n");
        return 1;
    }
    struct enf_fdb_entry *d = calloc(n, sizeof(*d));
    struct enf_fdb_config cfg = { .backend = "linux",
                                  .bridge = BENCH_BR,
                                  .tap = BENCH_TAP,
                                  .uplink = BENCH_UPLINK };
    struct enf_fdb *f = NULL;
    char msg[256];
    if (d == NULL || enf_fdb_new(&cfg, &f, msg, sizeof(msg)) < 0) {
        fprintf(stderr, "fdb_bench: setup failed\n");
        free(d);
        return 1;
    }
    enf_fdb_bench_fill(d, n);
    printf("fdb_bench: %llu MACs, linux backend, private netns\n",
           (unsigned long long)n);
    int rc = enf_fdb_bench_step(f, "add all", d, n);
    rc |= enf_fdb_bench_list(f, n);
    rc |= enf_fdb_bench_step(f, "reapply unchanged", d, n);
    ovha_strlcpy(
        d[n / 2].port,
        strcmp(d[n / 2].port, BENCH_TAP) == 0 ? BENCH_UPLINK : BENCH_TAP,
        sizeof(d[n / 2].port));
    rc |= enf_fdb_bench_step(f, "move one", d, n);
    rc |= enf_fdb_bench_step(f, "remove all", NULL, 0);
    enf_fdb_free(f);
    free(d);
    return rc == 0 ? 0 : 1;
}
