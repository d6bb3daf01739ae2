/* mgmt: helpers shared between the module's own files. Not public. */
#ifndef OVHA_MGMT_INTERNAL_H
#define OVHA_MGMT_INTERNAL_H

#include <stdbool.h>

#include "mgmt/mgmt.h"

/* Tag carried by a MGMT_EV_PARSE_ERROR that concerns a reply (a non-'>'
 * line), so the connection knows reply order may be affected. */
#define MGMT_TAG_REPLY "REPLY"

/* True while the parser is dropping the rest of a broken multi-line reply
 * up to its END line: the reply order is then still intact. */
bool mgmt_parser_skipping_reply(const struct mgmt_parser *p);

#endif
