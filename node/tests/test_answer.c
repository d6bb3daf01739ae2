/* node/answer: the request body (parsed back with jansson), the strict
 * answer parser (each rejection class, boundaries, no value in errors, a
 * bounded mutation loop) and the mapping of an answer to a grant. */
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/base.h"
#include "node/answer.h"
#include "node_tests.h"

/* A string that only appears in bad values: an error text that contains
 * it leaked a value. */
#define MARK "Zq9xK"

static const char node_test_answer_full[] =
    "{\"decision\":\"allow\",\"reason\":\"staff, contract 1142\","
    "\"groups\":[\"staff\",\"ops.eu-1\"],\"ip\":\"100.64.0.10\","
    "\"routes\":[\"100.64.100.0/24\",\"2001:db8::/32\",\"0.0.0.0/0\"],"
    "\"iroutes\":[\"100.96.1.0/24\"],"
    "\"quota\":{\"bytes\":100000000000,\"period\":\"month\"},"
    "\"bandwidth\":{\"down_kbps\":50000,\"up_kbps\":10000},"
    "\"max_sessions\":2,\"on_excess\":\"evict_oldest\",\"ttl_s\":300}";

static int node_test_answer_parse_str(const char *s,
                                      struct node_answer *a,
                                      char *err,
                                      size_t errlen)
{
    return node_answer_parse(s, strlen(s), a, err, errlen);
}

/* ---- request ------------------------------------------------------------- */

struct node_test_answer_req {
    struct ovha_buf buf;
    json_t *root;
};

/* Builds the request, parses it back and checks the members every request
 * has. */
static void node_test_answer_build(const struct node_decision_req *req,
                                   struct node_test_answer_req *t)
{
    json_error_t jerr;
    ovha_buf_init(&t->buf);
    assert_int_equal(
        node_answer_request_json(req, "gw-1.a_b", "gw1-7-1:ab", &t->buf), 0);
    assert_int_equal(strlen(t->buf.data), t->buf.len);
    assert_null(strchr(t->buf.data, '\n')); /* compact */
    t->root =
        json_loadb(t->buf.data, t->buf.len, JSON_REJECT_DUPLICATES, &jerr);
    assert_non_null(t->root);
    assert_true(json_is_object(t->root));
    assert_string_equal(json_string_value(json_object_get(t->root, "gateway")),
                        "gw-1.a_b");
    assert_string_equal(
        json_string_value(json_object_get(t->root, "request_id")),
        "gw1-7-1:ab");
    assert_true(json_is_object(json_object_get(t->root, "peer_info")));
    json_t *ra = json_object_get(t->root, "real_address");
    assert_true(json_is_object(ra));
    assert_int_equal(json_object_size(ra), 2);
    assert_true(json_is_string(json_object_get(ra, "ip")));
    assert_true(json_is_integer(json_object_get(ra, "port")));
}

static void node_test_answer_done(struct node_test_answer_req *t)
{
    json_decref(t->root);
    ovha_buf_free(&t->buf);
}

static void node_test_answer_request_members(void **state)
{
    (void)state;
    char longname[80];
    char v255[256];
    char v256[257];
    memset(v255, 'v', 255);
    v255[255] = '\0';
    memset(v256, 'w', 256);
    v256[256] = '\0';
    /* IV_ + 62 chars = 65 bytes: one over the contract's name limit. */
    snprintf(longname, sizeof(longname), "IV_%062d", 0);
    const struct mgmt_env_var vars[] = {
        { "IV_VER", "2.6.14" },
        { "common_name", "alice" }, /* not IV_/UV_ */
        { "UV_TEAM", "blue" },
        { "iv_lower", "x" },           /* case matters */
        { "IV_", "x" },                /* empty suffix */
        { "IV_BAD-NAME", "x" },        /* '-' not allowed in names */
        { "IV_UTF", "caf\xc3\xa9" },   /* valid UTF-8: kept */
        { "IV_LATIN1", "caf\xe9" },    /* invalid UTF-8: skipped */
        { "IV_OVERLONG", "\xc0\xaf" }, /* overlong: skipped */
        { "IV_CTRL", "a\tb" },         /* control char: skipped */
        { longname, "x" },             /* name too long: skipped */
        { "IV_V255", v255 },           /* 255 bytes: kept */
        { "IV_V256", v256 },           /* 256 bytes: skipped */
        { "IV_VER", "9.9" },           /* repeated: first one wins */
        { "UV_EMPTY", "" },            /* empty value: kept */
        { "password", "secret" },
    };
    const struct mgmt_env env = { vars, sizeof(vars) / sizeof(vars[0]) };
    struct node_decision_req req = {
        .cn = "alice",
        .username = "alice-user",
        .real_ip = "198.18.0.11",
        .real_port = "51000",
        .password = "correct horse",
        .env = &env,
    };
    struct node_test_answer_req t;
    node_test_answer_build(&req, &t);
    assert_int_equal(json_object_size(t.root), 7);
    assert_string_equal(json_string_value(json_object_get(t.root, "cn")),
                        "alice");
    assert_string_equal(json_string_value(json_object_get(t.root, "username")),
                        "alice-user");
    assert_string_equal(json_string_value(json_object_get(t.root, "password")),
                        "correct horse");
    json_t *ra = json_object_get(t.root, "real_address");
    assert_string_equal(json_string_value(json_object_get(ra, "ip")),
                        "198.18.0.11");
    assert_int_equal(json_integer_value(json_object_get(ra, "port")), 51000);
    json_t *pi = json_object_get(t.root, "peer_info");
    assert_int_equal(json_object_size(pi), 5);
    assert_string_equal(json_string_value(json_object_get(pi, "IV_VER")),
                        "2.6.14");
    assert_string_equal(json_string_value(json_object_get(pi, "UV_TEAM")),
                        "blue");
    assert_string_equal(json_string_value(json_object_get(pi, "IV_UTF")),
                        "caf\xc3\xa9");
    assert_string_equal(json_string_value(json_object_get(pi, "IV_V255")),
                        v255);
    assert_string_equal(json_string_value(json_object_get(pi, "UV_EMPTY")), "");
    node_test_answer_done(&t);
}

