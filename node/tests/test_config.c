/* Tests for node/config: a full valid file, every error kind with its
 * exact "file:line:col: message", defaults, and the reload check. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/base.h"
#include "node/config.h"
#include "node_tests.h"

static const char node_test_full[] =
    "node:\n"
    "  id: gw1\n"
    "  state_dir: /run/ovha/gw1\n"
    "  http_socket: /run/ovha/gw1/api.sock\n"
    "log:\n"
    "  level: debug\n"
    "  format: json\n"
    "management:\n"
    "  command_timeout_ms: 4000\n"
    "  bytecount_interval: 7\n"
    "decision:\n"
    "  deadline_ms: 2500\n"
    "openvpn:\n"
    "  binary: /usr/local/sbin/openvpn\n"
    "  dev: tun7\n"
    "  proto: tcp-server\n"
    "  local: 198.18.0.1\n"
    "  port: 1195\n"
    "  ca: /etc/ovha/ca.crt\n"
    "  cert: /etc/ovha/server.crt\n"
    "  key: /etc/ovha/server.key\n"
    "  tls_crypt: /etc/ovha/tc.key\n"
    "  network: 100.64.0.0/24\n"
    "  keepalive: [15, 90]\n"
    "  hand_window: 30\n"
    "  verb: 4\n"
    "  restart_backoff_min_ms: 250\n"
    "  restart_backoff_max_ms: 20000\n"
    "  crash_loop_limit: 6\n"
    "  crash_loop_window_ms: 120000\n"
    "  stop_timeout_ms: 3000\n"
    "policy:\n"
    "  default: allow\n"
    "  default_reason: \"not listed\"\n"
    "  pool: 100.64.0.128/25\n"
    "  groups:\n"
    "    - name: staff\n"
    "      routes: [100.64.200.0/24]\n"
    "      push: [\"dhcp-option DOMAIN corp\"]\n"
    "    - name: ops\n"
    "      action: deny\n"
    "      reason: ops-off\n"
    "  clients:\n"
    "    - cn: alice\n"
    "      groups: [staff, ops]\n"
    "      ip: 100.64.0.10\n"
    "      routes: [100.64.100.0/24, \"fd00:1::/64\"]\n"
    "      iroutes: [100.96.1.0/24]\n"
    "      push: [\"dhcp-option DNS 100.64.0.1\"]\n"
    "    - cn: mallory\n"
    "      action: deny\n"
    "      reason: \"revoked\"\n"
    "      client_reason: \"Access denied\"\n"
    "    - cn: \"Bob \\\"the\\\" Builder\"\n"
    "      action: allow\n"
    "    - cn: 'x y'\n";

static const char node_test_minimal[] =
    "node: {id: gw2}\n"
    "openvpn:\n"
    "  ca: /c\n"
    "  cert: /s\n"
    "  key: /k\n"
    "  network: 100.64.8.0/22\n";

static struct node_cfg *node_test_load_ok(const char *text)
{
    struct node_cfg *cfg = NULL;
    char err[512];
    int rv = node_cfg_load_string("t.yaml", text, &cfg, err, sizeof(err));
    if (rv != 0) {
        fail_msg("unexpected error %d: %s", rv, err);
    }
    assert_non_null(cfg);
    return cfg;
}

static void node_test_full_file(void **state)
{
    (void)state;
    struct node_cfg *cfg = node_test_load_ok(node_test_full);
    const struct node_cfg_openvpn *o = &cfg->openvpn;
    const struct node_cfg_policy *p = &cfg->policy;

    assert_string_equal(cfg->path, "t.yaml");
    assert_string_equal(cfg->id, "gw1");
    assert_string_equal(cfg->state_dir, "/run/ovha/gw1");
    assert_string_equal(cfg->http_socket, "/run/ovha/gw1/api.sock");
    assert_string_equal(cfg->log_level, "debug");
    assert_int_equal(cfg->log_format, 1);
    assert_int_equal(cfg->mgmt_cmd_timeout_ms, 4000);
    assert_int_equal(cfg->bytecount_interval, 7);
    assert_int_equal(cfg->decision_deadline_ms, 2500);
    assert_string_equal(o->binary, "/usr/local/sbin/openvpn");
    assert_string_equal(o->config, "");
    assert_string_equal(o->dev, "tun7");
    assert_string_equal(o->proto, "tcp-server");
    assert_string_equal(o->local, "198.18.0.1");
    assert_int_equal(o->port, 1195);
    assert_string_equal(o->ca, "/etc/ovha/ca.crt");
    assert_string_equal(o->cert, "/etc/ovha/server.crt");
    assert_string_equal(o->key, "/etc/ovha/server.key");
    assert_string_equal(o->tls_crypt, "/etc/ovha/tc.key");
    assert_string_equal(o->network.addr, "100.64.0.0");
    assert_int_equal(o->network.prefix, 24);
    assert_false(o->network.v6);
    assert_int_equal(o->keepalive_interval, 15);
    assert_int_equal(o->keepalive_timeout, 90);
    assert_int_equal(o->hand_window, 30);
    assert_int_equal(o->verb, 4);
    assert_int_equal(o->restart_backoff_min_ms, 250);
    assert_int_equal(o->restart_backoff_max_ms, 20000);
    assert_int_equal(o->crash_loop_limit, 6);
    assert_int_equal(o->crash_loop_window_ms, 120000);
    assert_int_equal(o->stop_timeout_ms, 3000);

    assert_int_equal(p->default_action, NODE_CFG_ALLOW);
    assert_string_equal(p->default_reason, "not listed");
    assert_string_equal(p->pool.addr, "100.64.0.128");
    assert_int_equal(p->pool.prefix, 25);
    assert_int_equal(p->ngroups, 2);
    assert_string_equal(p->groups[0].name, "staff");
    assert_false(p->groups[0].grant.action_set);
    assert_int_equal(p->groups[0].grant.nroutes, 1);
    assert_string_equal(p->groups[0].grant.routes[0].addr, "100.64.200.0");
    assert_int_equal(p->groups[0].grant.npush, 1);
    assert_string_equal(p->groups[0].grant.push[0], "dhcp-option DOMAIN corp");
    assert_true(p->groups[1].grant.action_set);
    assert_int_equal(p->groups[1].grant.action, NODE_CFG_DENY);
    assert_string_equal(p->groups[1].grant.reason, "ops-off");

    assert_int_equal(p->nclients, 4);
    assert_string_equal(p->clients[0].cn, "alice");
    assert_int_equal(p->clients[0].ngroups, 2);
    assert_string_equal(p->clients[0].groups[0], "staff");
    assert_string_equal(p->clients[0].groups[1], "ops");
    assert_string_equal(p->clients[0].grant.ip, "100.64.0.10");
    assert_int_equal(p->clients[0].grant.nroutes, 2);
    assert_string_equal(p->clients[0].grant.routes[1].addr, "fd00:1::");
    assert_int_equal(p->clients[0].grant.routes[1].prefix, 64);
    assert_true(p->clients[0].grant.routes[1].v6);
    assert_int_equal(p->clients[0].grant.niroutes, 1);
    assert_string_equal(p->clients[0].grant.iroutes[0].addr, "100.96.1.0");
    assert_string_equal(p->clients[0].grant.push[0],
                        "dhcp-option DNS 100.64.0.1");
    assert_false(p->clients[0].grant.action_set);
    assert_string_equal(p->clients[1].cn, "mallory");
    assert_int_equal(p->clients[1].grant.action, NODE_CFG_DENY);
    assert_true(p->clients[1].grant.action_set);
    assert_string_equal(p->clients[1].grant.reason, "revoked");
    assert_string_equal(p->clients[1].grant.client_reason, "Access denied");
    assert_string_equal(p->clients[2].cn, "Bob \"the\" Builder");
    assert_int_equal(p->clients[2].grant.action, NODE_CFG_ALLOW);
    assert_true(p->clients[2].grant.action_set);
    assert_string_equal(p->clients[3].cn, "x y");
    node_cfg_free(cfg);
}

static void node_test_defaults(void **state)
{
    (void)state;
    struct node_cfg *cfg = node_test_load_ok(node_test_minimal);
    assert_string_equal(cfg->id, "gw2");
    assert_string_equal(cfg->state_dir, "/run/ovha");
    assert_string_equal(cfg->http_socket, "/run/ovha/ovhad.sock");
    assert_string_equal(cfg->log_level, "info");
    assert_int_equal(cfg->log_format, 0);
    assert_int_equal(cfg->mgmt_cmd_timeout_ms, 5000);
    assert_int_equal(cfg->bytecount_interval, 5);
    assert_int_equal(cfg->decision_deadline_ms, 3000);
    assert_string_equal(cfg->openvpn.binary, "/usr/sbin/openvpn");
    assert_string_equal(cfg->openvpn.dev, "tun0");
    assert_string_equal(cfg->openvpn.proto, "udp");
    assert_string_equal(cfg->openvpn.local, "");
    assert_int_equal(cfg->openvpn.port, 1194);
    assert_string_equal(cfg->openvpn.tls_crypt, "");
    assert_int_equal(cfg->openvpn.keepalive_interval, 10);
    assert_int_equal(cfg->openvpn.keepalive_timeout, 60);
    assert_int_equal(cfg->openvpn.hand_window, 20);
    assert_int_equal(cfg->openvpn.verb, 3);
    assert_int_equal(cfg->openvpn.restart_backoff_min_ms, 500);
    assert_int_equal(cfg->openvpn.restart_backoff_max_ms, 30000);
    assert_int_equal(cfg->openvpn.crash_loop_limit, 5);
    assert_int_equal(cfg->openvpn.crash_loop_window_ms, 60000);
    assert_int_equal(cfg->openvpn.stop_timeout_ms, 5000);
    assert_int_equal(cfg->policy.default_action, NODE_CFG_DENY);
    assert_string_equal(cfg->policy.default_reason, "unknown client");
    /* The pool defaults to the whole tunnel network. */
    assert_string_equal(cfg->policy.pool.addr, "100.64.8.0");
    assert_int_equal(cfg->policy.pool.prefix, 22);
    assert_int_equal(cfg->policy.ngroups, 0);
    assert_null(cfg->policy.groups);
    assert_int_equal(cfg->policy.nclients, 0);
    node_cfg_free(cfg);
}

