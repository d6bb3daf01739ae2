/* node/api_admin: the replicated state an operator manages by hand.
 *
 *   GET  /v1/pools                    the address pools
 *   PUT  /v1/pools                    PoolPut {"name", "cidr", "lease_ttl_ms"?}
 *   POST /v1/leases/reserve           LeaseReserve {"cn", "ip"}
 *   POST /v1/leases/release           LeaseRelease {"cn", "ip"}
 *   GET  /v1/subnets[?cn=X]           the site clients' registered subnets
 *   POST /v1/subnets/release          SubnetRelease {"cidr"}
 *   GET  /v1/audit[?after=S&limit=N]  a page of the audit chain
 *   GET  /v1/audit/verify             the kept chain, verified
 *
 * A write checks its body here (400 names the expected shape), proposes
 * the command with the request's subject as actor (so the audit record
 * names the operator) and keeps the request suspended. The proposal's
 * callback answers: 200 once raft committed it and the FSM accepted it,
 * 409 with the FSM's reason when the FSM refused it (404 when the named
 * lease or subnet does not exist), 503 when it did not commit (no leader,
 * leadership lost, runtime closing: the text says to retry). If the HTTP
 * server closes first, its cancel callback forgets the request and the
 * proposal callback then only frees its context.
 *
 * Reads come from this node's applied state, so a follower may lag the
 * leader slightly. A standalone node answers every route 409.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "node/node.h"
#include "proto/proto.h"

#define NODE_API_ADMIN_STANDALONE \
    "standalone node: no cluster section in the config"
#define NODE_API_ADMIN_AUDIT_LIMIT     100
#define NODE_API_ADMIN_AUDIT_LIMIT_MAX 1000
/* The FSM refuses a larger lease TTL (fsm_cmd.c, FSM_MAX_TTL). */
#define NODE_API_ADMIN_MAX_TTL_MS      (1ULL << 40)

enum node_api_admin_op {
    NODE_API_ADMIN_POOL_PUT,
    NODE_API_ADMIN_LEASE_RESERVE,
    NODE_API_ADMIN_LEASE_RELEASE,
    NODE_API_ADMIN_SUBNET_RELEASE,
};

/* What a write proposes; only the fields of its op are set. */
struct node_api_admin_args {
    const char *cn, *ip, *name, *cidr;
    uint64_t ttl_ms;
};

/* One write waiting for raft. */
struct node_api_admin_write {
    struct node_http_req *req; /* NULL once the server cancelled it */
    json_t *ok_body;           /* the 200 answer, built before proposing */
    unsigned not_found;        /* status for a NOT_FOUND refusal */
};

static void node_api_admin_error(struct node_http_req *r,
                                 unsigned status,
                                 const char *msg)
{
    node_http_respond_json(r, status, json_pack("{s:s}", "error", msg));
}

/* Answers 409 and returns false on a standalone node. */
static bool node_api_admin_check(struct node *n, struct node_http_req *r)
{
    if (n->rft == NULL || n->fsm == NULL || n->repl == NULL) {
        node_api_admin_error(r, 409, NODE_API_ADMIN_STANDALONE);
        return false;
    }
    return true;
}

/* A JSON string for text from the state: CNs come from certificates and
 * need not be UTF-8, which jansson refuses; such bytes become '?'. */
static json_t *node_api_admin_str(const char *s)
{
    json_t *j = json_string(s);
    char buf[600];
    size_t i;

    if (j != NULL) {
        return j;
    }
    for (i = 0; s[i] != '\0' && i + 1 < sizeof(buf); i++) {
        unsigned char ch = (unsigned char)s[i];
        buf[i] = ch < 0x80 ? (char)ch : '?';
    }
    buf[i] = '\0';
    return json_string(buf);
}

static json_t *node_api_admin_uint(uint64_t v)
{
    return json_integer((json_int_t)v);
}

/* ---- input checks -------------------------------------------------------- */

/* The body as JSON, or NULL (an empty or malformed body). */
static json_t *node_api_admin_body(struct node_http_req *r)
{
    size_t len = 0;
    const char *body = node_http_req_body(r, &len);
    json_error_t jerr;
    return json_loadb(body != NULL ? body : "", len, 0, &jerr);
}

