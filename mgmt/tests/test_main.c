/* Runs every mgmt test group and prints "N passed, N failed". */
#include <stdio.h>

#include "mgmt/tests/tests.h"

int main(void)
{
    struct {
        const char *name;
        const struct CMUnitTest *t;
        size_t n;
    } groups[] = {
        { "mgmt_parser", mgmt_parser_tests, mgmt_parser_ntests },
        { "mgmt_replay", mgmt_replay_tests, mgmt_replay_ntests },
        { "mgmt_status", mgmt_status_tests, mgmt_status_ntests },
        { "mgmt_cmd", mgmt_cmd_tests, mgmt_cmd_ntests },
        { "mgmt_conn", mgmt_conn_tests, mgmt_conn_ntests },
    };
    size_t total = 0, failed = 0;
    for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
        total += groups[i].n;
        failed += (size_t)_cmocka_run_group_tests(groups[i].name, groups[i].t,
                                                  groups[i].n, NULL, NULL);
    }
    printf("mgmt_tests: %zu passed, %zu failed\n", total - failed, failed);
    return failed == 0 ? 0 : 1;
}
