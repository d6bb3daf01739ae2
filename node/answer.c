/* node/answer: the upstream decision API's wire format on ovhad's side.
 *
 * The request is built with jansson from checked parts only: a field that
 * the contract (docs/upstream-openapi.yaml) would refuse is either left out
 * (peer_info entries) or makes the whole request unsendable (-EINVAL), so
 * a conforming upstream never answers 400 because of us.
 *
 * The answer is parsed in one pass over a table of members. Every check
 * failure names the member (and an index for arrays), never the value:
 * the error text goes to logs and the value is upstream-controlled.
 */
#include "node/answer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* ---- shared helpers ------------------------------------------------------ */

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
 * The same rules as jansson's, checked here so that a NULL from
 * json_stringn can only mean out of memory. */
static bool node_answer_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t len;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i < len) {
            return false;
        }
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            return false;
        }
        i += len;
    }
    return true;
}

static bool node_answer_has_ctrl(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7F) {
            return true;
        }
    }
    return false;
}

/* Every byte of s[0..n) is alphanumeric or in extra. */
static bool node_answer_charset(const char *s, size_t n, const char *extra)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                  (c >= '0' && c <= '9') ||
                  (c != '\0' && strchr(extra, c) != NULL);
        if (!ok) {
            return false;
        }
    }
    return true;
}

/* ---- request ------------------------------------------------------------- */

/* Adds key: s[0..n). Returns 0 or -ENOMEM. */
static int node_answer_set_str(json_t *obj,
                               const char *key,
                               const char *s,
                               size_t n)
{
    json_t *v = json_stringn(s, n);
    if (v == NULL || json_object_set_new(obj, key, v) != 0) {
        return -ENOMEM;
    }
    return 0;
}

/* A string that must be valid UTF-8 of minb..maxb bytes, with no control
 * characters unless ctrl_ok. */
static bool node_answer_text_ok(const char *s,
                                size_t minb,
                                size_t maxb,
                                bool ctrl_ok)
{
    size_t n = strlen(s);
    return n >= minb && n <= maxb && node_answer_utf8_valid(s, n) &&
           (ctrl_ok || !node_answer_has_ctrl(s, n));
}

/* peer_info names: ^(IV|UV)_[A-Za-z0-9_]{1,61}$ (the contract's pattern,
 * so at most 64 bytes). */
static bool node_answer_peer_name_ok(const char *k)
{
    size_t n = strlen(k);
    if (n < 4 || n > 64) {
        return false;
    }
    if (strncmp(k, "IV_", 3) != 0 && strncmp(k, "UV_", 3) != 0) {
        return false;
    }
    return node_answer_charset(k + 3, n - 3, "_");
}

static int node_answer_peer_info(const struct mgmt_env *env, json_t **ret)
{
    json_t *pi = json_object();
    if (pi == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; env != NULL && i < env->n; i++) {
        const struct mgmt_env_var *v = &env->vars[i];
        if (json_object_size(pi) >= NODE_ANSWER_MAX_PEER) {
            break;
        }
        if (v->key == NULL || v->value == NULL ||
            !node_answer_peer_name_ok(v->key) ||
            !node_answer_text_ok(v->value, 0, 255, false) ||
            json_object_get(pi, v->key) != NULL) {
            /* Client-controlled: what the contract would refuse (or a
             * repeated name, first one wins) is dropped, not fatal. */
            continue;
        }
        if (node_answer_set_str(pi, v->key, v->value, strlen(v->value)) != 0) {
            json_decref(pi);
            return -ENOMEM;
        }
    }
    *ret = pi;
    return 0;
}

static unsigned node_answer_port(const char *s)
{
    uint64_t port;
    if (s == NULL || ovha_parse_u64(s, 65535, &port) != 0) {
        return 0;
    }
    return (unsigned)port;
}

static bool node_answer_ip_ok(const char *s)
{
    struct in6_addr a;
    return s != NULL && strlen(s) <= 45 &&
           (inet_pton(AF_INET, s, &a) == 1 || inet_pton(AF_INET6, s, &a) == 1);
}