/* True when the string member key of o has no NUL inside ("a\u0000b"
 * would otherwise be read as "a"). */
static bool node_api_admin_no_nul(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return v == NULL || strlen(json_string_value(v)) == json_string_length(v);
}

/* A CN as the rest of the node accepts one (answer.c): 1..255 bytes,
 * UTF-8 (jansson checked that), no control characters. */
static bool node_api_admin_cn_ok(const char *cn)
{
    size_t n = strlen(cn);
    if (n == 0 || n >= PROTO_CN_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)cn[i];
        if (c < 0x20 || c == 0x7f) {
            return false;
        }
    }
    return true;
}

/* Parses an IPv4 address (dotted quad, no leading zeros) or an IPv6
 * address strictly (inet_pton), writing its canonical text to out.
 * Returns the family (4 or 6) or 0. addr gets the bytes. */
static int node_api_admin_ip(const char *s,
                             uint8_t addr[16],
                             char *out,
                             size_t cap)
{
    int af = strchr(s, ':') != NULL ? AF_INET6 : AF_INET;
    memset(addr, 0, 16);
    if (strlen(s) >= INET6_ADDRSTRLEN || inet_pton(af, s, addr) != 1 ||
        inet_ntop(af, addr, out, (socklen_t)cap) == NULL) {
        return 0;
    }
    return af == AF_INET ? 4 : 6;
}

/* Parses "address/prefix" strictly: the address as above, the prefix in
 * decimal without leading zeros and at most the family's width, no host
 * bits set. out gets the canonical text. Returns the family or 0; the
 * prefix goes to *ret_pfx. */
static int node_api_admin_cidr(const char *s,
                               char *out,
                               size_t cap,
                               unsigned *ret_pfx)
{
    const char *slash = strchr(s, '/');
    char host[INET6_ADDRSTRLEN], text[INET6_ADDRSTRLEN];
    uint8_t a[16];
    uint64_t pfx;

    if (slash == NULL || (size_t)(slash - s) >= sizeof(host)) {
        return 0;
    }
    memcpy(host, s, (size_t)(slash - s));
    host[slash - s] = '\0';
    int fam = node_api_admin_ip(host, a, text, sizeof(text));
    unsigned bits = fam == 4 ? 32 : 128;
    if (fam == 0 || (slash[1] == '0' && slash[2] != '\0') ||
        ovha_parse_u64(slash + 1, bits, &pfx) != 0) {
        return 0;
    }
    for (unsigned bit = (unsigned)pfx; bit < bits; bit++) {
        if (a[bit / 8] & (0x80u >> (bit % 8))) {
            return 0;
        }
    }
    if ((size_t)snprintf(out, cap, "%s/%u", text, (unsigned)pfx) >= cap) {
        return 0;
    }
    *ret_pfx = (unsigned)pfx;
    return fam;
}

/* ---- writes -------------------------------------------------------------- */

/* The 503 text for a proposal that did not commit: all of them are worth
 * retrying, which the text says. */
static void node_api_admin_unavailable(struct node_http_req *r, int status)
{
    char msg[160];
    if (status == OVHA_ENOTLEADER) {
        snprintf(msg, sizeof(msg), "no raft leader; retry");
    } else if (status == OVHA_EUNKNOWN) {
        snprintf(msg, sizeof(msg),
                 "outcome unknown (raft leadership changed); check the "
                 "state and retry");
    } else if (status == OVHA_ECLOSED) {
        snprintf(msg, sizeof(msg),
                 "the cluster runtime is shutting down; retry on another "
                 "node");
    } else {
        snprintf(msg, sizeof(msg), "%s; retry", ovha_strerror(status));
    }
    node_api_admin_error(r, 503, msg);
}

static void node_api_admin_done_cb(void *data,
                                   int status,
                                   const struct proto_result *res)
{
    struct node_api_admin_write *w = data;
    struct node_http_req *r = w->req;
    if (r != NULL) {
        node_http_req_set_cancel(r, NULL, NULL);
        if (status != 0) {
            node_api_admin_unavailable(r, status);
        } else if (res->status != PROTO_STATUS_OK) {
            char msg[300];
            snprintf(msg, sizeof(msg), "%s: %s", proto_reason_name(res->reason),
                     res->detail);
            node_api_admin_error(
                r, res->reason == PROTO_R_NOT_FOUND ? w->not_found : 409, msg);
        } else {
            node_http_respond_json(r, 200, w->ok_body);
            w->ok_body = NULL;
        }
    }
    json_decref(w->ok_body);
    ovha_free(w);
}

