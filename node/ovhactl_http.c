/* ovhactl transport: one HTTP request per call (libcurl easy: a CLI
 * blocks, it has no loop), over the node's unix socket or, with --server,
 * over HTTPS to the node's TCP+TLS listener. A bearer token from
 * --token-file goes with the request on both. Answers become exit codes
 * here: 401/403 -> 4, 503 -> 5 (1 when a non-leader names the leader),
 * other errors -> 1. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "node/ovhactl.h"

#define OVHACTL_TOKEN_MAX 512

/* ---- token file ---------------------------------------------------------- */

void ovhactl_token_free(char *token)
{
    if (token != NULL) {
        explicit_bzero(token, strlen(token));
        free(token);
    }
}

/* Checks what a header line can carry: visible ASCII, no spaces. A CR or
 * LF would let a token file inject headers. */
static bool ovhactl_token_ok(const char *t)
{
    if (*t == '\0') {
        return false;
    }
    for (const unsigned char *p = (const unsigned char *)t; *p != '\0'; p++) {
        if (*p <= 0x20 || *p >= 0x7f) {
            return false;
        }
    }
    return true;
}

/* Keeps the first line of buf, without surrounding whitespace. */
static char *ovhactl_token_first_line(char *buf)
{
    char *s = buf, *e;
    while (*s == ' ' || *s == '\t' || *s == '\r') {
        s++;
    }
    e = strchr(s, '\n');
    if (e == NULL) {
        e = s + strlen(s);
    }
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) {
        e--;
    }
    *e = '\0';
    return s;
}

