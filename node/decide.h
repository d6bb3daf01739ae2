/* node/decide: the decision interface between the connection path and
 * whatever knows the answer.
 *
 * A decision has two steps. The *rules* say allow or deny and what the
 * client gets (routes, iroutes, a static IP or a pool, session limit,
 * quota); they come from a rules source: the local policy (policy.c) or
 * the upstream API through its cache tiers (tiers.c). The *decider* then
 * leases the address: from a node-local pool (policy.c, standalone) or
 * through the replicated state (replicated.c, clustered), which also
 * applies the cluster-wide session limit. The connection path
 * (clients.c) sees only the decider.
 */
#ifndef OVHA_NODE_DECIDE_H
#define OVHA_NODE_DECIDE_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "mgmt/mgmt.h"
#include "node/config.h"
#include "proto/proto.h"

struct node_decision_req {
    uint64_t cid;
    uint32_t kid;
    bool reauth;
    const char *cn;        /* certificate CN, as openvpn reports it */
    const char *username;  /* may be "" */
    const char *real_ip;   /* untrusted_ip */
    const char *real_port; /* untrusted_port; may be "" */
    /* The client's password, or NULL when it sent none. Never log it,
     * never store it: rules sources hash it for their caches. */
    const char *password;
    /* The CONNECT's ENV block (peer info IV_*, UV_*), or NULL. */
    const struct mgmt_env *env;
};

/* An answer. Plain arrays only, so it may be copied by assignment. */
struct node_decision {
    bool allow;
    char reason[256];        /* operator-facing */
    char client_reason[256]; /* sent to the client on deny */
    char ip[46];
    char netmask[46];
    struct mgmt_net routes[NODE_CFG_MAX_ROUTES * 2];
    size_t nroutes;
    struct mgmt_net iroutes[NODE_CFG_MAX_ROUTES];
    size_t niroutes;
    char push[NODE_CFG_MAX_PUSH][256];
    size_t npush;
    uint64_t session_id;         /* replicated session (0 when standalone) */
    uint64_t down_kbps, up_kbps; /* shaping from the rules; 0 = none */
    bool over_quota;    /* admitted over quota: throttle (quota_action) */
    const char *source; /* static string: which rules answered, for logs;
                           NULL = not said */
};

/* Fills cfg (whose pointers point into d) for mgmt_cmd_client_auth.
 * push_ptrs must hold NODE_CFG_MAX_PUSH entries. */
void node_decision_client_config(const struct node_decision *d,
                                 const char **push_ptrs,
                                 struct mgmt_client_config *cfg);

typedef void (*node_decide_cb)(const struct node_decision *d, void *data);

/* The client reason of a refusal that another gateway, or this one a bit
 * later, may not give: OpenVPN 2.6 clients treat "AUTH_FAILED,TEMP..." as
 * temporary and go on to their next remote instead of exiting. */
#define NODE_TEMP_CLIENT_REASON \
    "TEMP[advance remote]:Service temporarily unavailable"

/* ---- rules sources ------------------------------------------------------- */

enum node_excess {
    NODE_EXCESS_DEFAULT = 0, /* the configured cluster.on_excess */
    NODE_EXCESS_REFUSE,
    NODE_EXCESS_EVICT_OLDEST,
};

/* What the rules say about one request, before any address is leased. */
struct node_grant {
    /* allow, reasons, static ip (or ""), netmask, routes, iroutes, push */
    struct node_decision d;
    char pool[64];         /* "" = the gateway's default pool */
    unsigned max_sessions; /* cluster-wide per CN; 0 = configured default */
    enum node_excess on_excess;
    uint64_t quota_bytes;          /* 0 = no quota */
    char quota_period[8];          /* "session" "day" "week" "month" or "" */
    uint64_t down_kbps, up_kbps;   /* 0 = unlimited (not enforced yet) */
    char groups[PROTO_GROUPS_MAX]; /* "a,b": replicated with the session */
    const char *source; /* static string: "policy", "memory", "redis",
                           "upstream", "fallback", "refused" (for logs) */
};

typedef void (*node_rules_cb)(const struct node_grant *g, void *data);

