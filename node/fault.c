/* node/fault: fault-injection hooks for the Jepsen-style cluster tests
 * (cluster-tests/jepsen/, docs/jepsen.md). Both are read from ovhad's
 * environment at start and do nothing when their variable is unset:
 *
 * - OVHA_PLANT_BUG=no-fence: a deliberately planted bug so the checkers
 *   can be shown to fail. A node that loses its raft leader never fences:
 *   it keeps its clients and does not refuse new ones for being fenced
 *   (node/failover.c asks node_fault_no_fence()).
 * - OVHA_CLOCK_SKEW_FILE=PATH: every 100 ms the file is read as a signed
 *   integer of milliseconds and applied with ovha_clock_set_skew_ms(), so
 *   the timestamps this node puts into commands drift as the nemesis
 *   says. A missing or unparsable file means skew 0.
 *
 * There is no HTTP route for either: they exist only for tests.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "node/node.h"

#define FAULT_MOD      "fault"
#define FAULT_SKEW_MS  100
#define FAULT_SKEW_MAX (24LL * 3600 * 1000)
#define FAULT_PATH_MAX 4096

static bool node_fault_no_fence_on;
static uv_timer_t node_fault_skew_timer;
static char node_fault_skew_path[FAULT_PATH_MAX];
static int64_t node_fault_skew_now;

bool node_fault_no_fence(void)
{
    return node_fault_no_fence_on;
}

/* Reads the skew file: 0 with *ret_ms set, or a negative errno. */
static int node_fault_skew_read(const char *path, int64_t *ret_ms)
{
    char buf[64];
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        return -errno;
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *end = NULL;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno != 0 || end == buf || v > FAULT_SKEW_MAX || v < -FAULT_SKEW_MAX) {
        return -EINVAL;
    }
    *ret_ms = (int64_t)v;
    return 0;
}

static void node_fault_skew_tick_cb(uv_timer_t *t)
{
    (void)t;
    int64_t ms = 0;
    if (node_fault_skew_read(node_fault_skew_path, &ms) != 0) {
        ms = 0;
    }
    if (ms != node_fault_skew_now) {
        LOG_WARN(FAULT_MOD, "clock skew %" PRId64 " ms (was %" PRId64 ")", ms,
                 node_fault_skew_now);
        node_fault_skew_now = ms;
        ovha_clock_set_skew_ms(ms);
    }
}

int node_fault_start(uv_loop_t *loop)
{
    const char *bug = getenv("OVHA_PLANT_BUG");
    if (bug != NULL && bug[0] != '\0') {
        if (strcmp(bug, "no-fence") != 0) {
            LOG_ERR(FAULT_MOD, "OVHA_PLANT_BUG=%s: unknown (known: no-fence)",
                    bug);
            return -EINVAL;
        }
        node_fault_no_fence_on = true;
        LOG_WARN(FAULT_MOD,
                 "PLANTED BUG no-fence: this node will not fence "
                 "when it loses its raft leader");
    }
    const char *path = getenv("OVHA_CLOCK_SKEW_FILE");
    if (path == NULL || path[0] == '\0') {
        return 0;
    }
    if (strlen(path) >= sizeof(node_fault_skew_path)) {
        LOG_ERR(FAULT_MOD, "OVHA_CLOCK_SKEW_FILE: path too long");
        return -ENAMETOOLONG;
    }
    ovha_strlcpy(node_fault_skew_path, path, sizeof(node_fault_skew_path));
    LOG_WARN(FAULT_MOD, "clock skew from %s every %d ms", node_fault_skew_path,
             FAULT_SKEW_MS);
    uv_timer_init(loop, &node_fault_skew_timer);
    /* Never the handle that keeps the loop running at shutdown. */
    uv_unref((uv_handle_t *)&node_fault_skew_timer);
    node_fault_skew_tick_cb(&node_fault_skew_timer);
    uv_timer_start(&node_fault_skew_timer, node_fault_skew_tick_cb,
                   FAULT_SKEW_MS, FAULT_SKEW_MS);
    return 0;
}
