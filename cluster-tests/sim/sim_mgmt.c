/*
 * The management-protocol half of ovpn_sim: what OpenVPN 2.6.14 writes on
 * its management socket and how it answers the commands a server-side
 * controller uses. Texts and layouts follow the recorded transcripts in
 * mgmt/tests/fixtures and /work/shared/notes/openvpn-management.md.
 *
 * Deliberate simplifications: events that real openvpn sends seconds later
 * (DISCONNECT after client-kill or client-deny) come at once; REAUTH comes
 * only when the control socket asks for one; BYTECOUNT_CLI goes out for
 * every established client once per `bytecount` interval whether or not
 * it has traffic (openvpn: only with traffic); there is no STATE or LOG
 * traffic; `log`/`echo` only answer.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sim.h"

#define SIM_TITLE                                                     \
    "OpenVPN 2.6.14 x86_64-pc-linux-gnu [SSL (OpenSSL)] [LZO] [LZ4] " \
    "[EPOLL] [PKCS11] [MH/PKTINFO] [AEAD] [DCO]"

/* Peer info in the order a 2.6.14 client sends it; ENV lists it reversed. */
static const char *const sim_mgmt_peer_info[] = {
    "IV_VER=2.6.14",  "IV_PLAT=linux",
    "IV_TCPNL=1",     "IV_MTU=1600",
    "IV_NCP=2",       "IV_CIPHERS=AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305",
    "IV_PROTO=990",   "IV_LZO_STUB=1",
    "IV_COMP_STUB=1", "IV_COMP_STUBv2=1",
};
#define SIM_N_PEER_INFO \
    (sizeof(sim_mgmt_peer_info) / sizeof(sim_mgmt_peer_info[0]))

/* The names env-filter levels 1 and 2 keep (manage.c env_filter_match). */
static const char *const sim_mgmt_filter_keep[] = {
    "username",
    "password",
    "X509_0_CN",
    "tls_serial_",
    "untrusted_ip",
    "ifconfig_local",
    "ifconfig_netmask",
    "daemon_start_time",
    "daemon_pid",
    "dev",
    "ifconfig_pool_remote_ip",
    "ifconfig_pool_netmask",
    "time_duration",
    "bytes_sent",
    "bytes_received",
    "session_id",
    "session_state",
};

void sim_mgmt_emit(struct sim *s, const char *fmt, ...)
{
    if (s->mgmt_fd < 0) {
        return;
    }
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if ((size_t)n > sizeof(line) - 3) {
        n = (int)(sizeof(line) - 3);
    }
    line[n++] = '\r';
    line[n++] = '\n';
    if (sim_buf_append(&s->mout, line, (size_t)n) != 0) {
        /* A controller that stopped reading (256 MiB queued): drop it
         * rather than send a stream with holes; the next flush closes. */
        s->mgmt_quit = true;
        return;
    }
    s->out_queued += (uint64_t)n;
}

static bool sim_mgmt_env_pass(int level, const char *name)
{
    if (level <= 0) {
        return true;
    }
    if (level >= 3) {
        return false;
    }
    if (level == 1 && strncmp(name, "X509_", 5) == 0) {
        return true;
    }
    size_t n = sizeof(sim_mgmt_filter_keep) / sizeof(sim_mgmt_filter_keep[0]);
    for (size_t i = 0; i < n; i++) {
        const char *k = sim_mgmt_filter_keep[i];
        size_t kl = strlen(k);
        bool prefix = k[kl - 1] == '_';
        if (prefix ? strncmp(name, k, kl) == 0 : strcmp(name, k) == 0) {
            return true;
        }
    }
    return false;
}

