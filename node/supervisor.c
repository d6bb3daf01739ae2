/* node/supervisor: openvpn as a supervised child. See supervisor.h. */
#include "node/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"

#define NODE_SUP_MAX_ARGS  16
#define NODE_SUP_MAX_CRASH 64

struct node_sup {
    uv_loop_t *loop;
    const struct node_cfg *cfg;
    char self_exe[4096];
    char mgmt_dir[512];
    char mgmt_path[600];
    char conf_path[600];
    char pid_path[600];
    enum node_sup_state state;
    uv_process_t proc;
    bool proc_active; /* proc initialised and not yet closed */
    uv_timer_t timer; /* restart backoff, then SIGKILL deadline */
    uint64_t started_at;
    uint64_t restarts;
    unsigned backoff_step;
    uint64_t crashes[NODE_SUP_MAX_CRASH]; /* ring of crash times */
    unsigned ncrashes;
    node_sup_state_cb cb;
    void *data;
    bool closing;
    void (*close_cb)(void *data);
    void *close_data;
    int pending_closes; /* handles still to close once closing */
};

static const char *const node_sup_names[] = {
    [NODE_SUP_STOPPED] = "stopped", [NODE_SUP_RUNNING] = "running",
    [NODE_SUP_BACKOFF] = "backoff", [NODE_SUP_STOPPING] = "stopping",
    [NODE_SUP_FAILED] = "failed",
};

/* Allowed transitions, as a bitmask of next states per state. */
static const unsigned node_sup_next[] = {
    [NODE_SUP_STOPPED] = 1u << NODE_SUP_RUNNING,
    [NODE_SUP_RUNNING] = (1u << NODE_SUP_BACKOFF) | (1u << NODE_SUP_FAILED) |
                         (1u << NODE_SUP_STOPPING),
    [NODE_SUP_BACKOFF] = (1u << NODE_SUP_RUNNING) | (1u << NODE_SUP_BACKOFF) |
                         (1u << NODE_SUP_FAILED) | (1u << NODE_SUP_STOPPED),
    [NODE_SUP_STOPPING] = 1u << NODE_SUP_STOPPED,
    [NODE_SUP_FAILED] = 1u << NODE_SUP_STOPPED,
};

static void node_sup_spawn_or_retry(struct node_sup *s);

const char *node_sup_state_name(enum node_sup_state st)
{
    return node_sup_names[st];
}

static void node_sup_set_state(struct node_sup *s, enum node_sup_state next)
{
    if ((node_sup_next[s->state] & (1u << next)) == 0) {
        LOG_ERR("supervisor", "bug: transition %s -> %s not allowed",
                node_sup_names[s->state], node_sup_names[next]);
        abort();
    }
    s->state = next;
    if (s->cb != NULL) {
        s->cb(s, next, s->data);
    }
}

int node_sup_new(uv_loop_t *loop,
                 const struct node_cfg *cfg,
                 const char *self_exe,
                 node_sup_state_cb cb,
                 void *data,
                 struct node_sup **ret)
{
    struct node_sup *s = ovha_calloc(1, sizeof(*s));
    if (s == NULL) {
        return -ENOMEM;
    }
    s->loop = loop;
    s->cfg = cfg;
    s->cb = cb;
    s->data = data;
    ovha_strlcpy(s->self_exe, self_exe, sizeof(s->self_exe));
    snprintf(s->mgmt_dir, sizeof(s->mgmt_dir), "%s/mgmt", cfg->state_dir);
    snprintf(s->mgmt_path, sizeof(s->mgmt_path), "%s/mgmt.sock", s->mgmt_dir);
    snprintf(s->conf_path, sizeof(s->conf_path), "%s/openvpn.conf",
             cfg->state_dir);
    snprintf(s->pid_path, sizeof(s->pid_path), "%s/openvpn.pid",
             cfg->state_dir);
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    *ret = s;
    return 0;
}

/* mkdir -p for one level and force the mode: an existing directory with
 * looser permissions is tightened, since the socket inside grants full
 * control over every client. */
static int node_sup_mkdir_private(const char *path)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        return -errno;
    }
    struct stat st;
    if (lstat(path, &st) != 0) {
        return -errno;
    }
    if (!S_ISDIR(st.st_mode)) {
        return -ENOTDIR;
    }
    if ((st.st_mode & 0777) != 0700 && chmod(path, 0700) != 0) {
        return -errno;
    }
    return 0;
}

