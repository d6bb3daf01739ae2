/* Supervisor: generated config and directories, crash loop, stop with
 * SIGTERM and escalation to SIGKILL. openvpn is replaced by a script. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/base.h"
#include "node/config.h"
#include "node/supervisor.h"
#include "node_tests.h"

struct sup_env {
    uv_loop_t loop;
    char dir[64];
    struct node_cfg *cfg;
    struct node_sup *sup;
    int states[32];
    int nstates;
    bool closed;
};

static void sup_state_cb(struct node_sup *s, enum node_sup_state st, void *d)
{
    (void)s;
    struct sup_env *e = d;
    if (e->nstates < 32) {
        e->states[e->nstates++] = (int)st;
    }
}

static void sup_closed_cb(void *d)
{
    ((struct sup_env *)d)->closed = true;
}

static struct sup_env *sup_env_new(const char *extra)
{
    struct sup_env *e = calloc(1, sizeof(*e));
    char yaml[2048];
    char err[512];
    strcpy(e->dir, "/tmp/ovha-sup-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    snprintf(yaml, sizeof(yaml),
             "node:\n  id: gw1\n  state_dir: %s/state\n"
             "openvpn:\n  binary: %s/fake-openvpn.sh\n"
             "  ca: /x/ca\n  cert: /x/c\n  key: /x/k\n"
             "  network: 100.64.0.0/24\n"
             "  restart_backoff_min_ms: 10\n  restart_backoff_max_ms: 100\n"
             "  crash_loop_limit: 3\n  crash_loop_window_ms: 60000\n"
             "  stop_timeout_ms: 300\n%s",
             e->dir, OVHA_TEST_DIR, extra);
    if (node_cfg_load_string("sup.yaml", yaml, &e->cfg, err, sizeof(err)) !=
        0) {
        fprintf(stderr, "%s\n", err);
        abort();
    }
    uv_loop_init(&e->loop);
    assert_int_equal(node_sup_new(&e->loop, e->cfg, OVHA_BIN_DIR "/ovhad",
                                  sup_state_cb, e, &e->sup),
                     0);
    return e;
}

static void sup_env_free(struct sup_env *e)
{
    if (!e->closed) {
        node_sup_close(e->sup, sup_closed_cb, e);
        uv_run(&e->loop, UV_RUN_DEFAULT);
    }
    assert_true(e->closed);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    node_cfg_free(e->cfg);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", e->dir);
    assert_int_equal(system(cmd), 0);
    free(e);
}

static void test_sup_prepares_dirs_and_config(void **state)
{
    (void)state;
    setenv("FAKE_OVPN_MODE", "sleep", 1);
    struct sup_env *e = sup_env_new("");
    char path[256];
    struct stat st;
    /* A stale socket from an earlier run must go. */
    snprintf(path, sizeof(path), "%s/state", e->dir);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/state/mgmt", e->dir);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/state/mgmt/mgmt.sock", e->dir);
    node_test_write_file(path, "stale");
    assert_int_equal(node_sup_start(e->sup), 0);
    assert_int_equal(stat(path, &st), -1);
    snprintf(path, sizeof(path), "%s/state", e->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    snprintf(path, sizeof(path), "%s/state/mgmt", e->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    snprintf(path, sizeof(path), "%s/state/openvpn.conf", e->dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char conf[4096] = { 0 };
    size_t n = fread(conf, 1, sizeof(conf) - 1, f);
    fclose(f);
    assert_true(n > 0);
    assert_non_null(strstr(conf, "management-client-auth\n"));
    assert_non_null(strstr(conf, "management-hold\n"));
    assert_non_null(strstr(conf, "ifconfig 100.64.0.1 255.255.255.0\n"));
    assert_null(strstr(conf, "ifconfig-pool"));
    assert_int_equal(node_sup_state(e->sup), NODE_SUP_RUNNING);
    assert_true(node_sup_child_pid(e->sup) > 0);
    sup_env_free(e);
}

static void test_sup_crash_loop_gives_up(void **state)
{
    (void)state;
    setenv("FAKE_OVPN_MODE", "crash", 1);
    struct sup_env *e = sup_env_new("");
    assert_int_equal(node_sup_start(e->sup), 0);
    for (int i = 0; i < 10000 && node_sup_state(e->sup) != NODE_SUP_FAILED;
         i++) {
        uv_run(&e->loop, UV_RUN_ONCE);
    }
    assert_int_equal(node_sup_state(e->sup), NODE_SUP_FAILED);
    /* limit 3: the first start plus three restarts crash, the fourth
     * crash within the window exceeds the limit. */
    assert_int_equal(node_sup_restarts(e->sup), 3);
    assert_int_equal(e->states[e->nstates - 1], NODE_SUP_FAILED);
    sup_env_free(e);
}

/* True once pid ignores SIGTERM (the fake has reached its `trap`). */
static bool sup_ignores_term(int pid)
{
    char path[64];
    char line[256];
    bool ignores = false;
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned long long mask;
        if (sscanf(line, "SigIgn: %llx", &mask) == 1) {
            ignores = (mask & (1ull << (SIGTERM - 1))) != 0;
        }
    }
    fclose(f);
    return ignores;
}

static void test_sup_stop_escalates_to_sigkill(void **state)
{
    (void)state;
    setenv("FAKE_OVPN_MODE", "ignore-term", 1);
    struct sup_env *e = sup_env_new("");
    assert_int_equal(node_sup_start(e->sup), 0);
    int pid = node_sup_child_pid(e->sup);
    assert_true(pid > 0);
    for (int i = 0; i < 2000 && !sup_ignores_term(pid); i++) {
        usleep(1000);
    }
    assert_true(sup_ignores_term(pid));
    uint64_t t0 = ovha_now_mono_ms();
    node_sup_close(e->sup, sup_closed_cb, e);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_true(e->closed);
    assert_true(ovha_now_mono_ms() - t0 >= 150); /* waited for SIGTERM */
    assert_int_equal(kill(pid, 0), -1);          /* and the child is gone */
    assert_int_equal(e->states[e->nstates - 1], NODE_SUP_STOPPED);
    sup_env_free(e);
}

int node_test_supervisor(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sup_prepares_dirs_and_config),
        cmocka_unit_test(test_sup_crash_loop_gives_up),
        cmocka_unit_test(test_sup_stop_escalates_to_sigkill),
    };
    return cmocka_run_group_tests_name("supervisor", tests, NULL, NULL);
}
