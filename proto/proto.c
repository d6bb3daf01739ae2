/* proto: codecs between the plain structs of proto.h and protobuf-c.
 *
 * Decoding: protobuf-c unpacks through an allocator that goes through
 * ovha_malloc and remembers whether an allocation failed, so that an
 * out-of-memory condition (-ENOMEM, retried by raft) is never mistaken for
 * malformed bytes (OVHA_EPROTO, a deterministic refusal). Then every field
 * is checked and copied into the plain struct and the protobuf-c message is
 * freed before returning.
 */
#include "proto/proto.h"

#include <errno.h>
#include <string.h>

#include "base/base.h"
#include "ovha.pb-c.h"

/* ---- allocator ---------------------------------------------------------- */

struct proto_alloc_state {
    bool failed;
};

static void *proto_alloc_fn(void *data, size_t size)
{
    struct proto_alloc_state *st = data;
    void *p = ovha_malloc(size == 0 ? 1 : size);
    if (p == NULL) {
        st->failed = true;
    }
    return p;
}

static void proto_free_fn(void *data, void *p)
{
    (void)data;
    ovha_free(p);
}

static void proto_allocator_init(ProtobufCAllocator *a,
                                 struct proto_alloc_state *st)
{
    st->failed = false;
    a->alloc = proto_alloc_fn;
    a->free = proto_free_fn;
    a->allocator_data = st;
}

/* Maps a NULL unpack to OOM or malformed. */
static int proto_unpack_error(const struct proto_alloc_state *st)
{
    return st->failed ? -ENOMEM : OVHA_EPROTO;
}

/* ---- field checks ------------------------------------------------------- */

enum {
    PROTO_F_REQUIRED = 1 << 0, /* must not be empty */
    PROTO_F_ID = 1 << 1,       /* [A-Za-z0-9_.:-] */
    PROTO_F_PERIOD = 1 << 2,   /* [A-Za-z0-9-] */
    PROTO_F_GROUPS = 1 << 3,   /* [A-Za-z0-9_.-] names joined by ',' */
};

static bool proto_id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-' ||
           c == ':';
}

bool proto_id_valid(const char *s)
{
    size_t n = strnlen(s, PROTO_ID_MAX);
    if (n == 0 || n >= PROTO_ID_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!proto_id_char(s[i])) {
            return false;
        }
    }
    return true;
}

/* Checks one character against the field's class. Control characters are
 * never allowed: these strings reach logs and management commands. */
static bool proto_char_ok(unsigned char c, unsigned flags)
{
    if (c < 0x20 || c == 0x7f) {
        return false;
    }
    if (flags & PROTO_F_ID) {
        return proto_id_char((char)c);
    }
    if (flags & PROTO_F_PERIOD) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               (c >= '0' && c <= '9') || c == '-';
    }
    if (flags & PROTO_F_GROUPS) {
        return c == ',' || (c != ':' && proto_id_char((char)c));
    }
    return true;
}

/* Group lists have no empty names: no leading, trailing or double ','. */
static bool proto_groups_ok(const char *s)
{
    size_t n = strlen(s);
    return n == 0 || (s[0] != ',' && s[n - 1] != ',' && !strstr(s, ",,"));
}

/* Copies a decoded string into a fixed array after checking it. */
static int proto_copy_in(char *dst, size_t cap, const char *src, unsigned flags)
{
    if (src == NULL) {
        src = "";
    }
    size_t n = strnlen(src, cap);
    if (n >= cap) {
        return OVHA_EPROTO;
    }
    if (n == 0 && (flags & PROTO_F_REQUIRED)) {
        return OVHA_EPROTO;
    }
    for (size_t i = 0; i < n; i++) {
        if (!proto_char_ok((unsigned char)src[i], flags)) {
            return OVHA_EPROTO;
        }
    }
    memcpy(dst, src, n + 1);
    return 0;
}

/* A fixed array handed to the encoder must be terminated inside it. */
static char *proto_out(const char *s, size_t cap, int *err)
{
    if (strnlen(s, cap) >= cap) {
        *err = -EINVAL;
    }
    return (char *)s;
}

#define PROTO_IN(dst, src, flags) proto_copy_in(dst, sizeof(dst), src, flags)
#define PROTO_OUT(field, err)     proto_out(field, sizeof(field), err)

/* ---- command: decode ----------------------------------------------------- */

