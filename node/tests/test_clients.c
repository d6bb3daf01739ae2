/* The connection path against a scripted management server on a real
 * unix socket: CONNECT -> client-auth with the decided fields, deny,
 * deadline deny, REAUTH, session table, kill, resync after reconnect. */
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
#include "mgmt/mgmt.h"
#include "node/clients.h"
#include "node/config.h"
#include "node/decide.h"
#include "node_tests.h"

/* ---- scripted fake openvpn management endpoint ----------------------------
 */

struct fake_mgmt {
    uv_pipe_t server;
    uv_pipe_t *client; /* one per accepted connection */
    bool connected;
    struct ovha_buf in;      /* partial input line */
    struct ovha_buf log;     /* every command received, one per line */
    bool in_block;           /* inside client-auth ... END */
    const char *status_rows; /* CLIENT_LIST rows for `status 3` */
};

static void fake_write(struct fake_mgmt *f, const char *text)
{
    uv_buf_t b = uv_buf_init((char *)text, (unsigned)strlen(text));
    /* Small writes to a local socket complete at once. */
    int rv = uv_try_write((uv_stream_t *)f->client, &b, 1);
    assert_int_equal(rv, (int)strlen(text));
}

static void fake_answer(struct fake_mgmt *f, const char *line)
{
    ovha_buf_printf(&f->log, "%s\n", line);
    if (f->in_block) {
        if (strcmp(line, "END") == 0) {
            f->in_block = false;
            fake_write(f, "SUCCESS: client-auth command succeeded\r\n");
        }
        return;
    }
    if (strncmp(line, "client-auth ", 12) == 0) {
        f->in_block = true;
    } else if (strcmp(line, "status 3") == 0) {
        char buf[4096];
        snprintf(buf, sizeof(buf),
                 "TITLE\tOpenVPN 2.6.14 fake\r\n"
                 "TIME\t2026-11-24 21:48:07\t1795556887\r\n"
                 "HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual "
                 "Address\tVirtual IPv6 Address\tBytes Received\tBytes "
                 "Sent\tConnected Since\tConnected Since (time_t)\t"
                 "Username\tClient ID\tPeer ID\tData Channel Cipher\r\n"
                 "%sGLOBAL_STATS\tMax bcast/mcast queue length\t0\r\n"
                 "END\r\n",
                 f->status_rows != NULL ? f->status_rows : "");
        fake_write(f, buf);
    } else if (strncmp(line, "client-deny", 11) == 0) {
        fake_write(f, "SUCCESS: client-deny command succeeded\r\n");
    } else {
        fake_write(f, "SUCCESS: ok\r\n");
    }
}

static void fake_alloc_cb(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    (void)h;
    static char slab[65536];
    (void)size;
    *buf = uv_buf_init(slab, sizeof(slab));
}

static void fake_free_cb(uv_handle_t *h)
{
    free(h);
}

static void fake_drop(struct fake_mgmt *f)
{
    if (f->client != NULL) {
        uv_close((uv_handle_t *)f->client, fake_free_cb);
        f->client = NULL;
    }
    f->connected = false;
    f->in_block = false;
    ovha_buf_reset(&f->in);
}

static void fake_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct fake_mgmt *f = s->data;
    if (n < 0) {
        if ((uv_pipe_t *)s == f->client) {
            fake_drop(f);
        }
        return;
    }
    ovha_buf_append(&f->in, buf->base, (size_t)n);
    char *nl;
    while (f->in.len > 0 && (nl = memchr(f->in.data, '\n', f->in.len))) {
        *nl = '\0';
        char line[4096];
        ovha_strlcpy(line, f->in.data, sizeof(line));
        ovha_buf_consume(&f->in, (size_t)(nl - f->in.data) + 1);
        fake_answer(f, line);
    }
}

static void fake_connection_cb(uv_stream_t *server, int status)
{
    struct fake_mgmt *f = server->data;
    assert_int_equal(status, 0);
    fake_drop(f);
    f->client = calloc(1, sizeof(*f->client));
    uv_pipe_init(server->loop, f->client, 0);
    f->client->data = f;
    assert_int_equal(uv_accept(server, (uv_stream_t *)f->client), 0);
    f->connected = true;
    uv_read_start((uv_stream_t *)f->client, fake_alloc_cb, fake_read_cb);
    fake_write(f,
               ">INFO:OpenVPN Management Interface Version 5 -- type "
               "'help' for more info\r\n");
}

