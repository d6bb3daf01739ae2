/* enforce/fw unit tests: the policy parser (errors name the JSON path),
 * explain (every branch), the compiled script, and the enforcing object
 * over the fake backend (member changes are element updates only; drift
 * is detected and repaired). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "enforce/fw.h"
#include "enforce/fw_int.h"
#include "enforce/tests/tests.h"

/* ops may reach servers on 22 and 8000-8080 over TCP; staff may reach
 * ops members on 443; nobody reaches the blocked network; icmp to any
 * client is fine. */
static const char enf_tf_policy[] =
    "{\"version\": 1, \"default\": \"accept\", \"isolation\": true,"
    " \"groups\": [\"ops\", \"staff\", \"servers\"],"
    " \"rules\": ["
    "  {\"name\": \"ops-ssh\", \"from\": \"ops\","
    "   \"to\": {\"cidr\": \"100.64.200.0/24\"}, \"proto\": \"tcp\","
    "   \"ports\": [22, \"8000-8080\"], \"action\": \"accept\"},"
    "  {\"name\": \"no-blocked\", \"from\": \"any\","
    "   \"to\": {\"cidr\": \"100.64.250.0/24\"}, \"action\": \"drop\"},"
    "  {\"name\": \"staff-to-ops\", \"from\": \"staff\","
    "   \"to\": {\"group\": \"ops\"}, \"proto\": \"tcp\", \"ports\": [443],"
    "   \"action\": \"accept\"},"
    "  {\"name\": \"ping\", \"from\": \"any\", \"to\": \"any\","
    "   \"proto\": \"icmp\", \"action\": \"accept\"},"
    "  {\"name\": \"v6-web\", \"from\": \"any\","
    "   \"to\": {\"cidr\": \"fd00:64::/64\"}, \"proto\": \"udp\","
    "   \"ports\": [\"5000-5001\"], \"action\": \"drop\"}"
    " ]}";

static const char *const enf_tf_g_ops[] = { "ops" };
static const char *const enf_tf_g_staff[] = { "staff", "undeclared" };
static const char *const enf_tf_g_both[] = { "ops", "staff" };

/* A (ops), B (staff), C (no group), D (IPv6, ops). */
static const struct enf_fw_member enf_tf_members[] = {
    { "100.64.0.2", enf_tf_g_ops, 1 },
    { "100.64.0.3", enf_tf_g_staff, 2 },
    { "100.64.0.4", NULL, 0 },
    { "fd00:64:1::2", enf_tf_g_ops, 1 },
};
#define ENF_TF_NMEMBERS (sizeof(enf_tf_members) / sizeof(enf_tf_members[0]))

static struct enf_fw_policy *enf_tf_parse(const char *json)
{
    struct enf_fw_policy *p = NULL;
    char err[256] = "";
    int rc = enf_fw_policy_parse(json, strlen(json), &p, err, sizeof(err));
    if (rc != 0) {
        fail_msg("parse: %d: %s", rc, err);
    }
    return p;
}

/* ---- parsing ------------------------------------------------------------- */

static void enf_tf_parse_ok(void **state)
{
    (void)state;
    struct enf_fw_policy *p = enf_tf_parse(enf_tf_policy);
    assert_int_equal(p->def, ENF_FW_ACCEPT);
    assert_true(p->isolation);
    assert_int_equal(p->ngroups, 3);
    assert_string_equal(p->groups[2], "servers");
    assert_int_equal(p->nrules, 5);
    const struct enf_fw_rule *r = &p->rules[0];
    assert_string_equal(r->name, "ops-ssh");
    assert_int_equal(r->from, 0);
    assert_int_equal(r->to_kind, ENF_FW_TO_CIDR);
    assert_int_equal(r->to_net.prefix, 24);
    assert_int_equal(r->proto, ENF_FW_PROTO_TCP);
    assert_int_equal(r->nports, 2);
    assert_int_equal(r->ports[1].lo, 8000);
    assert_int_equal(r->ports[1].hi, 8080);
    assert_int_equal(p->rules[1].from, -1);
    assert_int_equal(p->rules[1].action, ENF_FW_DROP);
    assert_int_equal(p->rules[2].to_kind, ENF_FW_TO_GROUP);
    assert_int_equal(p->rules[2].to_group, 0);
    enf_fw_policy_free(p);

    /* The minimal document: isolation defaults to on, no groups/rules. */
    p = enf_tf_parse("{\"version\":1,\"default\":\"drop\"}");
    assert_int_equal(p->def, ENF_FW_DROP);
    assert_true(p->isolation);
    assert_int_equal(p->nrules, 0);
    enf_fw_policy_free(p);
}

struct enf_tf_bad {
    const char *json;
    const char *msg; /* expected at the start of the error */
};

