/* node/metrics: GET /metrics (stub until filled in). */
#include "node/node.h"

int node_metrics_register(struct node *n)
{
    (void)n;
    return 0;
}
