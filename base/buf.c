/* Growable NUL-terminated byte buffer. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/base.h"

void ovha_buf_init(struct ovha_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void ovha_buf_free(struct ovha_buf *b)
{
    ovha_free(b->data);
    ovha_buf_init(b);
}

void ovha_buf_reset(struct ovha_buf *b)
{
    b->len = 0;
    if (b->data != NULL) {
        b->data[0] = '\0';
    }
}

int ovha_buf_reserve(struct ovha_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap) {
        return 0;
    }
    size_t cap = b->cap != 0 ? b->cap : 64;
    while (cap < b->len + extra + 1) {
        cap *= 2;
    }
    char *p = ovha_realloc(b->data, cap);
    if (p == NULL) {
        return -ENOMEM;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int ovha_buf_append(struct ovha_buf *b, const void *p, size_t n)
{
    int rv = ovha_buf_reserve(b, n);
    if (rv != 0) {
        return rv;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int ovha_buf_appends(struct ovha_buf *b, const char *s)
{
    return ovha_buf_append(b, s, strlen(s));
}

int ovha_buf_printf(struct ovha_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return -EINVAL;
    }
    int rv = ovha_buf_reserve(b, (size_t)n);
    if (rv != 0) {
        return rv;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void ovha_buf_consume(struct ovha_buf *b, size_t n)
{
    if (n >= b->len) {
        ovha_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}
