/* node/baseline: the rate baseline and its anomaly events, driven with
 * synthetic counters and injected time. Noise comes from a fixed LCG so
 * every run sees the same sequence. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "node/baseline.h"
#include "node_tests.h"

#define TB_DT 5000 /* ms: openvpn's default bytecount interval */

/* A client whose counters the tests advance by a rate. */
struct tb_client {
    struct node_baseline b;
    uint64_t now_ms;
    uint64_t in, out;
    uint32_t seed;
    unsigned events;
    struct node_baseline_event last;
};

/* Deterministic uniform noise in [-1, 1). */
static double tb_noise(struct tb_client *c)
{
    c->seed = c->seed * 1664525u + 1013904223u;
    return (double)(c->seed >> 8) / (double)(1u << 23) - 1.0;
}

static void tb_client_init(struct tb_client *c, uint32_t seed)
{
    memset(c, 0, sizeof(*c));
    c->now_ms = 1000;
    c->in = 1000;
    c->out = 5000;
    c->seed = seed;
    /* The first sample only anchors. */
    assert_int_equal(
        node_baseline_sample(&c->b, &(struct node_baseline_cfg){ 0 }, c->now_ms,
                             c->in, c->out, NULL),
        -EINVAL);
}

/* Advances by dt ms at the given rates (bytes/s) and feeds the sample. */
static int tb_step(struct tb_client *c,
                   const struct node_baseline_cfg *cfg,
                   uint64_t dt,
                   uint64_t rate_in,
                   uint64_t rate_out)
{
    struct node_baseline_event ev;

    c->now_ms += dt;
    c->in += rate_in * dt / 1000;
    c->out += rate_out * dt / 1000;
    int rv = node_baseline_sample(&c->b, cfg, c->now_ms, c->in, c->out, &ev);
    assert_true(rv >= 0);
    if (rv == 1) {
        c->events++;
        c->last = ev;
    }
    return rv;
}

/* A rate around base with +-frac uniform noise. */
static uint64_t tb_noisy(struct tb_client *c, double base, double frac)
{
    return (uint64_t)(base * (1.0 + frac * tb_noise(c)));
}

/* Field by field: struct copies need not copy padding. */
static void tb_same(const struct node_baseline *x,
                    const struct node_baseline *y)
{
    assert_int_equal(x->anchored, y->anchored);
    assert_int_equal(x->last_ms, y->last_ms);
    assert_int_equal(x->n, y->n);
    assert_int_equal(x->anomalies, y->anomalies);
    assert_int_equal(x->resets, y->resets);
    assert_int_equal(x->gaps, y->gaps);
    for (int d = 0; d < NODE_BASELINE_NDIRS; d++) {
        assert_int_equal(x->last_bytes[d], y->last_bytes[d]);
        assert_true(x->chan[d].mean == y->chan[d].mean);
        assert_true(x->chan[d].var == y->chan[d].var);
        assert_int_equal(x->chan[d].in_anomaly, y->chan[d].in_anomaly);
    }
}

static void tb_start(struct tb_client *c, const struct node_baseline_cfg *cfg)
{
    tb_client_init(c, 12345);
    assert_int_equal(
        node_baseline_sample(&c->b, cfg, c->now_ms, c->in, c->out, NULL), 0);
    assert_true(c->b.anchored);
    assert_int_equal(c->b.n, 0);
}

static void test_baseline_steady_noise(void **state)
{
    (void)state;
    struct node_baseline_cfg cfg = node_baseline_cfg_default();
    struct tb_client c;

    tb_start(&c, &cfg);
    for (int i = 0; i < 3000; i++) {
        assert_int_equal(tb_step(&c, &cfg, TB_DT, tb_noisy(&c, 300000, 0.3),
                                 tb_noisy(&c, 2000000, 0.3)),
                         0);
    }
    /* Without the ratio guard only K * stddev protects: still quiet. */
    cfg.min_ratio = 1.0;
    for (int i = 0; i < 3000; i++) {
        assert_int_equal(tb_step(&c, &cfg, TB_DT, tb_noisy(&c, 300000, 0.3),
                                 tb_noisy(&c, 2000000, 0.3)),
                         0);
    }
    assert_int_equal(c.b.anomalies, 0);
    assert_int_equal(c.b.n, 6000);
    assert_true(fabs(c.b.chan[NODE_BASELINE_OUT].mean - 2000000) < 200000);
    assert_true(fabs(c.b.chan[NODE_BASELINE_IN].mean - 300000) < 30000);
}

