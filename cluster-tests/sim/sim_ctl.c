/*
 * The control-socket half of ovpn_sim: the line protocol of simulated
 * clients (connect, reauth, disconnect, storm, populate, bytes, dump,
 * stats, quit) and the bookkeeping of answers (sim_client_resolve). See
 * README.md for the protocol.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sim.h"

static void sim_ctl_reply(struct sim *s, int i, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void sim_ctl_reply(struct sim *s, int i, const char *fmt, ...)
{
    if (i < 0 || s->ctl[i].fd < 0) {
        return;
    }
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    strcat(line, "\n");
    sim_buf_append(&s->ctl[i].out, line, strlen(line));
    s->ctl[i].busy = false;
}

void sim_client_resolve(struct sim *s,
                        struct sim_client *c,
                        const char *outcome,
                        const char *detail)
{
    bool decided =
        strcmp(outcome, "allow") == 0 || strcmp(outcome, "deny") == 0;
    s->st.allow += strcmp(outcome, "allow") == 0;
    s->st.deny += strcmp(outcome, "deny") == 0;
    s->st.timeout += strcmp(outcome, "timeout") == 0;
    s->st.killed += strcmp(outcome, "killed") == 0;
    if (c->owner == SIM_OWNER_CTL) {
        sim_ctl_reply(s, c->owner_ctl, "%s %llu%s%s", outcome,
                      (unsigned long long)c->cid, detail[0] ? " " : "", detail);
    } else if (c->owner == SIM_OWNER_STORM) {
        struct sim_storm *st = &s->storm;
        st->in_flight--;
        st->finished++;
        st->allow += strcmp(outcome, "allow") == 0;
        st->deny += strcmp(outcome, "deny") == 0;
        st->timeout += strcmp(outcome, "timeout") == 0;
        st->killed += strcmp(outcome, "killed") == 0;
        if (decided && st->nlat < st->n) {
            uint64_t t0 = c->sent_ns != 0 ? c->sent_ns : c->wait_ns;
            uint64_t us = s->rx_ns > t0 ? (s->rx_ns - t0) / 1000 : 0;
            st->lat_us[st->nlat++] =
                us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
        }
    }
    c->owner = SIM_OWNER_NONE;
}

/* ---- storm -------------------------------------------------------------- */

static int sim_u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a;
    uint32_t y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The q-per-mille percentile of sorted v, nearest rank. */
static uint32_t sim_pct(const uint32_t *v, uint64_t n, unsigned q)
{
    if (n == 0) {
        return 0;
    }
    uint64_t rank = (q * n + 999) / 1000; /* nearest rank, 1-based */
    return v[rank > 0 ? rank - 1 : 0];
}

static void sim_storm_finish(struct sim *s, uint64_t now)
{
    struct sim_storm *st = &s->storm;
    /* Past the deadline: whatever is still out counts as timed out. */
    for (size_t i = 0; i < s->nclients; i++) {
        if (s->clients[i].owner == SIM_OWNER_STORM) {
            s->clients[i].owner = SIM_OWNER_NONE;
            st->timeout++;
        }
    }
    qsort(st->lat_us, st->nlat, sizeof(uint32_t), sim_u32_cmp);
    char extra[64] = "";
    if (st->kind == SIM_JOB_POPULATE) {
        snprintf(extra, sizeof(extra), " established=%zu", s->n_established);
    }
    sim_ctl_reply(
        s, st->ctl,
        "done n=%llu allow=%llu deny=%llu timeout=%llu killed=%llu "
        "skipped=%llu p50_us=%u p90_us=%u p99_us=%u max_us=%u elapsed_ms=%llu "
        "rate=%llu capped=%llu lag_max_us=%llu p999_us=%u%s",
        (unsigned long long)st->n, (unsigned long long)st->allow,
        (unsigned long long)st->deny, (unsigned long long)st->timeout,
        (unsigned long long)st->killed,
        (unsigned long long)(st->n - st->started + st->gone),
        sim_pct(st->lat_us, st->nlat, 500), sim_pct(st->lat_us, st->nlat, 900),
        sim_pct(st->lat_us, st->nlat, 990),
        st->nlat > 0 ? st->lat_us[st->nlat - 1] : 0,
        (unsigned long long)((now - st->t0_ns) / 1000000),
        (unsigned long long)st->rate, (unsigned long long)st->capped,
        (unsigned long long)(st->lag_max_ns / 1000),
        sim_pct(st->lat_us, st->nlat, 999), extra);
    free(st->lat_us);
    free(st->cids);
    memset(st, 0, sizeof(*st));
}

