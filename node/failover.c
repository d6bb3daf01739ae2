/* node/failover: gateway liveness, self-fencing, drain and standby. See
 * failover.h for the rules; this file only applies them every tick.
 *
 * Time here is the node's monotonic clock: heartbeat ages are measured
 * from when this node saw a gateway's last_seen change, never by
 * comparing clocks of different machines.
 */
#include "node/failover.h"

#include <errno.h>
#include <string.h>

#include "base/base.h"
#include "fsm/fsm.h"
#include "node/clients.h"
#include "node/decide.h"
#include "node/node.h"
#include "proto/proto.h"
#include "raft/raft.h"

#define FO_MOD       "failover"
#define FO_TICK_MS   250
#define FO_MAX_GWS   64
#define FO_STABLE_MS 2000 /* a standby condition holds this long first */

/* What the leader has seen of one gateway's heartbeats. */
struct fo_watch {
    char id[PROTO_ID_MAX];
    uint64_t last_seen;   /* the FSM's value when it last changed */
    uint64_t changed_at;  /* our monotonic ms then */
    uint64_t proposed_at; /* DOWN proposed then (0 = not); retried */
};

struct node_failover {
    const struct node_cfg *cfg;
    struct rft *rft;
    struct fsm *fsm;
    struct node_repl *repl;
    struct node_clients *clients;
    uv_timer_t tick;
    struct node_failover_stats stats;
    uint64_t leader_seen_at; /* last tick with a known leader */
    uint64_t leader_since;   /* when this node last became leader; 0 = not */
    struct fo_watch watch[FO_MAX_GWS];
    size_t nwatch;
    enum proto_gw_state own_state;
    bool own_known;
    uint64_t standby_since; /* when the current standby wish began */
    bool standby_wish_active;
    void (*close_cb)(void *data);
    void *close_data;
};

/* ---- leader: marking gateways down ------------------------------------ */

static struct fo_watch *fo_watch_get(struct node_failover *fo,
                                     const struct fsm_gateway_info *g,
                                     uint64_t now)
{
    for (size_t i = 0; i < fo->nwatch; i++) {
        if (strcmp(fo->watch[i].id, g->id) == 0) {
            return &fo->watch[i];
        }
    }
    if (fo->nwatch == FO_MAX_GWS) {
        return NULL;
    }
    struct fo_watch *w = &fo->watch[fo->nwatch++];
    memset(w, 0, sizeof(*w));
    ovha_strlcpy(w->id, g->id, sizeof(w->id));
    w->last_seen = g->last_seen;
    w->changed_at = now;
    return w;
}

struct fo_scan {
    struct node_failover *fo;
    uint64_t now;
    unsigned active_others; /* ACTIVE gateways other than this one */
};

static void fo_mark_down(struct node_failover *fo, struct fo_watch *w)
{
    w->proposed_at = ovha_now_mono_ms();
    fo->stats.marked_down++;
    LOG_WARN(FO_MOD,
             "gateway %s: no heartbeat for %llu ms: marking it down "
             "(its sessions become orphaned)",
             w->id, (unsigned long long)fo->cfg->cluster.gateway_lease_ms);
    node_repl_set_gateway_state(fo->repl, w->id, PROTO_GW_DOWN, false, NULL,
                                NULL);
}

static void fo_check_gateway(struct fo_scan *sc,
                             const struct fsm_gateway_info *g)
{
    struct node_failover *fo = sc->fo;
    struct fo_watch *w = fo_watch_get(fo, g, sc->now);
    if (w == NULL) {
        return;
    }
    if (w->last_seen != g->last_seen) {
        w->last_seen = g->last_seen;
        w->changed_at = sc->now;
        w->proposed_at = 0;
    }
    uint64_t lease = fo->cfg->cluster.gateway_lease_ms;
    bool pending = w->proposed_at != 0 && sc->now < w->proposed_at + 1000;
    if (g->state == PROTO_GW_DOWN || pending || fo->leader_since == 0 ||
        sc->now < fo->leader_since + lease || sc->now < w->changed_at + lease) {
        return;
    }
    fo_mark_down(fo, w);
}

static int fo_gateway_cb(const struct fsm_gateway_info *g, void *data)
{
    struct fo_scan *sc = data;
    struct node_failover *fo = sc->fo;
    if (strcmp(g->id, fo->cfg->id) == 0) {
        fo->own_state = g->state;
        fo->own_known = true;
        return 0;
    }
    if (g->state == PROTO_GW_ACTIVE) {
        sc->active_others++;
    }
    if (fo->leader_since != 0) {
        fo_check_gateway(sc, g);
    }
    return 0;
}

/* ---- every node: fencing, drain, standby ------------------------------ */

static void fo_fence_check(struct node_failover *fo,
                           const struct rft_status *st,
                           uint64_t now)
{
    if (st->leader_id != 0) {
        if (fo->stats.fenced) {
            LOG_INFO(FO_MOD, "raft leader %llu known again: admitting",
                     (unsigned long long)st->leader_id);
        }
        fo->stats.fenced = false;
        fo->leader_seen_at = now;
        return;
    }
    if (fo->stats.fenced ||
        now < fo->leader_seen_at + fo->cfg->cluster.fence_timeout_ms) {
        return;
    }
    /* Planted bug for the Jepsen-style tests (node/fault.c): never fence,
     * so the checkers have something to find. */
    if (node_fault_no_fence()) {
        return;
    }
    fo->stats.fenced = true;
    fo->stats.fences++;
    LOG_WARN(FO_MOD,
             "no raft leader for %llu ms: fencing (admitting nobody, "
             "moving clients away)",
             (unsigned long long)fo->cfg->cluster.fence_timeout_ms);
}

