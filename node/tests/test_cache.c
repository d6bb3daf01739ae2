/* Cache tiers: Redis (against a redis-server this test starts on
 * 127.0.0.1, random free port, temp dir) and the SQLite WAL file. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "base/base.h"
#include "node/cache.h"

int node_test_cache(void);

/* ---- helpers ------------------------------------------------------------ */

struct node_test_redis {
    pid_t pid;
    int port;
    char dir[64];
    char password[32];
};

/* Servers still running when a test fails an assertion (which longjmps
 * past its cleanup); the group teardown kills them by PID. */
static pid_t node_test_redis_pids[8];

static void node_test_redis_track(pid_t pid, bool add)
{
    for (size_t i = 0; i < 8; i++) {
        if (add ? node_test_redis_pids[i] == 0
                : node_test_redis_pids[i] == pid) {
            node_test_redis_pids[i] = add ? pid : 0;
            return;
        }
    }
}

static int node_test_redis_teardown_all(void **state)
{
    (void)state;
    for (size_t i = 0; i < 8; i++) {
        if (node_test_redis_pids[i] > 0) {
            kill(node_test_redis_pids[i], SIGKILL);
            waitpid(node_test_redis_pids[i], NULL, 0);
            node_test_redis_pids[i] = 0;
        }
    }
    return 0;
}

static int node_test_cache_free_port(void)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port;

    assert_true(fd >= 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static bool node_test_cache_can_connect(int port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bool ok;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port);
    ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

/* Starts redis-server on r->port (picked when 0); false if it cannot. */
static bool node_test_redis_start(struct node_test_redis *r)
{
    char portstr[16];
    struct timespec ts = { 0, 10 * 1000 * 1000 };

    if (access("/usr/bin/redis-server", X_OK) != 0) {
        return false;
    }
    if (r->port == 0) {
        r->port = node_test_cache_free_port();
    }
    if (r->dir[0] == '\0') {
        strcpy(r->dir, "/tmp/ovha-cache-redis-XXXXXX");
        assert_non_null(mkdtemp(r->dir));
    }
    snprintf(portstr, sizeof(portstr), "%d", r->port);
    r->pid = fork();
    assert_true(r->pid >= 0);
    if (r->pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        const char *argv[20];
        int n = 0;

        dup2(devnull, 1);
        dup2(devnull, 2);
        argv[n++] = "redis-server";
        argv[n++] = "--port";
        argv[n++] = portstr;
        argv[n++] = "--bind";
        argv[n++] = "127.0.0.1";
        argv[n++] = "--save";
        argv[n++] = "";
        argv[n++] = "--appendonly";
        argv[n++] = "no";
        argv[n++] = "--dir";
        argv[n++] = r->dir;
        if (r->password[0] != '\0') {
            argv[n++] = "--requirepass";
            argv[n++] = r->password;
        }
        argv[n] = NULL;
        execv("/usr/bin/redis-server", (char *const *)argv);
        _exit(127);
    }
    node_test_redis_track(r->pid, true);
    /* Bounded wait (5 s) for the server to accept connections. */
    for (int i = 0; i < 500; i++) {
        if (node_test_cache_can_connect(r->port)) {
            return true;
        }
        nanosleep(&ts, NULL);
    }
    kill(r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
    node_test_redis_track(r->pid, false);
    r->pid = 0;
    return false;
}

static void node_test_redis_kill(struct node_test_redis *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, NULL, 0);
        node_test_redis_track(r->pid, false);
        r->pid = 0;
    }
}

static void node_test_redis_cleanup(struct node_test_redis *r)
{
    char cmd[128];

    node_test_redis_kill(r);
    if (r->dir[0] != '\0') {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", r->dir);
        assert_int_equal(system(cmd), 0);
    }
}

struct node_test_guard {
    uv_timer_t timer;
    bool fired;
};

static void node_test_guard_cb(uv_timer_t *t)
{
    struct node_test_guard *g = t->data;

    g->fired = true;
}

typedef bool (*node_test_pred)(void *arg);

