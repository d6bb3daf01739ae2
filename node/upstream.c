/* node/upstream: libcurl multi interface driven by libuv. See upstream.h.
 *
 * Lifetimes: every uv handle (the curl timer, the dispatch "kick" timer,
 * one uv_poll per curl socket, one backoff timer per request) is counted
 * in u->handles; the object is freed only when the last one has closed,
 * so a callback that closes the upstream never pulls memory from under
 * the code that called it. */
#include "node/upstream.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/base.h"

#define UPSTREAM_MOD "upstream"

#define UPSTREAM_CONTAINER(ptr, type, member) \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

enum upstream_breaker {
    UPSTREAM_CLOSED = 0,
    UPSTREAM_OPEN = 1,
    UPSTREAM_HALF_OPEN = 2,
};

enum upstream_req_state {
    UPSTREAM_REQ_QUEUED,
    UPSTREAM_REQ_RUNNING,
    UPSTREAM_REQ_BACKOFF,
};

struct upstream_link {
    struct upstream_link *prev, *next;
};

struct upstream_req {
    struct node_upstream *u;
    struct upstream_link all;   /* u->reqs: every live request */
    struct upstream_link queue; /* u->queue: waiting for a slot */
    uint64_t id;
    char *json;
    size_t json_len;
    node_upstream_cb cb;
    void *data;
    enum upstream_req_state state;
    unsigned attempts; /* attempts started */
    bool probe;        /* this attempt is the half-open probe */
    bool oversize, nomem;
    CURL *easy;
    struct ovha_buf body;
    uv_timer_t backoff;
    uint64_t submitted_ms;
    int last_status; /* of the previous attempt, while backing off */
    long last_code;
    char errbuf[CURL_ERROR_SIZE];
};

struct upstream_sock {
    struct node_upstream *u;
    struct upstream_link link;
    uv_poll_t poll;
    curl_socket_t fd;
    bool closing;
};

struct node_upstream {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer; /* curl's timeout */
    uv_timer_t kick;  /* deferred dispatch, so callbacks never nest */
    struct curl_slist *headers;
    char *url, *ca_file, *client_cert, *client_key;
    struct node_upstream_config cfg;
    struct upstream_link reqs, queue, socks;
    unsigned running;
    uint64_t next_id;
    uint64_t rng;
    enum upstream_breaker breaker;
    unsigned consecutive;
    uint64_t open_until;
    bool probe_inflight;
    struct node_upstream_stats stats;
    bool closing;
    unsigned handles;
    void (*close_cb)(void *);
    void *close_data;
};

static void upstream_dispatch(struct node_upstream *u);

/* ---- intrusive list ---------------------------------------------------- */

static void upstream_list_init(struct upstream_link *l)
{
    l->prev = l;
    l->next = l;
}

static bool upstream_list_empty(const struct upstream_link *l)
{
    return l->next == l;
}

static void upstream_list_insert(struct upstream_link *after,
                                 struct upstream_link *l)
{
    l->prev = after;
    l->next = after->next;
    after->next->prev = l;
    after->next = l;
}

/* Safe on an unlinked (self-looped) node. */
static void upstream_list_remove(struct upstream_link *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    upstream_list_init(l);
}

/* ---- lifetime ---------------------------------------------------------- */

static void upstream_free(struct node_upstream *u)
{
    void (*cb)(void *) = u->close_cb;
    void *data = u->close_data;

    curl_slist_free_all(u->headers);
    ovha_free(u->url);
    ovha_free(u->ca_file);
    ovha_free(u->client_cert);
    ovha_free(u->client_key);
    ovha_free(u);
    if (cb != NULL) {
        cb(data);
    }
}

static void upstream_handle_closed(struct node_upstream *u)
{
    u->handles--;
    if (u->closing && u->handles == 0) {
        upstream_free(u);
    }
}

static void upstream_timer_closed(uv_handle_t *h)
{
    upstream_handle_closed(h->data);
}

static void upstream_req_closed(uv_handle_t *h)
{
    struct upstream_req *r = h->data;
    struct node_upstream *u = r->u;

    ovha_free(r);
    upstream_handle_closed(u);
}

static void upstream_sock_closed(uv_handle_t *h)
{
    struct upstream_sock *s = h->data;
    struct node_upstream *u = s->u;

    ovha_free(s);
    upstream_handle_closed(u);
}