int ovhactl_token_load(const char *path, char **ret)
{
    char buf[OVHACTL_TOKEN_MAX + 2];
    struct stat st;
    ssize_t n;
    char *tok, *copy;
    int rv = OVHACTL_USAGE;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

    if (fd < 0) {
        ovhactl_err("token file %s: %s", path, strerror(errno));
        return OVHACTL_USAGE;
    }
    /* fstat on the open file: no window between the check and the read. */
    if (fstat(fd, &st) != 0) {
        ovhactl_err("token file %s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        ovhactl_err("token file %s: not a regular file", path);
        goto out;
    }
    if ((st.st_mode & 077) != 0) {
        ovhactl_err(
            "token file %s: permissions %04o are too open; it must not be "
            "accessible by group or others (chmod 600 %s)",
            path, (unsigned)(st.st_mode & 07777), path);
        goto out;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    if (n < 0) {
        ovhactl_err("token file %s: %s", path, strerror(errno));
        goto out;
    }
    buf[n] = '\0';
    if (memchr(buf, '\0', (size_t)n) != NULL) {
        ovhactl_err("token file %s: holds a NUL byte", path);
        goto wipe;
    }
    tok = ovhactl_token_first_line(buf);
    if (strlen(tok) > OVHACTL_TOKEN_MAX - 1 ||
        (strchr(buf, '\n') == NULL && (size_t)n == sizeof(buf) - 1)) {
        ovhactl_err("token file %s: the first line is too long", path);
        goto wipe;
    }
    if (!ovhactl_token_ok(tok)) {
        ovhactl_err(
            "token file %s: the first line must hold the token (printable "
            "ASCII, no spaces)",
            path);
        goto wipe;
    }
    copy = strdup(tok);
    if (copy == NULL) {
        ovhactl_err("out of memory");
        goto wipe;
    }
    *ret = copy;
    rv = 0;
wipe:
    explicit_bzero(buf, sizeof(buf));
out:
    close(fd);
    return rv;
}

/* ---- server address ------------------------------------------------------ */

int ovhactl_server_url(const char *s, const char **ret)
{
    static char url[512];
    size_t len;

    if (strncmp(s, "http://", 7) == 0) {
        ovhactl_err(
            "--server: the API listener speaks TLS only; use https://%s",
            s + 7);
        return OVHACTL_USAGE;
    }
    if (strncmp(s, "https://", 8) == 0) {
        s += 8;
    } else if (strstr(s, "://") != NULL) {
        ovhactl_err("--server wants https://HOST:PORT");
        return OVHACTL_USAGE;
    }
    len = strlen(s);
    while (len > 0 && s[len - 1] == '/') {
        len--;
    }
    /* A path would be glued in front of every API path; none is wanted. */
    if (len == 0 || memchr(s, '/', len) != NULL ||
        memchr(s, '?', len) != NULL || memchr(s, '#', len) != NULL ||
        memchr(s, '@', len) != NULL || len > sizeof(url) - 9) {
        ovhactl_err("--server wants https://HOST:PORT, nothing more");
        return OVHACTL_USAGE;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f) {
            ovhactl_err("--server wants https://HOST:PORT, nothing more");
            return OVHACTL_USAGE;
        }
    }
    snprintf(url, sizeof(url), "https://%.*s", (int)len, s);
    *ret = url;
    return 0;
}

/* ---- HTTP ---------------------------------------------------------------- */

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

/* Sets the transport: the unix socket (plain HTTP, the socket's mode and
 * peer credentials protect it) or HTTPS with the server verified. */
static void ovhactl_http_transport(struct ovhactl *ctl,
                                   CURL *curl,
                                   const char *path,
                                   char *url,
                                   size_t size)
{
    if (ctl->server == NULL) {
        snprintf(url, size, "http://localhost%s", path);
        curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, ctl->socket);
        curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http");
        return;
    }
    snprintf(url, size, "%s%s", ctl->server, path);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(curl, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (ctl->cacert != NULL) {
        curl_easy_setopt(curl, CURLOPT_CAINFO, ctl->cacert);
    }
    if (ctl->cert != NULL) {
        curl_easy_setopt(curl, CURLOPT_SSLCERT, ctl->cert);
        curl_easy_setopt(curl, CURLOPT_SSLKEY, ctl->key);
    }
}

int ovhactl_http(struct ovhactl *ctl,
                 const char *method,
                 const char *path,
                 const char *body,
                 struct ovhactl_answer *ret)
{
    CURL *curl = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    char url[2048], auth[OVHACTL_TOKEN_MAX + 32];
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_off_t retry = 0;
    CURLcode rc;

    ovha_buf_init(&ret->body);
    ret->status = 0;
    ret->too_big = false;
    ret->retry_after = 0;
    if (curl == NULL) {
        ovhactl_err("cannot initialise libcurl");
        return OVHACTL_UNREACHABLE;
    }
    ovhactl_http_transport(ctl, curl, path, url, sizeof(url));
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, ctl->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, ovhactl_write_cb);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, ret);
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    if (ctl->token != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", ctl->token);
        hdrs = curl_slist_append(hdrs, auth);
        explicit_bzero(auth, sizeof(auth));
    }
    if (body != NULL) {
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)strlen(body));
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    rc = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &ret->status);
    if (curl_easy_getinfo(curl, CURLINFO_RETRY_AFTER, &retry) == CURLE_OK &&
        retry > 0) {
        ret->retry_after = retry > 3600 ? 3600 : (long)retry;
    }
    curl_easy_cleanup(curl);
    curl_slist_free_all(hdrs);
    if (ret->too_big) {
        ovhactl_err("answer from the node is larger than %u bytes",
                    OVHACTL_MAX_ANSWER);
        ovha_buf_free(&ret->body);
        return OVHACTL_UNREACHABLE;
    }
    if (rc != CURLE_OK) {
        char esc[CURL_ERROR_SIZE * 4];
        if (ctl->server == NULL) {
            /* curl's own buffer speaks of "localhost port 80": misleading
             * for a unix socket, so only its error class is shown. */
            ovhactl_err("cannot reach the node at %s: %s", ctl->socket,
                        curl_easy_strerror(rc));
        } else {
            ovhactl_err("cannot reach the node at %s: %s", ctl->server,
                        ovhactl_escape(
                            *errbuf != '\0' ? errbuf : curl_easy_strerror(rc),
                            false, esc, sizeof(esc)));
        }
        ovha_buf_free(&ret->body);
        return OVHACTL_UNREACHABLE;
    }
    return 0;
}

