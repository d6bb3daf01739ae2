/* node/auth: the tokens file, the role table, and the checks the HTTP
 * layer runs before every handler (see auth.h). */
#include "node/auth.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node/node.h"

#define NODE_AUTH_FILE_MAX (1024 * 1024)

static const char *const node_role_names[] = { "open", "viewer", "operator",
                                               "admin" };

const char *node_role_name(enum node_role r)
{
    return (unsigned)r < 4 ? node_role_names[r] : "?";
}

int node_role_parse(const char *s, enum node_role *ret)
{
    for (unsigned i = NODE_ROLE_VIEWER; i <= NODE_ROLE_ADMIN; i++) {
        if (strcmp(s, node_role_names[i]) == 0) {
            *ret = (enum node_role)i;
            return 0;
        }
    }
    return -EINVAL;
}

/* ---- the role table ---------------------------------------------------- */

/* Operations whose role is not the default (GET: viewer; other methods:
 * admin). A path ending in '*' is a prefix. */
static const struct {
    const char *method;
    const char *path;
    enum node_role role;
} node_auth_table[] = {
    { "GET", "/healthz", NODE_ROLE_OPEN },
    { "GET", "/readyz", NODE_ROLE_OPEN },
    { "POST", "/v1/policy/firewall/explain", NODE_ROLE_VIEWER },
    { "POST", "/v1/sessions/kill", NODE_ROLE_OPERATOR },
    { "POST", "/v1/gateways/*", NODE_ROLE_OPERATOR },
    { "POST", "/v1/leases/*", NODE_ROLE_OPERATOR },
};

static bool node_auth_path_is(const char *pattern, const char *path)
{
    size_t n = strlen(pattern);
    if (n > 0 && pattern[n - 1] == '*') {
        return strncmp(pattern, path, n - 1) == 0;
    }
    return strcmp(pattern, path) == 0;
}

static bool node_auth_is_read_method(const char *method)
{
    return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
}

enum node_role node_auth_required(const char *method, const char *path)
{
    size_t n = sizeof(node_auth_table) / sizeof(node_auth_table[0]);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(node_auth_table[i].method, method) == 0 &&
            node_auth_path_is(node_auth_table[i].path, path)) {
            return node_auth_table[i].role;
        }
    }
    return node_auth_is_read_method(method) ? NODE_ROLE_VIEWER
                                            : NODE_ROLE_ADMIN;
}

bool node_auth_is_write(const char *method, const char *path)
{
    return !node_auth_is_read_method(method) &&
           node_auth_required(method, path) > NODE_ROLE_VIEWER;
}

/* ---- the tokens file --------------------------------------------------- */

static bool node_auth_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= NODE_AUTH_NAME_MAX) {
        return false;
    }
    for (; *s != '\0'; s++) {
        if (!isalnum((unsigned char)*s) && strchr("._@-", *s) == NULL) {
            return false;
        }
    }
    return true;
}

static int node_auth_hex_hash(const char *s, uint8_t out[OVHA_SHA256_LEN])
{
    static const char prefix[] = "sha256:";
    if (strncmp(s, prefix, sizeof(prefix) - 1) != 0) {
        return -EINVAL;
    }
    s += sizeof(prefix) - 1;
    if (strlen(s) != 2 * OVHA_SHA256_LEN) {
        return -EINVAL;
    }
    for (size_t i = 0; i < OVHA_SHA256_LEN; i++) {
        unsigned v;
        if (!isxdigit((unsigned char)s[2 * i]) ||
            !isxdigit((unsigned char)s[2 * i + 1]) ||
            sscanf(s + 2 * i, "%2x", &v) != 1) {
            return -EINVAL;
        }
        out[i] = (uint8_t)v;
    }
    return 0;
}

