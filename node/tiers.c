/* node/tiers: rules from the upstream decision API through cache tiers.
 * See tiers.h for the lookup order and the failure modes.
 *
 * Ownership: a lookup that misses memory joins or starts a *flight*, one
 * per identity and password. A flight holds its waiters, the request body
 * and the password (wiped when freed), and walks its stages: Redis GET ->
 * upstream POST -> (on failure) fallback. Callbacks of Redis and the SQLite
 * file cannot be cancelled, so each outstanding one holds a reference; the
 * flight is freed when it is finished and unreferenced. The upstream
 * request is cancelled instead (its callback then never fires).
 */
#include "node/tiers.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"
#include "node/answer.h"
#include "node/cache.h"
#include "node/upstream.h"

#define TIERS_MOD         "tiers"
#define TIERS_FLIGHT_BKTS 4096

/* ---- a small intrusive hash map over string keys ---------------------- */

struct tiers_hnode {
    struct tiers_hnode *next;
    uint64_t h;
    char *key; /* owned by the containing object */
};

struct tiers_map {
    struct tiers_hnode **b;
    size_t nb; /* a power of two */
    size_t n;
};

static uint64_t tiers_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (; *s != '\0'; s++) {
        h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    }
    return h;
}

static int tiers_map_init(struct tiers_map *m, size_t want)
{
    size_t nb = 64;
    while (nb < want && nb < ((size_t)1 << 22)) {
        nb <<= 1;
    }
    m->b = ovha_calloc(nb, sizeof(*m->b));
    m->nb = nb;
    m->n = 0;
    return m->b == NULL ? -ENOMEM : 0;
}

static struct tiers_hnode *tiers_map_find(const struct tiers_map *m,
                                          const char *key)
{
    uint64_t h = tiers_hash(key);
    for (struct tiers_hnode *e = m->b[h & (m->nb - 1)]; e != NULL;
         e = e->next) {
        if (e->h == h && strcmp(e->key, key) == 0) {
            return e;
        }
    }
    return NULL;
}

static void tiers_map_add(struct tiers_map *m, struct tiers_hnode *e)
{
    e->h = tiers_hash(e->key);
    struct tiers_hnode **slot = &m->b[e->h & (m->nb - 1)];
    e->next = *slot;
    *slot = e;
    m->n++;
}

static void tiers_map_del(struct tiers_map *m, struct tiers_hnode *e)
{
    struct tiers_hnode **p = &m->b[e->h & (m->nb - 1)];
    while (*p != NULL && *p != e) {
        p = &(*p)->next;
    }
    if (*p == e) {
        *p = e->next;
        m->n--;
    }
}

/* ---- state ------------------------------------------------------------ */

/* One cached answer in the in-process LRU. */
struct tiers_mem {
    struct tiers_hnode hn;         /* hn.key: the identity key */
    struct tiers_mem *prev, *next; /* LRU: head is the most recent */
    struct node_cache_entry e;
};

enum tiers_stage {
    TIERS_ST_REDIS = 0,
    TIERS_ST_UPSTREAM,
    TIERS_ST_FILE, /* fallback read from the SQLite file */
    TIERS_ST_DONE,
};

struct tiers_wait {
    struct tiers_wait *next, *prev;
    struct tiers_flight *f;
    node_rules_cb cb;
    void *data;
};

struct tiers_flight {
    struct tiers_hnode hn; /* hn.key: identity key + password digest */
    struct node_tiers *t;
    struct tiers_flight *all_next, *all_prev;
    char *ikey;     /* identity key: what the caches are indexed by */
    char *password; /* NULL when the request carried none; wiped on free */
    struct ovha_buf body; /* the request JSON (holds the password too) */
    enum tiers_stage stage;
    int refs; /* outstanding Redis/file callbacks */
    uint64_t upstream_id;
    bool upstream_pending;
    uint64_t started_ms; /* monotonic */
    char cause[200];     /* why the upstream gave no answer */
    uv_timer_t deadline; /* upstream.deadline_ms for the whole flight */
    uv_timer_t redis_timer;
    bool timers_closed;
    int closing_timers;
    struct tiers_wait *waiters;
};

struct node_tiers {
    uv_loop_t *loop;
    const struct node_cfg *cfg;
    struct node_upstream *up;
    struct node_cache_redis *redis;
    struct node_cache_file *file;
    struct tiers_map mem_map;
    struct tiers_mem *lru_head, *lru_tail;
    struct tiers_map flights;
    struct tiers_flight *all; /* every flight, for close */
    struct node_tiers_stats stats;
    uint64_t req_seq;
    bool closing;
    int pending_closes;
    void (*close_cb)(void *);
    void *close_data;
};

static void tiers_flight_fallback(struct tiers_flight *f);
static void tiers_flight_unref(struct tiers_flight *f);