/* Runs the loop until pred(arg) or ms pass; returns pred's final value. */
static bool node_test_run_until(uv_loop_t *loop,
                                node_test_pred pred,
                                void *arg,
                                uint64_t ms)
{
    struct node_test_guard g = { .fired = false };
    bool ok;

    uv_timer_init(loop, &g.timer);
    g.timer.data = &g;
    uv_timer_start(&g.timer, node_test_guard_cb, ms, 0);
    while (!(ok = pred(arg)) && !g.fired) {
        uv_run(loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&g.timer, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return ok;
}

static bool node_test_flag(void *arg)
{
    return *(bool *)arg;
}

static bool node_test_never(void *arg)
{
    (void)arg;
    return false;
}

static bool node_test_redis_connected(void *arg)
{
    struct node_cache_redis_stats st;

    node_cache_redis_get_stats(arg, &st);
    return st.connected;
}

static bool node_test_redis_disconnected(void *arg)
{
    return !node_test_redis_connected(arg);
}

static void node_test_close_done(void *data)
{
    *(bool *)data = true;
}

static void node_test_loop_finish(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
}

/* ---- Redis -------------------------------------------------------------- */

struct node_test_get {
    bool done;
    int status;
    char value[256];
    size_t value_len;
    uint64_t stored_at_ms;
    uint64_t ttl_ms;
    char pw_salt[NODE_CACHE_SALT_HEX_LEN + 1];
    char pw_hash[NODE_CACHE_HASH_HEX_LEN + 1];
};

static void node_test_redis_get_cb(void *data,
                                   int status,
                                   const struct node_cache_entry *e)
{
    struct node_test_get *g = data;

    g->done = true;
    g->status = status;
    if (status == 0) {
        assert_true(e->value_len < sizeof(g->value));
        memcpy(g->value, e->value, e->value_len);
        g->value_len = e->value_len;
        g->stored_at_ms = e->stored_at_ms;
        g->ttl_ms = e->ttl_ms;
        memcpy(g->pw_salt, e->pw_salt, sizeof(g->pw_salt));
        memcpy(g->pw_hash, e->pw_hash, sizeof(g->pw_hash));
    }
}

/* Issues a get and runs the loop for its answer; returns its status. */
static int node_test_redis_get_sync(uv_loop_t *loop,
                                    struct node_cache_redis *c,
                                    const char *key,
                                    size_t keylen,
                                    struct node_test_get *g)
{
    int rc;

    memset(g, 0, sizeof(*g));
    rc = node_cache_redis_get(c, key, keylen, node_test_redis_get_cb, g);
    if (rc < 0) {
        return rc;
    }
    assert_true(node_test_run_until(loop, node_test_flag, &g->done, 5000));
    return g->status;
}

static struct node_cache_redis *node_test_redis_new(
    uv_loop_t *loop,
    const struct node_test_redis *r,
    const char *password)
{
    struct node_cache_redis_config cfg = {
        .host = "127.0.0.1",
        .port = r->port,
        .password = password,
        .key_prefix = "ovhatest:",
        .ttl_ms = 60000,
        .connect_timeout_ms = 1000,
        .cmd_timeout_ms = 300,
        .backoff_min_ms = 20,
        .backoff_max_ms = 200,
        .max_inflight = 4,
    };
    struct node_cache_redis *c = NULL;

    assert_int_equal(node_cache_redis_new(loop, &cfg, &c), 0);
    return c;
}

static void node_test_redis_close(uv_loop_t *loop, struct node_cache_redis *c)
{
    bool closed = false;

    node_cache_redis_close(c, node_test_close_done, &closed);
    node_test_loop_finish(loop);
    assert_true(closed);
}

static void node_test_cache_redis_basic(void **state)
{
    struct node_test_redis r = { 0 };
    uv_loop_t loop;
    struct node_cache_redis *c;
    struct node_cache_redis_stats st;
    struct node_cache_entry e;
    struct node_test_get g;
    static const char json[] = "{\"groups\":[\"ops\"],\"ok\":true}";

    (void)state;
    if (!node_test_redis_start(&r)) {
        skip();
    }
    uv_loop_init(&loop);
    c = node_test_redis_new(&loop, &r, NULL);
    assert_true(node_test_run_until(&loop, node_test_redis_connected, c, 5000));

    assert_int_equal(node_cache_entry_init(&e, json, strlen(json), 1234, 0), 0);
    assert_int_equal(node_cache_entry_set_password(&e, "hunter2"), 0);
    assert_int_equal(node_cache_redis_put(c, "cn:alice", 8, &e), 0);
    assert_int_equal(node_test_redis_get_sync(&loop, c, "cn:alice", 8, &g), 0);
    assert_int_equal(g.value_len, strlen(json));
    assert_memory_equal(g.value, json, g.value_len);
    assert_int_equal(g.stored_at_ms, 1234);
    assert_int_equal(g.ttl_ms, 60000); /* the tier default */
    assert_string_equal(g.pw_salt, e.pw_salt);
    assert_string_equal(g.pw_hash, e.pw_hash);
    node_cache_entry_clear(&e);

    /* Misses: absent key, and a key removed with del. */
    assert_int_equal(node_test_redis_get_sync(&loop, c, "cn:bob", 6, &g),
                     -ENOENT);
    assert_int_equal(node_cache_redis_del(c, "cn:alice", 8), 0);
    assert_int_equal(node_test_redis_get_sync(&loop, c, "cn:alice", 8, &g),
                     -ENOENT);

    /* TTL: SET ... PX expires the key. */
    assert_int_equal(node_cache_entry_init(&e, "{}", 2, 0, 40), 0);
    assert_int_equal(node_cache_redis_put(c, "cn:short", 8, &e), 0);
    node_cache_entry_clear(&e);
    assert_int_equal(node_test_redis_get_sync(&loop, c, "cn:short", 8, &g), 0);
    assert_int_equal(g.ttl_ms, 40);
    assert_true(g.stored_at_ms > 0);
    node_test_run_until(&loop, node_test_never, NULL, 120);
    assert_int_equal(node_test_redis_get_sync(&loop, c, "cn:short", 8, &g),
                     -ENOENT);

    /* Bounded inflight: the 5th outstanding command is refused. */
    struct node_test_get many[4];
    memset(many, 0, sizeof(many));
    for (int i = 0; i < 4; i++) {
        assert_int_equal(
            node_cache_redis_get(c, "x", 1, node_test_redis_get_cb, &many[i]),
            0);
    }
    assert_int_equal(
        node_cache_redis_get(c, "x", 1, node_test_redis_get_cb, &g),
        OVHA_ELIMIT);
    assert_true(
        node_test_run_until(&loop, node_test_flag, &many[3].done, 5000));

    node_cache_redis_get_stats(c, &st);
    assert_int_equal(st.hits, 2);
    assert_int_equal(st.misses, 3 + 4);
    assert_int_equal(st.reconnects, 0);
    assert_true(st.connected);

    /* Close with a get outstanding: it reports OVHA_ECLOSED. */
    memset(&g, 0, sizeof(g));
    assert_int_equal(
        node_cache_redis_get(c, "cn:bob", 6, node_test_redis_get_cb, &g), 0);
    node_test_redis_close(&loop, c);
    assert_true(g.done);
    assert_int_equal(g.status, OVHA_ECLOSED);
    node_test_redis_cleanup(&r);
}

static void node_test_cache_redis_binary_keys(void **state)
{
    struct node_test_redis r = { 0 };
    uv_loop_t loop;
    struct node_cache_redis *c;
    struct node_cache_entry e;
    struct node_test_get g;
    static const char k1[] = "cn:a\0b\r\n*1\r\n$3 %s";
    static const char k2[] = "cn:a\0c\r\n*1\r\n$3 %s";
    static const char v1[] = "{\"v\":\"one\\n\"}\n\r\n";

    (void)state;
    if (!node_test_redis_start(&r)) {
        skip();
    }
    uv_loop_init(&loop);
    c = node_test_redis_new(&loop, &r, NULL);
    assert_true(node_test_run_until(&loop, node_test_redis_connected, c, 5000));
    assert_int_equal(node_cache_entry_init(&e, v1, sizeof(v1) - 1, 0, 0), 0);
    assert_int_equal(node_cache_redis_put(c, k1, sizeof(k1) - 1, &e), 0);
    node_cache_entry_clear(&e);
    assert_int_equal(node_cache_entry_init(&e, "2", 1, 0, 0), 0);
    assert_int_equal(node_cache_redis_put(c, k2, sizeof(k2) - 1, &e), 0);
    node_cache_entry_clear(&e);

    assert_int_equal(node_test_redis_get_sync(&loop, c, k1, sizeof(k1) - 1, &g),
                     0);
    assert_int_equal(g.value_len, sizeof(v1) - 1);
    assert_memory_equal(g.value, v1, g.value_len);
    assert_int_equal(node_test_redis_get_sync(&loop, c, k2, sizeof(k2) - 1, &g),
                     0);
    assert_int_equal(g.value_len, 1);
    assert_memory_equal(g.value, "2", 1);
    /* The prefix up to the NUL alone is a different key. */
    assert_int_equal(node_test_redis_get_sync(&loop, c, k1, 4, &g), -ENOENT);
    node_test_redis_close(&loop, c);
    node_test_redis_cleanup(&r);
}

static void node_test_cache_redis_down_up(void **state)
{
    struct node_test_redis r = { 0 };
    uv_loop_t loop;
    struct node_cache_redis *c;
    struct node_cache_redis_stats st;
    struct node_cache_entry e;
    struct node_test_get g;
    struct node_test_get early;
    uint64_t t0;
    int rc;

    (void)state;
    if (!node_test_redis_start(&r)) {
        skip();
    }
    uv_loop_init(&loop);
    c = node_test_redis_new(&loop, &r, NULL);
    assert_true(node_test_run_until(&loop, node_test_redis_connected, c, 5000));
    assert_int_equal(node_cache_entry_init(&e, "{\"a\":1}", 7, 0, 0), 0);
    assert_int_equal(node_cache_redis_put(c, "cn:alice", 8, &e), 0);
    assert_int_equal(node_test_redis_get_sync(&loop, c, "cn:alice", 8, &g), 0);

    /* Kill Redis mid-run. A get issued before the loss is noticed gets a
     * callback with -ENOTCONN. */
    node_test_redis_kill(&r);
    memset(&early, 0, sizeof(early));
    assert_int_equal(
        node_cache_redis_get(c, "cn:alice", 8, node_test_redis_get_cb, &early),
        0);
    assert_true(
        node_test_run_until(&loop, node_test_redis_disconnected, c, 5000));
    assert_true(early.done);
    assert_int_equal(early.status, -ENOTCONN);

    /* Down: every call answers at once, without running the loop. */
    t0 = ovha_now_mono_ms();
    for (int i = 0; i < 1000; i++) {
        memset(&g, 0, sizeof(g));
        rc = node_cache_redis_get(c, "cn:alice", 8, node_test_redis_get_cb, &g);
        assert_int_equal(rc, -ENOTCONN);
        assert_false(g.done);
        assert_int_equal(node_cache_redis_put(c, "cn:alice", 8, &e), -ENOTCONN);
    }
    assert_true(ovha_now_mono_ms() - t0 < 500);
    /* Let a few reconnect attempts fail against the closed port. */
    node_test_run_until(&loop, node_test_never, NULL, 100);
    node_cache_redis_get_stats(c, &st);
    assert_false(st.connected);
    assert_true(st.errors >= 2000);

    /* Same port again: reconnects by itself (the data is gone). */
    assert_true(node_test_redis_start(&r));
    assert_true(node_test_run_until(&loop, node_test_redis_connected, c, 5000));
    node_cache_redis_get_stats(c, &st);
    assert_int_equal(st.reconnects, 1);
    assert_int_equal(node_test_redis_get_sync(&loop, c, "cn:alice", 8, &g),
                     -ENOENT);
    assert_int_equal(node_cache_redis_put(c, "cn:alice", 8, &e), 0);
    assert_int_equal(node_test_redis_get_sync(&loop, c, "cn:alice", 8, &g), 0);
    assert_memory_equal(g.value, "{\"a\":1}", 7);
    node_cache_entry_clear(&e);
    node_test_redis_close(&loop, c);
    node_test_redis_cleanup(&r);
}

/* A server that stops answering (SIGSTOP): outstanding gets fail with
 * -ENOTCONN after cmd_timeout_ms instead of waiting forever. */
static void node_test_cache_redis_stalled(void **state)
{
    struct node_test_redis r = { 0 };
    uv_loop_t loop;
    struct node_cache_redis *c;
    struct node_cache_entry e;
    struct node_test_get g;
    uint64_t t0;

    (void)state;
    if (!node_test_redis_start(&r)) {
        skip();
    }
    uv_loop_init(&loop);
    c = node_test_redis_new(&loop, &r, NULL);
    assert_true(node_test_run_until(&loop, node_test_redis_connected, c, 5000));
    assert_int_equal(node_cache_entry_init(&e, "{}", 2, 0, 0), 0);
    assert_int_equal(node_cache_redis_put(c, "cn:alice", 8, &e), 0);
    node_cache_entry_clear(&e);
    assert_int_equal(node_test_redis_get_sync(&loop, c, "cn:alice", 8, &g), 0);

    assert_int_equal(kill(r.pid, SIGSTOP), 0);
    t0 = ovha_now_mono_ms();
    memset(&g, 0, sizeof(g));
    assert_int_equal(
        node_cache_redis_get(c, "cn:alice", 8, node_test_redis_get_cb, &g), 0);
    assert_true(node_test_run_until(&loop, node_test_flag, &g.done, 3000));
    assert_int_equal(g.status, -ENOTCONN);
    assert_true(ovha_now_mono_ms() - t0 < 1500);
    assert_non_null(strstr(node_cache_redis_errmsg(c), "no reply"));

    /* Resumed: the data is still there once reconnected. */
    assert_int_equal(kill(r.pid, SIGCONT), 0);
    bool hit = false;
    for (int i = 0; i < 20 && !hit; i++) {
        assert_true(
            node_test_run_until(&loop, node_test_redis_connected, c, 5000));
        hit = node_test_redis_get_sync(&loop, c, "cn:alice", 8, &g) == 0;
    }
    assert_true(hit);
    node_test_redis_close(&loop, c);
    node_test_redis_cleanup(&r);
}

static void node_test_cache_redis_auth(void **state)
{
    struct node_test_redis r = { 0 };
    uv_loop_t loop;
    struct node_cache_redis *c;
    struct node_cache_redis *bad;
    struct node_cache_redis *none;
    struct node_cache_redis_stats st;
    struct node_cache_entry e;
    struct node_test_get g;

    (void)state;
    strcpy(r.password, "s3cret-pass");
    if (!node_test_redis_start(&r)) {
        skip();
    }
    uv_loop_init(&loop);
    c = node_test_redis_new(&loop, &r, "s3cret-pass");
    bad = node_test_redis_new(&loop, &r, "wrong");
    none = node_test_redis_new(&loop, &r, NULL);
    assert_true(node_test_run_until(&loop, node_test_redis_connected, c, 5000));
    assert_int_equal(node_cache_entry_init(&e, "{}", 2, 0, 0), 0);
    assert_int_equal(node_cache_redis_put(c, "cn:alice", 8, &e), 0);
    assert_int_equal(node_test_redis_get_sync(&loop, c, "cn:alice", 8, &g), 0);

    /* A wrong password never becomes usable. Without one the connection
     * is "up" but every command fails (NOAUTH): reported, never a hit. */
    node_test_run_until(&loop, node_test_never, NULL, 150);
    node_cache_redis_get_stats(bad, &st);
    assert_false(st.connected);
    assert_true(st.errors >= 1);
    assert_non_null(strstr(node_cache_redis_errmsg(bad), "AUTH"));
    assert_int_equal(
        node_cache_redis_get(bad, "cn:alice", 8, node_test_redis_get_cb, &g),
        -ENOTCONN);
    assert_int_equal(node_test_redis_get_sync(&loop, none, "cn:alice", 8, &g),
                     OVHA_EPROTO);

    /* Re-AUTH after a restart with the password. */
    node_test_redis_kill(&r);
    assert_true(
        node_test_run_until(&loop, node_test_redis_disconnected, c, 5000));
    assert_true(node_test_redis_start(&r));
    assert_true(node_test_run_until(&loop, node_test_redis_connected, c, 5000));
    assert_int_equal(node_cache_redis_put(c, "cn:alice", 8, &e), 0);
    assert_int_equal(node_test_redis_get_sync(&loop, c, "cn:alice", 8, &g), 0);
    node_cache_entry_clear(&e);

    node_cache_redis_close(bad, NULL, NULL);
    node_cache_redis_close(none, NULL, NULL);
    node_test_redis_close(&loop, c);
    node_test_redis_cleanup(&r);
}

/* Nothing listens: calls fail at once, close works while reconnecting. */
static void node_test_cache_redis_absent(void **state)
{
    struct node_test_redis r = { 0 };
    uv_loop_t loop;
    struct node_cache_redis *c;
    struct node_test_get g;

    (void)state;
    r.port = node_test_cache_free_port();
    uv_loop_init(&loop);
    c = node_test_redis_new(&loop, &r, NULL);
    assert_int_equal(
        node_cache_redis_get(c, "k", 1, node_test_redis_get_cb, &g), -ENOTCONN);
    node_test_run_until(&loop, node_test_never, NULL, 60);
    assert_false(node_test_redis_connected(c));
    assert_int_equal(node_cache_redis_del(c, "k", 1), -ENOTCONN);
    node_test_redis_close(&loop, c);
}

/* ---- file tier ---------------------------------------------------------- */

struct node_test_fop {
    bool done;
    int status;
    enum node_cache_file_result res;
    struct node_cache_entry entry;
    uint64_t age_ms;
    int seq; /* completion order */
    int *counter;
};

static void node_test_file_done_cb(void *data, int status)
{
    struct node_test_fop *op = data;

    op->done = true;
    op->status = status;
    if (op->counter != NULL) {
        op->seq = (*op->counter)++;
    }
}

static void node_test_file_get_cb(void *data,
                                  int status,
                                  enum node_cache_file_result res,
                                  const struct node_cache_entry *e,
                                  uint64_t age_ms)
{
    struct node_test_fop *op = data;

    op->done = true;
    op->status = status;
    op->res = res;
    op->age_ms = age_ms;
    if (op->counter != NULL) {
        op->seq = (*op->counter)++;
    }
    if (e != NULL) {
        assert_int_equal(
            node_cache_entry_init(&op->entry, e->value, e->value_len,
                                  e->stored_at_ms, e->ttl_ms),
            0);
        memcpy(op->entry.pw_salt, e->pw_salt, sizeof(e->pw_salt));
        memcpy(op->entry.pw_hash, e->pw_hash, sizeof(e->pw_hash));
    }
}

static struct node_cache_file *node_test_file_open(uv_loop_t *loop,
                                                   const char *path)
{
    struct node_cache_file *c = NULL;
    struct node_test_fop op = { 0 };

    assert_int_equal(
        node_cache_file_open(loop, path, node_test_file_done_cb, &op, &c), 0);
    assert_true(node_test_run_until(loop, node_test_flag, &op.done, 5000));
    assert_int_equal(op.status, 0);
    return c;
}

static void node_test_file_close(uv_loop_t *loop, struct node_cache_file *c)
{
    struct node_test_fop op = { 0 };

    node_cache_file_close(c, node_test_file_done_cb, &op);
    assert_true(node_test_run_until(loop, node_test_flag, &op.done, 5000));
    assert_int_equal(op.status, 0);
}

static int node_test_file_put(uv_loop_t *loop,
                              struct node_cache_file *c,
                              const char *key,
                              const struct node_cache_entry *e)
{
    struct node_test_fop op = { 0 };

    assert_int_equal(
        node_cache_file_put(c, key, e, node_test_file_done_cb, &op), 0);
    assert_true(node_test_run_until(loop, node_test_flag, &op.done, 5000));
    return op.status;
}

static void node_test_file_get(uv_loop_t *loop,
                               struct node_cache_file *c,
                               const char *key,
                               uint64_t max_stale,
                               struct node_test_fop *op)
{
    memset(op, 0, sizeof(*op));
    assert_int_equal(
        node_cache_file_get(c, key, max_stale, node_test_file_get_cb, op), 0);
    assert_true(node_test_run_until(loop, node_test_flag, &op->done, 5000));
}

struct node_test_dir {
    char dir[64];
    char path[128];
};

static void node_test_dir_make(struct node_test_dir *d)
{
    strcpy(d->dir, "/tmp/ovha-cache-file-XXXXXX");
    assert_non_null(mkdtemp(d->dir));
    snprintf(d->path, sizeof(d->path), "%s/cache.db", d->dir);
}

static void node_test_dir_remove(struct node_test_dir *d)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->dir);
    assert_int_equal(system(cmd), 0);
}