static void upstream_sock_close(struct upstream_sock *s)
{
    if (s->closing) {
        return;
    }
    s->closing = true;
    upstream_list_remove(&s->link);
    uv_close((uv_handle_t *)&s->poll, upstream_sock_closed);
}

/* Drops the curl transfer of a running request, if any. */
static void upstream_req_stop(struct upstream_req *r)
{
    struct node_upstream *u = r->u;

    if (r->easy != NULL) {
        if (u->multi != NULL) {
            curl_multi_remove_handle(u->multi, r->easy);
        }
        curl_easy_cleanup(r->easy);
        r->easy = NULL;
        u->running--;
        if (r->probe) {
            /* The next request becomes the probe. */
            u->probe_inflight = false;
            r->probe = false;
        }
    }
    uv_timer_stop(&r->backoff);
    upstream_list_remove(&r->queue);
}

static void upstream_req_free(struct upstream_req *r)
{
    upstream_req_stop(r);
    upstream_list_remove(&r->all);
    ovha_buf_free(&r->body);
    ovha_free(r->json);
    r->json = NULL;
    uv_close((uv_handle_t *)&r->backoff, upstream_req_closed);
}

/* Reports the final outcome and frees the request. The request is unlinked
 * before the callback, which may post, cancel or close freely. */
static void upstream_req_finish(struct upstream_req *r,
                                int status,
                                long code,
                                bool answered,
                                const char *err)
{
    struct node_upstream *u = r->u;
    const char *body = NULL;
    size_t len = 0;

    upstream_req_stop(r);
    upstream_list_remove(&r->all);
    if (status == 0) {
        u->stats.ok++;
    } else {
        u->stats.failures++;
    }
    if (r->attempts > 0) {
        u->stats.latency_ms_sum += ovha_now_mono_ms() - r->submitted_ms;
        u->stats.latency_count++;
    }
    if (answered) {
        body = r->body.data != NULL ? r->body.data : "";
        len = r->body.len;
    }
    r->cb(r->data, status, code, body, len, err != NULL ? err : "");
    upstream_req_free(r);
}

/* ---- breaker ----------------------------------------------------------- */

static void upstream_breaker_open(struct node_upstream *u)
{
    u->breaker = UPSTREAM_OPEN;
    u->open_until = ovha_now_mono_ms() + u->cfg.breaker_open_ms;
    u->stats.breaker_opens++;
    LOG_WARN(UPSTREAM_MOD, "circuit breaker open for %llu ms",
             (unsigned long long)u->cfg.breaker_open_ms);
}

/* 0: send normally, 1: send as the half-open probe, -EAGAIN: fail fast. */
static int upstream_breaker_admit(struct node_upstream *u)
{
    if (u->breaker == UPSTREAM_CLOSED) {
        return 0;
    }
    if (u->breaker == UPSTREAM_OPEN) {
        if (ovha_now_mono_ms() < u->open_until) {
            return -EAGAIN;
        }
        u->breaker = UPSTREAM_HALF_OPEN;
    }
    return u->probe_inflight ? -EAGAIN : 1;
}

/* Any success shows the upstream is up; while half-open only the probe's
 * failure counts (attempts sent before the breaker opened do not). */
static void upstream_breaker_record(struct node_upstream *u,
                                    bool failed,
                                    bool probe)
{
    if (!failed) {
        u->consecutive = 0;
        if (u->breaker != UPSTREAM_CLOSED) {
            LOG_INFO(UPSTREAM_MOD, "circuit breaker closed");
        }
        u->breaker = UPSTREAM_CLOSED;
        return;
    }
    u->consecutive++;
    if (u->breaker == UPSTREAM_HALF_OPEN && probe) {
        upstream_breaker_open(u);
    } else if (u->breaker == UPSTREAM_CLOSED &&
               u->consecutive >= u->cfg.breaker_failures) {
        upstream_breaker_open(u);
    }
}

/* ---- attempts ---------------------------------------------------------- */

static size_t upstream_write_cb(char *p, size_t size, size_t n, void *userp)
{
    struct upstream_req *r = userp;
    size_t len = size * n;

    /* Returning less than len makes curl fail with CURLE_WRITE_ERROR. */
    if (len > r->u->cfg.max_body - r->body.len) {
        r->oversize = true;
        return 0;
    }
    if (ovha_buf_append(&r->body, p, len) < 0) {
        r->nomem = true;
        return 0;
    }
    return len;
}

