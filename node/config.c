/* node/config: the YAML configuration file.
 *
 * The whole file is loaded with libyaml's document API, then walked once.
 * Every key the file may contain is a row of node_cfg_keys[]: its dotted
 * path, its type, where it is stored, its bounds, its default and whether
 * SIGHUP may change it. The walker looks each key up in that table, so an
 * unknown key, a duplicate key, a value of the wrong type or out of bounds
 * is reported where it is, as "file:line:col: message" (1-based). After the
 * walk, node_cfg_check() verifies what involves several keys (required
 * keys, addresses inside the tunnel network, group references, unique CNs).
 *
 * Only the first error is reported; the caller gets no partial config.
 */
#include "node/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "base/base.h"

/* Limits the header does not fix: they bound what an operator can grow. */
#define NODE_CFG_MAX_GROUPS        1024
#define NODE_CFG_MAX_CLIENTS       65536
#define NODE_CFG_MAX_CLIENT_GROUPS 8
#define NODE_CFG_MAX_FILE          (16u << 20)
/* What upstream.deadline_ms leaves the cache fallback before
 * decision.deadline_ms: a memory or SQLite lookup and the answer. */
#define NODE_CFG_FALLBACK_MS       200u

enum node_cfg_type {
    NODE_CFG_T_SECTION, /* a mapping of further keys */
    NODE_CFG_T_STR,     /* char[size], no control characters */
    NODE_CFG_T_NAME,    /* char[size], [A-Za-z0-9_.-]+ */
    NODE_CFG_T_CN,      /* char[size], non-empty, stored as is */
    NODE_CFG_T_UINT,    /* unsigned or uint64_t (by size) in [min, max] */
    NODE_CFG_T_PAIR,    /* [a, b]: two unsigned at off and off2 */
    NODE_CFG_T_CHOICE,  /* one of choices, copied into char[size] */
    NODE_CFG_T_ENUM,    /* one of choices, its index stored (int or bool) */
    NODE_CFG_T_ACTION,  /* allow|deny into a grant, sets action_set */
    NODE_CFG_T_NET,     /* a CIDR network, or "" when def is "" */
    NODE_CFG_T_IP,      /* an IPv4 or IPv6 address, or "" */
    NODE_CFG_T_IP4,     /* an IPv4 address, or "" */
    NODE_CFG_T_ADDR4,   /* "a.b.c.d:port", port 1..65534 (port+1 is used) */
    NODE_CFG_T_POOL,    /* char[size], [A-Za-z0-9_.:-]+ */
    NODE_CFG_T_NETLIST, /* CIDRs: array at off, size_t count at off2 */
    NODE_CFG_T_STRLIST, /* strings: char[max][size] at off, count at off2 */
    NODE_CFG_T_GROUPS,  /* policy.groups */
    NODE_CFG_T_CLIENTS, /* policy.clients */
};

/* Which struct a key's offsets are relative to. */
enum node_cfg_base {
    NODE_CFG_B_ROOT = 0, /* struct node_cfg */
    NODE_CFG_B_GROUP,    /* struct node_cfg_group */
    NODE_CFG_B_CLIENT,   /* struct node_cfg_client */
};

struct node_cfg_key {
    const char *path; /* "openvpn.port"; list elements as "policy.groups[]" */
    enum node_cfg_type type;
    enum node_cfg_base base;
    size_t off, off2, size; /* size: of the field, or of one list element */
    uint64_t min, max;      /* UINT/PAIR bounds; lists: max entries */
    uint64_t defnum, defnum2;
    const char *def;            /* default for string-like types */
    const char *const *choices; /* CHOICE/ENUM, NULL-terminated */
    enum node_cfg_type elem;    /* STRLIST: NAME or STR */
    bool reloadable;
    bool required; /* in an optional section: only when it is present */
    bool optional; /* SECTION: may be absent as a whole (cluster) */
};

static const char *const node_cfg_levels[] = { "err", "warn", "info", "debug",
                                               NULL };
static const char *const node_cfg_formats[] = { "text", "json", "logfmt",
                                                NULL };
static const char *const node_cfg_protos[] = { "udp", "tcp-server", NULL };
static const char *const node_cfg_actions[] = { "allow", "deny", NULL };
static const char *const node_cfg_bools[] = { "false", "true", NULL };
static const char *const node_cfg_excess[] = { "evict_oldest", "refuse", NULL };
static const char *const node_cfg_quota_actions[] = { "kill", "throttle",
                                                      NULL };
static const char *const node_cfg_roles[] = { "active", "standby", NULL };
static const char *const node_cfg_devtypes[] = { "tun", "tap", NULL };

#define NODE_CFG_FSIZE(type, f) sizeof(((type *)0)->f)
#define R(f)                                                      \
    .base = NODE_CFG_B_ROOT, .off = offsetof(struct node_cfg, f), \
    .size = NODE_CFG_FSIZE(struct node_cfg, f)
#define G(f)                                                             \
    .base = NODE_CFG_B_GROUP, .off = offsetof(struct node_cfg_group, f), \
    .size = NODE_CFG_FSIZE(struct node_cfg_group, f)
#define C(f)                                                               \
    .base = NODE_CFG_B_CLIENT, .off = offsetof(struct node_cfg_client, f), \
    .size = NODE_CFG_FSIZE(struct node_cfg_client, f)
#define NETS(B, T, arr, cnt)                                      \
    .base = B, .off = offsetof(T, arr), .off2 = offsetof(T, cnt), \
    .size = sizeof(struct node_cfg_net), .max = NODE_CFG_MAX_ROUTES
#define PUSH(B, T)                                                           \
    .base = B, .off = offsetof(T, grant.push),                               \
    .off2 = offsetof(T, grant.npush), .size = 256, .max = NODE_CFG_MAX_PUSH, \
    .elem = NODE_CFG_T_STR

/* The grant keys that groups and clients share. */
#define NODE_CFG_GRANT_KEYS(P, B, T, M)                            \
    { .path = P ".action",                                         \
      .type = NODE_CFG_T_ACTION,                                   \
      M(grant),                                                    \
      .choices = node_cfg_actions,                                 \
      .reloadable = true },                                        \
        { .path = P ".reason",                                     \
          .type = NODE_CFG_T_STR,                                  \
          M(grant.reason),                                         \
          .reloadable = true },                                    \
        { .path = P ".client_reason",                              \
          .type = NODE_CFG_T_STR,                                  \
          M(grant.client_reason),                                  \
          .reloadable = true },                                    \
        { .path = P ".routes",                                     \
          .type = NODE_CFG_T_NETLIST,                              \
          NETS(B, T, grant.routes, grant.nroutes),                 \
          .reloadable = true },                                    \
        { .path = P ".iroutes",                                    \
          .type = NODE_CFG_T_NETLIST,                              \
          NETS(B, T, grant.iroutes, grant.niroutes),               \
          .reloadable = true },                                    \
        { .path = P ".down_kbps",                                  \
          .type = NODE_CFG_T_UINT,                                 \
          M(grant.down_kbps),                                      \
          .max = 100000000,                                        \
          .reloadable = true },                                    \
        { .path = P ".up_kbps",                                    \
          .type = NODE_CFG_T_UINT,                                 \
          M(grant.up_kbps),                                        \
          .max = 100000000,                                        \
          .reloadable = true },                                    \
        { .path = P ".quota_bytes",                                \
          .type = NODE_CFG_T_UINT,                                 \
          M(grant.quota_bytes),                                    \
          .max = 1ULL << 50,                                       \
          .reloadable = true },                                    \
    {                                                              \
        .path = P ".push", .type = NODE_CFG_T_STRLIST, PUSH(B, T), \
        .reloadable = true                                         \
    }

