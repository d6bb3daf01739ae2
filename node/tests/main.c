/* Runs every node test group; the exit code is the number of failures. */
#include <stdio.h>
#include <stdlib.h>

#include "node_tests.h"

void node_test_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        abort();
    }
    fputs(text, f);
    fclose(f);
}

int main(void)
{
    int failed = 0;
    failed += node_test_config();
    failed += node_test_http();
    failed += node_test_policy();
    failed += node_test_clients();
    failed += node_test_supervisor();
    failed += node_test_cache();
    failed += node_test_api_cluster();
    failed += node_test_upstream();
    failed += node_test_answer();
    failed += node_test_tiers();
    return failed;
}
