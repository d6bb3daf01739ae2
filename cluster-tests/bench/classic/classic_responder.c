/*
 * classic_responder: the two baselines ovhad is compared with in
 * cluster-tests/bench/classic_bench.sh (issue 9).
 *
 *   classic_responder respond SOCK [SCRIPT]
 *
 *     Connects to the management socket SOCK of openvpn (with
 *     management-client-auth) or of ovpn_sim, releases the hold and answers
 *     every >CLIENT:CONNECT / >CLIENT:REAUTH as soon as its >CLIENT:ENV,END
 *     has been read:
 *       - without SCRIPT: `client-auth CID KID` + `END`, an empty block, no
 *         lookup, no state: the lower bound of any management-interface
 *         controller (it cannot answer sooner than it reads the block);
 *       - with SCRIPT: runs SCRIPT the way openvpn runs a client-connect
 *         script (cls_script_run below) with the ENV block as environment,
 *         waits for it, and sends the file it wrote as the client-auth block
 *         (client-deny when it failed). This puts the classic script behind
 *         the same boundary the simulator times for ovhad.
 *     Exits on EOF (the peer went away) or SIGTERM, printing its counts.
 *
 *   classic_responder spawn-bench SCRIPT N IDS TMPDIR
 *
 *     The script's cost as openvpn pays it, without any management socket:
 *     N times, an openvpn-like environment (common_name user-<i mod IDS>,
 *     untrusted_ip, IV_*, X509_*, daemon variables: what openvpn 2.6 puts in
 *     a client-connect script's environment) and the two temporary files,
 *     then fork + execve + waitpid, then the files read back and removed.
 *     Prints one line: spawn n= ok= fail= p50_us= p90_us= p99_us= max_us=
 *     mean_us= elapsed_ms= rate= cpu_us= (rate = n / elapsed, one at a time, as
 *     openvpn runs them: its event loop is blocked while the script runs).
 *
 * What cls_script_run copies from openvpn 2.6 (multi.c,
 * multi_client_connect_call_script): setenv script_type=client-connect,
 * create the config file and the deferred-return file in the tmp dir
 * (client_connect_config_file / client_connect_deferred_file), run the
 * script with the config file as its last argument (fork + execve,
 * openvpn_execve), wait for it, read the deferred file (a '2' there would
 * mean deferred), read the config file, delete both.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CLS_MAX_ENV    256
#define CLS_MAX_OUT    8192
#define CLS_LINE_MAX   4096
#define CLS_CONNECT_S  30
#define CLS_MAX_SPAWNS 1000000

extern char **environ;

static volatile sig_atomic_t cls_stop;

struct cls_env {
    char *vars[CLS_MAX_ENV + 1];
    size_t n;
};

struct cls_responder {
    int fd;
    const char *script;
    const char *tmpdir;
    bool in_client_block; /* inside a CONNECT/REAUTH block */
    unsigned long long cid;
    unsigned kid;
    struct cls_env env;
    char line[CLS_LINE_MAX];
    size_t line_len;
    bool line_overflow;
    unsigned long long answered;
    unsigned long long denied;
    unsigned long long errors;
};

static uint64_t cls_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void cls_on_signal(int sig)
{
    (void)sig;
    cls_stop = 1;
}

/* ---- environment ------------------------------------------------------- */

static void cls_env_clear(struct cls_env *e)
{
    for (size_t i = 0; i < e->n; i++) {
        free(e->vars[i]);
    }
    e->n = 0;
    e->vars[0] = NULL;
}

/* Adds NAME=VALUE (or a ready "k=v" when value is NULL); silently drops
 * variables past CLS_MAX_ENV, openvpn's ENV blocks have about 60. */
static int cls_env_add(struct cls_env *e, const char *name, const char *value)
{
    if (e->n >= CLS_MAX_ENV) {
        return 0;
    }
    char *v;
    int rc = value != NULL ? asprintf(&v, "%s=%s", name, value)
                           : asprintf(&v, "%s", name);
    if (rc < 0) {
        return -ENOMEM;
    }
    e->vars[e->n++] = v;
    e->vars[e->n] = NULL;
    return 0;
}

