/* The management connection: a libuv pipe to openvpn's unix socket.
 *
 * Happy path: start() connects; on connect the setup commands (bytecount,
 * env-filter, state on, status 3) go out one at a time, the status reply
 * yields a client-kill for every client still waiting for a decision we
 * may never have given, and once those are answered state_cb(true) fires
 * and user commands flow. Exactly one command is in flight: replies carry
 * no tag, so the n-th SUCCESS/ERROR/END block answers the n-th command.
 * Each command is written with one uv_write, so a client-auth block can
 * never interleave with anything else.
 *
 * Failure modes:
 *   - no reply within cmd_timeout_ms: the command gets OVHA_ETIMEDOUT and
 *     the link is reset (closed, reconnected), because after a lost reply
 *     the order can no longer be trusted;
 *   - EOF, read or write error, an over-long reply line: the link is reset;
 *     the in-flight command gets OVHA_ECLOSED (its fate is unknown), and so
 *     does every queued user command: they name client IDs of a link that
 *     is gone, and after an openvpn restart the same CID belongs to another
 *     client (a stale client-auth would hand it someone else's address).
 *     Recovery on the next connect kills every client still waiting, so
 *     each comes back with a fresh CONNECT. Setup commands are redone;
 *   - the link drops after state_cb(true): state_cb(false);
 *   - reconnects back off exponentially from backoff_min to backoff_max and
 *     the delay returns to backoff_min once a connection is fully set up.
 * close() fails queued commands with OVHA_ECLOSED, closes every handle and
 * frees the object after the last close callback.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/un.h>

#include <uv.h>

#include "mgmt/internal.h"
#include "mgmt/mgmt.h"

#define MGMT_MOD             "mgmt"
#define MGMT_SEEN_MAX        4096
#define MGMT_DEFAULT_TIMEOUT 5000
#define MGMT_DEFAULT_BMIN    100
#define MGMT_DEFAULT_BMAX    5000

enum mgmt_conn_state {
    MGMT_CS_IDLE = 0,   /* not started */
    MGMT_CS_CONNECTING, /* uv_pipe_connect pending */
    MGMT_CS_SETUP,      /* connected, setup/recovery commands running */
    MGMT_CS_UP,         /* set up; user commands flow */
    MGMT_CS_WAIT,       /* link lost: pipe closing or retry timer armed */
    MGMT_CS_CLOSING,    /* mgmt_conn_close called */
};

enum mgmt_cmd_kind {
    MGMT_CMD_USER = 0,
    MGMT_CMD_SETUP,  /* bytecount, env-filter, state on, hold release */
    MGMT_CMD_STATUS, /* the recovery status 3 */
    MGMT_CMD_KILL,   /* a recovery client-kill */
};

struct mgmt_cmd {
    struct mgmt_cmd *next;
    uint64_t seq;
    enum mgmt_cmd_kind kind;
    bool no_reply; /* "version N": openvpn 2.6 never answers it */
    /* Replies of leading commands of a batch (mgmt_conn_send_n) still to
     * come before the last one, which goes to cb. */
    unsigned lead_replies;
    mgmt_reply_cb cb;
    void *data;
    size_t len;
    char text[];
};

struct mgmt_cmdq {
    struct mgmt_cmd *head;
    struct mgmt_cmd *tail;
};

/* One uv_write with its own copy of the bytes: the command may be freed
 * (answered, reset) before libuv reports the write done. */
struct mgmt_write {
    uv_write_t req;
    struct mgmt_conn *m;
    uint64_t gen;
    uint64_t seq;
    char bytes[];
};

struct mgmt_conn {
    uv_loop_t *loop;
    struct mgmt_conn_config cfg;
    char *path;
    mgmt_conn_event_cb event_cb;
    mgmt_conn_state_cb state_cb;
    void *data;
    struct mgmt_parser *parser;

    enum mgmt_conn_state state;
    bool reported_up;
    uint64_t gen; /* bumped on every connect; stale writes are ignored */
    uint64_t next_seq;
    uint64_t backoff_ms;

    uv_pipe_t pipe;
    bool pipe_inited;  /* uv_pipe_init done, close not yet requested */
    bool pipe_closing; /* uv_close requested, callback pending */
    uv_connect_t connect_req;
    uv_timer_t cmd_timer;
    uv_timer_t retry_timer;
    bool link_failed; /* cmd_timer fired early to reset the link */