/* ---- memory tier ------------------------------------------------------ */

static void tiers_lru_unlink(struct node_tiers *t, struct tiers_mem *m)
{
    if (m->prev != NULL) {
        m->prev->next = m->next;
    } else {
        t->lru_head = m->next;
    }
    if (m->next != NULL) {
        m->next->prev = m->prev;
    } else {
        t->lru_tail = m->prev;
    }
    m->prev = m->next = NULL;
}

static void tiers_lru_push(struct node_tiers *t, struct tiers_mem *m)
{
    m->next = t->lru_head;
    if (t->lru_head != NULL) {
        t->lru_head->prev = m;
    }
    t->lru_head = m;
    if (t->lru_tail == NULL) {
        t->lru_tail = m;
    }
}

static void tiers_mem_free(struct node_tiers *t, struct tiers_mem *m)
{
    tiers_map_del(&t->mem_map, &m->hn);
    tiers_lru_unlink(t, m);
    node_cache_entry_clear(&m->e);
    ovha_free(m->hn.key);
    ovha_free(m);
}

static struct tiers_mem *tiers_mem_get(struct node_tiers *t, const char *ikey)
{
    if (t->mem_map.b == NULL) {
        return NULL;
    }
    struct tiers_hnode *h = tiers_map_find(&t->mem_map, ikey);
    if (h == NULL) {
        return NULL;
    }
    struct tiers_mem *m = (struct tiers_mem *)h;
    tiers_lru_unlink(t, m);
    tiers_lru_push(t, m);
    return m;
}

/* Copies e into the LRU under ikey, replacing an older entry. */
static void tiers_mem_put(struct node_tiers *t,
                          const char *ikey,
                          const struct node_cache_entry *e)
{
    if (t->mem_map.b == NULL) {
        return;
    }
    struct tiers_mem *old = tiers_mem_get(t, ikey);
    if (old != NULL) {
        tiers_mem_free(t, old);
    }
    struct tiers_mem *m = ovha_calloc(1, sizeof(*m));
    if (m == NULL) {
        return;
    }
    m->hn.key = ovha_strdup(ikey);
    if (m->hn.key == NULL ||
        node_cache_entry_init(&m->e, e->value, e->value_len, e->stored_at_ms,
                              e->ttl_ms) != 0) {
        ovha_free(m->hn.key);
        ovha_free(m);
        return;
    }
    memcpy(m->e.pw_salt, e->pw_salt, sizeof(m->e.pw_salt));
    memcpy(m->e.pw_hash, e->pw_hash, sizeof(m->e.pw_hash));
    while (t->mem_map.n >= t->cfg->cache.memory_entries &&
           t->lru_tail != NULL) {
        tiers_mem_free(t, t->lru_tail);
    }
    tiers_map_add(&t->mem_map, &m->hn);
    tiers_lru_push(t, m);
}

/* ---- entries ---------------------------------------------------------- */

static uint64_t tiers_age_ms(const struct node_cache_entry *e)
{
    uint64_t now = ovha_now_real_ms();
    return now > e->stored_at_ms ? now - e->stored_at_ms : 0;
}

static bool tiers_fresh(const struct node_cache_entry *e)
{
    return tiers_age_ms(e) < e->ttl_ms;
}

/* A password-dependent entry answers only the same password; an entry
 * made without a password answers only requests without one (with a
 * password the upstream may answer differently). */
enum tiers_pw {
    TIERS_PW_OK = 0,
    TIERS_PW_OTHER_KIND, /* one has a password, the other not */
    TIERS_PW_MISMATCH,
};

static enum tiers_pw tiers_pw_match(const struct node_cache_entry *e,
                                    const char *password)
{
    bool has_verifier = e->pw_hash[0] != '\0';
    if (has_verifier != (password != NULL)) {
        return TIERS_PW_OTHER_KIND;
    }
    if (has_verifier && node_cache_pw_check(e, password) != 0) {
        return TIERS_PW_MISMATCH;
    }
    return TIERS_PW_OK;
}

static void tiers_deny(struct node_grant *g,
                       const char *source,
                       const char *client_reason,
                       const char *fmt,
                       ...) __attribute__((format(printf, 4, 5)));

static void tiers_deny(struct node_grant *g,
                       const char *source,
                       const char *client_reason,
                       const char *fmt,
                       ...)
{
    memset(g, 0, sizeof(*g));
    g->source = source;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->d.reason, sizeof(g->d.reason), fmt, ap);
    va_end(ap);
    ovha_strlcpy(g->d.client_reason, client_reason, sizeof(g->d.client_reason));
}

/* Turns a cached answer into a grant. A cached value that no longer
 * validates (a Redis shared with something else, an older format) is a
 * deny, never a partial grant; returns false then. */