static void node_test_operator_config(void **state)
{
    (void)state;
    /* With openvpn.config, ca/cert/key are not needed. */
    struct node_cfg *cfg = node_test_load_ok(
        "node: {id: a}\n"
        "openvpn: {config: /etc/openvpn/server.conf, network: "
        "100.64.0.0/24}\n");
    assert_string_equal(cfg->openvpn.config, "/etc/openvpn/server.conf");
    node_cfg_free(cfg);
}

struct node_test_bad {
    const char *yaml;
    const char *err;
};

#define NODE_TEST_BASE \
    "node: {id: gw1}\nopenvpn: {config: /o, network: 100.64.0.0/24}\n"

static const struct node_test_bad node_test_bads[] = {
    /* YAML syntax, reported by libyaml with its own position. */
    { "node:\n  id: [a\n",
      "t.yaml:3:1: did not find expected ',' or ']' "
      "(while parsing a flow sequence at 2:7)" },
    { "node: {id: a}\n---\nx: 1\n",
      "t.yaml:3:1: only one YAML document is allowed" },
    { "- a\n", "t.yaml:1:1: the file must be a mapping of sections" },
    /* Unknown keys. */
    { NODE_TEST_BASE "foo: 1\n", "t.yaml:3:1: unknown top-level key 'foo'" },
    { "openvpn:\n  foo: 1\n",
      "t.yaml:2:3: unknown key 'foo' in section 'openvpn'" },
    { NODE_TEST_BASE "policy:\n  clients:\n    - cn: a\n      colour: red\n",
      "t.yaml:6:7: unknown key 'colour' in section 'policy.clients[0]'" },
    { NODE_TEST_BASE "policy:\n  groups:\n    - name: g\n      ip: "
                     "100.64.0.9\n",
      "t.yaml:6:7: unknown key 'ip' in section 'policy.groups[0]'" },
    { "openvpn.port: 1\n", "t.yaml:1:1: unknown top-level key 'openvpn.port'" },
    /* Duplicate keys. */
    { "openvpn:\n  port: 1\n  port: 2\n",
      "t.yaml:3:3: duplicate key 'port' in section 'openvpn' (first at 2:3)" },
    { "node: {id: a}\nnode: {id: b}\n",
      "t.yaml:2:1: duplicate key 'node' in the top level (first at 1:1)" },
    /* Types. */
    { "openvpn:\n  port: abc\n",
      "t.yaml:2:9: openvpn.port: expected an integer, got 'abc'" },
    { "openvpn:\n  port: \"1194\"\n",
      "t.yaml:2:9: openvpn.port: expected an integer, got '1194'" },
    { "openvpn:\n  port: -1\n",
      "t.yaml:2:9: openvpn.port: expected an integer, got '-1'" },
    { "openvpn:\n  port: [1]\n",
      "t.yaml:2:9: openvpn.port: expected an "
      "integer" },
    { "node:\n  id: {a: 1}\n", "t.yaml:2:7: node.id: expected a string" },
    { "node: 5\n", "t.yaml:1:7: section 'node' must be a mapping" },
    { "openvpn:\n  keepalive: [10]\n",
      "t.yaml:2:14: openvpn.keepalive: expected [interval, timeout]" },
    { "policy:\n  clients: {cn: a}\n",
      "t.yaml:2:12: policy.clients: expected a list" },
    { "policy:\n  clients: [a]\n",
      "t.yaml:2:13: policy.clients[0]: expected a mapping" },
    /* Bounds and choices. */
    { "openvpn:\n  port: 70000\n",
      "t.yaml:2:9: openvpn.port: 70000 is out of range [1, 65535]" },
    { "openvpn:\n  port: 0\n",
      "t.yaml:2:9: openvpn.port: 0 is out of range [1, 65535]" },
    { "openvpn:\n  verb: 99999999999999999999999\n",
      "t.yaml:2:9: openvpn.verb: 99999999999999999999999 is out of range "
      "[0, 11]" },
    { "openvpn:\n  keepalive: [10, 0]\n",
      "t.yaml:2:19: openvpn.keepalive: 0 is out of range [1, 3600]" },
    { "log:\n  level: loud\n",
      "t.yaml:2:10: log.level: 'loud' is not one of err|warn|info|debug" },
    { "log:\n  format: xml\n",
      "t.yaml:2:11: log.format: 'xml' is not one of text|json|logfmt" },
    { "openvpn:\n  proto: tcp\n",
      "t.yaml:2:10: openvpn.proto: 'tcp' is not one of udp|tcp-server" },
    { "policy:\n  default: maybe\n",
      "t.yaml:2:12: policy.default: 'maybe' is not one of allow|deny" },
    /* Strings. */
    { "node:\n  id: \"gw 1\"\n",
      "t.yaml:2:7: node.id: 'gw 1' may only contain letters, digits, '_', "
      "'.' and '-'" },
    { "node:\n  id: "
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "aaaaa\n",
      "t.yaml:2:7: node.id: longer than 63 bytes" },
    { "openvpn:\n  dev: tun0123456789abcd\n",
      "t.yaml:2:8: openvpn.dev: longer than 15 bytes" },
    { "openvpn:\n  ca: \"/a\\nb\"\n",
      "t.yaml:2:7: openvpn.ca: '/a\\x0ab' contains a control character" },
    { "policy:\n  clients:\n    - cn: \"a\\0b\"\n",
      "t.yaml:3:11: policy.clients[0].cn: contains a NUL byte" },
    { "policy:\n  clients:\n    - cn: \"\"\n",
      "t.yaml:3:11: policy.clients[0].cn: must not be empty" },
    { "policy:\n  clients:\n    - ip: 100.64.0.9\n",
      "t.yaml:3:7: policy.clients[0]: missing required key 'cn'" },
    { "policy:\n  groups:\n    - routes: []\n",
      "t.yaml:3:7: policy.groups[0]: missing required key 'name'" },
    /* Networks and addresses. */
    { "openvpn:\n  network: 100.64.0.1/24\n",
      "t.yaml:2:12: openvpn.network: '100.64.0.1/24' is not a network in "
      "CIDR form (address/prefix, host bits zero)" },
    { "openvpn:\n  network: 100.64.0.0\n",
      "t.yaml:2:12: openvpn.network: '100.64.0.0' is not a network in CIDR "
      "form (address/prefix, host bits zero)" },
    { "openvpn:\n  local: 198.18.0.300\n",
      "t.yaml:2:10: openvpn.local: '198.18.0.300' is not an IP address" },
    { "policy:\n  clients:\n    - {cn: a, ip: \"fd00::5\"}\n",
      "t.yaml:3:19: policy.clients[0].ip: 'fd00::5' is not an IPv4 address" },
    { "policy:\n  groups:\n    - name: g\n      routes: [100.64.1.0/33]\n",
      "t.yaml:4:16: policy.groups[0].routes[0]: '100.64.1.0/33' is not a "
      "network in CIDR form (address/prefix, host bits zero)" },
    /* Array bounds. */
    { "policy:\n  clients:\n    - cn: a\n      push: [a,b,c,d,e,f,g,h,i,j,"
      "k,l,m,n,o,p,q]\n",
      "t.yaml:4:46: policy.clients[0].push: more than 16 entries" },
    { "policy:\n  clients:\n    - cn: a\n      groups: [a,b,c,d,e,f,g,h,i]\n",
      "t.yaml:4:32: policy.clients[0].groups: more than 8 entries" },
    /* Required keys. */
    { "", "t.yaml:1:1: missing required key 'node.id'" },
    { "openvpn: {network: 100.64.0.0/24}\nnode:\n  state_dir: /x\n",
      "t.yaml:3:3: missing required key 'node.id'" },
    { "node: {id: a}\n", "t.yaml:1:1: missing required key 'openvpn.network'" },
    { "node: {id: a}\nopenvpn:\n  network: 100.64.0.0/24\n  ca: /c\n",
      "t.yaml:3:3: missing required key 'openvpn.cert' (needed when "
      "openvpn.config is not set)" },
    /* Checks across keys. */
    { "node: {id: a}\nopenvpn: {config: /o, network: \"fd00::/64\"}\n",
      "t.yaml:2:32: openvpn.network: must be an IPv4 network with a prefix "
      "of at most /30" },
    { NODE_TEST_BASE "policy:\n  pool: 100.64.1.0/25\n",
      "t.yaml:4:9: policy.pool: 100.64.1.0/25 is not inside openvpn.network "
      "100.64.0.0/24" },
    { NODE_TEST_BASE "policy:\n  clients:\n    - {cn: a, ip: 100.65.0.9}\n",
      "t.yaml:5:19: policy.clients[0].ip: 100.65.0.9 is outside the tunnel "
      "network 100.64.0.0/24" },
    { NODE_TEST_BASE "policy:\n  clients:\n    - {cn: a, ip: 100.64.0.1}\n",
      "t.yaml:5:19: policy.clients[0].ip: 100.64.0.1 is the network, "
      "broadcast or server address of 100.64.0.0/24" },
    { NODE_TEST_BASE "policy:\n  clients:\n    - {cn: a, ip: 100.64.0.9}\n"
                     "    - {cn: b, ip: 100.64.0.9}\n",
      "t.yaml:6:19: policy.clients[1].ip: 100.64.0.9 is already given to "
      "policy.clients[0]" },
    { NODE_TEST_BASE "policy:\n  clients:\n    - cn: \"a b\"\n    - cn: "
                     "'a b'\n",
      "t.yaml:6:11: policy.clients[1].cn: duplicate cn 'a b' (first at "
      "5:11)" },
    { NODE_TEST_BASE "policy:\n  groups: [{name: g}, {name: g}]\n",
      "t.yaml:4:30: policy.groups[1].name: duplicate group 'g' (first at "
      "4:19)" },
    { NODE_TEST_BASE "policy:\n  clients:\n    - {cn: a, groups: [staf]}\n",
      "t.yaml:5:24: policy.clients[0].groups: unknown group 'staf'" },
    { NODE_TEST_BASE "openvpn2: 1\n",
      "t.yaml:3:1: unknown top-level key 'openvpn2'" },
    { "node: {id: a}\nopenvpn: {config: /o, network: 100.64.0.0/24, "
      "keepalive: [10, 15]}\n",
      "t.yaml:2:58: openvpn.keepalive: the timeout (15) must be at least "
      "twice the interval (10)" },
    { NODE_TEST_BASE "decision: {deadline_ms: 20000}\n",
      "t.yaml:3:25: decision.deadline_ms (20000) must be below "
      "openvpn.hand_window (20 s)" },
    { "node: {id: a}\nopenvpn: {config: /o, network: 100.64.0.0/24, "
      "restart_backoff_min_ms: 9000, restart_backoff_max_ms: 8000}\n",
      "t.yaml:2:101: openvpn.restart_backoff_min_ms (9000) exceeds "
      "openvpn.restart_backoff_max_ms (8000)" },
};

