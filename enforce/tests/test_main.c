/* Runs the enforce tests and prints "N passed, N failed".
 *
 *   enforce_tests          unit tests (fake backend, pure logic)
 *   enforce_tests --netns  linux backend tests in a private network
 *                          namespace (exit 77 when that is not allowed)
 */
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

int main(int argc, char **argv)
{
    const char *name = "enforce_route";
    const struct CMUnitTest *t = enf_route_tests;
    size_t n = enf_route_ntests;
    if (argc > 1 && strcmp(argv[1], "--netns") == 0) {
        int err = enf_test_netns_enter();
        if (err != 0) {
            fprintf(stderr, "enforce_tests: no private netns: %s\n",
                    err == ENF_TEST_SKIP ? "skipped (needs root)" : "failed");
            return err == ENF_TEST_SKIP ? ENF_TEST_SKIP : 1;
        }
        name = "enforce_route_linux";
        t = enf_route_linux_tests;
        n = enf_route_linux_ntests;
    }
    size_t failed = (size_t)_cmocka_run_group_tests(name, t, n, NULL, NULL);
    printf("enforce_tests: %zu passed, %zu failed\n", n - failed, failed);
    return failed == 0 ? 0 : 1;
}