static void node_test_answer_request_optional(void **state)
{
    (void)state;
    struct node_test_answer_req t;
    /* No username (""), no password (NULL), no env. */
    struct node_decision_req req = {
        .cn = "bob",
        .username = "",
        .real_ip = "2001:db8::5",
        .real_port = "",
        .password = NULL,
        .env = NULL,
    };
    node_test_answer_build(&req, &t);
    assert_int_equal(json_object_size(t.root), 5);
    assert_null(json_object_get(t.root, "username"));
    assert_null(json_object_get(t.root, "password"));
    assert_int_equal(json_object_size(json_object_get(t.root, "peer_info")), 0);
    json_t *ra = json_object_get(t.root, "real_address");
    assert_string_equal(json_string_value(json_object_get(ra, "ip")),
                        "2001:db8::5");
    assert_int_equal(json_integer_value(json_object_get(ra, "port")), 0);
    node_test_answer_done(&t);

    /* NULL username is absent too; an empty password is present. */
    req.username = NULL;
    req.password = "";
    node_test_answer_build(&req, &t);
    assert_null(json_object_get(t.root, "username"));
    assert_string_equal(json_string_value(json_object_get(t.root, "password")),
                        "");
    node_test_answer_done(&t);
}

static void node_test_answer_request_port(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        long long port;
    } cases[] = {
        { "51000", 51000 }, { "0", 0 },
        { "65535", 65535 }, { "65536", 0 },
        { "", 0 },          { NULL, 0 },
        { "-1", 0 },        { "12a", 0 },
        { " 80", 0 },       { "99999999999999999999", 0 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct node_decision_req req = {
            .cn = "c",
            .username = "",
            .real_ip = "198.18.0.1",
            .real_port = cases[i].in,
        };
        struct node_test_answer_req t;
        node_test_answer_build(&req, &t);
        json_t *ra = json_object_get(t.root, "real_address");
        assert_int_equal(json_integer_value(json_object_get(ra, "port")),
                         cases[i].port);
        node_test_answer_done(&t);
    }
}

static void node_test_answer_request_peer_limit(void **state)
{
    (void)state;
    struct mgmt_env_var vars[80];
    char names[80][16];
    for (size_t i = 0; i < 80; i++) {
        snprintf(names[i], sizeof(names[i]), "IV_N%zu", i);
        vars[i].key = names[i];
        vars[i].value = "x";
    }
    /* A skipped entry does not use up the budget. */
    vars[0].key = "OTHER";
    const struct mgmt_env env = { vars, 80 };
    struct node_decision_req req = {
        .cn = "c",
        .username = "",
        .real_ip = "198.18.0.1",
        .real_port = "1",
        .env = &env,
    };
    struct node_test_answer_req t;
    node_test_answer_build(&req, &t);
    json_t *pi = json_object_get(t.root, "peer_info");
    assert_int_equal(json_object_size(pi), NODE_ANSWER_MAX_PEER);
    assert_null(json_object_get(pi, "OTHER"));
    assert_non_null(json_object_get(pi, "IV_N1"));
    assert_non_null(json_object_get(pi, "IV_N64"));
    assert_null(json_object_get(pi, "IV_N65"));
    node_test_answer_done(&t);
}

static int node_test_answer_req_rc(const char *cn,
                                   const char *username,
                                   const char *password,
                                   const char *real_ip,
                                   const char *gateway,
                                   const char *request_id)
{
    struct ovha_buf b;
    struct node_decision_req req = {
        .cn = cn,
        .username = username,
        .real_ip = real_ip,
        .real_port = "1",
        .password = password,
    };
    ovha_buf_init(&b);
    assert_int_equal(ovha_buf_appends(&b, "prefix"), 0);
    int r = node_answer_request_json(&req, gateway, request_id, &b);
    if (r != 0) {
        /* Nothing appended on failure. */
        assert_int_equal(b.len, 6);
    } else {
        assert_memory_equal(b.data, "prefix{", 7);
    }
    ovha_buf_free(&b);
    return r;
}

static void node_test_answer_request_invalid(void **state)
{
    (void)state;
    char cn255[256];
    char cn256[257];
    char pw4097[4098];
    memset(cn255, 'c', 255);
    cn255[255] = '\0';
    memset(cn256, 'c', 256);
    cn256[256] = '\0';
    memset(pw4097, 'p', 4097);
    pw4097[4097] = '\0';
    const char *ip = "198.18.0.1";

    assert_int_equal(node_test_answer_req_rc("alice", "", NULL, ip, "g", "r"),
                     0);
    assert_int_equal(node_test_answer_req_rc(cn255, "", NULL, ip, "g", "r"), 0);
    assert_int_equal(
        node_test_answer_req_rc("caf\xc3\xa9", "", NULL, ip, "g", "r"), 0);
    /* The CN: invalid UTF-8 (Latin-1, truncated sequence, surrogate),
     * too long, empty, absent. */
    assert_int_equal(node_test_answer_req_rc("caf\xe9", "", NULL, ip, "g", "r"),
                     -EINVAL);
    assert_int_equal(
        node_test_answer_req_rc("ab\xe2\x82", "", NULL, ip, "g", "r"), -EINVAL);
    assert_int_equal(
        node_test_answer_req_rc("\xed\xa0\x80", "", NULL, ip, "g", "r"),
        -EINVAL);
    assert_int_equal(node_test_answer_req_rc(cn256, "", NULL, ip, "g", "r"),
                     -EINVAL);
    assert_int_equal(node_test_answer_req_rc("", "", NULL, ip, "g", "r"),
                     -EINVAL);
    assert_int_equal(node_test_answer_req_rc(NULL, "", NULL, ip, "g", "r"),
                     -EINVAL);
    /* Other fields a conforming upstream would refuse. */
    assert_int_equal(node_test_answer_req_rc("a", "u\xff", NULL, ip, "g", "r"),
                     -EINVAL);
    assert_int_equal(node_test_answer_req_rc("a", cn256, NULL, ip, "g", "r"),
                     -EINVAL);
    assert_int_equal(node_test_answer_req_rc("a", "", pw4097, ip, "g", "r"),
                     -EINVAL);
    assert_int_equal(node_test_answer_req_rc("a", "", "p\x01w", ip, "g", "r"),
                     0);
    assert_int_equal(
        node_test_answer_req_rc("a", "", NULL, "not-an-ip", "g", "r"), -EINVAL);
    assert_int_equal(node_test_answer_req_rc("a", "", NULL, NULL, "g", "r"),
                     -EINVAL);
    assert_int_equal(node_test_answer_req_rc("a", "", NULL, ip, "bad gw", "r"),
                     -EINVAL);
    assert_int_equal(node_test_answer_req_rc("a", "", NULL, ip, "", "r"),
                     -EINVAL);
    assert_int_equal(node_test_answer_req_rc("a", "", NULL, ip, "g", "id/1"),
                     -EINVAL);
    assert_int_equal(node_test_answer_req_rc("a", "", NULL, ip, "g", ""),
                     -EINVAL);
}

