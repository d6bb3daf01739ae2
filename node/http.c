/* node/http: libmicrohttpd driven from the libuv loop.
 *
 * Happy path: MHD runs with MHD_USE_EPOLL and no thread of its own. Its
 * epoll fd sits under a uv_poll; when it becomes readable, or when the
 * uv_timer set from MHD_get_timeout() fires, we call MHD_run(), which does
 * non-blocking I/O only and calls node_http_access_cb() for requests. That
 * callback collects the body (at most NODE_HTTP_MAX_BODY), routes the
 * request and calls its handler. If the handler answered, the response is
 * queued at once; otherwise the connection is suspended and the request
 * waits in h->pending. A later node_http_respond() stores the response and
 * resumes the connection; MHD then calls the access callback once more and
 * the stored response is queued. MHD tells us in node_http_completed_cb()
 * when a request is over, and the request is freed there.
 *
 * Failure modes: a body too large is answered 413 (at once when
 * Content-Length says so, after draining otherwise); an allocation failure
 * while routing is answered 500; a client that goes away while its request
 * is suspended is only noticed when the answer is sent (MHD does not watch
 * suspended connections). On close, unanswered requests get their cancel
 * callback and a 503, because MHD must not be stopped with suspended
 * connections.
 */
#include "node/http.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <uv.h>

#include "base/base.h"

#define NODE_HTTP_CONN_TIMEOUT_S 30
#define NODE_HTTP_CONN_LIMIT     128
#define NODE_HTTP_BACKLOG        64

struct node_http_route {
    char *method;
    char *path;
    size_t plen; /* bytes to compare; the '*' excluded for a prefix */
    bool prefix;
    node_http_handler_fn fn;
    void *data;
};

struct node_http {
    uv_loop_t *loop;
    struct MHD_Daemon *mhd;
    char *sock_path;
    uv_poll_t poll;
    uv_timer_t timer;
    bool poll_init;
    int open_handles; /* uv handles not yet closed */
    bool in_run;      /* inside MHD_run(): stopping MHD must wait */
    bool closing;
    void (*close_cb)(void *data);
    void *close_data;
    struct node_http_route *routes;
    size_t nroutes;
    struct node_http_req *pending; /* suspended, unanswered requests */
    bool tls;
    bool client_ca;   /* client certificates are requested */
    char *tls_pem[3]; /* cert, key, client CA: MHD keeps pointers to them */
    node_http_auth_fn auth_fn;
    node_http_answered_fn answered_fn;
    void *auth_data;
};

struct node_http_req {
    struct node_http *h;
    struct MHD_Connection *conn;
    const char *method, *path; /* owned by MHD, valid for the request */
    struct ovha_buf body;
    bool too_large;
    bool dispatched; /* the handler has been called */
    bool in_handler; /* an answer now is queued when the handler returns */
    bool answered;
    bool suspended;
    struct MHD_Response *resp; /* the answer, until MHD takes it */
    unsigned status;
    node_http_cancel_fn cancel_cb;
    void *cancel_data;
    char subject[128];                 /* set by the auth hook; "" = none */
    bool routed;                       /* passed auth and reached a handler */
    struct node_http_req *prev, *next; /* in h->pending */
};

static void node_http_arm(struct node_http *h);
static void node_http_finish_close(struct node_http *h);

/* ---- the loop side ---------------------------------------------------- */

static void node_http_run(struct node_http *h)
{
    if (h->mhd == NULL) {
        return;
    }
    h->in_run = true;
    MHD_run(h->mhd);
    h->in_run = false;
    if (h->closing) {
        node_http_finish_close(h);
        return;
    }
    node_http_arm(h);
}

static void node_http_poll_cb(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    node_http_run(p->data);
}

static void node_http_timer_cb(uv_timer_t *t)
{
    node_http_run(t->data);
}

/* MHD says when it must run again even without I/O (connection timeouts,
 * data already buffered, resumed connections). */
