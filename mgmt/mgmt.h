/* mgmt: OpenVPN management protocol (version 5) for a server controller.
 *
 * Three layers, usable separately:
 *   1. the parser: bytes in, typed events out; no I/O, no allocation that
 *      grows with input (limits below), byte-at-a-time feeding yields the
 *      same events as feeding whole;
 *   2. command builders: validate every field and append one command (or a
 *      whole client-auth block) to a buffer, or refuse with OVHA_EINJECT;
 *   3. the connection: a libuv pipe to openvpn's unix management socket,
 *      one command in flight, replies matched by order, per-command
 *      timeout, reconnect with backoff, re-setup and recovery on connect.
 *
 * The module decides nothing: it reports CONNECTs and carries answers.
 * Reference: shared/notes/openvpn-management.md.
 */
#ifndef OVHA_MGMT_H
#define OVHA_MGMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "base/base.h"

/* ======================================================================
 * 1. Parser
 * ====================================================================== */

enum mgmt_event_type {
    MGMT_EV_CLIENT_CONNECT = 1, /* cid, kid, env */
    MGMT_EV_CLIENT_REAUTH,      /* cid, kid, env */
    MGMT_EV_CLIENT_ESTABLISHED, /* cid, env */
    MGMT_EV_CLIENT_DISCONNECT,  /* cid, env (may be empty) */
    MGMT_EV_CLIENT_ADDRESS,     /* cid, addr, primary */
    MGMT_EV_CLIENT_CR_RESPONSE, /* cid, kid, text (base64), env */
    MGMT_EV_BYTECOUNT,          /* bytes_in, bytes_out */
    MGMT_EV_BYTECOUNT_CLI,      /* cid, bytes_in, bytes_out */
    MGMT_EV_STATE,              /* text: the fields after ">STATE:" */
    MGMT_EV_LOG,                /* text */
    MGMT_EV_ECHO,               /* text */
    MGMT_EV_HOLD,               /* text */
    MGMT_EV_INFO,               /* text */
    MGMT_EV_INFOMSG,            /* text */
    MGMT_EV_PASSWORD,           /* text */
    MGMT_EV_NEED_OK,            /* text */
    MGMT_EV_NEED_STR,           /* text */
    MGMT_EV_FATAL,              /* text */
    MGMT_EV_NOTIFY,             /* text */
    MGMT_EV_UPDOWN,             /* text (UP or DOWN), env */
    MGMT_EV_ASYNC_OTHER,        /* tag, text: a ">" line we do not model */
    MGMT_EV_REPLY_SUCCESS,      /* text: after "SUCCESS: " */
    MGMT_EV_REPLY_ERROR,        /* text: after "ERROR: " */
    MGMT_EV_REPLY_BLOCK,        /* lines, nlines: a multi-line reply to END */
    MGMT_EV_PARSE_ERROR,        /* error, text: what was wrong; resynced */
};

/* One environment variable of a >CLIENT: block. */
struct mgmt_env_var {
    const char *key;
    const char *value;
};

struct mgmt_env {
    const struct mgmt_env_var *vars;
    size_t n;
};

/* Value of key in env, or NULL. Linear; ENV blocks are small. */
const char *mgmt_env_get(const struct mgmt_env *env, const char *key);

/* An event. Every pointer in it is valid only during the callback. */
struct mgmt_event {
    enum mgmt_event_type type;
    uint64_t cid;
    uint32_t kid;
    struct mgmt_env env;
    const char *tag;  /* ASYNC_OTHER: the word between '>' and ':' */
    const char *text; /* see the enum */
    const char *addr; /* CLIENT_ADDRESS */
    bool primary;     /* CLIENT_ADDRESS: 1 = pushed address, 0 = iroute */
    uint64_t bytes_in, bytes_out;
    const char *const *lines; /* REPLY_BLOCK, without the END line */
    size_t nlines;
    int error; /* PARSE_ERROR: OVHA_ELIMIT or OVHA_EPROTO */
};

/* Hard bounds on what one peer can make the parser hold. */
struct mgmt_limits {
    size_t max_line;       /* bytes per line, excluding \r\n; default 4096 */
    size_t max_env;        /* variables per ENV block; default 512 */
    size_t max_block;      /* bytes in one ENV block or reply; default 1 MiB */
    size_t max_reply_rows; /* lines in one multi-line reply; default 65536 */
};

/* Fills in the defaults above. */
void mgmt_limits_default(struct mgmt_limits *l);

struct mgmt_parser;
typedef void (*mgmt_parser_event_cb)(const struct mgmt_event *ev, void *data);

/* Creates a parser. limits may be NULL for the defaults. Returns 0 or
 * -ENOMEM. The caller frees it with mgmt_parser_free. */