/* Every key of the file. docs/configuration.md documents this table. */
static const struct node_cfg_key node_cfg_keys[] = {
    { .path = "node", .type = NODE_CFG_T_SECTION },
    { .path = "node.id", .type = NODE_CFG_T_NAME, R(id), .required = true },
    { .path = "node.state_dir",
      .type = NODE_CFG_T_STR,
      R(state_dir),
      .def = "/run/ovha" },
    { .path = "node.http_socket", .type = NODE_CFG_T_STR, R(http_socket) },

    { .path = "log", .type = NODE_CFG_T_SECTION, .reloadable = true },
    { .path = "log.level",
      .type = NODE_CFG_T_CHOICE,
      R(log_level),
      .choices = node_cfg_levels,
      .def = "info",
      .reloadable = true },
    { .path = "log.format",
      .type = NODE_CFG_T_ENUM,
      R(log_format),
      .choices = node_cfg_formats,
      .def = "text",
      .reloadable = true },

    { .path = "api", .type = NODE_CFG_T_SECTION },
    { .path = "api.tokens_file", .type = NODE_CFG_T_STR, R(api.tokens_file) },
    { .path = "api.listen", .type = NODE_CFG_T_STR, R(api.listen) },
    { .path = "api.tls_cert", .type = NODE_CFG_T_STR, R(api.tls_cert) },
    { .path = "api.tls_key", .type = NODE_CFG_T_STR, R(api.tls_key) },
    { .path = "api.client_ca", .type = NODE_CFG_T_STR, R(api.client_ca) },

    { .path = "management", .type = NODE_CFG_T_SECTION },
    { .path = "management.command_timeout_ms",
      .type = NODE_CFG_T_UINT,
      R(mgmt_cmd_timeout_ms),
      .min = 100,
      .max = 600000,
      .defnum = 5000 },
    { .path = "management.bytecount_interval",
      .type = NODE_CFG_T_UINT,
      R(bytecount_interval),
      .min = 0,
      .max = 3600,
      .defnum = 5 },

    { .path = "decision", .type = NODE_CFG_T_SECTION },
    { .path = "decision.deadline_ms",
      .type = NODE_CFG_T_UINT,
      R(decision_deadline_ms),
      .min = 100,
      .max = 60000,
      .defnum = 3000 },

    { .path = "openvpn", .type = NODE_CFG_T_SECTION },
    { .path = "openvpn.binary",
      .type = NODE_CFG_T_STR,
      R(openvpn.binary),
      .def = "/usr/sbin/openvpn" },
    { .path = "openvpn.config", .type = NODE_CFG_T_STR, R(openvpn.config) },
    { .path = "openvpn.dev",
      .type = NODE_CFG_T_NAME,
      R(openvpn.dev),
      .def = "tun0" },
    { .path = "openvpn.dev_type",
      .type = NODE_CFG_T_ENUM,
      R(openvpn.tap),
      .choices = node_cfg_devtypes,
      .def = "tun" },
    { .path = "openvpn.proto",
      .type = NODE_CFG_T_CHOICE,
      R(openvpn.proto),
      .choices = node_cfg_protos,
      .def = "udp" },
    { .path = "openvpn.local", .type = NODE_CFG_T_IP, R(openvpn.local) },
    { .path = "openvpn.port",
      .type = NODE_CFG_T_UINT,
      R(openvpn.port),
      .min = 1,
      .max = 65535,
      .defnum = 1194 },
    { .path = "openvpn.ca", .type = NODE_CFG_T_STR, R(openvpn.ca) },
    { .path = "openvpn.cert", .type = NODE_CFG_T_STR, R(openvpn.cert) },
    { .path = "openvpn.key", .type = NODE_CFG_T_STR, R(openvpn.key) },
    { .path = "openvpn.tls_crypt",
      .type = NODE_CFG_T_STR,
      R(openvpn.tls_crypt) },
    { .path = "openvpn.network",
      .type = NODE_CFG_T_NET,
      R(openvpn.network),
      .required = true },
    { .path = "openvpn.keepalive",
      .type = NODE_CFG_T_PAIR,
      R(openvpn.keepalive_interval),
      .off2 = offsetof(struct node_cfg, openvpn.keepalive_timeout),
      .min = 1,
      .max = 3600,
      .defnum = 10,
      .defnum2 = 60 },
    { .path = "openvpn.hand_window",
      .type = NODE_CFG_T_UINT,
      R(openvpn.hand_window),
      .min = 1,
      .max = 600,
      .defnum = 20 },
    { .path = "openvpn.fast_push",
      .type = NODE_CFG_T_ENUM,
      R(openvpn.fast_push),
      .choices = node_cfg_bools,
      .def = "true" },
    { .path = "openvpn.verb",
      .type = NODE_CFG_T_UINT,
      R(openvpn.verb),
      .min = 0,
      .max = 11,
      .defnum = 3 },
    { .path = "openvpn.restart_backoff_min_ms",
      .type = NODE_CFG_T_UINT,
      R(openvpn.restart_backoff_min_ms),
      .min = 10,
      .max = 600000,
      .defnum = 500 },
    { .path = "openvpn.restart_backoff_max_ms",
      .type = NODE_CFG_T_UINT,
      R(openvpn.restart_backoff_max_ms),
      .min = 100,
      .max = 3600000,
      .defnum = 30000 },
    { .path = "openvpn.crash_loop_limit",
      .type = NODE_CFG_T_UINT,
      R(openvpn.crash_loop_limit),
      .min = 1,
      .max = 1000,
      .defnum = 5 },
    { .path = "openvpn.crash_loop_window_ms",
      .type = NODE_CFG_T_UINT,
      R(openvpn.crash_loop_window_ms),
      .min = 1000,
      .max = 86400000,
      .defnum = 60000 },
    { .path = "openvpn.stop_timeout_ms",
      .type = NODE_CFG_T_UINT,
      R(openvpn.stop_timeout_ms),
      .min = 100,
      .max = 600000,
      .defnum = 5000 },

    /* Replication (issue 4): present = clustered. Nothing here reloads. */
    { .path = "cluster", .type = NODE_CFG_T_SECTION, .optional = true },
    { .path = "cluster.raft_id",
      .type = NODE_CFG_T_UINT,
      R(cluster.raft_id),
      .min = 1,
      /* 2^63 - 1: every id fits a JSON integer in the admin API. */
      .max = INT64_MAX,
      .required = true },
    { .path = "cluster.address",
      .type = NODE_CFG_T_ADDR4,
      R(cluster.address),
      .required = true },
    { .path = "cluster.data_dir",
      .type = NODE_CFG_T_STR,
      R(cluster.data_dir),
      .required = true },
    { .path = "cluster.bootstrap",
      .type = NODE_CFG_T_ENUM,
      R(cluster.bootstrap),
      .choices = node_cfg_bools,
      .def = "false" },
    { .path = "cluster.ca",
      .type = NODE_CFG_T_STR,
      R(cluster.ca),
      .required = true },
    { .path = "cluster.cert",
      .type = NODE_CFG_T_STR,
      R(cluster.cert),
      .required = true },
    { .path = "cluster.key",
      .type = NODE_CFG_T_STR,
      R(cluster.key),
      .required = true },
    { .path = "cluster.election_timeout_ms",
      .type = NODE_CFG_T_UINT,
      R(cluster.election_timeout_ms),
      .min = 50,
      .max = 60000,
      .defnum = 300 }, /* docs/benchmarks.md, raft: election time */
    { .path = "cluster.heartbeat_timeout_ms",
      .type = NODE_CFG_T_UINT,
      R(cluster.heartbeat_timeout_ms),
      .min = 10,
      .max = 10000,
      .defnum = 30 },
    { .path = "cluster.snapshot_threshold",
      .type = NODE_CFG_T_UINT,
      R(cluster.snapshot_threshold),
      .min = 64,
      .max = 10000000,
      .defnum = 65536 },
    { .path = "cluster.snapshot_trailing",
      .type = NODE_CFG_T_UINT,
      R(cluster.snapshot_trailing),
      .min = 64,
      .max = 10000000,
      .defnum = 8192 },
    { .path = "cluster.gateway_heartbeat_ms",
      .type = NODE_CFG_T_UINT,
      R(cluster.gateway_heartbeat_ms),
      .min = 100,
      .max = 60000,
      .defnum = 1000 },
    { .path = "cluster.usage_interval_ms",
      .type = NODE_CFG_T_UINT,
      R(cluster.usage_interval_ms),
      .min = 100,
      .max = 3600000,
      .defnum = 5000 },
    { .path = "cluster.pool_name",
      .type = NODE_CFG_T_POOL,
      R(cluster.pool_name),
      .def = "main" },
    { .path = "cluster.lease_ttl_ms",
      .type = NODE_CFG_T_UINT,
      R(cluster.lease_ttl_ms),
      .min = 1000,
      .max = 1ULL << 40,
      .defnum = 86400000 },
    { .path = "cluster.max_sessions",
      .type = NODE_CFG_T_UINT,
      R(cluster.max_sessions),
      .min = 1,
      .max = 64,
      .defnum = 1 },
    { .path = "cluster.on_excess",
      .type = NODE_CFG_T_ENUM,
      R(cluster.refuse_excess),
      .choices = node_cfg_excess,
      .def = "evict_oldest" },
    { .path = "cluster.gateway_lease_ms",
      .type = NODE_CFG_T_UINT,
      R(cluster.gateway_lease_ms),
      .min = 500,
      .max = 3600000,
      .defnum = 5000 },
    { .path = "cluster.fence_timeout_ms",
      .type = NODE_CFG_T_UINT,
      R(cluster.fence_timeout_ms),
      .min = 100,
      .max = 3600000,
      .defnum = 2000 },
    { .path = "cluster.role",
      .type = NODE_CFG_T_ENUM,
      R(cluster.standby),
      .choices = node_cfg_roles,
      .def = "active" },
    { .path = "cluster.standby_min_active",
      .type = NODE_CFG_T_UINT,
      R(cluster.standby_min_active),
      .min = 1,
      .max = 64,
      .defnum = 1 },
    { .path = "cluster.audit_archive",
      .type = NODE_CFG_T_STR,
      R(cluster.audit_archive) },
    { .path = "cluster.quota_action",
      .type = NODE_CFG_T_ENUM,
      R(cluster.quota_throttle),
      .choices = node_cfg_quota_actions,
      .def = "kill" },
    { .path = "cluster.quota_throttle_kbps",
      .type = NODE_CFG_T_UINT,
      R(cluster.quota_throttle_kbps),
      .min = 8,
      .max = 10000000,
      .defnum = 256 },
    { .path = "cluster.routes",
      .type = NODE_CFG_T_ENUM,
      R(cluster.routes),
      .choices = node_cfg_bools,
      .def = "true" },
    { .path = "cluster.route_interval_ms",
      .type = NODE_CFG_T_UINT,
      R(cluster.route_interval_ms),
      .min = 100,
      .max = 3600000,
      .defnum = 1000 },
    { .path = "cluster.route_table",
      .type = NODE_CFG_T_UINT,
      R(cluster.route_table),
      .min = 1,
      .max = 4294967295ULL,
      .defnum = 254 },
    { .path = "cluster.route_protocol",
      .type = NODE_CFG_T_UINT,
      R(cluster.route_protocol),
      .min = 5,
      .max = 255,
      .defnum = 233 },

    /* The upstream decision API (issue 5, docs/upstream.md): present =
     * rules from the upstream, not from policy.clients/groups. Nothing in
     * these three sections reloads. */
    { .path = "upstream", .type = NODE_CFG_T_SECTION, .optional = true },
    { .path = "upstream.url",
      .type = NODE_CFG_T_STR,
      R(upstream.url),
      .required = true },
    { .path = "upstream.ca",
      .type = NODE_CFG_T_STR,
      R(upstream.ca),
      .required = true },
    { .path = "upstream.client_cert",
      .type = NODE_CFG_T_STR,
      R(upstream.client_cert) },
    { .path = "upstream.client_key",
      .type = NODE_CFG_T_STR,
      R(upstream.client_key) },
    { .path = "upstream.connect_timeout_ms",
      .type = NODE_CFG_T_UINT,
      R(upstream.connect_timeout_ms),
      .min = 1,
      .max = 60000,
      .defnum = 500 },
    { .path = "upstream.timeout_ms",
      .type = NODE_CFG_T_UINT,
      R(upstream.timeout_ms),
      .min = 1,
      .max = 60000,
      .defnum = 1500 },
    { .path = "upstream.retries",
      .type = NODE_CFG_T_UINT,
      R(upstream.retries),
      .min = 0,
      .max = 10,
      .defnum = 0 },
    { .path = "upstream.backoff_ms",
      .type = NODE_CFG_T_UINT,
      R(upstream.backoff_ms),
      .min = 1,
      .max = 10000,
      .defnum = 50 },
    { .path = "upstream.max_concurrency",
      .type = NODE_CFG_T_UINT,
      R(upstream.max_concurrency),
      .min = 1,
      .max = 1024,
      .defnum = 16 },
    { .path = "upstream.breaker_failures",
      .type = NODE_CFG_T_UINT,
      R(upstream.breaker_failures),
      .min = 1,
      .max = 1000,
      .defnum = 5 },
    { .path = "upstream.breaker_open_ms",
      .type = NODE_CFG_T_UINT,
      R(upstream.breaker_open_ms),
      .min = 100,
      .max = 600000,
      .defnum = 5000 },
    { .path = "upstream.max_body",
      .type = NODE_CFG_T_UINT,
      R(upstream.max_body),
      .min = 1024,
      .max = 16777216,
      .defnum = 65536 },
    { .path = "upstream.deadline_ms",
      .type = NODE_CFG_T_UINT,
      R(upstream.deadline_ms),
      .min = 50,
      .max = 60000,
      .defnum = 2000 },

    /* Defaults apply with or without the section; file is derived from
     * node.state_dir after the walk, like node.http_socket. */
    { .path = "cache", .type = NODE_CFG_T_SECTION },
    { .path = "cache.memory_entries",
      .type = NODE_CFG_T_UINT,
      R(cache.memory_entries),
      .min = 0,
      .max = 10000000,
      .defnum = 100000 },
    { .path = "cache.file", .type = NODE_CFG_T_STR, R(cache.file) },
    { .path = "cache.max_stale_s",
      .type = NODE_CFG_T_UINT,
      R(cache.max_stale_s),
      .min = 0,
      .max = 31536000,
      .defnum = 86400 },

    /* Present = bridged clients (openvpn.dev_type tap). */
    { .path = "bridge", .type = NODE_CFG_T_SECTION, .optional = true },
    { .path = "bridge.name", .type = NODE_CFG_T_NAME, R(bridge.name) },
    { .path = "bridge.uplink", .type = NODE_CFG_T_NAME, R(bridge.uplink) },

    /* Present = a shared Redis tier. */
    { .path = "redis", .type = NODE_CFG_T_SECTION, .optional = true },
    { .path = "redis.host",
      .type = NODE_CFG_T_STR,
      R(redis.host),
      .def = "127.0.0.1" },
    { .path = "redis.port",
      .type = NODE_CFG_T_UINT,
      R(redis.port),
      .min = 1,
      .max = 65535,
      .defnum = 6379 },
    { .path = "redis.password_file",
      .type = NODE_CFG_T_STR,
      R(redis.password_file) },
    { .path = "redis.key_prefix",
      .type = NODE_CFG_T_STR,
      R(redis.key_prefix),
      .def = "ovha:" },
    { .path = "redis.connect_timeout_ms",
      .type = NODE_CFG_T_UINT,
      R(redis.connect_timeout_ms),
      .min = 1,
      .max = 60000,
      .defnum = 1000 },
    { .path = "redis.timeout_ms",
      .type = NODE_CFG_T_UINT,
      R(redis.timeout_ms),
      .min = 1,
      .max = 10000,
      .defnum = 100 },

    { .path = "policy", .type = NODE_CFG_T_SECTION, .reloadable = true },
    { .path = "policy.default",
      .type = NODE_CFG_T_ENUM,
      R(policy.default_action),
      .choices = node_cfg_actions,
      .def = "deny",
      .reloadable = true },
    { .path = "policy.default_reason",
      .type = NODE_CFG_T_STR,
      R(policy.default_reason),
      .def = "unknown client",
      .reloadable = true },
    { .path = "policy.pool",
      .type = NODE_CFG_T_NET,
      R(policy.pool),
      .def = "",
      .reloadable = true },
    { .path = "policy.groups",
      .type = NODE_CFG_T_GROUPS,
      R(policy.groups),
      .max = NODE_CFG_MAX_GROUPS,
      .reloadable = true },
    { .path = "policy.clients",
      .type = NODE_CFG_T_CLIENTS,
      R(policy.clients),
      .max = NODE_CFG_MAX_CLIENTS,
      .reloadable = true },

    { .path = "policy.groups[].name",
      .type = NODE_CFG_T_NAME,
      G(name),
      .required = true,
      .reloadable = true },
    NODE_CFG_GRANT_KEYS("policy.groups[]",
                        NODE_CFG_B_GROUP,
                        struct node_cfg_group,
                        G),

    { .path = "policy.clients[].cn",
      .type = NODE_CFG_T_CN,
      C(cn),
      .required = true,
      .reloadable = true },
    { .path = "policy.clients[].groups",
      .type = NODE_CFG_T_STRLIST,
      .base = NODE_CFG_B_CLIENT,
      .off = offsetof(struct node_cfg_client, groups),
      .off2 = offsetof(struct node_cfg_client, ngroups),
      .size = 64,
      .max = NODE_CFG_MAX_CLIENT_GROUPS,
      .elem = NODE_CFG_T_NAME,
      .reloadable = true },
    { .path = "policy.clients[].ip",
      .type = NODE_CFG_T_IP4,
      C(grant.ip),
      .reloadable = true },
    NODE_CFG_GRANT_KEYS("policy.clients[]",
                        NODE_CFG_B_CLIENT,
                        struct node_cfg_client,
                        C),
};

