/* Durable file cache tier: a node-local SQLite file in WAL mode that keeps
 * the last good upstream answer per identity across restarts.
 *
 * SQLite can block (fsync, locks), so every call into it runs in a
 * uv_queue_work job. One job runs at a time per cache object, in FIFO
 * order; a job owns its request (copied inputs, result fields) and touches
 * only the sqlite handle, which no other thread uses meanwhile. Results are
 * delivered from the after-work callback on the loop thread.
 *
 * Also holds the entry and password-verifier helpers shared by both tiers.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include <sqlite3.h>

#include "base/base.h"
#include "node/cache.h"

/* ---- entries and password verifiers ------------------------------------ */

int node_cache_entry_init(struct node_cache_entry *e,
                          const char *value,
                          size_t len,
                          uint64_t stored_at_ms,
                          uint64_t ttl_ms)
{
    memset(e, 0, sizeof(*e));
    e->value = ovha_malloc(len + 1);
    if (e->value == NULL) {
        return -ENOMEM;
    }
    memcpy(e->value, value, len);
    e->value[len] = '\0';
    e->value_len = len;
    e->stored_at_ms = stored_at_ms;
    e->ttl_ms = ttl_ms;
    return 0;
}

void node_cache_entry_clear(struct node_cache_entry *e)
{
    if (e == NULL) {
        return;
    }
    ovha_free(e->value);
    memset(e, 0, sizeof(*e));
}

static int node_cache_unhex(const char *hex, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        for (size_t j = 0; j < 2; j++) {
            char ch = hex[2 * i + j];
            v <<= 4;
            if (ch >= '0' && ch <= '9') {
                v |= (unsigned)(ch - '0');
            } else if (ch >= 'a' && ch <= 'f') {
                v |= (unsigned)(ch - 'a' + 10);
            } else {
                return -EINVAL;
            }
        }
        out[i] = (uint8_t)v;
    }
    return 0;
}

static void node_cache_pw_hash(const uint8_t salt[16],
                               const char *password,
                               char hash_out[NODE_CACHE_HASH_HEX_LEN + 1])
{
    struct ovha_sha256_ctx *h = ovha_sha256_begin();
    uint8_t digest[OVHA_SHA256_LEN];

    ovha_sha256_update(h, salt, 16);
    ovha_sha256_update(h, password, strlen(password));
    ovha_sha256_end(h, digest);
    ovha_hex(digest, sizeof(digest), hash_out);
    explicit_bzero(digest, sizeof(digest));
}

int node_cache_pw_verifier(const char *password,
                           char salt_out[NODE_CACHE_SALT_HEX_LEN + 1],
                           char hash_out[NODE_CACHE_HASH_HEX_LEN + 1])
{
    uint8_t salt[16];

    if (getrandom(salt, sizeof(salt), 0) != (ssize_t)sizeof(salt)) {
        return -EIO;
    }
    ovha_hex(salt, sizeof(salt), salt_out);
    node_cache_pw_hash(salt, password, hash_out);
    return 0;
}

int node_cache_entry_set_password(struct node_cache_entry *e,
                                  const char *password)
{
    return node_cache_pw_verifier(password, e->pw_salt, e->pw_hash);
}

int node_cache_pw_check(const struct node_cache_entry *e, const char *password)
{
    uint8_t salt[16];
    char want[NODE_CACHE_HASH_HEX_LEN + 1];
    unsigned diff = 0;

    if (strlen(e->pw_salt) != NODE_CACHE_SALT_HEX_LEN ||
        strlen(e->pw_hash) != NODE_CACHE_HASH_HEX_LEN ||
        node_cache_unhex(e->pw_salt, salt, sizeof(salt)) < 0) {
        return -EINVAL;
    }
    node_cache_pw_hash(salt, password, want);
    for (size_t i = 0; i < NODE_CACHE_HASH_HEX_LEN; i++) {
        diff |= (unsigned)(want[i] ^ e->pw_hash[i]);
    }
    explicit_bzero(want, sizeof(want));
    return diff == 0 ? 0 : -EACCES;
}

