/* Command builders: exact output, and refusal of every hostile value with
 * the buffer left exactly as it was. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mgmt/tests/mgmt_test.h"
#include "mgmt/tests/tests.h"

#define PREFIX "earlier command\n"

static void buf_prefilled(struct ovha_buf *b)
{
    ovha_buf_init(b);
    ovha_buf_appends(b, PREFIX);
}

static void assert_unchanged(const struct ovha_buf *b)
{
    assert_int_equal(b->len, strlen(PREFIX));
    assert_memory_equal(b->data, PREFIX, strlen(PREFIX) + 1);
}

/* The text appended after PREFIX. */
static const char *added(const struct ovha_buf *b)
{
    return b->data + strlen(PREFIX);
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++) {
        n += *s == '\n';
    }
    return n;
}

static void test_simple_commands(void **state)
{
    (void)state;
    struct ovha_buf b;
    ovha_buf_init(&b);
    assert_int_equal(mgmt_cmd_client_auth_nt(&b, 3, 1), 0);
    assert_int_equal(
        mgmt_cmd_client_deny(&b, 0, 3, "denied", "Access denied by policy"), 0);
    assert_int_equal(mgmt_cmd_client_deny(&b, 1, 2, "r", NULL), 0);
    assert_int_equal(mgmt_cmd_client_kill(&b, 7, NULL), 0);
    assert_int_equal(mgmt_cmd_client_kill(&b, 7, "HALT"), 0);
    assert_int_equal(
        mgmt_cmd_client_pending_auth(&b, 4, 2, "CR_TEXT:R,E:Enter code", 30),
        0);
    assert_int_equal(mgmt_cmd_bytecount(&b, 5), 0);
    assert_int_equal(mgmt_cmd_status(&b, 3), 0);
    assert_int_equal(mgmt_cmd_status(&b, 0), 0);
    assert_int_equal(mgmt_cmd_hold_release(&b), 0);
    assert_int_equal(mgmt_cmd_env_filter(&b, 0), 0);
    assert_int_equal(mgmt_cmd_signal(&b, "SIGUSR1"), 0);
    assert_int_equal(mgmt_cmd_version(&b, 0), 0);
    assert_int_equal(mgmt_cmd_version(&b, 4), 0);
    assert_int_equal(mgmt_cmd_toggle(&b, "state", true), 0);
    assert_int_equal(mgmt_cmd_toggle(&b, "log", false), 0);
    assert_string_equal(
        b.data,
        "client-auth-nt 3 1\n"
        "client-deny 0 3 \"denied\" \"Access denied by policy\"\n"
        "client-deny 1 2 \"r\"\n"
        "client-kill 7\n"
        "client-kill 7 HALT\n"
        "client-pending-auth 4 2 \"CR_TEXT:R,E:Enter code\" 30\n"
        "bytecount 5\n"
        "status 3\n"
        "status\n"
        "hold release\n"
        "env-filter 0\n"
        "signal SIGUSR1\n"
        "version\n"
        "version 4\n"
        "state on\n"
        "log off\n");
    ovha_buf_free(&b);
}

static void test_invalid_simple_args(void **state)
{
    (void)state;
    struct ovha_buf b;
    buf_prefilled(&b);
    assert_int_equal(mgmt_cmd_signal(&b, "SIGKILL"), -EINVAL);
    assert_int_equal(mgmt_cmd_signal(&b, "SIGHUP\nexit"), -EINVAL);
    assert_int_equal(mgmt_cmd_signal(&b, NULL), -EINVAL);
    assert_int_equal(mgmt_cmd_status(&b, 4), -EINVAL);
    assert_int_equal(mgmt_cmd_toggle(&b, "echo all", true), -EINVAL);
    assert_int_equal(mgmt_cmd_toggle(&b, "state\n", true), -EINVAL);
    assert_unchanged(&b);
    ovha_buf_free(&b);
}