static bool tiers_entry_grant(struct node_tiers *t,
                              const struct node_cache_entry *e,
                              const char *source,
                              struct node_grant *g)
{
    struct node_answer a;
    char err[128];
    if (node_answer_parse(e->value, e->value_len, &a, err, sizeof(err)) != 0) {
        tiers_deny(g, source, NODE_TEMP_CLIENT_REASON,
                   "cached answer invalid: %s", err);
        return false;
    }
    node_answer_to_grant(&a, &t->cfg->openvpn.network, source, g);
    return true;
}

/* ---- flights ---------------------------------------------------------- */

static struct tiers_wait *tiers_wait_pop(struct tiers_flight *f)
{
    struct tiers_wait *w = f->waiters;
    if (w != NULL) {
        f->waiters = w->next;
        if (w->next != NULL) {
            w->next->prev = NULL;
        }
    }
    return w;
}

/* Hands g to every waiter. The flight is finished afterwards. */
static void tiers_flight_answer(struct tiers_flight *f,
                                const struct node_grant *g)
{
    struct tiers_wait *w;
    f->stage = TIERS_ST_DONE;
    while ((w = tiers_wait_pop(f)) != NULL) {
        w->cb(g, w->data);
        ovha_free(w);
    }
}

static void tiers_flight_timer_closed_cb(uv_handle_t *h)
{
    struct tiers_flight *f = h->data;
    if (--f->closing_timers > 0) {
        return;
    }
    if (f->password != NULL) {
        explicit_bzero(f->password, strlen(f->password));
        ovha_free(f->password);
    }
    if (f->body.data != NULL) {
        explicit_bzero(f->body.data, f->body.len);
    }
    ovha_buf_free(&f->body);
    ovha_free(f->ikey);
    ovha_free(f->hn.key);
    ovha_free(f);
}

/* Unlinks a finished flight and frees it once no callback is due. */
static void tiers_flight_release(struct tiers_flight *f)
{
    struct node_tiers *t = f->t;
    if (f->stage != TIERS_ST_DONE || f->refs > 0 || f->timers_closed) {
        return;
    }
    if (f->upstream_pending) {
        node_upstream_cancel(t->up, f->upstream_id);
        f->upstream_pending = false;
    }
    tiers_map_del(&t->flights, &f->hn);
    if (f->all_prev != NULL) {
        f->all_prev->all_next = f->all_next;
    } else {
        t->all = f->all_next;
    }
    if (f->all_next != NULL) {
        f->all_next->all_prev = f->all_prev;
    }
    f->timers_closed = true;
    f->closing_timers = 2;
    uv_close((uv_handle_t *)&f->deadline, tiers_flight_timer_closed_cb);
    uv_close((uv_handle_t *)&f->redis_timer, tiers_flight_timer_closed_cb);
}

static void tiers_flight_unref(struct tiers_flight *f)
{
    f->refs--;
    tiers_flight_release(f);
}

static void tiers_flight_finish(struct tiers_flight *f,
                                const struct node_grant *g)
{
    uv_timer_stop(&f->deadline);
    uv_timer_stop(&f->redis_timer);
    tiers_flight_answer(f, g);
    tiers_flight_release(f);
}

/* ---- storing an upstream answer --------------------------------------- */

static void tiers_file_put_cb(void *data, int status)
{
    struct node_tiers *t = data;
    if (status != 0 && status != OVHA_ECLOSED) {
        t->stats.file_errors++;
        LOG_WARN(TIERS_MOD, "fallback file: cannot store an answer: %s",
                 ovha_strerror(status));
    }
}

static void tiers_store(struct tiers_flight *f,
                        const struct node_answer *a,
                        const char *body,
                        size_t len)
{
    struct node_tiers *t = f->t;
    struct node_cache_entry e;
    if (a->ttl_s == 0 || (!a->allow && f->password != NULL)) {
        /* Not to be cached; a denied password may be a typo. */
        return;
    }
    if (node_cache_entry_init(&e, body, len, ovha_now_real_ms(),
                              (uint64_t)a->ttl_s * 1000) != 0) {
        return;
    }
    if (f->password != NULL &&
        node_cache_entry_set_password(&e, f->password) != 0) {
        node_cache_entry_clear(&e);
        return;
    }
    tiers_mem_put(t, f->ikey, &e);
    if (t->redis != NULL) {
        (void)node_cache_redis_put(t->redis, f->ikey, strlen(f->ikey), &e);
    }
    if (node_cache_file_put(t->file, f->ikey, &e, tiers_file_put_cb, t) != 0) {
        t->stats.file_errors++;
    }
    node_cache_entry_clear(&e);
}

/* ---- the upstream stage ----------------------------------------------- */

