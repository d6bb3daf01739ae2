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
#include <time.h>

#include "base/base.h"

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
    if (msg != NULL) {
        ovhactl_err("%s", ovhactl_escape(msg, false, esc, sizeof(esc)));
    } else {
        ovhactl_err("the node answered HTTP %ld", a->status);
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

static const struct ovhactl_cmd ovhactl_cmds[] = {
    { "health", "", "show whether the node is up (GET /healthz)",
      "Asks the node for its health and prints its status (\"ok\" when it\n"
      "is serving) and any other facts it reports.\n"
      "Exit status: 0 healthy, 1 the node answered with an error, 3 the\n"
      "node cannot be reached.\n",
      ovhactl_cmd_health },
    { "sessions", "[CN]", "list the node's client sessions (GET /v1/sessions)",
      "With CN, only that client's sessions.\n"
      "Prints one line per session: CN, CID (OpenVPN's client id), VPN IP,\n"
      "REAL ADDRESS, STATE, SINCE (UTC), and bytes IN and OUT. CNs holding\n"
      "spaces, quotes or control characters are printed quoted, with\n"
      "C-style escapes.\n",
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
        char left[32];
        snprintf(left, sizeof(left), "%s %s", ovhactl_cmds[i].name,
                 ovhactl_cmds[i].args);
        fprintf(f, "  %-20s %s\n", left, ovhactl_cmds[i].summary);
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

static const struct ovhactl_cmd *ovhactl_find(const char *name)
{
    for (size_t i = 0; i < OVHACTL_NCMDS; i++) {
        if (strcmp(ovhactl_cmds[i].name, name) == 0) {
            return &ovhactl_cmds[i];
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "socket", required_argument, NULL, 's' },
        { "json", no_argument, NULL, 'j' },
        { "timeout", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { "message", required_argument, NULL, 'm' },
        { NULL, 0, NULL, 0 },
    };
    struct ovhactl ctl = { .socket = getenv("OVHA_SOCKET"),
                           .timeout_ms = 10000 };
    const struct ovhactl_cmd *cmd;
    bool help = false;
    uint64_t secs;
    int opt, rv;

    if (ctl.socket == NULL || *ctl.socket == '\0') {
        ctl.socket = OVHACTL_DEFAULT_SOCKET;
    }
    /* Options may come before or after the command (GNU permutation). */
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "s:t:hm:", opts, NULL)) != -1) {
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
    cmd = ovhactl_find(argv[optind]);
    if (cmd == NULL) {
        char esc[256];
        ovhactl_err("unknown command %s (see 'ovhactl --help')",
                    ovhactl_escape(argv[optind], true, esc, sizeof(esc)));
        return OVHACTL_USAGE;
    }
    if (help) {
        ovhactl_cmd_usage(cmd);
        return OVHACTL_OK;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        ovhactl_err("cannot initialise libcurl");
        return OVHACTL_UNREACHABLE;
    }
    rv = cmd->run(&ctl, argc - optind - 1, argv + optind + 1);
    curl_global_cleanup();
    fflush(stdout);
    return rv;
}