/* Sets g->groups to names joined by ','; a name that would not fit is left
 * out (with a warning), so the list stays well formed. */
void node_grant_join_groups(struct node_grant *g,
                            const char (*names)[64],
                            size_t n);

struct node_rules_ops {
    /* Same contract as node_decider_ops.decide: cb fires exactly once
     * (possibly before lookup returns) unless cancel(handle) runs first.
     * The request's strings are valid only during the call. */
    int (*lookup)(void *impl,
                  const struct node_decision_req *req,
                  node_rules_cb cb,
                  void *data,
                  void **ret_handle);
    void (*cancel)(void *impl, void *handle);
};

struct node_rules {
    const struct node_rules_ops *ops;
    void *impl;
};

struct node_decider_ops {
    /* Starts a decision. cb fires exactly once, possibly before decide
     * returns, unless cancel(handle) is called first. Returns 0 (and a
     * handle for cancel, possibly NULL if cb already fired) or a negative
     * error, in which case cb never fires. */
    int (*decide)(void *impl,
                  const struct node_decision_req *req,
                  node_decide_cb cb,
                  void *data,
                  void **ret_handle);
    void (*cancel)(void *impl, void *handle);
    /* A session that was allowed has ended (address may be reused). */
    void (*session_closed)(void *impl,
                           const char *cn,
                           const char *ip,
                           uint64_t session_id);
    /* Optional (NULL = not interested): the client finished its handshake;
     * its cumulative byte counters (from BYTECOUNT_CLI). */
    void (*session_established)(void *impl, uint64_t session_id);
    void (*session_bytes)(void *impl,
                          uint64_t session_id,
                          const char *cn,
                          uint64_t bytes_in,
                          uint64_t bytes_out);
    /* Optional: openvpn learned an address for the client
     * (>CLIENT:ADDRESS): its pushed IP, an iroute, or in tap mode a MAC
     * seen in its frames. */
    void (*session_address)(void *impl,
                            uint64_t session_id,
                            const char *cn,
                            const char *addr);
};

struct node_decider {
    const struct node_decider_ops *ops;
    void *impl;
};

/* ---- local policy ------------------------------------------------------ */

struct node_policy;

/* Decisions from cfg->policy and a pool over cfg->policy.pool. cfg is
 * borrowed; node_policy_set_cfg swaps it on reload. */
int node_policy_new(const struct node_cfg *cfg, struct node_policy **ret);
void node_policy_free(struct node_policy *p);
void node_policy_set_cfg(struct node_policy *p, const struct node_cfg *cfg);
/* The standalone decider: rules from `rules` (use node_policy_rules for
 * the local policy itself), addresses from the node-local pool. An
 * upstream `pool` other than cluster.pool_name is refused; max_sessions
 * is not enforced standalone (it needs the replicated session table). */
void node_policy_decider(struct node_policy *p,
                         struct node_rules rules,
                         struct node_decider *ret);
/* The local policy as a rules source (answers synchronously). */
void node_policy_rules(struct node_policy *p, struct node_rules *ret);

/* Synchronous form used by the decider and by tests. */
void node_policy_decide(struct node_policy *p,
                        const struct node_decision_req *req,
                        struct node_decision *ret);
/* The rules alone: allow/deny, reasons, routes, iroutes, pushes, a static
 * IP if the rules name one, the netmask; no pool address. */
void node_policy_decide_rules(struct node_policy *p,
                              const struct node_decision_req *req,
                              struct node_decision *ret);

/* ---- replicated (clustered mode, replicated.c) ------------------------- */

struct node_repl;
struct node_clients;
struct rft;
struct fsm;

/* rft, fsm and the rules source are borrowed and must outlive r. */
int node_repl_new(uv_loop_t *loop,
                  const struct node_cfg *cfg,
                  struct rft *rft,
                  struct fsm *fsm,
                  struct node_rules rules,
                  struct node_repl **ret);
/* Starts heartbeats, usage batching and reconciliation against clients;
 * proposes the configured pool. */
