/* raft/tls.c: mutual-TLS raft_uv_transport on memory BIOs (see tls.h).
 *
 * Happy path of an outgoing connection (connect(id, addr)):
 *   TCP connect -> TLS 1.3 client handshake presenting our certificate ->
 *   the server certificate chains to the CA (OpenSSL, SSL_VERIFY_PEER) and
 *   carries raft id `id` (us) -> we send HELLO {magic, our id, our address}
 *   inside TLS -> the server answers ACK -> we create a socketpair, wrap one
 *   end in a raft_malloc'ed uv_pipe_t and hand it to raft's connect cb.
 *
 * Happy path of an incoming connection:
 *   accept -> TLS server handshake requiring a client certificate from the
 *   CA -> read HELLO -> claimed id == id in the client's certificate ->
 *   send ACK -> socketpair -> raft's accept_cb(id, address, pipe).
 *
 * After that the connection is a bridge: plaintext raft writes to its pipe
 * end arrives on ours and goes through SSL_write to TCP; TCP bytes go
 * through SSL_read to our pipe end. Each direction stops reading its
 * source while the destination's libuv write queue is above
 * RFT_TLS_QUEUE_HIGH and resumes below RFT_TLS_QUEUE_LOW.
 *
 * Failure modes: TCP errors, TLS errors (bad CA, no client certificate),
 * id mismatches, a malformed HELLO, the handshake timer, EOF or errors on
 * either pipe or socket. All of them close the whole connection: every uv
 * handle of the connection is closed and the memory released in the last
 * close callback. A pending connect request then gets its callback with
 * RAFT_NOCONNECTION (or RAFT_CANCELED when the transport is closing); raft
 * reconnects by itself. Streams already handed to raft are raft's: closing
 * our end makes raft read EOF and close its own.
 *
 * Everything runs on the loop thread; nothing blocks. Memory is freed only
 * from uv close callbacks, so a connection stays valid for the whole of any
 * callback that touches it, even if it decides to close itself.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/base.h"

#define RFT_TLS_MOD             "rft"
#define RFT_TLS_MAGIC_HELLO     0x4f565248u /* "OVRH" */
#define RFT_TLS_MAGIC_ACK       0x4f565241u /* "OVRA" */
#define RFT_TLS_HELLO_FIXED     (4 + 8 + 2) /* magic, id, address length */
#define RFT_TLS_ACK_LEN         4
#define RFT_TLS_ADDR_MAX        1024
#define RFT_TLS_QUEUE_HIGH      (4u << 20) /* 4 MiB */
#define RFT_TLS_QUEUE_LOW       (1u << 20)
#define RFT_TLS_BUF_SIZE        (64u << 10)
#define RFT_TLS_TIMEOUT_DEFAULT 10000
#define RFT_TLS_URI_PREFIX      "ovha:node:"
#define RFT_TLS_LISTEN_BACKLOG  64
#define RFT_TLS_ACCEPT_RETRY_MS 100
#define RFT_TLS_PEER_NAME_MAX   (INET6_ADDRSTRLEN + 8)

enum rft_tls_state {
    RFT_TLS_CONNECTING, /* client: TCP connect pending */
    RFT_TLS_HANDSHAKE,  /* TLS handshake in progress */
    RFT_TLS_HELLO,      /* server: waiting for HELLO; client: for ACK */
    RFT_TLS_BRIDGED,    /* plaintext flows between raft and the peer */
    RFT_TLS_CLOSING,    /* handles are being closed */
};

struct rft_tls_conn;

struct rft_tls {
    struct raft_uv_transport *transport;
    uv_loop_t *loop;
    SSL_CTX *ctx;
    uint64_t cert_id;     /* raft id in our own certificate */
    bool skip_self_check; /* tests only, see tls.h */
    raft_id id;           /* from transport->init */
    char *address;        /* ditto, our copy */
    char *bind_address;   /* NULL: listen on address */
    unsigned timeout_ms;
    uv_tcp_t listener;
    bool listener_open; /* initialised and not yet closed */
    /* Retries an accept that failed for lack of memory: libuv stops
     * watching the listener until the pending socket is accepted. */
    uv_timer_t accept_timer;
    bool accept_timer_open;
    raft_uv_accept_cb accept_cb;
    /* The second listener, for the forwarding RPC (rft_tls_serve): same
     * authentication, its streams go to serve_cb instead of raft. */
    uv_tcp_t serve_listener;
    bool serve_open;
    rft_tls_serve_cb serve_cb;
    void *serve_data;
    struct rft_tls_conn *conns; /* every connection not yet freed */
    bool closing;
    raft_uv_transport_close_cb close_cb;
    struct rft_tls_stats stats;
    /* Shared read buffers: libuv consumes a read synchronously in the read
     * callback, and everything runs on one thread. */
    char rbuf[RFT_TLS_BUF_SIZE];
    char pbuf[RFT_TLS_BUF_SIZE];
};

struct rft_tls_conn {
    struct rft_tls *tls;
    struct rft_tls_conn *prev, *next;
    bool client;
    bool serve; /* accepted on the forwarding listener */
    enum rft_tls_state state;
    unsigned open_handles; /* uv handles not yet through their close cb */
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_timer_t timer;
    uv_pipe_t pipe; /* our end of the socketpair (when bridged) */
    bool pipe_open;
    uv_pipe_t *raft_pipe; /* raft's end until it is handed over */
    bool tcp_reading, pipe_reading;
    SSL *ssl;
    BIO *net_in;                 /* TCP bytes -> OpenSSL */
    BIO *net_out;                /* OpenSSL -> TCP */
    struct raft_uv_connect *req; /* client: until its cb is called */
    int req_status;
    uint64_t peer_id; /* client: id asked for; server: id in client cert */
    char peer[RFT_TLS_PEER_NAME_MAX + RFT_TLS_ADDR_MAX]; /* for logs */
    struct ovha_buf hello; /* plaintext received before BRIDGED */
};

/* One queued write; the bytes follow the struct. */
struct rft_tls_write {
    uv_write_t req;
    struct rft_tls_conn *conn;
    size_t len;
    char data[];
};

static void rft_tls_conn_close(struct rft_tls_conn *c, int status);
static int rft_tls_conn_advance(struct rft_tls_conn *c);

/* ---- small helpers ------------------------------------------------------ */

static void rft_tls_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t rft_tls_get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           (uint32_t)p[3];
}

