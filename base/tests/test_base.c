/* Unit tests for base/: buffers, parsing, error text, allocation hooks. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/base.h"

static void test_buf_grows_and_consumes(void **state)
{
    (void)state;
    struct ovha_buf b;
    ovha_buf_init(&b);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(ovha_buf_printf(&b, "%d,", i % 10), 0);
    }
    assert_int_equal(b.len, 2000);
    assert_int_equal(b.data[b.len], '\0');
    ovha_buf_consume(&b, 1990);
    assert_string_equal(b.data, "5,6,7,8,9,");
    ovha_buf_consume(&b, 100);
    assert_int_equal(b.len, 0);
    ovha_buf_free(&b);
    assert_null(b.data);
}

static void test_parse_u64_bounds(void **state)
{
    (void)state;
    uint64_t v = 0;
    assert_int_equal(ovha_parse_u64("42", 100, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(ovha_parse_u64("101", 100, &v), -ERANGE);
    assert_int_equal(ovha_parse_u64("7", 5, &v), -ERANGE);
    assert_int_equal(ovha_parse_u64("", 100, &v), -EINVAL);
    assert_int_equal(ovha_parse_u64("4x", 100, &v), -EINVAL);
    assert_int_equal(ovha_parse_u64("-1", 100, &v), -EINVAL);
    assert_int_equal(ovha_parse_u64("18446744073709551615", UINT64_MAX, &v), 0);
    assert_int_equal(ovha_parse_u64("18446744073709551616", UINT64_MAX, &v),
                     -ERANGE);
}

static void test_strerror_covers_both_ranges(void **state)
{
    (void)state;
    assert_string_equal(ovha_strerror(OVHA_ENOTLEADER), "not the raft leader");
    assert_string_equal(ovha_strerror(-ENOENT), strerror(ENOENT));
    assert_non_null(ovha_strerror(-99999));
}

static void test_alloc_injection(void **state)
{
    (void)state;
    ovha_alloc_fail_after(1);
    void *a = ovha_malloc(8);
    void *b = ovha_malloc(8);
    assert_non_null(a);
    assert_null(b);
    ovha_alloc_fail_after(-1);
    ovha_free(a);
    struct ovha_buf buf;
    ovha_buf_init(&buf);
    ovha_alloc_fail_after(0);
    assert_int_equal(ovha_buf_appends(&buf, "x"), -ENOMEM);
    ovha_alloc_fail_after(-1);
    ovha_buf_free(&buf);
}

static void test_sha256_known_vector(void **state)
{
    (void)state;
    uint8_t d[OVHA_SHA256_LEN];
    char hex[2 * OVHA_SHA256_LEN + 1];
    ovha_sha256("abc", 3, d);
    ovha_hex(d, sizeof(d), hex);
    assert_string_equal(hex,
                        "ba7816bf8f01cfea414140de5dae2223"
                        "b00361a396177a9cb410ff61f20015ad");
    struct ovha_sha256_ctx *c = ovha_sha256_begin();
    ovha_sha256_update(c, "a", 1);
    ovha_sha256_update(c, "bc", 2);
    uint8_t d2[OVHA_SHA256_LEN];
    ovha_sha256_end(c, d2);
    assert_memory_equal(d, d2, sizeof(d));
}

static uint64_t test_fixed_clock(void *data)
{
    return *(uint64_t *)data;
}

static void test_clock_injection_and_skew(void **state)
{
    (void)state;
    uint64_t t = 5000;
    ovha_clock_set(test_fixed_clock, test_fixed_clock, &t);
    assert_int_equal(ovha_now_mono_ms(), 5000);
    ovha_clock_set_skew_ms(-1000);
    assert_int_equal(ovha_now_real_ms(), 4000);
    ovha_clock_set_skew_ms(0);
    ovha_clock_set(NULL, NULL, NULL);
    assert_true(ovha_now_real_ms() > 1700000000000ull);
}

/* Runs one log call with stderr sent to a file; returns what was written. */
static void test_log_capture(enum ovha_log_format fmt,
                             const char *msg,
                             char *out,
                             size_t len)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(f), STDERR_FILENO) >= 0);
    ovha_log_set_format(fmt);
    ovha_log(OVHA_LOG_WARN, "mod", "%s", msg);
    ovha_log_set_format(OVHA_LOG_TEXT);
    dup2(saved, STDERR_FILENO);
    close(saved);
    rewind(f);
    size_t n = fread(out, 1, len - 1, f);
    out[n] = '\0';
    fclose(f);
}

/* A hostile value (quote, backslash, newline) stays inside one record in
 * every format: it cannot start a new key or a new line. */
static void test_log_formats_escape(void **state)
{
    (void)state;
    const char *hostile = "cn=\"x\" a\\b\nlevel=err";
    char out[512];
    uint64_t t = 1764000000123ull;
    ovha_clock_set(test_fixed_clock, test_fixed_clock, &t);

    test_log_capture(OVHA_LOG_LOGFMT, hostile, out, sizeof(out));
    assert_string_equal(out,
                        "ts=2025-11-24T16:00:00.123Z level=warn "
                        "module=mod msg=\"cn=\\\"x\\\" a\\\\b"
                        "\\x0alevel=err\"\n");
    test_log_capture(OVHA_LOG_JSON, hostile, out, sizeof(out));
    assert_string_equal(out,
                        "{\"ts\":1764000000123,\"level\":\"warn\","
                        "\"module\":\"mod\",\"msg\":\"cn=\\\"x\\\" "
                        "a\\\\b\\u000alevel=err\"}\n");
    test_log_capture(OVHA_LOG_TEXT, hostile, out, sizeof(out));
    assert_string_equal(out, "<4>mod: cn=\"x\" a\\b?level=err\n");
    ovha_clock_set(NULL, NULL, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_grows_and_consumes),
        cmocka_unit_test(test_parse_u64_bounds),
        cmocka_unit_test(test_strerror_covers_both_ranges),
        cmocka_unit_test(test_alloc_injection),
        cmocka_unit_test(test_sha256_known_vector),
        cmocka_unit_test(test_clock_injection_and_skew),
        cmocka_unit_test(test_log_formats_escape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
