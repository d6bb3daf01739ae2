/* enforce/shape_linux: the rtnetlink backend, raw messages over libmnl,
 * in the network namespace of the calling thread.
 *
 * Why not libnl-route-3 like route_linux.c: libnl 3.7 has HTB and u32 but
 * its u32 object neither builds nor reads back a mirred action with the
 * fields we compare (nor a police action, the first design), so a part
 * would be raw netlink anyway. One raw implementation keeps building and
 * parsing symmetric (the same attributes go out and come back).
 *
 * dump: the qdiscs of the device and the IFB device, the classes of their
 * 1: and the filters under 1: (both) and ffff: (the device), translated
 * to the neutral form of shape_int.h. Requests wait for the kernel's ack;
 * its errno is returned as is. Rates travel as bytes per second (u32:
 * ENF_SHAPE_MAX_KBIT keeps them below 2^32) and bursts as the time to
 * send them in 64 ns "ticks" (PSCHED_SHIFT 6, fixed in the kernel since
 * 2.6.31), so a burst read back is converted the same way.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_link.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <linux/tc_act/tc_mirred.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>

#include "base/base.h"
#include "enforce/shape_int.h"

#define ENF_SLINUX_BUFSIZE     65536
#define ENF_SLINUX_NS_PER_TICK 64u
#define ENF_SLINUX_CELL_LOG    3 /* rate table cells for an MTU of 2047 */

struct enf_slinux {
    struct mnl_socket *nl;
    uint32_t portid;
    uint32_t seq;
    char dev[16];
    char ifb[16];
    int ifindex[2]; /* device, IFB device: from the last dump */
    char buf[ENF_SLINUX_BUFSIZE];
};

/* What a dump callback fills. */
struct enf_slinux_dump {
    struct enf_slinux *st;
    struct enf_shape_kstate *k;
    int dir;
    int err;
};

static int enf_slinux_errno(void)
{
    return errno > 0 ? -errno : -EIO;
}

static void enf_slinux_close(void *state)
{
    struct enf_slinux *st = state;
    if (st == NULL) {
        return;
    }
    if (st->nl != NULL) {
        mnl_socket_close(st->nl);
    }
    ovha_free(st);
}