static void tiers_latency(struct node_tiers *t, uint64_t ms)
{
    static const uint64_t le[] = { 5, 25, 100, 500, 2500 };
    t->stats.latency_ms_sum += ms;
    t->stats.latency_count++;
    for (size_t i = 0; i < 5; i++) {
        if (ms <= le[i]) {
            t->stats.latency_le_ms[i]++;
        }
    }
    t->stats.latency_le_ms[5]++;
}

/* Names the failure for the operator: the reasons in docs/upstream.md. */
static void tiers_cause(struct tiers_flight *f,
                        int status,
                        long code,
                        const char *err)
{
    char *c = f->cause;
    size_t n = sizeof(f->cause);
    if (status == OVHA_ETIMEDOUT) {
        snprintf(c, n, "upstream timeout");
    } else if (status == -ECONNREFUSED) {
        snprintf(c, n, "upstream unreachable");
    } else if (status == -EAGAIN) {
        snprintf(c, n, "upstream circuit open");
    } else if (status == OVHA_ELIMIT) {
        snprintf(c, n, "upstream answer too large");
    } else if (status == -EBADMSG) {
        snprintf(c, n, "upstream answer malformed: %.120s", err);
    } else if (status == 0 || code >= 500) {
        snprintf(c, n, "upstream HTTP %ld", code);
    } else {
        snprintf(c, n, "upstream failure: %.120s", err);
    }
}

static void tiers_upstream_cb(void *data,
                              int status,
                              long code,
                              const char *body,
                              size_t len,
                              const char *err)
{
    struct tiers_flight *f = data;
    struct node_tiers *t = f->t;
    f->upstream_pending = false;
    if (status == 0 && code == 200) {
        struct node_answer a;
        char why[128];
        if (node_answer_parse(body, len, &a, why, sizeof(why)) == 0) {
            struct node_grant g;
            t->stats.upstream_answers++;
            tiers_latency(t, ovha_now_mono_ms() - f->started_ms);
            tiers_store(f, &a, body, len);
            node_answer_to_grant(&a, &t->cfg->openvpn.network, "upstream", &g);
            tiers_flight_finish(f, &g);
            return;
        }
        status = -EBADMSG; /* accept() let it through: cannot happen */
        err = why;
    }
    t->stats.upstream_failures++;
    if (status == -EBADMSG) {
        t->stats.malformed++;
    }
    tiers_cause(f, status, code, err);
    if (status == 0) {
        /* A 4xx: one side is misconfigured or buggy; say so loudly. */
        LOG_ERR(TIERS_MOD, "upstream refused a request: HTTP %ld", code);
    }
    tiers_flight_fallback(f);
}

static void tiers_flight_upstream(struct tiers_flight *f)
{
    struct node_tiers *t = f->t;
    f->stage = TIERS_ST_UPSTREAM;
    t->stats.upstream_requests++;
    int rv = node_upstream_post_json(t->up, f->body.data, tiers_upstream_cb, f,
                                     &f->upstream_id);
    if (rv != 0) {
        t->stats.upstream_failures++;
        snprintf(f->cause, sizeof(f->cause), "upstream request failed: %s",
                 ovha_strerror(rv));
        tiers_flight_fallback(f);
        return;
    }
    f->upstream_pending = true;
}

static void tiers_deadline_cb(uv_timer_t *h)
{
    struct tiers_flight *f = h->data;
    if (f->stage != TIERS_ST_REDIS && f->stage != TIERS_ST_UPSTREAM) {
        return;
    }
    f->t->stats.deadline++;
    if (f->upstream_pending) {
        node_upstream_cancel(f->t->up, f->upstream_id);
        f->upstream_pending = false;
    }
    snprintf(f->cause, sizeof(f->cause), "upstream deadline");
    tiers_flight_fallback(f);
}

/* ---- the Redis stage -------------------------------------------------- */

static void tiers_redis_cb(void *data,
                           int status,
                           const struct node_cache_entry *e)
{
    struct tiers_flight *f = data;
    struct node_tiers *t = f->t;
    if (f->stage == TIERS_ST_REDIS) {
        uv_timer_stop(&f->redis_timer);
        struct node_grant g;
        /* A value that does not validate is skipped, not served. */
        if (status == 0 && tiers_fresh(e) &&
            tiers_pw_match(e, f->password) == TIERS_PW_OK &&
            tiers_entry_grant(t, e, "redis", &g)) {
            t->stats.hits_redis++;
            tiers_mem_put(t, f->ikey, e);
            tiers_flight_finish(f, &g);
        } else {
            tiers_flight_upstream(f);
        }
    }
    tiers_flight_unref(f);
}

/* Redis did not answer within redis.timeout_ms: go on without it; its
 * late reply is ignored. */
static void tiers_redis_timer_cb(uv_timer_t *h)
{
    struct tiers_flight *f = h->data;
    if (f->stage == TIERS_ST_REDIS) {
        tiers_flight_upstream(f);
    }
}

/* ---- the fallback stage ----------------------------------------------- */

