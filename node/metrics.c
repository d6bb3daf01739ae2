/* node/metrics: GET /metrics (see metrics.h and docs/metrics.md).
 *
 * Every family is written with its HELP and TYPE lines and then all its
 * samples, as the text format wants; the series of a labelled family are
 * all written, zeros included, so a dashboard sees a stable set. The only
 * label whose values come from outside is cn (ovha_client_bytes_total),
 * and it is bounded (NODE_METRICS_TOP_CLIENTS + 1 names).
 */
#include "node/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/node.h"

void node_metrics_out_init(struct node_metrics_out *o)
{
    ovha_buf_init(&o->buf);
    o->err = 0;
}

void node_metrics_out_free(struct node_metrics_out *o)
{
    ovha_buf_free(&o->buf);
}

static void node_metrics_put(struct node_metrics_out *o,
                             const void *p,
                             size_t n)
{
    if (o->err == 0) {
        o->err = ovha_buf_append(&o->buf, p, n);
    }
}

static void node_metrics_puts(struct node_metrics_out *o, const char *s)
{
    node_metrics_put(o, s, strlen(s));
}

/* ---- escaping ------------------------------------------------------------ */

/* The length of the valid UTF-8 sequence at p, or 0 if it is not one
 * (overlong forms, surrogates and code points above U+10FFFF are not). */
static size_t node_metrics_utf8_len(const unsigned char *p)
{
    size_t len;
    uint32_t cp;
    if (p[0] < 0x80) {
        return 1;
    }
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        len = 2;
        cp = p[0] & 0x1fu;
    } else if ((p[0] & 0xf0) == 0xe0) {
        len = 3;
        cp = p[0] & 0x0fu;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        len = 4;
        cp = p[0] & 0x07u;
    } else {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0; /* also stops at the terminating NUL */
        }
        cp = (cp << 6) | (p[i] & 0x3fu);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff))) {
        return 0;
    }
    return len;
}

/* Copies s into out (outlen > 0) with every byte outside valid UTF-8
 * replaced by '?'; a sequence that would not fit whole is cut. */
static void node_metrics_sanitize(const char *s, char *out, size_t outlen)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = 0;
    while (*p != '\0') {
        size_t len = node_metrics_utf8_len(p);
        if (len == 0) {
            if (n + 1 >= outlen) {
                break;
            }
            out[n++] = '?';
            p++;
            continue;
        }
        if (n + len >= outlen) {
            break;
        }
        memcpy(out + n, p, len);
        n += len;
        p += len;
    }
    out[n] = '\0';
}

/* Appends s with '\' and newline escaped, and '"' too when quote. */
static void node_metrics_escape(struct node_metrics_out *o,
                                const char *s,
                                bool quote)
{
    const char *run = s;
    for (; *s != '\0'; s++) {
        const char *esc = NULL;
        if (*s == '\\') {
            esc = "\\\\";
        } else if (*s == '\n') {
            esc = "\\n";
        } else if (*s == '"' && quote) {
            esc = "\\\"";
        }
        if (esc != NULL) {
            node_metrics_put(o, run, (size_t)(s - run));
            node_metrics_puts(o, esc);
            run = s + 1;
        }
    }
    node_metrics_put(o, run, (size_t)(s - run));
}

void node_metrics_label_value(struct node_metrics_out *o, const char *s)
{
    char small[512];
    size_t len = strlen(s);
    char *clean = len < sizeof(small) ? small : ovha_malloc(len + 1);
    if (clean == NULL) {
        if (o->err == 0) {
            o->err = -ENOMEM;
        }
        return;
    }
    /* Never longer than s: a bad byte becomes one '?'. */
    node_metrics_sanitize(s, clean, len + 1);
    node_metrics_escape(o, clean, true);
    if (clean != small) {
        ovha_free(clean);
    }
}

/* ---- lines --------------------------------------------------------------- */

void node_metrics_family(struct node_metrics_out *o,
                         const char *name,
                         const char *type,
                         const char *help)
{
    node_metrics_puts(o, "# HELP ");
    node_metrics_puts(o, name);
    node_metrics_puts(o, " ");
    node_metrics_escape(o, help, false);
    node_metrics_puts(o, "\n# TYPE ");
    node_metrics_puts(o, name);
    node_metrics_puts(o, " ");
    node_metrics_puts(o, type);
    node_metrics_puts(o, "\n");
}

