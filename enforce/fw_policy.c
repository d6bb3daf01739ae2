/* enforce/fw_policy: the policy document (strict JSON parsing with
 * jansson), addresses, the member model and explain, the reference
 * statement of the semantics the compiled table implements.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/base.h"
#include "enforce/fw.h"
#include "enforce/fw_int.h"

void enf_fw_errf(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (errbuf == NULL || errlen == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

/* ---- addresses ----------------------------------------------------------- */

static size_t enf_fw_addr_len(uint8_t family)
{
    return family == AF_INET ? 4 : 16;
}

int enf_fw_addr_parse_host(const char *s, struct enf_fw_addr *ret)
{
    struct enf_fw_addr a;
    memset(&a, 0, sizeof(a));
    if (s == NULL) {
        return -EINVAL;
    }
    if (inet_pton(AF_INET, s, a.a) == 1) {
        a.family = AF_INET;
        a.prefix = 32;
    } else if (inet_pton(AF_INET6, s, a.a) == 1) {
        a.family = AF_INET6;
        a.prefix = 128;
    } else {
        return -EINVAL;
    }
    *ret = a;
    return 0;
}

int enf_fw_addr_parse_net(const char *s,
                          struct enf_fw_addr *ret,
                          char *why,
                          size_t whylen)
{
    char host[64];
    const char *slash = strchr(s, '/');
    size_t hlen = slash != NULL ? (size_t)(slash - s) : strlen(s);
    if (hlen >= sizeof(host)) {
        enf_fw_errf(why, whylen, "\"%s\" is not a CIDR", s);
        return -EINVAL;
    }
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    struct enf_fw_addr a;
    if (enf_fw_addr_parse_host(host, &a) < 0) {
        enf_fw_errf(why, whylen, "\"%s\" is not a CIDR", s);
        return -EINVAL;
    }
    if (slash != NULL) {
        uint64_t len = 0;
        if (ovha_parse_u64(slash + 1, a.prefix, &len) < 0) {
            enf_fw_errf(why, whylen, "\"%s\": bad prefix length", s);
            return -EINVAL;
        }
        a.prefix = (uint8_t)len;
    }
    unsigned bits = (unsigned)enf_fw_addr_len(a.family) * 8;
    for (unsigned i = a.prefix; i < bits; i++) {
        if (a.a[i / 8] & (0x80u >> (i % 8))) {
            enf_fw_errf(why, whylen, "\"%s\" has host bits set", s);
            return -EINVAL;
        }
    }
    *ret = a;
    return 0;
}

int enf_fw_addr_cmp(const struct enf_fw_addr *a, const struct enf_fw_addr *b)
{
    if (a->family != b->family) {
        return a->family < b->family ? -1 : 1;
    }
    return memcmp(a->a, b->a, enf_fw_addr_len(a->family));
}

bool enf_fw_addr_in_net(const struct enf_fw_addr *host,
                        const struct enf_fw_addr *net)
{
    if (host->family != net->family) {
        return false;
    }
    unsigned full = net->prefix / 8u;
    if (memcmp(host->a, net->a, full) != 0) {
        return false;
    }
    unsigned rest = net->prefix % 8u;
    if (rest == 0) {
        return true;
    }
    uint8_t m = (uint8_t)(0xffu << (8 - rest));
    return (host->a[full] & m) == (net->a[full] & m);
}

void enf_fw_addr_format(const struct enf_fw_addr *a, char *buf, size_t len)
{
    if (inet_ntop(a->family, a->a, buf, (socklen_t)len) == NULL) {
        ovha_strlcpy(buf, "?", len);
    }
}

/* ---- the member model ---------------------------------------------------- */

void enf_fw_memvec_free(struct enf_fw_memvec *mv)
{
    ovha_free(mv->v);
    memset(mv, 0, sizeof(*mv));
}

