/* enforce tests: a private network namespace for the linux backend. */
#ifndef OVHA_ENFORCE_TESTS_NETNS_H
#define OVHA_ENFORCE_TESTS_NETNS_H

#include <stddef.h>

/* Exit code that ctest counts as a skip. */
#define ENF_TEST_SKIP 77

/* Moves the process into a fresh network namespace (it vanishes with the
 * process, links included, so nothing needs removing) with lo up and a
 * veth pair ovt0 (198.18.0.1/24, fd00:18::1/64) <-> ovt1. Returns 0,
 * ENF_TEST_SKIP when not root or unshare is refused, or -1. */
int enf_test_netns_enter(void);

/* Runs a shell command in the namespace; returns its exit status. */
int enf_test_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Runs a shell command and keeps its stdout (truncated to len-1). */
int enf_test_sh_out(char *out, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