static void node_test_cache_file_restart(void **state)
{
    struct node_test_dir d;
    uv_loop_t loop;
    struct node_cache_file *c;
    struct node_cache_entry e;
    struct node_test_fop op;
    char wal[160];
    static const char json[] = "{\"groups\":[\"ops\",\"dev\"]}";

    (void)state;
    node_test_dir_make(&d);
    uv_loop_init(&loop);
    c = node_test_file_open(&loop, d.path);
    snprintf(wal, sizeof(wal), "%s-wal", d.path);

    assert_int_equal(node_cache_entry_init(&e, json, strlen(json), 0, 30000),
                     0);
    assert_int_equal(node_cache_entry_set_password(&e, "pa55word"), 0);
    assert_int_equal(node_test_file_put(&loop, c, "cn:alice", &e), 0);
    assert_int_equal(access(wal, F_OK), 0); /* WAL mode */
    node_cache_entry_clear(&e);
    assert_int_equal(node_cache_entry_init(&e, "{\"v\":1}", 7, 0, 1000), 0);
    assert_int_equal(node_test_file_put(&loop, c, "cn:bob|user:x", &e), 0);
    node_cache_entry_clear(&e);
    assert_int_equal(node_cache_entry_init(&e, "{\"v\":2}", 7, 0, 1000), 0);
    assert_int_equal(node_test_file_put(&loop, c, "cn:bob|user:x", &e), 0);
    node_cache_entry_clear(&e);
    node_test_file_close(&loop, c);

    /* Restart: a new object on the same file sees the last good answers. */
    c = node_test_file_open(&loop, d.path);
    node_test_file_get(&loop, c, "cn:alice", 60000, &op);
    assert_int_equal(op.status, 0);
    assert_int_equal(op.res, NODE_CACHE_FOUND);
    assert_int_equal(op.entry.value_len, strlen(json));
    assert_string_equal(op.entry.value, json);
    assert_int_equal(op.entry.ttl_ms, 30000);
    assert_true(op.entry.stored_at_ms > 0);
    assert_true(op.age_ms < 60000);
    assert_int_equal(node_cache_pw_check(&op.entry, "pa55word"), 0);
    assert_int_equal(node_cache_pw_check(&op.entry, "pa55wore"), -EACCES);
    assert_int_equal(node_cache_pw_check(&op.entry, ""), -EACCES);
    node_cache_entry_clear(&op.entry);

    node_test_file_get(&loop, c, "cn:bob|user:x", 60000, &op);
    assert_int_equal(op.res, NODE_CACHE_FOUND);
    assert_string_equal(op.entry.value, "{\"v\":2}");
    assert_int_equal(node_cache_pw_check(&op.entry, "x"), -EINVAL);
    node_cache_entry_clear(&op.entry);

    node_test_file_get(&loop, c, "cn:nobody", 60000, &op);
    assert_int_equal(op.status, 0);
    assert_int_equal(op.res, NODE_CACHE_MISS);

    struct node_test_fop del = { 0 };
    assert_int_equal(
        node_cache_file_del(c, "cn:alice", node_test_file_done_cb, &del), 0);
    node_test_file_get(&loop, c, "cn:alice", 60000, &op);
    assert_true(del.done);
    assert_int_equal(del.status, 0);
    assert_int_equal(op.res, NODE_CACHE_MISS);
    node_test_file_close(&loop, c);
    node_test_loop_finish(&loop);
    node_test_dir_remove(&d);
}