/* Index of the first member >= addr. */
static size_t enf_fw_memvec_lower(const struct enf_fw_memvec *mv,
                                  const struct enf_fw_addr *addr)
{
    size_t lo = 0, hi = mv->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (enf_fw_addr_cmp(&mv->v[mid].addr, addr) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

long enf_fw_memvec_find(const struct enf_fw_memvec *mv,
                        const struct enf_fw_addr *addr)
{
    size_t i = enf_fw_memvec_lower(mv, addr);
    if (i < mv->n && enf_fw_addr_cmp(&mv->v[i].addr, addr) == 0) {
        return (long)i;
    }
    return -1;
}

int enf_fw_memvec_put(struct enf_fw_memvec *mv,
                      const struct enf_fw_addr *addr,
                      uint64_t mask)
{
    size_t i = enf_fw_memvec_lower(mv, addr);
    if (i < mv->n && enf_fw_addr_cmp(&mv->v[i].addr, addr) == 0) {
        mv->v[i].mask = mask;
        return 0;
    }
    if (mv->n == mv->cap) {
        size_t cap = mv->cap ? mv->cap * 2 : 64;
        struct enf_fw_mem *v = ovha_realloc(mv->v, cap * sizeof(*v));
        if (v == NULL) {
            return -ENOMEM;
        }
        mv->v = v;
        mv->cap = cap;
    }
    memmove(&mv->v[i + 1], &mv->v[i], (mv->n - i) * sizeof(*mv->v));
    mv->v[i].addr = *addr;
    mv->v[i].mask = mask;
    mv->n++;
    return 0;
}

void enf_fw_memvec_remove(struct enf_fw_memvec *mv, size_t i)
{
    memmove(&mv->v[i], &mv->v[i + 1], (mv->n - i - 1) * sizeof(*mv->v));
    mv->n--;
}

uint64_t enf_fw_group_mask(const char *const *names,
                           size_t n,
                           const char (*groups)[ENF_FW_GROUP_LEN],
                           size_t ngroups)
{
    uint64_t mask = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t g = 0; names[i] != NULL && g < ngroups; g++) {
            if (strcmp(names[i], groups[g]) == 0) {
                mask |= UINT64_C(1) << g;
                break;
            }
        }
    }
    return mask;
}

static int enf_fw_mem_cmp(const void *pa, const void *pb)
{
    const struct enf_fw_mem *a = pa;
    const struct enf_fw_mem *b = pb;
    return enf_fw_addr_cmp(&a->addr, &b->addr);
}

int enf_fw_members_build(const struct enf_fw_member *members,
                         size_t n,
                         const char (*groups)[ENF_FW_GROUP_LEN],
                         size_t ngroups,
                         struct enf_fw_memvec *ret,
                         char *errbuf,
                         size_t errlen)
{
    struct enf_fw_memvec mv = { 0 };
    mv.cap = n ? n : 1;
    mv.v = ovha_calloc(mv.cap, sizeof(*mv.v));
    if (mv.v == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        struct enf_fw_mem *m = &mv.v[mv.n];
        if (enf_fw_addr_parse_host(members[i].ip, &m->addr) < 0) {
            enf_fw_errf(errbuf, errlen, "member %zu: \"%s\" is not an address",
                        i, members[i].ip ? members[i].ip : "(null)");
            goto fail;
        }
        m->mask = enf_fw_group_mask(members[i].groups, members[i].ngroups,
                                    groups, ngroups);
        mv.n++;
    }
    if (mv.n > 1) {
        qsort(mv.v, mv.n, sizeof(*mv.v), enf_fw_mem_cmp);
    }
    for (size_t i = 1; i < mv.n; i++) {
        if (enf_fw_addr_cmp(&mv.v[i - 1].addr, &mv.v[i].addr) == 0) {
            char a[INET6_ADDRSTRLEN];
            enf_fw_addr_format(&mv.v[i].addr, a, sizeof(a));
            enf_fw_errf(errbuf, errlen, "member %s: given twice", a);
            goto fail;
        }
    }
    *ret = mv;
    return 0;
fail:
    enf_fw_memvec_free(&mv);
    return -EINVAL;
}