    struct mgmt_cmdq internal; /* setup and recovery, before user */
    struct mgmt_cmdq user;
    struct mgmt_cmd *inflight;

    /* CIDs that got a CONNECT/REAUTH on this connection before the status
     * reply: they show no address in it but are being handled. */
    uint64_t *seen;
    size_t nseen;

    struct mgmt_conn_stats stats;
    unsigned pending_closes;
    mgmt_conn_close_cb close_cb;
    void *close_data;

    char rbuf[64 * 1024];
};

static void mgmt_conn_pump(struct mgmt_conn *m);
static void mgmt_conn_reset(struct mgmt_conn *m);
static void mgmt_conn_connect(struct mgmt_conn *m);
static void mgmt_conn_on_cmd_timer(uv_timer_t *t);
static void mgmt_conn_fail_link(struct mgmt_conn *m);

/* ---- queues ------------------------------------------------------------- */

static void mgmt_conn_q_push(struct mgmt_cmdq *q, struct mgmt_cmd *c)
{
    c->next = NULL;
    if (q->tail != NULL) {
        q->tail->next = c;
    } else {
        q->head = c;
    }
    q->tail = c;
}

static void mgmt_conn_q_push_front(struct mgmt_cmdq *q, struct mgmt_cmd *c)
{
    c->next = q->head;
    q->head = c;
    if (q->tail == NULL) {
        q->tail = c;
    }
}

static struct mgmt_cmd *mgmt_conn_q_pop(struct mgmt_cmdq *q)
{
    struct mgmt_cmd *c = q->head;
    if (c != NULL) {
        q->head = c->next;
        if (q->head == NULL) {
            q->tail = NULL;
        }
        c->next = NULL;
    }
    return c;
}

static struct mgmt_cmd *mgmt_conn_cmd_new(struct mgmt_conn *m,
                                          enum mgmt_cmd_kind kind,
                                          const char *text,
                                          size_t len)
{
    struct mgmt_cmd *c = ovha_malloc(sizeof(*c) + len + 1);
    if (c == NULL) {
        return NULL;
    }
    memset(c, 0, sizeof(*c));
    c->seq = ++m->next_seq;
    c->kind = kind;
    c->len = len;
    memcpy(c->text, text, len);
    c->text[len] = '\0';
    return c;
}

/* "version N" with N > 0 gets no reply from openvpn 2.6, and exit/quit
 * none either: such a command is done once it is written. */
static bool mgmt_conn_is_no_reply(const char *t, size_t len)
{
    if (len == 5 &&
        (memcmp(t, "exit\n", 5) == 0 || memcmp(t, "quit\n", 5) == 0)) {
        return true;
    }
    if (len < 10 || memcmp(t, "version ", 8) != 0 || t[len - 1] != '\n') {
        return false;
    }
    bool nonzero = false;
    for (size_t i = 8; i < len - 1; i++) {
        if (t[i] < '0' || t[i] > '9') {
            return false;
        }
        nonzero |= t[i] != '0';
    }
    return nonzero;
}

/* Queues a setup or recovery command. Setup must be complete before
 * state_cb(true), so failing to queue one resets the link and the whole
 * setup is redone on the next connect. */
static void mgmt_conn_internal(struct mgmt_conn *m,
                               enum mgmt_cmd_kind kind,
                               int build_rv,
                               const struct ovha_buf *b)
{
    struct mgmt_cmd *c = NULL;
    if (build_rv == 0) {
        c = mgmt_conn_cmd_new(m, kind, b->data, b->len);
    }
    if (c == NULL) {
        LOG_DEBUG(MGMT_MOD, "setup command not queued: %s",
                  ovha_strerror(build_rv != 0 ? build_rv : -ENOMEM));
        mgmt_conn_fail_link(m);
        return;
    }
    mgmt_conn_q_push(&m->internal, c);
}

static void mgmt_conn_q_drop(struct mgmt_cmdq *q)
{
    struct mgmt_cmd *c;
    while ((c = mgmt_conn_q_pop(q)) != NULL) {
        ovha_free(c);
    }
}

/* ---- completion ---------------------------------------------------------
 */

