/* ovhad: the gateway daemon.
 *
 * Wiring, in start order: config -> policy (the decider) -> supervisor
 * (prepares the state dir, spawns openvpn under management-hold) ->
 * management connection (connects, sets up, recovers, releases the hold)
 * -> connection path (clients) -> HTTP API. Stop order is the reverse,
 * with the child stopped first so no client is left half-decided.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "node/node.h"

#define NODE_DEFAULT_CONFIG "/etc/ovha/ovhad.yaml"

static void node_usage(FILE *f)
{
    fprintf(f,
            "usage: ovhad [-c CONFIG] [-n] [-h] [-V]\n"
            "  -c, --config FILE  configuration (default %s)\n"
            "  -n, --check        validate the configuration and exit\n"
            "  -V, --version      print the version and exit\n"
            "  -h, --help         this help\n"
            "Signals: SIGTERM/SIGINT stop openvpn then ovhad; SIGHUP reloads "
            "policy and log settings.\n",
            NODE_DEFAULT_CONFIG);
}

static void node_apply_log(const struct node_cfg *cfg)
{
    enum ovha_log_level lvl = OVHA_LOG_INFO;
    ovha_log_level_parse(cfg->log_level, &lvl);
    ovha_log_set_level(lvl);
    ovha_log_set_format((enum ovha_log_format)cfg->log_format);
}

/* ---- stop sequence -------------------------------------------------------
 * supervisor (child gone) -> mgmt link -> clients -> http -> signals. */

static void node_signal_close_cb(uv_handle_t *h)
{
    (void)h;
}

static void node_stop_done(struct node *n)
{
    if (n->sig_term.data != NULL) {
        uv_close((uv_handle_t *)&n->sig_term, node_signal_close_cb);
        uv_close((uv_handle_t *)&n->sig_int, node_signal_close_cb);
        uv_close((uv_handle_t *)&n->sig_hup, node_signal_close_cb);
    }
    LOG_INFO("node", "stopped");
}

static void node_http_tls_closed_cb(void *data)
{
    struct node *n = data;
    n->http_tls = NULL;
    node_auth_clear(&n->auth);
    node_stop_done(n);
}

static void node_http_closed_cb(void *data)
{
    struct node *n = data;
    n->http = NULL;
    if (n->http_tls != NULL) {
        node_http_close(n->http_tls, node_http_tls_closed_cb, n);
    } else {
        node_http_tls_closed_cb(n);
    }
}

static void node_close_http(struct node *n)
{
    if (n->http != NULL) {
        node_http_close(n->http, node_http_closed_cb, n);
    } else {
        node_http_closed_cb(n);
    }
}

static void node_tiers_closed_cb(void *data)
{
    struct node *n = data;
    n->tiers = NULL;
    node_close_http(n);
}

/* After the deciders: no lookup can start any more. */
static void node_close_tiers(struct node *n)
{
    if (n->tiers != NULL) {
        node_tiers_close(n->tiers, node_tiers_closed_cb, n);
    } else {
        node_close_http(n);
    }
}

static void node_repl_closed_cb(void *data)
{
    struct node *n = data;
    n->repl = NULL;
    node_close_tiers(n);
}

static void node_audit_closed_cb(void *data)
{
    struct node *n = data;
    n->audit = NULL;
    node_repl_close(n->repl, node_repl_closed_cb, n);
}

static void node_fw_closed_cb(void *data)
{
    struct node *n = data;
    n->fw = NULL;
    if (n->audit != NULL) {
        node_audit_close(n->audit, node_audit_closed_cb, n);
    } else {
        node_audit_closed_cb(n);
    }
}

static void node_routes_closed_cb(void *data)
{
    struct node *n = data;
    n->routes = NULL;
    if (n->fw != NULL) {
        node_fw_close(n->fw, node_fw_closed_cb, n);
    } else {
        node_fw_closed_cb(n);
    }
}

