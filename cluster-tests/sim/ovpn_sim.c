/*
 * ovpn_sim: stands in for openvpn under ovhad. Usage:
 *
 *   OVPN_SIM_CTL=/path/ctl.sock ovpn_sim --config FILE [openvpn args...]
 *
 * It takes `management PATH unix` (and `dev`, `ifconfig`) from FILE or from
 * the command line (`--management PATH unix` wins, as in openvpn), listens
 * there and plays an OpenVPN 2.6.14 server for one controller at a time
 * (sim_mgmt.c). Simulated clients are driven through the control socket at
 * $OVPN_SIM_CTL, one command per line, one reply line per command:
 *
 *   connect CN [USERNAME [PASSWORD]]  -> allow CID IP | deny CID "r" "cr" |
 *                                        timeout CID | killed CID |
 *                                        error ...
 *   disconnect CID                    -> ok | error ...
 *   storm N IDENTITIES CONCURRENCY PREFIX [PASSWORD] [rate=R]
 *                                     -> done n= allow= deny= timeout= ...
 *                                        (rate=R: R starts a second, open
 *                                        loop; capped= counts starts the
 *                                        CONCURRENCY cap held back)
 *   populate N PREFIX CONCURRENCY [PASSWORD] [first=K] [rate=R]
 *                                     -> done ... established= (a storm
 *                                        whose allowed clients stay)
 *   reauth CID                        -> allow CID IP | deny ... | ...
 *   reauth random N [CONC] [rate=R]   -> done ... (REAUTHs of N random
 *                                        established clients)
 *   bytes IN OUT                      -> ok (bytes per client per
 *                                        bytecount interval)
 *   dump PATH                         -> ok n= (CID CN IP STATE lines)
 *   drop                              -> ok (the management connection
 *                                        is cut; ovhad reconnects)
 *   stats                             -> stats k=v ...
 *   quit                              -> bye (and the simulator exits)
 *
 * Happy path of one decision: the CONNECT block is queued, written (the
 * latency clock starts when its last byte is written), ovhad answers with a
 * client-auth block or client-deny, the clock stops when that answer's last
 * line is read. Failure modes: no answer within 10 s (timeout, the client
 * is dropped with an empty DISCONNECT), the controller goes away (events
 * are dropped until it reconnects; ovhad then finds the waiting clients in
 * `status 3`), a client-kill of a waiting client (killed).
 *
 * Single-threaded ppoll() loop; every socket is non-blocking. Exits on
 * SIGTERM/SIGINT or `quit`. OVPN_SIM_TIMEOUT_MS (100..600000, default
 * 10000) changes the 10 s decision timeout, for tests.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "sim.h"

static volatile sig_atomic_t sim_signalled;

/* ---- small helpers ------------------------------------------------------ */

uint64_t sim_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * SIM_NS_PER_S + (uint64_t)ts.tv_nsec;
}

