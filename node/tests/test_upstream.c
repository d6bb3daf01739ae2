/* node/upstream against a real HTTPS server: a test CA and server
 * certificate made with the openssl CLI, and
 * cluster-tests/tools/upstream-test-server.py on 127.0.0.1 (a random port),
 * whose behaviour is chosen by the request path. */
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "base/base.h"
#include "node/upstream.h"
#include "node_tests.h"

int node_test_upstream(void);

#ifndef OVHA_TEST_DIR
#define OVHA_TEST_DIR "node/tests"
#endif
#define UT_SERVER \
    OVHA_TEST_DIR "/../../cluster-tests/tools/upstream-test-server.py"

static char ut_dir[64];
static pid_t ut_pid = -1;
static int ut_port;
static char ut_ca[128], ut_other_ca[128];

/* ---- one request's outcome ------------------------------------------- */

struct ut_res {
    int *counter;
    int fired;
    int status;
    long code;
    char body[512];
    size_t len;
    char err[256];
    uint64_t at_ms;
};

static void ut_cb(void *data,
                  int status,
                  long code,
                  const char *body,
                  size_t len,
                  const char *err)
{
    struct ut_res *r = data;

    r->fired++;
    r->status = status;
    r->code = code;
    r->len = len;
    r->body[0] = '\0';
    if (body != NULL) {
        ovha_strlcpy(r->body, body, sizeof(r->body));
    }
    assert_non_null(err);
    ovha_strlcpy(r->err, err, sizeof(r->err));
    r->at_ms = ovha_now_mono_ms();
    if (r->counter != NULL) {
        (*r->counter)++;
    }
}

/* ---- a loop, a guard timer and an upstream --------------------------- */

struct ut_fix {
    uv_loop_t loop;
    uv_timer_t guard;
    bool expired;
    bool closed;
    struct node_upstream *u;
};

static void ut_guard_cb(uv_timer_t *t)
{
    struct ut_fix *f = t->data;

    f->expired = true;
}

static void ut_cfg(struct node_upstream_config *cfg,
                   char *url,
                   size_t n,
                   const char *path)
{
    snprintf(url, n, "https://127.0.0.1:%d%s", ut_port, path);
    memset(cfg, 0, sizeof(*cfg));
    cfg->url = url;
    cfg->ca_file = ut_ca;
    cfg->connect_timeout_ms = 1000;
    cfg->total_timeout_ms = 3000;
    cfg->backoff_ms = 5;
    cfg->max_concurrency = 4;
    cfg->breaker_failures = 100;
    cfg->breaker_open_ms = 200;
}

static void ut_fix_init(struct ut_fix *f, const struct node_upstream_config *c)
{
    memset(f, 0, sizeof(*f));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->guard);
    f->guard.data = f;
    assert_int_equal(node_upstream_new(&f->loop, c, &f->u), 0);
}

/* Runs the loop until *counter reaches want; fails after guard_ms. */
static void ut_wait(struct ut_fix *f, int *counter, int want, uint64_t guard_ms)
{
    f->expired = false;
    uv_timer_start(&f->guard, ut_guard_cb, guard_ms, 0);
    while (*counter < want && !f->expired) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&f->guard);
    assert_false(f->expired);
}

/* Runs the loop for ms (lets time pass without sleeping the thread). */
static void ut_run_for(struct ut_fix *f, uint64_t ms)
{
    f->expired = false;
    uv_timer_start(&f->guard, ut_guard_cb, ms, 0);
    while (!f->expired) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
}

static void ut_closed_cb(void *data)
{
    struct ut_fix *f = data;

    f->closed = true;
}

