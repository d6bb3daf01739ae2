/* Logging to stderr with sd-daemon priority prefixes.
 *
 * One write(2) per line so lines from the node and its child never
 * interleave mid-line. The JSON form escapes every byte below 0x20, quotes
 * and backslashes, so a hostile CN that reaches a log line cannot forge a
 * second record. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"

static enum ovha_log_level ovha_log_level_cur = OVHA_LOG_INFO;
static enum ovha_log_format ovha_log_format_cur = OVHA_LOG_TEXT;

void ovha_log_set_level(enum ovha_log_level level)
{
    ovha_log_level_cur = level;
}

enum ovha_log_level ovha_log_get_level(void)
{
    return ovha_log_level_cur;
}

void ovha_log_set_format(enum ovha_log_format format)
{
    ovha_log_format_cur = format;
}

int ovha_log_level_parse(const char *name, enum ovha_log_level *ret_level)
{
    static const struct {
        const char *name;
        enum ovha_log_level level;
    } names[] = { { "err", OVHA_LOG_ERR },
                  { "warn", OVHA_LOG_WARN },
                  { "info", OVHA_LOG_INFO },
                  { "debug", OVHA_LOG_DEBUG } };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(name, names[i].name) == 0) {
            *ret_level = names[i].level;
            return 0;
        }
    }
    return -EINVAL;
}

static const char *ovha_log_level_name(enum ovha_log_level level)
{
    switch (level) {
    case OVHA_LOG_ERR:
        return "err";
    case OVHA_LOG_WARN:
        return "warn";
    case OVHA_LOG_INFO:
        return "info";
    default:
        return "debug";
    }
}

/* Appends s as the inside of a JSON string, escaping control bytes. */
static size_t ovha_log_json_escape(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s != '\0' && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = '\0';
    return n;
}

/* Appends s as a logfmt quoted value's inside: quotes, backslashes and
 * control bytes escaped, so a hostile CN cannot start a new key or line. */
static size_t ovha_log_logfmt_escape(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s != '\0' && n + 5 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            n += (size_t)snprintf(out + n, cap - n, "\\x%02x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = '\0';
    return n;
}

static int ovha_log_logfmt(char *line,
                           size_t cap,
                           enum ovha_log_level level,
                           const char *module,
                           const char *msg)
{
    char esc[4096];
    char ts[32];
    uint64_t now = ovha_now_real_ms();
    time_t secs = (time_t)(now / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    ovha_log_logfmt_escape(esc, sizeof(esc), msg);
    return snprintf(line, cap, "ts=%s.%03uZ level=%s module=%s msg=\"%s\"\n",
                    ts, (unsigned)(now % 1000), ovha_log_level_name(level),
                    module, esc);
}

/* Replaces control bytes in plain-text output so one call is one line. */
static void ovha_log_plain_sanitize(char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f) {
            *s = '?';
        }
    }
}

void ovha_logv(enum ovha_log_level level,
               const char *module,
               const char *fmt,
               va_list ap)
{
    if (level > ovha_log_level_cur) {
        return;
    }
    char msg[2048];
    char line[4608];
    int n;
    int saved = errno;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (ovha_log_format_cur == OVHA_LOG_LOGFMT) {
        n = ovha_log_logfmt(line, sizeof(line), level, module, msg);
    } else if (ovha_log_format_cur == OVHA_LOG_JSON) {
        char esc[4096];
        ovha_log_json_escape(esc, sizeof(esc), msg);
        n = snprintf(line, sizeof(line),
                     "{\"ts\":%llu,\"level\":\"%s\",\"module\":\"%s\","
                     "\"msg\":\"%s\"}\n",
                     (unsigned long long)ovha_now_real_ms(),
                     ovha_log_level_name(level), module, esc);
    } else {
        ovha_log_plain_sanitize(msg);
        n = snprintf(line, sizeof(line), "<%d>%s: %s\n", (int)level, module,
                     msg);
    }
    if (n > (int)sizeof(line) - 1) {
        n = (int)sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
    errno = saved;
}

void ovha_log(enum ovha_log_level level,
              const char *module,
              const char *fmt,
              ...)
{
    va_list ap;
    va_start(ap, fmt);
    ovha_logv(level, module, fmt, ap);
    va_end(ap);
}

void ovha_fatal(const char *module, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ovha_logv(OVHA_LOG_ERR, module, fmt, ap);
    va_end(ap);
    exit(1);
}