static void rft_tls_put_be64(uint8_t *p, uint64_t v)
{
    rft_tls_put_be32(p, (uint32_t)(v >> 32));
    rft_tls_put_be32(p + 4, (uint32_t)v);
}

static uint64_t rft_tls_get_be64(const uint8_t *p)
{
    return (uint64_t)rft_tls_get_be32(p) << 32 | rft_tls_get_be32(p + 4);
}

/* The first queued OpenSSL error as text, or a fallback. */
static const char *rft_tls_ssl_errstr(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *s = e != 0 ? ERR_reason_error_string(e) : NULL;
    return s != NULL ? s : "unknown TLS error";
}

/* Parses "a.b.c.d:port" or "[v6]:port" (no name lookup: it would block). */
static int rft_tls_parse_addr(const char *address, struct sockaddr_storage *ret)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *colon;
    const char *hs = address;
    size_t hlen;
    uint64_t port;
    bool v6 = false;

    if (address[0] == '[') {
        const char *end = strchr(address, ']');
        if (end == NULL || end[1] != ':') {
            return -EINVAL;
        }
        hs = address + 1;
        hlen = (size_t)(end - hs);
        colon = end + 1;
        v6 = true;
    } else {
        colon = strrchr(address, ':');
        if (colon == NULL) {
            return -EINVAL;
        }
        hlen = (size_t)(colon - address);
    }
    if (hlen == 0 || hlen >= sizeof(host)) {
        return -EINVAL;
    }
    memcpy(host, hs, hlen);
    host[hlen] = '\0';
    if (ovha_parse_u64(colon + 1, 65535, &port) != 0 || port == 0) {
        return -EINVAL;
    }
    memset(ret, 0, sizeof(*ret));
    if (v6) {
        return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ret);
    }
    return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ret);
}

int rft_tls_cert_id(const void *cert, uint64_t *ret_id)
{
    const size_t plen = sizeof(RFT_TLS_URI_PREFIX) - 1;
    GENERAL_NAMES *names;
    int crit = 0;
    int found = 0;
    int rv = 0;
    uint64_t id = 0;

    names = X509_get_ext_d2i((X509 *)cert, NID_subject_alt_name, &crit, NULL);
    if (names == NULL) {
        /* crit == -2: several SAN extensions, which is ambiguous. */
        return crit == -2 ? -EINVAL : -ENOENT;
    }
    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        const unsigned char *p;
        size_t len;
        char digits[21];

        if (gn->type != GEN_URI) {
            continue;
        }
        p = ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
        len = (size_t)ASN1_STRING_length(gn->d.uniformResourceIdentifier);
        if (len < plen || memcmp(p, RFT_TLS_URI_PREFIX, plen) != 0) {
            continue;
        }
        found++;
        p += plen;
        len -= plen;
        /* Strict: 1-20 digits, no leading zero, no NUL or trailing bytes;
         * ovha_parse_u64 then rejects anything above UINT64_MAX. */
        if (len == 0 || len >= sizeof(digits) || p[0] < '1' || p[0] > '9') {
            rv = -EINVAL;
            continue;
        }
        for (size_t j = 0; j < len; j++) {
            if (p[j] < '0' || p[j] > '9') {
                rv = -EINVAL;
            }
        }
        if (rv != 0) {
            continue;
        }
        memcpy(digits, p, len);
        digits[len] = '\0';
        if (ovha_parse_u64(digits, UINT64_MAX, &id) != 0) {
            rv = -EINVAL;
        }
    }
    GENERAL_NAMES_free(names);
    if (rv != 0) {
        return rv;
    }
    if (found == 0) {
        return -ENOENT;
    }
    if (found > 1) {
        return -EINVAL; /* two ids: refuse rather than guess */
    }
    *ret_id = id;
    return 0;
}

/* ---- connection lifecycle ----------------------------------------------- */

static void rft_tls_maybe_closed(struct rft_tls *tls)
{
    raft_uv_transport_close_cb cb;

    if (!tls->closing || tls->listener_open || tls->accept_timer_open ||
        tls->serve_open || tls->conns != NULL || tls->close_cb == NULL) {
        return;
    }
    cb = tls->close_cb;
    tls->close_cb = NULL;
    cb(tls->transport);
}

/* Frees the connection once its last handle is closed, then fires the
 * pending connect callback (if any) and maybe the transport close cb. */
static void rft_tls_conn_free(struct rft_tls_conn *c)
{
    struct rft_tls *tls = c->tls;
    struct raft_uv_connect *req = c->req;
    int status = c->req_status;

    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        tls->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    tls->stats.active--;
    SSL_free(c->ssl); /* frees both BIOs */
    ovha_buf_free(&c->hello);
    ovha_free(c);
    if (req != NULL) {
        if (status != RAFT_CANCELED) {
            tls->stats.connect_failed++;
        }
        req->cb(req, NULL, status);
    }
    rft_tls_maybe_closed(tls);
}

static void rft_tls_conn_handle_close_cb(uv_handle_t *h)
{
    struct rft_tls_conn *c = h->data;

    assert(c->open_handles > 0);
    if (h == (uv_handle_t *)c->raft_pipe) {
        raft_free(c->raft_pipe);
        c->raft_pipe = NULL;
    }
    if (--c->open_handles == 0) {
        rft_tls_conn_free(c);
    }
}

static void rft_tls_conn_close_handle(struct rft_tls_conn *c, uv_handle_t *h)
{
    h->data = c;
    uv_close(h, rft_tls_conn_handle_close_cb);
}

/* Closes every handle of the connection. status is what a pending connect
 * request will get: RAFT_NOCONNECTION, or RAFT_CANCELED on shutdown. */
static void rft_tls_conn_close(struct rft_tls_conn *c, int status)
{
    if (c->state == RFT_TLS_CLOSING) {
        return;
    }
    c->state = RFT_TLS_CLOSING;
    c->req_status = status;
    rft_tls_conn_close_handle(c, (uv_handle_t *)&c->tcp);
    rft_tls_conn_close_handle(c, (uv_handle_t *)&c->timer);
    if (c->pipe_open) {
        rft_tls_conn_close_handle(c, (uv_handle_t *)&c->pipe);
    }
    if (c->raft_pipe != NULL) {
        rft_tls_conn_close_handle(c, (uv_handle_t *)c->raft_pipe);
    }
}