static void ut_fix_done(struct ut_fix *f)
{
    int closed = 0;

    if (f->u != NULL) {
        node_upstream_close(f->u, ut_closed_cb, f);
        f->expired = false;
        uv_timer_start(&f->guard, ut_guard_cb, 3000, 0);
        while (!f->closed && !f->expired) {
            uv_run(&f->loop, UV_RUN_ONCE);
        }
        closed = f->closed;
        assert_true(closed);
    }
    uv_close((uv_handle_t *)&f->guard, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* One request through a fresh upstream; returns its outcome. */
static void ut_one(const struct node_upstream_config *cfg,
                   const char *json,
                   struct ut_res *res,
                   struct node_upstream_stats *st)
{
    struct ut_fix f;
    int n = 0;

    memset(res, 0, sizeof(*res));
    res->counter = &n;
    ut_fix_init(&f, cfg);
    assert_int_equal(node_upstream_post_json(f.u, json, ut_cb, res, NULL), 0);
    ut_wait(&f, &n, 1, 10000);
    assert_int_equal(res->fired, 1);
    if (st != NULL) {
        node_upstream_get_stats(f.u, st);
    }
    ut_fix_done(&f);
}

/* Control endpoint of the server; returns the parsed JSON answer. */
static json_t *ut_control(const char *path)
{
    struct node_upstream_config cfg;
    struct ut_res res;
    char url[128];
    json_t *j;

    ut_cfg(&cfg, url, sizeof(url), path);
    ut_one(&cfg, "{}", &res, NULL);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.code, 200);
    j = json_loads(res.body, 0, NULL);
    assert_non_null(j);
    return j;
}

static long ut_hits(const char *path)
{
    json_t *j = ut_control("/control/stats");
    json_t *v = json_object_get(json_object_get(j, "hits"), path);
    long n = v != NULL ? (long)json_integer_value(v) : 0;

    json_decref(j);
    return n;
}

static void ut_reset(void)
{
    json_decref(ut_control("/control/reset"));
}

/* ---- server lifecycle ------------------------------------------------ */

static int ut_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int ut_sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    return system(cmd);
}

static int ut_make_pki(void)
{
    const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

    return ut_sh(
        "set -e; cd %s; exec >/dev/null 2>&1;"
        "openssl req -x509 %s -keyout ca.key -out ca.crt -days 2"
        " -subj /CN=ovha-test-ca;"
        "openssl req -x509 %s -keyout other.key -out other.crt -days 2"
        " -subj /CN=ovha-other-ca;"
        "openssl req %s -keyout srv.key -out srv.csr -subj /CN=127.0.0.1;"
        "printf 'subjectAltName=IP:127.0.0.1\\n' > srv.ext;"
        "openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key"
        " -CAcreateserial -out srv.crt -days 2 -extfile srv.ext;"
        "openssl req %s -keyout cli.key -out cli.csr -subj /CN=ovha-node-1;"
        "openssl x509 -req -in cli.csr -CA ca.crt -CAkey ca.key"
        " -CAcreateserial -out cli.crt -days 2",
        ut_dir, ec, ec, ec, ec);
}

static int ut_start_server(void)
{
    char cert[128], key[128], line[64];

    snprintf(cert, sizeof(cert), "%s/srv.crt", ut_dir);
    snprintf(key, sizeof(key), "%s/srv.key", ut_dir);
    char *const argv[] = { "python3", UT_SERVER,     "--cert", cert, "--key",
                           key,       "--client-ca", ut_ca,    NULL };
    ut_pid = node_test_spawn_line(argv, line, sizeof(line));
    if (ut_pid < 0 || sscanf(line, "PORT %d", &ut_port) != 1 || ut_port <= 0) {
        return -1;
    }
    return 0;
}

static int ut_group_setup(void **state)
{
    (void)state;
    snprintf(ut_dir, sizeof(ut_dir), "/tmp/ovha-upstream-XXXXXX");
    if (mkdtemp(ut_dir) == NULL) {
        return -1;
    }
    snprintf(ut_ca, sizeof(ut_ca), "%s/ca.crt", ut_dir);
    snprintf(ut_other_ca, sizeof(ut_other_ca), "%s/other.crt", ut_dir);
    if (ut_make_pki() != 0) {
        fprintf(stderr, "upstream tests: openssl failed\n");
        return -1;
    }
    if (ut_start_server() < 0) {
        fprintf(stderr, "upstream tests: server did not start\n");
        return -1;
    }
    return 0;
}

static int ut_group_teardown(void **state)
{
    (void)state;
    if (ut_pid > 0) {
        kill(ut_pid, SIGTERM);
        waitpid(ut_pid, NULL, 0);
        ut_pid = -1;
    }
    if (ut_dir[0] != '\0') {
        ut_sh("rm -rf '%s'", ut_dir);
    }
    return 0;
}

/* ---- tests ----------------------------------------------------------- */

static void test_upstream_ok(void **state)
{
    struct node_upstream_config cfg;
    struct node_upstream_stats st;
    struct ut_res res;
    char url[128];

    (void)state;
    ut_cfg(&cfg, url, sizeof(url), "/ok");
    ut_one(&cfg, "{\"cn\":\"alice\"}", &res, &st);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.code, 200);
    assert_non_null(strstr(res.body, "\"len\": 14"));
    assert_int_equal(res.len, strlen(res.body));
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.ok, 1);
    assert_int_equal(st.failures, 0);
    assert_int_equal(st.latency_count, 1);
    assert_int_equal(st.breaker_state, 0);
}

