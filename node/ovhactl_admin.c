/* ovhactl commands of the admin API added with issue 8: readiness,
 * metrics, address pools, lease reservations, client subnets, the audit
 * chain (list and verify), and "token new", which makes an API token
 * locally and needs no node. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "base/base.h"
#include "node/ovhactl.h"

/* ---- readiness and metrics ---------------------------------------------- */

/* GET /readyz answers 503 with the reasons when the node is not ready: a
 * result to print, not a failure to report. */
int ovhactl_cmd_ready(struct ovhactl *ctl, int argc, char **argv)
{
    struct ovhactl_answer a;
    json_t *j, *why, *r;
    char esc[1024];
    size_t i;
    int rv;

    (void)argv;
    if (argc != 0) {
        ovhactl_err("ready takes no arguments");
        return OVHACTL_USAGE;
    }
    rv = ovhactl_http(ctl, "GET", "/readyz", NULL, &a);
    if (rv != 0) {
        return rv;
    }
    j = ovhactl_parse(&a);
    if (a.status != 200 && (a.status != 503 || j == NULL ||
                            !json_is_false(json_object_get(j, "ready")))) {
        rv = ovhactl_fail(ctl, &a);
        goto out;
    }
    if (ctl->json) {
        ovhactl_print_raw(&a);
    } else if (a.status == 200) {
        printf("ready\n");
    } else {
        printf("not ready:\n");
        why = json_object_get(j, "reasons");
        json_array_foreach(why, i, r)
        {
            if (json_is_string(r)) {
                printf("  %s\n", ovhactl_escape(json_string_value(r), false,
                                                esc, sizeof(esc)));
            }
        }
    }
    rv = a.status == 200 ? OVHACTL_OK : OVHACTL_FAILED;
out:
    json_decref(j);
    ovha_buf_free(&a.body);
    return rv;
}

/* GET /metrics is Prometheus text, not JSON: printed as it came, with or
 * without --json. */
int ovhactl_cmd_metrics(struct ovhactl *ctl, int argc, char **argv)
{
    struct ovhactl_answer a;
    int rv;

    (void)argv;
    if (argc != 0) {
        ovhactl_err("metrics takes no arguments");
        return OVHACTL_USAGE;
    }
    rv = ovhactl_http(ctl, "GET", "/metrics", NULL, &a);
    if (rv != 0) {
        return rv;
    }
    if (a.status != 200) {
        rv = ovhactl_fail(ctl, &a);
    } else {
        fwrite(a.body.data != NULL ? a.body.data : "", 1, a.body.len, stdout);
    }
    ovha_buf_free(&a.body);
    return rv;
}

/* ---- pools ----------------------------------------------------------------
 */

static void ovhactl_pool_fill(json_t *p, char **c)
{
    ovhactl_str_field(p, "name", true, c[0], OVHACTL_CELL);
    ovhactl_str_field(p, "cidr", true, c[1], OVHACTL_CELL);
    ovhactl_int_field(p, "size", c[2], OVHACTL_CELL);
    ovhactl_int_field(p, "leases", c[3], OVHACTL_CELL);
    ovhactl_int_field(p, "lease_ttl_ms", c[4], OVHACTL_CELL);
}

int ovhactl_cmd_pools(struct ovhactl *ctl, int argc, char **argv)
{
    static const char *const heads[] = { "NAME", "CIDR", "SIZE", "LEASES",
                                         "LEASE TTL (ms)" };
    struct ovhactl_table t = { .ncols = 5, .heads = heads, .align = "llrrr" };

    (void)argv;
    if (argc != 0) {
        ovhactl_err("pools takes no arguments");
        return OVHACTL_USAGE;
    }
    return ovhactl_list_cmd(ctl, "/v1/pools", "pools", &t, ovhactl_pool_fill);
}

