/* enforce/shape: per-client traffic shaping on one device, as desired state.
 *
 * The node hands the whole set of shaped clients of the openvpn tun device
 * to enf_shape_apply(), which converges the kernel to it:
 *
 *   down (traffic TO a client = the device's egress): an HTB root qdisc 1:
 *   whose default class 1:ffff is unshaped (default_kbit, 10 Gbit/s), one
 *   HTB class 1:<minor> per shaped client (rate = ceil = down_kbit) and a
 *   u32 filter matching ip dst = client to that class;
 *
 *   up (traffic FROM a client = the device's ingress): the ingress qdisc
 *   ffff: with one u32 filter redirecting all IPv4 (mirred) to an IFB
 *   device of ours, which carries the same HTB layout keyed on ip src
 *   (rate = ceil = up_kbit). Queueing there instead of policing keeps TCP
 *   at the configured rate, and needs only act_mirred, not act_police
 *   (which some kernels, this project's test machine included, lack).
 *
 * The u32 filters sit in a 256-bucket hash table keyed on the address's
 * last octet, so a packet is compared with ~n/256 filters, not n.
 *
 * The device's root and ingress qdiscs and everything below them are ours
 * (openvpn installs none on its tun), and so is the IFB device (created
 * when missing, left in place by enf_shape_free): anything else found
 * there is replaced or removed. Other devices are never touched.
 *
 * A rate change is a class change, never a rebuild; applying the same set twice
 * sends nothing. A client's class id is stable: it is re-read from the kernel
 * (the client's filter names its class), so it survives restarts of ovhad; a
 * class whose filter was deleted by hand is found again through a map kept in
 * the object.
 *
 * IPv4 only: an IPv6 client is rejected (-EINVAL); IPv6 traffic passes
 * unshaped through the default class.
 *
 * Calls block on netlink: the node runs them in a uv_queue_work job. One
 * enf_shape object is used by one thread at a time. Backends: "linux"
 * (raw rtnetlink through libmnl, in the caller's network namespace) and
 * "fake" (in memory, for unit tests; see shape_int.h).
 */
#ifndef OVHA_ENFORCE_SHAPE_H
#define OVHA_ENFORCE_SHAPE_H

#include <stddef.h>
#include <stdint.h>

#define ENF_SHAPE_MIN_KBIT     16u       /* smallest shaped rate */
#define ENF_SHAPE_MAX_KBIT     10000000u /* 10 Gbit/s */
#define ENF_SHAPE_DEFAULT_KBIT ENF_SHAPE_MAX_KBIT

/* One client. A rate of 0 leaves that direction unshaped; a client with
 * both 0 is the same as an absent one. */
struct enf_shape_client {
    char ip[46];        /* IPv4 address, e.g. "100.64.0.7" */
    uint32_t down_kbit; /* to the client (device egress), 0 or MIN..MAX */
    uint32_t up_kbit;   /* from the client (device ingress), same range */
};

struct enf_shape_config {
    const char *backend;   /* "linux" or "fake" */
    const char *dev;       /* the tun device, e.g. "tun0" */
    const char *ifb_dev;   /* NULL = "ovup-" + dev (dev <= 10 chars) */
    uint32_t default_kbit; /* unshaped class rate; 0 = default */
};

/* Client counts are per client (one client whose two directions both
 * changed counts once). */
struct enf_shape_stats {
    uint64_t applies; /* enf_shape_apply calls */
    uint64_t added;   /* clients newly shaped */
    uint64_t changed; /* shaped clients whose rates changed or were
                         repaired (hand-deleted class or filter) */
    uint64_t removed; /* clients no longer shaped */
    uint64_t errors;  /* failed netlink requests and dumps */
    uint64_t clients; /* clients shaped after the last apply */
};

/* What is installed for one client (enf_shape_list). */
struct enf_shape_entry {
    char ip[46];
    uint32_t down_kbit;  /* 0: no class/filter on the device */
    uint32_t up_kbit;    /* 0: no class/filter on the IFB device */
    uint32_t classid;    /* on the device: 0x0001mmmm (1:mmmm), or 0 */
    uint32_t up_classid; /* on the IFB device, or 0 */
};

struct enf_shape;

/* Returns 0, -EINVAL (unknown backend, missing or too long dev or
 * ifb_dev, ifb_dev == dev, bad default_kbit), -ENOMEM or a negative errno from
 * opening netlink. The device need not exist yet. errbuf gets a message on
 * failure. */
int enf_shape_new(const struct enf_shape_config *cfg,
                  struct enf_shape **ret,
                  char *errbuf,
                  size_t errlen);
void enf_shape_free(struct enf_shape *s);

/* Converges the device to clients[0..n). Invalid input (bad address,
 * IPv6, rate out of range, an address twice) returns -EINVAL and changes
 * nothing. A device that does not exist returns -ENODEV (retry on the next
 * apply). Otherwise every client is attempted even if some requests fail;
 * the return is 0 or the first failure (named in errbuf), and the next
 * apply retries what failed. */
int enf_shape_apply(struct enf_shape *s,
                    const struct enf_shape_client *clients,
                    size_t n,
                    char *errbuf,
                    size_t errlen);

/* The clients shaped in the kernel (or the fake), sorted by address.
 * *ret is allocated (free with free()), *ret_n its length. -ENODEV when
 * the device does not exist. */
int enf_shape_list(struct enf_shape *s,
                   struct enf_shape_entry **ret,
                   size_t *ret_n);

void enf_shape_get_stats(const struct enf_shape *s,
                         struct enf_shape_stats *ret);

#endif