static const struct enf_tf_bad enf_tf_bad_docs[] = {
    { "{\"version\":1,\"default\":\"drop\",\"extra\":1}",
      "$: unknown key \"extra\"" },
    { "[1]", "$: must be an object" },
    { "{\"version\":1,", "$: line 1" },
    { "{\"version\":1,\"version\":1,\"default\":\"drop\"}", "$: line 1" },
    { "{\"default\":\"drop\"}", "$: missing \"version\"" },
    { "{\"version\":2,\"default\":\"drop\"}", "$.version: must be 1" },
    { "{\"version\":\"1\",\"default\":\"drop\"}", "$.version: must be 1" },
    { "{\"version\":1}", "$: missing \"default\"" },
    { "{\"version\":1,\"default\":\"reject\"}", "$.default: must be" },
    { "{\"version\":1,\"default\":\"drop\",\"isolation\":1}",
      "$.isolation: must be true or false" },
    { "{\"version\":1,\"default\":\"drop\",\"groups\":\"ops\"}",
      "$.groups: must be an array" },
    { "{\"version\":1,\"default\":\"drop\",\"groups\":[\"ops\",\"Ops\"]}",
      "$.groups[1]: must be a name" },
    { "{\"version\":1,\"default\":\"drop\",\"groups\":[\"any\"]}",
      "$.groups[0]: must be a name" },
    { "{\"version\":1,\"default\":\"drop\","
      "\"groups\":[\"a234567890123456789012345678901x\"]}",
      "$.groups[0]: must be a name" },
    { "{\"version\":1,\"default\":\"drop\",\"groups\":[\"ops\",\"ops\"]}",
      "$.groups[1]: \"ops\" declared twice" },
    { "{\"version\":1,\"default\":\"drop\",\"rules\":{}}",
      "$.rules: must be an array" },
    { "{\"version\":1,\"default\":\"drop\",\"rules\":[3]}",
      "$.rules[0]: must be an object" },
    { "{\"version\":1,\"default\":\"drop\",\"rules\":[{\"name\":\"a\","
      "\"from\":\"any\",\"to\":\"any\",\"action\":\"drop\",\"prot\":1}]}",
      "$.rules[0]: unknown key \"prot\"" },
    { "{\"version\":1,\"default\":\"drop\",\"rules\":[{\"name\":\"a\","
      "\"to\":\"any\",\"action\":\"drop\"}]}",
      "$.rules[0]: missing \"from\"" },
    { "{\"version\":1,\"default\":\"drop\",\"rules\":[{\"name\":\"a b\","
      "\"from\":\"any\",\"to\":\"any\",\"action\":\"drop\"}]}",
      "$.rules[0].name: must be a name" },
    { "{\"version\":1,\"default\":\"drop\",\"groups\":[\"ops\"],\"rules\":["
      "{\"name\":\"a\",\"from\":\"any\",\"to\":\"any\",\"action\":\"drop\"},"
      "{\"name\":\"b\",\"from\":\"nope\",\"to\":\"any\",\"action\":\"drop\"}"
      "]}",
      "$.rules[1].from: unknown group \"nope\"" },
    { "{\"version\":1,\"default\":\"drop\",\"rules\":["
      "{\"name\":\"a\",\"from\":\"any\",\"to\":\"any\",\"action\":\"drop\"},"
      "{\"name\":\"a\",\"from\":\"any\",\"to\":\"any\",\"action\":\"drop\"}"
      "]}",
      "$.rules[1].name: rule \"a\" named twice" },
    { "{\"version\":1,\"default\":\"drop\",\"rules\":[{\"name\":\"a\","
      "\"from\":\"any\",\"to\":{\"group\":\"any\"},\"action\":\"drop\"}]}",
      "$.rules[0].to.group: unknown group \"any\"" },
    { "{\"version\":1,\"default\":\"drop\",\"rules\":[{\"name\":\"a\","
      "\"from\":\"any\",\"to\":{\"host\":\"x\"},\"action\":\"drop\"}]}",
      "$.rules[0].to: unknown key \"host\"" },
    { "{\"version\":1,\"default\":\"drop\",\"rules\":[{\"name\":\"a\","
      "\"from\":\"any\",\"to\":{\"cidr\":\"1.2.3.0/24\",\"group\":\"g\"},"
      "\"action\":\"drop\"}]}",
      "$.rules[0].to: must be \"any\"" },
    { "{\"version\":1,\"default\":\"drop\",\"rules\":[{\"name\":\"a\","
      "\"from\":\"any\",\"to\":{\"cidr\":\"100.64.200.1/24\"},"
      "\"action\":\"drop\"}]}",
      "$.rules[0].to.cidr: \"100.64.200.1/24\" has host bits set" },
    { "{\"version\":1,\"default\":\"drop\",\"rules\":[{\"name\":\"a\","
      "\"from\":\"any\",\"to\":{\"cidr\":\"100.64.200.0/33\"},"
      "\"action\":\"drop\"}]}",
      "$.rules[0].to.cidr: \"100.64.200.0/33\": bad prefix length" },
    { "{\"version\":1,\"default\":\"drop\",\"rules\":[{\"name\":\"a\","
      "\"from\":\"any\",\"to\":{\"cidr\":\"100.64.300.0/24\"},"
      "\"action\":\"drop\"}]}",
      "$.rules[0].to.cidr: \"100.64.300.0/24\" is not a CIDR" },
    { "{\"version\":1,\"default\":\"drop\",\"rules\":[{\"name\":\"a\","
      "\"from\":\"any\",\"to\":{\"cidr\":24},\"action\":\"drop\"}]}",
      "$.rules[0].to.cidr: must be a string" },
    { "{\"version\":1,\"default\":\"drop\",\"rules\":[{\"name\":\"a\","
      "\"from\":\"any\",\"to\":\"any\",\"proto\":\"sctp\","
      "\"action\":\"drop\"}]}",
      "$.rules[0].proto: must be" },
    { "{\"version\":1,\"default\":\"drop\",\"rules\":[{\"name\":\"a\","
      "\"from\":\"any\",\"to\":\"any\",\"proto\":\"tcp\",\"ports\":[22,0],"
      "\"action\":\"drop\"}]}",
      "$.rules[0].ports[1]: port 0 out of range" },
    { "{\"version\":1,\"default\":\"drop\",\"rules\":[{\"name\":\"a\","
      "\"from\":\"any\",\"to\":\"any\",\"proto\":\"tcp\",\"ports\":[70000],"
      "\"action\":\"drop\"}]}",
      "$.rules[0].ports[0]: port 70000 out of range" },
    { "{\"version\":1,\"default\":\"drop\",\"rules\":[{\"name\":\"a\","
      "\"from\":\"any\",\"to\":\"any\",\"proto\":\"udp\","
      "\"ports\":[\"90-80\"],\"action\":\"drop\"}]}",
      "$.rules[0].ports[0]: must be a port" },
    { "{\"version\":1,\"default\":\"drop\",\"rules\":[{\"name\":\"a\","
      "\"from\":\"any\",\"to\":\"any\",\"proto\":\"udp\","
      "\"ports\":[\"+1-80\"],\"action\":\"drop\"}]}",
      "$.rules[0].ports[0]: must be a port" },
    { "{\"version\":1,\"default\":\"drop\",\"rules\":[{\"name\":\"a\","
      "\"from\":\"any\",\"to\":\"any\",\"proto\":\"udp\","
      "\"ports\":[],\"action\":\"drop\"}]}",
      "$.rules[0].ports: must be a non-empty array" },
    { "{\"version\":1,\"default\":\"drop\",\"rules\":[{\"name\":\"a\","
      "\"from\":\"any\",\"to\":\"any\",\"ports\":[22],"
      "\"action\":\"drop\"}]}",
      "$.rules[0].ports: ports need proto" },
    { "{\"version\":1,\"default\":\"drop\",\"rules\":[{\"name\":\"a\","
      "\"from\":\"any\",\"to\":\"any\",\"action\":\"allow\"}]}",
      "$.rules[0].action: must be" },
};