/* name+suffix{labels[,extra_k="extra_v"]} value */
static void node_metrics_line(struct node_metrics_out *o,
                              const char *name,
                              const char *suffix,
                              const char *const *labels,
                              const char *extra_k,
                              const char *extra_v,
                              const char *value)
{
    bool any = false;
    node_metrics_puts(o, name);
    node_metrics_puts(o, suffix);
    for (size_t i = 0; labels != NULL && labels[i] != NULL; i += 2) {
        node_metrics_puts(o, any ? "," : "{");
        node_metrics_puts(o, labels[i]);
        node_metrics_puts(o, "=\"");
        node_metrics_label_value(o, labels[i + 1]);
        node_metrics_puts(o, "\"");
        any = true;
    }
    if (extra_k != NULL) {
        node_metrics_puts(o, any ? "," : "{");
        node_metrics_puts(o, extra_k);
        node_metrics_puts(o, "=\"");
        node_metrics_label_value(o, extra_v);
        node_metrics_puts(o, "\"");
        any = true;
    }
    node_metrics_puts(o, any ? "} " : " ");
    node_metrics_puts(o, value);
    node_metrics_puts(o, "\n");
}

static const char *node_metrics_u64(uint64_t v, char *buf, size_t len)
{
    snprintf(buf, len, "%" PRIu64, v);
    return buf;
}

/* v / scale in decimal, exactly, without trailing zeros (scale is a power
 * of ten). */
static const char *node_metrics_fixed(uint64_t v,
                                      uint64_t scale,
                                      char *buf,
                                      size_t len)
{
    uint64_t whole = scale > 1 ? v / scale : v;
    uint64_t frac = scale > 1 ? v % scale : 0;
    int n = snprintf(buf, len, "%" PRIu64, whole);
    if (frac == 0 || n < 0 || (size_t)n + 1 >= len) {
        return buf;
    }
    /* The fraction's digits, most significant first, zeros at the end
     * dropped. */
    size_t at = (size_t)n;
    buf[at++] = '.';
    for (uint64_t d = scale / 10; d > 0 && frac > 0 && at + 1 < len; d /= 10) {
        buf[at++] = (char)('0' + frac / d);
        frac %= d;
    }
    buf[at] = '\0';
    return buf;
}

void node_metrics_sample(struct node_metrics_out *o,
                         const char *name,
                         const char *const *labels,
                         uint64_t value)
{
    char v[32];
    node_metrics_line(o, name, "", labels, NULL, NULL,
                      node_metrics_u64(value, v, sizeof(v)));
}

void node_metrics_histogram(struct node_metrics_out *o,
                            const char *name,
                            const char *const *labels,
                            const uint64_t *bounds,
                            const uint64_t *cumulative,
                            size_t nbounds,
                            uint64_t count,
                            uint64_t sum,
                            uint64_t scale)
{
    char le[48], v[48];
    for (size_t i = 0; i < nbounds; i++) {
        node_metrics_line(o, name, "_bucket", labels, "le",
                          node_metrics_fixed(bounds[i], scale, le, sizeof(le)),
                          node_metrics_u64(cumulative[i], v, sizeof(v)));
    }
    node_metrics_line(o, name, "_bucket", labels, "le", "+Inf",
                      node_metrics_u64(count, v, sizeof(v)));
    node_metrics_line(o, name, "_sum", labels, NULL, NULL,
                      node_metrics_fixed(sum, scale, v, sizeof(v)));
    node_metrics_line(o, name, "_count", labels, NULL, NULL,
                      node_metrics_u64(count, v, sizeof(v)));
}

/* ---- bytes per client ---------------------------------------------------- */

struct node_metrics_cn {
    char cn[256]; /* sanitized, so that equal labels are summed */
    uint64_t in, out;
};

static int node_metrics_cn_by_name(const void *a, const void *b)
{
    const struct node_metrics_cn *x = a, *y = b;
    return strcmp(x->cn, y->cn);
}