/* Our own CLASSIC_* variables (CLASSIC_DB: the scripts' database) and
 * PATH: what `setenv` lines in openvpn's config would add. */
static int cls_env_add_local(struct cls_env *e)
{
    for (char **v = environ; *v != NULL; v++) {
        if (strncmp(*v, "CLASSIC_", 8) == 0 || strncmp(*v, "PATH=", 5) == 0) {
            int rc = cls_env_add(e, *v, NULL);
            if (rc < 0) {
                return rc;
            }
        }
    }
    return 0;
}

/* ---- the client-connect call, as openvpn makes it ---------------------- */

static int cls_tmpfile(const char *dir, char *path, size_t len)
{
    /* openvpn: <tmp-dir>/openvpn_cc_<random hex>.tmp, O_CREAT|O_EXCL. */
    int n = snprintf(path, len, "%s/openvpn_cc_XXXXXX.tmp", dir);
    if (n < 0 || (size_t)n >= len) {
        return -ENAMETOOLONG;
    }
    int fd = mkstemps(path, 4);
    if (fd < 0) {
        return -errno;
    }
    close(fd);
    return 0;
}

static ssize_t cls_read_file(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    size_t got = 0;
    while (got + 1 < len) {
        ssize_t r = read(fd, buf + got, len - 1 - got);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            break;
        }
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    return (ssize_t)got;
}

/*
 * Runs SCRIPT for one client with ENV (which gets the script variables
 * added and stays owned by the caller). On success writes the config the
 * script produced into OUT (NUL-terminated) and returns 0; returns a
 * negative errno when the call could not be made and 1 when the script
 * failed (non-zero exit, signal) or asked to defer.
 */
static int cls_script_run(const char *script,
                          const char *tmpdir,
                          struct cls_env *env,
                          char *out,
                          size_t outlen)
{
    char cfg[512], dfr[512], st[4];
    int rc = cls_tmpfile(tmpdir, cfg, sizeof(cfg));
    if (rc < 0) {
        return rc;
    }
    rc = cls_tmpfile(tmpdir, dfr, sizeof(dfr));
    if (rc < 0) {
        goto err_cfg;
    }
    if ((rc = cls_env_add(env, "script_type", "client-connect")) < 0 ||
        (rc = cls_env_add(env, "client_connect_config_file", cfg)) < 0 ||
        (rc = cls_env_add(env, "client_connect_deferred_file", dfr)) < 0) {
        goto err_dfr;
    }
    char *argv[] = { (char *)script, cfg, NULL };
    pid_t pid = fork();
    if (pid < 0) {
        rc = -errno;
        goto err_dfr;
    }
    if (pid == 0) {
        execve(script, argv, env->vars);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            rc = -errno;
            goto err_dfr;
        }
    }
    rc = 1;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        /* openvpn checks the deferred file first ('2' = deferred). */
        if (cls_read_file(dfr, st, sizeof(st)) >= 0 && st[0] == '2') {
            goto err_dfr;
        }
        if (cls_read_file(cfg, out, outlen) >= 0) {
            rc = 0;
        }
    }
err_dfr:
    unlink(dfr);
err_cfg:
    unlink(cfg);
    return rc;
}

/* ---- respond ----------------------------------------------------------- */