/* When paced start i is due: i / rate seconds after the first start. */
static uint64_t sim_storm_due(const struct sim_storm *st, uint64_t i)
{
    return st->sched0_ns + i * SIM_NS_PER_S / st->rate;
}

/* Wakes the loop when the next start is due even with the cap full, so a
 * start the cap holds back is counted as such. */
uint64_t sim_storm_wait_ns(const struct sim *s, uint64_t now)
{
    const struct sim_storm *st = &s->storm;
    /* Once the due start was seen held back by the cap, only an answer
     * can let it out (and a controller, the first one): no busy wait. */
    if (!st->active || st->rate == 0 || st->started >= st->n ||
        !sim_mgmt_ready(s) || st->cap_noted) {
        return UINT64_MAX;
    }
    if (st->started == 0) {
        return 0;
    }
    uint64_t due = sim_storm_due(st, st->started);
    return due > now ? due - now : 0;
}

/* May the next storm connect start now? Paced: only once it is due, and
 * a due start that finds CONCURRENCY in flight is counted (once) as held
 * back by the cap; it goes out as soon as an answer frees a slot, and the
 * later starts keep their schedule (open loop). */
static bool sim_storm_may_start(struct sim *s, uint64_t now)
{
    struct sim_storm *st = &s->storm;
    if (!sim_mgmt_ready(s) || st->started >= st->n) {
        return false;
    }
    bool due = st->rate == 0 || st->started == 0 ||
               now >= sim_storm_due(st, st->started);
    if (!due) {
        return false;
    }
    if (st->in_flight >= st->conc) {
        if (st->rate != 0 && !st->cap_noted) {
            st->capped++;
            st->cap_noted = true;
        }
        return false;
    }
    return true;
}

/* The next connect of a storm or populate (NULL without memory). */
static struct sim_client *sim_storm_new_client(struct sim *s)
{
    struct sim_storm *st = &s->storm;
    char cn[SIM_TOKEN_MAX];
    uint64_t k = st->kind == SIM_JOB_POPULATE ? st->first + st->started
                                              : st->started % st->identities;
    snprintf(cn, sizeof(cn), "%s-%llu", st->prefix, (unsigned long long)k);
    return sim_client_add(s, cn, st->has_password ? cn : "", st->password);
}

/* The next chosen client of a reauth job, or NULL when it is gone or
 * already waiting (then it counts as started, finished and gone). */
static struct sim_client *sim_storm_reauth_next(struct sim *s)
{
    struct sim_storm *st = &s->storm;
    struct sim_client *c = sim_client_find(s, st->cids[st->started]);
    if (c != NULL && c->state == SIM_ESTABLISHED && !c->reauth &&
        c->owner == SIM_OWNER_NONE) {
        return c;
    }
    st->started++;
    st->finished++;
    st->gone++;
    return NULL;
}