static int node_metrics_cn_by_bytes(const void *a, const void *b)
{
    const struct node_metrics_cn *x = a, *y = b;
    uint64_t tx = x->in + x->out, ty = y->in + y->out;
    if (tx != ty) {
        return tx > ty ? -1 : 1;
    }
    return strcmp(x->cn, y->cn);
}

static void node_metrics_cn_pair(struct node_metrics_out *o,
                                 const char *cn,
                                 uint64_t in,
                                 uint64_t out)
{
    const char *l_in[] = { "cn", cn, "direction", "in", NULL };
    const char *l_out[] = { "cn", cn, "direction", "out", NULL };
    node_metrics_sample(o, "ovha_client_bytes_total", l_in, in);
    node_metrics_sample(o, "ovha_client_bytes_total", l_out, out);
}

void node_metrics_client_bytes(struct node_metrics_out *o,
                               const struct node_session *s,
                               size_t n,
                               size_t top)
{
    struct node_metrics_cn *v = NULL;
    uint64_t other_in = 0, other_out = 0;
    size_t nv = 0;
    if (n > 0) {
        v = ovha_calloc(n, sizeof(*v));
        if (v == NULL) {
            if (o->err == 0) {
                o->err = -ENOMEM;
            }
            return;
        }
    }
    for (size_t i = 0; i < n; i++) {
        node_metrics_sanitize(s[i].cn, v[nv].cn, sizeof(v[nv].cn));
        if (strcmp(v[nv].cn, NODE_METRICS_OTHER_CN) == 0) {
            other_in += s[i].bytes_in;
            other_out += s[i].bytes_out;
            continue;
        }
        v[nv].in = s[i].bytes_in;
        v[nv].out = s[i].bytes_out;
        nv++;
    }
    /* One entry per name: a CN may have several sessions. */
    if (nv > 1) {
        qsort(v, nv, sizeof(*v), node_metrics_cn_by_name);
    }
    size_t m = 0;
    for (size_t i = 0; i < nv; i++) {
        if (m > 0 && strcmp(v[m - 1].cn, v[i].cn) == 0) {
            v[m - 1].in += v[i].in;
            v[m - 1].out += v[i].out;
        } else {
            v[m++] = v[i];
        }
    }
    if (m > 1) {
        qsort(v, m, sizeof(*v), node_metrics_cn_by_bytes);
    }
    for (size_t i = 0; i < m; i++) {
        if (i < top) {
            node_metrics_cn_pair(o, v[i].cn, v[i].in, v[i].out);
        } else {
            other_in += v[i].in;
            other_out += v[i].out;
        }
    }
    node_metrics_cn_pair(o, NODE_METRICS_OTHER_CN, other_in, other_out);
    ovha_free(v);
}

/* ---- the node's families --------------------------------------------------
 */

/* A family with one unlabelled sample. */
static void node_metrics_one(struct node_metrics_out *o,
                             const char *name,
                             const char *type,
                             const char *help,
                             uint64_t value)
{
    node_metrics_family(o, name, type, help);
    node_metrics_sample(o, name, NULL, value);
}

static void node_metrics_decisions(struct node_metrics_out *o,
                                   const struct node_clients_stats *st)
{
    node_metrics_family(o, "ovha_decisions_total", "counter",
                        "Answers to client CONNECT and REAUTH requests, by "
                        "kind, outcome and reason.");
    for (int k = 0; k < NODE_DECISION_KIND_MAX; k++) {
        for (int w = 0; w < NODE_WHY_MAX; w++) {
            const char *labels[] = {
                "kind",    node_decision_kind_name((enum node_decision_kind)k),
                "outcome", w == NODE_WHY_ALLOWED ? "allow" : "deny",
                "reason",  node_decision_why_name((enum node_decision_why)w),
                NULL,
            };
            node_metrics_sample(o, "ovha_decisions_total", labels,
                                st->decisions[k][w]);
        }
    }
    node_metrics_family(o, "ovha_decision_duration_seconds", "histogram",
                        "Time from a client's request (>CLIENT:ENV,END) to "
                        "its client-auth or client-deny.");
    node_metrics_histogram(o, "ovha_decision_duration_seconds", NULL,
                           node_decision_lat_bounds_us, st->latency_le_us,
                           NODE_DECISION_LAT_BUCKETS, st->latency_count,
                           st->latency_us_sum, 1000000);
}