static int enf_slinux_open(const char *dev,
                           const char *ifb,
                           void **ret_state,
                           char *errbuf,
                           size_t errlen)
{
    struct enf_slinux *st = ovha_calloc(1, sizeof(*st));
    if (st == NULL) {
        snprintf(errbuf, errlen, "shape: out of memory");
        return -ENOMEM;
    }
    ovha_strlcpy(st->dev, dev, sizeof(st->dev));
    ovha_strlcpy(st->ifb, ifb, sizeof(st->ifb));
    st->nl = mnl_socket_open(NETLINK_ROUTE);
    if (st->nl == NULL || mnl_socket_bind(st->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        int err = enf_slinux_errno();
        snprintf(errbuf, errlen, "shape: netlink socket: %s",
                 ovha_strerror(err));
        enf_slinux_close(st);
        return err;
    }
    st->portid = mnl_socket_get_portid(st->nl);
    st->seq = (uint32_t)time(NULL);
    *ret_state = st;
    return 0;
}

/* ---- units --------------------------------------------------------------- */

/* Time to send `bytes` at `rate` bytes/s, in kernel ticks. */
static uint32_t enf_slinux_ticks(uint64_t bytes, uint64_t rate)
{
    if (rate == 0) {
        return 0;
    }
    uint64_t t = bytes * (1000000000u / ENF_SLINUX_NS_PER_TICK) / rate;
    return t > UINT32_MAX ? UINT32_MAX : (uint32_t)t;
}

/* The burst in bytes that `ticks` stand for at `rate`, rounded. */
static uint32_t enf_slinux_bytes(uint32_t ticks, uint64_t rate)
{
    uint64_t b = ((uint64_t)ticks * rate + 15625000u / 2) / 15625000u;
    return b > UINT32_MAX ? UINT32_MAX : (uint32_t)b;
}

static void enf_slinux_ratespec(struct tc_ratespec *r, uint64_t rate)
{
    memset(r, 0, sizeof(*r));
    r->rate = (uint32_t)rate;
    r->cell_log = ENF_SLINUX_CELL_LOG;
    r->cell_align = -1;
    r->linklayer = TC_LINKLAYER_ETHERNET;
}

/* ---- netlink plumbing ---------------------------------------------------- */

static struct nlmsghdr *enf_slinux_msg(struct enf_slinux *st,
                                       int ifindex,
                                       uint16_t type,
                                       uint16_t flags,
                                       uint32_t parent,
                                       uint32_t handle,
                                       uint32_t info)
{
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(st->buf);
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = NLM_F_REQUEST | flags;
    nlh->nlmsg_seq = ++st->seq;
    struct tcmsg *tcm = mnl_nlmsg_put_extra_header(nlh, sizeof(*tcm));
    tcm->tcm_family = AF_UNSPEC;
    tcm->tcm_ifindex = ifindex;
    tcm->tcm_parent = parent;
    tcm->tcm_handle = handle;
    tcm->tcm_info = info;
    return nlh;
}

/* Sends nlh (in st->buf) and runs cb over the answer until the ack or
 * the end of the dump. Returns 0 or a negative errno. */
static int enf_slinux_talk(struct enf_slinux *st,
                           struct nlmsghdr *nlh,
                           mnl_cb_t cb,
                           void *data)
{
    uint32_t seq = nlh->nlmsg_seq;
    if (mnl_socket_sendto(st->nl, nlh, nlh->nlmsg_len) < 0) {
        return enf_slinux_errno();
    }
    /* A dump of 10,000 filters is a few hundred reads; the bound only
     * guards against a socket that never ends the answer. */
    for (int i = 0; i < 1000000; i++) {
        ssize_t n = mnl_socket_recvfrom(st->nl, st->buf, sizeof(st->buf));
        if (n < 0) {
            return enf_slinux_errno();
        }
        int ret = mnl_cb_run(st->buf, (size_t)n, seq, st->portid, cb, data);
        if (ret < 0) {
            return enf_slinux_errno();
        }
        if (ret == MNL_CB_STOP) {
            return 0;
        }
    }
    return -EIO;
}

static uint32_t enf_slinux_filter_parent(int dir)
{
    return dir == ENF_SHAPE_HOOK ? TC_H_MAJ(TC_H_INGRESS) : ENF_SHAPE_MAJOR;
}

/* The device dir's qdiscs and filters live on. */
static int enf_slinux_ifindex(const struct enf_slinux *st, int dir)
{
    return st->ifindex[dir == ENF_SHAPE_INGRESS ? 1 : 0];
}

static int enf_slinux_ip_off(int dir)
{
    switch (dir) {
    case ENF_SHAPE_EGRESS:
        return 16; /* iphdr daddr */
    case ENF_SHAPE_INGRESS:
        return 12; /* iphdr saddr */
    default:
        return 0; /* the hook's match-all key */
    }
}

/* ---- dump ---------------------------------------------------------------- */

struct enf_slinux_attrs {
    const struct nlattr *tb[TCA_MAX + 1];
};

static int enf_slinux_attr_cb(const struct nlattr *attr, void *data)
{
    const struct nlattr **tb = data;
    int type = mnl_attr_get_type(attr);
    if (type <= TCA_MAX) {
        tb[type] = attr;
    }
    return MNL_CB_OK;
}

/* Nested attributes up to max (callers size tb as max + 1). */
struct enf_slinux_nest {
    const struct nlattr **tb;
    int max;
};

static int enf_slinux_nest_cb(const struct nlattr *attr, void *data)
{
    struct enf_slinux_nest *n = data;
    int type = mnl_attr_get_type(attr);
    if (type <= n->max) {
        n->tb[type] = attr;
    }
    return MNL_CB_OK;
}

static int enf_slinux_parse_nested(const struct nlattr *nest,
                                   const struct nlattr **tb,
                                   int max)
{
    memset(tb, 0, sizeof(*tb) * (size_t)(max + 1));
    struct enf_slinux_nest n = { tb, max };
    return mnl_attr_parse_nested(nest, enf_slinux_nest_cb, &n) < 0 ? -EINVAL
                                                                   : 0;
}

static const struct tcmsg *enf_slinux_tcmsg(const struct nlmsghdr *nlh,
                                            struct enf_slinux_attrs *a)
{
    memset(a, 0, sizeof(*a));
    if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(struct tcmsg)) ||
        mnl_attr_parse(nlh, sizeof(struct tcmsg), enf_slinux_attr_cb, a->tb) <
            0) {
        return NULL;
    }
    return mnl_nlmsg_get_payload(nlh);
}