static void tiers_fallback_deny(struct tiers_flight *f)
{
    struct node_grant g;
    f->t->stats.fallback_denied++;
    tiers_deny(&g, "fallback", NODE_TEMP_CLIENT_REASON,
               "upstream unavailable (%s), no answer within max staleness",
               f->cause);
    tiers_flight_finish(f, &g);
}

/* Answers from a stale entry if it may be used (counting it in *used),
 * or denies when its password does not match. Returns false when the
 * entry is of the other kind and the next tier must be tried. */
static bool tiers_fallback_entry(struct tiers_flight *f,
                                 const struct node_cache_entry *e,
                                 const char *tier,
                                 uint64_t *used)
{
    struct node_grant g;
    enum tiers_pw pw = tiers_pw_match(e, f->password);
    if (pw == TIERS_PW_OTHER_KIND) {
        return false;
    }
    if (pw == TIERS_PW_MISMATCH) {
        tiers_deny(&g, "fallback", NODE_TEMP_CLIENT_REASON,
                   "upstream unavailable (%s), credentials not verifiable",
                   f->cause);
        tiers_flight_finish(f, &g);
        return true;
    }
    (*used)++;
    LOG_WARN(TIERS_MOD, "%s: answered from the %s fallback, age %llu s",
             f->cause, tier, (unsigned long long)(tiers_age_ms(e) / 1000));
    tiers_entry_grant(f->t, e, "fallback", &g);
    tiers_flight_finish(f, &g);
    return true;
}

static void tiers_file_get_cb(void *data,
                              int status,
                              enum node_cache_file_result res,
                              const struct node_cache_entry *e,
                              uint64_t age_ms)
{
    struct tiers_flight *f = data;
    struct node_tiers *t = f->t;
    (void)age_ms;
    if (status != 0 && status != OVHA_ECLOSED) {
        t->stats.file_errors++;
        LOG_WARN(TIERS_MOD, "fallback file: %s", ovha_strerror(status));
    }
    if (f->stage == TIERS_ST_FILE) {
        if (status == 0 && res == NODE_CACHE_FOUND) {
            if (tiers_pw_match(e, f->password) == TIERS_PW_OK) {
                tiers_mem_put(t, f->ikey, e); /* later fallbacks are quicker */
            }
            if (!tiers_fallback_entry(f, e, "file", &t->stats.fallback_file)) {
                tiers_fallback_deny(f);
            }
        } else {
            tiers_fallback_deny(f);
        }
    }
    tiers_flight_unref(f);
}

static void tiers_flight_fallback(struct tiers_flight *f)
{
    struct node_tiers *t = f->t;
    uint64_t max_stale_ms = t->cfg->cache.max_stale_s * 1000;
    f->stage = TIERS_ST_FILE;
    uv_timer_stop(&f->deadline);
    uv_timer_stop(&f->redis_timer);
    struct tiers_mem *m = tiers_mem_get(t, f->ikey);
    if (m != NULL && tiers_age_ms(&m->e) <= max_stale_ms &&
        tiers_fallback_entry(f, &m->e, "memory", &t->stats.fallback_memory)) {
        return;
    }
    if (max_stale_ms == 0 || t->closing) {
        tiers_fallback_deny(f);
        return;
    }
    f->refs++;
    if (node_cache_file_get(t->file, f->ikey, max_stale_ms, tiers_file_get_cb,
                            f) != 0) {
        f->refs--;
        t->stats.file_errors++;
        tiers_fallback_deny(f);
    }
}

/* ---- lookup ----------------------------------------------------------- */

/* Appends s with '\\' and '|' escaped, so that no CN can pose as a CN
 * plus a username ("a|user:b" vs "a" + "b"). */
static int tiers_key_append(struct ovha_buf *b, const char *s)
{
    for (; *s != '\0'; s++) {
        if ((*s == '\\' || *s == '|') && ovha_buf_append(b, "\\", 1) != 0) {
            return -ENOMEM;
        }
        if (ovha_buf_append(b, s, 1) != 0) {
            return -ENOMEM;
        }
    }
    return 0;
}

/* "cn:<cn>" or "cn:<cn>|user:<username>", escaped as above. */
static char *tiers_identity(const struct node_decision_req *req)
{
    struct ovha_buf b;
    ovha_buf_init(&b);
    if (ovha_buf_appends(&b, "cn:") != 0 ||
        tiers_key_append(&b, req->cn) != 0 ||
        (req->username[0] != '\0' &&
         (ovha_buf_appends(&b, "|user:") != 0 ||
          tiers_key_append(&b, req->username) != 0))) {
        ovha_buf_free(&b);
        return NULL;
    }
    return b.data; /* NUL-terminated, owned by the caller */
}

/* The flight key adds a digest of the password (memory only): requests
 * with different passwords must not share an answer. */