#undef R
#undef G
#undef C
#undef NETS
#undef PUSH

#define NODE_CFG_NKEYS (sizeof(node_cfg_keys) / sizeof(node_cfg_keys[0]))

/* Where a few values of a group or client came from, for the checks that
 * run after the walk. */
struct node_cfg_elem_marks {
    yaml_mark_t self, name, ip;
    yaml_mark_t groups[NODE_CFG_MAX_CLIENT_GROUPS];
};

struct node_cfg_ctx {
    const char *name;
    char *errbuf;
    size_t errlen;
    yaml_document_t *doc;
    struct node_cfg *cfg;
    bool seen[NODE_CFG_NKEYS]; /* root keys only */
    yaml_mark_t mark[NODE_CFG_NKEYS];
    struct node_cfg_elem_marks *gmarks, *cmarks;
    yaml_mark_t *list_marks; /* where STRLIST records element marks */
};

static int node_cfg_err(struct node_cfg_ctx *c,
                        yaml_mark_t m,
                        const char *fmt,
                        ...) __attribute__((format(printf, 3, 4)));

static int node_cfg_err(struct node_cfg_ctx *c,
                        yaml_mark_t m,
                        const char *fmt,
                        ...)
{
    if (c->errlen == 0) {
        return OVHA_ECONFIG;
    }
    int n = snprintf(c->errbuf, c->errlen, "%s:%zu:%zu: ", c->name, m.line + 1,
                     m.column + 1);
    if (n >= 0 && (size_t)n < c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->errbuf + n, c->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return OVHA_ECONFIG;
}

/* Quotes a value for a message: printable ASCII as is, the rest as \xNN,
 * cut at about 60 characters, so a message never carries raw control
 * characters from the file. */
static void node_cfg_quote(const char *s, size_t len, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 8 < outlen; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (o > 60) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (ch >= 0x20 && ch < 0x7f && ch != '\\') {
            out[o++] = (char)ch;
        } else {
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", ch);
        }
    }
    out[o] = '\0';
}

static const struct node_cfg_key *node_cfg_lookup(const char *path)
{
    for (size_t i = 0; i < NODE_CFG_NKEYS; i++) {
        if (strcmp(node_cfg_keys[i].path, path) == 0) {
            return &node_cfg_keys[i];
        }
    }
    return NULL;
}

static size_t node_cfg_index(const struct node_cfg_key *k)
{
    return (size_t)(k - node_cfg_keys);
}

/* ---- networks and addresses ------------------------------------------ */

static bool node_cfg_host_bits_zero(const unsigned char *a,
                                    size_t alen,
                                    unsigned prefix)
{
    for (size_t i = 0; i < alen; i++) {
        unsigned bit0 = (unsigned)i * 8;
        unsigned char mask;
        if (bit0 + 8 <= prefix) {
            continue;
        }
        mask = bit0 >= prefix ? 0xff : (unsigned char)(0xff >> (prefix - bit0));
        if ((a[i] & mask) != 0) {
            return false;
        }
    }
    return true;
}

int node_cfg_parse_net(const char *s, struct node_cfg_net *ret)
{
    char addr[INET6_ADDRSTRLEN];
    unsigned char bin[16];
    struct node_cfg_net net = { 0 };
    const char *slash = strchr(s, '/');
    uint64_t prefix;

    if (slash == NULL || (size_t)(slash - s) >= sizeof(addr)) {
        return -EINVAL;
    }
    memcpy(addr, s, (size_t)(slash - s));
    addr[slash - s] = '\0';
    if (inet_pton(AF_INET, addr, bin) == 1) {
        net.v6 = false;
    } else if (inet_pton(AF_INET6, addr, bin) == 1) {
        net.v6 = true;
    } else {
        return -EINVAL;
    }
    /* No leading zeros or signs: the prefix is written as openvpn would. */
    if (slash[1] == '0' && slash[2] != '\0') {
        return -EINVAL;
    }
    if (ovha_parse_u64(slash + 1, net.v6 ? 128 : 32, &prefix) != 0) {
        return -EINVAL;
    }
    if (!node_cfg_host_bits_zero(bin, net.v6 ? 16 : 4, (unsigned)prefix)) {
        return -EINVAL;
    }
    net.prefix = (unsigned)prefix;
    inet_ntop(net.v6 ? AF_INET6 : AF_INET, bin, net.addr, sizeof(net.addr));
    *ret = net;
    return 0;
}

static uint32_t node_cfg_ip4(const char *s)
{
    struct in_addr a;
    if (inet_pton(AF_INET, s, &a) != 1) {
        return 0;
    }
    return ntohl(a.s_addr);
}

static uint32_t node_cfg_mask4(unsigned prefix)
{
    return prefix == 0 ? 0 : 0xffffffffu << (32 - prefix);
}

/* Is the IPv4 network inner inside the IPv4 network outer? */
static bool node_cfg_net4_inside(const struct node_cfg_net *inner,
                                 const struct node_cfg_net *outer)
{
    uint32_t m = node_cfg_mask4(outer->prefix);
    return !inner->v6 && !outer->v6 && inner->prefix >= outer->prefix &&
           (node_cfg_ip4(inner->addr) & m) == node_cfg_ip4(outer->addr);
}