static bool enf_slinux_kind_is(const struct enf_slinux_attrs *a,
                               const char *kind)
{
    return a->tb[TCA_KIND] != NULL &&
           strcmp(mnl_attr_get_str(a->tb[TCA_KIND]), kind) == 0;
}

/* Our root: htb 1: with default class 1:ffff. */
static bool enf_slinux_root_is_ours(const struct tcmsg *tcm,
                                    const struct enf_slinux_attrs *a)
{
    const struct nlattr *tb[TCA_HTB_MAX + 1];
    if (tcm->tcm_handle != ENF_SHAPE_MAJOR || !enf_slinux_kind_is(a, "htb") ||
        a->tb[TCA_OPTIONS] == NULL ||
        enf_slinux_parse_nested(a->tb[TCA_OPTIONS], tb, TCA_HTB_MAX) < 0 ||
        tb[TCA_HTB_INIT] == NULL ||
        mnl_attr_get_payload_len(tb[TCA_HTB_INIT]) <
            sizeof(struct tc_htb_glob)) {
        return false;
    }
    const struct tc_htb_glob *g = mnl_attr_get_payload(tb[TCA_HTB_INIT]);
    return g->defcls == ENF_SHAPE_DEFAULT_MINOR;
}

static int enf_slinux_qdisc_cb(const struct nlmsghdr *nlh, void *data)
{
    struct enf_slinux_dump *d = data;
    struct enf_slinux_attrs a;
    const struct tcmsg *tcm = enf_slinux_tcmsg(nlh, &a);
    if (tcm == NULL) {
        return MNL_CB_OK;
    }
    for (int dir = 0; dir < 2; dir++) {
        if (tcm->tcm_ifindex == d->st->ifindex[dir] &&
            tcm->tcm_parent == TC_H_ROOT) {
            d->k->root_ours[dir] = enf_slinux_root_is_ours(tcm, &a);
        }
    }
    if (tcm->tcm_ifindex == d->st->ifindex[0] &&
        tcm->tcm_parent == TC_H_INGRESS) {
        d->k->hook = tcm->tcm_handle == TC_H_MAJ(TC_H_INGRESS) &&
                     enf_slinux_kind_is(&a, "ingress");
    }
    return MNL_CB_OK;
}

static int enf_slinux_class_cb(const struct nlmsghdr *nlh, void *data)
{
    struct enf_slinux_dump *d = data;
    struct enf_slinux_attrs a;
    const struct nlattr *tb[TCA_HTB_MAX + 1];
    const struct tcmsg *tcm = enf_slinux_tcmsg(nlh, &a);
    if (tcm == NULL || tcm->tcm_ifindex != enf_slinux_ifindex(d->st, d->dir) ||
        TC_H_MAJ(tcm->tcm_handle) != ENF_SHAPE_MAJOR ||
        TC_H_MIN(tcm->tcm_handle) == 0 || !enf_slinux_kind_is(&a, "htb") ||
        a.tb[TCA_OPTIONS] == NULL ||
        enf_slinux_parse_nested(a.tb[TCA_OPTIONS], tb, TCA_HTB_MAX) < 0 ||
        tb[TCA_HTB_PARMS] == NULL ||
        mnl_attr_get_payload_len(tb[TCA_HTB_PARMS]) <
            sizeof(struct tc_htb_opt)) {
        return MNL_CB_OK;
    }
    const struct tc_htb_opt *o = mnl_attr_get_payload(tb[TCA_HTB_PARMS]);
    struct enf_shape_kclass c = {
        .minor = (uint16_t)TC_H_MIN(tcm->tcm_handle),
        .rate = tb[TCA_HTB_RATE64] ? mnl_attr_get_u64(tb[TCA_HTB_RATE64])
                                   : o->rate.rate,
        .ceil = tb[TCA_HTB_CEIL64] ? mnl_attr_get_u64(tb[TCA_HTB_CEIL64])
                                   : o->ceil.rate,
    };
    c.burst = enf_slinux_bytes(o->buffer, c.rate);
    c.cburst = enf_slinux_bytes(o->cbuffer, c.ceil);
    int err = enf_shape_kcvec_push(&d->k->classes[d->dir], &c);
    if (err < 0 && d->err == 0) {
        d->err = err;
    }
    return MNL_CB_OK;
}