static void test_baseline_min_ratio(void **state)
{
    (void)state;
    struct node_baseline_cfg cfg = node_baseline_cfg_default();
    struct tb_client c;

    /* A nearly constant stream: a 50% bump is many deviations but less
     * than twice the mean, so it is not an anomaly ... */
    tb_start(&c, &cfg);
    for (int i = 0; i < 30; i++) {
        tb_step(&c, &cfg, TB_DT, 0, tb_noisy(&c, 1000000, 0.005));
    }
    assert_int_equal(tb_step(&c, &cfg, TB_DT, 0, 1500000), 0);
    assert_int_equal(tb_step(&c, &cfg, TB_DT, 0, 2500000), 1);

    /* ... unless the ratio guard is off. */
    cfg.min_ratio = 1.0;
    tb_start(&c, &cfg);
    for (int i = 0; i < 30; i++) {
        tb_step(&c, &cfg, TB_DT, 0, tb_noisy(&c, 1000000, 0.005));
    }
    assert_int_equal(tb_step(&c, &cfg, TB_DT, 0, 1500000), 1);
}

static void test_baseline_burst_once_rearms(void **state)
{
    (void)state;
    struct node_baseline_cfg cfg = node_baseline_cfg_default();
    struct tb_client c;

    tb_start(&c, &cfg);
    for (int i = 0; i < 30; i++) {
        assert_int_equal(
            tb_step(&c, &cfg, TB_DT, 20000, tb_noisy(&c, 500000, 0.1)), 0);
    }
    double mean = c.b.chan[NODE_BASELINE_OUT].mean;
    double sd = sqrt(c.b.chan[NODE_BASELINE_OUT].var);

    /* A tenfold burst for three intervals: one event, on its start. */
    assert_int_equal(tb_step(&c, &cfg, TB_DT, 20000, 5000000), 1);
    assert_int_equal(c.last.started, 1u << NODE_BASELINE_OUT);
    assert_int_equal(c.last.interval_ms, TB_DT);
    assert_true(fabs(c.last.dir[NODE_BASELINE_OUT].rate - 5000000) < 1);
    assert_true(fabs(c.last.dir[NODE_BASELINE_OUT].mean - mean) < 1e-6);
    assert_true(fabs(c.last.dir[NODE_BASELINE_OUT].stddev - sd) < 1e-6);
    assert_true(fabs(c.last.dir[NODE_BASELINE_OUT].deviations -
                     (5000000 - mean) / sd) < 1e-6);
    assert_true(c.last.dir[NODE_BASELINE_OUT].deviations > 4.0);
    assert_true(fabs(c.last.dir[NODE_BASELINE_IN].rate - 20000) < 1);
    assert_true(c.b.chan[NODE_BASELINE_OUT].in_anomaly);
    /* Clipped: the mean moved by at most alpha * (threshold - mean). */
    assert_true(c.b.chan[NODE_BASELINE_OUT].mean < mean + 0.1 * mean * 1.01);
    assert_int_equal(tb_step(&c, &cfg, TB_DT, 20000, 5000000), 0);
    assert_int_equal(tb_step(&c, &cfg, TB_DT, 20000, 5000000), 0);
    assert_true(c.b.chan[NODE_BASELINE_OUT].in_anomaly);

    /* Back to normal: re-armed, no event. */
    for (int i = 0; i < 40; i++) {
        assert_int_equal(
            tb_step(&c, &cfg, TB_DT, 20000, tb_noisy(&c, 500000, 0.1)), 0);
    }
    assert_false(c.b.chan[NODE_BASELINE_OUT].in_anomaly);
    assert_int_equal(c.events, 1);

    /* The next burst is a new event. */
    assert_int_equal(tb_step(&c, &cfg, TB_DT, 20000, 5000000), 1);
    assert_int_equal(c.events, 2);
    assert_int_equal(c.b.anomalies, 2);
}

