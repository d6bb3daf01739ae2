/* proto: ovha's wire vocabulary as plain C structs, and its codecs.
 *
 * Layout. proto/ovha.proto is the schema; protoc-c compiles it at build
 * time. The generated protobuf-c structs never leave proto.c: every other
 * module (fsm/, raft/, node/) sees only the plain structs below, filled by
 * proto_*_decode and consumed by proto_*_encode. Strings are fixed-size,
 * NUL-terminated arrays so that a decoded command needs no per-field frees;
 * the only heap parts are UsageCharge entries and a policy body, released by
 * proto_cmd_clear.
 *
 * Decoding is the trust boundary: proto_cmd_decode checks sizes, character
 * sets and enum ranges, so the FSM only has to check meaning (does the pool
 * exist, does the CIDR parse). Untrusted bytes never crash a decoder; they
 * give OVHA_EPROTO.
 *
 * Three messages travel on the wire:
 *  - Command: the Raft log entry (a versioned envelope and one body);
 *  - Result: what applying a Command decided (also stored by the FSM for
 *    idempotent replays);
 *  - FwdRequest / FwdResponse: the forwarding RPC from a follower's node to
 *    the leader's, carrying an encoded Command and its Result.
 */
#ifndef OVHA_PROTO_H
#define OVHA_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_VERSION 1

/* Sizes include the terminating NUL. A longer field is malformed. */
#define PROTO_ID_MAX     64    /* gateway ids, pool and policy names, actor */
#define PROTO_CN_MAX     256   /* certificate common name */
#define PROTO_ADDR_MAX   64    /* IP, CIDR or address:port text */
#define PROTO_MAC_MAX    18    /* "aa:bb:cc:dd:ee:ff" + NUL */
#define PROTO_GROUPS_MAX 512   /* a session's groups, comma separated */
#define PROTO_PERIOD_MAX 16    /* usage period id, e.g. "2026-11" */
#define PROTO_TEXT_MAX   256   /* reasons, audit subject and detail */
#define PROTO_POLICY_MAX 65536 /* policy body bytes */
#define PROTO_USAGE_MAX  10000 /* entries in one UsageCharge */
#define PROTO_CMD_MAX    (4 * 1024 * 1024) /* encoded command bytes */

enum proto_gw_state {
    PROTO_GW_ACTIVE = 0,
    PROTO_GW_STANDBY = 1,
    PROTO_GW_DRAINING = 2,
    PROTO_GW_DOWN = 3,
};

enum proto_on_excess {
    PROTO_EXCESS_EVICT_OLDEST = 0,
    PROTO_EXCESS_REFUSE = 1,
};

enum proto_cmd_kind {
    PROTO_CMD_NONE = 0,
    PROTO_CMD_SESSION_OPEN,
    PROTO_CMD_SESSION_ESTABLISHED,
    PROTO_CMD_SESSION_CLOSE,
    PROTO_CMD_USAGE_CHARGE,
    PROTO_CMD_GATEWAY_HEARTBEAT,
    PROTO_CMD_GATEWAY_SET_STATE,
    PROTO_CMD_LEASE_RESERVE,
    PROTO_CMD_LEASE_RELEASE,
    PROTO_CMD_POOL_PUT,
    PROTO_CMD_POLICY_PUT,
    PROTO_CMD_POLICY_DELETE,
    PROTO_CMD_SUBNET_REGISTER,
    PROTO_CMD_SUBNET_RELEASE,
    PROTO_CMD_AUDIT_APPEND,
    PROTO_CMD_MAC_REGISTER,
    PROTO_CMD_KIND_MAX,
};

struct proto_session_open {
    char cn[PROTO_CN_MAX];
    uint64_t cid;
    char real_addr[PROTO_ADDR_MAX];
    char pool4[PROTO_ID_MAX]; /* "" = no IPv4 address */
    char pool6[PROTO_ID_MAX]; /* "" = no IPv6 address */
    uint32_t max_sessions;    /* 0 means 1 */
    enum proto_on_excess on_excess;
    char period[PROTO_PERIOD_MAX];
    uint64_t quota_bytes;          /* 0 = no quota */
    char groups[PROTO_GROUPS_MAX]; /* "a,b": names [A-Za-z0-9_.-] */
    bool quota_admit; /* over quota: admit (throttled) instead of refuse */
};

struct proto_session_established {
    uint64_t session_id;
};

struct proto_session_close {
    uint64_t session_id;
    char reason[PROTO_TEXT_MAX];
};