static int proto_dec_session_open(const Ovha__SessionOpen *m,
                                  struct proto_session_open *o)
{
    int rv = 0;
    rv |= PROTO_IN(o->cn, m->cn, PROTO_F_REQUIRED);
    rv |= PROTO_IN(o->real_addr, m->real_addr, 0);
    rv |= PROTO_IN(o->pool4, m->pool4, PROTO_F_ID);
    rv |= PROTO_IN(o->pool6, m->pool6, PROTO_F_ID);
    rv |= PROTO_IN(o->period, m->period, PROTO_F_PERIOD);
    rv |= PROTO_IN(o->groups, m->groups, PROTO_F_GROUPS);
    if (rv != 0 || !proto_groups_ok(o->groups)) {
        return OVHA_EPROTO;
    }
    if (m->on_excess != OVHA__ON_EXCESS__ON_EXCESS_EVICT_OLDEST &&
        m->on_excess != OVHA__ON_EXCESS__ON_EXCESS_REFUSE) {
        return OVHA_EPROTO;
    }
    if (m->quota_bytes != 0 && o->period[0] == '\0') {
        return OVHA_EPROTO;
    }
    o->cid = m->cid;
    o->max_sessions = m->max_sessions;
    o->on_excess = (enum proto_on_excess)m->on_excess;
    o->quota_bytes = m->quota_bytes;
    o->quota_admit = m->quota_admit;
    return 0;
}

static int proto_dec_usage(const Ovha__UsageCharge *m,
                           struct proto_usage_charge *o)
{
    if (PROTO_IN(o->period, m->period, PROTO_F_PERIOD | PROTO_F_REQUIRED)) {
        return OVHA_EPROTO;
    }
    if (m->n_entries > PROTO_USAGE_MAX) {
        return OVHA_EPROTO;
    }
    o->seq = m->seq;
    o->nentries = 0;
    o->entries = NULL;
    if (m->n_entries == 0) {
        return 0;
    }
    o->entries = ovha_calloc(m->n_entries, sizeof(*o->entries));
    if (o->entries == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < m->n_entries; i++) {
        const Ovha__UsageEntry *e = m->entries[i];
        struct proto_usage_entry *d = &o->entries[i];
        if (PROTO_IN(d->cn, e->cn, PROTO_F_REQUIRED)) {
            ovha_free(o->entries);
            o->entries = NULL;
            return OVHA_EPROTO;
        }
        d->session_id = e->session_id;
        d->bytes_in = e->bytes_in;
        d->bytes_out = e->bytes_out;
    }
    o->nentries = m->n_entries;
    return 0;
}

static int proto_dec_policy_put(const Ovha__PolicyPut *m,
                                struct proto_policy_put *o)
{
    if (PROTO_IN(o->name, m->name, PROTO_F_ID | PROTO_F_REQUIRED)) {
        return OVHA_EPROTO;
    }
    size_t n = strnlen(m->body, PROTO_POLICY_MAX);
    if (n >= PROTO_POLICY_MAX) {
        return OVHA_EPROTO;
    }
    o->body = ovha_strndup(m->body, n);
    return o->body == NULL ? -ENOMEM : 0;
}