/* One non-comment line: its words are kind, name, role[, hash]. */
static int node_auth_parse_line(char *line,
                                struct node_auth_entry *e,
                                const char **ret_why)
{
    char *save = NULL;
    char *w[5] = { 0 };
    size_t n = 0;
    for (char *t = strtok_r(line, " \t\r", &save); t != NULL && n < 5;
         t = strtok_r(NULL, " \t\r", &save)) {
        w[n++] = t;
    }
    memset(e, 0, sizeof(*e));
    if (n < 3) {
        *ret_why = "expected: token NAME ROLE sha256:HEX | cert CN ROLE";
        return -EINVAL;
    }
    if (strcmp(w[0], "token") != 0 && strcmp(w[0], "cert") != 0) {
        *ret_why = "the first word must be token or cert";
        return -EINVAL;
    }
    e->cert = w[0][0] == 'c';
    if (!node_auth_name_ok(w[1])) {
        *ret_why = "the name must be 1-64 of [A-Za-z0-9._@-]";
        return -EINVAL;
    }
    ovha_strlcpy(e->name, w[1], sizeof(e->name));
    if (node_role_parse(w[2], &e->role) != 0) {
        *ret_why = "the role must be viewer, operator or admin";
        return -EINVAL;
    }
    if (e->cert ? n != 3 : (n != 4 || node_auth_hex_hash(w[3], e->hash) != 0)) {
        *ret_why = e->cert ? "a cert line has three words"
                           : "a token line ends with sha256:<64 hex>";
        return -EINVAL;
    }
    return 0;
}

static int node_auth_add(struct node_auth *a, const struct node_auth_entry *e)
{
    struct node_auth_entry *grown =
        ovha_realloc(a->entries, (a->n + 1) * sizeof(*grown));
    if (grown == NULL) {
        return -ENOMEM;
    }
    a->entries = grown;
    a->entries[a->n++] = *e;
    return 0;
}

int node_auth_parse(const char *text,
                    struct node_auth *ret,
                    char *err,
                    size_t errlen)
{
    char *copy = ovha_strdup(text);
    char *save = NULL;
    unsigned lineno = 0;
    int rv = copy != NULL ? 0 : -ENOMEM;

    memset(ret, 0, sizeof(*ret));
    for (char *line = copy != NULL ? strtok_r(copy, "\n", &save) : NULL;
         rv == 0 && line != NULL; line = strtok_r(NULL, "\n", &save)) {
        struct node_auth_entry e;
        const char *why = "";
        lineno++;
        line += strspn(line, " \t");
        if (*line == '#' || line[strspn(line, " \t\r")] == '\0') {
            continue;
        }
        rv = node_auth_parse_line(line, &e, &why);
        if (rv != 0) {
            snprintf(err, errlen, "line %u: %s", lineno, why);
        } else {
            rv = node_auth_add(ret, &e);
        }
    }
    ovha_free(copy);
    if (rv != 0) {
        node_auth_clear(ret);
    }
    return rv;
}

int node_auth_load(const char *path,
                   struct node_auth *ret,
                   char *err,
                   size_t errlen)
{
    struct stat st;
    FILE *f;
    char *text;
    size_t n;
    int rv;

    memset(ret, 0, sizeof(*ret));
    if (path == NULL || path[0] == '\0') {
        return 0;
    }
    f = fopen(path, "re");
    if (f == NULL) {
        rv = -errno;
        snprintf(err, errlen, "%s: %s", path, ovha_strerror(rv));
        return rv;
    }
    if (fstat(fileno(f), &st) != 0 || (st.st_mode & 077) != 0 ||
        st.st_size > NODE_AUTH_FILE_MAX) {
        fclose(f);
        snprintf(err, errlen,
                 "%s: must be a file of at most 1 MiB that only its owner "
                 "may read or write (chmod 600)",
                 path);
        return -EPERM;
    }
    text = ovha_malloc((size_t)st.st_size + 1);
    if (text == NULL) {
        fclose(f);
        return -ENOMEM;
    }
    n = fread(text, 1, (size_t)st.st_size, f);
    text[n] = '\0';
    fclose(f);
    rv = node_auth_parse(text, ret, err, errlen);
    explicit_bzero(text, n);
    ovha_free(text);
    return rv;
}

void node_auth_clear(struct node_auth *a)
{
    ovha_free(a->entries);
    a->entries = NULL;
    a->n = 0;
}

const struct node_auth_entry *node_auth_find_token(const struct node_auth *a,
                                                   const char *token)
{
    uint8_t h[OVHA_SHA256_LEN];
    const struct node_auth_entry *found = NULL;
    ovha_sha256(token, strlen(token), h);
    for (size_t i = 0; i < a->n; i++) {
        const struct node_auth_entry *e = &a->entries[i];
        uint8_t diff = 0;
        for (size_t k = 0; k < OVHA_SHA256_LEN; k++) {
            diff |= (uint8_t)(e->hash[k] ^ h[k]);
        }
        if (!e->cert && diff == 0) {
            found = e;
        }
    }
    return found;
}