static void node_failover_closed_cb(void *data)
{
    struct node *n = data;
    n->failover = NULL;
    if (n->routes != NULL) {
        node_routes_close(n->routes, node_routes_closed_cb, n);
    } else {
        node_routes_closed_cb(n);
    }
}

static void node_rft_closed_cb(void *data)
{
    struct node *n = data;
    n->rft = NULL;
    if (n->failover != NULL) {
        node_failover_close(n->failover, node_failover_closed_cb, n);
    } else if (n->repl != NULL) {
        node_repl_close(n->repl, node_repl_closed_cb, n);
    } else {
        node_close_tiers(n);
    }
}

static void node_clients_closed_cb(void *data)
{
    struct node *n = data;
    n->clients = NULL;
    /* Proposals still in flight get their callbacks (OVHA_ECLOSED) from
     * rft_close; the replicated decider goes after it. */
    if (n->rft != NULL) {
        rft_close(n->rft, node_rft_closed_cb, n);
    } else {
        node_rft_closed_cb(n);
    }
}

static void node_close_clients(struct node *n)
{
    if (n->clients != NULL) {
        node_clients_close(n->clients, node_clients_closed_cb, n);
    } else {
        node_clients_closed_cb(n);
    }
}

/* Shaping reads the clients' table: it goes first. */
static void node_shaping_closed_cb(void *data)
{
    struct node *n = data;
    n->shaping = NULL;
    node_close_clients(n);
}

static void node_mgmt_closed_cb(void *data)
{
    struct node *n = data;
    n->mgmt = NULL;
    if (n->shaping != NULL) {
        node_shaping_close(n->shaping, node_shaping_closed_cb, n);
    } else {
        node_close_clients(n);
    }
}

static void node_sup_closed_cb(void *data)
{
    struct node *n = data;
    n->sup = NULL;
    if (n->mgmt != NULL) {
        mgmt_conn_close(n->mgmt, node_mgmt_closed_cb, n);
    } else {
        node_mgmt_closed_cb(n);
    }
}

static void node_stop(struct node *n, int exit_code)
{
    if (n->stopping) {
        return;
    }
    n->stopping = true;
    n->exit_code = exit_code;
    LOG_INFO("node", "stopping: openvpn first, then the node");
    node_sup_close(n->sup, node_sup_closed_cb, n);
}

/* ---- callbacks from the modules ----------------------------------------- */

static void node_mgmt_event_cb(struct mgmt_conn *m,
                               const struct mgmt_event *ev,
                               void *data)
{
    (void)m;
    struct node *n = data;
    if (ev->type == MGMT_EV_FATAL) {
        LOG_ERR("node", "openvpn reported a fatal error: %s", ev->text);
    }
    if (n->clients != NULL) {
        node_clients_on_event(n->clients, ev);
    }
}

static void node_mgmt_state_cb(struct mgmt_conn *m, bool up, void *data)
{
    (void)m;
    struct node *n = data;
    n->mgmt_up = up;
    if (up) {
        /* openvpn creates the socket with its umask; nobody but root
         * should ever reach it. */
        if (chmod(node_sup_mgmt_path(n->sup), 0600) != 0) {
            LOG_WARN("node", "chmod 0600 %s: %s", node_sup_mgmt_path(n->sup),
                     strerror(errno));
        }
        LOG_INFO("node", "management connected and set up");
    } else {
        LOG_WARN("node", "management link down");
    }
    if (n->clients != NULL) {
        node_clients_on_link(n->clients, up);
    }
}

static void node_on_sup_state(struct node_sup *s,
                              enum node_sup_state st,
                              void *data)
{
    (void)s;
    struct node *n = data;
    if (st == NODE_SUP_FAILED && !n->stopping) {
        LOG_ERR("node", "openvpn cannot be kept running; stopping ovhad");
        node_stop(n, 1);
    }
}