/* ---- parse: valid answers ------------------------------------------------ */

static void node_test_answer_parse_full(void **state)
{
    (void)state;
    struct node_answer a;
    char err[128];
    assert_int_equal(
        node_test_answer_parse_str(node_test_answer_full, &a, err, sizeof(err)),
        0);
    assert_string_equal(err, "");
    assert_true(a.allow);
    assert_string_equal(a.reason, "staff, contract 1142");
    assert_string_equal(a.client_reason, "");
    assert_int_equal(a.ngroups, 2);
    assert_string_equal(a.groups[0], "staff");
    assert_string_equal(a.groups[1], "ops.eu-1");
    assert_string_equal(a.ip, "100.64.0.10");
    assert_string_equal(a.pool, "");
    assert_int_equal(a.nroutes, 3);
    assert_string_equal(a.routes[0].addr, "100.64.100.0");
    assert_int_equal(a.routes[0].prefix, 24);
    assert_string_equal(a.routes[1].addr, "2001:db8::");
    assert_int_equal(a.routes[1].prefix, 32);
    assert_string_equal(a.routes[2].addr, "0.0.0.0");
    assert_int_equal(a.routes[2].prefix, 0);
    assert_int_equal(a.niroutes, 1);
    assert_string_equal(a.iroutes[0].addr, "100.96.1.0");
    assert_int_equal(a.iroutes[0].prefix, 24);
    assert_int_equal(a.quota_bytes, 100000000000ULL);
    assert_string_equal(a.quota_period, "month");
    assert_int_equal(a.down_kbps, 50000);
    assert_int_equal(a.up_kbps, 10000);
    assert_int_equal(a.max_sessions, 2);
    assert_int_equal(a.on_excess, NODE_EXCESS_EVICT_OLDEST);
    assert_int_equal(a.ttl_s, 300);

    /* The body need not be NUL-terminated: a prefix of a longer buffer. */
    char buf[sizeof(node_test_answer_full) + 8];
    memcpy(buf, node_test_answer_full, sizeof(node_test_answer_full) - 1);
    memcpy(buf + sizeof(node_test_answer_full) - 1, "garbage!", 8);
    assert_int_equal(node_answer_parse(buf, sizeof(node_test_answer_full) - 1,
                                       &a, err, sizeof(err)),
                     0);
    assert_int_equal(a.ttl_s, 300);
}

static void node_test_answer_parse_boundaries(void **state)
{
    (void)state;
    struct node_answer a;
    char err[128];
    char body[8192];
    char r255[256];
    memset(r255, 'r', 255);
    r255[255] = '\0';

    assert_int_equal(
        node_test_answer_parse_str(
            "{\"ttl_s\":86400,\"decision\":\"allow\",\"pool\":\"p1:a.b-c_d\","
            "\"quota\":{\"period\":\"session\",\"bytes\":9007199254740991},"
            "\"bandwidth\":{\"up_kbps\":100000000},\"max_sessions\":64,"
            "\"on_excess\":\"refuse\",\"reason\":\"caf\\u00e9 \xc3\xa9\","
            "\"routes\":[],\"groups\":[]}",
            &a, err, sizeof(err)),
        0);
    assert_true(a.allow);
    assert_int_equal(a.ttl_s, 86400);
    assert_string_equal(a.pool, "p1:a.b-c_d");
    assert_string_equal(a.ip, "");
    assert_int_equal(a.quota_bytes, 9007199254740991ULL);
    assert_string_equal(a.quota_period, "session");
    assert_int_equal(a.down_kbps, 0);
    assert_int_equal(a.up_kbps, 100000000);
    assert_int_equal(a.max_sessions, 64);
    assert_int_equal(a.on_excess, NODE_EXCESS_REFUSE);
    assert_string_equal(a.reason, "caf\xc3\xa9 \xc3\xa9");
    assert_int_equal(a.nroutes, 0);

    /* Minimal allow: defaults. */
    assert_int_equal(
        node_test_answer_parse_str(
            "{\"decision\":\"allow\",\"ttl_s\":0,\"max_sessions\":1,"
            "\"bandwidth\":{\"down_kbps\":1}}",
            &a, err, sizeof(err)),
        0);
    assert_int_equal(a.on_excess, NODE_EXCESS_DEFAULT);
    assert_int_equal(a.ttl_s, 0);
    assert_int_equal(a.max_sessions, 1);
    assert_int_equal(a.down_kbps, 1);
    assert_int_equal(a.quota_bytes, 0);
    assert_string_equal(a.quota_period, "");

    /* 64 routes, 64 iroutes, 32 groups of 63 bytes, 255-byte reasons. */
    size_t n = (size_t)snprintf(body, sizeof(body),
                                "{\"decision\":\"allow\",\"ttl_s\":1,"
                                "\"reason\":\"%s\",\"client_reason\":\"%s\","
                                "\"routes\":[",
                                r255, r255);
    for (int i = 0; i < 64; i++) {
        n += (size_t)snprintf(body + n, sizeof(body) - n,
                              "%s\"100.64.%d.0/24\"", i ? "," : "", i);
    }
    n += (size_t)snprintf(body + n, sizeof(body) - n, "],\"iroutes\":[");
    for (int i = 0; i < 64; i++) {
        n += (size_t)snprintf(body + n, sizeof(body) - n,
                              "%s\"2001:db8:%x::/48\"", i ? "," : "", i);
    }
    n += (size_t)snprintf(body + n, sizeof(body) - n, "],\"groups\":[");
    for (int i = 0; i < 32; i++) {
        n += (size_t)snprintf(body + n, sizeof(body) - n, "%s\"%063d\"",
                              i ? "," : "", i);
    }
    n += (size_t)snprintf(body + n, sizeof(body) - n, "]}");
    assert_true(n < sizeof(body));
    assert_int_equal(node_answer_parse(body, n, &a, err, sizeof(err)), 0);
    assert_int_equal(a.nroutes, 64);
    assert_string_equal(a.routes[63].addr, "100.64.63.0");
    assert_int_equal(a.niroutes, 64);
    assert_string_equal(a.iroutes[63].addr, "2001:db8:3f::");
    assert_int_equal(a.iroutes[63].prefix, 48);
    assert_int_equal(a.ngroups, 32);
    assert_int_equal(strlen(a.groups[31]), 63);
    assert_string_equal(a.reason, r255);
    assert_string_equal(a.client_reason, r255);
}

