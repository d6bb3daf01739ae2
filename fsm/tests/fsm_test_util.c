/* Command builders for fsm tests, the fuzz driver and the benchmark. */
#include "fsm_test_util.h"

#include <string.h>

#include "base/base.h"

void fsmt_env(struct proto_cmd *c,
              enum proto_cmd_kind kind,
              const char *gw,
              uint64_t ts,
              uint64_t req_id)
{
    memset(c, 0, sizeof(*c));
    c->version = PROTO_VERSION;
    c->kind = kind;
    ovha_strlcpy(c->gateway, gw, sizeof(c->gateway));
    c->ts_ms = ts;
    c->req_id = req_id;
}

int fsmt_encode(const struct proto_cmd *c, uint8_t **ret_buf, size_t *ret_len)
{
    return proto_cmd_encode(c, ret_buf, ret_len);
}

int fsmt_apply(struct fsm *f, const struct proto_cmd *c, struct proto_result *r)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rv = proto_cmd_encode(c, &buf, &len);
    if (rv != 0) {
        return rv;
    }
    rv = fsm_apply(f, buf, len, r);
    ovha_free(buf);
    return rv;
}

int fsmt_heartbeat(struct fsm *f,
                   const char *gw,
                   uint64_t ts,
                   struct proto_result *r)
{
    struct proto_cmd c;
    fsmt_env(&c, PROTO_CMD_GATEWAY_HEARTBEAT, gw, ts, 0);
    ovha_strlcpy(c.u.gateway_heartbeat.addr, "198.18.0.1",
                 sizeof(c.u.gateway_heartbeat.addr));
    return fsmt_apply(f, &c, r);
}

int fsmt_set_state(struct fsm *f,
                   const char *gw,
                   enum proto_gw_state state,
                   uint64_t ts,
                   struct proto_result *r)
{
    struct proto_cmd c;
    fsmt_env(&c, PROTO_CMD_GATEWAY_SET_STATE, "leader", ts, 0);
    ovha_strlcpy(c.actor, "op", sizeof(c.actor));
    ovha_strlcpy(c.u.gateway_set_state.gateway_id, gw,
                 sizeof(c.u.gateway_set_state.gateway_id));
    c.u.gateway_set_state.state = state;
    return fsmt_apply(f, &c, r);
}

int fsmt_pool(struct fsm *f,
              const char *name,
              const char *cidr,
              uint64_t ttl_ms,
              uint64_t ts,
              struct proto_result *r)
{
    struct proto_cmd c;
    fsmt_env(&c, PROTO_CMD_POOL_PUT, "leader", ts, 0);
    ovha_strlcpy(c.actor, "op", sizeof(c.actor));
    ovha_strlcpy(c.u.pool_put.name, name, sizeof(c.u.pool_put.name));
    ovha_strlcpy(c.u.pool_put.cidr, cidr, sizeof(c.u.pool_put.cidr));
    c.u.pool_put.lease_ttl_ms = ttl_ms;
    return fsmt_apply(f, &c, r);
}

int fsmt_open(struct fsm *f,
              const char *gw,
              const char *cn,
              const char *pool4,
              const char *pool6,
              uint32_t max_sessions,
              enum proto_on_excess excess,
              uint64_t ts,
              struct proto_result *r)
{
    struct proto_cmd c;
    fsmt_env(&c, PROTO_CMD_SESSION_OPEN, gw, ts, 0);
    struct proto_session_open *o = &c.u.session_open;
    ovha_strlcpy(o->cn, cn, sizeof(o->cn));
    ovha_strlcpy(o->pool4, pool4 != NULL ? pool4 : "", sizeof(o->pool4));
    ovha_strlcpy(o->pool6, pool6 != NULL ? pool6 : "", sizeof(o->pool6));
    ovha_strlcpy(o->real_addr, "198.18.1.1:40000", sizeof(o->real_addr));
    o->max_sessions = max_sessions;
    o->on_excess = excess;
    return fsmt_apply(f, &c, r);
}

int fsmt_close(struct fsm *f,
               const char *gw,
               uint64_t sid,
               uint64_t ts,
               struct proto_result *r)
{
    struct proto_cmd c;
    fsmt_env(&c, PROTO_CMD_SESSION_CLOSE, gw, ts, 0);
    c.u.session_close.session_id = sid;
    ovha_strlcpy(c.u.session_close.reason, "disconnect",
                 sizeof(c.u.session_close.reason));
    return fsmt_apply(f, &c, r);
}

int fsmt_charge(struct fsm *f,
                const char *gw,
                uint64_t seq,
                const char *period,
                struct proto_usage_entry *e,
                size_t n,
                uint64_t ts,
                struct proto_result *r)
{
    struct proto_cmd c;
    fsmt_env(&c, PROTO_CMD_USAGE_CHARGE, gw, ts, 0);
    c.u.usage_charge.seq = seq;
    ovha_strlcpy(c.u.usage_charge.period, period,
                 sizeof(c.u.usage_charge.period));
    c.u.usage_charge.entries = e;
    c.u.usage_charge.nentries = n;
    return fsmt_apply(f, &c, r);
}

uint64_t fsmt_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}