/* Refuses what a conforming upstream would answer 400 to. */
static int node_answer_req_check(const struct node_decision_req *req,
                                 const char *gateway,
                                 const char *request_id)
{
    if (req->cn == NULL || !node_answer_text_ok(req->cn, 1, 255, false)) {
        return -EINVAL;
    }
    if (req->username != NULL && req->username[0] != '\0' &&
        !node_answer_text_ok(req->username, 0, 255, false)) {
        return -EINVAL;
    }
    if (req->password != NULL &&
        !node_answer_text_ok(req->password, 0, 4096, true)) {
        return -EINVAL;
    }
    if (!node_answer_ip_ok(req->real_ip)) {
        return -EINVAL;
    }
    if (gateway == NULL || strlen(gateway) < 1 || strlen(gateway) > 63 ||
        !node_answer_charset(gateway, strlen(gateway), "_.-")) {
        return -EINVAL;
    }
    if (request_id == NULL || strlen(request_id) < 1 ||
        strlen(request_id) > 64 ||
        !node_answer_charset(request_id, strlen(request_id), "_.:-")) {
        return -EINVAL;
    }
    return 0;
}

static int node_answer_req_build(const struct node_decision_req *req,
                                 const char *gateway,
                                 const char *request_id,
                                 json_t *root)
{
    json_t *ra = NULL;
    json_t *pi = NULL;
    int r = node_answer_set_str(root, "cn", req->cn, strlen(req->cn));
    if (r == 0 && req->username != NULL && req->username[0] != '\0') {
        r = node_answer_set_str(root, "username", req->username,
                                strlen(req->username));
    }
    if (r == 0 && req->password != NULL) {
        r = node_answer_set_str(root, "password", req->password,
                                strlen(req->password));
    }
    if (r != 0) {
        return r;
    }
    ra = json_object();
    if (ra == NULL || json_object_set_new(root, "real_address", ra) != 0) {
        return -ENOMEM;
    }
    r = node_answer_set_str(ra, "ip", req->real_ip, strlen(req->real_ip));
    if (r != 0) {
        return r;
    }
    if (json_object_set_new(
            ra, "port", json_integer(node_answer_port(req->real_port))) != 0) {
        return -ENOMEM;
    }
    r = node_answer_peer_info(req->env, &pi);
    if (r != 0) {
        return r;
    }
    if (json_object_set_new(root, "peer_info", pi) != 0) {
        return -ENOMEM;
    }
    r = node_answer_set_str(root, "gateway", gateway, strlen(gateway));
    if (r == 0) {
        r = node_answer_set_str(root, "request_id", request_id,
                                strlen(request_id));
    }
    return r;
}

static void node_answer_wipe_password(json_t *root)
{
    json_t *pw = json_object_get(root, "password");
    if (json_is_string(pw)) {
        /* The value is ours alone (refcount 1, about to be freed). */
        explicit_bzero((char *)json_string_value(pw), json_string_length(pw));
    }
}

int node_answer_request_json(const struct node_decision_req *req,
                             const char *gateway,
                             const char *request_id,
                             struct ovha_buf *out)
{
    char *text = NULL;
    size_t len;
    int r = node_answer_req_check(req, gateway, request_id);
    if (r != 0) {
        return r;
    }
    json_t *root = json_object();
    if (root == NULL) {
        return -ENOMEM;
    }
    r = node_answer_req_build(req, gateway, request_id, root);
    if (r != 0) {
        goto out;
    }
    text = json_dumps(root, JSON_COMPACT);
    if (text == NULL) {
        r = -ENOMEM;
        goto out;
    }
    len = strlen(text);
    r = ovha_buf_append(out, text, len);
    /* The body holds the password: wipe jansson's copies before freeing
     * (its buffers' earlier reallocations are out of our reach). */
    explicit_bzero(text, len);
    free(text);
out:
    node_answer_wipe_password(root);
    json_decref(root);
    return r;
}

/* ---- answer: member checks ------------------------------------------------
 * Each checker returns 0 or OVHA_EPROTO after writing "what: why" to the
 * context's err. */

struct node_answer_ctx {
    struct node_answer *a;
    char *err;
    size_t errlen;
};

static int node_answer_fail(struct node_answer_ctx *c,
                            const char *what,
                            const char *why)
{
    if (c->err != NULL && c->errlen > 0) {
        if (what != NULL) {
            snprintf(c->err, c->errlen, "%s: %s", what, why);
        } else {
            snprintf(c->err, c->errlen, "%s", why);
        }
    }
    return OVHA_EPROTO;
}

