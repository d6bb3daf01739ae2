/* Management parser throughput.
 *
 * usage: mgmt_bench [MB ...] [-f TRANSCRIPT]
 *
 * Builds a realistic server transcript (CONNECT with ~40 ENV variables,
 * the client-auth SUCCESS, two ADDRESS lines, ESTABLISHED with its ENV,
 * BYTECOUNT_CLI lines, DISCONNECT with its ENV) or loads one, and feeds it
 * repeatedly in 64 KiB reads until MB megabytes have gone through. Each
 * size runs in a child process, so the reported max RSS belongs to that
 * size alone and shows that memory does not grow with the input.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mgmt/mgmt.h"
#include "mgmt/tests/mgmt_test.h"

struct mgmt_bench_count {
    uint64_t events;
    uint64_t errors;
    uint64_t env_vars;
};

static void mgmt_bench_on_event(const struct mgmt_event *ev, void *data)
{
    struct mgmt_bench_count *c = data;
    c->events++;
    c->errors += ev->type == MGMT_EV_PARSE_ERROR;
    c->env_vars += ev->env.n;
}

static void mgmt_bench_env(struct ovha_buf *b, unsigned cid, bool established)
{
    ovha_buf_printf(b,
                    ">CLIENT:ENV,n_clients=%u\r\n"
                    ">CLIENT:ENV,password=\r\n"
                    ">CLIENT:ENV,untrusted_port=%u\r\n"
                    ">CLIENT:ENV,untrusted_ip=198.18.%u.%u\r\n"
                    ">CLIENT:ENV,common_name=user%u.example\r\n"
                    ">CLIENT:ENV,username=user%u\r\n",
                    cid, 40000 + cid % 20000, cid / 250 % 250, cid % 250, cid,
                    cid);
    static const char *const iv[] = {
        "IV_SSO=webauth,openurl,crtext",
        "IV_GUI_VER=OpenVPN_GUI_11",
        "IV_COMP_STUBv2=1",
        "IV_COMP_STUB=1",
        "IV_LZO_STUB=1",
        "IV_PROTO=990",
        "IV_CIPHERS=AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305",
        "IV_NCP=2",
        "IV_MTU=1600",
        "IV_TCPNL=1",
        "IV_PLAT=linux",
        "IV_VER=2.6.14",
        "tls_serial_hex_0=55:eb:34:16:50:33:8e:27:c7:4a:50:d0:df:21:ed:9e",
        "tls_serial_0=490509428073367509847867905786204134863356991508",
        ("tls_digest_sha256_0=80:7f:cc:2b:ee:80:b8:ff:fc:93:e0:b5:09:23:de:19"
         ":f0:b9:ee:b1:0a:cc:4d:80:7d:3f:ef:f6:4a:ad:53:37"),
        "tls_digest_0=4f:12:a3:54:a9:ea:1c:1c:77:19:62:11:e0:38:fc:71:69:3e",
        "tls_id_0=CN=alice",
        "X509_0_CN=alice",
        "tls_serial_hex_1=6f:44:e3:d3:c4:6e:6a:c6:fb:43:53:f9:1c:46:61:88",
        "tls_serial_1=635234272784534204986146612751800060553593424571",
        "tls_digest_1=41:3f:aa:10:11:12:13:14:15:16:17:18:19:1a:1b:1c",
        "tls_id_1=CN=ovha-test-ca",
        "X509_1_CN=ovha-test-ca",
        "remote_port_1=1194",
        "local_port_1=1194",
        "proto_1=udp",
        "daemon_pid=4242",
        "daemon_start_time=1795556000",
        "daemon_log_redirect=0",
        "daemon=0",
        "verb=3",
        "config=/etc/ovha/openvpn.conf",
        "ifconfig_local=100.64.0.1",
        "ifconfig_netmask=255.255.0.0",
        "script_context=init",
        "tun_mtu=1500",
        "dev=tun0",
    };
    for (size_t i = 0; i < sizeof(iv) / sizeof(iv[0]); i++) {
        ovha_buf_printf(b, ">CLIENT:ENV,%s\r\n", iv[i]);
    }
    if (established) {
        ovha_buf_printf(b,
                        ">CLIENT:ENV,ifconfig_pool_remote_ip=100.64.%u.%u\r\n"
                        ">CLIENT:ENV,time_unix=1795556867\r\n",
                        cid / 250 % 250, cid % 250);
    }
    ovha_buf_appends(b, ">CLIENT:ENV,END\r\n");
}

static void mgmt_bench_build(struct ovha_buf *b)
{
    for (unsigned cid = 0; cid < 64; cid++) {
        ovha_buf_printf(b, ">CLIENT:CONNECT,%u,1\r\n", cid);
        mgmt_bench_env(b, cid, false);
        ovha_buf_appends(b, "SUCCESS: client-auth command succeeded\r\n");
        ovha_buf_printf(b, ">CLIENT:ADDRESS,%u,100.64.0.%u,1\r\n", cid,
                        cid + 2);
        ovha_buf_printf(b, ">CLIENT:ADDRESS,%u,100.96.%u.0/255.255.255.0,0\r\n",
                        cid, cid);
        ovha_buf_printf(b, ">CLIENT:ESTABLISHED,%u\r\n", cid);
        mgmt_bench_env(b, cid, true);
        for (unsigned i = 0; i < 40; i++) {
            ovha_buf_printf(b, ">BYTECOUNT_CLI:%u,%u,%u\r\n", cid,
                            2173 + i * 1500, 2259 + i * 1400);
        }
        ovha_buf_printf(b, ">CLIENT:DISCONNECT,%u\r\n", cid);
        mgmt_bench_env(b, cid, true);
    }
}

static size_t mgmt_bench_lines(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        k += s[i] == '\n';
    }
    return k;
}

static double mgmt_bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int mgmt_bench_run(const char *data, size_t n, size_t mb)
{
    size_t target = mb * 1024 * 1024;
    size_t reps = (target + n - 1) / n;
    size_t lines = mgmt_bench_lines(data, n) * reps;
    struct mgmt_bench_count c = { 0 };
    struct mgmt_parser *p;
    if (mgmt_parser_new(NULL, mgmt_bench_on_event, &c, &p) != 0) {
        return 1;
    }
    const size_t rd = 64 * 1024;
    double t0 = mgmt_bench_now();
    for (size_t r = 0; r < reps; r++) {
        /* 64 KiB reads, as from the socket: lines straddle reads. */
        for (size_t off = 0; off < n; off += rd) {
            mgmt_parser_feed(p, data + off, n - off < rd ? n - off : rd);
        }
    }
    double dt = mgmt_bench_now() - t0;
    mgmt_parser_free(p);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double bytes = (double)n * (double)reps;
    printf(
        "%6zu MB: %10zu lines in %.3f s = %6.2f M lines/s, %7.1f MB/s, "
        "%" PRIu64 " events, %" PRIu64 " errors, max RSS %ld KiB\n",
        mb, lines, dt, (double)lines / dt / 1e6, bytes / dt / 1048576.0,
        c.events, c.errors, ru.ru_maxrss);
    fflush(stdout);
    return c.errors == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    struct ovha_buf b;
    ovha_buf_init(&b);
    size_t sizes[8];
    size_t nsizes = 0;
    const char *file = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-f") == 0 && i + 1 < argc) {
            file = argv[++i];
        } else if (nsizes < 8) {
            sizes[nsizes++] = (size_t)atol(argv[i]);
        }
    }
    if (nsizes == 0) {
        sizes[nsizes++] = 20;
        sizes[nsizes++] = 200;
    }
    char *data;
    size_t n;
    if (file != NULL) {
        if (mgmt_test_load(file, &data, &n) != 0) {
            perror(file);
            return 1;
        }
    } else {
        mgmt_bench_build(&b);
        data = b.data;
        n = b.len;
    }
    printf("transcript: %s, %zu bytes, %zu lines (avg %.1f bytes/line)\n",
           file != NULL ? file : "built-in", n, mgmt_bench_lines(data, n),
           (double)n / (double)mgmt_bench_lines(data, n));
    fflush(stdout);
    int rc = 0;
    for (size_t i = 0; i < nsizes; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            _exit(mgmt_bench_run(data, n, sizes[i]));
        }
        int st = 0;
        waitpid(pid, &st, 0);
        rc |= WIFEXITED(st) ? WEXITSTATUS(st) : 1;
    }
    if (file != NULL) {
        ovha_free(data);
    }
    ovha_buf_free(&b);
    return rc;
}
