/* enforce/fdb internals: the backend interface between the common
 * convergence logic (fdb.c) and the two backends (fdb_linux.c,
 * fdb_fake.c), plus the fake backend's test hooks.
 *
 * Message-shaped like route_int.h: a dump of the bridge's FDB, requests
 * to add-or-replace and to delete one entry, and one to keep a port in the
 * bridge and up. Backends never decide what to change; fdb.c does.
 */
#ifndef OVHA_ENFORCE_FDB_INT_H
#define OVHA_ENFORCE_FDB_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "enforce/fdb.h"

/* What kind of entry the kernel reports (its NUD state and flags). */
enum enf_fdb_kind {
    ENF_FDB_STATIC = 0, /* NUD_NOARP: ours when on cfg.tap or cfg.uplink */
    ENF_FDB_PERMANENT,  /* NUD_PERMANENT: a port's own address */
    ENF_FDB_LEARNED,    /* learned by the bridge (or added "dynamic") */
    ENF_FDB_EXTERN,     /* NTF_EXT_LEARNED: owned by a driver or daemon */
};

/* One master entry of the bridge at vlan 0, in binary form. */
struct enf_fdb_ent {
    uint8_t mac[6];
    uint8_t kind;              /* enum enf_fdb_kind */
    bool sticky;               /* NTF_STICKY: learning does not move it */
    char port[ENF_FDB_IF_LEN]; /* "" when the port has no name (vanished) */
};

/* A growable array of entries. */
struct enf_fdb_vec {
    struct enf_fdb_ent *v;
    size_t n;
    size_t cap;
};

int enf_fdb_vec_push(struct enf_fdb_vec *vec, const struct enf_fdb_ent *e);
void enf_fdb_vec_free(struct enf_fdb_vec *vec);

struct enf_fdb_ops {
    const char *name;
    /* Opens the backend for cfg's bridge (names already validated). */
    int (*open)(const struct enf_fdb_config *cfg,
                void **ret_state,
                char *errbuf,
                size_t errlen);
    void (*close)(void *state);
    /* Appends every master entry of the bridge at vlan 0, on any port.
     * -ENODEV when the bridge does not exist, -EOPNOTSUPP when it is no
     * bridge. */
    int (*dump)(void *state, struct enf_fdb_vec *out);
    /* Makes `port` a port of the bridge (moving it from another master)
     * and up. *ret_enslaved tells whether it had to be (re)enslaved.
     * -ENODEV when port or bridge does not exist. Only valid after a
     * successful dump in the same apply. */
    int (*attach)(void *state, const char *port, bool *ret_enslaved);
    /* Creates the static, sticky master entry e->mac on e->port at vlan 0,
     * replacing the bridge's entry for that MAC (whatever it is: the
     * caller checks). -ENODEV when the port does not exist, -EXDEV when
     * it is not a port of our bridge (the kernel would otherwise write to
     * the FDB of the bridge it is in). */
    int (*add)(void *state, const struct enf_fdb_ent *e);
    /* Deletes the entry e->mac on e->port at vlan 0; -ENOENT when there is
     * none on that port. */
    int (*del)(void *state, const struct enf_fdb_ent *e);
};

extern const struct enf_fdb_ops enf_fdb_linux_ops;
extern const struct enf_fdb_ops enf_fdb_fake_ops;

/* Parses a MAC in any form enf_fdb_mac_canon() accepts. */
int enf_fdb_mac_parse(const char *in, uint8_t mac[6]);
/* Canonical text of mac into out[ENF_FDB_MAC_LEN]. */
void enf_fdb_mac_format(const uint8_t mac[6], char *out);

/* The backend state of f if f uses ops, else NULL. */
void *enf_fdb_backend(struct enf_fdb *f, const struct enf_fdb_ops *ops);

/* ---- fake backend test hooks ---------------------------------------------
 * The fake models one bridge with the ports cfg.tap and cfg.uplink (plus
 * any other port name a hook mentions): its FDB at vlan 0 and the tap's
 * link state. It starts with the tap created but not in the bridge, as
 * openvpn leaves it. All hooks return -EINVAL when f does not use the fake
 * backend or an argument is malformed. */

/* Puts an entry into the FDB as someone else (the bridge's learning, an
 * operator, a hand edit of ours) would: replaces the entry for that MAC. */
int enf_fdb_fake_put(struct enf_fdb *f,
                     const char *mac,
                     const char *port,
                     enum enf_fdb_kind kind,
                     bool sticky);
/* Removes the entry for mac. Returns 0 or -ENOENT. */
int enf_fdb_fake_drop(struct enf_fdb *f, const char *mac);
/* The entry for mac, or -ENOENT. */
int enf_fdb_fake_get(struct enf_fdb *f,
                     const char *mac,
                     struct enf_fdb_ent *ret);
/* Sets the tap's link state. A tap that vanishes or leaves the bridge
 * loses its FDB entries, as in the kernel. */
int enf_fdb_fake_set_tap(struct enf_fdb *f,
                         bool exists,
                         bool enslaved,
                         bool up);
int enf_fdb_fake_get_tap(struct enf_fdb *f,
                         bool *ret_exists,
                         bool *ret_enslaved,
                         bool *ret_up);
/* The next `count` add/del/attach requests fail with err. */
int enf_fdb_fake_fail_requests(struct enf_fdb *f, unsigned count, int err);
/* The dump fails with err (0 clears it). */
int enf_fdb_fake_fail_dump(struct enf_fdb *f, int err);
/* Requests the fake was asked (failed ones too) and entries it holds. */
int enf_fdb_fake_counts(struct enf_fdb *f,
                        uint64_t *ret_adds,
                        uint64_t *ret_dels,
                        uint64_t *ret_attaches,
                        size_t *ret_size);

#endif