/* A bad tokens file keeps the tokens in force: locking every operator
 * out on a typo would be worse. */
static void node_reload_tokens(struct node *n, const struct node_cfg *cfg)
{
    char err[512] = "";
    struct node_auth next;
    int rv = node_auth_load(cfg->api.tokens_file, &next, err, sizeof(err));
    if (rv != 0) {
        n->reload_failures++;
        LOG_ERR("node",
                "api.tokens_file not reloaded, keeping %zu entries: "
                "%s",
                n->auth.n, err);
        return;
    }
    node_auth_clear(&n->auth);
    n->auth = next;
}

static void node_reload(struct node *n)
{
    char err[512];
    struct node_cfg *next = NULL;
    int rv = node_cfg_load(n->boot_cfg->path, &next, err, sizeof(err));
    if (rv == 0) {
        rv = node_cfg_check_reload(n->boot_cfg, next, err, sizeof(err));
    }
    if (rv != 0) {
        n->reload_failures++;
        LOG_ERR("node", "reload refused, keeping the running config: %s", err);
        node_cfg_free(next);
        return;
    }
    node_policy_set_cfg(n->policy, next);
    if (n->repl != NULL) {
        node_repl_set_cfg(n->repl, next);
    }
    node_clients_set_deadline(n->clients, next->decision_deadline_ms);
    node_apply_log(next);
    node_reload_tokens(n, next);
    if (n->cfg != n->boot_cfg) {
        node_cfg_free(n->cfg);
    }
    n->cfg = next;
    n->reloads++;
    LOG_INFO("node",
             "reloaded policy: %zu clients, %zu groups; live "
             "sessions kept (re-checked at their next renegotiation)",
             next->policy.nclients, next->policy.ngroups);
}

static void node_signal_cb(uv_signal_t *h, int signum)
{
    struct node *n = h->data;
    if (signum == SIGHUP) {
        node_reload(n);
        return;
    }
    LOG_INFO("node", "signal %d", signum);
    node_stop(n, 0);
}

/* ---- start -------------------------------------------------------------- */