static void node_api_admin_cancel_cb(struct node_http_req *r, void *data)
{
    struct node_api_admin_write *w = data;
    (void)r;
    w->req = NULL; /* the proposal callback still frees w */
}

/* Proposes op and leaves r to the proposal callback, or answers at once
 * when the proposal cannot start. ok_body (stolen) is the 200 answer. The
 * cancel callback is set first so that a callback fired from inside the
 * proposal finds everything in place. */
static void node_api_admin_start(struct node *n,
                                 struct node_http_req *r,
                                 enum node_api_admin_op op,
                                 const struct node_api_admin_args *a,
                                 json_t *ok_body)
{
    const char *actor = node_http_req_subject(r);
    struct node_api_admin_write *w = NULL;
    int rv = -ENOMEM;

    if (ok_body != NULL) {
        w = ovha_calloc(1, sizeof(*w));
    }
    if (w == NULL) {
        json_decref(ok_body);
        node_api_admin_error(r, 500, "out of memory");
        return;
    }
    w->req = r;
    w->ok_body = ok_body;
    w->not_found = op == NODE_API_ADMIN_POOL_PUT ? 409 : 404;
    node_http_req_set_cancel(r, node_api_admin_cancel_cb, w);
    switch (op) {
    case NODE_API_ADMIN_POOL_PUT:
        rv = node_repl_pool_put(n->repl, a->name, a->cidr, a->ttl_ms, actor,
                                node_api_admin_done_cb, w);
        break;
    case NODE_API_ADMIN_LEASE_RESERVE:
    case NODE_API_ADMIN_LEASE_RELEASE:
        rv = node_repl_lease(n->repl, op == NODE_API_ADMIN_LEASE_RESERVE, a->cn,
                             a->ip, actor, node_api_admin_done_cb, w);
        break;
    case NODE_API_ADMIN_SUBNET_RELEASE:
        rv = node_repl_subnet_release(n->repl, a->cidr, actor,
                                      node_api_admin_done_cb, w);
        break;
    }
    if (rv != 0) {
        /* The callback will not fire: answer now. */
        node_http_req_set_cancel(r, NULL, NULL);
        json_decref(w->ok_body);
        ovha_free(w);
        if (rv == -EINVAL) {
            node_api_admin_error(r, 400, "a value is too long");
        } else {
            node_api_admin_unavailable(r, rv);
        }
    }
}

static void node_api_admin_pool_put(struct node_http_req *r, void *data)
{
    static const char usage[] =
        "body must be {\"name\": \"[A-Za-z0-9_.:-]{1,63}\", \"cidr\": "
        "\"a.b.c.d/prefix\" or IPv6 CIDR with host bits clear and at least "
        "2 host bits, \"lease_ttl_ms\"?: integer 1..1099511627776}";
    struct node *n = data;
    struct node_api_admin_args a = { 0 };
    char cidr[PROTO_ADDR_MAX];
    json_int_t ttl = -1;
    unsigned pfx = 0;
    int fam = 0, rv = -1;
    json_t *j;

    if (!node_api_admin_check(n, r)) {
        return;
    }
    j = node_api_admin_body(r);
    if (j != NULL) {
        rv = json_unpack(j, "{s:s, s:s, s?:I !}", "name", &a.name, "cidr",
                         &a.cidr, "lease_ttl_ms", &ttl);
    }
    if (rv == 0) {
        fam = node_api_admin_cidr(a.cidr, cidr, sizeof(cidr), &pfx);
    }
    /* A pool hands out offsets 2 .. size-2: it needs 2 host bits. */
    if (rv != 0 || !node_api_admin_no_nul(j, "name") ||
        !node_api_admin_no_nul(j, "cidr") || !proto_id_valid(a.name) ||
        fam == 0 || pfx + 2 > (fam == 4 ? 32u : 128u) ||
        (json_object_get(j, "lease_ttl_ms") != NULL &&
         (ttl < 1 || (uint64_t)ttl > NODE_API_ADMIN_MAX_TTL_MS))) {
        json_decref(j);
        node_api_admin_error(r, 400, usage);
        return;
    }
    a.cidr = cidr;
    a.ttl_ms = ttl > 0 ? (uint64_t)ttl : 0; /* 0: the FSM's default */
    LOG_INFO("api", "pool %s = %s put by %s", a.name, cidr,
             node_http_req_subject(r));
    node_api_admin_start(
        n, r, NODE_API_ADMIN_POOL_PUT, &a,
        json_pack(
            "{s:s, s:s, s:o}", "name", a.name, "cidr", cidr, "lease_ttl_ms",
            node_api_admin_uint(a.ttl_ms != 0 ? a.ttl_ms
                                              : FSM_DEFAULT_LEASE_TTL_MS)));
    json_decref(j);
}

