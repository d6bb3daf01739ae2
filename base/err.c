/* Error text for negative errno values and the project's own codes. */
#include <string.h>

#include "base/base.h"

const char *ovha_strerror(int err)
{
    switch (err) {
    case OVHA_ENOTLEADER:
        return "not the raft leader";
    case OVHA_ETIMEDOUT:
        return "deadline passed";
    case OVHA_EPROTO:
        return "protocol error from peer";
    case OVHA_EINJECT:
        return "field contains forbidden characters";
    case OVHA_ELIMIT:
        return "size or count limit exceeded";
    case OVHA_ECLOSED:
        return "object closed";
    case OVHA_ECONFIG:
        return "invalid configuration";
    case OVHA_EUNKNOWN:
        return "outcome unknown";
    default:
        break;
    }
    if (err < 0 && err > -4096) {
        return strerror(-err);
    }
    return "unknown error";
}