const struct node_auth_entry *node_auth_find_cert(const struct node_auth *a,
                                                  const char *cn)
{
    for (size_t i = 0; i < a->n; i++) {
        if (a->entries[i].cert && strcmp(a->entries[i].name, cn) == 0) {
            return &a->entries[i];
        }
    }
    return NULL;
}

/* ---- the HTTP hooks ---------------------------------------------------- */

/* Who is calling, by the first credential present. Returns 0 with role
 * and subject set, or 401 with msg. */
static unsigned node_auth_identify(struct node *n,
                                   struct node_http_req *r,
                                   enum node_role *ret_role,
                                   char *msg,
                                   size_t msglen)
{
    const char *hdr = node_http_req_header(r, "Authorization");
    char subject[128], cn[NODE_AUTH_NAME_MAX];
    uid_t uid;

    if (hdr != NULL) {
        const struct node_auth_entry *e = NULL;
        if (strncasecmp(hdr, "Bearer ", 7) == 0) {
            e = node_auth_find_token(&n->auth, hdr + 7);
        }
        if (e == NULL) {
            snprintf(msg, msglen, "invalid bearer token");
            return 401;
        }
        snprintf(subject, sizeof(subject), "token:%s", e->name);
        *ret_role = e->role;
    } else if (node_http_req_is_tls(r)) {
        const struct node_auth_entry *e = NULL;
        if (node_http_req_client_cn(r, cn, sizeof(cn)) == 0) {
            e = node_auth_find_cert(&n->auth, cn);
        }
        if (e == NULL) {
            snprintf(msg, msglen,
                     "a bearer token or a known client "
                     "certificate is required");
            return 401;
        }
        snprintf(subject, sizeof(subject), "cert:%s", e->name);
        *ret_role = e->role;
    } else if (node_http_req_peer_uid(r, &uid) == 0 &&
               (uid == 0 || uid == geteuid())) {
        snprintf(subject, sizeof(subject), "uid:%u", (unsigned)uid);
        *ret_role = NODE_ROLE_ADMIN;
    } else {
        snprintf(msg, msglen, "a bearer token is required");
        return 401;
    }
    node_http_req_set_subject(r, subject);
    return 0;
}

static unsigned node_auth_check_cb(struct node_http_req *r,
                                   void *data,
                                   char *msg,
                                   size_t msglen)
{
    struct node *n = data;
    const char *method = node_http_req_method(r);
    const char *path = node_http_req_path(r);
    enum node_role need = node_auth_required(method, path);
    enum node_role have = NODE_ROLE_OPEN;
    unsigned status;

    if (need == NODE_ROLE_OPEN) {
        return 0;
    }
    status = node_auth_identify(n, r, &have, msg, msglen);
    if (status == 0 && have < need) {
        snprintf(msg, msglen, "role %s may not do this (needs %s)",
                 node_role_name(have), node_role_name(need));
        status = 403;
    }
    if (status != 0) {
        LOG_WARN("api", "%s %s refused (%u): %s", method, path, status, msg);
    }
    return status;
}

/* Every answered write becomes an audit record naming who did it. The
 * write itself may have gone through raft already (with the same actor);
 * this record also covers writes that do not (kill, membership) and
 * refused ones. */
static void node_auth_answered_cb(struct node_http_req *r,
                                  unsigned status,
                                  void *data)
{
    struct node *n = data;
    const char *method = node_http_req_method(r);
    const char *path = node_http_req_path(r);
    char what[PROTO_TEXT_MAX], detail[16];

    if (!node_auth_is_write(method, path)) {
        return;
    }
    snprintf(what, sizeof(what), "%s %s", method, path);
    snprintf(detail, sizeof(detail), "%u", status);
    LOG_INFO("api", "%s by %s: %u", what, node_http_req_subject(r), status);
    if (n->repl == NULL) {
        return;
    }
    int rv = node_repl_audit_append(n->repl, "api", what, detail,
                                    node_http_req_subject(r));
    if (rv != 0) {
        LOG_WARN("api", "audit record for %s by %s: %s", what,
                 node_http_req_subject(r), ovha_strerror(rv));
    }
}

void node_auth_install(struct node *n, struct node_http *h)
{
    node_http_set_auth(h, node_auth_check_cb, node_auth_answered_cb, n);
}
