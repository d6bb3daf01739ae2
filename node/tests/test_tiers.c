/* node/tiers against the reference upstream server
 * (cluster-tests/tools/upstream-server.py) on 127.0.0.1, a random port,
 * with a throwaway openssl CA. The server's /control chooses faults and
 * its /stats counts the decide requests per CN; both are driven with
 * blocking libcurl calls outside the loop runs. Every test uses its own
 * CNs so a late request of an earlier test cannot disturb its counts. */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <uv.h>

#include "base/base.h"
#include "node/config.h"
#include "node/decide.h"
#include "node/tiers.h"
#include "node_tests.h"

#ifndef OVHA_TEST_DIR
#define OVHA_TEST_DIR "node/tests"
#endif
#define TT_SERVER OVHA_TEST_DIR "/../../cluster-tests/tools/upstream-server.py"

#define TT_PW       "s3cr3t-Pa55!word"
#define TT_PW_WRONG "wr0ng-Guess?x"

static char tt_dir[64];
static pid_t tt_pid = -1;
static int tt_port;
static char tt_ca[128];
static unsigned tt_seq; /* a fresh cache file per fixture */
/* Extra `cache:` members for the next fixtures (reset after each test). */
static const char *tt_cache_extra = "";

/* The answers the server knows, one CN (or two) per test. */
static const char tt_data[] =
    "{\n"
    " \"t1-allow\": {\"decision\": \"allow\", \"reason\": \"static grant\","
    " \"ip\": \"100.64.0.10\","
    " \"routes\": [\"100.64.10.0/24\", \"100.64.11.0/24\"],"
    " \"max_sessions\": 2, \"on_excess\": \"refuse\","
    " \"quota\": {\"bytes\": 1000000, \"period\": \"day\"}, \"ttl_s\": 300},\n"
    " \"t1-pool\": {\"decision\": \"allow\", \"pool\": \"blue\","
    " \"max_sessions\": 3, \"on_excess\": \"evict_oldest\", \"ttl_s\": 300},\n"
    " \"t2-deny\": {\"decision\": \"deny\", \"reason\": \"account suspended\","
    " \"client_reason\": \"contact support\", \"ttl_s\": 300},\n"
    " \"t3-flight\": {\"decision\": \"allow\", \"reason\": \"flight\","
    " \"routes\": [\"100.64.20.0/24\"], \"ttl_s\": 300},\n"
    " \"t3-user\": {\"decision\": \"allow\", \"ttl_s\": 300},\n"
    " \"t4-pw\": {\"decision\": \"allow\", \"reason\": \"pw ok\","
    " \"ttl_s\": 30, \"x_password\": \"" TT_PW
    "\"},\n"
    " \"t4-pwdeny\": {\"decision\": \"deny\", \"reason\": \"locked\","
    " \"ttl_s\": 300, \"x_password\": \"" TT_PW
    "\"},\n"
    " \"t5-stale\": {\"decision\": \"allow\", \"reason\": \"stale ok\","
    " \"ttl_s\": 1},\n"
    " \"t6-file\": {\"decision\": \"allow\", \"reason\": \"from file\","
    " \"routes\": [\"100.64.30.0/24\"], \"ttl_s\": 300},\n"
    " \"t6-flush\": {\"decision\": \"allow\", \"ttl_s\": 300},\n"
    " \"t7-nottl\": {\"decision\": \"allow\", \"ttl_s\": 0},\n"
    " \"t8-prime\": {\"decision\": \"allow\", \"reason\": \"primed\","
    " \"ttl_s\": 1},\n"
    " \"t8-bad\": {\"decision\": \"allow\", \"ttl_s\": 300},\n"
    " \"t9-slow\": {\"decision\": \"allow\", \"ttl_s\": 300},\n"
    " \"t10-cancel\": {\"decision\": \"allow\", \"reason\": \"kept\","
    " \"ttl_s\": 300},\n"
    " \"t10-many\": {\"decision\": \"allow\", \"ttl_s\": 300},\n"
    " \"t11-a\": {\"decision\": \"allow\", \"ttl_s\": 300},\n"
    " \"t11-b\": {\"decision\": \"allow\", \"ttl_s\": 300},\n"
    " \"t3-pwf\": {\"decision\": \"allow\", \"ttl_s\": 300},\n"
    " \"t13-stale\": {\"decision\": \"allow\", \"reason\": \"old\","
    " \"ttl_s\": 1},\n"
    " \"t14-a\": {\"decision\": \"allow\", \"ttl_s\": 300},\n"
    " \"t14-b\": {\"decision\": \"allow\", \"ttl_s\": 300},\n"
    " \"t14-c\": {\"decision\": \"allow\", \"ttl_s\": 300},\n"
    " \"t14-d\": {\"decision\": \"allow\", \"ttl_s\": 300},\n"
    " \"t15-x\": {\"decision\": \"allow\", \"reason\": \"x as y\","
    " \"ttl_s\": 300},\n"
    " \"t12-ok\": {\"decision\": \"allow\", \"ttl_s\": 300}\n"
    "}\n";

/* ---- the server: control and stats over blocking libcurl ------------- */

static size_t tt_curl_write(char *p, size_t sz, size_t n, void *data)
{
    struct ovha_buf *b = data;

    if (ovha_buf_append(b, p, sz * n) != 0) {
        return 0;
    }
    return sz * n;
}

/* One request to the server; returns the parsed JSON answer (200 only). */
static json_t *tt_http(const char *method, const char *path, const char *body)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    struct ovha_buf b;
    char url[128];
    long code = 0;
    CURLcode rc;
    json_t *j;

    assert_non_null(c);
    ovha_buf_init(&b);
    snprintf(url, sizeof(url), "https://127.0.0.1:%d%s", tt_port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, tt_ca);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, tt_curl_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    if (body != NULL) {
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    }
    rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    assert_int_equal(rc, CURLE_OK);
    assert_int_equal(code, 200);
    assert_int_equal(ovha_buf_append(&b, "", 1), 0);
    j = json_loads(b.data, 0, NULL);
    ovha_buf_free(&b);
    assert_non_null(j);
    return j;
}

static void tt_mode(const char *mode, int delay_ms, int count)
{
    char body[128];

    snprintf(body, sizeof(body),
             "{\"mode\": \"%s\", \"delay_ms\": %d, \"count\": %d}", mode,
             delay_ms, count);
    json_decref(tt_http("POST", "/control", body));
}

static void tt_stats_reset(void)
{
    json_decref(tt_http("DELETE", "/stats", NULL));
}

/* Decide requests the server answered for cn (counted after a fault was
 * chosen, so faults other than slow are not counted here). */
static long tt_by_cn(const char *cn)
{
    json_t *j = tt_http("GET", "/stats", NULL);
    json_t *v = json_object_get(json_object_get(j, "by_cn"), cn);
    long n = v != NULL ? (long)json_integer_value(v) : 0;

    json_decref(j);
    return n;
}

/* Every decide request that reached the server, faults included. */
static long tt_requests(void)
{
    json_t *j = tt_http("GET", "/stats", NULL);
    long n = (long)json_integer_value(json_object_get(j, "requests"));

    json_decref(j);
    return n;
}

