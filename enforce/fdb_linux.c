/* enforce/fdb_linux: the rtnetlink backend (libnl-route-3) for a bridge's
 * FDB, in the network namespace of the calling thread.
 *
 * dump: refills a link cache (names, masters, flags), then one
 * RTM_GETNEIGH dump of family AF_BRIDGE filtered by IFLA_MASTER, the way
 * `bridge fdb show br X` asks. The ports' own "self" entries (NTF_SELF),
 * entries of other bridges (NDA_MASTER) and entries with a vlan are
 * dropped here. add: RTM_NEWNEIGH NLM_F_CREATE|NLM_F_REPLACE with
 * NTF_MASTER|NTF_STICKY, NUD_NOARP and no NDA_VLAN (vlan 0), exactly
 * `bridge fdb replace MAC dev PORT master static sticky`; the port's
 * master is checked first, since the kernel hands NTF_MASTER requests to
 * whatever bridge the port is in. del: RTM_DELNEIGH naming the port; the
 * kernel deletes only an entry on that port. attach: one RTM_NEWLINK
 * setting IFLA_MASTER and IFF_UP, only when something differs.
 *
 * A limit of the kernel interface: a delete without NDA_VLAN also removes
 * the MAC from the port's configured vlans, so a vlan-filtering bridge
 * with per-vlan entries for our MACs is not supported.
 *
 * Every request waits for its ack and the kernel's errno is returned as is
 * (libnl's own helpers would translate it into NLE_* codes).
 */
#include <errno.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netlink/addr.h>
#include <netlink/attr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/route/neighbour.h>
#include <netlink/socket.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "base/base.h"
#include "enforce/fdb_int.h"
#include "enforce/nl_int.h"

struct enf_flinux {
    struct enf_nl nl;
    char bridge[ENF_FDB_IF_LEN];
    int br_ifindex; /* of the last dump */
};

/* State of one dump. */
struct enf_flinux_dump {
    struct enf_flinux *st;
    struct enf_fdb_vec *out;
    int err;
};

/* libnl reports its own NLE_* codes; the interface speaks errno. */
static void enf_flinux_close(void *state)
{
    struct enf_flinux *st = state;
    if (st == NULL) {
        return;
    }
    enf_nl_close(&st->nl);
    ovha_free(st);
}

static int enf_flinux_open(const struct enf_fdb_config *cfg,
                           void **ret_state,
                           char *errbuf,
                           size_t errlen)
{
    struct enf_flinux *st = ovha_calloc(1, sizeof(*st));
    if (st == NULL) {
        snprintf(errbuf, errlen, "fdb: out of memory");
        return -ENOMEM;
    }
    ovha_strlcpy(st->bridge, cfg->bridge, sizeof(st->bridge));
    int err = enf_nl_open(&st->nl);
    if (err < 0) {
        snprintf(errbuf, errlen, "fdb: netlink socket: %s", ovha_strerror(err));
        enf_flinux_close(st);
        return err;
    }
    *ret_state = st;
    return 0;
}

/* ---- links --------------------------------------------------------------- */

static int enf_flinux_refill_links(struct enf_flinux *st)
{
    int err;
    if (st->nl.links == NULL) {
        err = rtnl_link_alloc_cache(st->nl.sk, AF_UNSPEC, &st->nl.links);
    } else {
        err = nl_cache_refill(st->nl.sk, st->nl.links);
    }
    return err < 0 ? enf_nl_errno(err) : 0;
}

/* The cached link called name (a reference), or NULL. */
static struct rtnl_link *enf_flinux_link(struct enf_flinux *st,
                                         const char *name)
{
    return st->nl.links != NULL ? rtnl_link_get_by_name(st->nl.links, name)
                                : NULL;
}

/* Resolves the bridge for this dump: -ENODEV if it does not exist,
 * -EOPNOTSUPP if it is another kind of device. */
static int enf_flinux_resolve_bridge(struct enf_flinux *st)
{
    st->br_ifindex = 0;
    struct rtnl_link *br = enf_flinux_link(st, st->bridge);
    if (br == NULL) {
        return -ENODEV;
    }
    const char *type = rtnl_link_get_type(br);
    int ifindex = rtnl_link_get_ifindex(br);
    rtnl_link_put(br);
    if (type == NULL || strcmp(type, "bridge") != 0) {
        return -EOPNOTSUPP;
    }
    st->br_ifindex = ifindex;
    return 0;
}

/* ---- dump ---------------------------------------------------------------- */

static uint8_t enf_flinux_kind(unsigned flags, int state)
{
    if (flags & NTF_EXT_LEARNED) {
        return ENF_FDB_EXTERN;
    }
    if (state & NUD_PERMANENT) {
        return ENF_FDB_PERMANENT;
    }
    if (state & NUD_NOARP) {
        return ENF_FDB_STATIC;
    }
    return ENF_FDB_LEARNED;
}

