/* node/answer: the upstream decision API's wire format on ovhad's side.
 *
 * Builds the JSON request body of POST /v1/decide and parses an answer
 * strictly against docs/upstream-openapi.yaml: a wrong type, an unknown
 * member, a bad CIDR, an out-of-range number or `ip` together with `pool`
 * rejects the whole answer (a partly used allow would grant the wrong
 * access). Pure functions: no I/O, no clocks, no logging of values.
 */
#ifndef OVHA_NODE_ANSWER_H
#define OVHA_NODE_ANSWER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "node/decide.h"

#define NODE_ANSWER_MAX_NETS   64
#define NODE_ANSWER_MAX_GROUPS 32
#define NODE_ANSWER_MAX_PEER   64 /* peer_info members sent */

/* A validated answer. */
struct node_answer {
    bool allow;
    char reason[256];        /* "" when absent */
    char client_reason[256]; /* "" when absent */
    char groups[NODE_ANSWER_MAX_GROUPS][64];
    size_t ngroups;
    char ip[16];   /* static IPv4 or "" */
    char pool[64]; /* pool name or "" */
    struct mgmt_net routes[NODE_ANSWER_MAX_NETS];
    size_t nroutes;
    struct mgmt_net iroutes[NODE_ANSWER_MAX_NETS];
    size_t niroutes;
    uint64_t quota_bytes;       /* 0 = absent */
    char quota_period[8];       /* "" when absent */
    uint64_t down_kbps;         /* 0 = absent */
    uint64_t up_kbps;           /* 0 = absent */
    unsigned max_sessions;      /* 0 = absent */
    enum node_excess on_excess; /* DEFAULT when absent */
    uint32_t ttl_s;
};

/* Builds the request body into out (appended). Members per the contract:
 * cn, username (only if req->username is not ""), password (only if
 * req->password is not NULL), real_address {ip, port (0 if absent or not
 * a number)}, peer_info (the env's IV_* and UV_* variables: at most
 * NODE_ANSWER_MAX_PEER, names ≤ 64 bytes and values ≤ 255 bytes, others
 * skipped; invalid UTF-8 skipped), gateway, request_id.
 * Returns 0, -ENOMEM, or -EINVAL for a request a conforming upstream
 * would refuse with 400, so the client is denied without asking: a CN
 * empty, over 255 bytes, not valid UTF-8 or with control characters; a
 * username or password that is not valid UTF-8 or too long (255 / 4096
 * bytes; a username also without control characters); a real_ip that is
 * not an address; a gateway or request_id outside their patterns. */
int node_answer_request_json(const struct node_decision_req *req,
                             const char *gateway,
                             const char *request_id,
                             struct ovha_buf *out);

/* Parses and validates body (len bytes, need not be NUL-terminated).
 * Returns 0, or OVHA_EPROTO with a short reason in err that names the
 * member but never its value: "not JSON", "not an object",
 * "decision: missing", "routes[3]: not a CIDR", "ip and pool together",
 * "unknown member", ... On deny, only decision, reason, client_reason
 * and ttl_s are kept (the others are still validated). */
int node_answer_parse(const char *body,
                      size_t len,
                      struct node_answer *ret,
                      char *err,
                      size_t errlen);

/* Maps a valid answer to a grant for this gateway. tunnel is the openvpn
 * tunnel network: a static ip outside it (or the network or broadcast
 * address, or the server's .1) turns the grant into a deny with reason
 * "upstream grant invalid: ip outside the tunnel network". netmask comes
 * from tunnel. source is stored as is. */
void node_answer_to_grant(const struct node_answer *a,
                          const struct node_cfg_net *tunnel,
                          const char *source,
                          struct node_grant *ret);

#endif
