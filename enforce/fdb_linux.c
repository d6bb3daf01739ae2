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

struct enf_flinux {
    struct nl_sock *sk;
    struct nl_cache *links;
    struct nl_cb *ack_cb;
    int ack_err; /* 1 while a request waits for its answer */
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
static int enf_flinux_errno(int nlerr)
{
    switch (nlerr < 0 ? -nlerr : nlerr) {
    case NLE_NOMEM:
        return -ENOMEM;
    case NLE_PERM:
        return -EPERM;
    case NLE_NOACCESS:
        return -EACCES;
    case NLE_NODEV:
        return -ENODEV;
    case NLE_EXIST:
        return -EEXIST;
    case NLE_OBJ_NOTFOUND:
        return -ENOENT;
    case NLE_INVAL:
        return -EINVAL;
    case NLE_AGAIN:
        return -EAGAIN;
    case NLE_BUSY:
        return -EBUSY;
    case NLE_RANGE:
        return -ERANGE;
    case NLE_AF_NOSUPPORT:
        return -EAFNOSUPPORT;
    case NLE_OPNOTSUPP:
        return -EOPNOTSUPP;
    default:
        return -EIO;
    }
}

static int enf_flinux_ack_cb(struct nl_msg *msg, void *arg)
{
    (void)msg;
    *(int *)arg = 0;
    return NL_STOP;
}

static int enf_flinux_error_cb(struct sockaddr_nl *nla,
                               struct nlmsgerr *e,
                               void *arg)
{
    (void)nla;
    *(int *)arg = e->error != 0 ? e->error : 0;
    return NL_STOP;
}

static void enf_flinux_close(void *state)
{
    struct enf_flinux *st = state;
    if (st == NULL) {
        return;
    }
    if (st->links != NULL) {
        nl_cache_free(st->links);
    }
    if (st->ack_cb != NULL) {
        nl_cb_put(st->ack_cb);
    }
    nl_socket_free(st->sk);
    ovha_free(st);
}

static int enf_flinux_connect(struct enf_flinux *st)
{
    st->sk = nl_socket_alloc();
    st->ack_cb = nl_cb_alloc(NL_CB_DEFAULT);
    if (st->sk == NULL || st->ack_cb == NULL) {
        return -ENOMEM;
    }
    nl_cb_set(st->ack_cb, NL_CB_ACK, NL_CB_CUSTOM, enf_flinux_ack_cb,
              &st->ack_err);
    nl_cb_err(st->ack_cb, NL_CB_CUSTOM, enf_flinux_error_cb, &st->ack_err);
    int err = nl_connect(st->sk, NETLINK_ROUTE);
    if (err < 0) {
        return enf_flinux_errno(err);
    }
    /* Dump messages can be larger than libnl's default read size. */
    nl_socket_enable_msg_peek(st->sk);
    return 0;
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
    int err = enf_flinux_connect(st);
    if (err < 0) {
        snprintf(errbuf, errlen, "fdb: netlink socket: %s", ovha_strerror(err));
        enf_flinux_close(st);
        return err;
    }
    *ret_state = st;
    return 0;
}

/* Sends msg (consumed) and waits for the kernel's answer. */
static int enf_flinux_request(struct enf_flinux *st, struct nl_msg *msg)
{
    int err = nl_send_auto(st->sk, msg);
    nlmsg_free(msg);
    if (err < 0) {
        return enf_flinux_errno(err);
    }
    st->ack_err = 1;
    /* One ack per request; the bound only guards against a socket that
     * keeps delivering unrelated messages. */
    for (int i = 0; i < 64 && st->ack_err == 1; i++) {
        err = nl_recvmsgs(st->sk, st->ack_cb);
        if (err < 0 && st->ack_err == 1) {
            return enf_flinux_errno(err);
        }
    }
    return st->ack_err == 1 ? -EIO : st->ack_err;
}

/* ---- links --------------------------------------------------------------- */

static int enf_flinux_refill_links(struct enf_flinux *st)
{
    int err;
    if (st->links == NULL) {
        err = rtnl_link_alloc_cache(st->sk, AF_UNSPEC, &st->links);
    } else {
        err = nl_cache_refill(st->sk, st->links);
    }
    return err < 0 ? enf_flinux_errno(err) : 0;
}

/* The cached link called name (a reference), or NULL. */
static struct rtnl_link *enf_flinux_link(struct enf_flinux *st,
                                         const char *name)
{
    return st->links != NULL ? rtnl_link_get_by_name(st->links, name) : NULL;
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
    if (rtnl_link_i2name(st->links, rtnl_neigh_get_ifindex(n), e->port,
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
            d->err = enf_flinux_errno(err);
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
        err = nl_send_auto(st->sk, msg);
    }
    nlmsg_free(msg);
    return err < 0 ? enf_flinux_errno(err) : 0;
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
        (void)nl_recvmsgs_default(st->sk);
        return -ENOMEM;
    }
    struct enf_flinux_dump d = { st, out, 0 };
    nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, enf_flinux_dump_cb, &d);
    /* nl_recvmsgs reads the whole multipart answer (to NLMSG_DONE), even
     * after an allocation failure in the callback. */
    err = nl_recvmsgs(st->sk, cb);
    nl_cb_put(cb);
    if (err < 0) {
        return enf_flinux_errno(err);
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
        err = enf_flinux_errno(err);
        goto out;
    }
    err = enf_flinux_request(st, msg);
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
        return enf_flinux_errno(err);
    }
    return enf_flinux_request(st, msg);
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
