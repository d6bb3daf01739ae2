/* node/job: one reconciler pass at a time in the thread pool. See job.h. */
#include "node/job.h"

#include <errno.h>
#include <stdbool.h>

#include "base/base.h"

struct node_job {
    uv_loop_t *loop;
    const struct node_job_ops *ops;
    void *data;
    uv_timer_t timer;
    uv_work_t work;
    bool running, again, closing;
    int close_pending; /* the timer, and a running pass */
    void (*close_cb)(void *data);
    void *close_data;
};

static void node_job_run(struct node_job *j);

static void node_job_close_step(struct node_job *j)
{
    if (--j->close_pending > 0) {
        return;
    }
    void (*cb)(void *) = j->close_cb;
    void *data = j->close_data;
    ovha_free(j);
    if (cb != NULL) {
        cb(data);
    }
}

static void node_job_timer_closed_cb(uv_handle_t *h)
{
    node_job_close_step(h->data);
}

static void node_job_work_cb(uv_work_t *w)
{
    struct node_job *j = w->data;
    j->ops->work(j->data);
}

static void node_job_after_cb(uv_work_t *w, int status)
{
    struct node_job *j = w->data;
    (void)status; /* the pool never cancels our work */
    j->running = false;
    j->ops->after(j->data);
    if (j->closing) {
        node_job_close_step(j);
        return;
    }
    if (j->again) {
        j->again = false;
        node_job_run(j);
    }
}

static void node_job_run(struct node_job *j)
{
    if (j->running) {
        j->again = true;
        return;
    }
    if (j->ops->build(j->data) != 0) {
        return;
    }
    j->running = true;
    j->work.data = j;
    if (uv_queue_work(j->loop, &j->work, node_job_work_cb, node_job_after_cb) !=
        0) {
        j->running = false;
        j->ops->after(j->data); /* frees the input that build made */
    }
}

static void node_job_timer_cb(uv_timer_t *t)
{
    node_job_run(t->data);
}

int node_job_new(uv_loop_t *loop,
                 const struct node_job_ops *ops,
                 void *data,
                 struct node_job **ret)
{
    struct node_job *j = ovha_calloc(1, sizeof(*j));
    if (j == NULL) {
        return -ENOMEM;
    }
    j->loop = loop;
    j->ops = ops;
    j->data = data;
    uv_timer_init(loop, &j->timer);
    j->timer.data = j;
    *ret = j;
    return 0;
}

void node_job_start(struct node_job *j, uint64_t interval_ms)
{
    uv_timer_start(&j->timer, node_job_timer_cb, interval_ms, interval_ms);
}

void node_job_kick(struct node_job *j)
{
    if (j != NULL && !j->closing) {
        node_job_run(j);
    }
}

void node_job_close(struct node_job *j, void (*cb)(void *data), void *cb_data)
{
    j->closing = true;
    j->again = false;
    j->close_cb = cb;
    j->close_data = cb_data;
    j->close_pending = j->running ? 2 : 1;
    uv_close((uv_handle_t *)&j->timer, node_job_timer_closed_cb);
}
