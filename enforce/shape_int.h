/* enforce/shape internals: the backend interface between the convergence
 * logic (shape.c) and the backends (shape_linux.c, shape_fake.c), plus the
 * fake backend's test hooks.
 *
 * Message-shaped: a dump of the tc objects in a neutral form and one
 * request type. Backends translate; only shape.c decides what to change.
 * The layout the two share, per direction ("where"):
 *
 *   EGRESS   on the device: qdisc htb 1: (default 1:ffff), classes
 *            1:<minor>, filters at parent 1: matching ip dst;
 *   INGRESS  on the IFB device: the same, matching ip src;
 *   HOOK     on the device: the ingress qdisc ffff: with one filter that
 *            redirects every IPv4 packet to the IFB device's egress.
 *
 *   All our filters: pref ENF_SHAPE_PRIO, protocol ip, kind u32. Per
 *   direction a hash table ENF_SHAPE_HT (100:) with 256 buckets; in the
 *   root table 800: one "link" filter (800::1) hashing the address's last
 *   octet into 100:; one "client" filter per client in bucket = last
 *   octet, handle 100:<bucket>:<node>, matching the address (dst at
 *   offset 16, src at offset 12) with the client's class id. The HOOK's
 *   redirect filter is 800::1 with an empty match.
 */
#ifndef OVHA_ENFORCE_SHAPE_INT_H
#define OVHA_ENFORCE_SHAPE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "enforce/shape.h"

#define ENF_SHAPE_PRIO          10
#define ENF_SHAPE_PROTO_IP      0x0800      /* ETH_P_IP, host order */
#define ENF_SHAPE_HT            0x10000000u /* u32 table 100: */
#define ENF_SHAPE_HT_ROOT       0x80000000u /* u32 table 800: */
#define ENF_SHAPE_LINK_HANDLE   0x80000001u /* 800::1 */
#define ENF_SHAPE_BUCKETS       256u
#define ENF_SHAPE_MAX_NODE      0xfffu
#define ENF_SHAPE_DEFAULT_MINOR 0xffffu
#define ENF_SHAPE_MAX_MINOR     0xfffeu
#define ENF_SHAPE_MAJOR         0x00010000u /* 1: */

enum enf_shape_dir {
    ENF_SHAPE_EGRESS = 0,  /* device root, to the clients */
    ENF_SHAPE_INGRESS = 1, /* IFB root, from the clients */
    ENF_SHAPE_HOOK = 2,    /* device ingress: the redirect to the IFB */
};

/* The handle of the client filter in `bucket` with `node`. */
static inline uint32_t enf_shape_handle(uint32_t bucket, uint32_t node)
{
    return ENF_SHAPE_HT | (bucket << 12) | node;
}

/* A filter as the backend found it. */
enum enf_shape_fkind {
    ENF_SHAPE_F_PROTO = 0, /* a filter chain (pref/protocol) itself */
    ENF_SHAPE_F_TABLE,     /* a u32 hash table (handle, divisor) */
    ENF_SHAPE_F_LINK,      /* a u32 filter linking to a table, hashing on
                              the address's last octet of its direction */
    ENF_SHAPE_F_CLIENT,    /* a u32 filter matching one address exactly,
                              terminal, no action (classid may be 0) */
    ENF_SHAPE_F_REDIRECT,  /* HOOK: a u32 filter matching all, whose one
                              action redirects to our IFB device */
    ENF_SHAPE_F_OTHER,     /* anything else */
};

struct enf_shape_kfilter {
    uint16_t prio;
    uint16_t proto; /* host order */
    uint8_t kind;   /* enum enf_shape_fkind */
    uint32_t handle;
    uint32_t divisor; /* TABLE */
    uint32_t link;    /* LINK: the table linked to */
    uint32_t ip;      /* CLIENT: host order */
    uint32_t classid; /* CLIENT: 0 = none */
};

struct enf_shape_kclass {
    uint16_t minor; /* of 1:, parent root */
    uint64_t rate;  /* bytes/s */
    uint64_t ceil;
    uint32_t burst; /* bytes */
    uint32_t cburst;
};

struct enf_shape_kfvec {
    struct enf_shape_kfilter *v;
    size_t n;
    size_t cap;
};

struct enf_shape_kcvec {
    struct enf_shape_kclass *v;
    size_t n;
    size_t cap;
};

/* The tc state of the device and its IFB device. */
struct enf_shape_kstate {
    bool ifb;          /* the IFB device exists and is up */
    bool root_ours[2]; /* by EGRESS/INGRESS: htb 1: with default 1:ffff */
    bool hook;         /* the device's ingress qdisc ffff: exists */
    struct enf_shape_kcvec classes[2]; /* by EGRESS/INGRESS */
    struct enf_shape_kfvec filters[3]; /* by enum enf_shape_dir */
};