static void test_baseline_directions_apart(void **state)
{
    (void)state;
    struct node_baseline_cfg cfg = node_baseline_cfg_default();
    struct tb_client c;

    tb_start(&c, &cfg);
    for (int i = 0; i < 30; i++) {
        assert_int_equal(tb_step(&c, &cfg, TB_DT, tb_noisy(&c, 200000, 0.1),
                                 tb_noisy(&c, 8000000, 0.1)),
                         0);
    }
    /* An upload burst that is small beside the downloads is still seen. */
    assert_int_equal(tb_step(&c, &cfg, TB_DT, 2000000, 8000000), 1);
    assert_int_equal(c.last.started, 1u << NODE_BASELINE_IN);
    assert_false(c.b.chan[NODE_BASELINE_OUT].in_anomaly);
    /* Both at once: one event naming both. */
    for (int i = 0; i < 40; i++) {
        tb_step(&c, &cfg, TB_DT, 200000, 8000000);
    }
    assert_int_equal(c.events, 1);
    assert_int_equal(tb_step(&c, &cfg, TB_DT, 4000000, 80000000), 1);
    assert_int_equal(c.last.started,
                     (1u << NODE_BASELINE_IN) | (1u << NODE_BASELINE_OUT));
    assert_int_equal(c.b.anomalies, 2);
}

static void test_baseline_sustained_step_accepted(void **state)
{
    (void)state;
    struct node_baseline_cfg cfg = node_baseline_cfg_default();
    struct tb_client c;
    int cleared_after = -1;

    tb_start(&c, &cfg);
    for (int i = 0; i < 30; i++) {
        tb_step(&c, &cfg, TB_DT, 0, tb_noisy(&c, 500000, 0.1));
    }
    assert_int_equal(c.events, 0);
    for (int i = 0; i < 100; i++) {
        tb_step(&c, &cfg, TB_DT, 0, tb_noisy(&c, 5000000, 0.1));
        if (cleared_after < 0 && !c.b.chan[NODE_BASELINE_OUT].in_anomaly) {
            cleared_after = i;
        }
    }
    /* One event, then the new rate became the baseline. */
    assert_int_equal(c.events, 1);
    assert_true(cleared_after >= 3 && cleared_after <= 10);
    assert_true(fabs(c.b.chan[NODE_BASELINE_OUT].mean - 5000000) < 500000);
}

static void test_baseline_warmup(void **state)
{
    (void)state;
    struct node_baseline_cfg cfg = node_baseline_cfg_default();
    struct tb_client early, late;

    /* With warmup 12, the 12th rate sample still cannot flag ... */
    tb_start(&early, &cfg);
    for (int i = 0; i < 11; i++) {
        assert_int_equal(tb_step(&early, &cfg, TB_DT, 0, 200000), 0);
    }
    assert_int_equal(tb_step(&early, &cfg, TB_DT, 0, 2000000), 0);
    assert_int_equal(early.b.anomalies, 0);

    /* ... the 13th, with the same history, does. */
    tb_start(&late, &cfg);
    for (int i = 0; i < 12; i++) {
        assert_int_equal(tb_step(&late, &cfg, TB_DT, 0, 200000), 0);
    }
    assert_int_equal(tb_step(&late, &cfg, TB_DT, 0, 2000000), 1);
}