static int proto_dec_body(const Ovha__Command *m, struct proto_cmd *o)
{
    int rv = 0;
    switch (m->body_case) {
    case OVHA__COMMAND__BODY_SESSION_OPEN:
        o->kind = PROTO_CMD_SESSION_OPEN;
        return proto_dec_session_open(m->session_open, &o->u.session_open);
    case OVHA__COMMAND__BODY_SESSION_ESTABLISHED:
        o->kind = PROTO_CMD_SESSION_ESTABLISHED;
        o->u.session_established.session_id =
            m->session_established->session_id;
        return 0;
    case OVHA__COMMAND__BODY_SESSION_CLOSE:
        o->kind = PROTO_CMD_SESSION_CLOSE;
        o->u.session_close.session_id = m->session_close->session_id;
        return PROTO_IN(o->u.session_close.reason, m->session_close->reason, 0);
    case OVHA__COMMAND__BODY_USAGE_CHARGE:
        o->kind = PROTO_CMD_USAGE_CHARGE;
        return proto_dec_usage(m->usage_charge, &o->u.usage_charge);
    case OVHA__COMMAND__BODY_GATEWAY_HEARTBEAT:
        o->kind = PROTO_CMD_GATEWAY_HEARTBEAT;
        return PROTO_IN(o->u.gateway_heartbeat.addr, m->gateway_heartbeat->addr,
                        0);
    case OVHA__COMMAND__BODY_GATEWAY_SET_STATE: {
        const Ovha__GatewaySetState *s = m->gateway_set_state;
        o->kind = PROTO_CMD_GATEWAY_SET_STATE;
        if (s->state < OVHA__GATEWAY_STATE__GATEWAY_STATE_ACTIVE ||
            s->state > OVHA__GATEWAY_STATE__GATEWAY_STATE_DOWN) {
            return OVHA_EPROTO;
        }
        o->u.gateway_set_state.state = (enum proto_gw_state)s->state;
        o->u.gateway_set_state.force = s->force;
        return PROTO_IN(o->u.gateway_set_state.gateway_id, s->gateway_id,
                        PROTO_F_ID | PROTO_F_REQUIRED);
    }
    case OVHA__COMMAND__BODY_LEASE_RESERVE:
        o->kind = PROTO_CMD_LEASE_RESERVE;
        rv |= PROTO_IN(o->u.lease_reserve.cn, m->lease_reserve->cn,
                       PROTO_F_REQUIRED);
        rv |= PROTO_IN(o->u.lease_reserve.ip, m->lease_reserve->ip,
                       PROTO_F_REQUIRED);
        return rv ? OVHA_EPROTO : 0;
    case OVHA__COMMAND__BODY_LEASE_RELEASE:
        o->kind = PROTO_CMD_LEASE_RELEASE;
        rv |= PROTO_IN(o->u.lease_release.cn, m->lease_release->cn,
                       PROTO_F_REQUIRED);
        rv |= PROTO_IN(o->u.lease_release.ip, m->lease_release->ip,
                       PROTO_F_REQUIRED);
        return rv ? OVHA_EPROTO : 0;
    case OVHA__COMMAND__BODY_POOL_PUT:
        o->kind = PROTO_CMD_POOL_PUT;
        rv |= PROTO_IN(o->u.pool_put.name, m->pool_put->name,
                       PROTO_F_ID | PROTO_F_REQUIRED);
        rv |= PROTO_IN(o->u.pool_put.cidr, m->pool_put->cidr, PROTO_F_REQUIRED);
        o->u.pool_put.lease_ttl_ms = m->pool_put->lease_ttl_ms;
        return rv ? OVHA_EPROTO : 0;
    case OVHA__COMMAND__BODY_POLICY_PUT:
        o->kind = PROTO_CMD_POLICY_PUT;
        return proto_dec_policy_put(m->policy_put, &o->u.policy_put);
    case OVHA__COMMAND__BODY_POLICY_DELETE:
        o->kind = PROTO_CMD_POLICY_DELETE;
        return PROTO_IN(o->u.policy_delete.name, m->policy_delete->name,
                        PROTO_F_ID | PROTO_F_REQUIRED);
    case OVHA__COMMAND__BODY_SUBNET_REGISTER:
        o->kind = PROTO_CMD_SUBNET_REGISTER;
        rv |= PROTO_IN(o->u.subnet_register.cidr, m->subnet_register->cidr,
                       PROTO_F_REQUIRED);
        rv |= PROTO_IN(o->u.subnet_register.owner_cn,
                       m->subnet_register->owner_cn, PROTO_F_REQUIRED);
        return rv ? OVHA_EPROTO : 0;
    case OVHA__COMMAND__BODY_SUBNET_RELEASE:
        o->kind = PROTO_CMD_SUBNET_RELEASE;
        return PROTO_IN(o->u.subnet_release.cidr, m->subnet_release->cidr,
                        PROTO_F_REQUIRED);
    case OVHA__COMMAND__BODY_AUDIT_APPEND:
        o->kind = PROTO_CMD_AUDIT_APPEND;
        rv |= PROTO_IN(o->u.audit_append.action, m->audit_append->action,
                       PROTO_F_ID | PROTO_F_REQUIRED);
        rv |= PROTO_IN(o->u.audit_append.subject, m->audit_append->subject, 0);
        rv |= PROTO_IN(o->u.audit_append.detail, m->audit_append->detail, 0);
        return rv ? OVHA_EPROTO : 0;
    case OVHA__COMMAND__BODY_MAC_REGISTER:
        o->kind = PROTO_CMD_MAC_REGISTER;
        o->u.mac_register.session_id = m->mac_register->session_id;
        return PROTO_IN(o->u.mac_register.mac, m->mac_register->mac,
                        PROTO_F_REQUIRED)
                   ? OVHA_EPROTO
                   : 0;
    case OVHA__COMMAND__BODY__NOT_SET:
        o->kind = PROTO_CMD_NONE;
        return 0;
    default:
        return OVHA_EPROTO;
    }
}

int proto_cmd_decode(const uint8_t *buf, size_t len, struct proto_cmd *ret)
{
    ProtobufCAllocator a;
    struct proto_alloc_state st;

    memset(ret, 0, sizeof(*ret));
    if (buf == NULL || len > PROTO_CMD_MAX) {
        return OVHA_EPROTO;
    }
    proto_allocator_init(&a, &st);
    Ovha__Command *m = ovha__command__unpack(&a, len, buf);
    if (m == NULL) {
        return proto_unpack_error(&st);
    }
    int rv = 0;
    ret->version = m->version;
    ret->req_id = m->req_id;
    ret->ts_ms = m->ts_ms;
    rv |= PROTO_IN(ret->gateway, m->gateway, PROTO_F_ID | PROTO_F_REQUIRED);
    rv |= PROTO_IN(ret->actor, m->actor, PROTO_F_ID);
    if (rv != 0) {
        rv = OVHA_EPROTO;
    } else {
        rv = proto_dec_body(m, ret);
    }
    ovha__command__free_unpacked(m, &a);
    if (rv != 0) {
        proto_cmd_clear(ret);
    }
    return rv;
}