int ovhactl_cmd_pool_put(struct ovhactl *ctl, int argc, char **argv)
{
    char name[512], cidr[512], ttl[24];
    json_t *req, *j = NULL;
    int rv;

    if (argc != 2) {
        ovhactl_err(
            "pool put needs NAME and CIDR (see 'ovhactl pool put --help')");
        return OVHACTL_USAGE;
    }
    req = json_pack("{s:s, s:s}", "name", argv[0], "cidr", argv[1]);
    if (req == NULL) {
        ovhactl_err("NAME and CIDR must be valid UTF-8");
        return OVHACTL_USAGE;
    }
    if (ctl->ttl_ms >= 0 &&
        json_object_set_new(req, "lease_ttl_ms",
                            json_integer((json_int_t)ctl->ttl_ms)) != 0) {
        json_decref(req);
        ovhactl_err("out of memory");
        return OVHACTL_FAILED;
    }
    rv = ovhactl_send(ctl, "PUT", "/v1/pools", req, &j);
    if (rv == 0 && !ctl->json) {
        ovhactl_str_field(j, "name", true, name, sizeof(name));
        ovhactl_str_field(j, "cidr", true, cidr, sizeof(cidr));
        ovhactl_int_field(j, "lease_ttl_ms", ttl, sizeof(ttl));
        printf("pool %s: %s, lease ttl %s ms\n", name, cidr, ttl);
    }
    json_decref(j);
    return rv;
}

/* ---- leases and subnets ---------------------------------------------------
 */

/* lease reserve|release CN IP. */
static int ovhactl_lease_change(struct ovhactl *ctl,
                                int argc,
                                char **argv,
                                bool reserve)
{
    const char *verb = reserve ? "reserve" : "release";
    char cn[OVHACTL_CELL], ip[512], path[64];
    json_t *req, *j = NULL;
    int rv;

    if (argc != 2) {
        ovhactl_err("lease %s needs CN and IP (see 'ovhactl lease %s --help')",
                    verb, verb);
        return OVHACTL_USAGE;
    }
    req = json_pack("{s:s, s:s}", "cn", argv[0], "ip", argv[1]);
    if (req == NULL) {
        ovhactl_err("CN and IP must be valid UTF-8");
        return OVHACTL_USAGE;
    }
    snprintf(path, sizeof(path), "/v1/leases/%s", verb);
    rv = ovhactl_post(ctl, path, req, &j);
    if (rv == 0 && !ctl->json) {
        ovhactl_escape(argv[0], true, cn, sizeof(cn));
        ovhactl_escape(argv[1], true, ip, sizeof(ip));
        if (reserve) {
            printf("%s reserved for %s\n", ip, cn);
        } else {
            printf("%s released from %s\n", ip, cn);
        }
    }
    json_decref(j);
    return rv;
}

int ovhactl_cmd_lease_reserve(struct ovhactl *ctl, int argc, char **argv)
{
    return ovhactl_lease_change(ctl, argc, argv, true);
}

int ovhactl_cmd_lease_release(struct ovhactl *ctl, int argc, char **argv)
{
    return ovhactl_lease_change(ctl, argc, argv, false);
}

static void ovhactl_subnet_fill(json_t *s, char **c)
{
    ovhactl_str_field(s, "cidr", true, c[0], OVHACTL_CELL);
    ovhactl_str_field(s, "owner_cn", true, c[1], OVHACTL_CELL);
}

int ovhactl_cmd_subnets(struct ovhactl *ctl, int argc, char **argv)
{
    static const char *const heads[] = { "CIDR", "OWNER CN" };
    struct ovhactl_table t = { .ncols = 2, .heads = heads, .align = "ll" };
    char path[1200] = "/v1/subnets";

    if (argc > 1) {
        ovhactl_err("subnets takes at most one CN");
        return OVHACTL_USAGE;
    }
    if (argc == 1 && ovhactl_query(path, sizeof(path), "cn", argv[0]) != 0) {
        ovhactl_err("CN too long");
        return OVHACTL_USAGE;
    }
    return ovhactl_list_cmd(ctl, path, "subnets", &t, ovhactl_subnet_fill);
}

int ovhactl_cmd_subnet_release(struct ovhactl *ctl, int argc, char **argv)
{
    char cidr[512];
    json_t *req, *j = NULL;
    int rv;

    if (argc != 1) {
        ovhactl_err("subnet release needs exactly one CIDR");
        return OVHACTL_USAGE;
    }
    req = json_pack("{s:s}", "cidr", argv[0]);
    if (req == NULL) {
        ovhactl_err("CIDR must be valid UTF-8");
        return OVHACTL_USAGE;
    }
    rv = ovhactl_post(ctl, "/v1/subnets/release", req, &j);
    if (rv == 0 && !ctl->json) {
        printf("subnet %s released\n",
               ovhactl_escape(argv[0], true, cidr, sizeof(cidr)));
    }
    json_decref(j);
    return rv;
}

/* ---- audit ------------------------------------------------------------------
 */

