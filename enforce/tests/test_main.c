/* Runs the enforce tests and prints "N passed, N failed".
 *
 *   enforce_tests          unit tests (fake backend, pure logic)
 *   enforce_tests --netns  linux backend tests in a private network
 *                          namespace (exit 77 when that is not allowed)
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "enforce/tests/netns.h"
#include "enforce/tests/tests.h"

struct enf_route_entry enf_t_via(const char *dst,
                                 unsigned prefix,
                                 const char *via,
                                 uint32_t metric)
{
    struct enf_route_entry e;
    memset(&e, 0, sizeof(e));
    ovha_strlcpy(e.dst, dst, sizeof(e.dst));
    e.prefix = prefix;
    ovha_strlcpy(e.via, via, sizeof(e.via));
    e.metric = metric;
    return e;
}

struct enf_route_entry enf_t_dev(const char *dst,
                                 unsigned prefix,
                                 const char *dev,
                                 uint32_t metric)
{
    struct enf_route_entry e;
    memset(&e, 0, sizeof(e));
    ovha_strlcpy(e.dst, dst, sizeof(e.dst));
    e.prefix = prefix;
    ovha_strlcpy(e.dev, dev, sizeof(e.dev));
    e.metric = metric;
    return e;
}

/* One entry per test group; each module adds its unit and netns groups. */
struct enf_t_group {
    const char *name;
    const struct CMUnitTest *tests;
    const size_t *n;
    bool netns;
};

static const struct enf_t_group enf_t_groups[] = {
    { "enforce_route", enf_route_tests, &enf_route_ntests, false },
    { "enforce_route_linux", enf_route_linux_tests, &enf_route_linux_ntests,
      true },
    { "enforce_fdb", enf_fdb_tests, &enf_fdb_ntests, false },
    { "enforce_fdb_linux", enf_fdb_linux_tests, &enf_fdb_linux_ntests, true },
    { "enforce_fw", enf_fw_tests, &enf_fw_ntests, false },
    { "enforce_fw_linux", enf_fw_linux_tests, &enf_fw_linux_ntests, true },
    { "enforce_shape", enf_shape_tests, &enf_shape_ntests, false },
    { "enforce_shape_linux", enf_shape_linux_tests, &enf_shape_linux_ntests,
      true },
};

int main(int argc, char **argv)
{
    bool netns = argc > 1 && strcmp(argv[1], "--netns") == 0;
    if (netns) {
        int err = enf_test_netns_enter();
        if (err != 0) {
            fprintf(stderr, "enforce_tests: no private netns: %s\n",
                    err == ENF_TEST_SKIP ? "skipped (needs root)" : "failed");
            return err == ENF_TEST_SKIP ? ENF_TEST_SKIP : 1;
        }
    }
    size_t total = 0, failed = 0;
    for (size_t i = 0; i < sizeof(enf_t_groups) / sizeof(enf_t_groups[0]);
         i++) {
        const struct enf_t_group *g = &enf_t_groups[i];
        if (g->netns != netns) {
            continue;
        }
        total += *g->n;
        failed += (size_t)_cmocka_run_group_tests(g->name, g->tests, *g->n,
                                                  NULL, NULL);
    }
    printf("enforce_tests: %zu passed, %zu failed\n", total - failed, failed);
    return failed == 0 ? 0 : 1;
}