static void node_test_answer_parse_deny(void **state)
{
    (void)state;
    struct node_answer a;
    char err[128];
    assert_int_equal(
        node_test_answer_parse_str("{\"decision\":\"deny\",\"ttl_s\":60}", &a,
                                   err, sizeof(err)),
        0);
    assert_false(a.allow);
    assert_int_equal(a.ttl_s, 60);
    assert_string_equal(a.reason, "");
    assert_string_equal(a.client_reason, "");

    /* Grant members of a deny are validated, then dropped. */
    assert_int_equal(
        node_test_answer_parse_str(
            "{\"decision\":\"deny\",\"ttl_s\":5,\"reason\":\"ended\","
            "\"client_reason\":\"access revoked\",\"ip\":\"100.64.0.9\","
            "\"routes\":[\"100.64.1.0/24\"],\"groups\":[\"g\"],"
            "\"quota\":{\"bytes\":5,\"period\":\"day\"},\"max_sessions\":3,"
            "\"on_excess\":\"refuse\",\"bandwidth\":{\"up_kbps\":5}}",
            &a, err, sizeof(err)),
        0);
    assert_false(a.allow);
    assert_string_equal(a.reason, "ended");
    assert_string_equal(a.client_reason, "access revoked");
    assert_int_equal(a.ttl_s, 5);
    assert_string_equal(a.ip, "");
    assert_int_equal(a.nroutes, 0);
    assert_int_equal(a.ngroups, 0);
    assert_int_equal(a.quota_bytes, 0);
    assert_int_equal(a.max_sessions, 0);
    assert_int_equal(a.on_excess, NODE_EXCESS_DEFAULT);
    assert_int_equal(a.up_kbps, 0);

    assert_int_equal(
        node_test_answer_parse_str("{\"decision\":\"deny\",\"ttl_s\":5,"
                                   "\"routes\":[\"100.64.1.1/24\"]}",
                                   &a, err, sizeof(err)),
        OVHA_EPROTO);
    assert_string_equal(err, "routes[0]: host bits set");
}

/* ---- parse: rejections --------------------------------------------------- */

struct node_test_answer_bad {
    const char *body;
    const char *err; /* exact text */
};

#define OK_HEAD "{\"decision\":\"allow\",\"ttl_s\":1,"