struct proto_usage_entry {
    uint64_t session_id;
    char cn[PROTO_CN_MAX];
    uint64_t bytes_in;
    uint64_t bytes_out;
};

struct proto_usage_charge {
    uint64_t seq;
    char period[PROTO_PERIOD_MAX];
    struct proto_usage_entry *entries; /* owned; proto_cmd_clear frees */
    size_t nentries;
};

struct proto_gateway_heartbeat {
    char addr[PROTO_ADDR_MAX];
};

struct proto_gateway_set_state {
    char gateway_id[PROTO_ID_MAX];
    enum proto_gw_state state;
    bool force; /* DRAINING even if no other gateway is ACTIVE */
};

struct proto_lease {
    char cn[PROTO_CN_MAX];
    char ip[PROTO_ADDR_MAX];
};

struct proto_pool_put {
    char name[PROTO_ID_MAX];
    char cidr[PROTO_ADDR_MAX];
    uint64_t lease_ttl_ms;
};

struct proto_policy_put {
    char name[PROTO_ID_MAX];
    char *body; /* owned, NUL-terminated; proto_cmd_clear frees */
};

struct proto_policy_delete {
    char name[PROTO_ID_MAX];
};

struct proto_subnet {
    char cidr[PROTO_ADDR_MAX];
    char owner_cn[PROTO_CN_MAX]; /* register only */
};

struct proto_mac_register {
    char mac[PROTO_MAC_MAX];
    uint64_t session_id;
};

struct proto_audit_append {
    char action[PROTO_ID_MAX];
    char subject[PROTO_TEXT_MAX];
    char detail[PROTO_TEXT_MAX];
};

/* The Raft log command: envelope plus one body selected by kind. */
struct proto_cmd {
    uint32_t version;           /* PROTO_VERSION */
    uint64_t req_id;            /* idempotence key; 0 = none */
    char gateway[PROTO_ID_MAX]; /* proposing gateway */
    uint64_t ts_ms;             /* proposer's clock */
    char actor[PROTO_ID_MAX];   /* operator for admin writes, else "" */
    enum proto_cmd_kind kind;
    union {
        struct proto_session_open session_open;
        struct proto_session_established session_established;
        struct proto_session_close session_close;
        struct proto_usage_charge usage_charge;
        struct proto_gateway_heartbeat gateway_heartbeat;
        struct proto_gateway_set_state gateway_set_state;
        struct proto_lease lease_reserve;
        struct proto_lease lease_release;
        struct proto_pool_put pool_put;
        struct proto_policy_put policy_put;
        struct proto_policy_delete policy_delete;
        struct proto_subnet subnet_register;
        struct proto_subnet subnet_release;
        struct proto_audit_append audit_append;
        struct proto_mac_register mac_register;
    } u;
};

/* ---- results ----------------------------------------------------------- */

enum proto_status {
    PROTO_STATUS_OK = 0,
    PROTO_STATUS_REFUSED = 1,
};

/* Why a command was refused. Stable numbers: they are stored and sent. */
enum proto_reason {
    PROTO_R_NONE = 0,
    PROTO_R_MALFORMED = 1,           /* bytes do not decode or fail checks */
    PROTO_R_UNSUPPORTED_VERSION = 2, /* envelope version is not ours */
    PROTO_R_UNKNOWN_GATEWAY = 3,     /* gateway never heartbeated */
    PROTO_R_GATEWAY_NOT_ACTIVE = 4,  /* standby, draining or down */
    PROTO_R_UNKNOWN_SESSION = 5,
    PROTO_R_WRONG_GATEWAY = 6,    /* session lives on another gateway */
    PROTO_R_SESSION_ORPHANED = 7, /* its gateway went down */
    PROTO_R_SESSION_LIMIT = 8,    /* max_sessions reached, on_excess=refuse */
    PROTO_R_POOL_EXHAUSTED = 9,
    PROTO_R_NO_POOL = 10, /* named pool missing or wrong family */
    PROTO_R_QUOTA_EXCEEDED = 11,
    PROTO_R_INVALID = 12, /* a value does not parse (IP, CIDR) */
    PROTO_R_IP_NOT_IN_POOL = 13,
    PROTO_R_IP_TAKEN = 14, /* leased to another CN, unexpired */
    PROTO_R_NOT_FOUND = 15,
    PROTO_R_IN_USE = 16,
    PROTO_R_OVERLAP = 17,
    PROTO_R_NO_BODY = 18,     /* envelope without a body */
    PROTO_R_LAST_ACTIVE = 19, /* draining it would leave no active one */
    PROTO_R_TOO_MANY = 20,    /* a per-session cap (MACs) is reached */
    PROTO_R_MAX,
};