void sim_storm_pump(struct sim *s)
{
    struct sim_storm *st = &s->storm;
    if (!st->active) {
        return;
    }
    uint64_t now = sim_now_ns();
    if (st->finished == st->n || now > st->deadline_ns) {
        sim_storm_finish(s, now);
        return;
    }
    while (sim_storm_may_start(s, now)) {
        struct sim_client *c = NULL;
        if (st->rate != 0 && st->started == 0) {
            st->sched0_ns = now; /* the schedule starts with a controller */
        }
        if (st->kind == SIM_JOB_REAUTH) {
            c = sim_storm_reauth_next(s);
            if (c == NULL) {
                continue; /* that one left meanwhile: counted as gone */
            }
        } else {
            c = sim_storm_new_client(s);
            if (c == NULL) {
                break;
            }
        }
        if (st->rate != 0) {
            uint64_t due = sim_storm_due(st, st->started);
            if (now > due && now - due > st->lag_max_ns) {
                st->lag_max_ns = now - due;
            }
            st->cap_noted = false;
        }
        c->owner = SIM_OWNER_STORM;
        st->started++;
        st->in_flight++;
        if (st->kind == SIM_JOB_REAUTH) {
            sim_client_reauth(s, c);
        } else {
            sim_client_connect(s, c);
        }
        now = sim_now_ns();
    }
    if (st->finished == st->n) {
        sim_storm_finish(s, now); /* the last ones were gone */
    }
}

/* Trailing `rate=R` of a storm line (R connects per second, paced); the
 * other trailing token is the password. Returns false on a bad value. */
static bool sim_ctl_storm_opts(char **tok,
                               int k0,
                               int n,
                               const char **ret_password,
                               uint64_t *ret_rate,
                               uint64_t *ret_first)
{
    *ret_password = NULL;
    *ret_rate = 0;
    if (ret_first != NULL) {
        *ret_first = 0;
    }
    for (int k = k0; k < n; k++) {
        if (ret_first != NULL && strncmp(tok[k], "first=", 6) == 0) {
            if (!sim_parse_bounded(tok[k] + 6, 0, UINT32_MAX, ret_first)) {
                return false;
            }
        } else if (strncmp(tok[k], "rate=", 5) == 0) {
            if (!sim_parse_bounded(tok[k] + 5, 1, SIM_STORM_MAX_RATE,
                                   ret_rate)) {
                return false;
            }
        } else if (*ret_password == NULL) {
            *ret_password = tok[k];
        } else {
            return false;
        }
    }
    return true;
}

/* Starts the job described in s->storm (kind, n, conc, rate, ...). */
static bool sim_ctl_job_start(struct sim *s, int i)
{
    struct sim_storm *st = &s->storm;
    st->lat_us = calloc(st->n, sizeof(uint32_t));
    if (st->lat_us == NULL) {
        free(st->cids);
        memset(st, 0, sizeof(*st));
        sim_ctl_reply(s, i, "error out of memory");
        return false;
    }
    st->active = true;
    st->ctl = i;
    st->t0_ns = sim_now_ns();
    st->deadline_ns = st->t0_ns + SIM_STORM_MAX_NS;
    s->ctl[i].busy = true;
    return true;
}

static void sim_ctl_storm(struct sim *s, int i, char **tok, int n)
{
    struct sim_storm *st = &s->storm;
    if (st->active) {
        sim_ctl_reply(s, i, "error a storm is running");
        return;
    }
    uint64_t num;
    uint64_t ids;
    uint64_t conc;
    uint64_t rate;
    const char *password;
    if (n < 5 || !sim_parse_bounded(tok[1], 1, SIM_STORM_MAX_N, &num) ||
        !sim_parse_bounded(tok[2], 1, SIM_STORM_MAX_N, &ids) ||
        !sim_parse_bounded(tok[3], 1, SIM_STORM_MAX_CONC, &conc) ||
        strlen(tok[4]) >= sizeof(st->prefix) - 12 ||
        !sim_ctl_storm_opts(tok, 5, n, &password, &rate, NULL)) {
        sim_ctl_reply(s, i,
                      "error usage: storm N(1..%d) IDENTITIES CONCURRENCY"
                      "(1..%d) PREFIX [PASSWORD] [rate=R(1..%d)]",
                      SIM_STORM_MAX_N, SIM_STORM_MAX_CONC, SIM_STORM_MAX_RATE);
        return;
    }
    st->kind = SIM_JOB_STORM;
    st->n = num;
    st->identities = ids;
    st->conc = conc;
    st->rate = rate;
    snprintf(st->prefix, sizeof(st->prefix), "%s", tok[4]);
    if (password != NULL) {
        st->has_password = true;
        snprintf(st->password, sizeof(st->password), "%s", password);
    }
    sim_ctl_job_start(s, i);
}

