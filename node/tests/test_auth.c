/* Tests of node/auth: the tokens file, token lookup and the role table. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "node/auth.h"
#include "node_tests.h"

/* The hash line for a token, as ovhactl token new prints it. */
static void auth_line(const char *name,
                      const char *role,
                      const char *token,
                      char *out,
                      size_t len)
{
    uint8_t h[OVHA_SHA256_LEN];
    char hex[2 * OVHA_SHA256_LEN + 1];
    ovha_sha256(token, strlen(token), h);
    ovha_hex(h, sizeof(h), hex);
    snprintf(out, len, "token %s %s sha256:%s\n", name, role, hex);
}

static void test_auth_parse_and_find(void **state)
{
    (void)state;
    char text[1024], line[200];
    struct node_auth a;
    char err[128] = "";
    const char *tok_v =
        "ovha_1111111111111111111111111111111111111111111111"
        "111111111111111111";
    const char *tok_o =
        "ovha_2222222222222222222222222222222222222222222222"
        "222222222222222222";

    snprintf(text, sizeof(text), "# who may do what\n\n");
    auth_line("alice", "viewer", tok_v, line, sizeof(line));
    strcat(text, line);
    auth_line("bob@ops", "operator", tok_o, line, sizeof(line));
    strcat(text, "   ");
    strcat(text, line);
    strcat(text, "cert ops-1.example admin\r\n");
    assert_int_equal(node_auth_parse(text, &a, err, sizeof(err)), 0);
    assert_int_equal(a.n, 3);

    const struct node_auth_entry *e = node_auth_find_token(&a, tok_v);
    assert_non_null(e);
    assert_string_equal(e->name, "alice");
    assert_int_equal(e->role, NODE_ROLE_VIEWER);
    e = node_auth_find_token(&a, tok_o);
    assert_non_null(e);
    assert_int_equal(e->role, NODE_ROLE_OPERATOR);
    /* A token that differs in its last byte, the empty token, and a cert
     * CN used as a token all find nothing. */
    char almost[80];
    ovha_strlcpy(almost, tok_o, sizeof(almost));
    almost[strlen(almost) - 1] = '3';
    assert_null(node_auth_find_token(&a, almost));
    assert_null(node_auth_find_token(&a, ""));
    assert_null(node_auth_find_token(&a, "ops-1.example"));

    e = node_auth_find_cert(&a, "ops-1.example");
    assert_non_null(e);
    assert_int_equal(e->role, NODE_ROLE_ADMIN);
    assert_null(node_auth_find_cert(&a, "alice")); /* a token, not a cert */
    node_auth_clear(&a);
}

static void test_auth_parse_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *want;
    } cases[] = {
        { "token alice viewer\n",
          "line 1: a token line ends with sha256:<64 hex>" },
        { "# c\ntoken alice viewer sha256:abcd\n",
          "line 2: a token line ends with sha256:<64 hex>" },
        { "token alice root sha256:"
          "0000000000000000000000000000000000000000000000000000000000000000\n",
          "line 1: the role must be viewer, operator or admin" },
        { "token al\"ice viewer sha256:"
          "0000000000000000000000000000000000000000000000000000000000000000\n",
          "line 1: the name must be 1-64 of [A-Za-z0-9._@-]" },
        { "key alice viewer x\n",
          "line 1: the first word must be token or "
          "cert" },
        { "cert ops admin extra\n", "line 1: a cert line has three words" },
        { "token a viewer sha256:"
          "zz00000000000000000000000000000000000000000000000000000000000000\n",
          "line 1: a token line ends with sha256:<64 hex>" },
        { "cert\n",
          "line 1: expected: token NAME ROLE sha256:HEX | cert CN "
          "ROLE" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct node_auth a;
        char err[128] = "";
        int rv = node_auth_parse(cases[i].text, &a, err, sizeof(err));
        if (rv != -EINVAL || strcmp(err, cases[i].want) != 0) {
            fprintf(stderr, "case %zu: rv=%d\n  got:  %s\n  want: %s\n", i, rv,
                    err, cases[i].want);
        }
        assert_int_equal(rv, -EINVAL);
        assert_string_equal(err, cases[i].want);
        assert_int_equal(a.n, 0);
    }
}

/* A tokens file others can read is refused, like an ssh key. */
static void test_auth_load_mode(void **state)
{
    (void)state;
    char path[] = "/tmp/ovha-auth-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "cert ops admin\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    struct node_auth a;
    char err[256] = "";
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(node_auth_load(path, &a, err, sizeof(err)), -EPERM);
    assert_non_null(strstr(err, "chmod 600"));
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(node_auth_load(path, &a, err, sizeof(err)), 0);
    assert_int_equal(a.n, 1);
    node_auth_clear(&a);
    unlink(path);
    assert_int_equal(node_auth_load(path, &a, err, sizeof(err)), -ENOENT);
    assert_int_equal(node_auth_load("", &a, err, sizeof(err)), 0);
    assert_int_equal(a.n, 0);
}

static void test_auth_roles(void **state)
{
    (void)state;
    static const struct {
        const char *method, *path;
        enum node_role role;
        bool write;
    } cases[] = {
        { "GET", "/healthz", NODE_ROLE_OPEN, false },
        { "GET", "/readyz", NODE_ROLE_OPEN, false },
        { "GET", "/metrics", NODE_ROLE_VIEWER, false },
        { "GET", "/v1/sessions", NODE_ROLE_VIEWER, false },
        { "POST", "/v1/policy/firewall/explain", NODE_ROLE_VIEWER, false },
        { "POST", "/v1/sessions/kill", NODE_ROLE_OPERATOR, true },
        { "POST", "/v1/gateways/drain", NODE_ROLE_OPERATOR, true },
        { "POST", "/v1/gateways/standby", NODE_ROLE_OPERATOR, true },
        { "POST", "/v1/leases/reserve", NODE_ROLE_OPERATOR, true },
        { "POST", "/v1/cluster/join", NODE_ROLE_ADMIN, true },
        { "PUT", "/v1/policy/firewall", NODE_ROLE_ADMIN, true },
        { "DELETE", "/v1/policy/firewall", NODE_ROLE_ADMIN, true },
        { "PUT", "/v1/pools", NODE_ROLE_ADMIN, true },
        { "POST", "/v1/subnets/release", NODE_ROLE_ADMIN, true },
        /* Unlisted writes need admin; a read of an odd path viewer. */
        { "PATCH", "/v1/sessions/kill", NODE_ROLE_ADMIN, true },
        { "POST", "/healthz", NODE_ROLE_ADMIN, true },
        { "GET", "/v1/gateways/drain", NODE_ROLE_VIEWER, false },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(node_auth_required(cases[i].method, cases[i].path),
                         cases[i].role);
        assert_int_equal(node_auth_is_write(cases[i].method, cases[i].path),
                         cases[i].write);
    }
    enum node_role r;
    assert_int_equal(node_role_parse("operator", &r), 0);
    assert_int_equal(r, NODE_ROLE_OPERATOR);
    assert_int_equal(node_role_parse("open", &r), -EINVAL);
    assert_string_equal(node_role_name(NODE_ROLE_ADMIN), "admin");
}

int node_test_auth(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auth_parse_and_find),
        cmocka_unit_test(test_auth_parse_errors),
        cmocka_unit_test(test_auth_load_mode),
        cmocka_unit_test(test_auth_roles),
    };
    return cmocka_run_group_tests_name("auth", tests, NULL, NULL);
}