/* Kills every local client (kills repeat at most every 10 s per client). */
static void fo_move_clients(struct node_failover *fo, uint64_t *counter)
{
    size_t n = node_clients_kill_all(fo->clients, NODE_FAILOVER_KILL_MSG);
    *counter += n;
}

/* A standby gateway takes load only while too few others are active. */
static void fo_standby_check(struct node_failover *fo,
                             const struct fo_scan *sc,
                             uint64_t now)
{
    const struct node_cfg_cluster *cc = &fo->cfg->cluster;
    if (!cc->standby || !fo->own_known || fo->stats.fenced ||
        (fo->own_state != PROTO_GW_ACTIVE &&
         fo->own_state != PROTO_GW_STANDBY)) {
        return;
    }
    bool want_active = sc->active_others < cc->standby_min_active;
    bool is_active = fo->own_state == PROTO_GW_ACTIVE;
    if (want_active == is_active) {
        fo->standby_since = 0;
        return;
    }
    if (fo->standby_since == 0 || fo->standby_wish_active != want_active) {
        fo->standby_since = now;
        fo->standby_wish_active = want_active;
        return;
    }
    if (now < fo->standby_since + FO_STABLE_MS) {
        return;
    }
    fo->standby_since = 0;
    fo->stats.role_changes++;
    LOG_INFO(FO_MOD, "standby: %u other gateway(s) active: %s",
             sc->active_others, want_active ? "admitting" : "standing by");
    node_repl_set_gateway_state(
        fo->repl, fo->cfg->id, want_active ? PROTO_GW_ACTIVE : PROTO_GW_STANDBY,
        false, NULL, NULL);
}

static void fo_leader_track(struct node_failover *fo,
                            const struct rft_status *st,
                            uint64_t now)
{
    bool leader = st->role == RFT_STATE_LEADER && st->ready;
    if (!leader) {
        fo->leader_since = 0;
    } else if (fo->leader_since == 0) {
        /* Watch a whole lease before judging anyone. */
        fo->leader_since = now;
        fo->nwatch = 0;
    }
}

static void fo_tick_cb(uv_timer_t *t)
{
    struct node_failover *fo = t->data;
    struct rft_status st;
    uint64_t now = ovha_now_mono_ms();
    rft_get_status(fo->rft, &st);
    fo_leader_track(fo, &st, now);
    fo_fence_check(fo, &st, now);
    struct fo_scan sc = { .fo = fo, .now = now };
    fo->own_known = false;
    (void)fsm_query_gateways(fo->fsm, fo_gateway_cb, &sc);
    if (fo->stats.fenced) {
        fo_move_clients(fo, &fo->stats.fence_kills);
    } else if (fo->own_known && fo->own_state == PROTO_GW_DRAINING) {
        fo_move_clients(fo, &fo->stats.drain_kills);
    }
    fo_standby_check(fo, &sc, now);
}

/* ---- public ----------------------------------------------------------- */

int node_failover_new(uv_loop_t *loop,
                      const struct node_cfg *cfg,
                      struct rft *rft,
                      struct fsm *fsm,
                      struct node_repl *repl,
                      struct node_failover **ret)
{
    struct node_failover *fo = ovha_calloc(1, sizeof(*fo));
    if (fo == NULL) {
        return -ENOMEM;
    }
    fo->cfg = cfg;
    fo->rft = rft;
    fo->fsm = fsm;
    fo->repl = repl;
    uv_timer_init(loop, &fo->tick);
    fo->tick.data = fo;
    *ret = fo;
    return 0;
}

void node_failover_start(struct node_failover *fo, struct node_clients *clients)
{
    fo->clients = clients;
    fo->leader_seen_at = ovha_now_mono_ms();
    uv_timer_start(&fo->tick, fo_tick_cb, FO_TICK_MS, FO_TICK_MS);
}

/* The own state is read from the FSM now, not from the last tick: a
 * standby promoted a moment ago must admit the client that follows. */
const char *node_failover_refusal(struct node_failover *fo)
{
    struct fsm_gateway_info g;
    if (fo->stats.fenced) {
        return "fenced: no raft majority";
    }
    if (fsm_query_gateway(fo->fsm, fo->cfg->id, &g) != 0) {
        return NULL; /* the FSM decides (it refuses unknown gateways) */
    }
    switch (g.state) {
    case PROTO_GW_DRAINING:
        return "gateway draining";
    case PROTO_GW_STANDBY:
        return "gateway on standby";
    case PROTO_GW_DOWN:
        return "gateway marked down";
    default:
        return NULL;
    }
}

void node_failover_get_stats(const struct node_failover *fo,
                             struct node_failover_stats *ret)
{
    *ret = fo->stats;
}

static void fo_closed_cb(uv_handle_t *h)
{
    struct node_failover *fo = h->data;
    void (*cb)(void *) = fo->close_cb;
    void *data = fo->close_data;
    ovha_free(fo);
    if (cb != NULL) {
        cb(data);
    }
}

void node_failover_close(struct node_failover *fo,
                         void (*cb)(void *data),
                         void *data)
{
    fo->close_cb = cb;
    fo->close_data = data;
    uv_close((uv_handle_t *)&fo->tick, fo_closed_cb);
}
