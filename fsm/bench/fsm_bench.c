/* fsm_bench: apply throughput, snapshot and restore.
 *
 * Commands are encoded before the clock starts, so the figures are what a
 * node pays per raft entry: decode + apply (one SQLite transaction each,
 * with the req_id window on, as in production).
 *
 * usage: fsm_bench [leases] [live_sessions]   (defaults 100000 20000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "fsm/fsm.h"
#include "fsm/tests/fsm_test_util.h"

#define BENCH_T0 1790000000000ULL

struct bench_enc {
    uint8_t **buf;
    size_t *len;
    size_t n;
};

static double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void bench_die(const char *what)
{
    fprintf(stderr, "fsm_bench: %s\n", what);
    exit(1);
}

static void bench_enc_init(struct bench_enc *e, size_t n)
{
    e->buf = calloc(n, sizeof(*e->buf));
    e->len = calloc(n, sizeof(*e->len));
    e->n = 0;
    if (e->buf == NULL || e->len == NULL) {
        bench_die("out of memory");
    }
}

static void bench_enc_add(struct bench_enc *e, const struct proto_cmd *c)
{
    if (fsmt_encode(c, &e->buf[e->n], &e->len[e->n]) != 0) {
        bench_die("encode");
    }
    e->n++;
}

static void bench_enc_free(struct bench_enc *e)
{
    for (size_t i = 0; i < e->n; i++) {
        ovha_free(e->buf[i]);
    }
    free(e->buf);
    free(e->len);
}

/* Applies every encoded command; returns seconds. Counts refusals. */
static double bench_apply(struct fsm *f,
                          const struct bench_enc *e,
                          size_t *ret_refused)
{
    struct proto_result r;
    size_t refused = 0;
    double t = bench_now();
    for (size_t i = 0; i < e->n; i++) {
        if (fsm_apply(f, e->buf[i], e->len[i], &r) != 0) {
            bench_die("apply failed");
        }
        refused += r.status != PROTO_STATUS_OK;
    }
    t = bench_now() - t;
    *ret_refused = refused;
    return t;
}

static uint64_t bench_req = 1;

static void bench_open_cmd(struct proto_cmd *c, size_t i, uint64_t ts)
{
    fsmt_env(c, PROTO_CMD_SESSION_OPEN, i % 2 ? "gw-1" : "gw-2", ts,
             bench_req++);
    snprintf(c->u.session_open.cn, sizeof(c->u.session_open.cn), "client-%06zu",
             i);
    strcpy(c->u.session_open.pool4, "p4");
    strcpy(c->u.session_open.real_addr, "198.18.200.1:51820");
    c->u.session_open.cid = i;
}

static void bench_close_cmd(struct proto_cmd *c,
                            size_t i,
                            uint64_t sid,
                            uint64_t ts)
{
    fsmt_env(c, PROTO_CMD_SESSION_CLOSE, i % 2 ? "gw-1" : "gw-2", ts,
             bench_req++);
    c->u.session_close.session_id = sid;
    strcpy(c->u.session_close.reason, "disconnect");
}

static struct fsm *bench_fsm(void)
{
    struct fsm *f = NULL;
    struct proto_result r;
    if (fsm_new(NULL, &f) != 0) {
        bench_die("fsm_new");
    }
    fsmt_heartbeat(f, "gw-1", BENCH_T0, &r);
    fsmt_heartbeat(f, "gw-2", BENCH_T0, &r);
    /* A /14: 262,141 addresses, enough for every benchmark below. */
    fsmt_pool(f, "p4", "100.64.0.0/14", 3600000, BENCH_T0, &r);
    if (r.status != PROTO_STATUS_OK) {
        bench_die("pool");
    }
    return f;
}

/* Open n sessions (fresh CNs, new leases), then close them all; then
 * the same CNs again (sticky: existing leases). Session ids are assigned
 * 1, 2, ... in apply order, so closes can be encoded in advance. */
