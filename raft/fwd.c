/* raft/fwd: the forwarding RPC from a follower's node to the leader's.
 *
 * Each node listens on its raft port + 1 (the same host). A follower keeps
 * one connection to the current leader and sends FwdRequest frames
 * (u32 big-endian length, then the protobuf bytes from proto/); the leader
 * proposes the carried command locally and answers with a FwdResponse that
 * has the same seq and the FSM's result. With mTLS configured both ends
 * are authenticated by tls.c exactly like raft's own connections; plain TCP
 * is for unit tests only.
 *
 * Failure modes: the leader changes or the connection drops -> every
 * request in flight on it comes back to the runtime as OVHA_EUNKNOWN (the
 * leader may have applied it) and is retried with the same bytes, so the
 * same req_id, on the next leader; a leader that is not ready answers
 * OVHA_ENOTLEADER and the follower retries; a malformed frame closes the
 * connection (logged).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "raft/runtime_int.h"
#include "raft/tls.h"

#define RFT_FWD_MAX_FRAME (PROTO_CMD_MAX + 4096)

struct rft_fwd;

struct rft_fwd_conn {
    struct rft_fwd_conn *prev, *next;
    struct rft_fwd *f;
    uv_stream_t *s;
    bool tcp;    /* s is our uv_tcp_t (ovha_free), else tls.c's (raft_free) */
    bool client; /* our link to the leader */
    bool closing;
    bool handle_closed;
    unsigned refs; /* server side: proposals still to answer; c lives
                      until they are done even if the link is gone */
    struct ovha_buf in;
};

struct rft_fwd_call {
    struct rft_fwd_conn *conn; /* kept alive by its refs */
    uint64_t seq;
};

struct rft_fwd {
    struct rft *r;
    uv_tcp_t listener; /* plain TCP mode */
    bool listening;
    struct rft_fwd_conn *conns; /* every open connection */
    struct rft_fwd_conn *leader;
    bool dialing;
    uint64_t leader_id;
    char leader_addr[RFT_ADDR_MAX];
    uint64_t seq;
    struct rft_prop **sent; /* forwarded, waiting for an answer */
    size_t nsent, capsent;
    bool closing;
    void (*close_cb)(void *data);
    void *close_data;
    unsigned pending;
};

/* ---- addresses ----------------------------------------------------------- */

/* The forwarding address of a raft address: same host, port + 1. */
static int rft_fwd_sockaddr(const char *raft_addr, struct sockaddr_in *ret)
{
    char host[RFT_ADDR_MAX];
    ovha_strlcpy(host, raft_addr, sizeof(host));
    char *colon = strrchr(host, ':');
    uint64_t port;
    if (colon == NULL) {
        return -EINVAL;
    }
    *colon = '\0';
    if (ovha_parse_u64(colon + 1, 65534, &port) != 0 ||
        uv_ip4_addr(host, (int)port + 1, ret) != 0) {
        return -EINVAL;
    }
    return 0;
}

void rft_fwd_addr(const char *raft_addr, char *out, size_t len)
{
    struct sockaddr_in sa;
    char ip[INET_ADDRSTRLEN] = "?";
    if (rft_fwd_sockaddr(raft_addr, &sa) != 0) {
        snprintf(out, len, "invalid");
        return;
    }
    uv_ip4_name(&sa, ip, sizeof(ip));
    snprintf(out, len, "%s:%d", ip, ntohs(sa.sin_port));
}

/* ---- connections --------------------------------------------------------- */

static void rft_fwd_maybe_closed(struct rft_fwd *f);

static void rft_fwd_conn_release(struct rft_fwd_conn *c)
{
    struct rft_fwd *f = c->f;
    if (!c->handle_closed || c->refs > 0) {
        return;
    }
    ovha_buf_free(&c->in);
    ovha_free(c);
    f->pending--;
    rft_fwd_maybe_closed(f);
}

static void rft_fwd_conn_free_cb(uv_handle_t *h)
{
    struct rft_fwd_conn *c = h->data;
    if (c->tcp) {
        ovha_free(h);
    } else {
        raft_free(h);
    }
    c->handle_closed = true;
    rft_fwd_conn_release(c);
}