/* Whether actions (TCA_U32_ACT) are exactly one mirred redirect to the
 * IFB device's egress. */
static bool enf_slinux_redirects(const struct enf_slinux *st,
                                 const struct nlattr *acts)
{
    const struct nlattr *tb[3];
    const struct nlattr *at[TCA_ACT_MAX + 1];
    const struct nlattr *mt[TCA_MIRRED_MAX + 1];
    if (enf_slinux_parse_nested(acts, tb, 2) < 0 || tb[1] == NULL ||
        tb[2] != NULL || enf_slinux_parse_nested(tb[1], at, TCA_ACT_MAX) < 0 ||
        at[TCA_ACT_KIND] == NULL ||
        strcmp(mnl_attr_get_str(at[TCA_ACT_KIND]), "mirred") != 0 ||
        at[TCA_ACT_OPTIONS] == NULL ||
        enf_slinux_parse_nested(at[TCA_ACT_OPTIONS], mt, TCA_MIRRED_MAX) < 0 ||
        mt[TCA_MIRRED_PARMS] == NULL ||
        mnl_attr_get_payload_len(mt[TCA_MIRRED_PARMS]) <
            sizeof(struct tc_mirred)) {
        return false;
    }
    const struct tc_mirred *m = mnl_attr_get_payload(mt[TCA_MIRRED_PARMS]);
    return m->eaction == TCA_EGRESS_REDIR && m->action == TC_ACT_STOLEN &&
           (int)m->ifindex == st->ifindex[1] && st->ifindex[1] > 0;
}

/* Classifies a u32 key node by its selector. */
static void enf_slinux_knode(const struct enf_slinux *st,
                             const struct nlattr *const *tb,
                             int dir,
                             struct enf_shape_kfilter *f)
{
    f->kind = ENF_SHAPE_F_OTHER;
    if (tb[TCA_U32_SEL] == NULL ||
        mnl_attr_get_payload_len(tb[TCA_U32_SEL]) <
            sizeof(struct tc_u32_sel) + sizeof(struct tc_u32_key) ||
        tb[TCA_U32_POLICE] != NULL) {
        return;
    }
    const struct tc_u32_sel *sel = mnl_attr_get_payload(tb[TCA_U32_SEL]);
    const struct tc_u32_key *key = &sel->keys[0];
    int off = enf_slinux_ip_off(dir);
    if (sel->nkeys != 1 || sel->offmask != 0 || key->off != off ||
        key->offmask != 0) {
        return;
    }
    if (dir == ENF_SHAPE_HOOK) {
        if (key->mask == 0 && tb[TCA_U32_LINK] == NULL &&
            tb[TCA_U32_ACT] != NULL &&
            enf_slinux_redirects(st, tb[TCA_U32_ACT])) {
            f->kind = ENF_SHAPE_F_REDIRECT;
        }
        return;
    }
    if (tb[TCA_U32_ACT] != NULL) {
        return;
    }
    if (tb[TCA_U32_LINK] != NULL) {
        if (key->mask == 0 && sel->hoff == off && sel->hmask == htonl(0xffu)) {
            f->kind = ENF_SHAPE_F_LINK;
            f->link = mnl_attr_get_u32(tb[TCA_U32_LINK]);
        }
        return;
    }
    if (key->mask != 0xffffffffu || !(sel->flags & TC_U32_TERMINAL)) {
        return;
    }
    f->kind = ENF_SHAPE_F_CLIENT;
    f->ip = ntohl(key->val);
    if (tb[TCA_U32_CLASSID] != NULL) {
        f->classid = mnl_attr_get_u32(tb[TCA_U32_CLASSID]);
    }
}