/* populate N PREFIX CONCURRENCY [PASSWORD] [first=K] [rate=R]: N clients
 * PREFIX-K .. PREFIX-(K+N-1) connect and, once allowed, stay. */
static void sim_ctl_populate(struct sim *s, int i, char **tok, int n)
{
    struct sim_storm *st = &s->storm;
    if (st->active) {
        sim_ctl_reply(s, i, "error a storm is running");
        return;
    }
    uint64_t num;
    uint64_t conc;
    uint64_t rate;
    uint64_t first;
    const char *password;
    if (n < 4 || !sim_parse_bounded(tok[1], 1, SIM_STORM_MAX_N, &num) ||
        strlen(tok[2]) >= sizeof(st->prefix) - 12 ||
        !sim_parse_bounded(tok[3], 1, SIM_STORM_MAX_CONC, &conc) ||
        !sim_ctl_storm_opts(tok, 4, n, &password, &rate, &first) ||
        s->nclients + num > SIM_MAX_CLIENTS) {
        sim_ctl_reply(s, i,
                      "error usage: populate N(1..%d) PREFIX CONCURRENCY"
                      "(1..%d) [PASSWORD] [first=K] [rate=R(1..%d)]",
                      SIM_STORM_MAX_N, SIM_STORM_MAX_CONC, SIM_STORM_MAX_RATE);
        return;
    }
    st->kind = SIM_JOB_POPULATE;
    st->n = num;
    st->identities = num;
    st->first = first;
    st->conc = conc;
    st->rate = rate;
    snprintf(st->prefix, sizeof(st->prefix), "%s", tok[2]);
    if (password != NULL) {
        st->has_password = true;
        snprintf(st->password, sizeof(st->password), "%s", password);
    }
    sim_ctl_job_start(s, i);
}

/* reauth random N [CONCURRENCY] [rate=R]: REAUTHs of N distinct
 * established clients picked at random (fewer when fewer are idle). */
static void sim_ctl_reauth_random(struct sim *s, int i, char **tok, int n)
{
    struct sim_storm *st = &s->storm;
    uint64_t num;
    uint64_t conc = 256;
    uint64_t rate;
    const char *extra;
    if (st->active) {
        sim_ctl_reply(s, i, "error a storm is running");
        return;
    }
    int k0 = 3;
    if (n >= 4 && strncmp(tok[3], "rate=", 5) != 0) {
        k0 = 4;
    }
    if (n < 3 || !sim_parse_bounded(tok[2], 1, SIM_STORM_MAX_N, &num) ||
        (k0 == 4 && !sim_parse_bounded(tok[3], 1, SIM_STORM_MAX_CONC, &conc)) ||
        !sim_ctl_storm_opts(tok, k0, n, &extra, &rate, NULL) || extra != NULL) {
        sim_ctl_reply(s, i,
                      "error usage: reauth CID | reauth random N [CONCURRENCY"
                      "(1..%d)] [rate=R(1..%d)]",
                      SIM_STORM_MAX_CONC, SIM_STORM_MAX_RATE);
        return;
    }
    uint64_t *cids = malloc((s->nclients + 1) * sizeof(*cids));
    if (cids == NULL) {
        sim_ctl_reply(s, i, "error out of memory");
        return;
    }
    size_t m = 0;
    for (size_t k = 0; k < s->nclients; k++) {
        const struct sim_client *c = &s->clients[k];
        if (c->state == SIM_ESTABLISHED && !c->reauth &&
            c->owner == SIM_OWNER_NONE) {
            cids[m++] = c->cid;
        }
    }
    if (m == 0) {
        free(cids);
        sim_ctl_reply(s, i, "error no established client");
        return;
    }
    /* A partial Fisher-Yates shuffle: the first num are the picks. */
    if (num > m) {
        num = m;
    }
    for (size_t k = 0; k < num; k++) {
        size_t j = k + (size_t)(sim_rand(s) % (m - k));
        uint64_t t = cids[k];
        cids[k] = cids[j];
        cids[j] = t;
    }
    st->kind = SIM_JOB_REAUTH;
    st->cids = cids;
    st->n = num;
    st->identities = num;
    st->conc = conc;
    st->rate = rate;
    sim_ctl_job_start(s, i);
}