static void rft_tls_conn_timer_cb(uv_timer_t *timer)
{
    struct rft_tls_conn *c = timer->data;

    LOG_WARN(RFT_TLS_MOD, "handshake with %s timed out", c->peer);
    c->tls->stats.rejected_tls++;
    rft_tls_conn_close(c, RAFT_NOCONNECTION);
}

/* Allocates a connection with its SSL object, TCP handle and timer, and
 * links it into the transport. Returns 0 or -ENOMEM; on failure nothing is
 * left behind. */
static int rft_tls_conn_new(struct rft_tls *tls,
                            bool client,
                            struct rft_tls_conn **ret)
{
    struct rft_tls_conn *c;
    BIO *in = NULL;
    BIO *out = NULL;

    c = ovha_calloc(1, sizeof(*c));
    if (c == NULL) {
        return -ENOMEM;
    }
    c->ssl = SSL_new(tls->ctx);
    in = BIO_new(BIO_s_mem());
    out = BIO_new(BIO_s_mem());
    if (c->ssl == NULL || in == NULL || out == NULL) {
        SSL_free(c->ssl);
        BIO_free(in);
        BIO_free(out);
        ovha_free(c);
        return -ENOMEM;
    }
    /* An empty memory BIO must mean "retry later", not EOF. */
    BIO_set_mem_eof_return(in, -1);
    BIO_set_mem_eof_return(out, -1);
    SSL_set_bio(c->ssl, in, out); /* the SSL owns both BIOs now */
    c->net_in = in;
    c->net_out = out;
    if (client) {
        SSL_set_connect_state(c->ssl);
    } else {
        SSL_set_accept_state(c->ssl);
    }
    c->tls = tls;
    c->client = client;
    c->state = client ? RFT_TLS_CONNECTING : RFT_TLS_HANDSHAKE;
    ovha_buf_init(&c->hello);
    snprintf(c->peer, sizeof(c->peer), "?");
    /* Neither call can fail: uv_tcp_init with AF_UNSPEC creates no socket
     * and uv_timer_init only fills the struct (libuv 1.44). */
    uv_tcp_init(tls->loop, &c->tcp);
    uv_timer_init(tls->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    c->next = tls->conns;
    if (tls->conns != NULL) {
        tls->conns->prev = c;
    }
    tls->conns = c;
    tls->stats.active++;
    *ret = c;
    return 0;
}

/* ---- writes and backpressure -------------------------------------------- */

static void rft_tls_conn_resume(struct rft_tls_conn *c);

static void rft_tls_write_cb(uv_write_t *req, int status)
{
    struct rft_tls_write *w = req->data;
    struct rft_tls_conn *c = w->conn;

    ovha_free(w);
    if (c->state == RFT_TLS_CLOSING) {
        return;
    }
    if (status != 0) {
        LOG_DEBUG(RFT_TLS_MOD, "write to %s: %s", c->peer, uv_strerror(status));
        rft_tls_conn_close(c, RAFT_NOCONNECTION);
        return;
    }
    rft_tls_conn_resume(c);
}

/* Writes len bytes to stream: directly if nothing is queued, the rest as a
 * queued copy. Returns 0 or a negative errno. */
static int rft_tls_conn_send(struct rft_tls_conn *c,
                             uv_stream_t *stream,
                             const char *data,
                             size_t len)
{
    struct rft_tls_write *w;
    uv_buf_t buf;
    int rv;

    if (len == 0) {
        return 0;
    }
    if (uv_stream_get_write_queue_size(stream) == 0) {
        buf = uv_buf_init((char *)data, (unsigned)len);
        rv = uv_try_write(stream, &buf, 1);
        if (rv >= 0) {
            data += rv;
            len -= (size_t)rv;
        } else if (rv != UV_EAGAIN) {
            return rv;
        }
        if (len == 0) {
            return 0;
        }
    }
    w = ovha_malloc(sizeof(*w) + len);
    if (w == NULL) {
        return -ENOMEM;
    }
    w->conn = c;
    w->len = len;
    w->req.data = w;
    memcpy(w->data, data, len);
    buf = uv_buf_init(w->data, (unsigned)len);
    rv = uv_write(&w->req, stream, &buf, 1, rft_tls_write_cb);
    if (rv != 0) {
        ovha_free(w);
    }
    return rv;
}

/* Sends whatever OpenSSL queued for the network. */
static int rft_tls_conn_flush(struct rft_tls_conn *c)
{
    char *buf = c->tls->pbuf;
    int n;
    int rv;

    while (BIO_ctrl_pending(c->net_out) > 0) {
        n = BIO_read(c->net_out, buf, RFT_TLS_BUF_SIZE);
        if (n <= 0) {
            return -EIO;
        }
        rv = rft_tls_conn_send(c, (uv_stream_t *)&c->tcp, buf, (size_t)n);
        if (rv != 0) {
            return rv;
        }
    }
    /* Too much ciphertext queued: stop taking plaintext from raft. */
    if (c->pipe_reading && uv_stream_get_write_queue_size(
                               (uv_stream_t *)&c->tcp) > RFT_TLS_QUEUE_HIGH) {
        uv_read_stop((uv_stream_t *)&c->pipe);
        c->pipe_reading = false;
        c->tls->stats.paused++;
    }
    return 0;
}

/* ---- reading --------------------------------------------------------------
 */

static void rft_tls_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct rft_tls_conn *c = h->data;

    (void)suggested;
    *buf = uv_buf_init(c->tls->rbuf, RFT_TLS_BUF_SIZE);
}

static void rft_tls_tcp_read_cb(uv_stream_t *s,
                                ssize_t nread,
                                const uv_buf_t *buf);
static void rft_tls_pipe_read_cb(uv_stream_t *s,
                                 ssize_t nread,
                                 const uv_buf_t *buf);

static int rft_tls_conn_start_tcp(struct rft_tls_conn *c)
{
    int rv;

    if (c->tcp_reading) {
        return 0;
    }
    rv = uv_read_start((uv_stream_t *)&c->tcp, rft_tls_alloc_cb,
                       rft_tls_tcp_read_cb);
    c->tcp_reading = rv == 0;
    return rv;
}

static int rft_tls_conn_start_pipe(struct rft_tls_conn *c)
{
    int rv;

    if (c->pipe_reading) {
        return 0;
    }
    rv = uv_read_start((uv_stream_t *)&c->pipe, rft_tls_alloc_cb,
                       rft_tls_pipe_read_cb);
    c->pipe_reading = rv == 0;
    return rv;
}

