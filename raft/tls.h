/* raft/tls.h: mutual-TLS transport for libraft 0.15 (internal to raft/).
 *
 * A `struct raft_uv_transport` whose connections are TLS 1.3 with a client
 * certificate on both sides, both chained to one cluster CA. A node's raft
 * id is bound to its certificate by exactly one subjectAltName URI
 * "ovha:node:<id>" (decimal, > 0, no sign, no leading zero, no trailing
 * bytes); the subject CN is ignored. deploy/pki.sh issues such certificates
 * and docs/pki.md describes them.
 *
 * Who is checked where:
 * - connect(id, addr): the server's certificate must chain to the CA and
 *   carry raft id `id`; otherwise the connection is dropped and logged
 *   ("rft: peer at ADDR presented id X, expected Y").
 * - listen: the client must present a certificate from the CA; after the
 *   handshake it sends {id, address} inside TLS and the claimed id must
 *   equal the id in its certificate ("rft: peer claims id X but its
 *   certificate says Y; refused"). Only then does raft's accept_cb run, and
 *   only then does the listener acknowledge, so a refused client sees its
 *   connect fail with RAFT_NOCONNECTION instead of a dead stream.
 *
 * The stream handed to raft is one end of a socketpair(AF_UNIX) wrapped in a
 * uv_pipe_t allocated with raft_malloc; raft owns, closes and frees it. The
 * transport moves plaintext between the other end and the TLS session on
 * the TCP socket, all on the loop thread with memory BIOs.
 */
#ifndef OVHA_RAFT_TLS_H
#define OVHA_RAFT_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

struct rft_tls_config {
    const char *ca_file;   /* PEM: the cluster CA, the only trust anchor */
    const char *cert_file; /* PEM: this node's certificate (chain allowed) */
    const char *key_file;  /* PEM: this node's private key */
    /* A connection that has not finished TLS and the id exchange within
     * this many milliseconds is dropped. 0 means 10000. */
    unsigned handshake_timeout_ms;
    /* Optional "ip:port" to listen on instead of raft's own address (as
     * raft_uv_tcp_set_bind_address does for the TCP transport), e.g.
     * "0.0.0.0:7000". NULL: listen on the address given to raft_init. */
    const char *bind_address;
};

/* Builds a raft_uv_transport that speaks TLS 1.3 with mandatory client
 * certificates from the CA. The files are read now; the certificate and
 * key must match. Pass t to raft_uv_init; raft then calls init (with this
 * node's id and address), listen, connect and close.
 *
 * Returns 0, or a negative errno / OVHA_ECONFIG with a message in errmsg
 * (bad or unreadable PEM files, key mismatch, a certificate without exactly
 * one valid raft id). On failure nothing needs to be released. */
int rft_tls_transport_init(struct raft_uv_transport *t,
                           uv_loop_t *loop,
                           const struct rft_tls_config *cfg,
                           char *errmsg,
                           size_t errlen);

/* Frees the transport's memory. Call only after raft_close has completed
 * (raft closes the transport as part of it), or if raft_init never ran. */
void rft_tls_transport_close(struct raft_uv_transport *t);

/* Counters, cumulative since init. */
struct rft_tls_stats {
    uint64_t handshakes_ok;   /* TLS done and ids checked, both roles */
    uint64_t rejected_tls;    /* handshake failed: bad/unknown CA, no
                                 client cert, protocol error, timeout */
    uint64_t rejected_id;     /* id mismatch: server cert vs. asked-for id,
                                 or client claim vs. its certificate */
    uint64_t connect_failed;  /* outgoing connects that ended in an error */
    uint64_t bytes_to_peer;   /* plaintext bytes raft sent through TLS */
    uint64_t bytes_from_peer; /* plaintext bytes delivered to raft */
    uint64_t paused;          /* reads paused by backpressure */
    uint64_t active;          /* connections currently open (any state) */
};
void rft_tls_transport_stats(const struct raft_uv_transport *t,
                             struct rft_tls_stats *ret);

/* Tests only: lets this transport run with a raft id its certificate does
 * not carry, so that a test can play a peer that lies about its id.
 * Without it, raft_init fails with RAFT_INVALID on such a mismatch. */
void rft_tls_transport_test_skip_self_check(struct raft_uv_transport *t);

/* ---- streams for the forwarding RPC ------------------------------------
 * The same authentication as raft's connections, on a second port. A
 * stream handed out here is a uv_pipe_t allocated with raft_malloc: its
 * owner uv_closes it and raft_frees it in the close callback. */

/* status 0 with a stream, or a negative error (stream NULL). Fires once,
 * also when the transport closes first. */
typedef void (*rft_tls_dial_cb)(void *data, int status, uv_stream_t *stream);
/* Connects to address, which must present a certificate for raft id id. */
int rft_tls_dial(struct raft_uv_transport *t,
                 uint64_t id,
                 const char *address,
                 rft_tls_dial_cb cb,
                 void *data);

/* peer_id is the id in the client's certificate (and its claim). */
typedef void (*rft_tls_serve_cb)(void *data,
                                 uint64_t peer_id,
                                 uv_stream_t *stream);
/* Listens on address for forwarding connections; call after raft_start
 * (the transport knows its own id then). One listener per transport. */
int rft_tls_serve(struct raft_uv_transport *t,
                  const char *address,
                  rft_tls_serve_cb cb,
                  void *data);

/* Parses a certificate's raft id: exactly one SAN URI "ovha:node:<id>",
 * decimal, 1 .. UINT64_MAX, no leading zero or trailing garbage. Exposed
 * for tests. cert is an X509 *. Returns 0 or -EINVAL / -ENOENT (none). */
int rft_tls_cert_id(const void *cert, uint64_t *ret_id);

#endif
