/* enforce/fdb: a bridge's forwarding database as desired state (the MAC
 * map of bridged, dev-type tap deployments).
 *
 * In a bridged deployment each gateway's openvpn tap device is a port of
 * a Linux bridge that also holds an uplink to the LAN the gateways share.
 * The node knows from the replicated MAC map where every client MAC lives
 * and hands the whole set to enf_fdb_apply(): a MAC of a client on this
 * gateway points at the tap port, a MAC of a client elsewhere at the
 * uplink. Our entries are static and sticky (`bridge fdb ... static
 * sticky`): learning moves a plain static entry to the port a frame came
 * from, never a sticky one. So a client that failed over is reached at
 * once on its new gateway and a client on one gateway cannot take over
 * the MAC of a client on another.
 *
 * "Ours" means: a static (NUD_NOARP, `bridge fdb ... static`) master
 * entry of the configured bridge, vlan 0, on one of the configured ports.
 * Learned entries, permanent entries (the ports' own addresses) and
 * entries on other ports or bridges are never touched. Missing entries
 * are added, ours on the wrong port (or not sticky) are replaced, ours not
 * desired are deleted. The bridge holds one entry per MAC (and vlan): a
 * learned entry of a desired MAC becomes ours; a permanent, extern-learned
 * or foreign static entry of a desired MAC stays, and the apply reports
 * it (-EEXIST). Applying the same set twice changes nothing.
 *
 * enf_fdb_apply() also keeps the tap port in the bridge and up: openvpn
 * creates the tap device when it starts (and again after a restart), so
 * the first passes may find it missing (-ENODEV, retried next pass).
 *
 * Calls block on netlink: the node runs them in a uv_queue_work job. One
 * enf_fdb object is used by one thread at a time. Backends: "linux"
 * (libnl-route-3, in the calling process's network namespace) and "fake"
 * (in memory, for unit tests).
 */
#ifndef OVHA_ENFORCE_FDB_H
#define OVHA_ENFORCE_FDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ENF_FDB_MAC_LEN 18 /* "aa:bb:cc:dd:ee:ff" + NUL */
#define ENF_FDB_IF_LEN  16 /* IFNAMSIZ */

struct enf_fdb_entry {
    char mac[ENF_FDB_MAC_LEN]; /* lowercase, colon separated, unicast */
    char port[ENF_FDB_IF_LEN]; /* cfg.tap or cfg.uplink */
};

struct enf_fdb_config {
    const char *backend; /* "linux" or "fake" */
    const char *bridge;  /* the bridge device, must exist */
    const char *tap;     /* openvpn's tap device: enslaved and set up */
    const char *uplink;  /* the LAN port, already in the bridge */
};

struct enf_fdb_stats {
    uint64_t applies;   /* enf_fdb_apply calls */
    uint64_t added;     /* entries added */
    uint64_t replaced;  /* entries of ours on the wrong port (or not sticky) */
    uint64_t removed;   /* entries of ours no longer desired */
    uint64_t attached;  /* times the tap port was (re)enslaved */
    uint64_t errors;    /* netlink requests that failed */
    uint64_t installed; /* entries of ours after the last apply */
};

struct enf_fdb;

/* Returns 0, -EINVAL (unknown backend, a name too long or empty, two names
 * the same), -ENOMEM, or a negative errno from opening netlink. The bridge
 * and ports need not exist yet. errbuf gets a message on failure. */
int enf_fdb_new(const struct enf_fdb_config *cfg,
                struct enf_fdb **ret,
                char *errbuf,
                size_t errlen);
void enf_fdb_free(struct enf_fdb *f);

/* Checks a MAC string and writes its canonical form (lowercase, colons)
 * to out[ENF_FDB_MAC_LEN]. Accepts "AA:BB:CC:DD:EE:FF" and
 * "aa-bb-cc-dd-ee-ff". Returns 0, or -EINVAL for anything else and for
 * multicast/broadcast (group bit set) and all-zero addresses, which a
 * client can never own. */
int enf_fdb_mac_canon(const char *in, char *out);

/* Converges to desired (n entries). A MAC twice, a port other than
 * cfg.tap / cfg.uplink or a bad MAC is -EINVAL and nothing changes. Every
 * entry is attempted even if some fail (a missing tap: -ENODEV); the
 * return is 0 or the first failure, errbuf names it. A later apply retries
 * what failed. */
int enf_fdb_apply(struct enf_fdb *f,
                  const struct enf_fdb_entry *desired,
                  size_t n,
                  char *errbuf,
                  size_t errlen);

/* Entries of ours now in the kernel (or the fake), sorted by MAC. *ret is
 * allocated (free with free()); *ret_n its length. */
int enf_fdb_list(struct enf_fdb *f, struct enf_fdb_entry **ret, size_t *ret_n);

void enf_fdb_get_stats(const struct enf_fdb *f, struct enf_fdb_stats *ret);

#endif