/* Called after a write completes: restart a source stopped for pressure. */
static void rft_tls_conn_resume(struct rft_tls_conn *c)
{
    int rv = 0;

    if (c->state != RFT_TLS_BRIDGED) {
        return;
    }
    if (!c->tcp_reading && uv_stream_get_write_queue_size(
                               (uv_stream_t *)&c->pipe) <= RFT_TLS_QUEUE_LOW) {
        rv = rft_tls_conn_start_tcp(c);
    }
    if (rv == 0 && !c->pipe_reading &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) <=
            RFT_TLS_QUEUE_LOW) {
        rv = rft_tls_conn_start_pipe(c);
    }
    if (rv != 0) {
        rft_tls_conn_close(c, RAFT_NOCONNECTION);
    }
}

/* Plaintext from the peer, bridged: hand it to raft's end. */
static int rft_tls_conn_deliver(struct rft_tls_conn *c,
                                const char *data,
                                size_t len)
{
    int rv;

    rv = rft_tls_conn_send(c, (uv_stream_t *)&c->pipe, data, len);
    if (rv != 0) {
        return rv;
    }
    c->tls->stats.bytes_from_peer += len;
    if (c->tcp_reading && uv_stream_get_write_queue_size(
                              (uv_stream_t *)&c->pipe) > RFT_TLS_QUEUE_HIGH) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->tcp_reading = false;
        c->tls->stats.paused++;
    }
    return 0;
}

static void rft_tls_tcp_read_cb(uv_stream_t *s,
                                ssize_t nread,
                                const uv_buf_t *buf)
{
    struct rft_tls_conn *c = s->data;
    int rv;

    if (c->state == RFT_TLS_CLOSING || nread == 0) {
        return;
    }
    if (nread < 0) {
        if (c->state != RFT_TLS_BRIDGED) {
            LOG_DEBUG(RFT_TLS_MOD,
                      "%s closed the connection during the "
                      "handshake: %s",
                      c->peer, uv_strerror((int)nread));
        }
        rft_tls_conn_close(c, RAFT_NOCONNECTION);
        return;
    }
    if (BIO_write(c->net_in, buf->base, (int)nread) != (int)nread) {
        rft_tls_conn_close(c, RAFT_NOCONNECTION);
        return;
    }
    rv = rft_tls_conn_advance(c);
    if (rv != 0 && c->state != RFT_TLS_CLOSING) {
        rft_tls_conn_close(c, RAFT_NOCONNECTION);
    }
}

/* Plaintext from raft: encrypt and send. */
static void rft_tls_pipe_read_cb(uv_stream_t *s,
                                 ssize_t nread,
                                 const uv_buf_t *buf)
{
    struct rft_tls_conn *c = s->data;
    int n;

    if (c->state != RFT_TLS_BRIDGED || nread == 0) {
        return;
    }
    if (nread < 0) {
        /* raft closed its stream (or the pair broke): drop the peer too. */
        rft_tls_conn_close(c, RAFT_NOCONNECTION);
        return;
    }
    ERR_clear_error();
    /* Memory BIOs grow, so SSL_write takes everything or fails for good. */
    n = SSL_write(c->ssl, buf->base, (int)nread);
    if (n != (int)nread) {
        LOG_DEBUG(RFT_TLS_MOD, "SSL_write to %s: %s", c->peer,
                  rft_tls_ssl_errstr());
        rft_tls_conn_close(c, RAFT_NOCONNECTION);
        return;
    }
    c->tls->stats.bytes_to_peer += (uint64_t)nread;
    if (rft_tls_conn_flush(c) != 0) {
        rft_tls_conn_close(c, RAFT_NOCONNECTION);
    }
}

/* ---- handshake and id exchange ------------------------------------------ */

/* Creates the socketpair; our end is read from now on, raft's end is kept
 * in c->raft_pipe until the caller hands it over. */
static int rft_tls_conn_bridge(struct rft_tls_conn *c)
{
    uv_loop_t *loop = c->tls->loop;
    int fds[2];
    int rv;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
        return -errno;
    }
    rv = uv_pipe_init(loop, &c->pipe, 0);
    if (rv != 0) {
        goto err_close_fds;
    }
    c->pipe.data = c;
    c->pipe_open = true;
    c->open_handles++;
    rv = uv_pipe_open(&c->pipe, fds[0]);
    if (rv != 0) {
        goto err_close_fds;
    }
    fds[0] = -1;
    c->raft_pipe = raft_malloc(sizeof(*c->raft_pipe));
    if (c->raft_pipe == NULL) {
        rv = -ENOMEM;
        goto err_close_fds;
    }
    rv = uv_pipe_init(loop, c->raft_pipe, 0);
    if (rv != 0) {
        raft_free(c->raft_pipe);
        c->raft_pipe = NULL;
        goto err_close_fds;
    }
    c->raft_pipe->data = c;
    c->open_handles++;
    rv = uv_pipe_open(c->raft_pipe, fds[1]);
    if (rv != 0) {
        goto err_close_fds;
    }
    fds[1] = -1;
    c->state = RFT_TLS_BRIDGED;
    return rft_tls_conn_start_pipe(c);

err_close_fds:
    /* Handles already initialised are closed by rft_tls_conn_close. */
    if (fds[0] >= 0) {
        close(fds[0]);
    }
    if (fds[1] >= 0) {
        close(fds[1]);
    }
    return rv;
}

/* Gives raft's end of the socketpair away: from now on raft closes and
 * frees it, so it no longer counts among the connection's handles. */
static uv_stream_t *rft_tls_conn_hand_over(struct rft_tls_conn *c)
{
    uv_stream_t *stream = (uv_stream_t *)c->raft_pipe;

    c->raft_pipe = NULL;
    c->open_handles--;
    stream->data = NULL;
    return stream;
}

