/* enforce/fw internals: the parsed policy, the member model, the compiled
 * plan, and the backend interface between the common logic (fw.c,
 * fw_policy.c, fw_compile.c) and the backends (fw_linux.c, fw_fake.c).
 *
 * The interface is message-shaped: replace the whole table with a plan,
 * run one transaction of element updates, read the table back as a
 * normalised skeleton (everything but set elements, handles and counter
 * values) plus the elements of each set. Backends never decide what to
 * change; fw.c does.
 */
#ifndef OVHA_ENFORCE_FW_INT_H
#define OVHA_ENFORCE_FW_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "enforce/fw.h"

#define ENF_FW_SET_LEN   40 /* "g4_" + group name + NUL, with room */
#define ENF_FW_TABLE_LEN 32
#define ENF_FW_DEV_LEN   16 /* IFNAMSIZ */

/* An address or network. family is AF_INET or AF_INET6. */
struct enf_fw_addr {
    uint8_t family;
    uint8_t prefix; /* 32 / 128 for a host */
    uint8_t a[16];
};

struct enf_fw_portrange {
    uint16_t lo;
    uint16_t hi;
};

enum enf_fw_to_kind {
    ENF_FW_TO_ANY = 0,
    ENF_FW_TO_GROUP,
    ENF_FW_TO_CIDR,
};

struct enf_fw_rule {
    char name[ENF_FW_NAME_LEN];
    int from; /* group index, or -1 for any client */
    enum enf_fw_to_kind to_kind;
    int to_group;              /* ENF_FW_TO_GROUP */
    struct enf_fw_addr to_net; /* ENF_FW_TO_CIDR */
    enum enf_fw_proto proto;
    size_t nports; /* 0: every port (or no ports: icmp, any) */
    struct enf_fw_portrange ports[ENF_FW_MAX_PORTS];
    enum enf_fw_verdict action;
};

struct enf_fw_policy {
    enum enf_fw_verdict def;
    bool isolation;
    size_t ngroups;
    char groups[ENF_FW_MAX_GROUPS][ENF_FW_GROUP_LEN];
    size_t nrules;
    struct enf_fw_rule *rules;
};

/* ---- members ------------------------------------------------------------ */

/* A member in the model: its address and a bit per policy group. */
struct enf_fw_mem {
    struct enf_fw_addr addr;
    uint64_t mask;
};

/* Members sorted by address (binary search; inserts move the tail, which
 * for 10,000 members is a few microseconds). */
struct enf_fw_memvec {
    struct enf_fw_mem *v;
    size_t n;
    size_t cap;
};

void enf_fw_memvec_free(struct enf_fw_memvec *mv);
/* Index of addr, or -1. */
long enf_fw_memvec_find(const struct enf_fw_memvec *mv,
                        const struct enf_fw_addr *addr);
/* Inserts or updates addr's mask. */
int enf_fw_memvec_put(struct enf_fw_memvec *mv,
                      const struct enf_fw_addr *addr,
                      uint64_t mask);
void enf_fw_memvec_remove(struct enf_fw_memvec *mv, size_t i);

/* Builds a sorted member model from a member list: group names map to
 * bits by their index in groups[] (undeclared names are ignored).
 * -EINVAL (errbuf says) for a bad address or an address given twice. */
int enf_fw_members_build(const struct enf_fw_member *members,
                         size_t n,
                         const char (*groups)[ENF_FW_GROUP_LEN],
                         size_t ngroups,
                         struct enf_fw_memvec *ret,
                         char *errbuf,
                         size_t errlen);
uint64_t enf_fw_group_mask(const char *const *names,
                           size_t n,
                           const char (*groups)[ENF_FW_GROUP_LEN],
                           size_t ngroups);

/* ---- addresses ---------------------------------------------------------- */

/* A host address (no prefix). Returns 0 or -EINVAL. */
int enf_fw_addr_parse_host(const char *s, struct enf_fw_addr *ret);
/* "a/len" or "a" (host); host bits must be zero. why gets the reason. */
int enf_fw_addr_parse_net(const char *s,
                          struct enf_fw_addr *ret,
                          char *why,
                          size_t whylen);
int enf_fw_addr_cmp(const struct enf_fw_addr *a, const struct enf_fw_addr *b);
bool enf_fw_addr_in_net(const struct enf_fw_addr *host,
                        const struct enf_fw_addr *net);
/* The address in text (no prefix); buf of INET6_ADDRSTRLEN at least. */
void enf_fw_addr_format(const struct enf_fw_addr *a, char *buf, size_t len);

/* ---- the compiled plan -------------------------------------------------- */

/* One named set and the elements the plan puts into it. */
struct enf_fw_setdef {
    char name[ENF_FW_SET_LEN];
    uint8_t family;
    int group; /* group index, or -1 for the all-clients set */
    size_t nelems;
    struct enf_fw_addr *elems; /* owned */
};

struct enf_fw_plan {
    char *script;     /* the whole nft script (delete + create + fill) */
    char *table_text; /* the `table ... { }` block alone, sets empty */
    size_t nsets;
    struct enf_fw_setdef *sets;
};