static void node_http_arm(struct node_http *h)
{
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(h->mhd, &ms) == MHD_YES) {
        uv_timer_start(&h->timer, node_http_timer_cb, (uint64_t)ms, 0);
    } else {
        uv_timer_stop(&h->timer);
    }
}

/* Runs MHD from the loop soon, outside whatever callback we are in. */
static void node_http_kick(struct node_http *h)
{
    if (h->mhd != NULL && !h->closing) {
        uv_timer_start(&h->timer, node_http_timer_cb, 0, 0);
    }
}

/* ---- requests --------------------------------------------------------- */

static void node_http_pending_unlink(struct node_http_req *r)
{
    if (!r->suspended) {
        return;
    }
    if (r->prev != NULL) {
        r->prev->next = r->next;
    } else {
        r->h->pending = r->next;
    }
    if (r->next != NULL) {
        r->next->prev = r->prev;
    }
    r->prev = r->next = NULL;
    r->suspended = false;
}

static struct MHD_Response *node_http_make(const char *content_type,
                                           const char *body,
                                           size_t len)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL) {
        return NULL;
    }
    if (content_type != NULL &&
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                content_type) != MHD_YES) {
        MHD_destroy_response(resp);
        return NULL;
    }
    return resp;
}

/* Queues an answer built here (errors), for a request in the access
 * callback. */
static enum MHD_Result node_http_queue_error_h(struct node_http_req *r,
                                               unsigned status,
                                               const char *msg,
                                               const char *header,
                                               const char *value)
{
    char body[128];
    int n = snprintf(body, sizeof(body), "{\"error\":\"%s\"}", msg);
    struct MHD_Response *resp =
        node_http_make("application/json", body, (size_t)n);
    enum MHD_Result ret;

    r->answered = true;
    if (resp == NULL) {
        return MHD_NO; /* MHD closes the connection */
    }
    if (header != NULL) {
        MHD_add_response_header(resp, header, value);
    }
    if (status == MHD_HTTP_SERVICE_UNAVAILABLE) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    }
    ret = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result node_http_queue_error(struct node_http_req *r,
                                             unsigned status,
                                             const char *msg,
                                             const char *allow)
{
    return node_http_queue_error_h(
        r, status, msg, allow != NULL ? MHD_HTTP_HEADER_ALLOW : NULL, allow);
}

/* Runs the auth hook; answers 401 / 403 itself and returns false then. */
static bool node_http_authorize(struct node_http_req *r, enum MHD_Result *ret)
{
    struct node_http *h = r->h;
    char msg[96] = "unauthorized";
    if (h->auth_fn == NULL) {
        return true;
    }
    unsigned status = h->auth_fn(r, h->auth_data, msg, sizeof(msg));
    if (status == 0) {
        return true;
    }
    if (status == MHD_HTTP_UNAUTHORIZED) {
        *ret = node_http_queue_error_h(r, status, msg,
                                       MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                       "Bearer realm=\"ovha\"");
    } else {
        *ret = node_http_queue_error(r, status, msg, NULL);
    }
    return false;
}

static enum MHD_Result node_http_queue_stored(struct node_http_req *r)
{
    enum MHD_Result ret = MHD_queue_response(r->conn, r->status, r->resp);
    MHD_destroy_response(r->resp);
    r->resp = NULL;
    return ret;
}

static bool node_http_path_match(const struct node_http_route *rt,
                                 const char *path)
{
    if (rt->prefix) {
        return strncmp(rt->path, path, rt->plen) == 0;
    }
    return strcmp(rt->path, path) == 0;
}

/* Finds the route for the request, or answers 404/405 (with an Allow
 * header listing the methods the path has). */
static enum MHD_Result node_http_dispatch(struct node_http_req *r)
{
    struct node_http *h = r->h;
    const struct node_http_route *found = NULL;
    char allow[128] = "";
    size_t alen = 0;