/* ---- the cluster section ---------------------------------------------- */

#define NODE_TEST_CL                     \
    NODE_TEST_BASE                       \
    "cluster:\n"                         \
    "  raft_id: 3\n"                     \
    "  address: 198.18.0.3:7000\n"       \
    "  data_dir: /var/lib/ovha/raft\n"   \
    "  ca: /etc/ovha/pki/ca.crt\n"       \
    "  cert: /etc/ovha/pki/node-3.crt\n" \
    "  key: /etc/ovha/pki/node-3.key\n"

static void node_test_cluster_full(void **state)
{
    (void)state;
    struct node_cfg *cfg = node_test_load_ok(NODE_TEST_CL
                                             "  bootstrap: true\n"
                                             "  election_timeout_ms: 2000\n"
                                             "  heartbeat_timeout_ms: 250\n"
                                             "  snapshot_threshold: 1024\n"
                                             "  snapshot_trailing: 512\n"
                                             "  gateway_heartbeat_ms: 1500\n"
                                             "  usage_interval_ms: 10000\n"
                                             "  pool_name: \"eu-west:main.1\"\n"
                                             "  lease_ttl_ms: 3600000\n"
                                             "  max_sessions: 3\n"
                                             "  on_excess: refuse\n"
                                             "  gateway_lease_ms: 9000\n"
                                             "  fence_timeout_ms: 3000\n"
                                             "  role: standby\n"
                                             "  standby_min_active: 2\n");
    const struct node_cfg_cluster *cl = &cfg->cluster;
    assert_true(cl->enabled);
    assert_int_equal(cl->raft_id, 3);
    assert_string_equal(cl->address, "198.18.0.3:7000");
    assert_string_equal(cl->data_dir, "/var/lib/ovha/raft");
    assert_string_equal(cl->ca, "/etc/ovha/pki/ca.crt");
    assert_string_equal(cl->cert, "/etc/ovha/pki/node-3.crt");
    assert_string_equal(cl->key, "/etc/ovha/pki/node-3.key");
    assert_true(cl->bootstrap);
    assert_int_equal(cl->election_timeout_ms, 2000);
    assert_int_equal(cl->heartbeat_timeout_ms, 250);
    assert_int_equal(cl->snapshot_threshold, 1024);
    assert_int_equal(cl->snapshot_trailing, 512);
    assert_int_equal(cl->gateway_heartbeat_ms, 1500);
    assert_int_equal(cl->usage_interval_ms, 10000);
    assert_string_equal(cl->pool_name, "eu-west:main.1");
    assert_int_equal(cl->lease_ttl_ms, 3600000);
    assert_int_equal(cl->max_sessions, 3);
    assert_true(cl->refuse_excess);
    assert_int_equal(cl->gateway_lease_ms, 9000);
    assert_int_equal(cl->fence_timeout_ms, 3000);
    assert_true(cl->standby);
    assert_int_equal(cl->standby_min_active, 2);
    node_cfg_free(cfg);
}

static void node_test_cluster_defaults(void **state)
{
    (void)state;
    struct node_cfg *cfg = node_test_load_ok(NODE_TEST_CL);
    const struct node_cfg_cluster *cl = &cfg->cluster;
    assert_true(cl->enabled);
    assert_false(cl->bootstrap);
    assert_int_equal(cl->election_timeout_ms, 300);
    assert_int_equal(cl->heartbeat_timeout_ms, 30);
    assert_int_equal(cl->snapshot_threshold, 65536);
    assert_int_equal(cl->snapshot_trailing, 8192);
    assert_int_equal(cl->gateway_heartbeat_ms, 1000);
    assert_int_equal(cl->usage_interval_ms, 5000);
    assert_string_equal(cl->pool_name, "main");
    assert_int_equal(cl->lease_ttl_ms, 86400000);
    assert_int_equal(cl->max_sessions, 1);
    assert_false(cl->refuse_excess);
    assert_int_equal(cl->gateway_lease_ms, 5000);
    assert_int_equal(cl->fence_timeout_ms, 2000);
    assert_false(cl->standby);
    assert_int_equal(cl->standby_min_active, 1);
    assert_true(cl->routes);
    assert_int_equal(cl->route_interval_ms, 1000);
    assert_int_equal(cl->route_table, 254);
    assert_int_equal(cl->route_protocol, 233);
    node_cfg_free(cfg);

    /* The largest raft id is 2^63 - 1; bootstrap: false is accepted. */
    cfg = node_test_load_ok(NODE_TEST_BASE
                            "cluster: {raft_id: 9223372036854775807, "
                            "address: 198.18.0.9:65534, data_dir: /d, "
                            "ca: /a, cert: /c, key: /k, bootstrap: false}\n");
    assert_true(cfg->cluster.raft_id == (uint64_t)INT64_MAX);
    assert_string_equal(cfg->cluster.address, "198.18.0.9:65534");
    assert_false(cfg->cluster.bootstrap);
    node_cfg_free(cfg);

    /* No section: standalone, and nothing of it is required. */
    cfg = node_test_load_ok(node_test_minimal);
    assert_false(cfg->cluster.enabled);
    node_cfg_free(cfg);
}