/* ---- parsing ------------------------------------------------------------- */

/* The state of one parse: the first error wins. */
struct enf_fw_parse {
    struct enf_fw_policy *p;
    char *errbuf;
    size_t errlen;
};

static int enf_fw_perr(struct enf_fw_parse *ps, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int enf_fw_perr(struct enf_fw_parse *ps, const char *fmt, ...)
{
    if (ps->errbuf != NULL && ps->errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ps->errbuf, ps->errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

/* Every key of obj must be in allowed (NULL-terminated). */
static int enf_fw_parse_keys(struct enf_fw_parse *ps,
                             json_t *obj,
                             const char *path,
                             const char *const *allowed)
{
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        (void)val;
        bool ok = false;
        for (size_t i = 0; allowed[i] != NULL && !ok; i++) {
            ok = strcmp(key, allowed[i]) == 0;
        }
        if (!ok) {
            return enf_fw_perr(ps, "%s: unknown key \"%s\"", path, key);
        }
    }
    return 0;
}

static bool enf_fw_charset(const char *s, const char *extra, bool upper)
{
    for (; *s != '\0'; s++) {
        char c = *s;
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  (upper && c >= 'A' && c <= 'Z') ||
                  (c != '\0' && strchr(extra, c) != NULL);
        if (!ok) {
            return false;
        }
    }
    return true;
}

static bool enf_fw_valid_group(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n < ENF_FW_GROUP_LEN && enf_fw_charset(s, "_-", false) &&
           strcmp(s, "any") != 0;
}

bool enf_fw_valid_dev(const char *dev)
{
    size_t n = dev != NULL ? strlen(dev) : 0;
    return n >= 1 && n < ENF_FW_DEV_LEN && enf_fw_charset(dev, "_.-", true);
}

bool enf_fw_valid_table(const char *table)
{
    size_t n = table != NULL ? strlen(table) : 0;
    return n >= 1 && n < ENF_FW_TABLE_LEN && enf_fw_charset(table, "_", false);
}

static int enf_fw_find_group(const struct enf_fw_policy *p, const char *name)
{
    for (size_t g = 0; g < p->ngroups; g++) {
        if (strcmp(p->groups[g], name) == 0) {
            return (int)g;
        }
    }
    return -1;
}

static int enf_fw_parse_verdict(struct enf_fw_parse *ps,
                                json_t *v,
                                const char *path,
                                enum enf_fw_verdict *ret)
{
    const char *s = json_string_value(v);
    if (s != NULL && strcmp(s, "accept") == 0) {
        *ret = ENF_FW_ACCEPT;
    } else if (s != NULL && strcmp(s, "drop") == 0) {
        *ret = ENF_FW_DROP;
    } else {
        return enf_fw_perr(ps, "%s: must be \"accept\" or \"drop\"", path);
    }
    return 0;
}

static int enf_fw_parse_groups(struct enf_fw_parse *ps, json_t *groups)
{
    if (groups == NULL) {
        return 0;
    }
    if (!json_is_array(groups)) {
        return enf_fw_perr(ps, "$.groups: must be an array");
    }
    if (json_array_size(groups) > ENF_FW_MAX_GROUPS) {
        return enf_fw_perr(ps, "$.groups: more than %d groups",
                           ENF_FW_MAX_GROUPS);
    }
    size_t i;
    json_t *g;
    json_array_foreach(groups, i, g)
    {
        const char *s = json_string_value(g);
        if (s == NULL || !enf_fw_valid_group(s)) {
            return enf_fw_perr(ps,
                               "$.groups[%zu]: must be a name of 1-31 "
                               "characters [a-z0-9_-], not \"any\"",
                               i);
        }
        if (enf_fw_find_group(ps->p, s) >= 0) {
            return enf_fw_perr(ps, "$.groups[%zu]: \"%s\" declared twice", i,
                               s);
        }
        ovha_strlcpy(ps->p->groups[ps->p->ngroups++], s, ENF_FW_GROUP_LEN);
    }
    return 0;
}

/* A group reference: a declared name, or "any" (-1) when allowed. */
static int enf_fw_parse_groupref(struct enf_fw_parse *ps,
                                 json_t *v,
                                 const char *path,
                                 bool any_ok,
                                 int *ret)
{
    const char *s = json_string_value(v);
    if (s == NULL) {
        return enf_fw_perr(ps, "%s: must be a string", path);
    }
    if (any_ok && strcmp(s, "any") == 0) {
        *ret = -1;
        return 0;
    }
    int g = enf_fw_find_group(ps->p, s);
    if (g < 0) {
        return enf_fw_perr(ps, "%s: unknown group \"%s\"", path, s);
    }
    *ret = g;
    return 0;
}

static int enf_fw_parse_to(struct enf_fw_parse *ps,
                           json_t *v,
                           const char *path,
                           struct enf_fw_rule *r)
{
    if (json_is_string(v) && strcmp(json_string_value(v), "any") == 0) {
        r->to_kind = ENF_FW_TO_ANY;
        return 0;
    }
    if (!json_is_object(v) || json_object_size(v) != 1) {
        return enf_fw_perr(ps,
                           "%s: must be \"any\", {\"group\": name} or "
                           "{\"cidr\": network}",
                           path);
    }
    char sub[128];
    json_t *g = json_object_get(v, "group");
    json_t *c = json_object_get(v, "cidr");
    if (g != NULL) {
        snprintf(sub, sizeof(sub), "%s.group", path);
        r->to_kind = ENF_FW_TO_GROUP;
        return enf_fw_parse_groupref(ps, g, sub, false, &r->to_group);
    }
    if (c == NULL) {
        const char *key = json_object_iter_key(json_object_iter(v));
        return enf_fw_perr(ps, "%s: unknown key \"%s\"", path, key);
    }
    snprintf(sub, sizeof(sub), "%s.cidr", path);
    if (!json_is_string(c)) {
        return enf_fw_perr(ps, "%s: must be a string", sub);
    }
    char why[128];
    if (enf_fw_addr_parse_net(json_string_value(c), &r->to_net, why,
                              sizeof(why)) < 0) {
        return enf_fw_perr(ps, "%s: %s", sub, why);
    }
    r->to_kind = ENF_FW_TO_CIDR;
    return 0;
}

static int enf_fw_parse_proto(struct enf_fw_parse *ps,
                              json_t *v,
                              const char *path,
                              enum enf_fw_proto *ret)
{
    static const struct {
        const char *name;
        enum enf_fw_proto proto;
    } names[] = {
        { "any", ENF_FW_PROTO_ANY },
        { "tcp", ENF_FW_PROTO_TCP },
        { "udp", ENF_FW_PROTO_UDP },
        { "icmp", ENF_FW_PROTO_ICMP },
    };
    const char *s = json_string_value(v);
    for (size_t i = 0; s != NULL && i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(s, names[i].name) == 0) {
            *ret = names[i].proto;
            return 0;
        }
    }
    return enf_fw_perr(ps, "%s: must be \"tcp\", \"udp\", \"icmp\" or \"any\"",
                       path);
}

/* A port number in text: digits only, 1..65535. */
static int enf_fw_port_text(const char *s, size_t n, uint16_t *ret)
{
    char buf[8];
    uint64_t v = 0;
    if (n == 0 || n >= sizeof(buf)) {
        return -EINVAL;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (ovha_parse_u64(buf, 65535, &v) < 0 || v == 0) {
        return -EINVAL;
    }
    *ret = (uint16_t)v;
    return 0;
}

static int enf_fw_parse_port(struct enf_fw_parse *ps,
                             json_t *v,
                             const char *path,
                             struct enf_fw_portrange *ret)
{
    if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        if (n < 1 || n > 65535) {
            return enf_fw_perr(ps, "%s: port %lld out of range 1-65535", path,
                               (long long)n);
        }
        ret->lo = ret->hi = (uint16_t)n;
        return 0;
    }
    const char *s = json_string_value(v);
    const char *dash = s != NULL ? strchr(s, '-') : NULL;
    if (dash == NULL || enf_fw_port_text(s, (size_t)(dash - s), &ret->lo) < 0 ||
        enf_fw_port_text(dash + 1, strlen(dash + 1), &ret->hi) < 0 ||
        ret->lo > ret->hi) {
        return enf_fw_perr(ps,
                           "%s: must be a port 1-65535 or a range "
                           "\"lo-hi\" with lo <= hi",
                           path);
    }
    return 0;
}

static int enf_fw_parse_ports(struct enf_fw_parse *ps,
                              json_t *v,
                              const char *path,
                              struct enf_fw_rule *r)
{
    if (!json_is_array(v) || json_array_size(v) == 0) {
        return enf_fw_perr(ps, "%s: must be a non-empty array", path);
    }
    if (json_array_size(v) > ENF_FW_MAX_PORTS) {
        return enf_fw_perr(ps, "%s: more than %d ports", path,
                           ENF_FW_MAX_PORTS);
    }
    if (r->proto != ENF_FW_PROTO_TCP && r->proto != ENF_FW_PROTO_UDP) {
        return enf_fw_perr(ps, "%s: ports need proto \"tcp\" or \"udp\"", path);
    }
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        char sub[128];
        snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
        int err = enf_fw_parse_port(ps, e, sub, &r->ports[i]);
        if (err < 0) {
            return err;
        }
        r->nports++;
    }
    return 0;
}