static bool upstream_easy_setup(struct upstream_req *r, CURL *e)
{
    struct node_upstream *u = r->u;
    bool ok = true;

#define UPSTREAM_SET(opt, val) \
    ok = ok && curl_easy_setopt(e, opt, val) == CURLE_OK
    UPSTREAM_SET(CURLOPT_URL, u->url);
    UPSTREAM_SET(CURLOPT_PROTOCOLS_STR, "https");
    UPSTREAM_SET(CURLOPT_REDIR_PROTOCOLS_STR, "https");
    UPSTREAM_SET(CURLOPT_FOLLOWLOCATION, 0L);
    UPSTREAM_SET(CURLOPT_NOSIGNAL, 1L);
    UPSTREAM_SET(CURLOPT_SSL_VERIFYPEER, 1L);
    UPSTREAM_SET(CURLOPT_SSL_VERIFYHOST, 2L);
    UPSTREAM_SET(CURLOPT_CAINFO, u->ca_file);
    UPSTREAM_SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    /* Never through a proxy picked up from the environment. */
    UPSTREAM_SET(CURLOPT_PROXY, "");
    /* Only our CA: no system directory of trusted roots. */
    UPSTREAM_SET(CURLOPT_CAPATH, (char *)NULL);
    if (u->client_cert != NULL) {
        UPSTREAM_SET(CURLOPT_SSLCERT, u->client_cert);
    }
    if (u->client_key != NULL) {
        UPSTREAM_SET(CURLOPT_SSLKEY, u->client_key);
    }
    UPSTREAM_SET(CURLOPT_CONNECTTIMEOUT_MS, (long)u->cfg.connect_timeout_ms);
    UPSTREAM_SET(CURLOPT_TIMEOUT_MS, (long)u->cfg.total_timeout_ms);
    UPSTREAM_SET(CURLOPT_POST, 1L);
    UPSTREAM_SET(CURLOPT_POSTFIELDS, r->json);
    UPSTREAM_SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->json_len);
    UPSTREAM_SET(CURLOPT_HTTPHEADER, u->headers);
    UPSTREAM_SET(CURLOPT_WRITEFUNCTION, upstream_write_cb);
    UPSTREAM_SET(CURLOPT_WRITEDATA, r);
    UPSTREAM_SET(CURLOPT_PRIVATE, r);
    UPSTREAM_SET(CURLOPT_ERRORBUFFER, r->errbuf);
#undef UPSTREAM_SET
    return ok;
}

static int upstream_attempt_start(struct upstream_req *r)
{
    struct node_upstream *u = r->u;
    CURL *e = curl_easy_init();

    if (e == NULL) {
        return -ENOMEM;
    }
    ovha_buf_reset(&r->body);
    r->oversize = false;
    r->nomem = false;
    r->errbuf[0] = '\0';
    if (!upstream_easy_setup(r, e) ||
        curl_multi_add_handle(u->multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        return -ENOMEM;
    }
    r->easy = e;
    r->state = UPSTREAM_REQ_RUNNING;
    r->attempts++;
    if (r->attempts > 1) {
        u->stats.retries++;
    }
    u->running++;
    return 0;
}

/* Maps a curl result to a status; *ret_retry says whether another attempt
 * may help. */
static int upstream_map_error(struct upstream_req *r,
                              CURLcode rc,
                              bool *ret_retry)
{
    *ret_retry = false;
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        r->u->stats.timeouts++;
        *ret_retry = true;
        return OVHA_ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
        *ret_retry = true;
        return -ECONNREFUSED;
    case CURLE_WRITE_ERROR:
        if (r->oversize) {
            ovha_strlcpy(r->errbuf, "oversize", sizeof(r->errbuf));
            return OVHA_ELIMIT;
        }
        if (r->nomem) {
            return -ENOMEM;
        }
        return -EPROTO;
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
        *ret_retry = true;
        return -EPROTO;
    default:
        /* TLS verification failures and unparsable replies: deterministic. */
        return -EPROTO;
    }
}

static void upstream_backoff_cb(uv_timer_t *t)
{
    struct upstream_req *r = t->data;
    struct node_upstream *u = r->u;

    /* A retry has waited longest: it goes first. */
    r->state = UPSTREAM_REQ_QUEUED;
    upstream_list_insert(&u->queue, &r->queue);
    upstream_dispatch(u);
}

static uint64_t upstream_rand(struct node_upstream *u)
{
    u->rng ^= u->rng << 13;
    u->rng ^= u->rng >> 7;
    u->rng ^= u->rng << 17;
    return u->rng;
}

