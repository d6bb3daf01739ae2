/* enforce/fw: the firewall policy as data, compiled to one nftables table.
 *
 * The policy is a JSON document (docs/firewall.md):
 *
 *   {"version": 1, "default": "accept" | "drop", "isolation": true,
 *    "groups": ["ops", "servers"],
 *    "rules": [{"name": "ops-ssh", "from": "ops" | "any",
 *               "to": {"group": "servers"} | {"cidr": "100.64.200.0/24"}
 *                     | "any",
 *               "proto": "tcp" | "udp" | "icmp" | "any",
 *               "ports": [22, "8000-8080"], "action": "accept" | "drop"}]}
 *
 * Semantics, for traffic entering from VPN clients (iifname = the tun
 * device), forwarded by the gateway: established/related traffic is
 * accepted; then the rules in order, first match wins; then, when
 * isolation is on, traffic to any client address is dropped ("a client
 * cannot reach another client unless a rule allowed it"); everything else
 * gets "default". Traffic that does not enter from the tun device is not
 * touched. IPv4 and IPv6 alike.
 *
 * What is ours: exactly one nftables table (family inet, name "ovha" by
 * default). enf_fw_apply replaces it whole in one atomic transaction;
 * no other table, chain or set is ever changed or looked into.
 * Group membership lives in named sets (one per group and family, plus
 * one set of all clients per family), so a client connecting or
 * disconnecting is an element update (enf_fw_member_add/del), not a
 * ruleset rebuild.
 *
 * Threading: calls that reach the kernel block (a netlink transaction,
 * milliseconds for a big table): the node runs them in a uv_queue_work
 * job, never on the loop. One enf_fw object is used by one thread at a
 * time. The pure functions (parse, explain, compile) are reentrant.
 *
 * Backends: "linux" (libnftables for the table, libnftnl batches for
 * element updates, in the calling thread's network namespace) and "fake"
 * (in memory, records what it was asked; for unit tests of the node).
 */
#ifndef OVHA_ENFORCE_FW_H
#define OVHA_ENFORCE_FW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ENF_FW_TABLE_DEFAULT "ovha"
#define ENF_FW_MAX_GROUPS    64   /* groups in one policy */
#define ENF_FW_MAX_RULES     4096 /* rules in one policy */
#define ENF_FW_MAX_PORTS     64   /* ports/ranges in one rule */
#define ENF_FW_GROUP_LEN     32   /* [a-z0-9_-]{1,31} + NUL */
#define ENF_FW_NAME_LEN      64   /* rule names: [A-Za-z0-9_.-]{1,63} */

enum enf_fw_verdict {
    ENF_FW_ACCEPT = 0,
    ENF_FW_DROP = 1,
};

/* A rule's protocol, and the protocol of a packet given to explain
 * (ENF_FW_PROTO_ANY there means "another protocol": only rules with
 * proto "any" match it). */
enum enf_fw_proto {
    ENF_FW_PROTO_ANY = 0,
    ENF_FW_PROTO_TCP,
    ENF_FW_PROTO_UDP,
    ENF_FW_PROTO_ICMP, /* ICMP for IPv4, ICMPv6 for IPv6 */
};

/* ---- the policy document ------------------------------------------------ */

struct enf_fw_policy;

/* Parses and validates a policy document (len bytes of JSON text; a NUL
 * is not needed). Strict: unknown keys, wrong types, bad CIDRs or ports,
 * undeclared groups in rules, duplicate names are -EINVAL and errbuf
 * names the JSON path ("$.rules[2].ports[0]: ..."). *ret is owned by the
 * caller: enf_fw_policy_free. Returns 0, -EINVAL or -ENOMEM. */
int enf_fw_policy_parse(const char *json,
                        size_t len,
                        struct enf_fw_policy **ret,
                        char *errbuf,
                        size_t errlen);
void enf_fw_policy_free(struct enf_fw_policy *p);

/* ---- members ------------------------------------------------------------ */

/* One live client: its VPN address (IPv4 or IPv6, no prefix) and its
 * groups. Groups the policy does not declare are ignored (no set exists
 * for them); they count once a policy declaring them is applied. The
 * strings are borrowed for the duration of the call. */
struct enf_fw_member {
    const char *ip;
    const char *const *groups;
    size_t ngroups;
};

/* ---- pure functions ----------------------------------------------------- */

/* The decision for the first packet of a connection from src to dst
 * (port is ignored unless proto is TCP or UDP), with the reason:
 * "rule <name>", "isolation", "default", or "not from a client" (src is
 * not a member's address: the table only filters traffic entering from
 * the tun device, and openvpn only forwards a client's own source
 * address, so such traffic did not come from a client). */
struct enf_fw_explanation {
    enum enf_fw_verdict verdict;
    char reason[ENF_FW_NAME_LEN + 8];
};