/* Set names: the all-clients sets and the group sets. */
#define ENF_FW_SET_CLIENTS4 "clients4"
#define ENF_FW_SET_CLIENTS6 "clients6"
void enf_fw_set_name(int group,
                     uint8_t family,
                     const char (*groups)[ENF_FW_GROUP_LEN],
                     char *buf,
                     size_t len);

int enf_fw_plan_build(const struct enf_fw_policy *p,
                      const struct enf_fw_memvec *members,
                      const char *dev,
                      const char *table,
                      struct enf_fw_plan *ret);
void enf_fw_plan_free(struct enf_fw_plan *plan);

/* dev: 1-15 bytes of [A-Za-z0-9_.-]; table: [a-z0-9_]{1,31}. */
bool enf_fw_valid_dev(const char *dev);
bool enf_fw_valid_table(const char *table);

/* ---- backend interface -------------------------------------------------- */

/* One element update. */
struct enf_fw_elem_op {
    bool add;
    char set[ENF_FW_SET_LEN];
    struct enf_fw_addr addr;
};

/* A set as read back from the kernel. An element that is not a plain
 * address (a range, a timeout, a comment) is counted in `odd`. */
struct enf_fw_kset {
    char name[ENF_FW_SET_LEN];
    size_t nelems;
    size_t cap;
    struct enf_fw_addr *elems;
    size_t odd;
};

/* Our table as read back. skeleton: every object of the table, one per
 * line in a canonical form, without handles, counter values and set
 * elements: two reads compare equal iff nothing but elements changed. */
struct enf_fw_kstate {
    bool exists;
    char *skeleton;
    size_t nsets;
    size_t cap;
    struct enf_fw_kset *sets;
};

void enf_fw_kstate_free(struct enf_fw_kstate *ks);
/* Appends a set (empty) and returns it, or NULL on -ENOMEM. */
struct enf_fw_kset *enf_fw_kstate_add_set(struct enf_fw_kstate *ks,
                                          const char *name);
int enf_fw_kset_push(struct enf_fw_kset *s, const struct enf_fw_addr *a);

struct enf_fw_ops {
    const char *name;
    int (*open)(const char *table,
                void **ret_state,
                char *errbuf,
                size_t errlen);
    void (*close)(void *state);
    /* Replaces our table with the plan, atomically. */
    int (*replace)(void *state,
                   const struct enf_fw_plan *plan,
                   char *errbuf,
                   size_t errlen);
    /* Runs n element updates as one transaction (all or none). */
    int (*elements)(void *state,
                    const struct enf_fw_elem_op *ops,
                    size_t n,
                    char *errbuf,
                    size_t errlen);
    /* Reads our table; with_elements false may leave the sets empty (a
     * cheaper read for the skeleton alone). */
    int (*read)(void *state,
                bool with_elements,
                struct enf_fw_kstate *ret,
                char *errbuf,
                size_t errlen);
    /* Our table in nft's text form; -ENOENT when absent. */
    int (*text)(void *state, char **ret_text);
    /* Deletes our table; absent is fine. */
    int (*remove)(void *state, char *errbuf, size_t errlen);
};

extern const struct enf_fw_ops enf_fw_linux_ops;
extern const struct enf_fw_ops enf_fw_fake_ops;

/* The backend state of fw if fw uses ops, else NULL. */
void *enf_fw_backend(struct enf_fw *fw, const struct enf_fw_ops *ops);

void enf_fw_errf(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- fake backend test hooks ---------------------------------------------
 * All return -EINVAL when fw does not use the fake backend. */

/* Hand alterations, as an operator with `nft` would make them. */
int enf_fw_fake_delete_table(struct enf_fw *fw);
/* Appends a line to the table's rules (as `nft add rule` would). */
int enf_fw_fake_add_rule(struct enf_fw *fw, const char *line);
/* Empties a set; -ENOENT if there is no such set. */
int enf_fw_fake_flush_set(struct enf_fw *fw, const char *set);
/* Puts an element into a set; -ENOENT if there is no such set. */
int enf_fw_fake_put_element(struct enf_fw *fw, const char *set, const char *ip);
/* The next `count` transactions (replace or elements) fail with err. */
int enf_fw_fake_fail(struct enf_fw *fw, unsigned count, int err);

/* What the fake was asked. last_script: the last replaced plan's script
 * (borrowed, valid until the next replace). */
struct enf_fw_fake_counts {
    uint64_t replaces;
    uint64_t element_txns;
    uint64_t element_ops;
    uint64_t generation; /* bumped by every successful replace */
    const char *last_script;
};
int enf_fw_fake_get_counts(struct enf_fw *fw, struct enf_fw_fake_counts *ret);
/* Elements of a set in the fake kernel; -ENOENT if there is no such set. */
int enf_fw_fake_set_size(struct enf_fw *fw, const char *set, size_t *ret_n);
bool enf_fw_fake_has(struct enf_fw *fw, const char *set, const char *ip);

#endif
