/* Connection tests against a fake management server: a uv_pipe server in
 * the same loop, stepped with UV_RUN_NOWAIT (no sleeps; waits are bounded
 * by a wall-clock deadline). */
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
#include <uv.h>

#include "mgmt/tests/mgmt_test.h"
#include "mgmt/tests/tests.h"

/* ---- fake server -------------------------------------------------------- */

/* The server's receive buffer uses plain malloc so that the allocation
 * failure injection aimed at the connection never touches the harness. */
struct srv_buf {
    char *data;
    size_t len;
    size_t cap;
};

struct srv {
    uv_loop_t *loop;
    uv_pipe_t listener;
    bool listening;
    uv_pipe_t *peer;
    struct srv_buf rx;
    bool auto_reply; /* answer every command like a daemon would */
    bool in_block;   /* auto_reply: inside a client-auth block */
    int auto_kills;  /* auto_reply: client-kill commands seen */
    int accepts;
    int peer_eofs;
    char dir[64];
    char path[128];
};

static void srv_buf_append(struct srv_buf *b, const char *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->data = realloc(b->data, b->cap);
        assert_non_null(b->data);
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void srv_buf_reset(struct srv_buf *b)
{
    b->len = 0;
    if (b->data != NULL) {
        b->data[0] = '\0';
    }
}

static void srv_send(struct srv *s, const char *text);
static void srv_auto(struct srv *s);

static void srv_peer_closed(uv_handle_t *h)
{
    free(h);
}

static void srv_drop(struct srv *s)
{
    if (s->peer != NULL) {
        uv_close((uv_handle_t *)s->peer, srv_peer_closed);
        s->peer = NULL;
    }
}

static void srv_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    static char rbuf[65536];
    (void)hint;
    *buf = uv_buf_init(rbuf, sizeof(rbuf));
}

static void srv_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct srv *s = st->data;
    if (n > 0) {
        srv_buf_append(&s->rx, buf->base, (size_t)n);
        if (s->auto_reply) {
            srv_auto(s);
        }
        return;
    }
    if (n < 0) {
        s->peer_eofs++;
        if ((uv_stream_t *)s->peer == st) {
            s->peer = NULL;
        }
        uv_close((uv_handle_t *)st, srv_peer_closed);
    }
}

static void srv_on_conn(uv_stream_t *l, int status)
{
    struct srv *s = l->data;
    assert_int_equal(status, 0);
    uv_pipe_t *p = malloc(sizeof(*p));
    uv_pipe_init(s->loop, p, 0);
    p->data = s;
    assert_int_equal(uv_accept(l, (uv_stream_t *)p), 0);
    srv_drop(s);
    s->peer = p;
    s->accepts++;
    srv_buf_reset(&s->rx);
    s->in_block = false;
    uv_read_start((uv_stream_t *)p, srv_alloc, srv_read);
    if (s->auto_reply) {
        srv_send(s, ">INFO:OpenVPN Management Interface Version 5\r\n");
    }
}

static void srv_listen(struct srv *s)
{
    assert_int_equal(uv_pipe_init(s->loop, &s->listener, 0), 0);
    s->listener.data = s;
    assert_int_equal(uv_pipe_bind(&s->listener, s->path), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&s->listener, 4, srv_on_conn), 0);
    s->listening = true;
}