/* ---- fixture ---------------------------------------------------------------
 */

struct test_env {
    uv_loop_t loop;
    uv_timer_t tick;
    char dir[64];
    char path[128];
    struct fake_mgmt fake;
    struct mgmt_conn *mgmt;
    struct node_clients *clients;
    struct node_cfg *cfg;
    struct node_policy *policy;
    struct node_decider decider;
    bool up;
};

static const char *test_clients_yaml =
    "node:\n  id: gw1\n  state_dir: /tmp/x\n"
    "openvpn:\n  ca: /x/ca\n  cert: /x/c\n  key: /x/k\n"
    "  network: 100.64.0.0/24\n"
    "policy:\n  default: deny\n  default_reason: unknown client\n"
    "  pool: 100.64.0.128/25\n"
    "  clients:\n"
    "    - cn: alice\n      ip: 100.64.0.10\n"
    "      routes: [100.64.100.0/24]\n      iroutes: [100.96.1.0/24]\n"
    "    - cn: 'bad \"cn\" x'\n";

static void test_event_cb(struct mgmt_conn *m,
                          const struct mgmt_event *ev,
                          void *data)
{
    (void)m;
    struct test_env *e = data;
    node_clients_on_event(e->clients, ev);
}

static void test_state_cb(struct mgmt_conn *m, bool up, void *data)
{
    (void)m;
    struct test_env *e = data;
    e->up = up;
    node_clients_on_link(e->clients, up);
}

static void test_tick_cb(uv_timer_t *t)
{
    (void)t; /* keeps UV_RUN_ONCE from blocking for long */
}

/* Steps the loop until pred holds; fails after ~3 s. */
static bool test_step_until(struct test_env *e,
                            bool (*pred)(struct test_env *, const void *),
                            const void *arg)
{
    uint64_t end = ovha_now_mono_ms() + 3000;
    while (!pred(e, arg)) {
        if (ovha_now_mono_ms() > end) {
            return false;
        }
        uv_run(&e->loop, UV_RUN_ONCE);
    }
    return true;
}

static bool test_is_up(struct test_env *e, const void *arg)
{
    (void)arg;
    return e->up;
}

static bool test_log_has(struct test_env *e, const void *arg)
{
    return e->fake.log.data != NULL && strstr(e->fake.log.data, arg) != NULL;
}

