/* Redis cache tier: hiredis async on the node loop via its libuv adapter.
 *
 * Redis is optional: while it is down every call fails at once with
 * -ENOTCONN and a uv timer reconnects with exponential backoff (and
 * re-AUTHs). Outstanding replies are bounded by max_inflight, so nothing
 * queues without limit.
 *
 * Value encoding (one Redis string, binary safe):
 *   "ovha1\n<stored_at_ms>\n<ttl_ms>\n<pw_salt>\n<pw_hash>\n<value bytes>"
 */
#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "node/cache.h"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wshadow"
#include <hiredis/adapters/libuv.h>
#pragma GCC diagnostic pop

#include "base/base.h"

#define NODE_CACHE_REDIS_MAGIC "ovha1\n"

enum node_cache_redis_state {
    NODE_CACHE_REDIS_IDLE,       /* no context; reconnect timer may run */
    NODE_CACHE_REDIS_CONNECTING, /* TCP connect in progress */
    NODE_CACHE_REDIS_AUTHING,    /* connected, AUTH sent */
    NODE_CACHE_REDIS_READY,      /* usable */
};

struct node_cache_redis {
    uv_loop_t *loop;
    char *host;
    int port;
    char *password;
    char *prefix;
    size_t prefix_len;
    uint64_t ttl_ms;
    uint64_t connect_timeout_ms;
    uint64_t cmd_timeout_ms;
    uint64_t progress_ms; /* loop time of the last reply, or first send */
    uint64_t backoff_min_ms;
    uint64_t backoff_max_ms;
    uint64_t backoff_ms; /* next reconnect delay */
    unsigned max_inflight;
    unsigned inflight;

    redisAsyncContext *ac; /* NULL when IDLE */
    enum node_cache_redis_state state;
    bool was_connected; /* a connection existed before: count reconnects */
    bool closing;
    uv_timer_t reconnect_timer;
    uv_timer_t connect_timer;
    uv_timer_t watchdog_timer;
    int handles_open;
    node_cache_redis_close_cb close_cb;
    void *close_data;

    struct node_cache_redis_stats stats;
    char errmsg[256];
};

struct node_cache_redis_get_req {
    struct node_cache_redis *c;
    node_cache_redis_get_cb cb;
    void *data;
};

static void node_cache_redis_connect(struct node_cache_redis *c);
static void node_cache_redis_reconnect_cb(uv_timer_t *t);

static void node_cache_redis_seterr(struct node_cache_redis *c,
                                    const char *what,
                                    const char *why)
{
    snprintf(c->errmsg, sizeof(c->errmsg), "redis %s:%d: %s: %s", c->host,
             c->port, what, why != NULL ? why : "?");
}

static void node_cache_redis_schedule(struct node_cache_redis *c)
{
    if (c->closing) {
        return;
    }
    uv_timer_start(&c->reconnect_timer, node_cache_redis_reconnect_cb,
                   c->backoff_ms, 0);
    c->backoff_ms *= 2;
    if (c->backoff_ms > c->backoff_max_ms) {
        c->backoff_ms = c->backoff_max_ms;
    }
}

/* Forgets the context (already freed or being freed by hiredis) and plans
 * the next attempt. */
static void node_cache_redis_lost(struct node_cache_redis *c)
{
    c->ac = NULL;
    c->state = NODE_CACHE_REDIS_IDLE;
    c->stats.connected = false;
    uv_timer_stop(&c->connect_timer);
    uv_timer_stop(&c->watchdog_timer);
    node_cache_redis_schedule(c);
}

/* Drops our context from outside any hiredis callback. */
static void node_cache_redis_drop(struct node_cache_redis *c)
{
    redisAsyncContext *ac = c->ac;

    if (ac == NULL) {
        return;
    }
    c->ac = NULL; /* so the disconnect callback ignores it */
    ac->data = NULL;
    redisAsyncFree(ac);
}

static void node_cache_redis_reconnect_cb(uv_timer_t *t)
{
    struct node_cache_redis *c = t->data;

    node_cache_redis_connect(c);
}

static void node_cache_redis_connect_timeout_cb(uv_timer_t *t)
{
    struct node_cache_redis *c = t->data;

    node_cache_redis_seterr(c, "connect", "timed out");
    c->stats.errors++;
    node_cache_redis_drop(c);
    node_cache_redis_lost(c);
}

