/* node/clients: the connection path and the live session table.
 *
 * Happy path: >CLIENT:CONNECT arrives as an event -> a decision is asked
 * of the decider -> client-auth (with exactly the decided address, routes
 * and iroutes) or client-deny goes out -> ESTABLISHED marks the session
 * live -> BYTECOUNT_CLI updates it -> DISCONNECT removes it.
 *
 * Failure modes: no decision by the deadline -> client-deny "decision
 * deadline exceeded" (an unanswered CONNECT would hang the client until
 * hand-window); a decision whose fields fail the command builder's
 * validation -> client-deny "invalid policy output"; the management link
 * drops -> pending decisions are dropped (their clients are killed and come
 * back with a fresh CONNECT by the link's recovery) and, once it is back,
 * the session table is rebuilt from `status 3`.
 */
#ifndef OVHA_NODE_CLIENTS_H
#define OVHA_NODE_CLIENTS_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "mgmt/mgmt.h"
#include "node/baseline.h"
#include "node/decide.h"

enum node_session_state {
    NODE_SESSION_AUTHORIZED = 0, /* client-auth sent, not yet established */
    NODE_SESSION_ESTABLISHED,
};

/* What a client over its quota is told when quota_action is kill: it
 * exits (HALT) instead of reconnecting into a refusal. One token: the
 * command builder refuses white space in client-kill's message. */
#define NODE_QUOTA_KILL_MSG "HALT,quota-exceeded"

/* MACs remembered per session (the FSM accepts as many). */
#define NODE_SESSION_MACS 16

struct node_session {
    uint64_t cid;
    char cn[256];
    char real_addr[64];
    char vpn_ip[46];
    enum node_session_state state;
    uint64_t since; /* unix seconds */
    uint64_t bytes_in, bytes_out;
    uint64_t session_id;         /* replicated session id, 0 when standalone */
    uint64_t down_kbps, up_kbps; /* shaping (0 = none) from its decision */
    bool throttled; /* over its quota: shaped to cluster.quota_throttle_kbps */
    /* Bandwidth baseline from its byte counts (node/baseline.h). */
    struct node_baseline baseline;
    /* MACs already handed to session_address (tap mode). */
    char macs[NODE_SESSION_MACS][18];
    size_t nmacs;
    uint64_t kill_sent; /* private: monotonic ms of our last client-kill */
    uint64_t gen;       /* private: resync generation at creation */
};

/* Why a CONNECT or REAUTH got its answer: a fixed set, so that it can be a
 * metric label (the decision's own reason text is free-form). */
enum node_decision_why {
    NODE_WHY_ALLOWED = 0,    /* allowed */
    NODE_WHY_REFUSED,        /* the rules or the cluster said no */
    NODE_WHY_UNAVAILABLE,    /* a temporary refusal (upstream or cluster
                                unavailable, fenced, draining): the client
                                moves on to its next remote */
    NODE_WHY_DEADLINE,       /* no decision within the deadline */
    NODE_WHY_INVALID_OUTPUT, /* the command builder refused the decision */
    NODE_WHY_NO_CN,          /* the client sent no common name */
    NODE_WHY_ERROR,          /* the decider failed, or out of memory */
    NODE_WHY_MAX,
};

/* Kinds of decisions counted in node_clients_stats.decisions. */
enum node_decision_kind {
    NODE_DECISION_CONNECT = 0,
    NODE_DECISION_REAUTH,
    NODE_DECISION_KIND_MAX,
};

/* Upper bounds (microseconds) of the decision latency buckets. */
#define NODE_DECISION_LAT_BUCKETS 15
extern const uint64_t node_decision_lat_bounds_us[NODE_DECISION_LAT_BUCKETS];

struct node_clients_stats {
    uint64_t allowed, denied, deadline_denied, reauth_allowed, reauth_denied;
    uint64_t kills;
    uint64_t anomalies; /* bandwidth anomalies that started (baseline) */
    /* Every answer by kind and why (the counters above stay as they were:
     * they do not count the out-of-memory answers). */
    uint64_t decisions[NODE_DECISION_KIND_MAX][NODE_WHY_MAX];
    /* Decision latency of every answer: from the event (>CLIENT:ENV,END)
     * to the client-auth / client-deny handed to the management link.
     * latency_le_us[i] counts answers within node_decision_lat_bounds_us[i]
     * (cumulative, as Prometheus buckets); latency_count counts all. */
    uint64_t latency_le_us[NODE_DECISION_LAT_BUCKETS];
    uint64_t latency_count, latency_us_sum;
};

/* "allowed", "refused", ... (the metric label); "unknown" out of range. */
const char *node_decision_why_name(enum node_decision_why why);
/* "connect" or "reauth". */
const char *node_decision_kind_name(enum node_decision_kind kind);

struct node_clients;

/* mgmt and the decider are borrowed and must outlive c. */
int node_clients_new(uv_loop_t *loop,
                     struct mgmt_conn *mgmt,
                     struct node_decider decider,
                     uint64_t deadline_ms,
                     struct node_clients **ret);
void node_clients_close(struct node_clients *c,
                        void (*cb)(void *data),
                        void *data);

/* Feed from the mgmt connection's callbacks. */
void node_clients_on_event(struct node_clients *c, const struct mgmt_event *ev);
void node_clients_on_link(struct node_clients *c, bool up);

void node_clients_set_deadline(struct node_clients *c, uint64_t deadline_ms);
/* timeout_s > 0: an allowed CONNECT of a client that takes an early push
 * gets client-pending-auth (timeout_s, the handshake window) in front of
 * its client-auth, so openvpn pushes at once (openvpn.fast_push). */
void node_clients_set_kick(struct node_clients *c, unsigned timeout_s);
/* Tap mode: openvpn 2.6 reports the MACs it learns from clients only in
 * its routing table (not as >CLIENT:ADDRESS), so `status 3` is polled
 * every interval_ms and each new MAC of a session goes to the decider's
 * session_address. */
void node_clients_poll_addresses(struct node_clients *c, uint64_t interval_ms);

/* The table, for the API. Pointers valid until the next loop turn. */
size_t node_clients_sessions(const struct node_clients *c,
                             const struct node_session **ret);
/* Sends client-kill for every session of cn; returns how many. */
size_t node_clients_kill_cn(struct node_clients *c,
                            const char *cn,
                            const char *msg);
/* Sends client-kill for the session with this replicated id (it was
 * closed or taken over elsewhere, it is over quota); why completes the
 * log line "its session N ...". Returns true if one was found. */
bool node_clients_kill_session(struct node_clients *c,
                               uint64_t session_id,
                               const char *msg,
                               const char *why);
/* Marks the session with this replicated id throttled (over quota).
 * Returns true if it was found and not throttled yet. */
bool node_clients_throttle_session(struct node_clients *c, uint64_t session_id);
/* Sends client-kill for every session (drain, fencing) not killed in the
 * last 10 s; returns how many it sent. */
size_t node_clients_kill_all(struct node_clients *c, const char *msg);
size_t node_clients_pending(const struct node_clients *c);
void node_clients_get_stats(const struct node_clients *c,
                            struct node_clients_stats *ret);

#endif
