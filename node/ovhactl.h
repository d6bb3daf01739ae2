/* ovhactl internals: the pieces the ovhactl*.c files share. Not a module
 * header: only ovhactl's own sources include it.
 *
 * ovhactl.c        options, the command table, help, main()
 * ovhactl_http.c   the transports (unix socket, HTTPS), the token file,
 *                  answers and their exit codes
 * ovhactl_out.c    escaping hostile strings, fields, tables
 * ovhactl_node.c   the commands of the original API (sessions, cluster...)
 * ovhactl_admin.c  pools, leases, subnets, audit, readiness, metrics,
 *                  token new
 */
#ifndef OVHA_NODE_OVHACTL_H
#define OVHA_NODE_OVHACTL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

/* Exit codes; scripts rely on them (see ovhactl --help). */
enum {
    OVHACTL_OK = 0,
    OVHACTL_FAILED = 1,       /* refused, failed, or found nothing */
    OVHACTL_USAGE = 2,        /* bad arguments, options or token file */
    OVHACTL_UNREACHABLE = 3,  /* no socket, refused, TLS, timeout, not HTTP */
    OVHACTL_UNAUTHORIZED = 4, /* 401 or 403 */
    OVHACTL_UNAVAILABLE = 5,  /* 503: no raft leader, shutting down */
};

#define OVHACTL_DEFAULT_SOCKET "/run/ovha/ovhad.sock"
#define OVHACTL_MAX_ANSWER     (16u << 20)
/* A table cell holds one escaped value (a CN escapes to at most ~4x). */
#define OVHACTL_CELL           1100

struct ovhactl {
    const char *socket;     /* the unix socket, unless server is set */
    const char *server;     /* "https://HOST:PORT" (no trailing slash) */
    const char *token_file; /* --token-file or $OVHA_TOKEN_FILE */
    const char *cacert;     /* --cacert: the CA of the server certificate */
    const char *cert;       /* --cert / --key: a TLS client certificate */
    const char *key;
    char *token; /* the bearer token read from token_file, or NULL */
    bool json;
    long timeout_ms;
    const char *message; /* kill: text sent to the client */
    const char *role;    /* cluster join: voter|standby|spare */
    bool cluster;        /* sessions: the replicated, cluster-wide list */
    const char *gateway; /* sessions --cluster: only this gateway's */
    const char *cn;      /* sessions --cluster: only this CN's */
    const char *state;   /* sessions --cluster: only in this state */
    bool force;          /* gateway drain: even the last active one */
    int64_t ttl_ms;      /* pool put --ttl-ms; -1 when not given */
    int64_t after;       /* audit --after; -1 when not given */
    int64_t limit;       /* audit --limit; -1 when not given */
};

struct ovhactl_answer {
    long status;
    struct ovha_buf body;
    bool too_big;
    long retry_after; /* seconds from Retry-After, 0 if none */
};

struct ovhactl_cmd {
    const char *name; /* one word ("health") or two ("cluster join") */
    const char *args;
    const char *summary;
    const char *help;
    int (*run)(struct ovhactl *ctl, int argc, char **argv);
    bool local; /* needs no node (and no token) */
};

/* A text table: every cell is escaped by the caller before it is added;
 * columns are sized to their widest cell. */
struct ovhactl_table {
    size_t ncols, nrows, cap;
    const char *const *heads;
    const char *align; /* per column: 'l' or 'r' */
    char **cells;      /* nrows * ncols */
};

/* ---- ovhactl_out.c ----------------------------------------------------- */

void ovhactl_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Writes s so that a terminal shows it unambiguously (control characters
 * escaped, quoted when needed). Returns buf. */
const char *ovhactl_escape(const char *s,
                           bool quote_if_needed,
                           char *buf,
                           size_t size);
/* Prints "key: value" for scalars, and "key.sub: value" one level down. */
void ovhactl_print_field(const char *prefix, const char *key, json_t *v);
/* One field of o as an escaped string, decimal, or UTC time ("-" when
 * absent or of another type). */
void ovhactl_str_field(json_t *o,
                       const char *key,
                       bool quote,
                       char *out,
                       size_t size);