static int node_start_signals(struct node *n)
{
    uv_signal_t *sigs[] = { &n->sig_term, &n->sig_int, &n->sig_hup };
    int nums[] = { SIGTERM, SIGINT, SIGHUP };
    for (int i = 0; i < 3; i++) {
        uv_signal_init(n->loop, sigs[i]);
        sigs[i]->data = n; /* also marks the handles for node_stop_done */
    }
    for (int i = 0; i < 3; i++) {
        int rv = uv_signal_start(sigs[i], node_signal_cb, nums[i]);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

static int node_start_mgmt(struct node *n)
{
    struct mgmt_conn_config mc;
    memset(&mc, 0, sizeof(mc));
    mc.path = node_sup_mgmt_path(n->sup);
    mc.cmd_timeout_ms = n->cfg->mgmt_cmd_timeout_ms;
    mc.backoff_min_ms = 50;
    mc.backoff_max_ms = 2000;
    mc.bytecount_interval = n->cfg->bytecount_interval;
    mc.env_filter = 0;
    mc.release_hold = true;
    int rv = mgmt_conn_new(n->loop, &mc, node_mgmt_event_cb, node_mgmt_state_cb,
                           n, &n->mgmt);
    return rv;
}

/* Clustered mode: the FSM, the raft runtime over mTLS and the replicated
 * decider. The data directory is created 0700 (one level). */
static int node_start_cluster(struct node *n,
                              struct node_rules rules,
                              struct node_decider *decider)
{
    const struct node_cfg_cluster *cc = &n->boot_cfg->cluster;
    struct rft_config rc;
    char err[512];
    if (mkdir(cc->data_dir, 0700) != 0 && errno != EEXIST) {
        LOG_ERR("node", "raft data dir %s: %s", cc->data_dir, strerror(errno));
        return -errno;
    }
    int rv = fsm_new(NULL, &n->fsm);
    if (rv != 0) {
        return rv;
    }
    memset(&rc, 0, sizeof(rc));
    rc.id = cc->raft_id;
    ovha_strlcpy(rc.address, cc->address, sizeof(rc.address));
    ovha_strlcpy(rc.data_dir, cc->data_dir, sizeof(rc.data_dir));
    ovha_strlcpy(rc.ca_file, cc->ca, sizeof(rc.ca_file));
    ovha_strlcpy(rc.cert_file, cc->cert, sizeof(rc.cert_file));
    ovha_strlcpy(rc.key_file, cc->key, sizeof(rc.key_file));
    rc.election_timeout_ms = cc->election_timeout_ms;
    rc.heartbeat_timeout_ms = cc->heartbeat_timeout_ms;
    rc.snapshot_threshold = cc->snapshot_threshold;
    rc.snapshot_trailing = cc->snapshot_trailing;
    rc.bootstrap = cc->bootstrap;
    rv = rft_new(n->loop, &rc, n->fsm, &n->rft, err, sizeof(err));
    if (rv != 0) {
        LOG_ERR("node", "raft: %s", err);
        return rv;
    }
    rv = rft_start(n->rft);
    if (rv != 0) {
        LOG_ERR("node", "raft: %s", rft_errmsg(n->rft));
        return rv;
    }
    rv = node_repl_new(n->loop, n->boot_cfg, n->rft, n->fsm, rules, &n->repl);
    if (rv == 0) {
        node_repl_decider(n->repl, decider);
        rv = node_failover_new(n->loop, n->boot_cfg, n->rft, n->fsm, n->repl,
                               &n->failover);
    }
    if (rv == 0) {
        node_repl_set_failover(n->repl, n->failover);
    }
    if (rv == 0 &&
        (n->boot_cfg->cluster.routes || n->boot_cfg->bridge.enabled)) {
        rv = node_routes_new(n->loop, n->boot_cfg, n->fsm, &n->routes);
    }
    if (rv == 0) {
        node_repl_set_routes(n->repl, n->routes);
    }
    /* Bridged traffic does not pass the inet forward hook: no firewall. */
    if (rv == 0 && !n->boot_cfg->openvpn.tap) {
        rv = node_fw_new(n->loop, n->boot_cfg, n->fsm, &n->fw);
    }
    if (rv == 0) {
        node_repl_set_fw(n->repl, n->fw);
        rv = node_audit_new(n->loop, n->boot_cfg, n->fsm, &n->audit);
    }
    return rv;
}

/* Reads a PEM file for the TLS listener; the key stays in memory only as
 * long as the listener runs. */
static int node_read_pem(const char *path, char **ret)
{
    struct ovha_buf b;
    char chunk[4096];
    size_t got;
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        return -errno;
    }
    ovha_buf_init(&b);
    int rv = 0;
    while (rv == 0 && (got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        rv =
            b.len + got > (1u << 20) ? -EFBIG : ovha_buf_append(&b, chunk, got);
    }
    fclose(f);
    explicit_bzero(chunk, sizeof(chunk));
    if (rv == 0) {
        rv = ovha_buf_append(&b, "", 1);
    }
    if (rv != 0) {
        ovha_buf_free(&b);
        return rv;
    }
    *ret = (char *)b.data;
    return 0;
}

/* The optional remote admin listener (api.listen): TLS, same routes and
 * checks as the unix socket. */
static int node_start_tls(struct node *n)
{
    const struct node_cfg *cfg = n->cfg;
    char *pem[3] = { NULL, NULL, NULL };
    const char *paths[3] = { cfg->api.tls_cert, cfg->api.tls_key,
                             cfg->api.client_ca };
    int rv = 0;

    if (cfg->api.listen[0] == '\0') {
        return 0;
    }
    for (size_t i = 0; rv == 0 && i < 3; i++) {
        if (paths[i][0] != '\0') {
            rv = node_read_pem(paths[i], &pem[i]);
            if (rv != 0) {
                LOG_ERR("node", "api: %s: %s", paths[i], ovha_strerror(rv));
            }
        }
    }
    if (rv == 0) {
        rv = node_http_new(n->loop, &n->http_tls);
    }
    if (rv == 0) {
        rv = node_http_listen_tls(n->http_tls, cfg->api.listen, pem[0], pem[1],
                                  pem[2]);
        if (rv != 0) {
            LOG_ERR("node", "api.listen %s: %s", cfg->api.listen,
                    rv == -EINVAL ? "bad address, certificate or key"
                                  : ovha_strerror(rv));
        }
    }
    if (rv == 0) {
        rv = node_http_copy_routes(n->http_tls, n->http);
        node_auth_install(n, n->http_tls);
        LOG_INFO("node", "admin API on https://%s (client certificates %s)",
                 cfg->api.listen, pem[2] != NULL ? "accepted" : "off");
    }
    for (size_t i = 0; i < 3; i++) {
        if (pem[i] != NULL) {
            explicit_bzero(pem[i], strlen(pem[i]));
            ovha_free(pem[i]);
        }
    }
    return rv;
}

static int node_start(struct node *n)
{
    struct node_decider decider;
    struct node_rules rules;
    int rv = node_fault_start(n->loop);
    if (rv != 0) {
        return rv;
    }
    rv = node_policy_new(n->cfg, &n->policy);
    if (rv != 0) {
        return rv;
    }
    node_policy_rules(n->policy, &rules);
    if (n->boot_cfg->upstream.enabled) {
        rv = node_tiers_new(n->loop, n->boot_cfg, &n->tiers);
        if (rv != 0) {
            return rv;
        }
        node_tiers_rules(n->tiers, &rules);
    }
    node_policy_decider(n->policy, rules, &decider);
    if (n->cfg->cluster.enabled) {
        rv = node_start_cluster(n, rules, &decider);
        if (rv != 0) {
            return rv;
        }
    }
    rv = node_sup_new(n->loop, n->boot_cfg, n->self_exe, node_on_sup_state, n,
                      &n->sup);
    if (rv == 0) {
        rv = node_start_mgmt(n);
    }
    if (rv == 0) {
        rv = node_clients_new(n->loop, n->mgmt, decider,
                              n->cfg->decision_deadline_ms, &n->clients);
    }
    if (rv == 0 && !n->boot_cfg->openvpn.tap) {
        rv = node_shaping_new(n->loop, n->boot_cfg, n->clients, &n->shaping);
    }
    if (rv == 0 && n->shaping != NULL) {
        node_shaping_start(n->shaping);
    }
    if (rv == 0 && n->boot_cfg->openvpn.fast_push) {
        node_clients_set_kick(n->clients, n->boot_cfg->openvpn.hand_window);
    }
    if (rv == 0 && n->boot_cfg->openvpn.tap && n->repl != NULL) {
        node_clients_poll_addresses(n->clients,
                                    n->boot_cfg->cluster.route_interval_ms);
    }
    if (rv == 0 && n->repl != NULL) {
        node_repl_start(n->repl, n->clients);
        node_failover_start(n->failover, n->clients);
        if (n->routes != NULL) {
            node_routes_start(n->routes);
        }
        if (n->fw != NULL) {
            node_fw_start(n->fw);
        }
        node_audit_start(n->audit);
    }
    if (rv == 0) {
        rv = node_start_signals(n);
    }
    /* The supervisor creates the state directory, where the HTTP socket
     * lives by default, so it starts first. */
    if (rv == 0) {
        rv = node_sup_start(n->sup);
    }
    if (rv == 0) {
        char err[512] = "";
        rv =
            node_auth_load(n->cfg->api.tokens_file, &n->auth, err, sizeof(err));
        if (rv != 0) {
            LOG_ERR("node", "api.tokens_file: %s", err);
        }
    }
    if (rv == 0) {
        rv = node_http_new(n->loop, &n->http);
    }
    if (rv == 0) {
        rv = node_http_listen_unix(n->http, n->cfg->http_socket, 0600);
        if (rv != 0) {
            LOG_ERR("node", "HTTP socket %s: %s", n->cfg->http_socket,
                    ovha_strerror(rv));
        }
    }
    if (rv == 0) {
        rv = node_api_register(n);
    }
    if (rv == 0) {
        rv = node_api_cluster_register(n);
    }
    if (rv == 0) {
        rv = node_api_gateway_register(n);
    }
    if (rv == 0) {
        rv = node_api_policy_register(n);
    }
    if (rv == 0) {
        rv = node_api_admin_register(n);
    }
    if (rv == 0) {
        rv = node_metrics_register(n);
    }
    if (rv == 0) {
        node_auth_install(n, n->http);
        rv = node_start_tls(n);
    }
    if (rv == 0) {
        rv = mgmt_conn_start(n->mgmt);
    }
    return rv;
}

static int node_parse_args(int argc,
                           char **argv,
                           const char **ret_config,
                           bool *ret_check)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "check", no_argument, NULL, 'n' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "c:nhV", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            *ret_config = optarg;
            break;
        case 'n':
            *ret_check = true;
            break;
        case 'h':
            node_usage(stdout);
            exit(0);
        case 'V':
            printf("ovhad 0.1.0\n");
            exit(0);
        default:
            node_usage(stderr);
            return -EINVAL;
        }
    }
    if (optind != argc) {
        node_usage(stderr);
        return -EINVAL;
    }
    return 0;
}

