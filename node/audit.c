/* node/audit: the node's archive of the audit chain. See audit.h. */
#include "node/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "fsm/fsm.h"
#include "node/job.h"

#define AUDIT_MOD         "audit"
/* Records per pass: reading them is on the loop, so a pass stays well
 * under a millisecond there; a full pass asks for the next one at once. */
#define AUDIT_BATCH       256
#define AUDIT_INTERVAL_MS 1000
#define AUDIT_TAIL_BYTES  8192 /* enough for the last line */
/* fdatasync at most this often: the records stay in the replicated state
 * (and in the other nodes' archives) long after they are written here, so
 * a sync per pass would only put this file's fsyncs between the raft log's
 * (one disk) for nothing. */
#define AUDIT_SYNC_MS     10000

struct node_audit {
    struct fsm *fsm;
    struct node_job *job;
    int fd;
    uint64_t synced_ms; /* pass: the last fdatasync */
    uint64_t next;      /* loop: the next record to hand to a pass */
    /* One pass's input: a gap to note, then records, both in order. */
    uint64_t job_gap_from, job_gap_to; /* gap_to 0: none */
    struct fsm_audit_record *job_recs;
    size_t job_n;
    int job_rv;
    struct node_audit_stats stats;
    void (*close_cb)(void *data);
    void *close_data;
};

/* ---- the file
 * ------------------------------------------------------------------ */

/* The seq of the file's last record line (gap lines end at their gap_to),
 * or 0 for an empty file. */
static uint64_t audit_last_seq(int fd)
{
    char buf[AUDIT_TAIL_BYTES + 1];
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > AUDIT_TAIL_BYTES ? end - AUDIT_TAIL_BYTES : 0;
    ssize_t n = end > 0 ? pread(fd, buf, (size_t)(end - from), from) : 0;
    if (n <= 0) {
        return 0;
    }
    buf[n] = '\0';
    while (n > 0 && buf[n - 1] == '\n') {
        buf[--n] = '\0';
    }
    char *line = strrchr(buf, '\n');
    json_t *j = json_loads(line != NULL ? line + 1 : buf, 0, NULL);
    json_int_t seq = 0;
    if (j != NULL && json_unpack(j, "{s:I}", "seq", &seq) != 0) {
        json_unpack(j, "{s:I}", "gap_to", &seq);
    }
    json_decref(j);
    return seq > 0 ? (uint64_t)seq : 0;
}

static int audit_line(json_t *j, struct ovha_buf *b)
{
    char *s = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (s == NULL) {
        return -ENOMEM;
    }
    int rv = ovha_buf_appends(b, s);
    free(s);
    return rv == 0 ? ovha_buf_appends(b, "\n") : rv;
}

static json_t *audit_record_json(const struct fsm_audit_record *r)
{
    char prev[2 * FSM_HASH_LEN + 1], hash[2 * FSM_HASH_LEN + 1];
    ovha_hex(r->prev_hash, FSM_HASH_LEN, prev);
    ovha_hex(r->hash, FSM_HASH_LEN, hash);
    return json_pack("{s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:s}", "seq",
                     (json_int_t)r->seq, "ts", (json_int_t)r->ts, "kind",
                     r->kind, "actor", r->actor, "subject", r->subject,
                     "detail", r->detail, "prev_hash", prev, "hash", hash);
}

static int audit_write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* ---- the pass
 * ------------------------------------------------------------------ */

static void audit_work(void *data)
{
    struct node_audit *a = data;
    struct ovha_buf b;
    ovha_buf_init(&b);
    int rv = 0;
    if (a->job_gap_to != 0) {
        rv = audit_line(
            json_pack("{s:I, s:I}", "gap_from", (json_int_t)a->job_gap_from,
                      "gap_to", (json_int_t)a->job_gap_to),
            &b);
    }
    for (size_t i = 0; i < a->job_n && rv == 0; i++) {
        rv = audit_line(audit_record_json(&a->job_recs[i]), &b);
    }
    if (rv == 0 && b.len > 0) {
        rv = audit_write_all(a->fd, b.data, b.len);
    }
    uint64_t now = ovha_now_mono_ms();
    if (rv == 0 && b.len > 0 && now - a->synced_ms >= AUDIT_SYNC_MS) {
        rv = fdatasync(a->fd) == 0 ? 0 : -errno;
        a->synced_ms = now;
    }
    ovha_buf_free(&b);
    a->job_rv = rv;
}