static int enf_slinux_filter_cb(const struct nlmsghdr *nlh, void *data)
{
    struct enf_slinux_dump *d = data;
    struct enf_slinux_attrs a;
    const struct tcmsg *tcm = enf_slinux_tcmsg(nlh, &a);
    if (tcm == NULL || tcm->tcm_ifindex != enf_slinux_ifindex(d->st, d->dir)) {
        return MNL_CB_OK;
    }
    struct enf_shape_kfilter f = {
        .prio = (uint16_t)(TC_H_MAJ(tcm->tcm_info) >> 16),
        .proto = ntohs((uint16_t)TC_H_MIN(tcm->tcm_info)),
        .handle = tcm->tcm_handle,
        .kind = ENF_SHAPE_F_OTHER,
    };
    const struct nlattr *tb[TCA_U32_MAX + 1];
    if (a.tb[TCA_OPTIONS] == NULL && tcm->tcm_handle == 0) {
        f.kind = ENF_SHAPE_F_PROTO;
    } else if (enf_slinux_kind_is(&a, "u32") && a.tb[TCA_OPTIONS] != NULL &&
               enf_slinux_parse_nested(a.tb[TCA_OPTIONS], tb, TCA_U32_MAX) ==
                   0) {
        if (tb[TCA_U32_DIVISOR] != NULL) {
            f.kind = ENF_SHAPE_F_TABLE;
            f.divisor = mnl_attr_get_u32(tb[TCA_U32_DIVISOR]);
        } else {
            enf_slinux_knode(d->st, tb, d->dir, &f);
        }
    }
    int err = enf_shape_kfvec_push(&d->k->filters[d->dir], &f);
    if (err < 0 && d->err == 0) {
        d->err = err;
    }
    return MNL_CB_OK;
}

static int enf_slinux_dump_one(struct enf_slinux *st,
                               int ifindex,
                               uint16_t type,
                               uint32_t parent,
                               mnl_cb_t cb,
                               struct enf_slinux_dump *d)
{
    struct nlmsghdr *nlh =
        enf_slinux_msg(st, ifindex, type, NLM_F_DUMP, parent, 0, 0);
    int err = enf_slinux_talk(st, nlh, cb, d);
    return err < 0 ? err : d->err;
}

/* The ifindex of an existing, up device, else 0. */
static int enf_slinux_up_index(const char *name)
{
    unsigned idx = if_nametoindex(name);
    int fd = idx != 0 ? socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0) : -1;
    if (fd < 0) {
        return 0;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ovha_strlcpy(ifr.ifr_name, name, sizeof(ifr.ifr_name));
    int up = ioctl(fd, SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags & IFF_UP);
    close(fd);
    return up ? (int)idx : 0;
}

static int enf_slinux_dump(void *state, struct enf_shape_kstate *ret)
{
    struct enf_slinux *st = state;
    unsigned idx = if_nametoindex(st->dev);
    if (idx == 0) {
        return -ENODEV;
    }
    st->ifindex[0] = (int)idx;
    st->ifindex[1] = enf_slinux_up_index(st->ifb);
    ret->ifb = st->ifindex[1] > 0;
    struct enf_slinux_dump d = { .st = st, .k = ret };
    int err =
        enf_slinux_dump_one(st, 0, RTM_GETQDISC, 0, enf_slinux_qdisc_cb, &d);
    for (int dir = 0; dir < 2 && err == 0; dir++) {
        if (ret->root_ours[dir]) {
            d.dir = dir;
            err =
                enf_slinux_dump_one(st, enf_slinux_ifindex(st, dir),
                                    RTM_GETTCLASS, 0, enf_slinux_class_cb, &d);
        }
    }
    for (int dir = 0; dir < 3 && err == 0; dir++) {
        if (dir == ENF_SHAPE_HOOK ? !ret->hook : !ret->root_ours[dir]) {
            continue;
        }
        d.dir = dir;
        err = enf_slinux_dump_one(st, enf_slinux_ifindex(st, dir),
                                  RTM_GETTFILTER, enf_slinux_filter_parent(dir),
                                  enf_slinux_filter_cb, &d);
    }
    /* The device vanished between the lookup and the dump. */
    return err < 0 && if_nametoindex(st->dev) == 0 ? -ENODEV : err;
}

/* ---- requests ------------------------------------------------------------ */

static int enf_slinux_ack(struct enf_slinux *st, struct nlmsghdr *nlh)
{
    nlh->nlmsg_flags |= NLM_F_ACK;
    return enf_slinux_talk(st, nlh, NULL, NULL);
}

