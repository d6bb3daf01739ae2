/* node/api_admin: the rest of the admin API (stub until filled in). */
#include "node/node.h"

int node_api_admin_register(struct node *n)
{
    (void)n;
    return 0;
}