/* ---- server lifecycle ------------------------------------------------ */

static int tt_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int tt_sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    return system(cmd);
}

static int tt_make_pki(void)
{
    const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

    return tt_sh(
        "set -e; cd %s; exec >/dev/null 2>&1;"
        "openssl req -x509 %s -keyout ca.key -out ca.crt -days 2"
        " -subj /CN=ovha-tiers-test-ca;"
        "openssl req %s -keyout srv.key -out srv.csr"
        " -subj /CN=127.0.0.1;"
        "printf 'subjectAltName=IP:127.0.0.1\\n' > srv.ext;"
        "openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key"
        " -CAcreateserial -out srv.crt -days 2 -extfile srv.ext",
        tt_dir, ec, ec);
}

static int tt_server_start(void)
{
    char cert[128], key[128], data[128], line[128];

    snprintf(cert, sizeof(cert), "%s/srv.crt", tt_dir);
    snprintf(key, sizeof(key), "%s/srv.key", tt_dir);
    snprintf(data, sizeof(data), "%s/answers.json", tt_dir);
    char *const argv[] = { "python3", TT_SERVER, "--cert",   cert,
                           "--key",   key,       "--listen", "127.0.0.1:0",
                           "--data",  data,      "--quiet",  NULL };
    tt_pid = node_test_spawn_line(argv, line, sizeof(line));
    if (tt_pid < 0 || sscanf(line, "listening 127.0.0.1:%d", &tt_port) != 1 ||
        tt_port <= 0) {
        return -1;
    }
    return 0;
}

static void tt_server_stop(void)
{
    if (tt_pid > 0) {
        kill(tt_pid, SIGTERM);
        waitpid(tt_pid, NULL, 0);
        tt_pid = -1;
    }
}

static int tt_group_setup(void **state)
{
    char data[128];

    (void)state;
    snprintf(tt_dir, sizeof(tt_dir), "/tmp/ovha-tiers-XXXXXX");
    if (mkdtemp(tt_dir) == NULL) {
        return -1;
    }
    snprintf(tt_ca, sizeof(tt_ca), "%s/ca.crt", tt_dir);
    snprintf(data, sizeof(data), "%s/answers.json", tt_dir);
    node_test_write_file(data, tt_data);
    if (tt_make_pki() != 0) {
        fprintf(stderr, "tiers tests: openssl failed\n");
        return -1;
    }
    if (tt_server_start() < 0) {
        fprintf(stderr, "tiers tests: server did not start\n");
        return -1;
    }
    return 0;
}

static int tt_group_teardown(void **state)
{
    (void)state;
    tt_server_stop();
    ovha_clock_set_skew_ms(0);
    if (tt_dir[0] != '\0') {
        tt_sh("rm -rf '%s'", tt_dir);
    }
    return 0;
}

/* After each test, even a failed one: no skew, a running server in
 * normal mode. */
static int tt_test_teardown(void **state)
{
    (void)state;
    ovha_clock_set_skew_ms(0);
    ovha_alloc_fail_after(-1);
    tt_cache_extra = "";
    if (tt_pid < 0 && tt_server_start() < 0) {
        return -1;
    }
    tt_mode("normal", 0, 0);
    return 0;
}

/* ---- a loop, a guard timer and the tiers ----------------------------- */

struct tt_fix {
    uv_loop_t loop;
    uv_timer_t guard;
    bool expired;
    bool closed;
    struct node_cfg *cfg;
    struct node_tiers *t;
    struct node_rules rules;
    char file[128];
    int handles_left; /* counted when the close callback ran */
};

struct tt_res {
    int *counter;
    int fired;
    struct node_grant g;
    uint64_t at_ms;
};

static void tt_cb(const struct node_grant *g, void *data)
{
    struct tt_res *r = data;

    r->fired++;
    r->g = *g;
    r->at_ms = ovha_now_mono_ms();
    if (r->counter != NULL) {
        (*r->counter)++;
    }
}

static void tt_guard_cb(uv_timer_t *t)
{
    struct tt_fix *f = t->data;

    f->expired = true;
}

/* The config: the upstream at port (0 = the test server), extra
 * `upstream:` members (a YAML flow fragment, may be ""), the cache file
 * (NULL = a new one). */
static void tt_cfg(struct tt_fix *f,
                   int port,
                   const char *up_extra,
                   const char *file)
{
    char yaml[2048], err[512];

    if (file != NULL) {
        ovha_strlcpy(f->file, file, sizeof(f->file));
    } else {
        snprintf(f->file, sizeof(f->file), "%s/answers-%u.db", tt_dir,
                 ++tt_seq);
    }
    snprintf(yaml, sizeof(yaml),
             "node: {id: gw-tiers, state_dir: %s}\n"
             "openvpn: {config: /o, network: 100.64.0.0/24}\n"
             "upstream: {url: \"https://127.0.0.1:%d/v1/decide\", ca: %s%s%s}\n"
             "cache: {file: %s, max_stale_s: 60%s%s}\n",
             tt_dir, port != 0 ? port : tt_port, tt_ca,
             up_extra[0] != '\0' ? ", " : "", up_extra, f->file,
             tt_cache_extra[0] != '\0' ? ", " : "", tt_cache_extra);
    f->cfg = NULL;
    if (node_cfg_load_string("tiers.yaml", yaml, &f->cfg, err, sizeof(err)) !=
        0) {
        fprintf(stderr, "tiers tests: config: %s\n", err);
    }
    assert_non_null(f->cfg);
}

static void tt_fix_init(struct tt_fix *f,
                        int port,
                        const char *up_extra,
                        const char *file)
{
    memset(f, 0, sizeof(*f));
    if (port == 0) {
        tt_mode("normal", 0, 0);
        tt_stats_reset();
    }
    tt_cfg(f, port, up_extra, file);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->guard);
    f->guard.data = f;
    assert_int_equal(node_tiers_new(&f->loop, f->cfg, &f->t), 0);
    node_tiers_rules(f->t, &f->rules);
}

/* Runs the loop until *counter reaches want; fails after guard_ms. */
static void tt_wait(struct tt_fix *f, int *counter, int want, uint64_t guard_ms)
{
    f->expired = false;
    uv_timer_start(&f->guard, tt_guard_cb, guard_ms, 0);
    while (*counter < want && !f->expired) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&f->guard);
    assert_false(f->expired);
}

/* Runs the loop for ms (lets time pass without sleeping the thread). */
static void tt_run_for(struct tt_fix *f, uint64_t ms)
{
    f->expired = false;
    uv_timer_start(&f->guard, tt_guard_cb, ms, 0);
    while (!f->expired) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
}

/* Fixtures live in static storage and are never reused: after a failed
 * assertion (a longjmp out of the test) the abandoned loop and tiers stay
 * valid memory instead of a dead stack frame. */
static struct tt_fix tt_fixes[32];
static unsigned tt_nfixes;