    for (size_t i = 0; i < h->nroutes && found == NULL; i++) {
        const struct node_http_route *rt = &h->routes[i];
        if (!node_http_path_match(rt, r->path)) {
            continue;
        }
        if (strcmp(rt->method, r->method) == 0) {
            found = rt;
        } else if (alen + strlen(rt->method) + 3 < sizeof(allow) &&
                   strstr(allow, rt->method) == NULL) {
            alen += (size_t)snprintf(allow + alen, sizeof(allow) - alen, "%s%s",
                                     alen > 0 ? ", " : "", rt->method);
        }
    }
    if (found == NULL) {
        if (alen > 0) {
            return node_http_queue_error(r, MHD_HTTP_METHOD_NOT_ALLOWED,
                                         "method not allowed", allow);
        }
        return node_http_queue_error(r, MHD_HTTP_NOT_FOUND, "not found", NULL);
    }
    enum MHD_Result denied;
    if (!node_http_authorize(r, &denied)) {
        return denied;
    }
    r->routed = true;
    r->in_handler = true;
    found->fn(r, found->data);
    r->in_handler = false;
    if (r->resp != NULL) {
        return node_http_queue_stored(r);
    }
    if (r->answered) {
        return MHD_YES; /* cannot happen: answered means resp was set */
    }
    /* Answer later: park the connection until node_http_respond(). */
    MHD_suspend_connection(r->conn);
    r->suspended = true;
    r->prev = NULL;
    r->next = h->pending;
    if (h->pending != NULL) {
        h->pending->prev = r;
    }
    h->pending = r;
    return MHD_YES;
}

static struct node_http_req *node_http_req_new(struct node_http *h,
                                               struct MHD_Connection *conn,
                                               const char *url,
                                               const char *method)
{
    struct node_http_req *r = ovha_calloc(1, sizeof(*r));
    if (r == NULL) {
        return NULL;
    }
    r->h = h;
    r->conn = conn;
    r->path = url;
    r->method = method;
    ovha_buf_init(&r->body);
    return r;
}

static bool node_http_declared_too_large(struct MHD_Connection *conn)
{
    const char *cl = MHD_lookup_connection_value(
        conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    uint64_t n;
    if (cl == NULL) {
        return false;
    }
    return ovha_parse_u64(cl, UINT64_MAX, &n) != 0 || n > NODE_HTTP_MAX_BODY;
}

static enum MHD_Result node_http_access_cb(void *cls,
                                           struct MHD_Connection *conn,
                                           const char *url,
                                           const char *method,
                                           const char *version,
                                           const char *upload_data,
                                           size_t *upload_data_size,
                                           void **con_cls)
{
    struct node_http *h = cls;
    struct node_http_req *r = *con_cls;
    (void)version;

    if (r == NULL) {
        /* First call: headers only. */
        r = node_http_req_new(h, conn, url, method);
        if (r == NULL) {
            return MHD_NO;
        }
        *con_cls = r;
        if (node_http_declared_too_large(conn)) {
            r->too_large = true;
            r->dispatched = true;
            return node_http_queue_error(r, MHD_HTTP_CONTENT_TOO_LARGE,
                                         "request body too large", NULL);
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->too_large) {
            return MHD_YES; /* drain, answer at the end */
        }
        if (r->body.len + n > NODE_HTTP_MAX_BODY) {
            r->too_large = true;
            ovha_buf_free(&r->body);
            return MHD_YES;
        }
        if (ovha_buf_append(&r->body, upload_data, n) != 0) {
            return MHD_NO;
        }
        return MHD_YES;
    }
    if (r->resp != NULL) {
        return node_http_queue_stored(r); /* resumed with an answer */
    }
    if (r->dispatched) {
        return MHD_YES;
    }
    r->dispatched = true;
    if (r->too_large) {
        return node_http_queue_error(r, MHD_HTTP_CONTENT_TOO_LARGE,
                                     "request body too large", NULL);
    }
    if (h->closing) {
        return node_http_queue_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
                                     "shutting down", NULL);
    }
    return node_http_dispatch(r);
}