static void node_metrics_clients(struct node_metrics_out *o,
                                 struct node_clients *c)
{
    struct node_clients_stats st;
    const struct node_session *s;
    uint64_t authorized = 0, established = 0;
    node_clients_get_stats(c, &st);
    size_t n = node_clients_sessions(c, &s);
    for (size_t i = 0; i < n; i++) {
        if (s[i].state == NODE_SESSION_ESTABLISHED) {
            established++;
        } else {
            authorized++;
        }
    }
    node_metrics_decisions(o, &st);
    node_metrics_one(o, "ovha_decisions_pending", "gauge",
                     "Client requests waiting for a decision.",
                     node_clients_pending(c));
    node_metrics_family(o, "ovha_sessions", "gauge",
                        "Client sessions on this gateway, by state.");
    const char *l_auth[] = { "state", "authorized", NULL };
    const char *l_est[] = { "state", "established", NULL };
    node_metrics_sample(o, "ovha_sessions", l_auth, authorized);
    node_metrics_sample(o, "ovha_sessions", l_est, established);
    node_metrics_one(o, "ovha_client_kills_total", "counter",
                     "client-kill commands sent.", st.kills);
    node_metrics_one(o, "ovha_bandwidth_anomalies_total", "counter",
                     "Client bandwidth anomalies detected (baseline).",
                     st.anomalies);
    node_metrics_family(o, "ovha_client_bytes_total", "counter",
                        "Bytes of the sessions on this gateway, per common "
                        "name (the 100 biggest; cn=\"_other\" sums the "
                        "rest), in = from the client.");
    node_metrics_client_bytes(o, s, n, NODE_METRICS_TOP_CLIENTS);
}

static void node_metrics_openvpn(struct node_metrics_out *o, struct node *n)
{
    node_metrics_one(o, "ovha_openvpn_restarts_total", "counter",
                     "Restarts of the openvpn child after it died.",
                     n->sup != NULL ? node_sup_restarts(n->sup) : 0);
    node_metrics_one(
        o, "ovha_openvpn_up", "gauge", "1 while the openvpn child runs.",
        n->sup != NULL && node_sup_state(n->sup) == NODE_SUP_RUNNING);
    node_metrics_one(o, "ovha_management_link_up", "gauge",
                     "1 while the openvpn management connection is up.",
                     n->mgmt_up);
    node_metrics_family(o, "ovha_config_reloads_total", "counter",
                        "Configuration reloads (SIGHUP), by result.");
    const char *l_ok[] = { "result", "success", NULL };
    const char *l_bad[] = { "result", "failure", NULL };
    uint64_t failed = n->reload_failures;
    node_metrics_sample(o, "ovha_config_reloads_total", l_ok,
                        n->reloads > failed ? n->reloads - failed : 0);
    node_metrics_sample(o, "ovha_config_reloads_total", l_bad, failed);
}

