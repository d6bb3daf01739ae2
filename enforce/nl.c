/* enforce/nl: the rtnetlink socket shared by the libnl backends. See
 * nl_int.h. */
#include <errno.h>
#include <netlink/errno.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>

#include "base/base.h"
#include "enforce/nl_int.h"

int enf_nl_errno(int nlerr)
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
        return -ESRCH;
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

static int enf_nl_ack_cb(struct nl_msg *msg, void *arg)
{
    (void)msg;
    *(int *)arg = 0;
    return NL_STOP;
}

static int enf_nl_error_cb(struct sockaddr_nl *nla,
                           struct nlmsgerr *e,
                           void *arg)
{
    (void)nla;
    *(int *)arg = e->error != 0 ? e->error : 0;
    return NL_STOP;
}

int enf_nl_open(struct enf_nl *nl)
{
    nl->sk = nl_socket_alloc();
    nl->ack_cb = nl_cb_alloc(NL_CB_DEFAULT);
    if (nl->sk == NULL || nl->ack_cb == NULL) {
        return -ENOMEM;
    }
    nl_cb_set(nl->ack_cb, NL_CB_ACK, NL_CB_CUSTOM, enf_nl_ack_cb, &nl->ack_err);
    nl_cb_err(nl->ack_cb, NL_CB_CUSTOM, enf_nl_error_cb, &nl->ack_err);
    int err = nl_connect(nl->sk, NETLINK_ROUTE);
    if (err < 0) {
        return enf_nl_errno(err);
    }
    /* Dump messages can be larger than libnl's default read size. */
    nl_socket_enable_msg_peek(nl->sk);
    return 0;
}

void enf_nl_close(struct enf_nl *nl)
{
    if (nl->links != NULL) {
        nl_cache_free(nl->links);
    }
    if (nl->ack_cb != NULL) {
        nl_cb_put(nl->ack_cb);
    }
    nl_socket_free(nl->sk);
    nl->sk = NULL;
    nl->links = NULL;
    nl->ack_cb = NULL;
}

int enf_nl_request(struct enf_nl *nl, struct nl_msg *msg)
{
    int err = nl_send_auto(nl->sk, msg);
    nlmsg_free(msg);
    if (err < 0) {
        return enf_nl_errno(err);
    }
    nl->ack_err = 1;
    /* One ack per request; the bound only guards against a socket that
     * keeps delivering unrelated messages. */
    for (int i = 0; i < 64 && nl->ack_err == 1; i++) {
        err = nl_recvmsgs(nl->sk, nl->ack_cb);
        if (err < 0 && nl->ack_err == 1) {
            return enf_nl_errno(err);
        }
    }
    return nl->ack_err == 1 ? -EIO : nl->ack_err;
}