/* ---- the file tier ------------------------------------------------------ */

enum node_cache_file_op {
    NODE_CACHE_FILE_OPEN,
    NODE_CACHE_FILE_PUT,
    NODE_CACHE_FILE_GET,
    NODE_CACHE_FILE_DEL,
    NODE_CACHE_FILE_CLOSE,
};

struct node_cache_file_req {
    struct node_cache_file_req *next;
    enum node_cache_file_op op;
    char *key;
    struct node_cache_entry entry; /* put input, get output */
    uint64_t max_stale_ms;
    bool found;
    int status;
    char errmsg[200];
    node_cache_file_done_cb done_cb;
    node_cache_file_get_cb get_cb;
    void *data;
};

struct node_cache_file {
    uv_loop_t *loop;
    char *path;
    sqlite3 *db;  /* touched only by the running job */
    int open_err; /* sticky error of the open job */
    bool busy;    /* a job is running */
    bool closing;
    uv_work_t work;
    struct node_cache_file_req *running;
    struct node_cache_file_req *head;
    struct node_cache_file_req *tail;
    struct node_cache_file_req *close_req; /* set by close until it runs */
    char errmsg[256];
};

static int node_cache_file_errno(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return 0;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return -EACCES;
    case SQLITE_CANTOPEN:
        return -ENOENT;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return -EBADMSG;
    case SQLITE_TOOBIG:
        return -E2BIG;
    default:
        return -EIO;
    }
}

/* Records a failure in the job's request (worker thread). */
static int node_cache_file_fail(struct node_cache_file *c,
                                struct node_cache_file_req *r,
                                int rc,
                                const char *what)
{
    r->status = node_cache_file_errno(rc);
    if (r->status == 0) {
        r->status = -EIO;
    }
    snprintf(r->errmsg, sizeof(r->errmsg), "cache file %s: %s", what,
             c->db != NULL ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
    return r->status;
}

static void node_cache_file_do_open(struct node_cache_file *c,
                                    struct node_cache_file_req *r)
{
    static const char *const sql =
        "PRAGMA journal_mode=WAL;"
        "PRAGMA synchronous=NORMAL;"
        "PRAGMA busy_timeout=1000;"
        "CREATE TABLE IF NOT EXISTS entries("
        " key TEXT PRIMARY KEY, value BLOB NOT NULL,"
        " stored_at INTEGER NOT NULL, ttl INTEGER NOT NULL,"
        " pw_salt TEXT NOT NULL DEFAULT '', pw_hash TEXT NOT NULL DEFAULT '')";
    int rc;

    rc = sqlite3_open_v2(
        c->path, &c->db,
        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        node_cache_file_fail(c, r, rc, "open");
        goto err;
    }
    sqlite3_extended_result_codes(c->db, 1);
    rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        node_cache_file_fail(c, r, rc, "init");
        goto err;
    }
    return;
err:
    sqlite3_close(c->db);
    c->db = NULL;
}

static void node_cache_file_do_put(struct node_cache_file *c,
                                   struct node_cache_file_req *r)
{
    static const char *const sql =
        "INSERT OR REPLACE INTO entries"
        "(key, value, stored_at, ttl, pw_salt, pw_hash)"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6)";
    sqlite3_stmt *st = NULL;
    int rc;

    rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) {
        node_cache_file_fail(c, r, rc, "put");
        return;
    }
    sqlite3_bind_text(st, 1, r->key, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, r->entry.value, (int)r->entry.value_len,
                      SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)r->entry.stored_at_ms);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)r->entry.ttl_ms);
    sqlite3_bind_text(st, 5, r->entry.pw_salt, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, r->entry.pw_hash, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) {
        node_cache_file_fail(c, r, rc, "put");
    }
    sqlite3_finalize(st);
}