int sim_buf_append(struct sim_buf *b, const char *p, size_t n)
{
    if (b->off > 0 && b->off == b->len) {
        b->off = 0;
        b->len = 0;
    }
    if (b->len + n > b->cap) {
        if (b->off > 0) {
            memmove(b->data, b->data + b->off, b->len - b->off);
            b->len -= b->off;
            b->off = 0;
        }
        size_t cap = b->cap > 0 ? b->cap : 4096;
        while (cap < b->len + n) {
            cap *= 2;
        }
        if (cap > SIM_OUT_MAX) {
            return -ENOBUFS;
        }
        if (cap > b->cap) {
            char *d = realloc(b->data, cap);
            if (d == NULL) {
                return -ENOMEM;
            }
            b->data = d;
            b->cap = cap;
        }
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void sim_buf_free(struct sim_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

int sim_tokenize(char *line, char **tok, int max)
{
    int n = 0;
    char *r = line;
    char *w = line;
    while (*r != '\0') {
        while (*r == ' ' || *r == '\t') {
            r++;
        }
        if (*r == '\0') {
            break;
        }
        if (n == max) {
            return n; /* extra parameters are ignored */
        }
        char *start = w;
        bool quoted = false;
        while (*r != '\0' && (quoted || (*r != ' ' && *r != '\t'))) {
            if (*r == '"') {
                quoted = !quoted;
                r++;
                continue;
            }
            if (*r == '\\' && quoted && r[1] != '\0') {
                r++;
            }
            *w++ = *r++;
        }
        if (quoted) {
            return -EINVAL;
        }
        if (*r != '\0') {
            r++;
        }
        *w++ = '\0';
        if (w - start > SIM_TOKEN_MAX) {
            return -E2BIG;
        }
        tok[n++] = start;
    }
    return n;
}

bool sim_parse_bounded(const char *t, uint64_t lo, uint64_t hi, uint64_t *ret)
{
    char *e = NULL;
    errno = 0;
    unsigned long long v = strtoull(t, &e, 10);
    if (*t == '\0' || *e != '\0' || errno != 0 || v < lo || v > hi) {
        return false;
    }
    *ret = v;
    return true;
}

/* ---- clients ------------------------------------------------------------ */

/* The CID index: Fibonacci hashing into a power-of-two table. */
static size_t sim_ix_home(uint64_t cid, size_t cap)
{
    return (size_t)((cid * 0x9E3779B97F4A7C15ULL) >> 17) & (cap - 1);
}

static void sim_ix_put(struct sim_ix_entry *t,
                       size_t cap,
                       uint64_t cid,
                       uint32_t slot)
{
    size_t i = sim_ix_home(cid, cap);
    while (t[i].slot != UINT32_MAX && t[i].cid != cid) {
        i = (i + 1) & (cap - 1);
    }
    t[i].cid = cid;
    t[i].slot = slot;
}

static struct sim_ix_entry *sim_ix_get(struct sim *s, uint64_t cid)
{
    if (s->ix_cap == 0) {
        return NULL;
    }
    size_t i = sim_ix_home(cid, s->ix_cap);
    while (s->ix[i].slot != UINT32_MAX) {
        if (s->ix[i].cid == cid) {
            return &s->ix[i];
        }
        i = (i + 1) & (s->ix_cap - 1);
    }
    return NULL;
}

/* Backward shift: later entries of the run move up into the hole when
 * their home does not lie between the hole and them. */
static void sim_ix_del(struct sim *s, uint64_t cid)
{
    struct sim_ix_entry *e = sim_ix_get(s, cid);
    if (e == NULL) {
        return;
    }
    size_t mask = s->ix_cap - 1;
    size_t hole = (size_t)(e - s->ix);
    size_t j = hole;
    for (;;) {
        j = (j + 1) & mask;
        if (s->ix[j].slot == UINT32_MAX) {
            break;
        }
        size_t home = sim_ix_home(s->ix[j].cid, s->ix_cap);
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            s->ix[hole] = s->ix[j];
            hole = j;
        }
    }
    s->ix[hole].slot = UINT32_MAX;
}

/* Keeps the table at most half full. */
static int sim_ix_reserve(struct sim *s, size_t n)
{
    if (n * 2 <= s->ix_cap) {
        return 0;
    }
    size_t cap = s->ix_cap > 0 ? s->ix_cap : 256;
    while (cap < n * 2) {
        cap *= 2;
    }
    struct sim_ix_entry *t = malloc(cap * sizeof(*t));
    if (t == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < cap; i++) {
        t[i].slot = UINT32_MAX;
    }
    for (size_t i = 0; i < s->ix_cap; i++) {
        if (s->ix[i].slot != UINT32_MAX) {
            sim_ix_put(t, cap, s->ix[i].cid, s->ix[i].slot);
        }
    }
    free(s->ix);
    s->ix = t;
    s->ix_cap = cap;
    return 0;
}

struct sim_client *sim_client_find(struct sim *s, uint64_t cid)
{
    struct sim_ix_entry *e = sim_ix_get(s, cid);
    return e != NULL ? &s->clients[e->slot] : NULL;
}

bool sim_client_waiting(const struct sim_client *c)
{
    return c->state == SIM_PENDING || c->reauth;
}

void sim_client_set_established(struct sim *s, struct sim_client *c)
{
    if (c->state == SIM_PENDING) {
        c->state = SIM_ESTABLISHED;
        s->n_established++;
        s->n_waiting--;
    }
}

void sim_client_set_reauth(struct sim *s, struct sim_client *c, bool on)
{
    if (c->state == SIM_ESTABLISHED && c->reauth != on) {
        c->reauth = on;
        if (on) {
            s->n_waiting++;
        } else {
            s->n_waiting--;
        }
    }
}

void sim_client_remove(struct sim *s, struct sim_client *c)
{
    size_t i = (size_t)(c - s->clients);
    if (c->state == SIM_ESTABLISHED) {
        s->n_established--;
    }
    if (sim_client_waiting(c)) {
        s->n_waiting--;
    }
    sim_ix_del(s, c->cid);
    s->nclients--;
    if (i != s->nclients) {
        s->clients[i] = s->clients[s->nclients];
        sim_ix_get(s, s->clients[i].cid)->slot = (uint32_t)i;
    }
}

struct sim_client *sim_client_add(struct sim *s,
                                  const char *cn,
                                  const char *user,
                                  const char *pass)
{
    if (s->nclients >= SIM_MAX_CLIENTS ||
        sim_ix_reserve(s, s->nclients + 1) != 0) {
        return NULL;
    }
    if (s->nclients == s->cap_clients) {
        size_t cap = s->cap_clients > 0 ? s->cap_clients * 2 : 64;
        struct sim_client *n = realloc(s->clients, cap * sizeof(*n));
        if (n == NULL) {
            return NULL;
        }
        s->clients = n;
        s->cap_clients = cap;
    }
    struct sim_client *c = &s->clients[s->nclients];
    memset(c, 0, sizeof(*c));
    c->cid = s->next_cid++;
    sim_ix_put(s->ix, s->ix_cap, c->cid, (uint32_t)s->nclients);
    s->nclients++;
    s->n_waiting++;
    c->kid = 1;
    c->state = SIM_PENDING;
    c->owner = SIM_OWNER_NONE;
    snprintf(c->cn, sizeof(c->cn), "%s", cn);
    snprintf(c->username, sizeof(c->username), "%s", user);
    snprintf(c->password, sizeof(c->password), "%s", pass);
    snprintf(c->rip, sizeof(c->rip), "198.18.%u.%u",
             (unsigned)(c->cid / 250 % 250 + 1), (unsigned)(c->cid % 250 + 1));
    c->rport = (unsigned)(1024 + (c->cid * 7919) % 60000);
    c->since = (int64_t)time(NULL);
    c->created_ns = sim_now_ns();
    c->wait_ns = c->created_ns;
    /* What the first byte counts of a session look like (TLS and push). */
    c->bytes_in = 2100 + c->cid;
    c->bytes_out = 2000 + c->cid;
    return c;
}

uint64_t sim_rand(struct sim *s)
{
    uint64_t x = s->rng != 0 ? s->rng : 0x2545F4914F6CDD1DULL;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s->rng = x;
    return x;
}

/* Clients whose CONNECT or REAUTH went unanswered for decide_ns (10 s):
 * give up, as a client would (a failed REAUTH ends the session). */
static void sim_expire(struct sim *s, uint64_t now)
{
    size_t i = 0;
    while (s->n_waiting > 0 && i < s->nclients) {
        struct sim_client *c = &s->clients[i];
        if (sim_client_waiting(c) && now - c->wait_ns > s->decide_ns) {
            sim_client_resolve(s, c, "timeout", "");
            sim_mgmt_disconnect(s, c);
            sim_client_remove(s, c);
            continue;
        }
        i++;
    }
}

/* ---- management socket -------------------------------------------------- */

bool sim_mgmt_ready(const struct sim *s)
{
    return s->mgmt_fd >= 0 && !s->held;
}

static void sim_mgmt_close(struct sim *s)
{
    if (s->mgmt_fd < 0) {
        return;
    }
    close(s->mgmt_fd);
    s->mgmt_fd = -1;
    s->min.len = s->min.off = 0;
    s->mout.len = s->mout.off = 0;
    s->out_queued = s->out_written = 0;
    s->nstamps = s->stamp_head = 0;
    s->mgmt_quit = false;
    s->bc.interval_ns = 0; /* openvpn resets `bytecount` per connection */
    sim_mgmt_reset(s);
}

static void sim_stamps_advance(struct sim *s)
{
    uint64_t now = 0;
    while (s->stamp_head < s->nstamps &&
           s->stamps[s->stamp_head].end_off <= s->out_written) {
        struct sim_client *c = sim_client_find(s, s->stamps[s->stamp_head].cid);
        if (c != NULL && c->sent_ns == 0) {
            now = now != 0 ? now : sim_now_ns();
            c->sent_ns = now;
        }
        s->stamp_head++;
    }
    if (s->stamp_head == s->nstamps) {
        s->stamp_head = s->nstamps = 0;
    }
}

void sim_mgmt_flush(struct sim *s)
{
    struct sim_buf *b = &s->mout;
    if (s->mgmt_quit) {
        sim_mgmt_close(s); /* exit/quit, or the output overflowed */
        return;
    }
    while (s->mgmt_fd >= 0 && b->len > b->off) {
        ssize_t n =
            send(s->mgmt_fd, b->data + b->off, b->len - b->off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }
        if (n <= 0) {
            sim_mgmt_close(s);
            return;
        }
        b->off += (size_t)n;
        s->out_written += (uint64_t)n;
        sim_stamps_advance(s);
    }
}

static int sim_stamp_push(struct sim *s, uint64_t cid)
{
    if (s->nstamps == s->stamp_cap) {
        size_t cap = s->stamp_cap > 0 ? s->stamp_cap * 2 : 256;
        struct sim_stamp *n = realloc(s->stamps, cap * sizeof(*n));
        if (n == NULL) {
            return -ENOMEM;
        }
        s->stamps = n;
        s->stamp_cap = cap;
    }
    s->stamps[s->nstamps].end_off = s->out_queued;
    s->stamps[s->nstamps].cid = cid;
    s->nstamps++;
    return 0;
}

/* Emits the CONNECT block and writes it out at once. */
void sim_client_connect(struct sim *s, struct sim_client *c)
{
    s->st.connects++;
    sim_mgmt_connect(s, c, false);
    sim_stamp_push(s, c->cid);
    sim_mgmt_flush(s);
}

void sim_client_reauth(struct sim *s, struct sim_client *c)
{
    s->st.reauths++;
    c->kid += 2; /* openvpn's KID counts key states: 1, then 3, 4, ... */
    c->wait_ns = sim_now_ns();
    c->sent_ns = 0;
    sim_client_set_reauth(s, c, true);
    sim_mgmt_connect(s, c, true);
    sim_stamp_push(s, c->cid);
    sim_mgmt_flush(s);
}

static void sim_mgmt_accept(struct sim *s)
{
    int fd = accept4(s->mgmt_lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        return;
    }
    s->mgmt_fd = fd;
    s->st.mgmt_connects++;
    sim_mgmt_greet(s);
    sim_mgmt_flush(s);
}

static void sim_mgmt_read(struct sim *s)
{
    char tmp[65536];
    ssize_t n = read(s->mgmt_fd, tmp, sizeof(tmp));
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }
    if (n <= 0) {
        sim_mgmt_close(s);
        return;
    }
    s->rx_ns = sim_now_ns();
    struct sim_buf *b = &s->min;
    if (sim_buf_append(b, tmp, (size_t)n) != 0) {
        sim_mgmt_close(s);
        return;
    }
    char *nl;
    while (s->mgmt_fd >= 0 && !s->mgmt_quit && b->len > b->off &&
           (nl = memchr(b->data + b->off, '\n', b->len - b->off)) != NULL) {
        char *line = b->data + b->off;
        b->off = (size_t)(nl - b->data) + 1;
        *nl = '\0';
        if (nl > line && nl[-1] == '\r') {
            nl[-1] = '\0';
        }
        sim_mgmt_line(s, line);
    }
    if (b->len - b->off > SIM_MGMT_LINE_MAX) {
        /* openvpn clears an overlong line silently. */
        b->len = b->off = 0;
    }
    sim_mgmt_flush(s);
    if (s->mgmt_quit) {
        sim_mgmt_close(s);
    }
}

/* ---- setup -------------------------------------------------------------- */

static int sim_listen(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(sa.sun_path)) {
        return -ENAMETOOLONG;
    }
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    unlink(path); /* a stale socket from an earlier run */
    int rv = 0;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(fd, 16) != 0) {
        rv = -errno;
        goto err_close;
    }
    chmod(path, 0600);
    return fd;