/* True when /proc/pid/cmdline mentions needle: the recorded pid is still
 * the openvpn we started on our config, not a recycled pid. */
static bool node_sup_pid_runs(int pid, const char *needle)
{
    char path[64];
    char cmd[8192];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    ssize_t n = read(fd, cmd, sizeof(cmd) - 1);
    close(fd);
    if (n <= 0) {
        return false;
    }
    for (ssize_t i = 0; i < n; i++) {
        if (cmd[i] == '\0') {
            cmd[i] = ' ';
        }
    }
    cmd[n] = '\0';
    return strstr(cmd, needle) != NULL;
}

/* Kills an openvpn left by a previous ovhad run (should not exist thanks
 * to PDEATHSIG; this covers a trampoline killed between fork and prctl).
 * Runs once before the loop starts, so the bounded wait is acceptable. */
static void node_sup_reap_orphan(struct node_sup *s)
{
    FILE *f = fopen(s->pid_path, "re");
    if (f == NULL) {
        return;
    }
    int pid = 0;
    if (fscanf(f, "%d", &pid) != 1) {
        pid = 0;
    }
    fclose(f);
    if (pid > 1 && node_sup_pid_runs(pid, s->conf_path)) {
        LOG_WARN("supervisor",
                 "killing orphan openvpn pid=%d from a "
                 "previous run",
                 pid);
        kill(pid, SIGKILL);
        for (int i = 0; i < 100 && kill(pid, 0) == 0 &&
                        node_sup_pid_runs(pid, s->conf_path);
             i++) {
            struct timespec ts = { 0, 10 * 1000 * 1000 };
            nanosleep(&ts, NULL);
        }
    }
    unlink(s->pid_path);
}

static int node_sup_write_pid(struct node_sup *s, int pid)
{
    char tmp[700];
    snprintf(tmp, sizeof(tmp), "%s.tmp", s->pid_path);
    FILE *f = fopen(tmp, "we");
    if (f == NULL) {
        return -errno;
    }
    fprintf(f, "%d\n", pid);
    if (fclose(f) != 0 || rename(tmp, s->pid_path) != 0) {
        return -errno;
    }
    return 0;
}

static int node_sup_prepare(struct node_sup *s)
{
    int rv = node_sup_mkdir_private(s->cfg->state_dir);
    if (rv == 0) {
        rv = node_sup_mkdir_private(s->mgmt_dir);
    }
    if (rv != 0) {
        LOG_ERR("supervisor", "state directory %s: %s", s->cfg->state_dir,
                ovha_strerror(rv));
        return rv;
    }
    node_sup_reap_orphan(s);
    if (unlink(s->mgmt_path) == 0) {
        LOG_INFO("supervisor", "removed stale management socket %s",
                 s->mgmt_path);
    }
    if (s->cfg->openvpn.config[0] == '\0') {
        rv = node_sup_write_config(s->cfg, s->mgmt_path, s->conf_path);
        if (rv != 0) {
            LOG_ERR("supervisor", "writing %s: %s", s->conf_path,
                    ovha_strerror(rv));
            return rv;
        }
    }
    return 0;
}

/* Frees s once every handle counted in pending_closes has closed. */
static void node_sup_handle_closed(struct node_sup *s)
{
    if (!s->closing || --s->pending_closes > 0) {
        return;
    }
    void (*cb)(void *) = s->close_cb;
    void *data = s->close_data;
    ovha_free(s);
    cb(data);
}

static void node_sup_proc_close_cb(uv_handle_t *h)
{
    struct node_sup *s = h->data;
    s->proc_active = false;
    node_sup_handle_closed(s);
}

static void node_sup_timer_close_cb(uv_handle_t *h)
{
    node_sup_handle_closed(h->data);
}

/* Records a crash and says whether the crash-loop limit is exceeded. */
static bool node_sup_crash_loop(struct node_sup *s, uint64_t now)
{
    const struct node_cfg_openvpn *o = &s->cfg->openvpn;
    s->crashes[s->ncrashes % NODE_SUP_MAX_CRASH] = now;
    s->ncrashes++;
    unsigned recent = 0;
    unsigned n =
        s->ncrashes < NODE_SUP_MAX_CRASH ? s->ncrashes : NODE_SUP_MAX_CRASH;
    for (unsigned i = 0; i < n; i++) {
        if (now - s->crashes[i] < o->crash_loop_window_ms) {
            recent++;
        }
    }
    return recent > o->crash_loop_limit;
}