static struct tt_fix *tt_fix_alloc(void)
{
    assert_true(tt_nfixes < sizeof(tt_fixes) / sizeof(tt_fixes[0]));
    return &tt_fixes[tt_nfixes++];
}

static void tt_stats(struct tt_fix *f, struct node_tiers_stats *st)
{
    node_tiers_get_stats(f->t, st);
}

/* Runs the loop until the tiers received n upstream answers. */
static void tt_wait_answers(struct tt_fix *f, uint64_t n, uint64_t guard_ms)
{
    struct node_tiers_stats st;

    f->expired = false;
    uv_timer_start(&f->guard, tt_guard_cb, guard_ms, 0);
    tt_stats(f, &st);
    while (st.upstream_answers < n && !f->expired) {
        uv_run(&f->loop, UV_RUN_ONCE);
        tt_stats(f, &st);
    }
    uv_timer_stop(&f->guard);
    assert_false(f->expired);
}

static void tt_walk_cb(uv_handle_t *h, void *arg)
{
    struct tt_fix *f = arg;

    if (h != (uv_handle_t *)&f->guard) {
        f->handles_left++;
    }
}

/* "cb(data) runs when all is freed": no handle of the tiers is left, not
 * even one still closing. */
static void tt_closed_cb(void *data)
{
    struct tt_fix *f = data;

    f->closed = true;
    uv_walk(&f->loop, tt_walk_cb, f);
}

/* Closes the tiers (if not yet), then the loop; every handle must be
 * gone. */
static void tt_fix_done(struct tt_fix *f)
{
    if (f->t != NULL) {
        node_tiers_close(f->t, tt_closed_cb, f);
        f->t = NULL;
    }
    f->expired = false;
    uv_timer_start(&f->guard, tt_guard_cb, 5000, 0);
    while (!f->closed && !f->expired) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    assert_true(f->closed);
    assert_int_equal(f->handles_left, 0);
    uv_close((uv_handle_t *)&f->guard, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    node_cfg_free(f->cfg);
    f->cfg = NULL;
}

static int tt_lookup(struct tt_fix *f,
                     const char *cn,
                     const char *user,
                     const char *password,
                     struct tt_res *r,
                     void **handle)
{
    struct node_decision_req req;
    void *h = NULL;
    int rv;

    memset(&req, 0, sizeof(req));
    req.cid = 7;
    req.cn = cn;
    req.username = user != NULL ? user : "";
    req.real_ip = "198.18.0.7";
    req.real_port = "40000";
    req.password = password;
    rv = f->rules.ops->lookup(f->rules.impl, &req, tt_cb, r, &h);
    if (handle != NULL) {
        *handle = h;
    }
    return rv;
}

/* One lookup run to its answer. Returns whether cb fired inside lookup. */
static bool tt_one(struct tt_fix *f,
                   const char *cn,
                   const char *user,
                   const char *password,
                   struct tt_res *r)
{
    int n = 0;
    bool sync;

    memset(r, 0, sizeof(*r));
    r->counter = &n;
    assert_int_equal(tt_lookup(f, cn, user, password, r, NULL), 0);
    sync = n == 1;
    tt_wait(f, &n, 1, 10000);
    assert_int_equal(r->fired, 1);
    r->counter = NULL;
    return sync;
}

/* An allow, or a failure that names the deny. */
static void tt_assert_allow(const struct tt_res *r)
{
    if (!r->g.d.allow) {
        fail_msg("denied by %s: \"%s\"",
                 r->g.source != NULL ? r->g.source : "?", r->g.d.reason);
    }
}

static void tt_assert_contains(const char *s, const char *part)
{
    if (strstr(s, part) == NULL) {
        fail_msg("\"%s\" does not contain \"%s\"", s, part);
    }
}

/* ---- 1. allow from the upstream, then from memory --------------------- */

static void tt_assert_t1(const struct node_grant *g)
{
    const struct node_decision *d = &g->d;

    assert_true(d->allow);
    assert_string_equal(d->reason, "static grant");
    assert_string_equal(d->ip, "100.64.0.10");
    assert_string_equal(d->netmask, "255.255.255.0");
    assert_int_equal(d->nroutes, 2);
    assert_string_equal(d->routes[0].addr, "100.64.10.0");
    assert_int_equal(d->routes[0].prefix, 24);
    assert_string_equal(d->routes[1].addr, "100.64.11.0");
    assert_int_equal(d->routes[1].prefix, 24);
    assert_int_equal(d->niroutes, 0);
    assert_string_equal(g->pool, "");
    assert_int_equal(g->max_sessions, 2);
    assert_int_equal(g->on_excess, NODE_EXCESS_REFUSE);
    assert_int_equal(g->quota_bytes, 1000000);
    assert_string_equal(g->quota_period, "day");
}

static void test_tiers_allow_then_memory(void **state)
{
    struct tt_fix *f = tt_fix_alloc();
    struct tt_res r;
    struct node_tiers_stats st;

    (void)state;
    tt_fix_init(f, 0, "", NULL);
    assert_false(tt_one(f, "t1-allow", NULL, NULL, &r));
    tt_assert_t1(&r.g);
    assert_string_equal(r.g.source, "upstream");

    /* The second answers inside the call, from memory, without a request. */
    assert_true(tt_one(f, "t1-allow", NULL, NULL, &r));
    tt_assert_t1(&r.g);
    assert_string_equal(r.g.source, "memory");
    assert_int_equal(tt_by_cn("t1-allow"), 1);
    tt_stats(f, &st);
    assert_int_equal(st.lookups, 2);
    assert_int_equal(st.hits_memory, 1);
    assert_int_equal(st.upstream_requests, 1);
    assert_int_equal(st.upstream_answers, 1);
    assert_int_equal(st.upstream_failures, 0);
    assert_int_equal(st.latency_count, 1);
    assert_int_equal(st.latency_le_ms[5], 1);
    assert_int_equal(st.memory_entries, 1);

    /* A pool grant: no static ip, the pool and the session policy. */
    assert_false(tt_one(f, "t1-pool", NULL, NULL, &r));
    tt_assert_allow(&r);
    assert_string_equal(r.g.source, "upstream");
    assert_string_equal(r.g.d.ip, "");
    assert_string_equal(r.g.pool, "blue");
    assert_int_equal(r.g.max_sessions, 3);
    assert_int_equal(r.g.on_excess, NODE_EXCESS_EVICT_OLDEST);
    assert_int_equal(r.g.quota_bytes, 0);
    assert_int_equal(r.g.d.nroutes, 0);
    tt_fix_done(f);
}

/* ---- 2. deny from the upstream ---------------------------------------- */

static void test_tiers_deny(void **state)
{
    struct tt_fix *f = tt_fix_alloc();
    struct tt_res r;

    (void)state;
    tt_fix_init(f, 0, "", NULL);
    assert_false(tt_one(f, "t2-deny", NULL, NULL, &r));
    assert_false(r.g.d.allow);
    assert_string_equal(r.g.source, "upstream");
    assert_string_equal(r.g.d.reason, "account suspended");
    assert_string_equal(r.g.d.client_reason, "contact support");
    assert_string_equal(r.g.d.ip, "");
    /* A deny without a password is cached like an allow. */
    assert_true(tt_one(f, "t2-deny", NULL, NULL, &r));
    assert_false(r.g.d.allow);
    assert_string_equal(r.g.source, "memory");
    assert_string_equal(r.g.d.client_reason, "contact support");

    /* An unknown CN: the server's deny. */
    assert_false(tt_one(f, "t2-nobody", NULL, NULL, &r));
    assert_false(r.g.d.allow);
    assert_string_equal(r.g.d.reason, "unknown client");
    assert_int_equal(tt_by_cn("t2-deny"), 1);
    tt_fix_done(f);
}

/* ---- 3. single flight ------------------------------------------------- */

#define TT_FLIGHT_N 50

static void test_tiers_single_flight(void **state)
{
    struct tt_fix *f = tt_fix_alloc();
    struct tt_res *rs = calloc(TT_FLIGHT_N + 4, sizeof(*rs));
    struct node_tiers_stats st;
    int n = 0;

    (void)state;
    assert_non_null(rs);
    tt_fix_init(f, 0, "", NULL);
    for (int i = 0; i < TT_FLIGHT_N; i++) {
        rs[i].counter = &n;
        assert_int_equal(tt_lookup(f, "t3-flight", NULL, NULL, &rs[i], NULL),
                         0);
    }
    assert_int_equal(n, 0);
    tt_wait(f, &n, TT_FLIGHT_N, 10000);
    for (int i = 0; i < TT_FLIGHT_N; i++) {
        assert_int_equal(rs[i].fired, 1);
        assert_true(rs[i].g.d.allow);
        assert_string_equal(rs[i].g.source, "upstream");
        assert_string_equal(rs[i].g.d.reason, "flight");
        assert_int_equal(rs[i].g.d.nroutes, 1);
        assert_string_equal(rs[i].g.d.routes[0].addr, "100.64.20.0");
    }
    assert_int_equal(tt_by_cn("t3-flight"), 1);
    tt_stats(f, &st);
    assert_int_equal(st.shared, TT_FLIGHT_N - 1);
    assert_int_equal(st.upstream_requests, 1);
    assert_int_equal(st.lookups, TT_FLIGHT_N);

    /* Usernames are part of the identity: two flights of two lookups. */
    n = 0;
    for (int i = 0; i < 4; i++) {
        memset(&rs[i], 0, sizeof(rs[i]));
        rs[i].counter = &n;
        assert_int_equal(
            tt_lookup(f, "t3-user", i < 2 ? "u1" : "u2", NULL, &rs[i], NULL),
            0);
    }
    tt_wait(f, &n, 4, 10000);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(rs[i].fired, 1);
        assert_true(rs[i].g.d.allow);
        assert_string_equal(rs[i].g.source, "upstream");
    }
    assert_int_equal(tt_by_cn("t3-user"), 2);
    tt_stats(f, &st);
    assert_int_equal(st.shared, TT_FLIGHT_N - 1 + 2);
    assert_int_equal(st.upstream_requests, 3);
    /* Each identity has its own memory entry now. */
    assert_int_equal(st.memory_entries, 3);

    /* Lookups with different passwords do not share an answer. */
    n = 0;
    for (int i = 0; i < 4; i++) {
        memset(&rs[i], 0, sizeof(rs[i]));
        rs[i].counter = &n;
        assert_int_equal(
            tt_lookup(f, "t3-pwf", NULL, i < 2 ? "pw-1" : "pw-2", &rs[i], NULL),
            0);
    }
    tt_wait(f, &n, 4, 10000);
    assert_int_equal(tt_by_cn("t3-pwf"), 2);
    tt_stats(f, &st);
    assert_int_equal(st.shared, TT_FLIGHT_N - 1 + 4);
    tt_fix_done(f);
    free(rs);
}