static const struct node_test_answer_bad node_test_answer_bads[] = {
    { "garbage " MARK, "not JSON" },
    { "", "not JSON" },
    { "{\"decision\":\"allow\",\"ttl_s\":1", "not JSON" },
    { "{\"decision\":\"allow\",\"ttl_s\":1} " MARK, "not JSON" },
    { "\"" MARK "\"", "not JSON" },
    { "5", "not JSON" },
    { "{\"decision\":\"allow\",\"ttl_s\":1,\"reason\":\"\xff" MARK "\"}",
      "not JSON" },
    { "[\"" MARK "\"]", "not an object" },
    { "[]", "not an object" },
    { "{}", "decision: missing" },
    { "{\"ttl_s\":5}", "decision: missing" },
    { "{\"decision\":\"allow\"}", "ttl_s: missing" },
    { "{\"decision\":\"deny\",\"reason\":\"" MARK "\"}", "ttl_s: missing" },
    { "{\"decision\":true,\"ttl_s\":5}", "decision: not a string" },
    { "{\"decision\":null,\"ttl_s\":5}", "decision: not a string" },
    { "{\"decision\":\"" MARK "\",\"ttl_s\":5}",
      "decision: not allow or deny" },
    { "{\"decision\":\"Allow\",\"ttl_s\":5}", "decision: not allow or deny" },
    { "{\"decision\":\"allow\",\"ttl_s\":-1}", "ttl_s: out of range" },
    { "{\"decision\":\"allow\",\"ttl_s\":86401}", "ttl_s: out of range" },
    { "{\"decision\":\"allow\",\"ttl_s\":5.0}", "ttl_s: not an integer" },
    { "{\"decision\":\"allow\",\"ttl_s\":1e2}", "ttl_s: not an integer" },
    { "{\"decision\":\"allow\",\"ttl_s\":true}", "ttl_s: not an integer" },
    { "{\"decision\":\"allow\",\"ttl_s\":\"5\"}", "ttl_s: not an integer" },
    { "{\"decision\":\"allow\",\"ttl_s\":99999999999999999999999}",
      "not JSON" },
    { OK_HEAD "\"" MARK "\":1}", "unknown member" },
    { OK_HEAD "\"route\":[\"100.64.0.0/24\"]}", "unknown member" },
    { "{\"decision\":\"allow\",\"decision\":\"deny\",\"ttl_s\":1}",
      "duplicate member" },
    { OK_HEAD "\"ip\":\"100.64.0.9\",\"pool\":\"p\"}", "ip and pool together" },
    { OK_HEAD "\"ip\":\"" MARK "\"}", "ip: not an IPv4 address" },
    { OK_HEAD "\"ip\":\"100.64.0.256\"}", "ip: not an IPv4 address" },
    { OK_HEAD "\"ip\":\"100.64.0.010\"}", "ip: not an IPv4 address" },
    { OK_HEAD "\"ip\":\"100.64.0\"}", "ip: not an IPv4 address" },
    { OK_HEAD "\"ip\":\"::1\"}", "ip: not an IPv4 address" },
    { OK_HEAD "\"ip\":\"100.64.0.9 \"}", "ip: not an IPv4 address" },
    { OK_HEAD "\"ip\":\"100.64.100.100." MARK "\"}", "ip: bad length" },
    { OK_HEAD "\"ip\":\"\"}", "ip: bad length" },
    { OK_HEAD "\"ip\":1684275209}", "ip: not a string" },
    { OK_HEAD "\"pool\":\"" MARK " p\"}", "pool: not a name" },
    { OK_HEAD "\"pool\":\"\"}", "pool: bad length" },
    { OK_HEAD "\"routes\":[\"" MARK "/24\"]}", "routes[0]: not a CIDR" },
    { OK_HEAD "\"routes\":[\"100.64.1.0\"]}", "routes[0]: not a CIDR" },
    { OK_HEAD "\"routes\":[\"100.64.1.0/33\"]}", "routes[0]: not a CIDR" },
    { OK_HEAD "\"routes\":[\"100.64.1.0/024\"]}", "routes[0]: not a CIDR" },
    { OK_HEAD "\"routes\":[\"100.64.1.0/\"]}", "routes[0]: not a CIDR" },
    { OK_HEAD "\"routes\":[\"100.64.1.0/2x\"]}", "routes[0]: not a CIDR" },
    { OK_HEAD "\"routes\":[\"100.64.1.0/24/1\"]}", "routes[0]: not a CIDR" },
    { OK_HEAD "\"routes\":[\"100.64.1.0/255.255.255.0\"]}",
      "routes[0]: not a CIDR" },
    { OK_HEAD "\"routes\":[\"2001:db8::/129\"]}", "routes[0]: not a CIDR" },
    { OK_HEAD "\"routes\":[\"fe80::%eth0/64\"]}", "routes[0]: not a CIDR" },
    { OK_HEAD "\"routes\":[\"100.64.1.0/24\",\"100.64.1.1/24\"]}",
      "routes[1]: host bits set" },
    { OK_HEAD "\"routes\":[\"100.64.1.128/24\"]}", "routes[0]: host bits set" },
    { OK_HEAD "\"routes\":[\"100.64.1.0/0\"]}", "routes[0]: host bits set" },
    { OK_HEAD "\"routes\":[\"2001:db8::1/64\"]}", "routes[0]: host bits set" },
    { OK_HEAD "\"routes\":[\"2001:db8:0:1::/63\"]}",
      "routes[0]: host bits set" },
    { OK_HEAD "\"routes\":[\"100.64.1.0/24\",\"100.64.1.0/24\"]}",
      "routes[1]: duplicate item" },
    { OK_HEAD "\"routes\":[\"2001:db8::/32\",\"2001:0db8::/32\"]}",
      "routes[1]: duplicate item" },
    { OK_HEAD "\"routes\":\"100.64.1.0/24\"}", "routes: not an array" },
    { OK_HEAD "\"routes\":[null]}", "routes[0]: not a string" },
    { OK_HEAD "\"iroutes\":[5]}", "iroutes[0]: not a string" },
    { OK_HEAD "\"iroutes\":[\"100.96.1.1/24\"]}", "iroutes[0]: host bits set" },
    { OK_HEAD "\"iroutes\":[\"100.96.1.0/24\",\"100.96.1.0/24\"]}",
      "iroutes[1]: duplicate item" },
    { OK_HEAD "\"groups\":[\"a\",\"a\"]}", "groups[1]: duplicate item" },
    { OK_HEAD "\"groups\":[\"" MARK " x\"]}", "groups[0]: not a name" },
    { OK_HEAD "\"groups\":[\"a:b\"]}", "groups[0]: not a name" },
    { OK_HEAD "\"groups\":[\"\"]}", "groups[0]: bad length" },
    { OK_HEAD "\"groups\":[1]}", "groups[0]: not a string" },
    { OK_HEAD "\"groups\":\"staff\"}", "groups: not an array" },
    { OK_HEAD "\"quota\":{\"bytes\":1,\"period\":\"" MARK "\"}}",
      "quota.period: not session|day|week|month" },
    { OK_HEAD "\"quota\":{\"bytes\":1,\"period\":5}}",
      "quota.period: not a string" },
    { OK_HEAD "\"quota\":{\"bytes\":0,\"period\":\"day\"}}",
      "quota.bytes: out of range" },
    { OK_HEAD "\"quota\":{\"bytes\":9007199254740992,\"period\":\"day\"}}",
      "quota.bytes: out of range" },
    { OK_HEAD "\"quota\":{\"bytes\":-5,\"period\":\"day\"}}",
      "quota.bytes: out of range" },
    { OK_HEAD "\"quota\":{\"bytes\":1.5,\"period\":\"day\"}}",
      "quota.bytes: not an integer" },
    { OK_HEAD "\"quota\":{\"period\":\"day\"}}", "quota.bytes: missing" },
    { OK_HEAD "\"quota\":{\"bytes\":5}}", "quota.period: missing" },
    { OK_HEAD "\"quota\":{\"bytes\":5,\"period\":\"day\",\"x\":1}}",
      "quota: unknown member" },
    { OK_HEAD "\"quota\":[5]}", "quota: not an object" },
    { OK_HEAD "\"bandwidth\":{}}", "bandwidth: needs down_kbps or up_kbps" },
    { OK_HEAD "\"bandwidth\":{\"down_kbps\":0}}",
      "bandwidth.down_kbps: out of range" },
    { OK_HEAD "\"bandwidth\":{\"up_kbps\":100000001}}",
      "bandwidth.up_kbps: out of range" },
    { OK_HEAD "\"bandwidth\":{\"up_kbps\":true}}",
      "bandwidth.up_kbps: not an integer" },
    { OK_HEAD "\"bandwidth\":{\"up_kbps\":5,\"" MARK "\":1}}",
      "bandwidth: unknown member" },
    { OK_HEAD "\"bandwidth\":5}", "bandwidth: not an object" },
    { OK_HEAD "\"max_sessions\":0}", "max_sessions: out of range" },
    { OK_HEAD "\"max_sessions\":65}", "max_sessions: out of range" },
    { OK_HEAD "\"max_sessions\":\"2\"}", "max_sessions: not an integer" },
    { OK_HEAD "\"max_sessions\":2.0}", "max_sessions: not an integer" },
    { OK_HEAD "\"on_excess\":\"" MARK "\"}",
      "on_excess: not evict_oldest or refuse" },
    { OK_HEAD "\"on_excess\":1}", "on_excess: not a string" },
    { OK_HEAD "\"reason\":\"" MARK "\\u0001\"}",
      "reason: contains control characters" },
    { OK_HEAD "\"reason\":\"" MARK "\\n\"}",
      "reason: contains control characters" },
    { OK_HEAD "\"client_reason\":\"" MARK "\\u007f\"}",
      "client_reason: contains control characters" },
    { OK_HEAD "\"client_reason\":[]}", "client_reason: not a string" },
    { OK_HEAD "\"reason\":\"" MARK "\\u0000x\"}", "string with NUL" },
    { OK_HEAD "\"decision\":\"deny\"}", "duplicate member" },
};

