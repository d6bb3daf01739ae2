/* node/baseline: per-client bandwidth baseline and anomaly detection.
 *
 * Pure logic: no I/O, no clock, no allocation, no randomness. The caller
 * feeds each client's cumulative BYTECOUNT_CLI counters with a monotonic
 * time (ovha_now_mono_ms()); the module keeps an exponentially weighted
 * moving mean and variance of the client's rate in bytes per second and
 * returns an event when the rate jumps above the baseline. The caller
 * logs, counts and scores the events.
 *
 * What is averaged: the two directions separately. In openvpn's terms
 * bytes_in is what the server received from the client (uploads) and
 * bytes_out what it sent to the client (downloads). VPN traffic is
 * usually download-heavy, so a sum would hide the anomalies we care most
 * about on the upload side (exfiltration, a client taking part in a
 * flood): a tenfold upload burst can be a few percent of the sum. Two
 * channels cost two doubles each.
 *
 * The estimator: with weight a = max(alpha, 1/n) for the n-th rate
 * sample, diff = rate - mean, mean += a * diff and
 * var = (1 - a) * (var + a * diff^2). With a = 1/n during the first
 * samples the mean and variance are the plain (population) ones, so the
 * warm-up is not dominated by the first sample; afterwards it is the
 * usual exponentially weighted pair (Finch, "Incremental calculation of
 * weighted mean and variance", 2009).
 *
 * An anomaly starts in one direction when, after the warm-up, the rate
 * is above all of: mean + deviations * stddev, min_ratio * mean (so a
 * nearly constant stream is not flagged for a small bump when its
 * variance is close to zero) and floor_bps (so an idle client's single
 * burst is not flagged on noise). It is reported once; the direction is
 * re-armed only when a later rate is back at or under its threshold.
 *
 * What updates the baseline: every sample, but an anomalous rate enters
 * the averages clipped to the threshold it crossed. A burst therefore
 * cannot drag the mean up in one step, and a client cannot train the
 * baseline upward faster than the threshold allows without being
 * reported; yet a legitimately higher rate is accepted: each clipped
 * sample raises mean and variance, the threshold grows geometrically and
 * after a few samples (about 6 for a tenfold step with the defaults)
 * passes the new rate, which ends the anomaly without a second event.
 */
#ifndef OVHA_NODE_BASELINE_H
#define OVHA_NODE_BASELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Direction, as openvpn counts it on the server. */
enum node_baseline_dir {
    NODE_BASELINE_IN = 0, /* bytes_in: received from the client */
    NODE_BASELINE_OUT,    /* bytes_out: sent to the client */
    NODE_BASELINE_NDIRS,
};

struct node_baseline_cfg {
    double alpha;       /* weight of a new sample, (0, 1]; 0.1 */
    double deviations;  /* K in mean + K * stddev, > 0; 4 */
    double min_ratio;   /* rate must also exceed min_ratio * mean, >= 1; 2 */
    unsigned warmup;    /* rate samples before any event, >= 2; 12 */
    uint64_t floor_bps; /* and exceed this, bytes/s; 125000 (1 Mbit/s) */
    uint64_t min_interval_ms; /* shorter intervals are deferred, >= 1; 500 */
    uint64_t max_gap_ms;      /* longer ones re-anchor, > min; 300000 */
};

/* One direction's statistics. Read-only for the caller. */
struct node_baseline_chan {
    double mean; /* bytes/s */
    double var;  /* (bytes/s)^2 */
    bool in_anomaly;
};

/* Per-client state, embedded by the caller and zero-initialised (that is
 * the "no sample yet" state). Fields are read-only for the caller. */
struct node_baseline {
    bool anchored;    /* last_ms/last_bytes hold a previous sample */
    uint64_t last_ms; /* monotonic ms of the anchor */
    uint64_t last_bytes[NODE_BASELINE_NDIRS];
    uint64_t n; /* rate samples in the averages */
    struct node_baseline_chan chan[NODE_BASELINE_NDIRS];
    uint64_t anomalies; /* events returned (calls that returned 1) */
    uint64_t resets;    /* times the counters went backwards */
    uint64_t gaps;      /* intervals longer than max_gap_ms skipped */
};

/* One direction at the sample that raised the event. */
struct node_baseline_stat {
    double rate;       /* bytes/s over the interval */
    double mean;       /* baseline before this sample */
    double stddev;     /* baseline before this sample */
    double deviations; /* (rate - mean) / stddev; INFINITY if stddev is 0 */
};

struct node_baseline_event {
    unsigned started; /* bitmask of 1u << enum node_baseline_dir */
    uint64_t interval_ms;
    struct node_baseline_stat dir[NODE_BASELINE_NDIRS]; /* both filled */
};

/* The documented defaults above. */
struct node_baseline_cfg node_baseline_cfg_default(void);

/* Checks every field's bounds. Returns 0, or -EINVAL with a one-line
 * reason in err (if err is not NULL and errlen > 0). */
int node_baseline_cfg_check(const struct node_baseline_cfg *cfg,
                            char *err,
                            size_t errlen);

/* Feeds one client's cumulative counters read at monotonic time now_ms.
 * Returns 1 when an anomaly starts in at least one direction (ret_event,
 * if not NULL, is filled and b->anomalies counts it), 0 otherwise, or
 * -EINVAL (b unchanged) for a NULL b or cfg, a cfg that fails
 * node_baseline_cfg_check() or a time before the previous sample.
 *
 * Cases that return 0 and raise nothing:
 *  - the first sample after zero-initialisation only anchors;
 *  - a counter below its previous value (openvpn restarted, the CID was
 *    reused for a new session): the averages start over from this
 *    sample, b->resets counts it;
 *  - an interval shorter than min_interval_ms (zero included) is
 *    deferred: the anchor stays, so the next sample covers the bytes;
 *  - an interval longer than max_gap_ms (the loop or the management
 *    connection stalled): its average says little about the client's
 *    behaviour, so only the anchor moves, the averages are kept and
 *    b->gaps counts it.
 * Counter deltas are unsigned 64-bit differences converted to double,
 * so no value overflows. */
int node_baseline_sample(struct node_baseline *b,
                         const struct node_baseline_cfg *cfg,
                         uint64_t now_ms,
                         uint64_t bytes_in,
                         uint64_t bytes_out,
                         struct node_baseline_event *ret_event);

#endif