static void node_http_completed_cb(void *cls,
                                   struct MHD_Connection *conn,
                                   void **con_cls,
                                   enum MHD_RequestTerminationCode toe)
{
    struct node_http_req *r = *con_cls;
    (void)cls;
    (void)conn;
    (void)toe;
    if (r == NULL) {
        return;
    }
    node_http_pending_unlink(r);
    if (r->resp != NULL) {
        MHD_destroy_response(r->resp);
    }
    ovha_buf_free(&r->body);
    ovha_free(r);
    *con_cls = NULL;
}

__attribute__((format(printf, 2, 0))) static void
node_http_log_cb(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    ovha_logv(OVHA_LOG_DEBUG, "http", fmt, ap);
}

/* ---- public ------------------------------------------------------------ */

int node_http_new(uv_loop_t *loop, struct node_http **ret)
{
    struct node_http *h = ovha_calloc(1, sizeof(*h));
    if (h == NULL) {
        return -ENOMEM;
    }
    h->loop = loop;
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    h->open_handles = 1;
    *ret = h;
    return 0;
}

/* Removes a socket file nobody listens on; refuses anything else. */
static int node_http_remove_stale(const char *path,
                                  const struct sockaddr_un *sa)
{
    struct stat st;
    int fd = -1, rv;

    if (lstat(path, &st) != 0) {
        return errno == ENOENT ? 0 : -errno;
    }
    if (!S_ISSOCK(st.st_mode)) {
        return -EEXIST;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    rv = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
    rv = rv == 0 ? 0 : -errno;
    close(fd);
    if (rv == 0 || rv == -EAGAIN) {
        return -EADDRINUSE; /* someone is listening there */
    }
    if (rv != -ECONNREFUSED) {
        return rv;
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        return -errno;
    }
    return 0;
}

static int node_http_socket(const char *path, unsigned mode, int *ret_fd)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = -1, rv;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    rv = node_http_remove_stale(path, &sa);
    if (rv != 0) {
        return rv;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        rv = -errno;
        goto err_close;
    }
    /* Nobody can connect before listen(), so setting the mode here leaves
     * no window with the umask's mode. */
    if (chmod(path, mode) != 0 || listen(fd, NODE_HTTP_BACKLOG) != 0) {
        rv = -errno;
        unlink(path);
        goto err_close;
    }
    *ret_fd = fd;
    return 0;

err_close:
    close(fd);
    return rv;
}

/* Starts MHD on the listening socket fd (which it then owns) and puts its
 * epoll fd under the loop. tls_opts: extra MHD options (TLS), ending with
 * MHD_OPTION_END. */
static int node_http_start(struct node_http *h,
                           int fd,
                           unsigned flags,
                           struct MHD_OptionItem *tls_opts)
{
    const union MHD_DaemonInfo *info;
    int rv;

    h->mhd = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | flags, 0,
        NULL, NULL, node_http_access_cb, h,
        /* First, so MHD reports the other options' problems through it. */
        MHD_OPTION_EXTERNAL_LOGGER, node_http_log_cb, h,
        MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_NOTIFY_COMPLETED,
        node_http_completed_cb, h, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)NODE_HTTP_CONN_TIMEOUT_S, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)NODE_HTTP_CONN_LIMIT, MHD_OPTION_ARRAY, tls_opts,
        MHD_OPTION_END);
    if (h->mhd == NULL) {
        close(fd);
        return -EIO;
    }
    info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    rv = info != NULL ? uv_poll_init(h->loop, &h->poll, info->epoll_fd) : -EIO;
    if (rv != 0) {
        MHD_stop_daemon(h->mhd); /* closes fd */
        h->mhd = NULL;
        return rv;
    }
    h->poll.data = h;
    h->poll_init = true;
    h->open_handles++;
    uv_poll_start(&h->poll, UV_READABLE, node_http_poll_cb);
    node_http_arm(h);
    return 0;
}

