/* node/config: ovhad's configuration file (YAML), node-local facts only.
 *
 * One table (config.c) gives every key its type, bounds, default and
 * whether SIGHUP may change it. Unknown keys, wrong types and values out of
 * bounds are errors that name file:line:column. See docs/configuration.md.
 */
#ifndef OVHA_NODE_CONFIG_H
#define OVHA_NODE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NODE_CFG_MAX_ROUTES 64
#define NODE_CFG_MAX_PUSH   16

/* A network in CIDR form, "100.64.0.0/24" or "fd00::/64". */
struct node_cfg_net {
    char addr[46];
    unsigned prefix;
    bool v6;
};

enum node_cfg_action {
    NODE_CFG_ALLOW = 0,
    NODE_CFG_DENY,
};

/* What a matching client gets. A CN rule overrides its group's values
 * field by field when the field is set. */
struct node_cfg_grant {
    enum node_cfg_action action;
    bool action_set;
    char reason[256];        /* deny: for the operator's log */
    char client_reason[256]; /* deny: sent to the client */
    char ip[46];             /* static IPv4; "" = from the pool */
    struct node_cfg_net routes[NODE_CFG_MAX_ROUTES]; /* pushed routes */
    size_t nroutes;
    struct node_cfg_net iroutes[NODE_CFG_MAX_ROUTES]; /* client subnets */
    size_t niroutes;
    char push[NODE_CFG_MAX_PUSH][256]; /* extra push options */
    size_t npush;
    /* Limits, 0 = not set here (a CN's value overrides its groups'). */
    uint64_t down_kbps, up_kbps; /* shaping on the tun device */
    uint64_t quota_bytes;        /* per calendar month, cluster-wide */
};

struct node_cfg_group {
    char name[64];
    struct node_cfg_grant grant;
};

struct node_cfg_client {
    char cn[256];       /* exact match on the certificate CN */
    char groups[8][64]; /* group names, applied in order */
    size_t ngroups;
    struct node_cfg_grant grant; /* overrides */
};

/* Policy: reloadable with SIGHUP. */
struct node_cfg_policy {
    enum node_cfg_action default_action; /* for unknown CNs */
    char default_reason[256];
    struct node_cfg_net pool; /* dynamic addresses for allowed clients */
    struct node_cfg_group *groups;
    size_t ngroups;
    struct node_cfg_client *clients;
    size_t nclients;
};

/* How ovhad runs openvpn. Either `config` (the operator's file; ovhad adds
 * only the management options) or the generated settings below. */
struct node_cfg_openvpn {
    char binary[256]; /* default /usr/sbin/openvpn */
    char config[256]; /* operator's config file, "" = generate */
    char dev[16];     /* generated: tun device name, default "tun0" */
    bool tap;         /* dev_type: tun (false) or tap (bridged) */
    char proto[16];   /* "udp" or "tcp-server" */
    char local[46];   /* listen address; "" = all */
    unsigned port;    /* default 1194 */
    char ca[256], cert[256], key[256], tls_crypt[256];
    struct node_cfg_net network; /* tunnel network; server takes .1 */
    unsigned keepalive_interval, keepalive_timeout; /* s; 10, 60 */
    unsigned hand_window;                           /* s; default 20 */
    bool fast_push; /* client-pending-auth kick before client-auth; true */
    unsigned verb;  /* openvpn's log verbosity; default 3 */
    uint64_t restart_backoff_min_ms; /* 500 */
    uint64_t restart_backoff_max_ms; /* 30000 */
    unsigned crash_loop_limit;       /* crashes in the window; 5 */
    uint64_t crash_loop_window_ms;   /* 60000 */
    uint64_t stop_timeout_ms;        /* SIGTERM then SIGKILL; 5000 */
};

/* Replication (issue 4). Absent section = standalone: decisions from
 * local policy and a node-local pool, as before. None of it reloads. */
struct node_cfg_cluster {
    bool enabled;            /* the `cluster:` section is present */
    uint64_t raft_id;        /* > 0; the certificate's ovha:node:<id> */
    char address[64];        /* raft host:port; forwarding is port+1 */
    char data_dir[256];      /* raft log and snapshots (created 0700) */
    char audit_archive[256]; /* "" = <data_dir>-audit.jsonl */
    bool bootstrap;          /* first node of a new cluster only */
    char ca[256], cert[256], key[256]; /* node mTLS material (PEM) */
    unsigned election_timeout_ms;      /* 1000 */
    unsigned heartbeat_timeout_ms;     /* 100 */
    unsigned snapshot_threshold;       /* 65536 */
    unsigned snapshot_trailing;        /* 8192 */
    uint64_t gateway_heartbeat_ms;     /* GatewayHeartbeat period; 1000 */
    uint64_t usage_interval_ms;        /* UsageCharge batching; 5000 */
    char pool_name[64];                /* FSM pool from policy.pool; "main" */
    uint64_t lease_ttl_ms;             /* 86400000 */
    unsigned max_sessions;             /* per CN, cluster-wide; 1 */
    bool refuse_excess; /* on_excess: refuse (true) or evict_oldest */
    /* Failover (docs/cluster.md): the leader marks a gateway down when
     * its heartbeats stop for gateway_lease_ms; a node that knows no
     * leader for fence_timeout_ms kills its clients so they move. */
    uint64_t gateway_lease_ms; /* 5000 */
    uint64_t fence_timeout_ms; /* 2000 */
    bool standby;              /* role: active (false) or standby */
    /* Over its quota a CN is killed (and refused until the period ends)
     * or throttled to quota_throttle_kbps both ways, on any gateway. */
    bool quota_throttle;          /* quota_action: kill (false)|throttle */
    unsigned quota_throttle_kbps; /* 256 */
    unsigned standby_min_active;  /* standby admits below this many; 1 */
    /* Routes to clients and site subnets homed on other gateways. */
    bool routes;                /* reconcile kernel routes; true */
    uint64_t route_interval_ms; /* full reconcile period; 1000 */
    unsigned route_table;       /* 254 (main) */
    unsigned route_protocol;    /* rtnetlink protocol id; 233 */
};