static void test_baseline_floor(void **state)
{
    (void)state;
    struct node_baseline_cfg cfg = node_baseline_cfg_default();
    struct tb_client c;

    /* An idle client bursting tenfold, still under 1 Mbit/s. */
    tb_start(&c, &cfg);
    for (int i = 0; i < 30; i++) {
        tb_step(&c, &cfg, TB_DT, tb_noisy(&c, 10000, 0.2), 500);
    }
    for (int i = 0; i < 5; i++) {
        assert_int_equal(tb_step(&c, &cfg, TB_DT, 120000, 5000), 0);
    }
    assert_int_equal(c.b.anomalies, 0);

    /* The same history with a lower floor flags. */
    cfg.floor_bps = 50000;
    tb_start(&c, &cfg);
    for (int i = 0; i < 30; i++) {
        tb_step(&c, &cfg, TB_DT, tb_noisy(&c, 10000, 0.2), 500);
    }
    assert_int_equal(tb_step(&c, &cfg, TB_DT, 120000, 5000), 1);
}

static void test_baseline_counters_reset(void **state)
{
    (void)state;
    struct node_baseline_cfg cfg = node_baseline_cfg_default();
    struct tb_client c;

    tb_start(&c, &cfg);
    for (int i = 0; i < 30; i++) {
        tb_step(&c, &cfg, TB_DT, 300000, 600000);
    }
    assert_int_equal(c.b.n, 30);

    /* openvpn restarted: counters start again near zero. */
    c.now_ms += TB_DT;
    c.in = 100;
    c.out = 200;
    assert_int_equal(
        node_baseline_sample(&c.b, &cfg, c.now_ms, c.in, c.out, NULL), 0);
    assert_int_equal(c.b.resets, 1);
    assert_int_equal(c.b.n, 0);
    assert_true(c.b.chan[NODE_BASELINE_IN].mean == 0.0);
    assert_true(c.b.chan[NODE_BASELINE_OUT].var == 0.0);
    assert_int_equal(c.b.last_bytes[NODE_BASELINE_OUT], 200);

    /* Only one direction going back is a reset too. */
    tb_step(&c, &cfg, TB_DT, 300000, 600000);
    c.now_ms += TB_DT;
    c.in -= 1;
    assert_int_equal(
        node_baseline_sample(&c.b, &cfg, c.now_ms, c.in, c.out, NULL), 0);
    assert_int_equal(c.b.resets, 2);
    tb_step(&c, &cfg, TB_DT, 300000, 600000);
    c.now_ms += TB_DT;
    c.out -= 1;
    assert_int_equal(
        node_baseline_sample(&c.b, &cfg, c.now_ms, c.in, c.out, NULL), 0);
    assert_int_equal(c.b.resets, 3);

    /* A new warm-up: a tenfold rate right away raises nothing, and the
     * first averages are those of the new session alone. */
    assert_int_equal(tb_step(&c, &cfg, TB_DT, 3000000, 6000000), 0);
    assert_int_equal(c.b.n, 1);
    assert_true(fabs(c.b.chan[NODE_BASELINE_IN].mean - 3000000) < 1e-6);
    assert_true(c.b.chan[NODE_BASELINE_IN].var == 0.0);
    assert_int_equal(c.b.anomalies, 0);
}

static void test_baseline_intervals(void **state)
{
    (void)state;
    struct node_baseline_cfg cfg = node_baseline_cfg_default();
    struct tb_client c;

    tb_start(&c, &cfg);
    struct node_baseline before = c.b;

    /* Zero and tiny intervals are deferred: nothing changes ... */
    c.in += 5000;
    c.out += 7000;
    assert_int_equal(
        node_baseline_sample(&c.b, &cfg, c.now_ms, c.in, c.out, NULL), 0);
    c.in += 5000;
    c.out += 3000;
    assert_int_equal(
        node_baseline_sample(&c.b, &cfg, c.now_ms + 100, c.in, c.out, NULL), 0);
    tb_same(&c.b, &before);

    /* ... and the next sample covers those bytes over the whole time. */
    assert_int_equal(tb_step(&c, &cfg, 1000, 0, 0), 0);
    assert_int_equal(c.b.n, 1);
    assert_true(fabs(c.b.chan[NODE_BASELINE_IN].mean - 10000.0) < 1e-9);
    assert_true(fabs(c.b.chan[NODE_BASELINE_OUT].mean - 10000.0) < 1e-9);

    /* A huge gap moves the anchor only. */
    before = c.b;
    assert_int_equal(tb_step(&c, &cfg, 3600 * 1000, 1000000, 1000000), 0);
    assert_int_equal(c.b.gaps, 1);
    assert_int_equal(c.b.n, before.n);
    assert_true(c.b.chan[NODE_BASELINE_IN].mean ==
                before.chan[NODE_BASELINE_IN].mean);
    assert_int_equal(c.b.last_ms, c.now_ms);
    assert_int_equal(c.b.last_bytes[NODE_BASELINE_IN], c.in);

    /* Time going backwards is refused and changes nothing. */
    before = c.b;
    assert_int_equal(node_baseline_sample(&c.b, &cfg, c.now_ms - 1, c.in + 10,
                                          c.out + 10, NULL),
                     -EINVAL);
    tb_same(&c.b, &before);
}

