/* ovhactl output: escaping of strings that come from clients (CNs,
 * addresses) or the node, "key: value" fields, and text tables. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "node/ovhactl.h"

void ovhactl_err(const char *fmt, ...)
{
    va_list ap;
    fputs("ovhactl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ---- escaping --------------------------------------------------------- */

/* Writes s so that a terminal shows it unambiguously: control characters
 * (C0, DEL and the UTF-8 encoded C1 range) become escapes, and the whole
 * string is quoted when quote_if_needed and it is empty or holds spaces,
 * quotes, backslashes or escapes. Returns the text in buf. */
const char *ovhactl_escape(const char *s,
                           bool quote_if_needed,
                           char *buf,
                           size_t size)
{
    bool quote = *s == '\0';
    struct ovha_buf b;
    const unsigned char *p;

    for (p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p <= 0x20 || *p == 0x7f || *p == '"' || *p == '\\' ||
            (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)) {
            quote = true;
        }
    }
    quote = quote && quote_if_needed;
    ovha_buf_init(&b);
    if (quote) {
        ovha_buf_appends(&b, "\"");
    }
    for (p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '\n') {
            ovha_buf_appends(&b, "\\n");
        } else if (*p == '\t') {
            ovha_buf_appends(&b, "\\t");
        } else if (*p == '\r') {
            ovha_buf_appends(&b, "\\r");
        } else if (*p < 0x20 || *p == 0x7f) {
            ovha_buf_printf(&b, "\\x%02x", *p);
        } else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
            ovha_buf_printf(&b, "\\u%04x", p[1]);
            p++;
        } else if (quote && (*p == '"' || *p == '\\')) {
            ovha_buf_printf(&b, "\\%c", *p);
        } else {
            ovha_buf_append(&b, p, 1);
        }
    }
    if (quote) {
        ovha_buf_appends(&b, "\"");
    }
    ovha_strlcpy(buf, b.data != NULL ? b.data : "", size);
    ovha_buf_free(&b);
    return buf;
}

/* Prints "key: value" for scalars, and "key.sub: value" for the scalars of
 * an object one level down. */
void ovhactl_print_field(const char *prefix, const char *key, json_t *v)
{
    char ekey[256], esc[512];
    const char *sub;
    json_t *sv;

    snprintf(ekey, sizeof(ekey), "%s%s", prefix, key);
    if (json_is_object(v) && *prefix == '\0') {
        char p[160];
        snprintf(p, sizeof(p), "%.150s.", key);
        json_object_foreach(v, sub, sv)
        {
            ovhactl_print_field(p, sub, sv);
        }
        return;
    }
    ovhactl_escape(ekey, true, esc, sizeof(esc));
    if (json_is_string(v)) {
        char val[512];
        printf("%s: %s\n", esc,
               ovhactl_escape(json_string_value(v), true, val, sizeof(val)));
    } else if (json_is_integer(v)) {
        printf("%s: %" JSON_INTEGER_FORMAT "\n", esc, json_integer_value(v));
    } else if (json_is_real(v)) {
        printf("%s: %g\n", esc, json_real_value(v));
    } else if (json_is_boolean(v)) {
        printf("%s: %s\n", esc, json_is_true(v) ? "true" : "false");
    }
}

void ovhactl_str_field(json_t *s,
                       const char *key,
                       bool quote,
                       char *out,
                       size_t size)
{
    const char *v = json_string_value(json_object_get(s, key));
    ovhactl_escape(v != NULL ? v : "-", quote, out, size);
}

void ovhactl_int_field(json_t *s, const char *key, char *out, size_t size)
{
    json_t *v = json_object_get(s, key);
    if (json_is_integer(v)) {
        snprintf(out, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    } else {
        snprintf(out, size, "-");
    }
}

/* ---- tables ------------------------------------------------------------ */

int ovhactl_table_add(struct ovhactl_table *t, const char *const *cols)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap == 0 ? 16 : 2 * t->cap;
        char **c = realloc(t->cells, cap * t->ncols * sizeof(*c));
        if (c == NULL) {
            return -ENOMEM;
        }
        t->cells = c;
        t->cap = cap;
    }
    for (size_t i = 0; i < t->ncols; i++) {
        t->cells[t->nrows * t->ncols + i] = strdup(cols[i]);
        if (t->cells[t->nrows * t->ncols + i] == NULL) {
            for (size_t k = 0; k < i; k++) {
                free(t->cells[t->nrows * t->ncols + k]);
            }
            return -ENOMEM;
        }
    }
    t->nrows++;
    return 0;
}

static void ovhactl_table_line(const struct ovhactl_table *t,
                               const size_t *w,
                               const char *const *cols)
{
    for (size_t i = 0; i < t->ncols; i++) {
        bool last = i + 1 == t->ncols;
        if (t->align[i] == 'r') {
            printf("%*s", (int)w[i], cols[i]);
        } else {
            printf("%-*s", last ? 0 : (int)w[i], cols[i]);
        }
        fputs(last ? "\n" : "  ", stdout);
    }
}

void ovhactl_table_print(const struct ovhactl_table *t)
{
    size_t w[16] = { 0 };
    for (size_t i = 0; i < t->ncols && i < 16; i++) {
        w[i] = strlen(t->heads[i]);
        for (size_t r = 0; r < t->nrows; r++) {
            size_t l = strlen(t->cells[r * t->ncols + i]);
            w[i] = l > w[i] ? l : w[i];
        }
    }
    ovhactl_table_line(t, w, t->heads);
    for (size_t r = 0; r < t->nrows; r++) {
        ovhactl_table_line(t, w, (const char *const *)&t->cells[r * t->ncols]);
    }
}

void ovhactl_table_free(struct ovhactl_table *t)
{
    for (size_t i = 0; i < t->nrows * t->ncols; i++) {
        free(t->cells[i]);
    }
    free(t->cells);
}

/* A time in milliseconds since the epoch (the FSM's clock), as UTC. */
void ovhactl_ms_field(json_t *o, const char *key, char *out, size_t size)
{
    json_t *v = json_object_get(o, key);
    snprintf(out, size, "-");
    if (json_is_integer(v) && json_integer_value(v) > 0) {
        time_t t = (time_t)(json_integer_value(v) / 1000);
        struct tm tm;
        if (gmtime_r(&t, &tm) != NULL) {
            strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
        }
    }
}

/* Gets the list under key, or reports a malformed answer. */
json_t *ovhactl_list(json_t *j, const char *key)
{
    json_t *list = json_object_get(j, key);
    if (!json_is_array(list)) {
        ovhactl_err("the node's answer has no \"%s\" list", key);
        return NULL;
    }
    return list;
}
