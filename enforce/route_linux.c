/* enforce/route_linux: the rtnetlink backend (libnl-route-3), in the
 * network namespace of the calling thread.
 *
 * dump: one RTM_GETROUTE dump of all families; entries outside our table
 * and cloned (cache) entries are dropped here, the rest split into ours and
 * foreign by protocol. Device names are resolved through a link cache
 * refilled at each dump (a device created since is looked up directly).
 * add: RTM_NEWROUTE with NLM_F_CREATE|NLM_F_REPLACE. del: RTM_DELROUTE
 * naming our protocol and the metric, so a foreign route is never hit.
 * Every request waits for its ack, and the kernel's errno is returned as is
 * (libnl's own helpers would translate it into NLE_* codes).
 */
#include <errno.h>
#include <linux/rtnetlink.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/route/nexthop.h>
#include <netlink/route/route.h>
#include <netlink/socket.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "base/base.h"
#include "enforce/nl_int.h"
#include "enforce/route_int.h"

_Static_assert(ENF_ROUTE_TYPE_UNICAST == RTN_UNICAST,
               "route_int.h spells RTN_UNICAST");

struct enf_rlinux {
    struct enf_nl nl;
    uint8_t protocol;
    uint32_t table;
};

/* State of one dump. */
struct enf_rlinux_dump {
    struct enf_rlinux *st;
    struct enf_route_vec *ours;
    struct enf_route_vec *foreign;
    int err;
};

/* libnl reports its own NLE_* codes; the interface speaks errno. */
static void enf_rlinux_close(void *state)
{
    struct enf_rlinux *st = state;
    if (st == NULL) {
        return;
    }
    enf_nl_close(&st->nl);
    ovha_free(st);
}

static int enf_rlinux_open(uint8_t protocol,
                           uint32_t table,
                           void **ret_state,
                           char *errbuf,
                           size_t errlen)
{
    struct enf_rlinux *st = ovha_calloc(1, sizeof(*st));
    if (st == NULL) {
        snprintf(errbuf, errlen, "route: out of memory");
        return -ENOMEM;
    }
    st->protocol = protocol;
    st->table = table;
    int err = enf_nl_open(&st->nl);
    if (err < 0) {
        snprintf(errbuf, errlen, "route: netlink socket: %s",
                 ovha_strerror(err));
        enf_rlinux_close(st);
        return err;
    }
    *ret_state = st;
    return 0;
}

/* ---- dump ---------------------------------------------------------------- */

static bool enf_rlinux_addr(struct nl_addr *a, uint8_t family, uint8_t *out)
{
    unsigned len = a != NULL ? nl_addr_get_len(a) : 0;
    size_t want = family == AF_INET ? 4 : 16;
    memset(out, 0, 16);
    if (a == NULL || nl_addr_get_family(a) != family || len > want) {
        return false;
    }
    /* The default route has no RTA_DST: libnl gives an empty address. */
    if (len > 0) {
        memcpy(out, nl_addr_get_binary_addr(a), len);
    }
    return true;
}

/* Fills the next hop of rt; an unexpressible shape marks it odd. */
static void enf_rlinux_nexthop(struct enf_rlinux *st,
                               struct rtnl_route *route,
                               struct enf_route_rt *rt)
{
    if (rtnl_route_get_nnexthops(route) != 1 ||
        rtnl_route_get_type(route) != RTN_UNICAST) {
        rt->odd = true;
        return;
    }
    struct rtnl_nexthop *nh = rtnl_route_nexthop_n(route, 0);
    struct nl_addr *gw = rtnl_route_nh_get_gateway(nh);
    if (gw != NULL) {
        rt->has_via = enf_rlinux_addr(gw, rt->family, rt->via);
        rt->odd = !rt->has_via;
        return;
    }
    int ifindex = rtnl_route_nh_get_ifindex(nh);
    if (st->nl.links == NULL || rtnl_link_i2name(st->nl.links, ifindex, rt->dev,
                                                 sizeof(rt->dev)) == NULL) {
        rt->dev[0] = '\0';
        rt->odd = true;
    }
}