static void test_client_auth_full(void **state)
{
    (void)state;
    struct mgmt_net routes[] = { { "100.64.100.0", 24 }, { "fd00:100::", 64 } };
    struct mgmt_net iroutes[] = { { "100.96.1.0", 24 },
                                  { "fd00:96:1::", 48 },
                                  { "100.96.2.0", 0 } };
    const char *push[] = { "dhcp-option DNS 100.64.0.1", "redirect-gateway" };
    struct mgmt_client_config cfg = {
        .ifconfig_local = "100.64.0.50",
        .ifconfig_netmask = "255.255.255.0",
        .ifconfig6 = "fd00::50/64",
        .routes = routes,
        .nroutes = 2,
        .iroutes = iroutes,
        .niroutes = 3,
        .push = push,
        .npush = 2,
    };
    struct ovha_buf b;
    buf_prefilled(&b);
    assert_int_equal(mgmt_cmd_client_auth(&b, 12, 3, &cfg), 0);
    assert_string_equal(added(&b),
                        "client-auth 12 3\n"
                        "ifconfig-push 100.64.0.50 255.255.255.0\n"
                        "ifconfig-ipv6-push fd00::50/64\n"
                        "push \"route 100.64.100.0 255.255.255.0\"\n"
                        "push \"route-ipv6 fd00:100::/64\"\n"
                        "iroute 100.96.1.0 255.255.255.0\n"
                        "iroute-ipv6 fd00:96:1::/48\n"
                        "iroute 100.96.2.0 0.0.0.0\n"
                        "push \"dhcp-option DNS 100.64.0.1\"\n"
                        "push \"redirect-gateway\"\n"
                        "END\n");
    ovha_buf_reset(&b);
    assert_int_equal(mgmt_cmd_client_auth(&b, 1, 2, NULL), 0);
    assert_string_equal(b.data, "client-auth 1 2\nEND\n");
    struct mgmt_client_config empty = { 0 };
    ovha_buf_reset(&b);
    assert_int_equal(mgmt_cmd_client_auth(&b, 1, 2, &empty), 0);
    assert_string_equal(b.data, "client-auth 1 2\nEND\n");
    ovha_buf_free(&b);
}

static void test_prefix_masks(void **state)
{
    (void)state;
    static const struct {
        unsigned prefix;
        const char *mask;
    } cases[] = { { 32, "255.255.255.255" },
                  { 30, "255.255.255.252" },
                  { 17, "255.255.128.0" },
                  { 8, "255.0.0.0" },
                  { 1, "128.0.0.0" } };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mgmt_net r = { "100.64.0.0", cases[i].prefix };
        struct mgmt_client_config cfg = { .iroutes = &r, .niroutes = 1 };
        struct ovha_buf b;
        ovha_buf_init(&b);
        assert_int_equal(mgmt_cmd_client_auth(&b, 0, 1, &cfg), 0);
        char want[128];
        snprintf(want, sizeof(want),
                 "client-auth 0 1\niroute 100.64.0.0 %s\nEND\n", cases[i].mask);
        assert_string_equal(b.data, want);
        ovha_buf_free(&b);
    }
}

static const char *const hostile[] = {
    "a\nclient-kill 0",
    "a\rb",
    "a\"b",
    "a\\b",
    "a\x01z",
    "a\x1b[0m",
    "a\x7f",
    "\n",
    "tab\there",
    "x\"\nEND\nclient-auth 9 9",
    "\"",
    "end\\",
};

static void test_hostile_quoted_fields(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
        const char *h = hostile[i];
        struct ovha_buf b;
        buf_prefilled(&b);
        assert_int_equal(mgmt_check_quoted(h, 255), OVHA_EINJECT);
        assert_int_equal(mgmt_cmd_client_deny(&b, 1, 1, h, NULL), OVHA_EINJECT);
        assert_int_equal(mgmt_cmd_client_deny(&b, 1, 1, "ok", h), OVHA_EINJECT);
        assert_int_equal(mgmt_cmd_client_kill(&b, 1, h), OVHA_EINJECT);
        assert_int_equal(mgmt_cmd_client_pending_auth(&b, 1, 1, h, 30),
                         OVHA_EINJECT);
        const char *push[] = { "ok", h };
        struct mgmt_client_config cfg = { .push = push, .npush = 2 };
        assert_int_equal(mgmt_cmd_client_auth(&b, 1, 1, &cfg), OVHA_EINJECT);
        assert_unchanged(&b);
        ovha_buf_free(&b);
    }
}

