/* node/firewall: the replicated firewall policy on this gateway. See
 * firewall.h. Passes are node/job passes: the loop reads the policy row
 * and the sessions into the job's input; the thread pool owns the
 * enforce/fw object and the member list it last installed.
 */
#include "node/firewall.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "enforce/fw.h"
#include "fsm/fsm.h"
#include "node/job.h"

#define FW_MOD             "firewall"
#define FW_MAX_GROUPS      32 /* per member, as the upstream answer */
/* The listed table is refreshed at most this often. */
#define FW_COMPILED_MIN_MS 2000

/* One client address and its groups ("a,b", as replicated). */
struct fw_member {
    char ip[PROTO_ADDR_MAX];
    char groups[PROTO_GROUPS_MAX];
};

struct fw_members {
    struct fw_member *v;
    size_t n, cap;
};

struct node_fw {
    const struct node_cfg *cfg;
    struct fsm *fsm;
    struct node_job *job;
    char *policy_body; /* loop: the row last handed to a pass */

    /* Thread-pool side (one pass at a time; read on the loop only after
     * the job is closed). */
    struct enf_fw *fw;
    struct enf_fw_policy *policy; /* the policy in force */
    struct fw_members last;       /* members in the kernel table */
    bool applied, need_full;
    uint64_t pass_no, compiled_ms;

    /* One pass's input (built on the loop) and output. */
    struct enf_fw_policy *job_policy; /* a new policy, or NULL */
    bool job_remove;                  /* the policy row is gone */
    struct fw_members job_members;
    char *job_compiled; /* a fresh listing, or NULL */
    int job_rv;
    char job_err[256];

    struct node_fw_stats stats; /* loop */
    char *compiled;             /* loop */
    void (*close_cb)(void *data);
    void *close_data;
};

/* ---- members ------------------------------------------------------------
 */

static int fw_members_push(struct fw_members *m,
                           const char *ip,
                           const char *groups)
{
    if (m->n == m->cap) {
        size_t cap = m->cap != 0 ? 2 * m->cap : 64;
        void *p = ovha_realloc(m->v, cap * sizeof(*m->v));
        if (p == NULL) {
            return -ENOMEM;
        }
        m->v = p;
        m->cap = cap;
    }
    struct fw_member *e = &m->v[m->n++];
    ovha_strlcpy(e->ip, ip, sizeof(e->ip));
    ovha_strlcpy(e->groups, groups, sizeof(e->groups));
    return 0;
}

static void fw_members_free(struct fw_members *m)
{
    ovha_free(m->v);
    memset(m, 0, sizeof(*m));
}

struct fw_collect {
    struct fw_members *out;
    char down[64][PROTO_ID_MAX]; /* gateways that are down */
    size_t ndown;
    int err;
};

static int fw_gateway_cb(const struct fsm_gateway_info *g, void *data)
{
    struct fw_collect *c = data;
    if (g->state == PROTO_GW_DOWN && c->ndown < 64) {
        ovha_strlcpy(c->down[c->ndown++], g->id, sizeof(c->down[0]));
    }
    return 0;
}

/* A live session's addresses; orphaned ones and those of a gateway that
 * is down are leaving (their clients come back with a new session). */
static int fw_session_cb(const struct fsm_session_info *s, void *data)
{
    struct fw_collect *c = data;
    if (s->state == FSM_SESSION_ORPHANED) {
        return 0;
    }
    for (size_t i = 0; i < c->ndown; i++) {
        if (strcmp(c->down[i], s->gateway) == 0) {
            return 0;
        }
    }
    int rv = 0;
    if (s->ip4[0] != '\0') {
        rv = fw_members_push(c->out, s->ip4, s->groups);
    }
    if (rv == 0 && s->ip6[0] != '\0') {
        rv = fw_members_push(c->out, s->ip6, s->groups);
    }
    return rv;
}