static bool enf_fw_valid_rule_name(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n < ENF_FW_NAME_LEN && enf_fw_charset(s, "_.-", true);
}

static int enf_fw_parse_rule_name(struct enf_fw_parse *ps,
                                  json_t *v,
                                  const char *path,
                                  size_t index,
                                  struct enf_fw_rule *r)
{
    const char *s = json_string_value(v);
    if (s == NULL || !enf_fw_valid_rule_name(s)) {
        return enf_fw_perr(ps,
                           "%s: must be a name of 1-63 characters "
                           "[A-Za-z0-9_.-]",
                           path);
    }
    for (size_t i = 0; i < index; i++) {
        if (strcmp(ps->p->rules[i].name, s) == 0) {
            return enf_fw_perr(ps, "%s: rule \"%s\" named twice", path, s);
        }
    }
    ovha_strlcpy(r->name, s, sizeof(r->name));
    return 0;
}

/* A required member of obj, or an error naming it. */
static json_t *enf_fw_need(struct enf_fw_parse *ps,
                           json_t *obj,
                           const char *path,
                           const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        enf_fw_perr(ps, "%s: missing \"%s\"", path, key);
    }
    return v;
}

static int enf_fw_parse_rule(struct enf_fw_parse *ps, json_t *obj, size_t i)
{
    static const char *const keys[] = { "name",  "from",   "to", "proto",
                                        "ports", "action", NULL };
    struct enf_fw_rule *r = &ps->p->rules[i];
    char path[48], sub[96];
    snprintf(path, sizeof(path), "$.rules[%zu]", i);
    if (!json_is_object(obj)) {
        return enf_fw_perr(ps, "%s: must be an object", path);
    }
    int err = enf_fw_parse_keys(ps, obj, path, keys);
    if (err < 0) {
        return err;
    }
    json_t *name = enf_fw_need(ps, obj, path, "name");
    json_t *from = name ? enf_fw_need(ps, obj, path, "from") : NULL;
    json_t *to = from ? enf_fw_need(ps, obj, path, "to") : NULL;
    json_t *action = to ? enf_fw_need(ps, obj, path, "action") : NULL;
    if (action == NULL) {
        return -EINVAL;
    }
    snprintf(sub, sizeof(sub), "%s.name", path);
    err = enf_fw_parse_rule_name(ps, name, sub, i, r);
    snprintf(sub, sizeof(sub), "%s.from", path);
    err = err < 0 ? err : enf_fw_parse_groupref(ps, from, sub, true, &r->from);
    snprintf(sub, sizeof(sub), "%s.to", path);
    err = err < 0 ? err : enf_fw_parse_to(ps, to, sub, r);
    json_t *proto = json_object_get(obj, "proto");
    snprintf(sub, sizeof(sub), "%s.proto", path);
    if (err == 0 && proto != NULL) {
        err = enf_fw_parse_proto(ps, proto, sub, &r->proto);
    }
    json_t *ports = json_object_get(obj, "ports");
    snprintf(sub, sizeof(sub), "%s.ports", path);
    if (err == 0 && ports != NULL) {
        err = enf_fw_parse_ports(ps, ports, sub, r);
    }
    snprintf(sub, sizeof(sub), "%s.action", path);
    return err < 0 ? err : enf_fw_parse_verdict(ps, action, sub, &r->action);
}