static void mgmt_conn_recover(struct mgmt_conn *m, const struct mgmt_reply *r)
{
    struct mgmt_status st;
    int rv = mgmt_status_parse(r->lines, r->nlines, &st);
    if (rv == -ENOMEM) {
        mgmt_conn_fail_link(m); /* retry the recovery on a fresh link */
        return;
    }
    if (rv != 0) {
        LOG_DEBUG(MGMT_MOD, "status 3: %s", ovha_strerror(rv));
        return;
    }
    struct ovha_buf b;
    ovha_buf_init(&b);
    for (size_t i = 0; i < st.nclients; i++) {
        const struct mgmt_status_client *c = &st.clients[i];
        if (c->vaddr[0] != '\0' || c->vaddr6[0] != '\0') {
            continue;
        }
        bool seen = false;
        for (size_t j = 0; j < m->nseen && !seen; j++) {
            seen = m->seen[j] == c->cid;
        }
        if (seen) {
            continue;
        }
        ovha_buf_reset(&b);
        rv = mgmt_cmd_client_kill(&b, c->cid, NULL);
        mgmt_conn_internal(m, MGMT_CMD_KILL, rv, &b);
        m->stats.recovered_kills += rv == 0;
    }
    ovha_buf_free(&b);
    mgmt_status_free(&st);
}

/* Hands the outcome of c to its owner and frees it. */
static void mgmt_conn_finish(struct mgmt_conn *m,
                             struct mgmt_cmd *c,
                             int status,
                             const struct mgmt_reply *r)
{
    static const struct mgmt_reply none = { 0 };
    if (r == NULL) {
        r = &none;
    }
    if (c->kind == MGMT_CMD_STATUS && status == 0 && r->text == NULL) {
        mgmt_conn_recover(m, r);
    } else if (c->kind != MGMT_CMD_USER && status != 0) {
        LOG_DEBUG(MGMT_MOD, "setup command failed: %s", ovha_strerror(status));
    }
    if (c->kind == MGMT_CMD_USER && c->cb != NULL) {
        c->cb(m, status, r, c->data);
    }
    ovha_free(c);
}

/* The in-flight command is answered. */
static void mgmt_conn_complete(struct mgmt_conn *m,
                               int status,
                               const struct mgmt_reply *r)
{
    struct mgmt_cmd *c = m->inflight;
    if (c == NULL) {
        LOG_DEBUG(MGMT_MOD, "reply with no command in flight ignored");
        return;
    }
    if (c->lead_replies > 0) {
        /* A leading command of a batch: its outcome is only logged; the
         * command timer keeps covering the whole batch. */
        c->lead_replies--;
        if (status != 0) {
            LOG_DEBUG(
                MGMT_MOD, "leading command of a batch: %s",
                r != NULL && r->text != NULL ? r->text : ovha_strerror(status));
        }
        return;
    }
    m->inflight = NULL;
    uv_timer_stop(&m->cmd_timer);
    mgmt_conn_finish(m, c, status, r);
    mgmt_conn_pump(m);
}

/* ---- writing ------------------------------------------------------------ */

static void mgmt_conn_on_write(uv_write_t *req, int status)
{
    struct mgmt_write *w = (struct mgmt_write *)req;
    struct mgmt_conn *m = w->m;
    uint64_t gen = w->gen, seq = w->seq;
    ovha_free(w);
    if (gen != m->gen ||
        (m->state != MGMT_CS_SETUP && m->state != MGMT_CS_UP)) {
        return;
    }
    if (status < 0) {
        LOG_DEBUG(MGMT_MOD, "write: %s", uv_strerror(status));
        mgmt_conn_reset(m);
        return;
    }
    if (m->inflight != NULL && m->inflight->seq == seq &&
        m->inflight->no_reply) {
        mgmt_conn_complete(m, 0, NULL);
    }
}

/* Starts writing c. Returns 0 or a negative libuv error. */
static int mgmt_conn_write(struct mgmt_conn *m, struct mgmt_cmd *c)
{
    struct mgmt_write *w = ovha_malloc(sizeof(*w) + c->len);
    if (w == NULL) {
        return -ENOMEM;
    }
    w->m = m;
    w->gen = m->gen;
    w->seq = c->seq;
    memcpy(w->bytes, c->text, c->len);
    uv_buf_t b = uv_buf_init(w->bytes, (unsigned)c->len);
    int rv =
        uv_write(&w->req, (uv_stream_t *)&m->pipe, &b, 1, mgmt_conn_on_write);
    if (rv != 0) {
        ovha_free(w);
    }
    return rv;
}

