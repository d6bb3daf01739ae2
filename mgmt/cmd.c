/* Command builders for the management interface.
 *
 * Every builder validates all of its fields before it writes a byte, and
 * any failure truncates out back to its length on entry, so a refused
 * command never leaves half a line behind. Values that come from clients
 * (CNs, reasons, push options) can never contain a line break, a quote, a
 * backslash or another control byte: that is what keeps a hostile value
 * from adding a line to a client-auth block or a token to a command.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "mgmt/mgmt.h"

/* A block line is at most 255 bytes in openvpn (OPTION_LINE_SIZE). */
#define MGMT_MAX_BLOCK_LINE 255

int mgmt_check_quoted(const char *s, size_t max)
{
    if (s == NULL) {
        return -EINVAL;
    }
    size_t i = 0;
    for (; s[i] != '\0'; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') {
            return OVHA_EINJECT;
        }
    }
    return i > max ? OVHA_ELIMIT : 0;
}

/* An unquoted token: as above, and no white space either. openvpn's
 * parse_line() also treats a single quote as a quote and a token starting
 * with '#' or ';' as a comment, so those are refused too. Empty is refused
 * since it would shift the following tokens. */
static int mgmt_cmd_check_token(const char *s)
{
    int rv = mgmt_check_quoted(s, MGMT_MAX_TOKEN);
    if (rv != 0) {
        return rv;
    }
    if (s[0] == '\0' || s[0] == '#' || s[0] == ';' ||
        strpbrk(s, " '") != NULL) {
        return OVHA_EINJECT;
    }
    return 0;
}

/* Restores out to len after a failure. */
static int mgmt_cmd_fail(struct ovha_buf *out, size_t len, int rv)
{
    out->len = len;
    if (out->data != NULL) {
        out->data[len] = '\0';
    }
    return rv;
}

/* Appends with printf and checks the block-line bound when asked. */
static int mgmt_cmd_line(struct ovha_buf *out,
                         bool block_line,
                         const char *fmt,
                         ...) __attribute__((format(printf, 3, 4)));

static int mgmt_cmd_line(struct ovha_buf *out,
                         bool block_line,
                         const char *fmt,
                         ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0) {
        return -EINVAL;
    }
    if ((size_t)n >= sizeof(line)) {
        return OVHA_ELIMIT;
    }
    /* n counts the '\n'; the limit is on the line's content. */
    if (block_line && (size_t)n - 1 > MGMT_MAX_BLOCK_LINE) {
        return OVHA_ELIMIT;
    }
    return ovha_buf_append(out, line, (size_t)n);
}

/* ---- addresses ---------------------------------------------------------- */

/* A NUL-terminated string within a fixed-size array. */
static bool mgmt_cmd_terminated(const char *s, size_t size)
{
    return memchr(s, '\0', size) != NULL;
}

static bool mgmt_cmd_is_ipv4(const char *s)
{
    struct in_addr a;
    return inet_pton(AF_INET, s, &a) == 1;
}

static bool mgmt_cmd_is_ipv6(const char *s)
{
    struct in6_addr a;
    return inet_pton(AF_INET6, s, &a) == 1;
}

static bool mgmt_cmd_is_netmask(const char *s)
{
    struct in_addr a;
    if (inet_pton(AF_INET, s, &a) != 1) {
        return false;
    }
    uint32_t m = ntohl(a.s_addr);
    /* Contiguous ones: ~m + 1 is a power of two (or zero for /0). */
    uint32_t inv = ~m;
    return (inv & (inv + 1)) == 0;
}

static void mgmt_cmd_prefix_to_mask(unsigned prefix, char out[16])
{
    uint32_t m = prefix == 0 ? 0 : 0xffffffffu << (32 - prefix);
    snprintf(out, 16, "%u.%u.%u.%u", m >> 24, (m >> 16) & 0xff, (m >> 8) & 0xff,
             m & 0xff);
}