static void node_test_answer_expect_bad(const char *body,
                                        size_t len,
                                        const char *want)
{
    struct node_answer a;
    struct node_answer before;
    char err[128];
    memset(&a, 0xA5, sizeof(a));
    memcpy(&before, &a, sizeof(a));
    memset(err, 'E', sizeof(err));
    int r = node_answer_parse(body, len, &a, err, sizeof(err));
    if (r != OVHA_EPROTO || strcmp(err, want) != 0) {
        fail_msg("body %.200s: r=%d err '%.100s', want '%s'", body, r,
                 r == OVHA_EPROTO ? err : "", want);
    }
    assert_null(strstr(err, MARK));
    /* ret is written only on success. */
    assert_memory_equal(&a, &before, sizeof(a));
}

static void node_test_answer_parse_rejects(void **state)
{
    (void)state;
    size_t n = sizeof(node_test_answer_bads) / sizeof(node_test_answer_bads[0]);
    for (size_t i = 0; i < n; i++) {
        const struct node_test_answer_bad *b = &node_test_answer_bads[i];
        node_test_answer_expect_bad(b->body, strlen(b->body), b->err);
    }
}

/* Bodies built at run time: counts and lengths one over the limits, a raw
 * NUL byte. */
static void node_test_answer_parse_rejects_built(void **state)
{
    (void)state;
    char body[8192];
    char mark256[257];
    size_t n;
    memset(mark256, 'x', 256);
    memcpy(mark256, MARK, strlen(MARK));
    mark256[256] = '\0';

    n = (size_t)snprintf(body, sizeof(body), OK_HEAD "\"routes\":[");
    for (int i = 0; i < 65; i++) {
        n += (size_t)snprintf(body + n, sizeof(body) - n,
                              "%s\"100.64.%d.0/24\"", i ? "," : "", i);
    }
    n += (size_t)snprintf(body + n, sizeof(body) - n, "]}");
    node_test_answer_expect_bad(body, n, "routes: too many items");

    n = (size_t)snprintf(body, sizeof(body), OK_HEAD "\"iroutes\":[");
    for (int i = 0; i < 65; i++) {
        n += (size_t)snprintf(body + n, sizeof(body) - n,
                              "%s\"100.96.%d.0/24\"", i ? "," : "", i);
    }
    n += (size_t)snprintf(body + n, sizeof(body) - n, "]}");
    node_test_answer_expect_bad(body, n, "iroutes: too many items");

    n = (size_t)snprintf(body, sizeof(body), OK_HEAD "\"groups\":[");
    for (int i = 0; i < 33; i++) {
        n += (size_t)snprintf(body + n, sizeof(body) - n, "%s\"g%d\"",
                              i ? "," : "", i);
    }
    n += (size_t)snprintf(body + n, sizeof(body) - n, "]}");
    node_test_answer_expect_bad(body, n, "groups: too many items");

    n = (size_t)snprintf(body, sizeof(body), OK_HEAD "\"groups\":[\"%064d\"]}",
                         7);
    node_test_answer_expect_bad(body, n, "groups[0]: bad length");

    n = (size_t)snprintf(body, sizeof(body), OK_HEAD "\"pool\":\"%064d\"}", 7);
    node_test_answer_expect_bad(body, n, "pool: bad length");

    n = (size_t)snprintf(body, sizeof(body), OK_HEAD "\"reason\":\"%s\"}",
                         mark256);
    node_test_answer_expect_bad(body, n, "reason: bad length");

    /* 255 bytes but 128 characters: lengths are UTF-8 bytes. */
    n = (size_t)snprintf(body, sizeof(body), OK_HEAD "\"client_reason\":\"");
    for (int i = 0; i < 128; i++) {
        n += (size_t)snprintf(body + n, sizeof(body) - n, "\xc3\xa9");
    }
    n += (size_t)snprintf(body + n, sizeof(body) - n, "\"}");
    node_test_answer_expect_bad(body, n, "client_reason: bad length");

    /* A raw NUL byte inside a string, and one after the object. */
    static const char rawnul[] = OK_HEAD "\"reason\":\"a\0b\"}";
    node_test_answer_expect_bad(rawnul, sizeof(rawnul) - 1, "not JSON");
    static const char trailnul[] = "{\"decision\":\"deny\",\"ttl_s\":1}\0";
    node_test_answer_expect_bad(trailnul, sizeof(trailnul) - 1, "not JSON");
}