int node_http_listen_unix(struct node_http *h, const char *path, unsigned mode)
{
    struct MHD_OptionItem none[] = { { MHD_OPTION_END, 0, NULL } };
    int fd = -1, rv;

    if (h->mhd != NULL || h->closing) {
        return -EALREADY;
    }
    h->sock_path = ovha_strdup(path);
    if (h->sock_path == NULL) {
        return -ENOMEM;
    }
    rv = node_http_socket(path, mode, &fd);
    if (rv == 0) {
        rv = node_http_start(h, fd, 0, none);
        if (rv != 0) {
            unlink(path);
        }
    }
    if (rv != 0) {
        ovha_free(h->sock_path);
        h->sock_path = NULL;
    }
    return rv;
}

/* Splits "host:port" or "[v6]:port" and resolves it numerically. */
static int node_http_tcp_addr(const char *addr, struct addrinfo **ret)
{
    char host[64];
    const char *colon = strrchr(addr, ':');
    size_t hlen;
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };

    if (colon == NULL || colon[1] == '\0') {
        return -EINVAL;
    }
    hlen = (size_t)(colon - addr);
    if (hlen >= 2 && addr[0] == '[' && addr[hlen - 1] == ']') {
        addr++;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= sizeof(host)) {
        return -EINVAL;
    }
    memcpy(host, addr, hlen);
    host[hlen] = '\0';
    return getaddrinfo(host, colon + 1, &hints, ret) == 0 ? 0 : -EINVAL;
}

static int node_http_tcp_socket(const char *addr, int *ret_fd)
{
    struct addrinfo *ai = NULL;
    int one = 1, fd, rv = node_http_tcp_addr(addr, &ai);

    if (rv != 0) {
        return rv;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rv = -errno;
        goto out;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
        listen(fd, NODE_HTTP_BACKLOG) != 0) {
        rv = -errno;
        close(fd);
        goto out;
    }
    *ret_fd = fd;
out:
    freeaddrinfo(ai);
    return rv;
}

int node_http_listen_tls(struct node_http *h,
                         const char *addr,
                         const char *cert_pem,
                         const char *key_pem,
                         const char *client_ca_pem)
{
    struct MHD_OptionItem opts[4];
    size_t n = 0;
    int fd = -1, rv;

    if (h->mhd != NULL || h->closing) {
        return -EALREADY;
    }
    h->tls_pem[0] = ovha_strdup(cert_pem);
    h->tls_pem[1] = ovha_strdup(key_pem);
    h->tls_pem[2] = client_ca_pem != NULL ? ovha_strdup(client_ca_pem) : NULL;
    if (h->tls_pem[0] == NULL || h->tls_pem[1] == NULL ||
        (client_ca_pem != NULL && h->tls_pem[2] == NULL)) {
        return -ENOMEM; /* freed on close */
    }
    opts[n++] =
        (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_CERT, 0, h->tls_pem[0] };
    opts[n++] =
        (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_KEY, 0, h->tls_pem[1] };
    if (h->tls_pem[2] != NULL) {
        opts[n++] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_TRUST, 0,
                                             h->tls_pem[2] };
    }
    opts[n] = (struct MHD_OptionItem){ MHD_OPTION_END, 0, NULL };
    rv = node_http_tcp_socket(addr, &fd);
    if (rv != 0) {
        return rv;
    }
    h->tls = true;
    h->client_ca = h->tls_pem[2] != NULL;
    /* MHD refuses a bad certificate or key only here. */
    rv = node_http_start(h, fd, MHD_USE_TLS, opts);
    return rv == -EIO ? -EINVAL : rv;
}