/* Handshake finished on either side: read and check the peer's raft id. */
static int rft_tls_conn_handshake_done(struct rft_tls_conn *c)
{
    struct rft_tls *tls = c->tls;
    X509 *cert = SSL_get0_peer_certificate(c->ssl);
    uint64_t cert_id = 0;
    uint8_t hello[RFT_TLS_HELLO_FIXED + RFT_TLS_ADDR_MAX];
    size_t alen;
    int rv;

    /* SSL_VERIFY_PEER already failed the handshake on a bad chain; this
     * guards against a misconfigured context. */
    if (cert == NULL || SSL_get_verify_result(c->ssl) != X509_V_OK) {
        tls->stats.rejected_tls++;
        LOG_WARN(RFT_TLS_MOD, "peer at %s: certificate not verified", c->peer);
        return -EPERM;
    }
    rv = rft_tls_cert_id(cert, &cert_id);
    if (c->client && (rv != 0 || cert_id != c->peer_id)) {
        tls->stats.rejected_id++;
        if (rv != 0) {
            LOG_WARN(RFT_TLS_MOD,
                     "peer at %s presented no valid raft id, expected %" PRIu64,
                     c->peer, c->peer_id);
        } else {
            LOG_WARN(RFT_TLS_MOD,
                     "peer at %s presented id %" PRIu64 ", expected %" PRIu64,
                     c->peer, cert_id, c->peer_id);
        }
        return -EPERM;
    }
    if (!c->client) {
        if (rv != 0) {
            tls->stats.rejected_id++;
            LOG_WARN(RFT_TLS_MOD,
                     "peer at %s: its certificate has no valid raft id; "
                     "refused",
                     c->peer);
            return -EPERM;
        }
        c->peer_id = cert_id;
        c->state = RFT_TLS_HELLO;
        return 0;
    }
    /* Client: announce who we are, inside TLS. */
    alen = strlen(tls->address);
    rft_tls_put_be32(hello, RFT_TLS_MAGIC_HELLO);
    rft_tls_put_be64(hello + 4, tls->id);
    hello[12] = (uint8_t)(alen >> 8);
    hello[13] = (uint8_t)alen;
    memcpy(hello + RFT_TLS_HELLO_FIXED, tls->address, alen);
    ERR_clear_error();
    if (SSL_write(c->ssl, hello, (int)(RFT_TLS_HELLO_FIXED + alen)) <= 0) {
        return -EIO;
    }
    c->state = RFT_TLS_HELLO;
    return 0;
}

/* Client: the ACK arrived. Bridge and give raft its stream. */
static int rft_tls_conn_client_ready(struct rft_tls_conn *c)
{
    struct raft_uv_connect *req = c->req;
    uv_stream_t *stream;
    int rv;

    rv = rft_tls_conn_bridge(c);
    if (rv != 0) {
        return rv;
    }
    uv_timer_stop(&c->timer);
    c->tls->stats.handshakes_ok++;
    stream = rft_tls_conn_hand_over(c);
    c->req = NULL;
    req->cb(req, stream, 0);
    return 0;
}

/* Server: a complete HELLO is in c->hello. Check it, bridge, ACK, accept. */
static int rft_tls_conn_server_ready(struct rft_tls_conn *c, size_t alen)
{
    struct rft_tls *tls = c->tls;
    const uint8_t *h = (const uint8_t *)c->hello.data;
    uint64_t claimed = rft_tls_get_be64(h + 4);
    char address[RFT_TLS_ADDR_MAX + 1];
    uint8_t ack[RFT_TLS_ACK_LEN];
    uv_stream_t *stream;
    int rv;

    if (claimed != c->peer_id) {
        tls->stats.rejected_id++;
        LOG_WARN(RFT_TLS_MOD,
                 "peer claims id %" PRIu64 " but its certificate says %" PRIu64
                 "; refused",
                 claimed, c->peer_id);
        return -EPERM;
    }
    memcpy(address, h + RFT_TLS_HELLO_FIXED, alen);
    address[alen] = '\0';
    if (strlen(address) != alen) {
        return -EPROTO; /* embedded NUL */
    }
    rv = rft_tls_conn_bridge(c);
    if (rv != 0) {
        return rv;
    }
    rft_tls_put_be32(ack, RFT_TLS_MAGIC_ACK);
    ERR_clear_error();
    if (SSL_write(c->ssl, ack, sizeof(ack)) <= 0) {
        return -EIO;
    }
    rv = rft_tls_conn_flush(c);
    if (rv != 0) {
        return rv;
    }
    /* Anything the client sent after its HELLO is raft traffic. */
    rv = rft_tls_conn_deliver(c, c->hello.data + RFT_TLS_HELLO_FIXED + alen,
                              c->hello.len - RFT_TLS_HELLO_FIXED - alen);
    if (rv != 0) {
        return rv;
    }
    ovha_buf_free(&c->hello);
    uv_timer_stop(&c->timer);
    tls->stats.handshakes_ok++;
    stream = rft_tls_conn_hand_over(c);
    snprintf(c->peer + strlen(c->peer), sizeof(c->peer) - strlen(c->peer),
             " (id %" PRIu64 ")", c->peer_id);
    if (c->serve) {
        tls->serve_cb(tls->serve_data, c->peer_id, stream);
    } else {
        tls->accept_cb(tls->transport, c->peer_id, address, stream);
    }
    return 0;
}

/* Plaintext received before the bridge exists: HELLO (server) or ACK. */
static int rft_tls_conn_hello_input(struct rft_tls_conn *c,
                                    const char *data,
                                    size_t len)
{
    const uint8_t *h;
    size_t alen;
    int rv;

    if (ovha_buf_append(&c->hello, data, len) != 0) {
        return -ENOMEM;
    }
    h = (const uint8_t *)c->hello.data;
    if (c->client) {
        if (c->hello.len < RFT_TLS_ACK_LEN) {
            return 0;
        }
        if (rft_tls_get_be32(h) != RFT_TLS_MAGIC_ACK) {
            return -EPROTO;
        }
        rv = rft_tls_conn_client_ready(c);
        if (rv != 0) {
            return rv;
        }
        rv = rft_tls_conn_deliver(c, c->hello.data + RFT_TLS_ACK_LEN,
                                  c->hello.len - RFT_TLS_ACK_LEN);
        ovha_buf_free(&c->hello);
        return rv;
    }
    if (c->hello.len < RFT_TLS_HELLO_FIXED) {
        return 0;
    }
    alen = (size_t)h[12] << 8 | h[13];
    if (rft_tls_get_be32(h) != RFT_TLS_MAGIC_HELLO || alen == 0 ||
        alen > RFT_TLS_ADDR_MAX) {
        LOG_WARN(RFT_TLS_MOD, "peer at %s sent a malformed hello; refused",
                 c->peer);
        return -EPROTO;
    }
    if (c->hello.len < RFT_TLS_HELLO_FIXED + alen) {
        return 0;
    }
    return rft_tls_conn_server_ready(c, alen);
}