err_close:
    close(fd);
    return rv;
}

/* `management PATH unix`, `dev X`, `ifconfig A M` from tokens. */
static void sim_config_apply(struct sim *s, char **tok, int n)
{
    const char *k = tok[0][0] == '-' && tok[0][1] == '-' ? tok[0] + 2 : tok[0];
    if (strcmp(k, "management") == 0 && n >= 2) {
        snprintf(s->mgmt_path, sizeof(s->mgmt_path), "%s", tok[1]);
    } else if (strcmp(k, "dev") == 0 && n >= 2) {
        snprintf(s->dev, sizeof(s->dev), "%s", tok[1]);
    } else if (strcmp(k, "ifconfig") == 0 && n >= 3) {
        snprintf(s->ifconfig_local, sizeof(s->ifconfig_local), "%s", tok[1]);
        snprintf(s->ifconfig_netmask, sizeof(s->ifconfig_netmask), "%s",
                 tok[2]);
    }
}

static int sim_config_file(struct sim *s, const char *path)
{
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        return -errno;
    }
    char line[1024];
    int lines = 0;
    while (lines++ < 100000 && fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#' || line[0] == ';') {
            continue;
        }
        char *tok[SIM_MAX_TOKENS];
        int n = sim_tokenize(line, tok, SIM_MAX_TOKENS);
        if (n > 0) {
            sim_config_apply(s, tok, n);
        }
    }
    fclose(f);
    return 0;
}