static int test_clients_setup(void **state)
{
    struct test_env *e = calloc(1, sizeof(*e));
    char err[512];
    uv_loop_init(&e->loop);
    uv_timer_init(&e->loop, &e->tick);
    uv_timer_start(&e->tick, test_tick_cb, 5, 5);
    strcpy(e->dir, "/tmp/ovha-clients-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    snprintf(e->path, sizeof(e->path), "%s/mgmt.sock", e->dir);
    uv_pipe_init(&e->loop, &e->fake.server, 0);
    e->fake.server.data = &e->fake;
    assert_int_equal(uv_pipe_bind(&e->fake.server, e->path), 0);
    assert_int_equal(
        uv_listen((uv_stream_t *)&e->fake.server, 4, fake_connection_cb), 0);
    if (node_cfg_load_string("clients.yaml", test_clients_yaml, &e->cfg, err,
                             sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    assert_int_equal(node_policy_new(e->cfg, &e->policy), 0);
    struct node_rules rules;
    node_policy_rules(e->policy, &rules);
    node_policy_decider(e->policy, rules, &e->decider);
    struct mgmt_conn_config mc = { .path = e->path,
                                   .cmd_timeout_ms = 2000,
                                   .backoff_min_ms = 10,
                                   .backoff_max_ms = 50,
                                   .bytecount_interval = 5 };
    assert_int_equal(
        mgmt_conn_new(&e->loop, &mc, test_event_cb, test_state_cb, e, &e->mgmt),
        0);
    assert_int_equal(
        node_clients_new(&e->loop, e->mgmt, e->decider, 200, &e->clients), 0);
    assert_int_equal(mgmt_conn_start(e->mgmt), 0);
    assert_true(test_step_until(e, test_is_up, NULL));
    *state = e;
    return 0;
}

static void test_noop_close_cb(void *data)
{
    (void)data;
}

static int test_clients_teardown(void **state)
{
    struct test_env *e = *state;
    node_clients_close(e->clients, test_noop_close_cb, NULL);
    mgmt_conn_close(e->mgmt, test_noop_close_cb, NULL);
    fake_drop(&e->fake);
    uv_close((uv_handle_t *)&e->tick, NULL);
    uv_close((uv_handle_t *)&e->fake.server, NULL);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    node_policy_free(e->policy);
    node_cfg_free(e->cfg);
    ovha_buf_free(&e->fake.in);
    ovha_buf_free(&e->fake.log);
    unlink(e->path);
    rmdir(e->dir);
    free(e);
    return 0;
}

static void test_connect(struct test_env *e,
                         const char *kind,
                         int cid,
                         int kid,
                         const char *cn)
{
    char buf[1024];
    snprintf(buf, sizeof(buf),
             ">CLIENT:%s,%d,%d\r\n>CLIENT:ENV,untrusted_ip=198.18.0.11\r\n"
             ">CLIENT:ENV,common_name=%s\r\n>CLIENT:ENV,username=\r\n"
             ">CLIENT:ENV,END\r\n",
             kind, cid, kid, cn);
    fake_write(&e->fake, buf);
}

static void test_clients_allow_pushes_exact_fields(void **state)
{
    struct test_env *e = *state;
    test_connect(e, "CONNECT", 7, 1, "alice");
    assert_true(test_step_until(e, test_log_has, "END\n"));
    assert_non_null(strstr(e->fake.log.data,
                           "client-auth 7 1\n"
                           "ifconfig-push 100.64.0.10 255.255.255.0\n"
                           "push \"route 100.64.100.0 255.255.255.0\"\n"
                           "iroute 100.96.1.0 255.255.255.0\n"
                           "END\n"));
    const struct node_session *s;
    assert_int_equal(node_clients_sessions(e->clients, &s), 1);
    assert_string_equal(s[0].cn, "alice");
    assert_int_equal(s[0].state, NODE_SESSION_AUTHORIZED);
    fake_write(&e->fake,
               ">CLIENT:ESTABLISHED,7\r\n"
               ">CLIENT:ENV,common_name=alice\r\n"
               ">CLIENT:ENV,ifconfig_pool_remote_ip=100.64.0.10\r\n"
               ">CLIENT:ENV,trusted_ip=198.18.0.11\r\n"
               ">CLIENT:ENV,trusted_port=40000\r\n"
               ">CLIENT:ENV,time_unix=1795556867\r\n"
               ">CLIENT:ENV,END\r\n"
               ">BYTECOUNT_CLI:7,1234,5678\r\n"
               ">INFO:marker\r\n");
    for (int i = 0; i < 50; i++) {
        uv_run(&e->loop, UV_RUN_ONCE);
    }
    assert_int_equal(node_clients_sessions(e->clients, &s), 1);
    assert_int_equal(s[0].state, NODE_SESSION_ESTABLISHED);
    assert_string_equal(s[0].real_addr, "198.18.0.11:40000");
    assert_int_equal(s[0].bytes_in, 1234);
    assert_int_equal(s[0].bytes_out, 5678);
    assert_int_equal(s[0].since, 1795556867);
    /* Automatic kills (drain, fencing) are not repeated while openvpn is
     * still dropping the client; the operator's kill always goes out. */
    assert_int_equal(node_clients_kill_all(e->clients, "RESTART,[N]"), 1);
    assert_true(test_step_until(e, test_log_has, "client-kill 7 RESTART,[N]"));
    assert_int_equal(node_clients_kill_all(e->clients, "RESTART,[N]"), 0);
    /* kill, then DISCONNECT empties the table */
    assert_int_equal(node_clients_kill_cn(e->clients, "alice", NULL), 1);
    assert_true(test_step_until(e, test_log_has, "client-kill 7\n"));
    fake_write(&e->fake, ">CLIENT:DISCONNECT,7\r\n>CLIENT:ENV,END\r\n");
    for (int i = 0; i < 50 && node_clients_sessions(e->clients, &s) > 0; i++) {
        uv_run(&e->loop, UV_RUN_ONCE);
    }
    assert_int_equal(node_clients_sessions(e->clients, &s), 0);
}

static void test_clients_deny_unknown_and_hostile_cn(void **state)
{
    struct test_env *e = *state;
    test_connect(e, "CONNECT", 3, 1, "stranger");
    assert_true(test_step_until(e, test_log_has,
                                "client-deny 3 1 \"unknown client\" "
                                "\"Access denied\"\n"));
    /* A CN with quotes is allowed by its exact rule: the CN never enters
     * a command, so nothing can be injected. */
    test_connect(e, "CONNECT", 4, 1, "bad \"cn\" x");
    assert_true(test_step_until(e, test_log_has, "client-auth 4 1\n"));
    assert_true(test_step_until(e, test_log_has,
                                "ifconfig-push 100.64.0.129 "
                                "255.255.255.0\nEND\n"));
}

static void test_clients_reauth(void **state)
{
    struct test_env *e = *state;
    test_connect(e, "REAUTH", 7, 3, "alice");
    assert_true(test_step_until(e, test_log_has, "client-auth-nt 7 3\n"));
    test_connect(e, "REAUTH", 8, 3, "stranger");
    assert_true(test_step_until(e, test_log_has, "client-deny 8 3 "));
}

/* A decider that never answers: the deadline must. */
static int test_silent_decide(void *impl,
                              const struct node_decision_req *req,
                              node_decide_cb cb,
                              void *data,
                              void **ret_handle)
{
    (void)impl;
    (void)req;
    (void)cb;
    (void)data;
    *ret_handle = (void *)1;
    return 0;
}

static int test_silent_cancels;

static void test_silent_cancel(void *impl, void *handle)
{
    (void)impl;
    assert_ptr_equal(handle, (void *)1);
    test_silent_cancels++;
}

static const struct node_decider_ops test_silent_ops = {
    .decide = test_silent_decide,
    .cancel = test_silent_cancel,
};

static void test_clients_deadline_denies(void **state)
{
    struct test_env *e = *state;
    struct node_clients *silent;
    struct node_decider d = { .ops = &test_silent_ops, .impl = NULL };
    assert_int_equal(node_clients_new(&e->loop, e->mgmt, d, 50, &silent), 0);
    struct node_clients *saved = e->clients;
    e->clients = silent;
    test_silent_cancels = 0;
    test_connect(e, "CONNECT", 9, 1, "alice");
    assert_true(test_step_until(e, test_log_has,
                                "client-deny 9 1 \"decision deadline "
                                "exceeded\""));
    assert_int_equal(test_silent_cancels, 1);
    assert_int_equal(node_clients_pending(silent), 0);
    struct node_clients_stats st;
    node_clients_get_stats(silent, &st);
    assert_int_equal(st.deadline_denied, 1);
    node_clients_close(silent, test_noop_close_cb, NULL);
    e->clients = saved;
}

static bool test_nsessions_is(struct test_env *e, const void *arg)
{
    const struct node_session *s;
    return node_clients_sessions(e->clients, &s) == *(const size_t *)arg;
}

static void test_clients_resync_after_reconnect(void **state)
{
    struct test_env *e = *state;
    e->fake.status_rows =
        "CLIENT_LIST\tbob\t198.18.0.12:5000\t100.64.0.130\t\t10\t20\t"
        "2026-11-24 21:47:47\t1795556867\tUNDEF\t12\t0\tAES-256-GCM\r\n"
        "CLIENT_LIST\twaiting\t198.18.0.13:5000\t\t\t0\t0\t"
        "2026-11-24 21:47:47\t1795556867\tUNDEF\t13\t1\tBF-CBC\r\n";
    /* Drop the link: the conn reconnects, recovery kills cid 13 and the
     * table is rebuilt from status 3 with bob only. */
    e->up = false;
    fake_drop(&e->fake);
    assert_true(test_step_until(e, test_is_up, NULL));
    size_t one = 1;
    assert_true(test_step_until(e, test_nsessions_is, &one));
    assert_true(test_step_until(e, test_log_has, "client-kill 13"));
    const struct node_session *s;
    node_clients_sessions(e->clients, &s);
    assert_string_equal(s[0].cn, "bob");
    assert_string_equal(s[0].vpn_ip, "100.64.0.130");
    assert_int_equal(s[0].cid, 12);
}

int node_test_clients(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_clients_allow_pushes_exact_fields,
                                        test_clients_setup,
                                        test_clients_teardown),
        cmocka_unit_test_setup_teardown(
            test_clients_deny_unknown_and_hostile_cn, test_clients_setup,
            test_clients_teardown),
        cmocka_unit_test_setup_teardown(test_clients_reauth, test_clients_setup,
                                        test_clients_teardown),
        cmocka_unit_test_setup_teardown(test_clients_deadline_denies,
                                        test_clients_setup,
                                        test_clients_teardown),
        cmocka_unit_test_setup_teardown(test_clients_resync_after_reconnect,
                                        test_clients_setup,
                                        test_clients_teardown),
    };
    return cmocka_run_group_tests_name("clients", tests, NULL, NULL);
}