/* ---- scalars ---------------------------------------------------------- */

static bool node_cfg_is_null(const yaml_node_t *n)
{
    const char *v = (const char *)n->data.scalar.value;
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        return false;
    }
    return n->data.scalar.length == 0 || strcmp(v, "~") == 0 ||
           strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
           strcmp(v, "NULL") == 0;
}

static void *node_cfg_field(const struct node_cfg_key *k, void *base)
{
    return (char *)base + k->off;
}

/* Checks the characters a string type allows; text has len bytes. */
static int node_cfg_check_chars(struct node_cfg_ctx *c,
                                const char *path,
                                enum node_cfg_type type,
                                const char *text,
                                size_t len,
                                yaml_mark_t m)
{
    char q[80];
    node_cfg_quote(text, len, q, sizeof(q));
    if (memchr(text, '\0', len) != NULL) {
        return node_cfg_err(c, m, "%s: contains a NUL byte", path);
    }
    if (type == NODE_CFG_T_CN) {
        if (len == 0) {
            return node_cfg_err(c, m, "%s: must not be empty", path);
        }
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)text[i];
        bool word = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' ||
                    ch == '-';
        if (type == NODE_CFG_T_NAME && !word) {
            return node_cfg_err(c, m,
                                "%s: '%s' may only contain letters, digits, "
                                "'_', '.' and '-'",
                                path, q);
        }
        if (type == NODE_CFG_T_POOL && !word && ch != ':') {
            return node_cfg_err(c, m,
                                "%s: '%s' may only contain letters, digits, "
                                "'_', '.', ':' and '-'",
                                path, q);
        }
        if (ch < 0x20 || ch == 0x7f) {
            return node_cfg_err(c, m, "%s: '%s' contains a control character",
                                path, q);
        }
    }
    if ((type == NODE_CFG_T_NAME || type == NODE_CFG_T_POOL) && len == 0) {
        return node_cfg_err(c, m, "%s: must not be empty", path);
    }
    return 0;
}

/* Copies a checked string into a char[size] field. */
static int node_cfg_store_str(struct node_cfg_ctx *c,
                              const char *path,
                              enum node_cfg_type type,
                              char *dst,
                              size_t size,
                              const char *text,
                              size_t len,
                              yaml_mark_t m)
{
    int rv = node_cfg_check_chars(c, path, type, text, len, m);
    if (rv != 0) {
        return rv;
    }
    if (len >= size) {
        return node_cfg_err(c, m, "%s: longer than %zu bytes", path, size - 1);
    }
    memcpy(dst, text, len);
    dst[len] = '\0';
    return 0;
}

static int node_cfg_find_choice(const char *const *choices, const char *text)
{
    for (int i = 0; choices[i] != NULL; i++) {
        if (strcmp(choices[i], text) == 0) {
            return i;
        }
    }
    return -1;
}

static int node_cfg_bad_choice(struct node_cfg_ctx *c,
                               const char *path,
                               const struct node_cfg_key *k,
                               const char *text,
                               size_t len,
                               yaml_mark_t m)
{
    char q[80], list[128] = "";
    node_cfg_quote(text, len, q, sizeof(q));
    for (int i = 0; k->choices[i] != NULL; i++) {
        if (i > 0) {
            strcat(list, "|");
        }
        strcat(list, k->choices[i]);
    }
    return node_cfg_err(c, m, "%s: '%s' is not one of %s", path, q, list);
}

/* "a.b.c.d:port" with port 1..65534, written without leading zeros: the
 * raft address peers dial; the forwarding listener takes port + 1. */
static bool node_cfg_is_addr4(const char *s)
{
    const char *colon = strrchr(s, ':');
    char host[INET_ADDRSTRLEN];
    struct in_addr a;
    uint64_t port;

    if (colon == NULL || (size_t)(colon - s) >= sizeof(host)) {
        return false;
    }
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    if (inet_pton(AF_INET, host, &a) != 1 || colon[1] == '0') {
        return false;
    }
    return ovha_parse_u64(colon + 1, 65534, &port) == 0 && port >= 1;
}

/* Stores a string-valued scalar (also used for the defaults). */
static int node_cfg_store_text(struct node_cfg_ctx *c,
                               const char *path,
                               const struct node_cfg_key *k,
                               void *base,
                               const char *text,
                               size_t len,
                               yaml_mark_t m)
{
    void *f = node_cfg_field(k, base);
    char q[80];
    int i, rv;

    node_cfg_quote(text, len, q, sizeof(q));
    switch (k->type) {
    case NODE_CFG_T_STR:
    case NODE_CFG_T_NAME:
    case NODE_CFG_T_POOL:
    case NODE_CFG_T_CN:
        return node_cfg_store_str(c, path, k->type, f, k->size, text, len, m);
    case NODE_CFG_T_ADDR4:
        if (len != strlen(text) || !node_cfg_is_addr4(text)) {
            return node_cfg_err(c, m,
                                "%s: '%s' is not an IPv4 address and port "
                                "(a.b.c.d:port, port 1..65534)",
                                path, q);
        }
        return node_cfg_store_str(c, path, NODE_CFG_T_STR, f, k->size, text,
                                  len, m);
    case NODE_CFG_T_CHOICE:
        i = len == strlen(text) ? node_cfg_find_choice(k->choices, text) : -1;
        if (i < 0) {
            return node_cfg_bad_choice(c, path, k, text, len, m);
        }
        return node_cfg_store_str(c, path, NODE_CFG_T_STR, f, k->size, text,
                                  len, m);
    case NODE_CFG_T_ENUM:
    case NODE_CFG_T_ACTION:
        i = len == strlen(text) ? node_cfg_find_choice(k->choices, text) : -1;
        if (i < 0) {
            return node_cfg_bad_choice(c, path, k, text, len, m);
        }
        if (k->type == NODE_CFG_T_ACTION) {
            struct node_cfg_grant *g = f;
            g->action = i == 0 ? NODE_CFG_ALLOW : NODE_CFG_DENY;
            g->action_set = true;
        } else if (k->size == sizeof(bool)) {
            *(bool *)f = i != 0;
        } else {
            *(int *)f = i;
        }
        return 0;
    case NODE_CFG_T_NET:
        if (len == 0 && k->def != NULL) {
            memset(f, 0, sizeof(struct node_cfg_net));
            return 0;
        }
        if (len != strlen(text) || node_cfg_parse_net(text, f) != 0) {
            return node_cfg_err(c, m,
                                "%s: '%s' is not a network in CIDR form "
                                "(address/prefix, host bits zero)",
                                path, q);
        }
        return 0;
    case NODE_CFG_T_IP:
    case NODE_CFG_T_IP4: {
        unsigned char bin[16];
        bool ok =
            len == strlen(text) && len > 0 &&
            (inet_pton(AF_INET, text, bin) == 1 ||
             (k->type == NODE_CFG_T_IP && inet_pton(AF_INET6, text, bin) == 1));
        if (len == 0) {
            ((char *)f)[0] = '\0';
            return 0;
        }
        if (!ok) {
            return node_cfg_err(c, m, "%s: '%s' is not an %saddress", path, q,
                                k->type == NODE_CFG_T_IP4 ? "IPv4 " : "IP ");
        }
        rv = node_cfg_store_str(c, path, NODE_CFG_T_STR, f, k->size, text, len,
                                m);
        return rv;
    }
    default:
        break;
    }
    return -EINVAL;
}

static void node_cfg_store_uint(const struct node_cfg_key *k,
                                void *base,
                                size_t off,
                                uint64_t v)
{
    void *f = (char *)base + off;
    if (k->size == sizeof(uint64_t)) {
        *(uint64_t *)f = v;
    } else {
        *(unsigned *)f = (unsigned)v;
    }
}

static int node_cfg_parse_uint(struct node_cfg_ctx *c,
                               const char *path,
                               const struct node_cfg_key *k,
                               const yaml_node_t *n,
                               uint64_t *ret)
{
    const char *text = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    char q[80];
    uint64_t v;
    int rv;

    if (n->type != YAML_SCALAR_NODE) {
        return node_cfg_err(c, n->start_mark, "%s: expected an integer", path);
    }
    node_cfg_quote(text, len, q, sizeof(q));
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
        len != strlen(text)) {
        return node_cfg_err(c, n->start_mark,
                            "%s: expected an integer, got '%s'", path, q);
    }
    rv = ovha_parse_u64(text, UINT64_MAX, &v);
    if (rv == -EINVAL) {
        return node_cfg_err(c, n->start_mark,
                            "%s: expected an integer, got '%s'", path, q);
    }
    if (rv != 0 || v < k->min || v > k->max) {
        return node_cfg_err(c, n->start_mark,
                            "%s: %s is out of range [%" PRIu64 ", %" PRIu64 "]",
                            path, q, k->min, k->max);
    }
    *ret = v;
    return 0;
}

/* ---- the walk --------------------------------------------------------- */

static int node_cfg_walk_map(struct node_cfg_ctx *c,
                             const yaml_node_t *map,
                             const char *lpath,
                             const char *dpath,
                             enum node_cfg_base base,
                             void *obj,
                             yaml_mark_t *ret_marks);

static int node_cfg_expect_scalar(struct node_cfg_ctx *c,
                                  const char *path,
                                  const yaml_node_t *n,
                                  const char *what)
{
    if (n->type != YAML_SCALAR_NODE) {
        return node_cfg_err(c, n->start_mark, "%s: expected %s", path, what);
    }
    return 0;
}

/* A value that may be a sequence, or null for an empty one: its item
 * count in ret_len, or OVHA_ECONFIG. */