static void enf_tf_parse_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(enf_tf_bad_docs) / sizeof(enf_tf_bad_docs[0]);
         i++) {
        const struct enf_tf_bad *b = &enf_tf_bad_docs[i];
        struct enf_fw_policy *p = NULL;
        char err[256] = "";
        int rc =
            enf_fw_policy_parse(b->json, strlen(b->json), &p, err, sizeof(err));
        if (rc != -EINVAL || strncmp(err, b->msg, strlen(b->msg)) != 0) {
            fail_msg("doc %zu: rc %d, error \"%s\", want \"%s\"", i, rc, err,
                     b->msg);
        }
        assert_null(p);
    }
}

/* Every allocation failure is reported as -ENOMEM and leaks nothing (the
 * ASan build checks the leaks). */
static void enf_tf_parse_oom(void **state)
{
    (void)state;
    int rc = -ENOMEM;
    long n;
    for (n = 0; n < 100 && rc == -ENOMEM; n++) {
        struct enf_fw_policy *p = NULL;
        char err[256];
        ovha_alloc_fail_after(n);
        rc = enf_fw_policy_parse(enf_tf_policy, strlen(enf_tf_policy), &p, err,
                                 sizeof(err));
        ovha_alloc_fail_after(-1);
        enf_fw_policy_free(p);
    }
    assert_int_equal(rc, 0);
    assert_true(n > 1);
}

/* ---- explain ------------------------------------------------------------- */

static void enf_tf_expect(const struct enf_fw_policy *p,
                          const char *src,
                          const char *dst,
                          enum enf_fw_proto proto,
                          uint16_t port,
                          enum enf_fw_verdict verdict,
                          const char *reason)
{
    struct enf_fw_explanation ex;
    char err[256] = "";
    int rc = enf_fw_explain(p, enf_tf_members, ENF_TF_NMEMBERS, src, dst, proto,
                            port, &ex, err, sizeof(err));
    if (rc != 0) {
        fail_msg("explain %s -> %s: %d: %s", src, dst, rc, err);
    }
    if (ex.verdict != verdict || strcmp(ex.reason, reason) != 0) {
        fail_msg("explain %s -> %s port %u: %s \"%s\", want %s \"%s\"", src,
                 dst, (unsigned)port,
                 ex.verdict == ENF_FW_ACCEPT ? "accept" : "drop", ex.reason,
                 verdict == ENF_FW_ACCEPT ? "accept" : "drop", reason);
    }
}

