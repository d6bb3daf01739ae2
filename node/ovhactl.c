/* ovhactl: the operator's CLI. It talks HTTP to one ovhad over the node's
 * unix socket (libcurl easy: a CLI blocks, it has no loop) and prints the
 * answers for people, or raw with --json.
 *
 * Exit codes: 0 ok, 1 the operation failed or found nothing, 2 usage, 3 the
 * node cannot be reached (no socket, refused, timeout, not HTTP).
 */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "proto/proto.h"

enum {
    OVHACTL_OK = 0,
    OVHACTL_FAILED = 1,
    OVHACTL_USAGE = 2,
    OVHACTL_UNREACHABLE = 3,
};

#define OVHACTL_DEFAULT_SOCKET "/run/ovha/ovhad.sock"
#define OVHACTL_MAX_ANSWER     (16u << 20)

struct ovhactl {
    const char *socket;
    bool json;
    long timeout_ms;
    const char *message; /* kill: text sent to the client */
    const char *role;    /* cluster join: voter|standby|spare */
    bool cluster;        /* sessions: the replicated, cluster-wide list */
    const char *gateway; /* sessions --cluster: only this gateway's */
    bool force;          /* gateway drain: even the last active one */
};

struct ovhactl_answer {
    long status;
    struct ovha_buf body;
    bool too_big;
};

struct ovhactl_cmd {
    const char *name;
    const char *args;
    const char *summary;
    const char *help;
    int (*run)(struct ovhactl *ctl, int argc, char **argv);
};

static void ovhactl_err(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static void ovhactl_err(const char *fmt, ...)
{
    va_list ap;
    fputs("ovhactl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ---- escaping --------------------------------------------------------- */

/* Writes s so that a terminal shows it unambiguously: control characters
 * (C0, DEL and the UTF-8 encoded C1 range) become escapes, and the whole
 * string is quoted when quote_if_needed and it is empty or holds spaces,
 * quotes, backslashes or escapes. Returns the text in buf. */
static const char *ovhactl_escape(const char *s,
                                  bool quote_if_needed,
                                  char *buf,
                                  size_t size)
{
    bool quote = *s == '\0';
    struct ovha_buf b;
    const unsigned char *p;

    for (p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p <= 0x20 || *p == 0x7f || *p == '"' || *p == '\\' ||
            (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)) {
            quote = true;
        }
    }
    quote = quote && quote_if_needed;
    ovha_buf_init(&b);
    if (quote) {
        ovha_buf_appends(&b, "\"");
    }
    for (p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '\n') {
            ovha_buf_appends(&b, "\\n");
        } else if (*p == '\t') {
            ovha_buf_appends(&b, "\\t");
        } else if (*p == '\r') {
            ovha_buf_appends(&b, "\\r");
        } else if (*p < 0x20 || *p == 0x7f) {
            ovha_buf_printf(&b, "\\x%02x", *p);
        } else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
            ovha_buf_printf(&b, "\\u%04x", p[1]);
            p++;
        } else if (quote && (*p == '"' || *p == '\\')) {
            ovha_buf_printf(&b, "\\%c", *p);
        } else {
            ovha_buf_append(&b, p, 1);
        }
    }
    if (quote) {
        ovha_buf_appends(&b, "\"");
    }
    ovha_strlcpy(buf, b.data != NULL ? b.data : "", size);
    ovha_buf_free(&b);
    return buf;
}

/* ---- HTTP ------------------------------------------------------------- */

static size_t ovhactl_write_cb(char *p, size_t size, size_t n, void *data)
{
    struct ovhactl_answer *a = data;
    size_t len = size * n;
    if (a->body.len + len > OVHACTL_MAX_ANSWER) {
        a->too_big = true;
        return 0; /* makes curl stop with CURLE_WRITE_ERROR */
    }
    if (ovha_buf_append(&a->body, p, len) != 0) {
        return 0;
    }
    return len;
}

/* Performs one request. Returns 0 with the answer filled, or
 * OVHACTL_UNREACHABLE after printing why. */
static int ovhactl_http(struct ovhactl *ctl,
                        const char *method,
                        const char *path,
                        const char *body,
                        struct ovhactl_answer *ret)
{
    CURL *curl = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    char url[512];
    CURLcode rc;

    ovha_buf_init(&ret->body);
    ret->status = 0;
    ret->too_big = false;
    if (curl == NULL) {
        ovhactl_err("cannot initialise libcurl");
        return OVHACTL_UNREACHABLE;
    }
    snprintf(url, sizeof(url), "http://localhost%s", path);
    curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, ctl->socket);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, ctl->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, ovhactl_write_cb);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, ret);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http");
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    if (body != NULL) {
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)strlen(body));
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    rc = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &ret->status);
    curl_easy_cleanup(curl);
    curl_slist_free_all(hdrs);
    if (ret->too_big) {
        ovhactl_err("answer from the node is larger than %u bytes",
                    OVHACTL_MAX_ANSWER);
        ovha_buf_free(&ret->body);
        return OVHACTL_UNREACHABLE;
    }
    if (rc != CURLE_OK) {
        /* curl's own buffer speaks of "localhost port 80": misleading
         * for a unix socket, so only its error class is shown. */
        ovhactl_err("cannot reach the node at %s: %s", ctl->socket,
                    curl_easy_strerror(rc));
        ovha_buf_free(&ret->body);
        return OVHACTL_UNREACHABLE;
    }
    return 0;
}

