/* node cache tiers: Redis (hot, optional) and a node-local SQLite file
 * (durable fallback that keeps the last good upstream answer per identity).
 *
 * Both tiers store, per identity key ("cn:alice", "cn:alice|user:bob"), an
 * opaque JSON answer plus metadata. Answers that depend on a password carry
 * only a salted verifier; the password itself is never stored nor logged.
 * Everything runs on the node's uv loop; no call blocks it.
 */
#ifndef OVHA_NODE_CACHE_H
#define OVHA_NODE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define NODE_CACHE_SALT_HEX_LEN 32 /* 16 random bytes, hex */
#define NODE_CACHE_HASH_HEX_LEN 64 /* SHA-256, hex */

/* One cached upstream answer. value is owned by the entry (freed by
 * node_cache_entry_clear); pw_salt/pw_hash are "" when the answer does not
 * depend on a password. */
struct node_cache_entry {
    char *value;           /* opaque JSON text, NUL-terminated */
    size_t value_len;      /* bytes in value, without the NUL */
    uint64_t stored_at_ms; /* real clock; 0 on put means "now" */
    uint64_t ttl_ms;       /* 0 on a Redis put means the tier default */
    char pw_salt[NODE_CACHE_SALT_HEX_LEN + 1];
    char pw_hash[NODE_CACHE_HASH_HEX_LEN + 1];
};

/* Fills e with a copy of value (len bytes). Returns 0 or -ENOMEM. */
int node_cache_entry_init(struct node_cache_entry *e,
                          const char *value,
                          size_t len,
                          uint64_t stored_at_ms,
                          uint64_t ttl_ms);
/* Frees e->value and zeroes e. Accepts NULL. */
void node_cache_entry_clear(struct node_cache_entry *e);

/* Makes a fresh random salt and hex(SHA256(salt bytes || password)).
 * Returns 0 or a negative errno (no randomness). */
int node_cache_pw_verifier(const char *password,
                           char salt_out[NODE_CACHE_SALT_HEX_LEN + 1],
                           char hash_out[NODE_CACHE_HASH_HEX_LEN + 1]);
/* Sets e's verifier for password. Returns 0 or a negative errno. */
int node_cache_entry_set_password(struct node_cache_entry *e,
                                  const char *password);
/* 0 when password matches e's verifier, -EACCES when it does not, -EINVAL
 * when e has no (or a malformed) verifier. Constant time in the hash. */
int node_cache_pw_check(const struct node_cache_entry *e, const char *password);

/* ---- Redis tier ------------------------------------------------------- */

struct node_cache_redis;

struct node_cache_redis_config {
    const char *host;            /* e.g. "127.0.0.1" */
    int port;                    /* 1..65535 */
    const char *password;        /* AUTH; NULL or "" for none */
    const char *key_prefix;      /* prepended to every key; NULL for "" */
    uint64_t ttl_ms;             /* default TTL for puts with ttl_ms 0 */
    uint64_t connect_timeout_ms; /* connect + AUTH deadline; 0 = 2000 */
    uint64_t cmd_timeout_ms;     /* no reply this long: drop; 0 = 1000 */
    uint64_t backoff_min_ms;     /* first reconnect delay; 0 = 100 */
    uint64_t backoff_max_ms;     /* reconnect delay cap; 0 = 5000 */
    unsigned max_inflight;       /* commands awaiting replies; 0 = 1024 */
};

struct node_cache_redis_stats {
    uint64_t hits;
    uint64_t misses;     /* key absent; ENOTCONN refusals are not misses */
    uint64_t errors;     /* failed commands, refused calls, bad AUTH, ... */
    uint64_t reconnects; /* connections made after a lost/failed one */
    bool connected;      /* connected and authenticated */
};

/* Called once per accepted get, on the loop thread. status: 0 hit (entry
 * valid only during the call), -ENOENT miss, -ENOTCONN the connection was
 * lost (or dropped after cmd_timeout_ms without replies) before the reply,
 * OVHA_ECLOSED the cache was closed, OVHA_EPROTO a value that is not ours. */
typedef void (*node_cache_redis_get_cb)(void *data,
                                        int status,
                                        const struct node_cache_entry *entry);