static void test_hostile_tokens_and_push(void **state)
{
    (void)state;
    struct ovha_buf b;
    buf_prefilled(&b);
    /* Unquoted: white space, quotes, comments, empty. */
    static const char *const bad_tok[] = { "HALT now", "'HALT'", "#x",
                                           ";x",       "",       "a'b" };
    for (size_t i = 0; i < sizeof(bad_tok) / sizeof(bad_tok[0]); i++) {
        assert_int_equal(mgmt_cmd_client_kill(&b, 1, bad_tok[i]), OVHA_EINJECT);
    }
    /* Inside quotes these are plain characters. */
    assert_int_equal(mgmt_check_quoted("o'name #1; ok", 255), 0);
    /* A comma would become a second option in PUSH_REPLY. */
    const char *push[] = { "dhcp-option DNS 100.64.0.1,route 0.0.0.0 0.0.0.0" };
    struct mgmt_client_config cfg = { .push = push, .npush = 1 };
    assert_int_equal(mgmt_cmd_client_auth(&b, 1, 1, &cfg), OVHA_EINJECT);
    assert_unchanged(&b);
    assert_int_equal(mgmt_cmd_client_kill(&b, 1, "[P]RESTART"), 0);
    assert_string_equal(added(&b), "client-kill 1 [P]RESTART\n");
    ovha_buf_free(&b);
}

static void test_hostile_addresses(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "100.64.0.1\npush \"x\"",
        "100.64.0.1 255.0.0.0",
        "100.64.0.256",
        "100.64.0",
        "::g",
        "",
        "100.64.0.1/24",
        "100.64.0.1\"",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct ovha_buf b;
        buf_prefilled(&b);
        struct mgmt_net n = { .prefix = 24 };
        ovha_strlcpy(n.addr, bad[i], sizeof(n.addr));
        struct mgmt_client_config c1 = { .routes = &n, .nroutes = 1 };
        assert_int_equal(mgmt_cmd_client_auth(&b, 1, 1, &c1), -EINVAL);
        struct mgmt_client_config c2 = { .iroutes = &n, .niroutes = 1 };
        assert_int_equal(mgmt_cmd_client_auth(&b, 1, 1, &c2), -EINVAL);
        struct mgmt_client_config c3 = { .ifconfig_netmask = "255.255.255.0" };
        ovha_strlcpy(c3.ifconfig_local, bad[i], sizeof(c3.ifconfig_local));
        if (bad[i][0] != '\0') {
            assert_int_equal(mgmt_cmd_client_auth(&b, 1, 1, &c3), -EINVAL);
        }
        struct mgmt_client_config c4 = { 0 };
        snprintf(c4.ifconfig6, sizeof(c4.ifconfig6), "%s/64", bad[i]);
        assert_int_equal(mgmt_cmd_client_auth(&b, 1, 1, &c4), -EINVAL);
        assert_unchanged(&b);
        ovha_buf_free(&b);
    }
    struct ovha_buf b;
    buf_prefilled(&b);
    struct mgmt_net big4 = { "100.64.0.0", 33 };
    struct mgmt_client_config c = { .routes = &big4, .nroutes = 1 };
    assert_int_equal(mgmt_cmd_client_auth(&b, 1, 1, &c), -EINVAL);
    struct mgmt_net big6 = { "fd00::", 129 };
    c.routes = &big6;
    assert_int_equal(mgmt_cmd_client_auth(&b, 1, 1, &c), -EINVAL);
    struct mgmt_client_config badmask = { .ifconfig_local = "100.64.0.5",
                                          .ifconfig_netmask = "255.0.255.0" };
    assert_int_equal(mgmt_cmd_client_auth(&b, 1, 1, &badmask), -EINVAL);
    struct mgmt_client_config nomask = { .ifconfig_local = "100.64.0.5" };
    assert_int_equal(mgmt_cmd_client_auth(&b, 1, 1, &nomask), -EINVAL);
    struct mgmt_client_config maskonly = { .ifconfig_netmask =
                                               "255.255.255.0" };
    assert_int_equal(mgmt_cmd_client_auth(&b, 1, 1, &maskonly), -EINVAL);
    struct mgmt_client_config v6bits = { .ifconfig6 = "fd00::1/129" };
    assert_int_equal(mgmt_cmd_client_auth(&b, 1, 1, &v6bits), -EINVAL);
    struct mgmt_client_config v6none = { .ifconfig6 = "fd00::1" };
    assert_int_equal(mgmt_cmd_client_auth(&b, 1, 1, &v6none), -EINVAL);
    /* An address without its terminating NUL. */
    struct mgmt_net unterminated;
    memset(unterminated.addr, '1', sizeof(unterminated.addr));
    unterminated.prefix = 8;
    c.routes = &unterminated;
    assert_int_equal(mgmt_cmd_client_auth(&b, 1, 1, &c), -EINVAL);
    struct mgmt_client_config nullroutes = { .nroutes = 1 };
    assert_int_equal(mgmt_cmd_client_auth(&b, 1, 1, &nullroutes), -EINVAL);
    assert_unchanged(&b);
    ovha_buf_free(&b);
}