/* Sends the next command when nothing is in flight. */
static void mgmt_conn_pump(struct mgmt_conn *m)
{
    while (m->inflight == NULL && !m->link_failed &&
           (m->state == MGMT_CS_SETUP || m->state == MGMT_CS_UP)) {
        struct mgmt_cmd *c = mgmt_conn_q_pop(&m->internal);
        if (c == NULL && m->state == MGMT_CS_SETUP) {
            m->state = MGMT_CS_UP;
            m->reported_up = true;
            m->backoff_ms = m->cfg.backoff_min_ms;
            if (m->state_cb != NULL) {
                m->state_cb(m, true, m->data);
            }
            continue; /* the callback may have sent, reset or closed */
        }
        if (c == NULL) {
            c = mgmt_conn_q_pop(&m->user);
        }
        if (c == NULL) {
            return;
        }
        int rv = mgmt_conn_write(m, c);
        if (rv != 0) {
            /* Not written, so safe to retry after the reset. Callbacks
             * must not run inside mgmt_conn_send: reset from the timer. */
            LOG_DEBUG(MGMT_MOD, "write: %s", ovha_strerror(rv));
            mgmt_conn_q_push_front(
                c->kind == MGMT_CMD_USER ? &m->user : &m->internal, c);
            mgmt_conn_fail_link(m);
            return;
        }
        m->stats.commands_sent++;
        m->inflight = c;
        uv_timer_start(&m->cmd_timer, mgmt_conn_on_cmd_timer,
                       m->cfg.cmd_timeout_ms, 0);
    }
}

/* ---- link loss and reconnect -------------------------------------------- */

/* Resets the link from a zero timer rather than right here: callers may be
 * inside mgmt_conn_send, where no callback may run. Nothing more is sent
 * on this link meanwhile. */
static void mgmt_conn_fail_link(struct mgmt_conn *m)
{
    if (m->state != MGMT_CS_SETUP && m->state != MGMT_CS_UP) {
        return;
    }
    m->link_failed = true;
    uv_timer_start(&m->cmd_timer, mgmt_conn_on_cmd_timer, 0, 0);
}

static void mgmt_conn_on_close_done(struct mgmt_conn *m)
{
    if (--m->pending_closes > 0) {
        return;
    }
    mgmt_conn_close_cb cb = m->close_cb;
    void *data = m->close_data;
    mgmt_parser_free(m->parser);
    ovha_free(m->seen);
    ovha_free(m->path);
    ovha_free(m);
    if (cb != NULL) {
        cb(data);
    }
}

static void mgmt_conn_on_retry(uv_timer_t *t)
{
    struct mgmt_conn *m = t->data;
    if (m->state == MGMT_CS_WAIT) {
        mgmt_conn_connect(m);
    }
}

static void mgmt_conn_on_pipe_closed(uv_handle_t *h)
{
    struct mgmt_conn *m = h->data;
    m->pipe_closing = false;
    if (m->state == MGMT_CS_CLOSING) {
        mgmt_conn_on_close_done(m);
        return;
    }
    uint64_t delay = m->backoff_ms;
    m->backoff_ms = m->backoff_ms * 2 > m->cfg.backoff_max_ms
                        ? m->cfg.backoff_max_ms
                        : m->backoff_ms * 2;
    uv_timer_start(&m->retry_timer, mgmt_conn_on_retry, delay, 0);
}

static void mgmt_conn_close_pipe(struct mgmt_conn *m)
{
    if (!m->pipe_inited) {
        return;
    }
    m->pipe_inited = false;
    m->pipe_closing = true;
    uv_read_stop((uv_stream_t *)&m->pipe);
    uv_close((uv_handle_t *)&m->pipe, mgmt_conn_on_pipe_closed);
}

/* The link is gone or untrustworthy: close it and reconnect later. */
static void mgmt_conn_reset(struct mgmt_conn *m)
{
    if (m->state != MGMT_CS_SETUP && m->state != MGMT_CS_UP) {
        return;
    }
    bool was_up = m->reported_up;
    m->reported_up = false;
    m->state = MGMT_CS_WAIT;
    m->link_failed = false;
    uv_timer_stop(&m->cmd_timer);
    mgmt_conn_close_pipe(m);
    mgmt_conn_q_drop(&m->internal);
    struct mgmt_cmd *c = m->inflight;
    m->inflight = NULL;
    if (c != NULL) {
        mgmt_conn_finish(m, c, OVHA_ECLOSED, NULL);
    }
    while (m->state == MGMT_CS_WAIT &&
           (c = mgmt_conn_q_pop(&m->user)) != NULL) {
        mgmt_conn_finish(m, c, OVHA_ECLOSED, NULL);
    }
    if (was_up && m->state == MGMT_CS_WAIT && m->state_cb != NULL) {
        m->state_cb(m, false, m->data);
    }
}