/* ---- control socket ----------------------------------------------------- */

static void sim_ctl_connect(struct sim *s, int i, char **tok, int n)
{
    if (n < 2) {
        sim_ctl_reply(s, i, "error usage: connect CN [USERNAME [PASSWORD]]");
        return;
    }
    if (!sim_mgmt_ready(s)) {
        sim_ctl_reply(s, i, "error not ready (no controller, or held)");
        return;
    }
    struct sim_client *c =
        sim_client_add(s, tok[1], n >= 3 ? tok[2] : "", n >= 4 ? tok[3] : "");
    if (c == NULL) {
        sim_ctl_reply(s, i, "error out of memory");
        return;
    }
    c->owner = SIM_OWNER_CTL;
    c->owner_ctl = i;
    s->ctl[i].busy = true;
    sim_client_connect(s, c);
}

/* reauth CID: one REAUTH, answered like connect (allow CID IP, ...). */
static void sim_ctl_reauth(struct sim *s, int i, char **tok, int n)
{
    uint64_t cid;
    if (n >= 2 && strcmp(tok[1], "random") == 0) {
        sim_ctl_reauth_random(s, i, tok, n);
        return;
    }
    if (n < 2 || !sim_parse_bounded(tok[1], 0, UINT64_MAX, &cid)) {
        sim_ctl_reply(s, i,
                      "error usage: reauth CID | reauth random N "
                      "[CONCURRENCY] [rate=R]");
        return;
    }
    if (!sim_mgmt_ready(s)) {
        sim_ctl_reply(s, i, "error not ready (no controller, or held)");
        return;
    }
    struct sim_client *c = sim_client_find(s, cid);
    if (c == NULL || c->state != SIM_ESTABLISHED || c->reauth ||
        c->owner != SIM_OWNER_NONE) {
        sim_ctl_reply(s, i, "error no idle established client %llu",
                      (unsigned long long)cid);
        return;
    }
    c->owner = SIM_OWNER_CTL;
    c->owner_ctl = i;
    s->ctl[i].busy = true;
    sim_client_reauth(s, c);
}

/* bytes IN OUT: what each client adds per bytecount interval. */
static void sim_ctl_bytes(struct sim *s, int i, char **tok, int n)
{
    uint64_t in;
    uint64_t out;
    if (n < 3 || !sim_parse_bounded(tok[1], 0, UINT32_MAX, &in) ||
        !sim_parse_bounded(tok[2], 0, UINT32_MAX, &out)) {
        sim_ctl_reply(s, i, "error usage: bytes IN OUT (0..%u per interval)",
                      UINT32_MAX);
        return;
    }
    s->bc.add_in = in;
    s->bc.add_out = out;
    sim_ctl_reply(s, i, "ok");
}

/* dump PATH: one line per client, "CID CN IP STATE" (IP "-" while
 * waiting or without ifconfig-push), written to PATH. */