static int sim_config(struct sim *s, int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            snprintf(s->config, sizeof(s->config), "%s", argv[i + 1]);
        }
    }
    if (s->config[0] == '\0') {
        fprintf(stderr, "ovpn_sim: usage: ovpn_sim --config FILE [...]\n");
        return -EINVAL;
    }
    int rv = sim_config_file(s, s->config);
    if (rv != 0) {
        fprintf(stderr, "ovpn_sim: %s: %s\n", s->config, strerror(-rv));
        return rv;
    }
    /* Command-line options after the file win, as in openvpn. */
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) != 0) {
            continue;
        }
        char *tok[3] = { argv[i], NULL, NULL };
        int n = 1;
        while (n < 3 && i + n < argc && strncmp(argv[i + n], "--", 2) != 0) {
            tok[n] = argv[i + n];
            n++;
        }
        sim_config_apply(s, tok, n);
    }
    const char *ctl = getenv("OVPN_SIM_CTL");
    if (s->mgmt_path[0] == '\0' || ctl == NULL || ctl[0] == '\0' ||
        strlen(ctl) >= sizeof(s->ctl_path)) {
        fprintf(stderr,
                "ovpn_sim: need `management PATH unix` in the config "
                "and OVPN_SIM_CTL in the environment\n");
        return -EINVAL;
    }
    snprintf(s->ctl_path, sizeof(s->ctl_path), "%s", ctl);
    /* Tests shorten the decision timeout; 100 ms .. 600 s. */
    const char *tmo = getenv("OVPN_SIM_TIMEOUT_MS");
    uint64_t ms = 0;
    s->decide_ns = SIM_DECIDE_NS;
    if (tmo != NULL && tmo[0] != '\0') {
        if (!sim_parse_bounded(tmo, 100, 600000, &ms)) {
            fprintf(stderr, "ovpn_sim: OVPN_SIM_TIMEOUT_MS: 100..600000\n");
            return -EINVAL;
        }
        s->decide_ns = ms * 1000000ULL;
    }
    return 0;
}

