/* Tests for node/api_cluster: the handlers on a real HTTP server (unix
 * socket in a temp dir), called by libcurl from a second thread while the
 * loop runs here.
 *
 * - standalone (n->rft == NULL): every route answers 409;
 * - a one-node cluster over plain TCP on loopback (rft with no TLS files,
 *   bootstrap) and a real fsm: status shape, empty state queries, the
 *   audit head, bad bodies, join/remove of a spare, refused changes;
 * - a node that is not the leader: 503 with the leader fields;
 * - the HTTP server closing while a change waits for raft, then the
 *   runtime closing (the change callback must not touch the dead req).
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "base/base.h"
#include "node/node.h"
#include "node_tests.h"

struct node_tac_env {
    uv_loop_t loop;
    uv_timer_t tick; /* keeps UV_RUN_ONCE returning while a call runs */
    struct node n;
    char dir[64];
    char sock[128];
    char raft_dir[128];
    int port;
    bool http_closed, rft_closed;
};

/* One call on the client thread. */
struct node_tac_call {
    struct node_tac_env *env;
    const char *method, *path, *body;
    long status;
    struct ovha_buf answer;
    atomic_int done;
};

static size_t node_tac_write_cb(char *p, size_t size, size_t n, void *data)
{
    struct node_tac_call *c = data;
    ovha_buf_append(&c->answer, p, size * n);
    return size * n;
}

static void *node_tac_client(void *arg)
{
    struct node_tac_call *c = arg;
    CURL *curl = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    char url[256];

    snprintf(url, sizeof(url), "http://localhost%s", c->path);
    curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, c->env->sock);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, c->method);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, node_tac_write_cb);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, c);
    if (c->body != NULL) {
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, c->body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)strlen(c->body));
    }
    if (curl_easy_perform(curl) == CURLE_OK) {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &c->status);
    }
    curl_easy_cleanup(curl);
    curl_slist_free_all(hdrs);
    atomic_store(&c->done, 1);
    return NULL;
}

static void node_tac_tick_cb(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until *flag, at most ms. */
static bool node_tac_run_until(struct node_tac_env *e,
                               bool (*pred)(struct node_tac_env *, void *),
                               void *arg,
                               uint64_t ms)
{
    uint64_t end = ovha_now_mono_ms() + ms;
    while (!pred(e, arg)) {
        if (ovha_now_mono_ms() > end) {
            return false;
        }
        uv_run(&e->loop, UV_RUN_ONCE);
    }
    return true;
}

static bool node_tac_call_done(struct node_tac_env *e, void *arg)
{
    (void)e;
    return atomic_load(&((struct node_tac_call *)arg)->done) != 0;
}

/* Performs one request and returns the status; *ret_json gets the parsed
 * body (an object) when ret_json is set. */
static long node_tac_call(struct node_tac_env *e,
                          const char *method,
                          const char *path,
                          const char *body,
                          json_t **ret_json)
{
    struct node_tac_call c = {
        .env = e, .method = method, .path = path, .body = body
    };
    pthread_t th;
    json_error_t jerr;
    long status;

    ovha_buf_init(&c.answer);
    assert_int_equal(pthread_create(&th, NULL, node_tac_client, &c), 0);
    assert_true(node_tac_run_until(e, node_tac_call_done, &c, 25000));
    pthread_join(th, NULL);
    status = c.status;
    if (ret_json != NULL) {
        *ret_json = json_loadb(c.answer.data != NULL ? c.answer.data : "",
                               c.answer.len, 0, &jerr);
        if (*ret_json == NULL || !json_is_object(*ret_json)) {
            fail_msg("%s %s: answer is not a JSON object: %.*s", method, path,
                     (int)c.answer.len, c.answer.data);
        }
    }
    ovha_buf_free(&c.answer);
    return status;
}

static const char *node_tac_str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (s == NULL) {
        fail_msg("no string \"%s\"", key);
    }
    return s;
}