static void node_test_cache_file_stale(void **state)
{
    struct node_test_dir d;
    uv_loop_t loop;
    struct node_cache_file *c;
    struct node_cache_entry e;
    struct node_test_fop op;

    (void)state;
    node_test_dir_make(&d);
    uv_loop_init(&loop);
    c = node_test_file_open(&loop, d.path);
    /* Stored 10 s ago by the real clock. */
    assert_int_equal(
        node_cache_entry_init(&e, "{}", 2, ovha_now_real_ms() - 10000, 5000),
        0);
    assert_int_equal(node_test_file_put(&loop, c, "cn:old", &e), 0);
    node_cache_entry_clear(&e);

    node_test_file_get(&loop, c, "cn:old", 60000, &op);
    assert_int_equal(op.res, NODE_CACHE_FOUND);
    assert_true(op.age_ms >= 10000 && op.age_ms < 20000);
    node_cache_entry_clear(&op.entry);

    node_test_file_get(&loop, c, "cn:old", 1000, &op);
    assert_int_equal(op.status, 0);
    assert_int_equal(op.res, NODE_CACHE_STALE);
    assert_string_equal(op.entry.value, "{}"); /* still handed over */
    node_cache_entry_clear(&op.entry);

    /* The clock moves: the same entry turns stale for a looser bound. */
    ovha_clock_set_skew_ms(3600 * 1000);
    node_test_file_get(&loop, c, "cn:old", 60000, &op);
    ovha_clock_set_skew_ms(0);
    assert_int_equal(op.res, NODE_CACHE_STALE);
    assert_true(op.age_ms >= 3600 * 1000);
    node_cache_entry_clear(&op.entry);
    node_test_file_close(&loop, c);
    node_test_loop_finish(&loop);
    node_test_dir_remove(&d);
}