static void enf_tf_explain(void **state)
{
    (void)state;
    struct enf_fw_policy *p = enf_tf_parse(enf_tf_policy);
    const enum enf_fw_proto tcp = ENF_FW_PROTO_TCP, udp = ENF_FW_PROTO_UDP;
    /* A rule, by group, protocol and port range. */
    enf_tf_expect(p, "100.64.0.2", "100.64.200.7", tcp, 22, ENF_FW_ACCEPT,
                  "rule ops-ssh");
    enf_tf_expect(p, "100.64.0.2", "100.64.200.7", tcp, 8080, ENF_FW_ACCEPT,
                  "rule ops-ssh");
    /* Another port, another protocol, another group: the default. */
    enf_tf_expect(p, "100.64.0.2", "100.64.200.7", tcp, 8081, ENF_FW_ACCEPT,
                  "default");
    enf_tf_expect(p, "100.64.0.2", "100.64.200.7", udp, 22, ENF_FW_ACCEPT,
                  "default");
    enf_tf_expect(p, "100.64.0.3", "100.64.200.7", tcp, 22, ENF_FW_ACCEPT,
                  "default");
    /* A drop rule for everyone. */
    enf_tf_expect(p, "100.64.0.4", "100.64.250.9", tcp, 80, ENF_FW_DROP,
                  "rule no-blocked");
    /* Client to client: a group rule lets staff reach ops on 443 only. */
    enf_tf_expect(p, "100.64.0.3", "100.64.0.2", tcp, 443, ENF_FW_ACCEPT,
                  "rule staff-to-ops");
    enf_tf_expect(p, "100.64.0.3", "100.64.0.2", tcp, 444, ENF_FW_DROP,
                  "isolation");
    enf_tf_expect(p, "100.64.0.2", "100.64.0.3", tcp, 443, ENF_FW_DROP,
                  "isolation");
    /* ICMP is allowed to clients too (the ping rule comes first). */
    enf_tf_expect(p, "100.64.0.4", "100.64.0.2", ENF_FW_PROTO_ICMP, 0,
                  ENF_FW_ACCEPT, "rule ping");
    /* Not from a client: untouched. */
    enf_tf_expect(p, "198.18.0.9", "100.64.0.2", tcp, 22, ENF_FW_ACCEPT,
                  "not from a client");
    /* IPv6: a group member reaching an IPv6 network rule, by port. */
    enf_tf_expect(p, "fd00:64:1::2", "fd00:64::80", udp, 5001, ENF_FW_DROP,
                  "rule v6-web");
    enf_tf_expect(p, "fd00:64:1::2", "fd00:64::80", udp, 5002, ENF_FW_ACCEPT,
                  "default");
    enf_fw_policy_free(p);

    /* Default drop, isolation off: client to client falls to default. */
    p = enf_tf_parse(
        "{\"version\":1,\"default\":\"drop\",\"isolation\":false}");
    enf_tf_expect(p, "100.64.0.2", "100.64.0.3", tcp, 1, ENF_FW_DROP,
                  "default");
    enf_tf_expect(p, "100.64.0.2", "100.64.200.1", tcp, 1, ENF_FW_DROP,
                  "default");
    enf_fw_policy_free(p);
    p = enf_tf_parse(
        "{\"version\":1,\"default\":\"accept\",\"isolation\":false}");
    enf_tf_expect(p, "100.64.0.2", "100.64.0.3", tcp, 1, ENF_FW_ACCEPT,
                  "default");
    /* Bad input. */
    struct enf_fw_explanation ex;
    char err[128];
    assert_int_equal(
        enf_fw_explain(p, enf_tf_members, ENF_TF_NMEMBERS, "100.64.0.2",
                       "fd00::1", tcp, 1, &ex, err, sizeof(err)),
        -EINVAL);
    enf_fw_policy_free(p);
}

/* ---- compile ------------------------------------------------------------- */

static void enf_tf_contains(const char *text, const char *want)
{
    if (strstr(text, want) == NULL) {
        fail_msg("missing \"%s\" in:\n%s", want, text);
    }
}