static void srv_written(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static void srv_send(struct srv *s, const char *text)
{
    assert_non_null(s->peer);
    size_t n = strlen(text);
    uv_write_t *w = malloc(sizeof(*w) + n);
    char *copy = (char *)(w + 1);
    memcpy(copy, text, n);
    uv_buf_t b = uv_buf_init(copy, (unsigned)n);
    assert_int_equal(uv_write(w, (uv_stream_t *)s->peer, &b, 1, srv_written),
                     0);
}

/* Answers each complete command line in rx like openvpn 2.6 would. */
static void srv_auto(struct srv *s)
{
    char *nl;
    while (s->peer != NULL && (nl = memchr(s->rx.data, '\n', s->rx.len))) {
        *nl = '\0';
        const char *line = s->rx.data;
        if (s->in_block) {
            if (strcmp(line, "END") == 0) {
                s->in_block = false;
                srv_send(s, "SUCCESS: client-auth command succeeded\r\n");
            }
        } else if (strncmp(line, "client-auth ", 12) == 0) {
            s->in_block = true;
        } else if (strcmp(line, "status 3") == 0) {
            srv_send(s,
                     "TITLE\tx\r\nCLIENT_LIST\tc5\t198.18.0.11:1\t\t\t1\t2"
                     "\tx\t3\tUNDEF\t5\t0\tBF-CBC\r\nEND\r\n");
        } else if (strncmp(line, "version ", 8) != 0) {
            s->auto_kills += strncmp(line, "client-kill ", 12) == 0;
            srv_send(s, "SUCCESS: ok\r\n");
        }
        size_t used = (size_t)(nl + 1 - s->rx.data);
        memmove(s->rx.data, nl + 1, s->rx.len - used);
        s->rx.len -= used;
    }
}

/* ---- fixture ------------------------------------------------------------ */

#define MAXR 32
struct fx {
    uv_loop_t loop;
    struct srv srv;
    struct mgmt_conn *m;
    struct mgmt_conn_config cfg;
    int ups, downs;
    bool closed;
    struct mgmt_test_rec ev;
    int nreplies;
    int status[MAXR];
    char reply[MAXR][128];
    bool send_in_cb; /* reply callback tries mgmt_conn_send */
    int send_in_cb_rv;
};

#define STEP_UNTIL(f, cond)                         \
    do {                                            \
        uint64_t dl_ = uv_hrtime() + 3000000000ull; \
        while (!(cond) && uv_hrtime() < dl_) {      \
            uv_run(&(f)->loop, UV_RUN_NOWAIT);      \
        }                                           \
        assert_true(cond);                          \
    } while (0)

/* Runs the loop a while so anything that would happen does. */
static void step_some(struct fx *f)
{
    for (int i = 0; i < 200; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
    }
}

static void on_event(struct mgmt_conn *m,
                     const struct mgmt_event *ev,
                     void *data)
{
    struct fx *f = data;
    assert_ptr_equal(m, f->m);
    mgmt_test_rec_cb(ev, &f->ev);
}

static void on_state(struct mgmt_conn *m, bool up, void *data)
{
    struct fx *f = data;
    assert_ptr_equal(m, f->m);
    assert_int_equal(mgmt_conn_is_up(m), up);
    if (up) {
        f->ups++;
    } else {
        f->downs++;
    }
}

static void on_reply(struct mgmt_conn *m,
                     int status,
                     const struct mgmt_reply *r,
                     void *data)
{
    struct fx *f = data;
    assert_true(f->nreplies < MAXR);
    int i = f->nreplies++;
    f->status[i] = status;
    if (r->text != NULL) {
        snprintf(f->reply[i], sizeof(f->reply[i]), "%s", r->text);
    } else {
        snprintf(f->reply[i], sizeof(f->reply[i]), "block:%zu:%s", r->nlines,
                 r->nlines > 0 ? r->lines[0] : "");
    }
    if (f->send_in_cb) {
        f->send_in_cb_rv = mgmt_conn_send(m, "pid\n", 4, NULL, NULL);
    }
}

static void on_closed(void *data)
{
    struct fx *f = data;
    f->closed = true;
}

static void fx_init(struct fx *f, bool listen)
{
    memset(f, 0, sizeof(*f));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->srv.loop = &f->loop;
    snprintf(f->srv.dir, sizeof(f->srv.dir), "/tmp/ovha-mgmt-XXXXXX");
    assert_non_null(mkdtemp(f->srv.dir));
    snprintf(f->srv.path, sizeof(f->srv.path), "%s/mgmt.sock", f->srv.dir);
    if (listen) {
        srv_listen(&f->srv);
    }
    mgmt_test_rec_init(&f->ev);
    f->cfg.path = f->srv.path;
    f->cfg.cmd_timeout_ms = 2000;
    f->cfg.backoff_min_ms = 1;
    f->cfg.backoff_max_ms = 8;
    f->cfg.bytecount_interval = 5;
    f->cfg.env_filter = 0;
}

static void fx_start(struct fx *f)
{
    assert_int_equal(
        mgmt_conn_new(&f->loop, &f->cfg, on_event, on_state, f, &f->m), 0);
    assert_int_equal(mgmt_conn_start(f->m), 0);
}

static void fx_close_conn(struct fx *f)
{
    if (f->m != NULL) {
        mgmt_conn_close(f->m, on_closed, f);
        STEP_UNTIL(f, f->closed);
        f->m = NULL;
    }
}

static void listener_closed(uv_handle_t *h)
{
    (void)h;
}

static void fx_free(struct fx *f)
{
    fx_close_conn(f);
    srv_drop(&f->srv);
    if (f->srv.listening) {
        uv_close((uv_handle_t *)&f->srv.listener, listener_closed);
    }
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    unlink(f->srv.path);
    rmdir(f->srv.dir);
    free(f->srv.rx.data);
    mgmt_test_rec_free(&f->ev);
}

/* Waits for exactly want to arrive at the server, then consumes it. */
static void expect_rx(struct fx *f, const char *want)
{
    size_t n = strlen(want);
    STEP_UNTIL(f, f->srv.rx.len >= n);
    if (f->srv.rx.len != n || memcmp(f->srv.rx.data, want, n) != 0) {
        fail_msg("server got '%.*s', want '%s'", (int)f->srv.rx.len,
                 f->srv.rx.data, want);
    }
    srv_buf_reset(&f->srv.rx);
}

/* Nothing more reaches the server (one command in flight). */
static void expect_quiet(struct fx *f)
{
    step_some(f);
    if (f->srv.rx.len != 0) {
        fail_msg("unexpected bytes at server: '%.*s'", (int)f->srv.rx.len,
                 f->srv.rx.data);
    }
}

#define STATUS_HEAD                                                       \
    "TITLE\tOpenVPN 2.6.14 x86_64-pc-linux-gnu\r\n"                       \
    "TIME\t2026-11-24 21:48:07\t1795556887\r\n"                           \
    "HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\t"   \
    "Virtual IPv6 Address\tBytes Received\tBytes Sent\tConnected Since\t" \
    "Connected Since (time_t)\tUsername\tClient ID\tPeer ID\t"            \
    "Data Channel Cipher\r\n"
#define ROW_UP(cid)                                         \
    "CLIENT_LIST\tc" #cid "\t198.18.0.11:1\t100.64.0." #cid \
    "\t\t1\t2\tx\t3\tu\t" #cid "\t0\tAES-256-GCM\r\n"
#define ROW_WAIT(cid)                                                     \
    "CLIENT_LIST\tc" #cid "\t198.18.0.11:1\t\t\t1\t2\tx\t3\tUNDEF\t" #cid \
    "\t0\tBF-CBC\r\n"
#define ROW_V6ONLY(cid)                                    \
    "CLIENT_LIST\tc" #cid "\t198.18.0.11:1\t\tfd00::" #cid \
    "\t1\t2\tx\t3\tu\t" #cid "\t0\tAES-256-GCM\r\n"
#define STATUS_TAIL "GLOBAL_STATS\tdco_enabled\t0\r\nEND\r\n"

/* Plays the daemon through the setup sequence up to the status reply. */
static void serve_setup(struct fx *f, const char *status)
{
    STEP_UNTIL(f, f->srv.peer != NULL);
    srv_send(&f->srv,
             ">INFO:OpenVPN Management Interface Version 5 -- "
             "type 'help' for more info\r\n");
    expect_rx(f, "bytecount 5\n");
    expect_quiet(f);
    srv_send(&f->srv, "SUCCESS: bytecount interval changed\r\n");
    expect_rx(f, "env-filter 0\n");
    srv_send(&f->srv, "SUCCESS: env_filter_level=0\r\n");
    expect_rx(f, "state on\n");
    srv_send(&f->srv, "SUCCESS: real-time state notification set to ON\r\n");
    expect_rx(f, "status 3\n");
    assert_false(mgmt_conn_is_up(f->m));
    srv_send(&f->srv, status);
}

static void serve_simple_setup(struct fx *f)
{
    int ups = f->ups;
    serve_setup(f, STATUS_HEAD ROW_UP(1) STATUS_TAIL);
    STEP_UNTIL(f, f->ups == ups + 1);
}

/* ---- tests -------------------------------------------------------------- */

static void test_conn_setup_and_recovery(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, true);
    fx_start(&f);
    /* cid 8 CONNECTs during setup: it is being handled, not killed. */
    STEP_UNTIL(&f, f.srv.peer != NULL);
    srv_send(&f.srv,
             ">CLIENT:CONNECT,8,1\r\n>CLIENT:ENV,common_name=c8\r\n"
             ">CLIENT:ENV,END\r\n");
    serve_setup(&f, STATUS_HEAD ROW_UP(1) ROW_WAIT(7) ROW_WAIT(8) ROW_V6ONLY(9)
                        ROW_WAIT(12) STATUS_TAIL);
    expect_rx(&f, "client-kill 7\n");
    expect_quiet(&f);
    assert_false(mgmt_conn_is_up(f.m));
    srv_send(&f.srv, "SUCCESS: client-kill command succeeded\r\n");
    expect_rx(&f, "client-kill 12\n");
    /* A failed kill (client gone meanwhile) does not stop the setup. */
    srv_send(&f.srv, "ERROR: client-kill command failed\r\n");
    STEP_UNTIL(&f, f.ups == 1);
    assert_true(mgmt_conn_is_up(f.m));
    struct mgmt_conn_stats st;
    mgmt_conn_get_stats(f.m, &st);
    assert_int_equal(st.connects, 1);
    assert_int_equal(st.recovered_kills, 2);
    assert_int_equal(st.commands_sent, 6);
    assert_int_equal(st.timeouts, 0);
    assert_int_equal(f.ev.count[MGMT_EV_CLIENT_CONNECT], 1);
    assert_int_equal(f.ev.count[MGMT_EV_INFO], 1);
    /* Replies never reach the event callback. */
    assert_int_equal(f.ev.count[MGMT_EV_REPLY_SUCCESS], 0);
    assert_int_equal(f.ev.count[MGMT_EV_REPLY_BLOCK], 0);
    fx_free(&f);
}