static int enf_fw_parse_rules(struct enf_fw_parse *ps, json_t *rules)
{
    if (rules == NULL) {
        return 0;
    }
    if (!json_is_array(rules)) {
        return enf_fw_perr(ps, "$.rules: must be an array");
    }
    size_t n = json_array_size(rules);
    if (n > ENF_FW_MAX_RULES) {
        return enf_fw_perr(ps, "$.rules: more than %d rules", ENF_FW_MAX_RULES);
    }
    ps->p->rules = ovha_calloc(n ? n : 1, sizeof(*ps->p->rules));
    if (ps->p->rules == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        int err = enf_fw_parse_rule(ps, json_array_get(rules, i), i);
        if (err < 0) {
            return err;
        }
        ps->p->nrules++;
    }
    return 0;
}

static int enf_fw_parse_top(struct enf_fw_parse *ps, json_t *root)
{
    static const char *const keys[] = { "version", "default", "isolation",
                                        "groups",  "rules",   NULL };
    if (!json_is_object(root)) {
        return enf_fw_perr(ps, "$: must be an object");
    }
    int err = enf_fw_parse_keys(ps, root, "$", keys);
    if (err < 0) {
        return err;
    }
    json_t *version = enf_fw_need(ps, root, "$", "version");
    if (version == NULL) {
        return -EINVAL;
    }
    if (!json_is_integer(version) || json_integer_value(version) != 1) {
        return enf_fw_perr(ps, "$.version: must be 1");
    }
    json_t *def = enf_fw_need(ps, root, "$", "default");
    if (def == NULL) {
        return -EINVAL;
    }
    err = enf_fw_parse_verdict(ps, def, "$.default", &ps->p->def);
    if (err < 0) {
        return err;
    }
    json_t *iso = json_object_get(root, "isolation");
    ps->p->isolation = true;
    if (iso != NULL) {
        if (!json_is_boolean(iso)) {
            return enf_fw_perr(ps, "$.isolation: must be true or false");
        }
        ps->p->isolation = json_is_true(iso);
    }
    err = enf_fw_parse_groups(ps, json_object_get(root, "groups"));
    return err < 0 ? err
                   : enf_fw_parse_rules(ps, json_object_get(root, "rules"));
}