static void sim_on_signal(int sig)
{
    sim_signalled = sig;
}

static void sim_signals(void)
{
    struct sigaction sa = { .sa_handler = sim_on_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* ---- loop --------------------------------------------------------------- */

static int sim_poll_set(struct sim *s, struct pollfd *p, int *ctl_of)
{
    int n = 0;
    p[n++] = (struct pollfd){ .fd = s->mgmt_fd < 0 ? s->mgmt_lfd : -1,
                              .events = POLLIN };
    short mev = POLLIN;
    if (s->mout.len > s->mout.off) {
        mev |= POLLOUT;
    }
    p[n++] = (struct pollfd){ .fd = s->mgmt_fd, .events = mev };
    p[n++] = (struct pollfd){ .fd = s->ctl_lfd, .events = POLLIN };
    for (int i = 0; i < SIM_MAX_CTL; i++) {
        if (s->ctl[i].fd < 0) {
            continue;
        }
        short ev = POLLIN;
        if (s->ctl[i].out.len > s->ctl[i].out.off) {
            ev |= POLLOUT;
        }
        ctl_of[n] = i;
        p[n++] = (struct pollfd){ .fd = s->ctl[i].fd, .events = ev };
    }
    return n;
}

/* How long poll may sleep: until the paced storm's next start (with ns
 * precision, so 1000/s really is one every millisecond), else 100 ms while
 * clients or a storm are about (expiry), else 1 s. */
static const struct timespec *sim_loop_timeout(const struct sim *s)
{
    static struct timespec ts;
    uint64_t ns =
        s->nclients > 0 || s->storm.active ? SIM_NS_PER_S / 10 : SIM_NS_PER_S;
    uint64_t wait = sim_storm_wait_ns(s, sim_now_ns());
    if (wait < ns) {
        ns = wait;
    }
    ts.tv_sec = (time_t)(ns / SIM_NS_PER_S);
    ts.tv_nsec = (long)(ns % SIM_NS_PER_S);
    return &ts;
}

static int sim_loop(struct sim *s)
{
    struct pollfd p[3 + SIM_MAX_CTL];
    int ctl_of[3 + SIM_MAX_CTL];
    uint64_t next_expire = 0;
    bool run = true;
    while (run && sim_signalled == 0) {
        int n = sim_poll_set(s, p, ctl_of);
        if (ppoll(p, (nfds_t)n, sim_loop_timeout(s), NULL) < 0 &&
            errno != EINTR) {
            return -errno;
        }
        if (p[0].revents != 0) {
            sim_mgmt_accept(s);
        }
        if (p[1].fd >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            sim_mgmt_read(s);
        }
        if (p[2].revents != 0) {
            sim_ctl_accept(s);
        }
        for (int j = 3; j < n; j++) {
            if (p[j].revents & (POLLIN | POLLHUP | POLLERR)) {
                sim_ctl_read(s, ctl_of[j]);
            }
        }
        uint64_t now = sim_now_ns();
        if (now >= next_expire) {
            sim_expire(s, now);
            next_expire = now + SIM_NS_PER_S / 10;
        }
        for (int i = 0; i < SIM_MAX_CTL; i++) {
            if (s->ctl[i].fd >= 0 && !sim_ctl_process(s, i)) {
                run = false;
            }
        }
        sim_storm_pump(s);
        sim_mgmt_bytecount(s, sim_now_ns());
        sim_mgmt_flush(s);
        for (int i = 0; i < SIM_MAX_CTL; i++) {
            sim_ctl_flush(s, i);
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    static struct sim s;
    s.mgmt_fd = -1;
    s.held = true; /* ovhad runs openvpn with --management-hold */
    s.start_time = (int64_t)time(NULL);
    snprintf(s.dev, sizeof(s.dev), "tun0");
    snprintf(s.ifconfig_local, sizeof(s.ifconfig_local), "100.64.0.1");
    snprintf(s.ifconfig_netmask, sizeof(s.ifconfig_netmask), "255.255.255.0");
    for (int i = 0; i < SIM_MAX_CTL; i++) {
        s.ctl[i].fd = -1;
    }
    s.storm.ctl = -1;
    s.bc.add_in = SIM_BC_IN_DEFAULT;
    s.bc.add_out = SIM_BC_OUT_DEFAULT;
    s.rng = (uint64_t)getpid() * 0x9E3779B97F4A7C15ULL + (uint64_t)time(NULL);
    if (sim_config(&s, argc, argv) != 0) {
        return 1;
    }
    sim_signals();
    s.ctl_lfd = sim_listen(s.ctl_path);
    if (s.ctl_lfd < 0) {
        fprintf(stderr, "ovpn_sim: listen %s: %s\n", s.ctl_path,
                strerror(-s.ctl_lfd));
        return 1;
    }
    s.mgmt_lfd = sim_listen(s.mgmt_path);
    if (s.mgmt_lfd < 0) {
        fprintf(stderr, "ovpn_sim: listen %s: %s\n", s.mgmt_path,
                strerror(-s.mgmt_lfd));
        unlink(s.ctl_path);
        return 1;
    }
    fprintf(stderr, "ovpn_sim: pid %d management %s control %s\n",
            (int)getpid(), s.mgmt_path, s.ctl_path);
    int rv = sim_loop(&s);
    /* A last flush so `bye` reaches its asker. */
    for (int i = 0; i < SIM_MAX_CTL; i++) {
        sim_ctl_flush(&s, i);
    }
    unlink(s.mgmt_path);
    unlink(s.ctl_path);
    return rv == 0 ? 0 : 1;
}