static void test_conn_order_one_in_flight(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, true);
    fx_start(&f);
    serve_simple_setup(&f);
    assert_int_equal(mgmt_conn_send(f.m, "pid\n", 4, on_reply, &f), 0);
    assert_int_equal(mgmt_conn_send(f.m, "status 2\n", 9, on_reply, &f), 0);
    assert_int_equal(mgmt_conn_send(f.m, "load-stats\n", 11, on_reply, &f), 0);
    expect_rx(&f, "pid\n");
    expect_quiet(&f);
    /* An event between replies is an event, not an answer. */
    srv_send(&f.srv, ">BYTECOUNT_CLI:1,10,20\r\n");
    STEP_UNTIL(&f, f.ev.count[MGMT_EV_BYTECOUNT_CLI] == 1);
    assert_int_equal(f.nreplies, 0);
    srv_send(&f.srv, "SUCCESS: pid=42\r\n");
    expect_rx(&f, "status 2\n");
    assert_int_equal(f.nreplies, 1);
    srv_send(&f.srv, "a,b\r\nc\r\n");
    expect_quiet(&f);
    srv_send(&f.srv, "END\r\n");
    expect_rx(&f, "load-stats\n");
    srv_send(&f.srv, "ERROR: no\r\n");
    STEP_UNTIL(&f, f.nreplies == 3);
    assert_int_equal(f.status[0], 0);
    assert_string_equal(f.reply[0], "pid=42");
    assert_int_equal(f.status[1], 0);
    assert_string_equal(f.reply[1], "block:2:a,b");
    assert_int_equal(f.status[2], -EPROTO);
    assert_string_equal(f.reply[2], "no");
    /* A stray reply with nothing in flight is ignored. */
    srv_send(&f.srv, "SUCCESS: stray\r\n");
    step_some(&f);
    assert_int_equal(f.nreplies, 3);
    assert_true(mgmt_conn_is_up(f.m));
    fx_free(&f);
}