/* 4 for IPv4, 6 for IPv6, or a negative error. */
static int mgmt_cmd_net_family(const struct mgmt_net *n)
{
    if (!mgmt_cmd_terminated(n->addr, sizeof(n->addr))) {
        return -EINVAL;
    }
    if (mgmt_cmd_is_ipv4(n->addr)) {
        return n->prefix <= 32 ? 4 : -EINVAL;
    }
    if (mgmt_cmd_is_ipv6(n->addr)) {
        return n->prefix <= 128 ? 6 : -EINVAL;
    }
    return -EINVAL;
}

/* "addr/bits" with an IPv6 address and bits <= 128. */
static int mgmt_cmd_check_ifconfig6(const char *s)
{
    char addr[64];
    const char *slash = strchr(s, '/');
    if (slash == NULL || (size_t)(slash - s) >= sizeof(addr)) {
        return -EINVAL;
    }
    memcpy(addr, s, (size_t)(slash - s));
    addr[slash - s] = '\0';
    uint64_t bits;
    if (!mgmt_cmd_is_ipv6(addr) || ovha_parse_u64(slash + 1, 128, &bits)) {
        return -EINVAL;
    }
    return 0;
}

/* ---- client-auth -------------------------------------------------------- */

static int mgmt_cmd_check_config(const struct mgmt_client_config *cfg)
{
    if (!mgmt_cmd_terminated(cfg->ifconfig_local,
                             sizeof(cfg->ifconfig_local)) ||
        !mgmt_cmd_terminated(cfg->ifconfig_netmask,
                             sizeof(cfg->ifconfig_netmask)) ||
        !mgmt_cmd_terminated(cfg->ifconfig6, sizeof(cfg->ifconfig6))) {
        return -EINVAL;
    }
    if (cfg->nroutes > MGMT_MAX_ROUTES || cfg->niroutes > MGMT_MAX_ROUTES ||
        cfg->npush > MGMT_MAX_PUSH_OPTS) {
        return OVHA_ELIMIT;
    }
    if ((cfg->nroutes > 0 && cfg->routes == NULL) ||
        (cfg->niroutes > 0 && cfg->iroutes == NULL) ||
        (cfg->npush > 0 && cfg->push == NULL)) {
        return -EINVAL;
    }
    if (cfg->ifconfig_local[0] != '\0' &&
        (!mgmt_cmd_is_ipv4(cfg->ifconfig_local) ||
         !mgmt_cmd_is_netmask(cfg->ifconfig_netmask))) {
        return -EINVAL;
    }
    if (cfg->ifconfig_local[0] == '\0' && cfg->ifconfig_netmask[0] != '\0') {
        return -EINVAL;
    }
    if (cfg->ifconfig6[0] != '\0' &&
        mgmt_cmd_check_ifconfig6(cfg->ifconfig6) != 0) {
        return -EINVAL;
    }
    for (size_t i = 0; i < cfg->nroutes; i++) {
        if (mgmt_cmd_net_family(&cfg->routes[i]) < 0) {
            return -EINVAL;
        }
    }
    for (size_t i = 0; i < cfg->niroutes; i++) {
        if (mgmt_cmd_net_family(&cfg->iroutes[i]) < 0) {
            return -EINVAL;
        }
    }
    for (size_t i = 0; i < cfg->npush; i++) {
        /* 'push ""' takes 7 of the 255 bytes of the block line. */
        int rv = mgmt_check_quoted(cfg->push[i], MGMT_MAX_BLOCK_LINE - 7);
        if (rv != 0) {
            return rv;
        }
        /* PUSH_REPLY joins options with commas: a comma in one option
         * would become a second option on the client. */
        if (strchr(cfg->push[i], ',') != NULL) {
            return OVHA_EINJECT;
        }
    }
    return 0;
}

