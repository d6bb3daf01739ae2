/* Small string helpers. */
#include <errno.h>
#include <string.h>

#include "base/base.h"

size_t ovha_strlcpy(char *dst, const char *src, size_t size)
{
    size_t len = strlen(src);
    if (size != 0) {
        size_t n = len < size - 1 ? len : size - 1;
        memcpy(dst, src, n);
        dst[n] = '\0';
    }
    return len;
}

int ovha_parse_u64(const char *s, uint64_t max, uint64_t *ret)
{
    uint64_t v = 0;
    if (*s == '\0') {
        return -EINVAL;
    }
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9') {
            return -EINVAL;
        }
        unsigned d = (unsigned)(*s - '0');
        if (d > max || v > (max - d) / 10) {
            return -ERANGE;
        }
        v = v * 10 + d;
    }
    *ret = v;
    return 0;
}