int enf_fw_policy_parse(const char *json,
                        size_t len,
                        struct enf_fw_policy **ret,
                        char *errbuf,
                        size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        enf_fw_errf(errbuf, errlen, "$: line %d column %d: %s", jerr.line,
                    jerr.column, jerr.text);
        return -EINVAL;
    }
    struct enf_fw_parse ps = { .errbuf = errbuf, .errlen = errlen };
    ps.p = ovha_calloc(1, sizeof(*ps.p));
    int err = ps.p != NULL ? enf_fw_parse_top(&ps, root) : -ENOMEM;
    json_decref(root);
    if (err < 0) {
        if (err == -ENOMEM) {
            enf_fw_errf(errbuf, errlen, "policy: out of memory");
        }
        enf_fw_policy_free(ps.p);
        return err;
    }
    *ret = ps.p;
    return 0;
}

void enf_fw_policy_free(struct enf_fw_policy *p)
{
    if (p == NULL) {
        return;
    }
    ovha_free(p->rules);
    ovha_free(p);
}

/* ---- explain ------------------------------------------------------------- */

static bool enf_fw_rule_ports(const struct enf_fw_rule *r, uint16_t port)
{
    if (r->nports == 0) {
        return true;
    }
    for (size_t i = 0; i < r->nports; i++) {
        if (port >= r->ports[i].lo && port <= r->ports[i].hi) {
            return true;
        }
    }
    return false;
}