/* A server that accepts but does not answer (stopped, swapping) would hold
 * replies forever: drop the connection when the oldest outstanding command
 * has seen no reply for cmd_timeout_ms. Its callers get -ENOTCONN. */
static void node_cache_redis_watchdog_cb(uv_timer_t *t)
{
    struct node_cache_redis *c = t->data;

    if (c->state != NODE_CACHE_REDIS_READY || c->inflight == 0 ||
        uv_now(c->loop) - c->progress_ms < c->cmd_timeout_ms) {
        return;
    }
    node_cache_redis_seterr(c, "command", "no reply in time");
    c->stats.errors++;
    node_cache_redis_drop(c);
    node_cache_redis_lost(c);
}

static void node_cache_redis_sent(struct node_cache_redis *c)
{
    if (c->inflight++ == 0) {
        c->progress_ms = uv_now(c->loop);
    }
}

static void node_cache_redis_replied(struct node_cache_redis *c)
{
    c->inflight--;
    c->progress_ms = uv_now(c->loop);
}

static void node_cache_redis_ready(struct node_cache_redis *c)
{
    uint64_t period = c->cmd_timeout_ms / 4 > 10 ? c->cmd_timeout_ms / 4 : 10;

    uv_timer_start(&c->watchdog_timer, node_cache_redis_watchdog_cb, period,
                   period);
    c->state = NODE_CACHE_REDIS_READY;
    c->stats.connected = true;
    c->backoff_ms = c->backoff_min_ms;
    uv_timer_stop(&c->connect_timer);
    if (c->was_connected) {
        c->stats.reconnects++;
    }
    c->was_connected = true;
}

static void node_cache_redis_auth_cb(redisAsyncContext *ac, void *r, void *priv)
{
    struct node_cache_redis *c = priv;
    redisReply *reply = r;

    if (c == NULL || c->ac != ac || c->closing) {
        return;
    }
    if (reply != NULL && reply->type == REDIS_REPLY_STATUS) {
        node_cache_redis_ready(c);
        return;
    }
    node_cache_redis_seterr(c, "AUTH",
                            reply != NULL && reply->type == REDIS_REPLY_ERROR
                                ? reply->str
                                : "no reply");
    c->stats.errors++;
    if (reply == NULL) {
        return; /* the disconnect callback follows */
    }
    /* Freeing inside a reply callback is deferred by hiredis; the
     * disconnect callback then sees ac->data NULL. */
    ac->data = NULL;
    redisAsyncFree(ac);
    node_cache_redis_lost(c);
}

static void node_cache_redis_connected_cb(const redisAsyncContext *cac,
                                          int status)
{
    struct node_cache_redis *c = cac->data;
    redisAsyncContext *ac = (redisAsyncContext *)cac;

    if (c == NULL || c->ac != ac) {
        return;
    }
    if (status != REDIS_OK) {
        /* hiredis frees the context after this returns. */
        node_cache_redis_seterr(c, "connect", cac->errstr);
        c->stats.errors++;
        node_cache_redis_lost(c);
        return;
    }
    if (c->password == NULL) {
        node_cache_redis_ready(c);
        return;
    }
    c->state = NODE_CACHE_REDIS_AUTHING;
    if (redisAsyncCommand(ac, node_cache_redis_auth_cb, c, "AUTH %s",
                          c->password) != REDIS_OK) {
        node_cache_redis_seterr(c, "AUTH", "cannot queue");
        c->stats.errors++;
    }
}

static void node_cache_redis_disconnected_cb(const redisAsyncContext *cac,
                                             int status)
{
    struct node_cache_redis *c = cac->data;

    (void)status;
    if (c == NULL || c->ac != cac) {
        return;
    }
    node_cache_redis_seterr(c, "connection",
                            cac->errstr[0] != '\0' ? cac->errstr : "closed");
    node_cache_redis_lost(c);
}

