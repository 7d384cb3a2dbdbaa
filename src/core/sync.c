/*
 * Condition variables on the monotonic clock. Every deadline in the library is monotonic
 * milliseconds (cgloo__deadline), so timed waits must count on that clock too: on the default
 * realtime clock a wall-clock step (NTP, an administrator) would cut a wait short or stretch it.
 */
#include "cgloo_impl.h"

int cgloo__cond_init_monotonic(pthread_cond_t *cond)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return CGLOO_ENOMEM;
    int err = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (err == 0)
        err = pthread_cond_init(cond, &ca);
    pthread_condattr_destroy(&ca);
    return err == EAGAIN ? CGLOO_ENOMEM : cgloo__status_from_errno(err);
}

static struct timespec timespec_from_ns(int64_t ns)
{
    return (struct timespec){.tv_sec = (time_t)(ns / 1000000000),
                             .tv_nsec = (long)(ns % 1000000000)};
}

struct timespec cgloo__timespec_after_ms(int ms)
{
    return timespec_from_ns(cgloo__now_ns() + (int64_t)ms * 1000000);
}

struct timespec cgloo__timespec_at_ms(int64_t deadline_ms)
{
    return timespec_from_ns(deadline_ms * 1000000);
}
