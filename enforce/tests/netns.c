/* enforce tests: a private network namespace for the linux backend. */
#include "enforce/tests/netns.h"

#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int enf_test_vcmd(char *cmd, size_t len, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static int enf_test_vcmd(char *cmd, size_t len, const char *fmt, va_list ap)
{
    int n = vsnprintf(cmd, len, fmt, ap);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

static int enf_test_status(int st)
{
    if (st == -1 || !WIFEXITED(st)) {
        return -1;
    }
    return WEXITSTATUS(st);
}

int enf_test_sh(const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    int err = enf_test_vcmd(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if (err < 0) {
        return -1;
    }
    return enf_test_status(system(cmd));
}

int enf_test_sh_out(char *out, size_t len, const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    int err = enf_test_vcmd(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    out[0] = '\0';
    if (err < 0) {
        return -1;
    }
    FILE *p = popen(cmd, "r");
    if (p == NULL) {
        return -1;
    }
    size_t n = fread(out, 1, len - 1, p);
    out[n] = '\0';
    return enf_test_status(pclose(p));
}

int enf_test_netns_enter(void)
{
    if (geteuid() != 0 || unshare(CLONE_NEWNET) < 0) {
        return ENF_TEST_SKIP;
    }
    static const char *const setup[] = {
        "ip link set lo up",
        "ip link add ovt0 type veth peer name ovt1",
        "ip link set ovt0 up",
        "ip link set ovt1 up",
        "ip addr add 198.18.0.1/24 dev ovt0",
        "ip -6 addr add fd00:18::1/64 dev ovt0 nodad",
    };
    for (size_t i = 0; i < sizeof(setup) / sizeof(setup[0]); i++) {
        if (enf_test_sh("%s", setup[i]) != 0) {
            fprintf(stderr, "netns setup failed: %s\n", setup[i]);
            return -1;
        }
    }
    return 0;
}