/* One "push route"/"iroute" line for n. */
static int mgmt_cmd_net_line(struct ovha_buf *out,
                             const struct mgmt_net *n,
                             bool iroute)
{
    char mask[16];
    if (mgmt_cmd_net_family(n) == 4) {
        mgmt_cmd_prefix_to_mask(n->prefix, mask);
        return iroute
                   ? mgmt_cmd_line(out, true, "iroute %s %s\n", n->addr, mask)
                   : mgmt_cmd_line(out, true, "push \"route %s %s\"\n", n->addr,
                                   mask);
    }
    return iroute ? mgmt_cmd_line(out, true, "iroute-ipv6 %s/%u\n", n->addr,
                                  n->prefix)
                  : mgmt_cmd_line(out, true, "push \"route-ipv6 %s/%u\"\n",
                                  n->addr, n->prefix);
}

static int mgmt_cmd_config_lines(struct ovha_buf *out,
                                 const struct mgmt_client_config *cfg)
{
    int rv = 0;
    if (cfg->ifconfig_local[0] != '\0') {
        rv = mgmt_cmd_line(out, true, "ifconfig-push %s %s\n",
                           cfg->ifconfig_local, cfg->ifconfig_netmask);
    }
    if (rv == 0 && cfg->ifconfig6[0] != '\0') {
        rv =
            mgmt_cmd_line(out, true, "ifconfig-ipv6-push %s\n", cfg->ifconfig6);
    }
    for (size_t i = 0; rv == 0 && i < cfg->nroutes; i++) {
        rv = mgmt_cmd_net_line(out, &cfg->routes[i], false);
    }
    for (size_t i = 0; rv == 0 && i < cfg->niroutes; i++) {
        rv = mgmt_cmd_net_line(out, &cfg->iroutes[i], true);
    }
    for (size_t i = 0; rv == 0 && i < cfg->npush; i++) {
        rv = mgmt_cmd_line(out, true, "push \"%s\"\n", cfg->push[i]);
    }
    return rv;
}

int mgmt_cmd_client_auth(struct ovha_buf *out,
                         uint64_t cid,
                         uint32_t kid,
                         const struct mgmt_client_config *cfg)
{
    size_t len = out->len;
    int rv = 0;
    if (cfg != NULL) {
        rv = mgmt_cmd_check_config(cfg);
        if (rv != 0) {
            return rv;
        }
    }
    rv = mgmt_cmd_line(out, false, "client-auth %" PRIu64 " %" PRIu32 "\n", cid,
                       kid);
    if (rv == 0 && cfg != NULL) {
        rv = mgmt_cmd_config_lines(out, cfg);
    }
    if (rv == 0) {
        rv = ovha_buf_appends(out, "END\n");
    }
    return rv != 0 ? mgmt_cmd_fail(out, len, rv) : 0;
}

int mgmt_cmd_client_auth_nt(struct ovha_buf *out, uint64_t cid, uint32_t kid)
{
    size_t len = out->len;
    int rv = mgmt_cmd_line(
        out, false, "client-auth-nt %" PRIu64 " %" PRIu32 "\n", cid, kid);
    return rv != 0 ? mgmt_cmd_fail(out, len, rv) : 0;
}

int mgmt_cmd_client_deny(struct ovha_buf *out,
                         uint64_t cid,
                         uint32_t kid,
                         const char *reason,
                         const char *client_reason)
{
    size_t len = out->len;
    int rv = mgmt_check_quoted(reason, MGMT_MAX_TOKEN);
    if (rv == 0 && client_reason != NULL) {
        rv = mgmt_check_quoted(client_reason, MGMT_MAX_TOKEN);
    }
    if (rv != 0) {
        return rv;
    }
    if (client_reason != NULL) {
        rv = mgmt_cmd_line(
            out, false, "client-deny %" PRIu64 " %" PRIu32 " \"%s\" \"%s\"\n",
            cid, kid, reason, client_reason);
    } else {
        rv = mgmt_cmd_line(out, false,
                           "client-deny %" PRIu64 " %" PRIu32 " \"%s\"\n", cid,
                           kid, reason);
    }
    return rv != 0 ? mgmt_cmd_fail(out, len, rv) : 0;
}