static int cls_write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0) {
            return -errno;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Appends the client-auth block: the script's lines, without empty ones
 * and without a stray END that would close the block early. */
static int cls_answer_block(struct cls_responder *r, const char *cfg)
{
    char out[CLS_MAX_OUT + 128];
    size_t o = (size_t)snprintf(out, sizeof(out), "client-auth %llu %u\n",
                                r->cid, r->kid);
    const char *p = cfg;
    while (p != NULL && *p != '\0') {
        const char *nl = strchr(p, '\n');
        size_t l = nl != NULL ? (size_t)(nl - p) : strlen(p);
        while (l > 0 && (p[l - 1] == '\r' || p[l - 1] == ' ')) {
            l--;
        }
        bool end = l == 3 && memcmp(p, "END", 3) == 0;
        if (l > 0 && !end && o + l + 8 < sizeof(out)) {
            memcpy(out + o, p, l);
            o += l;
            out[o++] = '\n';
        }
        p = nl != NULL ? nl + 1 : NULL;
    }
    memcpy(out + o, "END\n", 4);
    o += 4;
    return cls_write_all(r->fd, out, o);
}

static int cls_answer(struct cls_responder *r)
{
    if (r->script == NULL) {
        char out[96];
        int n = snprintf(out, sizeof(out), "client-auth %llu %u\nEND\n", r->cid,
                         r->kid);
        r->answered++;
        return cls_write_all(r->fd, out, (size_t)n);
    }
    /* The script sees what openvpn would give it. */
    int rc = cls_env_add_local(&r->env);
    if (rc < 0) {
        return rc;
    }
    char cfg[CLS_MAX_OUT];
    rc = cls_script_run(r->script, r->tmpdir, &r->env, cfg, sizeof(cfg));
    if (rc < 0) {
        return rc;
    }
    if (rc == 0) {
        r->answered++;
        return cls_answer_block(r, cfg);
    }
    char out[128];
    int n = snprintf(out, sizeof(out),
                     "client-deny %llu %u \"client-connect failed\"\n", r->cid,
                     r->kid);
    r->denied++;
    return cls_write_all(r->fd, out, (size_t)n);
}

static int cls_on_line(struct cls_responder *r, char *line)
{
    unsigned long long cid;
    unsigned kid;
    if (strncmp(line, ">CLIENT:", 8) != 0) {
        if (strncmp(line, "ERROR", 5) == 0) {
            r->errors++;
        }
        return 0;
    }
    const char *ev = line + 8;
    if (sscanf(ev, "CONNECT,%llu,%u", &cid, &kid) == 2 ||
        sscanf(ev, "REAUTH,%llu,%u", &cid, &kid) == 2) {
        r->in_client_block = true;
        r->cid = cid;
        r->kid = kid;
        cls_env_clear(&r->env);
        return 0;
    }
    if (strncmp(ev, "ENV,", 4) != 0) {
        /* ESTABLISHED, DISCONNECT, ADDRESS...: their ENV is not ours. */
        r->in_client_block = false;
        return 0;
    }
    if (!r->in_client_block) {
        return 0;
    }
    if (strcmp(ev + 4, "END") == 0) {
        r->in_client_block = false;
        int rc = cls_answer(r);
        cls_env_clear(&r->env);
        return rc;
    }
    /* Only the script needs the variables; the lower bound keeps nothing. */
    if (r->script != NULL && strchr(ev + 4, '=') != NULL) {
        return cls_env_add(&r->env, ev + 4, NULL);
    }
    return 0;
}

static int cls_feed(struct cls_responder *r, const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (c == '\r') {
            continue;
        }
        if (c != '\n') {
            if (r->line_len + 1 < sizeof(r->line)) {
                r->line[r->line_len++] = c;
            } else {
                r->line_overflow = true;
            }
            continue;
        }
        r->line[r->line_len] = '\0';
        int rc = r->line_overflow ? 0 : cls_on_line(r, r->line);
        r->line_len = 0;
        r->line_overflow = false;
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

static int cls_connect(const char *sock_path, int *ret_fd)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(sock_path) >= sizeof(sa.sun_path)) {
        return -ENAMETOOLONG;
    }
    strcpy(sa.sun_path, sock_path);
    /* The server may still be starting: retry for CLS_CONNECT_S. */
    for (int i = 0; i < CLS_CONNECT_S * 20 && !cls_stop; i++) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            return -errno;
        }
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            *ret_fd = fd;
            return 0;
        }
        close(fd);
        usleep(50000);
    }
    return -ETIMEDOUT;
}