static void node_cache_file_copy_text(sqlite3_stmt *st,
                                      int col,
                                      char *out,
                                      size_t outsz)
{
    const unsigned char *t = sqlite3_column_text(st, col);

    ovha_strlcpy(out, t != NULL ? (const char *)t : "", outsz);
}

static void node_cache_file_do_get(struct node_cache_file *c,
                                   struct node_cache_file_req *r)
{
    static const char *const sql =
        "SELECT value, stored_at, ttl, pw_salt, pw_hash"
        " FROM entries WHERE key = ?1";
    sqlite3_stmt *st = NULL;
    int rc;

    rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) {
        node_cache_file_fail(c, r, rc, "get");
        return;
    }
    sqlite3_bind_text(st, 1, r->key, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const void *v = sqlite3_column_blob(st, 0);
        int n = sqlite3_column_bytes(st, 0);

        if (node_cache_entry_init(&r->entry, v != NULL ? v : "", (size_t)n,
                                  (uint64_t)sqlite3_column_int64(st, 1),
                                  (uint64_t)sqlite3_column_int64(st, 2)) < 0) {
            r->status = -ENOMEM;
        } else {
            node_cache_file_copy_text(st, 3, r->entry.pw_salt,
                                      sizeof(r->entry.pw_salt));
            node_cache_file_copy_text(st, 4, r->entry.pw_hash,
                                      sizeof(r->entry.pw_hash));
            r->found = true;
        }
    } else if (rc != SQLITE_DONE) {
        node_cache_file_fail(c, r, rc, "get");
    }
    sqlite3_finalize(st);
}

static void node_cache_file_do_del(struct node_cache_file *c,
                                   struct node_cache_file_req *r)
{
    sqlite3_stmt *st = NULL;
    int rc;

    rc = sqlite3_prepare_v2(c->db, "DELETE FROM entries WHERE key = ?1", -1,
                            &st, NULL);
    if (rc != SQLITE_OK) {
        node_cache_file_fail(c, r, rc, "del");
        return;
    }
    sqlite3_bind_text(st, 1, r->key, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) {
        node_cache_file_fail(c, r, rc, "del");
    }
    sqlite3_finalize(st);
}

/* Worker thread. */
static void node_cache_file_work_cb(uv_work_t *w)
{
    struct node_cache_file *c = w->data;
    struct node_cache_file_req *r = c->running;

    if (r->op == NODE_CACHE_FILE_OPEN) {
        node_cache_file_do_open(c, r);
        return;
    }
    if (r->op == NODE_CACHE_FILE_CLOSE) {
        /* Checkpoints the WAL, which may write: hence in a worker. */
        sqlite3_close(c->db);
        c->db = NULL;
        return;
    }
    if (c->db == NULL) {
        r->status = c->open_err != 0 ? c->open_err : -EBADF;
        return;
    }
    switch (r->op) {
    case NODE_CACHE_FILE_PUT:
        node_cache_file_do_put(c, r);
        break;
    case NODE_CACHE_FILE_GET:
        node_cache_file_do_get(c, r);
        break;
    case NODE_CACHE_FILE_DEL:
        node_cache_file_do_del(c, r);
        break;
    default:
        break;
    }
}

static void node_cache_file_req_free(struct node_cache_file_req *r)
{
    ovha_free(r->key);
    node_cache_entry_clear(&r->entry);
    ovha_free(r);
}

static void node_cache_file_deliver(struct node_cache_file_req *r)
{
    uint64_t now;
    uint64_t age;
    enum node_cache_file_result res = NODE_CACHE_MISS;

    if (r->op != NODE_CACHE_FILE_GET) {
        if (r->done_cb != NULL) {
            r->done_cb(r->data, r->status);
        }
        return;
    }
    if (r->status < 0 || !r->found) {
        r->get_cb(r->data, r->status, NODE_CACHE_MISS, NULL, 0);
        return;
    }
    now = ovha_now_real_ms();
    age = now > r->entry.stored_at_ms ? now - r->entry.stored_at_ms : 0;
    res = age <= r->max_stale_ms ? NODE_CACHE_FOUND : NODE_CACHE_STALE;
    r->get_cb(r->data, 0, res, &r->entry, age);
}