int mgmt_cmd_client_kill(struct ovha_buf *out, uint64_t cid, const char *msg)
{
    size_t len = out->len;
    int rv;
    if (msg != NULL) {
        rv = mgmt_cmd_check_token(msg);
        if (rv != 0) {
            return rv;
        }
        rv =
            mgmt_cmd_line(out, false, "client-kill %" PRIu64 " %s\n", cid, msg);
    } else {
        rv = mgmt_cmd_line(out, false, "client-kill %" PRIu64 "\n", cid);
    }
    return rv != 0 ? mgmt_cmd_fail(out, len, rv) : 0;
}

int mgmt_cmd_client_pending_auth(struct ovha_buf *out,
                                 uint64_t cid,
                                 uint32_t kid,
                                 const char *extra,
                                 unsigned timeout_s)
{
    size_t len = out->len;
    int rv = mgmt_check_quoted(extra, MGMT_MAX_TOKEN);
    if (rv != 0) {
        return rv;
    }
    rv = mgmt_cmd_line(
        out, false, "client-pending-auth %" PRIu64 " %" PRIu32 " \"%s\" %u\n",
        cid, kid, extra, timeout_s);
    return rv != 0 ? mgmt_cmd_fail(out, len, rv) : 0;
}

/* Appends a fixed command. */
static int mgmt_cmd_fixed(struct ovha_buf *out, const char *cmd)
{
    size_t len = out->len;
    int rv = ovha_buf_appends(out, cmd);
    return rv != 0 ? mgmt_cmd_fail(out, len, rv) : 0;
}

/* Appends "word N\n". */
static int mgmt_cmd_word_num(struct ovha_buf *out, const char *word, unsigned v)
{
    size_t len = out->len;
    int rv = mgmt_cmd_line(out, false, "%s %u\n", word, v);
    return rv != 0 ? mgmt_cmd_fail(out, len, rv) : 0;
}

int mgmt_cmd_bytecount(struct ovha_buf *out, unsigned interval_s)
{
    return mgmt_cmd_word_num(out, "bytecount", interval_s);
}

int mgmt_cmd_status(struct ovha_buf *out, unsigned version)
{
    if (version > 3) {
        return -EINVAL;
    }
    if (version == 0) {
        return mgmt_cmd_fixed(out, "status\n");
    }
    return mgmt_cmd_word_num(out, "status", version);
}

int mgmt_cmd_hold_release(struct ovha_buf *out)
{
    return mgmt_cmd_fixed(out, "hold release\n");
}

int mgmt_cmd_env_filter(struct ovha_buf *out, unsigned level)
{
    return mgmt_cmd_word_num(out, "env-filter", level);
}

int mgmt_cmd_signal(struct ovha_buf *out, const char *sig)
{
    static const char *const ok[] = { "SIGHUP", "SIGTERM", "SIGUSR1",
                                      "SIGUSR2" };
    if (sig == NULL) {
        return -EINVAL;
    }
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        if (strcmp(sig, ok[i]) == 0) {
            size_t len = out->len;
            int rv = mgmt_cmd_line(out, false, "signal %s\n", ok[i]);
            return rv != 0 ? mgmt_cmd_fail(out, len, rv) : 0;
        }
    }
    return -EINVAL;
}

int mgmt_cmd_version(struct ovha_buf *out, unsigned n)
{
    if (n == 0) {
        return mgmt_cmd_fixed(out, "version\n");
    }
    return mgmt_cmd_word_num(out, "version", n);
}

int mgmt_cmd_toggle(struct ovha_buf *out, const char *what, bool on)
{
    static const char *const ok[] = { "state", "log", "echo" };
    if (what == NULL) {
        return -EINVAL;
    }
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        if (strcmp(what, ok[i]) == 0) {
            size_t len = out->len;
            int rv =
                mgmt_cmd_line(out, false, "%s %s\n", ok[i], on ? "on" : "off");
            return rv != 0 ? mgmt_cmd_fail(out, len, rv) : 0;
        }
    }
    return -EINVAL;
}