static void audit_after(void *data)
{
    struct node_audit *a = data;
    bool full = a->job_n == AUDIT_BATCH;
    if (a->job_rv == 0) {
        a->stats.archived += a->job_n;
        a->stats.gaps += a->job_gap_to != 0;
        if (a->job_gap_to != 0) {
            LOG_WARN(AUDIT_MOD,
                     "records %" PRIu64 "..%" PRIu64
                     " were pruned before this node archived them: "
                     "another node's archive has them",
                     a->job_gap_from, a->job_gap_to);
        }
        if (a->job_n > 0) {
            a->next = a->job_recs[a->job_n - 1].seq + 1;
        } else if (a->job_gap_to != 0) {
            a->next = a->job_gap_to + 1;
        }
        a->stats.last_error[0] = '\0';
    } else {
        a->stats.failures++;
        ovha_strlcpy(a->stats.last_error, ovha_strerror(a->job_rv),
                     sizeof(a->stats.last_error));
        LOG_ERR(AUDIT_MOD, "writing %s: %s", a->stats.path,
                a->stats.last_error);
        full = false; /* retried at the next tick */
    }
    a->stats.next_seq = a->next;
    ovha_free(a->job_recs);
    a->job_recs = NULL;
    if (full) {
        node_job_kick(a->job); /* more are waiting */
    }
}

static int audit_collect_cb(const struct fsm_audit_record *r, void *data)
{
    struct node_audit *a = data;
    a->job_recs[a->job_n++] = *r;
    return a->job_n == AUDIT_BATCH ? 1 : 0;
}

static int audit_build(void *data)
{
    struct node_audit *a = data;
    uint64_t base = 0, head = 0;
    uint8_t hash[FSM_HASH_LEN];
    if (fsm_query_audit_base(a->fsm, &base, hash) != 0 ||
        fsm_query_chain_head(a->fsm, &head, hash) != 0 || head < a->next) {
        return -1; /* nothing new (or a state behind the file) */
    }
    a->job_gap_from = a->next;
    a->job_gap_to = base >= a->next ? base : 0;
    a->job_n = 0;
    a->job_recs = ovha_calloc(AUDIT_BATCH, sizeof(*a->job_recs));
    if (a->job_recs == NULL) {
        return -1;
    }
    int rv = fsm_query_audit(a->fsm, a->job_gap_to != 0 ? base + 1 : a->next,
                             audit_collect_cb, a);
    if (rv < 0) {
        ovha_free(a->job_recs);
        a->job_recs = NULL;
        return -1;
    }
    a->job_rv = OVHA_ECLOSED; /* until the pass runs */
    return 0;
}

static const struct node_job_ops audit_job_ops = {
    .build = audit_build,
    .work = audit_work,
    .after = audit_after,
};

/* ---- public
 * -------------------------------------------------------------------- */

static void audit_path(const struct node_cfg *cfg, char *out, size_t len)
{
    if (cfg->cluster.audit_archive[0] != '\0') {
        ovha_strlcpy(out, cfg->cluster.audit_archive, len);
        return;
    }
    snprintf(out, len, "%s-audit.jsonl", cfg->cluster.data_dir);
}

int node_audit_new(uv_loop_t *loop,
                   const struct node_cfg *cfg,
                   struct fsm *fsm,
                   struct node_audit **ret)
{
    struct node_audit *a = ovha_calloc(1, sizeof(*a));
    if (a == NULL) {
        return -ENOMEM;
    }
    a->fsm = fsm;
    audit_path(cfg, a->stats.path, sizeof(a->stats.path));
    a->fd = open(a->stats.path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    int rv = a->fd < 0 ? -errno : 0;
    if (rv == 0) {
        rv = node_job_new(loop, &audit_job_ops, a, &a->job);
    }
    if (rv != 0) {
        LOG_ERR(AUDIT_MOD, "audit archive %s: %s", a->stats.path,
                ovha_strerror(rv));
        if (a->fd >= 0) {
            close(a->fd);
        }
        ovha_free(a);
        return rv;
    }
    a->next = audit_last_seq(a->fd) + 1;
    a->stats.next_seq = a->next;
    *ret = a;
    return 0;
}

void node_audit_start(struct node_audit *a)
{
    node_job_start(a->job, AUDIT_INTERVAL_MS);
}

void node_audit_kick(struct node_audit *a)
{
    node_job_kick(a->job);
}

void node_audit_get_stats(const struct node_audit *a,
                          struct node_audit_stats *ret)
{
    *ret = a->stats;
}

static void audit_job_closed_cb(void *data)
{
    struct node_audit *a = data;
    void (*cb)(void *) = a->close_cb;
    void *cb_data = a->close_data;
    (void)fdatasync(a->fd);
    close(a->fd);
    ovha_free(a);
    if (cb != NULL) {
        cb(cb_data);
    }
}

void node_audit_close(struct node_audit *a, void (*cb)(void *data), void *data)
{
    a->close_cb = cb;
    a->close_data = data;
    node_job_close(a->job, audit_job_closed_cb, a);
}