static void test_baseline_extreme_counters(void **state)
{
    (void)state;
    struct node_baseline_cfg cfg = node_baseline_cfg_default();
    struct node_baseline b;
    struct node_baseline_event ev;

    /* Counters at the top of the range, then the whole range at once. */
    memset(&b, 0, sizeof(b));
    uint64_t t = 0;
    uint64_t v = UINT64_MAX - 1000000;
    assert_int_equal(node_baseline_sample(&b, &cfg, t, 0, v, NULL), 0);
    for (int i = 0; i < 20; i++) {
        t += 1000;
        v += 1000;
        assert_int_equal(node_baseline_sample(&b, &cfg, t, 0, v, NULL), 0);
    }
    memset(&b, 0, sizeof(b));
    t = 0;
    assert_int_equal(node_baseline_sample(&b, &cfg, t, 0, 0, NULL), 0);
    for (int i = 0; i < 20; i++) {
        t += 1000;
        assert_int_equal(node_baseline_sample(&b, &cfg, t, 0,
                                              (uint64_t)(i + 1) * 200000, NULL),
                         0);
    }
    t += 1000;
    assert_int_equal(node_baseline_sample(&b, &cfg, t, 0, UINT64_MAX, &ev), 1);
    assert_true(isfinite(ev.dir[NODE_BASELINE_OUT].rate));
    assert_true(ev.dir[NODE_BASELINE_OUT].rate > 1e19);
    assert_true(isfinite(b.chan[NODE_BASELINE_OUT].mean));
    assert_true(isfinite(b.chan[NODE_BASELINE_OUT].var));
    /* A constant history has no spread: deviations is infinite. */
    assert_true(ev.dir[NODE_BASELINE_OUT].stddev == 0.0);
    assert_true(isinf(ev.dir[NODE_BASELINE_OUT].deviations));
}

/* The averages equal the explicitly weighted mean and variance: sample i
 * (1-based) gets a_i = max(alpha, 1/i), times (1 - a_j) for every later
 * sample j. */
static void tb_expected(const double *x,
                        int n,
                        double alpha,
                        double *ret_mean,
                        double *ret_var)
{
    double w[64];
    double mean = 0.0;
    double var = 0.0;
    double sum = 0.0;

    assert_true(n <= 64);
    for (int i = 0; i < n; i++) {
        w[i] = fmax(alpha, 1.0 / (i + 1));
        for (int j = i + 1; j < n; j++) {
            w[i] *= 1.0 - fmax(alpha, 1.0 / (j + 1));
        }
        sum += w[i];
        mean += w[i] * x[i];
    }
    assert_true(fabs(sum - 1.0) < 1e-12);
    for (int i = 0; i < n; i++) {
        var += w[i] * (x[i] - mean) * (x[i] - mean);
    }
    *ret_mean = mean;
    *ret_var = var;
}