/* Creates the IFB device, up; or sets an existing one up. */
static int enf_slinux_ifb_set(struct enf_slinux *st)
{
    unsigned idx = if_nametoindex(st->ifb);
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(st->buf);
    nlh->nlmsg_type = RTM_NEWLINK;
    nlh->nlmsg_flags = NLM_F_REQUEST | (idx ? 0 : NLM_F_CREATE | NLM_F_EXCL);
    nlh->nlmsg_seq = ++st->seq;
    struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_index = (int)idx;
    ifi->ifi_flags = IFF_UP;
    ifi->ifi_change = IFF_UP;
    if (idx == 0) {
        mnl_attr_put_strz(nlh, IFLA_IFNAME, st->ifb);
        struct nlattr *li = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
        mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "ifb");
        mnl_attr_nest_end(nlh, li);
    }
    int err = enf_slinux_ack(st, nlh);
    if (err == 0) {
        st->ifindex[1] = (int)if_nametoindex(st->ifb);
        err = st->ifindex[1] > 0 ? 0 : -ENODEV;
    }
    return err;
}

static int enf_slinux_root_set(struct enf_slinux *st, int dir)
{
    /* Drop whatever root is there (the default one has handle 0 and
     * cannot be deleted: that error is expected), then create ours. */
    int ifindex = enf_slinux_ifindex(st, dir);
    if (ifindex <= 0) {
        return -ENODEV;
    }
    struct nlmsghdr *nlh =
        enf_slinux_msg(st, ifindex, RTM_DELQDISC, 0, TC_H_ROOT, 0, 0);
    (void)enf_slinux_ack(st, nlh);
    nlh =
        enf_slinux_msg(st, ifindex, RTM_NEWQDISC, NLM_F_CREATE | NLM_F_REPLACE,
                       TC_H_ROOT, ENF_SHAPE_MAJOR, 0);
    mnl_attr_put_strz(nlh, TCA_KIND, "htb");
    struct nlattr *opts = mnl_attr_nest_start(nlh, TCA_OPTIONS);
    struct tc_htb_glob g = { .version = TC_HTB_PROTOVER,
                             .rate2quantum = 10,
                             .defcls = ENF_SHAPE_DEFAULT_MINOR };
    mnl_attr_put(nlh, TCA_HTB_INIT, sizeof(g), &g);
    mnl_attr_nest_end(nlh, opts);
    return enf_slinux_ack(st, nlh);
}

static int enf_slinux_ingress_set(struct enf_slinux *st)
{
    /* A clsact (or a stale ingress) sits where ours goes: remove it. */
    struct nlmsghdr *nlh =
        enf_slinux_msg(st, st->ifindex[0], RTM_DELQDISC, 0, TC_H_INGRESS, 0, 0);
    (void)enf_slinux_ack(st, nlh);
    nlh = enf_slinux_msg(st, st->ifindex[0], RTM_NEWQDISC,
                         NLM_F_CREATE | NLM_F_EXCL, TC_H_INGRESS,
                         TC_H_MAJ(TC_H_INGRESS), 0);
    mnl_attr_put_strz(nlh, TCA_KIND, "ingress");
    return enf_slinux_ack(st, nlh);
}

static int enf_slinux_class_set(struct enf_slinux *st,
                                const struct enf_shape_req *req)
{
    struct nlmsghdr *nlh = enf_slinux_msg(
        st, enf_slinux_ifindex(st, req->dir), RTM_NEWTCLASS, NLM_F_CREATE,
        ENF_SHAPE_MAJOR, ENF_SHAPE_MAJOR | req->minor, 0);
    mnl_attr_put_strz(nlh, TCA_KIND, "htb");
    struct nlattr *opts = mnl_attr_nest_start(nlh, TCA_OPTIONS);
    struct tc_htb_opt o;
    memset(&o, 0, sizeof(o));
    enf_slinux_ratespec(&o.rate, req->rate);
    enf_slinux_ratespec(&o.ceil, req->rate);
    o.buffer = enf_slinux_ticks(req->burst, req->rate);
    o.cbuffer = o.buffer;
    /* What r2q 10 would give, kept in HTB's sane range so the kernel
     * does not warn once per class. */
    uint64_t q = req->rate / 10;
    o.quantum = (uint32_t)(q < 1514 ? 1514 : q > 200000 ? 200000 : q);
    mnl_attr_put(nlh, TCA_HTB_PARMS, sizeof(o), &o);
    mnl_attr_nest_end(nlh, opts);
    return enf_slinux_ack(st, nlh);
}

