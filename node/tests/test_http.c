/* Tests for node/http: a server on the loop thread, a libcurl client on a
 * second thread (the loop keeps running while it waits for answers).
 * Checks routing, query and body access, a deferred answer, 404/405/413,
 * the socket file's mode and stale-file handling, and close with a request
 * still unanswered. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "base/base.h"
#include "node/http.h"
#include "node_tests.h"

/* One client request and what came back. */
struct node_test_call {
    const char *method;
    const char *path;
    size_t body_len; /* bytes of 'x' to send */
    bool chunked;    /* send without Content-Length */
    long status;     /* filled by the client */
    char body[256];  /* first bytes of the answer */
    char ctype[64];
    char allow[64];
    CURLcode rc;
};

struct node_test_env {
    uv_loop_t loop;
    uv_async_t done;
    uv_timer_t guard;  /* fails the test if the loop runs too long */
    uv_timer_t later;  /* answers /later */
    uv_timer_t closer; /* closes the server after /hang arrived */
    struct node_http *http;
    char dir[64];
    char sock[128];
    struct node_test_call *calls;
    size_t ncalls;
    struct node_http_req *deferred;
    struct node_http_req *hanging;
    int cancelled;
    int closed;
    bool timed_out;
    size_t sent; /* bytes the chunked read callback has produced */
};

/* ---- the client thread ------------------------------------------------ */

struct node_test_sink {
    char *buf;
    size_t len, cap;
};

static size_t node_test_write_cb(char *p, size_t size, size_t n, void *data)
{
    struct node_test_sink *s = data;
    size_t len = size * n;
    size_t room = s->cap - 1 - s->len;
    size_t take = len < room ? len : room;
    memcpy(s->buf + s->len, p, take);
    s->len += take;
    s->buf[s->len] = '\0';
    return len;
}

static size_t node_test_header_cb(char *p, size_t size, size_t n, void *data)
{
    struct node_test_call *c = data;
    size_t len = size * n;
    if (len > 14 && strncasecmp(p, "Content-Type: ", 14) == 0) {
        snprintf(c->ctype, sizeof(c->ctype), "%.*s", (int)(len - 16), p + 14);
    }
    if (len > 7 && strncasecmp(p, "Allow: ", 7) == 0) {
        snprintf(c->allow, sizeof(c->allow), "%.*s", (int)(len - 9), p + 7);
    }
    return len;
}

struct node_test_upload {
    size_t left;
};

static size_t node_test_read_cb(char *p, size_t size, size_t n, void *data)
{
    struct node_test_upload *u = data;
    size_t take = size * n < u->left ? size * n : u->left;
    memset(p, 'x', take);
    u->left -= take;
    return take;
}

static void node_test_do_call(struct node_test_env *env,
                              struct node_test_call *c)
{
    CURL *curl = curl_easy_init();
    struct node_test_sink sink = { c->body, 0, sizeof(c->body) };
    struct node_test_upload up = { c->body_len };
    struct curl_slist *hdrs = NULL;
    char url[256];
    char *payload = NULL;

    snprintf(url, sizeof(url), "http://localhost%s", c->path);
    curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, env->sock);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, node_test_write_cb);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, node_test_header_cb);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, c->method);
    if (c->chunked) {
        hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
        curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(curl, CURLOPT_READFUNCTION, node_test_read_cb);
        curl_easy_setopt(curl, CURLOPT_READDATA, &up);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    } else if (c->body_len > 0) {
        payload = malloc(c->body_len);
        memset(payload, 'x', c->body_len);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)c->body_len);
    }
    c->rc = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &c->status);
    curl_easy_cleanup(curl);
    curl_slist_free_all(hdrs);
    free(payload);
}

static void *node_test_client_main(void *arg)
{
    struct node_test_env *env = arg;
    for (size_t i = 0; i < env->ncalls; i++) {
        node_test_do_call(env, &env->calls[i]);
    }
    uv_async_send(&env->done);
    return NULL;
}