int main(int argc, char **argv)
{
    /* The trampoline that starts openvpn (see supervisor.h). */
    if (argc >= 4 && strcmp(argv[1], "--exec-child") == 0) {
        int rv = node_sup_exec_child(&argv[3], atoi(argv[2]));
        fprintf(stderr, "ovhad: exec %s: %s\n", argv[3], ovha_strerror(rv));
        return 127;
    }
    const char *path = NODE_DEFAULT_CONFIG;
    bool check = false;
    if (node_parse_args(argc, argv, &path, &check) != 0) {
        return 2;
    }
    char err[1024];
    struct node n;
    memset(&n, 0, sizeof(n));
    int rv = node_cfg_load(path, &n.boot_cfg, err, sizeof(err));
    if (rv != 0) {
        fprintf(stderr, "ovhad: %s\n", err);
        return 1;
    }
    if (check) {
        printf("ovhad: %s: configuration OK\n", path);
        node_cfg_free(n.boot_cfg);
        return 0;
    }
    n.cfg = n.boot_cfg;
    node_apply_log(n.cfg);
    umask(077);
    signal(SIGPIPE, SIG_IGN);
    ssize_t len =
        readlink("/proc/self/exe", n.self_exe, sizeof(n.self_exe) - 1);
    if (len <= 0) {
        ovha_fatal("node", "readlink /proc/self/exe: %s", strerror(errno));
    }
    n.self_exe[len] = '\0';
    n.loop = uv_default_loop();
    n.started_ms = ovha_now_mono_ms();
    LOG_INFO("node", "ovhad gateway=%s starting (config %s)", n.cfg->id, path);
    rv = node_start(&n);
    if (rv != 0) {
        LOG_ERR("node", "start failed: %s", ovha_strerror(rv));
        node_stop(&n, 1);
    }
    uv_run(n.loop, UV_RUN_DEFAULT);
    fsm_free(n.fsm);
    node_policy_free(n.policy);
    if (n.cfg != n.boot_cfg) {
        node_cfg_free(n.cfg);
    }
    node_cfg_free(n.boot_cfg);
    uv_loop_close(n.loop);
    return n.exit_code;
}