void node_repl_start(struct node_repl *r, struct node_clients *clients);
void node_repl_set_cfg(struct node_repl *r, const struct node_cfg *cfg);
void node_repl_decider(struct node_repl *r, struct node_decider *ret);
/* After rft_close completed (no proposal callback is still due). */
void node_repl_close(struct node_repl *r, void (*cb)(void *data), void *data);

struct node_failover;
struct proto_result;
/* Consulted before every admission (NULL = none). */
void node_repl_set_failover(struct node_repl *r, struct node_failover *fo);
struct node_routes;
/* Kicked when a local site client's subnets are registered (NULL = none). */
/* The firewall is kicked when a local session opens (membership). */
struct node_fw;
void node_repl_set_fw(struct node_repl *r, struct node_fw *fw);
/* Appends an audit record (an admin write through the API) naming actor;
 * fire and forget: a failure is logged. Returns 0 or a negative errno. */
int node_repl_audit_append(struct node_repl *r,
                           const char *action,
                           const char *subject,
                           const char *detail,
                           const char *actor);
/* Proposes the policy row name = body (NULL body: delete it); cb as for
 * node_repl_set_gateway_state. Returns 0 or a negative error. */
int node_repl_policy_put(struct node_repl *r,
                         const char *name,
                         const char *body,
                         const char *actor,
                         void (*cb)(void *data,
                                    int status,
                                    const struct proto_result *res),
                         void *data);
void node_repl_set_routes(struct node_repl *r, struct node_routes *routes);
/* Proposes GatewaySetState(gateway, state) (an enum proto_gw_state);
 * force lets DRAINING pass with no other gateway active. cb (NULL = only
 * logged) gets the outcome as for rft_propose. Returns 0 or a negative
 * error (then cb never fires). */
int node_repl_set_gateway_state(struct node_repl *r,
                                const char *gateway,
                                int state,
                                bool force,
                                void (*cb)(void *data,
                                           int status,
                                           const struct proto_result *res),
                                void *data);

/* The proposals of the admin API. Each names the operator who asked
 * (actor: the HTTP request's subject; bytes outside [A-Za-z0-9_.:-] become
 * '_', and it is cut to PROTO_ID_MAX - 1 bytes) and reports the outcome
 * to cb as rft_propose does: status 0 and res->status = what the FSM
 * decided, or OVHA_ENOTLEADER / OVHA_EUNKNOWN / OVHA_ECLOSED / -errno.
 * They return 0 (cb fires exactly once), or -EINVAL for a field too long
 * for the command, OVHA_ECLOSED, OVHA_ELIMIT or -ENOMEM (cb never fires).
 * Values are checked by the FSM, not here. */
typedef void (*node_repl_cb)(void *data,
                             int status,
                             const struct proto_result *res);
/* As node_repl_set_gateway_state (cb NULL = only logged), with the
 * operator recorded as actor. */
int node_repl_set_gateway_state_as(struct node_repl *r,
                                   const char *gateway,
                                   int state,
                                   bool force,
                                   const char *actor,
                                   node_repl_cb cb,
                                   void *data);
/* SessionClose of any gateway's session, as an operator (actor): the
 * gateway holding the client kills it at its next reconcile pass. */
int node_repl_session_end(struct node_repl *r,
                          uint64_t session_id,
                          const char *reason,
                          const char *actor,
                          node_repl_cb cb,
                          void *data);
/* LeaseReserve (reserve) or LeaseRelease of ip for cn. */
int node_repl_lease(struct node_repl *r,
                    bool reserve,
                    const char *cn,
                    const char *ip,
                    const char *actor,
                    node_repl_cb cb,
                    void *data);
/* PoolPut name = cidr; lease_ttl_ms 0 = the FSM's default. */
int node_repl_pool_put(struct node_repl *r,
                       const char *name,
                       const char *cidr,
                       uint64_t lease_ttl_ms,
                       const char *actor,
                       node_repl_cb cb,
                       void *data);
/* SubnetRelease of cidr (a site client's registered iroute). */
int node_repl_subnet_release(struct node_repl *r,
                             const char *cidr,
                             const char *actor,
                             node_repl_cb cb,
                             void *data);

#endif