int mgmt_parser_new(const struct mgmt_limits *limits,
                    mgmt_parser_event_cb cb,
                    void *data,
                    struct mgmt_parser **ret);
void mgmt_parser_free(struct mgmt_parser *p);

/* Feeds n bytes; calls cb for each complete event, in order. Never fails:
 * a line over max_line, an ENV block over max_env/max_block, a malformed
 * >CLIENT: header etc. produce one MGMT_EV_PARSE_ERROR and the parser
 * resynchronises on the next line (a broken ENV block is dropped whole). */
void mgmt_parser_feed(struct mgmt_parser *p, const char *bytes, size_t n);

/* Forgets any partial line and block (after a reconnect). */
void mgmt_parser_reset(struct mgmt_parser *p);

/* ---- status 3 ---------------------------------------------------------- */

struct mgmt_status_client {
    char cn[256];
    char real_addr[64];
    char vaddr[64]; /* empty while the client still waits for auth */
    char vaddr6[64];
    uint64_t bytes_in, bytes_out;
    uint64_t connected_since; /* time_t */
    char username[256];
    uint64_t cid;
    int64_t peer_id; /* -1 when absent */
    char cipher[64];
};

struct mgmt_status_route {
    char vaddr[64];
    char cn[256];
    char real_addr[64];
    uint64_t last_ref; /* time_t */
};

struct mgmt_status {
    struct mgmt_status_client *clients;
    size_t nclients;
    struct mgmt_status_route *routes;
    size_t nroutes;
};

/* Parses the lines of a `status 3` reply (tab separated). Unknown row
 * kinds are skipped; a CLIENT_LIST row with too few fields or a
 * non-numeric number is -EPROTO. On success *ret is filled and must be
 * released with mgmt_status_free. */
int mgmt_status_parse(const char *const *lines,
                      size_t nlines,
                      struct mgmt_status *ret);
void mgmt_status_free(struct mgmt_status *s);

/* ======================================================================
 * 2. Command builders
 *
 * Each appends one complete command, newline-terminated, to out and
 * returns 0; or returns OVHA_EINJECT (a field holds \r, \n, NUL, '"', '\\'
 * or another control byte, or an unquoted token holds white space),
 * OVHA_ELIMIT (a token over 255 bytes, a block line over 255 bytes, too
 * many routes) or -EINVAL (not an IP address, a netmask, a known signal),
 * leaving out unchanged.
 * ====================================================================== */

#define MGMT_MAX_TOKEN     255
#define MGMT_MAX_ROUTES    256
#define MGMT_MAX_PUSH_OPTS 32

/* A network: an IPv4 or IPv6 literal and a prefix length. */
struct mgmt_net {
    char addr[46];
    unsigned prefix;
};

/* What a client gets. Any part may be empty. */
struct mgmt_client_config {
    char ifconfig_local[46];       /* "" = openvpn's own pool */
    char ifconfig_netmask[46];     /* with topology subnet: the pool's mask */
    char ifconfig6[64];            /* "addr/bits", "" = none */
    const struct mgmt_net *routes; /* push "route ..." / "route-ipv6" */
    size_t nroutes;
    const struct mgmt_net *iroutes; /* iroute / iroute-ipv6 */
    size_t niroutes;
    const char *const *push; /* further push "..." options, validated */
    size_t npush;
};

int mgmt_cmd_client_auth(struct ovha_buf *out,
                         uint64_t cid,
                         uint32_t kid,
                         const struct mgmt_client_config *cfg);
int mgmt_cmd_client_auth_nt(struct ovha_buf *out, uint64_t cid, uint32_t kid);
/* reason goes to openvpn's log, client_reason (may be NULL) to the client. */
int mgmt_cmd_client_deny(struct ovha_buf *out,
                         uint64_t cid,
                         uint32_t kid,
                         const char *reason,
                         const char *client_reason);
/* msg may be NULL (openvpn sends RESTART). */
int mgmt_cmd_client_kill(struct ovha_buf *out, uint64_t cid, const char *msg);
int mgmt_cmd_client_pending_auth(struct ovha_buf *out,
                                 uint64_t cid,
                                 uint32_t kid,
                                 const char *extra,
                                 unsigned timeout_s);
int mgmt_cmd_bytecount(struct ovha_buf *out, unsigned interval_s);
int mgmt_cmd_status(struct ovha_buf *out, unsigned version);
int mgmt_cmd_hold_release(struct ovha_buf *out);
int mgmt_cmd_env_filter(struct ovha_buf *out, unsigned level);
/* sig: "SIGHUP", "SIGTERM", "SIGUSR1" or "SIGUSR2". */
int mgmt_cmd_signal(struct ovha_buf *out, const char *sig);
/* "version N" (no reply in 2.6) when n > 0, bare "version" (a block). */
int mgmt_cmd_version(struct ovha_buf *out, unsigned n);
/* "state on" / "log on" style toggles: what is "state" or "log". */
int mgmt_cmd_toggle(struct ovha_buf *out, const char *what, bool on);