static const struct node_test_bad node_test_cluster_bads[] = {
    { NODE_TEST_BASE "cluster:\n",
      "t.yaml:3:9: missing required key 'cluster.raft_id'" },
    { NODE_TEST_BASE "cluster:\n  raft_id: 1\n",
      "t.yaml:4:3: missing required key 'cluster.address'" },
    { NODE_TEST_CL "  colour: red\n",
      "t.yaml:10:3: unknown key 'colour' in section 'cluster'" },
    { NODE_TEST_CL "  raft_id: 4\n",
      "t.yaml:10:3: duplicate key 'raft_id' in section 'cluster' (first at "
      "4:3)" },
    { NODE_TEST_BASE "cluster: {raft_id: 0}\n",
      "t.yaml:3:20: cluster.raft_id: 0 is out of range [1, "
      "9223372036854775807]" },
    { NODE_TEST_BASE "cluster: {raft_id: 9223372036854775808}\n",
      "t.yaml:3:20: cluster.raft_id: 9223372036854775808 is out of range [1, "
      "9223372036854775807]" },
    { NODE_TEST_BASE "cluster: {address: 198.18.0.3}\n",
      "t.yaml:3:20: cluster.address: '198.18.0.3' is not an IPv4 address "
      "and port (a.b.c.d:port, port 1..65534)" },
    { NODE_TEST_BASE "cluster: {address: \"198.18.0.3:65535\"}\n",
      "t.yaml:3:20: cluster.address: '198.18.0.3:65535' is not an IPv4 "
      "address and port (a.b.c.d:port, port 1..65534)" },
    { NODE_TEST_BASE "cluster: {address: \"198.18.0.3:0\"}\n",
      "t.yaml:3:20: cluster.address: '198.18.0.3:0' is not an IPv4 address "
      "and port (a.b.c.d:port, port 1..65534)" },
    { NODE_TEST_BASE "cluster: {address: \"198.18.0.3:07000\"}\n",
      "t.yaml:3:20: cluster.address: '198.18.0.3:07000' is not an IPv4 "
      "address and port (a.b.c.d:port, port 1..65534)" },
    { NODE_TEST_BASE "cluster: {address: \"gw1.example:7000\"}\n",
      "t.yaml:3:20: cluster.address: 'gw1.example:7000' is not an IPv4 "
      "address and port (a.b.c.d:port, port 1..65534)" },
    { NODE_TEST_BASE "cluster: {address: \"[fd00::1]:7000\"}\n",
      "t.yaml:3:20: cluster.address: '[fd00::1]:7000' is not an IPv4 "
      "address and port (a.b.c.d:port, port 1..65534)" },
    { NODE_TEST_BASE "cluster: {address: \"\"}\n",
      "t.yaml:3:20: cluster.address: '' is not an IPv4 address and port "
      "(a.b.c.d:port, port 1..65534)" },
    { NODE_TEST_CL "  bootstrap: yes\n",
      "t.yaml:10:14: cluster.bootstrap: 'yes' is not one of false|true" },
    { NODE_TEST_CL "  on_excess: drop\n",
      "t.yaml:10:14: cluster.on_excess: 'drop' is not one of "
      "evict_oldest|refuse" },
    { NODE_TEST_CL "  election_timeout_ms: 49\n",
      "t.yaml:10:24: cluster.election_timeout_ms: 49 is out of range [50, "
      "60000]" },
    { NODE_TEST_CL "  heartbeat_timeout_ms: 10001\n",
      "t.yaml:10:25: cluster.heartbeat_timeout_ms: 10001 is out of range "
      "[10, 10000]" },
    { NODE_TEST_CL "  snapshot_threshold: 63\n",
      "t.yaml:10:23: cluster.snapshot_threshold: 63 is out of range [64, "
      "10000000]" },
    { NODE_TEST_CL "  snapshot_trailing: 10000001\n",
      "t.yaml:10:22: cluster.snapshot_trailing: 10000001 is out of range "
      "[64, 10000000]" },
    { NODE_TEST_CL "  gateway_heartbeat_ms: 99\n",
      "t.yaml:10:25: cluster.gateway_heartbeat_ms: 99 is out of range [100, "
      "60000]" },
    { NODE_TEST_CL "  usage_interval_ms: 3600001\n",
      "t.yaml:10:22: cluster.usage_interval_ms: 3600001 is out of range "
      "[100, 3600000]" },
    { NODE_TEST_CL "  lease_ttl_ms: 999\n",
      "t.yaml:10:17: cluster.lease_ttl_ms: 999 is out of range [1000, "
      "1099511627776]" },
    { NODE_TEST_CL "  max_sessions: 65\n",
      "t.yaml:10:17: cluster.max_sessions: 65 is out of range [1, 64]" },
    { NODE_TEST_CL "  max_sessions: 0\n",
      "t.yaml:10:17: cluster.max_sessions: 0 is out of range [1, 64]" },
    { NODE_TEST_CL "  pool_name: \"a b\"\n",
      "t.yaml:10:14: cluster.pool_name: 'a b' may only contain letters, "
      "digits, '_', '.', ':' and '-'" },
    { NODE_TEST_CL "  pool_name: \"\"\n",
      "t.yaml:10:14: cluster.pool_name: must not be empty" },
    { NODE_TEST_CL "  pool_name: "
                   "pppppppppppppppppppppppppppppppppppppppppppppppppppppp"
                   "pppppppppp\n",
      "t.yaml:10:14: cluster.pool_name: longer than 63 bytes" },
    { NODE_TEST_BASE "cluster:\n  raft_id: 3\n  address: 198.18.0.3:7000\n"
                     "  data_dir:\n  ca: /a\n  cert: /c\n  key: /k\n",
      "t.yaml:6:12: cluster.data_dir: must not be empty" },
    /* A TCP admin listener needs TLS and credentials. */
    { NODE_TEST_BASE "api:\n  listen: 198.18.0.1:9443\n  tls_key: /k\n",
      "t.yaml:4:11: api.tls_cert: required when api.listen is set" },
    { NODE_TEST_BASE "api:\n  listen: 198.18.0.1:9443\n  tls_cert: /c\n"
                     "  tls_key: /k\n",
      "t.yaml:4:11: api.tokens_file: required when api.listen is set" },
    { NODE_TEST_CL "  heartbeat_timeout_ms: 500\n",
      "t.yaml:10:25: cluster.heartbeat_timeout_ms (500) must be below half "
      "of cluster.election_timeout_ms (300)" },
    { NODE_TEST_CL "  election_timeout_ms: 50\n",
      "t.yaml:10:24: cluster.heartbeat_timeout_ms (30) must be below half "
      "of cluster.election_timeout_ms (50)" },
    { NODE_TEST_BASE "cluster: [1]\n",
      "t.yaml:3:10: section 'cluster' must be a mapping" },
    /* Fencing must beat the down-marking, and leases must outlive both. */
    { NODE_TEST_CL "  gateway_lease_ms: 2600\n",
      "t.yaml:10:21: cluster.gateway_lease_ms (2600) must be above "
      "cluster.fence_timeout_ms + 2 x cluster.election_timeout_ms (2600): "
      "a partitioned gateway must fence its clients before it is declared "
      "down" },
    { NODE_TEST_CL "  fence_timeout_ms: 4500\n",
      "t.yaml:10:21: cluster.gateway_lease_ms (5000) must be above "
      "cluster.fence_timeout_ms + 2 x cluster.election_timeout_ms (5100): "
      "a partitioned gateway must fence its clients before it is declared "
      "down" },
    { NODE_TEST_CL "  lease_ttl_ms: 7000\n",
      "t.yaml:10:17: cluster.lease_ttl_ms (7000) must be above "
      "cluster.fence_timeout_ms + cluster.gateway_lease_ms (7000): an "
      "address may go to another client only after its old holder was "
      "fenced" },
    { NODE_TEST_CL "  role: primary\n",
      "t.yaml:10:9: cluster.role: 'primary' is not one of active|standby" },
};

#define NODE_TEST_TAP_OVPN                                             \
    "openvpn: {dev: tap0, dev_type: tap, ca: /a, cert: /c, key: /k,\n" \
    "          network: 100.64.0.0/24}\n"
#define NODE_TEST_TAP_CL                                              \
    "cluster: {raft_id: 3, address: 198.18.0.3:7000, data_dir: /d,\n" \
    "          ca: /a, cert: /c, key: /k}\n"

static void node_test_bridge(void **state)
{
    (void)state;
    struct node_cfg *cfg = node_test_load_ok(
        "node: {id: gw1}\n" NODE_TEST_TAP_OVPN NODE_TEST_TAP_CL
        "bridge: {name: br0, uplink: eth1}\n");
    assert_true(cfg->openvpn.tap);
    assert_true(cfg->bridge.enabled);
    assert_string_equal(cfg->bridge.name, "br0");
    assert_string_equal(cfg->bridge.uplink, "eth1");
    node_cfg_free(cfg);
    cfg = node_test_load_ok(NODE_TEST_BASE);
    assert_false(cfg->openvpn.tap);
    assert_false(cfg->bridge.enabled);
    node_cfg_free(cfg);
}

static const struct node_test_bad node_test_bridge_bads[] = {
    { "node: {id: gw1}\n" NODE_TEST_TAP_OVPN NODE_TEST_TAP_CL,
      "t.yaml:2:32: openvpn.dev_type: tap needs a bridge: section ("
      "bridge.name, bridge.uplink)" },
    { "node: {id: gw1}\n"
      "openvpn: {ca: /a, cert: /c, key: /k, network: "
      "100.64.0.0/24}\n" NODE_TEST_TAP_CL "bridge: {name: br0, uplink: eth1}\n",
      "t.yaml:5:9: bridge: needs openvpn.dev_type: tap and a genera"
      "ted openvpn config (no openvpn.config)" },
    { "node: {id: gw1}\n" NODE_TEST_TAP_OVPN
      "bridge: {name: br0, uplink: eth1}\n",
      "t.yaml:4:9: bridge: needs the cluster: section (the MAC map "
      "is replicated state)" },
    { "node: {id: gw1}\n" NODE_TEST_TAP_OVPN NODE_TEST_TAP_CL
      "bridge: {name: br0, uplink: tap0}\n",
      "t.yaml:6:9: bridge: bridge.name, bridge.uplink and openvpn.d"
      "ev must be three different devices" },
    { "node: {id: gw1}\n" NODE_TEST_TAP_OVPN NODE_TEST_TAP_CL
      "bridge: {name: br0}\n",
      "t.yaml:1:1: bridge.uplink: must not be empty" },
};

static void node_test_bridge_errors(void **state)
{
    (void)state;
    size_t n = sizeof(node_test_bridge_bads) / sizeof(node_test_bridge_bads[0]);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        struct node_cfg *cfg = NULL;
        char err[512];
        int rv = node_cfg_load_string("t.yaml", node_test_bridge_bads[i].yaml,
                                      &cfg, err, sizeof(err));
        if (rv != OVHA_ECONFIG ||
            strcmp(err, node_test_bridge_bads[i].err) != 0) {
            print_error("case %zu: rv=%d\n  got:  %s\n  want: %s\n", i, rv, err,
                        node_test_bridge_bads[i].err);
            bad++;
        }
        assert_null(cfg);
    }
    assert_int_equal(bad, 0);
}

static void node_test_cluster_errors(void **state)
{
    (void)state;
    size_t n =
        sizeof(node_test_cluster_bads) / sizeof(node_test_cluster_bads[0]);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        struct node_cfg *cfg = NULL;
        char err[512];
        int rv = node_cfg_load_string("t.yaml", node_test_cluster_bads[i].yaml,
                                      &cfg, err, sizeof(err));
        if (rv != OVHA_ECONFIG ||
            strcmp(err, node_test_cluster_bads[i].err) != 0) {
            print_error("case %zu: rv=%d\n  got:  %s\n  want: %s\n", i, rv, err,
                        node_test_cluster_bads[i].err);
            bad++;
        }
        assert_null(cfg);
    }
    assert_int_equal(bad, 0);
}

/* No cluster key reloads; adding or dropping the section is named as
 * "cluster". */