/* ---- the server side -------------------------------------------------- */

static void node_test_hello(struct node_http_req *r, void *data)
{
    (void)data;
    assert_int_equal(node_http_respond(r, 200, "text/plain", "hi", 2), 0);
}

static void node_test_query(struct node_http_req *r, void *data)
{
    (void)data;
    const char *name = node_http_req_query(r, "name");
    const char *none = node_http_req_query(r, "absent");
    char out[128];
    uid_t uid = (uid_t)-1;
    assert_int_equal(node_http_req_peer_uid(r, &uid), 0);
    assert_int_equal(uid, getuid());
    snprintf(out, sizeof(out), "%s %s %s|%s", node_http_req_method(r),
             node_http_req_path(r), name != NULL ? name : "(null)",
             none != NULL ? none : "(null)");
    assert_int_equal(node_http_respond(r, 200, "text/plain", out, strlen(out)),
                     0);
    /* A second answer is refused and changes nothing. */
    assert_int_equal(node_http_respond(r, 500, "text/plain", "no", 2),
                     -EALREADY);
}

static void node_test_echo(struct node_http_req *r, void *data)
{
    (void)data;
    size_t len;
    const char *body = node_http_req_body(r, &len);
    assert_int_equal(strlen(body), len);
    json_t *j = json_pack("{s:I, s:s}", "len", (json_int_t)len, "path",
                          node_http_req_path(r));
    assert_int_equal(node_http_respond_json(r, 201, j), 0);
}

static void node_test_later_cb(uv_timer_t *t)
{
    struct node_test_env *env = t->data;
    assert_non_null(env->deferred);
    assert_int_equal(
        node_http_respond(env->deferred, 202, "text/plain", "later", 5), 0);
    env->deferred = NULL;
}

static void node_test_later(struct node_http_req *r, void *data)
{
    struct node_test_env *env = data;
    /* Return without answering: the request waits for the timer. */
    env->deferred = r;
    uv_timer_start(&env->later, node_test_later_cb, 20, 0);
}

static void node_test_closed_cb(void *data)
{
    struct node_test_env *env = data;
    env->closed++;
}

static void node_test_cancel_cb(struct node_http_req *r, void *data)
{
    struct node_test_env *env = data;
    assert_ptr_equal(r, env->hanging);
    env->hanging = NULL;
    env->cancelled++;
}

static void node_test_closer_cb(uv_timer_t *t)
{
    struct node_test_env *env = t->data;
    node_http_close(env->http, node_test_closed_cb, env);
    env->http = NULL;
}

static void node_test_hang(struct node_http_req *r, void *data)
{
    struct node_test_env *env = data;
    env->hanging = r;
    node_http_req_set_cancel(r, node_test_cancel_cb, env);
    uv_timer_start(&env->closer, node_test_closer_cb, 0, 0);
}

static void node_test_done_cb(uv_async_t *a)
{
    struct node_test_env *env = a->data;
    uv_close((uv_handle_t *)&env->done, NULL);
    uv_close((uv_handle_t *)&env->guard, NULL);
    uv_close((uv_handle_t *)&env->later, NULL);
    uv_close((uv_handle_t *)&env->closer, NULL);
    if (env->http != NULL) {
        node_http_close(env->http, node_test_closed_cb, env);
        env->http = NULL;
    }
}

static void node_test_guard_cb(uv_timer_t *t)
{
    struct node_test_env *env = t->data;
    env->timed_out = true;
    uv_stop(&env->loop);
}