void proto_cmd_clear(struct proto_cmd *cmd)
{
    if (cmd == NULL) {
        return;
    }
    if (cmd->kind == PROTO_CMD_USAGE_CHARGE) {
        ovha_free(cmd->u.usage_charge.entries);
    } else if (cmd->kind == PROTO_CMD_POLICY_PUT) {
        ovha_free(cmd->u.policy_put.body);
    }
    memset(cmd, 0, sizeof(*cmd));
}

/* ---- command: encode ----------------------------------------------------- */

/* Storage for one encoded body; lives on the encoder's stack. */
struct proto_enc_body {
    Ovha__SessionOpen so;
    Ovha__SessionEstablished se;
    Ovha__SessionClose sc;
    Ovha__UsageCharge uc;
    Ovha__GatewayHeartbeat hb;
    Ovha__GatewaySetState gs;
    Ovha__LeaseReserve lr;
    Ovha__LeaseRelease ll;
    Ovha__PoolPut pp;
    Ovha__PolicyPut pop;
    Ovha__PolicyDelete pd;
    Ovha__SubnetRegister sr;
    Ovha__SubnetRelease sl;
    Ovha__AuditAppend aa;
    Ovha__MacRegister mr;
};

static void proto_enc_session_open(const struct proto_session_open *s,
                                   Ovha__Command *m,
                                   struct proto_enc_body *b,
                                   int *err)
{
    ovha__session_open__init(&b->so);
    b->so.cn = PROTO_OUT(s->cn, err);
    b->so.cid = s->cid;
    b->so.real_addr = PROTO_OUT(s->real_addr, err);
    b->so.pool4 = PROTO_OUT(s->pool4, err);
    b->so.pool6 = PROTO_OUT(s->pool6, err);
    b->so.max_sessions = s->max_sessions;
    b->so.on_excess = (Ovha__OnExcess)s->on_excess;
    b->so.period = PROTO_OUT(s->period, err);
    b->so.quota_bytes = s->quota_bytes;
    b->so.groups = PROTO_OUT(s->groups, err);
    b->so.quota_admit = s->quota_admit;
    m->body_case = OVHA__COMMAND__BODY_SESSION_OPEN;
    m->session_open = &b->so;
}

/* Builds the usage entries array; *ret_store is freed by the caller. */
static int proto_enc_usage(const struct proto_usage_charge *u,
                           Ovha__Command *m,
                           struct proto_enc_body *b,
                           void **ret_store,
                           int *err)
{
    ovha__usage_charge__init(&b->uc);
    b->uc.seq = u->seq;
    b->uc.period = PROTO_OUT(u->period, err);
    m->body_case = OVHA__COMMAND__BODY_USAGE_CHARGE;
    m->usage_charge = &b->uc;
    if (u->nentries == 0) {
        return 0;
    }
    size_t n = u->nentries;
    char *store = ovha_malloc(
        n * (sizeof(Ovha__UsageEntry) + sizeof(Ovha__UsageEntry *)));
    if (store == NULL) {
        return -ENOMEM;
    }
    Ovha__UsageEntry *ents = (Ovha__UsageEntry *)store;
    Ovha__UsageEntry **ptrs = (Ovha__UsageEntry **)(ents + n);
    for (size_t i = 0; i < n; i++) {
        ovha__usage_entry__init(&ents[i]);
        ents[i].session_id = u->entries[i].session_id;
        ents[i].cn = PROTO_OUT(u->entries[i].cn, err);
        ents[i].bytes_in = u->entries[i].bytes_in;
        ents[i].bytes_out = u->entries[i].bytes_out;
        ptrs[i] = &ents[i];
    }
    b->uc.n_entries = n;
    b->uc.entries = ptrs;
    *ret_store = store;
    return 0;
}