static void node_metrics_upstream(struct node_metrics_out *o,
                                  struct node_tiers *t)
{
    static const uint64_t bounds[] = { 5, 25, 100, 500, 2500 };
    static const char *const breaker[] = { "closed", "open", "half_open" };
    struct node_tiers_stats st;
    node_tiers_get_stats(t, &st);
    node_metrics_one(o, "ovha_upstream_lookups_total", "counter",
                     "Rules lookups through the cache tiers.", st.lookups);
    node_metrics_family(o, "ovha_upstream_cache_hits_total", "counter",
                        "Fresh answers from a cache tier.");
    const char *l_mem[] = { "tier", "memory", NULL };
    const char *l_redis[] = { "tier", "redis", NULL };
    const char *l_file[] = { "tier", "file", NULL };
    node_metrics_sample(o, "ovha_upstream_cache_hits_total", l_mem,
                        st.hits_memory);
    node_metrics_sample(o, "ovha_upstream_cache_hits_total", l_redis,
                        st.hits_redis);
    node_metrics_family(o, "ovha_upstream_fallback_answers_total", "counter",
                        "Stale answers used while the upstream failed, by "
                        "tier.");
    node_metrics_sample(o, "ovha_upstream_fallback_answers_total", l_mem,
                        st.fallback_memory);
    node_metrics_sample(o, "ovha_upstream_fallback_answers_total", l_file,
                        st.fallback_file);
    node_metrics_one(o, "ovha_upstream_fallback_denied_total", "counter",
                     "Lookups denied: upstream failed, nothing within max "
                     "staleness.",
                     st.fallback_denied);
    node_metrics_one(o, "ovha_upstream_requests_total", "counter",
                     "Requests sent to the upstream API.",
                     st.upstream_requests);
    node_metrics_one(o, "ovha_upstream_failures_total", "counter",
                     "Upstream requests that failed (errors, timeouts, "
                     "malformed answers).",
                     st.upstream_failures);
    node_metrics_family(o, "ovha_upstream_request_duration_seconds",
                        "histogram",
                        "Upstream API latency of answered requests.");
    node_metrics_histogram(o, "ovha_upstream_request_duration_seconds", NULL,
                           bounds, st.latency_le_ms, 5, st.latency_count,
                           st.latency_ms_sum, 1000);
    node_metrics_family(o, "ovha_upstream_breaker_state", "gauge",
                        "The upstream circuit breaker: 1 for its state.");
    for (uint64_t i = 0; i < 3; i++) {
        const char *l[] = { "state", breaker[i], NULL };
        node_metrics_sample(o, "ovha_upstream_breaker_state", l,
                            st.breaker_state == i);
    }
    node_metrics_one(o, "ovha_upstream_breaker_opens_total", "counter",
                     "Times the upstream circuit breaker opened.",
                     st.breaker_opens);
    node_metrics_one(o, "ovha_upstream_cache_entries", "gauge",
                     "Entries in the in-memory cache.", st.memory_entries);
    node_metrics_one(o, "ovha_upstream_cache_file_errors_total", "counter",
                     "Failed reads and writes of the SQLite fallback cache.",
                     st.file_errors);
    if (st.redis_enabled) {
        node_metrics_one(o, "ovha_upstream_redis_up", "gauge",
                         "1 while connected to Redis.", st.redis_connected);
    }
}

static void node_metrics_raft(struct node_metrics_out *o, struct rft *r)
{
    struct rft_status *st = ovha_malloc(sizeof(*st));
    if (st == NULL) {
        if (o->err == 0) {
            o->err = -ENOMEM;
        }
        return;
    }
    rft_get_status(r, st);
    node_metrics_one(o, "ovha_raft_term", "gauge", "The current raft term.",
                     st->term);
    node_metrics_family(o, "ovha_raft_role", "gauge",
                        "This node's raft role: 1 for the current one.");
    static const int roles[] = { RFT_STATE_FOLLOWER, RFT_STATE_CANDIDATE,
                                 RFT_STATE_LEADER, RFT_STATE_UNAVAILABLE };
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
        const char *l[] = { "role", rft_role_name(roles[i]), NULL };
        node_metrics_sample(o, "ovha_raft_role", l, st->role == roles[i]);
    }
    node_metrics_one(o, "ovha_raft_leader_known", "gauge",
                     "1 when this node knows a raft leader.",
                     st->leader_id != 0);
    node_metrics_one(o, "ovha_raft_leader_ready", "gauge",
                     "1 on a leader whose post-election barrier completed.",
                     st->ready);
    node_metrics_one(o, "ovha_raft_commit_index", "gauge",
                     "The raft commit index.", st->commit_index);
    node_metrics_one(o, "ovha_raft_applied_index", "gauge",
                     "The last raft index applied to the state machine.",
                     st->last_applied);
    node_metrics_one(o, "ovha_raft_last_index", "gauge",
                     "The last index in this node's raft log.", st->last_index);
    node_metrics_one(o, "ovha_raft_members", "gauge",
                     "Servers in the raft configuration.", st->nservers);
    node_metrics_family(o, "ovha_raft_proposals_total", "counter",
                        "Finished raft proposals of this node, by outcome.");
    const char *l_c[] = { "outcome", "committed", NULL };
    const char *l_f[] = { "outcome", "failed", NULL };
    const char *l_u[] = { "outcome", "unknown", NULL };
    node_metrics_sample(o, "ovha_raft_proposals_total", l_c,
                        st->stats.committed);
    node_metrics_sample(o, "ovha_raft_proposals_total", l_f, st->stats.failed);
    node_metrics_sample(o, "ovha_raft_proposals_total", l_u, st->stats.unknown);
    node_metrics_one(o, "ovha_raft_proposal_retries_total", "counter",
                     "Proposal attempts retried (leader change, lost).",
                     st->stats.retries);
    node_metrics_one(o, "ovha_raft_batches_total", "counter",
                     "Raft entries proposals went out in.", st->stats.batches);
    node_metrics_one(o, "ovha_raft_forwarded_total", "counter",
                     "Proposals forwarded to the leader.", st->stats.forwarded);
    node_metrics_one(o, "ovha_raft_forward_served_total", "counter",
                     "Forwarded proposals served as the leader.",
                     st->stats.forward_served);
    node_metrics_one(o, "ovha_raft_elections_won_total", "counter",
                     "Times this node became the raft leader.",
                     st->stats.elections_won);
    node_metrics_family(o, "ovha_raft_proposal_duration_seconds", "histogram",
                        "Time from a proposal to its outcome.");
    node_metrics_histogram(o, "ovha_raft_proposal_duration_seconds", NULL,
                           rft_latency_bounds_ms, st->stats.latency_le_ms,
                           RFT_LAT_BUCKETS, st->stats.latency_count,
                           st->stats.latency_ms_sum, 1000);
    node_metrics_one(o, "ovha_raft_snapshots_total", "counter",
                     "Raft snapshots taken by this node.", st->snapshots);
    node_metrics_one(o, "ovha_raft_snapshot_restores_total", "counter",
                     "Raft snapshots installed on this node.", st->restores);
    ovha_free(st);
}