/* A string member of minb..maxb bytes (NUL was refused at load time, but
 * the length check below does not rely on it). */
static int node_answer_str(struct node_answer_ctx *c,
                           const char *what,
                           const json_t *v,
                           size_t minb,
                           size_t maxb,
                           const char **ret,
                           size_t *ret_len)
{
    if (!json_is_string(v)) {
        return node_answer_fail(c, what, "not a string");
    }
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (memchr(s, '\0', n) != NULL) {
        return node_answer_fail(c, what, "contains NUL");
    }
    if (n < minb || n > maxb) {
        return node_answer_fail(c, what, "bad length");
    }
    *ret = s;
    *ret_len = n;
    return 0;
}

static int node_answer_int(struct node_answer_ctx *c,
                           const char *what,
                           const json_t *v,
                           json_int_t lo,
                           json_int_t hi,
                           uint64_t *ret)
{
    /* json_is_integer is false for reals (1.0) and booleans. */
    if (!json_is_integer(v)) {
        return node_answer_fail(c, what, "not an integer");
    }
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi) {
        return node_answer_fail(c, what, "out of range");
    }
    *ret = (uint64_t)x;
    return 0;
}

/* Text: at most 255 bytes, no control characters. */
static int node_answer_text(struct node_answer_ctx *c,
                            const char *what,
                            const json_t *v,
                            char *dst,
                            size_t dstlen)
{
    const char *s;
    size_t n;
    int r = node_answer_str(c, what, v, 0, 255, &s, &n);
    if (r != 0) {
        return r;
    }
    if (node_answer_has_ctrl(s, n)) {
        return node_answer_fail(c, what, "contains control characters");
    }
    ovha_strlcpy(dst, s, dstlen);
    return 0;
}

static int node_answer_m_decision(struct node_answer_ctx *c, const json_t *v)
{
    if (!json_is_string(v)) {
        return node_answer_fail(c, "decision", "not a string");
    }
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 5 && memcmp(s, "allow", 5) == 0) {
        c->a->allow = true;
    } else if (n == 4 && memcmp(s, "deny", 4) == 0) {
        c->a->allow = false;
    } else {
        return node_answer_fail(c, "decision", "not allow or deny");
    }
    return 0;
}

static int node_answer_m_reason(struct node_answer_ctx *c, const json_t *v)
{
    return node_answer_text(c, "reason", v, c->a->reason, sizeof(c->a->reason));
}

static int node_answer_m_client_reason(struct node_answer_ctx *c,
                                       const json_t *v)
{
    return node_answer_text(c, "client_reason", v, c->a->client_reason,
                            sizeof(c->a->client_reason));
}

static int node_answer_m_groups(struct node_answer_ctx *c, const json_t *v)
{
    char what[32];
    if (!json_is_array(v)) {
        return node_answer_fail(c, "groups", "not an array");
    }
    if (json_array_size(v) > NODE_ANSWER_MAX_GROUPS) {
        return node_answer_fail(c, "groups", "too many items");
    }
    for (size_t i = 0; i < json_array_size(v); i++) {
        const char *s;
        size_t n;
        snprintf(what, sizeof(what), "groups[%zu]", i);
        int r = node_answer_str(c, what, json_array_get(v, i), 1, 63, &s, &n);
        if (r != 0) {
            return r;
        }
        if (!node_answer_charset(s, n, "_.-")) {
            return node_answer_fail(c, what, "not a name");
        }
        for (size_t k = 0; k < c->a->ngroups; k++) {
            if (strcmp(c->a->groups[k], s) == 0) {
                return node_answer_fail(c, what, "duplicate item");
            }
        }
        ovha_strlcpy(c->a->groups[c->a->ngroups++], s, sizeof(c->a->groups[0]));
    }
    return 0;
}

static int node_answer_m_ip(struct node_answer_ctx *c, const json_t *v)
{
    const char *s;
    size_t n;
    struct in_addr a;
    int r = node_answer_str(c, "ip", v, 1, 15, &s, &n);
    if (r != 0) {
        return r;
    }
    if (inet_pton(AF_INET, s, &a) != 1) {
        return node_answer_fail(c, "ip", "not an IPv4 address");
    }
    ovha_strlcpy(c->a->ip, s, sizeof(c->a->ip));
    return 0;
}