static void node_api_admin_lease(struct node_http_req *r,
                                 struct node *n,
                                 bool reserve)
{
    static const char usage[] =
        "body must be {\"cn\": string of 1..255 bytes without control "
        "characters, \"ip\": IPv4 or IPv6 address}";
    struct node_api_admin_args a = { 0 };
    char ip[INET6_ADDRSTRLEN];
    uint8_t bytes[16];
    int rv = -1;
    json_t *j;

    if (!node_api_admin_check(n, r)) {
        return;
    }
    j = node_api_admin_body(r);
    if (j != NULL) {
        rv = json_unpack(j, "{s:s, s:s !}", "cn", &a.cn, "ip", &a.ip);
    }
    if (rv != 0 || !node_api_admin_no_nul(j, "cn") ||
        !node_api_admin_no_nul(j, "ip") || !node_api_admin_cn_ok(a.cn) ||
        node_api_admin_ip(a.ip, bytes, ip, sizeof(ip)) == 0) {
        json_decref(j);
        node_api_admin_error(r, 400, usage);
        return;
    }
    a.ip = ip;
    LOG_INFO("api", "lease %s %s for cn %s by %s",
             reserve ? "reserve" : "release", ip, a.cn,
             node_http_req_subject(r));
    node_api_admin_start(
        n, r,
        reserve ? NODE_API_ADMIN_LEASE_RESERVE : NODE_API_ADMIN_LEASE_RELEASE,
        &a, json_pack("{s:s, s:s}", "cn", a.cn, "ip", ip));
    json_decref(j);
}

static void node_api_admin_lease_reserve(struct node_http_req *r, void *data)
{
    node_api_admin_lease(r, data, true);
}

static void node_api_admin_lease_release(struct node_http_req *r, void *data)
{
    node_api_admin_lease(r, data, false);
}

static void node_api_admin_subnet_release(struct node_http_req *r, void *data)
{
    static const char usage[] =
        "body must be {\"cidr\": IPv4 or IPv6 CIDR with host bits clear}";
    struct node *n = data;
    struct node_api_admin_args a = { 0 };
    char cidr[PROTO_ADDR_MAX];
    unsigned pfx = 0;
    int rv = -1;
    json_t *j;

    if (!node_api_admin_check(n, r)) {
        return;
    }
    j = node_api_admin_body(r);
    if (j != NULL) {
        rv = json_unpack(j, "{s:s !}", "cidr", &a.cidr);
    }
    if (rv != 0 || !node_api_admin_no_nul(j, "cidr") ||
        node_api_admin_cidr(a.cidr, cidr, sizeof(cidr), &pfx) == 0) {
        json_decref(j);
        node_api_admin_error(r, 400, usage);
        return;
    }
    json_decref(j);
    a.cidr = cidr;
    LOG_INFO("api", "subnet %s release by %s", cidr, node_http_req_subject(r));
    node_api_admin_start(n, r, NODE_API_ADMIN_SUBNET_RELEASE, &a,
                         json_pack("{s:s}", "cidr", cidr));
}

/* ---- reads --------------------------------------------------------------- */

