/*
 * ovpn_sim: an OpenVPN 2.6.14 management-interface simulator that stands in
 * for openvpn under ovhad (decision benchmarks, tests). See README.md.
 *
 * Three files: ovpn_sim.c owns main(), the poll loop, the clients and the
 * management socket; sim_mgmt.c speaks the management protocol (events
 * out, commands in); sim_ctl.c the control protocol (connect, disconnect,
 * storm). Single-threaded.
 */
#ifndef OVPN_SIM_H
#define OVPN_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIM_MAX_CTL        16
#define SIM_NS_PER_S       1000000000ULL
#define SIM_DECIDE_NS      (10 * SIM_NS_PER_S)
#define SIM_STORM_MAX_N    1000000
#define SIM_STORM_MAX_CONC 4096
#define SIM_STORM_MAX_NS   (600 * SIM_NS_PER_S)
#define SIM_STORM_MAX_RATE 100000 /* paced connects per second */
#define SIM_MGMT_LINE_MAX  1024   /* openvpn's management input buffer */
#define SIM_CTL_LINE_MAX   4096
#define SIM_OUT_MAX        (256u << 20) /* a controller that never reads */
#define SIM_TOKEN_MAX      256          /* 255 characters + NUL */
#define SIM_MAX_TOKENS     16
#define SIM_MAX_IROUTES    8
#define SIM_MAX_CLIENTS    1000000 /* live clients (the CID index is u32) */
/* Default bytes a client adds per bytecount interval (in = from the
 * client, out = to it): about 0.2 / 1 Mbit/s at the usual 5 s. */
#define SIM_BC_IN_DEFAULT  125000
#define SIM_BC_OUT_DEFAULT 625000

struct sim_buf {
    char *data;
    size_t len; /* bytes held */
    size_t off; /* bytes already consumed from the front */
    size_t cap;
};

enum sim_cstate {
    SIM_PENDING,     /* CONNECT sent, no answer yet */
    SIM_ESTABLISHED, /* allowed */
};

enum sim_owner {
    SIM_OWNER_NONE,  /* nobody waits for the decision */
    SIM_OWNER_CTL,   /* a control connection's `connect` or `reauth` */
    SIM_OWNER_STORM, /* the running job (storm, populate or reauth) */
};

/* What the running job does with each start. */
enum sim_job_kind {
    SIM_JOB_STORM,    /* connect; an allowed client leaves at once */
    SIM_JOB_POPULATE, /* connect; an allowed client stays established */
    SIM_JOB_REAUTH,   /* REAUTH of an established client */
};

struct sim_client {
    uint64_t cid;
    uint32_t kid;
    enum sim_cstate state;
    enum sim_owner owner;
    int owner_ctl; /* index in sim.ctl when owner == SIM_OWNER_CTL */
    char cn[SIM_TOKEN_MAX];
    char username[SIM_TOKEN_MAX];
    char password[SIM_TOKEN_MAX];
    char rip[16];
    unsigned rport;
    char vaddr[16];
    bool reauth;         /* established, a REAUTH waits for its answer */
    int64_t since;       /* time_t of the CONNECT */
    uint64_t created_ns; /* CLOCK_MONOTONIC */
    uint64_t wait_ns;    /* when the CONNECT/REAUTH now waiting was queued */
    uint64_t sent_ns;    /* when its >CLIENT:ENV,END reached the socket; 0
                          * before */
    uint64_t bytes_in;   /* cumulative, as in BYTECOUNT_CLI (from client) */
    uint64_t bytes_out;  /* to the client */
};

/* Where the last byte of a CONNECT block sits in the output stream, so the
 * latency clock starts when it is written, not when it is queued. */
struct sim_stamp {
    uint64_t end_off;
    uint64_t cid;
};

struct sim_ctl {
    int fd; /* -1 = free slot */
    struct sim_buf in;
    struct sim_buf out;
    bool busy;    /* a connect or storm is waiting for its answer */
    bool closing; /* quit: close once the reply is out */
};