static void node_test_cluster_reload(void **state)
{
    (void)state;
    static const char full[] = NODE_TEST_CL
        "  bootstrap: true\n"
        "  max_sessions: 2\n"
        "  on_excess: refuse\n";
    struct {
        const char *from, *to, *key;
    } changes[] = {
        { "raft_id: 3", "raft_id: 4", "cluster.raft_id" },
        { "198.18.0.3:7000", "198.18.0.3:7002", "cluster.address" },
        { "/var/lib/ovha/raft", "/var/lib/ovha/r2", "cluster.data_dir" },
        { "node-3.crt", "node-4.crt", "cluster.cert" },
        { "bootstrap: true", "bootstrap: false", "cluster.bootstrap" },
        { "max_sessions: 2", "max_sessions: 1", "cluster.max_sessions" },
        { "on_excess: refuse", "on_excess: evict_oldest", "cluster.on_excess" },
        { "  on_excess: refuse\n", "  on_excess: refuse\n  pool_name: p2\n",
          "cluster.pool_name" },
        { "  on_excess: refuse\n",
          "  on_excess: refuse\n  election_timeout_ms: 1200\n",
          "cluster.election_timeout_ms" },
        { "  on_excess: refuse\n",
          "  on_excess: refuse\npolicy: {default: allow}\n", NULL },
    };
    struct node_cfg *cur = node_test_load_ok(full), *next;
    struct ovha_buf b;
    char err[512], want[256];

    for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
        const char *at = strstr(full, changes[i].from);
        assert_non_null(at);
        ovha_buf_init(&b);
        ovha_buf_append(&b, full, (size_t)(at - full));
        ovha_buf_appends(&b, changes[i].to);
        ovha_buf_appends(&b, at + strlen(changes[i].from));
        next = node_test_load_ok(b.data);
        int rv = node_cfg_check_reload(cur, next, err, sizeof(err));
        if (changes[i].key == NULL) {
            assert_int_equal(rv, 0);
        } else {
            snprintf(want, sizeof(want),
                     "t.yaml: %s cannot change on reload (only log.* and "
                     "policy.* can; restart ovhad)",
                     changes[i].key);
            assert_int_equal(rv, OVHA_ECONFIG);
            assert_string_equal(err, want);
        }
        node_cfg_free(next);
        ovha_buf_free(&b);
    }

    /* Dropping the section, and adding it. */
    next = node_test_load_ok(NODE_TEST_BASE);
    assert_int_equal(node_cfg_check_reload(cur, next, err, sizeof(err)),
                     OVHA_ECONFIG);
    assert_string_equal(err,
                        "t.yaml: cluster cannot change on reload (only log.* "
                        "and policy.* can; restart ovhad)");
    assert_int_equal(node_cfg_check_reload(next, cur, err, sizeof(err)),
                     OVHA_ECONFIG);
    assert_string_equal(err,
                        "t.yaml: cluster cannot change on reload (only log.* "
                        "and policy.* can; restart ovhad)");
    node_cfg_free(next);
    node_cfg_free(cur);
}

/* ---- the upstream, cache and redis sections --------------------------- */

#define NODE_TEST_UP                              \
    NODE_TEST_BASE                                \
    "upstream:\n"                                 \
    "  url: https://198.18.0.50:8443/v1/decide\n" \
    "  ca: /etc/ovha/upstream-ca.crt\n"

/* Without the sections: upstream and Redis off, every default in place,
 * and cache.file under the default state_dir. */
static void node_test_upstream_defaults(void **state)
{
    (void)state;
    struct node_cfg *cfg = node_test_load_ok(node_test_minimal);
    const struct node_cfg_upstream *u = &cfg->upstream;
    const struct node_cfg_redis *r = &cfg->redis;

    assert_false(u->enabled);
    assert_string_equal(u->url, "");
    assert_string_equal(u->ca, "");
    assert_string_equal(u->client_cert, "");
    assert_string_equal(u->client_key, "");
    assert_int_equal(u->connect_timeout_ms, 500);
    assert_int_equal(u->timeout_ms, 1500);
    assert_int_equal(u->retries, 0);
    assert_int_equal(u->backoff_ms, 50);
    assert_int_equal(u->max_concurrency, 16);
    assert_int_equal(u->breaker_failures, 5);
    assert_int_equal(u->breaker_open_ms, 5000);
    assert_int_equal(u->max_body, 65536);
    assert_int_equal(u->deadline_ms, 2000);
    assert_int_equal(cfg->cache.memory_entries, 100000);
    assert_string_equal(cfg->cache.file, "/run/ovha/answers.db");
    assert_int_equal(cfg->cache.max_stale_s, 86400);
    assert_false(r->enabled);
    assert_string_equal(r->host, "127.0.0.1");
    assert_int_equal(r->port, 6379);
    assert_string_equal(r->password_file, "");
    assert_string_equal(r->key_prefix, "ovha:");
    assert_int_equal(r->connect_timeout_ms, 1000);
    assert_int_equal(r->timeout_ms, 100);
    node_cfg_free(cfg);

    /* Only the required keys, and empty cache/redis sections: both
     * sections on, defaults as above. */
    cfg = node_test_load_ok(NODE_TEST_UP "cache:\nredis:\n");
    assert_true(cfg->upstream.enabled);
    assert_string_equal(cfg->upstream.url,
                        "https://198.18.0.50:8443/v1/decide");
    assert_string_equal(cfg->upstream.ca, "/etc/ovha/upstream-ca.crt");
    assert_string_equal(cfg->upstream.client_cert, "");
    assert_int_equal(cfg->upstream.timeout_ms, 1500);
    assert_int_equal(cfg->upstream.deadline_ms, 2000);
    assert_int_equal(cfg->cache.memory_entries, 100000);
    assert_string_equal(cfg->cache.file, "/run/ovha/answers.db");
    assert_true(cfg->redis.enabled);
    assert_string_equal(cfg->redis.host, "127.0.0.1");
    assert_int_equal(cfg->redis.port, 6379);
    assert_string_equal(cfg->redis.key_prefix, "ovha:");
    /* The local policy still parses and still gives the pool. */
    assert_string_equal(cfg->policy.pool.addr, "100.64.0.0");
    node_cfg_free(cfg);
}

static void node_test_upstream_full(void **state)
{
    (void)state;
    struct node_cfg *cfg =
        node_test_load_ok(NODE_TEST_UP
                          "  client_cert: /etc/ovha/gw1-up.crt\n"
                          "  client_key: /etc/ovha/gw1-up.key\n"
                          "  connect_timeout_ms: 250\n"
                          "  timeout_ms: 900\n"
                          "  retries: 2\n"
                          "  backoff_ms: 75\n"
                          "  max_concurrency: 64\n"
                          "  breaker_failures: 9\n"
                          "  breaker_open_ms: 12000\n"
                          "  max_body: 131072\n"
                          "  deadline_ms: 2800\n" /* 2800 + 200 = 3000 */
                          "cache:\n"
                          "  memory_entries: 0\n"
                          "  file: /var/lib/ovha/answers.sqlite\n"
                          "  max_stale_s: 3600\n"
                          "redis:\n"
                          "  host: 198.18.0.60\n"
                          "  port: 6380\n"
                          "  password_file: /etc/ovha/redis.pass\n"
                          "  key_prefix: \"eu-west/ovha:{gw}~\"\n"
                          "  connect_timeout_ms: 60000\n"
                          "  timeout_ms: 10000\n");
    const struct node_cfg_upstream *u = &cfg->upstream;
    const struct node_cfg_redis *r = &cfg->redis;

    assert_true(u->enabled);
    assert_string_equal(u->url, "https://198.18.0.50:8443/v1/decide");
    assert_string_equal(u->ca, "/etc/ovha/upstream-ca.crt");
    assert_string_equal(u->client_cert, "/etc/ovha/gw1-up.crt");
    assert_string_equal(u->client_key, "/etc/ovha/gw1-up.key");
    assert_int_equal(u->connect_timeout_ms, 250);
    assert_int_equal(u->timeout_ms, 900);
    assert_int_equal(u->retries, 2);
    assert_int_equal(u->backoff_ms, 75);
    assert_int_equal(u->max_concurrency, 64);
    assert_int_equal(u->breaker_failures, 9);
    assert_int_equal(u->breaker_open_ms, 12000);
    assert_int_equal(u->max_body, 131072);
    assert_int_equal(u->deadline_ms, 2800);
    assert_int_equal(cfg->cache.memory_entries, 0);
    assert_string_equal(cfg->cache.file, "/var/lib/ovha/answers.sqlite");
    assert_int_equal(cfg->cache.max_stale_s, 3600);
    assert_true(r->enabled);
    assert_string_equal(r->host, "198.18.0.60");
    assert_int_equal(r->port, 6380);
    assert_string_equal(r->password_file, "/etc/ovha/redis.pass");
    assert_string_equal(r->key_prefix, "eu-west/ovha:{gw}~");
    assert_int_equal(r->connect_timeout_ms, 60000);
    assert_int_equal(r->timeout_ms, 10000);
    node_cfg_free(cfg);

    /* The bounds themselves are accepted; a redis section works without
     * an upstream one, a cache section too. */
    cfg = node_test_load_ok(NODE_TEST_BASE
                            "upstream: {url: \"https://h\", ca: /a, "
                            "connect_timeout_ms: 60000, timeout_ms: 60000, "
                            "retries: 10, backoff_ms: 10000, "
                            "max_concurrency: 1024, breaker_failures: 1000, "
                            "breaker_open_ms: 600000, max_body: 16777216, "
                            "deadline_ms: 50}\n"
                            "cache: {memory_entries: 10000000, "
                            "max_stale_s: 31536000}\n");
    assert_int_equal(cfg->upstream.connect_timeout_ms, 60000);
    assert_int_equal(cfg->upstream.retries, 10);
    assert_int_equal(cfg->upstream.max_body, 16777216);
    assert_int_equal(cfg->upstream.deadline_ms, 50);
    assert_int_equal(cfg->cache.memory_entries, 10000000);
    assert_int_equal(cfg->cache.max_stale_s, 31536000);
    assert_false(cfg->redis.enabled);
    node_cfg_free(cfg);
    cfg = node_test_load_ok(NODE_TEST_BASE
                            "redis: {port: 1, key_prefix: \"!\", "
                            "timeout_ms: 1, connect_timeout_ms: 1}\n");
    assert_false(cfg->upstream.enabled);
    assert_true(cfg->redis.enabled);
    assert_int_equal(cfg->redis.port, 1);
    assert_string_equal(cfg->redis.key_prefix, "!");
    node_cfg_free(cfg);
}