static int node_cfg_seq_len(struct node_cfg_ctx *c,
                            const char *path,
                            const yaml_node_t *n,
                            size_t *ret_len)
{
    if (n->type == YAML_SCALAR_NODE && node_cfg_is_null(n)) {
        *ret_len = 0;
        return 0;
    }
    if (n->type != YAML_SEQUENCE_NODE) {
        return node_cfg_err(c, n->start_mark, "%s: expected a list", path);
    }
    *ret_len =
        (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    return 0;
}

static yaml_node_t *node_cfg_item(struct node_cfg_ctx *c,
                                  const yaml_node_t *seq,
                                  size_t i)
{
    return yaml_document_get_node(c->doc, seq->data.sequence.items.start[i]);
}

static int node_cfg_walk_list(struct node_cfg_ctx *c,
                              const char *path,
                              const struct node_cfg_key *k,
                              void *obj,
                              const yaml_node_t *n)
{
    size_t count, *ret_count = (size_t *)((char *)obj + k->off2);
    char *arr = node_cfg_field(k, obj);
    int rv = node_cfg_seq_len(c, path, n, &count);
    if (rv != 0) {
        return rv;
    }
    for (size_t i = 0; i < count; i++) {
        const yaml_node_t *it = node_cfg_item(c, n, i);
        const char *text = (const char *)it->data.scalar.value;
        char ipath[256], q[80];
        snprintf(ipath, sizeof(ipath), "%s[%zu]", path, i);
        if (i >= k->max) {
            return node_cfg_err(c, it->start_mark,
                                "%s: more than %" PRIu64 " entries", path,
                                k->max);
        }
        rv = node_cfg_expect_scalar(c, ipath, it, "a string");
        if (rv != 0) {
            return rv;
        }
        if (k->type == NODE_CFG_T_NETLIST) {
            struct node_cfg_net *nets = (struct node_cfg_net *)(void *)arr;
            node_cfg_quote(text, it->data.scalar.length, q, sizeof(q));
            if (it->data.scalar.length != strlen(text) ||
                node_cfg_parse_net(text, &nets[i]) != 0) {
                return node_cfg_err(c, it->start_mark,
                                    "%s: '%s' is not a network in CIDR form "
                                    "(address/prefix, host bits zero)",
                                    ipath, q);
            }
        } else {
            rv = node_cfg_store_str(c, ipath, k->elem, arr + i * k->size,
                                    k->size, text, it->data.scalar.length,
                                    it->start_mark);
            if (rv != 0) {
                return rv;
            }
            /* Only client groups are checked after the walk. */
            if (c->list_marks != NULL && k->elem == NODE_CFG_T_NAME &&
                i < NODE_CFG_MAX_CLIENT_GROUPS) {
                c->list_marks[i] = it->start_mark;
            }
        }
    }
    *ret_count = count;
    return 0;
}

/* policy.groups and policy.clients: a list of mappings. */
static int node_cfg_walk_elems(struct node_cfg_ctx *c,
                               const char *path,
                               const struct node_cfg_key *k,
                               const yaml_node_t *n)
{
    bool groups = k->type == NODE_CFG_T_GROUPS;
    size_t count, esize = groups ? sizeof(struct node_cfg_group)
                                 : sizeof(struct node_cfg_client);
    struct node_cfg_policy *pol = &c->cfg->policy;
    struct node_cfg_elem_marks **marks = groups ? &c->gmarks : &c->cmarks;
    char *arr;
    int rv = node_cfg_seq_len(c, path, n, &count);

    if (rv != 0) {
        return rv;
    }
    if (count > k->max) {
        return node_cfg_err(c, node_cfg_item(c, n, k->max)->start_mark,
                            "%s: more than %" PRIu64 " entries", path, k->max);
    }
    if (count == 0) {
        return 0;
    }
    arr = ovha_calloc(count, esize);
    *marks = ovha_calloc(count, sizeof(**marks));
    if (arr == NULL || *marks == NULL) {
        ovha_free(arr);
        return -ENOMEM;
    }
    if (groups) {
        pol->groups = (struct node_cfg_group *)(void *)arr;
    } else {
        pol->clients = (struct node_cfg_client *)(void *)arr;
    }
    for (size_t i = 0; i < count; i++) {
        const yaml_node_t *it = node_cfg_item(c, n, i);
        char lpath[64], dpath[256];
        yaml_mark_t km[NODE_CFG_NKEYS] = { { 0 } };
        snprintf(lpath, sizeof(lpath), "%s[]", k->path);
        snprintf(dpath, sizeof(dpath), "%s[%zu]", path, i);
        if (it->type != YAML_MAPPING_NODE) {
            return node_cfg_err(c, it->start_mark, "%s: expected a mapping",
                                dpath);
        }
        (*marks)[i].self = it->start_mark;
        c->list_marks = groups ? NULL : (*marks)[i].groups;
        rv = node_cfg_walk_map(c, it, lpath, dpath,
                               groups ? NODE_CFG_B_GROUP : NODE_CFG_B_CLIENT,
                               arr + i * esize, km);
        c->list_marks = NULL;
        if (rv != 0) {
            return rv;
        }
        if (groups) {
            pol->ngroups = i + 1;
            (*marks)[i].name =
                km[node_cfg_index(node_cfg_lookup("policy.groups[].name"))];
        } else {
            pol->nclients = i + 1;
            (*marks)[i].name =
                km[node_cfg_index(node_cfg_lookup("policy.clients[].cn"))];
            (*marks)[i].ip =
                km[node_cfg_index(node_cfg_lookup("policy.clients[].ip"))];
        }
    }
    return 0;
}

/* Stores one value at key k of obj. */
static int node_cfg_walk_value(struct node_cfg_ctx *c,
                               const char *dpath,
                               const struct node_cfg_key *k,
                               void *obj,
                               const yaml_node_t *v)
{
    uint64_t a, b;
    int rv;

    switch (k->type) {
    case NODE_CFG_T_SECTION:
        if (v->type == YAML_SCALAR_NODE && node_cfg_is_null(v)) {
            return 0;
        }
        if (v->type != YAML_MAPPING_NODE) {
            return node_cfg_err(c, v->start_mark,
                                "section '%s' must be a mapping", dpath);
        }
        return node_cfg_walk_map(c, v, k->path, dpath, NODE_CFG_B_ROOT, obj,
                                 NULL);
    case NODE_CFG_T_UINT:
        rv = node_cfg_parse_uint(c, dpath, k, v, &a);
        if (rv == 0) {
            node_cfg_store_uint(k, obj, k->off, a);
        }
        return rv;
    case NODE_CFG_T_PAIR:
        if (v->type != YAML_SEQUENCE_NODE ||
            v->data.sequence.items.top - v->data.sequence.items.start != 2) {
            return node_cfg_err(c, v->start_mark,
                                "%s: expected [interval, timeout]", dpath);
        }
        rv = node_cfg_parse_uint(c, dpath, k, node_cfg_item(c, v, 0), &a);
        if (rv == 0) {
            rv = node_cfg_parse_uint(c, dpath, k, node_cfg_item(c, v, 1), &b);
        }
        if (rv == 0) {
            node_cfg_store_uint(k, obj, k->off, a);
            node_cfg_store_uint(k, obj, k->off2, b);
        }
        return rv;
    case NODE_CFG_T_NETLIST:
    case NODE_CFG_T_STRLIST:
        return node_cfg_walk_list(c, dpath, k, obj, v);
    case NODE_CFG_T_GROUPS:
    case NODE_CFG_T_CLIENTS:
        return node_cfg_walk_elems(c, dpath, k, v);
    default:
        break;
    }
    rv = node_cfg_expect_scalar(c, dpath, v, "a string");
    if (rv != 0) {
        return rv;
    }
    if (node_cfg_is_null(v)) {
        return node_cfg_store_text(c, dpath, k, obj, "", 0, v->start_mark);
    }
    return node_cfg_store_text(c, dpath, k, obj,
                               (const char *)v->data.scalar.value,
                               v->data.scalar.length, v->start_mark);
}

/* Walks the keys of one mapping. lpath is the table prefix ("" at the top,
 * "openvpn", "policy.groups[]"), dpath the same for messages with list
 * indexes ("policy.groups[2]"). ret_marks, when set, receives the mark of
 * each key's value by table index. */
static int node_cfg_walk_map(struct node_cfg_ctx *c,
                             const yaml_node_t *map,
                             const char *lpath,
                             const char *dpath,
                             enum node_cfg_base base,
                             void *obj,
                             yaml_mark_t *ret_marks)
{
    bool seen[NODE_CFG_NKEYS] = { false };
    yaml_mark_t first[NODE_CFG_NKEYS];
    int rv;

    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(c->doc, p->value);
        const struct node_cfg_key *k = NULL;
        char q[80], path[160], disp[192];
        const char *key;
        size_t idx;

        if (kn->type != YAML_SCALAR_NODE) {
            return node_cfg_err(c, kn->start_mark, "keys must be plain words");
        }
        key = (const char *)kn->data.scalar.value;
        node_cfg_quote(key, kn->data.scalar.length, q, sizeof(q));
        snprintf(path, sizeof(path), "%s%s%s", lpath, *lpath ? "." : "", key);
        snprintf(disp, sizeof(disp), "%s%s%s", dpath, *dpath ? "." : "", key);
        /* A dotted key would reach another section's row: refuse it. */
        if (strcspn(key, ".[]") == kn->data.scalar.length) {
            k = node_cfg_lookup(path);
        }
        if (k == NULL) {
            if (*dpath == '\0') {
                return node_cfg_err(c, kn->start_mark,
                                    "unknown top-level key '%s'", q);
            }
            return node_cfg_err(c, kn->start_mark,
                                "unknown key '%s' in section '%s'", q, dpath);
        }
        idx = node_cfg_index(k);
        if (seen[idx]) {
            return node_cfg_err(c, kn->start_mark,
                                "duplicate key '%s' in %s%s%s (first at "
                                "%zu:%zu)",
                                q, *dpath ? "section '" : "the top level",
                                dpath, *dpath ? "'" : "", first[idx].line + 1,
                                first[idx].column + 1);
        }
        seen[idx] = true;
        first[idx] = kn->start_mark;
        if (base == NODE_CFG_B_ROOT) {
            c->seen[idx] = true;
            c->mark[idx] = vn->start_mark;
        }
        if (ret_marks != NULL) {
            ret_marks[idx] = vn->start_mark;
        }
        rv = node_cfg_walk_value(c, disp, k, obj, vn);
        if (rv != 0) {
            return rv;
        }
    }
    /* Required keys inside list elements (name, cn). */
    for (size_t i = 0; i < NODE_CFG_NKEYS; i++) {
        const struct node_cfg_key *k = &node_cfg_keys[i];
        if (base != NODE_CFG_B_ROOT && k->base == base && k->required &&
            !seen[i]) {
            return node_cfg_err(c, map->start_mark,
                                "%s: missing required key '%s'", dpath,
                                strrchr(k->path, '.') + 1);
        }
    }
    return 0;
}

/* ---- checks across keys ----------------------------------------------- */