/* Logs a failed handshake with the most precise reason available. */
static void rft_tls_conn_handshake_failed(struct rft_tls_conn *c)
{
    long vr = SSL_get_verify_result(c->ssl);

    c->tls->stats.rejected_tls++;
    if (vr != X509_V_OK) {
        LOG_WARN(RFT_TLS_MOD, "TLS handshake with %s failed: %s", c->peer,
                 X509_verify_cert_error_string(vr));
    } else {
        LOG_WARN(RFT_TLS_MOD, "TLS handshake with %s failed: %s", c->peer,
                 rft_tls_ssl_errstr());
    }
}

/* Drives OpenSSL after new network bytes: handshake, then reads. */
static int rft_tls_conn_advance(struct rft_tls_conn *c)
{
    int rv;
    int n;

    if (c->state == RFT_TLS_HANDSHAKE) {
        ERR_clear_error();
        n = SSL_do_handshake(c->ssl);
        if (n != 1) {
            int err = SSL_get_error(c->ssl, n);
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
                return rft_tls_conn_flush(c);
            }
            rft_tls_conn_handshake_failed(c);
            /* Send the alert so the peer can log why. */
            rft_tls_conn_flush(c);
            return -EPROTO;
        }
        rv = rft_tls_conn_handshake_done(c);
        if (rv != 0) {
            return rv;
        }
    }
    while (c->state == RFT_TLS_HELLO || c->state == RFT_TLS_BRIDGED) {
        ERR_clear_error();
        n = SSL_read(c->ssl, c->tls->pbuf, RFT_TLS_BUF_SIZE);
        if (n <= 0) {
            int err = SSL_get_error(c->ssl, n);
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
                break;
            }
            if (err == SSL_ERROR_ZERO_RETURN) {
                return -ECONNRESET; /* close_notify */
            }
            if (c->state == RFT_TLS_HELLO) {
                /* TLS 1.3: a client learns that the server refused its
                 * certificate only here, from the alert. */
                rft_tls_conn_handshake_failed(c);
            } else {
                LOG_DEBUG(RFT_TLS_MOD, "SSL_read from %s: %s", c->peer,
                          rft_tls_ssl_errstr());
            }
            return -EPROTO;
        }
        if (c->state == RFT_TLS_HELLO) {
            rv = rft_tls_conn_hello_input(c, c->tls->pbuf, (size_t)n);
        } else {
            rv = rft_tls_conn_deliver(c, c->tls->pbuf, (size_t)n);
        }
        if (rv != 0) {
            return rv;
        }
    }
    if (c->state == RFT_TLS_CLOSING) {
        return 0;
    }
    return rft_tls_conn_flush(c);
}

/* ---- client side ------------------------------------------------------------
 */

static void rft_tls_connect_cb(uv_connect_t *req, int status)
{
    struct rft_tls_conn *c = req->data;
    int rv;

    if (c->state == RFT_TLS_CLOSING || status == UV_ECANCELED) {
        return;
    }
    if (status != 0) {
        LOG_DEBUG(RFT_TLS_MOD, "connect to %s: %s", c->peer,
                  uv_strerror(status));
        rft_tls_conn_close(c, RAFT_NOCONNECTION);
        return;
    }
    c->state = RFT_TLS_HANDSHAKE;
    uv_tcp_nodelay(&c->tcp, 1);
    rv = rft_tls_conn_start_tcp(c);
    if (rv == 0) {
        rv = rft_tls_conn_advance(c); /* writes the ClientHello */
    }
    if (rv != 0 && c->state != RFT_TLS_CLOSING) {
        rft_tls_conn_close(c, RAFT_NOCONNECTION);
    }
}

static int rft_tls_connect(struct raft_uv_transport *t,
                           struct raft_uv_connect *req,
                           raft_id id,
                           const char *address,
                           raft_uv_connect_cb cb)
{
    struct rft_tls *tls = t->impl;
    struct sockaddr_storage sa;
    struct rft_tls_conn *c;
    int rv;

    if (tls->closing) {
        return RAFT_CANCELED;
    }
    if (rft_tls_parse_addr(address, &sa) != 0) {
        snprintf(t->errmsg, sizeof(t->errmsg), "bad address \"%s\"", address);
        return RAFT_NOCONNECTION;
    }
    rv = rft_tls_conn_new(tls, true, &c);
    if (rv != 0) {
        snprintf(t->errmsg, sizeof(t->errmsg), "out of memory");
        return RAFT_NOMEM;
    }
    c->peer_id = id;
    snprintf(c->peer, sizeof(c->peer), "%s", address);
    c->connect.data = c;
    rv = uv_tcp_connect(&c->connect, &c->tcp, (struct sockaddr *)&sa,
                        rft_tls_connect_cb);
    if (rv != 0) {
        snprintf(t->errmsg, sizeof(t->errmsg), "uv_tcp_connect(%s): %s",
                 address, uv_strerror(rv));
        rft_tls_conn_close(c, RAFT_NOCONNECTION); /* req not set: no cb */
        return RAFT_NOCONNECTION;
    }
    uv_timer_start(&c->timer, rft_tls_conn_timer_cb, tls->timeout_ms, 0);
    req->cb = cb;
    c->req = req;
    return 0;
}

/* ---- server side ------------------------------------------------------------
 */

static void rft_tls_conn_name_peer(struct rft_tls_conn *c)
{
    struct sockaddr_storage sa;
    int len = sizeof(sa);
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;

    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &len) != 0) {
        return;
    }
    if (sa.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&sa;
        uv_ip4_name(in, ip, sizeof(ip));
        port = ntohs(in->sin_port);
        snprintf(c->peer, sizeof(c->peer), "%s:%d", ip, port);
    } else if (sa.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&sa;
        uv_ip6_name(in6, ip, sizeof(ip));
        port = ntohs(in6->sin6_port);
        snprintf(c->peer, sizeof(c->peer), "[%s]:%d", ip, port);
    }
}

static void rft_tls_listen_cb(uv_stream_t *server, int status);

static void rft_tls_accept_timer_cb(uv_timer_t *timer)
{
    struct rft_tls *tls = timer->data;

    rft_tls_listen_cb((uv_stream_t *)&tls->listener, 0);
}