static int fw_collect_members(struct fsm *fsm, struct fw_members *out)
{
    struct fw_collect c = { .out = out };
    int rv = fsm_query_gateways(fsm, fw_gateway_cb, &c);
    if (rv == 0) {
        rv = fsm_query_sessions(fsm, NULL, fw_session_cb, &c);
    }
    return rv;
}

/* Splits "a,b" into names (pointers into buf, a copy). */
static size_t fw_split_groups(const char *groups,
                              char *buf,
                              size_t buflen,
                              const char **names)
{
    size_t n = 0;
    ovha_strlcpy(buf, groups, buflen);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save);
         t != NULL && n < FW_MAX_GROUPS; t = strtok_r(NULL, ",", &save)) {
        names[n++] = t;
    }
    return n;
}

/* The enforce/fw view of a member list: member i's groups point into
 * bufs[i]. All three arrays are allocated together; free(*ret_all). */
static int fw_to_enf(const struct fw_members *m,
                     struct enf_fw_member **ret,
                     void **ret_all)
{
    size_t per = sizeof(struct enf_fw_member) + PROTO_GROUPS_MAX +
                 FW_MAX_GROUPS * sizeof(const char *);
    char *all = ovha_malloc(m->n * per + 1);
    if (all == NULL) {
        return -ENOMEM;
    }
    struct enf_fw_member *em = (struct enf_fw_member *)all;
    const char **names = (const char **)(all + m->n * sizeof(*em));
    char *bufs = all + m->n * (sizeof(*em) + FW_MAX_GROUPS * sizeof(*names));
    for (size_t i = 0; i < m->n; i++) {
        const char **g = names + i * FW_MAX_GROUPS;
        em[i].ip = m->v[i].ip;
        em[i].groups = g;
        em[i].ngroups = fw_split_groups(
            m->v[i].groups, bufs + i * PROTO_GROUPS_MAX, PROTO_GROUPS_MAX, g);
    }
    *ret = em;
    *ret_all = all;
    return 0;
}

/* ---- the pass, in the thread pool
 * ------------------------------------------ */

static int fw_apply_all(struct node_fw *f)
{
    struct enf_fw_member *em = NULL;
    void *all = NULL;
    int rv = fw_to_enf(&f->job_members, &em, &all);
    if (rv == 0) {
        rv = enf_fw_apply(f->fw, f->policy, em, f->job_members.n, f->job_err,
                          sizeof(f->job_err));
    }
    ovha_free(all);
    f->applied = rv == 0;
    f->need_full = rv != 0;
    return rv;
}

static const struct fw_member *fw_find(const struct fw_members *m,
                                       const char *ip)
{
    for (size_t i = 0; i < m->n; i++) {
        if (strcmp(m->v[i].ip, ip) == 0) {
            return &m->v[i];
        }
    }
    return NULL;
}

static int fw_update_one(struct node_fw *f, const struct fw_member *m)
{
    char buf[PROTO_GROUPS_MAX];
    const char *names[FW_MAX_GROUPS];
    size_t n = fw_split_groups(m->groups, buf, sizeof(buf), names);
    return enf_fw_member_add(f->fw, m->ip, names, n, f->job_err,
                             sizeof(f->job_err));
}

/* Element updates for the clients that came, went or changed groups. A
 * failure leaves the table to a whole apply in the next pass. */
static int fw_apply_diff(struct node_fw *f, bool *changed)
{
    int rv = 0;
    for (size_t i = 0; i < f->job_members.n && rv == 0; i++) {
        const struct fw_member *m = &f->job_members.v[i];
        const struct fw_member *old = fw_find(&f->last, m->ip);
        if (old == NULL || strcmp(old->groups, m->groups) != 0) {
            rv = fw_update_one(f, m);
            *changed = true;
        }
    }
    for (size_t i = 0; i < f->last.n && rv == 0; i++) {
        if (fw_find(&f->job_members, f->last.v[i].ip) == NULL) {
            rv = enf_fw_member_del(f->fw, f->last.v[i].ip, f->job_err,
                                   sizeof(f->job_err));
            *changed = true;
        }
    }
    f->need_full = rv != 0;
    return rv;
}