static void test_upstream_https_only(void **state)
{
    struct node_upstream_config cfg;
    struct node_upstream *u = NULL;
    uv_loop_t loop;
    char url[128];

    (void)state;
    ut_cfg(&cfg, url, sizeof(url), "/ok");
    cfg.url = "http://127.0.0.1:1/ok";
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(node_upstream_new(&loop, &cfg, &u), OVHA_ECONFIG);
    assert_null(u);
    cfg.url = url;
    cfg.ca_file = NULL;
    assert_int_equal(node_upstream_new(&loop, &cfg, &u), OVHA_ECONFIG);
    assert_null(u);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_upstream_4xx_not_retried(void **state)
{
    struct node_upstream_config cfg;
    struct node_upstream_stats st;
    struct ut_res res;
    char url[128];

    (void)state;
    ut_reset();
    ut_cfg(&cfg, url, sizeof(url), "/404");
    cfg.max_retries = 3;
    ut_one(&cfg, "{}", &res, &st);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.code, 404);
    assert_int_equal(st.retries, 0);
    assert_int_equal(ut_hits("/404"), 1);
}

static void test_upstream_500_retried(void **state)
{
    struct node_upstream_config cfg;
    struct node_upstream_stats st;
    struct ut_res res;
    char url[128];

    (void)state;
    ut_reset();
    ut_cfg(&cfg, url, sizeof(url), "/500");
    cfg.max_retries = 2;
    ut_one(&cfg, "{}", &res, &st);
    assert_int_equal(res.status, -EPROTO);
    assert_int_equal(res.code, 500);
    assert_non_null(strstr(res.body, "boom"));
    assert_string_equal(res.err, "http 500");
    assert_int_equal(st.retries, 2);
    assert_int_equal(st.failures, 1);
    assert_int_equal(ut_hits("/500"), 3);
}

static void test_upstream_timeout(void **state)
{
    struct node_upstream_config cfg;
    struct node_upstream_stats st;
    struct ut_res res;
    char url[128];
    uint64_t t0 = ovha_now_mono_ms(), took;

    (void)state;
    ut_cfg(&cfg, url, sizeof(url), "/slow");
    cfg.total_timeout_ms = 300;
    ut_one(&cfg, "{}", &res, &st);
    took = res.at_ms - t0;
    assert_int_equal(res.status, OVHA_ETIMEDOUT);
    assert_true(took >= 280);
    assert_true(took < 1500);
    assert_int_equal(st.timeouts, 1);
    assert_int_equal(st.failures, 1);
}

static void test_upstream_oversize(void **state)
{
    struct node_upstream_config cfg;
    struct ut_res res;
    char url[128];

    (void)state;
    ut_cfg(&cfg, url, sizeof(url), "/big");
    cfg.max_body = 1000;
    cfg.max_retries = 2;
    ut_one(&cfg, "{}", &res, NULL);
    assert_int_equal(res.status, OVHA_ELIMIT);
    assert_string_equal(res.err, "oversize");
    assert_null(strstr(res.body, "xxx"));

    /* The same body fits a larger limit. */
    cfg.max_body = 300 * 1024;
    ut_one(&cfg, "{}", &res, NULL);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.len, 256 * 1024);
}

static void test_upstream_wrong_ca(void **state)
{
    struct node_upstream_config cfg;
    struct node_upstream_stats st;
    struct ut_res res;
    char url[128];

    (void)state;
    ut_cfg(&cfg, url, sizeof(url), "/ok");
    cfg.ca_file = ut_other_ca;
    cfg.max_retries = 2;
    ut_one(&cfg, "{}", &res, &st);
    assert_int_equal(res.status, -EPROTO);
    /* Verification failures are deterministic: not retried. */
    assert_int_equal(st.retries, 0);
}