static int node_answer_m_pool(struct node_answer_ctx *c, const json_t *v)
{
    const char *s;
    size_t n;
    int r = node_answer_str(c, "pool", v, 1, 63, &s, &n);
    if (r != 0) {
        return r;
    }
    if (!node_answer_charset(s, n, "_.:-")) {
        return node_answer_fail(c, "pool", "not a name");
    }
    ovha_strlcpy(c->a->pool, s, sizeof(c->a->pool));
    return 0;
}

/* A parsed network, for the host-bits and uniqueness checks. */
struct node_answer_cidr {
    int family;
    uint8_t addr[16];
    unsigned prefix;
};

/* The prefix: 1..3 digits, no leading zero, at most max. */
static int node_answer_prefix(const char *s, unsigned max, unsigned *ret)
{
    size_t n = strlen(s);
    unsigned p = 0;
    if (n < 1 || n > 3 || (n > 1 && s[0] == '0')) {
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -EINVAL;
        }
        p = p * 10 + (unsigned)(s[i] - '0');
    }
    if (p > max) {
        return -EINVAL;
    }
    *ret = p;
    return 0;
}

static bool node_answer_host_bits_zero(const struct node_answer_cidr *n)
{
    size_t bytes = n->family == AF_INET ? 4 : 16;
    for (size_t i = 0; i < bytes; i++) {
        unsigned first = (unsigned)i * 8;
        uint8_t keep;
        if (first + 8 <= n->prefix) {
            continue;
        }
        keep = first >= n->prefix
                   ? 0
                   : (uint8_t)(0xFF << (8 - (n->prefix - first)));
        if ((n->addr[i] & (uint8_t)~keep) != 0) {
            return false;
        }
    }
    return true;
}

/* Parses "addr/prefix" (IPv4 or IPv6, ≤ 49 bytes). Returns 0, -EINVAL
 * (not a CIDR) or -EDOM (host bits set). */
static int node_answer_cidr_parse(const char *s,
                                  size_t n,
                                  struct node_answer_cidr *ret)
{
    char buf[50];
    char *slash;
    struct node_answer_cidr c;
    memset(&c, 0, sizeof(c));
    if (n >= sizeof(buf)) {
        return -EINVAL;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    slash = strchr(buf, '/');
    if (slash == NULL) {
        return -EINVAL;
    }
    *slash = '\0';
    if (inet_pton(AF_INET, buf, c.addr) == 1) {
        c.family = AF_INET;
    } else if (inet_pton(AF_INET6, buf, c.addr) == 1) {
        c.family = AF_INET6;
    } else {
        return -EINVAL;
    }
    if (node_answer_prefix(slash + 1, c.family == AF_INET ? 32 : 128,
                           &c.prefix) != 0) {
        return -EINVAL;
    }
    if (!node_answer_host_bits_zero(&c)) {
        return -EDOM;
    }
    *ret = c;
    return 0;
}

static int node_answer_cidr_list(struct node_answer_ctx *c,
                                 const char *name,
                                 const json_t *v,
                                 struct mgmt_net *out,
                                 size_t *ret_n)
{
    struct node_answer_cidr seen[NODE_ANSWER_MAX_NETS];
    char what[32];
    if (!json_is_array(v)) {
        return node_answer_fail(c, name, "not an array");
    }
    if (json_array_size(v) > NODE_ANSWER_MAX_NETS) {
        return node_answer_fail(c, name, "too many items");
    }
    for (size_t i = 0; i < json_array_size(v); i++) {
        const char *s;
        size_t n;
        struct node_answer_cidr *net = &seen[i];
        snprintf(what, sizeof(what), "%s[%zu]", name, i);
        int r = node_answer_str(c, what, json_array_get(v, i), 1, 49, &s, &n);
        if (r != 0) {
            return r;
        }
        r = node_answer_cidr_parse(s, n, net);
        if (r == -EDOM) {
            return node_answer_fail(c, what, "host bits set");
        }
        if (r != 0) {
            return node_answer_fail(c, what, "not a CIDR");
        }
        /* Compared as networks: "2001:db8::/32" and "2001:0db8::/32" are
         * the same route. */
        for (size_t k = 0; k < i; k++) {
            if (seen[k].family == net->family &&
                seen[k].prefix == net->prefix &&
                memcmp(seen[k].addr, net->addr, sizeof(net->addr)) == 0) {
                return node_answer_fail(c, what, "duplicate item");
            }
        }
        /* Stored in canonical form (fits: at most 45 bytes). */
        inet_ntop(net->family, net->addr, out[i].addr, sizeof(out[i].addr));
        out[i].prefix = net->prefix;
        *ret_n = i + 1;
    }
    return 0;
}

static int node_answer_m_routes(struct node_answer_ctx *c, const json_t *v)
{
    return node_answer_cidr_list(c, "routes", v, c->a->routes, &c->a->nroutes);
}

static int node_answer_m_iroutes(struct node_answer_ctx *c, const json_t *v)
{
    return node_answer_cidr_list(c, "iroutes", v, c->a->iroutes,
                                 &c->a->niroutes);
}

/* Every member of obj is one of names (a NULL-terminated list). */
static int node_answer_only(struct node_answer_ctx *c,
                            const char *what,
                            const json_t *obj,
                            const char *const *names)
{
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        bool known = false;
        for (size_t i = 0; names[i] != NULL; i++) {
            if (strcmp(key, names[i]) == 0) {
                known = true;
            }
        }
        if (!known) {
            return node_answer_fail(c, what, "unknown member");
        }
    }
    return 0;
}