static void test_conn_client_auth_atomic(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, true);
    fx_start(&f);
    serve_simple_setup(&f);
    struct mgmt_net iroute = { "100.96.77.0", 24 };
    struct mgmt_client_config cfg = { .ifconfig_local = "100.64.0.50",
                                      .ifconfig_netmask = "255.255.255.0",
                                      .iroutes = &iroute,
                                      .niroutes = 1 };
    struct ovha_buf b;
    ovha_buf_init(&b);
    assert_int_equal(mgmt_cmd_client_auth(&b, 0, 1, &cfg), 0);
    /* Queue a status behind it: it must not land inside the block. */
    assert_int_equal(mgmt_conn_send(f.m, "pid\n", 4, on_reply, &f), 0);
    expect_rx(&f, "pid\n");
    assert_int_equal(mgmt_conn_send(f.m, b.data, b.len, on_reply, &f), 0);
    assert_int_equal(mgmt_conn_send(f.m, "status 3\n", 9, on_reply, &f), 0);
    srv_send(&f.srv, "SUCCESS: pid=1\r\n");
    expect_rx(&f,
              "client-auth 0 1\n"
              "ifconfig-push 100.64.0.50 255.255.255.0\n"
              "iroute 100.96.77.0 255.255.255.0\n"
              "END\n");
    expect_quiet(&f);
    srv_send(&f.srv, "SUCCESS: client-auth command succeeded\r\n");
    expect_rx(&f, "status 3\n");
    srv_send(&f.srv, STATUS_HEAD ROW_UP(0) STATUS_TAIL);
    STEP_UNTIL(&f, f.nreplies == 3);
    assert_string_equal(f.reply[1], "client-auth command succeeded");
    ovha_buf_free(&b);
    fx_free(&f);
}