static void test_upstream_garbage_and_close(void **state)
{
    struct node_upstream_config cfg;
    struct node_upstream_stats st;
    struct ut_res res;
    char url[128];

    (void)state;
    ut_cfg(&cfg, url, sizeof(url), "/garbage");
    ut_one(&cfg, "{}", &res, NULL);
    assert_int_equal(res.status, -EPROTO);

    ut_reset();
    ut_cfg(&cfg, url, sizeof(url), "/close");
    cfg.max_retries = 1;
    ut_one(&cfg, "{}", &res, &st);
    assert_int_equal(res.status, -EPROTO);
    assert_int_equal(st.retries, 1);
    assert_int_equal(ut_hits("/close"), 2);
}

static void test_upstream_refused(void **state)
{
    struct node_upstream_config cfg;
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    struct ut_res res;
    char url[128];
    int fd, port;

    (void)state;
    /* A port nothing listens on: bind one, note it, close it. */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    port = ntohs(sa.sin_port);
    close(fd);
    ut_cfg(&cfg, url, sizeof(url), "/ok");
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/ok", port);
    ut_one(&cfg, "{}", &res, NULL);
    assert_int_equal(res.status, -ECONNREFUSED);
}

static void ut_post(struct ut_fix *f, struct ut_res *r, int *counter)
{
    memset(r, 0, sizeof(*r));
    r->counter = counter;
    assert_int_equal(node_upstream_post_json(f->u, "{}", ut_cb, r, NULL), 0);
}

static void test_upstream_breaker(void **state)
{
    struct node_upstream_config cfg;
    struct node_upstream_stats st;
    struct ut_res r[3];
    struct ut_fix f;
    char url[128];
    int n = 0, i;

    (void)state;
    json_decref(ut_control("/control/mode/500"));
    ut_reset();
    ut_cfg(&cfg, url, sizeof(url), "/dyn");
    cfg.breaker_failures = 3;
    cfg.breaker_open_ms = 300;
    ut_fix_init(&f, &cfg);

    /* Three failures in a row open the breaker. */
    for (i = 0; i < 3; i++) {
        ut_post(&f, &r[0], &n);
        ut_wait(&f, &n, i + 1, 5000);
        assert_int_equal(r[0].status, -EPROTO);
    }
    node_upstream_get_stats(f.u, &st);
    assert_int_equal(st.breaker_state, 1);
    assert_int_equal(st.breaker_opens, 1);

    /* Open: fail fast, nothing sent. */
    ut_post(&f, &r[0], &n);
    ut_wait(&f, &n, 4, 5000);
    assert_int_equal(r[0].status, -EAGAIN);
    assert_int_equal(ut_hits("/dyn"), 3);

    /* Half-open: one probe goes (and fails), the other fails fast. */
    ut_run_for(&f, 350);
    node_upstream_get_stats(f.u, &st);
    assert_int_equal(st.breaker_state, 2);
    ut_post(&f, &r[0], &n);
    ut_post(&f, &r[1], &n);
    ut_wait(&f, &n, 6, 5000);
    assert_int_equal(r[0].status, -EPROTO);
    assert_int_equal(r[0].code, 500);
    assert_int_equal(r[1].status, -EAGAIN);
    assert_int_equal(ut_hits("/dyn"), 4);
    node_upstream_get_stats(f.u, &st);
    assert_int_equal(st.breaker_state, 1);
    assert_int_equal(st.breaker_opens, 2);

    /* The upstream recovers: the next probe closes the breaker. */
    json_decref(ut_control("/control/mode/ok"));
    ut_run_for(&f, 350);
    ut_post(&f, &r[0], &n);
    ut_wait(&f, &n, 7, 5000);
    assert_int_equal(r[0].status, 0);
    assert_int_equal(r[0].code, 200);
    node_upstream_get_stats(f.u, &st);
    assert_int_equal(st.breaker_state, 0);
    ut_post(&f, &r[0], &n);
    ut_post(&f, &r[1], &n);
    ut_wait(&f, &n, 9, 5000);
    assert_int_equal(r[0].status, 0);
    assert_int_equal(r[1].status, 0);
    ut_fix_done(&f);
}