/* ---- 4. passwords ----------------------------------------------------- */

/* Whether the bytes of needle occur in the file at path (absent = no). */
static bool tt_file_has(const char *path, const char *needle)
{
    FILE *fp = fopen(path, "rb");
    struct ovha_buf b;
    char chunk[4096];
    size_t n;
    bool found;

    if (fp == NULL) {
        return false;
    }
    ovha_buf_init(&b);
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
        assert_int_equal(ovha_buf_append(&b, chunk, n), 0);
    }
    fclose(fp);
    found = b.len > 0 && memmem(b.data, b.len, needle, strlen(needle)) != NULL;
    ovha_buf_free(&b);
    return found;
}

/* The SQLite file after the tiers closed: the entry is there with a
 * verifier, and no byte of the store holds either password. */
static void tt_check_sqlite(const char *file, const char *key)
{
    static const char *const sfx[] = { "", "-wal", "-shm", "-journal" };
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    char path[160];
    int rows = 0;

    assert_int_equal(sqlite3_open_v2(file, &db, SQLITE_OPEN_READONLY, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(
                         db, "SELECT key, value, pw_salt, pw_hash FROM entries",
                         -1, &st, NULL),
                     SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        for (int c = 0; c < 4; c++) {
            const void *v = sqlite3_column_blob(st, c);
            int len = sqlite3_column_bytes(st, c);

            if (v != NULL && len > 0) {
                assert_null(memmem(v, (size_t)len, TT_PW, strlen(TT_PW)));
                assert_null(
                    memmem(v, (size_t)len, TT_PW_WRONG, strlen(TT_PW_WRONG)));
            }
        }
        if (strcmp((const char *)sqlite3_column_text(st, 0), key) == 0) {
            rows++;
            assert_true(sqlite3_column_bytes(st, 3) > 0); /* a verifier */
        }
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    assert_int_equal(rows, 1);
    for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
        snprintf(path, sizeof(path), "%s%s", file, sfx[i]);
        assert_false(tt_file_has(path, TT_PW));
        assert_false(tt_file_has(path, TT_PW_WRONG));
    }
    assert_true(tt_file_has(file, key));
}

static void test_tiers_passwords(void **state)
{
    struct tt_fix *f = tt_fix_alloc();
    struct tt_res r;
    struct node_tiers_stats st;

    (void)state;
    tt_fix_init(f, 0, "", NULL);
    assert_false(tt_one(f, "t4-pw", "alice", TT_PW, &r));
    tt_assert_allow(&r);
    assert_string_equal(r.g.source, "upstream");
    assert_string_equal(r.g.d.reason, "pw ok");
    /* The same password: from memory. */
    assert_true(tt_one(f, "t4-pw", "alice", TT_PW, &r));
    tt_assert_allow(&r);
    assert_string_equal(r.g.source, "memory");
    assert_int_equal(tt_by_cn("t4-pw"), 1);

    /* A wrong password asks the upstream, and its deny is not cached. */
    assert_false(tt_one(f, "t4-pw", "alice", TT_PW_WRONG, &r));
    assert_false(r.g.d.allow);
    assert_string_equal(r.g.source, "upstream");
    assert_string_equal(r.g.d.reason, "bad credentials");
    assert_false(tt_one(f, "t4-pw", "alice", TT_PW_WRONG, &r));
    assert_false(r.g.d.allow);
    assert_string_equal(r.g.source, "upstream");
    assert_int_equal(tt_by_cn("t4-pw"), 3);
    /* No password at all is not answered by the password's entry. */
    assert_false(tt_one(f, "t4-pw", "alice", NULL, &r));
    assert_false(r.g.d.allow);
    assert_int_equal(tt_by_cn("t4-pw"), 4);
    /* A deny of a request with the right password is not cached either. */
    for (int i = 0; i < 2; i++) {
        assert_false(tt_one(f, "t4-pwdeny", NULL, TT_PW, &r));
        assert_false(r.g.d.allow);
        assert_string_equal(r.g.source, "upstream");
        assert_string_equal(r.g.d.reason, "locked");
    }
    assert_int_equal(tt_by_cn("t4-pwdeny"), 2);
    /* The right password still answers from memory. */
    assert_true(tt_one(f, "t4-pw", "alice", TT_PW, &r));
    tt_assert_allow(&r);
    assert_string_equal(r.g.source, "memory");
    tt_stats(f, &st);
    assert_int_equal(st.hits_memory, 2);

    /* The upstream goes away and the entry ages past its ttl (30 s) but
     * not past max_stale_s (60 s). */
    tt_server_stop();
    ovha_clock_set_skew_ms(40000);
    assert_false(tt_one(f, "t4-pw", "alice", TT_PW, &r));
    tt_assert_allow(&r);
    assert_string_equal(r.g.source, "fallback");
    assert_string_equal(r.g.d.reason, "pw ok");
    tt_stats(f, &st);
    assert_int_equal(st.fallback_memory, 1);
    assert_false(tt_one(f, "t4-pw", "alice", TT_PW_WRONG, &r));
    assert_false(r.g.d.allow);
    assert_string_equal(r.g.source, "fallback");
    tt_assert_contains(r.g.d.reason, "credentials not verifiable");
    tt_assert_contains(r.g.d.reason, "upstream unreachable");
    tt_fix_done(f);
    ovha_clock_set_skew_ms(0);
    assert_int_equal(tt_server_start(), 0);

    tt_check_sqlite(f->file, "cn:t4-pw|user:alice");
}

/* ---- 5. fallback and staleness ---------------------------------------- */

static void test_tiers_fallback_staleness(void **state)
{
    struct tt_fix *f = tt_fix_alloc();
    struct tt_res r;
    struct node_tiers_stats st;

    (void)state;
    tt_fix_init(f, 0, "", NULL);
    assert_false(tt_one(f, "t5-stale", NULL, NULL, &r));
    tt_assert_allow(&r);
    assert_string_equal(r.g.source, "upstream");

    /* Older than ttl_s (1 s), within max_stale_s (60 s): the memory
     * fallback answers when the upstream fails. */
    ovha_clock_set_skew_ms(5000);
    tt_mode("error500", 0, 0);
    assert_false(tt_one(f, "t5-stale", NULL, NULL, &r));
    tt_assert_allow(&r);
    assert_string_equal(r.g.source, "fallback");
    assert_string_equal(r.g.d.reason, "stale ok");
    tt_stats(f, &st);
    assert_int_equal(st.fallback_memory, 1);
    assert_int_equal(st.upstream_failures, 1);
    assert_int_equal(st.upstream_requests, 2);

    /* Beyond max_stale_s: neither memory nor the file may answer. */
    ovha_clock_set_skew_ms(120000);
    assert_false(tt_one(f, "t5-stale", NULL, NULL, &r));
    assert_false(r.g.d.allow);
    assert_string_equal(r.g.source, "fallback");
    tt_assert_contains(r.g.d.reason, "no answer within max staleness");
    tt_assert_contains(r.g.d.reason, "upstream HTTP 500");
    tt_stats(f, &st);
    assert_int_equal(st.fallback_denied, 1);
    assert_int_equal(st.fallback_memory, 1);
    assert_int_equal(st.fallback_file, 0);
    assert_int_equal(st.upstream_failures, 2);
    tt_mode("normal", 0, 0);

    /* The upstream is back: a fresh answer replaces the stale one. */
    ovha_clock_set_skew_ms(2000);
    assert_false(tt_one(f, "t5-stale", NULL, NULL, &r));
    tt_assert_allow(&r);
    assert_string_equal(r.g.source, "upstream");
    assert_true(tt_one(f, "t5-stale", NULL, NULL, &r));
    assert_string_equal(r.g.source, "memory");
    ovha_clock_set_skew_ms(0);
    tt_fix_done(f);
}

/* ---- 6. restart: the file answers ------------------------------------- */

/* Rows under key in the SQLite file (read from the test's own
 * connection: WAL lets it read while the tiers write). */
static int tt_file_rows(const char *file, const char *key)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int n = -1;

    if (sqlite3_open_v2(file, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT count(*) FROM entries WHERE key = ?1",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) {
            n = sqlite3_column_int(st, 0);
        }
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void test_tiers_restart_file(void **state)
{
    struct tt_fix *f = tt_fix_alloc();
    struct tt_res r;
    struct node_tiers_stats st;
    char file[128];

    (void)state;
    tt_fix_init(f, 0, "", NULL);
    assert_false(tt_one(f, "t6-file", NULL, NULL, &r));
    tt_assert_allow(&r);
    assert_string_equal(r.g.source, "upstream");
    ovha_strlcpy(file, f->file, sizeof(file));
    /* Until the answer is in the file (see test_tiers_close_keeps_writes
     * for closing before that). */
    for (int i = 0; i < 1000 && tt_file_rows(file, "cn:t6-file") != 1; i++) {
        tt_run_for(f, 5);
    }
    assert_int_equal(tt_file_rows(file, "cn:t6-file"), 1);
    tt_fix_done(f);

    /* A new process, so to speak: empty memory, the upstream down (a
     * closed port). */
    tt_fix_init(f, 1, "", file);
    assert_false(tt_one(f, "t6-file", NULL, NULL, &r));
    tt_assert_allow(&r);
    assert_string_equal(r.g.source, "fallback");
    assert_string_equal(r.g.d.reason, "from file");
    assert_int_equal(r.g.d.nroutes, 1);
    assert_string_equal(r.g.d.routes[0].addr, "100.64.30.0");
    tt_stats(f, &st);
    assert_int_equal(st.fallback_file, 1);
    assert_int_equal(st.fallback_memory, 0);
    assert_int_equal(st.upstream_failures, 1);
    /* Not in the file: deny, naming the cause. */
    assert_false(tt_one(f, "t6-other", NULL, NULL, &r));
    assert_false(r.g.d.allow);
    tt_assert_contains(r.g.d.reason, "upstream unreachable");
    tt_assert_contains(r.g.d.reason, "no answer within max staleness");
    tt_fix_done(f);
}

/* An answer received before node_tiers_close is in the file after it
 * (a restart right after a decision must still find it). Right after
 * node_tiers_new the file's open job may still run, so the answer's write
 * is queued behind it when close comes. Several rounds, each a fresh
 * tiers and file. */
#define TT_FLUSH_ROUNDS 5

static void test_tiers_close_keeps_writes(void **state)
{
    struct tt_fix *f = tt_fix_alloc();
    struct tt_res r;
    int lost = 0;

    (void)state;
    for (int i = 0; i < TT_FLUSH_ROUNDS; i++) {
        tt_fix_init(f, 0, "", NULL);
        assert_false(tt_one(f, "t6-flush", NULL, NULL, &r));
        tt_assert_allow(&r);
        tt_fix_done(f);
        if (tt_file_rows(f->file, "cn:t6-flush") != 1) {
            lost++;
        }
    }
    if (lost > 0) {
        fail_msg("%d of %d answers missing from the file after close", lost,
                 TT_FLUSH_ROUNDS);
    }
}

/* ---- 7. ttl_s 0 is not cached ----------------------------------------- */

static void test_tiers_ttl_zero(void **state)
{
    struct tt_fix *f = tt_fix_alloc();
    struct tt_res r;
    struct node_tiers_stats st;

    (void)state;
    tt_fix_init(f, 0, "", NULL);
    assert_false(tt_one(f, "t7-nottl", NULL, NULL, &r));
    tt_assert_allow(&r);
    assert_string_equal(r.g.source, "upstream");
    assert_false(tt_one(f, "t7-nottl", NULL, NULL, &r));
    tt_assert_allow(&r);
    assert_string_equal(r.g.source, "upstream");
    assert_int_equal(tt_by_cn("t7-nottl"), 2);
    tt_stats(f, &st);
    assert_int_equal(st.hits_memory, 0);
    assert_int_equal(st.upstream_requests, 2);
    assert_int_equal(st.memory_entries, 0);
    tt_fix_done(f);
}

/* ---- 8. malformed answers and the breaker ----------------------------- */

static void test_tiers_malformed_breaker(void **state)
{
    struct tt_fix *f = tt_fix_alloc();
    struct tt_res r;
    struct node_tiers_stats st;

    (void)state;
    tt_fix_init(f, 0, "breaker_failures: 3", NULL);
    assert_false(tt_one(f, "t8-prime", NULL, NULL, &r));
    tt_assert_allow(&r);
    ovha_clock_set_skew_ms(5000); /* stale, not too stale */

    /* A malformed answer: the stale entry answers. */
    tt_mode("garbage", 0, 1);
    assert_false(tt_one(f, "t8-prime", NULL, NULL, &r));
    tt_assert_allow(&r);
    assert_string_equal(r.g.source, "fallback");
    assert_string_equal(r.g.d.reason, "primed");
    tt_stats(f, &st);
    assert_int_equal(st.malformed, 1);
    assert_int_equal(st.breaker_state, 0);

    /* Nothing to fall back to: deny naming the cause. */
    tt_mode("wrongtypes", 0, 1);
    assert_false(tt_one(f, "t8-bad", NULL, NULL, &r));
    assert_false(r.g.d.allow);
    tt_assert_contains(r.g.d.reason, "upstream answer malformed");
    tt_stats(f, &st);
    assert_int_equal(st.malformed, 2);
    assert_int_equal(st.breaker_state, 0);
    tt_mode("garbage", 0, 1);
    assert_false(tt_one(f, "t8-bad", NULL, NULL, &r));
    assert_false(r.g.d.allow);
    tt_assert_contains(r.g.d.reason, "upstream answer malformed");
    tt_stats(f, &st);
    assert_int_equal(st.malformed, 3);
    assert_int_equal(st.upstream_failures, 3);
    assert_int_equal(st.breaker_state, 1);
    assert_int_equal(st.breaker_opens, 1);
    assert_int_equal(tt_requests(), 4);

    /* Open: the next lookup does not reach the server. */
    assert_false(tt_one(f, "t8-bad", NULL, NULL, &r));
    assert_false(r.g.d.allow);
    tt_assert_contains(r.g.d.reason, "circuit open");
    assert_int_equal(tt_requests(), 4);
    tt_stats(f, &st);
    assert_int_equal(st.malformed, 3);
    ovha_clock_set_skew_ms(0);
    tt_fix_done(f);
}

/* ---- 9. the deadline -------------------------------------------------- */

static void test_tiers_deadline(void **state)
{
    struct tt_fix *f = tt_fix_alloc();
    struct tt_res r;
    struct node_tiers_stats st;
    uint64_t t0, took;

    (void)state;
    tt_fix_init(f, 0, "timeout_ms: 1000, deadline_ms: 300", NULL);
    tt_mode("slow", 2000, 1);
    /* The lookup runs outside a loop callback here: let the deadline
     * timer start from the loop's time now, not from before the control
     * request. */
    uv_update_time(&f->loop);
    t0 = ovha_now_mono_ms();
    assert_false(tt_one(f, "t9-slow", NULL, NULL, &r));
    took = r.at_ms - t0;
    if (took < 280 || took > 500) {
        fail_msg("answered after %llu ms, deadline 300 ms",
                 (unsigned long long)took);
    }
    assert_false(r.g.d.allow);
    tt_assert_contains(r.g.d.reason, "upstream deadline");
    tt_stats(f, &st);
    assert_int_equal(st.deadline, 1);
    assert_int_equal(st.upstream_answers, 0);
    tt_fix_done(f);
}

/* ---- 10. cancel ------------------------------------------------------- */

static void test_tiers_cancel(void **state)
{
    struct tt_fix *f = tt_fix_alloc();
    struct tt_res r, rs[3];
    struct node_tiers_stats st;
    void *h = NULL, *hs[3];
    int n = 0;

    (void)state;
    tt_fix_init(f, 0, "", NULL);
    memset(&r, 0, sizeof(r));
    assert_int_equal(tt_lookup(f, "t10-cancel", NULL, NULL, &r, &h), 0);
    assert_non_null(h);
    f->rules.ops->cancel(f->rules.impl, h);
    tt_wait_answers(f, 1, 10000);
    tt_run_for(f, 20);
    assert_int_equal(r.fired, 0);
    /* The flight filled the cache anyway. */
    assert_true(tt_one(f, "t10-cancel", NULL, NULL, &r));
    assert_string_equal(r.g.source, "memory");
    assert_string_equal(r.g.d.reason, "kept");

    /* Three waiters on one flight; the middle one goes. */
    memset(rs, 0, sizeof(rs));
    for (int i = 0; i < 3; i++) {
        rs[i].counter = &n;
        assert_int_equal(tt_lookup(f, "t10-many", NULL, NULL, &rs[i], &hs[i]),
                         0);
        assert_non_null(hs[i]);
    }
    f->rules.ops->cancel(f->rules.impl, hs[1]);
    tt_wait(f, &n, 2, 10000);
    tt_run_for(f, 20);
    assert_int_equal(rs[0].fired, 1);
    assert_int_equal(rs[1].fired, 0);
    assert_int_equal(rs[2].fired, 1);
    assert_true(rs[0].g.d.allow);
    assert_true(rs[2].g.d.allow);
    tt_stats(f, &st);
    assert_int_equal(st.upstream_requests, 2);
    assert_int_equal(tt_by_cn("t10-many"), 1);
    tt_fix_done(f);
}

/* ---- 11. close with lookups pending ------------------------------------ */

/* A waiter that asks again from its callback, as a connection retrying
 * would: during close that lookup is refused at once. */
struct tt_again {
    struct tt_res r;
    struct tt_fix *f;
    struct tt_res again;
    int rv;
};

static void tt_again_cb(const struct node_grant *g, void *data)
{
    struct tt_again *a = data;

    tt_cb(g, &a->r);
    a->rv = tt_lookup(a->f, "t11-a", NULL, NULL, &a->again, NULL);
}

static void test_tiers_close_pending(void **state)
{
    struct tt_again a;

    struct tt_fix *f = tt_fix_alloc();
    struct tt_res rs[4];
    const char *cns[4] = { "t11-a", "t11-a", "t11-b", "t11-b" };
    const char *pws[4] = { NULL, NULL, NULL, TT_PW };

    (void)state;
    tt_fix_init(f, 0, "", NULL);
    tt_mode("slow", 1500, 3);
    memset(rs, 0, sizeof(rs));
    for (int i = 0; i < 4; i++) {
        assert_int_equal(tt_lookup(f, cns[i], NULL, pws[i], &rs[i], NULL), 0);
    }
    memset(&a, 0, sizeof(a));
    a.f = f;
    {
        struct node_decision_req req = { .cn = "t11-b",
                                         .username = "",
                                         .real_ip = "198.18.0.7",
                                         .real_port = "1" };
        void *h = NULL;

        assert_int_equal(
            f->rules.ops->lookup(f->rules.impl, &req, tt_again_cb, &a, &h), 0);
    }
    /* Let the requests reach the server. */
    tt_run_for(f, 100);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(rs[i].fired, 0);
    }
    node_tiers_close(f->t, tt_closed_cb, f);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(rs[i].fired, 1);
        assert_false(rs[i].g.d.allow);
        assert_string_equal(rs[i].g.d.reason, "shutting down");
    }
    assert_int_equal(a.r.fired, 1);
    assert_string_equal(a.r.g.d.reason, "shutting down");
    assert_int_equal(a.rv, 0);
    assert_int_equal(a.again.fired, 1);
    assert_false(a.again.g.d.allow);
    assert_string_equal(a.again.g.d.reason, "shutting down");
    f->t = NULL;
    tt_fix_done(f); /* the close callback, then no handle left */
    for (int i = 0; i < 4; i++) {
        assert_int_equal(rs[i].fired, 1);
    }
}

