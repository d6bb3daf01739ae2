/* fsm: IPv4/IPv6 arithmetic for pools, leases and subnets. Pure functions:
 * inet_pton/inet_ntop do no I/O and give the same text on every node. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsm/fsm_int.h"

/* Pools never hand out more than 2^40 addresses: the offset stays exact in
 * an SQLite integer and the cursor never wraps. */
#define FSM_POOL_MAX_SPAN (1ULL << 40)

int fsm_ip_parse(const char *s, struct fsm_ip *ret)
{
    memset(ret, 0, sizeof(*ret));
    if (strchr(s, ':') != NULL) {
        if (inet_pton(AF_INET6, s, ret->a) != 1) {
            return -EINVAL;
        }
        ret->family = 6;
        return 0;
    }
    if (inet_pton(AF_INET, s, ret->a) != 1) {
        return -EINVAL;
    }
    ret->family = 4;
    return 0;
}

static unsigned fsm_ip_bits(const struct fsm_ip *ip)
{
    return ip->family == 4 ? 32 : 128;
}

/* True when every bit at or after pfx is zero. */
static bool fsm_ip_host_zero(const struct fsm_ip *ip, unsigned pfx)
{
    for (unsigned bit = pfx; bit < fsm_ip_bits(ip); bit++) {
        if (ip->a[bit / 8] & (0x80 >> (bit % 8))) {
            return false;
        }
    }
    return true;
}

int fsm_cidr_parse(const char *s, struct fsm_ip *ret_base, unsigned *ret_pfx)
{
    char addr[PROTO_ADDR_MAX];
    const char *slash = strchr(s, '/');
    if (slash == NULL || (size_t)(slash - s) >= sizeof(addr)) {
        return -EINVAL;
    }
    memcpy(addr, s, (size_t)(slash - s));
    addr[slash - s] = '\0';
    if (fsm_ip_parse(addr, ret_base) != 0) {
        return -EINVAL;
    }
    const char *p = slash + 1;
    if (*p < '0' || *p > '9' || strlen(p) > 3) {
        return -EINVAL;
    }
    char *end = NULL;
    unsigned long pfx = strtoul(p, &end, 10);
    if (*end != '\0' || pfx > fsm_ip_bits(ret_base)) {
        return -EINVAL;
    }
    if (!fsm_ip_host_zero(ret_base, (unsigned)pfx)) {
        return -EINVAL;
    }
    *ret_pfx = (unsigned)pfx;
    return 0;
}

void fsm_ip_format(const struct fsm_ip *ip, char *buf, size_t cap)
{
    if (inet_ntop(ip->family == 4 ? AF_INET : AF_INET6, ip->a, buf,
                  (socklen_t)cap) == NULL) {
        snprintf(buf, cap, "?");
    }
}

void fsm_ip_add(const struct fsm_ip *base, uint64_t off, struct fsm_ip *ret)
{
    *ret = *base;
    int last = base->family == 4 ? 3 : 15;
    unsigned carry = 0;
    for (int i = last; i >= 0 && (off != 0 || carry != 0); i--) {
        unsigned v = ret->a[i] + (unsigned)(off & 0xff) + carry;
        ret->a[i] = (uint8_t)v;
        carry = v >> 8;
        off >>= 8;
    }
}

bool fsm_ip_offset(const struct fsm_ip *base,
                   unsigned pfx,
                   const struct fsm_ip *ip,
                   uint64_t *ret_off)
{
    if (ip->family != base->family) {
        return false;
    }
    for (unsigned bit = 0; bit < pfx; bit++) {
        uint8_t m = (uint8_t)(0x80 >> (bit % 8));
        if ((ip->a[bit / 8] & m) != (base->a[bit / 8] & m)) {
            return false;
        }
    }
    /* The host part, saturated at 2^63 (beyond any pool's span). */
    unsigned bits = fsm_ip_bits(ip);
    uint64_t off = 0;
    for (unsigned bit = pfx; bit < bits; bit++) {
        if (off >= (1ULL << 62)) {
            off = 1ULL << 63;
            break;
        }
        off = (off << 1) | ((ip->a[bit / 8] >> (7 - bit % 8)) & 1u);
    }
    *ret_off = off;
    return true;
}

void fsm_cidr_range(const struct fsm_ip *base,
                    unsigned pfx,
                    uint8_t lo[16],
                    uint8_t hi[16])
{
    memset(lo, 0, 16);
    memset(hi, 0, 16);
    unsigned bits = fsm_ip_bits(base);
    memcpy(lo, base->a, bits / 8);
    memcpy(hi, base->a, bits / 8);
    for (unsigned bit = pfx; bit < bits; bit++) {
        hi[bit / 8] |= (uint8_t)(0x80 >> (bit % 8));
    }
}

int fsm_pool_bounds(int family, unsigned pfx, uint64_t *ret_end)
{
    unsigned host = (family == 4 ? 32 : 128) - pfx;
    if (host < 2) {
        return -EINVAL; /* /31, /32, /127, /128: nothing to hand out */
    }
    uint64_t span = host >= 40 ? FSM_POOL_MAX_SPAN : (1ULL << host);
    /* Offsets 0 (network) and 1 (the gateway's own address) are never
     * handed out, nor the last one (IPv4 broadcast; kept for symmetry). */
    *ret_end = span - 1;
    if (*ret_end <= FSM_POOL_FIRST) {
        return -EINVAL;
    }
    return 0;
}
