/* Injectable clocks: monotonic for timeouts, real for record stamps. */
#include <time.h>

#include "base/base.h"

static ovha_clock_fn ovha_clock_mono_fn;
static ovha_clock_fn ovha_clock_real_fn;
static void *ovha_clock_data;
static int64_t ovha_clock_skew;

static uint64_t ovha_clock_read(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t ovha_now_mono_ms(void)
{
    if (ovha_clock_mono_fn != NULL) {
        return ovha_clock_mono_fn(ovha_clock_data);
    }
    return ovha_clock_read(CLOCK_MONOTONIC);
}

uint64_t ovha_now_real_ms(void)
{
    uint64_t t = ovha_clock_real_fn != NULL
                     ? ovha_clock_real_fn(ovha_clock_data)
                     : ovha_clock_read(CLOCK_REALTIME);
    return (uint64_t)((int64_t)t + ovha_clock_skew);
}

void ovha_clock_set(ovha_clock_fn mono, ovha_clock_fn real, void *data)
{
    ovha_clock_mono_fn = mono;
    ovha_clock_real_fn = real;
    ovha_clock_data = data;
}

void ovha_clock_set_skew_ms(int64_t skew)
{
    ovha_clock_skew = skew;
}