/* Parses a JSON object answer; prints why not and returns NULL. */
static json_t *ovhactl_parse(const struct ovhactl_answer *a)
{
    json_error_t jerr;
    json_t *j = json_loadb(a->body.data != NULL ? a->body.data : "",
                           a->body.len, 0, &jerr);
    if (j == NULL || !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* For a non-2xx answer: prints the server's {"error": ...} (or the
 * status) and returns the exit code. */
static int ovhactl_fail(const struct ovhactl_answer *a)
{
    json_t *j = ovhactl_parse(a);
    const char *msg =
        j != NULL ? json_string_value(json_object_get(j, "error")) : NULL;
    char esc[512];
    json_t *lid = j != NULL ? json_object_get(j, "leader_id") : NULL;
    if (msg != NULL) {
        ovhactl_err("%s", ovhactl_escape(msg, false, esc, sizeof(esc)));
    } else {
        ovhactl_err("the node answered HTTP %ld", a->status);
    }
    /* 503 from a cluster change: this node is not the leader; say who
     * is, so the operator can point -s at that node's socket. */
    if (a->status == 503 && json_is_integer(lid)) {
        const char *laddr =
            json_string_value(json_object_get(j, "leader_address"));
        if (json_integer_value(lid) > 0) {
            ovhactl_err("leader is %" JSON_INTEGER_FORMAT " at %s",
                        json_integer_value(lid),
                        ovhactl_escape(laddr != NULL ? laddr : "?", true, esc,
                                       sizeof(esc)));
        } else {
            ovhactl_err("no leader is known right now; retry shortly");
        }
    }
    json_decref(j);
    return OVHACTL_FAILED;
}

/* Runs one request and hands back the parsed 2xx answer; everything else
 * is reported and turned into an exit code. */
static int ovhactl_call(struct ovhactl *ctl,
                        const char *method,
                        const char *path,
                        const char *body,
                        json_t **ret_json)
{
    struct ovhactl_answer a;
    json_t *j;
    int rv = ovhactl_http(ctl, method, path, body, &a);

    if (rv != 0) {
        return rv;
    }
    if (a.status < 200 || a.status > 299) {
        rv = ovhactl_fail(&a);
        ovha_buf_free(&a.body);
        return rv;
    }
    if (ctl->json) {
        fwrite(a.body.data != NULL ? a.body.data : "", 1, a.body.len, stdout);
        if (a.body.len == 0 || a.body.data[a.body.len - 1] != '\n') {
            fputc('\n', stdout);
        }
    }
    j = ovhactl_parse(&a);
    ovha_buf_free(&a.body);
    if (j == NULL) {
        ovhactl_err("the node's answer to %s %s is not a JSON object", method,
                    path);
        return OVHACTL_UNREACHABLE;
    }
    *ret_json = j;
    return 0;
}

/* ---- commands --------------------------------------------------------- */

/* Prints "key: value" for scalars, and "key.sub: value" for the scalars of
 * an object one level down. */
static void ovhactl_print_field(const char *prefix, const char *key, json_t *v)
{
    char ekey[256], esc[512];
    const char *sub;
    json_t *sv;

    snprintf(ekey, sizeof(ekey), "%s%s", prefix, key);
    if (json_is_object(v) && *prefix == '\0') {
        char p[160];
        snprintf(p, sizeof(p), "%.150s.", key);
        json_object_foreach(v, sub, sv)
        {
            ovhactl_print_field(p, sub, sv);
        }
        return;
    }
    ovhactl_escape(ekey, true, esc, sizeof(esc));
    if (json_is_string(v)) {
        char val[512];
        printf("%s: %s\n", esc,
               ovhactl_escape(json_string_value(v), true, val, sizeof(val)));
    } else if (json_is_integer(v)) {
        printf("%s: %" JSON_INTEGER_FORMAT "\n", esc, json_integer_value(v));
    } else if (json_is_real(v)) {
        printf("%s: %g\n", esc, json_real_value(v));
    } else if (json_is_boolean(v)) {
        printf("%s: %s\n", esc, json_is_true(v) ? "true" : "false");
    }
}

static int ovhactl_cmd_health(struct ovhactl *ctl, int argc, char **argv)
{
    json_t *j = NULL, *v;
    const char *key;
    char esc[512];
    int rv;

    (void)argv;
    if (argc != 0) {
        ovhactl_err("health takes no arguments (see 'ovhactl health --help')");
        return OVHACTL_USAGE;
    }
    rv = ovhactl_call(ctl, "GET", "/healthz", NULL, &j);
    if (rv != 0) {
        return rv;
    }
    if (!ctl->json) {
        const char *status = json_string_value(json_object_get(j, "status"));
        printf("status: %s\n",
               status != NULL ? ovhactl_escape(status, true, esc, sizeof(esc))
                              : "(missing)");
        json_object_foreach(j, key, v)
        {
            if (strcmp(key, "status") != 0) {
                ovhactl_print_field("", key, v);
            }
        }
    }
    json_decref(j);
    return OVHACTL_OK;
}

/* GETs path and prints every field of the answer, "key: value" (or the
 * JSON as is with --json). */
static int ovhactl_show(struct ovhactl *ctl, const char *path)
{
    json_t *j = NULL, *v;
    const char *key;
    int rv = ovhactl_call(ctl, "GET", path, NULL, &j);
    if (rv != 0) {
        return rv;
    }
    if (!ctl->json) {
        json_object_foreach(j, key, v)
        {
            ovhactl_print_field("", key, v);
        }
    }
    json_decref(j);
    return OVHACTL_OK;
}

static int ovhactl_cmd_upstream(struct ovhactl *ctl, int argc, char **argv)
{
    (void)argv;
    if (argc != 0) {
        ovhactl_err("upstream takes no arguments");
        return OVHACTL_USAGE;
    }
    return ovhactl_show(ctl, "/v1/upstream");
}

struct ovhactl_row {
    char cn[1100], cid[24], vpn_ip[64], real[128], state[64], since[32];
    char in[24], out[24];
};

static void ovhactl_str_field(json_t *s,
                              const char *key,
                              bool quote,
                              char *out,
                              size_t size)
{
    const char *v = json_string_value(json_object_get(s, key));
    ovhactl_escape(v != NULL ? v : "-", quote, out, size);
}

static void ovhactl_int_field(json_t *s,
                              const char *key,
                              char *out,
                              size_t size)
{
    json_t *v = json_object_get(s, key);
    if (json_is_integer(v)) {
        snprintf(out, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    } else {
        snprintf(out, size, "-");
    }
}

static void ovhactl_row_fill(json_t *s, struct ovhactl_row *r)
{
    json_t *since = json_object_get(s, "connected_since");
    ovhactl_str_field(s, "cn", true, r->cn, sizeof(r->cn));
    ovhactl_int_field(s, "cid", r->cid, sizeof(r->cid));
    ovhactl_str_field(s, "vpn_ip", true, r->vpn_ip, sizeof(r->vpn_ip));
    ovhactl_str_field(s, "real_address", true, r->real, sizeof(r->real));
    ovhactl_str_field(s, "state", true, r->state, sizeof(r->state));
    ovhactl_int_field(s, "bytes_in", r->in, sizeof(r->in));
    ovhactl_int_field(s, "bytes_out", r->out, sizeof(r->out));
    snprintf(r->since, sizeof(r->since), "-");
    if (json_is_integer(since) && json_integer_value(since) > 0) {
        time_t t = (time_t)json_integer_value(since);
        struct tm tm;
        if (gmtime_r(&t, &tm) != NULL) {
            strftime(r->since, sizeof(r->since), "%Y-%m-%dT%H:%M:%SZ", &tm);
        }
    }
}

static int ovhactl_cmd_cluster_sessions(struct ovhactl *ctl, int argc);

static int ovhactl_cmd_sessions(struct ovhactl *ctl, int argc, char **argv)
{
    static const char *const heads[] = { "CN",           "CID",   "VPN IP",
                                         "REAL ADDRESS", "STATE", "SINCE",
                                         "IN",           "OUT" };
    json_t *j = NULL, *list, *s;
    struct ovhactl_row *rows;
    size_t n, i, w[8];
    int rv;

    char path[1200] = "/v1/sessions";

    if (ctl->cluster) {
        return ovhactl_cmd_cluster_sessions(ctl, argc);
    }
    if (ctl->gateway != NULL) {
        ovhactl_err("--gateway goes with --cluster");
        return OVHACTL_USAGE;
    }
    if (argc > 1) {
        ovhactl_err(
            "sessions takes at most one CN (see 'ovhactl sessions "
            "--help')");
        return OVHACTL_USAGE;
    }
    if (argc == 1) {
        char *q = curl_easy_escape(NULL, argv[0], 0);
        if (q == NULL || strlen(q) > 1000) {
            curl_free(q);
            ovhactl_err("CN too long");
            return OVHACTL_USAGE;
        }
        snprintf(path, sizeof(path), "/v1/sessions?cn=%s", q);
        curl_free(q);
    }
    rv = ovhactl_call(ctl, "GET", path, NULL, &j);
    if (rv != 0 || ctl->json) {
        json_decref(j);
        return rv;
    }
    list = json_object_get(j, "sessions");
    if (!json_is_array(list)) {
        ovhactl_err("the node's answer has no \"sessions\" list");
        json_decref(j);
        return OVHACTL_UNREACHABLE;
    }
    n = json_array_size(list);
    rows = calloc(n + 1, sizeof(*rows));
    if (rows == NULL) {
        json_decref(j);
        ovhactl_err("out of memory");
        return OVHACTL_FAILED;
    }
    for (i = 0; i < 8; i++) {
        w[i] = strlen(heads[i]);
    }
    json_array_foreach(list, i, s)
    {
        struct ovhactl_row *r = &rows[i];
        const char *cols[8];
        ovhactl_row_fill(s, r);
        cols[0] = r->cn, cols[1] = r->cid, cols[2] = r->vpn_ip;
        cols[3] = r->real, cols[4] = r->state, cols[5] = r->since;
        cols[6] = r->in, cols[7] = r->out;
        for (size_t c = 0; c < 8; c++) {
            if (strlen(cols[c]) > w[c]) {
                w[c] = strlen(cols[c]);
            }
        }
    }
    printf("%-*s  %*s  %-*s  %-*s  %-*s  %-*s  %*s  %*s\n", (int)w[0], heads[0],
           (int)w[1], heads[1], (int)w[2], heads[2], (int)w[3], heads[3],
           (int)w[4], heads[4], (int)w[5], heads[5], (int)w[6], heads[6],
           (int)w[7], heads[7]);
    for (i = 0; i < n; i++) {
        const struct ovhactl_row *r = &rows[i];
        printf("%-*s  %*s  %-*s  %-*s  %-*s  %-*s  %*s  %*s\n", (int)w[0],
               r->cn, (int)w[1], r->cid, (int)w[2], r->vpn_ip, (int)w[3],
               r->real, (int)w[4], r->state, (int)w[5], r->since, (int)w[6],
               r->in, (int)w[7], r->out);
    }
    free(rows);
    json_decref(j);
    return OVHACTL_OK;
}

static int ovhactl_cmd_kill(struct ovhactl *ctl, int argc, char **argv)
{
    json_t *req, *j = NULL;
    char *body, esc[1100];
    json_int_t killed;
    int rv;

    if (argc != 1) {
        ovhactl_err("kill needs exactly one CN (see 'ovhactl kill --help')");
        return OVHACTL_USAGE;
    }
    /* jansson refuses strings that are not UTF-8, as the API would. */
    req = ctl->message != NULL
              ? json_pack("{s:s, s:s}", "cn", argv[0], "message", ctl->message)
              : json_pack("{s:s}", "cn", argv[0]);
    if (req == NULL) {
        ovhactl_err("the CN and the message must be valid UTF-8");
        return OVHACTL_USAGE;
    }
    body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (body == NULL) {
        ovhactl_err("out of memory");
        return OVHACTL_FAILED;
    }
    rv = ovhactl_call(ctl, "POST", "/v1/sessions/kill", body, &j);
    free(body);
    if (rv != 0 || ctl->json) {
        json_decref(j);
        return rv;
    }
    killed = json_integer_value(json_object_get(j, "killed"));
    printf("killed %" JSON_INTEGER_FORMAT " session%s of %s\n", killed,
           killed == 1 ? "" : "s",
           ovhactl_escape(argv[0], true, esc, sizeof(esc)));
    json_decref(j);
    return killed > 0 ? OVHACTL_OK : OVHACTL_FAILED;
}

/* ---- tables ------------------------------------------------------------ */

/* A text table: every cell is escaped when added; columns are sized to
 * their widest cell. */
struct ovhactl_table {
    size_t ncols, nrows, cap;
    const char *const *heads;
    const char *align; /* per column: 'l' or 'r' */
    char **cells;      /* nrows * ncols */
};

static int ovhactl_table_add(struct ovhactl_table *t, const char *const *cols)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap == 0 ? 16 : 2 * t->cap;
        char **c = realloc(t->cells, cap * t->ncols * sizeof(*c));
        if (c == NULL) {
            return -ENOMEM;
        }
        t->cells = c;
        t->cap = cap;
    }
    for (size_t i = 0; i < t->ncols; i++) {
        t->cells[t->nrows * t->ncols + i] = strdup(cols[i]);
        if (t->cells[t->nrows * t->ncols + i] == NULL) {
            for (size_t k = 0; k < i; k++) {
                free(t->cells[t->nrows * t->ncols + k]);
            }
            return -ENOMEM;
        }
    }
    t->nrows++;
    return 0;
}