static void bench_open_close(size_t n)
{
    struct fsm *f = bench_fsm();
    struct proto_cmd c;
    uint64_t first_sid = 1;
    printf("%-44s %12s %12s\n", "SessionOpen/Close (n per phase)", "cmds/s",
           "us/cmd");
    for (int round = 0; round < 2; round++) {
        struct bench_enc open, close;
        bench_enc_init(&open, n);
        bench_enc_init(&close, n);
        for (size_t i = 0; i < n; i++) {
            bench_open_cmd(&c, i, BENCH_T0 + 1000 + (uint64_t)round);
            bench_enc_add(&open, &c);
        }
        for (size_t i = 0; i < n; i++) {
            bench_close_cmd(&c, i, first_sid + i,
                            BENCH_T0 + 2000 + (uint64_t)round);
            bench_enc_add(&close, &c);
        }
        size_t ref_o = 0, ref_c = 0;
        double to = bench_apply(f, &open, &ref_o);
        double tc = bench_apply(f, &close, &ref_c);
        if (ref_o != 0 || ref_c != 0) {
            bench_die("unexpected refusals in open/close");
        }
        first_sid += n;
        const char *what = round == 0 ? "new lease" : "sticky lease";
        char label[64];
        snprintf(label, sizeof(label), "  SessionOpen (%s, n=%zu)", what, n);
        printf("%-44s %12.0f %12.2f\n", label, (double)n / to,
               to * 1e6 / (double)n);
        snprintf(label, sizeof(label), "  SessionClose (n=%zu)", n);
        printf("%-44s %12.0f %12.2f\n", label, (double)n / tc,
               tc * 1e6 / (double)n);
        snprintf(label, sizeof(label), "  Open+Close combined (%s)", what);
        printf("%-44s %12.0f %12.2f\n", label, 2.0 * (double)n / (to + tc),
               (to + tc) * 1e6 / (2.0 * (double)n));
        bench_enc_free(&open);
        bench_enc_free(&close);
    }
    fsm_free(f);
}

/* UsageCharge batches of `per` entries over `live` live sessions. */
static void bench_usage(size_t live, size_t batches, size_t per)
{
    struct fsm *f = bench_fsm();
    struct proto_cmd c;
    struct bench_enc open, charge;
    size_t refused = 0;
    bench_enc_init(&open, live);
    for (size_t i = 0; i < live; i++) {
        bench_open_cmd(&c, i, BENCH_T0 + 1000);
        bench_enc_add(&open, &c);
    }
    bench_apply(f, &open, &refused);
    bench_enc_free(&open);

    struct proto_usage_entry *ents = calloc(per, sizeof(*ents));
    bench_enc_init(&charge, batches);
    for (size_t b = 0; b < batches; b++) {
        /* gw-1 holds the odd sessions (ids 2, 4, ... are CN index odd). */
        fsmt_env(&c, PROTO_CMD_USAGE_CHARGE, "gw-1", BENCH_T0 + 3000 + b,
                 bench_req++);
        c.u.usage_charge.seq = b + 1;
        strcpy(c.u.usage_charge.period, "2026-11");
        for (size_t k = 0; k < per; k++) {
            size_t idx = (b * per + k) % (live / 2) * 2 + 1;
            ents[k].session_id = idx + 1;
            snprintf(ents[k].cn, sizeof(ents[k].cn), "client-%06zu", idx);
            ents[k].bytes_in = 1000 + k;
            ents[k].bytes_out = 2000 + k;
        }
        c.u.usage_charge.entries = ents;
        c.u.usage_charge.nentries = per;
        bench_enc_add(&charge, &c);
    }
    double t = bench_apply(f, &charge, &refused);
    struct proto_result r;
    /* Check the charges landed (and were not skipped as foreign). */
    struct fsm_usage_info u;
    fsm_query_usage(f, "client-000001", "2026-11", &u);
    if (refused != 0 || u.bytes_in == 0) {
        bench_die("usage charges did not land");
    }
    (void)r;
    printf("%-44s %12s %12s\n", "UsageCharge", "batches/s", "entries/s");
    char label[64];
    snprintf(label, sizeof(label), "  %zu entries/batch, %zu live sessions",
             per, live);
    printf("%-44s %12.0f %12.0f\n", label, (double)batches / t,
           (double)(batches * per) / t);
    bench_enc_free(&charge);
    free(ents);
    fsm_free(f);
}

/* Failover: gw-1 (half of `live` sessions) goes down, then each of its
 * CNs reconnects to gw-2 and takes its orphaned session over. */
static void bench_takeover(size_t live)
{
    struct fsm *f = bench_fsm();
    struct proto_cmd c;
    struct bench_enc open, down, again;
    size_t refused = 0;
    bench_enc_init(&open, live);
    for (size_t i = 0; i < live; i++) {
        bench_open_cmd(&c, i, BENCH_T0 + 1000);
        bench_enc_add(&open, &c);
    }
    bench_apply(f, &open, &refused);
    bench_enc_free(&open);

    bench_enc_init(&down, 1);
    fsmt_env(&c, PROTO_CMD_GATEWAY_SET_STATE, "gw-2", BENCH_T0 + 2000,
             bench_req++);
    strcpy(c.actor, "op");
    strcpy(c.u.gateway_set_state.gateway_id, "gw-1");
    c.u.gateway_set_state.state = PROTO_GW_DOWN;
    bench_enc_add(&down, &c);
    size_t n = live / 2;
    bench_enc_init(&again, n);
    for (size_t k = 0; k < n; k++) {
        size_t i = 2 * k + 1; /* the CNs that were on gw-1 */
        bench_open_cmd(&c, i, BENCH_T0 + 3000);
        strcpy(c.gateway, "gw-2");
        bench_enc_add(&again, &c);
    }
    double td = bench_apply(f, &down, &refused);
    double tt = bench_apply(f, &again, &refused);
    if (refused != 0) {
        bench_die("refusals during takeover");
    }
    printf("%-44s %12s %12s\n", "Failover", "seconds", "cmds/s");
    char label[80];
    snprintf(label, sizeof(label), "  GatewaySetState down (%zu sessions)", n);
    printf("%-44s %12.4f %12s\n", label, td, "");
    snprintf(label, sizeof(label), "  SessionOpen takeovers (n=%zu)", n);
    printf("%-44s %12.3f %12.0f\n", label, tt, (double)n / tt);
    bench_enc_free(&down);
    bench_enc_free(&again);
    fsm_free(f);
}