/* ---- the replicated state ------------------------------------------------ */

enum {
    NODE_METRICS_LEASE_LIVE,
    NODE_METRICS_LEASE_IDLE,
    NODE_METRICS_LEASE_RESERVED,
    NODE_METRICS_LEASE_MAX
};

static int node_metrics_lease_cb(const struct fsm_lease_info *l, void *data)
{
    uint64_t *count = data;
    if (l->session_id != 0) {
        count[NODE_METRICS_LEASE_LIVE]++;
    } else if (l->reserved) {
        count[NODE_METRICS_LEASE_RESERVED]++;
    } else {
        count[NODE_METRICS_LEASE_IDLE]++;
    }
    return 0;
}

static int node_metrics_session_cb(const struct fsm_session_info *s, void *data)
{
    uint64_t *count = data;
    if ((unsigned)s->state <= FSM_SESSION_ORPHANED) {
        count[s->state]++;
    }
    return 0;
}

static int node_metrics_gateway_cb(const struct fsm_gateway_info *g, void *data)
{
    uint64_t *count = data;
    if ((unsigned)g->state <= PROTO_GW_DOWN) {
        count[g->state]++;
    }
    return 0;
}

/* Counts from a walk of the replicated tables; a failed walk leaves the
 * family out rather than publishing wrong numbers. */
static void node_metrics_cluster(struct node_metrics_out *o, struct fsm *f)
{
    static const char *const lease_states[] = { "live", "idle", "reserved" };
    static const char *const sess_states[] = { "connecting", "established",
                                               "orphaned" };
    uint64_t leases[NODE_METRICS_LEASE_MAX] = { 0 };
    uint64_t sessions[3] = { 0 };
    uint64_t gateways[PROTO_GW_DOWN + 1] = { 0 };
    if (fsm_query_leases(f, NULL, node_metrics_lease_cb, leases) == 0) {
        node_metrics_family(o, "ovha_leases", "gauge",
                            "Replicated address leases, by state.");
        for (int i = 0; i < NODE_METRICS_LEASE_MAX; i++) {
            const char *l[] = { "state", lease_states[i], NULL };
            node_metrics_sample(o, "ovha_leases", l, leases[i]);
        }
    }
    if (fsm_query_sessions(f, NULL, node_metrics_session_cb, sessions) == 0) {
        node_metrics_family(o, "ovha_cluster_sessions", "gauge",
                            "Replicated sessions of the whole cluster, by "
                            "state.");
        for (int i = 0; i < 3; i++) {
            const char *l[] = { "state", sess_states[i], NULL };
            node_metrics_sample(o, "ovha_cluster_sessions", l, sessions[i]);
        }
    }
    if (fsm_query_gateways(f, node_metrics_gateway_cb, gateways) == 0) {
        node_metrics_family(o, "ovha_cluster_gateways", "gauge",
                            "Gateways in the replicated state, by state.");
        for (int i = 0; i <= PROTO_GW_DOWN; i++) {
            const char *l[] = { "state",
                                proto_gw_state_name((enum proto_gw_state)i),
                                NULL };
            node_metrics_sample(o, "ovha_cluster_gateways", l, gateways[i]);
        }
    }
}