/* Converts one dumped route; returns false for one outside our table. */
static bool enf_rlinux_convert(struct enf_rlinux *st,
                               struct rtnl_route *route,
                               struct enf_route_rt *rt)
{
    memset(rt, 0, sizeof(*rt));
    rt->family = rtnl_route_get_family(route);
    if ((rt->family != AF_INET && rt->family != AF_INET6) ||
        rtnl_route_get_table(route) != st->table ||
        (rtnl_route_get_flags(route) & RTM_F_CLONED)) {
        return false;
    }
    struct nl_addr *dst = rtnl_route_get_dst(route);
    if (!enf_rlinux_addr(dst, rt->family, rt->dst)) {
        return false;
    }
    rt->prefix = (uint8_t)nl_addr_get_prefixlen(dst);
    rt->protocol = rtnl_route_get_protocol(route);
    rt->tos = rtnl_route_get_tos(route);
    rt->type = rtnl_route_get_type(route);
    rt->metric = rtnl_route_get_priority(route);
    enf_rlinux_nexthop(st, route, rt);
    return true;
}

static int enf_rlinux_dump_cb(struct nl_msg *msg, void *arg)
{
    struct enf_rlinux_dump *d = arg;
    struct rtnl_route *route = NULL;
    if (rtnl_route_parse(nlmsg_hdr(msg), &route) < 0) {
        return NL_SKIP; /* a family libnl cannot parse is none of ours */
    }
    struct enf_route_rt rt;
    if (enf_rlinux_convert(d->st, route, &rt)) {
        bool ours = rt.protocol == d->st->protocol;
        int err = enf_route_vec_push(ours ? d->ours : d->foreign, &rt);
        if (err < 0 && d->err == 0) {
            d->err = err;
        }
    }
    rtnl_route_put(route);
    return NL_OK;
}

static int enf_rlinux_refill_links(struct enf_rlinux *st)
{
    int err;
    if (st->nl.links == NULL) {
        err = rtnl_link_alloc_cache(st->nl.sk, AF_UNSPEC, &st->nl.links);
    } else {
        err = nl_cache_refill(st->nl.sk, st->nl.links);
    }
    return err < 0 ? enf_nl_errno(err) : 0;
}

static int enf_rlinux_dump(void *state,
                           struct enf_route_vec *ours,
                           struct enf_route_vec *foreign)
{
    struct enf_rlinux *st = state;
    int err = enf_rlinux_refill_links(st);
    if (err < 0) {
        return err;
    }
    err = nl_rtgen_request(st->nl.sk, RTM_GETROUTE, AF_UNSPEC, NLM_F_DUMP);
    if (err < 0) {
        return enf_nl_errno(err);
    }
    struct nl_cb *cb = nl_cb_alloc(NL_CB_DEFAULT);
    if (cb == NULL) {
        return -ENOMEM;
    }
    struct enf_rlinux_dump d = { st, ours, foreign, 0 };
    nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, enf_rlinux_dump_cb, &d);
    /* nl_recvmsgs reads the whole multipart answer (to NLMSG_DONE). Even
     * after an allocation failure it must run to the end, or the rest of
     * the dump would be read as the answer to the next request. */
    err = nl_recvmsgs(st->nl.sk, cb);
    nl_cb_put(cb);
    if (err < 0) {
        return enf_nl_errno(err);
    }
    return d.err;
}

/* ---- requests ------------------------------------------------------------ */

static int enf_rlinux_ifindex(struct enf_rlinux *st, const char *dev)
{
    int ifindex =
        st->nl.links != NULL ? rtnl_link_name2i(st->nl.links, dev) : 0;
    if (ifindex > 0) {
        return ifindex;
    }
    /* Created since the last dump (a tun that just came up)? */
    struct rtnl_link *link = NULL;
    if (rtnl_link_get_kernel(st->nl.sk, 0, dev, &link) < 0) {
        return -ENODEV;
    }
    ifindex = rtnl_link_get_ifindex(link);
    rtnl_link_put(link);
    return ifindex > 0 ? ifindex : -ENODEV;
}

