/* node/supervisor: runs openvpn as a child of ovhad.
 *
 * Happy path: prepare the state directory (0700) and the management socket
 * directory (0700), remove a stale socket and any orphan recorded in the
 * pid file, write the generated openvpn config, spawn openvpn under
 * management-hold, report it running. The management connection (not this
 * file) connects, sets up and releases the hold.
 *
 * Failure modes: the child exits on its own (crash) -> restart after an
 * exponential backoff; more than crash_loop_limit crashes within
 * crash_loop_window_ms -> give up (state FAILED, failed_cb) with one log
 * line saying so. Stop: SIGTERM, then SIGKILL after stop_timeout_ms.
 *
 * The child never outlives ovhad: it is started through ovhad itself
 * (`ovhad --exec-child ...`), which sets PR_SET_PDEATHSIG=SIGKILL before it
 * execs openvpn, so even kill -9 of ovhad takes openvpn down. A pid file is
 * the second line of defence: at start, a recorded pid that still runs our
 * generated config is killed.
 */
#ifndef OVHA_NODE_SUPERVISOR_H
#define OVHA_NODE_SUPERVISOR_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "node/config.h"

enum node_sup_state {
    NODE_SUP_STOPPED = 0, /* not started, or stopped on request */
    NODE_SUP_RUNNING,     /* child alive */
    NODE_SUP_BACKOFF,     /* child died; restart timer armed */
    NODE_SUP_STOPPING,    /* SIGTERM sent, waiting for exit */
    NODE_SUP_FAILED,      /* crash-loop limit reached; gave up */
};

struct node_sup;

/* Called when the supervisor enters a state (RUNNING after each spawn,
 * BACKOFF after a crash, FAILED, STOPPED after a requested stop). */
typedef void (*node_sup_state_cb)(struct node_sup *s,
                                  enum node_sup_state state,
                                  void *data);

/* cfg must outlive s (the node swaps configs only for policy and log,
 * which the supervisor does not read). self_exe is the ovhad binary used
 * for the --exec-child trampoline. Returns 0 or -ENOMEM. */
int node_sup_new(uv_loop_t *loop,
                 const struct node_cfg *cfg,
                 const char *self_exe,
                 node_sup_state_cb cb,
                 void *data,
                 struct node_sup **ret);

/* Prepares directories and spawns the child. Errors (cannot create the
 * directories, cannot write the config, spawn failed) are returned and
 * logged by the caller; nothing is left running then. */
int node_sup_start(struct node_sup *s);

/* Stops the child (SIGTERM, then SIGKILL) and calls cb once it is gone
 * and every handle is closed; s is freed then. Safe in any state. */
void node_sup_close(struct node_sup *s, void (*cb)(void *data), void *data);

enum node_sup_state node_sup_state(const struct node_sup *s);
const char *node_sup_state_name(enum node_sup_state st);
/* Path of the management socket openvpn listens on. */
const char *node_sup_mgmt_path(const struct node_sup *s);
int node_sup_child_pid(const struct node_sup *s); /* 0 when none */
uint64_t node_sup_restarts(const struct node_sup *s);

/* Writes the generated openvpn config for cfg into path (0600). */
int node_sup_write_config(const struct node_cfg *cfg,
                          const char *mgmt_path,
                          const char *path);

/* The --exec-child trampoline: sets PR_SET_PDEATHSIG and execs argv[0].
 * Only returns on error (then the caller exits 127). */
int node_sup_exec_child(char **argv, int expected_ppid);

#endif