static char *tiers_flight_key(const char *ikey, const char *password)
{
    char hex[2 * OVHA_SHA256_LEN + 1] = "-";
    if (password != NULL) {
        uint8_t d[OVHA_SHA256_LEN];
        ovha_sha256(password, strlen(password), d);
        ovha_hex(d, sizeof(d), hex);
    }
    size_t n = strlen(ikey) + 1 + strlen(hex) + 1;
    char *k = ovha_malloc(n);
    if (k != NULL) {
        snprintf(k, n, "%s\x1f%s", ikey, hex);
    }
    return k;
}

static int tiers_flight_new(struct node_tiers *t,
                            const struct node_decision_req *req,
                            char *ikey,
                            char *fkey,
                            struct tiers_flight **ret)
{
    struct tiers_flight *f = ovha_calloc(1, sizeof(*f));
    if (f == NULL) {
        return -ENOMEM;
    }
    char rid[128]; /* the contract allows 64: the id is cut to fit */
    snprintf(rid, sizeof(rid), "%.24s:%llu:%llu", t->cfg->id,
             (unsigned long long)(ovha_now_real_ms() / 1000),
             (unsigned long long)++t->req_seq);
    ovha_buf_init(&f->body);
    int rv = node_answer_request_json(req, t->cfg->id, rid, &f->body);
    if (rv == 0 && req->password != NULL) {
        f->password = ovha_strdup(req->password);
        rv = f->password == NULL ? -ENOMEM : 0;
    }
    if (rv != 0) {
        if (f->body.data != NULL) {
            explicit_bzero(f->body.data, f->body.len);
        }
        ovha_buf_free(&f->body);
        ovha_free(f);
        return rv;
    }
    f->t = t;
    f->ikey = ikey;
    f->hn.key = fkey;
    f->started_ms = ovha_now_mono_ms();
    uv_timer_init(t->loop, &f->deadline);
    uv_timer_init(t->loop, &f->redis_timer);
    f->deadline.data = f;
    f->redis_timer.data = f;
    tiers_map_add(&t->flights, &f->hn);
    f->all_next = t->all;
    if (t->all != NULL) {
        t->all->all_prev = f;
    }
    t->all = f;
    *ret = f;
    return 0;
}

/* Redis first when it is connected; otherwise straight to the upstream. */
static void tiers_flight_start(struct tiers_flight *f)
{
    struct node_tiers *t = f->t;
    /* The loop's cached time may be old (a long callback ran before this
     * lookup): the deadline counts from now. */
    uv_update_time(t->loop);
    uv_timer_start(&f->deadline, tiers_deadline_cb,
                   t->cfg->upstream.deadline_ms, 0);
    if (t->redis != NULL) {
        f->stage = TIERS_ST_REDIS;
        f->refs++;
        if (node_cache_redis_get(t->redis, f->ikey, strlen(f->ikey),
                                 tiers_redis_cb, f) == 0) {
            uv_timer_start(&f->redis_timer, tiers_redis_timer_cb,
                           t->cfg->redis.timeout_ms, 0);
            return;
        }
        f->refs--;
    }
    tiers_flight_upstream(f);
}

static int tiers_wait_add(struct tiers_flight *f,
                          node_rules_cb cb,
                          void *data,
                          void **ret_handle)
{
    struct tiers_wait *w = ovha_calloc(1, sizeof(*w));
    if (w == NULL) {
        return -ENOMEM;
    }
    w->f = f;
    w->cb = cb;
    w->data = data;
    w->next = f->waiters;
    if (f->waiters != NULL) {
        f->waiters->prev = w;
    }
    f->waiters = w;
    *ret_handle = w;
    return 0;
}

/* A fresh memory entry that this request may use answers at once. */
static bool tiers_memory_answer(struct node_tiers *t,
                                const struct node_decision_req *req,
                                const char *ikey,
                                node_rules_cb cb,
                                void *data)
{
    struct tiers_mem *m = tiers_mem_get(t, ikey);
    if (m == NULL || !tiers_fresh(&m->e) ||
        tiers_pw_match(&m->e, req->password) != TIERS_PW_OK) {
        return false;
    }
    struct node_grant g;
    t->stats.hits_memory++;
    tiers_entry_grant(t, &m->e, "memory", &g);
    cb(&g, data);
    return true;
}

