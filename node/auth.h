/* node/auth: who may call the admin API, and with which role.
 *
 * Credentials, checked in this order:
 *  - "Authorization: Bearer <token>" on either listener. The tokens file
 *    holds only the SHA-256 of each token: tokens are 32 random bytes
 *    (ovhactl token new), so a plain hash is as strong as a salted one and
 *    a stolen file yields no usable token. Subject "token:<name>".
 *  - on the TLS listener, a client certificate verified against
 *    api.client_ca whose CN has a "cert" line. Subject "cert:<CN>".
 *  - on the unix socket (mode 0600), a peer running as root or as ovhad's
 *    own user is the local admin. Subject "uid:<N>".
 * Anything else is 401; a role below the operation's is 403. Both happen
 * before the handler runs, so nothing changes.
 *
 * Tokens file (api.tokens_file), one entry per line, '#' comments:
 *     token <name> <role> sha256:<64 hex>
 *     cert  <CN>   <role>
 */
#ifndef OVHA_NODE_AUTH_H
#define OVHA_NODE_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

struct node;
struct node_http;

enum node_role {
    NODE_ROLE_OPEN = 0, /* no credentials needed (probes) */
    NODE_ROLE_VIEWER,
    NODE_ROLE_OPERATOR,
    NODE_ROLE_ADMIN,
};

#define NODE_AUTH_NAME_MAX 65 /* names and CNs: [A-Za-z0-9._@-]{1,64} */

struct node_auth_entry {
    bool cert; /* a certificate CN, else a token */
    char name[NODE_AUTH_NAME_MAX];
    enum node_role role;
    uint8_t hash[OVHA_SHA256_LEN]; /* tokens only */
};

struct node_auth {
    struct node_auth_entry *entries;
    size_t n;
};

/* Parses a tokens file's text. Errors name the line. Returns 0 or
 * -EINVAL with err set; *ret is then empty. */
int node_auth_parse(const char *text,
                    struct node_auth *ret,
                    char *err,
                    size_t errlen);
/* Reads and parses path; a file others may read or write is refused
 * (-EPERM), as ssh does with keys. path NULL or "": no entries. */
int node_auth_load(const char *path,
                   struct node_auth *ret,
                   char *err,
                   size_t errlen);
void node_auth_clear(struct node_auth *a);

const char *node_role_name(enum node_role r);
int node_role_parse(const char *s, enum node_role *ret);

/* The role an operation needs (the table in auth.c; docs/openapi.yaml
 * says the same per operation as x-ovha-role). */
enum node_role node_auth_required(const char *method, const char *path);
/* True when the operation changes state, so its answer is audited. */
bool node_auth_is_write(const char *method, const char *path);

/* The entry for a presented bearer token, or NULL. Compares in constant
 * time per entry. */
const struct node_auth_entry *node_auth_find_token(const struct node_auth *a,
                                                   const char *token);
/* The "cert" entry for a certificate CN, or NULL. */
const struct node_auth_entry *node_auth_find_cert(const struct node_auth *a,
                                                  const char *cn);

/* Installs the checks and the write audit on h for node n (which must
 * outlive h; n->auth is read on every request so a reload applies). */
void node_auth_install(struct node *n, struct node_http *h);

#endif