static void node_test_env_init(struct node_test_env *env)
{
    memset(env, 0, sizeof(*env));
    snprintf(env->dir, sizeof(env->dir), "/tmp/ovha-http-XXXXXX");
    assert_non_null(mkdtemp(env->dir));
    snprintf(env->sock, sizeof(env->sock), "%s/api.sock", env->dir);
    assert_int_equal(uv_loop_init(&env->loop), 0);
    uv_async_init(&env->loop, &env->done, node_test_done_cb);
    env->done.data = env;
    uv_timer_init(&env->loop, &env->guard);
    env->guard.data = env;
    uv_timer_init(&env->loop, &env->later);
    env->later.data = env;
    uv_timer_init(&env->loop, &env->closer);
    env->closer.data = env;
    assert_int_equal(node_http_new(&env->loop, &env->http), 0);
}

static void node_test_env_run(struct node_test_env *env)
{
    pthread_t th;
    uv_timer_start(&env->guard, node_test_guard_cb, 20000, 0);
    assert_int_equal(pthread_create(&th, NULL, node_test_client_main, env), 0);
    uv_run(&env->loop, UV_RUN_DEFAULT);
    pthread_join(th, NULL);
    assert_false(env->timed_out);
    /* Every handle, the server's included, was closed. */
    assert_int_equal(uv_loop_close(&env->loop), 0);
    rmdir(env->dir);
}

