/* enforce/nl: the rtnetlink socket the libnl backends (route, fdb) share:
 * one socket with an ack/error callback pair, a link cache, and libnl's
 * error codes mapped to errno. Not a public header. */
#ifndef OVHA_ENFORCE_NL_INT_H
#define OVHA_ENFORCE_NL_INT_H

#include <netlink/cache.h>
#include <netlink/handlers.h>
#include <netlink/socket.h>

struct enf_nl {
    struct nl_sock *sk;
    struct nl_cache *links; /* filled by the backend's dump, may be NULL */
    struct nl_cb *ack_cb;   /* NL_CB_ACK / error: set ack_err */
    int ack_err;            /* 1 while a request waits for its answer */
};

/* A libnl error (NLE_*, either sign) as a negative errno. */
int enf_nl_errno(int nlerr);
/* Connects a NETLINK_ROUTE socket. On failure the caller still calls
 * enf_nl_close. Returns 0, -ENOMEM or the mapped libnl error. */
int enf_nl_open(struct enf_nl *nl);
/* Sends msg (consumed) and waits for the kernel's answer: 0 or a
 * negative errno. */
int enf_nl_request(struct enf_nl *nl, struct nl_msg *msg);
/* Frees what enf_nl_open and the backend put there. */
void enf_nl_close(struct enf_nl *nl);

#endif
