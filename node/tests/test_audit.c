/* node/audit: the archive follows the chain, notes a gap when records
 * were pruned before it got them, and resumes after its last line. A real
 * fsm with a tiny audit_keep and a real file in a temp dir; passes run on
 * the thread pool of a real loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "base/base.h"
#include "fsm/fsm.h"
#include "node/audit.h"
#include "node_tests.h"
#include "proto/proto.h"

static void node_ta_note(struct fsm *f, int i)
{
    struct proto_cmd c;
    struct proto_result r;
    uint8_t *buf = NULL;
    size_t len = 0;
    memset(&c, 0, sizeof(c));
    c.version = PROTO_VERSION;
    c.ts_ms = 1000 + (uint64_t)i;
    strcpy(c.gateway, "gw-1");
    c.kind = PROTO_CMD_AUDIT_APPEND;
    strcpy(c.u.audit_append.action, "note");
    assert_int_equal(proto_cmd_encode(&c, &buf, &len), 0);
    assert_int_equal(fsm_apply(f, buf, len, &r), 0);
    assert_int_equal(r.status, PROTO_STATUS_OK);
    ovha_free(buf);
}

/* Kicks a pass and runs the loop until next_seq reaches want (bounded). */
static void node_ta_until(uv_loop_t *loop, struct node_audit *a, uint64_t want)
{
    struct node_audit_stats st;
    for (int i = 0; i < 2000; i++) {
        node_audit_get_stats(a, &st);
        if (st.next_seq >= want) {
            return;
        }
        node_audit_kick(a);
        uv_run(loop, UV_RUN_ONCE);
    }
    fail_msg("archive stuck at %llu, want %llu",
             (unsigned long long)st.next_seq, (unsigned long long)want);
}

static void node_ta_closed(void *data)
{
    *(int *)data = 1;
}

static void node_ta_close(uv_loop_t *loop, struct node_audit *a)
{
    int done = 0;
    node_audit_close(a, node_ta_closed, &done);
    while (!done) {
        uv_run(loop, UV_RUN_ONCE);
    }
}

static size_t node_ta_lines(const char *path, char *first_gap, size_t len)
{
    FILE *fp = fopen(path, "r");
    char line[2048];
    size_t n = 0;
    first_gap[0] = '\0';
    while (fp != NULL && fgets(line, sizeof(line), fp) != NULL) {
        if (strstr(line, "gap_from") != NULL && first_gap[0] == '\0') {
            ovha_strlcpy(first_gap, line, len);
        }
        n++;
    }
    if (fp != NULL) {
        fclose(fp);
    }
    return n;
}

static void test_audit_archive(void **state)
{
    (void)state;
    char dir[] = "/tmp/ovha-audit-test.XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct node_cfg cfg;
    memset(&cfg, 0, sizeof(cfg));
    snprintf(cfg.cluster.data_dir, sizeof(cfg.cluster.data_dir), "%s/raft",
             dir);
    struct fsm_config fc = { .audit_keep = 8 };
    struct fsm *f = NULL;
    assert_int_equal(fsm_new(&fc, &f), 0);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);

    struct node_audit *a = NULL;
    assert_int_equal(node_audit_new(&loop, &cfg, f, &a), 0);
    for (int i = 0; i < 5; i++) {
        node_ta_note(f, i);
    }
    node_ta_until(&loop, a, 6);
    /* 30 more while the archive is not looking: the state prunes. */
    for (int i = 5; i < 35; i++) {
        node_ta_note(f, i);
    }
    uint64_t base = 0;
    uint8_t h[FSM_HASH_LEN];
    assert_int_equal(fsm_query_audit_base(f, &base, h), 0);
    assert_true(base > 6);
    node_ta_until(&loop, a, 36);
    struct node_audit_stats st;
    node_audit_get_stats(a, &st);
    assert_int_equal(st.gaps, 1);
    assert_int_equal(st.archived, 5 + (35 - base));
    node_ta_close(&loop, a);

    char path[512], gap[256], want[96];
    snprintf(path, sizeof(path), "%s/raft-audit.jsonl", dir);
    assert_int_equal(node_ta_lines(path, gap, sizeof(gap)),
                     5 + 1 + (35 - base));
    snprintf(want, sizeof(want), "{\"gap_from\":6,\"gap_to\":%llu}\n",
             (unsigned long long)base);
    assert_string_equal(gap, want);

    /* A restart resumes after the last line. */
    assert_int_equal(node_audit_new(&loop, &cfg, f, &a), 0);
    node_audit_get_stats(a, &st);
    assert_int_equal(st.next_seq, 36);
    node_ta_close(&loop, a);

    uv_loop_close(&loop);
    fsm_free(f);
    unlink(path);
    rmdir(dir);
}

int node_test_audit(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_audit_archive),
    };
    return cmocka_run_group_tests_name("node_audit", tests, NULL, NULL);
}