typedef void (*node_cache_redis_close_cb)(void *data);

/* Creates the tier and starts connecting in the background. The strings in
 * cfg are copied. Returns 0 or -ENOMEM / -EINVAL; never fails because Redis
 * is down. */
int node_cache_redis_new(uv_loop_t *loop,
                         const struct node_cache_redis_config *cfg,
                         struct node_cache_redis **ret_c);

/* Looks key up. Fails synchronously (cb not called) with -ENOTCONN when
 * Redis is not connected, OVHA_ELIMIT when max_inflight replies are
 * outstanding, -ENOMEM. Keys may hold any bytes (keylen given). */
int node_cache_redis_get(struct node_cache_redis *c,
                         const char *key,
                         size_t keylen,
                         node_cache_redis_get_cb cb,
                         void *data);
/* SET key value PX ttl, fire and forget (failures count in stats.errors).
 * Same synchronous failures as get. */
int node_cache_redis_put(struct node_cache_redis *c,
                         const char *key,
                         size_t keylen,
                         const struct node_cache_entry *e);
int node_cache_redis_del(struct node_cache_redis *c,
                         const char *key,
                         size_t keylen);

void node_cache_redis_get_stats(const struct node_cache_redis *c,
                                struct node_cache_redis_stats *ret_stats);
/* Last error text, for whoever logs. */
const char *node_cache_redis_errmsg(const struct node_cache_redis *c);

/* Drops the connection (outstanding gets see OVHA_ECLOSED), closes the uv
 * handles and frees c; cb (may be NULL) runs from the loop afterwards. */
void node_cache_redis_close(struct node_cache_redis *c,
                            node_cache_redis_close_cb cb,
                            void *data);

/* ---- durable file tier ------------------------------------------------ */

struct node_cache_file;

enum node_cache_file_result {
    NODE_CACHE_FOUND = 0, /* present and at most max_stale_ms old */
    NODE_CACHE_STALE = 1, /* present but older; the entry is still given */
    NODE_CACHE_MISS = 2,  /* absent */
};

/* status 0 or a negative errno (-ENOSPC disk full, -EIO, -EBUSY, ...,
 * OVHA_ECLOSED when the cache closed before the request ran). */
typedef void (*node_cache_file_done_cb)(void *data, int status);
/* On status 0: res, and for FOUND/STALE the entry (valid only during the
 * call) and its age against the real clock. */
typedef void (*node_cache_file_get_cb)(void *data,
                                       int status,
                                       enum node_cache_file_result res,
                                       const struct node_cache_entry *entry,
                                       uint64_t age_ms);

/* Opens (creating) the SQLite file at path in WAL mode, in a worker. cb
 * (may be NULL) reports the open; requests made before it completes queue
 * behind it, and fail with its error if it failed. Returns 0 or -ENOMEM. */
int node_cache_file_open(uv_loop_t *loop,
                         const char *path,
                         node_cache_file_done_cb cb,
                         void *data,
                         struct node_cache_file **ret_c);

/* Requests run one at a time, in call order, each in a uv_queue_work job;
 * inputs are copied. A synchronous failure (-ENOMEM, OVHA_ECLOSED) never
 * calls cb. cb may be NULL for put/del. */
int node_cache_file_put(struct node_cache_file *c,
                        const char *key,
                        const struct node_cache_entry *e,
                        node_cache_file_done_cb cb,
                        void *data);
int node_cache_file_get(struct node_cache_file *c,
                        const char *key,
                        uint64_t max_stale_ms,
                        node_cache_file_get_cb cb,
                        void *data);
int node_cache_file_del(struct node_cache_file *c,
                        const char *key,
                        node_cache_file_done_cb cb,
                        void *data);

const char *node_cache_file_errmsg(const struct node_cache_file *c);

/* Refuses new requests (OVHA_ECLOSED), runs the queued ones in order (a
 * put accepted before the close is not lost), closes the database in a
 * worker, frees c, then calls cb (may be NULL). */
void node_cache_file_close(struct node_cache_file *c,
                           node_cache_file_done_cb cb,
                           void *data);

#endif