static yaml_mark_t node_cfg_mark_of(struct node_cfg_ctx *c, const char *path)
{
    const struct node_cfg_key *k = node_cfg_lookup(path);
    yaml_mark_t none = { 0, 0, 0 };
    if (k != NULL && c->seen[node_cfg_index(k)]) {
        return c->mark[node_cfg_index(k)];
    }
    return none;
}

static bool node_cfg_seen(struct node_cfg_ctx *c, const char *path)
{
    const struct node_cfg_key *k = node_cfg_lookup(path);
    return k != NULL && c->seen[node_cfg_index(k)];
}

static int node_cfg_missing(struct node_cfg_ctx *c,
                            const char *path,
                            const char *why)
{
    /* Point at the section the key belongs in when there is one. */
    char section[32];
    size_t n = strcspn(path, ".");
    snprintf(section, sizeof(section), "%.*s", (int)n, path);
    return node_cfg_err(c, node_cfg_mark_of(c, section),
                        "missing required key '%s'%s", path, why);
}

/* A key of an optional section (cluster.*) is only required when the
 * section is in the file. */
static bool node_cfg_section_present(struct node_cfg_ctx *c,
                                     const struct node_cfg_key *k)
{
    char section[32];
    const struct node_cfg_key *s;
    size_t n = strcspn(k->path, ".");
    snprintf(section, sizeof(section), "%.*s", (int)n, k->path);
    s = node_cfg_lookup(section);
    return s == NULL || s == k || !s->optional || c->seen[node_cfg_index(s)];
}

static int node_cfg_check_required(struct node_cfg_ctx *c)
{
    static const char *const tls[] = { "openvpn.ca", "openvpn.cert",
                                       "openvpn.key" };
    struct node_cfg *cfg = c->cfg;

    for (size_t i = 0; i < NODE_CFG_NKEYS; i++) {
        const struct node_cfg_key *k = &node_cfg_keys[i];
        if (k->base == NODE_CFG_B_ROOT && k->required && !c->seen[i] &&
            node_cfg_section_present(c, k)) {
            return node_cfg_missing(c, k->path, "");
        }
    }
    if (cfg->openvpn.config[0] != '\0') {
        return 0;
    }
    for (size_t i = 0; i < 3; i++) {
        const struct node_cfg_key *k = node_cfg_lookup(tls[i]);
        if (((char *)node_cfg_field(k, cfg))[0] == '\0') {
            return node_cfg_missing(c, tls[i],
                                    " (needed when openvpn.config is not "
                                    "set)");
        }
    }
    return 0;
}

static int node_cfg_check_openvpn(struct node_cfg_ctx *c)
{
    struct node_cfg *cfg = c->cfg;
    struct node_cfg_openvpn *o = &cfg->openvpn;

    if (o->network.v6 || o->network.prefix > 30) {
        return node_cfg_err(c, node_cfg_mark_of(c, "openvpn.network"),
                            "openvpn.network: must be an IPv4 network with a "
                            "prefix of at most /30");
    }
    if (o->keepalive_timeout < 2 * o->keepalive_interval) {
        return node_cfg_err(c, node_cfg_mark_of(c, "openvpn.keepalive"),
                            "openvpn.keepalive: the timeout (%u) must be at "
                            "least twice the interval (%u)",
                            o->keepalive_timeout, o->keepalive_interval);
    }
    if (o->restart_backoff_min_ms > o->restart_backoff_max_ms) {
        const char *at = node_cfg_seen(c, "openvpn.restart_backoff_max_ms")
                             ? "openvpn.restart_backoff_max_ms"
                             : "openvpn.restart_backoff_min_ms";
        return node_cfg_err(c, node_cfg_mark_of(c, at),
                            "openvpn.restart_backoff_min_ms (%" PRIu64
                            ") exceeds openvpn.restart_backoff_max_ms "
                            "(%" PRIu64 ")",
                            o->restart_backoff_min_ms,
                            o->restart_backoff_max_ms);
    }
    if (cfg->decision_deadline_ms >= (uint64_t)o->hand_window * 1000) {
        return node_cfg_err(c, node_cfg_mark_of(c, "decision.deadline_ms"),
                            "decision.deadline_ms (%" PRIu64
                            ") must be below openvpn.hand_window (%u s)",
                            cfg->decision_deadline_ms, o->hand_window);
    }
    if (cfg->http_socket[0] == '\0') {
        int n = snprintf(cfg->http_socket, sizeof(cfg->http_socket),
                         "%s/ovhad.sock", cfg->state_dir);
        if (n < 0 || (size_t)n >= sizeof(cfg->http_socket)) {
            return node_cfg_err(c, node_cfg_mark_of(c, "node.state_dir"),
                                "node.state_dir: too long to derive "
                                "node.http_socket from it");
        }
    }
    return 0;
}

static int node_cfg_check_groups(struct node_cfg_ctx *c)
{
    struct node_cfg_policy *pol = &c->cfg->policy;
    for (size_t i = 0; i < pol->ngroups; i++) {
        for (size_t j = 0; j < i; j++) {
            if (strcmp(pol->groups[i].name, pol->groups[j].name) == 0) {
                return node_cfg_err(c, c->gmarks[i].name,
                                    "policy.groups[%zu].name: duplicate "
                                    "group '%s' (first at %zu:%zu)",
                                    i, pol->groups[i].name,
                                    c->gmarks[j].name.line + 1,
                                    c->gmarks[j].name.column + 1);
            }
        }
    }
    return 0;
}

static bool node_cfg_has_group(const struct node_cfg_policy *pol,
                               const char *name)
{
    for (size_t i = 0; i < pol->ngroups; i++) {
        if (strcmp(pol->groups[i].name, name) == 0) {
            return true;
        }
    }
    return false;
}

/* A static address must be a usable host of the tunnel network: not its
 * network or broadcast address and not the server's own (.1). */
static int node_cfg_check_ip(struct node_cfg_ctx *c, size_t i)
{
    const struct node_cfg_client *cl = &c->cfg->policy.clients[i];
    const struct node_cfg_net *net = &c->cfg->openvpn.network;
    uint32_t m = node_cfg_mask4(net->prefix), base = node_cfg_ip4(net->addr);
    uint32_t ip = node_cfg_ip4(cl->grant.ip);
    yaml_mark_t at = c->cmarks[i].ip;

    if ((ip & m) != base) {
        return node_cfg_err(c, at,
                            "policy.clients[%zu].ip: %s is outside the tunnel "
                            "network %s/%u",
                            i, cl->grant.ip, net->addr, net->prefix);
    }
    if (ip == base || ip == (base | ~m) || ip == base + 1) {
        return node_cfg_err(c, at,
                            "policy.clients[%zu].ip: %s is the network, "
                            "broadcast or server address of %s/%u",
                            i, cl->grant.ip, net->addr, net->prefix);
    }
    for (size_t j = 0; j < i; j++) {
        if (strcmp(c->cfg->policy.clients[j].grant.ip, cl->grant.ip) == 0) {
            return node_cfg_err(c, at,
                                "policy.clients[%zu].ip: %s is already given "
                                "to policy.clients[%zu]",
                                i, cl->grant.ip, j);
        }
    }
    return 0;
}

static int node_cfg_check_clients(struct node_cfg_ctx *c)
{
    struct node_cfg_policy *pol = &c->cfg->policy;
    char q[80];
    int rv;

    for (size_t i = 0; i < pol->nclients; i++) {
        const struct node_cfg_client *cl = &pol->clients[i];
        node_cfg_quote(cl->cn, strlen(cl->cn), q, sizeof(q));
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cl->cn, pol->clients[j].cn) == 0) {
                return node_cfg_err(c, c->cmarks[i].name,
                                    "policy.clients[%zu].cn: duplicate cn "
                                    "'%s' (first at %zu:%zu)",
                                    i, q, c->cmarks[j].name.line + 1,
                                    c->cmarks[j].name.column + 1);
            }
        }
        for (size_t g = 0; g < cl->ngroups; g++) {
            if (!node_cfg_has_group(pol, cl->groups[g])) {
                return node_cfg_err(c, c->cmarks[i].groups[g],
                                    "policy.clients[%zu].groups: unknown "
                                    "group '%s'",
                                    i, cl->groups[g]);
            }
        }
        if (cl->grant.ip[0] != '\0') {
            rv = node_cfg_check_ip(c, i);
            if (rv != 0) {
                return rv;
            }
        }
    }
    return 0;
}

static int node_cfg_check_policy(struct node_cfg_ctx *c)
{
    struct node_cfg_policy *pol = &c->cfg->policy;
    const struct node_cfg_net *net = &c->cfg->openvpn.network;
    int rv;

    if (pol->pool.addr[0] == '\0') {
        pol->pool = *net;
    } else if (!node_cfg_net4_inside(&pol->pool, net)) {
        return node_cfg_err(c, node_cfg_mark_of(c, "policy.pool"),
                            "policy.pool: %s/%u is not inside "
                            "openvpn.network %s/%u",
                            pol->pool.addr, pol->pool.prefix, net->addr,
                            net->prefix);
    }
    rv = node_cfg_check_groups(c);
    if (rv == 0) {
        rv = node_cfg_check_clients(c);
    }
    return rv;
}

/* Keys of an optional section that must not be empty when it is present
 * (YAML lets "ca:" through as ""). */
static int node_cfg_check_nonempty(struct node_cfg_ctx *c,
                                   const char *const *paths,
                                   size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct node_cfg_key *k = node_cfg_lookup(paths[i]);
        if (((char *)node_cfg_field(k, c->cfg))[0] == '\0') {
            return node_cfg_err(c, node_cfg_mark_of(c, paths[i]),
                                "%s: must not be empty", paths[i]);
        }
    }
    return 0;
}

/* The cluster section: required paths must not be empty (YAML lets
 * "data_dir:" through as ""), and raft's timers must leave room for a
 * few heartbeats per election timeout. */
/* The timings that keep "no IP on two live clients" under partitions: a
 * cut-off gateway notices (up to two election timeouts) and fences its
 * clients before the leader declares it down and its clients' addresses
 * can be taken over; and an orphaned lease outlives both before it may go
 * to another CN. */