static void mgmt_conn_on_cmd_timer(uv_timer_t *t)
{
    struct mgmt_conn *m = t->data;
    if (m->link_failed) {
        mgmt_conn_reset(m);
        return;
    }
    struct mgmt_cmd *c = m->inflight;
    if (c == NULL) {
        return;
    }
    m->inflight = NULL;
    m->stats.timeouts++;
    LOG_DEBUG(MGMT_MOD, "command timed out; resetting the connection");
    mgmt_conn_finish(m, c, OVHA_ETIMEDOUT, NULL);
    mgmt_conn_reset(m);
}

/* ---- reading ------------------------------------------------------------ */

static void mgmt_conn_seen(struct mgmt_conn *m, uint64_t cid)
{
    if (m->seen == NULL) {
        m->seen = ovha_malloc(MGMT_SEEN_MAX * sizeof(*m->seen));
    }
    if (m->seen != NULL && m->nseen < MGMT_SEEN_MAX) {
        m->seen[m->nseen++] = cid;
    }
}

static void mgmt_conn_on_parse_error(struct mgmt_conn *m,
                                     const struct mgmt_event *ev)
{
    m->stats.parse_errors++;
    if (m->event_cb != NULL) {
        m->event_cb(m, ev, m->data);
        if (m->state != MGMT_CS_SETUP && m->state != MGMT_CS_UP) {
            return;
        }
    }
    if (ev->error == -ENOMEM) {
        /* Something was dropped for want of memory, perhaps a CONNECT:
         * start over, and the recovery on reconnect kills that client so
         * it comes back with a fresh CONNECT. */
        mgmt_conn_reset(m);
        return;
    }
    if (ev->tag == NULL || strcmp(ev->tag, MGMT_TAG_REPLY) != 0) {
        return;
    }
    if (mgmt_parser_skipping_reply(m->parser)) {
        /* The parser drops the rest up to END: order is intact. */
        struct mgmt_reply r = { .text = ev->text };
        mgmt_conn_complete(m, -EPROTO, &r);
        return;
    }
    /* An unreadable reply line: we cannot tell which reply it was. */
    mgmt_conn_reset(m);
}

static void mgmt_conn_on_event(const struct mgmt_event *ev, void *data)
{
    struct mgmt_conn *m = data;
    if (m->state != MGMT_CS_SETUP && m->state != MGMT_CS_UP) {
        return; /* bytes of a link we already gave up */
    }
    struct mgmt_reply r = { 0 };
    switch (ev->type) {
    case MGMT_EV_REPLY_SUCCESS:
        r.text = ev->text;
        mgmt_conn_complete(m, 0, &r);
        return;
    case MGMT_EV_REPLY_ERROR:
        r.text = ev->text;
        mgmt_conn_complete(m, -EPROTO, &r);
        return;
    case MGMT_EV_REPLY_BLOCK:
        r.lines = ev->lines;
        r.nlines = ev->nlines;
        mgmt_conn_complete(m, 0, &r);
        return;
    case MGMT_EV_PARSE_ERROR:
        mgmt_conn_on_parse_error(m, ev);
        return;
    case MGMT_EV_CLIENT_CONNECT:
    case MGMT_EV_CLIENT_REAUTH:
        if (m->state == MGMT_CS_SETUP) {
            mgmt_conn_seen(m, ev->cid);
        }
        break;
    case MGMT_EV_HOLD:
        if (m->cfg.release_hold) {
            struct ovha_buf b;
            ovha_buf_init(&b);
            int rv = mgmt_cmd_hold_release(&b);
            mgmt_conn_internal(m, MGMT_CMD_SETUP, rv, &b);
            ovha_buf_free(&b);
        }
        break;
    default:
        break;
    }
    if (m->event_cb != NULL) {
        m->event_cb(m, ev, m->data);
    }
    mgmt_conn_pump(m);
}

static void mgmt_conn_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct mgmt_conn *m = h->data;
    (void)hint;
    *buf = uv_buf_init(m->rbuf, sizeof(m->rbuf));
}