static void ovhactl_table_line(const struct ovhactl_table *t,
                               const size_t *w,
                               const char *const *cols)
{
    for (size_t i = 0; i < t->ncols; i++) {
        bool last = i + 1 == t->ncols;
        if (t->align[i] == 'r') {
            printf("%*s", (int)w[i], cols[i]);
        } else {
            printf("%-*s", last ? 0 : (int)w[i], cols[i]);
        }
        fputs(last ? "\n" : "  ", stdout);
    }
}

static void ovhactl_table_print(const struct ovhactl_table *t)
{
    size_t w[16] = { 0 };
    for (size_t i = 0; i < t->ncols && i < 16; i++) {
        w[i] = strlen(t->heads[i]);
        for (size_t r = 0; r < t->nrows; r++) {
            size_t l = strlen(t->cells[r * t->ncols + i]);
            w[i] = l > w[i] ? l : w[i];
        }
    }
    ovhactl_table_line(t, w, t->heads);
    for (size_t r = 0; r < t->nrows; r++) {
        ovhactl_table_line(t, w, (const char *const *)&t->cells[r * t->ncols]);
    }
}

static void ovhactl_table_free(struct ovhactl_table *t)
{
    for (size_t i = 0; i < t->nrows * t->ncols; i++) {
        free(t->cells[i]);
    }
    free(t->cells);
}

/* A time in milliseconds since the epoch (the FSM's clock), as UTC. */
static void ovhactl_ms_field(json_t *o, const char *key, char *out, size_t size)
{
    json_t *v = json_object_get(o, key);
    snprintf(out, size, "-");
    if (json_is_integer(v) && json_integer_value(v) > 0) {
        time_t t = (time_t)(json_integer_value(v) / 1000);
        struct tm tm;
        if (gmtime_r(&t, &tm) != NULL) {
            strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
        }
    }
}

/* Gets the list under key, or reports a malformed answer. */
static json_t *ovhactl_list(json_t *j, const char *key)
{
    json_t *list = json_object_get(j, key);
    if (!json_is_array(list)) {
        ovhactl_err("the node's answer has no \"%s\" list", key);
        return NULL;
    }
    return list;
}

/* Appends "?key=value" (or "&key=value") with value URL-escaped. */
static int ovhactl_query(char *path,
                         size_t size,
                         const char *key,
                         const char *value)
{
    char *q = curl_easy_escape(NULL, value, 0);
    size_t len = strlen(path);
    if (q == NULL || strlen(q) > 1000 ||
        (size_t)snprintf(path + len, size - len, "%c%s=%s",
                         strchr(path, '?') != NULL ? '&' : '?', key,
                         q) >= size - len) {
        curl_free(q);
        return -ENAMETOOLONG;
    }
    curl_free(q);
    return 0;
}

/* A raft id argument: 1 .. 2^63-1 (what the API's JSON carries). */
static int ovhactl_parse_id(const char *s, bool zero_ok, uint64_t *ret)
{
    uint64_t v;
    if (ovha_parse_u64(s, INT64_MAX, &v) != 0 || (v == 0 && !zero_ok)) {
        char esc[64];
        ovhactl_err("'%s' is not a raft id (1 .. 9223372036854775807)",
                    ovhactl_escape(s, false, esc, sizeof(esc)));
        return OVHACTL_USAGE;
    }
    *ret = v;
    return 0;
}

static bool ovhactl_role_ok(const char *role)
{
    return strcmp(role, "voter") == 0 || strcmp(role, "standby") == 0 ||
           strcmp(role, "spare") == 0;
}

/* POSTs a JSON object built by the caller (stolen) and hands back the
 * parsed answer. */
static int ovhactl_post(struct ovhactl *ctl,
                        const char *path,
                        json_t *req,
                        json_t **ret_json)
{
    char *body;
    int rv;

    if (req == NULL) {
        ovhactl_err("out of memory");
        return OVHACTL_FAILED;
    }
    body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (body == NULL) {
        ovhactl_err("out of memory");
        return OVHACTL_FAILED;
    }
    rv = ovhactl_call(ctl, "POST", path, body, ret_json);
    free(body);
    return rv;
}

/* ---- cluster commands ---------------------------------------------------- */