/* Fails every request sent on the client link: the leader may or may not
 * have applied them, so they go back as unknown and are retried. */
static void rft_fwd_fail_sent(struct rft_fwd *f)
{
    size_t n = f->nsent;
    struct rft_prop **sent = f->sent;
    f->sent = NULL;
    f->nsent = f->capsent = 0;
    for (size_t i = 0; i < n; i++) {
        rft_prop_forwarded(sent[i], OVHA_EUNKNOWN, NULL);
    }
    ovha_free(sent);
}

static void rft_fwd_conn_close(struct rft_fwd_conn *c)
{
    struct rft_fwd *f = c->f;
    if (c->closing) {
        return;
    }
    c->closing = true;
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        f->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    if (c == f->leader) {
        f->leader = NULL;
        rft_fwd_fail_sent(f);
    }
    uv_close((uv_handle_t *)c->s, rft_fwd_conn_free_cb);
}

static struct rft_fwd_conn *rft_fwd_conn_new(struct rft_fwd *f,
                                             uv_stream_t *s,
                                             bool tcp,
                                             bool client)
{
    struct rft_fwd_conn *c = ovha_calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    c->f = f;
    c->s = s;
    c->tcp = tcp;
    c->client = client;
    s->data = c;
    ovha_buf_init(&c->in);
    c->next = f->conns;
    if (f->conns != NULL) {
        f->conns->prev = c;
    }
    f->conns = c;
    f->pending++;
    return c;
}

struct rft_fwd_write {
    uv_write_t req;
    uint8_t *buf;
};

static void rft_fwd_write_cb(uv_write_t *req, int status)
{
    struct rft_fwd_write *w = (struct rft_fwd_write *)req;
    (void)status; /* a failed write shows up as a read error too */
    ovha_free(w->buf);
    ovha_free(w);
}

/* Writes one frame; takes ownership of body. */
static int rft_fwd_write_frame(struct rft_fwd_conn *c,
                               uint8_t *body,
                               size_t len)
{
    struct rft_fwd_write *w = ovha_calloc(1, sizeof(*w));
    uint8_t *buf = ovha_malloc(len + 4);
    if (w == NULL || buf == NULL) {
        ovha_free(w);
        ovha_free(buf);
        ovha_free(body);
        return -ENOMEM;
    }
    uint32_t be = htonl((uint32_t)len);
    memcpy(buf, &be, 4);
    memcpy(buf + 4, body, len);
    ovha_free(body);
    w->buf = buf;
    uv_buf_t b = uv_buf_init((char *)buf, (unsigned)(len + 4));
    int rv = uv_write(&w->req, c->s, &b, 1, rft_fwd_write_cb);
    if (rv != 0) {
        ovha_free(buf);
        ovha_free(w);
    }
    return rv;
}

/* ---- server side (the leader) -------------------------------------------- */

static void rft_fwd_respond(struct rft_fwd_conn *c,
                            uint64_t seq,
                            int status,
                            const struct proto_result *res)
{
    struct proto_fwd_resp resp;
    memset(&resp, 0, sizeof(resp));
    resp.req_id = seq;
    resp.status = status;
    ovha_strlcpy(resp.leader_hint, c->f->r->leader_addr,
                 sizeof(resp.leader_hint));
    if (res != NULL) {
        resp.has_result = true;
        resp.result = *res;
    }
    uint8_t *buf;
    size_t len;
    if (proto_fwd_resp_encode(&resp, &buf, &len) == 0) {
        rft_fwd_write_frame(c, buf, len);
    }
}

static void rft_fwd_served_cb(void *data,
                              int status,
                              const struct proto_result *res)
{
    struct rft_fwd_call *call = data;
    struct rft_fwd_conn *c = call->conn;
    uint64_t seq = call->seq;
    ovha_free(call);
    c->refs--;
    if (!c->closing) {
        rft_fwd_respond(c, seq, status, res);
    }
    rft_fwd_conn_release(c);
}