/* cache.file follows node.state_dir unless it is set. */
static void node_test_cache_file(void **state)
{
    (void)state;
    char yaml[1024], err[512], dir[300];
    struct node_cfg *cfg = node_test_load_ok(
        "node: {id: a, state_dir: /srv/ovha/gw7}\n"
        "openvpn: {config: /o, network: 100.64.0.0/24}\n");
    assert_string_equal(cfg->cache.file, "/srv/ovha/gw7/answers.db");
    assert_string_equal(cfg->http_socket, "/srv/ovha/gw7/ovhad.sock");
    node_cfg_free(cfg);

    /* An empty value means the default, as for http_socket. */
    cfg = node_test_load_ok(
        "node: {id: a, state_dir: /srv/x}\n"
        "openvpn: {config: /o, network: 100.64.0.0/24}\n"
        "cache: {file: \"\"}\n");
    assert_string_equal(cfg->cache.file, "/srv/x/answers.db");
    node_cfg_free(cfg);

    /* A state_dir too long for the derived name is named: 245 bytes and
     * "/answers.db" (11) do not fit in 255. */
    dir[0] = '/';
    memset(dir + 1, 'd', 244);
    dir[245] = '\0';
    snprintf(yaml, sizeof(yaml),
             "node: {id: a, state_dir: %s, http_socket: /s}\n"
             "openvpn: {config: /o, network: 100.64.0.0/24}\n",
             dir);
    cfg = NULL;
    assert_int_equal(
        node_cfg_load_string("t.yaml", yaml, &cfg, err, sizeof(err)),
        OVHA_ECONFIG);
    assert_null(cfg);
    assert_string_equal(err,
                        "t.yaml:1:26: node.state_dir: too long to derive "
                        "cache.file from it");
    /* One byte less fits exactly, and an explicit file needs no room. */
    dir[244] = '\0';
    snprintf(yaml, sizeof(yaml),
             "node: {id: a, state_dir: %s, http_socket: /s}\n"
             "openvpn: {config: /o, network: 100.64.0.0/24}\n",
             dir);
    cfg = node_test_load_ok(yaml);
    assert_int_equal(strlen(cfg->cache.file), 255);
    node_cfg_free(cfg);
    dir[244] = 'd';
    snprintf(yaml, sizeof(yaml),
             "node: {id: a, state_dir: %s, http_socket: /s}\n"
             "openvpn: {config: /o, network: 100.64.0.0/24}\n"
             "cache: {file: /c.db}\n",
             dir);
    cfg = node_test_load_ok(yaml);
    assert_string_equal(cfg->cache.file, "/c.db");
    node_cfg_free(cfg);
}

/* upstream.url holds at most 511 bytes. */
static void node_test_upstream_long_url(void **state)
{
    (void)state;
    char url[600], yaml[1024], err[512];
    struct node_cfg *cfg = NULL;

    memcpy(url, "https://", 8);
    memset(url + 8, 'h', 504);
    url[512] = '\0';
    snprintf(yaml, sizeof(yaml),
             NODE_TEST_BASE "upstream:\n  ca: /a\n  url: %s\n", url);
    assert_int_equal(
        node_cfg_load_string("t.yaml", yaml, &cfg, err, sizeof(err)),
        OVHA_ECONFIG);
    assert_null(cfg);
    assert_string_equal(err,
                        "t.yaml:5:8: upstream.url: longer than 511 "
                        "bytes");
    url[511] = '\0';
    snprintf(yaml, sizeof(yaml),
             NODE_TEST_BASE "upstream:\n  ca: /a\n  url: %s\n", url);
    cfg = node_test_load_ok(yaml);
    assert_int_equal(strlen(cfg->upstream.url), 511);
    node_cfg_free(cfg);
}

#define NODE_TEST_WHY                                                       \
    "the cache fallback needs that time to answer before the connection's " \
    "deadline denies the client"

static const struct node_test_bad node_test_upstream_bads[] = {
    /* Required keys, only when the section is there. */
    { NODE_TEST_BASE "upstream:\n",
      "t.yaml:3:10: missing required key 'upstream.url'" },
    { NODE_TEST_BASE "upstream:\n  ca: /a\n",
      "t.yaml:4:3: missing required key 'upstream.url'" },
    { NODE_TEST_BASE "upstream: {url: \"https://h/\"}\n",
      "t.yaml:3:11: missing required key 'upstream.ca'" },
    { NODE_TEST_BASE "upstream:\n  url:\n  ca: /a\n",
      "t.yaml:4:7: upstream.url: must not be empty" },
    { NODE_TEST_BASE "upstream:\n  url: https://h/\n  ca: \"\"\n",
      "t.yaml:5:7: upstream.ca: must not be empty" },
    /* Only https. */
    { NODE_TEST_BASE "upstream: {url: \"http://h/v1/decide\", ca: /a}\n",
      "t.yaml:3:17: upstream.url: 'http://h/v1/decide' is not an https:// "
      "URL (https://host[:port]/path, no spaces)" },
    { NODE_TEST_BASE "upstream: {url: \"HTTPS://h/\", ca: /a}\n",
      "t.yaml:3:17: upstream.url: 'HTTPS://h/' is not an https:// URL "
      "(https://host[:port]/path, no spaces)" },
    { NODE_TEST_BASE "upstream: {url: \"https://\", ca: /a}\n",
      "t.yaml:3:17: upstream.url: 'https://' is not an https:// URL "
      "(https://host[:port]/path, no spaces)" },
    { NODE_TEST_BASE "upstream: {url: \"https://h/a b\", ca: /a}\n",
      "t.yaml:3:17: upstream.url: 'https://h/a b' is not an https:// URL "
      "(https://host[:port]/path, no spaces)" },
    { NODE_TEST_BASE "upstream: {url: \"https://h/\\n\", ca: /a}\n",
      "t.yaml:3:17: upstream.url: 'https://h/\\x0a' contains a control "
      "character" },
    /* A client identity is both files or none. */
    { NODE_TEST_UP "  client_cert: /c.crt\n",
      "t.yaml:4:3: missing required key 'upstream.client_key' (needed when "
      "upstream.client_cert is set; give both or neither)" },
    { NODE_TEST_UP "  client_key: /c.key\n",
      "t.yaml:4:3: missing required key 'upstream.client_cert' (needed when "
      "upstream.client_key is set; give both or neither)" },
    { NODE_TEST_UP "  client_cert: /c.crt\n  client_key: \"\"\n",
      "t.yaml:7:15: upstream.client_key: must not be empty when "
      "upstream.client_cert is set (give both or neither)" },
    /* Unknown and duplicate keys, wrong shapes. */
    { NODE_TEST_UP "  colour: red\n",
      "t.yaml:6:3: unknown key 'colour' in section 'upstream'" },
    { NODE_TEST_UP "  deadline: 100\n",
      "t.yaml:6:3: unknown key 'deadline' in section 'upstream'" },
    { NODE_TEST_UP "  url: https://x/\n",
      "t.yaml:6:3: duplicate key 'url' in section 'upstream' (first at "
      "4:3)" },
    { NODE_TEST_BASE "upstream: [1]\n",
      "t.yaml:3:11: section 'upstream' must be a mapping" },
    { NODE_TEST_BASE "upstream.url: https://h/\n",
      "t.yaml:3:1: unknown top-level key 'upstream.url'" },
    { NODE_TEST_UP "  retries: \"2\"\n",
      "t.yaml:6:12: upstream.retries: expected an integer, got '2'" },
    /* Bounds. */
    { NODE_TEST_UP "  connect_timeout_ms: 0\n",
      "t.yaml:6:23: upstream.connect_timeout_ms: 0 is out of range [1, "
      "60000]" },
    { NODE_TEST_UP "  timeout_ms: 60001\n",
      "t.yaml:6:15: upstream.timeout_ms: 60001 is out of range [1, 60000]" },
    { NODE_TEST_UP "  retries: 11\n",
      "t.yaml:6:12: upstream.retries: 11 is out of range [0, 10]" },
    { NODE_TEST_UP "  backoff_ms: 0\n",
      "t.yaml:6:15: upstream.backoff_ms: 0 is out of range [1, 10000]" },
    { NODE_TEST_UP "  backoff_ms: 10001\n",
      "t.yaml:6:15: upstream.backoff_ms: 10001 is out of range [1, 10000]" },
    { NODE_TEST_UP "  max_concurrency: 1025\n",
      "t.yaml:6:20: upstream.max_concurrency: 1025 is out of range [1, "
      "1024]" },
    { NODE_TEST_UP "  max_concurrency: 0\n",
      "t.yaml:6:20: upstream.max_concurrency: 0 is out of range [1, 1024]" },
    { NODE_TEST_UP "  breaker_failures: 0\n",
      "t.yaml:6:21: upstream.breaker_failures: 0 is out of range [1, "
      "1000]" },
    { NODE_TEST_UP "  breaker_failures: 1001\n",
      "t.yaml:6:21: upstream.breaker_failures: 1001 is out of range [1, "
      "1000]" },
    { NODE_TEST_UP "  breaker_open_ms: 99\n",
      "t.yaml:6:20: upstream.breaker_open_ms: 99 is out of range [100, "
      "600000]" },
    { NODE_TEST_UP "  breaker_open_ms: 600001\n",
      "t.yaml:6:20: upstream.breaker_open_ms: 600001 is out of range [100, "
      "600000]" },
    { NODE_TEST_UP "  max_body: 1023\n",
      "t.yaml:6:13: upstream.max_body: 1023 is out of range [1024, "
      "16777216]" },
    { NODE_TEST_UP "  max_body: 16777217\n",
      "t.yaml:6:13: upstream.max_body: 16777217 is out of range [1024, "
      "16777216]" },
    { NODE_TEST_UP "  deadline_ms: 49\n",
      "t.yaml:6:16: upstream.deadline_ms: 49 is out of range [50, 60000]" },
    { NODE_TEST_UP "  deadline_ms: 60001\n",
      "t.yaml:6:16: upstream.deadline_ms: 60001 is out of range [50, "
      "60000]" },
    /* Timers that must nest. */
    { NODE_TEST_UP "  connect_timeout_ms: 2000\n",
      "t.yaml:6:23: upstream.connect_timeout_ms (2000) exceeds "
      "upstream.timeout_ms (1500)" },
    { NODE_TEST_UP "  timeout_ms: 400\n",
      "t.yaml:6:15: upstream.connect_timeout_ms (500) exceeds "
      "upstream.timeout_ms (400)" },
    { NODE_TEST_UP "  deadline_ms: 2801\n",
      "t.yaml:6:16: upstream.deadline_ms (2801) must be at least 200 ms "
      "below decision.deadline_ms (3000): " NODE_TEST_WHY },
    { NODE_TEST_BASE "decision: {deadline_ms: 2199}\n"
                     "upstream: {url: \"https://h/\", ca: /a}\n",
      "t.yaml:3:25: upstream.deadline_ms (2000) must be at least 200 ms "
      "below decision.deadline_ms (2199): " NODE_TEST_WHY },
    /* cache */
    { NODE_TEST_BASE "cache: {memory_entries: 10000001}\n",
      "t.yaml:3:25: cache.memory_entries: 10000001 is out of range [0, "
      "10000000]" },
    { NODE_TEST_BASE "cache: {max_stale_s: 31536001}\n",
      "t.yaml:3:22: cache.max_stale_s: 31536001 is out of range [0, "
      "31536000]" },
    { NODE_TEST_BASE "cache: {ttl: 5}\n",
      "t.yaml:3:9: unknown key 'ttl' in section 'cache'" },
    { NODE_TEST_BASE "cache: 5\n",
      "t.yaml:3:8: section 'cache' must be a mapping" },
    /* redis */
    { NODE_TEST_BASE "redis: {key_prefix: \"a b\"}\n",
      "t.yaml:3:21: redis.key_prefix: 'a b' may only contain printable "
      "ASCII without spaces" },
    { NODE_TEST_BASE "redis: {key_prefix: \"ovha\\u00e9\"}\n",
      "t.yaml:3:21: redis.key_prefix: 'ovha\\xc3\\xa9' may only contain "
      "printable ASCII without spaces" },
    { NODE_TEST_BASE "redis: {key_prefix: \"a\\tb\"}\n",
      "t.yaml:3:21: redis.key_prefix: 'a\\x09b' contains a control "
      "character" },
    { NODE_TEST_BASE "redis: {key_prefix: \"\"}\n",
      "t.yaml:3:21: redis.key_prefix: must not be empty" },
    { NODE_TEST_BASE "redis: {key_prefix: "
                     "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
                     "kkkkkkkkk}\n",
      "t.yaml:3:21: redis.key_prefix: longer than 63 bytes" },
    { NODE_TEST_BASE "redis: {host: \"\"}\n",
      "t.yaml:3:15: redis.host: must not be empty" },
    { NODE_TEST_BASE "redis: {port: 0}\n",
      "t.yaml:3:15: redis.port: 0 is out of range [1, 65535]" },
    { NODE_TEST_BASE "redis: {port: 65536}\n",
      "t.yaml:3:15: redis.port: 65536 is out of range [1, 65535]" },
    { NODE_TEST_BASE "redis: {connect_timeout_ms: 60001}\n",
      "t.yaml:3:29: redis.connect_timeout_ms: 60001 is out of range [1, "
      "60000]" },
    { NODE_TEST_BASE "redis: {timeout_ms: 0}\n",
      "t.yaml:3:21: redis.timeout_ms: 0 is out of range [1, 10000]" },
    { NODE_TEST_BASE "redis: {timeout_ms: 10001}\n",
      "t.yaml:3:21: redis.timeout_ms: 10001 is out of range [1, 10000]" },
    { NODE_TEST_BASE "redis: {password: x}\n",
      "t.yaml:3:9: unknown key 'password' in section 'redis'" },
};

