/* raft/aio_defer: moves libraft's io_destroy(2) calls off the loop thread.
 *
 * Why: libraft 0.15 (raft_uv) closes its segment writer on the loop thread
 * and destroys the writer's kernel AIO context there (uv_writer.c,
 * uvWriterCleanUpAndFireCloseCb -> io_destroy). On this kernel io_destroy
 * waits for an RCU grace period: 32 ms measured, every time. A writer is
 * closed whenever a segment is finalised, which a snapshot forces, so
 * every snapshot froze each node's loop for ~32 ms and every decision in
 * flight waited (docs/benchmarks.md, "The snapshot stall").
 *
 * How: libraft calls io_destroy through libc's syscall(). This file
 * defines syscall() in the executable, which the dynamic linker binds
 * libraft's calls to first; io_destroy is handed to one worker thread and
 * reported done, everything else goes to libc's syscall() unchanged. That
 * is safe because libraft never uses a context again once it destroys it,
 * and has closed the file first; the kernel frees a context still queued
 * at exit. If the worker cannot take it, the call is made here, as before.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/base.h"
#include "raft/raft.h"

#define RFT_AIO_QUEUE 64

typedef long (*rft_aio_syscall_fn)(long number, ...);

static pthread_mutex_t rft_aio_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t rft_aio_cv = PTHREAD_COND_INITIALIZER;
static unsigned long rft_aio_queue[RFT_AIO_QUEUE];
static size_t rft_aio_head, rft_aio_len;
static bool rft_aio_enabled, rft_aio_started;

static rft_aio_syscall_fn rft_aio_real(void)
{
    static rft_aio_syscall_fn real;
    if (real == NULL) {
        real = (rft_aio_syscall_fn)dlsym(RTLD_NEXT, "syscall");
    }
    return real;
}

static void *rft_aio_worker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&rft_aio_mu);
    for (;;) {
        while (rft_aio_len == 0) {
            pthread_cond_wait(&rft_aio_cv, &rft_aio_mu);
        }
        unsigned long ctx = rft_aio_queue[rft_aio_head];
        rft_aio_head = (rft_aio_head + 1) % RFT_AIO_QUEUE;
        rft_aio_len--;
        pthread_mutex_unlock(&rft_aio_mu);
        rft_aio_real()(SYS_io_destroy, ctx);
        pthread_mutex_lock(&rft_aio_mu);
    }
    return NULL;
}

/* Queues ctx for the worker; false when it must be destroyed here. */
static bool rft_aio_defer(unsigned long ctx)
{
    bool queued = false;
    pthread_mutex_lock(&rft_aio_mu);
    if (rft_aio_enabled && rft_aio_len < RFT_AIO_QUEUE) {
        rft_aio_queue[(rft_aio_head + rft_aio_len) % RFT_AIO_QUEUE] = ctx;
        rft_aio_len++;
        queued = true;
        pthread_cond_signal(&rft_aio_cv);
    }
    pthread_mutex_unlock(&rft_aio_mu);
    return queued;
}

int rft_aio_defer_start(void)
{
    pthread_t t;
    pthread_attr_t attr;
    int rv = 0;

    pthread_mutex_lock(&rft_aio_mu);
    if (!rft_aio_started && rft_aio_real() != NULL) {
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        rv = -pthread_create(&t, &attr, rft_aio_worker, NULL);
        pthread_attr_destroy(&attr);
        rft_aio_started = rv == 0;
        rft_aio_enabled = rv == 0;
    }
    pthread_mutex_unlock(&rft_aio_mu);
    return rv;
}

long syscall(long number, ...)
{
    va_list ap;
    long a[6];
    va_start(ap, number);
    for (size_t i = 0; i < 6; i++) {
        a[i] = va_arg(ap, long);
    }
    va_end(ap);
    if (number == SYS_io_destroy && rft_aio_defer((unsigned long)a[0])) {
        return 0;
    }
    rft_aio_syscall_fn real = rft_aio_real();
    if (real == NULL) {
        errno = ENOSYS;
        return -1;
    }
    return real(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
