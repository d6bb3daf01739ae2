/* node unit tests: one binary, one group per topic file. */
#ifndef OVHA_NODE_TESTS_H
#define OVHA_NODE_TESTS_H

#include <stddef.h>
#include <sys/types.h>

int node_test_config(void);
int node_test_auth(void);
int node_test_baseline(void);
int node_test_audit(void);
int node_test_http(void);
int node_test_policy(void);
int node_test_clients(void);
int node_test_supervisor(void);
int node_test_cache(void);
int node_test_api_cluster(void);
int node_test_upstream(void);
int node_test_answer(void);
int node_test_tiers(void);
int node_test_metrics(void);

/* Writes text to a new file under a fresh temp dir; returns its path in
 * out (static storage per call site is the caller's). */
void node_test_write_file(const char *path, const char *text);
/* Starts argv (argv[0] looked up in PATH) with its stdout on a pipe, dying
 * with the test binary, and reads its first line (up to 10 s) into line.
 * Returns the child's pid (the caller stops it) or -1. */
pid_t node_test_spawn_line(char *const argv[], char *line, size_t len);

#endif