static void rft_fwd_serve(struct rft_fwd_conn *c, const uint8_t *p, size_t n)
{
    struct rft *r = c->f->r;
    struct proto_fwd_req req;
    if (proto_fwd_req_decode(p, n, &req) != 0) {
        LOG_WARN("rft", "forwarding: malformed request; closing the link");
        rft_fwd_conn_close(c);
        return;
    }
    if (!r->ready) {
        rft_fwd_respond(c, req.req_id, OVHA_ENOTLEADER, NULL);
        proto_fwd_req_clear(&req);
        return;
    }
    struct rft_fwd_call *call = ovha_calloc(1, sizeof(*call));
    int rv = call == NULL ? -ENOMEM : 0;
    if (rv == 0) {
        call->conn = c;
        call->seq = req.req_id;
        rv = rft_propose(r, req.cmd, req.cmd_len, 0, rft_fwd_served_cb, call);
    }
    if (rv != 0) {
        ovha_free(call);
        rft_fwd_respond(c, req.req_id, rv, NULL);
    } else {
        c->refs++;
        r->stats.forward_served++;
    }
    proto_fwd_req_clear(&req);
}

/* ---- client side (a follower) -------------------------------------------- */

static void rft_fwd_answered(struct rft_fwd *f, const uint8_t *p, size_t n)
{
    struct proto_fwd_resp resp;
    if (proto_fwd_resp_decode(p, n, &resp) != 0) {
        LOG_WARN("rft", "forwarding: malformed response; closing the link");
        if (f->leader != NULL) {
            rft_fwd_conn_close(f->leader);
        }
        return;
    }
    for (size_t i = 0; i < f->nsent; i++) {
        struct rft_prop *prop = f->sent[i];
        if (prop->fwd_seq == resp.req_id) {
            f->sent[i] = f->sent[--f->nsent];
            rft_prop_forwarded(prop, resp.status,
                               resp.has_result ? &resp.result : NULL);
            return;
        }
    }
    /* An answer to a request already failed over: ignore it. */
}

/* ---- reading frames ------------------------------------------------------ */

static void rft_fwd_alloc_cb(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    struct rft_fwd_conn *c = h->data;
    if (ovha_buf_reserve(&c->in, size) != 0) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init(c->in.data + c->in.len, (unsigned)size);
}

static void rft_fwd_frames(struct rft_fwd_conn *c)
{
    while (!c->closing && c->in.len >= 4) {
        uint32_t be;
        memcpy(&be, c->in.data, 4);
        size_t len = ntohl(be);
        if (len > RFT_FWD_MAX_FRAME) {
            LOG_WARN("rft", "forwarding: frame of %zu bytes refused", len);
            rft_fwd_conn_close(c);
            return;
        }
        if (c->in.len < len + 4) {
            return;
        }
        if (c->client) {
            rft_fwd_answered(c->f, (uint8_t *)c->in.data + 4, len);
        } else {
            rft_fwd_serve(c, (uint8_t *)c->in.data + 4, len);
        }
        ovha_buf_consume(&c->in, len + 4);
    }
}

static void rft_fwd_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct rft_fwd_conn *c = s->data;
    (void)buf;
    if (n < 0) {
        rft_fwd_conn_close(c);
        return;
    }
    c->in.len += (size_t)n;
    rft_fwd_frames(c);
}

static int rft_fwd_start_reading(struct rft_fwd_conn *c)
{
    return uv_read_start(c->s, rft_fwd_alloc_cb, rft_fwd_read_cb);
}

/* ---- dialing the leader -------------------------------------------------- */

struct rft_fwd_dial {
    uv_connect_t req;
    struct rft_fwd *f;
    uint64_t leader_id;
};

static void rft_fwd_connected(struct rft_fwd *f,
                              uint64_t leader_id,
                              uv_stream_t *s,
                              bool tcp)
{
    if (f->closing || leader_id != f->leader_id) {
        /* Leadership moved while dialing: drop this link. */
        struct rft_fwd_conn *c = rft_fwd_conn_new(f, s, tcp, true);
        if (c != NULL) {
            rft_fwd_conn_close(c);
        }
        return;
    }
    struct rft_fwd_conn *c = rft_fwd_conn_new(f, s, tcp, true);
    if (c == NULL || rft_fwd_start_reading(c) != 0) {
        if (c != NULL) {
            rft_fwd_conn_close(c);
        }
        return;
    }
    f->leader = c;
}