/* Close while a flight waits for the SQLite file (the upstream is down,
 * memory has nothing): the waiter is answered once, the file's late
 * callback releases the flight, nothing leaks. */
static void test_tiers_close_during_file(void **state)
{
    struct tt_fix *f = tt_fix_alloc();
    struct tt_res r;
    struct node_tiers_stats st;

    (void)state;
    tt_fix_init(f, 1, "", NULL);
    memset(&r, 0, sizeof(r));
    assert_int_equal(tt_lookup(f, "t11-file", NULL, NULL, &r, NULL), 0);
    /* Until the refused connection moved the flight to the file stage. */
    f->expired = false;
    uv_timer_start(&f->guard, tt_guard_cb, 5000, 0);
    tt_stats(f, &st);
    while (st.upstream_failures < 1 && !f->expired) {
        uv_run(&f->loop, UV_RUN_ONCE);
        tt_stats(f, &st);
    }
    uv_timer_stop(&f->guard);
    assert_false(f->expired);
    /* The file's answer needs another loop turn: still pending. */
    assert_int_equal(r.fired, 0);
    node_tiers_close(f->t, tt_closed_cb, f);
    f->t = NULL;
    assert_int_equal(r.fired, 1);
    assert_string_equal(r.g.d.reason, "shutting down");
    tt_fix_done(f);
    assert_int_equal(r.fired, 1);
}