static void test_baseline_mean_var(void **state)
{
    (void)state;
    struct node_baseline_cfg cfg = node_baseline_cfg_default();
    struct tb_client c;
    double x[64];
    double mean, var;

    /* No threshold can be crossed: every rate enters unclipped. */
    cfg.floor_bps = UINT64_MAX;
    for (int k = 0; k < 2; k++) {
        cfg.alpha = k == 0 ? 0.1 : 0.3;
        tb_start(&c, &cfg);
        for (int i = 0; i < 64; i++) {
            x[i] = (double)tb_noisy(&c, 1000000, 0.9);
            tb_step(&c, &cfg, 1000, (uint64_t)x[i], 7000);
            if (i == 2 || i == 11 || i == 63) {
                tb_expected(x, i + 1, cfg.alpha, &mean, &var);
                assert_true(fabs(c.b.chan[NODE_BASELINE_IN].mean - mean) <
                            1e-9 * mean);
                assert_true(fabs(c.b.chan[NODE_BASELINE_IN].var - var) <
                            1e-9 * var);
            }
        }
        /* The first three are plain averages: check one by hand. */
        assert_true(c.b.chan[NODE_BASELINE_OUT].mean == 7000.0);
        assert_true(c.b.chan[NODE_BASELINE_OUT].var == 0.0);
    }

    /* Two samples: mean and population variance. */
    cfg = node_baseline_cfg_default();
    tb_start(&c, &cfg);
    tb_step(&c, &cfg, 1000, 100000, 0);
    tb_step(&c, &cfg, 1000, 300000, 0);
    assert_true(fabs(c.b.chan[NODE_BASELINE_IN].mean - 200000.0) < 1e-9);
    assert_true(fabs(c.b.chan[NODE_BASELINE_IN].var - 1e10) < 1e-3);

    /* A long alternating a, b sequence settles at the closed form of the
     * stationary EWMA: mean (a + b) / 2 -/+ alpha (b - a) / (2 (2 - alpha))
     * after an a, and so on; check the mean after a b. */
    for (int i = 0; i < 500; i++) {
        tb_step(&c, &cfg, 1000, 100000, 0);
        tb_step(&c, &cfg, 1000, 300000, 0);
    }
    double a = cfg.alpha;
    double expect = 200000.0 + a * 200000.0 / (2.0 * (2.0 - a));
    assert_true(fabs(c.b.chan[NODE_BASELINE_IN].mean - expect) < 1e-6);
    /* Its variance settles too (the fixed point of the recursion). */
    double m_hi = expect;
    double m_lo = 200000.0 - a * 200000.0 / (2.0 * (2.0 - a));
    double d_hi = 300000.0 - m_lo; /* diff at the step that ends at m_hi */
    double d_lo = 100000.0 - m_hi;
    /* v_hi = (1-a)(v_lo + a d_hi^2), v_lo = (1-a)(v_hi + a d_lo^2). */
    double q = 1.0 - a;
    double v_hi = (q * a * d_hi * d_hi + q * q * a * d_lo * d_lo) / (1 - q * q);
    assert_true(fabs(c.b.chan[NODE_BASELINE_IN].var - v_hi) < 1e-6 * v_hi);
}