/* A failed open is reported, and later requests fail with its error
 * instead of touching a NULL database. */
static void node_test_cache_file_open_fails(void **state)
{
    uv_loop_t loop;
    struct node_cache_file *c = NULL;
    struct node_test_fop open_op = { 0 };
    struct node_test_fop op;

    (void)state;
    uv_loop_init(&loop);
    assert_int_equal(node_cache_file_open(&loop, "/nonexistent-ovha/x/c.db",
                                          node_test_file_done_cb, &open_op, &c),
                     0);
    node_test_file_get(&loop, c, "cn:alice", 1000, &op);
    assert_true(open_op.done);
    assert_true(open_op.status < 0);
    assert_int_equal(op.status, open_op.status);
    assert_int_equal(op.res, NODE_CACHE_MISS);
    assert_true(node_cache_file_errmsg(c)[0] != '\0');
    node_test_file_close(&loop, c);
    node_test_loop_finish(&loop);
}

#define NODE_TEST_FIFO_N 120

static void node_test_cache_file_fifo(void **state)
{
    struct node_test_dir d;
    uv_loop_t loop;
    struct node_cache_file *c;
    struct node_cache_entry e;
    struct node_test_fop *ops;
    struct node_test_fop closed = { 0 };
    int counter = 0;
    char val[32];

    (void)state;
    node_test_dir_make(&d);
    uv_loop_init(&loop);
    c = node_test_file_open(&loop, d.path);
    ops = calloc(2 * NODE_TEST_FIFO_N, sizeof(*ops));
    assert_non_null(ops);

    /* put v0, get, put v1, get, ... on one key, all queued at once: each
     * get must see the put just before it. */
    for (int i = 0; i < NODE_TEST_FIFO_N; i++) {
        snprintf(val, sizeof(val), "{\"v\":%d}", i);
        assert_int_equal(node_cache_entry_init(&e, val, strlen(val), 0, 0), 0);
        ops[2 * i].counter = &counter;
        ops[2 * i + 1].counter = &counter;
        assert_int_equal(
            node_cache_file_put(c, "cn:same", &e, node_test_file_done_cb,
                                &ops[2 * i]),
            0);
        node_cache_entry_clear(&e); /* the job owns its own copy */
        assert_int_equal(
            node_cache_file_get(c, "cn:same", 60000, node_test_file_get_cb,
                                &ops[2 * i + 1]),
            0);
    }
    assert_true(node_test_run_until(
        &loop, node_test_flag, &ops[2 * NODE_TEST_FIFO_N - 1].done, 20000));
    for (int i = 0; i < NODE_TEST_FIFO_N; i++) {
        snprintf(val, sizeof(val), "{\"v\":%d}", i);
        assert_int_equal(ops[2 * i].status, 0);
        assert_int_equal(ops[2 * i].seq, 2 * i);
        assert_int_equal(ops[2 * i + 1].seq, 2 * i + 1);
        assert_int_equal(ops[2 * i + 1].res, NODE_CACHE_FOUND);
        assert_string_equal(ops[2 * i + 1].entry.value, val);
        node_cache_entry_clear(&ops[2 * i + 1].entry);
    }

    /* Close with work queued: everything accepted before the close still
     * runs, in order, then the close completes; later calls are refused. */
    memset(ops, 0, 2 * NODE_TEST_FIFO_N * sizeof(*ops));
    counter = 0;
    for (int i = 0; i < 10; i++) {
        ops[i].counter = &counter;
        assert_int_equal(node_cache_file_get(c, "cn:same", 60000,
                                             node_test_file_get_cb, &ops[i]),
                         0);
    }
    node_cache_file_close(c, node_test_file_done_cb, &closed);
    assert_true(node_test_run_until(&loop, node_test_flag, &closed.done, 5000));
    assert_int_equal(closed.status, 0);
    assert_int_equal(counter, 10);
    assert_int_equal(ops[0].status, 0); /* was running */
    assert_int_equal(ops[0].res, NODE_CACHE_FOUND);
    node_cache_entry_clear(&ops[0].entry);
    for (int i = 1; i < 10; i++) {
        assert_int_equal(ops[i].status, 0);
        assert_int_equal(ops[i].res, NODE_CACHE_FOUND);
        assert_int_equal(ops[i].seq, i);
        node_cache_entry_clear(&ops[i].entry);
    }
    free(ops);
    node_test_loop_finish(&loop);
    node_test_dir_remove(&d);
}