/* A batch (client-pending-auth then client-auth) goes out in one write;
 * the first reply is swallowed, even an ERROR, and the second answers;
 * the next command waits for both. */
static void test_conn_batch_two_replies(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, true);
    fx_start(&f);
    serve_simple_setup(&f);
    static const char batch[] =
        "client-pending-auth 0 1 \"\" 20\n"
        "client-auth 0 1\n"
        "END\n";
    assert_int_equal(
        mgmt_conn_send_n(f.m, batch, sizeof(batch) - 1, 0, on_reply, &f),
        -EINVAL);
    assert_int_equal(
        mgmt_conn_send_n(f.m, batch, sizeof(batch) - 1, 2, on_reply, &f), 0);
    assert_int_equal(mgmt_conn_send(f.m, "pid\n", 4, on_reply, &f), 0);
    expect_rx(&f, batch);
    srv_send(&f.srv, "ERROR: client-pending-auth command failed\r\n");
    expect_quiet(&f);
    assert_int_equal(f.nreplies, 0);
    srv_send(&f.srv, "SUCCESS: client-auth command succeeded\r\n");
    expect_rx(&f, "pid\n");
    srv_send(&f.srv, "SUCCESS: pid=7\r\n");
    STEP_UNTIL(&f, f.nreplies == 2);
    assert_int_equal(f.status[0], 0);
    assert_string_equal(f.reply[0], "client-auth command succeeded");
    assert_string_equal(f.reply[1], "pid=7");
    assert_true(mgmt_conn_is_up(f.m));
    fx_free(&f);
}

static void test_conn_timeout_resets(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, true);
    f.cfg.cmd_timeout_ms = 200;
    fx_start(&f);
    serve_simple_setup(&f);
    assert_int_equal(mgmt_conn_send(f.m, "pid\n", 4, on_reply, &f), 0);
    assert_int_equal(mgmt_conn_send(f.m, "nclients\n", 9, on_reply, &f), 0);
    expect_rx(&f, "pid\n");
    /* No answer: timeout, the link is reset, and the queued command fails
     * too: it belongs to a link that is gone. */
    STEP_UNTIL(&f, f.nreplies == 2);
    assert_int_equal(f.status[0], OVHA_ETIMEDOUT);
    assert_int_equal(f.status[1], OVHA_ECLOSED);
    assert_int_equal(f.downs, 1);
    STEP_UNTIL(&f, f.srv.peer_eofs == 1);
    STEP_UNTIL(&f, f.srv.accepts == 2);
    serve_setup(&f, STATUS_HEAD ROW_WAIT(3) STATUS_TAIL);
    expect_rx(&f, "client-kill 3\n");
    srv_send(&f.srv, "SUCCESS: client-kill command succeeded\r\n");
    STEP_UNTIL(&f, f.ups == 2);
    f.nreplies = 1; /* reuse slot 1 for the command of the new link */
    assert_int_equal(mgmt_conn_send(f.m, "nclients\n", 9, on_reply, &f), 0);
    expect_rx(&f, "nclients\n");
    srv_send(&f.srv, "SUCCESS: nclients=0\r\n");
    STEP_UNTIL(&f, f.nreplies == 2);
    assert_int_equal(f.status[1], 0);
    assert_string_equal(f.reply[1], "nclients=0");
    struct mgmt_conn_stats st;
    mgmt_conn_get_stats(f.m, &st);
    assert_int_equal(st.timeouts, 1);
    assert_int_equal(st.connects, 2);
    assert_int_equal(st.recovered_kills, 1);
    fx_free(&f);
}

static void test_conn_drop_reconnect(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, true);
    fx_start(&f);
    serve_simple_setup(&f);
    assert_int_equal(mgmt_conn_send(f.m, "pid\n", 4, on_reply, &f), 0);
    expect_rx(&f, "pid\n");
    /* The daemon goes away with pid in flight: its fate is unknown. */
    srv_drop(&f.srv);
    STEP_UNTIL(&f, f.downs == 1);
    assert_int_equal(f.nreplies, 1);
    assert_int_equal(f.status[0], OVHA_ECLOSED);
    assert_false(mgmt_conn_is_up(f.m));
    /* Nothing can be queued while down: it could reach another client
     * under the same CID after an openvpn restart. */
    assert_int_equal(mgmt_conn_send(f.m, "load-stats\n", 11, on_reply, &f),
                     OVHA_ECLOSED);
    STEP_UNTIL(&f, f.srv.accepts == 2);
    serve_simple_setup(&f);
    STEP_UNTIL(&f, f.ups == 2);
    assert_int_equal(mgmt_conn_send(f.m, "load-stats\n", 11, on_reply, &f), 0);
    expect_rx(&f, "load-stats\n");
    srv_send(&f.srv, "SUCCESS: nclients=0,bytesin=1,bytesout=2\r\n");
    STEP_UNTIL(&f, f.nreplies == 2);
    assert_int_equal(f.status[1], 0);
    assert_int_equal(f.ups, 2);
    fx_free(&f);
}