/* ---- 14. the memory LRU ----------------------------------------------- */

static void test_tiers_lru(void **state)
{
    struct tt_fix *f = tt_fix_alloc();
    struct tt_res r;
    struct node_tiers_stats st;

    (void)state;
    tt_cache_extra = "memory_entries: 2";
    tt_fix_init(f, 0, "", NULL);
    assert_false(tt_one(f, "t14-a", NULL, NULL, &r));
    assert_false(tt_one(f, "t14-b", NULL, NULL, &r));
    assert_false(tt_one(f, "t14-c", NULL, NULL, &r)); /* evicts a */
    tt_stats(f, &st);
    assert_int_equal(st.memory_entries, 2);
    assert_true(tt_one(f, "t14-b", NULL, NULL, &r)); /* b is recent now */
    assert_string_equal(r.g.source, "memory");
    assert_false(tt_one(f, "t14-a", NULL, NULL, &r)); /* evicts c */
    assert_string_equal(r.g.source, "upstream");
    assert_true(tt_one(f, "t14-b", NULL, NULL, &r));
    assert_false(tt_one(f, "t14-c", NULL, NULL, &r));
    assert_string_equal(r.g.source, "upstream");
    assert_int_equal(tt_by_cn("t14-a"), 2);
    assert_int_equal(tt_by_cn("t14-b"), 1);
    assert_int_equal(tt_by_cn("t14-c"), 2);
    tt_stats(f, &st);
    assert_int_equal(st.hits_memory, 2);
    assert_int_equal(st.memory_entries, 2);
    tt_fix_done(f);

    /* No memory tier at all: every lookup asks (the file still fills). */
    tt_cache_extra = "memory_entries: 0";
    tt_fix_init(f, 0, "", NULL);
    assert_false(tt_one(f, "t14-d", NULL, NULL, &r));
    assert_false(tt_one(f, "t14-d", NULL, NULL, &r));
    assert_string_equal(r.g.source, "upstream");
    assert_int_equal(tt_by_cn("t14-d"), 2);
    tt_stats(f, &st);
    assert_int_equal(st.memory_entries, 0);
    assert_int_equal(st.hits_memory, 0);
    tt_fix_done(f);
}