/* Returns 0, or -EINVAL (bad address, bad member list; errbuf says). */
int enf_fw_explain(const struct enf_fw_policy *p,
                   const struct enf_fw_member *members,
                   size_t nmembers,
                   const char *src,
                   const char *dst,
                   enum enf_fw_proto proto,
                   uint16_t port,
                   struct enf_fw_explanation *ret,
                   char *errbuf,
                   size_t errlen);

/* The nft script enf_fw_apply would run for this policy and member list
 * on device dev into table `table` (NULL: ENF_FW_TABLE_DEFAULT): one
 * buffer that creates, deletes and re-creates the table, then fills the
 * sets. *ret_text is NUL-terminated, owned by the caller (free()).
 * Returns 0, -EINVAL (bad member address, an address twice, bad dev or
 * table name; errbuf says) or -ENOMEM. */
int enf_fw_compile(const struct enf_fw_policy *p,
                   const struct enf_fw_member *members,
                   size_t nmembers,
                   const char *dev,
                   const char *table,
                   char **ret_text,
                   char *errbuf,
                   size_t errlen);

/* ---- the enforcing object ----------------------------------------------- */

struct enf_fw_config {
    const char *backend; /* "linux" or "fake" */
    const char *table;   /* NULL: ENF_FW_TABLE_DEFAULT; [a-z0-9_]{1,31} */
    const char *dev;     /* the tun device clients enter from */
};

struct enf_fw_stats {
    uint64_t applies;         /* successful enf_fw_apply calls */
    uint64_t element_txns;    /* successful member add/del transactions */
    uint64_t element_updates; /* set elements added + deleted by them */
    uint64_t checks;          /* enf_fw_check calls that could read */
    uint64_t drifts;          /* checks that found the table altered */
    uint64_t repairs;         /* applies after a drift or failed update */
    uint64_t errors;          /* failed kernel transactions or reads */
    uint64_t members;         /* members in the model now */
};

struct enf_fw;

/* Returns 0, -EINVAL (unknown backend, bad table or dev name), -ENOMEM or
 * the backend's error. Nothing is changed in the kernel. */
int enf_fw_new(const struct enf_fw_config *cfg,
               struct enf_fw **ret,
               char *errbuf,
               size_t errlen);
/* Frees the object; our table stays in the kernel (enf_fw_remove first
 * to take it away). Accepts NULL. */
void enf_fw_free(struct enf_fw *fw);

/* Replaces our table with the compilation of p and the member list, in
 * one atomic transaction: traffic sees either the old table or the new
 * one. The object keeps what it needs (the group names and the member
 * list), so p may be freed afterwards. On failure the kernel keeps the
 * old table and the object its old model. Returns 0, -EINVAL (bad member
 * list), -ENOMEM, or the kernel's error (errbuf has nft's message). */
int enf_fw_apply(struct enf_fw *fw,
                 const struct enf_fw_policy *p,
                 const struct enf_fw_member *members,
                 size_t nmembers,
                 char *errbuf,
                 size_t errlen);

/* Adds a member, or changes the groups of an existing one, with set
 * element updates only (one transaction). No change is no transaction.
 * Returns 0, -EAGAIN (nothing applied yet), -EINVAL (bad address), or the
 * kernel's error: then the model is unchanged and enf_fw_check reports
 * the object out of sync until the next apply. */
int enf_fw_member_add(struct enf_fw *fw,
                      const char *ip,
                      const char *const *groups,
                      size_t ngroups,
                      char *errbuf,
                      size_t errlen);
/* Removes a member (an unknown address is not an error). Same returns. */
int enf_fw_member_del(struct enf_fw *fw,
                      const char *ip,
                      char *errbuf,
                      size_t errlen);

/* Our table as the kernel lists it (nft's text form), for the admin API
 * and tests. *ret_text is owned by the caller (free()). Returns 0,
 * -ENOENT (no table of ours) or the backend's error. */
int enf_fw_compiled(struct enf_fw *fw, char **ret_text);

/* Compares the kernel with what we last applied plus the member updates
 * since: the table exists, its chains, rules and set declarations are
 * those the last apply installed (handles and counter values aside), and
 * every set holds exactly the elements the model says. *ret_in_sync is
 * false after any hand alteration (deleted table, rule added or deleted,
 * set flushed, element added), before the first apply and after a failed
 * member update; why says what differs. The reconciler then calls
 * enf_fw_apply again. Returns 0 or the backend's error (reading failed). */
int enf_fw_check(struct enf_fw *fw,
                 bool *ret_in_sync,
                 char *why,
                 size_t whylen);

/* Deletes our table (absent is fine), e.g. at shutdown. */
int enf_fw_remove(struct enf_fw *fw, char *errbuf, size_t errlen);

void enf_fw_get_stats(const struct enf_fw *fw, struct enf_fw_stats *ret);

#endif