/* base * 2^(n-1), jittered uniformly into its upper half. */
static uint64_t upstream_backoff_ms(struct node_upstream *u, unsigned n)
{
    unsigned shift = n > 0 ? n - 1 : 0;
    uint64_t d;

    if (shift > 10) {
        shift = 10;
    }
    d = u->cfg.backoff_ms << shift;
    return d / 2 + upstream_rand(u) % (d / 2 + 1);
}

static void upstream_attempt_done(struct upstream_req *r, CURLcode rc)
{
    struct node_upstream *u = r->u;
    long code = 0;
    bool retry = false, answered = rc == CURLE_OK;
    bool probe = r->probe;
    int status = 0;

    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
    /* Only the transfer goes; the request stays linked. */
    curl_multi_remove_handle(u->multi, r->easy);
    curl_easy_cleanup(r->easy);
    r->easy = NULL;
    u->running--;
    if (probe) {
        u->probe_inflight = false;
        r->probe = false;
    }
    if (rc == CURLE_OK && code >= 500) {
        status = -EPROTO;
        retry = true;
        snprintf(r->errbuf, sizeof(r->errbuf), "http %ld", code);
    } else if (rc == CURLE_OK && code == 200 && u->cfg.accept != NULL &&
               u->cfg.accept(r->body.data != NULL ? r->body.data : "",
                             r->body.len, r->errbuf, sizeof(r->errbuf)) != 0) {
        status = -EBADMSG;
    } else if (rc != CURLE_OK) {
        status = upstream_map_error(r, rc, &retry);
        if (r->errbuf[0] == '\0') {
            ovha_strlcpy(r->errbuf, curl_easy_strerror(rc), sizeof(r->errbuf));
        }
    }
    upstream_breaker_record(u, status != 0, probe);
    if (status != 0 && retry && r->attempts <= u->cfg.max_retries) {
        r->last_status = status;
        r->last_code = code;
        r->state = UPSTREAM_REQ_BACKOFF;
        uv_timer_start(&r->backoff, upstream_backoff_cb,
                       upstream_backoff_ms(u, r->attempts), 0);
        return;
    }
    upstream_req_finish(r, status, code, answered, r->errbuf);
}

/* Starts queued requests while slots are free; the breaker decides whether
 * each is sent, sent as the probe, or failed fast. */
static void upstream_dispatch(struct node_upstream *u)
{
    unsigned guard = 0;

    while (!u->closing && !upstream_list_empty(&u->queue) &&
           u->running < u->cfg.max_concurrency && guard++ < 100000) {
        struct upstream_req *r =
            UPSTREAM_CONTAINER(u->queue.next, struct upstream_req, queue);
        int admit = upstream_breaker_admit(u);
        int rc;

        upstream_list_remove(&r->queue);
        if (admit < 0) {
            if (r->attempts == 0) {
                upstream_req_finish(r, -EAGAIN, 0, false,
                                    "circuit breaker open");
            } else {
                /* A retry the breaker stops reports what the last attempt
                 * got. */
                upstream_req_finish(r, r->last_status, r->last_code, false,
                                    r->errbuf);
            }
            continue;
        }
        rc = upstream_attempt_start(r);
        if (rc < 0) {
            upstream_req_finish(r, rc, 0, false, "cannot start request");
            continue;
        }
        if (admit == 1) {
            r->probe = true;
            u->probe_inflight = true;
        }
    }
}

/* ---- curl <-> libuv ---------------------------------------------------- */

static void upstream_check_info(struct node_upstream *u)
{
    CURLMsg *msg;
    int left;

    while (!u->closing && (msg = curl_multi_info_read(u->multi, &left))) {
        char *priv = NULL;

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        upstream_attempt_done((struct upstream_req *)(void *)priv,
                              msg->data.result);
    }
    upstream_dispatch(u);
}

static void upstream_poll_cb(uv_poll_t *h, int status, int events)
{
    struct upstream_sock *s = h->data;
    struct node_upstream *u = s->u;
    int flags = 0, running = 0;

    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE) {
            flags |= CURL_CSELECT_IN;
        }
        if (events & UV_WRITABLE) {
            flags |= CURL_CSELECT_OUT;
        }
    }
    curl_multi_socket_action(u->multi, s->fd, flags, &running);
    upstream_check_info(u);
}