static void node_test_cache_pw(void **state)
{
    struct node_cache_entry a = { 0 };
    struct node_cache_entry b = { 0 };

    (void)state;
    assert_int_equal(node_cache_pw_check(&a, "x"), -EINVAL);
    assert_int_equal(node_cache_entry_set_password(&a, "secret"), 0);
    assert_int_equal(node_cache_entry_set_password(&b, "secret"), 0);
    assert_int_equal(strlen(a.pw_salt), NODE_CACHE_SALT_HEX_LEN);
    assert_int_equal(strlen(a.pw_hash), NODE_CACHE_HASH_HEX_LEN);
    /* Fresh salt each time: equal passwords do not give equal hashes. */
    assert_string_not_equal(a.pw_salt, b.pw_salt);
    assert_string_not_equal(a.pw_hash, b.pw_hash);
    assert_null(strstr(a.pw_hash, "secret"));
    assert_int_equal(node_cache_pw_check(&a, "secret"), 0);
    assert_int_equal(node_cache_pw_check(&b, "secret"), 0);
    assert_int_equal(node_cache_pw_check(&a, "Secret"), -EACCES);
    a.pw_salt[0] = 'z';
    assert_int_equal(node_cache_pw_check(&a, "secret"), -EINVAL);

    /* Known answer: salt 00..0f, password "pw". */
    uint8_t salt[16];
    uint8_t buf[18];
    uint8_t dig[OVHA_SHA256_LEN];
    for (int i = 0; i < 16; i++) {
        salt[i] = (uint8_t)i;
    }
    memcpy(buf, salt, 16);
    memcpy(buf + 16, "pw", 2);
    ovha_sha256(buf, sizeof(buf), dig);
    ovha_hex(salt, 16, a.pw_salt);
    ovha_hex(dig, sizeof(dig), a.pw_hash);
    assert_int_equal(node_cache_pw_check(&a, "pw"), 0);
}