static struct nl_addr *enf_rlinux_nladdr(uint8_t family,
                                         const uint8_t *bytes,
                                         unsigned prefix)
{
    struct nl_addr *a =
        nl_addr_build(family, bytes, family == AF_INET ? 4 : 16);
    if (a != NULL) {
        nl_addr_set_prefixlen(a, (int)prefix);
    }
    return a;
}

/* A route object with the fields that identify rt as ours. */
static int enf_rlinux_route(struct enf_rlinux *st,
                            const struct enf_route_rt *rt,
                            struct rtnl_route **ret)
{
    struct rtnl_route *route = rtnl_route_alloc();
    struct nl_addr *dst = enf_rlinux_nladdr(rt->family, rt->dst, rt->prefix);
    if (route == NULL || dst == NULL) {
        goto err_nomem;
    }
    rtnl_route_set_family(route, rt->family);
    rtnl_route_set_table(route, st->table);
    rtnl_route_set_protocol(route, st->protocol);
    rtnl_route_set_priority(route, rt->metric);
    rtnl_route_set_tos(route, rt->tos);
    if (rtnl_route_set_dst(route, dst) < 0) {
        goto err_nomem;
    }
    nl_addr_put(dst);
    *ret = route;
    return 0;
err_nomem:
    nl_addr_put(dst);
    rtnl_route_put(route);
    return -ENOMEM;
}

static int enf_rlinux_set_nexthop(struct enf_rlinux *st,
                                  const struct enf_route_rt *rt,
                                  struct rtnl_route *route)
{
    int ifindex = 0;
    if (!rt->has_via) {
        ifindex = enf_rlinux_ifindex(st, rt->dev);
        if (ifindex < 0) {
            return ifindex;
        }
    }
    struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
    if (nh == NULL) {
        return -ENOMEM;
    }
    if (rt->has_via) {
        struct nl_addr *gw = enf_rlinux_nladdr(
            rt->family, rt->via, rt->family == AF_INET ? 32 : 128);
        if (gw == NULL) {
            rtnl_route_nh_free(nh);
            return -ENOMEM;
        }
        rtnl_route_nh_set_gateway(nh, gw);
        nl_addr_put(gw);
    } else {
        rtnl_route_nh_set_ifindex(nh, ifindex);
    }
    rtnl_route_add_nexthop(route, nh);
    return 0;
}

static int enf_rlinux_add(void *state, const struct enf_route_rt *rt)
{
    struct enf_rlinux *st = state;
    struct rtnl_route *route = NULL;
    struct nl_msg *msg = NULL;
    int err = enf_rlinux_route(st, rt, &route);
    if (err < 0) {
        return err;
    }
    rtnl_route_set_type(route, RTN_UNICAST);
    err = enf_rlinux_set_nexthop(st, rt, route);
    if (err < 0) {
        goto out;
    }
    err =
        rtnl_route_build_add_request(route, NLM_F_CREATE | NLM_F_REPLACE, &msg);
    if (err < 0) {
        err = enf_nl_errno(err);
        goto out;
    }
    err = enf_nl_request(&st->nl, msg);
out:
    rtnl_route_put(route);
    return err;
}

static int enf_rlinux_del(void *state, const struct enf_route_rt *rt)
{
    struct enf_rlinux *st = state;
    struct rtnl_route *route = NULL;
    struct nl_msg *msg = NULL;
    int err = enf_rlinux_route(st, rt, &route);
    if (err < 0) {
        return err;
    }
    /* The kernel matches on what the request names: dst/prefix, TOS,
     * metric, protocol and type; scope "nowhere" means any scope. */
    rtnl_route_set_type(route, rt->type);
    rtnl_route_set_scope(route, RT_SCOPE_NOWHERE);
    err = rtnl_route_build_del_request(route, 0, &msg);
    if (err < 0) {
        err = enf_nl_errno(err);
        goto out;
    }
    err = enf_nl_request(&st->nl, msg);
out:
    rtnl_route_put(route);
    return err;
}

const struct enf_route_ops enf_route_linux_ops = {
    .name = "linux",
    .open = enf_rlinux_open,
    .close = enf_rlinux_close,
    .dump = enf_rlinux_dump,
    .add = enf_rlinux_add,
    .del = enf_rlinux_del,
};