static int node_answer_m_quota(struct node_answer_ctx *c, const json_t *v)
{
    static const char *const names[] = { "bytes", "period", NULL };
    static const char *const periods[] = { "session", "day", "week", "month",
                                           NULL };
    const json_t *b = json_object_get(v, "bytes");
    const json_t *p = json_object_get(v, "period");
    if (!json_is_object(v)) {
        return node_answer_fail(c, "quota", "not an object");
    }
    int r = node_answer_only(c, "quota", v, names);
    if (r != 0) {
        return r;
    }
    if (b == NULL) {
        return node_answer_fail(c, "quota.bytes", "missing");
    }
    if (p == NULL) {
        return node_answer_fail(c, "quota.period", "missing");
    }
    r = node_answer_int(c, "quota.bytes", b, 1, ((json_int_t)1 << 53) - 1,
                        &c->a->quota_bytes);
    if (r != 0) {
        return r;
    }
    if (!json_is_string(p)) {
        return node_answer_fail(c, "quota.period", "not a string");
    }
    for (size_t i = 0; periods[i] != NULL; i++) {
        if (json_string_length(p) == strlen(periods[i]) &&
            strcmp(json_string_value(p), periods[i]) == 0) {
            ovha_strlcpy(c->a->quota_period, periods[i],
                         sizeof(c->a->quota_period));
            return 0;
        }
    }
    return node_answer_fail(c, "quota.period", "not session|day|week|month");
}

static int node_answer_m_bandwidth(struct node_answer_ctx *c, const json_t *v)
{
    static const char *const names[] = { "down_kbps", "up_kbps", NULL };
    const json_t *down = json_object_get(v, "down_kbps");
    const json_t *up = json_object_get(v, "up_kbps");
    int r = 0;
    if (!json_is_object(v)) {
        return node_answer_fail(c, "bandwidth", "not an object");
    }
    r = node_answer_only(c, "bandwidth", v, names);
    if (r != 0) {
        return r;
    }
    if (down == NULL && up == NULL) {
        return node_answer_fail(c, "bandwidth", "needs down_kbps or up_kbps");
    }
    if (down != NULL) {
        r = node_answer_int(c, "bandwidth.down_kbps", down, 1, 100000000,
                            &c->a->down_kbps);
    }
    if (r == 0 && up != NULL) {
        r = node_answer_int(c, "bandwidth.up_kbps", up, 1, 100000000,
                            &c->a->up_kbps);
    }
    return r;
}

static int node_answer_m_max_sessions(struct node_answer_ctx *c,
                                      const json_t *v)
{
    uint64_t x;
    int r = node_answer_int(c, "max_sessions", v, 1, 64, &x);
    if (r == 0) {
        c->a->max_sessions = (unsigned)x;
    }
    return r;
}