static void enf_tf_compile(void **state)
{
    (void)state;
    struct enf_fw_policy *p = enf_tf_parse(enf_tf_policy);
    char *text = NULL;
    char err[256] = "";
    int rc = enf_fw_compile(p, enf_tf_members, ENF_TF_NMEMBERS, "tun0", NULL,
                            &text, err, sizeof(err));
    if (rc != 0) {
        fail_msg("compile: %d: %s", rc, err);
    }
    static const char *const wants[] = {
        "table inet ovha\ndelete table inet ovha\ntable inet ovha {\n",
        "\tset clients4 {\n\t\ttype ipv4_addr\n",
        "\tset clients6 {\n\t\ttype ipv6_addr\n",
        "\tset g4_ops {\n",
        "\tset g6_ops {\n",
        "\tset g4_servers {\n",
        "\tset g6_staff {\n",
        "type filter hook forward priority filter; policy accept;",
        "iifname \"tun0\" jump from_clients\n",
        "\t\tct state established,related accept\n",
        "\t\tip saddr @g4_ops ip daddr 100.64.200.0/24 tcp dport { 22, "
        "8000-8080 } accept comment \"rule ops-ssh\"\n",
        "\t\tip daddr 100.64.250.0/24 drop comment \"rule no-blocked\"\n",
        "\t\tip saddr @g4_staff ip daddr @g4_ops tcp dport 443 accept comment "
        "\"rule staff-to-ops\"\n",
        "\t\tip6 saddr @g6_staff ip6 daddr @g6_ops tcp dport 443 accept",
        "\t\tmeta nfproto ipv4 meta l4proto icmp accept comment \"rule "
        "ping\"\n",
        "\t\tmeta nfproto ipv6 meta l4proto ipv6-icmp accept comment \"rule "
        "ping\"\n",
        "\t\tip6 daddr fd00:64::/64 udp dport 5000-5001 drop comment",
        "\t\tip daddr @clients4 drop comment \"isolation\"\n",
        "\t\tip6 daddr @clients6 drop comment \"isolation\"\n",
        "\t\taccept comment \"default\"\n",
        "add element inet ovha clients4 { 100.64.0.2, 100.64.0.3, "
        "100.64.0.4 }\n",
        "add element inet ovha clients6 { fd00:64:1::2 }\n",
        "add element inet ovha g4_ops { 100.64.0.2 }\n",
        "add element inet ovha g6_ops { fd00:64:1::2 }\n",
        "add element inet ovha g4_staff { 100.64.0.3 }\n",
    };
    for (size_t i = 0; i < sizeof(wants) / sizeof(wants[0]); i++) {
        enf_tf_contains(text, wants[i]);
    }
    /* An IPv4 network rule has no IPv6 line, empty sets no elements. */
    assert_null(strstr(text, "ip6 daddr 100.64"));
    assert_null(strstr(text, "ip6 saddr @g6_ops ip6 daddr 100"));
    assert_null(strstr(text, "g4_servers {  }"));
    assert_null(strstr(text, "add element inet ovha g4_servers"));
    /* Rules come in policy order, before isolation and the default. */
    assert_true(strstr(text, "rule ops-ssh") < strstr(text, "rule ping"));
    assert_true(strstr(text, "rule ping") < strstr(text, "\"isolation\""));
    assert_true(strstr(text, "\"isolation\"") < strstr(text, "\"default\""));
    free(text);
    enf_fw_policy_free(p);

    /* Isolation off: no isolation lines; another table name. */
    p = enf_tf_parse(
        "{\"version\":1,\"default\":\"drop\",\"isolation\":false}");
    rc = enf_fw_compile(p, NULL, 0, "tun1", "ovha_t", &text, err, sizeof(err));
    assert_int_equal(rc, 0);
    assert_null(strstr(text, "isolation"));
    assert_null(strstr(text, "add element"));
    enf_tf_contains(text, "table inet ovha_t {\n");
    enf_tf_contains(text, "\t\tdrop comment \"default\"\n");
    free(text);

    /* Bad members and names. */
    static const struct enf_fw_member dup[] = {
        { "100.64.0.2", NULL, 0 },
        { "100.64.0.02", NULL, 0 },
        { "100.64.0.2", NULL, 0 },
    };
    rc = enf_fw_compile(p, dup, 3, "tun0", NULL, &text, err, sizeof(err));
    assert_int_equal(rc, -EINVAL);
    enf_tf_contains(err, "member 1: \"100.64.0.02\" is not an address");
    rc = enf_fw_compile(p, dup, 1, "tun0", NULL, &text, err, sizeof(err));
    assert_int_equal(rc, 0);
    free(text);
    static const struct enf_fw_member twice[] = {
        { "fd00::1", NULL, 0 },
        { "fd00:0::1", NULL, 0 },
    };
    rc = enf_fw_compile(p, twice, 2, "tun0", NULL, &text, err, sizeof(err));
    assert_int_equal(rc, -EINVAL);
    enf_tf_contains(err, "member fd00::1: given twice");
    assert_int_equal(
        enf_fw_compile(p, NULL, 0, "tun0\"", NULL, &text, err, sizeof(err)),
        -EINVAL);
    assert_int_equal(
        enf_fw_compile(p, NULL, 0, "tun0", "Ovha", &text, err, sizeof(err)),
        -EINVAL);
    enf_fw_policy_free(p);
}

/* ---- the object over the fake backend ------------------------------------ */

struct enf_tf_ctx {
    struct enf_fw *fw;
    struct enf_fw_policy *p;
};

static int enf_tf_setup(void **state)
{
    struct enf_tf_ctx *c = calloc(1, sizeof(*c));
    struct enf_fw_config cfg = { .backend = "fake", .dev = "tun0" };
    char err[256];
    assert_int_equal(enf_fw_new(&cfg, &c->fw, err, sizeof(err)), 0);
    c->p = enf_tf_parse(enf_tf_policy);
    *state = c;
    return 0;
}

static int enf_tf_teardown(void **state)
{
    struct enf_tf_ctx *c = *state;
    enf_fw_free(c->fw);
    enf_fw_policy_free(c->p);
    free(c);
    return 0;
}