static void mgmt_conn_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct mgmt_conn *m = s->data;
    if (n > 0) {
        mgmt_parser_feed(m->parser, buf->base, (size_t)n);
        return;
    }
    if (n < 0) {
        LOG_DEBUG(MGMT_MOD, "read: %s", uv_strerror((int)n));
        mgmt_conn_reset(m);
    }
}

/* ---- connecting --------------------------------------------------------- */

static void mgmt_conn_queue_setup(struct mgmt_conn *m)
{
    struct ovha_buf b;
    ovha_buf_init(&b);
    int rv;
    if (m->cfg.bytecount_interval > 0) {
        rv = mgmt_cmd_bytecount(&b, m->cfg.bytecount_interval);
        mgmt_conn_internal(m, MGMT_CMD_SETUP, rv, &b);
        ovha_buf_reset(&b);
    }
    rv = mgmt_cmd_env_filter(&b, m->cfg.env_filter);
    mgmt_conn_internal(m, MGMT_CMD_SETUP, rv, &b);
    ovha_buf_reset(&b);
    rv = mgmt_cmd_toggle(&b, "state", true);
    mgmt_conn_internal(m, MGMT_CMD_SETUP, rv, &b);
    ovha_buf_reset(&b);
    rv = mgmt_cmd_status(&b, 3);
    mgmt_conn_internal(m, MGMT_CMD_STATUS, rv, &b);
    ovha_buf_free(&b);
}

static void mgmt_conn_on_connect(uv_connect_t *req, int status)
{
    struct mgmt_conn *m = req->data;
    if (m->state != MGMT_CS_CONNECTING) {
        return; /* closing: the pipe close callback finishes up */
    }
    if (status < 0) {
        LOG_DEBUG(MGMT_MOD, "connect %s: %s", m->path, uv_strerror(status));
        m->state = MGMT_CS_WAIT;
        mgmt_conn_close_pipe(m);
        return;
    }
    int rv = uv_read_start((uv_stream_t *)&m->pipe, mgmt_conn_on_alloc,
                           mgmt_conn_on_read);
    if (rv != 0) {
        m->state = MGMT_CS_WAIT;
        mgmt_conn_close_pipe(m);
        return;
    }
    m->gen++;
    m->stats.connects++;
    m->state = MGMT_CS_SETUP;
    m->nseen = 0;
    mgmt_parser_reset(m->parser);
    mgmt_conn_queue_setup(m);
    mgmt_conn_pump(m);
}

static void mgmt_conn_connect(struct mgmt_conn *m)
{
    int rv = uv_pipe_init(m->loop, &m->pipe, 0);
    if (rv != 0) {
        /* Cannot happen on Linux; retry later rather than give up. */
        m->state = MGMT_CS_WAIT;
        uv_timer_start(&m->retry_timer, mgmt_conn_on_retry, m->backoff_ms, 0);
        return;
    }
    m->pipe.data = m;
    m->pipe_inited = true;
    m->state = MGMT_CS_CONNECTING;
    m->connect_req.data = m;
    uv_pipe_connect(&m->connect_req, &m->pipe, m->path, mgmt_conn_on_connect);
}

/* ---- public ------------------------------------------------------------- */