static void node_cache_redis_connect(struct node_cache_redis *c)
{
    redisAsyncContext *ac;

    if (c->closing || c->ac != NULL) {
        return;
    }
    ac = redisAsyncConnect(c->host, c->port);
    if (ac == NULL) {
        node_cache_redis_seterr(c, "connect", "out of memory");
        c->stats.errors++;
        node_cache_redis_schedule(c);
        return;
    }
    if (ac->err != 0) {
        node_cache_redis_seterr(c, "connect", ac->errstr);
        c->stats.errors++;
        redisAsyncFree(ac);
        node_cache_redis_schedule(c);
        return;
    }
    ac->data = c;
    if (redisLibuvAttach(ac, c->loop) != REDIS_OK) {
        node_cache_redis_seterr(c, "connect", "cannot attach to loop");
        c->stats.errors++;
        ac->data = NULL;
        redisAsyncFree(ac);
        node_cache_redis_schedule(c);
        return;
    }
    redisAsyncSetConnectCallback(ac, node_cache_redis_connected_cb);
    redisAsyncSetDisconnectCallback(ac, node_cache_redis_disconnected_cb);
    c->ac = ac;
    c->state = NODE_CACHE_REDIS_CONNECTING;
    uv_timer_start(&c->connect_timer, node_cache_redis_connect_timeout_cb,
                   c->connect_timeout_ms, 0);
}

static char *node_cache_redis_dup(const char *s)
{
    return s != NULL && s[0] != '\0' ? ovha_strdup(s) : NULL;
}

static void node_cache_redis_free(struct node_cache_redis *c)
{
    ovha_free(c->host);
    ovha_free(c->password);
    ovha_free(c->prefix);
    ovha_free(c);
}

int node_cache_redis_new(uv_loop_t *loop,
                         const struct node_cache_redis_config *cfg,
                         struct node_cache_redis **ret_c)
{
    struct node_cache_redis *c;

    if (cfg->host == NULL || cfg->host[0] == '\0' || cfg->port <= 0 ||
        cfg->port > 65535) {
        return -EINVAL;
    }
    c = ovha_calloc(1, sizeof(*c));
    if (c == NULL) {
        return -ENOMEM;
    }
    c->loop = loop;
    c->port = cfg->port;
    c->host = ovha_strdup(cfg->host);
    c->password = node_cache_redis_dup(cfg->password);
    c->prefix = ovha_strdup(cfg->key_prefix != NULL ? cfg->key_prefix : "");
    if (c->host == NULL || c->prefix == NULL ||
        (cfg->password != NULL && cfg->password[0] != '\0' &&
         c->password == NULL)) {
        node_cache_redis_free(c);
        return -ENOMEM;
    }
    c->prefix_len = strlen(c->prefix);
    c->ttl_ms = cfg->ttl_ms != 0 ? cfg->ttl_ms : 60000;
    c->connect_timeout_ms =
        cfg->connect_timeout_ms != 0 ? cfg->connect_timeout_ms : 2000;
    c->cmd_timeout_ms = cfg->cmd_timeout_ms != 0 ? cfg->cmd_timeout_ms : 1000;
    c->backoff_min_ms = cfg->backoff_min_ms != 0 ? cfg->backoff_min_ms : 100;
    c->backoff_max_ms = cfg->backoff_max_ms != 0 ? cfg->backoff_max_ms : 5000;
    if (c->backoff_max_ms < c->backoff_min_ms) {
        c->backoff_max_ms = c->backoff_min_ms;
    }
    c->backoff_ms = c->backoff_min_ms;
    c->max_inflight = cfg->max_inflight != 0 ? cfg->max_inflight : 1024;
    uv_timer_init(loop, &c->reconnect_timer);
    uv_timer_init(loop, &c->connect_timer);
    uv_timer_init(loop, &c->watchdog_timer);
    c->reconnect_timer.data = c;
    c->connect_timer.data = c;
    c->watchdog_timer.data = c;
    c->handles_open = 3;
    node_cache_redis_connect(c);
    *ret_c = c;
    return 0;
}

/* Builds prefix || key into buf. */
static int node_cache_redis_key(const struct node_cache_redis *c,
                                const char *key,
                                size_t keylen,
                                struct ovha_buf *buf)
{
    if (ovha_buf_append(buf, c->prefix, c->prefix_len) < 0 ||
        ovha_buf_append(buf, key, keylen) < 0) {
        return -ENOMEM;
    }
    return 0;
}

/* Common gate: connected and under the inflight bound. */
static int node_cache_redis_admit(struct node_cache_redis *c)
{
    if (c->closing) {
        return OVHA_ECLOSED;
    }
    if (c->state != NODE_CACHE_REDIS_READY || c->ac == NULL) {
        c->stats.errors++;
        return -ENOTCONN;
    }
    if (c->inflight >= c->max_inflight) {
        c->stats.errors++;
        return OVHA_ELIMIT;
    }
    return 0;
}

