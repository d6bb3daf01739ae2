/* base: leaf utilities every ovha module may use.
 *
 * Errors, logging, the allocation hook, the injectable clock, a growable
 * byte buffer and SHA-256. Nothing here depends on another ovha module.
 */
#ifndef OVHA_BASE_H
#define OVHA_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- errors -------------------------------------------------------------
 * Functions return 0 on success or a negative errno. Project-specific codes
 * sit below -1000 so they never collide with errno values. */
enum {
    OVHA_ENOTLEADER = -1001, /* this node is not the raft leader */
    OVHA_ETIMEDOUT = -1002,  /* a deadline passed before an answer */
    OVHA_EPROTO = -1003,     /* a peer sent something we cannot parse */
    OVHA_EINJECT = -1004,    /* a field would inject a line or a token */
    OVHA_ELIMIT = -1005,     /* a configured size or count limit was hit */
    OVHA_ECLOSED = -1006,    /* the object was closed while work was queued */
    OVHA_ECONFIG = -1007,    /* the configuration is invalid */
    OVHA_EUNKNOWN = -1008,   /* outcome unknown (leadership lost) */
};

/* Text for a negative errno or an OVHA_E* code. Never NULL. */
const char *ovha_strerror(int err);

/* ---- logging ------------------------------------------------------------
 * Lines go to stderr with an sd-daemon "<N>" priority prefix, as
 * "module: what: why" (text, for journald), or as one JSON object or one
 * logfmt record per line (ovha_log_set_format). Leaf code logs at debug
 * at most. */
enum ovha_log_level {
    OVHA_LOG_ERR = 3,
    OVHA_LOG_WARN = 4,
    OVHA_LOG_INFO = 6,
    OVHA_LOG_DEBUG = 7,
};

void ovha_log_set_level(enum ovha_log_level level);
enum ovha_log_level ovha_log_get_level(void);
enum ovha_log_format {
    OVHA_LOG_TEXT = 0,
    OVHA_LOG_JSON = 1,
    OVHA_LOG_LOGFMT = 2,
};
void ovha_log_set_format(enum ovha_log_format format);
/* Parses "err", "warn", "info" or "debug". Returns 0 or -EINVAL. */
int ovha_log_level_parse(const char *name, enum ovha_log_level *ret_level);

void ovha_log(enum ovha_log_level level,
              const char *module,
              const char *fmt,
              ...) __attribute__((format(printf, 3, 4)));
void ovha_logv(enum ovha_log_level level,
               const char *module,
               const char *fmt,
               va_list ap) __attribute__((format(printf, 3, 0)));
/* Startup-only: logs at err and exits with status 1. */
void ovha_fatal(const char *module, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

#define LOG_ERR(mod, ...)   ovha_log(OVHA_LOG_ERR, mod, __VA_ARGS__)
#define LOG_WARN(mod, ...)  ovha_log(OVHA_LOG_WARN, mod, __VA_ARGS__)
#define LOG_INFO(mod, ...)  ovha_log(OVHA_LOG_INFO, mod, __VA_ARGS__)
#define LOG_DEBUG(mod, ...) ovha_log(OVHA_LOG_DEBUG, mod, __VA_ARGS__)

/* ---- allocation ---------------------------------------------------------
 * All project allocation goes through these so tests can inject failures:
 * after ovha_alloc_fail_after(n), the n+1-th allocation fails (n < 0 turns
 * injection off). */
void *ovha_malloc(size_t size);
void *ovha_calloc(size_t n, size_t size);
void *ovha_realloc(void *p, size_t size);
char *ovha_strdup(const char *s);
char *ovha_strndup(const char *s, size_t n);
void ovha_free(void *p);
void ovha_alloc_fail_after(long n);

/* ---- clock --------------------------------------------------------------
 * Milliseconds. The monotonic clock drives timeouts; the real clock stamps
 * records. Both can be replaced in tests (and skewed by the fault injector).
 * The FSM never calls these: its time comes from commands. */
typedef uint64_t (*ovha_clock_fn)(void *data);
uint64_t ovha_now_mono_ms(void);
uint64_t ovha_now_real_ms(void);
void ovha_clock_set(ovha_clock_fn mono, ovha_clock_fn real, void *data);
/* A fixed offset added to the real clock (fault injection of clock skew). */
void ovha_clock_set_skew_ms(int64_t skew);

/* ---- byte buffer --------------------------------------------------------
 * A growable buffer, always NUL-terminated for convenience. The buffer owns
 * its memory; ovha_buf_free releases it and leaves an empty buffer. */
struct ovha_buf {
    char *data;
    size_t len;
    size_t cap;
};

void ovha_buf_init(struct ovha_buf *b);
void ovha_buf_free(struct ovha_buf *b);
void ovha_buf_reset(struct ovha_buf *b);
int ovha_buf_reserve(struct ovha_buf *b, size_t extra);
int ovha_buf_append(struct ovha_buf *b, const void *p, size_t n);
int ovha_buf_appends(struct ovha_buf *b, const char *s);
int ovha_buf_printf(struct ovha_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes. */
void ovha_buf_consume(struct ovha_buf *b, size_t n);

/* ---- hashing ------------------------------------------------------------ */
#define OVHA_SHA256_LEN 32
void ovha_sha256(const void *p, size_t n, uint8_t out[OVHA_SHA256_LEN]);
/* Incremental form over several parts. */
struct ovha_sha256_ctx;
struct ovha_sha256_ctx *ovha_sha256_begin(void);
void ovha_sha256_update(struct ovha_sha256_ctx *c, const void *p, size_t n);
/* Writes the digest and frees the context. */
void ovha_sha256_end(struct ovha_sha256_ctx *c, uint8_t out[OVHA_SHA256_LEN]);
/* Lower-case hex of n bytes into out (2n+1 bytes). */
void ovha_hex(const uint8_t *p, size_t n, char *out);

/* ---- strings ------------------------------------------------------------ */
/* Copies at most size-1 bytes and terminates. Returns strlen(src). */
size_t ovha_strlcpy(char *dst, const char *src, size_t size);
/* Parses a decimal unsigned integer that must fill the whole string and be
 * <= max. Returns 0 or -EINVAL / -ERANGE. */
int ovha_parse_u64(const char *s, uint64_t max, uint64_t *ret);

#endif