static int cls_respond(const char *sock_path, const char *script)
{
    static struct cls_responder r;
    const char *tmpdir = getenv("TMPDIR");
    r.script = script;
    r.tmpdir = tmpdir != NULL ? tmpdir : "/tmp";
    int rc = cls_connect(sock_path, &r.fd);
    if (rc < 0) {
        fprintf(stderr, "classic_responder: connect %s: %s\n", sock_path,
                strerror(-rc));
        return 1;
    }
    /* ovpn_sim (like openvpn with management-hold) waits for this. */
    static const char hello[] = "hold release\n";
    rc = cls_write_all(r.fd, hello, sizeof(hello) - 1);
    char buf[65536];
    while (rc == 0 && !cls_stop) {
        ssize_t n = read(r.fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        rc = cls_feed(&r, buf, (size_t)n);
    }
    if (rc < 0) {
        fprintf(stderr, "classic_responder: %s\n", strerror(-rc));
    }
    fprintf(stderr,
            "classic_responder: answered=%llu denied=%llu errors=%llu\n",
            r.answered, r.denied, r.errors);
    cls_env_clear(&r.env);
    close(r.fd);
    return rc < 0 ? 1 : 0;
}

/* ---- spawn-bench ------------------------------------------------------- */

/* A client-connect environment as openvpn 2.6.14 builds it for a 2.6
 * client (the variables of >CLIENT:ENV at env-filter 0, see
 * /work/shared/notes/openvpn-management.md), common_name excepted. */
static const char *const cls_fixed_env[] = {
    "n_clients=0",
    "untrusted_port=41000",
    "untrusted_ip=198.18.0.11",
    "IV_SSO=webauth,openurl,crtext",
    "IV_GUI_VER=OpenVPN_GUI_11",
    "IV_COMP_STUB=1",
    "IV_COMP_STUBv2=1",
    "IV_LZO_STUB=1",
    "IV_PROTO=990",
    "IV_CIPHERS=AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305",
    "IV_NCP=2",
    "IV_MTU=1600",
    "IV_TCPNL=1",
    "IV_PLAT=linux",
    "IV_VER=2.6.14",
    "tls_serial_hex_0=5a:00:00:01",
    "tls_serial_0=1509949441",
    ("tls_digest_sha256_0=aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99:"
     "aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99"),
    "tls_digest_0=aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd",
    "tls_serial_hex_1=01",
    "tls_serial_1=1",
    "tls_id_1=CN=ovha test CA",
    "X509_1_CN=ovha test CA",
    "remote_port_1=1194",
    "local_port_1=1194",
    "proto_1=udp",
    "daemon_pid=4242",
    "daemon_start_time=1795500000",
    "daemon_log_redirect=0",
    "daemon=0",
    "verb=3",
    "config=/etc/openvpn/server.conf",
    "ifconfig_local=100.64.0.1",
    "ifconfig_netmask=255.255.192.0",
    "script_context=init",
    "tun_mtu=1500",
    "dev=tun0",
    "dev_type=tun",
    "redirect_gateway=0",
};

static int cls_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t cls_rank(const uint64_t *v, size_t n, double q)
{
    /* Nearest rank, as ovpn_sim reports its percentiles. */
    size_t k = (size_t)(q * (double)n + 0.999999);
    if (k < 1) {
        k = 1;
    }
    if (k > n) {
        k = n;
    }
    return v[k - 1];
}

/* CPU time (user + system) of this process and its waited-for children. */
static uint64_t cls_cpu_us(void)
{
    struct rusage self, kids;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    uint64_t us = 0;
    const struct rusage *ru[] = { &self, &kids };
    for (size_t i = 0; i < 2; i++) {
        us += (uint64_t)ru[i]->ru_utime.tv_sec * 1000000 +
              (uint64_t)ru[i]->ru_utime.tv_usec +
              (uint64_t)ru[i]->ru_stime.tv_sec * 1000000 +
              (uint64_t)ru[i]->ru_stime.tv_usec;
    }
    return us;
}

static int cls_env_openvpn(struct cls_env *e, unsigned long ids, size_t i)
{
    char cn[64];
    snprintf(cn, sizeof(cn), "user-%lu", (unsigned long)(i % ids));
    int rc = 0;
    size_t nfix = sizeof(cls_fixed_env) / sizeof(cls_fixed_env[0]);
    for (size_t k = 0; k < nfix && rc == 0; k++) {
        rc = cls_env_add(e, cls_fixed_env[k], NULL);
        if (rc == 0 && k == 2) {
            /* common_name and username after untrusted_ip, as openvpn. */
            rc = cls_env_add(e, "common_name", cn);
            if (rc == 0) {
                rc = cls_env_add(e, "username", cn);
            }
        }
    }
    if (rc == 0) {
        rc = cls_env_add(e, "tls_id_0", cn);
    }
    if (rc == 0) {
        rc = cls_env_add(e, "X509_0_CN", cn);
    }
    if (rc == 0) {
        rc = cls_env_add_local(e);
    }
    return rc;
}

static int cls_spawn_bench(const char *script,
                           unsigned long n,
                           unsigned long ids,
                           const char *tmpdir)
{
    static struct cls_env env;
    static char cfg[CLS_MAX_OUT];
    uint64_t *lat = calloc(n, sizeof(*lat));
    if (lat == NULL) {
        return 1;
    }
    unsigned long ok = 0, fail = 0;
    uint64_t sum = 0, cpu0 = cls_cpu_us(), t0 = cls_now_ns();
    for (unsigned long i = 0; i < n && !cls_stop; i++) {
        cls_env_clear(&env);
        int rc = cls_env_openvpn(&env, ids, i);
        uint64_t a = cls_now_ns();
        if (rc == 0) {
            rc = cls_script_run(script, tmpdir, &env, cfg, sizeof(cfg));
        }
        lat[i] = cls_now_ns() - a;
        sum += lat[i];
        /* A good answer pushes exactly one address. */
        if (rc == 0 && strstr(cfg, "ifconfig-push ") != NULL) {
            ok++;
        } else {
            fail++;
        }
    }
    uint64_t el = cls_now_ns() - t0;
    uint64_t cpu = cls_cpu_us() - cpu0;
    unsigned long done = ok + fail;
    cls_env_clear(&env);
    if (done == 0) {
        free(lat);
        return 1;
    }
    qsort(lat, done, sizeof(*lat), cls_cmp_u64);
    printf(
        "spawn n=%lu ok=%lu fail=%lu p50_us=%llu p90_us=%llu p99_us=%llu "
        "max_us=%llu mean_us=%llu elapsed_ms=%llu rate=%.1f cpu_us=%llu\n",
        done, ok, fail, (unsigned long long)(cls_rank(lat, done, 0.50) / 1000),
        (unsigned long long)(cls_rank(lat, done, 0.90) / 1000),
        (unsigned long long)(cls_rank(lat, done, 0.99) / 1000),
        (unsigned long long)(lat[done - 1] / 1000),
        (unsigned long long)(sum / done / 1000),
        (unsigned long long)(el / 1000000),
        (double)done * 1e9 / (double)(el > 0 ? el : 1),
        (unsigned long long)(cpu / done));
    free(lat);
    return fail == 0 ? 0 : 1;
}

static int cls_usage(void)
{
    fprintf(stderr,
            "usage: classic_responder respond SOCK [SCRIPT]\n"
            "       classic_responder spawn-bench SCRIPT N IDS "
            "TMPDIR\n");
    return 2;
}

int main(int argc, char **argv)
{
    struct sigaction sa = { .sa_handler = cls_on_signal };
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 3 && argc <= 4 && strcmp(argv[1], "respond") == 0) {
        return cls_respond(argv[2], argc == 4 ? argv[3] : NULL);
    }
    if (argc == 6 && strcmp(argv[1], "spawn-bench") == 0) {
        char *e1, *e2;
        unsigned long n = strtoul(argv[3], &e1, 10);
        unsigned long ids = strtoul(argv[4], &e2, 10);
        if (*e1 != '\0' || *e2 != '\0' || n < 1 || n > CLS_MAX_SPAWNS ||
            ids < 1) {
            return cls_usage();
        }
        return cls_spawn_bench(argv[2], n, ids, argv[5]);
    }
    return cls_usage();
}