/* The running job: a storm, a populate or a batch of REAUTHs (one at a
 * time). */
struct sim_storm {
    bool active;
    enum sim_job_kind kind;
    int ctl; /* who gets the `done` line */
    uint64_t n, identities, conc;
    uint64_t first; /* populate: CNs PREFIX-first .. PREFIX-(first+n-1) */
    uint64_t *cids; /* reauth: the chosen clients, n of them */
    uint64_t gone;  /* reauth: chosen clients gone before their turn */
    char prefix[200];
    char password[SIM_TOKEN_MAX];
    bool has_password;
    uint64_t rate;      /* connects started per second; 0 = closed loop */
    uint64_t sched0_ns; /* paced: when start 0 went out; i is due
                         * i / rate seconds later */
    bool cap_noted;     /* the due start was already counted in capped */
    uint64_t started, finished, in_flight;
    uint64_t allow, deny, timeout, killed;
    uint64_t capped;     /* paced starts that found CONCURRENCY in flight */
    uint64_t lag_max_ns; /* worst start behind its schedule (paced) */
    uint32_t *lat_us;    /* one per decision, n at most */
    uint64_t nlat;
    uint64_t t0_ns, deadline_ns;
};

struct sim_stats {
    uint64_t mgmt_connects, commands, errors;
    uint64_t connects, allow, deny, timeout, killed, disconnects;
    uint64_t reauths, bytecounts;
};

/* CID -> slot in sim.clients: open addressing, linear probing, backward
 * shift deletion (no tombstones); slot UINT32_MAX = empty. */
struct sim_ix_entry {
    uint64_t cid;
    uint32_t slot;
};

/* >BYTECOUNT_CLI for every established client once per interval, spread
 * evenly over it: a round walks the client array from slot 0, emitting
 * slot k once k / nclients of the interval has passed. */
struct sim_bytecount {
    uint64_t interval_ns; /* 0 = off (until the controller's `bytecount N`) */
    uint64_t round_ns;    /* when the current round started */
    size_t cursor;        /* next slot of this round */
    uint64_t add_in, add_out; /* bytes per client per interval */
};

struct sim_auth_block {
    bool active;
    uint64_t cid;
    uint32_t kid;
    bool parse_ok;
    bool disable;
    char ip[16];
    char netmask[16];
    int n_iroutes;
    char iroutes[SIM_MAX_IROUTES][40];
};

struct sim {
    char config[SIM_TOKEN_MAX];
    char mgmt_path[108];
    char ctl_path[108];
    char dev[32];
    char ifconfig_local[16];
    char ifconfig_netmask[16];
    int mgmt_lfd, ctl_lfd, mgmt_fd;
    struct sim_buf min, mout;
    uint64_t out_queued, out_written; /* absolute byte counts, this conn */
    struct sim_stamp *stamps;
    size_t nstamps, stamp_head, stamp_cap;
    bool held;
    bool mgmt_quit; /* exit/quit, or output overflow: close it */
    int env_filter;
    struct sim_auth_block auth;
    struct sim_client *clients;
    size_t nclients, cap_clients;
    size_t n_established; /* state == SIM_ESTABLISHED */
    size_t n_waiting;     /* pending, or established with a REAUTH out */
    struct sim_ix_entry *ix;
    size_t ix_cap; /* power of two, at least twice nclients */
    struct sim_bytecount bc;
    uint64_t rng; /* xorshift64 state (reauth picks) */
    uint64_t next_cid;
    uint64_t decide_ns; /* undecided clients give up after this */
    uint64_t rx_ns;     /* when the bytes being parsed were read */
    int64_t start_time;
    struct sim_ctl ctl[SIM_MAX_CTL];
    struct sim_storm storm;
    struct sim_stats st;
};