static int node_cfg_check_fencing(struct node_cfg_ctx *c)
{
    const struct node_cfg_cluster *cl = &c->cfg->cluster;
    uint64_t fenced = cl->fence_timeout_ms + 2ull * cl->election_timeout_ms;

    if (fenced >= cl->gateway_lease_ms) {
        /* Point at whichever of the three the file set. */
        const char *at = node_cfg_seen(c, "cluster.gateway_lease_ms")
                             ? "cluster.gateway_lease_ms"
                         : node_cfg_seen(c, "cluster.fence_timeout_ms")
                             ? "cluster.fence_timeout_ms"
                             : "cluster.election_timeout_ms";
        return node_cfg_err(
            c, node_cfg_mark_of(c, at),
            "cluster.gateway_lease_ms (%llu) must be above "
            "cluster.fence_timeout_ms + 2 x cluster.election_timeout_ms "
            "(%llu): a partitioned gateway must fence its clients before "
            "it is declared down",
            (unsigned long long)cl->gateway_lease_ms,
            (unsigned long long)fenced);
    }
    if (cl->lease_ttl_ms <= cl->fence_timeout_ms + cl->gateway_lease_ms) {
        const char *at = node_cfg_seen(c, "cluster.lease_ttl_ms")
                             ? "cluster.lease_ttl_ms"
                             : "cluster.gateway_lease_ms";
        return node_cfg_err(
            c, node_cfg_mark_of(c, at),
            "cluster.lease_ttl_ms (%llu) must be above "
            "cluster.fence_timeout_ms + cluster.gateway_lease_ms (%llu): "
            "an address may go to another client only after its old "
            "holder was fenced",
            (unsigned long long)cl->lease_ttl_ms,
            (unsigned long long)(cl->fence_timeout_ms + cl->gateway_lease_ms));
    }
    return 0;
}

static int node_cfg_check_cluster(struct node_cfg_ctx *c)
{
    static const char *const paths[] = { "cluster.data_dir", "cluster.ca",
                                         "cluster.cert", "cluster.key" };
    struct node_cfg_cluster *cl = &c->cfg->cluster;
    int rv;

    cl->enabled = node_cfg_seen(c, "cluster");
    if (!cl->enabled) {
        return 0;
    }
    rv = node_cfg_check_nonempty(c, paths, sizeof(paths) / sizeof(paths[0]));
    if (rv != 0) {
        return rv;
    }
    if (2 * cl->heartbeat_timeout_ms >= cl->election_timeout_ms) {
        const char *at = node_cfg_seen(c, "cluster.heartbeat_timeout_ms")
                             ? "cluster.heartbeat_timeout_ms"
                             : "cluster.election_timeout_ms";
        return node_cfg_err(c, node_cfg_mark_of(c, at),
                            "cluster.heartbeat_timeout_ms (%u) must be below "
                            "half of cluster.election_timeout_ms (%u)",
                            cl->heartbeat_timeout_ms, cl->election_timeout_ms);
    }
    return node_cfg_check_fencing(c);
}

/* The TCP listener is remote admin: TLS and credentials are required. */
static int node_cfg_check_api(struct node_cfg_ctx *c)
{
    static const char *const paths[] = { "api.tls_cert", "api.tls_key",
                                         "api.tokens_file" };
    if (c->cfg->api.listen[0] == '\0') {
        return 0;
    }
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        const struct node_cfg_key *k = node_cfg_lookup(paths[i]);
        if (((char *)node_cfg_field(k, c->cfg))[0] == '\0') {
            return node_cfg_err(c, node_cfg_mark_of(c, "api.listen"),
                                "%s: required when api.listen is set",
                                paths[i]);
        }
    }
    return 0;
}

/* Only https: the upstream sees client names and passwords. */
static int node_cfg_check_url(struct node_cfg_ctx *c)
{
    static const char scheme[] = "https://";
    const char *url = c->cfg->upstream.url;
    char q[80];

    if (strncmp(url, scheme, sizeof(scheme) - 1) == 0 &&
        url[sizeof(scheme) - 1] != '\0' && strchr(url, ' ') == NULL) {
        return 0;
    }
    node_cfg_quote(url, strlen(url), q, sizeof(q));
    return node_cfg_err(c, node_cfg_mark_of(c, "upstream.url"),
                        "upstream.url: '%s' is not an https:// URL "
                        "(https://host[:port]/path, no spaces)",
                        q);
}

/* A client identity is a certificate and its key: one without the other
 * is a mistake, named by the key that is missing. */
static int node_cfg_check_client_id(struct node_cfg_ctx *c)
{
    const struct node_cfg_upstream *u = &c->cfg->upstream;
    bool has_cert = u->client_cert[0] != '\0';
    bool has_key = u->client_key[0] != '\0';
    const char *missing = "upstream.client_key";
    const char *other = "upstream.client_cert";
    char why[96];

    if (has_cert == has_key) {
        return 0;
    }
    if (has_key) {
        missing = "upstream.client_cert";
        other = "upstream.client_key";
    }
    if (node_cfg_seen(c, missing)) {
        return node_cfg_err(c, node_cfg_mark_of(c, missing),
                            "%s: must not be empty when %s is set (give "
                            "both or neither)",
                            missing, other);
    }
    snprintf(why, sizeof(why), " (needed when %s is set; give both or neither)",
             other);
    return node_cfg_missing(c, missing, why);
}

/* The upstream section: an https URL, a CA, timers that nest, and a
 * decision deadline that leaves the cache fallback time to answer before
 * decision.deadline_ms denies the client anyway. */
static int node_cfg_check_upstream(struct node_cfg_ctx *c)
{
    static const char *const paths[] = { "upstream.url", "upstream.ca" };
    struct node_cfg_upstream *u = &c->cfg->upstream;
    uint64_t decision = c->cfg->decision_deadline_ms;
    int rv;

    u->enabled = node_cfg_seen(c, "upstream");
    if (!u->enabled) {
        return 0;
    }
    rv = node_cfg_check_nonempty(c, paths, sizeof(paths) / sizeof(paths[0]));
    if (rv == 0) {
        rv = node_cfg_check_url(c);
    }
    if (rv == 0) {
        rv = node_cfg_check_client_id(c);
    }
    if (rv != 0) {
        return rv;
    }
    if (u->connect_timeout_ms > u->timeout_ms) {
        const char *at = node_cfg_seen(c, "upstream.connect_timeout_ms")
                             ? "upstream.connect_timeout_ms"
                             : "upstream.timeout_ms";
        return node_cfg_err(c, node_cfg_mark_of(c, at),
                            "upstream.connect_timeout_ms (%" PRIu64
                            ") exceeds upstream.timeout_ms (%" PRIu64 ")",
                            u->connect_timeout_ms, u->timeout_ms);
    }
    if (u->deadline_ms + NODE_CFG_FALLBACK_MS > decision) {
        const char *at = node_cfg_seen(c, "upstream.deadline_ms")
                             ? "upstream.deadline_ms"
                             : "decision.deadline_ms";
        return node_cfg_err(c, node_cfg_mark_of(c, at),
                            "upstream.deadline_ms (%" PRIu64
                            ") must be at least %u ms below "
                            "decision.deadline_ms (%" PRIu64
                            "): the cache fallback needs that time to "
                            "answer before the connection's deadline denies "
                            "the client",
                            u->deadline_ms, NODE_CFG_FALLBACK_MS, decision);
    }
    return 0;
}

/* cache.file defaults to <state_dir>/answers.db, as http_socket does. */
static int node_cfg_check_cache(struct node_cfg_ctx *c)
{
    struct node_cfg *cfg = c->cfg;
    int n;

    if (cfg->cache.file[0] != '\0') {
        return 0;
    }
    n = snprintf(cfg->cache.file, sizeof(cfg->cache.file), "%s/answers.db",
                 cfg->state_dir);
    if (n < 0 || (size_t)n >= sizeof(cfg->cache.file)) {
        return node_cfg_err(c, node_cfg_mark_of(c, "node.state_dir"),
                            "node.state_dir: too long to derive cache.file "
                            "from it");
    }
    return 0;
}

/* The Redis section: a host, and a key prefix that is one printable word
 * (it is written into every key ovhad reads and writes). */
/* A tap device is bridged, and the bridge and its MAC map need the
 * replicated state; a tun device has no bridge. */
static int node_cfg_check_bridge(struct node_cfg_ctx *c)
{
    static const char *const paths[] = { "bridge.name", "bridge.uplink" };
    struct node_cfg *cfg = c->cfg;
    struct node_cfg_bridge *b = &cfg->bridge;

    b->enabled = node_cfg_seen(c, "bridge");
    if (!b->enabled) {
        if (cfg->openvpn.tap && cfg->openvpn.config[0] == '\0') {
            return node_cfg_err(c, node_cfg_mark_of(c, "openvpn.dev_type"),
                                "openvpn.dev_type: tap needs a bridge: "
                                "section (bridge.name, bridge.uplink)");
        }
        return 0;
    }
    int rv =
        node_cfg_check_nonempty(c, paths, sizeof(paths) / sizeof(paths[0]));
    if (rv != 0) {
        return rv;
    }
    if (!cfg->openvpn.tap || cfg->openvpn.config[0] != '\0') {
        return node_cfg_err(c, node_cfg_mark_of(c, "bridge"),
                            "bridge: needs openvpn.dev_type: tap and a "
                            "generated openvpn config (no openvpn.config)");
    }
    if (!cfg->cluster.enabled) {
        return node_cfg_err(c, node_cfg_mark_of(c, "bridge"),
                            "bridge: needs the cluster: section (the MAC map "
                            "is replicated state)");
    }
    if (strcmp(b->name, b->uplink) == 0 ||
        strcmp(b->name, cfg->openvpn.dev) == 0 ||
        strcmp(b->uplink, cfg->openvpn.dev) == 0) {
        return node_cfg_err(c, node_cfg_mark_of(c, "bridge"),
                            "bridge: bridge.name, bridge.uplink and "
                            "openvpn.dev must be three different devices");
    }
    return 0;
}

