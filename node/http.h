/* node/http: the node's HTTP server (health, metrics, admin API), run on
 * the node's libuv loop. See docs/adr-001-http-server.md.
 *
 * libmicrohttpd does the HTTP; this wrapper drives it from the loop (no
 * thread of its own), routes requests by method and path, and lets a
 * handler answer later: a handler that returns without answering keeps the
 * request suspended until node_http_respond() is called from any later
 * callback on the loop thread (for instance when a Raft proposal commits).
 *
 * Only the loop thread may call these functions.
 */
#ifndef OVHA_NODE_HTTP_H
#define OVHA_NODE_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <uv.h>

/* Request bodies above this size are refused with 413. */
#define NODE_HTTP_MAX_BODY (1024 * 1024)

struct node_http;
struct node_http_req;

/* Called once per request, on the loop thread, after the whole body has
 * arrived. The request stays valid until it is answered; see
 * node_http_respond(). */
typedef void (*node_http_handler_fn)(struct node_http_req *req, void *data);

/* Called instead of an answer when the server closes while the request is
 * still unanswered. The request is answered 503 and freed right after the
 * callback returns: drop every pointer to it. */
typedef void (*node_http_cancel_fn)(struct node_http_req *req, void *data);

/* Creates a server on loop. It does nothing until node_http_listen_unix().
 * Returns 0 or -ENOMEM. */
int node_http_new(uv_loop_t *loop, struct node_http **ret);

/* Listens on a unix socket at path, created with the given mode (e.g.
 * 0600). A stale socket file there (nothing listening) is removed; a live
 * one is -EADDRINUSE, any other kind of file -EEXIST. One listen per
 * server (-EALREADY). Returns 0 or a negative errno. */
int node_http_listen_unix(struct node_http *h, const char *path, unsigned mode);

/* Listens on TCP addr ("198.18.0.1:9443", "[::1]:9443") with TLS. The
 * PEM texts are copied: the server's certificate chain and key, and
 * optionally (NULL) a CA whose client certificates are requested and may
 * then be read with node_http_req_client_cn(). One listen per server.
 * Returns 0, -EINVAL (bad address or PEM), or a negative errno. */
int node_http_listen_tls(struct node_http *h,
                         const char *addr,
                         const char *cert_pem,
                         const char *key_pem,
                         const char *client_ca_pem);

/* Copies every route of src into h (after src's routes are all added). */
int node_http_copy_routes(struct node_http *h, const struct node_http *src);

/* Decides whether a routed request may reach its handler: returns 0 (go
 * on; it may set the subject), or 401 / 403 with a message (a fixed,
 * JSON-safe text) in msg. Runs before the handler, for every route. */
typedef unsigned (*node_http_auth_fn)(struct node_http_req *req,
                                      void *data,
                                      char *msg,
                                      size_t msglen);
/* Called when a request that reached its handler is answered, with the
 * status, before the request is freed. */
typedef void (*node_http_answered_fn)(struct node_http_req *req,
                                      unsigned status,
                                      void *data);
void node_http_set_auth(struct node_http *h,
                        node_http_auth_fn auth,
                        node_http_answered_fn answered,
                        void *data);

/* Registers fn for method and path (both copied). The path matches
 * exactly, or as a prefix when it ends with '*' (e.g. "/v1/sessions/" followed
 * by a star). Routes are tried in the order they were added. A path that
 * matches no route gets 404, a path that matches only with other methods 405,
 * both with a JSON body {"error": "..."}. Returns 0, -EINVAL or -ENOMEM. */
int node_http_route(struct node_http *h,
                    const char *method,
                    const char *path,
                    node_http_handler_fn fn,
                    void *data);

/* Accessors; the strings live as long as the request. */
const char *node_http_req_method(const struct node_http_req *r);
const char *node_http_req_path(const struct node_http_req *r);
/* The decoded value of a query argument, NULL if absent. */
const char *node_http_req_query(const struct node_http_req *r, const char *key);
/* A request header (case-insensitive name), NULL if absent. */
const char *node_http_req_header(const struct node_http_req *r,
                                 const char *name);
/* The body, NUL-terminated for convenience (len excludes the NUL); an
 * empty body is "" with *len = 0. len may be NULL. */
const char *node_http_req_body(const struct node_http_req *r, size_t *len);
/* The peer's uid from SO_PEERCRED. Returns 0 or a negative errno. */
int node_http_req_peer_uid(const struct node_http_req *r, uid_t *ret_uid);
/* Sets the subject (copied, truncated to 127 bytes). */
void node_http_req_set_subject(struct node_http_req *r, const char *subject);
/* True when the request came over the TLS listener. */
bool node_http_req_is_tls(const struct node_http_req *r);
/* The common name of the peer's TLS client certificate, once verified
 * against the listener's client CA. Returns 0, -ENOENT (no certificate, no
 * client CA or not TLS), -EPERM (it does not verify) or -EINVAL. */
int node_http_req_client_cn(const struct node_http_req *r,
                            char *buf,
                            size_t len);
/* Who made the request, as the auth hook named it ("token:alice",
 * "cert:ops-1", "uid:0"), or "api" when no hook is set. Use it as the
 * actor of a replicated write. Never NULL. */
const char *node_http_req_subject(const struct node_http_req *r);
/* Sets (or clears with NULL) the callback for a request still unanswered
 * when the server closes. */
void node_http_req_set_cancel(struct node_http_req *r,
                              node_http_cancel_fn cb,
                              void *data);

/* Answers r, now (inside the handler) or later (from any loop callback).
 * The body is copied. Exactly once per request: after it returns 0 the
 * request belongs to the server again and r must not be used. Returns 0,
 * -EALREADY if r was answered, or -ENOMEM (then r is still yours and may
 * be answered again). */
int node_http_respond(struct node_http_req *r,
                      unsigned status,
                      const char *content_type,
                      const char *body,
                      size_t len);

/* Same with a JSON body (application/json). Steals the reference to body
 * in every case, even on error. */
int node_http_respond_json(struct node_http_req *r,
                           unsigned status,
                           json_t *body);

/* Stops listening, answers every unanswered request 503 (after its cancel
 * callback), closes the connections, removes the socket file, and calls
 * cb(data) once all uv handles are closed and h is freed. h must not be
 * used after this call. Safe to call from a handler. NULL h is a no-op
 * (cb is not called). */
void node_http_close(struct node_http *h, void (*cb)(void *data), void *data);

#endif