int mgmt_conn_new(uv_loop_t *loop,
                  const struct mgmt_conn_config *cfg,
                  mgmt_conn_event_cb event_cb,
                  mgmt_conn_state_cb state_cb,
                  void *data,
                  struct mgmt_conn **ret)
{
    if (loop == NULL || cfg == NULL || cfg->path == NULL ||
        cfg->path[0] == '\0' ||
        strlen(cfg->path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        return -EINVAL;
    }
    struct mgmt_conn *m = ovha_calloc(1, sizeof(*m));
    if (m == NULL) {
        return -ENOMEM;
    }
    m->cfg = *cfg;
    m->path = ovha_strdup(cfg->path);
    if (m->path == NULL) {
        goto err_free;
    }
    m->cfg.path = m->path;
    if (m->cfg.cmd_timeout_ms == 0) {
        m->cfg.cmd_timeout_ms = MGMT_DEFAULT_TIMEOUT;
    }
    if (m->cfg.backoff_min_ms == 0) {
        m->cfg.backoff_min_ms = MGMT_DEFAULT_BMIN;
    }
    if (m->cfg.backoff_max_ms == 0) {
        m->cfg.backoff_max_ms = MGMT_DEFAULT_BMAX;
    }
    if (m->cfg.backoff_max_ms < m->cfg.backoff_min_ms) {
        m->cfg.backoff_max_ms = m->cfg.backoff_min_ms;
    }
    m->backoff_ms = m->cfg.backoff_min_ms;
    if (mgmt_parser_new(&cfg->limits, mgmt_conn_on_event, m, &m->parser) != 0) {
        goto err_path;
    }
    m->loop = loop;
    m->event_cb = event_cb;
    m->state_cb = state_cb;
    m->data = data;
    uv_timer_init(loop, &m->cmd_timer);
    uv_timer_init(loop, &m->retry_timer);
    m->cmd_timer.data = m;
    m->retry_timer.data = m;
    *ret = m;
    return 0;
err_path:
    ovha_free(m->path);
err_free:
    ovha_free(m);
    return -ENOMEM;
}

int mgmt_conn_start(struct mgmt_conn *m)
{
    if (m->state == MGMT_CS_CLOSING) {
        return OVHA_ECLOSED;
    }
    if (m->state != MGMT_CS_IDLE) {
        return -EALREADY;
    }
    mgmt_conn_connect(m);
    return 0;
}

int mgmt_conn_send(struct mgmt_conn *m,
                   const char *text,
                   size_t len,
                   mgmt_reply_cb cb,
                   void *data)
{
    return mgmt_conn_send_n(m, text, len, 1, cb, data);
}

int mgmt_conn_send_n(struct mgmt_conn *m,
                     const char *text,
                     size_t len,
                     unsigned nreplies,
                     mgmt_reply_cb cb,
                     void *data)
{
    /* Only while a link exists: a command written after a reconnect
     * could reach a different client under the same CID. */
    if (m->state != MGMT_CS_SETUP && m->state != MGMT_CS_UP) {
        return OVHA_ECLOSED;
    }
    if (text == NULL || len == 0 || nreplies == 0) {
        return -EINVAL;
    }
    struct mgmt_cmd *c = mgmt_conn_cmd_new(m, MGMT_CMD_USER, text, len);
    if (c == NULL) {
        return -ENOMEM;
    }
    c->cb = cb;
    c->data = data;
    c->no_reply = mgmt_conn_is_no_reply(text, len);
    c->lead_replies = nreplies - 1;
    mgmt_conn_q_push(&m->user, c);
    if (m->state == MGMT_CS_UP) {
        mgmt_conn_pump(m);
    }
    return 0;
}

bool mgmt_conn_is_up(const struct mgmt_conn *m)
{
    return m->state == MGMT_CS_UP;
}

void mgmt_conn_get_stats(const struct mgmt_conn *m, struct mgmt_conn_stats *ret)
{
    *ret = m->stats;
}

static void mgmt_conn_on_timer_closed(uv_handle_t *h)
{
    mgmt_conn_on_close_done(h->data);
}

void mgmt_conn_close(struct mgmt_conn *m, mgmt_conn_close_cb cb, void *data)
{
    if (m == NULL || m->state == MGMT_CS_CLOSING) {
        return;
    }
    m->state = MGMT_CS_CLOSING;
    m->reported_up = false;
    m->close_cb = cb;
    m->close_data = data;
    /* Count every close first so a callback below cannot free m early. */
    m->pending_closes = 2 + (m->pipe_inited || m->pipe_closing ? 1 : 0);
    uv_timer_stop(&m->cmd_timer);
    uv_timer_stop(&m->retry_timer);
    if (m->pipe_inited) {
        m->pipe_inited = false;
        m->pipe_closing = true;
        uv_read_stop((uv_stream_t *)&m->pipe);
        uv_close((uv_handle_t *)&m->pipe, mgmt_conn_on_pipe_closed);
    }
    uv_close((uv_handle_t *)&m->cmd_timer, mgmt_conn_on_timer_closed);
    uv_close((uv_handle_t *)&m->retry_timer, mgmt_conn_on_timer_closed);
    mgmt_conn_q_drop(&m->internal);
    struct mgmt_cmd *c = m->inflight;
    m->inflight = NULL;
    if (c != NULL) {
        mgmt_conn_finish(m, c, OVHA_ECLOSED, NULL);
    }
    while ((c = mgmt_conn_q_pop(&m->user)) != NULL) {
        mgmt_conn_finish(m, c, OVHA_ECLOSED, NULL);
    }
}