/* Accepts one connection from server; serve marks the forwarding one. */
static void rft_tls_accept_one(struct rft_tls *tls,
                               uv_stream_t *server,
                               bool serve)
{
    struct rft_tls_conn *c;
    int rv;

    if (rft_tls_conn_new(tls, false, &c) != 0) {
        /* The socket stays pending in libuv, which stops watching the
         * listener until it is accepted: try again shortly. */
        if (!serve) {
            uv_timer_start(&tls->accept_timer, rft_tls_accept_timer_cb,
                           RFT_TLS_ACCEPT_RETRY_MS, 0);
        }
        return;
    }
    c->serve = serve;
    rv = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rv == 0) {
        rft_tls_conn_name_peer(c);
        uv_tcp_nodelay(&c->tcp, 1);
        rv = uv_timer_start(&c->timer, rft_tls_conn_timer_cb, tls->timeout_ms,
                            0);
    }
    if (rv == 0) {
        rv = rft_tls_conn_start_tcp(c);
    }
    if (rv != 0) {
        rft_tls_conn_close(c, RAFT_NOCONNECTION);
    }
}

static void rft_tls_listen_cb(uv_stream_t *server, int status)
{
    struct rft_tls *tls = server->data;

    if (tls->closing) {
        return;
    }
    if (status != 0) {
        LOG_DEBUG(RFT_TLS_MOD, "listen: %s", uv_strerror(status));
        return;
    }
    rft_tls_accept_one(tls, server, false);
}

static void rft_tls_serve_listen_cb(uv_stream_t *server, int status)
{
    struct rft_tls *tls = server->data;

    if (tls->closing || status != 0) {
        return;
    }
    rft_tls_accept_one(tls, server, true);
}

static int rft_tls_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    struct rft_tls *tls = t->impl;
    const char *addr = tls->bind_address ? tls->bind_address : tls->address;
    struct sockaddr_storage sa;
    int rv;

    if (rft_tls_parse_addr(addr, &sa) != 0) {
        snprintf(t->errmsg, sizeof(t->errmsg), "bad address \"%s\"", addr);
        return RAFT_INVALID;
    }
    tls->accept_cb = cb;
    rv = uv_tcp_bind(&tls->listener, (struct sockaddr *)&sa, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&tls->listener, RFT_TLS_LISTEN_BACKLOG,
                       rft_tls_listen_cb);
    }
    if (rv != 0) {
        snprintf(t->errmsg, sizeof(t->errmsg), "listen on %s: %s", addr,
                 uv_strerror(rv));
        return RAFT_IOERR;
    }
    return 0;
}

/* ---- transport
 * ---------------------------------------------------------------- */

static int rft_tls_init_cb(struct raft_uv_transport *t,
                           raft_id id,
                           const char *address)
{
    struct rft_tls *tls = t->impl;
    size_t alen = strlen(address);
    int rv;

    if (id == 0 || alen == 0 || alen > RFT_TLS_ADDR_MAX) {
        snprintf(t->errmsg, sizeof(t->errmsg), "bad id or address");
        return RAFT_INVALID;
    }
    if (id != tls->cert_id && !tls->skip_self_check) {
        snprintf(t->errmsg, sizeof(t->errmsg),
                 "certificate is for raft id %" PRIu64 ", not %" PRIu64,
                 tls->cert_id, (uint64_t)id);
        return RAFT_INVALID;
    }
    tls->address = ovha_strdup(address);
    if (tls->address == NULL) {
        return RAFT_NOMEM;
    }
    rv = uv_tcp_init(tls->loop, &tls->listener);
    if (rv != 0) {
        ovha_free(tls->address);
        tls->address = NULL;
        return RAFT_IOERR;
    }
    tls->listener.data = tls;
    tls->listener_open = true;
    uv_timer_init(tls->loop, &tls->accept_timer); /* cannot fail */
    tls->accept_timer.data = tls;
    tls->accept_timer_open = true;
    tls->id = id;
    return 0;
}

static void rft_tls_listener_close_cb(uv_handle_t *h)
{
    struct rft_tls *tls = h->data;

    if (h == (uv_handle_t *)&tls->listener) {
        tls->listener_open = false;
    } else if (h == (uv_handle_t *)&tls->serve_listener) {
        tls->serve_open = false;
    } else {
        tls->accept_timer_open = false;
    }
    rft_tls_maybe_closed(tls);
}

static void rft_tls_close_cb(struct raft_uv_transport *t,
                             raft_uv_transport_close_cb cb)
{
    struct rft_tls *tls = t->impl;
    struct rft_tls_conn *c;

    assert(!tls->closing);
    tls->closing = true;
    tls->close_cb = cb;
    if (tls->listener_open) {
        uv_close((uv_handle_t *)&tls->listener, rft_tls_listener_close_cb);
    }
    if (tls->accept_timer_open) {
        uv_close((uv_handle_t *)&tls->accept_timer, rft_tls_listener_close_cb);
    }
    if (tls->serve_open) {
        uv_close((uv_handle_t *)&tls->serve_listener,
                 rft_tls_listener_close_cb);
    }
    for (c = tls->conns; c != NULL; c = c->next) {
        rft_tls_conn_close(c, RAFT_CANCELED);
    }
    /* Normally asynchronous: the listener always exists after init. */
    rft_tls_maybe_closed(tls);
}