static void test_baseline_cfg_check(void **state)
{
    (void)state;
    struct node_baseline_cfg d = node_baseline_cfg_default();
    struct node_baseline_cfg cfg;
    char err[128];

    assert_int_equal(node_baseline_cfg_check(&d, err, sizeof(err)), 0);
    assert_true(d.alpha == 0.1 && d.deviations == 4.0 && d.min_ratio == 2.0);
    assert_int_equal(d.warmup, 12);
    assert_int_equal(d.floor_bps, 125000);

#define TB_BAD(field, value, word)                                        \
    do {                                                                  \
        cfg = d;                                                          \
        cfg.field = (value);                                              \
        err[0] = '\0';                                                    \
        assert_int_equal(node_baseline_cfg_check(&cfg, err, sizeof(err)), \
                         -EINVAL);                                        \
        assert_non_null(strstr(err, word));                               \
    } while (0)

    TB_BAD(alpha, 0.0, "alpha");
    TB_BAD(alpha, -0.5, "alpha");
    TB_BAD(alpha, 1.0001, "alpha");
    TB_BAD(alpha, NAN, "alpha");
    TB_BAD(deviations, 0.0, "deviations");
    TB_BAD(deviations, -1.0, "deviations");
    TB_BAD(deviations, INFINITY, "deviations");
    TB_BAD(deviations, NAN, "deviations");
    TB_BAD(min_ratio, 0.99, "min_ratio");
    TB_BAD(min_ratio, NAN, "min_ratio");
    TB_BAD(warmup, 0, "warmup");
    TB_BAD(warmup, 1, "warmup");
    TB_BAD(min_interval_ms, 0, "min_interval_ms");
    TB_BAD(max_gap_ms, d.min_interval_ms, "max_gap_ms");
#undef TB_BAD

    /* Edges that are allowed. */
    cfg = d;
    cfg.alpha = 1.0;
    cfg.warmup = 2;
    cfg.min_ratio = 1.0;
    cfg.floor_bps = 0;
    assert_int_equal(node_baseline_cfg_check(&cfg, NULL, 0), 0);
    assert_int_equal(node_baseline_cfg_check(NULL, err, sizeof(err)), -EINVAL);

    /* Sampling refuses a bad config or no state, and changes nothing. */
    struct node_baseline b;
    memset(&b, 0, sizeof(b));
    cfg = d;
    cfg.warmup = 1;
    assert_int_equal(node_baseline_sample(&b, &cfg, 1, 2, 3, NULL), -EINVAL);
    assert_false(b.anchored);
    assert_int_equal(node_baseline_sample(&b, NULL, 1, 2, 3, NULL), -EINVAL);
    assert_int_equal(node_baseline_sample(NULL, &d, 1, 2, 3, NULL), -EINVAL);
}

/* One noisy scenario with bursts, resets and odd intervals. */
static void tb_scenario(struct tb_client *c, unsigned *ret_events)
{
    struct node_baseline_cfg cfg = node_baseline_cfg_default();

    tb_client_init(c, 777);
    for (int i = 0; i < 400; i++) {
        uint64_t dt = i % 37 == 0 ? 0 : TB_DT + (uint64_t)(i % 5) * 100;
        double f = (i / 50) % 2 == 1 && i % 50 < 4 ? 12.0 : 1.0;
        if (i == 250) {
            c->in = 0;
            c->out = 0;
        }
        tb_step(c, &cfg, dt, tb_noisy(c, f * 400000, 0.2),
                tb_noisy(c, f * 900000, 0.2));
    }
    *ret_events = c->events;
}

static void test_baseline_deterministic(void **state)
{
    (void)state;
    struct tb_client c1, c2;
    unsigned e1, e2;

    tb_scenario(&c1, &e1);
    tb_scenario(&c2, &e2);
    assert_int_equal(e1, 3); /* bursts at 50, 150, 350; 250 is warm-up */
    assert_int_equal(e1, e2);
    assert_int_equal(c1.b.resets, 1);
    tb_same(&c1.b, &c2.b);
    assert_int_equal(c1.last.started, c2.last.started);
    assert_int_equal(c1.last.interval_ms, c2.last.interval_ms);
    assert_memory_equal(c1.last.dir, c2.last.dir, sizeof(c1.last.dir));
}

int node_test_baseline(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_baseline_steady_noise),
        cmocka_unit_test(test_baseline_min_ratio),
        cmocka_unit_test(test_baseline_burst_once_rearms),
        cmocka_unit_test(test_baseline_directions_apart),
        cmocka_unit_test(test_baseline_sustained_step_accepted),
        cmocka_unit_test(test_baseline_warmup),
        cmocka_unit_test(test_baseline_floor),
        cmocka_unit_test(test_baseline_counters_reset),
        cmocka_unit_test(test_baseline_intervals),
        cmocka_unit_test(test_baseline_extreme_counters),
        cmocka_unit_test(test_baseline_mean_var),
        cmocka_unit_test(test_baseline_cfg_check),
        cmocka_unit_test(test_baseline_deterministic),
    };

    return cmocka_run_group_tests_name("node_baseline", tests, NULL, NULL);
}