static void upstream_timer_cb(uv_timer_t *t)
{
    struct node_upstream *u = t->data;
    int running = 0;

    curl_multi_socket_action(u->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    upstream_check_info(u);
}

static int upstream_timer_fn(CURLM *multi, long timeout_ms, void *userp)
{
    struct node_upstream *u = userp;

    (void)multi;
    if (timeout_ms < 0) {
        uv_timer_stop(&u->timer);
    } else {
        uv_timer_start(&u->timer, upstream_timer_cb, (uint64_t)timeout_ms, 0);
    }
    return 0;
}

static int upstream_socket_fn(CURL *easy,
                              curl_socket_t fd,
                              int what,
                              void *userp,
                              void *socketp)
{
    struct node_upstream *u = userp;
    struct upstream_sock *s = socketp;
    int events = 0;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            upstream_sock_close(s);
        }
        return 0;
    }
    if (s == NULL) {
        s = ovha_calloc(1, sizeof(*s));
        if (s == NULL) {
            return -1;
        }
        if (uv_poll_init_socket(u->loop, &s->poll, fd) < 0) {
            ovha_free(s);
            return -1;
        }
        s->u = u;
        s->fd = fd;
        s->poll.data = s;
        u->handles++;
        upstream_list_insert(&u->socks, &s->link);
        curl_multi_assign(u->multi, fd, s);
    }
    if (what & CURL_POLL_IN) {
        events |= UV_READABLE;
    }
    if (what & CURL_POLL_OUT) {
        events |= UV_WRITABLE;
    }
    uv_poll_start(&s->poll, events, upstream_poll_cb);
    return 0;
}

static void upstream_kick_cb(uv_timer_t *t)
{
    upstream_dispatch(t->data);
}

/* ---- public ------------------------------------------------------------ */

static int upstream_copy_config(struct node_upstream *u,
                                const struct node_upstream_config *cfg)
{
    u->cfg = *cfg;
    u->cfg.connect_timeout_ms =
        cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 500;
    u->cfg.total_timeout_ms =
        cfg->total_timeout_ms ? cfg->total_timeout_ms : 1500;
    u->cfg.backoff_ms = cfg->backoff_ms ? cfg->backoff_ms : 50;
    u->cfg.max_concurrency = cfg->max_concurrency ? cfg->max_concurrency : 16;
    u->cfg.breaker_failures = cfg->breaker_failures ? cfg->breaker_failures : 5;
    u->cfg.breaker_open_ms = cfg->breaker_open_ms ? cfg->breaker_open_ms : 5000;
    u->cfg.max_body = cfg->max_body ? cfg->max_body : 1024 * 1024;
    u->url = ovha_strdup(cfg->url);
    u->ca_file = ovha_strdup(cfg->ca_file);
    u->client_cert = cfg->client_cert ? ovha_strdup(cfg->client_cert) : NULL;
    u->client_key = cfg->client_key ? ovha_strdup(cfg->client_key) : NULL;
    if (u->url == NULL || u->ca_file == NULL ||
        (cfg->client_cert != NULL && u->client_cert == NULL) ||
        (cfg->client_key != NULL && u->client_key == NULL)) {
        return -ENOMEM;
    }
    u->cfg.url = u->url;
    u->cfg.ca_file = u->ca_file;
    u->cfg.client_cert = u->client_cert;
    u->cfg.client_key = u->client_key;
    return 0;
}

static int upstream_curl_setup(struct node_upstream *u)
{
    static bool global_done;
    struct curl_slist *h;

    if (!global_done) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            return -ENOMEM;
        }
        global_done = true;
    }
    h = curl_slist_append(NULL, "Content-Type: application/json");
    if (h != NULL) {
        u->headers = h;
        h = curl_slist_append(h, "Accept: application/json");
    }
    if (h != NULL) {
        /* No "Expect: 100-continue" round trip. */
        h = curl_slist_append(h, "Expect:");
    }
    u->multi = curl_multi_init();
    if (h == NULL || u->multi == NULL) {
        return -ENOMEM;
    }
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETFUNCTION, upstream_socket_fn);
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERFUNCTION, upstream_timer_fn);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                      (long)u->cfg.max_concurrency);
    return 0;
}

int node_upstream_new(uv_loop_t *loop,
                      const struct node_upstream_config *cfg,
                      struct node_upstream **ret)
{
    struct node_upstream *u;
    int rc;