/* Builds `leases` leases of which `live` are held by live sessions, then
 * times snapshot, restore and the state hash. */
static void bench_snapshot(size_t leases, size_t live)
{
    struct fsm *f = bench_fsm();
    struct proto_cmd c;
    struct bench_enc e;
    size_t refused = 0;
    bench_enc_init(&e, leases + (leases - live));
    for (size_t i = 0; i < leases; i++) {
        bench_open_cmd(&c, i, BENCH_T0 + 1000);
        bench_enc_add(&e, &c);
    }
    for (size_t i = live; i < leases; i++) {
        bench_close_cmd(&c, i, (uint64_t)i + 1, BENCH_T0 + 2000);
        bench_enc_add(&e, &c);
    }
    double tb = bench_apply(f, &e, &refused);
    bench_enc_free(&e);
    if (refused != 0) {
        bench_die("refusals while building state");
    }

    uint8_t *snap = NULL;
    size_t len = 0;
    double t0 = bench_now();
    if (fsm_snapshot(f, &snap, &len) != 0) {
        bench_die("snapshot");
    }
    double ts = bench_now() - t0;

    /* FSM_BENCH_SNAPSHOT=path keeps the snapshot for inspection (e.g. the
     * size of each table with sqlite's dbstat). */
    const char *keep = getenv("FSM_BENCH_SNAPSHOT");
    if (keep != NULL) {
        FILE *fp = fopen(keep, "wb");
        if (fp == NULL || fwrite(snap, 1, len, fp) != len) {
            bench_die("cannot write FSM_BENCH_SNAPSHOT");
        }
        fclose(fp);
    }

    struct fsm *g = NULL;
    if (fsm_new(NULL, &g) != 0) {
        bench_die("fsm_new");
    }
    t0 = bench_now();
    if (fsm_restore(g, snap, len) != 0) {
        bench_die("restore");
    }
    double tr = bench_now() - t0;

    uint8_t h1[FSM_HASH_LEN], h2[FSM_HASH_LEN];
    t0 = bench_now();
    fsm_state_hash(f, h1);
    double th = bench_now() - t0;
    fsm_state_hash(g, h2);
    if (memcmp(h1, h2, FSM_HASH_LEN) != 0) {
        bench_die("restored state hash differs");
    }
    /* The restored instance keeps working at full speed. */
    struct proto_result r;
    fsmt_open(g, "gw-1", "after-restore", "p4", NULL, 1,
              PROTO_EXCESS_EVICT_OLDEST, BENCH_T0 + 5000, &r);
    if (r.status != PROTO_STATUS_OK) {
        bench_die("apply after restore");
    }

    printf("%-44s %12s %12s\n", "Snapshot / restore", "seconds", "MiB");
    char label[80];
    snprintf(label, sizeof(label), "  build state (%zu cmds applied)",
             leases + leases - live);
    printf("%-44s %12.3f %12s\n", label, tb, "");
    snprintf(label, sizeof(label), "  fsm_snapshot (%zu leases, %zu live)",
             leases, live);
    printf("%-44s %12.3f %12.1f\n", label, ts, (double)len / 1048576.0);
    printf("%-44s %12.3f %12s\n", "  fsm_restore", tr, "");
    printf("%-44s %12.3f %12s\n", "  fsm_state_hash", th, "");
    fsm_snapshot_free(snap);
    fsm_free(g);
    fsm_free(f);
}

int main(int argc, char **argv)
{
    size_t leases = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
    size_t live = argc > 2 ? strtoul(argv[2], NULL, 10) : 20000;
    if (live > leases || leases > 250000) {
        bench_die("need live <= leases <= 250000");
    }
    printf("fsm_bench: sqlite %s\n\n", "3.40 in-memory");
    bench_open_close(live);
    printf("\n");
    bench_usage(live, 2000, 100);
    printf("\n");
    bench_takeover(live);
    printf("\n");
    bench_snapshot(leases, live);
    return 0;
}