static int tiers_lookup_op(void *impl,
                           const struct node_decision_req *req,
                           node_rules_cb cb,
                           void *data,
                           void **ret_handle)
{
    struct node_tiers *t = impl;
    struct node_grant g;
    *ret_handle = NULL;
    t->stats.lookups++;
    if (t->closing) {
        tiers_deny(&g, "refused", NODE_TEMP_CLIENT_REASON, "shutting down");
        cb(&g, data);
        return 0;
    }
    char *ikey = tiers_identity(req);
    if (ikey == NULL) {
        return -ENOMEM;
    }
    if (tiers_memory_answer(t, req, ikey, cb, data)) {
        ovha_free(ikey);
        return 0;
    }
    char *fkey = tiers_flight_key(ikey, req->password);
    if (fkey == NULL) {
        ovha_free(ikey);
        return -ENOMEM;
    }
    struct tiers_hnode *h = tiers_map_find(&t->flights, fkey);
    if (h != NULL) {
        ovha_free(ikey);
        ovha_free(fkey);
        t->stats.shared++;
        return tiers_wait_add((struct tiers_flight *)h, cb, data, ret_handle);
    }
    struct tiers_flight *f;
    int rv = tiers_flight_new(t, req, ikey, fkey, &f);
    if (rv == -EINVAL) {
        ovha_free(ikey);
        ovha_free(fkey);
        /* A conforming upstream would answer 400: do not ask. */
        tiers_deny(&g, "refused", "Access denied",
                   "not asked upstream: CN, username or password is not "
                   "valid UTF-8, has control characters or is too long");
        cb(&g, data);
        return 0;
    }
    if (rv != 0) {
        ovha_free(ikey);
        ovha_free(fkey);
        return rv;
    }
    rv = tiers_wait_add(f, cb, data, ret_handle);
    if (rv != 0) {
        f->stage = TIERS_ST_DONE;
        tiers_flight_release(f);
        return rv;
    }
    tiers_flight_start(f);
    if (f->stage == TIERS_ST_DONE) {
        /* Answered already (e.g. the post failed and the memory fallback
         * answered): the waiter is gone, so is the handle. The flight
         * itself is still alive until its timers close. */
        *ret_handle = NULL;
    }
    return 0;
}

/* The waiter goes; its flight carries on and fills the caches. */
static void tiers_cancel_op(void *impl, void *handle)
{
    (void)impl;
    struct tiers_wait *w = handle;
    if (w == NULL) {
        return;
    }
    if (w->prev != NULL) {
        w->prev->next = w->next;
    } else {
        w->f->waiters = w->next;
    }
    if (w->next != NULL) {
        w->next->prev = w->prev;
    }
    ovha_free(w);
}

static const struct node_rules_ops tiers_rules_ops = {
    .lookup = tiers_lookup_op,
    .cancel = tiers_cancel_op,
};

void node_tiers_rules(struct node_tiers *t, struct node_rules *ret)
{
    ret->ops = &tiers_rules_ops;
    ret->impl = t;
}

/* ---- life ------------------------------------------------------------- */

static int tiers_accept(const char *body, size_t len, char *err, size_t errlen)
{
    struct node_answer a;
    return node_answer_parse(body, len, &a, err, errlen);
}

/* The first line of path, for the Redis AUTH secret. Blocking: startup. */
static int tiers_read_secret(const char *path, char *out, size_t len)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL) {
        return -errno;
    }
    if (fgets(out, (int)len, fp) == NULL) {
        out[0] = '\0';
    }
    fclose(fp);
    out[strcspn(out, "\r\n")] = '\0';
    return 0;
}

static int tiers_new_upstream(struct node_tiers *t)
{
    const struct node_cfg_upstream *uc = &t->cfg->upstream;
    struct node_upstream_config c = {
        .url = uc->url,
        .ca_file = uc->ca,
        .client_cert = uc->client_cert[0] != '\0' ? uc->client_cert : NULL,
        .client_key = uc->client_key[0] != '\0' ? uc->client_key : NULL,
        .connect_timeout_ms = uc->connect_timeout_ms,
        .total_timeout_ms = uc->timeout_ms,
        .max_retries = uc->retries,
        .backoff_ms = uc->backoff_ms,
        .max_concurrency = uc->max_concurrency,
        .breaker_failures = uc->breaker_failures,
        .breaker_open_ms = uc->breaker_open_ms,
        .max_body = (size_t)uc->max_body,
        .accept = tiers_accept,
    };
    return node_upstream_new(t->loop, &c, &t->up);
}

static int tiers_new_redis(struct node_tiers *t)
{
    const struct node_cfg_redis *rc = &t->cfg->redis;
    char secret[512] = "";
    if (rc->password_file[0] != '\0') {
        int rv = tiers_read_secret(rc->password_file, secret, sizeof(secret));
        if (rv != 0) {
            LOG_ERR(TIERS_MOD, "redis.password_file %s: %s", rc->password_file,
                    ovha_strerror(rv));
            return OVHA_ECONFIG;
        }
    }
    struct node_cache_redis_config c = {
        .host = rc->host,
        .port = (int)rc->port,
        .password = secret,
        .key_prefix = rc->key_prefix,
        .connect_timeout_ms = rc->connect_timeout_ms,
    };
    int rv = node_cache_redis_new(t->loop, &c, &t->redis);
    explicit_bzero(secret, sizeof(secret));
    return rv;
}

