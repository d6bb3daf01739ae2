/* Allocation hooks with failure injection for the OOM paths in tests. */
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

static long ovha_alloc_countdown = -1;

void ovha_alloc_fail_after(long n)
{
    ovha_alloc_countdown = n;
}

/* True when the injected countdown says this allocation must fail. */
static bool ovha_alloc_should_fail(void)
{
    if (ovha_alloc_countdown < 0) {
        return false;
    }
    if (ovha_alloc_countdown == 0) {
        return true;
    }
    ovha_alloc_countdown--;
    return false;
}

void *ovha_malloc(size_t size)
{
    return ovha_alloc_should_fail() ? NULL : malloc(size);
}

void *ovha_calloc(size_t n, size_t size)
{
    return ovha_alloc_should_fail() ? NULL : calloc(n, size);
}

void *ovha_realloc(void *p, size_t size)
{
    return ovha_alloc_should_fail() ? NULL : realloc(p, size);
}

char *ovha_strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *d = ovha_malloc(len + 1);
    if (d != NULL) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

char *ovha_strdup(const char *s)
{
    return ovha_strndup(s, strlen(s));
}

void ovha_free(void *p)
{
    free(p);
}