/* Parses one unsigned decimal field ended by '\n'; advances *p. */
static int node_cache_redis_field(const char **p,
                                  const char *end,
                                  char *out,
                                  size_t outsz)
{
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    size_t n;

    if (nl == NULL) {
        return OVHA_EPROTO;
    }
    n = (size_t)(nl - *p);
    if (n >= outsz) {
        return OVHA_EPROTO;
    }
    memcpy(out, *p, n);
    out[n] = '\0';
    *p = nl + 1;
    return 0;
}

static int node_cache_redis_decode(const char *s,
                                   size_t len,
                                   struct node_cache_entry *e)
{
    const char *p = s;
    const char *end = s + len;
    char num[32];
    size_t ml = strlen(NODE_CACHE_REDIS_MAGIC);

    memset(e, 0, sizeof(*e));
    if (len < ml || memcmp(s, NODE_CACHE_REDIS_MAGIC, ml) != 0) {
        return OVHA_EPROTO;
    }
    p += ml;
    if (node_cache_redis_field(&p, end, num, sizeof(num)) < 0 ||
        ovha_parse_u64(num, UINT64_MAX, &e->stored_at_ms) < 0 ||
        node_cache_redis_field(&p, end, num, sizeof(num)) < 0 ||
        ovha_parse_u64(num, UINT64_MAX, &e->ttl_ms) < 0 ||
        node_cache_redis_field(&p, end, e->pw_salt, sizeof(e->pw_salt)) < 0 ||
        node_cache_redis_field(&p, end, e->pw_hash, sizeof(e->pw_hash)) < 0) {
        return OVHA_EPROTO;
    }
    /* The value lives in the reply; the callback gets a borrowed view. */
    e->value = (char *)p;
    e->value_len = (size_t)(end - p);
    return 0;
}

static void node_cache_redis_get_reply_cb(redisAsyncContext *ac,
                                          void *r,
                                          void *priv)
{
    struct node_cache_redis_get_req *req = priv;
    struct node_cache_redis *c = req->c;
    redisReply *reply = r;
    struct node_cache_entry e;
    int status;

    (void)ac;
    node_cache_redis_replied(c);
    if (reply == NULL) {
        status = c->closing ? OVHA_ECLOSED : -ENOTCONN;
        c->stats.errors++;
        req->cb(req->data, status, NULL);
    } else if (reply->type == REDIS_REPLY_NIL) {
        c->stats.misses++;
        req->cb(req->data, -ENOENT, NULL);
    } else if (reply->type == REDIS_REPLY_STRING &&
               node_cache_redis_decode(reply->str, (size_t)reply->len, &e) ==
                   0) {
        c->stats.hits++;
        /* reply->str is NUL-terminated by hiredis, so value is too. */
        req->cb(req->data, 0, &e);
    } else {
        c->stats.errors++;
        if (reply->type == REDIS_REPLY_ERROR) {
            node_cache_redis_seterr(c, "GET", reply->str);
        }
        req->cb(req->data, OVHA_EPROTO, NULL);
    }
    ovha_free(req);
}

int node_cache_redis_get(struct node_cache_redis *c,
                         const char *key,
                         size_t keylen,
                         node_cache_redis_get_cb cb,
                         void *data)
{
    struct node_cache_redis_get_req *req;
    struct ovha_buf k;
    int rc;

    rc = node_cache_redis_admit(c);
    if (rc < 0) {
        return rc;
    }
    req = ovha_malloc(sizeof(*req));
    if (req == NULL) {
        return -ENOMEM;
    }
    req->c = c;
    req->cb = cb;
    req->data = data;
    ovha_buf_init(&k);
    rc = node_cache_redis_key(c, key, keylen, &k);
    if (rc < 0) {
        goto err;
    }
    if (redisAsyncCommand(c->ac, node_cache_redis_get_reply_cb, req, "GET %b",
                          k.data, k.len) != REDIS_OK) {
        rc = -ENOTCONN;
        goto err;
    }
    node_cache_redis_sent(c);
    ovha_buf_free(&k);
    return 0;
err:
    c->stats.errors++;
    ovha_buf_free(&k);
    ovha_free(req);
    return rc;
}