static void sim_ctl_dump(struct sim *s, int i, char **tok, int n)
{
    if (n < 2) {
        sim_ctl_reply(s, i, "error usage: dump PATH");
        return;
    }
    FILE *f = fopen(tok[1], "we");
    if (f == NULL) {
        sim_ctl_reply(s, i, "error %s: %s", tok[1], strerror(errno));
        return;
    }
    for (size_t k = 0; k < s->nclients; k++) {
        const struct sim_client *c = &s->clients[k];
        bool est = c->state == SIM_ESTABLISHED;
        fprintf(f, "%" PRIu64 " %s %s %s\n", c->cid, c->cn,
                est && c->vaddr[0] != '\0' ? c->vaddr : "-",
                c->reauth ? "reauth"
                : est     ? "established"
                          : "pending");
    }
    if (fclose(f) != 0) {
        sim_ctl_reply(s, i, "error %s: %s", tok[1], strerror(errno));
        return;
    }
    sim_ctl_reply(s, i, "ok n=%zu", s->nclients);
}

static void sim_ctl_disconnect(struct sim *s, int i, char **tok, int n)
{
    uint64_t cid;
    struct sim_client *c = NULL;
    if (n >= 2 && sim_parse_bounded(tok[1], 0, UINT64_MAX, &cid)) {
        c = sim_client_find(s, cid);
    }
    if (c == NULL) {
        sim_ctl_reply(s, i, "error no such client");
        return;
    }
    if (c->state != SIM_ESTABLISHED) {
        sim_ctl_reply(s, i, "error client %llu is waiting for a decision",
                      (unsigned long long)cid);
        return;
    }
    sim_mgmt_disconnect(s, c);
    sim_client_remove(s, c);
    sim_mgmt_flush(s);
    sim_ctl_reply(s, i, "ok");
}

static void sim_ctl_stats(struct sim *s, int i)
{
    const struct sim_stats *t = &s->st;
    sim_ctl_reply(
        s, i,
        "stats mgmt_connected=%d held=%d mgmt_connects=%llu clients=%zu "
        "pending=%zu connects=%llu allow=%llu deny=%llu timeout=%llu "
        "killed=%llu disconnects=%llu commands=%llu errors=%llu storm=%d "
        "established=%zu waiting=%zu reauths=%llu bytecounts=%llu "
        "bytecount_s=%llu pid=%d",
        s->mgmt_fd >= 0, s->held, (unsigned long long)t->mgmt_connects,
        s->nclients, s->nclients - s->n_established,
        (unsigned long long)t->connects, (unsigned long long)t->allow,
        (unsigned long long)t->deny, (unsigned long long)t->timeout,
        (unsigned long long)t->killed, (unsigned long long)t->disconnects,
        (unsigned long long)t->commands, (unsigned long long)t->errors,
        s->storm.active, s->n_established, s->n_waiting,
        (unsigned long long)t->reauths, (unsigned long long)t->bytecounts,
        (unsigned long long)(s->bc.interval_ns / SIM_NS_PER_S), (int)getpid());
}