static int enf_slinux_class_del(struct enf_slinux *st,
                                const struct enf_shape_req *req)
{
    struct nlmsghdr *nlh =
        enf_slinux_msg(st, enf_slinux_ifindex(st, req->dir), RTM_DELTCLASS, 0,
                       ENF_SHAPE_MAJOR, ENF_SHAPE_MAJOR | req->minor, 0);
    return enf_slinux_ack(st, nlh);
}

static uint32_t enf_slinux_info(uint16_t prio, uint16_t proto)
{
    return TC_H_MAKE((uint32_t)prio << 16, htons(proto));
}

static struct nlmsghdr *enf_slinux_filter_msg(struct enf_slinux *st,
                                              uint16_t type,
                                              uint16_t flags,
                                              const struct enf_shape_req *req,
                                              uint32_t handle)
{
    struct nlmsghdr *nlh =
        enf_slinux_msg(st, enf_slinux_ifindex(st, req->dir), type, flags,
                       enf_slinux_filter_parent(req->dir), handle,
                       enf_slinux_info(ENF_SHAPE_PRIO, ENF_SHAPE_PROTO_IP));
    mnl_attr_put_strz(nlh, TCA_KIND, "u32");
    return nlh;
}

/* A one-key selector: (value & mask) at off; hashing when hmask. */
static void enf_slinux_put_sel(struct nlmsghdr *nlh,
                               int off,
                               uint32_t val,
                               uint32_t mask,
                               bool terminal,
                               uint32_t hmask)
{
    /* A selector with one key (keys[] is a flexible array member). */
    uint32_t raw[(sizeof(struct tc_u32_sel) + sizeof(struct tc_u32_key)) /
                 sizeof(uint32_t)];
    memset(raw, 0, sizeof(raw));
    struct tc_u32_sel *sel = (struct tc_u32_sel *)raw;
    sel->nkeys = 1;
    sel->flags = terminal ? TC_U32_TERMINAL : 0;
    sel->hmask = htonl(hmask);
    sel->hoff = hmask ? (short)off : 0;
    sel->keys[0].val = htonl(val);
    sel->keys[0].mask = htonl(mask);
    sel->keys[0].off = off;
    mnl_attr_put(nlh, TCA_U32_SEL, sizeof(raw), raw);
}

static int enf_slinux_proto_del(struct enf_slinux *st,
                                const struct enf_shape_req *req)
{
    struct nlmsghdr *nlh =
        enf_slinux_msg(st, enf_slinux_ifindex(st, req->dir), RTM_DELTFILTER, 0,
                       enf_slinux_filter_parent(req->dir), 0,
                       enf_slinux_info(req->prio, req->proto));
    return enf_slinux_ack(st, nlh);
}

static int enf_slinux_table_set(struct enf_slinux *st,
                                const struct enf_shape_req *req)
{
    struct nlmsghdr *nlh = enf_slinux_filter_msg(
        st, RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL, req, ENF_SHAPE_HT);
    struct nlattr *opts = mnl_attr_nest_start(nlh, TCA_OPTIONS);
    mnl_attr_put_u32(nlh, TCA_U32_DIVISOR, ENF_SHAPE_BUCKETS);
    mnl_attr_nest_end(nlh, opts);
    return enf_slinux_ack(st, nlh);
}

static int enf_slinux_link_set(struct enf_slinux *st,
                               const struct enf_shape_req *req)
{
    struct nlmsghdr *nlh =
        enf_slinux_filter_msg(st, RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL,
                              req, ENF_SHAPE_LINK_HANDLE);
    struct nlattr *opts = mnl_attr_nest_start(nlh, TCA_OPTIONS);
    enf_slinux_put_sel(nlh, enf_slinux_ip_off(req->dir), 0, 0, false, 0xffu);
    mnl_attr_put_u32(nlh, TCA_U32_LINK, ENF_SHAPE_HT);
    mnl_attr_nest_end(nlh, opts);
    return enf_slinux_ack(st, nlh);
}

/* The hook: every IPv4 packet the device receives goes to the IFB
 * device's egress (mirred redirect; the IFB device hands it back to the
 * stack after its qdisc). */