json_t *ovhactl_parse(const struct ovhactl_answer *a)
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

/* A 503: the node cannot serve this now. A membership change sent to a
 * follower names the leader: that is an answer ("ask there", exit 1, which
 * scripts already rely on), not unavailability. */
static int ovhactl_fail_503(const struct ovhactl_answer *a, json_t *j)
{
    json_t *lid = j != NULL ? json_object_get(j, "leader_id") : NULL;
    char esc[512];

    if (json_is_integer(lid) && json_integer_value(lid) > 0) {
        const char *laddr =
            json_string_value(json_object_get(j, "leader_address"));
        ovhactl_err("leader is %" JSON_INTEGER_FORMAT " at %s",
                    json_integer_value(lid),
                    ovhactl_escape(laddr != NULL ? laddr : "?", true, esc,
                                   sizeof(esc)));
        return OVHACTL_FAILED;
    }
    if (json_is_integer(lid)) {
        ovhactl_err("no leader is known right now");
    }
    ovhactl_err("the node is unavailable; retry in %ld s",
                a->retry_after > 0 ? a->retry_after : 1L);
    return OVHACTL_UNAVAILABLE;
}

int ovhactl_fail(const struct ovhactl *ctl, const struct ovhactl_answer *a)
{
    json_t *j = ovhactl_parse(a);
    const char *msg =
        j != NULL ? json_string_value(json_object_get(j, "error")) : NULL;
    char esc[512];
    int rv = OVHACTL_FAILED;

    if (msg != NULL) {
        ovhactl_err("%s", ovhactl_escape(msg, false, esc, sizeof(esc)));
    } else {
        ovhactl_err("the node answered HTTP %ld", a->status);
    }
    if (a->status == 401 && ctl->token != NULL) {
        ovhactl_err("not authenticated: the node does not know the token in %s",
                    ctl->token_file);
        rv = OVHACTL_UNAUTHORIZED;
    } else if (a->status == 401) {
        ovhactl_err(
            "not authenticated: give a token with --token-file FILE (or "
            "$OVHA_TOKEN_FILE)%s",
            ctl->server != NULL ? " or a client certificate with --cert/--key"
                                : ", or run as root or the daemon's user");
        rv = OVHACTL_UNAUTHORIZED;
    } else if (a->status == 403) {
        ovhactl_err("not authorized: this needs a higher role");
        rv = OVHACTL_UNAUTHORIZED;
    } else if (a->status == 503) {
        rv = ovhactl_fail_503(a, j);
    }
    json_decref(j);
    return rv;
}

void ovhactl_print_raw(const struct ovhactl_answer *a)
{
    fwrite(a->body.data != NULL ? a->body.data : "", 1, a->body.len, stdout);
    if (a->body.len == 0 || a->body.data[a->body.len - 1] != '\n') {
        fputc('\n', stdout);
    }
}

int ovhactl_call(struct ovhactl *ctl,
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
        rv = ovhactl_fail(ctl, &a);
        ovha_buf_free(&a.body);
        return rv;
    }
    if (ctl->json) {
        ovhactl_print_raw(&a);
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

int ovhactl_send(struct ovhactl *ctl,
                 const char *method,
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
    rv = ovhactl_call(ctl, method, path, body, ret_json);
    free(body);
    return rv;
}

int ovhactl_post(struct ovhactl *ctl,
                 const char *path,
                 json_t *req,
                 json_t **ret_json)
{
    return ovhactl_send(ctl, "POST", path, req, ret_json);
}

int ovhactl_show(struct ovhactl *ctl, const char *path)
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

int ovhactl_query(char *path, size_t size, const char *key, const char *value)
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

int ovhactl_list_cmd(struct ovhactl *ctl,
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