/* Disk full: the file lives on a 256 KiB tmpfs mounted in a private mount
 * namespace of a child process. Needs CAP_SYS_ADMIN; skips otherwise. */
/* The disk-full scenario runs in a forked child, where a cmocka assert
 * would longjmp into the child's copy of the runner: so no asserts here,
 * only checks that make the child exit non-zero. */
#define NODE_TEST_CHILD_CHECK(cond)                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "diskfull child: line %d: %s\n", __LINE__, #cond); \
            return 1;                                                          \
        }                                                                      \
    } while (0)

/* Puts key=value and runs the loop for the result; *ret_status gets it. */
static int node_test_child_put(uv_loop_t *loop,
                               struct node_cache_file *c,
                               const char *key,
                               const char *value,
                               size_t len,
                               int *ret_status)
{
    struct node_cache_entry e;
    struct node_test_fop op = { 0 };

    NODE_TEST_CHILD_CHECK(node_cache_entry_init(&e, value, len, 0, 0) == 0);
    NODE_TEST_CHILD_CHECK(
        node_cache_file_put(c, key, &e, node_test_file_done_cb, &op) == 0);
    node_cache_entry_clear(&e);
    NODE_TEST_CHILD_CHECK(
        node_test_run_until(loop, node_test_flag, &op.done, 5000));
    *ret_status = op.status;
    return 0;
}