static bool sim_ctl_command(struct sim *s, int i, char *line)
{
    char *tok[SIM_MAX_TOKENS];
    int n = sim_tokenize(line, tok, SIM_MAX_TOKENS);
    if (n == 0) {
        return true;
    }
    if (n < 0) {
        sim_ctl_reply(s, i, "error bad quoting or token too long");
    } else if (strcmp(tok[0], "connect") == 0) {
        sim_ctl_connect(s, i, tok, n);
    } else if (strcmp(tok[0], "disconnect") == 0) {
        sim_ctl_disconnect(s, i, tok, n);
    } else if (strcmp(tok[0], "storm") == 0) {
        sim_ctl_storm(s, i, tok, n);
    } else if (strcmp(tok[0], "populate") == 0) {
        sim_ctl_populate(s, i, tok, n);
    } else if (strcmp(tok[0], "reauth") == 0) {
        sim_ctl_reauth(s, i, tok, n);
    } else if (strcmp(tok[0], "bytes") == 0) {
        sim_ctl_bytes(s, i, tok, n);
    } else if (strcmp(tok[0], "dump") == 0) {
        sim_ctl_dump(s, i, tok, n);
    } else if (strcmp(tok[0], "drop") == 0) {
        /* Cuts the management connection, as a crashed or restarted
         * controller link would; ovhad reconnects and recovers. */
        if (s->mgmt_fd < 0) {
            sim_ctl_reply(s, i, "error no controller");
        } else {
            s->mgmt_quit = true;
            sim_mgmt_flush(s);
            sim_ctl_reply(s, i, "ok");
        }
    } else if (strcmp(tok[0], "stats") == 0) {
        sim_ctl_stats(s, i);
    } else if (strcmp(tok[0], "quit") == 0) {
        sim_ctl_reply(s, i, "bye");
        return false;
    } else {
        sim_ctl_reply(s, i, "error unknown command '%s'", tok[0]);
    }
    return true;
}

static void sim_ctl_close(struct sim *s, int i)
{
    struct sim_ctl *k = &s->ctl[i];
    for (size_t j = 0; j < s->nclients; j++) {
        struct sim_client *c = &s->clients[j];
        if (c->owner == SIM_OWNER_CTL && c->owner_ctl == i) {
            c->owner = SIM_OWNER_NONE;
        }
    }
    if (s->storm.active && s->storm.ctl == i) {
        s->storm.ctl = -1; /* it runs on; nobody hears the result */
    }
    close(k->fd);
    sim_buf_free(&k->in);
    sim_buf_free(&k->out);
    memset(k, 0, sizeof(*k));
    k->fd = -1;
}

/* Runs the complete lines of connection i, one at a time while idle.
 * Returns false on `quit`. */
bool sim_ctl_process(struct sim *s, int i)
{
    struct sim_ctl *k = &s->ctl[i];
    char *nl;
    while (k->fd >= 0 && !k->busy && k->in.len > k->in.off &&
           (nl = memchr(k->in.data + k->in.off, '\n', k->in.len - k->in.off)) !=
               NULL) {
        char *line = k->in.data + k->in.off;
        k->in.off = (size_t)(nl - k->in.data) + 1;
        *nl = '\0';
        if (nl > line && nl[-1] == '\r') {
            nl[-1] = '\0';
        }
        if (!sim_ctl_command(s, i, line)) {
            return false;
        }
    }
    if (k->fd >= 0 && k->in.len - k->in.off > SIM_CTL_LINE_MAX) {
        sim_ctl_reply(s, i, "error line too long");
        k->closing = true;
    }
    return true;
}

void sim_ctl_read(struct sim *s, int i)
{
    char tmp[4096];
    ssize_t n = read(s->ctl[i].fd, tmp, sizeof(tmp));
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }
    if (n <= 0 || sim_buf_append(&s->ctl[i].in, tmp, (size_t)n) != 0) {
        sim_ctl_close(s, i);
    }
}

void sim_ctl_flush(struct sim *s, int i)
{
    struct sim_ctl *k = &s->ctl[i];
    while (k->fd >= 0 && k->out.len > k->out.off) {
        ssize_t n = send(k->fd, k->out.data + k->out.off,
                         k->out.len - k->out.off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            return;
        }
        if (n <= 0) {
            sim_ctl_close(s, i);
            return;
        }
        k->out.off += (size_t)n;
    }
    if (k->fd >= 0 && k->closing) {
        sim_ctl_close(s, i);
    }
}

void sim_ctl_accept(struct sim *s)
{
    int fd = accept4(s->ctl_lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        return;
    }
    for (int i = 0; i < SIM_MAX_CTL; i++) {
        if (s->ctl[i].fd < 0) {
            s->ctl[i].fd = fd;
            return;
        }
    }
    close(fd); /* all slots taken */
}