/* Whether rule r matches a packet from member src to dst (dst_member is
 * the destination's entry in the model, or NULL). */
static bool enf_fw_rule_matches(const struct enf_fw_rule *r,
                                const struct enf_fw_mem *src,
                                const struct enf_fw_addr *dst,
                                const struct enf_fw_mem *dst_member,
                                enum enf_fw_proto proto,
                                uint16_t port)
{
    if (r->from >= 0 && !(src->mask & (UINT64_C(1) << r->from))) {
        return false;
    }
    if (r->to_kind == ENF_FW_TO_GROUP &&
        (dst_member == NULL ||
         !(dst_member->mask & (UINT64_C(1) << r->to_group)))) {
        return false;
    }
    if (r->to_kind == ENF_FW_TO_CIDR && !enf_fw_addr_in_net(dst, &r->to_net)) {
        return false;
    }
    if (r->proto != ENF_FW_PROTO_ANY && r->proto != proto) {
        return false;
    }
    return r->nports == 0 || enf_fw_rule_ports(r, port);
}

static void enf_fw_explained(struct enf_fw_explanation *ret,
                             enum enf_fw_verdict v,
                             const char *reason)
{
    ret->verdict = v;
    ovha_strlcpy(ret->reason, reason, sizeof(ret->reason));
}

int enf_fw_explain(const struct enf_fw_policy *p,
                   const struct enf_fw_member *members,
                   size_t nmembers,
                   const char *src,
                   const char *dst,
                   enum enf_fw_proto proto,
                   uint16_t port,
                   struct enf_fw_explanation *ret,
                   char *errbuf,
                   size_t errlen)
{
    struct enf_fw_addr s, d;
    if (enf_fw_addr_parse_host(src, &s) < 0 ||
        enf_fw_addr_parse_host(dst, &d) < 0 || s.family != d.family) {
        enf_fw_errf(errbuf, errlen, "explain: bad source or destination");
        return -EINVAL;
    }
    struct enf_fw_memvec mv;
    int err = enf_fw_members_build(members, nmembers, p->groups, p->ngroups,
                                   &mv, errbuf, errlen);
    if (err < 0) {
        return err;
    }
    long si = enf_fw_memvec_find(&mv, &s);
    long di = enf_fw_memvec_find(&mv, &d);
    const struct enf_fw_mem *dm = di >= 0 ? &mv.v[di] : NULL;
    if (si < 0) {
        enf_fw_explained(ret, ENF_FW_ACCEPT, "not from a client");
        goto out;
    }
    if (proto != ENF_FW_PROTO_TCP && proto != ENF_FW_PROTO_UDP) {
        port = 0;
    }
    for (size_t i = 0; i < p->nrules; i++) {
        const struct enf_fw_rule *r = &p->rules[i];
        if (enf_fw_rule_matches(r, &mv.v[si], &d, dm, proto, port)) {
            char reason[sizeof(ret->reason)];
            snprintf(reason, sizeof(reason), "rule %s", r->name);
            enf_fw_explained(ret, r->action, reason);
            goto out;
        }
    }
    if (p->isolation && dm != NULL) {
        enf_fw_explained(ret, ENF_FW_DROP, "isolation");
    } else {
        enf_fw_explained(ret, p->def, "default");
    }
out:
    enf_fw_memvec_free(&mv);
    return 0;
}