static int node_test_child_found(uv_loop_t *loop,
                                 struct node_cache_file *c,
                                 const char *key)
{
    struct node_test_fop op = { 0 };

    NODE_TEST_CHILD_CHECK(
        node_cache_file_get(c, key, 60000, node_test_file_get_cb, &op) == 0);
    NODE_TEST_CHILD_CHECK(
        node_test_run_until(loop, node_test_flag, &op.done, 5000));
    node_cache_entry_clear(&op.entry);
    NODE_TEST_CHILD_CHECK(op.status == 0);
    NODE_TEST_CHILD_CHECK(op.res == NODE_CACHE_FOUND);
    return 0;
}

static int node_test_cache_diskfull_child(const char *dir)
{
    uv_loop_t loop;
    struct node_cache_file *c = NULL;
    struct node_test_fop op = { 0 };
    char path[160];
    static char big[32 * 1024];
    int err = 0;
    int puts_ok = 0;

    if (unshare(CLONE_NEWNS) != 0 ||
        mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", dir, "tmpfs", 0, "size=256k") != 0) {
        return 77;
    }
    snprintf(path, sizeof(path), "%s/cache.db", dir);
    NODE_TEST_CHILD_CHECK(uv_loop_init(&loop) == 0);
    NODE_TEST_CHILD_CHECK(node_cache_file_open(&loop, path,
                                               node_test_file_done_cb, &op,
                                               &c) == 0);
    NODE_TEST_CHILD_CHECK(
        node_test_run_until(&loop, node_test_flag, &op.done, 5000));
    NODE_TEST_CHILD_CHECK(op.status == 0);
    NODE_TEST_CHILD_CHECK(node_test_child_put(&loop, c, "cn:keep",
                                              "{\"keep\":1}", 10, &err) == 0);
    NODE_TEST_CHILD_CHECK(err == 0);

    memset(big, 'x', sizeof(big));
    for (int i = 0; i < 64 && err == 0; i++) {
        char key[32];

        snprintf(key, sizeof(key), "cn:big%d", i);
        NODE_TEST_CHILD_CHECK(
            node_test_child_put(&loop, c, key, big, sizeof(big), &err) == 0);
        puts_ok += err == 0;
    }
    if (err != -ENOSPC) {
        fprintf(stderr, "diskfull: err %d after %d puts\n", err, puts_ok);
        return 1;
    }
    NODE_TEST_CHILD_CHECK(puts_ok >= 1);
    /* Still working after the error: earlier answers are readable. */
    NODE_TEST_CHILD_CHECK(node_test_child_found(&loop, c, "cn:keep") == 0);
    NODE_TEST_CHILD_CHECK(node_test_child_found(&loop, c, "cn:big0") == 0);
    memset(&op, 0, sizeof(op));
    node_cache_file_close(c, node_test_file_done_cb, &op);
    NODE_TEST_CHILD_CHECK(
        node_test_run_until(&loop, node_test_flag, &op.done, 5000));
    uv_run(&loop, UV_RUN_DEFAULT);
    NODE_TEST_CHILD_CHECK(uv_loop_close(&loop) == 0);
    umount(dir);
    return 0;
}

static void node_test_cache_file_diskfull(void **state)
{
    struct node_test_dir d;
    pid_t pid;
    int st = 0;

    (void)state;
    node_test_dir_make(&d);
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        _exit(node_test_cache_diskfull_child(d.dir));
    }
    assert_int_equal(waitpid(pid, &st, 0), pid);
    node_test_dir_remove(&d);
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) == 77) {
        skip();
    }
    assert_int_equal(WEXITSTATUS(st), 0);
}

int node_test_cache(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(node_test_cache_pw),
        cmocka_unit_test(node_test_cache_redis_basic),
        cmocka_unit_test(node_test_cache_redis_binary_keys),
        cmocka_unit_test(node_test_cache_redis_down_up),
        cmocka_unit_test(node_test_cache_redis_stalled),
        cmocka_unit_test(node_test_cache_redis_auth),
        cmocka_unit_test(node_test_cache_redis_absent),
        cmocka_unit_test(node_test_cache_file_restart),
        cmocka_unit_test(node_test_cache_file_stale),
        cmocka_unit_test(node_test_cache_file_fifo),
        cmocka_unit_test(node_test_cache_file_open_fails),
        cmocka_unit_test(node_test_cache_file_diskfull),
    };

    return cmocka_run_group_tests_name("node_cache", tests, NULL,
                                       node_test_redis_teardown_all);
}
