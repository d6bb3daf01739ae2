/* node: the ovhad daemon. main.c wires the modules; this header is the
 * state the wiring shares with the API handlers (api.c). */
#ifndef OVHA_NODE_H
#define OVHA_NODE_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "fsm/fsm.h"
#include "mgmt/mgmt.h"
#include "node/audit.h"
#include "node/auth.h"
#include "node/clients.h"
#include "node/config.h"
#include "node/decide.h"
#include "node/failover.h"
#include "node/firewall.h"
#include "node/http.h"
#include "node/routes.h"
#include "node/shaping.h"
#include "node/supervisor.h"
#include "node/tiers.h"
#include "raft/raft.h"

struct node {
    uv_loop_t *loop;
    /* The config read at start: the supervisor borrows it for good, since
     * only policy and log may change on reload. */
    struct node_cfg *boot_cfg;
    struct node_cfg *cfg; /* current: boot_cfg or the last reload */
    char self_exe[4096];
    struct node_sup *sup;
    struct mgmt_conn *mgmt;
    bool mgmt_up;
    struct node_policy *policy;
    /* The upstream API and its cache tiers (tiers.c): the rules source
     * when cfg->upstream.enabled, else NULL (rules from the policy). */
    struct node_tiers *tiers;
    struct node_clients *clients;
    struct node_shaping *shaping; /* tc on the tun device; NULL when tap */
    struct node_http *http;       /* the unix socket */
    struct node_http *http_tls;   /* api.listen, or NULL */
    struct node_auth auth;        /* api.tokens_file, re-read on SIGHUP */
    /* Clustered mode only (cfg->cluster.enabled): the replicated state
     * and its runtime. NULL when standalone. */
    struct fsm *fsm;
    struct rft *rft;
    struct node_repl *repl;         /* the replicated decider (replicated.c) */
    struct node_failover *failover; /* liveness, fencing, drain */
    struct node_routes *routes;     /* NULL unless cluster.routes */
    struct node_fw *fw;             /* the firewall; NULL when tap */
    struct node_audit *audit;       /* the audit chain's archive */
    uv_signal_t sig_term, sig_int, sig_hup;
    bool stopping;
    int exit_code;
    uint64_t started_ms;
    uint64_t reloads, reload_failures;
};

/* Registers /healthz and the /v1 admin API on n->http. */
int node_api_register(struct node *n);
/* Registers the /v1/cluster... and /v1/leases endpoints (api_cluster.c);
 * they answer 409 {"error": "standalone node"} when n->rft is NULL. */
int node_api_cluster_register(struct node *n);
/* Registers /v1/gateways/drain, /v1/gateways/activate and /v1/failover
 * (api_gateway.c); 409 on a standalone node. */
int node_api_gateway_register(struct node *n);
/* Registers /v1/policy/firewall... (api_policy.c); 409 when standalone or
 * bridged (no firewall there). */
int node_api_policy_register(struct node *n);
/* Registers the rest of the admin API (api_admin.c): pools, lease
 * reserve/release, subnets, audit read/verify, gateway standby. Writes
 * carry node_http_req_subject() as the command's actor; 409 when
 * standalone. */
int node_api_admin_register(struct node *n);
/* Registers GET /metrics, the Prometheus text format (metrics.c). */
int node_metrics_register(struct node *n);

/* Test-only fault hooks from the environment (fault.c; cluster-tests/
 * jepsen): OVHA_PLANT_BUG=no-fence and OVHA_CLOCK_SKEW_FILE=PATH. Nothing
 * happens when both are unset. Returns 0, or -EINVAL for an unknown bug. */
int node_fault_start(uv_loop_t *loop);
/* True when OVHA_PLANT_BUG=no-fence was set at start. */
bool node_fault_no_fence(void);

#endif