static uint64_t node_sup_backoff(struct node_sup *s, uint64_t ran_ms)
{
    const struct node_cfg_openvpn *o = &s->cfg->openvpn;
    if (ran_ms >= o->crash_loop_window_ms) {
        s->backoff_step = 0; /* it ran stably: start again from min */
    }
    uint64_t d = o->restart_backoff_min_ms;
    for (unsigned i = 0; i < s->backoff_step && d < o->restart_backoff_max_ms;
         i++) {
        d *= 2;
    }
    s->backoff_step++;
    return d < o->restart_backoff_max_ms ? d : o->restart_backoff_max_ms;
}

static void node_sup_restart_timer_cb(uv_timer_t *t)
{
    struct node_sup *s = t->data;
    if (s->state == NODE_SUP_BACKOFF) {
        node_sup_spawn_or_retry(s);
    }
}

static void node_sup_exit_cb(uv_process_t *p, int64_t status, int sig)
{
    struct node_sup *s = p->data;
    uint64_t now = ovha_now_mono_ms();
    uint64_t ran = now - s->started_at;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)p, node_sup_proc_close_cb);
    unlink(s->pid_path);
    unlink(s->mgmt_path);
    if (s->state == NODE_SUP_STOPPING) {
        LOG_INFO("supervisor", "openvpn stopped (status=%lld signal=%d)",
                 (long long)status, sig);
        node_sup_set_state(s, NODE_SUP_STOPPED);
        uv_close((uv_handle_t *)&s->timer, node_sup_timer_close_cb);
        return;
    }
    LOG_WARN("supervisor",
             "openvpn exited: status=%lld signal=%d after %llu ms",
             (long long)status, sig, (unsigned long long)ran);
    if (node_sup_crash_loop(s, now)) {
        LOG_ERR("supervisor",
                "openvpn crashed more than %u times within "
                "%llu ms: giving up (crash-loop limit)",
                s->cfg->openvpn.crash_loop_limit,
                (unsigned long long)s->cfg->openvpn.crash_loop_window_ms);
        node_sup_set_state(s, NODE_SUP_FAILED);
        return;
    }
    uint64_t delay = node_sup_backoff(s, ran);
    LOG_INFO("supervisor", "restarting openvpn in %llu ms",
             (unsigned long long)delay);
    node_sup_set_state(s, NODE_SUP_BACKOFF);
    uv_timer_start(&s->timer, node_sup_restart_timer_cb, delay, 0);
}

/* Builds argv: the trampoline, then openvpn and its options. */
static void node_sup_build_argv(struct node_sup *s,
                                char *ppid,
                                size_t ppidlen,
                                char **argv)
{
    const struct node_cfg_openvpn *o = &s->cfg->openvpn;
    int i = 0;
    snprintf(ppid, ppidlen, "%d", (int)getpid());
    argv[i++] = s->self_exe;
    argv[i++] = "--exec-child";
    argv[i++] = ppid;
    argv[i++] = (char *)o->binary;
    argv[i++] = "--config";
    if (o->config[0] != '\0') {
        /* The operator's file, plus exactly what ovhad needs to drive it;
         * options given later on the command line take precedence. */
        argv[i++] = (char *)o->config;
        argv[i++] = "--management";
        argv[i++] = s->mgmt_path;
        argv[i++] = "unix";
        argv[i++] = "--management-client-auth";
        argv[i++] = "--management-hold";
        argv[i++] = "--writepid";
        argv[i++] = s->conf_path; /* marker for the orphan check */
    } else {
        argv[i++] = s->conf_path;
    }
    argv[i] = NULL;
}