static void test_limits(void **state)
{
    (void)state;
    char s255[256], s256[257];
    memset(s255, 'a', 255);
    s255[255] = '\0';
    memset(s256, 'a', 256);
    s256[256] = '\0';
    struct ovha_buf b;
    buf_prefilled(&b);
    assert_int_equal(mgmt_cmd_client_deny(&b, 1, 1, s256, NULL), OVHA_ELIMIT);
    assert_int_equal(mgmt_cmd_client_deny(&b, 1, 1, "x", s256), OVHA_ELIMIT);
    assert_int_equal(mgmt_cmd_client_kill(&b, 1, s256), OVHA_ELIMIT);
    assert_int_equal(mgmt_cmd_client_pending_auth(&b, 1, 1, s256, 1),
                     OVHA_ELIMIT);
    /* 'push "' + 248 + '"' = 255 bytes fits, 249 does not. */
    char p248[249], p249[250];
    memset(p248, 'p', 248);
    p248[248] = '\0';
    memset(p249, 'p', 249);
    p249[249] = '\0';
    const char *push_bad[] = { p249 };
    struct mgmt_client_config c = { .push = push_bad, .npush = 1 };
    assert_int_equal(mgmt_cmd_client_auth(&b, 1, 1, &c), OVHA_ELIMIT);
    struct mgmt_net many[MGMT_MAX_ROUTES + 1];
    for (size_t i = 0; i < MGMT_MAX_ROUTES + 1; i++) {
        snprintf(many[i].addr, sizeof(many[i].addr), "100.64.%zu.0", i % 250);
        many[i].prefix = 24;
    }
    struct mgmt_client_config cr = { .routes = many,
                                     .nroutes = MGMT_MAX_ROUTES + 1 };
    assert_int_equal(mgmt_cmd_client_auth(&b, 1, 1, &cr), OVHA_ELIMIT);
    struct mgmt_client_config ci = { .iroutes = many,
                                     .niroutes = MGMT_MAX_ROUTES + 1 };
    assert_int_equal(mgmt_cmd_client_auth(&b, 1, 1, &ci), OVHA_ELIMIT);
    const char *pushes[MGMT_MAX_PUSH_OPTS + 1];
    for (size_t i = 0; i < MGMT_MAX_PUSH_OPTS + 1; i++) {
        pushes[i] = "x";
    }
    struct mgmt_client_config cp = { .push = pushes,
                                     .npush = MGMT_MAX_PUSH_OPTS + 1 };
    assert_int_equal(mgmt_cmd_client_auth(&b, 1, 1, &cp), OVHA_ELIMIT);
    assert_unchanged(&b);

    /* The boundaries themselves are accepted. */
    assert_int_equal(mgmt_cmd_client_deny(&b, 1, 1, s255, s255), 0);
    const char *push_ok[] = { p248 };
    c.push = push_ok;
    assert_int_equal(mgmt_cmd_client_auth(&b, 1, 1, &c), 0);
    cr.nroutes = MGMT_MAX_ROUTES;
    assert_int_equal(mgmt_cmd_client_auth(&b, 1, 1, &cr), 0);
    ovha_buf_free(&b);
}