static int enf_slinux_redirect_set(struct enf_slinux *st,
                                   const struct enf_shape_req *req)
{
    if (st->ifindex[1] <= 0) {
        return -ENODEV;
    }
    struct nlmsghdr *nlh =
        enf_slinux_filter_msg(st, RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL,
                              req, ENF_SHAPE_LINK_HANDLE);
    struct nlattr *opts = mnl_attr_nest_start(nlh, TCA_OPTIONS);
    enf_slinux_put_sel(nlh, 0, 0, 0, true, 0);
    struct nlattr *acts = mnl_attr_nest_start(nlh, TCA_U32_ACT);
    struct nlattr *act = mnl_attr_nest_start(nlh, 1);
    mnl_attr_put_strz(nlh, TCA_ACT_KIND, "mirred");
    struct nlattr *aopts = mnl_attr_nest_start(nlh, TCA_ACT_OPTIONS);
    struct tc_mirred m;
    memset(&m, 0, sizeof(m));
    m.action = TC_ACT_STOLEN;
    m.eaction = TCA_EGRESS_REDIR;
    m.ifindex = (uint32_t)st->ifindex[1];
    mnl_attr_put(nlh, TCA_MIRRED_PARMS, sizeof(m), &m);
    mnl_attr_nest_end(nlh, aopts);
    mnl_attr_nest_end(nlh, act);
    mnl_attr_nest_end(nlh, acts);
    mnl_attr_nest_end(nlh, opts);
    return enf_slinux_ack(st, nlh);
}

static int enf_slinux_filter_set(struct enf_slinux *st,
                                 const struct enf_shape_req *req)
{
    struct nlmsghdr *nlh = enf_slinux_filter_msg(
        st, RTM_NEWTFILTER, NLM_F_CREATE, req, req->handle);
    struct nlattr *opts = mnl_attr_nest_start(nlh, TCA_OPTIONS);
    mnl_attr_put_u32(nlh, TCA_U32_HASH, req->handle & 0xfffff000u);
    enf_slinux_put_sel(nlh, enf_slinux_ip_off(req->dir), req->ip, 0xffffffffu,
                       true, 0);
    mnl_attr_put_u32(nlh, TCA_U32_CLASSID, ENF_SHAPE_MAJOR | req->minor);
    mnl_attr_nest_end(nlh, opts);
    return enf_slinux_ack(st, nlh);
}

static int enf_slinux_filter_del(struct enf_slinux *st,
                                 const struct enf_shape_req *req)
{
    struct nlmsghdr *nlh =
        enf_slinux_filter_msg(st, RTM_DELTFILTER, 0, req, req->handle);
    return enf_slinux_ack(st, nlh);
}

static int enf_slinux_request(void *state, const struct enf_shape_req *req)
{
    struct enf_slinux *st = state;
    if (st->ifindex[0] == 0) {
        return -ENODEV; /* never dumped: no device seen yet */
    }
    if (req->dir > ENF_SHAPE_HOOK) {
        return -EINVAL;
    }
    if (req->op != ENF_SHAPE_IFB_SET && enf_slinux_ifindex(st, req->dir) <= 0) {
        return -ENODEV; /* the IFB device is not there (yet) */
    }
    switch (req->op) {
    case ENF_SHAPE_IFB_SET:
        return enf_slinux_ifb_set(st);
    case ENF_SHAPE_ROOT_SET:
        return enf_slinux_root_set(st, req->dir);
    case ENF_SHAPE_INGRESS_SET:
        return enf_slinux_ingress_set(st);
    case ENF_SHAPE_REDIRECT_SET:
        return enf_slinux_redirect_set(st, req);
    case ENF_SHAPE_CLASS_SET:
        return enf_slinux_class_set(st, req);
    case ENF_SHAPE_CLASS_DEL:
        return enf_slinux_class_del(st, req);
    case ENF_SHAPE_PROTO_DEL:
        return enf_slinux_proto_del(st, req);
    case ENF_SHAPE_TABLE_SET:
        return enf_slinux_table_set(st, req);
    case ENF_SHAPE_LINK_SET:
        return enf_slinux_link_set(st, req);
    case ENF_SHAPE_FILTER_SET:
        return enf_slinux_filter_set(st, req);
    case ENF_SHAPE_FILTER_DEL:
        return enf_slinux_filter_del(st, req);
    default:
        return -EINVAL;
    }
}

const struct enf_shape_ops enf_shape_linux_ops = {
    .name = "linux",
    .open = enf_slinux_open,
    .close = enf_slinux_close,
    .dump = enf_slinux_dump,
    .request = enf_slinux_request,
};