/* Reply of a fire-and-forget command: only errors matter. */
static void node_cache_redis_write_reply_cb(redisAsyncContext *ac,
                                            void *r,
                                            void *priv)
{
    struct node_cache_redis *c = priv;
    redisReply *reply = r;

    (void)ac;
    node_cache_redis_replied(c);
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        c->stats.errors++;
        if (reply != NULL) {
            node_cache_redis_seterr(c, "write", reply->str);
        }
    }
}

int node_cache_redis_put(struct node_cache_redis *c,
                         const char *key,
                         size_t keylen,
                         const struct node_cache_entry *e)
{
    struct ovha_buf k;
    struct ovha_buf v;
    uint64_t ttl = e->ttl_ms != 0 ? e->ttl_ms : c->ttl_ms;
    uint64_t stored =
        e->stored_at_ms != 0 ? e->stored_at_ms : ovha_now_real_ms();
    char px[32];
    int rc;

    rc = node_cache_redis_admit(c);
    if (rc < 0) {
        return rc;
    }
    ovha_buf_init(&k);
    ovha_buf_init(&v);
    rc = node_cache_redis_key(c, key, keylen, &k);
    if (rc < 0) {
        goto out;
    }
    if (ovha_buf_printf(
            &v, NODE_CACHE_REDIS_MAGIC "%" PRIu64 "\n%" PRIu64 "\n%s\n%s\n",
            stored, ttl, e->pw_salt, e->pw_hash) < 0 ||
        ovha_buf_append(&v, e->value, e->value_len) < 0) {
        rc = -ENOMEM;
        goto out;
    }
    snprintf(px, sizeof(px), "%" PRIu64, ttl);
    if (redisAsyncCommand(c->ac, node_cache_redis_write_reply_cb, c,
                          "SET %b %b PX %s", k.data, k.len, v.data, v.len,
                          px) != REDIS_OK) {
        rc = -ENOTCONN;
        goto out;
    }
    node_cache_redis_sent(c);
out:
    if (rc < 0) {
        c->stats.errors++;
    }
    ovha_buf_free(&k);
    ovha_buf_free(&v);
    return rc;
}

int node_cache_redis_del(struct node_cache_redis *c,
                         const char *key,
                         size_t keylen)
{
    struct ovha_buf k;
    int rc;

    rc = node_cache_redis_admit(c);
    if (rc < 0) {
        return rc;
    }
    ovha_buf_init(&k);
    rc = node_cache_redis_key(c, key, keylen, &k);
    if (rc == 0 && redisAsyncCommand(c->ac, node_cache_redis_write_reply_cb, c,
                                     "DEL %b", k.data, k.len) != REDIS_OK) {
        rc = -ENOTCONN;
    }
    if (rc == 0) {
        node_cache_redis_sent(c);
    } else {
        c->stats.errors++;
    }
    ovha_buf_free(&k);
    return rc;
}

void node_cache_redis_get_stats(const struct node_cache_redis *c,
                                struct node_cache_redis_stats *ret_stats)
{
    *ret_stats = c->stats;
}

const char *node_cache_redis_errmsg(const struct node_cache_redis *c)
{
    return c->errmsg;
}

static void node_cache_redis_handle_closed_cb(uv_handle_t *h)
{
    struct node_cache_redis *c = h->data;

    if (--c->handles_open > 0) {
        return;
    }
    if (c->close_cb != NULL) {
        c->close_cb(c->close_data);
    }
    node_cache_redis_free(c);
}

void node_cache_redis_close(struct node_cache_redis *c,
                            node_cache_redis_close_cb cb,
                            void *data)
{
    redisAsyncContext *ac;

    if (c == NULL || c->closing) {
        return;
    }
    c->closing = true;
    c->close_cb = cb;
    c->close_data = data;
    c->stats.connected = false;
    ac = c->ac;
    c->ac = NULL;
    c->state = NODE_CACHE_REDIS_IDLE;
    if (ac != NULL) {
        /* Outstanding gets get a NULL reply -> OVHA_ECLOSED; if we are
         * inside a reply callback hiredis defers the free until it
         * returns, still before the loop runs our close callbacks. */
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    uv_close((uv_handle_t *)&c->reconnect_timer,
             node_cache_redis_handle_closed_cb);
    uv_close((uv_handle_t *)&c->connect_timer,
             node_cache_redis_handle_closed_cb);
    uv_close((uv_handle_t *)&c->watchdog_timer,
             node_cache_redis_handle_closed_cb);
}