/* Every few passes: is the kernel table still what we installed? */
static void fw_check(struct node_fw *f)
{
    bool in_sync = true;
    char why[200] = "";
    if (enf_fw_check(f->fw, &in_sync, why, sizeof(why)) == 0 && !in_sync) {
        LOG_WARN(FW_MOD, "table altered (%s): applying it again", why);
        f->need_full = true;
    }
}

static void fw_refresh_listing(struct node_fw *f, bool changed)
{
    uint64_t now = ovha_now_mono_ms();
    if (!changed || (f->compiled_ms != 0 && !f->need_full &&
                     now - f->compiled_ms < FW_COMPILED_MIN_MS)) {
        return;
    }
    if (enf_fw_compiled(f->fw, &f->job_compiled) == 0) {
        f->compiled_ms = now;
    }
}

static void fw_work(void *data)
{
    struct node_fw *f = data;
    f->job_err[0] = '\0';
    f->job_rv = 0;
    f->pass_no++;
    if (f->job_remove) {
        enf_fw_policy_free(f->policy);
        f->policy = NULL;
        f->job_rv = enf_fw_remove(f->fw, f->job_err, sizeof(f->job_err));
        f->applied = false;
        fw_members_free(&f->last);
        return;
    }
    bool changed = false;
    if (f->job_policy != NULL) {
        enf_fw_policy_free(f->policy);
        f->policy = f->job_policy;
        f->job_policy = NULL;
        f->need_full = true;
    }
    if (f->policy == NULL) {
        return;
    }
    if (f->applied && !f->need_full && f->pass_no % NODE_FW_CHECK_PASSES == 0) {
        fw_check(f);
    }
    if (!f->applied || f->need_full) {
        f->job_rv = fw_apply_all(f);
        changed = true;
    } else {
        f->job_rv = fw_apply_diff(f, &changed);
    }
    if (f->job_rv == 0) {
        /* What the kernel holds now is the pass's list. */
        fw_members_free(&f->last);
        f->last = f->job_members;
        memset(&f->job_members, 0, sizeof(f->job_members));
    }
    fw_refresh_listing(f, changed);
}

/* ---- on the loop
 * -------------------------------------------------------------- */

/* Reads the policy row; a new body is parsed for the pass. Returns 0, or
 * -1 when there is nothing to do and nothing applied. */
static int fw_build_policy(struct node_fw *f)
{
    char *body = NULL;
    int rv = fsm_query_policy(f->fsm, NODE_FW_POLICY_NAME, &body);
    if (rv == -ENOENT) {
        f->job_remove = f->policy_body != NULL;
        ovha_free(f->policy_body);
        f->policy_body = NULL;
        return f->job_remove || f->stats.enforcing ? 0 : -1;
    }
    if (rv != 0) {
        return -1;
    }
    if (f->policy_body != NULL && strcmp(f->policy_body, body) == 0) {
        ovha_free(body);
        return 0;
    }
    char err[256];
    rv = enf_fw_policy_parse(body, strlen(body), &f->job_policy, err,
                             sizeof(err));
    if (rv != 0) {
        /* The API validates before proposing; an old or foreign writer
         * may not have. The policy in force stays. */
        LOG_ERR(FW_MOD, "policy row not usable, keeping the last: %s", err);
        f->job_policy = NULL;
    }
    ovha_free(f->policy_body);
    f->policy_body = body;
    return 0;
}