static void test_conn_backoff_until_listening(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, false);
    fx_start(&f);
    step_some(&f);
    assert_false(mgmt_conn_is_up(f.m));
    struct mgmt_conn_stats st;
    mgmt_conn_get_stats(f.m, &st);
    assert_int_equal(st.connects, 0);
    srv_listen(&f.srv);
    serve_simple_setup(&f);
    mgmt_conn_get_stats(f.m, &st);
    assert_int_equal(st.connects, 1);
    fx_free(&f);
}

static void test_conn_hold_release(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, true);
    f.cfg.release_hold = true;
    f.cfg.bytecount_interval = 0;
    fx_start(&f);
    STEP_UNTIL(&f, f.srv.peer != NULL);
    srv_send(&f.srv,
             ">INFO:OpenVPN Management Interface Version 5\r\n"
             ">HOLD:Waiting for hold release:0\r\n");
    expect_rx(&f, "env-filter 0\n");
    srv_send(&f.srv, "SUCCESS: env_filter_level=0\r\n");
    expect_rx(&f, "state on\n");
    srv_send(&f.srv, "SUCCESS: real-time state notification set to ON\r\n");
    expect_rx(&f, "status 3\n");
    srv_send(&f.srv, STATUS_HEAD STATUS_TAIL);
    expect_rx(&f, "hold release\n");
    assert_false(mgmt_conn_is_up(f.m));
    srv_send(&f.srv, "SUCCESS: hold release succeeded\r\n");
    STEP_UNTIL(&f, f.ups == 1);
    assert_int_equal(f.ev.count[MGMT_EV_HOLD], 1);
    fx_free(&f);
}

static void test_conn_version_no_reply(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, true);
    fx_start(&f);
    serve_simple_setup(&f);
    struct ovha_buf b;
    ovha_buf_init(&b);
    assert_int_equal(mgmt_cmd_version(&b, 4), 0);
    assert_int_equal(mgmt_conn_send(f.m, b.data, b.len, on_reply, &f), 0);
    assert_int_equal(mgmt_conn_send(f.m, "pid\n", 4, on_reply, &f), 0);
    /* openvpn 2.6 never answers "version 4"; pid goes out anyway. */
    expect_rx(&f, "version 4\npid\n");
    assert_int_equal(f.nreplies, 1);
    assert_int_equal(f.status[0], 0);
    srv_send(&f.srv, "SUCCESS: pid=7\r\n");
    STEP_UNTIL(&f, f.nreplies == 2);
    assert_string_equal(f.reply[1], "pid=7");
    ovha_buf_free(&b);
    fx_free(&f);
}

static void test_conn_close_fails_queued(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, true);
    fx_start(&f);
    serve_simple_setup(&f);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(mgmt_conn_send(f.m, "pid\n", 4, on_reply, &f), 0);
    }
    expect_rx(&f, "pid\n");
    f.send_in_cb = true;
    fx_close_conn(&f);
    assert_int_equal(f.nreplies, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(f.status[i], OVHA_ECLOSED);
    }
    assert_int_equal(f.send_in_cb_rv, OVHA_ECLOSED);
    /* The server sees the link close. */
    STEP_UNTIL(&f, f.srv.peer_eofs == 1);
    fx_free(&f);
}

static void test_conn_close_while_connecting(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, false);
    fx_start(&f);
    fx_close_conn(&f); /* right after start: connect still pending */
    assert_true(f.closed);
    fx_free(&f);

    fx_init(&f, false);
    assert_int_equal(
        mgmt_conn_new(&f.loop, &f.cfg, on_event, on_state, &f, &f.m), 0);
    fx_close_conn(&f); /* never started */
    fx_free(&f);

    fx_init(&f, false);
    fx_start(&f);
    step_some(&f); /* in the retry backoff */
    fx_close_conn(&f);
    fx_free(&f);
}