static void rft_fwd_tcp_connect_cb(uv_connect_t *req, int status)
{
    struct rft_fwd_dial *d = (struct rft_fwd_dial *)req;
    struct rft_fwd *f = d->f;
    f->dialing = false;
    f->pending--;
    if (status != 0) {
        uv_handle_t *h = (uv_handle_t *)req->handle;
        h->data = NULL;
        uv_close(h, (uv_close_cb)ovha_free);
        ovha_free(d);
        rft_fwd_maybe_closed(f);
        return;
    }
    uv_tcp_nodelay((uv_tcp_t *)req->handle, 1); /* small RPC frames */
    rft_fwd_connected(f, d->leader_id, req->handle, true);
    ovha_free(d);
}

static void rft_fwd_tls_dial_cb(void *data, int status, uv_stream_t *s)
{
    struct rft_fwd_dial *d = data;
    struct rft_fwd *f = d->f;
    f->dialing = false;
    f->pending--;
    if (status == 0) {
        rft_fwd_connected(f, d->leader_id, s, false);
    }
    ovha_free(d);
    rft_fwd_maybe_closed(f);
}

static int rft_fwd_dial_leader(struct rft_fwd *f)
{
    char addr[RFT_ADDR_MAX];
    struct sockaddr_in sa;
    if (rft_fwd_sockaddr(f->leader_addr, &sa) != 0) {
        return -EINVAL;
    }
    struct rft_fwd_dial *d = ovha_calloc(1, sizeof(*d));
    if (d == NULL) {
        return -ENOMEM;
    }
    d->f = f;
    d->leader_id = f->leader_id;
    int rv;
    if (f->r->tls) {
        rft_fwd_addr(f->leader_addr, addr, sizeof(addr));
        rv = rft_tls_dial(&f->r->transport, f->leader_id, addr,
                          rft_fwd_tls_dial_cb, d);
    } else {
        uv_tcp_t *t = ovha_malloc(sizeof(*t));
        rv = t == NULL ? -ENOMEM : uv_tcp_init(f->r->loop, t);
        if (rv == 0) {
            rv = uv_tcp_connect(&d->req, t, (struct sockaddr *)&sa,
                                rft_fwd_tcp_connect_cb);
            if (rv != 0) {
                uv_close((uv_handle_t *)t, (uv_close_cb)ovha_free);
            }
        } else {
            ovha_free(t);
        }
    }
    if (rv != 0) {
        ovha_free(d);
        return rv;
    }
    f->dialing = true;
    f->pending++;
    return 0;
}

int rft_fwd_send(struct rft_fwd *f, struct rft_prop *p)
{
    if (f->closing) {
        return OVHA_ECLOSED;
    }
    if (f->leader == NULL) {
        if (!f->dialing) {
            rft_fwd_dial_leader(f);
        }
        return -EAGAIN; /* stays queued; retried on the next tick */
    }
    if (f->nsent == f->capsent) {
        size_t cap = f->capsent ? 2 * f->capsent : 64;
        void *n = ovha_realloc(f->sent, cap * sizeof(*f->sent));
        if (n == NULL) {
            return -ENOMEM;
        }
        f->sent = n;
        f->capsent = cap;
    }
    struct proto_fwd_req req;
    memset(&req, 0, sizeof(req));
    req.req_id = ++f->seq;
    snprintf(req.from, sizeof(req.from), "%llu",
             (unsigned long long)f->r->cfg.id);
    req.cmd = p->cmd;
    req.cmd_len = p->len;
    uint8_t *buf;
    size_t len;
    int rv = proto_fwd_req_encode(&req, &buf, &len);
    if (rv != 0) {
        return rv;
    }
    rv = rft_fwd_write_frame(f->leader, buf, len);
    if (rv != 0) {
        return rv;
    }
    p->fwd_seq = req.req_id;
    f->sent[f->nsent++] = p;
    f->r->stats.forwarded++;
    return 0;
}