/* Answers {key: list} or 500 when the query failed. Steals list. */
static void node_api_admin_list(struct node_http_req *r,
                                const char *key,
                                json_t *list,
                                int rv)
{
    char msg[128];
    if (rv != 0 || list == NULL) {
        json_decref(list);
        snprintf(msg, sizeof(msg), "reading the replicated state: %s",
                 ovha_strerror(rv != 0 ? rv : -ENOMEM));
        node_api_admin_error(r, 500, msg);
        return;
    }
    node_http_respond_json(r, 200, json_pack("{s:o}", key, list));
}

static int node_api_admin_pool_cb(const struct fsm_pool_info *p, void *data)
{
    json_t *o = json_pack(
        "{s:o, s:o, s:i, s:o, s:o, s:o}", "name", node_api_admin_str(p->name),
        "cidr", node_api_admin_str(p->cidr), "family", p->family,
        "lease_ttl_ms", node_api_admin_uint(p->lease_ttl_ms), "size",
        node_api_admin_uint(p->size), "leases", node_api_admin_uint(p->leases));
    return json_array_append_new(data, o) == 0 ? 0 : -ENOMEM;
}

static void node_api_admin_pools(struct node_http_req *r, void *data)
{
    struct node *n = data;
    json_t *list;
    int rv = -ENOMEM;

    if (!node_api_admin_check(n, r)) {
        return;
    }
    list = json_array();
    if (list != NULL) {
        rv = fsm_query_pools(n->fsm, node_api_admin_pool_cb, list);
    }
    node_api_admin_list(r, "pools", list, rv);
}

static int node_api_admin_subnet_cb(const struct fsm_subnet_info *s, void *data)
{
    json_t *o = json_pack("{s:o, s:o}", "cidr", node_api_admin_str(s->cidr),
                          "owner_cn", node_api_admin_str(s->owner_cn));
    return json_array_append_new(data, o) == 0 ? 0 : -ENOMEM;
}

static void node_api_admin_subnets(struct node_http_req *r, void *data)
{
    struct node *n = data;
    const char *cn = node_http_req_query(r, "cn");
    json_t *list;
    int rv = -ENOMEM;

    if (!node_api_admin_check(n, r)) {
        return;
    }
    if (cn != NULL && *cn == '\0') {
        cn = NULL; /* "?cn=" filters nothing */
    }
    list = json_array();
    if (list != NULL) {
        rv = fsm_query_subnets(n->fsm, cn, node_api_admin_subnet_cb, list);
    }
    node_api_admin_list(r, "subnets", list, rv);
}

/* One page of the audit chain. */
struct node_api_admin_page {
    json_t *records;
    size_t limit;
    bool more; /* a record past the page exists */
};

/* Stops the walk (returns 1, not an error code) one record past the page,
 * so that a page costs its own length, not the chain's. */
static int node_api_admin_audit_cb(const struct fsm_audit_record *a, void *data)
{
    struct node_api_admin_page *pg = data;
    char hash[2 * FSM_HASH_LEN + 1], prev[2 * FSM_HASH_LEN + 1];
    if (json_array_size(pg->records) == pg->limit) {
        pg->more = true;
        return 1;
    }
    ovha_hex(a->hash, FSM_HASH_LEN, hash);
    ovha_hex(a->prev_hash, FSM_HASH_LEN, prev);
    json_t *o = json_pack(
        "{s:o, s:o, s:o, s:o, s:o, s:o, s:s, s:s}", "seq",
        node_api_admin_uint(a->seq), "ts_ms", node_api_admin_uint(a->ts),
        "kind", node_api_admin_str(a->kind), "actor",
        node_api_admin_str(a->actor), "subject", node_api_admin_str(a->subject),
        "detail", node_api_admin_str(a->detail), "prev_hash", prev, "hash",
        hash);
    return json_array_append_new(pg->records, o) == 0 ? 0 : -ENOMEM;
}

/* Reads ?key= as an integer in 0..max; absent leaves *v. */
static bool node_api_admin_query_u64(struct node_http_req *r,
                                     const char *key,
                                     uint64_t max,
                                     uint64_t *v)
{
    const char *s = node_http_req_query(r, key);
    return s == NULL || ovha_parse_u64(s, max, v) == 0;
}