static void test_conn_bad_args(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct mgmt_conn *m = NULL;
    struct mgmt_conn_config cfg = { 0 };
    assert_int_equal(mgmt_conn_new(&loop, &cfg, NULL, NULL, NULL, &m), -EINVAL);
    char longpath[200];
    memset(longpath, 'a', sizeof(longpath));
    longpath[199] = '\0';
    cfg.path = longpath;
    assert_int_equal(mgmt_conn_new(&loop, &cfg, NULL, NULL, NULL, &m), -EINVAL);
    cfg.path = "/nonexistent/x";
    ovha_alloc_fail_after(0);
    assert_int_equal(mgmt_conn_new(&loop, &cfg, NULL, NULL, NULL, &m), -ENOMEM);
    ovha_alloc_fail_after(2);
    assert_int_equal(mgmt_conn_new(&loop, &cfg, NULL, NULL, NULL, &m), -ENOMEM);
    ovha_alloc_fail_after(-1);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* A reply too big for the limits fails that command but keeps order. */
static void test_conn_reply_over_limit(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, true);
    f.cfg.limits.max_reply_rows = 16;
    fx_start(&f);
    serve_simple_setup(&f);
    assert_int_equal(mgmt_conn_send(f.m, "status 2\n", 9, on_reply, &f), 0);
    assert_int_equal(mgmt_conn_send(f.m, "pid\n", 4, on_reply, &f), 0);
    expect_rx(&f, "status 2\n");
    struct ovha_buf b;
    ovha_buf_init(&b);
    for (int i = 0; i < 40; i++) {
        ovha_buf_printf(&b, "row %d\r\n", i);
    }
    srv_send(&f.srv, b.data);
    STEP_UNTIL(&f, f.nreplies == 1);
    assert_int_equal(f.status[0], -EPROTO);
    srv_send(&f.srv, "END\r\n");
    expect_rx(&f, "pid\n");
    srv_send(&f.srv, "SUCCESS: pid=9\r\n");
    STEP_UNTIL(&f, f.nreplies == 2);
    assert_string_equal(f.reply[1], "pid=9");
    assert_true(mgmt_conn_is_up(f.m));
    struct mgmt_conn_stats st;
    mgmt_conn_get_stats(f.m, &st);
    assert_int_equal(st.parse_errors, 1);
    assert_int_equal(st.connects, 1);
    ovha_buf_free(&b);
    fx_free(&f);
}

/* The status 3 reply recorded from a real daemon after a controller
 * reconnect (a client left waiting for auth) triggers the recovery kill. */
static void test_conn_recovery_recorded_status(void **state)
{
    (void)state;
    char path[1024];
    snprintf(path, sizeof(path), "%s/controller-reconnect.txt",
             MGMT_FIXTURES_DIR);
    char *data;
    size_t n;
    if (mgmt_test_load(path, &data, &n) != 0) {
        skip();
    }
    char *from = strstr(data, "TITLE\t");
    assert_non_null(from);
    char *to = strstr(from, "\r\nEND\r\n");
    assert_non_null(to);
    to[strlen("\r\nEND\r\n")] = '\0';
    struct fx f;
    fx_init(&f, true);
    fx_start(&f);
    serve_setup(&f, from);
    expect_rx(&f, "client-kill 0\n");
    srv_send(&f.srv, "SUCCESS: client-kill command succeeded\r\n");
    STEP_UNTIL(&f, f.ups == 1);
    struct mgmt_conn_stats st;
    mgmt_conn_get_stats(f.m, &st);
    assert_int_equal(st.recovered_kills, 1);
    ovha_free(data);
    fx_free(&f);
}

/* An unreadable (over-long) reply line: nobody can tell which reply it
 * was, so the in-flight command fails and the link is reset. */
static void test_conn_overlong_reply_resets(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, true);
    f.cfg.limits.max_line = 300;
    fx_start(&f);
    serve_simple_setup(&f);
    assert_int_equal(mgmt_conn_send(f.m, "pid\n", 4, on_reply, &f), 0);
    assert_int_equal(mgmt_conn_send(f.m, "nclients\n", 9, on_reply, &f), 0);
    expect_rx(&f, "pid\n");
    char line[1024];
    memset(line, 'x', sizeof(line));
    memcpy(line, "SUCCESS: ", 9);
    memcpy(line + sizeof(line) - 3, "\r\n", 3);
    srv_send(&f.srv, line);
    STEP_UNTIL(&f, f.downs == 1);
    assert_int_equal(f.nreplies, 2);
    assert_int_equal(f.status[0], OVHA_ECLOSED);
    assert_int_equal(f.status[1], OVHA_ECLOSED); /* queued: failed too */
    assert_int_equal(f.ev.count[MGMT_EV_PARSE_ERROR], 1);
    STEP_UNTIL(&f, f.srv.accepts == 2);
    serve_simple_setup(&f);
    STEP_UNTIL(&f, f.ups == 2);
    f.nreplies = 1;
    assert_int_equal(mgmt_conn_send(f.m, "nclients\n", 9, on_reply, &f), 0);
    expect_rx(&f, "nclients\n");
    srv_send(&f.srv, "SUCCESS: nclients=0\r\n");
    STEP_UNTIL(&f, f.nreplies == 2);
    assert_int_equal(f.status[1], 0);
    fx_free(&f);
}