static void test_upstream_concurrency(void **state)
{
    struct node_upstream_config cfg;
    struct node_upstream_stats st;
    struct ut_res r[6];
    struct ut_fix f;
    char url[128];
    int n = 0, i;
    uint64_t t0;
    json_t *j;

    (void)state;
    ut_reset();
    ut_cfg(&cfg, url, sizeof(url), "/hold");
    cfg.max_concurrency = 2;
    ut_fix_init(&f, &cfg);
    t0 = ovha_now_mono_ms();
    for (i = 0; i < 6; i++) {
        ut_post(&f, &r[i], &n);
    }
    ut_wait(&f, &n, 6, 10000);
    for (i = 0; i < 6; i++) {
        assert_int_equal(r[i].status, 0);
    }
    /* FIFO: answers arrive in submission order, pairwise. */
    for (i = 2; i < 6; i++) {
        assert_true(r[i].at_ms >= r[i - 2].at_ms);
    }
    /* Three rounds of 300 ms. */
    assert_true(ovha_now_mono_ms() - t0 >= 850);
    node_upstream_get_stats(f.u, &st);
    assert_int_equal(st.ok, 6);
    ut_fix_done(&f);
    j = ut_control("/control/stats");
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(j, "max_inflight"), "/hold")),
                     2);
    json_decref(j);
}

static void test_upstream_close_inflight(void **state)
{
    struct node_upstream_config cfg;
    struct ut_res r[3];
    struct ut_fix f;
    char url[128];
    int n = 0, i;

    (void)state;
    ut_cfg(&cfg, url, sizeof(url), "/slow");
    cfg.max_concurrency = 2; /* one running pair, one queued */
    ut_fix_init(&f, &cfg);
    for (i = 0; i < 3; i++) {
        ut_post(&f, &r[i], &n);
    }
    ut_run_for(&f, 200);
    assert_int_equal(n, 0);
    /* Close answers every pending request, synchronously. */
    node_upstream_close(f.u, ut_closed_cb, &f);
    assert_int_equal(n, 3);
    for (i = 0; i < 3; i++) {
        assert_int_equal(r[i].fired, 1);
        assert_int_equal(r[i].status, OVHA_ECLOSED);
    }
    assert_int_equal(node_upstream_post_json(f.u, "{}", ut_cb, &r[0], NULL),
                     OVHA_ECLOSED);
    f.u = NULL;
    f.expired = false;
    uv_timer_start(&f.guard, ut_guard_cb, 3000, 0);
    while (!f.closed && !f.expired) {
        uv_run(&f.loop, UV_RUN_ONCE);
    }
    assert_true(f.closed);
    ut_fix_done(&f);
}

static void test_upstream_cancel(void **state)
{
    struct node_upstream_config cfg;
    struct node_upstream_stats st;
    struct ut_res slow, second;
    struct ut_fix f;
    char url[128];
    int n = 0;
    uint64_t id = 0, t0 = ovha_now_mono_ms();

    (void)state;
    ut_cfg(&cfg, url, sizeof(url), "/slow");
    cfg.max_concurrency = 1;
    cfg.total_timeout_ms = 400;
    ut_fix_init(&f, &cfg);
    memset(&slow, 0, sizeof(slow));
    slow.counter = &n;
    assert_int_equal(node_upstream_post_json(f.u, "{}", ut_cb, &slow, &id), 0);
    ut_run_for(&f, 100); /* the first one is in flight */
    node_upstream_cancel(f.u, id);
    node_upstream_cancel(f.u, id + 1000); /* unknown: ignored */
    ut_post(&f, &second, &n);
    ut_wait(&f, &n, 1, 2000);
    assert_int_equal(second.fired, 1);
    assert_int_equal(second.status, OVHA_ETIMEDOUT);
    /* The freed slot went to the second request at once: it timed out
     * 400 ms after the cancel, not after the first one's timeout too. */
    assert_true(second.at_ms - t0 < 100 + 400 + 250);
    /* Past the first one's own timeout: its callback never fires. */
    ut_run_for(&f, 300);
    assert_int_equal(slow.fired, 0);
    node_upstream_get_stats(f.u, &st);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.failures, 1);
    ut_fix_done(&f);
    assert_int_equal(slow.fired, 0);
}

/* Every allocation failure in node_upstream_new is reported and leaks
 * nothing (checked under ASan); so is one in post_json. */