/* ---- 15. identities do not collide ---------------------------------- */

/* A CN may contain '|' (the contract allows any printable text): the
 * certificate "t15-x|user:y" without a username is not the certificate
 * "t15-x" with the username "y", and must not be answered from the
 * other's cache entry. */
static void test_tiers_identity_unambiguous(void **state)
{
    struct tt_fix *f = tt_fix_alloc();
    struct tt_res r;

    (void)state;
    tt_fix_init(f, 0, "", NULL);
    assert_false(tt_one(f, "t15-x", "y", NULL, &r));
    tt_assert_allow(&r);
    assert_string_equal(r.g.d.reason, "x as y");
    if (tt_one(f, "t15-x|user:y", NULL, NULL, &r)) {
        fail_msg(
            "CN \"t15-x|user:y\" (no username) was answered at once "
            "by %s from the entry of CN \"t15-x\" + username \"y\" "
            "(%s, \"%s\")",
            r.g.source, r.g.d.allow ? "allow" : "deny", r.g.d.reason);
    }
    assert_string_equal(r.g.source, "upstream");
    assert_false(r.g.d.allow);
    assert_string_equal(r.g.d.reason, "unknown client");
    assert_int_equal(tt_by_cn("t15-x|user:y"), 1);
    tt_fix_done(f);
}