static void node_cache_file_kick(struct node_cache_file *c);

static void node_cache_file_after_cb(uv_work_t *w, int status)
{
    struct node_cache_file *c = w->data;
    struct node_cache_file_req *r = c->running;

    (void)status; /* jobs are never cancelled */
    c->running = NULL;
    c->busy = false;
    if (r->status < 0 && r->errmsg[0] != '\0') {
        ovha_strlcpy(c->errmsg, r->errmsg, sizeof(c->errmsg));
    }
    if (r->op == NODE_CACHE_FILE_OPEN && r->status < 0) {
        c->open_err = r->status;
    }
    if (r->op == NODE_CACHE_FILE_CLOSE) {
        node_cache_file_done_cb cb = r->done_cb;
        void *data = r->data;

        node_cache_file_req_free(r);
        ovha_free(c->path);
        ovha_free(c);
        if (cb != NULL) {
            cb(data, 0);
        }
        return;
    }
    /* The callback may queue more requests or close c. */
    node_cache_file_deliver(r);
    node_cache_file_req_free(r);
    node_cache_file_kick(c);
}

static void node_cache_file_cancel_queued(struct node_cache_file *c);

static void node_cache_file_kick(struct node_cache_file *c)
{
    struct node_cache_file_req *r;
    int rc;

    if (c->busy) {
        return;
    }
    if (c->close_req != NULL) {
        /* Closing: what is queued still runs (a put accepted before the
         * close is an answer the fallback must keep), then the close. */
        struct node_cache_file_req *cr = c->close_req;
        c->close_req = NULL;
        if (c->tail != NULL) {
            c->tail->next = cr;
        } else {
            c->head = cr;
        }
        c->tail = cr;
    }
    r = c->head;
    if (r == NULL) {
        return;
    }
    c->head = r->next;
    if (c->head == NULL) {
        c->tail = NULL;
    }
    r->next = NULL;
    c->running = r;
    c->busy = true;
    c->work.data = c;
    rc = uv_queue_work(c->loop, &c->work, node_cache_file_work_cb,
                       node_cache_file_after_cb);
    if (rc < 0) {
        /* Cannot happen with valid arguments; abort loudly in debug. */
        ovha_fatal("node", "cache file: uv_queue_work: %s", uv_strerror(rc));
    }
}

static void node_cache_file_enqueue(struct node_cache_file *c,
                                    struct node_cache_file_req *r)
{
    if (c->tail != NULL) {
        c->tail->next = r;
    } else {
        c->head = r;
    }
    c->tail = r;
    node_cache_file_kick(c);
}

static struct node_cache_file_req *node_cache_file_req_new(
    enum node_cache_file_op op,
    const char *key)
{
    struct node_cache_file_req *r = ovha_calloc(1, sizeof(*r));

    if (r == NULL) {
        return NULL;
    }
    r->op = op;
    if (key != NULL) {
        r->key = ovha_strdup(key);
        if (r->key == NULL) {
            ovha_free(r);
            return NULL;
        }
    }
    return r;
}

int node_cache_file_open(uv_loop_t *loop,
                         const char *path,
                         node_cache_file_done_cb cb,
                         void *data,
                         struct node_cache_file **ret_c)
{
    struct node_cache_file *c = ovha_calloc(1, sizeof(*c));
    struct node_cache_file_req *r;

    if (c == NULL) {
        return -ENOMEM;
    }
    c->loop = loop;
    c->path = ovha_strdup(path);
    r = node_cache_file_req_new(NODE_CACHE_FILE_OPEN, NULL);
    if (c->path == NULL || r == NULL) {
        ovha_free(r);
        ovha_free(c->path);
        ovha_free(c);
        return -ENOMEM;
    }
    r->done_cb = cb;
    r->data = data;
    node_cache_file_enqueue(c, r);
    *ret_c = c;
    return 0;
}