static void ovhactl_audit_fill(json_t *a, char **c)
{
    ovhactl_int_field(a, "seq", c[0], OVHACTL_CELL);
    ovhactl_ms_field(a, "ts_ms", c[1], OVHACTL_CELL);
    ovhactl_str_field(a, "kind", true, c[2], OVHACTL_CELL);
    ovhactl_str_field(a, "actor", true, c[3], OVHACTL_CELL);
    ovhactl_str_field(a, "subject", true, c[4], OVHACTL_CELL);
    ovhactl_str_field(a, "detail", true, c[5], OVHACTL_CELL);
}

/* After the table: where the next page starts, when there is one. */
static void ovhactl_audit_footer(json_t *j)
{
    json_t *list = json_object_get(j, "records");
    json_t *last = json_array_get(list, json_array_size(list) - 1);
    json_int_t head = json_integer_value(json_object_get(j, "head_seq"));
    json_int_t seq = json_integer_value(json_object_get(last, "seq"));
    json_t *more = json_object_get(j, "more");

    /* "more" says so; an older node only gives head_seq to compare. */
    if (last != NULL &&
        (json_is_boolean(more) ? json_is_true(more) : seq < head)) {
        printf("(more records up to seq %" JSON_INTEGER_FORMAT
               ": ovhactl audit --after %" JSON_INTEGER_FORMAT ")\n",
               head, seq);
    }
}

int ovhactl_cmd_audit(struct ovhactl *ctl, int argc, char **argv)
{
    static const char *const heads[] = { "SEQ",   "TIME",    "KIND",
                                         "ACTOR", "SUBJECT", "DETAIL" };
    struct ovhactl_table t = { .ncols = 6, .heads = heads, .align = "rlllll" };
    char path[128] = "/v1/audit", num[24];
    json_t *j = NULL, *list, *item;
    char buf[6][OVHACTL_CELL];
    char *cols[6];
    size_t i;
    int rv;

    if (argc != 0) {
        char esc[256];
        ovhactl_err(
            "unknown audit subcommand %s (audit [--after SEQ] [--limit N], "
            "audit head, audit verify)",
            ovhactl_escape(argv[0], true, esc, sizeof(esc)));
        return OVHACTL_USAGE;
    }
    if (ctl->after >= 0) {
        snprintf(num, sizeof(num), "%" PRId64, ctl->after);
        ovhactl_query(path, sizeof(path), "after", num);
    }
    if (ctl->limit >= 0) {
        snprintf(num, sizeof(num), "%" PRId64, ctl->limit);
        ovhactl_query(path, sizeof(path), "limit", num);
    }
    rv = ovhactl_call(ctl, "GET", path, NULL, &j);
    if (rv != 0 || ctl->json) {
        json_decref(j);
        return rv;
    }
    list = ovhactl_list(j, "records");
    if (list == NULL) {
        json_decref(j);
        return OVHACTL_UNREACHABLE;
    }
    for (i = 0; i < 6; i++) {
        cols[i] = buf[i];
    }
    json_array_foreach(list, i, item)
    {
        ovhactl_audit_fill(item, cols);
        if (ovhactl_table_add(&t, (const char *const *)cols) != 0) {
            ovhactl_table_free(&t);
            json_decref(j);
            ovhactl_err("out of memory");
            return OVHACTL_FAILED;
        }
    }
    ovhactl_table_print(&t);
    ovhactl_table_free(&t);
    ovhactl_audit_footer(j);
    json_decref(j);
    return OVHACTL_OK;
}

/* GET /v1/audit/verify answers 409 {"ok": false, "bad_seq", "error"} for a
 * broken chain: a verdict to print (exit 1), unlike other 409s. */
int ovhactl_cmd_audit_verify(struct ovhactl *ctl, int argc, char **argv)
{
    struct ovhactl_answer a;
    char base[24], head[24], bad[24], why[1024];
    json_t *j;
    bool verdict;
    int rv;

    (void)argv;
    if (argc != 0) {
        ovhactl_err("audit verify takes no arguments");
        return OVHACTL_USAGE;
    }
    rv = ovhactl_http(ctl, "GET", "/v1/audit/verify", NULL, &a);
    if (rv != 0) {
        return rv;
    }
    j = ovhactl_parse(&a);
    verdict = j != NULL && json_is_boolean(json_object_get(j, "ok")) &&
              (a.status == 200 || a.status == 409);
    if (!verdict) {
        rv = a.status >= 200 && a.status <= 299 ? OVHACTL_UNREACHABLE
                                                : ovhactl_fail(ctl, &a);
        if (rv == OVHACTL_UNREACHABLE) {
            ovhactl_err(
                "the node's answer to GET /v1/audit/verify is "
                "malformed");
        }
        goto out;
    }
    rv = json_is_true(json_object_get(j, "ok")) ? OVHACTL_OK : OVHACTL_FAILED;
    if (ctl->json) {
        ovhactl_print_raw(&a);
    } else if (rv == OVHACTL_OK) {
        ovhactl_int_field(j, "base_seq", base, sizeof(base));
        ovhactl_int_field(j, "head_seq", head, sizeof(head));
        printf("audit chain verified: seq %s .. %s\n", base, head);
    } else {
        ovhactl_int_field(j, "bad_seq", bad, sizeof(bad));
        ovhactl_str_field(j, "error", false, why, sizeof(why));
        printf("audit chain BROKEN at seq %s: %s\n", bad, why);
    }
out:
    json_decref(j);
    ovha_buf_free(&a.body);
    return rv;
}