static void test_upstream_alloc_failures(void **state)
{
    struct node_upstream_config cfg;
    struct ut_fix f;
    struct ut_res r;
    char url[128];
    long n;
    int rc = -1;

    (void)state;
    ut_cfg(&cfg, url, sizeof(url), "/ok");
    cfg.client_cert = "/nonexistent.crt";
    cfg.client_key = "/nonexistent.key";
    for (n = 0; n < 20 && rc != 0; n++) {
        memset(&f, 0, sizeof(f));
        assert_int_equal(uv_loop_init(&f.loop), 0);
        uv_timer_init(&f.loop, &f.guard);
        ovha_alloc_fail_after(n);
        rc = node_upstream_new(&f.loop, &cfg, &f.u);
        ovha_alloc_fail_after(-1);
        if (rc != 0) {
            assert_int_equal(rc, -ENOMEM);
            assert_null(f.u);
        }
        ut_fix_done(&f);
    }
    assert_int_equal(rc, 0);
    assert_true(n > 1);

    ut_cfg(&cfg, url, sizeof(url), "/ok");
    ut_fix_init(&f, &cfg);
    ovha_alloc_fail_after(0);
    rc = node_upstream_post_json(f.u, "{}", ut_cb, &r, NULL);
    ovha_alloc_fail_after(-1);
    assert_int_equal(rc, -ENOMEM);
    ut_fix_done(&f);
}

struct ut_closer {
    struct ut_fix *f;
    struct ut_res res;
    int n;
};

static void ut_close_in_cb(void *data,
                           int status,
                           long code,
                           const char *body,
                           size_t len,
                           const char *err)
{
    struct ut_closer *c = data;

    ut_cb(&c->res, status, code, body, len, err);
    node_upstream_close(c->f->u, ut_closed_cb, c->f);
}

/* A callback may close the upstream: the queued request is answered with
 * OVHA_ECLOSED and nothing is used after free (ASan). */
static void test_upstream_close_from_cb(void **state)
{
    struct node_upstream_config cfg;
    struct ut_closer c;
    struct ut_res second;
    struct ut_fix f;
    char url[128];

    (void)state;
    ut_cfg(&cfg, url, sizeof(url), "/hold");
    cfg.max_concurrency = 1;
    ut_fix_init(&f, &cfg);
    memset(&c, 0, sizeof(c));
    c.f = &f;
    c.res.counter = &c.n;
    assert_int_equal(
        node_upstream_post_json(f.u, "{}", ut_close_in_cb, &c, NULL), 0);
    ut_post(&f, &second, &c.n);
    ut_wait(&f, &c.n, 2, 5000);
    assert_int_equal(c.res.status, 0);
    assert_int_equal(second.fired, 1);
    assert_int_equal(second.status, OVHA_ECLOSED);
    f.expired = false;
    uv_timer_start(&f.guard, ut_guard_cb, 3000, 0);
    while (!f.closed && !f.expired) {
        uv_run(&f.loop, UV_RUN_ONCE);
    }
    assert_true(f.closed);
    f.u = NULL;
    ut_fix_done(&f);
}

/* The optional client certificate is presented (the server verifies it
 * against the test CA and echoes its CN); without one there is none. */
static void test_upstream_client_cert(void **state)
{
    struct node_upstream_config cfg;
    struct ut_res res;
    char url[128], cert[128], key[128];

    (void)state;
    snprintf(cert, sizeof(cert), "%s/cli.crt", ut_dir);
    snprintf(key, sizeof(key), "%s/cli.key", ut_dir);
    ut_cfg(&cfg, url, sizeof(url), "/whoami");
    ut_one(&cfg, "{}", &res, NULL);
    assert_int_equal(res.status, 0);
    assert_non_null(strstr(res.body, "\"cn\": null"));
    cfg.client_cert = cert;
    cfg.client_key = key;
    ut_one(&cfg, "{}", &res, NULL);
    assert_int_equal(res.status, 0);
    assert_non_null(strstr(res.body, "\"cn\": \"ovha-node-1\""));
}

int node_test_upstream(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upstream_ok),
        cmocka_unit_test(test_upstream_https_only),
        cmocka_unit_test(test_upstream_4xx_not_retried),
        cmocka_unit_test(test_upstream_500_retried),
        cmocka_unit_test(test_upstream_timeout),
        cmocka_unit_test(test_upstream_oversize),
        cmocka_unit_test(test_upstream_wrong_ca),
        cmocka_unit_test(test_upstream_garbage_and_close),
        cmocka_unit_test(test_upstream_refused),
        cmocka_unit_test(test_upstream_breaker),
        cmocka_unit_test(test_upstream_concurrency),
        cmocka_unit_test(test_upstream_close_inflight),
        cmocka_unit_test(test_upstream_cancel),
        cmocka_unit_test(test_upstream_alloc_failures),
        cmocka_unit_test(test_upstream_close_from_cb),
        cmocka_unit_test(test_upstream_client_cert),
    };

    return cmocka_run_group_tests_name("node_upstream", tests, ut_group_setup,
                                       ut_group_teardown);
}
