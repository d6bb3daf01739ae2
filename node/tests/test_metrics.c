/* The Prometheus exposition writers: label escaping (hostile common
 * names), HELP/TYPE lines, histograms, the bounded bytes-per-client
 * family, and a whole render of a bare node and of a node with a
 * replicated state. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/base.h"
#include "fsm/fsm.h"
#include "mgmt/mgmt.h"
#include "node/clients.h"
#include "node/metrics.h"
#include "node/node.h"
#include "node_tests.h"

/* The buffer as a C string (the writers do not terminate it). */
static const char *test_metrics_str(struct node_metrics_out *o)
{
    assert_int_equal(o->err, 0);
    assert_int_equal(ovha_buf_append(&o->buf, "", 1), 0);
    o->buf.len--;
    return o->buf.data;
}

static void test_metrics_escape(const char *in, const char *want)
{
    struct node_metrics_out o;
    node_metrics_out_init(&o);
    node_metrics_label_value(&o, in);
    assert_string_equal(test_metrics_str(&o), want);
    node_metrics_out_free(&o);
}

static void test_label_escaping(void **state)
{
    (void)state;
    test_metrics_escape("alice", "alice");
    test_metrics_escape("", "");
    test_metrics_escape("a\\b", "a\\\\b");
    test_metrics_escape("say \"hi\"", "say \\\"hi\\\"");
    test_metrics_escape("line1\nline2", "line1\\nline2");
    /* A CN crafted to close the label and add a series of its own. */
    test_metrics_escape("x\"} 1\novha_fake 9\n#", "x\\\"} 1\\novha_fake 9\\n#");
    test_metrics_escape("\\\"\n", "\\\\\\\"\\n");
    /* Tab and carriage return are legal in a label value. */
    test_metrics_escape("a\tb\rc", "a\tb\rc");
}