static void node_test_answer_parse_errbuf(void **state)
{
    (void)state;
    struct node_answer a;
    char small[8];
    const char *bad = OK_HEAD "\"max_sessions\":65}";
    assert_int_equal(node_answer_parse(bad, strlen(bad), &a, NULL, 0),
                     OVHA_EPROTO);
    assert_int_equal(node_answer_parse(bad, strlen(bad), &a, small, 0),
                     OVHA_EPROTO);
    assert_int_equal(
        node_answer_parse(bad, strlen(bad), &a, small, sizeof(small)),
        OVHA_EPROTO);
    assert_string_equal(small, "max_ses");
    assert_int_equal(node_answer_parse(NULL, 0, &a, small, sizeof(small)),
                     OVHA_EPROTO);
    assert_string_equal(small, "not JSO");
}

/* Random byte flips, deletions, insertions and truncations of a valid
 * answer (fixed seed): never a crash, always 0 or OVHA_EPROTO, and an
 * accepted answer still satisfies the contract's invariants. */
static uint32_t node_test_answer_rand(uint32_t *s)
{
    /* xorshift32: deterministic and independent of libc. */
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static void node_test_answer_parse_mutations(void **state)
{
    (void)state;
    static const char interesting[] = "{}[]\",:0123456789-.eE\\ntfu/ \x01\xff";
    const size_t base = sizeof(node_test_answer_full) - 1;
    char buf[sizeof(node_test_answer_full) + 16];
    uint32_t seed = 0x2545F491u;
    unsigned ok = 0;
    unsigned bad = 0;
    for (int iter = 0; iter < 2000; iter++) {
        size_t len = base;
        memcpy(buf, node_test_answer_full, base);
        unsigned nmut = 1 + node_test_answer_rand(&seed) % 3;
        for (unsigned m = 0; m < nmut && len > 0; m++) {
            size_t pos = node_test_answer_rand(&seed) % len;
            switch (node_test_answer_rand(&seed) % 5) {
            case 0: /* flip one bit */
                buf[pos] ^= (char)(1u << (node_test_answer_rand(&seed) % 8));
                break;
            case 1: /* replace with a random byte */
                buf[pos] = (char)(node_test_answer_rand(&seed) & 0xFF);
                break;
            case 2: /* replace with a JSON-significant byte */
                buf[pos] = interesting[node_test_answer_rand(&seed) %
                                       (sizeof(interesting) - 1)];
                break;
            case 3: /* delete one byte */
                memmove(buf + pos, buf + pos + 1, len - pos - 1);
                len--;
                break;
            default: /* truncate */
                len = pos;
                break;
            }
        }
        struct node_answer a;
        char err[64];
        int r = node_answer_parse(buf, len, &a, err, sizeof(err));
        assert_true(r == 0 || r == OVHA_EPROTO);
        if (r != 0) {
            assert_true(strlen(err) > 0 && strlen(err) < sizeof(err));
            bad++;
            continue;
        }
        ok++;
        assert_true(a.ttl_s <= 86400);
        assert_true(a.nroutes <= NODE_ANSWER_MAX_NETS);
        assert_true(a.niroutes <= NODE_ANSWER_MAX_NETS);
        assert_true(a.ngroups <= NODE_ANSWER_MAX_GROUPS);
        assert_true(a.max_sessions <= 64);
        assert_true(a.ip[0] == '\0' || a.pool[0] == '\0');
        assert_true(strlen(a.reason) <= 255);
        assert_true(a.quota_bytes < (1ULL << 53));
        assert_true(a.down_kbps <= 100000000 && a.up_kbps <= 100000000);
    }
    /* The loop exercised both outcomes. */
    print_message("mutations: %u accepted, %u rejected\n", ok, bad);
    assert_int_equal(ok + bad, 2000);
    assert_true(bad > 1000);
    assert_true(ok > 0);
}

/* ---- answer → grant ------------------------------------------------------ */

static void node_test_answer_grant_of(const char *body,
                                      const struct node_cfg_net *tunnel,
                                      struct node_grant *g)
{
    struct node_answer a;
    char err[128];
    assert_int_equal(node_test_answer_parse_str(body, &a, err, sizeof(err)), 0);
    memset(g, 0x5A, sizeof(*g));
    node_answer_to_grant(&a, tunnel, "upstream", g);
}

static void node_test_answer_grant_full(void **state)
{
    (void)state;
    static const char *const src = "upstream";
    const struct node_cfg_net tun = { "100.64.0.0", 24, false };
    struct node_answer a;
    struct node_grant g;
    char err[128];
    assert_int_equal(
        node_test_answer_parse_str(node_test_answer_full, &a, err, sizeof(err)),
        0);
    memset(&g, 0x5A, sizeof(g));
    node_answer_to_grant(&a, &tun, src, &g);
    assert_true(g.d.allow);
    assert_string_equal(g.d.reason, "staff, contract 1142");
    assert_string_equal(g.d.client_reason, "");
    assert_string_equal(g.d.ip, "100.64.0.10");
    assert_string_equal(g.d.netmask, "255.255.255.0");
    assert_int_equal(g.d.nroutes, 3);
    assert_string_equal(g.d.routes[1].addr, "2001:db8::");
    assert_int_equal(g.d.routes[1].prefix, 32);
    assert_int_equal(g.d.niroutes, 1);
    assert_string_equal(g.d.iroutes[0].addr, "100.96.1.0");
    assert_int_equal(g.d.npush, 0);
    assert_int_equal(g.d.session_id, 0);
    assert_string_equal(g.pool, "");
    assert_int_equal(g.max_sessions, 2);
    assert_int_equal(g.on_excess, NODE_EXCESS_EVICT_OLDEST);
    assert_int_equal(g.quota_bytes, 100000000000ULL);
    assert_string_equal(g.quota_period, "month");
    assert_int_equal(g.down_kbps, 50000);
    assert_int_equal(g.up_kbps, 10000);
    assert_ptr_equal(g.source, src);

    /* A pool, no ip; another prefix. */
    const struct node_cfg_net tun20 = { "100.64.16.0", 20, false };
    node_test_answer_grant_of(OK_HEAD "\"pool\":\"blue\"}", &tun20, &g);
    assert_true(g.d.allow);
    assert_string_equal(g.d.ip, "");
    assert_string_equal(g.pool, "blue");
    assert_string_equal(g.d.netmask, "255.255.240.0");
    assert_string_equal(g.d.reason, "");
    assert_int_equal(g.d.nroutes, 0);
    assert_int_equal(g.on_excess, NODE_EXCESS_DEFAULT);
    assert_string_equal(g.source, "upstream");
}

static void node_test_answer_grant_static_ip(void **state)
{
    (void)state;
    static const struct {
        const char *ip;
        bool ok;
    } cases[] = {
        { "100.64.0.2", true },    { "100.64.0.10", true },
        { "100.64.0.254", true },  { "100.64.0.0", false }, /* network */
        { "100.64.0.255", false },                          /* broadcast */
        { "100.64.0.1", false },                            /* the server */
        { "100.64.1.10", false },  { "100.63.255.254", false },
        { "198.18.0.10", false },
    };
    /* The tunnel's address need not be the network address itself. */
    const struct node_cfg_net tun = { "100.64.0.1", 24, false };
    char body[256];
    struct node_grant g;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(body, sizeof(body),
                 OK_HEAD
                 "\"ip\":\"%s\",\"routes\":[\"100.64.9.0/24\"],"
                 "\"max_sessions\":3,\"reason\":\"r\"}",
                 cases[i].ip);
        node_test_answer_grant_of(body, &tun, &g);
        assert_int_equal(g.d.allow, cases[i].ok);
        assert_string_equal(g.source, "upstream");
        if (cases[i].ok) {
            assert_string_equal(g.d.ip, cases[i].ip);
            assert_int_equal(g.d.nroutes, 1);
            assert_int_equal(g.max_sessions, 3);
            assert_string_equal(g.d.netmask, "255.255.255.0");
            continue;
        }
        assert_string_equal(
            g.d.reason,
            "upstream grant invalid: ip outside the tunnel network");
        assert_string_equal(g.d.client_reason, "Access denied");
        /* Nothing of the refused grant remains. */
        assert_string_equal(g.d.ip, "");
        assert_int_equal(g.d.nroutes, 0);
        assert_int_equal(g.max_sessions, 0);
    }

    /* An IPv6 tunnel (or none) cannot hold a static IPv4. */
    const struct node_cfg_net tun6 = { "2001:db8::", 64, true };
    node_test_answer_grant_of(OK_HEAD "\"ip\":\"100.64.0.10\"}", &tun6, &g);
    assert_false(g.d.allow);
    node_test_answer_grant_of(OK_HEAD "\"ip\":\"100.64.0.10\"}", NULL, &g);
    assert_false(g.d.allow);
    node_test_answer_grant_of(OK_HEAD "\"pool\":\"p\"}", NULL, &g);
    assert_true(g.d.allow);
    assert_string_equal(g.d.netmask, "");
}