/* The default file lives in the state directory, which the supervisor
 * creates only when it starts; the open runs in a worker right away. */
static void tiers_mkdir_parent(const char *path)
{
    char dir[256];
    ovha_strlcpy(dir, path, sizeof(dir));
    char *slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir) {
        *slash = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            LOG_WARN(TIERS_MOD, "creating %s: %s", dir, strerror(errno));
        }
    }
}

static void tiers_file_open_cb(void *data, int status)
{
    struct node_tiers *t = data;
    if (status != 0) {
        t->stats.file_errors++;
        LOG_ERR(TIERS_MOD,
                "fallback file %s: %s; decisions go on without it "
                "(no fallback after a restart)",
                t->cfg->cache.file, node_cache_file_errmsg(t->file));
    }
}

int node_tiers_new(uv_loop_t *loop,
                   const struct node_cfg *cfg,
                   struct node_tiers **ret)
{
    struct node_tiers *t = ovha_calloc(1, sizeof(*t));
    if (t == NULL) {
        return -ENOMEM;
    }
    t->loop = loop;
    t->cfg = cfg;
    int rv = tiers_map_init(&t->flights, TIERS_FLIGHT_BKTS);
    if (rv == 0 && cfg->cache.memory_entries > 0) {
        rv = tiers_map_init(&t->mem_map, cfg->cache.memory_entries);
    }
    if (rv == 0) {
        rv = tiers_new_upstream(t);
    }
    if (rv == 0 && cfg->redis.enabled) {
        rv = tiers_new_redis(t);
    }
    if (rv == 0) {
        tiers_mkdir_parent(cfg->cache.file);
        rv = node_cache_file_open(loop, cfg->cache.file, tiers_file_open_cb, t,
                                  &t->file);
    }
    if (rv != 0) {
        /* Only reached before anything runs on the loop: no callbacks due. */
        if (t->up != NULL) {
            node_upstream_close(t->up, NULL, NULL);
        }
        if (t->redis != NULL) {
            node_cache_redis_close(t->redis, NULL, NULL);
        }
        ovha_free(t->flights.b);
        ovha_free(t->mem_map.b);
        ovha_free(t);
        return rv;
    }
    *ret = t;
    return 0;
}

void node_tiers_get_stats(const struct node_tiers *t,
                          struct node_tiers_stats *ret)
{
    struct node_upstream_stats us;
    struct node_cache_redis_stats rs;
    *ret = t->stats;
    ret->memory_entries = t->mem_map.n;
    node_upstream_get_stats(t->up, &us);
    ret->breaker_state = us.breaker_state;
    ret->breaker_opens = us.breaker_opens;
    ret->redis_enabled = t->redis != NULL;
    if (t->redis != NULL) {
        node_cache_redis_get_stats(t->redis, &rs);
        ret->redis_connected = rs.connected;
    }
}

static void tiers_part_closed_cb(void *data)
{
    struct node_tiers *t = data;
    if (--t->pending_closes > 0) {
        return;
    }
    while (t->lru_head != NULL) {
        tiers_mem_free(t, t->lru_head);
    }
    ovha_free(t->mem_map.b);
    ovha_free(t->flights.b);
    void (*cb)(void *) = t->close_cb;
    void *cb_data = t->close_data;
    ovha_free(t);
    if (cb != NULL) {
        cb(cb_data);
    }
}

static void tiers_file_closed_cb(void *data, int status)
{
    (void)status;
    tiers_part_closed_cb(data);
}

/* Counts one extra part, dropped at the end, so that a part closing
 * synchronously cannot free t before the others were asked to close. */
static void tiers_close_parts(struct node_tiers *t)
{
    t->pending_closes = 3 + (t->redis != NULL ? 1 : 0);
    node_upstream_close(t->up, tiers_part_closed_cb, t);
    if (t->redis != NULL) {
        node_cache_redis_close(t->redis, tiers_part_closed_cb, t);
    }
    node_cache_file_close(t->file, tiers_file_closed_cb, t);
    tiers_part_closed_cb(t);
}

void node_tiers_close(struct node_tiers *t, void (*cb)(void *), void *data)
{
    struct node_grant g;
    t->closing = true;
    t->close_cb = cb;
    t->close_data = data;
    tiers_deny(&g, "refused", NODE_TEMP_CLIENT_REASON, "shutting down");
    /* Answer everyone first; Redis and file callbacks still due release
     * their flights when the tiers close below. */
    struct tiers_flight *f = t->all;
    while (f != NULL) {
        struct tiers_flight *next = f->all_next;
        if (f->stage != TIERS_ST_DONE) {
            tiers_flight_finish(f, &g);
        }
        f = next;
    }
    tiers_close_parts(t);
}