/* Bridged (dev_type tap) deployments: openvpn's tap device is a port of
 * this bridge, which also holds the uplink to the LAN the gateways share.
 * The MAC map points each client MAC at the right port. Needs cluster. */
struct node_cfg_bridge {
    bool enabled; /* the `bridge:` section is present */
    char name[16];
    char uplink[16];
};

/* The upstream decision API (issue 5, docs/upstream.md). Absent section =
 * rules from the local policy. None of it reloads. */
struct node_cfg_upstream {
    bool enabled;                /* the `upstream:` section is present */
    char url[512];               /* https://host:port/v1/decide */
    char ca[256];                /* CA that verifies the server (PEM) */
    char client_cert[256];       /* optional client identity (PEM); */
    char client_key[256];        /*   both or neither */
    uint64_t connect_timeout_ms; /* per attempt; 500 */
    uint64_t timeout_ms;         /* per attempt, total; 1500 */
    unsigned retries;            /* extra attempts; 0 */
    uint64_t backoff_ms;         /* retry backoff base; 50 */
    unsigned max_concurrency;    /* requests in flight; 16 */
    unsigned breaker_failures;   /* consecutive failures to open; 5 */
    uint64_t breaker_open_ms;    /* open before the probe; 5000 */
    uint64_t max_body;           /* answer bytes; 65536 */
    uint64_t deadline_ms;        /* per decision, then fallback; 2000 */
};

/* Cache tiers in front of the upstream (used only with `upstream:`). */
struct node_cfg_cache {
    unsigned memory_entries; /* in-process LRU; 100000 */
    char file[256];          /* SQLite fallback; <state_dir>/answers.db */
    uint64_t max_stale_s;    /* fallback answers at most this old; 86400 */
};

/* Optional shared Redis tier. Absent section = no Redis. */
struct node_cfg_redis {
    bool enabled;
    char host[256];              /* 127.0.0.1 */
    unsigned port;               /* 6379 */
    char password_file[256];     /* AUTH secret, first line; "" = none */
    char key_prefix[64];         /* "ovha:" */
    uint64_t connect_timeout_ms; /* 1000 */
    uint64_t timeout_ms;         /* a GET slower than this is a miss; 100 */
};

struct node_cfg {
    char path[4096]; /* the file this was read from */

    /* node */
    char id[64];           /* gateway id, [A-Za-z0-9_.-]+ */
    char state_dir[256];   /* management socket dir (0700) lives here */
    char http_socket[256]; /* default <state_dir>/ovhad.sock */

    /* log (reloadable) */
    char log_level[8];   /* err|warn|info|debug; default info */
    unsigned log_format; /* log.format: text|json|logfmt (index) */

    /* api: who may call the admin API, and the optional TLS listener */
    struct {
        char tokens_file[256]; /* tokens and cert CNs with roles; "" none */
        char listen[80];       /* "host:port" TCP with TLS; "" = off */
        char tls_cert[256], tls_key[256];
        char client_ca[256]; /* "" = no client certificates */
    } api;

    /* management */
    uint64_t mgmt_cmd_timeout_ms; /* 5000 */
    unsigned bytecount_interval;  /* s; 5 */

    /* decision */
    uint64_t decision_deadline_ms; /* 3000: deny if no decision by then */

    struct node_cfg_openvpn openvpn;
    struct node_cfg_policy policy;
    struct node_cfg_cluster cluster;
    struct node_cfg_upstream upstream;
    struct node_cfg_cache cache;
    struct node_cfg_redis redis;
    struct node_cfg_bridge bridge;
};

/* Parses path into a new config. On error returns OVHA_ECONFIG (or
 * -ENOMEM / -errno for the file) and writes "file:line:col: message" into
 * errbuf. The caller frees the result with node_cfg_free. */
int node_cfg_load(const char *path,
                  struct node_cfg **ret,
                  char *errbuf,
                  size_t errlen);

/* Same, from a string (tests); name is used in messages. */
int node_cfg_load_string(const char *name,
                         const char *text,
                         struct node_cfg **ret,
                         char *errbuf,
                         size_t errlen);

void node_cfg_free(struct node_cfg *cfg);

/* Checks that next may replace cur on SIGHUP: only reloadable keys
 * differ. 0 or OVHA_ECONFIG with the first offending key in errbuf. */
int node_cfg_check_reload(const struct node_cfg *cur,
                          const struct node_cfg *next,
                          char *errbuf,
                          size_t errlen);

/* Parses "a.b.c.d/n" or "x::y/n". 0 or -EINVAL. */
int node_cfg_parse_net(const char *s, struct node_cfg_net *ret);

#endif