static void node_test_upstream_errors(void **state)
{
    (void)state;
    size_t n =
        sizeof(node_test_upstream_bads) / sizeof(node_test_upstream_bads[0]);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        struct node_cfg *cfg = NULL;
        char err[512];
        int rv = node_cfg_load_string("t.yaml", node_test_upstream_bads[i].yaml,
                                      &cfg, err, sizeof(err));
        if (rv != OVHA_ECONFIG ||
            strcmp(err, node_test_upstream_bads[i].err) != 0) {
            print_error("case %zu: rv=%d\n  got:  %s\n  want: %s\n", i, rv, err,
                        node_test_upstream_bads[i].err);
            bad++;
        }
        assert_null(cfg);
    }
    assert_int_equal(bad, 0);
}

/* No key of the three sections reloads; adding or dropping upstream or
 * redis is named by the section. */
static void node_test_upstream_reload(void **state)
{
    (void)state;
    static const char full[] = NODE_TEST_UP
        "  client_cert: /up.crt\n"
        "  client_key: /up.key\n"
        "  retries: 1\n"
        "cache:\n"
        "  memory_entries: 500\n"
        "  max_stale_s: 600\n"
        "redis:\n"
        "  port: 6380\n"
        "  key_prefix: \"gw:\"\n"
        "policy: {default: deny}\n";
    struct {
        const char *from, *to, *key;
    } changes[] = {
        { "https://198.18.0.50:8443/v1/decide",
          "https://198.18.0.51:8443/v1/decide", "upstream.url" },
        { "upstream-ca.crt", "other-ca.crt", "upstream.ca" },
        { "/up.crt", "/up2.crt", "upstream.client_cert" },
        { "/up.key", "/up2.key", "upstream.client_key" },
        { "retries: 1", "retries: 2", "upstream.retries" },
        { "  retries: 1\n", "  retries: 1\n  deadline_ms: 2500\n",
          "upstream.deadline_ms" },
        { "  retries: 1\n", "  retries: 1\n  max_body: 2048\n",
          "upstream.max_body" },
        { "memory_entries: 500", "memory_entries: 501",
          "cache.memory_entries" },
        { "  max_stale_s: 600\n", "  max_stale_s: 600\n  file: /c.db\n",
          "cache.file" },
        { "max_stale_s: 600", "max_stale_s: 601", "cache.max_stale_s" },
        { "port: 6380", "port: 6381", "redis.port" },
        { "\"gw:\"", "\"gw2:\"", "redis.key_prefix" },
        { "  port: 6380\n", "  port: 6380\n  host: 198.18.0.61\n",
          "redis.host" },
        { "  port: 6380\n", "  port: 6380\n  password_file: /p\n",
          "redis.password_file" },
        { "  port: 6380\n", "  port: 6380\n  timeout_ms: 99\n",
          "redis.timeout_ms" },
        /* The whole redis section, removed; then the cache section
         * dropped with its values back at the defaults is a change of
         * values, named by the first one. */
        { "redis:\n  port: 6380\n  key_prefix: \"gw:\"\n", "", "redis" },
        { "cache:\n  memory_entries: 500\n  max_stale_s: 600\n", "",
          "cache.memory_entries" },
        /* policy.* still reloads next to these sections. */
        { "policy: {default: deny}", "policy: {default: allow}", NULL },
    };
    struct node_cfg *cur = node_test_load_ok(full), *next;
    struct ovha_buf b;
    char err[512], want[256];

    for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
        const char *at = strstr(full, changes[i].from);
        assert_non_null(at);
        ovha_buf_init(&b);
        ovha_buf_append(&b, full, (size_t)(at - full));
        ovha_buf_appends(&b, changes[i].to);
        ovha_buf_appends(&b, at + strlen(changes[i].from));
        next = node_test_load_ok(b.data);
        int rv = node_cfg_check_reload(cur, next, err, sizeof(err));
        if (changes[i].key == NULL) {
            assert_int_equal(rv, 0);
        } else {
            snprintf(want, sizeof(want),
                     "t.yaml: %s cannot change on reload (only log.* and "
                     "policy.* can; restart ovhad)",
                     changes[i].key);
            assert_int_equal(rv, OVHA_ECONFIG);
            assert_string_equal(err, want);
        }
        node_cfg_free(next);
        ovha_buf_free(&b);
    }

    /* Adding an upstream or a redis section that holds only defaults is
     * still a change, named by the section. */
    struct node_cfg *plain = node_test_load_ok(NODE_TEST_BASE);
    next = node_test_load_ok(NODE_TEST_BASE "redis:\n");
    assert_int_equal(node_cfg_check_reload(plain, next, err, sizeof(err)),
                     OVHA_ECONFIG);
    assert_string_equal(err,
                        "t.yaml: redis cannot change on reload (only log.* "
                        "and policy.* can; restart ovhad)");
    node_cfg_free(next);
    next = node_test_load_ok(NODE_TEST_UP);
    assert_int_equal(node_cfg_check_reload(plain, next, err, sizeof(err)),
                     OVHA_ECONFIG);
    assert_string_equal(err,
                        "t.yaml: upstream cannot change on reload (only log.* "
                        "and policy.* can; restart ovhad)");
    assert_int_equal(node_cfg_check_reload(next, plain, err, sizeof(err)),
                     OVHA_ECONFIG);
    assert_string_equal(err,
                        "t.yaml: upstream cannot change on reload (only log.* "
                        "and policy.* can; restart ovhad)");
    node_cfg_free(next);
    /* An empty cache section is the defaults: nothing changed. */
    next = node_test_load_ok(NODE_TEST_BASE "cache:\n");
    assert_int_equal(node_cfg_check_reload(plain, next, err, sizeof(err)), 0);
    node_cfg_free(next);
    node_cfg_free(plain);
    node_cfg_free(cur);
}

