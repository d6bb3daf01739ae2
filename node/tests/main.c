/* Runs every node test group; the exit code is the number of failures. */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

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

pid_t node_test_spawn_line(char *const argv[], char *line, size_t len)
{
    int fds[2];
    size_t got = 0;
    struct pollfd p;

    memset(line, 0, len);
    if (pipe(fds) < 0) {
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        /* Dies with the test binary, even when it crashes. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    p.fd = fds[0];
    p.events = POLLIN;
    /* Bounded: a server prints its address within seconds or we give up. */
    while (got < len - 1 && strchr(line, '\n') == NULL) {
        if (poll(&p, 1, 10000) <= 0) {
            break;
        }
        ssize_t n = read(fds[0], line + got, len - 1 - got);
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    close(fds[0]);
    return pid;
}

int main(void)
{
    int failed = 0;
    failed += node_test_config();
    failed += node_test_auth();
    failed += node_test_baseline();
    failed += node_test_audit();
    failed += node_test_http();
    failed += node_test_policy();
    failed += node_test_clients();
    failed += node_test_supervisor();
    failed += node_test_cache();
    failed += node_test_api_cluster();
    failed += node_test_upstream();
    failed += node_test_answer();
    failed += node_test_tiers();
    failed += node_test_metrics();
    return failed;
}