static int node_answer_m_on_excess(struct node_answer_ctx *c, const json_t *v)
{
    if (!json_is_string(v)) {
        return node_answer_fail(c, "on_excess", "not a string");
    }
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 12 && memcmp(s, "evict_oldest", 12) == 0) {
        c->a->on_excess = NODE_EXCESS_EVICT_OLDEST;
    } else if (n == 6 && memcmp(s, "refuse", 6) == 0) {
        c->a->on_excess = NODE_EXCESS_REFUSE;
    } else {
        return node_answer_fail(c, "on_excess", "not evict_oldest or refuse");
    }
    return 0;
}

static int node_answer_m_ttl_s(struct node_answer_ctx *c, const json_t *v)
{
    uint64_t x;
    int r = node_answer_int(c, "ttl_s", v, 0, 86400, &x);
    if (r == 0) {
        c->a->ttl_s = (uint32_t)x;
    }
    return r;
}

struct node_answer_member {
    const char *name;
    bool required;
    int (*check)(struct node_answer_ctx *c, const json_t *v);
};

static const struct node_answer_member node_answer_members[] = {
    { "decision", true, node_answer_m_decision },
    { "reason", false, node_answer_m_reason },
    { "client_reason", false, node_answer_m_client_reason },
    { "groups", false, node_answer_m_groups },
    { "ip", false, node_answer_m_ip },
    { "pool", false, node_answer_m_pool },
    { "routes", false, node_answer_m_routes },
    { "iroutes", false, node_answer_m_iroutes },
    { "quota", false, node_answer_m_quota },
    { "bandwidth", false, node_answer_m_bandwidth },
    { "max_sessions", false, node_answer_m_max_sessions },
    { "on_excess", false, node_answer_m_on_excess },
    { "ttl_s", true, node_answer_m_ttl_s },
};

#define NODE_ANSWER_NMEMBERS \
    (sizeof(node_answer_members) / sizeof(node_answer_members[0]))

static int node_answer_check(struct node_answer_ctx *c, const json_t *root)
{
    const char *key;
    const json_t *v;
    /* Unknown members first: a misspelt "route" must not pass. */
    json_object_foreach((json_t *)root, key, v)
    {
        bool known = false;
        for (size_t i = 0; i < NODE_ANSWER_NMEMBERS; i++) {
            if (strcmp(key, node_answer_members[i].name) == 0) {
                known = true;
            }
        }
        if (!known) {
            return node_answer_fail(c, NULL, "unknown member");
        }
    }
    for (size_t i = 0; i < NODE_ANSWER_NMEMBERS; i++) {
        const struct node_answer_member *m = &node_answer_members[i];
        v = json_object_get(root, m->name);
        if (v == NULL) {
            if (m->required) {
                return node_answer_fail(c, m->name, "missing");
            }
            continue;
        }
        int r = m->check(c, v);
        if (r != 0) {
            return r;
        }
    }
    if (json_object_get(root, "ip") != NULL &&
        json_object_get(root, "pool") != NULL) {
        return node_answer_fail(c, NULL, "ip and pool together");
    }
    return 0;
}

/* A deny uses only decision, reason, client_reason and ttl_s. */
static void node_answer_keep_deny(struct node_answer *a)
{
    struct node_answer d;
    memset(&d, 0, sizeof(d));
    d.allow = false;
    memcpy(d.reason, a->reason, sizeof(d.reason));
    memcpy(d.client_reason, a->client_reason, sizeof(d.client_reason));
    d.ttl_s = a->ttl_s;
    *a = d;
}

int node_answer_parse(const char *body,
                      size_t len,
                      struct node_answer *ret,
                      char *err,
                      size_t errlen)
{
    struct node_answer a;
    struct node_answer_ctx c = { .a = &a, .err = err, .errlen = errlen };
    json_error_t jerr;
    int r;
    memset(&a, 0, sizeof(a));
    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }
    /* No JSON_ALLOW_NUL: "\u0000" in a string is a load error. No
     * JSON_DECODE_ANY: a top level that is not an object or an array is
     * not JSON for us either. */
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        /* jerr.text is not copied: it may quote the body. */
        if (json_error_code(&jerr) == json_error_duplicate_key) {
            return node_answer_fail(&c, NULL, "duplicate member");
        }
        if (json_error_code(&jerr) == json_error_null_character) {
            return node_answer_fail(&c, NULL, "string with NUL");
        }
        return node_answer_fail(&c, NULL, "not JSON");
    }
    if (!json_is_object(root)) {
        r = node_answer_fail(&c, NULL, "not an object");
        goto out;
    }
    r = node_answer_check(&c, root);
    if (r != 0) {
        goto out;
    }
    if (!a.allow) {
        node_answer_keep_deny(&a);
    }
    *ret = a;