static void test_label_utf8(void **state)
{
    (void)state;
    /* Valid multibyte text passes unchanged. */
    test_metrics_escape("J\xc3\xbcrgen \xe2\x82\xac \xf0\x9f\x94\x91",
                        "J\xc3\xbcrgen \xe2\x82\xac \xf0\x9f\x94\x91");
    /* Lone bytes, a cut sequence, an overlong '/', a surrogate, and a code
     * point above U+10FFFF each become '?' per bad byte. */
    test_metrics_escape(
        "a\xff"
        "b",
        "a?b");
    test_metrics_escape("\xc3", "?");
    test_metrics_escape("\xc0\xaf", "??");
    test_metrics_escape("\xed\xa0\x80", "???");
    test_metrics_escape("\xf4\x90\x80\x80", "????");
    test_metrics_escape(
        "\xe2\x82"
        "x",
        "??x");
    /* A long value takes the heap path. */
    char big[2000];
    memset(big, '"', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    struct node_metrics_out o;
    node_metrics_out_init(&o);
    node_metrics_label_value(&o, big);
    assert_int_equal(o.err, 0);
    assert_int_equal(o.buf.len, 2 * (sizeof(big) - 1));
    node_metrics_out_free(&o);
}

static void test_family_and_samples(void **state)
{
    (void)state;
    struct node_metrics_out o;
    node_metrics_out_init(&o);
    node_metrics_family(&o, "ovha_x_total", "counter",
                        "Things \\ counted\nover lines \"quoted\".");
    node_metrics_sample(&o, "ovha_x_total", NULL, 0);
    const char *l[] = { "a", "1", "b", "q\"", NULL };
    node_metrics_sample(&o, "ovha_x_total", l, UINT64_MAX);
    assert_string_equal(test_metrics_str(&o),
                        "# HELP ovha_x_total Things \\\\ counted\\nover "
                        "lines \"quoted\".\n"
                        "# TYPE ovha_x_total counter\n"
                        "ovha_x_total 0\n"
                        "ovha_x_total{a=\"1\",b=\"q\\\"\"} "
                        "18446744073709551615\n");
    node_metrics_out_free(&o);
}

static void test_histogram(void **state)
{
    (void)state;
    struct node_metrics_out o;
    node_metrics_out_init(&o);
    static const uint64_t bounds[] = { 250, 1000, 2500000 };
    static const uint64_t cum[] = { 1, 3, 3 };
    const char *l[] = { "k", "v", NULL };
    /* Microseconds to seconds. */
    node_metrics_histogram(&o, "h", l, bounds, cum, 3, 4, 1500250, 1000000);
    assert_string_equal(test_metrics_str(&o),
                        "h_bucket{k=\"v\",le=\"0.00025\"} 1\n"
                        "h_bucket{k=\"v\",le=\"0.001\"} 3\n"
                        "h_bucket{k=\"v\",le=\"2.5\"} 3\n"
                        "h_bucket{k=\"v\",le=\"+Inf\"} 4\n"
                        "h_sum{k=\"v\"} 1.50025\n"
                        "h_count{k=\"v\"} 4\n");
    node_metrics_out_free(&o);

    /* Milliseconds, no labels, a whole sum. */
    node_metrics_out_init(&o);
    static const uint64_t ms[] = { 5, 1000 };
    static const uint64_t mc[] = { 0, 2 };
    node_metrics_histogram(&o, "m", NULL, ms, mc, 2, 2, 2000, 1000);
    assert_string_equal(test_metrics_str(&o),
                        "m_bucket{le=\"0.005\"} 0\n"
                        "m_bucket{le=\"1\"} 2\n"
                        "m_bucket{le=\"+Inf\"} 2\n"
                        "m_sum 2\n"
                        "m_count 2\n");
    node_metrics_out_free(&o);
}

static void test_session(struct node_session *s,
                         const char *cn,
                         uint64_t in,
                         uint64_t out)
{
    memset(s, 0, sizeof(*s));
    ovha_strlcpy(s->cn, cn, sizeof(s->cn));
    s->bytes_in = in;
    s->bytes_out = out;
}

static void test_client_bytes_small(void **state)
{
    (void)state;
    struct node_session s[4];
    test_session(&s[0], "bob", 10, 20);
    test_session(&s[1], "alice", 1, 2);
    test_session(&s[2], "bob", 5, 5);    /* a second session of bob */
    test_session(&s[3], "_other", 7, 0); /* folded into the rest */
    struct node_metrics_out o;
    node_metrics_out_init(&o);
    node_metrics_client_bytes(&o, s, 4, 100);
    assert_string_equal(
        test_metrics_str(&o),
        "ovha_client_bytes_total{cn=\"bob\",direction=\"in\"} 15\n"
        "ovha_client_bytes_total{cn=\"bob\",direction=\"out\"} 25\n"
        "ovha_client_bytes_total{cn=\"alice\",direction=\"in\"} 1\n"
        "ovha_client_bytes_total{cn=\"alice\",direction=\"out\"} 2\n"
        "ovha_client_bytes_total{cn=\"_other\",direction=\"in\"} 7\n"
        "ovha_client_bytes_total{cn=\"_other\",direction=\"out\"} 0\n");
    node_metrics_out_free(&o);

    /* No sessions: only the _other pair, at zero. */
    node_metrics_out_init(&o);
    node_metrics_client_bytes(&o, NULL, 0, 100);
    assert_string_equal(
        test_metrics_str(&o),
        "ovha_client_bytes_total{cn=\"_other\",direction=\"in\"} 0\n"
        "ovha_client_bytes_total{cn=\"_other\",direction=\"out\"} 0\n");
    node_metrics_out_free(&o);
}

/* Counts the lines of text that start with prefix. */
static size_t test_count_lines(const char *text, const char *prefix)
{
    size_t n = 0, plen = strlen(prefix);
    for (const char *p = text; p != NULL && *p != '\0';) {
        if (strncmp(p, prefix, plen) == 0) {
            n++;
        }
        p = strchr(p, '\n');
        p = p != NULL ? p + 1 : NULL;
    }
    return n;
}

static void test_client_bytes_bounded(void **state)
{
    (void)state;
    enum { N = 250 };
    struct node_session *s = calloc(N, sizeof(*s));
    assert_non_null(s);
    uint64_t total_rest = 0;
    for (int i = 0; i < N; i++) {
        char cn[64];
        snprintf(cn, sizeof(cn), "c%03d", i);
        /* Client i has i+1 bytes in and 1000*(i+1) out. */
        test_session(&s[i], cn, (uint64_t)i + 1, 1000 * ((uint64_t)i + 1));
        if (i < N - 100) {
            total_rest += (uint64_t)i + 1;
        }
    }
    /* Two hostile names that sanitize to the same label are one series;
     * an escaped one stays well formed. */
    test_session(&s[0], "evil\xff", 5, 5);
    test_session(&s[1], "evil\xfe", 5, 5);
    test_session(&s[2], "q\"\n", 1, 1);
    total_rest += 5 + 5 + 1 - 1 - 2 - 3; /* they replaced c000..c002 */
    struct node_metrics_out o;
    node_metrics_out_init(&o);
    node_metrics_client_bytes(&o, s, N, 100);
    const char *t = test_metrics_str(&o);
    /* 100 names plus _other, two directions each. */
    assert_int_equal(test_count_lines(t, "ovha_client_bytes_total{"), 202);
    /* The biggest comes first, the 100th biggest is in, the 101st not. */
    assert_non_null(strstr(t,
                           "ovha_client_bytes_total{cn=\"c249\","
                           "direction=\"out\"} 250000\n"));
    assert_ptr_equal(strstr(t, "ovha_client_bytes_total{"),
                     strstr(t, "ovha_client_bytes_total{cn=\"c249\""));
    assert_non_null(strstr(t, "{cn=\"c150\",direction=\"in\"} 151\n"));
    assert_null(strstr(t, "cn=\"c149\""));
    assert_null(strstr(t, "evil"));
    char want[128];
    snprintf(want, sizeof(want),
             "ovha_client_bytes_total{cn=\"_other\",direction=\"in\"} %llu\n",
             (unsigned long long)total_rest);
    assert_non_null(strstr(t, want));
    node_metrics_out_free(&o);

    /* With room for all: the hostile names appear, merged and escaped. */
    node_metrics_out_init(&o);
    node_metrics_client_bytes(&o, s, N, 1000);
    t = test_metrics_str(&o);
    assert_non_null(strstr(t, "{cn=\"evil?\",direction=\"in\"} 10\n"));
    assert_non_null(strstr(t, "{cn=\"q\\\"\\n\",direction=\"out\"} 1\n"));
    assert_int_equal(test_count_lines(t, "ovha_client_bytes_total{"),
                     2 * (N - 1 + 1));
    node_metrics_out_free(&o);
    free(s);
}

/* Checks the exposition's shape: every sample belongs to the family of
 * the TYPE line before it (name, or name_bucket/_sum/_count for a
 * histogram), no family is declared twice, and every line ends in \n.
 * Returns the number of families. */
static size_t test_check_exposition(const char *text)
{
    char family[128] = "", type[32] = "";
    char seen[4096] = " ";
    size_t nfam = 0;
    assert_true(text[0] == '\0' || text[strlen(text) - 1] == '\n');
    for (const char *p = text; *p != '\0';) {
        const char *end = strchr(p, '\n');
        assert_non_null(end);
        char line[1024];
        size_t len = (size_t)(end - p);
        assert_true(len < sizeof(line));
        memcpy(line, p, len);
        line[len] = '\0';
        p = end + 1;
        if (strncmp(line, "# HELP ", 7) == 0) {
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            assert_int_equal(sscanf(line + 7, "%127s %31s", family, type), 2);
            char key[140];
            snprintf(key, sizeof(key), " %s ", family);
            assert_null(strstr(seen, key));
            assert_true(strlen(seen) + strlen(family) + 2 < sizeof(seen));
            strcat(seen, family);
            strcat(seen, " ");
            nfam++;
            continue;
        }
        assert_true(family[0] != '\0');
        size_t fl = strlen(family);
        assert_memory_equal(line, family, fl);
        const char *rest = line + fl;
        if (strcmp(type, "histogram") == 0) {
            assert_true(strncmp(rest, "_bucket{", 8) == 0 ||
                        strncmp(rest, "_sum", 4) == 0 ||
                        strncmp(rest, "_count", 6) == 0);
        } else {
            assert_true(*rest == ' ' || *rest == '{');
        }
        if (strcmp(type, "counter") == 0) {
            assert_memory_equal(family + fl - 6, "_total", 6);
        }
    }
    return nfam;
}

/* promtool (Debian package prometheus), when installed, finds nothing to
 * say about text: no parse error, no lint problem. */
static void test_promtool_clean(const char *text)
{
    if (access("/usr/bin/promtool", X_OK) != 0) {
        return;
    }
    char path[] = "/tmp/ovha-metrics-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    char cmd[128], out[512] = "";
    snprintf(cmd, sizeof(cmd), "/usr/bin/promtool check metrics <%s 2>&1",
             path);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t n = fread(out, 1, sizeof(out) - 1, f);
    int rc = pclose(f);
    unlink(path);
    if (n > 0 || rc != 0) {
        fprintf(stderr, "promtool (%d): %s\n", rc, out);
    }
    assert_int_equal(n, 0);
    assert_int_equal(rc, 0);
}

static void test_render_bare(void **state)
{
    (void)state;
    struct node n;
    memset(&n, 0, sizeof(n));
    n.mgmt_up = true;
    n.reloads = 3;
    n.reload_failures = 1;
    struct node_metrics_out o;
    node_metrics_out_init(&o);
    node_metrics_render(&n, &o);
    const char *t = test_metrics_str(&o);
    assert_int_equal(test_check_exposition(t), 4);
    assert_non_null(strstr(t, "\novha_management_link_up 1\n"));
    assert_non_null(strstr(t, "\novha_openvpn_up 0\n"));
    assert_non_null(
        strstr(t, "\novha_config_reloads_total{result=\"success\"} 2\n"));
    assert_non_null(
        strstr(t, "\novha_config_reloads_total{result=\"failure\"} 1\n"));
    assert_null(strstr(t, "ovha_raft_"));
    assert_null(strstr(t, "ovha_leases"));
    test_promtool_clean(t);
    node_metrics_out_free(&o);
}

static void test_render_cluster_state(void **state)
{
    (void)state;
    struct node n;
    memset(&n, 0, sizeof(n));
    assert_int_equal(fsm_new(NULL, &n.fsm), 0);
    struct node_metrics_out o;
    node_metrics_out_init(&o);
    node_metrics_render(&n, &o);
    const char *t = test_metrics_str(&o);
    assert_int_equal(test_check_exposition(t), 4 + 3);
    assert_non_null(strstr(t, "\novha_leases{state=\"live\"} 0\n"));
    assert_non_null(strstr(t, "\novha_leases{state=\"reserved\"} 0\n"));
    assert_non_null(
        strstr(t, "\novha_cluster_sessions{state=\"orphaned\"} 0\n"));
    assert_non_null(strstr(t, "\novha_cluster_gateways{state=\"down\"} 0\n"));
    test_promtool_clean(t);
    node_metrics_out_free(&o);
    fsm_free(n.fsm);
}

/* ---- decisions counted by the connection path ----------------------------
 * node/clients against a management link that never connects (its sends
 * fail, which does not matter here) and a scripted decider. */

struct test_decider {
    int mode; /* what the next decide does: see test_decide */
};

enum {
    TEST_ALLOW,
    TEST_REFUSE,
    TEST_UNAVAILABLE,
    TEST_FAIL,
    TEST_SILENT,
};

static int test_decide(void *impl,
                       const struct node_decision_req *req,
                       node_decide_cb cb,
                       void *data,
                       void **ret_handle)
{
    struct test_decider *t = impl;
    struct node_decision d;
    (void)req;
    memset(&d, 0, sizeof(d));
    *ret_handle = NULL;
    switch (t->mode) {
    case TEST_ALLOW:
        d.allow = true;
        ovha_strlcpy(d.ip, "100.64.0.5", sizeof(d.ip));
        ovha_strlcpy(d.netmask, "255.255.255.0", sizeof(d.netmask));
        break;
    case TEST_REFUSE:
        ovha_strlcpy(d.reason, "banned", sizeof(d.reason));
        ovha_strlcpy(d.client_reason, "Access denied", sizeof(d.client_reason));
        break;
    case TEST_UNAVAILABLE:
        ovha_strlcpy(d.reason, "cluster unavailable", sizeof(d.reason));
        ovha_strlcpy(d.client_reason, NODE_TEMP_CLIENT_REASON,
                     sizeof(d.client_reason));
        break;
    case TEST_FAIL:
        return -EIO;
    default:
        return 0; /* never answers: the deadline does */
    }
    cb(&d, data);
    return 0;
}

static void test_cancel(void *impl, void *handle)
{
    (void)impl;
    (void)handle;
}

static void test_closed(void *impl,
                        const char *cn,
                        const char *ip,
                        uint64_t session_id)
{
    (void)impl;
    (void)cn;
    (void)ip;
    (void)session_id;
}

static const struct node_decider_ops test_decider_ops = {
    .decide = test_decide,
    .cancel = test_cancel,
    .session_closed = test_closed,
};

static void test_request(struct node_clients *c,
                         bool reauth,
                         uint64_t cid,
                         const char *cn)
{
    struct mgmt_env_var vars[] = {
        { "common_name", cn },
        { "untrusted_ip", "198.18.0.11" },
    };
    struct mgmt_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = reauth ? MGMT_EV_CLIENT_REAUTH : MGMT_EV_CLIENT_CONNECT;
    ev.cid = cid;
    ev.env.vars = vars;
    ev.env.n = cn != NULL ? 2 : 0;
    node_clients_on_event(c, &ev);
}

static void test_close_cb(void *data)
{
    (*(int *)data)++;
}

static void test_decisions_counted(void **state)
{
    (void)state;
    uv_loop_t loop;
    struct mgmt_conn *m = NULL;
    struct node_clients *c = NULL;
    struct test_decider t = { TEST_ALLOW };
    struct node_decider d = { &test_decider_ops, &t };
    struct mgmt_conn_config mc = { .path = "/nonexistent/ovha-test.sock" };
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(mgmt_conn_new(&loop, &mc, NULL, NULL, NULL, &m), 0);
    assert_int_equal(node_clients_new(&loop, m, d, 1000, &c), 0);

    test_request(c, false, 1, "alice");
    t.mode = TEST_REFUSE;
    test_request(c, false, 2, "mallory");
    t.mode = TEST_UNAVAILABLE;
    test_request(c, false, 3, "bob");
    test_request(c, false, 4, NULL);
    t.mode = TEST_FAIL;
    test_request(c, false, 5, "carol");
    t.mode = TEST_ALLOW;
    test_request(c, true, 1, "alice");
    t.mode = TEST_REFUSE;
    test_request(c, true, 1, "alice");
    /* Unanswered: denied when its deadline (0 ms) passes. */
    t.mode = TEST_SILENT;
    node_clients_set_deadline(c, 0);
    test_request(c, false, 6, "dave");
    assert_int_equal(node_clients_pending(c), 1);
    for (int i = 0; i < 100 && node_clients_pending(c) > 0; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    assert_int_equal(node_clients_pending(c), 0);

    struct node_clients_stats st;
    node_clients_get_stats(c, &st);
    assert_int_equal(st.decisions[NODE_DECISION_CONNECT][NODE_WHY_ALLOWED], 1);
    assert_int_equal(st.decisions[NODE_DECISION_CONNECT][NODE_WHY_REFUSED], 1);
    assert_int_equal(st.decisions[NODE_DECISION_CONNECT][NODE_WHY_UNAVAILABLE],
                     1);
    assert_int_equal(st.decisions[NODE_DECISION_CONNECT][NODE_WHY_NO_CN], 1);
    assert_int_equal(st.decisions[NODE_DECISION_CONNECT][NODE_WHY_ERROR], 1);
    assert_int_equal(st.decisions[NODE_DECISION_CONNECT][NODE_WHY_DEADLINE], 1);
    assert_int_equal(st.decisions[NODE_DECISION_REAUTH][NODE_WHY_ALLOWED], 1);
    assert_int_equal(st.decisions[NODE_DECISION_REAUTH][NODE_WHY_REFUSED], 1);
    assert_int_equal(st.latency_count, 8);
    /* Cumulative buckets; the last bound (10 s) holds every answer here. */
    for (int i = 1; i < NODE_DECISION_LAT_BUCKETS; i++) {
        assert_true(st.latency_le_us[i] >= st.latency_le_us[i - 1]);
    }
    assert_int_equal(st.latency_le_us[NODE_DECISION_LAT_BUCKETS - 1], 8);
    /* The old counters are unchanged in meaning. */
    assert_int_equal(st.allowed, 1);
    assert_int_equal(st.deadline_denied, 1);

    struct node n;
    memset(&n, 0, sizeof(n));
    n.clients = c;
    struct node_metrics_out o;
    node_metrics_out_init(&o);
    node_metrics_render(&n, &o);
    const char *text = test_metrics_str(&o);
    test_check_exposition(text);
    assert_non_null(strstr(text,
                           "\novha_decisions_total{kind=\"connect\","
                           "outcome=\"allow\",reason=\"allowed\"} 1\n"));
    assert_non_null(strstr(text,
                           "\novha_decisions_total{kind=\"connect\","
                           "outcome=\"deny\",reason=\"deadline\"} 1\n"));
    assert_non_null(strstr(text,
                           "\novha_decisions_total{kind=\"reauth\","
                           "outcome=\"deny\",reason=\"refused\"} 1\n"));
    assert_non_null(strstr(text,
                           "\novha_decisions_total{kind=\"reauth\","
                           "outcome=\"deny\",reason=\"error\"} 0\n"));
    assert_non_null(strstr(
        text, "\novha_decision_duration_seconds_bucket{le=\"+Inf\"} 8\n"));
    assert_non_null(strstr(text, "\novha_decision_duration_seconds_count 8\n"));
    /* alice's session (authorized, never established) and her bytes. */
    assert_non_null(strstr(text, "\novha_sessions{state=\"authorized\"} 1\n"));
    assert_non_null(strstr(text,
                           "\novha_client_bytes_total{cn=\"alice\","
                           "direction=\"in\"} 0\n"));
    node_metrics_out_free(&o);

    int closed = 0;
    node_clients_close(c, test_close_cb, &closed);
    mgmt_conn_close(m, test_close_cb, &closed);
    for (int i = 0; i < 100 && closed < 2; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    assert_int_equal(closed, 2);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* The upstream families, from a real node/tiers that never asked its
 * upstream: a closed breaker, zero counters. */
static void test_render_upstream(void **state)
{
    (void)state;
    char dir[] = "/tmp/ovha-metrics-tiers-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char yaml[1024], err[256], ca[300];
    snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
    node_test_write_file(ca, "");
    snprintf(yaml, sizeof(yaml),
             "node: {id: gw-metrics, state_dir: %s}\n"
             "openvpn: {config: /o, network: 100.64.0.0/24}\n"
             "upstream: {url: \"https://198.18.0.1:9/v1/decide\", ca: %s}\n"
             "cache: {file: %s/answers.db, max_stale_s: 60}\n",
             dir, ca, dir);
    struct node_cfg *cfg = NULL;
    assert_int_equal(
        node_cfg_load_string("m.yaml", yaml, &cfg, err, sizeof(err)), 0);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct node n;
    memset(&n, 0, sizeof(n));
    assert_int_equal(node_tiers_new(&loop, cfg, &n.tiers), 0);

    struct node_metrics_out o;
    node_metrics_out_init(&o);
    node_metrics_render(&n, &o);
    const char *t = test_metrics_str(&o);
    assert_int_equal(test_check_exposition(t), 4 + 11); /* no redis */
    assert_non_null(
        strstr(t, "\novha_upstream_breaker_state{state=\"closed\"} 1\n"));
    assert_non_null(
        strstr(t, "\novha_upstream_breaker_state{state=\"open\"} 0\n"));
    assert_non_null(
        strstr(t, "\novha_upstream_cache_hits_total{tier=\"redis\"} 0\n"));
    assert_non_null(strstr(t,
                           "\novha_upstream_request_duration_seconds_"
                           "bucket{le=\"2.5\"} 0\n"));
    test_promtool_clean(t);
    node_metrics_out_free(&o);

    int closed = 0;
    node_tiers_close(n.tiers, test_close_cb, &closed);
    for (int i = 0; i < 500 && closed == 0; i++) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    assert_int_equal(closed, 1);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    node_cfg_free(cfg);
    char rm[512];
    snprintf(rm, sizeof(rm), "rm -rf '%s'", dir);
    assert_int_equal(system(rm), 0);
}

/* Every allocation failure is reported (no partial body is taken for a
 * whole one), and nothing leaks. */
static void test_render_oom(void **state)
{
    (void)state;
    struct node n;
    memset(&n, 0, sizeof(n));
    assert_int_equal(fsm_new(NULL, &n.fsm), 0);
    struct node_session s[3];
    test_session(&s[0], "a", 1, 1);
    test_session(&s[1], "b", 2, 2);
    test_session(&s[2], "\xff\"long enough to matter", 3, 3);
    size_t failures = 0;
    for (long k = 0; k < 200; k++) {
        struct node_metrics_out o;
        node_metrics_out_init(&o);
        ovha_alloc_fail_after(k);
        node_metrics_render(&n, &o);
        node_metrics_client_bytes(&o, s, 3, 1);
        ovha_alloc_fail_after(-1);
        if (o.err != 0) {
            assert_int_equal(o.err, -ENOMEM);
            failures++;
        }
        node_metrics_out_free(&o);
    }
    assert_true(failures > 0);
    assert_true(failures < 200); /* the last rounds had room enough */
    fsm_free(n.fsm);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(node_decision_why_name(NODE_WHY_ALLOWED), "allowed");
    assert_string_equal(node_decision_why_name(NODE_WHY_DEADLINE), "deadline");
    assert_string_equal(node_decision_why_name(NODE_WHY_MAX), "unknown");
    assert_string_equal(node_decision_kind_name(NODE_DECISION_REAUTH),
                        "reauth");
    /* Every reason has a distinct name: they are label values. */
    for (int i = 0; i < NODE_WHY_MAX; i++) {
        for (int j = i + 1; j < NODE_WHY_MAX; j++) {
            assert_string_not_equal(
                node_decision_why_name((enum node_decision_why)i),
                node_decision_why_name((enum node_decision_why)j));
        }
    }
    /* Bucket bounds must increase. */
    for (int i = 1; i < NODE_DECISION_LAT_BUCKETS; i++) {
        assert_true(node_decision_lat_bounds_us[i] >
                    node_decision_lat_bounds_us[i - 1]);
    }
    for (int i = 1; i < RFT_LAT_BUCKETS; i++) {
        assert_true(rft_latency_bounds_ms[i] > rft_latency_bounds_ms[i - 1]);
    }
}

int node_test_metrics(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_label_escaping),
        cmocka_unit_test(test_label_utf8),
        cmocka_unit_test(test_family_and_samples),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_client_bytes_small),
        cmocka_unit_test(test_client_bytes_bounded),
        cmocka_unit_test(test_render_bare),
        cmocka_unit_test(test_render_cluster_state),
        cmocka_unit_test(test_decisions_counted),
        cmocka_unit_test(test_render_upstream),
        cmocka_unit_test(test_render_oom),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests_name("node_metrics", tests, NULL, NULL);
}