static int node_cfg_check_redis(struct node_cfg_ctx *c)
{
    static const char *const paths[] = { "redis.host", "redis.key_prefix" };
    struct node_cfg_redis *r = &c->cfg->redis;
    char q[80];
    int rv;

    r->enabled = node_cfg_seen(c, "redis");
    if (!r->enabled) {
        return 0;
    }
    rv = node_cfg_check_nonempty(c, paths, sizeof(paths) / sizeof(paths[0]));
    if (rv != 0) {
        return rv;
    }
    for (const unsigned char *p = (const unsigned char *)r->key_prefix;
         *p != '\0'; p++) {
        if (*p <= ' ' || *p > '~') {
            node_cfg_quote(r->key_prefix, strlen(r->key_prefix), q, sizeof(q));
            return node_cfg_err(c, node_cfg_mark_of(c, "redis.key_prefix"),
                                "redis.key_prefix: '%s' may only contain "
                                "printable ASCII without spaces",
                                q);
        }
    }
    return 0;
}

/* ---- loading ---------------------------------------------------------- */

static int node_cfg_defaults(struct node_cfg_ctx *c)
{
    yaml_mark_t none = { 0, 0, 0 };
    for (size_t i = 0; i < NODE_CFG_NKEYS; i++) {
        const struct node_cfg_key *k = &node_cfg_keys[i];
        int rv = 0;
        if (k->base != NODE_CFG_B_ROOT) {
            continue;
        }
        if (k->type == NODE_CFG_T_UINT) {
            node_cfg_store_uint(k, c->cfg, k->off, k->defnum);
        } else if (k->type == NODE_CFG_T_PAIR) {
            node_cfg_store_uint(k, c->cfg, k->off, k->defnum);
            node_cfg_store_uint(k, c->cfg, k->off2, k->defnum2);
        } else if (k->def != NULL) {
            rv = node_cfg_store_text(c, k->path, k, c->cfg, k->def,
                                     strlen(k->def), none);
        }
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

static int node_cfg_yaml_error(struct node_cfg_ctx *c, yaml_parser_t *p)
{
    const char *problem = p->problem != NULL ? p->problem : "invalid YAML";
    if (p->error == YAML_MEMORY_ERROR) {
        return -ENOMEM;
    }
    if (p->context != NULL) {
        return node_cfg_err(c, p->problem_mark, "%s (%s at %zu:%zu)", problem,
                            p->context, p->context_mark.line + 1,
                            p->context_mark.column + 1);
    }
    return node_cfg_err(c, p->problem_mark, "%s", problem);
}

static int node_cfg_walk_doc(struct node_cfg_ctx *c)
{
    yaml_node_t *root = yaml_document_get_root_node(c->doc);
    int rv = node_cfg_defaults(c);

    if (rv != 0) {
        return rv;
    }
    if (root != NULL &&
        !(root->type == YAML_SCALAR_NODE && node_cfg_is_null(root))) {
        if (root->type != YAML_MAPPING_NODE) {
            return node_cfg_err(c, root->start_mark,
                                "the file must be a mapping of sections");
        }
        rv = node_cfg_walk_map(c, root, "", "", NODE_CFG_B_ROOT, c->cfg, NULL);
        if (rv != 0) {
            return rv;
        }
    }
    rv = node_cfg_check_required(c);
    if (rv == 0) {
        rv = node_cfg_check_openvpn(c);
    }
    if (rv == 0) {
        rv = node_cfg_check_policy(c);
    }
    if (rv == 0) {
        rv = node_cfg_check_cluster(c);
    }
    if (rv == 0) {
        rv = node_cfg_check_upstream(c);
    }
    if (rv == 0) {
        rv = node_cfg_check_cache(c);
    }
    if (rv == 0) {
        rv = node_cfg_check_redis(c);
    }
    if (rv == 0) {
        rv = node_cfg_check_bridge(c);
    }
    if (rv == 0) {
        rv = node_cfg_check_api(c);
    }
    return rv;
}

int node_cfg_load_string(const char *name,
                         const char *text,
                         struct node_cfg **ret,
                         char *errbuf,
                         size_t errlen)
{
    struct node_cfg_ctx c = { .name = name,
                              .errbuf = errbuf,
                              .errlen = errlen };
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    int rv;

    if (errlen > 0) {
        errbuf[0] = '\0';
    }
    c.cfg = ovha_calloc(1, sizeof(*c.cfg));
    if (c.cfg == NULL) {
        return -ENOMEM;
    }
    if (!yaml_parser_initialize(&parser)) {
        ovha_free(c.cfg);
        return -ENOMEM;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text,
                                 strlen(text));
    if (!yaml_parser_load(&parser, &doc)) {
        rv = node_cfg_yaml_error(&c, &parser);
        goto err_parser;
    }
    c.doc = &doc;
    /* One document per file: a second one is a mistake, not a merge. */
    if (!yaml_parser_load(&parser, &extra)) {
        rv = node_cfg_yaml_error(&c, &parser);
        goto err_doc;
    }
    if (yaml_document_get_root_node(&extra) != NULL) {
        rv = node_cfg_err(&c, yaml_document_get_root_node(&extra)->start_mark,
                          "only one YAML document is allowed");
        yaml_document_delete(&extra);
        goto err_doc;
    }
    yaml_document_delete(&extra);
    ovha_strlcpy(c.cfg->path, name, sizeof(c.cfg->path));
    rv = node_cfg_walk_doc(&c);
    if (rv != 0) {
        goto err_doc;
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    ovha_free(c.gmarks);
    ovha_free(c.cmarks);
    *ret = c.cfg;
    return 0;

err_doc:
    yaml_document_delete(&doc);
err_parser:
    yaml_parser_delete(&parser);
    ovha_free(c.gmarks);
    ovha_free(c.cmarks);
    node_cfg_free(c.cfg);
    return rv;
}

int node_cfg_load(const char *path,
                  struct node_cfg **ret,
                  char *errbuf,
                  size_t errlen)
{
    struct stat st;
    char *text;
    size_t got = 0;
    int fd, rv;

    if (errlen > 0) {
        errbuf[0] = '\0';
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rv = -errno;
        snprintf(errbuf, errlen, "%s: %s", path, strerror(-rv));
        return rv;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        (uint64_t)st.st_size > NODE_CFG_MAX_FILE) {
        close(fd);
        snprintf(errbuf, errlen, "%s: not a regular file of at most %u bytes",
                 path, NODE_CFG_MAX_FILE);
        return OVHA_ECONFIG;
    }
    text = ovha_malloc((size_t)st.st_size + 1);
    if (text == NULL) {
        close(fd);
        return -ENOMEM;
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, text + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            rv = n < 0 ? -errno : -EIO;
            snprintf(errbuf, errlen, "%s: %s", path, strerror(-rv));
            close(fd);
            ovha_free(text);
            return rv;
        }
        got += (size_t)n;
    }
    close(fd);
    text[got] = '\0';
    if (strlen(text) != got) {
        snprintf(errbuf, errlen, "%s: contains a NUL byte", path);
        ovha_free(text);
        return OVHA_ECONFIG;
    }
    rv = node_cfg_load_string(path, text, ret, errbuf, errlen);
    ovha_free(text);
    return rv;
}

void node_cfg_free(struct node_cfg *cfg)
{
    if (cfg == NULL) {
        return;
    }
    ovha_free(cfg->policy.groups);
    ovha_free(cfg->policy.clients);
    ovha_free(cfg);
}

/* ---- reload ----------------------------------------------------------- */

/* The optional sections and where each records its presence. */
struct node_cfg_optional {
    const char *name;
    size_t enabled;
};

static const struct node_cfg_optional node_cfg_optionals[] = {
    { "cluster", offsetof(struct node_cfg, cluster.enabled) },
    { "upstream", offsetof(struct node_cfg, upstream.enabled) },
    { "redis", offsetof(struct node_cfg, redis.enabled) },
    { "bridge", offsetof(struct node_cfg, bridge.enabled) },
};

#define NODE_CFG_NOPTIONAL \
    (sizeof(node_cfg_optionals) / sizeof(node_cfg_optionals[0]))

static bool node_cfg_key_equal(const struct node_cfg_key *k,
                               const struct node_cfg *a,
                               const struct node_cfg *b)
{
    const void *fa = (const char *)a + k->off, *fb = (const char *)b + k->off;
    switch (k->type) {
    case NODE_CFG_T_STR:
    case NODE_CFG_T_NAME:
    case NODE_CFG_T_POOL:
    case NODE_CFG_T_ADDR4:
    case NODE_CFG_T_CHOICE:
    case NODE_CFG_T_IP:
    case NODE_CFG_T_IP4:
        return strcmp(fa, fb) == 0;
    case NODE_CFG_T_NET: {
        const struct node_cfg_net *na = fa, *nb = fb;
        return strcmp(na->addr, nb->addr) == 0 && na->prefix == nb->prefix &&
               na->v6 == nb->v6;
    }
    case NODE_CFG_T_PAIR:
        return memcmp(fa, fb, k->size) == 0 &&
               memcmp((const char *)a + k->off2, (const char *)b + k->off2,
                      k->size) == 0;
    case NODE_CFG_T_UINT:
    case NODE_CFG_T_ENUM:
        return memcmp(fa, fb, k->size) == 0;
    default:
        return true;
    }
}

int node_cfg_check_reload(const struct node_cfg *cur,
                          const struct node_cfg *next,
                          char *errbuf,
                          size_t errlen)
{
    if (errlen > 0) {
        errbuf[0] = '\0';
    }
    /* Adding or removing an optional section is named as such, not by
     * whichever of its keys happens to differ first (or by none, when the
     * added section holds only defaults). */
    for (size_t i = 0; i < NODE_CFG_NOPTIONAL; i++) {
        const struct node_cfg_optional *o = &node_cfg_optionals[i];
        if (*(const bool *)((const char *)cur + o->enabled) !=
            *(const bool *)((const char *)next + o->enabled)) {
            snprintf(errbuf, errlen,
                     "%s: %s cannot change on reload (only log.* and "
                     "policy.* can; restart ovhad)",
                     next->path, o->name);
            return OVHA_ECONFIG;
        }
    }
    for (size_t i = 0; i < NODE_CFG_NKEYS; i++) {
        const struct node_cfg_key *k = &node_cfg_keys[i];
        if (k->base != NODE_CFG_B_ROOT || k->reloadable ||
            k->type == NODE_CFG_T_SECTION) {
            continue;
        }
        if (!node_cfg_key_equal(k, cur, next)) {
            snprintf(errbuf, errlen,
                     "%s: %s cannot change on reload (only log.* and "
                     "policy.* can; restart ovhad)",
                     next->path, k->path);
            return OVHA_ECONFIG;
        }
    }
    return 0;
}
