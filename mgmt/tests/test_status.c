/* status 3 parsing. */
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

static const char *const example[] = {
    "TITLE\tOpenVPN 2.6.14 x86_64-pc-linux-gnu",
    "TIME\t2026-11-24 21:48:07\t1795556887",
    "HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\t"
    "Virtual IPv6 Address\tBytes Received\tBytes Sent\tConnected Since\t"
    "Connected Since (time_t)\tUsername\tClient ID\tPeer ID\t"
    "Data Channel Cipher",
    "CLIENT_LIST\tclient1\t127.0.0.1:48757\t100.64.0.50\t\t2459\t2587\t"
    "2026-11-24 21:47:47\t1795556867\talice\t0\t0\tAES-256-GCM",
    "CLIENT_LIST\tbob\t2001:db8::7\t\t\t2171\t1933\t2026-11-24 22:25:07\t"
    "1795559107\tUNDEF\t12\t1\tBF-CBC",
    "HEADER\tROUTING_TABLE\tVirtual Address\tCommon Name\tReal Address\t"
    "Last Ref\tLast Ref (time_t)",
    "ROUTING_TABLE\t100.96.77.0/24\tclient1\t127.0.0.1:48757\t"
    "2026-11-24 21:47:47\t1795556867",
    "ROUTING_TABLE\t100.64.0.50C\tclient1\t127.0.0.1:48757\t"
    "2026-11-24 21:47:47\t1795556868",
    "GLOBAL_STATS\tMax bcast/mcast queue length\t1",
    "GLOBAL_STATS\tdco_enabled\t0",
};

static void test_status_example(void **state)
{
    (void)state;
    struct mgmt_status s;
    assert_int_equal(
        mgmt_status_parse(example, sizeof(example) / sizeof(example[0]), &s),
        0);
    assert_int_equal(s.nclients, 2);
    assert_int_equal(s.nroutes, 2);
    const struct mgmt_status_client *c = &s.clients[0];
    assert_string_equal(c->cn, "client1");
    assert_string_equal(c->real_addr, "127.0.0.1:48757");
    assert_string_equal(c->vaddr, "100.64.0.50");
    assert_string_equal(c->vaddr6, "");
    assert_int_equal(c->bytes_in, 2459);
    assert_int_equal(c->bytes_out, 2587);
    assert_int_equal(c->connected_since, 1795556867);
    assert_string_equal(c->username, "alice");
    assert_int_equal(c->cid, 0);
    assert_int_equal(c->peer_id, 0);
    assert_string_equal(c->cipher, "AES-256-GCM");
    c = &s.clients[1];
    assert_string_equal(c->vaddr, "");
    assert_string_equal(c->real_addr, "2001:db8::7");
    assert_string_equal(c->username, "UNDEF");
    assert_int_equal(c->cid, 12);
    assert_string_equal(c->cipher, "BF-CBC");
    assert_string_equal(s.routes[0].vaddr, "100.96.77.0/24");
    assert_string_equal(s.routes[0].cn, "client1");
    assert_int_equal(s.routes[0].last_ref, 1795556867);
    assert_string_equal(s.routes[1].vaddr, "100.64.0.50C");
    mgmt_status_free(&s);
    mgmt_status_free(&s); /* idempotent */
}