int node_http_route(struct node_http *h,
                    const char *method,
                    const char *path,
                    node_http_handler_fn fn,
                    void *data)
{
    struct node_http_route *routes, *rt;
    size_t plen = strlen(path);

    if (fn == NULL || *method == '\0' || path[0] != '/') {
        return -EINVAL;
    }
    routes = ovha_realloc(h->routes, (h->nroutes + 1) * sizeof(*routes));
    if (routes == NULL) {
        return -ENOMEM;
    }
    h->routes = routes;
    rt = &routes[h->nroutes];
    rt->method = ovha_strdup(method);
    rt->path = ovha_strdup(path);
    if (rt->method == NULL || rt->path == NULL) {
        ovha_free(rt->method);
        ovha_free(rt->path);
        return -ENOMEM;
    }
    rt->prefix = path[plen - 1] == '*';
    rt->plen = rt->prefix ? plen - 1 : plen;
    rt->fn = fn;
    rt->data = data;
    h->nroutes++;
    return 0;
}

int node_http_copy_routes(struct node_http *h, const struct node_http *src)
{
    for (size_t i = 0; i < src->nroutes; i++) {
        const struct node_http_route *rt = &src->routes[i];
        char path[512];
        int n = snprintf(path, sizeof(path), "%s%s", rt->path,
                         rt->prefix ? "*" : "");
        if (n < 0 || (size_t)n >= sizeof(path)) {
            return -EINVAL;
        }
        int rv = node_http_route(h, rt->method, path, rt->fn, rt->data);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

void node_http_set_auth(struct node_http *h,
                        node_http_auth_fn auth,
                        node_http_answered_fn answered,
                        void *data)
{
    h->auth_fn = auth;
    h->answered_fn = answered;
    h->auth_data = data;
}

const char *node_http_req_method(const struct node_http_req *r)
{
    return r->method;
}

const char *node_http_req_path(const struct node_http_req *r)
{
    return r->path;
}

const char *node_http_req_query(const struct node_http_req *r, const char *key)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *node_http_req_header(const struct node_http_req *r,
                                 const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *node_http_req_body(const struct node_http_req *r, size_t *len)
{
    if (len != NULL) {
        *len = r->body.len;
    }
    return r->body.data != NULL ? r->body.data : "";
}

int node_http_req_peer_uid(const struct node_http_req *r, uid_t *ret_uid)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct ucred cred;
    socklen_t len = sizeof(cred);

    if (info == NULL) {
        return -ENOTCONN;
    }
    if (getsockopt(info->connect_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) !=
        0) {
        return -errno;
    }
    *ret_uid = cred.uid;
    return 0;
}

void node_http_req_set_subject(struct node_http_req *r, const char *subject)
{
    ovha_strlcpy(r->subject, subject, sizeof(r->subject));
}

bool node_http_req_is_tls(const struct node_http_req *r)
{
    return r->h->tls;
}

/* Verifies the peer's chain against the client CA MHD loaded into the
 * session's credentials, then reads the leaf's CN. */
int node_http_req_client_cn(const struct node_http_req *r,
                            char *buf,
                            size_t len)
{
    const union MHD_ConnectionInfo *info;
    const gnutls_datum_t *certs;
    unsigned int ncerts = 0, status = 0;
    gnutls_x509_crt_t crt;
    size_t cnlen = len;
    int rv;

    if (!r->h->tls || !r->h->client_ca) {
        return -ENOENT;
    }
    info = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (info == NULL || info->tls_session == NULL) {
        return -ENOENT;
    }
    gnutls_session_t sess = (gnutls_session_t)info->tls_session;
    certs = gnutls_certificate_get_peers(sess, &ncerts);
    if (certs == NULL || ncerts == 0) {
        return -ENOENT;
    }
    if (gnutls_certificate_verify_peers2(sess, &status) != 0 || status != 0) {
        return -EPERM;
    }
    if (gnutls_x509_crt_init(&crt) != 0) {
        return -ENOMEM;
    }
    rv = gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER);
    if (rv == 0) {
        rv = gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0,
                                           0, buf, &cnlen);
    }
    gnutls_x509_crt_deinit(crt);
    return rv == 0 && cnlen > 0 && strlen(buf) == cnlen ? 0 : -EINVAL;
}

const char *node_http_req_subject(const struct node_http_req *r)
{
    return r->subject[0] != '\0' ? r->subject : "api";
}