static struct enf_fw_fake_counts enf_tf_counts(struct enf_fw *fw)
{
    struct enf_fw_fake_counts fc;
    assert_int_equal(enf_fw_fake_get_counts(fw, &fc), 0);
    return fc;
}

static struct enf_fw_stats enf_tf_stats(struct enf_fw *fw)
{
    struct enf_fw_stats st;
    enf_fw_get_stats(fw, &st);
    return st;
}

static void enf_tf_apply_ok(struct enf_tf_ctx *c)
{
    char err[256] = "";
    int rc = enf_fw_apply(c->fw, c->p, enf_tf_members, ENF_TF_NMEMBERS, err,
                          sizeof(err));
    if (rc != 0) {
        fail_msg("apply: %d: %s", rc, err);
    }
}

static void enf_tf_in_sync(struct enf_fw *fw, bool want, const char *why_part)
{
    bool ok = !want;
    char why[256] = "";
    assert_int_equal(enf_fw_check(fw, &ok, why, sizeof(why)), 0);
    if (ok != want) {
        fail_msg("check: in sync %d, want %d (%s)", ok, want, why);
    }
    if (why_part != NULL) {
        enf_tf_contains(why, why_part);
    }
}

static void enf_tf_apply_fake(void **state)
{
    struct enf_tf_ctx *c = *state;
    char err[256];
    /* Nothing applied yet: members cannot change, check says so. */
    assert_int_equal(enf_fw_member_add(c->fw, "100.64.0.9", enf_tf_g_ops, 1,
                                       err, sizeof(err)),
                     -EAGAIN);
    enf_tf_in_sync(c->fw, false, "nothing applied yet");
    enf_tf_apply_ok(c);
    struct enf_fw_fake_counts fc = enf_tf_counts(c->fw);
    assert_int_equal(fc.replaces, 1);
    assert_int_equal(fc.element_txns, 0);
    /* The backend got the same script enf_fw_compile produces. */
    char *text = NULL;
    assert_int_equal(enf_fw_compile(c->p, enf_tf_members, ENF_TF_NMEMBERS,
                                    "tun0", NULL, &text, err, sizeof(err)),
                     0);
    assert_string_equal(fc.last_script, text);
    free(text);
    size_t n = 0;
    assert_int_equal(enf_fw_fake_set_size(c->fw, "clients4", &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(enf_fw_fake_set_size(c->fw, "g4_staff", &n), 0);
    assert_int_equal(n, 1);
    assert_true(enf_fw_fake_has(c->fw, "g6_ops", "fd00:64:1::2"));
    enf_tf_in_sync(c->fw, true, NULL);
    assert_int_equal(enf_tf_stats(c->fw).members, 4);
    assert_int_equal(enf_tf_stats(c->fw).applies, 1);
    /* compiled: the table as "the kernel" has it. */
    assert_int_equal(enf_fw_compiled(c->fw, &text), 0);
    enf_tf_contains(text, "jump from_clients");
    free(text);
}

static void enf_tf_members_fake(void **state)
{
    struct enf_tf_ctx *c = *state;
    char err[256];
    enf_tf_apply_ok(c);
    /* A new member: the all-clients set and each group, one transaction;
     * no table replace (generation unchanged). */
    assert_int_equal(enf_fw_member_add(c->fw, "100.64.0.9", enf_tf_g_both, 2,
                                       err, sizeof(err)),
                     0);
    struct enf_fw_fake_counts fc = enf_tf_counts(c->fw);
    assert_int_equal(fc.replaces, 1);
    assert_int_equal(fc.generation, 1);
    assert_int_equal(fc.element_txns, 1);
    assert_int_equal(fc.element_ops, 3);
    assert_true(enf_fw_fake_has(c->fw, "clients4", "100.64.0.9"));
    assert_true(enf_fw_fake_has(c->fw, "g4_ops", "100.64.0.9"));
    assert_true(enf_fw_fake_has(c->fw, "g4_staff", "100.64.0.9"));
    enf_tf_in_sync(c->fw, true, NULL);
    /* The same again: nothing to do. */
    assert_int_equal(enf_fw_member_add(c->fw, "100.64.0.9", enf_tf_g_both, 2,
                                       err, sizeof(err)),
                     0);
    assert_int_equal(enf_tf_counts(c->fw).element_txns, 1);
    /* Groups change: leave staff only (one delete). */
    assert_int_equal(enf_fw_member_add(c->fw, "100.64.0.9", enf_tf_g_staff, 2,
                                       err, sizeof(err)),
                     0);
    fc = enf_tf_counts(c->fw);
    assert_int_equal(fc.element_txns, 2);
    assert_int_equal(fc.element_ops, 4);
    assert_false(enf_fw_fake_has(c->fw, "g4_ops", "100.64.0.9"));
    assert_true(enf_fw_fake_has(c->fw, "g4_staff", "100.64.0.9"));
    enf_tf_in_sync(c->fw, true, NULL);
    /* An IPv6 member. */
    assert_int_equal(enf_fw_member_add(c->fw, "fd00:64:1::9", enf_tf_g_ops, 1,
                                       err, sizeof(err)),
                     0);
    assert_true(enf_fw_fake_has(c->fw, "clients6", "fd00:64:1::9"));
    assert_true(enf_fw_fake_has(c->fw, "g6_ops", "fd00:64:1::9"));
    /* Delete: every set it was in; unknown address: nothing. */
    assert_int_equal(enf_fw_member_del(c->fw, "100.64.0.9", err, sizeof(err)),
                     0);
    assert_false(enf_fw_fake_has(c->fw, "clients4", "100.64.0.9"));
    assert_false(enf_fw_fake_has(c->fw, "g4_staff", "100.64.0.9"));
    fc = enf_tf_counts(c->fw);
    assert_int_equal(fc.element_txns, 4);
    assert_int_equal(fc.element_ops, 8);
    assert_int_equal(enf_fw_member_del(c->fw, "100.64.1.1", err, sizeof(err)),
                     0);
    assert_int_equal(enf_tf_counts(c->fw).element_txns, 4);
    assert_int_equal(enf_fw_member_del(c->fw, "nope", err, sizeof(err)),
                     -EINVAL);
    enf_tf_in_sync(c->fw, true, NULL);
    struct enf_fw_stats st = enf_tf_stats(c->fw);
    assert_int_equal(st.element_txns, 4);
    assert_int_equal(st.element_updates, 8);
    assert_int_equal(st.members, 5);
    assert_int_equal(st.applies, 1);
    assert_int_equal(enf_tf_counts(c->fw).replaces, 1);
}

static void enf_tf_drift_fake(void **state)
{
    struct enf_tf_ctx *c = *state;
    enf_tf_apply_ok(c);
    enf_tf_in_sync(c->fw, true, NULL);

    assert_int_equal(enf_fw_fake_delete_table(c->fw), 0);
    enf_tf_in_sync(c->fw, false, "is missing");
    enf_tf_apply_ok(c);
    enf_tf_in_sync(c->fw, true, NULL);

    assert_int_equal(enf_fw_fake_add_rule(c->fw, "accept"), 0);
    enf_tf_in_sync(c->fw, false, "rules or sets differ");
    enf_tf_apply_ok(c);

    assert_int_equal(enf_fw_fake_flush_set(c->fw, "g4_ops"), 0);
    enf_tf_in_sync(c->fw, false, "set g4_ops: 0 elements, want 1");
    enf_tf_apply_ok(c);

    assert_int_equal(enf_fw_fake_put_element(c->fw, "g4_ops", "100.64.9.9"), 0);
    enf_tf_in_sync(c->fw, false, "set g4_ops: unexpected element 100.64.9.9");
    enf_tf_apply_ok(c);
    /* A client's address in a group it is not in. */
    assert_int_equal(enf_fw_fake_put_element(c->fw, "g4_ops", "100.64.0.3"), 0);
    enf_tf_in_sync(c->fw, false, "unexpected element 100.64.0.3");
    enf_tf_apply_ok(c);
    enf_tf_in_sync(c->fw, true, NULL);

    struct enf_fw_stats st = enf_tf_stats(c->fw);
    assert_int_equal(st.drifts, 5);
    assert_int_equal(st.repairs, 5);
    assert_int_equal(st.applies, 6);
    assert_int_equal(st.checks, 8);
}

static void enf_tf_failures_fake(void **state)
{
    struct enf_tf_ctx *c = *state;
    char err[256] = "";
    enf_tf_apply_ok(c);
    /* A failed element update: the model stays, check reports it. */
    assert_int_equal(enf_fw_fake_fail(c->fw, 1, -EIO), 0);
    assert_int_equal(enf_fw_member_add(c->fw, "100.64.0.9", enf_tf_g_ops, 1,
                                       err, sizeof(err)),
                     -EIO);
    assert_false(enf_fw_fake_has(c->fw, "clients4", "100.64.0.9"));
    assert_int_equal(enf_tf_stats(c->fw).members, 4);
    enf_tf_in_sync(c->fw, false, "element update failed");
    /* A failed apply: the old table and model stay. */
    assert_int_equal(enf_fw_fake_fail(c->fw, 1, -EPERM), 0);
    struct enf_fw_policy *p2 =
        enf_tf_parse("{\"version\":1,\"default\":\"drop\"}");
    assert_int_equal(enf_fw_apply(c->fw, p2, NULL, 0, err, sizeof(err)),
                     -EPERM);
    assert_int_equal(enf_tf_stats(c->fw).members, 4);
    assert_true(enf_fw_fake_has(c->fw, "g4_ops", "100.64.0.2"));
    /* The table was flushed by hand: deleting from it fails (the kernel
     * says ENOENT for a missing element), and the next apply repairs. */
    assert_int_equal(enf_fw_fake_flush_set(c->fw, "clients4"), 0);
    assert_int_equal(enf_fw_member_del(c->fw, "100.64.0.2", err, sizeof(err)),
                     -ENOENT);
    enf_tf_apply_ok(c);
    enf_tf_in_sync(c->fw, true, NULL);
    struct enf_fw_stats st = enf_tf_stats(c->fw);
    assert_int_equal(st.errors, 3);
    assert_int_equal(st.repairs, 1);
    /* Apply with a bad member list changes nothing. */
    static const struct enf_fw_member bad[] = { { "100.64.0.256", NULL, 0 } };
    assert_int_equal(enf_fw_apply(c->fw, p2, bad, 1, err, sizeof(err)),
                     -EINVAL);
    enf_tf_contains(err, "member 0");
    assert_int_equal(enf_tf_counts(c->fw).replaces, 3);
    /* A policy without groups: the members' groups no longer count. */
    assert_int_equal(enf_fw_apply(c->fw, p2, enf_tf_members, ENF_TF_NMEMBERS,
                                  err, sizeof(err)),
                     0);
    assert_int_equal(enf_fw_fake_set_size(c->fw, "g4_ops", &(size_t){ 0 }),
                     -ENOENT);
    assert_true(enf_fw_fake_has(c->fw, "clients4", "100.64.0.2"));
    assert_int_equal(enf_fw_member_add(c->fw, "100.64.0.9", enf_tf_g_ops, 1,
                                       err, sizeof(err)),
                     0);
    /* 2 failed adds, 2 failed deletes, then clients4 only. */
    assert_int_equal(enf_tf_counts(c->fw).element_ops, 2 + 2 + 1);
    enf_tf_in_sync(c->fw, true, NULL);
    /* Remove: the table is gone, members need a new apply. */
    assert_int_equal(enf_fw_remove(c->fw, err, sizeof(err)), 0);
    char *text = NULL;
    assert_int_equal(enf_fw_compiled(c->fw, &text), -ENOENT);
    enf_tf_in_sync(c->fw, false, "nothing applied yet");
    enf_fw_policy_free(p2);
}

/* Allocation failures in apply and member updates return -ENOMEM, leak
 * nothing, and leave an object that converges on the next call. */
static void enf_tf_oom_fake(void **state)
{
    struct enf_tf_ctx *c = *state;
    char err[256];
    int rc = -ENOMEM;
    long n;
    for (n = 0; n < 1000 && rc == -ENOMEM; n++) {
        ovha_alloc_fail_after(n);
        rc = enf_fw_apply(c->fw, c->p, enf_tf_members, ENF_TF_NMEMBERS, err,
                          sizeof(err));
        ovha_alloc_fail_after(-1);
    }
    assert_int_equal(rc, 0);
    assert_true(n > 5);
    enf_tf_in_sync(c->fw, true, NULL);
    rc = -ENOMEM;
    for (n = 0; n < 1000 && rc == -ENOMEM; n++) {
        ovha_alloc_fail_after(n);
        rc = enf_fw_member_add(c->fw, "100.64.7.7", enf_tf_g_both, 2, err,
                               sizeof(err));
        ovha_alloc_fail_after(-1);
    }
    assert_int_equal(rc, 0);
    assert_true(enf_fw_fake_has(c->fw, "g4_staff", "100.64.7.7"));
    /* A failure after the kernel took the update leaves the object out of
     * sync, which the next apply repairs. */
    enf_tf_apply_ok(c);
    enf_tf_in_sync(c->fw, true, NULL);
}

static void enf_tf_new_errors(void **state)
{
    (void)state;
    struct enf_fw *fw = NULL;
    char err[256];
    struct enf_fw_config cfg = { .backend = "nope", .dev = "tun0" };
    assert_int_equal(enf_fw_new(&cfg, &fw, err, sizeof(err)), -EINVAL);
    enf_tf_contains(err, "unknown backend");
    cfg.backend = "fake";
    cfg.dev = "tun0 x";
    assert_int_equal(enf_fw_new(&cfg, &fw, err, sizeof(err)), -EINVAL);
    cfg.dev = "tun0";
    cfg.table = "a-b";
    assert_int_equal(enf_fw_new(&cfg, &fw, err, sizeof(err)), -EINVAL);
    assert_null(fw);
    enf_fw_free(NULL);
    enf_fw_policy_free(NULL);
}

const struct CMUnitTest enf_fw_tests[] = {
    cmocka_unit_test(enf_tf_parse_ok),
    cmocka_unit_test(enf_tf_parse_errors),
    cmocka_unit_test(enf_tf_parse_oom),
    cmocka_unit_test(enf_tf_explain),
    cmocka_unit_test(enf_tf_compile),
    cmocka_unit_test_setup_teardown(enf_tf_apply_fake,
                                    enf_tf_setup,
                                    enf_tf_teardown),
    cmocka_unit_test_setup_teardown(enf_tf_members_fake,
                                    enf_tf_setup,
                                    enf_tf_teardown),
    cmocka_unit_test_setup_teardown(enf_tf_drift_fake,
                                    enf_tf_setup,
                                    enf_tf_teardown),
    cmocka_unit_test_setup_teardown(enf_tf_failures_fake,
                                    enf_tf_setup,
                                    enf_tf_teardown),
    cmocka_unit_test_setup_teardown(enf_tf_oom_fake,
                                    enf_tf_setup,
                                    enf_tf_teardown),
    cmocka_unit_test(enf_tf_new_errors),
};
const size_t enf_fw_ntests = sizeof(enf_fw_tests) / sizeof(enf_fw_tests[0]);