static void node_test_answer_grant_deny(void **state)
{
    (void)state;
    const struct node_cfg_net tun = { "100.64.0.0", 24, false };
    struct node_grant g;
    node_test_answer_grant_of("{\"decision\":\"deny\",\"ttl_s\":0}", &tun, &g);
    assert_false(g.d.allow);
    assert_string_equal(g.d.reason, "denied by upstream");
    assert_string_equal(g.d.client_reason, "Access denied");
    assert_string_equal(g.d.netmask, "");
    assert_string_equal(g.source, "upstream");

    node_test_answer_grant_of(
        "{\"decision\":\"deny\",\"ttl_s\":0,\"reason\":\"contract ended\","
        "\"client_reason\":\"access revoked\",\"ip\":\"100.64.0.10\","
        "\"max_sessions\":4}",
        &tun, &g);
    assert_false(g.d.allow);
    assert_string_equal(g.d.reason, "contract ended");
    assert_string_equal(g.d.client_reason, "access revoked");
    assert_string_equal(g.d.ip, "");
    assert_int_equal(g.max_sessions, 0);

    node_test_answer_grant_of(
        "{\"decision\":\"deny\",\"ttl_s\":0,\"client_reason\":\"go away\"}",
        &tun, &g);
    assert_string_equal(g.d.reason, "denied by upstream");
    assert_string_equal(g.d.client_reason, "go away");
}

int node_test_answer(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(node_test_answer_request_members),
        cmocka_unit_test(node_test_answer_request_optional),
        cmocka_unit_test(node_test_answer_request_port),
        cmocka_unit_test(node_test_answer_request_peer_limit),
        cmocka_unit_test(node_test_answer_request_invalid),
        cmocka_unit_test(node_test_answer_parse_full),
        cmocka_unit_test(node_test_answer_parse_boundaries),
        cmocka_unit_test(node_test_answer_parse_deny),
        cmocka_unit_test(node_test_answer_parse_rejects),
        cmocka_unit_test(node_test_answer_parse_rejects_built),
        cmocka_unit_test(node_test_answer_parse_errbuf),
        cmocka_unit_test(node_test_answer_parse_mutations),
        cmocka_unit_test(node_test_answer_grant_full),
        cmocka_unit_test(node_test_answer_grant_static_ip),
        cmocka_unit_test(node_test_answer_grant_deny),
    };
    return cmocka_run_group_tests_name("node_answer", tests, NULL, NULL);
}