static void proto_enc_simple(const struct proto_cmd *c,
                             Ovha__Command *m,
                             struct proto_enc_body *b,
                             int *err)
{
    switch (c->kind) {
    case PROTO_CMD_SESSION_ESTABLISHED:
        ovha__session_established__init(&b->se);
        b->se.session_id = c->u.session_established.session_id;
        m->body_case = OVHA__COMMAND__BODY_SESSION_ESTABLISHED;
        m->session_established = &b->se;
        break;
    case PROTO_CMD_SESSION_CLOSE:
        ovha__session_close__init(&b->sc);
        b->sc.session_id = c->u.session_close.session_id;
        b->sc.reason = PROTO_OUT(c->u.session_close.reason, err);
        m->body_case = OVHA__COMMAND__BODY_SESSION_CLOSE;
        m->session_close = &b->sc;
        break;
    case PROTO_CMD_GATEWAY_HEARTBEAT:
        ovha__gateway_heartbeat__init(&b->hb);
        b->hb.addr = PROTO_OUT(c->u.gateway_heartbeat.addr, err);
        m->body_case = OVHA__COMMAND__BODY_GATEWAY_HEARTBEAT;
        m->gateway_heartbeat = &b->hb;
        break;
    case PROTO_CMD_GATEWAY_SET_STATE:
        ovha__gateway_set_state__init(&b->gs);
        b->gs.gateway_id = PROTO_OUT(c->u.gateway_set_state.gateway_id, err);
        b->gs.state = (Ovha__GatewayState)c->u.gateway_set_state.state;
        b->gs.force = c->u.gateway_set_state.force;
        m->body_case = OVHA__COMMAND__BODY_GATEWAY_SET_STATE;
        m->gateway_set_state = &b->gs;
        break;
    case PROTO_CMD_LEASE_RESERVE:
        ovha__lease_reserve__init(&b->lr);
        b->lr.cn = PROTO_OUT(c->u.lease_reserve.cn, err);
        b->lr.ip = PROTO_OUT(c->u.lease_reserve.ip, err);
        m->body_case = OVHA__COMMAND__BODY_LEASE_RESERVE;
        m->lease_reserve = &b->lr;
        break;
    case PROTO_CMD_LEASE_RELEASE:
        ovha__lease_release__init(&b->ll);
        b->ll.cn = PROTO_OUT(c->u.lease_release.cn, err);
        b->ll.ip = PROTO_OUT(c->u.lease_release.ip, err);
        m->body_case = OVHA__COMMAND__BODY_LEASE_RELEASE;
        m->lease_release = &b->ll;
        break;
    case PROTO_CMD_POOL_PUT:
        ovha__pool_put__init(&b->pp);
        b->pp.name = PROTO_OUT(c->u.pool_put.name, err);
        b->pp.cidr = PROTO_OUT(c->u.pool_put.cidr, err);
        b->pp.lease_ttl_ms = c->u.pool_put.lease_ttl_ms;
        m->body_case = OVHA__COMMAND__BODY_POOL_PUT;
        m->pool_put = &b->pp;
        break;
    case PROTO_CMD_POLICY_PUT:
        ovha__policy_put__init(&b->pop);
        b->pop.name = PROTO_OUT(c->u.policy_put.name, err);
        b->pop.body = c->u.policy_put.body != NULL ? c->u.policy_put.body : "";
        m->body_case = OVHA__COMMAND__BODY_POLICY_PUT;
        m->policy_put = &b->pop;
        break;
    case PROTO_CMD_POLICY_DELETE:
        ovha__policy_delete__init(&b->pd);
        b->pd.name = PROTO_OUT(c->u.policy_delete.name, err);
        m->body_case = OVHA__COMMAND__BODY_POLICY_DELETE;
        m->policy_delete = &b->pd;
        break;
    case PROTO_CMD_SUBNET_REGISTER:
        ovha__subnet_register__init(&b->sr);
        b->sr.cidr = PROTO_OUT(c->u.subnet_register.cidr, err);
        b->sr.owner_cn = PROTO_OUT(c->u.subnet_register.owner_cn, err);
        m->body_case = OVHA__COMMAND__BODY_SUBNET_REGISTER;
        m->subnet_register = &b->sr;
        break;
    case PROTO_CMD_SUBNET_RELEASE:
        ovha__subnet_release__init(&b->sl);
        b->sl.cidr = PROTO_OUT(c->u.subnet_release.cidr, err);
        m->body_case = OVHA__COMMAND__BODY_SUBNET_RELEASE;
        m->subnet_release = &b->sl;
        break;
    case PROTO_CMD_AUDIT_APPEND:
        ovha__audit_append__init(&b->aa);
        b->aa.action = PROTO_OUT(c->u.audit_append.action, err);
        b->aa.subject = PROTO_OUT(c->u.audit_append.subject, err);
        b->aa.detail = PROTO_OUT(c->u.audit_append.detail, err);
        m->body_case = OVHA__COMMAND__BODY_AUDIT_APPEND;
        m->audit_append = &b->aa;
        break;
    case PROTO_CMD_MAC_REGISTER:
        ovha__mac_register__init(&b->mr);
        b->mr.mac = PROTO_OUT(c->u.mac_register.mac, err);
        b->mr.session_id = c->u.mac_register.session_id;
        m->body_case = OVHA__COMMAND__BODY_MAC_REGISTER;
        m->mac_register = &b->mr;
        break;
    case PROTO_CMD_NONE:
        m->body_case = OVHA__COMMAND__BODY__NOT_SET;
        break;
    default:
        *err = -EINVAL;
        break;
    }
}