static int node_sup_spawn(struct node_sup *s)
{
    char ppid[16];
    char *argv[NODE_SUP_MAX_ARGS];
    node_sup_build_argv(s, ppid, sizeof(ppid), argv);
    uv_stdio_container_t stdio[3] = {
        { .flags = UV_IGNORE },
        { .flags = UV_INHERIT_FD, .data.fd = STDERR_FILENO },
        { .flags = UV_INHERIT_FD, .data.fd = STDERR_FILENO },
    };
    uv_process_options_t opts = {
        .exit_cb = node_sup_exit_cb,
        .file = s->self_exe,
        .args = argv,
        .stdio = stdio,
        .stdio_count = 3,
    };
    s->proc.data = s;
    int rv = uv_spawn(s->loop, &s->proc, &opts);
    s->proc_active = true;
    if (rv != 0) {
        /* libuv requires uv_close even when spawn failed. */
        uv_close((uv_handle_t *)&s->proc, node_sup_proc_close_cb);
        return rv;
    }
    s->started_at = ovha_now_mono_ms();
    node_sup_write_pid(s, s->proc.pid);
    LOG_INFO("supervisor", "started openvpn pid=%d config=%s", s->proc.pid,
             s->cfg->openvpn.config[0] != '\0' ? s->cfg->openvpn.config
                                               : s->conf_path);
    return 0;
}

static void node_sup_spawn_or_retry(struct node_sup *s)
{
    if (s->state == NODE_SUP_BACKOFF) {
        s->restarts++;
    }
    int rv = node_sup_spawn(s);
    if (rv == 0) {
        node_sup_set_state(s, NODE_SUP_RUNNING);
        return;
    }
    LOG_ERR("supervisor", "spawning openvpn: %s", ovha_strerror(rv));
    /* Only reached from the restart timer, so the state is BACKOFF. */
    if (node_sup_crash_loop(s, ovha_now_mono_ms())) {
        node_sup_set_state(s, NODE_SUP_FAILED);
        return;
    }
    uv_timer_start(&s->timer, node_sup_restart_timer_cb, node_sup_backoff(s, 0),
                   0);
}

int node_sup_start(struct node_sup *s)
{
    int rv = node_sup_prepare(s);
    if (rv != 0) {
        return rv;
    }
    rv = node_sup_spawn(s);
    if (rv != 0) {
        LOG_ERR("supervisor", "spawning %s: %s", s->cfg->openvpn.binary,
                ovha_strerror(rv));
        return rv;
    }
    node_sup_set_state(s, NODE_SUP_RUNNING);
    return 0;
}

static void node_sup_kill_timer_cb(uv_timer_t *t)
{
    struct node_sup *s = t->data;
    if (s->proc_active && s->state == NODE_SUP_STOPPING) {
        LOG_WARN("supervisor",
                 "openvpn ignored SIGTERM for %llu ms; "
                 "sending SIGKILL",
                 (unsigned long long)s->cfg->openvpn.stop_timeout_ms);
        uv_process_kill(&s->proc, SIGKILL);
    }
}

void node_sup_close(struct node_sup *s, void (*cb)(void *data), void *data)
{
    if (s == NULL) {
        cb(data);
        return;
    }
    uv_timer_stop(&s->timer);
    s->closing = true;
    s->close_cb = cb;
    s->close_data = data;
    /* The timer always closes; the process handle too if still open (its
     * close may already be under way after an exit). */
    s->pending_closes = 1 + (s->proc_active ? 1 : 0);
    if (s->state == NODE_SUP_RUNNING) {
        /* The exit callback closes both handles. */
        node_sup_set_state(s, NODE_SUP_STOPPING);
        uv_process_kill(&s->proc, SIGTERM);
        uv_timer_start(&s->timer, node_sup_kill_timer_cb,
                       s->cfg->openvpn.stop_timeout_ms, 0);
        return;
    }
    uv_close((uv_handle_t *)&s->timer, node_sup_timer_close_cb);
}

enum node_sup_state node_sup_state(const struct node_sup *s)
{
    return s->state;
}

const char *node_sup_mgmt_path(const struct node_sup *s)
{
    return s->mgmt_path;
}

int node_sup_child_pid(const struct node_sup *s)
{
    return s->state == NODE_SUP_RUNNING || s->state == NODE_SUP_STOPPING
               ? s->proc.pid
               : 0;
}

uint64_t node_sup_restarts(const struct node_sup *s)
{
    return s->restarts;
}

int node_sup_exec_child(char **argv, int expected_ppid)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
        return -errno;
    }
    /* The parent may have died between fork and prctl. */
    if (getppid() != expected_ppid) {
        return -ESRCH;
    }
    execv(argv[0], argv);
    return -errno;
}