static int ovhactl_cmd_cluster_status(struct ovhactl *ctl,
                                      int argc,
                                      char **argv)
{
    static const char *const heads[] = { "", "ID", "ADDRESS", "ROLE" };
    struct ovhactl_table t = { .ncols = 4, .heads = heads, .align = "lrll" };
    char leader[24], term[24], commit[24], applied[24], addr[128];
    char laddr[128], role[64], sid[24], srole[64], self[24];
    json_t *j = NULL, *list, *srv;
    json_int_t lid;
    size_t i;
    int rv;

    (void)argv;
    if (argc != 0) {
        ovhactl_err("cluster status takes no arguments");
        return OVHACTL_USAGE;
    }
    rv = ovhactl_call(ctl, "GET", "/v1/cluster", NULL, &j);
    if (rv != 0 || ctl->json) {
        json_decref(j);
        return rv;
    }
    list = ovhactl_list(j, "servers");
    if (list == NULL) {
        json_decref(j);
        return OVHACTL_UNREACHABLE;
    }
    lid = json_integer_value(json_object_get(j, "leader_id"));
    ovhactl_int_field(j, "id", self, sizeof(self));
    ovhactl_str_field(j, "role", true, role, sizeof(role));
    ovhactl_int_field(j, "term", term, sizeof(term));
    ovhactl_int_field(j, "leader_id", leader, sizeof(leader));
    ovhactl_str_field(j, "leader_address", true, laddr, sizeof(laddr));
    ovhactl_int_field(j, "commit_index", commit, sizeof(commit));
    ovhactl_int_field(j, "last_applied", applied, sizeof(applied));
    if (lid > 0) {
        printf("term %s  leader %s (%s)  commit %s  applied %s\n", term, leader,
               laddr, commit, applied);
    } else {
        printf("term %s  leader none  commit %s  applied %s\n", term, commit,
               applied);
    }
    printf("this node: %s, %s%s\n", self, role,
           json_is_true(json_object_get(j, "ready")) ? ", ready" : "");
    json_array_foreach(list, i, srv)
    {
        json_int_t sidv = json_integer_value(json_object_get(srv, "id"));
        const char *cols[4] = { lid > 0 && sidv == lid ? "*" : "", sid, addr,
                                srole };
        ovhactl_int_field(srv, "id", sid, sizeof(sid));
        ovhactl_str_field(srv, "address", true, addr, sizeof(addr));
        ovhactl_str_field(srv, "role", true, srole, sizeof(srole));
        if (ovhactl_table_add(&t, cols) != 0) {
            ovhactl_table_free(&t);
            json_decref(j);
            ovhactl_err("out of memory");
            return OVHACTL_FAILED;
        }
    }
    ovhactl_table_print(&t);
    printf("(* = leader)\n");
    ovhactl_table_free(&t);
    json_decref(j);
    return OVHACTL_OK;
}

static int ovhactl_cmd_cluster_join(struct ovhactl *ctl, int argc, char **argv)
{
    const char *role = ctl->role != NULL ? ctl->role : "voter";
    char esc[128];
    uint64_t id;
    json_t *j = NULL;
    int rv;

    if (argc != 2) {
        ovhactl_err(
            "cluster join needs ID and ADDRESS (see 'ovhactl cluster "
            "join --help')");
        return OVHACTL_USAGE;
    }
    rv = ovhactl_parse_id(argv[0], false, &id);
    if (rv != 0) {
        return rv;
    }
    if (!ovhactl_role_ok(role)) {
        ovhactl_err("--role wants voter, standby or spare, not '%s'",
                    ovhactl_escape(role, false, esc, sizeof(esc)));
        return OVHACTL_USAGE;
    }
    rv = ovhactl_post(ctl, "/v1/cluster/join",
                      json_pack("{s:I, s:s, s:s}", "id", (json_int_t)id,
                                "address", argv[1], "role", role),
                      &j);
    if (rv == 0 && !ctl->json) {
        printf("node %" PRIu64 " joined as %s\n", id, role);
    }
    json_decref(j);
    return rv;
}

static int ovhactl_cmd_cluster_remove(struct ovhactl *ctl,
                                      int argc,
                                      char **argv)
{
    uint64_t id;
    json_t *j = NULL;
    int rv;

    if (argc != 1) {
        ovhactl_err("cluster remove needs exactly one ID");
        return OVHACTL_USAGE;
    }
    rv = ovhactl_parse_id(argv[0], false, &id);
    if (rv != 0) {
        return rv;
    }
    rv = ovhactl_post(ctl, "/v1/cluster/remove",
                      json_pack("{s:I}", "id", (json_int_t)id), &j);
    if (rv == 0 && !ctl->json) {
        printf("node %" PRIu64 " removed\n", id);
    }
    json_decref(j);
    return rv;
}

/* gateway drain|activate G: one GatewaySetState through raft. */
static int ovhactl_gateway_state(struct ovhactl *ctl,
                                 int argc,
                                 char **argv,
                                 bool drain)
{
    const char *verb = drain ? "drain" : "activate";
    char path[64];
    json_t *j = NULL;
    int rv;

    if (argc != 1) {
        ovhactl_err("gateway %s needs exactly one gateway id", verb);
        return OVHACTL_USAGE;
    }
    snprintf(path, sizeof(path), "/v1/gateways/%s", verb);
    rv = ovhactl_post(ctl, path,
                      json_pack("{s:s, s:b}", "gateway", argv[0], "force",
                                drain && ctl->force),
                      &j);
    if (rv == 0 && !ctl->json) {
        printf("gateway %s: %s\n", argv[0],
               drain ? "draining (its clients move to their next remote)"
                     : "active");
    }
    json_decref(j);
    return rv;
}

static int ovhactl_cmd_gateway_drain(struct ovhactl *ctl, int argc, char **argv)
{
    return ovhactl_gateway_state(ctl, argc, argv, true);
}

static int ovhactl_cmd_gateway_activate(struct ovhactl *ctl,
                                        int argc,
                                        char **argv)
{
    return ovhactl_gateway_state(ctl, argc, argv, false);
}

static int ovhactl_cmd_cn_usage(struct ovhactl *ctl, int argc, char **argv)
{
    char path[1024];

    if (argc != 1) {
        ovhactl_err("usage needs exactly one CN");
        return OVHACTL_USAGE;
    }
    snprintf(path, sizeof(path), "/v1/usage");
    if (ovhactl_query(path, sizeof(path), "cn", argv[0]) != 0) {
        ovhactl_err("CN too long");
        return OVHACTL_USAGE;
    }
    return ovhactl_show(ctl, path);
}

static int ovhactl_cmd_failover(struct ovhactl *ctl, int argc, char **argv)
{
    (void)argv;
    if (argc != 0) {
        ovhactl_err("failover takes no arguments");
        return OVHACTL_USAGE;
    }
    return ovhactl_show(ctl, "/v1/failover");
}

/* ---- firewall policy ----------------------------------------------------
 */

#define OVHACTL_POLICY_PATH "/v1/policy/firewall"

static int ovhactl_cmd_policy_show(struct ovhactl *ctl, int argc, char **argv)
{
    json_t *j = NULL;
    (void)argv;
    if (argc != 0) {
        ovhactl_err("policy show takes no arguments");
        return OVHACTL_USAGE;
    }
    int rv = ovhactl_call(ctl, "GET", OVHACTL_POLICY_PATH, NULL, &j);
    if (rv == 0 && !ctl->json) {
        char *doc = json_dumps(json_object_get(j, "policy"), JSON_INDENT(2));
        printf("%s\n", doc != NULL ? doc : "");
        free(doc);
    }
    json_decref(j);
    return rv;
}