static int fw_build(void *data)
{
    struct node_fw *f = data;
    f->job_remove = false;
    f->job_policy = NULL;
    if (fw_build_policy(f) != 0) {
        return -1;
    }
    int rv = fw_collect_members(f->fsm, &f->job_members);
    if (rv != 0) {
        LOG_WARN(FW_MOD, "reading the replicated state failed: %s",
                 ovha_strerror(rv));
        enf_fw_policy_free(f->job_policy);
        f->job_policy = NULL;
        fw_members_free(&f->job_members);
        return -1;
    }
    f->job_rv = OVHA_ECLOSED; /* until the pass runs */
    snprintf(f->job_err, sizeof(f->job_err), "the pass did not run");
    return 0;
}

static void fw_after(void *data)
{
    struct node_fw *f = data;
    struct enf_fw_stats es;
    if (f->job_policy != NULL) {
        /* The pass did not run: parse the row again next time. */
        enf_fw_policy_free(f->job_policy);
        f->job_policy = NULL;
        ovha_free(f->policy_body);
        f->policy_body = NULL;
    }
    fw_members_free(&f->job_members);
    if (f->job_compiled != NULL) {
        free(f->compiled);
        f->compiled = f->job_compiled;
        f->job_compiled = NULL;
    }
    f->stats.passes++;
    f->stats.enforcing = f->applied;
    if (f->job_rv != 0) {
        f->stats.failures++;
        ovha_strlcpy(f->stats.last_error, f->job_err,
                     sizeof(f->stats.last_error));
        LOG_WARN(FW_MOD, "reconcile: %s", f->job_err);
    } else {
        f->stats.last_error[0] = '\0';
    }
    enf_fw_get_stats(f->fw, &es);
    f->stats.applies = es.applies;
    f->stats.updates = es.element_txns;
    f->stats.drifts = es.drifts;
    f->stats.members = es.members;
}

static const struct node_job_ops fw_job_ops = {
    .build = fw_build,
    .work = fw_work,
    .after = fw_after,
};

/* ---- public
 * -------------------------------------------------------------------- */

static void fw_free(struct node_fw *f)
{
    enf_fw_free(f->fw);
    enf_fw_policy_free(f->policy);
    fw_members_free(&f->last);
    ovha_free(f->policy_body);
    free(f->compiled);
    ovha_free(f);
}

int node_fw_new(uv_loop_t *loop,
                const struct node_cfg *cfg,
                struct fsm *fsm,
                struct node_fw **ret)
{
    struct node_fw *f = ovha_calloc(1, sizeof(*f));
    char err[256] = "out of memory";
    if (f == NULL) {
        return -ENOMEM;
    }
    f->cfg = cfg;
    f->fsm = fsm;
    struct enf_fw_config ec = { .backend = "linux", .dev = cfg->openvpn.dev };
    int rv = enf_fw_new(&ec, &f->fw, err, sizeof(err));
    if (rv == 0) {
        rv = node_job_new(loop, &fw_job_ops, f, &f->job);
    }
    if (rv != 0) {
        LOG_ERR(FW_MOD, "firewall: %s", err);
        fw_free(f);
        return rv;
    }
    *ret = f;
    return 0;
}

void node_fw_start(struct node_fw *f)
{
    node_job_start(f->job, f->cfg->cluster.route_interval_ms);
    node_job_kick(f->job);
}

void node_fw_kick(struct node_fw *f)
{
    if (f != NULL) {
        node_job_kick(f->job);
    }
}

void node_fw_get_stats(const struct node_fw *f, struct node_fw_stats *ret)
{
    *ret = f->stats;
}

char *node_fw_compiled(const struct node_fw *f)
{
    return f->compiled != NULL && f->stats.enforcing ? strdup(f->compiled)
                                                     : NULL;
}

static void fw_job_closed_cb(void *data)
{
    struct node_fw *f = data;
    void (*cb)(void *) = f->close_cb;
    void *cb_data = f->close_data;
    fw_free(f);
    if (cb != NULL) {
        cb(cb_data);
    }
}

void node_fw_close(struct node_fw *f, void (*cb)(void *data), void *data)
{
    f->close_cb = cb;
    f->close_data = data;
    node_job_close(f->job, fw_job_closed_cb, f);
}