static void node_test_errors(void **state)
{
    (void)state;
    size_t n = sizeof(node_test_bads) / sizeof(node_test_bads[0]);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        struct node_cfg *cfg = NULL;
        char err[512];
        int rv = node_cfg_load_string("t.yaml", node_test_bads[i].yaml, &cfg,
                                      err, sizeof(err));
        if (rv != OVHA_ECONFIG || strcmp(err, node_test_bads[i].err) != 0) {
            print_error("case %zu: rv=%d\n  got:  %s\n  want: %s\n", i, rv, err,
                        node_test_bads[i].err);
            bad++;
        }
        assert_null(cfg);
    }
    assert_int_equal(bad, 0);
}

static void node_test_long_cn(void **state)
{
    (void)state;
    char yaml[1024], err[512];
    struct node_cfg *cfg = NULL;
    char cn[300];
    memset(cn, 'c', 256);
    cn[256] = '\0';
    snprintf(yaml, sizeof(yaml),
             NODE_TEST_BASE
             "policy:\n  clients:\n"
             "    - cn: %s\n",
             cn);
    assert_int_equal(
        node_cfg_load_string("t.yaml", yaml, &cfg, err, sizeof(err)),
        OVHA_ECONFIG);
    assert_string_equal(err,
                        "t.yaml:5:11: policy.clients[0].cn: longer than 255 "
                        "bytes");
    cn[255] = '\0';
    snprintf(yaml, sizeof(yaml),
             NODE_TEST_BASE
             "policy:\n  clients:\n"
             "    - cn: %s\n",
             cn);
    assert_int_equal(
        node_cfg_load_string("t.yaml", yaml, &cfg, err, sizeof(err)), 0);
    assert_int_equal(strlen(cfg->policy.clients[0].cn), 255);
    node_cfg_free(cfg);
}

static void node_test_too_many_routes(void **state)
{
    (void)state;
    struct ovha_buf b;
    struct node_cfg *cfg = NULL;
    char err[512];
    ovha_buf_init(&b);
    ovha_buf_appends(&b, NODE_TEST_BASE
                     "policy:\n  groups:\n    - name: g\n"
                     "      routes:\n");
    for (int i = 0; i <= NODE_CFG_MAX_ROUTES; i++) {
        ovha_buf_printf(&b, "        - 100.65.%d.0/24\n", i);
    }
    assert_int_equal(
        node_cfg_load_string("t.yaml", b.data, &cfg, err, sizeof(err)),
        OVHA_ECONFIG);
    assert_string_equal(err,
                        "t.yaml:71:11: policy.groups[0].routes: more than 64 "
                        "entries");
    ovha_buf_free(&b);
}

static void node_test_file(void **state)
{
    (void)state;
    char path[] = "/tmp/ovha-cfg-XXXXXX";
    char err[512];
    struct node_cfg *cfg = NULL;
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, node_test_minimal, strlen(node_test_minimal)),
                     (ssize_t)strlen(node_test_minimal));
    close(fd);
    assert_int_equal(node_cfg_load(path, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg->path, path);
    assert_string_equal(cfg->id, "gw2");
    node_cfg_free(cfg);
    unlink(path);
    assert_int_equal(node_cfg_load(path, &cfg, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "No such file"));
}

static void node_test_reload(void **state)
{
    (void)state;
    struct node_cfg *cur = node_test_load_ok(node_test_full);
    struct ovha_buf b;
    char err[512];
    struct node_cfg *next;

    /* policy.* and log.* may change. */
    ovha_buf_init(&b);
    ovha_buf_appends(&b, node_test_full);
    ovha_buf_appends(&b, "    - cn: carol\n");
    next = node_test_load_ok(b.data);
    assert_int_equal(node_cfg_check_reload(cur, next, err, sizeof(err)), 0);
    node_cfg_free(next);
    ovha_buf_free(&b);

    struct {
        const char *from, *to, *key;
    } changes[] = {
        { "level: debug", "level: err", NULL },
        { "format: json", "format: text", NULL },
        { "default: allow", "default: deny", NULL },
        { "pool: 100.64.0.128/25", "pool: 100.64.0.192/26", NULL },
        { "port: 1195", "port: 1196", "openvpn.port" },
        { "id: gw1", "id: gw9", "node.id" },
        { "network: 100.64.0.0/24", "network: 100.64.0.0/23",
          "openvpn.network" },
        { "keepalive: [15, 90]", "keepalive: [15, 91]", "openvpn.keepalive" },
        { "proto: tcp-server", "proto: udp", "openvpn.proto" },
        { "deadline_ms: 2500", "deadline_ms: 2600", "decision.deadline_ms" },
        { "stop_timeout_ms: 3000", "stop_timeout_ms: 3001",
          "openvpn.stop_timeout_ms" },
    };
    for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
        const char *at = strstr(node_test_full, changes[i].from);
        assert_non_null(at);
        ovha_buf_init(&b);
        ovha_buf_append(&b, node_test_full, (size_t)(at - node_test_full));
        ovha_buf_appends(&b, changes[i].to);
        ovha_buf_appends(&b, at + strlen(changes[i].from));
        next = node_test_load_ok(b.data);
        int rv = node_cfg_check_reload(cur, next, err, sizeof(err));
        if (changes[i].key == NULL) {
            assert_int_equal(rv, 0);
        } else {
            char want[256];
            snprintf(want, sizeof(want),
                     "t.yaml: %s cannot change on reload (only log.* and "
                     "policy.* can; restart ovhad)",
                     changes[i].key);
            assert_int_equal(rv, OVHA_ECONFIG);
            assert_string_equal(err, want);
        }
        node_cfg_free(next);
        ovha_buf_free(&b);
    }
    node_cfg_free(cur);
}

static void node_test_parse_net(void **state)
{
    (void)state;
    struct node_cfg_net n;
    assert_int_equal(node_cfg_parse_net("100.64.0.0/10", &n), 0);
    assert_string_equal(n.addr, "100.64.0.0");
    assert_int_equal(n.prefix, 10);
    assert_int_equal(node_cfg_parse_net("0.0.0.0/0", &n), 0);
    assert_int_equal(node_cfg_parse_net("fd00:0::/16", &n), 0);
    assert_string_equal(n.addr, "fd00::");
    assert_true(n.v6);
    assert_int_equal(node_cfg_parse_net("100.64.0.0/010", &n), -EINVAL);
    assert_int_equal(node_cfg_parse_net("100.64.0.0/", &n), -EINVAL);
    assert_int_equal(node_cfg_parse_net("100.64.0.0/+1", &n), -EINVAL);
    assert_int_equal(node_cfg_parse_net("100.64.0.0/33", &n), -EINVAL);
    assert_int_equal(node_cfg_parse_net("100.64.0.128/24", &n), -EINVAL);
    assert_int_equal(node_cfg_parse_net("100.64.0.0", &n), -EINVAL);
    assert_int_equal(node_cfg_parse_net("fd00::1/64", &n), -EINVAL);
    assert_int_equal(node_cfg_parse_net("fd00::/129", &n), -EINVAL);
    assert_int_equal(node_cfg_parse_net("host/24", &n), -EINVAL);
}

/* Every allocation failure must end in -ENOMEM with nothing leaked. */
static void node_test_oom(void **state)
{
    (void)state;
    int ok = 0;
    for (long n = 0; n < 64 && !ok; n++) {
        struct node_cfg *cfg = NULL;
        char err[512];
        ovha_alloc_fail_after(n);
        int rv = node_cfg_load_string("t.yaml", node_test_full, &cfg, err,
                                      sizeof(err));
        ovha_alloc_fail_after(-1);
        if (rv == 0) {
            ok = 1;
            node_cfg_free(cfg);
        } else {
            assert_int_equal(rv, -ENOMEM);
            assert_null(cfg);
        }
    }
    assert_true(ok);
}

int node_test_config(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(node_test_full_file),
        cmocka_unit_test(node_test_defaults),
        cmocka_unit_test(node_test_operator_config),
        cmocka_unit_test(node_test_errors),
        cmocka_unit_test(node_test_long_cn),
        cmocka_unit_test(node_test_too_many_routes),
        cmocka_unit_test(node_test_file),
        cmocka_unit_test(node_test_reload),
        cmocka_unit_test(node_test_parse_net),
        cmocka_unit_test(node_test_oom),
        cmocka_unit_test(node_test_cluster_full),
        cmocka_unit_test(node_test_cluster_defaults),
        cmocka_unit_test(node_test_cluster_errors),
        cmocka_unit_test(node_test_bridge),
        cmocka_unit_test(node_test_bridge_errors),
        cmocka_unit_test(node_test_cluster_reload),
        cmocka_unit_test(node_test_upstream_defaults),
        cmocka_unit_test(node_test_upstream_full),
        cmocka_unit_test(node_test_cache_file),
        cmocka_unit_test(node_test_upstream_long_url),
        cmocka_unit_test(node_test_upstream_errors),
        cmocka_unit_test(node_test_upstream_reload),
    };
    return cmocka_run_group_tests_name("node_config", tests, NULL, NULL);
}