/* Converts one dumped entry; false for one that is none of our bridge's
 * vlan-0 master entries. */
static bool enf_flinux_convert(struct enf_flinux *st,
                               struct rtnl_neigh *n,
                               struct enf_fdb_ent *e)
{
    memset(e, 0, sizeof(*e));
    struct nl_addr *ll = rtnl_neigh_get_lladdr(n);
    int vlan = rtnl_neigh_get_vlan(n);
    if (rtnl_neigh_get_master(n) != st->br_ifindex || ll == NULL ||
        nl_addr_get_len(ll) != 6 || (vlan != -1 && vlan != 0)) {
        return false;
    }
    memcpy(e->mac, nl_addr_get_binary_addr(ll), 6);
    unsigned flags = rtnl_neigh_get_flags(n);
    e->kind = enf_flinux_kind(flags, rtnl_neigh_get_state(n));
    e->sticky = (flags & NTF_STICKY) != 0;
    if (rtnl_link_i2name(st->nl.links, rtnl_neigh_get_ifindex(n), e->port,
                         sizeof(e->port)) == NULL) {
        e->port[0] = '\0';
    }
    return true;
}

static int enf_flinux_dump_cb(struct nl_msg *msg, void *arg)
{
    struct enf_flinux_dump *d = arg;
    struct nlmsghdr *nlh = nlmsg_hdr(msg);
    if (nlh->nlmsg_type != RTM_NEWNEIGH ||
        nlmsg_datalen(nlh) < (int)sizeof(struct ndmsg)) {
        return NL_SKIP;
    }
    const struct ndmsg *ndm = nlmsg_data(nlh);
    /* A port's own ("self") table is no business of the bridge's. */
    if (ndm->ndm_family != AF_BRIDGE || (ndm->ndm_flags & NTF_SELF)) {
        return NL_SKIP;
    }
    struct rtnl_neigh *n = NULL;
    int err = rtnl_neigh_parse(nlh, &n);
    if (err < 0) {
        if (d->err == 0) {
            d->err = enf_nl_errno(err);
        }
        return NL_SKIP;
    }
    struct enf_fdb_ent e;
    if (enf_flinux_convert(d->st, n, &e)) {
        err = enf_fdb_vec_push(d->out, &e);
        if (err < 0 && d->err == 0) {
            d->err = err;
        }
    }
    rtnl_neigh_put(n);
    return NL_OK;
}

/* RTM_GETNEIGH for the bridge's entries: an ifinfomsg with IFLA_MASTER
 * is what the kernel's (non-strict) fdb dump filters on. */
static int enf_flinux_dump_request(struct enf_flinux *st)
{
    struct ifinfomsg ifi = { .ifi_family = AF_BRIDGE };
    struct nl_msg *msg = nlmsg_alloc_simple(RTM_GETNEIGH, NLM_F_DUMP);
    if (msg == NULL) {
        return -ENOMEM;
    }
    int err = nlmsg_append(msg, &ifi, sizeof(ifi), NLMSG_ALIGNTO);
    if (err == 0) {
        err = nla_put_u32(msg, IFLA_MASTER, (uint32_t)st->br_ifindex);
    }
    if (err == 0) {
        err = nl_send_auto(st->nl.sk, msg);
    }
    nlmsg_free(msg);
    return err < 0 ? enf_nl_errno(err) : 0;
}

static int enf_flinux_dump(void *state, struct enf_fdb_vec *out)
{
    struct enf_flinux *st = state;
    int err = enf_flinux_refill_links(st);
    if (err == 0) {
        err = enf_flinux_resolve_bridge(st);
    }
    if (err == 0) {
        err = enf_flinux_dump_request(st);
    }
    if (err < 0) {
        return err;
    }
    struct nl_cb *cb = nl_cb_alloc(NL_CB_DEFAULT);
    if (cb == NULL) {
        /* The answer is coming: read it off or it would be taken as the
         * answer to the next request. */
        (void)nl_recvmsgs_default(st->nl.sk);
        return -ENOMEM;
    }
    struct enf_flinux_dump d = { st, out, 0 };
    nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, enf_flinux_dump_cb, &d);
    /* nl_recvmsgs reads the whole multipart answer (to NLMSG_DONE), even
     * after an allocation failure in the callback. */
    err = nl_recvmsgs(st->nl.sk, cb);
    nl_cb_put(cb);
    if (err < 0) {
        return enf_nl_errno(err);
    }
    return d.err;
}

/* ---- requests ------------------------------------------------------------ */