/* A >FATAL is reported, then the daemon closes: state goes down, and the
 * connection comes back when the daemon does. */
static void test_conn_fatal_then_reconnect(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, true);
    fx_start(&f);
    serve_simple_setup(&f);
    srv_send(&f.srv, ">FATAL:cannot ioctl TUNSETIFF tun\r\n");
    STEP_UNTIL(&f, f.ev.count[MGMT_EV_FATAL] == 1);
    srv_drop(&f.srv);
    STEP_UNTIL(&f, f.downs == 1);
    assert_int_equal(f.nreplies, 0);
    STEP_UNTIL(&f, f.srv.accepts == 2);
    serve_simple_setup(&f);
    assert_int_equal(f.ups, 2);
    fx_free(&f);
}

/* Allocation failures at every point of connect, setup and a command:
 * nothing crashes or leaks (ASan), and once allocation works again the
 * connection comes up by itself and serves commands. */
static void test_conn_oom_sweep(void **state)
{
    (void)state;
    int reconnects = 0;
    for (long k = 0; k < 32; k++) {
        struct fx f;
        fx_init(&f, true);
        f.srv.auto_reply = true;
        f.cfg.cmd_timeout_ms = 30;
        assert_int_equal(
            mgmt_conn_new(&f.loop, &f.cfg, on_event, on_state, &f, &f.m), 0);
        ovha_alloc_fail_after(k);
        int rv = mgmt_conn_start(f.m);
        int srv_rv = mgmt_conn_send(f.m, "pid\n", 4, on_reply, &f);
        step_some(&f);
        ovha_alloc_fail_after(-1);
        assert_int_equal(rv, 0);
        STEP_UNTIL(&f, mgmt_conn_is_up(f.m));
        assert_int_equal(mgmt_conn_send(f.m, "nclients\n", 9, on_reply, &f), 0);
        int want = srv_rv == 0 ? 2 : 1;
        STEP_UNTIL(&f, f.nreplies == want);
        assert_int_equal(f.status[want - 1], 0);
        struct mgmt_conn_stats st;
        mgmt_conn_get_stats(f.m, &st);
        /* Recovery ran on the link that came up (cid 5 is waiting). */
        assert_true(st.recovered_kills >= 1);
        assert_true(f.srv.auto_kills >= 1);
        reconnects += st.connects > 1;
        fx_free(&f);
    }
    /* The injected failures did hit: many runs had to reconnect. */
    assert_true(reconnects >= 10);
}

const struct CMUnitTest mgmt_conn_tests[] = {
    cmocka_unit_test(test_conn_setup_and_recovery),
    cmocka_unit_test(test_conn_order_one_in_flight),
    cmocka_unit_test(test_conn_client_auth_atomic),
    cmocka_unit_test(test_conn_batch_two_replies),
    cmocka_unit_test(test_conn_timeout_resets),
    cmocka_unit_test(test_conn_drop_reconnect),
    cmocka_unit_test(test_conn_backoff_until_listening),
    cmocka_unit_test(test_conn_hold_release),
    cmocka_unit_test(test_conn_version_no_reply),
    cmocka_unit_test(test_conn_close_fails_queued),
    cmocka_unit_test(test_conn_close_while_connecting),
    cmocka_unit_test(test_conn_bad_args),
    cmocka_unit_test(test_conn_reply_over_limit),
    cmocka_unit_test(test_conn_recovery_recorded_status),
    cmocka_unit_test(test_conn_overlong_reply_resets),
    cmocka_unit_test(test_conn_fatal_then_reconnect),
    cmocka_unit_test(test_conn_oom_sweep),
};
const size_t mgmt_conn_ntests =
    sizeof(mgmt_conn_tests) / sizeof(mgmt_conn_tests[0]);