void ovhactl_int_field(json_t *o, const char *key, char *out, size_t size);
/* A time in milliseconds since the epoch (the FSM's clock), as UTC. */
void ovhactl_ms_field(json_t *o, const char *key, char *out, size_t size);
int ovhactl_table_add(struct ovhactl_table *t, const char *const *cols);
void ovhactl_table_print(const struct ovhactl_table *t);
void ovhactl_table_free(struct ovhactl_table *t);
/* Gets the list under key, or reports a malformed answer. */
json_t *ovhactl_list(json_t *j, const char *key);

/* ---- ovhactl_http.c ---------------------------------------------------- */

/* Checks --server and turns "HOST:PORT" into "https://HOST:PORT". Returns
 * 0 or OVHACTL_USAGE after printing why. *ret points into a static
 * buffer or at s. */
int ovhactl_server_url(const char *s, const char **ret);
/* Reads the token from path: its first line, whitespace stripped. Refuses
 * a file that group or others may access (as ssh does with keys), an
 * empty one, and a token with characters a header cannot carry. Returns 0
 * with *ret (free with ovhactl_token_free), or OVHACTL_USAGE after
 * printing why. */
int ovhactl_token_load(const char *path, char **ret);
/* Wipes and frees a token. NULL is fine. */
void ovhactl_token_free(char *token);
/* Performs one request. Returns 0 with the answer filled (any status), or
 * OVHACTL_UNREACHABLE after printing why. */
int ovhactl_http(struct ovhactl *ctl,
                 const char *method,
                 const char *path,
                 const char *body,
                 struct ovhactl_answer *ret);
/* Parses a JSON object answer; NULL if it is not one. */
json_t *ovhactl_parse(const struct ovhactl_answer *a);
/* Prints the body as it came (--json), with a final newline. */
void ovhactl_print_raw(const struct ovhactl_answer *a);
/* For a non-2xx answer: prints the server's error and hints, returns the
 * exit code (1, 4 or 5). */
int ovhactl_fail(const struct ovhactl *ctl, const struct ovhactl_answer *a);
/* Runs one request and hands back the parsed 2xx answer (and prints it
 * raw with --json); everything else is reported and turned into an exit
 * code. */
int ovhactl_call(struct ovhactl *ctl,
                 const char *method,
                 const char *path,
                 const char *body,
                 json_t **ret_json);
/* POSTs (or PUTs, with method) a JSON object built by the caller (the
 * reference is stolen; NULL means out of memory). */
int ovhactl_send(struct ovhactl *ctl,
                 const char *method,
                 const char *path,
                 json_t *req,
                 json_t **ret_json);
int ovhactl_post(struct ovhactl *ctl,
                 const char *path,
                 json_t *req,
                 json_t **ret_json);
/* GETs path and prints every field ("key: value"). */
int ovhactl_show(struct ovhactl *ctl, const char *path);
/* Appends "?key=value" (or "&key=value") with value URL-escaped. Returns
 * 0 or -ENAMETOOLONG. */
int ovhactl_query(char *path, size_t size, const char *key, const char *value);
/* GETs path and prints the list under key as a table, one row per item
 * from fill(). */
int ovhactl_list_cmd(struct ovhactl *ctl,
                     const char *path,
                     const char *key,
                     struct ovhactl_table *t,
                     void (*fill)(json_t *item, char **cols));

/* ---- commands ---------------------------------------------------------- */

/* ovhactl_node.c */
int ovhactl_cmd_health(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_sessions(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_kill(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_upstream(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_cluster_status(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_cluster_join(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_cluster_remove(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_cluster_transfer(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_cluster_assign(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_cluster_gateways(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_gateway_drain(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_gateway_activate(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_gateway_standby(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_cn_usage(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_failover(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_policy_show(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_policy_apply(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_policy_delete(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_policy_explain(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_policy_compiled(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_macs(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_leases(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_audit_head(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_pki_init(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_pki_issue(struct ovhactl *ctl, int argc, char **argv);

/* ovhactl_admin.c */
int ovhactl_cmd_ready(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_metrics(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_pools(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_pool_put(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_lease_reserve(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_lease_release(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_subnets(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_subnet_release(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_audit(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_audit_verify(struct ovhactl *ctl, int argc, char **argv);
int ovhactl_cmd_token_new(struct ovhactl *ctl, int argc, char **argv);

#endif