/* Random bytes in every free-text field: whatever is accepted yields
 * exactly the expected number of lines, so no second line can appear. */
static void test_random_values_never_add_lines(void **state)
{
    (void)state;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    size_t accepted = 0;
    for (int iter = 0; iter < 20000; iter++) {
        char v[40];
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t len = x % sizeof(v);
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            /* Mostly printable, sometimes anything but NUL. */
            v[i] = (char)((x & 3) ? 0x20 + (x >> 8) % 95 : 1 + (x >> 8) % 255);
        }
        v[len] = '\0';
        struct ovha_buf b;
        ovha_buf_init(&b);
        if (mgmt_cmd_client_deny(&b, 1, 1, v, v) == 0) {
            accepted++;
            assert_int_equal(count_lines(b.data), 1);
            assert_null(strchr(b.data, '\r'));
        }
        ovha_buf_reset(&b);
        const char *push[] = { v };
        struct mgmt_client_config cfg = { .push = push, .npush = 1 };
        if (mgmt_cmd_client_auth(&b, 1, 1, &cfg) == 0) {
            assert_int_equal(count_lines(b.data), 3);
            /* The value sits inside exactly one pair of quotes. */
            const char *l = strchr(b.data, '\n') + 1;
            size_t q = 0;
            for (const char *s = l; *s != '\n'; s++) {
                q += *s == '"';
            }
            assert_int_equal(q, 2);
        }
        ovha_buf_reset(&b);
        if (mgmt_cmd_client_kill(&b, 1, v) == 0) {
            assert_int_equal(count_lines(b.data), 1);
            assert_null(strchr(b.data + 14, ' '));
        }
        ovha_buf_free(&b);
    }
    assert_true(accepted > 1000);
}

static void test_cmd_oom_leaves_buffer(void **state)
{
    (void)state;
    struct ovha_buf b;
    ovha_buf_init(&b);
    ovha_alloc_fail_after(0);
    assert_int_equal(mgmt_cmd_client_auth(&b, 1, 1, NULL), -ENOMEM);
    assert_int_equal(mgmt_cmd_hold_release(&b), -ENOMEM);
    ovha_alloc_fail_after(-1);
    assert_int_equal(b.len, 0);
    /* Growth in the middle of a block: the first line fits, END does not. */
    ovha_buf_appends(&b, "x");
    size_t cap = b.cap;
    char fill[128];
    memset(fill, 'f', sizeof(fill));
    fill[cap - 1 - 1 - 17 - 1] = '\0'; /* leave room for 17 bytes only */
    ovha_buf_appends(&b, fill);
    size_t len = b.len;
    assert_int_equal(b.cap, cap);
    ovha_alloc_fail_after(0);
    int rv = mgmt_cmd_client_auth(&b, 1, 1, NULL);
    ovha_alloc_fail_after(-1);
    assert_int_equal(rv, -ENOMEM);
    assert_int_equal(b.len, len);
    assert_int_equal(b.data[len], '\0');
    ovha_buf_free(&b);
}

const struct CMUnitTest mgmt_cmd_tests[] = {
    cmocka_unit_test(test_simple_commands),
    cmocka_unit_test(test_invalid_simple_args),
    cmocka_unit_test(test_client_auth_full),
    cmocka_unit_test(test_prefix_masks),
    cmocka_unit_test(test_hostile_quoted_fields),
    cmocka_unit_test(test_hostile_tokens_and_push),
    cmocka_unit_test(test_hostile_addresses),
    cmocka_unit_test(test_limits),
    cmocka_unit_test(test_random_values_never_add_lines),
    cmocka_unit_test(test_cmd_oom_leaves_buffer),
};
const size_t mgmt_cmd_ntests =
    sizeof(mgmt_cmd_tests) / sizeof(mgmt_cmd_tests[0]);