out:
    json_decref(root);
    return r;
}

/* ---- answer → grant ------------------------------------------------------ */

static void node_answer_ntop4(uint32_t host_order, char *out, size_t outlen)
{
    struct in_addr a = { .s_addr = htonl(host_order) };
    if (inet_ntop(AF_INET, &a, out, (socklen_t)outlen) == NULL) {
        out[0] = '\0';
    }
}

/* A host of the IPv4 tunnel network other than its network address, its
 * broadcast address and the server's first host. */
static bool node_answer_ip_in_tunnel(const char *ip,
                                     const struct node_cfg_net *tunnel)
{
    struct in_addr a;
    struct in_addr t;
    if (tunnel == NULL || tunnel->v6 || tunnel->prefix > 32 ||
        inet_pton(AF_INET, ip, &a) != 1 ||
        inet_pton(AF_INET, tunnel->addr, &t) != 1) {
        return false;
    }
    uint32_t mask = tunnel->prefix == 0 ? 0 : ~0u << (32 - tunnel->prefix);
    uint32_t x = ntohl(a.s_addr);
    uint32_t net = ntohl(t.s_addr) & mask;
    uint32_t bcast = net | ~mask;
    return (x & mask) == net && x != net && x != bcast && x != net + 1;
}

static void node_answer_deny(const char *reason,
                             const char *client_reason,
                             const char *source,
                             struct node_grant *g)
{
    memset(g, 0, sizeof(*g));
    g->d.allow = false;
    ovha_strlcpy(g->d.reason, reason, sizeof(g->d.reason));
    ovha_strlcpy(g->d.client_reason, client_reason, sizeof(g->d.client_reason));
    g->source = source;
}

void node_answer_to_grant(const struct node_answer *a,
                          const struct node_cfg_net *tunnel,
                          const char *source,
                          struct node_grant *ret)
{
    _Static_assert(NODE_ANSWER_MAX_NETS <= NODE_CFG_MAX_ROUTES * 2,
                   "routes fit the decision");
    _Static_assert(NODE_ANSWER_MAX_NETS <= NODE_CFG_MAX_ROUTES,
                   "iroutes fit the decision");
    struct node_decision *d = &ret->d;
    if (!a->allow) {
        node_answer_deny(
            a->reason[0] != '\0' ? a->reason : "denied by upstream",
            a->client_reason[0] != '\0' ? a->client_reason : "Access denied",
            source, ret);
        return;
    }
    if (a->ip[0] != '\0' && !node_answer_ip_in_tunnel(a->ip, tunnel)) {
        node_answer_deny(
            "upstream grant invalid: ip outside the tunnel network",
            "Access denied", source, ret);
        return;
    }
    memset(ret, 0, sizeof(*ret));
    d->allow = true;
    ovha_strlcpy(d->reason, a->reason, sizeof(d->reason));
    ovha_strlcpy(d->ip, a->ip, sizeof(d->ip));
    if (tunnel != NULL && !tunnel->v6 && tunnel->prefix <= 32) {
        uint32_t m = tunnel->prefix == 0 ? 0 : ~0u << (32 - tunnel->prefix);
        node_answer_ntop4(m, d->netmask, sizeof(d->netmask));
    }
    memcpy(d->routes, a->routes, a->nroutes * sizeof(a->routes[0]));
    d->nroutes = a->nroutes;
    memcpy(d->iroutes, a->iroutes, a->niroutes * sizeof(a->iroutes[0]));
    d->niroutes = a->niroutes;
    ovha_strlcpy(ret->pool, a->pool, sizeof(ret->pool));
    ret->max_sessions = a->max_sessions;
    ret->on_excess = a->on_excess;
    ret->quota_bytes = a->quota_bytes;
    ovha_strlcpy(ret->quota_period, a->quota_period, sizeof(ret->quota_period));
    ret->down_kbps = a->down_kbps;
    ret->up_kbps = a->up_kbps;
    node_grant_join_groups(ret, a->groups, a->ngroups);
    ret->source = source;
}