static json_int_t node_tac_int(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v)) {
        fail_msg("no integer \"%s\"", key);
    }
    return json_integer_value(v);
}

/* ---- setup --------------------------------------------------------------- */

/* 1 when 127.0.0.1:port can be bound now. */
static int node_tac_bindable(int port)
{
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0) {
        close(fd);
    }
    return ok;
}

/* A port P such that P .. P+3 are free (raft on P, forwarding on P+1,
 * a second node on P+2/P+3). A fixed range could collide with ephemeral
 * ports of other connections. The kernel picks P; tries are bounded. */
static int node_tac_free_ports(void)
{
    for (int i = 0; i < 100; i++) {
        struct sockaddr_in a = { .sin_family = AF_INET,
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
        close(fd);
        int p = ntohs(a.sin_port);
        if (p < 65530 && node_tac_bindable(p) && node_tac_bindable(p + 1) &&
            node_tac_bindable(p + 2) && node_tac_bindable(p + 3)) {
            return p;
        }
    }
    fail_msg("no four free consecutive loopback ports");
    return 0;
}

static void node_tac_env_init(struct node_tac_env *e)
{
    memset(e, 0, sizeof(*e));
    assert_int_equal(uv_loop_init(&e->loop), 0);
    uv_timer_init(&e->loop, &e->tick);
    uv_timer_start(&e->tick, node_tac_tick_cb, 5, 5);
    strcpy(e->dir, "/tmp/ovha-tac-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    snprintf(e->sock, sizeof(e->sock), "%s/api.sock", e->dir);
    snprintf(e->raft_dir, sizeof(e->raft_dir), "%s/raft", e->dir);
    assert_int_equal(mkdir(e->raft_dir, 0700), 0);
    e->n.loop = &e->loop;
    assert_int_equal(node_http_new(&e->loop, &e->n.http), 0);
    assert_int_equal(node_api_cluster_register(&e->n), 0);
    assert_int_equal(node_http_listen_unix(e->n.http, e->sock, 0600), 0);
    e->port = node_tac_free_ports();
}

/* Starts a one-voter runtime over plain TCP on loopback. */
static void node_tac_rft_start(struct node_tac_env *e, bool bootstrap)
{
    struct rft_config cfg;
    char err[256];

    memset(&cfg, 0, sizeof(cfg));
    cfg.id = 1;
    snprintf(cfg.address, sizeof(cfg.address), "127.0.0.1:%d", e->port);
    ovha_strlcpy(cfg.data_dir, e->raft_dir, sizeof(cfg.data_dir));
    cfg.election_timeout_ms = 200;
    cfg.heartbeat_timeout_ms = 20;
    cfg.bootstrap = bootstrap;
    assert_int_equal(fsm_new(NULL, &e->n.fsm), 0);
    if (rft_new(&e->loop, &cfg, e->n.fsm, &e->n.rft, err, sizeof(err)) != 0) {
        fail_msg("rft_new: %s", err);
    }
    if (rft_start(e->n.rft) != 0) {
        fail_msg("rft_start: %s", rft_errmsg(e->n.rft));
    }
}

static bool node_tac_is_ready(struct node_tac_env *e, void *arg)
{
    struct rft_status st;
    (void)arg;
    rft_get_status(e->n.rft, &st);
    return st.role == RFT_STATE_LEADER && st.ready;
}

static void node_tac_http_closed_cb(void *data)
{
    ((struct node_tac_env *)data)->http_closed = true;
}

static void node_tac_rft_closed_cb(void *data)
{
    ((struct node_tac_env *)data)->rft_closed = true;
}

static bool node_tac_all_closed(struct node_tac_env *e, void *arg)
{
    (void)arg;
    return e->http_closed && e->rft_closed;
}

static void node_tac_env_fini(struct node_tac_env *e)
{
    char cmd[128];
    if (e->n.http != NULL) {
        node_http_close(e->n.http, node_tac_http_closed_cb, e);
        e->n.http = NULL;
    } else {
        e->http_closed = true;
    }
    if (e->n.rft != NULL) {
        rft_close(e->n.rft, node_tac_rft_closed_cb, e);
        e->n.rft = NULL;
    } else {
        e->rft_closed = true;
    }
    assert_true(node_tac_run_until(e, node_tac_all_closed, NULL, 10000));
    uv_close((uv_handle_t *)&e->tick, NULL);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    fsm_free(e->n.fsm);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", e->dir);
    assert_int_equal(system(cmd), 0);
}

/* ---- tests --------------------------------------------------------------- */

static void node_tac_standalone(void **state)
{
    static const struct {
        const char *method, *path, *body;
    } routes[] = {
        { "GET", "/v1/cluster", NULL },
        { "POST", "/v1/cluster/join", "{\"id\": 2, \"address\": \"x\"}" },
        { "POST", "/v1/cluster/remove", "{\"id\": 2}" },
        { "POST", "/v1/cluster/transfer", "{}" },
        { "POST", "/v1/cluster/assign", "{\"id\": 2, \"role\": \"spare\"}" },
        { "GET", "/v1/cluster/sessions", NULL },
        { "GET", "/v1/cluster/gateways", NULL },
        { "GET", "/v1/leases?cn=alice", NULL },
        { "GET", "/v1/audit/head", NULL },
    };
    struct node_tac_env e;
    (void)state;

    node_tac_env_init(&e);
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        json_t *j = NULL;
        long st = node_tac_call(&e, routes[i].method, routes[i].path,
                                routes[i].body, &j);
        assert_int_equal(st, 409);
        assert_string_equal(node_tac_str(j, "error"),
                            "standalone node: no cluster section in the "
                            "config");
        json_decref(j);
    }
    node_tac_env_fini(&e);
}

static void node_tac_check_status(struct node_tac_env *e, size_t nservers)
{
    json_t *j = NULL, *servers, *stats;
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", e->port);
    assert_int_equal(node_tac_call(e, "GET", "/v1/cluster", NULL, &j), 200);
    assert_int_equal(node_tac_int(j, "id"), 1);
    assert_string_equal(node_tac_str(j, "address"), addr);
    assert_string_equal(node_tac_str(j, "role"), "leader");
    assert_true(node_tac_int(j, "term") >= 1);
    assert_int_equal(node_tac_int(j, "leader_id"), 1);
    assert_string_equal(node_tac_str(j, "leader_address"), addr);
    assert_true(node_tac_int(j, "commit_index") >= 1);
    assert_true(node_tac_int(j, "last_applied") <=
                node_tac_int(j, "last_index"));
    assert_true(json_is_true(json_object_get(j, "ready")));
    servers = json_object_get(j, "servers");
    assert_true(json_is_array(servers));
    assert_int_equal(json_array_size(servers), nservers);
    assert_int_equal(node_tac_int(json_array_get(servers, 0), "id"), 1);
    assert_string_equal(node_tac_str(json_array_get(servers, 0), "role"),
                        "voter");
    assert_string_equal(node_tac_str(json_array_get(servers, 0), "address"),
                        addr);
    if (nservers > 1) {
        assert_int_equal(node_tac_int(json_array_get(servers, 1), "id"), 2);
        assert_string_equal(node_tac_str(json_array_get(servers, 1), "role"),
                            "spare");
    }
    stats = json_object_get(j, "stats");
    assert_int_equal(json_object_size(stats), 11);
    assert_true(node_tac_int(stats, "elections_won") >= 1);
    node_tac_int(stats, "batches");
    node_tac_int(stats, "snapshots");
    node_tac_int(stats, "restores");
    node_tac_int(stats, "proposed");
    node_tac_int(stats, "forward_served");
    json_decref(j);
}

static void node_tac_check_empty(struct node_tac_env *e,
                                 const char *path,
                                 const char *key)
{
    json_t *j = NULL;
    assert_int_equal(node_tac_call(e, "GET", path, NULL, &j), 200);
    assert_true(json_is_array(json_object_get(j, key)));
    assert_int_equal(json_array_size(json_object_get(j, key)), 0);
    json_decref(j);
}

static void node_tac_leader(void **state)
{
    struct node_tac_env e;
    json_t *j = NULL;
    char body[256];
    (void)state;

    node_tac_env_init(&e);
    node_tac_rft_start(&e, true);
    assert_true(node_tac_run_until(&e, node_tac_is_ready, NULL, 5000));
    node_tac_check_status(&e, 1);

    node_tac_check_empty(&e, "/v1/leases", "leases");
    node_tac_check_empty(&e, "/v1/leases?cn=alice", "leases");
    node_tac_check_empty(&e, "/v1/cluster/sessions", "sessions");
    node_tac_check_empty(&e, "/v1/cluster/sessions?gateway=gw1", "sessions");
    node_tac_check_empty(&e, "/v1/cluster/gateways", "gateways");

    assert_int_equal(node_tac_call(&e, "GET", "/v1/audit/head", NULL, &j), 200);
    assert_int_equal(node_tac_int(j, "seq"), 0);
    assert_int_equal(strlen(node_tac_str(j, "hash")), 64);
    assert_true(json_is_true(json_object_get(j, "verified")));
    assert_int_equal(node_tac_int(j, "first_bad_seq"), 0);
    json_decref(j);

    /* Bad bodies never reach raft. */
    static const char *const bad_joins[] = {
        "",
        "not json",
        "{\"address\": \"127.0.0.1:7000\"}",
        "{\"id\": 0, \"address\": \"127.0.0.1:7000\"}",
        "{\"id\": -3, \"address\": \"127.0.0.1:7000\"}",
        "{\"id\": \"2\", \"address\": \"127.0.0.1:7000\"}",
        "{\"id\": 2}",
        "{\"id\": 2, \"address\": \"127.0.0.1\"}",
        "{\"id\": 2, \"address\": \"127.0.0.1:65535\"}",
        "{\"id\": 2, \"address\": \"host:7000\"}",
        "{\"id\": 2, \"address\": \"127.0.0.1:7000\", \"role\": \"boss\"}",
        "{\"id\": 2, \"address\": \"127.0.0.1:7000\", \"colour\": 1}",
    };
    for (size_t i = 0; i < sizeof(bad_joins) / sizeof(bad_joins[0]); i++) {
        assert_int_equal(
            node_tac_call(&e, "POST", "/v1/cluster/join", bad_joins[i], &j),
            400);
        assert_non_null(strstr(node_tac_str(j, "error"), "body must be"));
        json_decref(j);
    }
    assert_int_equal(
        node_tac_call(&e, "POST", "/v1/cluster/remove", "{\"id\": 0}", &j),
        400);
    json_decref(j);
    assert_int_equal(
        node_tac_call(&e, "POST", "/v1/cluster/assign", "{\"id\": 2}", &j),
        400);
    json_decref(j);
    assert_int_equal(
        node_tac_call(&e, "POST", "/v1/cluster/transfer", "{\"id\": -1}", &j),
        400);
    json_decref(j);

    /* A spare joins as soon as the configuration commits (no catch-up). */
    snprintf(body, sizeof(body),
             "{\"id\": 2, \"address\": \"127.0.0.1:%d\", \"role\": "
             "\"spare\"}",
             e.port + 2);
    assert_int_equal(node_tac_call(&e, "POST", "/v1/cluster/join", body, &j),
                     200);
    assert_int_equal(node_tac_int(j, "joined"), 2);
    json_decref(j);
    node_tac_check_status(&e, 2);

    /* The same id again: refused by raft, 409 with its message. */
    assert_int_equal(node_tac_call(&e, "POST", "/v1/cluster/join", body, &j),
                     409);
    assert_non_null(strstr(node_tac_str(j, "error"), "add 2"));
    json_decref(j);

    assert_int_equal(
        node_tac_call(&e, "POST", "/v1/cluster/remove", "{\"id\": 2}", &j),
        200);
    assert_int_equal(node_tac_int(j, "removed"), 2);
    json_decref(j);
    node_tac_check_status(&e, 1);

    /* Removing an unknown id fails in raft. */
    assert_int_equal(
        node_tac_call(&e, "POST", "/v1/cluster/remove", "{\"id\": 9}", &j),
        409);
    assert_non_null(strstr(node_tac_str(j, "error"), "remove 9"));
    json_decref(j);

    /* No other voter to hand leadership to. */
    assert_int_equal(node_tac_call(&e, "POST", "/v1/cluster/transfer", "", &j),
                     409);
    assert_non_null(strstr(node_tac_str(j, "error"), "transfer"));
    json_decref(j);

    node_tac_env_fini(&e);
}

/* A pristine node that was not bootstrapped never hears of a leader. */
static void node_tac_not_leader(void **state)
{
    struct node_tac_env e;
    json_t *j = NULL;
    (void)state;

    node_tac_env_init(&e);
    node_tac_rft_start(&e, false);
    assert_int_equal(
        node_tac_call(&e, "POST", "/v1/cluster/remove", "{\"id\": 2}", &j),
        503);
    assert_non_null(strstr(node_tac_str(j, "error"), "not the leader"));
    assert_int_equal(node_tac_int(j, "leader_id"), 0);
    assert_string_equal(node_tac_str(j, "leader_address"), "");
    json_decref(j);
    assert_int_equal(node_tac_call(&e, "GET", "/v1/cluster", NULL, &j), 200);
    assert_string_equal(node_tac_str(j, "role"), "follower");
    assert_false(json_is_true(json_object_get(j, "ready")));
    json_decref(j);
    node_tac_env_fini(&e);
}

/* A voter that never answers keeps the join waiting for catch-up: the
 * HTTP server closes first (the client gets 503 from it), then the
 * runtime fails the change with OVHA_ECLOSED. ASan would flag a use of the
 * cancelled request. */
static void node_tac_close_http_cb(uv_timer_t *t)
{
    struct node_tac_env *e = t->data;
    node_http_close(e->n.http, node_tac_http_closed_cb, e);
    e->n.http = NULL;
    uv_close((uv_handle_t *)t, NULL);
}

static void node_tac_close_while_waiting(void **state)
{
    struct node_tac_env e;
    struct node_tac_call c = { 0 };
    uv_timer_t closer;
    pthread_t th;
    char body[256];
    (void)state;

    node_tac_env_init(&e);
    node_tac_rft_start(&e, true);
    assert_true(node_tac_run_until(&e, node_tac_is_ready, NULL, 5000));
    snprintf(body, sizeof(body), "{\"id\": 3, \"address\": \"127.0.0.1:%d\"}",
             e.port + 2);
    c.env = &e;
    c.method = "POST";
    c.path = "/v1/cluster/join";
    c.body = body;
    ovha_buf_init(&c.answer);
    assert_int_equal(pthread_create(&th, NULL, node_tac_client, &c), 0);
    /* Let the request arrive and the change start, then close. */
    uv_timer_init(&e.loop, &closer);
    closer.data = &e;
    uv_timer_start(&closer, node_tac_close_http_cb, 300, 0);
    assert_true(node_tac_run_until(&e, node_tac_call_done, &c, 10000));
    pthread_join(th, NULL);
    assert_int_equal(c.status, 503);
    ovha_buf_free(&c.answer);
    node_tac_env_fini(&e);
}

int node_test_api_cluster(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(node_tac_standalone),
        cmocka_unit_test(node_tac_leader),
        cmocka_unit_test(node_tac_not_leader),
        cmocka_unit_test(node_tac_close_while_waiting),
    };
    return cmocka_run_group_tests_name("node_api_cluster", tests, NULL, NULL);
}