/* ---- reconcilers --------------------------------------------------------- */

struct node_metrics_recon {
    const char *name;
    uint64_t passes, failures, repairs;
};

static void node_metrics_reconcilers(struct node_metrics_out *o, struct node *n)
{
    struct node_metrics_recon v[3];
    size_t nv = 0;
    if (n->routes != NULL) {
        struct node_routes_stats st;
        node_routes_get_stats(n->routes, &st);
        v[nv++] = (struct node_metrics_recon){ "routes", st.passes, st.failures,
                                               st.repairs };
    }
    if (n->fw != NULL) {
        struct node_fw_stats st;
        node_fw_get_stats(n->fw, &st);
        v[nv++] = (struct node_metrics_recon){ "firewall", st.passes,
                                               st.failures, st.drifts };
    }
    if (n->shaping != NULL) {
        struct node_shaping_stats st;
        node_shaping_get_stats(n->shaping, &st);
        v[nv++] = (struct node_metrics_recon){ "shaping", st.passes,
                                               st.failures, st.repairs };
    }
    if (nv == 0) {
        return;
    }
    static const struct {
        const char *name, *help;
        size_t off;
    } fams[] = {
        { "ovha_reconcile_passes_total", "Reconcile passes run, by reconciler.",
          offsetof(struct node_metrics_recon, passes) },
        { "ovha_reconcile_failures_total",
          "Reconcile passes that reported an error, by reconciler.",
          offsetof(struct node_metrics_recon, failures) },
        { "ovha_reconcile_drift_repairs_total",
          "Kernel state found altered and put back, by reconciler.",
          offsetof(struct node_metrics_recon, repairs) },
    };
    for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
        node_metrics_family(o, fams[f].name, "counter", fams[f].help);
        for (size_t i = 0; i < nv; i++) {
            const char *l[] = { "reconciler", v[i].name, NULL };
            uint64_t val;
            memcpy(&val, (const char *)&v[i] + fams[f].off, sizeof(val));
            node_metrics_sample(o, fams[f].name, l, val);
        }
    }
}

void node_metrics_render(struct node *n, struct node_metrics_out *o)
{
    if (n->clients != NULL) {
        node_metrics_clients(o, n->clients);
    }
    node_metrics_openvpn(o, n);
    if (n->tiers != NULL) {
        node_metrics_upstream(o, n->tiers);
    }
    if (n->rft != NULL) {
        node_metrics_raft(o, n->rft);
    }
    if (n->fsm != NULL) {
        node_metrics_cluster(o, n->fsm);
    }
    node_metrics_reconcilers(o, n);
}

/* ---- the endpoint -------------------------------------------------------- */

static void node_metrics_get(struct node_http_req *r, void *data)
{
    struct node *n = data;
    struct node_metrics_out o;
    node_metrics_out_init(&o);
    int rv;
    node_metrics_render(n, &o);
    rv = o.err;
    if (rv == 0) {
        rv = node_http_respond(r, 200, NODE_METRICS_CONTENT_TYPE, o.buf.data,
                               o.buf.len);
    }
    node_metrics_out_free(&o);
    if (rv != 0) {
        /* Out of memory: a short answer may still fit; the request must
         * not stay unanswered. */
        node_http_respond_json(r, 500,
                               json_pack("{s:s}", "error", ovha_strerror(rv)));
    }
}

int node_metrics_register(struct node *n)
{
    return node_http_route(n->http, "GET", "/metrics", node_metrics_get, n);
}