    *ret = NULL;
    if (cfg->url == NULL || strncasecmp(cfg->url, "https://", 8) != 0 ||
        cfg->ca_file == NULL) {
        return OVHA_ECONFIG;
    }
    u = ovha_calloc(1, sizeof(*u));
    if (u == NULL) {
        return -ENOMEM;
    }
    u->loop = loop;
    upstream_list_init(&u->reqs);
    upstream_list_init(&u->queue);
    upstream_list_init(&u->socks);
    u->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)u;
    if (u->rng == 0) {
        u->rng = 0x9e3779b97f4a7c15ULL;
    }
    rc = upstream_copy_config(u, cfg);
    if (rc == 0) {
        rc = upstream_curl_setup(u);
    }
    if (rc < 0) {
        if (u->multi != NULL) {
            curl_multi_cleanup(u->multi);
        }
        u->close_cb = NULL;
        upstream_free(u);
        return rc;
    }
    uv_timer_init(loop, &u->timer);
    uv_timer_init(loop, &u->kick);
    u->timer.data = u;
    u->kick.data = u;
    u->handles = 2;
    *ret = u;
    return 0;
}

int node_upstream_post_json(struct node_upstream *u,
                            const char *json,
                            node_upstream_cb cb,
                            void *data,
                            uint64_t *ret_id)
{
    struct upstream_req *r;

    if (u->closing) {
        return OVHA_ECLOSED;
    }
    r = ovha_calloc(1, sizeof(*r));
    if (r == NULL) {
        return -ENOMEM;
    }
    r->json_len = strlen(json);
    r->json = ovha_strndup(json, r->json_len);
    if (r->json == NULL) {
        ovha_free(r);
        return -ENOMEM;
    }
    r->u = u;
    r->id = ++u->next_id;
    r->cb = cb;
    r->data = data;
    r->state = UPSTREAM_REQ_QUEUED;
    r->submitted_ms = ovha_now_mono_ms();
    ovha_buf_init(&r->body);
    upstream_list_init(&r->all);
    upstream_list_init(&r->queue);
    uv_timer_init(u->loop, &r->backoff);
    r->backoff.data = r;
    u->handles++;
    upstream_list_insert(u->reqs.prev, &r->all);
    upstream_list_insert(u->queue.prev, &r->queue);
    u->stats.requests++;
    /* Dispatch from the loop so cb never runs inside this call. */
    uv_timer_start(&u->kick, upstream_kick_cb, 0, 0);
    if (ret_id != NULL) {
        *ret_id = r->id;
    }
    return 0;
}

void node_upstream_cancel(struct node_upstream *u, uint64_t id)
{
    struct upstream_link *l;
    unsigned guard = 0;

    for (l = u->reqs.next; l != &u->reqs && guard++ < 10000000; l = l->next) {
        struct upstream_req *r =
            UPSTREAM_CONTAINER(l, struct upstream_req, all);

        if (r->id == id) {
            upstream_req_free(r);
            if (!u->closing) {
                /* A slot may have been freed. */
                uv_timer_start(&u->kick, upstream_kick_cb, 0, 0);
            }
            return;
        }
    }
}

void node_upstream_close(struct node_upstream *u,
                         void (*cb)(void *),
                         void *data)
{
    unsigned guard = 0;

    if (u->closing) {
        return;
    }
    u->closing = true;
    u->close_cb = cb;
    u->close_data = data;
    while (!upstream_list_empty(&u->reqs) && guard++ < 10000000) {
        struct upstream_req *r =
            UPSTREAM_CONTAINER(u->reqs.next, struct upstream_req, all);

        upstream_req_finish(r, OVHA_ECLOSED, 0, false, "upstream closed");
    }
    /* May report CURL_POLL_REMOVE for cached connections: still safe, the
     * object lives until every handle has closed. */
    curl_multi_cleanup(u->multi);
    u->multi = NULL;
    while (!upstream_list_empty(&u->socks)) {
        upstream_sock_close(
            UPSTREAM_CONTAINER(u->socks.next, struct upstream_sock, link));
    }
    uv_close((uv_handle_t *)&u->timer, upstream_timer_closed);
    uv_close((uv_handle_t *)&u->kick, upstream_timer_closed);
}

void node_upstream_get_stats(const struct node_upstream *u,
                             struct node_upstream_stats *ret)
{
    *ret = u->stats;
    ret->breaker_state = (uint64_t)u->breaker;
    if (u->breaker == UPSTREAM_OPEN && ovha_now_mono_ms() >= u->open_until) {
        ret->breaker_state = UPSTREAM_HALF_OPEN;
    }
}