static void node_test_routes(void **state)
{
    (void)state;
    struct node_test_env env;
    struct node_test_call calls[] = {
        { .method = "GET", .path = "/hello" },
        { .method = "GET", .path = "/q?name=a%20b&x=1" },
        { .method = "POST", .path = "/echo", .body_len = 1000 },
        { .method = "POST", .path = "/echo" },
        { .method = "GET", .path = "/v1/sessions/alice" },
        { .method = "GET", .path = "/later" },
        { .method = "GET", .path = "/nope" },
        { .method = "DELETE", .path = "/hello" },
        { .method = "POST",
          .path = "/echo",
          .body_len = NODE_HTTP_MAX_BODY + 1 },
        { .method = "POST",
          .path = "/echo",
          .body_len = NODE_HTTP_MAX_BODY,
          .chunked = true },
        { .method = "POST",
          .path = "/echo",
          .body_len = NODE_HTTP_MAX_BODY + 10,
          .chunked = true },
        { .method = "GET", .path = "/hello" },
    };
    struct stat st;

    node_test_env_init(&env);
    env.calls = calls;
    env.ncalls = sizeof(calls) / sizeof(calls[0]);
    assert_int_equal(
        node_http_route(env.http, "GET", "/hello", node_test_hello, &env), 0);
    assert_int_equal(
        node_http_route(env.http, "GET", "/q", node_test_query, &env), 0);
    assert_int_equal(
        node_http_route(env.http, "POST", "/echo", node_test_echo, &env), 0);
    assert_int_equal(node_http_route(env.http, "GET", "/v1/sessions/*",
                                     node_test_echo, &env),
                     0);
    assert_int_equal(
        node_http_route(env.http, "GET", "/later", node_test_later, &env), 0);
    assert_int_equal(
        node_http_route(env.http, "GET", "bad", node_test_hello, &env),
        -EINVAL);
    assert_int_equal(node_http_listen_unix(env.http, env.sock, 0600), 0);
    assert_int_equal(node_http_listen_unix(env.http, env.sock, 0600),
                     -EALREADY);
    assert_int_equal(stat(env.sock, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);

    node_test_env_run(&env);
    assert_int_equal(env.closed, 1);
    /* The socket file is gone after close. */
    assert_int_equal(stat(env.sock, &st), -1);

    for (size_t i = 0; i < env.ncalls; i++) {
        if (calls[i].rc != CURLE_OK) {
            fail_msg("call %zu: %s", i, curl_easy_strerror(calls[i].rc));
        }
    }
    assert_int_equal(calls[0].status, 200);
    assert_string_equal(calls[0].body, "hi");
    assert_string_equal(calls[0].ctype, "text/plain");
    assert_int_equal(calls[1].status, 200);
    assert_string_equal(calls[1].body, "GET /q a b|(null)");
    assert_int_equal(calls[2].status, 201);
    assert_string_equal(calls[2].body, "{\"len\":1000,\"path\":\"/echo\"}");
    assert_string_equal(calls[2].ctype, "application/json");
    assert_int_equal(calls[3].status, 201);
    assert_string_equal(calls[3].body, "{\"len\":0,\"path\":\"/echo\"}");
    assert_int_equal(calls[4].status, 201);
    assert_string_equal(calls[4].body,
                        "{\"len\":0,\"path\":\"/v1/sessions/alice\"}");
    assert_int_equal(calls[5].status, 202);
    assert_string_equal(calls[5].body, "later");
    assert_int_equal(calls[6].status, 404);
    assert_string_equal(calls[6].body, "{\"error\":\"not found\"}");
    assert_int_equal(calls[7].status, 405);
    assert_string_equal(calls[7].body, "{\"error\":\"method not allowed\"}");
    assert_string_equal(calls[7].allow, "GET");
    assert_int_equal(calls[8].status, 413);
    assert_string_equal(calls[8].body,
                        "{\"error\":\"request body too large\"}");
    assert_int_equal(calls[9].status, 201);
    assert_string_equal(calls[9].body, "{\"len\":1048576,\"path\":\"/echo\"}");
    assert_int_equal(calls[10].status, 413);
    assert_int_equal(calls[11].status, 200);
}

/* Closing with a request still unanswered: its cancel callback runs and
 * the client gets 503. */
static void node_test_close_pending(void **state)
{
    (void)state;
    struct node_test_env env;
    struct node_test_call calls[] = {
        { .method = "GET", .path = "/hang" },
    };

    node_test_env_init(&env);
    env.calls = calls;
    env.ncalls = 1;
    assert_int_equal(
        node_http_route(env.http, "GET", "/hang", node_test_hang, &env), 0);
    assert_int_equal(node_http_listen_unix(env.http, env.sock, 0660), 0);
    node_test_env_run(&env);
    assert_int_equal(env.cancelled, 1);
    assert_int_equal(env.closed, 1);
    assert_null(env.hanging);
    assert_int_equal(calls[0].rc, CURLE_OK);
    assert_int_equal(calls[0].status, 503);
    assert_string_equal(calls[0].body, "{\"error\":\"shutting down\"}");
}

static void node_test_closed_cb_int(void *data)
{
    (*(int *)data)++;
}

/* A stale socket file is replaced; a regular file or a live socket is not
 * touched. */
static void node_test_stale(void **state)
{
    (void)state;
    char dir[] = "/tmp/ovha-http-XXXXXX", path[64];
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    uv_loop_t loop;
    struct node_http *h, *h2;
    int fd, closed = 0;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/s.sock", dir);
    assert_int_equal(uv_loop_init(&loop), 0);

    /* A regular file. */
    fd = open(path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(node_http_new(&loop, &h), 0);
    assert_int_equal(node_http_listen_unix(h, path, 0600), -EEXIST);
    unlink(path);

    /* A socket left behind by a dead process. */
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd);
    assert_int_equal(node_http_listen_unix(h, path, 0600), 0);

    /* A live one. */
    assert_int_equal(node_http_new(&loop, &h2), 0);
    assert_int_equal(node_http_listen_unix(h2, path, 0600), -EADDRINUSE);

    node_http_close(h2, node_test_closed_cb_int, &closed);
    node_http_close(h, node_test_closed_cb_int, &closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(closed, 2);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(access(path, F_OK), -1);
    rmdir(dir);
}

int node_test_http(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(node_test_routes),
        cmocka_unit_test(node_test_close_pending),
        cmocka_unit_test(node_test_stale),
    };
    int rv;

    /* A client that goes away must not kill the test with SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    rv = cmocka_run_group_tests_name("node_http", tests, NULL, NULL);
    curl_global_cleanup();
    return rv;
}