static int enf_flinux_attach(void *state, const char *port, bool *ret_enslaved)
{
    struct enf_flinux *st = state;
    if (st->br_ifindex <= 0) {
        return -ENODEV;
    }
    struct rtnl_link *orig = enf_flinux_link(st, port);
    if (orig == NULL) {
        return -ENODEV;
    }
    bool enslave = rtnl_link_get_master(orig) != st->br_ifindex;
    bool up = (rtnl_link_get_flags(orig) & IFF_UP) != 0;
    int err = 0;
    struct rtnl_link *changes = NULL;
    struct nl_msg *msg = NULL;
    if (!enslave && up) {
        goto out;
    }
    changes = rtnl_link_alloc();
    if (changes == NULL) {
        err = -ENOMEM;
        goto out;
    }
    if (enslave) {
        rtnl_link_set_master(changes, st->br_ifindex);
    }
    rtnl_link_set_flags(changes, IFF_UP);
    err = rtnl_link_build_change_request(orig, changes, 0, &msg);
    if (err < 0) {
        err = enf_nl_errno(err);
        goto out;
    }
    err = enf_nl_request(&st->nl, msg);
    if (err == 0) {
        /* The port's master changed under the cache adds look at. */
        err = enf_flinux_refill_links(st);
    }
out:
    if (err == 0) {
        *ret_enslaved = enslave;
    }
    rtnl_link_put(changes);
    rtnl_link_put(orig);
    return err;
}

/* The ifindex of a port of our bridge: -ENODEV if there is no such
 * device, -EXDEV if it is not in our bridge. */
static int enf_flinux_port(struct enf_flinux *st, const char *port)
{
    struct rtnl_link *link = enf_flinux_link(st, port);
    if (link == NULL) {
        return -ENODEV;
    }
    int ifindex = rtnl_link_get_ifindex(link);
    int master = rtnl_link_get_master(link);
    rtnl_link_put(link);
    if (st->br_ifindex <= 0 || master != st->br_ifindex) {
        return -EXDEV;
    }
    return ifindex;
}

/* A bridge neighbour object naming e on ifindex. */
static struct rtnl_neigh *enf_flinux_neigh(const struct enf_fdb_ent *e,
                                           int ifindex)
{
    struct rtnl_neigh *n = rtnl_neigh_alloc();
    struct nl_addr *ll = nl_addr_build(AF_LLC, e->mac, 6);
    if (n == NULL || ll == NULL) {
        nl_addr_put(ll);
        rtnl_neigh_put(n);
        return NULL;
    }
    rtnl_neigh_set_family(n, AF_BRIDGE);
    rtnl_neigh_set_ifindex(n, ifindex);
    rtnl_neigh_set_lladdr(n, ll);
    nl_addr_put(ll);
    return n;
}

static int enf_flinux_send_neigh(struct enf_flinux *st,
                                 const struct enf_fdb_ent *e,
                                 int ifindex,
                                 bool add)
{
    struct rtnl_neigh *n = enf_flinux_neigh(e, ifindex);
    if (n == NULL) {
        return -ENOMEM;
    }
    struct nl_msg *msg = NULL;
    int err;
    rtnl_neigh_set_state(n, NUD_NOARP);
    if (add) {
        rtnl_neigh_set_flags(n, NTF_MASTER | NTF_STICKY);
        err =
            rtnl_neigh_build_add_request(n, NLM_F_CREATE | NLM_F_REPLACE, &msg);
    } else {
        rtnl_neigh_set_flags(n, NTF_MASTER);
        err = rtnl_neigh_build_delete_request(n, 0, &msg);
    }
    rtnl_neigh_put(n);
    if (err < 0) {
        return enf_nl_errno(err);
    }
    return enf_nl_request(&st->nl, msg);
}

static int enf_flinux_add(void *state, const struct enf_fdb_ent *e)
{
    struct enf_flinux *st = state;
    int ifindex = enf_flinux_port(st, e->port);
    if (ifindex < 0) {
        return ifindex;
    }
    return enf_flinux_send_neigh(st, e, ifindex, true);
}

static int enf_flinux_del(void *state, const struct enf_fdb_ent *e)
{
    struct enf_flinux *st = state;
    int ifindex = enf_flinux_port(st, e->port);
    if (ifindex == -ENODEV) {
        return -ENOENT; /* the port vanished, and its entries with it */
    }
    if (ifindex < 0) {
        return ifindex;
    }
    return enf_flinux_send_neigh(st, e, ifindex, false);
}

const struct enf_fdb_ops enf_fdb_linux_ops = {
    .name = "linux",
    .open = enf_flinux_open,
    .close = enf_flinux_close,
    .dump = enf_flinux_dump,
    .attach = enf_flinux_attach,
    .add = enf_flinux_add,
    .del = enf_flinux_del,
};