/* Packs any message into a fresh ovha_malloc buffer. */
static int proto_pack(const ProtobufCMessage *m,
                      uint8_t **ret_buf,
                      size_t *ret_len)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = ovha_malloc(n == 0 ? 1 : n);
    if (buf == NULL) {
        return -ENOMEM;
    }
    protobuf_c_message_pack(m, buf);
    *ret_buf = buf;
    *ret_len = n;
    return 0;
}

int proto_cmd_encode(const struct proto_cmd *cmd,
                     uint8_t **ret_buf,
                     size_t *ret_len)
{
    Ovha__Command m;
    struct proto_enc_body b;
    void *store = NULL;
    int err = 0;

    ovha__command__init(&m);
    m.version = cmd->version;
    m.req_id = cmd->req_id;
    m.gateway = PROTO_OUT(cmd->gateway, &err);
    m.ts_ms = cmd->ts_ms;
    m.actor = PROTO_OUT(cmd->actor, &err);
    if (cmd->kind == PROTO_CMD_SESSION_OPEN) {
        proto_enc_session_open(&cmd->u.session_open, &m, &b, &err);
    } else if (cmd->kind == PROTO_CMD_USAGE_CHARGE) {
        int rv = proto_enc_usage(&cmd->u.usage_charge, &m, &b, &store, &err);
        if (rv != 0) {
            return rv;
        }
    } else {
        proto_enc_simple(cmd, &m, &b, &err);
    }
    if (err == 0) {
        err = proto_pack(&m.base, ret_buf, ret_len);
    }
    ovha_free(store);
    return err;
}

/* ---- result ------------------------------------------------------------- */

/* Fills a protobuf-c Result from the plain one; refs storage is caller's. */
static void proto_result_to_pb(const struct proto_result *r,
                               Ovha__Result *m,
                               Ovha__SessionRef *refs,
                               Ovha__SessionRef **ptrs,
                               int *err)
{
    ovha__result__init(m);
    m->status = (uint32_t)r->status;
    m->reason = (uint32_t)r->reason;
    m->detail = PROTO_OUT(r->detail, err);
    m->replayed = r->replayed;
    m->session_id = r->session_id;
    m->ip4 = PROTO_OUT(r->ip4, err);
    m->ip6 = PROTO_OUT(r->ip6, err);
    m->takeover = r->takeover;
    m->over_quota = r->over_quota;
    m->old_session_id = r->old_session_id;
    m->old_gateway = PROTO_OUT(r->old_gateway, err);
    m->duplicate = r->duplicate;
    m->audit_seq = r->audit_seq;
    m->count = r->count;
    m->refs_total = r->refs_total;
    size_t n = r->nrefs;
    if (n > PROTO_RESULT_MAX_REFS) {
        *err = -EINVAL;
        n = 0;
    }
    for (size_t i = 0; i < n; i++) {
        ovha__session_ref__init(&refs[i]);
        refs[i].kind = (uint32_t)r->refs[i].kind;
        refs[i].session_id = r->refs[i].session_id;
        refs[i].cn = PROTO_OUT(r->refs[i].cn, err);
        refs[i].gateway = PROTO_OUT(r->refs[i].gateway, err);
        ptrs[i] = &refs[i];
    }
    m->n_refs = n;
    m->refs = n > 0 ? ptrs : NULL;
}

static int proto_result_from_pb(const Ovha__Result *m, struct proto_result *r)
{
    int rv = 0;
    memset(r, 0, sizeof(*r));
    if (m->status > PROTO_STATUS_REFUSED || m->reason >= PROTO_R_MAX ||
        m->n_refs > PROTO_RESULT_MAX_REFS) {
        return OVHA_EPROTO;
    }
    r->status = (enum proto_status)m->status;
    r->reason = (enum proto_reason)m->reason;
    rv |= PROTO_IN(r->detail, m->detail, 0);
    r->replayed = m->replayed;
    r->session_id = m->session_id;
    rv |= PROTO_IN(r->ip4, m->ip4, 0);
    rv |= PROTO_IN(r->ip6, m->ip6, 0);
    r->takeover = m->takeover;
    r->over_quota = m->over_quota;
    r->old_session_id = m->old_session_id;
    rv |= PROTO_IN(r->old_gateway, m->old_gateway, 0);
    r->duplicate = m->duplicate;
    r->audit_seq = m->audit_seq;
    r->count = m->count;
    r->refs_total = m->refs_total;
    for (size_t i = 0; i < m->n_refs; i++) {
        const Ovha__SessionRef *s = m->refs[i];
        if (s->kind < PROTO_REF_EVICTED || s->kind > PROTO_REF_EXPIRED) {
            return OVHA_EPROTO;
        }
        r->refs[i].kind = (enum proto_ref_kind)s->kind;
        r->refs[i].session_id = s->session_id;
        rv |= PROTO_IN(r->refs[i].cn, s->cn, 0);
        rv |= PROTO_IN(r->refs[i].gateway, s->gateway, 0);
    }
    r->nrefs = m->n_refs;
    return rv ? OVHA_EPROTO : 0;
}