/* Validates a value that will sit inside double quotes. 0 or OVHA_EINJECT
 * or OVHA_ELIMIT. Exposed for the node, which checks CNs before use. */
int mgmt_check_quoted(const char *s, size_t max);

/* ======================================================================
 * 3. Connection
 * ====================================================================== */

struct mgmt_conn;

struct mgmt_conn_config {
    const char *path;            /* unix socket; copied */
    uint64_t cmd_timeout_ms;     /* per command; default 5000 */
    uint64_t backoff_min_ms;     /* first reconnect delay; default 100 */
    uint64_t backoff_max_ms;     /* cap; default 5000 */
    unsigned bytecount_interval; /* seconds, 0 = off */
    unsigned env_filter;         /* env-filter level, usually 0 */
    bool release_hold;           /* answer >HOLD with "hold release" */
    struct mgmt_limits limits;   /* zeroed fields take the defaults */
};

/* What a command's reply was. Valid only during the callback. */
struct mgmt_reply {
    const char *text;         /* SUCCESS/ERROR text, NULL for a block */
    const char *const *lines; /* block lines */
    size_t nlines;
};

/* status: 0 (SUCCESS or a block), -EPROTO (ERROR: reply->text says why),
 * OVHA_ETIMEDOUT (no reply in time; the connection is then reset because
 * order is lost), OVHA_ECLOSED (the connection went away first). */
typedef void (*mgmt_reply_cb)(struct mgmt_conn *m,
                              int status,
                              const struct mgmt_reply *reply,
                              void *data);
/* Every asynchronous event ('>' lines and parse errors). */
typedef void (*mgmt_conn_event_cb)(struct mgmt_conn *m,
                                   const struct mgmt_event *ev,
                                   void *data);
/* Connected and set up (true: settings re-applied, recovery done), or lost
 * (false). When the link is lost every queued command fails with
 * OVHA_ECLOSED, and none can be queued until it is back: commands name
 * client IDs, which an openvpn restart reuses for other clients. */
typedef void (*mgmt_conn_state_cb)(struct mgmt_conn *m, bool up, void *data);
typedef void (*mgmt_conn_close_cb)(void *data);

/* Creates a connection object; nothing happens until mgmt_conn_start.
 * Returns 0, -ENOMEM or -EINVAL (no path). */
int mgmt_conn_new(uv_loop_t *loop,
                  const struct mgmt_conn_config *cfg,
                  mgmt_conn_event_cb event_cb,
                  mgmt_conn_state_cb state_cb,
                  void *data,
                  struct mgmt_conn **ret);

/* Connects now, and again with backoff whenever the connection drops.
 * On every connect it sends, in order: bytecount, env-filter, state on,
 * then `status 3`; every client that shows no virtual address (still
 * waiting for a decision we may never have given) gets client-kill so it
 * returns with a fresh CONNECT; then state_cb(true). */
int mgmt_conn_start(struct mgmt_conn *m);

/* Queues one command built by the builders (a client-auth block is
 * written with one uv_write, so nothing can interleave). The text is
 * copied. cb (may be NULL) fires exactly once unless this returns an
 * error. Returns 0, -ENOMEM, -EINVAL or OVHA_ECLOSED (no link, or the
 * object is closing). */
int mgmt_conn_send(struct mgmt_conn *m,
                   const char *text,
                   size_t len,
                   mgmt_reply_cb cb,
                   void *data);

/* Like mgmt_conn_send for a batch of nreplies commands written with one
 * uv_write (nothing interleaves, and openvpn reads them in one go). cb
 * gets the reply of the last command; the earlier ones are only logged.
 * One command timeout covers the batch. */
int mgmt_conn_send_n(struct mgmt_conn *m,
                     const char *text,
                     size_t len,
                     unsigned nreplies,
                     mgmt_reply_cb cb,
                     void *data);

bool mgmt_conn_is_up(const struct mgmt_conn *m);

/* Counters for metrics and tests. */
struct mgmt_conn_stats {
    uint64_t connects;
    uint64_t commands_sent;
    uint64_t timeouts;
    uint64_t parse_errors;
    uint64_t recovered_kills; /* client-kill sent by recovery */
};
void mgmt_conn_get_stats(const struct mgmt_conn *m,
                         struct mgmt_conn_stats *ret);

/* Stops reconnecting, fails queued commands with OVHA_ECLOSED, closes the
 * handles and calls cb once everything is released; m is freed then. */
void mgmt_conn_close(struct mgmt_conn *m, mgmt_conn_close_cb cb, void *data);

#endif