static void test_status_short_rows(void **state)
{
    (void)state;
    struct mgmt_status s;
    const char *minimal[] = { "CLIENT_LIST\tc\tr\tv\t\t1\t2\tx\t3\tu\t4" };
    assert_int_equal(mgmt_status_parse(minimal, 1, &s), 0);
    assert_int_equal(s.clients[0].peer_id, -1);
    assert_string_equal(s.clients[0].cipher, "");
    mgmt_status_free(&s);

    const char *short_row[] = { "CLIENT_LIST\tc\tr\tv\t\t1\t2\tx\t3\tu" };
    assert_int_equal(mgmt_status_parse(short_row, 1, &s), -EPROTO);
    const char *bad_num[] = { "CLIENT_LIST\tc\tr\tv\t\t1x\t2\tx\t3\tu\t4" };
    assert_int_equal(mgmt_status_parse(bad_num, 1, &s), -EPROTO);
    const char *neg[] = { "CLIENT_LIST\tc\tr\tv\t\t1\t2\tx\t3\tu\t-4" };
    assert_int_equal(mgmt_status_parse(neg, 1, &s), -EPROTO);
    const char *bad_route[] = { "ROUTING_TABLE\tv\tc\tr\tx" };
    assert_int_equal(mgmt_status_parse(bad_route, 1, &s), -EPROTO);
    char longcn[400];
    memset(longcn, 'a', sizeof(longcn));
    longcn[sizeof(longcn) - 1] = '\0';
    char row[600];
    snprintf(row, sizeof(row), "CLIENT_LIST\t%s\tr\tv\t\t1\t2\tx\t3\tu\t4",
             longcn);
    const char *long_row[] = { row };
    assert_int_equal(mgmt_status_parse(long_row, 1, &s), -EPROTO);
}

static void test_status_empty_and_unknown(void **state)
{
    (void)state;
    struct mgmt_status s;
    const char *rows[] = { "TITLE\tx", "FOO\tbar", "", "CLIENT_LISTX\ty" };
    assert_int_equal(mgmt_status_parse(rows, 4, &s), 0);
    assert_int_equal(s.nclients, 0);
    assert_int_equal(s.nroutes, 0);
    assert_null(s.clients);
    mgmt_status_free(&s);
    assert_int_equal(mgmt_status_parse(NULL, 0, &s), 0);
    mgmt_status_free(&s);
}

static void test_status_oom(void **state)
{
    (void)state;
    struct mgmt_status s;
    ovha_alloc_fail_after(0);
    assert_int_equal(
        mgmt_status_parse(example, sizeof(example) / sizeof(example[0]), &s),
        -ENOMEM);
    ovha_alloc_fail_after(1);
    assert_int_equal(
        mgmt_status_parse(example, sizeof(example) / sizeof(example[0]), &s),
        -ENOMEM);
    ovha_alloc_fail_after(-1);
}

/* The hand fixture, through the parser, into the status parser. */
static void status_cb(const struct mgmt_event *ev, void *data)
{
    struct mgmt_status *s = data;
    assert_int_equal(ev->type, MGMT_EV_REPLY_BLOCK);
    assert_int_equal(mgmt_status_parse(ev->lines, ev->nlines, s), 0);
}

static void test_status_from_fixture(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof(path), "%s/hand-status3.txt", MGMT_FIXTURES_DIR);
    char *data;
    size_t n;
    assert_int_equal(mgmt_test_load(path, &data, &n), 0);
    struct mgmt_status s = { 0 };
    struct mgmt_parser *p;
    assert_int_equal(mgmt_parser_new(NULL, status_cb, &s, &p), 0);
    for (size_t i = 0; i < n; i++) {
        mgmt_parser_feed(p, data + i, 1);
    }
    mgmt_parser_free(p);
    assert_int_equal(s.nclients, 2);
    assert_string_equal(s.clients[1].cn, "client2");
    assert_string_equal(s.clients[1].vaddr, "");
    assert_int_equal(s.clients[1].cid, 7);
    assert_int_equal(s.nroutes, 2);
    mgmt_status_free(&s);
    ovha_free(data);
}

const struct CMUnitTest mgmt_status_tests[] = {
    cmocka_unit_test(test_status_example),
    cmocka_unit_test(test_status_short_rows),
    cmocka_unit_test(test_status_empty_and_unknown),
    cmocka_unit_test(test_status_oom),
    cmocka_unit_test(test_status_from_fixture),
};
const size_t mgmt_status_ntests =
    sizeof(mgmt_status_tests) / sizeof(mgmt_status_tests[0]);