int proto_result_encode(const struct proto_result *res,
                        uint8_t **ret_buf,
                        size_t *ret_len)
{
    Ovha__Result m;
    Ovha__SessionRef refs[PROTO_RESULT_MAX_REFS];
    Ovha__SessionRef *ptrs[PROTO_RESULT_MAX_REFS];
    int err = 0;

    proto_result_to_pb(res, &m, refs, ptrs, &err);
    if (err != 0) {
        return err;
    }
    return proto_pack(&m.base, ret_buf, ret_len);
}

int proto_result_decode(const uint8_t *buf,
                        size_t len,
                        struct proto_result *ret)
{
    ProtobufCAllocator a;
    struct proto_alloc_state st;

    static const uint8_t empty[1];
    memset(ret, 0, sizeof(*ret));
    if (buf == NULL && len == 0) {
        buf = empty; /* an all-default result encodes to zero bytes */
    }
    if (buf == NULL || len > PROTO_CMD_MAX) {
        return OVHA_EPROTO;
    }
    proto_allocator_init(&a, &st);
    Ovha__Result *m = ovha__result__unpack(&a, len, buf);
    if (m == NULL) {
        return proto_unpack_error(&st);
    }
    int rv = proto_result_from_pb(m, ret);
    ovha__result__free_unpacked(m, &a);
    return rv;
}

/* ---- forwarding RPC ------------------------------------------------------ */

int proto_fwd_req_encode(const struct proto_fwd_req *req,
                         uint8_t **ret_buf,
                         size_t *ret_len)
{
    Ovha__FwdRequest m;
    int err = 0;

    ovha__fwd_request__init(&m);
    m.req_id = req->req_id;
    m.from = PROTO_OUT(req->from, &err);
    m.command.data = req->cmd;
    m.command.len = req->cmd_len;
    if (err != 0) {
        return err;
    }
    return proto_pack(&m.base, ret_buf, ret_len);
}

int proto_fwd_req_decode(const uint8_t *buf,
                         size_t len,
                         struct proto_fwd_req *ret)
{
    ProtobufCAllocator a;
    struct proto_alloc_state st;
    int rv = 0;

    memset(ret, 0, sizeof(*ret));
    if (buf == NULL || len > PROTO_CMD_MAX + 1024) {
        return OVHA_EPROTO;
    }
    proto_allocator_init(&a, &st);
    Ovha__FwdRequest *m = ovha__fwd_request__unpack(&a, len, buf);
    if (m == NULL) {
        return proto_unpack_error(&st);
    }
    ret->req_id = m->req_id;
    if (PROTO_IN(ret->from, m->from, PROTO_F_ID) != 0 ||
        m->command.len > PROTO_CMD_MAX) {
        rv = OVHA_EPROTO;
        goto out;
    }
    ret->cmd = ovha_malloc(m->command.len == 0 ? 1 : m->command.len);
    if (ret->cmd == NULL) {
        rv = -ENOMEM;
        goto out;
    }
    if (m->command.len > 0) {
        memcpy(ret->cmd, m->command.data, m->command.len);
    }
    ret->cmd_len = m->command.len;
out:
    ovha__fwd_request__free_unpacked(m, &a);
    return rv;
}

void proto_fwd_req_clear(struct proto_fwd_req *req)
{
    if (req == NULL) {
        return;
    }
    ovha_free(req->cmd);
    memset(req, 0, sizeof(*req));
}

int proto_fwd_resp_encode(const struct proto_fwd_resp *resp,
                          uint8_t **ret_buf,
                          size_t *ret_len)
{
    Ovha__FwdResponse m;
    Ovha__Result r;
    Ovha__SessionRef refs[PROTO_RESULT_MAX_REFS];
    Ovha__SessionRef *ptrs[PROTO_RESULT_MAX_REFS];
    int err = 0;

    ovha__fwd_response__init(&m);
    m.req_id = resp->req_id;
    m.status = resp->status;
    m.leader_hint = PROTO_OUT(resp->leader_hint, &err);
    if (resp->has_result) {
        proto_result_to_pb(&resp->result, &r, refs, ptrs, &err);
        m.result = &r;
    }
    if (err != 0) {
        return err;
    }
    return proto_pack(&m.base, ret_buf, ret_len);
}