static void node_api_admin_audit(struct node_http_req *r, void *data)
{
    struct node *n = data;
    struct node_api_admin_page pg = { 0 };
    uint8_t hash[FSM_HASH_LEN];
    uint64_t after = 0, limit = NODE_API_ADMIN_AUDIT_LIMIT, base = 0, head = 0;
    int rv;

    if (!node_api_admin_check(n, r)) {
        return;
    }
    if (!node_api_admin_query_u64(r, "after", INT64_MAX - 1, &after) ||
        !node_api_admin_query_u64(r, "limit", NODE_API_ADMIN_AUDIT_LIMIT_MAX,
                                  &limit) ||
        limit == 0) {
        node_api_admin_error(r, 400,
                             "query must be ?after=SEQ (an integer >= 0) and "
                             "?limit=N (1..1000, default 100)");
        return;
    }
    rv = fsm_query_audit_base(n->fsm, &base, hash);
    if (rv == 0) {
        rv = fsm_query_chain_head(n->fsm, &head, hash);
    }
    pg.limit = (size_t)limit;
    pg.records = json_array();
    if (rv == 0 && pg.records == NULL) {
        rv = -ENOMEM;
    }
    if (rv == 0) {
        /* after is exclusive; records at or below base were pruned. */
        rv = fsm_query_audit(n->fsm, after + 1, node_api_admin_audit_cb, &pg);
        rv = rv == 1 ? 0 : rv;
    }
    if (rv != 0) {
        json_decref(pg.records);
        node_api_admin_list(r, "records", NULL, rv);
        return;
    }
    node_http_respond_json(
        r, 200,
        json_pack("{s:o, s:o, s:b, s:o}", "base_seq", node_api_admin_uint(base),
                  "head_seq", node_api_admin_uint(head), "more", pg.more,
                  "records", pg.records));
}

/* Verifies the chain kept in the state, from its base to its head. The
 * walk is linear in the kept length and runs on the loop thread. */
static void node_api_admin_audit_verify(struct node_http_req *r, void *data)
{
    struct node *n = data;
    uint8_t hash[FSM_HASH_LEN];
    uint64_t base = 0, head = 0, bad = 0;
    char msg[128];
    int rv;

    if (!node_api_admin_check(n, r)) {
        return;
    }
    rv = fsm_query_audit_base(n->fsm, &base, hash);
    if (rv == 0) {
        rv = fsm_query_chain_head(n->fsm, &head, hash);
    }
    if (rv == 0) {
        rv = fsm_audit_verify(n->fsm, &bad);
    }
    if (rv != 0) {
        snprintf(msg, sizeof(msg), "reading the audit chain: %s",
                 ovha_strerror(rv));
        node_api_admin_error(r, 500, msg);
        return;
    }
    if (bad != 0) {
        snprintf(msg, sizeof(msg),
                 "audit record %llu is missing or does not verify",
                 (unsigned long long)bad);
        node_http_respond_json(
            r, 409,
            json_pack("{s:b, s:o, s:s, s:o, s:o}", "ok", false, "bad_seq",
                      node_api_admin_uint(bad), "error", msg, "base_seq",
                      node_api_admin_uint(base), "head_seq",
                      node_api_admin_uint(head)));
        return;
    }
    node_http_respond_json(r, 200,
                           json_pack("{s:b, s:o, s:o}", "ok", true, "base_seq",
                                     node_api_admin_uint(base), "head_seq",
                                     node_api_admin_uint(head)));
}

int node_api_admin_register(struct node *n)
{
    static const struct {
        const char *method, *path;
        node_http_handler_fn fn;
    } routes[] = {
        { "GET", "/v1/pools", node_api_admin_pools },
        { "PUT", "/v1/pools", node_api_admin_pool_put },
        { "POST", "/v1/leases/reserve", node_api_admin_lease_reserve },
        { "POST", "/v1/leases/release", node_api_admin_lease_release },
        { "GET", "/v1/subnets", node_api_admin_subnets },
        { "POST", "/v1/subnets/release", node_api_admin_subnet_release },
        { "GET", "/v1/audit", node_api_admin_audit },
        { "GET", "/v1/audit/verify", node_api_admin_audit_verify },
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        int rv = node_http_route(n->http, routes[i].method, routes[i].path,
                                 routes[i].fn, n);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}
