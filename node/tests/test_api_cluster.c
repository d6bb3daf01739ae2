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
 *   runtime closing (the change callback must not touch the dead req);
 * - the admin writes and reads (api_admin.c, api_gateway.c) on the same
 *   one-node cluster: pools, lease reserve/release, subnets, the audit
 *   pages and verification, gateway standby, the session filters, bad
 *   bodies, refusals and the subject as the audit actor; and a write
 *   with no leader (503, and the server closing while it waits).
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
    bool http_closed, rft_closed, repl_closed;
    struct node_cfg *cfg; /* only its id: what the replicated decider reads */
};

/* One call on the client thread. */
struct node_tac_call {
    struct node_tac_env *env;
    const char *method, *path, *body;
    const char *subject; /* X-Test-Subject, for the test's auth hook */
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
    if (c->subject != NULL) {
        char h[160];
        snprintf(h, sizeof(h), "X-Test-Subject: %s", c->subject);
        hdrs = curl_slist_append(hdrs, h);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    }
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

/* Performs one request as subject (NULL: none) and returns the status;
 * *ret_json gets the parsed body (an object) when ret_json is set. */
static long node_tac_call_as(struct node_tac_env *e,
                             const char *subject,
                             const char *method,
                             const char *path,
                             const char *body,
                             json_t **ret_json)
{
    struct node_tac_call c = { .env = e,
                               .method = method,
                               .path = path,
                               .body = body,
                               .subject = subject };
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

static long node_tac_call(struct node_tac_env *e,
                          const char *method,
                          const char *path,
                          const char *body,
                          json_t **ret_json)
{
    return node_tac_call_as(e, NULL, method, path, body, ret_json);
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
    assert_int_equal(node_api_gateway_register(&e->n), 0);
    assert_int_equal(node_api_admin_register(&e->n), 0);
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
    /* The admin writes propose through the replicated decider; it is not
     * started (no timers, no pool of its own). */
    e->cfg = calloc(1, sizeof(*e->cfg));
    assert_non_null(e->cfg);
    strcpy(e->cfg->id, "gw-test");
    struct node_rules rules = { 0 };
    assert_int_equal(
        node_repl_new(&e->loop, e->cfg, e->n.rft, e->n.fsm, rules, &e->n.repl),
        0);
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

static void node_tac_repl_closed_cb(void *data)
{
    ((struct node_tac_env *)data)->repl_closed = true;
}

static bool node_tac_repl_is_closed(struct node_tac_env *e, void *arg)
{
    (void)arg;
    return e->repl_closed;
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
    if (e->n.repl != NULL) {
        /* After the runtime: no proposal callback is still due. */
        node_repl_close(e->n.repl, node_tac_repl_closed_cb, e);
        e->n.repl = NULL;
        assert_true(
            node_tac_run_until(e, node_tac_repl_is_closed, NULL, 10000));
    }
    free(e->cfg);
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
        { "GET", "/v1/pools", NULL },
        { "PUT", "/v1/pools",
          "{\"name\": \"p\", \"cidr\": \"100.64.0.0/24\"}" },
        { "POST", "/v1/leases/reserve",
          "{\"cn\": \"a\", \"ip\": \"100.64.0.5\"}" },
        { "POST", "/v1/leases/release",
          "{\"cn\": \"a\", \"ip\": \"100.64.0.5\"}" },
        { "GET", "/v1/subnets", NULL },
        { "POST", "/v1/subnets/release", "{\"cidr\": \"100.96.0.0/24\"}" },
        { "GET", "/v1/audit?after=0&limit=5", NULL },
        { "GET", "/v1/audit/verify", NULL },
        { "POST", "/v1/gateways/standby", "{\"gateway\": \"gw-1\"}" },
        { "POST", "/v1/gateways/drain", "{\"gateway\": \"gw-1\"}" },
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

/* ---- the admin API (api_admin.c, api_gateway.c) ------------------------- */

/* One command proposed straight to raft, as another gateway would. */
struct node_tac_prop {
    bool done;
    int status;
    struct proto_result res;
};

static void node_tac_prop_cb(void *data,
                             int status,
                             const struct proto_result *res)
{
    struct node_tac_prop *p = data;
    p->done = true;
    p->status = status;
    if (res != NULL) {
        p->res = *res;
    }
}

static bool node_tac_prop_done(struct node_tac_env *e, void *arg)
{
    (void)e;
    return ((struct node_tac_prop *)arg)->done;
}

static uint64_t node_tac_req_id = 7000;

/* Proposes c (from gateway gw) and asserts the FSM accepted it. */
static void node_tac_propose(struct node_tac_env *e,
                             struct proto_cmd *c,
                             enum proto_cmd_kind kind,
                             const char *gw,
                             struct proto_result *ret)
{
    struct node_tac_prop p = { 0 };
    uint8_t *buf = NULL;
    size_t len = 0;

    c->version = PROTO_VERSION;
    c->req_id = ++node_tac_req_id;
    c->kind = kind;
    c->ts_ms = ovha_now_real_ms();
    strcpy(c->gateway, gw);
    assert_int_equal(proto_cmd_encode(c, &buf, &len), 0);
    assert_int_equal(rft_propose(e->n.rft, buf, len, 0, node_tac_prop_cb, &p),
                     0);
    ovha_free(buf);
    assert_true(node_tac_run_until(e, node_tac_prop_done, &p, 10000));
    assert_int_equal(p.status, 0);
    if (p.res.status != PROTO_STATUS_OK) {
        fail_msg("refused: %s %s", proto_reason_name(p.res.reason),
                 p.res.detail);
    }
    if (ret != NULL) {
        *ret = p.res;
    }
}

/* A write that must fail with status, its error text containing want. */
static void node_tac_expect(struct node_tac_env *e,
                            const char *method,
                            const char *path,
                            const char *body,
                            long status,
                            const char *want)
{
    json_t *j = NULL;
    long got = node_tac_call(e, method, path, body, &j);
    if (got != status) {
        char *dump = json_dumps(j, 0);
        fail_msg("%s %s %s: status %ld, want %ld: %s", method, path, body, got,
                 status, dump);
    }
    if (want != NULL && strstr(node_tac_str(j, "error"), want) == NULL) {
        fail_msg("%s %s %s: error \"%s\" lacks \"%s\"", method, path, body,
                 node_tac_str(j, "error"), want);
    }
    json_decref(j);
}

/* GET path and return the array under key (the caller frees *ret_doc). */
static json_t *node_tac_get_list(struct node_tac_env *e,
                                 const char *path,
                                 const char *key,
                                 json_t **ret_doc)
{
    assert_int_equal(node_tac_call(e, "GET", path, NULL, ret_doc), 200);
    json_t *list = json_object_get(*ret_doc, key);
    assert_true(json_is_array(list));
    return list;
}

static size_t node_tac_count(struct node_tac_env *e,
                             const char *path,
                             const char *key)
{
    json_t *doc = NULL;
    size_t n = json_array_size(node_tac_get_list(e, path, key, &doc));
    json_decref(doc);
    return n;
}

/* The auth hook of the tests: the X-Test-Subject header names the caller
 * (as a token or certificate would). */
static unsigned node_tac_auth(struct node_http_req *r,
                              void *data,
                              char *msg,
                              size_t msglen)
{
    const char *who = node_http_req_header(r, "X-Test-Subject");
    (void)data;
    (void)msg;
    (void)msglen;
    if (who != NULL) {
        node_http_req_set_subject(r, who);
    }
    return 0;
}

static void node_tac_admin_pools(struct node_tac_env *e)
{
    static const char *const bad[] = {
        "",
        "[]",
        "{}",
        "{\"name\": \"p\"}",
        "{\"cidr\": \"100.64.0.0/24\"}",
        "{\"name\": \"a b\", \"cidr\": \"100.64.0.0/24\"}",
        "{\"name\": \"\", \"cidr\": \"100.64.0.0/24\"}",
        "{\"name\": \"p\\u0000q\", \"cidr\": \"100.64.0.0/24\"}",
        "{\"name\": \"p\", \"cidr\": \"100.64.0.1/24\"}", /* host bits */
        "{\"name\": \"p\", \"cidr\": \"100.64.0.0/31\"}", /* too small */
        "{\"name\": \"p\", \"cidr\": \"100.64.0.0/33\"}",
        "{\"name\": \"p\", \"cidr\": \"100.64.0.0/024\"}", /* leading 0 */
        "{\"name\": \"p\", \"cidr\": \"100.064.0.0/24\"}",
        "{\"name\": \"p\", \"cidr\": \"100.64.0/24\"}",
        "{\"name\": \"p\", \"cidr\": \"100.64.0.0\"}",
        "{\"name\": \"p\", \"cidr\": \"100.64.0.0/\"}",
        "{\"name\": \"p\", \"cidr\": \"100.64.0.0/+24\"}",
        "{\"name\": \"p\", \"cidr\": \" 100.64.0.0/24\"}",
        "{\"name\": \"p\", \"cidr\": \"fd00::1/64\"}",
        "{\"name\": \"p\", \"cidr\": \"100.64.0.0/24\", \"lease_ttl_ms\": 0}",
        "{\"name\": \"p\", \"cidr\": \"100.64.0.0/24\", \"lease_ttl_ms\": -5}",
        "{\"name\": \"p\", \"cidr\": \"100.64.0.0/24\", \"lease_ttl_ms\": 1.5}",
        "{\"name\": \"p\", \"cidr\": \"100.64.0.0/24\", \"lease_ttl_ms\": "
        "\"9\"}",
        "{\"name\": \"p\", \"cidr\": \"100.64.0.0/24\", "
        "\"lease_ttl_ms\": 1099511627777}",
        "{\"name\": \"p\", \"cidr\": \"100.64.0.0/24\", \"ttl\": 5}",
    };
    json_t *j = NULL, *doc = NULL, *list;

    assert_int_equal(node_tac_count(e, "/v1/pools", "pools"), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        node_tac_expect(e, "PUT", "/v1/pools", bad[i], 400, "body must be");
    }
    assert_int_equal(node_tac_count(e, "/v1/pools", "pools"), 0);

    assert_int_equal(
        node_tac_call(e, "PUT", "/v1/pools",
                      "{\"name\": \"main\", \"cidr\": \"100.64.0.0/24\", "
                      "\"lease_ttl_ms\": 60000}",
                      &j),
        200);
    assert_string_equal(node_tac_str(j, "name"), "main");
    assert_string_equal(node_tac_str(j, "cidr"), "100.64.0.0/24");
    assert_int_equal(node_tac_int(j, "lease_ttl_ms"), 60000);
    json_decref(j);
    /* No TTL: the FSM's default; an IPv6 pool is written canonically. */
    assert_int_equal(
        node_tac_call(e, "PUT", "/v1/pools",
                      "{\"name\": \"six\", \"cidr\": \"FD00:0:0::/120\"}", &j),
        200);
    assert_string_equal(node_tac_str(j, "cidr"), "fd00::/120");
    assert_int_equal(node_tac_int(j, "lease_ttl_ms"), 24 * 3600 * 1000);
    json_decref(j);

    /* Refused by the FSM: 409 with its reason. */
    node_tac_expect(e, "PUT", "/v1/pools",
                    "{\"name\": \"other\", \"cidr\": \"100.64.0.128/25\"}", 409,
                    "overlap: overlaps pool main");

    list = node_tac_get_list(e, "/v1/pools", "pools", &doc);
    assert_int_equal(json_array_size(list), 2);
    json_t *p0 = json_array_get(list, 0);
    assert_string_equal(node_tac_str(p0, "name"), "main");
    assert_string_equal(node_tac_str(p0, "cidr"), "100.64.0.0/24");
    assert_int_equal(node_tac_int(p0, "family"), 4);
    assert_int_equal(node_tac_int(p0, "lease_ttl_ms"), 60000);
    assert_int_equal(node_tac_int(p0, "size"), 253);
    assert_int_equal(node_tac_int(p0, "leases"), 0);
    assert_string_equal(node_tac_str(json_array_get(list, 1), "name"), "six");
    assert_int_equal(node_tac_int(json_array_get(list, 1), "family"), 6);
    json_decref(doc);
}

static void node_tac_admin_leases(struct node_tac_env *e)
{
    static const char *const bad[] = {
        "",
        "{\"cn\": \"alice\"}",
        "{\"ip\": \"100.64.0.5\"}",
        "{\"cn\": \"\", \"ip\": \"100.64.0.5\"}",
        "{\"cn\": \"al\\u0001ice\", \"ip\": \"100.64.0.5\"}",
        "{\"cn\": \"al\\u0000ice\", \"ip\": \"100.64.0.5\"}",
        "{\"cn\": 5, \"ip\": \"100.64.0.5\"}",
        "{\"cn\": \"alice\", \"ip\": \"100.64.0.300\"}",
        "{\"cn\": \"alice\", \"ip\": \"100.64.00.5\"}",
        "{\"cn\": \"alice\", \"ip\": \"100.64.0.5/32\"}",
        "{\"cn\": \"alice\", \"ip\": \"100.64.0.5 \"}",
        "{\"cn\": \"alice\", \"ip\": \"fd00::g\"}",
        "{\"cn\": \"alice\", \"ip\": \"100.64.0.5\", \"pool\": \"main\"}",
    };
    char longcn[300];
    json_t *j = NULL, *doc = NULL, *list;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        node_tac_expect(e, "POST", "/v1/leases/reserve", bad[i], 400,
                        "body must be");
        node_tac_expect(e, "POST", "/v1/leases/release", bad[i], 400,
                        "body must be");
    }
    /* 256 bytes is one too many. */
    snprintf(longcn, sizeof(longcn),
             "{\"cn\": \"%0256d\", \"ip\": \"100.64.0.5\"}", 0);
    node_tac_expect(e, "POST", "/v1/leases/reserve", longcn, 400, NULL);

    assert_int_equal(
        node_tac_call(e, "POST", "/v1/leases/reserve",
                      "{\"cn\": \"alice\", \"ip\": \"100.64.0.5\"}", &j),
        200);
    assert_string_equal(node_tac_str(j, "cn"), "alice");
    assert_string_equal(node_tac_str(j, "ip"), "100.64.0.5");
    json_decref(j);
    list = node_tac_get_list(e, "/v1/leases?cn=alice", "leases", &doc);
    assert_int_equal(json_array_size(list), 1);
    assert_string_equal(node_tac_str(json_array_get(list, 0), "ip"),
                        "100.64.0.5");
    assert_true(
        json_is_true(json_object_get(json_array_get(list, 0), "reserved")));
    json_decref(doc);

    node_tac_expect(e, "POST", "/v1/leases/reserve",
                    "{\"cn\": \"bob\", \"ip\": \"100.64.0.5\"}", 409,
                    "ip_taken: 100.64.0.5 is leased to alice");
    node_tac_expect(e, "POST", "/v1/leases/reserve",
                    "{\"cn\": \"bob\", \"ip\": \"100.65.0.5\"}", 409,
                    "ip_not_in_pool");
    node_tac_expect(e, "POST", "/v1/leases/release",
                    "{\"cn\": \"bob\", \"ip\": \"100.64.0.5\"}", 404,
                    "not_found");
    assert_int_equal(
        node_tac_call(e, "POST", "/v1/leases/release",
                      "{\"cn\": \"alice\", \"ip\": \"100.64.0.5\"}", &j),
        200);
    assert_string_equal(node_tac_str(j, "ip"), "100.64.0.5");
    json_decref(j);
    assert_int_equal(node_tac_count(e, "/v1/leases", "leases"), 0);
    node_tac_expect(e, "POST", "/v1/leases/release",
                    "{\"cn\": \"alice\", \"ip\": \"100.64.0.5\"}", 404,
                    "not_found");
}

static void node_tac_admin_subnets(struct node_tac_env *e)
{
    struct proto_cmd c;
    json_t *j = NULL, *doc = NULL, *list;

    assert_int_equal(node_tac_count(e, "/v1/subnets", "subnets"), 0);
    node_tac_expect(e, "POST", "/v1/subnets/release", "{}", 400,
                    "body must be");
    node_tac_expect(e, "POST", "/v1/subnets/release",
                    "{\"cidr\": \"100.96.1.0/16\"}", 400, "body must be");
    node_tac_expect(e, "POST", "/v1/subnets/release",
                    "{\"cidr\": \"100.96.0.0/24\"}", 404, "not_found");

    memset(&c, 0, sizeof(c));
    strcpy(c.u.subnet_register.cidr, "100.96.0.0/24");
    strcpy(c.u.subnet_register.owner_cn, "site-a");
    node_tac_propose(e, &c, PROTO_CMD_SUBNET_REGISTER, "gw-1", NULL);
    list = node_tac_get_list(e, "/v1/subnets", "subnets", &doc);
    assert_int_equal(json_array_size(list), 1);
    assert_string_equal(node_tac_str(json_array_get(list, 0), "cidr"),
                        "100.96.0.0/24");
    assert_string_equal(node_tac_str(json_array_get(list, 0), "owner_cn"),
                        "site-a");
    json_decref(doc);
    assert_int_equal(node_tac_count(e, "/v1/subnets?cn=site-a", "subnets"), 1);
    assert_int_equal(node_tac_count(e, "/v1/subnets?cn=site-b", "subnets"), 0);

    assert_int_equal(node_tac_call(e, "POST", "/v1/subnets/release",
                                   "{\"cidr\": \"100.96.0.0/24\"}", &j),
                     200);
    assert_string_equal(node_tac_str(j, "cidr"), "100.96.0.0/24");
    json_decref(j);
    assert_int_equal(node_tac_count(e, "/v1/subnets", "subnets"), 0);
}

/* A gateway with one session of carol; then the session filters and the
 * gateway's standby. */
static void node_tac_admin_gateways(struct node_tac_env *e)
{
    struct proto_cmd c;
    json_t *j = NULL, *doc = NULL, *list;

    memset(&c, 0, sizeof(c));
    strcpy(c.u.gateway_heartbeat.addr, "198.18.0.11");
    node_tac_propose(e, &c, PROTO_CMD_GATEWAY_HEARTBEAT, "gw-1", NULL);
    memset(&c, 0, sizeof(c));
    strcpy(c.u.session_open.cn, "carol");
    strcpy(c.u.session_open.pool4, "main");
    c.u.session_open.cid = 3;
    node_tac_propose(e, &c, PROTO_CMD_SESSION_OPEN, "gw-1", NULL);

    assert_int_equal(node_tac_count(e, "/v1/cluster/sessions", "sessions"), 1);
    assert_int_equal(
        node_tac_count(e, "/v1/cluster/sessions?cn=carol", "sessions"), 1);
    assert_int_equal(
        node_tac_count(e, "/v1/cluster/sessions?cn=dave", "sessions"), 0);
    assert_int_equal(node_tac_count(e,
                                    "/v1/cluster/sessions?cn=carol&gateway=gw-1"
                                    "&state=connecting",
                                    "sessions"),
                     1);
    assert_int_equal(
        node_tac_count(e, "/v1/cluster/sessions?cn=carol&gateway=gw-2",
                       "sessions"),
        0);
    assert_int_equal(
        node_tac_count(e, "/v1/cluster/sessions?state=established", "sessions"),
        0);
    assert_int_equal(
        node_tac_count(e, "/v1/cluster/sessions?gateway=gw-1&cn=", "sessions"),
        1);
    list = node_tac_get_list(e, "/v1/cluster/sessions?state=connecting",
                             "sessions", &doc);
    assert_int_equal(json_array_size(list), 1);
    assert_string_equal(node_tac_str(json_array_get(list, 0), "cn"), "carol");
    json_decref(doc);
    node_tac_expect(e, "GET", "/v1/cluster/sessions?state=up", NULL, 400,
                    "state must be");

    node_tac_expect(e, "POST", "/v1/gateways/standby", "{}", 400,
                    "body must be {\"gateway\": string}");
    node_tac_expect(e, "POST", "/v1/gateways/standby",
                    "{\"gateway\": \"gw-1\", \"force\": true}", 400,
                    "body must be");
    node_tac_expect(e, "POST", "/v1/gateways/standby",
                    "{\"gateway\": \"gw-9\"}", 404, "unknown gateway");
    assert_int_equal(node_tac_call(e, "POST", "/v1/gateways/standby",
                                   "{\"gateway\": \"gw-1\"}", &j),
                     200);
    assert_string_equal(node_tac_str(j, "gateway"), "gw-1");
    assert_string_equal(node_tac_str(j, "state"), "standby");
    json_decref(j);
    list = node_tac_get_list(e, "/v1/cluster/gateways", "gateways", &doc);
    assert_string_equal(node_tac_str(json_array_get(list, 0), "state"),
                        "standby");
    json_decref(doc);
    /* Draining the only gateway is refused by the FSM. */
    assert_int_equal(node_tac_call(e, "POST", "/v1/gateways/activate",
                                   "{\"gateway\": \"gw-1\"}", &j),
                     200);
    json_decref(j);
    node_tac_expect(e, "POST", "/v1/gateways/drain", "{\"gateway\": \"gw-1\"}",
                    409, "last_active");
}

/* The chain's records as seen through GET /v1/audit, checked for shape
 * and linkage; returns the parsed document. */
static json_t *node_tac_audit_page(struct node_tac_env *e, const char *path)
{
    json_t *doc = NULL;
    json_t *list = node_tac_get_list(e, path, "records", &doc);
    json_t *rec;
    size_t i;
    const char *prev = NULL;

    node_tac_int(doc, "base_seq");
    node_tac_int(doc, "head_seq");
    assert_true(json_is_boolean(json_object_get(doc, "more")));
    json_array_foreach(list, i, rec)
    {
        assert_int_equal(strlen(node_tac_str(rec, "hash")), 64);
        if (prev != NULL) {
            assert_string_equal(node_tac_str(rec, "prev_hash"), prev);
        }
        prev = node_tac_str(rec, "hash");
        node_tac_int(rec, "ts_ms");
        node_tac_str(rec, "kind");
        node_tac_str(rec, "actor");
        node_tac_str(rec, "subject");
        node_tac_str(rec, "detail");
    }
    return doc;
}

static void node_tac_admin_audit(struct node_tac_env *e)
{
    json_t *doc, *list, *j = NULL;
    char path[128];

    node_tac_expect(e, "GET", "/v1/audit?limit=0", NULL, 400, "limit");
    node_tac_expect(e, "GET", "/v1/audit?limit=1001", NULL, 400, "limit");
    node_tac_expect(e, "GET", "/v1/audit?limit=x", NULL, 400, "limit");
    node_tac_expect(e, "GET", "/v1/audit?after=-1", NULL, 400, "after");
    node_tac_expect(e, "GET", "/v1/audit?after=", NULL, 400, "after");

    doc = node_tac_audit_page(e, "/v1/audit");
    list = json_object_get(doc, "records");
    json_int_t head = node_tac_int(doc, "head_seq");
    assert_int_equal(node_tac_int(doc, "base_seq"), 0);
    assert_true(head >= 8 && head <= 100);
    assert_int_equal((json_int_t)json_array_size(list), head);
    assert_false(json_is_true(json_object_get(doc, "more")));
    /* The first write: main's PoolPut by the default subject. */
    json_t *r1 = json_array_get(list, 0);
    assert_int_equal(node_tac_int(r1, "seq"), 1);
    assert_string_equal(node_tac_str(r1, "kind"), "pool_put");
    assert_string_equal(node_tac_str(r1, "actor"), "api");
    assert_string_equal(node_tac_str(r1, "subject"), "main");
    assert_string_equal(node_tac_str(json_array_get(list, 0), "detail"),
                        "cidr=100.64.0.0/24 ttl_ms=60000");
    json_decref(doc);

    /* Pages: after is exclusive, more says a next page exists. */
    doc = node_tac_audit_page(e, "/v1/audit?after=1&limit=2");
    list = json_object_get(doc, "records");
    assert_int_equal(json_array_size(list), 2);
    assert_int_equal(node_tac_int(json_array_get(list, 0), "seq"), 2);
    assert_int_equal(node_tac_int(json_array_get(list, 1), "seq"), 3);
    assert_true(json_is_true(json_object_get(doc, "more")));
    json_decref(doc);
    snprintf(path, sizeof(path), "/v1/audit?after=%lld&limit=1000",
             (long long)head - 1);
    doc = node_tac_audit_page(e, path);
    assert_int_equal(json_array_size(json_object_get(doc, "records")), 1);
    assert_false(json_is_true(json_object_get(doc, "more")));
    json_decref(doc);
    snprintf(path, sizeof(path), "/v1/audit?after=%lld", (long long)head);
    doc = node_tac_audit_page(e, path);
    assert_int_equal(json_array_size(json_object_get(doc, "records")), 0);
    json_decref(doc);

    /* The subject of the request is the actor; bytes the wire does not
     * allow become '_'. */
    node_http_set_auth(e->n.http, node_tac_auth, NULL, NULL);
    assert_int_equal(
        node_tac_call_as(e, "cert:ops team", "POST", "/v1/leases/reserve",
                         "{\"cn\": \"erin\", \"ip\": \"100.64.0.9\"}", &j),
        200);
    json_decref(j);
    snprintf(path, sizeof(path), "/v1/audit?after=%lld", (long long)head);
    doc = node_tac_audit_page(e, path);
    list = json_object_get(doc, "records");
    assert_int_equal(json_array_size(list), 1);
    assert_string_equal(node_tac_str(json_array_get(list, 0), "kind"),
                        "lease_reserve");
    assert_string_equal(node_tac_str(json_array_get(list, 0), "actor"),
                        "cert:ops_team");
    json_decref(doc);

    assert_int_equal(node_tac_call(e, "GET", "/v1/audit/verify", NULL, &j),
                     200);
    assert_true(json_is_true(json_object_get(j, "ok")));
    assert_int_equal(node_tac_int(j, "base_seq"), 0);
    assert_int_equal(node_tac_int(j, "head_seq"), head + 1);
    json_decref(j);
    /* Tampering with a record is found. */
    assert_int_equal(
        fsm_debug_exec(e->n.fsm, "UPDATE audit SET detail = 'x' WHERE seq = 2"),
        0);
    assert_int_equal(node_tac_call(e, "GET", "/v1/audit/verify", NULL, &j),
                     409);
    assert_false(json_is_true(json_object_get(j, "ok")));
    assert_int_equal(node_tac_int(j, "bad_seq"), 2);
    assert_non_null(strstr(node_tac_str(j, "error"), "2"));
    json_decref(j);
}

static void node_tac_admin(void **state)
{
    struct node_tac_env e;
    (void)state;

    node_tac_env_init(&e);
    node_tac_rft_start(&e, true);
    assert_true(node_tac_run_until(&e, node_tac_is_ready, NULL, 5000));
    node_tac_admin_pools(&e);
    node_tac_admin_leases(&e);
    node_tac_admin_subnets(&e);
    node_tac_admin_gateways(&e);
    node_tac_admin_audit(&e);
    node_tac_env_fini(&e);
}

/* No leader: a write waits for the proposal deadline and answers 503
 * with a text that says to retry. */
static void node_tac_admin_no_leader(void **state)
{
    struct node_tac_env e;
    (void)state;

    node_tac_env_init(&e);
    node_tac_rft_start(&e, false);
    node_tac_expect(&e, "POST", "/v1/leases/reserve",
                    "{\"cn\": \"alice\", \"ip\": \"100.64.0.5\"}", 503,
                    "retry");
    /* A bad body is still 400: it is checked before raft is asked. */
    node_tac_expect(&e, "POST", "/v1/leases/reserve", "{\"cn\": \"alice\"}",
                    400, "body must be");
    node_tac_env_fini(&e);
}

/* The HTTP server closes while a write waits for a leader; the runtime
 * then fails the proposal (OVHA_ECLOSED) and its callback must only free
 * its context (ASan would flag a use of the cancelled request). */
static void node_tac_admin_close_while_waiting(void **state)
{
    struct node_tac_env e;
    struct node_tac_call c = { 0 };
    uv_timer_t closer;
    pthread_t th;
    (void)state;

    node_tac_env_init(&e);
    node_tac_rft_start(&e, false);
    c.env = &e;
    c.method = "PUT";
    c.path = "/v1/pools";
    c.body = "{\"name\": \"main\", \"cidr\": \"100.64.0.0/24\"}";
    ovha_buf_init(&c.answer);
    assert_int_equal(pthread_create(&th, NULL, node_tac_client, &c), 0);
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
        cmocka_unit_test(node_tac_admin),
        cmocka_unit_test(node_tac_admin_no_leader),
        cmocka_unit_test(node_tac_admin_close_while_waiting),
    };
    return cmocka_run_group_tests_name("node_api_cluster", tests, NULL, NULL);
}