int proto_fwd_resp_decode(const uint8_t *buf,
                          size_t len,
                          struct proto_fwd_resp *ret)
{
    ProtobufCAllocator a;
    struct proto_alloc_state st;
    int rv = 0;

    memset(ret, 0, sizeof(*ret));
    if (buf == NULL || len > PROTO_CMD_MAX) {
        return OVHA_EPROTO;
    }
    proto_allocator_init(&a, &st);
    Ovha__FwdResponse *m = ovha__fwd_response__unpack(&a, len, buf);
    if (m == NULL) {
        return proto_unpack_error(&st);
    }
    ret->req_id = m->req_id;
    ret->status = m->status;
    rv = PROTO_IN(ret->leader_hint, m->leader_hint, 0);
    if (rv == 0 && m->result != NULL) {
        ret->has_result = true;
        rv = proto_result_from_pb(m->result, &ret->result);
    }
    ovha__fwd_response__free_unpacked(m, &a);
    return rv;
}

/* ---- names ----------------------------------------------------------------
 */

const char *proto_cmd_kind_name(enum proto_cmd_kind kind)
{
    static const char *const names[PROTO_CMD_KIND_MAX] = {
        [PROTO_CMD_NONE] = "none",
        [PROTO_CMD_SESSION_OPEN] = "session_open",
        [PROTO_CMD_SESSION_ESTABLISHED] = "session_established",
        [PROTO_CMD_SESSION_CLOSE] = "session_close",
        [PROTO_CMD_USAGE_CHARGE] = "usage_charge",
        [PROTO_CMD_GATEWAY_HEARTBEAT] = "gateway_heartbeat",
        [PROTO_CMD_GATEWAY_SET_STATE] = "gateway_set_state",
        [PROTO_CMD_LEASE_RESERVE] = "lease_reserve",
        [PROTO_CMD_LEASE_RELEASE] = "lease_release",
        [PROTO_CMD_POOL_PUT] = "pool_put",
        [PROTO_CMD_POLICY_PUT] = "policy_put",
        [PROTO_CMD_POLICY_DELETE] = "policy_delete",
        [PROTO_CMD_SUBNET_REGISTER] = "subnet_register",
        [PROTO_CMD_SUBNET_RELEASE] = "subnet_release",
        [PROTO_CMD_AUDIT_APPEND] = "audit_append",
        [PROTO_CMD_MAC_REGISTER] = "mac_register",
    };
    if ((unsigned)kind >= PROTO_CMD_KIND_MAX) {
        return "unknown";
    }
    return names[kind];
}

const char *proto_reason_name(enum proto_reason reason)
{
    static const char *const names[PROTO_R_MAX] = {
        [PROTO_R_NONE] = "none",
        [PROTO_R_MALFORMED] = "malformed",
        [PROTO_R_UNSUPPORTED_VERSION] = "unsupported_version",
        [PROTO_R_UNKNOWN_GATEWAY] = "unknown_gateway",
        [PROTO_R_GATEWAY_NOT_ACTIVE] = "gateway_not_active",
        [PROTO_R_UNKNOWN_SESSION] = "unknown_session",
        [PROTO_R_WRONG_GATEWAY] = "wrong_gateway",
        [PROTO_R_SESSION_ORPHANED] = "session_orphaned",
        [PROTO_R_SESSION_LIMIT] = "session_limit",
        [PROTO_R_POOL_EXHAUSTED] = "pool_exhausted",
        [PROTO_R_NO_POOL] = "no_pool",
        [PROTO_R_QUOTA_EXCEEDED] = "quota_exceeded",
        [PROTO_R_INVALID] = "invalid",
        [PROTO_R_IP_NOT_IN_POOL] = "ip_not_in_pool",
        [PROTO_R_IP_TAKEN] = "ip_taken",
        [PROTO_R_NOT_FOUND] = "not_found",
        [PROTO_R_IN_USE] = "in_use",
        [PROTO_R_OVERLAP] = "overlap",
        [PROTO_R_NO_BODY] = "no_body",
        [PROTO_R_LAST_ACTIVE] = "last_active",
        [PROTO_R_TOO_MANY] = "too_many",
    };
    if ((unsigned)reason >= PROTO_R_MAX) {
        return "unknown";
    }
    return names[reason];
}

const char *proto_gw_state_name(enum proto_gw_state state)
{
    switch (state) {
    case PROTO_GW_ACTIVE:
        return "active";
    case PROTO_GW_STANDBY:
        return "standby";
    case PROTO_GW_DRAINING:
        return "draining";
    case PROTO_GW_DOWN:
        return "down";
    }
    return "unknown";
}