/* ---- 12. a CN that is not UTF-8 --------------------------------------- */

static void test_tiers_bad_utf8(void **state)
{
    struct tt_fix *f = tt_fix_alloc();
    struct tt_res r;
    struct node_tiers_stats st;
    int n = 0;

    (void)state;
    tt_fix_init(f, 0, "", NULL);
    memset(&r, 0, sizeof(r));
    r.counter = &n;
    assert_int_equal(tt_lookup(f, "t12-\xff\xfe-bad", NULL, NULL, &r, NULL), 0);
    assert_int_equal(n, 1); /* answered inside the call */
    assert_false(r.g.d.allow);
    assert_string_equal(r.g.source, "refused");
    assert_true(r.g.d.reason[0] != '\0');
    /* An overlong encoding of '/', and a lone continuation byte. */
    assert_int_equal(tt_lookup(f, "t12-\xc0\xaf", NULL, NULL, &r, NULL), 0);
    assert_int_equal(n, 2);
    assert_false(r.g.d.allow);
    assert_int_equal(tt_lookup(f, "t12-\x80", NULL, NULL, &r, NULL), 0);
    assert_int_equal(n, 3);
    assert_false(r.g.d.allow);
    tt_run_for(f, 50);
    tt_stats(f, &st);
    assert_int_equal(st.upstream_requests, 0);
    assert_int_equal(tt_requests(), 0);
    /* A valid one still goes through. */
    assert_false(tt_one(f, "t12-ok", NULL, NULL, &r));
    tt_assert_allow(&r);
    assert_int_equal(tt_requests(), 1);
    tt_fix_done(f);
}

/* ---- 13. allocation failures ---------------------------------------- */

#define TT_ALLOC_N 60

/* node_tiers_new fails cleanly; then lookups where the n+1-th allocation
 * from the lookup to its answer fails: the lookup either returns -ENOMEM
 * and never calls back, or calls back exactly once (ASan checks the
 * rest). */
static void test_tiers_alloc_failures(void **state)
{
    struct tt_fix *f = tt_fix_alloc();
    struct tt_res *rs = calloc(TT_ALLOC_N, sizeof(*rs));
    struct tt_res r;
    int rv = -1, n_enomem = 0, n_fired = 0;
    long n;

    (void)state;
    assert_non_null(rs);
    for (n = 0; n < 200 && rv != 0; n++) {
        struct node_tiers *t = NULL;

        memset(f, 0, sizeof(*f));
        tt_cfg(f, 0, "", NULL);
        assert_int_equal(uv_loop_init(&f->loop), 0);
        uv_timer_init(&f->loop, &f->guard);
        f->guard.data = f;
        ovha_alloc_fail_after(n);
        rv = node_tiers_new(&f->loop, f->cfg, &t);
        ovha_alloc_fail_after(-1);
        if (rv != 0) {
            assert_int_equal(rv, -ENOMEM);
            f->closed = true; /* nothing to close */
        } else {
            f->t = t;
        }
        tt_fix_done(f);
    }
    assert_int_equal(rv, 0);
    assert_true(n > 2);

    tt_fix_init(f, 0, "breaker_failures: 1000", NULL);
    assert_false(tt_one(f, "t13-stale", NULL, NULL, &r));
    tt_assert_allow(&r);
    /* Stale from now on, and the upstream fails: each lookup takes a
     * flight, an upstream request and the memory fallback. */
    ovha_clock_set_skew_ms(5000);
    tt_mode("error500", 0, 0);
    for (n = 0; n < TT_ALLOC_N; n++) {
        int cnt = 0;

        rs[n].counter = &cnt;
        ovha_alloc_fail_after(n);
        rv = tt_lookup(f, "t13-stale", NULL, NULL, &rs[n], NULL);
        if (rv == 0) {
            f->expired = false;
            uv_timer_start(&f->guard, tt_guard_cb, 5000, 0);
            while (cnt < 1 && !f->expired) {
                uv_run(&f->loop, UV_RUN_ONCE);
            }
            uv_timer_stop(&f->guard);
        }
        ovha_alloc_fail_after(-1);
        if (rv != 0) {
            assert_int_equal(rv, -ENOMEM);
            n_enomem++;
        } else {
            if (cnt != 1) {
                fail_msg("allocation %ld failing: no answer", n + 1);
            }
            n_fired++;
        }
        rs[n].counter = NULL;
    }
    /* Whatever is still due has run; nobody was answered twice or after
     * an error. */
    tt_run_for(f, 50);
    for (n = 0; n < TT_ALLOC_N; n++) {
        assert_true(rs[n].fired <= 1);
    }
    assert_true(n_enomem > 0);
    assert_true(n_fired > 0);
    /* The last ones had allocations enough: the stale answer. */
    assert_int_equal(rs[TT_ALLOC_N - 1].fired, 1);
    assert_true(rs[TT_ALLOC_N - 1].g.d.allow);
    assert_string_equal(rs[TT_ALLOC_N - 1].g.source, "fallback");
    assert_string_equal(rs[TT_ALLOC_N - 1].g.d.reason, "old");
    ovha_clock_set_skew_ms(0);
    tt_fix_done(f);
    free(rs);
}

int node_test_tiers(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_tiers_allow_then_memory,
                                  tt_test_teardown),
        cmocka_unit_test_teardown(test_tiers_deny, tt_test_teardown),
        cmocka_unit_test_teardown(test_tiers_single_flight, tt_test_teardown),
        cmocka_unit_test_teardown(test_tiers_passwords, tt_test_teardown),
        cmocka_unit_test_teardown(test_tiers_fallback_staleness,
                                  tt_test_teardown),
        cmocka_unit_test_teardown(test_tiers_restart_file, tt_test_teardown),
        cmocka_unit_test_teardown(test_tiers_close_keeps_writes,
                                  tt_test_teardown),
        cmocka_unit_test_teardown(test_tiers_ttl_zero, tt_test_teardown),
        cmocka_unit_test_teardown(test_tiers_malformed_breaker,
                                  tt_test_teardown),
        cmocka_unit_test_teardown(test_tiers_deadline, tt_test_teardown),
        cmocka_unit_test_teardown(test_tiers_cancel, tt_test_teardown),
        cmocka_unit_test_teardown(test_tiers_close_pending, tt_test_teardown),
        cmocka_unit_test_teardown(test_tiers_close_during_file,
                                  tt_test_teardown),
        cmocka_unit_test_teardown(test_tiers_lru, tt_test_teardown),
        cmocka_unit_test_teardown(test_tiers_bad_utf8, tt_test_teardown),
        cmocka_unit_test_teardown(test_tiers_identity_unambiguous,
                                  tt_test_teardown),
        cmocka_unit_test_teardown(test_tiers_alloc_failures, tt_test_teardown),
    };

    return cmocka_run_group_tests_name("node_tiers", tests, tt_group_setup,
                                       tt_group_teardown);
}