/* Reads a policy file whole (at most 64 KiB). NULL after printing why. */
static char *ovhactl_read_policy(const char *path)
{
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        ovhactl_err("%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = ovha_malloc(PROTO_POLICY_MAX + 1);
    size_t n = buf != NULL ? fread(buf, 1, PROTO_POLICY_MAX + 1, f) : 0;
    bool bad = ferror(f) != 0;
    fclose(f);
    if (buf == NULL || bad || n == 0 || n > PROTO_POLICY_MAX - 1) {
        ovhactl_err("%s: %s", path,
                    buf == NULL ? "out of memory"
                    : bad       ? "read error"
                                : "empty or larger than 65535 bytes");
        ovha_free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

static int ovhactl_cmd_policy_apply(struct ovhactl *ctl, int argc, char **argv)
{
    json_t *j = NULL;
    if (argc != 1) {
        ovhactl_err("policy apply needs exactly one FILE");
        return OVHACTL_USAGE;
    }
    char *body = ovhactl_read_policy(argv[0]);
    if (body == NULL) {
        return OVHACTL_USAGE;
    }
    int rv = ovhactl_call(ctl, "PUT", OVHACTL_POLICY_PATH, body, &j);
    ovha_free(body);
    if (rv == 0 && !ctl->json) {
        printf(
            "firewall policy committed; every gateway applies it within "
            "its reconcile interval\n");
    }
    json_decref(j);
    return rv;
}

static int ovhactl_cmd_policy_delete(struct ovhactl *ctl, int argc, char **argv)
{
    json_t *j = NULL;
    (void)argv;
    if (argc != 0) {
        ovhactl_err("policy delete takes no arguments");
        return OVHACTL_USAGE;
    }
    int rv = ovhactl_call(ctl, "DELETE", OVHACTL_POLICY_PATH, NULL, &j);
    if (rv == 0 && !ctl->json) {
        printf("firewall policy deleted: nothing is filtered\n");
    }
    json_decref(j);
    return rv;
}

static int ovhactl_cmd_policy_explain(struct ovhactl *ctl,
                                      int argc,
                                      char **argv)
{
    json_t *j = NULL;
    uint64_t port = 0;
    if (argc < 3 || argc > 4 ||
        (argc == 4 && ovha_parse_u64(argv[3], 65535, &port) != 0)) {
        ovhactl_err("policy explain needs SRC DST PROTO [PORT]");
        return OVHACTL_USAGE;
    }
    int rv = ovhactl_post(
        ctl, OVHACTL_POLICY_PATH "/explain",
        json_pack("{s:s, s:s, s:s, s:I}", "src", argv[0], "dst", argv[1],
                  "proto", argv[2], "port", (json_int_t)port),
        &j);
    if (rv == 0 && !ctl->json) {
        printf("%s (%s)\n", json_string_value(json_object_get(j, "verdict")),
               json_string_value(json_object_get(j, "reason")));
    }
    json_decref(j);
    return rv;
}

static int ovhactl_cmd_policy_compiled(struct ovhactl *ctl,
                                       int argc,
                                       char **argv)
{
    json_t *j = NULL, *v;
    const char *key;
    (void)argv;
    if (argc != 0) {
        ovhactl_err("policy compiled takes no arguments");
        return OVHACTL_USAGE;
    }
    int rv =
        ovhactl_call(ctl, "GET", OVHACTL_POLICY_PATH "/compiled", NULL, &j);
    if (rv == 0 && !ctl->json) {
        const char *table = json_string_value(json_object_get(j, "table"));
        printf("%s", table != NULL ? table : "no table: no policy applied\n");
        json_object_foreach(json_object_get(j, "stats"), key, v)
        {
            ovhactl_print_field("# ", key, v);
        }
    }
    json_decref(j);
    return rv;
}

static int ovhactl_cmd_macs(struct ovhactl *ctl, int argc, char **argv)
{
    (void)argv;
    if (argc != 0) {
        ovhactl_err("macs takes no arguments");
        return OVHACTL_USAGE;
    }
    return ovhactl_show(ctl, "/v1/macs");
}

static int ovhactl_cmd_cluster_transfer(struct ovhactl *ctl,
                                        int argc,
                                        char **argv)
{
    uint64_t id = 0;
    char leader[24], laddr[128];
    json_t *j = NULL;
    int rv;

    if (argc > 1) {
        ovhactl_err("cluster transfer takes at most one ID");
        return OVHACTL_USAGE;
    }
    if (argc == 1) {
        rv = ovhactl_parse_id(argv[0], true, &id);
        if (rv != 0) {
            return rv;
        }
    }
    rv = ovhactl_post(ctl, "/v1/cluster/transfer",
                      json_pack("{s:I}", "id", (json_int_t)id), &j);
    if (rv == 0 && !ctl->json) {
        ovhactl_int_field(j, "leader_id", leader, sizeof(leader));
        ovhactl_str_field(j, "leader_address", true, laddr, sizeof(laddr));
        printf("leadership transferred: leader is %s at %s\n", leader, laddr);
    }
    json_decref(j);
    return rv;
}

static int ovhactl_cmd_cluster_assign(struct ovhactl *ctl,
                                      int argc,
                                      char **argv)
{
    char esc[128];
    uint64_t id;
    json_t *j = NULL;
    int rv;

    if (argc != 2) {
        ovhactl_err("cluster assign needs ID and ROLE");
        return OVHACTL_USAGE;
    }
    rv = ovhactl_parse_id(argv[0], false, &id);
    if (rv != 0) {
        return rv;
    }
    if (!ovhactl_role_ok(argv[1])) {
        ovhactl_err("ROLE must be voter, standby or spare, not '%s'",
                    ovhactl_escape(argv[1], false, esc, sizeof(esc)));
        return OVHACTL_USAGE;
    }
    rv = ovhactl_post(
        ctl, "/v1/cluster/assign",
        json_pack("{s:I, s:s}", "id", (json_int_t)id, "role", argv[1]), &j);
    if (rv == 0 && !ctl->json) {
        printf("node %" PRIu64 " is now %s\n", id, argv[1]);
    }
    json_decref(j);
    return rv;
}

#define OVHACTL_CELL 1100

/* GETs path and prints the list under key as a table, one row per item
 * from fill(). */
static int ovhactl_list_cmd(struct ovhactl *ctl,
                            const char *path,
                            const char *key,
                            struct ovhactl_table *t,
                            void (*fill)(json_t *item, char **cols))
{
    json_t *j = NULL, *list, *item;
    char buf[16][OVHACTL_CELL];
    char *cols[16];
    size_t i;
    int rv = ovhactl_call(ctl, "GET", path, NULL, &j);

    if (rv != 0 || ctl->json) {
        json_decref(j);
        return rv;
    }
    list = ovhactl_list(j, key);
    if (list == NULL) {
        json_decref(j);
        return OVHACTL_UNREACHABLE;
    }
    for (i = 0; i < 16; i++) {
        cols[i] = buf[i];
    }
    json_array_foreach(list, i, item)
    {
        fill(item, cols);
        if (ovhactl_table_add(t, (const char *const *)cols) != 0) {
            ovhactl_table_free(t);
            json_decref(j);
            ovhactl_err("out of memory");
            return OVHACTL_FAILED;
        }
    }
    ovhactl_table_print(t);
    ovhactl_table_free(t);
    json_decref(j);
    return OVHACTL_OK;
}

static void ovhactl_gateway_fill(json_t *g, char **c)
{
    ovhactl_str_field(g, "id", true, c[0], OVHACTL_CELL);
    ovhactl_str_field(g, "address", true, c[1], OVHACTL_CELL);
    ovhactl_str_field(g, "state", true, c[2], OVHACTL_CELL);
    ovhactl_ms_field(g, "last_seen", c[3], OVHACTL_CELL);
}

static int ovhactl_cmd_cluster_gateways(struct ovhactl *ctl,
                                        int argc,
                                        char **argv)
{
    static const char *const heads[] = { "ID", "ADDRESS", "STATE",
                                         "LAST SEEN" };
    struct ovhactl_table t = { .ncols = 4, .heads = heads, .align = "llll" };
    (void)argv;
    if (argc != 0) {
        ovhactl_err("cluster gateways takes no arguments");
        return OVHACTL_USAGE;
    }
    return ovhactl_list_cmd(ctl, "/v1/cluster/gateways", "gateways", &t,
                            ovhactl_gateway_fill);
}

static void ovhactl_lease_fill(json_t *l, char **c)
{
    ovhactl_str_field(l, "ip", true, c[0], OVHACTL_CELL);
    ovhactl_str_field(l, "pool", true, c[1], OVHACTL_CELL);
    ovhactl_str_field(l, "cn", true, c[2], OVHACTL_CELL);
    snprintf(c[3], OVHACTL_CELL, "%s",
             json_is_true(json_object_get(l, "reserved")) ? "yes" : "no");
    ovhactl_int_field(l, "session_id", c[4], OVHACTL_CELL);
    if (strcmp(c[4], "0") == 0) {
        snprintf(c[4], OVHACTL_CELL, "-");
    }
    ovhactl_ms_field(l, "expires_at", c[5], OVHACTL_CELL);
}

static int ovhactl_cmd_leases(struct ovhactl *ctl, int argc, char **argv)
{
    static const char *const heads[] = { "IP",       "POOL",    "CN",
                                         "RESERVED", "SESSION", "EXPIRES" };
    struct ovhactl_table t = { .ncols = 6, .heads = heads, .align = "llllrl" };
    char path[1200] = "/v1/leases";

    if (argc > 1) {
        ovhactl_err("leases takes at most one CN");
        return OVHACTL_USAGE;
    }
    if (argc == 1 && ovhactl_query(path, sizeof(path), "cn", argv[0]) != 0) {
        ovhactl_err("CN too long");
        return OVHACTL_USAGE;
    }
    return ovhactl_list_cmd(ctl, path, "leases", &t, ovhactl_lease_fill);
}

static void ovhactl_csession_fill(json_t *s, char **c)
{
    ovhactl_int_field(s, "id", c[0], OVHACTL_CELL);
    ovhactl_str_field(s, "cn", true, c[1], OVHACTL_CELL);
    ovhactl_str_field(s, "gateway", true, c[2], OVHACTL_CELL);
    ovhactl_int_field(s, "cid", c[3], OVHACTL_CELL);
    ovhactl_str_field(s, "ip4", true, c[4], OVHACTL_CELL);
    ovhactl_str_field(s, "ip6", true, c[5], OVHACTL_CELL);
    ovhactl_str_field(s, "real_address", true, c[6], OVHACTL_CELL);
    ovhactl_str_field(s, "state", true, c[7], OVHACTL_CELL);
    ovhactl_ms_field(s, "started", c[8], OVHACTL_CELL);
    for (int i = 4; i <= 5; i++) {
        if (strcmp(c[i], "\"\"") == 0) {
            snprintf(c[i], OVHACTL_CELL, "-");
        }
    }
}

static int ovhactl_cmd_cluster_sessions(struct ovhactl *ctl, int argc)
{
    static const char *const heads[] = { "ID",           "CN",    "GATEWAY",
                                         "CID",          "IP4",   "IP6",
                                         "REAL ADDRESS", "STATE", "STARTED" };
    struct ovhactl_table t = { .ncols = 9,
                               .heads = heads,
                               .align = "rllrlllll" };
    char path[1200] = "/v1/cluster/sessions";

    if (argc != 0) {
        ovhactl_err(
            "sessions --cluster takes no CN; use --gateway G to "
            "narrow it");
        return OVHACTL_USAGE;
    }
    if (ctl->gateway != NULL &&
        ovhactl_query(path, sizeof(path), "gateway", ctl->gateway) != 0) {
        ovhactl_err("gateway id too long");
        return OVHACTL_USAGE;
    }
    return ovhactl_list_cmd(ctl, path, "sessions", &t, ovhactl_csession_fill);
}

static int ovhactl_cmd_audit_head(struct ovhactl *ctl, int argc, char **argv)
{
    char seq[24], hash[160], bad[24];
    json_t *j = NULL;
    bool ok;
    int rv;

    (void)argv;
    if (argc != 0) {
        ovhactl_err("audit head takes no arguments");
        return OVHACTL_USAGE;
    }
    rv = ovhactl_call(ctl, "GET", "/v1/audit/head", NULL, &j);
    if (rv != 0) {
        return rv;
    }
    ok = json_is_true(json_object_get(j, "verified"));
    if (!ctl->json) {
        ovhactl_int_field(j, "seq", seq, sizeof(seq));
        ovhactl_str_field(j, "hash", true, hash, sizeof(hash));
        ovhactl_int_field(j, "first_bad_seq", bad, sizeof(bad));
        printf("seq: %s\nhash: %s\nverified: %s\n", seq, hash,
               ok ? "yes" : "NO");
        if (!ok) {
            printf("first bad record: %s\n", bad);
        }
    }
    json_decref(j);
    return ok ? OVHACTL_OK : OVHACTL_FAILED;
}

/* ---- pki ----------------------------------------------------------------- */

/* Where pki.sh is: $OVHA_PKI_SH, else the repository's deploy/pki.sh seen
 * from <build>/bin/ovhactl, else the installed copy. */
static int ovhactl_find_pki(char *out, size_t size)
{
    const char *env = getenv("OVHA_PKI_SH");
    char exe[4096];
    ssize_t n;

    if (env != NULL && *env != '\0') {
        if (access(env, R_OK) != 0) {
            ovhactl_err("OVHA_PKI_SH=%s: %s", env, strerror(errno));
            return OVHACTL_FAILED;
        }
        ovha_strlcpy(out, env, size);
        return 0;
    }
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        char *slash;
        exe[n] = '\0';
        slash = strrchr(exe, '/');
        if (slash != NULL) {
            *slash = '\0';
            int m = snprintf(out, size, "%s/../../deploy/pki.sh", exe);
            if (m > 0 && (size_t)m < size && access(out, R_OK) == 0) {
                return 0;
            }
        }
    }
    ovha_strlcpy(out, "/usr/share/ovha/pki.sh", size);
    if (access(out, R_OK) == 0) {
        return 0;
    }
    ovhactl_err(
        "cannot find pki.sh: set OVHA_PKI_SH, or install it as "
        "/usr/share/ovha/pki.sh");
    return OVHACTL_FAILED;
}

/* Replaces ovhactl with "bash pki.sh SUBCMD ARGS..."; returns only on
 * failure. pki.sh's own exit status (1 failed, 2 usage) becomes ours. */
static int ovhactl_exec_pki(const char *sub, int argc, char **argv)
{
    char path[4096];
    char *args[8];
    int rv = ovhactl_find_pki(path, sizeof(path));
    int k = 0;

    if (rv != 0) {
        return rv;
    }
    args[k++] = "bash";
    args[k++] = path;
    args[k++] = (char *)sub;
    for (int i = 0; i < argc && k < 7; i++) {
        args[k++] = argv[i];
    }
    args[k] = NULL;
    fflush(stdout);
    execvp("bash", args);
    ovhactl_err("cannot run bash %s: %s", path, strerror(errno));
    return OVHACTL_FAILED;
}

static int ovhactl_cmd_pki_init(struct ovhactl *ctl, int argc, char **argv)
{
    (void)ctl;
    if (argc != 1) {
        ovhactl_err("pki init needs exactly one DIR");
        return OVHACTL_USAGE;
    }
    return ovhactl_exec_pki("init", argc, argv);
}

static int ovhactl_cmd_pki_issue(struct ovhactl *ctl, int argc, char **argv)
{
    uint64_t id;
    int rv;
    (void)ctl;
    if (argc < 2 || argc > 3) {
        ovhactl_err("pki issue-node needs DIR ID [ADDR]");
        return OVHACTL_USAGE;
    }
    rv = ovhactl_parse_id(argv[1], false, &id);
    if (rv != 0) {
        return rv;
    }
    return ovhactl_exec_pki("issue-node", argc, argv);
}

static const struct ovhactl_cmd ovhactl_cmds[] = {
    { "health", "", "show whether the node is up (GET /healthz)",
      "Asks the node for its health and prints its status (\"ok\" when it\n"
      "is serving) and any other facts it reports.\n"
      "Exit status: 0 healthy, 1 the node answered with an error, 3 the\n"
      "node cannot be reached.\n",
      ovhactl_cmd_health },
    { "sessions", "[CN] | --cluster [--gateway G]",
      "list client sessions (GET /v1/sessions, /v1/cluster/sessions)",
      "Without --cluster: this gateway's live sessions, as openvpn reports\n"
      "them. With CN, only that client's sessions. One line per session:\n"
      "CN, CID (OpenVPN's client id), VPN IP, REAL ADDRESS, STATE, SINCE\n"
      "(UTC), and bytes IN and OUT.\n"
      "With --cluster: the replicated sessions of every gateway (this\n"
      "node's applied state; a follower may lag slightly), or of gateway G\n"
      "with --gateway G: ID, CN, GATEWAY, CID, IP4, IP6, REAL ADDRESS,\n"
      "STATE (connecting, established, orphaned) and STARTED (UTC).\n"
      "CNs holding spaces, quotes or control characters are printed quoted,\n"
      "with C-style escapes.\n",
      ovhactl_cmd_sessions },
    { "kill", "[-m TEXT] CN",
      "disconnect every session of CN (POST /v1/sessions/kill)",
      "Asks the node to kill every live session of the client whose\n"
      "certificate CN is exactly CN (quote it for the shell; put '--'\n"
      "before a CN that starts with '-').\n"
      "  -m, --message TEXT  tell the client why (OpenVPN's client-kill\n"
      "                      message, e.g. RESTART,... or HALT,...)\n"
      "Exit status: 0 sessions were killed, 1 no live session for CN.\n",
      ovhactl_cmd_kill },
    { "cluster status", "",
      "show raft membership and progress (GET /v1/cluster)",
      "Prints the term, the leader (id and raft address), the commit and\n"
      "applied indexes, this node's id and raft role, then one line per\n"
      "member: ID, ADDRESS and ROLE (voter, standby, spare); '*' marks the\n"
      "leader. Any node answers, leader or not.\n"
      "Exit status: 0 ok, 1 standalone node (no cluster section).\n",
      ovhactl_cmd_cluster_status },
    { "cluster join", "ID ADDRESS [--role R]",
      "add node ID at ADDRESS (POST /v1/cluster/join)",
      "Adds raft id ID, reachable at ADDRESS (a.b.c.d:port, its\n"
      "cluster.address), to the cluster. Run it against the leader. The\n"
      "node is added as a spare, then given its role; a voter is caught up\n"
      "with the log first, so this waits until the new node runs and\n"
      "answers (start it first, without bootstrap).\n"
      "  --role R  voter (default), standby or spare\n"
      "Exit status: 0 joined, 1 refused (not the leader: the leader's id\n"
      "and address are printed; another change in progress; duplicate id\n"
      "or address; the new node could not be caught up).\n",
      ovhactl_cmd_cluster_join },
    { "cluster remove", "ID", "remove node ID (POST /v1/cluster/remove)",
      "Removes raft id ID from the configuration. Run it against the\n"
      "leader. Removing the leader itself makes it step down once the\n"
      "change commits.\n"
      "Exit status: 0 removed, 1 refused or failed.\n",
      ovhactl_cmd_cluster_remove },
    { "cluster transfer", "[ID]",
      "hand leadership to ID (POST /v1/cluster/transfer)",
      "Asks the leader to hand over leadership to voter ID, or, without ID\n"
      "(or 0), to the most up-to-date voter, and waits until another node\n"
      "leads. Use it before stopping or removing the leader.\n"
      "Exit status: 0 transferred, 1 refused or not completed in time.\n",
      ovhactl_cmd_cluster_transfer },
    { "cluster assign", "ID ROLE",
      "change node ID's role (POST /v1/cluster/assign)",
      "Sets the raft role of member ID to ROLE: voter, standby or spare.\n"
      "A promotion to voter catches the node up first.\n"
      "Exit status: 0 done, 1 refused or failed.\n",
      ovhactl_cmd_cluster_assign },
    { "cluster gateways", "",
      "list the gateways the cluster knows (GET /v1/cluster/gateways)",
      "One line per gateway from the replicated state: ID, ADDRESS, STATE\n"
      "(active, standby, draining, down) and LAST SEEN (UTC, the time of\n"
      "its last heartbeat as replicated).\n",
      ovhactl_cmd_cluster_gateways },
    { "gateway drain", "G [--force]",
      "drain gateway G (POST /v1/gateways/drain)",
      "Marks gateway G draining through raft: G admits no new client and\n"
      "kills its clients with RESTART,[N], so they reconnect to their next\n"
      "remote and keep their addresses there. Refused when no other gateway\n"
      "is active, unless --force. Undo with 'gateway activate G'.\n",
      ovhactl_cmd_gateway_drain },
    { "gateway activate", "G",
      "make gateway G active (POST /v1/gateways/activate)",
      "Marks gateway G active through raft: it admits clients again.\n",
      ovhactl_cmd_gateway_activate },
    { "usage", "CN",
      "the CN's replicated byte usage this month (GET /v1/usage)",
      "Bytes in and out charged to CN in the current calendar month (UTC)\n"
      "across every gateway, and its quota (0 = none), from this node's\n"
      "applied state.\n",
      ovhactl_cmd_cn_usage },
    { "failover", "",
      "this node's fencing and failover counters (GET /v1/failover)",
      "Whether this node is fenced (no raft leader for longer than\n"
      "cluster.fence_timeout_ms), why it refuses new clients if it does,\n"
      "and counters: fences, clients killed while fenced or draining,\n"
      "gateways it marked down as leader, standby role changes.\n",
      ovhactl_cmd_failover },
    { "policy show", "",
      "the replicated firewall policy (GET /v1/policy/firewall)",
      "Prints the firewall policy document (docs/firewall.md). Exit status\n"
      "1 when there is none (nothing is filtered).\n",
      ovhactl_cmd_policy_show },
    { "policy apply", "FILE",
      "replace the firewall policy (PUT /v1/policy/firewall)",
      "Checks FILE (a JSON policy document) and replicates it; every\n"
      "gateway applies it to its live clients without reconnecting them.\n"
      "A bad document is refused with the JSON path of the problem and\n"
      "nothing changes. Exit status: 0 committed, 1 refused or failed.\n",
      ovhactl_cmd_policy_apply },
    { "policy delete", "",
      "remove the firewall policy (DELETE /v1/policy/firewall)",
      "Deletes the replicated policy: every gateway removes its table.\n",
      ovhactl_cmd_policy_delete },
    { "policy explain", "SRC DST PROTO [PORT]",
      "which rule decides a connection (POST /v1/policy/firewall/explain)",
      "Prints accept or drop for the first packet from SRC to DST (PROTO\n"
      "tcp, udp, icmp or any) and what decides it: 'rule NAME',\n"
      "'isolation', 'default' or 'not from a client'.\n",
      ovhactl_cmd_policy_explain },
    { "policy compiled", "",
      "this gateway's nftables table (GET /v1/policy/firewall/compiled)",
      "Prints the table as the kernel listed it after the last change,\n"
      "then the reconciler's counters as '# key: value' lines.\n",
      ovhactl_cmd_policy_compiled },
    { "macs", "", "the replicated MAC map of bridged clients (GET /v1/macs)",
      "Every client MAC openvpn learned on a tap gateway, with its CN,\n"
      "session and gateway, from this node's applied state. Each gateway's\n"
      "bridge points these MACs at its tap device or its uplink.\n",
      ovhactl_cmd_macs },
    { "upstream", "",
      "show the upstream API and cache tier counters (GET /v1/upstream)",
      "Prints the decision tiers' counters: lookups, hits per tier (memory,\n"
      "redis), upstream requests, answers and failures, malformed answers,\n"
      "deadline cuts, fallback answers (memory, file) and fallback denies,\n"
      "the breaker state, whether Redis is connected, and the upstream\n"
      "latency (sum, count, cumulative buckets). See docs/upstream.md.\n"
      "Exit status: 0, 1 when the node has no upstream configured, 3 when\n"
      "the node cannot be reached.\n",
      ovhactl_cmd_upstream },
    { "leases", "[CN]", "list the replicated address leases (GET /v1/leases)",
      "One line per lease, or only CN's: IP, POOL, CN, RESERVED (an\n"
      "operator reservation), SESSION (the session holding it, '-' when\n"
      "idle) and EXPIRES (UTC; '-' while held or reserved). Read from this\n"
      "node's applied state; a follower may lag slightly.\n",
      ovhactl_cmd_leases },
    { "audit head", "", "show and verify the audit chain (GET /v1/audit/head)",
      "Prints the sequence number and hash of the last audit record and\n"
      "whether the whole chain verified on this node.\n"
      "Exit status: 0 verified, 1 a record does not verify (its seq is\n"
      "printed) or the request failed.\n",
      ovhactl_cmd_audit_head },
    { "pki init", "DIR", "create the cluster CA in DIR (runs pki.sh)",
      "Runs 'pki.sh init DIR': creates ca.key and ca.crt (EC P-256) in DIR,\n"
      "made 0700, and keeps an existing CA. pki.sh is found through\n"
      "$OVHA_PKI_SH, else ../../deploy/pki.sh from ovhactl's directory (a\n"
      "build tree), else /usr/share/ovha/pki.sh. Needs no node.\n"
      "See docs/pki.md.\n",
      ovhactl_cmd_pki_init },
    { "pki issue-node", "DIR ID [ADDR]",
      "issue node ID's raft certificate (runs pki.sh)",
      "Runs 'pki.sh issue-node DIR ID [ADDR]': writes node-ID.key and\n"
      "node-ID.crt signed by DIR's CA, with the subjectAltName\n"
      "URI:ovha:node:ID that binds the raft id; ADDR's host is added as an\n"
      "IP or DNS name for humans. Keeps valid existing files.\n"
      "See docs/pki.md.\n",
      ovhactl_cmd_pki_issue },
};

#define OVHACTL_NCMDS (sizeof(ovhactl_cmds) / sizeof(ovhactl_cmds[0]))

static void ovhactl_usage(FILE *f)
{
    fprintf(f,
            "Usage: ovhactl [OPTIONS] COMMAND [ARGS]\n"
            "\n"
            "Talks to one ovhad node over its unix socket.\n"
            "\n"
            "Commands:\n");
    for (size_t i = 0; i < OVHACTL_NCMDS; i++) {
        char left[64];
        snprintf(left, sizeof(left), "%s %s", ovhactl_cmds[i].name,
                 ovhactl_cmds[i].args);
        if (strlen(left) > 24) {
            fprintf(f, "  %s\n  %-24s %s\n", left, "", ovhactl_cmds[i].summary);
        } else {
            fprintf(f, "  %-24s %s\n", left, ovhactl_cmds[i].summary);
        }
    }
    fprintf(f,
            "\n"
            "Options:\n"
            "  -s, --socket PATH   the node's socket (default $OVHA_SOCKET, "
            "else\n"
            "                      " OVHACTL_DEFAULT_SOCKET
            ")\n"
            "      --json          print the node's raw JSON answer\n"
            "  -t, --timeout SEC   give up after SEC seconds (default 10)\n"
            "  -h, --help          show this help, or a command's with\n"
            "                      'ovhactl COMMAND --help'\n"
            "\n"
            "Exit status: 0 ok, 1 operation failed or not found, 2 usage "
            "error,\n"
            "3 cannot reach the node.\n");
}

static void ovhactl_cmd_usage(const struct ovhactl_cmd *c)
{
    printf(
        "Usage: ovhactl [OPTIONS] %s%s%s\n\n%s\n%s\n"
        "Options: -s/--socket PATH, --json, -t/--timeout SEC (see "
        "'ovhactl --help').\n",
        c->name, *c->args ? " " : "", c->args, c->summary, c->help);
}

/* Matches one word ("health") or two ("cluster join"); *ret_words says
 * how many arguments the name took. */
static const struct ovhactl_cmd *ovhactl_find(int argc,
                                              char **argv,
                                              int *ret_words)
{
    for (size_t i = 0; i < OVHACTL_NCMDS; i++) {
        const char *name = ovhactl_cmds[i].name;
        const char *sp = strchr(name, ' ');
        if (sp == NULL && strcmp(name, argv[0]) == 0) {
            *ret_words = 1;
            return &ovhactl_cmds[i];
        }
        if (sp != NULL && argc >= 2 &&
            strncmp(name, argv[0], (size_t)(sp - name)) == 0 &&
            argv[0][sp - name] == '\0' && strcmp(sp + 1, argv[1]) == 0) {
            *ret_words = 2;
            return &ovhactl_cmds[i];
        }
    }
    return NULL;
}

/* Is word the first half of a two-word command ("cluster")? */
static bool ovhactl_is_group(const char *word)
{
    size_t n = strlen(word);
    for (size_t i = 0; i < OVHACTL_NCMDS; i++) {
        const char *name = ovhactl_cmds[i].name;
        if (strncmp(name, word, n) == 0 && name[n] == ' ') {
            return true;
        }
    }
    return false;
}

/* Options that belong to one command only. */
static int ovhactl_check_opts(const struct ovhactl *ctl,
                              const struct ovhactl_cmd *cmd)
{
    if (ctl->role != NULL && strcmp(cmd->name, "cluster join") != 0) {
        ovhactl_err("--role only goes with 'cluster join'");
        return OVHACTL_USAGE;
    }
    if ((ctl->cluster || ctl->gateway != NULL) &&
        strcmp(cmd->name, "sessions") != 0) {
        ovhactl_err("--cluster and --gateway only go with 'sessions'");
        return OVHACTL_USAGE;
    }
    if (ctl->message != NULL && strcmp(cmd->name, "kill") != 0) {
        ovhactl_err("--message only goes with 'kill'");
        return OVHACTL_USAGE;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "socket", required_argument, NULL, 's' },
        { "json", no_argument, NULL, 'j' },
        { "timeout", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { "message", required_argument, NULL, 'm' },
        { "role", required_argument, NULL, 'r' },
        { "cluster", no_argument, NULL, 'c' },
        { "gateway", required_argument, NULL, 'g' },
        { "force", no_argument, NULL, 'f' },
        { NULL, 0, NULL, 0 },
    };
    struct ovhactl ctl = { .socket = getenv("OVHA_SOCKET"),
                           .timeout_ms = 10000 };
    const struct ovhactl_cmd *cmd;
    bool help = false;
    uint64_t secs;
    int opt, rv, words = 1;

    if (ctl.socket == NULL || *ctl.socket == '\0') {
        ctl.socket = OVHACTL_DEFAULT_SOCKET;
    }
    /* Options may come before or after the command (GNU permutation). */
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "s:t:hm:r:cg:f", opts, NULL)) != -1) {
        switch (opt) {
        case 's':
            ctl.socket = optarg;
            break;
        case 'j':
            ctl.json = true;
            break;
        case 't':
            if (ovha_parse_u64(optarg, 3600, &secs) != 0 || secs == 0) {
                ovhactl_err("--timeout wants 1..3600 seconds, not '%s'",
                            optarg);
                return OVHACTL_USAGE;
            }
            ctl.timeout_ms = (long)secs * 1000;
            break;
        case 'h':
            help = true;
            break;
        case 'm':
            ctl.message = optarg;
            break;
        case 'r':
            ctl.role = optarg;
            break;
        case 'c':
            ctl.cluster = true;
            break;
        case 'g':
            ctl.gateway = optarg;
            break;
        case 'f':
            ctl.force = true;
            break;
        default:
            ovhactl_err(
                "unknown or incomplete option '%s' (see 'ovhactl "
                "--help')",
                argv[optind - 1]);
            return OVHACTL_USAGE;
        }
    }
    if (optind >= argc) {
        if (help) {
            ovhactl_usage(stdout);
            return OVHACTL_OK;
        }
        ovhactl_usage(stderr);
        return OVHACTL_USAGE;
    }
    cmd = ovhactl_find(argc - optind, argv + optind, &words);
    if (cmd == NULL) {
        char esc[256], esc2[256];
        if (ovhactl_is_group(argv[optind])) {
            ovhactl_err(
                "unknown or missing subcommand %s %s (see 'ovhactl --help')",
                ovhactl_escape(argv[optind], true, esc, sizeof(esc)),
                optind + 1 < argc
                    ? ovhactl_escape(argv[optind + 1], true, esc2, sizeof(esc2))
                    : "");
        } else {
            ovhactl_err("unknown command %s (see 'ovhactl --help')",
                        ovhactl_escape(argv[optind], true, esc, sizeof(esc)));
        }
        return OVHACTL_USAGE;
    }
    if (help) {
        ovhactl_cmd_usage(cmd);
        return OVHACTL_OK;
    }
    rv = ovhactl_check_opts(&ctl, cmd);
    if (rv != 0) {
        return rv;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        ovhactl_err("cannot initialise libcurl");
        return OVHACTL_UNREACHABLE;
    }
    rv = cmd->run(&ctl, argc - optind - words, argv + optind + words);
    curl_global_cleanup();
    fflush(stdout);
    return rv;
}