/* ---- token new ---------------------------------------------------------- */

#define OVHACTL_TOKEN_BYTES  32
#define OVHACTL_TOKEN_PREFIX "ovha_"

/* [A-Za-z0-9._@-]{1,64}: a word the tokens file and the audit chain can
 * carry without quoting. */
static bool ovhactl_subject_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '@' ||
              c == '-')) {
            return false;
        }
    }
    return true;
}

static bool ovhactl_api_role_ok(const char *role)
{
    return strcmp(role, "viewer") == 0 || strcmp(role, "operator") == 0 ||
           strcmp(role, "admin") == 0;
}

/* Fills p with n bytes from the kernel's CSPRNG (blocks only before the
 * pool is first initialised, never afterwards). */
static int ovhactl_random(uint8_t *p, size_t n)
{
    size_t got = 0;
    for (int tries = 0; got < n && tries < 100; tries++) {
        ssize_t r = getrandom(p + got, n - got, 0);
        if (r < 0 && errno != EINTR) {
            return -errno;
        }
        if (r > 0) {
            got += (size_t)r;
        }
    }
    return got == n ? 0 : -EIO;
}

int ovhactl_cmd_token_new(struct ovhactl *ctl, int argc, char **argv)
{
    uint8_t raw[OVHACTL_TOKEN_BYTES], digest[OVHA_SHA256_LEN];
    char token[sizeof(OVHACTL_TOKEN_PREFIX) + 2 * OVHACTL_TOKEN_BYTES];
    char hash[2 * OVHA_SHA256_LEN + 1];
    char esc[512];
    int rv;

    if (argc != 2) {
        ovhactl_err(
            "token new needs SUBJECT and ROLE (see 'ovhactl token new "
            "--help')");
        return OVHACTL_USAGE;
    }
    if (!ovhactl_subject_ok(argv[0])) {
        ovhactl_err("SUBJECT %s must be 1 to 64 of A-Z a-z 0-9 . _ @ -",
                    ovhactl_escape(argv[0], true, esc, sizeof(esc)));
        return OVHACTL_USAGE;
    }
    if (!ovhactl_api_role_ok(argv[1])) {
        ovhactl_err("ROLE must be viewer, operator or admin, not %s",
                    ovhactl_escape(argv[1], true, esc, sizeof(esc)));
        return OVHACTL_USAGE;
    }
    rv = ovhactl_random(raw, sizeof(raw));
    if (rv != 0) {
        ovhactl_err("getrandom: %s", strerror(-rv));
        return OVHACTL_FAILED;
    }
    memcpy(token, OVHACTL_TOKEN_PREFIX, strlen(OVHACTL_TOKEN_PREFIX));
    ovha_hex(raw, sizeof(raw), token + strlen(OVHACTL_TOKEN_PREFIX));
    /* The server stores and compares SHA-256 of the token text. */
    ovha_sha256(token, strlen(token), digest);
    ovha_hex(digest, sizeof(digest), hash);
    if (ctl->json) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "token", token, "subject",
                              argv[0], "role", argv[1], "sha256", hash);
        char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
        if (s != NULL) {
            printf("%s\n", s);
            explicit_bzero(s, strlen(s));
        }
        free(s);
        json_decref(o); /* jansson's copy of the token is not wiped */
        rv = s != NULL ? OVHACTL_OK : OVHACTL_FAILED;
    } else {
        printf("%s\ntoken %s %s sha256:%s\n", token, argv[0], argv[1], hash);
    }
    explicit_bzero(raw, sizeof(raw));
    explicit_bzero(token, sizeof(token));
    return rv;
}