static void sim_mgmt_env(struct sim *s, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void sim_mgmt_env(struct sim *s, const char *name, const char *fmt, ...)
{
    if (!sim_mgmt_env_pass(s->env_filter, name)) {
        return;
    }
    char val[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(val, sizeof(val), fmt, ap);
    va_end(ap);
    sim_mgmt_emit(s, ">CLIENT:ENV,%s=%s", name, val);
}

static void sim_mgmt_fmt_time(int64_t t, char *out, size_t outlen)
{
    time_t tt = (time_t)t;
    struct tm tm;
    localtime_r(&tt, &tm);
    strftime(out, outlen, "%Y-%m-%d %H:%M:%S", &tm);
}

/* The part of every ENV block from common_name on. */
static void sim_mgmt_env_tail(struct sim *s,
                              const struct sim_client *c,
                              bool connect)
{
    /* CONNECT has common_name after the address, the others before. */
    if (!connect) {
        sim_mgmt_env(s, "common_name", "%s", c->cn);
    }
    sim_mgmt_env(s, "untrusted_port", "%u", c->rport);
    sim_mgmt_env(s, "untrusted_ip", "%s", c->rip);
    if (connect) {
        sim_mgmt_env(s, "common_name", "%s", c->cn);
    }
    sim_mgmt_env(s, "username", "%s", c->username);
    for (size_t i = SIM_N_PEER_INFO; i > 0; i--) {
        const char *pi = sim_mgmt_peer_info[i - 1];
        const char *eq = strchr(pi, '=');
        char name[32];
        snprintf(name, sizeof(name), "%.*s", (int)(eq - pi), pi);
        sim_mgmt_env(s, name, "%s", eq + 1);
    }
    /* A made-up serial, stable per client. */
    sim_mgmt_env(s, "tls_serial_hex_0", "5a:%02x:%02x:%02x",
                 (unsigned)(c->cid >> 16) & 0xff,
                 (unsigned)(c->cid >> 8) & 0xff, (unsigned)c->cid & 0xff);
    sim_mgmt_env(s, "tls_serial_0", "%llu",
                 (unsigned long long)(0x5a000000ULL + c->cid));
    sim_mgmt_env(s, "tls_id_0", "CN=%s", c->cn);
    sim_mgmt_env(s, "X509_0_CN", "%s", c->cn);
    sim_mgmt_env(s, "tls_id_1", "CN=ovpn_sim CA");
    sim_mgmt_env(s, "X509_1_CN", "ovpn_sim CA");
    sim_mgmt_env(s, "remote_port_1", "1194");
    sim_mgmt_env(s, "local_port_1", "1194");
    sim_mgmt_env(s, "proto_1", "udp");
    sim_mgmt_env(s, "daemon_pid", "%d", (int)getpid());
    sim_mgmt_env(s, "daemon_start_time", "%lld", (long long)s->start_time);
    sim_mgmt_env(s, "daemon_log_redirect", "0");
    sim_mgmt_env(s, "daemon", "0");
    sim_mgmt_env(s, "verb", "3");
    sim_mgmt_env(s, "config", "%s", s->config);
    sim_mgmt_env(s, "ifconfig_local", "%s", s->ifconfig_local);
    sim_mgmt_env(s, "ifconfig_netmask", "%s", s->ifconfig_netmask);
    sim_mgmt_env(s, "script_context", "init");
    sim_mgmt_env(s, "tun_mtu", "1500");
    sim_mgmt_env(s, "dev", "%s", s->dev);
    sim_mgmt_env(s, "dev_type", "tun");
    sim_mgmt_env(s, "redirect_gateway", "0");
    sim_mgmt_emit(s, ">CLIENT:ENV,END");
}

static size_t sim_mgmt_n_established(const struct sim *s)
{
    return s->n_established;
}

void sim_mgmt_connect(struct sim *s, struct sim_client *c, bool reauth)
{
    sim_mgmt_emit(s, ">CLIENT:%s,%llu,%u", reauth ? "REAUTH" : "CONNECT",
                  (unsigned long long)c->cid, c->kid);
    if (s->env_filter > 0) {
        /* Above level 0 the raw peer info comes first, unfiltered. */
        for (size_t i = 0; i < SIM_N_PEER_INFO; i++) {
            sim_mgmt_emit(s, ">CLIENT:ENV,%s", sim_mgmt_peer_info[i]);
        }
    }
    sim_mgmt_env(s, "n_clients", "%zu", sim_mgmt_n_established(s));
    sim_mgmt_env(s, "password", "%s", c->password);
    sim_mgmt_env_tail(s, c, true);
}

void sim_mgmt_established(struct sim *s, struct sim_client *c)
{
    char ts[32];
    sim_mgmt_fmt_time(c->since, ts, sizeof(ts));
    sim_mgmt_emit(s, ">CLIENT:ESTABLISHED,%llu", (unsigned long long)c->cid);
    sim_mgmt_env(s, "n_clients", "%zu", sim_mgmt_n_established(s));
    if (c->vaddr[0] != '\0') {
        sim_mgmt_env(s, "ifconfig_pool_netmask", "%s", s->ifconfig_netmask);
        sim_mgmt_env(s, "ifconfig_pool_remote_ip", "%s", c->vaddr);
    }
    sim_mgmt_env(s, "time_unix", "%lld", (long long)c->since);
    sim_mgmt_env(s, "time_ascii", "%s", ts);
    sim_mgmt_env(s, "trusted_port", "%u", c->rport);
    sim_mgmt_env(s, "trusted_ip", "%s", c->rip);
    sim_mgmt_env_tail(s, c, false);
}

void sim_mgmt_disconnect(struct sim *s, struct sim_client *c)
{
    sim_mgmt_emit(s, ">CLIENT:DISCONNECT,%llu", (unsigned long long)c->cid);
    s->st.disconnects++;
    if (c->state != SIM_ESTABLISHED) {
        /* A client that never got in: openvpn sends an empty ENV. */
        sim_mgmt_emit(s, ">CLIENT:ENV,END");
        return;
    }
    char ts[32];
    sim_mgmt_fmt_time(c->since, ts, sizeof(ts));
    int64_t dur = (int64_t)time(NULL) - c->since;
    sim_mgmt_env(s, "time_duration", "%lld", (long long)(dur > 0 ? dur : 0));
    sim_mgmt_env(s, "bytes_sent", "%llu", (unsigned long long)c->bytes_out);
    sim_mgmt_env(s, "bytes_received", "%llu", (unsigned long long)c->bytes_in);
    sim_mgmt_env(s, "trusted_port", "%u", c->rport);
    sim_mgmt_env(s, "trusted_ip", "%s", c->rip);
    if (c->vaddr[0] != '\0') {
        sim_mgmt_env(s, "ifconfig_pool_netmask", "%s", s->ifconfig_netmask);
        sim_mgmt_env(s, "ifconfig_pool_remote_ip", "%s", c->vaddr);
    }
    sim_mgmt_env(s, "time_unix", "%lld", (long long)c->since);
    sim_mgmt_env(s, "time_ascii", "%s", ts);
    sim_mgmt_env_tail(s, c, false);
}

void sim_mgmt_greet(struct sim *s)
{
    sim_mgmt_emit(s,
                  ">INFO:OpenVPN Management Interface Version 5 -- type "
                  "'help' for more info");
    if (s->held) {
        sim_mgmt_emit(s, ">HOLD:Waiting for hold release:0");
    }
}

void sim_mgmt_reset(struct sim *s)
{
    memset(&s->auth, 0, sizeof(s->auth));
}

/* ---- status ------------------------------------------------------------- */

static void sim_mgmt_status(struct sim *s, int version)
{
    char sep = version == 3 ? '\t' : ',';
    char ts[32];
    int64_t now = (int64_t)time(NULL);
    sim_mgmt_fmt_time(now, ts, sizeof(ts));
    sim_mgmt_emit(s, "TITLE%c%s", sep, SIM_TITLE);
    sim_mgmt_emit(s, "TIME%c%s%c%lld", sep, ts, sep, (long long)now);
    sim_mgmt_emit(s,
                  "HEADER%1$cCLIENT_LIST%1$cCommon Name%1$cReal Address%1$c"
                  "Virtual Address%1$cVirtual IPv6 Address%1$cBytes "
                  "Received%1$cBytes Sent%1$cConnected Since%1$cConnected "
                  "Since (time_t)%1$cUsername%1$cClient ID%1$cPeer ID%1$c"
                  "Data Channel Cipher",
                  sep);
    for (size_t i = 0; i < s->nclients; i++) {
        const struct sim_client *c = &s->clients[i];
        char since[32];
        sim_mgmt_fmt_time(c->since, since, sizeof(since));
        bool est = c->state == SIM_ESTABLISHED;
        /* Username is UNDEF until authenticated, and when empty. */
        const char *user =
            est && c->username[0] != '\0' ? c->username : "UNDEF";
        sim_mgmt_emit(s,
                      "CLIENT_LIST%1$c%2$s%1$c%3$s:%4$u%1$c%5$s%1$c%1$c%6$llu"
                      "%1$c%7$llu%1$c%8$s%1$c%9$lld%1$c%10$s%1$c%11$llu%1$c"
                      "%11$llu%1$c%12$s",
                      sep, c->cn, c->rip, c->rport, est ? c->vaddr : "",
                      (unsigned long long)c->bytes_in,
                      (unsigned long long)c->bytes_out, since,
                      (long long)c->since, user, (unsigned long long)c->cid,
                      est ? "AES-256-GCM" : "BF-CBC");
    }
    sim_mgmt_emit(s,
                  "HEADER%1$cROUTING_TABLE%1$cVirtual Address%1$cCommon "
                  "Name%1$cReal Address%1$cLast Ref%1$cLast Ref (time_t)",
                  sep);
    for (size_t i = 0; i < s->nclients; i++) {
        const struct sim_client *c = &s->clients[i];
        if (c->state != SIM_ESTABLISHED || c->vaddr[0] == '\0') {
            continue;
        }
        sim_mgmt_emit(s,
                      "ROUTING_TABLE%1$c%2$s%1$c%3$s%1$c%4$s:%5$u%1$c%6$s"
                      "%1$c%7$lld",
                      sep, c->vaddr, c->cn, c->rip, c->rport, ts,
                      (long long)now);
    }
    sim_mgmt_emit(s, "GLOBAL_STATS%cMax bcast/mcast queue length%c0", sep, sep);
    sim_mgmt_emit(s, "GLOBAL_STATS%cdco_enabled%c0", sep, sep);
    sim_mgmt_emit(s, "END");
}

/* ---- client-auth / client-deny / kills ---------------------------------- */

static int sim_mgmt_parse_ids(char **tok, uint64_t *ret_cid, uint32_t *ret_kid)
{
    char *e1 = NULL;
    char *e2 = NULL;
    unsigned long long cid = strtoull(tok[0], &e1, 10);
    unsigned long kid = strtoul(tok[1], &e2, 10);
    if (*tok[0] == '\0' || *e1 != '\0' || *tok[1] == '\0' || *e2 != '\0') {
        return -1;
    }
    *ret_cid = cid;
    *ret_kid = (uint32_t)kid;
    return 0;
}

/* The client waiting under CID/KID: a CONNECT or a REAUTH. */
static struct sim_client *sim_mgmt_pending(struct sim *s,
                                           uint64_t cid,
                                           uint32_t kid)
{
    struct sim_client *c = sim_client_find(s, cid);
    if (c == NULL || c->kid != kid || !sim_client_waiting(c)) {
        return NULL;
    }
    return c;
}

/* An allow of a REAUTH: openvpn drops the block's lines (they apply only
 * before the session is established) and the session goes on. */
static void sim_mgmt_allow_reauth(struct sim *s, struct sim_client *c)
{
    sim_mgmt_emit(s, "SUCCESS: client-auth command succeeded");
    sim_client_set_reauth(s, c, false);
    char ip[20];
    snprintf(ip, sizeof(ip), "%s", c->vaddr[0] != '\0' ? c->vaddr : "-");
    sim_client_resolve(s, c, "allow", ip);
}

static void sim_mgmt_allow(struct sim *s, struct sim_client *c)
{
    const struct sim_auth_block *a = &s->auth;
    if (c->reauth) {
        sim_mgmt_allow_reauth(s, c);
        return;
    }
    sim_mgmt_emit(s, "SUCCESS: client-auth command succeeded");
    if (a->disable) {
        /* openvpn: DISCONNECT (full env) then ESTABLISHED; a refusal. */
        sim_client_resolve(s, c, "deny", "\"disabled\" \"\"");
        sim_mgmt_disconnect(s, c);
        sim_client_remove(s, c);
        return;
    }
    sim_client_set_established(s, c);
    snprintf(c->vaddr, sizeof(c->vaddr), "%s", a->ip);
    if (c->vaddr[0] != '\0') {
        sim_mgmt_emit(s, ">CLIENT:ADDRESS,%llu,%s,1",
                      (unsigned long long)c->cid, c->vaddr);
    }
    for (int i = 0; i < a->n_iroutes; i++) {
        sim_mgmt_emit(s, ">CLIENT:ADDRESS,%llu,%s,0",
                      (unsigned long long)c->cid, a->iroutes[i]);
    }
    sim_mgmt_established(s, c);
    /* Storm clients leave at once so sessions do not pile up; populate
     * clients stay. */
    bool storm = c->owner == SIM_OWNER_STORM && s->storm.active &&
                 s->storm.kind == SIM_JOB_STORM;
    char ip[20];
    snprintf(ip, sizeof(ip), "%s", c->vaddr[0] != '\0' ? c->vaddr : "-");
    sim_client_resolve(s, c, "allow", ip);
    if (storm) {
        sim_mgmt_disconnect(s, c);
        sim_client_remove(s, c);
    }
}

static void sim_mgmt_auth_end(struct sim *s)
{
    struct sim_auth_block *a = &s->auth;
    struct sim_client *c = sim_mgmt_pending(s, a->cid, a->kid);
    if (c == NULL || !a->parse_ok) {
        s->st.errors++;
        sim_mgmt_emit(s, "ERROR: client-auth command failed");
    } else {
        sim_mgmt_allow(s, c);
    }
    memset(a, 0, sizeof(*a));
}

static void sim_mgmt_auth_line(struct sim *s, char *line)
{
    struct sim_auth_block *a = &s->auth;
    char *tok[SIM_MAX_TOKENS];
    int n = sim_tokenize(line, tok, SIM_MAX_TOKENS);
    if (n <= 0) {
        return;
    }
    if (strcmp(tok[0], "ifconfig-push") == 0 && n >= 2) {
        snprintf(a->ip, sizeof(a->ip), "%s", tok[1]);
        if (n >= 3) {
            snprintf(a->netmask, sizeof(a->netmask), "%s", tok[2]);
        }
    } else if (strcmp(tok[0], "iroute") == 0 && n >= 3 &&
               a->n_iroutes < SIM_MAX_IROUTES) {
        snprintf(a->iroutes[a->n_iroutes++], sizeof(a->iroutes[0]), "%s/%s",
                 tok[1], tok[2]);
    } else if (strcmp(tok[0], "disable") == 0) {
        a->disable = true;
    }
}

/* Re-quotes a token for a control reply line. */
static void sim_mgmt_quote(const char *in, char *out, size_t outlen)
{
    size_t j = 0;
    if (outlen < 3) {
        return;
    }
    out[j++] = '"';
    for (; *in != '\0' && j + 3 < outlen; in++) {
        if (*in == '"' || *in == '\\') {
            out[j++] = '\\';
        }
        out[j++] = *in;
    }
    out[j++] = '"';
    out[j] = '\0';
}

static void sim_mgmt_client_deny(struct sim *s, char **tok, int n)
{
    uint64_t cid;
    uint32_t kid;
    struct sim_client *c = NULL;
    if (n >= 4 && sim_mgmt_parse_ids(tok + 1, &cid, &kid) == 0) {
        c = sim_mgmt_pending(s, cid, kid);
    }
    if (c == NULL) {
        s->st.errors++;
        sim_mgmt_emit(s, "ERROR: client-deny command failed");
        return;
    }
    sim_mgmt_emit(s, "SUCCESS: client-deny command succeeded");
    char r[600];
    char cr[600];
    char detail[1300];
    sim_mgmt_quote(tok[3], r, sizeof(r));
    sim_mgmt_quote(n >= 5 ? tok[4] : "", cr, sizeof(cr));
    snprintf(detail, sizeof(detail), "%s %s", r, cr);
    sim_client_resolve(s, c, "deny", detail);
    sim_mgmt_disconnect(s, c);
    sim_client_remove(s, c);
}

static void sim_mgmt_kill_one(struct sim *s, struct sim_client *c)
{
    if (sim_client_waiting(c)) {
        sim_client_resolve(s, c, "killed", "");
    }
    sim_mgmt_disconnect(s, c);
    sim_client_remove(s, c);
}

static void sim_mgmt_client_kill(struct sim *s, char **tok, int n)
{
    char *e = NULL;
    struct sim_client *c = NULL;
    if (n >= 2) {
        unsigned long long cid = strtoull(tok[1], &e, 10);
        if (*tok[1] != '\0' && *e == '\0') {
            c = sim_client_find(s, cid);
        }
    }
    if (c == NULL) {
        s->st.errors++;
        sim_mgmt_emit(s, "ERROR: client-kill command failed");
        return;
    }
    sim_mgmt_emit(s, "SUCCESS: client-kill command succeeded");
    sim_mgmt_kill_one(s, c);
}

/* `kill CN`: DISCONNECTs come before the reply, as recorded. */
static void sim_mgmt_kill_cn(struct sim *s, const char *cn)
{
    int killed = 0;
    size_t i = 0;
    while (i < s->nclients) {
        if (strcmp(s->clients[i].cn, cn) == 0) {
            sim_mgmt_kill_one(s, &s->clients[i]);
            killed++;
            continue; /* removal moved another client into slot i */
        }
        i++;
    }
    if (killed == 0) {
        sim_mgmt_emit(s, "ERROR: common name '%s' not found", cn);
        return;
    }
    sim_mgmt_emit(s, "SUCCESS: common name '%s' found, %d client(s) killed", cn,
                  killed);
}

/* ---- byte counts ----------------------------------------------------------
 */

/* `bytecount N`: openvpn takes atoi(N) seconds; 0 (or junk) turns it off. */
static void sim_mgmt_set_bytecount(struct sim *s, const char *arg)
{
    int sec = atoi(arg);
    s->bc.interval_ns = sec > 0 ? (uint64_t)sec * SIM_NS_PER_S : 0;
    s->bc.round_ns = sim_now_ns();
    s->bc.cursor = 0;
    sim_mgmt_emit(s, "SUCCESS: bytecount interval changed");
}

static void sim_mgmt_bytecount_one(struct sim *s, struct sim_client *c)
{
    if (c->state != SIM_ESTABLISHED) {
        return;
    }
    c->bytes_in += s->bc.add_in;
    c->bytes_out += s->bc.add_out;
    s->st.bytecounts++;
    sim_mgmt_emit(s, ">BYTECOUNT_CLI:%llu,%llu,%llu",
                  (unsigned long long)c->cid, (unsigned long long)c->bytes_in,
                  (unsigned long long)c->bytes_out);
}

/* A client that moves into an already visited slot (a removal swaps the
 * last one in) waits for the next round; one moved forward may get two
 * lines in a round. Both are rare and harmless: counters only grow. */
void sim_mgmt_bytecount(struct sim *s, uint64_t now)
{
    struct sim_bytecount *bc = &s->bc;
    if (bc->interval_ns == 0 || !sim_mgmt_ready(s)) {
        return;
    }
    if (now - bc->round_ns >= bc->interval_ns) {
        /* Finish the round (a late loop), then start the next one; a
         * controller stuck for a whole interval gets no backlog. */
        while (bc->cursor < s->nclients) {
            sim_mgmt_bytecount_one(s, &s->clients[bc->cursor++]);
        }
        uint64_t rounds = (now - bc->round_ns) / bc->interval_ns;
        bc->round_ns += rounds * bc->interval_ns;
        bc->cursor = 0;
    }
    size_t due = (size_t)((double)s->nclients * (double)(now - bc->round_ns) /
                          (double)bc->interval_ns);
    if (due > s->nclients) {
        due = s->nclients;
    }
    while (bc->cursor < due) {
        sim_mgmt_bytecount_one(s, &s->clients[bc->cursor++]);
    }
}

/* ---- command dispatch --------------------------------------------------- */

static void sim_mgmt_toggle(struct sim *s, char **tok, int n, const char *what)
{
    if (n >= 2 && strcmp(tok[1], "on") == 0) {
        sim_mgmt_emit(s, "SUCCESS: real-time %s notification set to ON", what);
        if (n >= 3 && strcmp(tok[2], "all") == 0) {
            sim_mgmt_emit(s, "END");
        }
    } else if (n >= 2 && strcmp(tok[1], "off") == 0) {
        sim_mgmt_emit(s, "SUCCESS: real-time %s notification set to OFF", what);
    } else {
        /* `state`, `state all`, `log N`: the (empty) history. */
        sim_mgmt_emit(s, "END");
    }
}

static void sim_mgmt_hold(struct sim *s, char **tok, int n)
{
    if (n >= 2 && strcmp(tok[1], "release") == 0) {
        s->held = false;
        sim_mgmt_emit(s, "SUCCESS: hold release succeeded");
    } else if (n >= 2 && strcmp(tok[1], "on") == 0) {
        s->held = true;
        sim_mgmt_emit(s, "SUCCESS: hold flag set to ON");
    } else if (n >= 2 && strcmp(tok[1], "off") == 0) {
        sim_mgmt_emit(s, "SUCCESS: hold flag set to OFF");
    } else {
        sim_mgmt_emit(s, "SUCCESS: hold=%d", s->held ? 1 : 0);
    }
}

static void sim_mgmt_version(struct sim *s, int n)
{
    if (n >= 2) {
        return; /* `version N`: no reply in 2.6.x */
    }
    sim_mgmt_emit(s, "OpenVPN Version: %s", SIM_TITLE);
    sim_mgmt_emit(s, "Management Version: 5");
    sim_mgmt_emit(s, "END");
}

static void sim_mgmt_load_stats(struct sim *s)
{
    uint64_t in = 0;
    uint64_t out = 0;
    for (size_t i = 0; i < s->nclients; i++) {
        in += s->clients[i].bytes_in;
        out += s->clients[i].bytes_out;
    }
    sim_mgmt_emit(s, "SUCCESS: nclients=%zu,bytesin=%llu,bytesout=%llu",
                  sim_mgmt_n_established(s), (unsigned long long)in,
                  (unsigned long long)out);
}

static void sim_mgmt_client_auth(struct sim *s, char **tok, int n, bool nt)
{
    uint64_t cid = 0;
    uint32_t kid = 0;
    bool ok = n >= 3 && sim_mgmt_parse_ids(tok + 1, &cid, &kid) == 0;
    if (nt) {
        struct sim_client *c = ok ? sim_mgmt_pending(s, cid, kid) : NULL;
        if (c == NULL) {
            s->st.errors++;
            sim_mgmt_emit(s, "ERROR: client-auth command failed");
            return;
        }
        memset(&s->auth, 0, sizeof(s->auth));
        sim_mgmt_allow(s, c);
        return;
    }
    /* Block mode until END, even with bad ids: openvpn reads it all. */
    memset(&s->auth, 0, sizeof(s->auth));
    s->auth.active = true;
    s->auth.parse_ok = ok;
    s->auth.cid = cid;
    s->auth.kid = kid;
}

static void sim_mgmt_command(struct sim *s, char **tok, int n)
{
    const char *cmd = tok[0];
    if (strcmp(cmd, "client-auth") == 0 || strcmp(cmd, "client-auth-nt") == 0) {
        sim_mgmt_client_auth(s, tok, n, cmd[11] == '-');
    } else if (strcmp(cmd, "client-deny") == 0) {
        sim_mgmt_client_deny(s, tok, n);
    } else if (strcmp(cmd, "client-kill") == 0) {
        sim_mgmt_client_kill(s, tok, n);
    } else if (strcmp(cmd, "kill") == 0 && n >= 2) {
        sim_mgmt_kill_cn(s, tok[1]);
    } else if (strcmp(cmd, "status") == 0) {
        sim_mgmt_status(s, n >= 2 ? atoi(tok[1]) : 1);
    } else if (strcmp(cmd, "version") == 0) {
        sim_mgmt_version(s, n);
    } else if (strcmp(cmd, "bytecount") == 0 && n >= 2) {
        sim_mgmt_set_bytecount(s, tok[1]);
    } else if (strcmp(cmd, "env-filter") == 0) {
        s->env_filter = n >= 2 ? atoi(tok[1]) : 0;
        sim_mgmt_emit(s, "SUCCESS: env_filter_level=%d", s->env_filter);
    } else if (strcmp(cmd, "state") == 0) {
        sim_mgmt_toggle(s, tok, n, "state");
    } else if (strcmp(cmd, "log") == 0) {
        sim_mgmt_toggle(s, tok, n, "log");
    } else if (strcmp(cmd, "echo") == 0) {
        sim_mgmt_toggle(s, tok, n, "echo");
    } else if (strcmp(cmd, "hold") == 0) {
        sim_mgmt_hold(s, tok, n);
    } else if (strcmp(cmd, "pid") == 0) {
        sim_mgmt_emit(s, "SUCCESS: pid=%d", (int)getpid());
    } else if (strcmp(cmd, "nclients") == 0) {
        sim_mgmt_emit(s, "SUCCESS: nclients=%zu", sim_mgmt_n_established(s));
    } else if (strcmp(cmd, "load-stats") == 0) {
        sim_mgmt_load_stats(s);
    } else if (strcmp(cmd, "signal") == 0 && n >= 2) {
        sim_mgmt_emit(s, "SUCCESS: signal %s thrown", tok[1]);
    } else if (strcmp(cmd, "help") == 0) {
        sim_mgmt_emit(s, "Management Interface for %s", SIM_TITLE);
        sim_mgmt_emit(s, "(ovpn_sim: a subset of the commands)");
        sim_mgmt_emit(s, "END");
    } else {
        s->st.errors++;
        sim_mgmt_emit(s,
                      "ERROR: unknown command, enter 'help' for more "
                      "options");
    }
}

void sim_mgmt_line(struct sim *s, char *line)
{
    if (s->auth.active) {
        if (strcmp(line, "END") == 0) {
            sim_mgmt_auth_end(s);
        } else {
            sim_mgmt_auth_line(s, line);
        }
        return;
    }
    char *tok[SIM_MAX_TOKENS];
    int n = sim_tokenize(line, tok, SIM_MAX_TOKENS);
    if (n == 0) {
        return;
    }
    s->st.commands++;
    if (n == -E2BIG) {
        s->st.errors++;
        sim_mgmt_emit(s,
                      "ERROR: Options error: Parameter at TCP:0 is too "
                      "long (256 chars max)");
        return;
    }
    if (n < 0) {
        s->st.errors++;
        sim_mgmt_emit(s,
                      "ERROR: unknown command, enter 'help' for more "
                      "options");
        return;
    }
    if (strcmp(tok[0], "exit") == 0 || strcmp(tok[0], "quit") == 0) {
        /* No reply; the main loop closes after this batch. */
        s->mgmt_quit = true;
        return;
    }
    sim_mgmt_command(s, tok, n);
}