void rft_fwd_leader_changed(struct rft_fwd *f,
                            uint64_t leader_id,
                            const char *leader_addr)
{
    if (leader_id == f->leader_id && strcmp(leader_addr, f->leader_addr) == 0) {
        return;
    }
    f->leader_id = leader_id;
    ovha_strlcpy(f->leader_addr, leader_addr, sizeof(f->leader_addr));
    if (f->leader != NULL) {
        rft_fwd_conn_close(f->leader); /* fails what was sent on it */
    }
}

/* ---- listening ----------------------------------------------------------- */

static void rft_fwd_accepted(struct rft_fwd *f, uv_stream_t *s, bool tcp)
{
    struct rft_fwd_conn *c = rft_fwd_conn_new(f, s, tcp, false);
    if (c == NULL) {
        uv_close((uv_handle_t *)s,
                 tcp ? (uv_close_cb)ovha_free : (uv_close_cb)raft_free);
        return;
    }
    if (rft_fwd_start_reading(c) != 0) {
        rft_fwd_conn_close(c);
    }
}

static void rft_fwd_tcp_connection_cb(uv_stream_t *server, int status)
{
    struct rft_fwd *f = server->data;
    if (status != 0 || f->closing) {
        return;
    }
    uv_tcp_t *t = ovha_malloc(sizeof(*t));
    if (t == NULL) {
        return;
    }
    uv_tcp_init(f->r->loop, t);
    if (uv_accept(server, (uv_stream_t *)t) != 0) {
        uv_close((uv_handle_t *)t, (uv_close_cb)ovha_free);
        return;
    }
    uv_tcp_nodelay(t, 1);
    rft_fwd_accepted(f, (uv_stream_t *)t, true);
}

static void rft_fwd_tls_accept_cb(void *data, uint64_t peer_id, uv_stream_t *s)
{
    (void)peer_id; /* any authenticated cluster member may forward */
    rft_fwd_accepted(data, s, false);
}

int rft_fwd_new(struct rft *r, struct rft_fwd **ret)
{
    struct rft_fwd *f = ovha_calloc(1, sizeof(*f));
    if (f == NULL) {
        return -ENOMEM;
    }
    f->r = r;
    *ret = f;
    return 0;
}

void rft_fwd_free(struct rft_fwd *f)
{
    ovha_free(f);
}

int rft_fwd_listen(struct rft_fwd *f)
{
    char addr[RFT_ADDR_MAX];
    struct sockaddr_in sa;
    int rv = rft_fwd_sockaddr(f->r->cfg.address, &sa);
    if (rv != 0) {
        return rv;
    }
    if (f->r->tls) {
        rft_fwd_addr(f->r->cfg.address, addr, sizeof(addr));
        rv = rft_tls_serve(&f->r->transport, addr, rft_fwd_tls_accept_cb, f);
    } else {
        uv_tcp_init(f->r->loop, &f->listener);
        f->listener.data = f;
        f->pending++;
        rv = uv_tcp_bind(&f->listener, (struct sockaddr *)&sa, 0);
        if (rv == 0) {
            rv = uv_listen((uv_stream_t *)&f->listener, 64,
                           rft_fwd_tcp_connection_cb);
        }
    }
    f->listening = rv == 0;
    return rv;
}

/* ---- close --------------------------------------------------------------- */

static void rft_fwd_maybe_closed(struct rft_fwd *f)
{
    if (!f->closing || f->pending > 0) {
        return;
    }
    void (*cb)(void *) = f->close_cb;
    void *data = f->close_data;
    ovha_free(f->sent);
    ovha_free(f);
    cb(data);
}

static void rft_fwd_listener_closed_cb(uv_handle_t *h)
{
    struct rft_fwd *f = h->data;
    f->pending--;
    rft_fwd_maybe_closed(f);
}

void rft_fwd_close(struct rft_fwd *f, void (*cb)(void *data), void *data)
{
    f->closing = true;
    f->close_cb = cb;
    f->close_data = data;
    f->pending++; /* held until this function returns */
    while (f->conns != NULL) {
        rft_fwd_conn_close(f->conns); /* calls in raft keep c alive */
    }
    if (!f->r->tls && f->listener.data == f) {
        uv_close((uv_handle_t *)&f->listener, rft_fwd_listener_closed_cb);
    }
    f->pending--;
    rft_fwd_maybe_closed(f);
}