static int rft_tls_ctx_new(struct rft_tls *tls,
                           const struct rft_tls_config *cfg,
                           char *errmsg,
                           size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    int rv;

    if (ctx == NULL) {
        snprintf(errmsg, errlen, "SSL_CTX_new: %s", rft_tls_ssl_errstr());
        return -ENOMEM;
    }
    tls->ctx = ctx;
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1) {
        snprintf(errmsg, errlen, "TLS 1.3 unavailable: %s",
                 rft_tls_ssl_errstr());
        return OVHA_ECONFIG;
    }
    /* Both roles verify: a server demands a client certificate. Only the
     * cluster CA is trusted (no default paths). */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       NULL);
    SSL_CTX_set_verify_depth(ctx, 2);
    /* Connections are long-lived; resumption would skip no checks we care
     * about but adds state, so it is off. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_load_verify_locations(ctx, cfg->ca_file, NULL) != 1) {
        snprintf(errmsg, errlen, "CA file %s: %s", cfg->ca_file,
                 rft_tls_ssl_errstr());
        return OVHA_ECONFIG;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_file) != 1) {
        snprintf(errmsg, errlen, "certificate %s: %s", cfg->cert_file,
                 rft_tls_ssl_errstr());
        return OVHA_ECONFIG;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->key_file, SSL_FILETYPE_PEM) !=
            1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(errmsg, errlen, "key %s: %s", cfg->key_file,
                 rft_tls_ssl_errstr());
        return OVHA_ECONFIG;
    }
    rv = rft_tls_cert_id(SSL_CTX_get0_certificate(ctx), &tls->cert_id);
    if (rv != 0) {
        snprintf(errmsg, errlen,
                 "certificate %s: no single valid SAN URI " RFT_TLS_URI_PREFIX
                 "<id>",
                 cfg->cert_file);
        return OVHA_ECONFIG;
    }
    return 0;
}

int rft_tls_transport_init(struct raft_uv_transport *t,
                           uv_loop_t *loop,
                           const struct rft_tls_config *cfg,
                           char *errmsg,
                           size_t errlen)
{
    struct rft_tls *tls;
    void *data = t->data;
    int rv;

    if (cfg == NULL || cfg->ca_file == NULL || cfg->cert_file == NULL ||
        cfg->key_file == NULL) {
        snprintf(errmsg, errlen, "ca_file, cert_file and key_file are needed");
        return OVHA_ECONFIG;
    }
    tls = ovha_calloc(1, sizeof(*tls));
    if (tls == NULL) {
        snprintf(errmsg, errlen, "out of memory");
        return -ENOMEM;
    }
    ERR_clear_error();
    rv = rft_tls_ctx_new(tls, cfg, errmsg, errlen);
    if (rv != 0) {
        SSL_CTX_free(tls->ctx);
        ovha_free(tls);
        return rv;
    }
    if (cfg->bind_address != NULL) {
        struct sockaddr_storage sa;
        if (rft_tls_parse_addr(cfg->bind_address, &sa) != 0) {
            snprintf(errmsg, errlen, "bad bind address \"%s\"",
                     cfg->bind_address);
            SSL_CTX_free(tls->ctx);
            ovha_free(tls);
            return OVHA_ECONFIG;
        }
        tls->bind_address = ovha_strdup(cfg->bind_address);
        if (tls->bind_address == NULL) {
            snprintf(errmsg, errlen, "out of memory");
            SSL_CTX_free(tls->ctx);
            ovha_free(tls);
            return -ENOMEM;
        }
    }
    tls->loop = loop;
    tls->timeout_ms = cfg->handshake_timeout_ms != 0 ? cfg->handshake_timeout_ms
                                                     : RFT_TLS_TIMEOUT_DEFAULT;
    memset(t, 0, sizeof(*t));
    t->data = data;
    t->impl = tls;
    t->init = rft_tls_init_cb;
    t->listen = rft_tls_listen;
    t->connect = rft_tls_connect;
    t->close = rft_tls_close_cb;
    tls->transport = t;
    return 0;
}

void rft_tls_transport_close(struct raft_uv_transport *t)
{
    struct rft_tls *tls;

    if (t == NULL || t->impl == NULL) {
        return;
    }
    tls = t->impl;
    /* raft closes the transport before raft_close completes; anything left
     * here would be a use after free in a later callback. */
    assert(tls->conns == NULL && !tls->listener_open &&
           !tls->accept_timer_open);
    SSL_CTX_free(tls->ctx);
    ovha_free(tls->address);
    ovha_free(tls->bind_address);
    ovha_free(tls);
    t->impl = NULL;
}

void rft_tls_transport_stats(const struct raft_uv_transport *t,
                             struct rft_tls_stats *ret)
{
    const struct rft_tls *tls = t->impl;

    *ret = tls->stats;
}

void rft_tls_transport_test_skip_self_check(struct raft_uv_transport *t)
{
    struct rft_tls *tls = t->impl;

    tls->skip_self_check = true;
}

/* ---- streams for the forwarding RPC -------------------------------------- */

struct rft_tls_dial {
    struct raft_uv_connect req; /* first: the callback gets &req */
    rft_tls_dial_cb cb;
    void *data;
};

static void rft_tls_dial_done(struct raft_uv_connect *req,
                              struct uv_stream_s *stream,
                              int status)
{
    struct rft_tls_dial *d = (struct rft_tls_dial *)req;
    rft_tls_dial_cb cb = d->cb;
    void *data = d->data;

    ovha_free(d);
    cb(data, status == 0 ? 0 : -ECONNREFUSED, status == 0 ? stream : NULL);
}

int rft_tls_dial(struct raft_uv_transport *t,
                 uint64_t id,
                 const char *address,
                 rft_tls_dial_cb cb,
                 void *data)
{
    struct rft_tls_dial *d = ovha_calloc(1, sizeof(*d));
    int rv;

    if (d == NULL) {
        return -ENOMEM;
    }
    d->cb = cb;
    d->data = data;
    rv = rft_tls_connect(t, &d->req, id, address, rft_tls_dial_done);
    if (rv != 0) {
        ovha_free(d);
        return rv == RAFT_NOMEM ? -ENOMEM : -ECONNREFUSED;
    }
    return 0;
}

int rft_tls_serve(struct raft_uv_transport *t,
                  const char *address,
                  rft_tls_serve_cb cb,
                  void *data)
{
    struct rft_tls *tls = t->impl;
    struct sockaddr_storage sa;
    int rv;

    if (tls->serve_open || tls->closing) {
        return -EALREADY;
    }
    if (rft_tls_parse_addr(address, &sa) != 0) {
        return -EINVAL;
    }
    rv = uv_tcp_init(tls->loop, &tls->serve_listener);
    if (rv != 0) {
        return rv;
    }
    tls->serve_listener.data = tls;
    tls->serve_open = true;
    tls->serve_cb = cb;
    tls->serve_data = data;
    rv = uv_tcp_bind(&tls->serve_listener, (struct sockaddr *)&sa, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&tls->serve_listener,
                       RFT_TLS_LISTEN_BACKLOG, rft_tls_serve_listen_cb);
    }
    if (rv != 0) {
        uv_close((uv_handle_t *)&tls->serve_listener,
                 rft_tls_listener_close_cb);
    }
    return rv;
}
