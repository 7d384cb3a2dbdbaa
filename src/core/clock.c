/* Monotonic time and deadlines: every wait in the library is bounded by one of these. */
#include "cgloo_impl.h"

#include <time.h>

int64_t cgloo__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t cgloo__now_ms(void)
{
    return cgloo__now_ns() / 1000000;
}

int64_t cgloo__deadline(int timeout_ms, int fallback_ms)
{
    int t = timeout_ms > 0 ? timeout_ms : fallback_ms;
    return cgloo__now_ms() + (t > 0 ? t : CGLOO_DEFAULT_TIMEOUT_MS);
}

int cgloo__remaining_ms(int64_t deadline_ms)
{
    int64_t left = deadline_ms - cgloo__now_ms();
    if (left <= 0)
        return 0;
    return left > INT32_MAX ? INT32_MAX : (int)left;
}

void cgloo__sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}
