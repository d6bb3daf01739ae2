/* node/baseline: EWMA mean/variance of each client's rate and anomaly
 * events. See baseline.h for the model and the choices. */
#include "node/baseline.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

struct node_baseline_cfg node_baseline_cfg_default(void)
{
    struct node_baseline_cfg cfg = {
        .alpha = 0.1,
        .deviations = 4.0,
        .min_ratio = 2.0,
        .warmup = 12,
        .floor_bps = 125000,
        .min_interval_ms = 500,
        .max_gap_ms = 300000,
    };
    return cfg;
}

/* Writes a reason if the caller asked for one; always returns -EINVAL. */
static int node_baseline_cfg_fail(char *err, size_t errlen, const char *why)
{
    if (err != NULL && errlen > 0) {
        snprintf(err, errlen, "%s", why);
    }
    return -EINVAL;
}

int node_baseline_cfg_check(const struct node_baseline_cfg *cfg,
                            char *err,
                            size_t errlen)
{
    if (cfg == NULL) {
        return node_baseline_cfg_fail(err, errlen, "no config");
    }
    /* Written so that NaN fails every comparison and is rejected. */
    if (!(cfg->alpha > 0.0 && cfg->alpha <= 1.0)) {
        return node_baseline_cfg_fail(err, errlen, "alpha must be in (0, 1]");
    }
    if (!(cfg->deviations > 0.0 && isfinite(cfg->deviations))) {
        return node_baseline_cfg_fail(err, errlen,
                                      "deviations must be finite and > 0");
    }
    if (!(cfg->min_ratio >= 1.0 && isfinite(cfg->min_ratio))) {
        return node_baseline_cfg_fail(err, errlen,
                                      "min_ratio must be finite and >= 1");
    }
    /* One sample has no variance: the threshold would be the mean. */
    if (cfg->warmup < 2) {
        return node_baseline_cfg_fail(err, errlen, "warmup must be >= 2");
    }
    if (cfg->min_interval_ms < 1) {
        return node_baseline_cfg_fail(err, errlen,
                                      "min_interval_ms must be >= 1");
    }
    if (cfg->max_gap_ms <= cfg->min_interval_ms) {
        return node_baseline_cfg_fail(err, errlen,
                                      "max_gap_ms must be > min_interval_ms");
    }
    return 0;
}

/* Takes this sample as the start of the next interval. */
static void node_baseline_anchor(struct node_baseline *b,
                                 uint64_t now_ms,
                                 const uint64_t bytes[NODE_BASELINE_NDIRS])
{
    b->anchored = true;
    b->last_ms = now_ms;
    memcpy(b->last_bytes, bytes, sizeof(b->last_bytes));
}

/* The rate a direction must exceed to be anomalous. */
static double node_baseline_threshold(const struct node_baseline_chan *c,
                                      const struct node_baseline_cfg *cfg)
{
    double t = c->mean + cfg->deviations * sqrt(c->var);

    t = fmax(t, cfg->min_ratio * c->mean);
    return fmax(t, (double)cfg->floor_bps);
}

/* Tests one direction's rate against its baseline, then folds it in
 * (clipped to the threshold while anomalous). n is the number of rate
 * samples already in the averages. Fills ret_stat; returns true when an
 * anomaly starts. */
static bool node_baseline_chan_step(struct node_baseline_chan *c,
                                    const struct node_baseline_cfg *cfg,
                                    uint64_t n,
                                    double rate,
                                    struct node_baseline_stat *ret_stat)
{
    double sd = sqrt(c->var);
    double x = rate;
    bool started = false;

    ret_stat->rate = rate;
    ret_stat->mean = c->mean;
    ret_stat->stddev = sd;
    ret_stat->deviations = sd > 0.0 ? (rate - c->mean) / sd : INFINITY;

    if (n >= cfg->warmup) {
        double t = node_baseline_threshold(c, cfg);
        if (rate > t) {
            started = !c->in_anomaly;
            c->in_anomaly = true;
            x = t;
        } else {
            c->in_anomaly = false;
        }
    }

    /* 1/(n+1) first, so the warm-up averages all samples equally. */
    double a = fmax(cfg->alpha, 1.0 / ((double)n + 1.0));
    double diff = x - c->mean;
    double incr = a * diff;
    c->mean += incr;
    c->var = (1.0 - a) * (c->var + diff * incr);
    return started;
}

int node_baseline_sample(struct node_baseline *b,
                         const struct node_baseline_cfg *cfg,
                         uint64_t now_ms,
                         uint64_t bytes_in,
                         uint64_t bytes_out,
                         struct node_baseline_event *ret_event)
{
    const uint64_t bytes[NODE_BASELINE_NDIRS] = { bytes_in, bytes_out };
    struct node_baseline_event ev;

    if (b == NULL || node_baseline_cfg_check(cfg, NULL, 0) < 0) {
        return -EINVAL;
    }
    if (!b->anchored) {
        node_baseline_anchor(b, now_ms, bytes);
        return 0;
    }
    if (now_ms < b->last_ms) {
        return -EINVAL;
    }
    if (bytes_in < b->last_bytes[NODE_BASELINE_IN] ||
        bytes_out < b->last_bytes[NODE_BASELINE_OUT]) {
        /* A new session: its rates owe nothing to the old averages. */
        b->n = 0;
        memset(b->chan, 0, sizeof(b->chan));
        b->resets++;
        node_baseline_anchor(b, now_ms, bytes);
        return 0;
    }

    uint64_t dt = now_ms - b->last_ms;
    if (dt < cfg->min_interval_ms) {
        return 0;
    }
    if (dt > cfg->max_gap_ms) {
        b->gaps++;
        node_baseline_anchor(b, now_ms, bytes);
        return 0;
    }

    memset(&ev, 0, sizeof(ev));
    ev.interval_ms = dt;
    for (int d = 0; d < NODE_BASELINE_NDIRS; d++) {
        double rate =
            (double)(bytes[d] - b->last_bytes[d]) * 1000.0 / (double)dt;
        if (node_baseline_chan_step(&b->chan[d], cfg, b->n, rate, &ev.dir[d])) {
            ev.started |= 1u << d;
        }
    }
    if (b->n < UINT64_MAX) {
        b->n++;
    }
    node_baseline_anchor(b, now_ms, bytes);
    if (ev.started == 0) {
        return 0;
    }
    b->anomalies++;
    if (ret_event != NULL) {
        *ret_event = ev;
    }
    return 1;
}