/* ---- ovpn_sim.c --------------------------------------------------------- */
uint64_t sim_now_ns(void);
int sim_buf_append(struct sim_buf *b, const char *p, size_t n);
void sim_buf_free(struct sim_buf *b);
/* Splits line in place into at most max tokens (openvpn rules: blanks
 * separate, "..." groups, backslash escapes inside quotes). Returns the
 * count, or -EINVAL on an unterminated quote or -E2BIG on a token of 256+
 * characters. */
int sim_tokenize(char *line, char **tok, int max);
/* Strict decimal in [lo, hi]. */
bool sim_parse_bounded(const char *t, uint64_t lo, uint64_t hi, uint64_t *ret);
struct sim_client *sim_client_find(struct sim *s, uint64_t cid);
/* A CONNECT or REAUTH of c is out without an answer. */
bool sim_client_waiting(const struct sim_client *c);
/* Marks c established (counted), or its REAUTH as out / answered. */
void sim_client_set_established(struct sim *s, struct sim_client *c);
void sim_client_set_reauth(struct sim *s, struct sim_client *c, bool on);
/* Removes c (the last client moves into its slot). */
void sim_client_remove(struct sim *s, struct sim_client *c);
/* A new pending client (CID from the counter, KID 1); NULL without memory.
 * The pointer is valid until the next add or remove. */
struct sim_client *sim_client_add(struct sim *s,
                                  const char *cn,
                                  const char *user,
                                  const char *pass);
/* A controller is connected and the hold was released. */
bool sim_mgmt_ready(const struct sim *s);
/* Emits c's CONNECT block and writes it out at once (the latency clock
 * starts when its last byte is written). */
void sim_client_connect(struct sim *s, struct sim_client *c);
/* Same for a REAUTH of the established client c (KID goes up by 2, as
 * recorded from openvpn). */
void sim_client_reauth(struct sim *s, struct sim_client *c);
uint64_t sim_rand(struct sim *s);
/* Writes what the socket takes now; closes the controller on error. */
void sim_mgmt_flush(struct sim *s);
/* ---- sim_ctl.c ---------------------------------------------------------- */
/* A pending client got its answer (or lost it): tell whoever waits.
 * outcome: "allow", "deny", "timeout" or "killed"; detail is the rest of
 * the control reply line. */
void sim_client_resolve(struct sim *s,
                        struct sim_client *c,
                        const char *outcome,
                        const char *detail);
/* Starts storm connects up to the concurrency (and, paced, those whose
 * scheduled time has come); sends `done` when over. */
void sim_storm_pump(struct sim *s);
/* Nanoseconds until the paced storm's next start is due (0: due now);
 * UINT64_MAX when no start is scheduled. */
uint64_t sim_storm_wait_ns(const struct sim *s, uint64_t now);
void sim_ctl_accept(struct sim *s);
void sim_ctl_read(struct sim *s, int i);
/* Runs the complete lines of connection i one at a time while it is not
 * waiting for an answer. Returns false on `quit`. */
bool sim_ctl_process(struct sim *s, int i);
void sim_ctl_flush(struct sim *s, int i);

/* ---- sim_mgmt.c --------------------------------------------------------- */
/* Queues a line (\r\n appended) for the controller; dropped when none is
 * connected, like openvpn's events. */
void sim_mgmt_emit(struct sim *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sim_mgmt_greet(struct sim *s);
/* One line from the controller, without its line end. */
void sim_mgmt_line(struct sim *s, char *line);
/* Emits >CLIENT:CONNECT (or REAUTH) and its ENV block for c. */
void sim_mgmt_connect(struct sim *s, struct sim_client *c, bool reauth);
/* Emits the >BYTECOUNT_CLI lines due now (see struct sim_bytecount). */
void sim_mgmt_bytecount(struct sim *s, uint64_t now);
/* Emits >CLIENT:DISCONNECT (full ENV when established, empty otherwise). */
void sim_mgmt_disconnect(struct sim *s, struct sim_client *c);
void sim_mgmt_established(struct sim *s, struct sim_client *c);
/* The management connection went away: drop the half-read block. */
void sim_mgmt_reset(struct sim *s);

#endif