int node_cache_file_put(struct node_cache_file *c,
                        const char *key,
                        const struct node_cache_entry *e,
                        node_cache_file_done_cb cb,
                        void *data)
{
    struct node_cache_file_req *r;

    if (c->closing) {
        return OVHA_ECLOSED;
    }
    r = node_cache_file_req_new(NODE_CACHE_FILE_PUT, key);
    if (r == NULL) {
        return -ENOMEM;
    }
    if (node_cache_entry_init(
            &r->entry, e->value != NULL ? e->value : "",
            e->value != NULL ? e->value_len : 0,
            e->stored_at_ms != 0 ? e->stored_at_ms : ovha_now_real_ms(),
            e->ttl_ms) < 0) {
        node_cache_file_req_free(r);
        return -ENOMEM;
    }
    memcpy(r->entry.pw_salt, e->pw_salt, sizeof(r->entry.pw_salt));
    memcpy(r->entry.pw_hash, e->pw_hash, sizeof(r->entry.pw_hash));
    r->entry.pw_salt[NODE_CACHE_SALT_HEX_LEN] = '\0';
    r->entry.pw_hash[NODE_CACHE_HASH_HEX_LEN] = '\0';
    r->done_cb = cb;
    r->data = data;
    node_cache_file_enqueue(c, r);
    return 0;
}

int node_cache_file_get(struct node_cache_file *c,
                        const char *key,
                        uint64_t max_stale_ms,
                        node_cache_file_get_cb cb,
                        void *data)
{
    struct node_cache_file_req *r;

    if (c->closing) {
        return OVHA_ECLOSED;
    }
    r = node_cache_file_req_new(NODE_CACHE_FILE_GET, key);
    if (r == NULL) {
        return -ENOMEM;
    }
    r->max_stale_ms = max_stale_ms;
    r->get_cb = cb;
    r->data = data;
    node_cache_file_enqueue(c, r);
    return 0;
}

int node_cache_file_del(struct node_cache_file *c,
                        const char *key,
                        node_cache_file_done_cb cb,
                        void *data)
{
    struct node_cache_file_req *r;

    if (c->closing) {
        return OVHA_ECLOSED;
    }
    r = node_cache_file_req_new(NODE_CACHE_FILE_DEL, key);
    if (r == NULL) {
        return -ENOMEM;
    }
    r->done_cb = cb;
    r->data = data;
    node_cache_file_enqueue(c, r);
    return 0;
}

const char *node_cache_file_errmsg(const struct node_cache_file *c)
{
    return c->errmsg;
}

/* Fails every queued request with OVHA_ECLOSED, in order. */
static void node_cache_file_cancel_queued(struct node_cache_file *c)
{
    struct node_cache_file_req *r;

    while ((r = c->head) != NULL) {
        c->head = r->next;
        if (c->head == NULL) {
            c->tail = NULL;
        }
        r->status = OVHA_ECLOSED;
        node_cache_file_deliver(r);
        node_cache_file_req_free(r);
    }
}

void node_cache_file_close(struct node_cache_file *c,
                           node_cache_file_done_cb cb,
                           void *data)
{
    struct node_cache_file_req *r;

    if (c == NULL || c->closing) {
        return;
    }
    c->closing = true;
    /* Reserve the close request up front so close cannot fail; the
     * allocation is tiny, and on failure we close on this thread as a last
     * resort rather than leak the database. */
    r = node_cache_file_req_new(NODE_CACHE_FILE_CLOSE, NULL);
    if (r == NULL) {
        if (!c->busy) {
            node_cache_file_cancel_queued(c);
            sqlite3_close(c->db);
            ovha_free(c->path);
            ovha_free(c);
            if (cb != NULL) {
                cb(data, -ENOMEM);
            }
        }
        return; /* busy: leaks c; only under injected OOM */
    }
    r->done_cb = cb;
    r->data = data;
    c->close_req = r;
    node_cache_file_kick(c);
}