int enf_shape_kfvec_push(struct enf_shape_kfvec *vec,
                         const struct enf_shape_kfilter *f);
int enf_shape_kcvec_push(struct enf_shape_kcvec *vec,
                         const struct enf_shape_kclass *c);
void enf_shape_kstate_free(struct enf_shape_kstate *k);

enum enf_shape_op {
    ENF_SHAPE_IFB_SET = 0,  /* create the IFB device (or set it up) */
    ENF_SHAPE_ROOT_SET,     /* (re)create dir's htb root, dropping all */
    ENF_SHAPE_INGRESS_SET,  /* (re)create the device's ingress qdisc */
    ENF_SHAPE_REDIRECT_SET, /* add the HOOK's redirect filter */
    ENF_SHAPE_CLASS_SET,    /* create or change class 1:minor */
    ENF_SHAPE_CLASS_DEL,
    ENF_SHAPE_PROTO_DEL,  /* delete a whole filter chain (prio, proto) */
    ENF_SHAPE_TABLE_SET,  /* create hash table ENF_SHAPE_HT */
    ENF_SHAPE_LINK_SET,   /* create the link filter into it */
    ENF_SHAPE_FILTER_SET, /* create or replace a client filter */
    ENF_SHAPE_FILTER_DEL, /* delete a client filter by handle */
    ENF_SHAPE_NOPS,
};

struct enf_shape_req {
    uint8_t op;  /* enum enf_shape_op */
    uint8_t dir; /* enum enf_shape_dir */
    uint16_t prio;
    uint16_t proto;
    uint16_t minor;  /* CLASS_*: 1:minor; FILTER_SET egress: its class */
    uint32_t handle; /* FILTER_* */
    uint32_t ip;     /* FILTER_SET: host order */
    uint64_t rate;   /* CLASS_SET, FILTER_SET ingress: bytes/s */
    uint32_t burst;  /* bytes */
};

struct enf_shape_ops {
    const char *name;
    /* dev: the device; ifb: the name of our IFB device. */
    int (*open)(const char *dev,
                const char *ifb,
                void **ret_state,
                char *errbuf,
                size_t errlen);
    void (*close)(void *state);
    /* Fills *ret (zeroed by the caller). -ENODEV: no such device (a
     * missing IFB device is not an error: ret->ifb is false). */
    int (*dump)(void *state, struct enf_shape_kstate *ret);
    /* Sends one request and waits for the answer: 0 or a negative errno
     * (a delete of something absent is -ENOENT). */
    int (*request)(void *state, const struct enf_shape_req *req);
};

extern const struct enf_shape_ops enf_shape_linux_ops;
extern const struct enf_shape_ops enf_shape_fake_ops;

/* The filter is in our chain (pref ENF_SHAPE_PRIO, protocol ip). */
bool enf_shape_is_ours(const struct enf_shape_kfilter *f);

/* The burst the common code asks for at `rate` bytes/s. */
uint32_t enf_shape_class_burst(uint64_t rate);

/* The backend state of s if s uses ops, else NULL. */
void *enf_shape_backend(struct enf_shape *s, const struct enf_shape_ops *ops);

/* ---- fake backend test hooks ---------------------------------------------
 * All return -EINVAL when s does not use the fake backend. */

/* The device exists (true, default) or not (every call: -ENODEV; going
 * away drops its qdiscs, as the kernel does; the IFB device stays). */
int enf_shape_fake_set_dev(struct enf_shape *s, bool present);
/* The next `count` requests fail with err. */
int enf_shape_fake_fail_requests(struct enf_shape *s, unsigned count, int err);
/* Requests naming address ip (host order) fail with err; 0 clears. */
int enf_shape_fake_fail_ip(struct enf_shape *s, uint32_t ip, int err);
/* Hand edits: delete class 1:minor of dir / the client filter of ip in
 * dir, replace dir's root qdisc with a foreign one, add a stray filter
 * chain, delete the IFB device. Return 0 or -ENOENT. */
int enf_shape_fake_drop_class(struct enf_shape *s, int dir, uint16_t minor);
int enf_shape_fake_drop_filter(struct enf_shape *s, int dir, uint32_t ip);
int enf_shape_fake_foreign_root(struct enf_shape *s, int dir);
int enf_shape_fake_drop_ifb(struct enf_shape *s);
int enf_shape_fake_put_stray(struct enf_shape *s, int dir, uint16_t prio);
/* Requests by op (failed ones too) since the backend was opened. */
int enf_shape_fake_counts(struct enf_shape *s,
                          uint64_t ret_counts[ENF_SHAPE_NOPS]);

#endif