void node_http_req_set_cancel(struct node_http_req *r,
                              node_http_cancel_fn cb,
                              void *data)
{
    r->cancel_cb = cb;
    r->cancel_data = data;
}

int node_http_respond(struct node_http_req *r,
                      unsigned status,
                      const char *content_type,
                      const char *body,
                      size_t len)
{
    struct MHD_Response *resp;

    if (r->answered) {
        return -EALREADY;
    }
    resp = node_http_make(content_type, body != NULL ? body : "",
                          body != NULL ? len : 0);
    if (resp == NULL) {
        return -ENOMEM;
    }
    if (status == MHD_HTTP_SERVICE_UNAVAILABLE) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    }
    r->answered = true;
    r->resp = resp;
    r->status = status;
    if (r->routed && r->h->answered_fn != NULL) {
        r->h->answered_fn(r, status, r->h->auth_data);
    }
    if (r->in_handler) {
        return 0; /* node_http_dispatch() queues it */
    }
    /* Deferred: wake the connection; MHD calls node_http_access_cb()
     * again, which queues the stored answer. */
    node_http_pending_unlink(r);
    MHD_resume_connection(r->conn);
    node_http_kick(r->h);
    return 0;
}

int node_http_respond_json(struct node_http_req *r,
                           unsigned status,
                           json_t *body)
{
    char *text;
    int rv;

    if (body == NULL) {
        return -EINVAL;
    }
    text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (text == NULL) {
        return -ENOMEM;
    }
    rv = node_http_respond(r, status, "application/json", text, strlen(text));
    free(text);
    return rv;
}

/* ---- close ------------------------------------------------------------- */

static void node_http_handle_closed_cb(uv_handle_t *handle)
{
    struct node_http *h = handle->data;
    void (*cb)(void *) = h->close_cb;
    void *data = h->close_data;

    if (--h->open_handles > 0) {
        return;
    }
    for (size_t i = 0; i < h->nroutes; i++) {
        ovha_free(h->routes[i].method);
        ovha_free(h->routes[i].path);
    }
    ovha_free(h->routes);
    ovha_free(h->sock_path);
    for (size_t i = 0; i < 3; i++) {
        ovha_free(h->tls_pem[i]);
    }
    ovha_free(h);
    if (cb != NULL) {
        cb(data);
    }
}

/* Answers what is left and stops MHD; never inside MHD_run(). */
static void node_http_finish_close(struct node_http *h)
{
    while (h->pending != NULL) {
        struct node_http_req *r = h->pending;
        node_http_pending_unlink(r);
        if (r->cancel_cb != NULL) {
            r->cancel_cb(r, r->cancel_data);
        }
        /* The cancel callback may have answered itself; node_http_respond
         * resumes the connection either way. */
        if (!r->answered &&
            node_http_respond(r, MHD_HTTP_SERVICE_UNAVAILABLE,
                              "application/json",
                              "{\"error\":\"shutting down\"}", 25) != 0) {
            MHD_resume_connection(r->conn); /* closed without an answer */
        }
    }
    if (h->mhd != NULL) {
        /* Lets the resumed connections queue their 503 before the stop. */
        h->in_run = true;
        MHD_run(h->mhd);
        h->in_run = false;
        MHD_stop_daemon(h->mhd);
        h->mhd = NULL;
        if (h->sock_path != NULL) {
            unlink(h->sock_path);
        }
    }
    uv_close((uv_handle_t *)&h->timer, node_http_handle_closed_cb);
}

void node_http_close(struct node_http *h, void (*cb)(void *data), void *data)
{
    if (h == NULL || h->closing) {
        return;
    }
    h->closing = true;
    h->close_cb = cb;
    h->close_data = data;
    /* libuv must stop watching the epoll fd before MHD closes it. */
    if (h->poll_init) {
        uv_close((uv_handle_t *)&h->poll, node_http_handle_closed_cb);
    }
    uv_timer_stop(&h->timer);
    if (!h->in_run) {
        node_http_finish_close(h);
    }
}