enum proto_ref_kind {
    PROTO_REF_EVICTED = 1,    /* session closed to make room */
    PROTO_REF_OVER_QUOTA = 2, /* live session whose CN is over quota */
    PROTO_REF_ORPHANED = 3,   /* session orphaned by a gateway going down */
    PROTO_REF_EXPIRED = 4,    /* orphaned session dropped, lease reclaimed */
};

struct proto_session_ref {
    enum proto_ref_kind kind;
    uint64_t session_id;
    char cn[PROTO_CN_MAX];
    char gateway[PROTO_ID_MAX];
};

#define PROTO_RESULT_MAX_REFS 32

/* What applying one command decided. Plain data, no heap. */
struct proto_result {
    enum proto_status status;
    enum proto_reason reason;
    char detail[PROTO_TEXT_MAX]; /* human context for a refusal */
    bool replayed;               /* a retried req_id: the first result */
    uint64_t session_id;         /* SessionOpen: the new session */
    char ip4[PROTO_ADDR_MAX];
    char ip6[PROTO_ADDR_MAX];
    bool takeover; /* SessionOpen took over an orphaned session */
    uint64_t old_session_id;
    char old_gateway[PROTO_ID_MAX];
    bool duplicate;     /* UsageCharge seq already charged */
    uint64_t audit_seq; /* last audit record this command appended */
    uint64_t count;     /* charged entries, orphaned sessions, ... */
    struct proto_session_ref refs[PROTO_RESULT_MAX_REFS];
    size_t nrefs;
    uint64_t refs_total; /* > nrefs when the list was truncated */
    bool over_quota;     /* SessionOpen admitted a CN over its quota */
};

/* ---- forwarding RPC ---------------------------------------------------- */

struct proto_fwd_req {
    uint64_t req_id;
    char from[PROTO_ID_MAX];
    uint8_t *cmd; /* encoded proto_cmd; owned after decode */
    size_t cmd_len;
};

struct proto_fwd_resp {
    uint64_t req_id;
    int32_t status; /* 0, OVHA_ENOTLEADER, OVHA_EUNKNOWN, -errno */
    char leader_hint[PROTO_ADDR_MAX];
    bool has_result;
    struct proto_result result;
};

/* ---- codecs -------------------------------------------------------------
 * Encoders allocate *ret_buf with ovha_malloc; the caller frees it with
 * ovha_free. They return 0, -EINVAL for a struct that would not decode
 * (string not terminated in its array, bad enum) or -ENOMEM.
 *
 * Decoders fill *ret and return 0, OVHA_EPROTO for malformed input or
 * -ENOMEM. On error nothing needs to be released. */
int proto_cmd_encode(const struct proto_cmd *cmd,
                     uint8_t **ret_buf,
                     size_t *ret_len);
int proto_cmd_decode(const uint8_t *buf, size_t len, struct proto_cmd *ret);
/* Releases the heap parts of a decoded (or hand-built) command and zeroes
 * it. Hand-built commands must allocate entries/body with ovha_malloc. */
void proto_cmd_clear(struct proto_cmd *cmd);

int proto_result_encode(const struct proto_result *res,
                        uint8_t **ret_buf,
                        size_t *ret_len);
int proto_result_decode(const uint8_t *buf,
                        size_t len,
                        struct proto_result *ret);

int proto_fwd_req_encode(const struct proto_fwd_req *req,
                         uint8_t **ret_buf,
                         size_t *ret_len);
/* ret->cmd is allocated; release with proto_fwd_req_clear. */
int proto_fwd_req_decode(const uint8_t *buf,
                         size_t len,
                         struct proto_fwd_req *ret);
void proto_fwd_req_clear(struct proto_fwd_req *req);
int proto_fwd_resp_encode(const struct proto_fwd_resp *resp,
                          uint8_t **ret_buf,
                          size_t *ret_len);
int proto_fwd_resp_decode(const uint8_t *buf,
                          size_t len,
                          struct proto_fwd_resp *ret);

/* Names for logs and the audit trail. Never NULL. */
const char *proto_cmd_kind_name(enum proto_cmd_kind kind);
const char *proto_reason_name(enum proto_reason reason);
const char *proto_gw_state_name(enum proto_gw_state state);

/* True if s is a valid gateway/pool/policy id: [A-Za-z0-9_.:-]{1,63}. */
bool proto_id_valid(const char *s);

#endif
